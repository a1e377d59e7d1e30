// The slow layers of exited containers (exited_layers.h): quarantined at
// exit (QuarantineSlowLayer, from Finalize), removed on the worker's cycle
// once tiers.exited_retention has passed or while the slow root is over
// tiers.slow_quota (CollectExited, a few per cycle, each with the bounded
// iterative walk of tree_walk.h: any depth, no symlink followed), and new
// adoptions held back while live layers alone exceed the quota
// (SlowQuotaAllowsAdoption).
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "loader/base/fd.h"
#include "loader/base/log.h"
#include "loader/tier/exited_layers.h"
#include "loader/tier/fs/tree_walk.h"
#include "loader/tier/tier_manager.h"

namespace gputier {
namespace {

// Layers removed per cycle at most: each removal walks a whole tree on the
// worker thread, so a long backlog is spread over cycles.
constexpr int kExitedRemovalsPerCycle = 2;
// How often the bytes under the slow root are counted again (and after
// every quarantine).
constexpr absl::Duration kSlowUsageEvery = absl::Seconds(30);

}  // namespace

std::string TierManager::ExitedDir() const { return absl::StrCat(options_.config.slow_root, "/", kExitedDirName); }

absl::Status TierManager::QuarantineSlowLayer(const TierRecord& record) {
  const TierConfig& c = options_.config;
  const std::string from = absl::StrCat(c.slow_root, "/", record.key);
  struct stat st;
  if (lstat(from.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();  // nothing was ever written (or moved already)
    return absl::ErrnoToStatus(errno, absl::StrCat("looking at the slow layer ", from));
  }
  const std::string dir = ExitedDir();
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::ErrnoToStatus(errno, absl::StrCat("creating the quarantine directory ", dir));
  }
  const int64_t now_s = absl::ToUnixSeconds(absl::Now());
  std::string to;
  for (int i = 0;; ++i) {
    // Two exits of one key within a second (a version 1 key reused): the
    // later one takes the next free second.
    to = absl::StrCat(dir, "/", ExitedName(record.key, now_s + i));
    if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) break;
    if ((errno != EEXIST && errno != ENOTEMPTY) || i == 60) {
      return absl::ErrnoToStatus(errno, absl::StrCat("moving the slow layer ", from, " to ", to));
    }
  }
  slow_usage_stale_ = true;
  LogInfo("tier: container %s exited: its slow layer is quarantined in %s, removed after %s "
          "(tiers.exited_retention)%s",
          record.container_id, to, absl::FormatDuration(c.exited_retention),
          c.slow_quota > 0 ? " or sooner while the slow root is over tiers.slow_quota" : "");
  return absl::OkStatus();
}

void TierManager::CollectExited() {
  const TierConfig& c = options_.config;
  const absl::Time now = absl::Now();
  if (slow_usage_stale_ || now - slow_used_at_ >= kSlowUsageEvery) {
    absl::StatusOr<uint64_t> used = TreeAllocatedBytes(c.slow_root);
    slow_used_at_ = now;
    slow_usage_stale_ = false;
    if (used.ok()) {
      slow_used_ = *used;
    } else {
      LogWarning("tier: counting the bytes under the slow root %s: %s", c.slow_root, used.status().message());
    }
  }
  const std::string dir = ExitedDir();
  Fd dirfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  std::vector<ExitedLayer> layers;
  std::map<std::string, uint64_t> seen;
  if (dirfd.valid()) {
    if (DIR* d = fdopendir(dup(dirfd.get()))) {
      while (struct dirent* e = readdir(d)) {
        std::optional<ExitedLayer> layer = ParseExitedName(e->d_name);
        if (!layer) continue;  // not a name gputier gives: left alone
        auto cached = exited_bytes_.find(layer->name);
        if (cached != exited_bytes_.end()) {
          layer->bytes = cached->second;
        } else {
          absl::StatusOr<uint64_t> bytes = TreeAllocatedBytes(absl::StrCat(dir, "/", layer->name));
          layer->bytes = bytes.ok() ? *bytes : 0;
        }
        seen[layer->name] = layer->bytes;
        layers.push_back(*std::move(layer));
      }
      closedir(d);
    }
  }
  exited_bytes_ = std::move(seen);
  slow_quarantined_ = 0;
  for (const ExitedLayer& l : layers) slow_quarantined_ += l.bytes;
  const ExitedRemovals pick =
      PickExitedRemovals(layers, absl::ToUnixSeconds(now), c.exited_retention, c.slow_quota, slow_used_);
  if (pick.live_over_quota != slow_live_over_quota_) {
    if (pick.live_over_quota) {
      LogWarning("tier: live containers' slow layers alone (%d MiB of %d MiB under %s) exceed tiers.slow_quota "
                 "(%d MiB): no new container is adopted until it is back under; no live data is removed",
                 (slow_used_ - slow_quarantined_) >> 20, slow_used_ >> 20, c.slow_root, c.slow_quota >> 20);
    } else {
      LogInfo("tier: the slow root is back under tiers.slow_quota (%d MiB): new containers are adopted again",
              c.slow_quota >> 20);
    }
  }
  slow_live_over_quota_ = pick.live_over_quota;
  if (!slow_live_over_quota_) adoption_refused_.clear();
  for (size_t i = 0; i < pick.names.size() && i < static_cast<size_t>(kExitedRemovalsPerCycle); ++i) {
    const std::string& name = pick.names[i];
    const std::string shown = absl::StrCat(dir, "/", name);
    if (absl::Status s = RemoveTreeNamed(dirfd.get(), name, shown); !s.ok()) {
      // Said once per layer and error; tried again every cycle.
      std::string& said = exited_errors_[name];
      if (said != s.message()) {
        LogWarning("tier: removing the quarantined slow layer %s: %s; tried again", shown, s.message());
        said = std::string(s.message());
      }
      continue;
    }
    exited_errors_.erase(name);
    const uint64_t bytes = exited_bytes_[name];
    exited_bytes_.erase(name);
    slow_used_ -= std::min(slow_used_, bytes);
    slow_quarantined_ -= std::min(slow_quarantined_, bytes);
    LogInfo("tier: removed %s, the slow layer of an exited container (%d MiB): %s", shown, bytes >> 20,
            pick.reasons[i] == "retention"
                ? absl::StrCat("tiers.exited_retention (", absl::FormatDuration(c.exited_retention), ") passed")
                : absl::StrCat("the slow root is over tiers.slow_quota (", c.slow_quota >> 20, " MiB)"));
  }
}

absl::Status TierManager::SlowQuotaAllowsAdoption(const std::string& id) {
  if (!slow_live_over_quota_) {
    adoption_refused_.erase(id);
    return absl::OkStatus();
  }
  adoption_refused_.insert(id);
  return absl::ResourceExhaustedError(absl::StrCat(
      "not adopted: live containers' slow layers alone exceed tiers.slow_quota (", options_.config.slow_quota,
      " bytes); its directories stay untiered until the slow root is back under (docs/TIERING.md)"));
}

// Containers never adopted (refused, still starting, failed) keep no state
// once their cgroup is gone, or the classifier no longer lists them and no
// operator request waits for them.
void TierManager::DropUnadopted(const CycleInput& in, const ViewById& by_id) {
  if (!in.have_view) return;
  for (auto it = live_.begin(); it != live_.end();) {
    const std::string& id = it->first;
    std::string cgroup;
    if (auto v = by_id.find(id); v != by_id.end()) cgroup = v->second->cgroup_path;
    if (auto o = in.overrides.find(id); cgroup.empty() && o != in.overrides.end()) cgroup = o->second.first;
    struct stat st;
    const bool gone = cgroup.empty() ||
                      (lstat(absl::StrCat(options_.cgroup_root, cgroup).c_str(), &st) != 0 && errno == ENOENT);
    if (records_.count(id) || !gone) {
      ++it;
      continue;
    }
    adoption_refused_.erase(id);
    it = live_.erase(it);
  }
}

}  // namespace gputier
