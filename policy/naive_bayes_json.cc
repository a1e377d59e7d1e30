// The JSON form of NaiveBayesModel:
//
//   {"format": "gputier-naive-bayes", "format_version": 1,
//    "version": 3, "trained_at_unix_ns": 1700000000000000000,
//    "features": ["log1p_gpu_ioctl_rate", ...],
//    "classes": [{"label": "cpu", "rows": 40, "weight": 58.0, "prior": 0.4,
//                 "mean": [...], "variance": [...]}, ... gpu, mixed]}
//
// Doubles are written in their shortest form that reads back exactly, so a
// round trip gives an identical model.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "policy/naive_bayes.h"

namespace gputier {
namespace {

using Json = nlohmann::json;

constexpr char kFormat[] = "gputier-naive-bayes";
constexpr int kFormatVersion = 1;

absl::Status Bad(absl::string_view path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("model JSON: ", path, ": ", problem));
}

absl::StatusOr<const Json*> Field(const Json& obj, absl::string_view key,
                                  absl::string_view path) {
  auto it = obj.find(std::string(key));
  if (it == obj.end()) return Bad(path, "is missing");
  return &*it;
}

absl::StatusOr<int64_t> ReadInteger(const Json& obj, absl::string_view key,
                                    absl::string_view parent, int64_t min, int64_t max) {
  const std::string path = parent.empty() ? std::string(key) : absl::StrCat(parent, ".", key);
  absl::StatusOr<const Json*> v = Field(obj, key, path);
  if (!v.ok()) return v.status();
  const Json& j = **v;
  if (!j.is_number_integer()) {
    return Bad(path, absl::StrCat(j.dump(), " is not a whole number"));
  }
  if (j.is_number_unsigned()) {
    const uint64_t u = j.get<uint64_t>();
    if (u > static_cast<uint64_t>(max)) {
      return Bad(path, absl::StrCat(u, " is above ", max));
    }
    if (static_cast<int64_t>(u) < min) {
      return Bad(path, absl::StrCat(u, " is below ", min));
    }
    return static_cast<int64_t>(u);
  }
  const int64_t i = j.get<int64_t>();
  if (i < min) return Bad(path, absl::StrCat(i, " is below ", min));
  if (i > max) return Bad(path, absl::StrCat(i, " is above ", max));
  return i;
}

absl::StatusOr<double> ReadDouble(const Json& j, absl::string_view path) {
  if (!j.is_number()) return Bad(path, absl::StrCat(j.dump(), " is not a number"));
  const double d = j.get<double>();
  if (!std::isfinite(d)) return Bad(path, absl::StrCat(d, " is not a finite number"));
  return d;
}

absl::StatusOr<std::vector<double>> ReadVector(const Json& obj, absl::string_view key,
                                               absl::string_view parent, size_t expected_size) {
  const std::string path = absl::StrCat(parent, ".", key);
  absl::StatusOr<const Json*> v = Field(obj, key, path);
  if (!v.ok()) return v.status();
  const Json& j = **v;
  if (!j.is_array()) return Bad(path, "is not an array");
  if (j.size() != expected_size) {
    return Bad(path, absl::StrCat("has ", j.size(), " values; features lists ", expected_size));
  }
  std::vector<double> out;
  out.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    absl::StatusOr<double> d = ReadDouble(j[i], absl::StrCat(path, "[", i, "]"));
    if (!d.ok()) return d.status();
    out.push_back(*d);
  }
  return out;
}

}  // namespace

std::string NaiveBayesModel::ToJson() const {
  nlohmann::ordered_json j;
  j["format"] = kFormat;
  j["format_version"] = kFormatVersion;
  j["version"] = version_;
  j["trained_at_unix_ns"] = trained_at_unix_ns_;
  j["features"] = feature_names_;
  j["classes"] = nlohmann::ordered_json::array();
  for (size_t k = 0; k < kDecidedVerdictCount; ++k) {
    const ClassModel& c = classes_[k];
    nlohmann::ordered_json cj;
    cj["label"] = std::string(VerdictName(kDecidedVerdicts[k]));
    cj["rows"] = c.rows;
    cj["weight"] = c.weight;
    cj["prior"] = c.prior;
    cj["mean"] = c.mean;
    cj["variance"] = c.variance;
    j["classes"].push_back(std::move(cj));
  }
  return j.dump(2) + "\n";
}

absl::StatusOr<NaiveBayesModel> NaiveBayesModel::FromJson(absl::string_view text) {
  Json doc;
  try {
    doc = Json::parse(text.begin(), text.end());
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model JSON: not valid JSON at byte ", e.byte,
        " (truncated or corrupt); delete the model file and the agent retrains it"));
  } catch (const Json::exception& e) {
    // The parser throws out_of_range, not parse_error, for a number no
    // double holds (1e999): still a corrupt file, never an escaping throw.
    return absl::InvalidArgumentError(absl::StrCat(
        "model JSON: cannot be read (", e.what(),
        "); delete the model file and the agent retrains it"));
  }
  if (!doc.is_object()) return Bad("(top level)", "is not an object");

  absl::StatusOr<const Json*> format = Field(doc, "format", "format");
  if (!format.ok()) return format.status();
  if (!(*format)->is_string() || (*format)->get<std::string>() != kFormat) {
    return Bad("format", absl::StrCat((*format)->dump(), " is not \"", kFormat, "\""));
  }
  absl::StatusOr<int64_t> format_version =
      ReadInteger(doc, "format_version", "", 0, std::numeric_limits<int>::max());
  if (!format_version.ok()) return format_version.status();
  if (*format_version != kFormatVersion) {
    return Bad("format_version", absl::StrCat(*format_version, " is not ", kFormatVersion,
                                              ", the only format this agent reads"));
  }

  NaiveBayesModel m;
  absl::StatusOr<int64_t> version =
      ReadInteger(doc, "version", "", 1, std::numeric_limits<int>::max());
  if (!version.ok()) return version.status();
  m.version_ = static_cast<int>(*version);
  absl::StatusOr<int64_t> trained_at = ReadInteger(doc, "trained_at_unix_ns", "", 0,
                                                   std::numeric_limits<int64_t>::max());
  if (!trained_at.ok()) return trained_at.status();
  m.trained_at_unix_ns_ = *trained_at;

  absl::StatusOr<const Json*> features = Field(doc, "features", "features");
  if (!features.ok()) return features.status();
  if (!(*features)->is_array() || (*features)->empty()) {
    return Bad("features", "is not a non-empty array of feature names");
  }
  for (size_t i = 0; i < (*features)->size(); ++i) {
    const Json& name = (**features)[i];
    if (!name.is_string() || name.get<std::string>().empty()) {
      return Bad(absl::StrCat("features[", i, "]"), absl::StrCat(name.dump(), " is not a name"));
    }
    m.feature_names_.push_back(name.get<std::string>());
  }
  const size_t d = m.feature_names_.size();

  absl::StatusOr<const Json*> classes = Field(doc, "classes", "classes");
  if (!classes.ok()) return classes.status();
  if (!(*classes)->is_array()) return Bad("classes", "is not an array");
  std::array<bool, kDecidedVerdictCount> seen = {};
  double prior_sum = 0;
  for (size_t i = 0; i < (*classes)->size(); ++i) {
    const Json& cj = (**classes)[i];
    const std::string path = absl::StrCat("classes[", i, "]");
    if (!cj.is_object()) return Bad(path, "is not an object");
    absl::StatusOr<const Json*> label = Field(cj, "label", absl::StrCat(path, ".label"));
    if (!label.ok()) return label.status();
    absl::StatusOr<Verdict> verdict = absl::InvalidArgumentError("");
    if ((*label)->is_string()) verdict = ParseVerdict((*label)->get<std::string>());
    const int k = verdict.ok() ? DecidedVerdictIndex(*verdict) : -1;
    if (k < 0) {
      return Bad(absl::StrCat(path, ".label"),
                 absl::StrCat((*label)->dump(), " is not a class; classes are cpu, gpu and mixed"));
    }
    if (seen[k]) {
      return Bad(absl::StrCat(path, ".label"),
                 absl::StrCat((*label)->dump(), " appears twice; each class appears once"));
    }
    seen[k] = true;
    ClassModel& c = m.classes_[k];

    absl::StatusOr<int64_t> rows =
        ReadInteger(cj, "rows", path, 1, std::numeric_limits<int64_t>::max());
    if (!rows.ok()) return rows.status();
    c.rows = static_cast<uint64_t>(*rows);
    for (auto [key, field] : {std::pair<const char*, double*>{"weight", &c.weight},
                              std::pair<const char*, double*>{"prior", &c.prior}}) {
      const std::string field_path = absl::StrCat(path, ".", key);
      absl::StatusOr<const Json*> v = Field(cj, key, field_path);
      if (!v.ok()) return v.status();
      absl::StatusOr<double> value = ReadDouble(**v, field_path);
      if (!value.ok()) return value.status();
      if (*value <= 0) return Bad(field_path, absl::StrCat(*value, " is not above 0"));
      *field = *value;
    }
    if (c.prior > 1) {
      return Bad(absl::StrCat(path, ".prior"), absl::StrCat(c.prior, " is above 1"));
    }
    prior_sum += c.prior;

    absl::StatusOr<std::vector<double>> mean = ReadVector(cj, "mean", path, d);
    if (!mean.ok()) return mean.status();
    c.mean = *std::move(mean);
    absl::StatusOr<std::vector<double>> variance = ReadVector(cj, "variance", path, d);
    if (!variance.ok()) return variance.status();
    for (size_t j = 0; j < d; ++j) {
      if ((*variance)[j] <= 0) {
        return Bad(absl::StrCat(path, ".variance[", j, "]"),
                   absl::StrCat((*variance)[j], " is not above 0; a variance is positive"));
      }
    }
    c.variance = *std::move(variance);
  }
  for (size_t k = 0; k < kDecidedVerdictCount; ++k) {
    if (!seen[k]) {
      return Bad("classes", absl::StrCat("has no class ", VerdictName(kDecidedVerdicts[k]),
                                         "; a model has cpu, gpu and mixed"));
    }
  }
  if (std::fabs(prior_sum - 1.0) > 1e-6) {
    return Bad("classes[*].prior", absl::StrCat("sum to ", prior_sum, "; priors sum to 1"));
  }
  return m;
}

}  // namespace gputier
