// SPDX-License-Identifier: Apache-2.0
/*
 * Snapshot and restore of a whole VM through snapshot/: vmm_snapshot()
 * pauses the VM and writes guest memory plus the state sections of
 * vmm/state.h (config, VM, one per vCPU, one per device); vmm_restore()
 * attaches memory with the chosen engine, re-creates the VM from the saved
 * config, checks the CPU features, loads VM and vCPU state and the devices'
 * state, and hands back a VM ready for vmm_start().
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "vmm/internal.h"
#include "vmm/state.h"

#define DEV_STATE_MAX 4096

/* What vmm_config_t a VM was built from, as far as restore needs it. */
static void config_save(vmm_t *vm, vmm_config_state_t *c)
{
    memset(c, 0, sizeof(*c));
    c->version = VMM_CONFIG_STATE_VERSION;
    c->vcpus = vm->n_vcpus;
    c->mem_bytes = vm->mem_bytes;
    c->n_devices = vm->n_devices;
    c->console_log_bytes = vm->console.size;
    c->flags = (vm->agent_host_fd >= 0 ? VMM_CFG_AGENT_CONSOLE : 0) |
               (vm->disk_path[0] ? VMM_CFG_DISK : 0) | (vm->disk_readonly ? VMM_CFG_DISK_RO : 0);
    memcpy(c->disk_path, vm->disk_path, sizeof(c->disk_path));
}

int vmm_snapshot(vmm_t *vm, const char *dir, const snap_write_opts_t *opts,
                 snap_write_stats_t *stats, thaw_err_t *err)
{
    pthread_mutex_lock(&vm->lock);
    bool was_paused = vm->pause_req;
    pthread_mutex_unlock(&vm->lock);
    if (vmm_pause(vm) < 0)
        return thaw_err_set(err, ESHUTDOWN, "snapshot: the guest has stopped (%s)",
                            vmm_exit_reason_name(vm->exit.reason));

    unsigned nsec = 2 + vm->n_vcpus + vm->n_devices;
    snap_section_t *sec = calloc(nsec, sizeof(*sec));
    vmm_vcpu_state_t *vcpus = calloc(vm->n_vcpus, sizeof(*vcpus));
    uint8_t *devbuf = calloc(vm->n_devices ? vm->n_devices : 1, DEV_STATE_MAX);
    vmm_config_state_t cfg;
    vmm_vm_state_t vms;
    int rc = 0;
    unsigned n = 0;
    if (!sec || !vcpus || !devbuf) {
        rc = thaw_err_set(err, ENOMEM, "snapshot: out of memory");
        goto out;
    }
    config_save(vm, &cfg);
    sec[n++] = (snap_section_t){VMM_SEC_CONFIG, VMM_CONFIG_STATE_VERSION, &cfg, sizeof(cfg)};
    if ((rc = vmm_arch_vm_save(vm, &vms, err)) < 0)
        goto out;
    sec[n++] = (snap_section_t){VMM_SEC_VM, VMM_VM_STATE_VERSION, &vms, sizeof(vms)};
    for (unsigned i = 0; i < vm->n_vcpus; i++) {
        if ((rc = vmm_arch_vcpu_save(vm, &vm->vcpus[i], &vcpus[i], err)) < 0)
            goto out;
        sec[n++] =
            (snap_section_t){VMM_SEC_VCPU + i, VMM_VCPU_STATE_VERSION, &vcpus[i], sizeof(vcpus[i])};
    }
    for (unsigned i = 0; i < vm->n_devices; i++) {
        vmm_device_t *d = vm->devices[i];
        if (!d->ops->save)
            continue;
        uint8_t *b = devbuf + (size_t)i * DEV_STATE_MAX;
        pthread_mutex_lock(&d->lock);
        int len = d->ops->save(d, b, DEV_STATE_MAX);
        pthread_mutex_unlock(&d->lock);
        if (len < 0) {
            rc = thaw_err_sys(err, -len, "snapshot: device %u (%s)", i, d->ops->name);
            goto out;
        }
        sec[n++] = (snap_section_t){VMM_SEC_DEVICE + i, 1, b, (uint64_t)len};
    }
    /* snap_write reads guest memory on its own threads, where a SIGBUS from
     * lazy memory that fails would kill the process: fault every page in
     * here first, guarded.  Installed pages stay, so nothing can fail after. */
    for (unsigned i = 0; vm->mem_lazy && i < vm->n_mem; i++) {
        if (vmm__gmem_touch(vm->mem[i].host, vm->mem[i].size) < 0) {
            atomic_fetch_add(&vm->host_mem_faults, 1);
            vmm__mem_failed(vm, "snapshot", "reading guest memory");
            pthread_mutex_lock(&vm->lock);
            rc = thaw_err_set(err, EIO, "snapshot: %s", vm->exit.detail);
            pthread_mutex_unlock(&vm->lock);
            goto out;
        }
    }
    snap_region_t regions[VMM_MAX_MEM_REGIONS];
    for (unsigned i = 0; i < vm->n_mem; i++)
        regions[i] = (snap_region_t){
            .guest_addr = vm->mem[i].gpa, .host = vm->mem[i].host, .size = vm->mem[i].size};
    snap_write_opts_t wo = opts ? *opts : (snap_write_opts_t){0};
    if (!wo.kind)
        wo.kind = "vm";
    rc = snap_write(dir, regions, vm->n_mem, sec, n, &wo, stats, err);
out:
    free(sec);
    free(vcpus);
    free(devbuf);
    if (!was_paused)
        vmm_resume(vm);
    return rc;
}

/* Section id of exactly `len` bytes (or at least min_len when len is 0). */
static int section(snap_t *snap, uint32_t id, size_t len, const void **data, size_t *got,
                   thaw_err_t *err)
{
    uint32_t ver;
    size_t l;
    if (snap_section_find(snap, id, &ver, data, &l) < 0)
        return thaw_err_set(err, ENOENT, "state section 0x%x missing", id);
    if (len && l != len)
        return thaw_err_set(err, EINVAL, "state section 0x%x: %zu bytes, expected %zu", id, l, len);
    if (got)
        *got = l;
    return 0;
}

/*
 * Everything about the VM and vCPU sections that needs no KVM: present, the
 * right size, versions, ids and counts in range.  Run before memory is
 * attached and the VM built, so a corrupt snapshot costs microseconds, not
 * a restore of its memory and a VM torn down again.
 */
static int check_sections(snap_t *snap, unsigned vcpus, thaw_err_t *err)
{
    const void *p;
    int rc = section(snap, VMM_SEC_VM, sizeof(vmm_vm_state_t), &p, NULL, err);
    vmm_vm_state_t *vms = malloc(sizeof(*vms));
    vmm_vcpu_state_t *vs = malloc(sizeof(*vs));
    if (!vms || !vs)
        rc = thaw_err_set(err, ENOMEM, "restore: out of memory");
    if (rc == 0) { /* copies: the sections need not be aligned */
        memcpy(vms, p, sizeof(*vms));
        rc = vmm_arch_vm_state_check(vms, err);
    }
    for (unsigned i = 0; rc == 0 && i < vcpus; i++) {
        rc = section(snap, VMM_SEC_VCPU + i, sizeof(*vs), &p, NULL, err);
        if (rc == 0) {
            memcpy(vs, p, sizeof(*vs));
            rc = vmm_arch_vcpu_state_check(vs, i, err);
        }
    }
    free(vms);
    free(vs);
    return rc;
}

static int restore_state(vmm_t *vm, snap_t *snap, vmm_restore_timing_t *t, thaw_err_t *err)
{
    uint64_t t0 = thaw_now_ns();
    const void *p;
    int rc;
    /* CPU features first: nothing is loaded into KVM for a snapshot this
     * host cannot run. */
    for (unsigned i = 0; i < vm->n_vcpus; i++) {
        if ((rc = section(snap, VMM_SEC_VCPU + i, sizeof(vmm_vcpu_state_t), &p, NULL, err)) < 0)
            return rc;
        if ((rc = vmm_arch_cpu_compat(vm, p, err)) < 0)
            return rc;
    }
    if ((rc = section(snap, VMM_SEC_VM, sizeof(vmm_vm_state_t), &p, NULL, err)) < 0)
        return rc;
    /* The copy keeps KVM's structs aligned whatever the section's alignment. */
    vmm_vm_state_t *vms = malloc(sizeof(*vms));
    vmm_vcpu_state_t *vs = malloc(sizeof(*vs));
    if (!vms || !vs) {
        free(vms);
        free(vs);
        return thaw_err_set(err, ENOMEM, "restore: out of memory");
    }
    memcpy(vms, p, sizeof(*vms));
    rc = vmm_arch_vm_restore(vm, vms, err);
    for (unsigned i = 0; rc == 0 && i < vm->n_vcpus; i++) {
        section(snap, VMM_SEC_VCPU + i, sizeof(*vs), &p, NULL, err);
        memcpy(vs, p, sizeof(*vs));
        rc = vmm_arch_vcpu_restore(vm, &vm->vcpus[i], vs, err);
    }
    free(vms);
    free(vs);
    if (rc < 0)
        return rc;
    uint64_t t1 = thaw_now_ns();
    t->state_ns = t1 - t0;
    for (unsigned i = 0; i < vm->n_devices; i++) {
        vmm_device_t *d = vm->devices[i];
        if (!d->ops->restore)
            continue;
        size_t len = 0;
        if ((rc = section(snap, VMM_SEC_DEVICE + i, 0, &p, &len, err)) < 0)
            return rc;
        pthread_mutex_lock(&d->lock);
        rc = d->ops->restore(d, p, len, err);
        pthread_mutex_unlock(&d->lock);
        if (rc < 0)
            return thaw_err_wrap(err, "device %u (%s)", i, d->ops->name);
    }
    t->devices_ns = thaw_now_ns() - t1;
    return 0;
}

/*
 * The lazy engine reports a chunk it could not read or verify once, on its
 * fault thread, before the faulting access fails: stop the VM with that
 * message (the caller sees it in vmm_exit_t.detail).  The VM is known only
 * after the memory is attached, hence the indirection.
 */
typedef struct mem_watch {
    _Atomic(vmm_t *) vm;
} mem_watch_t;

static void on_mem_error(void *opaque, const thaw_err_t *e)
{
    mem_watch_t *w = opaque;
    vmm_t *vm = atomic_load(&w->vm);
    if (vm)
        vmm__stop(vm, VMM_EXIT_INTERNAL_ERROR, 0, 0, "guest memory: %s", thaw_err_msg(e));
}

int vmm_restore(snap_t *snap, const vmm_restore_opts_t *opts, vmm_t **out,
                vmm_restore_timing_t *timing, thaw_err_t *err)
{
    uint64_t t0 = thaw_now_ns();
    vmm_restore_timing_t t = {0};
    *out = NULL;
    const void *p;
    int rc = section(snap, VMM_SEC_CONFIG, sizeof(vmm_config_state_t), &p, NULL, err);
    if (rc < 0)
        return thaw_err_wrap(err, "restore '%s'", snap_dir(snap));
    vmm_config_state_t cs;
    memcpy(&cs, p, sizeof(cs));
    cs.disk_path[sizeof(cs.disk_path) - 1] = '\0';
    if (cs.version != VMM_CONFIG_STATE_VERSION || cs.vcpus < 1 || cs.vcpus > VMM_MAX_VCPUS)
        return thaw_err_set(err, EINVAL, "restore '%s': config state version %u / %u vCPUs invalid",
                            snap_dir(snap), cs.version, cs.vcpus);
    if ((opts->expect_vcpus && opts->expect_vcpus != cs.vcpus) ||
        (opts->expect_mem_bytes && opts->expect_mem_bytes != cs.mem_bytes))
        return thaw_err_set(
            err, EINVAL,
            "restore '%s': snapshot has %u vCPUs and %llu MiB, expected %u and "
            "%llu MiB",
            snap_dir(snap), cs.vcpus, (unsigned long long)(cs.mem_bytes >> 20),
            opts->expect_vcpus ? opts->expect_vcpus : cs.vcpus,
            (unsigned long long)((opts->expect_mem_bytes ? opts->expect_mem_bytes : cs.mem_bytes) >>
                                 20));
    vmm_mem_region_t layout[VMM_MAX_MEM_REGIONS];
    int nreg = vmm_mem_layout(cs.mem_bytes, layout, VMM_MAX_MEM_REGIONS);
    if (nreg < 0 || snap_region_count(snap) != (size_t)nreg)
        return thaw_err_set(
            err, EINVAL, "restore '%s': %zu memory regions do not match %llu MiB of RAM",
            snap_dir(snap), snap_region_count(snap), (unsigned long long)(cs.mem_bytes >> 20));

    if ((rc = check_sections(snap, cs.vcpus, err)) < 0)
        return thaw_err_wrap(err, "restore '%s'", snap_dir(snap));

    uint64_t ta = thaw_now_ns();
    snap_mem_t *mem = NULL;
    snap_mem_opts_t mo = opts->mem_opts ? *opts->mem_opts : (snap_mem_opts_t){0};
    mem_watch_t *watch = NULL;
    if (!mo.on_error) { /* a caller's own callback takes precedence */
        watch = calloc(1, sizeof(*watch));
        if (!watch)
            return thaw_err_set(err, ENOMEM, "restore: out of memory");
        mo.on_error = on_mem_error;
        mo.opaque = watch;
    }
    rc = snap_mem_attach(snap, opts->engine, &mo, &mem, err);
    if (rc < 0) {
        free(watch);
        return thaw_err_wrap(err, "restore '%s'", snap_dir(snap));
    }
    t.mem_attach_ns = thaw_now_ns() - ta;
    for (int i = 0; i < nreg; i++) {
        snap_region_t r;
        snap_mem_region(mem, (size_t)i, &r);
        if (r.guest_addr != layout[i].gpa || r.size != layout[i].size) {
            snap_mem_destroy(mem);
            free(watch);
            return thaw_err_set(err, EINVAL,
                                "restore '%s': memory region %d at 0x%llx+0x%llx "
                                "does not match the layout",
                                snap_dir(snap), i, (unsigned long long)r.guest_addr,
                                (unsigned long long)r.size);
        }
        layout[i].host = r.host;
    }

    uint64_t tb = thaw_now_ns();
    vmm_config_t cfg = {
        .mem_bytes = cs.mem_bytes,
        .vcpus = cs.vcpus,
        .agent_console = cs.flags & VMM_CFG_AGENT_CONSOLE,
        .disk_path = (cs.flags & VMM_CFG_DISK) ? cs.disk_path : NULL,
        .disk_readonly = cs.flags & VMM_CFG_DISK_RO,
        .console_log_bytes = cs.console_log_bytes,
        .mem = layout,
        .mem_regions = (unsigned)nreg,
    };
    vmm_t *vm;
    rc = vmm__build(&cfg, false, &vm, err);
    if (rc < 0) {
        snap_mem_destroy(mem);
        free(watch);
        return thaw_err_wrap(err, "restore '%s'", snap_dir(snap));
    }
    vm->snap_mem = mem; /* released after the VM by vmm_destroy, then the watch */
    vm->mem_lazy = opts->engine == SNAP_ENGINE_LAZY;
    vm->mem_watch = watch;
    if (watch)
        atomic_store(&watch->vm, vm);
    t.vm_create_ns = thaw_now_ns() - tb;
    if (vm->n_devices != cs.n_devices) {
        unsigned made = vm->n_devices;
        vmm_destroy(vm);
        return thaw_err_set(err, EINVAL, "restore '%s': %u devices saved, %u re-created",
                            snap_dir(snap), cs.n_devices, made);
    }
    rc = restore_state(vm, snap, &t, err);
    if (rc < 0) {
        vmm_destroy(vm);
        return thaw_err_wrap(err, "restore '%s'", snap_dir(snap));
    }
    t.total_ns = thaw_now_ns() - t0;
    if (timing)
        *timing = t;
    *out = vm;
    return 0;
}
