// SPDX-License-Identifier: Apache-2.0
/* Killing a process tree from /proc (proctree.h). */
#include "common/proctree.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"

/* The parent of pid per /proc, or -1 if it is gone or a zombie (already dead). */
static pid_t live_parent_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* The name may hold anything, spaces and ')' too, but ends at the last ')'. */
    const char *p = strrchr(buf, ')');
    char state;
    int ppid;
    if (!p || sscanf(p + 1, " %c %d", &state, &ppid) != 2 || state == 'Z' || state == 'X')
        return -1;
    return (pid_t)ppid;
}

/* One pass below parent: the children of each of its threads, then theirs. */
static unsigned kill_below(pid_t parent)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)parent);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    unsigned n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char cpath[320];
        snprintf(cpath, sizeof(cpath), "/proc/%d/task/%s/children", (int)parent, de->d_name);
        FILE *f = fopen(cpath, "re");
        int child;
        while (f && fscanf(f, "%d", &child) == 1) {
            int pfd = (int)syscall(SYS_pidfd_open, child, 0);
            if (pfd < 0)
                continue;
            if (live_parent_of(child) == parent) {
                syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
                n++;
                n += kill_below(child); /* its own, while they are still listed under it */
            }
            close(pfd);
        }
        if (f)
            fclose(f);
    }
    closedir(d);
    return n;
}

unsigned thaw_kill_descendants(pid_t root, int max_passes)
{
    unsigned total = 0;
    for (int pass = 0; pass < max_passes; pass++) {
        unsigned n = kill_below(root);
        if (n == 0)
            break;
        total += n;
        /* SIGKILL takes effect when the target next runs: give the ones just
         * signalled a moment to die, or the next pass finds them again. */
        usleep(1000);
    }
    return total;
}
