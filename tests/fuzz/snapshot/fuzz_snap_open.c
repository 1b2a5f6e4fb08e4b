// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for the snapshot reader.  An input is a packed snapshot:
 *   u32 manifest length, u32 state length, manifest.json, state.bin, then
 *   memory.bin (the rest), optionally followed by nothing else.
 * The three files are written to a private directory on tmpfs and opened
 * with snap_open; when that succeeds the eager engine restores the memory
 * (which reads, inflates and checks every chunk) and the shared base is
 * built.  Any crash, leak or hang is a bug: bad input must only ever give
 * an error.  Build: CC=clang meson setup build-fuzz -Dfuzzing=true.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapshot/snap.h"

static char dir[256];

static void put(const char *name, const uint8_t *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        abort();
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            abort();
        p += w;
        n -= (size_t)w;
    }
    close(fd);
}

static void cleanup(void)
{
    static const char *const names[] = {SNAP_MANIFEST_FILE, SNAP_STATE_FILE, SNAP_MEMORY_FILE};
    char path[512];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    snprintf(dir, sizeof(dir), "%s/thaw-fuzz-snap.XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir))
        abort();
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    uint32_t lm, ls;
    memcpy(&lm, data, 4);
    memcpy(&ls, data + 4, 4);
    data += 8;
    size -= 8;
    if (lm > size)
        lm = (uint32_t)size;
    if (ls > size - lm)
        ls = (uint32_t)(size - lm);
    put(SNAP_MANIFEST_FILE, data, lm);
    put(SNAP_STATE_FILE, data + lm, ls);
    put(SNAP_MEMORY_FILE, data + lm + ls, size - lm - ls);

    thaw_err_t err;
    snap_t *snap = NULL;
    if (snap_open(dir, &snap, &err) != 0)
        return 0;
    const void *p;
    size_t len;
    for (uint32_t id = 0; id < 8; id++)
        snap_section_find(snap, id, NULL, &p, &len);
    /* Bound the work per input: the cap allows far more than a fuzzer needs. */
    if (snap_memory_size(snap) <= (64u << 20)) {
        snap_mem_t *mem = NULL;
        if (snap_mem_attach(snap, SNAP_ENGINE_EAGER, NULL, &mem, &err) == 0)
            snap_mem_destroy(mem);
        if (snap_mem_attach(snap, SNAP_ENGINE_SHARED, NULL, &mem, &err) == 0)
            snap_mem_destroy(mem);
    }
    snap_close(snap);
    return 0;
}
