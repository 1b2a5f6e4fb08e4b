// SPDX-License-Identifier: Apache-2.0
/*
 * The eager engine, the baseline: fresh anonymous memory per region, every
 * chunk read, verified and decompressed in place before attach returns.
 * Zero chunks cost nothing (fresh anonymous memory already reads as zero).
 */
#include "snapshot/snap-int.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "common/cleanup.h"

int snap__eager_attach(snap_mem_t *mem, thaw_err_t *err)
{
    const snap_t *snap = mem->snap;
    _cleanup_free_ void *scratch = malloc(snap->chunk_size);
    if (!scratch)
        return thaw_err_sys(err, ENOMEM, "snapshot '%s'", snap->dir);
    for (size_t i = 0; i < snap->nregions; i++) {
        const struct snap__region *r = &snap->regions[i];
        void *p = mmap(NULL, r->size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            return thaw_err_sys(err, errno, "snapshot '%s': map region %zu", snap->dir, i);
        mem->regions[i].host = p;
        for (uint64_t c = 0; c < r->nchunks; c++) {
            uint64_t idx = r->first_chunk + c;
            const struct snap__chunk_entry *e = &snap->table[idx];
            if (e->kind == SNAP__CHUNK_ZERO) {
                atomic_fetch_add(&mem->chunks_zero, 1);
                continue;
            }
            int rc = snap__chunk_read(snap, idx, (char *)p + c * snap->chunk_size, scratch, err);
            if (rc < 0)
                return rc;
            atomic_fetch_add(&mem->bytes_read, e->stored_len);
            atomic_fetch_add(&mem->bytes_installed, e->raw_len);
        }
    }
    return 0;
}
