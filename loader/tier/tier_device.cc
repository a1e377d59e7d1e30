#include "loader/tier/tier_device.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "loader/base/node_facts.h"

namespace gputier {
namespace {

std::string ReadSmall(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return std::string(absl::StripAsciiWhitespace(line));
}

std::string RealPath(const std::string& path) {
  std::unique_ptr<char, decltype(&free)> resolved(realpath(path.c_str(), nullptr), &free);
  return resolved ? std::string(resolved.get()) : std::string();
}

std::string Basename(absl::string_view path) {
  const size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path : path.substr(slash + 1));
}

// Fills block, disk, transport, rotational and backing from a device number.
void DescribeBlock(dev_t dev, TierDevice& d) {
  const std::string sys = RealPath(absl::StrFormat("/sys/dev/block/%u:%u", major(dev), minor(dev)));
  if (sys.empty()) return;
  d.block = Basename(sys);
  // A partition's directory sits inside its disk's.
  std::string disk_dir = sys;
  if (access((sys + "/partition").c_str(), F_OK) == 0) disk_dir = sys.substr(0, sys.rfind('/'));
  d.disk = Basename(disk_dir);
  d.transport = TransportFromSysfsPath(sys);
  const std::string rotational = ReadSmall(disk_dir + "/queue/rotational");
  if (rotational == "0" || rotational == "1") d.rotational = rotational == "1";
  if (d.transport == "loop") d.backing = ReadSmall(disk_dir + "/loop/backing_file");
}

}  // namespace

std::string TransportFromSysfsPath(absl::string_view p) {
  if (absl::StrContains(p, "/devices/virtual/block/loop")) return "loop";
  if (absl::StrContains(p, "/devices/virtual/block/dm-")) return "device-mapper";
  if (absl::StrContains(p, "/devices/virtual/block/md")) return "md RAID";
  if (absl::StrContains(p, "/devices/virtual/block/zram")) return "zram (memory)";
  if (absl::StrContains(p, "/devices/virtual/block/ram")) return "ramdisk (memory)";
  if (absl::StrContains(p, "/nvme/") || absl::StrContains(p, "/nvme-subsystem/")) return "NVMe";
  if (absl::StrContains(p, "/usb")) return "USB";
  if (absl::StrContains(p, "/ata")) return "SATA";
  if (absl::StrContains(p, "/mmc")) return "MMC/SD";
  if (absl::StrContains(p, "/virtio")) return "virtio";
  if (absl::StrContains(p, "/vbd-") || absl::StrContains(p, "/xen")) return "Xen";
  if (absl::StrContains(p, "/host") && absl::StrContains(p, "/target")) return "SCSI/SAS";
  return "unknown";
}

absl::StatusOr<TierDevice> DescribeTierDevice(const std::string& root) {
  TierDevice d;
  d.root = root;
  struct stat st;
  if (stat(root.c_str(), &st) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("stat ", root));
  d.fs_dev = st.st_dev;
  // The mount the root is on: the longest mount point over it with its device.
  std::ifstream in("/proc/self/mountinfo");
  std::stringstream text;
  text << in.rdbuf();
  const std::string dev = absl::StrFormat("%u:%u", major(st.st_dev), minor(st.st_dev));
  std::string source;
  for (const MountEntry& m : ParseMountInfo(text.str())) {
    if (m.device != dev) continue;
    const bool over = m.mount_point == "/" || root == m.mount_point ||
                      absl::StartsWith(root, absl::StrCat(m.mount_point, "/"));
    if (over && m.mount_point.size() >= d.mount_point.size()) {
      d.mount_point = m.mount_point;
      d.fs_type = m.fs_type;
      source = m.source;
    }
  }
  if (major(st.st_dev) != 0) {
    DescribeBlock(st.st_dev, d);
  } else if (absl::StartsWith(source, "/dev/")) {
    // Filesystems on anonymous device numbers (btrfs) name their device.
    struct stat src;
    if (stat(source.c_str(), &src) == 0 && S_ISBLK(src.st_mode)) DescribeBlock(src.st_rdev, d);
  }
  if (d.block.empty() && (d.fs_type == "tmpfs" || d.fs_type == "ramfs")) d.transport = "memory";
  return d;
}

std::string FormatTierDevice(const TierDevice& d) {
  std::string out = d.fs_type.empty() ? std::string("a filesystem") : d.fs_type;
  if (!d.block.empty()) {
    absl::StrAppend(&out, " on /dev/", d.block, " (", d.transport);
    if (d.rotational) absl::StrAppend(&out, *d.rotational ? ", rotational" : ", non-rotational");
    if (!d.backing.empty()) absl::StrAppend(&out, ", backed by ", d.backing);
    absl::StrAppend(&out, ")");
  } else {
    absl::StrAppend(&out, " with no block device", d.transport.empty() ? "" : absl::StrCat(" (", d.transport, ")"));
  }
  if (!d.mount_point.empty()) absl::StrAppend(&out, ", mounted on ", d.mount_point);
  return out;
}

absl::StatusOr<WriteProbe> ProbeWriteSpeed(const std::string& root, uint64_t bytes) {
  constexpr size_t kChunk = 1 << 20;
  WriteProbe probe;
  probe.direct = true;
  int fd = open(root.c_str(), O_TMPFILE | O_WRONLY | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EINVAL) {
    probe.direct = false;  // tmpfs and others refuse O_DIRECT
    fd = open(root.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  }
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("creating a probe file in ", root));
  void* raw = nullptr;
  if (posix_memalign(&raw, 4096, kChunk) != 0) {
    close(fd);
    return absl::ResourceExhaustedError("allocating the probe buffer");
  }
  std::unique_ptr<void, decltype(&free)> buf(raw, &free);
  memset(raw, 0x5a, kChunk);
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t done = 0; done < bytes; done += kChunk) {
    ssize_t n = write(fd, raw, kChunk);
    if (n != static_cast<ssize_t>(kChunk)) {
      const int err = n < 0 ? errno : ENOSPC;
      close(fd);
      return absl::ErrnoToStatus(err, absl::StrCat("writing the probe file in ", root));
    }
    probe.bytes += kChunk;
  }
  if (fsync(fd) != 0) {
    const int err = errno;
    close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("fsync of the probe file in ", root));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  close(fd);  // an O_TMPFILE file without a name goes with its last fd
  probe.mib_per_s = seconds > 0 ? (probe.bytes / double(1 << 20)) / seconds : 0;
  return probe;
}

std::vector<std::string> TierPairWarnings(const TierDevice& fast, const TierDevice& slow,
                                          const std::optional<WriteProbe>& fast_probe,
                                          const std::optional<WriteProbe>& slow_probe) {
  std::vector<std::string> warnings;
  if (fast.fs_dev == slow.fs_dev) {
    warnings.push_back(absl::StrCat("the fast tier ", fast.root, " and the slow tier ", slow.root,
                                    " are on the same filesystem (", FormatTierDevice(fast),
                                    "): moving a container to the fast tier makes it no faster; point "
                                    "tiers.fast at the fast device's mount"));
  }
  if (fast.rotational.value_or(false)) {
    warnings.push_back(absl::StrCat("the fast tier ", fast.root, " is on a rotational device (",
                                    FormatTierDevice(fast), ")"));
  }
  if (fast_probe && slow_probe && fast.fs_dev != slow.fs_dev && fast_probe->mib_per_s < slow_probe->mib_per_s) {
    warnings.push_back(absl::StrFormat(
        "the fast tier %s wrote slower than the slow tier %s in the start probe (%.0f MiB/s against %.0f "
        "MiB/s)",
        fast.root, slow.root, fast_probe->mib_per_s, slow_probe->mib_per_s));
  }
  return warnings;
}

}  // namespace gputier
