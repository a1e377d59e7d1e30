#include "loader/cgroup/cgroup_path.h"

#include <optional>
#include <ostream>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"

namespace gputier {

// For readable failures.
bool operator==(const ContainerIdentity& a, const ContainerIdentity& b) {
  return a.container_id == b.container_id && a.runtime == b.runtime &&
         a.pod_uid == b.pod_uid && a.qos == b.qos;
}
std::ostream& operator<<(std::ostream& os, const ContainerIdentity& c) {
  return os << "{id=" << c.container_id << " runtime=" << c.runtime
            << " pod=" << c.pod_uid << " qos=" << c.qos << "}";
}

namespace {

const std::string kId =
    "4c1a3e2b9f8d7c6b5a4e3d2c1b0a9f8e7d6c5b4a3e2d1c0b9a8f7e6d5c4b3a21";
const std::string kId2 =
    "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
const std::string kPodUid = "0b5c2f8e-1234-4a5b-9c8d-7e6f5a4b3c2d";
const std::string kPodUidSystemd = "0b5c2f8e_1234_4a5b_9c8d_7e6f5a4b3c2d";

ContainerIdentity Container(const std::string& id, const std::string& runtime,
                            const std::string& pod_uid = "",
                            const std::string& qos = "") {
  return ContainerIdentity{id, runtime, pod_uid, qos};
}

struct PathCase {
  std::string description;
  std::string path;
  absl::flat_hash_set<std::string> runc_ids;
  std::optional<ContainerIdentity> expected;
};

void ExpectIdentifies(const PathCase& c) {
  const std::optional<ContainerIdentity> got =
      IdentifyContainer(c.path, c.runc_ids);
  if (!c.expected) {
    EXPECT_FALSE(got.has_value())
        << c.description << ": " << c.path << " gave " << *got;
    return;
  }
  ASSERT_TRUE(got.has_value()) << c.description << ": " << c.path;
  EXPECT_EQ(*got, *c.expected) << c.description << ": " << c.path;
}

TEST(IdentifyContainer, RecognisesEveryRuntimeLayout) {
  const std::string k8s_systemd_burstable =
      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" +
      kPodUidSystemd + ".slice/";
  const std::string k8s_systemd_besteffort =
      "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" +
      kPodUidSystemd + ".slice/";
  const std::string k8s_systemd_guaranteed =
      "/kubepods.slice/kubepods-pod" + kPodUidSystemd + ".slice/";
  const PathCase kCases[] = {
      // docker
      {"docker, cgroupfs driver",
       "/docker/" + kId,
       {},
       Container(kId, "docker")},
      {"docker, systemd driver",
       "/system.slice/docker-" + kId + ".scope",
       {},
       Container(kId, "docker")},
      // Kubernetes, systemd driver
      {"k8s systemd burstable, containerd",
       k8s_systemd_burstable + "cri-containerd-" + kId + ".scope",
       {},
       Container(kId, "containerd", kPodUid, "burstable")},
      {"k8s systemd burstable, cri-o",
       k8s_systemd_burstable + "crio-" + kId + ".scope",
       {},
       Container(kId, "cri-o", kPodUid, "burstable")},
      {"k8s systemd burstable, cri-dockerd",
       k8s_systemd_burstable + "docker-" + kId + ".scope",
       {},
       Container(kId, "docker", kPodUid, "burstable")},
      {"k8s systemd guaranteed pods sit directly under kubepods.slice",
       k8s_systemd_guaranteed + "cri-containerd-" + kId + ".scope",
       {},
       Container(kId, "containerd", kPodUid, "guaranteed")},
      {"k8s systemd besteffort",
       k8s_systemd_besteffort + "crio-" + kId + ".scope",
       {},
       Container(kId, "cri-o", kPodUid, "besteffort")},
      {"k8s systemd under a kubelet --cgroup-root",
       "/kubelet.slice/kubelet-kubepods.slice/"
       "kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" +
           kPodUidSystemd + ".slice/cri-containerd-" + kId + ".scope",
       {},
       Container(kId, "containerd", kPodUid, "besteffort")},
      {"k8s static pod (hash uid)",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
       "0123456789abcdef0123456789abcdef.slice/cri-containerd-" +
           kId + ".scope",
       {},
       Container(kId, "containerd", "0123456789abcdef0123456789abcdef",
                 "burstable")},
      // Kubernetes, cgroupfs driver
      {"k8s cgroupfs burstable: runtime unknown",
       "/kubepods/burstable/pod" + kPodUid + "/" + kId,
       {},
       Container(kId, "cri", kPodUid, "burstable")},
      {"k8s cgroupfs guaranteed",
       "/kubepods/pod" + kPodUid + "/" + kId,
       {},
       Container(kId, "cri", kPodUid, "guaranteed")},
      {"k8s cgroupfs besteffort",
       "/kubepods/besteffort/pod" + kPodUid + "/" + kId,
       {},
       Container(kId, "cri", kPodUid, "besteffort")},
      {"k8s cgroupfs, cri-o",
       "/kubepods/burstable/pod" + kPodUid + "/crio-" + kId,
       {},
       Container(kId, "cri-o", kPodUid, "burstable")},
      // containerd outside Kubernetes
      {"nerdctl, systemd driver",
       "/system.slice/nerdctl-" + kId + ".scope",
       {},
       Container(kId, "containerd")},
      {"containerd namespace default",
       "/default/" + kId,
       {},
       Container(kId, "containerd")},
      {"containerd namespace k8s.io",
       "/k8s.io/" + kId,
       {},
       Container(kId, "containerd")},
      // CRI-O outside Kubernetes
      {"cri-o scope",
       "/machine.slice/crio-" + kId + ".scope",
       {},
       Container(kId, "cri-o")},
      {"cri-o cgroupfs", "/crio/crio-" + kId, {}, Container(kId, "cri-o")},
      // podman
      {"podman, systemd",
       "/machine.slice/libpod-" + kId + ".scope",
       {},
       Container(kId, "podman")},
      {"podman, cgroupfs",
       "/libpod_parent/libpod-" + kId,
       {},
       Container(kId, "podman")},
      {"podman rootless",
       "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" +
           kId + ".scope",
       {},
       Container(kId, "podman")},
      {"podman's nested container cgroup",
       "/machine.slice/libpod-" + kId + ".scope/container",
       {},
       Container(kId, "podman")},
      // runc
      {"runc, cgroupfs at the root",
       "/mycontainer",
       {"mycontainer"},
       Container("mycontainer", "runc")},
      {"runc, systemd scope",
       "/system.slice/runc-mycontainer.scope",
       {},
       Container("mycontainer", "runc")},
      {"runc, nested cgroupsPath",
       "/tenants/a/job-7",
       {"job-7"},
       Container("job-7", "runc")},
      {"runc, a 64-hex id", "/" + kId, {kId}, Container(kId, "runc")},
  };
  for (const PathCase& c : kCases) ExpectIdentifies(c);
}

TEST(IdentifyContainer, SubCgroupsBelongToTheirContainer) {
  const PathCase kCases[] = {
      {"docker init sub-cgroup",
       "/docker/" + kId + "/init",
       {},
       Container(kId, "docker")},
      {"k8s container's own sub-cgroup",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" +
           kPodUidSystemd + ".slice/cri-containerd-" + kId + ".scope/foo/bar",
       {},
       Container(kId, "containerd", kPodUid, "burstable")},
      {"k8s cgroupfs container's sub-cgroup",
       "/kubepods/pod" + kPodUid + "/" + kId + "/workers",
       {},
       Container(kId, "cri", kPodUid, "guaranteed")},
      {"docker-in-docker: the outer container",
       "/docker/" + kId + "/docker/" + kId2,
       {},
       Container(kId, "docker")},
      {"runc sub-cgroup",
       "/mycontainer/init",
       {"mycontainer"},
       Container("mycontainer", "runc")},
      {"a trailing slash",
       "/docker/" + kId + "/",
       {},
       Container(kId, "docker")},
  };
  for (const PathCase& c : kCases) ExpectIdentifies(c);
}

TEST(IdentifyContainer, HostPodAndMonitorCgroupsAreNoContainer) {
  const std::string pod_slice =
      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" +
      kPodUidSystemd + ".slice";
  const PathCase kCases[] = {
      {"the root", "/", {}, std::nullopt},
      {"an empty path", "", {}, std::nullopt},
      {"a system service", "/system.slice/ssh.service", {}, std::nullopt},
      {"the docker daemon", "/system.slice/docker.service", {}, std::nullopt},
      {"a login session",
       "/user.slice/user-0.slice/session-3.scope",
       {},
       std::nullopt},
      {"init", "/init.scope", {}, std::nullopt},
      {"the kubepods slice", "/kubepods.slice", {}, std::nullopt},
      {"a qos slice",
       "/kubepods.slice/kubepods-burstable.slice",
       {},
       std::nullopt},
      {"a pod slice (systemd)", pod_slice, {}, std::nullopt},
      {"a pod directory (cgroupfs)",
       "/kubepods/burstable/pod" + kPodUid,
       {},
       std::nullopt},
      {"cri-o's conmon scope in a pod",
       pod_slice + "/crio-conmon-" + kId + ".scope",
       {},
       std::nullopt},
      {"an unknown cgroup in a pod",
       pod_slice + "/something.scope",
       {},
       std::nullopt},
      {"cri-o's conmon scope outside a pod",
       "/machine.slice/crio-conmon-" + kId + ".scope",
       {},
       std::nullopt},
      {"podman's conmon scope",
       "/machine.slice/libpod-conmon-" + kId + ".scope",
       {},
       std::nullopt},
      {"podman's conmon cgroup (cgroupfs, every conmon of the node)",
       "/libpod_parent/conmon",
       {},
       std::nullopt},
      {"cri-o's conmon in a pod (cgroupfs)",
       "/kubepods/burstable/pod" + kPodUid + "/crio-conmon-" + kId,
       {},
       std::nullopt},
      {"a bare name runc does not know",
       "/mycontainer",
       {"other"},
       std::nullopt},
      {"a bare 64-hex id runc does not know", "/" + kId, {}, std::nullopt},
      {"a short docker id", "/docker/4c1a3e2b9f8d", {}, std::nullopt},
      {"an upper-case id", "/docker/" + std::string(64, 'A'), {}, std::nullopt},
      {"a 65-digit id",
       "/system.slice/docker-" + kId + "0.scope",
       {},
       std::nullopt},
      {"a 64-hex name under a systemd slice is not a namespace",
       "/system.slice/" + kId,
       {},
       std::nullopt},
      {"a 64-hex name three levels down is not a namespace",
       "/a/b/" + kId,
       {},
       std::nullopt},
      {"an empty runc scope", "/system.slice/runc-.scope", {}, std::nullopt},
  };
  for (const PathCase& c : kCases) ExpectIdentifies(c);
}

}  // namespace
}  // namespace gputier
