// SPDX-License-Identifier: Apache-2.0
/*
 * The supervisor: one thread, one epoll set, every sandbox's seccomp listener
 * in it.  A thread per sandbox would cost a stack and a context switch per
 * sandbox and make the pool's size a thread count; one loop serves them all
 * and a notification costs one wakeup.
 *
 * The lock protects the slot table.  The thread holds it while it handles a
 * request, so sentry_destroy (which unregisters under the lock) never frees a
 * sandbox the thread is using.  Handlers never block on the sandbox: reads of
 * its memory and opens that could wait (FIFOs) are avoided or made
 * non-blocking (handlers.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/clock.h"
#include "common/log.h"
#include "sentry/internal.h"

#define LOG_WINDOW_NS  1000000000ull
#define LOG_PER_WINDOW 50u

void sentry__log_deny(sentry_supervisor_t *sup, sentry_t *sb, pid_t pid, long nr, int errnum,
                      const char *why, const char *detail)
{
    sup->stats.denied++;
    /* Every denial is logged, but a sandbox that hammers a denied call
     * cannot flood thawd's log: past the budget, lines are counted and the
     * count is logged when the next window opens. */
    uint64_t now = thaw_now_ns();
    if (now - sb->log_window_ns > LOG_WINDOW_NS) {
        if (sb->log_dropped)
            thaw_warn("sentry", "deny_suppressed", "sandbox=%s count=%u", sb->id, sb->log_dropped);
        sb->log_window_ns = now;
        sb->log_lines = 0;
        sb->log_dropped = 0;
    }
    if (sb->log_lines >= LOG_PER_WINDOW) {
        sb->log_dropped++;
        return;
    }
    sb->log_lines++;
    const char *name = (nr >= 0 && nr < SENTRY_NR_MAX && sup->names[nr]) ? sup->names[nr] : "?";
    thaw_warn("sentry", "deny", "sandbox=%s pid=%d syscall=%s nr=%ld errno=%d reason=\"%s\"%s%s%s",
              sb->id, (int)pid, name, nr, errnum, why, detail ? " detail=\"" : "",
              detail ? detail : "", detail ? "\"" : "");
}

static void serve(sentry_supervisor_t *sup, sentry_t *sb, struct seccomp_notif *req,
                  struct seccomp_notif_resp *resp, size_t req_size, size_t resp_size)
{
    memset(req, 0, req_size);
    int rc = seccomp_notify_receive(sb->listener, req);
    if (rc < 0) {
        /* -ENOENT: the caller went away between poll and receive. */
        sup->stats.stale++;
        return;
    }
    sup->stats.notifications++;
    memset(resp, 0, resp_size);
    resp->id = req->id;
    uint64_t t0 = thaw_now_ns();
    sentry__handle(sup, sb, req, resp);
    sup->stats.busy_ns += thaw_now_ns() - t0;
    if (resp->id == 0)
        return; /* answered already (ADDFD with SEND) */
    rc = seccomp_notify_respond(sb->listener, resp);
    if (rc < 0)
        sup->stats.stale++; /* the caller died or was interrupted meanwhile */
}

static void *sup_thread(void *arg)
{
    sentry_supervisor_t *sup = arg;
    /* Private cwd/umask for this thread (handlers set the caller's umask),
     * and no supplementary groups: opens on a sandbox's behalf must carry
     * only its ids (handlers.c switches fsuid/fsgid per request). */
    if (unshare(CLONE_FS) < 0)
        thaw_error("sentry", "supervisor_unshare", "errno=%d", errno);
    if (syscall(SYS_setgroups, 0, NULL) < 0)
        thaw_error("sentry", "supervisor_setgroups", "errno=%d", errno);

    struct seccomp_notif *req = NULL;
    struct seccomp_notif_resp *resp = NULL;
    if (seccomp_notify_alloc(&req, &resp) < 0) {
        thaw_error("sentry", "supervisor_alloc", "what=notify buffers");
        return NULL;
    }
    struct seccomp_notif_sizes sizes = {0};
    if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0) {
        sizes.seccomp_notif = sizeof(*req);
        sizes.seccomp_notif_resp = sizeof(*resp);
    }
    for (;;) {
        struct epoll_event ev[32];
        int n = epoll_wait(sup->epfd, ev, 32, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            thaw_error("sentry", "supervisor_epoll", "errno=%d", errno);
            break;
        }
        bool stop = false;
        pthread_mutex_lock(&sup->lock);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.u64 == UINT64_MAX) {
                stop = true;
                continue;
            }
            uint32_t slot = (uint32_t)ev[i].data.u64, gen = (uint32_t)(ev[i].data.u64 >> 32);
            if (slot >= sup->max || sup->gens[slot] != gen || !sup->slots[slot])
                continue;
            sentry_t *sb = sup->slots[slot];
            if (!sb->registered || sb->listener_dead)
                continue;
            if (ev[i].events & EPOLLIN)
                serve(sup, sb, req, resp, sizes.seccomp_notif, sizes.seccomp_notif_resp);
            else if (ev[i].events & (EPOLLHUP | EPOLLERR)) {
                /* Every task of the filter is gone: stop polling it (it
                 * would report HUP forever); destroy unregisters it. */
                epoll_ctl(sup->epfd, EPOLL_CTL_DEL, sb->listener, NULL);
                sb->listener_dead = true;
            }
        }
        pthread_mutex_unlock(&sup->lock);
        if (stop)
            break;
    }
    seccomp_notify_free(req, resp);
    return NULL;
}

int sentry__sup_reserve(sentry_supervisor_t *sup, sentry_t *sb)
{
    pthread_mutex_lock(&sup->lock);
    int rc = -EAGAIN;
    for (uint32_t i = 0; i < sup->max; i++)
        if (!sup->slots[i]) {
            sup->slots[i] = sb;
            sup->gens[i]++;
            sb->slot = i;
            sb->gen = sup->gens[i];
            sb->host_uid = sup->id_base + i * SENTRY_IDS_PER_SANDBOX;
            /* Unique across thawd processes too: cgroup names are global. */
            snprintf(sb->id, sizeof(sb->id), "sb-%d-%llu", (int)getpid(),
                     (unsigned long long)++sup->next_id);
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&sup->lock);
    return rc;
}

void sentry__sup_release(sentry_supervisor_t *sup, sentry_t *sb)
{
    pthread_mutex_lock(&sup->lock);
    if (sb->slot < sup->max && sup->slots[sb->slot] == sb)
        sup->slots[sb->slot] = NULL;
    pthread_mutex_unlock(&sup->lock);
}

/* Linux 6.6: wake the supervisor and the caller on the current CPU, which
 * roughly halves a notification round trip.  Older kernels refuse; fine. */
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1ul
#endif

int sentry__sup_register(sentry_supervisor_t *sup, sentry_t *sb, thaw_err_t *err)
{
    (void)ioctl(sb->listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
    pthread_mutex_lock(&sup->lock);
    struct epoll_event ev = {.events = EPOLLIN,
                             .data.u64 = (uint64_t)sb->slot | ((uint64_t)sb->gen << 32)};
    int rc = 0;
    if (epoll_ctl(sup->epfd, EPOLL_CTL_ADD, sb->listener, &ev) < 0)
        rc = thaw_err_sys(err, errno, "sandbox %s: add the seccomp listener to epoll", sb->id);
    else
        sb->registered = true;
    pthread_mutex_unlock(&sup->lock);
    return rc;
}

void sentry__sup_unregister(sentry_supervisor_t *sup, sentry_t *sb)
{
    pthread_mutex_lock(&sup->lock);
    if (sb->registered && !sb->listener_dead)
        epoll_ctl(sup->epfd, EPOLL_CTL_DEL, sb->listener, NULL);
    sb->registered = false;
    pthread_mutex_unlock(&sup->lock);
}

static int read_policy_file(const char *path, char **out, thaw_err_t *err)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return thaw_err_sys(err, errno, "policy '%s'", path);
    size_t cap = 1 << 16, len = 0;
    _cleanup_free_ char *buf = malloc(cap + 1);
    if (!buf)
        return thaw_err_set(err, ENOMEM, "policy '%s': out of memory", path);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap)
            return thaw_err_set(err, EFBIG, "policy '%s': larger than %zu bytes", path, cap);
    }
    if (ferror(f))
        return thaw_err_sys(err, EIO, "policy '%s': read", path);
    buf[len] = '\0';
    if (memchr(buf, '\0', len))
        return thaw_err_set(err, EINVAL, "policy '%s': contains a NUL byte", path);
    *out = TAKE_PTR(buf);
    return 0;
}

int sentry_supervisor_create(const sentry_supervisor_config_t *cfg, sentry_supervisor_t **out,
                             thaw_err_t *err)
{
    sentry_supervisor_config_t c = cfg ? *cfg : (sentry_supervisor_config_t){0};
    if (!c.id_base)
        c.id_base = 0x40000000u;
    if (!c.max_sandboxes)
        c.max_sandboxes = 1024;
    if ((uint64_t)c.id_base + (uint64_t)c.max_sandboxes * SENTRY_IDS_PER_SANDBOX > 0xfffffffeull)
        return thaw_err_set(err, EINVAL,
                            "supervisor: id range %u + %u x 65536 does not fit in 32-bit ids",
                            c.id_base, c.max_sandboxes);

    sentry_supervisor_t *sup = calloc(1, sizeof(*sup));
    if (!sup)
        return thaw_err_set(err, ENOMEM, "supervisor: out of memory");
    sup->epfd = sup->wakefd = -1;
    sup->id_base = c.id_base;
    sup->max = c.max_sandboxes;
    pthread_mutex_init(&sup->lock, NULL);
    int rc;
    sup->slots = calloc(sup->max, sizeof(*sup->slots));
    sup->gens = calloc(sup->max, sizeof(*sup->gens));
    if (!sup->slots || !sup->gens) {
        rc = thaw_err_set(err, ENOMEM, "supervisor: out of memory");
        goto fail;
    }

    if (c.policy_path) {
        _cleanup_free_ char *text = NULL;
        if ((rc = read_policy_file(c.policy_path, &text, err)) < 0)
            goto fail;
        rc = sentry__policy_parse(text, c.policy_path, &sup->policy, err);
    } else {
        rc = sentry__policy_parse(sentry__policy_default, sentry__policy_default_name, &sup->policy,
                                  err);
    }
    if (rc < 0)
        goto fail;
    /* Every brokered call must have a handler: catch policy/ABI drift here. */
    for (int nr = 0; nr < SENTRY_NR_MAX; nr++)
        if (sup->policy.fallback[nr] == SENTRY_ACT_NOTIFY && !sentry__sysinfo(nr)) {
            char *nm = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
            rc = thaw_err_set(err, EINVAL, "policy: notify %s: the supervisor has no handler",
                              nm ? nm : "?");
            free(nm);
            goto fail;
        }
    if ((rc = sentry__policy_compile(&sup->policy, &sup->bpf, err)) < 0)
        goto fail;
    for (int nr = 0; nr < SENTRY_NR_MAX; nr++)
        sup->names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);

    unsigned swept = sentry__cgroup_sweep();
    if (swept)
        thaw_warn("sentry", "stale_sandboxes", "removed=%u", swept);

    sup->epfd = epoll_create1(EPOLL_CLOEXEC);
    sup->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sup->epfd < 0 || sup->wakefd < 0) {
        rc = thaw_err_sys(err, errno, "supervisor: epoll/eventfd");
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    if (epoll_ctl(sup->epfd, EPOLL_CTL_ADD, sup->wakefd, &ev) < 0) {
        rc = thaw_err_sys(err, errno, "supervisor: epoll_ctl");
        goto fail;
    }
    if ((rc = pthread_create(&sup->thread, NULL, sup_thread, sup)) != 0) {
        rc = thaw_err_sys(err, rc, "supervisor: start thread");
        goto fail;
    }
    sup->thread_started = true;
    thaw_info("sentry", "supervisor_start",
              "allowed=%u allowed_cond=%u notified=%u denied=%u errno=%u bpf_insns=%u",
              sup->bpf.allowed, sup->bpf.allowed_cond, sup->bpf.notified, sup->bpf.denied,
              sup->bpf.errno_direct, (unsigned)sup->bpf.len);
    *out = sup;
    return 0;
fail:
    sentry_supervisor_destroy(sup);
    return rc;
}

void sentry_supervisor_destroy(sentry_supervisor_t *sup)
{
    if (!sup)
        return;
    if (sup->thread_started) {
        uint64_t one = 1;
        ssize_t n = write(sup->wakefd, &one, sizeof(one));
        (void)n;
        pthread_join(sup->thread, NULL);
    }
    for (uint32_t i = 0; sup->slots && i < sup->max; i++)
        if (sup->slots[i])
            thaw_error("sentry", "supervisor_leak", "sandbox=%s", sup->slots[i]->id);
    if (sup->epfd >= 0)
        close(sup->epfd);
    if (sup->wakefd >= 0)
        close(sup->wakefd);
    for (int nr = 0; nr < SENTRY_NR_MAX; nr++)
        free(sup->names[nr]);
    sentry__bpf_free(&sup->bpf);
    sentry__policy_free(&sup->policy);
    free(sup->slots);
    free(sup->gens);
    pthread_mutex_destroy(&sup->lock);
    free(sup);
}

void sentry_supervisor_stats(sentry_supervisor_t *sup, sentry_stats_t *out)
{
    pthread_mutex_lock(&sup->lock);
    *out = sup->stats;
    pthread_mutex_unlock(&sup->lock);
}

void sentry_supervisor_filter_info(sentry_supervisor_t *sup, sentry_filter_info_t *out)
{
    *out = (sentry_filter_info_t){
        .allowed = sup->bpf.allowed,
        .allowed_cond = sup->bpf.allowed_cond,
        .notified = sup->bpf.notified,
        .denied = sup->bpf.denied,
        .errno_direct = sup->bpf.errno_direct,
        .bpf_insns = sup->bpf.len,
    };
}
