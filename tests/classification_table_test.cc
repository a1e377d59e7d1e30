#include "loader/classify/classification_table.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gputier/abi.h"
#include "gtest/gtest.h"

namespace gputier {
namespace {

// A row with every column set to a value that differs from its default.
ClassificationRow MakeRow(uint64_t cgroup_id, const std::string& verdict = "gpu",
                          const std::string& source = "rule") {
  ClassificationRow row;
  row.time_unix_ns = 1700000000123456789;
  row.cgroup_id = cgroup_id;
  row.cgroup_path = absl::StrCat("/kubepods.slice/pod", cgroup_id, "/cri-containerd-abc.scope");
  row.container_id = absl::StrCat("abc", cgroup_id);
  row.container_name = absl::StrCat("team-a/trainer-", cgroup_id, "/worker");
  row.gpu_ioctl_rate = 12.5;
  row.gpu_opened = 1;
  row.ext_ratio = 0.375;
  row.open_rate = 40.25;
  row.write_rate = 1048576.5;
  row.evidence = 4242;
  row.verdict = verdict;
  row.rule_verdict = source == "operator" ? "" : "mixed";
  row.source = source;
  row.model_version = source == "model" ? 7 : 0;
  row.confidence_permille = 875;
  return row;
}

TableOptions MaxRows(int64_t max_rows) {
  TableOptions options;
  options.max_rows = max_rows;
  return options;
}

std::vector<int64_t> Ids(const std::vector<ClassificationRow>& rows) {
  std::vector<int64_t> ids;
  for (const ClassificationRow& row : rows) ids.push_back(row.id);
  return ids;
}

class ClassificationTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/gputier_table_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/classifications.db";
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  ClassificationTable OpenTable(TableOptions options = {}) {
    absl::StatusOr<ClassificationTable> table = ClassificationTable::Open(path_, options);
    EXPECT_TRUE(table.ok()) << table.status();
    if (!table.ok()) std::abort();
    return std::move(*table);
  }

  // A plain sqlite3 connection, as a security team's shell would have.
  sqlite3* RawConnection() {
    sqlite3* raw = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path_.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                              nullptr),
              SQLITE_OK);
    sqlite3_busy_timeout(raw, 5000);
    return raw;
  }

  int64_t RawCount(const char* sql) {
    sqlite3* raw = RawConnection();
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(raw, sql, -1, &stmt, nullptr), SQLITE_OK) << sqlite3_errmsg(raw);
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    const int64_t n = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(raw);
    return n;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(ClassificationTableTest, RoundTripKeepsEveryColumn) {
  ClassificationTable table = OpenTable();
  ClassificationRow row = MakeRow(std::numeric_limits<int64_t>::max(), "mixed", "model");
  row.cgroup_path = "/sys/fs/cgroup/ünïcödé path/with'quote\"";
  row.gpu_ioctl_rate = 0.1;  // not exact in binary: must come back bit for bit
  row.evidence = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  row.id = 999;  // ignored: the table assigns ids
  ASSERT_TRUE(table.Record(row).ok());

  absl::StatusOr<std::optional<ClassificationRow>> got = table.LatestFor(row.cgroup_id);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->id, 1);
  row.id = 1;
  EXPECT_EQ(**got, row);
}

TEST_F(ClassificationTableTest, EmptyTableGivesEmptyResults) {
  ClassificationTable table = OpenTable();
  EXPECT_TRUE(table.LabelledRows()->empty());
  EXPECT_TRUE(table.LatestPerCgroup()->empty());
  EXPECT_FALSE(table.LatestFor(1)->has_value());
  EXPECT_TRUE(table.History(1, 10)->empty());
  EXPECT_EQ(*table.MaxId(), 0);
  EXPECT_EQ(*table.CountLabelledSince(0), 0);
}

TEST_F(ClassificationTableTest, LabelledRowsExcludeUnknownAndComeOldestFirst) {
  ClassificationTable table = OpenTable();
  for (const char* verdict : {"gpu", "unknown", "cpu", "mixed", "unknown"}) {
    ASSERT_TRUE(table.Record(MakeRow(1, verdict)).ok());
  }
  ASSERT_TRUE(table.Record(MakeRow(2, "cpu", "operator")).ok());
  absl::StatusOr<std::vector<ClassificationRow>> rows = table.LabelledRows();
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(Ids(*rows), (std::vector<int64_t>{1, 3, 4, 6}));
  for (const ClassificationRow& row : *rows) EXPECT_NE(row.verdict, "unknown");
}

TEST_F(ClassificationTableTest, CountLabelledSinceCountsLaterLabelledRowsOnly) {
  ClassificationTable table = OpenTable();
  ASSERT_TRUE(table.Record(MakeRow(1, "gpu")).ok());
  ASSERT_TRUE(table.Record(MakeRow(1, "cpu")).ok());
  const int64_t watermark = *table.MaxId();
  EXPECT_EQ(watermark, 2);
  ASSERT_TRUE(table.Record(MakeRow(2, "unknown")).ok());
  ASSERT_TRUE(table.Record(MakeRow(2, "mixed")).ok());
  ASSERT_TRUE(table.Record(MakeRow(3, "gpu", "operator")).ok());
  EXPECT_EQ(*table.CountLabelledSince(watermark), 2);
  EXPECT_EQ(*table.CountLabelledSince(0), 4);
  EXPECT_EQ(*table.MaxId(), 5);
}

struct InvalidCase {
  const char* description;
  std::function<void(ClassificationRow&)> mutate;
  const char* column;
  const char* value;  // as the message prints it
};

const InvalidCase kInvalidCases[] = {
    {"NaN rate", [](ClassificationRow& r) { r.gpu_ioctl_rate = std::nan(""); }, "gpu_ioctl_rate",
     "nan"},
    {"infinite rate",
     [](ClassificationRow& r) { r.open_rate = std::numeric_limits<double>::infinity(); },
     "open_rate", "inf"},
    {"negative rate", [](ClassificationRow& r) { r.write_rate = -1; }, "write_rate", "-1"},
    {"ratio above 1", [](ClassificationRow& r) { r.ext_ratio = 1.5; }, "ext_ratio", "1.5"},
    {"negative ratio", [](ClassificationRow& r) { r.ext_ratio = -0.25; }, "ext_ratio", "-0.25"},
    {"NaN ratio", [](ClassificationRow& r) { r.ext_ratio = std::nan(""); }, "ext_ratio", "nan"},
    {"gpu_opened not 0/1", [](ClassificationRow& r) { r.gpu_opened = 0.5; }, "gpu_opened", "0.5"},
    {"unknown verdict", [](ClassificationRow& r) { r.verdict = "GPU"; }, "verdict", "\"GPU\""},
    {"empty verdict", [](ClassificationRow& r) { r.verdict = ""; }, "verdict", "\"\""},
    {"unknown rule verdict", [](ClassificationRow& r) { r.rule_verdict = "maybe"; },
     "rule_verdict", "\"maybe\""},
    {"unknown source", [](ClassificationRow& r) { r.source = "human"; }, "source", "\"human\""},
    {"confidence above 1000", [](ClassificationRow& r) { r.confidence_permille = 1001; },
     "confidence_permille", "1001"},
    {"negative confidence", [](ClassificationRow& r) { r.confidence_permille = -1; },
     "confidence_permille", "-1"},
    {"negative time", [](ClassificationRow& r) { r.time_unix_ns = -5; }, "time_unix_ns", "-5"},
    {"negative model version", [](ClassificationRow& r) { r.model_version = -2; },
     "model_version", "-2"},
    {"cgroup id above INT64_MAX", [](ClassificationRow& r) { r.cgroup_id = ~0ull; }, "cgroup_id",
     "18446744073709551615"},
    {"evidence above INT64_MAX", [](ClassificationRow& r) { r.evidence = ~0ull; }, "evidence",
     "18446744073709551615"},
};

TEST_F(ClassificationTableTest, InvalidRowsAreRejectedNamingTheColumnAndNothingIsWritten) {
  ClassificationTable table = OpenTable();
  for (const InvalidCase& c : kInvalidCases) {
    SCOPED_TRACE(c.description);
    ClassificationRow row = MakeRow(42);
    c.mutate(row);
    const absl::Status validated = ValidateRow(row);
    EXPECT_EQ(validated.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(validated.message(), absl::StrCat("column ", c.column, " = ",
                                                                    c.value)))
        << validated;
    const absl::Status recorded = table.Record(row);
    EXPECT_EQ(recorded, validated);
  }
  EXPECT_EQ(*table.MaxId(), 0);
  EXPECT_EQ(RawCount("SELECT count(*) FROM classifications"), 0);
}

TEST(ValidateRow, AcceptsTheEdgesOfEveryRange) {
  ClassificationRow row = MakeRow(0, "unknown", "operator");
  row.time_unix_ns = 0;
  row.gpu_ioctl_rate = 0;
  row.gpu_opened = 0;
  row.ext_ratio = 0;
  row.open_rate = 0;
  row.write_rate = 0;
  row.evidence = 0;
  row.confidence_permille = 0;
  EXPECT_TRUE(ValidateRow(row).ok()) << ValidateRow(row);
  row.ext_ratio = 1;
  row.gpu_opened = 1;
  row.confidence_permille = 1000;
  row.rule_verdict = "unknown";
  row.cgroup_path.clear();
  row.container_id.clear();
  EXPECT_TRUE(ValidateRow(row).ok()) << ValidateRow(row);
}

TEST_F(ClassificationTableTest, DatabaseRefusesRawInsertsOfInvalidValues) {
  OpenTable();
  // Column order: time_unix_ns, cgroup_id, cgroup_path, container_id,
  // gpu_ioctl_rate, gpu_opened, ext_ratio, open_rate, write_rate, evidence,
  // verdict, rule_verdict, source, model_version, confidence_permille.
  const std::string kValid = "1, 7, '', '', 1.0, 1.0, 0.5, 2.0, 3.0, 4, 'gpu', 'gpu', 'rule', 0, 900";
  const std::pair<const char*, std::string> kCases[] = {
      {"valid (control)", kValid},
      {"NaN rate", "1, 7, '', '', 0.0/0.0, 1.0, 0.5, 2.0, 3.0, 4, 'gpu', 'gpu', 'rule', 0, 900"},
      {"infinite rate", "1, 7, '', '', 9e999, 1.0, 0.5, 2.0, 3.0, 4, 'gpu', 'gpu', 'rule', 0, 900"},
      {"negative rate", "1, 7, '', '', 1.0, 1.0, 0.5, -2.0, 3.0, 4, 'gpu', 'gpu', 'rule', 0, 900"},
      {"negative cgroup", "1, -7, '', '', 1.0, 1.0, 0.5, 2.0, 3.0, 4, 'gpu', 'gpu', 'rule', 0, 900"},
      {"ratio above 1", "1, 7, '', '', 1.0, 1.0, 1.5, 2.0, 3.0, 4, 'gpu', 'gpu', 'rule', 0, 900"},
      {"gpu_opened 0.5", "1, 7, '', '', 1.0, 0.5, 0.5, 2.0, 3.0, 4, 'gpu', 'gpu', 'rule', 0, 900"},
      {"text in a number", "1, 7, '', '', 'lots', 1.0, 0.5, 2.0, 3.0, 4, 'gpu', 'gpu', 'rule', 0, 900"},
      {"bad verdict", "1, 7, '', '', 1.0, 1.0, 0.5, 2.0, 3.0, 4, 'GPU', 'gpu', 'rule', 0, 900"},
      {"bad source", "1, 7, '', '', 1.0, 1.0, 0.5, 2.0, 3.0, 4, 'gpu', 'gpu', 'me', 0, 900"},
      {"confidence 1001", "1, 7, '', '', 1.0, 1.0, 0.5, 2.0, 3.0, 4, 'gpu', 'gpu', 'rule', 0, 1001"},
  };
  sqlite3* raw = RawConnection();
  for (const auto& [description, values] : kCases) {
    SCOPED_TRACE(description);
    const std::string sql = absl::StrCat(
        "INSERT INTO classifications (time_unix_ns, cgroup_id, cgroup_path, container_id, "
        "gpu_ioctl_rate, gpu_opened, ext_ratio, open_rate, write_rate, evidence, verdict, "
        "rule_verdict, source, model_version, confidence_permille) VALUES (",
        values, ")");
    const int rc = sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, nullptr);
    if (values == kValid) {
      EXPECT_EQ(rc, SQLITE_OK) << sqlite3_errmsg(raw);
    } else {
      EXPECT_EQ(rc, SQLITE_CONSTRAINT) << sqlite3_errmsg(raw);
    }
  }
  sqlite3_close(raw);
  EXPECT_EQ(RawCount("SELECT count(*) FROM classifications"), 1);
}

TEST_F(ClassificationTableTest, RowsAreAppendOnly) {
  ClassificationTable table = OpenTable();
  ASSERT_TRUE(table.Record(MakeRow(1, "cpu")).ok());
  sqlite3* raw = RawConnection();
  EXPECT_NE(sqlite3_exec(raw, "UPDATE classifications SET verdict = 'gpu'", nullptr, nullptr,
                         nullptr),
            SQLITE_OK);
  EXPECT_TRUE(absl::StrContains(sqlite3_errmsg(raw), "append-only")) << sqlite3_errmsg(raw);
  sqlite3_close(raw);
  EXPECT_EQ((*table.LatestFor(1))->verdict, "cpu");
}

TEST_F(ClassificationTableTest, RetentionDeletesAgentRowsBeforeOperatorLabels) {
  ClassificationTable table = OpenTable(MaxRows(4));
  ASSERT_TRUE(table.Record(MakeRow(100, "gpu", "operator")).ok());  // id 1
  ASSERT_TRUE(table.Record(MakeRow(101, "cpu", "operator")).ok());  // id 2
  for (uint64_t cg = 1; cg <= 5; ++cg) {                          // ids 3..7
    ASSERT_TRUE(table.Record(MakeRow(cg, "gpu", cg % 2 ? "rule" : "model")).ok());
  }
  // Both labels survive; of the agent rows only the newest two do.
  EXPECT_EQ(Ids(*table.LabelledRows()), (std::vector<int64_t>{1, 2, 6, 7}));

  // Operator labels alone over max_rows: every agent row goes, then the
  // oldest labels.
  for (uint64_t cg = 102; cg <= 104; ++cg) {  // ids 8..10
    ASSERT_TRUE(table.Record(MakeRow(cg, "mixed", "operator")).ok());
  }
  EXPECT_EQ(Ids(*table.LabelledRows()), (std::vector<int64_t>{2, 8, 9, 10}));
}

TEST_F(ClassificationTableTest, RetentionDropsOldestOperatorRowsOnlyWhenLabelsAloneOverflow) {
  ClassificationTable table = OpenTable(MaxRows(3));
  ASSERT_TRUE(table.Record(MakeRow(1, "gpu", "rule")).ok());       // id 1
  for (uint64_t cg = 100; cg <= 103; ++cg) {                         // ids 2..5
    ASSERT_TRUE(table.Record(MakeRow(cg, "cpu", "operator")).ok());
  }
  const std::vector<ClassificationRow> rows = *table.LabelledRows();
  EXPECT_EQ(Ids(rows), (std::vector<int64_t>{3, 4, 5}));
  for (const ClassificationRow& row : rows) EXPECT_EQ(row.source, "operator");
}

TEST_F(ClassificationTableTest, RetentionAppliesToBatchesAndToASmallerMaxOnReopen) {
  {
    ClassificationTable table = OpenTable(MaxRows(5));
    std::vector<ClassificationRow> rows;
    for (uint64_t cg = 1; cg <= 10; ++cg) rows.push_back(MakeRow(cg));
    absl::StatusOr<BatchResult> result = table.RecordBatch(rows);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->recorded, 10);
    EXPECT_EQ(Ids(*table.LabelledRows()), (std::vector<int64_t>{6, 7, 8, 9, 10}));
  }
  ClassificationTable table = OpenTable(MaxRows(2));
  EXPECT_EQ(Ids(*table.LabelledRows()), (std::vector<int64_t>{9, 10}));
  EXPECT_EQ(RawCount("SELECT agent_rows FROM classification_counts"), 2);
}

TEST_F(ClassificationTableTest, RecordBatchSkipsInvalidRowsAndReportsThem) {
  ClassificationTable table = OpenTable();
  std::vector<ClassificationRow> rows = {MakeRow(1), MakeRow(2), MakeRow(3), MakeRow(4)};
  rows[1].ext_ratio = 2;
  rows[3].verdict = "maybe";
  absl::StatusOr<BatchResult> result = table.RecordBatch(rows);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->recorded, 2);
  ASSERT_EQ(result->rejected.size(), 2u);
  EXPECT_EQ(result->rejected[0].index, 1u);
  EXPECT_TRUE(absl::StrContains(result->rejected[0].reason.message(), "ext_ratio"));
  EXPECT_EQ(result->rejected[1].index, 3u);
  EXPECT_TRUE(absl::StrContains(result->rejected[1].reason.message(), "verdict"));
  std::vector<uint64_t> cgroups;
  const std::vector<ClassificationRow> latest = *table.LatestPerCgroup();
  for (const ClassificationRow& row : latest) cgroups.push_back(row.cgroup_id);
  EXPECT_EQ(cgroups, (std::vector<uint64_t>{1, 3}));
}

TEST_F(ClassificationTableTest, RecordBatchOfNothingValidWritesNothing) {
  ClassificationTable table = OpenTable();
  std::vector<ClassificationRow> rows = {MakeRow(1)};
  rows[0].source = "";
  absl::StatusOr<BatchResult> result = table.RecordBatch(rows);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->recorded, 0);
  EXPECT_EQ(result->rejected.size(), 1u);
  EXPECT_EQ(*table.MaxId(), 0);
}

TEST_F(ClassificationTableTest, LatestPerCgroupLatestForAndHistoryPickTheNewestRows) {
  ClassificationTable table = OpenTable();
  const std::pair<uint64_t, const char*> kRows[] = {
      {1, "cpu"}, {2, "gpu"}, {1, "mixed"}, {3, "unknown"}, {1, "gpu"}};  // ids 1..5
  for (const auto& [cg, verdict] : kRows) ASSERT_TRUE(table.Record(MakeRow(cg, verdict)).ok());

  const std::vector<ClassificationRow> latest = *table.LatestPerCgroup();
  EXPECT_EQ(Ids(latest), (std::vector<int64_t>{5, 2, 4}));  // cgroups 1, 2, 3
  EXPECT_EQ(latest[0].verdict, "gpu");

  std::optional<ClassificationRow> one = *table.LatestFor(1);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->id, 5);
  EXPECT_FALSE(table.LatestFor(99)->has_value());

  EXPECT_EQ(Ids(*table.History(1, 2)), (std::vector<int64_t>{5, 3}));
  EXPECT_EQ(Ids(*table.History(1, 100)), (std::vector<int64_t>{5, 3, 1}));
  EXPECT_EQ(table.History(1, 0).status().code(), absl::StatusCode::kInvalidArgument);

  // The view agrees, and carries a readable UTC time.
  EXPECT_EQ(RawCount("SELECT count(*) FROM latest_verdicts"), 3);
  EXPECT_EQ(RawCount("SELECT count(*) FROM latest_verdicts"
                     " WHERE time_utc = '2023-11-14T22:13:20.123Z'"),
            3);
}

TEST_F(ClassificationTableTest, RowsPersistAcrossReopenAndIdsAreNeverReused) {
  {
    ClassificationTable table = OpenTable();
    ASSERT_TRUE(table.Record(MakeRow(1, "gpu")).ok());
    ASSERT_TRUE(table.Record(MakeRow(2, "cpu", "operator")).ok());
  }
  {
    ClassificationTable table = OpenTable();
    std::optional<ClassificationRow> row = *table.LatestFor(2);
    ASSERT_TRUE(row.has_value());
    ClassificationRow expected = MakeRow(2, "cpu", "operator");
    expected.id = 2;
    EXPECT_EQ(*row, expected);
    EXPECT_EQ(table.LatestPerCgroup()->size(), 2u);
  }
  sqlite3* raw = RawConnection();
  ASSERT_EQ(sqlite3_exec(raw, "DELETE FROM classifications", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);
  ClassificationTable table = OpenTable();
  ASSERT_TRUE(table.Record(MakeRow(3)).ok());
  EXPECT_EQ(*table.MaxId(), 3);
}

TEST_F(ClassificationTableTest, NewerSchemaVersionIsRefusedNamingTheFile) {
  { ClassificationTable table = OpenTable(); }
  sqlite3* raw = RawConnection();
  const int newer = kClassificationSchemaVersion + 1;
  const std::string stamp = absl::StrCat("PRAGMA user_version = ", newer);
  ASSERT_EQ(sqlite3_exec(raw, stamp.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);
  absl::StatusOr<ClassificationTable> table = ClassificationTable::Open(path_);
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(table.status().message(), path_)) << table.status();
  EXPECT_TRUE(absl::StrContains(table.status().message(), absl::StrCat("schema version ", newer)))
      << table.status();
}

TEST_F(ClassificationTableTest, AVersion2FileGainsContainerNameKeepingItsRows) {
  {
    ClassificationTable table = OpenTable();
    ClassificationRow old = MakeRow(7);
    old.container_name.clear();
    ASSERT_TRUE(table.Record(old).ok());
  }
  // The file as version 2 wrote it: no container_name column.
  sqlite3* raw = RawConnection();
  char* error = nullptr;
  ASSERT_EQ(sqlite3_exec(raw, "ALTER TABLE classifications DROP COLUMN container_name; PRAGMA user_version = 2",
                         nullptr, nullptr, &error),
            SQLITE_OK)
      << (error ? error : "");
  sqlite3_close(raw);
  ASSERT_EQ(RawCount("SELECT count(*) FROM pragma_table_info('classifications') WHERE name = 'container_name'"), 0);

  ClassificationTable table = OpenTable();
  EXPECT_EQ(RawCount("PRAGMA user_version"), kClassificationSchemaVersion);
  absl::StatusOr<std::optional<ClassificationRow>> old = table.LatestFor(7);
  ASSERT_TRUE(old.ok() && old->has_value()) << old.status();
  EXPECT_EQ((*old)->container_name, "");
  EXPECT_EQ((*old)->container_id, "abc7");
  ClassificationRow named = MakeRow(8);
  ASSERT_TRUE(table.Record(named).ok());
  absl::StatusOr<std::optional<ClassificationRow>> back = table.LatestFor(8);
  ASSERT_TRUE(back.ok() && back->has_value());
  EXPECT_EQ((*back)->container_name, "team-a/trainer-8/worker");
  // The upgraded column refuses what the new schema refuses.
  raw = RawConnection();
  EXPECT_NE(sqlite3_exec(raw,
                         "INSERT INTO classifications (time_unix_ns, cgroup_id, gpu_ioctl_rate, gpu_opened, "
                         "ext_ratio, open_rate, write_rate, evidence, verdict, source, confidence_permille, "
                         "container_name) VALUES (1, 9, 0, 0, 0, 0, 0, 0, 'cpu', 'rule', 0, 'a\nb x')",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);
}

TEST_F(ClassificationTableTest, ContainerNamesOutsideTheirAlphabetAreRefused) {
  for (const std::string& name : {std::string("ns/pod\nINFO forged"), std::string("caf\xc3\xa9"),
                                   std::string("a b"), std::string(513, 'a')}) {
    ClassificationRow row = MakeRow(1);
    row.container_name = name;
    absl::Status s = ValidateRow(row);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_TRUE(absl::StrContains(s.message(), "container_name")) << s;
    EXPECT_FALSE(absl::StrContains(s.message(), "forged")) << s;
  }
  ClassificationRow row = MakeRow(1);
  row.container_name = std::string(512, 'a');
  EXPECT_TRUE(ValidateRow(row).ok());
}

TEST_F(ClassificationTableTest, FilesOfOtherApplicationsAreRefused) {
  sqlite3* raw = RawConnection();
  ASSERT_EQ(sqlite3_exec(raw, "CREATE TABLE notes (body TEXT)", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);
  absl::StatusOr<ClassificationTable> table = ClassificationTable::Open(path_);
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(table.status().message(), path_)) << table.status();
  EXPECT_EQ(RawCount("SELECT count(*) FROM sqlite_master WHERE name = 'classifications'"), 0);
}

TEST_F(ClassificationTableTest, AFileThatIsNotSqliteIsRefusedNamingIt) {
  std::ofstream(path_) << "this is not a database, just text that is long enough to matter\n";
  absl::StatusOr<ClassificationTable> table = ClassificationTable::Open(path_);
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(table.status().message(), path_)) << table.status();
  EXPECT_TRUE(absl::StrContains(table.status().message(), "not a database")) << table.status();
}

TEST_F(ClassificationTableTest, InMemoryTableTakesRowsLikeTheFile) {
  absl::StatusOr<ClassificationTable> table = ClassificationTable::OpenInMemory();
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_TRUE(table->in_memory());
  ASSERT_TRUE(table->Record(MakeRow(7, "gpu")).ok());
  absl::StatusOr<std::vector<ClassificationRow>> rows = table->LabelledRows();
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->size(), 1u);
}

TEST_F(ClassificationTableTest, DegradedOpenMovesACorruptFileAsideAndStartsANewTable) {
  std::ofstream(path_) << std::string(8192, 'x');
  std::string degraded;
  absl::StatusOr<ClassificationTable> table = OpenTableOrDegrade(path_, {}, &degraded);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_FALSE(table->in_memory());
  EXPECT_TRUE(absl::StrContains(degraded, "moved to " + path_ + ".corrupt-")) << degraded;
  int aside = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    aside += absl::StartsWith(e.path().filename().string(), "classifications.db.corrupt-");
  }
  EXPECT_EQ(aside, 1);
  EXPECT_TRUE(table->Record(MakeRow(7, "gpu")).ok());
}

TEST_F(ClassificationTableTest, DegradedOpenKeepsTheTableInMemoryWhenNoFileCanBeUsed) {
  std::string degraded;
  absl::StatusOr<ClassificationTable> table = OpenTableOrDegrade(dir_ + "/missing/t.db", {}, &degraded);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_TRUE(table->in_memory());
  EXPECT_TRUE(absl::StrContains(degraded, dir_ + "/missing")) << degraded;
  EXPECT_TRUE(absl::StrContains(degraded, "in memory only")) << degraded;
}

TEST_F(ClassificationTableTest, DegradedOpenOfAGoodFileSaysNothing) {
  std::string degraded = "stale";
  absl::StatusOr<ClassificationTable> table = OpenTableOrDegrade(path_, {}, &degraded);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_FALSE(table->in_memory());
  EXPECT_EQ(degraded, "");
}

TEST_F(ClassificationTableTest, MissingParentDirectoryIsNamed) {
  const std::string missing = dir_ + "/no-such-dir";
  absl::StatusOr<ClassificationTable> table =
      ClassificationTable::Open(missing + "/classifications.db");
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(table.status().message(), "directory " + missing))
      << table.status();
  EXPECT_FALSE(std::filesystem::exists(missing));
}

TEST_F(ClassificationTableTest, BadOptionsAndPathsAreRefused) {
  EXPECT_EQ(ClassificationTable::Open(path_, MaxRows(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ClassificationTable::Open("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ClassificationTable::Open(":memory:").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ClassificationTableTest, SymlinkedFileIsRefused) {
  const std::string target = dir_ + "/elsewhere.db";
  { ClassificationTable table = ClassificationTable::Open(target).value(); }
  std::filesystem::create_symlink(target, path_);
  absl::StatusOr<ClassificationTable> table = ClassificationTable::Open(path_);
  ASSERT_FALSE(table.ok());
  EXPECT_TRUE(absl::StrContains(table.status().message(), path_)) << table.status();
  EXPECT_TRUE(absl::StrContains(table.status().message(), "symlink")) << table.status();
}

TEST_F(ClassificationTableTest, FileIsCreatedOwnerOnly) {
  ClassificationTable table = OpenTable();
  ASSERT_TRUE(table.Record(MakeRow(1)).ok());
  for (const std::string& file : {path_, path_ + "-wal"}) {
    SCOPED_TRACE(file);
    struct stat st;
    ASSERT_EQ(stat(file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }
}

TEST_F(ClassificationTableTest, JournalModeIsWalAndSchemaIsStamped) {
  OpenTable();
  sqlite3* raw = RawConnection();
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(raw);
  EXPECT_EQ(RawCount("PRAGMA user_version"), kClassificationSchemaVersion);
  EXPECT_EQ(RawCount("PRAGMA application_id"), static_cast<int32_t>(GT_ABI_MAGIC));
}

TEST_F(ClassificationTableTest, TwoConnectionsWriteTheSameFile) {
  ClassificationTable agent = OpenTable(MaxRows(1000));
  ClassificationTable cli = OpenTable(MaxRows(1000));
  ASSERT_TRUE(agent.Record(MakeRow(1, "cpu")).ok());
  ASSERT_TRUE(cli.Record(MakeRow(1, "gpu", "operator")).ok());
  EXPECT_EQ((*agent.LatestFor(1))->source, "operator");

  constexpr int kPerWriter = 200;
  auto write = [](ClassificationTable* table, uint64_t cgroup, absl::Status* out) {
    for (int i = 0; i < kPerWriter && out->ok(); ++i) {
      *out = table->Record(MakeRow(cgroup, i % 2 ? "gpu" : "cpu", "rule"));
    }
  };
  absl::Status agent_status, cli_status;
  std::thread a(write, &agent, 10, &agent_status);
  std::thread b(write, &cli, 20, &cli_status);
  a.join();
  b.join();
  EXPECT_TRUE(agent_status.ok()) << agent_status;
  EXPECT_TRUE(cli_status.ok()) << cli_status;
  EXPECT_EQ(*agent.MaxId(), 2 + 2 * kPerWriter);
  EXPECT_EQ(cli.History(10, 1000)->size(), static_cast<size_t>(kPerWriter));
  EXPECT_EQ(agent.History(20, 1000)->size(), static_cast<size_t>(kPerWriter));
  EXPECT_EQ(RawCount("SELECT agent_rows + operator_rows FROM classification_counts"),
            2 + 2 * kPerWriter);
}

TEST_F(ClassificationTableTest, MovedFromTableReportsMisuse) {
  ClassificationTable table = OpenTable();
  ClassificationTable moved = std::move(table);
  EXPECT_TRUE(moved.Record(MakeRow(1)).ok());
  EXPECT_EQ(table.Record(MakeRow(1)).code(), absl::StatusCode::kFailedPrecondition);  // NOLINT
}

TEST(VerdictNames, MatchTheAbiEnumsBothWays) {
  const std::pair<uint32_t, const char*> kVerdicts[] = {
      {GT_VERDICT_UNKNOWN, "unknown"},
      {GT_VERDICT_CPU, "cpu"},
      {GT_VERDICT_GPU, "gpu"},
      {GT_VERDICT_MIXED, "mixed"},
  };
  for (const auto& [kind, name] : kVerdicts) {
    EXPECT_EQ(VerdictKindName(kind), name);
    EXPECT_EQ(VerdictKindFromName(name), kind);
  }
  EXPECT_EQ(VerdictKindName(99), "unknown");
  EXPECT_FALSE(VerdictKindFromName("GPU").has_value());

  const std::pair<uint32_t, const char*> kSources[] = {
      {GT_SOURCE_RULE, "rule"}, {GT_SOURCE_MODEL, "model"}, {GT_SOURCE_OPERATOR, "operator"}};
  for (const auto& [source, name] : kSources) {
    EXPECT_EQ(VerdictSourceName(source), name);
    EXPECT_EQ(VerdictSourceFromName(name), source);
  }
  EXPECT_EQ(VerdictSourceName(GT_SOURCE_NONE), "");
  EXPECT_FALSE(VerdictSourceFromName("").has_value());
}

}  // namespace
}  // namespace gputier
