// The counting decisions of the BPF programs (bpf/count_logic.bpf.h) compiled
// as C++ and driven with plain values and structs, the way bpf/count.bpf.h
// drives them with what it read from the kernel. The same functions run in
// the kernel in tests/integration/count_selftest_test.cc.
#include <errno.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <cstdint>
#include <string>
#include <vector>

#include "count_logic.bpf.h"
#include "ext_class.bpf.h"
#include "gtest/gtest.h"
#include "loader/observe/ext_index.h"
#include "tests/ext_index_testing.h"

namespace gputier {
namespace {

// The programs' numbers and mode bits are the ones this machine's libc uses.
#if defined(__x86_64__)
static_assert(GT_NR_write == SYS_write && GT_NR_open == SYS_open && GT_NR_ioctl == SYS_ioctl &&
              GT_NR_pwrite64 == SYS_pwrite64 && GT_NR_writev == SYS_writev &&
              GT_NR_openat == SYS_openat && GT_NR_pwritev == SYS_pwritev &&
              GT_NR_pwritev2 == SYS_pwritev2 && GT_NR_openat2 == SYS_openat2,
              "x86_64 syscall numbers");
#endif
static_assert(GT_S_IFMT == S_IFMT && GT_S_IFREG == S_IFREG && GT_S_IFCHR == S_IFCHR, "mode bits");

struct SysExitCase {
  const char* description;
  long nr;
  long ret;
  gt_count_op expected;
};

TEST(CountLogic, SyscallExitCountsOpensThatReturnedAnFdWritesThatWroteAndEveryIoctl) {
  const SysExitCase kCases[] = {
      {"open returning an fd", SYS_open, 3, GT_COUNT_OPEN},
      {"openat returning fd 0", SYS_openat, 0, GT_COUNT_OPEN},
      {"openat2 returning an fd", SYS_openat2, 1000, GT_COUNT_OPEN},
      {"a failed open", SYS_open, -ENOENT, GT_COUNT_NONE},
      {"a failed openat", SYS_openat, -EACCES, GT_COUNT_NONE},
      {"a failed openat2", SYS_openat2, -E2BIG, GT_COUNT_NONE},
      {"an ioctl the driver took", SYS_ioctl, 0, GT_COUNT_IOCTL},
      {"an ioctl the driver refused", SYS_ioctl, -ENOTTY, GT_COUNT_IOCTL},
      {"an ioctl on no fd", SYS_ioctl, -EBADF, GT_COUNT_IOCTL},
      {"a write of one byte", SYS_write, 1, GT_COUNT_WRITE},
      {"a pwrite64", SYS_pwrite64, 4096, GT_COUNT_WRITE},
      {"a writev", SYS_writev, 10, GT_COUNT_WRITE},
      {"a pwritev", SYS_pwritev, 10, GT_COUNT_WRITE},
      {"a pwritev2", SYS_pwritev2, 10, GT_COUNT_WRITE},
      {"a write of nothing", SYS_write, 0, GT_COUNT_NONE},
      {"a failed write", SYS_write, -EBADF, GT_COUNT_NONE},
      {"a failed pwritev2", SYS_pwritev2, -EINVAL, GT_COUNT_NONE},
      {"a read", SYS_read, 100, GT_COUNT_NONE},
      {"a close", SYS_close, 0, GT_COUNT_NONE},
      {"a dup returns an fd but opens nothing", SYS_dup, 4, GT_COUNT_NONE},
      {"creat is not counted", SYS_creat, 3, GT_COUNT_NONE},
      {"no syscall (-1)", -1, 0, GT_COUNT_NONE},
      {"a number past the table", 100000, 3, GT_COUNT_NONE},
  };
  for (const SysExitCase& c : kCases) {
    EXPECT_EQ(gt_sys_exit_op(c.nr, c.ret), c.expected) << c.description;
  }
}

TEST(CountLogic, CountedFdIsWhatAnOpenReturnedOrTheFirstArgumentsLow32Bits) {
  EXPECT_EQ(gt_sys_exit_fd(GT_COUNT_OPEN, 7, 99), 7);
  EXPECT_EQ(gt_sys_exit_fd(GT_COUNT_IOCTL, -ENOTTY, 5), 5);
  EXPECT_EQ(gt_sys_exit_fd(GT_COUNT_WRITE, 100, 5), 5);
  // The kernel reads an int: upper bits a caller left in the register do
  // not make another fd, and a negative int stays negative (no file).
  EXPECT_EQ(gt_sys_exit_fd(GT_COUNT_WRITE, 100, 0xdeadbeef00000005ull), 5);
  EXPECT_EQ(gt_sys_exit_fd(GT_COUNT_IOCTL, 0, 0xffffffffull), -1);
}

TEST(CountLogic, OnlyRegularFilesAndCharDevicesCount) {
  struct ModeCase {
    const char* description;
    uint32_t mode;
    bool regular;
    bool char_dev;
  };
  const ModeCase kCases[] = {
      {"a regular file", S_IFREG | 0644, true, false},
      {"a setuid regular file", S_IFREG | S_ISUID | 0755, true, false},
      {"a char device", S_IFCHR | 0666, false, true},
      {"a directory", S_IFDIR | 0755, false, false},
      {"a pipe", S_IFIFO | 0600, false, false},
      {"a socket", S_IFSOCK | 0777, false, false},
      {"a block device", S_IFBLK | 0660, false, false},
      {"a symlink", S_IFLNK | 0777, false, false},
      {"no type bits", 0644, false, false},
  };
  for (const ModeCase& c : kCases) {
    EXPECT_EQ(gt_mode_is_regular(c.mode) != 0, c.regular) << c.description;
    EXPECT_EQ(gt_mode_is_char_dev(c.mode) != 0, c.char_dev) << c.description;
  }
}

TEST(CountLogic, DeviceKeySplitsTheKernelsDevTIntoMajorAndMinor) {
  // The kernel's dev_t: major in the high 12 bits, minor in the low 20
  // (not the userspace encoding of makedev()).
  auto kdev = [](uint32_t major, uint32_t minor) { return (major << 20) | minor; };
  struct gt_dev_key key = {};
  gt_dev_key_of(kdev(195, 0), &key);
  EXPECT_EQ(key.major, 195u);
  EXPECT_EQ(key.minor, 0u);
  gt_dev_key_of(kdev(226, 128), &key);
  EXPECT_EQ(key.major, 226u);
  EXPECT_EQ(key.minor, 128u);
  gt_dev_key_of(kdev(4095, (1u << 20) - 1), &key);
  EXPECT_EQ(key.major, 4095u);
  EXPECT_EQ(key.minor, (1u << 20) - 1);
}

TEST(CountLogic, NameTailIsTheLastSixteenBytesAndWholeOnlyForNamesThatFit) {
  for (uint32_t len = 0; len <= 3 * GT_NAME_TAIL; ++len) {
    EXPECT_EQ(gt_name_tail_len(len), len < GT_NAME_TAIL ? len : uint32_t{GT_NAME_TAIL}) << len;
    EXPECT_EQ(gt_name_tail_is_whole(len) != 0, len <= GT_NAME_TAIL) << len;
  }
  EXPECT_EQ(gt_name_tail_len(UINT32_MAX), uint32_t{GT_NAME_TAIL});
  EXPECT_FALSE(gt_name_tail_is_whole(UINT32_MAX));
}

TEST(CountLogic, AnOpenCountsInTheTotalAndInItsExtensionsClassOrAsNoExtension) {
  gt_cgroup_stats s = {};
  gt_stats_count_open(&s, /*has_ext=*/1, GT_CLASS_IMAGE);
  gt_stats_count_open(&s, 1, GT_CLASS_IMAGE);
  gt_stats_count_open(&s, 1, GT_CLASS_OTHER);
  gt_stats_count_open(&s, 1, GT_CLASS_MAX - 1);
  gt_stats_count_open(&s, /*has_ext=*/0, GT_CLASS_TENSOR);  // the class of no extension is ignored
  EXPECT_EQ(s.opens_total, 5u);
  EXPECT_EQ(s.opens_noext, 1u);
  EXPECT_EQ(s.opens_by_class[GT_CLASS_IMAGE], 2u);
  EXPECT_EQ(s.opens_by_class[GT_CLASS_OTHER], 1u);
  EXPECT_EQ(s.opens_by_class[GT_CLASS_MAX - 1], 1u);
  EXPECT_EQ(s.opens_by_class[GT_CLASS_TENSOR], 0u);
}

TEST(CountLogic, AClassIdOutOfRangeCountsOnlyInTheTotal) {
  gt_cgroup_stats s = {};
  gt_stats_count_open(&s, 1, GT_CLASS_MAX);
  gt_stats_count_open(&s, 1, UINT32_MAX);
  EXPECT_EQ(s.opens_total, 2u);
  EXPECT_EQ(s.opens_noext, 0u);
  for (uint64_t n : s.opens_by_class) EXPECT_EQ(n, 0u);
  EXPECT_EQ(s.gpu_opens, 0u) << "the field after opens_by_class";
}

TEST(CountLogic, GpuOpensAndIoctlsCountApartAndWritesCountCallsAndBytes) {
  gt_cgroup_stats s = {};
  gt_stats_count_gpu(&s, /*is_ioctl=*/0);
  gt_stats_count_gpu(&s, 1);
  gt_stats_count_gpu(&s, 1);
  gt_stats_count_write(&s, 4096);
  gt_stats_count_write(&s, 1);
  EXPECT_EQ(s.gpu_opens, 1u);
  EXPECT_EQ(s.gpu_ioctls, 2u);
  EXPECT_EQ(s.writes, 2u);
  EXPECT_EQ(s.bytes_written, 4097u);
  EXPECT_EQ(s.opens_total, 0u);
}

TEST(CountLogic, FirstGpuAccessAndFirstGpuIoctlAreEachReportedOncePerCgroup) {
  gt_cgroup_stats s = {};
  EXPECT_TRUE(gt_stats_first_gpu_access(&s, 1000));
  EXPECT_EQ(s.flags, static_cast<uint32_t>(GT_CG_GPU_SEEN));
  EXPECT_EQ(s.gpu_first_ns, 1000u);
  EXPECT_FALSE(gt_stats_first_gpu_access(&s, 2000));
  EXPECT_EQ(s.gpu_first_ns, 1000u) << "a later access keeps the first time";

  EXPECT_TRUE(gt_stats_first_gpu_ioctl(&s));
  EXPECT_EQ(s.flags, static_cast<uint32_t>(GT_CG_GPU_SEEN | GT_CG_GPU_IOCTL_SEEN));
  EXPECT_FALSE(gt_stats_first_gpu_ioctl(&s));
  EXPECT_FALSE(gt_stats_first_gpu_access(&s, 3000));
  EXPECT_EQ(s.gpu_first_ns, 1000u);
}

TEST(CountLogic, FirstGpuIoctlIsItsOwnFirstEvenAfterManyOpens) {
  gt_cgroup_stats s = {};
  s.flags = GT_CG_GPU_SEEN;  // opened before, never ioctl'ed
  s.gpu_first_ns = 5;
  EXPECT_FALSE(gt_stats_first_gpu_access(&s, 10));
  EXPECT_TRUE(gt_stats_first_gpu_ioctl(&s));
  EXPECT_EQ(s.gpu_first_ns, 5u);
}

TEST(CountLogic, EachGpuKindSeenSetsItsOwnBitOnce) {
  gt_cgroup_stats s = {};
  gt_stats_note_gpu_kind(&s, GT_GPU_NVIDIA);
  gt_stats_note_gpu_kind(&s, GT_GPU_NVIDIA);
  gt_stats_note_gpu_kind(&s, GT_GPU_DRM);
  EXPECT_EQ(s.gpu_kinds, (1u << GT_GPU_NVIDIA) | (1u << GT_GPU_DRM));
  gt_stats_note_gpu_kind(&s, GT_GPU_CONFIGURED);
  EXPECT_EQ(s.gpu_kinds, (1u << GT_GPU_NVIDIA) | (1u << GT_GPU_DRM) | (1u << GT_GPU_CONFIGURED));
  EXPECT_EQ(s.flags, 0u) << "a kind bit is no first access";
}

TEST(CountLogic, BucketTellsAClassOrOtherAndLeavesOnlyAnOverflowedMissToTheHashMap) {
  const std::vector<std::string> crowded = CollidingExtensions(GT_EXT_WAYS + 1);
  const std::vector<gt_ext_bucket> index =
      BuildExtIndex({{GT_CLASS_IMAGE, "image", {"png"}}, {GT_CLASS_FIRST_CUSTOM, "crowded", crowded}});
  auto class_of = [&](const std::string& ext, uint32_t* cls) {
    const gt_ext_key key = ExtKey(ext);
    *cls = 12345;
    return gt_ext_bucket_class(&index.at(gt_ext_bucket_of(&key)), &key, cls);
  };
  uint32_t cls;
  EXPECT_EQ(class_of("png", &cls), 1);
  EXPECT_EQ(cls, uint32_t{GT_CLASS_IMAGE});

  // The bucket of an extension in no class never overflowed: other, decided.
  const gt_ext_key xyz = ExtKey("xyz");
  ASSERT_FALSE(index.at(gt_ext_bucket_of(&xyz)).overflow);
  EXPECT_EQ(class_of("xyz", &cls), 1);
  EXPECT_EQ(cls, uint32_t{GT_CLASS_OTHER});

  // The crowded bucket holds GT_EXT_WAYS of them; the one left out is the
  // hash map's to tell, and the class reads as other until it does.
  int in_bucket = 0, left_to_hash = 0;
  for (const std::string& ext : crowded) {
    if (class_of(ext, &cls)) {
      ++in_bucket;
      EXPECT_EQ(cls, uint32_t{GT_CLASS_FIRST_CUSTOM}) << ext;
    } else {
      ++left_to_hash;
      EXPECT_EQ(cls, uint32_t{GT_CLASS_OTHER}) << ext;
    }
  }
  EXPECT_EQ(in_bucket, GT_EXT_WAYS);
  EXPECT_EQ(left_to_hash, 1);
}

}  // namespace
}  // namespace gputier
