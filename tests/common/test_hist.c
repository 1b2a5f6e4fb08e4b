// SPDX-License-Identifier: Apache-2.0
/*
 * Histogram percentiles against a sorted reference on random data, bucket
 * layout invariants, and merging.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/hist.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t ref_percentile(const uint64_t *sorted, size_t n, double p)
{
    if (p >= 100.0)
        return sorted[n - 1];
    double exact = p / 100.0 * (double)n;
    size_t rank = (size_t)ceil(exact);
    if (rank == 0)
        rank = 1;
    return sorted[rank - 1];
}

static void check_against_reference(uint64_t (*gen)(void), size_t n)
{
    uint64_t *v = malloc(n * sizeof(*v));
    assert_non_null(v);
    thaw_hist_t *h = malloc(sizeof(*h));
    assert_non_null(h);
    thaw_hist_init(h);
    for (size_t i = 0; i < n; i++) {
        v[i] = gen();
        thaw_hist_add(h, v[i]);
    }
    qsort(v, n, sizeof(*v), cmp_u64);
    const double ps[] = {0, 1, 10, 50, 90, 99, 99.9, 100};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        uint64_t want = ref_percentile(v, n, ps[i]);
        uint64_t got = thaw_hist_percentile(h, ps[i]);
        uint64_t diff = got > want ? got - want : want - got;
        /* within half a bucket: 1/64 of the value, exact below 64 */
        if (diff > want / 32) {
            print_error("p%.1f: got %lu want %lu\n", ps[i], (unsigned long)got,
                        (unsigned long)want);
            fail();
        }
    }
    assert_int_equal(h->count, n);
    assert_int_equal(h->min, v[0]);
    assert_int_equal(h->max, v[n - 1]);
    free(v);
    free(h);
}

static uint64_t gen_uniform(void)
{
    return next_rand() % 10000000u;
}

static uint64_t gen_lognormalish(void)
{
    /* latency-like: mostly tens of microseconds, long tail to seconds */
    unsigned e = (unsigned)(next_rand() % 24) + 4;
    return (next_rand() % (1ull << e)) + 1;
}

static uint64_t gen_small(void)
{
    return next_rand() % 100;
}

static void test_percentiles_uniform(void **state)
{
    check_against_reference(gen_uniform, 100000);
}

static void test_percentiles_heavy_tail(void **state)
{
    check_against_reference(gen_lognormalish, 50000);
}

static void test_percentiles_small_values_exact(void **state)
{
    check_against_reference(gen_small, 5000);
}

static void test_bucket_layout_is_monotonic_and_covering(void **state)
{
    uint64_t prev_hi = 0;
    for (unsigned i = 0; i < THAW_HIST_BUCKETS; i++) {
        uint64_t lo, hi;
        thaw_hist_bucket_range(i, &lo, &hi);
        assert_true(lo <= hi);
        if (i > 0)
            assert_int_equal(lo, prev_hi + 1);
        assert_int_equal(thaw_hist_bucket_of(lo), i);
        assert_int_equal(thaw_hist_bucket_of(hi), i);
        prev_hi = hi;
    }
    assert_int_equal(prev_hi, UINT64_MAX);
}

static void test_merge_equals_single(void **state)
{
    thaw_hist_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b)), *all = malloc(sizeof(*all));
    thaw_hist_init(a);
    thaw_hist_init(b);
    thaw_hist_init(all);
    for (int i = 0; i < 20000; i++) {
        uint64_t x = gen_lognormalish();
        thaw_hist_add(i % 3 ? a : b, x);
        thaw_hist_add(all, x);
    }
    thaw_hist_merge(a, b);
    assert_memory_equal(a, all, sizeof(*a));
    free(a);
    free(b);
    free(all);
}

static void test_empty(void **state)
{
    thaw_hist_t h;
    thaw_hist_init(&h);
    assert_int_equal(thaw_hist_percentile(&h, 50), 0);
    assert_true(thaw_hist_mean(&h) == 0.0);
    thaw_hist_add(&h, UINT64_MAX);
    thaw_hist_add(&h, UINT64_MAX);
    assert_int_equal(h.sum, UINT64_MAX); /* saturated, not wrapped */
    assert_int_equal(thaw_hist_percentile(&h, 50), UINT64_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentiles_uniform),
        cmocka_unit_test(test_percentiles_heavy_tail),
        cmocka_unit_test(test_percentiles_small_values_exact),
        cmocka_unit_test(test_bucket_layout_is_monotonic_and_covering),
        cmocka_unit_test(test_merge_equals_single),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
