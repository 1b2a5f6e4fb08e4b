// SPDX-License-Identifier: Apache-2.0
/* thaw_err_t: set, errno formatting, wrapping with context, truncation. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"

static void test_set_returns_negative_code(void **state)
{
    thaw_err_t err;
    thaw_err_clear(&err);
    assert_int_equal(thaw_err_set(&err, EINVAL, "bad value %d", 7), -EINVAL);
    assert_int_equal(err.code, EINVAL);
    assert_string_equal(thaw_err_msg(&err), "bad value 7");
    /* a negative code is taken as -errno */
    assert_int_equal(thaw_err_set(&err, -ENOENT, "x"), -ENOENT);
    assert_int_equal(err.code, ENOENT);
}

static void test_sys_appends_strerror(void **state)
{
    thaw_err_t err;
    thaw_err_sys(&err, ENOENT, "open '%s'", "/nope");
    assert_string_equal(err.msg, "open '/nope': No such file or directory");
}

static void test_wrap_adds_context_outermost_first(void **state)
{
    thaw_err_t err;
    thaw_err_set(&err, EBADMSG, "checksum mismatch");
    thaw_err_wrap(&err, "memory chunk %d", 812);
    assert_int_equal(thaw_err_wrap(&err, "restore snapshot '%s'", "py311"), -EBADMSG);
    assert_string_equal(err.msg, "restore snapshot 'py311': memory chunk 812: checksum mismatch");
    assert_int_equal(err.code, EBADMSG);
}

static void test_wrap_truncates_without_overflow(void **state)
{
    thaw_err_t err;
    char big[THAW_ERR_MSG_MAX * 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    thaw_err_set(&err, EIO, "%s", big);
    assert_int_equal(strlen(err.msg), THAW_ERR_MSG_MAX - 1);
    thaw_err_wrap(&err, "ctx");
    assert_int_equal(strlen(err.msg), THAW_ERR_MSG_MAX - 1);
    assert_memory_equal(err.msg, "ctx: aaa", 8);
}

static void test_null_err_is_allowed(void **state)
{
    assert_int_equal(thaw_err_set(NULL, EPERM, "x"), -EPERM);
    assert_int_equal(thaw_err_wrap(NULL, "y"), -EIO);
    assert_string_equal(thaw_err_msg(NULL), "");
    thaw_err_clear(NULL);
}

static void test_zero_code_becomes_eio(void **state)
{
    thaw_err_t err;
    assert_int_equal(thaw_err_set(&err, 0, "unknown"), -EIO);
    thaw_err_clear(&err);
    assert_int_equal(thaw_err_wrap(&err, "only context"), -EIO);
    assert_string_equal(err.msg, "only context");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_returns_negative_code),
        cmocka_unit_test(test_sys_appends_strerror),
        cmocka_unit_test(test_wrap_adds_context_outermost_first),
        cmocka_unit_test(test_wrap_truncates_without_overflow),
        cmocka_unit_test(test_null_err_is_allowed),
        cmocka_unit_test(test_zero_code_becomes_eio),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
