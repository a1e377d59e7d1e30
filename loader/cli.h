// Command-line conventions shared by gputierd and gputierctl.
#ifndef GPUTIER_LOADER_CLI_H_
#define GPUTIER_LOADER_CLI_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace gputier {

// Parses flags with absl after rewriting "--pin-dir=x" to "--pin_dir=x", so
// both spellings work; "-v" means --verbose. Sets up --help to list only the
// flags of files whose path contains `program`. Returns the positional args
// (without argv[0]).
std::vector<std::string> ParseFlags(int argc, char** argv, absl::string_view program,
                                    absl::string_view usage);

}  // namespace gputier

#endif  // GPUTIER_LOADER_CLI_H_
