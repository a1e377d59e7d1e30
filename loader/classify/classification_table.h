// The classification table: one row per classification decision of the agent
// (and per operator label), kept in a SQLite file so that verdicts survive a
// restart and the rows can train the classifier again (patent Fig. 3: the
// table of classification results, with GPU use and extension ratio beside
// each verdict). docs/CLASSIFICATION_TABLE.md is the schema for readers.
//
// Error policy:
//  - ValidateRow is pure and names the column, the value and the cgroup.
//  - Record() validates first; an invalid row is returned as InvalidArgument
//    and nothing is written. The database repeats the checks (CHECK
//    constraints, STRICT types), so a sqlite3-CLI insert of a NaN, a negative
//    or an unknown verdict is refused too.
//  - Every SQLite failure becomes an absl::Status carrying the file path,
//    what was being done and SQLite's own message. Busy/locked maps to
//    Unavailable (retry later), a full disk to ResourceExhausted, a file that
//    is not ours (other application, newer schema) to FailedPrecondition.
//
// Crash safety: WAL journal, synchronous=NORMAL (a committed row survives a
// process crash; a power cut may lose the last few commits, never corrupts),
// busy_timeout so gputierctl and gputierd can write at the same time.
//
// Retention: at most TableOptions::max_rows rows after every write. Rows of
// the agent ("rule", "model") are deleted oldest first; operator labels only
// when the operator rows alone exceed max_rows. Row counts are kept by
// triggers, so the check costs O(1) per write and deletes are index walks.
//
// Not thread-safe: one ClassificationTable per thread (prepared statements
// are reused). Several tables (or processes) may open the same file.
#ifndef GPUTIER_LOADER_CLASSIFY_CLASSIFICATION_TABLE_H_
#define GPUTIER_LOADER_CLASSIFY_CLASSIFICATION_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gputier {

inline constexpr char kDefaultStateDir[] = "/var/lib/gputier";
inline constexpr char kClassificationTableFile[] = "classifications.db";
// PRAGMA user_version of the files this build writes and reads.
// Version 2 added gpu_busy_share and gpu_context_recent (a version 1 file is
// upgraded in place, its rows getting 0 for both). Version 3 added
// container_name (older rows get '').
inline constexpr int kClassificationSchemaVersion = 3;

struct ClassificationRow {
  int64_t id = 0;            // assigned by the table; ignored by Record()
  int64_t time_unix_ns = 0;  // wall clock (CLOCK_REALTIME), >= 0
  uint64_t cgroup_id = 0;    // cgroup v2 id, <= INT64_MAX
  std::string cgroup_path;   // may be empty
  std::string container_id;  // may be empty
  // namespace/pod/container or podman's name where the runtime confirmed the
  // container; may be empty. At most 512 bytes of [A-Za-z0-9._/-].
  std::string container_name;
  // Features (names are the stable column names).
  double gpu_ioctl_rate = 0;  // GPU ioctls per second, >= 0
  double gpu_opened = 0;      // 0 or 1: a GPU device node was opened
  double ext_ratio = 0;       // [0, 1]: share of opens with a GPU-class extension
  double open_rate = 0;       // file opens per second, >= 0
  double write_rate = 0;      // bytes written per second, >= 0
  uint64_t evidence = 0;      // events behind the features, <= INT64_MAX
  double gpu_busy_share = 0;      // GPU engine busy share (DRM or NVML), >= 0
  double gpu_context_recent = 0;  // 0 or 1: a held GPU context used recently
  std::string verdict;        // "gpu", "cpu", "mixed", "unknown"
  std::string rule_verdict;   // the rule's answer beside it; "" for operator rows
  std::string source;         // "rule", "model", "operator"
  int64_t model_version = 0;  // 0 = no model
  int32_t confidence_permille = 0;  // 0..1000

  bool operator==(const ClassificationRow& other) const;
  bool operator!=(const ClassificationRow& other) const { return !(*this == other); }
};

struct TableOptions {
  // Retention: rows kept after every write (> 0).
  int64_t max_rows = 100000;
  // How long a write waits for another connection's lock before Unavailable.
  int busy_timeout_ms = 5000;
};

// What RecordBatch did: invalid rows are skipped, the rest written together.
struct BatchResult {
  struct Rejected {
    size_t index = 0;     // position in the input vector
    absl::Status reason;  // ValidateRow's error
  };
  int64_t recorded = 0;
  std::vector<Rejected> rejected;
};

// Pure. InvalidArgument naming the column and value for: NaN/inf, negative
// numbers, ext_ratio outside [0, 1], gpu_opened not 0/1, cgroup_id or
// evidence above INT64_MAX, an unknown verdict/rule_verdict/source,
// confidence_permille outside 0..1000.
absl::Status ValidateRow(const ClassificationRow& row);

// The column values of the ABI enums (include/gputier/abi.h), both ways.
// VerdictKindName of an out-of-range kind is "unknown"; VerdictSourceName of
// GT_SOURCE_NONE or an out-of-range source is "".
absl::string_view VerdictKindName(uint32_t kind);
std::optional<uint32_t> VerdictKindFromName(absl::string_view name);
absl::string_view VerdictSourceName(uint32_t source);
std::optional<uint32_t> VerdictSourceFromName(absl::string_view name);

class ClassificationTable {
 public:
  // Opens `path`, creating it (mode 0600) and its schema if absent. The parent
  // directory must exist. Refuses symlinks, files of other applications and
  // files with a newer schema version; creates nothing in those cases.
  static absl::StatusOr<ClassificationTable> Open(const std::string& path,
                                                  TableOptions options = {});
  // The same table in memory only: nothing is persisted (see OpenTableOrDegrade).
  static absl::StatusOr<ClassificationTable> OpenInMemory(TableOptions options = {});
  bool in_memory() const;

  ClassificationTable(ClassificationTable&&) noexcept;
  ClassificationTable& operator=(ClassificationTable&&) noexcept;
  ClassificationTable(const ClassificationTable&) = delete;
  ClassificationTable& operator=(const ClassificationTable&) = delete;
  ~ClassificationTable();

  const std::string& path() const;

  // Validates, inserts and applies retention in one transaction.
  absl::Status Record(const ClassificationRow& row);
  // One transaction for the valid rows; invalid rows are skipped and listed
  // in the result. A non-OK status (a database failure) means nothing was
  // written.
  absl::StatusOr<BatchResult> RecordBatch(const std::vector<ClassificationRow>& rows);

  // Rows whose verdict is gpu/cpu/mixed (any source), the newest max_rows,
  // oldest first: the training set.
  absl::StatusOr<std::vector<ClassificationRow>> LabelledRows();
  // Labelled rows with id > row_id (ids only grow, never reused).
  absl::StatusOr<int64_t> CountLabelledSince(int64_t row_id);
  // The highest id present, 0 for an empty table.
  absl::StatusOr<int64_t> MaxId();
  // The newest row (highest id) of every cgroup, ordered by cgroup_id.
  absl::StatusOr<std::vector<ClassificationRow>> LatestPerCgroup();
  absl::StatusOr<std::optional<ClassificationRow>> LatestFor(uint64_t cgroup_id);
  // Up to `limit` (> 0) rows of one cgroup, newest first.
  absl::StatusOr<std::vector<ClassificationRow>> History(uint64_t cgroup_id, int limit);

 private:
  static absl::StatusOr<ClassificationTable> OpenAt(const std::string& path, TableOptions options);
  struct Db;
  explicit ClassificationTable(std::unique_ptr<Db> db);
  absl::Status Usable() const;

  std::unique_ptr<Db> db_;
};

// Opens the table at `path` for gputierd, which must start even when the file
// cannot be used (a corrupt file or a full disk must not stop a node agent):
//  - a file that is not SQLite or is corrupt is moved aside to
//    <path>.corrupt-<unix seconds> (with its -wal and -shm) and a new table is
//    created in its place;
//  - when no file can be used (a full or read-only filesystem, a missing
//    state directory, a table of a newer gputier, left untouched), the table
//    lives in memory: verdicts, training and tiering go on; rows are lost at
//    stop.
// `degraded` gets one sentence naming the file, what happened and the fix;
// it is empty when the file opened normally. An error only for bad options.
absl::StatusOr<ClassificationTable> OpenTableOrDegrade(const std::string& path,
                                                       TableOptions options,
                                                       std::string* degraded);

}  // namespace gputier

#endif  // GPUTIER_LOADER_CLASSIFY_CLASSIFICATION_TABLE_H_
