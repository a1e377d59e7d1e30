// Fuzzes the readers of what container runtimes leave on disk: a bundle's
// config.json (annotations, identity, overrides), runc's state.json, crun's
// status and podman's containers.json. An orchestrator a tenant drives
// shapes annotations; each reader must answer a value or one clear error,
// and every name it gives must be one a log line and a command line can carry.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loader/runtime/oci_config.h"
#include "loader/runtime/runtime_table.h"

namespace {

constexpr char kId[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

void CheckName(const std::string& name) {
  if (name.empty()) std::abort();
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-' || c == '/';
    if (!ok) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<gputier::OciWorkload> w = gputier::ParseOciConfig(text, kId);
  if (!w.ok()) {
    if (w.status().message().empty()) std::abort();
  } else {
    CheckName(gputier::DisplayName(w->identity, kId));
    for (const std::string& warning : w->warnings) {
      if (warning.find('\n') != std::string::npos) std::abort();
    }
    if (w->overrides.tier && *w->overrides.tier != "auto" && *w->overrides.tier != "fast" &&
        *w->overrides.tier != "slow") {
      std::abort();
    }
    for (const auto* paths : {&w->overrides.tiered_paths, &w->overrides.gpu_data_paths}) {
      if (!paths->has_value()) continue;
      for (const std::string& p : **paths) {
        if (p.empty() || p[0] != '/' || p == "/") std::abort();
      }
    }
  }
  for (absl::StatusOr<gputier::RuntimeState> s : {gputier::ParseRuncState(text), gputier::ParseCrunStatus(text)}) {
    if (s.ok() && (s->init_pid <= 0 || s->bundle.empty() || s->bundle[0] != '/')) std::abort();
    if (!s.ok() && s.status().message().empty()) std::abort();
  }
  const std::string name = gputier::PodmanNameOf(text, "c1");
  if (!name.empty()) CheckName(name);
  return 0;
}
