// Which container (or cgroup) a name given on gputierctl's command line
// means. Pure.
//
// A CONTAINER may be given as its name (namespace/pod/container, or podman's
// name), its full id, a prefix of 4+ characters of its id (the short id is
// one), its cgroup path or its cgroup id. The most exact kind that matches
// anything decides, in this order: cgroup id, cgroup path, full id, name, id
// prefix; several matches of that kind are an error listing them.
#ifndef GPUTIER_LOADER_CLASSIFY_CONTAINER_MATCH_H_
#define GPUTIER_LOADER_CLASSIFY_CONTAINER_MATCH_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gputier {

struct MatchCandidate {
  uint64_t cgroup_id = 0;
  std::string cgroup_path;   // may be empty
  std::string container_id;  // empty for a cgroup without a container
  std::string name;          // empty where no name is known
};

// How a candidate is shown in messages: its name, else its short id, else
// its cgroup path, else its cgroup id.
std::string ShownName(const MatchCandidate& candidate);

// The index of the candidate `target` names. NotFound when none does (the
// message says what may be given); InvalidArgument when several do (the
// message lists them, at most 10, and says how to pick one).
absl::StatusOr<size_t> MatchContainer(absl::string_view target, const std::vector<MatchCandidate>& candidates);

}  // namespace gputier

#endif  // GPUTIER_LOADER_CLASSIFY_CONTAINER_MATCH_H_
