/* SPDX-License-Identifier: Apache-2.0 */
/* Monotonic time for latency measurement (never the wall clock: it jumps). */
#ifndef THAW_COMMON_CLOCK_H
#define THAW_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds on CLOCK_MONOTONIC since an arbitrary origin. */
static inline uint64_t thaw_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t thaw_now_us(void)
{
    return thaw_now_ns() / 1000u;
}

#endif
