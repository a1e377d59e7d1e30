// What `gputierctl uninstall` removes on the tiers' side: every partition
// gputier left in the fast root, with its loop device and image.
//
//   <fast>/.gputier-spare        released (it never holds data)
//   <fast>/.gputier-free-<n>     released (set aside to be freed: no data)
//   <fast>/<tier key>            a partition kept by a stop while its
//                                container was tiered: when the container is
//                                gone, its fast layers are first folded into
//                                its slow layers (as gputierd does at container
//                                exit), then the partition is released and the
//                                record removed. The key is the record's:
//                                "<id>-<cgroup inode>", or the container id
//                                alone for a layout version 1 record.
//
// Nothing is touched when any of these holds (FailedPrecondition, one
// sentence naming what and the fix): a container that still runs has a
// partition (its overlay uses it); a partition has no record in the state
// directory (its data would have nowhere known to go). Everything else stays:
// the slow tier's data (<slow>/<tier key>, and the quarantine
// <slow>/.exited/ of exited containers' layers), the tier roots, the state
// directory.
//
// Runs with gputierd stopped (the caller holds the pin directory's lock).
#ifndef GPUTIER_LOADER_TIER_TIER_UNINSTALL_H_
#define GPUTIER_LOADER_TIER_TIER_UNINSTALL_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "loader/config/config.h"

namespace gputier {

// `removed` is called once per thing removed or written back, with one line
// saying what (e.g. "released partition /fast/.gputier-spare: unmounted
// /fast/.gputier-spare/mnt, freed /dev/loop3, removed its image").
absl::Status RemoveTierLeftovers(const TierConfig& tiers, const std::string& state_dir,
                                 const std::string& cgroup_root,
                                 const std::function<void(const std::string&)>& removed);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_TIER_UNINSTALL_H_
