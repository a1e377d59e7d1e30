#include "loader/runtime/runtime_confirm.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "loader/base/fd.h"
#include "loader/base/read_file.h"
#include "loader/config/container_path.h"

namespace gputier {
namespace {

// podman lists every container of its storage in one file.
constexpr size_t kMaxPodmanNamesBytes = size_t{16} << 20;

// openat2 beneath `dir_fd`, no symlinks anywhere, no crossing mounts.
int OpenBeneath(int dir_fd, const std::string& name, uint64_t flags) {
  struct open_how how = {};
  how.flags = flags | O_CLOEXEC | O_NOFOLLOW;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  return static_cast<int>(syscall(SYS_openat2, dir_fd, name.c_str(), &how, sizeof(how)));
}

// The directories under `root` that may hold container `id`'s state:
// <root>/<id>, or <root>/<namespace>/<id> for every namespace.
std::vector<std::string> StateDirsOf(const std::string& root, const RuntimeLayout& runtime,
                                     const std::string& id) {
  if (!runtime.namespaced) return {id};
  std::vector<std::string> out;
  DIR* dir = opendir(root.c_str());
  if (dir == nullptr) return out;
  while (struct dirent* e = readdir(dir)) {
    const std::string ns = e->d_name;
    if (ns == "." || ns == ".." || !ValidateContainerId(ns).ok()) continue;
    out.push_back(absl::StrCat(ns, "/", id));
  }
  closedir(dir);
  return out;
}

// The state in <root>/<relative>, or NotFound.
absl::StatusOr<RuntimeState> ReadState(const std::string& root, const std::string& relative) {
  Fd root_fd(open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.valid()) return absl::NotFoundError(absl::StrCat(root, " does not exist"));
  Fd dir(OpenBeneath(root_fd.get(), relative, O_PATH | O_DIRECTORY));
  if (!dir.valid()) return absl::NotFoundError(absl::StrCat(root, "/", relative, " does not exist"));
  const std::string shown = absl::StrCat(root, "/", relative);
  absl::StatusOr<std::string> text = ReadBeneath(dir.get(), std::string(kRuncStateFile), shown, kMaxRuntimeFileBytes);
  if (text.ok()) return ParseRuncState(*text);
  text = ReadBeneath(dir.get(), std::string(kCrunStateFile), shown, kMaxRuntimeFileBytes);
  if (text.ok()) return ParseCrunStatus(*text);
  return absl::NotFoundError(absl::StrCat(shown, " holds no ", kRuncStateFile, " or ", kCrunStateFile));
}

bool Within(absl::string_view inner, absl::string_view outer) {
  return inner == outer || (absl::StartsWith(inner, outer) && inner.size() > outer.size() &&
                            (outer == "/" || inner[outer.size()] == '/'));
}

}  // namespace

// The cgroup v2 path of `pid`, or "" when it is gone.
std::string CgroupOfPid(pid_t pid) {
  absl::StatusOr<std::string> text = ReadFile(absl::StrCat("/proc/", pid, "/cgroup"), 0, 64 << 10);
  if (!text.ok()) return "";
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (absl::ConsumePrefix(&line, "0::")) return std::string(line);
  }
  return "";
}

absl::StatusOr<std::string> ReadBeneath(int dir_fd, const std::string& name, const std::string& shown,
                                        size_t max_bytes) {
  Fd fd(OpenBeneath(dir_fd, name, O_RDONLY | O_NONBLOCK));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("opening ", shown, "/", name));
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("stat ", shown, "/", name));
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(shown, "/", name, " is not a regular file"));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return absl::FailedPreconditionError(
        absl::StrCat(shown, "/", name, " is larger than ", max_bytes, " bytes"));
  }
  std::string text;
  if (int err = ReadAll(fd.get(), &text, max_bytes + 1); err != 0) {
    return absl::ErrnoToStatus(err, absl::StrCat("reading ", shown, "/", name));
  }
  if (text.size() > max_bytes) {
    return absl::FailedPreconditionError(
        absl::StrCat(shown, "/", name, " is larger than ", max_bytes, " bytes"));
  }
  return text;
}

absl::StatusOr<std::string> ReadBundleConfig(const std::string& bundle) {
  // The bundle's path is the runtime's (root's) choice and may pass through
  // /var/run; what lies beneath it is not followed through symlinks.
  Fd dir(open(bundle.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("opening bundle ", bundle));
  return ReadBeneath(dir.get(), "config.json", bundle, kMaxRuntimeFileBytes);
}

absl::StatusOr<OciWorkload> ReadWorkload(const ConfirmedContainer& container) {
  const std::string& id = container.state.id;
  absl::StatusOr<std::string> text = ReadBundleConfig(container.state.bundle);
  if (!text.ok()) return text.status();
  absl::StatusOr<OciWorkload> workload = ParseOciConfig(*text, id);
  if (!workload.ok()) {
    return absl::Status(workload.status().code(),
                        absl::StrCat(container.state.bundle, "/", workload.status().message()));
  }
  const WorkloadIdentity& who = workload->identity;
  if (container.runtime == "podman" && who.pod.empty() && who.pod_namespace.empty() && who.container.empty()) {
    if (std::optional<std::string> names = PodmanNamesFile(container.state.bundle, id)) {
      const std::string dir = names->substr(0, names->rfind('/'));
      Fd fd(open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      absl::StatusOr<std::string> list =
          fd.valid() ? ReadBeneath(fd.get(), "containers.json", dir, kMaxPodmanNamesBytes)
                     : absl::StatusOr<std::string>(absl::NotFoundError(dir));
      if (list.ok()) workload->identity.container = PodmanNameOf(*list, id);
    }
  }
  return workload;
}

absl::StatusOr<ConfirmedContainer> ConfirmWithRuntime(const TierConfig& config,
                                                      absl::string_view cgroup_runtime,
                                                      const std::string& id,
                                                      const std::string& cgroup) {
  if (absl::Status s = ValidateContainerId(id); !s.ok()) return s;
  std::vector<std::string> looked;
  std::vector<std::string> keys;
  for (const RuntimeLayout* runtime : RuntimesForCgroup(cgroup_runtime)) {
    keys.push_back(absl::StrCat("runtime_roots.", runtime->name));
    for (const std::string& root : RootsOf(config, *runtime)) {
      looked.push_back(root);
      for (const std::string& relative : StateDirsOf(root, *runtime, id)) {
        absl::StatusOr<RuntimeState> state = ReadState(root, relative);
        if (!state.ok()) continue;
        if (!state->id.empty() && state->id != id) {
          return absl::FailedPreconditionError(absl::StrCat(root, "/", relative, " names container \"",
                                                            state->id, "\", not ", id));
        }
        state->id = id;
        const std::string init_cgroup = CgroupOfPid(state->init_pid);
        if (!Within(init_cgroup, cgroup)) {
          return absl::FailedPreconditionError(absl::StrCat(
              "cgroup ", cgroup, " is named like container ", id, ", but ", runtime->name,
              " runs that container's init (pid ", state->init_pid, ") in ",
              init_cgroup.empty() ? std::string("no cgroup (gone)") : init_cgroup,
              "; nothing is mounted"));
        }
        ConfirmedContainer out;
        out.runtime = runtime->name;
        out.state_dir = absl::StrCat(root, "/", relative);
        out.state = *std::move(state);
        return out;
      }
    }
  }
  std::sort(looked.begin(), looked.end());
  looked.erase(std::unique(looked.begin(), looked.end()), looked.end());
  return absl::NotFoundError(absl::StrCat(
      "no container runtime knows container ", id, " of cgroup ", cgroup, " (looked in ",
      absl::StrJoin(looked, ", "), "); nothing is mounted. If it runs under another runtime root, add it to ",
      absl::StrJoin(keys, " or ")));
}

}  // namespace gputier
