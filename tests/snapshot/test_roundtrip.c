// SPDX-License-Identifier: Apache-2.0
/*
 * Round trips through the writer and the eager and shared engines (the lazy
 * engine, which needs userfaultfd, is in test_lazy.c): byte-for-byte memory
 * for chunk sizes 4 KiB, 64 KiB and 2 MiB over regions that are not chunk
 * multiples, sections, metadata, writer statistics and options, atomic
 * replacement, shared-clone isolation, and the writer's argument checks.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "snaptest.h"
#include "testlib.h"

static char *root;

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

static void check_sections(snap_t *snap)
{
    uint32_t ver;
    const void *data;
    size_t len;
    assert_int_equal(snap_section_find(snap, 1, &ver, &data, &len), 0);
    assert_int_equal(ver, 3);
    assert_int_equal(len, strlen("vcpu state: rax=1 rbx=2") + 1);
    assert_string_equal(data, "vcpu state: rax=1 rbx=2");
    assert_int_equal(snap_section_find(snap, 7, &ver, &data, &len), 0);
    assert_int_equal(len, 100000);
    assert_int_equal(((const unsigned char *)data)[99999], (unsigned char)(99999 * 31));
    assert_int_equal(snap_section_find(snap, 2, NULL, NULL, NULL), -ENOENT);
}

static void roundtrip(uint32_t chunk, snap_engine_t engine, int level, unsigned threads)
{
    st_image_t img;
    st_image_make(&img, chunk + (uint64_t)level, true);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/rt-%u-%d-%d-%u", root, chunk, (int)engine, level, threads);
    snap_write_stats_t ws;
    st_write(dir, &img, chunk, level, threads, &ws);
    uint64_t total = img.regions[0].size + img.regions[1].size + img.regions[2].size;
    assert_int_equal(ws.bytes_in, total);
    assert_true(ws.chunks_zero > 0);
    assert_true(ws.chunks_raw > 0);
    assert_true(ws.chunks_lz4 > 0);
    assert_true(ws.bytes_out < total);

    int fds = thaw_test_count_fds();
    thaw_err_t err;
    thaw_err_clear(&err);
    snap_t *snap = NULL;
    assert_int_equal(snap_open(dir, &snap, &err), 0);
    assert_string_equal(snap_kind(snap), "test");
    assert_string_equal(snap_metadata_json(snap), "{\"template\":\"py311\",\"vcpus\":2}");
    assert_int_equal(snap_chunk_size(snap), chunk);
    assert_int_equal(snap_memory_size(snap), total);
    assert_int_equal(snap_region_count(snap), 3);
    snap_region_t r;
    assert_int_equal(snap_region_get(snap, 1, &r), 0);
    assert_int_equal(r.guest_addr, 0x100000000ull);
    assert_int_equal(r.size, img.regions[1].size);
    assert_int_equal(snap_region_get(snap, 3, &r), -ERANGE);
    check_sections(snap);

    snap_mem_t *mem = NULL;
    snap_mem_opts_t mo = {.threads = threads}; /* decode threads too */
    assert_int_equal(snap_mem_attach(snap, engine, &mo, &mem, &err), 0);
    snap_close(snap); /* the memory keeps the snapshot alive */
    assert_int_equal(st_mem_equals(mem, &img), 0);
    snap_mem_stats_t st;
    snap_mem_get_stats(mem, &st);
    assert_false(st.failed);
    assert_int_equal(snap_mem_error(mem, NULL), 0);
    /* The memory is ours to write. */
    snap_mem_region(mem, 0, &r);
    memset(r.host, 0x5a, 8192);
    snap_mem_destroy(mem);
    assert_int_equal(thaw_test_count_fds(), fds);
    st_image_free(&img);
}

static void test_eager_4k(void **state)
{
    roundtrip(4096, SNAP_ENGINE_EAGER, 0, 1);
}
static void test_eager_64k(void **state)
{
    roundtrip(65536, SNAP_ENGINE_EAGER, 0, 2);
}
static void test_eager_2m(void **state)
{
    roundtrip(2u << 20, SNAP_ENGINE_EAGER, 0, 3);
}
static void test_shared_4k(void **state)
{
    roundtrip(4096, SNAP_ENGINE_SHARED, 0, 2);
}
static void test_shared_64k(void **state)
{
    roundtrip(65536, SNAP_ENGINE_SHARED, 0, 1);
}
static void test_shared_2m(void **state)
{
    roundtrip(2u << 20, SNAP_ENGINE_SHARED, 0, 4);
}
static void test_lz4_hc_level(void **state)
{
    roundtrip(65536, SNAP_ENGINE_EAGER, 9, 2);
}
static void test_lz4_fast_acceleration(void **state)
{
    roundtrip(65536, SNAP_ENGINE_EAGER, -8, 2);
}

/* More threads must give the same file, byte for byte. */
static void test_threads_give_identical_memory_file(void **state)
{
    st_image_t img;
    st_image_make(&img, 42, false);
    char a[4096], b[4096];
    snprintf(a, sizeof(a), "%s/thr1", root);
    snprintf(b, sizeof(b), "%s/thr4", root);
    st_write(a, &img, 16384, 0, 1, NULL);
    st_write(b, &img, 16384, 0, 4, NULL);
    void *ba, *bb;
    size_t la, lb;
    char pa[4096];
    snprintf(pa, sizeof(pa), "%s", st_path(a, SNAP_MEMORY_FILE));
    assert_int_equal(st_read_all(pa, &ba, &la), 0);
    assert_int_equal(st_read_all(st_path(b, SNAP_MEMORY_FILE), &bb, &lb), 0);
    assert_int_equal(la, lb);
    assert_memory_equal(ba, bb, la);
    free(ba);
    free(bb);
    st_image_free(&img);
}

static void test_all_zero_memory(void **state)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/zero", root);
    size_t sz = 1u << 20;
    void *p = calloc(1, sz);
    snap_region_t reg = {.guest_addr = 0x1000, .host = p, .size = sz};
    snap_write_stats_t ws;
    thaw_err_t err;
    assert_int_equal(snap_write(dir, &reg, 1, NULL, 0, NULL, &ws, &err), 0);
    assert_int_equal(ws.chunks_zero, sz / SNAP_CHUNK_DEFAULT);
    assert_int_equal(ws.chunks_raw + ws.chunks_lz4, 0);
    snap_t *snap;
    assert_int_equal(snap_open(dir, &snap, &err), 0);
    assert_string_equal(snap_kind(snap), "generic");
    assert_string_equal(snap_metadata_json(snap), "{}");
    snap_mem_t *mem;
    assert_int_equal(snap_mem_attach(snap, SNAP_ENGINE_EAGER, NULL, &mem, &err), 0);
    snap_region_t r;
    snap_mem_region(mem, 0, &r);
    assert_memory_equal(r.host, p, sz);
    snap_mem_destroy(mem);
    snap_close(snap);
    free(p);
}

/* Writing over an existing snapshot replaces it whole (RENAME_EXCHANGE). */
static void test_replace_existing_snapshot(void **state)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/replace", root);
    st_image_t a, b;
    st_image_make(&a, 1, false);
    st_image_make(&b, 2, false);
    st_write(dir, &a, 65536, 0, 1, NULL);
    /* An open snapshot keeps reading the old files after the swap. */
    thaw_err_t err;
    snap_t *old;
    assert_int_equal(snap_open(dir, &old, &err), 0);
    st_write(dir, &b, 65536, 0, 1, NULL);
    snap_t *snap;
    assert_int_equal(snap_open(dir, &snap, &err), 0);
    snap_mem_t *mem, *mold;
    assert_int_equal(snap_mem_attach(snap, SNAP_ENGINE_EAGER, NULL, &mem, &err), 0);
    assert_int_equal(st_mem_equals(mem, &b), 0);
    assert_int_equal(snap_mem_attach(old, SNAP_ENGINE_EAGER, NULL, &mold, &err), 0);
    assert_int_equal(st_mem_equals(mold, &a), 0);
    snap_mem_destroy(mem);
    snap_mem_destroy(mold);
    snap_close(snap);
    snap_close(old);
    /* No temporary directory is left behind. */
    DIR *d = opendir(root);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)))
        assert_null(strstr(de->d_name, "replace.tmp"));
    closedir(d);
    st_image_free(&a);
    st_image_free(&b);
}

/* Two clones of one base: a write in one is seen by neither the other nor
 * the base (a third clone), and both share the base until they write. */
static void test_shared_clone_isolation(void **state)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/clones", root);
    st_image_t img;
    st_image_make(&img, 9, false);
    st_write(dir, &img, 65536, 0, 2, NULL);
    thaw_err_t err;
    snap_t *snap;
    assert_int_equal(snap_open(dir, &snap, &err), 0);
    snap_base_t *base;
    assert_int_equal(snap_base_get(snap, &base, &err), 0);
    assert_true(snap_base_size(base) >= snap_memory_size(snap));
    snap_mem_opts_t o = {.base = base};
    snap_mem_t *c1, *c2;
    assert_int_equal(snap_mem_attach(snap, SNAP_ENGINE_SHARED, &o, &c1, &err), 0);
    assert_int_equal(snap_mem_attach(snap, SNAP_ENGINE_SHARED, NULL, &c2, &err), 0);
    snap_close(snap);
    snap_region_t r1, r2;
    snap_mem_region(c1, 0, &r1);
    snap_mem_region(c2, 0, &r2);
    assert_ptr_not_equal(r1.host, r2.host);
    memset(r1.host, 0xee, 3 * 4096 + 17);
    ((char *)r1.host)[r1.size - 1] = 0x11;
    snap_mem_region(c1, 1, &r1);
    memset(r1.host, 0, 4096);
    assert_int_equal(st_mem_equals(c2, &img), 0);
    snap_mem_t *c3;
    snap_t *again;
    assert_int_equal(snap_open(dir, &again, &err), 0);
    o.base = base; /* base of the first open, kept by our reference */
    assert_int_equal(snap_mem_attach(again, SNAP_ENGINE_SHARED, &o, &c3, &err), 0);
    assert_int_equal(st_mem_equals(c3, &img), 0);
    snap_region_t r3;
    snap_mem_region(c1, 0, &r1);
    snap_mem_region(c3, 0, &r3);
    assert_int_equal(((unsigned char *)r1.host)[0], 0xee);
    assert_memory_equal((char *)r3.host, img.regions[0].host, 4096);
    snap_mem_destroy(c1);
    snap_mem_destroy(c2);
    snap_mem_destroy(c3);
    snap_close(again);
    snap_base_put(base);
    st_image_free(&img);
}

static void test_abort_makes_memory_fail(void **state)
{
    /* After abort the ranges stay reserved but no longer hold the data;
     * (the SIGBUS itself is exercised in test_lazy.c). */
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/abort", root);
    st_image_t img;
    st_image_make(&img, 5, false);
    st_write(dir, &img, 65536, 0, 1, NULL);
    thaw_err_t err;
    snap_t *snap;
    assert_int_equal(snap_open(dir, &snap, &err), 0);
    snap_mem_t *mem;
    assert_int_equal(snap_mem_attach(snap, SNAP_ENGINE_EAGER, NULL, &mem, &err), 0);
    snap_mem_abort(mem);
    snap_mem_abort(mem);
    snap_region_t r;
    snap_mem_region(mem, 0, &r);
    assert_non_null(r.host);
    snap_mem_destroy(mem);
    snap_close(snap);
    st_image_free(&img);
}

static void expect_write_error(const snap_region_t *regs, size_t n, const snap_section_t *secs,
                               size_t ns, const snap_write_opts_t *o, int code, const char *what)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/bad-write", root);
    thaw_err_t err;
    thaw_err_clear(&err);
    assert_int_equal(snap_write(dir, regs, n, secs, ns, o, NULL, &err), -code);
    if (!strstr(err.msg, what))
        fail_msg("error \"%s\" lacks \"%s\"", err.msg, what);
    struct stat st;
    assert_int_not_equal(stat(dir, &st), 0);
}

static void test_writer_rejects_bad_arguments(void **state)
{
    static char buf[3 * 4096];
    snap_region_t r[2] = {{.guest_addr = 0, .host = buf, .size = 8192},
                          {.guest_addr = 4096, .host = buf, .size = 4096}};
    snap_write_opts_t o = {.chunk_size = 3000};
    expect_write_error(r, 1, NULL, 0, &o, EINVAL, "power of two");
    o.chunk_size = 4u << 20;
    expect_write_error(r, 1, NULL, 0, &o, EINVAL, "power of two");
    expect_write_error(r, 2, NULL, 0, NULL, EINVAL, "overlaps");
    snap_region_t odd = {.guest_addr = 0, .host = buf, .size = 5000};
    expect_write_error(&odd, 1, NULL, 0, NULL, EINVAL, "multiples");
    snap_write_opts_t m = {.metadata_json = "{not json"};
    expect_write_error(r, 1, NULL, 0, &m, EINVAL, "metadata is not JSON");
    m.metadata_json = "[1,2]";
    expect_write_error(r, 1, NULL, 0, &m, EINVAL, "must be a JSON object");
    snap_section_t dup[2] = {{.id = 4, .data = "a", .len = 1}, {.id = 4, .data = "b", .len = 1}};
    expect_write_error(r, 1, dup, 2, NULL, EINVAL, "duplicate id");
}

/* A dead writer's temporary directory is swept by the next write; a live
 * writer's (ours) is left alone. */
static void test_write_sweeps_stale_tmp_dirs(void **state)
{
    char dir[4096], dead[4200], live[4200];
    snprintf(dir, sizeof(dir), "%s/sweep", root);
    snprintf(dead, sizeof(dead), "%s.tmp.999999999.3", dir);
    snprintf(live, sizeof(live), "%s.tmp.%d.77", dir, (int)getpid());
    assert_int_equal(mkdir(dead, 0755), 0);
    assert_int_equal(mkdir(live, 0755), 0);
    char f[4300];
    snprintf(f, sizeof(f), "%s/" SNAP_MEMORY_FILE, dead);
    assert_int_equal(st_write_all(f, "x", 1), 0);
    st_image_t img;
    st_image_make(&img, 3, false);
    st_write(dir, &img, 65536, 0, 1, NULL);
    struct stat st;
    assert_int_not_equal(stat(dead, &st), 0);
    assert_int_equal(stat(live, &st), 0);
    rmdir(live);
    st_image_free(&img);
}

static void test_engine_names(void **state)
{
    snap_engine_t e;
    assert_int_equal(snap_engine_parse("lazy", &e), 0);
    assert_int_equal(e, SNAP_ENGINE_LAZY);
    assert_int_equal(snap_engine_parse("shared", &e), 0);
    assert_string_equal(snap_engine_name(SNAP_ENGINE_EAGER), "eager");
    assert_int_equal(snap_engine_parse("fast", &e), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eager_4k),
        cmocka_unit_test(test_eager_64k),
        cmocka_unit_test(test_eager_2m),
        cmocka_unit_test(test_shared_4k),
        cmocka_unit_test(test_shared_64k),
        cmocka_unit_test(test_shared_2m),
        cmocka_unit_test(test_lz4_hc_level),
        cmocka_unit_test(test_lz4_fast_acceleration),
        cmocka_unit_test(test_threads_give_identical_memory_file),
        cmocka_unit_test(test_all_zero_memory),
        cmocka_unit_test(test_replace_existing_snapshot),
        cmocka_unit_test(test_shared_clone_isolation),
        cmocka_unit_test(test_abort_makes_memory_fail),
        cmocka_unit_test(test_writer_rejects_bad_arguments),
        cmocka_unit_test(test_write_sweeps_stale_tmp_dirs),
        cmocka_unit_test(test_engine_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
