/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ring-3 computation the test guest runs with its state live in AVX
 * registers (4 x u64 and 4 x double vectors), shared with the host tests so
 * they know the exact answer: any vCPU state lost across an interrupt, an
 * exit or (issue 6) a snapshot changes the result.
 */
#ifndef THAW_TESTS_VMM_GUEST_COMPUTE_H
#define THAW_TESTS_VMM_GUEST_COMPUTE_H

typedef unsigned long long thaw_cu64;
typedef thaw_cu64 thaw_v4u __attribute__((vector_size(32)));
typedef double thaw_v4d __attribute__((vector_size(32)));

__attribute__((target("avx2"), noinline)) static thaw_cu64 thaw_compute(thaw_cu64 seed,
                                                                        thaw_cu64 iters)
{
    thaw_v4u x = {seed, seed ^ 0x9e3779b97f4a7c15ull, seed + 1, ~seed};
    thaw_v4u m = {6364136223846793005ull, 1442695040888963407ull, 0x2545f4914f6cdd1dull,
                  0xda942042e4dd58b5ull};
    thaw_v4d d = {1.0, 2.0, 3.0, 4.0};
    const thaw_v4d k = {0.5, 0.25, 0.125, 0.0625};
    for (thaw_cu64 i = 0; i < iters; i++) {
        x = x * m + (thaw_v4u){i, i, i, i};
        x ^= x >> 29;
        d = d * k + (thaw_v4d){1.0, 1.0, 1.0, 1.0};
    }
    thaw_cu64 r = x[0] ^ (x[1] << 1) ^ (x[2] << 2) ^ (x[3] << 3);
    for (int j = 0; j < 4; j++) {
        union {
            double f;
            thaw_cu64 u;
        } c = {.f = d[j]};
        r ^= c.u;
    }
    return r;
}

/* Byte j of the snapshot tests' console stream. */
static inline unsigned char thaw_stream_byte(thaw_cu64 j)
{
    return (unsigned char)((j * 7) ^ (j >> 9) ^ (j >> 17));
}

/* The stream workload's final accumulator (see vcon_stream in virtio.c). */
static inline thaw_cu64 thaw_stream_acc(thaw_cu64 chunks, thaw_cu64 iters, thaw_cu64 seed)
{
    thaw_cu64 acc = seed;
    for (thaw_cu64 k = 0; k < chunks; k++)
        acc = acc * 31 + thaw_compute(seed + k, iters);
    return acc;
}

#endif
