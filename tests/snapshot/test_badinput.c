// SPDX-License-Identifier: Apache-2.0
/*
 * Bad input, one named test per case: every damaged snapshot must give a
 * clear error naming the file, the item and the problem, never a crash, a
 * hang or a half-restored region, and must not leak (this binary also runs
 * in the sanitizer tree).  Edits keep the other checksums consistent (see
 * snaptest.h) so each test reaches the check it is named after.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/crc32c.h"
#include "snaptest.h"
#include "testlib.h"

static char *root;
static char dir[4096];
static st_image_t img;
static int case_no;

static int setup(void **state)
{
    root = st_tmpdir();
    st_image_make(&img, 11, false);
    return root ? 0 : -1;
}

static int teardown(void **state)
{
    st_image_free(&img);
    st_rmtree(root);
    free(root);
    return 0;
}

/* Each test starts from a fresh valid snapshot. */
static int fresh(void **state)
{
    snprintf(dir, sizeof(dir), "%s/case-%d", root, case_no++);
    st_write(dir, &img, 16384, 0, 1, NULL);
    return 0;
}

/* Open must fail with code and a message holding every needle. */
static void expect_open_error(int code, const char *n1, const char *n2)
{
    int fds = thaw_test_count_fds();
    thaw_err_t err;
    thaw_err_clear(&err);
    snap_t *snap = (snap_t *)0x1;
    int r = snap_open(dir, &snap, &err);
    if (r == 0)
        fail_msg("snap_open succeeded on a damaged snapshot");
    assert_null(snap);
    if (r != -code)
        fail_msg("expected -%d, got %d: %s", code, r, err.msg);
    if (!strstr(err.msg, dir) || !strstr(err.msg, n1) || (n2 && !strstr(err.msg, n2)))
        fail_msg("error \"%s\" lacks \"%s\"/\"%s\"", err.msg, n1, n2 ? n2 : "");
    assert_int_equal(thaw_test_count_fds(), fds);
}

/* Open succeeds, the eager and shared restores fail on the chunk. */
static void expect_restore_error(int code, const char *n1)
{
    thaw_err_t err;
    snap_t *snap;
    if (snap_open(dir, &snap, &err) != 0)
        fail_msg("open: %s", err.msg);
    for (snap_engine_t e = SNAP_ENGINE_EAGER; e <= SNAP_ENGINE_SHARED; e++) {
        if (e == SNAP_ENGINE_LAZY)
            continue; /* needs userfaultfd: test_lazy.c covers it */
        snap_mem_t *mem = (snap_mem_t *)0x1;
        thaw_err_clear(&err);
        int r = snap_mem_attach(snap, e, NULL, &mem, &err);
        assert_null(mem);
        if (r != -code)
            fail_msg("%s: expected -%d, got %d: %s", snap_engine_name(e), code, r, err.msg);
        if (!strstr(err.msg, SNAP_MEMORY_FILE) || !strstr(err.msg, n1))
            fail_msg("error \"%s\" lacks \"%s\"", err.msg, n1);
    }
    snap_close(snap);
}

static void truncate_file(const char *name, off_t len)
{
    assert_int_equal(truncate(st_path(dir, name), len), 0);
}

static void poke(const char *name, off_t off, const void *data, size_t len)
{
    int fd = open(st_path(dir, name), O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, len, off), (ssize_t)len);
    close(fd);
}

/* ---- missing files */
static void test_missing_directory(void **state)
{
    snprintf(dir, sizeof(dir), "%s/does-not-exist", root);
    expect_open_error(ENOENT, "open directory", NULL);
}
static void test_missing_manifest(void **state)
{
    unlink(st_path(dir, SNAP_MANIFEST_FILE));
    expect_open_error(ENOENT, SNAP_MANIFEST_FILE, "No such file");
}
static void test_missing_state_file(void **state)
{
    unlink(st_path(dir, SNAP_STATE_FILE));
    expect_open_error(ENOENT, SNAP_STATE_FILE, "No such file");
}
static void test_missing_memory_file(void **state)
{
    unlink(st_path(dir, SNAP_MEMORY_FILE));
    expect_open_error(ENOENT, SNAP_MEMORY_FILE, "No such file");
}

/* ---- truncated files */
static void test_truncated_manifest(void **state)
{
    truncate_file(SNAP_MANIFEST_FILE, 40);
    expect_open_error(EINVAL, SNAP_MANIFEST_FILE, "not JSON");
}
static void test_truncated_state_file(void **state)
{
    truncate_file(SNAP_STATE_FILE, 100);
    expect_open_error(EBADMSG, SNAP_STATE_FILE, "differs from the manifest");
}
static void test_truncated_state_file_consistent_manifest(void **state)
{
    truncate_file(SNAP_STATE_FILE, 100);
    st_fix_manifest(dir);
    expect_open_error(EINVAL, SNAP_STATE_FILE, "runs past the end");
}
static void test_truncated_memory_file(void **state)
{
    struct stat st;
    stat(st_path(dir, SNAP_MEMORY_FILE), &st);
    truncate_file(SNAP_MEMORY_FILE, st.st_size - 1000);
    expect_open_error(EINVAL, SNAP_MEMORY_FILE, "truncated");
}
static void test_truncated_memory_file_consistent_manifest(void **state)
{
    struct stat st;
    stat(st_path(dir, SNAP_MEMORY_FILE), &st);
    truncate_file(SNAP_MEMORY_FILE, st.st_size - 1000);
    st_fix_manifest(dir);
    expect_open_error(EINVAL, SNAP_MEMORY_FILE, "past the end of the file");
}
static void test_truncated_memory_header(void **state)
{
    truncate_file(SNAP_MEMORY_FILE, 20);
    st_fix_manifest(dir);
    expect_open_error(EINVAL, SNAP_MEMORY_FILE, "truncated header");
}

/* ---- magic and versions */
static void test_wrong_magic_memory(void **state)
{
    poke(SNAP_MEMORY_FILE, 0, "NOTTHAW!", 8);
    expect_open_error(EINVAL, SNAP_MEMORY_FILE, "wrong magic");
}
static void test_wrong_magic_state(void **state)
{
    poke(SNAP_STATE_FILE, 0, "NOTTHAW!", 8);
    st_fix_manifest(dir);
    expect_open_error(EINVAL, SNAP_STATE_FILE, "wrong magic");
}
static void test_future_version_memory(void **state)
{
    uint32_t v = SNAP__MEM_VERSION + 1;
    poke(SNAP_MEMORY_FILE, 8, &v, 4);
    st_fix_memory_crcs(dir);
    expect_open_error(EPROTONOSUPPORT, SNAP_MEMORY_FILE, "future version");
}
static void test_future_version_state(void **state)
{
    uint32_t v = SNAP__STATE_VERSION + 1;
    poke(SNAP_STATE_FILE, 8, &v, 4);
    st_fix_manifest(dir);
    expect_open_error(EPROTONOSUPPORT, SNAP_STATE_FILE, "future version");
}
static void test_future_version_manifest(void **state)
{
    assert_int_equal(st_manifest_set(dir, "version", SNAP_MANIFEST_VERSION + 1, false), 0);
    expect_open_error(EPROTONOSUPPORT, SNAP_MANIFEST_FILE, "future version");
}
static void test_memory_header_checksum(void **state)
{
    uint32_t cs = 8192; /* a valid-looking change the checksum must catch */
    poke(SNAP_MEMORY_FILE, 16, &cs, 4);
    expect_open_error(EBADMSG, SNAP_MEMORY_FILE, "header checksum mismatch");
}

/* ---- chunk table */
static void edit_table(void (*edit)(struct snap__chunk_entry *t, uint64_t n, uint64_t size))
{
    struct snap__mem_header h;
    struct snap__chunk_entry *t;
    st_load_table(dir, &h, &t);
    struct stat st;
    stat(st_path(dir, SNAP_MEMORY_FILE), &st);
    edit(t, h.nchunks, (uint64_t)st.st_size);
    st_store_table(dir, &h, t);
    free(t);
    st_fix_memory_crcs(dir);
}

static uint64_t nth_stored(struct snap__chunk_entry *t, uint64_t n, int which)
{
    for (uint64_t i = 0; i < n; i++)
        if (t[i].kind != SNAP__CHUNK_ZERO && which-- == 0)
            return i;
    fail_msg("not enough stored chunks");
    return 0;
}

static void past_end(struct snap__chunk_entry *t, uint64_t n, uint64_t size)
{
    uint64_t i = nth_stored(t, n, 3);
    t[i].offset = size - t[i].stored_len / 2;
}
static void test_table_entry_past_end(void **state)
{
    edit_table(past_end);
    expect_open_error(EINVAL, SNAP_MEMORY_FILE, "points past the end");
}

static void huge_offset(struct snap__chunk_entry *t, uint64_t n, uint64_t size)
{
    t[nth_stored(t, n, 1)].offset = UINT64_MAX - 10; /* offset + length wraps */
}
static void test_table_entry_offset_wraps(void **state)
{
    edit_table(huge_offset);
    expect_open_error(EINVAL, SNAP_MEMORY_FILE, "points past the end");
}

static void overlap(struct snap__chunk_entry *t, uint64_t n, uint64_t size)
{
    uint64_t a = nth_stored(t, n, 4), b = nth_stored(t, n, 5);
    t[b].offset = t[a].offset + 1;
}
static void test_table_overlapping_entries(void **state)
{
    edit_table(overlap);
    expect_open_error(EINVAL, SNAP_MEMORY_FILE, "overlaps");
}

static void into_header(struct snap__chunk_entry *t, uint64_t n, uint64_t size)
{
    t[nth_stored(t, n, 0)].offset = 8;
}
static void test_table_entry_inside_the_table(void **state)
{
    edit_table(into_header);
    expect_open_error(EINVAL, SNAP_MEMORY_FILE, "points past the end");
}

static void bad_kind(struct snap__chunk_entry *t, uint64_t n, uint64_t size)
{
    t[2].kind = 9;
}
static void test_table_unknown_kind(void **state)
{
    edit_table(bad_kind);
    expect_open_error(EINVAL, SNAP_MEMORY_FILE, "unknown kind");
}

static void bad_len(struct snap__chunk_entry *t, uint64_t n, uint64_t size)
{
    t[1].raw_len = 123;
}
static void test_table_wrong_chunk_length(void **state)
{
    edit_table(bad_len);
    expect_open_error(EINVAL, SNAP_MEMORY_FILE, "chunk 1: length 123");
}

static void zero_with_data(struct snap__chunk_entry *t, uint64_t n, uint64_t size)
{
    uint64_t i = nth_stored(t, n, 2);
    t[i].kind = SNAP__CHUNK_ZERO;
}
static void test_table_zero_chunk_with_data(void **state)
{
    edit_table(zero_with_data);
    expect_open_error(EINVAL, SNAP_MEMORY_FILE, "zero chunk with data");
}

static void test_table_checksum(void **state)
{
    struct snap__mem_header h;
    struct snap__chunk_entry *t;
    st_load_table(dir, &h, &t);
    t[0].crc32c ^= 1;
    st_store_table(dir, &h, t);
    free(t);
    expect_open_error(EBADMSG, SNAP_MEMORY_FILE, "chunk table checksum mismatch");
}

static void test_chunk_count_mismatch(void **state)
{
    /* A region bigger than the memory file describes. */
    assert_int_equal(st_manifest_set(dir, "regions/1/size", (1 << 20) + 8192, false), 0);
    expect_open_error(EINVAL, SNAP_MEMORY_FILE, "do not match the manifest");
}

/* ---- chunk data (caught when read) */
static void corrupt_data(int kind)
{
    struct snap__mem_header h;
    struct snap__chunk_entry *t;
    st_load_table(dir, &h, &t);
    uint64_t i = 0;
    while (i < h.nchunks && !(t[i].kind == kind && t[i].stored_len > 100))
        i++;
    assert_true(i < h.nchunks);
    char junk[8] = "garbage!";
    poke(SNAP_MEMORY_FILE, (off_t)(t[i].offset + t[i].stored_len - 50), junk, sizeof(junk));
    free(t);
}
static void test_corrupt_lz4_chunk_data(void **state)
{
    corrupt_data(SNAP__CHUNK_LZ4);
    expect_restore_error(EBADMSG, "chunk ");
}
static void test_corrupt_raw_chunk_data(void **state)
{
    corrupt_data(SNAP__CHUNK_RAW);
    expect_restore_error(EBADMSG, "checksum mismatch");
}

/* ---- manifest */
static void test_manifest_not_json(void **state)
{
    assert_int_equal(st_write_all(st_path(dir, SNAP_MANIFEST_FILE), "snapshot v1\n", 12), 0);
    expect_open_error(EINVAL, SNAP_MANIFEST_FILE, "not JSON");
}
static void test_manifest_not_an_object(void **state)
{
    assert_int_equal(st_write_all(st_path(dir, SNAP_MANIFEST_FILE), "[1, 2]", 6), 0);
    expect_open_error(EINVAL, SNAP_MANIFEST_FILE, "not a JSON object");
}
static void test_manifest_lacks_regions(void **state)
{
    assert_int_equal(st_manifest_set(dir, "regions", 0, true), 0);
    expect_open_error(EINVAL, SNAP_MANIFEST_FILE, "\"regions\"");
}
static void test_manifest_lacks_chunk_size(void **state)
{
    assert_int_equal(st_manifest_set(dir, "chunk_size", 0, true), 0);
    expect_open_error(EINVAL, SNAP_MANIFEST_FILE, "missing field \"chunk_size\"");
}
static void test_manifest_lacks_region_size(void **state)
{
    assert_int_equal(st_manifest_set(dir, "regions/0/size", 0, true), 0);
    expect_open_error(EINVAL, SNAP_MANIFEST_FILE, "region 0: missing field \"size\"");
}
static void test_manifest_lacks_files(void **state)
{
    assert_int_equal(st_manifest_set(dir, "files", 0, true), 0);
    expect_open_error(EINVAL, SNAP_MANIFEST_FILE, "\"files\"");
}
static void test_manifest_bad_chunk_size(void **state)
{
    assert_int_equal(st_manifest_set(dir, "chunk_size", 12288, false), 0);
    expect_open_error(EINVAL, SNAP_MANIFEST_FILE, "power of two");
}
static void test_manifest_absurd_region_size(void **state)
{
    assert_int_equal(st_manifest_set(dir, "regions/0/size", 1ll << 50, false), 0);
    expect_open_error(EINVAL, SNAP_MANIFEST_FILE, "\"size\" must be an integer");
}
static void test_manifest_negative_value(void **state)
{
    assert_int_equal(st_manifest_set(dir, "regions/1/guest_addr", -4096, false), 0);
    expect_open_error(EINVAL, SNAP_MANIFEST_FILE, "\"guest_addr\"");
}
static void test_manifest_region_offset_mismatch(void **state)
{
    assert_int_equal(st_manifest_set(dir, "regions/1/offset", 0, false), 0);
    expect_open_error(EINVAL, SNAP_MANIFEST_FILE, "does not match the layout");
}
static void test_manifest_too_large(void **state)
{
    size_t n = SNAP_MAX_MANIFEST + 10;
    char *big = malloc(n);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    assert_int_equal(st_write_all(st_path(dir, SNAP_MANIFEST_FILE), big, n), 0);
    free(big);
    expect_open_error(EFBIG, SNAP_MANIFEST_FILE, "cap");
}

/* ---- state sections */
static void test_state_section_checksum(void **state)
{
    /* Payload of section 0 starts after the 16-byte header and its own 24. */
    poke(SNAP_STATE_FILE, 16 + 24 + 2, "X", 1);
    st_fix_manifest(dir);
    expect_open_error(EBADMSG, SNAP_STATE_FILE, "section 0 (id 1): checksum mismatch");
}
static void test_state_section_length_past_end(void **state)
{
    uint64_t len = 1ull << 40;
    poke(SNAP_STATE_FILE, 16 + 8, &len, 8);
    st_fix_manifest(dir);
    expect_open_error(EINVAL, SNAP_STATE_FILE, "runs past the end");
}
static void test_state_trailing_garbage(void **state)
{
    int fd = open(st_path(dir, SNAP_STATE_FILE), O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, "12345678", 8), 8);
    close(fd);
    st_fix_manifest(dir);
    expect_open_error(EINVAL, SNAP_STATE_FILE, "unexpected bytes");
}
static void test_state_absurd_section_count(void **state)
{
    uint32_t n = 1u << 30;
    poke(SNAP_STATE_FILE, 12, &n, 4);
    st_fix_manifest(dir);
    expect_open_error(E2BIG, SNAP_STATE_FILE, "over the limit");
}

/* A snapshot directory that is a file, and files that are directories. */
static void test_state_file_is_a_directory(void **state)
{
    unlink(st_path(dir, SNAP_STATE_FILE));
    mkdir(st_path(dir, SNAP_STATE_FILE), 0755);
    expect_open_error(EINVAL, SNAP_STATE_FILE, "not a regular file");
    rmdir(st_path(dir, SNAP_STATE_FILE));
}

/* A FIFO in place of a file must give an error, not hang the reader. */
static void test_state_file_is_a_fifo(void **state)
{
    unlink(st_path(dir, SNAP_STATE_FILE));
    assert_int_equal(mkfifo(st_path(dir, SNAP_STATE_FILE), 0644), 0);
    expect_open_error(EINVAL, SNAP_STATE_FILE, "not a regular file");
}
static void test_memory_file_is_a_fifo(void **state)
{
    unlink(st_path(dir, SNAP_MEMORY_FILE));
    assert_int_equal(mkfifo(st_path(dir, SNAP_MEMORY_FILE), 0644), 0);
    expect_open_error(EINVAL, SNAP_MEMORY_FILE, "not a regular file");
}

/* Millions of chunks at 4 KiB: refused before any table is allocated. */
static void test_manifest_too_many_chunks(void **state)
{
    assert_int_equal(st_manifest_set(dir, "chunk_size", 4096, false), 0);
    assert_int_equal(st_manifest_set(dir, "regions/1/size", 1ll << 37, false), 0);
    expect_open_error(EFBIG, SNAP_MANIFEST_FILE, "use a larger chunk size");
}

#define T(name) cmocka_unit_test_setup(name, fresh)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_directory),
        T(test_missing_manifest),
        T(test_missing_state_file),
        T(test_missing_memory_file),
        T(test_truncated_manifest),
        T(test_truncated_state_file),
        T(test_truncated_state_file_consistent_manifest),
        T(test_truncated_memory_file),
        T(test_truncated_memory_file_consistent_manifest),
        T(test_truncated_memory_header),
        T(test_wrong_magic_memory),
        T(test_wrong_magic_state),
        T(test_future_version_memory),
        T(test_future_version_state),
        T(test_future_version_manifest),
        T(test_memory_header_checksum),
        T(test_table_entry_past_end),
        T(test_table_entry_offset_wraps),
        T(test_table_overlapping_entries),
        T(test_table_entry_inside_the_table),
        T(test_table_unknown_kind),
        T(test_table_wrong_chunk_length),
        T(test_table_zero_chunk_with_data),
        T(test_table_checksum),
        T(test_chunk_count_mismatch),
        T(test_corrupt_lz4_chunk_data),
        T(test_corrupt_raw_chunk_data),
        T(test_manifest_not_json),
        T(test_manifest_not_an_object),
        T(test_manifest_lacks_regions),
        T(test_manifest_lacks_chunk_size),
        T(test_manifest_lacks_region_size),
        T(test_manifest_lacks_files),
        T(test_manifest_bad_chunk_size),
        T(test_manifest_absurd_region_size),
        T(test_manifest_negative_value),
        T(test_manifest_region_offset_mismatch),
        T(test_manifest_too_large),
        T(test_state_section_checksum),
        T(test_state_section_length_past_end),
        T(test_state_trailing_garbage),
        T(test_state_absurd_section_count),
        T(test_state_file_is_a_directory),
        T(test_state_file_is_a_fifo),
        T(test_memory_file_is_a_fifo),
        T(test_manifest_too_many_chunks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
