#include "loader/runtime/runtime_table.h"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace gputier {
namespace {

absl::StatusOr<nlohmann::json> ParseObject(absl::string_view text, absl::string_view what) {
  if (text.size() > kMaxRuntimeFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is larger than ", kMaxRuntimeFileBytes, " bytes"));
  }
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, " is not a JSON object"));
  return j;
}

absl::StatusOr<pid_t> PidField(const nlohmann::json& j, const char* key, absl::string_view what) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() <= 0 ||
      it->get<int64_t>() > std::numeric_limits<pid_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " has no positive integer \"", key, "\""));
  }
  return static_cast<pid_t>(it->get<int64_t>());
}

absl::Status CheckBundle(const std::string& bundle, absl::string_view what) {
  if (bundle.empty() || bundle[0] != '/' || bundle.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what, " names no absolute bundle directory"));
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<RuntimeLayout>& RuntimeTable() {
  static const std::vector<RuntimeLayout>* const table = new std::vector<RuntimeLayout>{
      {"runc",
       {"runc"},
       {"/run/runc"},
       false,
       "the directory `runc run --bundle` was given (runc's state.json label)"},
      // podman (libpod) runs runc or crun with their default roots; the
      // bundle is <graphroot>/overlay-containers/<id>/userdata.
      {"podman",
       {"podman"},
       {"/run/runc", "/run/crun"},
       false,
       "/var/lib/containers/storage/overlay-containers/<id>/userdata"},
      // containerd's runc v2 shim: runc --root /run/containerd/runc/<namespace>
      // (k8s.io for Kubernetes, default for ctr and nerdctl); the bundle is
      // <containerd --state>/io.containerd.runtime.v2.task/<namespace>/<id>.
      {"containerd",
       {"containerd", "cri"},
       {"/run/containerd/runc"},
       true,
       "<containerd --state>/io.containerd.runtime.v2.task/<namespace>/<id>"},
      // CRI-O runs runc or crun with runtime_root /run/runc or /run/crun; the
      // bundle is <runroot>/overlay-containers/<id>/userdata.
      {"cri-o",
       {"cri-o", "cri"},
       {"/run/runc", "/run/crun"},
       false,
       "/run/containers/storage/overlay-containers/<id>/userdata"},
      // Docker's containerd namespace "moby", runc --root /run/docker/runtime-runc/moby.
      {"docker",
       {"docker"},
       {"/run/docker/runtime-runc"},
       true,
       "/run/containerd/io.containerd.runtime.v2.task/moby/<id>"},
  };
  return *table;
}

const RuntimeLayout* FindRuntime(absl::string_view name) {
  for (const RuntimeLayout& r : RuntimeTable()) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

std::vector<const RuntimeLayout*> RuntimesForCgroup(absl::string_view cgroup_runtime) {
  std::vector<const RuntimeLayout*> out;
  for (const RuntimeLayout& r : RuntimeTable()) {
    if (std::find(r.cgroup_runtimes.begin(), r.cgroup_runtimes.end(), cgroup_runtime) !=
        r.cgroup_runtimes.end()) {
      out.push_back(&r);
    }
  }
  if (out.empty()) {
    for (const RuntimeLayout& r : RuntimeTable()) out.push_back(&r);
  }
  return out;
}

const std::vector<std::string>& RootsOf(const TierConfig& config, const RuntimeLayout& runtime) {
  auto it = config.runtime_roots.find(runtime.name);
  return it != config.runtime_roots.end() ? it->second : runtime.default_roots;
}

absl::StatusOr<RuntimeState> ParseRuncState(absl::string_view json) {
  constexpr absl::string_view kWhat = "runc state.json";
  absl::StatusOr<nlohmann::json> j = ParseObject(json, kWhat);
  if (!j.ok()) return j.status();
  RuntimeState state;
  auto id = j->find("id");
  if (id == j->end() || !id->is_string() || id->get_ref<const std::string&>().empty()) {
    return absl::InvalidArgumentError("runc state.json has no \"id\"");
  }
  state.id = id->get<std::string>();
  absl::StatusOr<pid_t> pid = PidField(*j, "init_process_pid", kWhat);
  if (!pid.ok()) return pid.status();
  state.init_pid = *pid;
  auto config = j->find("config");
  if (config != j->end() && config->is_object()) {
    auto labels = config->find("labels");
    if (labels != config->end() && labels->is_array()) {
      for (const nlohmann::json& label : *labels) {
        if (!label.is_string()) continue;
        absl::string_view text = label.get_ref<const std::string&>();
        if (absl::ConsumePrefix(&text, "bundle=")) state.bundle = std::string(text);
      }
    }
  }
  if (absl::Status s = CheckBundle(state.bundle, kWhat); !s.ok()) return s;
  return state;
}

absl::StatusOr<RuntimeState> ParseCrunStatus(absl::string_view json) {
  constexpr absl::string_view kWhat = "crun status";
  absl::StatusOr<nlohmann::json> j = ParseObject(json, kWhat);
  if (!j.ok()) return j.status();
  RuntimeState state;
  absl::StatusOr<pid_t> pid = PidField(*j, "pid", kWhat);
  if (!pid.ok()) return pid.status();
  state.init_pid = *pid;
  auto bundle = j->find("bundle");
  if (bundle != j->end() && bundle->is_string()) state.bundle = bundle->get<std::string>();
  if (absl::Status s = CheckBundle(state.bundle, kWhat); !s.ok()) return s;
  return state;
}

}  // namespace gputier
