// Per-cgroup rows for people and programs: the counters joined with the
// cgroup path and container identity. Shared by `gputierctl audit` and the
// live view of gputierd.
#ifndef GPUTIER_LOADER_REPORT_H_
#define GPUTIER_LOADER_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gputier/abi.h"
#include "loader/base/human_bytes.h"  // HumanBytes, used with the rows
#include "loader/cgroup/cgroup_path.h"
#include "loader/observe/maps.h"

namespace gputier {

class CgroupResolver;

struct CgroupRow {
  uint64_t cgroup_id = 0;
  std::optional<std::string> cgroup_path;  // nullopt: the cgroup is gone
  std::optional<ContainerIdentity> container;
  // namespace/pod/container or podman's name, where gputierd knows it.
  std::string name;
  gt_cgroup_stats stats = {};
};

// Joins counters with paths and identities (runc ids read once per call).
std::vector<CgroupRow> BuildRows(const CgroupCounters& counters, const CgroupResolver& resolver);

// A container's name for people: its name, else its short id; "" for a
// cgroup without a container.
std::string ShownContainer(const CgroupRow& row);

// The audit JSON: an array with one object per cgroup (schema in docs/AUDIT.md).
nlohmann::json RowsToJson(const std::vector<CgroupRow>& rows, const ClassNames& names);

// A fixed-width table, one line per row, with a header line.
std::string RowsToTable(const std::vector<CgroupRow>& rows, const ClassNames& names);


}  // namespace gputier

#endif  // GPUTIER_LOADER_REPORT_H_
