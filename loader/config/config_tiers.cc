#include "loader/config/config_tiers.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "loader/config/container_path.h"
#include "loader/config/yaml_fields.h"

namespace gputier {
namespace {

constexpr uint64_t kMinPartition = uint64_t{16} << 20;

std::string Shown(const YAML::Node& value) {
  return value.IsScalar() ? Quote(value.Scalar()) : std::string(KindOf(value));
}

absl::StatusOr<std::string> TierRoot(absl::string_view source, const MapEntry& e,
                                     const std::string& key) {
  if (!IsPlainScalar(e.value) && !(e.value.IsScalar() && !e.value.Scalar().empty())) {
    return Invalid(source, e.Location(), key, absl::StrCat("is ", Shown(e.value), ", not a directory"),
                   "write an absolute host directory such as /mnt/nvme/gputier");
  }
  std::string path = e.value.Scalar();
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (absl::Status s = ValidateTierRoot(path); !s.ok()) {
    return Invalid(source, e.Location(), key, s.message(),
                   "write an absolute host directory such as /mnt/nvme/gputier");
  }
  return path;
}

bool Within(absl::string_view inner, absl::string_view outer) {
  return inner == outer || (absl::StartsWith(inner, outer) && inner.size() > outer.size() &&
                            (outer == "/" || inner[outer.size()] == '/'));
}

}  // namespace

absl::Status ValidateTierRoot(absl::string_view path) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(Quote(path), " is not an absolute path"));
  }
  if (path == "/") return absl::InvalidArgumentError("'/' cannot be a tier root");
  for (char c : path) {
    if (c == ',' || c == ':' || c == '\\' || absl::ascii_isspace(c) || absl::ascii_iscntrl(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat(Quote(path), " contains ", Quote(std::string(1, c)),
                       ", which overlay mount options cannot carry"));
    }
  }
  for (absl::string_view part : {"/../", "/./"}) {
    if (absl::StrContains(absl::StrCat(path, "/"), part)) {
      return absl::InvalidArgumentError(absl::StrCat(Quote(path), " contains '.' or '..'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  size_t end = 0;
  while (end < t.size() && (absl::ascii_isdigit(t[end]) || t[end] == '.')) ++end;
  absl::string_view number = t.substr(0, end);
  absl::string_view unit = absl::StripAsciiWhitespace(t.substr(end));
  double value = 0;
  if (number.empty() || !absl::SimpleAtod(number, &value) || !std::isfinite(value)) {
    return absl::InvalidArgumentError(absl::StrCat(Quote(text), " is not a size"));
  }
  std::string u = absl::AsciiStrToLower(unit);
  if (absl::EndsWith(u, "b")) u.pop_back();
  if (absl::EndsWith(u, "i")) u.pop_back();
  int shift = 0;
  if (u.empty()) {
    shift = 0;
  } else if (u == "k") {
    shift = 10;
  } else if (u == "m") {
    shift = 20;
  } else if (u == "g") {
    shift = 30;
  } else if (u == "t") {
    shift = 40;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(Quote(text), " has an unknown unit ", Quote(unit)));
  }
  const double bytes = std::ldexp(value, shift);
  if (bytes >= 1.8e19) return absl::InvalidArgumentError(absl::StrCat(Quote(text), " is too large"));
  return static_cast<uint64_t>(bytes);
}

absl::Status ParseTiers(absl::string_view source, const YAML::Node& node, TierConfig* tiers) {
  if (node.IsNull()) return absl::OkStatus();
  if (!node.IsMap()) {
    return Invalid(source, node, "tiers", absl::StrCat("is ", KindOf(node), ", not a mapping"),
                   "write fast: DIR and slow: DIR under it");
  }
  absl::StatusOr<std::vector<MapEntry>> entries = MappingEntries(source, node, "tiers");
  if (!entries.ok()) return entries.status();
  bool fast = false, slow = false;
  for (const MapEntry& e : *entries) {
    const std::string key = absl::StrCat("tiers.", e.key);
    if (e.key == "fast" || e.key == "slow") {
      absl::StatusOr<std::string> root = TierRoot(source, e, key);
      if (!root.ok()) return root.status();
      (e.key == "fast" ? tiers->fast_root : tiers->slow_root) = *root;
      (e.key == "fast" ? fast : slow) = true;
    } else if (e.key == "partition_size") {
      absl::StatusOr<uint64_t> size = IsPlainScalar(e.value)
                                          ? ParseByteSize(e.value.Scalar())
                                          : absl::InvalidArgumentError("not a size");
      if (!size.ok()) {
        return Invalid(source, e.Location(), key, absl::StrCat("is ", Shown(e.value), ", not a size"),
                       "write a size such as 2GiB, 512MiB or a number of bytes");
      }
      if (*size < kMinPartition) {
        return Invalid(source, e.Location(), key, absl::StrCat(*size, " bytes is below 16MiB"),
                       "give each container's fast partition at least 16MiB");
      }
      tiers->partition_size = *size;
    } else if (e.key == "high_watermark" || e.key == "low_watermark") {
      double v = 0;
      if (!IsPlainScalar(e.value) || !absl::SimpleAtod(e.value.Scalar(), &v) || !(v > 0 && v <= 1)) {
        return Invalid(source, e.Location(), key, absl::StrCat("is ", Shown(e.value), ", not in (0, 1]"),
                       "write the fraction of the fast tier's filesystem in use, such as 0.9");
      }
      (e.key == "high_watermark" ? tiers->high_watermark : tiers->low_watermark) = v;
    } else if (e.key == "demote_wait") {
      absl::StatusOr<absl::Duration> wait =
          ParseDurationValue(source, e, key, absl::Milliseconds(100), absl::Hours(24));
      if (!wait.ok()) return wait.status();
      tiers->demote_wait = *wait;
    } else if (e.key == "exited_retention") {
      absl::StatusOr<absl::Duration> keep =
          ParseDurationValue(source, e, key, absl::ZeroDuration(), absl::Hours(24 * 30));
      if (!keep.ok()) return keep.status();
      tiers->exited_retention = *keep;
    } else if (e.key == "slow_quota") {
      absl::StatusOr<uint64_t> quota = IsPlainScalar(e.value)
                                           ? ParseByteSize(e.value.Scalar())
                                           : absl::InvalidArgumentError("not a size");
      if (!quota.ok()) {
        return Invalid(source, e.Location(), key, absl::StrCat("is ", Shown(e.value), ", not a size"),
                       "write a size such as 50GiB, or 0 for no quota");
      }
      tiers->slow_quota = *quota;
    } else {
      return Invalid(source, e.key_node, key, "is not a known key",
                     "the keys of tiers are fast, slow, partition_size, high_watermark, low_watermark, "
                     "demote_wait, exited_retention, slow_quota");
    }
  }
  if (fast != slow) {
    return Invalid(source, node, "tiers", absl::StrCat("names only the ", fast ? "fast" : "slow", " tier"),
                   "give both tiers.fast and tiers.slow, or neither for the built-in default under "
                   "/var/lib/gputier");
  }
  if (fast) {
    tiers->embedded_roots = false;
    if (Within(tiers->fast_root, tiers->slow_root) || Within(tiers->slow_root, tiers->fast_root)) {
      return Invalid(source, node, "tiers",
                     absl::StrCat("fast ", Quote(tiers->fast_root), " and slow ", Quote(tiers->slow_root),
                                  " overlap"),
                     "give two separate directories, one on each device");
    }
  }
  if (tiers->low_watermark > tiers->high_watermark) {
    return Invalid(source, node, "tiers",
                   absl::StrCat("low_watermark ", tiers->low_watermark, " is above high_watermark ",
                                tiers->high_watermark),
                   "demotion stops at low_watermark, so it must be at or below high_watermark");
  }
  return absl::OkStatus();
}

absl::Status RefuseRuntimeManagedPath(absl::string_view path) {
  // Pseudo-filesystems and what the runtime mounts for the container: an
  // overlay over them would hide the kernel's files or the runtime's.
  struct Managed {
    const char* root;
    const char* why;
  };
  static constexpr Managed kTrees[] = {
      {"/proc", "is the kernel's procfs"},
      {"/sys", "is the kernel's sysfs"},
      {"/dev", "holds the container's device nodes, set up by the runtime"},
      {"/run", "is the runtime's tmpfs (secrets, sockets, state)"},
  };
  for (const Managed& m : kTrees) {
    if (Within(std::string(path), m.root)) {
      return absl::InvalidArgumentError(
          path == m.root ? absl::StrCat(Quote(path), " ", m.why, "; it cannot be tiered")
                         : absl::StrCat(Quote(path), " is under ", m.root, ", which ", m.why,
                                        "; it cannot be tiered"));
    }
  }
  static constexpr const char* kRuntimeFiles[] = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf",
                                                  "/etc/mtab"};
  for (const char* f : kRuntimeFiles) {
    if (path == f) {
      return absl::InvalidArgumentError(absl::StrCat(
          Quote(path), " is a file the runtime bind-mounts into the container; it cannot be tiered"));
    }
  }
  if (path == "/") {
    return absl::InvalidArgumentError(
        "\"/\" is the container's whole root; tier the directories that hold its data instead");
  }
  return absl::OkStatus();
}

absl::Status ParseContainerPathList(absl::string_view source, const YAML::Node& node,
                                    absl::string_view key, std::vector<std::string>* out) {
  out->clear();
  if (node.IsNull()) return absl::OkStatus();
  if (!node.IsSequence()) {
    return Invalid(source, node, key, absl::StrCat("is ", KindOf(node), ", not a list"),
                   "write a list of absolute directories inside containers, such as [/data]");
  }
  for (size_t i = 0; i < node.size(); ++i) {
    const YAML::Node item = node[i];
    const std::string where = absl::StrCat(key, "[", i, "]");
    if (!item.IsScalar()) {
      return Invalid(source, item, where, absl::StrCat("is ", KindOf(item), ", not a path"),
                     "write an absolute directory inside the container, such as /data");
    }
    absl::StatusOr<ContainerPath> path = ParseContainerPath(item.Scalar());
    if (!path.ok()) return Invalid(source, item, where, path.status().message(), "fix the path");
    if (absl::Status s = RefuseRuntimeManagedPath(path->path); !s.ok()) {
      return Invalid(source, item, where, s.message(),
                     "name a directory that holds the workload's own data, such as /data");
    }
    for (const std::string& seen : *out) {
      if (seen == path->path) {
        return Invalid(source, item, where, absl::StrCat(Quote(path->path), " is listed twice"),
                       "list each directory once");
      }
    }
    out->push_back(path->path);
  }
  return absl::OkStatus();
}

const std::vector<std::string>& KnownRuntimeNames() {
  static const std::vector<std::string>* const names =
      new std::vector<std::string>{"runc", "podman", "containerd", "cri-o", "docker"};
  return *names;
}

namespace {

// A list of absolute directories, each once.
absl::Status ParseRootList(absl::string_view source, const YAML::Node& node, const std::string& key,
                           std::vector<std::string>* out) {
  if (!node.IsSequence()) {
    return Invalid(source, node, key, absl::StrCat("is ", KindOf(node), ", not a list"),
                   "write a list of the runtime's state directories, such as [/run/runc]");
  }
  out->clear();
  for (size_t i = 0; i < node.size(); ++i) {
    const YAML::Node item = node[i];
    const std::string where = absl::StrCat(key, "[", i, "]");
    std::string path = item.IsScalar() ? item.Scalar() : "";
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    if (absl::Status s = ValidateTierRoot(path); !s.ok() || path == "/") {
      return Invalid(source, item, where, "is not an absolute directory",
                     "write the runtime's --root directory, such as /run/runc");
    }
    for (const std::string& seen : *out) {
      if (seen == path) {
        return Invalid(source, item, where, absl::StrCat(Quote(path), " is listed twice"),
                       "list each directory once");
      }
    }
    out->push_back(path);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseRuntimeRoots(absl::string_view source, const YAML::Node& node,
                               std::map<std::string, std::vector<std::string>>* out) {
  const std::string names = absl::StrJoin(KnownRuntimeNames(), ", ");
  if (!node.IsMap()) {
    return Invalid(source, node, "runtime_roots", absl::StrCat("is ", KindOf(node), ", not a mapping"),
                   absl::StrCat("write runtime: [directories] for runtimes of ", names,
                                ", such as {runc: [/run/runc]}"));
  }
  absl::StatusOr<std::vector<MapEntry>> entries = MappingEntries(source, node, "runtime_roots");
  if (!entries.ok()) return entries.status();
  for (const MapEntry& e : *entries) {
    const std::string key = absl::StrCat("runtime_roots.", e.key);
    if (std::find(KnownRuntimeNames().begin(), KnownRuntimeNames().end(), e.key) ==
        KnownRuntimeNames().end()) {
      return Invalid(source, e.key_node, key, "is not a runtime gputier knows",
                     absl::StrCat("name one of ", names));
    }
    if (absl::Status s = ParseRootList(source, e.value, key, &(*out)[e.key]); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ParseTieredCgroups(absl::string_view source, const YAML::Node& node,
                                std::vector<std::string>* out) {
  const char* fix = "write a list of cgroup paths as /proc/<pid>/cgroup shows them, such as [/kubepods]";
  if (!node.IsSequence()) {
    return Invalid(source, node, "tiered_cgroups", absl::StrCat("is ", KindOf(node), ", not a list"), fix);
  }
  out->clear();
  for (size_t i = 0; i < node.size(); ++i) {
    const YAML::Node item = node[i];
    if (!item.IsScalar() || item.Scalar().empty() || item.Scalar()[0] != '/') {
      return Invalid(source, item, absl::StrCat("tiered_cgroups[", i, "]"), "is not an absolute path", fix);
    }
    std::string p = item.Scalar();
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    out->push_back(std::move(p));
  }
  return absl::OkStatus();
}

bool InTieredCgroups(const TierConfig& tiers, absl::string_view cgroup_path) {
  if (tiers.tiered_cgroups.empty()) return true;
  for (const std::string& p : tiers.tiered_cgroups) {
    if (p == "/" || cgroup_path == p ||
        (absl::StartsWith(cgroup_path, p) && cgroup_path.size() > p.size() && cgroup_path[p.size()] == '/')) {
      return true;
    }
  }
  return false;
}

absl::Status ParseRuncRoots(absl::string_view source, const YAML::Node& node,
                            std::map<std::string, std::vector<std::string>>* out,
                            std::vector<std::string>* notes) {
  std::vector<std::string> roots;
  if (absl::Status s = ParseRootList(source, node, "runc_roots", &roots); !s.ok()) return s;
  notes->push_back(absl::StrCat(source, ": runc_roots is deprecated; write runtime_roots: {runc: [",
                                absl::StrJoin(roots, ", "), "]} instead"));
  (*out)["runc"] = std::move(roots);
  return absl::OkStatus();
}

absl::Status ValidateTierPaths(absl::string_view source, const TierConfig& tiers) {
  std::vector<std::pair<std::string, std::string>> all;  // (path, key)
  for (const std::string& p : tiers.tiered_paths) all.emplace_back(p, "tiered_paths");
  for (const std::string& p : tiers.gpu_data_paths) all.emplace_back(p, "gpu_data_paths");
  for (size_t i = 0; i < all.size(); ++i) {
    for (size_t j = i + 1; j < all.size(); ++j) {
      if (Within(all[i].first, all[j].first) || Within(all[j].first, all[i].first)) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": ", all[i].second, " ", Quote(all[i].first), " and ", all[j].second, " ",
            Quote(all[j].first),
            " overlap; each tiered directory gets its own overlay, so list directories that do not "
            "contain one another"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace gputier
