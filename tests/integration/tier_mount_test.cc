// Live tiering of a running runc container's directory: the overlay built
// with the new mount API and moved into the container's mount namespace.
// Needs root, runc and busybox-static.
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "loader/base/mount_refs.h"
#include "loader/tier/fs/tier_mount.h"
#include "loader/tier/fs/tier_path.h"
#include "tests/integration/runc_container.h"
#include "tests/integration/agent_harness.h"

namespace gputier {
namespace {

using ::gputier::testing::PathExists;
using ::gputier::testing::SlurpFile;

using ::gputier::testing::CommandResult;
using ::gputier::testing::RuncContainer;
using ::gputier::testing::TempDir;

std::string NsLink(const std::string& path) {
  char buf[128] = {};
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, n) : "";
}

std::string RealPath(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) != nullptr ? std::string(buf) : path;
}

// The filesystem type of the host mount that holds `path`.
std::string HostFstype(const std::string& path) {
  struct statx stx = {};
  if (statx(AT_FDCWD, path.c_str(), 0, STATX_MNT_ID, &stx) != 0) return "";
  absl::StatusOr<std::vector<MountinfoEntry>> mounts =
      ParseMountinfo(SlurpFile("/proc/self/mountinfo"));
  if (!mounts.ok()) return "";
  for (const MountinfoEntry& m : *mounts) {
    if (m.mount_id == stx.stx_mnt_id) return m.fstype;
  }
  return "";
}

bool IsWhiteout(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == 0;
}

class TierMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (runc, setns, mounts)";
    if (!PathExists("/bin/busybox")) GTEST_SKIP() << "needs busybox-static";
    fast_ = std::make_unique<TempDir>("gputier-fast");
    ASSERT_FALSE(fast_->path().empty());
  }

  void StartContainer(const std::string& script = "exec sleep 100000") {
    RuncContainer::Options options;
    options.script = script;
    absl::StatusOr<std::unique_ptr<RuncContainer>> c = RuncContainer::Start(options);
    ASSERT_TRUE(c.ok()) << c.status();
    container_ = *std::move(c);
  }

  // Runs `script` in the container; fails the test unless it exits 0.
  std::string MustExec(const std::string& script) {
    absl::StatusOr<CommandResult> r = container_->Exec(script);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return "";
    EXPECT_EQ(r->exit_code, 0) << script << ": " << r->output;
    return r->output;
  }

  TierMountRequest Request(const std::string& path = "/data",
                           const std::string& tier_root = "") {
    TierMountRequest request;
    request.pid = container_->pid();
    request.path = *ParseContainerPath(path);
    absl::StatusOr<TierLayout> layout = PlanTierLayout(
        tier_root.empty() ? fast_->path() : tier_root, container_->id(), request.path);
    EXPECT_TRUE(layout.ok()) << layout.status();
    if (layout.ok()) request.layout = *layout;
    return request;
  }

  std::string ContainerMountinfo() {
    return SlurpFile(absl::StrCat("/proc/", container_->pid(), "/mountinfo"));
  }

  // Tear the container down before the tier directory (declaration order
  // would do it the other way round).
  void TearDown() override { container_.reset(); }

  std::unique_ptr<TempDir> fast_;
  std::unique_ptr<RuncContainer> container_;
};

TEST_F(TierMountTest, PromotedPathKeepsExistingFilesAndPutsNewWritesOnTheTier) {
  ASSERT_NO_FATAL_FAILURE(StartContainer());
  MustExec("echo old > /data/old.txt && mkdir /data/sub && echo deep > /data/sub/f");
  std::string agent_ns = NsLink("/proc/self/ns/mnt");

  absl::StatusOr<TierMount> mount = MountTier(Request());
  ASSERT_TRUE(mount.ok()) << mount.status();
  EXPECT_NE(mount->mount_id, 0u);
  EXPECT_EQ(mount->layout.upper,
            absl::StrCat(fast_->path(), "/", container_->id(), "/data/upper"));

  // Inside: same path, old files readable, the path is now an overlay.
  EXPECT_EQ(MustExec("cat /data/old.txt"), "old\n");
  EXPECT_EQ(MustExec("cat /data/sub/f"), "deep\n");
  EXPECT_EQ(MustExec("cd /data && pwd"), "/data\n");
  EXPECT_TRUE(absl::StrContains(MustExec("grep ' /data ' /proc/mounts"), "overlay"));

  // New writes land in the tier's upper dir on the host, not in the rootfs.
  MustExec("echo new > /data/new.txt && echo more >> /data/old.txt");
  EXPECT_EQ(SlurpFile(mount->layout.upper + "/new.txt"), "new\n");
  EXPECT_EQ(SlurpFile(mount->layout.upper + "/old.txt"), "old\nmore\n");  // copied up
  EXPECT_FALSE(PathExists(container_->rootfs() + "/data/new.txt"));
  EXPECT_EQ(SlurpFile(container_->rootfs() + "/data/old.txt"), "old\n");

  // The upper dir took the owner and mode of the directory it covers.
  struct stat original, upper;
  ASSERT_EQ(stat((container_->rootfs() + "/data").c_str(), &original), 0);
  ASSERT_EQ(stat(mount->layout.upper.c_str(), &upper), 0);
  EXPECT_EQ(original.st_mode, upper.st_mode);
  EXPECT_EQ(original.st_uid, upper.st_uid);

  // The agent's own mount namespace never changed.
  EXPECT_EQ(NsLink("/proc/self/ns/mnt"), agent_ns);
  // The host namespace has no overlay on the tier or the rootfs.
  std::string host_mounts = SlurpFile("/proc/self/mountinfo");
  EXPECT_FALSE(absl::StrContains(host_mounts, fast_->path()));
  EXPECT_FALSE(absl::StrContains(host_mounts, container_->rootfs()));

  // Tiering the same path twice is refused.
  absl::StatusOr<TierMount> again = MountTier(Request());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
}

TEST_F(TierMountTest, OpenFilesKeepWorkingAcrossPromotion) {
  // init holds fd 3 on /data/held and writes a line each time /tmp/go appears.
  ASSERT_NO_FATAL_FAILURE(StartContainer(
      "exec 3>>/data/held; echo before >&3; "
      "while :; do if [ -e /tmp/go ]; then echo after >&3; rm /tmp/go; fi; sleep 0.05; done"));
  std::string held = container_->rootfs() + "/data/held";
  for (int i = 0; i < 100 && SlurpFile(held).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(SlurpFile(held), "before\n");

  absl::StatusOr<TierMount> mount = MountTier(Request());
  ASSERT_TRUE(mount.ok()) << mount.status();

  MustExec("touch /tmp/go");
  std::string seen;
  for (int i = 0; i < 100; ++i) {
    seen = MustExec("cat /data/held");
    if (seen == "before\nafter\n") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // The fd opened before promotion still writes, into the original file
  // (now the lower layer), which the overlay shows while it is not copied up.
  EXPECT_EQ(seen, "before\nafter\n");
  EXPECT_EQ(SlurpFile(held), "before\nafter\n");
  EXPECT_FALSE(PathExists(mount->layout.upper + "/held"));
}

TEST_F(TierMountTest, UnmountRestoresTheOriginalView) {
  ASSERT_NO_FATAL_FAILURE(StartContainer());
  MustExec("echo old > /data/old.txt");
  absl::StatusOr<TierMount> mount = MountTier(Request());
  ASSERT_TRUE(mount.ok()) << mount.status();
  MustExec("echo new > /data/new.txt");
  ASSERT_EQ(MustExec("ls /data"), "new.txt\nold.txt\n");

  // A different expected mount id is refused and changes nothing.
  absl::Status wrong = UnmountTier(container_->pid(), {"/data"}, mount->mount_id + 1000);
  EXPECT_EQ(wrong.code(), absl::StatusCode::kFailedPrecondition) << wrong;
  EXPECT_EQ(MustExec("ls /data"), "new.txt\nold.txt\n");

  absl::Status unmounted = UnmountTier(container_->pid(), {"/data"}, mount->mount_id);
  ASSERT_TRUE(unmounted.ok()) << unmounted;

  EXPECT_EQ(MustExec("ls /data"), "old.txt\n");
  EXPECT_FALSE(absl::StrContains(MustExec("cat /proc/mounts"), " /data "));
  // What was written while tiered stays on the tier (no write-back yet).
  EXPECT_EQ(SlurpFile(mount->layout.upper + "/new.txt"), "new\n");

  // Nothing left to unmount: refused.
  absl::Status again = UnmountTier(container_->pid(), {"/data"}, 0);
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition) << again;
}

struct HostileCase {
  const char* description;
  const char* setup;          // run inside the container before tiering
  const char* tiered_path;    // what the agent is asked to tier
  const char* message_part;   // the refusal names why
};

// The container controls its rootfs: whatever it turns the tiered path into,
// the agent must refuse without mounting anything anywhere.
TEST_F(TierMountTest, HostileTargetsAreRefusedAndHostPathsStayUntouched) {
  const HostileCase cases[] = {
      {"symlink to /", "rm -rf /data && ln -s / /data", "/data", "symlink"},
      {"symlink to ../../..", "rm -rf /data && ln -s ../../.. /data", "/data", "symlink"},
      {"symlink to /proc/1/root/etc", "rm -rf /data && ln -s /proc/1/root/etc /data",
       "/data", "symlink"},
      {"symlink in a middle component", "rm -rf /deep && ln -s / /deep", "/deep/etc",
       "symlink"},
      {"regular file", "rm -rf /data && echo x > /data", "/data", "not a directory"},
      {"vanished", "rm -rf /data", "/data", "does not exist"},
  };
  ASSERT_NO_FATAL_FAILURE(StartContainer());
  for (const HostileCase& c : cases) {
    SCOPED_TRACE(c.description);
    MustExec(absl::StrCat("rm -rf /data /deep; mkdir /data; ", c.setup));
    std::string host_before = SlurpFile("/proc/self/mountinfo");
    std::string container_before = ContainerMountinfo();

    absl::StatusOr<TierMount> mount = MountTier(Request(c.tiered_path));
    ASSERT_FALSE(mount.ok());
    EXPECT_TRUE(absl::StrContains(mount.status().message(),
                                  absl::StrCat("'", c.tiered_path, "'")))
        << mount.status();
    EXPECT_TRUE(absl::StrContains(mount.status().message(), c.message_part))
        << mount.status();

    EXPECT_EQ(SlurpFile("/proc/self/mountinfo"), host_before);
    EXPECT_EQ(ContainerMountinfo(), container_before);
    EXPECT_FALSE(PathExists(absl::StrCat(fast_->path(), "/", container_->id())))
        << "a tier directory was created for a refused path";
    absl::Status unmount = UnmountTier(container_->pid(), *ParseContainerPath(c.tiered_path), 0);
    EXPECT_FALSE(unmount.ok());
  }
  // The host's /etc and / were never mounted over (checked above) and still
  // hold what they held.
  EXPECT_TRUE(PathExists("/etc/passwd"));
}

// The fast tier's stack: the slow upper (a plain host dir written by a real
// overlay: a copied-up file, a new file, a whiteout) above the original.
TEST_F(TierMountTest, FastStackShowsTheSlowLayerOverTheOriginalAndWritesToTheFastUpper) {
  ASSERT_NO_FATAL_FAILURE(StartContainer());
  TempDir slow_root("gputier-slow");
  ASSERT_FALSE(slow_root.path().empty());
  MustExec("echo old > /data/old.txt && echo doomed > /data/gone.txt && "
           "echo keep > /data/kept.txt");

  absl::StatusOr<TierMount> slow = MountTier(Request("/data", slow_root.path()));
  ASSERT_TRUE(slow.ok()) << slow.status();
  MustExec("echo slow > /data/new.txt && echo more >> /data/old.txt && rm /data/gone.txt");
  ASSERT_TRUE(IsWhiteout(slow->layout.upper + "/gone.txt"));
  ASSERT_TRUE(UnmountTier(container_->pid(), {"/data"}, slow->mount_id).ok());

  TierMountRequest request = Request("/data");
  request.extra_lowers = {slow->layout.upper};
  absl::StatusOr<TierMount> fast = MountTier(request);
  ASSERT_TRUE(fast.ok()) << fast.status();

  // Merged: the slow layer wins over the original, its whiteout hides a file.
  EXPECT_EQ(MustExec("ls /data"), "kept.txt\nnew.txt\nold.txt\n");
  EXPECT_EQ(MustExec("cat /data/old.txt"), "old\nmore\n");
  EXPECT_EQ(MustExec("cat /data/new.txt"), "slow\n");
  EXPECT_EQ(MustExec("cat /data/kept.txt"), "keep\n");

  // New writes, changes and deletions land in the fast upper only.
  MustExec("echo fast > /data/fresh.txt && echo again >> /data/new.txt && rm /data/kept.txt");
  EXPECT_EQ(MustExec("ls /data"), "fresh.txt\nnew.txt\nold.txt\n");
  EXPECT_EQ(SlurpFile(fast->layout.upper + "/fresh.txt"), "fast\n");
  EXPECT_EQ(SlurpFile(fast->layout.upper + "/new.txt"), "slow\nagain\n");
  EXPECT_TRUE(IsWhiteout(fast->layout.upper + "/kept.txt"));
  EXPECT_EQ(SlurpFile(slow->layout.upper + "/new.txt"), "slow\n");
  EXPECT_FALSE(PathExists(slow->layout.upper + "/fresh.txt"));
  EXPECT_EQ(SlurpFile(container_->rootfs() + "/data/kept.txt"), "keep\n");
  EXPECT_EQ(SlurpFile(container_->rootfs() + "/data/gone.txt"), "doomed\n");

  absl::StatusOr<PathMount> seen = InspectContainerPath(container_->pid(), {"/data"});
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->mount_id, fast->mount_id);
  EXPECT_EQ(seen->upperdir, RealPath(fast->layout.upper));
  EXPECT_EQ(seen->lowerdirs, (std::vector<std::string>{RealPath(slow->layout.upper), "/"}));
}

TEST_F(TierMountTest, InspectContainerPathReportsOverlayLayersAndPlainDirectories) {
  ASSERT_NO_FATAL_FAILURE(StartContainer());
  MustExec("mkdir /data/sub");

  absl::StatusOr<PathMount> plain = InspectContainerPath(container_->pid(), {"/data"});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->is_mount_root);
  EXPECT_NE(plain->mount_id, 0u);
  EXPECT_EQ(plain->fstype, HostFstype(container_->rootfs() + "/data"));
  EXPECT_FALSE(plain->fstype.empty());
  EXPECT_TRUE(plain->upperdir.empty());
  EXPECT_TRUE(plain->lowerdirs.empty());

  absl::StatusOr<TierMount> mount = MountTier(Request());
  ASSERT_TRUE(mount.ok()) << mount.status();
  absl::StatusOr<PathMount> tiered = InspectContainerPath(container_->pid(), {"/data"});
  ASSERT_TRUE(tiered.ok()) << tiered.status();
  EXPECT_TRUE(tiered->is_mount_root);
  EXPECT_EQ(tiered->mount_id, mount->mount_id);
  EXPECT_EQ(tiered->fstype, "overlay");
  EXPECT_EQ(tiered->upperdir, RealPath(mount->layout.upper));
  EXPECT_EQ(tiered->lowerdirs, std::vector<std::string>{"/"});  // the detached clone

  // Below the mount root: same mount, not its root.
  absl::StatusOr<PathMount> below = InspectContainerPath(container_->pid(), {"/data/sub"});
  ASSERT_TRUE(below.ok()) << below.status();
  EXPECT_FALSE(below->is_mount_root);
  EXPECT_EQ(below->mount_id, mount->mount_id);
  EXPECT_EQ(below->fstype, "overlay");

  // Resolved as safely as MountTier: a symlink is refused.
  MustExec("ln -s / /link");
  absl::StatusOr<PathMount> link = InspectContainerPath(container_->pid(), {"/link"});
  EXPECT_FALSE(link.ok());
  EXPECT_TRUE(absl::StrContains(link.status().message(), "symlink")) << link.status();
}

// Extra lowers come from the tier manager, but a wrong one must still be
// refused before anything is created or mounted.
TEST_F(TierMountTest, ExtraLowersMustBeExistingHostDirectoriesWithPlainNames) {
  ASSERT_NO_FATAL_FAILURE(StartContainer());
  TempDir lowers("gputier-lowers");
  ASSERT_FALSE(lowers.path().empty());
  const std::string real = lowers.path() + "/real";
  ASSERT_EQ(mkdir(real.c_str(), 0700), 0);
  ASSERT_EQ(symlink(real.c_str(), (lowers.path() + "/link").c_str()), 0);
  std::ofstream(lowers.path() + "/file") << "x";
  const struct {
    std::string lower;
    const char* message_part;
  } cases[] = {
      {"relative/dir", "not an absolute"},
      {real + ":x", "contains ':'"},
      {real + ",x", "contains ':'"},
      {real + "\\x", "contains ':'"},
      {lowers.path() + "/real/../real", "'..'"},
      {lowers.path() + "/link", "symlink"},
      {lowers.path() + "/missing", "does not exist"},
      {lowers.path() + "/file", "not a directory"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.lower);
    std::string container_before = ContainerMountinfo();
    TierMountRequest request = Request();
    request.extra_lowers = {real, c.lower};
    absl::StatusOr<TierMount> mount = MountTier(request);
    ASSERT_FALSE(mount.ok());
    EXPECT_TRUE(absl::StrContains(mount.status().message(), c.lower)) << mount.status();
    EXPECT_TRUE(absl::StrContains(mount.status().message(), c.message_part)) << mount.status();
    EXPECT_EQ(ContainerMountinfo(), container_before);
    EXPECT_FALSE(PathExists(absl::StrCat(fast_->path(), "/", container_->id())));
  }
  // The same request with a good lower works.
  TierMountRequest request = Request();
  request.extra_lowers = {real};
  absl::StatusOr<TierMount> mount = MountTier(request);
  EXPECT_TRUE(mount.ok()) << mount.status();
}

// MountTier creates what is missing below the tier root, never the root
// itself, and for a layout built by hand only upper and work themselves.
TEST_F(TierMountTest, LayoutDirectoriesAreCreatedOnlyBelowTheTierRoot) {
  ASSERT_NO_FATAL_FAILURE(StartContainer());
  std::string before = ContainerMountinfo();
  absl::StatusOr<TierMount> no_root = MountTier(Request("/data", fast_->path() + "/absent"));
  EXPECT_EQ(no_root.status().code(), absl::StatusCode::kFailedPrecondition) << no_root.status();
  EXPECT_TRUE(absl::StrContains(no_root.status().message(), "create it")) << no_root.status();
  EXPECT_FALSE(PathExists(fast_->path() + "/absent"));

  TierMountRequest outside = Request();
  outside.layout.work = "/tmp/gputier-not-below-the-root/work";
  absl::StatusOr<TierMount> refused = MountTier(outside);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_FALSE(PathExists("/tmp/gputier-not-below-the-root"));

  TierMountRequest by_hand = Request();
  by_hand.layout = {fast_->path() + "/hand", fast_->path() + "/hand/upper",
                    fast_->path() + "/hand/work"};
  absl::StatusOr<TierMount> no_parent = MountTier(by_hand);
  EXPECT_FALSE(no_parent.ok());
  EXPECT_TRUE(absl::StrContains(no_parent.status().message(), by_hand.layout.upper))
      << no_parent.status();
  EXPECT_FALSE(PathExists(by_hand.layout.dir));
  EXPECT_EQ(ContainerMountinfo(), before);

  ASSERT_EQ(mkdir(by_hand.layout.dir.c_str(), 0700), 0);
  absl::StatusOr<TierMount> mounted = MountTier(by_hand);
  ASSERT_TRUE(mounted.ok()) << mounted.status();
  MustExec("echo x > /data/by-hand");
  EXPECT_EQ(SlurpFile(by_hand.layout.upper + "/by-hand"), "x\n");
}

}  // namespace
}  // namespace gputier
