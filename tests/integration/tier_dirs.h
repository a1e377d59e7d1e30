// Where a container's tier directories are, as gputierd names them: by its
// tier key "<id>-<cgroup inode>" (or the id alone for a layout version 1
// record), live under each tier root, and after its exit in the slow root's
// quarantine, <slow>/.exited/<key>.<unix seconds>.
#ifndef GPUTIER_TESTS_INTEGRATION_TIER_DIRS_H_
#define GPUTIER_TESTS_INTEGRATION_TIER_DIRS_H_

#include <string>
#include <vector>

namespace gputier {

// The names in `dir` that are `id`'s tier keys ("<id>-<digits>" or `id`),
// each followed by `suffix_digits`-style ".<digits>" when `exited`.
std::vector<std::string> TierKeyNamesIn(const std::string& dir, const std::string& id, bool exited);

// <root>/<key> of the container's live directory under a tier root; when
// there is none, <root>/<id> (which does not exist either), so that a
// message names a path.
std::string LiveTierDir(const std::string& root, const std::string& id);

// The container's quarantined slow layers, <slow>/.exited/<key>.<seconds>.
std::vector<std::string> ExitedLayers(const std::string& slow_root, const std::string& id);

// Its live slow layer, or when it has none (it exited) its last quarantined
// one: where what it wrote to its tiered directories is.
std::string SlowLayerOf(const std::string& slow_root, const std::string& id);

}  // namespace gputier

#endif  // GPUTIER_TESTS_INTEGRATION_TIER_DIRS_H_
