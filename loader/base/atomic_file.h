// Replacing a small file atomically: write a temp file beside it, fsync,
// rename over, fsync the directory. A crash leaves the old or the new
// content, never half of one.
#ifndef GPUTIER_LOADER_BASE_ATOMIC_FILE_H_
#define GPUTIER_LOADER_BASE_ATOMIC_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace gputier {

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

}  // namespace gputier

#endif  // GPUTIER_LOADER_BASE_ATOMIC_FILE_H_
