// Fuzzes the /proc/devices parser (the "Character devices:" section), which
// names the GPU drivers' majors. The kernel writes it, but driver names come
// from any loaded module.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "absl/strings/string_view.h"
#include "loader/base/node_facts.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  const std::vector<gputier::CharDevice> devices = gputier::ParseCharDevices(text);
  for (const gputier::CharDevice& d : devices) {
    if (d.name.empty() || d.name.size() > size) std::abort();
  }
  return 0;
}
