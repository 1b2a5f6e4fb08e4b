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
 *   snapshot (suite kvm-hw): boot, warm, quiesce, snapshot, restore two
 *     clones (shared engine), thaw each (fresh entropy and clock), exec in
 *     both: they read different random bytes and the current time.
 */
#include <dirent.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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
    /* ours, including the device the VMM declared */
    int cmd = banner &&
              vmm_console_wait_for(vm, "thaw.smoke=1 virtio_mmio.device=4K@0xd0000000:5", 30000);
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

static bool exec_out(agent_client_t *cl, const char *sh, char *out, size_t len, thaw_err_t *err)
{
    const char *argv[] = {"/bin/sh", "-c", sh, NULL};
    agent_exec_req_t req = {.argv = argv, .timeout_ms = 10000};
    agent_exec_result_t res = {0};
    int rc = agent_client_exec(cl, &req, &res, err);
    bool ok = rc == 0 && res.exit_code == 0 && res.out;
    if (ok)
        snprintf(out, len, "%s", (char *)res.out);
    agent_exec_result_free(&res);
    return ok;
}

static void require_hw_linux(const char *initrd, char *kernel, size_t klen)
{
    const char *why;
    if (vmm_host_is_pvm(&why))
        thaw_test_skip("KVM is PVM here (%s): a Linux guest needs hardware virtualization "
                       "(vmx/svm) to reach the agent",
                       why);
    if (!initrd || access(initrd, R_OK) != 0)
        thaw_test_skip("no initramfs (build the meson target thaw-initramfs)");
    const char *env = getenv("THAW_GUEST_KERNEL");
    if (env)
        snprintf(kernel, klen, "%s", env);
    else if (find_cached("bzImage", kernel, klen) != 0)
        thaw_test_skip("no bzImage in ~/.cache/thaw/kernel/ (guest/kernel/build.sh)");
}

/* A Linux guest with the agent on its console: 256 MiB, quiet, and a
 * panic or reboot ends the VM instead of looping. */
static vmm_config_t linux_config(const char *kernel, const char *initrd, unsigned vcpus)
{
    return (vmm_config_t){.kernel_path = kernel,
                          .initrd_path = initrd,
                          .cmdline = "console=ttyS0 quiet panic=-1 reboot=k",
                          .mem_bytes = 256ull << 20,
                          .vcpus = vcpus,
                          .agent_console = true};
}

static int snapshot_clones(const char *initrd)
{
    char kernel[512], dir[] = "/tmp/thaw-vmm-linux-XXXXXX";
    require_hw_linux(initrd, kernel, sizeof(kernel));
    if (!mkdtemp(dir))
        return 1;
    vmm_config_t c = linux_config(kernel, initrd, 1);
    thaw_err_t err;
    vmm_t *vm = NULL;
    agent_client_t *cl = NULL;
    int rc = vmm_create(&c, &vm, &err);
    if (rc == 0)
        rc = vmm_start(vm, &err);
    if (rc == 0)
        rc = agent_client_new(dup(vmm_agent_fd(vm)), &cl, &err);
    if (rc == 0)
        rc = agent_client_wait_hello(cl, 60000, NULL, &err);
    char out[256];
    if (rc == 0 && !exec_out(cl, "echo warm", out, sizeof(out), &err))
        rc = -1;
    if (rc == 0)
        rc = agent_client_quiesce(cl, 10000, &err);
    char snapdir[600];
    snprintf(snapdir, sizeof(snapdir), "%s/snap", dir);
    if (rc == 0)
        rc = vmm_snapshot(vm, snapdir, NULL, NULL, &err);
    agent_client_destroy(cl);
    vmm_destroy(vm);
    if (rc != 0) {
        printf("FAIL: %s\n", err.msg);
        return 1;
    }
    snap_t *snap;
    if (snap_open(snapdir, &snap, &err) < 0) {
        printf("FAIL: %s\n", err.msg);
        return 1;
    }
    char rnd[2][256] = {"", ""};
    bool ok = true;
    for (int i = 0; i < 2 && ok; i++) {
        vmm_restore_opts_t o = {.engine = SNAP_ENGINE_SHARED};
        vmm_t *r = NULL;
        agent_client_t *rc_cl = NULL;
        ok = vmm_restore(snap, &o, &r, NULL, &err) == 0 && vmm_start(r, &err) == 0 &&
             agent_client_new(dup(vmm_agent_fd(r)), &rc_cl, &err) == 0;
        uint8_t entropy[64];
        FILE *ur = fopen("/dev/urandom", "r");
        ok = ok && ur && fread(entropy, 1, sizeof(entropy), ur) == sizeof(entropy);
        if (ur)
            fclose(ur);
        bool applied = false;
        ok = ok &&
             agent_client_thaw(rc_cl, entropy, sizeof(entropy), 0, 10000, &applied, &err) == 0 &&
             applied;
        ok = ok &&
             exec_out(rc_cl, "head -c 16 /dev/urandom | od -An -tx1", rnd[i], sizeof(rnd[i]), &err);
        ok = ok && exec_out(rc_cl, "date +%s", out, sizeof(out), &err);
        if (ok) {
            long long g = atoll(out), h = (long long)time(NULL);
            ok = g >= h - 5 && g <= h + 5;
            if (!ok)
                printf("FAIL: clone %d clock %lld, host %lld\n", i, g, h);
        } else {
            printf("FAIL: clone %d: %s\n", i, err.msg);
        }
        agent_client_destroy(rc_cl);
        vmm_destroy(r);
    }
    snap_close(snap);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("could not remove %s\n", dir);
    if (ok && !strcmp(rnd[0], rnd[1])) {
        printf("FAIL: both clones read the same random bytes: %s\n", rnd[0]);
        ok = false;
    }
    return ok ? 0 : 1;
}

static int agent(const char *initrd)
{
    char kernel[512];
    require_hw_linux(initrd, kernel, sizeof(kernel));
    vmm_config_t c = linux_config(kernel, initrd, 2);
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
    if (argc > 1 && !strcmp(argv[1], "snapshot"))
        return snapshot_clones(argc > 2 ? argv[2] : NULL);
    thaw_test_skip("usage: test-vmm-linux smoke|agent [initramfs]");
}
