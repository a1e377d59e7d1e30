// deploy/kubernetes/ against gputierd and deploy/container/Containerfile: the
// manifests must not only parse, they must fit together and fit the agent.
// What is and is not checked: docs/OPERATING.md ("What the tests check").
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "loader/config/config.h"
#include "tests/deploy/deploy_files.h"

namespace gputier::testing {
namespace {

constexpr char kNamespace[] = "gputier-system";

std::string Dir() { return absl::StrCat(GPUTIER_SOURCE_DIR, "/deploy/kubernetes/"); }

// Every object of every file kustomization.yaml lists, by kind.
std::map<std::string, std::vector<YAML::Node>> LoadObjects() {
  std::map<std::string, std::vector<YAML::Node>> out;
  YAML::Node kustomization = YAML::LoadFile(Dir() + "kustomization.yaml");
  for (const YAML::Node& file : kustomization["resources"]) {
    for (const YAML::Node& doc : YAML::LoadAllFromFile(Dir() + file.as<std::string>())) {
      out[doc["kind"].as<std::string>()].push_back(doc);
    }
  }
  return out;
}

class KubernetesManifests : public ::testing::Test {
 protected:
  void SetUp() override {
    objects_ = LoadObjects();
    ASSERT_EQ(objects_["DaemonSet"].size(), 1u);
    ds_ = objects_["DaemonSet"][0];
    pod_ = ds_["spec"]["template"]["spec"];
    ASSERT_EQ(pod_["containers"].size(), 1u);
    agent_ = pod_["containers"][0];
    for (const YAML::Node& arg : agent_["args"]) {
      const std::string a = arg.as<std::string>();
      args_.push_back(a);
      ASSERT_TRUE(absl::StartsWith(a, "--")) << a;
      std::vector<std::string> kv = absl::StrSplit(a.substr(2), absl::MaxSplits('=', 1));
      flags_[kv[0]] = kv.size() > 1 ? kv[1] : "";
    }
  }

  // The hostPath of the volume mounted at the mount covering `path`, and
  // that mount; empty when no mount covers it.
  std::pair<std::string, YAML::Node> MountOf(const std::string& path) {
    std::pair<std::string, YAML::Node> best;
    size_t best_len = 0;
    for (const YAML::Node& m : agent_["volumeMounts"]) {
      const std::string at = m["mountPath"].as<std::string>();
      if ((path == at || absl::StartsWith(path, at + "/")) && at.size() > best_len) {
        best_len = at.size();
        for (const YAML::Node& v : pod_["volumes"]) {
          if (v["name"].as<std::string>() != m["name"].as<std::string>()) continue;
          best = {v["hostPath"] ? v["hostPath"]["path"].as<std::string>() : "", m};
        }
      }
    }
    return best;
  }

  std::map<std::string, std::vector<YAML::Node>> objects_;
  YAML::Node ds_, pod_, agent_;
  std::vector<std::string> args_;
  std::map<std::string, std::string> flags_;  // flag name -> value ("" for a bare --quiet)
};

TEST_F(KubernetesManifests, EveryObjectIsNamedAndLivesInTheOneNamespace) {
  ASSERT_EQ(objects_["Namespace"].size(), 1u);
  EXPECT_EQ(objects_["Namespace"][0]["metadata"]["name"].as<std::string>(), kNamespace);
  for (const auto& [kind, list] : objects_) {
    for (const YAML::Node& o : list) {
      EXPECT_TRUE(o["apiVersion"].IsScalar()) << kind;
      EXPECT_FALSE(o["metadata"]["name"].as<std::string>("").empty()) << kind;
      if (kind != "Namespace") {
        EXPECT_EQ(o["metadata"]["namespace"].as<std::string>(""), kNamespace) << kind;
      }
    }
  }
}

TEST_F(KubernetesManifests, EveryVolumeIsMountedAndEveryMountHasAVolume) {
  std::set<std::string> volumes, mounted;
  for (const YAML::Node& v : pod_["volumes"]) EXPECT_TRUE(volumes.insert(v["name"].as<std::string>()).second);
  for (const YAML::Node& m : agent_["volumeMounts"]) {
    const std::string name = m["name"].as<std::string>();
    EXPECT_TRUE(volumes.count(name)) << "volumeMount " << name << " names no volume";
    mounted.insert(name);
    if (m["mountPropagation"].as<std::string>("None") == "Bidirectional") {
      EXPECT_TRUE(agent_["securityContext"]["privileged"].as<bool>(false))
          << "Kubernetes allows Bidirectional propagation only in a privileged container";
    }
  }
  for (const std::string& v : volumes) EXPECT_TRUE(mounted.count(v)) << "volume " << v << " is never mounted";
}

TEST_F(KubernetesManifests, SelectorsAccountAndConfigMapReferToWhatExists) {
  const YAML::Node labels = ds_["spec"]["template"]["metadata"]["labels"];
  for (const auto& kv : ds_["spec"]["selector"]["matchLabels"]) {
    EXPECT_EQ(labels[kv.first.as<std::string>()].as<std::string>(""), kv.second.as<std::string>());
  }
  ASSERT_EQ(objects_["Service"].size(), 1u);
  const YAML::Node service = objects_["Service"][0];
  for (const auto& kv : service["spec"]["selector"]) {
    EXPECT_EQ(labels[kv.first.as<std::string>()].as<std::string>(""), kv.second.as<std::string>());
  }
  std::set<std::string> port_names;
  for (const YAML::Node& p : agent_["ports"]) port_names.insert(p["name"].as<std::string>());
  for (const YAML::Node& p : service["spec"]["ports"]) {
    EXPECT_TRUE(port_names.count(p["targetPort"].as<std::string>())) << "Service targetPort names no container port";
  }
  ASSERT_EQ(objects_["ServiceAccount"].size(), 1u);
  EXPECT_EQ(pod_["serviceAccountName"].as<std::string>(),
            objects_["ServiceAccount"][0]["metadata"]["name"].as<std::string>());
  ASSERT_EQ(objects_["ConfigMap"].size(), 1u);
  bool config_volume = false;
  for (const YAML::Node& v : pod_["volumes"]) {
    if (!v["configMap"]) continue;
    config_volume = true;
    EXPECT_EQ(v["configMap"]["name"].as<std::string>(),
              objects_["ConfigMap"][0]["metadata"]["name"].as<std::string>());
  }
  EXPECT_TRUE(config_volume);
  EXPECT_TRUE(pod_["hostPID"].as<bool>(false)) << "gputierd finds and enters containers through /proc/<pid>";
}

// --config names the ConfigMap's key; gputierd --check-config passes with the
// pod's own flags (so every flag exists and every config key is valid).
TEST_F(KubernetesManifests, TheConfigMapsConfigPassesGputierdCheckConfigWithThePodsFlags) {
  const std::string config_path = flags_["config"];
  auto [host, mount] = MountOf(config_path);
  ASSERT_TRUE(mount) << "--config=" << config_path << " is on no volumeMount";
  const std::string key = config_path.substr(mount["mountPath"].as<std::string>().size() + 1);
  const YAML::Node data = objects_["ConfigMap"][0]["data"][key];
  ASSERT_TRUE(data) << "the ConfigMap has no key " << key << " for --config=" << config_path;
  const std::string file = absl::StrCat(GPUTIER_BINARY_DIR, "/deploy-test-gputierd.yaml");
  std::ofstream(file) << data.as<std::string>();
  std::string command = absl::StrCat(GPUTIER_BIN_DIR, "/gputierd --check-config");
  for (const std::string& arg : args_) {
    absl::StrAppend(&command, " ", absl::StartsWith(arg, "--config=") ? absl::StrCat("--config=", file) : arg);
  }
  const CommandResult r = RunCommand(command);
  EXPECT_EQ(r.status, 0) << command << "\n" << r.output;
  // And the opposite: a wrong key fails it, naming the key.
  std::ofstream(file) << data.as<std::string>() << "tiered_path: [/data]\n";
  const CommandResult bad = RunCommand(absl::StrCat(GPUTIER_BIN_DIR, "/gputierd --check-config --config=", file));
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_TRUE(absl::StrContains(bad.output, "tiered_path")) << bad.output;
  remove(file.c_str());
}

// Everything gputierd reads or makes on the node is a hostPath mounted at the
// same path, so the host (gputierctl, the next pod) sees the same files; where
// gputierd mounts (pins, partitions, overlays), propagation is Bidirectional.
TEST_F(KubernetesManifests, EveryNodePathGputierdUsesIsTheSameHostPath) {
  absl::StatusOr<Config> config =
      ParseConfig(objects_["ConfigMap"][0]["data"]["gputierd.yaml"].as<std::string>(), "configmap");
  ASSERT_TRUE(config.ok()) << config.status();
  struct Use {
    std::string path;
    bool mounts_there;
  };
  std::vector<Use> uses = {{flags_["pin-dir"], true},
                           {flags_["run-dir"], false},
                           {flags_["state-dir"], false},
                           {config->tiers.fast_root, true},
                           {config->tiers.slow_root, true}};
  for (const auto& [runtime, roots] : config->tiers.runtime_roots) {
    for (const std::string& r : roots) uses.push_back({r, false});
  }
  for (const Use& u : uses) {
    ASSERT_FALSE(u.path.empty()) << "a path flag is missing from the DaemonSet's args";
    auto [host, mount] = MountOf(u.path);
    ASSERT_TRUE(mount) << u.path << " is on no volumeMount";
    EXPECT_EQ(host, mount["mountPath"].as<std::string>()) << u.path << ": the host path differs from the pod's";
    if (u.mounts_there) {
      EXPECT_EQ(mount["mountPropagation"].as<std::string>("None"), "Bidirectional")
          << "gputierd mounts under " << u.path << "; the host and the next pod must see it";
    }
  }
  for (const char* fs : {"/sys/fs/cgroup", "/sys/kernel/tracing", "/sys/kernel/security", "/dev"}) {
    EXPECT_EQ(MountOf(fs).first, fs) << fs;
  }
}

TEST_F(KubernetesManifests, ProbesAndScrapeAnnotationsUseTheMetricsAddressPort) {
  const std::string address = flags_["metrics-address"];
  ASSERT_TRUE(absl::StartsWith(address, "0.0.0.0:")) << "the kubelet and Prometheus reach the pod IP, not loopback";
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port));
  std::map<std::string, int> ports;
  for (const YAML::Node& p : agent_["ports"]) ports[p["name"].as<std::string>()] = p["containerPort"].as<int>();
  struct Probe {
    const char* name;
    const char* path;
  } probes[] = {{"livenessProbe", "/healthz"}, {"readinessProbe", "/readyz"}};
  for (const Probe& p : probes) {
    const YAML::Node get = agent_[p.name]["httpGet"];
    ASSERT_TRUE(get) << p.name;
    EXPECT_EQ(get["path"].as<std::string>(), p.path);
    const std::string named = get["port"].as<std::string>();
    int probe_port = 0;
    if (!absl::SimpleAtoi(named, &probe_port)) probe_port = ports.count(named) ? ports[named] : -1;
    EXPECT_EQ(probe_port, port) << p.name;
  }
  const YAML::Node annotations = ds_["spec"]["template"]["metadata"]["annotations"];
  EXPECT_EQ(annotations["prometheus.io/scrape"].as<std::string>(""), "true");
  EXPECT_EQ(annotations["prometheus.io/port"].as<std::string>(""), absl::StrCat(port));
  EXPECT_EQ(annotations["prometheus.io/path"].as<std::string>(""), "/metrics");
}

TEST_F(KubernetesManifests, TheImageAndCommandAreWhatTheContainerfileBuilds) {
  const Containerfile cf = ReadContainerfile();
  const std::string command = agent_["command"][0].as<std::string>();
  EXPECT_EQ(cf.entrypoint, command);
  EXPECT_TRUE(cf.copied_to.count(command)) << command << " is not copied into the runtime image";
  EXPECT_EQ(agent_["image"].as<std::string>(), absl::StrCat("gputier:", GPUTIER_VERSION))
      << "the image tag is the project version the Containerfile builds";
}

}  // namespace
}  // namespace gputier::testing
