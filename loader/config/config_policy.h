// The `policy:` section of the config (internal to config.cc).
#ifndef GPUTIER_LOADER_CONFIG_CONFIG_POLICY_H_
#define GPUTIER_LOADER_CONFIG_CONFIG_POLICY_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "loader/config/config.h"
#include "yaml-cpp/yaml.h"

namespace gputier {

// Parses `node` into *policy; `classes` are the extension classes after
// merging (gpu_classes must name them). Errors name the key and the fix.
absl::Status ParsePolicy(absl::string_view source, const YAML::Node& node,
                         const std::vector<ExtensionClass>& classes, PolicyConfig* policy);

}  // namespace gputier

#endif  // GPUTIER_LOADER_CONFIG_CONFIG_POLICY_H_
