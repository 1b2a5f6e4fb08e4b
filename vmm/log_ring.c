// SPDX-License-Identifier: Apache-2.0
/*
 * The console log ring: the UART appends what the guest prints; callers copy
 * out the newest bytes, or wait for a string to appear (tests wait for a
 * banner this way).  Bounded memory whatever the guest prints.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "vmm/internal.h"

int vmm__log_init(vmm_log_ring_t *r, size_t size)
{
    r->buf = malloc(size);
    if (!r->buf)
        return -ENOMEM;
    r->size = size;
    r->total = 0;
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    return 0;
}

void vmm__log_free(vmm_log_ring_t *r)
{
    if (!r->buf)
        return;
    free(r->buf);
    r->buf = NULL;
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
}

void vmm__log_put(vmm_log_ring_t *r, const void *data, size_t len)
{
    const uint8_t *p = data;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < len; i++)
        r->buf[(r->total + i) % r->size] = (char)p[i];
    r->total += len;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static size_t copy_locked(vmm_log_ring_t *r, char *buf, size_t len)
{
    if (len == 0)
        return 0;
    uint64_t have = r->total < r->size ? r->total : r->size;
    if (have > len - 1)
        have = len - 1;
    uint64_t start = r->total - have;
    for (uint64_t i = 0; i < have; i++)
        buf[i] = r->buf[(start + i) % r->size];
    buf[have] = '\0';
    return (size_t)have;
}

size_t vmm_console_read(vmm_t *vm, char *buf, size_t len, uint64_t *total)
{
    vmm_log_ring_t *r = &vm->console;
    pthread_mutex_lock(&r->lock);
    size_t n = copy_locked(r, buf, len);
    if (total)
        *total = r->total;
    pthread_mutex_unlock(&r->lock);
    return n;
}

int vmm_console_wait_for(vmm_t *vm, const char *needle, int timeout_ms)
{
    vmm_log_ring_t *r = &vm->console;
    size_t nlen = strlen(needle);
    if (nlen == 0 || nlen > r->size)
        return nlen == 0;
    /* Scan only what arrived since the last look, plus nlen - 1 bytes of
     * overlap, so a chatty guest costs O(bytes), not O(ring) per byte. */
    char *tmp = malloc(r->size + 1);
    if (!tmp)
        return 0;
    uint64_t deadline = thaw_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    uint64_t scanned = 0;
    int found = 0;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        uint64_t oldest = r->total > r->size ? r->total - r->size : 0;
        uint64_t from = scanned > nlen - 1 ? scanned - (nlen - 1) : 0;
        if (from < oldest)
            from = oldest;
        size_t n = (size_t)(r->total - from);
        for (size_t i = 0; i < n; i++) {
            char ch = r->buf[(from + i) % r->size];
            tmp[i] = ch ? ch : '.'; /* a NUL the guest printed must not end the search */
        }
        tmp[n] = '\0';
        scanned = r->total;
        if (strstr(tmp, needle)) {
            found = 1;
            break;
        }
        if (atomic_load(&vm->stopping) || thaw_now_ns() >= deadline)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 20 * 1000000; /* re-check stop at least every 20 ms */
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&r->cond, &r->lock, &ts);
    }
    pthread_mutex_unlock(&r->lock);
    free(tmp);
    return found;
}
