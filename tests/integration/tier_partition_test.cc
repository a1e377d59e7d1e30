// Each container's bounded partition of the fast tier: real preallocated
// images, real loop devices, real ext4 mounts (root). Every test works in a
// fresh temporary fast root under /var/tmp and releases its partitions and
// mounts in TearDown, even when it fails.
#include "loader/tier/fs/tier_partition.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/integration/runc_container.h"
#include "tests/integration/agent_harness.h"

namespace gputier {
namespace {

using ::gputier::testing::PathExists;
using ::gputier::testing::SlurpFile;

using ::gputier::testing::CommandResult;
using ::gputier::testing::RunCommand;

constexpr uint64_t kMiB = 1ull << 20;
constexpr long kExt4Magic = 0xEF53;

// FITRIM from <linux/fs.h>, which clashes with <sys/mount.h>.
struct TrimRange {
  uint64_t start, len, minlen;
};
#define GPUTIER_FITRIM _IOWR('X', 121, TrimRange)

std::vector<std::string> List(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (struct dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// The mountinfo line whose mount point is exactly `path` ("" when none).
std::string MountinfoAt(const std::string& path) {
  for (absl::string_view line : absl::StrSplit(SlurpFile("/proc/self/mountinfo"), '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    if (f.size() > 4 && f[4] == path) return std::string(line);
  }
  return "";
}

// Loop devices whose sysfs backing_file names `image` (a path without symlinks).
std::vector<std::string> LoopsNaming(const std::string& image) {
  std::vector<std::string> loops;
  for (const std::string& name : List("/sys/block")) {
    if (!absl::StartsWith(name, "loop")) continue;
    std::string backing = SlurpFile(absl::StrCat("/sys/block/", name, "/loop/backing_file"));
    if (absl::StripSuffix(backing, "\n") == image) loops.push_back(name);
  }
  return loops;
}

// Writes `bytes` of a pattern seeded by `seed`; returns 0 or the errno of
// the first failing write or fsync, and the bytes written in `*written`.
int WritePattern(const std::string& path, uint64_t bytes, char seed,
                 uint64_t* written = nullptr) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  std::string chunk(kMiB, '\0');
  for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>(seed + i % 251);
  uint64_t done = 0;
  int err = 0;
  while (done < bytes && err == 0) {
    ssize_t n = write(fd, chunk.data(), std::min<uint64_t>(chunk.size(), bytes - done));
    if (n < 0) err = errno;
    if (n > 0) done += n;
  }
  if (err == 0 && fsync(fd) != 0) err = errno;
  close(fd);
  if (written != nullptr) *written = done;
  return err;
}

bool HasPattern(const std::string& path, uint64_t bytes, char seed) {
  std::string data = SlurpFile(path);
  if (data.size() != bytes) return false;
  for (size_t i = 0; i < data.size(); ++i) {
    if (data[i] != static_cast<char>(seed + (i % kMiB) % 251)) return false;
  }
  return true;
}

// Waits until no loop device names `image` (AUTOCLEAR after an unmount).
bool WaitLoopsGone(const std::string& image) {
  for (int i = 0; i < 200 && !LoopsNaming(image).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return LoopsNaming(image).empty();
}

int RemoveEntry(const char* path, const struct stat*, int, struct FTW*) {
  remove(path);
  return 0;
}

class PartitionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (loop devices, mounts)";
    if (!PathExists("/usr/sbin/mkfs.ext4") && !PathExists("/sbin/mkfs.ext4")) {
      GTEST_SKIP() << "needs mkfs.ext4 (e2fsprogs)";
    }
    char tmpl[] = "/var/tmp/gputier-part-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    scratch_ = tmpl;
    fast_ = scratch_ + "/fast";
    ASSERT_EQ(mkdir(fast_.c_str(), 0700), 0);
  }

  void TearDown() override {
    for (const PartitionPaths& p : planned_) {
      absl::Status s = ReleasePartition(p);
      if (!s.ok()) ADD_FAILURE() << "cleanup: " << s;
    }
    for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) {
      if (!MountinfoAt(*it).empty()) umount2(it->c_str(), MNT_DETACH);
    }
    // Depth first, never across a mount point, never through a symlink.
    if (!scratch_.empty()) {
      nftw(scratch_.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    }
  }

  PartitionPaths Plan(const std::string& id, const std::string& root = "") {
    absl::StatusOr<PartitionPaths> p = PlanPartition(root.empty() ? fast_ : root, id);
    EXPECT_TRUE(p.ok()) << p.status();
    planned_.push_back(*p);
    return *p;
  }

  std::string scratch_, fast_;
  std::vector<PartitionPaths> planned_;
  std::vector<std::string> mounts_;  // test-made mounts, unmounted last-first
};

struct PlanCase {
  std::string root, id, dir;
};

TEST(PartitionPlanTest, PlansTheImageAndMountPointUnderTheContainerDirectory) {
  const std::vector<PlanCase> cases = {{"/fast", "c1", "/fast/c1"},
                                       {"/fast/", "c1", "/fast/c1"},
                                       {"/srv/nvme//", "abc-1.x_Y", "/srv/nvme/abc-1.x_Y"},
                                       {"/", "c", "/c"}};
  for (const PlanCase& c : cases) {
    absl::StatusOr<PartitionPaths> p = PlanPartition(c.root, c.id);
    ASSERT_TRUE(p.ok()) << c.root << ": " << p.status();
    EXPECT_EQ(p->dir, c.dir);
    EXPECT_EQ(p->image, c.dir + "/partition.img");
    EXPECT_EQ(p->mount_point, c.dir + "/mnt");
  }
}

TEST(PartitionPlanTest, RefusesFastRootsThatOverlayOptionsCannotCarry) {
  for (const std::string& root : {std::string(""), std::string("fast"), std::string("/a:b"),
                                  std::string("/a,b"), std::string("/a b"), std::string("/a\nb"),
                                  std::string("/a\tb"), std::string("/a\0b", 4)}) {
    absl::StatusOr<PartitionPaths> p = PlanPartition(root, "c1");
    EXPECT_TRUE(absl::IsInvalidArgument(p.status())) << "'" << root << "': " << p.status();
    EXPECT_TRUE(absl::StrContains(p.status().message(), "fast root")) << p.status();
  }
}

// Partitions are named by tier key ("<id>-<cgroup inode>", up to 160 bytes).
TEST(PartitionPlanTest, RefusesContainerIdsThatAreNotOneDirectoryName) {
  EXPECT_TRUE(PlanPartition("/fast", std::string(128, 'x') + "-18446744073709551615").ok());
  for (const std::string& id : {std::string(""), std::string("."), std::string(".."),
                                std::string("a/b"), std::string("a b"), std::string(161, 'x')}) {
    EXPECT_TRUE(absl::IsInvalidArgument(PlanPartition("/fast", id).status())) << "'" << id << "'";
  }
}

TEST_F(PartitionTest, CreatedPartitionIsAnEmptyExt4MountOfTheRequestedSize) {
  PartitionPaths p = Plan("c1");
  constexpr uint64_t kSize = 64 * kMiB;
  ASSERT_TRUE(CreatePartition(p, kSize).ok());

  absl::StatusOr<bool> mounted = PartitionMounted(p);
  ASSERT_TRUE(mounted.ok()) << mounted.status();
  EXPECT_TRUE(*mounted);
  std::string line = MountinfoAt(p.mount_point);
  EXPECT_TRUE(absl::StrContains(line, " - ext4 /dev/loop")) << line;
  EXPECT_TRUE(absl::StrContains(line, "nosuid") && absl::StrContains(line, "nodev")) << line;
  struct statfs sfs;
  ASSERT_EQ(statfs(p.mount_point.c_str(), &sfs), 0);
  EXPECT_EQ(sfs.f_type, kExt4Magic);
  EXPECT_EQ(List(p.mount_point), std::vector<std::string>{"lost+found"});

  absl::StatusOr<SpaceUsage> usage = PartitionUsage(p);
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_LE(usage->total_bytes, kSize);
  EXPECT_GE(usage->total_bytes, kSize * 85 / 100) << "more than ext4's overhead is missing";
  absl::StatusOr<CommandResult> super = RunCommand({"dumpe2fs", "-h", p.image});
  ASSERT_TRUE(super.ok()) << super.status();
  EXPECT_TRUE(absl::StrContains(super->output, "Reserved block count:     0\n"))
      << "blocks reserved for root are capacity the container cannot use: " << super->output;

  struct stat image, mnt, dir;
  ASSERT_EQ(lstat(p.image.c_str(), &image), 0);
  ASSERT_EQ(lstat(p.dir.c_str(), &dir), 0);
  ASSERT_EQ(stat(p.mount_point.c_str(), &mnt), 0);
  EXPECT_TRUE(S_ISREG(image.st_mode));
  EXPECT_EQ(image.st_mode & 07777, 0600);
  EXPECT_EQ(dir.st_mode & 07777, 0700);
  EXPECT_EQ(static_cast<uint64_t>(image.st_size), kSize);
  EXPECT_GE(static_cast<uint64_t>(image.st_blocks) * 512, kSize) << "the image is sparse";
  std::vector<std::string> loops = LoopsNaming(p.image);
  ASSERT_EQ(loops.size(), 1u);
  std::string sys = absl::StrCat("/sys/block/", loops[0]);
  EXPECT_EQ(SlurpFile(sys + "/loop/autoclear"), "1\n");
  EXPECT_EQ(SlurpFile(sys + "/queue/discard_max_bytes"), "0\n");
  std::printf("[ info ] %s direct I/O: %s", loops[0].c_str(), SlurpFile(sys + "/loop/dio").c_str());
}

TEST_F(PartitionTest, ImageStaysPreallocatedThroughLazyInitDeletesAndTrim) {
  PartitionPaths p = Plan("c1");
  constexpr uint64_t kSize = 256 * kMiB;
  ASSERT_TRUE(CreatePartition(p, kSize).ok());
  std::string file = p.mount_point + "/big";
  ASSERT_EQ(WritePattern(file, 64 * kMiB, 'a'), 0);
  ASSERT_EQ(unlink(file.c_str()), 0);
  sync();
  int fd = open(p.mount_point.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  TrimRange range = {0, UINT64_MAX, 0};
  int rc = ioctl(fd, GPUTIER_FITRIM, &range);
  int err = errno;
  close(fd);
  EXPECT_TRUE(rc != 0 && err == EOPNOTSUPP) << "fstrim must not reach the image";
  std::this_thread::sleep_for(std::chrono::seconds(2));  // ext4lazyinit's first round
  struct stat image;
  ASSERT_EQ(stat(p.image.c_str(), &image), 0);
  EXPECT_GE(static_cast<uint64_t>(image.st_blocks) * 512, kSize) << "holes were punched";
}

TEST_F(PartitionTest, WritesBeyondCapacityFailWithEnospcAndEarlierDataStaysIntact) {
  PartitionPaths p = Plan("c1");
  constexpr uint64_t kSize = 32 * kMiB;
  ASSERT_TRUE(CreatePartition(p, kSize).ok());
  struct stat before, after;
  ASSERT_EQ(stat(p.image.c_str(), &before), 0);
  std::string keep = p.mount_point + "/keep";
  ASSERT_EQ(WritePattern(keep, 4 * kMiB, 'k'), 0);

  uint64_t written = 0;
  EXPECT_EQ(WritePattern(p.mount_point + "/fill", 2 * kSize, 'f', &written), ENOSPC);
  EXPECT_LT(written, kSize);
  absl::StatusOr<SpaceUsage> usage = PartitionUsage(p);
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_LT(usage->available_bytes, kMiB);

  EXPECT_TRUE(HasPattern(keep, 4 * kMiB, 'k')) << "data written before the fill changed";
  ASSERT_EQ(stat(p.image.c_str(), &after), 0);
  // The fast tier gave nothing beyond the reservation (a few KiB of the host
  // file's own extent tree may appear).
  EXPECT_EQ(after.st_size, before.st_size);
  EXPECT_LT((after.st_blocks - before.st_blocks) * 512, 256 * 1024);
}

TEST_F(PartitionTest, ReleaseUnmountsFreesTheLoopDeviceAndRemovesEverything) {
  PartitionPaths p = Plan("c1");
  ASSERT_TRUE(CreatePartition(p, 32 * kMiB).ok());
  std::vector<std::string> loops = LoopsNaming(p.image);
  ASSERT_EQ(loops.size(), 1u);

  absl::Status released = ReleasePartition(p);
  ASSERT_TRUE(released.ok()) << released;
  EXPECT_TRUE(LoopsNaming(p.image).empty()) << "the loop device was not freed";
  // Renewed, not handed on with discard off: its next user gets discard
  // (unless another loop user took the device first; then nothing to check).
  std::string sys = "/sys/block/" + loops[0];
  EXPECT_TRUE(PathExists(sys)) << loops[0] << " was removed, not renewed";
  std::string probe = scratch_ + "/probe.img";
  ASSERT_EQ(WritePattern(probe, kMiB, 'p'), 0);
  absl::StatusOr<CommandResult> bound = RunCommand({"losetup", "/dev/" + loops[0], probe});
  if (bound.ok() && bound->exit_code == 0) {
    EXPECT_NE(SlurpFile(sys + "/queue/discard_max_bytes"), "0\n") << loops[0] << " kept discard off";
    RunCommand({"losetup", "-d", "/dev/" + loops[0]}).IgnoreError();
  }
  EXPECT_EQ(MountinfoAt(p.mount_point), "");
  EXPECT_FALSE(PathExists(p.image));
  EXPECT_FALSE(PathExists(p.mount_point));
  EXPECT_FALSE(PathExists(p.dir));
  EXPECT_TRUE(PathExists(fast_));
  absl::StatusOr<bool> mounted = PartitionMounted(p);
  ASSERT_TRUE(mounted.ok()) << mounted.status();
  EXPECT_FALSE(*mounted);

  EXPECT_TRUE(ReleasePartition(p).ok()) << "a second release must succeed";
  EXPECT_TRUE(ReleasePartition(Plan("never-created")).ok());
}

TEST_F(PartitionTest, ReleaseLeavesOtherFilesOfTheContainerDirectoryAlone) {
  PartitionPaths p = Plan("c1");
  ASSERT_TRUE(CreatePartition(p, 32 * kMiB).ok());
  ASSERT_EQ(WritePattern(p.dir + "/other", 1024, 'o'), 0);
  ASSERT_TRUE(ReleasePartition(p).ok());
  EXPECT_FALSE(PathExists(p.image));
  EXPECT_FALSE(PathExists(p.mount_point));
  EXPECT_EQ(List(p.dir), std::vector<std::string>{"other"});
}

TEST_F(PartitionTest, CreateOverAStalePartitionStartsEmpty) {
  PartitionPaths p = Plan("c1");
  ASSERT_TRUE(CreatePartition(p, 32 * kMiB).ok());
  ASSERT_EQ(WritePattern(p.mount_point + "/old", 4096, 'o'), 0);

  // Still mounted: torn down and made again.
  absl::Status again = CreatePartition(p, 48 * kMiB);
  ASSERT_TRUE(again.ok()) << again;
  EXPECT_EQ(List(p.mount_point), std::vector<std::string>{"lost+found"});
  EXPECT_EQ(LoopsNaming(p.image).size(), 1u);
  struct stat image;
  ASSERT_EQ(stat(p.image.c_str(), &image), 0);
  EXPECT_EQ(static_cast<uint64_t>(image.st_size), 48 * kMiB);

  // Left unmounted with data (an agent crash): made again, empty.
  ASSERT_EQ(WritePattern(p.mount_point + "/old", 4096, 'o'), 0);
  ASSERT_EQ(umount2(p.mount_point.c_str(), 0), 0);
  ASSERT_TRUE(WaitLoopsGone(p.image));
  ASSERT_TRUE(CreatePartition(p, 32 * kMiB).ok());
  EXPECT_EQ(List(p.mount_point), std::vector<std::string>{"lost+found"});
}

TEST_F(PartitionTest, AttachAfterAnUnmountKeepsTheData) {
  PartitionPaths p = Plan("c1");
  ASSERT_TRUE(CreatePartition(p, 32 * kMiB).ok());
  ASSERT_EQ(WritePattern(p.mount_point + "/data", 3 * kMiB, 'd'), 0);
  ASSERT_EQ(umount2(p.mount_point.c_str(), 0), 0);  // a reboot or crash
  ASSERT_TRUE(WaitLoopsGone(p.image));
  absl::StatusOr<bool> mounted = PartitionMounted(p);
  ASSERT_TRUE(mounted.ok()) << mounted.status();
  EXPECT_FALSE(*mounted);

  absl::Status attached = AttachPartition(p);
  ASSERT_TRUE(attached.ok()) << attached;
  mounted = PartitionMounted(p);
  ASSERT_TRUE(mounted.ok()) << mounted.status();
  EXPECT_TRUE(*mounted);
  EXPECT_TRUE(HasPattern(p.mount_point + "/data", 3 * kMiB, 'd'));
  EXPECT_TRUE(AttachPartition(p).ok()) << "attaching a mounted partition is a no-op";
  EXPECT_EQ(LoopsNaming(p.image).size(), 1u);
  EXPECT_EQ(SlurpFile(absl::StrCat("/sys/block/", LoopsNaming(p.image)[0],
                                  "/queue/discard_max_bytes")), "0\n");
}

TEST_F(PartitionTest, AttachWithoutAnImageIsNotFound) {
  PartitionPaths p = Plan("c1");
  EXPECT_TRUE(absl::IsNotFound(AttachPartition(p)));
  ASSERT_EQ(mkdir(p.dir.c_str(), 0700), 0);
  absl::Status s = AttachPartition(p);
  EXPECT_TRUE(absl::IsNotFound(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), p.image)) << s;
}

TEST_F(PartitionTest, ForeignMountOnTheMountPointIsNotThePartitionAndIsLeftAlone) {
  PartitionPaths p = Plan("c1");
  absl::StatusOr<bool> mounted = PartitionMounted(p);
  ASSERT_TRUE(mounted.ok()) << mounted.status();
  EXPECT_FALSE(*mounted) << "nothing there";
  ASSERT_TRUE(CreatePartition(p, 32 * kMiB).ok());
  ASSERT_EQ(umount2(p.mount_point.c_str(), 0), 0);
  ASSERT_TRUE(WaitLoopsGone(p.image));
  ASSERT_EQ(mount("gputier-test", p.mount_point.c_str(), "tmpfs", 0, "size=1m"), 0);
  mounts_.push_back(p.mount_point);

  mounted = PartitionMounted(p);
  ASSERT_TRUE(mounted.ok()) << mounted.status();
  EXPECT_FALSE(*mounted);
  EXPECT_TRUE(absl::IsFailedPrecondition(AttachPartition(p)));
  EXPECT_TRUE(absl::IsFailedPrecondition(ReleasePartition(p)));
  EXPECT_TRUE(absl::IsFailedPrecondition(PartitionUsage(p).status()));
  EXPECT_TRUE(absl::StrContains(MountinfoAt(p.mount_point), "tmpfs"));
  EXPECT_TRUE(PathExists(p.image));
  ASSERT_EQ(umount2(p.mount_point.c_str(), 0), 0);
}

struct SymlinkCase {
  std::string what;
  std::string link;    // relative to the container directory ("" = the directory itself)
  bool target_is_dir;  // the victim the link points at
};

TEST_F(PartitionTest, SymlinksAreRefusedAndTheirTargetsStayUntouched) {
  for (const SymlinkCase& c : std::vector<SymlinkCase>{{"container directory", "", true},
                                                       {"mount point", "mnt", true},
                                                       {"image", "partition.img", false}}) {
    SCOPED_TRACE(c.what);
    PartitionPaths p = Plan(absl::StrCat("sym-", c.link.empty() ? "dir" : c.link));
    std::string victim = absl::StrCat(scratch_, "/victim-", planned_.size());
    ASSERT_EQ(mkdir(victim.c_str(), 0755), 0);
    ASSERT_EQ(WritePattern(victim + "/sentinel", 4096, 's'), 0);
    std::string target = c.target_is_dir ? victim : victim + "/sentinel";
    if (!c.link.empty()) {
      ASSERT_EQ(mkdir(p.dir.c_str(), 0700), 0);
    }
    std::string link = c.link.empty() ? p.dir : p.dir + "/" + c.link;
    ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);

    absl::Status created = CreatePartition(p, 32 * kMiB);
    EXPECT_TRUE(absl::IsFailedPrecondition(created)) << created;
    EXPECT_TRUE(absl::StrContains(created.message(), "symlink")) << created;
    EXPECT_TRUE(absl::IsFailedPrecondition(ReleasePartition(p)));
    EXPECT_TRUE(absl::IsFailedPrecondition(AttachPartition(p)));
    EXPECT_FALSE(PartitionMounted(p).ok());

    EXPECT_EQ(List(victim), std::vector<std::string>{"sentinel"});
    EXPECT_TRUE(HasPattern(victim + "/sentinel", 4096, 's'));
    EXPECT_EQ(MountinfoAt(victim), "");
    struct stat st;
    ASSERT_EQ(lstat(link.c_str(), &st), 0);
    EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the symlink itself was replaced";
    ASSERT_EQ(unlink(link.c_str()), 0);  // so that TearDown's release succeeds
  }
}

TEST_F(PartitionTest, SizeBelowTheMinimumIsRefusedAndNothingIsCreated) {
  PartitionPaths p = Plan("c1");
  absl::Status s = CreatePartition(p, kMinPartitionBytes - 1);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "at least 16777216 bytes")) << s;
  EXPECT_FALSE(PathExists(p.dir));
}

TEST_F(PartitionTest, FastRootWithoutRoomGivesAClearErrorAndLeavesNothingBehind) {
  std::string tiny_img = scratch_ + "/tiny.img";
  std::string tiny = scratch_ + "/tiny";
  ASSERT_EQ(mkdir(tiny.c_str(), 0700), 0);
  for (const std::vector<std::string>& argv :
       {std::vector<std::string>{"truncate", "-s", "32M", tiny_img},
        std::vector<std::string>{"mkfs.ext4", "-q", "-F", tiny_img},
        std::vector<std::string>{"mount", "-o", "loop", tiny_img, tiny}}) {
    absl::StatusOr<CommandResult> r = RunCommand(argv);
    ASSERT_TRUE(r.ok() && r->exit_code == 0) << argv[0] << ": " << (r.ok() ? r->output : "");
  }
  mounts_.push_back(tiny);
  absl::StatusOr<SpaceUsage> before = FilesystemUsage(tiny);
  ASSERT_TRUE(before.ok()) << before.status();

  PartitionPaths p = Plan("c1", tiny);
  absl::Status s = CreatePartition(p, 64 * kMiB);
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "lacks room")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), tiny)) << s;
  EXPECT_EQ(List(tiny), std::vector<std::string>{"lost+found"});
  absl::StatusOr<SpaceUsage> after = FilesystemUsage(tiny);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->available_bytes, before->available_bytes);

  // A partition that fits is still made there.
  ASSERT_TRUE(CreatePartition(p, 16 * kMiB).ok());
  ASSERT_TRUE(ReleasePartition(p).ok());
  EXPECT_EQ(List(tiny), std::vector<std::string>{"lost+found"});
}

TEST_F(PartitionTest, BusyPartitionIsNotReleasedAndTheErrorNamesTheHolder) {
  PartitionPaths p = Plan("c1");
  ASSERT_TRUE(CreatePartition(p, 32 * kMiB).ok());
  int fd = open((p.mount_point + "/held").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  absl::Status s = ReleasePartition(p);
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), absl::StrCat("process ", getpid(), " ("))) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "an open file")) << s;
  EXPECT_TRUE(*PartitionMounted(p));
  EXPECT_TRUE(PathExists(p.image));
  close(fd);
  s = ReleasePartition(p);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_FALSE(PathExists(p.dir));
}

// Freeing off the caller's thread: SetPartitionAside moves the whole
// partition (mount included) out of the container's way in one rename; the
// container's paths take a new partition at once; ReleasePartition on the
// aside paths frees the old one later, and until then its blocks stay in use.
TEST_F(PartitionTest, SetAsideMovesThePartitionInOneRenameAndReleaseFreesItLater) {
  // Its own filesystem: the used-bytes figures below must not move with
  // whatever else the node writes to /var/tmp meanwhile.
  // (An ext4 image of its own on a loop device, like a real fast tier.)
  const std::string root = scratch_ + "/own-fs";
  const std::string image = scratch_ + "/own-fs.img";
  ASSERT_EQ(mkdir(root.c_str(), 0700), 0);
  ASSERT_EQ(system(absl::StrCat("truncate -s 256M ", image, " && mkfs.ext4 -q -F ", image, " && mount -o loop ",
                                image, " ", root)
                       .c_str()),
            0);
  mounts_.push_back(root);
  PartitionPaths p = Plan("c1", root);
  constexpr uint64_t kSize = 64 * kMiB;
  ASSERT_TRUE(CreatePartition(p, kSize).ok());
  ASSERT_EQ(WritePattern(p.mount_point + "/data", kMiB, 'd'), 0);
  absl::StatusOr<SpaceUsage> before = FilesystemUsage(root);
  ASSERT_TRUE(before.ok()) << before.status();

  absl::StatusOr<std::optional<AsidePartition>> aside = SetPartitionAside(p);
  ASSERT_TRUE(aside.ok()) << aside.status();
  ASSERT_TRUE(aside->has_value());
  const AsidePartition a = **aside;
  planned_.push_back(a.paths);  // released in TearDown if the test fails
  EXPECT_TRUE(absl::StartsWith(a.paths.dir, root + "/" + kAsidePrefix)) << a.paths.dir;
  EXPECT_GE(a.image_bytes, kSize) << "the image's blocks are what freeing it gives back";
  EXPECT_FALSE(PathExists(p.dir)) << "the container directory did not move";
  EXPECT_EQ(MountinfoAt(p.mount_point), "");
  EXPECT_NE(MountinfoAt(a.paths.mount_point), "") << "the mount did not move with the directory";
  EXPECT_TRUE(HasPattern(a.paths.mount_point + "/data", kMiB, 'd'));
  absl::StatusOr<bool> mounted = PartitionMounted(a.paths);
  ASSERT_TRUE(mounted.ok()) << mounted.status();
  EXPECT_TRUE(*mounted);
  absl::StatusOr<SpaceUsage> aside_usage = FilesystemUsage(root);
  ASSERT_TRUE(aside_usage.ok());
  EXPECT_GE(aside_usage->used_bytes + 4 * kMiB, before->used_bytes) << "set aside is not freed yet";

  // The container can have a new, empty partition while the old one waits.
  ASSERT_TRUE(CreatePartition(p, 32 * kMiB).ok());
  EXPECT_EQ(List(p.mount_point), std::vector<std::string>{"lost+found"});

  // What a gputierd that stopped now would leave for the next one.
  absl::StatusOr<std::vector<AsidePartition>> left = PartitionsSetAside(root);
  ASSERT_TRUE(left.ok()) << left.status();
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].paths.dir, a.paths.dir);
  EXPECT_EQ((*left)[0].image_bytes, a.image_bytes);

  const std::string aside_image = a.paths.image;
  absl::Status released = ReleasePartition(a.paths);
  ASSERT_TRUE(released.ok()) << released;
  EXPECT_FALSE(PathExists(a.paths.dir));
  EXPECT_TRUE(WaitLoopsGone(aside_image));
  absl::StatusOr<SpaceUsage> after = FilesystemUsage(root);
  ASSERT_TRUE(after.ok());
  EXPECT_LE(after->used_bytes + kSize / 2, aside_usage->used_bytes) << "the image's blocks were not freed";
  left = PartitionsSetAside(root);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());
  EXPECT_TRUE(*PartitionMounted(p)) << "releasing the old partition touched the new one";

  // Nothing there: nothing to set aside.
  aside = SetPartitionAside(Plan("never-created"));
  ASSERT_TRUE(aside.ok()) << aside.status();
  EXPECT_FALSE(aside->has_value());
}

TEST_F(PartitionTest, SetAsideRefusesForeignMountsAndDirectoriesWithOtherFilesUntouched) {
  PartitionPaths other = Plan("c1");
  ASSERT_TRUE(CreatePartition(other, 32 * kMiB).ok());
  ASSERT_EQ(WritePattern(other.dir + "/other", 1024, 'o'), 0);
  absl::StatusOr<std::optional<AsidePartition>> aside = SetPartitionAside(other);
  EXPECT_TRUE(absl::IsFailedPrecondition(aside.status())) << aside.status();
  EXPECT_TRUE(absl::StrContains(aside.status().message(), "'other'")) << aside.status();
  EXPECT_TRUE(*PartitionMounted(other));

  PartitionPaths foreign = Plan("c2");
  ASSERT_TRUE(CreatePartition(foreign, 32 * kMiB).ok());
  ASSERT_EQ(umount2(foreign.mount_point.c_str(), 0), 0);
  ASSERT_TRUE(WaitLoopsGone(foreign.image));
  ASSERT_EQ(mount("gputier-test", foreign.mount_point.c_str(), "tmpfs", 0, "size=1m"), 0);
  mounts_.push_back(foreign.mount_point);
  aside = SetPartitionAside(foreign);
  EXPECT_TRUE(absl::IsFailedPrecondition(aside.status())) << aside.status();
  EXPECT_TRUE(PathExists(foreign.image));
  EXPECT_TRUE(absl::StrContains(MountinfoAt(foreign.mount_point), "tmpfs"));
  ASSERT_EQ(umount2(foreign.mount_point.c_str(), 0), 0);

  absl::StatusOr<std::vector<AsidePartition>> left = PartitionsSetAside(fast_);
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_TRUE(left->empty());
}

TEST_F(PartitionTest, SetAsideTakesMillisecondsWhereReleaseTakesTheUnmountAndTheUnlink) {
  absl::StatusOr<SpaceUsage> host = FilesystemUsage(fast_);
  ASSERT_TRUE(host.ok()) << host.status();
  if (host->available_bytes < 6 * (1ull << 30)) GTEST_SKIP() << "needs 6 GiB free in /var/tmp";
  using Ms = std::chrono::duration<double, std::milli>;
  PartitionPaths in_place = Plan("in-place");
  PartitionPaths set_aside = Plan("set-aside");
  for (const PartitionPaths* p : {&in_place, &set_aside}) {
    ASSERT_TRUE(CreatePartition(*p, 2ull << 30).ok());
    ASSERT_EQ(WritePattern(p->mount_point + "/data", 64 * kMiB, 'x'), 0);
  }
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(ReleasePartition(in_place).ok());
  auto t1 = std::chrono::steady_clock::now();
  absl::StatusOr<std::optional<AsidePartition>> aside = SetPartitionAside(set_aside);
  auto t2 = std::chrono::steady_clock::now();
  ASSERT_TRUE(aside.ok() && aside->has_value()) << aside.status();
  planned_.push_back((*aside)->paths);
  ASSERT_TRUE(ReleasePartition((*aside)->paths).ok());
  auto t3 = std::chrono::steady_clock::now();
  std::printf("[ timing ] 2 GiB partition: ReleasePartition %.1f ms; SetPartitionAside %.2f ms, then "
              "ReleasePartition of it %.1f ms (off the caller's thread)\n",
              Ms(t1 - t0).count(), Ms(t2 - t1).count(), Ms(t3 - t2).count());
  EXPECT_LT(Ms(t2 - t1).count(), 50.0) << "setting aside is one rename and a few stats";
}

TEST_F(PartitionTest, UsageTracksWhatTheContainerWrites) {
  PartitionPaths p = Plan("c1");
  EXPECT_TRUE(absl::IsFailedPrecondition(PartitionUsage(p).status()));
  ASSERT_TRUE(CreatePartition(p, 64 * kMiB).ok());
  absl::StatusOr<SpaceUsage> before = PartitionUsage(p);
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_EQ(WritePattern(p.mount_point + "/f", 8 * kMiB, 'u'), 0);
  absl::StatusOr<SpaceUsage> after = PartitionUsage(p);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->total_bytes, before->total_bytes);
  EXPECT_GE(after->used_bytes, before->used_bytes + 8 * kMiB);
  EXPECT_LE(after->available_bytes, before->available_bytes - 8 * kMiB);

  struct statvfs vfs;
  ASSERT_EQ(statvfs(fast_.c_str(), &vfs), 0);
  absl::StatusOr<SpaceUsage> fast = FilesystemUsage(fast_);
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_EQ(fast->total_bytes, static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize);
  EXPECT_TRUE(absl::IsNotFound(FilesystemUsage(fast_ + "/missing").status()));
}

TEST_F(PartitionTest, CreateAndReleaseTimingsFor1And10GiB) {
  absl::StatusOr<SpaceUsage> host = FilesystemUsage(fast_);
  ASSERT_TRUE(host.ok()) << host.status();
  if (host->available_bytes < 14 * (1ull << 30)) GTEST_SKIP() << "needs 14 GiB free in /var/tmp";
  for (uint64_t gib : {1, 10}) {
    PartitionPaths p = Plan(absl::StrCat("timing-", gib));
    auto t0 = std::chrono::steady_clock::now();
    absl::Status created = CreatePartition(p, gib << 30);
    auto t1 = std::chrono::steady_clock::now();
    ASSERT_TRUE(created.ok()) << created;
    absl::Status released = ReleasePartition(p);
    auto t2 = std::chrono::steady_clock::now();
    ASSERT_TRUE(released.ok()) << released;
    using Ms = std::chrono::duration<double, std::milli>;
    std::printf("[ timing ] %2llu GiB partition: CreatePartition %.1f ms, "
                "ReleasePartition %.1f ms\n",
                static_cast<unsigned long long>(gib), Ms(t1 - t0).count(), Ms(t2 - t1).count());
  }
}

}  // namespace
}  // namespace gputier
