#include "loader/report.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "loader/cgroup/cgroup_resolver.h"
#include "loader/base/utf8.h"

namespace gputier {

std::vector<CgroupRow> BuildRows(const CgroupCounters& counters, const CgroupResolver& resolver) {
  absl::flat_hash_set<std::string> runc_ids = CgroupResolver::RuncIds();
  std::vector<CgroupRow> rows;
  rows.reserve(counters.size());
  for (const auto& [id, stats] : counters) {
    CgroupRow row;
    row.cgroup_id = id;
    row.stats = stats;
    if (absl::StatusOr<std::string> path = resolver.PathOf(id); path.ok()) {
      row.cgroup_path = *path;
      row.container = IdentifyContainer(*path, runc_ids);
    }
    rows.push_back(std::move(row));
  }
  std::sort(rows.begin(), rows.end(),
            [](const CgroupRow& a, const CgroupRow& b) { return a.cgroup_id < b.cgroup_id; });
  return rows;
}

std::string ShownContainer(const CgroupRow& r) {
  if (!r.container) return "";
  return r.name.empty() ? r.container->container_id.substr(0, 12) : r.name;
}

nlohmann::json RowsToJson(const std::vector<CgroupRow>& rows, const ClassNames& names) {
  nlohmann::json out = nlohmann::json::array();
  for (const CgroupRow& r : rows) {
    nlohmann::json o;
    o["cgroup_id"] = r.cgroup_id;
    o["cgroup_path"] = r.cgroup_path ? nlohmann::json(*r.cgroup_path) : nlohmann::json(nullptr);
    o["container_id"] = r.container ? nlohmann::json(r.container->container_id) : nlohmann::json(nullptr);
    o["name"] = r.container ? nlohmann::json(ShownContainer(r)) : nlohmann::json(nullptr);
    o["runtime"] = r.container ? nlohmann::json(r.container->runtime) : nlohmann::json(nullptr);
    o["pod_uid"] = r.container && !r.container->pod_uid.empty() ? nlohmann::json(r.container->pod_uid)
                                                                 : nlohmann::json(nullptr);
    o["qos"] = r.container && !r.container->qos.empty() ? nlohmann::json(r.container->qos)
                                                         : nlohmann::json(nullptr);
    o["opens_total"] = r.stats.opens_total;
    o["opens_noext"] = r.stats.opens_noext;
    nlohmann::json by_class = nlohmann::json::object();
    for (uint32_t c = 0; c < GT_CLASS_MAX; ++c) {
      if (!names[c].empty()) by_class[names[c]] = r.stats.opens_by_class[c];
    }
    o["opens_by_class"] = by_class;
    o["gpu_opens"] = r.stats.gpu_opens;
    o["gpu_ioctls"] = r.stats.gpu_ioctls;
    o["bytes_written"] = r.stats.bytes_written;
    o["writes"] = r.stats.writes;
    o["first_seen_ns"] = r.stats.first_seen_ns;
    o["last_seen_ns"] = r.stats.last_seen_ns;
    o["gpu_first_ns"] = r.stats.gpu_first_ns ? nlohmann::json(r.stats.gpu_first_ns) : nlohmann::json(nullptr);
    out.push_back(std::move(o));
  }
  return out;
}

std::string RowsToTable(const std::vector<CgroupRow>& rows, const ClassNames& names) {
  std::string out = absl::StrFormat("%-10s %-22s %8s", "CGROUP_ID", "CONTAINER", "OPENS");
  for (uint32_t c = 1; c < GT_CLASS_MAX; ++c) {
    if (!names[c].empty()) absl::StrAppendFormat(&out, " %8s", absl::AsciiStrToUpper(names[c]).substr(0, 8));
  }
  absl::StrAppendFormat(&out, " %8s %8s %8s %9s %10s  %s\n", "OTHER", "NOEXT", "GPU_OPEN", "GPU_IOCTL",
                        "WRITTEN", "CGROUP");
  for (const CgroupRow& r : rows) {
    std::string container = "-";
    if (r.container) {
      container = r.name.empty() ? absl::StrCat(r.container->runtime, ":", r.container->container_id.substr(0, 12))
                                 : EscapeControlAndInvalid(r.name);
    }
    absl::StrAppendFormat(&out, "%-10d %-22s %8d", r.cgroup_id, container, r.stats.opens_total);
    for (uint32_t c = 1; c < GT_CLASS_MAX; ++c) {
      if (!names[c].empty()) absl::StrAppendFormat(&out, " %8d", r.stats.opens_by_class[c]);
    }
    absl::StrAppendFormat(&out, " %8d %8d %8d %9d %10s  %s\n", r.stats.opens_by_class[GT_CLASS_OTHER],
                          r.stats.opens_noext, r.stats.gpu_opens, r.stats.gpu_ioctls,
                          HumanBytes(r.stats.bytes_written),
                          EscapeControlAndInvalid(r.cgroup_path.value_or("(removed)")));
  }
  return out;
}

}  // namespace gputier
