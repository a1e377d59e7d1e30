// The classifier inside gputierd: reads the counters, runs the verdict engine
// (policy/), writes changed verdicts to gt_verdicts, records decisions in the
// classification table, retrains and persists the model, and answers
// gputierctl's status/explain/train/label requests.
#ifndef GPUTIER_LOADER_CLASSIFY_VERDICT_SERVICE_H_
#define GPUTIER_LOADER_CLASSIFY_VERDICT_SERVICE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "loader/cgroup/cgroup_path.h"
#include "loader/cgroup/cgroup_resolver.h"
#include "loader/classify/classification_table.h"
#include "loader/classify/decision_row.h"
#include "loader/classify/retrainer.h"
#include "loader/config/config.h"
#include "loader/control/control_request.h"
#include "loader/gpu_use/gpu_use_monitor.h"
#include "policy/verdict_engine.h"

namespace gputier {

// What the classifier knows of one container, for the tier manager.
struct ContainerVerdictView {
  uint64_t cgroup_id = 0;
  std::string cgroup_path;
  std::string container_id;
  // namespace/pod/container or podman's name; empty where none is known.
  std::string container_name;
  Verdict verdict = Verdict::kUnknown;
  uint32_t confidence_permille = 0;  // of the verdict in force
  uint64_t last_active_ns = 0;  // CLOCK_MONOTONIC of its last counted activity
};

class VerdictService {
 public:
  struct Options {
    PolicyConfig policy;
    std::vector<ExtensionClass> classes;
    std::string state_dir;
    std::vector<std::string> runc_roots = {"/run/runc"};
    // The GPU selectors of gt_gpu_devs, (major, minor or GT_MINOR_ANY): the
    // proc scan of GPU contexts held matches the same device numbers.
    std::vector<std::pair<uint32_t, uint32_t>> gpu_selectors;
    GpuUseMonitor::Options gpu_use;
    // A container's name (namespace/pod/container or podman's), "" while
    // none is known; asked whenever a name is shown, so it must answer from
    // a cache (gputierd: a ContainerNameCache). Unset: no names.
    std::function<std::string(const ContainerIdentity& container, const std::string& cgroup_path)> name_of;
  };

  // Opens the table and the model in state_dir and restores the verdicts
  // pinned in gt_verdicts (no flapping across an agent restart).
  static absl::StatusOr<std::unique_ptr<VerdictService>> Create(const Options& options, int stats_fd,
                                                                int verdicts_fd,
                                                                const CgroupResolver* resolver);

  // One classification window over every cgroup.
  absl::Status Tick();

  // A cgroup's first GPU access: decide it now.
  absl::Status OnGpuAccess(uint64_t cgroup_id);

  // Control requests (status, explain, train, label; validated and
  // authorized by the control socket); each returns {"ok": true, ...} or
  // {"ok": false, "error": ...}.
  nlohmann::json Handle(const ControlRequest& request);

  // The GPU devices changed on the node.
  void SetGpuSelectors(const std::vector<std::pair<uint32_t, uint32_t>>& selectors);

  // "rule" or "model vN" (for the log).
  std::string Describe() const;

  // Why the classification table is not the file in state_dir as it should
  // be (moved aside as corrupt, or in memory only); empty when it is.
  const std::string& degraded() const { return degraded_; }

  // Every cgroup with counters that holds a container, with its verdict.
  std::vector<ContainerVerdictView> Containers();

  // A container id (or unique prefix of 4+), cgroup path or cgroup id, as
  // `gputierctl explain` takes it; the error names what to give instead.
  absl::StatusOr<ContainerVerdictView> ResolveContainer(const std::string& target);

 private:
  VerdictService(Options options, EngineOptions engine_options, ClassificationTable table, int stats_fd,
                 int verdicts_fd, const CgroupResolver* resolver);

  struct Identity {
    std::string path;
    std::optional<ContainerIdentity> container;
    std::string name;  // "" until known
  };
  const Identity& IdentityOf(uint64_t cgroup_id);
  // What one engine update changes, in order: the verdicts in gt_verdicts
  // (logged), the cgroups gone forgotten, the decisions recorded in the
  // table, and the model retrained when enough new labelled rows are in.
  // Returns the first failed verdict write.
  absl::Status Apply(EngineUpdate& update);
  absl::Status WriteChangedVerdicts(const EngineUpdate& update);
  void ForgetRemoved(const EngineUpdate& update);
  void RecordDecisions(const EngineUpdate& update);
  void RetrainWhenDue();
  FitInputs FitInputsNow() const;
  // A retraining finished on the retrainer's thread: its model installed
  // (saved, then used), or its failure logged and the old model kept.
  void InstallRetrained();
  absl::StatusOr<int> Install(FitResult& fit);
  RowSubject SubjectOf(uint64_t cgroup_id, int64_t time_unix_ns);
  absl::StatusOr<int> TrainNow();
  absl::StatusOr<uint64_t> ResolveTarget(const std::string& target);

  nlohmann::json Status();
  nlohmann::json Explain(const std::string& target);
  nlohmann::json Train();
  nlohmann::json Label(const std::string& target, const std::string& verdict);

  Options options_;
  std::string degraded_;
  VerdictEngine engine_;
  std::unique_ptr<GpuUseMonitor> gpu_use_;
  ClassificationTable table_;
  int stats_fd_;
  int verdicts_fd_;
  const CgroupResolver* resolver_;
  absl::flat_hash_map<uint64_t, Identity> identities_;
  absl::flat_hash_set<std::string> runc_ids_;
  absl::flat_hash_map<uint64_t, uint64_t> last_active_ns_;
  int64_t trained_through_row_ = 0;
  bool retrain_failed_logged_ = false;
  absl::Time last_retrain_at_ = absl::InfinitePast();
  // The retrainer's own connection to the table file.
  std::shared_ptr<FitConnection> fit_connection_ = std::make_shared<FitConnection>();
  // Last: destroyed first, so a fit in flight is waited for before the rest.
  Retrainer retrainer_;
};

}  // namespace gputier

#endif  // GPUTIER_LOADER_CLASSIFY_VERDICT_SERVICE_H_
