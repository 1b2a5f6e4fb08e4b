// SPDX-License-Identifier: Apache-2.0
/*
 * thawd's socket and store permissions are what docs/service.md and
 * docs/security.md say, and another uid cannot get past them:
 *   - the socket is 0660 (nothing for others), even under a permissive umask;
 *   - store directories are 0711 (not listable), template.conf is not
 *     writable by group or others, a vm snapshot directory is owner-only
 *     (guest memory may hold secrets of the warm-up);
 *   - as root, a child that drops to an unprivileged uid cannot connect to
 *     the socket, list the store, or open a snapshot's memory.
 * argv[1]: `process` (unit suite) or `vm` with the test guest as argv[2]
 * (kvm suite).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "testlib.h"

static const char *tier;
static const char *guest;

static unsigned mode_of(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        fail_msg("stat %s: %s", path, strerror(errno));
    return st.st_mode & 07777;
}

/* In a child as uid/gid 65534: 0 if every access is refused, else a code. */
static int as_nobody(const char *sock, const char *store, const char *snapmem)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (syscall(SYS_setgroups, 0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
            setresuid(65534, 65534, 65534) < 0)
            _exit(10);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(sock) >= sizeof(sa.sun_path))
            _exit(14);
        memcpy(sa.sun_path, sock, strlen(sock) + 1);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            _exit(11); /* reached thawd */
        char p[512];
        snprintf(p, sizeof(p), "%s/templates", store);
        DIR *d = opendir(p);
        if (d)
            _exit(12); /* listed the templates */
        if (snapmem && open(snapmem, O_RDONLY | O_CLOEXEC) >= 0)
            _exit(13); /* read guest memory */
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 99;
}

static void test_socket_and_store_permissions(void **state)
{
    (void)state;
    /* A permissive umask must not widen anything thawd creates. */
    umask(0);
    const char *args[8];
    th_daemon_t d = {0};
    th_conn_t c;
    assert_int_equal(th_start(&d, th_tier_args(tier, NULL, args, 8)), 0);
    assert_int_equal(th_connect(&c, d.sock), 0);
    json_decref(
        th_ok(&c, "template.create",
              th_tpl_params(tier, guest, NULL, "{s:s, s:i}", "name", "sec", "min_ready", 1)));

    unsigned m = mode_of(d.sock);
    fprintf(stderr, "socket %s: %04o\n", d.sock, m);
    assert_int_equal(m & 0007, 0);
    assert_int_equal(m & 0111, 0);

    char path[600];
    assert_int_equal(mode_of(d.store) & 0777, 0711);
    snprintf(path, sizeof(path), "%s/templates", d.store);
    assert_int_equal(mode_of(path) & 0777, 0711);
    snprintf(path, sizeof(path), "%s/templates/sec", d.store);
    assert_int_equal(mode_of(path) & 0777, 0711);
    snprintf(path, sizeof(path), "%s/templates/sec/template.conf", d.store);
    m = mode_of(path);
    fprintf(stderr, "template.conf: %04o\n", m);
    assert_int_equal(m & 0022, 0);

    char mem[700] = "";
    if (!strcmp(tier, "vm")) {
        snprintf(path, sizeof(path), "%s/templates/sec/snapshot", d.store);
        m = mode_of(path);
        fprintf(stderr, "snapshot directory: %04o\n", m);
        assert_int_equal(m & 0077, 0);
        snprintf(mem, sizeof(mem), "%s/memory.bin", path);
    }

    if (geteuid() == 0) {
        int r = as_nobody(d.sock, d.store, mem[0] ? mem : NULL);
        if (r)
            fail_msg("uid 65534 got through (child exit %d: 11 socket, 12 store, 13 memory)", r);
    } else {
        fprintf(stderr, "not root: the second-uid checks need setresuid; skipped\n");
    }
    th_close(&c);
    assert_int_equal(th_stop(&d), 0);
    th_cleanup(&d);
}

int main(int argc, char **argv)
{
    tier = argc > 1 ? argv[1] : "process";
    if (!strcmp(tier, "vm")) {
        thaw_test_require_kvm();
        if (argc < 3)
            thaw_test_skip("no test guest image was built");
        guest = argv[2];
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_socket_and_store_permissions)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
