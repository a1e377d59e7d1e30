#include "loader/base/read_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "loader/base/fd.h"

namespace gputier {

int ReadAll(int fd, std::string* out, size_t max_bytes) {
  char buf[8192];
  while (out->size() < max_bytes) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  return 0;
}

absl::StatusOr<std::string> ReadFile(const std::string& path, int extra_flags, size_t max_bytes) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | extra_flags));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("opening ", path));
  std::string text;
  if (int err = ReadAll(fd.get(), &text, max_bytes); err != 0) {
    return absl::ErrnoToStatus(err, absl::StrCat("reading ", path));
  }
  return text;
}

}  // namespace gputier
