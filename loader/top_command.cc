#include "loader/top_command.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "loader/control/control.h"
#include "loader/top/top_view.h"

namespace gputier {
namespace {

volatile sig_atomic_t g_top_stop = 0;

void OnStopSignal(int) { g_top_stop = 1; }

// The alternate screen, hidden cursor, and their undoing.
constexpr char kEnterScreen[] = "\x1b[?1049h\x1b[?25l";
constexpr char kLeaveScreen[] = "\x1b[?25h\x1b[?1049l";

int TerminalWidth() {
  struct winsize ws = {};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

// Sleeps until `until`, in short steps so a signal ends it at once.
void SleepUntil(absl::Time until) {
  while (!g_top_stop && absl::Now() < until) {
    absl::SleepFor(std::min(absl::Milliseconds(50), until - absl::Now()));
  }
}

}  // namespace

int RunTop(const TopOptions& options) {
  const bool screen = !options.plain && !options.once && isatty(STDOUT_FILENO);
  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
  if (screen) {
    fputs(kEnterScreen, stdout);
    fflush(stdout);
  }
  std::optional<nlohmann::json> previous;
  int rc = 0;
  while (!g_top_stop) {
    const absl::Time next = absl::Now() + options.interval;
    absl::StatusOr<nlohmann::json> status = SendControlRequest(options.socket_path, {{"cmd", "status"}});
    std::string frame;
    if (status.ok() && status->value("ok", false)) {
      frame = FormatTopView(BuildTopView(*status, previous ? &*previous : nullptr), screen ? TerminalWidth() : 0);
      previous = *std::move(status);
    } else {
      // The agent may be restarting: say so and keep asking (--once stops).
      frame = absl::StrCat("gputierctl top: ",
                           status.ok() ? status->value("error", std::string("the agent refused status"))
                                       : std::string(status.status().message()),
                           "\n");
      previous.reset();
      rc = 1;
    }
    if (screen) {
      // Home, each line cleared to its end, the rest of the screen cleared:
      // no flicker from a full clear on every refresh.
      fputs(absl::StrCat("\x1b[H", absl::StrReplaceAll(frame, {{"\n", "\x1b[K\n"}}),
                         "\x1b[J")
                .c_str(),
            stdout);
    } else {
      if (!options.once) fputs(absl::StrCat("--- ", absl::FormatTime("%H:%M:%S", absl::Now(), absl::UTCTimeZone()), " UTC\n").c_str(), stdout);
      fputs(frame.c_str(), rc == 0 ? stdout : stderr);
      if (!options.once) fputs("\n", stdout);
    }
    fflush(stdout);
    if (options.once) break;
    rc = 0;
    SleepUntil(next);
  }
  if (screen) {
    fputs(kLeaveScreen, stdout);
    fflush(stdout);
  }
  return rc;
}

}  // namespace gputier
