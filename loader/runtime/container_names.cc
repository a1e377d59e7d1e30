#include "loader/runtime/container_names.h"

#include <algorithm>
#include <utility>

#include "loader/runtime/oci_config.h"
#include "loader/runtime/runtime_confirm.h"

namespace gputier {

absl::StatusOr<std::string> LookUpContainerName(const TierConfig& config, const std::string& runtime,
                                                const std::string& id, const std::string& cgroup) {
  absl::StatusOr<ConfirmedContainer> confirmed = ConfirmWithRuntime(config, runtime, id, cgroup);
  if (!confirmed.ok()) return confirmed.status();
  absl::StatusOr<OciWorkload> workload = ReadWorkload(*confirmed);
  if (!workload.ok() || workload->identity.container.empty()) return std::string();
  return DisplayName(workload->identity, id);
}

ContainerNameCache::ContainerNameCache(Lookup lookup, size_t max_entries)
    : lookup_(std::move(lookup)), max_entries_(std::max<size_t>(max_entries, 1)) {}

std::string ContainerNameCache::NameOf(const std::string& runtime, const std::string& id,
                                       const std::string& cgroup, absl::Time now) {
  auto it = entries_.find(cgroup);
  if (it != entries_.end() && it->second.id != id) {
    // The cgroup holds another container now: start over.
    it->second = Entry{id};
  }
  if (it == entries_.end()) {
    while (entries_.size() >= max_entries_ && !order_.empty()) {
      entries_.erase(order_.front());
      order_.pop_front();
    }
    it = entries_.emplace(cgroup, Entry{id}).first;
    order_.push_back(cgroup);
  }
  Entry& e = it->second;
  if (e.settled || now < e.retry_at) return e.name;
  absl::StatusOr<std::string> name = lookup_(runtime, id, cgroup);
  if (name.ok()) {
    e.name = *name;
    e.settled = true;
  } else {
    e.retry_at = now + e.backoff;
    e.backoff = std::min(e.backoff * 2, absl::Minutes(1));
  }
  return e.name;
}

}  // namespace gputier
