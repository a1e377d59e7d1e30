// Fuzzes the control socket's request parser. Any local client that can
// connect sends any bytes; the parser must answer every one with a request
// or one error, never throw, and hand back only what the protocol allows.
//
// Input: the request line (without its newline).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loader/control/control_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<gputier::ControlRequest> r = gputier::ParseControlRequest(text);
  if (!r.ok()) {
    if (r.status().message().empty()) std::abort();  // an error always says what is wrong
    return 0;
  }
  using gputier::ControlCommand;
  const bool needs_target = r->command == ControlCommand::kExplain || r->command == ControlCommand::kLabel ||
                            r->command == ControlCommand::kTier;
  if (needs_target && (r->target.empty() || r->target.size() > gputier::kMaxControlTargetBytes)) std::abort();
  for (char c : r->target) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) std::abort();  // no control bytes reach a log
  }
  if (r->command == ControlCommand::kLabel && r->verdict != "gpu" && r->verdict != "cpu" && r->verdict != "mixed") {
    std::abort();
  }
  if (r->command == ControlCommand::kTier && r->tier != "fast" && r->tier != "slow" && r->tier != "auto") {
    std::abort();
  }
  return 0;
}
