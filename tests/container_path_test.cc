// Container path validation and tier layout planning: pure, no root.
#include <string>

#include "gtest/gtest.h"
#include "loader/tier/fs/tier_mount.h"
#include "loader/config/container_path.h"

namespace gputier {
namespace {

struct AcceptCase {
  const char* description;
  const char* input;
  const char* normalised;
};

TEST(ParseContainerPath, AcceptsAbsolutePathsAndNormalisesThem) {
  const AcceptCase cases[] = {
      {"plain", "/data", "/data"},
      {"nested", "/var/lib/models", "/var/lib/models"},
      {"trailing slash", "/data/", "/data"},
      {"repeated slashes", "//data///cache//", "/data/cache"},
      {"dot components", "/./data/./cache/.", "/data/cache"},
      {"dots inside names are names", "/a..b/...", "/a..b/..."},
  };
  for (const AcceptCase& c : cases) {
    absl::StatusOr<ContainerPath> parsed = ParseContainerPath(c.input);
    ASSERT_TRUE(parsed.ok()) << c.description << ": " << parsed.status();
    EXPECT_EQ(parsed->path, c.normalised) << c.description;
  }
}

struct RefuseCase {
  const char* description;
  std::string input;
  const char* message_part;
};

TEST(ParseContainerPath, RefusesRelativeDotDotRootAndNul) {
  const RefuseCase cases[] = {
      {"empty", "", "not absolute"},
      {"relative", "data", "not absolute"},
      {"dot dot at the start", "/../etc", "'..'"},
      {"dot dot in the middle", "/data/../../etc", "'..'"},
      {"dot dot at the end", "/data/..", "'..'"},
      {"root", "/", "container's root"},
      {"root with dots", "/././/", "container's root"},
      {"NUL byte", std::string("/da\0ta", 6), "NUL"},
      {"too long", "/" + std::string(5000, 'a'), "limit"},
  };
  for (const RefuseCase& c : cases) {
    absl::StatusOr<ContainerPath> parsed = ParseContainerPath(c.input);
    ASSERT_FALSE(parsed.ok()) << c.description;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << c.description;
    EXPECT_NE(parsed.status().message().find(c.message_part), absl::string_view::npos)
        << c.description << ": " << parsed.status();
  }
}

TEST(EscapeContainerPath, DifferentPathsNeverShareADirectoryName) {
  EXPECT_EQ(EscapeContainerPath({"/data"}), "data");
  EXPECT_EQ(EscapeContainerPath({"/a/b"}), "a%2Fb");
  // "/a%2Fb" is a different path from "/a/b", so it must escape differently.
  EXPECT_EQ(EscapeContainerPath({"/a%2Fb"}), "a%252Fb");
  EXPECT_NE(EscapeContainerPath({"/a/b"}), EscapeContainerPath({"/a%2Fb"}));
}

TEST(ValidateContainerId, AcceptsRuntimeIdsAndRefusesPathLikeOnes) {
  for (const char* ok : {"abc123", "gputier-test-1-0", "a_b.c-d",
                         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}) {
    EXPECT_TRUE(ValidateContainerId(ok).ok()) << ok;
  }
  for (const std::string& bad :
       {std::string(""), std::string("."), std::string(".."), std::string("a/b"),
        std::string("../x"), std::string("a b"), std::string(129, 'a')}) {
    EXPECT_FALSE(ValidateContainerId(bad).ok()) << "'" << bad << "'";
  }
}

TEST(PlanTierLayout, PutsUpperAndWorkUnderRootIdAndEscapedPath) {
  absl::StatusOr<TierLayout> layout = PlanTierLayout("/mnt/fast/", "c1", {"/var/lib/x"});
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->dir, "/mnt/fast/c1/var%2Flib%2Fx");
  EXPECT_EQ(layout->upper, "/mnt/fast/c1/var%2Flib%2Fx/upper");
  EXPECT_EQ(layout->work, "/mnt/fast/c1/var%2Flib%2Fx/work");
  EXPECT_EQ(layout->root, "/mnt/fast");
}

TEST(PlanTierLayout, RefusesRelativeRootAndBadId) {
  EXPECT_FALSE(PlanTierLayout("fast", "c1", {"/data"}).ok());
  EXPECT_FALSE(PlanTierLayout("", "c1", {"/data"}).ok());
  EXPECT_FALSE(PlanTierLayout("/fast", "..", {"/data"}).ok());
  EXPECT_FALSE(PlanTierLayout("/fast", "a/b", {"/data"}).ok());
}

}  // namespace
}  // namespace gputier
