// SPDX-License-Identifier: Apache-2.0
/* Helpers for the snapshot tests and snapbench; see snaptest.h. */
#include "snaptest.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void st_fill_random(void *p, size_t size, uint64_t seed)
{
    uint64_t s = seed;
    char *b = p;
    size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        uint64_t v = splitmix(&s);
        memcpy(b + i, &v, 8);
    }
    for (; i < size; i++)
        b[i] = (char)splitmix(&s);
}

static void fill_text(char *b, size_t len, uint64_t n)
{
    char line[96];
    size_t off = 0;
    while (off < len) {
        int k = snprintf(line, sizeof(line), "page %llu: the quick brown fox %llu jumps\n",
                         (unsigned long long)n, (unsigned long long)(off / 64));
        size_t take = (size_t)k < len - off ? (size_t)k : len - off;
        memcpy(b + off, line, take);
        off += take;
    }
}

void st_fill_guest(void *p, size_t size, uint64_t seed)
{
    char *b = p;
    uint64_t s = seed * 7919 + 1;
    for (size_t blk = 0; blk < size; blk += 65536) {
        size_t blen = size - blk < 65536 ? size - blk : 65536;
        unsigned kind = (unsigned)(splitmix(&s) % 10);
        for (size_t pg = 0; pg < blen; pg += 4096) {
            size_t plen = blen - pg < 4096 ? blen - pg : 4096;
            unsigned mix = (unsigned)(splitmix(&s) % 16);
            char *q = b + blk + pg;
            unsigned k = kind < 4 ? 0 : kind < 8 ? 1 : 2;
            if (mix == 0) /* a stray page of another kind */
                k = (k + 1) % 3;
            if (k == 0)
                memset(q, 0, plen);
            else if (k == 1)
                fill_text(q, plen, blk + pg + seed);
            else
                st_fill_random(q, plen, splitmix(&s));
        }
    }
}

char *st_tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof(tmpl), "%s/thaw-snap-test.XXXXXX", t && *t ? t : "/tmp");
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

void st_rmtree(const char *path)
{
    if (path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *st_path(const char *dir, const char *name)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf), "%s/%s", dir, name);
    return buf;
}

static void *map_anon(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        abort();
    return p;
}

void st_image_make(st_image_t *img, uint64_t seed, bool three)
{
    memset(img, 0, sizeof(*img));
    size_t s0 = (5u << 20) + (12u << 10);
    img->regions[0] = (snap_region_t){.guest_addr = 0, .host = map_anon(s0), .size = s0};
    st_fill_guest(img->regions[0].host, s0, seed);
    memset((char *)img->regions[0].host + (2u << 20), 0, 2u << 20);
    size_t s1 = (1u << 20) + (4u << 10);
    img->regions[1] =
        (snap_region_t){.guest_addr = 0x100000000ull, .host = map_anon(s1), .size = s1};
    st_fill_random(img->regions[1].host, s1, seed ^ 0xabcdef);
    img->nregions = 2;
    if (three) {
        size_t s2 = 256u << 10;
        img->regions[2] =
            (snap_region_t){.guest_addr = 0x200000000ull, .host = map_anon(s2), .size = s2};
        img->nregions = 3;
    }
}

void st_image_free(st_image_t *img)
{
    for (size_t i = 0; i < img->nregions; i++)
        munmap(img->regions[i].host, img->regions[i].size);
    img->nregions = 0;
}

static const char sec1[] = "vcpu state: rax=1 rbx=2";

void st_write(const char *dir, const st_image_t *img, uint32_t chunk_size, int level,
              unsigned threads, snap_write_stats_t *stats)
{
    static char big[100000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 31);
    snap_section_t secs[] = {
        {.id = 1, .version = 3, .data = sec1, .len = sizeof(sec1)},
        {.id = 7, .version = 1, .data = big, .len = sizeof(big)},
    };
    snap_write_opts_t o = {.chunk_size = chunk_size,
                           .lz4_level = level,
                           .threads = threads,
                           .kind = "test",
                           .metadata_json = "{\"template\": \"py311\", \"vcpus\": 2}"};
    thaw_err_t err;
    thaw_err_clear(&err);
    int r = snap_write(dir, img->regions, img->nregions, secs, 2, &o, stats, &err);
    if (r != 0) {
        fprintf(stderr, "snap_write: %s\n", err.msg);
        abort();
    }
}

int st_mem_equals(const snap_mem_t *mem, const st_image_t *img)
{
    if (snap_mem_region_count(mem) != img->nregions)
        return -1;
    for (size_t i = 0; i < img->nregions; i++) {
        snap_region_t r;
        snap_mem_region(mem, i, &r);
        if (r.size != img->regions[i].size || r.guest_addr != img->regions[i].guest_addr)
            return -1;
        if (memcmp(r.host, img->regions[i].host, r.size) != 0)
            return -1;
    }
    return 0;
}

int st_read_all(const char *path, void **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc((size_t)n + 1);
    *len = fread(*buf, 1, (size_t)n, f);
    fclose(f);
    return 0;
}

int st_write_all(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(buf, 1, len, f);
    fclose(f);
    return w == len ? 0 : -1;
}

void st_load_table(const char *dir, struct snap__mem_header *h, struct snap__chunk_entry **t)
{
    int fd = open(st_path(dir, SNAP_MEMORY_FILE), O_RDONLY);
    if (fd < 0 || pread(fd, h, sizeof(*h), 0) != (ssize_t)sizeof(*h))
        abort();
    size_t n = h->nchunks * sizeof(**t);
    *t = malloc(n);
    if (pread(fd, *t, n, (off_t)h->table_offset) != (ssize_t)n)
        abort();
    close(fd);
}

void st_store_table(const char *dir, const struct snap__mem_header *h,
                    const struct snap__chunk_entry *t)
{
    int fd = open(st_path(dir, SNAP_MEMORY_FILE), O_WRONLY);
    size_t n = h->nchunks * sizeof(*t);
    if (fd < 0 || pwrite(fd, h, sizeof(*h), 0) != (ssize_t)sizeof(*h) ||
        pwrite(fd, t, n, (off_t)h->table_offset) != (ssize_t)n)
        abort();
    close(fd);
}

void st_fix_memory_crcs(const char *dir)
{
    struct snap__mem_header h;
    struct snap__chunk_entry *t;
    st_load_table(dir, &h, &t);
    h.table_crc32c = thaw_crc32c(0, t, h.nchunks * sizeof(*t));
    h.header_crc32c = 0;
    h.header_crc32c = thaw_crc32c(0, &h, sizeof(h));
    st_store_table(dir, &h, t);
    free(t);
    st_fix_manifest(dir);
}

static json_t *manifest_load(const char *dir)
{
    return json_load_file(st_path(dir, SNAP_MANIFEST_FILE), 0, NULL);
}

static void manifest_store(const char *dir, json_t *root)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s", st_path(dir, SNAP_MANIFEST_FILE));
    if (json_dump_file(root, path, JSON_INDENT(2)) != 0)
        abort();
}

void st_fix_manifest(const char *dir)
{
    json_t *root = manifest_load(dir);
    if (!root)
        return; /* a test that broke the manifest on purpose */
    void *buf;
    size_t len;
    json_t *files = json_object_get(root, "files");
    if (st_read_all(st_path(dir, SNAP_STATE_FILE), &buf, &len) == 0) {
        json_t *s = json_object_get(files, SNAP_STATE_FILE);
        json_object_set_new(s, "size", json_integer((json_int_t)len));
        json_object_set_new(s, "crc32c", json_integer(thaw_crc32c(0, buf, len)));
        free(buf);
    }
    struct stat st;
    if (stat(st_path(dir, SNAP_MEMORY_FILE), &st) == 0) {
        json_t *m = json_object_get(files, SNAP_MEMORY_FILE);
        json_object_set_new(m, "size", json_integer((json_int_t)st.st_size));
        struct snap__mem_header h;
        int fd = open(st_path(dir, SNAP_MEMORY_FILE), O_RDONLY);
        if (fd >= 0 && pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h))
            json_object_set_new(m, "table_crc32c", json_integer(h.table_crc32c));
        if (fd >= 0)
            close(fd);
    }
    manifest_store(dir, root);
    json_decref(root);
}

int st_manifest_set(const char *dir, const char *key, long long value, bool del)
{
    json_t *root = manifest_load(dir);
    if (!root)
        return -1;
    char k[256];
    snprintf(k, sizeof(k), "%s", key);
    json_t *obj = root;
    char *save = NULL, *tok = strtok_r(k, "/", &save), *next;
    while ((next = strtok_r(NULL, "/", &save))) {
        /* "regions/0/size": array indices are numbers */
        json_t *child =
            json_is_array(obj) ? json_array_get(obj, (size_t)atoi(tok)) : json_object_get(obj, tok);
        if (!child) {
            json_decref(root);
            return -1;
        }
        obj = child;
        tok = next;
    }
    if (del)
        json_object_del(obj, tok);
    else
        json_object_set_new(obj, tok, json_integer(value));
    manifest_store(dir, root);
    json_decref(root);
    return 0;
}

uint32_t st_dio_align(const char *dir, uint32_t *mem_align)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/.dio-probe.XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0)
        return 0;
    unlink(path);
    struct statx stx;
    int r = statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx);
    close(fd);
    if (r < 0 || !(stx.stx_mask & STATX_DIOALIGN))
        return 0;
    uint32_t off = stx.stx_dio_offset_align, mem = stx.stx_dio_mem_align;
    if (!off || !mem || off > 4096 || mem > 4096 || 4096 % off || 4096 % mem)
        return 0;
    if (mem_align)
        *mem_align = mem;
    return off;
}

void st_region_alloc(snap_region_t *r, uint64_t guest_addr, size_t size, size_t host_off)
{
    char *m = map_anon(size + host_off);
    *r = (snap_region_t){.guest_addr = guest_addr, .host = m + host_off, .size = size};
}

void st_region_free(snap_region_t *r, size_t host_off)
{
    if (r->host)
        munmap((char *)r->host - host_off, r->size + host_off);
    r->host = NULL;
}
