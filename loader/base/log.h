// The agent's logger: one line per message on stderr, with level and time.
// Every message is escaped (EscapeControlAndInvalid, loader/base/utf8.h): control
// characters and bytes that are not UTF-8 show as \n, \xNN..., so a name a
// tenant chose can never start a line of its own.
//
// libbpf's own messages are routed here (RouteLibbpfLogs), at DEBUG level
// unless they are warnings, so they only show with -v.
#ifndef GPUTIER_LOADER_BASE_LOG_H_
#define GPUTIER_LOADER_BASE_LOG_H_

#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace gputier {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

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
