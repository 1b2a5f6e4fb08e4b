// SPDX-License-Identifier: Apache-2.0
/*
 * The eager engine, the baseline: fresh anonymous memory per region, every
 * chunk read, verified and decompressed in place (on a few threads) before
 * attach returns.  Zero chunks cost nothing: fresh anonymous memory already
 * reads as zero.
 */
#include "snapshot/snap-int.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "common/cleanup.h"

int snap__eager_attach(snap_mem_t *mem, unsigned threads, thaw_err_t *err)
{
    const snap_t *snap = mem->snap;
    char *bases[SNAP_MAX_REGIONS];
    for (size_t i = 0; i < snap->nregions; i++) {
        void *p = mmap(NULL, snap->regions[i].size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            return thaw_err_sys(err, errno, "snapshot '%s': map region %zu", snap->dir, i);
        mem->regions[i].host = p;
        bases[i] = p;
    }
    snap__decode_stats_t st = {0};
    int r = snap__decode_all(snap, bases, threads ? threads : snap__default_threads(), &st, err);
    atomic_fetch_add(&mem->bytes_read, st.bytes_read);
    atomic_fetch_add(&mem->bytes_installed, st.bytes_installed);
    atomic_fetch_add(&mem->chunks_zero, st.chunks_zero);
    return r;
}
