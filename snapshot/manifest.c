// SPDX-License-Identifier: Apache-2.0
/*
 * manifest.json: the snapshot's table of contents, built and parsed with
 * jansson.  It names the format version, kind, creation time, chunk size and
 * codec, the memory regions with their place in the memory image, the sizes
 * and checksums of state.bin and memory.bin, and the caller's free-form
 * metadata.  Also the region layout rules shared by writer and reader.
 */
#include "snapshot/snap-int.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"

/* jansson provides json_decrefp for exactly this. */
#define _cleanup_json_ _cleanup_(json_decrefp)

int snap__layout_regions(snap_t *snap, thaw_err_t *err)
{
    uint32_t cs = snap->chunk_size;
    if (cs < SNAP_CHUNK_MIN || cs > SNAP_CHUNK_MAX || (cs & (cs - 1)))
        return thaw_err_set(err, EINVAL, "chunk size %u is not a power of two between %u and %u",
                            cs, SNAP_CHUNK_MIN, SNAP_CHUNK_MAX);
    if (snap->nregions > SNAP_MAX_REGIONS)
        return thaw_err_set(err, E2BIG, "%zu regions, the limit is %u", snap->nregions,
                            SNAP_MAX_REGIONS);
    uint64_t off = 0, total = 0;
    for (size_t i = 0; i < snap->nregions; i++) {
        struct snap__region *r = &snap->regions[i];
        if (r->size == 0 || r->size % SNAP_PAGE_SIZE || r->guest_addr % SNAP_PAGE_SIZE)
            return thaw_err_set(err, EINVAL,
                                "region %zu: address 0x%llx and size %llu must be non-zero "
                                "multiples of %u",
                                i, (unsigned long long)r->guest_addr, (unsigned long long)r->size,
                                SNAP_PAGE_SIZE);
        if (r->size > SNAP_MAX_MEMORY || total + r->size > SNAP_MAX_MEMORY)
            return thaw_err_set(err, EFBIG, "region %zu: memory exceeds the %llu byte cap", i,
                                (unsigned long long)SNAP_MAX_MEMORY);
        if (r->guest_addr + r->size < r->guest_addr)
            return thaw_err_set(err, EINVAL, "region %zu: guest range wraps around", i);
        for (size_t j = 0; j < i; j++) {
            const struct snap__region *o = &snap->regions[j];
            if (r->guest_addr < o->guest_addr + o->size && o->guest_addr < r->guest_addr + r->size)
                return thaw_err_set(err, EINVAL, "region %zu overlaps region %zu in guest space", i,
                                    j);
        }
        r->offset = off;
        r->first_chunk = off / cs;
        r->nchunks = (r->size + cs - 1) / cs;
        off += r->nchunks * cs;
        total += r->size;
        snap->image_size = r->offset + r->size;
    }
    if (off / cs > SNAP_MAX_CHUNKS)
        return thaw_err_set(err, EFBIG,
                            "%llu chunks is over the limit of %llu: use a larger chunk size",
                            (unsigned long long)(off / cs), (unsigned long long)SNAP_MAX_CHUNKS);
    snap->memory_size = total;
    snap->nchunks = off / cs;
    return 0;
}

int snap__manifest_encode(const snap_t *layout, int lz4_level, const char *metadata_json,
                          const struct snap__manifest_files *files, char **out, thaw_err_t *err)
{
    _cleanup_json_ json_t *meta = NULL;
    if (metadata_json) {
        json_error_t je;
        meta = json_loads(metadata_json, JSON_REJECT_DUPLICATES, &je);
        if (!meta)
            return thaw_err_set(err, EINVAL, "metadata is not JSON: line %d: %s", je.line, je.text);
        if (!json_is_object(meta))
            return thaw_err_set(err, EINVAL, "metadata must be a JSON object");
    } else {
        meta = json_object();
    }
    _cleanup_json_ json_t *regions = json_array();
    if (!meta || !regions)
        return thaw_err_sys(err, ENOMEM, "manifest");
    for (size_t i = 0; i < layout->nregions; i++) {
        const struct snap__region *r = &layout->regions[i];
        if (json_array_append_new(
                regions, json_pack("{s:I, s:I, s:I}", "guest_addr", (json_int_t)r->guest_addr,
                                   "size", (json_int_t)r->size, "offset", (json_int_t)r->offset)))
            return thaw_err_sys(err, ENOMEM, "manifest");
    }
    json_error_t je;
    _cleanup_json_ json_t *root = json_pack_ex(
        &je, 0, "{s:s, s:i, s:s, s:I, s:I, s:s, s:i, s:O, s:{s:{s:I, s:I}, s:{s:I, s:I}}, s:O}",
        "format", "thaw-snapshot", "version", SNAP_MANIFEST_VERSION, "kind", layout->kind,
        "created", (json_int_t)layout->created, "chunk_size", (json_int_t)layout->chunk_size,
        "codec", "lz4", "lz4_level", lz4_level, "regions", regions, "files", SNAP_STATE_FILE,
        "size", (json_int_t)files->state_size, "crc32c", (json_int_t)files->state_crc,
        SNAP_MEMORY_FILE, "size", (json_int_t)files->mem_size, "table_crc32c",
        (json_int_t)files->mem_table_crc, "metadata", meta);
    if (!root)
        return thaw_err_set(err, ENOMEM, "manifest: %s", je.text);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!s)
        return thaw_err_sys(err, ENOMEM, "manifest");
    *out = s;
    return 0;
}

/* Fetch a non-negative integer member; names the field in the error. */
static int get_uint(const snap_t *snap, json_t *obj, const char *what, const char *key,
                    uint64_t max, uint64_t *out, thaw_err_t *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return snap__err(snap, err, EINVAL, SNAP_MANIFEST_FILE, "%s: missing field \"%s\"", what,
                         key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return snap__err(snap, err, EINVAL, SNAP_MANIFEST_FILE,
                         "%s: field \"%s\" must be an integer in [0, %llu]", what, key,
                         (unsigned long long)max);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int snap__manifest_parse(snap_t *snap, const char *text, size_t len,
                         struct snap__manifest_files *files, thaw_err_t *err)
{
    const char *F = SNAP_MANIFEST_FILE;
    json_error_t je;
    _cleanup_json_ json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return snap__err(snap, err, EINVAL, F, "not JSON: line %d: %s", je.line, je.text);
    if (!json_is_object(root))
        return snap__err(snap, err, EINVAL, F, "not a JSON object");
    json_t *fmt = json_object_get(root, "format");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "thaw-snapshot") != 0)
        return snap__err(snap, err, EINVAL, F, "field \"format\" is not \"thaw-snapshot\"");
    uint64_t v;
    int r;
    if ((r = get_uint(snap, root, "manifest", "version", UINT32_MAX, &v, err)) < 0)
        return r;
    if (v > SNAP_MANIFEST_VERSION)
        return snap__err(snap, err, EPROTONOSUPPORT, F,
                         "future version %llu (this reader knows up to %d)", (unsigned long long)v,
                         SNAP_MANIFEST_VERSION);
    if (v == 0)
        return snap__err(snap, err, EINVAL, F, "bad version 0");
    json_t *kind = json_object_get(root, "kind");
    if (!json_is_string(kind) || json_string_length(kind) > SNAP_MAX_KIND_LEN)
        return snap__err(snap, err, EINVAL, F, "field \"kind\" missing or not a short string");
    uint64_t created;
    if ((r = get_uint(snap, root, "manifest", "created", INT64_MAX, &created, err)) < 0)
        return r;
    if ((r = get_uint(snap, root, "manifest", "chunk_size", SNAP_CHUNK_MAX, &v, err)) < 0)
        return r;
    snap->chunk_size = (uint32_t)v;
    json_t *codec = json_object_get(root, "codec");
    if (!json_is_string(codec) || strcmp(json_string_value(codec), "lz4") != 0)
        return snap__err(snap, err, EINVAL, F, "field \"codec\" is not \"lz4\"");
    json_t *meta = json_object_get(root, "metadata");
    if (!json_is_object(meta))
        return snap__err(snap, err, EINVAL, F, "field \"metadata\" missing or not an object");

    json_t *regions = json_object_get(root, "regions");
    if (!json_is_array(regions))
        return snap__err(snap, err, EINVAL, F, "field \"regions\" missing or not an array");
    size_t n = json_array_size(regions);
    if (n > SNAP_MAX_REGIONS)
        return snap__err(snap, err, E2BIG, F, "%zu regions, the limit is %u", n, SNAP_MAX_REGIONS);
    _cleanup_free_ struct snap__region *regs = calloc(n ? n : 1, sizeof(*regs));
    if (!regs)
        return snap__err(snap, err, ENOMEM, F, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(regions, i);
        char what[32];
        snprintf(what, sizeof(what), "region %zu", i);
        if (!json_is_object(o))
            return snap__err(snap, err, EINVAL, F, "%s: not an object", what);
        if ((r = get_uint(snap, o, what, "guest_addr", INT64_MAX, &regs[i].guest_addr, err)) < 0 ||
            (r = get_uint(snap, o, what, "size", SNAP_MAX_MEMORY, &regs[i].size, err)) < 0 ||
            (r = get_uint(snap, o, what, "offset", INT64_MAX, &regs[i].offset, err)) < 0)
            return r;
    }
    json_t *jf = json_object_get(root, "files");
    json_t *js = jf ? json_object_get(jf, SNAP_STATE_FILE) : NULL;
    json_t *jm = jf ? json_object_get(jf, SNAP_MEMORY_FILE) : NULL;
    if (!json_is_object(js) || !json_is_object(jm))
        return snap__err(snap, err, EINVAL, F,
                         "field \"files\" lacks \"" SNAP_STATE_FILE "\" or \"" SNAP_MEMORY_FILE
                         "\"");
    uint64_t c1, c2;
    if ((r = get_uint(snap, js, SNAP_STATE_FILE, "size", SNAP_MAX_STATE_BYTES, &files->state_size,
                      err)) < 0 ||
        (r = get_uint(snap, js, SNAP_STATE_FILE, "crc32c", UINT32_MAX, &c1, err)) < 0 ||
        (r = get_uint(snap, jm, SNAP_MEMORY_FILE, "size", INT64_MAX, &files->mem_size, err)) < 0 ||
        (r = get_uint(snap, jm, SNAP_MEMORY_FILE, "table_crc32c", UINT32_MAX, &c2, err)) < 0)
        return r;
    files->state_crc = (uint32_t)c1;
    files->mem_table_crc = (uint32_t)c2;

    char *kind_s = strdup(json_string_value(kind));
    char *meta_s = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    if (!kind_s || !meta_s) {
        free(kind_s);
        free(meta_s);
        return snap__err(snap, err, ENOMEM, F, "out of memory");
    }
    snap->kind = kind_s;
    snap->metadata = meta_s;
    snap->created = (int64_t)created;
    snap->nregions = n;
    snap->regions = TAKE_PTR(regs);

    /* Recompute the layout and insist the stored offsets agree with it, so
     * every later computation can trust offsets and chunk indices. */
    uint64_t stored_off[SNAP_MAX_REGIONS];
    for (size_t i = 0; i < n; i++)
        stored_off[i] = snap->regions[i].offset;
    thaw_err_t lerr;
    thaw_err_clear(&lerr);
    if ((r = snap__layout_regions(snap, &lerr)) < 0)
        return snap__err(snap, err, -r, F, "%s", lerr.msg);
    for (size_t i = 0; i < n; i++)
        if (stored_off[i] != snap->regions[i].offset)
            return snap__err(
                snap, err, EINVAL, F, "region %zu: offset %llu does not match the layout (%llu)", i,
                (unsigned long long)stored_off[i], (unsigned long long)snap->regions[i].offset);
    return 0;
}
