// SPDX-License-Identifier: Apache-2.0
/*
 * The minimal agent for the freestanding test guest (tests/vmm/guest: its
 * boot code, ring-0 kernel and runtime are linked as they are; this file is
 * its ring-3 main).  It speaks thaw's agent protocol (guest/agentwire.h)
 * over the virtio-console so that the vm tier runs end to end through thawd
 * on a host whose KVM cannot boot a Linux guest at a useful speed (PVM):
 * HELLO at boot, PING, THAW, QUIESCE, SHUTDOWN, and EXEC of the built-ins
 * echo, true and false.  Everything else is answered with an ERROR frame.
 * No libc: frames are built and parsed by hand, little-endian.
 *
 * For tests/fault/test_fault_guest.c, EXEC also has hostile built-ins that
 * make the whole guest misbehave the way a broken or malicious guest would
 * (each sends STARTED first, so the host is mid-exec when it begins):
 *   hang               spin in ring 3 forever; nothing is answered again
 *   flood-agent        endless valid STDOUT frames on the agent channel
 *   flood-agent-garbage endless bytes that are not agent frames
 *   flood-console      endless bytes to the serial console
 *   panic              what a Linux panic with panic=N / reboot looks like
 *                      to a VMM: a message on the console, then a triple
 *                      fault (no IDT, then an exception)
 */
#include "guest.h"

#define MMIO0 0xd0000000ull
#define QSZ   32
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
#define R_STAT  0x070
#define R_QDESC 0x080
#define R_QDRV  0x090
#define R_QDEV  0x0a0

/* The protocol numbers this guest uses (guest/agentwire.h is the reference). */
#define MAGIC        0x57414854u
#define T_EXEC       0x01
#define T_THAW       0x06
#define T_QUIESCE    0x07
#define T_PING       0x08
#define T_SHUTDOWN   0x09
#define T_HELLO      0x81
#define T_STARTED    0x82
#define T_STDOUT     0x83
#define T_EXIT       0x85
#define T_OK         0x86
#define T_ERROR      0x87
#define T_PONG       0x89
#define F_ARGV       1
#define F_PID        10
#define F_DATA       11
#define F_EXIT_CODE  21
#define F_ERRNO      29
#define F_MESSAGE    30
#define F_VERSION    31
#define F_CAPS       32
#define F_AGENT_MODE 33
#define F_AGENT_VER  36
#define CAP_EXEC     0x1u
#define CAP_QUIESCE  0x8u
#define MAX_PAYLOAD  (1u << 20)

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

static struct vq rxq, txq;
static u8 rxbuf[QSZ][BUFSZ] __attribute__((aligned(4096)));
static u8 txbuf[BUFSZ] __attribute__((aligned(4096)));
static u8 stream[64 * 1024]; /* received bytes not yet parsed */
static u64 have;
static u64 base;

static u32 rd(u32 off)
{
    return (u32)sys(SYS_MMIO_R32, base + off, 0);
}

static void wr(u32 off, u32 v)
{
    sys(SYS_MMIO_W32, base + off, v);
}

static void set_queue(unsigned q, struct vq *v)
{
    wr(R_QSEL, q);
    wr(R_QNUM, QSZ);
    wr(R_QDESC, (u32)(u64)v->desc);
    wr(R_QDESC + 4, (u32)((u64)v->desc >> 32));
    wr(R_QDRV, (u32)(u64)&v->avail);
    wr(R_QDRV + 4, (u32)((u64)&v->avail >> 32));
    wr(R_QDEV, (u32)(u64)&v->used);
    wr(R_QDEV + 4, (u32)((u64)&v->used >> 32));
    wr(R_QRDY, 1);
}

static int console_init(void)
{
    int found = 0;
    for (unsigned i = 0; i < 4 && !found; i++) {
        base = MMIO0 + i * 0x1000ull;
        found = rd(R_MAGIC) == 0x74726976 && rd(R_DEVID) == 3;
    }
    if (!found)
        return -1;
    wr(R_STAT, 0);
    wr(R_STAT, 1 | 2);
    wr(R_DFSEL, 1);
    if (!(rd(R_DFEAT) & 1))
        return -1;
    wr(R_GFSEL, 0);
    wr(R_GFEAT, 0);
    wr(R_GFSEL, 1);
    wr(R_GFEAT, 1); /* VERSION_1 only */
    wr(R_STAT, 1 | 2 | 8);
    if (!(rd(R_STAT) & 8))
        return -1;
    for (unsigned q = 0; q < 2; q++) {
        wr(R_QSEL, q);
        if (rd(R_QMAX) < QSZ)
            return -1;
    }
    set_queue(0, &rxq);
    set_queue(1, &txq);
    wr(R_STAT, 1 | 2 | 8 | 4);
    for (u16 i = 0; i < QSZ; i++) {
        rxq.desc[i] = (struct desc){.addr = (u64)rxbuf[i], .len = BUFSZ, .flags = 2};
        rxq.avail.ring[rxq.avail_idx % QSZ] = i;
        __atomic_store_n(&rxq.avail.idx, ++rxq.avail_idx, __ATOMIC_RELEASE);
    }
    wr(R_QNTFY, 0);
    return 0;
}

/* Send one buffer and wait until the device has consumed it. */
static void tx_send(const u8 *p, u32 len)
{
    while (len) {
        u32 n = len < BUFSZ ? len : BUFSZ;
        memcpy(txbuf, p, n);
        txq.desc[0] = (struct desc){.addr = (u64)txbuf, .len = n};
        txq.avail.ring[txq.avail_idx % QSZ] = 0;
        __atomic_store_n(&txq.avail.idx, ++txq.avail_idx, __ATOMIC_RELEASE);
        wr(R_QNTFY, 1);
        while (__atomic_load_n(&txq.used.idx, __ATOMIC_ACQUIRE) == txq.used_seen)
            ;
        txq.used_seen++;
        p += n;
        len -= n;
    }
}

/* Move newly received bytes into `stream` and give the buffers back. */
static void rx_poll(void)
{
    int kick = 0;
    while (__atomic_load_n(&rxq.used.idx, __ATOMIC_ACQUIRE) != rxq.used_seen) {
        struct used_elem e = rxq.used.ring[rxq.used_seen % QSZ];
        rxq.used_seen++;
        if (e.id < QSZ && e.len <= BUFSZ && have + e.len <= sizeof(stream)) {
            memcpy(stream + have, rxbuf[e.id], e.len);
            have += e.len;
        }
        rxq.avail.ring[rxq.avail_idx % QSZ] = (u16)e.id;
        __atomic_store_n(&rxq.avail.idx, ++rxq.avail_idx, __ATOMIC_RELEASE);
        kick = 1;
    }
    if (kick)
        wr(R_QNTFY, 0);
}

/* ---- frames ---- */

static u8 out[8192];
static u32 out_len;
static u32 flood_id; /* the exec a flood of STDOUT frames belongs to */

static void put_le(u8 *p, u64 v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (u8)(v >> (8 * i));
}

static u64 get_le(const u8 *p, unsigned n)
{
    u64 v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (u64)p[i] << (8 * i);
    return v;
}

static void frame_begin(void)
{
    out_len = 16;
}

static void field(u16 tag, const void *data, u32 len)
{
    if (out_len + 6 + len > sizeof(out))
        return;
    put_le(out + out_len, tag, 2);
    put_le(out + out_len + 2, len, 4);
    memcpy(out + out_len + 6, data, len);
    out_len += 6 + len;
}

static void field_u32(u16 tag, u32 v)
{
    u8 b[4];
    put_le(b, v, 4);
    field(tag, b, 4);
}

static void field_u64(u16 tag, u64 v)
{
    u8 b[8];
    put_le(b, v, 8);
    field(tag, b, 8);
}

static void frame_send(u16 type, u32 id)
{
    put_le(out, MAGIC, 4);
    put_le(out + 4, type, 2);
    put_le(out + 6, 0, 2);
    put_le(out + 8, id, 4);
    put_le(out + 12, out_len - 16, 4);
    tx_send(out, out_len);
}

static void send_error(u32 id, u32 errnum, const char *msg)
{
    frame_begin();
    field_u32(F_ERRNO, errnum);
    field(F_MESSAGE, msg, (u32)strlen(msg));
    frame_send(T_ERROR, id);
}

static int is_cmd(const u8 *a, u32 l, const char *name)
{
    return l == strlen(name) && !strncmp((const char *)a, name, l);
}

/* The hostile built-ins: none returns. */
__attribute__((noreturn)) static void hostile_run(const u8 *a, u32 l)
{
    static u8 junk[BUFSZ];
    if (is_cmd(a, l, "hang")) {
        for (;;) /* ring 3 only: PVM runs it natively, the host sees no exits */
            __asm__ volatile("pause");
    }
    if (is_cmd(a, l, "flood-agent")) {
        memset(junk, 'F', sizeof(junk));
        for (;;) {
            frame_begin();
            field(F_DATA, junk, sizeof(junk) - 64);
            frame_send(T_STDOUT, flood_id);
        }
    }
    if (is_cmd(a, l, "flood-agent-garbage")) {
        for (u32 i = 0; i < sizeof(junk); i++)
            junk[i] = (u8)(i * 37u + 11u);
        for (;;)
            tx_send(junk, sizeof(junk));
    }
    if (is_cmd(a, l, "flood-console")) {
        memset(junk, 'C', 1024);
        junk[1023] = '\n';
        for (;;)
            sys(SYS_WRITE, junk, 1024);
    }
    /* panic: Linux prints its panic and, with panic=N, reboots; a VMM
     * without a reset device sees that reboot as a triple fault.  Here the
     * IDT is emptied and the next ud2 (a syscall) faults three times. */
    print("Kernel panic - not syncing: thaw test guest asked to panic\n");
    sys(SYS_BREAK_IDT, 0, 0);
    sys(SYS_WRITE, "", 0);
    for (;;)
        ;
}

static int is_hostile(const u8 *a, u32 l)
{
    return is_cmd(a, l, "hang") || is_cmd(a, l, "flood-agent") ||
           is_cmd(a, l, "flood-agent-garbage") || is_cmd(a, l, "flood-console") ||
           is_cmd(a, l, "panic");
}

static void do_exec(u32 id, const u8 *p, u32 len)
{
    const u8 *argv[16];
    u32 argl[16], argc = 0;
    for (u32 o = 0; o + 6 <= len;) {
        u16 tag = (u16)get_le(p + o, 2);
        u32 fl = (u32)get_le(p + o + 2, 4);
        if (fl > len - o - 6)
            break;
        if (tag == F_ARGV && argc < 16) {
            argv[argc] = p + o + 6;
            argl[argc++] = fl;
        }
        o += 6 + fl;
    }
    if (argc == 0) {
        send_error(id, 22, "exec: no argv");
        return;
    }
    int code;
    static u8 text[2048];
    u32 tl = 0;
    if (argl[0] == 4 && !strncmp((const char *)argv[0], "echo", 4)) {
        for (u32 i = 1; i < argc; i++) {
            if (tl + argl[i] + 2 > sizeof(text))
                break;
            if (i > 1)
                text[tl++] = ' ';
            memcpy(text + tl, argv[i], argl[i]);
            tl += argl[i];
        }
        text[tl++] = '\n';
        code = 0;
    } else if (argl[0] == 4 && !strncmp((const char *)argv[0], "true", 4)) {
        code = 0;
    } else if (argl[0] == 5 && !strncmp((const char *)argv[0], "false", 5)) {
        code = 1;
    } else if (is_hostile(argv[0], argl[0])) {
        frame_begin();
        field_u32(F_PID, 1);
        frame_send(T_STARTED, id);
        flood_id = id;
        hostile_run(argv[0], argl[0]);
    } else {
        send_error(id, 2, "exec: the test guest has only the built-ins echo, true and false");
        return;
    }
    frame_begin();
    field_u32(F_PID, 1);
    frame_send(T_STARTED, id);
    if (tl) {
        frame_begin();
        field(F_DATA, text, tl);
        frame_send(T_STDOUT, id);
    }
    frame_begin();
    field_u32(F_EXIT_CODE, (u32)code);
    frame_send(T_EXIT, id);
}

static void handle(u16 type, u32 id, const u8 *p, u32 len)
{
    switch (type) {
    case T_PING: {
        frame_begin();
        for (u32 o = 0; o + 6 <= len;) {
            u16 tag = (u16)get_le(p + o, 2);
            u32 fl = (u32)get_le(p + o + 2, 4);
            if (fl > len - o - 6)
                break;
            if (tag == F_DATA)
                field(F_DATA, p + o + 6, fl);
            o += 6 + fl;
        }
        frame_send(T_PONG, id);
        break;
    }
    case T_THAW: /* no RNG or clock to set here: acknowledged, not applied */
    case T_QUIESCE:
        frame_begin();
        frame_send(T_OK, id);
        break;
    case T_SHUTDOWN:
        frame_begin();
        frame_send(T_OK, id);
        poweroff(0);
    case T_EXEC:
        do_exec(id, p, len);
        break;
    default:
        send_error(id, 95, "not supported by the test guest");
    }
}

void umain(void)
{
    print("thaw-test-guest: agent\n");
    if (console_init() < 0) {
        print("virtio-console: init failed\n");
        poweroff(10);
    }
    frame_begin();
    field_u32(F_VERSION, 1);
    field_u64(F_CAPS, CAP_EXEC | CAP_QUIESCE);
    field(F_AGENT_MODE, "vm", 2);
    field(F_AGENT_VER, "test-guest", 10);
    frame_send(T_HELLO, 0);
    print("agent ready\n");
    for (;;) {
        rx_poll();
        while (have >= 16) {
            u32 magic = (u32)get_le(stream, 4);
            u32 len = (u32)get_le(stream + 12, 4);
            if (magic != MAGIC || len > MAX_PAYLOAD || len > sizeof(stream) - 16) {
                print("agent: framing broken\n");
                poweroff(11);
            }
            if (have < 16 + (u64)len)
                break;
            handle((u16)get_le(stream + 4, 2), (u32)get_le(stream + 8, 4), stream + 16, len);
            memcpy(stream, stream + 16 + len, have - 16 - len); /* forward copy: safe */
            have -= 16 + len;
        }
    }
}
