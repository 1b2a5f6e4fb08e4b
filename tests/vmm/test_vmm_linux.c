// SPDX-License-Identifier: Apache-2.0
/*
 * A real Linux guest on the VMM.
 *   smoke (suite slow): load the guest kernel (vmlinux, else bzImage, from
 *     guest/kernel/build.sh's cache or THAW_GUEST_KERNEL) and check within a
 *     bounded time that the kernel's banner and our command line appear on
 *     the serial console (earlyprintk, so output starts before the console
 *     driver).  Runs under PVM too, where guest kernel mode is emulated.
 *   agent (suite kvm-hw): boot kernel + initramfs to the agent's hello and
 *     run a command through it.  Needs hardware KVM: on PVM a Linux guest
 *     does not get that far at a useful speed, so it skips there.
 */
#include <dirent.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest/agent_client.h"
#include "testlib.h"
#include "vmm/vmm.h"

static char console[65536];

/* Newest file named `name` under ~/.cache/thaw/kernel/<key>/. */
static int find_cached(const char *name, char *out, size_t len)
{
    const char *home = getenv("HOME");
    char pat[512];
    snprintf(pat, sizeof(pat), "%s/.cache/thaw/kernel/*/%s", home ? home : "/root", name);
    glob_t g;
    if (glob(pat, 0, NULL, &g) != 0)
        return -1;
    time_t best = 0;
    int found = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        struct stat st;
        if (stat(g.gl_pathv[i], &st) == 0 && st.st_size > 0 && st.st_mtime >= best) {
            best = st.st_mtime;
            snprintf(out, len, "%s", g.gl_pathv[i]);
            found = 0;
        }
    }
    globfree(&g);
    return found;
}

static void find_kernel(char *out, size_t len)
{
    const char *env = getenv("THAW_GUEST_KERNEL");
    if (env && access(env, R_OK) == 0) {
        snprintf(out, len, "%s", env);
        return;
    }
    if (find_cached("vmlinux", out, len) == 0 || find_cached("bzImage", out, len) == 0)
        return;
    thaw_test_skip("no guest kernel: no vmlinux or bzImage in ~/.cache/thaw/kernel/ (build it "
                   "with guest/kernel/build.sh) and THAW_GUEST_KERNEL unset");
}

static int smoke(void)
{
    char kernel[512];
    find_kernel(kernel, sizeof(kernel));
    const char *why;
    bool pvm = vmm_host_is_pvm(&why);
    /* noxsave: PVM's emulator stops at xrstor; CX16 is cleared by the VMM. */
    const char *cmdline = pvm ? "console=ttyS0 earlyprintk=serial noxsave panic=-1 thaw.smoke=1"
                              : "console=ttyS0 earlyprintk=serial panic=-1 thaw.smoke=1";
    vmm_config_t c = {.kernel_path = kernel,
                      .cmdline = cmdline,
                      .mem_bytes = 256ull << 20,
                      .vcpus = 1,
                      .agent_console = true};
    thaw_err_t err;
    vmm_t *vm;
    if (vmm_create(&c, &vm, &err) < 0) {
        printf("FAIL: %s\n", err.msg);
        return 1;
    }
    if (vmm_start(vm, &err) < 0) {
        printf("FAIL: %s\n", err.msg);
        vmm_destroy(vm);
        return 1;
    }
    int budget_ms = pvm ? 180000 : 30000;
    int banner = vmm_console_wait_for(vm, "Linux version", budget_ms);
    int cmd = banner && vmm_console_wait_for(vm, "thaw.smoke=1", 30000);
    vmm_console_read(vm, console, sizeof(console), NULL);
    vmm_exit_t ex = {0};
    int stopped = vmm_wait(vm, 0, &ex);
    printf("kernel %s (%s); console:\n%s\n", kernel, pvm ? why : "hardware KVM", console);
    if (stopped == 1)
        printf("guest stopped: %s (%s)\n", vmm_exit_reason_name(ex.reason), ex.detail);
    vmm_destroy(vm);
    if (!banner || !cmd) {
        printf("FAIL: %s did not appear within %d ms\n",
               !banner ? "the kernel banner" : "the command line", budget_ms);
        return 1;
    }
    printf("PASS: banner and command line on the console\n");
    return 0;
}

static int agent(const char *initrd)
{
    const char *why;
    if (vmm_host_is_pvm(&why))
        thaw_test_skip("KVM is PVM here (%s): a Linux guest needs hardware virtualization "
                       "(vmx/svm) to reach the agent",
                       why);
    if (!initrd || access(initrd, R_OK) != 0)
        thaw_test_skip("no initramfs (build the meson target thaw-initramfs)");
    char kernel[512];
    const char *env = getenv("THAW_GUEST_KERNEL");
    if (env)
        snprintf(kernel, sizeof(kernel), "%s", env);
    else if (find_cached("bzImage", kernel, sizeof(kernel)) != 0)
        thaw_test_skip("no bzImage in ~/.cache/thaw/kernel/ (guest/kernel/build.sh)");
    vmm_config_t c = {.kernel_path = kernel,
                      .initrd_path = initrd,
                      .cmdline = "console=ttyS0 quiet panic=-1 reboot=k",
                      .mem_bytes = 256ull << 20,
                      .vcpus = 2,
                      .agent_console = true};
    thaw_err_t err;
    vmm_t *vm = NULL;
    if (vmm_create(&c, &vm, &err) < 0 || vmm_start(vm, &err) < 0) {
        printf("FAIL: %s\n", err.msg);
        vmm_destroy(vm);
        return 1;
    }
    agent_client_t *cl = NULL;
    int fd = dup(vmm_agent_fd(vm));
    int rc = agent_client_new(fd, &cl, &err);
    if (rc == 0)
        rc = agent_client_wait_hello(cl, 60000, NULL, &err);
    agent_exec_result_t res = {0};
    if (rc == 0) {
        const char *argv[] = {"/bin/echo", "hello-from-guest", NULL};
        agent_exec_req_t req = {.argv = argv, .timeout_ms = 10000};
        rc = agent_client_exec(cl, &req, &res, &err);
    }
    bool ok =
        rc == 0 && res.exit_code == 0 && res.out && strstr((char *)res.out, "hello-from-guest");
    if (!ok) {
        vmm_console_read(vm, console, sizeof(console), NULL);
        printf("FAIL: %s\nconsole:\n%s\n", rc ? err.msg : "wrong output", console);
    }
    agent_exec_result_free(&res);
    agent_client_destroy(cl);
    vmm_destroy(vm);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    thaw_test_require_kvm();
    if (argc > 1 && !strcmp(argv[1], "smoke"))
        return smoke();
    if (argc > 1 && !strcmp(argv[1], "agent"))
        return agent(argc > 2 ? argv[2] : NULL);
    thaw_test_skip("usage: test-vmm-linux smoke|agent [initramfs]");
}
