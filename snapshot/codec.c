// SPDX-License-Identifier: Apache-2.0
/*
 * Chunk codec: cheap zero detection and lz4 compression at a chosen level
 * (LZ4_compress_fast for low levels, LZ4_compress_HC for high ones).  Each
 * writer thread owns one state so compression never allocates per chunk.
 */
#include "snapshot/snap-int.h"

#include <lz4.h>
#include <lz4hc.h>
#include <stdlib.h>
#include <string.h>

bool snap__is_zero(const void *p, size_t len)
{
    const unsigned char *b = p;
    /* Most non-zero chunks differ in their first bytes: bail out early, then
     * let memcmp (vectorised in libc) compare the buffer with itself shifted. */
    if (len == 0)
        return true;
    if (len >= 16) {
        uint64_t a, c;
        memcpy(&a, b, 8);
        memcpy(&c, b + len - 8, 8);
        if (a | c)
            return false;
    }
    return b[0] == 0 && memcmp(b, b + 1, len - 1) == 0;
}

void *snap__lz4_state_new(int level)
{
    size_t n = level >= SNAP_LZ4_HC_MIN ? (size_t)LZ4_sizeofStateHC() : (size_t)LZ4_sizeofState();
    /* lz4 wants the state aligned like a pointer at least; malloc gives 16. */
    return malloc(n);
}

size_t snap__lz4_compress(void *state, int level, const void *src, size_t len, void *dst)
{
    int r;
    /* Capacity len-1: if the result would not be smaller it fails (returns
     * 0) and the chunk is stored raw, which the reader then never inflates. */
    int cap = (int)len - 1;
    if (level >= SNAP_LZ4_HC_MIN) {
        int lv = level > SNAP_LZ4_HC_MAX ? SNAP_LZ4_HC_MAX : level;
        r = LZ4_compress_HC_extStateHC(state, src, dst, (int)len, cap, lv);
    } else {
        int accel = 1 - level < 1 ? 1 : 1 - level;
        r = LZ4_compress_fast_extState(state, src, dst, (int)len, cap, accel);
    }
    return r > 0 ? (size_t)r : 0;
}
