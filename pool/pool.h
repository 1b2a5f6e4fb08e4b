/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pool/: templates, warm pools, refill, prewarm, capacity and statistics.
 *
 * A pool_t holds the templates of one store directory and, per template, a
 * queue of ready sandboxes that background worker threads keep filled.  A
 * caller acquires a sandbox (a hit when one was ready, a miss when one had to
 * be made on the spot), drives it through its agent (exec, files) and
 * releases it; a released sandbox is always destroyed, never reused.
 *
 * Every call is thread-safe and may block (creating a sandbox, waiting for an
 * exec), so event-loop callers run them on worker threads.  pool/ knows
 * nothing of JSON or of the transport; the tier-specific work sits behind
 * the ops table in pool/backend.h.
 */
#ifndef THAW_POOL_POOL_H
#define THAW_POOL_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "common/hist.h"
#include "pool/backend.h"

typedef struct pool pool_t;
typedef struct pool_sandbox pool_sandbox_t;

typedef struct pool_config {
    const char *store_dir;       /* templates persist here (created if missing) */
    uint64_t memory_budget_mb;   /* sum of live sandboxes' memory_mb; 0 = 50% of RAM */
    unsigned max_sandboxes;      /* global cap on live sandboxes; 0 = 256 */
    unsigned refill_threads;     /* bounded refill concurrency; 0 = 2 */
    unsigned health_interval_ms; /* how often ready sandboxes are checked; 0 = 500 */
} pool_config_t;

/* Create a pool over cfg->store_dir.  Templates are not loaded yet. */
int pool_new(const pool_config_t *cfg, pool_t **out, thaw_err_t *err);
/* Stop the workers, destroy every sandbox (ready or acquired), keep the store. */
void pool_free(pool_t *p);

/*
 * Register a tier.  The ops table and ctx must outlive the pool.  A tier that
 * is not available here is still registered: templates of it are refused with
 * the reason from ops->available.
 */
int pool_add_backend(pool_t *p, const pool_backend_ops_t *ops, void *ctx);

/* Tier availability: 1 available, 0 not (why filled), -ENOENT unknown tier. */
int pool_tier_available(pool_t *p, const char *tier, char *why, size_t whylen);
/* Names of registered tiers, in registration order; NULL past the end. */
const char *pool_tier_name(pool_t *p, unsigned idx);

/*
 * Load every template found in the store (thawd restart).  A template that
 * fails to load is logged and skipped, not fatal; returns how many loaded.
 */
int pool_load(pool_t *p, thaw_err_t *err);
/* True when the store had never been initialised before pool_new. */
bool pool_store_is_new(pool_t *p);

/* Fill a definition with defaults (tier sentry, 1 vCPU, 256 MiB, min_ready 1 ...). */
void pool_tpl_def_init(pool_tpl_def_t *def);
/* Check a definition; err names the bad field. */
int pool_tpl_def_validate(const pool_tpl_def_t *def, thaw_err_t *err);

/*
 * Create a template: validate, prepare it through its backend (may take
 * long: progress is reported), persist it, then start filling its pool.
 */
int pool_template_create(pool_t *p, const pool_tpl_def_t *def, pool_progress_fn progress, void *pud,
                         thaw_err_t *err);
/* Remove a template and its store directory; acquired sandboxes live on until released. */
int pool_template_delete(pool_t *p, const char *name, thaw_err_t *err);

typedef struct pool_tpl_status {
    pool_tpl_def_t def;
    unsigned ready, in_use, creating; /* sandboxes by state */
    unsigned target;                  /* ready count the refill aims at now */
    unsigned prewarm;                 /* active prewarm count, 0 if none */
    uint64_t prewarm_left_ms;
    uint64_t hits, misses, created, destroyed, died, create_failures;
    char last_error[THAW_ERR_MSG_MAX];
    thaw_hist_t acquire_hit, acquire_miss, restore, exec; /* nanoseconds */
} pool_tpl_status_t;

/* Number of templates and their names (sorted); names array is malloc'ed, free it. */
int pool_template_names(pool_t *p, char ***names, size_t *n);
void pool_names_free(char **names, size_t n);
/* Status of one template (large struct: the caller provides it). */
int pool_template_status(pool_t *p, const char *name, pool_tpl_status_t *st, thaw_err_t *err);

/* Change min_ready / max_ready / max_total of a template (persisted). */
int pool_configure(pool_t *p, const char *name, unsigned min_ready, unsigned max_ready,
                   unsigned max_total, thaw_err_t *err);
/*
 * Raise the template's ready target to `count` for `window_ms`.  With
 * wait_ms > 0, block until `count` are ready (or -ETIMEDOUT after wait_ms).
 */
int pool_prewarm(pool_t *p, const char *name, unsigned count, uint64_t window_ms, uint64_t wait_ms,
                 thaw_err_t *err);

typedef struct pool_totals {
    unsigned live; /* every sandbox that exists (ready, in use, being made) */
    unsigned max_sandboxes;
    uint64_t memory_mb, memory_budget_mb;
    thaw_hist_t acquire_hit, acquire_miss, restore, exec; /* over all templates */
    uint64_t hits, misses, died, capacity_refusals;
} pool_totals_t;
void pool_totals(pool_t *p, pool_totals_t *t);

/*
 * Acquire a ready sandbox of template `name`.  *hit says whether one was
 * ready.  -ENOENT: no such template; -EDQUOT: over one of the pool's
 * quotas (memory budget, global cap or the template's max_total), err says
 * which: its own errno, so that a full disk (-ENOSPC) anywhere below can
 * never pass for a refusal that waiting fixes.
 */
int pool_acquire(pool_t *p, const char *name, pool_sandbox_t **out, bool *hit, thaw_err_t *err);
/* Destroy an acquired sandbox (never reused).  NULL is ignored. */
void pool_release(pool_t *p, pool_sandbox_t *sb);

/* Template name and process id (for listings). */
const char *pool_sandbox_template(const pool_sandbox_t *sb);
int pool_sandbox_pid(const pool_sandbox_t *sb);
uint64_t pool_sandbox_age_ms(const pool_sandbox_t *sb);

/*
 * A cancellation token: the caller's way to stop pool work it no longer
 * wants (its client disconnected).  pool_cancel may be called from any
 * thread, once or more, and never waits on I/O (an event loop may call it);
 * a pool_exec carrying the token then ends soon with -ECANCELED, after
 * asking the agent to SIGKILL the command's process group.  The token must
 * outlive every call that carries it.
 */
typedef struct pool_cancel pool_cancel_t;
/* 0 and *out, or -ENOMEM. */
int pool_cancel_new(pool_cancel_t **out);
void pool_cancel_free(pool_cancel_t *t);
void pool_cancel(pool_cancel_t *t);
/* True once pool_cancel was called (false for NULL). */
bool pool_cancelled(pool_cancel_t *t);

typedef struct pool_exec_req {
    const char *const *argv; /* NULL-terminated, argv[0] non-NULL */
    const char *const *env;  /* NULL-terminated "K=V", or NULL */
    const char *cwd;         /* NULL: the agent's default */
    const void *stdin_data;
    size_t stdin_len;
    uint32_t timeout_ms; /* 0: no timeout */
    uint32_t max_output; /* cap on stdout + stderr bytes kept */
    /* Optional streaming: called on the agent reader thread as chunks arrive
     * (stream 1 stdout, 2 stderr); copy and return, never block. */
    void (*on_output)(void *ud, int stream, const void *data, size_t len);
    void *ud;
    pool_cancel_t *cancel; /* optional (see pool_cancel) */
} pool_exec_req_t;

typedef struct pool_exec_result {
    int exit_code; /* -1 when killed by a signal */
    int signal;    /* 0 unless killed */
    bool timed_out;
    bool truncated; /* output exceeded max_output */
    char *out;      /* malloc'ed, out_len bytes (not NUL-terminated); caller frees */
    size_t out_len;
    char *err_out;
    size_t err_len;
    uint64_t duration_ns;
} pool_exec_result_t;

/* Run a command in the sandbox through its agent.  Result buffers are the caller's. */
int pool_exec(pool_t *p, pool_sandbox_t *sb, const pool_exec_req_t *req, pool_exec_result_t *res,
              thaw_err_t *err);
void pool_exec_result_free(pool_exec_result_t *res);

/* Write a file in the sandbox. */
int pool_put_file(pool_t *p, pool_sandbox_t *sb, const char *path, uint32_t mode, const void *data,
                  size_t len, thaw_err_t *err);
/* Read a file (at most max bytes; larger is an error).  *data is malloc'ed. */
int pool_get_file(pool_t *p, pool_sandbox_t *sb, const char *path, size_t max, void **data,
                  size_t *len, thaw_err_t *err);

/* ---- tune (pool/tune.c): try restore configurations on a vm template ---- */

#define POOL_TUNE_MAX_CHUNKS 8
#define POOL_TUNE_MAX_LEVELS 4

typedef enum pool_tune_goal {
    POOL_TUNE_LATENCY = 0, /* restore call to the command's result, p50 */
    POOL_TUNE_MEMORY,      /* anonymous memory per clone */
    POOL_TUNE_DISK,        /* snapshot bytes */
} pool_tune_goal_t;

typedef struct pool_tune_opts {
    const char *engines[4]; /* NULL-terminated names; engines[0] NULL: eager, lazy, shared */
    uint32_t chunk_sizes[POOL_TUNE_MAX_CHUNKS]; /* bytes; nchunks 0: 4 KiB, 64 KiB, 2 MiB */
    unsigned nchunks;
    int lz4_levels[POOL_TUNE_MAX_LEVELS]; /* nlevels 0: 0 (lz4's default) */
    unsigned nlevels;
    int prefetch;            /* lazy: -1 try both, 0 off, 1 on */
    unsigned iterations;     /* clones per configuration; 0: 5 */
    const char *const *argv; /* run after THAW and to record the working set;
                              * NULL: the first warm-up command, else `true` */
    pool_tune_goal_t goal;
    bool apply; /* make the best the template's configuration */
} pool_tune_opts_t;

typedef struct pool_tune_result {
    char engine[POOL_ENGINE_MAX];
    uint32_t chunk_size;
    int lz4_level;
    bool prefetch;
    unsigned runs;
    uint64_t snapshot_bytes;
    uint64_t restore_p50_ns, restore_p99_ns; /* vmm restore + start */
    uint64_t answer_p50_ns, answer_p99_ns;   /* restore call to THAW's answer */
    uint64_t command_p50_ns;                 /* the command after THAW */
    uint64_t faults;                         /* mean per clone (lazy) */
    uint64_t rss_kib;                        /* mean anonymous guest memory per clone */
    char error[THAW_ERR_MSG_MAX];            /* non-empty: this configuration failed */
} pool_tune_result_t;

/*
 * Try every configuration of the grid on a vm template's snapshot: re-chunked
 * variants are written beside it and removed after; with prefetch a working
 * set is recorded on each first.  Results are sorted by o->goal (failed ones
 * last), *out is malloc'ed (*n entries).  With o->apply the best becomes the
 * template's configuration (snapshot rewritten if its chunk size or level
 * differ, engine and prefetch persisted, ready sandboxes replaced).
 * -ENOTSUP for other tiers.  Progress: stage "tune", detail "3/12 ...".
 */
int pool_tune(pool_t *p, const char *name, const pool_tune_opts_t *o, pool_progress_fn progress,
              void *pud, pool_tune_result_t **out, size_t *n, bool *applied, thaw_err_t *err);
/* Goal names "latency", "memory", "disk". */
int pool_tune_goal_parse(const char *s, pool_tune_goal_t *out);

#endif
