/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Between pool/tune.c (the grid, sorting, apply) and pool/tune-vm.c (the
 * vm measurements): nothing else includes this.
 */
#ifndef THAW_POOL_TUNE_INTERNAL_H
#define THAW_POOL_TUNE_INTERNAL_H

#include "pool/pool-internal.h"
#include "snapshot/snap.h"

typedef struct pool__tune_sample {
    uint64_t restore_ns; /* vmm_restore + vmm_start */
    uint64_t answer_ns;  /* restore call to THAW's answer */
    uint64_t command_ns; /* the command, after THAW */
    uint64_t faults;     /* lazy: userfaultfd faults served */
    uint64_t rss_kib;    /* anonymous memory of the clone's guest RAM */
} pool__tune_sample_t;

/* Write `base` again into `dir` with another chunk size and lz4 level. */
int pool__tune_write_variant(snap_t *base, const char *dir, uint32_t chunk_size, int lz4_level,
                             thaw_err_t *err);
/* Record the working set of the snapshot in `dir` by running argv in a clone. */
int pool__tune_record(const char *dir, const char *const *argv, thaw_err_t *err);
/* One measured clone of snap (made, THAWed, argv run, measured, destroyed). */
int pool__tune_sample(snap_t *snap, snap_engine_t engine, bool prefetch, const char *const *argv,
                      pool__tune_sample_t *s, thaw_err_t *err);

#endif
