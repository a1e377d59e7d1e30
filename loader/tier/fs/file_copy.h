// Copying the data of one regular file into another, in the kernel where it
// can: copy_file_range, with read/write where the two filesystems cannot.
// A sparse source (fewer blocks than its size) is copied extent by extent
// (SEEK_DATA/SEEK_HOLE), so holes stay holes.
#ifndef GPUTIER_LOADER_TIER_FS_FILE_COPY_H_
#define GPUTIER_LOADER_TIER_FS_FILE_COPY_H_

#include <cstdint>

#include "absl/status/status.h"

namespace gputier {

// Copies `size` bytes of `in` (which has `blocks` 512-byte blocks) into the
// empty file `out` at the same offsets, and sets out's size. Adds the bytes
// copied to *copied. A source shorter than `size` ends the copy early.
// Errors name the call that failed, not the files.
absl::Status CopyFileData(int in, int out, uint64_t size, uint64_t blocks, uint64_t* copied);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_FS_FILE_COPY_H_
