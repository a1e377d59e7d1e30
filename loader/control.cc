#include "loader/control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "loader/log.h"

namespace gputier {
namespace {

constexpr size_t kMaxRequest = 64 * 1024;

absl::StatusOr<sockaddr_un> Address(const std::string& path) {
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path ", path, " is too long; use a shorter --run-dir"));
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// Reads up to a newline or EOF, waiting at most `timeout_ms` between chunks.
absl::StatusOr<std::string> ReadLine(int fd, int timeout_ms) {
  std::string out;
  char buf[4096];
  while (out.size() < kMaxRequest) {
    pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, timeout_ms);
    if (r == 0) return absl::DeadlineExceededError("no answer in time");
    if (r < 0 && errno != EINTR) return absl::ErrnoToStatus(errno, "poll");
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, "read");
    if (n == 0) break;
    out.append(buf, n);
    if (out.find('\n') != std::string::npos) break;
  }
  size_t nl = out.find('\n');
  return nl == std::string::npos ? out : out.substr(0, nl);
}

bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += n;
  }
  return true;
}

}  // namespace

absl::StatusOr<ControlServer> ControlServer::Listen(const std::string& path) {
  absl::StatusOr<sockaddr_un> addr = Address(path);
  if (!addr.ok()) return addr.status();
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "creating the control socket");
  Fd owned(fd);
  unlink(path.c_str());  // a stale socket of a previous run; the pin lock proves none is live
  mode_t old = umask(0077);
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&*addr), sizeof(*addr));
  umask(old);
  if (rc != 0) return absl::ErrnoToStatus(errno, absl::StrCat("binding control socket ", path));
  if (listen(fd, 16) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("listening on ", path));
  return ControlServer(std::move(owned), path);
}

ControlServer::~ControlServer() {
  if (fd_.valid()) unlink(path_.c_str());
}

void ControlServer::ServePending(const Handler& handler) {
  while (true) {
    int c = accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;  // EAGAIN: nothing waiting
    Fd conn(c);
    absl::StatusOr<std::string> line = ReadLine(c, 1000);
    nlohmann::json answer;
    if (!line.ok()) {
      answer = {{"ok", false}, {"error", std::string(line.status().message())}};
    } else {
      nlohmann::json request = nlohmann::json::parse(*line, nullptr, false);
      if (request.is_discarded() || !request.is_object() || !request.contains("cmd")) {
        answer = {{"ok", false}, {"error", "a request is one JSON object with a \"cmd\" key"}};
      } else {
        answer = handler(request);
      }
    }
    if (!WriteAll(c, answer.dump() + "\n")) LogDebug("control client went away before the answer");
  }
}

absl::StatusOr<nlohmann::json> ControlRequest(const std::string& socket_path, const nlohmann::json& request,
                                              absl::Duration timeout) {
  absl::StatusOr<sockaddr_un> addr = Address(socket_path);
  if (!addr.ok()) return addr.status();
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "socket");
  Fd owned(fd);
  if (connect(fd, reinterpret_cast<sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    if (errno == ENOENT || errno == ECONNREFUSED) {
      return absl::UnavailableError(absl::StrFormat(
          "gputierd is not running (no agent listens on %s); start gputierd, or pass the --run-dir "
          "it uses",
          socket_path));
    }
    return absl::ErrnoToStatus(errno, absl::StrCat("connecting to ", socket_path));
  }
  if (!WriteAll(fd, request.dump() + "\n")) return absl::ErrnoToStatus(errno, "sending the request");
  shutdown(fd, SHUT_WR);
  absl::StatusOr<std::string> line = ReadLine(fd, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  if (!line.ok()) return line.status();
  nlohmann::json answer = nlohmann::json::parse(*line, nullptr, false);
  if (answer.is_discarded() || !answer.is_object()) {
    return absl::InternalError(absl::StrCat("gputierd answered something that is not JSON: ", *line));
  }
  if (!answer.value("ok", false)) {
    return absl::FailedPreconditionError(answer.value("error", std::string("gputierd refused the request")));
  }
  return answer;
}

}  // namespace gputier
