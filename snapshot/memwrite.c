// SPDX-License-Identifier: Apache-2.0
/*
 * memory.bin writer: cuts each region into chunks, classifies them (zero,
 * raw, lz4), checksums and compresses them on a small thread pool one batch
 * at a time, and appends the results in chunk order to the output stream
 * (memout.c), whose writes run while the next batch is compressed.  The
 * header and table go in last, so a file cut short by a crash never carries
 * a valid table.
 */
#include "snapshot/snap-int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/clock.h"
#include "common/crc32c.h"

/* Input bytes per batch; two batches are in memory at once.  Small, because
 * fresh memory is not free (about 5 us a page on the reference VM). */
#define BATCH_BYTES (4u << 20)

struct job {
    const char *src;
    uint32_t raw;
    uint32_t stored;
    uint32_t crc;
    uint8_t kind;
};

/* A batch of consecutive chunks and the space their lz4 output goes to. */
struct batch {
    struct job *jobs;
    char *out; /* n * chunk_size */
    size_t n;
    uint64_t base; /* index of the first chunk */
};

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    unsigned gen, active;
    bool quit;
    int level;
    uint32_t chunk_size;
    struct job *jobs; /* current batch */
    size_t njobs;
    char *out; /* njobs * chunk_size */
    atomic_size_t next;
};

static void run_batch(struct pool *p, void *state)
{
    size_t i;
    while ((i = atomic_fetch_add(&p->next, 1)) < p->njobs) {
        struct job *j = &p->jobs[i];
        if (snap__is_zero(j->src, j->raw)) {
            j->kind = SNAP__CHUNK_ZERO;
            j->stored = 0;
            j->crc = 0;
            continue;
        }
        j->crc = thaw_crc32c(0, j->src, j->raw);
        size_t s =
            snap__lz4_compress(state, p->level, j->src, j->raw, p->out + i * (size_t)p->chunk_size);
        j->kind = s ? SNAP__CHUNK_LZ4 : SNAP__CHUNK_RAW;
        j->stored = s ? (uint32_t)s : j->raw;
    }
}

static void *worker(void *arg)
{
    struct pool *p = arg;
    void *state = snap__lz4_state_new(p->level);
    unsigned seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->gen == seen)
            pthread_cond_wait(&p->cv_work, &p->mu);
        if (p->quit)
            break;
        seen = p->gen;
        if (!state) /* no state, no help: the caller's thread does the work */
            continue;
        p->active++;
        pthread_mutex_unlock(&p->mu);
        run_batch(p, state);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0)
            pthread_cond_broadcast(&p->cv_done);
    }
    pthread_mutex_unlock(&p->mu);
    free(state);
    return NULL;
}

static int pwritev_all(int fd, struct iovec *iov, int n, uint64_t off, thaw_err_t *err)
{
    while (n > 0) {
        int cnt = n > IOV_MAX ? IOV_MAX : n;
        ssize_t w = pwritev(fd, iov, cnt, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return thaw_err_sys(err, errno, SNAP_MEMORY_FILE ": write");
        off += (uint64_t)w;
        /* Skip what was written, possibly part of an iovec. */
        while (cnt > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
            cnt--;
        }
        if (w > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Where the next batch starts: region ri, chunk rc_chunk within it. */
struct cursor {
    size_t ri;
    uint64_t rc_chunk;
};

/* Describe the next n chunks (from chunk `base` on) as jobs of b. */
static void batch_fill(struct batch *b, const snap_t *layout, const snap_region_t *regions,
                       struct cursor *c, uint64_t base, size_t n)
{
    uint32_t cs = layout->chunk_size;
    b->base = base;
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        while (c->rc_chunk >= layout->regions[c->ri].nchunks) {
            c->ri++;
            c->rc_chunk = 0;
        }
        const struct snap__region *r = &layout->regions[c->ri];
        uint64_t off = c->rc_chunk * cs;
        uint64_t left = r->size - off;
        b->jobs[i] = (struct job){.src = (const char *)regions[c->ri].host + off,
                                  .raw = left < cs ? (uint32_t)left : cs};
        c->rc_chunk++;
    }
}

/* Hand batch b to the helpers; they start at once.  Only called while no
 * helper is active (the previous batch is finished). */
static void batch_start(struct pool *p, struct batch *b)
{
    pthread_mutex_lock(&p->mu);
    p->jobs = b->jobs;
    p->out = b->out;
    p->njobs = b->n;
    atomic_store(&p->next, 0);
    p->gen++;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
}

/* Take part in the current batch, then wait until every job is done. */
static void batch_finish(struct pool *p, void *state)
{
    run_batch(p, state);
    pthread_mutex_lock(&p->mu);
    while (p->active > 0)
        pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* Raw runs at least this long are written from the caller's memory (where
 * O_DIRECT may cost a few bytes of padding before them); shorter ones are
 * copied with the lz4 output around them. */
#define INPLACE_MIN (1u << 20)

/* Fill the table entries of a finished batch and append its data. */
static int batch_emit(const struct batch *b, uint32_t cs, struct snap__chunk_entry *table,
                      snap__out_t *os, snap_write_stats_t *stats, thaw_err_t *err)
{
    for (size_t i = 0; i < b->n;) {
        const struct job *j = &b->jobs[i];
        struct snap__chunk_entry *e = &table[b->base + i];
        e->raw_len = j->raw;
        e->kind = j->kind;
        e->crc32c = j->crc;
        e->stored_len = j->kind == SNAP__CHUNK_ZERO ? 0 : j->stored;
        if (stats)
            *(j->kind == SNAP__CHUNK_ZERO  ? &stats->chunks_zero
              : j->kind == SNAP__CHUNK_RAW ? &stats->chunks_raw
                                           : &stats->chunks_lz4) += 1;
        if (j->kind == SNAP__CHUNK_ZERO) {
            i++;
            continue;
        }
        if (j->kind == SNAP__CHUNK_LZ4) {
            int rc = snap__out_append(os, b->out + i * cs, j->stored, &e->offset, err);
            if (rc < 0)
                return rc;
            i++;
            continue;
        }
        /* A run of raw chunks adjacent in memory (the same region). */
        size_t k = i + 1, len = j->raw;
        while (k < b->n && b->jobs[k].kind == SNAP__CHUNK_RAW && b->jobs[k].src == j->src + len) {
            len += b->jobs[k].raw;
            k++;
        }
        uint64_t off;
        int rc = len >= INPLACE_MIN ? snap__out_append_inplace(os, j->src, len, &off, err)
                                    : snap__out_append(os, j->src, len, &off, err);
        if (rc < 0)
            return rc;
        for (size_t m = i; m < k; m++) {
            struct snap__chunk_entry *em = &table[b->base + m];
            if (m > i) { /* the first one was filled above */
                em->raw_len = b->jobs[m].raw;
                em->kind = SNAP__CHUNK_RAW;
                em->crc32c = b->jobs[m].crc;
                em->stored_len = b->jobs[m].raw;
                if (stats)
                    stats->chunks_raw++;
            }
            em->offset = off;
            off += b->jobs[m].raw;
        }
        i = k;
    }
    return 0;
}

int snap__memfile_write(int fd, const snap_t *layout, const snap_region_t *regions, int lz4_level,
                        unsigned threads, bool buffered, snap_write_stats_t *stats,
                        uint32_t *table_crc, uint64_t *file_size, thaw_err_t *err)
{
    uint32_t cs = layout->chunk_size;
    uint64_t nchunks = layout->nchunks;
    size_t table_bytes = nchunks * sizeof(struct snap__chunk_entry);
    uint64_t data_off = (sizeof(struct snap__mem_header) + table_bytes + SNAP_PAGE_SIZE - 1) &
                        ~(uint64_t)(SNAP_PAGE_SIZE - 1);
    size_t nb = BATCH_BYTES / cs;
    if (nb < (size_t)threads * 2)
        nb = (size_t)threads * 2;
    if (nb > nchunks)
        nb = nchunks ? nchunks : 1;

    _cleanup_free_ struct snap__chunk_entry *table = calloc(nchunks ? nchunks : 1, sizeof(*table));
    _cleanup_free_ struct job *jobs = calloc(2 * nb, sizeof(*jobs));
    /* The batches' output (8 MiB at the defaults) is mapped, not malloc'ed:
     * glibc serves a freed block this size from the calling thread's arena
     * next time (its mmap threshold grows to match) and keeps it, so a
     * daemon writing snapshots from several worker threads held one such
     * block per thread (the soak saw thawd grow from 6 to 103 MB). */
    _cleanup_munmap_ thaw_mapping_t outmap = {.addr = mmap(NULL, 2 * nb * (size_t)cs,
                                                           PROT_READ | PROT_WRITE,
                                                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                                              .len = 2 * nb * (size_t)cs};
    char *out = outmap.addr;
    _cleanup_free_ void *state = snap__lz4_state_new(lz4_level);
    if (!table || !jobs || out == MAP_FAILED || !state)
        return thaw_err_sys(err, ENOMEM, SNAP_MEMORY_FILE);
    /* Two batches: the helpers compress one while this thread appends the
     * other (and waits for the disk when the staging buffers are full). */
    struct batch bs[2] = {{.jobs = jobs, .out = out},
                          {.jobs = jobs + nb, .out = out + nb * (size_t)cs}};
    snap__out_t os;
    /* Memory that fits in the page-cache head never reaches O_DIRECT: lay
     * it out as the buffered writer does (no pads), byte for byte. */
    bool small = (uint64_t)nchunks * cs <= SNAP__OUT_DIRECT_AFTER;
    int rc = snap__out_init(&os, fd, data_off, buffered || small, err);
    if (rc < 0)
        return rc;

    struct pool p = {.level = lz4_level, .chunk_size = cs};
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv_work, NULL);
    pthread_cond_init(&p.cv_done, NULL);
    pthread_t tids[SNAP_MAX_THREADS];
    unsigned nthreads = 0;
    for (unsigned i = 1; i < threads; i++) {
        if (pthread_create(&tids[nthreads], NULL, worker, &p) != 0)
            break; /* fewer helpers only makes it slower */
        nthreads++;
    }

    uint64_t t0 = thaw_now_ns();
    struct cursor cur = {0};
    uint64_t base = 0;
    bool running = false;
    if (nchunks) {
        size_t n = nchunks < nb ? (size_t)nchunks : nb;
        batch_fill(&bs[0], layout, regions, &cur, 0, n);
        batch_start(&p, &bs[0]);
        base = n;
        running = true;
    }
    for (unsigned k = 0; running; k ^= 1) {
        batch_finish(&p, state);
        running = false;
        if (base < nchunks) {
            size_t n = nchunks - base < nb ? (size_t)(nchunks - base) : nb;
            batch_fill(&bs[k ^ 1], layout, regions, &cur, base, n);
            batch_start(&p, &bs[k ^ 1]);
            base += n;
            running = true;
        }
        if ((rc = batch_emit(&bs[k], cs, table, &os, stats, err)) < 0)
            break;
    }
    if (running) /* stopped by an error: the helpers may still use the batch */
        batch_finish(&p, state);
    pthread_mutex_lock(&p.mu);
    p.quit = true;
    pthread_cond_broadcast(&p.cv_work);
    pthread_mutex_unlock(&p.mu);
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(tids[i], NULL);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv_work);
    pthread_cond_destroy(&p.cv_done);
    uint64_t cursor = data_off; /* the file's end */
    if (rc == 0)
        rc = snap__out_finish(&os, &cursor, err);
    snap__out_destroy(&os);
    if (rc < 0)
        return rc;

    struct snap__mem_header h = {
        .version = SNAP__MEM_VERSION,
        .header_size = sizeof(h),
        .chunk_size = cs,
        .codec = SNAP__CODEC_LZ4,
        .nchunks = nchunks,
        .memory_size = layout->memory_size,
        .table_offset = sizeof(h),
        .data_offset = data_off,
        .table_crc32c = thaw_crc32c(0, table, table_bytes),
    };
    memcpy(h.magic, SNAP__MEM_MAGIC, 8);
    h.header_crc32c = thaw_crc32c(0, &h, sizeof(h));
    struct iovec hv[2] = {{&h, sizeof(h)}, {table, table_bytes}};
    if ((rc = pwritev_all(fd, hv, 2, 0, err)) < 0)
        return rc;
    /* A snapshot whose data ends before data_off (all zero) still needs the
     * file to reach data_off, which the table's bounds checks assume. */
    if (cursor == data_off && ftruncate(fd, (off_t)data_off) < 0)
        return thaw_err_sys(err, errno, SNAP_MEMORY_FILE ": truncate");
    if (stats) {
        stats->bytes_in += layout->memory_size;
        stats->bytes_out = cursor;
        stats->compress_ns = thaw_now_ns() - t0;
    }
    *table_crc = h.table_crc32c;
    *file_size = cursor;
    return 0;
}
