// SPDX-License-Identifier: Apache-2.0
/*
 * state.bin: the caller's opaque state sections (vCPU, VM and device state
 * for vmm/), each with an id, a version, a length and a crc32c.  The reader
 * verifies every section's bounds and checksum at open, so a caller never
 * sees a torn section; unknown ids are kept and simply never asked for.
 */
#include "snapshot/snap-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/crc32c.h"

static size_t pad8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

int snap__state_encode(const snap_section_t *sections, size_t n, void **out, size_t *out_len,
                       thaw_err_t *err)
{
    if (n > SNAP_MAX_SECTIONS)
        return thaw_err_set(err, E2BIG, "%zu state sections, the limit is %u", n,
                            SNAP_MAX_SECTIONS);
    size_t total = sizeof(struct snap__state_header);
    for (size_t i = 0; i < n; i++) {
        if (!sections[i].data && sections[i].len)
            return thaw_err_set(err, EINVAL, "state section %u: no data", sections[i].id);
        for (size_t j = 0; j < i; j++)
            if (sections[j].id == sections[i].id)
                return thaw_err_set(err, EINVAL, "state section %u: duplicate id", sections[i].id);
        if (sections[i].len > SNAP_MAX_STATE_BYTES)
            return thaw_err_set(err, EFBIG, "state section %u: too large", sections[i].id);
        total += sizeof(struct snap__section_header) + pad8(sections[i].len);
        if (total > SNAP_MAX_STATE_BYTES)
            return thaw_err_set(err, EFBIG, "state sections exceed the %llu byte cap",
                                (unsigned long long)SNAP_MAX_STATE_BYTES);
    }
    _cleanup_free_ char *buf = calloc(1, total);
    if (!buf)
        return thaw_err_sys(err, ENOMEM, "state.bin");
    struct snap__state_header h = {.version = SNAP__STATE_VERSION, .nsections = (uint32_t)n};
    memcpy(h.magic, SNAP__STATE_MAGIC, 8);
    memcpy(buf, &h, sizeof(h));
    size_t off = sizeof(h);
    for (size_t i = 0; i < n; i++) {
        struct snap__section_header sh = {
            .id = sections[i].id,
            .version = sections[i].version,
            .length = sections[i].len,
            .crc32c = thaw_crc32c(0, sections[i].data, sections[i].len),
        };
        memcpy(buf + off, &sh, sizeof(sh));
        off += sizeof(sh);
        if (sections[i].len)
            memcpy(buf + off, sections[i].data, sections[i].len);
        off += pad8(sections[i].len);
    }
    *out = TAKE_PTR(buf);
    *out_len = total;
    return 0;
}

int snap__state_parse(snap_t *snap, const void *buf, size_t len, thaw_err_t *err)
{
    const char *F = SNAP_STATE_FILE;
    const char *b = buf;
    struct snap__state_header h;
    if (len < sizeof(h))
        return snap__err(snap, err, EINVAL, F, "truncated header (%zu bytes)", len);
    memcpy(&h, b, sizeof(h));
    if (memcmp(h.magic, SNAP__STATE_MAGIC, 8) != 0)
        return snap__err(snap, err, EINVAL, F, "wrong magic");
    if (h.version > SNAP__STATE_VERSION)
        return snap__err(snap, err, EPROTONOSUPPORT, F,
                         "future version %u (this reader knows up to %u)", h.version,
                         SNAP__STATE_VERSION);
    if (h.version == 0)
        return snap__err(snap, err, EINVAL, F, "bad version 0");
    if (h.nsections > SNAP_MAX_SECTIONS)
        return snap__err(snap, err, E2BIG, F, "%u sections is over the limit of %u", h.nsections,
                         SNAP_MAX_SECTIONS);
    _cleanup_free_ struct snap__section *secs =
        calloc(h.nsections ? h.nsections : 1, sizeof(*secs));
    if (!secs)
        return snap__err(snap, err, ENOMEM, F, "out of memory");
    size_t off = sizeof(h);
    for (uint32_t i = 0; i < h.nsections; i++) {
        struct snap__section_header sh;
        if (len - off < sizeof(sh))
            return snap__err(snap, err, EINVAL, F, "section %u: truncated header", i);
        memcpy(&sh, b + off, sizeof(sh));
        off += sizeof(sh);
        if (sh.length > len - off)
            return snap__err(snap, err, EINVAL, F,
                             "section %u (id %u): length %llu runs past the end of the file", i,
                             sh.id, (unsigned long long)sh.length);
        if (SNAP__CRC_BAD(thaw_crc32c(0, b + off, sh.length), sh.crc32c))
            return snap__err(snap, err, EBADMSG, F, "section %u (id %u): checksum mismatch", i,
                             sh.id);
        for (uint32_t j = 0; j < i; j++)
            if (secs[j].id == sh.id)
                return snap__err(snap, err, EINVAL, F, "section %u: duplicate id %u", i, sh.id);
        secs[i] = (struct snap__section){
            .id = sh.id, .version = sh.version, .data = b + off, .len = sh.length};
        size_t adv = pad8(sh.length);
        if (adv > len - off)
            return snap__err(snap, err, EINVAL, F, "section %u (id %u): truncated padding", i,
                             sh.id);
        off += adv;
    }
    if (off != len)
        return snap__err(snap, err, EINVAL, F, "%zu unexpected bytes after the last section",
                         len - off);
    snap->sections = TAKE_PTR(secs);
    snap->nsections = h.nsections;
    return 0;
}
