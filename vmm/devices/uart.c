// SPDX-License-Identifier: Apache-2.0
/*
 * An 8250/16550A UART at COM1 (0x3f8, IRQ 4), enough for Linux's serial
 * console and earlyprintk: transmit only (every byte goes to the VM's
 * console log ring at once, so the transmitter is always empty), loopback
 * for the driver's probe, and the THR-empty interrupt.  The registers live
 * in a versioned state struct so save/restore is a copy.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/devices/state.h"
#include "vmm/internal.h"

#define UART_IER_RDI  0x01
#define UART_IER_THRI 0x02
#define UART_IIR_NONE 0x01
#define UART_IIR_THRI 0x02
#define UART_LCR_DLAB 0x80
#define UART_MCR_LOOP 0x10
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40

typedef struct uart {
    vmm_uart_state_t s;
    int line; /* last level given to the irqchip, -1 unknown */
} uart_t;

static void update_irq(vmm_device_t *d)
{
    uart_t *u = d->priv;
    int level = (u->s.ier & UART_IER_THRI) && u->s.thri_pending;
    if (level == u->line)
        return; /* one ioctl per change, not per byte */
    u->line = level;
    struct kvm_irq_level l = {.irq = VMM_IRQ_COM1, .level = (uint32_t)level};
    ioctl(d->vm->vm_fd, KVM_IRQ_LINE, &l);
}

static void uart_read(vmm_device_t *d, uint64_t off, void *data, unsigned len)
{
    uart_t *u = d->priv;
    uint8_t v = 0;
    bool dlab = u->s.lcr & UART_LCR_DLAB;
    switch (off) {
    case 0:
        v = dlab ? u->s.dll : 0; /* no input: RBR reads 0 */
        break;
    case 1:
        v = dlab ? u->s.dlm : u->s.ier;
        break;
    case 2:
        if ((u->s.ier & UART_IER_THRI) && u->s.thri_pending) {
            v = UART_IIR_THRI;
            u->s.thri_pending = 0; /* reading IIR acknowledges THR-empty */
        } else {
            v = UART_IIR_NONE;
        }
        if (u->s.fcr & 1)
            v |= 0xc0;
        break;
    case 3:
        v = u->s.lcr;
        break;
    case 4:
        v = u->s.mcr;
        break;
    case 5:
        v = UART_LSR_THRE | UART_LSR_TEMT;
        break;
    case 6:
        if (u->s.mcr & UART_MCR_LOOP) /* DCD<-OUT2, RI<-OUT1, DSR<-DTR, CTS<-RTS */
            v = (uint8_t)(((u->s.mcr & 0x08) << 4) | ((u->s.mcr & 0x04) << 4) |
                          ((u->s.mcr & 0x01) << 5) | ((u->s.mcr & 0x02) << 3));
        else
            v = 0xb0; /* DCD, DSR, CTS */
        break;
    case 7:
        v = u->s.scr;
        break;
    default:
        break;
    }
    memset(data, 0, len);
    memcpy(data, &v, 1);
    update_irq(d);
}

static void uart_write(vmm_device_t *d, uint64_t off, const void *data, unsigned len)
{
    uart_t *u = d->priv;
    uint8_t v = *(const uint8_t *)data;
    bool dlab = u->s.lcr & UART_LCR_DLAB;
    switch (off) {
    case 0:
        if (dlab) {
            u->s.dll = v;
        } else {
            if (!(u->s.mcr & UART_MCR_LOOP))
                vmm__log_put(&d->vm->console, &v, 1);
            u->s.thri_pending = 1;
        }
        break;
    case 1:
        if (dlab) {
            u->s.dlm = v;
        } else {
            if (!(u->s.ier & UART_IER_THRI) && (v & UART_IER_THRI))
                u->s.thri_pending = 1;
            u->s.ier = v & 0x0f;
        }
        break;
    case 2:
        u->s.fcr = v;
        break;
    case 3:
        u->s.lcr = v;
        break;
    case 4:
        u->s.mcr = v & 0x1f;
        break;
    case 7:
        u->s.scr = v;
        break;
    default:
        break; /* LSR and MSR are read-only */
    }
    update_irq(d);
}

static void uart_destroy(vmm_device_t *d)
{
    free(d->priv);
}

static int uart_save(vmm_device_t *d, void *buf, size_t cap)
{
    uart_t *u = d->priv;
    if (cap < sizeof(u->s))
        return -ENOSPC;
    memcpy(buf, &u->s, sizeof(u->s));
    return sizeof(u->s);
}

static int uart_restore(vmm_device_t *d, const void *buf, size_t len, thaw_err_t *err)
{
    uart_t *u = d->priv;
    vmm_uart_state_t s;
    if (len != sizeof(s))
        return thaw_err_set(err, EINVAL, "uart state: %zu bytes, expected %zu", len, sizeof(s));
    memcpy(&s, buf, sizeof(s));
    if (s.version != VMM_UART_STATE_VERSION)
        return thaw_err_set(err, EINVAL, "uart state: unknown version %u", s.version);
    u->s = s;
    u->line = -1; /* the irqchip's own state came back with the VM state */
    return 0;
}

static const vmm_device_ops_t uart_ops = {
    .name = "uart",
    .read = uart_read,
    .write = uart_write,
    .destroy = uart_destroy,
    .save = uart_save,
    .restore = uart_restore,
};

int vmm__uart_create(vmm_t *vm)
{
    uart_t *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    u->s.version = VMM_UART_STATE_VERSION;
    u->s.mcr = 0x08; /* OUT2 */
    u->line = -1;
    vmm_device_t *d;
    int rc = vmm__device_new(vm, &uart_ops, u, &d);
    if (rc < 0) {
        free(u);
        return rc;
    }
    return vmm__bus_register(vm, VMM_BUS_PIO, VMM_PORT_COM1, 8, d);
}
