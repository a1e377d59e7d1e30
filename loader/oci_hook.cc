// gputier-oci-hook: an OCI runtime hook for the createRuntime stage
// (deploy/oci-hooks/gputier.json; podman and CRI-O read hooks.d).
//
// The runtime writes the container's state (id, pid, bundle) on stdin. The
// hook passes it to gputierd's control socket as a "creating" request and
// waits, a bounded time, for gputierd to mount the container's tiered
// directories before the container's program runs (docs/RUNTIMES.md, "The
// OCI hook"). Whatever happens (gputierd not running, slow, refusing, the
// state unreadable) it exits 0, so a node always keeps starting containers;
// only a failure that is not "gputierd is not running" is said, in one
// line on stderr.
//
//   gputier-oci-hook [--socket PATH] [--timeout-ms N]
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "loader/control/control.h"

namespace {

constexpr size_t kMaxStateBytes = 64 * 1024;
constexpr size_t kMaxAnswerBytes = 64 * 1024;
constexpr int kDefaultTimeoutMs = 5000;

using Clock = std::chrono::steady_clock;

int MsLeft(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// Reads `fd` to its end, at most `max` bytes, until `deadline`; false when
// it is longer, fails or is late.
bool ReadAll(int fd, size_t max, Clock::time_point deadline, std::string* out, bool stop_at_newline) {
  char buf[4096];
  while (true) {
    pollfd p = {fd, POLLIN, 0};
    const int ready = poll(&p, 1, MsLeft(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > max) return false;
    if (stop_at_newline && out->find('\n') != std::string::npos) return true;
  }
}

bool WriteAll(int fd, const std::string& text, Clock::time_point deadline) {
  size_t done = 0;
  while (done < text.size()) {
    pollfd p = {fd, POLLOUT, 0};
    const int ready = poll(&p, 1, MsLeft(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    const ssize_t n = send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

void Say(const std::string& what) { fprintf(stderr, "gputier-oci-hook: %s (the container starts anyway)\n", what.c_str()); }

int Run(int argc, char** argv) {
  std::string socket_path = std::string("/run/gputier/") + gputier::kControlSocketName;
  int timeout_ms = kDefaultTimeoutMs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--socket" && i + 1 < argc) {
      socket_path = argv[++i];
    } else if (arg == "--timeout-ms" && i + 1 < argc) {
      timeout_ms = std::clamp(atoi(argv[++i]), 100, 30000);
    } else {
      Say("unknown argument '" + arg + "'; the arguments are [--socket PATH] [--timeout-ms N]");
      return 0;
    }
  }
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);

  std::string state_text;
  if (!ReadAll(STDIN_FILENO, kMaxStateBytes, deadline, &state_text, false)) {
    Say("the OCI state on stdin is unreadable, late or over 64 KiB");
    return 0;
  }
  const nlohmann::json state = nlohmann::json::parse(state_text, nullptr, /*allow_exceptions=*/false);
  if (!state.is_object() || !state.contains("id") || !state["id"].is_string() || !state.contains("pid") ||
      !state["pid"].is_number_integer() || !state.contains("bundle") || !state["bundle"].is_string()) {
    Say("the OCI state on stdin has no string id and bundle and whole-number pid");
    return 0;
  }
  if (state.value("status", "") != "creating") return 0;  // another stage: nothing to tell

  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (fd < 0 || socket_path.size() >= sizeof(addr.sun_path)) {
    Say("cannot make a socket for " + socket_path);
    return 0;
  }
  memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 && errno != EINPROGRESS) {
    const int e = errno;
    close(fd);
    // gputierd not running: the normal case on a node without it.
    if (e == ENOENT || e == ECONNREFUSED) return 0;
    Say("cannot reach gputierd at " + socket_path + ": " + strerror(e));
    return 0;
  }
  const nlohmann::json request = {{"cmd", "creating"},
                                  {"target", state["id"]},
                                  {"pid", state["pid"]},
                                  {"bundle", state["bundle"]}};
  std::string answer_text;
  const bool sent = WriteAll(fd, request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                             deadline);
  const bool answered = sent && ReadAll(fd, kMaxAnswerBytes, deadline, &answer_text, true);
  close(fd);
  if (!answered) {
    Say("gputierd at " + socket_path + " did not answer within " + std::to_string(timeout_ms) + " ms");
    return 0;
  }
  const nlohmann::json answer = nlohmann::json::parse(answer_text, nullptr, /*allow_exceptions=*/false);
  if (!answer.is_object() || !answer.value("ok", false)) {
    const std::string why = answer.is_object() && answer.contains("error") && answer["error"].is_string()
                                ? answer["error"].get<std::string>()
                                : std::string("an unreadable answer");
    Say("gputierd did not adopt container " + state["id"].get<std::string>() + ": " + why);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  Run(argc, argv);
  return 0;
}
