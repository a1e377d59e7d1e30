// Fuzzes the YAML config parser exactly as gputierd --config runs it:
// LoadConfigFile reads at most 1 MiB and hands the text to ParseConfig,
// which must turn every input into a Config or one clear error, never an
// exception, an abort or undefined behaviour.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loader/config/config.h"

namespace {
constexpr size_t kMaxConfigBytes = 1 << 20;  // LoadConfigFile's limit
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxConfigBytes) return -1;  // gputierd refuses it unread
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<gputier::Config> config = gputier::ParseConfig(text, "fuzz.yaml");
  if (config.ok()) {
    // What gputierd relies on from an accepted config.
    if (config->classes.empty() || config->classes.size() > 7) std::abort();
    if (config->policy.tick <= absl::ZeroDuration()) std::abort();
    if (config->tiers.low_watermark > config->tiers.high_watermark) std::abort();
  } else if (config.status().message().empty()) {
    std::abort();  // every rejection says why
  }
  return 0;
}
