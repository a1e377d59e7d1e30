// The agent's logger: one line per message on stderr, with level and time.
// Every message is escaped (EscapeControlAndInvalid, loader/base/utf8.h): control
// characters and bytes that are not UTF-8 show as \n, \xNN..., so a name a
// tenant chose can never start a line of its own.
//
// Under systemd, when stderr is the journal (JOURNAL_STREAM names the file
// open on fd 2, see systemd.exec(5)), each line is "<N>message" instead: N is
// the syslog priority journald files it under, and journald adds the time.
//
// libbpf's own messages are routed here (RouteLibbpfLogs), at DEBUG level
// unless they are warnings, so they only show with -v.
#ifndef GPUTIER_LOADER_BASE_LOG_H_
#define GPUTIER_LOADER_BASE_LOG_H_

#include <cstdint>
#include <ctime>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace gputier {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// How a line is written: "TIME LEVEL message", or journald's "<N>message".
enum class LogFormat { kPlain, kJournal };

void SetLogFormat(LogFormat format);
LogFormat GetLogFormat();

// kJournal when `journal_stream` (the value of JOURNAL_STREAM, "DEV:INO" in
// decimal; null when unset) names the file open on `fd`, else kPlain.
LogFormat LogFormatFor(int fd, const char* journal_stream);
// Pure: whether "DEV:INO" text names this device and inode.
bool JournalStreamNames(absl::string_view journal_stream, uint64_t dev, uint64_t ino);
// The syslog priority of a level: 7 debug, 6 info, 4 warning, 3 error.
int JournalPriority(LogLevel level);
// One line, newline included; `text` is already escaped.
std::string FormatLogLine(LogFormat format, LogLevel level, const struct timespec& when,
                          absl::string_view text);

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
void LogLine(LogLevel level, absl::string_view message);

// Sends libbpf's print callback through LogLine.
void RouteLibbpfLogs();

// While alive, libbpf's warnings are logged at DEBUG: for probes whose
// failure is an expected answer (auto mode trying LSM, doctor).
class ScopedQuietLibbpf {
 public:
  ScopedQuietLibbpf();
  ~ScopedQuietLibbpf();
  ScopedQuietLibbpf(const ScopedQuietLibbpf&) = delete;
  ScopedQuietLibbpf& operator=(const ScopedQuietLibbpf&) = delete;
};

template <typename... Args>
void LogDebug(const absl::FormatSpec<Args...>& format, const Args&... args) {
  if (GetLogLevel() <= LogLevel::kDebug) LogLine(LogLevel::kDebug, absl::StrFormat(format, args...));
}
template <typename... Args>
void LogInfo(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogLine(LogLevel::kInfo, absl::StrFormat(format, args...));
}
template <typename... Args>
void LogWarning(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogLine(LogLevel::kWarning, absl::StrFormat(format, args...));
}
template <typename... Args>
void LogError(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogLine(LogLevel::kError, absl::StrFormat(format, args...));
}

}  // namespace gputier

#endif  // GPUTIER_LOADER_BASE_LOG_H_
