#include "loader/control/control.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "loader/base/json_text.h"
#include "loader/base/log.h"

namespace gputier {
namespace {

// A reply larger than this is not believed (a client-side sanity bound).
constexpr size_t kMaxReplyBytes = size_t{256} << 20;
// How much of a request a log line quotes.
constexpr size_t kLoggedRequestBytes = 256;

absl::StatusOr<sockaddr_un> Address(const std::string& path) {
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path ", path, " is too long; use a shorter --run-dir"));
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

nlohmann::json ErrorReply(absl::string_view message) {
  return {{"ok", false}, {"error", std::string(message)}};
}

ControlPeer PeerOf(int fd) {
  ControlPeer peer;
  ucred cred = {};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    peer.uid = cred.uid;
    peer.gid = cred.gid;
  }
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 2; ++attempt) {
    socklen_t glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) == 0) {
      groups.resize(glen / sizeof(gid_t));
      peer.groups.assign(groups.begin(), groups.end());
      break;
    }
    if (errno != ERANGE) break;
    groups.resize(glen / sizeof(gid_t) + 1);
  }
  return peer;
}

}  // namespace

absl::Status CheckRunDir(const std::string& dir, std::optional<uint32_t> read_group) {
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("checking run directory ", dir));
  const std::string fix = absl::StrCat("; gputierd replaces its control socket there, so it must be a directory "
                                       "owned by root and writable by nobody else (`chown root ",
                                       dir, " && chmod go-w ", dir, "`), or pass another --run-dir");
  if (S_ISLNK(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("run directory ", dir, " is a symlink", fix));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("run directory ", dir, " is not a directory", fix));
  }
  if (st.st_uid != 0) {
    return absl::FailedPreconditionError(absl::StrCat("run directory ", dir, " is owned by uid ", st.st_uid, fix));
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat("run directory %s has mode %04o (writable by %s)%s", dir,
                                                         st.st_mode & 07777,
                                                         (st.st_mode & S_IWOTH) ? "others" : "its group", fix));
  }
  if (read_group.has_value()) {
    const bool searchable = (st.st_mode & S_IXOTH) != 0 || ((st.st_mode & S_IXGRP) != 0 && st.st_gid == *read_group);
    if (!searchable) {
      if (chown(dir.c_str(), 0, *read_group) != 0 || chmod(dir.c_str(), 0710) != 0) {
        return absl::ErrnoToStatus(errno, absl::StrCat("letting control_read_group reach run directory ", dir,
                                                       " (chown root:", *read_group, ", mode 0710)"));
      }
      LogInfo("run directory %s: mode 0710, group %u (control_read_group)", dir, *read_group);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ControlServer> ControlServer::Listen(const std::string& path, const Options& options) {
  absl::StatusOr<sockaddr_un> addr = Address(path);
  if (!addr.ok()) return addr.status();
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "creating the control socket");
  Fd owned(fd);
  unlink(path.c_str());  // a stale socket of a previous run; the pin lock proves none is live
  mode_t old = umask(0177);
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&*addr), sizeof(*addr));
  umask(old);
  if (rc != 0) return absl::ErrnoToStatus(errno, absl::StrCat("binding control socket ", path));
  if (options.read_group.has_value()) {
    // The run directory is root's and writable by nobody else (CheckRunDir):
    // the path still names the socket just bound.
    if (chown(path.c_str(), 0, *options.read_group) != 0 || chmod(path.c_str(), 0660) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("giving control socket ", path, " to control_read_group"));
    }
  }
  if (listen(fd, 64) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("listening on ", path));
  return ControlServer(std::move(owned), path, options);
}

ControlServer::~ControlServer() {
  if (fd_.valid()) unlink(path_.c_str());
}

void ControlServer::AddPollFds(std::vector<pollfd>* fds) const {
  if (connections_.size() < options_.max_connections) fds->push_back({fd_.get(), POLLIN, 0});
  for (const Connection& c : connections_) {
    const bool sending = c.replying && c.sent < c.out.size();
    fds->push_back({c.fd.get(), static_cast<short>(sending ? POLLOUT : POLLIN), 0});
  }
}

void ControlServer::Accept() {
  while (connections_.size() < options_.max_connections) {
    int c = accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) return;  // EAGAIN: nothing waiting (or a transient error: next round)
    Connection conn;
    conn.fd = Fd(c);
    conn.peer = PeerOf(c);
    conn.deadline = absl::Now() + options_.read_timeout;
    connections_.push_back(std::move(conn));
  }
}

void ControlServer::Answer(Connection& c, absl::string_view line, const Handler& handler, absl::Time now) {
  c.replying = true;
  c.deadline = now + options_.write_timeout;
  try {
    nlohmann::json answer;
    absl::StatusOr<ControlRequest> request = ParseControlRequest(line);
    if (!request.ok()) {
      LogDebug("control: refused a request from uid %u: %s", c.peer.uid, request.status().message());
      answer = ErrorReply(request.status().message());
    } else if (absl::Status allowed = AuthorizeControlRequest(request->command, c.peer, options_.read_group);
               !allowed.ok()) {
      LogWarning("control: %s", allowed.message());
      answer = ErrorReply(allowed.message());
    } else {
      answer = handler(*request);
    }
    c.out = JsonText(answer) + "\n";
  } catch (const std::exception& e) {
    // A library threw (nlohmann, std::): this request fails, gputierd goes on.
    LogError("control: answering request \"%s\" from uid %u failed: %s; answered with an error",
             line.substr(0, kLoggedRequestBytes), c.peer.uid, e.what());
    c.out = JsonText(ErrorReply(absl::StrCat("gputierd could not answer this request (", e.what(),
                                             "); it logged the request")));
    c.out += "\n";
  }
}

bool ControlServer::Advance(Connection& c, const Handler& handler, absl::Time now) {
  if (!c.replying) {
    char buf[4096];
    while (true) {
      ssize_t n = recv(c.fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0) return false;  // reset by the client
      if (n == 0) {             // the client finished sending (a request without newline)
        if (c.in.empty()) return false;
        Answer(c, c.in, handler, now);
        break;
      }
      c.in.append(buf, static_cast<size_t>(n));
      if (size_t nl = c.in.find('\n'); nl != std::string::npos) {
        Answer(c, absl::string_view(c.in).substr(0, nl), handler, now);
        break;
      }
      if (c.in.size() > kMaxControlRequestBytes) {
        c.replying = true;
        c.drain = true;
        c.deadline = now + options_.write_timeout;
        c.out = JsonText(ErrorReply(absl::StrCat("the request is longer than ", kMaxControlRequestBytes,
                                                 " bytes; a request is one JSON object on one line"))) +
                "\n";
        break;
      }
    }
    if (!c.replying) {
      if (now < c.deadline) return true;
      LogDebug("control: uid %u sent no complete request within %s; dropped", c.peer.uid,
               absl::FormatDuration(options_.read_timeout));
      c.replying = true;
      c.deadline = now + options_.write_timeout;
      c.out = JsonText(ErrorReply(absl::StrCat("no complete request within ",
                                               absl::FormatDuration(options_.read_timeout)))) +
              "\n";
    }
  }
  while (c.sent < c.out.size()) {
    ssize_t n = send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (now < c.deadline) return true;
      LogDebug("control: uid %u did not read its %d-byte reply within %s; dropped", c.peer.uid, c.out.size(),
               absl::FormatDuration(options_.write_timeout));
      return false;
    }
    if (n <= 0) {
      LogDebug("control: client (uid %u) went away before its reply", c.peer.uid);
      return false;
    }
    c.sent += static_cast<size_t>(n);
    if (c.sent == c.out.size() && c.drain) shutdown(c.fd.get(), SHUT_WR);  // the reply is whole
  }
  if (c.drain) {
    char buf[4096];
    for (int reads = 0; reads < 64; ++reads) {  // at most 256 KiB a round: others wait for no one
      ssize_t n = recv(c.fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return now < c.deadline;
      if (n <= 0) return false;  // the client stopped sending (or went away)
    }
    return now < c.deadline;
  }
  return false;  // answered: closing the connection is the end of the reply
}

void ControlServer::Serve(const Handler& handler) {
  Accept();
  const absl::Time now = absl::Now();
  connections_.erase(std::remove_if(connections_.begin(), connections_.end(),
                                    [&](Connection& c) { return !Advance(c, handler, now); }),
                     connections_.end());
}

absl::StatusOr<nlohmann::json> SendControlRequest(const std::string& socket_path, const nlohmann::json& request,
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
    if (errno == EACCES) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "permission denied connecting to %s: gputierd answers root, and members of its control_read_group "
          "for status and explain",
          socket_path));
    }
    return absl::ErrnoToStatus(errno, absl::StrCat("connecting to ", socket_path));
  }
  const std::string line = JsonText(request) + "\n";
  for (size_t off = 0; off < line.size();) {
    ssize_t n = send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::ErrnoToStatus(errno, "sending the request to gputierd");
    off += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_WR);
  // The reply ends where gputierd closes the connection.
  const absl::Time deadline = absl::Now() + timeout;
  std::string reply;
  char buf[65536];
  while (true) {
    const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left_ms <= 0) {
      return absl::DeadlineExceededError(absl::StrCat("gputierd did not answer within ", absl::FormatDuration(timeout)));
    }
    pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(std::min<int64_t>(left_ms, 1 << 30)));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return absl::ErrnoToStatus(errno, "waiting for gputierd's answer");
    if (r == 0) continue;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, "reading gputierd's answer");
    if (n == 0) break;
    reply.append(buf, static_cast<size_t>(n));
    if (reply.size() > kMaxReplyBytes) {
      return absl::ResourceExhaustedError(absl::StrCat("gputierd's answer is over ", kMaxReplyBytes >> 20, " MiB"));
    }
  }
  if (size_t nl = reply.find('\n'); nl != std::string::npos) reply.resize(nl);
  nlohmann::json answer = nlohmann::json::parse(reply, nullptr, false);
  if (answer.is_discarded() || !answer.is_object()) {
    return absl::InternalError(absl::StrCat("gputierd answered something that is not JSON: ",
                                            reply.substr(0, 200), reply.size() > 200 ? "..." : ""));
  }
  const auto ok = answer.find("ok");
  if (ok == answer.end() || !ok->is_boolean() || !ok->get<bool>()) {
    const auto error = answer.find("error");
    return absl::FailedPreconditionError(error != answer.end() && error->is_string()
                                             ? error->get<std::string>()
                                             : std::string("gputierd refused the request"));
  }
  return answer;
}

}  // namespace gputier
