#include "loader/tier/tier_record.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "loader/base/atomic_file.h"
#include "loader/base/json_text.h"
#include "loader/config/container_path.h"
#include "loader/base/utf8.h"
#include "loader/runtime/oci_config.h"

namespace gputier {

absl::string_view TierOpName(TierOp op) {
  switch (op) {
    case TierOp::kPromote: return "promote";
    case TierOp::kDemote: return "demote";
    case TierOp::kNone: break;
  }
  return "none";
}

bool TierRecord::AnyFast() const {
  for (const auto& [path, tier] : paths) {
    if (tier == Tier::kFast) return true;
  }
  return false;
}

std::string TierRecordToJson(const TierRecord& r) {
  nlohmann::json paths = nlohmann::json::object();
  for (const auto& [path, tier] : r.paths) paths[path] = std::string(TierName(tier));
  nlohmann::json j = {{"version", kTierRecordVersion},
                      {"container_id", r.container_id},
                      {"key", r.key},
                      {"cgroup", r.cgroup},
                      {"mnt_ns", r.mnt_ns},
                      {"override", std::string(TierOverrideName(r.override_tier))},
                      {"paths", paths},
                      {"op", std::string(TierOpName(r.op))},
                      {"op_path", r.op_path},
                      {"froze", r.froze},
                      {"partition", r.partition}};
  // The cgroup path is the runtime's (and through it a tenant's) choice of
  // bytes, and gputierd needs them exactly to find the container again: a
  // name that is not UTF-8 is kept as hex in "cgroup_hex" ("cgroup" stays
  // for people, its bad bytes replaced). Paths are printable UTF-8
  // (ParseContainerPath) and container ids ASCII (ValidateContainerId).
  if (!IsValidUtf8(r.cgroup)) j["cgroup_hex"] = HexBytes(r.cgroup);
  // Only where the container's annotations named them: absent, the config's.
  if (r.tiered_paths) j["tiered_paths"] = *r.tiered_paths;
  if (r.gpu_data_paths) j["gpu_data_paths"] = *r.gpu_data_paths;
  return JsonText(j, 1) + "\n";
}

absl::StatusOr<TierRecord> TierRecordFromJson(absl::string_view json, absl::string_view source) {
  auto bad = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat(source, ": ", what,
                                            "; gputierd leaves this container alone until the file is "
                                            "fixed or removed (docs/TIERING.md)"));
  };
  nlohmann::json j = nlohmann::json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  if (!j.contains("version") || !j["version"].is_number_integer()) return bad("no layout version");
  // Compared as JSON numbers: a get<int>() would wrap 4294967297 to 1.
  // Version 1 (directories named by the container id) is still read.
  const bool v1 = j["version"] == 1;
  if (!v1 && j["version"] != kTierRecordVersion) {
    return bad(absl::StrCat("layout version ", j["version"].dump(), " is not this gputierd's ",
                            kTierRecordVersion, " (or 1)"));
  }
  try {
    TierRecord r;
    r.container_id = j.at("container_id").get<std::string>();
    if (absl::Status s = ValidateContainerId(r.container_id); !s.ok()) return bad(s.message());
    if (r.container_id[0] == '.') return bad("a container id starting with '.' names no tier directory");
    if (v1) {
      r.key = r.container_id;
    } else {
      r.key = j.at("key").get<std::string>();
      // The id alone (a version 1 record saved again) or "<id>-<inode>".
      const std::string prefix = absl::StrCat(r.container_id, "-");
      const std::string ino = absl::StartsWith(r.key, prefix) ? r.key.substr(prefix.size()) : "";
      const bool keyed = !ino.empty() && ino.size() <= 20 &&
                         std::all_of(ino.begin(), ino.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (r.key != r.container_id && !keyed) {
        return bad(absl::StrCat("key '", r.key, "' is neither the container id nor <id>-<cgroup inode>"));
      }
      if (absl::Status s = ValidateTierKey(r.key); !s.ok()) return bad(s.message());
    }
    r.cgroup = j.at("cgroup").get<std::string>();
    // Only a non-negative integer: get<uint64_t>() of a float such as 1e300
    // is undefined behaviour, and of -1 a wrapped inode number.
    if (!j.at("mnt_ns").is_number_unsigned()) return bad("mnt_ns is not an inode number (a whole number)");
    if (j.contains("cgroup_hex") && !BytesFromHex(j.at("cgroup_hex").get<std::string>(), &r.cgroup)) {
      return bad("cgroup_hex is not hex");
    }
    r.mnt_ns = j.at("mnt_ns").get<uint64_t>();
    absl::StatusOr<TierOverride> o = ParseTierOverride(j.at("override").get<std::string>());
    if (!o.ok()) return bad(o.status().message());
    r.override_tier = *o;
    for (const auto& [path, tier] : j.at("paths").items()) {
      absl::StatusOr<ContainerPath> p = ParseContainerPath(path);
      absl::StatusOr<Tier> t = ParseTier(tier.get<std::string>());
      if (!p.ok() || p->path != path || !t.ok()) return bad(absl::StrCat("bad path entry '", path, "'"));
      r.paths[path] = *t;
    }
    const std::string op = j.at("op").get<std::string>();
    if (op == "none") {
      r.op = TierOp::kNone;
    } else if (op == "promote") {
      r.op = TierOp::kPromote;
    } else if (op == "demote") {
      r.op = TierOp::kDemote;
    } else {
      return bad(absl::StrCat("unknown op '", op, "'"));
    }
    r.op_path = j.at("op_path").get<std::string>();
    if (r.op != TierOp::kNone && !r.paths.count(r.op_path)) return bad("op_path is not one of its paths");
    r.froze = j.at("froze").get<bool>();
    r.partition = j.at("partition").get<bool>();
    for (auto [key, out] : {std::pair{"tiered_paths", &r.tiered_paths}, std::pair{"gpu_data_paths", &r.gpu_data_paths}}) {
      if (!j.contains(key)) continue;
      const nlohmann::json& list = j.at(key);
      if (!list.is_array() || list.size() > kMaxAnnotatedPaths) {
        return bad(absl::StrCat(key, " is not a list of at most ", kMaxAnnotatedPaths, " paths"));
      }
      std::vector<std::string> paths;
      for (const nlohmann::json& e : list) {
        absl::StatusOr<ContainerPath> p = ParseContainerPath(e.get<std::string>());
        if (!p.ok() || p->path != e.get<std::string>()) return bad(absl::StrCat("bad ", key, " entry ", e.dump()));
        paths.push_back(p->path);
      }
      *out = std::move(paths);
    }
    return r;
  } catch (const nlohmann::json::exception& e) {
    return bad(absl::StrCat("a field is missing or has the wrong type (", e.what(), ")"));
  }
}

absl::Status TierRecordStore::Init() const {
  for (size_t pos = 1; pos <= dir_.size(); ++pos) {
    if (pos != dir_.size() && dir_[pos] != '/') continue;
    if (mkdir(dir_.substr(0, pos).c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, absl::StrCat("creating ", dir_.substr(0, pos)));
    }
  }
  return absl::OkStatus();
}

TierRecordStore::Loaded TierRecordStore::LoadAll() const {
  Loaded out;
  DIR* d = opendir(dir_.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (!absl::EndsWith(name, ".json")) continue;
    const std::string path = absl::StrCat(dir_, "/", name);
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<TierRecord> r = TierRecordFromJson(text.str(), path);
    if (!r.ok()) {
      out.refused.push_back(std::string(r.status().message()));
    } else if (absl::StrCat(r->container_id, ".json") != name) {
      out.refused.push_back(absl::StrCat(path, ": names container ", r->container_id,
                                         ", not its file name; left alone"));
    } else {
      out.records.push_back(*std::move(r));
    }
  }
  closedir(d);
  return out;
}

absl::Status TierRecordStore::Save(const TierRecord& record) const {
  if (absl::Status s = ValidateContainerId(record.container_id); !s.ok()) return s;
  return WriteFileAtomically(absl::StrCat(dir_, "/", record.container_id, ".json"), TierRecordToJson(record));
}

absl::Status TierRecordStore::Remove(const std::string& container_id) const {
  if (absl::Status s = ValidateContainerId(container_id); !s.ok()) return s;
  const std::string path = absl::StrCat(dir_, "/", container_id, ".json");
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::ErrnoToStatus(errno, absl::StrCat("removing ", path));
  }
  return absl::OkStatus();
}

}  // namespace gputier
