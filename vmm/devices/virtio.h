/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The virtio-mmio (version 2) transport and split virtqueues, shared by the
 * virtio devices (console, blk).  A device supplies its id, features, queue
 * count and a notify callback; the transport owns the registers, the
 * ioeventfd per queue (QueueNotify writes wake the event thread without a
 * trip through the vCPU thread) and the irqfd that raises its interrupt.
 * Every ring address, index and descriptor the guest supplies is checked;
 * a bad one puts the device in DEVICE_NEEDS_RESET, never touches memory
 * outside the guest.
 */
#ifndef THAW_VMM_DEVICES_VIRTIO_H
#define THAW_VMM_DEVICES_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/devices/state.h"
#include "vmm/internal.h"

#define VMM_VQ_MAX_SIZE 256
#define VMM_VQ_MAX_IOV  64

typedef struct vmm_virtio vmm_virtio_t;

typedef struct vmm_virtio_ops {
    uint32_t device_id;
    uint64_t features; /* device-specific feature bits; VERSION_1 is added */
    unsigned num_queues;
    /* Device config space read (offset from 0x100). */
    void (*config_read)(vmm_virtio_t *vio, uint64_t off, void *data, unsigned len);
    /* Queue q was notified (event thread, device lock held). */
    void (*notify)(vmm_virtio_t *vio, unsigned q);
    /* The driver reset the device (device lock held). */
    void (*reset)(vmm_virtio_t *vio);
    void (*destroy)(vmm_virtio_t *vio);
    /* Finish host-side work in flight before a pause (device lock held). */
    void (*quiesce)(vmm_virtio_t *vio);
    /* Device state after the transport's: save may adjust the transport copy
     * *ts it is given; returns bytes written or -errno.  restore applies it
     * (after the transport state) or fails with err. */
    int (*save_extra)(vmm_virtio_t *vio, vmm_virtio_state_t *ts, void *buf, size_t cap);
    int (*restore_extra)(vmm_virtio_t *vio, const void *buf, size_t len, thaw_err_t *err);
} vmm_virtio_ops_t;

struct vmm_virtio {
    vmm_device_t *dev;
    vmm_t *vm;
    const vmm_virtio_ops_t *ops;
    void *priv;
    vmm_virtio_state_t s;
    unsigned index; /* which virtio-mmio slot */
    uint64_t base;  /* MMIO window */
    unsigned irq;
    int irqfd;
    int notify_fd[VMM_VIRTIO_MAX_QUEUES];
    bool broken; /* DEVICE_NEEDS_RESET set until the driver resets */
};

/* One descriptor chain popped from a queue, as host iovecs into guest RAM. */
typedef struct vmm_vq_chain {
    uint16_t head;
    unsigned n;        /* iovecs */
    unsigned n_out;    /* leading device-readable iovecs; the rest are writable */
    uint64_t in_bytes; /* total device-writable bytes */
    struct iovec iov[VMM_VQ_MAX_IOV];
} vmm_vq_chain_t;

int vmm__virtio_create(vmm_t *vm, const vmm_virtio_ops_t *ops, void *priv, vmm_virtio_t **out,
                       thaw_err_t *err);

/* True when queue q is set up and the device is live (DRIVER_OK, not broken). */
bool vmm__vq_live(vmm_virtio_t *vio, unsigned q);
/* Pop the next chain: 1 got one, 0 queue empty, -EINVAL the guest lied (device
 * now needs reset), -EFAULT the rings' memory failed (VM stopping).  The
 * iovecs point into guest memory: touch them only through vmm__gmem_* or
 * syscalls (which fail with EFAULT where a load would raise SIGBUS). */
int vmm__vq_pop(vmm_virtio_t *vio, unsigned q, vmm_vq_chain_t *c);
/* Return a chain to the driver with `written` bytes written into it (on
 * failed memory the device is marked broken and the VM stopped). */
void vmm__vq_push(vmm_virtio_t *vio, unsigned q, uint16_t head, uint32_t written);
/* Raise the used-buffer interrupt. */
void vmm__virtio_irq(vmm_virtio_t *vio);
/* Guest memory behind queue q (or a buffer of it) failed under a host
 * access: the device does nothing more and the VM stops with the memory's
 * error.  Returns -EFAULT for convenience. */
int vmm__virtio_mem_fail(vmm_virtio_t *vio, unsigned q, const char *what);
/* Mark the device broken (DEVICE_NEEDS_RESET) and count a device error. */
void vmm__virtio_fail(vmm_virtio_t *vio, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
