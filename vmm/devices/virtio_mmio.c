// SPDX-License-Identifier: Apache-2.0
/*
 * virtio-mmio transport, version 2 ("modern"), per the virtio 1.x spec
 * section 4.2.2.  Slot i sits at VMM_VIRTIO_MMIO + i * 4 KiB with IRQ
 * VMM_IRQ_VIRTIO0 + i; Linux finds it from the command line
 * ("virtio_mmio.device=4K@0xd0000000:5"), which the caller adds.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

#include "vmm/devices/virtio.h"

#define VIRT_MAGIC  0x74726976 /* "virt" */
#define VIRT_VENDOR 0x57414854 /* "THAW" */

static uint32_t lo32(uint64_t v)
{
    return (uint32_t)v;
}

static uint32_t hi32(uint64_t v)
{
    return (uint32_t)(v >> 32);
}

static void set_lo(uint64_t *p, uint32_t v)
{
    *p = (*p & ~0xffffffffull) | v;
}

static void set_hi(uint64_t *p, uint32_t v)
{
    *p = (*p & 0xffffffffull) | ((uint64_t)v << 32);
}

void vmm__virtio_fail(vmm_virtio_t *vio, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    vmm__device_error(vio->vm, vio->dev->ops->name, "%s", msg);
    if (!vio->broken) {
        vio->broken = true;
        vio->s.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
        vio->s.isr |= VIRTIO_MMIO_INT_CONFIG;
        vio->s.config_gen++;
        uint64_t one = 1;
        if (write(vio->irqfd, &one, sizeof(one)) < 0) {
            /* irqfd writes cannot fail short of overflow */
        }
    }
}

int vmm__virtio_mem_fail(vmm_virtio_t *vio, unsigned q, const char *what)
{
    /* No NEEDS_RESET or interrupt: the guest is being stopped, and nothing
     * it could do with the device would be right. */
    vio->broken = true;
    atomic_fetch_add(&vio->vm->host_mem_faults, 1);
    char w[96];
    snprintf(w, sizeof(w), "queue %u: %s", q, what);
    vmm__mem_failed(vio->vm, vio->dev->ops->name, w);
    return -EFAULT;
}

void vmm__virtio_irq(vmm_virtio_t *vio)
{
    vio->s.isr |= VIRTIO_MMIO_INT_VRING;
    uint64_t one = 1;
    if (write(vio->irqfd, &one, sizeof(one)) < 0) {
        /* as above */
    }
}

static void reset(vmm_virtio_t *vio)
{
    uint64_t devf = vio->s.device_features;
    uint32_t id = vio->s.device_id, gen = vio->s.config_gen;
    memset(&vio->s, 0, sizeof(vio->s));
    vio->s.version = VMM_VIRTIO_STATE_VERSION;
    vio->s.device_id = id;
    vio->s.device_features = devf;
    vio->s.config_gen = gen + 1;
    vio->broken = false;
    if (vio->ops->reset)
        vio->ops->reset(vio);
}

/* Ring sizes per the spec: desc 16*n, avail 6+2*n, used 6+8*n. */
static bool queue_fits(vmm_virtio_t *vio, const vmm_virtq_state_t *q)
{
    uint64_t n = q->num;
    return vmm__gpa(vio->vm, q->desc, 16 * n) && vmm__gpa(vio->vm, q->driver, 6 + 2 * n) &&
           vmm__gpa(vio->vm, q->device, 6 + 8 * n) && (q->desc & 15) == 0 && (q->driver & 1) == 0 &&
           (q->device & 3) == 0;
}

static vmm_virtq_state_t *cur_queue(vmm_virtio_t *vio)
{
    return vio->s.queue_sel < vio->ops->num_queues ? &vio->s.q[vio->s.queue_sel] : NULL;
}

static void mmio_read(vmm_device_t *d, uint64_t off, void *data, unsigned len)
{
    vmm_virtio_t *vio = d->priv;
    uint32_t v = 0;
    if (off >= VIRTIO_MMIO_CONFIG) {
        memset(data, 0, len);
        if (vio->ops->config_read)
            vio->ops->config_read(vio, off - VIRTIO_MMIO_CONFIG, data, len);
        return;
    }
    vmm_virtq_state_t *q = cur_queue(vio);
    switch (off) {
    case VIRTIO_MMIO_MAGIC_VALUE:
        v = VIRT_MAGIC;
        break;
    case VIRTIO_MMIO_VERSION:
        v = 2;
        break;
    case VIRTIO_MMIO_DEVICE_ID:
        v = vio->s.device_id;
        break;
    case VIRTIO_MMIO_VENDOR_ID:
        v = VIRT_VENDOR;
        break;
    case VIRTIO_MMIO_DEVICE_FEATURES:
        v = vio->s.dev_feat_sel == 0   ? lo32(vio->s.device_features)
            : vio->s.dev_feat_sel == 1 ? hi32(vio->s.device_features)
                                       : 0;
        break;
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
        v = q ? VMM_VQ_MAX_SIZE : 0;
        break;
    case VIRTIO_MMIO_QUEUE_READY:
        v = q ? q->ready : 0;
        break;
    case VIRTIO_MMIO_INTERRUPT_STATUS:
        v = vio->s.isr;
        break;
    case VIRTIO_MMIO_STATUS:
        v = vio->s.status;
        break;
    case VIRTIO_MMIO_CONFIG_GENERATION:
        v = vio->s.config_gen;
        break;
    default:
        break; /* write-only or reserved: reads as 0 */
    }
    memset(data, 0, len);
    memcpy(data, &v, len < 4 ? len : 4);
}

static void write_status(vmm_virtio_t *vio, uint32_t v)
{
    if (v == 0) {
        reset(vio);
        return;
    }
    if ((v & VIRTIO_CONFIG_S_FEATURES_OK) && !(vio->s.status & VIRTIO_CONFIG_S_FEATURES_OK)) {
        /* Accept FEATURES_OK only for a subset of what we offer, with VERSION_1:
         * the driver re-reads status to learn it was refused. */
        uint64_t f = vio->s.driver_features;
        if ((f & ~vio->s.device_features) || !(f & (1ull << VIRTIO_F_VERSION_1))) {
            vmm__device_error(vio->vm, vio->dev->ops->name, "driver features 0x%llx not acceptable",
                              (unsigned long long)f);
            v &= ~(uint32_t)VIRTIO_CONFIG_S_FEATURES_OK;
        }
    }
    /* The driver may not clear bits except by writing 0; NEEDS_RESET is ours. */
    vio->s.status = (vio->s.status & VIRTIO_CONFIG_S_NEEDS_RESET) | (v & 0xff & ~0x40u);
}

static void mmio_write(vmm_device_t *d, uint64_t off, const void *data, unsigned len)
{
    vmm_virtio_t *vio = d->priv;
    if (off >= VIRTIO_MMIO_CONFIG)
        return; /* config space is read-only for our devices */
    if (len != 4) {
        vmm__device_error(vio->vm, d->ops->name, "%u-byte write to register 0x%llx", len,
                          (unsigned long long)off);
        return;
    }
    uint32_t v;
    memcpy(&v, data, 4);
    vmm_virtq_state_t *q = cur_queue(vio);
    bool q_editable = q && !q->ready;
    switch (off) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        vio->s.dev_feat_sel = v;
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES:
        if (vio->s.status & VIRTIO_CONFIG_S_FEATURES_OK)
            break; /* too late to change */
        if (vio->s.drv_feat_sel == 0)
            set_lo(&vio->s.driver_features, v);
        else if (vio->s.drv_feat_sel == 1)
            set_hi(&vio->s.driver_features, v);
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        vio->s.drv_feat_sel = v;
        break;
    case VIRTIO_MMIO_QUEUE_SEL:
        vio->s.queue_sel = v;
        break;
    case VIRTIO_MMIO_QUEUE_NUM:
        if (q_editable)
            q->num = v;
        break;
    case VIRTIO_MMIO_QUEUE_READY:
        if (!q)
            break;
        if (v == 1 && !q->ready) {
            if (q->num == 0 || q->num > VMM_VQ_MAX_SIZE || (q->num & (q->num - 1)) ||
                !queue_fits(vio, q)) {
                vmm__virtio_fail(vio, "queue %u: size %u or ring addresses invalid",
                                 vio->s.queue_sel, q->num);
                break;
            }
            q->ready = 1;
            q->last_avail = 0;
            q->used_idx = 0;
        } else if (v == 0) {
            q->ready = 0;
        }
        break;
    case VIRTIO_MMIO_QUEUE_NOTIFY:
        /* Normally caught by the ioeventfd; a write that reaches us (no
         * ioeventfd match) is forwarded to the same place. */
        if (v < vio->ops->num_queues) {
            uint64_t one = 1;
            if (write(vio->notify_fd[v], &one, sizeof(one)) < 0) {
                /* eventfd counter overflow only */
            }
        }
        break;
    case VIRTIO_MMIO_INTERRUPT_ACK:
        vio->s.isr &= ~v;
        break;
    case VIRTIO_MMIO_STATUS:
        write_status(vio, v);
        break;
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
        if (q_editable)
            set_lo(&q->desc, v);
        break;
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
        if (q_editable)
            set_hi(&q->desc, v);
        break;
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
        if (q_editable)
            set_lo(&q->driver, v);
        break;
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
        if (q_editable)
            set_hi(&q->driver, v);
        break;
    case VIRTIO_MMIO_QUEUE_USED_LOW:
        if (q_editable)
            set_lo(&q->device, v);
        break;
    case VIRTIO_MMIO_QUEUE_USED_HIGH:
        if (q_editable)
            set_hi(&q->device, v);
        break;
    default:
        break;
    }
}

static void on_notify(void *ctx, uint32_t events)
{
    vmm_virtio_t *vio = ctx;
    for (unsigned q = 0; q < vio->ops->num_queues; q++) {
        uint64_t cnt;
        if (read(vio->notify_fd[q], &cnt, sizeof(cnt)) != sizeof(cnt))
            continue;
        pthread_mutex_lock(&vio->dev->lock);
        if (vmm__vq_live(vio, q))
            vio->ops->notify(vio, q);
        pthread_mutex_unlock(&vio->dev->lock);
    }
}

static void virtio_destroy(vmm_device_t *d)
{
    vmm_virtio_t *vio = d->priv;
    if (vio->ops->destroy)
        vio->ops->destroy(vio);
    for (unsigned q = 0; q < VMM_VIRTIO_MAX_QUEUES; q++)
        if (vio->notify_fd[q] >= 0)
            close(vio->notify_fd[q]);
    if (vio->irqfd >= 0)
        close(vio->irqfd);
    free(vio);
}

static void virtio_quiesce(vmm_device_t *d)
{
    vmm_virtio_t *vio = d->priv;
    if (vio->ops->quiesce)
        vio->ops->quiesce(vio);
}

static int virtio_save(vmm_device_t *d, void *buf, size_t cap)
{
    vmm_virtio_t *vio = d->priv;
    if (cap < sizeof(vio->s))
        return -ENOSPC;
    vmm_virtio_state_t ts = vio->s;
    int extra = 0;
    if (vio->ops->save_extra) {
        extra = vio->ops->save_extra(vio, &ts, (uint8_t *)buf + sizeof(ts), cap - sizeof(ts));
        if (extra < 0)
            return extra;
    }
    memcpy(buf, &ts, sizeof(ts));
    return (int)sizeof(ts) + extra;
}

static int virtio_restore(vmm_device_t *d, const void *buf, size_t len, thaw_err_t *err)
{
    vmm_virtio_t *vio = d->priv;
    vmm_virtio_state_t s;
    if (len < sizeof(s))
        return thaw_err_set(err, EINVAL, "%s state: %zu bytes, too short", d->ops->name, len);
    memcpy(&s, buf, sizeof(s));
    if (s.version != VMM_VIRTIO_STATE_VERSION || s.device_id != vio->s.device_id ||
        (s.driver_features & ~vio->s.device_features) ||
        s.device_features != vio->s.device_features)
        return thaw_err_set(err, EINVAL, "%s state: version, device or features do not match",
                            d->ops->name);
    for (unsigned q = 0; q < VMM_VIRTIO_MAX_QUEUES; q++) {
        vmm_virtq_state_t *qs = &s.q[q];
        if (!qs->ready)
            continue;
        if (q >= vio->ops->num_queues || qs->num == 0 || qs->num > VMM_VQ_MAX_SIZE ||
            (qs->num & (qs->num - 1)) || !queue_fits(vio, qs) ||
            /* quiesced: every popped chain was returned (a broken device
             * is exempt: it does nothing until reset) */
            (!(s.status & VIRTIO_CONFIG_S_NEEDS_RESET) &&
             (uint16_t)(qs->used_idx - qs->last_avail) != 0))
            return thaw_err_set(err, EINVAL, "%s state: queue %u invalid", d->ops->name, q);
    }
    vio->s = s;
    vio->broken = s.status & VIRTIO_CONFIG_S_NEEDS_RESET;
    if (vio->ops->restore_extra) {
        int rc =
            vio->ops->restore_extra(vio, (const uint8_t *)buf + sizeof(s), len - sizeof(s), err);
        if (rc < 0)
            return rc;
    }
    /* Buffers the guest posted before the snapshot get no new notification:
     * look at every queue once the event thread runs. */
    for (unsigned q = 0; q < vio->ops->num_queues; q++) {
        uint64_t one = 1;
        if (write(vio->notify_fd[q], &one, sizeof(one)) < 0) {
            /* counter overflow only */
        }
    }
    return 0;
}

static const vmm_device_ops_t virtio_console_dev = {.name = "virtio-console",
                                                    .read = mmio_read,
                                                    .write = mmio_write,
                                                    .destroy = virtio_destroy,
                                                    .quiesce = virtio_quiesce,
                                                    .save = virtio_save,
                                                    .restore = virtio_restore};
static const vmm_device_ops_t virtio_blk_dev = {.name = "virtio-blk",
                                                .read = mmio_read,
                                                .write = mmio_write,
                                                .destroy = virtio_destroy,
                                                .quiesce = virtio_quiesce,
                                                .save = virtio_save,
                                                .restore = virtio_restore};

/* On failure priv has been released through ops->destroy (now or, once the
 * device is registered, by vmm_destroy). */
int vmm__virtio_create(vmm_t *vm, const vmm_virtio_ops_t *ops, void *priv, vmm_virtio_t **out,
                       thaw_err_t *err)
{
    vmm_virtio_t *vio = NULL;
    if (vm->n_virtio == VMM_MAX_VIRTIO || ops->num_queues > VMM_VIRTIO_MAX_QUEUES ||
        !(vio = calloc(1, sizeof(*vio)))) {
        vmm_virtio_t tmp = {.priv = priv};
        ops->destroy(&tmp); /* priv is ours to release on every failure */
        return thaw_err_set(err, ENOSPC, "virtio: no free virtio-mmio slot or no memory");
    }
    vio->vm = vm;
    vio->ops = ops;
    vio->priv = priv;
    vio->irqfd = -1;
    for (unsigned q = 0; q < VMM_VIRTIO_MAX_QUEUES; q++)
        vio->notify_fd[q] = -1;
    vio->index = vm->n_virtio++;
    vio->base = VMM_VIRTIO_MMIO + vio->index * VMM_VIRTIO_MMIO_LEN;
    vio->irq = VMM_IRQ_VIRTIO0 + vio->index;
    vio->s.version = VMM_VIRTIO_STATE_VERSION;
    vio->s.device_id = ops->device_id;
    vio->s.device_features = ops->features | (1ull << VIRTIO_F_VERSION_1);

    const vmm_device_ops_t *dops = ops->device_id == 3 ? &virtio_console_dev : &virtio_blk_dev;
    vmm_device_t *d;
    int rc = vmm__device_new(vm, dops, vio, &d);
    if (rc < 0) {
        ops->destroy(vio);
        free(vio);
        return thaw_err_set(err, -rc, "virtio: device table full");
    }
    vio->dev = d; /* from here vmm_destroy frees vio through virtio_destroy */

    vio->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vio->irqfd < 0)
        return thaw_err_sys(err, errno, "virtio: eventfd");
    struct kvm_irqfd irqfd = {.fd = (uint32_t)vio->irqfd, .gsi = vio->irq};
    if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
        return thaw_err_sys(err, errno, "virtio: KVM_IRQFD gsi %u", vio->irq);
    for (unsigned q = 0; q < ops->num_queues; q++) {
        vio->notify_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (vio->notify_fd[q] < 0)
            return thaw_err_sys(err, errno, "virtio: eventfd");
        struct kvm_ioeventfd io = {
            .datamatch = q,
            .addr = vio->base + VIRTIO_MMIO_QUEUE_NOTIFY,
            .len = 4,
            .fd = vio->notify_fd[q],
            .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
        };
        if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0)
            return thaw_err_sys(err, errno, "virtio: KVM_IOEVENTFD queue %u", q);
        rc = vmm__event_add(vm, vio->notify_fd[q], EPOLLIN, on_notify, vio);
        if (rc < 0)
            return thaw_err_sys(err, -rc, "virtio: event source");
    }
    rc = vmm__bus_register(vm, VMM_BUS_MMIO, vio->base, VMM_VIRTIO_MMIO_LEN, d);
    if (rc < 0)
        return thaw_err_sys(err, -rc, "virtio: MMIO window 0x%llx", (unsigned long long)vio->base);
    *out = vio;
    return 0;
}
