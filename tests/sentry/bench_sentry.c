// SPDX-License-Identifier: Apache-2.0
/*
 * sentrybench: what a sentry sandbox costs.  Prints numbers, asserts none.
 *   - create-to-ready: sentry_create until the agent's HELLO (p50/p99), and
 *     destroy;
 *   - exec through the agent of /bin/true and python3 -c pass, against the
 *     same commands spawned natively;
 *   - per-call cost of getpid (allowed by the filter, not brokered) and of
 *     open/read/close (open brokered by the supervisor) inside a sandbox,
 *     against the same probe run natively.
 * Acquire from a warm pool is pool/'s number (a pop from a ready list).
 * Env: THAW_AGENT_EXE, THAW_SENTRY_PROBE; SENTRYBENCH_N (creates, default 50).
 */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/hist.h"
#include "common/log.h"
#include "guest/agent_client.h"
#include "sentry/sentry.h"
#include "testlib.h"

extern char **environ;

static void report(const char *what, const thaw_hist_t *h)
{
    printf("%-34s n=%-4llu p50=%9.3f ms  p99=%9.3f ms  mean=%9.3f ms\n", what,
           (unsigned long long)h->count, thaw_hist_percentile(h, 50) / 1e6,
           thaw_hist_percentile(h, 99) / 1e6, thaw_hist_mean(h) / 1e6);
}

static int native_run(const char *const *argv, char *out, size_t outlen)
{
    int pfd[2];
    if (pipe(pfd) < 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pfd[0]);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    size_t got = 0;
    ssize_t n;
    while (out && got + 1 < outlen && (n = read(pfd[0], out + got, outlen - 1 - got)) > 0)
        got += (size_t)n;
    if (out)
        out[got] = '\0';
    close(pfd[0]);
    if (rc != 0)
        return -1;
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int sandbox_run(agent_client_t *c, const char *const *argv, char *out, size_t outlen)
{
    agent_exec_req_t req = {.argv = argv, .timeout_ms = 60000};
    agent_exec_result_t res = {0};
    thaw_err_t err = {0};
    if (agent_client_exec(c, &req, &res, &err) < 0) {
        fprintf(stderr, "exec %s: %s\n", argv[0], thaw_err_msg(&err));
        return -1;
    }
    if (out)
        snprintf(out, outlen, "%s", res.out ? (char *)res.out : "");
    int code = res.exit_code;
    agent_exec_result_free(&res);
    return code;
}

int main(void)
{
    thaw_test_require_root();
    const char *agent = getenv("THAW_AGENT_EXE"), *probe = getenv("THAW_SENTRY_PROBE");
    if (!agent || !probe)
        thaw_test_skip("THAW_AGENT_EXE and THAW_SENTRY_PROBE must name the agent and the probe");
    int n = getenv("SENTRYBENCH_N") ? atoi(getenv("SENTRYBENCH_N")) : 50;
    if (n < 2)
        n = 2;
    if (!getenv("THAW_LOG"))
        thaw_log_set_level(THAW_LOG_WARN);

    char root[] = "/tmp/thaw-sentrybench-XXXXXX";
    if (!mkdtemp(root))
        thaw_test_skip("mkdtemp: %s", strerror(errno));
    thaw_err_t err = {0};
    char cmd[512];
    if (sentry_template_build(root, agent, NULL, &err) < 0) {
        fprintf(stderr, "template: %s\n", thaw_err_msg(&err));
        return 1;
    }
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s/.thaw/probe'", probe, root);
    if (system(cmd) != 0)
        return 1;

    sentry_supervisor_t *sup;
    if (sentry_supervisor_create(NULL, &sup, &err) < 0)
        thaw_test_skip("supervisor: %s", thaw_err_msg(&err));
    sentry_filter_info_t fi;
    sentry_supervisor_filter_info(sup, &fi);
    printf("filter: %u syscalls allowed (%u conditional), %u brokered, %u denied, %zu BPF insns\n",
           fi.allowed, fi.allowed_cond, fi.notified, fi.denied, fi.bpf_insns);

    sentry_config_t cfg = {.root = root};
    static thaw_hist_t h_create, h_ready, h_destroy;
    thaw_hist_init(&h_create);
    thaw_hist_init(&h_ready);
    thaw_hist_init(&h_destroy);
    for (int i = 0; i < n; i++) {
        sentry_t *sb;
        agent_client_t *c;
        uint64_t t0 = thaw_now_ns();
        if (sentry_create(sup, &cfg, &sb, &err) < 0) {
            fprintf(stderr, "create: %s\n", thaw_err_msg(&err));
            return 1;
        }
        uint64_t t1 = thaw_now_ns();
        if (agent_client_new(sentry_take_agent_fd(sb), &c, &err) < 0 ||
            agent_client_wait_hello(c, 10000, NULL, &err) < 0) {
            fprintf(stderr, "agent: %s\n", thaw_err_msg(&err));
            return 1;
        }
        uint64_t t2 = thaw_now_ns();
        agent_client_destroy(c);
        sentry_destroy(sb);
        uint64_t t3 = thaw_now_ns();
        thaw_hist_add(&h_create, t1 - t0);
        thaw_hist_add(&h_ready, t2 - t0);
        thaw_hist_add(&h_destroy, t3 - t2);
    }
    report("create (clone3 .. agent exec)", &h_create);
    report("create-to-ready (agent HELLO)", &h_ready);
    report("destroy", &h_destroy);

    /* One sandbox for the exec and syscall figures. */
    sentry_t *sb;
    agent_client_t *c;
    if (sentry_create(sup, &cfg, &sb, &err) < 0 ||
        agent_client_new(sentry_take_agent_fd(sb), &c, &err) < 0 ||
        agent_client_wait_hello(c, 10000, NULL, &err) < 0) {
        fprintf(stderr, "sandbox: %s\n", thaw_err_msg(&err));
        return 1;
    }
    static const struct {
        const char *label;
        const char *argv[4];
        int reps;
    } runs[] = {
        {"/bin/true", {"/bin/true", NULL}, 30},
        {"python3 -c pass", {"/usr/bin/python3", "-c", "pass", NULL}, 10},
    };
    for (size_t k = 0; k < sizeof(runs) / sizeof(runs[0]); k++) {
        static thaw_hist_t hs, hn;
        thaw_hist_init(&hs);
        thaw_hist_init(&hn);
        for (int i = 0; i < runs[k].reps; i++) {
            uint64_t t0 = thaw_now_ns();
            int a = sandbox_run(c, runs[k].argv, NULL, 0);
            uint64_t t1 = thaw_now_ns();
            int b = native_run(runs[k].argv, NULL, 0);
            uint64_t t2 = thaw_now_ns();
            if (a != 0 || b != 0) {
                fprintf(stderr, "%s: exit %d in the sandbox, %d natively\n", runs[k].label, a, b);
                return 1;
            }
            thaw_hist_add(&hs, t1 - t0);
            thaw_hist_add(&hn, t2 - t1);
        }
        char label[80];
        snprintf(label, sizeof(label), "run %s (sandbox, agent)", runs[k].label);
        report(label, &hs);
        snprintf(label, sizeof(label), "run %s (native spawn)", runs[k].label);
        report(label, &hn);
    }

    const char *bench_in[] = {"/.thaw/probe", "bench", "200000", "/usr/lib/os-release", NULL};
    const char *bench_nat[] = {probe, "bench", "200000", "/usr/lib/os-release", NULL};
    char out_in[256], out_nat[256];
    double g_in = 0, o_in = 0, g_nat = 0, o_nat = 0, s_in = 0, s_nat = 0;
    if (sandbox_run(c, bench_in, out_in, sizeof(out_in)) != 0 ||
        native_run(bench_nat, out_nat, sizeof(out_nat)) != 0 ||
        sscanf(out_in, "getpid_ns=%lf open_read_close_ns=%lf stat_ns=%lf", &g_in, &o_in, &s_in) !=
            3 ||
        sscanf(out_nat, "getpid_ns=%lf open_read_close_ns=%lf stat_ns=%lf", &g_nat, &o_nat,
               &s_nat) != 3) {
        fprintf(stderr, "syscall bench failed: in '%s' native '%s'\n", out_in, out_nat);
        return 1;
    }
    printf("getpid (filtered, not brokered):  sandbox %8.1f ns  native %8.1f ns  ratio %.2fx\n",
           g_in, g_nat, g_in / g_nat);
    printf("open+read+close (open brokered):  sandbox %8.1f ns  native %8.1f ns  ratio %.2fx\n",
           o_in, o_nat, o_in / o_nat);
    printf("stat (checked, continued):        sandbox %8.1f ns  native %8.1f ns  ratio %.2fx\n",
           s_in, s_nat, s_in / s_nat);
    sentry_stats_t st;
    sentry_supervisor_stats(sup, &st);
    printf("supervisor: %llu notifications, %llu continued, %llu emulated, %llu denied, %llu "
           "stale, %.1f us busy per notification\n",
           (unsigned long long)st.notifications, (unsigned long long)st.continued,
           (unsigned long long)st.emulated, (unsigned long long)st.denied,
           (unsigned long long)st.stale,
           st.notifications ? (double)st.busy_ns / 1e3 / (double)st.notifications : 0.0);

    agent_client_destroy(c);
    sentry_destroy(sb);
    sentry_supervisor_destroy(sup);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return 0;
}
