// SPDX-License-Identifier: Apache-2.0
/*
 * vmmbench: the VMM's costs with the freestanding test guest.
 *   create-to-first-instruction: vmm_create() + vmm_start() until vCPU 0's
 *     first exit (the guest's first instruction is a port write), p50/p99;
 *     also vmm_create() alone and KVM_CREATE_VM + one vCPU for reference.
 *   PIO and MMIO exit round trips: a guest loop of N port writes (to an
 *     unclaimed port) or N MMIO reads (of a virtio register, served in
 *     user space), minus the same run with N = 0, divided by N.
 *   virtio-console throughput: host -> guest -> host echo of 64 MiB.
 * vmmbench restore [MiB...]: for 128 MiB, 512 MiB and 2 GiB test-guest VMs
 *   (or the sizes given; memory above 16 MiB filled by the guest) and each
 *   engine: snapshot write time,
 *   size and rate; restore latency p50/p99 with its breakdown (memory
 *   attach, VM and vCPU creation, state load, devices, start to KVM_RUN);
 *   and time to the guest's first response (one byte echoed).
 * Prints numbers; asserts nothing about them.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/hist.h"
#include "helpers.h"
#include "testlib.h"

const char *guest_path;

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void bench_kvm_floor(int n)
{
    thaw_hist_t h;
    thaw_hist_init(&h);
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    for (int i = 0; i < n; i++) {
        uint64_t t0 = thaw_now_ns();
        int vm = ioctl(kvm, KVM_CREATE_VM, 0);
        int cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
        thaw_hist_add(&h, thaw_now_ns() - t0);
        close(cpu);
        close(vm);
    }
    close(kvm);
    printf("kvm_create_vm_plus_vcpu       p50 %.3f ms  p99 %.3f ms  (n=%d)\n",
           ms(thaw_hist_percentile(&h, 50)), ms(thaw_hist_percentile(&h, 99)), n);
}

static void bench_first_instruction(int n)
{
    thaw_hist_t total, create;
    thaw_hist_init(&total);
    thaw_hist_init(&create);
    for (int i = 0; i < n; i++) {
        vmm_t *vm = boot_guest("thaw.test=banner", 1, 64ull << 20, NULL);
        if (!vm)
            exit(1);
        vmm_wait(vm, 10000, NULL);
        /* The VMM timestamps vCPU 0's first exit (the guest's first instruction). */
        vmm_stats_t st;
        vmm_get_stats(vm, &st);
        thaw_hist_add(&total, st.create_ns + st.first_exit_ns);
        thaw_hist_add(&create, st.create_ns);
        vmm_destroy(vm);
    }
    printf("create_to_first_instruction   p50 %.3f ms  p99 %.3f ms  (n=%d, 64 MiB, 1 vCPU)\n",
           ms(thaw_hist_percentile(&total, 50)), ms(thaw_hist_percentile(&total, 99)), n);
    printf("  of which vmm_create         p50 %.3f ms  p99 %.3f ms\n",
           ms(thaw_hist_percentile(&create, 50)), ms(thaw_hist_percentile(&create, 99)));
}

/* Wall time of a guest run to poweroff. */
static uint64_t run_ns(const char *cmd)
{
    uint64_t t0 = thaw_now_ns();
    vmm_t *vm = boot_guest(cmd, 1, 64ull << 20, NULL);
    if (!vm)
        exit(1);
    vmm_exit_t ex;
    if (vmm_wait(vm, 120000, &ex) != 1 || ex.code != 0) {
        printf("guest run '%s' failed\n", cmd);
        exit(1);
    }
    uint64_t t = thaw_now_ns() - t0;
    vmm_destroy(vm);
    return t;
}

static void bench_exits(const char *name, const char *test, long n)
{
    char cmd[128];
    uint64_t best0 = UINT64_MAX, bestn = UINT64_MAX;
    for (int r = 0; r < 3; r++) {
        snprintf(cmd, sizeof(cmd), "thaw.test=%s thaw.n=0", test);
        uint64_t a = run_ns(cmd);
        snprintf(cmd, sizeof(cmd), "thaw.test=%s thaw.n=%ld", test, n);
        uint64_t b = run_ns(cmd);
        best0 = a < best0 ? a : best0;
        bestn = b < bestn ? b : bestn;
    }
    double per = bestn > best0 ? (double)(bestn - best0) / (double)n : 0;
    printf("%-29s %.2f us per exit  (n=%ld, best of 3, includes the emulated guest loop)\n", name,
           per / 1000.0, n);
}

typedef struct {
    int fd;
    size_t len;
} wr_t;

static void *writer(void *arg)
{
    wr_t *w = arg;
    static char buf[65536];
    memset(buf, 0x42, sizeof(buf));
    size_t off = 0;
    while (off < w->len) {
        ssize_t n = write(w->fd, buf, w->len - off < sizeof(buf) ? w->len - off : sizeof(buf));
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    return NULL;
}

static void bench_console(size_t len)
{
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "thaw.test=echo thaw.bytes=%zu", len);
    vmm_t *vm = boot_guest(cmd, 1, 64ull << 20, NULL);
    if (!vm || !vmm_console_wait_for(vm, "echo ready", 20000))
        exit(1);
    int fd = vmm_agent_fd(vm);
    wr_t w = {.fd = fd, .len = len};
    pthread_t t;
    uint64_t t0 = thaw_now_ns();
    pthread_create(&t, NULL, writer, &w);
    static char buf[65536];
    size_t got = 0;
    while (got < len) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20000) != 1)
            break;
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    uint64_t dt = thaw_now_ns() - t0;
    pthread_join(t, NULL);
    printf("virtio_console_echo           %.1f MiB/s each way  (%zu MiB echoed in %.1f ms)\n",
           (double)got / (1 << 20) / ((double)dt / 1e9), got >> 20, ms(dt));
    vmm_wait(vm, 10000, NULL);
    vmm_destroy(vm);
}

static uint64_t echo_one(vmm_t *vm)
{
    uint64_t t0 = thaw_now_ns();
    int fd = vmm_agent_fd(vm);
    char b = 'x';
    if (write(fd, &b, 1) != 1)
        return 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 30000) != 1 || read(fd, &b, 1) != 1)
        return 0;
    return thaw_now_ns() - t0;
}

static void bench_restore_size(uint64_t mem_mib, const char *dir)
{
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "thaw.test=idle thaw.touch=%llu", (unsigned long long)mem_mib - 32);
    vmm_t *vm = boot_guest(cmd, 1, mem_mib << 20, NULL);
    if (!vm || !vmm_console_wait_for(vm, "echo ready", 120000)) {
        printf("restore bench: guest of %llu MiB did not get ready\n", (unsigned long long)mem_mib);
        exit(1);
    }
    thaw_err_t err;
    snap_write_stats_t ws;
    snap_write_opts_t wo = {.threads = 2};
    if (vmm_snapshot(vm, dir, &wo, &ws, &err) < 0) {
        printf("vmm_snapshot: %s\n", err.msg);
        exit(1);
    }
    vmm_destroy(vm);
    double nonzero = (double)(ws.chunks_raw + ws.chunks_lz4) * 65536.0;
    printf("\n%llu MiB VM: snapshot %.1f ms, %.1f MiB on disk (%.1f MiB non-zero memory, "
           "%.2f GiB/s)\n",
           (unsigned long long)mem_mib, ms(ws.total_ns), (double)ws.bytes_out / (1 << 20),
           nonzero / (1 << 20), nonzero / (1 << 30) / ((double)ws.total_ns / 1e9));
    snap_t *snap;
    if (snap_open(dir, &snap, &err) < 0) {
        printf("snap_open: %s\n", err.msg);
        exit(1);
    }
    const snap_engine_t engines[] = {SNAP_ENGINE_EAGER, SNAP_ENGINE_LAZY, SNAP_ENGINE_SHARED};
    for (unsigned e = 0; e < 3; e++) {
        /* eager reads everything per restore: fewer runs at 2 GiB */
        int n = engines[e] == SNAP_ENGINE_EAGER && mem_mib > 512 ? 20 : 100;
        thaw_hist_t total, attach, create, state, devs, run, resp;
        thaw_hist_t *all[] = {&total, &attach, &create, &state, &devs, &run, &resp};
        for (unsigned i = 0; i < 7; i++)
            thaw_hist_init(all[i]);
        if (engines[e] == SNAP_ENGINE_SHARED) { /* the base is built once per snapshot */
            snap_base_t *b;
            if (snap_base_get(snap, &b, &err) == 0) {
                printf("  shared base built in %.1f ms\n", ms(snap_base_build_ns(b)));
                snap_base_put(b);
            }
        }
        for (int i = 0; i < n; i++) {
            vmm_restore_opts_t o = {.engine = engines[e]};
            vmm_restore_timing_t t;
            vmm_t *r;
            if (vmm_restore(snap, &o, &r, &t, &err) < 0 || vmm_start(r, &err) < 0) {
                printf("restore: %s\n", err.msg);
                exit(1);
            }
            uint64_t rsp = echo_one(r);
            vmm_stats_t st;
            vmm_get_stats(r, &st);
            thaw_hist_add(&total, t.total_ns + st.first_run_ns);
            thaw_hist_add(&attach, t.mem_attach_ns);
            thaw_hist_add(&create, t.vm_create_ns);
            thaw_hist_add(&state, t.state_ns);
            thaw_hist_add(&devs, t.devices_ns);
            thaw_hist_add(&run, st.first_run_ns);
            thaw_hist_add(&resp, rsp);
            vmm_destroy(r);
        }
        printf("  %-6s restore to first instruction p50 %.3f ms p99 %.3f ms (n=%d); p50 "
               "breakdown: attach %.3f, vm+vcpus+devices %.3f, state %.3f, device state %.3f, "
               "start to KVM_RUN %.3f; first response p50 %.3f ms p99 %.3f ms\n",
               snap_engine_name(engines[e]), ms(thaw_hist_percentile(&total, 50)),
               ms(thaw_hist_percentile(&total, 99)), n, ms(thaw_hist_percentile(&attach, 50)),
               ms(thaw_hist_percentile(&create, 50)), ms(thaw_hist_percentile(&state, 50)),
               ms(thaw_hist_percentile(&devs, 50)), ms(thaw_hist_percentile(&run, 50)),
               ms(thaw_hist_percentile(&resp, 50)), ms(thaw_hist_percentile(&resp, 99)));
    }
    snap_close(snap);
}

static char bench_dir[] = "/tmp/vmmbench-XXXXXX";

/* Also on the exit(1) paths: a failed run leaves no snapshots behind. */
static void remove_bench_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", bench_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", bench_dir);
}

static void bench_restore(int nsizes, char **sizes_arg)
{
    char *dir = bench_dir;
    if (!mkdtemp(dir)) {
        printf("mkdtemp failed\n");
        exit(1);
    }
    atexit(remove_bench_dir);
    uint64_t sizes[8] = {128, 512, 2048};
    unsigned n = 3;
    if (nsizes > 0) { /* sizes in MiB from the command line */
        for (n = 0; n < (unsigned)nsizes && n < 8; n++)
            sizes[n] = strtoull(sizes_arg[n], NULL, 10);
    }
    for (unsigned i = 0; i < n; i++) {
        char sub[64];
        snprintf(sub, sizeof(sub), "%s/vm%llu", dir, (unsigned long long)sizes[i]);
        bench_restore_size(sizes[i], sub);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", sub);
        if (system(cmd) != 0)
            printf("could not remove %s\n", sub);
    }
}

int main(int argc, char **argv)
{
    thaw_test_require_kvm();
    if (argc < 2)
        thaw_test_skip("usage: vmmbench <test guest ELF>");
    guest_path = argv[1];
    const char *why;
    printf("vmmbench: %s\n", vmm_host_is_pvm(&why) ? why : "hardware KVM");
    if (argc > 2 && !strcmp(argv[2], "restore")) {
        bench_restore(argc - 3, argv + 3);
        return 0;
    }
    bench_kvm_floor(100);
    bench_first_instruction(100);
    bench_exits("pio_exit_round_trip", "pio", 20000);
    bench_exits("mmio_exit_round_trip", "mmio", 20000);
    bench_console(64u << 20);
    return 0;
}
