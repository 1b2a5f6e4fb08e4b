// SPDX-License-Identifier: Apache-2.0
/*
 * A full store is its own error, not a capacity refusal (priv suite: it
 * mounts a small tmpfs as thawd's store; the process tier needs no KVM).
 * What must hold:
 *   - writing the store on a full disk (template.create, pool.configure)
 *     answers -32010 "storage full" with the kernel's reason in the message,
 *     and leaves the connection usable;
 *   - the pool's own limits still answer -32002 (capacity), full disk or not,
 *     so a client can tell "retry shortly" from "someone must free space";
 *   - sandboxes of the existing template keep serving throughout.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "testlib.h"

/* Fill the filesystem holding path until a write fails with ENOSPC. */
static void fill(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    static char block[1 << 16];
    memset(block, 0xa5, sizeof(block));
    size_t n = sizeof(block);
    while (n >= 1) {
        ssize_t w = write(fd, block, n);
        if (w < 0 && errno == ENOSPC)
            n /= 2; /* down to the last byte */
        else
            assert_true(w > 0);
    }
    close(fd);
}

static void expect_code(th_conn_t *c, const char *method, json_t *params, int code,
                        const char *words)
{
    json_t *r = th_call(c, method, params);
    assert_non_null(r);
    fprintf(stderr, "%s: %d %s\n", method, th_code(r), th_msg(r));
    if (th_code(r) != code || !strstr(th_msg(r), words))
        fail_msg("%s: got %d '%s', wanted %d with '%s'", method, th_code(r), th_msg(r), code,
                 words);
    json_decref(r);
}

static void test_full_store_is_not_capacity(void **state)
{
    (void)state;
    th_daemon_t d = {0};
    char store[400];
    th_tmpfs_store(&d, "/tmp/thaw-rpc-nospace-XXXXXX", "1m", store, sizeof(store));

    static const char *const args[] = {"--enable-process-tier", "--no-default-templates", NULL};
    assert_int_equal(th_start(&d, args), 0);
    th_conn_t c;
    assert_int_equal(th_connect(&c, d.sock), 0);
    json_decref(th_ok(&c, "template.create",
                      json_pack("{s:s, s:s, s:i, s:i}", "name", "a", "tier", "process", "min_ready",
                                0, "max_total", 2)));
    char filler[500];
    snprintf(filler, sizeof(filler), "%s/filler", store);
    fill(filler);

    expect_code(&c, "template.create", json_pack("{s:s, s:s}", "name", "b", "tier", "process"),
                -32010, "No space left");
    expect_code(&c, "pool.configure", json_pack("{s:s, s:i}", "name", "a", "min_ready", 2), -32010,
                "No space left");
    /* The pool's limit is still capacity: two held of max_total 2 (with
     * min_ready 0 no refill races the count). */
    json_decref(th_ok(&c, "sandbox.acquire", json_pack("{s:s}", "template", "a")));
    json_decref(th_ok(&c, "sandbox.acquire", json_pack("{s:s}", "template", "a")));
    expect_code(&c, "sandbox.acquire", json_pack("{s:s}", "template", "a"), -32002, "capacity");
    expect_code(&c, "sandbox.run", json_pack("{s:s, s:[s]}", "template", "a", "argv", "true"),
                -32002, "capacity");

    /* Room again: the same writes work, and the connection was usable all along. */
    unlink(filler);
    json_decref(
        th_ok(&c, "template.create",
              json_pack("{s:s, s:s, s:i}", "name", "b", "tier", "process", "min_ready", 0)));
    json_t *r = th_ok(&c, "sandbox.run",
                      json_pack("{s:s, s:[s,s]}", "template", "b", "argv", "echo", "room"));
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "room\n");
    json_decref(r);
    th_close(&c);
    int st = th_stop(&d);
    if (st != 0)
        th_dump_log(&d);
    th_unmount_store(&d);
    th_cleanup(&d);
    assert_int_equal(st, 0);
}

int main(void)
{
    if (!getenv("THAWD"))
        thaw_test_skip("$THAWD is not set: run through meson test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_store_is_not_capacity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
