// SPDX-License-Identifier: Apache-2.0
/* Helpers shared by the test binaries; see testlib.h. */
#include "testlib.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* Entries of a /proc directory, "." and ".." aside and those skip (may be
 * NULL) says to leave out; -1 if it cannot be read. */
static int count_entries(const char *dir, bool (*skip)(const char *name))
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && !(skip && skip(e->d_name)))
            n++;
    closedir(d);
    return n;
}

int thaw_test_count_fds(void)
{
    int n = count_entries("/proc/self/fd", NULL);
    return n < 0 ? -1 : n - 1; /* the directory's own descriptor */
}

/*
 * Threads the kernel runs on a process's behalf are listed among its tasks
 * but are not ours to leak: io_uring's workers ("iou-wrk-<tid>", started for
 * work a ring punts) and KVM's per-VM NX huge page recovery thread
 * ("kvm-nx-lpage-recovery", started by a VM's first KVM_RUN).  Both leave
 * on their own, some time after the ring or the VM is gone, so a leak check
 * that counted them would fail at random on a loaded machine.  A task whose
 * comm cannot be read has left since its directory was listed.
 */
static bool ours(pid_t tid)
{
    char path[64], comm[32] = "";
    snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool worker = fgets(comm, sizeof(comm), f) &&
                  (strncmp(comm, "iou-", 4) == 0 || strncmp(comm, "kvm-", 4) == 0);
    fclose(f);
    return !worker;
}

void thaw_test_threads_now(thaw_test_threads_t *t)
{
    t->n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) && t->n < THAW_TEST_MAX_THREADS) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid > 0 && ours(tid))
            t->tid[t->n++] = tid;
    }
    closedir(d);
}

static int count_new(const thaw_test_threads_t *before)
{
    thaw_test_threads_t now;
    thaw_test_threads_now(&now);
    int n = 0;
    for (int i = 0; i < now.n; i++) {
        bool seen = false;
        for (int j = 0; j < before->n && !seen; j++)
            seen = now.tid[i] == before->tid[j];
        n += !seen;
    }
    return n;
}

/*
 * pthread_join returns once the kernel has cleared the thread's tid, early
 * in the thread's exit (exit_mm); the task leaves /proc/self/task only when
 * it is released, later.  On a loaded machine a joined thread can be listed
 * in between (CI saw it), so a count taken once fails at random.  Comparing
 * thread ids keeps threads that were already leaving at the start out of
 * the sum, and waiting lets the ones joined since finish leaving: a leaked
 * thread stays, an exiting one is gone within milliseconds.
 */
int thaw_test_threads_new(const thaw_test_threads_t *before, int want)
{
    int n = count_new(before);
    for (int i = 0; i < 200 && n != want; i++) {
        usleep(10000);
        n = count_new(before);
    }
    return n;
}
