// SPDX-License-Identifier: Apache-2.0
/*
 * The memory.bin writer's output paths (snapshot/memwrite.c, memout.c):
 * O_DIRECT where the file system reports DIO alignment (ext4 under /tmp),
 * page cache otherwise (tmpfs under /dev/shm) or when asked (`buffered`),
 * in-place writes of long raw runs with zero padding before them, and the
 * synchronous pwrite fallback when io_uring is refused by seccomp.  Each
 * case writes the same regions both ways and checks that every engine
 * restores identical memory and that the chunk table is laid out as
 * docs/snapshot-format.md says (padding only before raw runs of 1 MiB or
 * more, shorter than the DIO alignment, nothing after the last chunk).
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <seccomp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "snaptest.h"
#include "testlib.h"

#define MiB (1u << 20)
#define KiB (1u << 10)

/* A file system with DIO alignment (ext4 /tmp here) and one without. */
static char *dio_root, *cache_root;
static uint32_t dio_align, dio_mem_align;
static bool lazy_ok = true; /* cleared (with a note) when userfaultfd is refused */

/* ------------------------------------------------------------ the image */

/* Three regions with different host alignments: page-aligned, 512 bytes
 * in (DIO memory alignment is 512 or less on the usual devices, so runs
 * there still go in place) and 8 bytes in (never in place: copied).  The
 * fills give zero chunks, lz4 chunks, short raw runs (< 1 MiB) and raw runs
 * of 2 MiB or more right after lz4 chunks at every chunk size. */
typedef struct img {
    snap_region_t r[3];
    size_t off[3];
    size_t n;
} img_t;

enum fill { TEXT, RANDOM, ZERO, MIXED };

static void fill(char *p, size_t len, enum fill f, uint64_t seed)
{
    switch (f) {
    case TEXT:
        /* compressible but not trivially: a repeated line, each page
         * stamped with its own number */
        for (size_t i = 0; i < len; i++)
            p[i] = "the quick brown fox jumps over the lazy dog 0123456789\n"[(i + seed) % 55];
        for (size_t i = 0; i < len; i += 4096) /* vary the pages a little */
        {
            char stamp[64];
            int k =
                snprintf(stamp, sizeof(stamp), "page %zu seed %llu", i, (unsigned long long)seed);
            memcpy(p + i, stamp, (size_t)k < len - i ? (size_t)k : len - i);
        }
        break;
    case RANDOM:
        st_fill_random(p, len, seed);
        break;
    case ZERO:
        memset(p, 0, len);
        break;
    case MIXED: /* per 256 KiB: 64 KiB text, 128 KiB random, 64 KiB zero */
        for (size_t b = 0; b < len; b += 256 * KiB) {
            fill(p + b, 64 * KiB, TEXT, seed + b);
            st_fill_random(p + b + 64 * KiB, 128 * KiB, seed ^ b);
            memset(p + b + 192 * KiB, 0, 64 * KiB);
        }
        break;
    }
}

struct piece {
    size_t len;
    enum fill f;
};

static void region_make(img_t *im, size_t i, uint64_t guest, size_t host_off,
                        const struct piece *pc, size_t npc, uint64_t seed)
{
    size_t size = 0;
    for (size_t k = 0; k < npc; k++)
        size += pc[k].len;
    st_region_alloc(&im->r[i], guest, size, host_off);
    im->off[i] = host_off;
    char *p = im->r[i].host;
    for (size_t k = 0; k < npc; k++) {
        fill(p, pc[k].len, pc[k].f, seed + k);
        p += pc[k].len;
    }
}

static void img_make(img_t *im, uint64_t seed)
{
    memset(im, 0, sizeof(*im));
    static const struct piece r0[] = {
        {2 * MiB, TEXT}, {2 * MiB, RANDOM}, {2 * MiB, ZERO}, {2 * MiB, MIXED}, {2 * MiB, RANDOM}};
    /* ends in a 256 KiB raw tail: a short raw run even at 2 MiB chunks */
    static const struct piece r1[] = {
        {1 * MiB, TEXT}, {2 * MiB, RANDOM}, {1 * MiB, ZERO}, {256 * KiB, RANDOM}};
    static const struct piece r2[] = {{512 * KiB, TEXT}, {1536 * KiB, RANDOM}, {64 * KiB, TEXT}};
    region_make(im, 0, 0, 0, r0, 5, seed);
    region_make(im, 1, 0x100000000ull, 512, r1, 4, seed + 100);
    region_make(im, 2, 0x200000000ull, 8, r2, 3, seed + 200);
    im->n = 3;
}

static void img_free(img_t *im)
{
    for (size_t i = 0; i < im->n; i++)
        st_region_free(&im->r[i], im->off[i]);
    im->n = 0;
}

/* ------------------------------------------------------------ helpers */

static void write_snap(const char *dir, const img_t *im, uint32_t chunk, bool buffered,
                       unsigned threads)
{
    static const char sec[] = "cpu state";
    snap_section_t s = {.id = 1, .version = 1, .data = sec, .len = sizeof(sec)};
    snap_write_opts_t o = {.chunk_size = chunk, .threads = threads, .buffered = buffered};
    thaw_err_t err;
    thaw_err_clear(&err);
    snap_write_stats_t ws;
    int r = snap_write(dir, im->r, im->n, &s, 1, &o, &ws, &err);
    if (r != 0)
        fail_msg("snap_write %s (chunk %u, buffered %d): %s", dir, chunk, buffered, err.msg);
    assert_true(ws.chunks_zero > 0);
    assert_true(ws.chunks_lz4 > 0);
    assert_true(ws.chunks_raw > 0);
}

/* Restore with every engine and compare byte for byte. */
static void check_restore(const char *dir, const img_t *im)
{
    static const snap_engine_t engines[] = {SNAP_ENGINE_EAGER, SNAP_ENGINE_LAZY,
                                            SNAP_ENGINE_SHARED};
    for (size_t e = 0; e < 3; e++) {
        if (engines[e] == SNAP_ENGINE_LAZY && !lazy_ok)
            continue;
        thaw_err_t err;
        thaw_err_clear(&err);
        snap_t *snap = NULL;
        if (snap_open(dir, &snap, &err) != 0)
            fail_msg("snap_open %s: %s", dir, err.msg);
        snap_mem_t *mem = NULL;
        int r = snap_mem_attach(snap, engines[e], NULL, &mem, &err);
        snap_close(snap);
        if (r == -EPERM && engines[e] == SNAP_ENGINE_LAZY) {
            printf("# note: lazy engine not permitted here (%s); eager and shared only\n", err.msg);
            lazy_ok = false;
            continue;
        }
        if (r != 0)
            fail_msg("attach %s with %s: %s", dir, snap_engine_name(engines[e]), err.msg);
        assert_int_equal(snap_mem_region_count(mem), im->n);
        for (size_t i = 0; i < im->n; i++) {
            snap_region_t got;
            assert_int_equal(snap_mem_region(mem, i, &got), 0);
            assert_int_equal(got.guest_addr, im->r[i].guest_addr);
            assert_int_equal(got.size, im->r[i].size);
            if (memcmp(got.host, im->r[i].host, got.size) != 0)
                fail_msg("%s: region %zu differs after a %s restore", dir, i,
                         snap_engine_name(engines[e]));
        }
        assert_int_equal(snap_mem_error(mem, NULL), 0);
        snap_mem_destroy(mem);
    }
}

struct layout {
    unsigned pads;           /* gaps before chunks */
    unsigned long_after_lz4; /* raw runs >= 1 MiB right after an lz4 chunk */
    unsigned short_raw;      /* raw runs < 1 MiB */
};

/* Raw bytes of the run of back-to-back raw chunks starting at entry i. */
static uint64_t raw_run(const struct snap__chunk_entry *t, uint64_t n, uint64_t i)
{
    uint64_t len = t[i].stored_len, end = t[i].offset + t[i].stored_len;
    for (uint64_t k = i + 1; k < n && t[k].kind == SNAP__CHUNK_RAW && t[k].offset == end; k++) {
        len += t[k].stored_len;
        end += t[k].stored_len;
    }
    return len;
}

/*
 * The chunk table as docs/snapshot-format.md says: data from data_offset
 * (the table's end rounded up to 4 KiB) in table order, back to back except
 * for fewer than `align` zero bytes before a raw run of 1 MiB or more that
 * then starts aligned (align 0: no gaps at all), and the file ends with the
 * last chunk's data.
 */
static struct layout check_layout(const char *dir, uint32_t align)
{
    struct snap__mem_header h;
    struct snap__chunk_entry *t;
    st_load_table(dir, &h, &t);
    assert_int_equal(h.table_offset, 64);
    assert_int_equal(h.data_offset, (64 + h.nchunks * sizeof(*t) + 4095) & ~4095ull);
    struct stat st;
    assert_int_equal(stat(st_path(dir, SNAP_MEMORY_FILE), &st), 0);
    int fd = open(st_path(dir, SNAP_MEMORY_FILE), O_RDONLY);
    assert_true(fd >= 0);

    struct layout l = {0};
    uint64_t end = h.data_offset;
    int prev_kind = -1;
    for (uint64_t i = 0; i < h.nchunks; i++) {
        const struct snap__chunk_entry *e = &t[i];
        if (e->kind == SNAP__CHUNK_ZERO) {
            assert_int_equal(e->offset, 0);
            assert_int_equal(e->stored_len, 0);
            continue;
        }
        if (e->offset < end)
            fail_msg("%s: chunk %llu at %llu overlaps the previous data (ends %llu)", dir,
                     (unsigned long long)i, (unsigned long long)e->offset, (unsigned long long)end);
        uint64_t gap = e->offset - end;
        bool run_start = e->kind == SNAP__CHUNK_RAW && prev_kind != SNAP__CHUNK_RAW;
        uint64_t run = e->kind == SNAP__CHUNK_RAW ? raw_run(t, h.nchunks, i) : 0;
        if (gap) {
            if (!align)
                fail_msg("%s: %llu pad bytes before chunk %llu, where no padding is allowed", dir,
                         (unsigned long long)gap, (unsigned long long)i);
            if (e->kind != SNAP__CHUNK_RAW || run < MiB || gap >= align || e->offset % align)
                fail_msg("%s: pad of %llu before chunk %llu (kind %d, raw run %llu, offset %llu, "
                         "align %u)",
                         dir, (unsigned long long)gap, (unsigned long long)i, e->kind,
                         (unsigned long long)run, (unsigned long long)e->offset, align);
            /* the pad is zeros */
            char z[4096];
            assert_int_equal(pread(fd, z, gap, (off_t)end), (ssize_t)gap);
            for (uint64_t k = 0; k < gap; k++)
                assert_int_equal(z[k], 0);
            l.pads++;
        }
        if (run_start && run >= MiB && prev_kind == SNAP__CHUNK_LZ4)
            l.long_after_lz4++;
        if (run_start && run < MiB)
            l.short_raw++;
        end = e->offset + e->stored_len;
        prev_kind = e->kind;
    }
    if ((uint64_t)st.st_size != end)
        fail_msg("%s: memory.bin is %llu bytes, its last chunk ends at %llu", dir,
                 (unsigned long long)st.st_size, (unsigned long long)end);
    close(fd);
    free(t);
    return l;
}

static int read_file(const char *dir, const char *name, void **buf, size_t *len)
{
    return st_read_all(st_path(dir, name), buf, len);
}

/* Pages of dir/memory.bin in the page cache, out of *total. */
static size_t cached_pages(const char *dir, size_t from, size_t *total)
{
    int fd = open(st_path(dir, SNAP_MEMORY_FILE), O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    size_t len = (size_t)st.st_size;
    void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    assert_true(p != MAP_FAILED);
    size_t np = (len + 4095) / 4096;
    unsigned char *v = malloc(np);
    assert_int_equal(mincore(p, len, v), 0);
    size_t n = 0;
    *total = 0;
    for (size_t i = from / 4096; i < np; i++, (*total)++)
        n += v[i] & 1;
    free(v);
    munmap(p, len);
    return n;
}

/* ------------------------------------------------------------ 1: equivalence */

static void equivalence(const char *root, uint32_t align, uint32_t chunk, unsigned threads)
{
    img_t im;
    img_make(&im, chunk);
    char d_direct[4096], d_buf[4096];
    snprintf(d_direct, sizeof(d_direct), "%s/eq-%u-default", root, chunk);
    snprintf(d_buf, sizeof(d_buf), "%s/eq-%u-buffered", root, chunk);
    write_snap(d_direct, &im, chunk, false, threads);
    write_snap(d_buf, &im, chunk, true, threads);

    struct layout ld = check_layout(d_direct, align);
    struct layout lb = check_layout(d_buf, 0);
    printf("# chunk %u align %u: pads %u, long raw runs after lz4 %u, short raw runs %u\n", chunk,
           align, ld.pads, ld.long_after_lz4, ld.short_raw);
    printf("# chunk %u align %u: pads %u, long raw runs after lz4 %u, short raw runs %u\n", chunk,
           align, ld.pads, ld.long_after_lz4, ld.short_raw);
    assert_true(ld.long_after_lz4 > 0);
    assert_true(ld.short_raw > 0);
    assert_int_equal(lb.long_after_lz4, ld.long_after_lz4);
    assert_int_equal(lb.short_raw, ld.short_raw);
    if (align) {
        /* region 0 is page-aligned and its raw runs follow lz4 output of
         * odd lengths: the pad path ran */
        if (ld.pads == 0)
            fail_msg("%s: no pad before any long raw run on a DIO file system", d_direct);
        /* past the first 4 MiB the default writer bypassed the page cache */
        size_t total, cached = cached_pages(d_direct, 8 * MiB, &total);
        if (cached == total)
            fail_msg("%s: all %zu pages past 8 MiB are cached: O_DIRECT was not used", d_direct,
                     total);
    }
    check_restore(d_direct, &im);
    check_restore(d_buf, &im);
    img_free(&im);
}

static void need_dio(void)
{
    if (!dio_align)
        skip();
}

static void test_eq_dio_4k(void **s)
{
    need_dio();
    equivalence(dio_root, dio_align, 4 * KiB, 1);
}
static void test_eq_dio_64k(void **s)
{
    need_dio();
    equivalence(dio_root, dio_align, 64 * KiB, 2);
}
static void test_eq_dio_2m(void **s)
{
    need_dio();
    equivalence(dio_root, dio_align, 2 * MiB, 3);
}
static void test_eq_tmpfs_4k(void **s)
{
    equivalence(cache_root, 0, 4 * KiB, 2);
}
static void test_eq_tmpfs_64k(void **s)
{
    equivalence(cache_root, 0, 64 * KiB, 1);
}
static void test_eq_tmpfs_2m(void **s)
{
    equivalence(cache_root, 0, 2 * MiB, 2);
}

/* ------------------------------------------------------------ 2: io_uring refused */

static int child_write(const char *dir, const img_t *im, uint32_t chunk, int errno_val)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx || seccomp_rule_add(ctx, SCMP_ACT_ERRNO(errno_val), SCMP_SYS(io_uring_setup), 0) ||
        seccomp_load(ctx))
        return 10;
    seccomp_release(ctx);
    struct io_uring ring;
    int r = io_uring_queue_init(4, &ring, 0);
    if (r != -errno_val)
        return 11; /* the filter does not do what this test relies on */
    snap_section_t s = {.id = 1, .version = 1, .data = "x", .len = 1};
    snap_write_opts_t o = {.chunk_size = chunk, .threads = 2};
    thaw_err_t err;
    thaw_err_clear(&err);
    if (snap_write(dir, im->r, im->n, &s, 1, &o, NULL, &err) != 0) {
        fprintf(stderr, "child snap_write: %s\n", err.msg);
        return 12;
    }
    return 0;
}

static void uring_refused(const char *root, uint32_t align, int errno_val)
{
    img_t im;
    img_make(&im, 77 + (uint64_t)errno_val);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/nouring-%d", root, errno_val);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_write(dir, &im, 64 * KiB, errno_val));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 10) {
        printf("# note: cannot install a seccomp filter here: io_uring-refused case skipped\n");
        img_free(&im);
        skip();
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child writing without io_uring: status 0x%x (10: seccomp, 11: io_uring not "
                 "refused, 12: snap_write failed)",
                 status);
    struct layout l = check_layout(dir, align);
    if (align)
        assert_true(l.pads > 0);
    check_restore(dir, &im);
    img_free(&im);
}

static void test_nouring_eperm_dio(void **s)
{
    need_dio();
    uring_refused(dio_root, dio_align, EPERM);
}
static void test_nouring_enosys_dio(void **s)
{
    need_dio();
    uring_refused(dio_root, dio_align, ENOSYS);
}
static void test_nouring_eperm_tmpfs(void **s)
{
    uring_refused(cache_root, 0, EPERM);
}

/* ------------------------------------------------------------ 4: small and large */

static void test_small_and_large(void **s)
{
    const char *root = dio_align ? dio_root : cache_root;
    /* small: 3 MiB of guest-like memory (zero, text and random pages, no
     * raw run of 1 MiB), under the 4 MiB that always go through the page
     * cache: byte-identical to the buffered writer's */
    img_t small = {.n = 1};
    st_region_alloc(&small.r[0], 0, 3 * MiB, 0);
    st_fill_guest(small.r[0].host, 3 * MiB, 5);
    char d1[4096], d2[4096];
    snprintf(d1, sizeof(d1), "%s/small-default", root);
    snprintf(d2, sizeof(d2), "%s/small-buffered", root);
    write_snap(d1, &small, 64 * KiB, false, 2);
    write_snap(d2, &small, 64 * KiB, true, 2);
    check_layout(d1, dio_align);
    check_restore(d1, &small);
    check_restore(d2, &small);
    /* same memory.bin and state.bin byte for byte, and the small file is
     * left in the page cache */
    static const char *const files[] = {SNAP_MEMORY_FILE, SNAP_STATE_FILE};
    for (size_t f = 0; f < 2; f++) {
        void *a, *b;
        size_t la, lb;
        assert_int_equal(read_file(d1, files[f], &a, &la), 0);
        assert_int_equal(read_file(d2, files[f], &b, &lb), 0);
        if (la != lb || memcmp(a, b, la) != 0)
            fail_msg("small snapshot: %s differs between the default and buffered writers "
                     "(%zu vs %zu bytes)",
                     files[f], la, lb);
        free(a);
        free(b);
    }
    size_t total, cached = cached_pages(d1, 0, &total);
    if (cached != total)
        printf("# note: %zu of %zu pages of the small memory.bin cached (memory pressure?)\n",
               cached, total);
    img_free(&small);

    /* small with a raw run of 1.5 MiB after lz4 chunks: memory that fits
     * in the page-cache head is never written direct, so the default writer
     * lays it out like the buffered one, without a pad before the run */
    img_t padded = {.n = 1};
    st_region_alloc(&padded.r[0], 0, 3 * MiB, 0);
    st_fill_guest(padded.r[0].host, 3 * MiB, 7);
    fill(padded.r[0].host, 512 * KiB, TEXT, 1);
    st_fill_random((char *)padded.r[0].host + 512 * KiB, 1536 * KiB, 9);
    snprintf(d1, sizeof(d1), "%s/small-run-default", root);
    snprintf(d2, sizeof(d2), "%s/small-run-buffered", root);
    write_snap(d1, &padded, 64 * KiB, false, 2);
    write_snap(d2, &padded, 64 * KiB, true, 2);
    struct layout l1 = check_layout(d1, dio_align), l2 = check_layout(d2, 0);
    assert_int_equal(l1.long_after_lz4, 1);
    assert_int_equal(l2.long_after_lz4, 1);
    assert_int_equal(l1.pads, 0);
    assert_int_equal(l2.pads, 0);
    check_restore(d1, &padded);
    check_restore(d2, &padded);
    img_free(&padded);

    /* large: 24 MiB, well past the buffered head */
    img_t large = {.n = 1};
    st_region_alloc(&large.r[0], 0, 24 * MiB, 0);
    st_fill_guest(large.r[0].host, 24 * MiB, 6);
    snprintf(d1, sizeof(d1), "%s/large-default", root);
    write_snap(d1, &large, 64 * KiB, false, 2);
    check_layout(d1, dio_align);
    check_restore(d1, &large);
    img_free(&large);
}

/* ------------------------------------------------------------ main */

static int setup(void **s)
{
    const char *t = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof(tmpl), "%s/thaw-writer-test.XXXXXX", t && *t ? t : "/tmp");
    dio_root = mkdtemp(tmpl) ? strdup(tmpl) : NULL;
    snprintf(tmpl, sizeof(tmpl), "/dev/shm/thaw-writer-test.XXXXXX");
    cache_root = mkdtemp(tmpl) ? strdup(tmpl) : NULL;
    if (!dio_root || !cache_root)
        return -1;
    dio_align = st_dio_align(dio_root, &dio_mem_align);
    if (dio_align)
        printf("# %s: DIO alignment offset %u, memory %u\n", dio_root, dio_align, dio_mem_align);
    else
        printf("# note: %s reports no usable DIO alignment (statx STATX_DIOALIGN): the O_DIRECT "
               "cases are skipped\n",
               dio_root);
    if (st_dio_align(cache_root, NULL))
        printf("# note: /dev/shm reports DIO alignment: the page-cache cases use it too\n");
    return 0;
}

/*
 * A write the kernel takes and never completes must not hang the writer.
 * The stand-in for the stall seen in the wild (writes taken off the ring,
 * no worker left to run them) is a full pipe nobody reads: io_uring parks
 * the write until the pipe has room, which never comes.  The writer must
 * notice (stall_ms, short here), cancel it, try the rest synchronously
 * (which a pipe refuses: writes go at file offsets) and return an error
 * naming the write, all without blocking.
 */
static void test_stalled_ring_gives_up(void **s)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    static char junk[65536];
    while (write(p[1], junk, sizeof(junk)) > 0) {
    }
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(fcntl(p[1], F_SETFL, 0), 0); /* blocking: the ring parks it */
    snap__out_t o;
    thaw_err_t err;
    thaw_err_clear(&err);
    assert_int_equal(snap__out_init(&o, p[1], 4096, true, &err), 0);
    if (!o.ring_ok) {
        snap__out_destroy(&o);
        close(p[0]);
        close(p[1]);
        skip(); /* no io_uring here: nothing can stall */
    }
    o.stall_ms = 200;
    size_t len = SNAP__OUT_BUF_SIZE + 4096; /* one full staging buffer goes to the ring */
    char *data = calloc(1, len);
    assert_non_null(data);
    uint64_t off, end = 0;
    assert_int_equal(snap__out_append(&o, data, len, &off, &err), 0);
    int r = snap__out_finish(&o, &end, &err);
    printf("# stalled ring: finish -> %d: %s\n", r, thaw_err_msg(&err));
    assert_true(r < 0);
    assert_true(o.stalled);
    assert_non_null(strstr(thaw_err_msg(&err), "write at"));
    assert_int_equal(o.inflight, 0u);
    snap__out_destroy(&o);
    free(data);
    close(p[0]);
    close(p[1]);
}

static int teardown(void **s)
{
    st_rmtree(dio_root);
    st_rmtree(cache_root);
    free(dio_root);
    free(cache_root);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eq_dio_4k),
        cmocka_unit_test(test_eq_dio_64k),
        cmocka_unit_test(test_eq_dio_2m),
        cmocka_unit_test(test_eq_tmpfs_4k),
        cmocka_unit_test(test_eq_tmpfs_64k),
        cmocka_unit_test(test_eq_tmpfs_2m),
        cmocka_unit_test(test_nouring_eperm_dio),
        cmocka_unit_test(test_nouring_enosys_dio),
        cmocka_unit_test(test_nouring_eperm_tmpfs),
        cmocka_unit_test(test_small_and_large),
        cmocka_unit_test(test_stalled_ring_gives_up),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
