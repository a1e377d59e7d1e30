// What a tier sits on: the transport read from a block device's sysfs path,
// and the warnings a pair of tiers deserves. Pure: no kernel needed.
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "loader/tier/tier_device.h"

namespace gputier {
namespace {

TEST(TierDevice, TransportIsReadFromTheSysfsPathOfEachKindOfDevice) {
  struct Case {
    const char* sysfs;
    const char* transport;
  };
  const Case cases[] = {
      {"/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1", "NVMe"},
      {"/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1/nvme0n1p2", "NVMe"},
      {"/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1", "NVMe"},
      {"/sys/devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda", "SATA"},
      {"/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/host0/target0:0:1/0:0:1:0/block/sdb", "SCSI/SAS"},
      {"/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda", "virtio"},
      {"/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdc", "USB"},
      {"/sys/devices/virtual/block/loop3", "loop"},
      {"/sys/devices/virtual/block/dm-0", "device-mapper"},
      {"/sys/devices/virtual/block/md127", "md RAID"},
      {"/sys/devices/virtual/block/zram0", "zram (memory)"},
      {"/sys/devices/platform/soc/mmc0/mmc0:0001/block/mmcblk0", "MMC/SD"},
      {"/sys/devices/vbd-51712/block/xvda", "Xen"},
      {"/sys/devices/somewhere/else", "unknown"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(TransportFromSysfsPath(c.sysfs), c.transport) << c.sysfs;
  }
}

TierDevice Device(const char* root, dev_t dev, bool rotational) {
  TierDevice d;
  d.root = root;
  d.fs_dev = dev;
  d.fs_type = "ext4";
  d.block = "sda1";
  d.transport = "SATA";
  d.rotational = rotational;
  return d;
}

TEST(TierDevice, OneFilesystemForBothTiersIsWarnedAbout) {
  const std::vector<std::string> w =
      TierPairWarnings(Device("/mnt/a/fast", 7, false), Device("/mnt/a/slow", 7, false), std::nullopt, std::nullopt);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_TRUE(absl::StrContains(w[0], "same filesystem")) << w[0];
  EXPECT_TRUE(absl::StrContains(w[0], "tiers.fast")) << "no fix named: " << w[0];
}

TEST(TierDevice, RotationalOrSlowerFastTierIsWarnedAbout) {
  WriteProbe fast{50, 4 << 20, true}, slow{400, 4 << 20, true};
  const std::vector<std::string> w =
      TierPairWarnings(Device("/mnt/hdd", 1, true), Device("/mnt/ssd", 2, false), fast, slow);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_TRUE(absl::StrContains(w[0], "rotational")) << w[0];
  EXPECT_TRUE(absl::StrContains(w[1], "wrote slower than the slow tier")) << w[1];
}

TEST(TierDevice, AFastTierOnItsOwnFasterDeviceGetsNoWarning) {
  WriteProbe fast{2000, 4 << 20, true}, slow{400, 4 << 20, true};
  TierDevice nvme = Device("/mnt/nvme", 1, false);
  nvme.transport = "NVMe";
  EXPECT_TRUE(TierPairWarnings(nvme, Device("/mnt/sata", 2, false), fast, slow).empty());
}

TEST(TierDevice, DescriptionNamesFilesystemDeviceTransportAndMount) {
  TierDevice d = Device("/mnt/nvme/gt", 1, false);
  d.block = "nvme0n1p2";
  d.transport = "NVMe";
  d.mount_point = "/mnt/nvme";
  EXPECT_EQ(FormatTierDevice(d), "ext4 on /dev/nvme0n1p2 (NVMe, non-rotational), mounted on /mnt/nvme");
  TierDevice tmp;
  tmp.fs_type = "tmpfs";
  tmp.transport = "memory";
  tmp.mount_point = "/dev/shm";
  EXPECT_EQ(FormatTierDevice(tmp), "tmpfs with no block device (memory), mounted on /dev/shm");
}

}  // namespace
}  // namespace gputier
