#include "loader/config/config_enforcement.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gputier/abi.h"
#include "loader/config/yaml_fields.h"

namespace gputier {
namespace {

// "/a/b" with no empty, "." or ".." parts and no trailing slash ("/" alone is
// the root cgroup, which is refused: it would exempt every host process).
bool IsCgroupPath(absl::string_view p) {
  if (p.size() < 2 || p[0] != '/' || p.back() == '/') return false;
  for (absl::string_view part : absl::StrSplit(p.substr(1), '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return !absl::StrContains(p, '\n');
}

}  // namespace

absl::StatusOr<Enforcement> ParseEnforcementName(absl::string_view text) {
  if (text == "off") return Enforcement::kOff;
  if (text == "audit") return Enforcement::kAudit;
  if (text == "enforce") return Enforcement::kEnforce;
  return absl::InvalidArgumentError(absl::StrCat(Quote(text), " is not an enforcement mode"));
}

std::string EnforcementName(Enforcement mode) {
  switch (mode) {
    case Enforcement::kOff: return "off";
    case Enforcement::kAudit: return "audit";
    case Enforcement::kEnforce: return "enforce";
  }
  return "?";
}

absl::Status ParseEnforcementMode(absl::string_view source, const YAML::Node& node,
                                  EnforcementConfig* out) {
  // YAML 1.1 reads a bare `off` as a boolean; yaml-cpp keeps it a scalar.
  if (!node.IsScalar() || !IsPlainScalar(node) || !ParseEnforcementName(node.Scalar()).ok()) {
    return Invalid(source, node, "enforcement",
                   node.IsScalar() ? absl::StrCat("is ", Quote(node.Scalar()))
                                   : absl::StrCat("is ", KindOf(node)),
                   "write off, audit (the default: record, deny nothing) or enforce (record and "
                   "deny)");
  }
  out->mode = *ParseEnforcementName(node.Scalar());
  out->mode_from_file = true;
  return absl::OkStatus();
}

absl::Status ParseEnforcementIfUnavailable(absl::string_view source, const YAML::Node& node,
                                           EnforcementConfig* out) {
  if (node.IsScalar() && IsPlainScalar(node) && node.Scalar() == "fail") {
    out->off_if_unavailable = false;
    return absl::OkStatus();
  }
  if (node.IsScalar() && IsPlainScalar(node) && node.Scalar() == "off") {
    out->off_if_unavailable = true;
    return absl::OkStatus();
  }
  return Invalid(source, node, "enforcement_if_unavailable",
                 node.IsScalar() ? absl::StrCat("is ", Quote(node.Scalar()))
                                 : absl::StrCat("is ", KindOf(node)),
                 "write fail (the default: gputierd refuses to start without LSM mode when "
                 "enforcement is enforce) or off (run without the guard, and say so)");
}

absl::Status ParseExemptCgroups(absl::string_view source, const YAML::Node& node,
                                EnforcementConfig* out) {
  out->exempt_cgroups.clear();
  if (node.IsNull()) return absl::OkStatus();
  if (!node.IsSequence()) {
    return Invalid(source, node, "enforcement_exempt_cgroups",
                   absl::StrCat("is ", KindOf(node), ", not a list"),
                   "write a list of cgroup paths from the cgroup2 root, such as "
                   "[/system.slice/backup.service]");
  }
  if (node.size() > GT_MAX_EXEMPT) {
    return Invalid(source, node, "enforcement_exempt_cgroups",
                   absl::StrCat("lists ", node.size(), " cgroups, more than the ", GT_MAX_EXEMPT,
                                " the exempt map holds"),
                   "exempt a parent service's cgroups only");
  }
  for (size_t i = 0; i < node.size(); ++i) {
    const YAML::Node item = node[i];
    const std::string where = absl::StrCat("enforcement_exempt_cgroups[", i, "]");
    if (!item.IsScalar() || !IsCgroupPath(item.Scalar())) {
      return Invalid(source, item, where,
                     item.IsScalar() ? absl::StrCat(Quote(item.Scalar()), " is not a cgroup path")
                                     : absl::StrCat("is ", KindOf(item), ", not a cgroup path"),
                     "write the cgroup's path from the cgroup2 root, such as "
                     "/system.slice/backup.service (the root cgroup itself cannot be exempt)");
    }
    out->exempt_cgroups.push_back(item.Scalar());
  }
  return absl::OkStatus();
}

}  // namespace gputier
