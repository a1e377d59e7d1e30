#include "loader/runtime/oci_config.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "loader/config/config_tiers.h"
#include "loader/config/container_path.h"
#include "loader/runtime/runtime_table.h"
#include "nlohmann/json.hpp"

namespace gputier {
namespace {

constexpr size_t kMaxNameBytes = 253;  // a DNS subdomain, Kubernetes' longest name
constexpr size_t kShortIdLength = 12;
constexpr size_t kMaxShownValue = 80;

bool IsName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes || name == "." || name == "..") return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

std::string NameOf(const std::map<std::string, std::string>& annotations, absl::string_view cri,
                   absl::string_view crio) {
  for (absl::string_view key : {cri, crio}) {
    auto it = annotations.find(std::string(key));
    if (it != annotations.end() && IsName(it->second)) return it->second;
  }
  return "";
}

// A value as shown in a warning: JSON-quoted (control bytes escaped), cut short.
std::string Shown(const std::string& value) {
  std::string cut = value.size() > kMaxShownValue ? absl::StrCat(value.substr(0, kMaxShownValue), "...") : value;
  return nlohmann::json(cut).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string Ignored(absl::string_view shown_name, absl::string_view key, const std::string& value,
                    absl::string_view problem, absl::string_view fix) {
  return absl::StrCat("container ", shown_name, ": annotation ", key, "=", Shown(value), " ", problem, "; ", fix,
                      " (ignored: the config applies)");
}

// "/a,/b" as container paths, or an error saying which is wrong.
absl::StatusOr<std::vector<std::string>> PathList(const std::string& value) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (part.empty()) return absl::InvalidArgumentError("has an empty entry");
    absl::StatusOr<ContainerPath> path = ParseContainerPath(part);
    if (!path.ok()) return path.status();
    if (absl::Status s = RefuseRuntimeManagedPath(path->path); !s.ok()) return s;
    for (const std::string& seen : out) {
      if (seen == path->path) return absl::InvalidArgumentError(absl::StrCat(path->path, " is listed twice"));
    }
    out.push_back(path->path);
  }
  if (out.size() > kMaxAnnotatedPaths) {
    return absl::InvalidArgumentError(absl::StrCat("names ", out.size(), " directories, more than ",
                                                    kMaxAnnotatedPaths));
  }
  return out;
}

bool Nested(absl::string_view a, absl::string_view b) {
  return a == b || (absl::StartsWith(a, b) && a.size() > b.size() && a[b.size()] == '/') ||
         (absl::StartsWith(b, a) && b.size() > a.size() && b[a.size()] == '/');
}

}  // namespace

WorkloadIdentity IdentityFromAnnotations(const std::map<std::string, std::string>& annotations) {
  WorkloadIdentity id;
  id.pod_namespace = NameOf(annotations, kCriSandboxNamespace, kCrioPodNamespace);
  id.pod = NameOf(annotations, kCriSandboxName, kCrioPodName);
  id.container = NameOf(annotations, kCriContainerName, kCrioContainerName);
  return id;
}

WorkloadOverrides OverridesFromAnnotations(const std::map<std::string, std::string>& annotations,
                                           absl::string_view shown_name, std::vector<std::string>* warnings) {
  WorkloadOverrides o;
  if (auto it = annotations.find(std::string(kTierAnnotation)); it != annotations.end()) {
    const std::string v = absl::AsciiStrToLower(absl::StripAsciiWhitespace(it->second));
    if (v == "auto" || v == "fast" || v == "slow") {
      o.tier = v;
    } else {
      warnings->push_back(Ignored(shown_name, kTierAnnotation, it->second, "is not auto, fast or slow",
                                  absl::StrCat("write ", kTierAnnotation, "=auto, fast or slow")));
    }
  }
  for (auto [key, out] : {std::pair{kTieredPathsAnnotation, &o.tiered_paths},
                          std::pair{kGpuDataPathsAnnotation, &o.gpu_data_paths}}) {
    auto it = annotations.find(std::string(key));
    if (it == annotations.end()) continue;
    absl::StatusOr<std::vector<std::string>> paths = PathList(it->second);
    if (!paths.ok()) {
      warnings->push_back(Ignored(shown_name, key, it->second, paths.status().message(),
                                  absl::StrCat("write ", key, "=/dir1,/dir2 with at most ", kMaxAnnotatedPaths,
                                               " absolute directories that hold the workload's own data")));
      continue;
    }
    *out = *std::move(paths);
  }
  if (o.tiered_paths && o.gpu_data_paths) {
    for (const std::string& a : *o.tiered_paths) {
      for (const std::string& b : *o.gpu_data_paths) {
        if (!Nested(a, b)) continue;
        warnings->push_back(Ignored(shown_name, kGpuDataPathsAnnotation, absl::StrJoin(*o.gpu_data_paths, ","),
                                    absl::StrCat("overlaps ", kTieredPathsAnnotation, " at ", a),
                                    "name each directory in one of the two annotations only"));
        o.gpu_data_paths.reset();
        return o;
      }
    }
  }
  return o;
}

std::string DisplayName(const WorkloadIdentity& identity, absl::string_view container_id) {
  if (!identity.pod_namespace.empty() && !identity.pod.empty() && !identity.container.empty()) {
    return absl::StrCat(identity.pod_namespace, "/", identity.pod, "/", identity.container);
  }
  if (identity.pod_namespace.empty() && identity.pod.empty() && !identity.container.empty()) {
    return identity.container;
  }
  return std::string(container_id.substr(0, kShortIdLength));
}

absl::StatusOr<OciWorkload> ParseOciConfig(absl::string_view json, absl::string_view container_id) {
  if (json.size() > kMaxRuntimeFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat("config.json is larger than ", kMaxRuntimeFileBytes, " bytes"));
  }
  nlohmann::json j = nlohmann::json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InvalidArgumentError("config.json is not a JSON object");
  OciWorkload w;
  auto annotations = j.find("annotations");
  if (annotations != j.end() && annotations->is_object()) {
    for (auto it = annotations->begin(); it != annotations->end(); ++it) {
      if (it.value().is_string()) w.annotations[it.key()] = it.value().get<std::string>();
    }
  }
  if (auto root = j.find("root"); root != j.end() && root->is_object()) {
    if (auto path = root->find("path"); path != root->end() && path->is_string()) {
      w.root_path = path->get<std::string>();
    }
  }
  w.identity = IdentityFromAnnotations(w.annotations);
  w.overrides = OverridesFromAnnotations(w.annotations, DisplayName(w.identity, container_id), &w.warnings);
  return w;
}

std::optional<std::string> PodmanNamesFile(absl::string_view bundle, absl::string_view container_id) {
  absl::string_view rest = bundle;
  while (rest.size() > 1 && rest.back() == '/') rest.remove_suffix(1);
  // <store>/<driver>-containers/<id>/userdata, for any storage driver
  // (overlay, vfs, btrfs, ...).
  const std::string tail = absl::StrCat("-containers/", container_id, "/userdata");
  if (container_id.empty() || !absl::ConsumeSuffix(&rest, tail)) return std::nullopt;
  const size_t slash = rest.rfind('/');
  if (slash == absl::string_view::npos || slash == 0 || rest[0] != '/') return std::nullopt;
  const absl::string_view driver = rest.substr(slash + 1);
  if (driver.empty() || driver.size() > 32) return std::nullopt;
  for (char ch : driver) {
    if (!absl::ascii_islower(ch) && !absl::ascii_isdigit(ch)) return std::nullopt;
  }
  return absl::StrCat(rest, "-containers/containers.json");
}

std::string PodmanNameOf(absl::string_view containers_json, absl::string_view container_id) {
  nlohmann::json j = nlohmann::json::parse(containers_json.begin(), containers_json.end(), nullptr, false);
  if (!j.is_array()) return "";
  for (const nlohmann::json& c : j) {
    if (!c.is_object()) continue;
    auto id = c.find("id");
    if (id == c.end() || !id->is_string() || id->get_ref<const std::string&>() != container_id) continue;
    auto names = c.find("names");
    if (names == c.end() || !names->is_array()) return "";
    for (const nlohmann::json& n : *names) {
      if (n.is_string() && IsName(n.get_ref<const std::string&>())) return n.get<std::string>();
    }
    return "";
  }
  return "";
}

}  // namespace gputier
