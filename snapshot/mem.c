// SPDX-License-Identifier: Apache-2.0
/*
 * The engine-neutral half of attached memory: attach dispatches to the
 * eager, lazy or shared engine, and the region list, statistics, failure
 * record, abort and destroy are common to all three.
 */
#include "snapshot/snap-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

static const char *const engine_names[] = {"eager", "lazy", "shared"};

const char *snap_engine_name(snap_engine_t engine)
{
    return (unsigned)engine < 3 ? engine_names[engine] : "?";
}

int snap_engine_parse(const char *name, snap_engine_t *out)
{
    for (unsigned i = 0; i < 3; i++)
        if (name && !strcmp(name, engine_names[i])) {
            *out = (snap_engine_t)i;
            return 0;
        }
    return -EINVAL;
}

int snap__map_sigbus(void *addr, size_t len)
{
    /* A private mapping of an empty memfd: every access lies beyond EOF, so
     * a thread gets SIGBUS and KVM's get_user_pages fails (KVM_RUN returns
     * -EFAULT).  MAP_FIXED replaces the old pages and drops the range's
     * userfaultfd registration in one step, and the range stays reserved. */
    int fd = memfd_create("thaw-snap-failed", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    void *p =
        mmap(addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd, 0);
    int e = errno;
    close(fd);
    return p == MAP_FAILED ? -e : 0;
}

void snap__mem_fail(snap_mem_t *mem, const thaw_err_t *err)
{
    pthread_mutex_lock(&mem->err_lock);
    bool first = !mem->failed;
    if (first) {
        mem->failed = true;
        mem->first_err = *err;
    }
    pthread_mutex_unlock(&mem->err_lock);
    thaw_error("snap", "mem_failed", "dir=%s msg=\"%s\"", mem->snap->dir, thaw_err_msg(err));
    if (first && mem->on_error)
        mem->on_error(mem->opaque, err);
}

int snap_mem_attach(snap_t *snap, snap_engine_t engine, const snap_mem_opts_t *opts,
                    snap_mem_t **out, thaw_err_t *err)
{
    uint64_t t0 = thaw_now_ns();
    snap_mem_opts_t o = opts ? *opts : (snap_mem_opts_t){0};
    *out = NULL;
    if ((unsigned)engine > SNAP_ENGINE_SHARED)
        return thaw_err_set(err, EINVAL, "snapshot '%s': unknown engine %d", snap->dir,
                            (int)engine);
    snap_mem_t *mem = calloc(1, sizeof(*mem));
    if (!mem)
        return thaw_err_sys(err, ENOMEM, "snapshot '%s'", snap->dir);
    mem->snap = snap__ref(snap);
    mem->engine = engine;
    mem->on_error = o.on_error;
    mem->opaque = o.opaque;
    pthread_mutex_init(&mem->err_lock, NULL);
    mem->nregions = snap->nregions;
    mem->regions = calloc(snap->nregions ? snap->nregions : 1, sizeof(*mem->regions));
    int r;
    if (!mem->regions) {
        r = thaw_err_sys(err, ENOMEM, "snapshot '%s'", snap->dir);
        goto fail;
    }
    for (size_t i = 0; i < snap->nregions; i++)
        mem->regions[i] = (snap_region_t){.guest_addr = snap->regions[i].guest_addr,
                                          .size = snap->regions[i].size};
    switch (engine) {
    case SNAP_ENGINE_EAGER:
        r = snap__eager_attach(mem, o.threads, err);
        break;
    case SNAP_ENGINE_LAZY:
        r = snap__lazy_attach(mem, &o, err);
        break;
    default: {
        snap_base_t *base = o.base;
        if (base)
            atomic_fetch_add(&base->refs, 1);
        else if ((r = snap__base_get(snap, o.threads, &base, err)) < 0)
            break;
        r = snap__shared_attach(mem, base, err);
        break;
    }
    }
    if (r < 0)
        goto fail;
    mem->attach_ns = thaw_now_ns() - t0;
    *out = mem;
    return 0;
fail:
    snap_mem_destroy(mem);
    return r;
}

size_t snap_mem_region_count(const snap_mem_t *mem)
{
    return mem->nregions;
}

int snap_mem_region(const snap_mem_t *mem, size_t i, snap_region_t *out)
{
    if (i >= mem->nregions)
        return -ERANGE;
    *out = mem->regions[i];
    return 0;
}

void snap_mem_get_stats(const snap_mem_t *mem, snap_mem_stats_t *out)
{
    snap_mem_t *m = (snap_mem_t *)mem; /* the lock is not part of the value */
    *out = (snap_mem_stats_t){
        .faults = atomic_load(&m->faults),
        .chunks_faulted = atomic_load(&m->chunks_faulted),
        .chunks_prefetched = atomic_load(&m->chunks_prefetched),
        .chunks_zero = atomic_load(&m->chunks_zero),
        .bytes_read = atomic_load(&m->bytes_read),
        .bytes_installed = atomic_load(&m->bytes_installed),
        .attach_ns = m->attach_ns,
    };
    pthread_mutex_lock(&m->err_lock);
    out->failed = m->failed;
    pthread_mutex_unlock(&m->err_lock);
}

int snap_mem_error(const snap_mem_t *mem, thaw_err_t *err)
{
    snap_mem_t *m = (snap_mem_t *)mem;
    pthread_mutex_lock(&m->err_lock);
    int r = 0;
    if (m->failed) {
        if (err)
            *err = m->first_err;
        r = -(m->first_err.code ? m->first_err.code : EIO);
    }
    pthread_mutex_unlock(&m->err_lock);
    return r;
}

int snap_mem_workingset_save(snap_mem_t *mem, thaw_err_t *err)
{
    if (mem->engine != SNAP_ENGINE_LAZY || !mem->lazy)
        return thaw_err_set(err, EINVAL,
                            "snapshot '%s': working sets are recorded by the lazy "
                            "engine only",
                            mem->snap->dir);
    return snap__lazy_ws_save(mem, err);
}

void snap_mem_abort(snap_mem_t *mem)
{
    if (!mem || mem->aborted)
        return;
    if (mem->lazy) {
        snap__lazy_abort(mem);
    } else {
        for (size_t i = 0; i < mem->nregions; i++)
            if (mem->regions[i].host)
                snap__map_sigbus(mem->regions[i].host, mem->regions[i].size);
    }
    mem->aborted = true;
}

void snap_mem_destroy(snap_mem_t *mem)
{
    if (!mem)
        return;
    /* Lazy memory is aborted first so that no thread stays blocked in a
     * fault on a range that is about to disappear. */
    if (mem->lazy) {
        snap__lazy_abort(mem);
        snap__lazy_free(mem);
    }
    for (size_t i = 0; mem->regions && i < mem->nregions; i++)
        if (mem->regions[i].host)
            munmap(mem->regions[i].host, mem->regions[i].size);
    free(mem->regions);
    if (mem->base)
        snap_base_put(mem->base);
    snap_close(mem->snap);
    pthread_mutex_destroy(&mem->err_lock);
    free(mem);
}
