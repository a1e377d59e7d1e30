// Fuzzes the model reader: <state-dir>/model.json is read at every gputierd
// start (LoadModel -> NaiveBayesModel::FromJson), whatever a crash or a
// person left there, and an accepted model then classifies every container.
// So: a model or one clear error; an accepted model predicts without UB for
// ordinary feature vectors, and writes back and reads back.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "policy/naive_bayes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<gputier::NaiveBayesModel> model = gputier::NaiveBayesModel::FromJson(text);
  if (!model.ok()) {
    if (model.status().message().empty()) std::abort();
    return 0;
  }
  for (double v : {0.0, 1.0, 1e6}) {
    const std::vector<double> x(model->feature_count(), v);
    absl::StatusOr<gputier::NaiveBayesModel::Prediction> p = model->Predict(x);
    if (p.ok() && (p->confidence_permille < 0 || p->confidence_permille > 1000)) std::abort();
  }
  const std::string json = model->ToJson();
  absl::StatusOr<gputier::NaiveBayesModel> again = gputier::NaiveBayesModel::FromJson(json);
  if (!again.ok() || again->ToJson() != json) std::abort();
  return 0;
}
