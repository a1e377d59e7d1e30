#include "loader/config/config_policy.h"

#include <cmath>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "loader/config/yaml_fields.h"

namespace gputier {
namespace {

using yaml_fields::Invalid;
using yaml_fields::IsPlainScalar;
using yaml_fields::KindOf;
using yaml_fields::MapEntry;
using yaml_fields::MappingEntries;
using yaml_fields::ParseBoundedInt;
using yaml_fields::Quote;

absl::StatusOr<double> ParseNumber(absl::string_view source, const MapEntry& e, const std::string& key,
                                   double min, double max, absl::string_view meaning) {
  double v = 0;
  if (!IsPlainScalar(e.value) || !absl::SimpleAtod(e.value.Scalar(), &v) || !std::isfinite(v)) {
    return Invalid(source, e.Location(), key,
                   absl::StrCat("is ", e.value.IsScalar() ? Quote(e.value.Scalar()) : KindOf(e.value),
                                ", not a number"),
                   absl::StrCat("write a number: ", meaning));
  }
  if (v < min) {
    return Invalid(source, e.Location(), key, absl::StrCat(v, " is below ", min),
                   absl::StrCat(meaning));
  }
  if (v > max) {
    return Invalid(source, e.Location(), key, absl::StrCat(v, " is above ", max),
                   absl::StrCat(meaning));
  }
  return v;
}

absl::StatusOr<absl::Duration> ParseDurationValue(absl::string_view source, const MapEntry& e,
                                                  const std::string& key, absl::Duration min,
                                                  absl::Duration max) {
  absl::Duration d;
  if (!IsPlainScalar(e.value) || !absl::ParseDuration(e.value.Scalar(), &d)) {
    return Invalid(source, e.Location(), key,
                   absl::StrCat("is ", e.value.IsScalar() ? Quote(e.value.Scalar()) : KindOf(e.value),
                                ", not a duration"),
                   "write a duration such as 500ms, 2s or 1m");
  }
  if (d < min || d > max) {
    return Invalid(source, e.Location(), key,
                   absl::StrCat(absl::FormatDuration(d), " is outside ", absl::FormatDuration(min), "..",
                                absl::FormatDuration(max)),
                   absl::StrCat("write a duration in ", absl::FormatDuration(min), "..",
                                absl::FormatDuration(max)));
  }
  return d;
}

absl::Status ParseThresholds(absl::string_view source, const YAML::Node& node, PolicyConfig* p) {
  if (!node.IsMap()) {
    return Invalid(source, node, "policy.thresholds", absl::StrCat("is ", KindOf(node), ", not a mapping"),
                   "write gpu_ioctl_rate, ext_ratio, min_evidence and/or gpu_busy_share under it");
  }
  absl::StatusOr<std::vector<MapEntry>> entries = MappingEntries(source, node, "policy.thresholds");
  if (!entries.ok()) return entries.status();
  for (const MapEntry& e : *entries) {
    const std::string key = absl::StrCat("policy.thresholds.", e.key);
    if (e.key == "gpu_ioctl_rate") {
      absl::StatusOr<double> v =
          ParseNumber(source, e, key, 0, 1e9, "GPU ioctls per second, above 0");
      if (!v.ok()) return v.status();
      if (*v <= 0) {
        return Invalid(source, e.Location(), key, "is 0",
                       "a GPU ioctl rate threshold must be above 0, or every cgroup would use the GPU");
      }
      p->gpu_ioctl_rate = *v;
    } else if (e.key == "ext_ratio") {
      absl::StatusOr<double> v =
          ParseNumber(source, e, key, 0, 1, "the ratio of GPU-type extensions lies in [0, 1]");
      if (!v.ok()) return v.status();
      p->ext_ratio = *v;
    } else if (e.key == "min_evidence") {
      absl::StatusOr<uint32_t> v = ParseBoundedInt(source, e.value, e.Location(), key, 0, 1000000000);
      if (!v.ok()) return v.status();
      p->min_evidence = *v;
    } else if (e.key == "gpu_busy_share") {
      absl::StatusOr<double> v = ParseNumber(
          source, e, key, 0, 1024,
          "the share of GPU engine busy time (0..GPUs) at or above which a cgroup uses the GPU, above 0");
      if (!v.ok()) return v.status();
      if (*v <= 0) {
        return Invalid(source, e.Location(), key, "is 0",
                       "a GPU busy share threshold must be above 0, or every measured cgroup, even an "
                       "idle one, would use the GPU; e.g. 0.05");
      }
      p->gpu_busy_share = *v;
    } else {
      return Invalid(source, e.key_node, key, "is not a known key",
                     "the keys of policy.thresholds are gpu_ioctl_rate, ext_ratio, min_evidence, "
                     "gpu_busy_share");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParsePolicy(absl::string_view source, const YAML::Node& node,
                         const std::vector<ExtensionClass>& classes, PolicyConfig* p) {
  if (node.IsNull()) return absl::OkStatus();
  if (!node.IsMap()) {
    return Invalid(source, node, "policy", absl::StrCat("is ", KindOf(node), ", not a mapping"),
                   "write policy settings as keys under it");
  }
  absl::StatusOr<std::vector<MapEntry>> entries = MappingEntries(source, node, "policy");
  if (!entries.ok()) return entries.status();
  for (const MapEntry& e : *entries) {
    const std::string key = absl::StrCat("policy.", e.key);
    absl::Status s;
    auto take_int = [&](uint32_t min, uint32_t max, uint32_t* out) {
      absl::StatusOr<uint32_t> v = ParseBoundedInt(source, e.value, e.Location(), key, min, max);
      if (v.ok()) *out = *v;
      return v.status();
    };
    auto take_duration = [&](absl::Duration min, absl::Duration max, absl::Duration* out) {
      absl::StatusOr<absl::Duration> v = ParseDurationValue(source, e, key, min, max);
      if (v.ok()) *out = *v;
      return v.status();
    };
    if (e.key == "window") {
      s = take_duration(absl::Seconds(1), absl::Hours(24), &p->window);
    } else if (e.key == "tick") {
      s = take_duration(absl::Milliseconds(10), absl::Minutes(10), &p->tick);
    } else if (e.key == "record_every") {
      s = take_duration(absl::Seconds(1), absl::Hours(24), &p->record_every);
    } else if (e.key == "thresholds") {
      s = ParseThresholds(source, e.value, p);
    } else if (e.key == "min_rows_per_class") {
      s = take_int(1, 10000000, &p->min_rows_per_class);
    } else if (e.key == "demote_after_cpu_windows") {
      s = take_int(1, 65535, &p->demote_after_cpu_windows);
    } else if (e.key == "gpu_context_used_windows") {
      s = take_int(1, 1000000, &p->gpu_context_used_windows);
    } else if (e.key == "retrain_every_rows") {
      s = take_int(1, 10000000, &p->retrain_every_rows);
    } else if (e.key == "max_training_rows_per_cgroup") {
      s = take_int(1, 10000000, &p->max_training_rows_per_cgroup);
    } else if (e.key == "min_retrain_interval") {
      s = take_duration(absl::ZeroDuration(), absl::Hours(24 * 7), &p->min_retrain_interval);
    } else if (e.key == "table_max_rows") {
      s = take_int(100, 100000000, &p->table_max_rows);
    } else if (e.key == "operator_weight") {
      absl::StatusOr<double> v =
          ParseNumber(source, e, key, 1, 1e6, "an operator row counts this many agent rows, >= 1");
      if (v.ok()) p->operator_weight = *v;
      s = v.status();
    } else if (e.key == "gpu_classes") {
      if (!e.value.IsSequence() || e.value.size() == 0) {
        return Invalid(source, e.Location(), key, absl::StrCat("is ", KindOf(e.value), ", not a list of classes"),
                       "list class names, e.g. [image, video, tensor, graphics]");
      }
      std::vector<std::string> names;
      for (size_t i = 0; i < e.value.size(); ++i) {
        const YAML::Node& n = e.value[i];
        const std::string at = absl::StrCat(key, "[", i, "]");
        bool known = false;
        for (const ExtensionClass& c : classes) known |= n.IsScalar() && c.name == n.Scalar();
        if (!known) {
          std::vector<std::string> all;
          for (const ExtensionClass& c : classes) all.push_back(c.name);
          return Invalid(source, n, at,
                         absl::StrCat(n.IsScalar() ? Quote(n.Scalar()) : std::string(KindOf(n)),
                                      " is not an extension class"),
                         absl::StrCat("use one of: ", absl::StrJoin(all, ", ")));
        }
        names.push_back(n.Scalar());
      }
      p->gpu_classes = std::move(names);
    } else {
      return Invalid(source, e.key_node, key, "is not a known key",
                     "the keys of policy are window, tick, record_every, thresholds, gpu_classes, "
                     "min_rows_per_class, demote_after_cpu_windows, gpu_context_used_windows, "
                     "retrain_every_rows, max_training_rows_per_cgroup, min_retrain_interval, operator_weight, "
                     "table_max_rows");
    }
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace gputier
