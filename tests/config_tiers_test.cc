// The tiering part of the config: tiers:, tiered_paths:, gpu_data_paths:,
// runtime_roots: and the deprecated runc_roots: — defaults, every key, and one clear error per bad value.
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "loader/config/config.h"
#include "loader/config/config_tiers.h"

namespace gputier {
namespace {

absl::Status ErrorOf(const std::string& yaml) { return ParseConfig(yaml, "t.yaml").status(); }

TEST(TierConfig, DefaultIsTheLocalDiskAndNothingTiered) {
  const TierConfig t = DefaultConfig().tiers;
  EXPECT_EQ(t.fast_root, "/var/lib/gputier/fast");
  EXPECT_EQ(t.slow_root, "/var/lib/gputier/slow");
  EXPECT_TRUE(t.embedded_roots);
  EXPECT_TRUE(t.tiered_paths.empty());
  EXPECT_TRUE(t.gpu_data_paths.empty());
  EXPECT_EQ(t.partition_size, uint64_t{2} << 30);
  EXPECT_TRUE(t.runtime_roots.empty());  // every runtime keeps its defaults
  EXPECT_EQ(t.demote_wait, absl::Seconds(60));
}

TEST(TierConfig, EveryKeyIsRead) {
  absl::StatusOr<Config> c = ParseConfig(
      "tiers:\n  fast: /mnt/nvme/gt/\n  slow: /mnt/sata/gt\n  partition_size: 512MiB\n"
      "  high_watermark: 0.8\n  low_watermark: 0.6\n  demote_wait: 90s\n"
      "tiered_paths: [/data, /var//cache/./x]\n"
      "gpu_data_paths: [/ckpt]\n"
      "runtime_roots:\n  runc: [/run/runc, /tmp/r/]\n  containerd: [/tmp/c]\n",
      "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  const TierConfig& t = c->tiers;
  EXPECT_EQ(t.fast_root, "/mnt/nvme/gt");
  EXPECT_EQ(t.slow_root, "/mnt/sata/gt");
  EXPECT_FALSE(t.embedded_roots);
  EXPECT_EQ(t.partition_size, uint64_t{512} << 20);
  EXPECT_DOUBLE_EQ(t.high_watermark, 0.8);
  EXPECT_DOUBLE_EQ(t.low_watermark, 0.6);
  EXPECT_EQ(t.demote_wait, absl::Seconds(90));
  EXPECT_EQ(t.tiered_paths, (std::vector<std::string>{"/data", "/var/cache/x"}));
  EXPECT_EQ(t.gpu_data_paths, std::vector<std::string>{"/ckpt"});
  EXPECT_EQ(t.runtime_roots, (std::map<std::string, std::vector<std::string>>{
                                 {"runc", {"/run/runc", "/tmp/r"}}, {"containerd", {"/tmp/c"}}}));
  EXPECT_TRUE(c->notes.empty());
}

TEST(TierConfig, DeprecatedRuncRootsStillWorkAndSayWhatToWriteInstead) {
  absl::StatusOr<Config> c = ParseConfig("runc_roots: [/tmp/r]\n", "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->tiers.runtime_roots.at("runc"), std::vector<std::string>{"/tmp/r"});
  ASSERT_EQ(c->notes.size(), 1u);
  EXPECT_EQ(c->notes[0], "t.yaml: runc_roots is deprecated; write runtime_roots: {runc: [/tmp/r]} instead");
}

TEST(TierConfig, BadRuntimeRootsAreRefusedWithTheFix) {
  struct Case {
    const char* yaml;
    const char* said;
  };
  const Case cases[] = {
      {"runtime_roots: [/run/runc]\n", "not a mapping"},
      {"runtime_roots:\n  rkt: [/run/rkt]\n", "name one of runc, podman, containerd, cri-o, docker"},
      {"runtime_roots:\n  runc: /run/runc\n", "not a list"},
      {"runtime_roots:\n  runc: [run/runc]\n", "runtime_roots.runc[0]"},
      {"runtime_roots:\n  podman: [/run/crun, /run/crun]\n", "listed twice"},
      {"runc_roots: [/a]\nruntime_roots:\n  runc: [/b]\n", "remove the deprecated runc_roots"},
      {"runtime_roots:\n  runc: [/b]\nrunc_roots: [/a]\n", "remove the deprecated runc_roots"},
  };
  for (const Case& c : cases) {
    absl::Status s = ErrorOf(c.yaml);
    EXPECT_TRUE(absl::StrContains(s.message(), c.said)) << c.yaml << " -> " << s;
  }
}

TEST(TierConfig, OnlyOneTierIsRefusedNamingBoth) {
  absl::Status s = ErrorOf("tiers:\n  fast: /mnt/nvme\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "give both tiers.fast and tiers.slow")) << s;
}

TEST(TierConfig, OverlappingRootsAreRefused) {
  absl::Status s = ErrorOf("tiers:\n  fast: /mnt/t\n  slow: /mnt/t/slow\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "overlap")) << s;
}

TEST(TierConfig, RootsThatOverlayOptionsCannotCarryAreRefused) {
  for (const char* bad : {"relative/dir", "/mnt/a,b", "/mnt/a:b", "'/mnt/a b'", "/"}) {
    absl::Status s = ErrorOf(absl::StrCat("tiers:\n  fast: ", bad, "\n  slow: /mnt/s\n"));
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_TRUE(absl::StrContains(s.message(), "tiers.fast")) << s;
  }
}

TEST(TierConfig, DemoteWaitIsADurationWithinBounds) {
  EXPECT_EQ(ParseConfig("tiers:\n  demote_wait: 2m\n", "t.yaml")->tiers.demote_wait, absl::Minutes(2));
  EXPECT_TRUE(absl::StrContains(ErrorOf("tiers:\n  demote_wait: soon\n").message(), "not a duration"));
  EXPECT_TRUE(absl::StrContains(ErrorOf("tiers:\n  demote_wait: 1ms\n").message(), "tiers.demote_wait"));
  EXPECT_TRUE(absl::StrContains(ErrorOf("tiers:\n  demote_wait: 48h\n").message(), "outside"));
}

TEST(TierConfig, ExitedRetentionIsADurationWithZeroForAtOnce) {
  EXPECT_EQ(ParseConfig("", "t.yaml")->tiers.exited_retention, absl::Hours(1));
  EXPECT_EQ(ParseConfig("tiers:\n  exited_retention: 90m\n", "t.yaml")->tiers.exited_retention,
            absl::Minutes(90));
  EXPECT_EQ(ParseConfig("tiers:\n  exited_retention: 0s\n", "t.yaml")->tiers.exited_retention,
            absl::ZeroDuration());
  EXPECT_TRUE(absl::StrContains(ErrorOf("tiers:\n  exited_retention: later\n").message(),
                                "tiers.exited_retention"));
  EXPECT_TRUE(absl::StrContains(ErrorOf("tiers:\n  exited_retention: -1s\n").message(), "outside"));
  EXPECT_TRUE(absl::StrContains(ErrorOf("tiers:\n  exited_retention: 1000h\n").message(), "outside"));
}

TEST(TierConfig, SlowQuotaIsASizeWithZeroForNone) {
  EXPECT_EQ(ParseConfig("", "t.yaml")->tiers.slow_quota, 0u);
  EXPECT_EQ(ParseConfig("tiers:\n  slow_quota: 50GiB\n", "t.yaml")->tiers.slow_quota, uint64_t{50} << 30);
  EXPECT_EQ(ParseConfig("tiers:\n  slow_quota: 0\n", "t.yaml")->tiers.slow_quota, 0u);
  absl::Status s = ErrorOf("tiers:\n  slow_quota: lots\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "tiers.slow_quota")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "not a size")) << s;
  EXPECT_FALSE(ErrorOf("tiers:\n  slow_quota: [1]\n").ok());
}

TEST(TierConfig, WatermarksMustBeOrderedFractions) {
  EXPECT_TRUE(absl::StrContains(ErrorOf("tiers:\n  high_watermark: 1.5\n").message(), "not in (0, 1]"));
  EXPECT_TRUE(absl::StrContains(
      ErrorOf("tiers:\n  high_watermark: 0.5\n  low_watermark: 0.7\n").message(), "low_watermark"));
}

TEST(TierConfig, PartitionSizeHasAFloorAndUnits) {
  EXPECT_TRUE(absl::StrContains(ErrorOf("tiers:\n  partition_size: 1MiB\n").message(), "below 16MiB"));
  EXPECT_TRUE(absl::StrContains(ErrorOf("tiers:\n  partition_size: lots\n").message(), "not a size"));
  EXPECT_EQ(*ParseByteSize("4GiB"), uint64_t{4} << 30);
  EXPECT_EQ(*ParseByteSize("1.5g"), uint64_t{3} << 29);
  EXPECT_EQ(*ParseByteSize("1000"), 1000u);
  EXPECT_FALSE(ParseByteSize("3 parsecs").ok());
}

TEST(TierConfig, BadContainerPathsAreRefusedWithTheirIndex) {
  absl::Status s = ErrorOf("tiered_paths: [/data, relative]\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "tiered_paths[1]")) << s;
  s = ErrorOf("tiered_paths: [/data/../etc]\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "..")) << s;
  s = ErrorOf("tiered_paths: [/]\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "root")) << s;
  s = ErrorOf("tiered_paths: /data\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "not a list")) << s;
}

TEST(TierConfig, PseudoFilesystemsAndRuntimeManagedPathsAreRefusedSayingWhy) {
  struct Case {
    const char* yaml;
    const char* names;  // the key and index the error must name
    const char* why;    // and the reason
  };
  const Case cases[] = {
      {"tiered_paths: [/proc]\n", "tiered_paths[0]", "is the kernel's procfs"},
      {"tiered_paths: [/data, /proc/self]\n", "tiered_paths[1]", "is under /proc"},
      {"tiered_paths: [/sys/fs]\n", "tiered_paths[0]", "is under /sys"},
      {"gpu_data_paths: [/dev]\n", "gpu_data_paths[0]", "device nodes"},
      {"gpu_data_paths: [/run/secrets]\n", "gpu_data_paths[0]", "is under /run"},
      {"tiered_paths: [/etc/hosts]\n", "tiered_paths[0]", "bind-mounts"},
      {"tiered_paths: [/etc/resolv.conf]\n", "tiered_paths[0]", "bind-mounts"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.yaml);
    absl::Status s = ErrorOf(c.yaml);
    ASSERT_FALSE(s.ok());
    EXPECT_TRUE(absl::StrContains(s.message(), c.names)) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), c.why)) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "cannot be tiered")) << s;
  }
  // Look-alikes that are ordinary directories stay allowed.
  EXPECT_TRUE(ParseConfig("tiered_paths: [/process, /system, /devices, /runs, /etc/hosts.d]\n", "t").ok());
}

TEST(TierConfig, NestedOrRepeatedTieredPathsAreRefused) {
  absl::Status s = ErrorOf("tiered_paths: [/data]\ngpu_data_paths: [/data/ckpt]\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "overlap")) << s;
  s = ErrorOf("tiered_paths: [/data, /data/]\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "listed twice")) << s;
  EXPECT_TRUE(ParseConfig("tiered_paths: [/data]\ngpu_data_paths: [/data2]\n", "t").ok());
}

}  // namespace
}  // namespace gputier

namespace gputier {
namespace {

TEST(TierConfig, TieredCgroupsLimitTieringToContainersBelowThem) {
  absl::StatusOr<Config> c = ParseConfig("tiered_cgroups: [/gputier-demo-1/, /kubepods]\n", "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->tiers.tiered_cgroups, (std::vector<std::string>{"/gputier-demo-1", "/kubepods"}));
  const std::pair<const char*, bool> cases[] = {
      {"/gputier-demo-1/libpod-abc", true}, {"/gputier-demo-1", true}, {"/kubepods/burstable/pod1/x", true},
      {"/gputier-demo-10/libpod-abc", false}, {"/libpod_parent/libpod-abc", false}, {"/", false}};
  for (const auto& [path, tiered] : cases) EXPECT_EQ(InTieredCgroups(c->tiers, path), tiered) << path;
  EXPECT_TRUE(InTieredCgroups(DefaultConfig().tiers, "/anything"));  // no list: every container
}

TEST(TierConfig, TieredCgroupsMustBeAbsolutePaths) {
  absl::Status s = ParseConfig("tiered_cgroups: [kubepods]\n", "t.yaml").status();
  EXPECT_NE(s.message().find("tiered_cgroups[0]"), std::string::npos) << s;
  EXPECT_NE(s.message().find("not an absolute path"), std::string::npos) << s;
}

}  // namespace
}  // namespace gputier
