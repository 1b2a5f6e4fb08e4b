// SPDX-License-Identifier: Apache-2.0
/*
 * The shared engine: the snapshot's memory is decompressed once into a
 * sealed memfd (the base image, cached by the snapshot; built on a few
 * threads), and every restore
 * maps the regions MAP_PRIVATE from it.  Restore is a handful of mmap calls
 * whatever the memory size; clones share each page until they write it.
 */
#include "snapshot/snap-int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/clock.h"
#include "common/log.h"

static int base_build(snap_t *snap, unsigned threads, snap_base_t **out, thaw_err_t *err)
{
    uint64_t t0 = thaw_now_ns();
    uint64_t size = snap->image_size;
    _cleanup_close_ int fd = memfd_create("thaw-snap-base", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return thaw_err_sys(err, errno, "snapshot '%s': base memfd", snap->dir);
    if (size && ftruncate(fd, (off_t)size) < 0)
        return thaw_err_sys(err, errno, "snapshot '%s': base size %llu", snap->dir,
                            (unsigned long long)size);
    if (size) {
        _cleanup_munmap_ thaw_mapping_t m = {
            .addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), .len = size};
        if (m.addr == MAP_FAILED)
            return thaw_err_sys(err, errno, "snapshot '%s': map base", snap->dir);
        /* A process forked meanwhile (a sentry sandbox's clone in the same
         * thawd) would inherit this writable mapping, and the write seal
         * below would fail with EBUSY until it execs. */
        (void)madvise(m.addr, size, MADV_DONTFORK);
        char *bases[SNAP_MAX_REGIONS];
        for (size_t i = 0; i < snap->nregions; i++)
            bases[i] = (char *)m.addr + snap->regions[i].offset;
        /* Zero chunks stay holes in the memfd, which read as zero. */
        int rc = snap__decode_all(snap, bases, threads, NULL, err);
        if (rc < 0)
            return rc;
    }
    /* Sealed: no clone (or bug) can change the base under the others.  The
     * write seal fails with EBUSY while any process still maps the memfd
     * writable: a child forked in the instant between mmap and madvise
     * holds it until its exec, so retry for a while (bounded: 1 s). */
    int sr;
    for (int tries = 0;; tries++) {
        sr = fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
        if (sr == 0 || errno != EBUSY || tries == 50)
            break;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (sr < 0)
        return thaw_err_sys(err, errno, "snapshot '%s': seal base", snap->dir);
    snap_base_t *b = calloc(1, sizeof(*b));
    if (!b)
        return thaw_err_sys(err, ENOMEM, "snapshot '%s'", snap->dir);
    atomic_init(&b->refs, 1);
    b->fd = TAKE_FD(fd);
    b->size = size;
    b->build_ns = thaw_now_ns() - t0;
    thaw_debug("snap", "base_built", "dir=%s bytes=%llu ns=%llu", snap->dir,
               (unsigned long long)size, (unsigned long long)b->build_ns);
    *out = b;
    return 0;
}

int snap__base_get(snap_t *snap, unsigned threads, snap_base_t **out, thaw_err_t *err)
{
    int r = 0;
    pthread_mutex_lock(&snap->base_lock);
    if (!snap->base)
        r = base_build(snap, threads ? threads : snap__default_threads(), &snap->base, err);
    if (r == 0) {
        atomic_fetch_add(&snap->base->refs, 1);
        *out = snap->base;
    }
    pthread_mutex_unlock(&snap->base_lock);
    return r;
}

int snap_base_get(snap_t *snap, snap_base_t **out, thaw_err_t *err)
{
    return snap__base_get(snap, 0, out, err);
}

void snap_base_put(snap_base_t *base)
{
    if (base && atomic_fetch_sub(&base->refs, 1) == 1) {
        close(base->fd);
        free(base);
    }
}

uint64_t snap_base_size(const snap_base_t *base)
{
    return base->size;
}

uint64_t snap_base_build_ns(const snap_base_t *base)
{
    return base->build_ns;
}

int snap__shared_attach(snap_mem_t *mem, snap_base_t *base, thaw_err_t *err)
{
    const snap_t *snap = mem->snap;
    mem->base = base; /* the caller's reference moves here */
    if (base->size < snap->image_size)
        return thaw_err_set(err, EINVAL, "snapshot '%s': base of %llu bytes is too small",
                            snap->dir, (unsigned long long)base->size);
    for (size_t i = 0; i < snap->nregions; i++) {
        const struct snap__region *r = &snap->regions[i];
        void *p = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, base->fd,
                       (off_t)r->offset);
        if (p == MAP_FAILED)
            return thaw_err_sys(err, errno, "snapshot '%s': map region %zu", snap->dir, i);
        mem->regions[i].host = p;
    }
    return 0;
}
