// Confirmation of a container with its runtime, and the bounded read of a
// bundle's config.json, against real files and this process's real cgroup
// (runtime_confirm.cc). Each test makes its own runtime root under /tmp and
// removes it. Costs well under a second.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "loader/base/read_file.h"
#include "loader/config/config.h"
#include "loader/runtime/runtime_confirm.h"

namespace gputier {
namespace {

constexpr char kId[] = "c0ffee";

std::string OwnCgroup() {
  absl::StatusOr<std::string> text = ReadFile("/proc/self/cgroup");
  if (!text.ok()) return "";
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (absl::ConsumePrefix(&line, "0::")) return std::string(line);
  }
  return "";
}

class RuntimeConfirmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gputier-runtime-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/runc";
    bundle_ = dir_ + "/bundle";
    std::filesystem::create_directories(root_ + "/" + kId);
    std::filesystem::create_directories(bundle_);
    config_.runtime_roots["runc"] = {root_};
    cgroup_ = OwnCgroup();
    ASSERT_FALSE(cgroup_.empty());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void WriteState(const std::string& id, pid_t pid) {
    std::ofstream(absl::StrCat(root_, "/", kId, "/state.json"))
        << absl::StrCat(R"({"id":")", id, R"(","init_process_pid":)", pid, R"(,"config":{"labels":["bundle=)",
                        bundle_, R"("]}})");
  }

  std::string dir_, root_, bundle_, cgroup_;
  TierConfig config_;
};

TEST_F(RuntimeConfirmTest, AContainerItsRuntimeRunsInThisCgroupIsConfirmed) {
  WriteState(kId, getpid());
  absl::StatusOr<ConfirmedContainer> c = ConfirmWithRuntime(config_, "runc", kId, cgroup_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->runtime, "runc");
  EXPECT_EQ(c->state.bundle, bundle_);
  EXPECT_EQ(c->state.init_pid, getpid());
}

TEST_F(RuntimeConfirmTest, AnIdNoRuntimeKnowsIsNotFoundNamingTheRootsAndTheKey) {
  absl::StatusOr<ConfirmedContainer> c = ConfirmWithRuntime(config_, "runc", "unknown", cgroup_);
  ASSERT_TRUE(absl::IsNotFound(c.status())) << c.status();
  EXPECT_TRUE(absl::StrContains(c.status().message(), root_)) << c.status();
  EXPECT_TRUE(absl::StrContains(c.status().message(), "runtime_roots.runc")) << c.status();
}

TEST_F(RuntimeConfirmTest, AContainerWhoseInitRunsInAnotherCgroupIsRefused) {
  WriteState(kId, getpid());
  absl::StatusOr<ConfirmedContainer> c = ConfirmWithRuntime(config_, "runc", kId, "/elsewhere/" + std::string(kId));
  ASSERT_TRUE(absl::IsFailedPrecondition(c.status())) << c.status();
  EXPECT_TRUE(absl::StrContains(c.status().message(), "nothing is mounted")) << c.status();
}

TEST_F(RuntimeConfirmTest, StateNamingAnotherIdIsRefused) {
  WriteState("someone-else", getpid());
  EXPECT_TRUE(absl::IsFailedPrecondition(ConfirmWithRuntime(config_, "runc", kId, cgroup_).status()));
}

TEST_F(RuntimeConfirmTest, AStateDirectoryReachedThroughASymlinkIsNotFollowed) {
  const std::string real = dir_ + "/real";
  std::filesystem::create_directories(real);
  std::filesystem::create_symlink(real, root_ + "/linked");
  std::ofstream(real + "/state.json") << absl::StrCat(R"({"id":"linked","init_process_pid":)", getpid(),
                                                      R"(,"config":{"labels":["bundle=/tmp"]}})");
  EXPECT_TRUE(absl::IsNotFound(ConfirmWithRuntime(config_, "runc", "linked", cgroup_).status()));
}

TEST_F(RuntimeConfirmTest, ConfigJsonIsReadOnlyAsABoundedRegularFileWithoutSymlinks) {
  std::ofstream(bundle_ + "/config.json") << R"({"annotations":{"a":"b"}})";
  absl::StatusOr<std::string> text = ReadBundleConfig(bundle_);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, R"({"annotations":{"a":"b"}})");

  std::filesystem::remove(bundle_ + "/config.json");
  std::filesystem::create_symlink("/etc/passwd", bundle_ + "/config.json");
  EXPECT_FALSE(ReadBundleConfig(bundle_).ok());

  std::filesystem::remove(bundle_ + "/config.json");
  ASSERT_EQ(mkfifo((bundle_ + "/config.json").c_str(), 0600), 0);
  EXPECT_FALSE(ReadBundleConfig(bundle_).ok());  // a FIFO never blocks the read

  std::filesystem::remove(bundle_ + "/config.json");
  { std::ofstream big(bundle_ + "/config.json"); big << std::string(kMaxRuntimeFileBytes + 1, ' '); }
  absl::StatusOr<std::string> large = ReadBundleConfig(bundle_);
  EXPECT_FALSE(large.ok());
  EXPECT_TRUE(absl::StrContains(large.status().message(), "larger than")) << large.status();
}

}  // namespace
}  // namespace gputier
