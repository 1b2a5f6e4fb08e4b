// SPDX-License-Identifier: Apache-2.0
/*
 * thaw bench --peers: the same start-run-exit work (print "hi" in a fresh
 * sandbox, exit) done by what a user would run instead, in this same run so
 * the ratios are fair: `thaw run` as a process (the CLI, like a peer's
 * binary, starts, connects, runs, exits), then each peer of
 * tools/bench-peers (bubblewrap, crun, runsc, QEMU restoring a saved VM).
 * The script prepares a peer and prints the command; the time counted here
 * is fork to exit of that command alone.  A peer that is missing or fails is
 * a row with its error, never left out.
 */
#include "tools/thaw-bench.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"

#define PEER_RUN_TIMEOUT_MS 30000
#define PEER_MAX_ARGS       64

/* Append what fd has to buf (NUL-terminated, capped at n-1); false at EOF or error. */
static bool drain(int fd, char *buf, size_t *len, size_t n)
{
    char tmp[4096];
    ssize_t r = read(fd, tmp, sizeof(tmp));
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (r <= 0)
        return false;
    size_t take = (size_t)r < n - 1 - *len ? (size_t)r : n - 1 - *len;
    memcpy(buf + *len, tmp, take);
    *len += take;
    buf[*len] = 0;
    return true;
}

/*
 * Run argv with stdin "x\n", collect stdout and stderr, kill it after the
 * timeout.  Returns the exit status (128+N for signal N), -1 if it could not
 * start; *ns is fork to reap.
 */
static int run_argv(char *const *argv, char *out, size_t outn, char *err, size_t errn, uint64_t *ns)
{
    int in[2], po[2], pe[2];
    if (pipe2(in, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    if (write(in[1], "x\n", 2) != 2) { /* a pipe buffer always takes two bytes */
    }
    close(in[1]);
    uint64_t t0 = thaw_now_ns();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        setpgid(0, 0);
        execvp(argv[0], argv);
        dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(po[1]);
    close(pe[1]);
    if (pid < 0) {
        close(po[0]);
        close(pe[0]);
        return -1;
    }
    /* Both pipes at once (a chatty stderr must not block stdout), and a
     * deadline: a peer that hangs is killed, never waited for. */
    size_t olen = 0, elen = 0;
    out[0] = err[0] = 0;
    struct pollfd pf[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    uint64_t until = thaw_now_ns() + PEER_RUN_TIMEOUT_MS * 1000000ull;
    bool killed = false;
    while (pf[0].fd >= 0 || pf[1].fd >= 0) {
        uint64_t now = thaw_now_ns();
        if (now >= until) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            killed = true;
            break;
        }
        int pr = poll(pf, 2, (int)((until - now) / 1000000ull) + 1);
        if (pr < 0 && errno != EINTR)
            break;
        for (int i = 0; pr > 0 && i < 2; i++)
            if (pf[i].fd >= 0 && pf[i].revents &&
                !drain(pf[i].fd, i ? err : out, i ? &elen : &olen, i ? errn : outn))
                pf[i].fd = -1;
    }
    int st = 0;
    pid_t w;
    while ((w = waitpid(pid, &st, WNOHANG)) == 0 && thaw_now_ns() < until)
        usleep(1000);
    if (w == 0) { /* closed its pipes but still runs */
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        killed = true;
        waitpid(pid, &st, 0);
    }
    if (killed)
        snprintf(err, errn, "killed after %d s", PEER_RUN_TIMEOUT_MS / 1000);
    *ns = thaw_now_ns() - t0;
    close(po[0]);
    close(pe[0]);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The last non-empty line of s (an error's gist). */
static const char *last_line(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = 0;
    char *nl = strrchr(s, '\n');
    return nl ? nl + 1 : s;
}

/* Time `argv` up to count times within the time bound into row. */
static void time_peer(bench_t *b, bench_row_t *row, char *const *argv, int want_exit)
{
    unsigned count = b->count < 50 ? b->count : 50;
    uint64_t t0 = thaw_now_ns();
    for (unsigned i = 0; i < count; i++) {
        char out[4096], err[4096];
        uint64_t ns = 0;
        int rc = run_argv(argv, out, sizeof(out), err, sizeof(err), &ns);
        if (rc != want_exit || !strstr(out, "hi")) {
            row->errors++;
            if (!row->n)
                bench_row_fail(row, "exit %d (expected %d): %.200s", rc, want_exit,
                               last_line(err[0] ? err : out));
            break;
        }
        bench_row_add(row, ns);
        if ((double)(thaw_now_ns() - t0) / 1e9 > b->time_s)
            break;
    }
    row->elapsed_s = (double)(thaw_now_ns() - t0) / 1e9;
    row->throughput = row->elapsed_s > 0 ? (double)row->n / row->elapsed_s : 0;
}

/* Run the script; 0 with its stdout in out, or -1 with its error in out. */
static int script(const bench_t *b, const char *cmd, const char *peer, const char *dir, char *out,
                  size_t n)
{
    char *argv[] = {"bash", (char *)b->peers_script, (char *)cmd, (char *)peer, (char *)dir, NULL};
    char err[4096];
    uint64_t ns;
    int rc = run_argv(argv, out, n, err, sizeof(err), &ns);
    if (rc == 0)
        return 0;
    snprintf(out, n, "%s", rc < 0 ? "cannot run bash" : last_line(err));
    return -1;
}

void bench_peers(bench_t *b)
{
    /* thaw itself as a process, the way the peers run. */
    bench_row_t *row = bench_row_new(b, "peers", "thaw run");
    char *targv[] = {(char *)b->thaw_exe,
                     "--socket",
                     (char *)b->cli->socket,
                     "run",
                     "-t",
                     (char *)b->tpl,
                     "--",
                     "echo",
                     "hi",
                     NULL};
    if (!b->cli->socket) /* drop "--socket NULL": thaw finds the socket as we did */
        memmove(&targv[1], &targv[3], 7 * sizeof(char *));
    time_peer(b, row, targv, 0);
    if (!row->failed)
        snprintf(row->note, sizeof(row->note), "the thaw CLI: start, connect, run, exit");

    if (access(b->peers_script, R_OK) < 0) {
        bench_row_fail(bench_row_new(b, "peers", "bench-peers"), "%s: %s (set THAW_BENCH_PEERS)",
                       b->peers_script, strerror(errno));
        return;
    }
    char list[1024];
    if (script(b, "list", "-", "-", list, sizeof(list)) < 0) {
        bench_row_fail(bench_row_new(b, "peers", "bench-peers"), "list: %s", list);
        return;
    }
    char *save = NULL;
    for (char *peer = strtok_r(list, "\n", &save); peer; peer = strtok_r(NULL, "\n", &save)) {
        row = bench_row_new(b, "peers", "%s", peer);
        char dir[] = "/tmp/thaw-bench-peer.XXXXXX";
        if (!mkdtemp(dir)) {
            bench_row_fail(row, "mkdtemp: %s", strerror(errno));
            continue;
        }
        bench_say(b, "peers: %s", peer);
        char out[8192];
        if (script(b, "setup", peer, dir, out, sizeof(out)) < 0 ||
            script(b, "argv", peer, dir, out, sizeof(out)) < 0) {
            bench_row_fail(row, "%s", out);
        } else {
            /* First line: the expected exit status; then one argument a line. */
            char *argv[PEER_MAX_ARGS + 1];
            int nargs = 0, want = 0;
            char *s2 = NULL;
            char *tok = strtok_r(out, "\n", &s2);
            want = tok ? atoi(tok) : 0;
            while ((tok = strtok_r(NULL, "\n", &s2)) && nargs < PEER_MAX_ARGS)
                argv[nargs++] = tok;
            argv[nargs] = NULL;
            if (!nargs)
                bench_row_fail(row, "bench-peers printed no command");
            else
                time_peer(b, row, argv, want);
            static const char *const notes[][2] = {
                {"bwrap", "bubblewrap: namespaces over the host's /"},
                {"crun", "crun: OCI bundle, busybox root"},
                {"runsc", "gVisor runsc: OCI bundle, busybox root"},
                {"qemu", "QEMU incoming migration of a saved VM (TCG), run, exit"},
            };
            for (size_t k = 0; !row->failed && k < sizeof(notes) / sizeof(notes[0]); k++)
                if (!strcmp(peer, notes[k][0]))
                    snprintf(row->note, sizeof(row->note), "%s", notes[k][1]);
        }
        char junk[256];
        script(b, "cleanup", peer, dir, junk, sizeof(junk));
        rmdir(dir);
    }
}
