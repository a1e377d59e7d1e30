#include "loader/gpu_use/drm_fdinfo.h"

#include <algorithm>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace gputier {
namespace {

constexpr size_t kMaxNameBytes = 64;

// A <keystr>: non-empty, bounded, no whitespace or ':'.
bool IsKeyStr(absl::string_view s) {
  if (s.empty() || s.size() > kMaxNameBytes) return false;
  for (char c : s) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) || c == ':' || !absl::ascii_isprint(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

// A <valstr>: non-empty, bounded, printable.
bool IsValStr(absl::string_view s) {
  if (s.empty() || s.size() > kMaxNameBytes) return false;
  for (char c : s) {
    if (!absl::ascii_isprint(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// "<uint>" or "<uint> <unit>" with the unit one of `units` (factor each).
std::optional<uint64_t> ParseUint(absl::string_view value,
                                  std::initializer_list<std::pair<absl::string_view, uint64_t>> units) {
  std::vector<absl::string_view> parts = absl::StrSplit(value, ' ', absl::SkipEmpty());
  if (parts.empty() || parts.size() > 2) return std::nullopt;
  uint64_t n = 0;
  if (!absl::SimpleAtoi(parts[0], &n) || parts[0][0] == '-' || parts[0][0] == '+') return std::nullopt;
  uint64_t factor = 1;
  if (parts.size() == 2) {
    bool known = false;
    for (const auto& [unit, f] : units) {
      if (parts[1] == unit) {
        factor = f;
        known = true;
      }
    }
    if (!known) return std::nullopt;
  }
  if (factor != 1 && n > std::numeric_limits<uint64_t>::max() / factor) return std::nullopt;
  return n * factor;
}

std::optional<uint64_t> ParseBytes(absl::string_view value) {
  return ParseUint(value, {{"B", 1}, {"KiB", 1024}, {"MiB", 1024 * 1024}, {"GiB", 1024ull * 1024 * 1024}});
}

uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max() : a + b;
}

DrmEngineBusy* EngineNamed(DrmClientUsage& u, absl::string_view name) {
  for (DrmEngineBusy& e : u.engines) {
    if (e.name == name) return &e;
  }
  if (u.engines.size() >= kMaxDrmEngines) return nullptr;
  u.engines.push_back({std::string(name), 0, 1});
  return &u.engines.back();
}

}  // namespace

std::string DrmClientUsage::Key() const {
  return absl::StrCat(driver, "|", pdev, "|", client_id.value_or(0));
}

DrmClientUsage ParseDrmFdinfo(absl::string_view text) {
  DrmClientUsage u;
  if (text.size() > kMaxFdinfoBytes) text = text.substr(0, kMaxFdinfoBytes);
  bool have_resident = false;
  uint64_t legacy_memory = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    const absl::string_view key = line.substr(0, colon);
    const absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
    if (!absl::StartsWith(key, "drm-") || !IsKeyStr(key)) continue;
    if (key == "drm-driver") {
      if (IsValStr(value)) u.driver = std::string(value);
    } else if (key == "drm-pdev") {
      if (IsValStr(value)) u.pdev = std::string(value);
    } else if (key == "drm-client-id") {
      uint64_t id = 0;
      if (absl::SimpleAtoi(value, &id) && !value.empty() && absl::ascii_isdigit(value[0])) u.client_id = id;
    } else if (absl::StartsWith(key, "drm-engine-capacity-")) {
      const absl::string_view name = key.substr(20);
      std::optional<uint64_t> n = ParseUint(value, {});
      if (!n || *n == 0 || name.empty()) continue;
      if (DrmEngineBusy* e = EngineNamed(u, name)) e->capacity = *n;
    } else if (absl::StartsWith(key, "drm-engine-")) {
      const absl::string_view name = key.substr(11);
      std::optional<uint64_t> ns = ParseUint(value, {{"ns", 1}});
      // The unit is part of the key's definition: a value without "ns" is
      // not busy time.
      if (!ns || !absl::EndsWith(value, " ns") || name.empty()) continue;
      if (DrmEngineBusy* e = EngineNamed(u, name)) e->busy_ns = *ns;
    } else if (absl::StartsWith(key, "drm-cycles-") || absl::StartsWith(key, "drm-total-cycles-") ||
               absl::StartsWith(key, "drm-maxfreq-")) {
      continue;  // cycles, not time
    } else if (absl::StartsWith(key, "drm-total-")) {
      if (std::optional<uint64_t> b = ParseBytes(value)) u.total_bytes = SaturatingAdd(u.total_bytes, *b);
    } else if (absl::StartsWith(key, "drm-resident-")) {
      if (std::optional<uint64_t> b = ParseBytes(value)) {
        u.resident_bytes = SaturatingAdd(u.resident_bytes, *b);
        have_resident = true;
      }
    } else if (absl::StartsWith(key, "drm-memory-")) {
      if (std::optional<uint64_t> b = ParseBytes(value)) legacy_memory = SaturatingAdd(legacy_memory, *b);
    }
  }
  if (!have_resident) u.resident_bytes = legacy_memory;
  return u;
}

}  // namespace gputier
