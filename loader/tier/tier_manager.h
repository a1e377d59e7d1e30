// The tier manager: puts each container's tiered directories on the tier its
// verdict (or an operator's override) chooses, live, and keeps the persisted
// record of where everything is (docs/TIERING.md).
//
// It runs on its own thread so that a long write-back never stalls the
// classifier or the control socket. The main thread hands it the
// classifier's view of the containers after every tick (UpdateContainers)
// and operator overrides (SetOverride); StatusJson answers
// `gputierctl status`.
//
// Every container with a tiered directory is "adopted" when first seen: each
// directory becomes an overlay whose upper layer is on the slow tier. Then,
// one step at a time, each recorded before and after it is taken:
//
//   promote  make the container's fast partition, freeze the cgroup, detach
//            the slow overlay, mount [upper fast | lowers: slow upper,
//            original], record, thaw
//   demote   freeze, check that no process of the container holds anything
//            open on the fast overlay (else thaw and retry later), detach it,
//            fold the fast upper into the slow upper (MergeUpperLayer), mount
//            the slow overlay, record, thaw, free the fast directory (and the
//            partition with the last one)
//   exit     the container is gone: fold every fast upper into its slow
//            upper, free the partition, drop the record
//
// Every freeze is a ScopedFreeze: whatever path a step takes, it ends thawed.
// A thaw that fails leaves the record's `froze` set, and the container is
// recovered (and so thawed) again on the next cycle.
//
// Recovery: on start, every record is checked against what is actually
// mounted in the container, and a step left in flight is finished or rolled
// back (crash safety). A recovery that fails is retried every 5 s, the
// container left frozen if gputierd froze it, until it succeeds. While running,
// every second, each recorded directory is checked to still carry its
// overlay: one that lost it (someone unmounted it inside the container) gets
// its slow overlay back, after its fast layer, if it had one, is folded into
// the slow one; the verdict then promotes it again if it asks for fast.
//
// Freeing a partition (unmount, loop device, unlinking a large image) is not
// done on the worker thread: the partition is set aside in one rename
// (SetPartitionAside) and released on a second thread, so a promotion never
// waits behind it. Its bytes count as in use on the fast tier until they are
// freed (admission), but not for choosing whom to demote under pressure.
#ifndef GPUTIER_LOADER_TIER_TIER_MANAGER_H_
#define GPUTIER_LOADER_TIER_TIER_MANAGER_H_

#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "loader/cgroup/cgroup_freezer.h"
#include "loader/config/config.h"
#include "loader/tier/tier_plan.h"
#include "loader/tier/fs/tier_mount.h"
#include "loader/tier/fs/tier_partition.h"
#include "loader/tier/tier_record.h"
#include "loader/classify/verdict_service.h"

namespace gputier {

class TierManager {
 public:
  struct Options {
    TierConfig config;
    std::string state_dir;    // records go to <state_dir>/tier
    std::string cgroup_root;  // the cgroup2 mount point
    absl::Duration freeze_timeout = absl::Seconds(5);
  };

  // Creates the tier roots (0700), loads the records and logs where the
  // tiers are (saying so when they are the built-in default).
  static absl::StatusOr<std::unique_ptr<TierManager>> Create(Options options);
  // Stops the worker, releases the spare partition (unmount, loop device,
  // image), then frees what is set aside and stops that thread. Partitions
  // of containers still tiered stay, with their records (docs/TIERING.md).
  ~TierManager();

  // Starts the worker thread (it first finishes or rolls back steps that a
  // previous gputierd left in flight) and the thread that frees partitions
  // (it first frees those a previous gputierd set aside).
  void Start();

  // The classifier's latest view (every container with counters).
  void UpdateContainers(std::vector<ContainerVerdictView> containers);

  // `gputierctl tier`: follow `choice` instead of the verdict (kAuto: the
  // verdict again). Persisted with the container's record. Every request,
  // a repeated one too, is attempted on the next cycle, whatever backoff an
  // earlier error set.
  absl::Status SetOverride(const ContainerVerdictView& container, TierOverride choice);

  // {"tiers": {...}, "containers": [...]} for `gputierctl status`.
  nlohmann::json StatusJson();

  // What an OCI createRuntime hook (gputier-oci-hook) says of a container
  // being created: its id, its process (runc init, host pid namespace) and
  // its bundle.
  struct CreatingContainer {
    std::string id;
    pid_t pid = 0;
    std::string bundle;
  };
  // Adopts it at once, on the worker thread, before its program runs
  // (adopt_at_create.cc, docs/RUNTIMES.md). Waits at most `wait` for the
  // worker; returns one sentence of what was done.
  absl::StatusOr<std::string> AdoptCreating(const CreatingContainer& container, absl::Duration wait);

 private:
  explicit TierManager(Options options);

  // Per container, in memory only.
  struct Live {
    std::string cgroup;
    // namespace/pod/container, podman's name or the short id (OCI annotations
    // read at adoption; empty for a record recovered after a restart).
    std::string name;
    Verdict verdict = Verdict::kUnknown;
    uint64_t last_active_ns = 0;
    std::string last_error;
    absl::Time retry_at = absl::InfinitePast();
    // Recover() has succeeded since this gputierd started (adopted ones need
    // none); until then nothing else is done to the container.
    bool recovered = false;
    // When every recorded directory was last checked for its overlay, and
    // the mount id each fast overlay had then (to find references into one
    // that was detached).
    absl::Time overlays_checked_at = absl::InfinitePast();
    std::map<std::string, uint64_t> fast_mounts;
    std::set<std::string> lost_reported;  // directories whose lost overlay is logged
    bool pressure_demoted = false;
    double last_promotion_ms = -1;
    double last_demotion_ms = -1;
    uint64_t last_writeback_bytes = 0;
    // Since this gputierd started (for the metrics' counters).
    uint64_t promotions = 0;
    uint64_t demotions = 0;
    uint64_t writeback_bytes = 0;
    uint64_t fast_bytes = 0;
    uint64_t slow_bytes = 0;
    absl::Time bytes_at = absl::InfinitePast();
    // Since when the container's steps wait on it (files held open on the
    // fast overlay); InfinitePast when they do not.
    absl::Time waiting_since = absl::InfinitePast();
  };

  // tier_manager.cc: the worker thread, and what every step uses.
  void Loop();
  absl::StatusOr<pid_t> PidOf(const TierRecord& record);
  std::string Shown(const std::string& id) const;
  absl::Status Save(const TierRecord& record);
  std::string CgroupDir(const TierRecord& record) const;
  void NoteError(const std::string& container_id, const absl::Status& status, absl::Duration retry);
  // cycle.cc: a step that waits on the container, retried (tiers.demote_wait).
  void NoteWaiting(const std::string& id, Live& live, const absl::Status& s);

  // cycle.cc: one pass of the worker over every container.
  //   TakeInput            the classifier's view and operator requests, copied
  //   FinalizeGone         containers that are gone (finalize.cc)
  //   RecoverPending       records not recovered yet (recover.cc)
  //   AdoptNew             containers seen for the first time
  //   ApplyOverrides       operator choices into the records
  //   NoteVerdicts         each container's verdict and last activity
  //   MarkPressureDemotions  whom the fast tier's high watermark demotes
  //   ConvergeAll          each container onto its desired tiers
  //   KeepSpare            one empty partition ready (partitions.cc)
  struct CycleInput {
    std::vector<ContainerVerdictView> view;
    std::map<std::string, std::pair<std::string, TierOverride>> overrides;  // id -> (cgroup, choice)
    std::set<std::string> prompt;  // ids with an operator request since the last cycle
    bool have_view = false;
  };
  using ViewById = std::map<std::string, const ContainerVerdictView*>;
  void Cycle();
  CycleInput TakeInput();
  void FinalizeGone();
  void RecoverPending();
  void AdoptNew(const CycleInput& in, const ViewById& by_id);
  absl::Status Adopt(const std::string& container_id, const std::string& cgroup);

  // adopt_at_create.cc: containers announced by their createRuntime hook.
  struct CreatingRequest {
    CreatingContainer container;
    bool done = false;
    absl::StatusOr<std::string> outcome = std::string();
  };
  void AdoptAnnounced();
  absl::StatusOr<std::string> AdoptAtCreate(const CreatingContainer& container);
  void ApplyOverrides(const CycleInput& in);
  void NoteVerdicts(const ViewById& by_id);
  // statvfs of the fast root, less the partitions set aside and being freed.
  absl::StatusOr<SpaceUsage> FastUsageLessFreeing();
  absl::StatusOr<SpaceUsage> MarkPressureDemotions();
  void ConvergeAll(const absl::StatusOr<SpaceUsage>& fs);
  // The tiers `record`'s directories should be on now: the verdict's (or
  // override's), held on the slow tier while pressure-demoted.
  std::map<std::string, Tier> DesiredNow(const TierRecord& record, Live& live,
                                         const absl::StatusOr<SpaceUsage>& fs);
  bool MayPromote(const TierRecord& record);
  bool AnyPressureDemoted() const;
  absl::Status Converge(TierRecord& record, Live& live, const std::map<std::string, Tier>& desired,
                        bool may_promote);

  // What is mounted at `path` in the container: our slow overlay, our fast
  // overlay, nothing of ours, or a foreign overlay (an error).
  enum class Observed { kNone, kSlow, kFast };

  // step.cc: the opening and closing that promote and demote share.
  //   LookUp      the container's process and what `path` shows now
  //   RecordTier  `path` already shows the tier wanted: only the record moves
  //   BeginStep   the step, and the freeze about to happen, recorded in one write
  //   Freeze      the cgroup frozen (AbandonStep when that fails)
  //   EndStep     the outcome recorded, the step cleared, the cgroup thawed
  struct Found {
    pid_t pid = 0;
    Observed seen = Observed::kNone;
    uint64_t mount_id = 0;  // of what is mounted at the path
  };
  absl::StatusOr<Found> LookUp(const TierRecord& record, const std::string& path);
  absl::Status RecordTier(TierRecord& record, const std::string& path, Tier tier);
  absl::Status BeginStep(TierRecord& record, TierOp op, const std::string& path);
  absl::StatusOr<ScopedFreeze> Freeze(TierRecord& record);
  // A step that could not start: cleared from the record, which is saved as
  // it was, and a partition that no directory uses is freed.
  absl::Status AbandonStep(TierRecord& record, absl::Status why);
  absl::Status EndStep(TierRecord& record, const std::string& path, Tier reached, ScopedFreeze& freeze,
                       absl::Status result);
  // Thaws what `freeze` froze and records that; a failed thaw leaves
  // record.froze set, so the next cycle recovers (and thaws) the container.
  absl::Status Thaw(TierRecord& record, ScopedFreeze& freeze);

  // promote.cc
  absl::Status Promote(TierRecord& record, const std::string& path);
  // The slow overlay mounted again under a directory that lost it, before
  // it is promoted; `found` then describes it.
  absl::Status RestoreSlowBeforePromotion(TierRecord& record, const std::string& path, Found& found);
  // The container's partition mounted, and `path`'s fast layer in it empty.
  absl::Status PreparePartition(const TierRecord& record, const PartitionPaths& part, bool mounted,
                                const std::string& path);
  // With the container frozen: the slow overlay swapped for the fast one
  // (the slow one put back when the fast one cannot be mounted).
  absl::Status SwapSlowForFast(const Found& found, const TierRecord& record, const std::string& path,
                               uint64_t* fast_mount);

  // demote.cc
  absl::Status Demote(TierRecord& record, const std::string& path);
  // A fast overlay that was unmounted while gputierd ran, said once: returns
  // the mount id it had, to look for references into it (0 when that id is
  // in use again).
  uint64_t ReportLostFastOverlay(const TierRecord& record, Live& live, pid_t pid, const std::string& path);
  // Unavailable (retried soon) while a process of the container holds
  // anything open on the fast overlay `fast_mount` (0: none to look for).
  absl::Status CheckFastOverlayUnused(const TierRecord& record, uint64_t fast_mount, bool lost,
                                      const std::string& path);
  // With the container frozen: the fast overlay unmounted (unless lost),
  // its layer folded into the slow one, and the slow overlay mounted (the
  // fast one put back when that fails after the unmount).
  absl::Status SwapFastForSlow(const Found& found, bool lost, const TierRecord& record, Live& live,
                               const std::string& path);

  // finalize.cc: the container is gone.
  absl::Status Finalize(TierRecord& record);

  // exited.cc: slow layers of exited containers, the slow tier's quota, and
  // the state of containers never adopted.
  std::string ExitedDir() const;  // <slow_root>/.exited
  // <slow_root>/<key> moved to ExitedDir()/<key>.<unix seconds>; OK when
  // there is none.
  absl::Status QuarantineSlowLayer(const TierRecord& record);
  // Removes (at most a few per cycle) the quarantined layers past
  // tiers.exited_retention or, oldest first, while over tiers.slow_quota;
  // recounts the slow root's bytes every 30 s.
  void CollectExited();
  // ResourceExhausted while live layers alone exceed tiers.slow_quota.
  absl::Status SlowQuotaAllowsAdoption(const std::string& id);
  void DropUnadopted(const CycleInput& in, const ViewById& by_id);

  // recover.cc
  absl::Status Recover(TierRecord& record);
  // Finishes or rolls back a step left in flight; the directories whose fast
  // layers it folded into their slow ones are added to `folded`.
  absl::Status FinishInterruptedStep(pid_t pid, TierRecord& record, std::vector<std::string>& folded);
  // Gives each recorded directory that lost its overlay while gputierd ran
  // the one its record names: the slow overlay again, or, for a fast one,
  // a demotion without the unmount (its fast layer folded into the slow one).
  absl::Status CheckOverlays(TierRecord& record, Live& live);
  absl::Status RemountSlow(pid_t pid, const TierRecord& record, const std::string& path);
  // Thaws a cgroup that the record says gputierd froze (recovery, exit).
  absl::Status ThawRecorded(TierRecord& record);

  // overlays.cc: one directory's two overlays.
  // Where one tiered directory's two layers live: the slow one under the
  // slow root, the fast one inside the container's partition.
  struct PathLayouts {
    TierLayout slow;
    TierLayout fast;
  };
  absl::StatusOr<PathLayouts> LayoutsOf(const TierRecord& record, const std::string& path) const;
  absl::StatusOr<Observed> Observe(pid_t pid, const TierRecord& record, const std::string& path,
                                   uint64_t* mount_id);
  absl::Status MountSlow(pid_t pid, const TierRecord& record, const std::string& path);
  absl::Status MountFast(pid_t pid, const TierRecord& record, const std::string& path,
                         uint64_t* mount_id = nullptr);
  absl::Status FoldFastIntoSlow(const TierRecord& record, const std::string& path, uint64_t* bytes);

  // partitions.cc: the container's fast partition, the spare, and freeing.
  // After `path`'s fast layer was folded into its slow one, that layer must
  // never be mounted again (its stale copies would hide newer slow files):
  // the partition goes when no directory is fast any more, else the layer.
  absl::Status DiscardFastLayer(TierRecord& record, const std::string& path);
  absl::Status FreePartitionIfUnused(TierRecord& record);
  // Sets the partition aside for the freeing thread, or, when it cannot be
  // set aside, releases it here.
  absl::Status FreePartition(const PartitionPaths& part);
  // The spare partition: made ahead so a promotion only renames it.
  absl::StatusOr<PartitionPaths> SparePaths() const;
  bool SpareReady();
  absl::Status TakePartition(const PartitionPaths& part);
  void KeepSpare(bool wanted);
  // At stop, with the worker joined: releases the spare in place (logged).
  void ReleaseSpareAtStop();

  // status.cc: what `gputierctl status` and the metrics show.
  void Publish();
  void RefreshBytes(const TierRecord& record, Live& live, bool force);

  // partitions.cc: the thread that frees partitions set aside.
  struct Freeing {
    AsidePartition part;
    std::string error;  // of the last failed attempt; retried at retry_at
    absl::Time retry_at = absl::InfinitePast();
    bool last_try = false;  // tried once more at shutdown
  };
  void FreerLoop();
  // Bytes of images set aside and on their way out (failed ones excluded).
  uint64_t FreeingBytes();

  const Options options_;
  TierRecordStore store_;
  // What each tier root sits on, said at start (tier_device.h); JSON for status.
  nlohmann::json tier_devices_ = nlohmann::json::object();

  // Owned by the worker thread.
  std::map<std::string, TierRecord> records_;
  std::map<std::string, Live> live_;
  // The slow root (exited.cc): its allocated bytes (quarantine included) and
  // when they were counted; the quarantined layers' bytes by name; whether
  // live layers alone exceed tiers.slow_quota, and who was refused for it.
  uint64_t slow_used_ = 0;
  uint64_t slow_quarantined_ = 0;
  absl::Time slow_used_at_ = absl::InfinitePast();
  bool slow_usage_stale_ = true;
  bool slow_live_over_quota_ = false;
  std::map<std::string, uint64_t> exited_bytes_;
  std::map<std::string, std::string> exited_errors_;  // name -> last removal error said
  std::set<std::string> adoption_refused_;

  // Shared with the main thread.
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool poked_ = false;
  bool have_view_ = false;
  std::vector<ContainerVerdictView> view_;
  std::map<std::string, std::pair<std::string, TierOverride>> overrides_;  // id -> (cgroup, choice)
  std::set<std::string> prompt_;  // ids with an operator request since the last cycle
  std::list<std::shared_ptr<CreatingRequest>> announced_;  // from createRuntime hooks
  std::condition_variable announced_done_;
  nlohmann::json status_ = nlohmann::json::object();
  std::thread thread_;

  // Shared with the freeing thread.
  std::mutex free_mu_;
  std::condition_variable free_wake_;
  bool free_stop_ = false;
  std::list<Freeing> freeing_;
  std::thread freer_;
};

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_TIER_MANAGER_H_
