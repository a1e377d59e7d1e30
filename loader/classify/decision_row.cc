#include "loader/classify/decision_row.h"

namespace gputier {
namespace {

ClassificationRow RowOf(const RowSubject& subject, const Features& f) {
  ClassificationRow row;
  row.time_unix_ns = subject.time_unix_ns;
  row.cgroup_id = subject.cgroup_id;
  row.cgroup_path = subject.cgroup_path;
  row.container_id = subject.container_id;
  row.container_name = subject.container_name;
  row.gpu_ioctl_rate = f.gpu_ioctl_rate;
  row.gpu_opened = f.gpu_opened;
  row.ext_ratio = f.ext_ratio;
  row.open_rate = f.open_rate;
  row.write_rate = f.write_rate;
  row.evidence = f.evidence;
  row.gpu_busy_share = f.gpu_busy_share;
  row.gpu_context_recent = f.gpu_context_recent;
  return row;
}

}  // namespace

ClassificationRow DecisionRow(const RowSubject& subject, const Features& features, const Decision& decision) {
  ClassificationRow row = RowOf(subject, features);
  row.verdict = std::string(VerdictName(decision.verdict));
  row.rule_verdict = std::string(VerdictName(decision.rule_verdict));
  row.source = std::string(DecisionSourceName(decision.source));
  row.model_version = decision.model_version;
  row.confidence_permille = decision.confidence_permille;
  return row;
}

ClassificationRow LabelRow(const RowSubject& subject, const Features& features, Verdict label) {
  ClassificationRow row = RowOf(subject, features);
  row.verdict = std::string(VerdictName(label));
  row.source = "operator";
  row.confidence_permille = 1000;
  return row;
}

Features FeaturesOfRow(const ClassificationRow& row) {
  Features f;
  f.gpu_ioctl_rate = row.gpu_ioctl_rate;
  f.gpu_opened = row.gpu_opened;
  f.ext_ratio = row.ext_ratio;
  f.ext_ratio_defined = true;
  f.open_rate = row.open_rate;
  f.write_rate = row.write_rate;
  f.evidence = row.evidence;
  f.gpu_busy_share = row.gpu_busy_share;
  f.gpu_busy_share_defined = true;
  f.gpu_context_recent = row.gpu_context_recent;
  return f;
}

}  // namespace gputier
