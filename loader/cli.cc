#include "loader/cli.h"

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace gputier {

std::vector<std::string> ParseFlags(int argc, char** argv, absl::string_view program,
                                    absl::string_view usage) {
  static std::string program_name;
  program_name = std::string(program);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, program_name) || absl::StrContains(file, "loader/cli");
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  config.version_string = [] { return absl::StrCat(program_name, " 0.1.0\n"); };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);

  std::vector<std::string> storage;
  storage.reserve(argc);
  bool positional_only = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") positional_only = true;
    if (i > 0 && !positional_only) {
      if (arg == "-v") arg = "--verbose";
      if (absl::StartsWith(arg, "--")) {
        size_t end = arg.find('=');
        if (end == std::string::npos) end = arg.size();
        for (size_t p = 2; p < end; ++p) {
          if (arg[p] == '-') arg[p] = '_';
        }
      }
    }
    storage.push_back(std::move(arg));
  }
  std::vector<char*> args;
  for (std::string& s : storage) args.push_back(s.data());
  std::vector<char*> rest = absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  std::vector<std::string> positional;
  for (size_t i = 1; i < rest.size(); ++i) positional.emplace_back(rest[i]);
  return positional;
}

}  // namespace gputier
