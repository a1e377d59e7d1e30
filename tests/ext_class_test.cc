// gt_ext_from_tail (bpf/ext_class.bpf.h) compiled as C++ and driven the way
// the BPF programs drive it (bpf/count.bpf.h): only the last GT_NAME_TAIL
// bytes of a name are visible to it.
#include <cstring>
#include <optional>
#include <string>

#include "count_logic.bpf.h"
#include "ext_class.bpf.h"
#include "gtest/gtest.h"

namespace gputier {
namespace {

// Emulates the BPF caller (gt_file_ext): reads the gt_name_tail_len() last
// bytes of the name into a GT_NAME_TAIL buffer whose remaining bytes are
// garbage, and says whether those bytes are the whole name. Returns the
// extension, or nullopt when the name counts as having none.
std::optional<std::string> ExtensionSeenByBpf(const std::string& name) {
  const __u32 len = static_cast<__u32>(name.size());
  const __u32 n = gt_name_tail_len(len);
  char tail[GT_NAME_TAIL];
  std::memset(tail, 'X', sizeof(tail));  // bytes past the name are not NULs
  std::memcpy(tail, name.data() + len - n, n);

  gt_ext_key key;
  std::memset(&key, 0x5a, sizeof(key));  // the function must clear it
  const int has_ext = gt_ext_from_tail(tail, n, gt_name_tail_is_whole(len), &key);
  if (!has_ext) {
    for (char c : key.ext) EXPECT_EQ(c, '\0') << "key not cleared for " << name;
    return std::nullopt;
  }
  // The key is NUL padded: what follows the extension is all zero.
  const size_t ext_len = strnlen(key.ext, sizeof(key.ext));
  EXPECT_LT(ext_len, sizeof(key.ext)) << "key not NUL terminated for " << name;
  for (size_t i = ext_len; i < sizeof(key.ext); ++i) {
    EXPECT_EQ(key.ext[i], '\0') << "key not NUL padded for " << name;
  }
  return std::string(key.ext, ext_len);
}

struct ExtCase {
  const char* description;
  std::string name;
  std::optional<std::string> expected;
};

TEST(GtExtFromTail, ExtractsTheLowerCasedLastExtensionSeenInTheTail) {
  const std::string long_stem(200, 'a');
  const ExtCase kCases[] = {
      {"a name without a dot has no extension", "README", std::nullopt},
      {"a simple extension", "photo.png", "png"},
      {"the minimal name with an extension", "a.b", "b"},
      {"only the last of several extensions", "a.tar.gz", "gz"},
      {"upper case is lowered", "IMG.JPG", "jpg"},
      {"mixed case is lowered", "Model.SafeTensors", "safetensors"},
      {"digits are kept", "clip.H264", "h264"},
      {"a trailing dot means no extension", "file.", std::nullopt},
      {"a dotfile has no extension", ".bashrc", std::nullopt},
      {"a dot alone has no extension", ".", std::nullopt},
      {"two leading dots: the last dot starts the extension", "..bashrc",
       "bashrc"},
      {"a dotfile with an extension", ".config.yaml", "yaml"},
      {"a 15-byte extension is recognised", "a.abcdefghijklmno",
       "abcdefghijklmno"},
      {"a 16-byte extension is too long", "a.abcdefghijklmnop", std::nullopt},
      {"a long name with a short extension", long_stem + ".ckpt", "ckpt"},
      {"a long name without an extension", long_stem, std::nullopt},
      {"a long name whose dot is before the tail", "x." + long_stem,
       std::nullopt},
      {"a long name ending in a dot", long_stem + ".", std::nullopt},
      {"UTF-8 stem, ASCII extension", "\xd1\x84\xd0\xbe\xd1\x82\xd0\xbe.JPG",
       "jpg"},
      {"UTF-8 bytes in the extension pass through unchanged", "x.jp\xc3\xa9",
       "jp\xc3\xa9"},
      {"upper-case UTF-8 is not lowered", "x.\xc3\x89XR", "\xc3\x89xr"},
  };
  for (const ExtCase& c : kCases) {
    EXPECT_EQ(ExtensionSeenByBpf(c.name), c.expected) << c.description;
  }
}

TEST(GtExtFromTail,
     LeadingDotInTheTailIsADotfileOnlyWhenTheTailIsTheWholeName) {
  // 16 bytes: the tail is the whole name, so ".abc..." is a dotfile.
  const std::string sixteen = ".abcdefghijklmno";
  ASSERT_EQ(sixteen.size(), 16u);
  // 17 bytes: the tail starts at the dot, but a byte precedes it, so the 15
  // bytes after the dot are an extension.
  const std::string seventeen = "x.abcdefghijklmno";
  ASSERT_EQ(seventeen.size(), 17u);
  const ExtCase kCases[] = {
      {"16-byte dotfile", sixteen, std::nullopt},
      {"17-byte name whose tail starts with the dot", seventeen,
       "abcdefghijklmno"},
      {"17-byte name with two leading dots",
       ".." + std::string("abcdefghijklmno"), "abcdefghijklmno"},
      {"16-byte name with a short extension", "abcdefghijkl.bin", "bin"},
      {"17-byte name with a short extension", "abcdefghijklm.bin", "bin"},
  };
  for (const ExtCase& c : kCases) {
    EXPECT_EQ(ExtensionSeenByBpf(c.name), c.expected) << c.description;
  }
}

TEST(GtExtFromTail, RejectsATailLongerThanTheBuffer) {
  const char tail[32] = "abcdefghijklm.png";
  gt_ext_key key;
  EXPECT_EQ(gt_ext_from_tail(tail, GT_NAME_TAIL + 1, 0, &key), 0);
}

TEST(GtExtFromTail, KeyMatchesTheMapKeyLayout) {
  gt_ext_key expected;
  std::memset(&expected, 0, sizeof(expected));
  std::memcpy(expected.ext, "jpg", 3);

  const char tail[GT_NAME_TAIL] = "IMG_0001.JPG";
  gt_ext_key key;
  ASSERT_EQ(gt_ext_from_tail(tail, 12, 1, &key), 1);
  // The map lookup compares all 16 bytes, so padding must be zero.
  EXPECT_EQ(std::memcmp(&key, &expected, sizeof(key)), 0);
}

}  // namespace
}  // namespace gputier
