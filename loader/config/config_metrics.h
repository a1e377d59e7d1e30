// The metrics part of the config (internal to config.cc): `metrics:`.
// See docs/METRICS.md.
#ifndef GPUTIER_LOADER_CONFIG_CONFIG_METRICS_H_
#define GPUTIER_LOADER_CONFIG_CONFIG_METRICS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "loader/config/config.h"
#include "yaml-cpp/yaml.h"

namespace gputier {

// `metrics: {max_containers: N}`.
absl::Status ParseMetricsConfig(absl::string_view source, const YAML::Node& node, MetricsConfig* out);

}  // namespace gputier

#endif  // GPUTIER_LOADER_CONFIG_CONFIG_METRICS_H_
