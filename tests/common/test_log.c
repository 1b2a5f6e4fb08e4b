// SPDX-License-Identifier: Apache-2.0
/* Logging: level parsing, threshold, one key=value line per event. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"

static void read_pipe(int fd, char *buf, size_t cap)
{
    ssize_t n = read(fd, buf, cap - 1);
    assert_true(n >= 0);
    buf[n] = '\0';
}

static void test_parse_level(void **state)
{
    thaw_log_level_t l;
    assert_int_equal(thaw_log_parse_level("debug", &l), 0);
    assert_int_equal(l, THAW_LOG_DEBUG);
    assert_int_equal(thaw_log_parse_level("error", &l), 0);
    assert_int_equal(l, THAW_LOG_ERROR);
    assert_int_equal(thaw_log_parse_level("loud", &l), -EINVAL);
    assert_int_equal(thaw_log_parse_level(NULL, &l), -EINVAL);
}

static void test_line_format_and_threshold(void **state)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    thaw_log_set_fd(p[1]);
    thaw_log_set_level(THAW_LOG_WARN);
    thaw_info("pool", "refill", "n=%d", 3); /* below threshold */
    thaw_warn("pool", "refill_failed", "template=%s n=%d", "py", 2);
    thaw_log_set_fd(-1);
    close(p[1]);
    char buf[4096];
    read_pipe(p[0], buf, sizeof(buf));
    close(p[0]);
    assert_null(strstr(buf, "event=refill "));
    assert_non_null(strstr(buf, "level=warn mod=pool event=refill_failed template=py n=2\n"));
    assert_int_equal(strchr(buf, '\n') - buf + 1, (long)strlen(buf)); /* one line */
}

static void test_long_line_is_cut_not_overflowed(void **state)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    thaw_log_set_fd(p[1]);
    thaw_log_set_level(THAW_LOG_DEBUG);
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    thaw_debug("t", "big", "v=%s", big);
    thaw_log_set_fd(-1);
    close(p[1]);
    char buf[8192];
    read_pipe(p[0], buf, sizeof(buf));
    close(p[0]);
    size_t n = strlen(buf);
    assert_true(n <= 2048);
    assert_int_equal(buf[n - 1], '\n');
    assert_non_null(strstr(buf, "...\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_level),
        cmocka_unit_test(test_line_format_and_threshold),
        cmocka_unit_test(test_long_line_is_cut_not_overflowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
