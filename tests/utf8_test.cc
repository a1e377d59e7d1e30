// Names gputier does not control (cgroup, file and process names) on their
// way to JSON and to the log: JSON text never throws on invalid UTF-8, and a
// log line never holds a control character or a byte that is not UTF-8.
#include "loader/base/utf8.h"

#include <string>

#include <nlohmann/json.hpp>

#include "gtest/gtest.h"
#include "loader/base/json_text.h"

namespace gputier {
namespace {

struct EscapeCase {
  const char* description;
  std::string in;
  std::string out;
};

TEST(Utf8, EscapingForLogsLeavesNoControlCharacterOrInvalidByte) {
  const EscapeCase cases[] = {
      {"plain", "/kubepods.slice/pod1/abc", "/kubepods.slice/pod1/abc"},
      {"newline forging a line", "x\n2026-01-01T00:00:00Z ERROR forged", "x\\n2026-01-01T00:00:00Z ERROR forged"},
      {"carriage return and tab", "a\rb\tc", "a\\rb\\tc"},
      {"escape sequence", "\x1b[2Jclear", "\\x1b[2Jclear"},
      {"DEL and NUL", std::string("a\x7f\0b", 4), "a\\x7f\\x00b"},
      {"backslash stays unambiguous", "a\\nb", "a\\\\nb"},
      {"invalid byte", "x\xff", "x\\xff"},
      {"truncated sequence", "caf\xc3", "caf\\xc3"},
      {"overlong slash", "\xc0\xaf", "\\xc0\\xaf"},
      {"surrogate", "\xed\xa0\x80", "\\xed\\xa0\\x80"},
      {"C1 control (CSI)", "\xc2\x9b" "31m", "\\xc2\\x9b" "31m"},
      {"valid UTF-8 passes", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
  };
  for (const EscapeCase& c : cases) {
    SCOPED_TRACE(c.description);
    const std::string escaped = EscapeControlAndInvalid(c.in);
    EXPECT_EQ(escaped, c.out);
    EXPECT_TRUE(IsValidUtf8(escaped));
    for (char ch : escaped) EXPECT_FALSE(static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f);
  }
}

TEST(Utf8, ValidityFollowsTheStandard) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("ascii"));
  EXPECT_TRUE(IsValidUtf8("\xf4\x8f\xbf\xbf"));    // U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));   // past U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\x80"));       // overlong
  EXPECT_FALSE(IsValidUtf8("\x80"));               // stray continuation
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));           // truncated
}

TEST(Utf8, HexRoundTripsAnyBytes) {
  const std::string bytes("\x00\xff/x\n", 5);
  std::string back;
  ASSERT_TRUE(BytesFromHex(HexBytes(bytes), &back));
  EXPECT_EQ(back, bytes);
  EXPECT_FALSE(BytesFromHex("abc", &back));
  EXPECT_FALSE(BytesFromHex("zz", &back));
}

TEST(JsonText, InvalidUtf8IsReplacedInsteadOfThrowing) {
  const nlohmann::json j = {{"cgroup_path", "/x\xff"}, {"last_error", "open /data/\xc3\x28: ENOENT"}};
  EXPECT_THROW((void)j.dump(), nlohmann::json::type_error);  // what used to kill gputierd
  std::string text;
  ASSERT_NO_THROW(text = JsonText(j));
  EXPECT_TRUE(IsValidUtf8(text));
  const nlohmann::json back = nlohmann::json::parse(text, nullptr, false);
  ASSERT_FALSE(back.is_discarded()) << text;
  EXPECT_EQ(back["cgroup_path"], "/x\xef\xbf\xbd");  // U+FFFD
  EXPECT_NE(JsonText(j, 2).find('\n'), std::string::npos);
}

}  // namespace
}  // namespace gputier
