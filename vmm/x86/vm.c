// SPDX-License-Identifier: Apache-2.0
/*
 * x86 VM and vCPU set-up behind the vmm_arch_* hooks: TSS and identity-map
 * addresses, the in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT, then per
 * vCPU its CPUID, boot MSRs, FPU state and LAPIC LINT0/LINT1 wiring.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/cleanup.h"
#include "vmm/internal.h"

#define MSR_IA32_SYSENTER_CS  0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_STAR              0xc0000081
#define MSR_LSTAR             0xc0000082
#define MSR_CSTAR             0xc0000083
#define MSR_SYSCALL_MASK      0xc0000084
#define MSR_KERNEL_GS_BASE    0xc0000102
#define MSR_IA32_TSC          0x10
#define MSR_IA32_MISC_ENABLE  0x1a0
#define MSR_MTRR_DEF_TYPE     0x2ff
#define APIC_LVT0             0x350
#define APIC_LVT1             0x360
#define APIC_MODE_EXTINT      0x7
#define APIC_MODE_NMI         0x4

static pthread_mutex_t cpuid_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvm_cpuid2 *cpuid_cache; /* process lifetime */

static int fetch_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out, thaw_err_t *err)
{
    for (unsigned nent = 128; nent <= 4096; nent *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));
        if (!c)
            return thaw_err_set(err, ENOMEM, "cpuid table");
        c->nent = nent;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            *out = c;
            return 0;
        }
        int e = errno;
        free(c);
        if (e != E2BIG)
            return thaw_err_sys(err, e, "KVM_GET_SUPPORTED_CPUID");
    }
    return thaw_err_set(err, E2BIG, "KVM_GET_SUPPORTED_CPUID: table too large");
}

int vmm_arch_vm_init(vmm_t *vm, thaw_err_t *err)
{
    /* VMX needs these two pages below 4 GiB for real-mode emulation; on
     * other backends the calls are accepted and unused. */
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)VMM_TSS_ADDR) < 0)
        return thaw_err_sys(err, errno, "KVM_SET_TSS_ADDR");
    uint64_t idmap = VMM_IDENTITY_MAP;
    if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0 && errno != EINVAL &&
        errno != ENOTTY)
        return thaw_err_sys(err, errno, "KVM_SET_IDENTITY_MAP_ADDR");
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
        return thaw_err_sys(err, errno, "KVM_CREATE_IRQCHIP");
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
        return thaw_err_sys(err, errno, "KVM_CREATE_PIT2");

    /* The supported set is a property of the host: fetched once per process
     * (0.3 ms under PVM) and copied for each VM. */
    pthread_mutex_lock(&cpuid_lock);
    if (!cpuid_cache) {
        int rc = fetch_supported_cpuid(vm->kvm_fd, &cpuid_cache, err);
        if (rc < 0) {
            pthread_mutex_unlock(&cpuid_lock);
            return rc;
        }
    }
    size_t sz = sizeof(*cpuid_cache) + cpuid_cache->nent * sizeof(cpuid_cache->entries[0]);
    vm->supported_cpuid = malloc(sz);
    if (vm->supported_cpuid)
        memcpy(vm->supported_cpuid, cpuid_cache, sz);
    pthread_mutex_unlock(&cpuid_lock);
    if (!vm->supported_cpuid)
        return thaw_err_set(err, ENOMEM, "cpuid table");
    return 0;
}

static int set_cpuid(vmm_t *vm, vmm_vcpu_t *v, thaw_err_t *err)
{
    const struct kvm_cpuid2 *s = vm->supported_cpuid;
    size_t sz = sizeof(*s) + s->nent * sizeof(s->entries[0]);
    struct kvm_cpuid2 *c = malloc(sz);
    if (!c)
        return thaw_err_set(err, ENOMEM, "cpuid table");
    memcpy(c, s, sz);
    vmm_arch_cpuid_adjust(c, v->id, vm->n_vcpus ? vm->n_vcpus : 1, vm->pvm);
    int rc = ioctl(v->fd, KVM_SET_CPUID2, c);
    int e = errno;
    free(c);
    if (rc < 0)
        return thaw_err_sys(err, e, "vcpu %u: KVM_SET_CPUID2", v->id);
    return 0;
}

static int set_msrs(vmm_vcpu_t *v, thaw_err_t *err)
{
    static const struct {
        uint32_t index;
        uint64_t data;
    } boot[] = {
        {MSR_IA32_SYSENTER_CS, 0},
        {MSR_IA32_SYSENTER_ESP, 0},
        {MSR_IA32_SYSENTER_EIP, 0},
        {MSR_STAR, 0},
        {MSR_CSTAR, 0},
        {MSR_KERNEL_GS_BASE, 0},
        {MSR_SYSCALL_MASK, 0},
        {MSR_LSTAR, 0},
        {MSR_IA32_TSC, 0},
        {MSR_IA32_MISC_ENABLE, 1},           /* fast strings */
        {MSR_MTRR_DEF_TYPE, (1u << 11) | 6}, /* MTRRs on, default write-back */
    };
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[THAW_ARRAY_SIZE(boot)];
    } m;
    memset(&m, 0, sizeof(m));
    m.hdr.nmsrs = THAW_ARRAY_SIZE(boot);
    for (unsigned i = 0; i < THAW_ARRAY_SIZE(boot); i++) {
        m.e[i].index = boot[i].index;
        m.e[i].data = boot[i].data;
    }
    int n = ioctl(v->fd, KVM_SET_MSRS, &m);
    if (n < 0)
        return thaw_err_sys(err, errno, "vcpu %u: KVM_SET_MSRS", v->id);
    if (n != (int)THAW_ARRAY_SIZE(boot))
        return thaw_err_set(err, EINVAL, "vcpu %u: KVM_SET_MSRS: msr 0x%x refused", v->id,
                            boot[n].index);
    return 0;
}

static int set_fpu_lapic(vmm_vcpu_t *v, thaw_err_t *err)
{
    struct kvm_fpu fpu;
    memset(&fpu, 0, sizeof(fpu));
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
        return thaw_err_sys(err, errno, "vcpu %u: KVM_SET_FPU", v->id);
    struct kvm_lapic_state la;
    if (ioctl(v->fd, KVM_GET_LAPIC, &la) < 0)
        return thaw_err_sys(err, errno, "vcpu %u: KVM_GET_LAPIC", v->id);
    uint32_t r;
    memcpy(&r, &la.regs[APIC_LVT0], 4);
    r = (r & ~0x700u) | (APIC_MODE_EXTINT << 8);
    memcpy(&la.regs[APIC_LVT0], &r, 4);
    memcpy(&r, &la.regs[APIC_LVT1], 4);
    r = (r & ~0x700u) | (APIC_MODE_NMI << 8);
    memcpy(&la.regs[APIC_LVT1], &r, 4);
    if (ioctl(v->fd, KVM_SET_LAPIC, &la) < 0)
        return thaw_err_sys(err, errno, "vcpu %u: KVM_SET_LAPIC", v->id);
    return 0;
}

int vmm_arch_vcpu_init(vmm_t *vm, vmm_vcpu_t *v, thaw_err_t *err)
{
    int rc = set_cpuid(vm, v, err);
    if (rc < 0 || vm->restoring) /* a restore loads all the rest from the snapshot */
        return rc;
    if ((rc = set_msrs(v, err)) < 0)
        return rc;
    return set_fpu_lapic(v, err);
}
