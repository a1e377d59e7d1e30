// The counting logic in the kernel, without a hook: bpf/count_selftest.bpf.c
// is a SEC("syscall") program that hands one crafted syscall exit to the same
// functions the hook programs call (bpf/sys_exit.bpf.h, bpf/count.bpf.h),
// against maps of its own (unpinned). This test runs it with
// bpf_prog_test_run_opts in its own task, on fds it opened itself (regular
// files, a directory, a pipe, /dev/null and /dev/zero as char devices), and
// checks the counters and events the program leaves in those maps.
//
// Every case runs once per way of counting: the tracepoint program's typed
// build, its bpf_probe_read_kernel build, and the LSM/fexit programs' way.
// Root and Linux 6.2+ (the bpf_rdonly_cast kfunc); skipped otherwise. About
// a second in all.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bpf/count_selftest.skel.h"
#include "count_selftest.h"
#include "gtest/gtest.h"
#include "loader/base/fd.h"
#include "loader/cgroup/cgroup_resolver.h"
#include "loader/config/config.h"
#include "loader/observe/maps.h"
#include "loader/observe/observer.h"
#include "loader/observe/skeleton.h"
#include "tests/ext_index_testing.h"

namespace gputier {

GT_SKELETON_OPS(count_selftest);

namespace {

// Room for this many cgroups in the self-test's gt_cg_stats (a full map is a
// case of its own).
constexpr uint32_t kMaxCgroups = 4;

constexpr uint32_t kCrowdedClass = GT_CLASS_FIRST_CUSTOM;

// The extension classes the self-test's maps are filled with, through the
// agent's own FillClasses: built-in classes, and one class whose extensions
// all fall into one bucket, one more than it has ways.
std::vector<ExtensionClass> Classes() {
  return {
      {GT_CLASS_IMAGE, "image", {"png", "jpg"}},
      {GT_CLASS_VIDEO, "video", {"mp4"}},
      {GT_CLASS_TENSOR, "tensor", {"safetensors"}},
      {kCrowdedClass, "crowded", CollidingExtensions(GT_EXT_WAYS + 1)},
  };
}

std::string HookName(const ::testing::TestParamInfo<gt_selftest_hook>& info) {
  switch (info.param) {
    case GT_SELFTEST_TP: return "TracepointTyped";
    case GT_SELFTEST_TP_COMPAT: return "TracepointProbeRead";
    case GT_SELFTEST_LSM: return "Lsm";
  }
  return "Unknown";
}

bool VmlinuxHasFunc(const char* name) {
  struct btf* btf = btf__load_vmlinux_btf();
  if (btf == nullptr) return false;
  const bool found = btf__find_by_name_kind(btf, name, BTF_KIND_FUNC) > 0;
  btf__free(btf);
  return found;
}

// The object is loaded once per process (the verifier and the kernel's BTF
// cost about half a second); each case starts from emptied maps.
class CountSelftest : public ::testing::TestWithParam<gt_selftest_hook> {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) {
      skip_ = "needs root: loads a BPF program";
    } else if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SYSCALL, nullptr) <= 0) {
      skip_ = "this kernel has no SEC(\"syscall\") programs (Linux 5.14+)";
    } else if (!VmlinuxHasFunc("bpf_rdonly_cast")) {
      skip_ = "this kernel has no bpf_rdonly_cast kfunc (Linux 6.2+)";
    }
    if (!skip_.empty()) return;
    absl::StatusOr<Skeleton<count_selftest_bpf>> skel = Skeleton<count_selftest_bpf>::Open("");
    ASSERT_TRUE(skel.ok()) << skel.status();
    ASSERT_EQ(bpf_map__set_max_entries((*skel)->maps.gt_cg_stats, kMaxCgroups), 0);
    absl::Status loaded = skel->Load();
    ASSERT_TRUE(loaded.ok()) << loaded << " (the verifier's log is above)";
    absl::Status filled = FillClasses(skel->object(), Classes());
    ASSERT_TRUE(filled.ok()) << filled;
    skel_ = new Skeleton<count_selftest_bpf>(*std::move(skel));
  }
  static void TearDownTestSuite() {
    delete skel_;
    skel_ = nullptr;
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_NE(skel_, nullptr) << "the self-test object did not load";
    EmptyMap((*skel_)->maps.gt_cg_stats);
    EmptyMap((*skel_)->maps.gt_gpu_devs);
    const std::vector<uint64_t> zeros(libbpf_num_possible_cpus(), 0);
    for (uint32_t reason = 0; reason < GT_DROP_MAX; ++reason) {
      ASSERT_EQ(bpf_map_update_elem(MapFd((*skel_)->maps.gt_drops), &reason, zeros.data(), BPF_ANY), 0);
    }
    Events();

    absl::StatusOr<CgroupResolver> resolver = CgroupResolver::Create();
    ASSERT_TRUE(resolver.ok()) << resolver.status();
    absl::StatusOr<uint64_t> self = resolver->SelfId();
    ASSERT_TRUE(self.ok()) << self.status();
    self_cgroup_ = *self;

    std::string dir = "/tmp/gputier-count-selftest-XXXXXX";
    ASSERT_NE(mkdtemp(dir.data()), nullptr) << strerror(errno);
    dir_ = std::move(dir);  // set once made: TearDown removes it
  }

  void TearDown() override {
    fds_.clear();
    for (const std::string& path : files_) unlink(path.c_str());
    // (mkdtemp's random suffix may itself end in 'X': only whether it was
    // made tells.)
    if (!dir_.empty()) rmdir(dir_.c_str());
  }

  static void EmptyMap(bpf_map* map) {
    std::vector<char> key(bpf_map__key_size(map));
    while (bpf_map_get_next_key(bpf_map__fd(map), nullptr, key.data()) == 0) {
      ASSERT_EQ(bpf_map_delete_elem(bpf_map__fd(map), key.data()), 0) << strerror(errno);
    }
  }

  static int MapFd(bpf_map* map) { return bpf_map__fd(map); }

  // Selects GPU devices in the self-test's gt_gpu_devs.
  void SelectGpuDevice(uint32_t major, uint32_t minor, gt_gpu_kind kind) {
    const gt_dev_key key = {major, minor};
    const gt_dev_val val = {static_cast<uint32_t>(kind), 0};
    ASSERT_EQ(bpf_map_update_elem(MapFd((*skel_)->maps.gt_gpu_devs), &key, &val, BPF_ANY), 0)
        << strerror(errno);
  }

  // An fd of this process that the test keeps open until its end.
  int Keep(int fd) {
    EXPECT_GE(fd, 0) << strerror(errno);
    fds_.emplace_back(fd);
    return fd;
  }

  // A regular file `name` in the test's directory, opened read-write.
  int OpenFile(const std::string& name) {
    const std::string path = absl::StrCat(dir_, "/", name);
    files_.push_back(path);
    return Keep(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  }

  // One syscall exit through the program: `nr` returned `ret`, with `arg0`
  // as its first argument.
  void Exit(long nr, long ret, unsigned long arg0 = 0) {
    gt_selftest_exit exit = {};
    exit.nr = nr;
    exit.ret = ret;
    exit.arg0 = arg0;
    exit.hook = GetParam();
    LIBBPF_OPTS(bpf_test_run_opts, opts);
    opts.ctx_in = &exit;
    opts.ctx_size_in = sizeof(exit);
    ASSERT_EQ(bpf_prog_test_run_opts(bpf_program__fd((*skel_)->progs.gt_selftest_sys_exit), &opts), 0)
        << strerror(errno);
    ASSERT_EQ(opts.retval, 0u);
  }
  void Opened(int fd) { Exit(SYS_openat, fd); }

  // This process's cgroup counters (none counted yet: all zero, found false).
  gt_cgroup_stats Stats(bool* found = nullptr) {
    absl::StatusOr<gt_cgroup_stats> s = ReadCgroupCounter(MapFd((*skel_)->maps.gt_cg_stats), self_cgroup_);
    if (found != nullptr) *found = s.ok();
    if (!s.ok()) {
      EXPECT_TRUE(absl::IsNotFound(s.status())) << s.status();
      return {};
    }
    return *s;
  }

  // The events the program raised, oldest first.
  std::vector<gt_event> Events() {
    std::vector<gt_event> events;
    auto take = [](void* ctx, void* data, size_t size) -> int {
      if (size >= sizeof(gt_event)) {
        static_cast<std::vector<gt_event>*>(ctx)->push_back(*static_cast<const gt_event*>(data));
      }
      return 0;
    };
    ring_buffer* rb = ring_buffer__new(MapFd((*skel_)->maps.gt_events), take, &events, nullptr);
    EXPECT_NE(rb, nullptr) << strerror(errno);
    if (rb != nullptr) {
      ring_buffer__consume(rb);
      ring_buffer__free(rb);
    }
    return events;
  }

  static inline std::string skip_;
  static inline Skeleton<count_selftest_bpf>* skel_ = nullptr;
  uint64_t self_cgroup_ = 0;
  std::string dir_;
  std::vector<std::string> files_;
  std::vector<Fd> fds_;
};

TEST_P(CountSelftest, OpensOfRegularFilesCountByTheClassOfTheirLastExtension) {
  Opened(OpenFile("frame_0001.PNG"));     // upper case: lowered
  Opened(OpenFile("poster.jpg"));
  Opened(OpenFile("clip.final.mp4"));     // the last extension counts
  Opened(OpenFile("model.safetensors"));
  Opened(OpenFile("notes.gtother"));      // in no class: other
  Opened(OpenFile("README"));             // no extension
  Opened(OpenFile(".bashrc"));            // a dotfile: no extension
  Opened(OpenFile("checkpoint-step-000042.safetensors"));  // longer than the tail read

  const gt_cgroup_stats s = Stats();
  EXPECT_EQ(s.opens_total, 8u);
  EXPECT_EQ(s.opens_noext, 2u);
  EXPECT_EQ(s.opens_by_class[GT_CLASS_IMAGE], 2u);
  EXPECT_EQ(s.opens_by_class[GT_CLASS_VIDEO], 1u);
  EXPECT_EQ(s.opens_by_class[GT_CLASS_TENSOR], 2u);
  EXPECT_EQ(s.opens_by_class[GT_CLASS_OTHER], 1u);
  EXPECT_EQ(s.gpu_opens + s.gpu_ioctls + s.writes + s.bytes_written, 0u);
  EXPECT_NE(s.first_seen_ns, 0u);
  EXPECT_GE(s.last_seen_ns, s.first_seen_ns);
}

TEST_P(CountSelftest, ExtensionBeyondAFullBucketsWaysCountsInItsClass) {
  for (const std::string& ext : CollidingExtensions(GT_EXT_WAYS + 1)) {
    Opened(OpenFile(absl::StrCat("file.", ext)));
  }
  const gt_cgroup_stats s = Stats();
  EXPECT_EQ(s.opens_by_class[kCrowdedClass], GT_EXT_WAYS + 1u);
  EXPECT_EQ(s.opens_by_class[GT_CLASS_OTHER], 0u);
}

TEST_P(CountSelftest, FailedOpensEmptyWritesAndOtherSyscallsCountNothing) {
  const int fd = OpenFile("data.png");
  Exit(SYS_openat, -ENOENT);
  Exit(SYS_open, -EACCES);
  Exit(SYS_write, 0, fd);
  Exit(SYS_pwrite64, -EBADF, fd);
  Exit(SYS_read, 4096, fd);
  Exit(SYS_close, 0, fd);
  Exit(SYS_dup, fd + 1, fd);  // returns an fd, but is no open
  bool found = true;
  Stats(&found);
  EXPECT_FALSE(found) << "a syscall that counts nothing created the cgroup's counters";
}

TEST_P(CountSelftest, DirectoriesAndPipesCountNeitherOpensNorWrites) {
  const int dir = Keep(open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  Keep(pipe_fds[0]);
  Keep(pipe_fds[1]);
  Opened(dir);
  Opened(pipe_fds[0]);
  Exit(SYS_write, 64, pipe_fds[1]);
  Exit(SYS_ioctl, 0, pipe_fds[1]);
  Opened(9999);  // no such fd
  bool found = true;
  Stats(&found);
  EXPECT_FALSE(found);
}

TEST_P(CountSelftest, WritesCountTheBytesWrittenToRegularFiles) {
  const int fd = OpenFile("out.bin");
  Exit(SYS_write, 100, fd);
  Exit(SYS_pwrite64, 28, fd);
  Exit(SYS_writev, 1000, fd);
  Exit(SYS_pwritev, 1, fd);
  Exit(SYS_pwritev2, 7, fd);
  // The fd is the argument's low 32 bits, as the kernel reads an int.
  Exit(SYS_write, 4, (0xdeadbeefull << 32) | static_cast<unsigned>(fd));
  const gt_cgroup_stats s = Stats();
  EXPECT_EQ(s.writes, 6u);
  EXPECT_EQ(s.bytes_written, 1140u);
  EXPECT_EQ(s.opens_total, 0u);
}

TEST_P(CountSelftest, SelectedGpuDeviceCountsOpensAndIoctlsAndRaisesEachFirstEventOnce) {
  struct stat st;
  ASSERT_EQ(stat("/dev/null", &st), 0);
  ASSERT_TRUE(S_ISCHR(st.st_mode));
  SelectGpuDevice(major(st.st_rdev), minor(st.st_rdev), GT_GPU_NVIDIA);
  const int gpu = Keep(open("/dev/null", O_RDWR | O_CLOEXEC));

  Opened(gpu);
  bool found = false;
  gt_cgroup_stats s = Stats(&found);
  ASSERT_TRUE(found);
  EXPECT_EQ(s.gpu_opens, 1u);
  EXPECT_EQ(s.gpu_ioctls, 0u);
  EXPECT_EQ(s.flags, static_cast<uint32_t>(GT_CG_GPU_SEEN));
  EXPECT_EQ(s.gpu_kinds, 1u << GT_GPU_NVIDIA);
  EXPECT_EQ(s.gpu_first_ns, s.first_seen_ns);
  EXPECT_EQ(s.opens_total, 0u) << "a char device is no regular file";
  const uint64_t first_ns = s.gpu_first_ns;

  Exit(SYS_ioctl, -ENOTTY, gpu);  // counted whether the driver took it or not
  Exit(SYS_ioctl, 0, gpu);
  Exit(SYS_write, 10, gpu);       // writes count for regular files only
  s = Stats();
  EXPECT_EQ(s.gpu_opens, 1u);
  EXPECT_EQ(s.gpu_ioctls, 2u);
  EXPECT_EQ(s.flags, static_cast<uint32_t>(GT_CG_GPU_SEEN | GT_CG_GPU_IOCTL_SEEN));
  EXPECT_EQ(s.gpu_first_ns, first_ns) << "the first GPU access keeps its time";
  EXPECT_EQ(s.writes, 0u);

  const std::vector<gt_event> events = Events();
  ASSERT_EQ(events.size(), 2u) << "one event per first, however often the device is used";
  EXPECT_EQ(events[0].type, static_cast<uint32_t>(GT_EV_FIRST_GPU_ACCESS));
  EXPECT_EQ(events[1].type, static_cast<uint32_t>(GT_EV_FIRST_GPU_IOCTL));
  for (const gt_event& e : events) {
    EXPECT_EQ(e.cgroup_id, self_cgroup_);
    EXPECT_EQ(e.pid, static_cast<uint32_t>(getpid()));
    EXPECT_EQ(e.gpu_kind, static_cast<uint32_t>(GT_GPU_NVIDIA));
    EXPECT_EQ(e.dev_major, major(st.st_rdev));
    EXPECT_EQ(e.dev_minor, minor(st.st_rdev));
  }
}

TEST_P(CountSelftest, CharDeviceCountsOnlyWhenItsNumberOrItsWholeMajorIsSelected) {
  struct stat null_st, zero_st;
  ASSERT_EQ(stat("/dev/null", &null_st), 0);
  ASSERT_EQ(stat("/dev/zero", &zero_st), 0);
  ASSERT_EQ(major(null_st.st_rdev), major(zero_st.st_rdev));
  SelectGpuDevice(major(null_st.st_rdev), minor(null_st.st_rdev), GT_GPU_DRM);
  const int zero = Keep(open("/dev/zero", O_RDONLY | O_CLOEXEC));

  Opened(zero);
  Exit(SYS_ioctl, 0, zero);
  bool found = true;
  Stats(&found);
  EXPECT_FALSE(found) << "/dev/zero counted while only /dev/null was selected";

  SelectGpuDevice(major(zero_st.st_rdev), GT_MINOR_ANY, GT_GPU_ACCEL);
  Opened(zero);
  const gt_cgroup_stats s = Stats();
  EXPECT_EQ(s.gpu_opens, 1u);
  EXPECT_EQ(s.gpu_kinds, 1u << GT_GPU_ACCEL);
}

TEST_P(CountSelftest, CgroupThatFindsTheCounterMapFullIsCountedAsADrop) {
  const int map = MapFd((*skel_)->maps.gt_cg_stats);
  const gt_cgroup_stats zero = {};
  for (uint64_t other = 1; other <= kMaxCgroups; ++other) {
    const uint64_t id = self_cgroup_ + other;
    ASSERT_EQ(bpf_map_update_elem(map, &id, &zero, BPF_NOEXIST), 0) << strerror(errno);
  }
  Opened(OpenFile("a.png"));
  Opened(OpenFile("b.png"));
  bool found = true;
  Stats(&found);
  EXPECT_FALSE(found);
  absl::StatusOr<std::array<uint64_t, GT_DROP_MAX>> drops = ReadDrops(MapFd((*skel_)->maps.gt_drops));
  ASSERT_TRUE(drops.ok()) << drops.status();
  EXPECT_EQ((*drops)[GT_DROP_CGROUP_MAP_FULL], 2u);
}

INSTANTIATE_TEST_SUITE_P(EachWayOfCounting, CountSelftest,
                         ::testing::Values(GT_SELFTEST_TP, GT_SELFTEST_TP_COMPAT, GT_SELFTEST_LSM),
                         HookName);

}  // namespace
}  // namespace gputier
