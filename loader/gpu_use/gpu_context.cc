#include "loader/gpu_use/gpu_context.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gputier/abi.h"

namespace gputier {
namespace {

uint64_t DevKey(uint32_t major, uint32_t minor) { return (uint64_t{major} << 32) | minor; }

}  // namespace

GpuDeviceMatcher::GpuDeviceMatcher(absl::Span<const std::pair<uint32_t, uint32_t>> selectors) {
  for (const auto& [major, minor] : selectors) {
    if (minor == GT_MINOR_ANY) {
      any_minor_.insert(major);
    } else {
      exact_.insert(DevKey(major, minor));
    }
  }
}

bool GpuDeviceMatcher::Matches(uint32_t major, uint32_t minor) const {
  return any_minor_.contains(major) || exact_.contains(DevKey(major, minor));
}

std::string FdLabel(absl::string_view link_text, uint32_t major, uint32_t minor) {
  constexpr size_t kMaxLabel = 64;
  std::string out;
  for (char c : link_text.substr(0, kMaxLabel)) {
    out.push_back(absl::ascii_isprint(static_cast<unsigned char>(c)) ? c : '?');
  }
  if (out.empty()) out = absl::StrCat("char ", major, ":", minor);
  return out;
}

GpuContextTally TallyGpuFds(absl::Span<const GpuFd> fds) {
  GpuContextTally t;
  absl::flat_hash_map<std::string, uint32_t> per_label;
  absl::flat_hash_set<pid_t> pids;
  absl::flat_hash_set<std::string> clients;
  for (const GpuFd& f : fds) {
    ++t.contexts_held;
    pids.insert(f.pid);
    ++per_label[f.label];
    if (f.drm.has_value() && f.drm->has_usage() && clients.insert(f.drm->Key()).second) {
      t.drm_clients.push_back(*f.drm);
      t.drm_resident_bytes += f.drm->resident_bytes;
    }
  }
  t.processes = static_cast<uint32_t>(pids.size());
  t.by_device.assign(per_label.begin(), per_label.end());
  std::sort(t.by_device.begin(), t.by_device.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  return t;
}

std::string DescribeByDevice(const GpuContextTally& tally, size_t max_items) {
  std::string out;
  size_t shown = 0;
  for (const auto& [label, n] : tally.by_device) {
    if (shown == max_items) {
      absl::StrAppend(&out, ", +", tally.by_device.size() - shown, " more");
      break;
    }
    absl::StrAppend(&out, shown == 0 ? "" : ", ", label, " x", n);
    ++shown;
  }
  return out;
}

std::optional<double> DrmBusyTracker::Update(uint64_t mono_ns,
                                             absl::Span<const DrmClientUsage> clients) {
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, uint64_t>> now;
  // Per engine name: busy ns added since the last scan, and its capacity.
  absl::flat_hash_map<std::string, std::pair<uint64_t, uint64_t>> added;
  bool any_engine = false;
  for (const DrmClientUsage& c : clients) {
    if (!c.has_usage() || c.engines.empty()) continue;
    const std::string key = c.Key();
    if (now.contains(key)) continue;  // the same client through another fd
    auto& engines = now[key];
    auto before = last_.find(key);
    for (const DrmEngineBusy& e : c.engines) {
      any_engine = true;
      engines[e.name] = e.busy_ns;
      auto& slot = added[e.name];
      slot.second = std::max(slot.second, e.capacity);
      if (before == last_.end()) continue;
      auto prev = before->second.find(e.name);
      if (prev != before->second.end() && e.busy_ns >= prev->second) slot.first += e.busy_ns - prev->second;
    }
  }
  const uint64_t last_ns = last_ns_;
  const bool had_baseline = last_ns != 0 && !last_.empty();
  last_ = std::move(now);
  last_ns_ = mono_ns;
  if (!any_engine || !had_baseline || mono_ns <= last_ns) return std::nullopt;
  const double wall_ns = static_cast<double>(mono_ns - last_ns);
  double share = 0;
  for (const auto& [name, busy] : added) {
    share = std::max(share, static_cast<double>(busy.first) / (wall_ns * static_cast<double>(busy.second)));
  }
  return share;
}

std::optional<std::string> CgroupV2PathOf(absl::string_view text) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, "0::")) {
      absl::string_view path = line.substr(3);
      if (path.empty() || path[0] != '/') return std::nullopt;
      return std::string(path);
    }
  }
  return std::nullopt;
}

}  // namespace gputier
