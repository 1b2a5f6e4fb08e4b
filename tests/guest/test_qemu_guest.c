// SPDX-License-Identifier: Apache-2.0
/*
 * Slow suite: boots thaw's microVM guest image (the minimal kernel from
 * guest/kernel/build.sh and the initramfs with thaw-agent as /init) under
 * QEMU's software emulator, `qemu-system-x86_64 -M microvm,acpi=off -accel
 * tcg`, with the agent channel on a virtio-console, and drives the agent
 * through agent_client: hello, exec, put/get, thaw (entropy + clock),
 * quiesce, a timeout kill, and shutdown.  This proves the kernel config, the
 * initramfs and the agent in a real guest, independently of thaw's VMM.
 *
 * The channel is a virtio-console port, but a `virtserialport` named
 * org.thaw.agent (the guest's /dev/vport0p1, which the agent finds by that
 * name in sysfs) rather than a
 * `virtconsole` (/dev/hvc0): QEMU silently drops what a virtconsole writes
 * while the host socket is full (hw/char/virtio-console.c, flush_buf(): it
 * cannot throttle a console port), which loses pieces of large frames;
 * a serial port is throttled instead.  Same device type, same driver, same
 * agent code path.
 *
 * TCG boots are usually well under two seconds, but a boot can hang in early
 * timer set-up: the boot gets a deadline and one retry, and a hang is
 * reported as such with the tail of the serial console.
 *
 * argv[1]: guest/kernel/build.sh (prints the cached kernel, building it if the
 * cache is empty: a few minutes, said on stdout); argv[2]: the initramfs.
 * THAW_GUEST_KERNEL=/path/bzImage uses another kernel.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/clock.h"
#include "guest/agent_client.h"
#include "testlib.h"

#define HELLO_TIMEOUT_MS 60000u /* TCG boots take about a second; a hang never ends */

static struct {
    char kernel[1024];
    const char *initrd;
    char dir[64];
    char sock[96];
    char serial[128];
    pid_t qemu;
    agent_client_t *c;
    agent_hello_t hello;
    double boot_ms;
} g = {.qemu = -1};

static int find_kernel(const char *script)
{
    const char *env = getenv("THAW_GUEST_KERNEL");
    if (env) {
        snprintf(g.kernel, sizeof(g.kernel), "%s", env);
        return access(g.kernel, R_OK);
    }
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "'%s' --path", script);
    FILE *p = popen(cmd, "r");
    if (p && fgets(g.kernel, sizeof(g.kernel), p) && pclose(p) == 0) {
        g.kernel[strcspn(g.kernel, "\n")] = '\0';
        return 0;
    }
    if (p)
        pclose(p);
    printf("# guest kernel not cached: building it now with %s (a few minutes, once per "
           "machine)\n",
           script);
    fflush(stdout);
    uint64_t t0 = thaw_now_ns();
    snprintf(cmd, sizeof(cmd), "'%s'", script);
    p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[1024] = "";
    while (fgets(line, sizeof(line), p))
        snprintf(g.kernel, sizeof(g.kernel), "%s", line);
    if (pclose(p) != 0)
        return -1;
    g.kernel[strcspn(g.kernel, "\n")] = '\0';
    printf("# guest kernel built in %.0f s: %s\n", (double)(thaw_now_ns() - t0) / 1e9, g.kernel);
    return 0;
}

static void print_serial_tail(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "tail -n 25 '%s' | sed 's/^/#   serial: /'", g.serial);
    fflush(stdout);
    if (system(cmd) != 0)
        printf("#   (no serial log)\n");
}

static void stop_qemu(void)
{
    if (g.c) {
        agent_client_destroy(g.c);
        g.c = NULL;
    }
    if (g.qemu > 0) {
        kill(g.qemu, SIGKILL);
        waitpid(g.qemu, NULL, 0);
        g.qemu = -1;
    }
    unlink(g.sock);
}

/* Wait up to ms for qemu to exit by itself; returns its status or -1. */
static int wait_qemu(int ms)
{
    uint64_t end = thaw_now_ns() + (uint64_t)ms * 1000000u;
    int st;
    while (thaw_now_ns() < end) {
        if (waitpid(g.qemu, &st, WNOHANG) == g.qemu) {
            g.qemu = -1;
            return st;
        }
        usleep(20000);
    }
    return -1;
}

/* One boot attempt: 0 with g.c connected and hello received, or -1. */
static int boot_once(int attempt)
{
    unlink(g.sock);
    uint64_t t0 = thaw_now_ns();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(g.serial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        char chardev[256];
        snprintf(chardev, sizeof(chardev), "socket,id=agent,path=%s,server=on,wait=on", g.sock);
        execlp("qemu-system-x86_64", "qemu-system-x86_64", "-M", "microvm,acpi=off", "-accel",
               "tcg", "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
               "-no-reboot", "-kernel", g.kernel, "-initrd", g.initrd, "-append",
               "console=ttyS0 quiet panic=-1 reboot=t", "-serial", "stdio", "-chardev", chardev,
               "-device", "virtio-serial-device", "-device",
               "virtserialport,chardev=agent,name=org.thaw.agent,nr=1", (char *)NULL);
        _exit(127);
    }
    g.qemu = pid;
    /* QEMU waits for us (wait=on) before it starts the guest, so the hello
     * cannot be written into an unconnected console and lost */
    int fd = -1;
    for (int i = 0; i < 500 && fd < 0; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            g.qemu = -1;
            printf("# qemu exited before the guest booted (status 0x%x)\n", st);
            print_serial_tail();
            return -1;
        }
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", g.sock);
        if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0)
            fd = s;
        else {
            close(s);
            usleep(20000);
        }
    }
    if (fd < 0) {
        printf("# qemu never opened the agent socket %s\n", g.sock);
        stop_qemu();
        return -1;
    }
    thaw_err_t err;
    if (agent_client_new(fd, &g.c, &err) < 0) {
        printf("# %s\n", err.msg);
        stop_qemu();
        return -1;
    }
    if (agent_client_wait_hello(g.c, HELLO_TIMEOUT_MS, &g.hello, &err) < 0) {
        printf("# boot attempt %d: guest hang: %s\n", attempt, err.msg);
        print_serial_tail();
        stop_qemu();
        return -1;
    }
    g.boot_ms = (double)(thaw_now_ns() - t0) / 1e6;
    return 0;
}

static int group_setup(void **state)
{
    int ok = -1;
    for (int attempt = 1; attempt <= 2 && ok < 0; attempt++)
        ok = boot_once(attempt);
    if (ok < 0) {
        printf("# the guest did not say hello in two boots (hang or broken image)\n");
        return -1;
    }
    struct stat ks, is;
    stat(g.kernel, &ks);
    stat(g.initrd, &is);
    printf("# boot to hello under TCG: %.0f ms (guest uptime at hello %.0f ms); kernel %s %lld "
           "bytes, initramfs %lld bytes\n",
           g.boot_ms, (double)g.hello.uptime_ns / 1e6, g.hello.kernel, (long long)ks.st_size,
           (long long)is.st_size);
    return 0;
}

static int group_teardown(void **state)
{
    /* with `quiet` the console holds only warnings and the agent's own
     * lines, which is what explains a failure above */
    printf("# serial console:\n");
    print_serial_tail();
    stop_qemu();
    unlink(g.serial);
    rmdir(g.dir);
    return 0;
}

static void test_hello(void **state)
{
    assert_int_equal(g.hello.version, AGENTWIRE_VERSION);
    assert_string_equal(g.hello.mode, "vm");
    assert_true(g.hello.caps & AGENTWIRE_CAP_THAW);
    assert_non_null(strstr(g.hello.kernel, "Linux 6.1"));
    assert_true(strlen(g.hello.boot_id) > 30);
}

static void test_exec(void **state)
{
    agent_exec_result_t r;
    thaw_err_t err;
    agent_exec_req_t req = {
        .argv = (const char *const[]){"sh", "-c",
                                      "echo hi; hostname; cat /proc/1/comm; echo oops >&2; exit 3",
                                      NULL},
        .timeout_ms = 30000};
    assert_int_equal(agent_client_exec(g.c, &req, &r, &err), 0);
    assert_int_equal(r.exit_code, 3);
    assert_string_equal((char *)r.out, "hi\nthaw\ninit\n");
    assert_string_equal((char *)r.err, "oops\n");
    agent_exec_result_free(&r);

    /* PID 1 mounted what commands expect */
    agent_exec_req_t req2 = {
        .argv = (const char *const[]){"sh", "-c", "cut -d' ' -f2,3 /proc/mounts | sort", NULL},
        .timeout_ms = 30000};
    assert_int_equal(agent_client_exec(g.c, &req2, &r, &err), 0);
    assert_non_null(strstr((char *)r.out, "/dev devtmpfs"));
    assert_non_null(strstr((char *)r.out, "/proc proc"));
    assert_non_null(strstr((char *)r.out, "/sys sysfs"));
    assert_non_null(strstr((char *)r.out, "/tmp tmpfs"));
    agent_exec_result_free(&r);
}

static void test_exec_timeout(void **state)
{
    agent_exec_result_t r;
    thaw_err_t err;
    agent_exec_req_t req = {.argv =
                                (const char *const[]){"sh", "-c", "sleep 100 & sleep 100", NULL},
                            .timeout_ms = 500};
    assert_int_equal(agent_client_exec(g.c, &req, &r, &err), 0);
    assert_true(r.timed_out);
    assert_int_equal(r.term_signal, SIGKILL);
    agent_exec_result_free(&r);
}

static void test_put_get(void **state)
{
    thaw_err_t err;
    size_t n = 300000;
    uint8_t *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 31 + (i >> 11));
    assert_int_equal(agent_client_put_file(g.c, "/tmp/blob", data, n, 0600, 30000, &err), 0);
    uint8_t *back = NULL;
    size_t len = 0;
    assert_int_equal(agent_client_get_file(g.c, "/tmp/blob", 1 << 20, &back, &len, 30000, &err), 0);
    assert_int_equal(len, n);
    assert_memory_equal(back, data, n);
    free(back);
    free(data);
    agent_exec_result_t r;
    agent_exec_req_t req = {.argv = (const char *const[]){"stat", "-c", "%a %s", "/tmp/blob", NULL},
                            .timeout_ms = 30000};
    assert_int_equal(agent_client_exec(g.c, &req, &r, &err), 0);
    assert_string_equal((char *)r.out, "600 300000\n");
    agent_exec_result_free(&r);
}

static void test_quiesce_thaw(void **state)
{
    thaw_err_t err;
    assert_int_equal(agent_client_quiesce(g.c, 30000, &err), 0);
    uint8_t ent[64];
    for (size_t i = 0; i < sizeof(ent); i++)
        ent[i] = (uint8_t)(thaw_now_ns() >> (i % 8));
    /* a clock far from the host's, to see that it was applied */
    const uint64_t when = 2000000000ull; /* 2033-05-18 */
    bool applied = false;
    assert_int_equal(
        agent_client_thaw(g.c, ent, sizeof(ent), when * 1000000000ull, 30000, &applied, &err), 0);
    assert_true(applied);
    agent_exec_result_t r;
    agent_exec_req_t req = {.argv = (const char *const[]){"date", "+%s", NULL},
                            .timeout_ms = 30000};
    assert_int_equal(agent_client_exec(g.c, &req, &r, &err), 0);
    unsigned long long t = strtoull((char *)r.out, NULL, 10);
    assert_true(t >= when && t < when + 120);
    agent_exec_result_free(&r);
}

/* Only with the python flavour of the initramfs: the interpreter and its
 * standard library work in the guest. */
static void test_python(void **state)
{
    agent_exec_result_t r;
    thaw_err_t err;
    agent_exec_req_t probe = {.argv = (const char *const[]){"test", "-x", "/usr/bin/python3", NULL},
                              .timeout_ms = 30000};
    assert_int_equal(agent_client_exec(g.c, &probe, &r, &err), 0);
    int have = r.exit_code == 0;
    agent_exec_result_free(&r);
    if (!have)
        skip(); /* the base image has no python */
    agent_exec_req_t req = {
        .argv = (const char *const[]){"python3", "-c",
                                      "import json, re, hashlib; "
                                      "print(json.dumps({'ok': bool(re.match('a', 'abc'))}))",
                                      NULL},
        .timeout_ms = 60000};
    if (agent_client_exec(g.c, &req, &r, &err) < 0)
        fail_msg("%s", err.msg);
    if (r.exit_code != 0)
        fail_msg("python3 failed: %s", (char *)r.err);
    assert_string_equal((char *)r.out, "{\"ok\": true}\n");
    printf(
        "# python3 -c 'import json, re, hashlib' in the guest: %.0f ms wall, %llu KiB peak RSS\n",
        (double)r.wall_us / 1e3, (unsigned long long)r.max_rss_kb);
    agent_exec_result_free(&r);
}

static void test_shutdown(void **state)
{
    thaw_err_t err;
    assert_int_equal(agent_client_shutdown(g.c, 30000, &err), 0);
    /* the agent resets the guest; -no-reboot turns that into QEMU exiting */
    int st = wait_qemu(30000);
    assert_true(st != -1);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        thaw_test_skip("usage: test-qemu-guest KERNEL_BUILD_SCRIPT INITRAMFS (run by meson)");
    if (system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0)
        thaw_test_skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)");
    if (!getenv("THAW_GUEST_KERNEL") && access("/usr/src/linux-source-6.1.tar.xz", R_OK) != 0) {
        char cmd[1100];
        snprintf(cmd, sizeof(cmd), "'%s' --path >/dev/null 2>&1", argv[1]);
        if (system(cmd) != 0)
            thaw_test_skip("no guest kernel: linux-source-6.1 is not installed and none is "
                           "cached");
    }
    if (find_kernel(argv[1]) < 0)
        fail_msg("could not build or find the guest kernel (see the output above)");
    g.initrd = argv[2];
    snprintf(g.dir, sizeof(g.dir), "/tmp/thaw-qemu-XXXXXX");
    if (!mkdtemp(g.dir))
        fail_msg("mkdtemp: %s", strerror(errno));
    snprintf(g.sock, sizeof(g.sock), "%s/agent.sock", g.dir);
    snprintf(g.serial, sizeof(g.serial), "%s/serial.log", g.dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello),        cmocka_unit_test(test_exec),
        cmocka_unit_test(test_exec_timeout), cmocka_unit_test(test_put_get),
        cmocka_unit_test(test_quiesce_thaw), cmocka_unit_test(test_python),
        cmocka_unit_test(test_shutdown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
