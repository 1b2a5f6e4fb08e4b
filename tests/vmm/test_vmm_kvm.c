// SPDX-License-Identifier: Apache-2.0
/*
 * vmm/ on real KVM (suite kvm) with the freestanding test guest: boot to the
 * banner with the e820 map and command line checked by the guest, LAPIC
 * timer interrupts, AVX state across interrupts, 1 MiB through the
 * virtio-console in both directions, virtio-blk reads/writes through
 * io_uring, i8042 reset, triple fault, two vCPUs, a hostile guest, bad
 * kernels, and teardown that leaks no descriptors or threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest/compute.h"
#include "helpers.h"
#include "testlib.h"

const char *guest_path;
static char console[65536];

/* Wait for the guest to stop and return the exit; prints the console on failure. */
static vmm_exit_t run_to_exit(vmm_t *vm, int timeout_ms)
{
    vmm_exit_t ex = {0};
    int rc = vmm_wait(vm, timeout_ms, &ex);
    vmm_console_read(vm, console, sizeof(console), NULL);
    if (rc != 1)
        printf("guest did not stop within %d ms; console:\n%s\n", timeout_ms, console);
    assert_int_equal(rc, 1);
    if (ex.reason != VMM_EXIT_POWEROFF || ex.code != 0)
        printf("exit %s code %u (%s); console:\n%s\n", vmm_exit_reason_name(ex.reason), ex.code,
               ex.detail, console);
    return ex;
}

/* Run vm to its exit, which must be a clean poweroff with needle on the console. */
static void expect_poweroff(vmm_t *vm, int timeout_ms, const char *needle)
{
    vmm_exit_t ex = run_to_exit(vm, timeout_ms);
    assert_int_equal(ex.reason, VMM_EXIT_POWEROFF);
    assert_int_equal(ex.code, 0);
    assert_non_null(strstr(console, needle));
}

/* Boot the test guest's `test` on one vCPU; it must stop with reason. */
static void expect_stop(const char *test, vmm_exit_reason_t reason)
{
    vmm_t *vm = boot_guest(test, 1, 0, NULL);
    assert_non_null(vm);
    vmm_exit_t ex = {0};
    assert_int_equal(vmm_wait(vm, 20000, &ex), 1);
    assert_int_equal(ex.reason, reason);
    vmm_destroy(vm);
}

static void test_boot_banner(void **state)
{
    vmm_t *vm =
        boot_guest("console=ttyS0 thaw.test=banner thaw.marker=xyzzy", 1, 64ull << 20, NULL);
    assert_non_null(vm);
    expect_poweroff(vm, 20000, "thaw-test-guest: hello from ring 3");
    assert_non_null(strstr(console, "cmdline: console=ttyS0 thaw.test=banner thaw.marker=xyzzy"));
    /* e820 RAM: base memory below the MP table plus everything from 1 MiB. */
    char want[64];
    snprintf(want, sizeof(want), "ram=%lluKiB", ((64ull << 20) - 0x60400) >> 10);
    assert_non_null(strstr(console, want));
    vmm_destroy(vm);
}

static void test_timer_interrupts(void **state)
{
    vmm_t *vm = boot_guest("thaw.test=timer", 1, 0, NULL);
    assert_non_null(vm);
    expect_poweroff(vm, 20000, "timer ok ticks=");
    vmm_destroy(vm);
}

static void test_avx_compute_across_interrupts(void **state)
{
    const unsigned long long seed = 12345, iters = 3000000;
    char cmd[128], want[64];
    snprintf(cmd, sizeof(cmd), "thaw.test=compute thaw.seed=%llu thaw.iters=%llu", seed, iters);
    vmm_t *vm = boot_guest(cmd, 1, 0, NULL);
    assert_non_null(vm);
    vmm_exit_t ex = run_to_exit(vm, 30000);
    assert_int_equal(ex.reason, VMM_EXIT_POWEROFF);
    snprintf(want, sizeof(want), "compute result=%llx ", thaw_compute(seed, iters));
    if (!strstr(console, want))
        printf("want '%s'; console:\n%s\n", want, console);
    assert_non_null(strstr(console, want));
    vmm_destroy(vm);
}

typedef struct {
    int fd;
    const uint8_t *buf;
    size_t len;
    int err;
} writer_t;

static void *writer(void *arg)
{
    writer_t *w = arg;
    size_t off = 0;
    while (off < w->len) {
        ssize_t n = write(w->fd, w->buf + off, w->len - off > 65536 ? 65536 : w->len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            w->err = errno;
            return NULL;
        }
        off += (size_t)n;
    }
    return NULL;
}

static void test_console_echo_1mib(void **state)
{
    const size_t len = 1u << 20;
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "thaw.test=echo thaw.bytes=%zu", len);
    vmm_t *vm = boot_guest(cmd, 1, 0, NULL);
    assert_non_null(vm);
    int fd = vmm_agent_fd(vm);
    assert_true(fd >= 0);
    uint8_t *out = malloc(len), *in = malloc(len);
    assert_non_null(out);
    assert_non_null(in);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        out[i] = (uint8_t)x;
    }
    writer_t w = {.fd = fd, .buf = out, .len = len};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, writer, &w), 0);
    size_t got = 0;
    while (got < len) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20000) != 1)
            break; /* stuck: fail below rather than hang */
        ssize_t n = read(fd, in + got, len - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    pthread_join(t, NULL);
    assert_int_equal(w.err, 0);
    assert_int_equal(got, len);
    assert_memory_equal(in, out, len);
    expect_poweroff(vm, 20000, "echo done bytes=1048576");
    free(in);
    free(out);
    vmm_destroy(vm);
}

static void test_blk_io_uring(void **state)
{
    char path[] = "/tmp/thaw-vmm-disk-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static uint8_t img[1 << 20];
    for (size_t i = 0; i < sizeof(img); i++)
        img[i] = (uint8_t)((i / 512) * 7 + i % 512);
    assert_int_equal(write(fd, img, sizeof(img)), (ssize_t)sizeof(img));
    vmm_t *vm = boot_guest("thaw.test=blk", 1, 0, path);
    assert_non_null(vm);
    expect_poweroff(vm, 20000, "blk capacity=2048 bad=0 write=0 flush=0 oob=1");
    uint8_t sec[512];
    assert_int_equal(pread(fd, sec, 512, 100 * 512), 512);
    for (int i = 0; i < 512; i++)
        assert_int_equal(sec[i], 0x5a);
    vmm_destroy(vm);
    close(fd);
    unlink(path);
}

static void test_i8042_reset(void **state)
{
    expect_stop("thaw.test=reset", VMM_EXIT_RESET);
}

static void test_triple_fault(void **state)
{
    expect_stop("thaw.test=triple", VMM_EXIT_TRIPLE_FAULT);
}

static void test_two_vcpus(void **state)
{
    vmm_t *vm = boot_guest("thaw.test=smp", 2, 0, NULL);
    assert_non_null(vm);
    expect_poweroff(vm, 20000, "smp ap_alive=2");
    vmm_destroy(vm);
}

static void test_hostile_guest(void **state)
{
    vmm_t *vm = boot_guest("thaw.test=hostile", 1, 0, NULL);
    assert_non_null(vm);
    /* The host end echoes nothing here: the guest's final echo needs data. */
    assert_true(vmm_console_wait_for(vm, "echo ready", 30000));
    static uint8_t buf[4096];
    memset(buf, 0xab, sizeof(buf));
    assert_int_equal(write(vmm_agent_fd(vm), buf, sizeof(buf)), (ssize_t)sizeof(buf));
    vmm_exit_t ex = run_to_exit(vm, 30000);
    assert_int_equal(ex.reason, VMM_EXIT_POWEROFF);
    assert_int_equal(ex.code, 0);
    /* The guest checked that the device refused each attack (NEEDS_RESET). */
    assert_non_null(strstr(console, "hostile refused=7/7"));
    vmm_stats_t st;
    vmm_get_stats(vm, &st);
    assert_true(st.device_errors >= 7);
    static uint8_t back[4096];
    size_t got = 0;
    while (got < sizeof(back)) {
        ssize_t n = read(vmm_agent_fd(vm), back + got, sizeof(back) - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    assert_int_equal(got, sizeof(back));
    assert_memory_equal(back, buf, sizeof(buf));
    vmm_destroy(vm);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void expect_create_error(const char *kernel, const char *initrd, uint64_t mem,
                                const char *needle)
{
    vmm_config_t c = {
        .kernel_path = kernel, .initrd_path = initrd, .mem_bytes = mem, .vcpus = 1, .cmdline = "x"};
    thaw_err_t err;
    vmm_t *vm = (vmm_t *)1;
    int rc = vmm_create(&c, &vm, &err);
    if (rc >= 0 || !strstr(err.msg, needle))
        printf("rc=%d msg='%s' want '%s'\n", rc, err.msg, needle);
    assert_true(rc < 0);
    assert_null(vm);
    assert_non_null(strstr(err.msg, needle));
}

static void test_bad_kernels(void **state)
{
    char k[64], rd[64]; /* per process: another tree's copy may run beside it */
    snprintf(k, sizeof(k), "/tmp/thaw-vmm-badkernel-%d", (int)getpid());
    snprintf(rd, sizeof(rd), "/tmp/thaw-vmm-badinitrd-%d", (int)getpid());
    static uint8_t buf[8192];
    memset(buf, 0, sizeof(buf));
    write_file(k, "junk", 4);
    expect_create_error(k, NULL, 64 << 20, "bad magic");
    buf[0x1fe] = 0x55, buf[0x1ff] = 0xaa;
    write_file(k, buf, sizeof(buf));
    expect_create_error(k, NULL, 64 << 20, "setup header: bad magic");
    memcpy(buf + 0x202, "HdrS", 4);
    buf[0x206] = 0x0b, buf[0x207] = 0x02; /* 2.11 */
    write_file(k, buf, sizeof(buf));
    expect_create_error(k, NULL, 64 << 20, "too old");
    buf[0x206] = 0x0f;
    buf[0x236] = 1;  /* XLF_KERNEL_64 */
    buf[0x1f1] = 30; /* setup larger than the file */
    write_file(k, buf, sizeof(buf));
    expect_create_error(k, NULL, 64 << 20, "truncated");
    buf[0x1f1] = 4;
    buf[0x260] = 0, buf[0x261] = 0, buf[0x262] = 0, buf[0x263] = 0x10; /* init_size 256 MiB */
    write_file(k, buf, sizeof(buf));
    expect_create_error(k, NULL, 64 << 20, "more than guest memory");
    /* A truncated ELF (the test guest cut short). */
    int gfd = open(guest_path, O_RDONLY);
    assert_true(gfd >= 0);
    ssize_t n = read(gfd, buf, sizeof(buf));
    close(gfd);
    assert_int_equal(n, (ssize_t)sizeof(buf));
    write_file(k, buf, 200); /* program headers cut */
    expect_create_error(k, NULL, 64 << 20, "ELF: program headers out of the file");
    write_file(k, buf, 0x1100); /* first segment cut */
    expect_create_error(k, NULL, 64 << 20, "ELF: segment 0: truncated");
    /* An initrd too big for memory. */
    int fd = open(rd, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 40 << 20), 0);
    close(fd);
    expect_create_error(guest_path, rd, 32 << 20, "initrd");
    expect_create_error("/nonexistent/kernel", NULL, 64 << 20, "/nonexistent/kernel");
    expect_create_error(guest_path, NULL, 3 << 20, "memory size");
    unlink(k);
    unlink(rd);
}

static void test_teardown_leaks_nothing(void **state)
{
    int fds = thaw_test_count_fds();
    thaw_test_threads_t threads;
    thaw_test_threads_now(&threads);
    for (int i = 0; i < 3; i++) {
        /* running (destroyed mid-computation), finished, and never started */
        vmm_t *a = boot_guest("thaw.test=compute thaw.iters=100000000000", 2, 0, NULL);
        assert_non_null(a);
        assert_true(vmm_console_wait_for(a, "hello", 20000));
        vmm_t *b = boot_guest("thaw.test=banner", 1, 0, NULL);
        assert_non_null(b);
        assert_int_equal(vmm_wait(b, 20000, NULL), 1);
        vmm_config_t c = {
            .kernel_path = guest_path, .mem_bytes = 32 << 20, .vcpus = 4, .agent_console = true};
        thaw_err_t err;
        vmm_t *cvm;
        assert_int_equal(vmm_create(&c, &cvm, &err), 0);
        assert_int_equal(vmm_pause(a), 0);
        assert_int_equal(vmm_resume(a), 0);
        assert_int_equal(vmm_pause(a), 0); /* destroyed while paused */
        vmm_destroy(a);
        vmm_destroy(b);
        vmm_destroy(cvm);
    }
    assert_int_equal(thaw_test_count_fds(), fds);
    assert_int_equal(thaw_test_threads_new(&threads, 0), 0);
}

int main(int argc, char **argv)
{
    thaw_test_require_kvm();
    if (argc < 2)
        thaw_test_skip("usage: test-vmm-kvm <test guest ELF>");
    guest_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boot_banner),
        cmocka_unit_test(test_timer_interrupts),
        cmocka_unit_test(test_avx_compute_across_interrupts),
        cmocka_unit_test(test_console_echo_1mib),
        cmocka_unit_test(test_blk_io_uring),
        cmocka_unit_test(test_i8042_reset),
        cmocka_unit_test(test_triple_fault),
        cmocka_unit_test(test_two_vcpus),
        cmocka_unit_test(test_hostile_guest),
        cmocka_unit_test(test_bad_kernels),
        cmocka_unit_test(test_teardown_leaks_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
