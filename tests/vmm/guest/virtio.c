// SPDX-License-Identifier: Apache-2.0
/*
 * A polled virtio-mmio (version 2) driver in ring 3: the rings are plain
 * memory the guest owns, so only register accesses go through ring 0
 * (syscalls).  Used for the console echo test, the block test, and the
 * hostile test, which feeds the VMM's devices lies (bad ring addresses,
 * runaway indices, descriptors outside RAM, loops, huge lengths) and then
 * checks the device still works after a reset.
 */
#include "compute.h"
#include "guest.h"

#define MMIO0 0xd0000000ull
#define QSZ   64
#define BUFSZ 4096

#define R_MAGIC 0x000
#define R_DEVID 0x008
#define R_DFEAT 0x010
#define R_DFSEL 0x014
#define R_GFEAT 0x020
#define R_GFSEL 0x024
#define R_QSEL  0x030
#define R_QMAX  0x034
#define R_QNUM  0x038
#define R_QRDY  0x044
#define R_QNTFY 0x050
#define R_ISR   0x060
#define R_IACK  0x064
#define R_STAT  0x070
#define R_QDESC 0x080
#define R_QDRV  0x090
#define R_QDEV  0x0a0
#define R_CFG   0x100

struct desc {
    u64 addr;
    u32 len;
    u16 flags, next;
};
struct avail {
    u16 flags, idx, ring[QSZ];
};
struct used_elem {
    u32 id, len;
};
struct used {
    u16 flags, idx;
    struct used_elem ring[QSZ];
};

struct vq {
    struct desc desc[QSZ] __attribute__((aligned(4096)));
    struct avail avail __attribute__((aligned(4096)));
    struct used used __attribute__((aligned(4096)));
    u16 avail_idx, used_seen;
};

static struct vq vqs[2] __attribute__((aligned(4096)));
static u8 bufs[QSZ][BUFSZ] __attribute__((aligned(4096)));

static u64 dev_base;

static u32 rd(u32 off)
{
    return (u32)sys(SYS_MMIO_R32, dev_base + off, 0);
}

static void wr(u32 off, u32 v)
{
    sys(SYS_MMIO_W32, dev_base + off, v);
}

/* Find the virtio-mmio slot holding device id `id`. */
static int find_dev(u32 id)
{
    for (unsigned i = 0; i < 4; i++) {
        dev_base = MMIO0 + i * 0x1000ull;
        if (rd(R_MAGIC) == 0x74726976 && rd(R_DEVID) == id)
            return 0;
    }
    return -1;
}

static void set_queue(unsigned q, struct vq *v, u32 num)
{
    wr(R_QSEL, q);
    wr(R_QNUM, num);
    wr(R_QDESC, (u32)(u64)v->desc);
    wr(R_QDESC + 4, (u32)((u64)v->desc >> 32));
    wr(R_QDRV, (u32)(u64)&v->avail);
    wr(R_QDRV + 4, 0);
    wr(R_QDEV, (u32)(u64)&v->used);
    wr(R_QDEV + 4, 0);
    wr(R_QRDY, 1);
}

/* Reset, negotiate VERSION_1 only, set up nq queues; 0 or -1. */
static int dev_init(unsigned nq)
{
    memset(vqs, 0, sizeof(vqs));
    wr(R_STAT, 0);
    wr(R_STAT, 1 | 2); /* ACKNOWLEDGE | DRIVER */
    wr(R_DFSEL, 1);
    if (!(rd(R_DFEAT) & 1))
        return -1;
    wr(R_GFSEL, 0);
    wr(R_GFEAT, 0);
    wr(R_GFSEL, 1);
    wr(R_GFEAT, 1);
    wr(R_STAT, 1 | 2 | 8);
    if (!(rd(R_STAT) & 8))
        return -1;
    for (unsigned q = 0; q < nq; q++) {
        wr(R_QSEL, q);
        if (rd(R_QMAX) < QSZ)
            return -1;
        set_queue(q, &vqs[q], QSZ);
    }
    wr(R_STAT, 1 | 2 | 8 | 4); /* DRIVER_OK */
    return 0;
}

static void post(struct vq *v, u16 id)
{
    v->avail.ring[v->avail_idx % QSZ] = id;
    __atomic_store_n(&v->avail.idx, ++v->avail_idx, __ATOMIC_RELEASE);
}

static int used_next(struct vq *v, struct used_elem *e)
{
    u16 idx = __atomic_load_n(&v->used.idx, __ATOMIC_ACQUIRE);
    if (idx == v->used_seen)
        return 0;
    *e = v->used.ring[v->used_seen % QSZ];
    v->used_seen++;
    return 1;
}

/* Echo `bytes` bytes from the receive queue back out (zero copy: a received
 * buffer is sent as is, then posted for receive again). */
int vcon_echo(u64 bytes)
{
    if (find_dev(3) || dev_init(2)) {
        print("virtio-console: init failed\n");
        return 10;
    }
    struct vq *rx = &vqs[0], *tx = &vqs[1];
    for (u16 i = 0; i < QSZ; i++) {
        rx->desc[i] = (struct desc){.addr = (u64)bufs[i], .len = BUFSZ, .flags = 2};
        post(rx, i);
    }
    wr(R_QNTFY, 0);
    print("echo ready\n");
    u64 got = 0, sent = 0;
    while (sent < bytes) {
        struct used_elem e;
        int kick_tx = 0, kick_rx = 0;
        while (used_next(rx, &e)) {
            if (e.id >= QSZ || e.len > BUFSZ)
                return 11;
            got += e.len;
            tx->desc[e.id] = (struct desc){.addr = (u64)bufs[e.id], .len = e.len};
            post(tx, (u16)e.id);
            kick_tx = 1;
        }
        if (kick_tx)
            wr(R_QNTFY, 1);
        while (used_next(tx, &e)) {
            if (e.id >= QSZ)
                return 12;
            sent += tx->desc[e.id].len;
            post(rx, (u16)e.id);
            kick_rx = 1;
        }
        if (kick_rx)
            wr(R_QNTFY, 0);
    }
    printf_("echo done bytes=%llu\n", sent);
    return 0;
}

/* The snapshot tests' workload: `chunks` 4 KiB pieces of a known byte
 * stream sent through the console, each followed by an AVX computation
 * folded into an accumulator, with the LAPIC timer firing throughout.  A
 * snapshot taken anywhere must let a clone finish with exactly the same
 * stream (no gap, no duplicate) and accumulator.  `touch` MiB of memory from
 * 16 MiB are written first (the shared engine's memory test). */
int vcon_stream(u64 chunks, u64 iters, u64 seed, u64 touch_mib)
{
    for (u64 *p = (u64 *)(16ull << 20), *e = p + (touch_mib << 20) / 8; p < e; p++)
        *p = (u64)p * 0x9e3779b97f4a7c15ull;
    if (find_dev(3) || dev_init(2)) {
        print("virtio-console: init failed\n");
        return 10;
    }
    sys(SYS_TIMER, 200000, 0);
    struct vq *tx = &vqs[1];
    u64 acc = seed;
    for (u64 k = 0; k < chunks; k++) {
        u16 id = (u16)(k % QSZ);
        for (u32 i = 0; i < BUFSZ; i++)
            bufs[id][i] = thaw_stream_byte(k * BUFSZ + i);
        tx->desc[id] = (struct desc){.addr = (u64)bufs[id], .len = BUFSZ};
        post(tx, id);
        wr(R_QNTFY, 1);
        struct used_elem e;
        while (!used_next(tx, &e))
            ;
        acc = acc * 31 + thaw_compute(seed + k, iters);
    }
    /* Read the touched memory back (a clone maps it: the shared engine's
     * test measures what that costs). */
    u64 sum = 0;
    for (u64 *p = (u64 *)(16ull << 20), *e = p + (touch_mib << 20) / 8; p < e; p++)
        sum += *p;
    printf_("stream done acc=%llx ticks=%llu touched=%llx\n", acc, (u64)ticks, sum);
    return 0;
}

/* Read the disk's first 64 KiB, check the host's pattern (byte i of sector s
 * is (s * 7 + i) & 0xff), write sector 100 with 0x5a and flush. */
struct blkhdr {
    u32 type, rsv;
    u64 sector;
};
static struct blkhdr hdrs[QSZ];
static u8 status[QSZ];

static int blk_req(u32 type, u64 sector, u8 *data, u32 len)
{
    struct vq *v = &vqs[0];
    hdrs[0] = (struct blkhdr){.type = type, .sector = sector};
    status[0] = 0xff;
    int wflag = type == 0 ? 2 : 0;
    v->desc[0] = (struct desc){.addr = (u64)&hdrs[0], .len = 16, .flags = 1, .next = 1};
    if (len) {
        v->desc[1] =
            (struct desc){.addr = (u64)data, .len = len, .flags = (u16)(1 | wflag), .next = 2};
        v->desc[2] = (struct desc){.addr = (u64)&status[0], .len = 1, .flags = 2};
    } else {
        v->desc[0].next = 2;
        v->desc[2] = (struct desc){.addr = (u64)&status[0], .len = 1, .flags = 2};
    }
    post(v, 0);
    wr(R_QNTFY, 0);
    struct used_elem e;
    while (!used_next(v, &e))
        ;
    return status[0];
}

int vblk_test(void)
{
    if (find_dev(2) || dev_init(1)) {
        print("virtio-blk: init failed\n");
        return 20;
    }
    u64 cap = (u64)rd(R_CFG) | ((u64)rd(R_CFG + 4) << 32);
    u8 *buf = bufs[0];
    u64 bad = 0;
    for (u64 s = 0; s < 128; s += 8) {
        if (blk_req(0, s, buf, BUFSZ) != 0)
            return 21;
        for (u32 i = 0; i < BUFSZ; i++)
            if (buf[i] != (u8)((s + i / 512) * 7 + i % 512))
                bad++;
    }
    memset(buf, 0x5a, 512);
    int ws = blk_req(1, 100, buf, 512);
    int fs = blk_req(4, 0, 0, 0);
    int oob = blk_req(0, cap, buf, 512); /* past the end: must be an error */
    printf_("blk capacity=%llu bad=%llu write=%d flush=%d oob=%d\n", cap, bad, ws, fs, oob);
    return bad == 0 && oob != 0 ? 0 : 22;
}

/* After an attack: did the device refuse it by setting DEVICE_NEEDS_RESET?
 * The notification is handled on the VMM's event thread, so poll a while. */
static int refused(void)
{
    /* Bounded by time, not tries: on a loaded host the event thread may
     * take a while to run.  1e10 TSC ticks is seconds at any clock rate. */
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    u64 end = (((u64)hi << 32) | lo) + 10000000000ull;
    for (;;) {
        if (rd(R_STAT) & 0x40)
            return 1;
        __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
        if ((((u64)hi << 32) | lo) > end)
            return 0;
    }
}

/* Each attack must be refused; afterwards a reset device must work again. */
int hostile(void)
{
    if (find_dev(3))
        return 30;
    int n = 0, ok = 0;
    /* 1: ring addresses far outside RAM */
    dev_init(0);
    wr(R_QSEL, 1);
    wr(R_QNUM, QSZ);
    wr(R_QDESC, 0);
    wr(R_QDESC + 4, 0x10);
    wr(R_QRDY, 1);
    n++, ok += refused();
    /* 2: queue size not a power of two, and huge */
    dev_init(0);
    wr(R_QSEL, 0);
    wr(R_QNUM, 0xffffffff);
    wr(R_QRDY, 1);
    n++, ok += refused();
    /* 3: avail index runs far ahead of the ring */
    dev_init(2);
    __atomic_store_n(&vqs[1].avail.idx, 40000, __ATOMIC_RELEASE);
    wr(R_QNTFY, 1);
    n++, ok += refused();
    /* 4: descriptor outside guest memory with a huge length */
    dev_init(2);
    vqs[1].desc[0] = (struct desc){.addr = 0xfffffffffffff000ull, .len = 0xffffffff};
    post(&vqs[1], 0);
    wr(R_QNTFY, 1);
    n++, ok += refused();
    /* 5: a descriptor chain that loops */
    dev_init(2);
    vqs[1].desc[0] = (struct desc){.addr = (u64)bufs[0], .len = 16, .flags = 1, .next = 1};
    vqs[1].desc[1] = (struct desc){.addr = (u64)bufs[1], .len = 16, .flags = 1, .next = 0};
    post(&vqs[1], 0);
    wr(R_QNTFY, 1);
    n++, ok += refused();
    /* 6: head id out of range */
    dev_init(2);
    vqs[1].avail.ring[0] = 999;
    __atomic_store_n(&vqs[1].avail.idx, 1, __ATOMIC_RELEASE);
    wr(R_QNTFY, 1);
    n++, ok += refused();
    /* 7: a buffer that starts in RAM and runs past its end */
    dev_init(2);
    vqs[1].desc[0] = (struct desc){.addr = (u64)bufs[0], .len = 0x7fffffff};
    post(&vqs[1], 0);
    wr(R_QNTFY, 1);
    n++, ok += refused();
    /* 8: wild register writes and reads, notify of queues that do not exist */
    dev_init(2);
    for (u32 off = 0x80; off < 0x200; off += 4)
        wr(off, 0xdeadbeef);
    wr(R_QNTFY, 7);
    for (u32 off = 0; off < 0x1000; off += 0x40)
        (void)rd(off);
    /* 9: unclaimed ports and MMIO */
    sys(SYS_OUTB, 0x1234, 1);
    (void)sys(SYS_INB, 0x4321, 0);
    (void)sys(SYS_MMIO_R32, 0xe0000000ull, 0);
    sys(SYS_MMIO_W32, 0xe0000000ull, 1);
    printf_("hostile refused=%d/%d\n", ok, n);
    /* The device must still work after a reset. */
    return vcon_echo(4096);
}
