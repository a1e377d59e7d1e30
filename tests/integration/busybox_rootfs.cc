#include "tests/integration/busybox_rootfs.h"

#include <filesystem>
#include <system_error>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/integration/runc_container.h"

namespace gputier::testing {

namespace fs = std::filesystem;

constexpr const char* kBusybox = "/bin/busybox";

std::string RootfsPath(const std::string& rootfs, const std::string& container_path) {
  return rootfs + "/" + std::string(absl::StripPrefix(container_path, "/"));
}

absl::Status MakeBusyboxRootfs(const std::string& rootfs, const std::vector<std::string>& directories) {
  std::error_code ec;
  for (const char* sub : {"bin", "proc", "dev", "sys", "tmp", "etc", "root"}) {
    fs::create_directories(rootfs + "/" + sub, ec);
    if (ec) return absl::InternalError(absl::StrCat("mkdir rootfs/", sub, ": ", ec.message()));
  }
  for (const std::string& d : directories) {
    fs::create_directories(RootfsPath(rootfs, d), ec);
    if (ec) return absl::InternalError(absl::StrCat("mkdir rootfs", d, ": ", ec.message()));
  }
  fs::copy_file(kBusybox, rootfs + "/bin/busybox", ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("copying ", kBusybox, ": ", ec.message(), "; install busybox-static"));
  }
  absl::StatusOr<CommandResult> list = RunCommand({kBusybox, "--list"});
  if (!list.ok()) return list.status();
  for (absl::string_view applet : absl::StrSplit(list->output, '\n', absl::SkipWhitespace())) {
    applet = absl::StripAsciiWhitespace(applet);
    if (applet == "busybox") continue;
    fs::create_symlink("busybox", rootfs + "/bin/" + std::string(applet), ec);
  }
  return absl::OkStatus();
}

}  // namespace gputier::testing
