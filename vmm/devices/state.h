/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Device state as plain fixed-width structs: each device keeps its guest-
 * visible registers in one of these, so saving a device is copying its
 * struct and restoring it is validating and copying it back (issue 6 adds
 * the save/restore functions and the snapshot sections).  Bump a struct's
 * version constant whenever its layout or the meaning of a field changes;
 * a reader refuses versions it does not know.
 */
#ifndef THAW_VMM_DEVICES_STATE_H
#define THAW_VMM_DEVICES_STATE_H

#include <stdint.h>

#define VMM_UART_STATE_VERSION 1

typedef struct vmm_uart_state {
    uint32_t version;
    uint8_t ier, lcr, mcr, scr;
    uint8_t dll, dlm, fcr, thri_pending;
    uint32_t reserved;
} vmm_uart_state_t;
_Static_assert(sizeof(vmm_uart_state_t) == 16, "vmm_uart_state_t layout");

#define VMM_VIRTIO_STATE_VERSION 1
#define VMM_VIRTIO_MAX_QUEUES    2

typedef struct vmm_virtq_state {
    uint32_t num;                  /* queue size the driver chose */
    uint32_t ready;                /* QueueReady */
    uint64_t desc, driver, device; /* guest-physical ring addresses */
    uint16_t last_avail;           /* next avail entry the device reads */
    uint16_t used_idx;             /* next used index the device writes */
    uint32_t reserved;
} vmm_virtq_state_t;
_Static_assert(sizeof(vmm_virtq_state_t) == 40, "vmm_virtq_state_t layout");

typedef struct vmm_virtio_state {
    uint32_t version;
    uint32_t device_id;
    uint32_t status;
    uint32_t isr; /* InterruptStatus */
    uint32_t dev_feat_sel;
    uint32_t drv_feat_sel;
    uint32_t queue_sel;
    uint32_t config_gen;
    uint64_t device_features;
    uint64_t driver_features;
    vmm_virtq_state_t q[VMM_VIRTIO_MAX_QUEUES];
} vmm_virtio_state_t;
_Static_assert(sizeof(vmm_virtio_state_t) == 128, "vmm_virtio_state_t layout");

#define VMM_VCON_STATE_VERSION 1

/* virtio-console beyond the transport: a transmit chain cut short by a full
 * socket is saved as not yet popped (last_avail one back) plus how many of
 * its bytes the host already has, so a restored console resends exactly
 * the rest: no gap, no duplicate. */
typedef struct vmm_vcon_state {
    uint32_t version;
    uint32_t tx_skip;
} vmm_vcon_state_t;
_Static_assert(sizeof(vmm_vcon_state_t) == 8, "vmm_vcon_state_t layout");

#endif
