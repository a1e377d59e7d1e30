// gputierctl top, the pure part: one row per container from gputierd's
// status answer (and the answer before it, for rates), and the table drawn
// from those rows. No syscalls, no terminal: the command (loader/top_command)
// asks the agent and paints.
#ifndef GPUTIER_LOADER_TOP_TOP_VIEW_H_
#define GPUTIER_LOADER_TOP_TOP_VIEW_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gputier {

struct TopRow {
  std::string container_id;
  std::string name;     // what status names it by: "name" if given, else runtime:id
  std::string verdict;  // "gpu", "cpu", "mixed", "unknown"
  int confidence = 0;   // per mille
  std::string tier;     // "fast", "slow", "mixed", or "-" (not tiered)
  std::string op;       // a move in progress ("promote", ...), or empty
  uint64_t bytes_fast = 0;
  uint64_t bytes_slow = 0;
  // GPU ioctls per second: from the counters between this answer and the
  // one before; the classifier's window rate when there is no earlier answer.
  std::optional<double> gpu_ioctl_rate;
  std::optional<double> gpu_file_share;  // share of opens that were GPU-type files
  // The latest promotion or demotion: which way, and how long before the answer.
  std::string last_move;  // "fast" or "slow", empty if none
  std::optional<int64_t> last_move_ago_ms;
  std::string error;  // the tier manager's last error, if any
};

struct TopView {
  // Header facts; empty or nullopt when the agent does not report them.
  std::string mode;         // "lsm", "tracepoint"
  std::string enforcement;  // "off", "audit", "enforce"
  std::optional<int64_t> uptime_s;
  std::optional<int64_t> pid;
  std::optional<uint64_t> fast_used;
  std::optional<uint64_t> fast_total;
  std::string fast_root, slow_root;
  bool built_in_tiers = false;
  std::string degraded;
  std::vector<TopRow> rows;  // GPU first, then by name
};

// `previous`: the status answer of the last refresh, or nullptr. Fields a
// gputierd does not send are left out, never guessed.
TopView BuildTopView(const nlohmann::json& status, const nlohmann::json* previous);

// "3s", "4m05s", "2h10m", "3d04h".
std::string ShortDuration(int64_t ms);

// The header lines and the table, each line cut to `width` columns (0: no
// limit). Plain ASCII apart from what the agent named (escaped).
std::string FormatTopView(const TopView& view, int width);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TOP_TOP_VIEW_H_
