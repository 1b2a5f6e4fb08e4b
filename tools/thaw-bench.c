// SPDX-License-Identifier: Apache-2.0
/*
 * thaw bench: options, the result rows, a quiet JSON-RPC call that keeps
 * thawd's error message, and the output: a table on stdout, bench.json and
 * table.txt plus plots under --out, and the ratios against the peers
 * measured in the same run.  The scenarios are in thaw-bench-scen.c and
 * thaw-bench-peers.c.
 */
#include "tools/thaw-bench.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

bench_row_t *bench_row_new(bench_t *b, const char *scenario, const char *fmt, ...)
{
    if (b->nrows == b->caprows) {
        size_t cap = b->caprows ? b->caprows * 2 : 32;
        bench_row_t *nr = realloc(b->rows, cap * sizeof(*nr));
        if (!nr) {
            fprintf(stderr, "thaw bench: out of memory\n");
            exit(THAW_EXIT_FAIL);
        }
        b->rows = nr;
        b->caprows = cap;
    }
    bench_row_t *r = &b->rows[b->nrows++];
    memset(r, 0, sizeof(*r));
    snprintf(r->scenario, sizeof(r->scenario), "%s", scenario);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->name, sizeof(r->name), fmt, ap);
    va_end(ap);
    return r;
}

void bench_row_add(bench_row_t *r, uint64_t ns)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        uint64_t *nn = realloc(r->ns, cap * sizeof(*nn));
        if (!nn)
            return;
        r->ns = nn;
        r->cap = cap;
    }
    r->ns[r->n++] = ns;
}

void bench_row_fail(bench_row_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->note, sizeof(r->note), fmt, ap);
    va_end(ap);
    r->failed = true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t bench_row_pct(bench_row_t *r, double p)
{
    if (!r->n)
        return 0;
    qsort(r->ns, r->n, sizeof(*r->ns), cmp_u64);
    /* nearest rank */
    size_t rank = (size_t)(p / 100.0 * (double)r->n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > r->n)
        rank = r->n;
    return r->ns[rank - 1];
}

void bench_say(const bench_t *b, const char *fmt, ...)
{
    if (b->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int bench_call(const bench_t *b, const char *method, json_t *params, json_t **result, char *msg,
               size_t n)
{
    thaw_client_t c;
    *result = NULL;
    /* thaw_client_open prints why it failed; that is worth seeing once. */
    if (thaw_client_open(&c, b->cli->socket)) {
        json_decref(params);
        snprintf(msg, n, "cannot reach thawd");
        return THAW_EXIT_CONNECT;
    }
    json_t *req = json_pack("{s:s, s:i, s:s}", "jsonrpc", "2.0", "id", 1, "method", method);
    json_object_set_new(req, "params", params ? params : json_object());
    char *line = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    int rc = THAW_EXIT_PROTOCOL;
    snprintf(msg, n, "thawd closed the connection");
    if (line) {
        size_t len = strlen(line);
        line[len] = '\n';
        ssize_t w = send(c.fd, line, len + 1, MSG_NOSIGNAL);
        free(line);
        char *buf = NULL;
        size_t cap = 0;
        while (w == (ssize_t)(len + 1) && getline(&buf, &cap, c.in) > 0) {
            json_t *m = json_loads(buf, 0, NULL);
            if (!json_object_get(m, "id")) { /* a notification */
                json_decref(m);
                continue;
            }
            json_t *err = json_object_get(m, "error");
            if (err) {
                snprintf(msg, n, "%s", json_string_value(json_object_get(err, "message")));
                rc = thaw_exit_for_code((int)json_integer_value(json_object_get(err, "code")));
            } else if (json_object_get(m, "result")) {
                *result = json_incref(json_object_get(m, "result"));
                msg[0] = 0;
                rc = 0;
            }
            json_decref(m);
            break;
        }
        free(buf);
    }
    thaw_client_close(&c);
    return rc;
}

/* ------------------------------------------------------------ output */

static const char *us_cell(uint64_t ns, char *buf, size_t n)
{
    return thaw_fmt_us((double)ns / 1e3, buf, n);
}

static void print_table(bench_t *b, FILE *f)
{
    static const char *const hdr[] = {"SCENARIO", "CASE", "N",    "ERR",   "RATE/s",
                                      "P50",      "P99",  "P999", "VALUE", "NOTE"};
    thaw_table_t *t = thaw_table_new(10, hdr);
    for (size_t i = 0; i < b->nrows; i++) {
        bench_row_t *r = &b->rows[i];
        char c[8][48];
        snprintf(c[0], 48, "%zu", r->n);
        snprintf(c[1], 48, "%u", r->errors);
        snprintf(c[2], 48, "%.1f", r->throughput);
        snprintf(c[6], 48, "%.1f %s", r->value, r->unit);
        bool lat = r->n > 0;
        const char *cells[10] = {
            r->scenario,
            r->name,
            c[0],
            c[1],
            r->throughput > 0 ? c[2] : "-",
            lat ? us_cell(bench_row_pct(r, 50), c[3], 48) : "-",
            lat ? us_cell(bench_row_pct(r, 99), c[4], 48) : "-",
            lat ? us_cell(bench_row_pct(r, 99.9), c[5], 48) : "-",
            r->unit[0] ? c[6] : "-",
            r->failed    ? r->note
            : r->note[0] ? r->note
                         : "",
        };
        if (r->failed)
            cells[9] = r->note;
        thaw_table_add(t, cells);
    }
    thaw_table_print(t, f);
}

static bench_row_t *find_row(bench_t *b, const char *scenario, const char *name)
{
    for (size_t i = 0; i < b->nrows; i++)
        if (!strcmp(b->rows[i].scenario, scenario) && !strcmp(b->rows[i].name, name) &&
            !b->rows[i].failed && b->rows[i].n)
            return &b->rows[i];
    return NULL;
}

/*
 * Ratios that are fair within one run: each peer's p50 start-run-exit
 * against thaw's warm hit (1 client), thaw's miss (a sandbox made for the
 * request) and `thaw run` as a process (the CLI connecting, like a peer's
 * binary starting).
 */
static json_t *ratios(bench_t *b, FILE *f)
{
    json_t *arr = json_array();
    struct {
        const char *label, *scenario, *name;
    } base[] = {
        {"thaw hit (1 client)", "hit", "1 client"},
        {"thaw miss (default)", "miss", b->tpl},
        {"thaw run (CLI process)", "peers", "thaw run"},
    };
    bool header = false;
    for (size_t i = 0; i < b->nrows; i++) {
        bench_row_t *p = &b->rows[i];
        if (strcmp(p->scenario, "peers") || !strcmp(p->name, "thaw run") || p->failed || !p->n)
            continue;
        for (size_t k = 0; k < sizeof(base) / sizeof(base[0]); k++) {
            bench_row_t *t = find_row(b, base[k].scenario, base[k].name);
            if (!t)
                continue;
            double ratio = (double)bench_row_pct(p, 50) / (double)bench_row_pct(t, 50);
            if (!header && f) {
                fprintf(f, "\nratios (p50, same run): how many times longer the peer takes\n");
                header = true;
            }
            if (f)
                fprintf(f, "  %-10s / %-24s %8.1fx\n", p->name, base[k].label, ratio);
            json_array_append_new(arr, json_pack("{s:s, s:s, s:f}", "peer", p->name, "thaw",
                                                 base[k].label, "ratio", ratio));
        }
    }
    return arr;
}

static json_t *machine_json(void)
{
    struct utsname u;
    uname(&u);
    char model[300] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "re");
    char line[256];
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            snprintf(model, sizeof(model), "%s", c ? c + 2 : line);
            model[strcspn(model, "\n")] = 0;
            break;
        }
    if (f)
        fclose(f);
    struct stat st;
    const char *kvm = stat("/sys/module/kvm_pvm", &st) == 0 ? "PVM"
                      : access("/dev/kvm", F_OK) == 0       ? "hardware KVM"
                                                            : "none";
    long mem_mb = sysconf(_SC_PHYS_PAGES) / 1024 * sysconf(_SC_PAGESIZE) / 1024;
    return json_pack("{s:i, s:s, s:s, s:s, s:I}", "cpus", (int)sysconf(_SC_NPROCESSORS_ONLN), "cpu",
                     model, "kernel", u.release, "kvm", kvm, "memory_mb", (json_int_t)mem_mb);
}

static json_t *rows_json(bench_t *b)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < b->nrows; i++) {
        bench_row_t *r = &b->rows[i];
        json_t *o =
            json_pack("{s:s, s:s, s:I, s:i, s:f, s:f, s:b}", "scenario", r->scenario, "case",
                      r->name, "n", (json_int_t)r->n, "errors", (int)r->errors, "elapsed_s",
                      r->elapsed_s, "throughput", r->throughput, "failed", r->failed);
        if (r->n) {
            json_object_set_new(o, "p50_us", json_real((double)bench_row_pct(r, 50) / 1e3));
            json_object_set_new(o, "p90_us", json_real((double)bench_row_pct(r, 90) / 1e3));
            json_object_set_new(o, "p99_us", json_real((double)bench_row_pct(r, 99) / 1e3));
            json_object_set_new(o, "p999_us", json_real((double)bench_row_pct(r, 99.9) / 1e3));
            json_object_set_new(o, "max_us", json_real((double)bench_row_pct(r, 100) / 1e3));
        }
        if (r->unit[0]) {
            json_object_set_new(o, "value", json_real(r->value));
            json_object_set_new(o, "unit", json_string(r->unit));
        }
        if (r->note[0])
            json_object_set_new(o, "note", json_string(r->note));
        json_array_append_new(arr, o);
    }
    return arr;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: thaw bench [options]\n\n"
               "Scenarios against a running thawd, each bounded by --count and --time:\n"
               "  hit       sandbox.run of echo from a warm pool with 1, 8 and 64 clients\n"
               "  miss      pool target 0, every request makes a sandbox: per engine\n"
               "  spike     a burst of --spike requests against a pool of 4, without and with\n"
               "            pool.prewarm beforehand\n"
               "  template  time to create a template (vm: boot, warm-up, snapshot)\n"
               "  density   idle ready sandboxes per memory budget, resident memory each\n"
               "  peers     (--peers) the same start-run-exit work with bubblewrap, crun,\n"
               "            runsc and QEMU incoming migration, where installed\n\n"
               "  --template NAME     template for hit, miss, spike, density (default 'default')\n"
               "  --vm-image PATH     vm guest image: vm engines for miss, template, density\n"
               "                      (default: this build's test guest, when found)\n"
               "  --only LIST         scenarios to run (comma-separated; default all but peers)\n"
               "  --peers             also run the peers (tools/bench-peers)\n"
               "  --count N           requests per case (default 200)\n"
               "  --spike N           burst size (default 200)\n"
               "  --density N         sandboxes prewarmed to measure density (default 16)\n"
               "  --time S            time bound per case in seconds (default 20)\n"
               "  --out DIR           bench.json, table.txt and plots (default thaw-bench-out)\n"
               "  --no-plots          skip gnuplot\n");
}

/* The directory of this executable, for the build tree's test guest and scripts. */
static void exe_dir(char *buf, size_t n)
{
    ssize_t len = readlink("/proc/self/exe", buf, n - 1);
    buf[len > 0 ? len : 0] = 0;
    char *s = strrchr(buf, '/');
    if (s)
        *s = 0;
}

int thaw_cmd_bench(const thaw_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"template", required_argument, NULL, 't'}, {"vm-image", required_argument, NULL, 'v'},
        {"only", required_argument, NULL, 'o'},     {"peers", no_argument, NULL, 'p'},
        {"count", required_argument, NULL, 'n'},    {"spike", required_argument, NULL, 's'},
        {"density", required_argument, NULL, 'd'},  {"time", required_argument, NULL, 'T'},
        {"out", required_argument, NULL, 'O'},      {"no-plots", no_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    bench_t b = {.cli = cli,
                 .tpl = "default",
                 .count = 200,
                 .spike = 200,
                 .density = 16,
                 .time_s = 20,
                 .out_dir = "thaw-bench-out",
                 .quiet = cli->json};
    const char *only = "hit,miss,spike,template,density";
    bool plots = true;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            b.tpl = optarg;
            break;
        case 'v':
            b.vm_image = optarg;
            break;
        case 'o':
            only = optarg;
            break;
        case 'p':
            b.peers = true;
            break;
        case 'n':
        case 's':
        case 'd': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 100000) {
                fprintf(stderr, "thaw bench: %s '%s': expected 1..100000\n", argv[optind - 1],
                        optarg);
                return THAW_EXIT_USAGE;
            }
            *(c == 'n' ? &b.count : c == 's' ? &b.spike : &b.density) = (unsigned)v;
            break;
        }
        case 'T':
            b.time_s = atof(optarg);
            if (b.time_s <= 0) {
                fprintf(stderr, "thaw bench: --time '%s': expected seconds > 0\n", optarg);
                return THAW_EXIT_USAGE;
            }
            break;
        case 'O':
            b.out_dir = optarg;
            break;
        case 'P':
            plots = false;
            break;
        case 'h':
            usage(stdout);
            return THAW_EXIT_OK;
        default:
            usage(stderr);
            return THAW_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "thaw bench: unexpected argument '%s'\n", argv[optind]);
        return THAW_EXIT_USAGE;
    }
    char dir[4096], guest[4200], script[4200], self[4200];
    exe_dir(dir, sizeof(dir));
    snprintf(self, sizeof(self), "%s/thaw", dir);
    b.thaw_exe = self;
    snprintf(guest, sizeof(guest), "%s/../tests/pool/thaw-agent-test-guest.elf", dir);
    if (!b.vm_image && access(guest, R_OK) == 0)
        b.vm_image = guest;
    snprintf(script, sizeof(script), "%s/../../tools/bench-peers", dir);
    b.peers_script = getenv("THAW_BENCH_PEERS") ? getenv("THAW_BENCH_PEERS") : script;

    json_t *info = NULL;
    char msg[512];
    int r = bench_call(&b, "server.info", NULL, &info, msg, sizeof(msg));
    if (r) {
        fprintf(stderr, "thaw bench: server.info: %s\n", msg);
        return r;
    }
    json_decref(info);
    if (mkdir(b.out_dir, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "thaw bench: create %s: %s\n", b.out_dir, strerror(errno));
        return THAW_EXIT_FAIL;
    }

    static const struct {
        const char *name;
        void (*fn)(bench_t *);
    } scen[] = {
        {"hit", bench_hit},           {"miss", bench_miss},       {"spike", bench_spike},
        {"template", bench_template}, {"density", bench_density},
    };
    for (size_t i = 0; i < sizeof(scen) / sizeof(scen[0]); i++) {
        char *dup = strdup(only), *save = NULL;
        bool want = false;
        for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
            want |= !strcmp(tok, scen[i].name);
        free(dup);
        if (want) {
            bench_say(&b, "scenario %s", scen[i].name);
            scen[i].fn(&b);
        }
    }
    if (b.peers || strstr(only, "peers")) {
        bench_say(&b, "scenario peers");
        bench_peers(&b);
    }

    json_t *doc =
        json_pack("{s:o, s:{s:s, s:I, s:I, s:I, s:f}, s:o}", "machine", machine_json(), "config",
                  "template", b.tpl, "count", (json_int_t)b.count, "spike", (json_int_t)b.spike,
                  "density", (json_int_t)b.density, "time_s", b.time_s, "rows", rows_json(&b));
    char path[4200];
    snprintf(path, sizeof(path), "%s/table.txt", b.out_dir);
    FILE *tf = fopen(path, "we");
    if (tf) {
        json_t *m = json_object_get(doc, "machine");
        fprintf(tf, "machine: %lld cpus (%s), %s, kernel %s\n",
                (long long)json_integer_value(json_object_get(m, "cpus")),
                json_string_value(json_object_get(m, "cpu")),
                json_string_value(json_object_get(m, "kvm")),
                json_string_value(json_object_get(m, "kernel")));
        print_table(&b, tf);
    }
    json_object_set_new(doc, "ratios", ratios(&b, tf));
    if (tf)
        fclose(tf);
    if (plots && bench_plot(&b) < 0)
        fprintf(stderr, "thaw bench: plots were not written (see above)\n");
    snprintf(path, sizeof(path), "%s/bench.json", b.out_dir);
    if (json_dump_file(doc, path, JSON_INDENT(2)) < 0)
        fprintf(stderr, "thaw bench: write %s failed\n", path);
    if (cli->json) {
        thaw_print_json(doc);
    } else {
        print_table(&b, stdout);
        json_decref(ratios(&b, stdout));
        printf("\nwritten to %s/ (bench.json, table.txt%s)\n", b.out_dir,
               plots ? ", *.svg, *.png" : "");
    }
    json_decref(doc);
    unsigned failed = 0;
    for (size_t i = 0; i < b.nrows; i++) {
        failed += b.rows[i].failed && strcmp(b.rows[i].scenario, "peers");
        free(b.rows[i].ns);
    }
    free(b.rows);
    /* A thaw scenario that could not run is a failure; a missing peer is not. */
    return failed ? THAW_EXIT_FAIL : THAW_EXIT_OK;
}
