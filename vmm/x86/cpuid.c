// SPDX-License-Identifier: Apache-2.0
/*
 * Per-vCPU CPUID: start from KVM_GET_SUPPORTED_CPUID and give each vCPU its
 * APIC id and a topology of n_vcpus cores in one package with one thread
 * each (leaves 0x1, 0x4, 0xb, 0x1f, 0x80000008, 0x8000001e), the
 * hypervisor bit and KVM's signature leaf, no PMU (leaf 0xa: counters a
 * snapshot could not carry).  On a PVM host CX16 is cleared because the
 * emulator stops at the first lock cmpxchg16b (Linux's SLUB uses it when it
 * is advertised).  Pure: unit-tested without KVM.
 */
#include <string.h>

#include "vmm/internal.h"

static unsigned order_of(unsigned n)
{
    unsigned s = 0;
    while ((1u << s) < n)
        s++;
    return s;
}

void vmm_arch_cpuid_adjust(struct kvm_cpuid2 *c, unsigned id, unsigned n, bool pvm)
{
    unsigned shift = order_of(n);
    for (unsigned i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        switch (e->function) {
        case 0x1:
            e->ebx = (e->ebx & 0x0000ffffu) | (id << 24) | ((n & 0xffu) << 16);
            e->ecx |= 1u << 31; /* hypervisor present */
            if (pvm)
                e->ecx &= ~(1u << 13); /* CX16 */
            if (n > 1)
                e->edx |= 1u << 28; /* HTT: EBX[23:16] is valid */
            break;
        case 0x4:
            /* cores per package - 1; one thread shares each cache level */
            e->eax = (e->eax & 0x03ffffffu & ~(0xfffu << 14)) | ((n - 1) << 26);
            break;
        case 0xa:
            e->eax = e->ebx = e->ecx = e->edx = 0;
            break;
        case 0xb:
        case 0x1f:
            e->edx = id;
            if (e->index == 0) { /* SMT level: one thread per core */
                e->eax = 0;
                e->ebx = 1;
                e->ecx = (1u << 8) | 0;
            } else if (e->index == 1) { /* core level */
                e->eax = shift;
                e->ebx = n;
                e->ecx = (2u << 8) | 1;
            } else {
                e->eax = e->ebx = 0;
                e->ecx = e->index;
            }
            break;
        case 0x40000000:
            e->eax = 0x40000001;
            memcpy(&e->ebx, "KVMK", 4);
            memcpy(&e->ecx, "VMKV", 4);
            memcpy(&e->edx, "M\0\0\0", 4);
            break;
        case 0x80000008:
            e->ecx = (e->ecx & ~0xf0ffu) | ((n - 1) & 0xffu) | (shift << 12);
            break;
        case 0x8000001e:
            e->eax = id;
            e->ebx = (e->ebx & ~0xff00ffu) | (id & 0xffu); /* one thread per core */
            e->ecx = 0;
            break;
        default:
            break;
        }
    }
}
