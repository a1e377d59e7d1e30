#include "tests/integration/tier_dirs.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace gputier {
namespace {

bool AllDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool IsKeyOf(const std::string& key, const std::string& id) {
  return key == id || (absl::StartsWith(key, id + "-") && AllDigits(key.substr(id.size() + 1)));
}

}  // namespace

std::vector<std::string> TierKeyNamesIn(const std::string& dir, const std::string& id, bool exited) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = readdir(d)) {
    std::string name = e->d_name;
    std::string key = name;
    if (exited) {
      const size_t dot = name.rfind('.');
      if (dot == std::string::npos || !AllDigits(name.substr(dot + 1))) continue;
      key = name.substr(0, dot);
    }
    if (IsKeyOf(key, id)) out.push_back(name);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string LiveTierDir(const std::string& root, const std::string& id) {
  std::vector<std::string> names = TierKeyNamesIn(root, id, /*exited=*/false);
  return absl::StrCat(root, "/", names.empty() ? id : names.back());
}

std::vector<std::string> ExitedLayers(const std::string& slow_root, const std::string& id) {
  const std::string dir = absl::StrCat(slow_root, "/.exited");
  std::vector<std::string> out;
  for (const std::string& name : TierKeyNamesIn(dir, id, /*exited=*/true)) out.push_back(absl::StrCat(dir, "/", name));
  return out;
}

std::string SlowLayerOf(const std::string& slow_root, const std::string& id) {
  const std::string live = LiveTierDir(slow_root, id);
  struct stat st;
  if (lstat(live.c_str(), &st) == 0) return live;
  std::vector<std::string> exited = ExitedLayers(slow_root, id);
  return exited.empty() ? live : exited.back();
}

}  // namespace gputier
