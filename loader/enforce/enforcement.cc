#include "loader/enforce/enforcement.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "loader/cgroup/cgroup_resolver.h"
#include "loader/enforce/guard_maps.h"
#include "loader/base/log.h"
#include "loader/base/utf8.h"

namespace gputier {
namespace {

const char* VerdictWord(uint32_t v) {
  switch (v) {
    case GT_VERDICT_CPU: return "cpu";
    case GT_VERDICT_GPU: return "gpu";
    case GT_VERDICT_MIXED: return "mixed";
  }
  return "unknown";
}

}  // namespace

absl::StatusOr<std::unique_ptr<EnforcementService>> EnforcementService::Start(
    const Options& options, const Observer& observer, const CgroupResolver& resolver) {
  auto self = std::unique_ptr<EnforcementService>(new EnforcementService(options, resolver));
  const EnforcementConfig& c = options.config;
  // Whatever an earlier agent left there (a SIGKILLed one never cleared it):
  // no guard runs until this one attaches its own.
  if (absl::Status s = WriteGuardCfg(observer.map_fd(GT_MAP_GUARD_CFG), {GT_ENFORCE_OFF, 0}); !s.ok()) {
    return s;
  }
  const std::string requested = EnforcementName(c.mode);
  if (c.mode == Enforcement::kOff) {
    self->reason_ = "enforcement: off in the config: the fast-tier guard and the tamper watch are not loaded";
    LogInfo("%s", self->reason_);
    return self;
  }
  if (observer.mode() != ObserveMode::kLsm) {
    const std::string why = absl::StrCat(
        "LSM mode, but gputierd runs in tracepoint mode (", observer.reason(), ")");
    if (c.mode == Enforcement::kEnforce && !c.off_if_unavailable) {
      return absl::FailedPreconditionError(absl::StrCat(
          "enforcement: enforce needs ", why,
          "; run on a kernel with BPF LSM (bpf in lsm=, see `gputierctl doctor`), or downgrade "
          "explicitly with `enforcement_if_unavailable: off` (or `enforcement: audit`) in the config"));
    }
    self->reason_ = absl::StrCat(
        "enforcement: ", requested, " is unavailable: the fast-tier guard and the tamper watch need ", why,
        c.mode == Enforcement::kEnforce ? "; downgraded to off by enforcement_if_unavailable: off"
                                        : "; nothing is recorded or denied");
    LogWarning("%s", self->reason_);
    return self;
  }
  absl::StatusOr<std::vector<uint32_t>> devs = FilesystemsUnder(options.fast_root);
  if (!devs.ok()) {
    return absl::Status(devs.status().code(),
                        absl::StrCat("enforcement: cannot find the fast tier's filesystems: ",
                                     devs.status().message()));
  }
  self->devs_ = std::move(*devs);
  std::sort(self->devs_.begin(), self->devs_.end());
  self->exempt_ = self->ExemptSet({});
  GuardOptions g;
  g.mode = c.mode;
  g.pin_dir = options.pin_dir;
  g.max_cgroups = options.max_cgroups;
  g.own_map_ids = observer.MapIds();
  g.own_link_ids = observer.LinkIds();
  absl::StatusOr<std::unique_ptr<Guard>> guard = Guard::Start(g, self->devs_, self->exempt_);
  if (!guard.ok()) {
    if (c.mode == Enforcement::kEnforce) {
      return absl::Status(guard.status().code(),
                          absl::StrCat("enforcement: enforce, but the guard programs did not load: ",
                                       guard.status().message(),
                                       "; set `enforcement: audit` or off to run without them"));
    }
    self->reason_ = absl::StrCat("enforcement: audit is unavailable: the guard programs did not load (",
                                 guard.status().message(), "); nothing is recorded");
    LogWarning("%s", self->reason_);
    return self;
  }
  self->guard_ = std::move(*guard);
  std::vector<std::string> dev_names;
  for (uint32_t d : self->devs_) dev_names.push_back(absl::StrFormat("%u:%u", d >> 20, d & 0xfffff));
  const std::string scope =
      self->devs_.empty()
          ? absl::StrCat("; fast tier ", options.fast_root,
                         " is a directory on a filesystem it shares with the rest of the node, so only "
                         "the fast partitions mounted under it are guarded (none yet)")
          : absl::StrCat("; fast tier ", options.fast_root, " (filesystems ", absl::StrJoin(dev_names, ", "),
                         ")");
  self->reason_ = absl::StrCat(
      "enforcement: ", requested, ": ",
      c.mode == Enforcement::kEnforce ? "writes into the fast tier from non-GPU cgroups are denied "
                                        "(EACCES) and recorded; tampering with gputier's maps and "
                                        "links is denied (EPERM) and recorded"
                                      : "writes into the fast tier from non-GPU cgroups and tampering "
                                        "with gputier's maps and links are recorded, nothing is denied",
      scope);
  LogInfo("%s", self->reason_);
  return self;
}

absl::flat_hash_map<uint64_t, uint32_t> EnforcementService::ExemptSet(
    const std::vector<uint64_t>& on_fast_tier) {
  absl::flat_hash_map<uint64_t, uint32_t> out;
  std::vector<std::string> missing;
  for (const std::string& path : options_.config.exempt_cgroups) {
    absl::StatusOr<uint64_t> id = resolver_.IdOf(path);
    if (id.ok()) {
      out[*id] = GT_EXEMPT_CONFIGURED;
    } else {
      missing.push_back(path);
    }
  }
  if (missing != missing_exempt_) {
    for (const std::string& m : missing) {
      LogWarning("enforcement_exempt_cgroups: %s does not exist (yet) under %s; it is exempt once it "
                 "does",
                 m, resolver_.mount_point());
    }
    missing_exempt_ = missing;
  }
  for (uint64_t id : on_fast_tier) out.try_emplace(id, GT_EXEMPT_ON_FAST_TIER);
  return out;
}

void EnforcementService::Refresh(const std::vector<uint64_t>& on_fast_tier) {
  if (guard_ == nullptr) return;
  if (absl::StatusOr<std::vector<uint32_t>> devs = FilesystemsUnder(options_.fast_root); devs.ok()) {
    std::sort(devs->begin(), devs->end());  // devs_ is kept sorted
    if (*devs != devs_) {
      if (absl::Status s = guard_->SetFilesystems(*devs); s.ok()) {
        devs_ = std::move(*devs);
        LogDebug("enforcement: the fast tier now spans %d filesystems", devs_.size());
      } else {
        LogWarning("enforcement: %s", s.message());
      }
    }
  }
  absl::flat_hash_map<uint64_t, uint32_t> exempt = ExemptSet(on_fast_tier);
  if (exempt != exempt_) {
    if (absl::Status s = guard_->SetExempt(exempt); s.ok()) {
      exempt_ = std::move(exempt);
    } else {
      LogWarning("enforcement: %s", s.message());
    }
  }
}

nlohmann::json EnforcementService::StatusJson() const {
  nlohmann::json fs = nlohmann::json::array();
  for (uint32_t d : devs_) fs.push_back(absl::StrFormat("%u:%u", d >> 20, d & 0xfffff));
  nlohmann::json exempt = nlohmann::json::object();
  for (const auto& [id, why] : exempt_) {
    exempt[absl::StrCat(id)] = why == GT_EXEMPT_CONFIGURED ? "configured" : "on-fast-tier";
  }
  return {{"requested", EnforcementName(options_.config.mode)},
          {"active", guard_ != nullptr},
          {"mode", guard_ != nullptr ? EnforcementName(guard_->mode()) : "off"},
          {"reason", reason_},
          {"fast_root", options_.fast_root},
          {"filesystems", fs},
          {"exempt_cgroups", exempt}};
}

std::string DescribeAuditRecord(const gt_audit_record& r, const std::string& cgroup_path) {
  // The process and cgroup names are a tenant's: printed escaped.
  const std::string comm = EscapeControlAndInvalid(absl::string_view(r.comm, strnlen(r.comm, sizeof(r.comm))));
  const std::string who = absl::StrFormat("pid %u (%s) uid %u in cgroup %u (%s, verdict %s)", r.pid, comm,
                                          r.uid, r.cgroup_id, EscapeControlAndInvalid(cgroup_path),
                                          VerdictWord(r.verdict));
  if (r.kind == GT_AUDIT_TAMPER) {
    return absl::StrFormat("tamper: %s %s asked for %s %u", r.denied ? "REFUSED:" : "recorded:", who,
                           r.op == GT_OP_LINK_FD ? "an fd to gputier's link" : "a write-capable fd to gputier's map",
                           r.target);
  }
  return absl::StrFormat("guard: %s %s on the fast tier (filesystem %u:%u) by %s",
                         r.denied ? "DENIED" : "recorded", AuditOpName(r.op), r.target >> 20,
                         r.target & 0xfffff, who);
}

}  // namespace gputier
