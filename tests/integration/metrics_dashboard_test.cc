// The dashboard test's name extraction (the dashboard itself is checked
// against a live gputierd with a tiered container in tier_agent_test.cc,
// TierAgentTest.GrafanaDashboardReadsOnlySeriesGputierdServes).
#include "gtest/gtest.h"
#include "tests/integration/metrics_dashboard.h"

namespace gputier::testing {
namespace {

TEST(GrafanaDashboard, MetricNamesAreEveryGputierIdentifierOfAnExpression) {
  EXPECT_EQ(MetricNames("sum by (le) (rate(gputier_a_bucket{x=\"gputier-y\"}[5m])) / gputier_b"),
            (std::set<std::string>{"gputier_a_bucket", "gputier_b"}));
  EXPECT_TRUE(MetricNames("time() - up").empty());
}

TEST(GrafanaDashboard, EveryExpressionReadsAtLeastOneGputierSeries) {
  const nlohmann::json dashboard = ReadDashboard();
  ASSERT_TRUE(dashboard.is_object()) << "deploy/grafana/gputier-dashboard.json is not JSON";
  const std::vector<std::string> expressions = DashboardExpressions(dashboard);
  ASSERT_GE(expressions.size(), 10u);
  for (const std::string& e : expressions) EXPECT_FALSE(MetricNames(e).empty()) << e;
}

}  // namespace
}  // namespace gputier::testing
