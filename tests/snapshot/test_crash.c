// SPDX-License-Identifier: Apache-2.0
/*
 * Crash safety: a writer SIGKILLed at random points (fork, kill) never
 * leaves a directory that opens as a valid snapshot with wrong content.
 * The target name must hold the previous snapshot or the new one, whole;
 * a leftover temporary directory must fail to open or hold, whole, either
 * the new content or the previous snapshot it was swapped with.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/clock.h"
#include "snaptest.h"
#include "testlib.h"

#define ROUNDS 24

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

/* 1: opens and equals img; 0: does not open; fails the test if it opens
 * with other content. */
static int opens_as(const char *dir, const st_image_t *img, const st_image_t *alt)
{
    thaw_err_t err;
    snap_t *snap;
    if (snap_open(dir, &snap, &err) != 0)
        return 0;
    snap_mem_t *mem;
    if (snap_mem_attach(snap, SNAP_ENGINE_EAGER, NULL, &mem, &err) != 0)
        fail_msg("'%s' opens but does not restore: %s", dir, err.msg);
    int r = st_mem_equals(mem, img) == 0 ? 1 : alt && st_mem_equals(mem, alt) == 0 ? 2 : -1;
    snap_mem_destroy(mem);
    snap_close(snap);
    if (r < 0)
        fail_msg("'%s' opens as a valid snapshot with wrong content", dir);
    return r;
}

/*
 * Check and remove temporary directories a killed writer left: each either
 * does not open, or holds the new content (killed before the rename), or
 * holds the previous snapshot whole (killed after swapping it out with
 * RENAME_EXCHANGE, before removing it; the target then holds the new one).
 */
static int sweep_leftovers(const char *prefix, const st_image_t *newimg, const st_image_t *old,
                           bool target_is_new)
{
    DIR *d = opendir(root);
    assert_non_null(d);
    struct dirent *de;
    int n = 0;
    char path[8192];
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, prefix, strlen(prefix)) != 0 || !strstr(de->d_name, ".tmp."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", root, de->d_name);
        int r = opens_as(path, newimg, old);
        if (r == 2 && !target_is_new)
            fail_msg("'%s' holds the old snapshot but the target was not replaced", path);
        st_rmtree(path);
        n++;
    }
    closedir(d);
    return n;
}

static pid_t spawn_writer(const char *dir, const st_image_t *img)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        st_write(dir, img, 16384, 0, 2, NULL);
        _exit(0);
    }
    return pid;
}

static void test_writer_killed_at_random_points(void **state)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/crash", root);
    st_image_t cur, next;
    st_image_make(&cur, 1000, false);
    uint64_t t0 = thaw_now_ns();
    st_write(dir, &cur, 16384, 0, 2, NULL);
    uint64_t write_us = (thaw_now_ns() - t0) / 1000 + 1;
    srand((unsigned)time(NULL));
    int replaced = 0, kept = 0, leftovers = 0;
    for (int i = 1; i <= ROUNDS; i++) {
        st_image_make(&next, 1000 + (uint64_t)i, false);
        pid_t pid = spawn_writer(dir, &next);
        /* Anywhere from before the first write to just after the rename. */
        useconds_t delay = (useconds_t)((uint64_t)rand() % (write_us * 2 + 1));
        usleep(delay);
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        int r = opens_as(dir, &next, &cur);
        if (r == 0)
            fail_msg("round %d: the old snapshot vanished", i);
        if (WIFEXITED(status))
            assert_int_equal(r, 1); /* finished: must be the new one */
        leftovers += sweep_leftovers("crash", &next, &cur, r == 1);
        if (r == 1) {
            replaced++;
            st_image_free(&cur);
            cur = next;
        } else {
            kept++;
            st_image_free(&next);
        }
    }
    print_message("%d rounds: %d replaced, %d kept the old snapshot, %d leftovers checked\n",
                  ROUNDS, replaced, kept, leftovers);
    st_image_free(&cur);
}

/* With no previous snapshot the name is either absent or complete. */
static void test_first_write_killed(void **state)
{
    st_image_t img;
    st_image_make(&img, 2000, false);
    char probe_dir[4096];
    snprintf(probe_dir, sizeof(probe_dir), "%s/first-probe", root);
    uint64_t t0 = thaw_now_ns();
    st_write(probe_dir, &img, 16384, 0, 2, NULL);
    uint64_t write_us = (thaw_now_ns() - t0) / 1000 + 1;
    for (int i = 0; i < ROUNDS / 2; i++) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/first-%d", root, i);
        pid_t pid = spawn_writer(dir, &img);
        usleep((useconds_t)((uint64_t)rand() % (write_us * 2 + 1)));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        int r = opens_as(dir, &img, NULL);
        if (WIFEXITED(status))
            assert_int_equal(r, 1);
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "first-%d.tmp", i);
        sweep_leftovers(prefix, &img, NULL, r == 1);
    }
    st_image_free(&img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_killed_at_random_points),
        cmocka_unit_test(test_first_write_killed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
