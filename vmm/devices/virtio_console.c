// SPDX-License-Identifier: Apache-2.0
/*
 * virtio-console (device id 3), one port, no features: the agent's channel.
 * Its host end is one side of a SOCK_STREAM socketpair (the other side is
 * what vmm_agent_fd() hands out).  Receive queue 0 is filled straight from
 * the socket with readv into guest buffers; transmit queue 1 is drained with
 * writev from guest buffers.  Both run on the event thread and never block:
 * when the guest has no receive buffers we stop polling the socket until it
 * posts some, and a partial write waits for EPOLLOUT with its chain held.
 * Guest buffers are touched only by the kernel (readv/sendmsg), which
 * reports failed lazy memory as EFAULT: the VM is then stopped and the
 * chain never returned.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vmm/devices/virtio.h"

#define RXQ 0
#define TXQ 1

typedef struct vcon {
    vmm_virtio_t *vio;
    int fd; /* our end of the socketpair */
    bool rx_eof;
    bool rx_starved; /* no guest buffers: socket not polled for input */
    bool tx_held;    /* tx chain below is partly written */
    size_t tx_off;
    uint32_t tx_skip; /* restored: bytes of the next tx chain the host already has */
    vmm_vq_chain_t tx;
    uint32_t events; /* what the socket is registered for */
} vcon_t;

static void update_events(vcon_t *c)
{
    uint32_t ev = 0;
    if (!c->rx_eof && !c->rx_starved)
        ev |= EPOLLIN;
    if (c->tx_held)
        ev |= EPOLLOUT;
    if (ev != c->events) {
        vmm__event_mod(c->vio->vm, c->fd, ev);
        c->events = ev;
    }
}

static void do_rx(vcon_t *c)
{
    vmm_virtio_t *vio = c->vio;
    bool irq = false;
    c->rx_starved = false;
    while (!c->rx_eof) {
        if (!vmm__vq_live(vio, RXQ)) {
            c->rx_starved = true;
            break;
        }
        /* Peek first: a popped chain cannot be put back. */
        char probe;
        ssize_t pk = recv(c->fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        if (pk == 0) {
            c->rx_eof = true;
            break;
        }
        if (pk < 0)
            break; /* EAGAIN: nothing to read */
        vmm_vq_chain_t ch;
        int rc = vmm__vq_pop(vio, RXQ, &ch);
        if (rc <= 0) {
            c->rx_starved = rc == 0;
            break;
        }
        if (ch.n_out != 0 || ch.in_bytes == 0) {
            vmm__virtio_fail(vio, "receive queue: buffer is not device-writable");
            break;
        }
        ssize_t n = readv(c->fd, ch.iov, (int)ch.n);
        if (n < 0 && errno == EFAULT) {
            /* What was read is lost with the guest: it is stopping. */
            vmm__virtio_mem_fail(vio, RXQ, "receive buffer");
            break;
        }
        if (n < 0)
            n = 0;
        vmm__vq_push(vio, RXQ, ch.head, (uint32_t)n);
        irq = true;
    }
    if (irq)
        vmm__virtio_irq(vio);
}

/* Advance an iovec array by off bytes into tmp; returns the count. */
static int iov_skip(const struct iovec *in, unsigned n, size_t off, struct iovec *out)
{
    int k = 0;
    for (unsigned i = 0; i < n; i++) {
        if (off >= in[i].iov_len) {
            off -= in[i].iov_len;
            continue;
        }
        out[k].iov_base = (char *)in[i].iov_base + off;
        out[k].iov_len = in[i].iov_len - off;
        off = 0;
        k++;
    }
    return k;
}

static void do_tx(vcon_t *c)
{
    vmm_virtio_t *vio = c->vio;
    bool irq = false;
    for (;;) {
        if (!c->tx_held) {
            int rc = vmm__vq_pop(vio, TXQ, &c->tx);
            if (rc <= 0)
                break;
            if (c->tx.n_out != c->tx.n) {
                vmm__virtio_fail(vio, "transmit queue: buffer is device-writable");
                break;
            }
            c->tx_held = true;
            c->tx_off = c->tx_skip;
            c->tx_skip = 0;
        }
        struct iovec iov[VMM_VQ_MAX_IOV];
        int k = iov_skip(c->tx.iov, c->tx.n, c->tx_off, iov);
        if (k > 0) {
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)k};
            ssize_t n = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                break; /* wait for EPOLLOUT with the chain held */
            if (n < 0 && errno == EFAULT) {
                c->tx_held = false; /* dropped: no EPOLLOUT to spin on */
                vmm__virtio_mem_fail(vio, TXQ, "transmit buffer");
                break;
            }
            if (n > 0) {
                c->tx_off += (size_t)n;
                size_t total = 0;
                for (unsigned i = 0; i < c->tx.n; i++)
                    total += c->tx.iov[i].iov_len;
                if (c->tx_off < total)
                    continue;
            }
            /* n < 0 otherwise: the host end is gone; the bytes are dropped. */
        }
        vmm__vq_push(vio, TXQ, c->tx.head, 0);
        c->tx_held = false;
        irq = true;
    }
    if (irq)
        vmm__virtio_irq(vio);
}

static void vcon_notify(vmm_virtio_t *vio, unsigned q)
{
    vcon_t *c = vio->priv;
    if (q == RXQ)
        do_rx(c);
    else
        do_tx(c);
    update_events(c);
}

static void on_socket(void *ctx, uint32_t events)
{
    vcon_t *c = ctx;
    pthread_mutex_lock(&c->vio->dev->lock);
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        do_rx(c);
    if (events & EPOLLOUT)
        do_tx(c);
    update_events(c);
    pthread_mutex_unlock(&c->vio->dev->lock);
}

static void vcon_reset(vmm_virtio_t *vio)
{
    vcon_t *c = vio->priv;
    c->tx_held = false;
    c->rx_starved = true;
    update_events(c);
}

static void vcon_config(vmm_virtio_t *vio, uint64_t off, void *data, unsigned len)
{
    /* cols, rows, max_nr_ports, emerg_wr: no features negotiated, all zero */
}

static void vcon_destroy(vmm_virtio_t *vio)
{
    vcon_t *c = vio->priv;
    if (c) {
        if (c->fd >= 0)
            close(c->fd);
        free(c);
    }
}

static int vcon_save(vmm_virtio_t *vio, vmm_virtio_state_t *ts, void *buf, size_t cap)
{
    vcon_t *c = vio->priv;
    vmm_vcon_state_t s = {.version = VMM_VCON_STATE_VERSION, .tx_skip = c->tx_skip};
    if (cap < sizeof(s))
        return -ENOSPC;
    if (c->tx_held) { /* see vmm_vcon_state_t */
        ts->q[TXQ].last_avail--;
        s.tx_skip = (uint32_t)c->tx_off;
    }
    memcpy(buf, &s, sizeof(s));
    return sizeof(s);
}

static int vcon_restore(vmm_virtio_t *vio, const void *buf, size_t len, thaw_err_t *err)
{
    vcon_t *c = vio->priv;
    vmm_vcon_state_t s;
    if (len != sizeof(s))
        return thaw_err_set(err, EINVAL, "virtio-console state: %zu bytes, expected %zu", len,
                            sizeof(s));
    memcpy(&s, buf, sizeof(s));
    if (s.version != VMM_VCON_STATE_VERSION)
        return thaw_err_set(err, EINVAL, "virtio-console state: unknown version %u", s.version);
    c->tx_skip = s.tx_skip;
    c->tx_held = false;
    c->rx_starved = false; /* look at the socket and the queue once running */
    update_events(c);
    return 0;
}

static const vmm_virtio_ops_t vcon_ops = {
    .save_extra = vcon_save,
    .restore_extra = vcon_restore,
    .device_id = 3,
    .features = 0,
    .num_queues = 2,
    .config_read = vcon_config,
    .notify = vcon_notify,
    .reset = vcon_reset,
    .destroy = vcon_destroy,
};

int vmm__virtio_console_create(vmm_t *vm, thaw_err_t *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
        return thaw_err_sys(err, errno, "virtio-console: socketpair");
    vcon_t *c = calloc(1, sizeof(*c));
    if (!c) {
        close(sv[0]);
        close(sv[1]);
        return thaw_err_set(err, ENOMEM, "virtio-console: out of memory");
    }
    c->fd = sv[0];
    c->rx_starved = true;
    vmm_virtio_t *vio;
    int rc = vmm__virtio_create(vm, &vcon_ops, c, &vio, err);
    if (rc < 0) { /* c is released with the device */
        close(sv[1]);
        return rc;
    }
    c->vio = vio;
    /* The caller's end blocks, as a plain socket would; ours never does. */
    int fl = fcntl(sv[1], F_GETFL);
    if (fl >= 0)
        fcntl(sv[1], F_SETFL, fl & ~O_NONBLOCK);
    vm->agent_host_fd = sv[1];
    rc = vmm__event_add(vm, c->fd, 0, on_socket, c);
    if (rc < 0)
        return thaw_err_sys(err, -rc, "virtio-console: event source");
    return 0;
}
