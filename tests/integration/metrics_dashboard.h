// What tests read of deploy/grafana/gputier-dashboard.json: its PromQL
// expressions and the metric names they read; and the sample names of a
// Prometheus text exposition, to compare them with.
#ifndef GPUTIER_TESTS_INTEGRATION_METRICS_DASHBOARD_H_
#define GPUTIER_TESTS_INTEGRATION_METRICS_DASHBOARD_H_

#include <fstream>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace gputier::testing {

// The dashboard as committed; null if it cannot be read.
inline nlohmann::json ReadDashboard() {
  std::ifstream in(absl::StrCat(GPUTIER_SOURCE_DIR, "/deploy/grafana/gputier-dashboard.json"));
  if (!in) return nullptr;
  return nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
}

// Every PromQL expression of the dashboard: panel targets, template queries.
inline std::vector<std::string> DashboardExpressions(const nlohmann::json& dashboard) {
  std::vector<std::string> out;
  for (const nlohmann::json& panel : dashboard.value("panels", nlohmann::json::array())) {
    for (const nlohmann::json& target : panel.value("targets", nlohmann::json::array())) {
      out.push_back(target.value("expr", ""));
    }
  }
  for (const nlohmann::json& var : dashboard["templating"].value("list", nlohmann::json::array())) {
    if (var.value("type", "") == "query") out.push_back(var.value("query", ""));
  }
  return out;
}

// The metric names an expression reads: identifiers starting gputier_.
inline std::set<std::string> MetricNames(const std::string& expression) {
  std::set<std::string> out;
  static const std::regex kName("gputier_[a-zA-Z0-9_:]*");
  for (auto it = std::sregex_iterator(expression.begin(), expression.end(), kName); it != std::sregex_iterator();
       ++it) {
    out.insert(it->str());
  }
  return out;
}

// The names of the samples of a text exposition.
inline std::set<std::string> SampleNames(const std::string& exposition) {
  std::set<std::string> out;
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    out.insert(std::string(line.substr(0, line.find_first_of("{ "))));
  }
  return out;
}

}  // namespace gputier::testing

#endif  // GPUTIER_TESTS_INTEGRATION_METRICS_DASHBOARD_H_
