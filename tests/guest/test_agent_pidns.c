// SPDX-License-Identifier: Apache-2.0
/*
 * thaw-agent as the sentry tier runs it: PID 1 of a fresh pid namespace with
 * its channel in THAW_AGENT_FD and no THAW_AGENT_MODE, so the mode is
 * guessed.  Checks that it says it is in sentry mode, runs commands, reaps
 * orphans re-parented to it, leaves the host's mounts and hostname alone,
 * does not apply THAW, and exits on SHUTDOWN.  Needs root (CLONE_NEWPID).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest/agent_client.h"
#include "testlib.h"

static pid_t helper = -1;    /* our child, parent of the namespace's PID 1 */
static pid_t agent_pid = -1; /* the agent, as the host sees it */
static agent_client_t *client;

/*
 * Mounts on the places the agent mounts when it is a VM's PID 1 (see
 * agent__pid1_setup).  Only these, not every line of /proc/self/mounts:
 * other tests running beside this one mount file systems of their own on
 * the host (snapshot_writer_enospc's loop device), which once made a plain
 * count fail here.
 */
static int count_agent_mounts(void)
{
    static const char *const places[] = {"/proc",    "/sys", "/dev", "/dev/pts",
                                         "/dev/shm", "/tmp", "/run"};
    FILE *f = fopen("/proc/self/mounts", "re");
    if (!f)
        return -1;
    int n = 0;
    char line[4096], dev[4096], dir[4096];
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "%4095s %4095s", dev, dir) == 2)
            for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++)
                n += !strcmp(dir, places[i]);
    fclose(f);
    return n;
}

static void start_in_pidns(void)
{
    int sv[2], report[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(pipe2(report, O_CLOEXEC), 0);
    helper = fork();
    assert_true(helper >= 0);
    if (helper == 0) {
        if (unshare(CLONE_NEWPID) < 0)
            _exit(100);
        pid_t pid = fork(); /* PID 1 of the new namespace */
        if (pid < 0)
            _exit(101);
        if (pid == 0) {
            if (dup2(sv[1], 3) < 0)
                _exit(102);
            unsetenv("THAW_AGENT_MODE");
            setenv("THAW_AGENT_FD", "3", 1);
            const char *exe = getenv("THAW_AGENT_EXE");
            execl(exe, exe, (char *)NULL);
            _exit(103);
        }
        if (write(report[1], &pid, sizeof(pid)) != sizeof(pid))
            _exit(104);
        int st;
        waitpid(pid, &st, 0);
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
    close(sv[1]);
    close(report[1]);
    assert_int_equal(read(report[0], &agent_pid, sizeof(agent_pid)), sizeof(agent_pid));
    close(report[0]);
    thaw_err_t err;
    assert_int_equal(agent_client_new(sv[0], &client, &err), 0);
}

static void test_sentry_mode(void **state)
{
    int mounts_before = count_agent_mounts();
    char host_before[256] = "";
    gethostname(host_before, sizeof(host_before));
    start_in_pidns();

    agent_hello_t h;
    thaw_err_t err;
    assert_int_equal(agent_client_wait_hello(client, 10000, &h, &err), 0);
    assert_string_equal(h.mode, "sentry");
    assert_false(h.caps & AGENTWIRE_CAP_THAW);

    /* commands run inside the namespace: the shell's parent is PID 1 */
    agent_exec_result_t r;
    agent_exec_req_t req = {.argv = (const char *const[]){"sh", "-c", "echo $PPID", NULL},
                            .timeout_ms = 20000};
    assert_int_equal(agent_client_exec(client, &req, &r, &err), 0);
    assert_string_equal((char *)r.out, "1\n");
    agent_exec_result_free(&r);

    /* orphans re-parented to PID 1 are reaped */
    agent_exec_req_t orphans = {
        .argv =
            (const char *const[]){"sh", "-c", "for i in 1 2 3 4 5; do (sleep 0.1 &); done", NULL},
        .timeout_ms = 20000};
    assert_int_equal(agent_client_exec(client, &orphans, &r, &err), 0);
    agent_exec_result_free(&r);
    char path[128];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", agent_pid, agent_pid);
    char buf[256] = "x";
    for (int i = 0; i < 300 && buf[0]; i++) {
        usleep(10000);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        buf[0] = '\0';
        if (!fgets(buf, sizeof(buf), f))
            buf[0] = '\0';
        fclose(f);
    }
    assert_string_equal(buf, ""); /* no child left, zombie or not */

    bool applied = true;
    assert_int_equal(agent_client_thaw(client, "abcd", 4, 0, 5000, &applied, &err), 0);
    assert_false(applied);

    /* nothing mounted on the host, hostname untouched */
    assert_int_equal(count_agent_mounts(), mounts_before);
    char host_after[256] = "";
    gethostname(host_after, sizeof(host_after));
    assert_string_equal(host_after, host_before);

    assert_int_equal(agent_client_shutdown(client, 5000, &err), 0);
    int st;
    assert_int_equal(waitpid(helper, &st, 0), helper);
    helper = -1;
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    agent_client_destroy(client);
    client = NULL;
}

/* After a failed check: the agent and its parent still hold our stdout, and
 * meson would wait for them until the test's timeout. */
static int kill_leftovers(void **state)
{
    (void)state;
    if (helper > 0) {
        if (agent_pid > 0)
            kill(agent_pid, SIGKILL);
        kill(helper, SIGKILL);
        waitpid(helper, NULL, 0);
        helper = -1;
    }
    if (client) {
        agent_client_destroy(client);
        client = NULL;
    }
    return 0;
}

int main(void)
{
    thaw_test_require_root();
    if (!getenv("THAW_AGENT_EXE"))
        thaw_test_skip("THAW_AGENT_EXE is not set: run through meson test");
    if (unshare(0) < 0)
        thaw_test_skip("unshare unavailable");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sentry_mode, kill_leftovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
