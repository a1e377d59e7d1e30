// Small helpers for reading YAML config values with errors that name the
// file, line and key: the vocabulary of the config parsers, and included by
// them only (loader/config/*.cc), so they use these names unqualified.
#ifndef GPUTIER_LOADER_CONFIG_YAML_FIELDS_H_
#define GPUTIER_LOADER_CONFIG_YAML_FIELDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "yaml-cpp/yaml.h"

namespace gputier {

// "<source>:<line>: <key path>"
std::string Where(absl::string_view source, const YAML::Node& node, absl::string_view key_path);

// InvalidArgument "<where>: <what>; <fix>".
absl::Status Invalid(absl::string_view source, const YAML::Node& node, absl::string_view key_path,
                     absl::string_view what, absl::string_view fix);

// "empty", "a single value", "a list", "a mapping".
absl::string_view KindOf(const YAML::Node& node);

// A quoted, escaped value for messages.
std::string Quote(absl::string_view text);

// An unquoted scalar.
bool IsPlainScalar(const YAML::Node& node);

// A plain decimal integer in [min, max]; `at` locates errors.
absl::StatusOr<uint32_t> ParseBoundedInt(absl::string_view source, const YAML::Node& node,
                                         const YAML::Node& at, absl::string_view key_path,
                                         uint32_t min, uint32_t max);

struct MapEntry {
  std::string key;
  YAML::Node key_node;  // for errors about the key itself
  YAML::Node value;

  // Where errors about the value point.
  const YAML::Node& Location() const { return value.IsNull() ? key_node : value; }
};

// The keys of a mapping in file order; keys that are not plain names or that
// appear twice are errors.
absl::StatusOr<std::vector<MapEntry>> MappingEntries(absl::string_view source,
                                                     const YAML::Node& map,
                                                     absl::string_view key_path);

// The duration (absl::ParseDuration: "500ms", "2s", "1m") of `e`, within
// [min, max]; else one error naming `key`, what it is and what to write.
absl::StatusOr<absl::Duration> ParseDurationValue(absl::string_view source, const MapEntry& e,
                                                  const std::string& key, absl::Duration min,
                                                  absl::Duration max);

}  // namespace gputier

#endif  // GPUTIER_LOADER_CONFIG_YAML_FIELDS_H_
