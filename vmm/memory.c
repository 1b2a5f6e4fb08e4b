// SPDX-License-Identifier: Apache-2.0
/*
 * Guest RAM: the region layout (RAM below 3 GiB, then a hole for MMIO and
 * the APICs, the rest above 4 GiB), backing (anonymous, or host memory the
 * caller maps itself, which is how snapshot/'s engines attach memory), the
 * KVM memory slots, and the one guest-physical to host translation that
 * every guest-supplied address goes through.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "vmm/internal.h"

#define MIB (1024ull * 1024ull)

int vmm_mem_layout(uint64_t mem_bytes, vmm_mem_region_t *out, unsigned max)
{
    if (mem_bytes < 16 * MIB || mem_bytes % (2 * MIB) != 0 || mem_bytes > (1ull << 40))
        return -EINVAL;
    vmm_mem_region_t r[2];
    unsigned n = 0;
    uint64_t low = mem_bytes < VMM_LOW_MEM_TOP ? mem_bytes : VMM_LOW_MEM_TOP;
    r[n++] = (vmm_mem_region_t){.gpa = 0, .size = low, .host = NULL};
    if (mem_bytes > low)
        r[n++] = (vmm_mem_region_t){.gpa = VMM_HIGH_MEM_START, .size = mem_bytes - low};
    for (unsigned i = 0; i < n && i < max; i++)
        out[i] = r[i];
    return (int)n;
}

int vmm__mem_setup(vmm_t *vm, const vmm_config_t *cfg, thaw_err_t *err)
{
    vmm_mem_region_t layout[VMM_MAX_MEM_REGIONS];
    int n = vmm_mem_layout(cfg->mem_bytes, layout, VMM_MAX_MEM_REGIONS);
    if (n < 0)
        return thaw_err_set(err, EINVAL,
                            "memory size %llu: must be 16 MiB..1 TiB and a multiple of 2 MiB",
                            (unsigned long long)cfg->mem_bytes);
    if (cfg->mem && cfg->mem_regions != (unsigned)n)
        return thaw_err_set(err, EINVAL, "memory backing: %u regions given, layout has %d",
                            cfg->mem_regions, n);
    vm->mem_bytes = cfg->mem_bytes;
    for (int i = 0; i < n; i++) {
        vmm_mem_t *m = &vm->mem[i];
        m->gpa = layout[i].gpa;
        m->size = layout[i].size;
        if (cfg->mem) {
            const vmm_mem_region_t *c = &cfg->mem[i];
            if (c->gpa != m->gpa || c->size != m->size || !c->host)
                return thaw_err_set(err, EINVAL,
                                    "memory backing region %d: expected gpa 0x%llx size 0x%llx", i,
                                    (unsigned long long)m->gpa, (unsigned long long)m->size);
            m->host = c->host;
            m->owned = false;
        } else {
            void *p = mmap(NULL, m->size, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED)
                return thaw_err_sys(err, errno, "guest memory region %d (%llu MiB)", i,
                                    (unsigned long long)(m->size / MIB));
            madvise(p, m->size, MADV_DONTDUMP);
            m->host = p;
            m->owned = true;
        }
        vm->n_mem = (unsigned)i + 1;
        struct kvm_userspace_memory_region slot = {
            .slot = (uint32_t)i,
            .guest_phys_addr = m->gpa,
            .memory_size = m->size,
            .userspace_addr = (uint64_t)(uintptr_t)m->host,
        };
        if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
            return thaw_err_sys(err, errno, "KVM_SET_USER_MEMORY_REGION slot %d", i);
    }
    return 0;
}

void vmm__mem_free(vmm_t *vm)
{
    for (unsigned i = 0; i < vm->n_mem; i++)
        if (vm->mem[i].owned && vm->mem[i].host)
            munmap(vm->mem[i].host, vm->mem[i].size);
    vm->n_mem = 0;
}

void *vmm__gpa(vmm_t *vm, uint64_t gpa, uint64_t len)
{
    for (unsigned i = 0; i < vm->n_mem; i++) {
        const vmm_mem_t *m = &vm->mem[i];
        /* Written so that no sum can overflow: a guest controls gpa and len. */
        if (gpa >= m->gpa && gpa - m->gpa <= m->size && len <= m->size - (gpa - m->gpa))
            return m->host + (gpa - m->gpa);
    }
    return NULL;
}
