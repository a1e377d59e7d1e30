#include "loader/classify/verdict_service.h"

#include <time.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "loader/base/clock.h"
#include "loader/base/log.h"
#include "loader/observe/maps.h"
#include "loader/classify/container_match.h"
#include "loader/classify/decision_row.h"
#include "loader/classify/model_store.h"
#include "loader/classify/retrainer.h"
#include "policy/rule.h"

namespace gputier {
namespace {

nlohmann::json Error(absl::string_view message) {
  return {{"ok", false}, {"error", std::string(message)}};
}

nlohmann::json FeaturesJson(const Features& f) {
  return {{"gpu_ioctl_rate", f.gpu_ioctl_rate},
          {"gpu_opened", f.gpu_opened},
          {"ext_ratio", f.ext_ratio_defined ? nlohmann::json(f.ext_ratio) : nlohmann::json(nullptr)},
          {"ext_ratio_source", std::string(RatioSourceName(f.ext_ratio_source))},
          {"open_rate", f.open_rate},
          {"write_rate", f.write_rate},
          {"evidence", f.evidence},
          {"window_seconds", f.window_seconds},
          {"gpu_contexts_held", f.gpu_contexts_known ? nlohmann::json(f.gpu_contexts_held) : nlohmann::json(nullptr)},
          {"gpu_busy_share", f.gpu_busy_share_defined ? nlohmann::json(f.gpu_busy_share) : nlohmann::json(nullptr)},
          {"gpu_busy_source", std::string(BusySourceName(f.gpu_busy_source))},
          {"gpu_resident_bytes", f.gpu_resident_bytes},
          {"context_last_used_windows",
           f.context_last_used_defined ? nlohmann::json(f.context_last_used_windows) : nlohmann::json(nullptr)},
          {"gpu_context_recent", f.gpu_context_recent}};
}

// The cumulative counters behind the features, so a client can take its own
// rates between two requests (gputierctl top).
nlohmann::json CountersJson(const gt_cgroup_stats& c) {
  return {{"opens", c.opens_total},
          {"gpu_opens", c.gpu_opens},
          {"gpu_ioctls", c.gpu_ioctls},
          {"bytes_written", c.bytes_written},
          {"last_seen_ns", c.last_seen_ns}};
}

std::string SourceName(uint32_t source) {
  switch (source) {
    case GT_SOURCE_RULE: return "rule";
    case GT_SOURCE_MODEL: return "model";
    case GT_SOURCE_OPERATOR: return "operator";
    default: return "none";
  }
}

absl::StatusOr<EngineOptions> EngineOptionsOf(const VerdictService::Options& o) {
  EngineOptions e;
  e.features.window = o.policy.window;
  e.classifier.thresholds.gpu_ioctl_rate = o.policy.gpu_ioctl_rate;
  e.classifier.thresholds.ext_ratio = o.policy.ext_ratio;
  e.classifier.thresholds.min_evidence = o.policy.min_evidence;
  e.classifier.thresholds.gpu_busy_share = o.policy.gpu_busy_share;
  e.features.gpu_context_used_windows = o.policy.gpu_context_used_windows;
  e.classifier.min_rows_per_class = o.policy.min_rows_per_class;
  e.classifier.demote_after_cpu_windows = o.policy.demote_after_cpu_windows;
  e.record_every = o.policy.record_every;
  std::vector<uint32_t> ids;
  for (const std::string& name : o.policy.gpu_classes) {
    for (const ExtensionClass& c : o.classes) {
      if (c.name == name) ids.push_back(c.id);
    }
  }
  absl::StatusOr<GpuClassSet> set = GpuClassSet::FromIds(ids);
  if (!set.ok()) return set.status();
  e.gpu_classes = *set;
  if (absl::Status s = ValidateClassifierOptions(e.classifier); !s.ok()) return s;
  if (absl::Status s = ValidateFeatureOptions(e.features); !s.ok()) return s;
  return e;
}

}  // namespace

namespace {

// ", namespace/pod/container" (or podman's name) after a cgroup path in the
// log; names hold only [A-Za-z0-9._/-] (oci_config), so they cannot forge a
// line.
template <typename IdentityT>
std::string ShownSuffix(const IdentityT& who) {
  if (!who.container) return "";
  return absl::StrCat(", ", who.name.empty() ? who.container->container_id.substr(0, 12) : who.name);
}

// A container's name in JSON: its name, else its short id; null for a
// cgroup without a container.
template <typename IdentityT>
nlohmann::json NameJson(const IdentityT& who) {
  if (!who.container) return nullptr;
  return who.name.empty() ? who.container->container_id.substr(0, 12) : who.name;
}

}  // namespace

VerdictService::VerdictService(Options options, EngineOptions engine_options, ClassificationTable table,
                               int stats_fd, int verdicts_fd, const CgroupResolver* resolver)
    : options_(std::move(options)),
      engine_(std::move(engine_options)),
      table_(std::move(table)),
      stats_fd_(stats_fd),
      verdicts_fd_(verdicts_fd),
      resolver_(resolver) {
  gpu_use_ = std::make_unique<GpuUseMonitor>(options_.gpu_use, resolver_);
  gpu_use_->SetSelectors(options_.gpu_selectors);
}

void VerdictService::SetGpuSelectors(const std::vector<std::pair<uint32_t, uint32_t>>& selectors) {
  options_.gpu_selectors = selectors;
  gpu_use_->SetSelectors(selectors);
}

absl::StatusOr<std::unique_ptr<VerdictService>> VerdictService::Create(const Options& options, int stats_fd,
                                                                       int verdicts_fd,
                                                                       const CgroupResolver* resolver) {
  absl::StatusOr<EngineOptions> engine_options = EngineOptionsOf(options);
  if (!engine_options.ok()) return engine_options.status();
  TableOptions table_options;
  table_options.max_rows = options.policy.table_max_rows;
  const std::string table_path = absl::StrCat(options.state_dir, "/", kClassificationTableFile);
  std::string degraded;
  absl::StatusOr<ClassificationTable> table = OpenTableOrDegrade(table_path, table_options, &degraded);
  if (!table.ok()) return table.status();
  if (!degraded.empty()) LogError("degraded: %s", degraded);
  auto service = std::unique_ptr<VerdictService>(new VerdictService(
      options, std::move(*engine_options), std::move(*table), stats_fd, verdicts_fd, resolver));
  service->degraded_ = std::move(degraded);

  const std::string model_path = absl::StrCat(options.state_dir, "/", kModelFile);
  absl::StatusOr<NaiveBayesModel> model = LoadModel(model_path);
  bool retrain = false;
  if (model.ok()) {
    if (absl::Status inputs = CheckModelInputs(*model); !inputs.ok()) {
      LogWarning("model: %s refused: %s; retraining from the classification table", model_path,
                 inputs.message());
      model = absl::FailedPreconditionError("refused");
      retrain = true;
    }
  }
  if (retrain) {
    // Below: the table is opened, then TrainNow replaces the file.
  } else if (model.ok()) {
    LogInfo("model: version %d loaded from %s", model->version(), model_path);
    service->engine_.SetModel(std::make_shared<const NaiveBayesModel>(std::move(*model)));
  } else if (absl::IsNotFound(model.status())) {
    LogInfo("model: none yet (%s); the rule decides until one is trained", model_path);
  } else {
    LogWarning("model: %s; the rule decides until the model is retrained", model.status().message());
  }
  absl::StatusOr<int64_t> max_id = service->table_.MaxId();
  if (max_id.ok()) service->trained_through_row_ = *max_id;
  if (retrain) {
    absl::StatusOr<int> version = service->TrainNow();
    if (version.ok()) {
      LogInfo("model: retrained over the current inputs, version %d", *version);
    } else {
      LogInfo("model: not retrained yet (%s); the rule decides until one is trained",
              version.status().message());
    }
  }

  // Verdicts in force before a restart stay in force: no flapping.
  absl::StatusOr<std::vector<std::pair<uint64_t, gt_verdict>>> pinned = ReadVerdicts(verdicts_fd);
  if (!pinned.ok()) return pinned.status();
  for (const auto& [id, v] : *pinned) service->engine_.Restore(id, v);
  if (!pinned->empty()) LogInfo("verdicts: %zu restored from gt_verdicts", pinned->size());
  return service;
}

std::string VerdictService::Describe() const {
  return engine_.model() == nullptr ? "rule" : absl::StrCat("model v", engine_.model()->version());
}

const VerdictService::Identity& VerdictService::IdentityOf(uint64_t cgroup_id) {
  auto it = identities_.find(cgroup_id);
  if (it != identities_.end()) {
    Identity& known = it->second;
    // A name is known once the runtime confirms the container, which may be
    // after its first counters.
    if (known.container && known.name.empty() && options_.name_of) {
      known.name = options_.name_of(*known.container, known.path);
    }
    return known;
  }
  Identity id;
  if (absl::StatusOr<std::string> path = resolver_->PathOf(cgroup_id); path.ok()) {
    id.path = *path;
    id.container = IdentifyContainer(*path, runc_ids_);
    if (!id.container.has_value()) {
      // runc registers a container just before it starts: look again.
      runc_ids_.clear();
      for (const std::string& root : options_.runc_roots) {
        for (const std::string& id : CgroupResolver::RuncIds(root)) runc_ids_.insert(id);
      }
      id.container = IdentifyContainer(*path, runc_ids_);
    }
    if (id.container && options_.name_of) id.name = options_.name_of(*id.container, id.path);
  }
  return identities_.emplace(cgroup_id, std::move(id)).first->second;
}

absl::Status VerdictService::Apply(EngineUpdate& update) {
  absl::Status written = WriteChangedVerdicts(update);
  ForgetRemoved(update);
  if (update.records.empty()) return written;
  RecordDecisions(update);
  RetrainWhenDue();
  return written;
}

absl::Status VerdictService::WriteChangedVerdicts(const EngineUpdate& update) {
  absl::Status first_error;
  for (const auto& [id, v] : update.changed) {
    absl::Status s = WriteVerdict(verdicts_fd_, id, v);
    if (!s.ok() && first_error.ok()) first_error = s;
    const Identity& who = IdentityOf(id);
    LogInfo("verdict: cgroup %d (%s%s) is now %s (%s, confidence %d/1000)", id,
            who.path.empty() ? "?" : who.path, ShownSuffix(who), VerdictName(FromKernelVerdict(v.verdict)),
            SourceName(v.source), v.confidence_permille);
  }
  return first_error;
}

void VerdictService::ForgetRemoved(const EngineUpdate& update) {
  for (uint64_t id : update.removed) {
    gpu_use_->Forget(id);
    (void)DeleteVerdict(verdicts_fd_, id);
    identities_.erase(id);
    last_active_ns_.erase(id);
  }
}

RowSubject VerdictService::SubjectOf(uint64_t cgroup_id, int64_t time_unix_ns) {
  const Identity& who = IdentityOf(cgroup_id);
  return {time_unix_ns, cgroup_id, who.path, who.container ? who.container->container_id : "", who.name};
}

void VerdictService::RecordDecisions(const EngineUpdate& update) {
  std::vector<ClassificationRow> rows;
  rows.reserve(update.records.size());
  const int64_t now = UnixNs();
  for (const DecisionRecord& r : update.records) {
    rows.push_back(DecisionRow(SubjectOf(r.cgroup_id, now), r.features, r.decision));
  }
  absl::StatusOr<BatchResult> result = table_.RecordBatch(rows);
  if (!result.ok()) {
    LogWarning("classification table: %s", result.status().message());
    return;
  }
  for (const BatchResult::Rejected& r : result->rejected) {
    LogWarning("classification table: row for cgroup %d rejected: %s", rows[r.index].cgroup_id,
               r.reason.message());
  }
}

absl::Status VerdictService::Tick() {
  InstallRetrained();
  absl::StatusOr<CgroupCounters> counters = ReadCgroupCounters(stats_fd_);
  if (!counters.ok()) return counters.status();
  for (const auto& [id, stats] : *counters) last_active_ns_[id] = stats.last_seen_ns;
  const uint64_t now = MonotonicNs();
  GpuUsageMap usage = gpu_use_->Measure(*counters, now, [&](uint64_t id) { return IdentityOf(id).path; });
  EngineUpdate update = engine_.Tick(*counters, now, UnixNs(), usage);
  return Apply(update);
}

absl::Status VerdictService::OnGpuAccess(uint64_t cgroup_id) {
  absl::StatusOr<gt_cgroup_stats> stats = ReadCgroupCounter(stats_fd_, cgroup_id);
  if (!stats.ok()) return stats.status();
  EngineUpdate update = engine_.Update(cgroup_id, *stats, MonotonicNs(), UnixNs());
  return Apply(update);
}

absl::StatusOr<uint64_t> VerdictService::ResolveTarget(const std::string& target) {
  std::vector<MatchCandidate> candidates;
  for (uint64_t cg : engine_.CgroupIds()) {
    const Identity& who = IdentityOf(cg);
    candidates.push_back({cg, who.path, who.container ? who.container->container_id : "", who.name});
  }
  absl::StatusOr<size_t> match = MatchContainer(target, candidates);
  if (!match.ok()) return match.status();
  return candidates[*match].cgroup_id;
}

std::vector<ContainerVerdictView> VerdictService::Containers() {
  const uint64_t now = MonotonicNs();
  std::vector<ContainerVerdictView> out;
  for (uint64_t id : engine_.CgroupIds()) {
    const Identity& who = IdentityOf(id);
    if (!who.container) continue;
    std::optional<CgroupVerdict> v = engine_.Lookup(id, now);
    ContainerVerdictView view;
    view.cgroup_id = id;
    view.cgroup_path = who.path;
    view.container_id = who.container->container_id;
    view.container_name = who.name;
    view.verdict = v ? v->verdict : Verdict::kUnknown;
    view.confidence_permille = v ? v->kernel.confidence_permille : 0;
    auto it = last_active_ns_.find(id);
    view.last_active_ns = it == last_active_ns_.end() ? 0 : it->second;
    out.push_back(std::move(view));
  }
  return out;
}

absl::StatusOr<ContainerVerdictView> VerdictService::ResolveContainer(const std::string& target) {
  absl::StatusOr<uint64_t> id = ResolveTarget(target);
  if (!id.ok()) return id.status();
  for (ContainerVerdictView& view : Containers()) {
    if (view.cgroup_id == *id) return view;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "'", target, "' is cgroup ", *id, " (", IdentityOf(*id).path,
      "), which holds no container gputierd recognises; only containers are tiered"));
}

nlohmann::json VerdictService::Status() {
  const uint64_t now = MonotonicNs();
  nlohmann::json rows = nlohmann::json::array();
  std::vector<uint64_t> ids = engine_.CgroupIds();
  std::sort(ids.begin(), ids.end());
  for (uint64_t id : ids) {
    std::optional<CgroupVerdict> v = engine_.Lookup(id, now);
    if (!v) continue;
    const Identity& who = IdentityOf(id);
    rows.push_back({{"cgroup_id", id},
                    {"cgroup_path", who.path.empty() ? nlohmann::json(nullptr) : nlohmann::json(who.path)},
                    {"container_id", who.container ? nlohmann::json(who.container->container_id) : nlohmann::json(nullptr)},
                    {"name", NameJson(who)},
                    {"runtime", who.container ? nlohmann::json(who.container->runtime) : nlohmann::json(nullptr)},
                    {"verdict", std::string(VerdictName(v->verdict))},
                    {"proposed", std::string(VerdictName(v->proposed))},
                    {"confidence", v->kernel.confidence_permille},
                    {"source", SourceName(v->kernel.source)},
                    {"model_version", v->kernel.model_version},
                    {"since", v->kernel.decided_at_ns ? nlohmann::json(v->kernel.decided_at_ns) : nlohmann::json(nullptr)},
                    {"cpu_streak", v->cpu_streak},
                    {"features", FeaturesJson(v->features)},
                    {"counters", CountersJson(v->counters)}});
  }
  return {{"ok", true},
          {"classifier", Describe()},
          {"degraded", degraded_.empty() ? nlohmann::json(nullptr) : nlohmann::json(degraded_)},
          {"gpu_use", gpu_use_->StatsJson()},
          {"cgroups", rows}};
}

nlohmann::json VerdictService::Explain(const std::string& target) {
  absl::StatusOr<uint64_t> id = ResolveTarget(target);
  if (!id.ok()) return Error(id.status().message());
  const uint64_t now = MonotonicNs();
  std::optional<CgroupVerdict> v = engine_.Lookup(*id, now);
  std::optional<Decision> d = engine_.Explain(*id, now);
  if (!v || !d) return Error(absl::StrCat("cgroup ", *id, " has no state yet"));
  nlohmann::json checks = nlohmann::json::array();
  for (const RuleCheck& c : d->rule.checks) {
    checks.push_back({{"feature", c.feature},
                      {"value", c.value},
                      {"threshold", c.threshold},
                      {"at_or_above", c.at_or_above},
                      {"defined", c.defined},
                      {"decisive", c.decisive}});
  }
  nlohmann::json model = {{"used", d->source == DecisionSource::kModel}};
  if (engine_.model() != nullptr) {
    model["version"] = engine_.model()->version();
    absl::StatusOr<NaiveBayesModel::Prediction> p = engine_.model()->Predict(ModelInputs(v->features));
    if (p.ok()) {
      nlohmann::json ll = nlohmann::json::object();
      for (size_t i = 0; i < kDecidedVerdictCount; ++i) {
        ll[std::string(VerdictName(kDecidedVerdicts[i]))] = p->log_likelihood[i];
      }
      model["log_likelihood"] = ll;
      model["verdict"] = std::string(VerdictName(p->verdict));
      model["confidence"] = p->confidence_permille;
      model["vetoed"] = d->model_vetoed;  // said gpu/mixed for a cgroup without GPU use
    }
  }
  if (!d->model_not_used.empty()) model["not_used_because"] = d->model_not_used;

  std::string why;
  if (d->source == DecisionSource::kModel) {
    why = absl::StrFormat("the model (version %d) decided %s; the rule would say %s (%s)", d->model_version,
                          VerdictName(d->verdict), VerdictName(d->rule_verdict), d->rule.reason);
  } else {
    why = absl::StrFormat("the rule decided %s: %s%s", VerdictName(d->verdict), d->rule.reason,
                          d->model_not_used.empty() ? "" : absl::StrCat(" (model not used: ", d->model_not_used, ")"));
  }
  if (v->verdict != d->verdict) {
    absl::StrAppendFormat(&why, "; the verdict in force stays %s: a demotion to cpu needs %d consecutive cpu "
                                "windows, %d seen so far",
                          VerdictName(v->verdict), options_.policy.demote_after_cpu_windows, v->cpu_streak);
  }
  const Identity& who = IdentityOf(*id);
  return {{"ok", true},
          {"cgroup_id", *id},
          {"cgroup_path", who.path},
          {"container_id", who.container ? nlohmann::json(who.container->container_id) : nlohmann::json(nullptr)},
          {"name", NameJson(who)},
          {"features", FeaturesJson(v->features)},
          {"gpu_use", gpu_use_->ExplainJson(*id)},
          {"gpu_context_used_windows", options_.policy.gpu_context_used_windows},
          {"rule", {{"verdict", std::string(VerdictName(d->rule_verdict))}, {"checks", checks}, {"reason", d->rule.reason}}},
          {"model", model},
          {"decision", std::string(VerdictName(d->verdict))},
          {"verdict", std::string(VerdictName(v->verdict))},
          {"why", why}};
}

nlohmann::json VerdictService::Train() {
  absl::StatusOr<int> version = TrainNow();
  if (!version.ok()) {
    return Error(absl::StrCat("cannot train: ", version.status().message(),
                              "; the rule keeps deciding (label containers with `gputierctl label` or let "
                              "the agent record more decisions)"));
  }
  nlohmann::json rows = nlohmann::json::object();
  for (Verdict v : kDecidedVerdicts) rows[std::string(VerdictName(v))] = engine_.model()->rows(v);
  return {{"ok", true}, {"version", *version}, {"rows", rows}};
}

nlohmann::json VerdictService::Label(const std::string& target, const std::string& verdict) {
  absl::StatusOr<Verdict> label = ParseVerdict(verdict);
  if (!label.ok() || *label == Verdict::kUnknown) {
    return Error(absl::StrCat("'", verdict, "' is not a label; use gpu, cpu or mixed"));
  }
  absl::StatusOr<uint64_t> id = ResolveTarget(target);
  if (!id.ok()) return Error(id.status().message());
  std::optional<CgroupVerdict> v = engine_.Lookup(*id, MonotonicNs());
  if (!v) return Error(absl::StrCat("cgroup ", *id, " has no features yet"));
  const RowSubject subject = SubjectOf(*id, UnixNs());
  const ClassificationRow row = LabelRow(subject, v->features, *label);
  if (absl::Status s = table_.Record(row); !s.ok()) return Error(s.message());
  return {{"ok", true},
          {"cgroup_id", *id},
          {"container_id", subject.container_id},
          {"name", subject.container_name},
          {"label", verdict}};
}

nlohmann::json VerdictService::Handle(const ControlRequest& request) {
  switch (request.command) {
    case ControlCommand::kStatus: return Status();
    case ControlCommand::kExplain: return Explain(request.target);
    case ControlCommand::kTrain: return Train();
    case ControlCommand::kLabel: return Label(request.target, request.verdict);
    case ControlCommand::kTier:
    case ControlCommand::kCreating: break;
  }
  return Error(absl::StrCat("the classifier does not answer \"", ControlCommandName(request.command), "\""));
}

}  // namespace gputier
