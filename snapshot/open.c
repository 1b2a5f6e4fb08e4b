// SPDX-License-Identifier: Apache-2.0
/*
 * snap_open and the read-only accessors: loads the manifest, state.bin and
 * the memory file's table, validating all of it before returning, and keeps
 * the memory file open for the engines.  The snapshot is reference counted
 * so attached memory and shared bases outlive the caller's handle.
 */
#include "snapshot/snap-int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/crc32c.h"

int snap__err(const snap_t *snap, thaw_err_t *err, int code, const char *file, const char *fmt, ...)
{
    char msg[THAW_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return thaw_err_set(err, code, "snapshot '%s': %s: %s", snap && snap->dir ? snap->dir : "?",
                        file, msg);
}

snap_t *snap__ref(snap_t *snap)
{
    atomic_fetch_add(&snap->refs, 1);
    return snap;
}

static void snap_free(snap_t *snap)
{
    if (snap->base)
        snap_base_put(snap->base);
    if (snap->mem_fd >= 0)
        close(snap->mem_fd);
    free(snap->table);
    free(snap->sections);
    free(snap->state_buf);
    free(snap->regions);
    free(snap->metadata);
    free(snap->kind);
    free(snap->dir);
    pthread_mutex_destroy(&snap->base_lock);
    free(snap);
}

void snap_close(snap_t *snap)
{
    if (snap && atomic_fetch_sub(&snap->refs, 1) == 1)
        snap_free(snap);
}

int snap_open(const char *dir, snap_t **out, thaw_err_t *err)
{
    *out = NULL;
    _cleanup_close_ int dfd = -1;
    struct snap__manifest_files files = {0};
    snap_t *snap = calloc(1, sizeof(*snap));
    if (!snap)
        return thaw_err_sys(err, ENOMEM, "snapshot '%s'", dir);
    atomic_init(&snap->refs, 1);
    snap->mem_fd = -1;
    pthread_mutex_init(&snap->base_lock, NULL);
    int r;
    snap->dir = strdup(dir);
    if (!snap->dir) {
        r = thaw_err_sys(err, ENOMEM, "snapshot '%s'", dir);
        goto fail;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        r = thaw_err_sys(err, errno, "snapshot '%s': open directory", dir);
        goto fail;
    }
    {
        _cleanup_free_ void *text = NULL;
        size_t len;
        if ((r = snap__read_file(dfd, SNAP_MANIFEST_FILE, SNAP_MAX_MANIFEST, &text, &len, NULL,
                                 err)) < 0) {
            thaw_err_wrap(err, "snapshot '%s'", snap->dir);
            goto fail;
        }
        if ((r = snap__manifest_parse(snap, text, len, &files, err)) < 0)
            goto fail;
    }
    {
        size_t len;
        if ((r = snap__read_file(dfd, SNAP_STATE_FILE, SNAP_MAX_STATE_BYTES, &snap->state_buf, &len,
                                 NULL, err)) < 0) {
            thaw_err_wrap(err, "snapshot '%s'", snap->dir);
            goto fail;
        }
        if (len != files.state_size ||
            SNAP__CRC_BAD(thaw_crc32c(0, snap->state_buf, len), files.state_crc)) {
            r = snap__err(snap, err, EBADMSG, SNAP_STATE_FILE,
                          "size or checksum differs from the manifest (%zu bytes)", len);
            goto fail;
        }
        if ((r = snap__state_parse(snap, snap->state_buf, len, err)) < 0)
            goto fail;
    }
    snap->mem_fd = openat(dfd, SNAP_MEMORY_FILE, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (snap->mem_fd < 0) {
        r = snap__err(snap, err, errno, SNAP_MEMORY_FILE, "open: %s", strerror(errno));
        goto fail;
    }
    if ((r = snap__memfile_load(snap, &files, err)) < 0)
        goto fail;
    *out = snap;
    return 0;
fail:
    snap_free(snap);
    return r;
}

const char *snap_dir(const snap_t *snap)
{
    return snap->dir;
}

const char *snap_kind(const snap_t *snap)
{
    return snap->kind;
}

const char *snap_metadata_json(const snap_t *snap)
{
    return snap->metadata;
}

int64_t snap_created(const snap_t *snap)
{
    return snap->created;
}

uint32_t snap_chunk_size(const snap_t *snap)
{
    return snap->chunk_size;
}

uint64_t snap_memory_size(const snap_t *snap)
{
    return snap->memory_size;
}

size_t snap_region_count(const snap_t *snap)
{
    return snap->nregions;
}

int snap_region_get(const snap_t *snap, size_t i, snap_region_t *out)
{
    if (i >= snap->nregions)
        return -ERANGE;
    *out =
        (snap_region_t){.guest_addr = snap->regions[i].guest_addr, .size = snap->regions[i].size};
    return 0;
}

int snap_section_find(const snap_t *snap, uint32_t id, uint32_t *version, const void **data,
                      size_t *len)
{
    for (size_t i = 0; i < snap->nsections; i++) {
        if (snap->sections[i].id != id)
            continue;
        if (version)
            *version = snap->sections[i].version;
        if (data)
            *data = snap->sections[i].data;
        if (len)
            *len = snap->sections[i].len;
        return 0;
    }
    return -ENOENT;
}
