// The bpffs directory that holds gputier's pins: created on a bpf filesystem
// (bpffs is mounted at /sys/fs/bpf if nothing is), and locked so that two
// agents never drive the same maps.
#ifndef GPUTIER_LOADER_OBSERVE_PIN_DIR_H_
#define GPUTIER_LOADER_OBSERVE_PIN_DIR_H_

#include <string>

#include "absl/status/statusor.h"
#include "loader/observe/maps.h"

namespace gputier {

inline constexpr char kDefaultPinDir[] = "/sys/fs/bpf/gputier";

// Makes `pin_dir` (mode 0700) on a bpf filesystem.
absl::Status EnsurePinDir(const std::string& pin_dir);

// Takes an exclusive lock on `pin_dir` held for the fd's lifetime; an error
// names the directory when another gputierd holds it.
absl::StatusOr<Fd> LockPinDir(const std::string& pin_dir);

}  // namespace gputier

#endif  // GPUTIER_LOADER_OBSERVE_PIN_DIR_H_
