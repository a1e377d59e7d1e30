// Adoption at creation: an OCI createRuntime hook (gputier-oci-hook) tells
// gputierd about a container whose process exists but whose program does
// not run yet, and gputierd mounts the slow overlay over each of its tiered
// directories there and then, so its first write already lands in the slow
// layer (docs/RUNTIMES.md, "The OCI hook").
//
// At createRuntime, runc has made the container's namespaces and mounted its
// root filesystem and mounts inside its mount namespace, but has not called
// pivot_root: the process (runc init) is in the container's mount namespace
// with the host's root as its root. So /proc/<pid>/root is the host's root
// seen from inside that namespace, and the container's root is the bundle's
// root.path there. Every directory is resolved under that root with
// RESOLVE_IN_ROOT and no symlinks (TierMountRequest::root_path): a link the
// image holds is never followed onto the host. The overlay mounted at
// <root.path>/data becomes /data when pivot_root makes <root.path> the root.
//
// Until the process has switched to its own root, the rest of the tier
// manager sees the container as "still starting" (PidOf) and leaves it
// alone; afterwards it is an ordinary adopted container.
#include <sys/stat.h>

#include <cerrno>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "loader/base/log.h"
#include "loader/cgroup/cgroup_path.h"
#include "loader/config/config_tiers.h"
#include "loader/config/container_path.h"
#include "loader/runtime/oci_config.h"
#include "loader/runtime/runtime_confirm.h"
#include "loader/tier/fs/tier_mount.h"
#include "loader/tier/tier_manager.h"
#include "loader/tier/tier_manager_internal.h"

namespace gputier {
absl::StatusOr<std::string> TierManager::AdoptCreating(const CreatingContainer& container, absl::Duration wait) {
  auto request = std::make_shared<CreatingRequest>();
  request->container = container;
  std::unique_lock<std::mutex> lock(mu_);
  announced_.push_back(request);
  poked_ = true;
  wake_.notify_all();
  if (!announced_done_.wait_for(lock, absl::ToChronoMilliseconds(wait), [&] { return request->done; })) {
    announced_.remove(request);  // the worker has not taken it: it never will
    return absl::DeadlineExceededError(absl::StrCat(
        "the tier worker did not take container ", container.id, " within ", absl::FormatDuration(wait),
        " (busy with a long step); it is adopted when first seen instead"));
  }
  return request->outcome;
}

// Every announced container, on the worker thread, at the start of a cycle.
void TierManager::AdoptAnnounced() {
  while (true) {
    std::shared_ptr<CreatingRequest> request;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (announced_.empty()) return;
      request = announced_.front();
      announced_.pop_front();
    }
    absl::StatusOr<std::string> outcome = AdoptAtCreate(request->container);
    if (!outcome.ok()) {
      LogWarning("tier: container %s announced by its OCI hook is not adopted at creation: %s", request->container.id,
                 outcome.status().message());
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      request->outcome = std::move(outcome);
      request->done = true;
    }
    announced_done_.notify_all();
  }
}

absl::StatusOr<std::string> TierManager::AdoptAtCreate(const CreatingContainer& c) {
  const std::string& id = c.id;
  if (absl::Status s = ValidateContainerId(id); !s.ok()) return s;
  if (records_.count(id)) return absl::StrCat("container ", id, " is adopted already");
  if (ManagedPaths(options_.config).empty()) {
    return std::string("nothing is tiered (no tiered_paths or gpu_data_paths configured)");
  }
  // The process must be the container's: in the cgroup its runtime named
  // with this id, in a mount namespace of its own, not yet in its root.
  const std::string cgroup = CgroupOfPid(c.pid);
  const std::optional<ContainerIdentity> named = IdentifyContainer(cgroup);
  if (cgroup.empty() || !named || named->container_id != id) {
    return absl::FailedPreconditionError(absl::StrCat("process ", c.pid, " is in cgroup '", cgroup,
                                                      "', which is not a container cgroup named with id ", id));
  }
  if (!InTieredCgroups(options_.config, cgroup)) {
    return absl::StrCat("container ", id, " (cgroup ", cgroup, ") is outside tiered_cgroups: not tiered");
  }
  if (absl::Status s = SlowQuotaAllowsAdoption(id); !s.ok()) return s;
  struct stat ns;
  if (stat(absl::StrCat("/proc/", c.pid, "/ns/mnt").c_str(), &ns) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("reading the mount namespace of process ", c.pid));
  }
  // (pid 1's may be unreadable: gputierd's own must not.)
  const tier_internal::HostView host = tier_internal::HostViewNow();
  if (!host.own_mnt_ns_seen || tier_internal::InHostMountNs(ns.st_ino, host)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "process ", c.pid, " shares the host's mount namespace (pid 1's or gputierd's, or gputierd's own is "
        "unreadable); the hook must run at createRuntime"));
  }
  if (!tier_internal::SameRootAsHost(c.pid, host).value_or(false)) {
    return absl::StrCat("container ", id, " has switched to its own root already; it is adopted when first seen");
  }
  // Its root, from the bundle's config.json (read beneath the bundle, no
  // symlinks), and what its annotations override.
  absl::StatusOr<ContainerPath> bundle = ParseContainerPath(c.bundle);
  if (!bundle.ok()) return absl::InvalidArgumentError(absl::StrCat("bundle: ", bundle.status().message()));
  absl::StatusOr<std::string> text = ReadBundleConfig(bundle->path);
  if (!text.ok()) return text.status();
  absl::StatusOr<OciWorkload> workload = ParseOciConfig(*text, id);
  if (!workload.ok()) return workload.status();
  if (workload->root_path.empty()) return absl::FailedPreconditionError("config.json names no root.path");
  absl::StatusOr<ContainerPath> root = ParseContainerPath(
      absl::StartsWith(workload->root_path, "/") ? workload->root_path
                                                 : absl::StrCat(bundle->path, "/", workload->root_path));
  if (!root.ok()) return absl::InvalidArgumentError(absl::StrCat("root.path: ", root.status().message()));

  TierRecord record;
  record.container_id = id;
  record.cgroup = cgroup;
  record.mnt_ns = ns.st_ino;
  // Keyed like every adoption (cycle.cc, Adopt): the id and its cgroup's
  // inode, so a later container reusing the id never gets these layers.
  struct stat cg;
  if (stat(CgroupDir(record).c_str(), &cg) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("reading the inode of cgroup ", CgroupDir(record)));
  }
  record.key = TierKeyFor(id, cg.st_ino);
  if (workload->overrides.tier) {
    if (absl::StatusOr<TierOverride> tier = ParseTierOverride(*workload->overrides.tier); tier.ok()) {
      record.override_tier = *tier;
    }
  }
  record.tiered_paths = workload->overrides.tiered_paths;
  record.gpu_data_paths = workload->overrides.gpu_data_paths;
  if (absl::Status s = Save(record); !s.ok()) return s;
  const std::string name = DisplayName(workload->identity, id);
  for (const std::string& warning : workload->warnings) LogWarning("tier: %s", warning);
  Live& live = live_[id];
  live.name = name;
  live.cgroup = cgroup;
  live.recovered = true;
  records_[id] = record;
  TierRecord& kept = records_[id];

  // Each directory on the slow tier; one that cannot be mounted now is
  // mounted by the cycle once the container runs (its error is said).
  std::vector<std::string> mounted, failed;
  for (const std::string& path : ManagedPaths(PathsFor(options_.config, kept.tiered_paths, kept.gpu_data_paths))) {
    absl::StatusOr<PathLayouts> layouts = LayoutsOf(kept, path);
    TierMountRequest request;
    request.pid = c.pid;
    request.path = ContainerPath{path};
    request.root_path = root->path;
    absl::Status s = layouts.status();
    if (s.ok()) {
      request.layout = layouts->slow;
      s = MountTier(request).status();
    }
    if (!s.ok()) {
      failed.push_back(absl::StrCat(path, " (", s.message(), ")"));
      continue;
    }
    kept.paths[path] = Tier::kSlow;
    if (absl::Status saved = Save(kept); !saved.ok()) return saved;
    mounted.push_back(path);
  }
  LogInfo("tier: adopted container %s at creation (id %s, cgroup %s, root %s): %s on the slow tier%s", name, id,
          cgroup, root->path, mounted.empty() ? "nothing" : absl::StrJoin(mounted, ", "),
          failed.empty() ? "" : absl::StrCat("; not mounted yet: ", absl::StrJoin(failed, "; ")));
  return absl::StrCat("container ", id, " adopted: ", mounted.empty() ? "nothing" : absl::StrJoin(mounted, ","),
                      " on the slow tier", failed.empty() ? "" : absl::StrCat("; not yet: ", absl::StrJoin(failed, "; ")));
}

}  // namespace gputier
