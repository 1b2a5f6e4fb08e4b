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
#include <pthread.h>
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

/* The answer cannot change while we run: decided once (reading
 * /proc/cpuinfo costs milliseconds, too much for every VM creation). */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool is_pvm;
static const char *reason;

static void detect(void)
{
    if (access("/sys/module/kvm_pvm", F_OK) == 0) {
        is_pvm = true;
        reason = "the kvm_pvm module serves /dev/kvm";
    } else if (!cpuinfo_has_hw_virt()) {
        is_pvm = true;
        reason = "the CPU has no vmx/svm flag, so /dev/kvm is not hardware KVM";
    } else {
        reason = "hardware KVM";
    }
}

bool vmm_host_is_pvm(const char **why)
{
    pthread_once(&once, detect);
    if (why)
        *why = reason;
    return is_pvm;
}
