// SPDX-License-Identifier: Apache-2.0
/*
 * Path arithmetic for the supervisor's policy, done on strings only (no
 * syscalls, unit-tested).  These answer "which area does this name fall in";
 * resolving names to objects is the kernel's job (openat2 with
 * RESOLVE_IN_ROOT in handlers.c), and the decisions that matter for safety
 * are made again on the object actually opened.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/cleanup.h"
#include "sentry/internal.h"

int sentry__path_normalize(const char *in, char *out, size_t outlen)
{
    if (!in || in[0] != '/')
        return -EINVAL;
    if (outlen < 2)
        return -ENAMETOOLONG;
    size_t o = 0;
    out[o++] = '/';
    const char *p = in;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 1 && p[0] == '.') {
            /* nothing */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            /* Drop the last component; ".." of "/" is "/". */
            if (o > 1) {
                while (o > 1 && out[o - 1] != '/')
                    o--;
                if (o > 1)
                    o--;
            }
        } else {
            if (o > 1) {
                if (o + 1 >= outlen)
                    return -ENAMETOOLONG;
                out[o++] = '/';
            }
            if (o + n >= outlen)
                return -ENAMETOOLONG;
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
    }
    out[o] = '\0';
    return 0;
}

int sentry__path_join(const char *base, const char *rel, char *out, size_t outlen)
{
    if (rel[0] == '/')
        return sentry__path_normalize(rel, out, outlen);
    char buf[2 * SENTRY_PATH_MAX + 8];
    int n = snprintf(buf, sizeof(buf), "%s/%s", base, rel);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -ENAMETOOLONG;
    return sentry__path_normalize(buf, out, outlen);
}

bool sentry__path_under(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    if (n == 1 && prefix[0] == '/')
        return path[0] == '/';
    if (strncmp(path, prefix, n) != 0)
        return false;
    return path[n] == '\0' || path[n] == '/';
}

int sentry__path_proc_self(const char *in, int nspid, int nstid, char *out, size_t outlen)
{
    int n;
    if (sentry__path_under(in, "/proc/self"))
        n = snprintf(out, outlen, "/proc/%d%s", nspid, in + strlen("/proc/self"));
    else if (sentry__path_under(in, "/proc/thread-self"))
        n = snprintf(out, outlen, "/proc/%d/task/%d%s", nspid, nstid,
                     in + strlen("/proc/thread-self"));
    else
        n = snprintf(out, outlen, "%s", in);
    if (n < 0 || (size_t)n >= outlen)
        return -ENAMETOOLONG;
    return 0;
}

/* Writable: exactly the writable mounts (the tmpfs layers and the device
 * nodes), so the lexical check agrees with what the kernel allows.  /proc
 * is left to the kernel's own permission checks (the sandbox's procfs, no
 * capabilities). */
static const char *const builtin_writable[] = {
    "/tmp", "/work", "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/proc",
};

/* Hidden: kernel interfaces a sandbox has no business with (Docker masks the
 * same set with bind mounts). */
static const char *const builtin_hidden[] = {
    "/proc/kcore",     "/proc/kmsg",          "/proc/keys",
    "/proc/key-users", "/proc/timer_list",    "/proc/sched_debug",
    "/proc/acpi",      "/proc/scsi",          "/proc/sysrq-trigger",
    "/proc/kallsyms",  "/proc/latency_stats", "/proc/sys/kernel/core_pattern",
};

static int add_area(char (*arr)[SENTRY_PATH_MAX], unsigned *n, unsigned max, const char *p,
                    const char *what, thaw_err_t *err)
{
    if (*n >= max)
        return thaw_err_set(err, E2BIG, "too many %s paths (at most %u)", what, max);
    if (!p || p[0] != '/')
        return thaw_err_set(err, EINVAL, "%s path '%.200s': must be absolute", what, p ? p : "");
    if (sentry__path_normalize(p, arr[*n], SENTRY_PATH_MAX) < 0)
        return thaw_err_set(err, ENAMETOOLONG, "%s path '%.200s': too long", what, p);
    (*n)++;
    return 0;
}

int sentry__areas_init(sentry_areas_t *a, const sentry_config_t *cfg, thaw_err_t *err)
{
    memset(a, 0, sizeof(*a));
    unsigned maxw = THAW_ARRAY_SIZE(a->writable), maxh = THAW_ARRAY_SIZE(a->hidden);
    int rc;
    for (size_t i = 0; i < sizeof(builtin_writable) / sizeof(builtin_writable[0]); i++)
        if ((rc = add_area(a->writable, &a->n_writable, maxw, builtin_writable[i], "writable",
                           err)) < 0)
            return rc;
    for (size_t i = 0; i < sizeof(builtin_hidden) / sizeof(builtin_hidden[0]); i++)
        if ((rc = add_area(a->hidden, &a->n_hidden, maxh, builtin_hidden[i], "hidden", err)) < 0)
            return rc;
    if (cfg->n_hidden > SENTRY_MAX_AREAS)
        return thaw_err_set(err, E2BIG, "more than %d hidden paths", SENTRY_MAX_AREAS);
    a->custom_hidden = cfg->n_hidden > 0;
    for (unsigned i = 0; i < cfg->n_hidden; i++)
        if ((rc = add_area(a->hidden, &a->n_hidden, maxh, cfg->hidden[i], "hidden", err)) < 0)
            return rc;
    return 0;
}

bool sentry__areas_hidden(const sentry_areas_t *a, const char *path)
{
    for (unsigned i = 0; i < a->n_hidden; i++)
        if (sentry__path_under(path, a->hidden[i]))
            return true;
    return false;
}

bool sentry__areas_writable(const sentry_areas_t *a, const char *path)
{
    for (unsigned i = 0; i < a->n_writable; i++)
        if (sentry__path_under(path, a->writable[i]))
            return true;
    return false;
}
