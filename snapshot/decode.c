// SPDX-License-Identifier: Apache-2.0
/*
 * Whole-image decoding for the eager engine and the shared base: every
 * stored chunk read, verified and inflated into place, spread over a few
 * threads (each with its own scratch buffer) that take chunks from a shared
 * counter.  The first error stops everyone and is the one reported.
 */
#include "snapshot/snap-int.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

struct decode_job {
    const snap_t *snap;
    char *const *bases;
    atomic_uint_fast64_t next;
    atomic_bool failed;
    _Atomic uint64_t bytes_read, bytes_installed, zero;
    pthread_mutex_t err_lock;
    thaw_err_t err;
    int rc;
};

static void decode_range(struct decode_job *j)
{
    const snap_t *s = j->snap;
    char *scratch = malloc(s->chunk_size);
    thaw_err_t err;
    int rc = scratch ? 0 : -ENOMEM;
    if (!scratch)
        thaw_err_sys(&err, ENOMEM, "snapshot '%s': decode", s->dir);
    size_t ri = 0;
    uint64_t idx;
    while (rc == 0 && !atomic_load(&j->failed) &&
           (idx = atomic_fetch_add(&j->next, 1)) < s->nchunks) {
        const struct snap__chunk_entry *e = &s->table[idx];
        if (e->kind == SNAP__CHUNK_ZERO) {
            atomic_fetch_add(&j->zero, 1);
            continue; /* fresh anonymous memory and memfd holes read as zero */
        }
        /* Chunks are taken in increasing order per thread: the region
         * cursor only moves forward. */
        while (idx >= s->regions[ri].first_chunk + s->regions[ri].nchunks)
            ri++;
        while (idx < s->regions[ri].first_chunk)
            ri--;
        char *dst = j->bases[ri] + (idx - s->regions[ri].first_chunk) * s->chunk_size;
        rc = snap__chunk_read(s, idx, dst, scratch, &err);
        if (rc == 0) {
            atomic_fetch_add(&j->bytes_read, e->stored_len);
            atomic_fetch_add(&j->bytes_installed, e->raw_len);
        }
    }
    if (rc < 0) {
        pthread_mutex_lock(&j->err_lock);
        if (!atomic_exchange(&j->failed, true)) {
            j->err = err;
            j->rc = rc;
        }
        pthread_mutex_unlock(&j->err_lock);
    }
    free(scratch);
}

static void *decode_thread(void *arg)
{
    decode_range(arg);
    return NULL;
}

unsigned snap__default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 4 ? 4 : (unsigned)n;
}

int snap__decode_all(const snap_t *snap, char *const *bases, unsigned threads,
                     snap__decode_stats_t *stats, thaw_err_t *err)
{
    struct decode_job j = {.snap = snap, .bases = bases};
    pthread_mutex_init(&j.err_lock, NULL);
    if (threads > SNAP_MAX_THREADS)
        threads = SNAP_MAX_THREADS;
    pthread_t tids[SNAP_MAX_THREADS];
    unsigned n = 0;
    for (unsigned i = 1; i < threads && (uint64_t)i < snap->nchunks; i++) {
        if (pthread_create(&tids[n], NULL, decode_thread, &j) != 0)
            break; /* fewer helpers: slower, not wrong */
        n++;
    }
    decode_range(&j);
    for (unsigned i = 0; i < n; i++)
        pthread_join(tids[i], NULL);
    pthread_mutex_destroy(&j.err_lock);
    if (stats) {
        stats->bytes_read = atomic_load(&j.bytes_read);
        stats->bytes_installed = atomic_load(&j.bytes_installed);
        stats->chunks_zero = atomic_load(&j.zero);
    }
    if (atomic_load(&j.failed)) {
        if (err)
            *err = j.err;
        return j.rc;
    }
    return 0;
}
