// gputierd configuration: the YAML schema, its defaults, and validation.
//
// Pure: parsing and validation never touch the system, so every rule is
// tested without root (tests/config_test.cc). Errors are one sentence that
// names the file, the key and the fix.
#ifndef GPUTIER_LOADER_CONFIG_CONFIG_H_
#define GPUTIER_LOADER_CONFIG_CONFIG_H_

#include <cstdint>
#include <optional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace gputier {

// One extension class: its ABI id (enum gt_ext_class or a custom id 5..7),
// its name and its lower-cased extensions without the leading dot.
struct ExtensionClass {
  uint32_t id = 0;
  std::string name;
  std::vector<std::string> extensions;
};

// A GPU device selector from `gpu_devices:`. Exactly one of path_glob or
// major is set; minor is only meaningful with major (unset = every minor).
struct GpuDeviceSelector {
  std::optional<std::string> path_glob;
  std::optional<uint32_t> major;
  std::optional<uint32_t> minor;
};

// The classifier's settings (`policy:`), in plain types; see docs/FEATURES.md.
struct PolicyConfig {
  absl::Duration window = absl::Seconds(30);       // feature window
  absl::Duration tick = absl::Seconds(1);          // classification period
  absl::Duration record_every = absl::Seconds(60); // table row per active cgroup
  double gpu_ioctl_rate = 1.0;                     // thresholds.gpu_ioctl_rate, per second
  double ext_ratio = 0.3;                          // thresholds.ext_ratio, [0, 1]
  uint32_t min_evidence = 10;                      // thresholds.min_evidence
  double gpu_busy_share = 0.05;                    // thresholds.gpu_busy_share, > 0
  uint32_t gpu_context_used_windows = 10;          // held context counts this long after use
  std::vector<std::string> gpu_classes = {"image", "video", "tensor", "graphics"};
  uint32_t min_rows_per_class = 20;
  uint32_t demote_after_cpu_windows = 3;
  uint32_t retrain_every_rows = 200;
  // Rule-decided rows of one cgroup a model trains on (its newest): many
  // rows of one busy or hostile cgroup cannot outvote the rest.
  uint32_t max_training_rows_per_cgroup = 50;
  // Retraining from the table at most this often (an operator's
  // `gputierctl train` is not limited).
  absl::Duration min_retrain_interval = absl::Minutes(1);
  double operator_weight = 10;
  uint32_t table_max_rows = 100000;
};

// Storage tiering (`tiers:`, `tiered_paths:`, `gpu_data_paths:`); see
// docs/TIERING.md.
struct TierConfig {
  // Host directories of the fast (NVMe) and slow (SATA/HDD) tier roots.
  std::string fast_root = "/var/lib/gputier/fast";
  std::string slow_root = "/var/lib/gputier/slow";
  bool embedded_roots = true;  // neither root came from the file
  // Each container's fast partition (a preallocated ext4 image), bytes.
  uint64_t partition_size = uint64_t{2} << 30;
  // Fast tier filesystem use, as a fraction of its size: no promotion that
  // would pass `high`; above `high`, the least recently active GPU
  // containers are demoted until use is at or below `low`.
  double high_watermark = 0.90;
  double low_watermark = 0.80;
  // How long a demotion may wait for the container to close what it holds
  // open on the fast overlay (retried every 50 ms) before gputierd backs
  // off: the container is left on the fast tier, the demotion retried at
  // growing intervals (doubling, at most every minute) and reported
  // (docs/TIERING.md, "A demotion blocked by open files").
  absl::Duration demote_wait = absl::Seconds(60);
  // How long the slow layer of an exited container is kept in quarantine
  // (<slow_root>/.exited/) before it is removed; 0: removed at once
  // (docs/TIERING.md, "When a container exits").
  absl::Duration exited_retention = absl::Hours(1);
  // Bytes gputier may keep under the slow root; 0: no quota. Above it,
  // quarantined layers go first, oldest first; when live containers' layers
  // alone exceed it, no new container is adopted until it is back under.
  uint64_t slow_quota = 0;
  // Absolute directories inside containers that are tiered (normalised).
  std::vector<std::string> tiered_paths;
  // Directories of MIXED containers that go fast (the rest stays slow).
  std::vector<std::string> gpu_data_paths;
  // `runtime_roots:`: per runtime (a name of KnownRuntimeNames()), the
  // directories its OCI runtime keeps container state in, where a container
  // found by its cgroup is confirmed before anything is mounted. A runtime
  // not named keeps its defaults (loader/runtime/runtime_table.cc).
  std::map<std::string, std::vector<std::string>> runtime_roots;
  // Cgroup paths whose containers are tiered; empty: every container. Lets a
  // second agent (deploy/demo) tier only its own containers.
  std::vector<std::string> tiered_cgroups;
};

// The fast-tier guard and tamper watch (LSM mode only); docs/AUDIT.md.
enum class Enforcement { kOff, kAudit, kEnforce };

absl::StatusOr<Enforcement> ParseEnforcementName(absl::string_view text);
std::string EnforcementName(Enforcement mode);

struct EnforcementConfig {
  // `enforcement:`; audit records and denies nothing.
  Enforcement mode = Enforcement::kAudit;
  bool mode_from_file = false;
  // `enforcement_if_unavailable: off`: where LSM mode cannot run, `enforce`
  // downgrades to off (said in the log) instead of stopping gputierd.
  bool off_if_unavailable = false;
  // `enforcement_exempt_cgroups:`: host cgroups (paths from the cgroup2
  // root) whose processes the guard never records or denies.
  std::vector<std::string> exempt_cgroups;
};

// The Prometheus endpoint (`metrics:`); docs/METRICS.md. The address is a
// flag (--metrics-address), not a config key.
struct MetricsConfig {
  // Containers with their own per-container series; the rest are summed
  // into one container="_other" set.
  uint32_t max_containers = 1000;
};

struct Config {
  // The built-in classes (image, video, tensor, graphics), each replaced by a
  // same-named class from the file; new names get ids 5..7 in file order.
  std::vector<ExtensionClass> classes;
  // Operator-selected GPU devices, added to the defaults found on the node.
  std::vector<GpuDeviceSelector> gpu_devices;
  // Capacity of the per-cgroup counter map (entries).
  uint32_t max_cgroups = 16384;
  PolicyConfig policy;
  TierConfig tiers;
  EnforcementConfig enforcement;
  // `control_read_group:`: members of this group may run the read-only
  // control commands (status, explain); empty: root only.
  std::string control_read_group;
  MetricsConfig metrics;
  // What the file says that still works but should be written otherwise
  // (a deprecated key): one sentence each, logged by gputierd at start.
  std::vector<std::string> notes;
};

// The configuration used when no --config is given.
Config DefaultConfig();

// Parses YAML text. `source` names the input in errors (usually the path).
absl::StatusOr<Config> ParseConfig(absl::string_view yaml_text,
                                   absl::string_view source);

// Reads and parses a file; an unreadable file is an error naming the path.
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

}  // namespace gputier

#endif  // GPUTIER_LOADER_CONFIG_CONFIG_H_
