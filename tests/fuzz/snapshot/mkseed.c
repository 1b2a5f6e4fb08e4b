// SPDX-License-Identifier: Apache-2.0
/*
 * Writes the seed corpus of fuzz_snap_open: a few small valid snapshots
 * (different chunk sizes, zero/raw/lz4 chunks, sections, metadata) packed
 * in the fuzz target's input format.  Usage: mkseed OUTDIR.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapshot/snap.h"

static size_t slurp(const char *dir, const char *name, char **out)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        exit(1);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n + 1);
    if (fread(*out, 1, (size_t)n, f) != (size_t)n)
        exit(1);
    fclose(f);
    return (size_t)n;
}

static void seed(const char *outdir, const char *name, uint32_t chunk, size_t size, int nreg)
{
    char tmp[] = "/tmp/thaw-mkseed.XXXXXX";
    if (!mkdtemp(tmp))
        exit(1);
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/s", tmp);
    unsigned char *mem = calloc(1, size);
    for (size_t i = 0; i < size; i++) {
        size_t page = i / 4096;
        if (page % 3 == 1)
            mem[i] = (unsigned char)("thaw snapshot "[i % 14]);
        else if (page % 3 == 2)
            mem[i] = (unsigned char)((i * 2654435761u) >> 13);
    }
    snap_region_t regs[2] = {{.guest_addr = 0, .host = mem, .size = size},
                             {.guest_addr = 1u << 30, .host = mem, .size = 4096}};
    snap_section_t secs[2] = {{.id = 1, .version = 1, .data = "vcpu", .len = 4},
                              {.id = 2, .version = 5, .data = "devices!", .len = 8}};
    snap_write_opts_t o = {.chunk_size = chunk, .kind = "seed", .metadata_json = "{\"t\":1}"};
    thaw_err_t err;
    if (snap_write(dir, regs, (size_t)nreg, secs, 2, &o, NULL, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    char *m, *s, *d;
    size_t lm = slurp(dir, SNAP_MANIFEST_FILE, &m);
    size_t ls = slurp(dir, SNAP_STATE_FILE, &s);
    size_t ld = slurp(dir, SNAP_MEMORY_FILE, &d);
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", outdir, name);
    FILE *f = fopen(path, "wb");
    uint32_t a = (uint32_t)lm, b = (uint32_t)ls;
    fwrite(&a, 4, 1, f);
    fwrite(&b, 4, 1, f);
    fwrite(m, 1, lm, f);
    fwrite(s, 1, ls, f);
    fwrite(d, 1, ld, f);
    fclose(f);
    free(m);
    free(s);
    free(d);
    free(mem);
    char cmd[4300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mkseed OUTDIR\n");
        return 2;
    }
    seed(argv[1], "seed-4k-2regions", 4096, 40960, 2);
    seed(argv[1], "seed-8k-1region", 8192, 24576, 1);
    seed(argv[1], "seed-16k-partial", 16384, 20480, 2);
    return 0;
}
