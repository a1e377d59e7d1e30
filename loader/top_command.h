// gputierctl top: asks gputierd for its status every interval and shows the
// containers (loader/top/ draws the table). On a terminal it paints a full
// screen in the alternate buffer and restores the terminal on exit, Ctrl-C
// included; otherwise it prints one plain snapshot per interval.
#ifndef GPUTIER_LOADER_TOP_COMMAND_H_
#define GPUTIER_LOADER_TOP_COMMAND_H_

#include <string>

#include "absl/time/time.h"

namespace gputier {

struct TopOptions {
  std::string socket_path;  // gputierd's control socket
  absl::Duration interval = absl::Seconds(1);
  bool once = false;       // one snapshot, then exit
  bool plain = false;      // plain lines even on a terminal
};

// Returns the exit code: 0, or 1 when --once could not reach the agent.
int RunTop(const TopOptions& options);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TOP_COMMAND_H_
