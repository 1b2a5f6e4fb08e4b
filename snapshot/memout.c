// SPDX-License-Identifier: Apache-2.0
/*
 * memory.bin output stream: the writer appends chunk payloads in file order
 * and this file turns them into a few large, aligned writes that run while
 * the writer compresses the next batch.
 *
 * Why not plain buffered pwritev: a fresh snapshot is gigabytes written
 * once, and pushing it through the page cache costs a page allocation and a
 * copy per 4 KiB in the kernel, serialised on the inode lock, plus a long
 * fsync at the end.  On the reference machine (a VM whose freed memory goes
 * back to the host) that capped the writer at 0.2-0.6 GB/s while the disk
 * takes 1.5-2.5 GB/s with O_DIRECT.  So when the file system reports direct
 * I/O alignment (statx STATX_DIOALIGN) the file is written with O_DIRECT
 * from page-aligned staging buffers; otherwise, or when the caller asks to
 * keep the file in the page cache, through the page cache with writeback
 * started as each buffer completes (sync_file_range) so the final fsync is
 * short.  Either way up to SNAP__OUT_BUFS buffers are in flight on an
 * io_uring (synchronous pwrite when io_uring is unavailable), and the bytes
 * in the file are the same.
 */
#include "snapshot/snap-int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

/* Offsets and lengths of direct writes are multiples of this (a page; every
 * file system that reports DIO alignment asks for this or less). */
#define ALIGN 4096u

static bool dio_possible(int fd)
{
    struct statx stx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) < 0 || !(stx.stx_mask & STATX_DIOALIGN))
        return false;
    return stx.stx_dio_offset_align && stx.stx_dio_mem_align &&
           ALIGN % stx.stx_dio_offset_align == 0 && ALIGN % stx.stx_dio_mem_align == 0;
}

int snap__out_init(snap__out_t *o, int fd, uint64_t start, bool buffered, thaw_err_t *err)
{
    *o = (snap__out_t){.fd = fd, .cur_off = start, .start = start};
    if (start % ALIGN)
        return thaw_err_set(err, EINVAL, SNAP_MEMORY_FILE ": data offset %llu is not aligned",
                            (unsigned long long)start);
    /* One mapping for all buffers: page-aligned, as O_DIRECT wants. */
    void *m = mmap(NULL, (size_t)SNAP__OUT_BUFS * SNAP__OUT_BUF_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return thaw_err_sys(err, errno, SNAP_MEMORY_FILE ": staging buffers");
    o->mem = m;
    if (!buffered && dio_possible(fd)) {
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0)
            o->direct = true;
    }
    o->ring_ok = io_uring_queue_init(SNAP__OUT_BUFS, &o->ring, 0) == 0;
    thaw_debug("snap", "memout", "direct=%d uring=%d", o->direct, o->ring_ok);
    return 0;
}

static char *buf(snap__out_t *o, unsigned i)
{
    return o->mem + (size_t)i * SNAP__OUT_BUF_SIZE;
}

static int write_error(snap__out_t *o, int e, uint64_t off, thaw_err_t *err)
{
    if (!o->error)
        o->error = -e;
    return thaw_err_sys(err, e, SNAP_MEMORY_FILE ": write at %llu", (unsigned long long)off);
}

/* The bytes of a completed buffer are on their way to disk: start their
 * writeback now (page cache path only) so the final fsync has little left. */
static void writeback(snap__out_t *o, uint64_t off, size_t len)
{
    if (!o->direct)
        (void)sync_file_range(o->fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
}

static int pwrite_all(snap__out_t *o, const char *p, size_t len, uint64_t off, thaw_err_t *err)
{
    uint64_t start = off;
    size_t total = len;
    while (len) {
        ssize_t n = pwrite(o->fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return write_error(o, errno, off, err);
        if (n == 0)
            return write_error(o, EIO, off, err);
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    writeback(o, start, total);
    return 0;
}

static void submit(snap__out_t *o, unsigned i)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&o->ring); /* never NULL: one per buffer */
    const struct snap__out_io *io = &o->io[i];
    io_uring_prep_write(sqe, o->fd, buf(o, i) + io->done, (unsigned)(io->len - io->done),
                        io->off + io->done);
    io_uring_sqe_set_data64(sqe, i);
}

static void retire(snap__out_t *o, struct snap__out_io *io)
{
    io->busy = false;
    o->inflight--;
}

/* Reap one completion (waiting for it); resubmits the rest of a short write. */
static int reap_one(snap__out_t *o, thaw_err_t *err)
{
    struct io_uring_cqe *cqe;
    int r;
    do
        r = io_uring_wait_cqe(&o->ring, &cqe);
    while (r == -EINTR);
    if (r < 0) {
        /* The ring itself failed: nothing more will complete.  Buffers still
         * pinned by the kernel stay valid until it drops them. */
        o->inflight = 0;
        for (unsigned i = 0; i < SNAP__OUT_BUFS; i++)
            o->io[i].busy = false;
        return write_error(o, -r, o->cur_off, err);
    }
    unsigned i = (unsigned)io_uring_cqe_get_data64(cqe);
    int res = cqe->res;
    io_uring_cqe_seen(&o->ring, cqe);
    struct snap__out_io *io = &o->io[i];
    if (res == -EINTR || res == -EAGAIN) {
        res = 0; /* retry the same range */
    } else if (res < 0 || (res == 0 && io->done < io->len)) {
        retire(o, io);
        return write_error(o, res < 0 ? -res : EIO, io->off + io->done, err);
    }
    io->done += (size_t)res;
    if (io->done < io->len && !o->error) {
        submit(o, i);
        io_uring_submit(&o->ring);
        return 0;
    }
    retire(o, io);
    writeback(o, io->off, io->len);
    return 0;
}

/* Send buffer cur (fill bytes, padded with zeros to ALIGN for O_DIRECT;
 * the file is cut to its real size at the end) and move to the next one. */
static int flush(snap__out_t *o, thaw_err_t *err)
{
    if (o->fill == 0)
        return 0;
    size_t len = o->fill;
    if (o->direct && len % ALIGN) {
        size_t pad = ALIGN - len % ALIGN;
        memset(buf(o, o->cur) + len, 0, pad);
        len += pad;
    }
    int r;
    if (!o->ring_ok) {
        r = pwrite_all(o, buf(o, o->cur), len, o->cur_off, err);
    } else {
        o->io[o->cur] = (struct snap__out_io){.busy = true, .off = o->cur_off, .len = len};
        o->inflight++;
        submit(o, o->cur);
        io_uring_submit(&o->ring);
        r = 0;
    }
    o->cur_off += o->fill;
    o->fill = 0;
    o->cur = (o->cur + 1) % SNAP__OUT_BUFS;
    /* The next buffer must be idle before it is filled again. */
    while (r == 0 && o->ring_ok && o->io[o->cur].busy)
        r = reap_one(o, err);
    return r;
}

int snap__out_append(snap__out_t *o, const void *p, size_t len, thaw_err_t *err)
{
    const char *s = p;
    if (o->error)
        return o->error;
    while (len) {
        size_t n = SNAP__OUT_BUF_SIZE - o->fill;
        if (n > len)
            n = len;
        memcpy(buf(o, o->cur) + o->fill, s, n);
        o->fill += n;
        s += n;
        len -= n;
        int r;
        if (o->fill == SNAP__OUT_BUF_SIZE && (r = flush(o, err)) < 0)
            return r;
    }
    return 0;
}

int snap__out_finish(snap__out_t *o, uint64_t *end, thaw_err_t *err)
{
    int r = o->error ? o->error : flush(o, err);
    /* Wait for everything, even after an error: the buffers are freed next. */
    while (o->ring_ok && o->inflight > 0) {
        int q = reap_one(o, r < 0 ? NULL : err);
        if (q < 0 && r == 0)
            r = q;
    }
    if (r < 0)
        return r;
    if (o->direct) {
        int fl = fcntl(o->fd, F_GETFL);
        if (fl < 0 || fcntl(o->fd, F_SETFL, fl & ~O_DIRECT) < 0)
            return thaw_err_sys(err, errno, SNAP_MEMORY_FILE ": clear O_DIRECT");
        o->direct = false;
        /* The last direct write was padded to ALIGN: cut it back. */
        if (ftruncate(o->fd, (off_t)o->cur_off) < 0)
            return thaw_err_sys(err, errno, SNAP_MEMORY_FILE ": truncate");
    }
    *end = o->cur_off;
    return 0;
}

void snap__out_destroy(snap__out_t *o)
{
    while (o->ring_ok && o->inflight > 0)
        (void)reap_one(o, NULL);
    if (o->ring_ok)
        io_uring_queue_exit(&o->ring);
    o->ring_ok = false;
    if (o->mem)
        munmap(o->mem, (size_t)SNAP__OUT_BUFS * SNAP__OUT_BUF_SIZE);
    o->mem = NULL;
}
