/* SPDX-License-Identifier: Apache-2.0 */
/*
 * snapshot/ internals shared between the module's files (never included from
 * outside snapshot/ except by its tests and fuzz target): the on-disk structs
 * of state.bin, memory.bin and workingset, the in-memory snapshot and memory
 * objects, and the snap__ helpers.  docs/snapshot-format.md describes the
 * same layout in prose; keep both in step.
 */
#ifndef THAW_SNAPSHOT_SNAP_INT_H
#define THAW_SNAPSHOT_SNAP_INT_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "snapshot/snap.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "snapshot files are little-endian fixed-width structs; port snap-int.h first"
#endif

/*
 * Format versions, separate from the release version.  Bump one when the
 * layout of its file changes in a way an older reader would misread (a new
 * field an old reader can ignore does not need a bump); readers refuse
 * versions newer than theirs with "future version".
 */
#define SNAP_MANIFEST_VERSION 1
#define SNAP__STATE_VERSION   1
#define SNAP__MEM_VERSION     1
#define SNAP__WS_VERSION      1

/*
 * Checksum comparisons.  A fuzzing build (the libFuzzer target defines
 * FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, as is customary) accepts any
 * checksum, so mutated inputs reach the bounds and decoding checks behind
 * them instead of all stopping at the first crc.
 */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define SNAP__CRC_BAD(got, want) ((void)(got), (void)(want), false)
#else
#define SNAP__CRC_BAD(got, want) ((got) != (want))
#endif

#define SNAP__STATE_MAGIC "THAWSTA\0"
#define SNAP__MEM_MAGIC   "THAWMEM\0"
#define SNAP__WS_MAGIC    "THAWWS\0\0"

/* state.bin: header, then sections, each padded to 8 bytes. */
struct snap__state_header {
    char magic[8];
    uint32_t version;
    uint32_t nsections;
};
_Static_assert(sizeof(struct snap__state_header) == 16, "state header layout");

struct snap__section_header {
    uint32_t id;
    uint32_t version;
    uint64_t length;
    uint32_t crc32c; /* of the payload */
    uint32_t reserved;
};
_Static_assert(sizeof(struct snap__section_header) == 24, "section header layout");

/* memory.bin: header, chunk table, then chunk data from data_offset. */
struct snap__mem_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size; /* sizeof(struct snap__mem_header) */
    uint32_t chunk_size;
    uint32_t codec; /* SNAP__CODEC_LZ4 */
    uint64_t nchunks;
    uint64_t memory_size; /* sum of region sizes */
    uint64_t table_offset;
    uint64_t data_offset;
    uint32_t table_crc32c;  /* of the whole chunk table */
    uint32_t header_crc32c; /* of this header with this field zero */
};
_Static_assert(sizeof(struct snap__mem_header) == 64, "memory header layout");

#define SNAP__CODEC_LZ4 1u

enum snap__chunk_kind {
    SNAP__CHUNK_ZERO = 0,
    SNAP__CHUNK_RAW = 1,
    SNAP__CHUNK_LZ4 = 2,
};

struct snap__chunk_entry {
    uint64_t offset;     /* in memory.bin; 0 for zero chunks */
    uint32_t stored_len; /* bytes in the file; 0 for zero chunks */
    uint32_t raw_len;    /* uncompressed bytes (chunk size, less at a region's end) */
    uint32_t crc32c;     /* of the uncompressed bytes; 0 for zero chunks */
    uint8_t kind;        /* enum snap__chunk_kind */
    uint8_t reserved[3];
};
_Static_assert(sizeof(struct snap__chunk_entry) == 24, "chunk entry layout");

/* workingset: header then `count` uint32 chunk indices in first-touch order. */
struct snap__ws_header {
    char magic[8];
    uint32_t version;
    uint32_t count;
    uint64_t nchunks; /* of the snapshot it was recorded on */
    uint32_t crc32c;  /* of the indices */
    uint32_t reserved;
};
_Static_assert(sizeof(struct snap__ws_header) == 32, "workingset header layout");

#define SNAP__MAX_WS_BYTES (64ull << 20)

/* A region as the reader knows it. */
struct snap__region {
    uint64_t guest_addr;
    uint64_t size;
    uint64_t offset;      /* in the logical image; a multiple of chunk_size */
    uint64_t first_chunk; /* offset / chunk_size */
    uint64_t nchunks;
};

struct snap__section {
    uint32_t id;
    uint32_t version;
    const void *data;
    size_t len;
};

struct snap {
    atomic_int refs;
    char *dir;
    char *kind;
    char *metadata; /* compact JSON */
    int64_t created;
    uint32_t chunk_size;
    size_t nregions;
    struct snap__region *regions;
    uint64_t memory_size; /* sum of region sizes */
    uint64_t image_size;  /* logical image: last offset + size rounded up to a page */

    void *state_buf;
    size_t nsections;
    struct snap__section *sections;

    int mem_fd;
    uint64_t mem_file_size;
    uint64_t nchunks;
    struct snap__chunk_entry *table;

    pthread_mutex_t base_lock;
    snap_base_t *base; /* cached shared base, or NULL */
};

struct snap_base {
    atomic_int refs;
    int fd; /* sealed memfd holding the logical image */
    uint64_t size;
    uint64_t build_ns;
};

struct snap__lazy;

struct snap_mem {
    snap_t *snap;
    snap_engine_t engine;
    snap_base_t *base; /* shared */
    size_t nregions;
    snap_region_t *regions; /* host mappings, one per snapshot region */
    struct snap__lazy *lazy;
    bool aborted;

    pthread_mutex_t err_lock;
    bool failed;
    thaw_err_t first_err;
    snap_mem_error_cb on_error;
    void *opaque;

    _Atomic uint64_t faults, chunks_faulted, chunks_prefetched, chunks_zero, bytes_read,
        bytes_installed;
    uint64_t attach_ns;
};

/* ---- codec.c */
/* 1 if the len bytes at p are all zero. */
bool snap__is_zero(const void *p, size_t len);
/* Per-thread compression state for `level` (see snap.h); NULL on ENOMEM. */
void *snap__lz4_state_new(int level);
/* Compress src into dst (capacity len-1): returns the stored length, or 0
 * when the chunk does not shrink and must be stored raw. */
size_t snap__lz4_compress(void *state, int level, const void *src, size_t len, void *dst);

/* ---- state.c */
/* Encode sections into a malloc'd buffer. */
int snap__state_encode(const snap_section_t *sections, size_t n, void **out, size_t *out_len,
                       thaw_err_t *err);
/* Parse and verify buf (kept by the caller): fills snap->nsections/sections. */
int snap__state_parse(snap_t *snap, const void *buf, size_t len, thaw_err_t *err);

/* ---- manifest.c */
struct snap__manifest_files {
    uint64_t state_size;
    uint32_t state_crc;
    uint64_t mem_size;
    uint32_t mem_table_crc;
};
int snap__manifest_encode(const snap_t *layout, int lz4_level, const char *metadata_json,
                          const struct snap__manifest_files *files, char **out, thaw_err_t *err);
/* Parse manifest text into snap (kind, metadata, regions, chunk size). */
int snap__manifest_parse(snap_t *snap, const char *text, size_t len,
                         struct snap__manifest_files *files, thaw_err_t *err);
/* Fill region offsets/chunks from sizes; validates overlaps and caps. */
int snap__layout_regions(snap_t *snap, thaw_err_t *err);

/* ---- memfile.c */
/* Validate the header and chunk table of the open memory file. */
int snap__memfile_load(snap_t *snap, const struct snap__manifest_files *files, thaw_err_t *err);
/* Verify and decode a stored chunk already in memory into dst (raw_len bytes). */
int snap__chunk_decode(const snap_t *snap, uint64_t idx, const void *stored, void *dst,
                       thaw_err_t *err);
/* pread + decode chunk idx into dst; scratch holds chunk_size bytes. */
int snap__chunk_read(const snap_t *snap, uint64_t idx, void *dst, void *scratch, thaw_err_t *err);
/* Write memory.bin for the regions into fd (empty, positioned anywhere);
 * buffered: through the page cache even where O_DIRECT works. */
int snap__memfile_write(int fd, const snap_t *layout, const snap_region_t *regions, int lz4_level,
                        unsigned threads, bool buffered, snap_write_stats_t *stats,
                        uint32_t *table_crc, uint64_t *file_size, thaw_err_t *err);

/* ---- memout.c */
/* Staging for copied appends: SNAP__OUT_BUFS buffers of SNAP__OUT_BUF_SIZE,
 * one filling while the others are written; long raw runs bypass them.  At
 * most SNAP__OUT_QD writes in flight. */
#define SNAP__OUT_BUFS         4u
#define SNAP__OUT_BUF_SIZE     (2u << 20)
#define SNAP__OUT_QD           8u
/* memory.bin data written through the page cache before O_DIRECT starts. */
#define SNAP__OUT_DIRECT_AFTER (4u << 20)

struct snap__out_io {
    bool busy;
    int buf; /* staging buffer, or -1: the caller's memory */
    const char *p;
    uint64_t off;
    size_t len, done;
};

typedef struct snap__out {
    int fd;
    bool direct;               /* fd has O_DIRECT set (cleared again by finish) */
    bool want_direct;          /* O_DIRECT possible, not switched on yet */
    bool ring_ok;              /* io_uring writes; else synchronous pwrite */
    bool stalled;              /* the ring stopped completing: new writes go synchronous */
    unsigned stall_ms;         /* no completion for this long is a stall (0: the default) */
    uint32_t align, mem_align; /* DIO alignment of file offsets and memory; 1: no DIO */
    struct io_uring ring;
    char *mem; /* the staging buffers, one page-aligned mapping */
    bool buf_busy[SNAP__OUT_BUFS];
    struct snap__out_io io[SNAP__OUT_QD];
    unsigned cur, inflight;
    size_t fill;      /* bytes in staging buffer cur */
    size_t pad;       /* zeros written after the last flushed buffer's data */
    uint64_t cur_off; /* file offset of staging buffer cur's first byte */
    uint64_t start;   /* file offset of the first byte */
    int error;        /* first failure, -errno */
} snap__out_t;

/* Start writing fd at `start` (a multiple of 4096).  O_DIRECT is used after
 * the first SNAP__OUT_DIRECT_AFTER bytes when the file system supports it
 * and !buffered.  0 or -errno. */
int snap__out_init(snap__out_t *o, int fd, uint64_t start, bool buffered, thaw_err_t *err);
/* Append len bytes, copied (p may be reused at once); *off: where they land. */
int snap__out_append(snap__out_t *o, const void *p, size_t len, uint64_t *off, thaw_err_t *err);
/* Append len bytes written from p itself, which must stay unchanged until
 * snap__out_finish; they may land after a few bytes of padding (*off says
 * where).  Copies instead when p or len do not suit O_DIRECT. */
int snap__out_append_inplace(snap__out_t *o, const void *p, size_t len, uint64_t *off,
                             thaw_err_t *err);
/* Write what is left, wait for every write, leave fd without O_DIRECT and
 * exactly *end bytes long. */
int snap__out_finish(snap__out_t *o, uint64_t *end, thaw_err_t *err);
/* Wait for writes still in flight (after an error) and free everything. */
void snap__out_destroy(snap__out_t *o);

/* ---- decode.c */
typedef struct snap__decode_stats {
    uint64_t bytes_read, bytes_installed, chunks_zero;
} snap__decode_stats_t;
/* Decode every stored chunk of snap into bases[region] + its offset in the
 * region, on up to `threads` threads.  Returns 0 or the first error. */
int snap__decode_all(const snap_t *snap, char *const *bases, unsigned threads,
                     snap__decode_stats_t *stats, thaw_err_t *err);
/* Threads for whole-image decoding when the caller does not say: online
 * CPUs, at most 4. */
unsigned snap__default_threads(void);

/* ---- open.c */
snap_t *snap__ref(snap_t *snap);
/* Error helper: "snapshot '<dir>': <file>: <msg>". */
int snap__err(const snap_t *snap, thaw_err_t *err, int code, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ---- mem.c */
/* Record the first failure, call on_error once. */
void snap__mem_fail(snap_mem_t *mem, const thaw_err_t *err);
/* Map a range that raises SIGBUS on access (KVM: -EFAULT) over [addr, addr+len). */
int snap__map_sigbus(void *addr, size_t len);

/* ---- eager.c, shared.c, lazy.c */
int snap__eager_attach(snap_mem_t *mem, unsigned threads, thaw_err_t *err);
int snap__shared_attach(snap_mem_t *mem, snap_base_t *base, thaw_err_t *err);
/* Build the base image on `threads` threads (0: snap__default_threads). */
int snap__base_get(snap_t *snap, unsigned threads, snap_base_t **out, thaw_err_t *err);
int snap__lazy_attach(snap_mem_t *mem, const snap_mem_opts_t *opts, thaw_err_t *err);
/* Stop the fault thread, poison every region, wake blocked faulters (idempotent). */
void snap__lazy_abort(snap_mem_t *mem);
/* Release the uffd, ring and buffers (after snap__lazy_abort). */
void snap__lazy_free(snap_mem_t *mem);
int snap__lazy_ws_save(snap_mem_t *mem, thaw_err_t *err);

/* ---- workingset.c */
/* Load the snapshot's workingset (missing file: 0 with *count 0). */
int snap__ws_load(const snap_t *snap, uint32_t **out, size_t *count, thaw_err_t *err);
int snap__ws_save(const snap_t *snap, const uint32_t *idx, size_t count, thaw_err_t *err);

/* ---- fsutil.c */
/* Write all of buf at fd's offset, then fsync. */
int snap__write_file_at(int dfd, const char *name, const void *buf, size_t len, thaw_err_t *err);
/* Remove a flat directory and what it holds. */
void snap__remove_tree(const char *path);
/* Read a whole file (up to cap bytes) into a malloc'd, NUL-terminated buffer. */
int snap__read_file(int dfd, const char *name, size_t cap, void **out, size_t *len, int *fd_out,
                    thaw_err_t *err);

#endif
