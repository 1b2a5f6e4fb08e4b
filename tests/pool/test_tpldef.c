// SPDX-License-Identifier: Apache-2.0
/*
 * The template definition and its store form, without a daemon: defaults
 * validate, the text form round-trips every field (escapes included), and
 * damaged files are refused with a message naming the file, line and field.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pool/pool-internal.h"

static void test_defaults_validate(void **state)
{
    (void)state;
    pool_tpl_def_t d;
    pool_tpl_def_init(&d);
    thaw_err_t err = {0};
    assert_int_equal(pool_tpl_def_validate(&d, &err), -EINVAL); /* no name yet */
    assert_non_null(strstr(err.msg, "template name"));
    snprintf(d.name, sizeof(d.name), "py3.11_x-y");
    assert_int_equal(pool_tpl_def_validate(&d, &err), 0);
}

static void test_validation_names_the_field(void **state)
{
    (void)state;
    pool_tpl_def_t d;
    thaw_err_t err = {0};
#define BAD(stmt, words)                                                                           \
    do {                                                                                           \
        pool_tpl_def_init(&d);                                                                     \
        snprintf(d.name, sizeof(d.name), "ok");                                                    \
        stmt;                                                                                      \
        assert_int_equal(pool_tpl_def_validate(&d, &err), -EINVAL);                                \
        if (!strstr(err.msg, words))                                                               \
            fail_msg("'%s' does not mention '%s'", err.msg, words);                                \
    } while (0)
    BAD(snprintf(d.name, sizeof(d.name), "../etc"), "template name");
    BAD(snprintf(d.name, sizeof(d.name), "-x"), "template name");
    BAD(snprintf(d.tier, sizeof(d.tier), "docker"), "tier");
    BAD(d.vcpus = 0, "vcpus");
    BAD(d.memory_mb = 1, "memory_mb");
    BAD((d.min_ready = 9, d.max_ready = 8), "min_ready");
    BAD((d.max_ready = 100, d.max_total = 10), "max_ready");
    BAD(d.max_total = 0, "max_total");
    BAD(snprintf(d.engine, sizeof(d.engine), "turbo"), "engine");
    BAD(snprintf(d.tier, sizeof(d.tier), "vm"), "image");
#undef BAD
}

static void test_round_trip(void **state)
{
    (void)state;
    pool_tpl_def_t d, back;
    pool_tpl_def_init(&d);
    snprintf(d.name, sizeof(d.name), "py");
    snprintf(d.tier, sizeof(d.tier), "vm");
    snprintf(d.image, sizeof(d.image), "/k/bz Image\\odd");
    snprintf(d.initrd, sizeof(d.initrd), "/k/initrd.cpio");
    d.vcpus = 2;
    d.memory_mb = 512;
    d.nwarmup = 2;
    snprintf(d.warmup[0], POOL_WARMUP_LEN, "python3 -c 'import json, re'");
    snprintf(d.warmup[1], POOL_WARMUP_LEN, "printf 'a\\tb\\n'\nsecond line\x01");
    d.min_ready = 3;
    d.max_ready = 5;
    d.max_total = 9;
    snprintf(d.engine, sizeof(d.engine), "lazy");
    d.prefetch = 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(pool__tpl_def_write(f, &d), 0);
    fclose(f);
    f = fmemopen(buf, len, "r");
    thaw_err_t err = {0};
    assert_int_equal(pool__tpl_def_read(f, "mem", &back, &err), 0);
    fclose(f);
    free(buf);
    assert_memory_equal(&d, &back, sizeof(d));
}

static void expect_read_error(const char *text, const char *words)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    pool_tpl_def_t d;
    thaw_err_t err = {0};
    assert_true(pool__tpl_def_read(f, "t.conf", &d, &err) < 0);
    fclose(f);
    if (!strstr(err.msg, words) || !strstr(err.msg, "t.conf"))
        fail_msg("'%s' does not mention '%s' and the file", err.msg, words);
}

static void test_damaged_files(void **state)
{
    (void)state;
    expect_read_error("format=1\nname=a\nbogus=1\n", "t.conf:3: unknown key 'bogus'");
    expect_read_error("format=2\nname=a\n", "format 2");
    expect_read_error("name=a\n", "format 0");
    expect_read_error("format=1\nname=a\nvcpus=lots\n", "bad value for vcpus");
    expect_read_error("format=1\nname=a\nvcpus=-1\n", "bad value for vcpus");
    expect_read_error("format=1\nname=a\nno equals sign\n", "expected key=value");
    expect_read_error("format=1\nname=a\\q\n", "bad value for name");
    expect_read_error("format=1\nname=a\nmin_ready=99\n", "min_ready");
    char big[8192];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "format=1\nimage=", 15);
    expect_read_error(big, "line too long");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_validate),
        cmocka_unit_test(test_validation_names_the_field),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_damaged_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
