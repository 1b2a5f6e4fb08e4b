// SPDX-License-Identifier: Apache-2.0
/*
 * The table of sandboxes handed to clients, keyed by an unguessable id.
 * An id is 128 random bits from getrandom, and every lookup also matches
 * the caller's uid: a guessed or leaked id of another user is "not found",
 * the same answer as an id that never existed, so ids reveal nothing.
 * A sandbox in use by a request is released only when that request ends.
 * Loop thread only.
 */
#include "rpc/rpc-internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/clock.h"
#include "common/log.h"

static unsigned bucket_of(const char *id)
{
    /* FNV-1a: the ids are random already; this only spreads them. */
    uint32_t h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h % RPC_SB_BUCKETS;
}

rpc_sb_t *rpc__sb_add(rpc_server_t *srv, rpc_conn_t *c, pool_sandbox_t *sb, uint64_t lease_s,
                      bool hit)
{
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return NULL;
    rpc_sb_t *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    strcpy(e->id, "sb-");
    for (int i = 0; i < 16; i++)
        snprintf(e->id + 3 + i * 2, 3, "%02x", rnd[i]);
    e->uid = c->uid;
    e->conn = c;
    e->sb = sb;
    e->hit = hit;
    e->acquired_ns = thaw_now_ns();
    e->lease_until = lease_s ? e->acquired_ns + lease_s * 1000000000ull : 0;
    unsigned b = bucket_of(e->id);
    e->hnext = srv->sbs[b];
    srv->sbs[b] = e;
    srv->nsbs++;
    return e;
}

rpc_sb_t *rpc__sb_find(rpc_server_t *srv, const char *id, uid_t uid)
{
    for (rpc_sb_t *e = srv->sbs[bucket_of(id)]; e; e = e->hnext)
        if (!strcmp(e->id, id) && e->uid == uid && !e->released)
            return e;
    return NULL;
}

static void unlink_free(rpc_server_t *srv, rpc_sb_t *e)
{
    for (rpc_sb_t **pp = &srv->sbs[bucket_of(e->id)]; *pp; pp = &(*pp)->hnext)
        if (*pp == e) {
            *pp = e->hnext;
            break;
        }
    srv->nsbs--;
    pool_release(srv->pool, e->sb); /* queues the destroy: cheap on the loop thread */
    free(e);
}

void rpc__sb_release(rpc_server_t *srv, rpc_sb_t *e)
{
    e->released = true;
    e->conn = NULL;
    if (e->busy == 0)
        unlink_free(srv, e);
}

void rpc__sb_put(rpc_server_t *srv, rpc_sb_t *e)
{
    if (--e->busy == 0 && e->released)
        unlink_free(srv, e);
}

void rpc__sb_foreach(rpc_server_t *srv, void (*fn)(rpc_sb_t *e, void *ud), void *ud)
{
    for (unsigned b = 0; b < RPC_SB_BUCKETS; b++)
        for (rpc_sb_t *e = srv->sbs[b], *nx; e; e = nx) {
            nx = e->hnext;
            fn(e, ud);
        }
}

static void closed_one(rpc_sb_t *e, void *ud)
{
    struct {
        rpc_server_t *srv;
        rpc_conn_t *c;
    } *a = ud;
    if (e->conn != a->c)
        return;
    if (e->lease_until) {
        e->conn = NULL; /* survives its connection until the lease ends */
        return;
    }
    thaw_debug("rpc", "release_on_close", "sandbox=%s", e->id);
    rpc__sb_release(a->srv, e);
}

void rpc__sb_conn_closed(rpc_server_t *srv, rpc_conn_t *c)
{
    struct {
        rpc_server_t *srv;
        rpc_conn_t *c;
    } a = {srv, c};
    rpc__sb_foreach(srv, closed_one, &a);
}

static void expire_one(rpc_sb_t *e, void *ud)
{
    rpc_server_t *srv = ud;
    if (!e->released && e->lease_until && thaw_now_ns() >= e->lease_until) {
        thaw_info("rpc", "lease_expired", "sandbox=%s uid=%d", e->id, (int)e->uid);
        rpc__sb_release(srv, e);
    }
}

void rpc__sb_expire(rpc_server_t *srv)
{
    rpc__sb_foreach(srv, expire_one, srv);
}

static void release_one(rpc_sb_t *e, void *ud)
{
    if (!e->released)
        rpc__sb_release(ud, e);
}

void rpc__sb_release_all(rpc_server_t *srv)
{
    rpc__sb_foreach(srv, release_one, srv);
}
