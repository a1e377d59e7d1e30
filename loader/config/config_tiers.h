// The tiering part of the config (internal to config.cc): `tiers:`,
// `tiered_paths:`, `gpu_data_paths:`, `runtime_roots:` and
// the deprecated `runc_roots:`.
#ifndef GPUTIER_LOADER_CONFIG_CONFIG_TIERS_H_
#define GPUTIER_LOADER_CONFIG_CONFIG_TIERS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loader/config/config.h"
#include "yaml-cpp/yaml.h"

namespace gputier {

// `tiers: {fast, slow, partition_size, high_watermark, low_watermark, demote_wait}`.
absl::Status ParseTiers(absl::string_view source, const YAML::Node& node, TierConfig* tiers);

// A list of container directories (`key` is "tiered_paths" or "gpu_data_paths").
absl::Status ParseContainerPathList(absl::string_view source, const YAML::Node& node,
                                    absl::string_view key, std::vector<std::string>* out);

// Refuses a container path that is a pseudo-filesystem or runtime-managed:
// /proc, /sys, /dev, /run and anything under them, the files runtimes
// bind-mount (/etc/hosts, /etc/hostname, /etc/resolv.conf), and "/". The
// error names the path and why.
absl::Status RefuseRuntimeManagedPath(absl::string_view path);

// The runtimes `runtime_roots:` may name: runc, podman, containerd, cri-o,
// docker (loader/runtime/runtime_table.cc has one entry for each).
const std::vector<std::string>& KnownRuntimeNames();

// `runtime_roots: {RUNTIME: [DIR, ...], ...}` into `out` (runtimes not named
// are left out: they keep their defaults).
absl::Status ParseRuntimeRoots(absl::string_view source, const YAML::Node& node,
                               std::map<std::string, std::vector<std::string>>* out);

// `tiered_cgroups:`: cgroup paths (as /proc/<pid>/cgroup shows them); when
// given, only containers in or below one of them are tiered.
absl::Status ParseTieredCgroups(absl::string_view source, const YAML::Node& node,
                                std::vector<std::string>* out);

// Whether a container in this cgroup is tiered (every container when
// `tiered_cgroups` is empty). Whole components only: /a covers /a/b, not /ab.
bool InTieredCgroups(const TierConfig& tiers, absl::string_view cgroup_path);

// The deprecated `runc_roots: [DIR, ...]`: the same as `runtime_roots: {runc:
// [DIR, ...]}`; adds a note saying so to `notes`.
absl::Status ParseRuncRoots(absl::string_view source, const YAML::Node& node,
                            std::map<std::string, std::vector<std::string>>* out,
                            std::vector<std::string>* notes);

// Checks across keys: tiered_paths and gpu_data_paths never overlap or nest.
absl::Status ValidateTierPaths(absl::string_view source, const TierConfig& tiers);

// "4GiB", "512MiB", "1.5TiB", "1000000" (bytes): K/M/G/T with or without
// "i" and "B" are powers of 1024.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);

// Whether a host directory can be named in overlay options and logs:
// absolute, and free of ',', ':', '\\', whitespace and control bytes.
absl::Status ValidateTierRoot(absl::string_view path);

}  // namespace gputier

#endif  // GPUTIER_LOADER_CONFIG_CONFIG_TIERS_H_
