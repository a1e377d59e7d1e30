#include "loader/classify/container_match.h"

#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace gputier {
namespace {

constexpr size_t kListed = 10;
constexpr size_t kMinPrefix = 4;

std::string Listed(const MatchCandidate& c) {
  std::string out = ShownName(c);
  if (!c.container_id.empty()) absl::StrAppend(&out, " (id ", c.container_id.substr(0, 12), ", cgroup ", c.cgroup_id, ")");
  return out;
}

}  // namespace

std::string ShownName(const MatchCandidate& c) {
  if (!c.name.empty()) return c.name;
  if (!c.container_id.empty()) return c.container_id.substr(0, 12);
  if (!c.cgroup_path.empty()) return c.cgroup_path;
  return absl::StrCat("cgroup ", c.cgroup_id);
}

absl::StatusOr<size_t> MatchContainer(absl::string_view target, const std::vector<MatchCandidate>& candidates) {
  uint64_t number = 0;
  const bool numeric = absl::SimpleAtoi(target, &number);
  const std::function<bool(const MatchCandidate&)> kinds[] = {
      [&](const MatchCandidate& c) { return numeric && c.cgroup_id == number; },
      [&](const MatchCandidate& c) { return !c.cgroup_path.empty() && c.cgroup_path == target; },
      [&](const MatchCandidate& c) { return !c.container_id.empty() && c.container_id == target; },
      [&](const MatchCandidate& c) { return !c.name.empty() && c.name == target; },
      [&](const MatchCandidate& c) {
        return target.size() >= kMinPrefix && !c.container_id.empty() && absl::StartsWith(c.container_id, target);
      },
  };
  for (const auto& matches_kind : kinds) {
    std::vector<size_t> matches;
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (matches_kind(candidates[i])) matches.push_back(i);
    }
    if (matches.size() == 1) return matches[0];
    if (matches.empty()) continue;
    std::vector<std::string> listed;
    for (size_t i = 0; i < matches.size() && i < kListed; ++i) listed.push_back(Listed(candidates[matches[i]]));
    return absl::InvalidArgumentError(absl::StrCat(
        "'", target, "' matches ", matches.size(), " containers: ", absl::StrJoin(listed, ", "),
        matches.size() > kListed ? ", ..." : "",
        "; give one of them by its full container id, cgroup path or cgroup id"));
  }
  return absl::NotFoundError(absl::StrCat(
      "no container or cgroup '", target,
      "' is known to gputierd; give a container name (namespace/pod/container, or podman's name), a container "
      "id (or a unique prefix of 4+ characters), a cgroup path such as /kubepods.slice/..., or a cgroup id "
      "from `gputierctl status`"));
}

}  // namespace gputier
