#include "loader/base/log.h"

#include <bpf/libbpf.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "loader/base/utf8.h"

namespace gputier {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_mu;
std::atomic<int> g_quiet_libbpf{0};
std::atomic<int> g_format{static_cast<int>(LogFormat::kPlain)};

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

void SetLogFormat(LogFormat format) { g_format = static_cast<int>(format); }
LogFormat GetLogFormat() { return static_cast<LogFormat>(g_format.load()); }

bool JournalStreamNames(absl::string_view journal_stream, uint64_t dev, uint64_t ino) {
  const size_t colon = journal_stream.find(':');
  if (colon == absl::string_view::npos) return false;
  uint64_t want_dev = 0, want_ino = 0;
  return absl::SimpleAtoi(journal_stream.substr(0, colon), &want_dev) &&
         absl::SimpleAtoi(journal_stream.substr(colon + 1), &want_ino) && want_dev == dev && want_ino == ino;
}

LogFormat LogFormatFor(int fd, const char* journal_stream) {
  struct stat st;
  if (journal_stream == nullptr || fstat(fd, &st) != 0) return LogFormat::kPlain;
  return JournalStreamNames(journal_stream, st.st_dev, st.st_ino) ? LogFormat::kJournal : LogFormat::kPlain;
}

int JournalPriority(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return 7;
    case LogLevel::kInfo: return 6;
    case LogLevel::kWarning: return 4;
    case LogLevel::kError: return 3;
  }
  return 6;
}

std::string FormatLogLine(LogFormat format, LogLevel level, const struct timespec& when, absl::string_view text) {
  if (format == LogFormat::kJournal) return absl::StrCat("<", JournalPriority(level), ">", text, "\n");
  struct tm tm;
  gmtime_r(&when.tv_sec, &tm);
  return absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
                         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, when.tv_nsec / 1000000, LevelName(level),
                         text);
}

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load()); }

void LogLine(LogLevel level, absl::string_view message) {
  if (level < GetLogLevel()) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  // Names in messages come from tenants (cgroup, file and process names): a
  // newline or escape sequence in one must not forge or hide a log line.
  const std::string line = FormatLogLine(GetLogFormat(), level, ts, EscapeControlAndInvalid(message));
  std::lock_guard<std::mutex> lock(g_mu);
  fwrite(line.data(), 1, line.size(), stderr);
}

ScopedQuietLibbpf::ScopedQuietLibbpf() { ++g_quiet_libbpf; }
ScopedQuietLibbpf::~ScopedQuietLibbpf() { --g_quiet_libbpf; }

void RouteLibbpfLogs() { libbpf_set_print(LibbpfPrint); }

}  // namespace gputier
