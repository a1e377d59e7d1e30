// Reading small kernel files (procfs, sysfs, cgroupfs) whole.
#ifndef GPUTIER_LOADER_BASE_READ_FILE_H_
#define GPUTIER_LOADER_BASE_READ_FILE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace gputier {

// Appends what `fd` has left, to end of file or until `out` holds at least
// `max_bytes`; EINTR is retried. Returns 0 or the errno of the failed read.
int ReadAll(int fd, std::string* out, size_t max_bytes = SIZE_MAX);

// Opens `path` read-only (O_CLOEXEC | extra_flags) and reads it whole; errors
// say "opening <path>" or "reading <path>" with the errno's code.
absl::StatusOr<std::string> ReadFile(const std::string& path, int extra_flags = 0,
                                     size_t max_bytes = SIZE_MAX);

}  // namespace gputier

#endif  // GPUTIER_LOADER_BASE_READ_FILE_H_
