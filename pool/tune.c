// SPDX-License-Identifier: Apache-2.0
/*
 * `thaw tune`'s engine: try restore configurations (engine, chunk size, lz4
 * level, prefetch) on a vm template's snapshot and rank them.  Each chunk
 * size / level pair is a variant written into a scratch directory inside
 * the template's store directory (removed after, whatever happens); a
 * working set is recorded on it first when a lazy configuration prefetches;
 * then every engine restores `iterations` clones of it, one at a time,
 * outside the warm pool.  Applying the best rewrites the template's snapshot
 * the same way and swaps the backend's template handle once no sandbox
 * creation can still be using the old one.
 */
#include "pool/tune-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

#define TUNE_DEFAULT_ITERATIONS 5
#define TUNE_SWAP_WAIT_MS       60000

static const char *const goal_names[] = {"latency", "memory", "disk"};

int pool_tune_goal_parse(const char *s, pool_tune_goal_t *out)
{
    for (unsigned i = 0; i < 3; i++)
        if (s && !strcmp(s, goal_names[i])) {
            *out = (pool_tune_goal_t)i;
            return 0;
        }
    return -EINVAL;
}

#ifdef THAW_HAVE_VM

/* Failed configurations last; then the goal; latency breaks ties. */
static pool_tune_goal_t sort_goal;

static uint64_t latency_of(const pool_tune_result_t *r)
{
    return r->answer_p50_ns + r->command_p50_ns;
}

static int cmp_result(const void *a, const void *b)
{
    const pool_tune_result_t *x = a, *y = b;
    if (!!x->error[0] != !!y->error[0])
        return x->error[0] ? 1 : -1;
    uint64_t kx = 0, ky = 0;
    if (sort_goal == POOL_TUNE_MEMORY) {
        kx = x->rss_kib;
        ky = y->rss_kib;
    } else if (sort_goal == POOL_TUNE_DISK) {
        kx = x->snapshot_bytes;
        ky = y->snapshot_bytes;
    }
    if (kx != ky)
        return kx < ky ? -1 : 1;
    uint64_t lx = latency_of(x), ly = latency_of(y);
    return lx < ly ? -1 : lx > ly;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Bytes of the files of a snapshot directory (it is flat). */
static uint64_t dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    uint64_t sum = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            sum += (uint64_t)st.st_size;
    }
    if (d)
        closedir(d);
    return sum;
}

typedef struct tune_run {
    const pool_tune_opts_t *o;
    const char *const *argv;
    pool_progress_fn progress;
    void *pud;
    unsigned done, total;
    pool_tune_result_t *res;
    size_t n;
} tune_run_t;

static void say(tune_run_t *tr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(tune_run_t *tr, const char *fmt, ...)
{
    if (!tr->progress)
        return;
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    tr->progress(tr->pud, "tune", buf);
}

/* Measure one configuration on an open variant; fills r (error on failure). */
static void measure(tune_run_t *tr, snap_t *snap, snap_engine_t engine, bool prefetch,
                    pool_tune_result_t *r)
{
    thaw_hist_t restore, answer, command;
    thaw_hist_init(&restore);
    thaw_hist_init(&answer);
    thaw_hist_init(&command);
    uint64_t faults = 0, rss = 0;
    unsigned iters = tr->o->iterations ? tr->o->iterations : TUNE_DEFAULT_ITERATIONS;
    for (unsigned i = 0; i < iters; i++) {
        pool__tune_sample_t s;
        thaw_err_t err = {0};
        if (pool__tune_sample(snap, engine, prefetch, tr->argv, &s, &err) < 0) {
            snprintf(r->error, sizeof(r->error), "%s", thaw_err_msg(&err));
            return;
        }
        thaw_hist_add(&restore, s.restore_ns);
        thaw_hist_add(&answer, s.answer_ns);
        thaw_hist_add(&command, s.command_ns);
        faults += s.faults;
        rss += s.rss_kib;
        r->runs++;
    }
    r->restore_p50_ns = thaw_hist_percentile(&restore, 50);
    r->restore_p99_ns = thaw_hist_percentile(&restore, 99);
    r->answer_p50_ns = thaw_hist_percentile(&answer, 50);
    r->answer_p99_ns = thaw_hist_percentile(&answer, 99);
    r->command_p50_ns = thaw_hist_percentile(&command, 50);
    r->faults = faults / r->runs;
    r->rss_kib = rss / r->runs;
}

/* Every engine/prefetch configuration of one chunk size / level variant. */
static void try_variant(tune_run_t *tr, const char *work, snap_t *base,
                        const snap_engine_t *engines, unsigned nengines, uint32_t chunk, int level)
{
    bool want_prefetch = false;
    for (unsigned e = 0; e < nengines; e++)
        want_prefetch |= engines[e] == SNAP_ENGINE_LAZY && tr->o->prefetch != 0;
    char dir[POOL_PATH_MAX + 128];
    snprintf(dir, sizeof(dir), "%s/c%u-l%d", work, chunk, level);
    say(tr, "%u/%u writing variant: chunk %u KiB, lz4 level %d", tr->done, tr->total, chunk >> 10,
        level);
    thaw_err_t err = {0};
    int r = pool__tune_write_variant(base, dir, chunk, level, &err);
    if (r == 0 && want_prefetch) {
        say(tr, "%u/%u recording the working set: chunk %u KiB", tr->done, tr->total, chunk >> 10);
        r = pool__tune_record(dir, tr->argv, &err);
    }
    snap_t *snap = NULL;
    if (r == 0)
        r = snap_open(dir, &snap, &err);
    uint64_t bytes = r == 0 ? dir_bytes(dir) : 0;
    for (unsigned e = 0; e < nengines; e++) {
        for (int pf = 0; pf < 2; pf++) {
            bool lazy = engines[e] == SNAP_ENGINE_LAZY;
            /* prefetch only means something for lazy; o->prefetch picks the values tried */
            if ((!lazy && pf) || (lazy && tr->o->prefetch >= 0 && pf != tr->o->prefetch))
                continue;
            pool_tune_result_t *res = &tr->res[tr->n++];
            memset(res, 0, sizeof(*res));
            snprintf(res->engine, sizeof(res->engine), "%s", snap_engine_name(engines[e]));
            res->chunk_size = chunk;
            res->lz4_level = level;
            res->prefetch = pf;
            res->snapshot_bytes = bytes;
            tr->done++;
            say(tr, "%u/%u %s, chunk %u KiB, lz4 %d, prefetch %s", tr->done, tr->total, res->engine,
                chunk >> 10, level, pf ? "on" : "off");
            if (r < 0)
                snprintf(res->error, sizeof(res->error), "%s", thaw_err_msg(&err));
            else
                measure(tr, snap, engines[e], pf, res);
        }
    }
    snap_close(snap);
    rm_rf(dir);
}

static pthread_mutex_t apply_mu = PTHREAD_MUTEX_INITIALIZER;

/*
 * Make `best` the template's configuration.  The snapshot is rewritten in
 * place (snap_write swaps it atomically; clones running from the old files
 * keep them open), the definition persisted, then the backend's handle is
 * swapped: creations that started before the swap may still be using the
 * old one, so it is closed only once none is in flight.
 */
static int apply(pool_t *p, pool__tpl_t *t, snap_t *base, const pool_tune_result_t *best,
                 const char *const *argv, thaw_err_t *err)
{
    char snapdir[POOL_PATH_MAX + 16];
    snprintf(snapdir, sizeof(snapdir), "%s/snapshot", t->dir);
    pthread_mutex_lock(&apply_mu);
    int r = pool__tune_write_variant(base, snapdir, best->chunk_size, best->lz4_level, err);
    if (r == 0 && best->prefetch)
        r = pool__tune_record(snapdir, argv, err);
    pthread_mutex_lock(&p->mu);
    pool_tpl_def_t def = t->def;
    pthread_mutex_unlock(&p->mu);
    snprintf(def.engine, sizeof(def.engine), "%s", best->engine);
    def.prefetch = best->prefetch;
    void *nst = NULL;
    if (r == 0)
        r = pool_tpl_def_validate(&def, err);
    if (r == 0)
        r = t->ops->tpl_open(t->bctx, &def, t->dir, &nst, err);
    if (r == 0)
        r = pool__store_save(p, &def, err);
    if (r < 0) {
        if (nst)
            t->ops->tpl_close(t->bctx, nst);
        pthread_mutex_unlock(&apply_mu);
        return thaw_err_wrap(err, "apply to '%s'", def.name);
    }
    pthread_mutex_lock(&p->mu);
    if (t->state != POOL_TPL_READY) { /* deleted while we measured */
        pthread_mutex_unlock(&p->mu);
        t->ops->tpl_close(t->bctx, nst);
        pthread_mutex_unlock(&apply_mu);
        return thaw_err_set(err, ENOENT, "apply: template '%s' was deleted", def.name);
    }
    void *old = t->bstate;
    /* Readers load it after taking a `creating` slot, without the lock. */
    __atomic_store_n(&t->bstate, nst, __ATOMIC_RELEASE);
    snprintf(t->def.engine, sizeof(t->def.engine), "%s", def.engine);
    t->def.prefetch = def.prefetch;
    /* Ready sandboxes were made the old way: replace them. */
    while (t->ready_head) {
        pool_sandbox_t *sb = t->ready_head;
        t->ready_head = sb->next;
        t->ready--;
        pool__reap_locked(p, sb);
    }
    t->ready_tail = NULL;
    pthread_cond_broadcast(&p->work_cv);
    uint64_t until = thaw_now_ns() + TUNE_SWAP_WAIT_MS * 1000000ull;
    while (t->creating > 0 && thaw_now_ns() < until) {
        pthread_mutex_unlock(&p->mu);
        usleep(5000);
        pthread_mutex_lock(&p->mu);
    }
    bool idle = t->creating == 0;
    pthread_mutex_unlock(&p->mu);
    if (idle)
        t->ops->tpl_close(t->bctx, old);
    else /* a create outlived the wait: leaking the handle is safe, closing it is not */
        thaw_warn("pool", "tune_old_state_kept", "template=%s", def.name);
    pthread_mutex_unlock(&apply_mu);
    thaw_info("pool", "tune_applied", "template=%s engine=%s chunk=%u lz4=%d prefetch=%d", def.name,
              def.engine, best->chunk_size, best->lz4_level, def.prefetch);
    return 0;
}

static int tune_vm(pool_t *p, pool__tpl_t *t, const pool_tune_opts_t *o, pool_progress_fn progress,
                   void *pud, pool_tune_result_t **out, size_t *n, bool *applied, thaw_err_t *err)
{
    snap_engine_t engines[3];
    unsigned nengines = 0;
    if (!o->engines[0]) {
        engines[0] = SNAP_ENGINE_EAGER;
        engines[1] = SNAP_ENGINE_LAZY;
        engines[2] = SNAP_ENGINE_SHARED;
        nengines = 3;
    }
    for (unsigned i = 0; i < 3 && o->engines[i]; i++) {
        if (snap_engine_parse(o->engines[i], &engines[nengines]) < 0)
            return thaw_err_set(err, EINVAL, "engine '%s': expected eager, lazy or shared",
                                o->engines[i]);
        nengines++;
    }
    static const uint32_t def_chunks[] = {4u << 10, 64u << 10, 2u << 20};
    const uint32_t *chunks = o->nchunks ? o->chunk_sizes : def_chunks;
    unsigned nchunks = o->nchunks ? o->nchunks : 3;
    static const int def_levels[] = {0};
    const int *levels = o->nlevels ? o->lz4_levels : def_levels;
    unsigned nlevels = o->nlevels ? o->nlevels : 1;
    if (nchunks > POOL_TUNE_MAX_CHUNKS || nlevels > POOL_TUNE_MAX_LEVELS)
        return thaw_err_set(err, EINVAL, "at most %d chunk sizes and %d lz4 levels",
                            POOL_TUNE_MAX_CHUNKS, POOL_TUNE_MAX_LEVELS);
    for (unsigned i = 0; i < nchunks; i++)
        if (chunks[i] < SNAP_CHUNK_MIN || chunks[i] > SNAP_CHUNK_MAX ||
            (chunks[i] & (chunks[i] - 1)))
            return thaw_err_set(err, EINVAL,
                                "chunk size %u: expected a power of two from 4 KiB to 2 MiB",
                                chunks[i]);
    for (unsigned i = 0; i < nlevels; i++)
        if (levels[i] < -65536 || levels[i] > SNAP_LZ4_HC_MAX)
            return thaw_err_set(err, EINVAL, "lz4 level %d: expected at most %d", levels[i],
                                SNAP_LZ4_HC_MAX);
    unsigned per_variant = 0;
    for (unsigned e = 0; e < nengines; e++)
        per_variant += engines[e] == SNAP_ENGINE_LAZY && o->prefetch < 0 ? 2 : 1;

    /* The command: given, else the first warm-up, else `true`. */
    const char *sh[] = {"/bin/sh", "-c", t->def.warmup[0], NULL};
    static const char *const truth[] = {"true", NULL};
    const char *const *argv = o->argv ? o->argv : t->def.nwarmup ? sh : truth;

    tune_run_t tr = {.o = o, .argv = argv, .progress = progress, .pud = pud};
    tr.total = nchunks * nlevels * per_variant;
    tr.res = calloc(tr.total, sizeof(*tr.res));
    if (!tr.res)
        return thaw_err_set(err, ENOMEM, "out of memory");

    char snapdir[POOL_PATH_MAX + 16], work[POOL_PATH_MAX + 64];
    snprintf(snapdir, sizeof(snapdir), "%s/snapshot", t->dir);
    static atomic_uint seq;
    snprintf(work, sizeof(work), "%s/tune.%d.%u", t->dir, (int)getpid(), atomic_fetch_add(&seq, 1));
    snap_t *base = NULL;
    int r = snap_open(snapdir, &base, err);
    if (r == 0 && mkdir(work, 0700) < 0)
        r = thaw_err_sys(err, errno, "tune: create %s", work);
    if (r < 0) {
        snap_close(base);
        free(tr.res);
        return r;
    }
    for (unsigned c = 0; c < nchunks; c++)
        for (unsigned l = 0; l < nlevels; l++)
            try_variant(&tr, work, base, engines, nengines, chunks[c], levels[l]);
    rm_rf(work);

    sort_goal = o->goal; /* qsort has no context argument; tunes are serialised below */
    qsort(tr.res, tr.n, sizeof(*tr.res), cmp_result);
    *applied = false;
    if (o->apply) {
        if (tr.n == 0 || tr.res[0].error[0])
            r = thaw_err_set(err, EIO, "apply: no configuration worked (%s)",
                             tr.n ? tr.res[0].error : "none tried");
        else {
            say(&tr, "applying %s, chunk %u KiB, lz4 %d, prefetch %s", tr.res[0].engine,
                tr.res[0].chunk_size >> 10, tr.res[0].lz4_level, tr.res[0].prefetch ? "on" : "off");
            r = apply(p, t, base, &tr.res[0], argv, err);
            *applied = r == 0;
        }
    }
    snap_close(base);
    if (r < 0) {
        free(tr.res);
        return r;
    }
    *out = tr.res;
    *n = tr.n;
    return 0;
}
#endif

int pool_tune(pool_t *p, const char *name, const pool_tune_opts_t *o, pool_progress_fn progress,
              void *pud, pool_tune_result_t **out, size_t *n, bool *applied, thaw_err_t *err)
{
    *out = NULL;
    *n = 0;
    *applied = false;
    pthread_mutex_lock(&p->mu);
    pool__tpl_t *t = pool__tpl_find(p, name);
    if (!t) {
        pthread_mutex_unlock(&p->mu);
        return thaw_err_set(err, ENOENT, "template '%s' not found", name);
    }
    if (strcmp(t->def.tier, "vm")) {
        int r = thaw_err_set(err, ENOTSUP,
                             "tune tries restore configurations of a snapshot: '%s' is a %s "
                             "template (only vm templates have one)",
                             name, t->def.tier);
        pthread_mutex_unlock(&p->mu);
        return r;
    }
    t->refs++;
    pthread_mutex_unlock(&p->mu);
#ifdef THAW_HAVE_VM
    /* One tune at a time: they share the machine they measure, and the sort's goal. */
    static pthread_mutex_t tune_mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&tune_mu);
    int r = tune_vm(p, t, o, progress, pud, out, n, applied, err);
    pthread_mutex_unlock(&tune_mu);
#else
    (void)o;
    (void)progress;
    (void)pud;
    int r = thaw_err_set(err, ENOTSUP, "this thawd was built without the vm tier");
#endif
    pthread_mutex_lock(&p->mu);
    pool__tpl_unref(p, t);
    pthread_mutex_unlock(&p->mu);
    return r;
}
