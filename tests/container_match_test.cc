// A CONTAINER on gputierctl's command line: name, id, id prefix, cgroup path
// or cgroup id; ambiguity and no match are errors that say what to give.
#include "loader/classify/container_match.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace gputier {
namespace {

const std::vector<MatchCandidate> kNode = {
    {11, "/kubepods/besteffort/pod1/aaaa1111bbbb2222cccc", "aaaa1111bbbb2222cccc", "team-a/trainer-0/worker"},
    {12, "/kubepods/besteffort/pod2/aaaa1111dddd3333eeee", "aaaa1111dddd3333eeee", "team-a/trainer-1/worker"},
    {13, "/libpod_parent/libpod-ffff4444", "ffff4444", "ingest"},
    // The same podman name again: a container removed and run anew, both
    // still counted.
    {14, "/libpod_parent/libpod-9999aaaa", "9999aaaa", "ingest"},
    {15, "/machine/host.service", "", ""},
    // A confirmed container whose runtime gave no name.
    {16, "/runc-bare", "12345678abcdef0123456789", ""},
    // A name that looks like another container's id prefix.
    {17, "/libpod_parent/libpod-77770000", "77770000", "ffff"},
};

struct Case {
  const char* description;
  const char* target;
  size_t want;
};

TEST(ContainerMatchTest, EachKindOfNameFindsItsContainer) {
  const Case cases[] = {
      {"namespace/pod/container", "team-a/trainer-1/worker", 1},
      {"full id", "aaaa1111bbbb2222cccc", 0},
      {"short id", "12345678abcd", 5},
      {"id prefix of 4+", "aaaa1111d", 1},
      {"cgroup path", "/libpod_parent/libpod-ffff4444", 2},
      {"cgroup id", "15", 4},
      {"cgroup path of a cgroup without a container", "/machine/host.service", 4},
      {"a name wins over an id prefix", "ffff", 6},
  };
  for (const Case& c : cases) {
    absl::StatusOr<size_t> got = MatchContainer(c.target, kNode);
    ASSERT_TRUE(got.ok()) << c.description << ": " << got.status();
    EXPECT_EQ(*got, c.want) << c.description;
  }
}

TEST(ContainerMatchTest, ANameOfSeveralContainersIsAnErrorListingThem) {
  absl::StatusOr<size_t> got = MatchContainer("ingest", kNode);
  ASSERT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(got.status().message());
  EXPECT_TRUE(absl::StrContains(message, "matches 2 containers")) << message;
  EXPECT_TRUE(absl::StrContains(message, "ffff4444")) << message;
  EXPECT_TRUE(absl::StrContains(message, "9999aaaa")) << message;
  EXPECT_TRUE(absl::StrContains(message, "full container id")) << message;
}

TEST(ContainerMatchTest, AnIdPrefixOfSeveralContainersIsAnErrorListingThem) {
  absl::StatusOr<size_t> got = MatchContainer("aaaa1111", kNode);
  ASSERT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(got.status().message(), "team-a/trainer-0/worker")) << got.status();
  EXPECT_TRUE(absl::StrContains(got.status().message(), "team-a/trainer-1/worker")) << got.status();
}

TEST(ContainerMatchTest, NothingMatchingSaysWhatMayBeGiven) {
  for (const char* target : {"team-b/trainer-0/worker", "aaa", "99", "/nope", "trainer-0/worker"}) {
    absl::StatusOr<size_t> got = MatchContainer(target, kNode);
    ASSERT_EQ(got.status().code(), absl::StatusCode::kNotFound) << target;
    EXPECT_TRUE(absl::StrContains(got.status().message(), "namespace/pod/container")) << got.status();
  }
}

TEST(ContainerMatchTest, ShownNameFallsBackToTheShortIdThenThePath) {
  EXPECT_EQ(ShownName(kNode[0]), "team-a/trainer-0/worker");
  EXPECT_EQ(ShownName(kNode[5]), "12345678abcd");
  EXPECT_EQ(ShownName(kNode[4]), "/machine/host.service");
}

}  // namespace
}  // namespace gputier
