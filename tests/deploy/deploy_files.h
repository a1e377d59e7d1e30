// What the deploy tests read from deploy/: the Containerfile's stages and
// deploy/bootstrap's package lists, parsed just enough to compare; and a
// command runner.
#ifndef GPUTIER_TESTS_DEPLOY_DEPLOY_FILES_H_
#define GPUTIER_TESTS_DEPLOY_DEPLOY_FILES_H_

#include <set>
#include <string>
#include <vector>

namespace gputier::testing {

struct ContainerStage {
  std::string from;                  // the FROM image
  std::set<std::string> apt_packages;  // every `apt-get install` of its RUN lines
};

struct Containerfile {
  std::vector<ContainerStage> stages;
  std::set<std::string> copied_to;  // files the last stage COPYs in (absolute paths)
  std::string entrypoint;           // its ENTRYPOINT's program
};

// deploy/container/Containerfile, continuation lines joined.
Containerfile ReadContainerfile();

// The words of a bash array `NAME=(...)` in deploy/bootstrap.
std::set<std::string> BootstrapPackages(const std::string& name);

struct CommandResult {
  int status = -1;     // exit status; -1 if it did not exit
  std::string output;  // stdout and stderr
};
CommandResult RunCommand(const std::string& command);

}  // namespace gputier::testing

#endif  // GPUTIER_TESTS_DEPLOY_DEPLOY_FILES_H_
