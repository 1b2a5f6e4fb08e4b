// SPDX-License-Identifier: Apache-2.0
/*
 * The vm tier behind the pool's ops table: a template is a snapshot.
 * Preparing one cold-boots the image (vmm/), waits for the agent's hello,
 * runs the warm-up commands through the agent, quiesces it and writes a
 * snapshot (vmm_snapshot through snapshot/) into the template's store
 * directory.  Each sandbox is a restore of that snapshot with the
 * template's engine (eager, lazy or shared) followed by a start; the pool
 * then sends THAW (fresh entropy, the wall clock), which also ends the
 * quiesce.  The snapshot stays open for the template's life, so the shared
 * engine's in-memory base is built once.
 */
#include "pool/backends.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "guest/agent_client.h"
#include "snapshot/snap.h"
#include "vmm/vmm.h"

/* A Linux guest's command line; the freestanding test guest ignores it. */
#define VM_CMDLINE    "console=ttyS0 quiet panic=-1 reboot=k"
#define VM_HELLO_MS   120000 /* cold boot to agent hello (slow hosts) */
#define VM_WARMUP_MS  300000
#define VM_QUIESCE_MS 30000

typedef struct vm_tpl {
    snap_t *snap;
    snap_engine_t engine;
    bool prefetch;
    unsigned vcpus;
    uint64_t mem_bytes;
} vm_tpl_t;

static int vm_available(void *ctx, char *why, size_t n)
{
    (void)ctx;
    if (access("/dev/kvm", R_OK | W_OK) < 0) {
        snprintf(why, n, "no usable /dev/kvm: %s", strerror(errno));
        return -ENOTSUP;
    }
    return 0;
}

static void progress_of(pool_progress_fn progress, void *pud, const char *stage, const char *d)
{
    if (progress)
        progress(pud, stage, d);
}

/* Run one warm-up command through the agent; a failure names it. */
static int warmup(agent_client_t *c, const char *cmd, thaw_err_t *err)
{
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    agent_exec_req_t req = {.argv = argv, .timeout_ms = VM_WARMUP_MS};
    agent_exec_result_t res;
    memset(&res, 0, sizeof(res));
    int r = agent_client_exec(c, &req, &res, err);
    if (r == 0 && (res.exit_code != 0 || res.term_signal))
        r = thaw_err_set(err, EINVAL, "warm-up '%s' %s %d: %.200s", cmd,
                         res.term_signal ? "was killed by signal" : "exited with",
                         res.term_signal ? res.term_signal : res.exit_code,
                         res.err ? (const char *)res.err : "");
    agent_exec_result_free(&res);
    return r;
}

static int open_tpl(const pool_tpl_def_t *def, const char *dir, vm_tpl_t **out, thaw_err_t *err)
{
    vm_tpl_t *t = calloc(1, sizeof(*t));
    if (!t)
        return thaw_err_set(err, ENOMEM, "out of memory");
    if (snap_engine_parse(def->engine, &t->engine) < 0) {
        free(t);
        return thaw_err_set(err, EINVAL, "engine '%s': expected eager, lazy or shared",
                            def->engine);
    }
    t->prefetch = def->prefetch != 0;
    t->vcpus = def->vcpus;
    t->mem_bytes = (uint64_t)def->memory_mb << 20;
    char path[POOL_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/snapshot", dir);
    int r = snap_open(path, &t->snap, err);
    if (r < 0) {
        free(t);
        return r;
    }
    *out = t;
    return 0;
}

static int vm_prepare(void *ctx, const pool_tpl_def_t *def, const char *dir,
                      pool_progress_fn progress, void *pud, void **out, thaw_err_t *err)
{
    (void)ctx;
    vmm_config_t cfg = {
        .kernel_path = def->image,
        .initrd_path = def->initrd[0] ? def->initrd : NULL,
        .cmdline = VM_CMDLINE,
        .mem_bytes = (uint64_t)def->memory_mb << 20,
        .vcpus = def->vcpus,
        .agent_console = true,
    };
    vmm_t *vm = NULL;
    agent_client_t *c = NULL;
    progress_of(progress, pud, "boot", def->image);
    int r = vmm_create(&cfg, &vm, err);
    if (r == 0)
        r = vmm_start(vm, err);
    if (r == 0) {
        int fd = fcntl(vmm_agent_fd(vm), F_DUPFD_CLOEXEC, 3);
        r = fd < 0 ? thaw_err_sys(err, errno, "agent channel") : agent_client_new(fd, &c, err);
    }
    agent_hello_t hello;
    if (r == 0) {
        r = agent_client_wait_hello(c, VM_HELLO_MS, &hello, err);
        if (r < 0)
            thaw_err_wrap(err, "waiting for the agent's hello after boot");
    }
    if (r == 0)
        progress_of(progress, pud, "hello", hello.kernel[0] ? hello.kernel : hello.agent_version);
    for (unsigned i = 0; r == 0 && i < def->nwarmup; i++) {
        progress_of(progress, pud, "warmup", def->warmup[i]);
        r = warmup(c, def->warmup[i], err);
    }
    if (r == 0) {
        progress_of(progress, pud, "quiesce", NULL);
        r = agent_client_quiesce(c, VM_QUIESCE_MS, err);
    }
    char path[POOL_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/snapshot", dir);
    if (r == 0) {
        progress_of(progress, pud, "snapshot", path);
        /* Two compression threads: the writer is CPU-bound on guest-like
         * memory, and two make a template's snapshot 1.2-1.6x faster
         * (BENCHMARKS.md, snapshot writer); more would compete with the
         * sandboxes a busy host is serving. */
        snap_write_opts_t opts = {.kind = "vm", .threads = 2};
        snap_write_stats_t st;
        memset(&st, 0, sizeof(st));
        r = vmm_snapshot(vm, path, &opts, &st, err);
    }
    agent_client_destroy(c);
    if (vm && r < 0) {
        /* What the guest printed is usually the reason a boot went wrong. */
        char log[512];
        size_t n = vmm_console_read(vm, log, sizeof(log), NULL);
        if (n)
            thaw_warn("pool", "vm_prepare_console", "template=%s console=\"%.400s\"", def->name,
                      log);
    }
    vmm_destroy(vm);
    if (r < 0)
        return r;
    vm_tpl_t *t = NULL;
    r = open_tpl(def, dir, &t, err);
    if (r < 0)
        return r;
    *out = t;
    return 0;
}

static int vm_open(void *ctx, const pool_tpl_def_t *def, const char *dir, void **out,
                   thaw_err_t *err)
{
    (void)ctx;
    vm_tpl_t *t = NULL;
    int r = open_tpl(def, dir, &t, err);
    if (r < 0)
        return r;
    *out = t;
    return 0;
}

static void vm_close(void *ctx, void *st)
{
    (void)ctx;
    vm_tpl_t *t = st;
    snap_close(t->snap);
    free(t);
}

static int vm_create(void *ctx, void *tpl, void **out, int *agent_fd, thaw_err_t *err)
{
    (void)ctx;
    vm_tpl_t *t = tpl;
    snap_mem_opts_t mo = {.prefetch = t->prefetch};
    vmm_restore_opts_t ro = {
        .engine = t->engine,
        .mem_opts = &mo,
        .expect_vcpus = t->vcpus,
        .expect_mem_bytes = t->mem_bytes,
    };
    vmm_t *vm = NULL;
    int r = vmm_restore(t->snap, &ro, &vm, NULL, err);
    if (r == 0)
        r = vmm_start(vm, err);
    int fd = -1;
    if (r == 0 && (fd = fcntl(vmm_agent_fd(vm), F_DUPFD_CLOEXEC, 3)) < 0)
        r = thaw_err_sys(err, errno, "agent channel");
    if (r < 0) {
        vmm_destroy(vm);
        return r;
    }
    *out = vm;
    *agent_fd = fd;
    return 0;
}

static void vm_destroy(void *ctx, void *sb)
{
    (void)ctx;
    vmm_destroy(sb);
}

static int vm_alive(void *ctx, void *sb)
{
    (void)ctx;
    vmm_exit_t ex;
    return vmm_wait(sb, 0, &ex) == 0; /* 0: still running after a zero wait */
}

static int vm_exit_detail(void *ctx, void *sb, char *buf, size_t len)
{
    (void)ctx;
    vmm_exit_t ex;
    if (vmm_wait(sb, 0, &ex) != 1)
        return -ENOENT;
    snprintf(buf, len, "%s: %s", vmm_exit_reason_name(ex.reason), ex.detail);
    return 0;
}

const pool_backend_ops_t pool_vm_ops = {
    .tier = "vm",
    .restores = true,
    .available = vm_available,
    .tpl_prepare = vm_prepare,
    .tpl_open = vm_open,
    .tpl_close = vm_close,
    .create = vm_create,
    .destroy = vm_destroy,
    .alive = vm_alive,
    .exit_detail = vm_exit_detail,
};
