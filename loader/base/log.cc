#include "loader/base/log.h"

#include <bpf/libbpf.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "loader/base/utf8.h"

namespace gputier {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_mu;
std::atomic<int> g_quiet_libbpf{0};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO";
    case LogLevel::kWarning: return "WARN";
    case LogLevel::kError: return "ERROR";
  }
  return "?";
}

int LibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  LogLevel ours = level == LIBBPF_WARN && g_quiet_libbpf == 0 ? LogLevel::kWarning : LogLevel::kDebug;
  if (ours < GetLogLevel()) return 0;
  char buf[1024];
  vsnprintf(buf, sizeof(buf), format, args);
  absl::string_view text = absl::StripTrailingAsciiWhitespace(buf);
  LogLine(ours, absl::StartsWith(text, "libbpf: ") ? text : absl::StrCat("libbpf: ", text));
  return 0;
}

}  // namespace

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load()); }

void LogLine(LogLevel level, absl::string_view message) {
  if (level < GetLogLevel()) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  // Names in messages come from tenants (cgroup, file and process names): a
  // newline or escape sequence in one must not forge or hide a log line.
  const std::string text = EscapeControlAndInvalid(message);
  std::lock_guard<std::mutex> lock(g_mu);
  fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %.*s\n", tm.tm_year + 1900,
          tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
          LevelName(level), static_cast<int>(text.size()), text.data());
}

ScopedQuietLibbpf::ScopedQuietLibbpf() { ++g_quiet_libbpf; }
ScopedQuietLibbpf::~ScopedQuietLibbpf() { --g_quiet_libbpf; }

void RouteLibbpfLogs() { libbpf_set_print(LibbpfPrint); }

}  // namespace gputier
