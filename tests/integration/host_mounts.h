// What gputier may leave on the host, as tests see it: mounts in this
// process's namespace and loop devices, below a directory.
#ifndef GPUTIER_TESTS_INTEGRATION_HOST_MOUNTS_H_
#define GPUTIER_TESTS_INTEGRATION_HOST_MOUNTS_H_

#include <string>
#include <vector>

namespace gputier::testing {

// Whether `path` is `dir` or below it.
bool Below(const std::string& path, const std::string& dir);

// The regular file whose path ends in `suffix` under `root` (at most
// `depth` levels down), or "": a tier's layout under its root is the tier
// manager's, and tests look for what they wrote without assuming it.
std::string FindFileUnder(const std::string& root, const std::string& suffix, int depth = 4);

// Mount points of /proc/self/mountinfo at or below `dir`.
std::vector<std::string> HostMountsUnder(const std::string& dir);

// Loop devices whose backing file is at or below `dir`, as "loopN: file"
// (from /sys/block/loop*/loop/backing_file).
std::vector<std::string> LoopsBackedUnder(const std::string& dir);

// Lines of `losetup -a` that name a file at or below `dir` (empty when
// losetup lists none, or cannot run: then one line saying so).
std::vector<std::string> LosetupLinesUnder(const std::string& dir);

// Unmounts (lazily, deepest first) everything mounted at or below `dir`:
// what a runtime left in its private store.
void UnmountAllUnder(const std::string& dir);

}  // namespace gputier::testing

#endif  // GPUTIER_TESTS_INTEGRATION_HOST_MOUNTS_H_
