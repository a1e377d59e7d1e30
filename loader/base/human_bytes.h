// Byte counts for people: "12.3 MiB".
#ifndef GPUTIER_LOADER_BASE_HUMAN_BYTES_H_
#define GPUTIER_LOADER_BASE_HUMAN_BYTES_H_

#include <cstdint>
#include <string>

namespace gputier {

// Binary units, one decimal above 1 KiB: "512 B", "1.5 KiB", "12.3 MiB".
std::string HumanBytes(uint64_t bytes);

}  // namespace gputier

#endif  // GPUTIER_LOADER_BASE_HUMAN_BYTES_H_
