// PlanGpuDevices: which char devices count as GPUs, from /proc/devices, the
// nodes under /dev and the operator's selectors. Pure: no /dev is read.
#include "loader/observe/gpu_devices.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace gputier {
namespace {

bool Has(const std::vector<GpuDevice>& devs, uint32_t major, uint32_t minor, gt_gpu_kind kind) {
  for (const GpuDevice& d : devs) {
    if (d.major == major && d.minor == minor && d.kind == kind) return true;
  }
  return false;
}

TEST(PlanGpuDevices, WellKnownMajorsAreSelectedEvenWithoutDrivers) {
  std::vector<GpuDevice> devs = PlanGpuDevices({{1, "mem"}}, {}, {}, nullptr);
  EXPECT_TRUE(Has(devs, 195, GT_MINOR_ANY, GT_GPU_NVIDIA));
  EXPECT_TRUE(Has(devs, 226, GT_MINOR_ANY, GT_GPU_DRM));
  EXPECT_EQ(devs.size(), 2u);
}

TEST(PlanGpuDevices, DynamicGpuDriverMajorsComeFromProcDevices) {
  std::vector<CharDevice> chr = {{1, "mem"},          {195, "nvidia-frontend"}, {226, "drm"},
                                 {235, "kfd"},        {261, "accel"},           {509, "nvidia-uvm"},
                                 {510, "nvidia-caps"}, {4, "tty"}};
  std::vector<GpuDevice> devs = PlanGpuDevices(chr, {}, {}, nullptr);
  EXPECT_TRUE(Has(devs, 235, GT_MINOR_ANY, GT_GPU_KFD));
  EXPECT_TRUE(Has(devs, 261, GT_MINOR_ANY, GT_GPU_ACCEL));
  EXPECT_TRUE(Has(devs, 509, GT_MINOR_ANY, GT_GPU_NVIDIA));
  EXPECT_TRUE(Has(devs, 510, GT_MINOR_ANY, GT_GPU_NVIDIA));
  for (const GpuDevice& d : devs) EXPECT_NE(d.major, 1u) << d.source;
  for (const GpuDevice& d : devs) EXPECT_NE(d.major, 4u) << d.source;
}

TEST(PlanGpuDevices, ConfiguredNumberWithoutGpuDriverIsSaidPlainly) {
  GpuDeviceSelector sel;
  sel.major = 1;
  sel.minor = 7;
  std::vector<GpuDevice> devs = PlanGpuDevices({{1, "mem"}}, {sel}, {}, nullptr);
  ASSERT_TRUE(Has(devs, 1, 7, GT_GPU_CONFIGURED));
  for (const GpuDevice& d : devs) {
    if (d.major != 1) continue;
    EXPECT_TRUE(d.configured_number);
    EXPECT_NE(d.source.find("a configured device number, not a GPU driver (driver 'mem')"), std::string::npos)
        << d.source;
  }
}

TEST(PlanGpuDevices, PathGlobSelectsMatchingNodesAndNotesMisses) {
  GpuDeviceSelector hit, miss;
  hit.path_glob = "/tmp/t/gpu*";
  miss.path_glob = "/dev/nothing*";
  std::vector<DevNode> nodes = {{"/tmp/t/gpu0", 1, 7}, {"/tmp/t/gpu1", 1, 8}, {"/tmp/t/other", 1, 9}};
  std::vector<std::string> notes;
  std::vector<GpuDevice> devs = PlanGpuDevices({{1, "mem"}}, {hit, miss}, nodes, &notes);
  EXPECT_TRUE(Has(devs, 1, 7, GT_GPU_CONFIGURED));
  EXPECT_TRUE(Has(devs, 1, 8, GT_GPU_CONFIGURED));
  EXPECT_FALSE(Has(devs, 1, 9, GT_GPU_CONFIGURED));
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("/dev/nothing*"), std::string::npos);
}

TEST(PlanGpuDevices, DefaultPathNodesOfGpuDriversAreSelectedByExactNumber) {
  std::vector<DevNode> nodes = {{"/dev/dri/renderD128", 226, 128}, {"/dev/kfd", 235, 0}, {"/dev/null", 1, 3}};
  std::vector<GpuDevice> devs = PlanGpuDevices({{226, "drm"}, {235, "kfd"}, {1, "mem"}}, {}, nodes, nullptr);
  // 226 is already covered by its wildcard; kfd by its driver major.
  EXPECT_TRUE(Has(devs, 226, GT_MINOR_ANY, GT_GPU_DRM));
  EXPECT_TRUE(Has(devs, 235, GT_MINOR_ANY, GT_GPU_KFD));
  for (const GpuDevice& d : devs) EXPECT_NE(d.major, 1u);
}

TEST(PlanGpuDevices, AConfiguredGpuDriverMajorKeepsItsKind) {
  GpuDeviceSelector sel;
  sel.major = 226;
  std::vector<GpuDevice> devs = PlanGpuDevices({{226, "drm"}}, {sel}, {}, nullptr);
  EXPECT_TRUE(Has(devs, 226, GT_MINOR_ANY, GT_GPU_DRM));
  EXPECT_EQ(devs.size(), 2u);  // 195 built-in + 226, no duplicate
}

}  // namespace
}  // namespace gputier
