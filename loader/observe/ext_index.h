// gt_ext_index: the bucketed copy of the extension table that the BPF programs
// read on every counted open (layout and rules in include/gputier/abi.h).
#ifndef GPUTIER_LOADER_OBSERVE_EXT_INDEX_H_
#define GPUTIER_LOADER_OBSERVE_EXT_INDEX_H_

#include <string>
#include <vector>

#include "gputier/abi.h"
#include "loader/config/config.h"

namespace gputier {

// The GT_EXT_BUCKETS buckets for `classes`. Each extension goes to bucket
// gt_ext_bucket_of() of its key; a bucket keeps the first GT_EXT_WAYS of its
// extensions in byte order of their keys and sets `overflow` when there are
// more. A deterministic function of the set of (extension, class) pairs: the
// order of classes and extensions in the config does not matter.
std::vector<gt_ext_bucket> BuildExtIndex(const std::vector<ExtensionClass>& classes);

// The key of an extension (lower case, without the dot), NUL padded; an
// extension longer than GT_EXT_MAX is cut (config validation refuses those).
gt_ext_key ExtKey(const std::string& extension);

}  // namespace gputier

#endif  // GPUTIER_LOADER_OBSERVE_EXT_INDEX_H_
