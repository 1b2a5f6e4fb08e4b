/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Structured logging to stderr, one line per event:
 *   2026-11-26T15:40:01.123Z level=info mod=pool event=refill template=py n=3
 * The threshold comes from THAW_LOG=debug|info|warn|error (default info) and
 * is read once, lazily.  Each line is written with one write(2) so lines from
 * different threads never interleave.
 */
#ifndef THAW_COMMON_LOG_H
#define THAW_COMMON_LOG_H

typedef enum thaw_log_level {
    THAW_LOG_DEBUG = 0,
    THAW_LOG_INFO = 1,
    THAW_LOG_WARN = 2,
    THAW_LOG_ERROR = 3,
} thaw_log_level_t;

/*
 * Log `event` from module `mod`; fmt/... are further key=value fields (may be
 * NULL).  Values with spaces should be quoted by the caller ("msg=\"%s\"").
 */
void thaw_log(thaw_log_level_t level, const char *mod, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* True when `level` would be printed (to skip building expensive fields). */
int thaw_log_enabled(thaw_log_level_t level);

/* Override the threshold (tests, --verbose).  Returns the previous one. */
thaw_log_level_t thaw_log_set_level(thaw_log_level_t level);

/* Parse "debug|info|warn|error"; returns -EINVAL for anything else. */
int thaw_log_parse_level(const char *s, thaw_log_level_t *out);

/* Redirect output (tests); fd -1 restores stderr. */
void thaw_log_set_fd(int fd);

#define thaw_debug(mod, ev, ...) thaw_log(THAW_LOG_DEBUG, mod, ev, __VA_ARGS__)
#define thaw_info(mod, ev, ...)  thaw_log(THAW_LOG_INFO, mod, ev, __VA_ARGS__)
#define thaw_warn(mod, ev, ...)  thaw_log(THAW_LOG_WARN, mod, ev, __VA_ARGS__)
#define thaw_error(mod, ev, ...) thaw_log(THAW_LOG_ERROR, mod, ev, __VA_ARGS__)

#endif
