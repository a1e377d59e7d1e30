#include "policy/verdict_engine.h"

#include <cstring>

namespace gputier {
namespace {

uint32_t KernelKind(Verdict v) {
  switch (v) {
    case Verdict::kCpu: return GT_VERDICT_CPU;
    case Verdict::kGpu: return GT_VERDICT_GPU;
    case Verdict::kMixed: return GT_VERDICT_MIXED;
    case Verdict::kUnknown: break;
  }
  return GT_VERDICT_UNKNOWN;
}

// Whether any counted event happened between two reads. (last_seen_ns is not
// enough: the programs may stamp it from a coarse clock.) opens_by_class only
// moves with opens_total.
bool SameCounters(const gt_cgroup_stats& a, const gt_cgroup_stats& b) {
  return a.opens_total == b.opens_total && a.gpu_opens == b.gpu_opens && a.gpu_ioctls == b.gpu_ioctls &&
         a.writes == b.writes && a.bytes_written == b.bytes_written && a.first_seen_ns == b.first_seen_ns;
}

}  // namespace

gt_verdict ToKernelVerdict(Verdict verdict, const Decision& decision, int64_t now_unix_ns) {
  gt_verdict v = {};
  v.verdict = KernelKind(verdict);
  v.confidence_permille = static_cast<uint32_t>(decision.confidence_permille);
  v.model_version = static_cast<uint32_t>(decision.model_version);
  v.source = decision.source == DecisionSource::kModel ? GT_SOURCE_MODEL : GT_SOURCE_RULE;
  v.decided_at_ns = static_cast<uint64_t>(now_unix_ns);
  return v;
}

Verdict FromKernelVerdict(uint32_t kind) {
  switch (kind) {
    case GT_VERDICT_CPU: return Verdict::kCpu;
    case GT_VERDICT_GPU: return Verdict::kGpu;
    case GT_VERDICT_MIXED: return Verdict::kMixed;
    default: return Verdict::kUnknown;
  }
}

VerdictEngine::VerdictEngine(EngineOptions options) : options_(std::move(options)) {}

VerdictEngine::State& VerdictEngine::StateFor(uint64_t cgroup_id) {
  std::unique_ptr<State>& slot = cgroups_[cgroup_id];
  if (slot == nullptr) {
    slot = std::make_unique<State>(options_.features, options_.classifier.demote_after_cpu_windows);
  }
  return *slot;
}

void VerdictEngine::Restore(uint64_t cgroup_id, const gt_verdict& verdict) {
  State& s = StateFor(cgroup_id);
  s.hysteresis.Restore(FromKernelVerdict(verdict.verdict));
  s.kernel = verdict;
  s.proposed = FromKernelVerdict(verdict.verdict);
}

void VerdictEngine::Decide(uint64_t cgroup_id, State& s, const gt_cgroup_stats& stats,
                           const GpuUsageSample* usage, uint64_t now_mono_ns, int64_t now_unix_ns,
                           EngineUpdate& out) {
  bool moved = !s.decided_once || !SameCounters(stats, s.last);
  s.window.Add({now_mono_ns, stats});
  if (usage != nullptr) {
    moved = moved || usage->busy_share > 0 || usage->contexts_held != s.last_contexts;
    s.last_contexts = usage->contexts_held;
    s.window.AddUsage(now_mono_ns, *usage);
  }
  const Verdict before = s.hysteresis.current();
  if (!moved && (before == Verdict::kCpu || before == Verdict::kUnknown) && s.decided_once) {
    return;  // nothing new can change a CPU or UNKNOWN verdict
  }
  Features f = s.window.Compute(now_mono_ns, options_.gpu_classes);
  Decision d = Classify(f, model_.get(), options_.classifier);
  const Verdict in_force = s.hysteresis.Apply(d.verdict);
  const bool proposal_changed = !s.decided_once || d.verdict != s.proposed;
  s.proposed = d.verdict;
  s.last = stats;
  s.decided_once = true;

  if (in_force != FromKernelVerdict(s.kernel.verdict)) {
    s.kernel = ToKernelVerdict(in_force, d, now_unix_ns);
    out.changed.emplace_back(cgroup_id, s.kernel);
  }
  const bool due = moved && now_unix_ns - s.last_record_unix_ns >=
                                absl::ToInt64Nanoseconds(options_.record_every);
  if (d.verdict != Verdict::kUnknown && (proposal_changed || due)) {
    s.last_record_unix_ns = now_unix_ns;
    out.records.push_back({cgroup_id, f, std::move(d), in_force});
  }
}

EngineUpdate VerdictEngine::Tick(absl::Span<const std::pair<uint64_t, gt_cgroup_stats>> counters,
                                 uint64_t now_mono_ns, int64_t now_unix_ns,
                                 const GpuUsageMap& usage) {
  EngineUpdate out;
  ++tick_;
  for (const auto& [id, stats] : counters) {
    State& s = StateFor(id);
    s.last_tick = tick_;
    const GpuUsageSample* measured = nullptr;
    if (!usage.empty()) {
      auto it = usage.find(id);
      if (it != usage.end()) measured = &it->second;
    }
    Decide(id, s, stats, measured, now_mono_ns, now_unix_ns, out);
  }
  for (auto it = cgroups_.begin(); it != cgroups_.end();) {
    if (it->second->last_tick != tick_) {
      out.removed.push_back(it->first);
      cgroups_.erase(it++);
    } else {
      ++it;
    }
  }
  return out;
}

EngineUpdate VerdictEngine::Update(uint64_t cgroup_id, const gt_cgroup_stats& stats,
                                   uint64_t now_mono_ns, int64_t now_unix_ns) {
  EngineUpdate out;
  State& s = StateFor(cgroup_id);
  s.last_tick = tick_;
  Decide(cgroup_id, s, stats, nullptr, now_mono_ns, now_unix_ns, out);
  return out;
}

std::optional<CgroupVerdict> VerdictEngine::Lookup(uint64_t cgroup_id, uint64_t now_mono_ns) const {
  auto it = cgroups_.find(cgroup_id);
  if (it == cgroups_.end()) return std::nullopt;
  const State& s = *it->second;
  CgroupVerdict v;
  v.verdict = s.hysteresis.current();
  v.kernel = s.kernel;
  v.features = s.window.Compute(now_mono_ns, options_.gpu_classes);
  v.proposed = s.proposed;
  v.cpu_streak = s.hysteresis.cpu_streak();
  v.counters = s.last;
  return v;
}

std::optional<Decision> VerdictEngine::Explain(uint64_t cgroup_id, uint64_t now_mono_ns) const {
  auto it = cgroups_.find(cgroup_id);
  if (it == cgroups_.end()) return std::nullopt;
  Features f = it->second->window.Compute(now_mono_ns, options_.gpu_classes);
  return Classify(f, model_.get(), options_.classifier);
}

std::vector<uint64_t> VerdictEngine::CgroupIds() const {
  std::vector<uint64_t> ids;
  ids.reserve(cgroups_.size());
  for (const auto& [id, s] : cgroups_) ids.push_back(id);
  return ids;
}

}  // namespace gputier
