#include "loader/base/node_facts.h"

#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace gputier {
namespace {

// A hybrid (cgroup v1 controllers + v2 at .../unified) node, as read from
// /proc/self/mountinfo on a Debian 12 VM.
constexpr char kHybridMountInfo[] =
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "23 27 0:22 / /sys rw,relatime - sysfs sysfs rw\n"
    "24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs "
    "rw,size=12334492k,nr_inodes=3083623,mode=755\n"
    "25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684092k\n"
    "26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,"
    "ptmxmode=000\n"
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup "
    "rw,devices\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup "
    "rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    "42 23 0:13 / /sys/kernel/tracing rw,relatime - tracefs tracefs rw\n"
    "43 23 0:39 / /sys/fs/bpf rw,relatime - bpf bpf rw\n";

// A pure cgroup v2 node (systemd's default since v247), with optional
// "shared:N" fields before the separator.
constexpr char kUnifiedMountInfo[] =
    "21 26 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs "
    "rw\n"
    "22 26 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc "
    "rw\n"
    "26 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 "
    "rw,errors=remount-ro\n"
    "27 21 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - "
    "cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
    "29 21 0:26 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:11 - bpf "
    "bpf rw,mode=700\n"
    "530 26 0:50 / /var/lib/containerd/io.containerd.runtime.v2.task/k8s.io/"
    "abc/rootfs rw,relatime shared:280 master:1 - overlay overlay "
    "rw,lowerdir=/l,upperdir=/u,workdir=/w\n";

TEST(ParseMountInfo, ReadsEveryFieldTheAgentUses) {
  const std::vector<MountEntry> mounts = ParseMountInfo(kUnifiedMountInfo);
  ASSERT_EQ(mounts.size(), 6u);
  EXPECT_EQ(mounts[3].mount_point, "/sys/fs/cgroup");
  EXPECT_EQ(mounts[3].fs_type, "cgroup2");
  EXPECT_EQ(mounts[3].source, "cgroup2");
  EXPECT_EQ(mounts[3].options, "rw,nosuid,nodev,noexec,relatime");
  // Two optional fields before the separator.
  EXPECT_EQ(mounts[5].fs_type, "overlay");
  EXPECT_EQ(mounts[5].source, "overlay");
  EXPECT_EQ(mounts[5].mount_point,
            "/var/lib/containerd/io.containerd.runtime.v2.task/k8s.io/abc/"
            "rootfs");
}

TEST(ParseMountInfo, ReadsTheProcManPageExample) {
  const std::vector<MountEntry> mounts = ParseMountInfo(
      "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root "
      "rw,errors=continue\n");
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].mount_point, "/mnt2");
  EXPECT_EQ(mounts[0].fs_type, "ext3");
  EXPECT_EQ(mounts[0].source, "/dev/root");
  EXPECT_EQ(mounts[0].options, "rw,noatime");
}

TEST(ParseMountInfo, DecodesOctalEscapesInMountPointAndSource) {
  struct Case {
    const char* description;
    const char* line;
    const char* mount_point;
    const char* source;
  };
  const Case kCases[] = {
      {"space", "50 27 0:60 / /mnt/my\\040disk rw - ext4 /dev/sdb1 rw",
       "/mnt/my disk", "/dev/sdb1"},
      {"tab", "50 27 0:60 / /mnt/a\\011b rw - ext4 /dev/sdb1 rw", "/mnt/a\tb",
       "/dev/sdb1"},
      {"newline", "50 27 0:60 / /mnt/a\\012b rw - ext4 /dev/sdb1 rw",
       "/mnt/a\nb", "/dev/sdb1"},
      {"backslash", "50 27 0:60 / /mnt/a\\134b rw - ext4 /dev/sdb1 rw",
       "/mnt/a\\b", "/dev/sdb1"},
      {"escape in the source",
       "50 27 0:60 / /mnt/x rw - fuse.sshfs me@host:/my\\040files rw", "/mnt/x",
       "me@host:/my files"},
      {"a backslash not followed by three octal digits is kept",
       "50 27 0:60 / /mnt/a\\9b\\04 rw - ext4 /dev/sdb1 rw", "/mnt/a\\9b\\04",
       "/dev/sdb1"},
  };
  for (const Case& c : kCases) {
    const std::vector<MountEntry> mounts = ParseMountInfo(c.line);
    ASSERT_EQ(mounts.size(), 1u) << c.description;
    EXPECT_EQ(mounts[0].mount_point, c.mount_point) << c.description;
    EXPECT_EQ(mounts[0].source, c.source) << c.description;
  }
}

TEST(ParseMountInfo, SkipsMalformedLines) {
  const char* const kMalformed[] = {
      "",
      "garbage",
      "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 ext3 /dev/root rw",  // no -
      "36 35 98:0 /mnt1 /mnt2 rw,noatime - ext3",      // no source
      "x 35 98:0 /mnt1 /mnt2 rw - ext3 /dev/root rw",  // id not a number
      "36 35 980 /mnt1 /mnt2 rw - ext3 /dev/root rw",  // no major:minor
      "36 35 98:0 /mnt1 - ext3 /dev/root rw",          // fields missing
  };
  for (const char* line : kMalformed) {
    EXPECT_TRUE(ParseMountInfo(line).empty()) << line;
  }
  const std::string mixed = std::string("garbage\n") + kHybridMountInfo +
                            "36 35 98:0 /mnt1 - ext3 /dev/root rw\n";
  EXPECT_EQ(ParseMountInfo(mixed).size(),
            ParseMountInfo(kHybridMountInfo).size());
}

TEST(FindMountPoint, FindsCgroup2AndBpfInHybridAndUnifiedLayouts) {
  struct Case {
    const char* description;
    const char* mountinfo;
    const char* fs_type;
    const char* expected;
  };
  const Case kCases[] = {
      {"hybrid: cgroup2 beside the v1 controllers", kHybridMountInfo, "cgroup2",
       "/sys/fs/cgroup/unified"},
      {"hybrid: bpffs", kHybridMountInfo, "bpf", "/sys/fs/bpf"},
      {"unified: cgroup2 at the top", kUnifiedMountInfo, "cgroup2",
       "/sys/fs/cgroup"},
      {"unified: bpffs", kUnifiedMountInfo, "bpf", "/sys/fs/bpf"},
      {"the first of several mounts wins",
       "1 0 0:1 / /a rw - bpf bpf rw\n2 0 0:2 / /b rw - bpf bpf rw\n", "bpf",
       "/a"},
      {"an escaped mount point is decoded",
       "1 0 0:1 / /sys/fs/my\\040bpf rw - bpf bpf rw\n", "bpf",
       "/sys/fs/my bpf"},
  };
  for (const Case& c : kCases) {
    absl::StatusOr<std::string> mount_point =
        FindMountPoint(c.mountinfo, c.fs_type);
    ASSERT_TRUE(mount_point.ok())
        << c.description << ": " << mount_point.status();
    EXPECT_EQ(*mount_point, c.expected) << c.description;
  }
}

TEST(FindMountPoint, MissingFilesystemIsNotFoundWithTheMountCommand) {
  struct Case {
    const char* fs_type;
    const char* hint;
  };
  const Case kCases[] = {
      {"cgroup2", "mount -t cgroup2 none /sys/fs/cgroup"},
      {"bpf", "mount -t bpf bpf /sys/fs/bpf"},
  };
  constexpr char kNoCgroup2NoBpf[] =
      "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";
  for (const Case& c : kCases) {
    absl::StatusOr<std::string> mount_point =
        FindMountPoint(kNoCgroup2NoBpf, c.fs_type);
    ASSERT_FALSE(mount_point.ok()) << c.fs_type;
    EXPECT_EQ(mount_point.status().code(), absl::StatusCode::kNotFound);
    const absl::string_view message = mount_point.status().message();
    EXPECT_TRUE(absl::StrContains(
        message, std::string("no ") + c.fs_type + " filesystem is mounted"))
        << message;
    EXPECT_TRUE(absl::StrContains(message, c.hint)) << message;
  }
  // The v1 "cgroup" type is not "cgroup2".
  EXPECT_FALSE(FindMountPoint("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup "
                              "cgroup rw,cpu\n",
                              "cgroup2")
                   .ok());
}

TEST(ParseCharDevices, ReadsOnlyTheCharacterSection) {
  constexpr char kProcDevices[] =
      "Character devices:\n"
      "  1 mem\n"
      "  4 /dev/vc/0\n"
      "  4 tty\n"
      " 10 misc\n"
      "195 nvidia-frontend\n"
      "226 drm\n"
      "235 kfd\n"
      "261 accel\n"
      "510 nvidia-uvm\n"
      "511 nvidia-caps\n"
      "\n"
      "Block devices:\n"
      "  7 loop\n"
      "  8 sd\n"
      "259 blkext\n";
  const std::vector<CharDevice> devices = ParseCharDevices(kProcDevices);
  struct Expected {
    uint32_t major;
    const char* name;
  };
  const Expected kExpected[] = {
      {1, "mem"},           {4, "/dev/vc/0"},         {4, "tty"},
      {10, "misc"},         {195, "nvidia-frontend"}, {226, "drm"},
      {235, "kfd"},         {261, "accel"},           {510, "nvidia-uvm"},
      {511, "nvidia-caps"},
  };
  ASSERT_EQ(devices.size(), std::size(kExpected));
  for (size_t i = 0; i < devices.size(); ++i) {
    EXPECT_EQ(devices[i].major, kExpected[i].major) << kExpected[i].name;
    EXPECT_EQ(devices[i].name, kExpected[i].name);
  }
}

TEST(ParseCharDevices, SkipsMalformedLinesAndMissingSections) {
  struct Case {
    const char* description;
    const char* text;
    size_t expected_count;
  };
  const Case kCases[] = {
      {"empty text", "", 0},
      {"no character section", "Block devices:\n  7 loop\n", 0},
      {"lines before the header are ignored",
       "195 nvidia-frontend\nCharacter devices:\n226 drm\n", 1},
      {"a line without a name", "Character devices:\n195\n226 drm\n", 1},
      {"a line without a number", "Character devices:\nnvidia\n226 drm\n", 1},
      {"a negative major", "Character devices:\n-1 bad\n226 drm\n", 1},
  };
  for (const Case& c : kCases) {
    EXPECT_EQ(ParseCharDevices(c.text).size(), c.expected_count)
        << c.description;
  }
}

}  // namespace
}  // namespace gputier
