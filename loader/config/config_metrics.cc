#include "loader/config/config_metrics.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "loader/config/yaml_fields.h"

namespace gputier {
namespace {

constexpr absl::string_view kKnownMetricsKeys = "max_containers";
constexpr uint32_t kMinMetricsContainers = 1;
constexpr uint32_t kMaxMetricsContainers = 100000;

}  // namespace

absl::Status ParseMetricsConfig(absl::string_view source, const YAML::Node& node, MetricsConfig* out) {
  if (!node.IsMap()) {
    return Invalid(source, node, "metrics", absl::StrCat("is ", KindOf(node), ", not a mapping"),
                   absl::StrCat("write keys from ", kKnownMetricsKeys, " under it"));
  }
  absl::StatusOr<std::vector<MapEntry>> entries = MappingEntries(source, node, "metrics");
  if (!entries.ok()) return entries.status();
  for (const MapEntry& entry : *entries) {
    if (entry.key == "max_containers") {
      absl::StatusOr<uint32_t> max = ParseBoundedInt(source, entry.value, entry.Location(),
                                                     "metrics.max_containers", kMinMetricsContainers,
                                                     kMaxMetricsContainers);
      if (!max.ok()) return max.status();
      out->max_containers = *max;
    } else {
      return Invalid(source, entry.key_node, absl::StrCat("metrics.", entry.key), "is not a known key",
                     absl::StrCat("use only ", kKnownMetricsKeys));
    }
  }
  return absl::OkStatus();
}

}  // namespace gputier
