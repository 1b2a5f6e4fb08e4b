// SPDX-License-Identifier: Apache-2.0
/* crc32c against published vectors (RFC 3720 B.4), hardware vs software. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/crc32c.h"

static void check_both(const void *buf, size_t len, uint32_t want)
{
    assert_int_equal(thaw_crc32c(0, buf, len), want);
    assert_int_equal(thaw_crc32c_sw(0, buf, len), want);
}

static void test_check_value(void **state)
{
    check_both("123456789", 9, 0xE3069283u);
    check_both("", 0, 0);
}

static void test_rfc3720_vectors(void **state)
{
    unsigned char b[32];
    memset(b, 0, sizeof(b));
    check_both(b, 32, 0x8A9136AAu);
    memset(b, 0xff, sizeof(b));
    check_both(b, 32, 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)i;
    check_both(b, 32, 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)(31 - i);
    check_both(b, 32, 0x113FDB5Cu);
}

static void test_incremental_equals_oneshot_any_alignment(void **state)
{
    size_t n = 70000;
    unsigned char *b = malloc(n + 8);
    assert_non_null(b);
    for (size_t i = 0; i < n + 8; i++)
        b[i] = (unsigned char)(i * 131 + 7);
    for (size_t off = 0; off < 8; off++) {
        uint32_t one = thaw_crc32c(0, b + off, n);
        assert_int_equal(one, thaw_crc32c_sw(0, b + off, n));
        uint32_t inc = thaw_crc32c(0, b + off, 13);
        inc = thaw_crc32c(inc, b + off + 13, 4096);
        inc = thaw_crc32c(inc, b + off + 13 + 4096, n - 13 - 4096);
        assert_int_equal(one, inc);
    }
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_value),
        cmocka_unit_test(test_rfc3720_vectors),
        cmocka_unit_test(test_incremental_equals_oneshot_any_alignment),
    };
    printf("# crc32c hardware path: %s\n", thaw_crc32c_hw_available() ? "sse4.2" : "table");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
