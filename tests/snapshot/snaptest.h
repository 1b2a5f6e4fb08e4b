/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers for the snapshot tests and snapbench: guest-like memory (runs of
 * zero, compressible and random pages), temporary directories, and raw
 * edits of snapshot files that keep the other checksums consistent so a
 * bad-input test reaches exactly the check it is named after.
 */
#ifndef THAW_TESTS_SNAPSHOT_SNAPTEST_H
#define THAW_TESTS_SNAPSHOT_SNAPTEST_H

#include <stddef.h>
#include <stdint.h>

#include "snapshot/snap-int.h"

/*
 * Fill size bytes like a guest: per 64 KiB block about 40% zero, 40%
 * compressible text, 20% random, with single zero/random pages mixed in;
 * the layout depends on seed.  Deterministic.
 */
void st_fill_guest(void *p, size_t size, uint64_t seed);
/* Fill with random bytes (incompressible). */
void st_fill_random(void *p, size_t size, uint64_t seed);

/* mkdtemp under $TMPDIR or /tmp; returns a malloc'd path. */
char *st_tmpdir(void);
/* rm -rf path. */
void st_rmtree(const char *path);
/* "<dir>/<name>" in a static buffer (one at a time). */
const char *st_path(const char *dir, const char *name);

/* A test image: two regions (one of them not a multiple of any chunk size). */
typedef struct st_image {
    snap_region_t regions[3];
    size_t nregions;
} st_image_t;

/* Region 0: 5 MiB + 12 KiB guest-like with a zero 2 MiB stretch at 2 MiB;
 * region 1: 1 MiB + 4 KiB random, at guest address 0x100000000;
 * region 2 (if three): 256 KiB all zero. */
void st_image_make(st_image_t *img, uint64_t seed, bool three);
void st_image_free(st_image_t *img);

/* Write img with two sections (ids 1 and 7) to dir; asserts success. */
void st_write(const char *dir, const st_image_t *img, uint32_t chunk_size, int level,
              unsigned threads, snap_write_stats_t *stats);

/* Compare attached memory with the image, byte for byte; returns 0 if equal. */
int st_mem_equals(const snap_mem_t *mem, const st_image_t *img);

/* File edits. */
int st_read_all(const char *path, void **buf, size_t *len);
int st_write_all(const char *path, const void *buf, size_t len);
/* Recompute memory.bin's header/table checksums after an edit, and the
 * manifest's size/crc fields for state.bin and memory.bin. */
void st_fix_memory_crcs(const char *dir);
void st_fix_manifest(const char *dir);
/* Set manifest field path (e.g. "version", "files/state.bin/size") to an
 * integer, or delete it when del is true.  Returns 0 or -1. */
int st_manifest_set(const char *dir, const char *key, long long value, bool del);
/* Load memory.bin's header and table (malloc'd). */
void st_load_table(const char *dir, struct snap__mem_header *h, struct snap__chunk_entry **t);
void st_store_table(const char *dir, const struct snap__mem_header *h,
                    const struct snap__chunk_entry *t);

/*
 * The direct I/O offset alignment statx (STATX_DIOALIGN) reports for a new
 * file in dir, or 0 when the file system reports none or one the writer
 * would not use (larger than 4096 or not dividing it: see memout.c).
 * *mem_align (may be NULL) gets the memory alignment.
 */
uint32_t st_dio_align(const char *dir, uint32_t *mem_align);

/* A writer region in its own mapping, host pointer `host_off` bytes past
 * the mapping's start (so it need not be page-aligned); st_region_free
 * unmaps it. */
void st_region_alloc(snap_region_t *r, uint64_t guest_addr, size_t size, size_t host_off);
void st_region_free(snap_region_t *r, size_t host_off);

#endif
