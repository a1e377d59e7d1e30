// The persisted per-container tiering record: round trip, atomic store, and
// refusal (never a guess) of files of another layout or damaged ones.
#include "loader/tier/tier_record.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace gputier {
namespace {

TierRecord Sample() {
  TierRecord r;
  r.container_id = "abc123";
  r.key = "abc123-4711";
  r.cgroup = "/kubepods.slice/x";
  r.mnt_ns = 4026532000;
  r.override_tier = TierOverride::kFast;
  r.paths = {{"/data", Tier::kFast}, {"/scratch", Tier::kSlow}};
  r.op = TierOp::kDemote;
  r.op_path = "/data";
  r.froze = true;
  r.partition = true;
  return r;
}

TEST(TierRecord, RoundTripsThroughJson) {
  absl::StatusOr<TierRecord> back = TierRecordFromJson(TierRecordToJson(Sample()), "x");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(TierRecordToJson(*back), TierRecordToJson(Sample()));
  EXPECT_TRUE(back->AnyFast());
}

TEST(TierRecord, AnnotatedPathsRoundTripAndAbsentOnesStayAbsent) {
  TierRecord r = Sample();
  EXPECT_FALSE(absl::StrContains(TierRecordToJson(r), "tiered_paths"));
  absl::StatusOr<TierRecord> back = TierRecordFromJson(TierRecordToJson(r), "x");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->tiered_paths.has_value());
  EXPECT_FALSE(back->gpu_data_paths.has_value());
  r.tiered_paths = std::vector<std::string>{"/x", "/y"};
  r.gpu_data_paths = std::vector<std::string>{};
  back = TierRecordFromJson(TierRecordToJson(r), "x");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->tiered_paths, r.tiered_paths);
  EXPECT_EQ(back->gpu_data_paths, r.gpu_data_paths);
}

TEST(TierRecord, BadAnnotatedPathsAreRefused) {
  for (const char* bad : {R"("tiered_paths": "/x")", R"("tiered_paths": ["x"])", R"("gpu_data_paths": ["/a/../b"])",
                          R"("gpu_data_paths": [1])", R"("tiered_paths": ["/a//b"])"}) {
    std::string json = TierRecordToJson(Sample());
    json.replace(json.find('{'), 1, absl::StrCat("{", bad, ","));
    absl::StatusOr<TierRecord> r = TierRecordFromJson(json, "f");
    EXPECT_FALSE(r.ok()) << bad;
  }
  TierRecord many = Sample();
  many.tiered_paths = std::vector<std::string>(17, "/x");
  EXPECT_FALSE(TierRecordFromJson(TierRecordToJson(many), "f").ok());
}

TEST(TierRecord, CgroupNamedWithInvalidUtf8RoundTripsExactly) {
  TierRecord r = Sample();
  r.cgroup = std::string("/runc/x\xff\xfe\n") + "y";
  std::string json;
  ASSERT_NO_THROW(json = TierRecordToJson(r));
  absl::StatusOr<TierRecord> back = TierRecordFromJson(json, "x");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->cgroup, r.cgroup);
  EXPECT_TRUE(absl::StrContains(json, "\"cgroup_hex\""));
  EXPECT_FALSE(absl::StrContains(TierRecordToJson(Sample()), "cgroup_hex"));  // UTF-8 names stay as they were
}

TEST(TierRecord, AnotherLayoutVersionIsRefusedNotGuessed) {
  std::string json = TierRecordToJson(Sample());
  json.replace(json.find("\"version\": 2"), 12, "\"version\": 3");
  absl::Status s = TierRecordFromJson(json, "f.json").status();
  EXPECT_TRUE(absl::StrContains(s.message(), "layout version 3")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "leaves this container alone")) << s;
}

// A record written before tier keys (layout version 1, no "key") names
// directories that carry the container id alone: it is served with those,
// never with a key it does not have.
TEST(TierRecord, VersionOneRecordKeepsTheContainerIdAsItsKey) {
  const std::string v1 = R"({"version": 1, "container_id": "abc123", "cgroup": "/runc/abc123",
    "mnt_ns": 4026532000, "override": "auto", "paths": {"/data": "slow"}, "op": "none",
    "op_path": "", "froze": false, "partition": false})";
  absl::StatusOr<TierRecord> r = TierRecordFromJson(v1, "f.json");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->key, "abc123");
  // Saved again it becomes version 2 with that same key, and reads back so.
  const std::string again = TierRecordToJson(*r);
  EXPECT_TRUE(absl::StrContains(again, "\"version\": 2")) << again;
  absl::StatusOr<TierRecord> back = TierRecordFromJson(again, "f.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->key, "abc123");
}

TEST(TierRecord, VersionTwoRecordKeepsItsKey) {
  absl::StatusOr<TierRecord> back = TierRecordFromJson(TierRecordToJson(Sample()), "x");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->key, "abc123-4711");
}

// A version 2 record's key is the container id or "<id>-<inode>": one that
// names another container's directories, or none, is refused.
TEST(TierRecord, VersionTwoKeyThatIsNotTheContainersIsRefused) {
  struct Case {
    const char* key;
    bool ok;
  };
  for (const Case& c : std::vector<Case>{{"abc123-4711", true},
                                         {"abc123", true},
                                         {"other-4711", false},
                                         {"abc123-", false},
                                         {"abc123-47x1", false},
                                         {"abc123-123456789012345678901", false},
                                         {"../abc123-1", false},
                                         {"", false}}) {
    TierRecord r = Sample();
    r.key = c.key;
    absl::StatusOr<TierRecord> back = TierRecordFromJson(TierRecordToJson(r), "f.json");
    EXPECT_EQ(back.ok(), c.ok) << c.key << ": " << back.status();
  }
  std::string json = TierRecordToJson(Sample());
  json.replace(json.find("\"key\""), 5, "\"kex\"");
  EXPECT_FALSE(TierRecordFromJson(json, "f.json").ok());  // version 2 without a key
}

TEST(TierRecord, DamagedFilesAreRefused) {
  EXPECT_FALSE(TierRecordFromJson("{", "f").ok());
  EXPECT_FALSE(TierRecordFromJson("{\"version\":1}", "f").ok());
  std::string json = TierRecordToJson(Sample());
  json.replace(json.find("abc123"), 6, "../etc");
  EXPECT_FALSE(TierRecordFromJson(json, "f").ok());
  json = TierRecordToJson(Sample());
  json.replace(json.find("\"op_path\": \"/data\""), 18, "\"op_path\": \"/other\"");
  EXPECT_FALSE(TierRecordFromJson(json, "f").ok());
}

// fuzz/tier_record_fuzzer.cc under UBSan: a float mnt_ns was converted to
// uint64_t (undefined behaviour for 1e300), a negative one wrapped.
TEST(TierRecord, RejectsMountNamespaceThatIsNotAWholeNumberWithClearError) {
  for (const char* bad : {"1e300", "-1", "4026532000.5", "\"4026532000\""}) {
    std::string json = TierRecordToJson(Sample());
    json.replace(json.find("4026532000"), 10, bad);
    absl::Status s = TierRecordFromJson(json, "f.json").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << bad;
    EXPECT_TRUE(absl::StrContains(s.message(), "f.json: ")) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "mnt_ns")) << s;
  }
}

// A layout version beyond an int was truncated before the comparison, so
// 4294967298 read as version 2.
TEST(TierRecord, RejectsLayoutVersionThatWrapsToThisOne) {
  std::string json = TierRecordToJson(Sample());
  json.replace(json.find("\"version\": 2"), 12, "\"version\": 4294967298");
  absl::Status s = TierRecordFromJson(json, "f.json").status();
  EXPECT_TRUE(absl::StrContains(s.message(), "layout version 4294967298")) << s;
}

TEST(TierRecordStore, SavesLoadsAndRemoves) {
  char tmpl[] = "/tmp/gputier-record-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  TierRecordStore store(std::string(tmpl) + "/tier");
  ASSERT_TRUE(store.Init().ok());
  ASSERT_TRUE(store.Save(Sample()).ok());
  std::ofstream(store.dir() + "/broken.json") << "{";
  TierRecordStore::Loaded loaded = store.LoadAll();
  ASSERT_EQ(loaded.records.size(), 1u);
  EXPECT_EQ(loaded.records[0].container_id, "abc123");
  ASSERT_EQ(loaded.refused.size(), 1u);
  EXPECT_TRUE(absl::StrContains(loaded.refused[0], "broken.json"));
  ASSERT_TRUE(store.Remove("abc123").ok());
  EXPECT_TRUE(store.LoadAll().records.empty());
  EXPECT_TRUE(store.Remove("abc123").ok());  // idempotent
  unlink((store.dir() + "/broken.json").c_str());
  rmdir(store.dir().c_str());
  rmdir(tmpl);
}

}  // namespace
}  // namespace gputier
