#include "loader/tier/fs/file_copy.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

namespace gputier {
namespace {

constexpr size_t kCopyChunk = size_t{1} << 30;
constexpr size_t kBufferSize = size_t{1} << 20;

absl::Status ReadWriteRange(int in, int out, off_t offset, uint64_t length, uint64_t* copied) {
  std::vector<char> buffer(static_cast<size_t>(std::min<uint64_t>(length, kBufferSize)));
  while (length > 0) {
    ssize_t n = pread(in, buffer.data(), std::min<uint64_t>(length, buffer.size()), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, "read");
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = pwrite(out, buffer.data() + done, n - done, offset + done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return absl::ErrnoToStatus(errno, "write");
      done += w;
    }
    offset += n;
    length -= static_cast<uint64_t>(n);
    *copied += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status CopyRange(int in, int out, off_t offset, uint64_t length, uint64_t* copied) {
  off_t in_off = offset, out_off = offset;
  while (length > 0) {
    ssize_t n = copy_file_range(in, &in_off, out, &out_off,
                                static_cast<size_t>(std::min<uint64_t>(length, kCopyChunk)), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
      return ReadWriteRange(in, out, in_off, length, copied);
    }
    if (n < 0) return absl::ErrnoToStatus(errno, "copy_file_range");
    if (n == 0) break;  // the source is shorter than it said
    length -= static_cast<uint64_t>(n);
    *copied += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CopyFileData(int in, int out, uint64_t size, uint64_t blocks, uint64_t* copied) {
  if (size == 0) return absl::OkStatus();
  if (blocks * 512 >= size) return CopyRange(in, out, 0, size, copied);
  if (ftruncate(out, static_cast<off_t>(size)) != 0) return absl::ErrnoToStatus(errno, "ftruncate");
  const off_t end = static_cast<off_t>(size);
  for (off_t pos = 0; pos < end;) {
    off_t data = lseek(in, pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole is left
    if (data < 0 && errno == EINVAL) {      // no SEEK_DATA here: copy the rest
      return CopyRange(in, out, pos, static_cast<uint64_t>(end - pos), copied);
    }
    if (data < 0) return absl::ErrnoToStatus(errno, "lseek(SEEK_DATA)");
    if (data >= end) break;
    off_t hole = lseek(in, data, SEEK_HOLE);
    if (hole < 0) return absl::ErrnoToStatus(errno, "lseek(SEEK_HOLE)");
    hole = std::min(hole, end);
    absl::Status s = CopyRange(in, out, data, static_cast<uint64_t>(hole - data), copied);
    if (!s.ok()) return s;
    pos = hole;
  }
  return absl::OkStatus();
}

}  // namespace gputier
