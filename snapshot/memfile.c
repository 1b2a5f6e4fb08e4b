// SPDX-License-Identifier: Apache-2.0
/*
 * memory.bin reader: validates the header and the whole chunk table at open
 * (versions, counts, sizes, bounds, overlaps, checksums) so that the engines
 * can trust every entry, and decodes single chunks, verifying each chunk's
 * crc32c of the uncompressed bytes before anyone sees them.
 */
#include "snapshot/snap-int.h"

#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/crc32c.h"

int snap__memfile_load(snap_t *snap, const struct snap__manifest_files *files, thaw_err_t *err)
{
    const char *F = SNAP_MEMORY_FILE;
    struct stat st;
    if (fstat(snap->mem_fd, &st) < 0)
        return snap__err(snap, err, errno, F, "stat failed");
    if (!S_ISREG(st.st_mode))
        return snap__err(snap, err, EINVAL, F, "not a regular file");
    /* Opened O_NONBLOCK only so a FIFO could not hang us; with it, io_uring
     * would return EAGAIN for reads that miss the page cache on some
     * filesystems instead of waiting for them. */
    int fl = fcntl(snap->mem_fd, F_GETFL);
    if (fl < 0 || fcntl(snap->mem_fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
        return snap__err(snap, err, errno, F, "fcntl failed");
    snap->mem_file_size = (uint64_t)st.st_size;
    if (snap->mem_file_size != files->mem_size)
        return snap__err(
            snap, err, EINVAL, F, "size %llu differs from the manifest's %llu (truncated?)",
            (unsigned long long)snap->mem_file_size, (unsigned long long)files->mem_size);
    struct snap__mem_header h;
    if (snap->mem_file_size < sizeof(h))
        return snap__err(snap, err, EINVAL, F, "truncated header");
    ssize_t n = pread(snap->mem_fd, &h, sizeof(h), 0);
    if (n != (ssize_t)sizeof(h))
        return snap__err(snap, err, n < 0 ? errno : EIO, F, "cannot read the header");
    if (memcmp(h.magic, SNAP__MEM_MAGIC, 8) != 0)
        return snap__err(snap, err, EINVAL, F, "wrong magic");
    if (h.version > SNAP__MEM_VERSION)
        return snap__err(snap, err, EPROTONOSUPPORT, F,
                         "future version %u (this reader knows up to %u)", h.version,
                         SNAP__MEM_VERSION);
    if (h.version == 0)
        return snap__err(snap, err, EINVAL, F, "bad version 0");
    uint32_t want = h.header_crc32c;
    h.header_crc32c = 0;
    if (SNAP__CRC_BAD(thaw_crc32c(0, &h, sizeof(h)), want))
        return snap__err(snap, err, EBADMSG, F, "header checksum mismatch");
    if (h.header_size != sizeof(h) || h.table_offset != sizeof(h))
        return snap__err(snap, err, EINVAL, F, "unexpected header size %u / table offset %llu",
                         h.header_size, (unsigned long long)h.table_offset);
    if (h.codec != SNAP__CODEC_LZ4)
        return snap__err(snap, err, EINVAL, F, "unknown codec %u", h.codec);
    if (h.chunk_size != snap->chunk_size)
        return snap__err(snap, err, EINVAL, F, "chunk size %u differs from the manifest's %u",
                         h.chunk_size, snap->chunk_size);
    if (h.nchunks != snap->nchunks || h.memory_size != snap->memory_size)
        return snap__err(snap, err, EINVAL, F,
                         "%llu chunks / %llu bytes do not match the manifest's regions "
                         "(%llu / %llu)",
                         (unsigned long long)h.nchunks, (unsigned long long)h.memory_size,
                         (unsigned long long)snap->nchunks, (unsigned long long)snap->memory_size);
    /* nchunks is bounded by SNAP_MAX_MEMORY / SNAP_CHUNK_MIN through the
     * manifest, so this product cannot overflow. */
    uint64_t table_bytes = h.nchunks * sizeof(struct snap__chunk_entry);
    if (table_bytes > snap->mem_file_size - sizeof(h))
        return snap__err(snap, err, EINVAL, F, "chunk table runs past the end of the file");
    if (h.data_offset < sizeof(h) + table_bytes || h.data_offset > snap->mem_file_size)
        return snap__err(snap, err, EINVAL, F, "data offset %llu is out of bounds",
                         (unsigned long long)h.data_offset);
    _cleanup_free_ struct snap__chunk_entry *t = malloc(table_bytes ? table_bytes : 1);
    if (!t)
        return snap__err(snap, err, ENOMEM, F, "out of memory for %llu table entries",
                         (unsigned long long)h.nchunks);
    size_t got = 0;
    while (got < table_bytes) {
        n = pread(snap->mem_fd, (char *)t + got, table_bytes - got, (off_t)(sizeof(h) + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return snap__err(snap, err, n < 0 ? errno : EIO, F, "cannot read the chunk table");
        got += (size_t)n;
    }
    uint32_t tcrc = thaw_crc32c(0, t, table_bytes);
    if (SNAP__CRC_BAD(tcrc, h.table_crc32c) || SNAP__CRC_BAD(tcrc, files->mem_table_crc))
        return snap__err(snap, err, EBADMSG, F, "chunk table checksum mismatch");

    uint64_t prev_end = h.data_offset;
    uint64_t idx = 0;
    for (size_t ri = 0; ri < snap->nregions; ri++) {
        const struct snap__region *r = &snap->regions[ri];
        for (uint64_t c = 0; c < r->nchunks; c++, idx++) {
            const struct snap__chunk_entry *e = &t[idx];
            uint64_t left = r->size - c * snap->chunk_size;
            uint32_t raw = left < snap->chunk_size ? (uint32_t)left : snap->chunk_size;
            unsigned long long I = (unsigned long long)idx;
            if (e->raw_len != raw)
                return snap__err(snap, err, EINVAL, F, "chunk %llu: length %u, expected %u", I,
                                 e->raw_len, raw);
            switch (e->kind) {
            case SNAP__CHUNK_ZERO:
                if (e->offset || e->stored_len)
                    return snap__err(snap, err, EINVAL, F, "chunk %llu: zero chunk with data", I);
                continue;
            case SNAP__CHUNK_RAW:
                if (e->stored_len != raw)
                    return snap__err(snap, err, EINVAL, F,
                                     "chunk %llu: raw chunk stores %u bytes, expected %u", I,
                                     e->stored_len, raw);
                break;
            case SNAP__CHUNK_LZ4:
                if (e->stored_len == 0 || e->stored_len >= raw)
                    return snap__err(snap, err, EINVAL, F,
                                     "chunk %llu: lz4 chunk stores %u bytes for %u", I,
                                     e->stored_len, raw);
                break;
            default:
                return snap__err(snap, err, EINVAL, F, "chunk %llu: unknown kind %u", I, e->kind);
            }
            if (e->offset < h.data_offset || e->offset > snap->mem_file_size ||
                e->stored_len > snap->mem_file_size - e->offset)
                return snap__err(snap, err, EINVAL, F,
                                 "chunk %llu: data at %llu+%u points past the end of the file "
                                 "(%llu bytes)",
                                 I, (unsigned long long)e->offset, e->stored_len,
                                 (unsigned long long)snap->mem_file_size);
            /* Data is laid out in table order; anything else is an overlap
             * (or a crafted table), which a reader must never trust. */
            if (e->offset < prev_end)
                return snap__err(snap, err, EINVAL, F,
                                 "chunk %llu: data at %llu overlaps the previous chunk's "
                                 "(ending at %llu)",
                                 I, (unsigned long long)e->offset, (unsigned long long)prev_end);
            prev_end = e->offset + e->stored_len;
        }
    }
    snap->table = TAKE_PTR(t);
    return 0;
}

int snap__chunk_decode(const snap_t *snap, uint64_t idx, const void *stored, void *dst,
                       thaw_err_t *err)
{
    const struct snap__chunk_entry *e = &snap->table[idx];
    switch (e->kind) {
    case SNAP__CHUNK_ZERO:
        memset(dst, 0, e->raw_len);
        return 0;
    case SNAP__CHUNK_RAW:
        if (stored != dst)
            memcpy(dst, stored, e->raw_len);
        break;
    default: {
        int r = LZ4_decompress_safe(stored, dst, (int)e->stored_len, (int)e->raw_len);
        if (r != (int)e->raw_len)
            return snap__err(snap, err, EBADMSG, SNAP_MEMORY_FILE, "chunk %llu: corrupt lz4 data",
                             (unsigned long long)idx);
    }
    }
    if (SNAP__CRC_BAD(thaw_crc32c(0, dst, e->raw_len), e->crc32c))
        return snap__err(snap, err, EBADMSG, SNAP_MEMORY_FILE, "chunk %llu: checksum mismatch",
                         (unsigned long long)idx);
    return 0;
}

int snap__chunk_read(const snap_t *snap, uint64_t idx, void *dst, void *scratch, thaw_err_t *err)
{
    const struct snap__chunk_entry *e = &snap->table[idx];
    if (e->kind == SNAP__CHUNK_ZERO)
        return snap__chunk_decode(snap, idx, NULL, dst, err);
    /* Raw chunks are read straight into place. */
    char *buf = e->kind == SNAP__CHUNK_RAW ? dst : scratch;
    size_t got = 0;
    while (got < e->stored_len) {
        ssize_t n = pread(snap->mem_fd, buf + got, e->stored_len - got, (off_t)(e->offset + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return snap__err(snap, err, errno, SNAP_MEMORY_FILE, "chunk %llu: read failed",
                             (unsigned long long)idx);
        if (n == 0)
            return snap__err(snap, err, EIO, SNAP_MEMORY_FILE, "chunk %llu: file truncated",
                             (unsigned long long)idx);
        got += (size_t)n;
    }
    return snap__chunk_decode(snap, idx, buf, dst, err);
}
