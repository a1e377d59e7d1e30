// Benchmark: demotion write-back (MergeUpperLayer) against `cp -a`.
//
// Builds a tree F of --files regular files of --file_size bytes (spread over
// --subdirs directories) in a temp dir under --dir, then, for --rounds
// rounds, copies it twice into fresh empty directories on the same
// filesystem: once with MergeUpperLayer(F, S) and once with `cp -a F/. S2/`
// (fork/exec, no shell). Before each timed copy: sync and drop the page cache
// (echo 3 > /proc/sys/vm/drop_caches). The timed region includes syncing the
// destination's filesystem (syncfs) for both, so both numbers are "data on
// disk". The order of the two alternates between rounds. Prints MB/s
// (10^6 bytes) per copy, the medians, and merge/cp.
//
//   sudo build/bench/gputier_bench_writeback [--files=2000] [--file_size=262144]
//        [--dir=/var/tmp] [--rounds=3]
//
// Needs root (drop_caches, and MergeUpperLayer sets owners). Drops the whole
// host's page cache: expect other work on the host to slow down meanwhile.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_common.h"
#include "loader/tier/fs/tier_writeback.h"

ABSL_FLAG(int, files, 2000, "regular files in the tree");
ABSL_FLAG(int64_t, file_size, 256 * 1024, "bytes per file");
ABSL_FLAG(int, subdirs, 20, "directories the files are spread over");
ABSL_FLAG(std::string, dir, "/var/tmp", "where the temp tree is made (its filesystem is measured)");
ABSL_FLAG(int, rounds, 3, "rounds (one merge and one cp each)");

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "gputier_bench_writeback: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

void DropCaches() {
  sync();
  int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, "3", 1) != 1) Die("dropping the page cache (needs root)");
  close(fd);
}

void BuildTree(const std::string& root, int files, int64_t size, int subdirs) {
  if (mkdir(root.c_str(), 0755) != 0) Die("mkdir " + root);
  std::string data(static_cast<size_t>(size), '\0');
  uint32_t x = 12345;
  for (int d = 0; d < subdirs; ++d) {
    if (mkdir(absl::StrCat(root, "/d", d).c_str(), 0755) != 0) Die("mkdir");
  }
  for (int i = 0; i < files; ++i) {
    for (char& c : data) {
      x = x * 1664525u + 1013904223u;
      c = static_cast<char>(x >> 24);
    }
    std::string path = absl::StrCat(root, "/d", i % subdirs, "/f", i);
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
      Die("writing " + path);
    }
    close(fd);
  }
  sync();
}

void Remove(const std::string& parent, const std::string& name) {
  int fd = open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  absl::Status s = gputier::RemoveTree(fd, name);
  close(fd);
  if (!s.ok()) {
    std::fprintf(stderr, "removing %s/%s: %s\n", parent.c_str(), name.c_str(),
                 std::string(s.message()).c_str());
    std::exit(1);
  }
}

void SyncFs(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || syncfs(fd) != 0) Die("syncfs " + path);
  close(fd);
}

// Seconds for MergeUpperLayer(src, dst) into a fresh dst, synced.
double TimeMerge(const std::string& src, const std::string& dst, uint64_t expect_bytes) {
  if (mkdir(dst.c_str(), 0755) != 0) Die("mkdir " + dst);
  DropCaches();
  Clock::time_point start = Clock::now();
  absl::StatusOr<gputier::WriteBackStats> stats = gputier::MergeUpperLayer(src, dst);
  SyncFs(dst);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!stats.ok()) {
    std::fprintf(stderr, "MergeUpperLayer: %s\n", std::string(stats.status().message()).c_str());
    std::exit(1);
  }
  if (stats->bytes != expect_bytes) {
    std::fprintf(stderr, "MergeUpperLayer copied %llu bytes, expected %llu\n",
                 static_cast<unsigned long long>(stats->bytes),
                 static_cast<unsigned long long>(expect_bytes));
    std::exit(1);
  }
  return seconds;
}

// Seconds for `cp -a src/. dst/` into a fresh dst, synced.
double TimeCp(const std::string& src, const std::string& dst) {
  if (mkdir(dst.c_str(), 0755) != 0) Die("mkdir " + dst);
  DropCaches();
  std::string from = src + "/.", to = dst + "/";
  const char* argv[] = {"cp", "-a", from.c_str(), to.c_str(), nullptr};
  Clock::time_point start = Clock::now();
  pid_t child = fork();
  if (child < 0) Die("fork");
  if (child == 0) {
    execvp("cp", const_cast<char* const*>(argv));
    _exit(127);
  }
  int status = 0;
  if (waitpid(child, &status, 0) != child) Die("waitpid");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "cp -a failed (status %d)\n", status);
    std::exit(1);
  }
  SyncFs(dst);
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (int rc = gputier::bench::ParseFlagsAndRequireRoot(argc, argv, "gputier_bench_writeback", "drop_caches, chown"); rc != 0) return rc;
  const int files = absl::GetFlag(FLAGS_files);
  const int64_t size = absl::GetFlag(FLAGS_file_size);
  const int rounds = absl::GetFlag(FLAGS_rounds);
  std::string tmpl = absl::GetFlag(FLAGS_dir) + "/gputier-bench-wb-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) Die("mkdtemp under " + absl::GetFlag(FLAGS_dir));
  const std::string root = tmpl;
  const uint64_t total = static_cast<uint64_t>(files) * static_cast<uint64_t>(size);
  std::printf("tree: %d files x %lld bytes = %.1f MB in %d dirs under %s\n", files,
              static_cast<long long>(size), total / 1e6, absl::GetFlag(FLAGS_subdirs),
              root.c_str());
  BuildTree(root + "/F", files, size, absl::GetFlag(FLAGS_subdirs));

  std::vector<double> merge_mbs, cp_mbs;
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < 2; ++k) {
      bool merge = (k == 0) == (r % 2 == 0);
      double s = merge ? TimeMerge(root + "/F", root + "/S", total)
                       : TimeCp(root + "/F", root + "/S2");
      double mbs = total / 1e6 / s;
      (merge ? merge_mbs : cp_mbs).push_back(mbs);
      std::printf("round %d  %-16s %7.3f s  %8.1f MB/s\n", r + 1,
                  merge ? "MergeUpperLayer" : "cp -a", s, mbs);
      std::fflush(stdout);
      Remove(root, merge ? "S" : "S2");
      sync();
    }
  }
  double m = Median(merge_mbs), c = Median(cp_mbs);
  std::printf("median: MergeUpperLayer %.1f MB/s, cp -a %.1f MB/s, ratio %.2f\n", m, c, m / c);
  Remove(absl::GetFlag(FLAGS_dir), root.substr(absl::GetFlag(FLAGS_dir).size() + 1));
  return 0;
}
