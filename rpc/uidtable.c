// SPDX-License-Identifier: Apache-2.0
/*
 * Blocking requests per uid: how many each uid has in flight, for
 * --max-inflight-per-uid, and the queues in which they wait for a worker
 * thread.
 *
 * The cap: without it one uid could open several connections and hold every
 * worker thread, so that other uids' blocking requests wait behind it.  The
 * count is kept across all of a uid's connections in a small hash keyed by
 * uid; an entry lives only while that uid has work in flight, so the table
 * holds at most as many entries as there are requests in flight and usually
 * a handful.
 *
 * The queues: the cap alone leaves several uids together free to fill the
 * pool, and libuv's own queue is one FIFO, where a uid that queued fifty
 * requests makes the next uid wait for all fifty.  So dispatch.c gives libuv
 * no more than it has threads and parks the rest here, one FIFO per uid, and
 * each freed thread goes to the next uid in a round (a uid with waiting work
 * is in the round once): a uid waits for at most one request of each other
 * waiting uid, however many they queued.
 *
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

/* The round of uids with waiting work: e joins at its end ... */
static void round_append(rpc_server_t *srv, rpc_uid_t *e)
{
    e->rnext = NULL;
    if (srv->round_tail)
        srv->round_tail->rnext = e;
    else
        srv->round_head = e;
    srv->round_tail = e;
}

/* ... and leaves it (O(1) for the head, where it usually is). */
static void round_remove(rpc_server_t *srv, rpc_uid_t *e)
{
    rpc_uid_t *prev = NULL;
    for (rpc_uid_t *u = srv->round_head; u && u != e; u = u->rnext)
        prev = u;
    if (prev)
        prev->rnext = e->rnext;
    else
        srv->round_head = e->rnext;
    if (srv->round_tail == e)
        srv->round_tail = prev;
    e->rnext = NULL;
}

void rpc__uid_enqueue(rpc_server_t *srv, rpc_req_t *req)
{
    rpc_uid_t *e = req->uid_slot;
    req->queued = true;
    req->qnext = NULL;
    srv->queued++;
    srv->queued_total++;
    if (e->qtail) {
        e->qtail->qnext = req; /* e is in the round already */
    } else {
        e->qhead = req;
        round_append(srv, e);
    }
    e->qtail = req;
}

void rpc__uid_unqueue(rpc_server_t *srv, rpc_req_t *req)
{
    rpc_uid_t *e = req->uid_slot;
    rpc_req_t *prev = NULL;
    for (rpc_req_t *r = e->qhead; r && r != req; r = r->qnext)
        prev = r;
    if (prev)
        prev->qnext = req->qnext;
    else
        e->qhead = req->qnext;
    if (e->qtail == req)
        e->qtail = prev;
    req->queued = false;
    req->qnext = NULL;
    srv->queued--;
    if (!e->qhead)
        round_remove(srv, e);
}

rpc_req_t *rpc__uid_dequeue(rpc_server_t *srv)
{
    rpc_uid_t *e = srv->round_head;
    if (!e)
        return NULL;
    rpc_req_t *req = e->qhead;
    rpc__uid_unqueue(srv, req); /* e leaves the round if that was its last */
    if (e->qhead) {
        /* It had its turn: to the end of the round. */
        round_remove(srv, e);
        round_append(srv, e);
    }
    return req;
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
