// gputierd's Prometheus endpoint against the real kernel: /healthz, /readyz
// and /metrics while a GPU-like and a CPU-like workload run in fresh cgroups,
// a real Prometheus server scraping it (PromQL through /api/v1/query), and
// promtool's check of a live scrape.
//
// Containers: gputierd names a cgroup "/<id>" a runc container when a runc
// state directory holds "<id>" (loader/cgroup/cgroup_path.cc). Each test gives the
// agent its own runc root (runc_roots:) with one empty directory per test
// cgroup, so its cgroups are containers without starting runc.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/free_port.h"
#include "tests/http_get.h"
#include "tests/integration/agent_harness.h"

namespace gputier::testing {
namespace {

using std::chrono::milliseconds;

// One sample of the text format: name, labels, value.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

std::vector<Sample> ParseExposition(const std::string& text) {
  std::vector<Sample> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    Sample s;
    size_t i = line.find_first_of("{ ");
    s.name = std::string(line.substr(0, i));
    if (i != absl::string_view::npos && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find('=', i);
        std::string name(line.substr(i, eq - i));
        std::string value;
        size_t j = eq + 2;  // past ="
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            value += line[j] == 'n' ? '\n' : line[j];
          } else {
            value += line[j];
          }
        }
        s.labels[name] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
    }
    s.value = atof(std::string(line.substr(line.rfind(' ') + 1)).c_str());
    out.push_back(std::move(s));
  }
  return out;
}

// The value of the sample `name` whose labels include `want`; -1 if none.
double ValueOf(const std::vector<Sample>& samples, const std::string& name,
               const std::map<std::string, std::string>& want) {
  for (const Sample& s : samples) {
    if (s.name != name) continue;
    bool all = true;
    for (const auto& [k, v] : want) {
      auto it = s.labels.find(k);
      all &= it != s.labels.end() && it->second == v;
    }
    if (all) return s.value;
  }
  return -1;
}

// The container id a test cgroup has: its name under the cgroup2 root.
std::string ContainerIdOf(const TestCgroup& cg) { return cg.relative().substr(1); }

constexpr int kGpuIoctls = 50;
constexpr int kTensorOpens = 3 * 20;
constexpr int kCpuOpens = 3 * 15 + 1;  // and cpu.out, opened once to write

class MetricsEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs and makes cgroups";
    runc_root_ = agent_.work_dir() + "/runc-root";
    mkdir(runc_root_.c_str(), 0700);
    mkdir((runc_root_ + "/" + ContainerIdOf(gpu_cg_)).c_str(), 0700);
    mkdir((runc_root_ + "/" + ContainerIdOf(cpu_cg_)).c_str(), 0700);
    port_ = ::gputier::testing::FreeLoopbackPort();
    const std::string yaml =
        absl::StrCat(gpu_.ConfigYaml(), "runc_roots: [", runc_root_, "]\npolicy:\n  tick: 200ms\n");
    absl::StatusOr<std::string> mode =
        agent_.Start({RequestedMode(), yaml, {absl::StrCat("--metrics-address=127.0.0.1:", port_)}});
    ASSERT_TRUE(mode.ok()) << mode.status();
  }

  std::string Data(const std::string& name) { return agent_.work_dir() + "/" + name; }

  // A GPU-like workload (GPU ioctls, .safetensors opens) and a CPU-like one
  // (sources and objects, writes), each until the agent says so.
  void RunWorkloads() {
    std::vector<std::string> gpu_files = {Data("model.safetensors"), Data("model-2.safetensors"),
                                          Data("adapter.safetensors")};
    std::vector<std::string> cpu_files = {Data("main.c"), Data("main.o"), Data("Makefile")};
    for (const std::string& f : gpu_files) WriteFile(f, 8);
    for (const std::string& f : cpu_files) WriteFile(f, 8);
    ASSERT_EQ(RunRawWorkload(gpu_cg_, {gpu_files, 20, gpu_.path(), kGpuIoctls, "", 0, 0}), 0);
    ASSERT_EQ(RunRawWorkload(cpu_cg_, {cpu_files, 15, "", 0, Data("cpu.out"), 16, 4096}), 0);
    ASSERT_EQ(agent_.WaitForVerdict(gpu_cg_.id(), "gpu", milliseconds(15000)).value("verdict", ""), "gpu")
        << agent_.LogTail();
    ASSERT_EQ(agent_.WaitForVerdict(cpu_cg_.id(), "cpu", milliseconds(15000)).value("verdict", ""), "cpu")
        << agent_.LogTail();
  }

  // /metrics once it shows `container`'s verdict as `verdict` (a tick after
  // the verdict publishes it).
  std::vector<Sample> ScrapeUntil(const std::string& container, const std::string& verdict) {
    std::vector<Sample> samples;
    for (int i = 0; i < 100; ++i) {
      samples = ParseExposition(HttpGet(port_, "/metrics").body);
      if (ValueOf(samples, "gputier_container_verdict", {{"container", container}, {"verdict", verdict}}) == 1) {
        break;
      }
      std::this_thread::sleep_for(milliseconds(100));
    }
    return samples;
  }

  GpuTestDevice gpu_;
  AgentProcess agent_;
  TestCgroup gpu_cg_{"metrics-gpu"};
  TestCgroup cpu_cg_{"metrics-cpu"};
  std::string runc_root_;
  int port_ = 0;
};

TEST_F(MetricsEndpointTest, ServesHealthReadinessAndEachContainersVerdictAndCounts) {
  EXPECT_EQ(HttpGet(port_, "/healthz").code, 200);
  int ready = 0;
  for (int i = 0; i < 50 && ready != 200; ++i) {
    ready = HttpGet(port_, "/readyz").code;
    if (ready != 200) std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_EQ(ready, 200) << "ready after the first classification tick";
  RunWorkloads();
  const std::string gpu_id = ContainerIdOf(gpu_cg_), cpu_id = ContainerIdOf(cpu_cg_);
  std::vector<Sample> m = ScrapeUntil(gpu_id, "gpu");
  m = ScrapeUntil(cpu_id, "cpu");
  const HttpReply raw = HttpGet(port_, "/metrics");
  EXPECT_EQ(raw.code, 200);

  EXPECT_EQ(ValueOf(m, "gputier_container_verdict", {{"container", gpu_id}, {"verdict", "gpu"}}), 1);
  EXPECT_EQ(ValueOf(m, "gputier_container_verdict", {{"container", gpu_id}, {"verdict", "cpu"}}), 0);
  EXPECT_EQ(ValueOf(m, "gputier_container_verdict", {{"container", cpu_id}, {"verdict", "cpu"}}), 1);
  EXPECT_GT(ValueOf(m, "gputier_container_verdict_confidence", {{"container", gpu_id}}), 0);
  EXPECT_EQ(ValueOf(m, "gputier_container_gpu_ioctls_total", {{"container", gpu_id}}), kGpuIoctls);
  EXPECT_EQ(ValueOf(m, "gputier_container_gpu_opens_total", {{"container", gpu_id}}), 1);
  EXPECT_EQ(ValueOf(m, "gputier_container_opens_total", {{"container", gpu_id}, {"class", "tensor"}}),
            kTensorOpens);
  EXPECT_EQ(ValueOf(m, "gputier_container_gpu_ioctls_total", {{"container", cpu_id}}), 0);
  EXPECT_EQ(ValueOf(m, "gputier_container_written_bytes_total", {{"container", cpu_id}}), 16 * 4096);
  EXPECT_EQ(ValueOf(m, "gputier_container_opens_total", {{"container", cpu_id}, {"class", "tensor"}}), 0);
  EXPECT_EQ(ValueOf(m, "gputier_container_verdict", {{"container", gpu_id}, {"pod", ""}, {"namespace", ""}, {"verdict", "gpu"}}),
            1);
  // The agent.
  EXPECT_EQ(ValueOf(m, "gputier_agent_info", {{"mode", ExpectedMode()}}), 1);
  EXPECT_GE(ValueOf(m, "gputier_bpf_map_fill_ratio", {{"map", "gt_cg_stats"}}), 0);
  EXPECT_GE(ValueOf(m, "gputier_bpf_map_entries", {{"map", "gt_cg_stats"}}), 2);
  EXPECT_GE(ValueOf(m, "gputier_bpf_program_runs_total", {}), 0) << "no BPF program statistics";
  EXPECT_GE(ValueOf(m, "gputier_classification_tick_seconds_count", {}), 1);
  EXPECT_GE(ValueOf(m, "gputier_bpf_drops_total", {{"reason", "cgroup_map_full"}}), 0);
  EXPECT_EQ(ValueOf(m, "gputier_containers", {{"series", "other"}}), 0);
  // No cgroup path in any label.
  for (const Sample& s : m) {
    for (const auto& [k, v] : s.labels) EXPECT_FALSE(absl::StrContains(v, '/')) << s.name << " " << k << "=" << v;
  }
  EXPECT_EQ(HttpGet(port_, "/nothing-here").code, 404);
}

TEST_F(MetricsEndpointTest, ARealPrometheusServerScrapesVerdictsAndCounts) {
  if (access("/usr/bin/prometheus", X_OK) != 0 || access("/usr/bin/promtool", X_OK) != 0) {
    GTEST_SKIP() << "prometheus/promtool not installed (Debian package prometheus; deploy/bootstrap "
                    "test installs it)";
  }
  RunWorkloads();
  const std::string gpu_id = ContainerIdOf(gpu_cg_), cpu_id = ContainerIdOf(cpu_cg_);
  ScrapeUntil(cpu_id, "cpu");

  // promtool lints a live scrape.
  const std::string scrape = agent_.work_dir() + "/scrape.txt";
  std::ofstream(scrape) << HttpGet(port_, "/metrics").body;
  FILE* lint = popen(absl::StrCat("promtool check metrics < ", scrape, " 2>&1").c_str(), "r");
  std::string lint_out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), lint)) > 0) lint_out.append(buf, n);
  EXPECT_EQ(pclose(lint), 0) << "promtool check metrics:\n" << lint_out;

  // A Prometheus of its own: config, data directory and port.
  const std::string dir = agent_.work_dir() + "/prometheus";
  mkdir(dir.c_str(), 0700);
  const int prom_port = ::gputier::testing::FreeLoopbackPort();
  std::ofstream(dir + "/prometheus.yml") << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                                            "scrape_configs:\n  - job_name: gputier\n    static_configs:\n"
                                            "      - targets: ['127.0.0.1:"
                                         << port_ << "']\n";
  pid_t prom = fork();
  if (prom == 0) {
    int log = open((dir + "/log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(log, 1);
    dup2(log, 2);
    const std::string cfg = "--config.file=" + dir + "/prometheus.yml";
    const std::string data = "--storage.tsdb.path=" + dir + "/data";
    const std::string listen = absl::StrCat("--web.listen-address=127.0.0.1:", prom_port);
    execl("/usr/bin/prometheus", "prometheus", cfg.c_str(), data.c_str(), listen.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_GT(prom, 0);
  auto query = [&](const std::string& promql) -> double {
    std::string encoded;
    for (unsigned char c : promql) {
      encoded += isalnum(c) || c == '_' ? std::string(1, c) : absl::StrFormat("%%%02X", c);
    }
    HttpReply r = HttpGet(prom_port, "/api/v1/query?query=" + encoded);
    if (r.code != 200) return -1;
    nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded() || j.value("status", "") != "success") return -1;
    const nlohmann::json& result = j["data"]["result"];
    if (!result.is_array() || result.size() != 1) return -1;
    return std::stod(result[0]["value"][1].get<std::string>());
  };
  const std::string gpu_sel = absl::StrCat("container=\"", gpu_id, "\"");
  const std::string cpu_sel = absl::StrCat("container=\"", cpu_id, "\"");
  double up = -1;
  for (int i = 0; i < 300 && up != 1; ++i) {  // Prometheus starts, then scrapes every second
    std::this_thread::sleep_for(milliseconds(100));
    up = query(absl::StrCat("gputier_container_verdict{", gpu_sel, ",verdict=\"gpu\"}"));
  }
  EXPECT_EQ(up, 1) << SlurpFile(dir + "/log");
  EXPECT_EQ(query("up{job=\"gputier\"}"), 1);
  EXPECT_EQ(query(absl::StrCat("gputier_container_verdict{", cpu_sel, ",verdict=\"cpu\"}")), 1);
  EXPECT_EQ(query(absl::StrCat("gputier_container_verdict{", cpu_sel, ",verdict=\"gpu\"}")), 0);
  EXPECT_EQ(query(absl::StrCat("gputier_container_gpu_ioctls_total{", gpu_sel, "}")), kGpuIoctls);
  EXPECT_EQ(query(absl::StrCat("gputier_container_opens_total{", gpu_sel, ",class=\"tensor\"}")), kTensorOpens);
  EXPECT_EQ(query(absl::StrCat("sum(gputier_container_opens_total{", cpu_sel, "})")), kCpuOpens);
  EXPECT_EQ(query(absl::StrCat("gputier_container_written_bytes_total{", cpu_sel, "}")), 16 * 4096);
  EXPECT_EQ(query(absl::StrCat("count(gputier_container_verdict{verdict=\"gpu\",", gpu_sel, "} == 1)")), 1);
  kill(prom, SIGTERM);
  int status = 0;
  waitpid(prom, &status, 0);
  (void)system(absl::StrCat("rm -rf --one-file-system ", dir).c_str());
  struct stat st;
  EXPECT_NE(stat(dir.c_str(), &st), 0) << "the Prometheus directory was not removed";
}

TEST(MetricsAddressStartup, ABadAddressOrAPortInUseIsOneErrorNamingTheFlag) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  {
    AgentProcess agent;
    absl::StatusOr<std::string> mode = agent.Start({RequestedMode(), "", {"--metrics-address=localhost:x"}});
    ASSERT_FALSE(mode.ok());
    EXPECT_TRUE(absl::StrContains(mode.status().message(), "--metrics-address=localhost:x: ")) << mode.status();
  }
  {
    // Someone else holds the port.
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(listen(fd, 1), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    const std::string flag = absl::StrCat("--metrics-address=127.0.0.1:", ntohs(addr.sin_port));
    AgentProcess agent;
    absl::StatusOr<std::string> mode = agent.Start({RequestedMode(), "", {flag}});
    close(fd);
    ASSERT_FALSE(mode.ok());
    EXPECT_TRUE(absl::StrContains(mode.status().message(), flag + ": cannot listen there")) << mode.status();
  }
}

}  // namespace
}  // namespace gputier::testing
