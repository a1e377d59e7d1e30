// JSON text of values that may hold names gputier does not control (cgroup
// and file names a tenant chooses, process names, error messages quoting
// them). nlohmann's default dump throws on invalid UTF-8, and an exception
// there kills gputierd; JsonText replaces each invalid byte with U+FFFD
// instead. Every JSON that gputier writes goes through it (`grep -n
// '\.dump(' loader` finds only this file).
//
// Where the exact bytes matter (a path gputierd must find again), store them
// losslessly beside the display string: see tier_record.cc.
#ifndef GPUTIER_LOADER_BASE_JSON_TEXT_H_
#define GPUTIER_LOADER_BASE_JSON_TEXT_H_

#include <string>

#include <nlohmann/json.hpp>

namespace gputier {

// indent < 0: one line; otherwise pretty-printed with that many spaces.
std::string JsonText(const nlohmann::json& value, int indent = -1);

}  // namespace gputier

#endif  // GPUTIER_LOADER_BASE_JSON_TEXT_H_
