/* SPDX-License-Identifier: Apache-2.0 */
/*
 * snapshot/: thaw's snapshot format and restore engines (prefix snap_).
 *
 * A snapshot is a directory written atomically: manifest.json (jansson),
 * state.bin (opaque, versioned, checksummed sections chosen by the caller),
 * memory.bin (guest memory cut into fixed-size chunks, each stored as zero,
 * raw or lz4 behind a checksummed chunk table) and, once recorded, workingset
 * (the order in which a lazy restore first touched chunks).  The byte layout
 * is in docs/snapshot-format.md.
 *
 * This module knows nothing about KVM: it saves and restores memory regions
 * (guest address, host pointer, size) and state sections (id, version, bytes).
 * vmm/ hands the host pointers of an attached snap_mem_t to KVM as memory
 * slots.
 *
 * Conventions: functions return 0 (or a count) on success and -errno on
 * failure; those that read outside input also fill a thaw_err_t naming the
 * file, the item and the problem (err may be NULL).  What snap_open,
 * snap_mem_attach and snap_base_get return is released by snap_close,
 * snap_mem_destroy and snap_base_put, which accept NULL.
 */
#ifndef THAW_SNAPSHOT_SNAP_H
#define THAW_SNAPSHOT_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* File names inside a snapshot directory. */
#define SNAP_MANIFEST_FILE   "manifest.json"
#define SNAP_STATE_FILE      "state.bin"
#define SNAP_MEMORY_FILE     "memory.bin"
#define SNAP_WORKINGSET_FILE "workingset"

/* Chunk sizes: a power of two in [SNAP_CHUNK_MIN, SNAP_CHUNK_MAX]. */
#define SNAP_CHUNK_MIN     (4u << 10)
#define SNAP_CHUNK_MAX     (2u << 20)
#define SNAP_CHUNK_DEFAULT (64u << 10)

/* Region sizes and guest addresses must be multiples of this (a page). */
#define SNAP_PAGE_SIZE 4096u

/* Limits enforced by writer and reader (a size cap against absurd input). */
#define SNAP_MAX_REGIONS     64u
#define SNAP_MAX_MEMORY      (1ull << 40)  /* 1 TiB of guest memory in total */
#define SNAP_MAX_CHUNKS      (16ull << 20) /* table entries: 64 GiB at 4 KiB chunks */
#define SNAP_MAX_SECTIONS    4096u
#define SNAP_MAX_STATE_BYTES (256ull << 20)
#define SNAP_MAX_MANIFEST    (1u << 20)
#define SNAP_MAX_KIND_LEN    64u
#define SNAP_MAX_THREADS     64u
#define SNAP_MAX_QUEUE_DEPTH 256u

/*
 * lz4 levels: level < SNAP_LZ4_HC_MIN uses LZ4_compress_fast with
 * acceleration max(1, 1 - level) (so 0 and 1 are lz4's default, -8 is much
 * faster and compresses less); SNAP_LZ4_HC_MIN..SNAP_LZ4_HC_MAX use
 * LZ4_compress_HC at that level.
 */
#define SNAP_LZ4_HC_MIN 3
#define SNAP_LZ4_HC_MAX 12

/* ---------------------------------------------------------------- writer */

/* A memory region: guest physical address, where it is mapped here, size. */
typedef struct snap_region {
    uint64_t guest_addr;
    void *host; /* writer: read from here; snap_mem_region: map it here */
    uint64_t size;
} snap_region_t;

/* An opaque state section: the caller chooses ids; the payload is copied. */
typedef struct snap_section {
    uint32_t id;
    uint32_t version;
    const void *data;
    uint64_t len;
} snap_section_t;

typedef struct snap_write_opts {
    uint32_t chunk_size; /* 0: SNAP_CHUNK_DEFAULT */
    int lz4_level;       /* see SNAP_LZ4_HC_MIN; 0: lz4 default (fast) */
    unsigned threads;    /* compression threads; 0 or 1: the calling thread only */
    const char *kind;    /* free-form, e.g. "vm"; NULL: "generic" */
    /* A JSON object stored as the manifest's "metadata" (template name,
     * config, ...); NULL: {}.  Not JSON or not an object: -EINVAL. */
    const char *metadata_json;
    /* false (default): memory.bin past its first 4 MiB is written with
     * O_DIRECT where the file system supports it, bypassing the page cache
     * (fast, and it leaves the cache alone, but the first restore then reads
     * from disk); true: all through the page cache, which leaves the file
     * cached for an immediate restore.  Either decodes to the same memory. */
    bool buffered;
} snap_write_opts_t;

typedef struct snap_write_stats {
    uint64_t bytes_in;    /* guest memory bytes read */
    uint64_t bytes_out;   /* size of memory.bin */
    uint64_t state_bytes; /* size of state.bin */
    uint64_t chunks_zero; /* chunks stored as zero (no data) */
    uint64_t chunks_raw;  /* incompressible chunks stored as is */
    uint64_t chunks_lz4;  /* chunks stored lz4-compressed */
    uint64_t compress_ns; /* wall time spent compressing and writing memory */
    uint64_t total_ns;    /* wall time of the whole call, fsyncs included */
} snap_write_stats_t;

/*
 * Write a snapshot of `regions` and `sections` to directory `dir`
 * atomically: everything is written under "<dir>.tmp.<pid>.<n>", each file
 * and the directory fsync'ed, then renamed into place (an existing snapshot
 * at `dir` is swapped out with RENAME_EXCHANGE and removed), and the parent
 * directory fsync'ed.  A crash at any point leaves the old snapshot (or none)
 * at `dir`, never a partial one.  Region host memory is only read; region
 * sizes and guest addresses must be multiples of SNAP_PAGE_SIZE, regions may
 * not overlap in guest space, section ids must be unique.  Temporary
 * directories left by dead writers of the same target are removed first.
 * opts and stats may be NULL.  Returns 0 or -errno with err filled.
 */
int snap_write(const char *dir, const snap_region_t *regions, size_t nregions,
               const snap_section_t *sections, size_t nsections, const snap_write_opts_t *opts,
               snap_write_stats_t *stats, thaw_err_t *err);

/* ---------------------------------------------------------------- reader */

typedef struct snap snap_t;

/*
 * Open and validate the snapshot in `dir`: the manifest, every state section
 * (checksums included) and the memory file's header and chunk table (bounds,
 * overlaps, sizes, counts, versions) are checked here; chunk data checksums
 * are checked whenever a chunk is read.  On success *out holds a reference
 * released by snap_close.  Thread-safe for concurrent readers after open.
 */
int snap_open(const char *dir, snap_t **out, thaw_err_t *err);

/* Drop the caller's reference.  Attached memory and bases keep their own. */
void snap_close(snap_t *snap);

const char *snap_dir(const snap_t *snap);
const char *snap_kind(const snap_t *snap);
/* The caller's metadata object, serialised compactly; owned by snap. */
const char *snap_metadata_json(const snap_t *snap);
/* Manifest "created" (seconds since the epoch). */
int64_t snap_created(const snap_t *snap);
uint32_t snap_chunk_size(const snap_t *snap);
/* Total guest memory bytes over all regions. */
uint64_t snap_memory_size(const snap_t *snap);

size_t snap_region_count(const snap_t *snap);
/* Region i's guest address and size (host is NULL).  -ERANGE if i is out of range. */
int snap_region_get(const snap_t *snap, size_t i, snap_region_t *out);

/*
 * Find state section `id`.  *data points into memory owned by snap (valid
 * until the last reference is dropped), *version and *len may be NULL.
 * Returns 0 or -ENOENT.
 */
int snap_section_find(const snap_t *snap, uint32_t id, uint32_t *version, const void **data,
                      size_t *len);

/* ---------------------------------------------------------------- memory */

typedef enum snap_engine {
    /* Read and decompress every chunk before returning.  The baseline. */
    SNAP_ENGINE_EAGER = 0,
    /* Anonymous memory registered with userfaultfd (MISSING mode); a fault
     * thread reads chunks on demand with io_uring and installs them with
     * UFFDIO_COPY / UFFDIO_ZEROPAGE.  Works for faults raised by ordinary
     * threads and by KVM on behalf of a vCPU (no UFFD_USER_MODE_ONLY).
     * Needs root or vm.unprivileged_userfaultfd=1. */
    SNAP_ENGINE_LAZY = 1,
    /* MAP_PRIVATE mappings of a memfd base image decompressed once per
     * snapshot (see snap_base_t): restore cost does not grow with memory
     * size and clones share every page they do not write. */
    SNAP_ENGINE_SHARED = 2,
} snap_engine_t;

/* Engine names "eager", "lazy", "shared" (for CLIs and manifests). */
const char *snap_engine_name(snap_engine_t engine);
int snap_engine_parse(const char *name, snap_engine_t *out);

typedef struct snap_mem snap_mem_t;
typedef struct snap_base snap_base_t;

/*
 * Called by the lazy engine's fault thread, once, when the memory fails (a
 * chunk could not be read or failed its checksum).  The faulting access is
 * NOT satisfied with wrong bytes: the chunk's pages are replaced by a mapping
 * that raises SIGBUS for an ordinary thread and makes KVM_RUN fail with
 * -EFAULT for a vCPU (or, when KVM was emulating the instruction, exit with
 * KVM_EXIT_MMIO at an address inside a RAM slot: treat both as fatal).  The
 * callback runs on the fault thread before the faulting access is released;
 * it must not call snap_mem_abort/snap_mem_destroy; it should tell the
 * owner to kill the sandbox.
 */
typedef void (*snap_mem_error_cb)(void *opaque, const thaw_err_t *err);

typedef struct snap_mem_opts {
    /* lazy: prefetch the recorded working set (if the snapshot has one) in
     * the background, in recorded order, while faults are served first. */
    bool prefetch;
    /* lazy: record the order chunks are first faulted, for
     * snap_mem_workingset_save. */
    bool record_workingset;
    /* lazy: io_uring queue depth (reads in flight); 0: 16. */
    unsigned queue_depth;
    /* shared: the base to map; NULL: the snapshot's cached base (created on
     * first use and kept until the snapshot's last reference goes). */
    snap_base_t *base;
    /* eager, and shared when it builds the base: decompression threads;
     * 0: online CPUs, at most 4. */
    unsigned threads;
    /* lazy: failure callback (may be NULL); see snap_mem_error_cb. */
    snap_mem_error_cb on_error;
    void *opaque;
} snap_mem_opts_t;

typedef struct snap_mem_stats {
    uint64_t faults;            /* lazy: userfaultfd fault events received */
    uint64_t chunks_faulted;    /* lazy: chunks first fetched because of a fault */
    uint64_t chunks_prefetched; /* lazy: chunks fetched by prefetch */
    uint64_t chunks_zero;       /* chunks installed as zero pages (lazy) or skipped */
    uint64_t bytes_read;        /* bytes read from memory.bin */
    uint64_t bytes_installed;   /* bytes written into guest memory */
    uint64_t attach_ns;         /* wall time of snap_mem_attach */
    bool failed;                /* a chunk failed; see snap_mem_error */
} snap_mem_stats_t;

/*
 * Restore the snapshot's memory with `engine` into fresh mappings owned by
 * the returned snap_mem_t (which holds a reference on snap).  opts may be
 * NULL.  Returns 0 or -errno with err filled (for eager: the first bad
 * chunk; nothing is left mapped on failure).
 */
int snap_mem_attach(snap_t *snap, snap_engine_t engine, const snap_mem_opts_t *opts,
                    snap_mem_t **out, thaw_err_t *err);

size_t snap_mem_region_count(const snap_mem_t *mem);
/* Region i: guest address, host pointer (valid until destroy), size. */
int snap_mem_region(const snap_mem_t *mem, size_t i, snap_region_t *out);

/* A copy of the counters (each updated atomically; callable from any thread). */
void snap_mem_get_stats(const snap_mem_t *mem, snap_mem_stats_t *out);

/* 0 while healthy; after a failure, -errno with the first error's message. */
int snap_mem_error(const snap_mem_t *mem, thaw_err_t *err);

/*
 * Lazy only: write the recorded first-fault order to the snapshot's
 * "workingset" file (atomically: temporary name, fsync, rename).  Needs
 * opts.record_workingset.  Returns the number of chunks saved or -errno.
 */
int snap_mem_workingset_save(snap_mem_t *mem, thaw_err_t *err);

/*
 * Make every region fail from now on and wake any thread blocked in a fault
 * on it: ordinary threads get SIGBUS, KVM_RUN returns -EFAULT.  The mappings
 * stay reserved (no other mapping can land there) until snap_mem_destroy, so
 * a vmm can abort, join its vCPU threads, then destroy.  Idempotent.
 */
void snap_mem_abort(snap_mem_t *mem);

/*
 * Not to be called concurrently with snap_mem_abort on the same memory.
 * Stop the fault thread (cleanly, even with faults and reads in flight:
 * blocked faulters are released as by snap_mem_abort), unmap every region,
 * drop the references on the snapshot and base.  The caller must make sure
 * nothing touches the memory afterwards.
 */
void snap_mem_destroy(snap_mem_t *mem);

/* ---------------------------------------------------------------- shared base */

/*
 * The shared engine's base image: the whole snapshot memory decompressed
 * once into a sealed memfd.  A pool keeps it resident across many restores
 * either by keeping the snap_t open (the snapshot caches its base) or by
 * holding a reference from snap_base_get.
 */
int snap_base_get(snap_t *snap, snap_base_t **out, thaw_err_t *err);
/* Drop a reference from snap_base_get; the memfd goes with the last one. */
void snap_base_put(snap_base_t *base);
/* Bytes of the memfd (the resident cost of the base). */
uint64_t snap_base_size(const snap_base_t *base);
/* Time it took to build (decompress) the base, in ns. */
uint64_t snap_base_build_ns(const snap_base_t *base);

#endif
