// The DaemonSet's pod, run by a real container runtime: podman starts an image
// of the gputierd built here with the pod's settings read from
// deploy/kubernetes/daemonset.yaml (privileged, host PID, every hostPath
// volume at its mountPath with its propagation and read-only flag, the
// ConfigMap's config, the container's args), and the agent becomes ready:
// /healthz and /readyz answer 200 and gputierctl on the host reads its
// control socket. The paths it would write on the node (pins, state and run
// directories, tier roots) are moved to this test's own; SIGTERM stops it
// cleanly. Needs root, podman and runc (docs/OPERATING.md).
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "tests/deploy/deploy_files.h"
#include "tests/free_port.h"
#include "tests/http_get.h"

namespace gputier::testing {
namespace {

constexpr char kImage[] = "localhost/gputier-daemonset-test:latest";

class DaemonSetInPodman : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (privileged container, BPF)";
    if (RunCommand("podman --version").status != 0) GTEST_SKIP() << "needs podman (Debian package podman)";
    if (RunCommand("runc --version").status != 0) GTEST_SKIP() << "needs runc";
    char dir[] = "/tmp/gputier-daemonset-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    work_ = dir;
    name_ = absl::StrCat("gputier-daemonset-", getpid());
    pin_dir_ = absl::StrCat("/sys/fs/bpf/", name_);
    // A store of the test's own (vfs: no store mounts), so the node's podman
    // images and containers are never touched, and a cgroup parent of its
    // own (podman's cgroupfs manager puts conmon beside the container under
    // it), removed at the end in every hierarchy.
    podman_ = absl::StrCat("podman --root ", work_, "/store --runroot ", work_, "/runroot --tmpdir ", work_,
                           "/podman-tmp --storage-driver vfs --events-backend none --runtime runc");
  }

  void TearDown() override {
    if (work_.empty()) return;
    RunCommand(absl::StrCat(podman_, " rm -f -t 0 ", name_));
    RunCommand(absl::StrCat(podman_, " rmi -f ", kImage));
    RunCommand(absl::StrCat(GPUTIER_BIN_DIR, "/gputierctl unpin --pin-dir=", pin_dir_));
    // The container's cgroups (v1 controllers too) go a moment after rm, and
    // conmon's once it has run podman's exit cleanup: retried for up to 20 s.
    const CommandResult cgroups = RunCommand(absl::StrCat(
        "for i in $(seq 100); do find /sys/fs/cgroup -mindepth 2 -maxdepth 4 -depth -type d -path '*/", name_,
        "*' -exec rmdir {} + 2>/dev/null; [ -z \"$(find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d -name ", name_,
        ")\" ] && exit 0; sleep 0.2; done; exit 1"));
    EXPECT_EQ(cgroups.status, 0) << "the test's cgroup parent " << name_ << " is still in use\n" << cgroups.output;
    RunCommand(absl::StrCat("rm -rf --one-file-system ", work_));
  }

  // An image holding the gputierd and gputierctl built here and the
  // libraries they link (what the Containerfile's runtime stage holds).
  void ImportImage() {
    const std::string root = work_ + "/rootfs";
    const std::string script = absl::StrCat(
        "set -e; r=", root, "; mkdir -p $r/usr/local/bin $r/etc $r/proc $r/sys $r/dev $r/run $r/tmp $r/var/lib; ",
        "cp ", GPUTIER_BIN_DIR, "/gputierd ", GPUTIER_BIN_DIR, "/gputierctl $r/usr/local/bin/; ",
        "for l in $(ldd ", GPUTIER_BIN_DIR, "/gputierd ", GPUTIER_BIN_DIR,
        "/gputierctl | awk '/=> \\//{print $3} /ld-linux/{print $1}' | sort -u); do ",
        "mkdir -p $r$(dirname $l); cp -L $l $r$l; done; ",
        "echo root:x:0:0::/:/bin/sh > $r/etc/passwd; echo root:x:0: > $r/etc/group; ",
        "tar -C $r -c . | ", podman_, " import - ", kImage);
    const CommandResult r = RunCommand(absl::StrCat("bash -c \"", absl::StrReplaceAll(script, {{"\"", "\\\""}, {"$", "\\$"}}), "\""));
    ASSERT_EQ(r.status, 0) << r.output;
  }

  std::string work_, name_, pin_dir_;
  std::string podman_;  // podman with the test's own store
};

TEST_F(DaemonSetInPodman, ThePodsSettingsStartAReadyAgent) {
  ImportImage();
  const YAML::Node ds = YAML::LoadFile(absl::StrCat(GPUTIER_SOURCE_DIR, "/deploy/kubernetes/daemonset.yaml"));
  const YAML::Node cm = YAML::LoadFile(absl::StrCat(GPUTIER_SOURCE_DIR, "/deploy/kubernetes/configmap.yaml"));
  const YAML::Node pod = ds["spec"]["template"]["spec"];
  const YAML::Node agent = pod["containers"][0];
  // Node paths gputierd writes, moved to this test's own.
  const std::map<std::string, std::string> moved = {{"/var/lib/gputier", work_ + "/state"},
                                                    {"/run/gputier", work_ + "/run"}};
  std::string config = cm["data"]["gputierd.yaml"].as<std::string>();
  config = absl::StrReplaceAll(config, {{"/var/lib/gputier", work_ + "/state"}});
  mkdir((work_ + "/state").c_str(), 0700);
  mkdir((work_ + "/run").c_str(), 0700);
  mkdir((work_ + "/config").c_str(), 0700);
  std::ofstream(work_ + "/config/gputierd.yaml") << config;

  const int port = FreeLoopbackPort();
  std::string command = absl::StrCat(podman_, " run -d --name ", name_, " --cgroup-parent /", name_,
                                     " --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --network host");
  if (agent["securityContext"]["privileged"].as<bool>(false)) absl::StrAppend(&command, " --privileged");
  if (pod["hostPID"].as<bool>(false)) absl::StrAppend(&command, " --pid host");
  std::map<std::string, YAML::Node> volumes;
  for (const YAML::Node& v : pod["volumes"]) volumes[v["name"].as<std::string>()] = v;
  for (const YAML::Node& m : agent["volumeMounts"]) {
    const YAML::Node v = volumes[m["name"].as<std::string>()];
    std::string at = m["mountPath"].as<std::string>();
    std::string host = v["configMap"] ? work_ + "/config" : v["hostPath"]["path"].as<std::string>();
    if (auto it = moved.find(at); it != moved.end()) at = host = it->second;
    if (v["hostPath"] && v["hostPath"]["type"].as<std::string>("") == "DirectoryOrCreate") {
      RunCommand(absl::StrCat("mkdir -p ", host));
    }
    std::string options = m["readOnly"].as<bool>(false) ? "ro" : "rw";
    if (m["mountPropagation"].as<std::string>("None") == "Bidirectional") options += ",rshared";
    if (m["mountPropagation"].as<std::string>("None") == "HostToContainer") options += ",rslave";
    absl::StrAppend(&command, " -v ", host, ":", at, ":", options);
  }
  absl::StrAppend(&command, " ", kImage, " ", agent["command"][0].as<std::string>());
  for (const YAML::Node& a : agent["args"]) {
    std::string arg = a.as<std::string>();
    if (absl::StartsWith(arg, "--pin-dir=")) arg = "--pin-dir=" + pin_dir_;
    if (absl::StartsWith(arg, "--state-dir=")) arg = "--state-dir=" + moved.at("/var/lib/gputier");
    if (absl::StartsWith(arg, "--run-dir=")) arg = "--run-dir=" + moved.at("/run/gputier");
    // The pod's 0.0.0.0:9464 on the pod IP; here the host network, a free port.
    if (absl::StartsWith(arg, "--metrics-address=")) arg = absl::StrCat("--metrics-address=127.0.0.1:", port);
    absl::StrAppend(&command, " ", arg);
  }
  const CommandResult started = RunCommand(command);
  ASSERT_EQ(started.status, 0) << command << "\n" << started.output;

  int ready = 0;
  for (int i = 0; i < 150 && ready != 200; ++i) {
    ready = HttpGet(port, "/readyz").code;
    if (ready != 200) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const std::string logs = RunCommand(absl::StrCat(podman_, " logs ", name_)).output;
  EXPECT_EQ(ready, 200) << command << "\n" << logs;
  EXPECT_EQ(HttpGet(port, "/healthz").code, 200) << logs;
  const CommandResult status =
      RunCommand(absl::StrCat(GPUTIER_BIN_DIR, "/gputierctl --run-dir=", moved.at("/run/gputier"), " status"));
  EXPECT_EQ(status.status, 0) << "gputierctl on the host reaches the pod's control socket\n" << status.output;
  EXPECT_EQ(RunCommand(absl::StrCat(podman_, " stop -t 20 ", name_)).status, 0);
  EXPECT_TRUE(absl::StrContains(RunCommand(absl::StrCat(podman_, " logs ", name_)).output, "stopping: programs detached"))
      << "SIGTERM is a clean stop";
}

}  // namespace
}  // namespace gputier::testing
