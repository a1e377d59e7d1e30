// Tiering end to end: the real gputierd (its tier manager) moving the /data
// of real runc containers between a fast and a slow tier while they write,
// driven by `gputierctl tier`, across agent crashes (SIGKILL), container
// exits and a full fast tier. Needs root, runc and busybox-static; skips
// without them.
//
// Every test runs its own gputierd (AgentProcess: private pins, run, state
// and tier directories under its work dir) and its own containers, and
// leaves nothing behind: TearDown deletes the containers, waits until the
// agent has dropped their records (which writes back and frees their fast
// partitions), stops the agent and checks that no partition mount or loop
// device of it is left.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/free_port.h"
#include "tests/http_get.h"
#include "loader/cgroup/cgroup_resolver.h"
#include "loader/base/mount_refs.h"
#include "loader/tier/fs/tier_partition.h"
#include "loader/tier/tier_record.h"
#include "tests/integration/agent_harness.h"
#include "tests/integration/host_mounts.h"
#include "tests/integration/metrics_dashboard.h"
#include "tests/integration/runc_container.h"
#include "tests/integration/tier_dirs.h"

namespace gputier {
namespace {

using ::gputier::testing::PathExists;
using ::gputier::testing::SlurpFile;

using ::gputier::testing::AgentProcess;
using ::gputier::testing::CommandResult;
using ::gputier::testing::RuncContainer;
using ::gputier::testing::Below;
using ::gputier::testing::HostMountsUnder;
using ::gputier::testing::LoopsBackedUnder;
using ::gputier::testing::RunCommand;
using ::gputier::testing::WaitFor;
using ::gputier::testing::TempDir;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr char kSpare[] = ".gputier-spare";

bool IsWhiteout(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == 0;
}


double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// What the writer puts into /data/w<i>: the output of `seq i i+300`.
std::string Expected(int i) {
  std::string s;
  for (int n = i; n <= i + 300; ++n) absl::StrAppend(&s, n, "\n");
  return s;
}

// A container init that writes /data/w0, w1, ... (each `seq i i+300`) until
// /data/stop appears, then writes the number of files to /data/count and
// sleeps. It starts only when /data/go appears, which the test creates once
// the agent has adopted the container: then every w<i> is written through
// gputier's overlays and ends up in the slow upper (on the host).
std::string WriterScript(int pause_us) {
  return absl::StrCat(
      "while [ ! -e /data/go ]; do usleep 10000; done; i=0; "
      "while [ ! -e /data/stop ]; do seq $i $((i+300)) > /data/w$i; i=$((i+1)); usleep ",
      pause_us, "; done; echo $i > /data/count; exec sleep 100000");
}

absl::StatusOr<std::vector<MountinfoEntry>> MountsOf(const std::string& mountinfo) {
  return ParseMountinfo(SlurpFile(mountinfo));
}


std::string SuperOption(const MountinfoEntry& m, absl::string_view key) {
  for (const std::string& o : m.super_options) {
    absl::string_view v = o;
    if (absl::ConsumePrefix(&v, key) && absl::ConsumePrefix(&v, "=")) return std::string(v);
  }
  return "";
}

std::string Lines(const std::vector<std::string>& v) { return v.empty() ? "(none)" : absl::StrJoin(v, ", "); }

// Unmounts `path` in the mount namespace of `pid`, as `umount` run inside
// the container would (not lazily; EBUSY is retried for a while). Returns 0
// or the errno.
int UnmountInside(pid_t pid, const std::string& path) {
  const std::string ns_path = absl::StrCat("/proc/", pid, "/ns/mnt");
  for (int attempt = 0; attempt < 100; ++attempt) {
    pid_t child = fork();
    if (child < 0) return errno;
    if (child == 0) {
      int ns = open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
      if (ns < 0 || setns(ns, CLONE_NEWNS) != 0) _exit(100);
      _exit(umount2(path.c_str(), 0) == 0 ? 0 : errno);
    }
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 101;
    if (rc != EBUSY) return rc;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return EBUSY;
}

// FS_IOC_GETFLAGS / FS_IOC_SETFLAGS / FS_IMMUTABLE_FL from <linux/fs.h>,
// which clashes with <sys/mount.h>.
#define GPUTIER_GETFLAGS _IOR('f', 1, long)
#define GPUTIER_SETFLAGS _IOW('f', 2, long)
constexpr int kImmutableFlag = 0x10;

// Sets or clears the immutable flag of a directory (ext4, xfs, btrfs): no
// entry can be created in it or renamed into it, not even by root.
bool SetImmutable(const std::string& dir, bool on) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  int flags = 0;
  bool ok = ioctl(fd, GPUTIER_GETFLAGS, &flags) == 0;
  flags = on ? (flags | kImmutableFlag) : (flags & ~kImmutableFlag);
  ok = ok && ioctl(fd, GPUTIER_SETFLAGS, &flags) == 0;
  close(fd);
  return ok;
}

// Whether no process holds the lock of a gputierd's pin directory.
bool PinDirFree(const std::string& pin_dir) {
  int fd = open(pin_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return true;
  const bool free = flock(fd, LOCK_EX | LOCK_NB) == 0;
  close(fd);  // drops the lock taken here
  return free;
}

// The number of times `needle` occurs in `text`.
int Occurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t pos = 0; (pos = text.find(needle, pos)) != std::string::npos; pos += needle.size()) ++n;
  return n;
}

class TierAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = ::gputier::testing::RuncTestsCannotRunBecause(); !why.empty()) GTEST_SKIP() << why;
    absl::StatusOr<CommandResult> list = RunCommand({"/bin/busybox", "--list"});
    if (!list.ok()) GTEST_SKIP() << "busybox --list failed";
    std::vector<std::string> applets = absl::StrSplit(list->output, '\n', absl::SkipWhitespace());
    for (const char* need : {"seq", "usleep", "head", "dd", "cat", "sh"}) {
      if (std::find(applets.begin(), applets.end(), need) == applets.end()) {
        GTEST_SKIP() << "busybox lacks the applet " << need;
      }
    }
    absl::StatusOr<CgroupResolver> cgroups = CgroupResolver::Create();
    if (!cgroups.ok()) GTEST_SKIP() << "no cgroup2: " << cgroups.status();
    cgroup_root_ = cgroups->mount_point();
    agent_ = std::make_unique<AgentProcess>();
    fast_root_ = agent_->tier_root("fast");
    slow_root_ = agent_->tier_root("slow");
  }

  void TearDown() override {
    containers_.clear();  // runc kill + delete: the agent finalizes them
    if (agent_ != nullptr && agent_->pid() > 0) {
      bool dropped = WaitFor(
          [&] {
            absl::StatusOr<nlohmann::json> t = agent_->Tiering();
            return t.ok() && (*t)["containers"].empty();
          },
          seconds(30));
      EXPECT_TRUE(dropped) << "the agent still has records of deleted containers\n" << Diag();
      EXPECT_TRUE(agent_->Stop().ok()) << Diag();
      // A clean stop with no container tiered leaves nothing mounted: the
      // spare partition is released too.
      for (const std::string& m : HostMountsUnder(fast_root_)) {
        if (m == fast_root_) continue;  // a fast filesystem of the test's own
        ADD_FAILURE() << "left mounted after a clean stop: " << m;
      }
      EXPECT_TRUE(LoopsBackedUnder(fast_root_).empty())
          << "loop devices left after a clean stop: " << Lines(LoopsBackedUnder(fast_root_));
    }
    if (fastfs_ != nullptr) {
      // The fast root is a filesystem of this test: free what the agent left
      // in it (the spare, or anything a failure left), then the filesystem.
      for (const std::string& m : HostMountsUnder(fast_root_)) {
        std::string dir = m.substr(0, m.rfind('/'));
        if (m == fast_root_ || dir.size() <= fast_root_.size()) continue;
        absl::StatusOr<PartitionPaths> p = PlanPartition(fast_root_, dir.substr(fast_root_.size() + 1));
        if (p.ok()) {
          absl::Status released = ReleasePartition(*p);
          EXPECT_TRUE(released.ok()) << m << ": " << released;
        }
      }
      absl::Status released = ReleasePartition(*fastfs_);
      EXPECT_TRUE(released.ok()) << released;
      EXPECT_TRUE(HostMountsUnder(fastfs_dir_->path()).empty());
      EXPECT_TRUE(WaitFor([&] { return LoopsBackedUnder(fastfs_dir_->path()).empty(); }, seconds(5)))
          << Lines(LoopsBackedUnder(fastfs_dir_->path()));
      fastfs_.reset();
      fastfs_dir_.reset();
    }
    if (agent_ != nullptr) {
      const std::string work = agent_->work_dir();
      agent_.reset();  // unmounts what is left under the work dir, removes it
      EXPECT_TRUE(HostMountsUnder(work).empty()) << Lines(HostMountsUnder(work));
      EXPECT_TRUE(WaitFor([&] { return LoopsBackedUnder(work).empty(); }, seconds(5)))
          << "loop devices left: " << Lines(LoopsBackedUnder(work));
      EXPECT_FALSE(PathExists(work));
    }
  }

  absl::StatusOr<RuncContainer*> StartContainer(const std::string& script) {
    RuncContainer::Options options;
    options.script = script;
    absl::StatusOr<std::unique_ptr<RuncContainer>> c = RuncContainer::Start(options);
    if (!c.ok()) return c.status();
    containers_.push_back(std::move(*c));
    return containers_.back().get();
  }

  // Starts gputierd for the containers started so far. `tiers_extra` is
  // added to the tiers mapping (", high_watermark: 0.5").
  absl::Status StartAgent(const std::string& partition_size = "64MiB", const std::string& tiers_extra = "") {
    std::vector<std::string> roots;
    for (const auto& c : containers_) roots.push_back(c->state_root());
    std::string yaml = absl::StrCat("tiered_paths: [/data]\nrunc_roots: [", absl::StrJoin(roots, ", "),
                                    "]\npolicy: {tick: 200ms}\ntiers: {fast: ", fast_root_, ", slow: ", slow_root_,
                                    ", partition_size: ", partition_size, tiers_extra, "}\n");
    absl::StatusOr<std::string> mode = agent_->Start({testing::RequestedMode(), yaml, agent_flags_});
    return mode.status();
  }

  // The tiering status row of a container, or null.
  nlohmann::json Row(const std::string& id) const {
    absl::StatusOr<nlohmann::json> t = agent_->Tiering();
    if (!t.ok()) return nullptr;
    for (const nlohmann::json& r : (*t)["containers"]) {
      if (r["container_id"] == id) return r;
    }
    return nullptr;
  }

  std::string Diag() const {
    absl::StatusOr<nlohmann::json> t = agent_ != nullptr && agent_->pid() > 0
                                           ? agent_->Tiering()
                                           : absl::StatusOr<nlohmann::json>(absl::UnavailableError("stopped"));
    return absl::StrCat("tiering: ", t.ok() ? t->dump() : std::string(t.status().message()),
                        "\n--- gputierd log (tail) ---\n", agent_ != nullptr ? agent_->LogTail() : "");
  }

  // Makes the container count activity until the agent has adopted it and
  // put /data on the slow overlay.
  bool Adopted(const RuncContainer& c) {
    Clock::time_point next_poke = Clock::now();
    return WaitFor(
        [&] {
          if (Clock::now() >= next_poke) {
            (void)c.Exec("cat /bin/busybox >/dev/null");
            next_poke = Clock::now() + seconds(2);
          }
          nlohmann::json r = Row(c.id());
          return r.is_object() && r["paths"].value("/data", "") == "slow" && r["op"] == "none";
        },
        seconds(30), milliseconds(100));
  }

  absl::StatusOr<std::string> Tier(const std::string& id, const std::string& tier, const std::string& wait) {
    return agent_->Ctl(absl::StrCat("tier ", id, " ", tier, " --wait=", wait));
  }

  // Named by the container's tier key (tests/integration/tier_dirs.h).
  std::string FastDir(const std::string& id) const { return LiveTierDir(fast_root_, id); }
  std::string FastUpper(const std::string& id) const { return FastDir(id) + "/mnt/data/upper"; }
  // The live slow layer, or after the container's exit the quarantined one.
  std::string SlowUpper(const std::string& id) const { return SlowLayerOf(slow_root_, id) + "/data/upper"; }
  std::string RecordPath(const std::string& id) const {
    return absl::StrCat(agent_->work_dir(), "/state/tier/", id, ".json");
  }

  // Files named w<N> directly in `dir`.
  static int CountW(const std::string& dir) {
    int n = 0;
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) return 0;
    while (struct dirent* e = readdir(d)) n += e->d_name[0] == 'w' ? 1 : 0;
    closedir(d);
    return n;
  }

  // Creates /data/stop, waits for /data/count; returns the number of files
  // the writer wrote (-1 on timeout).
  int StopWriter(const RuncContainer& c) {
    absl::StatusOr<CommandResult> stop = c.Exec("touch /data/stop");
    if (!stop.ok() || stop->exit_code != 0) return -1;
    int count = -1;
    WaitFor(
        [&] {
          absl::StatusOr<CommandResult> r = c.Exec("cat /data/count 2>/dev/null");
          return r.ok() && r->exit_code == 0 &&
                 absl::SimpleAtoi(absl::StripAsciiWhitespace(r->output), &count);
        },
        seconds(10), milliseconds(100));
    return count;
  }

  // Every w0..w<count-1> has its exact content on the host, in the slow
  // upper, and inside the container (one `head` prints them all).
  void VerifyWriterFiles(const RuncContainer& c, int count) {
    std::vector<std::string> bad;
    for (int i = 0; i < count; ++i) {
      const std::string path = absl::StrCat(SlowUpper(c.id()), "/w", i);
      if (!PathExists(path)) {
        bad.push_back(absl::StrCat("w", i, " missing"));
      } else if (SlurpFile(path) != Expected(i)) {
        bad.push_back(absl::StrCat("w", i, " differs (", SlurpFile(path).size(), " bytes)"));
      }
    }
    EXPECT_TRUE(bad.empty()) << bad.size() << " of " << count << " files wrong on the host ("
                             << SlowUpper(c.id()) << "): "
                             << absl::StrJoin(bad.begin(), bad.begin() + std::min<size_t>(bad.size(), 20), "; ")
                             << "\n" << Diag();
    EXPECT_EQ(CountW(SlowUpper(c.id())), count) << "the slow upper holds more w files than the writer wrote";

    // Inside: `head` prints "==> wN <==" before each file's lines.
    absl::StatusOr<CommandResult> all = c.Exec("cd /data && head -n 1000 w*");
    ASSERT_TRUE(all.ok()) << all.status();
    ASSERT_EQ(all->exit_code, 0) << all->output.substr(0, 2000);
    std::map<int, std::string> seen;
    int current = -1;
    for (absl::string_view line : absl::StrSplit(all->output, '\n')) {
      absl::string_view name = line;
      if (absl::ConsumePrefix(&name, "==> w") && absl::ConsumeSuffix(&name, " <==")) {
        ASSERT_TRUE(absl::SimpleAtoi(name, &current)) << line;
        seen[current];
        continue;
      }
      if (line.empty()) continue;
      ASSERT_GE(current, 0) << "output before the first header: " << line;
      absl::StrAppend(&seen[current], line, "\n");
    }
    std::vector<std::string> inside_bad;
    for (int i = 0; i < count; ++i) {
      auto it = seen.find(i);
      if (it == seen.end()) {
        inside_bad.push_back(absl::StrCat("w", i, " missing"));
      } else if (it->second != Expected(i)) {
        inside_bad.push_back(absl::StrCat("w", i, " differs"));
      }
    }
    EXPECT_EQ(seen.size(), static_cast<size_t>(count));
    EXPECT_TRUE(inside_bad.empty()) << inside_bad.size() << " of " << count
                                    << " files wrong inside the container: "
                                    << absl::StrJoin(inside_bad.begin(),
                                                     inside_bad.begin() + std::min<size_t>(inside_bad.size(), 20),
                                                     "; ");
  }

  // What is wrong with the container and the host, given that the container's
  // /data should be on `fast` (empty when all is well):
  //  - the container's cgroup is frozen;
  //  - /data in the container is not exactly one overlay whose upper is the
  //    tier's (and the record says another tier or a step in flight);
  //  - the host has another number of partition mounts for the container
  //    than 1 (fast) or 0 (slow), more than one spare, or anything else
  //    mounted under the fast root;
  //  - loop devices backed by files of the fast root other than those of
  //    these partition mounts.
  std::string Inconsistencies(const RuncContainer& c, bool fast) const {
    std::vector<std::string> out;
    std::string freeze(absl::StripAsciiWhitespace(SlurpFile(cgroup_root_ + c.cgroup() + "/cgroup.freeze")));
    if (freeze != "0") out.push_back(absl::StrCat("cgroup.freeze is '", freeze, "'"));

    absl::StatusOr<std::vector<MountinfoEntry>> mounts = MountsOf(absl::StrCat("/proc/", c.pid(), "/mountinfo"));
    if (!mounts.ok()) {
      out.push_back(absl::StrCat("container mountinfo: ", mounts.status().message()));
    } else {
      std::vector<const MountinfoEntry*> data;
      for (const MountinfoEntry& m : *mounts) {
        if (m.mount_point == "/data") data.push_back(&m);
      }
      const std::string want_upper = fast ? FastUpper(c.id()) : SlowUpper(c.id());
      if (data.size() != 1) {
        std::vector<std::string> d;
        for (const MountinfoEntry* m : data) d.push_back(absl::StrCat(m->fstype, " upper=", SuperOption(*m, "upperdir")));
        out.push_back(absl::StrCat(data.size(), " mounts at /data in the container: ", Lines(d)));
      } else if (data[0]->fstype != "overlay" || SuperOption(*data[0], "upperdir") != want_upper) {
        out.push_back(absl::StrCat("/data is ", data[0]->fstype, " with upper '", SuperOption(*data[0], "upperdir"),
                                   "', not the overlay with upper ", want_upper));
      }
    }
    absl::StatusOr<TierRecord> record = TierRecordFromJson(SlurpFile(RecordPath(c.id())), RecordPath(c.id()));
    if (!record.ok()) {
      out.push_back(absl::StrCat("record: ", record.status().message()));
    } else {
      auto p = record->paths.find("/data");
      if (p == record->paths.end() || p->second != (fast ? Tier::kFast : Tier::kSlow)) {
        out.push_back(absl::StrCat("the record has /data on ", p == record->paths.end() ? "nothing" : TierName(p->second)));
      }
      if (record->op != TierOp::kNone) out.push_back(absl::StrCat("the record has a ", TierOpName(record->op), " in flight"));
      if (record->froze) out.push_back("the record says frozen");
      if (record->partition != fast) out.push_back(absl::StrCat("the record says partition=", record->partition));
    }

    // Mounts and loop devices below the fast root: this container's, the
    // spare's, other containers' and partitions set aside to be freed (both
    // ignored: TearDown checks that the stopped agent left none) and strays.
    const std::string spare_dir = absl::StrCat(fast_root_, "/", kSpare);
    auto classify = [&](const std::vector<std::string>& items, std::vector<std::string>* own,
                        std::vector<std::string>* spare, std::vector<std::string>* stray) {
      for (const std::string& item : items) {
        absl::string_view path = item;
        if (size_t colon = path.find(": "); absl::StartsWith(path, "loop") && colon != absl::string_view::npos) {
          path.remove_prefix(colon + 2);
        }
        if (path == fast_root_) continue;  // the fast filesystem itself (a test's own)
        if (Below(std::string(path), FastDir(c.id()))) {
          own->push_back(item);
        } else if (Below(std::string(path), spare_dir)) {
          spare->push_back(item);
        } else if (absl::StartsWith(path, absl::StrCat(fast_root_, "/", kAsidePrefix))) {
          continue;  // being freed
        } else {
          bool other = false;
          for (const auto& o : containers_) other = other || Below(std::string(path), FastDir(o->id()));
          if (!other) stray->push_back(item);
        }
      }
    };
    std::vector<std::string> own, spare, stray, own_loops, spare_loops, stray_loops;
    classify(HostMountsUnder(fast_root_), &own, &spare, &stray);
    classify(LoopsBackedUnder(fast_root_), &own_loops, &spare_loops, &stray_loops);
    if (fast ? own != std::vector<std::string>{FastDir(c.id()) + "/mnt"} : !own.empty()) {
      out.push_back(absl::StrCat("partition mounts of the container on the host: ", Lines(own)));
    }
    if (spare.size() > 1) out.push_back(absl::StrCat("spare mounts: ", Lines(spare)));
    if (!stray.empty()) out.push_back(absl::StrCat("other mounts under the fast root: ", Lines(stray)));
    if (own_loops.size() != own.size() || spare_loops.size() != spare.size() || !stray_loops.empty()) {
      out.push_back(absl::StrCat("loop devices: ", Lines(own_loops), " (container), ", Lines(spare_loops),
                                 " (spare), ", Lines(stray_loops), " (other)"));
    }
    return absl::StrJoin(out, "\n");
  }

  // Runs `tenant` in `cgroup_dir` (a container's cgroup in name only) while
  // the agent is asked to tier container `id`: the log must say `refusal`,
  // and nothing may be made for it (no record, tier directory or mount).
  void ExpectNeverTiered(const std::string& id, const std::string& cgroup_dir, const std::string& refusal,
                         const std::function<int()>& tenant) {
    std::thread in_cgroup([&] { testing::RunInCgroup(cgroup_dir, tenant); });
    // Checked while the tenant runs: the agent sees it within a tick or two.
    bool adopted = false;
    const bool refused = WaitFor(
        [&] {
          adopted = adopted || Row(id).is_object();
          return absl::StrContains(agent_->LogTail(), refusal);
        },
        seconds(5), milliseconds(50));
    absl::StatusOr<std::string> asked = Tier(id, "fast", "1s");
    adopted = adopted || Row(id).is_object();
    const bool slow_dir = !TierKeyNamesIn(slow_root_, id, /*exited=*/false).empty();
    const bool fast_dir = PathExists(FastDir(id));
    const std::vector<std::string> mounted = HostMountsUnder(slow_root_);
    in_cgroup.join();
    EXPECT_TRUE(refused) << "no \"" << refusal << "\" in the log\n" << Diag();
    EXPECT_FALSE(adopted) << "a record was made for it\n" << Diag();
    EXPECT_FALSE(slow_dir) << "a slow tier directory was made for it";
    EXPECT_FALSE(fast_dir) << "a fast tier directory was made for it";
    for (const std::string& m : mounted) ADD_FAILURE() << "mounted: " << m;
    (void)asked;  // its wait times out or reports the error; the checks above are what counts
  }

  std::string cgroup_root_;
  std::string fast_root_;
  std::string slow_root_;
  std::unique_ptr<AgentProcess> agent_;
  std::vector<std::unique_ptr<RuncContainer>> containers_;
  std::vector<std::string> agent_flags_;  // more gputierd flags for StartAgent
  // Test 6: a small filesystem of its own as the fast tier.
  std::unique_ptr<TempDir> fastfs_dir_;
  std::unique_ptr<PartitionPaths> fastfs_;
};

TEST_F(TierAgentTest, ContinuousWriterLosesNothingAcrossFivePromotionsAndDemotions) {
  absl::StatusOr<RuncContainer*> made = StartContainer(WriterScript(2000));
  ASSERT_TRUE(made.ok()) << made.status();
  RuncContainer& c = **made;
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  ASSERT_TRUE(Adopted(c)) << "container " << c.id() << " never adopted\n" << Diag();
  absl::StatusOr<CommandResult> go = c.Exec("touch /data/go");
  ASSERT_TRUE(go.ok() && go->exit_code == 0);

  // As after a pid wrap: the writer's short-lived children (seq, usleep) now
  // get pids below its init's. The agent must still act through a process
  // that lives (it once took the lowest pid, and each step failed and waited
  // 5 s for a retry). Only pid numbering changes; nothing else on the node.
  std::ofstream("/proc/sys/kernel/ns_last_pid") << 300;
  constexpr int kRounds = 5;
  for (int round = 1; round <= kRounds; ++round) {
    const Clock::time_point t0 = Clock::now();
    absl::StatusOr<std::string> up = Tier(c.id(), "fast", "30s");
    ASSERT_TRUE(up.ok()) << "promotion " << round << ": " << up.status() << "\n" << Diag();
    const double promote_s = SecondsSince(t0);
    printf("round %d: promoted in %.2f s\n", round, promote_s);
    // The writer keeps writing, now into the fast partition.
    EXPECT_TRUE(WaitFor([&] { return CountW(FastUpper(c.id())) >= 3; }, seconds(10)))
        << "no new file reached the fast upper " << FastUpper(c.id()) << "\n" << Diag();
    EXPECT_EQ(Inconsistencies(c, /*fast=*/true), "") << Diag();
    if (round == kRounds) break;  // the writer stops while on the fast tier
    const Clock::time_point t1 = Clock::now();
    absl::StatusOr<std::string> down = Tier(c.id(), "slow", "30s");
    ASSERT_TRUE(down.ok()) << "demotion " << round << ": " << down.status() << "\n" << Diag();
    EXPECT_FALSE(PathExists(FastDir(c.id()))) << "the partition outlived the demotion";
    EXPECT_EQ(Inconsistencies(c, /*fast=*/false), "") << Diag();
    printf("round %d: demoted in %.2f s; %d files so far\n", round, SecondsSince(t1), CountW(SlowUpper(c.id())));
  }
  Clock::time_point t_stop = Clock::now();
  const int count = StopWriter(c);
  ASSERT_GT(count, 0) << "the writer never reported its count\n" << Diag();
  printf("writer stopped in %.2f s\n", SecondsSince(t_stop));
  t_stop = Clock::now();
  absl::StatusOr<std::string> down = Tier(c.id(), "slow", "30s");
  ASSERT_TRUE(down.ok()) << "final demotion: " << down.status() << "\n" << Diag();
  printf("writer wrote %d files; final demotion %.2f s\n", count, SecondsSince(t_stop));

  VerifyWriterFiles(c, count);
  EXPECT_EQ(SlurpFile(SlowUpper(c.id()) + "/count"), absl::StrCat(count, "\n"));
  EXPECT_FALSE(PathExists(FastDir(c.id()))) << "the fast partition directory is still there";
  EXPECT_EQ(Inconsistencies(c, /*fast=*/false), "") << Diag();
  nlohmann::json row = Row(c.id());
  ASSERT_TRUE(row.is_object()) << Diag();
  EXPECT_EQ(row["tier"], "slow");
  EXPECT_EQ(row["paths"]["/data"], "slow");
  EXPECT_EQ(row["override"], "slow");
  EXPECT_TRUE(row["last_error"].is_null()) << row.dump();
  EXPECT_TRUE(row["last_promotion_ms"].is_number()) << row.dump();
  EXPECT_TRUE(row["last_demotion_ms"].is_number()) << row.dump();
}

TEST_F(TierAgentTest, NewFilesLandOnTheSlowRootBeforePromotionAndOnTheFastRootAfter) {
  absl::StatusOr<RuncContainer*> made = StartContainer("exec sleep 100000");
  ASSERT_TRUE(made.ok()) << made.status();
  RuncContainer& c = **made;
  // A file the image had before gputier saw the container.
  std::ofstream(c.rootfs() + "/data/original.txt") << "original\n";
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  ASSERT_TRUE(Adopted(c)) << Diag();
  EXPECT_EQ(Inconsistencies(c, /*fast=*/false), "") << Diag();

  absl::StatusOr<CommandResult> w = c.Exec("echo before > /data/before.txt && echo v1 > /data/changed.txt");
  ASSERT_TRUE(w.ok() && w->exit_code == 0);
  EXPECT_EQ(SlurpFile(SlowUpper(c.id()) + "/before.txt"), "before\n");
  EXPECT_FALSE(PathExists(c.rootfs() + "/data/before.txt")) << "a write went to the container's own directory";

  ASSERT_TRUE(Tier(c.id(), "fast", "30s").ok()) << Diag();
  EXPECT_EQ(Inconsistencies(c, /*fast=*/true), "") << Diag();
  w = c.Exec("echo after > /data/after.txt && echo v2 > /data/changed.txt");
  ASSERT_TRUE(w.ok() && w->exit_code == 0);
  EXPECT_EQ(SlurpFile(FastUpper(c.id()) + "/after.txt"), "after\n");
  EXPECT_EQ(SlurpFile(FastUpper(c.id()) + "/changed.txt"), "v2\n") << "a changed slow file is copied up to fast";
  EXPECT_FALSE(PathExists(SlowUpper(c.id()) + "/after.txt")) << "a new file went to the slow tier while fast";
  EXPECT_EQ(SlurpFile(SlowUpper(c.id()) + "/changed.txt"), "v1\n");
  EXPECT_FALSE(PathExists(c.rootfs() + "/data/after.txt"));
  // Old files stay visible after promotion.
  absl::StatusOr<CommandResult> r = c.Exec("cat /data/original.txt /data/before.txt /data/after.txt /data/changed.txt");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->output, "original\nbefore\nafter\nv2\n");

  ASSERT_TRUE(Tier(c.id(), "slow", "30s").ok()) << Diag();
  EXPECT_EQ(Inconsistencies(c, /*fast=*/false), "") << Diag();
  EXPECT_FALSE(PathExists(FastDir(c.id())));
  EXPECT_EQ(SlurpFile(SlowUpper(c.id()) + "/after.txt"), "after\n");
  // Counted for the metrics (docs/METRICS.md): one promotion, one demotion
  // and the bytes it wrote back.
  const nlohmann::json counted = Row(c.id());
  EXPECT_EQ(counted.value("promotions", 0), 1) << counted.dump();
  EXPECT_EQ(counted.value("demotions", 0), 1) << counted.dump();
  EXPECT_GT(counted.value("writeback_bytes", 0), 0) << counted.dump();
  EXPECT_EQ(SlurpFile(SlowUpper(c.id()) + "/changed.txt"), "v2\n");
  r = c.Exec("cat /data/original.txt /data/before.txt /data/after.txt /data/changed.txt");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->output, "original\nbefore\nafter\nv2\n");
  EXPECT_EQ(SlurpFile(c.rootfs() + "/data/original.txt"), "original\n") << "the image's directory is untouched";
}

TEST_F(TierAgentTest, ContainerExitWritesBackAndFreesThePartition) {
  absl::StatusOr<RuncContainer*> made = StartContainer("exec sleep 100000");
  ASSERT_TRUE(made.ok()) << made.status();
  RuncContainer& c = **made;
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  ASSERT_TRUE(Adopted(c)) << Diag();
  absl::StatusOr<CommandResult> w =
      c.Exec("echo keep > /data/keep && echo old > /data/over && echo doomed > /data/doomed && "
             "mkdir /data/dir && echo inner > /data/dir/inner");
  ASSERT_TRUE(w.ok() && w->exit_code == 0) << (w.ok() ? w->output : "");
  ASSERT_TRUE(Tier(c.id(), "fast", "30s").ok()) << Diag();
  w = c.Exec("echo new > /data/new && echo new2 > /data/over && rm /data/doomed && echo more >> /data/dir/inner && "
             "dd if=/dev/zero of=/data/blob bs=64k count=16 2>/dev/null");
  ASSERT_TRUE(w.ok() && w->exit_code == 0) << (w.ok() ? w->output : "");
  ASSERT_TRUE(PathExists(FastUpper(c.id()) + "/new"));

  ASSERT_TRUE(c.Kill().ok());
  const Clock::time_point t0 = Clock::now();
  ASSERT_TRUE(WaitFor([&] { return Row(c.id()).is_null(); }, seconds(30)))
      << "the agent kept the record of the exited container\n" << Diag();
  printf("record dropped %.2f s after the container exited\n", SecondsSince(t0));

  const std::string up = SlowUpper(c.id());
  EXPECT_EQ(SlurpFile(up + "/keep"), "keep\n");
  EXPECT_EQ(SlurpFile(up + "/new"), "new\n");
  EXPECT_EQ(SlurpFile(up + "/over"), "new2\n");
  EXPECT_EQ(SlurpFile(up + "/dir/inner"), "inner\nmore\n");
  EXPECT_EQ(SlurpFile(up + "/blob"), std::string(1 << 20, '\0'));
  EXPECT_TRUE(!PathExists(up + "/doomed") || IsWhiteout(up + "/doomed")) << "the deleted file came back";
  EXPECT_FALSE(PathExists(FastDir(c.id()))) << "the partition directory is left";
  EXPECT_FALSE(PathExists(RecordPath(c.id()))) << "the record file is left";
  for (const std::string& m : HostMountsUnder(agent_->work_dir())) {
    EXPECT_FALSE(absl::StrContains(m, c.id())) << "still mounted: " << m;
  }
  absl::StatusOr<std::vector<MountinfoEntry>> mounts = MountsOf("/proc/self/mountinfo");
  ASSERT_TRUE(mounts.ok());
  for (const MountinfoEntry& m : *mounts) {
    EXPECT_FALSE(absl::StrContains(m.source, FastDir(c.id())) ||
                 absl::StrContains(absl::StrJoin(m.super_options, ","), FastDir(c.id())))
        << "a mount still references the partition: " << m.mount_point;
  }
  EXPECT_TRUE(WaitFor([&] { return LoopsBackedUnder(FastDir(c.id())).empty(); }, seconds(5)))
      << Lines(LoopsBackedUnder(FastDir(c.id())));
  // Only the spare is left on the fast tier.
  EXPECT_TRUE(WaitFor([&] { return LoopsBackedUnder(agent_->work_dir()).size() <= 1; }, seconds(5)))
      << Lines(LoopsBackedUnder(agent_->work_dir()));
  for (const std::string& l : LoopsBackedUnder(agent_->work_dir())) EXPECT_TRUE(absl::StrContains(l, kSpare)) << l;
}

TEST_F(TierAgentTest, SigkillAtRandomPointsOfPromotionAndDemotionLosesNothing) {
  absl::StatusOr<RuncContainer*> made = StartContainer(WriterScript(3000));
  ASSERT_TRUE(made.ok()) << made.status();
  RuncContainer& c = **made;
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  ASSERT_TRUE(Adopted(c)) << Diag();
  absl::StatusOr<CommandResult> go = c.Exec("touch /data/go");
  ASSERT_TRUE(go.ok() && go->exit_code == 0);

  uint32_t seed = static_cast<uint32_t>(std::random_device{}());
  if (const char* env = getenv("GPUTIER_TEST_SEED"); env != nullptr) (void)absl::SimpleAtoi(env, &seed);
  printf("seed %u (rerun with GPUTIER_TEST_SEED=%u)\n", seed, seed);
  RecordProperty("seed", std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay_ms(0, 80);

  constexpr int kTrials = 20;
  for (int trial = 0; trial < kTrials; ++trial) {
    const bool fast = trial % 2 == 0;
    const char* target = fast ? "fast" : "slow";
    const int delay = delay_ms(rng);
    SCOPED_TRACE(absl::StrFormat("trial %d: %s, SIGKILL after %d ms (seed %u)", trial, target, delay, seed));
    absl::StatusOr<std::string> queued = Tier(c.id(), target, "0s");
    ASSERT_TRUE(queued.ok()) << queued.status() << "\n" << Diag();
    std::this_thread::sleep_for(milliseconds(delay));
    agent_->Kill();
    // A helper the killed gputierd had just forked (a setns child of a mount
    // step) can outlive it by a moment and, until it exits, still holds the
    // pin directory's lock (inherited): the next gputierd would refuse to
    // start ("another gputierd is using ...").
    EXPECT_TRUE(WaitFor([&] { return PinDirFree(agent_->pin_dir()); }, seconds(5)));
    absl::Status started = StartAgent();
    ASSERT_TRUE(started.ok()) << started << "\n" << Diag();
    absl::StatusOr<std::string> done = Tier(c.id(), target, "30s");
    ASSERT_TRUE(done.ok()) << done.status() << "\n" << Diag();
    std::string wrong;
    // Loop devices are freed shortly after their mount goes: allow a moment.
    WaitFor([&] { return (wrong = Inconsistencies(c, fast)).empty(); }, seconds(5), milliseconds(100));
    ASSERT_EQ(wrong, "") << Diag();
    if (fast) {
      EXPECT_TRUE(WaitFor([&] { return CountW(FastUpper(c.id())) > 0; }, seconds(10)))
          << "the writer stalled on the fast tier\n" << Diag();
    }
  }
  const std::string log = SlurpFile(agent_->log_path());
  int finished = 0;
  for (size_t pos = 0; (pos = log.find("interrupted by a restart", pos)) != std::string::npos; ++pos) ++finished;
  printf("%d of %d restarts found a step in flight\n", finished, kTrials);

  const int count = StopWriter(c);
  ASSERT_GT(count, 0) << Diag();
  ASSERT_TRUE(Tier(c.id(), "slow", "30s").ok()) << Diag();
  printf("writer wrote %d files\n", count);
  VerifyWriterFiles(c, count);
  EXPECT_FALSE(PathExists(FastDir(c.id())));
  EXPECT_EQ(Inconsistencies(c, /*fast=*/false), "") << Diag();
}

// The documented behaviour of a full fast tier (docs/TIERING.md):
//  - A container's fast partition is its own filesystem of partition_size
//    bytes: filling it gives the container ENOSPC, exactly like a full disk;
//    what it wrote before, and the part of the file that fitted, stay.
//  - A promotion needs room for a new partition below high_watermark (or the
//    spare partition, which is only kept while it fits below the mark); when
//    there is none, it is refused: the container stays on the slow tier and
//    its status says why (last_error names the high watermark), and
//    `gputierctl tier X fast --wait` gives up with a non-zero exit.
//  - When the fast filesystem goes above high_watermark anyway (someone else
//    writes to it), the agent first releases the spare, then demotes the
//    least recently active containers (operator-pinned ones last) until the
//    projected use is at or below low_watermark; each is written back to the
//    slow tier (nothing is lost), marked pressure_demoted and held on the
//    slow tier until a partition fits below low_watermark again.
//
// The fast tier here is a 160 MiB filesystem of the test, partitions are
// 32 MiB and the watermarks are set from its measured use so that exactly one
// partition fits below high_watermark: the spare made at start, which A's
// promotion takes; then no spare is made again and B's promotion is refused.
// (With room for two, the agent would make a new spare after A's promotion,
// and B would take it.)
TEST_F(TierAgentTest, FullFastTierRefusesPromotionDemotesTheLeastRecentlyActiveAndLosesNothing) {
  fastfs_dir_ = std::make_unique<TempDir>("gputier-fastfs");
  ASSERT_FALSE(fastfs_dir_->path().empty());
  absl::StatusOr<PartitionPaths> fs_paths = PlanPartition(fastfs_dir_->path(), "fastfs");
  ASSERT_TRUE(fs_paths.ok());
  ASSERT_TRUE(CreatePartition(*fs_paths, 160 * kMiB).ok());
  fastfs_ = std::make_unique<PartitionPaths>(*fs_paths);
  fast_root_ = fs_paths->mount_point;
  absl::StatusOr<SpaceUsage> empty = FilesystemUsage(fast_root_);
  ASSERT_TRUE(empty.ok());
  const uint64_t total = empty->total_bytes;
  const uint64_t used0 = empty->used_bytes;
  constexpr uint64_t kPart = 32 * kMiB;
  // Room for one partition (used0 + 32 MiB <= high < used0 + 64 MiB), and a
  // margin for the directories the agent makes.
  const double high = static_cast<double>(used0 + kPart + 16 * kMiB) / static_cast<double>(total);
  const double low = static_cast<double>(used0 + kPart + 8 * kMiB) / static_cast<double>(total);
  printf("fast tier: %llu MiB, %llu MiB used empty; watermarks %.4f / %.4f\n",
         static_cast<unsigned long long>(total >> 20), static_cast<unsigned long long>(used0 >> 20), high, low);

  absl::StatusOr<RuncContainer*> made_a = StartContainer("exec sleep 100000");
  ASSERT_TRUE(made_a.ok()) << made_a.status();
  absl::StatusOr<RuncContainer*> made_b = StartContainer("exec sleep 100000");
  ASSERT_TRUE(made_b.ok()) << made_b.status();
  RuncContainer& a = **made_a;
  RuncContainer& b = **made_b;
  ASSERT_TRUE(StartAgent("32MiB", absl::StrFormat(", high_watermark: %.6f, low_watermark: %.6f", high, low)).ok())
      << Diag();
  ASSERT_TRUE(Adopted(a)) << Diag();
  ASSERT_TRUE(Adopted(b)) << Diag();
  const std::string spare_mnt = absl::StrCat(fast_root_, "/", kSpare, "/mnt");
  ASSERT_TRUE(WaitFor([&] { return HostMountsUnder(spare_mnt).size() == 1; }, seconds(20)))
      << "no spare partition\n" << Diag();

  // A gets the one partition (the spare); no new spare fits.
  ASSERT_TRUE(Tier(a.id(), "fast", "30s").ok()) << Diag();
  EXPECT_EQ(Inconsistencies(a, /*fast=*/true), "") << Diag();

  // B is refused.
  absl::StatusOr<std::string> refused = Tier(b.id(), "fast", "3s");
  EXPECT_FALSE(refused.ok()) << "B's promotion went through: " << *refused << "\n" << Diag();
  nlohmann::json rb = Row(b.id());
  ASSERT_TRUE(rb.is_object()) << Diag();
  EXPECT_EQ(rb["tier"], "slow");
  ASSERT_TRUE(rb["last_error"].is_string()) << rb.dump();
  EXPECT_TRUE(absl::StrContains(rb["last_error"].get<std::string>(), "high watermark")) << rb.dump();
  EXPECT_FALSE(PathExists(FastDir(b.id())));
  EXPECT_TRUE(HostMountsUnder(spare_mnt).empty()) << "a spare was made past the high watermark";

  // A fills its partition: ENOSPC, like a full disk; earlier data intact.
  std::string sum;
  for (int i = 1; i <= 100000; ++i) absl::StrAppend(&sum, i, "\n");
  absl::StatusOr<CommandResult> w = a.Exec("seq 1 100000 > /data/sum");
  ASSERT_TRUE(w.ok() && w->exit_code == 0);
  absl::StatusOr<CommandResult> dd = a.Exec("dd if=/dev/zero of=/data/big bs=1M count=64");
  ASSERT_TRUE(dd.ok());
  EXPECT_NE(dd->exit_code, 0) << dd->output;
  EXPECT_TRUE(absl::StrContains(dd->output, "No space left on device")) << dd->output;
  EXPECT_EQ(SlurpFile(FastUpper(a.id()) + "/sum"), sum);
  struct stat big;
  ASSERT_EQ(lstat((FastUpper(a.id()) + "/big").c_str(), &big), 0);
  EXPECT_GT(big.st_size, static_cast<off_t>(16 * kMiB));
  EXPECT_LT(big.st_size, static_cast<off_t>(kPart));
  absl::StatusOr<CommandResult> inside = a.Exec("cat /data/sum");
  ASSERT_TRUE(inside.ok());
  EXPECT_TRUE(inside->output == sum) << "the file written before ENOSPC changed";
  EXPECT_EQ(Row(a.id())["tier"], "fast");

  // Someone else fills the fast filesystem past the high watermark: A goes.
  absl::StatusOr<SpaceUsage> now = FilesystemUsage(fast_root_);
  ASSERT_TRUE(now.ok());
  const uint64_t high_bytes = static_cast<uint64_t>(high * static_cast<double>(total));
  const uint64_t filler_size = high_bytes - std::min(high_bytes, now->used_bytes) + 8 * kMiB;
  const std::string filler = fast_root_ + "/filler";
  {
    int fd = open(filler.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(fallocate(fd, 0, 0, static_cast<off_t>(filler_size)), 0) << strerror(errno);
    fsync(fd);
    close(fd);
  }
  const Clock::time_point t0 = Clock::now();
  ASSERT_TRUE(WaitFor(
      [&] {
        nlohmann::json r = Row(a.id());
        return r.is_object() && r["tier"] == "slow" && r["op"] == "none" && r["pressure_demoted"] == true;
      },
      seconds(30)))
      << "A was not demoted under pressure\n" << Diag();
  printf("A demoted %.2f s after the fast tier passed its high watermark\n", SecondsSince(t0));
  EXPECT_FALSE(PathExists(FastDir(a.id())));
  EXPECT_EQ(Inconsistencies(a, /*fast=*/false), "") << Diag();
  EXPECT_EQ(SlurpFile(SlowUpper(a.id()) + "/sum"), sum);
  struct stat big_slow;
  ASSERT_EQ(lstat((SlowUpper(a.id()) + "/big").c_str(), &big_slow), 0);
  EXPECT_EQ(big_slow.st_size, big.st_size);
  EXPECT_TRUE(SlurpFile(SlowUpper(a.id()) + "/big") == std::string(big.st_size, '\0'));
  inside = a.Exec("cat /data/sum");
  ASSERT_TRUE(inside.ok());
  EXPECT_TRUE(inside->output == sum);
  EXPECT_EQ(Row(b.id())["tier"], "slow");
  EXPECT_EQ(Row(a.id())["override"], "fast") << "the operator's choice is kept, only held back";

  // Room returns: A is left on the slow tier, B can go fast.
  ASSERT_TRUE(Tier(a.id(), "slow", "30s").ok()) << Diag();
  ASSERT_TRUE(WaitFor([&] { return Row(a.id())["override"] == "slow"; }, seconds(10))) << Diag();
  ASSERT_EQ(unlink(filler.c_str()), 0);
  const Clock::time_point t1 = Clock::now();
  absl::StatusOr<std::string> b_up = Tier(b.id(), "fast", "30s");
  ASSERT_TRUE(b_up.ok()) << b_up.status() << "\n" << Diag();
  printf("B promoted %.2f s after the filler went\n", SecondsSince(t1));
  // B was refused all along (5 s backoff each time): the repeated request is
  // attempted at once, not after the backoff.
  EXPECT_LT(SecondsSince(t1), 2.5) << Diag();
  EXPECT_EQ(Inconsistencies(b, /*fast=*/true), "") << Diag();
  EXPECT_EQ(Row(a.id())["tier"], "slow");
  EXPECT_EQ(Row(b.id())["pressure_demoted"], false);
}

// Someone unmounts gputier's overlay inside the container's mount namespace
// (`umount /data` in the container) while the agent runs. The agent notices
// within its next checks (every second) and puts back what the record says:
// a fast overlay's layer is folded into the slow one first (nothing written
// on the fast partition is lost) and the slow overlay mounted, and then the
// override (fast) promotes the container again; a lost slow overlay is just
// mounted again. Afterwards demotion and promotion work as before (they once
// failed with FailedPrecondition on every retry until the agent restarted).
TEST_F(TierAgentTest, OverlayUnmountedInsideTheContainerIsMountedAgainAndLosesNothing) {
  absl::StatusOr<RuncContainer*> made = StartContainer("exec sleep 100000");
  ASSERT_TRUE(made.ok()) << made.status();
  RuncContainer& c = **made;
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  ASSERT_TRUE(Adopted(c)) << Diag();
  absl::StatusOr<CommandResult> w =
      c.Exec("echo slow > /data/slow && echo doomed > /data/doomed && mkdir /data/dir && echo a > /data/dir/a");
  ASSERT_TRUE(w.ok() && w->exit_code == 0) << (w.ok() ? w->output : "");
  ASSERT_TRUE(Tier(c.id(), "fast", "30s").ok()) << Diag();
  w = c.Exec("echo fast > /data/fast && echo more >> /data/slow && rm /data/doomed && echo b > /data/dir/b && "
             "seq 1 20000 > /data/blob");
  ASSERT_TRUE(w.ok() && w->exit_code == 0) << (w.ok() ? w->output : "");
  ASSERT_TRUE(PathExists(FastUpper(c.id()) + "/fast"));
  std::string want = "slow\nmore\nfast\na\nb\n";
  for (int i = 1; i <= 20000; ++i) absl::StrAppend(&want, i, "\n");
  const std::string show = "cat /data/slow /data/fast /data/dir/a /data/dir/b /data/blob && test ! -e /data/doomed";

  // Unmounts /data inside the container and waits until the agent has
  // logged the loss of `tier`'s overlay and the container is consistent on
  // that tier again; returns the seconds that took, or -1.
  std::string wrong;
  auto lose_overlay = [&](const std::string& tier) -> double {
    const std::string lost = "lost its " + tier + "-tier overlay";
    const std::string log_before = SlurpFile(agent_->log_path());
    if (UnmountInside(c.pid(), "/data") != 0) return -1;
    const Clock::time_point t0 = Clock::now();
    const bool back = WaitFor(
        [&] {
          return Occurrences(SlurpFile(agent_->log_path()), lost) > Occurrences(log_before, lost) &&
                 (wrong = Inconsistencies(c, /*fast=*/tier == "fast")).empty();
        },
        seconds(20), milliseconds(100));
    return back ? SecondsSince(t0) : -1;
  };

  // The fast overlay goes.
  const double refolded = lose_overlay("fast");
  ASSERT_GE(refolded, 0) << "the agent did not mount the lost fast overlay's data again: " << wrong << "\n"
                         << Diag();
  printf("lost fast overlay: folded back, mounted slow and promoted again %.2f s after the unmount\n", refolded);
  EXPECT_EQ(SlurpFile(SlowUpper(c.id()) + "/fast"), "fast\n") << "the fast layer was not folded into the slow one";
  EXPECT_EQ(SlurpFile(SlowUpper(c.id()) + "/slow"), "slow\nmore\n");
  absl::StatusOr<CommandResult> r = c.Exec(show);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 0) << r->output.substr(0, 2000);
  EXPECT_TRUE(r->output == want) << "the container's files changed:\n" << r->output.substr(0, 2000);
  w = c.Exec("echo again > /data/again");
  ASSERT_TRUE(w.ok() && w->exit_code == 0);
  EXPECT_EQ(SlurpFile(FastUpper(c.id()) + "/again"), "again\n") << "new writes do not go to the fast tier";
  EXPECT_FALSE(PathExists(FastUpper(c.id()) + "/fast")) << "the folded fast layer was mounted again";

  // Demotion works (it once failed with FailedPrecondition forever).
  ASSERT_TRUE(Tier(c.id(), "slow", "30s").ok()) << Diag();
  EXPECT_TRUE(WaitFor([&] { return (wrong = Inconsistencies(c, /*fast=*/false)).empty(); }, seconds(5)))
      << wrong << "\n" << Diag();
  EXPECT_FALSE(PathExists(FastDir(c.id())));

  // The slow overlay goes: mounted again, nothing lost; promotion works.
  EXPECT_GE(lose_overlay("slow"), 0) << "the agent did not mount the lost slow overlay again: " << wrong << "\n"
                                     << Diag();
  r = c.Exec(show + " && cat /data/again");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->output == want + "again\n") << r->output.substr(0, 2000);
  ASSERT_TRUE(Tier(c.id(), "fast", "30s").ok()) << Diag();
  EXPECT_EQ(Inconsistencies(c, /*fast=*/true), "") << Diag();
  ASSERT_TRUE(Tier(c.id(), "slow", "30s").ok()) << Diag();
  r = c.Exec(show + " && cat /data/again");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->output == want + "again\n") << r->output.substr(0, 2000);
  EXPECT_EQ(SlurpFile(SlowUpper(c.id()) + "/again"), "again\n");
  nlohmann::json row = Row(c.id());
  EXPECT_TRUE(row.is_object() && row["last_error"].is_null()) << row.dump();
}

// `gputierctl tier X fast` sent again must be attempted at once, even while
// the container backs off (5 s) after an error; the request used to wait out
// the backoff because the override itself did not change. Here every
// promotion is refused (a high watermark below what the fast filesystem
// already uses), so each attempt shows as a fresh backoff (retry_in_ms).
TEST_F(TierAgentTest, RepeatedOverrideIsAttemptedAtOnceDespiteTheErrorBackoff) {
  absl::StatusOr<RuncContainer*> made = StartContainer("exec sleep 100000");
  ASSERT_TRUE(made.ok()) << made.status();
  RuncContainer& c = **made;
  ASSERT_TRUE(StartAgent("64MiB", ", high_watermark: 0.001, low_watermark: 0.001").ok()) << Diag();
  ASSERT_TRUE(Adopted(c)) << Diag();
  ASSERT_TRUE(Tier(c.id(), "fast", "0s").ok()) << Diag();
  int64_t retry_ms = -1;
  auto backoff = [&] {
    nlohmann::json row = Row(c.id());
    retry_ms = row.is_object() && row.contains("retry_in_ms") ? row["retry_in_ms"].get<int64_t>() : -1;
    return row.is_object() && row["last_error"].is_string() &&
           absl::StrContains(row["last_error"].get<std::string>(), "high watermark");
  };
  ASSERT_TRUE(WaitFor(backoff, seconds(10))) << "the promotion was not refused\n" << Diag();
  ASSERT_GT(retry_ms, 0) << "no backoff after the refusal\n" << Diag();
  for (int round = 0; round < 3; ++round) {
    // Wait until the next attempt of its own is 2-3.5 s away...
    ASSERT_TRUE(WaitFor([&] { return backoff() && retry_ms >= 2000 && retry_ms <= 3500; }, seconds(10),
                        milliseconds(20)))
        << "retry_in_ms " << retry_ms << "\n" << Diag();
    const int64_t before = retry_ms;
    // ... then ask again: the attempt must come now, not in 2 s.
    const Clock::time_point t0 = Clock::now();
    ASSERT_TRUE(Tier(c.id(), "fast", "0s").ok()) << Diag();
    EXPECT_TRUE(WaitFor([&] { return backoff() && retry_ms > 4000; }, seconds(1), milliseconds(10)))
        << "round " << round << ": the repeated request was not attempted within 1 s (retry_in_ms was " << before
        << ", is " << retry_ms << ")\n" << Diag();
    printf("round %d: repeated request attempted %.0f ms after it was sent (the backoff had %lld ms left)\n",
           round, SecondsSince(t0) * 1000, static_cast<long long>(before));
  }
  EXPECT_EQ(Row(c.id())["tier"], "slow");
}

// A container holding a file open on its fast overlay blocks its demotion:
// retried every 50 ms for tiers.demote_wait (1 s here), then the container
// stays on the fast tier and the retries back off (doubling); once the file
// is closed the demotion goes through and nothing is lost. Before, it was
// retried every 50 ms for ever (a freeze and a /proc scan each time).
TEST_F(TierAgentTest, DemotionBlockedByAnOpenFileBacksOffPastDemoteWaitAndLosesNothing) {
  absl::StatusOr<RuncContainer*> made = StartContainer("exec sleep 100000");
  ASSERT_TRUE(made.ok()) << made.status();
  RuncContainer& c = **made;
  ASSERT_TRUE(StartAgent("64MiB", ", demote_wait: 1s").ok()) << Diag();
  ASSERT_TRUE(Adopted(c)) << Diag();
  ASSERT_TRUE(Tier(c.id(), "fast", "30s").ok()) << Diag();
  absl::StatusOr<CommandResult> held =
      c.Exec("(exec 3>>/data/held.txt; echo kept >&3; while [ ! -e /tmp/release ]; do sleep 0.1; done) "
             "</dev/null >/dev/null 2>&1 &");
  ASSERT_TRUE(held.ok()) << held.status();
  ASSERT_TRUE(WaitFor([&] { return SlurpFile(FastUpper(c.id()) + "/held.txt") == "kept\n"; }, seconds(10)))
      << Diag();
  ASSERT_TRUE(Tier(c.id(), "slow", "0s").ok()) << Diag();
  int64_t retry_ms = -1;
  auto backing_off = [&](int64_t at_least_ms) {
    nlohmann::json row = Row(c.id());
    if (!row.is_object() || !row["last_error"].is_string()) return false;
    retry_ms = row.contains("retry_in_ms") ? row["retry_in_ms"].get<int64_t>() : -1;
    return absl::StrContains(row["last_error"].get<std::string>(), "waited past tiers.demote_wait") &&
           retry_ms >= at_least_ms && row["tier"] == "fast";
  };
  EXPECT_TRUE(WaitFor([&] { return backing_off(0); }, seconds(10), milliseconds(20)))
      << "the blocked demotion never passed tiers.demote_wait\n" << Diag();
  EXPECT_TRUE(WaitFor([&] { return backing_off(400); }, seconds(10), milliseconds(20)))
      << "no growing backoff past the deadline (retry_in_ms " << retry_ms << ")\n" << Diag();
  ASSERT_TRUE(c.Exec("touch /tmp/release").ok());
  // The file is closed; a request sent again is attempted at once, whatever the backoff.
  EXPECT_TRUE(Tier(c.id(), "slow", "30s").ok()) << Diag();
  EXPECT_TRUE(WaitFor(
      [&] {
        nlohmann::json row = Row(c.id());
        return row.is_object() && row["tier"] == "slow" && row["demotions"] == 1;
      },
      seconds(15)))
      << "not demoted once the file was closed\n" << Diag();
  EXPECT_TRUE(WaitFor([&] { return SlurpFile(SlowUpper(c.id()) + "/held.txt") == "kept\n"; }, seconds(5)))
      << "the held file was not written back\n" << Diag();
}

// A cgroup named like a container's (docker-<64 hex>.scope) whose process
// never left the host's mount namespace and root is not a container: asking
// to tier it gets no mount, no tier directory and no record, only the reason
// in the log. Before, the process was adopted and root-made overlays went
// over the host's own /data.
TEST_F(TierAgentTest, ACgroupNamedLikeAContainerInTheHostsNamespaceIsNeverMounted) {
  testing::TestCgroup parent("fake-runtime");
  const std::string id(64, 'f');
  const std::string fake = absl::StrCat(parent.path(), "/docker-", id, ".scope");
  ASSERT_EQ(mkdir(fake.c_str(), 0755), 0) << fake << ": " << strerror(errno);
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  ExpectNeverTiered(id, fake, "is still starting", [] {
    for (int i = 0; i < 60; ++i) {  // 6 s of opens in the host's namespace
      int fd = open("/etc/hostname", O_RDONLY);
      if (fd >= 0) close(fd);
      usleep(100 * 1000);
    }
    return 0;
  });
  rmdir(fake.c_str());
}

// A cgroup named like a podman container's (libpod-<64 hex>) whose process
// has left the host's mount namespace and root, as a container's has, but
// that no runtime knows (no state under any runtime root): nothing is
// mounted, no record or tier directory is made, and the log says which roots
// were looked in. The namespace check alone let such a process through.
TEST_F(TierAgentTest, AContainerNoRuntimeKnowsIsNeverMounted) {
  testing::TestCgroup parent("fake-libpod");
  const std::string id(64, 'e');
  const std::string fake = absl::StrCat(parent.path(), "/libpod-", id);
  ASSERT_EQ(mkdir(fake.c_str(), 0755), 0) << fake << ": " << strerror(errno);
  char root_tmpl[] = "/tmp/gputier-fake-root-XXXXXX";
  ASSERT_NE(mkdtemp(root_tmpl), nullptr);
  const std::string fake_root = root_tmpl;
  ASSERT_EQ(mkdir((fake_root + "/data").c_str(), 0755), 0);
  std::ofstream(fake_root + "/data/x.pt") << "weights";
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  ExpectNeverTiered(id, fake, absl::StrCat("no container runtime knows container ", id), [&] {
    // Its own mount namespace and root, as a container's process has.
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        chroot(fake_root.c_str()) != 0 || chdir("/") != 0) {
      return 1;
    }
    for (int i = 0; i < 60; ++i) {  // 6 s of opens of its data
      int fd = open("/data/x.pt", O_RDONLY);
      if (fd >= 0) close(fd);
      usleep(100 * 1000);
    }
    return 0;
  });
  rmdir(fake.c_str());
  std::filesystem::remove_all(fake_root);
}

// A recovery that fails (here: the record cannot be saved, the state
// directory being immutable) is retried every 5 s; the container that a
// gputierd stopped mid-step left frozen stays frozen while it fails (it is
// only thawed once its mounts match its record) and is thawed by the retry
// that succeeds. Recovery used to run once at start: the container stayed
// frozen until the next restart.
TEST_F(TierAgentTest, FailedRecoveryIsRetriedAndThawsTheContainerWhenItSucceeds) {
  absl::StatusOr<RuncContainer*> made = StartContainer("exec sleep 100000");
  ASSERT_TRUE(made.ok()) << made.status();
  RuncContainer& c = **made;
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  ASSERT_TRUE(Adopted(c)) << Diag();
  absl::StatusOr<CommandResult> w = c.Exec("echo kept > /data/kept");
  ASSERT_TRUE(w.ok() && w->exit_code == 0);
  ASSERT_TRUE(agent_->Stop().ok()) << Diag();

  // As a gputierd killed mid-promotion leaves it: frozen, a step in flight.
  const std::string freeze = cgroup_root_ + c.cgroup() + "/cgroup.freeze";
  std::ofstream(freeze) << "1";
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(SlurpFile(cgroup_root_ + c.cgroup() + "/cgroup.events"),
                                                      "frozen 1"); },
                      seconds(5)));
  absl::StatusOr<TierRecord> record = TierRecordFromJson(SlurpFile(RecordPath(c.id())), RecordPath(c.id()));
  ASSERT_TRUE(record.ok()) << record.status();
  record->op = TierOp::kPromote;
  record->op_path = "/data";
  record->froze = true;
  std::ofstream(RecordPath(c.id()), std::ios::trunc) << TierRecordToJson(*record);
  const std::string state = agent_->work_dir() + "/state/tier";
  if (!SetImmutable(state, true)) {
    std::ofstream(freeze) << "0";
    GTEST_SKIP() << "the filesystem of " << state << " has no immutable flag";
  }
  struct Mutable {
    std::string dir;
    ~Mutable() { SetImmutable(dir, false); }
  } restore{state};

  ASSERT_TRUE(StartAgent().ok()) << Diag();
  auto failing = [&] {
    nlohmann::json row = Row(c.id());
    return row.is_object() && row["last_error"].is_string() &&
           absl::StrContains(row["last_error"].get<std::string>(), "recovery failed") && row["frozen"] == true;
  };
  ASSERT_TRUE(WaitFor(failing, seconds(10))) << Diag();
  EXPECT_TRUE(absl::StrContains(SlurpFile(agent_->log_path()), "interrupted by a restart")) << Diag();
  // Retried (a fresh backoff after each failure), still failing, still frozen.
  std::this_thread::sleep_for(milliseconds(6500));
  EXPECT_TRUE(failing()) << Diag();
  nlohmann::json row = Row(c.id());
  EXPECT_TRUE(row.is_object() && row.contains("retry_in_ms")) << "the failed recovery was not tried again\n"
                                                              << Diag();
  EXPECT_EQ(absl::StripAsciiWhitespace(SlurpFile(freeze)), "1") << "thawed before its mounts matched its record";

  ASSERT_TRUE(SetImmutable(state, false));
  const Clock::time_point t0 = Clock::now();
  std::string wrong;
  EXPECT_TRUE(WaitFor([&] { return (wrong = Inconsistencies(c, /*fast=*/false)).empty(); }, seconds(15)))
      << "recovery did not succeed once it could: " << wrong << "\n" << Diag();
  printf("recovered and thawed %.2f s after the state directory became writable\n", SecondsSince(t0));
  absl::StatusOr<CommandResult> r = c.Exec("cat /data/kept");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->output, "kept\n");
  EXPECT_TRUE(Row(c.id())["last_error"].is_null()) << Diag();
  ASSERT_TRUE(Tier(c.id(), "fast", "30s").ok()) << Diag();
  EXPECT_EQ(Inconsistencies(c, /*fast=*/true), "") << Diag();
}

// Freeing a partition happens off the manager's thread: the partition is set
// aside (<fast>/.gputier-free-<n>, one rename) and released by a second
// thread, which a stopping agent joins. What an agent killed meanwhile left
// set aside is freed by the next one at start.
TEST_F(TierAgentTest, PartitionsAreFreedOffTheWorkerAndLeftoversAtTheNextStart) {
  absl::StatusOr<RuncContainer*> made = StartContainer("exec sleep 100000");
  ASSERT_TRUE(made.ok()) << made.status();
  RuncContainer& c = **made;
  // A partition that an earlier agent set aside and did not free.
  ASSERT_EQ(mkdir(agent_->tier_root("").c_str(), 0700), 0);
  ASSERT_EQ(mkdir(fast_root_.c_str(), 0700), 0);
  absl::StatusOr<PartitionPaths> leftover = PlanPartition(fast_root_, absl::StrCat(kAsidePrefix, "7"));
  ASSERT_TRUE(leftover.ok());
  ASSERT_TRUE(CreatePartition(*leftover, 32 * kMiB).ok());
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  EXPECT_TRUE(WaitFor([&] { return !PathExists(leftover->dir); }, seconds(10)))
      << "the leftover partition was not freed\n" << Diag();
  EXPECT_TRUE(WaitFor([&] { return LoopsBackedUnder(leftover->dir).empty(); }, seconds(5)));
  EXPECT_TRUE(HostMountsUnder(leftover->dir).empty());

  ASSERT_TRUE(Adopted(c)) << Diag();
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(Tier(c.id(), "fast", "30s").ok()) << Diag();
    ASSERT_TRUE(Tier(c.id(), "slow", "30s").ok()) << Diag();
    EXPECT_FALSE(PathExists(FastDir(c.id()))) << "the container's partition directory is still in place";
    std::string wrong;
    EXPECT_TRUE(WaitFor(
        [&] {
          std::vector<std::string> aside;
          for (const std::string& m : HostMountsUnder(fast_root_)) {
            if (absl::StrContains(m, kAsidePrefix)) aside.push_back(m);
          }
          wrong = Lines(aside);
          return aside.empty() && Inconsistencies(c, /*fast=*/false).empty();
        },
        seconds(10)))
        << "still being freed: " << wrong << "\n" << Diag();
  }
  // The status (published every cycle) says so too.
  EXPECT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<nlohmann::json> t = agent_->Tiering();
        return t.ok() && (*t)["tiers"]["fast_freeing"] == 0;
      },
      seconds(3)))
      << Diag();
}

// deploy/grafana/gputier-dashboard.json reads only series this gputierd
// serves: with a tiered container (the tier series), a promotion (its
// latency) and a control request answered with an error (errors_total),
// every metric name of every panel and template query is in /metrics.
TEST_F(TierAgentTest, GrafanaDashboardReadsOnlySeriesGputierdServes) {
  const nlohmann::json dashboard = testing::ReadDashboard();
  ASSERT_TRUE(dashboard.is_object());
  std::set<std::string> wanted;
  for (const std::string& e : testing::DashboardExpressions(dashboard)) {
    for (const std::string& name : testing::MetricNames(e)) wanted.insert(name);
  }
  absl::StatusOr<RuncContainer*> made = StartContainer("exec sleep 100000");
  ASSERT_TRUE(made.ok()) << made.status();
  const int port = testing::FreeLoopbackPort();
  agent_flags_ = {absl::StrCat("--metrics-address=127.0.0.1:", port)};
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  ASSERT_TRUE(Adopted(**made)) << Diag();
  ASSERT_TRUE(Tier((*made)->id(), "fast", "30s").ok()) << Diag();
  EXPECT_FALSE(agent_->Ctl("explain no-such-container").ok());
  std::set<std::string> missing;
  WaitFor(
      [&] {
        const std::set<std::string> served = testing::SampleNames(testing::HttpGet(port, "/metrics").body);
        missing.clear();
        for (const std::string& name : wanted) {
          if (!served.count(name)) missing.insert(name);
        }
        return missing.empty();
      },
      seconds(10));
  EXPECT_TRUE(missing.empty()) << "the dashboard reads series /metrics does not have: "
                               << absl::StrJoin(missing, ", ") << "\n"
                               << Diag();
}

}  // namespace
}  // namespace gputier
