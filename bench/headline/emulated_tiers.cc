#include "bench/headline/emulated_tiers.h"

#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "tests/integration/host_mounts.h"
#include "tests/integration/runc_container.h"

namespace gputier::bench {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::RunCommand;

constexpr const char* kBlkio = "/sys/fs/cgroup/blkio";

absl::StatusOr<std::string> Run(const std::vector<std::string>& argv) {
  absl::StatusOr<CommandResult> r = RunCommand(argv);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InternalError(absl::StrCat(argv[0], " exited ", r->exit_code, ": ", r->output));
  }
  return std::string(absl::StripAsciiWhitespace(r->output));
}

absl::Status WriteRule(const std::string& dir, const std::string& file, const std::string& device,
                       uint64_t value) {
  std::ofstream out(absl::StrCat(dir, "/", file));
  out << device << " " << value << "\n";
  out.flush();
  if (!out) return absl::InternalError(absl::StrCat("writing ", dir, "/", file, " failed"));
  return absl::OkStatus();
}

// Unmounts whatever is mounted below `dir` (not `dir` itself), deepest first:
// partitions gputierd left behind.
void UnmountBelow(const std::string& dir) {
  std::vector<std::string> mounts = testing::HostMountsUnder(dir);
  std::sort(mounts.rbegin(), mounts.rend());
  for (const std::string& m : mounts) {
    if (m != dir) umount2(m.c_str(), MNT_DETACH);
  }
}

}  // namespace

absl::StatusOr<DeviceLimits> SlowTierLimits(const std::string& name) {
  // SATA SSD: Samsung 870 EVO datasheet (sequential 560/530 MB/s read/write,
  // random 4 KiB 98K/88K IOPS read/write).
  if (name == "sata") return DeviceLimits{"sata", 560'000'000, 530'000'000, 98'000, 88'000};
  // HDD: a 7200 rpm desktop disk, Seagate BarraCuda 3.5" datasheet (220 MB/s
  // sustained); random IOPS ~ 1 / (8.5 ms average seek + 4.2 ms half a
  // rotation) ~ 80.
  if (name == "hdd") return DeviceLimits{"hdd", 220'000'000, 220'000'000, 80, 80};
  return absl::InvalidArgumentError(absl::StrCat("unknown slow-tier setting '", name, "'; use sata or hdd"));
}

std::string EmulatedTiersCannotRunBecause() {
  if (geteuid() != 0) return "needs root (loop devices, mounts, blkio throttle)";
  if (access(absl::StrCat(kBlkio, "/blkio.throttle.write_bps_device").c_str(), W_OK) != 0) {
    return "needs the cgroup v1 blkio controller at /sys/fs/cgroup/blkio (blk-throttle)";
  }
  for (const char* tool : {"losetup", "mkfs.ext4"}) {
    absl::StatusOr<CommandResult> r = RunCommand({"sh", "-c", absl::StrCat("command -v ", tool)});
    if (!r.ok() || r->exit_code != 0) return absl::StrCat("needs ", tool, " in PATH");
  }
  return "";
}

absl::StatusOr<std::unique_ptr<EmulatedTiers>> EmulatedTiers::Make(uint64_t size_mib) {
  std::unique_ptr<EmulatedTiers> t(new EmulatedTiers());
  char images[] = "/dev/shm/gputier-headline-XXXXXX";
  char mounts[] = "/tmp/gputier-headline-XXXXXX";
  if (mkdtemp(images) == nullptr) return absl::InternalError(absl::StrCat("mkdtemp /dev/shm: ", strerror(errno)));
  t->image_dir_ = images;
  if (mkdtemp(mounts) == nullptr) return absl::InternalError(absl::StrCat("mkdtemp /tmp: ", strerror(errno)));
  t->mount_dir_ = mounts;
  const std::string group = absl::StrCat(kBlkio, "/gputier-headline-", getpid());
  if (mkdir(group.c_str(), 0755) != 0) return absl::InternalError(absl::StrCat("mkdir ", group, ": ", strerror(errno)));
  t->group_ = group;
  for (const char* which : {"fast", "slow"}) {
    const std::string image = absl::StrCat(t->image_dir_, "/", which, ".img");
    const std::string dir = absl::StrCat(t->mount_dir_, "/", which);
    std::ofstream(image).close();
    if (truncate(image.c_str(), static_cast<off_t>(size_mib) << 20) != 0) {
      return absl::InternalError(absl::StrCat("truncate ", image, ": ", strerror(errno)));
    }
    absl::StatusOr<std::string> loop = Run({"losetup", "--show", "-f", image});
    if (!loop.ok()) return loop.status();
    t->loops_.push_back(*loop);
    struct stat st;
    if (stat(loop->c_str(), &st) != 0) return absl::InternalError(absl::StrCat("stat ", *loop));
    t->devices_.push_back(absl::StrCat(major(st.st_rdev), ":", minor(st.st_rdev)));
    if (absl::StatusOr<std::string> mkfs = Run({"mkfs.ext4", "-q", "-F", *loop}); !mkfs.ok()) return mkfs.status();
    mkdir(dir.c_str(), 0755);
    if (mount(loop->c_str(), dir.c_str(), "ext4", 0, nullptr) != 0) {
      return absl::InternalError(absl::StrCat("mount ", *loop, " on ", dir, ": ", strerror(errno)));
    }
    t->mounted_.push_back(dir);
  }
  return t;
}

absl::Status EmulatedTiers::Throttle(const DeviceLimits& limits) {
  ClearThrottle();
  throttled_ = true;
  const std::string& dev = slow_device();
  for (const auto& [file, value] : {std::pair<const char*, uint64_t>{"blkio.throttle.read_bps_device", limits.read_bps},
                                    {"blkio.throttle.write_bps_device", limits.write_bps},
                                    {"blkio.throttle.read_iops_device", limits.read_iops},
                                    {"blkio.throttle.write_iops_device", limits.write_iops}}) {
    if (value == 0) continue;
    for (const std::string& dir : {std::string(kBlkio), group_}) {
      if (absl::Status s = WriteRule(dir, file, dev, value); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

void EmulatedTiers::ClearThrottle() {
  if (!throttled_ || devices_.size() < 2) return;
  for (const char* file : {"blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
                           "blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device"}) {
    for (const std::string& dir : {std::string(kBlkio), group_}) {
      (void)WriteRule(dir, file, slow_device(), 0);  // 0 removes the rule
    }
  }
  throttled_ = false;
}

absl::Status EmulatedTiers::Join(pid_t pid) {
  std::ofstream out(group_ + "/cgroup.procs");
  out << pid << "\n";
  out.flush();
  if (!out) return absl::InternalError(absl::StrCat("moving ", pid, " into ", group_, " failed"));
  return absl::OkStatus();
}

absl::Status EmulatedTiers::Empty() {
  for (const std::string& dir : mounted_) {
    UnmountBelow(dir);
    std::error_code ec;
    for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
      if (e.path().filename() == "lost+found") continue;
      fs::remove_all(e.path(), ec);
      if (ec) return absl::InternalError(absl::StrCat("emptying ", dir, ": ", ec.message()));
    }
  }
  sync();
  return absl::OkStatus();
}

EmulatedTiers::~EmulatedTiers() {
  ClearThrottle();
  for (auto it = mounted_.rbegin(); it != mounted_.rend(); ++it) {
    UnmountBelow(*it);
    // A container's mount namespace that is still being torn down may hold
    // the filesystem for a moment: retry, then detach (the loop device's
    // autoclear frees it once the last user is gone).
    bool unmounted = false;
    for (int i = 0; i < 40 && !unmounted; ++i) {
      unmounted = umount2(it->c_str(), 0) == 0;
      if (!unmounted) usleep(50'000);
    }
    if (!unmounted) umount2(it->c_str(), MNT_DETACH);
    rmdir(it->c_str());
  }
  for (const std::string& loop : loops_) (void)RunCommand({"losetup", "-d", loop});
  std::error_code ec;
  if (!image_dir_.empty()) fs::remove_all(image_dir_, ec);
  if (!group_.empty()) {
    // Processes still in the group (a job being killed) go back to the root.
    for (int i = 0; i < 40 && rmdir(group_.c_str()) != 0; ++i) {
      std::ifstream procs(group_ + "/cgroup.procs");
      for (std::string pid; std::getline(procs, pid);) std::ofstream(absl::StrCat(kBlkio, "/cgroup.procs")) << pid;
      usleep(50'000);
    }
  }
  if (!mount_dir_.empty()) rmdir(mount_dir_.c_str());
}

}  // namespace gputier::bench
