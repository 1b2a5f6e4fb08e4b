/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vmm/ internals shared between its files (never included outside vmm/):
 * the VM and vCPU structs, guest memory translation, the device ops table
 * and the port-I/O / MMIO bus, the per-VM event thread, the console log ring
 * and the vmm_arch_* hooks that vmm/x86/ implements.
 */
#ifndef THAW_VMM_INTERNAL_H
#define THAW_VMM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <linux/kvm.h>
#include <stddef.h>

#include "common/err.h"
#include "vmm/vmm.h"

/* ---- guest memory layout (see docs/vmm.md) ---- */
#define VMM_GDT_ADDR        0x500ull
#define VMM_IDT_ADDR        0x520ull
#define VMM_BOOT_PARAMS     0x7000ull
#define VMM_PML4_ADDR       0x9000ull
#define VMM_PDPT_ADDR       0xa000ull
#define VMM_PD_ADDR         0xb000ull /* 4 pages: identity map of 4 GiB */
#define VMM_CMDLINE_ADDR    0x20000ull
#define VMM_CMDLINE_MAX     0x10000ull
#define VMM_MPTABLE_ADDR    0x9fc00ull /* last KiB of base memory: Linux scans it */
#define VMM_EBDA_END        0xa0000ull
#define VMM_KERNEL_ADDR     0x100000ull   /* bzImage protected-mode part */
#define VMM_LOW_MEM_TOP     0xc0000000ull /* RAM below 3 GiB, then the MMIO hole */
#define VMM_HIGH_MEM_START  0x100000000ull
#define VMM_VIRTIO_MMIO     0xd0000000ull /* first virtio-mmio window */
#define VMM_VIRTIO_MMIO_LEN 0x1000ull
#define VMM_IOAPIC_ADDR     0xfec00000ull
#define VMM_LAPIC_ADDR      0xfee00000ull
#define VMM_IDENTITY_MAP    0xfffbc000ull /* KVM_SET_IDENTITY_MAP_ADDR (VMX only) */
#define VMM_TSS_ADDR        0xfffbd000ull /* KVM_SET_TSS_ADDR: 3 pages */

/* ---- legacy ports and IRQs ---- */
#define VMM_PORT_COM1     0x3f8
#define VMM_IRQ_COM1      4
#define VMM_PORT_I8042    0x60
#define VMM_PORT_POWEROFF 0x501 /* QEMU's isa-debug-exit: write = power off */
#define VMM_IRQ_VIRTIO0   5     /* virtio-mmio device i uses IRQ 5 + i */
#define VMM_MAX_VIRTIO    4

typedef struct vmm_vcpu vmm_vcpu_t;
typedef struct vmm_device vmm_device_t;

/* ---- devices: an ops table plus a bus registry (kvmtool's device__register) ---- */
typedef struct vmm_device_ops {
    const char *name;
    /* Guest access at offset within the device's window; len is 1, 2, 4 or 8. */
    void (*read)(vmm_device_t *dev, uint64_t off, void *data, unsigned len);
    void (*write)(vmm_device_t *dev, uint64_t off, const void *data, unsigned len);
    void (*destroy)(vmm_device_t *dev);
    /* Finish host-side work in flight (event thread, before a pause parks it). */
    void (*quiesce)(vmm_device_t *dev);
    /* Snapshot: write the device's state into buf (cap bytes) and return its
     * length, or -errno; restore validates and applies it.  NULL for devices
     * without state.  Both run with the VM paused. */
    int (*save)(vmm_device_t *dev, void *buf, size_t cap);
    int (*restore)(vmm_device_t *dev, const void *buf, size_t len, thaw_err_t *err);
} vmm_device_ops_t;

struct vmm_device {
    const vmm_device_ops_t *ops;
    vmm_t *vm;
    pthread_mutex_t lock; /* vCPU threads and the event thread both reach a device */
    void *priv;
};

typedef enum { VMM_BUS_PIO = 0, VMM_BUS_MMIO = 1 } vmm_bus_kind_t;

typedef struct vmm_bus_range {
    uint64_t base;
    uint64_t len;
    vmm_device_t *dev;
} vmm_bus_range_t;

#define VMM_BUS_MAX 16

typedef struct vmm_bus {
    vmm_bus_range_t r[VMM_BUS_MAX];
    unsigned n;
} vmm_bus_t;

/* Register dev on a bus; -EEXIST on overlap, -ENOSPC when full. */
int vmm__bus_register(vmm_t *vm, vmm_bus_kind_t kind, uint64_t base, uint64_t len,
                      vmm_device_t *dev);
/* Dispatch an access; returns false when nothing is there (reads then see ~0). */
bool vmm__bus_access(vmm_t *vm, vmm_bus_kind_t kind, uint64_t addr, void *data, unsigned len,
                     bool is_write);

/* ---- event thread: host-side device work (epoll) ---- */
typedef void (*vmm_event_fn)(void *ctx, uint32_t events);

typedef struct vmm_event_src {
    int fd;
    vmm_event_fn fn;
    void *ctx;
} vmm_event_src_t;

#define VMM_EVENT_MAX 16

int vmm__event_add(vmm_t *vm, int fd, uint32_t events, vmm_event_fn fn, void *ctx);
int vmm__event_mod(vmm_t *vm, int fd, uint32_t events);

/* ---- console log ring ---- */
typedef struct vmm_log_ring {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *buf;
    size_t size;
    uint64_t total; /* bytes ever written; buf holds the last min(total, size) */
} vmm_log_ring_t;

int vmm__log_init(vmm_log_ring_t *r, size_t size);
void vmm__log_free(vmm_log_ring_t *r);
void vmm__log_put(vmm_log_ring_t *r, const void *data, size_t len);

/* ---- vCPUs ---- */
struct vmm_vcpu {
    vmm_t *vm;
    unsigned id;
    int fd;
    struct kvm_run *run;
    size_t run_size;
    pthread_t thread;
    bool thread_started;
    bool parked; /* under vm->lock */
};

/* ---- the VM ---- */
typedef struct vmm_mem {
    uint64_t gpa;
    uint64_t size;
    uint8_t *host;
    bool owned; /* mapped by us (munmap on destroy) */
} vmm_mem_t;

struct vmm {
    int kvm_fd;
    int vm_fd;
    bool pvm;
    bool restoring; /* built for vmm_restore: boot-time vCPU set-up is skipped */

    vmm_mem_t mem[VMM_MAX_MEM_REGIONS];
    unsigned n_mem;
    uint64_t mem_bytes;

    unsigned n_vcpus;
    vmm_vcpu_t vcpus[VMM_MAX_VCPUS];
    struct kvm_cpuid2 *supported_cpuid;

    vmm_bus_t bus[2];
    vmm_device_t *devices[VMM_BUS_MAX * 2];
    unsigned n_devices;
    unsigned n_virtio;

    vmm_log_ring_t console;
    int agent_host_fd; /* host end the caller gets */
    char disk_path[512];
    bool disk_readonly;

    /* boot */
    uint64_t entry;    /* 64-bit entry point (guest-physical) */
    uint64_t boot_rsi; /* boot_params address */

    /* event thread */
    int epoll_fd;
    int event_stop_fd;
    pthread_t event_thread;
    bool event_started;
    bool event_parked; /* under lock */
    vmm_event_src_t events[VMM_EVENT_MAX];
    unsigned n_events;

    /* run state, under lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool started;
    bool pause_req;
    atomic_bool stopping;
    vmm_exit_t exit;
    int exit_fd; /* eventfd, written once when the guest stops */

    /* restored from a snapshot: its memory, released after the VM */
    struct snap_mem *snap_mem;
    void *mem_watch; /* snapshot.c: routes the lazy engine's failure to this VM */
    bool mem_lazy;   /* snap_mem is the lazy engine's: pages can fail at any time */

    /* stats */
    atomic_uint_fast64_t exits_pio, exits_mmio, exits_other, device_errors, host_mem_faults;
    uint64_t create_ns, start_ns;
    atomic_uint_fast64_t first_exit_ns, first_run_ns;
};

/* Build a VM from cfg; boot: load the kernel and set boot registers (false
 * when a snapshot's state will be restored instead).  vmm_create = boot. */
int vmm__build(const vmm_config_t *cfg, bool boot, vmm_t **out, thaw_err_t *err);

/* Guest-physical [gpa, gpa+len) as a host pointer, or NULL unless the whole
 * range lies inside one RAM region (the one check every guest address passes). */
void *vmm__gpa(vmm_t *vm, uint64_t gpa, uint64_t len);

/*
 * Guest memory from host threads (guard.c).  A host thread (the event
 * thread, a vCPU thread's exit handler, vmm_snapshot's caller) never
 * dereferences a pointer from vmm__gpa itself: it copies through these,
 * which return -EFAULT instead of letting a SIGBUS from failed lazy memory
 * kill the process.  On -EFAULT call vmm__mem_failed and stop using the
 * device.  vmm__guard_init installs the SIGBUS handler (at every
 * vmm__build: again if someone replaced it, chaining to them).
 */
void vmm__guard_init(void);
int vmm__gmem_read(void *dst, const void *guest, size_t len);
int vmm__gmem_write(void *guest, const void *src, size_t len);
int vmm__gmem_load16(const uint16_t *guest, uint16_t *out); /* acquire */
int vmm__gmem_store16(uint16_t *guest, uint16_t v);         /* release */
/* Fault in [guest, guest+len) (one load per page). */
int vmm__gmem_touch(const void *guest, size_t len);
/* Stop the VM (VMM_EXIT_INTERNAL_ERROR) because guest memory failed under
 * an access (who: device or "vcpu"; what: where): the detail is the
 * snapshot's message when there is one.  Callers count host accesses in
 * host_mem_faults themselves. */
void vmm__mem_failed(vmm_t *vm, const char *who, const char *what);
/* True once the VM's restored memory has failed (snap_mem_error). */
bool vmm__mem_gone(vmm_t *vm);

/* Record why the guest stopped (first caller wins) and stop every vCPU. */
void vmm__stop(vmm_t *vm, vmm_exit_reason_t reason, uint32_t code, unsigned vcpu, const char *fmt,
               ...) __attribute__((format(printf, 5, 6)));

/* Count a guest-supplied value a device refused, and log it (rate-limited). */
void vmm__device_error(vmm_t *vm, const char *dev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* vCPU threads (vcpu.c) */
int vmm__vcpu_create(vmm_t *vm, unsigned id, thaw_err_t *err);
void vmm__vcpu_close(vmm_vcpu_t *vcpu);
int vmm__vcpu_start(vmm_vcpu_t *vcpu);
void vmm__vcpu_kick(vmm_vcpu_t *vcpu);

/* memory.c */
int vmm__mem_setup(vmm_t *vm, const vmm_config_t *cfg, thaw_err_t *err);
void vmm__mem_free(vmm_t *vm);

/* event.c */
int vmm__event_init(vmm_t *vm);
int vmm__event_start(vmm_t *vm);
void vmm__event_stop(vmm_t *vm);
/* Wake the event thread to look at pause_req / stopping. */
void vmm__event_wake(vmm_t *vm);

/* devices */
int vmm__device_new(vmm_t *vm, const vmm_device_ops_t *ops, void *priv, vmm_device_t **out);
int vmm__uart_create(vmm_t *vm);
int vmm__i8042_create(vmm_t *vm);
int vmm__poweroff_create(vmm_t *vm);
int vmm__virtio_console_create(vmm_t *vm, thaw_err_t *err);
int vmm__virtio_blk_create(vmm_t *vm, const char *path, bool readonly, thaw_err_t *err);

/* ---- loader (loader.c: pure parsing, unit-tested) ---- */
typedef struct vmm_kernel_image {
    bool is_bzimage;
    uint64_t entry;    /* 64-bit entry (guest-physical) */
    uint64_t load_end; /* highest guest-physical byte used + 1 */
    /* bzImage only */
    uint8_t setup_hdr[0x290 - 0x1f1]; /* setup header, copied into boot_params */
    uint16_t boot_version;
    uint32_t initrd_addr_max;
    uint32_t cmdline_size;
} vmm_kernel_image_t;

/*
 * Load a kernel image held in file (len bytes) into guest memory.  Validates
 * magic, versions, sizes and that every segment fits in RAM.
 */
int vmm__load_kernel(vmm_t *vm, const uint8_t *file, size_t len, vmm_kernel_image_t *img,
                     thaw_err_t *err);

/* ---- arch hooks (vmm/x86/) ---- */
int vmm_arch_vm_init(vmm_t *vm, thaw_err_t *err);
int vmm_arch_vcpu_init(vmm_t *vm, vmm_vcpu_t *vcpu, thaw_err_t *err);
int vmm_arch_boot_setup(vmm_t *vm, const vmm_config_t *cfg, const vmm_kernel_image_t *img,
                        uint64_t initrd_gpa, uint64_t initrd_size, thaw_err_t *err);
int vmm_arch_vcpu_boot_regs(vmm_t *vm, vmm_vcpu_t *vcpu, thaw_err_t *err);
/* Per-vCPU CPUID from KVM_GET_SUPPORTED_CPUID (pure: unit-tested). */
void vmm_arch_cpuid_adjust(struct kvm_cpuid2 *c, unsigned vcpu_id, unsigned n_vcpus, bool pvm);
/* MP table for n_vcpus at buf (max len bytes); returns bytes used or -ENOSPC. */
int vmm_arch_mptable_build(uint8_t *buf, size_t len, uint32_t table_gpa, unsigned n_vcpus,
                           uint8_t ioapic_id, unsigned n_irqs);

/* Snapshot state (vmm/x86/state.c); the structs are in vmm/state.h. */
struct vmm_vcpu_state;
struct vmm_vm_state;
int vmm_arch_vcpu_save(vmm_t *vm, vmm_vcpu_t *v, struct vmm_vcpu_state *s, thaw_err_t *err);
int vmm_arch_vcpu_restore(vmm_t *vm, vmm_vcpu_t *v, const struct vmm_vcpu_state *s,
                          thaw_err_t *err);
int vmm_arch_vm_save(vmm_t *vm, struct vmm_vm_state *s, thaw_err_t *err);
int vmm_arch_vm_restore(vmm_t *vm, const struct vmm_vm_state *s, thaw_err_t *err);
/* What can be checked without KVM (versions, ids, counts): vmm_restore runs
 * these before it builds a VM, so a corrupt snapshot is refused before any
 * KVM work (tearing a VM down costs 20-30 ms under PVM); the restore
 * functions check again, for any other caller. */
int vmm_arch_vcpu_state_check(const struct vmm_vcpu_state *s, unsigned id, thaw_err_t *err);
int vmm_arch_vm_state_check(const struct vmm_vm_state *s, thaw_err_t *err);
/* -ENOTSUP naming the features when s's CPUID asks for more than this host has. */
int vmm_arch_cpu_compat(vmm_t *vm, const struct vmm_vcpu_state *s, thaw_err_t *err);

#endif
