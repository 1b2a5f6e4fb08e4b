// SPDX-License-Identifier: Apache-2.0
/*
 * thaw bench's thawd scenarios: hit, miss, spike, template and density.
 * Load comes from client threads, each with its own connection (as separate
 * users would), sharing one request budget and one deadline so every case
 * is bounded in count and time.  A scenario that changes a template's pool
 * puts the old policy back when it ends; templates it creates are named
 * bench-* and deleted after.
 */
#include "tools/thaw-bench.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"

#define BENCH_MAX_CLIENTS 64

/* ------------------------------------------------------------ load */

typedef struct load {
    const bench_t *b;
    const char *tpl;
    unsigned total;
    atomic_uint issued;
    atomic_uint hits;
    atomic_uint retries; /* capacity and busy refusals retried */
    uint64_t deadline_ns;
    pthread_mutex_t mu;
    bench_row_t *row;
    char first_error[256];
} load_t;

/* One sandbox.run of echo on an open connection; 0, or -1 with msg. */
/* 0 on success; else -1 with the message in msg and thawd's error code (0:
 * none, the failure was not a refusal) in *code. */
static int run_echo(thaw_client_t *c, long id, const char *tpl, bool *hit, int *code, char *msg,
                    size_t n)
{
    *code = 0;
    char line[512];
    int len = snprintf(line, sizeof(line),
                       "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"sandbox.run\",\"params\":"
                       "{\"template\":\"%s\",\"argv\":[\"echo\",\"hi\"]}}\n",
                       id, tpl);
    if (send(c->fd, line, (size_t)len, MSG_NOSIGNAL) != len) {
        snprintf(msg, n, "send failed");
        return -1;
    }
    char *buf = NULL;
    size_t cap = 0;
    int rc = -1;
    snprintf(msg, n, "thawd closed the connection");
    while (getline(&buf, &cap, c->in) > 0) {
        json_t *m = json_loads(buf, 0, NULL);
        if (!json_object_get(m, "id")) {
            json_decref(m);
            continue;
        }
        json_t *err = json_object_get(m, "error");
        json_t *res = json_object_get(m, "result");
        if (err) {
            snprintf(msg, n, "%s", json_string_value(json_object_get(err, "message")));
            *code = (int)json_integer_value(json_object_get(err, "code"));
        } else if (res && json_integer_value(json_object_get(res, "exit_code")) == 0 &&
                   !strcmp(json_string_value(json_object_get(res, "stdout")) ?: "", "hi\n")) {
            *hit = json_is_true(json_object_get(res, "hit"));
            rc = 0;
        } else {
            snprintf(msg, n, "echo did not print 'hi' or failed");
        }
        json_decref(m);
        break;
    }
    free(buf);
    return rc;
}

static void *load_client(void *arg)
{
    load_t *l = arg;
    thaw_client_t c;
    if (thaw_client_open(&c, l->b->cli->socket)) {
        pthread_mutex_lock(&l->mu);
        l->row->errors++;
        pthread_mutex_unlock(&l->mu);
        return NULL;
    }
    for (long id = 1;; id++) {
        if (atomic_fetch_add(&l->issued, 1) >= l->total || thaw_now_ns() > l->deadline_ns)
            break;
        char msg[256];
        bool hit = false;
        uint64_t t0 = thaw_now_ns();
        int code;
        int r = run_echo(&c, id, l->tpl, &hit, &code, msg, sizeof(msg));
        /* A capacity refusal (-32002) or a busy one (-32004: this uid is at
         * --max-inflight-per-uid, the bench's clients all being one uid)
         * means "try again shortly" (the CLI's exit 5): a client that waits
         * for room is what the latency should show. */
        while (r < 0 && (code == -32002 || code == -32004) && thaw_now_ns() < l->deadline_ns) {
            atomic_fetch_add(&l->retries, 1);
            usleep(10000);
            r = run_echo(&c, ++id, l->tpl, &hit, &code, msg, sizeof(msg));
        }
        uint64_t dt = thaw_now_ns() - t0;
        pthread_mutex_lock(&l->mu);
        if (r == 0)
            bench_row_add(l->row, dt);
        else if (!l->row->errors++)
            snprintf(l->first_error, sizeof(l->first_error), "%s", msg);
        pthread_mutex_unlock(&l->mu);
        if (r == 0 && hit)
            atomic_fetch_add(&l->hits, 1);
        if (r < 0 && !strcmp(msg, "thawd closed the connection"))
            break;
    }
    thaw_client_close(&c);
    return NULL;
}

/* `total` runs of echo from `clients` connections; fills row; returns hits. */
static unsigned load_run(const bench_t *b, const char *tpl, unsigned clients, unsigned total,
                         bench_row_t *row)
{
    load_t l = {.b = b, .tpl = tpl, .total = total, .row = row};
    pthread_mutex_init(&l.mu, NULL);
    uint64_t t0 = thaw_now_ns();
    l.deadline_ns = t0 + (uint64_t)(b->time_s * 1e9);
    pthread_t th[BENCH_MAX_CLIENTS];
    unsigned started = 0;
    if (clients > BENCH_MAX_CLIENTS)
        clients = BENCH_MAX_CLIENTS;
    for (unsigned i = 0; i < clients; i++)
        if (pthread_create(&th[started], NULL, load_client, &l) == 0)
            started++;
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    row->elapsed_s = (double)(thaw_now_ns() - t0) / 1e9;
    row->throughput = row->elapsed_s > 0 ? (double)row->n / row->elapsed_s : 0;
    if (row->errors && !row->n)
        bench_row_fail(row, "%s", l.first_error);
    else if (row->errors)
        snprintf(row->note, sizeof(row->note), "first error: %.200s", l.first_error);
    unsigned retries = atomic_load(&l.retries);
    if (retries && !row->failed)
        snprintf(row->note + strlen(row->note), sizeof(row->note) - strlen(row->note),
                 "%s%u capacity or busy refusals waited out", row->note[0] ? "; " : "", retries);
    pthread_mutex_destroy(&l.mu);
    return atomic_load(&l.hits);
}

/* ------------------------------------------------------------ pools */

typedef struct policy {
    long long min_ready, max_ready, max_total, memory_mb;
    char tier[16];
} policy_t;

static int get_policy(const bench_t *b, const char *tpl, policy_t *p, char *msg, size_t n)
{
    json_t *t = NULL;
    int r = bench_call(b, "template.get", json_pack("{s:s}", "name", tpl), &t, msg, n);
    if (r)
        return r;
    json_t *pool = json_object_get(t, "pool");
    p->min_ready = json_integer_value(json_object_get(pool, "min_ready"));
    p->max_ready = json_integer_value(json_object_get(pool, "max_ready"));
    p->max_total = json_integer_value(json_object_get(pool, "max_total"));
    p->memory_mb = json_integer_value(json_object_get(t, "memory_mb"));
    snprintf(p->tier, sizeof(p->tier), "%s", json_string_value(json_object_get(t, "tier")) ?: "");
    json_decref(t);
    return 0;
}

static int set_policy(const bench_t *b, const char *tpl, long long min, long long max,
                      long long total, char *msg, size_t n)
{
    json_t *res = NULL;
    int r = bench_call(b, "pool.configure",
                       json_pack("{s:s, s:I, s:I, s:I}", "name", tpl, "min_ready", min, "max_ready",
                                 max, "max_total", total),
                       &res, msg, n);
    json_decref(res);
    return r;
}

static long long pool_field(const bench_t *b, const char *tpl, const char *key)
{
    json_t *t = NULL;
    char msg[256];
    if (bench_call(b, "template.get", json_pack("{s:s}", "name", tpl), &t, msg, sizeof(msg)))
        return -1;
    long long v = json_integer_value(json_object_get(json_object_get(t, "pool"), key));
    json_decref(t);
    return v;
}

/* Wait (bounded) until the template has no ready or in-flight sandbox. */
static void wait_drained(const bench_t *b, const char *tpl)
{
    uint64_t until = thaw_now_ns() + 30000000000ull;
    while (thaw_now_ns() < until &&
           (pool_field(b, tpl, "ready") > 0 || pool_field(b, tpl, "creating") > 0 ||
            pool_field(b, tpl, "in_use") > 0))
        usleep(50000);
}

/* Wait (bounded by the case's time) until `count` are ready. */
static bool wait_ready(const bench_t *b, const char *tpl, long long count)
{
    uint64_t until = thaw_now_ns() + (uint64_t)(b->time_s * 3e9);
    while (thaw_now_ns() < until) {
        long long r = pool_field(b, tpl, "ready");
        if (r >= count)
            return true;
        if (r < 0)
            return false;
        usleep(50000);
    }
    return false;
}

static int prewarm(const bench_t *b, const char *tpl, long long count, char *msg, size_t n)
{
    json_t *res = NULL;
    int r = bench_call(b, "pool.prewarm",
                       json_pack("{s:s, s:I, s:I, s:I}", "name", tpl, "count", count, "window_ms",
                                 (json_int_t)(b->time_s * 6000), "wait_ms",
                                 (json_int_t)(b->time_s * 3000)),
                       &res, msg, n);
    json_decref(res);
    return r;
}

/* End a prewarm window early: its target outlives pool.configure's max_ready. */
static void end_prewarm(const bench_t *b, const char *tpl)
{
    json_t *res = NULL;
    char msg[256];
    bench_call(b, "pool.prewarm",
               json_pack("{s:s, s:i, s:i}", "name", tpl, "count", 0, "window_ms", 0), &res, msg,
               sizeof(msg));
    json_decref(res);
}

/* How many sandboxes of memory_mb the server's memory budget holds. */
static long long budget_slots(const bench_t *b, long long memory_mb, long long *budget_mb)
{
    json_t *st = NULL;
    char msg[256];
    *budget_mb = 0;
    if (bench_call(b, "server.stats", NULL, &st, msg, sizeof(msg)))
        return 0;
    json_t *srv = json_object_get(st, "server");
    *budget_mb = json_integer_value(json_object_get(srv, "memory_budget_mb"));
    long long cap = json_integer_value(json_object_get(srv, "max_sandboxes"));
    json_decref(st);
    long long slots = memory_mb > 0 ? *budget_mb / memory_mb : cap;
    return slots < cap ? slots : cap;
}

/* A temporary template; 0 and the creation time, or an exit code and msg. */
static int create_tpl(const bench_t *b, const char *name, const char *tier, const char *engine,
                      long long min_ready, long long max_ready, uint64_t *ns, char *msg, size_t n)
{
    json_t *p = json_pack("{s:s, s:s, s:I, s:I}", "name", name, "tier", tier, "min_ready",
                          min_ready, "max_ready", max_ready);
    if (!strcmp(tier, "vm")) {
        json_object_set_new(p, "image", json_string(b->vm_image));
        json_object_set_new(p, "memory_mb", json_integer(64));
        json_object_set_new(p, "engine", json_string(engine ? engine : "shared"));
    }
    json_t *res = NULL;
    uint64_t t0 = thaw_now_ns();
    int r = bench_call(b, "template.create", p, &res, msg, n);
    if (ns)
        *ns = thaw_now_ns() - t0;
    json_decref(res);
    return r;
}

static void delete_tpl(const bench_t *b, const char *name)
{
    json_t *res = NULL;
    char msg[256];
    bench_call(b, "template.delete", json_pack("{s:s}", "name", name), &res, msg, sizeof(msg));
    json_decref(res);
}

/* ------------------------------------------------------------ scenarios */

void bench_hit(bench_t *b)
{
    policy_t pol;
    char msg[512];
    if (get_policy(b, b->tpl, &pol, msg, sizeof(msg))) {
        bench_row_fail(bench_row_new(b, "hit", "template %s", b->tpl), "%s", msg);
        return;
    }
    long long budget;
    long long slots = budget_slots(b, pol.memory_mb, &budget);
    static const unsigned clients[] = {1, 8, 64};
    for (size_t i = 0; i < 3; i++) {
        bench_row_t *row =
            bench_row_new(b, "hit", "%u client%s", clients[i], clients[i] > 1 ? "s" : "");
        /* A warm pool twice as deep as the clients, at least 4, within half the
         * budget (the other half is for the sandboxes in use). */
        long long depth = clients[i] * 2 < 4 ? 4 : clients[i] * 2;
        if (depth > slots / 2)
            depth = slots / 2;
        if (depth < 1)
            depth = 1;
        long long max_ready = depth > pol.max_ready ? depth : pol.max_ready;
        long long total = pol.max_total > 2 * max_ready ? pol.max_total : 2 * max_ready;
        if (set_policy(b, b->tpl, pol.min_ready, max_ready, total, msg, sizeof(msg)) ||
            prewarm(b, b->tpl, depth, msg, sizeof(msg))) {
            bench_row_fail(row, "warming %lld: %s", depth, msg);
            continue;
        }
        bench_say(b, "hit: %u clients, pool of %lld", clients[i], depth);
        unsigned hits = load_run(b, b->tpl, clients[i], b->count, row);
        if (!row->failed && !row->note[0])
            snprintf(row->note, sizeof(row->note), "pool %lld, hits %u%%", depth,
                     row->n ? (unsigned)(100 * hits / row->n) : 0);
        /* Let the pool refill before the next level. */
        wait_ready(b, b->tpl, depth);
    }
    end_prewarm(b, b->tpl);
    set_policy(b, b->tpl, pol.min_ready, pol.max_ready, pol.max_total, msg, sizeof(msg));
}

/* Every request makes its sandbox: pool target 0. */
static void miss_case(bench_t *b, const char *tpl, bench_row_t *row)
{
    char msg[512];
    policy_t pol;
    if (get_policy(b, tpl, &pol, msg, sizeof(msg))) {
        bench_row_fail(row, "%s", msg);
        return;
    }
    end_prewarm(b, tpl);
    if (set_policy(b, tpl, 0, 0, pol.max_total, msg, sizeof(msg))) {
        bench_row_fail(row, "pool target 0: %s", msg);
        return;
    }
    wait_drained(b, tpl);
    unsigned hits = load_run(b, tpl, 1, b->count < 50 ? b->count : 50, row);
    if (!row->failed && !row->note[0])
        snprintf(row->note, sizeof(row->note), "%s, hits %u", pol.tier, hits);
    set_policy(b, tpl, pol.min_ready, pol.max_ready, pol.max_total, msg, sizeof(msg));
}

void bench_miss(bench_t *b)
{
    miss_case(b, b->tpl, bench_row_new(b, "miss", "%s", b->tpl));
    static const char *const engines[] = {"eager", "lazy", "shared"};
    for (size_t i = 0; i < 3; i++) {
        bench_row_t *row = bench_row_new(b, "miss", "vm %s", engines[i]);
        if (!b->vm_image) {
            snprintf(row->note, sizeof(row->note), "skipped: no vm image (--vm-image)");
            continue;
        }
        char name[64], msg[512];
        snprintf(name, sizeof(name), "bench-miss-%s", engines[i]);
        delete_tpl(b, name); /* a leftover of an interrupted run */
        if (create_tpl(b, name, "vm", engines[i], 0, 0, NULL, msg, sizeof(msg))) {
            bench_row_fail(row, "create vm template: %s", msg);
            continue;
        }
        miss_case(b, name, row);
        delete_tpl(b, name);
    }
}

static void burst(bench_t *b, bench_row_t *row, const char *what)
{
    unsigned clients = b->spike < BENCH_MAX_CLIENTS ? b->spike : BENCH_MAX_CLIENTS;
    unsigned hits = load_run(b, b->tpl, clients, b->spike, row);
    if (!row->failed)
        snprintf(row->note + strlen(row->note), sizeof(row->note) - strlen(row->note),
                 "%s%s: all served in %.2fs, hits %u", row->note[0] ? "; " : "", what,
                 row->elapsed_s, hits);
}

void bench_spike(bench_t *b)
{
    policy_t pol;
    char msg[512];
    bench_row_t *cold = bench_row_new(b, "spike", "pool of 4");
    if (get_policy(b, b->tpl, &pol, msg, sizeof(msg))) {
        bench_row_fail(cold, "%s", msg);
        return;
    }
    long long budget;
    long long slots = budget_slots(b, pol.memory_mb, &budget);
    long long total = pol.max_total > BENCH_MAX_CLIENTS + 4 ? pol.max_total : BENCH_MAX_CLIENTS + 4;
    if (set_policy(b, b->tpl, 4, 4, total, msg, sizeof(msg)) || !wait_ready(b, b->tpl, 4))
        bench_row_fail(cold, "pool of 4: %s", msg[0] ? msg : "not ready in time");
    else
        burst(b, cold, "no prewarm");

    /* The same burst after pool.prewarm: as many ready as the budget allows. */
    long long depth = (long long)b->spike < slots / 2 ? (long long)b->spike : slots / 2;
    bench_row_t *warm = bench_row_new(b, "spike", "prewarm %lld", depth);
    total = total > 2 * depth ? total : 2 * depth;
    if (set_policy(b, b->tpl, 4, depth, total, msg, sizeof(msg)) ||
        prewarm(b, b->tpl, depth, msg, sizeof(msg)))
        bench_row_fail(warm, "prewarm %lld: %s", depth, msg);
    else
        burst(b, warm, "prewarmed");
    end_prewarm(b, b->tpl);
    set_policy(b, b->tpl, pol.min_ready, pol.max_ready, pol.max_total, msg, sizeof(msg));
}

void bench_template(bench_t *b)
{
    const char *tiers[] = {"sentry", b->vm_image ? "vm" : NULL};
    for (size_t t = 0; t < 2 && tiers[t]; t++) {
        bench_row_t *row = bench_row_new(b, "template", "%s", tiers[t]);
        unsigned n = b->count < 3 ? b->count : 3;
        uint64_t t0 = thaw_now_ns();
        for (unsigned i = 0; i < n; i++) {
            char name[64], msg[512];
            uint64_t ns = 0;
            snprintf(name, sizeof(name), "bench-tpl-%s-%u", tiers[t], i);
            delete_tpl(b, name);
            if (create_tpl(b, name, tiers[t], NULL, 0, 1, &ns, msg, sizeof(msg))) {
                row->errors++;
                bench_row_fail(row, "%s", msg);
                break;
            }
            bench_row_add(row, ns);
            delete_tpl(b, name);
            if ((double)(thaw_now_ns() - t0) / 1e9 > b->time_s)
                break;
        }
        row->elapsed_s = (double)(thaw_now_ns() - t0) / 1e9;
        if (!row->failed)
            snprintf(row->note, sizeof(row->note), "%s",
                     t ? "boot, hello, quiesce, snapshot" : "root build, definition saved");
    }
}

/* Proportional set size of a process and all its descendants, KiB. */
static long long tree_pss_kib(int root)
{
    size_t n = 0, cap = 0;
    struct proc {
        int pid, ppid;
        bool in;
    } *ps = NULL;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        int pid = atoi(de->d_name);
        if (pid <= 0)
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = 0;
        char *rp = strrchr(buf, ')');
        int ppid = 0;
        if (!rp || sscanf(rp + 2, "%*c %d", &ppid) != 1)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            struct proc *np = realloc(ps, cap * sizeof(*np));
            if (!np)
                break;
            ps = np;
        }
        ps[n++] = (struct proc){pid, ppid, pid == root};
    }
    if (d)
        closedir(d);
    /* Mark descendants until nothing changes (the tree is shallow). */
    for (bool grew = true; grew;) {
        grew = false;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; !ps[i].in && j < n; j++)
                if (ps[j].in && ps[j].pid == ps[i].ppid)
                    grew = ps[i].in = true;
    }
    long long sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ps[i].in)
            continue;
        char path[64], line[256];
        snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", ps[i].pid);
        FILE *f = fopen(path, "re");
        long long kib;
        while (f && fgets(line, sizeof(line), f))
            if (sscanf(line, "Pss: %lld kB", &kib) == 1)
                sum += kib;
        if (f)
            fclose(f);
    }
    free(ps);
    return sum;
}

/* MemTotal - MemAvailable, KiB: includes the kernel's share, and everyone else's. */
static long long host_used_kib(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    char line[256];
    long long total = 0, avail = 0, v;
    while (f && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "MemTotal: %lld kB", &v) == 1)
            total = v;
        else if (sscanf(line, "MemAvailable: %lld kB", &v) == 1)
            avail = v;
    }
    if (f)
        fclose(f);
    return total - avail;
}

static void density_case(bench_t *b, const char *tpl, bench_row_t *row, int thawd_pid)
{
    char msg[512];
    policy_t pol;
    if (get_policy(b, tpl, &pol, msg, sizeof(msg))) {
        bench_row_fail(row, "%s", msg);
        return;
    }
    long long budget;
    long long slots = budget_slots(b, pol.memory_mb, &budget);
    long long k = (long long)b->density < slots ? (long long)b->density : slots;
    long long total = pol.max_total > k ? pol.max_total : k;
    end_prewarm(b, tpl);
    if (set_policy(b, tpl, 0, 0, total, msg, sizeof(msg))) {
        bench_row_fail(row, "%s", msg);
        return;
    }
    wait_drained(b, tpl);
    usleep(200000); /* the reapers return memory just after the count drops */
    long long before = tree_pss_kib(thawd_pid), host_before = host_used_kib();
    uint64_t t0 = thaw_now_ns();
    if (set_policy(b, tpl, k, k, total, msg, sizeof(msg)) || !wait_ready(b, tpl, k)) {
        bench_row_fail(row, "%lld ready: %s", k, msg[0] ? msg : "not ready in time");
    } else {
        usleep(500000); /* let lazily restored memory settle */
        long long after = tree_pss_kib(thawd_pid), host_after = host_used_kib();
        row->elapsed_s = (double)(thaw_now_ns() - t0) / 1e9;
        double per = (double)(after - before) / 1024.0 / (double)k;
        row->value = per;
        snprintf(row->unit, sizeof(row->unit), "MiB each");
        long long fit = per > 0 ? (long long)((double)budget / per) : 0;
        double host = (double)(host_after - host_before) / 1024.0 / (double)k;
        snprintf(row->note, sizeof(row->note),
                 "%lld idle ready: %.2f MiB PSS each (%.2f MiB host-wide, kernel included); "
                 "%lld MiB budget: %lld by PSS, %lld as thawd charges (memory_mb %lld)",
                 k, per, host, budget, fit, pol.memory_mb ? budget / pol.memory_mb : 0,
                 pol.memory_mb);
    }
    set_policy(b, tpl, pol.min_ready, pol.max_ready, pol.max_total, msg, sizeof(msg));
}

void bench_density(bench_t *b)
{
    json_t *info = NULL;
    char msg[512];
    int pid = 0;
    if (bench_call(b, "server.info", NULL, &info, msg, sizeof(msg)) == 0)
        pid = (int)json_integer_value(json_object_get(info, "pid"));
    json_decref(info);
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
    if (pid <= 0 || access(path, R_OK) < 0) {
        bench_row_fail(bench_row_new(b, "density", "%s", b->tpl),
                       "thawd's process %d is not readable here (density needs the same host)",
                       pid);
        return;
    }
    density_case(b, b->tpl, bench_row_new(b, "density", "%s", b->tpl), pid);
    if (!b->vm_image)
        return;
    bench_row_t *row = bench_row_new(b, "density", "vm shared");
    delete_tpl(b, "bench-density-vm");
    if (create_tpl(b, "bench-density-vm", "vm", "shared", 0, 0, NULL, msg, sizeof(msg))) {
        bench_row_fail(row, "create vm template: %s", msg);
        return;
    }
    density_case(b, "bench-density-vm", row, pid);
    delete_tpl(b, "bench-density-vm");
}
