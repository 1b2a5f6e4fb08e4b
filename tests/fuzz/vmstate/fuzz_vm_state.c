// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for the VM state sections of a snapshot (vmm/state.h:
 * config, VM, one per vCPU, one per device), as vmm_restore() decodes and
 * loads them into a real KVM VM.  Those sections are only ever read by
 * vmm_restore, against a live VM, so that is what this target drives: no
 * decoder is split out or imitated.
 *
 * Once per process a freestanding test guest (2 vCPUs, a virtio-console held
 * mid-stream with its transmit queue full, a virtio-blk disk, the LAPIC
 * timer armed and AVX registers live) is booted and snapshotted: the base.
 * An input is a list of edits applied to copies of the base's sections:
 *
 *   u8 op, u8 index, u16 len, u32 arg, then len bytes of data
 *
 * (little-endian; index picks a section modulo their number, in id order:
 * config, VM, vCPU 0, vCPU 1, then the devices).  op % 6:
 *   0 patch   write the data at offset arg % section length (cut at its end)
 *   1 xor     xor the data in at offset arg % section length
 *   2 resize  make the section arg % (2 * length + 4096) bytes (zero-filled)
 *   3 drop    remove the section
 *   4 add     a section with id arg % 0x400 holding the data (replaces one)
 *   5 swap    swap the contents of sections index and arg
 * The edited sections and the base's guest memory are written as a snapshot
 * (snap_write: checksums and all, so the reader's own checks are not what
 * is tested), restored with vmm_restore, and a restored VM runs for a
 * moment (its devices serve whatever queues the state describes), is
 * snapshotted again and destroyed.  Bad state must give an error or a guest
 * that stops; a crash, a leak, a hang or a process-wide fault is a bug.
 * An empty input restores the base unchanged, which must succeed: the
 * harness aborts if it does not, so a replay that stops reaching the state
 * code fails rather than passing.
 *
 * One harness rule limits the input: a config asking for a disk gets this
 * process's scratch disk (the saved path is the host file a restored VM
 * opens read-write, and a fuzzer must not pick host files to write).
 *
 * THAW_FUZZ_VERBOSE=1 prints the base's sections and each input's outcome
 * (for writing seeds).  Needs read-write /dev/kvm; without it, exits 77 with the reason.  The test
 * guest is found next to this executable (thaw-test-guest.elf, built in the
 * same directory) unless THAW_TEST_GUEST names it.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "snapshot/snap.h"
#include "vmm/state.h"
#include "vmm/vmm.h"

#define MAX_SECTIONS  32
#define MAX_SEC_BYTES (64u << 10)
#define MAX_EDITS     64
#define BASE_MEM      (16ull << 20)

typedef struct sec {
    uint32_t id;
    uint32_t version;
    uint8_t *data;
    size_t len;
} sec_t;

static char scratch[256]; /* private directory on tmpfs */
static char disk_path[300];
static sec_t base[MAX_SECTIONS];
static unsigned n_base;
static snap_mem_t *base_mem; /* the base's guest memory, written into every input's snapshot */
static snap_region_t regions[SNAP_MAX_REGIONS];
static size_t n_regions;

static bool verbose;

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", scratch, name);
}

static void rm_snapshot(const char *name)
{
    static const char *const files[] = {SNAP_MANIFEST_FILE, SNAP_STATE_FILE, SNAP_MEMORY_FILE,
                                        SNAP_WORKINGSET_FILE};
    char dir[512], p[600];
    path_in(dir, sizeof(dir), name);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void cleanup(void)
{
    snap_mem_destroy(base_mem);
    for (unsigned i = 0; i < n_base; i++)
        free(base[i].data);
    rm_snapshot("base");
    rm_snapshot("input");
    rm_snapshot("resaved");
    unlink(disk_path);
    rmdir(scratch);
}

static void die(const char *what, const thaw_err_t *err)
{
    fprintf(stderr, "fuzz-vm-state: %s: %s\n", what, err ? thaw_err_msg(err) : strerror(errno));
    exit(1);
}

static const char *guest_elf(void)
{
    const char *env = getenv("THAW_TEST_GUEST");
    if (env && *env)
        return env;
    static char p[PATH_MAX + 32];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0)
        die("readlink /proc/self/exe", NULL);
    exe[n] = '\0';
    snprintf(p, sizeof(p), "%s/thaw-test-guest.elf", dirname(exe));
    return p;
}

/* Boot the test guest, let it fill the console, snapshot it as "base". */
static void make_base(void)
{
    path_in(disk_path, sizeof(disk_path), "disk.img");
    int fd = open(disk_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
        die(disk_path, NULL);
    close(fd);
    vmm_config_t c = {
        .kernel_path = guest_elf(),
        .cmdline = "thaw.test=smpstream thaw.chunks=100000 thaw.iters=1000 thaw.seed=7",
        .mem_bytes = BASE_MEM,
        .vcpus = 2,
        .agent_console = true,
        .disk_path = disk_path,
    };
    thaw_err_t err;
    vmm_t *vm = NULL;
    if (vmm_create(&c, &vm, &err) < 0)
        die("vmm_create (base)", &err);
    if (vmm_start(vm, &err) < 0)
        die("vmm_start (base)", &err);
    /* The stream starts once the second vCPU is up; nobody reads, so the
     * guest ends up with its transmit queue full and waiting. */
    struct pollfd p = {.fd = vmm_agent_fd(vm), .events = POLLIN};
    if (poll(&p, 1, 30000) != 1)
        die("the test guest sent nothing in 30 s", NULL);
    usleep(50 * 1000);
    char dir[512];
    path_in(dir, sizeof(dir), "base");
    snap_write_opts_t wo = {.chunk_size = SNAP_CHUNK_MAX};
    if (vmm_snapshot(vm, dir, &wo, NULL, &err) < 0)
        die("vmm_snapshot (base)", &err);
    vmm_destroy(vm);

    snap_t *snap;
    if (snap_open(dir, &snap, &err) < 0)
        die("snap_open (base)", &err);
    /* Every section vmm_snapshot can write, in id order. */
    static const uint32_t firsts[] = {VMM_SEC_CONFIG, VMM_SEC_VM, VMM_SEC_VCPU, VMM_SEC_DEVICE};
    for (unsigned f = 0; f < 4; f++)
        for (uint32_t id = firsts[f]; id < firsts[f] + (f < 2 ? 1 : 0x100); id++) {
            const void *d;
            size_t len;
            uint32_t ver;
            if (snap_section_find(snap, id, &ver, &d, &len) < 0 || n_base == MAX_SECTIONS)
                continue;
            base[n_base] =
                (sec_t){.id = id, .version = ver, .data = malloc(len ? len : 1), .len = len};
            if (!base[n_base].data)
                die("out of memory", NULL);
            memcpy(base[n_base++].data, d, len);
        }
    if (snap_mem_attach(snap, SNAP_ENGINE_EAGER, NULL, &base_mem, &err) < 0)
        die("snap_mem_attach (base)", &err);
    n_regions = snap_mem_region_count(base_mem);
    for (size_t i = 0; i < n_regions; i++)
        snap_mem_region(base_mem, i, &regions[i]);
    snap_close(snap);
    for (unsigned i = 0; verbose && i < n_base; i++)
        printf("base section %u: id 0x%03x version %u, %zu bytes\n", i, base[i].id, base[i].version,
               base[i].len);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        printf("SKIP: fuzz-vm-state needs read-write /dev/kvm\n");
        exit(77);
    }
    verbose = getenv("THAW_FUZZ_VERBOSE") != NULL;
    snprintf(scratch, sizeof(scratch), "%s/thaw-fuzz-vmstate.XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(scratch))
        die("mkdtemp", NULL);
    atexit(cleanup);
    make_base();
    return 0;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int set_len(sec_t *s, size_t len)
{
    uint8_t *d = realloc(s->data, len ? len : 1);
    if (!d)
        return -1;
    if (len > s->len)
        memset(d + s->len, 0, len - s->len);
    s->data = d;
    s->len = len;
    return 0;
}

/* Apply the input's edits to a copy of the base; returns the section count. */
static unsigned apply_edits(const uint8_t *in, size_t size, sec_t *s)
{
    unsigned n = n_base;
    for (unsigned i = 0; i < n; i++) {
        s[i] = base[i];
        s[i].data = malloc(base[i].len ? base[i].len : 1);
        if (!s[i].data)
            abort();
        memcpy(s[i].data, base[i].data, base[i].len);
    }
    for (unsigned e = 0; e < MAX_EDITS && size >= 8 && n > 0; e++) {
        unsigned op = in[0] % 6, idx = in[1] % n;
        size_t len = (size_t)in[2] | (size_t)in[3] << 8;
        uint32_t arg = rd32(in + 4);
        in += 8;
        size -= 8;
        if (len > size)
            len = size;
        const uint8_t *d = in;
        in += len;
        size -= len;
        sec_t *t = &s[idx];
        switch (op) {
        case 0:
        case 1:
            if (!t->len)
                break;
            for (size_t off = arg % t->len, k = 0; k < len && off + k < t->len; k++)
                t->data[off + k] = op == 0 ? d[k] : (uint8_t)(t->data[off + k] ^ d[k]);
            break;
        case 2: {
            size_t want = arg % (2 * t->len + 4096);
            if (want <= MAX_SEC_BYTES && set_len(t, want) < 0)
                abort();
            break;
        }
        case 3:
            free(t->data);
            s[idx] = s[--n];
            break;
        case 4: {
            uint32_t id = arg % 0x400;
            unsigned k = 0;
            while (k < n && s[k].id != id)
                k++;
            if (k == n) {
                if (n == MAX_SECTIONS)
                    break;
                s[n++] = (sec_t){.id = id, .version = 1};
            }
            if (set_len(&s[k], 0) < 0 || set_len(&s[k], len) < 0)
                abort();
            memcpy(s[k].data, d, len);
            break;
        }
        case 5: {
            sec_t *o = &s[arg % n];
            uint8_t *td = t->data;
            size_t tl = t->len;
            t->data = o->data;
            t->len = o->len;
            o->data = td;
            o->len = tl;
            break;
        }
        }
    }
    return n;
}

/* The harness rule of the header: a disk is always this process's scratch disk. */
static void confine_disk(sec_t *s, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (s[i].id != VMM_SEC_CONFIG || s[i].len < sizeof(vmm_config_state_t))
            continue;
        vmm_config_state_t c;
        memcpy(&c, s[i].data, sizeof(c));
        if (!(c.flags & VMM_CFG_DISK))
            continue;
        memset(c.disk_path, 0, sizeof(c.disk_path));
        snprintf(c.disk_path, sizeof(c.disk_path), "%s", disk_path);
        memcpy(s[i].data, &c, sizeof(c));
    }
}

/* Let a restored VM run a moment (devices serve the queues its state
 * names), then snapshot it again: what was restored must also save. */
static void run_briefly(vmm_t *vm)
{
    thaw_err_t err;
    if (vmm_start(vm, &err) < 0)
        return;
    int fd = vmm_agent_fd(vm);
    char buf[4096];
    for (int i = 0; i < 3; i++) {
        vmm_exit_t ex;
        if (vmm_wait(vm, 2, &ex) == 1)
            break;
        while (fd >= 0 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
            ;
    }
    char dir[512];
    path_in(dir, sizeof(dir), "resaved");
    snap_write_opts_t wo = {.chunk_size = SNAP_CHUNK_MAX};
    if (vmm_snapshot(vm, dir, &wo, NULL, &err) < 0 && verbose)
        printf("resave: %s\n", thaw_err_msg(&err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sec_t s[MAX_SECTIONS];
    unsigned n = apply_edits(data, size, s);
    confine_disk(s, n);
    snap_section_t out[MAX_SECTIONS];
    for (unsigned i = 0; i < n; i++)
        out[i] = (snap_section_t){s[i].id, s[i].version, s[i].data, s[i].len};
    char dir[512];
    path_in(dir, sizeof(dir), "input");
    snap_write_opts_t wo = {.chunk_size = SNAP_CHUNK_MAX, .kind = "vm"};
    thaw_err_t err;
    int rc = snap_write(dir, regions, n_regions, out, n, &wo, NULL, &err);
    for (unsigned i = 0; i < n; i++)
        free(s[i].data);
    if (rc < 0)
        die("snap_write", &err); /* the harness's own files: not the input's fault */

    snap_t *snap;
    if (snap_open(dir, &snap, &err) < 0)
        die("snap_open", &err);
    vmm_restore_opts_t ro = {.engine = SNAP_ENGINE_EAGER};
    vmm_t *vm = NULL;
    rc = vmm_restore(snap, &ro, &vm, NULL, &err);
    snap_close(snap);
    if (rc < 0 && size < 8) {
        fprintf(stderr, "fuzz-vm-state: the unchanged base did not restore: %s\n",
                thaw_err_msg(&err));
        abort();
    }
    if (verbose)
        printf("%zu-byte input, %u sections: %s\n", size, n,
               rc < 0 ? thaw_err_msg(&err) : "restored");
    if (rc == 0) {
        run_briefly(vm);
        vmm_destroy(vm);
    }
    return 0;
}
