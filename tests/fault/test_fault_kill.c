// SPDX-License-Identifier: Apache-2.0
/*
 * thawd killed with SIGKILL at the worst moments, then restarted on the same
 * store and socket.  What must hold after each restart:
 *   - thawd starts (the dead one's socket is stale and is replaced);
 *   - the store holds only complete templates: each one listed is usable
 *     (sandbox.run works, so its snapshot or root opened), each one absent
 *     left no directory; no temporary file or snapshot directory remains;
 *   - nothing of the killed thawd survives: every process it had started
 *     (agents, sandboxes, their children) is gone, and no sentry cgroup
 *     named after its pid remains; no mount refers to the test's directory.
 * The moments: during template creation (at each progress stage the
 * creation reports, and in the vm tier while the snapshot is being
 * written), and during a burst of acquires from several clients.
 * argv[1] is the tier: `process` (unit suite), `sentry` (priv), `vm` (kvm;
 * argv[2] is the test guest image).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "testlib.h"

static const char *tier;
static const char *image; /* vm: the test guest */

static const char *const *daemon_args(void)
{
    static const char *args[8];
    return th_tier_args(tier, NULL, args, 8);
}

static json_t *tpl_params(const char *name, int min_ready)
{
    return th_tpl_params(tier, image, "lazy", "{s:s, s:i, s:i, s:i}", "name", name, "min_ready",
                         min_ready, "max_ready", 4, "max_total", 16);
}

/* No sentry cgroup named after the dead thawd's pid, in any hierarchy. */
static void assert_no_cgroups_of(pid_t dead)
{
    static const char *const parents[] = {
        "/sys/fs/cgroup/thaw-sentry", "/sys/fs/cgroup/pids/thaw-sentry",
        "/sys/fs/cgroup/memory/thaw-sentry", "/sys/fs/cgroup/cpu/thaw-sentry", NULL};
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "sb-%d-", (int)dead);
    for (int i = 0; parents[i]; i++) {
        DIR *d = opendir(parents[i]);
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (!strncmp(e->d_name, prefix, strlen(prefix)))
                fail_msg("cgroup %s/%s of the killed thawd remains", parents[i], e->d_name);
        if (d)
            closedir(d);
    }
}

static void assert_no_mounts_under(const char *dir)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[4096];
    while (f && fgets(line, sizeof(line), f))
        if (strstr(line, dir))
            fail_msg("a mount under %s remains: %s", dir, line);
    if (f)
        fclose(f);
}

/* Walk the store: nothing temporary remains. */
static void assert_no_temporaries(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (strstr(e->d_name, ".tmp"))
            fail_msg("temporary %s/%s remains in the store", path, e->d_name);
        if (e->d_type == DT_DIR) {
            char sub[1024];
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            assert_no_temporaries(sub);
        }
    }
    if (d)
        closedir(d);
}

static void sigkill(th_daemon_t *d, pid_t *procs, int *nprocs)
{
    *nprocs = th_descendants(d->pid, procs, 0, 4096);
    pid_t dead = d->pid;
    kill(dead, SIGKILL);
    waitpid(dead, NULL, 0);
    d->pid = 0;
    /* A child caught between fork and exec may hold the listener for a
     * moment after thawd is gone; the restart's own readiness probe must
     * not reach that one.  Bounded: such a child execs or dies at once. */
    th_conn_t probe;
    for (int i = 0; i < 250 && th_connect(&probe, d->sock) == 0; i++) {
        th_close(&probe);
        th_sleep_ms(20);
    }
}

/* Restart and check everything in this file's header; returns the names listed. */
static json_t *restart_and_check(th_daemon_t *d, th_conn_t *c, pid_t dead, const pid_t *procs,
                                 int nprocs)
{
    /* Nothing the killed thawd started may outlive it (bounded wait: a
     * sandbox notices its channel closing, or the restart sweeps it). */
    assert_int_equal(th_start(d, daemon_args()), 0);
    assert_int_equal(th_connect(c, d->sock), 0);
    for (int i = 0; i < nprocs; i++) {
        if (!th_wait_gone(procs[i], 15000))
            fail_msg("process %d of the killed thawd %d still runs", (int)procs[i], (int)dead);
    }
    assert_no_cgroups_of(dead);
    assert_no_mounts_under(d->dir);
    assert_no_temporaries(d->store);

    json_t *lr = th_call(c, "template.list", NULL);
    if (!lr || th_code(lr)) {
        int e = errno, st = 0;
        waitpid(d->pid, &st, WNOHANG);
        fprintf(stderr, "thawd wait status 0x%x\n", st);
        th_dump_log(d);
        fail_msg("template.list after the restart: %s (errno %s, thawd %d running: %d)",
                 lr ? th_msg(lr) : "no reply", strerror(e), (int)d->pid, th_running(d->pid));
    }
    json_t *l = json_incref(json_object_get(lr, "result"));
    json_decref(lr);
    json_t *names = json_array();
    size_t i;
    json_t *t;
    json_array_foreach (json_object_get(l, "templates"), i, t)
        json_array_append(names, json_object_get(t, "name"));
    json_decref(l);
    /* A listed template is complete: it runs. */
    json_array_foreach (names, i, t) {
        json_t *r = th_ok(c, "sandbox.run",
                          json_pack("{s:O, s:[s,s]}", "template", t, "argv", "echo", "alive"));
        assert_string_equal(json_string_value(json_object_get(r, "stdout")), "alive\n");
        json_decref(r);
    }
    /* Every directory under templates/ is a listed template. */
    char tdir[400];
    snprintf(tdir, sizeof(tdir), "%s/templates", d->store);
    DIR *dd = opendir(tdir);
    struct dirent *e;
    while (dd && (e = readdir(dd))) {
        if (e->d_name[0] == '.')
            continue;
        bool listed = false;
        json_array_foreach (names, i, t)
            listed |= !strcmp(json_string_value(t), e->d_name);
        if (!listed)
            fail_msg("store keeps '%s', which thawd does not list", e->d_name);
    }
    if (dd)
        closedir(dd);
    return names;
}

static bool has_name(json_t *names, const char *n)
{
    size_t i;
    json_t *t;
    json_array_foreach (names, i, t)
        if (!strcmp(json_string_value(t), n))
            return true;
    return false;
}

/* Start thawd for this tier, or skip if the tier cannot run here. */
static void start(th_daemon_t *d, th_conn_t *c)
{
    assert_int_equal(th_start(d, daemon_args()), 0);
    assert_int_equal(th_connect(c, d->sock), 0);
    th_skip_unless_tier(d, c, tier);
}

/*
 * Kill during template.create: first at each progress stage it reports
 * (the kill follows the notification at once), then after the create's
 * reply (the template must then survive).
 */
static void test_sigkill_during_template_create(void **state)
{
    (void)state;
    th_daemon_t d = {0};
    th_conn_t c;
    start(&d, &c);
    static pid_t procs[4096];
    char stages[16][32];
    int nstages = 0;
    /* Learn the stages from one full create. */
    json_t *r = th_call(&c, "template.create", tpl_params("first", 1));
    assert_non_null(r);
    assert_int_equal(th_code(r), 0);
    json_decref(r);
    size_t i;
    json_t *n;
    json_array_foreach (c.notes, i, n) {
        const char *st = json_string_value(json_object_get(json_object_get(n, "params"), "stage"));
        if (st && nstages < 16)
            snprintf(stages[nstages++], sizeof(stages[0]), "%s", st);
    }
    fprintf(stderr, "%s: template.create reports %d stages\n", tier, nstages);
    th_wait_pool(&c, "first", "ready", 1, 30000);

    int survived = 0, vanished = 0;
    for (int k = 0; k <= nstages; k++) {
        char name[32];
        snprintf(name, sizeof(name), "k%d", k);
        json_t *req = json_pack("{s:s, s:i, s:s, s:o}", "jsonrpc", "2.0", "id", 900 + k, "method",
                                "template.create", "params", tpl_params(name, 1));
        char *line = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        size_t len = strlen(line);
        line[len] = '\n';
        assert_int_equal(th_send_raw(&c, line, len + 1), 0);
        free(line);
        /* Wait for stage k (or the reply, when k == nstages). */
        bool reached = false;
        while (!reached) {
            json_t *m = th_recv(&c, 60000);
            if (!m)
                fail_msg("%s: no progress or reply while creating %s", tier, name);
            const char *st =
                json_string_value(json_object_get(json_object_get(m, "params"), "stage"));
            if (k < nstages && st && !strcmp(st, stages[k]))
                reached = true;
            if (json_object_get(m, "id")) {
                if (th_code(m))
                    fail_msg("%s: create %s failed: %s", tier, name, th_msg(m));
                reached = true;
            }
            json_decref(m);
        }
        pid_t dead = d.pid;
        int nprocs;
        sigkill(&d, procs, &nprocs);
        th_close(&c);
        json_t *names = restart_and_check(&d, &c, dead, procs, nprocs);
        assert_true(has_name(names, "first"));
        if (k == nstages)
            assert_true(has_name(names, name)); /* answered means persisted */
        has_name(names, name) ? survived++ : vanished++;
        json_decref(names);
    }
    fprintf(stderr, "%s: %d kills during create: %d templates complete, %d gone without trace\n",
            tier, nstages + 1, survived, vanished);
    th_close(&c);
    pid_t last = d.pid;
    assert_int_equal(th_stop(&d), 0);
    assert_no_cgroups_of(last); /* a clean stop leaves none either */
    th_cleanup(&d);
}

/* Several clients acquiring at once; SIGKILL with acquires and restores in flight. */
static void test_sigkill_during_acquire_burst(void **state)
{
    (void)state;
    th_daemon_t d = {0};
    th_conn_t c;
    start(&d, &c);
    json_decref(th_ok(&c, "template.create", tpl_params("b", 2)));
    th_wait_pool(&c, "b", "ready", 2, 30000);
    static pid_t procs[4096];
    for (int round = 0; round < 3; round++) {
        enum { CLIENTS = 4, EACH = 6 };
        th_conn_t cl[CLIENTS];
        for (int i = 0; i < CLIENTS; i++) {
            assert_int_equal(th_connect(&cl[i], d.sock), 0);
            for (int j = 0; j < EACH; j++) {
                char line[160];
                snprintf(line, sizeof(line),
                         "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"sandbox.acquire\","
                         "\"params\":{\"template\":\"b\",\"lease_s\":%d}}\n",
                         j + 1, j % 2 ? 600 : 0);
                assert_int_equal(th_send_raw(&cl[i], line, strlen(line)), 0);
            }
        }
        /* Let some be answered (hits) and some be in the middle of a restore. */
        json_t *m = th_recv(&cl[round % CLIENTS], 30000);
        assert_non_null(m);
        json_decref(m);
        th_sleep_ms(20 * round);
        pid_t dead = d.pid;
        int nprocs;
        sigkill(&d, procs, &nprocs);
        fprintf(stderr, "%s: round %d: killed thawd with %d processes of its own\n", tier, round,
                nprocs);
        for (int i = 0; i < CLIENTS; i++)
            th_close(&cl[i]);
        th_close(&c);
        json_t *names = restart_and_check(&d, &c, dead, procs, nprocs);
        assert_true(has_name(names, "b"));
        json_decref(names);
        /* Leases do not survive thawd: none of the killed one's sandboxes is listed. */
        json_t *l = th_ok(&c, "sandbox.list", NULL);
        assert_int_equal(json_array_size(json_object_get(l, "sandboxes")), 0);
        json_decref(l);
        assert_true(th_wait_pool(&c, "b", "ready", 2, 30000));
    }
    th_close(&c);
    assert_int_equal(th_stop(&d), 0);
    th_cleanup(&d);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s process|sentry|vm [guest-image]\n", argv[0]);
        return 2;
    }
    tier = argv[1];
    if (!strcmp(tier, "sentry"))
        thaw_test_require_root();
    if (!strcmp(tier, "vm")) {
        thaw_test_require_kvm();
        if (argc < 3)
            thaw_test_skip("no test guest image was built");
        image = argv[2];
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_during_template_create),
        cmocka_unit_test(test_sigkill_during_acquire_burst),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
