// SPDX-License-Identifier: Apache-2.0
/*
 * The test guest's ring 0: set up once (TSS, IDT, SSE/AVX state), then
 * leave for ring 3 and come back only through system calls (ud2, see
 * start.S), the timer and exceptions.  Everything here is short because PVM emulates
 * guest ring 0 instruction by instruction.
 */
#include "guest.h"

struct tss {
    u32 rsv0;
    u64 rsp0, rsp1, rsp2;
    u64 rsv1;
    u64 ist[7];
    u64 rsv2;
    u16 rsv3, iomap;
} __attribute__((packed));

struct idt_entry {
    u16 off0, sel, flags, off1;
    u32 off2, rsv;
} __attribute__((packed));

extern u64 gdt[];
extern void *exc_table[22];
void ud_entry(void);
void timer_entry(void);
void spurious_entry(void);
void enter_user(void (*rip)(void), void *rsp) __attribute__((noreturn));
void kmain(void);
long k_syscall(long nr, long a, long b, long c);
void kexception(u64 *frame);

static struct tss tss;
static struct idt_entry idt[256] __attribute__((aligned(16)));
static u8 kstack[16384] __attribute__((aligned(16)));
static u8 ustack[65536] __attribute__((aligned(16)));
volatile u64 ticks;

static inline void wrmsr(u32 msr, u64 v)
{
    __asm__ volatile("wrmsr" ::"c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}

static inline u64 rdmsr(u32 msr)
{
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((u64)hi << 32) | lo;
}

static inline void outb(u16 port, u8 v)
{
    __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port));
}

static inline void outl(u16 port, u32 v)
{
    __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port));
}

static inline u8 inb(u16 port)
{
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static void set_gate(unsigned vec, void *fn)
{
    u64 a = (u64)fn;
    idt[vec] = (struct idt_entry){.off0 = (u16)a,
                                  .sel = 0x10,
                                  .flags = 0x8e00,
                                  .off1 = (u16)(a >> 16),
                                  .off2 = (u32)(a >> 32)};
}

struct desc_ptr {
    u16 limit;
    u64 base;
} __attribute__((packed));

void kmain(void)
{
    u64 base = (u64)&tss;
    tss.rsp0 = (u64)(kstack + sizeof(kstack));
    tss.iomap = sizeof(tss);
    gdt[7] = (sizeof(tss) - 1) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
             (((base >> 24) & 0xff) << 56);
    gdt[8] = base >> 32;
    __asm__ volatile("ltr %w0" ::"r"(0x38));
    for (unsigned v = 0; v < 22; v++)
        set_gate(v, exc_table[v]);
    set_gate(6, ud_entry);
    set_gate(0x40, timer_entry);
    set_gate(0xff, spurious_entry);
    struct desc_ptr d = {.limit = sizeof(idt) - 1, .base = (u64)idt};
    __asm__ volatile("lidt %0" ::"m"(d));

    /* Mask both 8259 PICs: LINT0 is ExtINT, so device IRQs would otherwise
     * arrive at the PIC's reset vector base (0) and look like exceptions.
     * The guest polls its devices; the IOAPIC pins stay masked too. */
    outb(0x21, 0xff);
    outb(0xa1, 0xff);

    /* SSE and AVX for ring 3: CR4.OSFXSR|OSXMMEXCPT|OSXSAVE, XCR0 = x87|SSE|AVX. */
    u64 cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    cr4 |= (1u << 9) | (1u << 10) | (1u << 18);
    __asm__ volatile("mov %0, %%cr4" ::"r"(cr4));
    __asm__ volatile("xsetbv" ::"c"(0), "a"(7), "d"(0));

    enter_user(umain, ustack + sizeof(ustack));
}

long k_syscall(long nr, long a, long b, long c)
{
    switch (nr) {
    case SYS_WRITE: {
        const char *p = (const char *)a;
        for (long i = 0; i < b; i++)
            outb(0x3f8, (u8)p[i]);
        return b;
    }
    case SYS_EXIT:
        outl(0x501, (u32)a);
        for (;;)
            __asm__ volatile("hlt");
    case SYS_MMIO_R32:
        return *(volatile u32 *)a;
    case SYS_MMIO_W32:
        *(volatile u32 *)a = (u32)b;
        return 0;
    case SYS_TIMER:
        wrmsr(0x1b, rdmsr(0x1b) | (3u << 10)); /* APIC enabled, x2APIC mode */
        wrmsr(0x80f, 0x1ff);                   /* SVR: enabled, spurious 0xff */
        wrmsr(0x83e, 0xb);                     /* divide by 1 */
        wrmsr(0x832, 0x40 | (1u << 17));       /* periodic, vector 0x40 */
        wrmsr(0x838, (u64)a);
        return 0;
    case SYS_OUTB:
        outb((u16)a, (u8)b);
        return 0;
    case SYS_INB:
        return inb((u16)a);
    case SYS_BREAK_IDT: {
        struct desc_ptr d = {.limit = 0, .base = 0};
        __asm__ volatile("lidt %0" ::"m"(d));
        return 0;
    }
    case SYS_PIO_LOOP:
        for (long i = 0; i < b; i++)
            outb((u16)a, 0);
        return 0;
    case SYS_MMIO_LOOP: {
        u32 s = 0;
        for (long i = 0; i < b; i++)
            s += *(volatile u32 *)a;
        return s;
    }
    case SYS_START_AP: {
        extern char ap_tramp[], ap_tramp_end[];
        for (char *s = ap_tramp, *d = (char *)0x8000; s < ap_tramp_end;)
            *d++ = *s++;
        wrmsr(0x1b, rdmsr(0x1b) | (3u << 10));
        wrmsr(0x80f, 0x1ff);
        u64 dest = (u64)a << 32;
        wrmsr(0x830, dest | 0x4500); /* INIT, assert */
        wrmsr(0x830, dest | 0x4608); /* SIPI, vector 8 -> 0x8000 */
        wrmsr(0x830, dest | 0x4608);
        return 0;
    }
    default:
        (void)c;
        return -1;
    }
}

static void kputs(const char *s)
{
    while (*s)
        outb(0x3f8, (u8)*s++);
}

static void kputhex(u64 v)
{
    char b[17];
    for (int i = 15; i >= 0; i--, v >>= 4)
        b[i] = "0123456789abcdef"[v & 15];
    b[16] = 0;
    kputs(b);
}

/* frame: vector, error code, rip, cs, rflags, rsp, ss */
void kexception(u64 *f)
{
    kputs("\nEXCEPTION vec=");
    kputhex(f[0]);
    kputs(" err=");
    kputhex(f[1]);
    kputs(" rip=");
    kputhex(f[2]);
    kputs(" cs=");
    kputhex(f[3]);
    kputs(" rflags=");
    kputhex(f[4]);
    u64 cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    kputs(" cr2=");
    kputhex(cr2);
    kputs("\n");
    outl(0x501, 0x100 + (u32)f[0]);
    for (;;)
        __asm__ volatile("hlt");
}
