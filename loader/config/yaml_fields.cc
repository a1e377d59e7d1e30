#include "loader/config/yaml_fields.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace gputier {

// Where a node sits in the input, for the prefix of an error:
// "<source>:<line>: <key path>: ".
std::string Where(absl::string_view source, const YAML::Node& node,
                  absl::string_view key_path) {
  std::string where(source);
  if (node.IsDefined()) {
    const YAML::Mark mark = node.Mark();
    if (!mark.is_null()) absl::StrAppend(&where, ":", mark.line + 1);
  }
  if (!key_path.empty()) absl::StrAppend(&where, ": ", key_path);
  return where;
}

absl::Status Invalid(absl::string_view source, const YAML::Node& node,
                     absl::string_view key_path, absl::string_view what,
                     absl::string_view fix) {
  return absl::InvalidArgumentError(
      absl::StrCat(Where(source, node, key_path), ": ", what, "; ", fix));
}

absl::string_view KindOf(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "empty";
    case YAML::NodeType::Scalar:
      return "a single value";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Undefined:
      break;
  }
  return "undefined";
}

// A quoted value for messages; bytes that would break the sentence are
// escaped so the message stays one line.
std::string Quote(absl::string_view text) {
  return absl::StrCat("\"", absl::CHexEscape(text), "\"");
}

bool IsPlainScalar(const YAML::Node& node) {
  // yaml-cpp tags quoted scalars "!" and plain ones "?".
  return node.IsScalar() && node.Tag() != "!";
}

// Parses a plain decimal scalar into [min, max]; errors name the key.
// `at` locates the error: the value, or its key when the value is empty (an
// empty value's mark points past the key's line).
absl::StatusOr<uint32_t> ParseBoundedInt(absl::string_view source,
                                         const YAML::Node& node,
                                         const YAML::Node& at,
                                         absl::string_view key_path,
                                         uint32_t min, uint32_t max) {
  const std::string range = absl::StrCat(min, "..", max);
  if (!IsPlainScalar(node)) {
    return Invalid(source, at, key_path,
                   absl::StrCat("is ", KindOf(node), ", not an integer"),
                   absl::StrCat("write an unquoted integer in ", range));
  }
  const std::string& text = node.Scalar();
  bool digits = !text.empty() && text.size() <= 10 &&
                std::all_of(text.begin(), text.end(),
                            [](char c) { return absl::ascii_isdigit(c); });
  uint64_t value = 0;
  if (digits) {
    for (char c : text) value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!digits || value < min || value > max) {
    return Invalid(source, at, key_path,
                   absl::StrCat(Quote(text), " is not an integer in ", range),
                   absl::StrCat("write an integer in ", range));
  }
  return static_cast<uint32_t>(value);
}


// Reads the keys of a mapping, rejecting keys that are not plain strings or
// that appear twice. Entries keep file order.
absl::StatusOr<std::vector<MapEntry>> MappingEntries(
    absl::string_view source, const YAML::Node& map,
    absl::string_view key_path) {
  std::vector<MapEntry> entries;
  absl::flat_hash_set<std::string> seen;
  for (const auto& kv : map) {
    const std::string child_path =
        key_path.empty() ? "" : absl::StrCat(key_path, ".");
    if (!kv.first.IsScalar()) {
      return Invalid(
          source, kv.first, key_path,
          absl::StrCat(key_path.empty() ? "a top-level key" : "has a key that",
                       " is ", KindOf(kv.first), ", not a name"),
          "write plain names as keys");
    }
    const std::string& key = kv.first.Scalar();
    if (!seen.insert(key).second) {
      return Invalid(source, kv.first, absl::StrCat(child_path, key),
                     "appears twice", "keep one of them");
    }
    entries.push_back(MapEntry{key, kv.first, kv.second});
  }
  return entries;
}

absl::StatusOr<absl::Duration> ParseDurationValue(absl::string_view source, const MapEntry& e,
                                                  const std::string& key, absl::Duration min,
                                                  absl::Duration max) {
  absl::Duration d;
  if (!IsPlainScalar(e.value) || !absl::ParseDuration(e.value.Scalar(), &d)) {
    return Invalid(source, e.Location(), key,
                   absl::StrCat("is ", e.value.IsScalar() ? Quote(e.value.Scalar()) : KindOf(e.value),
                                ", not a duration"),
                   "write a duration such as 500ms, 2s or 1m");
  }
  if (d < min || d > max) {
    return Invalid(source, e.Location(), key,
                   absl::StrCat(absl::FormatDuration(d), " is outside ", absl::FormatDuration(min), "..",
                                absl::FormatDuration(max)),
                   absl::StrCat("write a duration in ", absl::FormatDuration(min), "..",
                                absl::FormatDuration(max)));
  }
  return d;
}

}  // namespace gputier
