// SPDX-License-Identifier: Apache-2.0
/*
 * The sentry tier behind the pool's ops table.  A template is a root
 * directory: the default one is built once into the template's store
 * directory by sentry_template_build (host /usr read-only, busybox, the
 * agent); a user's `image` names an existing root instead.  Each sandbox is
 * one sentry_create; its agent channel goes to the pool, which talks to the
 * agent as for any tier.  Creating a sentry costs milliseconds, which is why
 * the pool keeps them ready like thawed VMs.
 */
#include "pool/backends.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "sentry/sentry.h"

struct pool_sentry_backend {
    sentry_supervisor_t *sup;
    char agent_path[POOL_PATH_MAX];
    char why[300];
};

typedef struct sentry_tpl {
    char root[POOL_PATH_MAX + 16];
    uint64_t memory_bytes;
} sentry_tpl_t;

pool_sentry_backend_t *pool_sentry_backend_new(const char *agent_path)
{
    pool_sentry_backend_t *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    snprintf(b->agent_path, sizeof(b->agent_path), "%s", agent_path);
    thaw_err_t err = {0};
    if (sentry_supervisor_create(NULL, &b->sup, &err) < 0) {
        snprintf(b->why, sizeof(b->why), "sentry supervisor: %s", thaw_err_msg(&err));
        b->sup = NULL;
        thaw_warn("pool", "sentry_unavailable", "msg=\"%s\"", b->why);
    }
    return b;
}

void pool_sentry_backend_free(pool_sentry_backend_t *b)
{
    if (!b)
        return;
    sentry_supervisor_destroy(b->sup);
    free(b);
}

static int sn_available(void *ctx, char *why, size_t n)
{
    pool_sentry_backend_t *b = ctx;
    if (!b->sup) {
        snprintf(why, n, "%s", b->why);
        return -ENOTSUP;
    }
    return 0;
}

static int tpl_root(const pool_tpl_def_t *def, const char *dir, sentry_tpl_t *t, thaw_err_t *err)
{
    if (def->image[0]) {
        struct stat st;
        if (stat(def->image, &st) < 0)
            return thaw_err_sys(err, errno, "sentry root '%s'", def->image);
        if (!S_ISDIR(st.st_mode))
            return thaw_err_set(err, ENOTDIR, "sentry root '%s': not a directory", def->image);
        snprintf(t->root, sizeof(t->root), "%s", def->image);
    } else {
        snprintf(t->root, sizeof(t->root), "%s/root", dir);
    }
    t->memory_bytes = (uint64_t)def->memory_mb << 20;
    return 0;
}

static int sn_prepare(void *ctx, const pool_tpl_def_t *def, const char *dir,
                      pool_progress_fn progress, void *pud, void **out, thaw_err_t *err)
{
    pool_sentry_backend_t *b = ctx;
    sentry_tpl_t *t = calloc(1, sizeof(*t));
    if (!t)
        return thaw_err_set(err, ENOMEM, "out of memory");
    int r = tpl_root(def, dir, t, err);
    if (r == 0 && !def->image[0]) {
        if (progress)
            progress(pud, "build-root", t->root);
        r = sentry_template_build(t->root, b->agent_path, NULL, err);
    }
    if (r < 0) {
        free(t);
        return r;
    }
    *out = t;
    return 0;
}

static int sn_open(void *ctx, const pool_tpl_def_t *def, const char *dir, void **out,
                   thaw_err_t *err)
{
    (void)ctx;
    sentry_tpl_t *t = calloc(1, sizeof(*t));
    if (!t)
        return thaw_err_set(err, ENOMEM, "out of memory");
    int r = tpl_root(def, dir, t, err);
    if (r == 0 && access(t->root, F_OK) < 0)
        r = thaw_err_sys(err, errno, "sentry root '%s'", t->root);
    if (r < 0) {
        free(t);
        return r;
    }
    *out = t;
    return 0;
}

static void sn_close(void *ctx, void *st)
{
    (void)ctx;
    free(st);
}

static int sn_create(void *ctx, void *tpl, void **out, int *agent_fd, thaw_err_t *err)
{
    pool_sentry_backend_t *b = ctx;
    sentry_tpl_t *t = tpl;
    sentry_config_t cfg = {.root = t->root, .memory_bytes = t->memory_bytes};
    sentry_t *s = NULL;
    int r = sentry_create(b->sup, &cfg, &s, err);
    if (r < 0)
        return r;
    int fd = sentry_take_agent_fd(s);
    if (fd < 0) {
        sentry_destroy(s);
        return thaw_err_set(err, EIO, "sentry: no agent channel");
    }
    *out = s;
    *agent_fd = fd;
    return 0;
}

static void sn_destroy(void *ctx, void *sb)
{
    (void)ctx;
    sentry_destroy(sb);
}

static int sn_alive(void *ctx, void *sb)
{
    (void)ctx;
    return sentry_alive(sb);
}

static int sn_pid(void *ctx, void *sb)
{
    (void)ctx;
    return sentry_pid(sb);
}

const pool_backend_ops_t pool_sentry_ops = {
    .tier = "sentry",
    .available = sn_available,
    .tpl_prepare = sn_prepare,
    .tpl_open = sn_open,
    .tpl_close = sn_close,
    .create = sn_create,
    .destroy = sn_destroy,
    .alive = sn_alive,
    .pid = sn_pid,
};
