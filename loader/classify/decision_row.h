// The classification table's rows as the verdict service writes and reads
// them: one row per decision of the agent, or per operator label, with the
// features behind it; and the features back from a row, for training. The
// one place where features meet the table's columns. Pure.
#ifndef GPUTIER_LOADER_CLASSIFY_DECISION_ROW_H_
#define GPUTIER_LOADER_CLASSIFY_DECISION_ROW_H_

#include <cstdint>
#include <string>

#include "loader/classify/classification_table.h"
#include "policy/classifier.h"
#include "policy/features.h"
#include "policy/verdict.h"

namespace gputier {

// Whom a row is about, and when.
struct RowSubject {
  int64_t time_unix_ns = 0;
  uint64_t cgroup_id = 0;
  std::string cgroup_path;   // may be empty
  std::string container_id;  // may be empty
  std::string container_name;  // may be empty
};

// The agent's decision (rule or model) and the features it was made on.
ClassificationRow DecisionRow(const RowSubject& subject, const Features& features, const Decision& decision);

// An operator's label on the features of the moment: source "operator",
// confidence 1000, no rule verdict or model version.
ClassificationRow LabelRow(const RowSubject& subject, const Features& features, Verdict label);

// The features a row was recorded with (ratios read as defined).
Features FeaturesOfRow(const ClassificationRow& row);

}  // namespace gputier

#endif  // GPUTIER_LOADER_CLASSIFY_DECISION_ROW_H_
