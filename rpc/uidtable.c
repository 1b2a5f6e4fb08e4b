// SPDX-License-Identifier: Apache-2.0
/*
 * Blocking requests in flight per uid, for --max-inflight-per-uid: without
 * it one uid could open several connections and hold every worker thread,
 * so that other uids' blocking requests wait behind it.  The count is kept
 * across all of a uid's connections in a small hash keyed by uid; an entry
 * lives only while that uid has work in flight, so the table holds at most
 * as many entries as there are requests in flight and usually a handful.
 * Loop thread only, like everything that dispatch touches.
 */
#include "rpc/rpc-internal.h"

#include <errno.h>
#include <stdlib.h>

static unsigned bucket_of(uid_t uid)
{
    /* Knuth's multiplicative hash: consecutive uids land in different buckets. */
    return ((uint32_t)uid * 2654435761u) >> 26; /* top 6 bits: RPC_UID_BUCKETS 64 */
}

_Static_assert(RPC_UID_BUCKETS == 64, "bucket_of takes the top 6 bits");

static rpc_uid_t *find(const rpc_server_t *srv, uid_t uid)
{
    for (rpc_uid_t *e = srv->uids[bucket_of(uid)]; e; e = e->next)
        if (e->uid == uid)
            return e;
    return NULL;
}

int rpc__uid_take(rpc_server_t *srv, uid_t uid, unsigned cap, rpc_uid_t **out)
{
    rpc_uid_t *e = find(srv, uid);
    if (e && cap && e->inflight >= cap) {
        *out = e;
        return -EBUSY;
    }
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e)
            return -ENOMEM;
        e->uid = uid;
        unsigned b = bucket_of(uid);
        e->next = srv->uids[b];
        srv->uids[b] = e;
    }
    e->inflight++;
    *out = e;
    return 0;
}

void rpc__uid_put(rpc_server_t *srv, rpc_uid_t *e)
{
    if (--e->inflight > 0)
        return;
    rpc_uid_t **pp = &srv->uids[bucket_of(e->uid)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    free(e);
}

unsigned rpc__uid_inflight(const rpc_server_t *srv, uid_t uid)
{
    const rpc_uid_t *e = find(srv, uid);
    return e ? e->inflight : 0;
}

void rpc__uid_free_all(rpc_server_t *srv)
{
    for (unsigned b = 0; b < RPC_UID_BUCKETS; b++) {
        while (srv->uids[b]) {
            rpc_uid_t *e = srv->uids[b];
            srv->uids[b] = e->next;
            free(e);
        }
    }
}
