// SPDX-License-Identifier: Apache-2.0
/*
 * Killing a process tree from /proc (proctree.h).  A pid number is only
 * trusted while a pidfd pins its process: each listed child is opened as a
 * pidfd and as a /proc/PID directory, and used only if the pidfd shows it
 * alive after the directory was opened (then both name the same process,
 * and a /proc directory fd never follows a reused pid).  Its state, its
 * parent and its own children are read through that directory.
 */
#include "common/proctree.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"

/* Children listed per process per pass, and how deep one pass goes: the
 * rest are found by later passes, as the killed move up to the subreaper. */
#define PROCTREE_FANOUT 256
#define PROCTREE_DEPTH  16

/* The parent named in the stat file of /proc directory procfd, or -1. */
static pid_t parent_at(int procfd)
{
    char buf[512];
    _cleanup_close_ int fd = openat(procfd, "stat", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* The name may hold anything, spaces and ')' too, but ends at the last ')'. */
    const char *p = strrchr(buf, ')');
    int ppid;
    return p && sscanf(p + 1, " %*c %d", &ppid) == 1 ? (pid_t)ppid : -1;
}

/* The children of every thread of /proc directory procfd, at most max. */
static int children_at(int procfd, pid_t *out, int max)
{
    int tfd = openat(procfd, "task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = tfd >= 0 ? fdopendir(tfd) : NULL;
    if (!d) {
        if (tfd >= 0)
            close(tfd);
        return 0;
    }
    int n = 0;
    struct dirent *de;
    while (n < max && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char rel[300];
        snprintf(rel, sizeof(rel), "%s/children", de->d_name);
        int cfd = openat(dirfd(d), rel, O_RDONLY | O_CLOEXEC);
        FILE *f = cfd >= 0 ? fdopen(cfd, "re") : NULL;
        if (!f && cfd >= 0)
            close(cfd);
        int pid;
        while (f && n < max && fscanf(f, "%d", &pid) == 1)
            out[n++] = pid;
        if (f)
            fclose(f);
    }
    closedir(d);
    return n;
}

static unsigned kill_below(int procfd, pid_t parent, int depth);

/* Kill one listed child of parent, then what is below it; how many were alive. */
static unsigned kill_child(pid_t parent, pid_t child, int depth)
{
    _cleanup_close_ int pfd = (int)syscall(SYS_pidfd_open, child, 0);
    if (pfd < 0)
        return 0; /* gone already */
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d", (int)child);
    _cleanup_close_ int procfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    /* The pidfd turns readable once the whole process has exited; a zombie
     * leader whose other threads still run is alive, and is killed too. */
    struct pollfd p = {.fd = pfd, .events = POLLIN};
    bool alive = poll(&p, 1, 0) == 0;
    if (procfd < 0 || !alive || parent_at(procfd) != parent)
        return 0;
    syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
    /* Its own children, while they are still listed under it. */
    return 1 + (depth < PROCTREE_DEPTH ? kill_below(procfd, child, depth + 1) : 0);
}

static unsigned kill_below(int procfd, pid_t parent, int depth)
{
    pid_t kids[PROCTREE_FANOUT];
    int n = children_at(procfd, kids, PROCTREE_FANOUT);
    unsigned killed = 0;
    for (int i = 0; i < n; i++)
        killed += kill_child(parent, kids[i], depth);
    return killed;
}

unsigned thaw_kill_descendants(pid_t root, int max_passes)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d", (int)root);
    _cleanup_close_ int procfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (procfd < 0)
        return 0;
    unsigned total = 0;
    for (int pass = 0; pass < max_passes; pass++) {
        unsigned n = kill_below(procfd, root, 0);
        if (n == 0)
            break;
        total += n;
        /* SIGKILL takes effect when the target next runs: give the ones just
         * signalled a moment to die, or the next pass finds them again. */
        usleep(1000);
    }
    return total;
}
