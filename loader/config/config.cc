#include "loader/config/config.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "gputier/abi.h"
#include "loader/config/config_policy.h"
#include "loader/config/config_enforcement.h"
#include "loader/config/config_metrics.h"
#include "loader/config/config_tiers.h"
#include "loader/config/yaml_fields.h"
#include "yaml-cpp/yaml.h"

namespace gputier {
namespace {

constexpr absl::string_view kKnownTopLevelKeys =
    "extensions, gpu_devices, max_cgroups, policy, tiers, tiered_paths, gpu_data_paths, "
    "runtime_roots, runc_roots (deprecated), tiered_cgroups, enforcement, enforcement_if_unavailable, enforcement_exempt_cgroups, "
    "control_read_group, metrics";
constexpr absl::string_view kKnownDeviceKeys = "path, major, minor";
constexpr uint32_t kMinCgroups = 64;
constexpr uint32_t kMaxCgroups = 1048576;
constexpr uint32_t kMaxDeviceMajor = 4095;     // 12 bits in dev_t
constexpr uint32_t kMaxDeviceMinor = 1048575;  // 20 bits in dev_t
constexpr size_t kMaxConfigBytes = 1 << 20;

struct BuiltinClass {
  uint32_t id;
  const char* name;
  std::vector<std::string> extensions;
};

// The built-in classes, in id order. Every extension is in exactly one class
// (tests/config_test.cc checks it).
const std::vector<BuiltinClass>& BuiltinClasses() {
  static const auto* const kClasses = new std::vector<BuiltinClass>{
      {GT_CLASS_IMAGE,
       "image",
       {"jpg",  "jpeg", "jpe", "png",  "bmp",  "gif",  "tif",  "tiff",
        "webp", "dng",  "raw", "cr2",  "nef",  "arw",  "ppm",  "pgm",
        "pbm",  "pnm",  "exr", "hdr",  "heic", "heif", "avif", "jxl",
        "jp2",  "dds",  "ktx", "ktx2", "tga",  "dcm",  "nii",  "fits"}},
      {GT_CLASS_VIDEO,
       "video",
       {"mp4",  "mkv", "avi", "mov",  "webm", "m4v",   "mpg", "mpeg",
        "m2ts", "mts", "flv", "wmv",  "3gp",  "y4m",   "yuv", "h264",
        "h265", "264", "265", "hevc", "ivf",  "mjpeg", "av1", "vp9"}},
      {GT_CLASS_TENSOR,
       "tensor",
       {"pt",      "pth",      "ckpt",      "safetensors", "bin",
        "onnx",    "pb",       "tflite",    "h5",          "hdf5",
        "keras",   "npy",      "npz",       "gguf",        "ggml",
        "pkl",     "pickle",   "joblib",    "engine",      "plan",
        "trt",     "tfrecord", "tfrecords", "arrow",       "parquet",
        "msgpack", "mlmodel",  "mar",       "nemo",        "caffemodel",
        "pdparams"}},
      {GT_CLASS_GRAPHICS,
       "graphics",
       {"obj",  "fbx",  "gltf", "glb",   "stl",   "ply",  "usd",
        "usda", "usdc", "usdz", "blend", "dae",   "3ds",  "vdb",
        "spv",  "glsl", "hlsl", "vert",  "frag",  "comp", "geom",
        "tesc", "tese", "ptx",  "cubin", "fatbin"}},
  };
  return *kClasses;
}

// Lower-cases an extension and strips one leading dot, or explains why it
// can never match a file name.
absl::StatusOr<std::string> NormaliseExtension(absl::string_view source,
                                               const YAML::Node& node,
                                               absl::string_view key_path) {
  if (!node.IsScalar()) {
    return Invalid(source, node, key_path,
                   absl::StrCat("is ", KindOf(node), ", not an extension"),
                   "write the extension as a string, e.g. png");
  }
  std::string ext = node.Scalar();
  if (!ext.empty() && ext[0] == '.') ext.erase(0, 1);
  absl::AsciiStrToLower(&ext);
  if (ext.empty()) {
    return Invalid(source, node, key_path,
                   absl::StrCat(Quote(node.Scalar()), " is an empty extension"),
                   "write the extension without the dot, e.g. png");
  }
  if (std::any_of(ext.begin(), ext.end(), [](char c) {
        return c == '\0' || c == '/' || absl::ascii_isspace(c);
      })) {
    return Invalid(
        source, node, key_path,
        absl::StrCat(Quote(node.Scalar()),
                     " contains a slash, a space or a NUL, which no file "
                     "extension has"),
        "write only the characters after the last dot of a file name");
  }
  const size_t dot = ext.rfind('.');
  if (dot != std::string::npos) {
    const std::string last = ext.substr(dot + 1);
    return Invalid(
        source, node, key_path,
        absl::StrCat(Quote(node.Scalar()), " has more than one extension"),
        last.empty()
            ? "only the last extension is matched, remove the extra dots"
            : absl::StrCat("only the last extension is matched, write ",
                           Quote(last)));
  }
  if (ext.size() > GT_EXT_MAX) {
    return Invalid(source, node, key_path,
                   absl::StrCat(Quote(node.Scalar()), " is ", ext.size(),
                                " bytes long, more than the ", GT_EXT_MAX,
                                " bytes the kernel side reads"),
                   "remove it, such files are counted as having no extension");
  }
  return ext;
}

bool IsValidClassName(absl::string_view name) {
  if (name.empty() || name.size() > GT_CLASS_NAME_LEN - 1) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

// Where an extension came from, to name both sides of a conflict.
struct ExtensionOrigin {
  std::string class_name;
  YAML::Node node;  // undefined for a built-in extension
  std::string key_path;
};

// Extensions from the file, per class, with their nodes for errors.
struct FileClass {
  uint32_t id;
  std::string name;
  std::vector<std::pair<std::string, YAML::Node>> extensions;
};

// The id of the class `name` of the file: a built-in class's own, else the
// next free custom one.
absl::StatusOr<uint32_t> ClassIdOf(absl::string_view source, const std::string& name,
                                   const YAML::Node& name_node, const std::string& path,
                                   const Config& config, uint32_t* next_custom_id) {
  if (name == "other") {
    return Invalid(source, name_node, path,
                   "\"other\" is reserved for extensions in no class",
                   "choose another class name");
  }
  if (!IsValidClassName(name)) {
    return Invalid(source, name_node, path,
                   absl::StrCat(Quote(name), " is not a valid class name"),
                   absl::StrCat("use 1 to ", GT_CLASS_NAME_LEN - 1,
                                " characters from a-z, 0-9, _ and -"));
  }
  auto builtin = std::find_if(
      config.classes.begin(), config.classes.end(),
      [&class_name = name](const ExtensionClass& c) { return c.name == class_name; });
  if (builtin != config.classes.end()) return builtin->id;
  if (*next_custom_id >= GT_CLASS_MAX) {
    return Invalid(source, name_node, path,
                   absl::StrCat("is a new class beyond the ",
                                GT_CLASS_MAX - GT_CLASS_FIRST_CUSTOM,
                                " that fit next to the built-in ones"),
                   "merge it into another class");
  }
  return (*next_custom_id)++;
}

// One class of the file: a non-empty list of extensions, each once.
absl::StatusOr<FileClass> ParseFileClass(absl::string_view source, uint32_t id, const std::string& name,
                                         const YAML::Node& name_node, const YAML::Node& list,
                                         const std::string& path) {
  if (list.IsNull() || (list.IsSequence() && list.size() == 0)) {
    return Invalid(source, name_node, path, "is an empty class",
                   "list at least one extension, or remove the class");
  }
  if (!list.IsSequence()) {
    return Invalid(
        source, list, path,
        absl::StrCat("is ", KindOf(list), ", not a list of extensions"),
        absl::StrCat("write a list, e.g. \"", name, ": [ext1, ext2]\""));
  }
  FileClass file_class{id, name, {}};
  absl::flat_hash_map<std::string, size_t> index_of;
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node item = list[i];
    const std::string item_path = absl::StrCat(path, "[", i, "]");
    absl::StatusOr<std::string> ext =
        NormaliseExtension(source, item, item_path);
    if (!ext.ok()) return ext.status();
    auto [it, inserted] = index_of.emplace(*ext, i);
    if (!inserted) {
      return Invalid(
          source, item, item_path,
          absl::StrCat(Quote(*ext), " is listed twice in class ", Quote(name),
                       " (also at [", it->second, "])"),
          "keep one of them");
    }
    file_class.extensions.emplace_back(*std::move(ext), item);
  }
  return file_class;
}

// Every extension in exactly one class: built-in lists that the file did
// not replace first, then the file's lists in file order, so a conflict is
// reported at the file's line. And no more than the map holds.
absl::Status CheckEachExtensionInOneClass(absl::string_view source, const YAML::Node& node,
                                          const Config& config,
                                          const std::vector<FileClass>& file_classes) {
  absl::flat_hash_map<std::string, ExtensionOrigin> owner;
  size_t total = 0;
  for (const ExtensionClass& c : config.classes) {
    bool replaced =
        std::any_of(file_classes.begin(), file_classes.end(),
                    [&c](const FileClass& f) { return f.name == c.name; });
    if (replaced) continue;
    for (const std::string& ext : c.extensions) {
      owner.emplace(ext, ExtensionOrigin{c.name, YAML::Node(), ""});
      ++total;
    }
  }
  for (const FileClass& f : file_classes) {
    for (size_t i = 0; i < f.extensions.size(); ++i) {
      const auto& [ext, item] = f.extensions[i];
      const std::string item_path =
          absl::StrCat("extensions.", f.name, "[", i, "]");
      auto [it, inserted] =
          owner.emplace(ext, ExtensionOrigin{f.name, item, item_path});
      if (!inserted) {
        const ExtensionOrigin& other = it->second;
        std::string other_place =
            other.key_path.empty()
                ? std::string(" (built in)")
                : absl::StrCat(" (", Where(source, other.node, other.key_path),
                               ")");
        return Invalid(
            source, item, item_path,
            absl::StrCat(Quote(ext), " is in both class ", Quote(f.name),
                         " and class ", Quote(other.class_name), other_place),
            other.key_path.empty()
                ? absl::StrCat("keep it in one class, e.g. list class ",
                               Quote(other.class_name), " without it")
                : std::string("keep it in only one of them"));
      }
      ++total;
    }
  }
  if (total > GT_MAX_EXTENSIONS) {
    return Invalid(
        source, node, "extensions",
        absl::StrCat("lists ", total, " extensions in all, more than ", "the ",
                     GT_MAX_EXTENSIONS, " the map holds"),
        "remove some");
  }
  return absl::OkStatus();
}

// The file's classes replace the built-in ones of the same name or join
// them; the classes end up in id order.
void MergeFileClasses(std::vector<FileClass> file_classes, Config& config) {
  for (FileClass& f : file_classes) {
    std::vector<std::string> extensions;
    extensions.reserve(f.extensions.size());
    for (auto& [ext, item] : f.extensions) extensions.push_back(std::move(ext));
    auto existing =
        std::find_if(config.classes.begin(), config.classes.end(),
                     [&f](const ExtensionClass& c) { return c.id == f.id; });
    if (existing != config.classes.end()) {
      existing->extensions = std::move(extensions);
    } else {
      config.classes.push_back(
          ExtensionClass{f.id, std::move(f.name), std::move(extensions)});
    }
  }
  std::sort(config.classes.begin(), config.classes.end(),
            [](const ExtensionClass& a, const ExtensionClass& b) {
              return a.id < b.id;
            });
}

absl::Status ParseExtensions(absl::string_view source, const YAML::Node& node,
                             Config& config) {
  if (node.IsNull()) return absl::OkStatus();
  if (!node.IsMap()) {
    return Invalid(source, node, "extensions",
                   absl::StrCat("is ", KindOf(node),
                                ", not a mapping of class name to extensions"),
                   "write e.g. \"extensions: {image: [jpg, png]}\"");
  }
  absl::StatusOr<std::vector<MapEntry>> entries =
      MappingEntries(source, node, "extensions");
  if (!entries.ok()) return entries.status();
  std::vector<FileClass> file_classes;
  uint32_t next_custom_id = GT_CLASS_FIRST_CUSTOM;
  for (const auto& [name, name_node, list] : *entries) {
    const std::string path = absl::StrCat("extensions.", name);
    absl::StatusOr<uint32_t> id = ClassIdOf(source, name, name_node, path, config, &next_custom_id);
    if (!id.ok()) return id.status();
    absl::StatusOr<FileClass> file_class = ParseFileClass(source, *id, name, name_node, list, path);
    if (!file_class.ok()) return file_class.status();
    file_classes.push_back(*std::move(file_class));
  }
  if (absl::Status s = CheckEachExtensionInOneClass(source, node, config, file_classes); !s.ok()) return s;
  MergeFileClasses(std::move(file_classes), config);
  return absl::OkStatus();
}

absl::StatusOr<GpuDeviceSelector> ParseGpuDevice(absl::string_view source,
                                                 const YAML::Node& node,
                                                 absl::string_view path) {
  constexpr absl::string_view kExample =
      "write e.g. \"{path: /dev/nvidia*}\", \"{major: 240}\" or "
      "\"{major: 1, minor: 7}\"";
  if (!node.IsMap()) {
    return Invalid(source, node, path,
                   absl::StrCat("is ", KindOf(node), ", not a device selector"),
                   kExample);
  }
  absl::StatusOr<std::vector<MapEntry>> entries =
      MappingEntries(source, node, path);
  if (!entries.ok()) return entries.status();

  // std::optional, not an empty YAML::Node: a default YAML::Node counts as
  // defined, and assigning to one rebinds the node it refers to.
  GpuDeviceSelector selector;
  std::optional<MapEntry> path_entry, major_entry, minor_entry;
  for (const MapEntry& entry : *entries) {
    if (entry.key == "path") {
      path_entry.emplace(entry);
    } else if (entry.key == "major") {
      major_entry.emplace(entry);
    } else if (entry.key == "minor") {
      minor_entry.emplace(entry);
    } else {
      return Invalid(source, entry.key_node, absl::StrCat(path, ".", entry.key),
                     "is not a device selector key",
                     absl::StrCat("use only ", kKnownDeviceKeys));
    }
  }
  if (path_entry && (major_entry || minor_entry)) {
    return Invalid(source, node, path, "has both path and major/minor",
                   "select a device either by path or by major/minor, as two "
                   "list entries if both are wanted");
  }
  if (path_entry) {
    const YAML::Node& path_node = path_entry->value;
    if (!path_node.IsScalar()) {
      return Invalid(source, path_entry->Location(),
                     absl::StrCat(path, ".path"),
                     absl::StrCat("is ", KindOf(path_node), ", not a path"),
                     "write an absolute path or glob, e.g. /dev/nvidia*");
    }
    const std::string& glob = path_node.Scalar();
    if (glob.empty() || glob[0] != '/' ||
        glob.find('\0') != std::string::npos) {
      return Invalid(source, path_node, absl::StrCat(path, ".path"),
                     absl::StrCat(Quote(glob), " is not an absolute path"),
                     "write an absolute path or glob, e.g. /dev/nvidia*");
    }
    selector.path_glob = glob;
    return selector;
  }
  if (!major_entry) {
    return Invalid(
        source, node, path,
        minor_entry ? "has minor without major" : "selects no device",
        kExample);
  }
  absl::StatusOr<uint32_t> major =
      ParseBoundedInt(source, major_entry->value, major_entry->Location(),
                      absl::StrCat(path, ".major"), 0, kMaxDeviceMajor);
  if (!major.ok()) return major.status();
  selector.major = *major;
  if (minor_entry) {
    absl::StatusOr<uint32_t> minor =
        ParseBoundedInt(source, minor_entry->value, minor_entry->Location(),
                        absl::StrCat(path, ".minor"), 0, kMaxDeviceMinor);
    if (!minor.ok()) return minor.status();
    selector.minor = *minor;
  }
  return selector;
}

absl::Status ParseGpuDevices(absl::string_view source, const YAML::Node& node,
                             Config& config) {
  if (node.IsNull()) return absl::OkStatus();
  if (!node.IsSequence()) {
    return Invalid(
        source, node, "gpu_devices",
        absl::StrCat("is ", KindOf(node), ", not a list of device selectors"),
        "write a list, e.g. \"gpu_devices: [{path: /dev/nvidia*}]\"");
  }
  if (node.size() > GT_MAX_GPU_DEVS) {
    return Invalid(
        source, node, "gpu_devices",
        absl::StrCat("lists ", node.size(), " selectors, more than the ",
                     GT_MAX_GPU_DEVS, " the device map holds"),
        "select devices by major or by glob instead");
  }
  for (size_t i = 0; i < node.size(); ++i) {
    absl::StatusOr<GpuDeviceSelector> selector =
        ParseGpuDevice(source, node[i], absl::StrCat("gpu_devices[", i, "]"));
    if (!selector.ok()) return selector.status();
    config.gpu_devices.push_back(*std::move(selector));
  }
  return absl::OkStatus();
}

// `control_read_group: NAME`: a POSIX group name (resolved by gputierd).
absl::Status ParseControlReadGroup(absl::string_view source, const YAML::Node& node, std::string* out) {
  bool ok = node.IsScalar() && IsPlainScalar(node) && !node.Scalar().empty() && node.Scalar().size() <= 32 &&
            node.Scalar()[0] != '-';
  if (ok) {
    for (char c : node.Scalar()) {
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '-' || c == '.');
    }
  }
  if (!ok) {
    return Invalid(source, node, "control_read_group",
                   node.IsScalar() ? absl::StrCat("is ", Quote(node.Scalar()), ", not a group name")
                                   : absl::StrCat("is ", KindOf(node)),
                   "write the name of a group whose members may run gputierctl status and explain "
                   "(1-32 characters of [A-Za-z0-9_.-]), or remove the key (root only)");
  }
  *out = node.Scalar();
  return absl::OkStatus();
}

absl::StatusOr<Config> ParseDocument(absl::string_view source,
                                     const YAML::Node& root) {
  Config config = DefaultConfig();
  if (!root.IsDefined() || root.IsNull()) return config;  // empty file
  if (!root.IsMap()) {
    return Invalid(
        source, root, "",
        absl::StrCat("the document is ", KindOf(root), ", not a mapping"),
        absl::StrCat("write top-level keys from ", kKnownTopLevelKeys));
  }
  absl::StatusOr<std::vector<MapEntry>> entries =
      MappingEntries(source, root, "");
  if (!entries.ok()) return entries.status();
  YAML::Node policy;  // parsed last: gpu_classes names the merged classes
  for (const MapEntry& entry : *entries) {
    const std::string& key = entry.key;
    const YAML::Node& value = entry.value;
    absl::Status status;
    if (key == "policy") {
      policy = value;
    } else if (key == "extensions") {
      status = ParseExtensions(source, value, config);
    } else if (key == "tiers") {
      status = ParseTiers(source, value, &config.tiers);
    } else if (key == "tiered_paths") {
      status = ParseContainerPathList(source, value, key, &config.tiers.tiered_paths);
    } else if (key == "gpu_data_paths") {
      status = ParseContainerPathList(source, value, key, &config.tiers.gpu_data_paths);
    } else if (key == "runtime_roots") {
      if (config.tiers.runtime_roots.count("runc") && value.IsMap() && value["runc"]) {
        status = Invalid(source, value, "runtime_roots.runc", "repeats runc_roots",
                         "keep runtime_roots.runc and remove the deprecated runc_roots");
      } else {
        status = ParseRuntimeRoots(source, value, &config.tiers.runtime_roots);
      }
    } else if (key == "runc_roots") {
      if (config.tiers.runtime_roots.count("runc")) {
        status = Invalid(source, value, "runc_roots", "repeats runtime_roots.runc",
                         "keep runtime_roots.runc and remove the deprecated runc_roots");
      } else {
        status = ParseRuncRoots(source, value, &config.tiers.runtime_roots, &config.notes);
      }
    } else if (key == "tiered_cgroups") {
      status = ParseTieredCgroups(source, value, &config.tiers.tiered_cgroups);
    } else if (key == "enforcement") {
      status = ParseEnforcementMode(source, value, &config.enforcement);
    } else if (key == "enforcement_if_unavailable") {
      status = ParseEnforcementIfUnavailable(source, value, &config.enforcement);
    } else if (key == "enforcement_exempt_cgroups") {
      status = ParseExemptCgroups(source, value, &config.enforcement);
    } else if (key == "control_read_group") {
      status = ParseControlReadGroup(source, value, &config.control_read_group);
    } else if (key == "metrics") {
      status = ParseMetricsConfig(source, value, &config.metrics);
    } else if (key == "gpu_devices") {
      status = ParseGpuDevices(source, value, config);
    } else if (key == "max_cgroups") {
      absl::StatusOr<uint32_t> max =
          ParseBoundedInt(source, value, entry.Location(), "max_cgroups",
                          kMinCgroups, kMaxCgroups);
      if (max.ok()) {
        config.max_cgroups = *max;
      } else {
        status = max.status();
      }
    } else {
      status = Invalid(source, entry.key_node, key, "is not a known key",
                       absl::StrCat("use only ", kKnownTopLevelKeys));
    }
    if (!status.ok()) return status;
  }
  if (policy.IsDefined()) {
    if (absl::Status s = ParsePolicy(source, policy, config.classes, &config.policy); !s.ok()) return s;
  }
  if (absl::Status s = ValidateTierPaths(source, config.tiers); !s.ok()) return s;
  return config;
}

}  // namespace

Config DefaultConfig() {
  Config config;
  for (const BuiltinClass& builtin : BuiltinClasses()) {
    config.classes.push_back(
        ExtensionClass{builtin.id, builtin.name, builtin.extensions});
  }
  config.max_cgroups = GT_DEFAULT_MAX_CGROUPS;
  return config;
}

absl::StatusOr<Config> ParseConfig(absl::string_view yaml_text,
                                   absl::string_view source) {
  if (std::all_of(yaml_text.begin(), yaml_text.end(),
                  [](char c) { return absl::ascii_isspace(c); })) {
    return DefaultConfig();
  }
  try {
    const YAML::Node root = YAML::Load(std::string(yaml_text));
    return ParseDocument(source, root);
  } catch (const YAML::Exception& e) {
    std::string where(source);
    if (!e.mark.is_null()) {
      absl::StrAppend(&where, ":", e.mark.line + 1, ":", e.mark.column + 1);
    }
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": not valid YAML (", e.msg, ")",
                     "; fix the syntax at that position"));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": cannot be read as YAML (", e.what(),
                     "); check that it is a YAML text file"));
  }
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  auto read_error = [&path](int error_number) {
    return absl::Status(
        absl::ErrnoToStatusCode(error_number),
        absl::StrCat("cannot read config ", path, ": ",
                     std::strerror(error_number),
                     "; pass an existing, readable file to --config"));
  };
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return read_error(errno);
  std::string text;
  char buffer[8192];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error_number = errno;
      close(fd);
      return read_error(error_number);
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > kMaxConfigBytes) {
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("config ", path, " is larger than ", kMaxConfigBytes,
                       " bytes; pass the gputierd YAML config to --config"));
    }
  }
  close(fd);
  return ParseConfig(text, path);
}

}  // namespace gputier
