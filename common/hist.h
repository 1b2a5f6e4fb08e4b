/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Latency histogram: log-linear buckets (HdrHistogram's layout) over uint64
 * values, usually nanoseconds.  Values below 64 have a bucket each; above,
 * every power of two is split into 32 linear sub-buckets, so a reported
 * percentile is within 1/32 (about 3%) of the true one.  Fixed memory
 * (THAW_HIST_BUCKETS counters, about 15 KiB), no allocation, mergeable.
 * Not thread-safe: give each thread its own and merge.
 */
#ifndef THAW_COMMON_HIST_H
#define THAW_COMMON_HIST_H

#include <stdint.h>

#define THAW_HIST_SUB_BITS 5
#define THAW_HIST_BUCKETS  (64 + (64 - 6) * 32)

typedef struct thaw_hist {
    uint64_t count;
    uint64_t sum; /* saturates instead of wrapping */
    uint64_t min;
    uint64_t max;
    uint64_t buckets[THAW_HIST_BUCKETS];
} thaw_hist_t;

void thaw_hist_init(thaw_hist_t *h);
void thaw_hist_add(thaw_hist_t *h, uint64_t value);
/* dst += src. */
void thaw_hist_merge(thaw_hist_t *dst, const thaw_hist_t *src);

/*
 * The nearest-rank percentile p in [0, 100]: the value at rank ceil(p/100*n),
 * reported as the middle of its bucket clamped to [min, max].  Returns 0 for
 * an empty histogram.  p >= 100 returns max exactly.
 */
uint64_t thaw_hist_percentile(const thaw_hist_t *h, double p);
/* Mean, 0 when empty. */
double thaw_hist_mean(const thaw_hist_t *h);

/* Bucket index and the bucket's [lo, hi] range (exposed for tests). */
unsigned thaw_hist_bucket_of(uint64_t value);
void thaw_hist_bucket_range(unsigned idx, uint64_t *lo, uint64_t *hi);

#endif
