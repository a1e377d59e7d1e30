// A container root filesystem for tests: busybox-static and a link per
// applet in /bin, the directories an OCI runtime mounts over, and the test's
// own directories. runc runs it as a bundle's rootfs; podman imports it as
// an image (and `podman save` gives containerd the same image).
#ifndef GPUTIER_TESTS_INTEGRATION_BUSYBOX_ROOTFS_H_
#define GPUTIER_TESTS_INTEGRATION_BUSYBOX_ROOTFS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace gputier::testing {

// Fills `rootfs` (created if missing) with /bin/busybox (copied from the
// host's busybox-static), its applet links, bin proc dev sys tmp etc root,
// and each of `directories` ("/data").
absl::Status MakeBusyboxRootfs(const std::string& rootfs, const std::vector<std::string>& directories);

// `container_path` ("/data") inside `rootfs` as a host path.
std::string RootfsPath(const std::string& rootfs, const std::string& container_path);

}  // namespace gputier::testing

#endif  // GPUTIER_TESTS_INTEGRATION_BUSYBOX_ROOTFS_H_
