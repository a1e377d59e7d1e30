// The enforcement part of the config: enforcement:, enforcement_if_unavailable:,
// enforcement_exempt_cgroups: — defaults, every key, one clear error per bad value.
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "loader/config/config.h"

namespace gputier {
namespace {

absl::Status ErrorOf(const std::string& yaml) { return ParseConfig(yaml, "t.yaml").status(); }

TEST(EnforcementConfig, DefaultIsAuditFailingWhereUnavailableNothingExempt) {
  const EnforcementConfig e = DefaultConfig().enforcement;
  EXPECT_EQ(e.mode, Enforcement::kAudit);
  EXPECT_FALSE(e.mode_from_file);
  EXPECT_FALSE(e.off_if_unavailable);
  EXPECT_TRUE(e.exempt_cgroups.empty());
}

TEST(EnforcementConfig, EveryKeyIsRead) {
  absl::StatusOr<Config> c = ParseConfig(
      "enforcement: enforce\nenforcement_if_unavailable: off\n"
      "enforcement_exempt_cgroups: [/system.slice/backup.service, /kubelet]\n",
      "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->enforcement.mode, Enforcement::kEnforce);
  EXPECT_TRUE(c->enforcement.mode_from_file);
  EXPECT_TRUE(c->enforcement.off_if_unavailable);
  EXPECT_EQ(c->enforcement.exempt_cgroups,
            (std::vector<std::string>{"/system.slice/backup.service", "/kubelet"}));
  for (const char* mode : {"off", "audit", "enforce"}) {
    absl::StatusOr<Config> m = ParseConfig(absl::StrCat("enforcement: ", mode, "\n"), "t.yaml");
    ASSERT_TRUE(m.ok()) << mode << ": " << m.status();
    EXPECT_EQ(EnforcementName(m->enforcement.mode), mode);
  }
}

TEST(EnforcementConfig, UnknownModeIsRefusedNamingTheChoices) {
  for (const char* bad : {"deny", "true", "'enforce'", "[enforce]", "Enforce"}) {
    absl::Status s = ErrorOf(absl::StrCat("enforcement: ", bad, "\n"));
    EXPECT_TRUE(absl::StrContains(s.message(), "t.yaml:1: enforcement")) << bad << ": " << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "write off, audit")) << bad << ": " << s;
  }
}

TEST(EnforcementConfig, FallbackIsFailOrOff) {
  absl::Status s = ErrorOf("enforcement_if_unavailable: audit\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "enforcement_if_unavailable")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "write fail")) << s;
}

TEST(EnforcementConfig, ExemptCgroupsMustBeCgroupPathsAndNeverTheRoot) {
  for (const char* bad : {"[/]", "[relative]", "[/a/../b]", "[/a//b]", "[/a/]", "[{x: 1}]", "/a"}) {
    absl::Status s = ErrorOf(absl::StrCat("enforcement_exempt_cgroups: ", bad, "\n"));
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_TRUE(absl::StrContains(s.message(), "enforcement_exempt_cgroups")) << bad << ": " << s;
  }
}

}  // namespace
}  // namespace gputier
