// SPDX-License-Identifier: Apache-2.0
/*
 * The Intel MultiProcessor table (spec 1.4), which a Linux guest without
 * ACPI reads to find its CPUs, the IOAPIC and the ISA interrupt routing:
 * a floating pointer "_MP_" followed by a "PCMP" configuration table with
 * processor, bus, IOAPIC, I/O-interrupt and local-interrupt entries.  Built
 * into a buffer (pure code, unit-tested), copied into guest memory by boot.c.
 */
#include <errno.h>
#include <string.h>

#include "vmm/internal.h"

struct mpf {
    char sig[4];
    uint32_t physptr;
    uint8_t length; /* in 16-byte units */
    uint8_t specrev;
    uint8_t checksum;
    uint8_t feature[5];
} __attribute__((packed));
_Static_assert(sizeof(struct mpf) == 16, "mp floating pointer");

struct mpc_table {
    char sig[4];
    uint16_t length;
    uint8_t spec;
    uint8_t checksum;
    char oem[8];
    char product[12];
    uint32_t oemptr;
    uint16_t oemsize;
    uint16_t count;
    uint32_t lapic;
    uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_table) == 44, "mp config header");

struct mpc_cpu {
    uint8_t type, apicid, apicver, cpuflag;
    uint32_t cpufeature, featureflag, reserved[2];
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_cpu) == 20, "mp cpu entry");

struct mpc_bus {
    uint8_t type, busid;
    char bustype[6];
} __attribute__((packed));

struct mpc_ioapic {
    uint8_t type, apicid, apicver, flags;
    uint32_t apicaddr;
} __attribute__((packed));

struct mpc_intsrc {
    uint8_t type, irqtype;
    uint16_t irqflag;
    uint8_t srcbus, srcbusirq, dstapic, dstirq;
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_intsrc) == 8, "mp interrupt entry");

static uint8_t sum8(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    while (n--)
        s += *p++;
    return s;
}

int vmm_arch_mptable_build(uint8_t *buf, size_t len, uint32_t gpa, unsigned n_vcpus,
                           uint8_t ioapic_id, unsigned n_irqs)
{
    size_t need = sizeof(struct mpf) + sizeof(struct mpc_table) + n_vcpus * sizeof(struct mpc_cpu) +
                  sizeof(struct mpc_bus) + sizeof(struct mpc_ioapic) +
                  (n_irqs + 2) * sizeof(struct mpc_intsrc);
    if (need > len || n_vcpus == 0 || n_vcpus > 255)
        return -ENOSPC;
    memset(buf, 0, need);
    struct mpf *mpf = (struct mpf *)buf;
    memcpy(mpf->sig, "_MP_", 4);
    mpf->physptr = gpa + (uint32_t)sizeof(*mpf);
    mpf->length = 1;
    mpf->specrev = 4;
    mpf->checksum = (uint8_t)-sum8(buf, sizeof(*mpf));

    uint8_t *base = buf + sizeof(*mpf);
    struct mpc_table *t = (struct mpc_table *)base;
    uint8_t *p = base + sizeof(*t);
    unsigned count = 0;
    for (unsigned i = 0; i < n_vcpus; i++, count++) {
        struct mpc_cpu c = {.type = 0,
                            .apicid = (uint8_t)i,
                            .apicver = 0x14,
                            .cpuflag = (uint8_t)(1 | (i == 0 ? 2 : 0)), /* enabled, BSP */
                            .cpufeature = 0x600,
                            .featureflag = 0x201 /* fpu, apic */};
        memcpy(p, &c, sizeof(c));
        p += sizeof(c);
    }
    struct mpc_bus bus = {.type = 1, .busid = 0};
    memcpy(bus.bustype, "ISA   ", 6);
    memcpy(p, &bus, sizeof(bus));
    p += sizeof(bus);
    count++;
    struct mpc_ioapic io = {.type = 2,
                            .apicid = ioapic_id,
                            .apicver = 0x11,
                            .flags = 1,
                            .apicaddr = (uint32_t)VMM_IOAPIC_ADDR};
    memcpy(p, &io, sizeof(io));
    p += sizeof(io);
    count++;
    for (unsigned irq = 0; irq < n_irqs; irq++, count++) {
        /* ISA IRQ n -> IOAPIC pin n, bus defaults (edge, active high) */
        struct mpc_intsrc s = {.type = 3,
                               .irqtype = 0,
                               .irqflag = 0,
                               .srcbus = 0,
                               .srcbusirq = (uint8_t)irq,
                               .dstapic = ioapic_id,
                               .dstirq = (uint8_t)irq};
        memcpy(p, &s, sizeof(s));
        p += sizeof(s);
    }
    /* Local interrupts: LINT0 ExtINT, LINT1 NMI, on every LAPIC (0xff). */
    struct mpc_intsrc l0 = {.type = 4, .irqtype = 3, .srcbus = 0, .dstapic = 0xff, .dstirq = 0};
    struct mpc_intsrc l1 = {.type = 4, .irqtype = 1, .srcbus = 0, .dstapic = 0xff, .dstirq = 1};
    memcpy(p, &l0, sizeof(l0));
    p += sizeof(l0);
    memcpy(p, &l1, sizeof(l1));
    p += sizeof(l1);
    count += 2;

    memcpy(t->sig, "PCMP", 4);
    t->length = (uint16_t)(p - base);
    t->spec = 4;
    memcpy(t->oem, "THAW    ", 8);
    memcpy(t->product, "MICROVM     ", 12);
    t->count = (uint16_t)count;
    t->lapic = (uint32_t)VMM_LAPIC_ADDR;
    t->checksum = (uint8_t)-sum8(base, t->length);
    return (int)(p - buf);
}
