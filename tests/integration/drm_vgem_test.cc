// A real DRM device: inside the VM tests, vgem (a DRM driver) gives
// /dev/dri/renderD128 (major 226). With the DEFAULT GPU selectors (no test
// configuration) its opens and real DRM ioctls must count as GPU accesses.
// Hosts without DRM (this project's CI host kernel) skip it; the VM cells run it.
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "loader/gpu_use/drm_fdinfo.h"
#include "tests/integration/agent_harness.h"

namespace gputier::testing {
namespace {

// DRM_IOCTL_VERSION: _IOWR('d', 0x00, struct drm_version), the first ioctl
// every DRM client (libdrm's drmGetVersion) issues.
struct DrmVersion {
  int version_major, version_minor, version_patchlevel;
  size_t name_len;
  char* name;
  size_t date_len;
  char* date;
  size_t desc_len;
  char* desc;
};
constexpr unsigned long kDrmIoctlVersion = _IOWR('d', 0x00, DrmVersion);

constexpr char kRenderNode[] = "/dev/dri/renderD128";

TEST(DrmDevice, VgemOpensAndIoctlsCountAsGpuWithDefaultSelectors) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  struct stat st;
  if (getenv("GPUTIER_VM") != nullptr && stat(kRenderNode, &st) != 0) {
    ASSERT_EQ(system("vm-modprobe vgem >/dev/null 2>&1"), 0) << "could not load vgem in the VM";
  }
  if (stat(kRenderNode, &st) != 0) GTEST_SKIP() << "no DRM render node on this kernel (the VM cells run this)";
  ASSERT_TRUE(S_ISCHR(st.st_mode));
  ASSERT_EQ(major(st.st_rdev), 226u);

  AgentProcess agent;
  absl::StatusOr<std::string> mode = agent.Start({RequestedMode(), ""});  // default config
  ASSERT_TRUE(mode.ok()) << mode.status();
  EXPECT_EQ(*mode, ExpectedMode());

  TestCgroup cg("vgem");
  char name[64] = {};
  int rc = cg.RunInside([&]() -> int {
    int fd = open(kRenderNode, O_RDWR);
    if (fd < 0) return 10;
    DrmVersion v = {};
    v.name = name;
    v.name_len = sizeof(name) - 1;
    if (ioctl(fd, kDrmIoctlVersion, &v) != 0) return 11;
    close(fd);
    return strncmp(name, "vgem", 4) == 0 ? 0 : 12;
  });
  ASSERT_EQ(rc, 0) << "the DRM workload failed (10 open, 11 ioctl, 12 not vgem)";
  absl::StatusOr<nlohmann::json> row = agent.AuditCgroup(cg.id());
  ASSERT_TRUE(row.ok()) << row.status();
  ASSERT_FALSE(row->is_null());
  EXPECT_EQ(row->at("gpu_opens"), 1) << row->dump(2);
  EXPECT_EQ(row->at("gpu_ioctls"), 1) << row->dump(2);
  EXPECT_NE(agent.LogTail().find(absl::StrCat("first GPU access: cgroup ", cg.id())), std::string::npos);
  EXPECT_NE(agent.LogTail().find("kind drm"), std::string::npos) << agent.LogTail();
}

// What a real DRM client's fdinfo holds (the usage keys of
// Documentation/gpu/drm-usage-stats.rst, if the driver prints them), read
// with gputier's parser; and that a process holding the render node open is
// seen by the held-context scan with the default selectors.
TEST(DrmDevice, VgemClientFdinfoParsesAndItsHeldRenderNodeIsSeen) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  struct stat st;
  if (getenv("GPUTIER_VM") != nullptr && stat(kRenderNode, &st) != 0) {
    ASSERT_EQ(system("vm-modprobe vgem >/dev/null 2>&1"), 0) << "could not load vgem in the VM";
  }
  if (stat(kRenderNode, &st) != 0) GTEST_SKIP() << "no DRM render node on this kernel (the VM cells run this)";

  const int fd = open(kRenderNode, O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  std::ifstream in(absl::StrCat("/proc/self/fdinfo/", fd));
  std::stringstream text;
  text << in.rdbuf();
  close(fd);
  const DrmClientUsage usage = ParseDrmFdinfo(text.str());
  const bool prints_usage = text.str().find("drm-driver:") != std::string::npos &&
                            text.str().find("drm-client-id:") != std::string::npos;
  EXPECT_EQ(usage.has_usage(), prints_usage) << text.str();
  if (usage.has_usage()) EXPECT_EQ(usage.driver, "vgem") << text.str();
  ::testing::Test::RecordProperty("vgem_fdinfo", text.str());
  printf("vgem render node fdinfo on this kernel (%s usage keys):\n%s", prints_usage ? "with" : "without",
         text.str().c_str());

  AgentProcess agent;
  ASSERT_TRUE(agent.Start({RequestedMode(), "policy: {tick: 200ms}\n"}).ok());
  TestCgroup cg("vgem-held");
  // The holder keeps the render node open until this test has looked (it
  // closes `release`), not for a fixed time, so the check never races the
  // end of the hold however slow the VM is.
  int release[2];
  ASSERT_EQ(pipe2(release, O_CLOEXEC), 0) << strerror(errno);
  int holder_rc = -1;
  const auto t0 = std::chrono::steady_clock::now();
  auto since = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  std::thread holder([&] {
    holder_rc = cg.RunInside([&] {
      close(release[1]);
      int held = open(kRenderNode, O_RDWR);
      if (held < 0) return 10;
      DrmVersion v = {};
      if (ioctl(held, kDrmIoctlVersion, &v) != 0) return 11;
      pollfd p = {release[0], POLLIN, 0};
      poll(&p, 1, 60'000);  // holds the render node, no ioctl, until released
      close(held);
      return 0;
    });
  });
  const bool seen = WaitFor(
      [&] {
        absl::StatusOr<nlohmann::json> row = agent.StatusOf(cg.id());
        if (!row.ok() || row->is_null()) return false;
        // null until the context scan has looked at the cgroup.
        const nlohmann::json& held = (*row)["features"]["gpu_contexts_held"];
        return held.is_number() && held.get<double>() >= 1.0;
      },
      std::chrono::seconds(20));
  printf("held render node %s after %.1f s\n", seen ? "seen" : "not seen", since());
  close(release[1]);
  holder.join();
  close(release[0]);
  EXPECT_EQ(holder_rc, 0) << "the holder failed (10 open, 11 ioctl)";
  EXPECT_TRUE(seen) << agent.LogTail();
}

}  // namespace
}  // namespace gputier::testing
