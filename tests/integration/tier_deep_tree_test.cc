// Container-controlled trees deeper than gputierd's fd limit and than
// PATH_MAX: the demotion write-back, tree removal and the byte count walk
// them with a fixed number of fds (tree_walk.h). The trees are made through a
// real overlay where the write-back reads them, and the walks run with
// RLIMIT_NOFILE lowered to 128, far below one fd per level. Needs root.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "loader/base/fd.h"
#include "loader/tier/fs/tier_writeback.h"
#include "loader/tier/fs/tree_walk.h"
#include "tests/integration/overlay_scratch.h"

namespace gputier {
namespace {

using ::gputier::testing::Scratch;

constexpr int kDepth = 2100;     // levels of "d": 4200 bytes of path, past PATH_MAX
constexpr rlim_t kFdLimit = 128;  // far below one fd per level

// Lowers RLIMIT_NOFILE's soft limit for the scope.
class FdLimit {
 public:
  explicit FdLimit(rlim_t soft) {
    getrlimit(RLIMIT_NOFILE, &saved_);
    struct rlimit lowered = saved_;
    lowered.rlim_cur = soft;
    ok_ = setrlimit(RLIMIT_NOFILE, &lowered) == 0;
  }
  ~FdLimit() { setrlimit(RLIMIT_NOFILE, &saved_); }
  bool ok() const { return ok_; }

 private:
  struct rlimit saved_;
  bool ok_ = false;
};

Fd OpenDir(int at, const std::string& name) {
  return Fd(openat(at, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

void WriteAt(int dirfd, const std::string& name, const std::string& data) {
  Fd f(openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
  ASSERT_TRUE(f.valid()) << name << ": " << std::strerror(errno);
  ASSERT_EQ(write(f.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
}

std::string ReadAt(int dirfd, const std::string& name) {
  Fd f(openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!f.valid()) return absl::StrCat("<", std::strerror(errno), ">");
  char buf[256];
  ssize_t n = read(f.get(), buf, sizeof(buf));
  return n < 0 ? "<read error>" : std::string(buf, static_cast<size_t>(n));
}

// Calls body(level, fd of that level) for levels 0..depth of the chain
// root/d/d/..., making missing levels when `make`; one fd open at a time
// besides root. False when a level is missing.
template <typename Body>
bool WalkChain(int root, int depth, bool make, Body body) {
  Fd cur(openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  for (int level = 0;; ++level) {
    body(level, cur.get());
    if (level == depth) return true;
    if (make && mkdirat(cur.get(), "d", 0755) != 0 && errno != EEXIST) return false;
    Fd next = OpenDir(cur.get(), "d");
    if (!next.valid()) return false;
    cur = std::move(next);
  }
}

// The deepest level of root/d/d/... (one fd at a time).
int ChainDepth(int root) {
  int depth = 0;
  Fd cur(openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  for (Fd next = OpenDir(cur.get(), "d"); next.valid(); next = OpenDir(cur.get(), "d")) {
    cur = std::move(next);
    ++depth;
  }
  return depth;
}

class DeepTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (overlay mounts, trusted.* xattrs)";
    scratch_ = std::make_unique<Scratch>();
    ASSERT_TRUE(scratch_->ok()) << "scratch dir under /var/tmp: " << std::strerror(errno);
    root_.Reset(open(scratch_->path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_.valid());
  }
  void TearDown() override {
    // The scratch's own clean-up removes what is left with RemoveTree.
    root_.Reset();
    scratch_.reset();
  }

  std::unique_ptr<Scratch> scratch_;
  Fd root_;
};

// One tree for two walks (making it is most of the cost): the byte count
// sees every file at any depth but nothing behind a mount point; removal
// takes everything and follows no symlink.
TEST_F(DeepTreeTest, ByteCountAndRemovalWalkATreeDeeperThanTheFdLimitAndPathMax) {
  std::string outside = scratch_->Dir("outside");
  WriteAt(root_.get(), "outside/keep", "keep\n");
  WriteAt(root_.get(), "outside/big", std::string(1 << 20, 'o'));
  scratch_->Dir("victim");
  scratch_->Dir("victim/m");
  scratch_->Bind(outside, scratch_->path() + "/victim/m");
  Fd victim = OpenDir(root_.get(), "victim");
  uint64_t expected = 0;
  ASSERT_TRUE(WalkChain(victim.get(), kDepth, true, [&](int level, int fd) {
    if (level % 500 == 499 || level == kDepth) {
      WriteAt(fd, "f", std::string(64 << 10, 'x'));
      struct stat st;
      EXPECT_SYS_OK(fstatat(fd, "f", &st, 0));
      expected += static_cast<uint64_t>(st.st_blocks) * 512;
    }
    if (level % 501 == 0) EXPECT_SYS_OK(symlinkat(outside.c_str(), fd, "out"));
    if (level % 700 == 0) EXPECT_SYS_OK(mkfifoat(fd, "fifo", 0600));
  }));
  victim.Reset();
  ASSERT_FALSE(HasFailure());
  ASSERT_GT(expected, 0u);
  FdLimit limit(kFdLimit);
  ASSERT_TRUE(limit.ok());

  absl::StatusOr<uint64_t> bytes = TreeAllocatedBytes(scratch_->path() + "/victim");
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, expected);
  EXPECT_EQ(*TreeAllocatedBytes(scratch_->path() + "/absent"), 0u);

  absl::Status s = RemoveTree(root_.get(), "victim");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("'victim/m' is a mount point"), std::string::npos) << s;
  scratch_->Unmount(scratch_->path() + "/victim/m");
  s = RemoveTree(root_.get(), "victim");
  EXPECT_TRUE(s.ok()) << s;
  struct stat st;
  EXPECT_NE(fstatat(root_.get(), "victim", &st, AT_SYMLINK_NOFOLLOW), 0) << "victim left behind";
  EXPECT_EQ(ReadAt(root_.get(), "outside/keep"), "keep\n") << "followed a symlink";
}

TEST_F(DeepTreeTest, WriteBackFoldsATreeDeeperThanTheFdLimitAndPathMax) {
  std::string lower = scratch_->Dir("L"), slow = scratch_->Dir("S"), fast = scratch_->Dir("F");
  std::string work = scratch_->Dir("W"), view = scratch_->Dir("view");
  // L holds the first 300 levels, each with a file "l".
  Fd l = OpenDir(root_.get(), "L");
  ASSERT_TRUE(WalkChain(l.get(), 300, true, [&](int, int fd) { WriteAt(fd, "l", "lower"); }));
  l.Reset();
  // Through [F over S, L] the container goes on to kDepth levels, deletes
  // "l" at level 200, changes it at level 150 and writes a file at the bottom.
  scratch_->MountOverlay(view, absl::StrCat(slow, ":", lower), fast, work);
  Fd v = OpenDir(root_.get(), "view");
  ASSERT_TRUE(WalkChain(v.get(), kDepth, true, [&](int level, int fd) {
    if (level == 150) WriteAt(fd, "l", "changed on the fast tier");
    if (level == 200) EXPECT_SYS_OK(unlinkat(fd, "l", 0));
    if (level == kDepth) {
      WriteAt(fd, "bottom", "deepest file");
      EXPECT_SYS_OK(fchmod(fd, 0710));
    }
  }));
  v.Reset();
  scratch_->Unmount(view);
  ASSERT_FALSE(HasFailure());

  {
    FdLimit limit(kFdLimit);
    ASSERT_TRUE(limit.ok());
    absl::StatusOr<WriteBackStats> stats = MergeUpperLayer(fast, slow);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_GE(stats->dirs, static_cast<uint64_t>(kDepth));
    EXPECT_EQ(stats->whiteouts, 1u);
    // Again over what it wrote: every directory now exists in S (no longer
    // fresh), the path of temporary names and exchanges.
    stats = MergeUpperLayer(fast, slow);
    ASSERT_TRUE(stats.ok()) << stats.status();
  }

  // [S over L] shows what [F over S, L] showed.
  scratch_->MountOverlay(view, lower, slow, work);
  v = OpenDir(root_.get(), "view");
  EXPECT_EQ(ChainDepth(v.get()), kDepth);
  ASSERT_TRUE(WalkChain(v.get(), kDepth, false, [&](int level, int fd) {
    if (level == 150) EXPECT_EQ(ReadAt(fd, "l"), "changed on the fast tier");
    if (level == 200) EXPECT_EQ(ReadAt(fd, "l"), "<No such file or directory>");
    if (level == 299) EXPECT_EQ(ReadAt(fd, "l"), "lower");
    if (level == kDepth) {
      EXPECT_EQ(ReadAt(fd, "bottom"), "deepest file");
      struct stat st;
      EXPECT_EQ(fstat(fd, &st), 0);
      EXPECT_EQ(st.st_mode & 07777, 0710u);
    }
  }));
  v.Reset();
  scratch_->Unmount(view);
}

}  // namespace
}  // namespace gputier
