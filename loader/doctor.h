// `gputierctl doctor`: what this node offers gputier, and the mode gputierd
// would pick. Each check is a line: status, name, detail.
#ifndef GPUTIER_LOADER_DOCTOR_H_
#define GPUTIER_LOADER_DOCTOR_H_

#include <string>
#include <vector>

namespace gputier {

struct DoctorCheck {
  std::string name;
  bool ok = false;
  std::string detail;
};

struct DoctorReport {
  std::vector<DoctorCheck> checks;
  std::string mode;    // "lsm" or "tracepoint", or "none"
  std::string reason;  // why
  std::string enforcement;  // whether the guard and tamper watch can run, and why
};

// Runs every probe (loads programs unpinned; attaches them briefly for the
// mode decision). Needs root.
DoctorReport RunDoctor(const std::string& probe_dir);

std::string FormatDoctorReport(const DoctorReport& report);

}  // namespace gputier

#endif  // GPUTIER_LOADER_DOCTOR_H_
