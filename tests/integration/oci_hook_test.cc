// gputier-oci-hook end to end: podman runs it at createRuntime (--hooks-dir
// with the hooks.d file the install ships), gputierd mounts the container's
// tiered directory before the container's program runs, so even its first
// write lands in the slow layer; and without a gputierd the hook exits 0 at
// once. Needs root, runc, busybox-static and podman; skips, saying why,
// without them.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "tests/integration/agent_harness.h"
#include "tests/integration/host_mounts.h"
#include "tests/integration/podman_container.h"
#include "tests/integration/runc_container.h"

namespace gputier {
namespace {

using ::gputier::testing::AgentProcess;
using ::gputier::testing::BinaryDir;
using ::gputier::testing::CommandResult;
using ::gputier::testing::FindFileUnder;
using ::gputier::testing::PathExists;
using ::gputier::testing::PodmanContainer;
using ::gputier::testing::PodmanStore;
using ::gputier::testing::RunCommand;
using ::gputier::testing::SlurpFile;
using ::gputier::testing::TempDir;
using ::gputier::testing::WaitFor;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

std::string HookPath() { return BinaryDir() + "/gputier-oci-hook"; }

// Runs the hook with `state` on stdin; returns its output and "rc=N".
absl::StatusOr<CommandResult> RunHook(const std::string& state, const std::vector<std::string>& args) {
  return RunCommand({"/bin/sh", "-c",
                     absl::StrCat("printf '%s' '", state, "' | ", HookPath(), " ", absl::StrJoin(args, " "),
                                  "; echo rc=$?")});
}

constexpr char kState[] =
    R"({"ociVersion":"1.0.2","id":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",)"
    R"("status":"creating","pid":1,"bundle":"/nonexistent"})";

// Without gputierd (no socket), with one that never answers (a socket
// nobody accepts on) and with junk on stdin, the hook exits 0; the first at
// once and silently, the second after its timeout with one line.
TEST(OciHook, ExitsZeroQuicklyWhateverGputierdDoes) {
  if (!PathExists(HookPath())) GTEST_SKIP() << HookPath() << " is not built";
  TempDir dir("gputier-hook");
  Clock::time_point t0 = Clock::now();
  absl::StatusOr<CommandResult> r = RunHook(kState, {"--socket", dir.path() + "/absent.sock"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->output, "rc=0\n");
  EXPECT_LT(Clock::now() - t0, milliseconds(500));

  const std::string mute = dir.path() + "/mute.sock";
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, mute.c_str(), mute.size() + 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  t0 = Clock::now();
  r = RunHook(kState, {"--socket", mute, "--timeout-ms", "300"});
  close(fd);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(absl::EndsWith(r->output, "rc=0\n")) << r->output;
  EXPECT_TRUE(absl::StrContains(r->output, "did not answer within 300 ms")) << r->output;
  EXPECT_LT(Clock::now() - t0, seconds(2));

  for (const char* junk : {"", "{", "[1]", R"({"id":1})"}) {
    r = RunHook(junk, {"--socket", mute, "--timeout-ms", "300"});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(absl::EndsWith(r->output, "rc=0\n")) << junk << ": " << r->output;
  }
}

// podman runs the hook from a hooks.d file (--hooks-dir). The container's
// first action is writing /data/first: that file is in the slow layer and
// not in the container's own rootfs upper layer, so /data was an overlay
// before its program ran.
TEST(OciHook, PodmanContainersFirstWriteLandsInTheSlowLayer) {
  if (std::string why = ::gputier::testing::PodmanTestsCannotRunBecause(); !why.empty()) GTEST_SKIP() << why;
  AgentProcess agent;
  const std::string slow = agent.tier_root("slow");
  const std::string yaml = absl::StrCat("tiered_paths: [/data]\npolicy: {tick: 200ms, window: 2s}\ntiers: {fast: ",
                                        agent.tier_root("fast"), ", slow: ", slow, ", partition_size: 64MiB}\n");
  // runc's state of podman's containers is in /run/runc.
  ASSERT_TRUE(agent.Start({::gputier::testing::RequestedMode(), yaml + "runtime_roots: {podman: [/run/runc]}\n"}).ok())
      << agent.LogTail();

  TempDir hooks("gputier-hooks");
  std::string hook_json = SlurpFile(std::string(GPUTIER_SOURCE_DIR) + "/deploy/oci-hooks/gputier.json.in");
  ASSERT_FALSE(hook_json.empty());
  hook_json = absl::StrReplaceAll(hook_json, {{"@GPUTIER_BINDIR@", BinaryDir()},
                                              {"/run/gputier/gputierd.sock", agent.work_dir() + "/run/gputierd.sock"}});
  std::ofstream(hooks.path() + "/gputier.json") << hook_json;
  PodmanStore::Options store_options;
  store_options.global_args = {"--hooks-dir", hooks.path()};
  absl::StatusOr<std::unique_ptr<PodmanStore>> store = PodmanStore::Create(store_options);
  ASSERT_TRUE(store.ok()) << store.status();
  {
    ::gputier::testing::RuntimeContainerOptions o;
    o.script = "echo first > /data/first; exec sleep 100000";
    absl::StatusOr<std::unique_ptr<PodmanContainer>> c = PodmanContainer::Start(**store, o);
    ASSERT_TRUE(c.ok()) << c.status() << "\n" << agent.LogTail();
    const std::string id = (*c)->id();
    absl::StatusOr<nlohmann::json> inspect = (*c)->Inspect();
    ASSERT_TRUE(inspect.ok()) << inspect.status();
    const std::string rootfs_upper = (*inspect)["GraphDriver"]["Data"].value("UpperDir", "");
    ASSERT_FALSE(rootfs_upper.empty()) << inspect->dump();
    ASSERT_TRUE(WaitFor(
        [&] {
          absl::StatusOr<CommandResult> seen = (*c)->Exec("test -s /data/first");
          return seen.ok() && seen->exit_code == 0;
        },
        seconds(10)));
    EXPECT_EQ(SlurpFile(FindFileUnder(slow, "/data/upper/first")), "first\n")
        << "the first write is not in the slow layer\n" << agent.LogTail();
    EXPECT_FALSE(PathExists(rootfs_upper + "/data/first"))
        << "the first write went to the container's own rootfs upper layer: /data was not an overlay yet";
    EXPECT_TRUE(absl::StrContains(SlurpFile(agent.log_path()), "at creation")) << agent.LogTail();
    // Mounted in the container's mount namespace only: nothing at the
    // rootfs' /data in the host's.
    const std::string merged = (*inspect)["GraphDriver"]["Data"].value("MergedDir", "");
    ASSERT_FALSE(merged.empty()) << inspect->dump();
    EXPECT_TRUE(::gputier::testing::HostMountsUnder(merged + "/data").empty())
        << absl::StrJoin(::gputier::testing::HostMountsUnder(merged + "/data"), ", ");
    nlohmann::json row;
    EXPECT_TRUE(WaitFor(
        [&] {
          row = agent.TieringRow(id);
          return row.is_object() && row["paths"].value("/data", "") == "slow" && row["op"] == "none";
        },
        seconds(10)))
        << row.dump() << "\n" << agent.LogTail();
    absl::StatusOr<CommandResult> cat = (*c)->Exec("cat /data/first");
    ASSERT_TRUE(cat.ok());
    EXPECT_EQ(cat->output, "first\n");
  }
  EXPECT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<nlohmann::json> t = agent.Tiering();
        return t.ok() && (*t)["containers"].empty();
      },
      seconds(30)))
      << agent.LogTail();
  EXPECT_TRUE(agent.Stop().ok());
}

}  // namespace
}  // namespace gputier
