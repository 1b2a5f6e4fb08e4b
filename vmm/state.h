/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a VM snapshot holds besides guest memory (vmm/ internal): the state
 * sections written through snapshot/ and the fixed-width structs inside
 * them.  KVM's own structs (kvm_regs, kvm_sregs, ...) are part of the
 * kernel's stable ABI, so they are stored as they are.
 *
 * Sections (id: payload):
 *   0x001          vmm_config_state_t: what to re-create (memory, vCPUs, devices)
 *   0x002          vmm_vm_state_t: PIC master and slave, IOAPIC, PIT, kvmclock
 *   0x100 + i      vmm_vcpu_state_t of vCPU i
 *   0x200 + i      device i's state (device order is fixed by the config)
 *
 * Bump a version constant whenever its struct's layout or the meaning of a
 * field changes; the reader refuses versions it does not know.
 */
#ifndef THAW_VMM_STATE_H
#define THAW_VMM_STATE_H

#include <stdint.h>

#include <linux/kvm.h>

#define VMM_SEC_CONFIG 0x001u
#define VMM_SEC_VM     0x002u
#define VMM_SEC_VCPU   0x100u
#define VMM_SEC_DEVICE 0x200u

#define VMM_CONFIG_STATE_VERSION 1
#define VMM_CFG_AGENT_CONSOLE    1u
#define VMM_CFG_DISK             2u
#define VMM_CFG_DISK_RO          4u

typedef struct vmm_config_state {
    uint32_t version;
    uint32_t vcpus;
    uint64_t mem_bytes;
    uint32_t flags; /* VMM_CFG_* */
    uint32_t n_devices;
    uint64_t console_log_bytes;
    char disk_path[512]; /* NUL-terminated */
} vmm_config_state_t;
_Static_assert(sizeof(vmm_config_state_t) == 544, "vmm_config_state_t layout");

#define VMM_VM_STATE_VERSION 1

typedef struct vmm_vm_state {
    uint32_t version;
    uint32_t reserved;
    struct kvm_irqchip pic_master;
    struct kvm_irqchip pic_slave;
    struct kvm_irqchip ioapic;
    struct kvm_pit_state2 pit;
    struct kvm_clock_data clock;
} vmm_vm_state_t;
_Static_assert(sizeof(vmm_vm_state_t) == 8 + 3 * 520 + 112 + 48, "vmm_vm_state_t layout");

#define VMM_VCPU_STATE_VERSION 1
#define VMM_MAX_SAVED_MSRS     64
#define VMM_MAX_SAVED_CPUID    128
#define VMM_XSAVE_MAX          16384

typedef struct vmm_vcpu_state {
    uint32_t version;
    uint32_t id;
    uint32_t tsc_khz;
    uint32_t n_msrs;
    uint32_t n_cpuid;
    uint32_t xsave_len;
    struct kvm_mp_state mp;
    uint32_t reserved;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_xcrs xcrs;
    struct kvm_debugregs dregs;
    struct kvm_lapic_state lapic;
    struct kvm_vcpu_events events;
    struct kvm_msr_entry msrs[VMM_MAX_SAVED_MSRS];
    struct kvm_cpuid_entry2 cpuid[VMM_MAX_SAVED_CPUID];
    uint8_t xsave[VMM_XSAVE_MAX];
} vmm_vcpu_state_t;
_Static_assert(sizeof(vmm_vcpu_state_t) == 32 + 144 + 312 + 392 + 128 + 1024 + 64 +
                                               VMM_MAX_SAVED_MSRS * 16 + VMM_MAX_SAVED_CPUID * 40 +
                                               VMM_XSAVE_MAX,
               "vmm_vcpu_state_t layout");

#endif
