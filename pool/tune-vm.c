// SPDX-License-Identifier: Apache-2.0
/*
 * The vm half of `thaw tune`: the three things a restore configuration
 * needs measured on a template's snapshot, done with vmm/ and snapshot/
 * directly (outside the warm pool, so a trial never reaches a client):
 *
 *  - write a variant of the snapshot with another chunk size or lz4 level
 *    (an eager restore of the template's snapshot, never started, written
 *    again through vmm_snapshot, so the writer is snapshot/'s own);
 *  - record a working set on a snapshot (lazy restore with recording on,
 *    THAW, the command, then snap_mem_workingset_save);
 *  - one measured clone: restore + start, THAW's answer, the command, the
 *    faults served and the anonymous memory the clone holds.
 */
#include "pool/tune-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/clock.h"
#include "guest/agent_client.h"
#include "vmm/vmm.h"

#define TUNE_AGENT_MS 30000

int pool__tune_write_variant(snap_t *base, const char *dir, uint32_t chunk_size, int lz4_level,
                             thaw_err_t *err)
{
    vmm_restore_opts_t ro = {.engine = SNAP_ENGINE_EAGER};
    vmm_t *vm = NULL;
    int r = vmm_restore(base, &ro, &vm, NULL, err);
    if (r < 0)
        return r;
    /* The VM never ran: its state is the template's quiesced one, as saved. */
    snap_write_opts_t wo = {
        .chunk_size = chunk_size, .lz4_level = lz4_level, .threads = 2, .kind = "vm"};
    r = vmm_snapshot(vm, dir, &wo, NULL, err);
    vmm_destroy(vm);
    if (r < 0)
        thaw_err_wrap(err, "write variant %s", dir);
    return r;
}

/* Restore + start + THAW; *c is the agent client (caller destroys). */
static int clone_up(snap_t *snap, const vmm_restore_opts_t *ro, vmm_t **vmp, agent_client_t **cp,
                    uint64_t *restore_ns, uint64_t *answer_ns, thaw_err_t *err)
{
    uint64_t t0 = thaw_now_ns();
    vmm_t *vm = NULL;
    int r = vmm_restore(snap, ro, &vm, NULL, err);
    if (r == 0)
        r = vmm_start(vm, err);
    uint64_t t1 = thaw_now_ns();
    agent_client_t *c = NULL;
    if (r == 0) {
        int fd = fcntl(vmm_agent_fd(vm), F_DUPFD_CLOEXEC, 3);
        r = fd < 0 ? thaw_err_sys(err, errno, "agent channel") : agent_client_new(fd, &c, err);
    }
    if (r == 0) {
        uint8_t entropy[32];
        if (getrandom(entropy, sizeof(entropy), 0) != (ssize_t)sizeof(entropy))
            r = thaw_err_sys(err, errno, "getrandom");
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (r == 0)
            r = agent_client_thaw(c, entropy, sizeof(entropy),
                                  (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec,
                                  TUNE_AGENT_MS, NULL, err);
        if (r < 0)
            thaw_err_wrap(err, "THAW after restore");
    }
    uint64_t t2 = thaw_now_ns();
    if (r < 0) {
        agent_client_destroy(c);
        vmm_destroy(vm);
        return r;
    }
    *vmp = vm;
    *cp = c;
    if (restore_ns)
        *restore_ns = t1 - t0;
    if (answer_ns)
        *answer_ns = t2 - t0;
    return 0;
}

/* Run argv through the agent; it must exit 0. */
static int run_cmd(agent_client_t *c, const char *const *argv, thaw_err_t *err)
{
    agent_exec_req_t req = {.argv = argv, .timeout_ms = TUNE_AGENT_MS};
    agent_exec_result_t res;
    memset(&res, 0, sizeof(res));
    int r = agent_client_exec(c, &req, &res, err);
    if (r == 0 && (res.exit_code != 0 || res.term_signal))
        r = thaw_err_set(err, EINVAL, "command '%s' %s %d: %.200s", argv[0],
                         res.term_signal ? "was killed by signal" : "exited with",
                         res.term_signal ? res.term_signal : res.exit_code,
                         res.err ? (const char *)res.err : "");
    else if (r < 0)
        thaw_err_wrap(err, "command '%s'", argv[0]);
    agent_exec_result_free(&res);
    return r;
}

int pool__tune_record(const char *dir, const char *const *argv, thaw_err_t *err)
{
    snap_t *snap = NULL;
    int r = snap_open(dir, &snap, err);
    if (r < 0)
        return r;
    snap_mem_opts_t mo = {.record_workingset = true};
    vmm_restore_opts_t ro = {.engine = SNAP_ENGINE_LAZY, .mem_opts = &mo};
    vmm_t *vm = NULL;
    agent_client_t *c = NULL;
    r = clone_up(snap, &ro, &vm, &c, NULL, NULL, err);
    if (r == 0)
        r = run_cmd(c, argv, err);
    if (r == 0) {
        r = snap_mem_workingset_save(vmm_snap_mem(vm), err);
        if (r >= 0)
            r = 0;
    }
    agent_client_destroy(c);
    vmm_destroy(vm);
    snap_close(snap);
    if (r < 0)
        thaw_err_wrap(err, "record working set of %s", dir);
    return r;
}

/* Anonymous kB of the mappings inside [lo, hi): what this clone holds alone. */
static uint64_t anon_kib(uintptr_t lo, uintptr_t hi)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/self/smaps", "re");
    if (!f)
        return 0;
    char line[512];
    bool in = false;
    uint64_t kib = 0;
    while (fgets(line, sizeof(line), f)) {
        uintptr_t a, b;
        unsigned long long v;
        /* Field lines ("Anonymous: 4 kB") never parse as "lo-hi". */
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &a, &b) == 2)
            in = a < hi && b > lo;
        else if (in && sscanf(line, "Anonymous: %llu kB", &v) == 1)
            kib += v;
    }
    return kib;
}

int pool__tune_sample(snap_t *snap, snap_engine_t engine, bool prefetch, const char *const *argv,
                      pool__tune_sample_t *s, thaw_err_t *err)
{
    snap_mem_opts_t mo = {.prefetch = prefetch};
    vmm_restore_opts_t ro = {.engine = engine, .mem_opts = &mo};
    vmm_t *vm = NULL;
    agent_client_t *c = NULL;
    memset(s, 0, sizeof(*s));
    int r = clone_up(snap, &ro, &vm, &c, &s->restore_ns, &s->answer_ns, err);
    if (r < 0)
        return r;
    uint64_t t0 = thaw_now_ns();
    r = run_cmd(c, argv, err);
    s->command_ns = thaw_now_ns() - t0;
    if (r == 0) {
        snap_mem_t *mem = vmm_snap_mem(vm);
        snap_mem_stats_t ms;
        snap_mem_get_stats(mem, &ms);
        s->faults = ms.faults;
        for (size_t i = 0; i < snap_mem_region_count(mem); i++) {
            snap_region_t reg;
            if (snap_mem_region(mem, i, &reg) == 0)
                s->rss_kib += anon_kib((uintptr_t)reg.host, (uintptr_t)reg.host + reg.size);
        }
    }
    agent_client_destroy(c);
    vmm_destroy(vm);
    return r;
}
