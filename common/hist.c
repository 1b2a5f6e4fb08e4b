// SPDX-License-Identifier: Apache-2.0
/*
 * Log-linear latency histogram: see hist.h for the bucket layout and the
 * error bound the tests check.
 */
#include "common/hist.h"

#include <string.h>

#define SUB_COUNT  (1u << THAW_HIST_SUB_BITS) /* 32 sub-buckets per octave */
#define LINEAR_MAX (2u * SUB_COUNT)           /* values < 64 are exact */

void thaw_hist_init(thaw_hist_t *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

unsigned thaw_hist_bucket_of(uint64_t v)
{
    if (v < LINEAR_MAX)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= 6 */
    unsigned shift = msb - THAW_HIST_SUB_BITS;
    unsigned mant = (unsigned)(v >> shift); /* in [32, 63] */
    return LINEAR_MAX + (msb - 6u) * SUB_COUNT + (mant - SUB_COUNT);
}

void thaw_hist_bucket_range(unsigned idx, uint64_t *lo, uint64_t *hi)
{
    if (idx < LINEAR_MAX) {
        *lo = *hi = idx;
        return;
    }
    unsigned msb = (idx - LINEAR_MAX) / SUB_COUNT + 6u;
    unsigned mant = (idx - LINEAR_MAX) % SUB_COUNT + SUB_COUNT;
    unsigned shift = msb - THAW_HIST_SUB_BITS;
    *lo = (uint64_t)mant << shift;
    *hi = *lo + ((1ull << shift) - 1);
}

void thaw_hist_add(thaw_hist_t *h, uint64_t v)
{
    h->buckets[thaw_hist_bucket_of(v)]++;
    h->count++;
    h->sum = (h->sum + v < h->sum) ? UINT64_MAX : h->sum + v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void thaw_hist_merge(thaw_hist_t *dst, const thaw_hist_t *src)
{
    if (src->count == 0)
        return;
    for (unsigned i = 0; i < THAW_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum = (dst->sum + src->sum < dst->sum) ? UINT64_MAX : dst->sum + src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t thaw_hist_percentile(const thaw_hist_t *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p >= 100.0)
        return h->max;
    if (p < 0.0)
        p = 0.0;
    /* nearest rank: ceil(p/100 * n), at least 1 */
    double exact = p / 100.0 * (double)h->count;
    uint64_t rank = (uint64_t)exact;
    if ((double)rank < exact)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < THAW_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t lo, hi;
            thaw_hist_bucket_range(i, &lo, &hi);
            uint64_t mid = lo + (hi - lo) / 2;
            if (mid < h->min)
                mid = h->min;
            if (mid > h->max)
                mid = h->max;
            return mid;
        }
    }
    return h->max;
}

double thaw_hist_mean(const thaw_hist_t *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
