// The cgroup v2 freezer against a real runc container: a frozen container
// stops writing, a thawed one goes on. Needs root, runc and busybox-static.
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "loader/cgroup/cgroup_freezer.h"
#include "loader/base/mount_refs.h"
#include "tests/integration/runc_container.h"
#include "tests/integration/agent_harness.h"

namespace gputier {
namespace {

using ::gputier::testing::PathExists;
using ::gputier::testing::SlurpFile;

using ::gputier::testing::RuncContainer;

constexpr long kCgroup2Magic = 0x63677270;

off_t SizeOf(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

// Waits up to 5 s for `path` to grow past `size`.
bool GrowsPast(const std::string& path, off_t size) {
  for (int i = 0; i < 100; ++i) {
    if (SizeOf(path) > size) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

class FreezerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (runc, cgroup.freeze)";
    struct stat st;
    if (lstat("/bin/busybox", &st) != 0) GTEST_SKIP() << "needs busybox-static";
    absl::StatusOr<std::string> root = Cgroup2Root();
    if (!root.ok()) GTEST_SKIP() << root.status();
    cgroup2_root_ = *root;
  }

  // A container whose init appends a line to /data/log every 10 ms.
  void StartWriter() {
    RuncContainer::Options options;
    options.script = "while :; do echo tick >> /data/log; usleep 10000; done";
    absl::StatusOr<std::unique_ptr<RuncContainer>> c = RuncContainer::Start(options);
    ASSERT_TRUE(c.ok()) << c.status();
    container_ = *std::move(c);
    log_ = container_->rootfs() + "/data/log";
    dir_ = cgroup2_root_ + container_->cgroup();
    ASSERT_TRUE(GrowsPast(log_, 0)) << "the container never wrote";
  }

  // The file stops growing for `ms` (sampled every 20 ms).
  bool StaysStill(int ms) {
    off_t before = SizeOf(log_);
    for (int waited = 0; waited < ms; waited += 20) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (SizeOf(log_) != before) return false;
    }
    return true;
  }

  bool IsFrozen() {
    absl::StatusOr<bool> frozen = CgroupFrozen(dir_);
    EXPECT_TRUE(frozen.ok()) << frozen.status();
    return frozen.ok() && *frozen;
  }

  void TearDown() override {
    // Never leave runc a frozen container.
    if (!v1_freezer_.empty()) std::ofstream(v1_freezer_ + "/freezer.state") << "THAWED";
    if (!dir_.empty()) (void)ThawCgroup(dir_);
    container_.reset();
  }

  std::string cgroup2_root_;
  std::unique_ptr<RuncContainer> container_;
  std::string log_;
  std::string dir_;
  std::string v1_freezer_;  // set while a test holds the v1 freezer
};

TEST_F(FreezerTest, Cgroup2RootIsTheCgroup2MountAndHoldsTheContainer) {
  struct statfs sfs;
  ASSERT_EQ(statfs(cgroup2_root_.c_str(), &sfs), 0);
  EXPECT_EQ(sfs.f_type, kCgroup2Magic);
  ASSERT_NO_FATAL_FAILURE(StartWriter());
  absl::StatusOr<std::vector<pid_t>> procs = CgroupProcs(dir_);
  ASSERT_TRUE(procs.ok()) << procs.status();
  EXPECT_NE(std::find(procs->begin(), procs->end(), container_->pid()), procs->end());
  EXPECT_TRUE(std::is_sorted(procs->begin(), procs->end()));
}

TEST_F(FreezerTest, FrozenContainerStopsWritingAndThawedOneGoesOn) {
  ASSERT_NO_FATAL_FAILURE(StartWriter());
  absl::StatusOr<bool> frozen = CgroupFrozen(dir_);
  ASSERT_TRUE(frozen.ok()) << frozen.status();
  EXPECT_FALSE(*frozen);

  ASSERT_TRUE(FreezeCgroup(dir_, absl::Seconds(5)).ok());
  frozen = CgroupFrozen(dir_);
  ASSERT_TRUE(frozen.ok()) << frozen.status();
  EXPECT_TRUE(*frozen);
  EXPECT_TRUE(StaysStill(300)) << "the log grew while the container was frozen";
  // Freezing a frozen cgroup is a no-op that succeeds.
  EXPECT_TRUE(FreezeCgroup(dir_, absl::Seconds(5)).ok());

  off_t size = SizeOf(log_);
  ASSERT_TRUE(ThawCgroup(dir_).ok());
  frozen = CgroupFrozen(dir_);
  ASSERT_TRUE(frozen.ok()) << frozen.status();
  EXPECT_FALSE(*frozen);
  EXPECT_TRUE(GrowsPast(log_, size)) << "the log did not grow after thawing";
}

TEST_F(FreezerTest, ScopedFreezeThawsOnScopeExitUnlessKept) {
  ASSERT_NO_FATAL_FAILURE(StartWriter());
  {
    absl::StatusOr<ScopedFreeze> freeze = ScopedFreeze::Freeze(dir_, absl::Seconds(5));
    ASSERT_TRUE(freeze.ok()) << freeze.status();
    ScopedFreeze moved = *std::move(freeze);  // the moved-from one thaws nothing
    EXPECT_TRUE(IsFrozen());
    EXPECT_TRUE(StaysStill(100));
  }
  EXPECT_FALSE(IsFrozen());
  EXPECT_TRUE(GrowsPast(log_, SizeOf(log_)));

  {
    absl::StatusOr<ScopedFreeze> freeze = ScopedFreeze::Freeze(dir_, absl::Seconds(5));
    ASSERT_TRUE(freeze.ok()) << freeze.status();
    freeze->Keep();
  }
  EXPECT_TRUE(IsFrozen());
  ASSERT_TRUE(ThawCgroup(dir_).ok());

  absl::StatusOr<ScopedFreeze> freeze = ScopedFreeze::Freeze(dir_, absl::Seconds(5));
  ASSERT_TRUE(freeze.ok()) << freeze.status();
  EXPECT_TRUE(freeze->Thaw().ok());
  EXPECT_FALSE(IsFrozen());
}

// A container paused by someone else (runc pause writes cgroup.freeze too)
// is not unpaused when the scope ends.
TEST_F(FreezerTest, ScopedFreezeLeavesAnEarlierFreezeInPlace) {
  ASSERT_NO_FATAL_FAILURE(StartWriter());
  ASSERT_TRUE(FreezeCgroup(dir_, absl::Seconds(5)).ok());
  {
    absl::StatusOr<ScopedFreeze> freeze = ScopedFreeze::Freeze(dir_, absl::Seconds(5));
    ASSERT_TRUE(freeze.ok()) << freeze.status();
  }
  EXPECT_TRUE(IsFrozen());
  EXPECT_EQ(SlurpFile(dir_ + "/cgroup.freeze"), "1\n");
}

// The container's directory in a cgroup v1 freezer hierarchy, when the host
// has one (hybrid); empty otherwise.
std::string V1FreezerDir(pid_t pid) {
  absl::StatusOr<std::vector<MountinfoEntry>> mounts =
      ParseMountinfo(SlurpFile("/proc/self/mountinfo"));
  if (!mounts.ok()) return "";
  std::string mount_point;
  for (const MountinfoEntry& m : *mounts) {
    if (m.fstype == "cgroup" && std::find(m.super_options.begin(), m.super_options.end(),
                                          "freezer") != m.super_options.end()) {
      mount_point = m.mount_point;
    }
  }
  if (mount_point.empty()) return "";
  for (absl::string_view line :
       absl::StrSplit(SlurpFile(absl::StrCat("/proc/", pid, "/cgroup")), '\n')) {
    size_t at = line.find(":freezer:");
    if (at != absl::string_view::npos) return absl::StrCat(mount_point, line.substr(at + 9));
  }
  return "";
}

// A freeze that cannot complete in time must not leave the container frozen,
// and must say which cgroup. Tasks held by the v1 freezer never reach the v2
// freezer's trap, which makes the timeout certain; without a v1 freezer a
// zero timeout is used, which usually (not always) expires first.
TEST_F(FreezerTest, FreezeThatTimesOutThawsAgainAndNamesTheCgroup) {
  ASSERT_NO_FATAL_FAILURE(StartWriter());
  std::string v1 = V1FreezerDir(container_->pid());
  v1_freezer_ = v1;
  absl::Duration timeout = absl::ZeroDuration();
  if (!v1.empty()) {
    std::ofstream(v1 + "/freezer.state") << "FROZEN";
    for (int i = 0; i < 100 && SlurpFile(v1 + "/freezer.state") != "FROZEN\n"; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_EQ(SlurpFile(v1 + "/freezer.state"), "FROZEN\n");
    timeout = absl::Milliseconds(200);
  }
  absl::Status s = FreezeCgroup(dir_, timeout);
  if (!v1.empty()) std::ofstream(v1 + "/freezer.state") << "THAWED";
  if (s.ok() && v1.empty()) GTEST_SKIP() << "the cgroup froze before the first check";
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), dir_)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "thawed again")) << s;
  EXPECT_EQ(SlurpFile(dir_ + "/cgroup.freeze"), "0\n");
  EXPECT_FALSE(IsFrozen());
  EXPECT_TRUE(GrowsPast(log_, SizeOf(log_)));
}

TEST_F(FreezerTest, MissingOrWrongCgroupsAreClearErrors) {
  const std::string missing = cgroup2_root_ + "/gputier-no-such-cgroup";
  absl::Status s = FreezeCgroup(missing, absl::Seconds(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), missing)) << s;
  EXPECT_EQ(CgroupFrozen(missing).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(CgroupProcs(missing).status().code(), absl::StatusCode::kNotFound);
  // Thawing a cgroup that is gone has nothing to do.
  EXPECT_TRUE(ThawCgroup(missing).ok());

  s = FreezeCgroup("relative/cgroup", absl::Seconds(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;

  s = FreezeCgroup("/tmp", absl::Seconds(1));  // not cgroup2
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "cgroup2")) << s;

  s = FreezeCgroup(cgroup2_root_, absl::Seconds(1));  // the root cannot be frozen
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "root cgroup")) << s;
}

}  // namespace
}  // namespace gputier
