// SPDX-License-Identifier: Apache-2.0
/*
 * Framing primitives of the agent protocol: header encode/decode, the frame
 * builder and the field iterator (see agentwire.h).  Pure code shared by the
 * host and the guest and covered by the fuzzer; all multi-byte values are
 * little-endian and read with memcpy, so unaligned payloads are fine.
 */
#include "guest/agentwire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FIELD_HDR 6u /* u16 tag + u32 length */

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | ((uint64_t)get_le32(p + 4) << 32);
}

void agentwire_hdr_encode(uint8_t *out, uint16_t type, uint32_t id, uint32_t len)
{
    put_le32(out, AGENTWIRE_MAGIC);
    put_le16(out + 4, type);
    put_le16(out + 6, 0);
    put_le32(out + 8, id);
    put_le32(out + 12, len);
}

int agentwire_hdr_decode(const uint8_t *buf, size_t len, agentwire_hdr_t *hdr)
{
    if (len < AGENTWIRE_HDR_SIZE)
        return -EAGAIN;
    hdr->magic = get_le32(buf);
    hdr->type = get_le16(buf + 4);
    hdr->flags = get_le16(buf + 6);
    hdr->id = get_le32(buf + 8);
    hdr->len = get_le32(buf + 12);
    if (hdr->magic != AGENTWIRE_MAGIC)
        return -EBADMSG;
    if (hdr->len > AGENTWIRE_MAX_PAYLOAD)
        return -EMSGSIZE;
    return 0;
}

const char *agentwire_type_name(uint16_t type)
{
    switch (type) {
    case AGENTWIRE_EXEC:
        return "exec";
    case AGENTWIRE_STDIN:
        return "stdin";
    case AGENTWIRE_SIGNAL:
        return "signal";
    case AGENTWIRE_PUT:
        return "put";
    case AGENTWIRE_GET:
        return "get";
    case AGENTWIRE_THAW:
        return "thaw";
    case AGENTWIRE_QUIESCE:
        return "quiesce";
    case AGENTWIRE_PING:
        return "ping";
    case AGENTWIRE_SHUTDOWN:
        return "shutdown";
    case AGENTWIRE_HELLO:
        return "hello";
    case AGENTWIRE_STARTED:
        return "started";
    case AGENTWIRE_STDOUT:
        return "stdout";
    case AGENTWIRE_STDERR:
        return "stderr";
    case AGENTWIRE_EXIT:
        return "exit";
    case AGENTWIRE_OK:
        return "ok";
    case AGENTWIRE_ERROR:
        return "error";
    case AGENTWIRE_DATA:
        return "data";
    case AGENTWIRE_PONG:
        return "pong";
    }
    return "unknown";
}

/* ---- builder ---- */

static uint8_t *msg_reserve(agentwire_msg_t *m, size_t n)
{
    if (m->err)
        return NULL;
    if (n > AGENTWIRE_HDR_SIZE + AGENTWIRE_MAX_PAYLOAD - m->len) {
        m->err = -EMSGSIZE;
        return NULL;
    }
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap : 256;
        while (cap < m->len + n)
            cap *= 2;
        uint8_t *d = realloc(m->data, cap);
        if (!d) {
            m->err = -ENOMEM;
            return NULL;
        }
        m->data = d;
        m->cap = cap;
    }
    uint8_t *p = m->data + m->len;
    m->len += n;
    return p;
}

void agentwire_msg_init(agentwire_msg_t *m, uint16_t type, uint32_t id)
{
    memset(m, 0, sizeof(*m));
    uint8_t *h = msg_reserve(m, AGENTWIRE_HDR_SIZE);
    if (h)
        agentwire_hdr_encode(h, type, id, 0);
}

void agentwire_put_bytes(agentwire_msg_t *m, uint16_t tag, const void *data, size_t len)
{
    if (len > AGENTWIRE_MAX_PAYLOAD) {
        if (!m->err)
            m->err = -EMSGSIZE;
        return;
    }
    uint8_t *p = msg_reserve(m, FIELD_HDR + len);
    if (!p)
        return;
    put_le16(p, tag);
    put_le32(p + 2, (uint32_t)len);
    if (len)
        memcpy(p + FIELD_HDR, data, len);
}

void agentwire_put_str(agentwire_msg_t *m, uint16_t tag, const char *s)
{
    agentwire_put_bytes(m, tag, s, strlen(s));
}

void agentwire_put_u32(agentwire_msg_t *m, uint16_t tag, uint32_t v)
{
    uint8_t b[4];
    put_le32(b, v);
    agentwire_put_bytes(m, tag, b, sizeof(b));
}

void agentwire_put_u64(agentwire_msg_t *m, uint16_t tag, uint64_t v)
{
    uint8_t b[8];
    put_le64(b, v);
    agentwire_put_bytes(m, tag, b, sizeof(b));
}

int agentwire_msg_finish(agentwire_msg_t *m)
{
    if (m->err)
        return m->err;
    put_le32(m->data + 12, (uint32_t)(m->len - AGENTWIRE_HDR_SIZE));
    return 0;
}

void agentwire_msg_free(agentwire_msg_t *m)
{
    free(m->data);
    memset(m, 0, sizeof(*m));
}

/* ---- reader ---- */

void agentwire_iter_init(agentwire_iter_t *it, const uint8_t *payload, size_t len)
{
    it->p = payload;
    it->left = payload ? len : 0;
}

int agentwire_iter_next(agentwire_iter_t *it, agentwire_field_t *f)
{
    if (it->left == 0)
        return 0;
    if (it->left < FIELD_HDR)
        return -EBADMSG;
    uint32_t n = get_le32(it->p + 2);
    if (n > it->left - FIELD_HDR)
        return -EBADMSG;
    f->tag = get_le16(it->p);
    f->len = n;
    f->data = it->p + FIELD_HDR;
    it->p += FIELD_HDR + n;
    it->left -= FIELD_HDR + n;
    return 1;
}

int agentwire_field_u32(const agentwire_field_t *f, uint32_t *v)
{
    if (f->len != 4)
        return -EBADMSG;
    *v = get_le32(f->data);
    return 0;
}

int agentwire_field_u64(const agentwire_field_t *f, uint64_t *v)
{
    if (f->len != 8)
        return -EBADMSG;
    *v = get_le64(f->data);
    return 0;
}

int agentwire_field_strdup(const agentwire_field_t *f, size_t max, char **out)
{
    if (f->len > max)
        return -E2BIG;
    if (f->len && memchr(f->data, '\0', f->len))
        return -EBADMSG;
    char *s = malloc((size_t)f->len + 1);
    if (!s)
        return -ENOMEM;
    if (f->len)
        memcpy(s, f->data, f->len);
    s[f->len] = '\0';
    *out = s;
    return 0;
}

int agentwire_field_strcpy(const agentwire_field_t *f, char *buf, size_t size)
{
    if (size == 0 || f->len > size - 1)
        return -E2BIG;
    if (f->len && memchr(f->data, '\0', f->len))
        return -EBADMSG;
    if (f->len)
        memcpy(buf, f->data, f->len);
    buf[f->len] = '\0';
    return 0;
}
