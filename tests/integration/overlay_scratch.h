// Test helpers for overlay layers: a scratch directory that owns the mounts
// made in it, and a snapshot of a directory tree that two views of the same
// content compare equal by. Needs root (mounts).
#ifndef GPUTIER_TESTS_INTEGRATION_OVERLAY_SCRATCH_H_
#define GPUTIER_TESTS_INTEGRATION_OVERLAY_SCRATCH_H_

#include <fcntl.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"

// Adds a test failure naming the call and errno when `expr` is not 0.
#define EXPECT_SYS_OK(expr)                                                 \
  do {                                                                      \
    if ((expr) != 0) ADD_FAILURE() << #expr << ": " << std::strerror(errno); \
  } while (0)

namespace gputier::testing {

// A directory under /var/tmp, bind-mounted onto itself noatime (so looking
// at a tree never changes its atimes) and private. The destructor detaches
// every mount made through it, then removes the directory with RemoveTree,
// which would refuse to cross a mount left behind.
class Scratch {
 public:
  Scratch();
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  bool ok() const { return ok_; }
  const std::string& path() const { return path_; }
  // Makes path()/name (mode 0755) and returns its path.
  std::string Dir(const std::string& name);
  // Mounts an overlay (index, redirect_dir, metacopy and xino off, as gputier
  // does) at `target`; `lowers` is "top:...:bottom".
  void MountOverlay(const std::string& target, const std::string& lowers,
                    const std::string& upper, const std::string& work);
  void Bind(const std::string& from, const std::string& target);
  void Unmount(const std::string& target);

 private:
  std::string path_;
  bool bound_ = false;
  bool ok_ = false;
  std::vector<std::string> mounts_;
};

void WriteFile(const std::string& path, const std::string& data, int extra_flags = O_TRUNC);

// `size` pseudo-random bytes, the same for the same seed.
std::string Pattern(size_t size, uint32_t seed);

// One line per entry below and including `root` (path, mode, owner, size and
// content hash or link target or device number, atime, mtime, sorted xattrs
// with values), then one line per group of hard links, sorted. Directory
// sizes and link counts are left out: they depend on a layer's history, not
// on what a view shows. Files are read with O_NOATIME.
std::vector<std::string> SnapshotTree(const std::string& root);

// Lines only in `a` ("- ") or only in `b` ("+ "); empty when equal.
std::string DiffSnapshots(const std::vector<std::string>& a, const std::vector<std::string>& b);

}  // namespace gputier::testing

#endif  // GPUTIER_TESTS_INTEGRATION_OVERLAY_SCRATCH_H_
