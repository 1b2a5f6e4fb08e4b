// SPDX-License-Identifier: Apache-2.0
/*
 * The test guest's stand-in for libc (ring 3): memory and string helpers the
 * compiler may call, a printf subset that formats into a buffer and writes it
 * with one syscall, and command-line lookup in boot_params.
 */
#include <stdarg.h>

#include "guest.h"

void *memset(void *d, int c, size_t n)
{
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    u8 *p = d;
    const u8 *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i])
            return (u8)a[i] - (u8)b[i];
        if (!a[i])
            return 0;
    }
    return 0;
}

const char *strstr(const char *h, const char *n)
{
    size_t k = strlen(n);
    for (; *h; h++)
        if (!strncmp(h, n, k))
            return h;
    return 0;
}

void print(const char *s)
{
    sys(SYS_WRITE, s, strlen(s));
}

static char *put_u(char *o, char *end, u64 v, unsigned base)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (n && o < end)
        *o++ = tmp[--n];
    return o;
}

void printf_(const char *fmt, ...)
{
    char buf[512];
    char *o = buf, *end = buf + sizeof(buf) - 1;
    va_list ap;
    va_start(ap, fmt);
    for (const char *f = fmt; *f && o < end; f++) {
        if (*f != '%') {
            *o++ = *f;
            continue;
        }
        f++;
        int ll = 0;
        while (*f == 'l') {
            ll++;
            f++;
        }
        switch (*f) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            while (*s && o < end)
                *o++ = *s++;
            break;
        }
        case 'c':
            *o++ = (char)va_arg(ap, int);
            break;
        case 'd': {
            i64 v = ll ? va_arg(ap, i64) : va_arg(ap, int);
            if (v < 0) {
                *o++ = '-';
                v = -v;
            }
            o = put_u(o, end, (u64)v, 10);
            break;
        }
        case 'u':
            o = put_u(o, end, ll ? va_arg(ap, u64) : va_arg(ap, unsigned), 10);
            break;
        case 'x':
            o = put_u(o, end, ll ? va_arg(ap, u64) : va_arg(ap, unsigned), 16);
            break;
        default:
            *o++ = *f;
            break;
        }
    }
    va_end(ap);
    sys(SYS_WRITE, buf, o - buf);
}

void poweroff(int code)
{
    sys(SYS_EXIT, code, 0);
    for (;;)
        ;
}

const char *cmdline_get(const char *key, char *buf, size_t len)
{
    const u8 *bp = (const u8 *)boot_params_ptr;
    const char *cl = (const char *)(u64) * (const u32 *)(bp + 0x228);
    size_t k = strlen(key);
    for (const char *p = cl; p && *p; p++) {
        if ((p == cl || p[-1] == ' ') && !strncmp(p, key, k) && p[k] == '=') {
            const char *v = p + k + 1;
            size_t n = 0;
            while (v[n] && v[n] != ' ' && n + 1 < len) {
                buf[n] = v[n];
                n++;
            }
            buf[n] = 0;
            return buf;
        }
    }
    return 0;
}

u64 parse_u64(const char *s)
{
    u64 v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (u64)(*s++ - '0');
    return v;
}
