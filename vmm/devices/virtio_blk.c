// SPDX-License-Identifier: Apache-2.0
/*
 * virtio-blk (device id 2) over a raw image file, read-only or read-write.
 * Requests are served through io_uring: a notify pops each chain, checks
 * its header, direction and sector range, and submits a readv/writev/fsync
 * straight between the image and guest buffers; completions arrive on the
 * event thread through the ring's eventfd.  One queue, up to 256 requests
 * in flight (a slot per descriptor head, which is unique while in flight).
 * Guest bytes are touched only through vmm__gmem_* (header, status byte,
 * GET_ID) or by the kernel (the data), which reports failed lazy memory as
 * EFAULT: either way the request is not completed and the VM stops.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/virtio_blk.h>

#include "vmm/devices/virtio.h"

#define SECTOR 512u

typedef struct blk_req {
    bool busy;
    uint16_t head;
    uint8_t *status;
    uint32_t expect;  /* bytes the I/O must transfer */
    uint32_t written; /* bytes written into guest buffers on success (before status) */
    unsigned n;
    struct iovec iov[VMM_VQ_MAX_IOV];
} blk_req_t;

typedef struct blk {
    vmm_virtio_t *vio;
    int fd;
    int efd;
    bool ring_ok;
    bool ro;
    uint64_t sectors;
    struct io_uring ring;
    unsigned inflight; /* submitted, not yet reaped */
    blk_req_t req[VMM_VQ_MAX_SIZE];
} blk_t;

static void finish(blk_t *b, blk_req_t *r, uint8_t status, uint32_t written)
{
    r->busy = false;
    if (vmm__gmem_write(r->status, &status, 1) < 0) {
        vmm__virtio_mem_fail(b->vio, 0, "request status byte");
        return;
    }
    vmm__vq_push(b->vio, 0, r->head, written + 1);
}

/* Check one popped chain and submit it; returns true when it completed at once. */
static bool submit(blk_t *b, vmm_vq_chain_t *c)
{
    vmm_virtio_t *vio = b->vio;
    if (c->n < 2 || c->n_out < 1 || c->n_out == c->n || c->iov[0].iov_len < 16 ||
        c->iov[c->n - 1].iov_len < 1) {
        vmm__virtio_fail(vio, "request %u: malformed chain", c->head);
        return false;
    }
    blk_req_t *r = &b->req[c->head];
    if (r->busy) {
        vmm__virtio_fail(vio, "request %u: head reused while in flight", c->head);
        return false;
    }
    struct virtio_blk_outhdr h;
    /* copied once: the guest may change it */
    if (vmm__gmem_read(&h, c->iov[0].iov_base, sizeof(h)) < 0) {
        vmm__virtio_mem_fail(vio, 0, "request header");
        return false;
    }
    r->busy = true;
    r->head = c->head;
    r->status = (uint8_t *)c->iov[c->n - 1].iov_base + c->iov[c->n - 1].iov_len - 1;
    bool in = h.type == VIRTIO_BLK_T_IN;
    /* data: readable iov[1..n_out) for OUT, writable iov[n_out..n-1) for IN */
    unsigned first = in ? c->n_out : 1, last = in ? c->n - 1 : c->n_out;
    if (!in && c->n != c->n_out + 1) {
        finish(b, r, VIRTIO_BLK_S_IOERR, 0);
        return true;
    }
    r->n = 0;
    uint64_t bytes = 0;
    for (unsigned i = first; i < last; i++) {
        r->iov[r->n++] = c->iov[i];
        bytes += c->iov[i].iov_len;
    }
    /* The status byte shares the last descriptor: leave it out of the data. */
    if (in && c->iov[c->n - 1].iov_len > 1) {
        r->iov[r->n].iov_base = c->iov[c->n - 1].iov_base;
        r->iov[r->n].iov_len = c->iov[c->n - 1].iov_len - 1;
        bytes += r->iov[r->n++].iov_len;
    }
    switch (h.type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT: {
        if (!in && b->ro) {
            finish(b, r, VIRTIO_BLK_S_IOERR, 0);
            return true;
        }
        if (bytes % SECTOR || h.sector > b->sectors || bytes / SECTOR > b->sectors - h.sector ||
            bytes > UINT32_MAX) {
            vmm__device_error(vio->vm, "virtio-blk", "sector %llu + %llu bytes beyond %llu",
                              (unsigned long long)h.sector, (unsigned long long)bytes,
                              (unsigned long long)b->sectors);
            finish(b, r, VIRTIO_BLK_S_IOERR, 0);
            return true;
        }
        if (bytes == 0) {
            finish(b, r, VIRTIO_BLK_S_OK, 0);
            return true;
        }
        struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
        if (!sqe) {
            finish(b, r, VIRTIO_BLK_S_IOERR, 0);
            return true;
        }
        if (in)
            io_uring_prep_readv(sqe, b->fd, r->iov, r->n, h.sector * SECTOR);
        else
            io_uring_prep_writev(sqe, b->fd, r->iov, r->n, h.sector * SECTOR);
        io_uring_sqe_set_data64(sqe, c->head);
        b->inflight++;
        r->expect = (uint32_t)bytes;
        r->written = in ? (uint32_t)bytes : 0;
        return false;
    }
    case VIRTIO_BLK_T_FLUSH: {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
        if (!sqe || b->ro) {
            finish(b, r, b->ro ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR, 0);
            return true;
        }
        io_uring_prep_fsync(sqe, b->fd, IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data64(sqe, c->head);
        b->inflight++;
        r->expect = 0;
        r->written = 0;
        return false;
    }
    case VIRTIO_BLK_T_GET_ID: {
        static const char id[VIRTIO_BLK_ID_BYTES] = "thaw-disk";
        uint32_t w = 0;
        for (unsigned i = 0; i < r->n && w < sizeof(id); i++) {
            size_t k = r->iov[i].iov_len < sizeof(id) - w ? r->iov[i].iov_len : sizeof(id) - w;
            if (vmm__gmem_write(r->iov[i].iov_base, id + w, k) < 0) {
                r->busy = false;
                vmm__virtio_mem_fail(vio, 0, "GET_ID buffer");
                return false;
            }
            w += (uint32_t)k;
        }
        finish(b, r, VIRTIO_BLK_S_OK, w);
        return true;
    }
    default:
        finish(b, r, VIRTIO_BLK_S_UNSUPP, 0);
        return true;
    }
}

static void blk_notify(vmm_virtio_t *vio, unsigned q)
{
    blk_t *b = vio->priv;
    bool irq = false;
    vmm_vq_chain_t c;
    while (vmm__vq_pop(vio, 0, &c) > 0)
        irq |= submit(b, &c);
    io_uring_submit(&b->ring);
    if (irq)
        vmm__virtio_irq(vio);
}

/* Complete what io_uring finished (device lock held); wait for one first
 * when `wait` (quiesce). */
static void reap(blk_t *b, bool wait)
{
    struct io_uring_cqe *cqe;
    bool irq = false;
    if (wait && b->inflight && io_uring_wait_cqe(&b->ring, &cqe) < 0)
        return;
    while (io_uring_peek_cqe(&b->ring, &cqe) == 0) {
        uint64_t head = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&b->ring, cqe);
        if (b->inflight)
            b->inflight--;
        if (head >= VMM_VQ_MAX_SIZE || !b->req[head].busy)
            continue;
        blk_req_t *r = &b->req[head];
        bool ok = res >= 0 && (uint32_t)res == r->expect;
        /* EFAULT (or a short transfer once the memory failed): guest memory
         * went bad under the kernel's copy; a read may have landed only in
         * part.  Never report it as done. */
        if (res == -EFAULT || (!ok && vmm__mem_gone(b->vio->vm))) {
            r->busy = false;
            vmm__virtio_mem_fail(b->vio, 0, "request data (io_uring)");
            continue;
        }
        /* A reset while in flight dropped the queue: complete nothing into it. */
        if (b->vio->s.q[0].ready && !b->vio->broken) {
            finish(b, r, ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR, ok ? r->written : 0);
            irq = true;
        } else {
            r->busy = false;
        }
    }
    if (irq)
        vmm__virtio_irq(b->vio);
}

static void on_completion(void *ctx, uint32_t events)
{
    blk_t *b = ctx;
    uint64_t cnt;
    if (read(b->efd, &cnt, sizeof(cnt)) < 0) {
        /* spurious wake-up: the CQ is checked anyway */
    }
    pthread_mutex_lock(&b->vio->dev->lock);
    reap(b, false);
    pthread_mutex_unlock(&b->vio->dev->lock);
}

/* Before a pause: every submitted request completes into the used ring, so
 * a snapshot holds no I/O in flight. */
static void blk_quiesce(vmm_virtio_t *vio)
{
    blk_t *b = vio->priv;
    while (b->inflight) {
        unsigned before = b->inflight;
        reap(b, true);
        if (b->inflight == before)
            break; /* the ring failed: nothing more will complete */
    }
}

static void blk_config(vmm_virtio_t *vio, uint64_t off, void *data, unsigned len)
{
    blk_t *b = vio->priv;
    struct virtio_blk_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.capacity = b->sectors;
    cfg.seg_max = VMM_VQ_MAX_IOV - 2;
    if (off < sizeof(cfg) && len <= sizeof(cfg) - off)
        memcpy(data, (uint8_t *)&cfg + off, len);
}

static void blk_reset(vmm_virtio_t *vio)
{
    /* In-flight requests finish on the event thread and are dropped there. */
}

static void blk_quiesce(vmm_virtio_t *vio);

static void blk_destroy(vmm_virtio_t *vio)
{
    blk_t *b = vio->priv;
    if (!b)
        return;
    /* Ring teardown finishes asynchronously in the kernel: wait for every
     * request here, while guest memory is still mapped, so no read lands
     * in memory that is unmapped (or reused) later. */
    if (b->ring_ok && b->vio)
        blk_quiesce(vio);
    if (b->ring_ok)
        io_uring_queue_exit(&b->ring);
    if (b->efd >= 0)
        close(b->efd);
    if (b->fd >= 0)
        close(b->fd);
    free(b);
}

static const vmm_virtio_ops_t blk_ops_rw = {
    .device_id = 2,
    .features = (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_SEG_MAX),
    .num_queues = 1,
    .config_read = blk_config,
    .notify = blk_notify,
    .reset = blk_reset,
    .destroy = blk_destroy,
    .quiesce = blk_quiesce,
};

static const vmm_virtio_ops_t blk_ops_ro = {
    .device_id = 2,
    .features = (1ull << VIRTIO_BLK_F_RO) | (1ull << VIRTIO_BLK_F_SEG_MAX),
    .num_queues = 1,
    .config_read = blk_config,
    .notify = blk_notify,
    .reset = blk_reset,
    .destroy = blk_destroy,
    .quiesce = blk_quiesce,
};

int vmm__virtio_blk_create(vmm_t *vm, const char *path, bool readonly, thaw_err_t *err)
{
    blk_t *b = calloc(1, sizeof(*b));
    if (!b)
        return thaw_err_set(err, ENOMEM, "virtio-blk: out of memory");
    b->efd = -1;
    b->ro = readonly;
    b->fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    int rc;
    struct stat st;
    if (b->fd < 0) {
        rc = thaw_err_sys(err, errno, "disk '%s'", path);
        goto fail;
    }
    if (fstat(b->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        rc = thaw_err_set(err, EINVAL, "disk '%s': not a regular file", path);
        goto fail;
    }
    b->sectors = (uint64_t)st.st_size / SECTOR;
    rc = io_uring_queue_init(VMM_VQ_MAX_SIZE, &b->ring, 0);
    if (rc < 0) {
        thaw_err_sys(err, -rc, "disk '%s': io_uring", path);
        goto fail;
    }
    b->ring_ok = true;
    b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b->efd < 0 || io_uring_register_eventfd(&b->ring, b->efd) < 0) {
        rc = thaw_err_sys(err, errno, "disk '%s': io_uring eventfd", path);
        goto fail;
    }
    vmm_virtio_t *vio;
    rc = vmm__virtio_create(vm, readonly ? &blk_ops_ro : &blk_ops_rw, b, &vio, err);
    if (rc < 0)
        return thaw_err_wrap(err, "disk '%s'", path); /* b released by the transport */
    b->vio = vio;
    rc = vmm__event_add(vm, b->efd, EPOLLIN, on_completion, b);
    if (rc < 0)
        return thaw_err_sys(err, -rc, "disk '%s': event source", path);
    return 0;
fail:
    blk_destroy(&(vmm_virtio_t){.priv = b});
    return rc;
}
