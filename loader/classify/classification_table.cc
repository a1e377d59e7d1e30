#include "loader/classify/classification_table.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gputier/abi.h"

namespace gputier {
namespace {

// PRAGMA application_id: the project magic, so a foreign SQLite file in the
// state directory is refused instead of misread.
constexpr int32_t kApplicationId = static_cast<int32_t>(GT_ABI_MAGIC);
// STRICT tables need 3.37; Debian 12 ships 3.40.
constexpr int kMinSqliteVersion = 3037000;

constexpr const char* kVerdictNames[] = {"unknown", "cpu", "gpu", "mixed"};
constexpr const char* kSourceNames[] = {"", "rule", "model", "operator"};
static_assert(GT_VERDICT_UNKNOWN == 0 && GT_VERDICT_CPU == 1 && GT_VERDICT_GPU == 2 &&
                  GT_VERDICT_MIXED == 3,
              "kVerdictNames follows enum gt_verdict_kind");
static_assert(GT_SOURCE_NONE == 0 && GT_SOURCE_RULE == 1 && GT_SOURCE_MODEL == 2 &&
                  GT_SOURCE_OPERATOR == 3,
              "kSourceNames follows enum gt_verdict_source");

// Every statement is idempotent: run on each Open, it heals a dropped index,
// view or trigger and leaves existing rows alone. The CHECK constraints
// mirror ValidateRow; STRICT refuses text in number columns, and SQLite
// stores a bound NaN as NULL, which NOT NULL refuses. "< 9e999" refuses +inf.
constexpr char kSchemaSql[] = R"sql(
CREATE TABLE IF NOT EXISTS classifications (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  time_unix_ns INTEGER NOT NULL
    CONSTRAINT time_unix_ns_valid CHECK (time_unix_ns >= 0),
  cgroup_id INTEGER NOT NULL
    CONSTRAINT cgroup_id_valid CHECK (cgroup_id >= 0),
  cgroup_path TEXT NOT NULL DEFAULT '',
  container_id TEXT NOT NULL DEFAULT '',
  gpu_ioctl_rate REAL NOT NULL
    CONSTRAINT gpu_ioctl_rate_valid CHECK (gpu_ioctl_rate >= 0 AND gpu_ioctl_rate < 9e999),
  gpu_opened REAL NOT NULL
    CONSTRAINT gpu_opened_valid CHECK (gpu_opened IN (0.0, 1.0)),
  ext_ratio REAL NOT NULL
    CONSTRAINT ext_ratio_valid CHECK (ext_ratio >= 0 AND ext_ratio <= 1),
  open_rate REAL NOT NULL
    CONSTRAINT open_rate_valid CHECK (open_rate >= 0 AND open_rate < 9e999),
  write_rate REAL NOT NULL
    CONSTRAINT write_rate_valid CHECK (write_rate >= 0 AND write_rate < 9e999),
  evidence INTEGER NOT NULL
    CONSTRAINT evidence_valid CHECK (evidence >= 0),
  verdict TEXT NOT NULL
    CONSTRAINT verdict_valid CHECK (verdict IN ('gpu', 'cpu', 'mixed', 'unknown')),
  rule_verdict TEXT NOT NULL DEFAULT ''
    CONSTRAINT rule_verdict_valid CHECK (rule_verdict IN ('', 'gpu', 'cpu', 'mixed', 'unknown')),
  source TEXT NOT NULL
    CONSTRAINT source_valid CHECK (source IN ('rule', 'model', 'operator')),
  model_version INTEGER NOT NULL DEFAULT 0
    CONSTRAINT model_version_valid CHECK (model_version >= 0),
  confidence_permille INTEGER NOT NULL
    CONSTRAINT confidence_permille_valid CHECK (confidence_permille BETWEEN 0 AND 1000),
  gpu_busy_share REAL NOT NULL DEFAULT 0
    CONSTRAINT gpu_busy_share_valid CHECK (gpu_busy_share >= 0 AND gpu_busy_share < 9e999),
  gpu_context_recent REAL NOT NULL DEFAULT 0
    CONSTRAINT gpu_context_recent_valid CHECK (gpu_context_recent IN (0.0, 1.0)),
  container_name TEXT NOT NULL DEFAULT ''
    CONSTRAINT container_name_valid CHECK (length(container_name) <= 512
                                           AND container_name NOT GLOB '*[^A-Za-z0-9._/-]*')
) STRICT;

CREATE INDEX IF NOT EXISTS classifications_by_cgroup
  ON classifications (cgroup_id, id);
-- Retention walks this to find the oldest agent rows without scanning the
-- operator rows it keeps.
CREATE INDEX IF NOT EXISTS classifications_agent_rows
  ON classifications (id) WHERE source != 'operator';

-- Row counts for retention, kept by triggers so every writer (gputierd,
-- gputierctl, a sqlite3 shell) keeps them right.
CREATE TABLE IF NOT EXISTS classification_counts (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  agent_rows INTEGER NOT NULL,
  operator_rows INTEGER NOT NULL
) STRICT;
INSERT OR IGNORE INTO classification_counts VALUES (1, 0, 0);

CREATE TRIGGER IF NOT EXISTS classifications_count_insert
AFTER INSERT ON classifications BEGIN
  UPDATE classification_counts
     SET agent_rows = agent_rows + (NEW.source != 'operator'),
         operator_rows = operator_rows + (NEW.source = 'operator')
   WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS classifications_count_delete
AFTER DELETE ON classifications BEGIN
  UPDATE classification_counts
     SET agent_rows = agent_rows - (OLD.source != 'operator'),
         operator_rows = operator_rows - (OLD.source = 'operator')
   WHERE id = 1;
END;
-- Decisions are history: correct a verdict by recording a newer row.
CREATE TRIGGER IF NOT EXISTS classifications_append_only
BEFORE UPDATE ON classifications BEGIN
  SELECT RAISE(ABORT, 'classifications are append-only; record a newer row instead');
END;

CREATE VIEW IF NOT EXISTS latest_verdicts AS
  SELECT c.*,
         strftime('%Y-%m-%dT%H:%M:%fZ', c.time_unix_ns / 1e9, 'unixepoch') AS time_utc
    FROM classifications AS c
   WHERE c.id IN (SELECT MAX(id) FROM classifications GROUP BY cgroup_id);
)sql";

// Schema version 1 -> 2: the columns of the GPU use measured outside the
// counters (the CHECK constraints as in kSchemaSql).
constexpr char kUpgradeTo2Sql[] = R"sql(
ALTER TABLE classifications ADD COLUMN gpu_busy_share REAL NOT NULL DEFAULT 0
  CONSTRAINT gpu_busy_share_valid CHECK (gpu_busy_share >= 0 AND gpu_busy_share < 9e999);
ALTER TABLE classifications ADD COLUMN gpu_context_recent REAL NOT NULL DEFAULT 0
  CONSTRAINT gpu_context_recent_valid CHECK (gpu_context_recent IN (0.0, 1.0));
)sql";

// Schema version 2 -> 3: the container's name (namespace/pod/container or
// podman's name), '' in the rows recorded before.
constexpr char kUpgradeTo3Sql[] = R"sql(
ALTER TABLE classifications ADD COLUMN container_name TEXT NOT NULL DEFAULT ''
  CONSTRAINT container_name_valid CHECK (length(container_name) <= 512
                                         AND container_name NOT GLOB '*[^A-Za-z0-9._/-]*');
)sql";

// Every column and the member of ClassificationRow it holds, in the order
// of every SELECT and of the INSERT (id excluded there): the one list of the
// row's fields that reading, writing and comparing rows go by.
using RowMember = std::variant<int64_t ClassificationRow::*, uint64_t ClassificationRow::*,
                               int32_t ClassificationRow::*, double ClassificationRow::*,
                               std::string ClassificationRow::*>;
struct Column {
  const char* name;
  RowMember member;
};
const Column kRowColumns[] = {
    {"id", &ClassificationRow::id},
    {"time_unix_ns", &ClassificationRow::time_unix_ns},
    {"cgroup_id", &ClassificationRow::cgroup_id},
    {"cgroup_path", &ClassificationRow::cgroup_path},
    {"container_id", &ClassificationRow::container_id},
    {"gpu_ioctl_rate", &ClassificationRow::gpu_ioctl_rate},
    {"gpu_opened", &ClassificationRow::gpu_opened},
    {"ext_ratio", &ClassificationRow::ext_ratio},
    {"open_rate", &ClassificationRow::open_rate},
    {"write_rate", &ClassificationRow::write_rate},
    {"evidence", &ClassificationRow::evidence},
    {"verdict", &ClassificationRow::verdict},
    {"rule_verdict", &ClassificationRow::rule_verdict},
    {"source", &ClassificationRow::source},
    {"model_version", &ClassificationRow::model_version},
    {"confidence_permille", &ClassificationRow::confidence_permille},
    {"gpu_busy_share", &ClassificationRow::gpu_busy_share},
    {"gpu_context_recent", &ClassificationRow::gpu_context_recent},
    {"container_name", &ClassificationRow::container_name},
};
constexpr size_t kInsertedColumns = std::size(kRowColumns) - 1;  // all but id

// "id, time_unix_ns, ..." (or without id): the column list of a statement.
std::string ColumnNames(bool with_id) {
  std::vector<std::string> names;
  for (const Column& c : kRowColumns) {
    if (with_id || std::string_view(c.name) != "id") names.push_back(c.name);
  }
  return absl::StrJoin(names, ", ");
}

// "?1, ?2, ...": the INSERT's parameters, one per column but id.
std::string InsertParameters() {
  std::vector<std::string> params;
  for (size_t i = 1; i <= kInsertedColumns; ++i) params.push_back(absl::StrCat("?", i));
  return absl::StrJoin(params, ", ");
}

constexpr char kLabelled[] = "verdict IN ('gpu', 'cpu', 'mixed')";

struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};

// Resets a reused statement (and drops its bindings) when the use ends.
class StmtUse {
 public:
  explicit StmtUse(const Stmt& stmt) : stmt_(stmt.get()) {}
  ~StmtUse() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  StmtUse(const StmtUse&) = delete;
  StmtUse& operator=(const StmtUse&) = delete;
  sqlite3_stmt* get() const { return stmt_; }

 private:
  sqlite3_stmt* stmt_;
};

absl::StatusCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;
    case SQLITE_FULL:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
      return absl::StatusCode::kInvalidArgument;
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return absl::StatusCode::kPermissionDenied;
    case SQLITE_CANTOPEN:
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return absl::StatusCode::kDataLoss;
    default:
      return absl::StatusCode::kInternal;
  }
}

const char* HintFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return "; another process held the lock past busy_timeout, retry";
    case SQLITE_FULL:
      return "; free space on its filesystem";
    case SQLITE_CANTOPEN:
      return "; it must be a regular file (not a symlink) that this user can read and write";
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return "; move the file away (a new table is created) or choose another --state-dir";
    default:
      return "";
  }
}

absl::Status SqliteError(sqlite3* db, int rc, const std::string& path, absl::string_view what) {
  const char* message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  const int code = db != nullptr ? sqlite3_extended_errcode(db) : rc;
  return absl::Status(CodeFor(rc), absl::StrCat("classification table ", path, ": ", what,
                                                " failed: ", message, " (SQLite error ", code,
                                                ")", HintFor(rc)));
}

// Every validation error: one sentence naming the column, the value and the
// cgroup, and what the value must be.
absl::Status Invalid(absl::string_view column, absl::string_view value,
                     const ClassificationRow& row, absl::string_view requirement) {
  return absl::InvalidArgumentError(
      absl::StrFormat("column %s = %s of the row for cgroup %u is invalid; it must be %s", column,
                      value, row.cgroup_id, requirement));
}

absl::Status CheckRange(absl::string_view column, double value, const ClassificationRow& row,
                        double low, double high, absl::string_view requirement) {
  if (std::isfinite(value) && value >= low && value <= high) return absl::OkStatus();
  return Invalid(column, absl::StrFormat("%g", value), row, requirement);
}

absl::Status CheckOneOf(absl::string_view column, absl::string_view value,
                        const ClassificationRow& row,
                        std::initializer_list<absl::string_view> allowed,
                        absl::string_view requirement) {
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return absl::OkStatus();
  return Invalid(column, absl::StrCat("\"", absl::CHexEscape(value), "\""), row, requirement);
}

absl::Status NewerSchemaError(const std::string& path, int64_t version) {
  return absl::FailedPreconditionError(absl::StrCat(
      "classification table ", path, " has schema version ", version, ", newer than the version ",
      kClassificationSchemaVersion,
      " this gputier reads; upgrade gputier, or move the file away to start a new table"));
}

std::string ColumnText(sqlite3_stmt* stmt, int column) {
  const unsigned char* text = sqlite3_column_text(stmt, column);
  if (text == nullptr) return std::string();
  return std::string(reinterpret_cast<const char*>(text),
                     static_cast<size_t>(sqlite3_column_bytes(stmt, column)));
}

ClassificationRow ReadRow(sqlite3_stmt* stmt) {
  ClassificationRow row;
  int column = 0;
  for (const Column& c : kRowColumns) {
    std::visit(
        [&](auto member) {
          using T = std::decay_t<decltype(row.*member)>;
          if constexpr (std::is_same_v<T, std::string>) {
            row.*member = ColumnText(stmt, column);
          } else if constexpr (std::is_same_v<T, double>) {
            row.*member = sqlite3_column_double(stmt, column);
          } else if constexpr (std::is_same_v<T, int32_t>) {
            row.*member = sqlite3_column_int(stmt, column);
          } else {
            row.*member = static_cast<T>(sqlite3_column_int64(stmt, column));
          }
        },
        c.member);
    ++column;
  }
  return row;
}

// Binds every column of `row` but id to the INSERT's parameters ?1, ?2, ...
// (texts are not copied: `row` must outlive the statement's step).
void BindRow(sqlite3_stmt* stmt, const ClassificationRow& row) {
  int param = 0;
  for (const Column& c : kRowColumns) {
    if (std::string_view(c.name) == "id") continue;
    ++param;
    std::visit(
        [&](auto member) {
          using T = std::decay_t<decltype(row.*member)>;
          const T& value = row.*member;
          if constexpr (std::is_same_v<T, std::string>) {
            sqlite3_bind_text(stmt, param, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
          } else if constexpr (std::is_same_v<T, double>) {
            sqlite3_bind_double(stmt, param, value);
          } else if constexpr (std::is_same_v<T, int32_t>) {
            sqlite3_bind_int(stmt, param, value);
          } else {
            sqlite3_bind_int64(stmt, param, static_cast<int64_t>(value));
          }
        },
        c.member);
  }
}

// Creates the file owner-only before SQLite sees it (SQLite gives its -wal
// and -shm files the database file's mode). An existing file is kept as is.
absl::Status CreateOwnerOnly(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string parent =
      slash == std::string::npos ? std::string(".") : slash == 0 ? "/" : path.substr(0, slash);
  struct stat st;
  if (stat(parent.c_str(), &st) != 0) {
    const int err = errno;
    return absl::FailedPreconditionError(absl::StrCat(
        "classification table ", path, ": its directory ", parent, " is unusable: ",
        std::strerror(err), "; create it (mkdir -p -m 0700 ", parent,
        ") or choose another --state-dir"));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("classification table ", path, ": ", parent,
                                                      " is not a directory; choose another --state-dir"));
  }
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd >= 0) {
    close(fd);
    return absl::OkStatus();
  }
  const int err = errno;
  if (err == EEXIST) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat("classification table ", path,
                                                  ": cannot create it: ", std::strerror(err)));
}

}  // namespace

bool ClassificationRow::operator==(const ClassificationRow& o) const {
  for (const Column& c : kRowColumns) {
    const bool same = std::visit([&](auto member) { return this->*member == o.*member; }, c.member);
    if (!same) return false;
  }
  return true;
}

absl::Status ValidateRow(const ClassificationRow& row) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  constexpr uint64_t kMaxInt64 = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  constexpr char kRate[] = "a finite number >= 0";
  if (row.time_unix_ns < 0) {
    return Invalid("time_unix_ns", absl::StrCat(row.time_unix_ns), row, ">= 0");
  }
  if (row.cgroup_id > kMaxInt64) {
    return Invalid("cgroup_id", absl::StrCat(row.cgroup_id), row, "<= INT64_MAX");
  }
  if (row.gpu_opened != 0.0 && row.gpu_opened != 1.0) {
    return Invalid("gpu_opened", absl::StrFormat("%g", row.gpu_opened), row, "0 or 1");
  }
  if (row.gpu_context_recent != 0.0 && row.gpu_context_recent != 1.0) {
    return Invalid("gpu_context_recent", absl::StrFormat("%g", row.gpu_context_recent), row,
                   "0 or 1");
  }
  if (row.evidence > kMaxInt64) {
    return Invalid("evidence", absl::StrCat(row.evidence), row, "<= INT64_MAX");
  }
  if (row.model_version < 0) {
    return Invalid("model_version", absl::StrCat(row.model_version), row, ">= 0 (0 = no model)");
  }
  if (row.confidence_permille < 0 || row.confidence_permille > 1000) {
    return Invalid("confidence_permille", absl::StrCat(row.confidence_permille), row,
                   "within 0..1000");
  }
  const bool name_ok = row.container_name.size() <= 512 &&
                       std::all_of(row.container_name.begin(), row.container_name.end(), [](char c) {
                         return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                                c == '/' || c == '-';
                       });
  if (!name_ok) {
    // The value is not shown: it is what failed the check.
    return Invalid("container_name", absl::StrCat("(", row.container_name.size(), " bytes)"), row,
                   "at most 512 bytes of A-Z a-z 0-9 . _ / -");
  }
  for (absl::Status s : {
           CheckRange("gpu_ioctl_rate", row.gpu_ioctl_rate, row, 0, kInf, kRate),
           CheckRange("ext_ratio", row.ext_ratio, row, 0, 1, "a number within [0, 1]"),
           CheckRange("open_rate", row.open_rate, row, 0, kInf, kRate),
           CheckRange("write_rate", row.write_rate, row, 0, kInf, kRate),
           CheckRange("gpu_busy_share", row.gpu_busy_share, row, 0, kInf, kRate),
           CheckOneOf("verdict", row.verdict, row, {"gpu", "cpu", "mixed", "unknown"},
                      "one of gpu, cpu, mixed, unknown"),
           CheckOneOf("rule_verdict", row.rule_verdict, row, {"", "gpu", "cpu", "mixed", "unknown"},
                      "one of gpu, cpu, mixed, unknown, or empty (operator rows)"),
           CheckOneOf("source", row.source, row, {"rule", "model", "operator"},
                      "one of rule, model, operator"),
       }) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::string_view VerdictKindName(uint32_t kind) {
  return kind < std::size(kVerdictNames) ? kVerdictNames[kind] : kVerdictNames[GT_VERDICT_UNKNOWN];
}

std::optional<uint32_t> VerdictKindFromName(absl::string_view name) {
  for (uint32_t i = 0; i < std::size(kVerdictNames); ++i) {
    if (name == kVerdictNames[i]) return i;
  }
  return std::nullopt;
}

absl::string_view VerdictSourceName(uint32_t source) {
  return source < std::size(kSourceNames) ? kSourceNames[source] : "";
}

std::optional<uint32_t> VerdictSourceFromName(absl::string_view name) {
  for (uint32_t i = GT_SOURCE_RULE; i < std::size(kSourceNames); ++i) {
    if (name == kSourceNames[i]) return i;
  }
  return std::nullopt;
}

// Declared first, the handle is closed last, after every statement is
// finalized.
struct ClassificationTable::Db {
  std::unique_ptr<sqlite3, DbCloser> handle;
  std::string path;
  TableOptions options;
  Stmt begin, commit, rollback;
  Stmt insert, counts, prune_agent, prune_operator;
  Stmt labelled, count_since, max_id, latest_per_cgroup, latest_for, history;

  sqlite3* db() const { return handle.get(); }

  absl::Status Error(int rc, absl::string_view what) const {
    return SqliteError(db(), rc, path, what);
  }

  absl::Status Exec(const char* sql, absl::string_view what) {
    const int rc = sqlite3_exec(db(), sql, nullptr, nullptr, nullptr);
    return rc == SQLITE_OK ? absl::OkStatus() : Error(rc, what);
  }

  absl::Status Prepare(Stmt& stmt, const std::string& sql) {
    sqlite3_stmt* raw = nullptr;
    const int rc = sqlite3_prepare_v3(db(), sql.c_str(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    if (rc != SQLITE_OK) return Error(rc, absl::StrCat("preparing \"", sql, "\""));
    stmt.reset(raw);
    return absl::OkStatus();
  }

  // Runs a statement that returns no rows.
  absl::Status Run(const Stmt& stmt, absl::string_view what) {
    StmtUse use(stmt);
    const int rc = sqlite3_step(use.get());
    return rc == SQLITE_DONE ? absl::OkStatus() : Error(rc, what);
  }

  // Runs a statement that returns one integer (column 0 of its first row).
  absl::StatusOr<int64_t> Integer(const char* sql, absl::string_view what) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db(), sql, -1, &raw, nullptr);
    if (rc != SQLITE_OK) return Error(rc, what);
    Stmt stmt(raw);
    rc = sqlite3_step(raw);
    if (rc == SQLITE_ROW) return sqlite3_column_int64(raw, 0);
    if (rc == SQLITE_DONE) return 0;
    return Error(rc, what);
  }

  absl::StatusOr<std::vector<ClassificationRow>> Rows(StmtUse& use, absl::string_view what) {
    std::vector<ClassificationRow> rows;
    for (;;) {
      const int rc = sqlite3_step(use.get());
      if (rc == SQLITE_DONE) return rows;
      if (rc != SQLITE_ROW) return Error(rc, what);
      rows.push_back(ReadRow(use.get()));
    }
  }

  absl::Status Begin() { return Run(begin, "starting a write transaction"); }
  absl::Status Commit() { return Run(commit, "committing"); }
  // Leaves an open transaction (if any); the error that caused it is what
  // the caller reports.
  void Rollback() {
    if (sqlite3_get_autocommit(db())) return;
    if (rollback != nullptr) {
      Run(rollback, "rolling back").IgnoreError();
    } else {
      Exec("ROLLBACK", "rolling back").IgnoreError();
    }
  }

  // Inside a transaction.
  absl::Status Insert(const ClassificationRow& row) {
    StmtUse use(insert);
    sqlite3_stmt* s = use.get();
    BindRow(s, row);
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) return absl::OkStatus();
    return Error(rc, absl::StrCat("recording the row for cgroup ", row.cgroup_id));
  }

  // Inside a transaction: deletes the oldest agent rows, then (only if the
  // operator rows alone are too many) the oldest operator rows.
  absl::Status Prune() {
    int64_t agent_rows = 0;
    int64_t operator_rows = 0;
    {
      StmtUse use(counts);
      const int rc = sqlite3_step(use.get());
      if (rc != SQLITE_ROW) return Error(rc, "reading the row counts");
      agent_rows = sqlite3_column_int64(use.get(), 0);
      operator_rows = sqlite3_column_int64(use.get(), 1);
    }
    int64_t excess = agent_rows + operator_rows - options.max_rows;
    if (excess <= 0) return absl::OkStatus();
    const int64_t from_agent = std::min(excess, agent_rows);
    if (from_agent > 0) {
      StmtUse use(prune_agent);
      sqlite3_bind_int64(use.get(), 1, from_agent);
      const int rc = sqlite3_step(use.get());
      if (rc != SQLITE_DONE) return Error(rc, "deleting the oldest agent rows (retention)");
      excess -= from_agent;
    }
    if (excess > 0) {
      StmtUse use(prune_operator);
      sqlite3_bind_int64(use.get(), 1, excess);
      const int rc = sqlite3_step(use.get());
      if (rc != SQLITE_DONE) return Error(rc, "deleting the oldest operator rows (retention)");
    }
    return absl::OkStatus();
  }

  // Creates or checks the schema, in one transaction so that two processes
  // opening a new file at once cannot both create it.
  absl::Status EnsureSchema() {
    if (absl::Status s = Exec("BEGIN IMMEDIATE", "starting the schema transaction"); !s.ok()) {
      return s;
    }
    absl::Status status = [&]() -> absl::Status {
      absl::StatusOr<int64_t> version = Integer("PRAGMA user_version", "reading user_version");
      if (!version.ok()) return version.status();
      absl::StatusOr<int64_t> app = Integer("PRAGMA application_id", "reading application_id");
      if (!app.ok()) return app.status();
      if (*version > kClassificationSchemaVersion) return NewerSchemaError(path, *version);
      if (*app != 0 && *app != kApplicationId) {
        return absl::FailedPreconditionError(absl::StrCat(
            "classification table ", path, " belongs to another application (application_id ",
            *app, "); move it away or choose another --state-dir"));
      }
      if (*version == 0) {
        absl::StatusOr<int64_t> objects = Integer(
            "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
            "listing the existing tables");
        if (!objects.ok()) return objects.status();
        if (*objects != 0) {
          return absl::FailedPreconditionError(absl::StrCat(
              "classification table ", path,
              " is a SQLite file without a gputier schema version but with tables of its own; "
              "move it away or choose another --state-dir"));
        }
      }
      if (*version == 1 || *version == 2) {
        // CREATE TABLE IF NOT EXISTS below keeps the older table: add the
        // columns of each later version first.
        if (*version == 1) {
          if (absl::Status s = Exec(kUpgradeTo2Sql, "upgrading the schema to version 2"); !s.ok()) {
            return s;
          }
        }
        if (absl::Status s = Exec(kUpgradeTo3Sql, "upgrading the schema to version 3"); !s.ok()) {
          return s;
        }
        const std::string stamp = absl::StrCat("PRAGMA user_version = ", kClassificationSchemaVersion);
        if (absl::Status s = Exec(stamp.c_str(), "setting the schema version"); !s.ok()) return s;
      }
      if (absl::Status s = Exec(kSchemaSql, "creating the schema"); !s.ok()) return s;
      if (*version == 0) {
        const std::string stamp =
            absl::StrCat("PRAGMA application_id = ", kApplicationId,
                         "; PRAGMA user_version = ", kClassificationSchemaVersion);
        if (absl::Status s = Exec(stamp.c_str(), "setting the schema version"); !s.ok()) return s;
      }
      // Heals counts that a writer without the triggers could have skewed.
      return Exec(
          "UPDATE classification_counts SET"
          " agent_rows = (SELECT count(*) FROM classifications WHERE source != 'operator'),"
          " operator_rows = (SELECT count(*) FROM classifications WHERE source = 'operator')"
          " WHERE id = 1",
          "counting the rows");
    }();
    if (status.ok()) status = Exec("COMMIT", "committing the schema");
    if (!status.ok()) Rollback();
    return status;
  }

  absl::Status PrepareAll() {
    const std::string select = absl::StrCat("SELECT ", ColumnNames(/*with_id=*/true), " FROM classifications");
    const std::pair<Stmt*, std::string> statements[] = {
        {&begin, "BEGIN IMMEDIATE"},
        {&commit, "COMMIT"},
        {&rollback, "ROLLBACK"},
        {&insert,
         absl::StrCat("INSERT INTO classifications (", ColumnNames(/*with_id=*/false), ") VALUES (",
                      InsertParameters(), ")")},
        {&counts, "SELECT agent_rows, operator_rows FROM classification_counts WHERE id = 1"},
        {&prune_agent,
         "DELETE FROM classifications WHERE id IN (SELECT id FROM classifications"
         " WHERE source != 'operator' ORDER BY id LIMIT ?1)"},
        {&prune_operator,
         "DELETE FROM classifications WHERE id IN (SELECT id FROM classifications"
         " WHERE source = 'operator' ORDER BY id LIMIT ?1)"},
        {&labelled, absl::StrCat("SELECT * FROM (", select, " WHERE ", kLabelled,
                                 " ORDER BY id DESC LIMIT ?1) ORDER BY id")},
        {&count_since, absl::StrCat("SELECT count(*) FROM classifications WHERE id > ?1 AND ",
                                    kLabelled)},
        {&max_id, "SELECT COALESCE(MAX(id), 0) FROM classifications"},
        {&latest_per_cgroup,
         absl::StrCat(select,
                      " WHERE id IN (SELECT MAX(id) FROM classifications GROUP BY cgroup_id)"
                      " ORDER BY cgroup_id")},
        {&latest_for, absl::StrCat(select, " WHERE cgroup_id = ?1 ORDER BY id DESC LIMIT 1")},
        {&history, absl::StrCat(select, " WHERE cgroup_id = ?1 ORDER BY id DESC LIMIT ?2")},
    };
    for (const auto& [stmt, sql] : statements) {
      if (absl::Status s = Prepare(*stmt, sql); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
};

absl::StatusOr<ClassificationTable> ClassificationTable::Open(const std::string& path,
                                                              TableOptions options) {
  if (path.empty() || path == ":memory:") {
    return absl::InvalidArgumentError(
        absl::StrCat("classification table path \"", path, "\" is not a file path"));
  }
  return OpenAt(path, options);
}

absl::StatusOr<ClassificationTable> ClassificationTable::OpenInMemory(TableOptions options) {
  return OpenAt(":memory:", options);
}

bool ClassificationTable::in_memory() const { return db_ != nullptr && db_->path == ":memory:"; }

absl::StatusOr<ClassificationTable> ClassificationTable::OpenAt(const std::string& path,
                                                                TableOptions options) {
  const bool memory = path == ":memory:";
  if (options.max_rows <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("classification table ", path, ": max_rows ",
                                                   options.max_rows, " must be > 0"));
  }
  if (sqlite3_libversion_number() < kMinSqliteVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("classification table ", path, ": SQLite ", sqlite3_libversion(),
                     " is too old (STRICT tables need 3.37 or newer); upgrade libsqlite3"));
  }
  if (!memory) {
    if (absl::Status s = CreateOwnerOnly(path); !s.ok()) return s;
  }

  auto db = std::make_unique<Db>();
  db->path = path;
  db->options = options;
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &raw,
      memory ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_MEMORY | SQLITE_OPEN_EXRESCODE
             : SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_EXRESCODE,
      nullptr);
  db->handle.reset(raw);
  if (rc != SQLITE_OK) return db->Error(rc, "opening");

  sqlite3_db_config(raw, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(raw, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  sqlite3_busy_timeout(raw, std::max(0, options.busy_timeout_ms));

  // The first read: a file that is not SQLite fails here, and a newer schema
  // is refused before anything (the journal mode included) is changed.
  absl::StatusOr<int64_t> version = db->Integer("PRAGMA user_version", "reading user_version");
  if (!version.ok()) return version.status();
  if (*version > kClassificationSchemaVersion) return NewerSchemaError(path, *version);

  if (!memory) {
    sqlite3_stmt* mode_raw = nullptr;
    int mrc = sqlite3_prepare_v2(raw, "PRAGMA journal_mode = WAL", -1, &mode_raw, nullptr);
    if (mrc != SQLITE_OK) return db->Error(mrc, "switching to WAL");
    Stmt mode(mode_raw);
    mrc = sqlite3_step(mode_raw);
    if (mrc != SQLITE_ROW) return db->Error(mrc, "switching to WAL");
    const std::string got = ColumnText(mode_raw, 0);
    if (got != "wal") {
      return absl::FailedPreconditionError(absl::StrCat(
          "classification table ", path, ": its filesystem does not support WAL (journal mode is ",
          got, "); choose a --state-dir on a local filesystem"));
    }
  }
  if (absl::Status s = db->Exec("PRAGMA synchronous = NORMAL", "setting synchronous"); !s.ok()) {
    return s;
  }
  if (absl::Status s = db->EnsureSchema(); !s.ok()) return s;
  if (absl::Status s = db->PrepareAll(); !s.ok()) return s;
  // A smaller max_rows than last time applies at once.
  if (absl::Status s = db->Begin(); !s.ok()) return s;
  absl::Status pruned = db->Prune();
  if (pruned.ok()) pruned = db->Commit();
  if (!pruned.ok()) {
    db->Rollback();
    return pruned;
  }
  return ClassificationTable(std::move(db));
}

ClassificationTable::ClassificationTable(std::unique_ptr<Db> db) : db_(std::move(db)) {}
ClassificationTable::ClassificationTable(ClassificationTable&&) noexcept = default;
ClassificationTable& ClassificationTable::operator=(ClassificationTable&&) noexcept = default;
ClassificationTable::~ClassificationTable() = default;

const std::string& ClassificationTable::path() const {
  static const std::string kMovedFrom;
  return db_ != nullptr ? db_->path : kMovedFrom;
}

absl::Status ClassificationTable::Usable() const {
  if (db_ != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError("classification table used after it was moved from");
}

absl::Status ClassificationTable::Record(const ClassificationRow& row) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  if (absl::Status s = ValidateRow(row); !s.ok()) return s;
  if (absl::Status s = db_->Begin(); !s.ok()) return s;
  absl::Status status = db_->Insert(row);
  if (status.ok()) status = db_->Prune();
  if (status.ok()) status = db_->Commit();
  if (!status.ok()) db_->Rollback();
  return status;
}

absl::StatusOr<BatchResult> ClassificationTable::RecordBatch(
    const std::vector<ClassificationRow>& rows) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  BatchResult result;
  std::vector<const ClassificationRow*> valid;
  valid.reserve(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    absl::Status s = ValidateRow(rows[i]);
    if (s.ok()) {
      valid.push_back(&rows[i]);
    } else {
      result.rejected.push_back({i, std::move(s)});
    }
  }
  if (valid.empty()) return result;
  if (absl::Status s = db_->Begin(); !s.ok()) return s;
  absl::Status status;
  for (const ClassificationRow* row : valid) {
    status = db_->Insert(*row);
    if (!status.ok()) break;
  }
  if (status.ok()) status = db_->Prune();
  if (status.ok()) status = db_->Commit();
  if (!status.ok()) {
    db_->Rollback();
    return status;
  }
  result.recorded = static_cast<int64_t>(valid.size());
  return result;
}

absl::StatusOr<std::vector<ClassificationRow>> ClassificationTable::LabelledRows() {
  if (absl::Status s = Usable(); !s.ok()) return s;
  StmtUse use(db_->labelled);
  sqlite3_bind_int64(use.get(), 1, db_->options.max_rows);
  return db_->Rows(use, "reading the labelled rows");
}

absl::StatusOr<int64_t> ClassificationTable::CountLabelledSince(int64_t row_id) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  StmtUse use(db_->count_since);
  sqlite3_bind_int64(use.get(), 1, row_id);
  const int rc = sqlite3_step(use.get());
  if (rc != SQLITE_ROW) return db_->Error(rc, "counting the labelled rows");
  return sqlite3_column_int64(use.get(), 0);
}

absl::StatusOr<int64_t> ClassificationTable::MaxId() {
  if (absl::Status s = Usable(); !s.ok()) return s;
  StmtUse use(db_->max_id);
  const int rc = sqlite3_step(use.get());
  if (rc != SQLITE_ROW) return db_->Error(rc, "reading the newest id");
  return sqlite3_column_int64(use.get(), 0);
}

absl::StatusOr<std::vector<ClassificationRow>> ClassificationTable::LatestPerCgroup() {
  if (absl::Status s = Usable(); !s.ok()) return s;
  StmtUse use(db_->latest_per_cgroup);
  return db_->Rows(use, "reading the latest row of each cgroup");
}

absl::StatusOr<std::optional<ClassificationRow>> ClassificationTable::LatestFor(
    uint64_t cgroup_id) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  StmtUse use(db_->latest_for);
  sqlite3_bind_int64(use.get(), 1, static_cast<int64_t>(cgroup_id));
  absl::StatusOr<std::vector<ClassificationRow>> rows =
      db_->Rows(use, absl::StrCat("reading the latest row of cgroup ", cgroup_id));
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::optional<ClassificationRow>();
  return std::optional<ClassificationRow>(std::move(rows->front()));
}

absl::StatusOr<std::vector<ClassificationRow>> ClassificationTable::History(uint64_t cgroup_id,
                                                                             int limit) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  if (limit <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("history of cgroup ", cgroup_id, ": limit ", limit, " must be > 0"));
  }
  StmtUse use(db_->history);
  sqlite3_bind_int64(use.get(), 1, static_cast<int64_t>(cgroup_id));
  sqlite3_bind_int(use.get(), 2, limit);
  return db_->Rows(use, absl::StrCat("reading the history of cgroup ", cgroup_id));
}

namespace {

// Moves a table that is not SQLite or is corrupt (and its -wal and -shm)
// aside, to <path>.corrupt-<unix seconds>; returns where it went.
absl::StatusOr<std::string> MoveAside(const std::string& path) {
  const std::string aside = absl::StrCat(path, ".corrupt-", static_cast<int64_t>(time(nullptr)));
  if (rename(path.c_str(), aside.c_str()) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("moving ", path, " to ", aside));
  }
  for (const char* suffix : {"-wal", "-shm"}) {
    const std::string side = path + suffix;
    (void)rename(side.c_str(), (aside + suffix).c_str());  // absent after a clean close
  }
  return aside;
}

}  // namespace

absl::StatusOr<ClassificationTable> OpenTableOrDegrade(const std::string& path,
                                                       TableOptions options,
                                                       std::string* degraded) {
  degraded->clear();
  absl::StatusOr<ClassificationTable> table = ClassificationTable::Open(path, options);
  if (table.ok()) return table;
  std::string why(table.status().message());
  if (table.status().code() == absl::StatusCode::kDataLoss) {
    absl::StatusOr<std::string> aside = MoveAside(path);
    if (aside.ok()) {
      table = ClassificationTable::Open(path, options);
      if (table.ok()) {
        *degraded = absl::StrCat("classification table ", path, " was not a usable table (", why,
                                 "); it was moved to ", *aside,
                                 " and a new, empty table was created: the model retrains from new rows");
        return table;
      }
      why = std::string(table.status().message());
    } else {
      why = absl::StrCat(why, "; ", aside.status().message());
    }
  }
  absl::StatusOr<ClassificationTable> memory = ClassificationTable::OpenInMemory(options);
  if (!memory.ok()) {
    return absl::Status(memory.status().code(),
                        absl::StrCat(why, "; and a table in memory failed too: ", memory.status().message()));
  }
  *degraded = absl::StrCat(why, ". gputierd runs on with the table in memory only: verdicts, training "
                                "and tiering go on, the rows are lost at stop; fix the file or the "
                                "filesystem and restart gputierd to keep them");
  return memory;
}

}  // namespace gputier
