// SPDX-License-Identifier: Apache-2.0
/*
 * The snapshot writer alone running out of space on a real block file
 * system: a small ext4 image on a loop device (root, mkfs.ext4, losetup;
 * skipped otherwise), filled so that memory.bin's write fails, once in the
 * page-cache head (the first 4 MiB) and once in the O_DIRECT part.  What
 * must hold: snap_write returns -ENOSPC with a message naming memory.bin
 * and the offset; no temporary directory is left; the snapshot already at
 * that path is intact and restores; once space is freed the same write
 * succeeds.  The O_DIRECT case runs again with io_uring refused by seccomp
 * (the synchronous pwrite path).  (tests/fault/test_fault_store.c does disk-full through thawd
 * on tmpfs.)
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <seccomp.h>

#include "snaptest.h"
#include "testlib.h"

#define MiB (1u << 20)

static char image[4096], mnt[4096], loopdev[256];
static bool mounted;
static uint32_t align;

static const char *snapdir(void)
{
    static char d[4200];
    snprintf(d, sizeof(d), "%s/store/tpl", mnt);
    return d;
}

static void mem_make(snap_region_t *r, size_t size, uint64_t seed, bool random)
{
    st_region_alloc(r, 0, size, 0);
    if (random)
        st_fill_random(r->host, size, seed);
    else
        st_fill_guest(r->host, size, seed);
}

static int write_one(const snap_region_t *r, thaw_err_t *err)
{
    snap_section_t s = {.id = 1, .version = 1, .data = "state", .len = 5};
    snap_write_opts_t o = {.chunk_size = 64u << 10, .threads = 2};
    thaw_err_clear(err);
    return snap_write(snapdir(), r, 1, &s, 1, &o, NULL, err);
}

static void restore_equals(const snap_region_t *r)
{
    thaw_err_t err;
    thaw_err_clear(&err);
    snap_t *snap = NULL;
    if (snap_open(snapdir(), &snap, &err) != 0)
        fail_msg("open %s: %s", snapdir(), err.msg);
    snap_mem_t *mem = NULL;
    int rc = snap_mem_attach(snap, SNAP_ENGINE_EAGER, NULL, &mem, &err);
    snap_close(snap);
    if (rc != 0)
        fail_msg("restore %s: %s", snapdir(), err.msg);
    snap_region_t got;
    assert_int_equal(snap_mem_region(mem, 0, &got), 0);
    assert_int_equal(got.size, r->size);
    assert_memory_equal(got.host, r->host, r->size);
    snap_mem_destroy(mem);
}

/* Nothing but "tpl" (and the filler) in the store: no "tpl.tmp.*". */
static void no_leftovers(void)
{
    char store[4200];
    snprintf(store, sizeof(store), "%s/store", mnt);
    DIR *d = opendir(store);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "tpl") &&
            strcmp(de->d_name, "filler"))
            fail_msg("left behind in %s: %s", store, de->d_name);
    closedir(d);
}

/* Leave about `left` bytes free with a preallocated filler file. */
static void fill_fs(uint64_t left)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/store/filler", mnt);
    unlink(path);
    sync();
    struct statvfs sv;
    assert_int_equal(statvfs(mnt, &sv), 0);
    uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    if (avail <= left + MiB)
        fail_msg("%s: only %llu bytes free, need more than %llu", mnt, (unsigned long long)avail,
                 (unsigned long long)left);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(fallocate(fd, 0, 0, (off_t)(avail - left)), 0);
    assert_int_equal(fsync(fd), 0);
    close(fd);
}

static void unfill_fs(void)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/store/filler", mnt);
    unlink(path);
    sync();
}

/* The offset in "...memory.bin: write at N: ..." */
static long long err_offset(const char *msg)
{
    const char *p = strstr(msg, "write at ");
    return p ? strtoll(p + 9, NULL, 10) : -1;
}

/*
 * Snapshot A (6 MiB) in place; the disk filled to `left` bytes free; a
 * 24 MiB incompressible snapshot B at the same path must fail cleanly with
 * the failing write at an offset in [lo, hi).
 */
static void enospc_case(uint64_t left, long long lo, long long hi)
{
    snap_region_t a, b;
    mem_make(&a, 6 * MiB, 1, false);
    mem_make(&b, 24 * MiB, 2, true);
    thaw_err_t err;
    if (write_one(&a, &err) != 0)
        fail_msg("snapshot A: %s", err.msg);
    fill_fs(left);

    int r = write_one(&b, &err);
    printf("# %llu bytes free: snap_write -> %d: %s\n", (unsigned long long)left, r, err.msg);
    assert_int_equal(r, -ENOSPC);
    assert_non_null(strstr(err.msg, SNAP_MEMORY_FILE));
    long long off = err_offset(err.msg);
    if (off < lo || off >= hi)
        fail_msg("failing write at %lld, expected in [%lld, %lld): %s", off, lo, hi, err.msg);
    no_leftovers();
    restore_equals(&a);

    /* with the space back, the same write goes through and replaces A */
    unfill_fs();
    if (write_one(&b, &err) != 0)
        fail_msg("snapshot B after freeing space: %s", err.msg);
    no_leftovers();
    restore_equals(&b);
    st_rmtree(snapdir());
    st_region_free(&a, 0);
    st_region_free(&b, 0);
}

/* In the page-cache head: less than 4 MiB can be written. */
static void test_enospc_buffered_head(void **s)
{
    enospc_case(1 * MiB, 0, 4 * MiB);
}

/* In the O_DIRECT part: the head fits, the rest does not. */
static void test_enospc_direct(void **s)
{
    if (!align)
        skip();
    enospc_case(10 * MiB, 4 * MiB, 24 * MiB);
}

/* In a child whose io_uring_setup fails with EPERM (seccomp), so memout.c
 * writes with plain pwrite: exit 0 when the write failed as it should. */
static int child_enospc(const snap_region_t *b)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx || seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(io_uring_setup), 0) ||
        seccomp_load(ctx))
        return 10;
    seccomp_release(ctx);
    thaw_err_t err;
    int r = write_one(b, &err);
    printf("# no io_uring: snap_write -> %d: %s\n", r, err.msg);
    fflush(stdout);
    if (r != -ENOSPC || !strstr(err.msg, SNAP_MEMORY_FILE))
        return 11;
    return err_offset(err.msg) >= 4 * MiB ? 0 : 12;
}

/* The same in the O_DIRECT part, written with pwrite instead of io_uring. */
static void test_enospc_direct_no_uring(void **s)
{
    if (!align)
        skip();
    snap_region_t a, b;
    mem_make(&a, 6 * MiB, 3, false);
    mem_make(&b, 24 * MiB, 4, true);
    thaw_err_t err;
    if (write_one(&a, &err) != 0)
        fail_msg("snapshot A: %s", err.msg);
    fill_fs(10 * MiB);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_enospc(&b));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child: status 0x%x (10: seccomp, 11: not ENOSPC naming memory.bin, 12: "
                 "failed before the O_DIRECT part)",
                 status);
    no_leftovers();
    restore_equals(&a);
    unfill_fs();
    st_rmtree(snapdir());
    st_region_free(&a, 0);
    st_region_free(&b, 0);
}

static int run(const char *cmd, char *out, size_t outlen)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    if (out) {
        if (!fgets(out, (int)outlen, p))
            out[0] = 0;
        out[strcspn(out, "\n")] = 0;
    }
    return pclose(p);
}

static int teardown(void **s)
{
    if (mounted && umount2(mnt, 0) != 0)
        fprintf(stderr, "umount %s: %s\n", mnt, strerror(errno));
    if (loopdev[0]) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "losetup -d %s", loopdev);
        if (run(cmd, NULL, 0) != 0)
            fprintf(stderr, "%s failed\n", cmd);
    }
    if (mnt[0])
        rmdir(mnt);
    if (image[0])
        unlink(image);
    return 0;
}

static void skip_setup(const char *why)
{
    teardown(NULL);
    thaw_test_skip("%s", why);
}

/* A 64 MiB ext4 image on a loop device, mounted on a fresh directory; no
 * blocks reserved for root (-m 0), so the free space the test leaves is
 * all root can write. */
static int setup(void **s)
{
    const char *t = getenv("TMPDIR");
    snprintf(image, sizeof(image), "%s/thaw-enospc-img.XXXXXX", t && *t ? t : "/tmp");
    int fd = mkstemp(image);
    if (fd < 0 || ftruncate(fd, 64 * MiB) != 0) {
        image[0] = 0;
        skip_setup("cannot create the file system image under $TMPDIR or /tmp");
    }
    close(fd);
    char cmd[8400], line[256];
    snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F -b 4096 -m 0 %s 2>&1", image);
    if (run(cmd, line, sizeof(line)) != 0)
        skip_setup("mkfs.ext4 (e2fsprogs) failed or is missing");
    snprintf(cmd, sizeof(cmd), "losetup --find --show %s 2>/dev/null", image);
    if (run(cmd, loopdev, sizeof(loopdev)) != 0 || strncmp(loopdev, "/dev/", 5) != 0) {
        loopdev[0] = 0;
        skip_setup("no loop device (losetup --find failed: no /dev/loop-control here?)");
    }
    snprintf(mnt, sizeof(mnt), "%s/thaw-enospc-mnt.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(mnt)) {
        mnt[0] = 0;
        skip_setup("cannot create a mount point");
    }
    if (mount(loopdev, mnt, "ext4", 0, NULL) != 0)
        skip_setup("cannot mount the ext4 image (mount(2) refused)");
    mounted = true;
    char store[4200];
    snprintf(store, sizeof(store), "%s/store", mnt);
    if (mkdir(store, 0700) != 0)
        return -1;
    uint32_t mem_align = 0;
    align = st_dio_align(store, &mem_align);
    if (align)
        printf("# %s on %s: ext4, DIO alignment %u/%u\n", mnt, loopdev, align, mem_align);
    else
        printf("# note: ext4 on %s reports no DIO alignment: the O_DIRECT case is skipped\n",
               loopdev);
    return 0;
}

int main(void)
{
    thaw_test_require_root();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enospc_buffered_head),
        cmocka_unit_test(test_enospc_direct),
        cmocka_unit_test(test_enospc_direct_no_uring),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
