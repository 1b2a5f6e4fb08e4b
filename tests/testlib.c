// SPDX-License-Identifier: Apache-2.0
/* Helpers shared by the test binaries; see testlib.h. */
#include "testlib.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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
 * that counted them would fail at random on a loaded machine.
 */
static bool kernel_worker(const char *tid)
{
    char path[320], comm[32] = "";
    snprintf(path, sizeof(path), "/proc/self/task/%s/comm", tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool w = fgets(comm, sizeof(comm), f) &&
             (strncmp(comm, "iou-", 4) == 0 || strncmp(comm, "kvm-", 4) == 0);
    fclose(f);
    return w;
}

int thaw_test_count_threads(void)
{
    return count_entries("/proc/self/task", kernel_worker);
}
