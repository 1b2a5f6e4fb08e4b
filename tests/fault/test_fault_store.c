// SPDX-License-Identifier: Apache-2.0
/*
 * Faults in the store under the vm tier (kvm suite): argv[1] is `diskfull`
 * or `lazy`, argv[2] the freestanding test guest.
 *   - the store's disk fills up during a snapshot (a small tmpfs, filled
 *     until less room is left than a snapshot needs): template.create fails
 *     with the storage-full code (-32010, not capacity) and a message
 *     naming the cause, the template created before it is
 *     intact and serves, nothing partial is left, and once there is room
 *     again the same create succeeds; after a restart the old one loads;
 *   - a memory chunk fails its checksum when the lazy engine reads it at
 *     fault time: a sandbox that faults on it is stopped and reported (an
 *     error naming the checksum, never wrong memory run), while a sandbox
 *     of the same template that already has its pages keeps serving, as do
 *     other templates, and thawd stays responsive.
 *     (This found thawd dying of SIGBUS when the poisoned page held a
 *     virtqueue read by vmm's event thread; vmm now guards those reads and
 *     shuts a stopped VM's agent channel, so the error is immediate.)
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "testlib.h"

static const char *guest;
static const char *const args[] = {"--no-default-templates", NULL};

static json_t *vm_tpl(const char *name, const char *engine, int min_ready)
{
    return json_pack("{s:s, s:s, s:s, s:i, s:s, s:i, s:i}", "name", name, "tier", "vm", "image",
                     guest, "memory_mb", 64, "engine", engine, "min_ready", min_ready, "max_ready",
                     2);
}

static void run_echo(th_conn_t *c, const char *tpl, const char *word)
{
    char want[64];
    snprintf(want, sizeof(want), "%s\n", word);
    json_t *r =
        th_ok(c, "sandbox.run", json_pack("{s:s, s:[s,s]}", "template", tpl, "argv", "echo", word));
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), want);
    json_decref(r);
}

static uint64_t du_bytes(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "du -sb '%s' 2>/dev/null", path);
    FILE *p = popen(cmd, "r");
    unsigned long long v = 0;
    if (p && fscanf(p, "%llu", &v) != 1)
        v = 0;
    if (p)
        pclose(p);
    return v;
}

static void test_store_disk_full_during_snapshot(void **state)
{
    (void)state;
    th_daemon_t d = {0};
    char store[400];
    th_tmpfs_store(&d, "/tmp/thaw-fault-store-XXXXXX", "64m", store, sizeof(store));

    assert_int_equal(th_start(&d, args), 0);
    th_conn_t c;
    assert_int_equal(th_connect(&c, d.sock), 0);
    json_decref(th_ok(&c, "template.create", vm_tpl("a", "eager", 1)));
    run_echo(&c, "a", "before");
    char adir[500];
    snprintf(adir, sizeof(adir), "%s/templates/a", store);
    uint64_t need = du_bytes(adir);
    fprintf(stderr, "a snapshot takes %llu bytes\n", (unsigned long long)need);
    assert_true(need > 0);

    /* Leave less room than a snapshot needs. */
    struct statvfs vf;
    assert_int_equal(statvfs(store, &vf), 0);
    uint64_t avail = (uint64_t)vf.f_bavail * vf.f_frsize;
    uint64_t fill = avail > need / 2 ? avail - need / 2 : 0;
    char filler[500];
    snprintf(filler, sizeof(filler), "%s/filler", store);
    int fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    static char block[1 << 16];
    memset(block, 0xa5, sizeof(block));
    for (uint64_t w = 0; w < fill;) {
        ssize_t n = write(fd, block, fill - w < sizeof(block) ? fill - w : sizeof(block));
        if (n <= 0)
            break;
        w += (uint64_t)n;
    }
    close(fd);

    json_t *r = th_call(&c, "template.create", vm_tpl("b", "eager", 1));
    assert_non_null(r);
    fprintf(stderr, "create on a full disk: %d %s\n", th_code(r), th_msg(r));
    /* Storage full (-32010), not capacity (-32002): waiting does not help. */
    assert_int_equal(th_code(r), -32010);
    assert_non_null(strstr(th_msg(r), "No space left"));
    json_decref(r);

    /* a is intact; b left nothing behind. */
    run_echo(&c, "a", "during");
    char bdir[500];
    snprintf(bdir, sizeof(bdir), "%s/templates/b", store);
    struct stat st;
    assert_int_equal(stat(bdir, &st), -1);
    r = th_call(&c, "template.get", json_pack("{s:s}", "name", "b"));
    assert_int_equal(th_code(r), -32001);
    json_decref(r);

    /* Room again: the same create works. */
    unlink(filler);
    json_decref(th_ok(&c, "template.create", vm_tpl("b", "eager", 0)));
    run_echo(&c, "b", "after");

    /* And a restart loads both. */
    th_close(&c);
    assert_int_equal(th_stop(&d), 0);
    assert_int_equal(th_start(&d, args), 0);
    assert_int_equal(th_connect(&c, d.sock), 0);
    run_echo(&c, "a", "restarted");
    run_echo(&c, "b", "restarted");
    th_close(&c);
    assert_int_equal(th_stop(&d), 0);
    th_unmount_store(&d);
    th_cleanup(&d);
}

/* Flip bytes inside every stored (non-zero) chunk of memory.bin. */
static int corrupt_chunks(const char *path)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    uint8_t hdr[64];
    assert_int_equal(pread(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
    assert_memory_equal(hdr, "THAWMEM\0", 8);
    uint64_t nchunks, table;
    memcpy(&nchunks, hdr + 24, 8);
    memcpy(&table, hdr + 40, 8);
    int n = 0;
    for (uint64_t i = 0; i < nchunks; i++) {
        uint8_t e[24];
        assert_int_equal(pread(fd, e, sizeof(e), (off_t)(table + i * 24)), (ssize_t)sizeof(e));
        uint64_t off;
        uint32_t stored;
        memcpy(&off, e, 8);
        memcpy(&stored, e + 8, 4);
        if (!stored)
            continue;
        uint8_t b;
        off_t at = (off_t)(off + stored / 2);
        assert_int_equal(pread(fd, &b, 1, at), 1);
        b ^= 0x5a;
        assert_int_equal(pwrite(fd, &b, 1, at), 1);
        n++;
    }
    fsync(fd);
    close(fd);
    return n;
}

static void test_lazy_chunk_checksum_failure_stops_only_that_sandbox(void **state)
{
    (void)state;
    th_daemon_t d = {0};
    assert_int_equal(th_start(&d, args), 0);
    th_conn_t c;
    assert_int_equal(th_connect(&c, d.sock), 0);
    json_decref(th_ok(&c, "template.create", vm_tpl("lz", "lazy", 0)));
    json_decref(th_ok(&c, "template.create", vm_tpl("other", "eager", 1)));

    /* A sandbox that has run once has its working pages. */
    json_t *a = th_ok(&c, "sandbox.acquire", json_pack("{s:s}", "template", "lz"));
    const char *id = json_string_value(json_object_get(a, "id"));
    for (int i = 0; i < 3; i++) {
        json_t *r = th_ok(&c, "sandbox.exec",
                          json_pack("{s:s, s:[s,s]}", "id", id, "argv", "echo", "warm"));
        json_decref(r);
    }

    char mem[600];
    snprintf(mem, sizeof(mem), "%s/templates/lz/snapshot/memory.bin", d.store);
    int n = corrupt_chunks(mem);
    fprintf(stderr, "corrupted %d stored chunks\n", n);
    assert_true(n > 0);
    /* What the page cache holds is what the next fault reads. */

    /* New sandboxes of lz fault on bad chunks: stopped and reported. */
    int failed = 0;
    for (int i = 0; i < 3; i++) {
        json_t *r = th_call(&c, "sandbox.run",
                            json_pack("{s:s, s:[s,s], s:i}", "template", "lz", "argv", "echo",
                                      "fresh", "timeout_ms", 10000));
        if (!r) {
            int st = 0;
            pid_t w = waitpid(d.pid, &st, WNOHANG);
            th_dump_log(&d);
            if (w == d.pid)
                d.pid = 0;
            fail_msg("no reply to sandbox.run on a corrupt lazy template (thawd %s, status 0x%x)",
                     w == 0 ? "alive" : "gone", st);
        }
        if (th_code(r)) {
            failed++;
            fprintf(stderr, "fresh lz sandbox: %d %s\n", th_code(r), th_msg(r));
            /* Reported: the error names the bad chunk. */
            assert_non_null(strstr(th_msg(r), "chunk"));
        } else {
            /* Never wrong memory: if it answered at all, it answered right. */
            json_t *res = json_object_get(r, "result");
            assert_string_equal(json_string_value(json_object_get(res, "stdout")), "fresh\n");
        }
        json_decref(r);
    }
    assert_true(failed > 0);

    /* The sandbox that had its pages, the other template, and thawd carry on. */
    json_t *r =
        th_call(&c, "sandbox.exec", json_pack("{s:s, s:[s,s]}", "id", id, "argv", "echo", "still"));
    assert_non_null(r);
    if (th_code(r))
        fprintf(stderr, "the warm lz sandbox: %d %s\n", th_code(r), th_msg(r));
    else
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(r, "result"), "stdout")), "still\n");
    json_decref(r);
    json_decref(a);
    run_echo(&c, "other", "unaffected");
    json_decref(th_ok(&c, "server.stats", NULL));
    /* No sandbox of lz is left running after its failures. */
    assert_true(th_wait_pool(&c, "lz", "in_use", 1, 20000));
    th_close(&c);
    assert_int_equal(th_stop(&d), 0);
    th_cleanup(&d);
}

int main(int argc, char **argv)
{
    thaw_test_require_kvm();
    if (argc < 3)
        thaw_test_skip("no test guest image was built");
    guest = argv[2];
    const struct CMUnitTest diskfull[] = {
        cmocka_unit_test(test_store_disk_full_during_snapshot),
    };
    const struct CMUnitTest lazy[] = {
        cmocka_unit_test(test_lazy_chunk_checksum_failure_stops_only_that_sandbox),
    };
    if (!strcmp(argv[1], "lazy"))
        return cmocka_run_group_tests(lazy, NULL, NULL);
    return cmocka_run_group_tests(diskfull, NULL, NULL);
}
