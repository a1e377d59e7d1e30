#include "tests/integration/runtime_under_test.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace gputier::testing {

absl::StatusOr<std::unique_ptr<RuntimeUnderTest>> RuntimeUnderTest::Create(const std::string& name,
                                                                           const PodmanStore::Options& podman) {
  std::unique_ptr<RuntimeUnderTest> r(new RuntimeUnderTest());
  r->name_ = name;
  absl::StatusOr<std::unique_ptr<PodmanStore>> store = PodmanStore::Create(podman);
  if (!store.ok()) return store.status();
  r->podman_ = std::move(*store);
  if (name == "containerd") {
    r->archive_dir_ = std::make_unique<TempDir>("gputier-oci");
    const std::string archive = r->archive_dir_->path() + "/image.tar";
    if (absl::Status s = r->podman_->SaveOciArchive(archive); !s.ok()) return s;
    absl::StatusOr<std::unique_ptr<ContainerdDaemon>> d = ContainerdDaemon::Start(archive);
    if (!d.ok()) return d.status();
    r->containerd_ = std::move(*d);
  }
  return r;
}

absl::StatusOr<std::unique_ptr<RuntimeContainer>> RuntimeUnderTest::Start(
    const RuntimeContainerOptions& options) const {
  if (containerd_ != nullptr) {
    ContainerdContainer::Options o;
    o.container = options;
    absl::StatusOr<std::unique_ptr<ContainerdContainer>> c = ContainerdContainer::Start(*containerd_, o);
    if (!c.ok()) return c.status();
    return std::unique_ptr<RuntimeContainer>(std::move(*c));
  }
  absl::StatusOr<std::unique_ptr<PodmanContainer>> c = PodmanContainer::Start(*podman_, options);
  if (!c.ok()) return c.status();
  return std::unique_ptr<RuntimeContainer>(std::move(*c));
}

std::vector<std::string> RuntimeUnderTest::StateRoots() const {
  return containerd_ != nullptr ? containerd_->StateRoots() : podman_->StateRoots();
}

std::string RuntimeUnderTest::RuntimeRootsYaml() const {
  return containerd_ != nullptr
             ? absl::StrCat("runtime_roots: {containerd: [", containerd_->runc_root(), "]}\n")
             : absl::StrCat("runtime_roots: {podman: [", absl::StrJoin(podman_->StateRoots(), ", "), "]}\n");
}

std::string RuntimeTestsCannotRunBecause(const std::string& runtime) {
  std::string why = PodmanTestsCannotRunBecause();
  if (why.empty() && runtime == "containerd") why = ContainerdTestsCannotRunBecause();
  return why;
}

}  // namespace gputier::testing
