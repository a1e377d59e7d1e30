#include "loader/control/control_request.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace gputier {
namespace {

using nlohmann::json;

struct CommandSpec {
  ControlCommand command;
  const char* name;
  bool target;
  const char* value_key;  // the second field, or nullptr
  const char* const* values;
};

constexpr const char* kVerdicts[] = {"gpu", "cpu", "mixed", nullptr};
constexpr const char* kTiers[] = {"fast", "slow", "auto", nullptr};

constexpr CommandSpec kCommands[] = {
    {ControlCommand::kStatus, "status", false, nullptr, nullptr},
    {ControlCommand::kExplain, "explain", true, nullptr, nullptr},
    {ControlCommand::kTrain, "train", false, nullptr, nullptr},
    {ControlCommand::kLabel, "label", true, "verdict", kVerdicts},
    {ControlCommand::kTier, "tier", true, "tier", kTiers},
    {ControlCommand::kCreating, "creating", true, nullptr, nullptr},  // and "pid", "bundle": ParseCreating
};

const CommandSpec* SpecOf(ControlCommand command) {
  for (const CommandSpec& c : kCommands) {
    if (c.command == command) return &c;
  }
  return nullptr;
}

const char* TypeName(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return "a number";
    default: return "not a JSON value";
  }
}

std::string Choices(const char* const* values) {
  std::vector<std::string> quoted;
  for (const char* const* v = values; *v != nullptr; ++v) quoted.push_back(absl::StrCat("\"", *v, "\""));
  return absl::StrJoin(quoted, ", ");
}

absl::Status Bad(absl::string_view message) { return absl::InvalidArgumentError(message); }

// A string field: present, a string, within `max` bytes, without control
// characters (the parser already refused invalid UTF-8).
absl::StatusOr<std::string> StringField(const json& request, const char* key, absl::string_view what,
                                        size_t max) {
  auto it = request.find(key);
  if (it == request.end()) {
    return Bad(absl::StrCat("the request has no \"", key, "\" field; it must be ", what));
  }
  if (!it->is_string()) {
    return Bad(absl::StrCat("field \"", key, "\" is ", TypeName(*it), "; it must be ", what));
  }
  const std::string& value = it->get_ref<const std::string&>();
  if (value.empty()) return Bad(absl::StrCat("field \"", key, "\" is empty; it must be ", what));
  if (value.size() > max) {
    return Bad(absl::StrCat("field \"", key, "\" is ", value.size(), " bytes; it must be ", what, " of at most ",
                            max, " bytes"));
  }
  for (char c : value) {
    const unsigned char b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7f) {
      return Bad(absl::StrCat("field \"", key, "\" holds a control character; it must be ", what));
    }
  }
  return value;
}

// The fields only "creating" has: "pid" (a whole number) and "bundle".
absl::Status ParseCreating(const json& request, ControlRequest* out) {
  auto pid = request.find("pid");
  if (pid == request.end() || !pid->is_number_integer() || pid->get<int64_t>() < 1 ||
      pid->get<int64_t>() > kMaxControlPid) {
    return Bad(absl::StrCat("field \"pid\" must be a whole number from 1 to ", kMaxControlPid,
                            ": the container's process in gputierd's pid namespace"));
  }
  out->pid = pid->get<int64_t>();
  absl::StatusOr<std::string> bundle = StringField(request, "bundle", "the OCI bundle's absolute path", 4096);
  if (!bundle.ok()) return bundle.status();
  if ((*bundle)[0] != '/') return Bad("field \"bundle\" must be an absolute path");
  out->bundle = *std::move(bundle);
  return absl::OkStatus();
}

}  // namespace

absl::string_view ControlCommandName(ControlCommand command) {
  const CommandSpec* spec = SpecOf(command);
  return spec == nullptr ? "?" : spec->name;
}

bool ControlCommandChangesState(ControlCommand command) {
  return command == ControlCommand::kLabel || command == ControlCommand::kTrain ||
         command == ControlCommand::kTier || command == ControlCommand::kCreating;
}

absl::StatusOr<ControlRequest> ParseControlRequest(absl::string_view text) {
  if (text.size() > kMaxControlRequestBytes) {
    return Bad(absl::StrCat("the request is ", text.size(), " bytes; a request is at most ",
                            kMaxControlRequestBytes, " bytes"));
  }
  // No exceptions: a parse error (including invalid UTF-8 inside a string)
  // gives a discarded value.
  const json request = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) {
    return Bad("the request is not JSON (or holds invalid UTF-8); send one JSON object on one line");
  }
  if (!request.is_object()) {
    return Bad(absl::StrCat("the request is ", TypeName(request), "; it must be a JSON object with a \"cmd\" field"));
  }
  std::vector<std::string> names;
  for (const CommandSpec& c : kCommands) names.push_back(c.name);
  const std::string command_list = absl::StrJoin(names, ", ");
  auto cmd = request.find("cmd");
  if (cmd == request.end()) {
    return Bad(absl::StrCat("the request has no \"cmd\" field; it must be a string, one of ", command_list));
  }
  if (!cmd->is_string()) {
    return Bad(absl::StrCat("field \"cmd\" is ", TypeName(*cmd), "; it must be a string, one of ", command_list));
  }
  const std::string& name = cmd->get_ref<const std::string&>();
  const CommandSpec* spec = nullptr;
  for (const CommandSpec& c : kCommands) {
    if (name == c.name) spec = &c;
  }
  if (spec == nullptr) {
    if (name.size() > 64) {
      return Bad(absl::StrCat("field \"cmd\" is not a known command; it must be one of ", command_list));
    }
    return Bad(absl::StrCat("field \"cmd\" is \"", name, "\", not a known command; it must be one of ",
                            command_list));
  }
  for (const auto& [key, value] : request.items()) {
    const bool known = key == "cmd" || (key == "target" && spec->target) ||
                       (spec->value_key != nullptr && key == spec->value_key) ||
                       (spec->command == ControlCommand::kCreating && (key == "pid" || key == "bundle"));
    if (!known) {
      return Bad(absl::StrCat("field \"", key.size() > 64 ? key.substr(0, 64) + "..." : key,
                              "\" is not part of a \"", spec->name, "\" request; remove it"));
    }
  }
  ControlRequest out;
  out.command = spec->command;
  if (spec->target) {
    absl::StatusOr<std::string> target =
        StringField(request, "target", "a string: a container name or id, a cgroup path or a cgroup id",
                    kMaxControlTargetBytes);
    if (!target.ok()) return target.status();
    out.target = *std::move(target);
  }
  if (spec->command == ControlCommand::kCreating) {
    if (absl::Status s = ParseCreating(request, &out); !s.ok()) return s;
  }
  if (spec->value_key != nullptr) {
    const std::string what = absl::StrCat("one of ", Choices(spec->values));
    absl::StatusOr<std::string> value = StringField(request, spec->value_key, what, 16);
    if (!value.ok()) return value.status();
    bool allowed = false;
    for (const char* const* v = spec->values; *v != nullptr; ++v) allowed = allowed || *value == *v;
    if (!allowed) {
      return Bad(absl::StrCat("field \"", spec->value_key, "\" is \"", *value, "\"; it must be ", what));
    }
    (spec->command == ControlCommand::kLabel ? out.verdict : out.tier) = *std::move(value);
  }
  return out;
}

absl::Status AuthorizeControlRequest(ControlCommand command, const ControlPeer& peer,
                                     std::optional<uint32_t> read_group) {
  if (peer.uid == 0) return absl::OkStatus();
  if (ControlCommandChangesState(command)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "\"", ControlCommandName(command), "\" changes what gputierd does and needs root; uid ", peer.uid,
        " may at most read (status, explain)"));
  }
  bool member = false;
  if (read_group.has_value()) {
    member = peer.gid == *read_group;
    for (uint32_t g : peer.groups) member = member || g == *read_group;
  }
  if (member) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "uid ", peer.uid, " may not ask gputierd anything: only root",
      read_group.has_value() ? absl::StrCat(" and members of group ", *read_group, " (control_read_group)")
                             : std::string("; set control_read_group in gputierd's config to let a group read "
                                           "status and explain")));
}

}  // namespace gputier
