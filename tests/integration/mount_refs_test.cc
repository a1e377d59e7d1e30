// What pins a mount: fds, cwd, root and mappings of real processes in a real
// runc container, found by mount id. Also the mountinfo parsing (pure, runs
// without root). The container tests need root, runc and busybox-static.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "loader/cgroup/cgroup_freezer.h"
#include "loader/base/mount_refs.h"
#include "loader/tier/fs/tier_mount.h"
#include "loader/config/container_path.h"
#include "tests/integration/runc_container.h"

namespace gputier {
namespace {

using ::gputier::testing::CommandResult;
using ::gputier::testing::RuncContainer;
using ::gputier::testing::TempDir;

TEST(MountinfoParse, ReadsFieldsOptionalTagsAndEscapes) {
  absl::StatusOr<MountinfoEntry> e = ParseMountinfoLine(
      "36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 shared:7 - ext3 /dev/root "
      "rw,errors=continue");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->mount_id, 36u);
  EXPECT_EQ(e->parent_id, 35u);
  EXPECT_EQ(e->root, "/mnt1");
  EXPECT_EQ(e->mount_point, "/mnt 2");
  EXPECT_EQ(e->fstype, "ext3");
  EXPECT_EQ(e->source, "/dev/root");
  EXPECT_EQ(e->super_options, (std::vector<std::string>{"rw", "errors=continue"}));
}

TEST(MountinfoParse, RefusesLinesWithoutSeparatorOrFields) {
  for (const char* bad : {"36 35 98:0 / /mnt rw ext3 /dev/root rw", "x 35 98:0 / /m rw - ext3 a b",
                          "36 35 98:0 / - ext3 a rw", "36 35 98:0 / /m rw -"}) {
    EXPECT_FALSE(ParseMountinfoLine(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseMountinfo("36 35 98:0 / / rw - ext4 a rw\ngarbage\n").ok());
  absl::StatusOr<std::vector<MountinfoEntry>> two =
      ParseMountinfo("1 0 8:1 / / rw - ext4 /dev/a rw\n\n2 1 0:5 / /sys rw - sysfs s rw\n");
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->size(), 2u);
}

TEST(MountinfoParse, UnescapeKeepsWhatIsNotAnOctalEscape) {
  EXPECT_EQ(UnescapeMountinfo("a\\040b\\011c\\134d"), "a b\tc\\d");
  EXPECT_EQ(UnescapeMountinfo("tail\\04"), "tail\\04");
  EXPECT_EQ(UnescapeMountinfo("no\\x41"), "no\\x41");
}

struct OverlayOptionsCase {
  const char* description;
  std::string line;
  std::string upperdir;
  std::vector<std::string> lowerdirs;
};

TEST(MountinfoParse, OverlayLayersFromEitherOptionStyle) {
  const OverlayOptionsCase cases[] = {
      {"lowerdir+ per layer, escaped comma",
       "73 46 0:40 / /data rw - overlay none rw,lowerdir+=/slow/a\\054b,lowerdir+=/,"
       "upperdir=/fast/u,workdir=/fast/w,uuid=on",
       "/fast/u", {"/slow/a,b", "/"}},
      {"legacy lowerdir list with an escaped colon and a data layer",
       "74 46 0:41 / /x rw - overlay overlay rw,lowerdir=/l1:/l\\134:2::/d1,"
       "upperdir=/u\\040x,workdir=/w",
       "/u x", {"/l1", "/l:2", "/d1"}},
      {"data layers after lowerdir+",
       "75 46 0:42 / /y rw - overlay none ro,lowerdir+=/a,datadir+=/d,lowerdir+=/b",
       "", {"/a", "/b", "/d"}},
  };
  for (const OverlayOptionsCase& c : cases) {
    SCOPED_TRACE(c.description);
    absl::StatusOr<MountinfoEntry> e = ParseMountinfoLine(c.line);
    ASSERT_TRUE(e.ok()) << e.status();
    PathMount mount;
    ReadOverlayLayers(e->super_options, &mount);
    EXPECT_EQ(mount.upperdir, c.upperdir);
    EXPECT_EQ(mount.lowerdirs, c.lowerdirs);
  }
}

class MountRefsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (runc, /proc/<pid>/map_files)";
    struct stat st;
    if (lstat("/bin/busybox", &st) != 0) GTEST_SKIP() << "needs busybox-static";
    absl::StatusOr<std::string> root = Cgroup2Root();
    if (!root.ok()) GTEST_SKIP() << root.status();
    tier_ = std::make_unique<TempDir>("gputier-refs");
    ASSERT_FALSE(tier_->path().empty());
    absl::StatusOr<std::unique_ptr<RuncContainer>> c = RuncContainer::Start({});
    ASSERT_TRUE(c.ok()) << c.status();
    container_ = *std::move(c);
    cgroup_ = *root + container_->cgroup();

    TierMountRequest request;
    request.pid = container_->pid();
    request.path = {"/data"};
    absl::StatusOr<TierLayout> layout =
        PlanTierLayout(tier_->path(), container_->id(), request.path);
    ASSERT_TRUE(layout.ok()) << layout.status();
    request.layout = *layout;
    absl::StatusOr<TierMount> mount = MountTier(request);
    ASSERT_TRUE(mount.ok()) << mount.status();
    mount_id_ = mount->mount_id;
  }

  void TearDown() override { container_.reset(); }

  void MustExec(const std::string& script) {
    absl::StatusOr<CommandResult> r = container_->Exec(script);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->exit_code, 0) << script << ": " << r->output;
  }

  // The references of all processes of the container into the overlay.
  std::vector<MountReference> ContainerReferences() {
    absl::StatusOr<std::vector<pid_t>> pids = CgroupProcs(cgroup_);
    EXPECT_TRUE(pids.ok()) << pids.status();
    if (!pids.ok()) return {};
    absl::StatusOr<std::vector<MountReference>> refs = FindMountReferences(*pids, mount_id_);
    EXPECT_TRUE(refs.ok()) << refs.status();
    return refs.ok() ? *refs : std::vector<MountReference>{};
  }

  std::unique_ptr<TempDir> tier_;
  std::unique_ptr<RuncContainer> container_;
  std::string cgroup_;
  uint64_t mount_id_ = 0;
};

const MountReference* Find(const std::vector<MountReference>& refs, const std::string& kind,
                           const std::string& detail_part) {
  for (const MountReference& r : refs) {
    if (r.kind == kind && absl::StrContains(r.detail, detail_part)) return &r;
  }
  return nullptr;
}

std::string Describe(const std::vector<MountReference>& refs) {
  std::string out;
  for (const MountReference& r : refs) absl::StrAppend(&out, r.pid, " ", r.kind, " ", r.detail, "; ");
  return out;
}

TEST_F(MountRefsTest, FindsOpenFilesAndCwdOfContainerProcessesUntilTheyEnd) {
  // One process holds fd 3 on /data/f, one stands in /data/d.
  ASSERT_NO_FATAL_FAILURE(MustExec(
      "echo hi > /data/f && mkdir /data/d || exit 1; "
      "(sleep 100000 3>>/data/f) >/dev/null 2>&1 & "
      "(cd /data/d && exec sleep 100000) >/dev/null 2>&1 &"));
  std::vector<MountReference> refs;
  for (int i = 0; i < 100; ++i) {
    refs = ContainerReferences();
    if (Find(refs, "fd", "/data/f") && Find(refs, "cwd", "/data/d")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const MountReference* fd = Find(refs, "fd", "/data/f");
  const MountReference* cwd = Find(refs, "cwd", "/data/d");
  ASSERT_NE(fd, nullptr) << Describe(refs);
  ASSERT_NE(cwd, nullptr) << Describe(refs);
  EXPECT_TRUE(absl::StartsWith(fd->detail, "fd 3 -> ")) << fd->detail;
  EXPECT_NE(fd->pid, cwd->pid);
  EXPECT_EQ(Find(refs, "fd", "/data/d"), nullptr);
  // The init (cwd "/", root the rootfs) holds nothing in /data.
  for (const MountReference& r : refs) EXPECT_NE(r.pid, container_->pid()) << Describe(refs);

  std::set<pid_t> holders;
  for (const MountReference& r : refs) holders.insert(r.pid);
  for (pid_t pid : holders) ASSERT_EQ(kill(pid, SIGKILL), 0) << pid;
  for (int i = 0; i < 100 && !refs.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    refs = ContainerReferences();
  }
  EXPECT_TRUE(refs.empty()) << Describe(refs);
}

TEST_F(MountRefsTest, FindsAMappedFileAfterItsFdIsClosed) {
  ASSERT_NO_FATAL_FAILURE(MustExec("echo mapped > /data/m"));
  // This test process maps a file of the container's overlay (reached
  // through /proc/<init>/root, a test-only shortcut) and closes the fd.
  std::string path = absl::StrCat("/proc/", container_->pid(), "/root/data/m");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path;
  void* map = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  ASSERT_NE(map, MAP_FAILED);

  absl::StatusOr<std::vector<MountReference>> refs = FindMountReferences({getpid()}, mount_id_);
  ASSERT_TRUE(refs.ok()) << refs.status();
  ASSERT_EQ(refs->size(), 1u) << Describe(*refs);
  EXPECT_EQ((*refs)[0].kind, "map");
  EXPECT_EQ((*refs)[0].pid, getpid());
  EXPECT_TRUE(absl::StrContains((*refs)[0].detail, "/data/m")) << (*refs)[0].detail;

  munmap(map, 4096);
  refs = FindMountReferences({getpid()}, mount_id_);
  ASSERT_TRUE(refs.ok()) << refs.status();
  EXPECT_TRUE(refs->empty()) << Describe(*refs);
}

// The container has no CAP_SYS_CHROOT (runc's default set), so a host child
// chroots into the overlay (through /proc/<init>/root, a test-only path).
TEST_F(MountRefsTest, FindsTheRootAndCwdOfAChrootedProcess) {
  ASSERT_NO_FATAL_FAILURE(MustExec("mkdir /data/r"));
  std::string path = absl::StrCat("/proc/", container_->pid(), "/root/data/r");
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (chroot(path.c_str()) != 0 || chdir("/") != 0) _exit(1);
    for (;;) pause();
  }
  std::vector<MountReference> refs;
  for (int i = 0; i < 100 && refs.size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    absl::StatusOr<std::vector<MountReference>> found = FindMountReferences({child}, mount_id_);
    ASSERT_TRUE(found.ok()) << found.status();
    refs = *found;
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_EQ(refs.size(), 2u) << Describe(refs);
  EXPECT_EQ(refs[0].kind, "cwd");
  EXPECT_EQ(refs[1].kind, "root");
  EXPECT_EQ(refs[1].pid, child);
  absl::StatusOr<std::vector<MountReference>> after = FindMountReferences({child}, mount_id_);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(after->empty()) << Describe(*after);
}

TEST_F(MountRefsTest, VanishedProcessesAreSkipped) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  absl::StatusOr<std::vector<MountReference>> refs =
      FindMountReferences({child, container_->pid()}, mount_id_);
  ASSERT_TRUE(refs.ok()) << refs.status();
  EXPECT_TRUE(refs->empty()) << Describe(*refs);
  EXPECT_FALSE(FindMountReferences({0}, mount_id_).ok());
}

}  // namespace
}  // namespace gputier
