// gputierd under systemd: with JOURNAL_STREAM naming its stderr it writes
// journald's "<priority>message" lines; with it naming anything else, its
// plain "TIME LEVEL message" lines.
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/deploy/deploy_files.h"

namespace gputier::testing {
namespace {

// The first line gputierd writes to stderr for a bad --mode (an error, before
// anything needs root), with JOURNAL_STREAM set by `journal_stream_of`.
std::string FirstLogLine(const std::string& journal_stream_of) {
  const std::string log = absl::StrCat(GPUTIER_BINARY_DIR, "/deploy-journal-test.log");
  const std::string other = absl::StrCat(GPUTIER_BINARY_DIR, "/deploy-journal-test.other");
  RunCommand(absl::StrCat("touch ", log, " ", other));
  const CommandResult r = RunCommand(absl::StrCat(
      "JOURNAL_STREAM=$(stat -c %d:%i ", journal_stream_of == "stderr" ? log : other, ") ", GPUTIER_BIN_DIR,
      "/gputierd --mode=bogus 2>", log, "; cat ", log));
  RunCommand(absl::StrCat("rm -f ", log, " ", other));
  return r.output.substr(0, r.output.find('\n'));
}

TEST(GputierdUnderSystemd, LogsWithJournalPrioritiesOnlyWhenJournalStreamIsItsStderr) {
  const std::string journal = FirstLogLine("stderr");
  EXPECT_TRUE(absl::StartsWith(journal, "<3>")) << journal;
  EXPECT_TRUE(absl::StrContains(journal, "bogus")) << journal;
  const std::string plain = FirstLogLine("another file");
  EXPECT_TRUE(absl::StrContains(plain, " ERROR ")) << plain;
  EXPECT_FALSE(absl::StartsWith(plain, "<")) << plain;
}

}  // namespace
}  // namespace gputier::testing
