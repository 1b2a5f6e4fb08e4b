// SPDX-License-Identifier: Apache-2.0
/*
 * memory.bin output stream: the writer appends chunk payloads in file order
 * and this file turns them into large writes that run on an io_uring while
 * the writer compresses the next batch.
 *
 * Why not plain buffered pwritev: a fresh snapshot is gigabytes written
 * once, and pushing it through the page cache costs a page allocation and a
 * copy per 4 KiB in the kernel, serialised on the inode lock, plus a long
 * fsync at the end.  On the reference machine (a VM where touching a fresh
 * page costs ~5 us) that capped the writer at 0.2-0.6 GB/s while the disk
 * takes 1.5-2.5 GB/s with O_DIRECT.  So when the file system reports direct
 * I/O alignment (statx STATX_DIOALIGN) the file is written with O_DIRECT
 * after its first SNAP__OUT_DIRECT_AFTER bytes (small files are cheaper
 * buffered); otherwise, or when the caller asks to keep the file in the
 * page cache, through the page cache with writeback started as each write
 * completes (sync_file_range) so the final fsync is short.
 *
 * Two kinds of appends:
 *  - copied (lz4 output, short raw runs): into small page-aligned staging
 *    buffers, written when full;
 *  - in place (long runs of raw chunks): written straight from the caller's
 *    memory, no copy.  O_DIRECT needs the file offset aligned, so the staged
 *    bytes before such a run are padded with zeros up to the file system's
 *    DIO alignment (at most 511 bytes on the usual 512).  Readers never look
 *    between chunks (docs/snapshot-format.md), so the padding is invisible.
 * Synchronous pwrite replaces io_uring where it is not available (some
 * container seccomp profiles refuse io_uring_setup).
 */
#include "snapshot/snap-int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

/* No completion at all for this long, with writes in flight, is a stall.
 * A healthy ring completes one of at most SNAP__OUT_QD writes of at most
 * DIRECT_MAX bytes well within it, even behind writeback throttling. */
#define STALL_MS_DEFAULT 30000u
/* user_data of the cancel request (write slots are 0..SNAP__OUT_QD-1; not
 * UINT64_MAX, which liburing keeps for its own timeouts on old kernels). */
#define CANCEL_TAG       (UINT64_MAX - 1)

/* A piece written straight from the caller's memory, at most. */
#define DIRECT_MAX (8u << 20)
/* Staging buffers are page-aligned and a page multiple, so they satisfy any
 * DIO alignment up to this; larger requirements mean no O_DIRECT. */
#define ALIGN_MAX  4096u

static uint32_t dio_align(int fd, uint32_t *mem_align)
{
    struct statx stx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) < 0 || !(stx.stx_mask & STATX_DIOALIGN))
        return 0;
    uint32_t off = stx.stx_dio_offset_align, mem = stx.stx_dio_mem_align;
    if (!off || !mem || off > ALIGN_MAX || mem > ALIGN_MAX || ALIGN_MAX % off || ALIGN_MAX % mem)
        return 0;
    *mem_align = mem;
    return off;
}

static char *buf(snap__out_t *o, unsigned i)
{
    return o->mem + (size_t)i * SNAP__OUT_BUF_SIZE;
}

int snap__out_init(snap__out_t *o, int fd, uint64_t start, bool buffered, thaw_err_t *err)
{
    *o = (snap__out_t){.fd = fd, .cur_off = start, .start = start, .align = 1, .mem_align = 1};
    if (start % ALIGN_MAX)
        return thaw_err_set(err, EINVAL, SNAP_MEMORY_FILE ": data offset %llu is not aligned",
                            (unsigned long long)start);
    void *m = mmap(NULL, (size_t)SNAP__OUT_BUFS * SNAP__OUT_BUF_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return thaw_err_sys(err, errno, SNAP_MEMORY_FILE ": staging buffers");
    o->mem = m;
    /* Where O_DIRECT will be used, the stream is laid out for it from the
     * start (padding before in-place runs), so switching is always possible
     * at a flush. */
    uint32_t mem_align = 0, align = buffered ? 0 : dio_align(fd, &mem_align);
    if (align) {
        o->want_direct = true;
        o->align = align;
        o->mem_align = mem_align;
    }
    o->ring_ok = io_uring_queue_init(SNAP__OUT_QD, &o->ring, 0) == 0;
    thaw_debug("snap", "memout", "direct_after=%d align=%u uring=%d",
               o->want_direct ? (int)SNAP__OUT_DIRECT_AFTER : -1, o->align, o->ring_ok);
    return 0;
}

static int write_error(snap__out_t *o, int e, uint64_t off, thaw_err_t *err)
{
    if (!o->error)
        o->error = -e;
    return thaw_err_sys(err, e, SNAP_MEMORY_FILE ": write at %llu", (unsigned long long)off);
}

/* Written bytes go to disk: start their writeback now (page cache path
 * only) so the final fsync has little left to do. */
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

static void retire(snap__out_t *o, struct snap__out_io *io)
{
    if (io->buf >= 0)
        o->buf_busy[io->buf] = false;
    io->busy = false;
    o->inflight--;
}

/* Queue slot's (remaining) write.  A submit the kernel refuses retires the
 * slot with an error: waiting for its completion would wait forever. */
static int submit(snap__out_t *o, unsigned slot, thaw_err_t *err)
{
    struct snap__out_io *io = &o->io[slot];
    struct io_uring_sqe *sqe = io_uring_get_sqe(&o->ring); /* never NULL: one per slot */
    io_uring_prep_write(sqe, o->fd, io->p + io->done, (unsigned)(io->len - io->done),
                        io->off + io->done);
    io_uring_sqe_set_data64(sqe, slot);
    int r;
    do
        r = io_uring_submit(&o->ring);
    while (r == -EINTR);
    if (r >= 0)
        return 0;
    uint64_t at = io->off + io->done;
    retire(o, io);
    return write_error(o, -r, at, err);
}

static void retire_all(snap__out_t *o)
{
    for (unsigned i = 0; i < SNAP__OUT_QD; i++)
        if (o->io[i].busy)
            retire(o, &o->io[i]);
}

/*
 * Writes in flight and nothing completing.  Seen here (Linux 6.18, 1 in a
 * few thousand snapshot writes): the kernel had taken both writes off the
 * ring, completed neither, and the process had no io_uring worker left to
 * run them, so an unbounded wait hung the writer, and thawd's worker with
 * it.  The first stall cancels everything in flight: what the kernel gives
 * back (-ECANCELED) is written synchronously, as is everything after it.
 * A second stall gives up with an error; the ring is torn down as usual and
 * the writes it never ran can no longer touch memory that is gone (the
 * kernel copies from user memory at run time, and fails on an unmapped page).
 */
static int stall(snap__out_t *o, thaw_err_t *err)
{
    if (o->stalled) {
        uint64_t at = o->cur_off;
        retire_all(o);
        return write_error(o, ETIMEDOUT, at, err);
    }
    o->stalled = true;
    thaw_warn("snap", "memout_stall", "inflight=%u after_ms=%u action=cancel", o->inflight,
              o->stall_ms ? o->stall_ms : STALL_MS_DEFAULT);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&o->ring);
    if (!sqe)
        return 0; /* every slot's SQE is queued: the next wait gives up */
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, CANCEL_TAG);
    (void)io_uring_submit(&o->ring);
    return 0;
}

/* The rest of a write the ring gave back, written synchronously. */
static int finish_sync(snap__out_t *o, struct snap__out_io *io, thaw_err_t *err)
{
    int r =
        o->error ? 0 : pwrite_all(o, io->p + io->done, io->len - io->done, io->off + io->done, err);
    retire(o, io);
    return r;
}

/* Reap one completion (waiting for it); resubmits the rest of a short write. */
static int reap_one(snap__out_t *o, thaw_err_t *err)
{
    struct io_uring_cqe *cqe;
    int r;
    for (;;) {
        unsigned ms = o->stall_ms ? o->stall_ms : STALL_MS_DEFAULT;
        struct __kernel_timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
        r = io_uring_wait_cqe_timeout(&o->ring, &cqe, &ts);
        if (r == -EINTR)
            continue;
        if (r != -ETIME)
            break;
        if ((r = stall(o, err)) < 0)
            return r;
    }
    if (r < 0) {
        /* The ring itself failed: nothing more will complete.  Memory still
         * pinned by the kernel stays valid until it lets go. */
        retire_all(o);
        return write_error(o, -r, o->cur_off, err);
    }
    uint64_t tag = io_uring_cqe_get_data64(cqe);
    int res = cqe->res;
    io_uring_cqe_seen(&o->ring, cqe);
    if (tag == CANCEL_TAG) {
        thaw_debug("snap", "memout_cancel", "res=%d", res);
        return 0;
    }
    struct snap__out_io *io = &o->io[tag];
    if (res == -ECANCELED)
        return finish_sync(o, io, err); /* given back after a stall */
    if (res == -EINTR || res == -EAGAIN) {
        res = 0; /* retry the same range */
    } else if (res < 0 || (res == 0 && io->done < io->len)) {
        retire(o, io);
        return write_error(o, res < 0 ? -res : EIO, io->off + io->done, err);
    }
    io->done += (size_t)res;
    if (io->done < io->len && !o->error)
        return o->stalled ? finish_sync(o, io, err) : submit(o, (unsigned)tag, err);
    retire(o, io);
    writeback(o, io->off, io->len);
    return 0;
}

/* Write len bytes at p to off: queued on the ring (p must stay valid until
 * it completes; buf says which staging buffer it is, or -1), or at once. */
static int issue(snap__out_t *o, const char *p, size_t len, uint64_t off, int buf, thaw_err_t *err)
{
    if (!o->ring_ok || o->stalled)
        return pwrite_all(o, p, len, off, err);
    unsigned slot = SNAP__OUT_QD;
    for (;;) {
        for (unsigned i = 0; i < SNAP__OUT_QD && slot == SNAP__OUT_QD; i++)
            if (!o->io[i].busy)
                slot = i;
        if (slot < SNAP__OUT_QD)
            break;
        int r = reap_one(o, err);
        if (r < 0)
            return r;
    }
    o->io[slot] = (struct snap__out_io){.busy = true, .buf = buf, .p = p, .off = off, .len = len};
    if (buf >= 0)
        o->buf_busy[buf] = true;
    o->inflight++;
    return submit(o, slot, err);
}

/*
 * Switch to O_DIRECT once SNAP__OUT_DIRECT_AFTER bytes went through the page
 * cache: a small memory.bin is cheaper written buffered (one device round
 * trip at fsync instead of two) and stays cached for the restores that
 * usually follow.  Called with nothing staged; writes in flight finish
 * first so none of them changes mode halfway.
 */
static int maybe_go_direct(snap__out_t *o, thaw_err_t *err)
{
    if (!o->want_direct || o->cur_off - o->start < SNAP__OUT_DIRECT_AFTER || o->fill ||
        o->cur_off % o->align)
        return 0;
    o->want_direct = false;
    while (o->ring_ok && o->inflight > 0) {
        int r = reap_one(o, err);
        if (r < 0)
            return r;
    }
    int fl = fcntl(o->fd, F_GETFL);
    if (fl >= 0 && fcntl(o->fd, F_SETFL, fl | O_DIRECT) == 0)
        o->direct = true; /* else stay buffered: slower, not wrong */
    thaw_debug("snap", "memout_direct", "offset=%llu direct=%d", (unsigned long long)o->cur_off,
               o->direct);
    return 0;
}

/* Write the staged bytes and move on to an idle staging buffer.  They are
 * padded with zeros to the DIO alignment when O_DIRECT needs it or `align`
 * asks (before an in-place run); the pad stays in the file, or is cut off
 * by finish at the end. */
static int flush(snap__out_t *o, bool align, thaw_err_t *err)
{
    o->pad = 0;
    if (o->fill == 0)
        return 0;
    size_t pad = 0;
    if ((o->direct || align) && o->fill % o->align)
        pad = o->align - o->fill % o->align;
    memset(buf(o, o->cur) + o->fill, 0, pad);
    int r = issue(o, buf(o, o->cur), o->fill + pad, o->cur_off, (int)o->cur, err);
    o->cur_off += o->fill;
    o->pad = pad;
    o->fill = 0;
    o->cur = (o->cur + 1) % SNAP__OUT_BUFS;
    while (r == 0 && o->buf_busy[o->cur])
        r = reap_one(o, err);
    if (r == 0 && pad == 0)
        r = maybe_go_direct(o, err);
    return r;
}

int snap__out_append(snap__out_t *o, const void *p, size_t len, uint64_t *off, thaw_err_t *err)
{
    if (o->error)
        return o->error;
    *off = o->cur_off + o->fill;
    const char *s = p;
    while (len) {
        size_t n = SNAP__OUT_BUF_SIZE - o->fill;
        if (n > len)
            n = len;
        memcpy(buf(o, o->cur) + o->fill, s, n);
        o->fill += n;
        s += n;
        len -= n;
        int r;
        if (o->fill == SNAP__OUT_BUF_SIZE && (r = flush(o, false, err)) < 0)
            return r;
    }
    return 0;
}

int snap__out_append_inplace(snap__out_t *o, const void *p, size_t len, uint64_t *off,
                             thaw_err_t *err)
{
    if (o->error)
        return o->error;
    if ((uintptr_t)p % o->mem_align || len % o->align)
        return snap__out_append(o, p, len, off, err); /* cannot go direct: copy */
    int r = flush(o, true, err);
    if (r < 0)
        return r;
    o->cur_off += o->pad; /* keep the pad: the run starts aligned */
    o->pad = 0;
    if ((r = maybe_go_direct(o, err)) < 0)
        return r;
    *off = o->cur_off;
    const char *s = p;
    while (len) {
        size_t n = len < DIRECT_MAX ? len : DIRECT_MAX;
        if ((r = issue(o, s, n, o->cur_off, -1, err)) < 0)
            return r;
        s += n;
        o->cur_off += n;
        len -= n;
    }
    return 0;
}

int snap__out_finish(snap__out_t *o, uint64_t *end, thaw_err_t *err)
{
    int r = o->error ? o->error : flush(o, false, err);
    /* Wait for everything, even after an error: the memory is freed next. */
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
    }
    /* The last write was padded for O_DIRECT: cut the file to its data. */
    if (o->pad && ftruncate(o->fd, (off_t)o->cur_off) < 0)
        return thaw_err_sys(err, errno, SNAP_MEMORY_FILE ": truncate");
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
