// One real container runtime for the end-to-end tests: podman (a private
// store) or containerd (a private daemon fed the same image), started by name
// so one test body runs against each, and the runtime_roots line gputierd
// needs to confirm its containers.
#ifndef GPUTIER_TESTS_INTEGRATION_RUNTIME_UNDER_TEST_H_
#define GPUTIER_TESTS_INTEGRATION_RUNTIME_UNDER_TEST_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/integration/containerd_container.h"
#include "tests/integration/podman_container.h"
#include "tests/integration/runtime_container.h"

namespace gputier::testing {

class RuntimeUnderTest {
 public:
  // "podman" or "containerd". `podman` passes options to the podman store
  // (also the one containerd's image comes from).
  static absl::StatusOr<std::unique_ptr<RuntimeUnderTest>> Create(const std::string& name,
                                                                   const PodmanStore::Options& podman = {});

  absl::StatusOr<std::unique_ptr<RuntimeContainer>> Start(const RuntimeContainerOptions& options) const;

  std::vector<std::string> StateRoots() const;
  // The agent's runtime_roots: containerd's runc root holds one directory
  // per namespace; podman's containers are under runc's own root.
  std::string RuntimeRootsYaml() const;
  const std::string& name() const { return name_; }
  const PodmanStore& podman() const { return *podman_; }

 private:
  RuntimeUnderTest() = default;
  std::string name_;
  std::unique_ptr<PodmanStore> podman_;
  std::unique_ptr<TempDir> archive_dir_;
  std::unique_ptr<ContainerdDaemon> containerd_;
};

// Why `runtime`'s tests cannot run here, or "" when they can.
std::string RuntimeTestsCannotRunBecause(const std::string& runtime);

}  // namespace gputier::testing

#endif  // GPUTIER_TESTS_INTEGRATION_RUNTIME_UNDER_TEST_H_
