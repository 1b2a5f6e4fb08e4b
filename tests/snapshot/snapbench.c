// SPDX-License-Identifier: Apache-2.0
/*
 * snapbench: numbers for the snapshot module, never assertions.  For each
 * memory size and chunk size it writes a guest-like snapshot (about 40% zero,
 * 40% compressible, 20% random pages) and reports write throughput and
 * compression ratio, then per engine the restore call latency (p50/p99 over
 * many restores), the time to touch every page and a random 10% working
 * set, and for the lazy engine the faults and time with and without the
 * recorded working set prefetched.
 *
 *   snapbench [--json] [--large] [--sizes MiB,MiB] [--chunks B,B] [--restores N] [--dir D]
 *             [--fill guest|random] [--write-only] [--writes N] [--threads N] [--lz4 LEVEL]
 *
 * --fill random makes every page incompressible and non-zero (what a VM
 * snapshot of busy memory looks like to the writer); --write-only skips the
 * restore engines and writes each snapshot --writes times (default 3), so a
 * writer change can be compared against a build of the old one in the same
 * run.  --threads sets the writer's compression threads (default 2; the
 * pool's template snapshots use 1), --lz4 its lz4 level (see snap.h).
 * Write rates: "wrGB/s" is memory.bin alone (chunking, checksums,
 * compression, writes), "totGB/s" the whole snap_write call (fsyncs,
 * rename), both over the guest memory size; "nonzeroGiB/s" the non-zero
 * memory over the whole call (vmmbench's figure); "cpu_ms" the process's
 * user + system CPU during the call (steadier than wall time on a shared
 * machine).
 *
 * The default run (128 and 512 MiB; 4 KiB, 64 KiB, 2 MiB chunks) stays near a
 * minute on two cores; --large adds 2 GiB.  The lazy engine needs
 * userfaultfd (root or vm.unprivileged_userfaultfd=1); without it its
 * columns are skipped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/hist.h"
#include "snaptest.h"

struct engine_result {
    bool ran;
    uint64_t restores;
    uint64_t p50_ns, p99_ns;
    uint64_t touch_all_ns, touch_ws_ns;
    uint64_t faults_all, faults_ws;
    /* lazy with the recorded working set prefetched */
    uint64_t pf_touch_ws_ns, pf_faults_ws, pf_prefetched;
    uint64_t base_build_ns; /* shared */
};

struct result {
    uint64_t size;
    uint32_t chunk;
    double write_gbps, write_total_gbps, ratio;
    double nonzero_total_gibps; /* non-zero memory over the whole call, as vmmbench prints */
    double cpu_ms;              /* user + system CPU of the whole process during the call */
    uint64_t chunks_zero, chunks_raw, chunks_lz4;
    double eager_gbps;        /* restore throughput of the eager engine (default threads) */
    double decode_gbps;       /* read + inflate + crc of every stored chunk into a warm buffer */
    double first_decode_gbps; /* the same, first read after the write */
    struct engine_result e[3];
};

static volatile uint64_t sink;
static unsigned write_threads = 2; /* --threads */
static int write_level;            /* --lz4 */

static uint64_t touch(const snap_mem_t *mem, const uint64_t *pages, size_t n)
{
    snap_region_t r;
    snap_mem_region(mem, 0, &r);
    uint64_t t0 = thaw_now_ns(), s = 0;
    for (size_t i = 0; i < n; i++)
        s += ((volatile unsigned char *)r.host)[pages[i]];
    sink += s;
    return thaw_now_ns() - t0;
}

static uint64_t touch_all(const snap_mem_t *mem)
{
    snap_region_t r;
    snap_mem_region(mem, 0, &r);
    uint64_t t0 = thaw_now_ns(), s = 0;
    for (uint64_t off = 0; off < r.size; off += 4096)
        s += ((volatile unsigned char *)r.host)[off];
    sink += s;
    return thaw_now_ns() - t0;
}

static uint64_t faults(const snap_mem_t *mem)
{
    snap_mem_stats_t st;
    snap_mem_get_stats(mem, &st);
    return st.faults;
}

static snap_mem_t *attach(snap_t *snap, snap_engine_t e, const snap_mem_opts_t *o, uint64_t *ns)
{
    thaw_err_t err;
    snap_mem_t *mem = NULL;
    uint64_t t0 = thaw_now_ns();
    if (snap_mem_attach(snap, e, o, &mem, &err) != 0) {
        fprintf(stderr, "snapbench: attach %s: %s\n", snap_engine_name(e), err.msg);
        return NULL;
    }
    if (ns)
        *ns = thaw_now_ns() - t0;
    return mem;
}

static void run_engine(snap_t *snap, snap_engine_t e, unsigned restores, const uint64_t *ws,
                       size_t nws, struct engine_result *out)
{
    thaw_hist_t h;
    thaw_hist_init(&h);
    if (e == SNAP_ENGINE_SHARED) {
        /* The base is built once per snapshot (reported apart); restores
         * map it. */
        snap_base_t *b;
        thaw_err_t err;
        if (snap_base_get(snap, &b, &err) != 0) {
            fprintf(stderr, "snapbench: %s\n", err.msg);
            return;
        }
        out->base_build_ns = snap_base_build_ns(b);
        snap_base_put(b);
    }
    for (unsigned i = 0; i < restores; i++) {
        uint64_t ns;
        snap_mem_t *m = attach(snap, e, NULL, &ns);
        if (!m)
            return;
        thaw_hist_add(&h, ns);
        snap_mem_destroy(m);
    }
    out->ran = true;
    out->restores = restores;
    out->p50_ns = thaw_hist_percentile(&h, 50);
    out->p99_ns = thaw_hist_percentile(&h, 99);

    snap_mem_opts_t rec = {.record_workingset = e == SNAP_ENGINE_LAZY};
    snap_mem_t *m = attach(snap, e, &rec, NULL);
    out->touch_ws_ns = touch(m, ws, nws);
    out->faults_ws = faults(m);
    if (e == SNAP_ENGINE_LAZY) {
        thaw_err_t err;
        if (snap_mem_workingset_save(m, &err) < 0)
            fprintf(stderr, "snapbench: %s\n", err.msg);
    }
    snap_mem_destroy(m);

    m = attach(snap, e, NULL, NULL);
    out->touch_all_ns = touch_all(m);
    out->faults_all = faults(m);
    snap_mem_destroy(m);

    if (e == SNAP_ENGINE_LAZY) {
        snap_mem_opts_t pf = {.prefetch = true};
        m = attach(snap, e, &pf, NULL);
        out->pf_touch_ws_ns = touch(m, ws, nws);
        snap_mem_stats_t st;
        snap_mem_get_stats(m, &st);
        out->pf_faults_ws = st.faults;
        out->pf_prefetched = st.chunks_prefetched;
        snap_mem_destroy(m);
    }
}

static bool lazy_available(void)
{
    const char *v = getenv("SNAPBENCH_NO_LAZY");
    if (v && *v == '1')
        return false;
    return geteuid() == 0 || access("/dev/userfaultfd", R_OK | W_OK) == 0;
}

static double tv_ms(const struct timeval *tv)
{
    return (double)tv->tv_sec * 1e3 + (double)tv->tv_usec / 1e3;
}

static void write_one(const char *dir, void *src, uint64_t size, uint32_t chunk, struct result *res)
{
    snap_region_t reg = {.guest_addr = 0, .host = src, .size = size};
    snap_write_opts_t o = {
        .chunk_size = chunk, .threads = write_threads, .lz4_level = write_level, .kind = "bench"};
    snap_write_stats_t ws_stats;
    thaw_err_t err;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    if (snap_write(dir, &reg, 1, NULL, 0, &o, &ws_stats, &err) != 0) {
        fprintf(stderr, "snapbench: %s\n", err.msg);
        exit(1);
    }
    getrusage(RUSAGE_SELF, &ru1);
    res->cpu_ms =
        tv_ms(&ru1.ru_utime) - tv_ms(&ru0.ru_utime) + tv_ms(&ru1.ru_stime) - tv_ms(&ru0.ru_stime);
    res->size = size;
    res->chunk = chunk;
    res->write_gbps = (double)size / (double)ws_stats.compress_ns;
    res->write_total_gbps = (double)size / (double)ws_stats.total_ns;
    res->ratio = (double)size / (double)ws_stats.bytes_out;
    res->chunks_zero = ws_stats.chunks_zero;
    res->chunks_raw = ws_stats.chunks_raw;
    res->chunks_lz4 = ws_stats.chunks_lz4;
    /* chunk count times chunk size: exact for the single region here */
    res->nonzero_total_gibps = (double)(ws_stats.chunks_raw + ws_stats.chunks_lz4) * chunk /
                               (1 << 30) / ((double)ws_stats.total_ns / 1e9);
}

/* Decode alone (read, lz4, crc32c) into a warm buffer: the per-core ceiling
 * of every engine, without page-fault costs.  GB/s of decoded bytes. */
static double decode_pass(snap_t *snap, uint32_t chunk)
{
    thaw_err_t err;
    char *dst = malloc(chunk), *scratch = malloc(chunk);
    memset(dst, 0, chunk);
    uint64_t bytes = 0, t0 = thaw_now_ns();
    for (uint64_t i = 0; i < snap->nchunks; i++) {
        if (snap->table[i].kind == SNAP__CHUNK_ZERO)
            continue;
        if (snap__chunk_read(snap, i, dst, scratch, &err) < 0) {
            fprintf(stderr, "snapbench: %s\n", err.msg);
            exit(1);
        }
        bytes += snap->table[i].raw_len;
    }
    double gbps = (double)bytes / (double)(thaw_now_ns() - t0);
    free(dst);
    free(scratch);
    return gbps;
}

static void bench_one(const char *root, void *src, uint64_t size, uint32_t chunk, unsigned restores,
                      const uint64_t *ws, size_t nws, struct result *res)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%.4000s/bench-%llu-%u", root, (unsigned long long)size, chunk);
    thaw_err_t err;
    write_one(dir, src, size, chunk, res);
    snap_t *snap;
    if (snap_open(dir, &snap, &err) != 0) {
        fprintf(stderr, "snapbench: %s\n", err.msg);
        exit(1);
    }
    /* The first pass reads memory.bin as the writer left it: not cached when
     * it was written with O_DIRECT (the writer's default), so it shows what
     * the first restore after a snapshot pays.  The second pass is cached,
     * like every later restore. */
    res->first_decode_gbps = decode_pass(snap, chunk);
    res->decode_gbps = decode_pass(snap, chunk);
    /* Eager restores are whole decompressions: a few suffice. */
    run_engine(snap, SNAP_ENGINE_EAGER, 3, ws, nws, &res->e[SNAP_ENGINE_EAGER]);
    res->eager_gbps = (double)size / (double)res->e[SNAP_ENGINE_EAGER].p50_ns;
    run_engine(snap, SNAP_ENGINE_SHARED, restores, ws, nws, &res->e[SNAP_ENGINE_SHARED]);
    if (lazy_available())
        run_engine(snap, SNAP_ENGINE_LAZY, restores, ws, nws, &res->e[SNAP_ENGINE_LAZY]);
    snap_close(snap);
    st_rmtree(dir);
}

/* --write-only: the same snapshot written `writes` times, one line each. */
static void bench_writes(const char *root, void *src, uint64_t size, uint32_t chunk,
                         unsigned writes, bool json, bool *first)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%.4000s/bench-%llu-%u", root, (unsigned long long)size, chunk);
    for (unsigned i = 0; i < writes; i++) {
        struct result r = {0};
        write_one(dir, src, size, chunk, &r);
        st_rmtree(dir);
        if (json)
            printf("%s{\"size_mib\":%llu,\"chunk\":%u,\"write_gbps\":%.3f,"
                   "\"write_total_gbps\":%.3f,\"nonzero_total_gibps\":%.3f,\"cpu_ms\":%.1f,"
                   "\"ratio\":%.3f}",
                   *first ? "" : ",", (unsigned long long)(size >> 20), chunk, r.write_gbps,
                   r.write_total_gbps, r.nonzero_total_gibps, r.cpu_ms, r.ratio);
        else
            printf("%-6llu %-7u %8.2f %8.2f %12.2f %8.0f %6.2f %8llu %8llu %8llu\n",
                   (unsigned long long)(size >> 20), chunk, r.write_gbps, r.write_total_gbps,
                   r.nonzero_total_gibps, r.cpu_ms, r.ratio, (unsigned long long)r.chunks_zero,
                   (unsigned long long)r.chunks_raw, (unsigned long long)r.chunks_lz4);
        fflush(stdout);
        *first = false;
    }
}

static void print_table_header(void)
{
    printf("%-6s %-7s %-7s %6s %6s %10s %10s %10s %10s %8s %10s %8s\n", "MiB", "chunk", "engine",
           "wrGB/s", "ratio", "p50_us", "p99_us", "touchall", "touch10%", "faults", "us/fault",
           "note");
}

static void print_row(const struct result *r)
{
    for (int e = 0; e < 3; e++) {
        const struct engine_result *x = &r->e[e];
        if (!x->ran)
            continue;
        char pf[96] = "-";
        char uspf[32] = "-";
        if (e == SNAP_ENGINE_LAZY) {
            snprintf(pf, sizeof(pf), "prefetched: %llu faults",
                     (unsigned long long)x->pf_faults_ws);
            if (x->faults_ws)
                snprintf(uspf, sizeof(uspf), "%.1f",
                         (double)x->touch_ws_ns / 1000.0 / (double)x->faults_ws);
        }
        if (e == SNAP_ENGINE_SHARED)
            snprintf(pf, sizeof(pf), "base built in %.1f ms", (double)x->base_build_ns / 1e6);
        if (e == SNAP_ENGINE_EAGER)
            snprintf(pf, sizeof(pf), "%.2f GB/s restore, %.2f GB/s decode (%.2f first read)",
                     r->eager_gbps, r->decode_gbps, r->first_decode_gbps);
        printf("%-6llu %-7u %-7s %6.2f %6.2f %10.1f %10.1f %8.1fms %8.1fms %8llu %10s  %s\n",
               (unsigned long long)(r->size >> 20), r->chunk, snap_engine_name((snap_engine_t)e),
               r->write_gbps, r->ratio, (double)x->p50_ns / 1000.0, (double)x->p99_ns / 1000.0,
               (double)x->touch_all_ns / 1e6, (double)x->touch_ws_ns / 1e6,
               (unsigned long long)x->faults_ws, uspf, pf);
    }
}

static void print_json(const struct result *rs, size_t n, const char *fill)
{
    printf("{\"bench\":\"snapbench\",\"fill\":\"%s\",\"results\":[", fill);
    for (size_t i = 0; i < n; i++) {
        const struct result *r = &rs[i];
        printf("%s{\"size_mib\":%llu,\"chunk\":%u,\"write_gbps\":%.3f,\"write_total_gbps\":%.3f,"
               "\"nonzero_total_gibps\":%.3f,\"ratio\":%.3f,"
               "\"chunks\":{\"zero\":%llu,\"raw\":%llu,\"lz4\":%llu},"
               "\"eager_restore_gbps\":%.3f,\"decode_gbps\":%.3f,\"first_decode_gbps\":%.3f,"
               "\"engines\":{",
               i ? "," : "", (unsigned long long)(r->size >> 20), r->chunk, r->write_gbps,
               r->write_total_gbps, r->nonzero_total_gibps, r->ratio,
               (unsigned long long)r->chunks_zero, (unsigned long long)r->chunks_raw,
               (unsigned long long)r->chunks_lz4, r->eager_gbps, r->decode_gbps,
               r->first_decode_gbps);
        bool first = true;
        for (int e = 0; e < 3; e++) {
            const struct engine_result *x = &r->e[e];
            if (!x->ran)
                continue;
            printf("%s\"%s\":{\"restores\":%llu,\"restore_p50_us\":%.1f,\"restore_p99_us\":%.1f,"
                   "\"touch_all_ms\":%.3f,\"touch_ws10_ms\":%.3f,\"faults_all\":%llu,"
                   "\"faults_ws10\":%llu",
                   first ? "" : ",", snap_engine_name((snap_engine_t)e),
                   (unsigned long long)x->restores, (double)x->p50_ns / 1000.0,
                   (double)x->p99_ns / 1000.0, (double)x->touch_all_ns / 1e6,
                   (double)x->touch_ws_ns / 1e6, (unsigned long long)x->faults_all,
                   (unsigned long long)x->faults_ws);
            if (e == SNAP_ENGINE_LAZY)
                printf(",\"us_per_fault_ws10\":%.2f,\"prefetch\":{\"touch_ws10_ms\":%.3f,"
                       "\"faults_ws10\":%llu,\"chunks_prefetched\":%llu,\"fault_cut_pct\":%.1f}",
                       x->faults_ws ? (double)x->touch_ws_ns / 1000.0 / (double)x->faults_ws : 0.0,
                       (double)x->pf_touch_ws_ns / 1e6, (unsigned long long)x->pf_faults_ws,
                       (unsigned long long)x->pf_prefetched,
                       x->faults_ws ? 100.0 * (1.0 - (double)x->pf_faults_ws / (double)x->faults_ws)
                                    : 0.0);
            if (e == SNAP_ENGINE_SHARED)
                printf(",\"base_build_ms\":%.1f", (double)x->base_build_ns / 1e6);
            printf("}");
            first = false;
        }
        printf("}}");
    }
    printf("]}\n");
}

static size_t parse_list(const char *s, uint64_t *out, size_t max)
{
    size_t n = 0;
    while (s && *s && n < max) {
        char *end;
        out[n++] = strtoull(s, &end, 10);
        s = *end == ',' ? end + 1 : NULL;
    }
    return n;
}

int main(int argc, char **argv)
{
    bool json = false, write_only = false, random_fill = false;
    unsigned writes = 3;
    uint64_t sizes[8] = {128, 512}, chunks[8] = {4096, 65536, 2u << 20};
    size_t nsizes = 2, nchunks = 3;
    unsigned restores = 50;
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "--large"))
            sizes[nsizes < 8 ? nsizes++ : 7] = 2048;
        else if (!strcmp(argv[i], "--sizes") && i + 1 < argc)
            nsizes = parse_list(argv[++i], sizes, 8);
        else if (!strcmp(argv[i], "--chunks") && i + 1 < argc)
            nchunks = parse_list(argv[++i], chunks, 8);
        else if (!strcmp(argv[i], "--restores") && i + 1 < argc)
            restores = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base = argv[++i];
        else if (!strcmp(argv[i], "--write-only"))
            write_only = true;
        else if (!strcmp(argv[i], "--lz4") && i + 1 < argc)
            write_level = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            write_threads = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--writes") && i + 1 < argc)
            writes = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--fill") && i + 1 < argc &&
                 (!strcmp(argv[i + 1], "guest") || !strcmp(argv[i + 1], "random")))
            random_fill = !strcmp(argv[++i], "random");
        else {
            fprintf(stderr, "usage: snapbench [--json] [--large] [--sizes MiB,..] "
                            "[--chunks bytes,..] [--restores N] [--dir D] "
                            "[--fill guest|random] [--write-only] [--writes N] [--threads N] "
                            "[--lz4 LEVEL]\n");
            return 2;
        }
    }
    char root[4096];
    snprintf(root, sizeof(root), "%s/snapbench.XXXXXX", base);
    if (!mkdtemp(root)) {
        perror("snapbench: mkdtemp");
        return 1;
    }
    const char *fill = random_fill ? "100% random" : "40% zero, 40% compressible, 20% random";
    struct result *rs = calloc(nsizes * nchunks, sizeof(*rs));
    size_t nr = 0;
    bool first = true;
    if (json && write_only)
        printf("{\"bench\":\"snapbench\",\"fill\":\"%s\",\"writes\":[", fill);
    else if (write_only)
        printf("%-6s %-7s %8s %8s %12s %8s %6s %8s %8s %8s\n", "MiB", "chunk", "wrGB/s", "totGB/s",
               "nonzeroGiB/s", "cpu_ms", "ratio", "zero", "raw", "lz4");
    else if (!json)
        print_table_header();
    for (size_t si = 0; si < nsizes; si++) {
        uint64_t size = sizes[si] << 20;
        void *src = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (src == MAP_FAILED) {
            perror("snapbench: mmap");
            return 1;
        }
        if (random_fill)
            st_fill_random(src, size, 42 + si);
        else
            st_fill_guest(src, size, 42 + si);
        /* A random 10% of the pages, in random order: the "request". */
        size_t npages = size / 4096, nws = npages / 10;
        uint64_t *ws = malloc(nws * sizeof(*ws));
        unsigned seed = 7;
        for (size_t i = 0; i < nws; i++)
            ws[i] = ((uint64_t)rand_r(&seed) * 65536u + (uint64_t)rand_r(&seed)) % npages * 4096;
        for (size_t ci = 0; ci < nchunks && write_only; ci++)
            bench_writes(root, src, size, (uint32_t)chunks[ci], writes, json, &first);
        for (size_t ci = 0; ci < nchunks && !write_only; ci++) {
            bench_one(root, src, size, (uint32_t)chunks[ci], restores, ws, nws, &rs[nr]);
            if (!json) {
                print_row(&rs[nr]);
                fflush(stdout);
            }
            nr++;
        }
        free(ws);
        munmap(src, size);
    }
    if (json && write_only)
        printf("]}\n");
    else if (json)
        print_json(rs, nr, fill);
    else if (!write_only)
        printf("columns: write GB/s (--threads compression threads), ratio, restore call p50/p99, "
               "time "
               "to touch every page / a random 10%% of pages, lazy faults on that 10%%, time per "
               "fault; note: eager restore throughput (default decode threads) and decode alone on "
               "one core (cached; in brackets the first read after the write), "
               "lazy faults on the same 10%% with the recorded working set prefetched, "
               "shared base build time\n");
    free(rs);
    st_rmtree(root);
    return 0;
}
