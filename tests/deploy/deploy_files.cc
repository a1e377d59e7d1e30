#include "tests/deploy/deploy_files.h"

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace gputier::testing {
namespace {

std::string ReadSource(const std::string& relative) {
  std::ifstream in(absl::StrCat(GPUTIER_SOURCE_DIR, "/", relative));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> Words(absl::string_view text) {
  return absl::StrSplit(text, absl::ByAnyChar(" \t\n"), absl::SkipEmpty());
}

}  // namespace

Containerfile ReadContainerfile() {
  Containerfile out;
  const std::string text = absl::StrReplaceAll(ReadSource("deploy/container/Containerfile"), {{"\\\n", " "}});
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> words = Words(line);
    const std::string& op = words[0];
    if (op == "FROM") {
      out.stages.push_back({words.size() > 1 ? words[1] : "", {}});
      out.copied_to.clear();
    } else if (op == "RUN" && !out.stages.empty()) {
      for (absl::string_view command : absl::StrSplit(line.substr(3), "&&")) {
        std::vector<std::string> w = Words(command);
        if (w.size() < 2 || w[0] != "apt-get" || std::find(w.begin(), w.end(), "install") == w.end()) continue;
        for (auto it = std::find(w.begin(), w.end(), "install") + 1; it != w.end(); ++it) {
          if (!absl::StartsWith(*it, "-")) out.stages.back().apt_packages.insert(*it);
        }
      }
    } else if (op == "COPY" && words.size() >= 3) {
      const std::string& dest = words.back();
      for (size_t i = 1; i + 1 < words.size(); ++i) {
        if (absl::StartsWith(words[i], "--")) continue;
        const std::string& src = words[i];
        out.copied_to.insert(absl::EndsWith(dest, "/") ? dest + src.substr(src.rfind('/') + 1) : dest);
      }
    } else if (op == "ENTRYPOINT") {
      std::string rest(absl::StripAsciiWhitespace(line.substr(10)));
      rest = std::string(absl::StripSuffix(absl::StripPrefix(rest, "["), "]"));
      std::vector<std::string> args = absl::StrSplit(rest, ',');
      out.entrypoint = std::string(absl::StripSuffix(absl::StripPrefix(absl::StripAsciiWhitespace(args[0]), "\""), "\""));
    }
  }
  return out;
}

std::set<std::string> BootstrapPackages(const std::string& name) {
  const std::string text = ReadSource("deploy/bootstrap");
  const size_t start = text.find(absl::StrCat("\n", name, "=("));
  if (start == std::string::npos) return {};
  const size_t open = text.find('(', start), close = text.find(')', open);
  std::set<std::string> out;
  for (absl::string_view line : absl::StrSplit(text.substr(open + 1, close - open - 1), '\n')) {
    for (const std::string& w : Words(line.substr(0, line.find('#')))) out.insert(w);
  }
  return out;
}

CommandResult RunCommand(const std::string& command) {
  CommandResult r;
  FILE* p = popen(absl::StrCat(command, " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  if (WIFEXITED(status)) r.status = WEXITSTATUS(status);
  return r;
}

}  // namespace gputier::testing
