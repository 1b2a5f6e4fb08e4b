// SPDX-License-Identifier: Apache-2.0
/*
 * The lazy engine.  Guest memory is anonymous memory registered with
 * userfaultfd in MISSING mode (without UFFD_USER_MODE_ONLY, so faults that
 * KVM raises through get_user_pages on behalf of a vCPU arrive too).  One
 * fault thread polls the uffd, a stop eventfd and an io_uring completion
 * eventfd.  A fault on a chunk not yet present starts an io_uring read of
 * the whole chunk (up to queue_depth reads in flight); the completion is
 * verified, decompressed and installed with UFFDIO_COPY, which wakes every
 * thread waiting anywhere in the chunk.  Zero chunks are installed at once
 * with UFFDIO_ZEROPAGE.  A per-chunk state makes sure a chunk is fetched at
 * most once; later faults on it join the read in flight.
 *
 * Working set: the first-fault order can be recorded and saved; a later
 * restore prefetches it in the background through the same ring, leaving
 * one slot free so a fault never waits behind a full prefetch queue.
 *
 * Failure: a chunk that cannot be read or fails its checksum is never
 * installed.  Its range is replaced by a SIGBUS mapping and the waiters are
 * woken, so their access fails (SIGBUS; -EFAULT from KVM_RUN); the memory
 * is marked failed and the owner told through on_error.
 */
#include "snapshot/snap-int.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"

#define DEFAULT_DEPTH 16u

enum chunk_state {
    CH_ABSENT = 0,
    CH_QUEUED,    /* a fault wants it; waiting for a free slot */
    CH_INFLIGHT,  /* read submitted */
    CH_INSTALLED, /* in guest memory */
    CH_FAILED,    /* poisoned: replaced by a SIGBUS mapping */
};

struct slot {
    uint64_t chunk;
    bool busy;
    bool prefetch;
    char *buf;
};

struct snap__lazy {
    int uffd, stop_efd, cq_efd;
    struct io_uring ring;
    bool ring_ok, thread_started, stopped;
    pthread_t thread;
    unsigned depth, busy, prefetch_busy, prefetch_max;
    struct slot *slots;
    char *bufs;
    char *decomp;
    uint8_t *state; /* per chunk; touched by the fault thread only */
    uint64_t *queue;
    size_t qhead, qlen;
    uint32_t *ws;
    size_t nws, ws_pos;
    bool record;
    pthread_mutex_t rec_lock;
    uint32_t *rec;
    size_t nrec, rec_cap;
};

/* ------------------------------------------------------------ uffd ioctls */

static int uffd_wake(int uffd, uint64_t start, uint64_t len)
{
    struct uffdio_range r = {.start = start, .len = len};
    return ioctl(uffd, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
}

/* UFFDIO_COPY of one page-aligned range, tolerating pages that appeared in
 * the meantime (EEXIST): those are skipped page by page and the range woken. */
static int uffd_copy(int uffd, uint64_t dst, const char *src, uint64_t len)
{
    const uint64_t start = dst, total = len;
    bool per_page = false;
    while (len) {
        uint64_t n = per_page ? SNAP_PAGE_SIZE : len;
        struct uffdio_copy cp = {.dst = dst, .src = (uint64_t)(uintptr_t)src, .len = n};
        int e = 0;
        if (ioctl(uffd, UFFDIO_COPY, &cp) < 0)
            e = errno;
        if (e == 0 || cp.copy > 0) {
            uint64_t done = e == 0 ? n : (uint64_t)cp.copy;
            dst += done;
            src += done;
            len -= done;
            continue;
        }
        if (e == EAGAIN) /* the mm is changing (fork, mremap): try again */
            continue;
        if (e != EEXIST)
            return -e;
        if (per_page) { /* this page is there already: keep it */
            dst += SNAP_PAGE_SIZE;
            src += SNAP_PAGE_SIZE;
            len -= SNAP_PAGE_SIZE;
        }
        per_page = true;
    }
    return per_page ? uffd_wake(uffd, start, total) : 0;
}

static int uffd_zero(int uffd, uint64_t dst, uint64_t len)
{
    const uint64_t start = dst, total = len;
    bool per_page = false;
    while (len) {
        uint64_t n = per_page ? SNAP_PAGE_SIZE : len;
        struct uffdio_zeropage z = {.range = {.start = dst, .len = n}};
        int e = 0;
        if (ioctl(uffd, UFFDIO_ZEROPAGE, &z) < 0)
            e = errno;
        if (e == 0 || z.zeropage > 0) {
            uint64_t done = e == 0 ? n : (uint64_t)z.zeropage;
            dst += done;
            len -= done;
            continue;
        }
        if (e == EAGAIN)
            continue;
        if (e != EEXIST)
            return -e;
        if (per_page) {
            dst += SNAP_PAGE_SIZE;
            len -= SNAP_PAGE_SIZE;
        }
        per_page = true;
    }
    return per_page ? uffd_wake(uffd, start, total) : 0;
}

/* ------------------------------------------------------------ chunk plumbing */

/* Host address of chunk idx (and its region). */
static uint64_t chunk_host(const snap_mem_t *mem, uint64_t idx)
{
    const snap_t *s = mem->snap;
    for (size_t i = 0; i < s->nregions; i++) {
        const struct snap__region *r = &s->regions[i];
        if (idx >= r->first_chunk && idx < r->first_chunk + r->nchunks)
            return (uint64_t)(uintptr_t)mem->regions[i].host +
                   (idx - r->first_chunk) * s->chunk_size;
    }
    return 0;
}

static void poison(snap_mem_t *mem, uint64_t idx, thaw_err_t *err)
{
    struct snap__lazy *lz = mem->lazy;
    uint64_t host = chunk_host(mem, idx);
    uint32_t len = (mem->snap->table[idx].raw_len + SNAP_PAGE_SIZE - 1) & ~(SNAP_PAGE_SIZE - 1);
    lz->state[idx] = CH_FAILED;
    /* Tell the owner before the faulting thread can see its SIGBUS, which
     * is as soon as the mapping below is in place, not only after the wake:
     * a thread blocked in a userfault also returns (and retries the access)
     * on any other wake-up, such as io_uring task work queued to the thread
     * that created a ring (seen in ~5% of tries on Linux 6.18). */
    snap__mem_fail(mem, err);
    int r = snap__map_sigbus((void *)(uintptr_t)host, len);
    if (r < 0)
        thaw_error("snap", "poison_failed", "chunk=%llu errno=%d", (unsigned long long)idx, -r);
    uffd_wake(lz->uffd, host, len);
}

static struct slot *free_slot(struct snap__lazy *lz, bool prefetch)
{
    if (lz->busy >= lz->depth || (prefetch && lz->prefetch_busy >= lz->prefetch_max))
        return NULL;
    for (unsigned i = 0; i < lz->depth; i++)
        if (!lz->slots[i].busy)
            return &lz->slots[i];
    return NULL;
}

static void submit_read(snap_mem_t *mem, struct slot *sl, uint64_t idx, bool prefetch)
{
    struct snap__lazy *lz = mem->lazy;
    const struct snap__chunk_entry *e = &mem->snap->table[idx];
    struct io_uring_sqe *sqe = io_uring_get_sqe(&lz->ring);
    if (!sqe) { /* the SQ is full of unsubmitted entries: flush it */
        io_uring_submit(&lz->ring);
        sqe = io_uring_get_sqe(&lz->ring);
    }
    if (!sqe) {
        thaw_err_t err;
        snap__err(mem->snap, &err, EBUSY, SNAP_MEMORY_FILE, "chunk %llu: no io_uring entry",
                  (unsigned long long)idx);
        poison(mem, idx, &err);
        return;
    }
    io_uring_prep_read(sqe, mem->snap->mem_fd, sl->buf, e->stored_len, e->offset);
    io_uring_sqe_set_data(sqe, sl);
    sl->busy = true;
    sl->chunk = idx;
    sl->prefetch = prefetch;
    lz->busy++;
    if (prefetch)
        lz->prefetch_busy++;
    lz->state[idx] = CH_INFLIGHT;
}

/* Start bringing chunk idx in.  Returns false if a prefetch found no slot. */
static bool start_chunk(snap_mem_t *mem, uint64_t idx, bool prefetch)
{
    struct snap__lazy *lz = mem->lazy;
    const struct snap__chunk_entry *e = &mem->snap->table[idx];
    if (e->kind == SNAP__CHUNK_ZERO) {
        uint64_t host = chunk_host(mem, idx);
        /* Count before installing: the install wakes the faulting thread,
         * which may read the statistics at once. */
        atomic_fetch_add(&mem->chunks_zero, 1);
        atomic_fetch_add(&mem->bytes_installed, e->raw_len);
        if (prefetch)
            atomic_fetch_add(&mem->chunks_prefetched, 1);
        lz->state[idx] = CH_INSTALLED;
        int r = uffd_zero(lz->uffd, host, e->raw_len);
        if (r < 0) {
            thaw_err_t err;
            snap__err(mem->snap, &err, -r, SNAP_MEMORY_FILE, "chunk %llu: UFFDIO_ZEROPAGE: %s",
                      (unsigned long long)idx, strerror(-r));
            poison(mem, idx, &err);
        }
        return true;
    }
    struct slot *sl = free_slot(lz, prefetch);
    if (sl) {
        submit_read(mem, sl, idx, prefetch);
        return true;
    }
    if (prefetch)
        return false;
    lz->queue[(lz->qhead + lz->qlen++) % mem->snap->nchunks] = idx;
    lz->state[idx] = CH_QUEUED;
    return true;
}

static void complete(snap_mem_t *mem, struct slot *sl, int res)
{
    struct snap__lazy *lz = mem->lazy;
    const snap_t *s = mem->snap;
    uint64_t idx = sl->chunk;
    const struct snap__chunk_entry *e = &s->table[idx];
    thaw_err_t err;
    thaw_err_clear(&err);
    int r = 0;
    if (res == -EAGAIN || res == -EINTR) {
        /* Transient: read it again in the same slot. */
        lz->busy--;
        if (sl->prefetch)
            lz->prefetch_busy--;
        submit_read(mem, sl, idx, sl->prefetch);
        return;
    }
    if (res < 0) {
        r = snap__err(s, &err, -res, SNAP_MEMORY_FILE, "chunk %llu: read failed: %s",
                      (unsigned long long)idx, strerror(-res));
    } else if ((uint32_t)res != e->stored_len) {
        r = snap__err(s, &err, EIO, SNAP_MEMORY_FILE, "chunk %llu: short read (%d of %u bytes)",
                      (unsigned long long)idx, res, e->stored_len);
    } else {
        char *dst = e->kind == SNAP__CHUNK_RAW ? sl->buf : lz->decomp;
        r = snap__chunk_decode(s, idx, sl->buf, dst, &err);
        if (r == 0) {
            /* Count first: UFFDIO_COPY wakes the faulting threads. */
            lz->state[idx] = CH_INSTALLED;
            atomic_fetch_add(&mem->bytes_read, e->stored_len);
            atomic_fetch_add(&mem->bytes_installed, e->raw_len);
            if (sl->prefetch)
                atomic_fetch_add(&mem->chunks_prefetched, 1);
            r = uffd_copy(lz->uffd, chunk_host(mem, idx), dst, e->raw_len);
            if (r < 0)
                snap__err(s, &err, -r, SNAP_MEMORY_FILE, "chunk %llu: UFFDIO_COPY: %s",
                          (unsigned long long)idx, strerror(-r));
        }
    }
    if (r < 0)
        poison(mem, idx, &err);
    sl->busy = false;
    lz->busy--;
    if (sl->prefetch)
        lz->prefetch_busy--;
}

/* Install every completed read; returns how many there were. */
static unsigned reap(snap_mem_t *mem)
{
    struct io_uring_cqe *cqe;
    unsigned n = 0;
    while (io_uring_peek_cqe(&mem->lazy->ring, &cqe) == 0) {
        struct slot *sl = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&mem->lazy->ring, cqe);
        complete(mem, sl, res);
        n++;
    }
    return n;
}

static void on_fault(snap_mem_t *mem, uint64_t addr)
{
    struct snap__lazy *lz = mem->lazy;
    const snap_t *s = mem->snap;
    atomic_fetch_add(&mem->faults, 1);
    for (size_t i = 0; i < mem->nregions; i++) {
        uint64_t host = (uint64_t)(uintptr_t)mem->regions[i].host;
        if (addr < host || addr >= host + mem->regions[i].size)
            continue;
        uint64_t idx = s->regions[i].first_chunk + (addr - host) / s->chunk_size;
        uint64_t page = addr & ~(uint64_t)(SNAP_PAGE_SIZE - 1);
        switch (lz->state[idx]) {
        case CH_ABSENT:
            atomic_fetch_add(&mem->chunks_faulted, 1);
            if (lz->record) {
                pthread_mutex_lock(&lz->rec_lock);
                if (lz->nrec < lz->rec_cap)
                    lz->rec[lz->nrec++] = (uint32_t)idx;
                pthread_mutex_unlock(&lz->rec_lock);
            }
            start_chunk(mem, idx, false);
            break;
        case CH_QUEUED:
        case CH_INFLIGHT:
            break; /* the install wakes this thread too */
        case CH_INSTALLED:
            /* Either the fault raced with the install (the page exists:
             * EEXIST, just wake) or the page was dropped since (e.g.
             * MADV_DONTNEED), when anonymous memory reads as zero. */
            if (uffd_zero(lz->uffd, page, SNAP_PAGE_SIZE) < 0)
                uffd_wake(lz->uffd, page, SNAP_PAGE_SIZE);
            break;
        default: /* failed: the SIGBUS mapping is in place; let it retry */
            uffd_wake(lz->uffd, page, SNAP_PAGE_SIZE);
            break;
        }
        return;
    }
    /* Not ours (cannot happen for registered ranges): never leave it hanging. */
    uffd_wake(lz->uffd, addr & ~(uint64_t)(SNAP_PAGE_SIZE - 1), SNAP_PAGE_SIZE);
}

static void read_faults(snap_mem_t *mem)
{
    struct uffd_msg msgs[64];
    for (;;) {
        ssize_t n = read(mem->lazy->uffd, msgs, sizeof(msgs));
        if (n <= 0)
            return; /* EAGAIN: drained */
        for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++)
            if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
                on_fault(mem, msgs[i].arg.pagefault.address);
    }
}

static void pump(snap_mem_t *mem)
{
    struct snap__lazy *lz = mem->lazy;
    uint64_t nchunks = mem->snap->nchunks;
    /* Faults first ... */
    while (lz->qlen) {
        struct slot *sl = free_slot(lz, false);
        if (!sl)
            break;
        uint64_t idx = lz->queue[lz->qhead];
        lz->qhead = (lz->qhead + 1) % nchunks;
        lz->qlen--;
        submit_read(mem, sl, idx, false);
    }
    /* ... then the recorded working set, in order. */
    while (lz->ws_pos < lz->nws) {
        uint64_t idx = lz->ws[lz->ws_pos];
        if (lz->state[idx] != CH_ABSENT) {
            lz->ws_pos++;
            continue;
        }
        if (!start_chunk(mem, idx, true))
            break;
        lz->ws_pos++;
    }
    io_uring_submit(&lz->ring);
}

static void *fault_thread(void *arg)
{
    snap_mem_t *mem = arg;
    struct snap__lazy *lz = mem->lazy;
    struct pollfd pfd[3] = {
        {.fd = lz->uffd, .events = POLLIN},
        {.fd = lz->stop_efd, .events = POLLIN},
        {.fd = lz->cq_efd, .events = POLLIN},
    };
    pump(mem);
    for (;;) {
        if (poll(pfd, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[1].revents)
            break;
        if (pfd[2].revents) {
            eventfd_t v;
            eventfd_read(lz->cq_efd, &v);
        }
        reap(mem);
        if (pfd[0].revents & POLLIN)
            read_faults(mem);
        /* Reads of cached data complete inside io_uring_submit: install
         * them now rather than after another trip through poll. */
        do
            pump(mem);
        while (reap(mem));
    }
    /* Stopping: let the reads in flight land before their buffers go; their
     * chunks are not installed (the regions are about to be poisoned). */
    while (lz->busy) {
        struct io_uring_cqe *cqe;
        io_uring_submit(&lz->ring);
        if (io_uring_wait_cqe(&lz->ring, &cqe) < 0)
            break;
        struct slot *sl = io_uring_cqe_get_data(cqe);
        io_uring_cqe_seen(&lz->ring, cqe);
        sl->busy = false;
        lz->busy--;
    }
    return NULL;
}

/* ------------------------------------------------------------ set-up */

static int open_uffd(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0 || errno != EPERM)
        return fd >= 0 ? fd : -errno;
    /* Unprivileged uffd is off: /dev/userfaultfd (Linux 6.1+) may be open to us. */
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev < 0)
        return -EPERM;
    fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    int e = errno;
    close(dev);
    return fd >= 0 ? fd : -e;
}

int snap__lazy_attach(snap_mem_t *mem, const snap_mem_opts_t *o, thaw_err_t *err)
{
    snap_t *s = mem->snap;
    struct snap__lazy *lz = calloc(1, sizeof(*lz));
    if (!lz)
        return thaw_err_sys(err, ENOMEM, "snapshot '%s'", s->dir);
    mem->lazy = lz;
    lz->uffd = lz->stop_efd = lz->cq_efd = -1;
    pthread_mutex_init(&lz->rec_lock, NULL);
    lz->depth = o->queue_depth ? o->queue_depth : DEFAULT_DEPTH;
    if (lz->depth > SNAP_MAX_QUEUE_DEPTH)
        lz->depth = SNAP_MAX_QUEUE_DEPTH;
    lz->prefetch_max = lz->depth > 1 ? lz->depth - 1 : 1;

    int r = open_uffd();
    if (r < 0)
        return thaw_err_sys(err, -r,
                            "snapshot '%s': userfaultfd (needs root or "
                            "vm.unprivileged_userfaultfd=1)",
                            s->dir);
    lz->uffd = r;
    struct uffdio_api api = {.api = UFFD_API};
    if (ioctl(lz->uffd, UFFDIO_API, &api) < 0)
        return thaw_err_sys(err, errno, "snapshot '%s': UFFDIO_API", s->dir);

    lz->slots = calloc(lz->depth, sizeof(*lz->slots));
    lz->bufs = malloc((size_t)lz->depth * s->chunk_size);
    lz->decomp = malloc(s->chunk_size);
    lz->state = calloc(s->nchunks ? s->nchunks : 1, 1);
    lz->queue = calloc(s->nchunks ? s->nchunks : 1, sizeof(*lz->queue));
    if (!lz->slots || !lz->bufs || !lz->decomp || !lz->state || !lz->queue)
        return thaw_err_sys(err, ENOMEM, "snapshot '%s'", s->dir);
    for (unsigned i = 0; i < lz->depth; i++)
        lz->slots[i].buf = lz->bufs + (size_t)i * s->chunk_size;
    if (o->record_workingset) {
        lz->record = true;
        lz->rec_cap = s->nchunks;
        lz->rec = malloc((s->nchunks ? s->nchunks : 1) * sizeof(*lz->rec));
        if (!lz->rec)
            return thaw_err_sys(err, ENOMEM, "snapshot '%s'", s->dir);
    }
    if (o->prefetch) {
        thaw_err_t werr;
        thaw_err_clear(&werr);
        /* The working set is a hint: a bad one costs speed, not the restore. */
        if (snap__ws_load(s, &lz->ws, &lz->nws, &werr) < 0)
            thaw_warn("snap", "workingset_ignored", "msg=\"%s\"", thaw_err_msg(&werr));
    }

    for (size_t i = 0; i < s->nregions; i++) {
        uint64_t size = s->regions[i].size;
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            return thaw_err_sys(err, errno, "snapshot '%s': map region %zu", s->dir, i);
        mem->regions[i].host = p;
        struct uffdio_register reg = {
            .range = {.start = (uint64_t)(uintptr_t)p, .len = size},
            .mode = UFFDIO_REGISTER_MODE_MISSING,
        };
        if (ioctl(lz->uffd, UFFDIO_REGISTER, &reg) < 0)
            return thaw_err_sys(err, errno, "snapshot '%s': UFFDIO_REGISTER region %zu", s->dir, i);
        uint64_t need = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE);
        if ((reg.ioctls & need) != need)
            return thaw_err_set(err, ENOTSUP,
                                "snapshot '%s': uffd lacks UFFDIO_COPY/ZEROPAGE on region %zu",
                                s->dir, i);
    }

    if ((r = io_uring_queue_init(lz->depth, &lz->ring, 0)) < 0)
        return thaw_err_sys(err, -r, "snapshot '%s': io_uring_queue_init", s->dir);
    lz->ring_ok = true;
    lz->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    lz->cq_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (lz->stop_efd < 0 || lz->cq_efd < 0)
        return thaw_err_sys(err, errno, "snapshot '%s': eventfd", s->dir);
    if ((r = io_uring_register_eventfd(&lz->ring, lz->cq_efd)) < 0)
        return thaw_err_sys(err, -r, "snapshot '%s': io_uring eventfd", s->dir);

    /* The fault thread takes no signals: they belong to the caller's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r = pthread_create(&lz->thread, NULL, fault_thread, mem);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0)
        return thaw_err_sys(err, r, "snapshot '%s': fault thread", s->dir);
    lz->thread_started = true;
    return 0;
}

void snap__lazy_abort(snap_mem_t *mem)
{
    struct snap__lazy *lz = mem->lazy;
    if (!lz || lz->stopped)
        return;
    if (lz->thread_started) {
        eventfd_write(lz->stop_efd, 1);
        pthread_join(lz->thread, NULL);
    }
    lz->stopped = true;
    /* Poison, then wake: a woken faulter retries on the SIGBUS mapping. */
    for (size_t i = 0; i < mem->nregions; i++) {
        if (!mem->regions[i].host)
            continue;
        snap__map_sigbus(mem->regions[i].host, mem->regions[i].size);
        if (lz->uffd >= 0)
            uffd_wake(lz->uffd, (uint64_t)(uintptr_t)mem->regions[i].host, mem->regions[i].size);
    }
}

void snap__lazy_free(snap_mem_t *mem)
{
    struct snap__lazy *lz = mem->lazy;
    if (!lz)
        return;
    if (lz->ring_ok)
        io_uring_queue_exit(&lz->ring);
    if (lz->uffd >= 0)
        close(lz->uffd);
    if (lz->stop_efd >= 0)
        close(lz->stop_efd);
    if (lz->cq_efd >= 0)
        close(lz->cq_efd);
    free(lz->slots);
    free(lz->bufs);
    free(lz->decomp);
    free(lz->state);
    free(lz->queue);
    free(lz->ws);
    free(lz->rec);
    pthread_mutex_destroy(&lz->rec_lock);
    free(lz);
    mem->lazy = NULL;
}

int snap__lazy_ws_save(snap_mem_t *mem, thaw_err_t *err)
{
    struct snap__lazy *lz = mem->lazy;
    if (!lz->record)
        return thaw_err_set(err, EINVAL,
                            "snapshot '%s': working set not recorded (record_workingset off)",
                            mem->snap->dir);
    pthread_mutex_lock(&lz->rec_lock);
    size_t n = lz->nrec;
    uint32_t *copy = malloc((n ? n : 1) * sizeof(*copy));
    if (copy)
        memcpy(copy, lz->rec, n * sizeof(*copy));
    pthread_mutex_unlock(&lz->rec_lock);
    if (!copy)
        return thaw_err_sys(err, ENOMEM, "snapshot '%s': working set", mem->snap->dir);
    int r = snap__ws_save(mem->snap, copy, n, err);
    free(copy);
    return r < 0 ? r : (int)n;
}
