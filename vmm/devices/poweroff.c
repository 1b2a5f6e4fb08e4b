// SPDX-License-Identifier: Apache-2.0
/*
 * A poweroff port at 0x501, the same place as QEMU's isa-debug-exit: a write
 * stops the VM with VMM_EXIT_POWEROFF and the written value as its code.  A
 * microVM has no ACPI, and a guest (the test guest, or Linux through a tiny
 * driver) needs one clean way to say "done, with this status".
 */
#include <errno.h>
#include <string.h>

#include "vmm/internal.h"

static void poweroff_read(vmm_device_t *d, uint64_t off, void *data, unsigned len)
{
    memset(data, 0, len);
}

static void poweroff_write(vmm_device_t *d, uint64_t off, const void *data, unsigned len)
{
    uint32_t v = 0;
    memcpy(&v, data, len > 4 ? 4 : len);
    if (off == 0)
        vmm__stop(d->vm, VMM_EXIT_POWEROFF, v, 0, "guest poweroff code %u", v);
}

static const vmm_device_ops_t poweroff_ops = {
    .name = "poweroff",
    .read = poweroff_read,
    .write = poweroff_write,
};

int vmm__poweroff_create(vmm_t *vm)
{
    vmm_device_t *d;
    int rc = vmm__device_new(vm, &poweroff_ops, NULL, &d);
    if (rc < 0)
        return rc;
    return vmm__bus_register(vm, VMM_BUS_PIO, VMM_PORT_POWEROFF, 4, d);
}
