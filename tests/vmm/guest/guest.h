/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the test guest's files: fixed-width types, the syscall numbers
 * ring 3 uses to reach ring 0 (port and MMIO access, the timer, poweroff),
 * and the small runtime (formatting, string helpers) the freestanding guest
 * has instead of a libc.
 */
#ifndef THAW_TESTS_VMM_GUEST_H
#define THAW_TESTS_VMM_GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;
typedef unsigned long size_t;

enum {
    SYS_WRITE = 0,     /* (buf, len): bytes to the UART */
    SYS_EXIT = 1,      /* (code): poweroff port */
    SYS_MMIO_R32 = 2,  /* (addr) -> value */
    SYS_MMIO_W32 = 3,  /* (addr, value) */
    SYS_TIMER = 4,     /* (initial count): x2APIC periodic timer */
    SYS_OUTB = 5,      /* (port, value) */
    SYS_INB = 6,       /* (port) -> value */
    SYS_BREAK_IDT = 7, /* load an empty IDT */
    SYS_PIO_LOOP = 8,  /* (port, n): n port writes */
    SYS_MMIO_LOOP = 9, /* (addr, n): n MMIO reads */
    SYS_START_AP = 10, /* (apic id): INIT + SIPI */
};

static inline long sys3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("ud2" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "memory");
    return ret;
}

#define sys(nr, a, b) sys3((nr), (long)(a), (long)(b), 0)

extern volatile u64 ticks;
extern u64 boot_params_ptr;
extern volatile u32 ap_alive;

/* runtime.c */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);
const char *strstr(const char *h, const char *n);
void print(const char *s);
/* printf subset: %s %d %u %x %llx %llu %c */
void printf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void poweroff(int code);
/* Value of "key=" on the command line (copied into buf), or NULL. */
const char *cmdline_get(const char *key, char *buf, size_t len);
u64 parse_u64(const char *s);

/* virtio.c: a polled virtio-mmio driver in ring 3 */
int vcon_echo(u64 bytes);
int vcon_stream(u64 chunks, u64 iters, u64 seed, u64 touch_mib);
int vblk_test(void);
int hostile(void);
/* user.c */
void umain(void);

#endif
