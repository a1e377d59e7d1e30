#include "loader/base/utf8.h"

#include <cstdint>

#include "absl/strings/str_format.h"

namespace gputier {

size_t Utf8SequenceLength(absl::string_view text, size_t pos) {
  const size_t left = text.size() - pos;
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[pos + i]); };
  const uint8_t b0 = byte(0);
  if (b0 < 0x80) return 1;
  size_t len;
  uint32_t cp;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    len = 2;
    cp = b0 & 0x1f;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    len = 3;
    cp = b0 & 0x0f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    len = 4;
    cp = b0 & 0x07;
  } else {
    return 0;  // a continuation byte, 0xc0/0xc1 (always overlong) or 0xf5+
  }
  if (left < len) return 0;
  for (size_t i = 1; i < len; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i) & 0x3f);
  }
  if (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return 0;
  if (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
  return len;
}

bool IsValidUtf8(absl::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = Utf8SequenceLength(text, pos);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

std::string HexBytes(absl::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    const uint8_t b = static_cast<uint8_t>(c);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

bool BytesFromHex(absl::string_view hex, std::string* out) {
  if (hex.size() % 2 != 0) return false;
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string bytes;
  bytes.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    bytes.push_back(static_cast<char>((hi << 4) | lo));
  }
  *out = std::move(bytes);
  return true;
}

std::string EscapeControlAndInvalid(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const uint8_t b = static_cast<uint8_t>(text[pos]);
    const size_t n = Utf8SequenceLength(text, pos);
    if (n == 0) {
      absl::StrAppendFormat(&out, "\\x%02x", b);
      ++pos;
      continue;
    }
    if (n == 1) {
      switch (b) {
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        case '\r': out += "\\r"; break;
        case '\\': out += "\\\\"; break;
        default:
          if (b < 0x20 || b == 0x7f) {
            absl::StrAppendFormat(&out, "\\x%02x", b);
          } else {
            out.push_back(static_cast<char>(b));
          }
      }
    } else if (n == 2 && b == 0xc2 && static_cast<uint8_t>(text[pos + 1]) < 0xa0) {
      // C1 controls (U+0080..U+009F): CSI and friends drive terminals too.
      absl::StrAppendFormat(&out, "\\xc2\\x%02x", static_cast<uint8_t>(text[pos + 1]));
    } else {
      out.append(text.data() + pos, n);
    }
    pos += n;
  }
  return out;
}

}  // namespace gputier
