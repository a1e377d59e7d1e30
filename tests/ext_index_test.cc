// gt_ext_index (loader/observe/ext_index.cc), read the way the BPF programs read it
// (gt_ext_class_of in bpf/count.bpf.h): the extension's bucket first, and the
// hash table only when that bucket overflowed.
#include "loader/observe/ext_index.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "ext_class.bpf.h"
#include "gtest/gtest.h"
#include "loader/config/config.h"
#include "tests/ext_index_testing.h"

namespace gputier {
namespace {

// What gt_ext_class_of returns for `ext`, with `table` standing in for
// gt_ext_class. Counts how often the hash table was consulted.
uint32_t ClassSeenByBpf(const std::vector<gt_ext_bucket>& index,
                        const absl::flat_hash_map<std::string, uint32_t>& table, const std::string& ext,
                        int* hash_lookups = nullptr) {
  const gt_ext_key key = ExtKey(ext);
  const uint32_t b = gt_ext_bucket_of(&key);
  __u32 cls;
  if (gt_ext_bucket_class(&index.at(b), &key, &cls)) return cls;
  if (hash_lookups != nullptr) ++*hash_lookups;
  auto it = table.find(ext);
  return it == table.end() ? uint32_t{GT_CLASS_OTHER} : it->second;
}

absl::flat_hash_map<std::string, uint32_t> TableOf(const std::vector<ExtensionClass>& classes) {
  absl::flat_hash_map<std::string, uint32_t> table;
  for (const ExtensionClass& c : classes) {
    for (const std::string& e : c.extensions) table[e] = c.id;
  }
  return table;
}

TEST(ExtIndex, EveryDefaultExtensionIsFoundInItsOwnBucketWithItsClass) {
  const std::vector<ExtensionClass> classes = DefaultConfig().classes;
  const std::vector<gt_ext_bucket> index = BuildExtIndex(classes);
  ASSERT_EQ(index.size(), GT_EXT_BUCKETS);
  int hash_lookups = 0;
  size_t total = 0;
  for (const ExtensionClass& c : classes) {
    for (const std::string& e : c.extensions) {
      EXPECT_EQ(ClassSeenByBpf(index, TableOf(classes), e, &hash_lookups), c.id) << e;
      ++total;
    }
  }
  EXPECT_GT(total, 20u);
  // The built-in lists never leave the inlined path.
  EXPECT_EQ(hash_lookups, 0);
  for (const gt_ext_bucket& b : index) EXPECT_EQ(b.overflow, 0u);
}

TEST(ExtIndex, AnExtensionInNoClassIsOtherWithoutTouchingTheHashTable) {
  const std::vector<ExtensionClass> classes = DefaultConfig().classes;
  const std::vector<gt_ext_bucket> index = BuildExtIndex(classes);
  int hash_lookups = 0;
  for (const char* e : {"txt", "dat", "log", "so", "o", "gtother", "safetensorsx", "pn", "a"}) {
    EXPECT_EQ(ClassSeenByBpf(index, TableOf(classes), e, &hash_lookups), uint32_t{GT_CLASS_OTHER}) << e;
  }
  EXPECT_EQ(hash_lookups, 0);
}

TEST(ExtIndex, ABucketWithMoreExtensionsThanWaysKeepsTheFirstInByteOrderAndOverflows) {
  std::vector<std::string> same = CollidingExtensions(GT_EXT_WAYS + 2);
  std::vector<ExtensionClass> classes = {{GT_CLASS_FIRST_CUSTOM, "crowded", same}};
  const std::vector<gt_ext_bucket> index = BuildExtIndex(classes);
  const gt_ext_key first = ExtKey(same[0]);
  const gt_ext_bucket& bucket = index[gt_ext_bucket_of(&first)];
  EXPECT_EQ(bucket.overflow, 1u);

  std::vector<std::string> sorted = same;
  std::sort(sorted.begin(), sorted.end());  // byte order of NUL-padded keys
  int hash_lookups = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const gt_ext_key key = ExtKey(sorted[i]);
    __u32 cls = 0;
    EXPECT_EQ(gt_ext_bucket_find(&bucket, &key, &cls), i < GT_EXT_WAYS ? 1 : 0) << sorted[i];
    // Every one of them still reads as its class: the overflow sends the rest
    // to the hash table.
    EXPECT_EQ(ClassSeenByBpf(index, TableOf(classes), sorted[i], &hash_lookups),
              uint32_t{GT_CLASS_FIRST_CUSTOM});
  }
  EXPECT_EQ(hash_lookups, 2);
  // Only that bucket overflows.
  int overflowing = 0;
  for (const gt_ext_bucket& b : index) overflowing += b.overflow;
  EXPECT_EQ(overflowing, 1);
}

TEST(ExtIndex, AFullTableOfTheMostExtensionsAConfigMayListReadsBackExactly) {
  std::vector<std::string> exts;
  for (int i = 0; exts.size() < GT_MAX_EXTENSIONS; ++i) exts.push_back(absl::StrCat("e", i * 7919));
  std::vector<ExtensionClass> classes(4);
  for (size_t i = 0; i < exts.size(); ++i) {
    classes[i % 4].id = static_cast<uint32_t>(1 + i % 4);
    classes[i % 4].extensions.push_back(exts[i]);
  }
  const std::vector<gt_ext_bucket> index = BuildExtIndex(classes);
  const auto table = TableOf(classes);
  int hash_lookups = 0;
  for (size_t i = 0; i < exts.size(); ++i) {
    EXPECT_EQ(ClassSeenByBpf(index, table, exts[i], &hash_lookups), 1 + i % 4) << exts[i];
  }
  for (int i = 0; i < 2000; ++i) {
    EXPECT_EQ(ClassSeenByBpf(index, table, absl::StrCat("u", i)), uint32_t{GT_CLASS_OTHER});
  }
  // One bucket per extension on average: a few percent take the slow path.
  EXPECT_LT(hash_lookups, static_cast<int>(GT_MAX_EXTENSIONS / 20)) << hash_lookups;
}

TEST(ExtIndex, TheIndexDependsOnTheSetOfExtensionsNotOnTheirOrderInTheConfig) {
  std::vector<ExtensionClass> classes = DefaultConfig().classes;
  for (const std::string& e : CollidingExtensions(GT_EXT_WAYS + 1)) {
    classes[0].extensions.push_back(e);
  }
  std::vector<ExtensionClass> reordered = classes;
  std::reverse(reordered.begin(), reordered.end());
  for (ExtensionClass& c : reordered) std::reverse(c.extensions.begin(), c.extensions.end());
  const std::vector<gt_ext_bucket> a = BuildExtIndex(classes);
  const std::vector<gt_ext_bucket> b = BuildExtIndex(reordered);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(memcmp(a.data(), b.data(), a.size() * sizeof(gt_ext_bucket)), 0);
}

TEST(ExtIndex, ExtensionsSharingTheirFirstEightBytesAndABucketAreToldApart) {
  // Two extensions of 9 or more bytes whose first words are equal and whose
  // buckets are the same: only the second word tells them apart.
  std::map<uint32_t, std::string> seen;
  std::string configured, other;
  for (int i = 0; configured.empty(); ++i) {
    const std::string ext = absl::StrCat("abcdefgh", i);
    const gt_ext_key key = ExtKey(ext);
    auto [it, inserted] = seen.emplace(gt_ext_bucket_of(&key), ext);
    if (!inserted) {
      configured = it->second;
      other = ext;
    }
  }
  std::vector<ExtensionClass> classes = {{GT_CLASS_TENSOR, "tensor", {configured}}};
  const std::vector<gt_ext_bucket> index = BuildExtIndex(classes);
  EXPECT_EQ(ClassSeenByBpf(index, TableOf(classes), configured), uint32_t{GT_CLASS_TENSOR});
  EXPECT_EQ(ClassSeenByBpf(index, TableOf(classes), other), uint32_t{GT_CLASS_OTHER}) << other;

  const std::string longest(GT_EXT_MAX, 'z');
  classes = {{GT_CLASS_TENSOR, "tensor", {longest}}};
  EXPECT_EQ(ClassSeenByBpf(BuildExtIndex(classes), TableOf(classes), longest), uint32_t{GT_CLASS_TENSOR});
}

}  // namespace
}  // namespace gputier
