// SPDX-License-Identifier: Apache-2.0
/*
 * Decoders for each message of the agent protocol (agentwire.h): one pass
 * over the fields, every length and count checked against the caps, and a
 * one-line reason on failure that the agent sends back in an ERROR frame or
 * the client puts in its thaw_err_t.  Pure code, fuzzed by
 * tests/fuzz/agent/fuzz_agentwire.c.
 */
#include "guest/agentwire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((format(printf, 4, 5))) static int fail(char *msg, size_t msgsz, int rc,
                                                      const char *fmt, ...)
{
    if (msg && msgsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msgsz, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static const char *rc_reason(int rc)
{
    switch (rc) {
    case -E2BIG:
        return "too long";
    case -EBADMSG:
        return "malformed";
    case -ENOMEM:
        return "out of memory";
    }
    return "invalid";
}

#define FIELD_FAIL(what, rc) fail(msg, msgsz, (rc), "%s: %s", (what), rc_reason(rc))

/* Iterate the fields of a payload; on a broken field list, fail. */
#define FOR_FIELDS(p, len, f, name)                                                                \
    agentwire_iter_t it_;                                                                          \
    agentwire_field_t f;                                                                           \
    int itr_;                                                                                      \
    agentwire_iter_init(&it_, (p), (len));                                                         \
    while ((itr_ = agentwire_iter_next(&it_, &f)) == 1)

#define FIELDS_END(name)                                                                           \
    if (itr_ < 0)                                                                                  \
    return fail(msg, msgsz, -EBADMSG, "%s: field runs past the end of the frame", (name))

static int str_push(char ***vec, size_t *n, size_t max, const agentwire_field_t *f)
{
    if (*n >= max)
        return -E2BIG;
    char *s;
    int r = agentwire_field_strdup(f, AGENTWIRE_MAX_STR, &s);
    if (r < 0)
        return r;
    /* grow by doubling; +1 keeps room for the terminating NULL */
    if ((*n & (*n + 1)) == 0 || *vec == NULL) {
        size_t cap = (*n + 1) * 2;
        char **v = realloc(*vec, cap * sizeof(char *));
        if (!v) {
            free(s);
            return -ENOMEM;
        }
        *vec = v;
    }
    (*vec)[(*n)++] = s;
    (*vec)[*n] = NULL;
    return 0;
}

static void strv_free(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void agentwire_exec_free(agentwire_exec_t *e)
{
    strv_free(e->argv, e->argc);
    strv_free(e->env, e->envc);
    free(e->cwd);
    memset(e, 0, sizeof(*e));
}

static int exec_field(agentwire_exec_t *e, const agentwire_field_t *f, char *msg, size_t msgsz)
{
    int r = 0;
    switch (f->tag) {
    case AGENTWIRE_T_ARGV:
        r = str_push(&e->argv, &e->argc, AGENTWIRE_MAX_ARGS, f);
        if (r < 0)
            return fail(msg, msgsz, r, "exec: argv[%zu]: %s", e->argc,
                        r == -E2BIG && e->argc >= AGENTWIRE_MAX_ARGS ? "too many arguments"
                                                                     : rc_reason(r));
        return 0;
    case AGENTWIRE_T_ENV:
        r = str_push(&e->env, &e->envc, AGENTWIRE_MAX_ENV, f);
        if (r < 0)
            return fail(msg, msgsz, r, "exec: env[%zu]: %s", e->envc,
                        r == -E2BIG && e->envc >= AGENTWIRE_MAX_ENV ? "too many variables"
                                                                    : rc_reason(r));
        if (!strchr(e->env[e->envc - 1], '='))
            return fail(msg, msgsz, -EINVAL, "exec: env[%zu]: not KEY=VALUE", e->envc - 1);
        return 0;
    case AGENTWIRE_T_CWD:
        free(e->cwd);
        e->cwd = NULL;
        r = agentwire_field_strdup(f, AGENTWIRE_MAX_PATH, &e->cwd);
        return r < 0 ? FIELD_FAIL("exec: cwd", r) : 0;
    case AGENTWIRE_T_UID:
        e->has_uid = true;
        r = agentwire_field_u32(f, &e->uid);
        return r < 0 ? FIELD_FAIL("exec: uid", r) : 0;
    case AGENTWIRE_T_GID:
        e->has_gid = true;
        r = agentwire_field_u32(f, &e->gid);
        return r < 0 ? FIELD_FAIL("exec: gid", r) : 0;
    case AGENTWIRE_T_STDIN:
        e->stdin_data = f->data;
        e->stdin_len = f->len;
        return 0;
    case AGENTWIRE_T_TIMEOUT_MS:
        r = agentwire_field_u32(f, &e->timeout_ms);
        return r < 0 ? FIELD_FAIL("exec: timeout", r) : 0;
    case AGENTWIRE_T_OUTPUT_CAP:
        r = agentwire_field_u64(f, &e->output_cap);
        return r < 0 ? FIELD_FAIL("exec: output cap", r) : 0;
    case AGENTWIRE_T_FLAGS:
        r = agentwire_field_u32(f, &e->flags);
        if (r < 0)
            return FIELD_FAIL("exec: flags", r);
        if (e->flags & ~(AGENTWIRE_EXEC_STDIN_OPEN | AGENTWIRE_EXEC_PTY))
            return fail(msg, msgsz, -EINVAL, "exec: unknown flags 0x%x", e->flags);
        return 0;
    case AGENTWIRE_T_PTY_ROWS:
    case AGENTWIRE_T_PTY_COLS: {
        uint32_t *dst = f->tag == AGENTWIRE_T_PTY_ROWS ? &e->pty_rows : &e->pty_cols;
        r = agentwire_field_u32(f, dst);
        if (r < 0)
            return FIELD_FAIL("exec: pty size", r);
        if (*dst > 65535)
            return fail(msg, msgsz, -EINVAL, "exec: pty size %u out of range", *dst);
        return 0;
    }
    }
    return 0; /* unknown tags are skipped */
}

int agentwire_parse_exec(const uint8_t *p, size_t len, agentwire_exec_t *out, char *msg,
                         size_t msgsz)
{
    memset(out, 0, sizeof(*out));
    int r = 0;
    FOR_FIELDS(p, len, f, "exec")
    {
        r = exec_field(out, &f, msg, msgsz);
        if (r < 0)
            break;
    }
    if (r == 0 && itr_ < 0)
        r = fail(msg, msgsz, -EBADMSG, "exec: field runs past the end of the frame");
    if (r == 0 && out->argc == 0)
        r = fail(msg, msgsz, -EINVAL, "exec: no argv");
    if (r == 0 && out->argv[0][0] == '\0')
        r = fail(msg, msgsz, -EINVAL, "exec: argv[0] is empty");
    if (r < 0)
        agentwire_exec_free(out);
    return r;
}

int agentwire_parse_stdin(const uint8_t *p, size_t len, agentwire_stdin_t *out, char *msg,
                          size_t msgsz)
{
    memset(out, 0, sizeof(*out));
    FOR_FIELDS(p, len, f, "stdin")
    {
        if (f.tag == AGENTWIRE_T_DATA) {
            out->data = f.data;
            out->len = f.len;
        } else if (f.tag == AGENTWIRE_T_EOF) {
            uint32_t v;
            if (agentwire_field_u32(&f, &v) < 0)
                return fail(msg, msgsz, -EBADMSG, "stdin: eof: malformed");
            out->eof = v != 0;
        }
    }
    FIELDS_END("stdin");
    return 0;
}

int agentwire_parse_signal(const uint8_t *p, size_t len, agentwire_signal_t *out, char *msg,
                           size_t msgsz)
{
    memset(out, 0, sizeof(*out));
    bool have = false;
    FOR_FIELDS(p, len, f, "signal")
    {
        if (f.tag == AGENTWIRE_T_SIGNO) {
            if (agentwire_field_u32(&f, &out->signo) < 0)
                return fail(msg, msgsz, -EBADMSG, "signal: signo: malformed");
            have = true;
        } else if (f.tag == AGENTWIRE_T_FLAGS) {
            if (agentwire_field_u32(&f, &out->flags) < 0)
                return fail(msg, msgsz, -EBADMSG, "signal: flags: malformed");
        }
    }
    FIELDS_END("signal");
    if (!have)
        return fail(msg, msgsz, -EINVAL, "signal: no signal number");
    if (out->signo == 0 || out->signo > 64)
        return fail(msg, msgsz, -EINVAL, "signal: %u is not a signal number", out->signo);
    if (out->flags & ~AGENTWIRE_SIGNAL_GROUP)
        return fail(msg, msgsz, -EINVAL, "signal: unknown flags 0x%x", out->flags);
    return 0;
}

/* The PATH field of put and get (a repeated one replaces the first). */
static int path_field(const agentwire_field_t *f, char **path, const char *name, char *msg,
                      size_t msgsz)
{
    free(*path);
    *path = NULL;
    int r = agentwire_field_strdup(f, AGENTWIRE_MAX_PATH, path);
    return r < 0 ? fail(msg, msgsz, r, "%s: path: %s", name, rc_reason(r)) : 0;
}

/*
 * The end of a put or get: a field list that ran past the frame or a
 * missing path fails it, and a failed one owns no path.  r is the result of
 * the fields so far, itr the iterator's last return.
 */
static int path_end(int r, int itr, char **path, const char *name, char *msg, size_t msgsz)
{
    if (r == 0 && itr < 0)
        r = fail(msg, msgsz, -EBADMSG, "%s: field runs past the end of the frame", name);
    if (r == 0 && (!*path || !(*path)[0]))
        r = fail(msg, msgsz, -EINVAL, "%s: no path", name);
    if (r < 0) {
        free(*path);
        *path = NULL;
    }
    return r;
}

int agentwire_parse_put(const uint8_t *p, size_t len, agentwire_put_t *out, char *msg, size_t msgsz)
{
    memset(out, 0, sizeof(*out));
    out->mode = 0644;
    int r = 0;
    FOR_FIELDS(p, len, f, "put")
    {
        switch (f.tag) {
        case AGENTWIRE_T_PATH:
            r = path_field(&f, &out->path, "put", msg, msgsz);
            break;
        case AGENTWIRE_T_MODE:
            r = agentwire_field_u32(&f, &out->mode);
            if (r < 0)
                r = FIELD_FAIL("put: mode", r);
            else if (out->mode & ~07777u)
                r = fail(msg, msgsz, -EINVAL, "put: mode 0%o has bits beyond 07777", out->mode);
            break;
        case AGENTWIRE_T_OFFSET:
            r = agentwire_field_u64(&f, &out->offset);
            if (r < 0)
                r = FIELD_FAIL("put: offset", r);
            else if (out->offset > (1ull << 40))
                r = fail(msg, msgsz, -EFBIG, "put: offset %llu is past 1 TiB",
                         (unsigned long long)out->offset);
            break;
        case AGENTWIRE_T_FLAGS:
            r = agentwire_field_u32(&f, &out->flags);
            if (r < 0)
                r = FIELD_FAIL("put: flags", r);
            else if (out->flags & ~AGENTWIRE_PUT_TRUNCATE)
                r = fail(msg, msgsz, -EINVAL, "put: unknown flags 0x%x", out->flags);
            break;
        case AGENTWIRE_T_DATA:
            out->data = f.data;
            out->len = f.len;
            break;
        }
        if (r < 0)
            break;
    }
    return path_end(r, itr_, &out->path, "put", msg, msgsz);
}

int agentwire_parse_get(const uint8_t *p, size_t len, agentwire_get_t *out, char *msg, size_t msgsz)
{
    memset(out, 0, sizeof(*out));
    out->max = AGENTWIRE_CHUNK;
    int r = 0;
    FOR_FIELDS(p, len, f, "get")
    {
        switch (f.tag) {
        case AGENTWIRE_T_PATH:
            r = path_field(&f, &out->path, "get", msg, msgsz);
            break;
        case AGENTWIRE_T_OFFSET:
            r = agentwire_field_u64(&f, &out->offset);
            if (r < 0)
                r = FIELD_FAIL("get: offset", r);
            break;
        case AGENTWIRE_T_MAX:
            r = agentwire_field_u32(&f, &out->max);
            if (r < 0)
                r = FIELD_FAIL("get: max", r);
            break;
        }
        if (r < 0)
            break;
    }
    r = path_end(r, itr_, &out->path, "get", msg, msgsz);
    if (r < 0)
        return r;
    if (out->max > AGENTWIRE_CHUNK || out->max == 0)
        out->max = AGENTWIRE_CHUNK;
    return 0;
}

int agentwire_parse_thaw(const uint8_t *p, size_t len, agentwire_thaw_t *out, char *msg,
                         size_t msgsz)
{
    memset(out, 0, sizeof(*out));
    FOR_FIELDS(p, len, f, "thaw")
    {
        if (f.tag == AGENTWIRE_T_ENTROPY) {
            if (f.len > AGENTWIRE_MAX_ENTROPY)
                return fail(msg, msgsz, -E2BIG, "thaw: %u bytes of entropy, cap is %u", f.len,
                            AGENTWIRE_MAX_ENTROPY);
            out->entropy = f.data;
            out->entropy_len = f.len;
        } else if (f.tag == AGENTWIRE_T_WALLCLOCK) {
            if (agentwire_field_u64(&f, &out->wallclock_ns) < 0)
                return fail(msg, msgsz, -EBADMSG, "thaw: wall clock: malformed");
        }
    }
    FIELDS_END("thaw");
    return 0;
}

int agentwire_parse_exit(const uint8_t *p, size_t len, agentwire_exit_t *out, char *msg,
                         size_t msgsz)
{
    memset(out, 0, sizeof(*out));
    bool have_code = false, have_sig = false;
    FOR_FIELDS(p, len, f, "exit")
    {
        uint32_t v32 = 0;
        uint64_t *dst = NULL;
        switch (f.tag) {
        case AGENTWIRE_T_EXIT_CODE:
        case AGENTWIRE_T_TERMSIG:
        case AGENTWIRE_T_TIMED_OUT:
        case AGENTWIRE_T_TRUNCATED:
            if (agentwire_field_u32(&f, &v32) < 0)
                return fail(msg, msgsz, -EBADMSG, "exit: field %u: malformed", f.tag);
            if (f.tag == AGENTWIRE_T_EXIT_CODE) {
                if (v32 > 255)
                    return fail(msg, msgsz, -EINVAL, "exit: code %u out of range", v32);
                out->exit_code = (int32_t)v32;
                have_code = true;
            } else if (f.tag == AGENTWIRE_T_TERMSIG) {
                if (v32 == 0 || v32 > 64)
                    return fail(msg, msgsz, -EINVAL, "exit: signal %u out of range", v32);
                out->termsig = v32;
                have_sig = true;
            } else if (f.tag == AGENTWIRE_T_TIMED_OUT) {
                out->timed_out = v32 != 0;
            } else {
                out->truncated = v32 != 0;
            }
            break;
        case AGENTWIRE_T_CPU_USER:
            dst = &out->cpu_user_us;
            break;
        case AGENTWIRE_T_CPU_SYS:
            dst = &out->cpu_sys_us;
            break;
        case AGENTWIRE_T_MAX_RSS:
            dst = &out->max_rss_kb;
            break;
        case AGENTWIRE_T_WALL:
            dst = &out->wall_us;
            break;
        }
        if (dst && agentwire_field_u64(&f, dst) < 0)
            return fail(msg, msgsz, -EBADMSG, "exit: field %u: malformed", f.tag);
    }
    FIELDS_END("exit");
    if (have_code == have_sig)
        return fail(msg, msgsz, -EINVAL, "exit: needs exactly one of exit code and signal");
    if (have_sig)
        out->exit_code = -1;
    return 0;
}

int agentwire_parse_error(const uint8_t *p, size_t len, agentwire_error_t *out, char *msg,
                          size_t msgsz)
{
    memset(out, 0, sizeof(*out));
    FOR_FIELDS(p, len, f, "error")
    {
        if (f.tag == AGENTWIRE_T_ERRNO) {
            if (agentwire_field_u32(&f, &out->errnum) < 0)
                return fail(msg, msgsz, -EBADMSG, "error: errno: malformed");
        } else if (f.tag == AGENTWIRE_T_MESSAGE) {
            /* a long message is cut, not rejected: it is only for humans */
            agentwire_field_t g = f;
            if (g.len > AGENTWIRE_MAX_MSG)
                g.len = AGENTWIRE_MAX_MSG;
            if (agentwire_field_strcpy(&g, out->message, sizeof(out->message)) < 0)
                return fail(msg, msgsz, -EBADMSG, "error: message holds a NUL byte");
        }
    }
    FIELDS_END("error");
    if (out->errnum == 0 || out->errnum > 4095)
        out->errnum = EIO;
    return 0;
}

int agentwire_parse_hello(const uint8_t *p, size_t len, agentwire_hello_t *out, char *msg,
                          size_t msgsz)
{
    memset(out, 0, sizeof(*out));
    bool have_version = false;
    FOR_FIELDS(p, len, f, "hello")
    {
        int r = 0;
        const char *what = NULL;
        switch (f.tag) {
        case AGENTWIRE_T_VERSION:
            what = "version";
            r = agentwire_field_u32(&f, &out->version);
            have_version = r == 0;
            break;
        case AGENTWIRE_T_CAPS:
            what = "caps";
            r = agentwire_field_u64(&f, &out->caps);
            break;
        case AGENTWIRE_T_AGENT_MODE:
            what = "mode";
            r = agentwire_field_strcpy(&f, out->mode, sizeof(out->mode));
            break;
        case AGENTWIRE_T_KERNEL:
            what = "kernel";
            r = agentwire_field_strcpy(&f, out->kernel, sizeof(out->kernel));
            break;
        case AGENTWIRE_T_BOOT_ID:
            what = "boot id";
            r = agentwire_field_strcpy(&f, out->boot_id, sizeof(out->boot_id));
            break;
        case AGENTWIRE_T_AGENT_VER:
            what = "agent version";
            r = agentwire_field_strcpy(&f, out->agent_version, sizeof(out->agent_version));
            break;
        case AGENTWIRE_T_UPTIME:
            what = "uptime";
            r = agentwire_field_u64(&f, &out->uptime_ns);
            break;
        }
        if (r < 0)
            return fail(msg, msgsz, r, "hello: %s: %s", what, rc_reason(r));
    }
    FIELDS_END("hello");
    if (!have_version)
        return fail(msg, msgsz, -EBADMSG, "hello: no protocol version");
    return 0;
}

int agentwire_parse_data(const uint8_t *p, size_t len, agentwire_data_t *out, char *msg,
                         size_t msgsz)
{
    memset(out, 0, sizeof(*out));
    FOR_FIELDS(p, len, f, "data")
    {
        if (f.tag == AGENTWIRE_T_DATA) {
            out->data = f.data;
            out->len = f.len;
        } else if (f.tag == AGENTWIRE_T_SIZE) {
            if (agentwire_field_u64(&f, &out->size) < 0)
                return fail(msg, msgsz, -EBADMSG, "data: size: malformed");
        } else if (f.tag == AGENTWIRE_T_EOF) {
            uint32_t v;
            if (agentwire_field_u32(&f, &v) < 0)
                return fail(msg, msgsz, -EBADMSG, "data: eof: malformed");
            out->eof = v != 0;
        }
    }
    FIELDS_END("data");
    return 0;
}

int agentwire_parse_u32_field(const uint8_t *p, size_t len, uint16_t tag, uint32_t *out,
                              bool *found, char *msg, size_t msgsz)
{
    *found = false;
    FOR_FIELDS(p, len, f, "frame")
    {
        if (f.tag == tag) {
            if (agentwire_field_u32(&f, out) < 0)
                return fail(msg, msgsz, -EBADMSG, "field %u: malformed", tag);
            *found = true;
        }
    }
    FIELDS_END("frame");
    return 0;
}
