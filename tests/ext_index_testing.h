// Test helper shared by the unit and integration tests of gt_ext_index.
#ifndef GPUTIER_TESTS_EXT_INDEX_TESTING_H_
#define GPUTIER_TESTS_EXT_INDEX_TESTING_H_

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ext_class.bpf.h"
#include "loader/observe/ext_index.h"

namespace gputier {

// `n` distinct extensions ("c<number>") that all fall into one gt_ext_index
// bucket: more than GT_EXT_WAYS of them make the bucket overflow.
inline std::vector<std::string> CollidingExtensions(size_t n) {
  std::map<uint32_t, std::vector<std::string>> by_bucket;
  for (int i = 0;; ++i) {
    const std::string ext = absl::StrCat("c", i);
    const gt_ext_key key = ExtKey(ext);
    std::vector<std::string>& same = by_bucket[gt_ext_bucket_of(&key)];
    same.push_back(ext);
    if (same.size() == n) return same;
  }
}

}  // namespace gputier

#endif  // GPUTIER_TESTS_EXT_INDEX_TESTING_H_
