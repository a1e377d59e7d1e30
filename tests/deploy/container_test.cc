// deploy/container/Containerfile, checked here without a registry (no base
// image can be pulled on the build machines, so it is not built): both stages
// are Debian 12, the build stage installs exactly deploy/bootstrap's build
// packages, and the runtime stage installs the package of every shared
// library the gputierd and gputierctl built here link.
#include <map>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/deploy/deploy_files.h"

namespace gputier::testing {
namespace {

// In every debian:bookworm image (essential or required by apt).
const std::set<std::string> kInBaseImage = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"};

TEST(Containerfile, BothStagesAreDebian12) {
  const Containerfile cf = ReadContainerfile();
  ASSERT_EQ(cf.stages.size(), 2u);
  for (const ContainerStage& s : cf.stages) {
    EXPECT_TRUE(absl::StartsWith(s.from, "docker.io/library/debian:bookworm")) << s.from;
  }
}

TEST(Containerfile, TheBuildStageInstallsBootstrapsBuildPackages) {
  const std::set<std::string> want = BootstrapPackages("BUILD_PACKAGES");
  ASSERT_FALSE(want.empty()) << "no BUILD_PACKAGES=(...) in deploy/bootstrap";
  EXPECT_EQ(ReadContainerfile().stages.at(0).apt_packages, want)
      << "keep the Containerfile's build stage and deploy/bootstrap's BUILD_PACKAGES the same";
}

// The Debian package of each library path (as ldd prints it, or its
// target): one dpkg -S for all, since each call reads dpkg's whole file list.
std::map<std::string, std::string> PackagesOf(const std::set<std::string>& libraries) {
  std::string command = "dpkg -S";
  std::map<std::string, std::string> real_of;
  for (const std::string& l : libraries) {
    const std::string real(absl::StripTrailingAsciiWhitespace(RunCommand(absl::StrCat("readlink -f ", l)).output));
    real_of[l] = real;
    absl::StrAppend(&command, " ", l, " ", real);
  }
  std::map<std::string, std::string> package_of_path;
  for (absl::string_view line : absl::StrSplit(RunCommand(command).output, '\n')) {
    const size_t colon = line.find(": /");
    if (colon == absl::string_view::npos) continue;
    package_of_path[std::string(line.substr(colon + 2))] = std::string(line.substr(0, line.find(':')));
  }
  std::map<std::string, std::string> out;
  for (const auto& [l, real] : real_of) {
    out[l] = package_of_path.count(l) ? package_of_path[l] : package_of_path[real];
  }
  return out;
}

TEST(Containerfile, TheRuntimeStageInstallsEveryLibraryTheBinariesLink) {
  if (RunCommand("dpkg-query --version").status != 0) GTEST_SKIP() << "not a Debian system: no dpkg to map libraries";
  const Containerfile cf = ReadContainerfile();
  const std::set<std::string>& runtime = cf.stages.back().apt_packages;
  std::set<std::string> libraries;
  for (const char* binary : {"gputierd", "gputierctl"}) {
    EXPECT_TRUE(cf.copied_to.count(absl::StrCat("/usr/local/bin/", binary))) << binary << " is not in the image";
    const CommandResult ldd = RunCommand(absl::StrCat("ldd ", GPUTIER_BIN_DIR, "/", binary));
    ASSERT_EQ(ldd.status, 0) << ldd.output;
    for (absl::string_view line : absl::StrSplit(ldd.output, '\n')) {
      const size_t arrow = line.find("=> /");
      if (arrow == absl::string_view::npos) continue;
      libraries.insert(std::string(line.substr(arrow + 3, line.find(" (", arrow) - arrow - 3)));
    }
  }
  ASSERT_FALSE(libraries.empty());
  std::set<std::string> needed;
  for (const auto& [library, package] : PackagesOf(libraries)) {
    ASSERT_FALSE(package.empty()) << library << " belongs to no Debian package";
    if (!kInBaseImage.count(package)) needed.insert(package);
  }
  for (const std::string& p : needed) EXPECT_TRUE(runtime.count(p)) << "the runtime stage lacks " << p;
  for (const std::string& p : runtime) EXPECT_TRUE(needed.count(p)) << "the runtime stage installs " << p << ", which nothing links";
}

}  // namespace
}  // namespace gputier::testing
