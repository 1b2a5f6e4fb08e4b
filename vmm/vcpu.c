// SPDX-License-Identifier: Apache-2.0
/*
 * vCPU threads: one per vCPU, each looping on KVM_RUN and dispatching port
 * I/O and MMIO exits to the bus.  A vCPU is kicked out of KVM_RUN for pause
 * and teardown by setting kvm_run.immediate_exit and sending the thread a
 * signal (VMM_KICK_SIGNAL, a no-op handler): the flag covers a kick that
 * lands before the thread enters KVM_RUN, the signal one that lands inside.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "vmm/internal.h"

#define VMM_KICK_SIGNAL (SIGRTMIN + 7)

static void kick_handler(int sig)
{
    (void)sig;
}

static pthread_once_t kick_once = PTHREAD_ONCE_INIT;

static void install_kick_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kick_handler; /* no SA_RESTART: KVM_RUN must return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(VMM_KICK_SIGNAL, &sa, NULL);
}

int vmm__vcpu_create(vmm_t *vm, unsigned id, thaw_err_t *err)
{
    vmm_vcpu_t *v = &vm->vcpus[id];
    v->vm = vm;
    v->id = id;
    v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
    if (v->fd < 0)
        return thaw_err_sys(err, errno, "KVM_CREATE_VCPU %u", id);
    int sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (sz < (int)sizeof(struct kvm_run))
        return thaw_err_sys(err, sz < 0 ? errno : EINVAL, "KVM_GET_VCPU_MMAP_SIZE");
    void *p = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (p == MAP_FAILED)
        return thaw_err_sys(err, errno, "mmap kvm_run of vcpu %u", id);
    v->run = p;
    v->run_size = (size_t)sz;
    return vmm_arch_vcpu_init(vm, v, err);
}

void vmm__vcpu_close(vmm_vcpu_t *v)
{
    if (v->run)
        munmap(v->run, v->run_size);
    v->run = NULL;
    if (v->fd >= 0)
        close(v->fd);
    v->fd = -1;
}

void vmm__vcpu_kick(vmm_vcpu_t *v)
{
    if (!v->run)
        return;
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    if (v->thread_started)
        pthread_kill(v->thread, VMM_KICK_SIGNAL);
}

static void handle_exit(vmm_vcpu_t *v);

/* Park while a pause is requested; returns false when the VM is stopping. */
static bool wait_runnable(vmm_vcpu_t *v)
{
    vmm_t *vm = v->vm;
    pthread_mutex_lock(&vm->lock);
    while (vm->pause_req && !atomic_load(&vm->stopping)) {
        if (!v->parked) {
            /* A port or MMIO exit is only complete once KVM has seen the
             * result (rip advanced, the read value in its register), which
             * happens on the next KVM_RUN.  Enter with immediate_exit set so
             * KVM finishes it and returns at once: the parked state is then
             * consistent for a snapshot. */
            __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&vm->lock);
            /* String I/O may need more than one round to complete. */
            for (int i = 0; i < 64 && ioctl(v->fd, KVM_RUN, 0) == 0; i++)
                handle_exit(v);
            pthread_mutex_lock(&vm->lock);
            if (!vm->pause_req || atomic_load(&vm->stopping))
                continue;
            v->parked = true;
            pthread_cond_broadcast(&vm->cond);
        }
        pthread_cond_wait(&vm->cond, &vm->lock);
    }
    v->parked = false;
    /* Cleared under the lock so that a kick that raced with this is either
     * seen above (pause_req) or lands after this store. */
    __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
    bool go = !atomic_load(&vm->stopping);
    pthread_mutex_unlock(&vm->lock);
    return go;
}

static void handle_io(vmm_vcpu_t *v)
{
    struct kvm_run *run = v->run;
    vmm_t *vm = v->vm;
    unsigned size = run->io.size;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    /* KVM sets these; checked anyway since a wrong offset would be a wild write. */
    if ((size != 1 && size != 2 && size != 4) ||
        run->io.data_offset + (uint64_t)size * run->io.count > v->run_size)
        return;
    atomic_fetch_add(&vm->exits_pio, 1);
    for (uint32_t i = 0; i < run->io.count; i++, data += size)
        vmm__bus_access(vm, VMM_BUS_PIO, run->io.port, data, size,
                        run->io.direction == KVM_EXIT_IO_OUT);
}

static void handle_mmio(vmm_vcpu_t *v)
{
    struct kvm_run *run = v->run;
    atomic_fetch_add(&v->vm->exits_mmio, 1);
    unsigned len = run->mmio.len;
    if (len != 1 && len != 2 && len != 4 && len != 8)
        return;
    /* An MMIO exit inside RAM means the memory behind it is gone (a lazy
     * restore whose chunk failed): the guest cannot go on. */
    if (vmm__gpa(v->vm, run->mmio.phys_addr, len)) {
        char what[64];
        snprintf(what, sizeof(what), "vcpu %u: access at 0x%llx", v->id,
                 (unsigned long long)run->mmio.phys_addr);
        vmm__mem_failed(v->vm, "vcpu", what);
        return;
    }
    vmm__bus_access(v->vm, VMM_BUS_MMIO, run->mmio.phys_addr, run->mmio.data, len,
                    run->mmio.is_write);
}

/* Act on the exit KVM_RUN just returned (rc 0). */
static void handle_exit(vmm_vcpu_t *v)
{
    vmm_t *vm = v->vm;
    struct kvm_run *run = v->run;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        handle_io(v);
        break;
    case KVM_EXIT_MMIO:
        handle_mmio(v);
        break;
    case KVM_EXIT_INTR:
        break;
    case KVM_EXIT_HLT:
        /* Only without an in-kernel LAPIC; ours has one, so a halt here
         * means the guest stopped for good. */
        vmm__stop(vm, VMM_EXIT_POWEROFF, 0, v->id, "vcpu %u: hlt", v->id);
        break;
    case KVM_EXIT_SHUTDOWN:
        vmm__stop(vm, VMM_EXIT_TRIPLE_FAULT, 0, v->id, "vcpu %u: triple fault", v->id);
        break;
    case KVM_EXIT_SYSTEM_EVENT:
        if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
            vmm__stop(vm, VMM_EXIT_RESET, 0, v->id, "vcpu %u: system reset", v->id);
        else
            vmm__stop(vm, VMM_EXIT_POWEROFF, 0, v->id, "vcpu %u: system event %u", v->id,
                      run->system_event.type);
        break;
    case KVM_EXIT_INTERNAL_ERROR:
        vmm__stop(vm, VMM_EXIT_INTERNAL_ERROR, 0, v->id,
                  "vcpu %u: KVM_EXIT_INTERNAL_ERROR suberror %u", v->id, run->internal.suberror);
        break;
    case KVM_EXIT_FAIL_ENTRY:
        vmm__stop(vm, VMM_EXIT_INTERNAL_ERROR, 0, v->id,
                  "vcpu %u: KVM_EXIT_FAIL_ENTRY reason 0x%llx", v->id,
                  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        break;
    default:
        atomic_fetch_add(&vm->exits_other, 1);
        vmm__stop(vm, VMM_EXIT_INTERNAL_ERROR, 0, v->id, "vcpu %u: unexpected exit %u", v->id,
                  run->exit_reason);
        break;
    }
}

static void *vcpu_thread(void *arg)
{
    vmm_vcpu_t *v = arg;
    vmm_t *vm = v->vm;
    char name[16];
    snprintf(name, sizeof(name), "vcpu%u", v->id);
    pthread_setname_np(pthread_self(), name);

    while (wait_runnable(v)) {
        if (v->id == 0 && atomic_load(&vm->first_run_ns) == 0)
            atomic_store(&vm->first_run_ns, thaw_now_ns() - vm->start_ns);
        int rc = ioctl(v->fd, KVM_RUN, 0);
        if (v->id == 0 && atomic_load(&vm->first_exit_ns) == 0)
            atomic_store(&vm->first_exit_ns, thaw_now_ns() - vm->start_ns);
        if (rc < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            if (errno == EFAULT && vmm__mem_gone(vm)) { /* report the memory's own error */
                int e = errno;
                char what[48];
                snprintf(what, sizeof(what), "vcpu %u: KVM_RUN: %s", v->id, strerror(e));
                vmm__mem_failed(vm, "vcpu", what);
                break;
            }
            vmm__stop(vm, VMM_EXIT_INTERNAL_ERROR, 0, v->id, "vcpu %u: KVM_RUN: %s", v->id,
                      strerror(errno));
            break;
        }
        handle_exit(v);
    }
    return NULL;
}

int vmm__vcpu_start(vmm_vcpu_t *v)
{
    pthread_once(&kick_once, install_kick_handler);
    /* The thread must take the kick signal even if the caller blocked it. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, VMM_KICK_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &set, &old);
    int rc = pthread_create(&v->thread, NULL, vcpu_thread, v);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -rc;
    v->thread_started = true;
    return 0;
}
