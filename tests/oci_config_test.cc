// Identity and per-workload overrides from a container's OCI config.json
// annotations (pure; no root).
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "loader/runtime/oci_config.h"
#include "loader/runtime/runtime_table.h"

namespace gputier {
namespace {

constexpr char kId[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

OciWorkload Parse(const std::string& annotations_json) {
  absl::StatusOr<OciWorkload> w =
      ParseOciConfig(absl::StrCat(R"({"ociVersion":"1.0.2","annotations":)", annotations_json, "}"), kId);
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? *w : OciWorkload{};
}

TEST(OciIdentity, EachRuntimesAnnotationsNameTheContainer) {
  struct Case {
    const char* what;
    const char* annotations;
    const char* name;
  };
  const Case cases[] = {
      {"containerd CRI",
       R"({"io.kubernetes.cri.sandbox-name":"trainer-0","io.kubernetes.cri.sandbox-namespace":"ml",
           "io.kubernetes.cri.container-name":"pytorch"})",
       "ml/trainer-0/pytorch"},
      {"CRI-O",
       R"({"io.kubernetes.pod.name":"web-1","io.kubernetes.pod.namespace":"default",
           "io.kubernetes.container.name":"nginx"})",
       "default/web-1/nginx"},
      {"a sandbox (pause) container has no container name", R"({"io.kubernetes.cri.sandbox-name":"p",
           "io.kubernetes.cri.sandbox-namespace":"ns"})",
       "0123456789ab"},
      {"nothing known", R"({"io.container.manager":"libpod"})", "0123456789ab"},
      {"a name with a slash is not used",
       R"({"io.kubernetes.pod.name":"a/b","io.kubernetes.pod.namespace":"n","io.kubernetes.container.name":"c"})",
       "0123456789ab"},
      {"a name with a newline is not used",
       "{\"io.kubernetes.pod.name\":\"a\\nb\",\"io.kubernetes.pod.namespace\":\"n\","
       "\"io.kubernetes.container.name\":\"c\"}",
       "0123456789ab"},
  };
  for (const Case& c : cases) {
    const OciWorkload w = Parse(c.annotations);
    EXPECT_EQ(DisplayName(w.identity, kId), c.name) << c.what;
  }
  WorkloadIdentity podman;
  podman.container = "idprobe";
  EXPECT_EQ(DisplayName(podman, kId), "idprobe");
}

TEST(OciOverrides, GoodValuesOverrideTheConfig) {
  const OciWorkload w = Parse(R"({"gputier.io/tier":"Fast","gputier.io/tiered-paths":"/data, /var//cache",
      "gputier.io/gpu-data-paths":"/ckpt"})");
  EXPECT_TRUE(w.warnings.empty()) << w.warnings[0];
  EXPECT_EQ(w.overrides.tier, "fast");
  EXPECT_EQ(w.overrides.tiered_paths, (std::vector<std::string>{"/data", "/var/cache"}));
  EXPECT_EQ(w.overrides.gpu_data_paths, std::vector<std::string>{"/ckpt"});
}

TEST(OciOverrides, NoAnnotationOverridesNothing) {
  const OciWorkload w = Parse("{}");
  EXPECT_FALSE(w.overrides.tier.has_value());
  EXPECT_FALSE(w.overrides.tiered_paths.has_value());
  EXPECT_FALSE(w.overrides.gpu_data_paths.has_value());
  EXPECT_TRUE(w.warnings.empty());
}

TEST(OciOverrides, BadValuesAreIgnoredWithAWarningNamingContainerKeyAndFix) {
  struct Case {
    const char* annotations;
    const char* key;
    const char* problem;
  };
  const Case cases[] = {
      {R"({"gputier.io/tier":"turbo"})", "gputier.io/tier", "is not auto, fast or slow"},
      {R"({"gputier.io/tiered-paths":"data"})", "gputier.io/tiered-paths", "absolute"},
      {R"({"gputier.io/tiered-paths":"/data,,/x"})", "gputier.io/tiered-paths", "empty entry"},
      {R"({"gputier.io/tiered-paths":"/proc/x"})", "gputier.io/tiered-paths", "/proc"},
      {R"({"gputier.io/tiered-paths":"/a/../b"})", "gputier.io/tiered-paths", ".."},
      {R"({"gputier.io/tiered-paths":"/d,/d"})", "gputier.io/tiered-paths", "twice"},
      {R"({"gputier.io/gpu-data-paths":"/"})", "gputier.io/gpu-data-paths", "\"/\""},
      {R"({"gputier.io/tiered-paths":"/data","gputier.io/gpu-data-paths":"/data/ckpt"})",
       "gputier.io/gpu-data-paths", "overlaps"},
      {R"({"gputier.io/tiered-paths":"/1,/2,/3,/4,/5,/6,/7,/8,/9,/10,/11,/12,/13,/14,/15,/16,/17"})",
       "gputier.io/tiered-paths", "more than 16"},
      {R"({"gputier.io/gpu-data-paths":""})", "gputier.io/gpu-data-paths", "empty entry"},
  };
  for (const Case& c : cases) {
    const OciWorkload w = Parse(c.annotations);
    ASSERT_EQ(w.warnings.size(), 1u) << c.annotations;
    const std::string& text = w.warnings[0];
    EXPECT_TRUE(absl::StrContains(text, "container 0123456789ab:")) << text;
    EXPECT_TRUE(absl::StrContains(text, c.key)) << text;
    EXPECT_TRUE(absl::StrContains(text, c.problem)) << text;
    EXPECT_TRUE(absl::StrContains(text, "write ") || absl::StrContains(text, "name each")) << text;
    EXPECT_TRUE(absl::StrContains(text, "ignored: the config applies")) << text;
  }
  EXPECT_FALSE(Parse(R"({"gputier.io/tier":"turbo"})").overrides.tier.has_value());
}

TEST(OciOverrides, SixteenDirectoriesAreAccepted) {
  const OciWorkload w =
      Parse(R"({"gputier.io/tiered-paths":"/1,/2,/3,/4,/5,/6,/7,/8,/9,/10,/11,/12,/13,/14,/15,/16"})");
  EXPECT_TRUE(w.warnings.empty());
  ASSERT_TRUE(w.overrides.tiered_paths.has_value());
  EXPECT_EQ(w.overrides.tiered_paths->size(), kMaxAnnotatedPaths);
}

TEST(OciOverrides, ControlBytesInAValueAreEscapedInTheWarning) {
  const OciWorkload w = Parse("{\"gputier.io/tier\":\"x\\nFORGED log line\"}");
  ASSERT_EQ(w.warnings.size(), 1u);
  EXPECT_FALSE(absl::StrContains(w.warnings[0], "\n")) << w.warnings[0];
}

TEST(OciConfig, MalformedTextIsAnErrorAndNonStringAnnotationsAreSkipped) {
  for (const char* bad : {"", "[]", "{", "\"x\"", "\xff"}) {
    EXPECT_FALSE(ParseOciConfig(bad, kId).ok()) << bad;
  }
  EXPECT_FALSE(ParseOciConfig(std::string(kMaxRuntimeFileBytes + 1, ' '), kId).ok());
  absl::StatusOr<OciWorkload> w = ParseOciConfig(R"({"annotations":{"a":1,"b":"x","c":null}})", kId);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->annotations, (std::map<std::string, std::string>{{"b", "x"}}));
  EXPECT_TRUE(ParseOciConfig(R"({"annotations":[]})", kId).ok());
}

TEST(OciConfig, TheRootPathIsReadAsWritten) {
  absl::StatusOr<OciWorkload> w = ParseOciConfig(R"({"root":{"path":"rootfs","readonly":true}})", kId);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->root_path, "rootfs");
  for (const char* none : {"{}", R"({"root":"x"})", R"({"root":{"path":1}})"}) {
    w = ParseOciConfig(none, kId);
    ASSERT_TRUE(w.ok()) << none;
    EXPECT_EQ(w->root_path, "") << none;
  }
}

TEST(PodmanNames, TheNamesFileSitsBesideTheBundleOfItsStorage) {
  EXPECT_EQ(PodmanNamesFile(absl::StrCat("/var/lib/containers/storage/overlay-containers/", kId, "/userdata"), kId),
            "/var/lib/containers/storage/overlay-containers/containers.json");
  EXPECT_EQ(PodmanNamesFile(absl::StrCat("/run/containerd/io.containerd.runtime.v2.task/k8s.io/", kId), kId),
            std::nullopt);
  EXPECT_EQ(PodmanNamesFile("/overlay-containers/x/userdata", "y"), std::nullopt);
  // Any storage driver's store (the demo's is vfs).
  EXPECT_EQ(PodmanNamesFile(absl::StrCat("/tmp/store/vfs-containers/", kId, "/userdata"), kId),
            "/tmp/store/vfs-containers/containers.json");
  EXPECT_EQ(PodmanNamesFile(absl::StrCat("/tmp/store/Bad.Driver-containers/", kId, "/userdata"), kId), std::nullopt);
  EXPECT_EQ(PodmanNamesFile(absl::StrCat("/vfs-containers/", kId, "/userdata"), kId), std::nullopt);
}

TEST(PodmanNames, TheContainersFirstUsableNameIsItsName) {
  const std::string json = absl::StrCat(R"([{"id":"other","names":["no"]},{"id":")", kId,
                                        R"(","names":["bad name","trainer"]}])");
  EXPECT_EQ(PodmanNameOf(json, kId), "trainer");
  EXPECT_EQ(PodmanNameOf(json, "missing"), "");
  EXPECT_EQ(PodmanNameOf("{", kId), "");
  EXPECT_EQ(PodmanNameOf(R"([{"id":5},{"id":"x","names":"y"}])", "x"), "");
}

}  // namespace
}  // namespace gputier
