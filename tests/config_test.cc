#include "loader/config/config.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gputier/abi.h"
#include "gtest/gtest.h"

namespace gputier {
namespace {

constexpr char kSource[] = "/etc/gputier.yaml";

const ExtensionClass* FindClass(const Config& config, const std::string& name) {
  for (const ExtensionClass& c : config.classes) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

bool HasExtension(const ExtensionClass& c, const std::string& ext) {
  for (const std::string& e : c.extensions) {
    if (e == ext) return true;
  }
  return false;
}

TEST(DefaultConfig, HasTheBuiltInClassesInIdOrder) {
  const Config config = DefaultConfig();
  ASSERT_EQ(config.classes.size(), 4u);
  const std::pair<uint32_t, const char*> kExpected[] = {
      {GT_CLASS_IMAGE, "image"},
      {GT_CLASS_VIDEO, "video"},
      {GT_CLASS_TENSOR, "tensor"},
      {GT_CLASS_GRAPHICS, "graphics"},
  };
  for (size_t i = 0; i < config.classes.size(); ++i) {
    EXPECT_EQ(config.classes[i].id, kExpected[i].first);
    EXPECT_EQ(config.classes[i].name, kExpected[i].second);
    EXPECT_FALSE(config.classes[i].extensions.empty());
  }
  EXPECT_TRUE(config.gpu_devices.empty());
  EXPECT_EQ(config.max_cgroups, static_cast<uint32_t>(GT_DEFAULT_MAX_CGROUPS));
  EXPECT_EQ(config.metrics.max_containers, 1000u);
}

TEST(DefaultConfig, EveryExtensionIsInExactlyOneClassAndMatchable) {
  const Config config = DefaultConfig();
  absl::flat_hash_map<std::string, std::string> owner;
  size_t total = 0;
  for (const ExtensionClass& c : config.classes) {
    for (const std::string& ext : c.extensions) {
      ++total;
      auto [it, inserted] = owner.emplace(ext, c.name);
      EXPECT_TRUE(inserted)
          << ext << " is in " << it->second << " and " << c.name;
      EXPECT_FALSE(ext.empty());
      EXPECT_LE(ext.size(), static_cast<size_t>(GT_EXT_MAX)) << ext;
      for (char ch : ext) {
        EXPECT_TRUE((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
            << ext << " has a byte the BPF side would never produce";
      }
    }
  }
  EXPECT_LE(total, static_cast<size_t>(GT_MAX_EXTENSIONS));
  for (const char* common : {"jpg", "png", "mp4", "pt", "safetensors", "onnx",
                             "gguf", "npy", "obj", "spv", "ptx"}) {
    EXPECT_TRUE(owner.contains(common)) << common;
  }
}

TEST(ParseConfig, EmptyOrWhitespaceTextIsTheDefaults) {
  for (const char* text : {"", "   \n\t\n", "# only a comment\n", "~\n"}) {
    absl::StatusOr<Config> config = ParseConfig(text, kSource);
    ASSERT_TRUE(config.ok()) << config.status();
    const Config defaults = DefaultConfig();
    ASSERT_EQ(config->classes.size(), defaults.classes.size());
    for (size_t i = 0; i < defaults.classes.size(); ++i) {
      EXPECT_EQ(config->classes[i].extensions, defaults.classes[i].extensions);
    }
    EXPECT_EQ(config->max_cgroups, defaults.max_cgroups);
  }
}

struct ValidationCase {
  const char* description;
  const char* yaml;
  // Empty: the text is valid. Otherwise substrings the one-sentence error
  // must contain (the key path, what is wrong, the fix).
  std::vector<std::string> error_parts;
};

TEST(ParseConfig, RejectsEveryInvalidInputWithTheKeyAndTheFix) {
  const ValidationCase kCases[] = {
      // Valid documents.
      {"every key",
       "extensions: {image: [jpg]}\n"
       "gpu_devices: [{path: /dev/nvidia*}]\nmax_cgroups: 4096\n",
       {}},
      {"a leading dot and upper case are normalised",
       "extensions:\n  image: [.JPG, Png]\n",
       {}},
      {"an extension of exactly 15 bytes",
       "extensions: {mydata: [abcdefghijklmno]}\n",
       {}},
      {"three new classes", "extensions: {a: [x1], b: [x2], c: [x3]}\n", {}},
      {"an empty extensions mapping", "extensions: {}\n", {}},
      {"an empty gpu_devices list", "gpu_devices: []\n", {}},
      {"max_cgroups at its bounds", "max_cgroups: 64\n", {}},
      {"max_cgroups at its upper bound", "max_cgroups: 1048576\n", {}},
      {"a device by major and minor",
       "gpu_devices: [{major: 4095, minor: 1048575}]\n",
       {}},
      // The document.
      {"not a mapping",
       "- extensions\n",
       {"/etc/gputier.yaml:1: the document is a list, not a mapping",
        "extensions, gpu_devices, max_cgroups"}},
      {"a scalar document", "hello\n", {"not a mapping"}},
      {"an unknown top-level key",
       "max_cgroups: 100\nmax_cgroup: 5\n",
       {"/etc/gputier.yaml:2: max_cgroup: is not a known key",
        "use only extensions, gpu_devices, max_cgroups"}},
      {"a key twice",
       "max_cgroups: 100\nmax_cgroups: 200\n",
       {":2: max_cgroups: appears twice"}},
      {"broken YAML",
       "extensions: [image\n",
       {"/etc/gputier.yaml:", "not valid YAML"}},
      // extensions:
      {"extensions is a list",
       "extensions: [jpg]\n",
       {"extensions: is a list, not a mapping of class name to extensions"}},
      {"the reserved class other",
       "extensions: {other: [foo]}\n",
       {"extensions.other: \"other\" is reserved",
        "choose another class name"}},
      {"an upper-case class name",
       "extensions: {Images: [jpg]}\n",
       {"extensions.Images: \"Images\" is not a valid class name",
        "a-z, 0-9, _ and -"}},
      {"a class name of 16 bytes",
       "extensions: {abcdefghijklmnop: [x]}\n",
       {"is not a valid class name", "1 to 15"}},
      {"a fourth new class",
       "extensions: {a: [x1], b: [x2], c: [x3], d: [x4]}\n",
       {"extensions.d: is a new class beyond the 3",
        "merge it into another class"}},
      {"an empty class",
       "extensions: {tensor: []}\n",
       {"extensions.tensor: is an empty class"}},
      {"a class without a value",
       "extensions:\n  mydata:\n",
       {"/etc/gputier.yaml:2: extensions.mydata: is an empty class"}},
      {"a class that is a single value",
       "extensions: {image: jpg}\n",
       {"extensions.image: is a single value, not a list of extensions",
        "image: [ext1, ext2]"}},
      {"an extension that is a list",
       "extensions: {image: [[jpg]]}\n",
       {"extensions.image[0]: is a list, not an extension"}},
      {"an extension that is null",
       "extensions: {image: [jpg, ~]}\n",
       {"extensions.image[1]: is empty, not an extension"}},
      {"an empty extension",
       "extensions: {image: [jpg, \"\"]}\n",
       {"extensions.image[1]: \"\" is an empty extension"}},
      {"a lone dot",
       "extensions: {image: [\".\"]}\n",
       {"extensions.image[0]: \".\" is an empty extension"}},
      {"a double extension",
       "extensions:\n  tensor: [pt, pth, tar.gz]\n",
       {"/etc/gputier.yaml:2: extensions.tensor[2]: \"tar.gz\" has more than "
        "one extension; only the last extension is matched, write \"gz\""}},
      {"two leading dots",
       "extensions: {image: [..jpg]}\n",
       {"extensions.image[0]: \"..jpg\" has more than one extension"}},
      {"an extension of 16 bytes",
       "extensions: {mydata: [abcdefghijklmnop]}\n",
       {"extensions.mydata[0]:", "16 bytes long, more than the 15"}},
      {"a slash",
       "extensions: {image: [a/b]}\n",
       {"extensions.image[0]: \"a/b\" contains a slash"}},
      {"a space",
       "extensions: {image: [\"a b\"]}\n",
       {"contains a slash, a space"}},
      {"a NUL",
       "extensions: {image: [\"a\\0b\"]}\n",
       {"extensions.image[0]:", "contains a slash, a space or a NUL"}},
      {"the same extension twice in a class",
       "extensions: {image: [jpg, JPG]}\n",
       {"extensions.image[1]: \"jpg\" is listed twice in class \"image\""}},
      {"a built-in extension in a new class",
       "extensions:\n  mydata: [foo, jpg]\n",
       {"/etc/gputier.yaml:2: extensions.mydata[1]: \"jpg\" is in both class "
        "\"mydata\" and class \"image\" (built in)",
        "keep it in one class, e.g. list class \"image\" without it"}},
      {"the same extension in two new classes",
       "extensions:\n  a: [foo]\n  b:\n    - foo\n",
       {"/etc/gputier.yaml:4: extensions.b[0]: \"foo\" is in both class \"b\" "
        "and class \"a\" (/etc/gputier.yaml:2: extensions.a[0]); keep it in "
        "only "
        "one of them"}},
      {"a built-in extension in another built-in",
       "extensions: {video: [mp4, png]}\n",
       {"extensions.video[1]: \"png\" is in both class \"video\" and class "
        "\"image\""}},
      // gpu_devices:
      {"gpu_devices is a mapping",
       "gpu_devices: {path: /dev/nvidia0}\n",
       {"gpu_devices: is a mapping, not a list of device selectors"}},
      {"a selector that is a string",
       "gpu_devices: [/dev/nvidia0]\n",
       {"gpu_devices[0]: is a single value, not a device selector",
        "{path: /dev/nvidia*}"}},
      {"a relative path",
       "gpu_devices: [{path: dev/nvidia0}]\n",
       {"gpu_devices[0].path: \"dev/nvidia0\" is not an absolute path"}},
      {"a path that is a list",
       "gpu_devices: [{path: [/dev/a]}]\n",
       {"gpu_devices[0].path: is a list, not a path"}},
      {"both path and major",
       "gpu_devices: [{path: /dev/dri/*, major: 226}]\n",
       {"gpu_devices[0]: has both path and major/minor"}},
      {"minor without major",
       "gpu_devices: [{minor: 3}]\n",
       {"gpu_devices[0]: has minor without major"}},
      {"an empty selector",
       "gpu_devices: [{}]\n",
       {"gpu_devices[0]: selects no device"}},
      {"an unknown selector key",
       "gpu_devices:\n  - {major: 1, minr: 2}\n",
       {"/etc/gputier.yaml:2: gpu_devices[0].minr: is not a device selector "
        "key",
        "use only path, major, minor"}},
      {"a major too large",
       "gpu_devices: [{major: 4096}]\n",
       {"gpu_devices[0].major: \"4096\" is not an integer in 0..4095"}},
      {"a negative major",
       "gpu_devices: [{major: -1}]\n",
       {"gpu_devices[0].major: \"-1\" is not an integer in 0..4095"}},
      {"a minor too large",
       "gpu_devices: [{major: 1, minor: 1048576}]\n",
       {"gpu_devices[0].minor: \"1048576\"", "0..1048575"}},
      {"a quoted major",
       "gpu_devices: [{major: \"226\"}]\n",
       {"gpu_devices[0].major: is a single value, not an integer",
        "unquoted integer"}},
      {"a major that is a word",
       "gpu_devices: [{major: nvidia}]\n",
       {"gpu_devices[0].major: \"nvidia\" is not an integer"}},
      // max_cgroups:
      {"max_cgroups too small",
       "max_cgroups: 63\n",
       {"/etc/gputier.yaml:1: max_cgroups: \"63\" is not an integer in "
        "64..1048576; write an integer in 64..1048576"}},
      {"max_cgroups too large", "max_cgroups: 1048577\n", {"64..1048576"}},
      {"max_cgroups far too large",
       "max_cgroups: 99999999999999999999\n",
       {"is not an integer in 64..1048576"}},
      {"max_cgroups not a number",
       "max_cgroups: lots\n",
       {"max_cgroups: \"lots\" is not an integer"}},
      {"max_cgroups as a float",
       "max_cgroups: 1e4\n",
       {"\"1e4\" is not an integer"}},
      {"max_cgroups without a value",
       "max_cgroups:\n",
       {"/etc/gputier.yaml:1: max_cgroups: is empty, not an integer"}},
      // metrics:
      {"metrics.max_containers at its bounds", "metrics: {max_containers: 1}\n", {}},
      {"metrics.max_containers at its upper bound", "metrics:\n  max_containers: 100000\n", {}},
      {"metrics.max_containers zero",
       "metrics:\n  max_containers: 0\n",
       {"/etc/gputier.yaml:2: metrics.max_containers: \"0\" is not an integer in", "1..100000"}},
      {"metrics.max_containers not a number",
       "metrics: {max_containers: many}\n",
       {"metrics.max_containers: \"many\" is not an integer"}},
      {"metrics not a mapping", "metrics: 1000\n", {"/etc/gputier.yaml:1: metrics: is a single value, not a mapping",
                                                       "max_containers"}},
      {"an unknown metrics key",
       "metrics:\n  max_container: 5\n",
       {"/etc/gputier.yaml:2: metrics.max_container: is not a known key", "use only max_containers"}},
  };
  for (const ValidationCase& c : kCases) {
    absl::StatusOr<Config> config = ParseConfig(c.yaml, kSource);
    if (c.error_parts.empty()) {
      EXPECT_TRUE(config.ok()) << c.description << ": " << config.status();
      continue;
    }
    ASSERT_FALSE(config.ok()) << c.description;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument)
        << c.description;
    const std::string message(config.status().message());
    EXPECT_TRUE(absl::StartsWith(message, kSource)) << message;
    EXPECT_TRUE(absl::StrContains(message, "; ")) << "no fix in: " << message;
    EXPECT_FALSE(absl::StrContains(message, "\n"))
        << "not one line: " << message;
    for (const std::string& part : c.error_parts) {
      EXPECT_TRUE(absl::StrContains(message, part))
          << c.description << "\n  message: " << message
          << "\n  missing: " << part;
    }
  }
}

TEST(ParseConfig, BuiltInClassNamesReplaceTheirListAndKeepTheirId) {
  absl::StatusOr<Config> config = ParseConfig(
      "extensions:\n  tensor: [.PT, safetensors, mymodel]\n", kSource);
  ASSERT_TRUE(config.ok()) << config.status();
  const ExtensionClass* tensor = FindClass(*config, "tensor");
  ASSERT_NE(tensor, nullptr);
  EXPECT_EQ(tensor->id, static_cast<uint32_t>(GT_CLASS_TENSOR));
  EXPECT_EQ(tensor->extensions,
            (std::vector<std::string>{"pt", "safetensors", "mymodel"}));
  // The other built-ins are untouched.
  const Config defaults = DefaultConfig();
  EXPECT_EQ(FindClass(*config, "image")->extensions,
            FindClass(defaults, "image")->extensions);
  EXPECT_EQ(config->classes.size(), defaults.classes.size());
}

TEST(ParseConfig, ReplacingABuiltInFreesItsExtensionsForOtherClasses) {
  // "bin" moves from tensor to a new class: legal once tensor no longer
  // lists it.
  absl::StatusOr<Config> config = ParseConfig(
      "extensions:\n  firmware: [bin, fw]\n  tensor: [pt, onnx]\n", kSource);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(HasExtension(*FindClass(*config, "firmware"), "bin"));
  EXPECT_FALSE(HasExtension(*FindClass(*config, "tensor"), "bin"));
}

TEST(ParseConfig, NewClassesGetCustomIdsInFileOrderAfterTheBuiltIns) {
  absl::StatusOr<Config> config = ParseConfig(
      "extensions:\n"
      "  zeta: [zz]\n"
      "  image: [jpg]\n"
      "  alpha: [aa, .AB]\n"
      "  mydata: [foo]\n",
      kSource);
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->classes.size(), 7u);
  const std::pair<uint32_t, const char*> kExpected[] = {
      {GT_CLASS_IMAGE, "image"},
      {GT_CLASS_VIDEO, "video"},
      {GT_CLASS_TENSOR, "tensor"},
      {GT_CLASS_GRAPHICS, "graphics"},
      {5, "zeta"},
      {6, "alpha"},
      {7, "mydata"},
  };
  for (size_t i = 0; i < config->classes.size(); ++i) {
    EXPECT_EQ(config->classes[i].id, kExpected[i].first);
    EXPECT_EQ(config->classes[i].name, kExpected[i].second);
  }
  EXPECT_EQ(FindClass(*config, "alpha")->extensions,
            (std::vector<std::string>{"aa", "ab"}));
  EXPECT_EQ(FindClass(*config, "image")->extensions,
            (std::vector<std::string>{"jpg"}));
}

TEST(ParseConfig, ReadsGpuDeviceSelectorsAndMaxCgroups) {
  absl::StatusOr<Config> config = ParseConfig(
      "gpu_devices:\n"
      "  - path: /dev/nvidia*\n"
      "  - major: 240\n"
      "  - {major: 1, minor: 7}\n"
      "max_cgroups: 65536\n",
      kSource);
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->gpu_devices.size(), 3u);
  EXPECT_EQ(config->gpu_devices[0].path_glob, "/dev/nvidia*");
  EXPECT_FALSE(config->gpu_devices[0].major.has_value());
  EXPECT_FALSE(config->gpu_devices[1].path_glob.has_value());
  EXPECT_EQ(config->gpu_devices[1].major, 240u);
  EXPECT_FALSE(config->gpu_devices[1].minor.has_value());
  EXPECT_EQ(config->gpu_devices[2].major, 1u);
  EXPECT_EQ(config->gpu_devices[2].minor, 7u);
  EXPECT_EQ(config->max_cgroups, 65536u);
  // Extensions untouched.
  EXPECT_EQ(config->classes.size(), DefaultConfig().classes.size());
}

// A file in the test's temporary directory, removed at the end of the test.
class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    const char* dir = std::getenv("TEST_TMPDIR");
    path_ = absl::StrCat(dir != nullptr ? dir : "/tmp",
                         "/gputier_config_test_XXXXXX");
    const int fd = mkstemp(path_.data());
    EXPECT_GE(fd, 0) << path_;
    if (fd >= 0) {
      EXPECT_EQ(write(fd, contents.data(), contents.size()),
                static_cast<ssize_t>(contents.size()));
      close(fd);
    }
  }
  ~TempFile() { unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(LoadConfigFile, ParsesAFileAndNamesItInErrors) {
  {
    TempFile file("max_cgroups: 2048\nextensions: {mydata: [foo]}\n");
    absl::StatusOr<Config> config = LoadConfigFile(file.path());
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->max_cgroups, 2048u);
    EXPECT_NE(FindClass(*config, "mydata"), nullptr);
  }
  {
    TempFile file("max_cgroups: 1\n");
    absl::StatusOr<Config> config = LoadConfigFile(file.path());
    ASSERT_FALSE(config.ok());
    EXPECT_TRUE(absl::StartsWith(config.status().message(),
                                 file.path() + ":1: max_cgroups:"))
        << config.status();
  }
  {
    TempFile file("");
    absl::StatusOr<Config> config = LoadConfigFile(file.path());
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->classes.size(), DefaultConfig().classes.size());
  }
}

TEST(LoadConfigFile, MissingFileIsNotFoundNamingThePathAndTheFlag) {
  const std::string path = "/nonexistent/gputier/config.yaml";
  absl::StatusOr<Config> config = LoadConfigFile(path);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(config.status().message(),
            "cannot read config /nonexistent/gputier/config.yaml: No such file "
            "or directory; pass an existing, readable file to --config");
}

TEST(LoadConfigFile, DirectoryIsAnErrorNamingThePath) {
  absl::StatusOr<Config> config = LoadConfigFile("/");
  ASSERT_FALSE(config.ok());
  EXPECT_TRUE(absl::StartsWith(config.status().message(),
                               "cannot read config /: Is a directory"))
      << config.status();
}

}  // namespace
}  // namespace gputier
