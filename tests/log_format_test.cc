// The logger's two line formats: plain for terminals and files, journald's
// "<priority>message" when JOURNAL_STREAM names the file stderr is on.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "loader/base/log.h"

namespace gputier {
namespace {

TEST(LogFormat, JournalLinesCarryTheSyslogPriorityAndNoTime) {
  const struct timespec when = {1764921600, 250000000};  // 2025-12-05T08:00:00.250Z
  struct Case {
    LogLevel level;
    const char* journal;
    const char* plain;
  } cases[] = {
      {LogLevel::kDebug, "<7>m\n", "2025-12-05T08:00:00.250Z DEBUG m\n"},
      {LogLevel::kInfo, "<6>m\n", "2025-12-05T08:00:00.250Z INFO  m\n"},
      {LogLevel::kWarning, "<4>m\n", "2025-12-05T08:00:00.250Z WARN  m\n"},
      {LogLevel::kError, "<3>m\n", "2025-12-05T08:00:00.250Z ERROR m\n"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(FormatLogLine(LogFormat::kJournal, c.level, when, "m"), c.journal);
    EXPECT_EQ(FormatLogLine(LogFormat::kPlain, c.level, when, "m"), c.plain);
  }
}

TEST(LogFormat, JournalStreamMustNameExactlyThisDeviceAndInode) {
  struct Case {
    const char* text;
    bool names;
  } cases[] = {
      {"8:12345", true}, {"8:12346", false}, {"9:12345", false}, {"8", false},
      {"", false},       {"8:", false},      {":12345", false},  {"x:12345", false},
      {"8:12345x", false},
  };
  for (const Case& c : cases) EXPECT_EQ(JournalStreamNames(c.text, 8, 12345), c.names) << c.text;
}

TEST(LogFormat, JournalFormatOnlyWhenTheVariableNamesTheFileOnTheFd) {
  char path[] = "/tmp/gputier-log-format-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  const std::string mine = absl::StrCat(st.st_dev, ":", st.st_ino);
  const std::string other = absl::StrCat(st.st_dev, ":", st.st_ino + 1);
  EXPECT_EQ(LogFormatFor(fd, mine.c_str()), LogFormat::kJournal);
  EXPECT_EQ(LogFormatFor(fd, other.c_str()), LogFormat::kPlain) << "stderr redirected elsewhere by the service";
  EXPECT_EQ(LogFormatFor(fd, nullptr), LogFormat::kPlain) << "not under systemd";
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  EXPECT_EQ(LogFormatFor(pipe_fds[1], mine.c_str()), LogFormat::kPlain);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  close(fd);
  unlink(path);
}

}  // namespace
}  // namespace gputier
