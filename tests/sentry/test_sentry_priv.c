// SPDX-License-Identifier: Apache-2.0
/*
 * sentry/ end to end, as root: real sandboxes with thaw-agent as PID 1,
 * commands through the agent, and the escape and abuse suite, one named test
 * each, run by sentry-probe inside the sandbox.  Every test forks (cmocka
 * does not), so a sandbox, its supervisor thread and any damage stay in a
 * child; the child reports with its exit status.
 *
 * Needs: root, the agent (THAW_AGENT_EXE), the probe (THAW_SENTRY_PROBE),
 * busybox.  Each denial must also appear in the supervisor's log with the
 * sandbox id: the child points thaw's log at a file and greps it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "guest/agent_client.h"
#include "sentry/sentry.h"
#include "testlib.h"

static const char *g_agent, *g_probe;
static char g_root[256], g_secret[256];

/* ---- helpers that run in the forked child ------------------------------- */

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            fflush(stdout);                                                                        \
            _exit(1);                                                                              \
        }                                                                                          \
    } while (0)

typedef struct env {
    sentry_supervisor_t *sup;
    sentry_t *sb;
    agent_client_t *c;
    char logpath[64];
} env_t;

static void cfg_default(sentry_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->root = g_root;
    cfg->memory_bytes = 256ull << 20;
    cfg->pids_max = 64;
    cfg->tmp_bytes = 8ull << 20;
    cfg->work_bytes = 16ull << 20;
}

static void env_sup(env_t *e)
{
    snprintf(e->logpath, sizeof(e->logpath), "/tmp/thaw-sentry-log-%d", (int)getpid());
    int lfd = open(e->logpath, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
    CHECK(lfd >= 0, "log file: %s", strerror(errno));
    thaw_log_set_fd(lfd);
    thaw_err_t err = {0};
    int rc = sentry_supervisor_create(NULL, &e->sup, &err);
    CHECK(rc == 0, "supervisor: %s", thaw_err_msg(&err));
}

static void env_sandbox(env_t *e, const sentry_config_t *cfg)
{
    thaw_err_t err = {0};
    int rc = sentry_create(e->sup, cfg, &e->sb, &err);
    CHECK(rc == 0, "sentry_create: %s", thaw_err_msg(&err));
    rc = agent_client_new(sentry_take_agent_fd(e->sb), &e->c, &err);
    CHECK(rc == 0, "agent client: %s", thaw_err_msg(&err));
    rc = agent_client_wait_hello(e->c, 10000, NULL, &err);
    CHECK(rc == 0, "agent hello: %s", thaw_err_msg(&err));
}

static void env_up(env_t *e, const sentry_config_t *cfg)
{
    env_sup(e);
    env_sandbox(e, cfg);
}

static void env_down(env_t *e)
{
    agent_client_destroy(e->c);
    sentry_destroy(e->sb);
    sentry_supervisor_destroy(e->sup);
    if (!getenv("THAW_KEEP_LOG"))
        unlink(e->logpath);
}

/* Run argv in the sandbox; returns the result (owned by the caller). */
static agent_exec_result_t run(agent_client_t *c, const char *const *argv)
{
    agent_exec_req_t req = {.argv = argv, .timeout_ms = 30000};
    agent_exec_result_t res = {0};
    thaw_err_t err = {0};
    int rc = agent_client_exec(c, &req, &res, &err);
    CHECK(rc == 0, "exec %s: %s", argv[0], thaw_err_msg(&err));
    return res;
}

static const char *out_of(const agent_exec_result_t *r)
{
    return r->out ? (const char *)r->out : "";
}

/* Run the probe; it must exit 0 (every attempt stopped). */
static agent_exec_result_t probe(env_t *e, const char *const *args)
{
    const char *argv[16] = {"/.thaw/probe"};
    int i = 1;
    for (; args[i - 1] && i < 15; i++)
        argv[i] = args[i - 1];
    argv[i] = NULL;
    agent_exec_result_t r = run(e->c, argv);
    printf("--- probe %s (exit %d, signal %d):\n%s%s", args[0], r.exit_code, r.term_signal,
           out_of(&r), r.err ? (const char *)r.err : "");
    return r;
}

static bool log_has(env_t *e, const char *a, const char *b)
{
    FILE *f = fopen(e->logpath, "re");
    if (!f)
        return false;
    char line[2048];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        char want[64];
        snprintf(want, sizeof(want), "sandbox=%s ", sentry_id(e->sb));
        found = strstr(line, "event=deny") && strstr(line, want) && strstr(line, a) &&
                (!b || strstr(line, b));
    }
    fclose(f);
    return found;
}

/* A legitimate workload must not trip the policy: no deny line at all. */
static void check_no_denials(env_t *e)
{
    FILE *f = fopen(e->logpath, "re");
    CHECK(f, "log file");
    char line[2048];
    while (fgets(line, sizeof(line), f))
        CHECK(!strstr(line, "event=deny"), "unexpected denial: %s", line);
    fclose(f);
}

#define CHECK_LOGGED(e, a, b)                                                                      \
    CHECK(log_has(e, a, b), "no deny log line with '%s' '%s'", a, b ? b : "")

static void forked(void (*fn)(void))
{
    fflush(stdout);
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        alarm(120);
        fn();
        fflush(stdout);
        exit(0); /* not _exit: LeakSanitizer checks the child at exit */
    }
    int st = 0;
    assert_int_equal(waitpid(p, &st, 0), p);
    if (!WIFEXITED(st))
        fail_msg("test child killed by signal %d", WTERMSIG(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- agent and workloads ----------------------------------------------- */

static void body_agent_pid1(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&e, &cfg);
    CHECK(sentry_alive(e.sb), "sandbox not alive");
    const char *argv[] = {"cat", "/proc/1/cmdline", NULL};
    agent_exec_result_t r = run(e.c, argv);
    CHECK(r.exit_code == 0 && strstr(out_of(&r), "/.thaw/agent"), "PID 1 is '%s'", out_of(&r));
    agent_exec_result_free(&r);
    const char *id[] = {"id", "-u", NULL};
    r = run(e.c, id);
    CHECK(r.exit_code == 0 && !strcmp(out_of(&r), "0\n"), "uid inside '%s'", out_of(&r));
    agent_exec_result_free(&r);
    /* The sandbox's root maps to its unprivileged host range. */
    char p[64];
    snprintf(p, sizeof(p), "/proc/%d/status", sentry_pid(e.sb));
    FILE *f = fopen(p, "re");
    CHECK(f, "open %s", p);
    char line[256];
    unsigned uid = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "Uid:\t%u", &uid) == 1)
            break;
    fclose(f);
    CHECK(uid == sentry_host_uid(e.sb) && uid != 0, "host uid of PID 1 is %u", uid);
    env_down(&e);
}

static void body_echo(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&e, &cfg);
    const char *argv[] = {"echo", "hello", "sentry", NULL};
    agent_exec_result_t r = run(e.c, argv);
    CHECK(r.exit_code == 0 && !strcmp(out_of(&r), "hello sentry\n"), "echo: '%s'", out_of(&r));
    agent_exec_result_free(&r);
    check_no_denials(&e);
    env_down(&e);
}

static void body_pipeline(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    /* thawd ignores SIGPIPE; the sandbox must not inherit that
     * (`yes | head` would then never end). */
    signal(SIGPIPE, SIG_IGN);
    env_up(&e, &cfg);
    const char *yes[] = {"/bin/sh", "-c", "yes | head -n 2", NULL};
    agent_exec_result_t y = run(e.c, yes);
    CHECK(y.exit_code == 0 && !strcmp(out_of(&y), "y\ny\n"), "yes|head: '%s'", out_of(&y));
    agent_exec_result_free(&y);
    const char *argv[] = {"/bin/sh", "-c",
                          "seq 1 100 | grep 7 | wc -l > /tmp/n && cat /tmp/n && cd /work && "
                          "echo data > f && cat f",
                          NULL};
    agent_exec_result_t r = run(e.c, argv);
    CHECK(r.exit_code == 0 && !strcmp(out_of(&r), "19\ndata\n"), "pipeline: '%s' err '%s'",
          out_of(&r), r.err ? (char *)r.err : "");
    agent_exec_result_free(&r);
    check_no_denials(&e);
    env_down(&e);
}

static void body_python(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&e, &cfg);
    const char *argv[] = {"python3", "-c", "print(2**100)", NULL};
    agent_exec_result_t r = run(e.c, argv);
    CHECK(r.exit_code == 0 && !strcmp(out_of(&r), "1267650600228229401496703205376\n"),
          "python3: exit %d out '%s' err '%s'", r.exit_code, out_of(&r),
          r.err ? (char *)r.err : "");
    agent_exec_result_free(&r);
    check_no_denials(&e);
    env_down(&e);
}

/* open is emulated by the supervisor: flags, modes, umask, ownership,
 * relative names, DAC and /proc/self must behave as the kernel's own. */
static void body_open_semantics(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&e, &cfg);
    const char *argv[] = {"/.thaw/probe", "opensem", NULL};
    agent_exec_result_t r = run(e.c, argv);
    CHECK(r.exit_code == 0 && strstr(out_of(&r), "opensem: ok"), "open semantics:\n%s", out_of(&r));
    agent_exec_result_free(&r);
    const char *py[] = {"python3", "-c",
                        "import os, tempfile\n"
                        "with tempfile.NamedTemporaryFile('w', dir='/tmp') as f:\n"
                        "    f.write('x'); f.flush(); print(os.path.getsize(f.name))\n"
                        "print(len(os.listdir('/proc/self/fd')) > 2)",
                        NULL};
    r = run(e.c, py);
    CHECK(r.exit_code == 0 && !strcmp(out_of(&r), "1\nTrue\n"), "python files: '%s' '%s'",
          out_of(&r), r.err ? (char *)r.err : "");
    agent_exec_result_free(&r);
    check_no_denials(&e);
    env_down(&e);
}

static void body_filter_count(void)
{
    env_t e = {0};
    env_sup(&e);
    sentry_filter_info_t fi;
    sentry_supervisor_filter_info(e.sup, &fi);
    printf("sentry filter: %u host syscalls allowed (%u only with argument conditions), "
           "%u brokered by the supervisor, %u denied and logged, %u answered by the filter, "
           "%zu BPF instructions\n",
           fi.allowed, fi.allowed_cond, fi.notified, fi.denied, fi.errno_direct, fi.bpf_insns);
    CHECK(fi.allowed > 100 && fi.allowed < 300, "allowed %u", fi.allowed);
    CHECK(fi.notified >= 40 && fi.denied >= 40, "notified %u denied %u", fi.notified, fi.denied);
    sentry_supervisor_destroy(e.sup);
    unlink(e.logpath);
}

/* ---- escapes ------------------------------------------------------------ */

static void probe_ok(env_t *e, const char *const *args, agent_exec_result_t *out)
{
    agent_exec_result_t r = probe(e, args);
    CHECK(r.exit_code == 0, "probe %s: exit %d signal %d", args[0], r.exit_code, r.term_signal);
    if (out)
        *out = r;
    else
        agent_exec_result_free(&r);
}

static void expect_line(const agent_exec_result_t *r, const char *line)
{
    CHECK(strstr(out_of(r), line), "expected '%s' in the probe's output", line);
}

static void body_escape_mount(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&e, &cfg);
    agent_exec_result_t r;
    probe_ok(&e, (const char *[]){"mount", NULL}, &r);
    expect_line(&r, "mount: denied errno=1 ");
    expect_line(&r, "pivot_root: denied errno=1 ");
    agent_exec_result_free(&r);
    CHECK_LOGGED(&e, "syscall=mount ", NULL);
    CHECK_LOGGED(&e, "syscall=umount2 ", NULL);
    CHECK_LOGGED(&e, "syscall=pivot_root ", NULL);
    env_down(&e);
}

static void body_escape_unshare_setns(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&e, &cfg);
    agent_exec_result_t r;
    probe_ok(&e, (const char *[]){"unshare", NULL}, &r);
    expect_line(&r, "unshare-user: denied errno=1 ");
    expect_line(&r, "setns: denied errno=1 ");
    expect_line(&r, "clone-newpid: denied errno=1 ");
    agent_exec_result_free(&r);
    CHECK_LOGGED(&e, "syscall=unshare ", NULL);
    CHECK_LOGGED(&e, "syscall=setns ", NULL);
    CHECK_LOGGED(&e, "syscall=clone ", NULL);
    env_down(&e);
}

static void body_escape_ptrace_supervisor(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&e, &cfg);
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)getpid()); /* the supervisor's process */
    agent_exec_result_t r;
    probe_ok(&e, (const char *[]){"ptrace", pid, NULL}, &r);
    expect_line(&r, "ptrace-attach: denied errno=1 ");
    expect_line(&r, "ptrace-traceme: denied errno=1 ");
    agent_exec_result_free(&r);
    CHECK_LOGGED(&e, "syscall=ptrace ", NULL);
    CHECK_LOGGED(&e, "syscall=process_vm_readv ", NULL);
    env_down(&e);
}

static void body_escape_host_paths(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&e, &cfg);
    agent_exec_result_t r;
    probe_ok(&e, (const char *[]){"paths", g_secret, NULL}, &r);
    CHECK(!strstr(out_of(&r), "ALLOWED"), "an escape got through");
    expect_line(&r, "absolute: denied errno=2 ");
    expect_line(&r, "dotdot: denied errno=2 ");
    expect_line(&r, "symlink: denied errno=2 ");
    expect_line(&r, "proc1root: denied errno=40 "); /* ELOOP: magic link refused */
    expect_line(&r, "procselfroot: denied errno=40 ");
    expect_line(&r, "kcore: denied errno=2 ");
    agent_exec_result_free(&r);
    CHECK_LOGGED(&e, "syscall=open", "/proc/1/root");
    CHECK_LOGGED(&e, "syscall=open", "/proc/kcore");
    env_down(&e);
}

static void body_escape_readonly_root(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&e, &cfg);
    agent_exec_result_t r;
    probe_ok(&e, (const char *[]){"rofs", NULL}, &r);
    expect_line(&r, "create-usr: denied errno=30 "); /* EROFS */
    expect_line(&r, "write-etc: denied errno=30 ");
    expect_line(&r, "mkdir-usr: denied errno=30 ");
    expect_line(&r, "rename-bin: denied errno=30 ");
    expect_line(&r, "create-tmp: ok");
    agent_exec_result_free(&r);
    CHECK_LOGGED(&e, "syscall=open", "/usr/thaw-sentry-probe");
    CHECK_LOGGED(&e, "syscall=mkdir", NULL);
    struct stat st;
    CHECK(stat("/usr/thaw-sentry-probe", &st) < 0 && stat("/usr/thaw-sentry-probe-dir", &st) < 0,
          "the host's /usr was changed");
    env_down(&e);
}

static void body_escape_connect_denied(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&e, &cfg);
    agent_exec_result_t r;
    probe_ok(&e, (const char *[]){"connect", "7001", "0", NULL}, &r);
    expect_line(&r, "connect: denied errno=13 "); /* EACCES from the policy */
    expect_line(&r, "sendto-outside: denied errno=13 ");
    agent_exec_result_free(&r);
    CHECK_LOGGED(&e, "syscall=connect ", "127.0.0.1:7001");
    CHECK_LOGGED(&e, "syscall=sendto ", "8.8.8.8:53");
    agent_client_destroy(e.c);
    sentry_destroy(e.sb);
    /* The same destination on the allowlist connects. */
    cfg.net_allow[0] = "127.0.0.1:7001";
    cfg.n_net = 1;
    env_sandbox(&e, &cfg);
    probe_ok(&e, (const char *[]){"connect", "7001", "1", NULL}, NULL);
    env_down(&e);
}

static void body_escape_raw_sockets(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&e, &cfg);
    agent_exec_result_t r;
    probe_ok(&e, (const char *[]){"sockets", NULL}, &r);
    expect_line(&r, "raw-inet: denied errno=1 ");
    expect_line(&r, "packet: denied errno=1 ");
    agent_exec_result_free(&r);
    CHECK_LOGGED(&e, "syscall=socket ", NULL);
    env_down(&e);
}

static void body_escape_kernel_interfaces(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&e, &cfg);
    agent_exec_result_t r;
    probe_ok(&e, (const char *[]){"kernel", NULL}, &r);
    static const char *const names[] = {
        "keyctl",         "bpf",         "perf_event_open", "userfaultfd",
        "io_uring_setup", "init_module", "kexec_load",      "open_by_handle_at"};
    for (size_t i = 0; i < THAW_ARRAY_SIZE(names); i++) {
        char line[64], sys[64];
        snprintf(line, sizeof(line), "%s: denied errno=1 ", names[i]);
        expect_line(&r, line);
        snprintf(sys, sizeof(sys), "syscall=%s ", names[i]);
        CHECK_LOGGED(&e, sys, NULL);
    }
    agent_exec_result_free(&r);
    env_down(&e);
}

static void body_escape_syscall_32bit(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&e, &cfg);
    /* The i386 and x32 entries are foreign architectures: the filter kills
     * the process (SIGSYS) before any syscall runs; the kernel's seccomp
     * audit records it.  The agent survives. */
    agent_exec_result_t r = probe(&e, (const char *[]){"int80", NULL});
    CHECK(r.term_signal == SIGSYS, "int80: exit %d signal %d", r.exit_code, r.term_signal);
    agent_exec_result_free(&r);
    r = probe(&e, (const char *[]){"x32", NULL});
    CHECK(r.term_signal == SIGSYS, "x32: exit %d signal %d", r.exit_code, r.term_signal);
    agent_exec_result_free(&r);
    CHECK(sentry_alive(e.sb), "the sandbox died");
    env_down(&e);
}

static void body_abuse_fork_bomb(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    cfg.pids_max = 32;
    env_up(&e, &cfg);
    agent_exec_result_t r;
    probe_ok(&e, (const char *[]){"forkbomb", NULL}, &r);
    int forks = -1;
    const char *p = strstr(out_of(&r), "forks=");
    CHECK(p && sscanf(p, "forks=%d", &forks) == 1, "no fork count");
    CHECK(forks > 0 && forks < 32, "forks %d with pids.max 32", forks);
    expect_line(&r, "errno=11 "); /* EAGAIN from the pids limit */
    agent_exec_result_free(&r);
    CHECK(sentry_alive(e.sb), "the sandbox died");
    const char *echo[] = {"echo", "alive", NULL};
    r = run(e.c, echo);
    CHECK(!strcmp(out_of(&r), "alive\n"), "after the bomb: '%s'", out_of(&r));
    agent_exec_result_free(&r);
    env_down(&e);
}

static void body_abuse_memory_bomb(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    cfg.memory_bytes = 64ull << 20;
    env_up(&e, &cfg);
    agent_exec_result_t r = probe(&e, (const char *[]){"membomb", "1024", NULL});
    CHECK(r.term_signal == SIGKILL, "membomb: exit %d signal %d (expected the OOM killer)",
          r.exit_code, r.term_signal);
    agent_exec_result_free(&r);
    /* The supervisor's process (this one) and the sandbox carry on. */
    const char *echo[] = {"echo", "alive", NULL};
    r = run(e.c, echo);
    CHECK(!strcmp(out_of(&r), "alive\n"), "after the bomb: '%s'", out_of(&r));
    agent_exec_result_free(&r);
    env_down(&e);
}

static void body_abuse_fill_writable(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&e, &cfg);
    agent_exec_result_t r;
    probe_ok(&e, (const char *[]){"fill", "/tmp/fill", NULL}, &r);
    long long bytes = -1;
    const char *p = strstr(out_of(&r), "bytes=");
    CHECK(p && sscanf(p, "bytes=%lld", &bytes) == 1, "no byte count");
    CHECK(bytes > 0 && bytes <= (long long)cfg.tmp_bytes, "wrote %lld into an %llu-byte /tmp",
          bytes, (unsigned long long)cfg.tmp_bytes);
    expect_line(&r, "errno=28 "); /* ENOSPC */
    agent_exec_result_free(&r);
    env_down(&e);
}

static void body_abuse_sigterm_ignored(void)
{
    env_t e = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&e, &cfg);
    agent_exec_result_t r;
    probe_ok(&e, (const char *[]){"stubborn", NULL}, &r);
    agent_exec_result_free(&r);
    /* Every process of the sandbox, as the host sees them. */
    char procs[SENTRY_PATH_MAX + 32];
    snprintf(procs, sizeof(procs), "%s/cgroup.procs", sentry_cgroup_path(e.sb, "pids"));
    int pids[64], n = 0;
    FILE *f = fopen(procs, "re");
    CHECK(f, "open %s", procs);
    while (n < 64 && fscanf(f, "%d", &pids[n]) == 1)
        n++;
    fclose(f);
    CHECK(n >= 2, "%d processes in the cgroup (agent + stubborn expected)", n);
    char cgdir[SENTRY_PATH_MAX];
    snprintf(cgdir, sizeof(cgdir), "%s", sentry_cgroup_path(e.sb, "pids"));
    env_down(&e);
    for (int i = 0; i < n; i++)
        CHECK(kill(pids[i], 0) < 0 && errno == ESRCH, "pid %d survived destroy", pids[i]);
    struct stat st;
    CHECK(stat(cgdir, &st) < 0, "cgroup %s still exists", cgdir);
}

static void body_escape_cross_sandbox(void)
{
    env_t a = {0}, b = {0};
    sentry_config_t cfg;
    cfg_default(&cfg);
    env_up(&a, &cfg);
    b.sup = a.sup;
    snprintf(b.logpath, sizeof(b.logpath), "%s", a.logpath);
    env_sandbox(&b, &cfg);
    agent_exec_result_t r;
    probe_ok(&a, (const char *[]){"marker", "thaw-marker-A", NULL}, NULL);
    probe_ok(&b, (const char *[]){"look", "thaw-marker-A", NULL}, &r);
    expect_line(&r, "look-file: denied errno=2 ");
    expect_line(&r, "kill-host-pid: denied errno=3 "); /* ESRCH: no host pids */
    CHECK(!strstr(out_of(&r), "look-process: seen"), "B saw A's process");
    agent_exec_result_free(&r);
    /* The control: A itself sees both, so the probe can see them. */
    probe_ok(&a, (const char *[]){"look", "thaw-marker-A", NULL}, &r);
    expect_line(&r, "look-file: opened");
    expect_line(&r, "look-process: seen pid");
    agent_exec_result_free(&r);
    CHECK(sentry_host_uid(a.sb) != sentry_host_uid(b.sb), "A and B share host ids");
    agent_client_destroy(b.c);
    sentry_destroy(b.sb);
    env_down(&a);
}

/* Count our sandboxes' cgroup directories (v1 pids hierarchy or v2). */
static int count_cgroups(void)
{
    const char *dirs[] = {"/sys/fs/cgroup/pids/thaw-sentry", "/sys/fs/cgroup/thaw-sentry"};
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "sb-%d-", (int)getpid());
    int n = 0;
    for (size_t i = 0; i < 2; i++) {
        DIR *d = opendir(dirs[i]);
        struct dirent *de;
        while (d && (de = readdir(d)))
            if (!strncmp(de->d_name, prefix, strlen(prefix)))
                n++;
        if (d)
            closedir(d);
    }
    return n;
}

static void body_one_supervisor_thread(void)
{
    int fds0 = thaw_test_count_fds();
    thaw_test_threads_t threads0;
    thaw_test_threads_now(&threads0);
    env_t e = {0};
    env_sup(&e);
    int fds1 = thaw_test_count_fds();
    int grew = thaw_test_threads_new(&threads0, 1);
    CHECK(grew == 1, "supervisor threads: %d", grew);
    sentry_config_t cfg;
    cfg_default(&cfg);
    sentry_t *sb[4];
    thaw_err_t err = {0};
    for (int i = 0; i < 4; i++)
        CHECK(sentry_create(e.sup, &cfg, &sb[i], &err) == 0, "create: %s", thaw_err_msg(&err));
    /* Four sandboxes, still one supervisor thread. */
    grew = thaw_test_threads_new(&threads0, 1);
    CHECK(grew == 1, "threads grew to %d", grew);
    CHECK(count_cgroups() == 4, "%d cgroups", count_cgroups());
    /* A sandbox whose PID 1 dies from outside is seen dead; the others go on. */
    kill(sentry_pid(sb[0]), SIGKILL);
    for (int i = 0; i < 2000 && sentry_alive(sb[0]); i++)
        usleep(5000); /* up to 10 s: a loaded machine */
    CHECK(!sentry_alive(sb[0]), "killed sandbox still alive");
    agent_client_t *c;
    CHECK(agent_client_new(sentry_take_agent_fd(sb[1]), &c, &err) == 0, "%s", thaw_err_msg(&err));
    CHECK(agent_client_wait_hello(c, 10000, NULL, &err) == 0, "%s", thaw_err_msg(&err));
    const char *argv[] = {"cat", "/etc/hostname", NULL};
    agent_exec_result_t r = run(c, argv);
    CHECK(!strcmp(out_of(&r), "sentry\n"), "cat: '%s'", out_of(&r));
    agent_exec_result_free(&r);
    agent_client_destroy(c);
    for (int i = 0; i < 4; i++)
        sentry_destroy(sb[i]);
    CHECK(count_cgroups() == 0, "%d cgroups left", count_cgroups());
    CHECK(thaw_test_count_fds() == fds1, "fds %d after, %d before", thaw_test_count_fds(), fds1);
    sentry_stats_t st;
    sentry_supervisor_stats(e.sup, &st);
    CHECK(st.notifications > 0 && st.emulated > 0, "no brokered calls counted");
    sentry_supervisor_destroy(e.sup);
    unlink(e.logpath);
    CHECK(thaw_test_threads_new(&threads0, 0) == 0, "supervisor thread left");
    CHECK(thaw_test_count_fds() == fds0 + 1, "fds %d, %d at start (+1 log)", thaw_test_count_fds(),
          fds0);
}

static void expect_create_error(env_t *e, const sentry_config_t *cfg, const char *needle)
{
    sentry_t *sb = NULL;
    thaw_err_t err = {0};
    int rc = sentry_create(e->sup, cfg, &sb, &err);
    CHECK(rc < 0 && sb == NULL, "create succeeded");
    CHECK(strstr(thaw_err_msg(&err), needle), "message '%s' lacks '%s'", thaw_err_msg(&err),
          needle);
    printf("create error: %s\n", thaw_err_msg(&err));
}

static void body_create_errors(void)
{
    env_t e = {0};
    env_sup(&e);
    int fds = thaw_test_count_fds();
    sentry_config_t cfg;
    cfg_default(&cfg);
    cfg.root = "relative/root";
    expect_create_error(&e, &cfg, "absolute root");
    cfg.root = "/nonexistent/thaw-root";
    expect_create_error(&e, &cfg, "mount point");
    cfg_default(&cfg);
    cfg.net_allow[0] = "10.0.0.1";
    cfg.n_net = 1;
    expect_create_error(&e, &cfg, "network allow entry '10.0.0.1'");
    cfg_default(&cfg);
    cfg.hidden[0] = "etc";
    cfg.n_hidden = 1;
    expect_create_error(&e, &cfg, "must be absolute");
    cfg_default(&cfg);
    cfg.agent_path = "/.thaw/no-such-agent";
    expect_create_error(&e, &cfg, "exec the agent");
    CHECK(count_cgroups() == 0, "%d cgroups left after failures", count_cgroups());
    CHECK(thaw_test_count_fds() == fds, "fds leaked: %d -> %d", fds, thaw_test_count_fds());
    sentry_supervisor_destroy(e.sup);
    unlink(e.logpath);
}

/* Running (not gone, not a zombie waiting for a reaper). */
static bool running(int pid)
{
    char p[64], buf[256];
    snprintf(p, sizeof(p), "/proc/%d/stat", pid);
    FILE *f = fopen(p, "re");
    if (!f)
        return false;
    bool r = fgets(buf, sizeof(buf), f) && strrchr(buf, ')') && strrchr(buf, ')')[2] != 'Z';
    fclose(f);
    return r;
}

/* thawd died without destroying its sandboxes: the next supervisor finds
 * their cgroups by the dead owner's pid, kills them and removes the dirs. */
static void body_stale_sandbox_swept(void)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0, "pipe");
    pid_t crasher = fork();
    CHECK(crasher >= 0, "fork");
    if (crasher == 0) {
        env_t e = {0};
        sentry_config_t cfg;
        cfg_default(&cfg);
        env_sup(&e);
        thaw_err_t err = {0};
        sentry_t *sb;
        if (sentry_create(e.sup, &cfg, &sb, &err) < 0)
            _exit(1);
        /* The agent ends its sandbox when its channel closes; a holder
         * keeps the channel open past the crash so that the sandbox is
         * still running when the next supervisor sweeps (otherwise the
         * test races the agent's own exit). */
        pid_t holder = fork();
        if (holder == 0) {
            pause();
            _exit(0);
        }
        int ids[2] = {sentry_pid(sb), (int)holder};
        if (write(pfd[1], ids, sizeof(ids)) != sizeof(ids))
            _exit(1);
        unlink(e.logpath);
        _exit(0); /* "crash": nothing destroyed */
    }
    close(pfd[1]);
    int ids[2] = {0, 0};
    CHECK(read(pfd[0], ids, sizeof(ids)) == sizeof(ids), "crasher reported nothing");
    close(pfd[0]);
    int pid1 = ids[0];
    int st;
    waitpid(crasher, &st, 0);
    char dir[128];
    snprintf(dir, sizeof(dir), "/sys/fs/cgroup/pids/thaw-sentry/sb-%d-1", (int)crasher);
    if (access("/sys/fs/cgroup/pids", F_OK) != 0)
        snprintf(dir, sizeof(dir), "/sys/fs/cgroup/thaw-sentry/sb-%d-1", (int)crasher);
    CHECK(access(dir, F_OK) == 0, "no stale cgroup %s", dir);
    CHECK(running(pid1), "the orphaned sandbox is not running");
    env_t e = {0};
    env_sup(&e); /* sweeps */
    CHECK(access(dir, F_OK) != 0, "stale cgroup %s still there", dir);
    for (int i = 0; i < 2000 && running(pid1); i++)
        usleep(5000); /* up to 10 s (its reaper is whatever adopted it) */
    bool survived = running(pid1);
    kill(ids[1], SIGKILL); /* the holder, adopted elsewhere: no wait */
    CHECK(!survived, "the orphaned sandbox survived the sweep");
    sentry_supervisor_destroy(e.sup);
    unlink(e.logpath);
}

/* The pool creates and destroys from several threads at once. */
typedef struct cc_arg {
    sentry_supervisor_t *sup;
    int ok;
} cc_arg_t;

static void *cc_worker(void *p)
{
    cc_arg_t *a = p;
    sentry_config_t cfg;
    cfg_default(&cfg);
    for (int i = 0; i < 4; i++) {
        sentry_t *sb;
        agent_client_t *c;
        thaw_err_t err = {0};
        if (sentry_create(a->sup, &cfg, &sb, &err) < 0) {
            fprintf(stderr, "create: %s\n", thaw_err_msg(&err));
            return NULL;
        }
        if (agent_client_new(sentry_take_agent_fd(sb), &c, &err) < 0 ||
            agent_client_wait_hello(c, 10000, NULL, &err) < 0) {
            fprintf(stderr, "agent: %s\n", thaw_err_msg(&err));
            sentry_destroy(sb);
            return NULL;
        }
        const char *argv[] = {"cat", "/etc/hostname", NULL};
        agent_exec_req_t req = {.argv = argv, .timeout_ms = 30000};
        agent_exec_result_t res = {0};
        if (agent_client_exec(c, &req, &res, &err) == 0 && res.out &&
            !strcmp((char *)res.out, "sentry\n"))
            a->ok++;
        agent_exec_result_free(&res);
        agent_client_destroy(c);
        sentry_destroy(sb);
    }
    return NULL;
}

static void body_concurrent_create(void)
{
    env_t e = {0};
    env_sup(&e);
    cc_arg_t args[3] = {{e.sup, 0}, {e.sup, 0}, {e.sup, 0}};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&t[i], NULL, cc_worker, &args[i]) == 0, "thread");
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 3; i++)
        CHECK(args[i].ok == 4, "worker %d: %d of 4 sandboxes worked", i, args[i].ok);
    CHECK(count_cgroups() == 0, "%d cgroups left", count_cgroups());
    sentry_supervisor_destroy(e.sup);
    unlink(e.logpath);
}

#define T(name)                                                                                    \
    static void name(void **state)                                                                 \
    {                                                                                              \
        (void)state;                                                                               \
        forked(body_##name);                                                                       \
    }
T(agent_pid1)
T(echo)
T(pipeline)
T(python)
T(filter_count)
T(open_semantics)
T(escape_mount)
T(escape_unshare_setns)
T(escape_ptrace_supervisor)
T(escape_host_paths)
T(escape_readonly_root)
T(escape_connect_denied)
T(escape_raw_sockets)
T(escape_kernel_interfaces)
T(escape_syscall_32bit)
T(abuse_fork_bomb)
T(abuse_memory_bomb)
T(abuse_fill_writable)
T(abuse_sigterm_ignored)
T(escape_cross_sandbox)
T(one_supervisor_thread)
T(create_errors)
T(stale_sandbox_swept)
T(concurrent_create)

static void rm_tree(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

int main(void)
{
    thaw_test_require_root();
    g_agent = getenv("THAW_AGENT_EXE");
    g_probe = getenv("THAW_SENTRY_PROBE");
    if (!g_agent || !g_probe)
        thaw_test_skip("THAW_AGENT_EXE and THAW_SENTRY_PROBE must name the agent and the probe");
    if (access("/usr/bin/busybox", X_OK) != 0 && access("/bin/busybox", X_OK) != 0)
        thaw_test_skip("needs busybox (busybox-static)");
    if (access("/usr/bin/python3", X_OK) != 0)
        thaw_test_skip("needs /usr/bin/python3");

    snprintf(g_root, sizeof(g_root), "/tmp/thaw-sentry-root-XXXXXX");
    if (!mkdtemp(g_root))
        thaw_test_skip("mkdtemp: %s", strerror(errno));
    thaw_err_t err = {0};
    if (sentry_template_build(g_root, g_agent, NULL, &err) < 0) {
        fprintf(stderr, "template: %s\n", thaw_err_msg(&err));
        rm_tree(g_root);
        return 1;
    }
    char probe_dst[300];
    snprintf(probe_dst, sizeof(probe_dst), "cp '%s' '%s/.thaw/probe'", g_probe, g_root);
    if (system(probe_dst) != 0) {
        rm_tree(g_root);
        return 1;
    }
    /* A host file no sandbox may read. */
    snprintf(g_secret, sizeof(g_secret), "/tmp/thaw-sentry-secret-%d", (int)getpid());
    FILE *f = fopen(g_secret, "we");
    if (!f) {
        rm_tree(g_root);
        return 1;
    }
    fputs("THAW-HOST-SECRET\n", f);
    fclose(f);
    chmod(g_secret, 0644); /* readable by anyone: only the sandbox walls stop it */

    /* Can this kernel do it at all?  One sandbox decides between skip and run. */
    sentry_supervisor_t *sup = NULL;
    if (sentry_supervisor_create(NULL, &sup, &err) < 0) {
        unlink(g_secret);
        rm_tree(g_root);
        thaw_test_skip("sentry supervisor: %s", thaw_err_msg(&err));
    }
    sentry_supervisor_destroy(sup);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(agent_pid1),
        cmocka_unit_test(echo),
        cmocka_unit_test(pipeline),
        cmocka_unit_test(python),
        cmocka_unit_test(filter_count),
        cmocka_unit_test(open_semantics),
        cmocka_unit_test(escape_mount),
        cmocka_unit_test(escape_unshare_setns),
        cmocka_unit_test(escape_ptrace_supervisor),
        cmocka_unit_test(escape_host_paths),
        cmocka_unit_test(escape_readonly_root),
        cmocka_unit_test(escape_connect_denied),
        cmocka_unit_test(escape_raw_sockets),
        cmocka_unit_test(escape_kernel_interfaces),
        cmocka_unit_test(escape_syscall_32bit),
        cmocka_unit_test(abuse_fork_bomb),
        cmocka_unit_test(abuse_memory_bomb),
        cmocka_unit_test(abuse_fill_writable),
        cmocka_unit_test(abuse_sigterm_ignored),
        cmocka_unit_test(escape_cross_sandbox),
        cmocka_unit_test(one_supervisor_thread),
        cmocka_unit_test(create_errors),
        cmocka_unit_test(stale_sandbox_swept),
        cmocka_unit_test(concurrent_create),
    };
    if (getenv("THAW_TEST_FILTER") && *getenv("THAW_TEST_FILTER"))
        cmocka_set_test_filter(getenv("THAW_TEST_FILTER"));
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(g_secret);
    rm_tree(g_root);
    return rc;
}
