// SPDX-License-Identifier: Apache-2.0
/*
 * snap_write: the atomic directory dance.  Everything is written under a
 * temporary name beside the target, each file and the directory fsync'ed,
 * then the directory renamed into place (swapped with RENAME_EXCHANGE when
 * an old snapshot is there, which is then removed) and the parent fsync'ed.
 * So the target name always holds a complete snapshot or nothing.
 */
#include "snapshot/snap-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/clock.h"
#include "common/crc32c.h"
#include "common/log.h"

static atomic_uint tmp_counter;

static int fsync_parent(const char *dir, thaw_err_t *err)
{
    _cleanup_free_ char *copy = strdup(dir);
    if (!copy)
        return thaw_err_sys(err, ENOMEM, "fsync parent");
    const char *parent = dirname(copy);
    _cleanup_close_ int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0 || fsync(pfd) < 0)
        return thaw_err_sys(err, errno, "fsync %s", parent);
    return 0;
}

/*
 * Remove "<dir>.tmp.<pid>.<n>" directories whose writer is dead (killed
 * mid-write): they are never valid targets and only take space.  A live
 * pid, even a recycled one, keeps its directory: being conservative is
 * cheap here.
 */
static void sweep_stale(const char *dir)
{
    _cleanup_free_ char *c1 = strdup(dir), *c2 = strdup(dir);
    if (!c1 || !c2)
        return;
    const char *parent = dirname(c1), *base = basename(c2);
    DIR *d = opendir(parent);
    if (!d)
        return;
    size_t blen = strlen(base);
    struct dirent *de;
    while ((de = readdir(d))) {
        int pid, n, end = 0;
        if (strncmp(de->d_name, base, blen) != 0 || strncmp(de->d_name + blen, ".tmp.", 5) != 0)
            continue;
        if (sscanf(de->d_name + blen + 5, "%d.%d%n", &pid, &n, &end) != 2 ||
            de->d_name[blen + 5 + (size_t)end] != '\0' || pid <= 0)
            continue;
        if (kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        char path[4096];
        if (snprintf(path, sizeof(path), "%s/%s", parent, de->d_name) < (int)sizeof(path)) {
            thaw_info("snap", "stale_tmp_removed", "path=%s", path);
            snap__remove_tree(path);
        }
    }
    closedir(d);
}

static int write_into(int dfd, const snap_t *layout, const snap_region_t *regions,
                      const snap_section_t *sections, size_t nsections, const snap_write_opts_t *o,
                      snap_write_stats_t *stats, thaw_err_t *err)
{
    struct snap__manifest_files files = {0};
    int r;
    {
        _cleanup_close_ int fd =
            openat(dfd, SNAP_MEMORY_FILE, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
            return thaw_err_sys(err, errno, "create " SNAP_MEMORY_FILE);
        unsigned threads = o->threads > SNAP_MAX_THREADS ? SNAP_MAX_THREADS : o->threads;
        if ((r = snap__memfile_write(fd, layout, regions, o->lz4_level, threads ? threads : 1,
                                     o->buffered, stats, &files.mem_table_crc, &files.mem_size,
                                     err)) < 0)
            return r;
        if (fsync(fd) < 0)
            return thaw_err_sys(err, errno, "fsync " SNAP_MEMORY_FILE);
    }
    _cleanup_free_ void *state = NULL;
    size_t state_len = 0;
    if ((r = snap__state_encode(sections, nsections, &state, &state_len, err)) < 0)
        return r;
    files.state_size = state_len;
    files.state_crc = thaw_crc32c(0, state, state_len);
    if (stats)
        stats->state_bytes = state_len;
    if ((r = snap__write_file_at(dfd, SNAP_STATE_FILE, state, state_len, err)) < 0)
        return r;
    /* The manifest goes last: it names the other files' sizes and checksums. */
    _cleanup_free_ char *manifest = NULL;
    if ((r = snap__manifest_encode(layout, o->lz4_level, o->metadata_json, &files, &manifest,
                                   err)) < 0)
        return r;
    if ((r = snap__write_file_at(dfd, SNAP_MANIFEST_FILE, manifest, strlen(manifest), err)) < 0)
        return r;
    if (fsync(dfd) < 0)
        return thaw_err_sys(err, errno, "fsync directory");
    return 0;
}

int snap_write(const char *dir, const snap_region_t *regions, size_t nregions,
               const snap_section_t *sections, size_t nsections, const snap_write_opts_t *opts,
               snap_write_stats_t *stats, thaw_err_t *err)
{
    uint64_t t0 = thaw_now_ns();
    snap_write_opts_t o = opts ? *opts : (snap_write_opts_t){0};
    if (stats)
        *stats = (snap_write_stats_t){0};
    if (!dir || !*dir)
        return thaw_err_set(err, EINVAL, "write snapshot: no directory");
    if (nregions && !regions)
        return thaw_err_set(err, EINVAL, "write snapshot '%s': no regions", dir);
    if (nsections && !sections)
        return thaw_err_set(err, EINVAL, "write snapshot '%s': no sections", dir);

    struct snap__region regs[SNAP_MAX_REGIONS];
    if (nregions > SNAP_MAX_REGIONS)
        return thaw_err_set(err, E2BIG, "write snapshot '%s': %zu regions, the limit is %u", dir,
                            nregions, SNAP_MAX_REGIONS);
    for (size_t i = 0; i < nregions; i++) {
        if (!regions[i].host)
            return thaw_err_set(err, EINVAL, "write snapshot '%s': region %zu has no memory", dir,
                                i);
        regs[i] =
            (struct snap__region){.guest_addr = regions[i].guest_addr, .size = regions[i].size};
    }
    const char *kind = o.kind ? o.kind : "generic";
    if (strlen(kind) > SNAP_MAX_KIND_LEN)
        return thaw_err_set(err, EINVAL, "write snapshot '%s': kind is longer than %u", dir,
                            SNAP_MAX_KIND_LEN);
    snap_t layout = {
        .kind = (char *)kind,
        .created = (int64_t)time(NULL),
        .chunk_size = o.chunk_size ? o.chunk_size : SNAP_CHUNK_DEFAULT,
        .nregions = nregions,
        .regions = regs,
    };
    int r;
    if ((r = snap__layout_regions(&layout, err)) < 0)
        return thaw_err_wrap(err, "write snapshot '%s'", dir);

    sweep_stale(dir);
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%d.%u", dir, (int)getpid(),
                     atomic_fetch_add(&tmp_counter, 1));
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return thaw_err_set(err, ENAMETOOLONG, "write snapshot '%s': path too long", dir);
    /* Owner only: memory.bin is the guest's RAM, secrets of its warm-up included. */
    if (mkdir(tmp, 0700) < 0)
        return thaw_err_sys(err, errno, "write snapshot '%s': mkdir %s", dir, tmp);
    {
        _cleanup_close_ int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
            r = thaw_err_sys(err, errno, "open %s", tmp);
            goto fail;
        }
        if ((r = write_into(dfd, &layout, regions, sections, nsections, &o, stats, err)) < 0)
            goto fail;
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_NOREPLACE) < 0) {
        if (errno != EEXIST) {
            r = thaw_err_sys(err, errno, "rename %s", tmp);
            goto fail;
        }
        /* Swap with the old snapshot: the name is never empty or partial. */
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) < 0) {
            r = thaw_err_sys(err, errno, "replace the old snapshot");
            goto fail;
        }
        if ((r = fsync_parent(dir, err)) < 0)
            goto fail; /* tmp now holds the old snapshot: drop it anyway */
        snap__remove_tree(tmp);
    } else if ((r = fsync_parent(dir, err)) < 0) {
        return thaw_err_wrap(err, "write snapshot '%s'", dir);
    }
    if (stats)
        stats->total_ns = thaw_now_ns() - t0;
    thaw_debug("snap", "written", "dir=%s chunks=%llu", dir, (unsigned long long)layout.nchunks);
    return 0;
fail:
    snap__remove_tree(tmp);
    return thaw_err_wrap(err, "write snapshot '%s'", dir);
}
