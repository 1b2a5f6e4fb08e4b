/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the vmm test binaries and vmmbench: where the
 * freestanding test guest is (argv[1], set by meson), and booting it with a
 * scenario on the command line.
 */
#ifndef THAW_TESTS_VMM_HELPERS_H
#define THAW_TESTS_VMM_HELPERS_H

#include <stdio.h>
#include <string.h>

#include "vmm/vmm.h"

extern const char *guest_path;

/* Create and start a test-guest VM; NULL on failure (message printed). */
static inline vmm_t *boot_guest(const char *cmdline, unsigned vcpus, uint64_t mem, const char *disk)
{
    vmm_config_t c = {
        .kernel_path = guest_path,
        .cmdline = cmdline,
        .mem_bytes = mem ? mem : 64ull << 20,
        .vcpus = vcpus ? vcpus : 1,
        .agent_console = true,
        .disk_path = disk,
    };
    thaw_err_t err;
    vmm_t *vm = NULL;
    if (vmm_create(&c, &vm, &err) < 0) {
        printf("vmm_create: %s\n", err.msg);
        return NULL;
    }
    if (vmm_start(vm, &err) < 0) {
        printf("vmm_start: %s\n", err.msg);
        vmm_destroy(vm);
        return NULL;
    }
    return vm;
}

#endif
