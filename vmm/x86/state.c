// SPDX-License-Identifier: Apache-2.0
/*
 * x86 vCPU and VM state for snapshots: save reads everything KVM holds for
 * a paused vCPU (CPUID, MP state, regs, sregs, XSAVE, XCRs, debug
 * registers, LAPIC, MSRs, vCPU events, TSC frequency) and for the VM (PIC
 * master and slave, IOAPIC, PIT, kvmclock); restore writes it back in the
 * order KVM needs: CPUID first (it decides what the rest may hold), LAPIC
 * before MSRs (the TSC deadline MSR needs the LAPIC mode), events last
 * (pending exceptions and NMIs apply to the final register state).  The MSR
 * list is KVM's index list intersected with the MSRs known to be safe to
 * migrate (as Firecracker does).  Also: refuse a snapshot whose CPUID
 * asks for features this host cannot give, naming them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/cleanup.h"
#include "vmm/internal.h"
#include "vmm/state.h"

static const uint32_t safe_msrs[] = {
    0x10,  /* TSC */
    0x3b,  /* TSC_ADJUST */
    0x48,  /* SPEC_CTRL */
    0x174, /* SYSENTER_CS */
    0x175, /* SYSENTER_ESP */
    0x176, /* SYSENTER_EIP */
    0x1a0, /* MISC_ENABLE */
    0x277, /* PAT */
    0x2ff, /* MTRR default type */
    0x200,      0x201,      0x202,      0x203,      0x204,      0x205,      0x206,
    0x207, /* variable MTRRs */
    0x208,      0x209,      0x20a,      0x20b,      0x20c,      0x20d,      0x20e,
    0x20f,      0x250,      0x258,      0x259,      0x268,      0x269,      0x26a,
    0x26b,      0x26c,      0x26d,      0x26e,      0x26f, /* fixed */
    0x6e0,                                                 /* TSC_DEADLINE: after the LAPIC */
    0xda0,                                                 /* XSS */
    0xc0000081,                                            /* STAR */
    0xc0000082,                                            /* LSTAR */
    0xc0000083,                                            /* CSTAR */
    0xc0000084,                                            /* SYSCALL_MASK */
    0xc0000102,                                            /* KERNEL_GS_BASE */
    0xc0000103,                                            /* TSC_AUX */
    0x11,       0x12,                                      /* kvmclock (old) */
    0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03, 0x4b564d04, 0x4b564d05, 0x4b564d06,
    0x4b564d07, /* kvmclock, async PF, steal time, PV EOI, poll control */
};

/* safe_msrs ∩ KVM_GET_MSR_INDEX_LIST, in safe_msrs order (fetched once). */
static pthread_mutex_t msr_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t msr_list[THAW_ARRAY_SIZE(safe_msrs)];
static int msr_count = -1;

static int saved_msr_list(int kvm_fd, const uint32_t **out)
{
    pthread_mutex_lock(&msr_lock);
    if (msr_count < 0) {
        struct kvm_msr_list probe = {.nmsrs = 0};
        ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe); /* E2BIG, sets nmsrs */
        struct kvm_msr_list *l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(uint32_t));
        if (l) {
            l->nmsrs = probe.nmsrs;
            if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) == 0) {
                int n = 0;
                for (unsigned i = 0; i < THAW_ARRAY_SIZE(safe_msrs); i++)
                    for (unsigned j = 0; j < l->nmsrs; j++)
                        if (l->indices[j] == safe_msrs[i]) {
                            msr_list[n++] = safe_msrs[i];
                            break;
                        }
                msr_count = n;
            }
            free(l);
        }
    }
    int n = msr_count;
    pthread_mutex_unlock(&msr_lock);
    *out = msr_list;
    return n < 0 ? -EIO : n;
}

#define VIOCTL(fd, req, arg, what)                                                                 \
    do {                                                                                           \
        if (ioctl((fd), (req), (arg)) < 0)                                                         \
            return thaw_err_sys(err, errno, "vcpu %u: %s", v->id, what);                           \
    } while (0)

int vmm_arch_vcpu_save(vmm_t *vm, vmm_vcpu_t *v, vmm_vcpu_state_t *s, thaw_err_t *err)
{
    memset(s, 0, sizeof(*s));
    s->version = VMM_VCPU_STATE_VERSION;
    s->id = v->id;

    struct {
        struct kvm_cpuid2 hdr;
        struct kvm_cpuid_entry2 e[VMM_MAX_SAVED_CPUID];
    } cpuid;
    memset(&cpuid, 0, sizeof(cpuid));
    cpuid.hdr.nent = VMM_MAX_SAVED_CPUID;
    VIOCTL(v->fd, KVM_GET_CPUID2, &cpuid, "KVM_GET_CPUID2");
    s->n_cpuid = cpuid.hdr.nent;
    memcpy(s->cpuid, cpuid.e, s->n_cpuid * sizeof(cpuid.e[0]));

    VIOCTL(v->fd, KVM_GET_MP_STATE, &s->mp, "KVM_GET_MP_STATE");
    VIOCTL(v->fd, KVM_GET_REGS, &s->regs, "KVM_GET_REGS");
    VIOCTL(v->fd, KVM_GET_SREGS, &s->sregs, "KVM_GET_SREGS");

    int xsz = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    if (xsz > VMM_XSAVE_MAX)
        return thaw_err_set(err, E2BIG, "vcpu %u: XSAVE area of %d bytes exceeds %d", v->id, xsz,
                            VMM_XSAVE_MAX);
    if (xsz > (int)sizeof(struct kvm_xsave)) {
        VIOCTL(v->fd, KVM_GET_XSAVE2, s->xsave, "KVM_GET_XSAVE2");
        s->xsave_len = (uint32_t)xsz;
    } else {
        VIOCTL(v->fd, KVM_GET_XSAVE, s->xsave, "KVM_GET_XSAVE");
        s->xsave_len = sizeof(struct kvm_xsave);
    }
    VIOCTL(v->fd, KVM_GET_XCRS, &s->xcrs, "KVM_GET_XCRS");
    VIOCTL(v->fd, KVM_GET_DEBUGREGS, &s->dregs, "KVM_GET_DEBUGREGS");
    VIOCTL(v->fd, KVM_GET_LAPIC, &s->lapic, "KVM_GET_LAPIC");

    const uint32_t *list;
    int n = saved_msr_list(vm->kvm_fd, &list);
    if (n < 0)
        return thaw_err_set(err, EIO, "KVM_GET_MSR_INDEX_LIST failed");
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[VMM_MAX_SAVED_MSRS];
    } m;
    memset(&m, 0, sizeof(m));
    m.hdr.nmsrs = (uint32_t)n;
    for (int i = 0; i < n; i++)
        m.e[i].index = list[i];
    int got = ioctl(v->fd, KVM_GET_MSRS, &m);
    if (got < 0)
        return thaw_err_sys(err, errno, "vcpu %u: KVM_GET_MSRS", v->id);
    if (got != n)
        return thaw_err_set(err, EIO, "vcpu %u: KVM_GET_MSRS: msr 0x%x unreadable", v->id,
                            list[got]);
    s->n_msrs = (uint32_t)n;
    memcpy(s->msrs, m.e, (size_t)n * sizeof(m.e[0]));

    VIOCTL(v->fd, KVM_GET_VCPU_EVENTS, &s->events, "KVM_GET_VCPU_EVENTS");
    int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
    s->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
    return 0;
}

int vmm_arch_vcpu_state_check(const vmm_vcpu_state_t *s, unsigned id, thaw_err_t *err)
{
    if (s->version != VMM_VCPU_STATE_VERSION)
        return thaw_err_set(err, EINVAL, "vcpu %u state: unknown version %u", id, s->version);
    if (s->id != id)
        return thaw_err_set(err, EINVAL, "vcpu %u state: saved for vcpu %u", id, s->id);
    if (s->n_cpuid > VMM_MAX_SAVED_CPUID || s->n_msrs > VMM_MAX_SAVED_MSRS ||
        s->xsave_len > VMM_XSAVE_MAX || s->xsave_len < sizeof(struct kvm_xsave))
        return thaw_err_set(err, EINVAL,
                            "vcpu %u state: %u CPUID leaves, %u MSRs or %u XSAVE bytes out of "
                            "range",
                            id, s->n_cpuid, s->n_msrs, s->xsave_len);
    return 0;
}

int vmm_arch_vcpu_restore(vmm_t *vm, vmm_vcpu_t *v, const vmm_vcpu_state_t *s, thaw_err_t *err)
{
    int rc = vmm_arch_vcpu_state_check(s, v->id, err);
    if (rc < 0)
        return rc;
    if (s->tsc_khz) {
        int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
        if (khz != (int)s->tsc_khz && ioctl(v->fd, KVM_SET_TSC_KHZ, s->tsc_khz) < 0)
            return thaw_err_sys(err, errno,
                                "vcpu %u: TSC of %u kHz cannot be set here (host runs at %d kHz)",
                                v->id, s->tsc_khz, khz);
    }
    struct {
        struct kvm_cpuid2 hdr;
        struct kvm_cpuid_entry2 e[VMM_MAX_SAVED_CPUID];
    } cpuid;
    memset(&cpuid, 0, sizeof(cpuid));
    cpuid.hdr.nent = s->n_cpuid;
    memcpy(cpuid.e, s->cpuid, s->n_cpuid * sizeof(cpuid.e[0]));
    VIOCTL(v->fd, KVM_SET_CPUID2, &cpuid, "KVM_SET_CPUID2");
    VIOCTL(v->fd, KVM_SET_MP_STATE, &s->mp, "KVM_SET_MP_STATE");
    VIOCTL(v->fd, KVM_SET_REGS, &s->regs, "KVM_SET_REGS");
    VIOCTL(v->fd, KVM_SET_SREGS, &s->sregs, "KVM_SET_SREGS");
    VIOCTL(v->fd, KVM_SET_XSAVE, s->xsave, "KVM_SET_XSAVE");
    VIOCTL(v->fd, KVM_SET_XCRS, &s->xcrs, "KVM_SET_XCRS");
    VIOCTL(v->fd, KVM_SET_DEBUGREGS, &s->dregs, "KVM_SET_DEBUGREGS");
    VIOCTL(v->fd, KVM_SET_LAPIC, &s->lapic, "KVM_SET_LAPIC");
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[VMM_MAX_SAVED_MSRS];
    } m;
    memset(&m, 0, sizeof(m));
    m.hdr.nmsrs = s->n_msrs;
    memcpy(m.e, s->msrs, s->n_msrs * sizeof(m.e[0]));
    int put = ioctl(v->fd, KVM_SET_MSRS, &m);
    if (put < 0)
        return thaw_err_sys(err, errno, "vcpu %u: KVM_SET_MSRS", v->id);
    if ((uint32_t)put != s->n_msrs)
        return thaw_err_set(err, EINVAL, "vcpu %u: KVM_SET_MSRS: msr 0x%x refused", v->id,
                            s->msrs[put].index);
    VIOCTL(v->fd, KVM_SET_VCPU_EVENTS, &s->events, "KVM_SET_VCPU_EVENTS");
    return 0;
}

#undef VIOCTL

int vmm_arch_vm_save(vmm_t *vm, vmm_vm_state_t *s, thaw_err_t *err)
{
    memset(s, 0, sizeof(*s));
    s->version = VMM_VM_STATE_VERSION;
    s->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
    s->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
    s->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
    if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &s->pic_master) < 0 ||
        ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &s->pic_slave) < 0 ||
        ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &s->ioapic) < 0)
        return thaw_err_sys(err, errno, "KVM_GET_IRQCHIP");
    if (ioctl(vm->vm_fd, KVM_GET_PIT2, &s->pit) < 0)
        return thaw_err_sys(err, errno, "KVM_GET_PIT2");
    if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &s->clock) < 0)
        return thaw_err_sys(err, errno, "KVM_GET_CLOCK");
    return 0;
}

int vmm_arch_vm_state_check(const vmm_vm_state_t *s, thaw_err_t *err)
{
    if (s->version != VMM_VM_STATE_VERSION || s->pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER ||
        s->pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE || s->ioapic.chip_id != KVM_IRQCHIP_IOAPIC)
        return thaw_err_set(err, EINVAL, "VM state: version %u or irqchip ids invalid", s->version);
    return 0;
}

int vmm_arch_vm_restore(vmm_t *vm, const vmm_vm_state_t *s, thaw_err_t *err)
{
    int rc = vmm_arch_vm_state_check(s, err);
    if (rc < 0)
        return rc;
    if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &s->pic_master) < 0 ||
        ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &s->pic_slave) < 0 ||
        ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &s->ioapic) < 0)
        return thaw_err_sys(err, errno, "KVM_SET_IRQCHIP");
    if (ioctl(vm->vm_fd, KVM_SET_PIT2, &s->pit) < 0)
        return thaw_err_sys(err, errno, "KVM_SET_PIT2");
    struct kvm_clock_data clock = {.clock = s->clock.clock};
    if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
        return thaw_err_sys(err, errno, "KVM_SET_CLOCK");
    return 0;
}

/* Feature bits a guest may have been given: (leaf, subleaf, register, bit, name). */
static const struct feat {
    uint32_t fn, idx;
    uint8_t reg; /* 0 eax, 1 ebx, 2 ecx, 3 edx */
    uint8_t bit;
    const char *name;
} feats[] = {
    {1, 0, 2, 0, "sse3"},
    {1, 0, 2, 1, "pclmulqdq"},
    {1, 0, 2, 9, "ssse3"},
    {1, 0, 2, 12, "fma"},
    {1, 0, 2, 13, "cx16"},
    {1, 0, 2, 19, "sse4_1"},
    {1, 0, 2, 20, "sse4_2"},
    {1, 0, 2, 21, "x2apic"},
    {1, 0, 2, 22, "movbe"},
    {1, 0, 2, 23, "popcnt"},
    {1, 0, 2, 24, "tsc_deadline"},
    {1, 0, 2, 25, "aes"},
    {1, 0, 2, 26, "xsave"},
    {1, 0, 2, 28, "avx"},
    {1, 0, 2, 29, "f16c"},
    {1, 0, 2, 30, "rdrand"},
    {1, 0, 3, 25, "sse"},
    {1, 0, 3, 26, "sse2"},
    {7, 0, 1, 3, "bmi1"},
    {7, 0, 1, 5, "avx2"},
    {7, 0, 1, 8, "bmi2"},
    {7, 0, 1, 9, "erms"},
    {7, 0, 1, 16, "avx512f"},
    {7, 0, 1, 17, "avx512dq"},
    {7, 0, 1, 18, "rdseed"},
    {7, 0, 1, 19, "adx"},
    {7, 0, 1, 28, "avx512cd"},
    {7, 0, 1, 29, "sha_ni"},
    {7, 0, 1, 30, "avx512bw"},
    {7, 0, 1, 31, "avx512vl"},
    {7, 0, 2, 1, "avx512vbmi"},
    {7, 0, 2, 6, "avx512_vbmi2"},
    {7, 0, 2, 8, "gfni"},
    {7, 0, 2, 9, "vaes"},
    {7, 0, 2, 10, "vpclmulqdq"},
    {7, 0, 2, 11, "avx512_vnni"},
    {7, 0, 2, 14, "avx512_vpopcntdq"},
    {7, 0, 3, 24, "amx_tile"},
    {0xd, 1, 0, 0, "xsaveopt"},
    {0xd, 1, 0, 1, "xsavec"},
    {0xd, 1, 0, 3, "xsaves"},
    {0x80000001, 0, 2, 5, "abm"},
    {0x80000001, 0, 3, 27, "rdtscp"},
    {0x80000001, 0, 3, 26, "pdpe1gb"},
};

static const struct kvm_cpuid_entry2 *find_leaf(const struct kvm_cpuid_entry2 *e, unsigned n,
                                                uint32_t fn, uint32_t idx)
{
    for (unsigned i = 0; i < n; i++)
        if (e[i].function == fn &&
            (!(e[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e[i].index == idx))
            return &e[i];
    return NULL;
}

static uint32_t reg_of(const struct kvm_cpuid_entry2 *e, unsigned r)
{
    return r == 0 ? e->eax : r == 1 ? e->ebx : r == 2 ? e->ecx : e->edx;
}

/*
 * What this host gives a guest is read back from a fresh vCPU (KVM_GET_CPUID2
 * after our KVM_SET_CPUID2), not from KVM_GET_SUPPORTED_CPUID: under PVM the
 * supported list omits most features (no SSE3, no AVX) while the vCPU
 * reports, and natively runs, the host's.
 */
int vmm_arch_cpu_compat(vmm_t *vm, const vmm_vcpu_state_t *s, thaw_err_t *err)
{
    struct {
        struct kvm_cpuid2 hdr;
        struct kvm_cpuid_entry2 e[VMM_MAX_SAVED_CPUID];
    } cur;
    memset(&cur, 0, sizeof(cur));
    cur.hdr.nent = VMM_MAX_SAVED_CPUID;
    if (ioctl(vm->vcpus[0].fd, KVM_GET_CPUID2, &cur) < 0)
        return thaw_err_sys(err, errno, "KVM_GET_CPUID2");
    const struct kvm_cpuid2 *host = &cur.hdr;
    char missing[256] = "";
    size_t used = 0;
    unsigned n = 0;
    for (unsigned i = 0; i < THAW_ARRAY_SIZE(feats); i++) {
        const struct feat *f = &feats[i];
        const struct kvm_cpuid_entry2 *want = find_leaf(s->cpuid, s->n_cpuid, f->fn, f->idx);
        if (!want || !(reg_of(want, f->reg) & (1u << f->bit)))
            continue;
        const struct kvm_cpuid_entry2 *have = find_leaf(host->entries, host->nent, f->fn, f->idx);
        if (have && (reg_of(have, f->reg) & (1u << f->bit)))
            continue;
        if (used < sizeof(missing))
            used += (size_t)snprintf(missing + used, sizeof(missing) - used, "%s%s", n ? " " : "",
                                     f->name);
        n++;
    }
    if (n)
        return thaw_err_set(err, ENOTSUP, "snapshot needs CPU features this host lacks: %s",
                            missing);
    return 0;
}
