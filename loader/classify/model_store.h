// The persisted Naive Bayes model: <state-dir>/model.json, replaced
// atomically (write, fsync, rename) so a crash leaves the old or the new
// model, never half of one.
#ifndef GPUTIER_LOADER_CLASSIFY_MODEL_STORE_H_
#define GPUTIER_LOADER_CLASSIFY_MODEL_STORE_H_

#include <string>

#include "absl/status/statusor.h"
#include "policy/naive_bayes.h"

namespace gputier {

inline constexpr char kModelFile[] = "model.json";

// NotFound when there is no model yet; another error when the file is
// unreadable or corrupt (the caller falls back to the rule and logs why).
absl::StatusOr<NaiveBayesModel> LoadModel(const std::string& path);

absl::Status SaveModel(const std::string& path, const NaiveBayesModel& model);

}  // namespace gputier

#endif  // GPUTIER_LOADER_CLASSIFY_MODEL_STORE_H_
