// SPDX-License-Identifier: Apache-2.0
/*
 * Split virtqueues (virtio 1.x section 2.7), device side.  The rings live in
 * guest memory that the guest keeps writing while we read, so every value
 * is read once into a local and checked: the avail index may run at most
 * `num` ahead, descriptor ids must be < num, a chain may not be longer than
 * the queue (which also catches loops), each buffer must lie inside guest
 * RAM, readable buffers must precede writable ones, and indirect
 * descriptors (not offered) are refused.  Any violation breaks the device
 * (DEVICE_NEEDS_RESET) instead of reaching memory outside the guest.  The
 * rings are read and written only through the guarded vmm__gmem_* helpers:
 * a ring on failed lazy memory stops the VM (vmm__virtio_mem_fail) rather
 * than the process.
 */
#include <errno.h>
#include <string.h>

#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "vmm/devices/virtio.h"

bool vmm__vq_live(vmm_virtio_t *vio, unsigned q)
{
    return q < vio->ops->num_queues && vio->s.q[q].ready && !vio->broken &&
           (vio->s.status & VIRTIO_CONFIG_S_DRIVER_OK);
}

int vmm__vq_pop(vmm_virtio_t *vio, unsigned qi, vmm_vq_chain_t *c)
{
    if (!vmm__vq_live(vio, qi))
        return 0;
    vmm_virtq_state_t *q = &vio->s.q[qi];
    uint16_t num = (uint16_t)q->num;
    /* Checked when the queue was made ready; re-derived here so a restored
     * or changed state cannot slip past. */
    struct vring_desc *desc = vmm__gpa(vio->vm, q->desc, 16ull * num);
    struct vring_avail *avail = vmm__gpa(vio->vm, q->driver, 6 + 2ull * num);
    if (!desc || !avail) {
        vmm__virtio_fail(vio, "queue %u: rings outside guest memory", qi);
        return -EINVAL;
    }
    uint16_t avail_idx;
    if (vmm__gmem_load16(&avail->idx, &avail_idx) < 0)
        return vmm__virtio_mem_fail(vio, qi, "avail index");
    uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
    if (pending == 0)
        return 0;
    if (pending > num) {
        vmm__virtio_fail(vio, "queue %u: avail index %u is %u ahead of %u (size %u)", qi, avail_idx,
                         pending, q->last_avail, num);
        return -EINVAL;
    }
    uint16_t head;
    if (vmm__gmem_load16(&avail->ring[q->last_avail % num], &head) < 0)
        return vmm__virtio_mem_fail(vio, qi, "avail ring");
    if (head >= num) {
        vmm__virtio_fail(vio, "queue %u: head descriptor %u out of range", qi, head);
        return -EINVAL;
    }
    c->head = head;
    c->n = c->n_out = 0;
    c->in_bytes = 0;
    uint16_t id = head;
    for (unsigned hops = 0;; hops++) {
        if (hops >= num || c->n >= VMM_VQ_MAX_IOV) {
            vmm__virtio_fail(vio, "queue %u: descriptor chain too long or looping", qi);
            return -EINVAL;
        }
        struct vring_desc d;
        if (vmm__gmem_read(&d, &desc[id], sizeof(d)) < 0)
            return vmm__virtio_mem_fail(vio, qi, "descriptor table");
        if (d.flags & VRING_DESC_F_INDIRECT) {
            vmm__virtio_fail(vio, "queue %u: indirect descriptor not negotiated", qi);
            return -EINVAL;
        }
        bool writable = d.flags & VRING_DESC_F_WRITE;
        void *p = vmm__gpa(vio->vm, d.addr, d.len);
        if (!p) {
            vmm__virtio_fail(vio, "queue %u: descriptor %u: 0x%llx+%u outside guest memory", qi, id,
                             (unsigned long long)d.addr, d.len);
            return -EINVAL;
        }
        if (!writable && c->n != c->n_out) {
            vmm__virtio_fail(vio, "queue %u: readable descriptor after a writable one", qi);
            return -EINVAL;
        }
        c->iov[c->n].iov_base = p;
        c->iov[c->n].iov_len = d.len;
        c->n++;
        if (writable)
            c->in_bytes += d.len;
        else
            c->n_out++;
        if (!(d.flags & VRING_DESC_F_NEXT))
            break;
        if (d.next >= num) {
            vmm__virtio_fail(vio, "queue %u: next descriptor %u out of range", qi, d.next);
            return -EINVAL;
        }
        id = d.next;
    }
    q->last_avail++;
    return 1;
}

void vmm__vq_push(vmm_virtio_t *vio, unsigned qi, uint16_t head, uint32_t written)
{
    vmm_virtq_state_t *q = &vio->s.q[qi];
    uint16_t num = (uint16_t)q->num;
    struct vring_used *used = vmm__gpa(vio->vm, q->device, 6 + 8ull * num);
    if (!used || num == 0)
        return;
    struct vring_used_elem e = {.id = head, .len = written};
    if (vmm__gmem_write(&used->ring[q->used_idx % num], &e, sizeof(e)) < 0) {
        vmm__virtio_mem_fail(vio, qi, "used ring");
        return;
    }
    q->used_idx++;
    /* The element must be visible before the index that publishes it. */
    if (vmm__gmem_store16(&used->idx, q->used_idx) < 0)
        vmm__virtio_mem_fail(vio, qi, "used index");
}
