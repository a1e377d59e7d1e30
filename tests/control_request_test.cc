// The control protocol's request parser and access rule: every malformed
// request is one error naming the field and what it should be, never an
// exception (a thrown nlohmann type_error used to kill gputierd).
#include "loader/control/control_request.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace gputier {
namespace {

struct BadRequestCase {
  const char* description;
  std::string text;
  const char* error_names;  // what the error must mention
};

TEST(ControlRequest, MalformedRequestsAreOneErrorNamingTheField) {
  const BadRequestCase cases[] = {
      {"cmd is a number", R"({"cmd":5})", "\"cmd\" is a number"},
      {"cmd is null", R"({"cmd":null})", "\"cmd\" is null"},
      {"cmd is an object", R"({"cmd":{"a":1}})", "\"cmd\" is an object"},
      {"no cmd", R"({"target":"x"})", "no \"cmd\""},
      {"unknown cmd", R"({"cmd":"reboot"})", "\"reboot\", not a known command"},
      {"tier is a number", R"({"cmd":"tier","target":"abcd","tier":5})", "\"tier\" is a number"},
      {"tier unknown", R"({"cmd":"tier","target":"abcd","tier":"warp"})", "\"tier\" is \"warp\""},
      {"tier missing", R"({"cmd":"tier","target":"abcd"})", "no \"tier\""},
      {"target is an array", R"({"cmd":"explain","target":[]})", "\"target\" is an array"},
      {"target is a boolean", R"({"cmd":"tier","target":true,"tier":"fast"})", "\"target\" is a boolean"},
      {"target missing", R"({"cmd":"explain"})", "no \"target\""},
      {"target empty", R"({"cmd":"explain","target":""})", "\"target\" is empty"},
      {"target too long", absl::StrCat(R"({"cmd":"explain","target":")", std::string(5000, 'a'), R"("})"),
       "\"target\" is 5000 bytes"},
      {"target with a newline", R"({"cmd":"explain","target":"a\nb"})", "control character"},
      {"target with NUL", R"({"cmd":"explain","target":"a\u0000b"})", "control character"},
      {"verdict is a number", R"({"cmd":"label","target":"abcd","verdict":1})", "\"verdict\" is a number"},
      {"verdict unknown", R"({"cmd":"label","target":"abcd","verdict":"unknown"})", "\"verdict\" is \"unknown\""},
      {"unknown field", R"({"cmd":"status","target":"x"})", "\"target\" is not part of a \"status\" request"},
      {"not an object: array", R"([1,2])", "is an array"},
      {"not an object: string", R"("status")", "is a string"},
      {"not an object: number", "5", "is a number"},
      {"garbage", "\x01\x02garbage{", "not JSON"},
      {"truncated", R"({"cmd":"sta)", "not JSON"},
      {"empty", "", "not JSON"},
      {"invalid UTF-8 in cmd", "{\"cmd\":\"stat\xffus\"}", "invalid UTF-8"},
      {"invalid UTF-8 in target", "{\"cmd\":\"explain\",\"target\":\"x\xc3\x28\"}", "invalid UTF-8"},
      {"overlong UTF-8 in target", "{\"cmd\":\"explain\",\"target\":\"\xc0\xaf\"}", "invalid UTF-8"},
      {"oversized", absl::StrCat(R"({"cmd":"status","pad":")", std::string(kMaxControlRequestBytes, 'p'), R"("})"),
       "a request is at most"},
      {"deeply nested", absl::StrCat(std::string(10000, '['), std::string(10000, ']')), "is an array"},
  };
  for (const BadRequestCase& c : cases) {
    SCOPED_TRACE(c.description);
    absl::StatusOr<ControlRequest> r;
    ASSERT_NO_THROW(r = ParseControlRequest(c.text));
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
    EXPECT_TRUE(absl::StrContains(r.status().message(), c.error_names)) << r.status();
    EXPECT_FALSE(absl::StrContains(r.status().message(), "\n")) << "one sentence, one line";
  }
}

struct GoodRequestCase {
  const char* text;
  ControlCommand command;
  const char* target;
  const char* verdict;
  const char* tier;
};

TEST(ControlRequest, WellFormedRequestsParseToTheirFields) {
  const GoodRequestCase cases[] = {
      {R"({"cmd":"status"})", ControlCommand::kStatus, "", "", ""},
      {R"({"cmd":"train"})", ControlCommand::kTrain, "", "", ""},
      {R"({"cmd":"explain","target":"/kubepods.slice/x"})", ControlCommand::kExplain, "/kubepods.slice/x", "", ""},
      {R"({"cmd":"label","target":"1234","verdict":"gpu"})", ControlCommand::kLabel, "1234", "gpu", ""},
      {R"({"tier":"auto","cmd":"tier","target":"abcd"})", ControlCommand::kTier, "abcd", "", "auto"},
      {"{\"cmd\":\"explain\",\"target\":\"caf\xc3\xa9\"}", ControlCommand::kExplain, "caf\xc3\xa9", "", ""},
  };
  for (const GoodRequestCase& c : cases) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<ControlRequest> r = ParseControlRequest(c.text);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->command, c.command);
    EXPECT_EQ(r->target, c.target);
    EXPECT_EQ(r->verdict, c.verdict);
    EXPECT_EQ(r->tier, c.tier);
  }
}

TEST(ControlRequest, OnlyRootChangesStateAndTheReadGroupOnlyReads) {
  const ControlPeer root{0, 0, {}};
  const ControlPeer member{1000, 1000, {50}};
  const ControlPeer primary{1001, 50, {}};
  const ControlPeer stranger{1002, 1002, {7}};
  for (ControlCommand c : {ControlCommand::kStatus, ControlCommand::kExplain, ControlCommand::kTrain,
                           ControlCommand::kLabel, ControlCommand::kTier}) {
    SCOPED_TRACE(ControlCommandName(c));
    const bool writes = ControlCommandChangesState(c);
    EXPECT_TRUE(AuthorizeControlRequest(c, root, std::nullopt).ok());
    EXPECT_TRUE(AuthorizeControlRequest(c, root, 50).ok());
    EXPECT_EQ(AuthorizeControlRequest(c, member, 50).ok(), !writes);
    EXPECT_EQ(AuthorizeControlRequest(c, primary, 50).ok(), !writes);
    EXPECT_FALSE(AuthorizeControlRequest(c, member, std::nullopt).ok());
    EXPECT_FALSE(AuthorizeControlRequest(c, stranger, 50).ok());
    EXPECT_TRUE(absl::IsPermissionDenied(AuthorizeControlRequest(c, stranger, 50)));
  }
  EXPECT_TRUE(ControlCommandChangesState(ControlCommand::kTier));
  EXPECT_TRUE(ControlCommandChangesState(ControlCommand::kLabel));
  EXPECT_TRUE(ControlCommandChangesState(ControlCommand::kTrain));
}

// gputier-oci-hook's request: the container id as target, its process and
// its bundle; only root may send it.
TEST(ControlRequest, CreatingCarriesPidAndBundleAndIsForRootOnly) {
  absl::StatusOr<ControlRequest> r =
      ParseControlRequest(R"({"cmd":"creating","target":"abcd","pid":4242,"bundle":"/run/b/abcd"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->command, ControlCommand::kCreating);
  EXPECT_EQ(r->target, "abcd");
  EXPECT_EQ(r->pid, 4242);
  EXPECT_EQ(r->bundle, "/run/b/abcd");
  const struct {
    const char* text;
    const char* error_names;
  } bad[] = {
      {R"({"cmd":"creating","target":"abcd","bundle":"/b"})", "\"pid\" must be a whole number"},
      {R"({"cmd":"creating","target":"abcd","pid":"12","bundle":"/b"})", "\"pid\" must be a whole number"},
      {R"({"cmd":"creating","target":"abcd","pid":0,"bundle":"/b"})", "\"pid\" must be a whole number"},
      {R"({"cmd":"creating","target":"abcd","pid":4194305,"bundle":"/b"})", "\"pid\" must be a whole number"},
      {R"({"cmd":"creating","target":"abcd","pid":1.5,"bundle":"/b"})", "\"pid\" must be a whole number"},
      {R"({"cmd":"creating","target":"abcd","pid":12})", "no \"bundle\""},
      {R"({"cmd":"creating","target":"abcd","pid":12,"bundle":"rel"})", "absolute path"},
      {R"({"cmd":"creating","target":"abcd","pid":12,"bundle":"/b\n"})", "control character"},
      {R"({"cmd":"creating","pid":12,"bundle":"/b"})", "no \"target\""},
      {R"({"cmd":"tier","target":"abcd","tier":"fast","pid":12})", "\"pid\" is not part of a \"tier\" request"},
  };
  for (const auto& c : bad) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<ControlRequest> b;
    ASSERT_NO_THROW(b = ParseControlRequest(c.text));
    ASSERT_FALSE(b.ok());
    EXPECT_TRUE(absl::StrContains(b.status().message(), c.error_names)) << b.status();
  }
  EXPECT_TRUE(ControlCommandChangesState(ControlCommand::kCreating));
  EXPECT_FALSE(AuthorizeControlRequest(ControlCommand::kCreating, ControlPeer{1000, 1000, {50}}, 50).ok());
  EXPECT_TRUE(AuthorizeControlRequest(ControlCommand::kCreating, ControlPeer{0, 0, {}}, std::nullopt).ok());
}

}  // namespace
}  // namespace gputier
