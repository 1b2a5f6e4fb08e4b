// SPDX-License-Identifier: Apache-2.0
/*
 * A tier that is registered but cannot run here (not built, or missing what
 * it needs): it answers every op with the reason, so templates of it are
 * refused with a sentence a user can act on and server.info shows it.
 */
#include "pool/backends.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int un_available(void *ctx, char *why, size_t n)
{
    pool_unavailable_backend_t *b = ctx;
    snprintf(why, n, "%s", b->why);
    return -ENOTSUP;
}

static int un_prepare(void *ctx, const pool_tpl_def_t *def, const char *dir,
                      pool_progress_fn progress, void *pud, void **st, thaw_err_t *err)
{
    (void)def, (void)dir, (void)progress, (void)pud, (void)st;
    pool_unavailable_backend_t *b = ctx;
    return thaw_err_set(err, ENOTSUP, "tier '%s' is unavailable: %s", b->ops.tier, b->why);
}

static int un_open(void *ctx, const pool_tpl_def_t *def, const char *dir, void **st,
                   thaw_err_t *err)
{
    return un_prepare(ctx, def, dir, NULL, NULL, st, err);
}

static void un_close(void *ctx, void *st)
{
    (void)ctx, (void)st;
}

static int un_create(void *ctx, void *tpl, void **sb, int *fd, thaw_err_t *err)
{
    (void)tpl, (void)sb, (void)fd;
    pool_unavailable_backend_t *b = ctx;
    return thaw_err_set(err, ENOTSUP, "tier '%s' is unavailable: %s", b->ops.tier, b->why);
}

static void un_destroy(void *ctx, void *sb)
{
    (void)ctx, (void)sb;
}

static int un_alive(void *ctx, void *sb)
{
    (void)ctx, (void)sb;
    return 0;
}

void pool_unavailable_init(pool_unavailable_backend_t *b, const char *tier, const char *why)
{
    memset(b, 0, sizeof(*b));
    b->ops.tier = tier;
    b->ops.available = un_available;
    b->ops.tpl_prepare = un_prepare;
    b->ops.tpl_open = un_open;
    b->ops.tpl_close = un_close;
    b->ops.create = un_create;
    b->ops.destroy = un_destroy;
    b->ops.alive = un_alive;
    snprintf(b->why, sizeof(b->why), "%s", why);
}
