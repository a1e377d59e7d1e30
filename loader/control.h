// The control socket between gputierctl and gputierd: a Unix stream socket
// (0600, root only) in the run directory. One request per connection: a JSON
// object on one line ({"cmd": "status", ...}); one JSON object back on one
// line ({"ok": true, ...} or {"ok": false, "error": "..."}).
#ifndef GPUTIER_LOADER_CONTROL_H_
#define GPUTIER_LOADER_CONTROL_H_

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "loader/maps.h"

namespace gputier {

inline constexpr char kControlSocketName[] = "gputierd.sock";

class ControlServer {
 public:
  using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;

  // Binds `path` (a stale socket file is replaced), mode 0600, non-blocking.
  static absl::StatusOr<ControlServer> Listen(const std::string& path);
  ControlServer(ControlServer&&) = default;
  ControlServer& operator=(ControlServer&&) = default;
  ~ControlServer();

  int fd() const { return fd_.get(); }

  // Serves every connection waiting now; returns without blocking when none.
  void ServePending(const Handler& handler);

 private:
  ControlServer(Fd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  Fd fd_;
  std::string path_;
};

// Sends one request to gputierd's socket and returns its answer. An agent
// that is not running is an error naming the socket and what to do.
absl::StatusOr<nlohmann::json> ControlRequest(const std::string& socket_path,
                                              const nlohmann::json& request,
                                              absl::Duration timeout = absl::Seconds(30));

}  // namespace gputier

#endif  // GPUTIER_LOADER_CONTROL_H_
