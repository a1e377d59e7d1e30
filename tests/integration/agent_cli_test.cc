// The agent's failure paths on the real kernel: bad input is one clear error,
// a non-zero exit, and nothing loaded or pinned.
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "tests/integration/agent_harness.h"

namespace gputier::testing {
namespace {

struct Outcome {
  int exit_code;
  std::string output;
};

// Runs one of the built binaries ("gputierd", "gputierctl") with `args`.
Outcome RunBinary(const char* binary, const std::string& args) {
  std::string cmd = absl::StrCat(BinaryDir(), "/", binary, " ", args, " 2>&1");
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

Outcome RunAgent(const std::string& args) { return RunBinary("gputierd", args); }

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

class AgentCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    pin_dir_ = absl::StrFormat("/sys/fs/bpf/gputier-clitest-%d", getpid());
    char tmpl[] = "/tmp/gputier-clitest-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    (void)system(absl::StrCat(BinaryDir(), "/gputierctl unpin --pin-dir ", pin_dir_, " >/dev/null 2>&1").c_str());
    rmdir(pin_dir_.c_str());
    // Whatever a started agent left mounted below the test's directory (its
    // tier roots), innermost first; the loop devices go with their mounts.
    (void)system(absl::StrCat("grep -o ' ", dir_, "/[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l")
                     .c_str());
    (void)system(absl::StrCat("rm -rf --one-file-system ", dir_).c_str());
  }
  std::string Args(const std::string& extra) {
    return absl::StrCat("--pin-dir=", pin_dir_, " --run-dir=", dir_, "/run --ready-file=", dir_,
                        "/ready --state-dir=", dir_, "/state --quiet --metrics-address=off ", extra);
  }
  std::string pin_dir_;
  std::string dir_;
};

struct BadConfigCase {
  const char* description;
  const char* yaml;
  const char* error_names;  // the key the error must name
};

TEST_F(AgentCliTest, BadConfigIsOneClearErrorAndLoadsNothing) {
  const BadConfigCase cases[] = {
      {"two extensions", "extensions:\n  tensor: [pt, tar.gz]\n", "extensions.tensor[1]"},
      {"unknown key", "extension:\n  image: [png]\n", "extension"},
      {"empty class", "extensions:\n  image: []\n", "extensions.image"},
      {"minor without major", "gpu_devices:\n  - minor: 3\n", "gpu_devices[0]"},
      {"wrong type", "max_cgroups: lots\n", "max_cgroups"},
  };
  for (const BadConfigCase& c : cases) {
    SCOPED_TRACE(c.description);
    std::string path = dir_ + "/config.yaml";
    std::ofstream(path) << c.yaml;
    Outcome o = RunAgent(Args(absl::StrCat("--config=", path)));
    EXPECT_EQ(o.exit_code, 2) << o.output;
    EXPECT_NE(o.output.find(c.error_names), std::string::npos) << o.output;
    EXPECT_NE(o.output.find(path), std::string::npos) << "error does not name the file: " << o.output;
    EXPECT_FALSE(Exists(dir_ + "/ready"));
    EXPECT_FALSE(Exists(pin_dir_)) << "a bad config still created pins";
  }
}

TEST_F(AgentCliTest, ForcedLsmModeFailsClearlyWhereTheKernelRefusesIt) {
  if (ExpectedMode() == "lsm") {
    // This kernel runs BPF LSM (a VM cell booted with bpf); LSM mode itself is
    // proven there by the counting tests, which expect the agent to pick it.
    GTEST_SKIP() << "kernel accepts LSM mode; covered by ObserveCountingTest";
  }
  Outcome o = RunAgent(Args("--mode=lsm"));
  EXPECT_EQ(o.exit_code, 1) << o.output;
  EXPECT_NE(o.output.find("--mode=lsm cannot run on this kernel"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("--mode=tracepoint"), std::string::npos) << "no fix named: " << o.output;
  EXPECT_FALSE(Exists(pin_dir_)) << "a refused start left its pin directory behind";
}

TEST_F(AgentCliTest, UnknownModeIsOneClearError) {
  Outcome o = RunAgent(Args("--mode=fast"));
  EXPECT_EQ(o.exit_code, 2) << o.output;
  EXPECT_NE(o.output.find("--mode=fast is not a mode; use auto, lsm or tracepoint"), std::string::npos)
      << o.output;
}

TEST_F(AgentCliTest, ConfiguredTierRootUnderAMissingDirectoryIsRefusedNotCreated) {
  const std::string missing = absl::StrCat("/gputier-clitest-missing-", getpid());
  const std::string path = dir_ + "/config.yaml";
  std::ofstream(path) << "tiers: {fast: " << missing << "/x, slow: " << dir_ << "/slow}\n";
  Outcome o = RunAgent(Args(absl::StrCat("--mode=tracepoint --config=", path)));
  EXPECT_EQ(o.exit_code, 1) << o.output;
  EXPECT_NE(o.output.find(absl::StrCat("tiers.fast ", missing, "/x: its parent ", missing, " does not exist")),
            std::string::npos)
      << o.output;
  EXPECT_NE(o.output.find("mount the tier's device"), std::string::npos) << "no fix named: " << o.output;
  EXPECT_FALSE(Exists(missing)) << "gputierd created the missing mount point";
  rmdir((missing + "/x").c_str());
  rmdir(missing.c_str());
}

TEST_F(AgentCliTest, StartSaysWhatEachTierIsOnAndWarnsWhenBothShareAFilesystem) {
  // Both tiers in one directory of /tmp's filesystem: the warning an operator
  // must see, and a description of the device with its transport.
  const std::string path = dir_ + "/config.yaml";
  std::ofstream(path) << "tiers: {fast: " << dir_ << "/fast, slow: " << dir_ << "/slow}\ntiered_paths: [/data]\n";
  const std::string log = dir_ + "/agent.log";
  std::string cmd = absl::StrCat(BinaryDir(), "/gputierd ", Args(absl::StrCat("--mode=tracepoint --config=", path)),
                                 " >", log, " 2>&1 & pid=$!; for i in $(seq 100); do [ -e ", dir_,
                                 "/ready ] && break; sleep 0.1; done; kill -TERM $pid; wait $pid");
  ASSERT_EQ(system(cmd.c_str()), 0);
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  const std::string out = text.str();
  EXPECT_NE(out.find(absl::StrCat("tier fast: ", dir_, "/fast is ")), std::string::npos) << out;
  EXPECT_NE(out.find("start probe: 4 MiB written at"), std::string::npos) << out;
  EXPECT_NE(out.find("are on the same filesystem"), std::string::npos) << out;
  struct stat st;
  ASSERT_EQ(stat(dir_.c_str(), &st), 0);
  if (major(st.st_dev) != 0) {  // a block device backs /tmp: its transport is named
    EXPECT_NE(out.find(" on /dev/"), std::string::npos) << out;
  }
}

Outcome RunCtl(const std::string& args) { return RunBinary("gputierctl", args); }

bool TracefsMounted() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(" - tracefs ") != std::string::npos) return true;
  }
  return false;
}

TEST_F(AgentCliTest, DoctorSaysWhereEachNodeFilesystemIsMountedAndHowToMountAMissingOne) {
  Outcome o = RunCtl("doctor");
  ASSERT_EQ(o.exit_code, 0) << o.output;
  for (const char* fs : {"mount:bpf", "mount:securityfs", "mount:cgroup2", "mount:tracefs"}) {
    EXPECT_NE(o.output.find(fs), std::string::npos) << fs << " not listed: " << o.output;
  }
  const std::string tracefs_line = o.output.substr(o.output.find("mount:tracefs"));
  if (TracefsMounted()) {
    EXPECT_NE(tracefs_line.find("mounted on "), std::string::npos) << o.output;
  } else {
    EXPECT_NE(tracefs_line.find("not mounted (fix: mount -t tracefs tracefs /sys/kernel/tracing)"),
              std::string::npos)
        << o.output;
  }
  EXPECT_NE(o.output.find("gputierd --mode=auto would run in: "), std::string::npos) << o.output;
}

}  // namespace
}  // namespace gputier::testing
