/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vmm: a small x86_64 KVM microVM monitor (Firecracker-style).  One vmm_t is
 * one guest: guest memory, N vCPUs (a thread each), the in-kernel irqchip and
 * PIT, an 8250 console whose output goes to a log ring, an i8042 for the
 * guest's reset request, a poweroff port, and virtio-mmio devices: a console
 * bridged to a host socket (the agent's channel) and an optional block device.
 *
 * Lifetime: vmm_create() builds the VM and loads the kernel (bzImage or ELF
 * vmlinux) with the Linux boot protocol; vmm_start() starts the vCPU threads;
 * vmm_wait() waits for the guest to stop; vmm_destroy() kicks every vCPU out
 * of KVM_RUN, joins all threads and releases every descriptor and mapping.
 * See docs/vmm.md for the device model and the guest memory layout.
 */
#ifndef THAW_VMM_VMM_H
#define THAW_VMM_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "snapshot/snap.h"

typedef struct vmm vmm_t;

#define VMM_MAX_VCPUS       32
#define VMM_MAX_MEM_REGIONS 2

/*
 * A guest-physical RAM region and, optionally, the host memory behind it.
 * vmm_mem_layout() says which regions a memory size needs; a caller that
 * wants to supply the backing (snapshot/'s restore engines) maps `host` for
 * each region itself and passes them in vmm_config_t.mem; the VM then never
 * unmaps them.  Left NULL, the VMM maps anonymous memory it owns.
 */
typedef struct vmm_mem_region {
    uint64_t gpa;  /* guest-physical start */
    uint64_t size; /* bytes, a multiple of 2 MiB */
    void *host;    /* caller-owned backing, or NULL */
} vmm_mem_region_t;

/* Largest console log ring: a bound on what a config (or a snapshot's saved
 * config) can make the VMM allocate up front. */
#define VMM_CONSOLE_LOG_MAX (64u << 20)

typedef struct vmm_config {
    const char *kernel_path; /* bzImage or ELF vmlinux (required) */
    const char *initrd_path; /* optional */
    const char *cmdline;     /* optional; the kernel's limit applies */
    uint64_t mem_bytes;      /* guest RAM, >= 16 MiB, multiple of 2 MiB */
    unsigned vcpus;          /* 1..VMM_MAX_VCPUS */

    /* virtio-console for the agent channel: vmm_agent_fd() is its host end. */
    bool agent_console;

    /* virtio-blk over a raw image file (optional). */
    const char *disk_path;
    bool disk_readonly;

    /* Console log ring size in bytes (0: 64 KiB; at most VMM_CONSOLE_LOG_MAX). */
    size_t console_log_bytes;

    /*
     * Caller-supplied backing for guest RAM, exactly as vmm_mem_layout()
     * describes it (gpa and size must match); NULL for anonymous memory.
     */
    const vmm_mem_region_t *mem;
    unsigned mem_regions;
} vmm_config_t;

typedef enum vmm_exit_reason {
    VMM_EXIT_NONE = 0,       /* still running (or never started) */
    VMM_EXIT_POWEROFF,       /* the guest asked to power off (code in exit.code) */
    VMM_EXIT_RESET,          /* the guest asked for a reset (i8042 0xfe) */
    VMM_EXIT_TRIPLE_FAULT,   /* KVM_EXIT_SHUTDOWN: the guest's CPU shut down */
    VMM_EXIT_INTERNAL_ERROR, /* KVM could not run the guest (emulation failure...) */
    VMM_EXIT_DESTROYED,      /* stopped by vmm_destroy() */
} vmm_exit_reason_t;

typedef struct vmm_exit {
    vmm_exit_reason_t reason;
    uint32_t code;    /* poweroff: the value written to the poweroff port */
    unsigned vcpu;    /* which vCPU stopped the VM */
    char detail[160]; /* human detail: "vcpu 0: KVM_EXIT_INTERNAL_ERROR suberror 1" */
} vmm_exit_t;

/* Name of an exit reason ("poweroff", "reset", ...). */
const char *vmm_exit_reason_name(vmm_exit_reason_t r);

/*
 * The guest RAM regions for mem_bytes (RAM below 3 GiB, the rest above
 * 4 GiB).  Fills up to max entries of out (host pointers NULL) and returns
 * how many regions there are, or -EINVAL for an unusable size.
 */
int vmm_mem_layout(uint64_t mem_bytes, vmm_mem_region_t *out, unsigned max);

/*
 * Build a VM from cfg: KVM VM and vCPUs, memory, devices, kernel, initrd,
 * boot parameters.  Nothing runs until vmm_start().  On success *out owns
 * everything; free it with vmm_destroy().  Errors name the problem (for
 * example "kernel '/x/bzImage': setup header: bad magic").
 */
int vmm_create(const vmm_config_t *cfg, vmm_t **out, thaw_err_t *err);

/* Start the vCPU and device threads.  Returns 0 or -errno. */
int vmm_start(vmm_t *vm, thaw_err_t *err);

/*
 * Pause: every vCPU is out of KVM_RUN and parked when this returns.
 * Resume lets them run again.  Both are idempotent; return 0 or -errno.
 */
int vmm_pause(vmm_t *vm);
int vmm_resume(vmm_t *vm);

/*
 * Wait up to timeout_ms (-1: forever) for the guest to stop.  Returns 1 and
 * fills *exit when it has stopped, 0 on timeout, -errno on error.
 */
int vmm_wait(vmm_t *vm, int timeout_ms, vmm_exit_t *exit);

/*
 * A descriptor that becomes readable (POLLIN) once the guest has stopped, for
 * callers with their own event loop.  Owned by vm.
 */
int vmm_exit_fd(const vmm_t *vm);

/* Stop the guest, join every thread, release everything.  NULL is fine. */
void vmm_destroy(vmm_t *vm);

/*
 * The host end of the agent channel (a SOCK_STREAM socket; bytes written to
 * it appear on the guest's virtio-console, bytes the guest sends come out of
 * it).  Owned by vm: do not close it.  -1 without agent_console.  When the
 * guest stops (any exit reason) the channel is shut down, so a reader blocked
 * on it sees EOF at once instead of waiting out its timeout; vmm_wait() then
 * says why.
 */
int vmm_agent_fd(const vmm_t *vm);

/*
 * The snapshot memory a restored VM runs on (its fault counters, working
 * set and regions), or NULL for a VM that was booted, not restored.  Owned
 * by vm.
 */
snap_mem_t *vmm_snap_mem(const vmm_t *vm);

/*
 * Copy the console log (the newest bytes the ring holds, oldest first) into
 * buf, NUL-terminated.  Returns the number of bytes copied (<= len - 1).
 * Also returns, through *total if not NULL, how many bytes the guest has
 * written in all (so a caller sees when the ring wrapped).
 */
size_t vmm_console_read(vmm_t *vm, char *buf, size_t len, uint64_t *total);

/*
 * Block until the console log contains `needle` or timeout_ms passes or the
 * guest stops.  Returns 1 if found, 0 if not.
 */
int vmm_console_wait_for(vmm_t *vm, const char *needle, int timeout_ms);

/* Counters, for tests and the benchmark. */
typedef struct vmm_stats {
    uint64_t exits_pio;
    uint64_t exits_mmio;
    uint64_t exits_other;
    uint64_t device_errors; /* guest-supplied values a device refused */
    uint64_t create_ns;     /* vmm_create() wall time */
    uint64_t first_exit_ns; /* vmm_start() to the first exit of vCPU 0 */
    uint64_t first_run_ns;  /* vmm_start() to vCPU 0 entering KVM_RUN */
    /* guest-memory accesses by host threads (devices, snapshot) that found
     * the memory failed (a lazy chunk that did not verify): each stopped
     * the VM with VMM_EXIT_INTERNAL_ERROR instead of killing the process */
    uint64_t host_mem_faults;
} vmm_stats_t;

void vmm_get_stats(vmm_t *vm, vmm_stats_t *out);

/* ------------------------------------------------------------ snapshots */

/*
 * Write a snapshot of vm to directory dir through snapshot/ (memory plus the
 * state sections listed in docs/vmm.md).  The VM is paused for the duration
 * (every vCPU out of KVM_RUN with its last exit completed, device work in
 * flight finished) and left paused or running as it was.  opts and stats
 * may be NULL (kind defaults to "vm").  Returns 0 or -errno with err.  A VM
 * restored with the lazy engine has all its memory faulted in first: a
 * chunk that fails then fails the snapshot (-EIO, "snapshot: guest memory:
 * ...") and stops the VM, and nothing is written.
 */
int vmm_snapshot(vmm_t *vm, const char *dir, const snap_write_opts_t *opts,
                 snap_write_stats_t *stats, thaw_err_t *err);

typedef struct vmm_restore_opts {
    snap_engine_t engine;            /* eager, lazy or shared */
    const snap_mem_opts_t *mem_opts; /* NULL: the engine's defaults */
    /* The shape the caller expects (a template's config); 0 accepts what
     * the snapshot has.  A mismatch is an error, not a surprise later. */
    unsigned expect_vcpus;
    uint64_t expect_mem_bytes;
} vmm_restore_opts_t;

/* Where a restore's time went (ns). */
typedef struct vmm_restore_timing {
    uint64_t mem_attach_ns; /* snap_mem_attach with the chosen engine */
    uint64_t vm_create_ns;  /* KVM VM, memory slots, vCPUs, devices */
    uint64_t state_ns;      /* VM and vCPU state loaded into KVM */
    uint64_t devices_ns;    /* device state */
    uint64_t total_ns;      /* the whole vmm_restore() */
} vmm_restore_timing_t;

/*
 * Build a new VM from an open snapshot: guest memory from snap_mem_attach()
 * with opts->engine (owned by the VM from then on), the recorded VM, vCPU and
 * device state restored in the order KVM needs.  The VM is not running:
 * call vmm_start().  A snapshot whose CPU features this host lacks, whose
 * configuration does not match opts, or whose state does not validate is
 * refused and nothing is left behind.  timing may be NULL.
 */
int vmm_restore(snap_t *snap, const vmm_restore_opts_t *opts, vmm_t **out,
                vmm_restore_timing_t *timing, thaw_err_t *err);

/*
 * True when /dev/kvm is PVM (no vmx/svm visible, or the kvm_pvm module is
 * loaded); see vmm/x86/pvm.c for why it matters.  *why gets a short reason.
 */
bool vmm_host_is_pvm(const char **why);

#endif
