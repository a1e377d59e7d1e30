// containerd (Debian's containerd 1.6) for tests, driven with `ctr` as the
// kubelet's CRI plugin would run a pod's container.
//
// ContainerdDaemon starts a containerd of its own: its --root, --state,
// socket (--address) and config under a temp directory, the CRI plugin off
// (nothing of the node's is read or written), and stops it in the
// destructor after deleting every task, container and image it holds. Its
// image comes from an OCI archive (`ctr image import`, e.g. from
// PodmanStore::SaveOciArchive); containers run in the "k8s.io" namespace
// with a private runc root, so runc's state is <dir>/runc/k8s.io
// (StateRoots()).
//
// A container gets a kubelet-shaped cgroup: cgroupfs driver
// /kubepods/<qos>/pod<uid>/<id> (the systemd driver's
// kubepods-<qos>-pod<uid>.slice:cri-containerd:<id> needs systemd, which
// SystemdCgroupsCannotRunBecause() checks), with a 64-hex-digit id like
// the CRI plugin's. The destructor removes the pod cgroups it made.
#ifndef GPUTIER_TESTS_INTEGRATION_CONTAINERD_CONTAINER_H_
#define GPUTIER_TESTS_INTEGRATION_CONTAINERD_CONTAINER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/integration/runc_container.h"
#include "tests/integration/runtime_container.h"

namespace gputier::testing {

// Why containerd tests cannot run here (also every reason runc tests
// cannot), or empty when they can.
std::string ContainerdTestsCannotRunBecause();

// Why runc cannot place containers with the systemd cgroup driver here (no
// systemd as init), or empty.
std::string SystemdCgroupsCannotRunBecause();

class ContainerdDaemon {
 public:
  static constexpr char kNamespace[] = "k8s.io";

  // Starts containerd, waits until it answers, imports `oci_archive`.
  static absl::StatusOr<std::unique_ptr<ContainerdDaemon>> Start(const std::string& oci_archive);
  ~ContainerdDaemon();
  ContainerdDaemon(const ContainerdDaemon&) = delete;
  ContainerdDaemon& operator=(const ContainerdDaemon&) = delete;

  // Runs `ctr --address <socket> -n k8s.io <args>`.
  absl::StatusOr<CommandResult> Ctr(const std::vector<std::string>& args) const;
  // The same, as an error unless it exits 0; returns its output.
  absl::StatusOr<std::string> CtrOk(const std::vector<std::string>& args) const;

  const std::string& image() const { return image_; }
  const std::string& dir() const { return dir_->path(); }
  // runc's --root for this daemon's containers (ctr run --runc-root).
  std::string runc_root() const { return dir_->path() + "/runc"; }
  // Where runc keeps the state of this daemon's containers (runc_roots).
  std::vector<std::string> StateRoots() const { return {runc_root() + "/" + kNamespace}; }
  pid_t pid() const { return pid_; }

 private:
  ContainerdDaemon() = default;
  std::unique_ptr<TempDir> dir_;
  std::string address_;
  std::string image_;
  pid_t pid_ = 0;
  // The kubelet-shaped parents (/kubepods, /kubepods/<qos>) that existed
  // before this daemon: its containers share the others, which go with it.
  std::vector<std::string> parents_before_;
};

class ContainerdContainer : public RuntimeContainer {
 public:
  enum class CgroupDriver { kCgroupfs, kSystemd };
  struct Options {
    RuntimeContainerOptions container;
    CgroupDriver driver = CgroupDriver::kCgroupfs;
    std::string qos = "burstable";  // "burstable", "besteffort" or "guaranteed"
  };

  // `ctr run -d` of the daemon's image in a new pod's cgroup; waits until
  // its init runs.
  static absl::StatusOr<std::unique_ptr<ContainerdContainer>> Start(const ContainerdDaemon& daemon,
                                                                    const Options& options);
  ~ContainerdContainer() override;  // kill, task delete, container delete, pod cgroups

  std::string runtime() const override { return "containerd"; }
  const std::string& id() const override { return id_; }
  pid_t pid() const override { return pid_; }
  const std::string& cgroup() const override { return cgroup_; }
  const std::string& pod_uid() const { return pod_uid_; }
  absl::StatusOr<CommandResult> Exec(const std::string& script) const override;
  absl::StatusOr<bool> Exited() const override;
  // ctr task kill (SIGTERM), SIGKILL after `grace`, then task delete (what
  // the CRI plugin does when a container exits).
  absl::Status Stop(std::chrono::seconds grace) override;
  // ctr task kill -s SIGKILL, then task delete (as the CRI plugin does on
  // the exit; podman's cleanup likewise removes its cgroup).
  absl::Status Kill() override;
  absl::Status Remove() override;  // ctr task delete --force, container delete

 private:
  explicit ContainerdContainer(const ContainerdDaemon& daemon) : daemon_(daemon) {}
  // The task's status in `ctr task ls` ("RUNNING", "STOPPED"), "" if none.
  absl::StatusOr<std::string> TaskStatus() const;
  const ContainerdDaemon& daemon_;
  std::string id_;
  std::string pod_uid_;
  std::string cgroup_;
  std::vector<std::string> pod_cgroups_;  // parents made for it, to remove
  std::vector<std::string> cgroups_before_;
  pid_t pid_ = 0;
  bool removed_ = false;
};

}  // namespace gputier::testing

#endif  // GPUTIER_TESTS_INTEGRATION_CONTAINERD_CONTAINER_H_
