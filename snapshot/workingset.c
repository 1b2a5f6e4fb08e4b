// SPDX-License-Identifier: Apache-2.0
/*
 * The workingset file: chunk indices in the order a lazy restore first
 * faulted them, saved next to the snapshot (atomically, like the snapshot
 * itself) and read back to drive prefetch on later restores.
 */
#include "snapshot/snap-int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/crc32c.h"

int snap__ws_load(const snap_t *snap, uint32_t **out, size_t *count, thaw_err_t *err)
{
    const char *F = SNAP_WORKINGSET_FILE;
    *out = NULL;
    *count = 0;
    _cleanup_close_ int dfd = open(snap->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return snap__err(snap, err, errno, F, "open directory: %s", strerror(errno));
    if (faccessat(dfd, F, F_OK, 0) < 0 && errno == ENOENT)
        return 0; /* never recorded */
    _cleanup_free_ void *buf = NULL;
    size_t len;
    int r = snap__read_file(dfd, F, SNAP__MAX_WS_BYTES, &buf, &len, NULL, err);
    if (r < 0)
        return thaw_err_wrap(err, "snapshot '%s'", snap->dir);
    struct snap__ws_header h;
    if (len < sizeof(h))
        return snap__err(snap, err, EINVAL, F, "truncated header");
    memcpy(&h, buf, sizeof(h));
    if (memcmp(h.magic, SNAP__WS_MAGIC, 8) != 0)
        return snap__err(snap, err, EINVAL, F, "wrong magic");
    if (h.version == 0 || h.version > SNAP__WS_VERSION)
        return snap__err(snap, err, EPROTONOSUPPORT, F, "unsupported version %u", h.version);
    if (h.nchunks != snap->nchunks)
        return snap__err(snap, err, EINVAL, F, "recorded for %llu chunks, the snapshot has %llu",
                         (unsigned long long)h.nchunks, (unsigned long long)snap->nchunks);
    if ((uint64_t)h.count * sizeof(uint32_t) != len - sizeof(h))
        return snap__err(snap, err, EINVAL, F, "%u entries do not fit %zu bytes", h.count, len);
    const uint32_t *idx = (const uint32_t *)((const char *)buf + sizeof(h));
    if (SNAP__CRC_BAD(thaw_crc32c(0, idx, len - sizeof(h)), h.crc32c))
        return snap__err(snap, err, EBADMSG, F, "checksum mismatch");
    _cleanup_free_ uint32_t *list = malloc((h.count ? h.count : 1) * sizeof(*list));
    if (!list)
        return snap__err(snap, err, ENOMEM, F, "out of memory");
    for (uint32_t i = 0; i < h.count; i++) {
        if (idx[i] >= snap->nchunks)
            return snap__err(snap, err, EINVAL, F, "entry %u: chunk %u is out of range", i, idx[i]);
        list[i] = idx[i];
    }
    *out = TAKE_PTR(list);
    *count = h.count;
    return 0;
}

int snap__ws_save(const snap_t *snap, const uint32_t *idx, size_t count, thaw_err_t *err)
{
    const char *F = SNAP_WORKINGSET_FILE;
    if (count > UINT32_MAX || count * sizeof(uint32_t) > SNAP__MAX_WS_BYTES - 64)
        return snap__err(snap, err, EFBIG, F, "%zu entries is too many", count);
    size_t len = sizeof(struct snap__ws_header) + count * sizeof(uint32_t);
    _cleanup_free_ char *buf = malloc(len);
    if (!buf)
        return snap__err(snap, err, ENOMEM, F, "out of memory");
    struct snap__ws_header h = {.version = SNAP__WS_VERSION,
                                .count = (uint32_t)count,
                                .nchunks = snap->nchunks,
                                .crc32c = thaw_crc32c(0, idx, count * sizeof(uint32_t))};
    memcpy(h.magic, SNAP__WS_MAGIC, 8);
    memcpy(buf, &h, sizeof(h));
    if (count)
        memcpy(buf + sizeof(h), idx, count * sizeof(uint32_t));

    _cleanup_close_ int dfd = open(snap->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return snap__err(snap, err, errno, F, "open directory: %s", strerror(errno));
    /* pid and a counter: several memories of one snapshot may save at once. */
    static atomic_uint counter;
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d.%u", F, (int)getpid(), atomic_fetch_add(&counter, 1));
    unlinkat(dfd, tmp, 0);
    int r = snap__write_file_at(dfd, tmp, buf, len, err);
    if (r < 0)
        return thaw_err_wrap(err, "snapshot '%s'", snap->dir);
    if (renameat(dfd, tmp, dfd, F) < 0 || fsync(dfd) < 0) {
        r = snap__err(snap, err, errno, F, "install: %s", strerror(errno));
        unlinkat(dfd, tmp, 0);
        return r;
    }
    return 0;
}
