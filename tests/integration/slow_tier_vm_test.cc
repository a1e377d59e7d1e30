// A slow tier with real added latency: in the VM cells, a dm-delay device
// (device-mapper delaying every I/O) on a loop device carries an ext4
// filesystem that gputierd uses as its slow tier, beside a tmpfs fast tier.
// The test proves the latency is real (fsync on the slow tier waits for the
// delay, on the fast tier it does not), that gputierd takes the pair, and
// that the guard covers the fast tier only: in enforce mode a CPU cgroup
// writes to the slow tier unhindered. The CI host kernel has no
// device-mapper, so the host skips it.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "tests/integration/agent_harness.h"

namespace gputier::testing {
namespace {

constexpr int kDelayMs = 40;

int Sh(const std::string& cmd) { return system(cmd.c_str()); }

std::string ShOut(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[256];
  while (fgets(buf, sizeof(buf), p) != nullptr) out += buf;
  pclose(p);
  return std::string(absl::StripAsciiWhitespace(out));
}

// Median milliseconds of `n` rounds of "write 4 KiB, fsync" to a new file in `dir`.
double MedianFsyncMs(const std::string& dir, int n) {
  std::vector<double> ms;
  const std::string block(4096, 'x');
  for (int i = 0; i < n; ++i) {
    const std::string path = absl::StrCat(dir, "/probe", i);
    auto t0 = std::chrono::steady_clock::now();
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    bool ok = write(fd, block.data(), block.size()) == static_cast<ssize_t>(block.size()) && fsync(fd) == 0;
    close(fd);
    if (!ok) return -1;
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

class SlowTierVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    if (getenv("GPUTIER_VM") == nullptr) {
      GTEST_SKIP() << "device-mapper is not in the CI host's kernel; the VM cells run this";
    }
    ASSERT_EQ(Sh("vm-modprobe dm-delay >/dev/null 2>&1 && vm-modprobe loop >/dev/null 2>&1 && "
                 "vm-modprobe ext4 >/dev/null 2>&1"),
              0)
        << "could not load dm-delay, loop and ext4 in the VM";
    base_ = agent_.work_dir();
    image_ = base_ + "/slow.img";
    fast_ = base_ + "/fast";
    slow_ = base_ + "/slow";
    name_ = absl::StrCat("gt-slow-", getpid());
    ASSERT_EQ(mkdir(fast_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(slow_.c_str(), 0755), 0);
    ASSERT_EQ(mount("gt-fast", fast_.c_str(), "tmpfs", 0, "size=16m"), 0) << strerror(errno);
    fast_mounted_ = true;
    ASSERT_EQ(Sh(absl::StrCat("truncate -s 64M ", image_)), 0);
    loop_ = ShOut(absl::StrCat("losetup -f --show ", image_));
    ASSERT_FALSE(loop_.empty()) << "losetup failed";
    const std::string sectors = ShOut(absl::StrCat("blockdev --getsz ", loop_));
    ASSERT_FALSE(sectors.empty());
    // Every read and write waits kDelayMs before reaching the loop device.
    ASSERT_EQ(Sh(absl::StrFormat("dmsetup create %s --table '0 %s delay %s 0 %d' >/dev/null", name_, sectors,
                                 loop_, kDelayMs)),
              0);
    dm_ = true;
    const std::string dev = "/dev/mapper/" + name_;
    ASSERT_EQ(Sh(absl::StrCat("test -b ", dev, " || dmsetup mknodes ", name_)), 0);
    ASSERT_EQ(Sh(absl::StrCat("mkfs.ext4 -q -F -E nodiscard ", dev, " >/dev/null 2>&1")), 0);
    ASSERT_EQ(mount(dev.c_str(), slow_.c_str(), "ext4", 0, nullptr), 0) << strerror(errno);
    slow_mounted_ = true;
  }

  void TearDown() override {
    (void)agent_.Stop();
    if (slow_mounted_) umount2(slow_.c_str(), 0);
    if (dm_) Sh(absl::StrCat("dmsetup remove ", name_, " >/dev/null 2>&1"));
    if (!loop_.empty()) Sh(absl::StrCat("losetup -d ", loop_));
    if (fast_mounted_) umount2(fast_.c_str(), MNT_DETACH);
  }

  AgentProcess agent_;
  std::string base_, image_, fast_, slow_, name_, loop_;
  bool fast_mounted_ = false, slow_mounted_ = false, dm_ = false;
};

TEST_F(SlowTierVmTest, DmDelaySlowTierAddsRealLatencyAndTheGuardLeavesItAlone) {
  const double slow_ms = MedianFsyncMs(slow_, 5);
  const double fast_ms = MedianFsyncMs(fast_, 5);
  ASSERT_GE(slow_ms, 0) << "writing the slow tier failed";
  ASSERT_GE(fast_ms, 0) << "writing the fast tier failed";
  // An fsync on ext4 writes data and the journal: at least one delayed I/O.
  EXPECT_GE(slow_ms, kDelayMs) << "slow " << slow_ms << " ms, fast " << fast_ms << " ms";
  EXPECT_LT(fast_ms, slow_ms - kDelayMs / 2) << "slow " << slow_ms << " ms, fast " << fast_ms << " ms";
  std::printf("fsync of 4 KiB: slow tier (dm-delay %d ms) %.1f ms, fast tier (tmpfs) %.1f ms\n", kDelayMs, slow_ms,
              fast_ms);

  const bool lsm = ExpectedMode() == "lsm";
  const std::string config = absl::StrCat("tiers:\n  fast: ", fast_, "\n  slow: ", slow_, "\nenforcement: ",
                                          lsm ? "enforce" : "audit", "\n");
  absl::StatusOr<std::string> mode = agent_.Start({RequestedMode(), config});
  ASSERT_TRUE(mode.ok()) << mode.status();
  absl::StatusOr<nlohmann::json> tiering = agent_.Tiering();
  ASSERT_TRUE(tiering.ok()) << tiering.status();
  EXPECT_EQ((*tiering)["tiers"]["slow_root"], slow_);
  EXPECT_EQ((*tiering)["tiers"]["fast_root"], fast_);
  if (!lsm) return;

  // The guard covers the tmpfs, not the dm-delay filesystem.
  absl::StatusOr<nlohmann::json> e = agent_.Enforcement();
  ASSERT_TRUE(e.ok()) << e.status();
  struct stat fast_st, slow_st;
  ASSERT_EQ(stat(fast_.c_str(), &fast_st), 0);
  ASSERT_EQ(stat(slow_.c_str(), &slow_st), 0);
  const std::string fast_dev = absl::StrFormat("%u:%u", major(fast_st.st_dev), minor(fast_st.st_dev));
  const std::string slow_dev = absl::StrFormat("%u:%u", major(slow_st.st_dev), minor(slow_st.st_dev));
  std::vector<std::string> guarded = (*e)["filesystems"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(guarded.begin(), guarded.end(), fast_dev), guarded.end()) << e->dump(2);
  EXPECT_EQ(std::find(guarded.begin(), guarded.end(), slow_dev), guarded.end()) << e->dump(2);

  // A CPU cgroup writes the slow tier (paying the delay), not the fast one.
  TestCgroup cpu("slow-tier-cpu");
  const std::string slow_file = slow_ + "/cpu.dat", fast_file = fast_ + "/cpu.dat";
  int rc = cpu.RunInside([&]() -> int {
    int fd = open(slow_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "slow", 4) != 4 || fsync(fd) != 0) return 10;
    close(fd);
    fd = open(fast_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) return 11;
    return errno == EACCES ? 0 : 12;
  });
  EXPECT_EQ(rc, 0) << agent_.LogTail();
}

}  // namespace
}  // namespace gputier::testing
