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

static __always_inline int gt_ext_from_tail(const char *tail, __u32 len, int whole,
					    struct gt_ext_key *key)
{
	int dot = -1;
	int i;

	__builtin_memset(key, 0, sizeof(*key));
	if (len > GT_NAME_TAIL)
		return 0;

	/* Last dot within the tail (no early exit: the loop fully unrolls). */
#pragma GCC unroll 16
	for (i = 0; i < GT_NAME_TAIL; i++) {
		if (i < (int)len && tail[i] == '.')
			dot = i;
	}
	if (dot < 0)
		return 0;
	if (dot == 0 && whole)
		return 0; /* ".bashrc": a dotfile, not an extension */
	if (dot == (int)len - 1)
		return 0; /* "file." */

#pragma GCC unroll 16
	for (i = 0; i < GT_EXT_MAX; i++) {
		int pos = dot + 1 + i;
		char c;

		if (pos >= (int)len)
			break;
		c = tail[pos & (GT_NAME_TAIL - 1)];
		if (c >= 'A' && c <= 'Z')
			c = c - 'A' + 'a';
		key->ext[i] = c;
	}
	return 1;
}

#endif /* GPUTIER_EXT_CLASS_BPF_H */
