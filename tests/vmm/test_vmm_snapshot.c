// SPDX-License-Identifier: Apache-2.0
/*
 * Snapshot and restore of test-guest VMs (suite kvm).  The guest's stream
 * workload sends a known byte stream through the virtio-console while it
 * computes with AVX registers live and the LAPIC timer armed; a snapshot is
 * taken mid-stream, and every clone (each engine, a second generation, 20
 * at once on the shared engine) must finish with exactly the uninterrupted
 * run's accumulator and continue the stream with no gap or duplicate.  Bad
 * snapshots (corrupt, truncated, mismatched configuration, CPU features this
 * host lacks) fail cleanly and leak nothing.  Lazy memory that fails its
 * checksum under the vCPU, under the event thread (the console's ring) or
 * under vmm_snapshot stops that VM with the reason and never the process.
 */
#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest/compute.h"
#include "helpers.h"
#include "testlib.h"
#include "vmm/devices/state.h"
#include "vmm/state.h"

const char *guest_path;
static char tmpdir[] = "/tmp/thaw-vmm-snap-XXXXXX";

#define CHUNK  4096
#define SEED   77
#define CHUNKS 256
#define ITERS  1000000

static uint64_t expect_acc;

typedef struct stream {
    vmm_t *vm;
    int fd;
    size_t off; /* stream offset of the next byte expected */
    size_t end; /* CHUNKS * CHUNK */
    bool bad;   /* a byte differed from the pattern */
} stream_t;

/* Read whatever is there (or wait up to ms for something); check the pattern. */
static size_t stream_pump(stream_t *s, int ms)
{
    static uint8_t buf[65536];
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    if (poll(&p, 1, ms) != 1)
        return 0;
    ssize_t n = recv(s->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n <= 0)
        return 0;
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] != thaw_stream_byte(s->off + (size_t)i))
            s->bad = true;
    s->off += (size_t)n;
    return (size_t)n;
}

/* Read until `until` bytes have arrived (or 30 s pass). */
static void stream_read_until(stream_t *s, size_t until)
{
    for (int idle = 0; s->off < until && idle < 300;)
        idle = stream_pump(s, 100) ? 0 : idle + 1;
}

/* Pause, then take everything the device sent before the pause. */
static void stream_pause_drain(stream_t *s)
{
    int rc = vmm_pause(s->vm);
    if (rc < 0) {
        vmm_exit_t ex = {0};
        vmm_wait(s->vm, 0, &ex);
        static char con[65536];
        vmm_console_read(s->vm, con, sizeof(con), NULL);
        printf("guest stopped before the pause: %s code %u (%s) at stream offset %zu; "
               "console:\n%s\n",
               vmm_exit_reason_name(ex.reason), ex.code, ex.detail, s->off, con);
    }
    assert_int_equal(rc, 0);
    while (stream_pump(s, 0))
        ;
}

/* Run to the end: the whole remaining stream, poweroff 0, the right accumulator. */
static void stream_finish(stream_t *s)
{
    stream_read_until(s, s->end);
    assert_false(s->bad);
    assert_int_equal(s->off, s->end);
    vmm_exit_t ex = {0};
    assert_int_equal(vmm_wait(s->vm, 60000, &ex), 1);
    static char con[65536];
    vmm_console_read(s->vm, con, sizeof(con), NULL);
    if (ex.reason != VMM_EXIT_POWEROFF || ex.code != 0)
        printf("exit %s code %u; console:\n%s\n", vmm_exit_reason_name(ex.reason), ex.code, con);
    assert_int_equal(ex.reason, VMM_EXIT_POWEROFF);
    assert_int_equal(ex.code, 0);
    char want[64];
    snprintf(want, sizeof(want), "stream done acc=%llx ", (unsigned long long)expect_acc);
    if (!strstr(con, want))
        printf("want '%s'; console:\n%s\n", want, con);
    assert_non_null(strstr(con, want));
    /* nothing extra, then EOF: a stopped guest's channel is shut down (just
     * after vmm_wait can see the stop, hence the poll) */
    struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    assert_int_equal(recv(s->fd, (char[1]){0}, 1, MSG_DONTWAIT), 0);
}

static vmm_t *boot_stream_n(unsigned chunks, unsigned touch_mib, unsigned vcpus)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd),
             "thaw.test=%s thaw.chunks=%u thaw.iters=%u thaw.seed=%u thaw.touch=%u",
             vcpus > 1 ? "smpstream" : "stream", chunks, ITERS, SEED, touch_mib);
    return boot_guest(cmd, vcpus, 64ull << 20, NULL);
}

static vmm_t *boot_stream(unsigned chunks, unsigned touch_mib)
{
    return boot_stream_n(chunks, touch_mib, 1);
}

static vmm_t *restore(const char *dir, snap_engine_t engine, size_t off)
{
    thaw_err_t err;
    snap_t *snap;
    if (snap_open(dir, &snap, &err) < 0) {
        printf("snap_open: %s\n", err.msg);
        return NULL;
    }
    vmm_restore_opts_t o = {.engine = engine, .expect_mem_bytes = 64 << 20};
    vmm_t *vm = NULL;
    vmm_restore_timing_t t;
    if (vmm_restore(snap, &o, &vm, &t, &err) < 0)
        printf("vmm_restore (%s): %s\n", snap_engine_name(engine), err.msg);
    snap_close(snap); /* memory and bases hold their own references */
    if (vm && vmm_start(vm, &err) < 0) {
        printf("vmm_start: %s\n", err.msg);
        vmm_destroy(vm);
        return NULL;
    }
    (void)off;
    return vm;
}

/* Restore dir with engine: the clone must continue the stream from `at`
 * (where the snapshot was taken) to the end, as stream_finish checks. */
static void clone_finishes(const char *dir, snap_engine_t engine, size_t at)
{
    stream_t c = {.vm = restore(dir, engine, at), .off = at, .end = CHUNKS * CHUNK};
    assert_non_null(c.vm);
    c.fd = vmm_agent_fd(c.vm);
    stream_finish(&c);
    vmm_destroy(c.vm);
}

/* Restore dir with the lazy engine, not started; the restore must succeed
 * (its chunks are only checked when read). */
static vmm_t *restore_lazy(const char *dir)
{
    thaw_err_t err;
    snap_t *snap;
    assert_int_equal(snap_open(dir, &snap, &err), 0);
    vmm_restore_opts_t o = {.engine = SNAP_ENGINE_LAZY};
    vmm_t *vm;
    assert_int_equal(vmm_restore(snap, &o, &vm, NULL, &err), 0);
    snap_close(snap);
    return vm;
}

static char *path(const char *name)
{
    static char p[4][256];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof(p[i]), "%s/%s", tmpdir, name);
    return p[i];
}

static void test_snapshot_midstream_every_engine(void **state)
{
    stream_t s = {.vm = boot_stream(CHUNKS, 0), .end = CHUNKS * CHUNK};
    assert_non_null(s.vm);
    s.fd = vmm_agent_fd(s.vm);
    stream_read_until(&s, s.end / 4);
    stream_pause_drain(&s);
    size_t at = s.off;
    assert_true(at > 0 && at < s.end);
    thaw_err_t err;
    snap_write_stats_t ws;
    int rc = vmm_snapshot(s.vm, path("gen1"), NULL, &ws, &err);
    if (rc < 0)
        printf("vmm_snapshot: %s\n", err.msg);
    assert_int_equal(rc, 0);
    /* the original goes on as if nothing happened */
    assert_int_equal(vmm_resume(s.vm), 0);
    stream_finish(&s);
    vmm_destroy(s.vm);
    const snap_engine_t engines[] = {SNAP_ENGINE_EAGER, SNAP_ENGINE_LAZY, SNAP_ENGINE_SHARED};
    for (unsigned e = 0; e < 3; e++)
        clone_finishes(path("gen1"), engines[e], at);
}

static void test_snapshot_two_vcpus(void **state)
{
    stream_t s = {.vm = boot_stream_n(CHUNKS, 0, 2), .end = CHUNKS * CHUNK};
    assert_non_null(s.vm);
    s.fd = vmm_agent_fd(s.vm);
    stream_read_until(&s, s.end / 3);
    stream_pause_drain(&s);
    size_t at = s.off;
    thaw_err_t err;
    assert_int_equal(vmm_snapshot(s.vm, path("smp"), NULL, NULL, &err), 0);
    vmm_destroy(s.vm);
    clone_finishes(path("smp"), SNAP_ENGINE_SHARED, at);
}

static void test_snapshot_two_generations(void **state)
{
    /* gen1 from the previous test */
    struct stat st;
    assert_int_equal(stat(path("gen1"), &st), 0);
    thaw_err_t err;
    snap_t *snap;
    assert_int_equal(snap_open(path("gen1"), &snap, &err), 0);
    const void *p;
    assert_int_equal(snap_section_find(snap, VMM_SEC_CONFIG, NULL, &p, NULL), 0);
    snap_close(snap);
    /* Where gen1 stands in the stream: restore it and see the first byte. */
    stream_t a = {.vm = restore(path("gen1"), SNAP_ENGINE_EAGER, 0), .end = CHUNKS * CHUNK};
    assert_non_null(a.vm);
    a.fd = vmm_agent_fd(a.vm);
    /* The clone resends from its own position: find it by pattern. */
    uint8_t first[CHUNK];
    size_t got = 0;
    while (got < sizeof(first)) {
        struct pollfd pf = {.fd = a.fd, .events = POLLIN};
        assert_int_equal(poll(&pf, 1, 20000), 1);
        ssize_t n = recv(a.fd, first + got, sizeof(first) - got, MSG_DONTWAIT);
        assert_true(n > 0);
        got += (size_t)n;
    }
    size_t start = SIZE_MAX;
    for (size_t k = 0; k < CHUNKS && start == SIZE_MAX; k++)
        for (size_t o = 0; o < CHUNK; o++) {
            size_t j = k * CHUNK + o;
            if (!memcmp(first, (uint8_t[]){thaw_stream_byte(j)}, 1) &&
                thaw_stream_byte(j + 1) == first[1] && thaw_stream_byte(j + 100) == first[100]) {
                bool all = true;
                for (size_t i = 0; i < sizeof(first) && all; i++)
                    all = first[i] == thaw_stream_byte(j + i);
                if (all) {
                    start = j;
                    break;
                }
            }
        }
    assert_true(start != SIZE_MAX);
    a.off = start + sizeof(first);
    stream_read_until(&a, a.off + 128 * 1024);
    stream_pause_drain(&a);
    size_t at2 = a.off;
    assert_int_equal(vmm_snapshot(a.vm, path("gen2"), NULL, NULL, &err), 0);
    vmm_destroy(a.vm);
    clone_finishes(path("gen2"), SNAP_ENGINE_SHARED, at2);
}

static uint64_t pss_kib(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    uint64_t v = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "Pss: %" SCNu64, &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

static void test_twenty_shared_clones(void **state)
{
    enum { N = 20, CH = 64 };
    stream_t s = {.vm = boot_stream(CH, 32), .end = CH * CHUNK};
    assert_non_null(s.vm);
    s.fd = vmm_agent_fd(s.vm);
    stream_read_until(&s, 8 * CHUNK);
    stream_pause_drain(&s);
    size_t at = s.off;
    thaw_err_t err;
    assert_int_equal(vmm_snapshot(s.vm, path("clones"), NULL, NULL, &err), 0);
    vmm_destroy(s.vm);
    uint64_t saved_acc = expect_acc;
    expect_acc = thaw_stream_acc(CH, ITERS, SEED);

    snap_t *snap;
    assert_int_equal(snap_open(path("clones"), &snap, &err), 0);
    snap_base_t *base;
    assert_int_equal(snap_base_get(snap, &base, &err), 0); /* built once, outside the measure */
    uint64_t pss0 = pss_kib();
    stream_t c[N];
    for (int i = 0; i < N; i++) {
        vmm_restore_opts_t o = {.engine = SNAP_ENGINE_SHARED};
        vmm_t *vm = NULL;
        if (vmm_restore(snap, &o, &vm, NULL, &err) < 0)
            printf("clone %d: %s\n", i, err.msg);
        assert_non_null(vm);
        assert_int_equal(vmm_start(vm, &err), 0);
        c[i] = (stream_t){.vm = vm, .fd = vmm_agent_fd(vm), .off = at, .end = CH * CHUNK};
    }
    /* all running at once: pump every stream until all are complete (each
     * reads the 32 MiB back at the end, mapping it) */
    for (int idle = 0, done = 0; done < N && idle < 300;) {
        done = 0;
        size_t moved = 0;
        for (int i = 0; i < N; i++) {
            moved += stream_pump(&c[i], 0);
            done += c[i].off == c[i].end;
        }
        if (!moved) {
            idle++;
            usleep(10000);
        } else {
            idle = 0;
        }
    }
    for (int i = 0; i < N; i++)
        stream_finish(&c[i]);
    uint64_t pss1 = pss_kib(); /* every clone stopped, none destroyed yet */
    uint64_t sum = 0;
    for (uint64_t a = 16ull << 20; a < (48ull << 20); a += 8)
        sum += a * 0x9e3779b97f4a7c15ull;
    char want[64];
    snprintf(want, sizeof(want), "touched=%llx", (unsigned long long)sum);
    for (int i = 0; i < N; i++) {
        static char con[65536];
        vmm_console_read(c[i].vm, con, sizeof(con), NULL);
        assert_non_null(strstr(con, want));
        vmm_destroy(c[i].vm);
    }
    uint64_t grew_mib = (pss1 - pss0) >> 10;
    printf("20 shared clones, each reading 32 MiB of snapshot memory: PSS grew by %llu MiB\n",
           (unsigned long long)grew_mib);
    /* Twenty private copies would be 640 MiB; shared they are one copy plus writes. */
    assert_true(grew_mib < 160);
    snap_base_put(base);
    snap_close(snap);
    expect_acc = saved_acc;
}

static void flip_byte(const char *file, off_t at)
{
    int fd = open(file, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x55;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

static void copy_snapshot(const char *from, const char *to)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -r '%s' '%s'", to, from, to);
    assert_int_equal(system(cmd), 0);
}

static void expect_restore_error(const char *dir, const vmm_restore_opts_t *o, const char *needle)
{
    thaw_err_t err = {0};
    snap_t *snap = NULL;
    int rc = snap_open(dir, &snap, &err);
    vmm_t *vm = NULL;
    if (rc == 0) {
        rc = vmm_restore(snap, o, &vm, NULL, &err);
        snap_close(snap);
    }
    if (rc >= 0 || !strstr(err.msg, needle))
        printf("rc=%d msg='%s' want '%s'\n", rc, err.msg, needle);
    assert_true(rc < 0);
    assert_null(vm);
    assert_non_null(strstr(err.msg, needle));
}

/* Rewrite gen1 with vCPU 0's CPUID asking for AMX, which no host here has. */
static void write_foreign_cpu_snapshot(const char *from, const char *to)
{
    thaw_err_t err;
    snap_t *snap;
    assert_int_equal(snap_open(from, &snap, &err), 0);
    snap_mem_t *mem;
    assert_int_equal(snap_mem_attach(snap, SNAP_ENGINE_EAGER, NULL, &mem, &err), 0);
    snap_region_t regs[4];
    size_t nr = snap_mem_region_count(mem);
    for (size_t i = 0; i < nr; i++)
        snap_mem_region(mem, i, &regs[i]);
    snap_section_t secs[64];
    size_t ns = 0;
    static vmm_vcpu_state_t vs;
    const uint32_t ids[] = {VMM_SEC_CONFIG,    VMM_SEC_VM,         VMM_SEC_VCPU,
                            VMM_SEC_DEVICE,    VMM_SEC_DEVICE + 1, VMM_SEC_DEVICE + 2,
                            VMM_SEC_DEVICE + 3};
    for (unsigned i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        const void *p;
        size_t len;
        uint32_t ver;
        if (snap_section_find(snap, ids[i], &ver, &p, &len) < 0)
            continue;
        if (ids[i] == VMM_SEC_VCPU) {
            memcpy(&vs, p, sizeof(vs));
            for (unsigned e = 0; e < vs.n_cpuid; e++)
                if (vs.cpuid[e].function == 7 && vs.cpuid[e].index == 0)
                    vs.cpuid[e].edx |= 1u << 24; /* amx_tile */
            p = &vs;
        }
        secs[ns++] = (snap_section_t){ids[i], ver, p, len};
    }
    assert_int_equal(snap_write(to, regs, nr, secs, ns, NULL, NULL, &err), 0);
    snap_mem_destroy(mem);
    snap_close(snap);
}

/* Corrupt the stored bytes of the chunk holding guest-physical gpa (the
 * memory.bin layout is in docs/snapshot-format.md). */
static void corrupt_chunk_of(const char *memfile, uint64_t gpa)
{
    int fd = open(memfile, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t hdr[64];
    assert_int_equal(pread(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
    uint32_t chunk;
    uint64_t table;
    memcpy(&chunk, hdr + 16, 4);
    memcpy(&table, hdr + 40, 8);
    uint8_t ent[24];
    assert_int_equal(pread(fd, ent, sizeof(ent), (off_t)(table + gpa / chunk * 24)), 24);
    close(fd);
    uint64_t off;
    uint32_t stored;
    memcpy(&off, ent, 8);
    memcpy(&stored, ent + 8, 4);
    assert_true(off > 0 && stored > 0); /* the guest's code: never a zero chunk */
    flip_byte(memfile, (off_t)(off + stored / 2));
}

static void test_lazy_memory_failure_stops_vm(void **state)
{
    int fds = thaw_test_count_fds();
    thaw_test_threads_t threads;
    thaw_test_threads_now(&threads);
    copy_snapshot(path("gen1"), path("badlazy"));
    corrupt_chunk_of(path("badlazy/" SNAP_MEMORY_FILE), 0x100000);
    vmm_t *vm = restore_lazy(path("badlazy")); /* chunks are checked lazily */
    thaw_err_t err;
    assert_int_equal(vmm_start(vm, &err), 0);
    vmm_exit_t ex = {0};
    assert_int_equal(vmm_wait(vm, 30000, &ex), 1);
    printf("lazy restore of a corrupt chunk: %s: %s\n", vmm_exit_reason_name(ex.reason), ex.detail);
    assert_int_equal(ex.reason, VMM_EXIT_INTERNAL_ERROR);
    assert_non_null(strstr(ex.detail, "guest memory"));
    vmm_destroy(vm);
    assert_int_equal(thaw_test_count_fds(), fds);
    assert_int_equal(thaw_test_threads_new(&threads, 0), 0);
}

/* Guest-physical address of the virtio-console's transmit avail ring in a
 * snapshot's saved device state. */
static uint64_t console_tx_avail(const char *dir)
{
    thaw_err_t err;
    snap_t *snap;
    assert_int_equal(snap_open(dir, &snap, &err), 0);
    uint64_t gpa = 0;
    for (uint32_t i = 0; i < 8 && !gpa; i++) {
        const void *p;
        size_t len;
        uint32_t ver;
        if (snap_section_find(snap, VMM_SEC_DEVICE + i, &ver, &p, &len) < 0 ||
            len < sizeof(vmm_virtio_state_t))
            continue;
        vmm_virtio_state_t vs;
        memcpy(&vs, p, sizeof(vs));
        if (vs.version == VMM_VIRTIO_STATE_VERSION && vs.device_id == 3 && vs.q[1].ready)
            gpa = vs.q[1].driver;
    }
    snap_close(snap);
    assert_true(gpa != 0);
    return gpa;
}

/*
 * The chunk holding the console's transmit ring fails its checksum.  The
 * event thread reads that ring as soon as the clone starts (restored queues
 * are looked at once), gets the lazy engine's SIGBUS mapping, and must stop
 * the VM with the snapshot's message instead of killing this process; the
 * VM then tears down without leaking a descriptor or a thread.
 */
static void test_lazy_failure_under_event_thread(void **state)
{
    int fds = thaw_test_count_fds();
    thaw_test_threads_t threads;
    thaw_test_threads_now(&threads);
    copy_snapshot(path("gen1"), path("badring"));
    uint64_t ring = console_tx_avail(path("badring"));
    corrupt_chunk_of(path("badring/" SNAP_MEMORY_FILE), ring);
    vmm_t *vm = restore_lazy(path("badring"));
    thaw_err_t err;
    assert_int_equal(vmm_start(vm, &err), 0);
    vmm_exit_t ex = {0};
    assert_int_equal(vmm_wait(vm, 30000, &ex), 1);
    printf("transmit ring on a corrupt lazy chunk (gpa 0x%llx): %s: %s\n", (unsigned long long)ring,
           vmm_exit_reason_name(ex.reason), ex.detail);
    assert_int_equal(ex.reason, VMM_EXIT_INTERNAL_ERROR);
    assert_non_null(strstr(ex.detail, "guest memory: "));
    assert_non_null(strstr(ex.detail, SNAP_MEMORY_FILE));
    assert_non_null(strstr(ex.detail, "chunk"));
    /* The event thread reaches the ring whoever failed first (it works on
     * until vmm_destroy): wait for its failed access, then keep going. */
    vmm_stats_t st = {0};
    for (int i = 0; i < 300 && st.host_mem_faults == 0; i++) {
        vmm_get_stats(vm, &st);
        if (st.host_mem_faults == 0)
            usleep(20000);
    }
    assert_true(st.host_mem_faults >= 1);
    /* The stop carries the first reason; nothing has replaced it. */
    vmm_exit_t again = {0};
    assert_int_equal(vmm_wait(vm, 0, &again), 1);
    assert_string_equal(again.detail, ex.detail);
    vmm_destroy(vm);
    assert_int_equal(thaw_test_count_fds(), fds);
    assert_int_equal(thaw_test_threads_new(&threads, 0), 0);
}

/*
 * vmm_snapshot of a lazily restored VM reads all its memory; a chunk that
 * fails then (here: never touched before, the VM was not started) fails the
 * snapshot and stops the VM with the reason, instead of a SIGBUS on
 * snap_write's threads.
 */
static void test_lazy_failure_under_snapshot(void **state)
{
    int fds = thaw_test_count_fds();
    thaw_test_threads_t threads;
    thaw_test_threads_now(&threads);
    copy_snapshot(path("gen1"), path("badsnap"));
    corrupt_chunk_of(path("badsnap/" SNAP_MEMORY_FILE), 0x100000);
    vmm_t *vm = restore_lazy(path("badsnap"));
    thaw_err_t err;
    int rc = vmm_snapshot(vm, path("badsnap-out"), NULL, NULL, &err);
    printf("snapshot of a lazy VM with a corrupt chunk: %d %s\n", rc, err.msg);
    assert_true(rc < 0);
    assert_non_null(strstr(err.msg, "guest memory: "));
    assert_non_null(strstr(err.msg, "chunk"));
    vmm_exit_t ex = {0};
    assert_int_equal(vmm_wait(vm, 0, &ex), 1);
    assert_int_equal(ex.reason, VMM_EXIT_INTERNAL_ERROR);
    assert_non_null(strstr(ex.detail, SNAP_MEMORY_FILE));
    vmm_stats_t st;
    vmm_get_stats(vm, &st);
    assert_int_equal(st.host_mem_faults, 1);
    vmm_destroy(vm);
    struct stat sb;
    snap_t *none = NULL;
    if (stat(path("badsnap-out"), &sb) == 0) /* nothing usable was left behind */
        assert_true(snap_open(path("badsnap-out"), &none, &err) < 0);
    assert_int_equal(thaw_test_count_fds(), fds);
    assert_int_equal(thaw_test_threads_new(&threads, 0), 0);
}

static void test_bad_snapshots_fail_cleanly(void **state)
{
    int fds = thaw_test_count_fds();
    thaw_test_threads_t threads;
    thaw_test_threads_now(&threads);
    vmm_restore_opts_t o = {.engine = SNAP_ENGINE_EAGER};
    /* corrupt state */
    copy_snapshot(path("gen1"), path("bad"));
    flip_byte(path("bad/" SNAP_STATE_FILE), 200);
    expect_restore_error(path("bad"), &o, "state.bin");
    /* corrupt memory: the eager engine reads every chunk */
    copy_snapshot(path("gen1"), path("bad"));
    struct stat st;
    assert_int_equal(stat(path("bad/" SNAP_MEMORY_FILE), &st), 0);
    flip_byte(path("bad/" SNAP_MEMORY_FILE), st.st_size - 10);
    expect_restore_error(path("bad"), &o, "");
    /* truncated memory */
    copy_snapshot(path("gen1"), path("bad"));
    assert_int_equal(truncate(path("bad/" SNAP_MEMORY_FILE), st.st_size / 2), 0);
    expect_restore_error(path("bad"), &o, "memory");
    /* mismatched configuration */
    vmm_restore_opts_t two = {.engine = SNAP_ENGINE_EAGER, .expect_vcpus = 2};
    expect_restore_error(path("gen1"), &two, "snapshot has 1 vCPUs");
    vmm_restore_opts_t big = {.engine = SNAP_ENGINE_SHARED, .expect_mem_bytes = 128 << 20};
    expect_restore_error(path("gen1"), &big, "64 MiB");
    /* CPU features this host lacks */
    write_foreign_cpu_snapshot(path("gen1"), path("foreign"));
    expect_restore_error(path("foreign"), &o, "CPU features this host lacks: amx_tile");
    assert_int_equal(thaw_test_count_fds(), fds);
    assert_int_equal(thaw_test_threads_new(&threads, 0), 0);
}

int main(int argc, char **argv)
{
    thaw_test_require_kvm();
    thaw_test_require_root(); /* the lazy engine's userfaultfd */
    if (argc < 2)
        thaw_test_skip("usage: test-vmm-snapshot <test guest ELF>");
    guest_path = argv[1];
    if (!mkdtemp(tmpdir))
        thaw_test_skip("mkdtemp: %s", strerror(errno));
    expect_acc = thaw_stream_acc(CHUNKS, ITERS, SEED);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_midstream_every_engine),
        cmocka_unit_test(test_snapshot_two_generations),
        cmocka_unit_test(test_snapshot_two_vcpus),
        cmocka_unit_test(test_twenty_shared_clones),
        cmocka_unit_test(test_bad_snapshots_fail_cleanly),
        cmocka_unit_test(test_lazy_memory_failure_stops_vm),
        cmocka_unit_test(test_lazy_failure_under_event_thread),
        cmocka_unit_test(test_lazy_failure_under_snapshot),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        printf("could not remove %s\n", tmpdir);
    return rc;
}
