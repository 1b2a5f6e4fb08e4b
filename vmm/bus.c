// SPDX-License-Identifier: Apache-2.0
/*
 * The port-I/O and MMIO buses: a small sorted-free registry of address
 * windows, each owned by a device whose ops table handles the access.  An
 * access nobody owns reads as all-ones and its writes are dropped, as on
 * real hardware; both are counted by the caller.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "vmm/internal.h"

int vmm__bus_register(vmm_t *vm, vmm_bus_kind_t kind, uint64_t base, uint64_t len,
                      vmm_device_t *dev)
{
    vmm_bus_t *b = &vm->bus[kind];
    if (b->n == VMM_BUS_MAX)
        return -ENOSPC;
    for (unsigned i = 0; i < b->n; i++)
        if (base < b->r[i].base + b->r[i].len && b->r[i].base < base + len)
            return -EEXIST;
    b->r[b->n++] = (vmm_bus_range_t){.base = base, .len = len, .dev = dev};
    return 0;
}

bool vmm__bus_access(vmm_t *vm, vmm_bus_kind_t kind, uint64_t addr, void *data, unsigned len,
                     bool is_write)
{
    vmm_bus_t *b = &vm->bus[kind];
    for (unsigned i = 0; i < b->n; i++) {
        vmm_bus_range_t *r = &b->r[i];
        if (addr < r->base || addr - r->base >= r->len)
            continue;
        uint64_t off = addr - r->base;
        if (len > r->len - off) /* straddles the window's end */
            break;
        vmm_device_t *d = r->dev;
        pthread_mutex_lock(&d->lock);
        if (is_write)
            d->ops->write(d, off, data, len);
        else
            d->ops->read(d, off, data, len);
        pthread_mutex_unlock(&d->lock);
        return true;
    }
    if (!is_write)
        memset(data, 0xff, len);
    return false;
}

int vmm__device_new(vmm_t *vm, const vmm_device_ops_t *ops, void *priv, vmm_device_t **out)
{
    if (vm->n_devices == sizeof(vm->devices) / sizeof(vm->devices[0]))
        return -ENOSPC;
    vmm_device_t *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->ops = ops;
    d->vm = vm;
    d->priv = priv;
    pthread_mutex_init(&d->lock, NULL);
    vm->devices[vm->n_devices++] = d;
    *out = d;
    return 0;
}
