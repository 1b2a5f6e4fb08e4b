#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Writes the seed corpus for fuzz_vm_state: edits (see fuzz_vm_state.c) that
# aim at each field the restore path checks, so the fuzzer starts next to
# every check.  Section indexes assume the base of fuzz_vm_state.c (config,
# VM, vCPU 0, vCPU 1, uart, virtio-console, virtio-blk) and the struct
# layouts of vmm/state.h and vmm/devices/state.h (their sizes are asserted
# there).  Run from this directory; the output is committed.
import os, struct

CFG, VM, VCPU0, VCPU1, UART, VCON, VBLK = range(7)
PATCH, XOR, RESIZE, DROP, ADD, SWAP = range(6)

def edit(op, idx, arg=0, data=b""):
    return struct.pack("<BBHI", op, idx, len(data), arg) + data
def u32(idx, off, v): return edit(PATCH, idx, off, struct.pack("<I", v))
def u64(idx, off, v): return edit(PATCH, idx, off, struct.pack("<Q", v))
def u16(idx, off, v): return edit(PATCH, idx, off, struct.pack("<H", v))

# vmm_config_state_t
C_VCPUS, C_MEM, C_FLAGS, C_NDEV, C_LOG, C_DISK = 4, 8, 16, 20, 24, 32
# vmm_vm_state_t: three kvm_irqchip (chip_id first), the PIT, kvmclock
V_PIC0, V_PIC1, V_IOAPIC, V_PIT, V_CLOCK = 8, 528, 1048, 1568, 1680
# vmm_vcpu_state_t
P_ID, P_TSC, P_NMSR, P_NCPUID, P_XLEN, P_MP, P_REGS = 4, 8, 12, 16, 20, 24, 32
P_RIP, P_SREGS = P_REGS + 128, 176
P_MSRS = 32 + 144 + 312 + 392 + 128 + 1024 + 64
P_CPUID = P_MSRS + 64 * 16
P_XSAVE = P_CPUID + 128 * 40
# vmm_virtio_state_t, then (console) vmm_vcon_state_t
T_DEVID, T_STATUS, T_ISR, T_QSEL, T_DFEAT, T_DRVFEAT = 4, 8, 12, 24, 32, 40
def Q(q): return 48 + 40 * q  # num, ready, desc, driver, device, last_avail, used_idx
Q_NUM, Q_READY, Q_DESC, Q_DRIVER, Q_DEVICE, Q_LAST, Q_USED = 0, 4, 8, 16, 24, 32, 34
VCON_TXSKIP = 128 + 4
MEM = 16 << 20

seeds = {
    "cfg_vcpus_0": u32(CFG, C_VCPUS, 0),
    "cfg_vcpus_1": u32(CFG, C_VCPUS, 1),
    "cfg_vcpus_3": u32(CFG, C_VCPUS, 3),
    "cfg_vcpus_max": u32(CFG, C_VCPUS, 0xffffffff),
    "cfg_mem_other": u64(CFG, C_MEM, 32 << 20),
    "cfg_mem_odd": u64(CFG, C_MEM, MEM + 4096),
    "cfg_log_huge": u64(CFG, C_LOG, 1 << 62),
    "cfg_log_tiny": u64(CFG, C_LOG, 1),
    "cfg_flags_none": u32(CFG, C_FLAGS, 0),
    "cfg_flags_all": u32(CFG, C_FLAGS, 0xffffffff),
    "cfg_ndev": u32(CFG, C_NDEV, 200),
    "cfg_disk_path_unterminated": edit(PATCH, CFG, C_DISK, b"A" * 512),
    "cfg_short": edit(RESIZE, CFG, 100),
    "cfg_version": u32(CFG, 0, 2),
    "vm_version": u32(VM, 0, 9),
    "vm_chip_ids": u32(VM, V_PIC0, 2) + u32(VM, V_IOAPIC, 0),
    "vm_pit_garbage": edit(PATCH, VM, V_PIT, bytes(range(7, 119))),
    "vm_ioapic_garbage": edit(XOR, VM, V_IOAPIC + 8, bytes([0xa5]) * 256),
    "vm_clock_far": u64(VM, V_CLOCK, 0xffffffffffff0000),
    "vm_short": edit(RESIZE, VM, 1000),
    "vcpu_id": u32(VCPU0, P_ID, 1),
    "vcpu_tsc_khz": u32(VCPU0, P_TSC, 1),
    "vcpu_msrs_over": u32(VCPU0, P_NMSR, 65),
    "vcpu_msrs_zero": u32(VCPU0, P_NMSR, 0),
    "vcpu_msr_refused": u32(VCPU0, P_MSRS, 0xc0000080) + u64(VCPU0, P_MSRS + 8, 0xffff),
    "vcpu_cpuid_over": u32(VCPU0, P_NCPUID, 129),
    "vcpu_cpuid_none": u32(VCPU0, P_NCPUID, 0),
    "vcpu_cpuid_flip": edit(XOR, VCPU1, P_CPUID + 8, bytes([0xff]) * 160),
    "vcpu_xsave_len_0": u32(VCPU0, P_XLEN, 0),
    "vcpu_xsave_len_big": u32(VCPU0, P_XLEN, 16385),
    "vcpu_xsave_header": edit(PATCH, VCPU0, P_XSAVE + 512, bytes([0xff]) * 64),
    "vcpu_mp_state": u32(VCPU0, P_MP, 99),
    "vcpu_rip_wild": u64(VCPU0, P_RIP, 0xdeadbeef000),
    "vcpu_sregs_garbage": edit(XOR, VCPU1, P_SREGS, bytes(range(1, 200))),
    "vcpu_swap": edit(SWAP, VCPU0, VCPU1),
    "vcpu_short": edit(RESIZE, VCPU1, 24000),
    "vcpu_extra": edit(ADD, VCPU0, 0x102, b"\x01\x00\x00\x00"),
    "uart_version": u32(UART, 0, 7),
    "uart_regs": edit(PATCH, UART, 4, bytes([0xff] * 8)),
    "uart_long": edit(RESIZE, UART, 17),
    "vcon_device_id": u32(VCON, T_DEVID, 2),
    "vcon_features": u64(VCON, T_DRVFEAT, 1 << 40),
    "vcon_queue_sel": u32(VCON, T_QSEL, 0xffffffff),
    "vcon_num_3": u32(VCON, Q(0) + Q_NUM, 3),
    "vcon_num_big": u32(VCON, Q(0) + Q_NUM, 65536),
    "vcon_desc_outside": u64(VCON, Q(1) + Q_DESC, 0xfffffffff000),
    "vcon_rings_at_end": u32(VCON, Q(1) + Q_NUM, 256) + u64(VCON, Q(1) + Q_DESC, MEM - 4096)
                         + u64(VCON, Q(1) + Q_DRIVER, MEM - 520) + u64(VCON, Q(1) + Q_DEVICE, MEM - 2056),
    "vcon_rings_wrap": u64(VCON, Q(0) + Q_DESC, 0xfffffffffffff000),
    "vcon_inflight": u16(VCON, Q(1) + Q_LAST, 5),
    "vcon_indices": u16(VCON, Q(1) + Q_LAST, 0xfff0) + u16(VCON, Q(1) + Q_USED, 0xfff0),
    "vcon_needs_reset": u32(VCON, T_STATUS, 0x4f) + u16(VCON, Q(0) + Q_LAST, 9),
    "vcon_tx_skip_huge": u32(VCON, VCON_TXSKIP, 0xffffffff),
    "vcon_tx_skip_small": u32(VCON, VCON_TXSKIP, 3),
    "vcon_no_extra": edit(RESIZE, VCON, 128),
    "vcon_short": edit(RESIZE, VCON, 40),
    "vblk_queue1": u32(VBLK, Q(1) + Q_READY, 1) + u32(VBLK, Q(1) + Q_NUM, 8),
    "vblk_num_3": u32(VBLK, Q(0) + Q_NUM, 3) + u32(VBLK, Q(0) + Q_READY, 1),
    "vblk_extra": edit(RESIZE, VBLK, 200),
    "vblk_as_console": edit(SWAP, VBLK, VCON),
    "dev_beyond": edit(ADD, UART, 0x2ff, bytes(16)),
    "dev_uart_as_console": edit(SWAP, UART, VCON),
}
for i, name in enumerate(["cfg", "vm", "vcpu0", "vcpu1", "uart", "vcon", "vblk"]):
    seeds["drop_" + name] = edit(DROP, i)
    seeds["empty_" + name] = edit(RESIZE, i, 0)

os.makedirs("corpus", exist_ok=True)
open(os.path.join("corpus", "base-unchanged"), "wb").close()
for name, data in seeds.items():
    with open(os.path.join("corpus", name), "wb") as f:
        f.write(data)
