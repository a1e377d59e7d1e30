// The `policy:` section of the config: defaults, every key, and one clear
// error naming the key for each kind of bad value.
#include <string>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "loader/config/config.h"

namespace gputier {
namespace {

TEST(PolicyConfig, DefaultsAreTheDocumentedOnes) {
  const PolicyConfig p = DefaultConfig().policy;
  EXPECT_EQ(p.window, absl::Seconds(30));
  EXPECT_EQ(p.tick, absl::Seconds(1));
  EXPECT_DOUBLE_EQ(p.gpu_ioctl_rate, 1.0);
  EXPECT_DOUBLE_EQ(p.ext_ratio, 0.3);
  EXPECT_EQ(p.min_evidence, 10u);
  EXPECT_EQ(p.demote_after_cpu_windows, 3u);
  EXPECT_EQ(p.gpu_classes.size(), 4u);
}

TEST(PolicyConfig, EveryKeyIsRead) {
  absl::StatusOr<Config> c = ParseConfig(
      "extensions:\n  scans: [dcmx]\n"
      "policy:\n"
      "  window: 10s\n  tick: 250ms\n  record_every: 2m\n"
      "  thresholds: {gpu_ioctl_rate: 2.5, ext_ratio: 0.5, min_evidence: 3}\n"
      "  gpu_classes: [tensor, scans]\n"
      "  min_rows_per_class: 5\n  demote_after_cpu_windows: 7\n  retrain_every_rows: 50\n"
      "  operator_weight: 4\n  table_max_rows: 5000\n"
      "  max_training_rows_per_cgroup: 12\n  min_retrain_interval: 5m\n",
      "test.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  const PolicyConfig& p = c->policy;
  EXPECT_EQ(p.window, absl::Seconds(10));
  EXPECT_EQ(p.tick, absl::Milliseconds(250));
  EXPECT_EQ(p.record_every, absl::Minutes(2));
  EXPECT_DOUBLE_EQ(p.gpu_ioctl_rate, 2.5);
  EXPECT_DOUBLE_EQ(p.ext_ratio, 0.5);
  EXPECT_EQ(p.min_evidence, 3u);
  EXPECT_EQ(p.gpu_classes, (std::vector<std::string>{"tensor", "scans"}));
  EXPECT_EQ(p.min_rows_per_class, 5u);
  EXPECT_EQ(p.demote_after_cpu_windows, 7u);
  EXPECT_EQ(p.retrain_every_rows, 50u);
  EXPECT_DOUBLE_EQ(p.operator_weight, 4);
  EXPECT_EQ(p.table_max_rows, 5000u);
  EXPECT_EQ(p.max_training_rows_per_cgroup, 12u);
  EXPECT_EQ(p.min_retrain_interval, absl::Minutes(5));
}

struct BadPolicyCase {
  const char* description;
  const char* yaml;
  const char* error_names;  // key path the error must name
  const char* error_says;   // and a word of the reason or fix
};

TEST(PolicyConfig, OutOfRangeValuesAreOneClearError) {
  const BadPolicyCase cases[] = {
      {"negative rate", "policy:\n  thresholds:\n    gpu_ioctl_rate: -1\n", "policy.thresholds.gpu_ioctl_rate",
       "below 0"},
      {"zero rate", "policy:\n  thresholds:\n    gpu_ioctl_rate: 0\n", "policy.thresholds.gpu_ioctl_rate",
       "above 0"},
      {"ratio above 1", "policy:\n  thresholds:\n    ext_ratio: 1.5\n", "policy.thresholds.ext_ratio",
       "above 1"},
      {"negative ratio", "policy:\n  thresholds:\n    ext_ratio: -0.1\n", "policy.thresholds.ext_ratio",
       "below 0"},
      {"NaN ratio", "policy:\n  thresholds:\n    ext_ratio: .nan\n", "policy.thresholds.ext_ratio", "number"},
      {"text rate", "policy:\n  thresholds:\n    gpu_ioctl_rate: fast\n", "policy.thresholds.gpu_ioctl_rate",
       "not a number"},
      {"bad duration", "policy:\n  window: soon\n", "policy.window", "duration"},
      {"short window", "policy:\n  window: 100ms\n", "policy.window", "outside"},
      {"unknown class", "policy:\n  gpu_classes: [tensors]\n", "policy.gpu_classes[0]", "not an extension class"},
      {"unknown key", "policy:\n  windw: 5s\n", "policy.windw", "not a known key"},
      {"unknown threshold", "policy:\n  thresholds:\n    ratio: 0.5\n", "policy.thresholds.ratio",
       "not a known key"},
      {"zero demotion", "policy:\n  demote_after_cpu_windows: 0\n", "policy.demote_after_cpu_windows", "1..65535"},
      {"operator weight below 1", "policy:\n  operator_weight: 0.5\n", "policy.operator_weight", "below 1"},
      {"not a mapping", "policy: [1, 2]\n", "policy", "not a mapping"},
  };
  for (const BadPolicyCase& c : cases) {
    SCOPED_TRACE(c.description);
    absl::StatusOr<Config> config = ParseConfig(c.yaml, "/etc/gputier.yaml");
    ASSERT_FALSE(config.ok());
    const std::string message(config.status().message());
    EXPECT_TRUE(absl::StrContains(message, "/etc/gputier.yaml")) << message;
    EXPECT_TRUE(absl::StrContains(message, c.error_names)) << message;
    EXPECT_TRUE(absl::StrContains(message, c.error_says)) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
  }
}

}  // namespace
}  // namespace gputier
