// SPDX-License-Identifier: Apache-2.0
/*
 * Just enough of the i8042 keyboard controller for a guest to reset the
 * machine the way Linux's reboot=k does: command 0xfe on port 0x64 pulses
 * the reset line, which stops the VM with VMM_EXIT_RESET.  Status reads
 * say "no data"; other commands are accepted and ignored.
 */
#include <errno.h>
#include <string.h>

#include "vmm/internal.h"

#define I8042_CMD_RESET 0xfe

static void i8042_read(vmm_device_t *d, uint64_t off, void *data, unsigned len)
{
    memset(data, 0, len); /* data port 0; status: output buffer empty */
}

static void i8042_write(vmm_device_t *d, uint64_t off, const void *data, unsigned len)
{
    if (off == 4 && *(const uint8_t *)data == I8042_CMD_RESET)
        vmm__stop(d->vm, VMM_EXIT_RESET, 0, 0, "i8042 reset");
}

static const vmm_device_ops_t i8042_ops = {
    .name = "i8042",
    .read = i8042_read,
    .write = i8042_write,
};

int vmm__i8042_create(vmm_t *vm)
{
    vmm_device_t *d;
    int rc = vmm__device_new(vm, &i8042_ops, NULL, &d);
    if (rc < 0)
        return rc;
    /* 0x60 data and 0x64 command; 0x61 (speaker) is taken by the in-kernel PIT. */
    return vmm__bus_register(vm, VMM_BUS_PIO, VMM_PORT_I8042, 5, d);
}
