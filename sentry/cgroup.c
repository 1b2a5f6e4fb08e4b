// SPDX-License-Identifier: Apache-2.0
/*
 * A sandbox's cgroup: memory, pids and CPU share.  cgroup v2 where the host
 * has a unified hierarchy with those controllers at /sys/fs/cgroup; v1
 * (one directory per controller under /sys/fs/cgroup/NAME) where that is what
 * the host has.  Sandboxes live under a "thaw-sentry" parent in each
 * hierarchy.  Processes are killed through the pid namespace (sentry.c);
 * destroy here only sweeps stragglers and removes the directories.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "sentry/internal.h"

#define CG_ROOT   "/sys/fs/cgroup"
#define CG_PARENT "thaw-sentry"

static int write_file(const char *dir, const char *file, const char *val)
{
    char p[SENTRY_PATH_MAX + 64];
    snprintf(p, sizeof(p), "%s/%s", dir, file);
    _cleanup_close_ int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t n = strlen(val);
    if (write(fd, val, n) != (ssize_t)n)
        return errno ? -errno : -EIO;
    return 0;
}

static int mkdir_p1(const char *p)
{
    if (mkdir(p, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static bool is_v2(void)
{
    char buf[256] = "";
    _cleanup_close_ int fd = open(CG_ROOT "/cgroup.controllers", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return strstr(buf, "memory") && strstr(buf, "pids");
}

static int create_v2(sentry_cgroup_t *cg, const char *name, const sentry_limits_t *lim,
                     thaw_err_t *err)
{
    cg->version = 2;
    int rc;
    /* Controllers must be enabled on every level above the leaf; memory
     * and pids are required, cpu is used when the host offers it. */
    if ((rc = write_file(CG_ROOT, "cgroup.subtree_control", "+memory +pids")) < 0)
        return thaw_err_sys(err, -rc, "cgroup v2: enable memory and pids in " CG_ROOT);
    (void)write_file(CG_ROOT, "cgroup.subtree_control", "+cpu");
    if ((rc = mkdir_p1(CG_ROOT "/" CG_PARENT)) < 0)
        return thaw_err_sys(err, -rc, "cgroup v2: mkdir " CG_ROOT "/" CG_PARENT);
    if ((rc = write_file(CG_ROOT "/" CG_PARENT, "cgroup.subtree_control", "+memory +pids")) < 0)
        return thaw_err_sys(err, -rc, "cgroup v2: enable memory and pids in " CG_PARENT);
    (void)write_file(CG_ROOT "/" CG_PARENT, "cgroup.subtree_control", "+cpu");
    snprintf(cg->ctrl[0], sizeof(cg->ctrl[0]), "unified");
    snprintf(cg->path[0], sizeof(cg->path[0]), CG_ROOT "/" CG_PARENT "/%s", name);
    if (mkdir(cg->path[0], 0755) < 0 &&
        (errno != EEXIST || rmdir(cg->path[0]) < 0 || mkdir(cg->path[0], 0755) < 0))
        return thaw_err_sys(err, errno, "cgroup v2: mkdir %s", cg->path[0]);
    cg->n = 1;
    char v[64];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)lim->memory_bytes);
    if ((rc = write_file(cg->path[0], "memory.max", v)) < 0)
        return thaw_err_sys(err, -rc, "cgroup v2: %s/memory.max", cg->path[0]);
    (void)write_file(cg->path[0], "memory.swap.max", "0"); /* absent without swap accounting */
    snprintf(v, sizeof(v), "%u", lim->pids_max);
    if ((rc = write_file(cg->path[0], "pids.max", v)) < 0)
        return thaw_err_sys(err, -rc, "cgroup v2: %s/pids.max", cg->path[0]);
    /* v1 shares [2, 262144] onto v2 weight [1, 10000], as runc converts. */
    unsigned long long w = 1 + ((unsigned long long)(lim->cpu_shares - 2) * 9999) / 262142;
    snprintf(v, sizeof(v), "%llu", w);
    if ((rc = write_file(cg->path[0], "cpu.weight", v)) < 0 && rc != -ENOENT)
        return thaw_err_sys(err, -rc, "cgroup v2: %s/cpu.weight", cg->path[0]);
    return 0;
}

static int create_v1(sentry_cgroup_t *cg, const char *name, const sentry_limits_t *lim,
                     thaw_err_t *err)
{
    static const char *const ctrls[] = {"memory", "pids", "cpu"};
    cg->version = 1;
    for (size_t i = 0; i < THAW_ARRAY_SIZE(ctrls); i++) {
        char parent[256];
        snprintf(parent, sizeof(parent), CG_ROOT "/%s", ctrls[i]);
        struct stat st;
        if (stat(parent, &st) < 0)
            return thaw_err_sys(err, errno, "cgroup v1: controller %s not mounted at %s", ctrls[i],
                                parent);
        snprintf(parent, sizeof(parent), CG_ROOT "/%s/" CG_PARENT, ctrls[i]);
        int rc = mkdir_p1(parent);
        if (rc < 0)
            return thaw_err_sys(err, -rc, "cgroup v1: mkdir %s", parent);
        snprintf(cg->ctrl[cg->n], sizeof(cg->ctrl[0]), "%s", ctrls[i]);
        snprintf(cg->path[cg->n], sizeof(cg->path[0]), "%s/%s", parent, name);
        /* A directory left by a thawd that died with this pid: empty it. */
        if (mkdir(cg->path[cg->n], 0755) < 0 &&
            (errno != EEXIST || rmdir(cg->path[cg->n]) < 0 || mkdir(cg->path[cg->n], 0755) < 0))
            return thaw_err_sys(err, errno, "cgroup v1: mkdir %s", cg->path[cg->n]);
        const char *dir = cg->path[cg->n];
        cg->n++;
        char v[64];
        if (!strcmp(ctrls[i], "memory")) {
            snprintf(v, sizeof(v), "%llu", (unsigned long long)lim->memory_bytes);
            if ((rc = write_file(dir, "memory.limit_in_bytes", v)) < 0)
                return thaw_err_sys(err, -rc, "cgroup v1: %s/memory.limit_in_bytes", dir);
            /* memory+swap: present only with swap accounting; then cap it too
             * so a bomb cannot spill into swap. */
            (void)write_file(dir, "memory.memsw.limit_in_bytes", v);
            (void)write_file(dir, "memory.swappiness", "0");
        } else if (!strcmp(ctrls[i], "pids")) {
            snprintf(v, sizeof(v), "%u", lim->pids_max);
            if ((rc = write_file(dir, "pids.max", v)) < 0)
                return thaw_err_sys(err, -rc, "cgroup v1: %s/pids.max", dir);
        } else {
            snprintf(v, sizeof(v), "%u", lim->cpu_shares);
            if ((rc = write_file(dir, "cpu.shares", v)) < 0)
                return thaw_err_sys(err, -rc, "cgroup v1: %s/cpu.shares", dir);
        }
    }
    return 0;
}

int sentry__cgroup_create(sentry_cgroup_t *cg, const char *name, const sentry_limits_t *lim,
                          thaw_err_t *err)
{
    memset(cg, 0, sizeof(*cg));
    int rc = is_v2() ? create_v2(cg, name, lim, err) : create_v1(cg, name, lim, err);
    if (rc < 0)
        sentry__cgroup_destroy(cg);
    return rc;
}

int sentry__cgroup_attach(const sentry_cgroup_t *cg, pid_t pid, thaw_err_t *err)
{
    char v[32];
    snprintf(v, sizeof(v), "%d", (int)pid);
    for (unsigned i = 0; i < cg->n; i++) {
        int rc = write_file(cg->path[i], "cgroup.procs", v);
        if (rc < 0)
            return thaw_err_sys(err, -rc, "cgroup: add pid %d to %s", (int)pid, cg->path[i]);
    }
    return 0;
}

/* SIGKILL every pid listed in dir/cgroup.procs; returns how many were listed. */
static int kill_listed(const char *dir)
{
    char p[SENTRY_PATH_MAX + 32];
    snprintf(p, sizeof(p), "%s/cgroup.procs", dir);
    _cleanup_fclose_ FILE *f = fopen(p, "re");
    if (!f)
        return 0;
    int n = 0, pid;
    while (fscanf(f, "%d", &pid) == 1) {
        if (pid > 0)
            kill(pid, SIGKILL);
        n++;
    }
    return n;
}

void sentry__cgroup_destroy(sentry_cgroup_t *cg)
{
    for (unsigned i = 0; i < cg->n; i++) {
        if (!cg->path[i][0])
            continue;
        /* v2: one write kills the whole cgroup; v1: sweep the list. */
        if (cg->version == 2)
            (void)write_file(cg->path[i], "cgroup.kill", "1");
        for (int tries = 0; tries < 2000; tries++) {
            if (rmdir(cg->path[i]) == 0 || errno == ENOENT)
                break;
            if (errno != EBUSY) {
                thaw_warn("sentry", "cgroup_rmdir", "path=%s errno=%d", cg->path[i], errno);
                break;
            }
            kill_listed(cg->path[i]);
            struct timespec ts = {0, 500 * 1000};
            nanosleep(&ts, NULL);
        }
        cg->path[i][0] = '\0';
    }
    cg->n = 0;
}

/* One hierarchy's parent directory: remove sandboxes of dead thawds. */
static unsigned sweep_dir(const char *parent)
{
    DIR *d = opendir(parent);
    if (!d)
        return 0;
    unsigned n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        int owner = 0;
        if (sscanf(de->d_name, "sb-%d-", &owner) != 1 || owner <= 0)
            continue;
        if (kill(owner, 0) == 0 || errno != ESRCH)
            continue; /* its thawd still runs (or we cannot tell) */
        sentry_cgroup_t cg = {.version = 1, .n = 1};
        snprintf(cg.path[0], sizeof(cg.path[0]), "%s/%s", parent, de->d_name);
        /* SIGKILL to each listed process; PID 1 takes its namespace along. */
        kill_listed(cg.path[0]);
        sentry__cgroup_destroy(&cg);
        n++;
    }
    closedir(d);
    return n;
}

unsigned sentry__cgroup_sweep(void)
{
    unsigned n = 0;
    if (is_v2()) {
        n += sweep_dir(CG_ROOT "/" CG_PARENT);
    } else {
        n += sweep_dir(CG_ROOT "/pids/" CG_PARENT);
        n += sweep_dir(CG_ROOT "/memory/" CG_PARENT);
        n += sweep_dir(CG_ROOT "/cpu/" CG_PARENT);
    }
    return n;
}
