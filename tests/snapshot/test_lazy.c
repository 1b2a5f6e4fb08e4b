// SPDX-License-Identifier: Apache-2.0
/*
 * The lazy engine (userfaultfd + io_uring), in the priv suite: needs root or
 * vm.unprivileged_userfaultfd=1, skips otherwise.  Round trips per chunk
 * size, faults raised by the kernel on our behalf (as KVM raises them for a
 * vCPU), many threads faulting at once, no chunk fetched twice, teardown
 * with faults and reads in flight, a corrupt chunk failing the access
 * instead of feeding wrong bytes, and working-set record and prefetch.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "snaptest.h"
#include "testlib.h"

static char *root;

/* ---- SIGBUS catching, per thread */
static __thread sigjmp_buf tl_jmp;
static __thread volatile int tl_armed;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    if (tl_armed) {
        tl_armed = 0;
        siglongjmp(tl_jmp, 1);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Read one byte at p; returns 1 and the byte, or 0 if the access raised SIGBUS. */
static int probe(const volatile char *p, char *out)
{
    if (sigsetjmp(tl_jmp, 1)) {
        return 0;
    }
    tl_armed = 1;
    char c = *p;
    tl_armed = 0;
    *out = c;
    return 1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* cmocka installs its own SIGBUS handler around each test, so tests that
 * expect SIGBUS install theirs inside the test body. */
static void catch_sigbus(void)
{
    struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER};
    sigaction(SIGBUS, &sa, NULL);
}

static int setup(void **state)
{
    root = st_tmpdir();
    return root ? 0 : -1;
}

static int teardown(void **state)
{
    st_rmtree(root);
    free(root);
    return 0;
}

/* A test's snapshot: image `seed` (st_image_make: two regions, or three
 * with an all-zero one) written to root/name in chunk-byte chunks by
 * `threads` writer threads; img is kept to compare restored memory with. */
static void make_snap(char dir[static 4096], st_image_t *img, const char *name, uint64_t seed,
                      bool three, uint32_t chunk, unsigned threads)
{
    snprintf(dir, 4096, "%s/%s", root, name);
    st_image_make(img, seed, three);
    st_write(dir, img, chunk, 0, threads, NULL);
}

static void free_snap(snap_t *snap, st_image_t *img)
{
    snap_close(snap);
    st_image_free(img);
}

static snap_t *open_snap(const char *dir)
{
    thaw_err_t err;
    snap_t *snap = NULL;
    if (snap_open(dir, &snap, &err) != 0)
        fail_msg("snap_open: %s", err.msg);
    return snap;
}

static snap_mem_t *attach_lazy(snap_t *snap, const snap_mem_opts_t *o)
{
    thaw_err_t err;
    snap_mem_t *mem = NULL;
    if (snap_mem_attach(snap, SNAP_ENGINE_LAZY, o, &mem, &err) != 0)
        fail_msg("attach lazy: %s", err.msg);
    return mem;
}

/* Sum of stored bytes over non-zero chunks: what a lazy restore that
 * touches everything must read, exactly once each. */
static uint64_t stored_bytes(const char *dir)
{
    struct snap__mem_header h;
    struct snap__chunk_entry *t;
    st_load_table(dir, &h, &t);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < h.nchunks; i++)
        sum += t[i].stored_len;
    free(t);
    return sum;
}

/* Evict memory.bin from the page cache, so reads really go to the disk
 * (io_uring then has to wait for them instead of completing inline). */
static void drop_cache(const char *dir)
{
    int fd = open(st_path(dir, SNAP_MEMORY_FILE), O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    close(fd);
}

static void roundtrip(uint32_t chunk)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/lazy-%u", root, chunk);
    st_image_t img;
    st_image_make(&img, chunk * 3, true);
    st_write(dir, &img, chunk, 0, 2, NULL);
    drop_cache(dir);
    int fds = thaw_test_count_fds();
    snap_t *snap = open_snap(dir);
    snap_mem_t *mem = attach_lazy(snap, NULL);
    snap_close(snap);
    snap_mem_stats_t st;
    snap_mem_get_stats(mem, &st);
    assert_int_equal(st.faults, 0); /* nothing is read before it is touched */
    assert_int_equal(st.bytes_read, 0);
    assert_int_equal(st_mem_equals(mem, &img), 0);
    snap_mem_get_stats(mem, &st);
    assert_true(st.faults > 0);
    assert_false(st.failed);
    uint64_t total = img.regions[0].size + img.regions[1].size + img.regions[2].size;
    assert_int_equal(st.bytes_installed, total);
    assert_int_equal(st.bytes_read, stored_bytes(dir));
    snap_mem_destroy(mem);
    assert_int_equal(thaw_test_count_fds(), fds);
    st_image_free(&img);
}

static void test_lazy_4k(void **state)
{
    roundtrip(4096);
}
static void test_lazy_64k(void **state)
{
    roundtrip(65536);
}
static void test_lazy_2m(void **state)
{
    roundtrip(2u << 20);
}

/* Faults raised inside the kernel (copy_to_user/copy_from_user), the path
 * KVM's get_user_pages takes for a vCPU: must be served, not -EFAULT. */
static void test_lazy_kernel_mode_faults(void **state)
{
    char dir[4096];
    st_image_t img;
    make_snap(dir, &img, "kernel", 77, false, 65536, 1);
    snap_t *snap = open_snap(dir);
    snap_mem_t *mem = attach_lazy(snap, NULL);
    snap_region_t r;
    snap_mem_region(mem, 0, &r);
    int p[2];
    assert_int_equal(pipe(p), 0);
    /* The kernel reads lazy memory (write from it) ... */
    assert_int_equal(write(p[1], (char *)r.host + 100000, 3000), 3000);
    char buf[3000];
    assert_int_equal(read(p[0], buf, sizeof(buf)), 3000);
    assert_memory_equal(buf, (char *)img.regions[0].host + 100000, 3000);
    /* ... and writes into a page not fetched yet (read into it). */
    assert_int_equal(write(p[1], "kernel-wrote", 12), 12);
    char *dst = (char *)r.host + (4u << 20) + 123;
    assert_int_equal(read(p[0], dst, 12), 12);
    assert_memory_equal(dst, "kernel-wrote", 12);
    /* The rest of that chunk is the snapshot's. */
    assert_memory_equal(dst + 12, (char *)img.regions[0].host + (4u << 20) + 135, 4000);
    close(p[0]);
    close(p[1]);
    snap_mem_destroy(mem);
    free_snap(snap, &img);
}

/* A write is the first touch: the chunk is installed, then the write lands. */
static void test_lazy_write_first_touch(void **state)
{
    char dir[4096];
    st_image_t img;
    make_snap(dir, &img, "write", 78, false, 16384, 1);
    snap_t *snap = open_snap(dir);
    snap_mem_t *mem = attach_lazy(snap, NULL);
    snap_region_t r;
    snap_mem_region(mem, 1, &r);
    ((char *)r.host)[5000] = 42;
    assert_int_equal(((char *)r.host)[5000], 42);
    assert_memory_equal(r.host, img.regions[1].host, 5000);
    assert_memory_equal((char *)r.host + 5001, (char *)img.regions[1].host + 5001, 16384 - 5001);
    snap_mem_destroy(mem);
    free_snap(snap, &img);
}

/* A page dropped after install (MADV_DONTNEED) reads as zero again, as
 * anonymous memory would, and the fault thread does not refetch the chunk. */
static void test_lazy_dropped_page_reads_zero(void **state)
{
    char dir[4096];
    st_image_t img;
    make_snap(dir, &img, "drop", 79, false, 65536, 1);
    snap_t *snap = open_snap(dir);
    snap_mem_t *mem = attach_lazy(snap, NULL);
    snap_region_t r;
    snap_mem_region(mem, 1, &r);
    assert_memory_equal(r.host, img.regions[1].host, 65536);
    snap_mem_stats_t a, b;
    snap_mem_get_stats(mem, &a);
    assert_int_equal(madvise((char *)r.host + 8192, 4096, MADV_DONTNEED), 0);
    static const char zero[4096];
    assert_memory_equal((char *)r.host + 8192, zero, 4096);
    snap_mem_get_stats(mem, &b);
    assert_int_equal(b.bytes_read, a.bytes_read);
    assert_memory_equal(r.host, img.regions[1].host, 8192);
    snap_mem_destroy(mem);
    free_snap(snap, &img);
}

struct toucher {
    snap_mem_t *mem;
    const st_image_t *img;
    unsigned seed;
    int iterations; /* < 0: until SIGBUS */
    int mismatches;
    int sigbus;
};

static void *touch_random(void *arg)
{
    struct toucher *t = arg;
    unsigned s = t->seed;
    for (int i = 0; t->iterations < 0 || i < t->iterations; i++) {
        size_t ri = (size_t)rand_r(&s) % t->img->nregions;
        snap_region_t r;
        snap_mem_region(t->mem, ri, &r);
        size_t off = ((size_t)rand_r(&s) * 4096u + (size_t)rand_r(&s)) % r.size;
        char c;
        if (!probe((char *)r.host + off, &c)) {
            t->sigbus++;
            return NULL;
        }
        if (c != ((char *)t->img->regions[ri].host)[off])
            t->mismatches++;
    }
    return NULL;
}

/* Eight threads fault random pages at once; every byte checks out and no
 * chunk is read twice. */
static void test_lazy_concurrent_faults(void **state)
{
    catch_sigbus();
    char dir[4096];
    st_image_t img;
    make_snap(dir, &img, "conc", 80, true, 16384, 2);
    snap_t *snap = open_snap(dir);
    snap_mem_opts_t o = {.queue_depth = 4};
    snap_mem_t *mem = attach_lazy(snap, &o);
    struct toucher t[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        t[i] = (struct toucher){
            .mem = mem, .img = &img, .seed = 1000u + (unsigned)i, .iterations = 3000};
        assert_int_equal(pthread_create(&th[i], NULL, touch_random, &t[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].mismatches, 0);
        assert_int_equal(t[i].sigbus, 0);
    }
    assert_int_equal(st_mem_equals(mem, &img), 0);
    snap_mem_stats_t st;
    snap_mem_get_stats(mem, &st);
    assert_int_equal(st.bytes_read, stored_bytes(dir));
    assert_false(st.failed);
    snap_mem_destroy(mem);
    free_snap(snap, &img);
}

/* Threads fault in a loop until the memory is aborted under them: each one
 * must come out with SIGBUS (none stays blocked in a fault), then destroy. */
static void test_lazy_teardown_with_faults_in_flight(void **state)
{
    catch_sigbus();
    char dir[4096];
    st_image_t img;
    make_snap(dir, &img, "teardown", 81, false, 4096, 2);
    snap_t *snap = open_snap(dir);
    for (int round = 0; round < 5; round++) {
        snap_mem_opts_t o = {.queue_depth = 2};
        snap_mem_t *mem = attach_lazy(snap, &o);
        struct toucher t[6];
        pthread_t th[6];
        for (int i = 0; i < 6; i++) {
            t[i] = (struct toucher){
                .mem = mem, .img = &img, .seed = 77u * (unsigned)round + i, .iterations = -1};
            assert_int_equal(pthread_create(&th[i], NULL, touch_random, &t[i]), 0);
        }
        snap_mem_stats_t st;
        for (int w = 0; w < 10000; w++) {
            snap_mem_get_stats(mem, &st);
            if (st.faults >= 50u + 40u * (unsigned)round)
                break;
            sleep_ms(1);
        }
        snap_mem_abort(mem);
        for (int i = 0; i < 6; i++) {
            pthread_join(th[i], NULL);
            assert_int_equal(t[i].sigbus, 1);
            assert_int_equal(t[i].mismatches, 0);
        }
        snap_mem_destroy(mem);
    }
    /* Destroy straight after attach, with prefetch reads still in flight. */
    snap_mem_opts_t rec = {.record_workingset = true};
    snap_mem_t *mem = attach_lazy(snap, &rec);
    assert_int_equal(st_mem_equals(mem, &img), 0);
    thaw_err_t err;
    assert_true(snap_mem_workingset_save(mem, &err) > 0);
    snap_mem_destroy(mem);
    for (int i = 0; i < 5; i++) {
        snap_mem_opts_t pf = {.prefetch = true, .queue_depth = 32};
        mem = attach_lazy(snap, &pf);
        snap_mem_destroy(mem);
    }
    free_snap(snap, &img);
}

struct cb_state {
    int calls;
    thaw_err_t err;
};

static void on_error(void *opaque, const thaw_err_t *err)
{
    struct cb_state *s = opaque;
    s->calls++;
    s->err = *err;
}

/* Find an lz4 chunk of region 0 and flip bytes in its data. */
static uint64_t corrupt_lz4_chunk(const char *dir)
{
    struct snap__mem_header h;
    struct snap__chunk_entry *t;
    st_load_table(dir, &h, &t);
    uint64_t idx = UINT64_MAX;
    for (uint64_t i = 0; i < h.nchunks && idx == UINT64_MAX; i++)
        if (t[i].kind == SNAP__CHUNK_LZ4 && t[i].stored_len > 64)
            idx = i;
    assert_true(idx != UINT64_MAX);
    int fd = open(st_path(dir, SNAP_MEMORY_FILE), O_RDWR);
    char junk[16];
    memset(junk, 0x5c, sizeof(junk));
    assert_int_equal(pwrite(fd, junk, sizeof(junk), (off_t)(t[idx].offset + t[idx].stored_len / 2)),
                     (ssize_t)sizeof(junk));
    close(fd);
    free(t);
    return idx;
}

/* A chunk that fails its checksum is never installed: the access fails with
 * SIGBUS, the owner hears of it once, and the rest of memory still works. */
static void test_lazy_corrupt_chunk_fails_the_access(void **state)
{
    catch_sigbus();
    char dir[4096];
    st_image_t img;
    make_snap(dir, &img, "corrupt", 82, false, 16384, 1);
    uint64_t idx = corrupt_lz4_chunk(dir);
    snap_t *snap = open_snap(dir); /* the table is fine: open succeeds */
    struct cb_state cb = {0};
    snap_mem_opts_t o = {.on_error = on_error, .opaque = &cb};
    snap_mem_t *mem = attach_lazy(snap, &o);
    snap_region_t r;
    snap_mem_region(mem, 0, &r);
    char c;
    assert_int_equal(probe((char *)r.host + idx * 16384 + 100, &c), 0);
    assert_int_equal(probe((char *)r.host + idx * 16384 + 9000, &c), 0);
    assert_int_equal(cb.calls, 1);
    char want[64];
    snprintf(want, sizeof(want), "chunk %llu:", (unsigned long long)idx);
    if (!strstr(cb.err.msg, want) || !strstr(cb.err.msg, SNAP_MEMORY_FILE))
        fail_msg("unexpected error: %s", cb.err.msg);
    thaw_err_t err;
    assert_int_equal(snap_mem_error(mem, &err), -EBADMSG);
    snap_mem_stats_t st;
    snap_mem_get_stats(mem, &st);
    assert_true(st.failed);
    /* Other chunks are still served correctly. */
    uint64_t other = idx == 0 ? 1 : 0;
    assert_memory_equal((char *)r.host + other * 16384, (char *)img.regions[0].host + other * 16384,
                        16384);
    snap_mem_region(mem, 1, &r);
    assert_memory_equal(r.host, img.regions[1].host, r.size);
    snap_mem_destroy(mem);
    free_snap(snap, &img);
}

static void touch_set(snap_mem_t *mem, const st_image_t *img, unsigned seed, int n)
{
    unsigned s = seed;
    snap_region_t r;
    snap_mem_region(mem, 0, &r);
    for (int i = 0; i < n; i++) {
        size_t off = ((size_t)rand_r(&s) % (r.size / 4096)) * 4096 + 64;
        assert_int_equal(((char *)r.host)[off], ((char *)img->regions[0].host)[off]);
    }
}

/* Record the first-fault order, save it, and prefetch it on the next
 * restore: once prefetch has finished, touching the same set faults never. */
static void test_lazy_workingset_record_and_prefetch(void **state)
{
    char dir[4096];
    st_image_t img;
    make_snap(dir, &img, "ws", 83, false, 4096, 2);
    snap_t *snap = open_snap(dir);
    snap_mem_opts_t rec = {.record_workingset = true};
    snap_mem_t *mem = attach_lazy(snap, &rec);
    touch_set(mem, &img, 5, 150);
    snap_mem_stats_t first;
    snap_mem_get_stats(mem, &first);
    thaw_err_t err;
    int saved = snap_mem_workingset_save(mem, &err);
    assert_int_equal(saved, (int)first.chunks_faulted);
    assert_true(saved > 50);
    snap_mem_destroy(mem);

    snap_mem_opts_t pf = {.prefetch = true};
    mem = attach_lazy(snap, &pf);
    snap_mem_stats_t st;
    for (int w = 0; w < 20000; w++) {
        snap_mem_get_stats(mem, &st);
        if (st.chunks_prefetched == (uint64_t)saved)
            break;
        sleep_ms(1);
    }
    assert_int_equal(st.chunks_prefetched, (uint64_t)saved);
    touch_set(mem, &img, 5, 150);
    snap_mem_get_stats(mem, &st);
    assert_int_equal(st.faults, 0);
    assert_int_equal(st.chunks_faulted, 0);
    /* Outside the working set faults still work. */
    assert_int_equal(st_mem_equals(mem, &img), 0);
    snap_mem_destroy(mem);

    /* Saving without recording is refused. */
    mem = attach_lazy(snap, NULL);
    assert_int_equal(snap_mem_workingset_save(mem, &err), -EINVAL);
    snap_mem_destroy(mem);
    free_snap(snap, &img);
}

/* Prefetch and faults racing for the same chunks: every chunk is still
 * read exactly once, by whichever asked first, and the content checks out. */
static void test_lazy_prefetch_races_faults(void **state)
{
    char dir[4096];
    st_image_t img;
    make_snap(dir, &img, "race", 85, true, 4096, 2);
    snap_t *snap = open_snap(dir);
    snap_mem_opts_t rec = {.record_workingset = true};
    snap_mem_t *mem = attach_lazy(snap, &rec);
    assert_int_equal(st_mem_equals(mem, &img), 0); /* records every chunk */
    thaw_err_t err;
    int saved = snap_mem_workingset_save(mem, &err);
    assert_int_equal((uint64_t)saved, snap->nchunks);
    snap_mem_destroy(mem);
    for (int round = 0; round < 3; round++) {
        snap_mem_opts_t pf = {.prefetch = true, .queue_depth = 8};
        mem = attach_lazy(snap, &pf);
        /* Touch from the end, against the prefetch order, so they meet. */
        for (size_t i = img.nregions; i-- > 0;) {
            snap_region_t r;
            snap_mem_region(mem, i, &r);
            for (size_t off = r.size; off >= 4096; off -= 4096)
                assert_int_equal(((char *)r.host)[off - 1], ((char *)img.regions[i].host)[off - 1]);
        }
        assert_int_equal(st_mem_equals(mem, &img), 0);
        snap_mem_stats_t st;
        snap_mem_get_stats(mem, &st);
        assert_int_equal(st.bytes_read, stored_bytes(dir));
        assert_int_equal(st.chunks_faulted + st.chunks_prefetched, snap->nchunks);
        snap_mem_destroy(mem);
    }
    free_snap(snap, &img);
}

/* A damaged workingset is only a hint: the restore works, without prefetch. */
static void test_lazy_bad_workingset_is_ignored(void **state)
{
    char dir[4096];
    st_image_t img;
    make_snap(dir, &img, "badws", 84, false, 65536, 1);
    snap_t *snap = open_snap(dir);
    snap_mem_opts_t rec = {.record_workingset = true};
    snap_mem_t *mem = attach_lazy(snap, &rec);
    touch_set(mem, &img, 9, 20);
    thaw_err_t err;
    assert_true(snap_mem_workingset_save(mem, &err) > 0);
    snap_mem_destroy(mem);
    void *buf;
    size_t len;
    char path[4096];
    snprintf(path, sizeof(path), "%s", st_path(dir, SNAP_WORKINGSET_FILE));
    assert_int_equal(st_read_all(path, &buf, &len), 0);
    ((char *)buf)[len - 1] ^= 0x40; /* checksum mismatch */
    assert_int_equal(st_write_all(path, buf, len), 0);
    free(buf);
    snap_mem_opts_t pf = {.prefetch = true};
    mem = attach_lazy(snap, &pf);
    assert_int_equal(st_mem_equals(mem, &img), 0);
    snap_mem_stats_t st;
    snap_mem_get_stats(mem, &st);
    assert_int_equal(st.chunks_prefetched, 0);
    snap_mem_destroy(mem);
    free_snap(snap, &img);
}

static void require_userfaultfd(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
    if (fd < 0 && errno == EPERM) {
        int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (dev >= 0)
            fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
        if (dev >= 0)
            close(dev);
    }
    if (fd < 0)
        thaw_test_skip("userfaultfd unavailable (%s): needs root or "
                       "vm.unprivileged_userfaultfd=1",
                       strerror(errno));
    close(fd);
}

int main(void)
{
    require_userfaultfd();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lazy_4k),
        cmocka_unit_test(test_lazy_64k),
        cmocka_unit_test(test_lazy_2m),
        cmocka_unit_test(test_lazy_kernel_mode_faults),
        cmocka_unit_test(test_lazy_write_first_touch),
        cmocka_unit_test(test_lazy_dropped_page_reads_zero),
        cmocka_unit_test(test_lazy_concurrent_faults),
        cmocka_unit_test(test_lazy_teardown_with_faults_in_flight),
        cmocka_unit_test(test_lazy_corrupt_chunk_fails_the_access),
        cmocka_unit_test(test_lazy_workingset_record_and_prefetch),
        cmocka_unit_test(test_lazy_prefetch_races_faults),
        cmocka_unit_test(test_lazy_bad_workingset_is_ignored),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
