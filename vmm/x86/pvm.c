// SPDX-License-Identifier: Apache-2.0
/*
 * Is /dev/kvm PVM?  PVM (pagetable-based virtual machine) is a KVM backend
 * that needs no hardware virtualization: guest user mode runs natively and
 * guest kernel mode is emulated, so a Linux guest crawls and some
 * instructions (cmpxchg16b, xrstor, int N) are not emulated.  Two signs, either
 * is enough: the kvm_pvm module is loaded (/sys/module/kvm_pvm exists), or the
 * CPU shows neither vmx nor svm in /proc/cpuinfo (then no hardware KVM
 * backend can be what serves /dev/kvm).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmm/vmm.h"

static bool cpuinfo_has_hw_virt(void)
{
    FILE *f = fopen("/proc/cpuinfo", "re");
    if (!f)
        return false;
    char line[8192];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "flags", 5) != 0)
            continue;
        for (char *tok = strtok(line, " \t\n"); tok; tok = strtok(NULL, " \t\n"))
            if (!strcmp(tok, "vmx") || !strcmp(tok, "svm"))
                found = true;
        break;
    }
    fclose(f);
    return found;
}

bool vmm_host_is_pvm(const char **why)
{
    if (access("/sys/module/kvm_pvm", F_OK) == 0) {
        if (why)
            *why = "the kvm_pvm module serves /dev/kvm";
        return true;
    }
    if (!cpuinfo_has_hw_virt()) {
        if (why)
            *why = "the CPU has no vmx/svm flag, so /dev/kvm is not hardware KVM";
        return true;
    }
    if (why)
        *why = "hardware KVM";
    return false;
}
