#include "loader/classify/model_store.h"

#include <cerrno>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "loader/base/atomic_file.h"

namespace gputier {

absl::StatusOr<NaiveBayesModel> LoadModel(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no model at ", path, " yet"));
    return absl::ErrnoToStatus(errno, absl::StrCat("reading model ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<NaiveBayesModel> model = NaiveBayesModel::FromJson(text.str());
  if (!model.ok()) {
    return absl::DataLossError(absl::StrCat("model ", path, " is corrupt: ", model.status().message()));
  }
  return model;
}

absl::Status SaveModel(const std::string& path, const NaiveBayesModel& model) {
  return WriteFileAtomically(path, model.ToJson());
}

}  // namespace gputier
