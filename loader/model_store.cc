#include "loader/model_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

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
  const std::string tmp = absl::StrCat(path, ".tmp");
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("writing ", tmp));
  const std::string json = model.ToJson();
  size_t off = 0;
  while (off < json.size()) {
    ssize_t n = write(fd, json.data() + off, json.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      close(fd);
      unlink(tmp.c_str());
      return absl::ErrnoToStatus(err, absl::StrCat("writing ", tmp));
    }
    off += n;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    unlink(tmp.c_str());
    return absl::ErrnoToStatus(errno, absl::StrCat("syncing ", tmp));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    unlink(tmp.c_str());
    return absl::ErrnoToStatus(errno, absl::StrCat("replacing ", path));
  }
  return absl::OkStatus();
}

}  // namespace gputier
