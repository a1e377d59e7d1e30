#include "loader/top/top_view.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "loader/base/human_bytes.h"
#include "loader/base/utf8.h"

namespace gputier {
namespace {

// Readers that take whatever the agent sent: a missing or mistyped field is
// "not reported", never an exception.
const nlohmann::json& Field(const nlohmann::json& j, const char* key) {
  static const nlohmann::json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

std::string Text(const nlohmann::json& j, const char* key, const std::string& otherwise = "") {
  const nlohmann::json& v = Field(j, key);
  return v.is_string() ? v.get<std::string>() : otherwise;
}

std::optional<double> Number(const nlohmann::json& j, const char* key) {
  const nlohmann::json& v = Field(j, key);
  if (!v.is_number()) return std::nullopt;
  return v.get<double>();
}

std::optional<uint64_t> Count(const nlohmann::json& j, const char* key) {
  const nlohmann::json& v = Field(j, key);
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  return std::nullopt;
}

const nlohmann::json& Array(const nlohmann::json& j, const char* key) {
  static const nlohmann::json kEmpty = nlohmann::json::array();
  const nlohmann::json& v = Field(j, key);
  return v.is_array() ? v : kEmpty;
}

// The cgroup rows of a status answer that belong to containers, by id.
absl::flat_hash_map<std::string, const nlohmann::json*> ContainerCgroups(const nlohmann::json& status) {
  absl::flat_hash_map<std::string, const nlohmann::json*> out;
  for (const nlohmann::json& row : Array(status, "cgroups")) {
    const std::string id = Text(row, "container_id");
    if (!id.empty()) out[id] = &row;
  }
  return out;
}

// GPU ioctls per second between two readings of a cgroup's counters. The
// span is the time between the last events the two readings saw, so a
// refresh that lands between two agent ticks neither halves nor doubles it.
std::optional<double> IoctlRateBetween(const nlohmann::json& now_row, const nlohmann::json& before_row,
                                       const nlohmann::json& now_status, const nlohmann::json& before_status) {
  const nlohmann::json& now_c = Field(now_row, "counters");
  const nlohmann::json& before_c = Field(before_row, "counters");
  const std::optional<uint64_t> n = Count(now_c, "gpu_ioctls"), b = Count(before_c, "gpu_ioctls");
  if (!n || !b || *n < *b) return std::nullopt;  // not reported, or counters restarted
  if (*n == *b) return 0.0;
  const std::optional<uint64_t> seen_n = Count(now_c, "last_seen_ns"), seen_b = Count(before_c, "last_seen_ns");
  if (seen_n && seen_b && *seen_n > *seen_b) return (*n - *b) * 1e9 / static_cast<double>(*seen_n - *seen_b);
  const std::optional<double> t_n = Number(Field(now_status, "agent"), "now_unix_ms");
  const std::optional<double> t_b = Number(Field(before_status, "agent"), "now_unix_ms");
  if (t_n && t_b && *t_n > *t_b) return (*n - *b) * 1000.0 / (*t_n - *t_b);
  return std::nullopt;
}

int VerdictRank(const std::string& verdict) {
  if (verdict == "gpu") return 0;
  if (verdict == "mixed") return 1;
  if (verdict == "cpu") return 2;
  return 3;
}

std::string Cut(std::string line, int width) {
  if (width <= 0 || line.size() <= static_cast<size_t>(width)) return line;
  size_t end = static_cast<size_t>(width);
  while (end > 0 && (static_cast<unsigned char>(line[end]) & 0xC0) == 0x80) --end;  // whole characters
  line.resize(end);
  return line;
}

}  // namespace

TopView BuildTopView(const nlohmann::json& status, const nlohmann::json* previous) {
  TopView view;
  const nlohmann::json& agent = Field(status, "agent");
  view.mode = Text(agent, "mode");
  view.enforcement = Text(agent, "enforcement", Text(Field(status, "enforcement"), "mode"));
  if (std::optional<double> up = Number(agent, "uptime_s")) view.uptime_s = static_cast<int64_t>(*up);
  if (std::optional<double> pid = Number(agent, "pid")) view.pid = static_cast<int64_t>(*pid);
  view.degraded = Text(status, "degraded");
  const nlohmann::json& tiering = Field(status, "tiering");
  const nlohmann::json& tiers = Field(tiering, "tiers");
  view.fast_used = Count(tiers, "fast_used");
  view.fast_total = Count(tiers, "fast_total");
  view.fast_root = Text(tiers, "fast_root");
  view.slow_root = Text(tiers, "slow_root");
  view.built_in_tiers = Field(tiers, "built_in_default").is_boolean() && Field(tiers, "built_in_default").get<bool>();
  const std::optional<double> now_ms = Number(agent, "now_unix_ms");

  absl::flat_hash_map<std::string, const nlohmann::json*> before;
  if (previous != nullptr) before = ContainerCgroups(*previous);
  absl::flat_hash_map<std::string, size_t> index;  // container id -> row
  for (const nlohmann::json& c : Array(status, "cgroups")) {
    const std::string id = Text(c, "container_id");
    if (id.empty() || index.contains(id)) continue;
    TopRow row;
    row.container_id = id;
    row.name = Text(c, "name");
    if (row.name.empty()) row.name = absl::StrCat(Text(c, "runtime", "?"), ":", id.substr(0, 12));
    row.verdict = Text(c, "verdict", "unknown");
    row.confidence = static_cast<int>(Number(c, "confidence").value_or(0));
    row.tier = "-";
    const nlohmann::json& features = Field(c, "features");
    if (auto it = before.find(id); it != before.end()) {
      row.gpu_ioctl_rate = IoctlRateBetween(c, *it->second, status, *previous);
    }
    if (!row.gpu_ioctl_rate) row.gpu_ioctl_rate = Number(features, "gpu_ioctl_rate");
    row.gpu_file_share = Number(features, "ext_ratio");
    index[id] = view.rows.size();
    view.rows.push_back(std::move(row));
  }
  for (const nlohmann::json& t : Array(tiering, "containers")) {
    const std::string id = Text(t, "container_id");
    if (id.empty()) continue;
    auto it = index.find(id);
    if (it == index.end()) {  // tiered, but its cgroup has no verdict row (yet, or any more)
      TopRow row;
      row.container_id = id;
      row.name = absl::StrCat("?:", id.substr(0, 12));
      row.verdict = Text(t, "verdict", "unknown");
      it = index.emplace(id, view.rows.size()).first;
      view.rows.push_back(std::move(row));
    }
    TopRow& row = view.rows[it->second];
    row.tier = Text(t, "tier", "-");
    if (const std::string op = Text(t, "op"); op != "none") row.op = op;
    row.bytes_fast = Count(t, "bytes_fast").value_or(0);
    row.bytes_slow = Count(t, "bytes_slow").value_or(0);
    row.error = Text(t, "last_error");
    const std::optional<double> promoted = Number(t, "last_promotion_unix_ms");
    const std::optional<double> demoted = Number(t, "last_demotion_unix_ms");
    if (promoted || demoted) {
      const bool fast = promoted && (!demoted || *promoted >= *demoted);
      row.last_move = fast ? "fast" : "slow";
      if (now_ms) row.last_move_ago_ms = std::max<int64_t>(0, static_cast<int64_t>(*now_ms - (fast ? *promoted : *demoted)));
    }
  }
  std::stable_sort(view.rows.begin(), view.rows.end(), [](const TopRow& a, const TopRow& b) {
    if (VerdictRank(a.verdict) != VerdictRank(b.verdict)) return VerdictRank(a.verdict) < VerdictRank(b.verdict);
    return a.name < b.name;
  });
  return view;
}

std::string ShortDuration(int64_t ms) {
  const int64_t s = std::max<int64_t>(0, ms) / 1000;
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  if (s < 86400) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  return absl::StrFormat("%dd%02dh", s / 86400, (s % 86400) / 3600);
}

std::string FormatTopView(const TopView& view, int width) {
  std::vector<std::string> lines;
  std::string head = "gputierd";
  if (view.pid) absl::StrAppend(&head, " pid ", *view.pid);
  if (view.uptime_s) absl::StrAppend(&head, ", up ", ShortDuration(*view.uptime_s * 1000));
  absl::StrAppend(&head, " | mode ", view.mode.empty() ? "?" : view.mode, " | enforcement ",
                  view.enforcement.empty() ? "?" : view.enforcement, " | fast tier ");
  if (view.fast_used && view.fast_total) {
    absl::StrAppend(&head, HumanBytes(*view.fast_used), " of ", HumanBytes(*view.fast_total), " used");
  } else {
    absl::StrAppend(&head, "usage unknown");
  }
  lines.push_back(head);
  if (!view.fast_root.empty()) {
    lines.push_back(absl::StrCat("tiers: fast ", EscapeControlAndInvalid(view.fast_root), ", slow ",
                                 EscapeControlAndInvalid(view.slow_root),
                                 view.built_in_tiers ? " (built-in default, both on the local disk)" : ""));
  }
  if (!view.degraded.empty()) lines.push_back(absl::StrCat("DEGRADED: ", EscapeControlAndInvalid(view.degraded)));
  lines.push_back(absl::StrFormat("%-24s %-7s %5s %-6s %10s %10s %9s %9s  %s", "CONTAINER", "VERDICT", "CONF",
                                  "TIER", "FAST", "SLOW", "IOCTL/s", "GPU_FILES", "LAST_MOVE"));
  for (const TopRow& r : view.rows) {
    std::string move = "-";
    if (!r.last_move.empty()) {
      move = absl::StrCat("->", r.last_move, r.last_move_ago_ms ? absl::StrCat(" ", ShortDuration(*r.last_move_ago_ms), " ago") : "");
    }
    if (!r.op.empty()) absl::StrAppend(&move, " (", r.op, " in progress)");
    lines.push_back(absl::StrFormat(
        "%-24s %-7s %5s %-6s %10s %10s %9s %9s  %s", EscapeControlAndInvalid(r.name).substr(0, 24), r.verdict,
        absl::StrCat(r.confidence / 10, "%"), r.tier, r.tier == "-" ? "-" : HumanBytes(r.bytes_fast),
        r.tier == "-" ? "-" : HumanBytes(r.bytes_slow),
        r.gpu_ioctl_rate ? absl::StrFormat("%.1f", *r.gpu_ioctl_rate) : "-",
        r.gpu_file_share ? absl::StrFormat("%.0f%%", *r.gpu_file_share * 100) : "-", move));
    if (!r.error.empty()) lines.push_back(absl::StrCat("  ", EscapeControlAndInvalid(r.error)));
  }
  if (view.rows.empty()) lines.push_back("no containers seen yet");
  std::string out;
  for (const std::string& line : lines) absl::StrAppend(&out, Cut(line, width), "\n");
  return out;
}

}  // namespace gputier
