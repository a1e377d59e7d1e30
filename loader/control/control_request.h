// The control protocol's request, parsed and validated: a pure function of
// the bytes a client sent (no syscalls, no process state), so every way a
// client can get a request wrong is one error sentence naming the field and
// what it should be, tested without root (tests/control_request_test.cc) and
// callable from a fuzzer.
//
// A request is one JSON object on one line:
//   {"cmd": "status"}
//   {"cmd": "explain", "target": T}
//   {"cmd": "train"}
//   {"cmd": "label", "target": T, "verdict": "gpu" | "cpu" | "mixed"}
//   {"cmd": "tier", "target": T, "tier": "fast" | "slow" | "auto"}
//   {"cmd": "creating", "target": ID, "pid": N, "bundle": "/abs/path"}
//     (gputier-oci-hook at createRuntime: container ID's process N, in the
//     host's pid namespace, its OCI bundle; root only)
// T is a container id (or a unique prefix of 4+ characters), a cgroup path
// or a cgroup id, as a string. Unknown keys, missing keys and keys of the
// wrong JSON type are refused.
#ifndef GPUTIER_LOADER_CONTROL_CONTROL_REQUEST_H_
#define GPUTIER_LOADER_CONTROL_CONTROL_REQUEST_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gputier {

// Largest request accepted, newline included.
inline constexpr size_t kMaxControlRequestBytes = 64 * 1024;
// Longest target: a cgroup path (PATH_MAX).
inline constexpr size_t kMaxControlTargetBytes = 4096;

enum class ControlCommand { kStatus, kExplain, kTrain, kLabel, kTier, kCreating };

absl::string_view ControlCommandName(ControlCommand command);

// Whether the command changes gputierd's state or the node (label, train,
// tier): those are for root only; the others read.
bool ControlCommandChangesState(ControlCommand command);

struct ControlRequest {
  ControlCommand command = ControlCommand::kStatus;
  std::string target;   // explain, label, tier
  std::string verdict;  // label: "gpu", "cpu" or "mixed"
  std::string tier;     // tier: "fast", "slow" or "auto"
  int64_t pid = 0;      // creating: 1 .. kMaxControlPid
  std::string bundle;   // creating: an absolute path
};

// The largest pid Linux gives (PID_MAX_LIMIT).
inline constexpr int64_t kMaxControlPid = 4194304;

// `text` is the request line without its newline. Never throws.
absl::StatusOr<ControlRequest> ParseControlRequest(absl::string_view text);

// Who sent a request: the kernel's SO_PEERCRED and SO_PEERGROUPS of the
// connection, as the socket adapter (control.cc) reads them.
struct ControlPeer {
  uint32_t uid = UINT32_MAX;
  uint32_t gid = UINT32_MAX;
  std::vector<uint32_t> groups;  // supplementary
};

// Root may send anything; a peer in `read_group` (config
// `control_read_group`) may send read-only commands; nobody else anything.
// The error says who may and what to change.
absl::Status AuthorizeControlRequest(ControlCommand command, const ControlPeer& peer,
                                     std::optional<uint32_t> read_group);

}  // namespace gputier

#endif  // GPUTIER_LOADER_CONTROL_CONTROL_REQUEST_H_
