// SPDX-License-Identifier: Apache-2.0
/*
 * The test guest's ring-3 main: print the banner, check the e820 map and
 * command line the VMM passed, then run the scenario named by
 * thaw.test=<name> and power off with 0 on success (see tests/vmm/).
 */
#include "guest.h"
#include "compute.h"

extern char _end[];

struct e820 {
    u64 addr, size;
    u32 type;
} __attribute__((packed));

/* The map must be sorted, non-overlapping, and hold RAM under this image. */
static int check_e820(u64 *ram_out)
{
    const u8 *bp = (const u8 *)boot_params_ptr;
    unsigned n = bp[0x1e8];
    const struct e820 *e = (const struct e820 *)(bp + 0x2d0);
    u64 ram = 0, prev_end = 0;
    int covers = 0;
    if (n == 0 || n > 128)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        if (e[i].addr < prev_end || e[i].size == 0)
            return -1;
        prev_end = e[i].addr + e[i].size;
        if (e[i].type == 1) {
            ram += e[i].size;
            if (e[i].addr <= 0x100000 && e[i].addr + e[i].size >= (u64)_end)
                covers = 1;
        }
    }
    *ram_out = ram;
    return covers ? (int)n : -1;
}

static void test_timer(void)
{
    sys(SYS_TIMER, 1000000, 0); /* 1 ms at the LAPIC's 1 GHz bus clock */
    u64 spins = 0;
    while (ticks < 20)
        spins++;
    printf_("timer ok ticks=%llu\n", (u64)ticks);
    poweroff(0);
}

static void test_compute(void)
{
    char buf[32];
    u64 seed = cmdline_get("thaw.seed", buf, sizeof(buf)) ? parse_u64(buf) : 1;
    u64 iters = cmdline_get("thaw.iters", buf, sizeof(buf)) ? parse_u64(buf) : 1000000;
    sys(SYS_TIMER, 200000, 0); /* interrupts every 200 us while computing */
    u64 r = thaw_compute(seed, iters);
    printf_("compute result=%llx ticks=%llu\n", r, (u64)ticks);
    poweroff(0);
}

static void test_triple(void)
{
    print("breaking the IDT\n");
    sys(SYS_BREAK_IDT, 0, 0);
    *(volatile u64 *)0x7f0000000000ull = 1; /* unmapped: #PF with no IDT */
    poweroff(1);
}

static void test_smp(void)
{
    sys(SYS_START_AP, 1, 0);
    for (u64 i = 0; i < 4000000000ull && !ap_alive; i++)
        ;
    printf_("smp ap_alive=%u\n", ap_alive);
    poweroff(ap_alive == 2 ? 0 : 1);
}

static void test_pio(void)
{
    char buf[32];
    u64 n = cmdline_get("thaw.n", buf, sizeof(buf)) ? parse_u64(buf) : 1000;
    sys(SYS_PIO_LOOP, 0x80, n);
    poweroff(0);
}

static void test_mmio(void)
{
    char buf[32];
    u64 n = cmdline_get("thaw.n", buf, sizeof(buf)) ? parse_u64(buf) : 1000;
    sys(SYS_MMIO_LOOP, 0xd0000000ull, n);
    poweroff(0);
}

void umain(void)
{
    char test[32], buf[32];
    print("thaw-test-guest: hello from ring 3\n");
    u64 ram = 0;
    int n = check_e820(&ram);
    if (n < 0) {
        print("e820 map invalid\n");
        poweroff(2);
    }
    const u8 *bp = (const u8 *)boot_params_ptr;
    const char *cl = (const char *)(u64) * (const u32 *)(bp + 0x228);
    printf_("e820 entries=%d ram=%lluKiB\ncmdline: %s\n", n, ram >> 10, cl);
    if (!cmdline_get("thaw.test", test, sizeof(test))) {
        print("no thaw.test= on the command line\n");
        poweroff(3);
    }
    if (!strncmp(test, "banner", 7))
        poweroff(0);
    if (!strncmp(test, "timer", 6))
        test_timer();
    if (!strncmp(test, "compute", 8))
        test_compute();
    if (!strncmp(test, "reset", 6)) {
        print("asking for a reset\n");
        sys(SYS_OUTB, 0x64, 0xfe);
        poweroff(1);
    }
    if (!strncmp(test, "triple", 7))
        test_triple();
    if (!strncmp(test, "smp", 4))
        test_smp();
    if (!strncmp(test, "pio", 4))
        test_pio();
    if (!strncmp(test, "mmio", 5))
        test_mmio();
    if (!strncmp(test, "echo", 5)) {
        u64 bytes = cmdline_get("thaw.bytes", buf, sizeof(buf)) ? parse_u64(buf) : 4096;
        poweroff(vcon_echo(bytes));
    }
    if (!strncmp(test, "stream", 7) || !strncmp(test, "smpstream", 10)) {
        if (test[0] == 's' && test[1] == 'm') { /* with a second vCPU up (halted) */
            sys(SYS_START_AP, 1, 0);
            for (u64 i = 0; i < 4000000000ull && !ap_alive; i++)
                ;
            if (!ap_alive)
                poweroff(5);
        }
        u64 chunks = cmdline_get("thaw.chunks", buf, sizeof(buf)) ? parse_u64(buf) : 16;
        u64 iters = cmdline_get("thaw.iters", buf, sizeof(buf)) ? parse_u64(buf) : 1000;
        u64 seed = cmdline_get("thaw.seed", buf, sizeof(buf)) ? parse_u64(buf) : 1;
        u64 touch = cmdline_get("thaw.touch", buf, sizeof(buf)) ? parse_u64(buf) : 0;
        poweroff(vcon_stream(chunks, iters, seed, touch));
    }
    if (!strncmp(test, "idle", 5)) {
        /* vmmbench restore: fill memory, then echo forever */
        u64 touch = cmdline_get("thaw.touch", buf, sizeof(buf)) ? parse_u64(buf) : 0;
        for (u64 *p = (u64 *)(16ull << 20), *e = p + (touch << 20) / 8; p < e; p++)
            *p = (u64)p * 0x9e3779b97f4a7c15ull;
        poweroff(vcon_echo(~0ull));
    }
    if (!strncmp(test, "blk", 4))
        poweroff(vblk_test());
    if (!strncmp(test, "hostile", 8))
        poweroff(hostile());
    printf_("unknown test %s\n", test);
    poweroff(4);
}
