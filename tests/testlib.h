/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by every test binary: the skip convention (exit 77 with one line
 * saying why, which meson reports as SKIP) and small helpers.
 */
#ifndef THAW_TESTS_TESTLIB_H
#define THAW_TESTS_TESTLIB_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#define THAW_TEST_SKIP 77

/* Print why and exit 77: the test cannot run on this machine. */
#define thaw_test_skip(...)                                                                        \
    do {                                                                                           \
        printf("SKIP: ");                                                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
        exit(THAW_TEST_SKIP);                                                                      \
    } while (0)

static inline void thaw_test_require_root(void)
{
    if (geteuid() != 0)
        thaw_test_skip("needs root (euid is %d)", (int)geteuid());
}

static inline void thaw_test_require_kvm(void)
{
    if (access("/dev/kvm", R_OK | W_OK) != 0)
        thaw_test_skip("needs read-write /dev/kvm");
}

/* Number of open descriptors of this process (leak checks). */
int thaw_test_count_fds(void);

/* The ids of this process's threads (leak checks), the kernel's own
 * workers (io_uring, KVM) aside. */
#define THAW_TEST_MAX_THREADS 512
typedef struct {
    int n;
    pid_t tid[THAW_TEST_MAX_THREADS];
} thaw_test_threads_t;
void thaw_test_threads_now(thaw_test_threads_t *t);

/* How many threads run now that were not in before: as soon as that is
 * want, or after two seconds whatever it is then (a joined thread can take
 * a moment to leave the list; a leaked one stays). */
int thaw_test_threads_new(const thaw_test_threads_t *before, int want);

#endif
