// SPDX-License-Identifier: Apache-2.0
/*
 * The per-VM event thread: host-side device work that must not run on a vCPU
 * (queue notifications arriving through ioeventfds, the agent socket
 * becoming readable or writable, io_uring completions).  One epoll set; a
 * source is a descriptor plus a callback.  Sources are registered before the
 * thread starts and never removed, so the table needs no lock.
 */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/internal.h"

int vmm__event_init(vmm_t *vm)
{
    vm->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (vm->epoll_fd < 0)
        return -errno;
    vm->event_stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->event_stop_fd < 0)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    if (epoll_ctl(vm->epoll_fd, EPOLL_CTL_ADD, vm->event_stop_fd, &ev) < 0)
        return -errno;
    return 0;
}

int vmm__event_add(vmm_t *vm, int fd, uint32_t events, vmm_event_fn fn, void *ctx)
{
    if (vm->n_events == VMM_EVENT_MAX)
        return -ENOSPC;
    unsigned i = vm->n_events;
    vm->events[i] = (vmm_event_src_t){.fd = fd, .fn = fn, .ctx = ctx};
    struct epoll_event ev = {.events = events, .data.u32 = i};
    if (epoll_ctl(vm->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    vm->n_events++;
    return 0;
}

int vmm__event_mod(vmm_t *vm, int fd, uint32_t events)
{
    for (unsigned i = 0; i < vm->n_events; i++) {
        if (vm->events[i].fd != fd)
            continue;
        struct epoll_event ev = {.events = events, .data.u32 = i};
        return epoll_ctl(vm->epoll_fd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
    }
    return -ENOENT;
}

/*
 * The control eventfd: stop, or pause.  A pause first lets every device
 * finish host-side work in flight (virtio-blk I/O), then parks until resume,
 * so guest memory and device state stay still while a snapshot is taken.
 * Returns false when the thread should exit.
 */
static bool control(vmm_t *vm)
{
    uint64_t cnt;
    if (read(vm->event_stop_fd, &cnt, sizeof(cnt)) < 0) {
        /* EAGAIN: already consumed; the flags below decide */
    }
    pthread_mutex_lock(&vm->lock);
    bool pause = vm->pause_req && !atomic_load(&vm->stopping);
    pthread_mutex_unlock(&vm->lock);
    if (pause) {
        for (unsigned i = 0; i < vm->n_devices; i++) {
            vmm_device_t *d = vm->devices[i];
            if (d->ops->quiesce) {
                pthread_mutex_lock(&d->lock);
                d->ops->quiesce(d);
                pthread_mutex_unlock(&d->lock);
            }
        }
        pthread_mutex_lock(&vm->lock);
        vm->event_parked = true;
        pthread_cond_broadcast(&vm->cond);
        while (vm->pause_req && !atomic_load(&vm->stopping))
            pthread_cond_wait(&vm->cond, &vm->lock);
        vm->event_parked = false;
        pthread_mutex_unlock(&vm->lock);
    }
    return !atomic_load(&vm->stopping);
}

void vmm__event_wake(vmm_t *vm)
{
    uint64_t one = 1;
    if (write(vm->event_stop_fd, &one, sizeof(one)) < 0) {
        /* only fails on counter overflow */
    }
}

static void *event_thread(void *arg)
{
    vmm_t *vm = arg;
    pthread_setname_np(pthread_self(), "vmm-events");
    for (;;) {
        struct epoll_event evs[16];
        int n = epoll_wait(vm->epoll_fd, evs, 16, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < n; i++) {
            uint32_t idx = evs[i].data.u32;
            if (idx == UINT32_MAX) {
                if (!control(vm))
                    return NULL;
                continue;
            }
            if (idx < vm->n_events)
                vm->events[idx].fn(vm->events[idx].ctx, evs[i].events);
        }
    }
    return NULL;
}

int vmm__event_start(vmm_t *vm)
{
    int rc = pthread_create(&vm->event_thread, NULL, event_thread, vm);
    if (rc != 0)
        return -rc;
    vm->event_started = true;
    return 0;
}

void vmm__event_stop(vmm_t *vm)
{
    if (vm->event_started) {
        atomic_store(&vm->stopping, true);
        pthread_mutex_lock(&vm->lock);
        pthread_cond_broadcast(&vm->cond);
        pthread_mutex_unlock(&vm->lock);
        vmm__event_wake(vm);
        pthread_join(vm->event_thread, NULL);
        vm->event_started = false;
    }
    if (vm->epoll_fd >= 0)
        close(vm->epoll_fd);
    if (vm->event_stop_fd >= 0)
        close(vm->event_stop_fd);
    vm->epoll_fd = vm->event_stop_fd = -1;
}
