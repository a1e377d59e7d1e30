// The metrics endpoint's health and readiness states and the main loop's
// feed (loader/metrics/metrics_server.h), without root: a loopback port, no BPF.
#include "loader/metrics/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/free_port.h"

namespace gputier {
namespace {


std::unique_ptr<MetricsServer> StartServer(absl::Duration stale_after) {
  MetricsServer::Options options;
  options.address = absl::StrCat("127.0.0.1:", ::gputier::testing::FreeLoopbackPort());
  options.listening_ports = options.address;
  options.stale_after = stale_after;
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

TEST(MetricsServer, HealthAndReadinessFollowTheMainLoop) {
  std::unique_ptr<MetricsServer> server = StartServer(absl::Milliseconds(300));
  ASSERT_NE(server, nullptr);
  // Loading the programs: alive, not ready.
  EXPECT_EQ(server->Healthz().first, 200);
  EXPECT_EQ(server->Readyz().first, 503);
  // Attached, but no tick published yet: still not ready.
  server->SetReady();
  EXPECT_EQ(server->Readyz().first, 503);
  server->Publish(MetricsSnapshot{});
  EXPECT_EQ(server->Healthz().first, 200);
  EXPECT_EQ(server->Readyz().first, 200);
  // The main loop stops publishing: /healthz fails, saying since when.
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  auto [code, body] = server->Healthz();
  EXPECT_EQ(code, 503);
  EXPECT_TRUE(absl::StrContains(body, "main loop stalled")) << body;
  server->Publish(MetricsSnapshot{});
  EXPECT_EQ(server->Healthz().first, 200);
}

TEST(MetricsServer, APortInUseIsAnErrorNamingTheFlag) {
  MetricsServer::Options options;
  options.address = absl::StrCat("127.0.0.1:", ::gputier::testing::FreeLoopbackPort());
  options.listening_ports = options.address;
  absl::StatusOr<std::unique_ptr<MetricsServer>> first = MetricsServer::Start(options);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<MetricsServer>> second = MetricsServer::Start(options);
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::StartsWith(second.status().message(),
                               absl::StrCat("--metrics-address=", options.address, ": cannot listen there")))
      << second.status();
  EXPECT_TRUE(absl::StrContains(second.status().message(), "--metrics-address=off")) << second.status();
}

TEST(MetricsFeed, EachNewPromotionIsObservedOnceWithItsDuration) {
  MetricsFeed feed("tracepoint", "off");
  ClassNames names;
  auto tiering = [](uint64_t promotions, double ms) {
    return nlohmann::json{{"tiers", {{"fast_used", 10}, {"fast_total", 100}}},
                          {"containers",
                           {{{"container_id", "c1"}, {"tier", "fast"}, {"promotions", promotions},
                             {"last_promotion_ms", ms}}}}};
  };
  // No maps here: reading the counters fails and is counted as an error.
  MetricsSnapshot s = feed.Take(nlohmann::json::array(), tiering(1, 120), -1, -1, names);
  const std::vector<double> bounds = PromotionSecondsBuckets();
  auto count = [](const HistogramSample& h) {
    double n = 0;
    for (double c : h.counts) n += c;
    return n;
  };
  EXPECT_EQ(count(s.promotion_seconds), 1);
  EXPECT_DOUBLE_EQ(s.promotion_seconds.sum, 0.12);
  EXPECT_TRUE(s.have_fast_usage);
  EXPECT_EQ(s.fast_total_bytes, 100u);
  EXPECT_EQ(s.errors["counter_read"], 1u);
  s = feed.Take(nlohmann::json::array(), tiering(1, 120), -1, -1, names);  // nothing new
  EXPECT_EQ(count(s.promotion_seconds), 1);
  s = feed.Take(nlohmann::json::array(), tiering(3, 2000), -1, -1, names);  // two more since
  EXPECT_EQ(count(s.promotion_seconds), 3);
  EXPECT_DOUBLE_EQ(s.promotion_seconds.sum, 0.12 + 2 * 2.0);
  feed.ObserveTick(absl::Milliseconds(3));
  feed.CountError("tick");
  s = feed.Take(nlohmann::json::array(), tiering(3, 2000), -1, -1, names);
  EXPECT_EQ(count(s.tick_seconds), 1);
  EXPECT_EQ(s.errors["tick"], 1u);
  EXPECT_EQ(s.mode, "tracepoint");
}

TEST(MetricsFeed, TheClassifiersContainerViewGivesEachContainersVerdictAndConfidence) {
  ContainerVerdictView gpu;
  gpu.cgroup_id = 7;
  gpu.cgroup_path = "/kubepods/pod1/abc";
  gpu.container_id = "abc";
  gpu.verdict = Verdict::kGpu;
  gpu.confidence_permille = 800;
  gt_cgroup_stats stats = {};
  stats.gpu_ioctls = 5;
  std::vector<ContainerSample> samples =
      ContainerSamples(VerdictRowsOf({gpu}), nlohmann::json::object(), {{7, stats}}, ClassNames{});
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].container_id, "abc");
  EXPECT_EQ(samples[0].verdict, "gpu");
  EXPECT_DOUBLE_EQ(samples[0].confidence, 0.8);
  EXPECT_EQ(samples[0].gpu_ioctls, 5u);
}

}  // namespace
}  // namespace gputier
