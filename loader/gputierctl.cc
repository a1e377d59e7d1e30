// gputierctl: inspect a gputier node. Reads the pinned maps directly, so it
// needs no running daemon.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "loader/cgroup_resolver.h"
#include "loader/cli.h"
#include "loader/doctor.h"
#include "loader/gpu_devices.h"
#include "loader/log.h"
#include "loader/maps.h"
#include "loader/pin_dir.h"
#include "loader/report.h"

ABSL_FLAG(std::string, pin_dir, gputier::kDefaultPinDir, "bpffs directory of gputierd's pins");
ABSL_FLAG(bool, json, false, "machine-readable output (audit)");
ABSL_FLAG(bool, verbose, false, "debug logging, including libbpf's messages");

namespace gputier {
namespace {

constexpr char kUsage[] =
    "inspect a gputier node.\n\n"
    "Usage: gputierctl <command> [flags]\n\n"
    "Commands:\n"
    "  doctor          what this kernel offers (BTF, LSM list, program loadability,\n"
    "                  cgroup2, overlayfs, mount API) and the mode gputierd would pick\n"
    "  audit [--json]  per-cgroup counters read straight from the pinned maps\n"
    "  unpin           remove gputier's pinned maps from --pin-dir (counters are lost)\n";

int Doctor() {
  if (geteuid() != 0) {
    fprintf(stderr, "gputierctl doctor: needs root to load probe programs; run it as root\n");
    return 1;
  }
  DoctorReport report = RunDoctor("/tmp");
  fputs(FormatDoctorReport(report).c_str(), stdout);
  return report.mode == "none" ? 1 : 0;
}

int Audit() {
  const std::string pin_dir = absl::GetFlag(FLAGS_pin_dir);
  absl::StatusOr<PinnedMaps> maps = OpenPinnedMaps(pin_dir);
  if (!maps.ok()) {
    fprintf(stderr, "gputierctl audit: %s\n", std::string(maps.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<CgroupCounters> counters = ReadCgroupCounters(maps->cg_stats.get());
  absl::StatusOr<ClassNames> names = ReadClassNames(maps->class_names.get());
  absl::StatusOr<CgroupResolver> resolver = CgroupResolver::Create();
  for (const absl::Status& s : {counters.status(), names.status(), resolver.status()}) {
    if (!s.ok()) {
      fprintf(stderr, "gputierctl audit: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  std::vector<CgroupRow> rows = BuildRows(*counters, *resolver);
  if (absl::GetFlag(FLAGS_json)) {
    printf("%s\n", RowsToJson(rows, *names).dump(2).c_str());
    return 0;
  }
  absl::StatusOr<gt_meta> meta = ReadMeta(maps->meta.get());
  absl::StatusOr<std::array<uint64_t, GT_DROP_MAX>> drops = ReadDrops(maps->drops.get());
  printf("pins: %s  layout v%u  last mode: %s\n", pin_dir.c_str(), meta.ok() ? meta->abi_version : 0,
         !meta.ok() ? "?" : meta->mode == GT_MODE_LSM ? "lsm" : meta->mode == GT_MODE_TRACEPOINT ? "tracepoint" : "none");
  if (drops.ok()) {
    printf("dropped: %llu (cgroup map full), %llu (ring buffer full), %llu (name unreadable)\n",
           static_cast<unsigned long long>((*drops)[GT_DROP_CGROUP_MAP_FULL]),
           static_cast<unsigned long long>((*drops)[GT_DROP_RINGBUF_FULL]),
           static_cast<unsigned long long>((*drops)[GT_DROP_NAME_READ]));
  }
  fputs(RowsToTable(rows, *names).c_str(), stdout);
  return 0;
}

int UnpinCommand() {
  const std::string pin_dir = absl::GetFlag(FLAGS_pin_dir);
  absl::StatusOr<Fd> lock = LockPinDir(pin_dir);
  if (!lock.ok()) {
    fprintf(stderr, "gputierctl unpin: %s\n", std::string(lock.status().message()).c_str());
    return 1;
  }
  if (absl::Status s = Unpin(pin_dir); !s.ok()) {
    fprintf(stderr, "gputierctl unpin: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  printf("removed gputier pins from %s\n", pin_dir.c_str());
  return 0;
}

}  // namespace
}  // namespace gputier

int main(int argc, char** argv) {
  std::vector<std::string> args = gputier::ParseFlags(argc, argv, "gputierctl", gputier::kUsage);
  if (absl::GetFlag(FLAGS_verbose)) gputier::SetLogLevel(gputier::LogLevel::kDebug);
  gputier::RouteLibbpfLogs();
  if (args.empty()) {
    fprintf(stderr, "gputierctl: no command given; see gputierctl --help\n\n%s", gputier::kUsage);
    return 2;
  }
  const std::string& cmd = args[0];
  if (args.size() > 1) {
    fprintf(stderr, "gputierctl %s: unexpected argument '%s'; see gputierctl --help\n", cmd.c_str(),
            args[1].c_str());
    return 2;
  }
  if (cmd == "doctor") return gputier::Doctor();
  if (cmd == "audit") return gputier::Audit();
  if (cmd == "unpin") return gputier::UnpinCommand();
  fprintf(stderr, "gputierctl: unknown command '%s'; commands are doctor, audit, unpin (see --help)\n",
          cmd.c_str());
  return 2;
}
