// A node agent must start when its state cannot be used: a corrupt
// classification table is moved aside and replaced, a full state filesystem
// keeps the table in memory. Either way one loud line says so, `gputierctl
// status` shows it, and classification goes on.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "loader/classify/classification_table.h"
#include "tests/integration/agent_harness.h"

namespace gputier::testing {
namespace {

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) names.push_back(e->d_name);
    closedir(d);
  }
  return names;
}

class DegradedStartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs and mounts a tmpfs";
    state_ = agent_.work_dir() + "/state";
    ASSERT_EQ(mkdir(state_.c_str(), 0700), 0);
  }
  void TearDown() override {
    (void)agent_.Stop();
    if (mounted_) umount2(state_.c_str(), MNT_DETACH);
  }

  // `gputierctl status --json` as a whole.
  nlohmann::json StatusJson() {
    absl::StatusOr<std::string> out = agent_.Ctl("status --json");
    if (!out.ok()) return nullptr;
    return nlohmann::json::parse(*out, nullptr, /*allow_exceptions=*/false);
  }

  AgentProcess agent_;
  std::string state_;
  bool mounted_ = false;
};

TEST_F(DegradedStartTest, CorruptClassificationTableIsMovedAsideAndANewOneServes) {
  std::ofstream(state_ + "/classifications.db") << std::string(8192, 'x');
  absl::StatusOr<std::string> mode = agent_.Start({RequestedMode(), ""});
  ASSERT_TRUE(mode.ok()) << "a corrupt table stopped gputierd: " << mode.status();

  const std::string log = agent_.LogTail();
  EXPECT_TRUE(absl::StrContains(log, "degraded: classification table")) << log;
  EXPECT_TRUE(absl::StrContains(log, "it was moved to")) << log;
  int aside = 0;
  for (const std::string& name : Names(state_)) aside += absl::StartsWith(name, "classifications.db.corrupt-");
  EXPECT_EQ(aside, 1) << "the corrupt file was not kept aside";
  struct stat st;
  ASSERT_EQ(stat((state_ + "/classifications.db").c_str(), &st), 0) << "no new table";

  nlohmann::json status = StatusJson();
  ASSERT_TRUE(status.is_object()) << "status failed after a degraded start";
  ASSERT_TRUE(status["degraded"].is_string()) << status.dump(2);
  EXPECT_TRUE(absl::StrContains(status["degraded"].get<std::string>(), "moved to")) << status.dump(2);

  // What replaced it is a table of this gputier's schema.
  ASSERT_TRUE(agent_.Stop().ok());
  absl::StatusOr<ClassificationTable> table = ClassificationTable::Open(state_ + "/classifications.db");
  EXPECT_TRUE(table.ok()) << table.status();
}

TEST_F(DegradedStartTest, FullStateFilesystemKeepsTheTableInMemoryAndTheAgentRuns) {
  ASSERT_EQ(mount("tmpfs", state_.c_str(), "tmpfs", 0, "size=256k,mode=0700"), 0) << strerror(errno);
  mounted_ = true;
  {
    // Fill it: the table cannot grow by one page.
    int fd = open((state_ + "/filler").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    std::string block(4096, 'f');
    while (write(fd, block.data(), block.size()) > 0) {
    }
    close(fd);
  }
  absl::StatusOr<std::string> mode = agent_.Start({RequestedMode(), ""});
  ASSERT_TRUE(mode.ok()) << "a full state filesystem stopped gputierd: " << mode.status();
  const std::string log = agent_.LogTail();
  EXPECT_TRUE(absl::StrContains(log, "degraded: ")) << log;
  EXPECT_TRUE(absl::StrContains(log, "in memory only")) << log;

  nlohmann::json status = StatusJson();
  ASSERT_TRUE(status.is_object()) << "status failed after a degraded start";
  ASSERT_TRUE(status["degraded"].is_string()) << status.dump(2);
  EXPECT_TRUE(absl::StrContains(status["degraded"].get<std::string>(), "in memory only")) << status.dump(2);
  EXPECT_EQ(status["classifier"], "rule") << status.dump(2);
}

// A tenant that makes more cgroups than gt_cg_stats holds (max_cgroups at
// its floor, 64, and 80 cgroups opening files): the programs count the new
// cgroups they could not add in gt_drops, and gputierd says so: a WARN line
// naming the fix and `drops.cgroup_map_full` in status. Before, the drops
// were counted and never read.
TEST_F(DegradedStartTest, ACgroupFloodThatFillsTheCounterMapIsWarnedAbout) {
  absl::StatusOr<std::string> mode = agent_.Start({RequestedMode(), "max_cgroups: 64\n"});
  ASSERT_TRUE(mode.ok()) << mode.status();
  std::vector<std::unique_ptr<TestCgroup>> flood;
  for (int i = 0; i < 80; ++i) {
    flood.push_back(std::make_unique<TestCgroup>(absl::StrCat("flood-", i)));
    ASSERT_EQ(flood.back()->RunInside([] {
      for (int k = 0; k < 3; ++k) {
        const int fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) close(fd);
      }
      return 0;
    }), 0);
  }
  nlohmann::json status;
  const bool warned = WaitFor(
      [&] {
        status = StatusJson();
        return absl::StrContains(agent_.LogTail(), "gt_cg_stats is full") && status.is_object() &&
               status["drops"].is_object() && status["drops"].value("cgroup_map_full", 0) > 0;
      },
      std::chrono::seconds(10));
  EXPECT_TRUE(warned) << status.dump(2) << "\n" << agent_.LogTail();
  EXPECT_TRUE(absl::StrContains(agent_.LogTail(), "raise max_cgroups in the config")) << agent_.LogTail();
}

}  // namespace
}  // namespace gputier::testing
