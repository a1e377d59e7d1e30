// The enforcement part of the config (internal to config.cc):
// `enforcement:`, `enforcement_if_unavailable:` and
// `enforcement_exempt_cgroups:`. See docs/AUDIT.md.
#ifndef GPUTIER_LOADER_CONFIG_CONFIG_ENFORCEMENT_H_
#define GPUTIER_LOADER_CONFIG_CONFIG_ENFORCEMENT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loader/config/config.h"
#include "yaml-cpp/yaml.h"

namespace gputier {

// `enforcement: off | audit | enforce`.
absl::Status ParseEnforcementMode(absl::string_view source, const YAML::Node& node,
                                  EnforcementConfig* out);

// `enforcement_if_unavailable: fail | off`.
absl::Status ParseEnforcementIfUnavailable(absl::string_view source, const YAML::Node& node,
                                           EnforcementConfig* out);

// `enforcement_exempt_cgroups: [PATH, ...]`, cgroup paths from the cgroup2
// root ("/system.slice/backup.service").
absl::Status ParseExemptCgroups(absl::string_view source, const YAML::Node& node,
                                EnforcementConfig* out);

}  // namespace gputier

#endif  // GPUTIER_LOADER_CONFIG_CONFIG_ENFORCEMENT_H_
