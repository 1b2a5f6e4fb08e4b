// SPDX-License-Identifier: Apache-2.0
/*
 * The Linux x86 64-bit boot state: boot_params (the "zero page": setup
 * header, e820 map, command line, initrd), identity page tables for the
 * first 4 GiB, a flat GDT with __BOOT_CS (0x10) and __BOOT_DS (0x18), the
 * MP table for SMP guests, and the BSP's registers: long mode, paging on,
 * interrupts off, rip at the kernel's 64-bit entry, rsi at boot_params
 * (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol").  Application
 * processors stay in wait-for-SIPI, as on hardware.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include <asm/bootparam.h>

#include "vmm/internal.h"

#define BOOT_CS   0x10
#define BOOT_DS   0x18
#define BOOT_TSS  0x20
#define BOOT_RSP  0x8ff0
#define E820_RAM  1
#define E820_RSVD 2

#define CR0_PE   1ull
#define CR0_MP   (1ull << 1)
#define CR0_ET   (1ull << 4)
#define CR0_NE   (1ull << 5)
#define CR0_PG   (1ull << 31)
#define CR4_PAE  (1ull << 5)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)

static void e820_add(struct boot_params *bp, uint64_t addr, uint64_t size, uint32_t type)
{
    if (bp->e820_entries >= E820_MAX_ENTRIES_ZEROPAGE)
        return;
    struct boot_e820_entry *e = &bp->e820_table[bp->e820_entries++];
    e->addr = addr;
    e->size = size;
    e->type = type;
}

static void write_page_tables(vmm_t *vm)
{
    uint64_t *pml4 = vmm__gpa(vm, VMM_PML4_ADDR, 4096);
    uint64_t *pdpt = vmm__gpa(vm, VMM_PDPT_ADDR, 4096);
    uint64_t *pd = vmm__gpa(vm, VMM_PD_ADDR, 4 * 4096);
    memset(pml4, 0, 4096);
    memset(pdpt, 0, 4096);
    pml4[0] = VMM_PDPT_ADDR | 0x3; /* present, writable */
    for (uint64_t i = 0; i < 4; i++)
        pdpt[i] = (VMM_PD_ADDR + i * 4096) | 0x3;
    for (uint64_t i = 0; i < 4 * 512; i++)
        pd[i] = (i << 21) | 0x83; /* 2 MiB page */
}

static void write_gdt(vmm_t *vm)
{
    uint64_t *gdt = vmm__gpa(vm, VMM_GDT_ADDR, 5 * 8);
    gdt[0] = 0;
    gdt[1] = 0;
    gdt[2] = 0x00af9b000000ffffull; /* 0x10: 64-bit code, flat */
    gdt[3] = 0x00cf93000000ffffull; /* 0x18: data, flat */
    gdt[4] = 0x00008b0000000067ull; /* 0x20: busy TSS at 0 (never used) */
    memset(vmm__gpa(vm, VMM_IDT_ADDR, 8), 0, 8);
}

int vmm_arch_boot_setup(vmm_t *vm, const vmm_config_t *cfg, const vmm_kernel_image_t *img,
                        uint64_t initrd_gpa, uint64_t initrd_size, thaw_err_t *err)
{
    struct boot_params *bp = vmm__gpa(vm, VMM_BOOT_PARAMS, sizeof(*bp));
    memset(bp, 0, sizeof(*bp));
    memcpy(&bp->hdr, img->setup_hdr, sizeof(bp->hdr));
    if (!img->is_bzimage) {
        bp->hdr.boot_flag = 0xaa55;
        bp->hdr.header = 0x53726448;
        bp->hdr.version = img->boot_version;
        bp->hdr.kernel_alignment = 0x1000000;
    }
    bp->hdr.type_of_loader = 0xff;
    bp->hdr.loadflags |= LOADED_HIGH;

    /* The caller's command line plus one virtio_mmio.device= per virtio
     * device, which is how Linux finds devices on a bus with no discovery. */
    char cmdline[VMM_CMDLINE_MAX];
    int w = snprintf(cmdline, sizeof(cmdline), "%s", cfg->cmdline ? cfg->cmdline : "");
    for (unsigned i = 0; i < vm->n_virtio && w >= 0 && (size_t)w < sizeof(cmdline); i++)
        w += snprintf(cmdline + w, sizeof(cmdline) - (size_t)w, "%svirtio_mmio.device=4K@0x%llx:%u",
                      w ? " " : "", (unsigned long long)(VMM_VIRTIO_MMIO + i * VMM_VIRTIO_MMIO_LEN),
                      VMM_IRQ_VIRTIO0 + i);
    if (w < 0 || (size_t)w >= sizeof(cmdline))
        return thaw_err_set(err, E2BIG, "command line: longer than %llu bytes",
                            (unsigned long long)VMM_CMDLINE_MAX - 1);
    size_t clen = (size_t)w;
    uint64_t limit = img->cmdline_size ? img->cmdline_size : 255;
    if (limit > VMM_CMDLINE_MAX - 1)
        limit = VMM_CMDLINE_MAX - 1;
    if (clen > limit)
        return thaw_err_set(err, E2BIG, "command line: %zu bytes, the kernel takes at most %llu",
                            clen, (unsigned long long)limit);
    memcpy(vmm__gpa(vm, VMM_CMDLINE_ADDR, clen + 1), cmdline, clen + 1);
    bp->hdr.cmd_line_ptr = (uint32_t)VMM_CMDLINE_ADDR;
    bp->hdr.cmdline_size = (uint32_t)clen + 1;

    if (initrd_size) {
        bp->hdr.ramdisk_image = (uint32_t)initrd_gpa;
        bp->hdr.ramdisk_size = (uint32_t)initrd_size;
        bp->ext_ramdisk_image = (uint32_t)(initrd_gpa >> 32);
        bp->ext_ramdisk_size = (uint32_t)(initrd_size >> 32);
    }

    /* e820: base memory up to the MP table, then RAM from 1 MiB. */
    e820_add(bp, 0, VMM_MPTABLE_ADDR, E820_RAM);
    e820_add(bp, VMM_MPTABLE_ADDR, VMM_EBDA_END - VMM_MPTABLE_ADDR, E820_RSVD);
    e820_add(bp, VMM_KERNEL_ADDR, vm->mem[0].size - VMM_KERNEL_ADDR, E820_RAM);
    for (unsigned i = 1; i < vm->n_mem; i++)
        e820_add(bp, vm->mem[i].gpa, vm->mem[i].size, E820_RAM);

    /* Always, also for one vCPU: without it Linux skips the IOAPIC and runs
     * in virtual-wire mode (as Firecracker, which always writes one). */
    {
        uint8_t *mp = vmm__gpa(vm, VMM_MPTABLE_ADDR, VMM_EBDA_END - VMM_MPTABLE_ADDR);
        int n =
            vmm_arch_mptable_build(mp, VMM_EBDA_END - VMM_MPTABLE_ADDR, (uint32_t)VMM_MPTABLE_ADDR,
                                   vm->n_vcpus, (uint8_t)vm->n_vcpus, 16);
        if (n < 0)
            return thaw_err_set(err, ENOSPC, "MP table for %u vCPUs does not fit", vm->n_vcpus);
    }

    write_page_tables(vm);
    write_gdt(vm);
    vm->entry = img->entry;
    vm->boot_rsi = VMM_BOOT_PARAMS;
    return 0;
}

static struct kvm_segment seg(uint16_t sel, uint8_t type, bool code)
{
    return (struct kvm_segment){
        .base = 0,
        .limit = 0xffffffff,
        .selector = sel,
        .type = type,
        .present = 1,
        .dpl = 0,
        .db = code ? 0 : 1,
        .s = 1,
        .l = code ? 1 : 0,
        .g = 1,
    };
}

int vmm_arch_vcpu_boot_regs(vmm_t *vm, vmm_vcpu_t *v, thaw_err_t *err)
{
    if (v->id != 0)
        return 0; /* APs wait for INIT/SIPI from the BSP */
    struct kvm_sregs s;
    if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
        return thaw_err_sys(err, errno, "vcpu %u: KVM_GET_SREGS", v->id);
    s.cs = seg(BOOT_CS, 0xb, true);
    s.ds = s.es = s.fs = s.gs = s.ss = seg(BOOT_DS, 0x3, false);
    s.tr = (struct kvm_segment){
        .base = 0, .limit = 0x67, .selector = BOOT_TSS, .type = 0xb, .present = 1};
    s.ldt = (struct kvm_segment){.selector = 0, .type = 0x2, .present = 1, .limit = 0xffff};
    s.gdt.base = VMM_GDT_ADDR;
    s.gdt.limit = 5 * 8 - 1;
    s.idt.base = VMM_IDT_ADDR;
    s.idt.limit = 0;
    s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_PG;
    s.cr3 = VMM_PML4_ADDR;
    s.cr4 = CR4_PAE;
    s.efer = EFER_LME | EFER_LMA;
    if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0)
        return thaw_err_sys(err, errno, "vcpu %u: KVM_SET_SREGS", v->id);
    struct kvm_regs r;
    memset(&r, 0, sizeof(r));
    r.rflags = 0x2;
    r.rip = vm->entry;
    r.rsi = vm->boot_rsi;
    r.rsp = BOOT_RSP;
    r.rbp = BOOT_RSP;
    if (ioctl(v->fd, KVM_SET_REGS, &r) < 0)
        return thaw_err_sys(err, errno, "vcpu %u: KVM_SET_REGS", v->id);
    return 0;
}
