// Hostile input on the real kernel: nothing a tenant (a cgroup name), a
// control client (a malformed, slow, vanishing or unprivileged one) can send
// kills gputierd or stalls it.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/integration/agent_harness.h"

namespace gputier::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// A raw connection to the control socket: only syscalls, so a forked child
// that changed its uid can use it too. Returns the fd or -errno.
int Connect(const std::string& socket_path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  for (size_t off = 0; off < data.size();) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Sends `request` as is and reads the reply to EOF ("" on any failure).
std::string Exchange(const std::string& socket_path, const std::string& request) {
  int fd = Connect(socket_path);
  if (fd < 0) return "";
  std::string reply;
  if (SendAll(fd, request)) {
    shutdown(fd, SHUT_WR);
    char buf[65536];
    while (true) {
      pollfd p = {fd, POLLIN, 0};
      if (poll(&p, 1, 10000) <= 0) break;
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n <= 0) break;
      reply.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return reply;
}

bool Alive(pid_t pid) {
  int status = 0;
  return pid > 0 && waitpid(pid, &status, WNOHANG) == 0;
}

class ControlHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs and makes cgroups";
  }
  void StartAgent(const std::string& yaml = "policy:\n  tick: 200ms\n") {
    absl::StatusOr<std::string> mode = agent_.Start({RequestedMode(), yaml});
    ASSERT_TRUE(mode.ok()) << mode.status();
  }
  std::string Socket() const { return agent_.work_dir() + "/run/gputierd.sock"; }
  // Polls status until it has a row for `id`.
  bool WaitForRow(uint64_t id, milliseconds limit) {
    const auto deadline = steady_clock::now() + limit;
    do {
      absl::StatusOr<nlohmann::json> row = agent_.StatusOf(id);
      if (row.ok() && !row->is_null()) return true;
      std::this_thread::sleep_for(milliseconds(50));
    } while (steady_clock::now() < deadline);
    return false;
  }
  void OpenSomeFiles(const TestCgroup& cg) {
    RawWorkload w;
    w.files = {"/etc/hostname", "/etc/passwd"};
    w.opens_per_file = 10;
    ASSERT_EQ(RunRawWorkload(cg, w), 0);
  }

  AgentProcess agent_;
};

TEST_F(ControlHostileTest, StatusSurvivesCgroupNamedWithInvalidUtf8) {
  StartAgent();
  // A name a tenant could pick: not UTF-8, with a carriage return and a
  // terminal escape (the kernel refuses a newline in a cgroup name).
  TestCgroup cg("bad\xff\xfe\r\x1b[2KERROR forged");
  OpenSomeFiles(cg);
  ASSERT_TRUE(WaitForRow(cg.id(), milliseconds(5000))) << agent_.LogTail();
  absl::StatusOr<std::string> text = agent_.Ctl("status --json");
  ASSERT_TRUE(text.ok()) << text.status() << agent_.LogTail();
  absl::StatusOr<nlohmann::json> row = agent_.StatusOf(cg.id());
  ASSERT_TRUE(row.ok() && row->is_object()) << *text;
  EXPECT_TRUE(absl::StrContains(row->at("cgroup_path").get<std::string>(), "bad\xef\xbf\xbd"))
      << "invalid bytes are shown as U+FFFD";
  EXPECT_TRUE(agent_.Ctl("status").ok()) << agent_.LogTail();
  absl::StatusOr<nlohmann::json> audit = agent_.AuditCgroup(cg.id());
  ASSERT_TRUE(audit.ok()) << audit.status();
  EXPECT_TRUE(audit->is_object());
  EXPECT_TRUE(Alive(agent_.pid())) << agent_.LogTail();
  const std::string log = SlurpFile(agent_.log_path());
  EXPECT_EQ(log.find('\r'), std::string::npos) << "a raw control character reached the log";
  EXPECT_EQ(log.find('\x1b'), std::string::npos) << "a raw control character reached the log";
  EXPECT_EQ(log.find('\xff'), std::string::npos) << "a byte that is not UTF-8 reached the log";
}

TEST_F(ControlHostileTest, WrongTypedRequestsGetAnErrorAndTheAgentLives) {
  StartAgent();
  struct Case {
    std::string request;
    const char* error_names;
  };
  const Case cases[] = {
      {R"({"cmd":5})" "\n", "\"cmd\""},
      {R"({"cmd":"tier","tier":5,"target":"abcd"})" "\n", "\"tier\""},
      {R"({"cmd":"explain","target":[]})" "\n", "\"target\""},
      {R"({"cmd":"label","target":{},"verdict":"gpu"})" "\n", "\"target\""},
      {"[1,2,3]\n", "object"},
      {"{\"cmd\":\"explain\",\"target\":\"\xff\"}\n", "UTF-8"},
      {std::string("\x00\x01\x02\n", 4), "JSON"},
      {std::string(100 * 1024, '{'), "longer than"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.request.substr(0, 60));
    const std::string reply = Exchange(Socket(), c.request);
    nlohmann::json j = nlohmann::json::parse(reply, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "reply: " << reply << "\n" << agent_.LogTail();
    EXPECT_EQ(j.value("ok", true), false);
    EXPECT_TRUE(absl::StrContains(j.value("error", ""), c.error_names)) << reply;
    ASSERT_TRUE(Alive(agent_.pid())) << agent_.LogTail();
  }
  EXPECT_TRUE(agent_.Status().ok()) << agent_.LogTail();
}

class ControlLargeNodeTest : public ControlHostileTest {
 protected:
  // Enough cgroups with counters that `status` is well over 64 KiB.
  void MakeManyCgroups(int n) {
    for (int i = 0; i < n; ++i) {
      cgroups_.push_back(std::make_unique<TestCgroup>(absl::StrCat("many-", i)));
      RawWorkload w;
      w.files = {"/etc/hostname"};
      w.opens_per_file = 1;
      ASSERT_EQ(RunRawWorkload(*cgroups_.back(), w), 0);
    }
    ASSERT_TRUE(WaitForRow(cgroups_.back()->id(), milliseconds(5000))) << agent_.LogTail();
  }
  void TearDown() override {
    for (auto& cg : cgroups_) EXPECT_TRUE(cg->Remove());
  }
  std::vector<std::unique_ptr<TestCgroup>> cgroups_;
};

TEST_F(ControlLargeNodeTest, ReplyLargerThan64KiBArrivesWhole) {
  StartAgent();
  MakeManyCgroups(300);
  absl::StatusOr<std::string> text = agent_.Ctl("status --json");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_GT(text->size(), 64u * 1024);
  absl::StatusOr<nlohmann::json> all = agent_.Status();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_GE(all->size(), 300u);
  const std::string raw = Exchange(Socket(), "{\"cmd\":\"status\"}\n");
  EXPECT_GT(raw.size(), 64u * 1024);
  EXPECT_FALSE(nlohmann::json::parse(raw, nullptr, false).is_discarded());
}

TEST_F(ControlLargeNodeTest, ClientThatClosesWithoutReadingDoesNotKillTheAgent) {
  StartAgent();
  MakeManyCgroups(300);
  for (int i = 0; i < 5; ++i) {
    int fd = Connect(Socket());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(SendAll(fd, "{\"cmd\":\"status\"}\n"));
    close(fd);  // gone before the (large) reply: Ctrl-C during status
  }
  // And one that reads a little, then goes.
  int fd = Connect(Socket());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, "{\"cmd\":\"status\"}\n"));
  char buf[100];
  EXPECT_GT(read(fd, buf, sizeof(buf)), 0);
  close(fd);
  std::this_thread::sleep_for(milliseconds(500));
  ASSERT_TRUE(Alive(agent_.pid())) << agent_.LogTail();
  EXPECT_TRUE(agent_.Status().ok()) << agent_.LogTail();
}

TEST_F(ControlHostileTest, StalledClientDoesNotStallOthersOrTicks) {
  StartAgent();
  // One client sends a byte every 300 ms and never finishes; another
  // connects and never sends.
  std::atomic<bool> stop{false};
  int silent = Connect(Socket());
  ASSERT_GE(silent, 0);
  std::thread slow([&] {
    int fd = Connect(Socket());
    if (fd < 0) return;
    for (int i = 0; i < 20 && !stop; ++i) {
      if (!SendAll(fd, "{")) break;
      std::this_thread::sleep_for(milliseconds(300));
    }
    close(fd);
  });
  std::this_thread::sleep_for(milliseconds(200));
  const auto before = steady_clock::now();
  absl::StatusOr<nlohmann::json> status = agent_.Status();
  const auto took = steady_clock::now() - before;
  EXPECT_TRUE(status.ok()) << status.status();
  EXPECT_LT(took, milliseconds(1000)) << "status waited behind a stalled client";
  // Ticks go on: a new cgroup gets its row while the slow client dribbles.
  TestCgroup cg("during-stall");
  OpenSomeFiles(cg);
  EXPECT_TRUE(WaitForRow(cg.id(), milliseconds(2000))) << agent_.LogTail();
  stop = true;
  slow.join();
  close(silent);
  EXPECT_TRUE(Alive(agent_.pid())) << agent_.LogTail();
}

TEST_F(ControlHostileTest, NonRootClientCannotTierLabelOrTrain) {
  const group* g = getgrnam("nogroup");
  if (g == nullptr) GTEST_SKIP() << "no group nogroup on this node";
  const gid_t nogroup = g->gr_gid;
  StartAgent("policy:\n  tick: 200ms\ncontrol_read_group: nogroup\n");
  // The test's private work dir is 0700: let others through to the run dir
  // (which gputierd gave to the read group).
  ASSERT_EQ(chmod(agent_.work_dir().c_str(), 0711), 0);
  TestCgroup cg("target");
  OpenSomeFiles(cg);
  ASSERT_TRUE(WaitForRow(cg.id(), milliseconds(5000)));
  const std::string id = std::to_string(cg.id());
  struct Case {
    std::string request;
    bool allowed;
  };
  const Case cases[] = {
      {"{\"cmd\":\"status\"}\n", true},
      {absl::StrCat("{\"cmd\":\"explain\",\"target\":\"", id, "\"}\n"), true},
      {absl::StrCat("{\"cmd\":\"tier\",\"target\":\"", id, "\",\"tier\":\"fast\"}\n"), false},
      {absl::StrCat("{\"cmd\":\"label\",\"target\":\"", id, "\",\"verdict\":\"gpu\"}\n"), false},
      {"{\"cmd\":\"train\"}\n", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.request);
    for (bool in_group : {true, false}) {
      SCOPED_TRACE(in_group ? "nobody:nogroup" : "nobody with another group");
      int pipe_fds[2];
      ASSERT_EQ(pipe(pipe_fds), 0);
      pid_t child = fork();
      if (child == 0) {
        close(pipe_fds[0]);
        const gid_t gid = in_group ? nogroup : 12345;
        if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(65534) != 0) _exit(3);
        const std::string reply = Exchange(Socket(), c.request);
        (void)!write(pipe_fds[1], reply.data(), reply.size());
        _exit(0);
      }
      close(pipe_fds[1]);
      std::string reply;
      char buf[4096];
      ssize_t n;
      while ((n = read(pipe_fds[0], buf, sizeof(buf))) > 0) reply.append(buf, n);
      close(pipe_fds[0]);
      int status = 0;
      waitpid(child, &status, 0);
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      if (!in_group) {
        // The socket's mode already keeps it out (no reply), or gputierd refuses.
        nlohmann::json j = nlohmann::json::parse(reply, nullptr, false);
        EXPECT_TRUE(reply.empty() || (!j.is_discarded() && j.value("ok", true) == false)) << reply;
        continue;
      }
      nlohmann::json j = nlohmann::json::parse(reply, nullptr, false);
      ASSERT_FALSE(j.is_discarded()) << reply << agent_.LogTail();
      EXPECT_EQ(j.value("ok", false), c.allowed) << reply;
      if (!c.allowed) {
        EXPECT_TRUE(absl::StrContains(j.value("error", ""), "needs root")) << reply;
      }
    }
  }
  EXPECT_TRUE(Alive(agent_.pid())) << agent_.LogTail();
}

}  // namespace
}  // namespace gputier::testing
