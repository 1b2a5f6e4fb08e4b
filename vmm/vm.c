// SPDX-License-Identifier: Apache-2.0
/*
 * The VM's life: vmm_create() builds the KVM VM, memory, vCPUs and devices
 * and loads the kernel and initrd; start/pause/resume/wait; vmm__stop()
 * records why the guest stopped; vmm_destroy() tears everything down in the
 * reverse order, on every path, including a half-built VM.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/clock.h"
#include "common/log.h"
#include "snapshot/snap.h"
#include "vmm/internal.h"

#define MIB (1024ull * 1024ull)

const char *vmm_exit_reason_name(vmm_exit_reason_t r)
{
    switch (r) {
    case VMM_EXIT_NONE:
        return "none";
    case VMM_EXIT_POWEROFF:
        return "poweroff";
    case VMM_EXIT_RESET:
        return "reset";
    case VMM_EXIT_TRIPLE_FAULT:
        return "triple-fault";
    case VMM_EXIT_INTERNAL_ERROR:
        return "internal-error";
    case VMM_EXIT_DESTROYED:
        return "destroyed";
    }
    return "unknown";
}

void vmm__stop(vmm_t *vm, vmm_exit_reason_t reason, uint32_t code, unsigned vcpu, const char *fmt,
               ...)
{
    pthread_mutex_lock(&vm->lock);
    bool first = vm->exit.reason == VMM_EXIT_NONE;
    if (first) {
        vm->exit.reason = reason;
        vm->exit.code = code;
        vm->exit.vcpu = vcpu;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(vm->exit.detail, sizeof(vm->exit.detail), fmt, ap);
        va_end(ap);
    }
    atomic_store(&vm->stopping, true);
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    if (!first)
        return;
    if (reason != VMM_EXIT_DESTROYED)
        thaw_info("vmm", "guest-stopped", "reason=%s code=%u detail=\"%s\"",
                  vmm_exit_reason_name(reason), code, vm->exit.detail);
    for (unsigned i = 0; i < vm->n_vcpus; i++)
        vmm__vcpu_kick(&vm->vcpus[i]);
    uint64_t one = 1;
    if (write(vm->exit_fd, &one, sizeof(one)) < 0) {
        /* cannot fail for a fresh eventfd written once */
    }
    /* Nothing more will come from the guest: let the agent channel's reader
     * see EOF now rather than time out (vmm.h, vmm_agent_fd).  After the
     * exit_fd write, so that a reader who sees EOF and asks vmm_wait(vm, 0)
     * already learns why the guest stopped. */
    if (vm->agent_host_fd >= 0)
        shutdown(vm->agent_host_fd, SHUT_RDWR);
    /* Wake console waiters so they see the stop. */
    pthread_mutex_lock(&vm->console.lock);
    pthread_cond_broadcast(&vm->console.cond);
    pthread_mutex_unlock(&vm->console.lock);
}

void vmm__device_error(vmm_t *vm, const char *dev, const char *fmt, ...)
{
    uint64_t n = atomic_fetch_add(&vm->device_errors, 1);
    if (n >= 16) /* a hostile guest must not flood the log */
        return;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    thaw_warn("vmm", "device-error", "dev=%s msg=\"%s\"", dev, msg);
}

/* Map a whole file read-only; the mapping is the caller's. */
static int map_file(const char *path, const char *what, thaw_mapping_t *out, thaw_err_t *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return thaw_err_sys(err, errno, "%s '%s'", what, path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return thaw_err_sys(err, errno, "%s '%s': stat", what, path);
    if (!S_ISREG(st.st_mode))
        return thaw_err_set(err, EINVAL, "%s '%s': not a regular file", what, path);
    if (st.st_size == 0)
        return thaw_err_set(err, EINVAL, "%s '%s': empty file", what, path);
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        return thaw_err_sys(err, errno, "%s '%s': mmap", what, path);
    *out = (thaw_mapping_t){.addr = p, .len = (size_t)st.st_size};
    return 0;
}

static int load_images(vmm_t *vm, const vmm_config_t *cfg, thaw_err_t *err)
{
    _cleanup_munmap_ thaw_mapping_t k = THAW_MAPPING_NONE;
    _cleanup_munmap_ thaw_mapping_t rd = THAW_MAPPING_NONE;
    int rc = map_file(cfg->kernel_path, "kernel", &k, err);
    if (rc < 0)
        return rc;
    vmm_kernel_image_t img;
    rc = vmm__load_kernel(vm, k.addr, k.len, &img, err);
    if (rc < 0)
        return thaw_err_wrap(err, "kernel '%s'", cfg->kernel_path);

    uint64_t initrd_gpa = 0, initrd_size = 0;
    if (cfg->initrd_path) {
        rc = map_file(cfg->initrd_path, "initrd", &rd, err);
        if (rc < 0)
            return rc;
        /* Highest page-aligned spot under both the kernel's limit and the end
         * of low RAM, above the kernel. */
        uint64_t top = vm->mem[0].size;
        uint64_t max = img.initrd_addr_max ? (uint64_t)img.initrd_addr_max + 1 : top;
        if (max < top)
            top = max;
        if (rd.len > top || ((top - rd.len) & ~0xfffull) < ((img.load_end + 0xfff) & ~0xfffull))
            return thaw_err_set(err, EFBIG,
                                "initrd '%s': %zu bytes do not fit between the kernel's end "
                                "(0x%llx) and its limit (0x%llx)",
                                cfg->initrd_path, rd.len, (unsigned long long)img.load_end,
                                (unsigned long long)top);
        initrd_gpa = (top - rd.len) & ~0xfffull;
        initrd_size = rd.len;
        memcpy(vmm__gpa(vm, initrd_gpa, initrd_size), rd.addr, rd.len);
    }
    return vmm_arch_boot_setup(vm, cfg, &img, initrd_gpa, initrd_size, err);
}

static int create_agent_channel(vmm_t *vm, const vmm_config_t *cfg, thaw_err_t *err)
{
    if (!cfg->agent_console)
        return 0;
    return vmm__virtio_console_create(vm, err);
}

int vmm__build(const vmm_config_t *cfg, bool boot, vmm_t **out, thaw_err_t *err)
{
    uint64_t t0 = thaw_now_ns();
    *out = NULL;
    if (!cfg || (boot && !cfg->kernel_path))
        return thaw_err_set(err, EINVAL, "vmm config: kernel_path is required");
    if (cfg->vcpus < 1 || cfg->vcpus > VMM_MAX_VCPUS)
        return thaw_err_set(err, EINVAL, "vmm config: %u vCPUs (1..%d)", cfg->vcpus, VMM_MAX_VCPUS);

    vmm_t *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return thaw_err_set(err, ENOMEM, "vmm: out of memory");
    vmm__guard_init(); /* before any host thread can touch guest memory */
    vm->kvm_fd = vm->vm_fd = vm->epoll_fd = vm->event_stop_fd = vm->exit_fd = -1;
    vm->agent_host_fd = -1;
    for (unsigned i = 0; i < VMM_MAX_VCPUS; i++)
        vm->vcpus[i].fd = -1;
    pthread_mutex_init(&vm->lock, NULL);
    pthread_cond_init(&vm->cond, NULL);
    int rc;

    size_t logsz = cfg->console_log_bytes ? cfg->console_log_bytes : 64 * 1024;
    if (logsz > VMM_CONSOLE_LOG_MAX) {
        rc = thaw_err_set(err, EINVAL, "vmm: console log of %zu bytes exceeds the %u MiB limit",
                          logsz, VMM_CONSOLE_LOG_MAX >> 20);
        goto fail;
    }
    if ((rc = vmm__log_init(&vm->console, logsz)) < 0) {
        thaw_err_set(err, -rc, "vmm: console log of %zu bytes", logsz);
        goto fail;
    }
    vm->exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->exit_fd < 0) {
        rc = thaw_err_sys(err, errno, "eventfd");
        goto fail;
    }
    if ((rc = vmm__event_init(vm)) < 0) {
        thaw_err_sys(err, -rc, "vmm event loop");
        goto fail;
    }
    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0) {
        rc = thaw_err_sys(err, errno, "open /dev/kvm");
        goto fail;
    }
    if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        rc = thaw_err_set(err, ENOTSUP, "/dev/kvm: unsupported KVM API version");
        goto fail;
    }
    vm->pvm = vmm_host_is_pvm(NULL);
    vm->restoring = !boot;
    /* KVM_CREATE_VM registers an MMU notifier, which gives up with EINTR
     * whenever a signal is pending for the caller: retry. */
    for (int tries = 0; tries < 100; tries++) {
        vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
        if (vm->vm_fd >= 0 || errno != EINTR)
            break;
    }
    if (vm->vm_fd < 0) {
        rc = thaw_err_sys(err, errno, "KVM_CREATE_VM");
        goto fail;
    }
    /* Memory slots before the irqchip: once an irqchip exists, every slot
     * change waits for an SRCU grace period (about 7 ms under PVM). */
    if ((rc = vmm__mem_setup(vm, cfg, err)) < 0)
        goto fail;
    if ((rc = vmm_arch_vm_init(vm, err)) < 0)
        goto fail;
    vm->n_vcpus = cfg->vcpus;
    for (unsigned i = 0; i < cfg->vcpus; i++)
        if ((rc = vmm__vcpu_create(vm, i, err)) < 0)
            goto fail;

    if ((rc = vmm__uart_create(vm)) < 0 || (rc = vmm__i8042_create(vm)) < 0 ||
        (rc = vmm__poweroff_create(vm)) < 0) {
        thaw_err_set(err, -rc, "vmm: legacy devices");
        goto fail;
    }
    if ((rc = create_agent_channel(vm, cfg, err)) < 0)
        goto fail;
    if (cfg->disk_path) {
        if (strlen(cfg->disk_path) >= sizeof(vm->disk_path)) {
            rc = thaw_err_set(err, ENAMETOOLONG, "disk path too long");
            goto fail;
        }
        snprintf(vm->disk_path, sizeof(vm->disk_path), "%s", cfg->disk_path);
        vm->disk_readonly = cfg->disk_readonly;
        if ((rc = vmm__virtio_blk_create(vm, cfg->disk_path, cfg->disk_readonly, err)) < 0)
            goto fail;
    }
    if (boot && (rc = load_images(vm, cfg, err)) < 0)
        goto fail;
    for (unsigned i = 0; boot && i < cfg->vcpus; i++)
        if ((rc = vmm_arch_vcpu_boot_regs(vm, &vm->vcpus[i], err)) < 0)
            goto fail;

    vm->create_ns = thaw_now_ns() - t0;
    *out = vm;
    return 0;
fail:
    vmm_destroy(vm);
    return rc < 0 ? rc : -EIO;
}

int vmm_create(const vmm_config_t *cfg, vmm_t **out, thaw_err_t *err)
{
    return vmm__build(cfg, true, out, err);
}

int vmm_start(vmm_t *vm, thaw_err_t *err)
{
    if (vm->started)
        return thaw_err_set(err, EALREADY, "vmm: already started");
    vm->started = true;
    vm->start_ns = thaw_now_ns();
    int rc = vmm__event_start(vm);
    if (rc < 0)
        return thaw_err_sys(err, -rc, "vmm: event thread");
    for (unsigned i = 0; i < vm->n_vcpus; i++) {
        rc = vmm__vcpu_start(&vm->vcpus[i]);
        if (rc < 0) {
            vmm__stop(vm, VMM_EXIT_INTERNAL_ERROR, 0, i, "vcpu %u: thread: %s", i, strerror(-rc));
            return thaw_err_sys(err, -rc, "vmm: vcpu %u thread", i);
        }
    }
    return 0;
}

int vmm_pause(vmm_t *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->pause_req = true;
    pthread_mutex_unlock(&vm->lock);
    for (unsigned i = 0; i < vm->n_vcpus; i++)
        vmm__vcpu_kick(&vm->vcpus[i]);
    if (vm->event_started)
        vmm__event_wake(vm);
    pthread_mutex_lock(&vm->lock);
    for (;;) {
        bool all = !vm->event_started || vm->event_parked;
        for (unsigned i = 0; i < vm->n_vcpus; i++)
            if (vm->vcpus[i].thread_started && !vm->vcpus[i].parked)
                all = false;
        if (all || atomic_load(&vm->stopping))
            break;
        pthread_cond_wait(&vm->cond, &vm->lock);
    }
    pthread_mutex_unlock(&vm->lock);
    return atomic_load(&vm->stopping) ? -ESHUTDOWN : 0;
}

int vmm_resume(vmm_t *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->pause_req = false;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    return atomic_load(&vm->stopping) ? -ESHUTDOWN : 0;
}

int vmm_wait(vmm_t *vm, int timeout_ms, vmm_exit_t *exit)
{
    struct pollfd p = {.fd = vm->exit_fd, .events = POLLIN};
    int rc = poll(&p, 1, timeout_ms);
    if (rc < 0)
        return -errno;
    if (rc == 0)
        return 0;
    pthread_mutex_lock(&vm->lock);
    if (exit)
        *exit = vm->exit;
    pthread_mutex_unlock(&vm->lock);
    return 1;
}

int vmm_exit_fd(const vmm_t *vm)
{
    return vm->exit_fd;
}

int vmm_agent_fd(const vmm_t *vm)
{
    return vm->agent_host_fd;
}

snap_mem_t *vmm_snap_mem(const vmm_t *vm)
{
    return vm->snap_mem;
}

void vmm_get_stats(vmm_t *vm, vmm_stats_t *out)
{
    out->exits_pio = atomic_load(&vm->exits_pio);
    out->exits_mmio = atomic_load(&vm->exits_mmio);
    out->exits_other = atomic_load(&vm->exits_other);
    out->device_errors = atomic_load(&vm->device_errors);
    out->create_ns = vm->create_ns;
    out->first_exit_ns = atomic_load(&vm->first_exit_ns);
    out->first_run_ns = atomic_load(&vm->first_run_ns);
    out->host_mem_faults = atomic_load(&vm->host_mem_faults);
}

void vmm_destroy(vmm_t *vm)
{
    if (!vm)
        return;
    if (vm->exit_fd >= 0)
        vmm__stop(vm, VMM_EXIT_DESTROYED, 0, 0, "destroyed");
    for (unsigned i = 0; i < vm->n_vcpus; i++) {
        vmm_vcpu_t *v = &vm->vcpus[i];
        if (v->thread_started) {
            vmm__vcpu_kick(v);
            pthread_join(v->thread, NULL);
            v->thread_started = false;
        }
    }
    vmm__event_stop(vm);
    for (unsigned i = 0; i < vm->n_devices; i++) {
        vmm_device_t *d = vm->devices[i];
        if (d->ops->destroy)
            d->ops->destroy(d);
        pthread_mutex_destroy(&d->lock);
        free(d);
    }
    for (unsigned i = 0; i < VMM_MAX_VCPUS; i++)
        vmm__vcpu_close(&vm->vcpus[i]);
    free(vm->supported_cpuid);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    vmm__mem_free(vm);
    snap_mem_destroy(vm->snap_mem); /* after the VM: KVM no longer maps it */
    free(vm->mem_watch);            /* no failure callback can come after that */
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    if (vm->exit_fd >= 0)
        close(vm->exit_fd);
    if (vm->agent_host_fd >= 0)
        close(vm->agent_host_fd);
    vmm__log_free(&vm->console);
    pthread_mutex_destroy(&vm->lock);
    pthread_cond_destroy(&vm->cond);
    free(vm);
}
