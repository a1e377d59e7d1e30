// Host (and VM) integration: the real gputierd on the real kernel counts
// exactly what a process in a fresh cgroup does, and nothing else.
//
// Runs in the mode named by GPUTIER_TEST_MODE (tracepoint on the host; the VM
// runs it in auto mode and expects lsm, or tracepoint when booted without bpf).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/ext_index_testing.h"
#include "tests/integration/agent_harness.h"

namespace gputier::testing {
namespace {

// One file per class, named to exercise the extension rules.
struct ClassFile {
  const char* class_name;  // key in opens_by_class, or "noext"
  const char* file_name;
};
constexpr ClassFile kClassFiles[] = {
    {"image", "frame_0001.PNG"},       {"video", "clip.final.mp4"},
    {"tensor", "model.safetensors"},   {"graphics", "mesh.glb"},
    {"other", "notes.gtother"},        {"noext", "README"},
};

struct Workload {
  int opens_per_file = 0;
  int gpu_ioctls = 0;
  int write_calls = 0;
  int bytes_per_write = 0;
};

// A 32-bit syscall made from this 64-bit process with int 0x80: `nr` in
// eax is an ia32 syscall number; rdi holds `rdi` (not an ia32 argument), as
// a program switching modes would leave it. Returns the syscall's result.
long Ia32Syscall(long nr, long rdi) {
  long ret;
  register long rdi_reg asm("rdi") = rdi;
  asm volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(0L), "c"(0L), "d"(0L), "r"(rdi_reg) : "memory");
  return ret;
}
constexpr long kIa32Lchown = 16;  // the native ioctl's number
constexpr long kIa32Getpid = 20;  // the native writev's number

// Whether this kernel runs 32-bit syscalls (IA32 emulation built in and not
// turned off with ia32_emulation=0; int 0x80 faults otherwise).
bool KernelRunsIa32Syscalls() {
  pid_t child = fork();
  if (child == 0) _exit(Ia32Syscall(kIa32Getpid, 0) > 0 ? 0 : 1);
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

class ObserveCountingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs and makes cgroups";
    for (const ClassFile& f : kClassFiles) WriteFile(Data(f.file_name), 16);
    // The GPU test device: no GPU driver is behind it; the agent reports it
    // as a configured device number.
    gpu_ = std::make_unique<GpuTestDevice>();
    gpu_path_ = gpu_->path();
    config_ = gpu_->ConfigYaml();
  }

  std::string Data(const std::string& name) { return agent_.work_dir() + "/" + name; }

  // Runs `w` inside `cg` using only raw syscalls.
  void Run(const TestCgroup& cg, const Workload& w) {
    std::vector<std::string> paths;
    for (const ClassFile& f : kClassFiles) paths.push_back(Data(f.file_name));
    int rc = RunRawWorkload(cg, {paths, w.opens_per_file, gpu_path_, w.gpu_ioctls, Data("written.dat"),
                                 w.write_calls, w.bytes_per_write});
    ASSERT_EQ(rc, 0) << "workload failed inside cgroup " << cg.relative();
  }

  // Asserts the counters of `cgroup_id` equal `runs` repetitions of `w`.
  void ExpectCounts(uint64_t cgroup_id, const Workload& w, int runs) {
    absl::StatusOr<nlohmann::json> row = agent_.AuditCgroup(cgroup_id);
    ASSERT_TRUE(row.ok()) << row.status();
    ASSERT_FALSE(row->is_null()) << "no counters for cgroup " << cgroup_id;
    const uint64_t files = w.opens_per_file * runs;
    const uint64_t write_file_opens = w.write_calls > 0 ? runs : 0;  // written.dat ("dat": other)
    EXPECT_EQ(row->at("opens_total"), files * 6 + write_file_opens) << row->dump(2);
    EXPECT_EQ(row->at("opens_noext"), files);
    const nlohmann::json& by_class = row->at("opens_by_class");
    for (const char* cls : {"image", "video", "tensor", "graphics"}) {
      EXPECT_EQ(by_class.at(cls), files) << cls << ": " << row->dump(2);
    }
    EXPECT_EQ(by_class.at("other"), files + write_file_opens);
    EXPECT_EQ(row->at("gpu_opens"), w.gpu_ioctls > 0 ? runs : 0);
    EXPECT_EQ(row->at("gpu_ioctls"), static_cast<uint64_t>(w.gpu_ioctls) * runs);
    EXPECT_EQ(row->at("bytes_written"), static_cast<uint64_t>(w.write_calls) * w.bytes_per_write * runs);
    EXPECT_EQ(row->at("writes"), static_cast<uint64_t>(w.write_calls) * runs);
    EXPECT_GT(row->at("last_seen_ns").get<uint64_t>(), 0u);
    EXPECT_LE(row->at("first_seen_ns").get<uint64_t>(), row->at("last_seen_ns").get<uint64_t>());
  }

  AgentProcess agent_;
  std::unique_ptr<GpuTestDevice> gpu_;
  std::string gpu_path_;
  std::string config_;
};

TEST_F(ObserveCountingTest, CountsExactlyWhatACgroupDidAndNothingInItsSibling) {
  absl::StatusOr<std::string> mode = agent_.Start({RequestedMode(), config_});
  ASSERT_TRUE(mode.ok()) << mode.status();
  EXPECT_EQ(*mode, ExpectedMode()) << agent_.LogTail();

  TestCgroup busy("busy");
  TestCgroup sibling("sibling");
  TestCgroup idle("idle");
  const Workload w{/*opens_per_file=*/7, /*gpu_ioctls=*/5, /*write_calls=*/3, /*bytes_per_write=*/1000};
  const Workload small{/*opens_per_file=*/2, /*gpu_ioctls=*/0, /*write_calls=*/1, /*bytes_per_write=*/10};
  Run(busy, w);
  Run(sibling, small);

  ExpectCounts(busy.id(), w, 1);
  ExpectCounts(sibling.id(), small, 1);
  absl::StatusOr<nlohmann::json> idle_row = agent_.AuditCgroup(idle.id());
  ASSERT_TRUE(idle_row.ok()) << idle_row.status();
  EXPECT_TRUE(idle_row->is_null()) << "a cgroup that did nothing has counters: " << idle_row->dump();

  absl::StatusOr<nlohmann::json> row = agent_.AuditCgroup(busy.id());
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->at("cgroup_path"), busy.relative());
  EXPECT_TRUE(row->at("container_id").is_null());
  EXPECT_FALSE(row->at("gpu_first_ns").is_null());

  // The first GPU access raised exactly one ring-buffer event for `busy`
  // (gputierd logs each one), and none for the sibling that used no GPU.
  const std::string busy_event = absl::StrCat("first GPU access: cgroup ", busy.id(), " ");
  const std::string sibling_event = absl::StrCat("first GPU access: cgroup ", sibling.id(), " ");
  std::string log;
  for (int i = 0; i < 50 && log.find(busy_event) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    log = agent_.LogTail();
  }
  size_t first = log.find(busy_event);
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find(busy_event, first + 1), std::string::npos) << "event fired twice: " << log;
  EXPECT_EQ(log.find(sibling_event), std::string::npos) << log;
  EXPECT_NE(log.find(absl::StrCat("device 1:7 kind configured")), std::string::npos) << log;
}

TEST_F(ObserveCountingTest, CountersSurviveAnAgentRestart) {
  ASSERT_TRUE(agent_.Start({RequestedMode(), config_}).ok()) << agent_.LogTail();
  TestCgroup cg("restart");
  const Workload w{/*opens_per_file=*/3, /*gpu_ioctls=*/2, /*write_calls=*/2, /*bytes_per_write=*/512};
  Run(cg, w);
  ExpectCounts(cg.id(), w, 1);

  ASSERT_TRUE(agent_.Stop().ok());
  Run(cg, w);  // nobody is attached: not counted
  ExpectCounts(cg.id(), w, 1);

  absl::StatusOr<std::string> mode = agent_.Start({RequestedMode(), config_});
  ASSERT_TRUE(mode.ok()) << mode.status();
  EXPECT_NE(agent_.LogTail().find("reusing maps of a previous run"), std::string::npos) << agent_.LogTail();
  ExpectCounts(cg.id(), w, 1);
  Run(cg, w);
  ExpectCounts(cg.id(), w, 2);
}

// The programs read extensions from gt_ext_index, whose buckets hold
// GT_EXT_WAYS each; the rest of a crowded bucket is read from gt_ext_class.
TEST_F(ObserveCountingTest, ExtensionsOfACrowdedIndexBucketStillCountInTheirClass) {
  const std::vector<std::string> crowded = CollidingExtensions(GT_EXT_WAYS + 2);
  std::string yaml = absl::StrCat(config_, "extensions:\n  crowded: [");
  std::vector<std::string> files;
  for (size_t i = 0; i < crowded.size(); ++i) {
    absl::StrAppend(&yaml, i ? ", " : "", crowded[i]);
    files.push_back(Data(absl::StrCat("f", i, ".", absl::AsciiStrToUpper(crowded[i]))));
    WriteFile(files.back(), 1);
  }
  absl::StrAppend(&yaml, "]\n");
  ASSERT_TRUE(agent_.Start({RequestedMode(), yaml}).ok()) << agent_.LogTail();

  TestCgroup cg("crowded");
  constexpr int kOpens = 3;
  ASSERT_EQ(RunRawWorkload(cg, {files, kOpens, "", 0, "", 0, 0}), 0);
  absl::StatusOr<nlohmann::json> row = agent_.AuditCgroup(cg.id());
  ASSERT_TRUE(row.ok()) << row.status();
  ASSERT_FALSE(row->is_null());
  EXPECT_EQ(row->at("opens_total"), crowded.size() * kOpens) << row->dump(2);
  EXPECT_EQ(row->at("opens_by_class").at("crowded"), crowded.size() * kOpens) << row->dump(2);
  EXPECT_EQ(row->at("opens_by_class").at("other"), 0) << row->dump(2);
}

// In tracepoint mode the sys_exit program sees a 32-bit syscall with ia32
// numbers: getpid (20) is the native writev, lchown (16) the native ioctl.
// Counted as native, getpid with a file's fd left in rdi would add `pid`
// bytes written, and lchown with a GPU fd in rdi a GPU ioctl. Compat
// syscalls are skipped; LSM mode never looks at syscall numbers.
TEST_F(ObserveCountingTest, CompatSyscallsAreNotReadAsNativeOnes) {
  if (!KernelRunsIa32Syscalls()) GTEST_SKIP() << "this kernel runs no 32-bit syscalls (int 0x80 faults)";
  ASSERT_TRUE(agent_.Start({RequestedMode(), config_}).ok()) << agent_.LogTail();
  TestCgroup cg("compat");
  const std::string data = Data("compat.dat");
  int rc = cg.RunInside([&] {
    int file = open(data.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int gpu = open(gpu_path_.c_str(), O_RDWR | O_CLOEXEC);
    if (file < 0 || gpu < 0) return 1;
    for (int i = 0; i < 3; ++i) {
      if (Ia32Syscall(kIa32Getpid, file) <= 0) return 2;
      Ia32Syscall(kIa32Lchown, gpu);  // fails (no path); it is never an ioctl
    }
    close(gpu);
    close(file);
    return 0;
  });
  ASSERT_EQ(rc, 0) << "the 32-bit syscalls did not run inside " << cg.relative();
  absl::StatusOr<nlohmann::json> row = agent_.AuditCgroup(cg.id());
  ASSERT_TRUE(row.ok()) << row.status();
  ASSERT_FALSE(row->is_null()) << "the cgroup's native opens were not counted";
  EXPECT_EQ(row->at("opens_total"), 1u) << row->dump(2);  // compat.dat
  EXPECT_EQ(row->at("gpu_opens"), 1u) << row->dump(2);
  EXPECT_EQ(row->at("writes"), 0u) << "an ia32 getpid was read as writev: " << row->dump(2);
  EXPECT_EQ(row->at("bytes_written"), 0u) << row->dump(2);
  EXPECT_EQ(row->at("gpu_ioctls"), 0u) << "an ia32 lchown was read as ioctl: " << row->dump(2);
}

TEST_F(ObserveCountingTest, RemovedCgroupLosesItsEntry) {
  ASSERT_TRUE(agent_.Start({RequestedMode(), config_}).ok()) << agent_.LogTail();
  TestCgroup cg("removed");
  const uint64_t id = cg.id();
  Run(cg, Workload{1, 0, 0, 0});
  absl::StatusOr<nlohmann::json> before = agent_.AuditCgroup(id);
  ASSERT_TRUE(before.ok());
  ASSERT_FALSE(before->is_null());

  ASSERT_TRUE(cg.Remove()) << strerror(errno);
  // The kernel frees a cgroup asynchronously after rmdir; the cgroup_rmdir
  // hook runs at rmdir itself, so the entry should already be gone.
  nlohmann::json after = nullptr;
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<nlohmann::json> r = agent_.AuditCgroup(id);
    ASSERT_TRUE(r.ok());
    after = *r;
    if (after.is_null()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(after.is_null()) << "entry of removed cgroup " << id << " remains: " << after.dump();
}

TEST_F(ObserveCountingTest, OlderPinLayoutIsRefusedNotMisread) {
  ASSERT_TRUE(agent_.Start({RequestedMode(), config_}).ok()) << agent_.LogTail();
  absl::Status stopped = agent_.Stop();
  ASSERT_TRUE(stopped.ok()) << stopped;
  // Rewrite the layout record as an older agent would have left it.
  std::string cmd = absl::StrCat("bpftool map update pinned ", agent_.pin_dir(),
                                 "/gt_meta key 0 0 0 0 value hex 74 75 70 67 00 00 00 00 "
                                 "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 2>&1");
  ASSERT_EQ(system(cmd.c_str()), 0) << cmd;
  absl::StatusOr<std::string> mode = agent_.Start({RequestedMode(), config_});
  ASSERT_FALSE(mode.ok()) << "an agent reused pins of layout version 0";
  EXPECT_NE(agent_.LogTail().find("have map layout version 0"), std::string::npos) << agent_.LogTail();
  EXPECT_NE(agent_.LogTail().find("gputierctl unpin"), std::string::npos);
}

}  // namespace
}  // namespace gputier::testing
