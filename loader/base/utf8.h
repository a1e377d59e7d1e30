// UTF-8 checks for names gputier does not control (cgroup names, file names,
// process names): JSON must be valid UTF-8 and a log line must stay one line.
// Pure: no syscalls.
#ifndef GPUTIER_LOADER_BASE_UTF8_H_
#define GPUTIER_LOADER_BASE_UTF8_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace gputier {

// The length of the well-formed UTF-8 sequence starting at text[pos] (1-4),
// or 0 when the bytes there are not one (a stray continuation byte, a
// truncated sequence, an overlong form, a surrogate, or past U+10FFFF).
size_t Utf8SequenceLength(absl::string_view text, size_t pos);

bool IsValidUtf8(absl::string_view text);

// Lower-case hex of every byte ("ff00"), and back; nullopt-like failure is
// reported by returning false.
std::string HexBytes(absl::string_view bytes);
bool BytesFromHex(absl::string_view hex, std::string* out);

// `text` made safe for one log line or one terminal row: control characters
// (C0, DEL, C1) and bytes that are not UTF-8 become \n, \t, \r or \xNN, and a
// backslash becomes "\\", so the escaped text is unambiguous; valid UTF-8
// otherwise passes unchanged.
std::string EscapeControlAndInvalid(absl::string_view text);

}  // namespace gputier

#endif  // GPUTIER_LOADER_BASE_UTF8_H_
