// The slow layers of exited containers, and which of them go. Pure
// (tests/exited_layers_test.cc).
//
// When a container exits, its slow layer (<slow_root>/<key>, with its fast
// data written back into it) is moved to <slow_root>/.exited/<key>.<unix
// seconds of the exit>: out of any container's reach (the slow root is
// 0700 and never mounted into a container; a new container's layers are
// named by another key), but still there for an operator to copy out. It is
// removed once tiers.exited_retention has passed, or sooner, oldest first,
// while the bytes under the slow root are above tiers.slow_quota. Live
// containers' layers are never removed: when they alone exceed the quota,
// new containers are not adopted until it is back under.
#ifndef GPUTIER_LOADER_TIER_EXITED_LAYERS_H_
#define GPUTIER_LOADER_TIER_EXITED_LAYERS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace gputier {

// The quarantine directory under the slow root. Starts with '.': no tier key
// does (adopted container ids never start with '.').
inline constexpr char kExitedDirName[] = ".exited";

struct ExitedLayer {
  std::string name;         // "<key>.<unix seconds>", its name in .exited/
  std::string key;          // the container's tier key
  int64_t exited_at_s = 0;  // unix seconds of the exit
  uint64_t bytes = 0;       // allocated bytes below it
};

// "<key>.<unix seconds>" for a layer quarantined at `unix_seconds`.
std::string ExitedName(absl::string_view key, int64_t unix_seconds);
// The layer a name in .exited/ stands for; nullopt for a name gputier does
// not give (left alone, never removed).
std::optional<ExitedLayer> ParseExitedName(absl::string_view name);

struct ExitedRemovals {
  // Names to remove, in order: those past their retention, oldest first,
  // then, while the slow root stays above the quota, the oldest others.
  std::vector<std::string> names;
  // Why each of `names` goes: "retention" or "quota".
  std::vector<std::string> reasons;
  // The bytes of live containers' layers (everything under the slow root
  // but the quarantine) exceed the quota on their own.
  bool live_over_quota = false;
};

// `used_bytes`: the allocated bytes under the slow root, quarantine
// included; `quota` 0: none.
ExitedRemovals PickExitedRemovals(std::vector<ExitedLayer> layers, int64_t now_s, absl::Duration retention,
                                  uint64_t quota, uint64_t used_bytes);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_EXITED_LAYERS_H_
