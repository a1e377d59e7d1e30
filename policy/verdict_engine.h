// The verdict engine: per cgroup, counters -> features -> decision ->
// hysteresis -> the verdict in force. Pure: the caller reads the maps and the
// clocks, and applies what a call returns (verdict map writes, table rows).
//
// Decisions are only re-made where something can change: a cgroup whose
// counters did not move and whose verdict is CPU or UNKNOWN keeps it (with no
// new events its GPU rate can only fall and its evidence cannot grow) unless
// its measured GPU use changed (a busy share above 0, another count of held
// contexts), so a tick over thousands of idle cgroups costs little.
#ifndef GPUTIER_POLICY_VERDICT_ENGINE_H_
#define GPUTIER_POLICY_VERDICT_ENGINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "gputier/abi.h"
#include "policy/classifier.h"
#include "policy/features.h"
#include "policy/hysteresis.h"
#include "policy/naive_bayes.h"

namespace gputier {

struct EngineOptions {
  FeatureOptions features;
  ClassifierOptions classifier;
  GpuClassSet gpu_classes;
  // An active cgroup (its counters moved) gets a table row at least this often
  // even when its verdict holds; rows are also written on every change of the
  // proposed verdict.
  absl::Duration record_every = absl::Seconds(60);
};

// A row for the classification table: the decision as made, before
// hysteresis (the label that matches the features), and the verdict in force.
struct DecisionRecord {
  uint64_t cgroup_id = 0;
  Features features;
  Decision decision;
  Verdict in_force = Verdict::kUnknown;
};

// What one call changed.
struct EngineUpdate {
  // Verdicts in force that changed: write them to gt_verdicts.
  std::vector<std::pair<uint64_t, gt_verdict>> changed;
  // Cgroups that disappeared from the counters: delete their verdicts.
  std::vector<uint64_t> removed;
  // Rows to record.
  std::vector<DecisionRecord> records;
};

// What status shows for a cgroup.
struct CgroupVerdict {
  Verdict verdict = Verdict::kUnknown;  // in force
  gt_verdict kernel = {};               // as written to gt_verdicts
  Features features;
  Verdict proposed = Verdict::kUnknown;  // the latest decision, before hysteresis
  uint32_t cpu_streak = 0;
  gt_cgroup_stats counters = {};  // the counters at the last decision
};

// GPU use measured outside the counters this tick, per cgroup id (only the
// cgroups that were measured; the others keep their last measurement).
using GpuUsageMap = absl::flat_hash_map<uint64_t, GpuUsageSample>;

gt_verdict ToKernelVerdict(Verdict verdict, const Decision& decision, int64_t now_unix_ns);
Verdict FromKernelVerdict(uint32_t kind);

class VerdictEngine {
 public:
  explicit VerdictEngine(EngineOptions options);

  const EngineOptions& options() const { return options_; }

  // The model that decides once trained enough (nullptr: the rule decides).
  void SetModel(std::shared_ptr<const NaiveBayesModel> model) { model_ = std::move(model); }
  const NaiveBayesModel* model() const { return model_.get(); }

  // After an agent restart: the verdict in force from the pinned gt_verdicts.
  void Restore(uint64_t cgroup_id, const gt_verdict& verdict);

  // One classification window over every cgroup with counters. Cgroups held
  // before but absent now are reported in `removed`.
  // `usage`: the GPU use measured this tick (proc scan, DRM, NVML).
  EngineUpdate Tick(absl::Span<const std::pair<uint64_t, gt_cgroup_stats>> counters,
                    uint64_t now_mono_ns, int64_t now_unix_ns,
                    const GpuUsageMap& usage = GpuUsageMap());

  // One cgroup, now (the first-GPU-access path): same decision as a tick.
  EngineUpdate Update(uint64_t cgroup_id, const gt_cgroup_stats& stats, uint64_t now_mono_ns,
                      int64_t now_unix_ns);

  // The current state of a cgroup, features computed as of now_mono_ns.
  std::optional<CgroupVerdict> Lookup(uint64_t cgroup_id, uint64_t now_mono_ns) const;

  // The full decision for a cgroup as of now (for explain); nullopt if unknown.
  std::optional<Decision> Explain(uint64_t cgroup_id, uint64_t now_mono_ns) const;

  std::vector<uint64_t> CgroupIds() const;
  size_t size() const { return cgroups_.size(); }

 private:
  struct State {
    explicit State(const FeatureOptions& o, uint32_t demote) : window(o), hysteresis(demote) {}
    FeatureWindow window;
    Hysteresis hysteresis;
    gt_verdict kernel = {};  // what gt_verdicts holds
    Verdict proposed = Verdict::kUnknown;
    gt_cgroup_stats last = {};  // counters at the last decision
    bool decided_once = false;
    int64_t last_record_unix_ns = 0;
    uint64_t last_tick = 0;
    uint32_t last_contexts = 0;  // contexts_held of the last usage sample
  };

  State& StateFor(uint64_t cgroup_id);
  void Decide(uint64_t cgroup_id, State& state, const gt_cgroup_stats& stats,
              const GpuUsageSample* usage, uint64_t now_mono_ns, int64_t now_unix_ns,
              EngineUpdate& out);

  EngineOptions options_;
  std::shared_ptr<const NaiveBayesModel> model_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<State>> cgroups_;
  uint64_t tick_ = 0;
};

}  // namespace gputier

#endif  // GPUTIER_POLICY_VERDICT_ENGINE_H_
