/* SPDX-License-Identifier: Apache-2.0 */
/*
 * thaw_err_t: an error code plus a human message, wrapped with context on the
 * way up (crun's libcrun_error_t).  Low layers return -errno; layers that talk
 * to a user (pool/, rpc/, tools/, and readers of outside input such as
 * snapshot/) also fill a thaw_err_t so the user reads
 *   restore snapshot 'py311': memory chunk 812: checksum mismatch
 * and never "error -74".
 *
 * The message lives in a fixed buffer inside the struct: setting or wrapping
 * an error never allocates, so error paths cannot fail or leak.
 */
#ifndef THAW_COMMON_ERR_H
#define THAW_COMMON_ERR_H

#include <stdarg.h>
#include <stddef.h>

#define THAW_ERR_MSG_MAX 512

typedef struct thaw_err {
    int code; /* positive errno value; 0 = no error */
    char msg[THAW_ERR_MSG_MAX];
} thaw_err_t;

/* Clear *err (NULL is allowed everywhere an err is taken). */
void thaw_err_clear(thaw_err_t *err);

/*
 * Record an error: code is a positive errno value (its sign is ignored so
 * callers may pass -rc), the message is printf-formatted.  Returns -code so
 * that `return thaw_err_set(err, EINVAL, "...")` keeps the -errno convention.
 */
int thaw_err_set(thaw_err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like thaw_err_set, with ": strerror(code)" appended. */
int thaw_err_sys(thaw_err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Prefix the existing message with "<context>: ".  If the message would not
 * fit, its tail is cut (the outermost context is the most useful to a user).
 * Returns -err->code (or -EIO if err holds no code).
 */
int thaw_err_wrap(thaw_err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The message, or "" for a clear/NULL err. */
const char *thaw_err_msg(const thaw_err_t *err);

#endif
