// SPDX-License-Identifier: Apache-2.0
/*
 * Kernel loaders: a Linux bzImage (x86 boot protocol >= 2.12 with a 64-bit
 * entry: the protected-mode part goes to 1 MiB, entry at +0x200) or an ELF
 * vmlinux (PT_LOAD segments at their physical addresses, entry at e_entry,
 * which is how the freestanding test guest is loaded too).  Everything in
 * the file is checked before it is used: magic, versions, offsets and sizes,
 * and that each byte lands inside guest RAM above the boot structures.
 */
#include <elf.h>
#include <errno.h>
#include <string.h>

#include <asm/bootparam.h>

#include "vmm/internal.h"

#define HDR_OFF 0x1f1

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static int load_bzimage(vmm_t *vm, const uint8_t *f, size_t len, vmm_kernel_image_t *img,
                        thaw_err_t *err)
{
    if (len < 0x1000)
        return thaw_err_set(err, EINVAL, "bzImage: truncated (%zu bytes)", len);
    if (rd32(f + 0x202) != 0x53726448)
        return thaw_err_set(err, EINVAL, "bzImage: setup header: bad magic (no \"HdrS\")");
    uint16_t version = rd16(f + 0x206);
    if (version < 0x020c)
        return thaw_err_set(err, ENOTSUP,
                            "bzImage: boot protocol %u.%02u is too old (need 2.12 for a 64-bit "
                            "entry)",
                            version >> 8, version & 0xff);
    uint16_t xloadflags = rd16(f + 0x236);
    if (!(xloadflags & XLF_KERNEL_64))
        return thaw_err_set(err, ENOTSUP, "bzImage: not a 64-bit kernel (no XLF_KERNEL_64)");
    unsigned setup_sects = f[0x1f1] ? f[0x1f1] : 4;
    size_t setup_size = ((size_t)setup_sects + 1) * 512;
    if (setup_size >= len)
        return thaw_err_set(err, EINVAL, "bzImage: truncated: setup of %zu bytes, file of %zu",
                            setup_size, len);
    size_t pm_len = len - setup_size;
    uint32_t init_size = rd32(f + 0x260);
    uint64_t need = pm_len > init_size ? pm_len : init_size;
    uint8_t *dst = vmm__gpa(vm, VMM_KERNEL_ADDR, need);
    if (!dst)
        return thaw_err_set(err, EFBIG,
                            "bzImage: kernel needs %llu bytes at 1 MiB, more than guest memory",
                            (unsigned long long)need);
    memcpy(dst, f + setup_size, pm_len);
    img->is_bzimage = true;
    img->entry = VMM_KERNEL_ADDR + 0x200;
    img->load_end = VMM_KERNEL_ADDR + need;
    img->boot_version = version;
    img->initrd_addr_max = rd32(f + 0x22c);
    img->cmdline_size = rd32(f + 0x238);
    size_t hdr_end = (size_t)0x202 + f[0x201]; /* the jump at 0x200 skips the header */
    if (hdr_end > 0x290)
        hdr_end = 0x290;
    memset(img->setup_hdr, 0, sizeof(img->setup_hdr));
    memcpy(img->setup_hdr, f + HDR_OFF, hdr_end - HDR_OFF);
    return 0;
}

static int load_elf(vmm_t *vm, const uint8_t *f, size_t len, vmm_kernel_image_t *img,
                    thaw_err_t *err)
{
    Elf64_Ehdr eh;
    if (len < sizeof(eh))
        return thaw_err_set(err, EINVAL, "ELF: truncated header");
    memcpy(&eh, f, sizeof(eh));
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
        return thaw_err_set(err, EINVAL, "ELF: not 64-bit little-endian");
    if (eh.e_machine != EM_X86_64 || (eh.e_type != ET_EXEC && eh.e_type != ET_DYN))
        return thaw_err_set(err, EINVAL, "ELF: not an x86_64 executable");
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 64 ||
        eh.e_phoff > len || (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > len - eh.e_phoff)
        return thaw_err_set(err, EINVAL, "ELF: program headers out of the file");
    uint64_t end = 0;
    bool entry_ok = false;
    unsigned loads = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, f + eh.e_phoff + i * sizeof(ph), sizeof(ph));
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
            continue;
        if (ph.p_filesz > ph.p_memsz || ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
            return thaw_err_set(err, EINVAL, "ELF: segment %u: truncated or inconsistent sizes", i);
        uint8_t *dst = vmm__gpa(vm, ph.p_paddr, ph.p_memsz);
        if (ph.p_paddr < VMM_KERNEL_ADDR || !dst)
            return thaw_err_set(err, EFBIG,
                                "ELF: segment %u at 0x%llx+0x%llx is outside guest RAM above 1 "
                                "MiB",
                                i, (unsigned long long)ph.p_paddr, (unsigned long long)ph.p_memsz);
        memcpy(dst, f + ph.p_offset, ph.p_filesz);
        memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
        if (ph.p_paddr + ph.p_memsz > end)
            end = ph.p_paddr + ph.p_memsz;
        if (eh.e_entry >= ph.p_paddr && eh.e_entry - ph.p_paddr < ph.p_memsz)
            entry_ok = true;
        loads++;
    }
    if (!loads)
        return thaw_err_set(err, EINVAL, "ELF: no loadable segment");
    if (!entry_ok)
        return thaw_err_set(err, EINVAL, "ELF: entry 0x%llx is in no loaded segment",
                            (unsigned long long)eh.e_entry);
    img->is_bzimage = false;
    img->entry = eh.e_entry;
    img->load_end = end;
    img->boot_version = 0x020c;
    img->initrd_addr_max = 0x7fffffff;
    img->cmdline_size = VMM_CMDLINE_MAX - 1;
    memset(img->setup_hdr, 0, sizeof(img->setup_hdr));
    return 0;
}

int vmm__load_kernel(vmm_t *vm, const uint8_t *file, size_t len, vmm_kernel_image_t *img,
                     thaw_err_t *err)
{
    memset(img, 0, sizeof(*img));
    if (len >= 4 && memcmp(file, ELFMAG, SELFMAG) == 0)
        return load_elf(vm, file, len, img, err);
    if (len >= 0x210 && rd16(file + 0x1fe) == 0xaa55)
        return load_bzimage(vm, file, len, img, err);
    return thaw_err_set(err, EINVAL, "neither an ELF vmlinux nor a bzImage (bad magic)");
}
