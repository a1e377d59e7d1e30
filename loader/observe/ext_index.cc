#include "loader/observe/ext_index.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "ext_class.bpf.h"

namespace gputier {

gt_ext_key ExtKey(const std::string& extension) {
  gt_ext_key k = {};
  memcpy(k.ext, extension.data(), std::min(extension.size(), sizeof(k.ext) - 1));
  return k;
}

std::vector<gt_ext_bucket> BuildExtIndex(const std::vector<ExtensionClass>& classes) {
  std::vector<std::pair<gt_ext_key, uint32_t>> entries;
  for (const ExtensionClass& c : classes) {
    for (const std::string& e : c.extensions) entries.emplace_back(ExtKey(e), c.id);
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return memcmp(a.first.ext, b.first.ext, sizeof(a.first.ext)) < 0;
  });
  std::vector<gt_ext_bucket> buckets(GT_EXT_BUCKETS);
  std::vector<uint32_t> used(GT_EXT_BUCKETS, 0);
  for (const auto& [key, id] : entries) {
    const uint32_t b = gt_ext_bucket_of(&key);
    if (used[b] == GT_EXT_WAYS) {
      buckets[b].overflow = 1;
      continue;
    }
    buckets[b].ext[used[b]] = key;
    buckets[b].class_id[used[b]] = id;
    ++used[b];
  }
  return buckets;
}

}  // namespace gputier
