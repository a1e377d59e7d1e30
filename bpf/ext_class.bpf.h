/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Extension extraction, shared verbatim by the BPF programs and the
 * userspace tests (tests/ext_class_test.cc compiles this header as C++).
 *
 * The BPF side reads only the last GT_NAME_TAIL bytes of a dentry name (one
 * bounded read, no bpf_d_path), so this function works on that tail:
 *   tail[0..len)  the last `len` bytes of the name (len <= GT_NAME_TAIL)
 *   whole         non-zero when those bytes are the whole name
 * It writes the lower-cased (ASCII only) last extension, without its dot,
 * into *key (NUL padded) and returns 1, or returns 0 when the name has no
 * extension: no dot, a trailing dot ("file."), a dotfile (".bashrc"), or an
 * extension longer than GT_EXT_MAX bytes.
 *
 * It runs on every counted open, so it works on the 16 bytes as two 64-bit
 * words (byte i of the tail is bits 8*i..8*i+7 of its word) with
 * straight-line bit arithmetic: no per-byte loop, three small branches.
 */
#ifndef GPUTIER_EXT_CLASS_BPF_H
#define GPUTIER_EXT_CLASS_BPF_H

#include "gputier/abi.h"

#ifndef __BPF__
#include <string.h>
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#endif

#if GT_NAME_TAIL != 16 || GT_EXT_MAX != 15
#error "gt_ext_from_tail works on exactly two 64-bit words"
#endif

#define GT_BYTES(b) (0x0101010101010101ull * (__u8)(b))

/* Bytes p[0..8) as a word, p[0] in the low byte, whatever the host's byte order. */
static __always_inline __u64 gt_load_word(const char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	__u64 w;

	__builtin_memcpy(&w, p, sizeof(w));
	return w;
#else
	__u64 w = 0;
	int i;

	for (i = 7; i >= 0; i--)
		w = (w << 8) | (__u8)p[i];
	return w;
#endif
}

/* The same for p on an 8-byte boundary: one 64-bit load. */
static __always_inline __u64 gt_load_aligned_word(const char *p)
{
	return gt_load_word((const char *)__builtin_assume_aligned(p, 8));
}

static __always_inline void gt_store_word(char *p, __u64 w)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	__builtin_memcpy(p, &w, sizeof(w));
#else
	int i;

	for (i = 0; i < 8; i++, w >>= 8)
		p[i] = (char)(w & 0xff);
#endif
}

/* Mask of the low n bytes of a word (n may be negative or above 8). */
static __always_inline __u64 gt_low_bytes(int n)
{
	if (n <= 0)
		return 0;
	if (n >= 8)
		return ~0ull;
	return (1ull << (8 * n)) - 1;
}

/* 0x80 in each byte of w equal to c, 0 elsewhere (exact, no carries between bytes). */
static __always_inline __u64 gt_bytes_equal(__u64 w, __u8 c)
{
	__u64 x = w ^ GT_BYTES(c);
	__u64 t = ((x & GT_BYTES(0x7f)) + GT_BYTES(0x7f)) | x;

	return ~t & GT_BYTES(0x80);
}

/* Index (0..7) of the highest byte of m that is not zero; m != 0. */
static __always_inline int gt_top_byte(__u64 m)
{
	int i = 0;

	if (m >> 32) {
		i += 4;
		m >>= 32;
	}
	if (m >> 16) {
		i += 2;
		m >>= 16;
	}
	if (m >> 8)
		i += 1;
	return i;
}

/* ASCII 'A'..'Z' lowered in every byte; other bytes, UTF-8 included, unchanged. */
static __always_inline __u64 gt_lower_word(__u64 w)
{
	__u64 low7 = w & GT_BYTES(0x7f);
	__u64 ge_a = low7 + GT_BYTES(0x80 - 'A'); /* bit 7 set where byte >= 'A' */
	__u64 gt_z = low7 + GT_BYTES(0x80 - 'Z' - 1); /* bit 7 set where byte > 'Z' */
	__u64 upper = ge_a & ~gt_z & ~w & GT_BYTES(0x80);

	return w | (upper >> 2); /* 0x80 >> 2 == 'a' - 'A' */
}

static __always_inline int gt_ext_from_tail(const char *tail, __u32 len, int whole,
					    struct gt_ext_key *key)
{
	__u64 lo, hi, dots_lo, dots_hi, ext_lo, ext_hi;
	int dot, shift, ext_len;

	__builtin_memset(key, 0, sizeof(*key));
	if (len > GT_NAME_TAIL)
		return 0;

	lo = gt_load_word(tail);
	hi = gt_load_word(tail + 8);
	/* Last dot within tail[0..len). */
	dots_lo = gt_bytes_equal(lo, '.') & gt_low_bytes((int)len);
	dots_hi = gt_bytes_equal(hi, '.') & gt_low_bytes((int)len - 8);
	if (dots_hi)
		dot = 8 + gt_top_byte(dots_hi);
	else if (dots_lo)
		dot = gt_top_byte(dots_lo);
	else
		return 0;
	if (dot == 0 && whole)
		return 0; /* ".bashrc": a dotfile, not an extension */
	ext_len = (int)len - 1 - dot; /* at most GT_EXT_MAX: dot >= 0, len <= 16 */
	if (ext_len <= 0)
		return 0; /* "file." */

	/* The 128-bit tail shifted right past the dot: the extension's bytes first. */
	shift = 8 * (dot + 1); /* 8..120 */
	if (shift < 64) {
		ext_lo = (lo >> shift) | (hi << (64 - shift));
		ext_hi = hi >> shift;
	} else {
		ext_lo = hi >> (shift - 64);
		ext_hi = 0;
	}
	ext_lo = gt_lower_word(ext_lo & gt_low_bytes(ext_len));
	ext_hi = gt_lower_word(ext_hi & gt_low_bytes(ext_len - 8));
	gt_store_word(key->ext, ext_lo);
	gt_store_word(key->ext + 8, ext_hi);
	return 1;
}

/*
 * The gt_ext_index bucket of an extension key (< GT_EXT_BUCKETS): the two
 * words folded, then a 64-bit finalizer (xor-shift, multiply; twice), so that
 * extensions differing in one character spread over the buckets. Userspace
 * builds the index with this same function (loader/observe/ext_index.cc), so both
 * sides agree by construction.
 */
static __always_inline __u32 gt_ext_bucket_of(const struct gt_ext_key *key)
{
	__u64 lo = gt_load_word(key->ext);
	__u64 hi = gt_load_word(key->ext + 8);
	__u64 h = lo ^ (hi * 0x9e3779b97f4a7c15ull);

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return (__u32)(h >> (64 - GT_EXT_BUCKET_BITS));
}

/*
 * Looks `key` up in its bucket `b`: 1 and *cls = its class id when one of the
 * ways holds it, else 0 (then, if b->overflow, the extension may still be in
 * gt_ext_class). Straight-line: GT_EXT_WAYS compares of two words each.
 */
static __always_inline int gt_ext_bucket_find(const struct gt_ext_bucket *b,
					      const struct gt_ext_key *key, __u32 *cls)
{
	__u64 lo = gt_load_word(key->ext);
	__u64 hi = gt_load_word(key->ext + 8);
	int i;

#ifdef __BPF__
#pragma unroll
#endif
	for (i = 0; i < GT_EXT_WAYS; i++) {
		/* struct gt_ext_bucket is 8-byte aligned, each way 16 bytes. */
		if (gt_load_aligned_word(b->ext[i].ext) == lo &&
		    gt_load_aligned_word(b->ext[i].ext + 8) == hi) {
			*cls = b->class_id[i];
			return 1;
		}
	}
	return 0;
}

/*
 * The class id of `key` as far as its bucket `b` tells: 1 and *cls (its class,
 * or GT_CLASS_OTHER when the bucket does not hold it and never overflowed), or
 * 0 when the bucket overflowed without holding it: then only gt_ext_class
 * knows, and *cls is GT_CLASS_OTHER.
 */
static __always_inline int gt_ext_bucket_class(const struct gt_ext_bucket *b,
					       const struct gt_ext_key *key, __u32 *cls)
{
	*cls = GT_CLASS_OTHER;
	if (gt_ext_bucket_find(b, key, cls))
		return 1;
	return !b->overflow;
}

#endif /* GPUTIER_EXT_CLASS_BPF_H */
