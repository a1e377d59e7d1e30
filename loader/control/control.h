// The control socket between gputierctl and gputierd: a Unix stream socket
// in the run directory (0600 root; 0660 root:<control_read_group> when the
// config names one). One request per connection: a JSON object on one line
// (loader/control/control_request.h). One JSON object back on one line ({"ok": true,
// ...} or {"ok": false, "error": "..."}), after which gputierd closes the
// connection: the client reads to EOF, so a reply of any size arrives whole.
//
// gputierd serves every connection from its main loop without ever
// blocking: each connection is a small state machine (reading its request,
// then writing its reply) advanced when poll says it can move. A request must
// arrive whole within 2 s of the connect and a reply leave within 5 s, else
// the connection is dropped; a client that sends a byte a second, or never
// reads, costs a file descriptor and nothing else. At most 32 connections are
// open at once; further clients wait in the listen backlog. A handler that
// throws (a library's std::exception) is logged with the request and
// answered with an error; gputierd goes on.
#ifndef GPUTIER_LOADER_CONTROL_CONTROL_H_
#define GPUTIER_LOADER_CONTROL_CONTROL_H_

#include <poll.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "loader/control/control_request.h"
#include "loader/base/fd.h"

namespace gputier {

inline constexpr char kControlSocketName[] = "gputierd.sock";

// The run directory must be a real directory (not a symlink), owned by root
// and writable by nobody else, since gputierd replaces the socket in it; the
// error names the path and the fix. With a read group, a directory that
// neither its group nor others may search is given mode 0710 and that group.
absl::Status CheckRunDir(const std::string& dir, std::optional<uint32_t> read_group);

class ControlServer {
 public:
  using Handler = std::function<nlohmann::json(const ControlRequest& request)>;

  struct Options {
    std::optional<uint32_t> read_group;  // control_read_group's gid
    absl::Duration read_timeout = absl::Seconds(2);
    absl::Duration write_timeout = absl::Seconds(5);
    size_t max_connections = 32;
  };

  // Binds `path` (a stale socket file is replaced), non-blocking; mode 0600,
  // or 0660 with group read_group.
  static absl::StatusOr<ControlServer> Listen(const std::string& path, const Options& options);
  ControlServer(ControlServer&&) = default;
  ControlServer& operator=(ControlServer&&) = default;
  ~ControlServer();

  // Appends what to poll: the listening socket (while below the connection
  // cap) and each connection, for reading or writing.
  void AddPollFds(std::vector<pollfd>* fds) const;

  // Accepts waiting clients, moves every connection on as far as it can
  // without blocking, answers each complete request with `handler`, and
  // drops connections past their deadline. Never blocks.
  void Serve(const Handler& handler);

  size_t connections() const { return connections_.size(); }

 private:
  struct Connection {
    Fd fd;
    ControlPeer peer;
    std::string in;
    std::string out;
    size_t sent = 0;
    bool replying = false;
    // The request was refused unread (too long): after the reply, what the
    // client still sends is read and dropped until it stops or the deadline,
    // so that closing with unread bytes cannot reset the reply away.
    bool drain = false;
    absl::Time deadline;
  };

  ControlServer(Fd fd, std::string path, Options options)
      : fd_(std::move(fd)), path_(std::move(path)), options_(options) {}
  void Accept();
  // false: the connection is finished (answered, gone or too slow).
  bool Advance(Connection& c, const Handler& handler, absl::Time now);
  void Answer(Connection& c, absl::string_view line, const Handler& handler, absl::Time now);

  Fd fd_;
  std::string path_;
  Options options_;
  std::vector<Connection> connections_;
};

// Sends one request to gputierd's socket and returns its answer (read to
// EOF, so of any size). An agent that is not running is an error naming the
// socket and what to do; so is a reply with "ok": false.
absl::StatusOr<nlohmann::json> SendControlRequest(const std::string& socket_path,
                                                  const nlohmann::json& request,
                                                  absl::Duration timeout = absl::Seconds(30));

}  // namespace gputier

#endif  // GPUTIER_LOADER_CONTROL_CONTROL_H_
