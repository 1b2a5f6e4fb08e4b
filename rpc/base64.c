// SPDX-License-Identifier: Apache-2.0
/*
 * Base64 (RFC 4648, standard alphabet, padded) for binary data in JSON:
 * exec output that is not UTF-8, file contents.  jansson and libuv have no
 * codec, hence these few lines.  The decoder rejects anything malformed.
 */
#include "rpc/rpc.h"

#include <stdbool.h>

#include <errno.h>
#include <stdlib.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *rpc_base64_encode(const void *data, size_t len, size_t *outlen)
{
    const unsigned char *in = data;
    size_t n = (len + 2) / 3 * 4;
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? alphabet[v & 63] : '=';
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

static int val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int rpc_base64_decode(const char *s, size_t slen, void **out, size_t *outlen)
{
    if (slen % 4)
        return -EINVAL;
    unsigned char *buf = malloc(slen / 4 * 3 + 1);
    if (!buf)
        return -ENOMEM;
    size_t o = 0;
    for (size_t i = 0; i < slen; i += 4) {
        int a = val(s[i]), b = val(s[i + 1]);
        bool last = i + 4 == slen;
        int c = (last && s[i + 2] == '=') ? -2 : val(s[i + 2]);
        int d = (last && s[i + 3] == '=') ? -2 : val(s[i + 3]);
        if (a < 0 || b < 0 || c == -1 || d == -1 || (c == -2 && d != -2)) {
            free(buf);
            return -EINVAL;
        }
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12;
        if (c >= 0)
            v |= (uint32_t)c << 6;
        if (d >= 0)
            v |= (uint32_t)d;
        buf[o++] = (unsigned char)(v >> 16);
        if (c >= 0)
            buf[o++] = (unsigned char)(v >> 8);
        if (d >= 0)
            buf[o++] = (unsigned char)v;
    }
    *out = buf;
    *outlen = o;
    return 0;
}
