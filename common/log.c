// SPDX-License-Identifier: Apache-2.0
/*
 * Logging: see log.h.  Formats into a stack buffer and emits the line with a
 * single write(2); a line longer than the buffer is cut and marked with "...".
 */
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = -1; /* -1: not read from THAW_LOG yet */
static atomic_int log_fd = STDERR_FILENO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int thaw_log_parse_level(const char *s, thaw_log_level_t *out)
{
    if (!s)
        return -EINVAL;
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (thaw_log_level_t)i;
            return 0;
        }
    }
    return -EINVAL;
}

static int current_level(void)
{
    int l = atomic_load_explicit(&log_level, memory_order_relaxed);
    if (l >= 0)
        return l;
    thaw_log_level_t parsed = THAW_LOG_INFO;
    const char *env = getenv("THAW_LOG");
    if (env && *env && thaw_log_parse_level(env, &parsed) < 0)
        parsed = THAW_LOG_INFO;
    int expected = -1;
    atomic_compare_exchange_strong(&log_level, &expected, (int)parsed);
    return atomic_load(&log_level);
}

int thaw_log_enabled(thaw_log_level_t level)
{
    return (int)level >= current_level();
}

thaw_log_level_t thaw_log_set_level(thaw_log_level_t level)
{
    int prev = current_level();
    atomic_store(&log_level, (int)level);
    return (thaw_log_level_t)prev;
}

void thaw_log_set_fd(int fd)
{
    atomic_store(&log_fd, fd < 0 ? STDERR_FILENO : fd);
}

void thaw_log(thaw_log_level_t level, const char *mod, const char *event, const char *fmt, ...)
{
    if ((int)level < current_level() || (unsigned)level > THAW_LOG_ERROR)
        return;
    int saved_errno = errno;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    int w = snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s mod=%s event=%s",
                     (long)(tv.tv_usec / 1000), level_names[level], mod ? mod : "-",
                     event ? event : "-");
    if (w > 0)
        n += (size_t)w < sizeof(line) - n ? (size_t)w : sizeof(line) - n - 1;
    if (fmt && *fmt && n < sizeof(line) - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        if (w > 0)
            n += (size_t)w < sizeof(line) - n ? (size_t)w : sizeof(line) - n - 1;
    }
    if (n >= sizeof(line) - 1)
        memcpy(line + sizeof(line) - 5, "...", 3), n = sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t r = write(atomic_load(&log_fd), line, n);
    (void)r; /* nowhere to report a failed log write */
    errno = saved_errno;
}
