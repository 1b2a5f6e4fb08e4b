// SPDX-License-Identifier: Apache-2.0
/* Test harness around a real thawd process; see harness.h. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testlib.h"

void th_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int th_start(th_daemon_t *d, const char *const *extra)
{
    const char *thawd = getenv("THAWD");
    if (!thawd) {
        fprintf(stderr, "harness: $THAWD is not set (run through meson test)\n");
        return -1;
    }
    if (!d->dir[0]) {
        snprintf(d->dir, sizeof(d->dir), "/tmp/thaw-test-XXXXXX");
        if (!mkdtemp(d->dir)) {
            perror("mkdtemp");
            return -1;
        }
        chmod(d->dir, 0755); /* a second uid must reach the socket in ownership tests */
    }
    snprintf(d->sock, sizeof(d->sock), "%s/thaw.sock", d->dir);
    snprintf(d->store, sizeof(d->store), "%s/store", d->dir);
    snprintf(d->log, sizeof(d->log), "%s/thawd.log", d->dir);
    const char *argv[64];
    int n = 0;
    argv[n++] = thawd;
    argv[n++] = "--socket";
    argv[n++] = d->sock;
    argv[n++] = "--store";
    argv[n++] = d->store;
    const char *agent = getenv("THAW_AGENT");
    if (agent) {
        argv[n++] = "--agent";
        argv[n++] = agent;
    }
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* A test that fails an assertion never reaches th_stop: thawd must
         * not outlive it. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() == 1)
            _exit(127);
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(thawd, (char *const *)argv);
        _exit(127);
    }
    d->pid = pid;
    for (int i = 0; i < 1000; i++) { /* up to 20 s: a sentry default template builds first */
        th_conn_t c;
        if (th_connect(&c, d->sock) == 0) {
            th_close(&c);
            return 0;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "harness: thawd exited during start (status 0x%x)\n", st);
            th_dump_log(d);
            d->pid = 0;
            return -1;
        }
        th_sleep_ms(20);
    }
    fprintf(stderr, "harness: thawd did not listen on %s\n", d->sock);
    th_dump_log(d);
    return -1;
}

int th_stop(th_daemon_t *d)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 1000; i++) {
        pid_t r = waitpid(d->pid, &st, WNOHANG);
        if (r == d->pid) {
            d->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        th_sleep_ms(20);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &st, 0);
    d->pid = 0;
    fprintf(stderr, "harness: thawd ignored SIGTERM for 20 s\n");
    return -1;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void th_tmpfs_store(th_daemon_t *d, const char *tmpl, const char *size, char *store, size_t cap)
{
    if (geteuid() != 0)
        thaw_test_skip("mounting a small tmpfs for the store needs root");
    snprintf(d->dir, sizeof(d->dir), "%s", tmpl);
    assert_non_null(mkdtemp(d->dir));
    chmod(d->dir, 0755);
    snprintf(store, cap, "%s/store", d->dir);
    assert_int_equal(mkdir(store, 0711), 0);
    char opts[64];
    snprintf(opts, sizeof(opts), "size=%s,mode=0711", size);
    if (mount("tmpfs", store, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        thaw_test_skip("cannot mount a tmpfs: %s", strerror(errno));
}

void th_unmount_store(const th_daemon_t *d)
{
    char store[sizeof(d->dir) + 8];
    snprintf(store, sizeof(store), "%s/store", d->dir);
    umount2(store, MNT_DETACH);
}

int th_become(uid_t uid, gid_t gid)
{
    if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) {
        fprintf(stderr, "become uid %d gid %d: %s\n", (int)uid, (int)gid, strerror(errno));
        return -1;
    }
    return 0;
}

void th_cleanup(th_daemon_t *d)
{
    if (d->pid > 0)
        th_stop(d);
    if (d->dir[0])
        nftw(d->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    d->dir[0] = '\0';
}

int th_finish(th_daemon_t *d, th_conn_t *c)
{
    if (c)
        th_close(c);
    int st = th_stop(d);
    if (st != 0)
        th_dump_log(d);
    th_cleanup(d);
    return st == 0 ? 0 : -1;
}

int th_fd_count(const th_daemon_t *d)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)d->pid);
    DIR *dir = opendir(path);
    if (!dir)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)))
        n += e->d_name[0] != '.';
    closedir(dir);
    return n;
}

long th_rss_kb(const th_daemon_t *d)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)d->pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

/* The children of every thread of pid, appended to out[n..max). */
static int children_of(pid_t pid, pid_t *out, int n, int max)
{
    char path[96];
    /* Children may hang off any thread: read every task's list. */
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    struct dirent *e;
    while (dir && (e = readdir(dir))) {
        if (e->d_name[0] == '.')
            continue;
        char cp[320];
        snprintf(cp, sizeof(cp), "/proc/%d/task/%s/children", (int)pid, e->d_name);
        FILE *f = fopen(cp, "r");
        long v;
        while (f && n < max && fscanf(f, "%ld", &v) == 1)
            out[n++] = (pid_t)v;
        if (f)
            fclose(f);
    }
    if (dir)
        closedir(dir);
    return n;
}

int th_children(const th_daemon_t *d, pid_t *out, int max)
{
    return children_of(d->pid, out, 0, max);
}

int th_descendants(pid_t pid, pid_t *out, int n, int max)
{
    int start = n, end = children_of(pid, out, n, max);
    n = end;
    for (int i = start; i < end; i++)
        n = th_descendants(out[i], out, n, max);
    return n;
}

bool th_running(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

bool th_wait_gone(pid_t pid, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms && th_running(pid); waited += 50)
        th_sleep_ms(50);
    return !th_running(pid);
}

void th_dump_log(const th_daemon_t *d)
{
    FILE *f = fopen(d->log, "r");
    char line[1024];
    fprintf(stderr, "---- thawd log (%s) ----\n", d->log);
    while (f && fgets(line, sizeof(line), f))
        fputs(line, stderr);
    if (f)
        fclose(f);
    fprintf(stderr, "---- end of log ----\n");
}

int th_connect(th_conn_t *c, const char *sock)
{
    memset(c, 0, sizeof(*c));
    c->next_id = 1;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->notes = json_array();
    return 0;
}

void th_close(th_conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
    json_decref(c->notes);
    c->notes = NULL;
}

int th_send_raw(th_conn_t *c, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t w = send(c->fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

json_t *th_recv(th_conn_t *c, int timeout_ms)
{
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            json_error_t e;
            json_t *v = json_loadb(c->buf, n, 0, &e);
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            if (!v)
                fprintf(stderr, "harness: bad line from thawd: %s\n", e.text);
            return v;
        }
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) <= 0)
            return NULL;
        if (c->len + 65536 > c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 131072;
            char *nb = realloc(c->buf, cap);
            if (!nb)
                return NULL;
            c->buf = nb;
            c->cap = cap;
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (r <= 0)
            return NULL;
        c->len += (size_t)r;
    }
}

json_t *th_call(th_conn_t *c, const char *method, json_t *params)
{
    long id = c->next_id++;
    json_t *req =
        json_pack("{s:s, s:I, s:s}", "jsonrpc", "2.0", "id", (json_int_t)id, "method", method);
    if (params)
        json_object_set_new(req, "params", params);
    char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    size_t n = strlen(s);
    s[n] = '\n';
    int r = th_send_raw(c, s, n + 1);
    free(s);
    if (r < 0)
        return NULL;
    for (;;) {
        json_t *m = th_recv(c, 60000);
        if (!m)
            return NULL;
        json_t *mid = json_object_get(m, "id");
        if (!mid) {
            json_array_append_new(c->notes, m);
            continue;
        }
        if (json_is_integer(mid) && json_integer_value(mid) == id)
            return m;
        json_decref(m);
    }
}

size_t th_streamed_bytes(const th_conn_t *c)
{
    size_t k, streamed = 0;
    json_t *n;
    json_array_foreach (c->notes, k, n) {
        json_t *p = json_object_get(n, "params");
        json_t *d = json_object_get(p, "data");
        json_t *d64 = json_object_get(p, "data_base64");
        streamed += d ? json_string_length(d) : d64 ? json_string_length(d64) * 3 / 4 : 0;
    }
    return streamed;
}

int th_code(json_t *reply)
{
    json_t *e = json_object_get(reply, "error");
    return e ? (int)json_integer_value(json_object_get(e, "code")) : 0;
}

const char *th_msg(json_t *reply)
{
    json_t *e = json_object_get(reply, "error");
    const char *m = e ? json_string_value(json_object_get(e, "message")) : NULL;
    return m ? m : "";
}

json_t *th_ok(th_conn_t *c, const char *method, json_t *params)
{
    json_t *rep = th_call(c, method, params);
    if (!rep)
        fail_msg("%s: no reply from thawd", method);
    if (th_code(rep))
        fail_msg("%s: error %d: %s", method, th_code(rep), th_msg(rep));
    json_t *res = json_incref(json_object_get(rep, "result"));
    json_decref(rep);
    return res;
}

/* Template name's entry in pool.status, read from *rep (owned by the caller,
 * NULL if thawd did not answer). */
static json_t *pool_status(th_conn_t *c, const char *name, json_t **rep)
{
    *rep = th_call(c, "pool.status", json_pack("{s:s}", "name", name));
    return json_array_get(json_object_get(json_object_get(*rep, "result"), "pools"), 0);
}

/* An integer of a JSON object as a long, -1 if it is missing. */
static long int_or_minus1(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (long)json_integer_value(v) : -1;
}

long th_pool_get(th_conn_t *c, const char *name, const char *key)
{
    json_t *rep;
    long v = int_or_minus1(pool_status(c, name, &rep), key);
    json_decref(rep);
    return v;
}

long th_counter(th_conn_t *c, const char *name, const char *key)
{
    json_t *rep;
    long v = int_or_minus1(json_object_get(pool_status(c, name, &rep), "counters"), key);
    json_decref(rep);
    return v;
}

bool th_wait_pool(th_conn_t *c, const char *name, const char *key, long want, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        if (th_pool_get(c, name, key) == want)
            return true;
        th_sleep_ms(20);
    }
    return false;
}

long th_server_stat(th_conn_t *c, const char *key)
{
    json_t *rep = th_call(c, "server.stats", NULL);
    long v = int_or_minus1(json_object_get(json_object_get(rep, "result"), "server"), key);
    json_decref(rep);
    return v;
}

bool th_wait_server(th_conn_t *c, const char *key, long want, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        if (th_server_stat(c, key) == want)
            return true;
        th_sleep_ms(20);
    }
    fprintf(stderr, "server.stats: %s stayed %ld, not %ld\n", key, th_server_stat(c, key), want);
    return false;
}
