// SPDX-License-Identifier: Apache-2.0
/*
 * Error values with context.  See err.h: nothing here allocates, so the
 * helpers are safe to call on any failure path, including out-of-memory.
 */
#include "common/err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void thaw_err_clear(thaw_err_t *err)
{
    if (!err)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}

static int err_vset(thaw_err_t *err, int code, const char *suffix, const char *fmt, va_list ap)
{
    if (code < 0)
        code = -code;
    if (code == 0)
        code = EIO;
    if (!err)
        return -code;
    err->code = code;
    int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    if (suffix && n >= 0 && (size_t)n < sizeof(err->msg))
        snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", suffix);
    return -code;
}

int thaw_err_set(thaw_err_t *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = err_vset(err, code, NULL, fmt, ap);
    va_end(ap);
    return r;
}

int thaw_err_sys(thaw_err_t *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = err_vset(err, code, strerror(code < 0 ? -code : code), fmt, ap);
    va_end(ap);
    return r;
}

int thaw_err_wrap(thaw_err_t *err, const char *fmt, ...)
{
    if (!err)
        return -EIO;
    if (err->code == 0)
        err->code = EIO;
    char prefix[THAW_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int pn = vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    if (pn < 0)
        return -err->code;
    /* Truncation is intended: the outermost context matters most. */
    size_t plen = strnlen(prefix, sizeof(prefix) - 1);
    size_t olen = strnlen(err->msg, sizeof(err->msg) - 1);
    char out[THAW_ERR_MSG_MAX];
    size_t n = plen;
    memcpy(out, prefix, plen);
    if (olen && n < sizeof(out) - 1) {
        size_t sep = sizeof(out) - 1 - n < 2 ? sizeof(out) - 1 - n : 2;
        memcpy(out + n, ": ", sep);
        n += sep;
        size_t take = sizeof(out) - 1 - n < olen ? sizeof(out) - 1 - n : olen;
        memcpy(out + n, err->msg, take);
        n += take;
    }
    out[n] = '\0';
    memcpy(err->msg, out, n + 1);
    return -err->code;
}

const char *thaw_err_msg(const thaw_err_t *err)
{
    return err ? err->msg : "";
}
