// Demotion write-back against real overlays: the layers are written by the
// kernel's own overlayfs (whiteouts, opaque directories, copy-ups), folded
// with MergeUpperLayer, and the overlay's view before and after is compared
// entry by entry. Needs root (mounts, chown, trusted.* xattrs).
#include "loader/tier/fs/tier_writeback.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "tests/integration/overlay_scratch.h"

namespace gputier {
namespace {

using ::gputier::testing::DiffSnapshots;
using ::gputier::testing::Pattern;
using ::gputier::testing::Scratch;
using ::gputier::testing::SnapshotTree;
using ::gputier::testing::WriteFile;

// A POSIX access ACL in its xattr form: user::rw- user:1234:rw- group::r--
// mask::rw- other::r--.
std::string AccessAcl() {
  struct Entry {
    uint16_t tag, perm;
    uint32_t id;
  } entries[] = {{0x01, 6, ~0u}, {0x02, 6, 1234}, {0x04, 4, ~0u}, {0x10, 6, ~0u}, {0x20, 4, ~0u}};
  uint32_t version = 2;
  std::string out(reinterpret_cast<const char*>(&version), sizeof(version));
  out.append(reinterpret_cast<const char*>(entries), sizeof(entries));
  return out;
}

// security.capability (VFS_CAP_REVISION_2, effective): cap_net_bind_service.
std::string NetBindCapability() {
  uint32_t data[5] = {0x02000000u | 1u, 1u << 10, 0, 0, 0};
  return std::string(reinterpret_cast<const char*>(data), sizeof(data));
}

void SetTimes(const std::string& path, time_t atime, time_t mtime, int flags = 0) {
  struct timespec ts[2] = {{atime, 123}, {mtime, 456789}};
  EXPECT_SYS_OK(utimensat(AT_FDCWD, path.c_str(), ts, flags));
}

// L, S and F of one tiered directory, S and F written through real overlays.
struct Stack {
  std::string lower, slow, fast, slow_work, fast_work, view;
};

Stack MakeStack(Scratch& scratch) {
  return Stack{scratch.Dir("L"), scratch.Dir("S"),  scratch.Dir("F"),
               scratch.Dir("W1"), scratch.Dir("W2"), scratch.Dir("view")};
}

// The container's original directory.
void FillLower(const Stack& s) {
  auto p = [&](const std::string& rel) { return absl::StrCat(s.lower, "/", rel); };
  for (const char* f : {"keep.txt", "del.txt", "over.txt", "chmod.txt", "chown.txt", "xattr.txt",
                        "times.txt", "caps.bin", "f2d", "del2.txt", "rename_me.txt", "h_l1"}) {
    WriteFile(p(f), absl::StrCat("lower ", f, "\n"));
  }
  EXPECT_SYS_OK(link(p("h_l1").c_str(), p("h_l2").c_str()));
  EXPECT_SYS_OK(setxattr(p("xattr.txt").c_str(), "user.a", "1", 1, 0));
  for (const char* d : {"ld", "ld/sub", "lm", "d2f", "deep", "deep/a", "deep/a/b", "deep/a/b/c",
                        "wd", "op"}) {
    EXPECT_SYS_OK(mkdir(p(d).c_str(), 0755));
  }
  for (const char* f : {"ld/a", "ld/b", "ld/sub/c", "lm/a", "lm/b", "d2f/x", "deep/a/b/c/file",
                        "wd/x", "wd/y", "op/x"}) {
    WriteFile(p(f), absl::StrCat("lower ", f, "\n"));
  }
  EXPECT_SYS_OK(setxattr(p("lm").c_str(), "user.d", "dir", 3, 0));
  EXPECT_SYS_OK(symlink("keep.txt", p("lsym").c_str()));
}

// Changes made while the directory was on the slow tier, through [S over L].
void ChangeThroughSlow(Scratch& scratch, const Stack& s) {
  scratch.MountOverlay(s.view, s.lower, s.slow, s.slow_work);
  auto p = [&](const std::string& rel) { return absl::StrCat(s.view, "/", rel); };
  for (const char* f : {"s_new.txt", "s_del.txt", "s_over.txt", "s_f2d", "s_h1"}) {
    WriteFile(p(f), absl::StrCat("slow ", f, "\n"));
  }
  EXPECT_SYS_OK(link(p("s_h1").c_str(), p("s_h2").c_str()));
  for (const char* d : {"s_dir", "s_d2f"}) EXPECT_SYS_OK(mkdir(p(d).c_str(), 0755));
  for (const char* f : {"s_dir/a", "s_dir/b", "s_d2f/x"}) WriteFile(p(f), "slow\n");
  EXPECT_SYS_OK(symlink("s_new.txt", p("s_sym").c_str()));
  EXPECT_SYS_OK(unlink(p("del2.txt").c_str()));
  std::filesystem::remove_all(p("wd"));
  std::filesystem::remove_all(p("op"));
  EXPECT_SYS_OK(mkdir(p("op").c_str(), 0755));  // opaque in S
  WriteFile(p("op/s1"), "slow op\n");
  EXPECT_SYS_OK(setxattr(p("lm").c_str(), "user.s", "slow", 4, 0));
  EXPECT_SYS_OK(mkdir(p("acld").c_str(), 0755));  // files made in it inherit an ACL
  std::string acl = AccessAcl();
  EXPECT_SYS_OK(setxattr(p("acld").c_str(), "system.posix_acl_default", acl.data(), acl.size(), 0));
  scratch.Unmount(s.view);
}

// Changes made on the fast tier, through [F over S, L]; returns the view.
std::vector<std::string> ChangeThroughFast(Scratch& scratch, const Stack& s, int bulk_files) {
  scratch.MountOverlay(s.view, absl::StrCat(s.slow, ":", s.lower), s.fast, s.fast_work);
  auto p = [&](const std::string& rel) { return absl::StrCat(s.view, "/", rel); };
  WriteFile(p("over.txt"), "fast over\n");
  WriteFile(p("s_over.txt"), "fast s_over\n");
  EXPECT_SYS_OK(unlink(p("del.txt").c_str()));
  EXPECT_SYS_OK(unlink(p("s_del.txt").c_str()));
  EXPECT_SYS_OK(chmod(p("chmod.txt").c_str(), 04755));
  EXPECT_SYS_OK(chown(p("chown.txt").c_str(), 1234, 5678));
  EXPECT_SYS_OK(setxattr(p("xattr.txt").c_str(), "user.b", "2", 1, 0));
  EXPECT_SYS_OK(removexattr(p("xattr.txt").c_str(), "user.a"));
  EXPECT_SYS_OK(chown(p("caps.bin").c_str(), 1000, 1000));
  std::string cap = NetBindCapability();
  EXPECT_SYS_OK(setxattr(p("caps.bin").c_str(), "security.capability", cap.data(), cap.size(), 0));
  WriteFile(p("trusted.txt"), "t\n");
  EXPECT_SYS_OK(setxattr(p("trusted.txt").c_str(), "trusted.gputier_test", "v", 1, 0));
  WriteFile(p("acl.txt"), "acl\n");
  std::string acl = AccessAcl();
  EXPECT_SYS_OK(setxattr(p("acl.txt").c_str(), "system.posix_acl_access", acl.data(), acl.size(), 0));
  EXPECT_SYS_OK(removexattr(p("acld").c_str(), "system.posix_acl_default"));
  WriteFile(p("acld/plain"), "no acl\n");
  std::filesystem::remove_all(p("ld"));  // then recreated: opaque in F
  EXPECT_SYS_OK(mkdir(p("ld").c_str(), 0755));
  WriteFile(p("ld/new"), "fast ld\n");
  WriteFile(p("lm/c"), "fast lm\n");
  EXPECT_SYS_OK(unlink(p("lm/a").c_str()));
  EXPECT_SYS_OK(removexattr(p("lm").c_str(), "user.s"));
  EXPECT_SYS_OK(chmod(p("lm").c_str(), 0750));
  for (const char* f : {"f2d", "s_f2d"}) {  // files become directories
    EXPECT_SYS_OK(unlink(p(f).c_str()));
    EXPECT_SYS_OK(mkdir(p(f).c_str(), 0711));
    WriteFile(p(absl::StrCat(f, "/child")), "fast child\n");
  }
  for (const char* d : {"d2f", "s_d2f"}) {  // directories become files
    std::filesystem::remove_all(p(d));
    WriteFile(p(d), "fast file\n");
  }
  EXPECT_SYS_OK(unlink(p("lsym").c_str()));
  EXPECT_SYS_OK(symlink("over.txt", p("lsym").c_str()));
  EXPECT_SYS_OK(unlink(p("s_sym").c_str()));
  EXPECT_SYS_OK(symlink("/nonexistent/target", p("s_sym").c_str()));
  EXPECT_SYS_OK(symlink("/etc", p("abs_etc").c_str()));
  EXPECT_SYS_OK(symlink("keep.txt", p("tsym").c_str()));
  EXPECT_SYS_OK(lchown(p("tsym").c_str(), 4321, 4321));
  SetTimes(p("tsym"), 1000000000, 1100000000, AT_SYMLINK_NOFOLLOW);
  WriteFile(p("deep/a/b/c/file2"), "fast deep\n");
  WriteFile(p("del2.txt"), "back\n");  // over a whiteout in S
  EXPECT_SYS_OK(mkdir(p("wd").c_str(), 0755));   // not opaque in F, over a whiteout in S
  WriteFile(p("wd/z"), "fast wd\n");
  WriteFile(p("op/f1"), "fast op\n");  // merges into an opaque dir of S
  EXPECT_SYS_OK(rename(p("rename_me.txt").c_str(), p("renamed.txt").c_str()));
  WriteFile(p("h_l1"), "appended\n", O_APPEND);  // copy-up breaks the lower link
  WriteFile(p("n_h1"), "hard\n");
  EXPECT_SYS_OK(mkdir(p("hd").c_str(), 0755));
  EXPECT_SYS_OK(link(p("n_h1").c_str(), p("n_h2").c_str()));
  EXPECT_SYS_OK(link(p("n_h1").c_str(), p("hd/n_h3").c_str()));
  WriteFile(p("s_dir/c"), "fast s_dir\n");
  EXPECT_SYS_OK(unlink(p("s_dir/a").c_str()));
  EXPECT_SYS_OK(mkfifo(p("fifo").c_str(), 0640));
  EXPECT_SYS_OK(mknod(p("cdev").c_str(), S_IFCHR | 0600, makedev(1, 3)));
  int sock = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::string sock_path = p("sock");
  if (sock_path.size() < sizeof(addr.sun_path)) {
    std::memcpy(addr.sun_path, sock_path.c_str(), sock_path.size() + 1);
    EXPECT_SYS_OK(bind(sock, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)));
  }
  close(sock);
  int fd = open(p("sparse.bin").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  EXPECT_SYS_OK(ftruncate(fd, 8 << 20));
  std::string chunk = Pattern(4096, 7);
  EXPECT_EQ(pwrite(fd, chunk.data(), chunk.size(), 3 << 20), 4096);
  close(fd);
  WriteFile(p("big.bin"), Pattern(3 << 20, 11));
  WriteFile(p("empty.txt"), "");
  for (const char* odd : {"sp ace", "new\nline", "\xc3\xbcn\xc3\xaf", ".hidden"}) {
    WriteFile(p(odd), odd);
  }
  EXPECT_SYS_OK(mkdir(p("bulk").c_str(), 0755));
  for (int i = 0; i < bulk_files; ++i) {
    WriteFile(p(absl::StrCat("bulk/f", i)), Pattern(64 << 10, i));
  }
  EXPECT_SYS_OK(mkdir(p("rodir").c_str(), 0755));
  WriteFile(p("rodir/inside"), "ro\n");
  EXPECT_SYS_OK(chmod(p("rodir").c_str(), 0500));
  EXPECT_SYS_OK(mkdir(p("sgid").c_str(), 0755));
  EXPECT_SYS_OK(chown(p("sgid").c_str(), 0, 100));
  EXPECT_SYS_OK(chmod(p("sgid").c_str(), 02775));
  SetTimes(p("times.txt"), 1000000000, 1200000000);
  SetTimes(p("lm"), 1000000001, 1200000001);
  SetTimes(p("ld"), 1000000002, 1200000002);
  EXPECT_SYS_OK(chmod(s.view.c_str(), 0751));
  EXPECT_SYS_OK(setxattr(s.view.c_str(), "user.root", "r", 1, 0));
  SetTimes(s.view, 1000000003, 1200000003);
  std::vector<std::string> view = SnapshotTree(s.view);
  scratch.Unmount(s.view);
  return view;
}

// What [S over L] shows now.
std::vector<std::string> SlowView(Scratch& scratch, const Stack& s) {
  scratch.MountOverlay(s.view, s.lower, s.slow, s.slow_work);
  std::vector<std::string> view = SnapshotTree(s.view);
  scratch.Unmount(s.view);
  return view;
}

class WriteBackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (overlay mounts, chown, trusted.* xattrs)";
    scratch_ = std::make_unique<Scratch>();
    ASSERT_TRUE(scratch_->ok()) << "scratch dir under /var/tmp: " << std::strerror(errno);
  }

  // Builds L, S and F through overlays; returns the stacked view.
  std::vector<std::string> BuildStack(Scratch& scratch, Stack* stack, int bulk_files = 20) {
    *stack = MakeStack(scratch);
    FillLower(*stack);
    ChangeThroughSlow(scratch, *stack);
    return ChangeThroughFast(scratch, *stack, bulk_files);
  }

  std::unique_ptr<Scratch> scratch_;
};

TEST_F(WriteBackTest, FoldedLayerShowsTheSameTreeAsTheStack) {
  Stack s;
  std::vector<std::string> stacked = BuildStack(*scratch_, &s);
  ASSERT_FALSE(HasFailure());
  std::vector<std::string> fast_before = SnapshotTree(s.fast);
  // The kernel wrote the on-disk forms this test is about.
  struct stat st;
  ASSERT_EQ(lstat((s.fast + "/del.txt").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode) && st.st_rdev == 0) << "whiteout";
  char v[8];
  EXPECT_EQ(lgetxattr((s.fast + "/ld").c_str(), "trusted.overlay.opaque", v, sizeof(v)), 1);
  EXPECT_LT(lgetxattr((s.fast + "/wd").c_str(), "trusted.overlay.opaque", v, sizeof(v)), 0);

  absl::StatusOr<WriteBackStats> stats = MergeUpperLayer(s.fast, s.slow);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(DiffSnapshots(stacked, SlowView(*scratch_, s)), "");
  EXPECT_EQ(DiffSnapshots(fast_before, SnapshotTree(s.fast)), "") << "src was modified";

  EXPECT_GE(stats->whiteouts, 4u);
  EXPECT_GE(stats->opaque_dirs, 4u);  // ld, wd, f2d, s_f2d
  EXPECT_EQ(stats->hardlinks, 2u);
  EXPECT_GE(stats->symlinks, 4u);
  EXPECT_EQ(stats->specials, 3u);
  EXPECT_GT(stats->bytes, 3u << 20);
  // On disk: hard links stay links, holes stay holes, wd became opaque.
  struct stat a, b;
  ASSERT_EQ(lstat((s.slow + "/n_h1").c_str(), &a), 0);
  ASSERT_EQ(lstat((s.slow + "/hd/n_h3").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  ASSERT_EQ(lstat((s.slow + "/sparse.bin").c_str(), &a), 0);
  EXPECT_LT(a.st_blocks * 512, 1 << 20);
  EXPECT_EQ(lgetxattr((s.slow + "/wd").c_str(), "trusted.overlay.opaque", v, sizeof(v)), 1);
  EXPECT_EQ(lgetxattr((s.slow + "/op").c_str(), "trusted.overlay.opaque", v, sizeof(v)), 1);
}

TEST_F(WriteBackTest, MergingTwiceGivesTheSameLayer) {
  Stack s;
  std::vector<std::string> stacked = BuildStack(*scratch_, &s);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(MergeUpperLayer(s.fast, s.slow).ok());
  std::vector<std::string> once = SnapshotTree(s.slow);
  absl::StatusOr<WriteBackStats> again = MergeUpperLayer(s.fast, s.slow);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(DiffSnapshots(once, SnapshotTree(s.slow)), "");
  EXPECT_EQ(DiffSnapshots(stacked, SlowView(*scratch_, s)), "");
}

TEST_F(WriteBackTest, RerunAfterAKilledMergeConverges) {
  // How long an uninterrupted merge takes, to spread the kills over it.
  Stack timing;
  BuildStack(*scratch_, &timing, 200);
  ASSERT_FALSE(HasFailure());
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(MergeUpperLayer(timing.fast, timing.slow).ok());
  auto full_us = std::chrono::duration_cast<std::chrono::microseconds>(
                     std::chrono::steady_clock::now() - start).count();
  int interrupted = 0;
  for (int seed = 1; seed <= 8; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    Scratch scratch;
    ASSERT_TRUE(scratch.ok());
    Stack s;
    std::vector<std::string> stacked = BuildStack(scratch, &s, 200);
    ASSERT_FALSE(HasFailure());
    std::mt19937 rng(seed);
    auto delay = std::chrono::microseconds(
        std::uniform_int_distribution<long>(0, full_us)(rng));
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) _exit(MergeUpperLayer(s.fast, s.slow).ok() ? 0 : 1);
    std::this_thread::sleep_for(delay);
    kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    if (WIFSIGNALED(status)) ++interrupted;
    else EXPECT_EQ(WEXITSTATUS(status), 0);
    absl::StatusOr<WriteBackStats> rerun = MergeUpperLayer(s.fast, s.slow);
    ASSERT_TRUE(rerun.ok()) << rerun.status();
    EXPECT_EQ(DiffSnapshots(stacked, SlowView(scratch, s)), "");
    std::vector<std::string> slow = SnapshotTree(s.slow);
    for (const std::string& line : slow) {
      EXPECT_FALSE(absl::StrContains(line, kWriteBackTempPrefix)) << "leftover: " << line;
    }
  }
  std::cout << "merge of the full stack: " << full_us << " us; " << interrupted
            << " of 8 merges killed midway\n";
  EXPECT_GT(interrupted, 0);
}

// Layers built directly on disk (not through an overlay) for the hostile cases.
TEST_F(WriteBackTest, SymlinksAreCopiedAsSymlinksAndNeverFollowed) {
  std::string fast = scratch_->Dir("F"), slow = scratch_->Dir("S"), outside = scratch_->Dir("out");
  struct stat etc_before;
  ASSERT_EQ(lstat("/etc", &etc_before), 0);
  char etc_xattrs[4096];
  ssize_t etc_xattr_len = llistxattr("/etc", etc_xattrs, sizeof(etc_xattrs));
  // F: a symlink to /etc with its own owner, times and xattr; S has a
  // directory there.
  EXPECT_SYS_OK(symlink("/etc", (fast + "/etc").c_str()));
  EXPECT_SYS_OK(lchown((fast + "/etc").c_str(), 4321, 4321));
  EXPECT_SYS_OK(lsetxattr((fast + "/etc").c_str(), "trusted.gputier_test", "x", 1, 0));
  SetTimes(fast + "/etc", 1000000000, 1000000000, AT_SYMLINK_NOFOLLOW);
  EXPECT_SYS_OK(mkdir((slow + "/etc").c_str(), 0755));
  WriteFile(slow + "/etc/passwd", "not the host's\n");
  // S: symlinks to a directory outside; F writes below the same names.
  EXPECT_SYS_OK(symlink(outside.c_str(), (slow + "/conf").c_str()));
  EXPECT_SYS_OK(symlink(outside.c_str(), (slow + "/conf2").c_str()));
  EXPECT_SYS_OK(mkdir((fast + "/conf").c_str(), 0755));
  WriteFile(fast + "/conf/passwd", "fast\n");
  EXPECT_SYS_OK(mkdir((fast + "/conf2").c_str(), 0755));
  EXPECT_SYS_OK(setxattr((fast + "/conf2").c_str(), "trusted.overlay.opaque", "y", 1, 0));
  WriteFile(fast + "/conf2/passwd", "fast\n");
  ASSERT_FALSE(HasFailure());

  absl::StatusOr<WriteBackStats> stats = MergeUpperLayer(fast, slow);
  ASSERT_TRUE(stats.ok()) << stats.status();

  struct stat st;
  ASSERT_EQ(lstat((slow + "/etc").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_uid, 4321u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1000000000);
  char target[64] = {};
  EXPECT_EQ(readlink((slow + "/etc").c_str(), target, sizeof(target) - 1), 4);
  EXPECT_STREQ(target, "/etc");
  struct stat etc_after;
  ASSERT_EQ(lstat("/etc", &etc_after), 0);
  EXPECT_EQ(etc_after.st_uid, etc_before.st_uid);
  EXPECT_EQ(etc_after.st_gid, etc_before.st_gid);
  EXPECT_EQ(etc_after.st_mode, etc_before.st_mode);
  EXPECT_EQ(etc_after.st_mtim.tv_sec, etc_before.st_mtim.tv_sec);
  EXPECT_EQ(etc_after.st_mtim.tv_nsec, etc_before.st_mtim.tv_nsec);
  EXPECT_EQ(etc_after.st_ctim.tv_nsec, etc_before.st_ctim.tv_nsec);
  EXPECT_EQ(llistxattr("/etc", etc_xattrs, sizeof(etc_xattrs)), etc_xattr_len);
  for (const char* name : {"conf", "conf2"}) {
    ASSERT_EQ(lstat((slow + "/" + name).c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode)) << name;
    char v[4];
    EXPECT_EQ(getxattr((slow + "/" + name).c_str(), "trusted.overlay.opaque", v, sizeof(v)), 1)
        << name << " replaces a symlink: the lower layer must stay hidden";
  }
  EXPECT_TRUE(std::filesystem::is_empty(outside)) << "wrote through a symlink of S";
}

TEST_F(WriteBackTest, MountPointsInsideEitherLayerAreRefused) {
  std::string fast = scratch_->Dir("F"), slow = scratch_->Dir("S"), other = scratch_->Dir("other");
  WriteFile(other + "/secret", "other mount\n");
  EXPECT_SYS_OK(mkdir((fast + "/mnt").c_str(), 0755));
  scratch_->Bind(other, fast + "/mnt");
  absl::StatusOr<WriteBackStats> stats = MergeUpperLayer(fast, slow);
  ASSERT_FALSE(stats.ok());
  EXPECT_TRUE(absl::StrContains(stats.status().message(), "'mnt' is a mount point"))
      << stats.status();
  EXPECT_TRUE(absl::StrContains(stats.status().message(), "src layer '" + fast + "'"))
      << stats.status();
  scratch_->Unmount(fast + "/mnt");

  // In dst: F writes below a directory that is a mount point in S.
  EXPECT_SYS_OK(mkdir((fast + "/mnt/sub").c_str(), 0755));
  EXPECT_SYS_OK(mkdir((slow + "/mnt").c_str(), 0755));
  scratch_->Bind(other, slow + "/mnt");
  stats = MergeUpperLayer(fast, slow);
  ASSERT_FALSE(stats.ok());
  EXPECT_TRUE(absl::StrContains(stats.status().message(), "dst layer '" + slow + "': 'mnt'"))
      << stats.status();
  EXPECT_FALSE(std::filesystem::exists(other + "/sub")) << "wrote into the other mount";
  // Nor may a whiteout in F remove it.
  EXPECT_SYS_OK(rmdir((fast + "/mnt/sub").c_str()));
  EXPECT_SYS_OK(rmdir((fast + "/mnt").c_str()));
  EXPECT_SYS_OK(mknod((fast + "/mnt").c_str(), S_IFCHR, makedev(0, 0)));
  stats = MergeUpperLayer(fast, slow);
  ASSERT_FALSE(stats.ok());
  EXPECT_TRUE(std::filesystem::exists(other + "/secret"));
}

TEST_F(WriteBackTest, ForeignAndOverlappingLayersAreRefused) {
  std::string fast = scratch_->Dir("F"), slow = scratch_->Dir("S");
  EXPECT_SYS_OK(mkdir((fast + "/moved").c_str(), 0755));
  EXPECT_SYS_OK(setxattr((fast + "/moved").c_str(), "trusted.overlay.redirect", "/x", 2, 0));
  absl::StatusOr<WriteBackStats> stats = MergeUpperLayer(fast, slow);
  ASSERT_FALSE(stats.ok());
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(stats.status().message(), "'moved' has trusted.overlay.redirect"))
      << stats.status();
  EXPECT_SYS_OK(rmdir((fast + "/moved").c_str()));
  WriteFile(fast + "/meta", "");
  EXPECT_SYS_OK(setxattr((fast + "/meta").c_str(), "trusted.overlay.metacopy", "", 0, 0));
  EXPECT_FALSE(MergeUpperLayer(fast, slow).ok());

  EXPECT_EQ(MergeUpperLayer(fast, fast).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_SYS_OK(mkdir((fast + "/inner").c_str(), 0755));
  EXPECT_EQ(MergeUpperLayer(fast, fast + "/inner").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MergeUpperLayer(fast + "/inner", fast).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(WriteBackTest, RemoveTreeRemovesEverythingButNeverFollowsSymlinks) {
  std::string victim = scratch_->Dir("victim"), outside = scratch_->Dir("outside");
  EXPECT_SYS_OK(mkdir((outside + "/inner").c_str(), 0755));
  WriteFile(outside + "/inner/keep", "keep\n");
  EXPECT_SYS_OK(mkdir((victim + "/sub").c_str(), 0500));
  WriteFile(victim + "/sub/file", "x\n");
  EXPECT_SYS_OK(symlink(outside.c_str(), (victim + "/link").c_str()));
  EXPECT_SYS_OK(symlink((outside + "/inner").c_str(), (victim + "/sub/link2").c_str()));
  EXPECT_SYS_OK(mkfifo((victim + "/fifo").c_str(), 0600));
  EXPECT_SYS_OK(symlink(outside.c_str(), (scratch_->path() + "/toplink").c_str()));
  ASSERT_FALSE(HasFailure());
  int root = open(scratch_->path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  EXPECT_TRUE(RemoveTree(root, "victim").ok());
  EXPECT_TRUE(RemoveTree(root, "toplink").ok());
  EXPECT_TRUE(RemoveTree(root, "absent").ok());
  EXPECT_EQ(RemoveTree(root, "outside/inner").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RemoveTree(root, "..").code(), absl::StatusCode::kInvalidArgument);
  close(root);
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(victim)));
  EXPECT_FALSE(std::filesystem::exists(
      std::filesystem::symlink_status(scratch_->path() + "/toplink")));
  EXPECT_TRUE(std::filesystem::exists(outside + "/inner/keep"));
}

TEST_F(WriteBackTest, RemoveTreeRefusesToCrossIntoAnotherMount) {
  std::string tree = scratch_->Dir("tree"), other = scratch_->Dir("other");
  WriteFile(other + "/keep", "keep\n");
  EXPECT_SYS_OK(mkdir((tree + "/a").c_str(), 0755));
  EXPECT_SYS_OK(mkdir((tree + "/a/m").c_str(), 0755));
  scratch_->Bind(other, tree + "/a/m");
  int root = open(scratch_->path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  absl::Status s = RemoveTree(root, "tree");
  close(root);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "'tree/a/m' is a mount point")) << s;
  EXPECT_TRUE(std::filesystem::exists(other + "/keep"));
}

}  // namespace
}  // namespace gputier
