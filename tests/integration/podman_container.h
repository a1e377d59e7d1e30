// Podman (rootful, Debian's podman 4.3) for tests, with a private store.
//
// PodmanStore keeps everything of podman's under one temp directory: its
// storage (--root, overlay driver), run state (--runroot) and --tmpdir, so a
// test never sees or changes the node's podman containers and images. It
// imports one image from a busybox rootfs (`podman import`; no registry).
// Flags this machine needs live here and never in the product: `--runtime
// runc` (crun refuses the hybrid cgroup hierarchy) and --ulimit values no
// higher than this process's own (there is no CAP_SYS_RESOURCE to raise them).
//
// Podman runs runc without --root, so runc's state is in its default root
// (/run/runc for root): StateRoots() says so. The destructor removes every
// container and the image, unmounts the store, removes the parent cgroups
// podman made (/libpod_parent) when empty and new, and the directory.
#ifndef GPUTIER_TESTS_INTEGRATION_PODMAN_CONTAINER_H_
#define GPUTIER_TESTS_INTEGRATION_PODMAN_CONTAINER_H_

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/integration/runc_container.h"
#include "tests/integration/runtime_container.h"

namespace gputier::testing {

// Why podman tests cannot run here (also every reason runc tests cannot),
// or empty when they can.
std::string PodmanTestsCannotRunBecause();

class PodmanStore {
 public:
  struct Options {
    // Global podman flags added to every call (e.g. --hooks-dir DIR).
    std::vector<std::string> global_args;
    // Directories in the image's rootfs.
    std::vector<std::string> directories = {"/data"};
  };
  static absl::StatusOr<std::unique_ptr<PodmanStore>> Create(const Options& options);
  ~PodmanStore();
  PodmanStore(const PodmanStore&) = delete;
  PodmanStore& operator=(const PodmanStore&) = delete;

  // Runs `podman <private store flags> <args>`.
  absl::StatusOr<CommandResult> Podman(const std::vector<std::string>& args) const;
  // The same, as an error unless it exits 0; returns its output.
  absl::StatusOr<std::string> PodmanOk(const std::vector<std::string>& args) const;

  // The imported image ("localhost/gputier-test-<pid>-<n>:1").
  const std::string& image() const { return image_; }
  // Writes the image as an OCI archive (`podman save --format oci-archive`),
  // which `ctr image import` takes.
  absl::Status SaveOciArchive(const std::string& path) const;
  // Where runc keeps the state of this store's containers (runc_roots).
  std::vector<std::string> StateRoots() const;
  const std::string& dir() const { return dir_->path(); }

 private:
  PodmanStore() = default;
  std::unique_ptr<TempDir> dir_;
  std::vector<std::string> base_args_;
  std::string image_;
  std::vector<std::string> cgroups_before_;
};

class PodmanContainer : public RuntimeContainer {
 public:
  // `podman run -d` of the store's image; waits until its init runs.
  static absl::StatusOr<std::unique_ptr<PodmanContainer>> Start(const PodmanStore& store,
                                                                const RuntimeContainerOptions& options);
  ~PodmanContainer() override;  // podman rm -f -t 0

  std::string runtime() const override { return "podman"; }
  const std::string& id() const override { return id_; }
  pid_t pid() const override { return pid_; }
  const std::string& cgroup() const override { return cgroup_; }
  absl::StatusOr<CommandResult> Exec(const std::string& script) const override;
  absl::StatusOr<bool> Exited() const override;
  absl::Status Stop(std::chrono::seconds grace) override;  // podman stop -t
  absl::Status Kill() override;                            // podman kill (SIGKILL)
  absl::Status Remove() override;                          // podman rm -f

  // `podman inspect` of this container (the first element).
  absl::StatusOr<nlohmann::json> Inspect() const;

 private:
  explicit PodmanContainer(const PodmanStore& store) : store_(store) {}
  const PodmanStore& store_;
  std::string id_;
  std::string cgroup_;
  pid_t pid_ = 0;
  bool removed_ = false;
};

}  // namespace gputier::testing

#endif  // GPUTIER_TESTS_INTEGRATION_PODMAN_CONTAINER_H_
