// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the agent wire format (guest/agentwire.[ch]): header and
 * field round trips, every cap, and the decoders' answers to malformed
 * payloads.  Pure code: no agent, no sockets.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guest/agentwire.h"

static void test_header_roundtrip(void **state)
{
    uint8_t b[AGENTWIRE_HDR_SIZE];
    agentwire_hdr_encode(b, AGENTWIRE_EXEC, 0xdeadbeef, 1234);
    agentwire_hdr_t h;
    assert_int_equal(agentwire_hdr_decode(b, sizeof(b), &h), 0);
    assert_int_equal(h.type, AGENTWIRE_EXEC);
    assert_int_equal(h.id, 0xdeadbeef);
    assert_int_equal(h.len, 1234);
    assert_int_equal(h.flags, 0);
    assert_int_equal(agentwire_hdr_decode(b, sizeof(b) - 1, &h), -EAGAIN);
    /* little-endian on the wire whatever the host */
    assert_int_equal(b[0], 'T');
    assert_int_equal(b[3], 'W');
}

static void test_header_rejects(void **state)
{
    uint8_t b[AGENTWIRE_HDR_SIZE];
    agentwire_hdr_t h;
    agentwire_hdr_encode(b, AGENTWIRE_PING, 1, AGENTWIRE_MAX_PAYLOAD + 1);
    assert_int_equal(agentwire_hdr_decode(b, sizeof(b), &h), -EMSGSIZE);
    agentwire_hdr_encode(b, AGENTWIRE_PING, 1, AGENTWIRE_MAX_PAYLOAD);
    assert_int_equal(agentwire_hdr_decode(b, sizeof(b), &h), 0);
    b[0] ^= 1;
    assert_int_equal(agentwire_hdr_decode(b, sizeof(b), &h), -EBADMSG);
}

static void test_fields_roundtrip(void **state)
{
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_EXEC, 7);
    agentwire_put_str(&m, AGENTWIRE_T_ARGV, "echo");
    agentwire_put_str(&m, AGENTWIRE_T_ARGV, "");
    agentwire_put_u32(&m, AGENTWIRE_T_TIMEOUT_MS, 1500);
    agentwire_put_u64(&m, AGENTWIRE_T_OUTPUT_CAP, 1ull << 33);
    agentwire_put_bytes(&m, AGENTWIRE_T_STDIN, "\0\1\2", 3);
    agentwire_put_str(&m, AGENTWIRE_T_ENV, "A=b");
    agentwire_put_str(&m, AGENTWIRE_T_CWD, "/tmp");
    agentwire_put_u32(&m, 999, 5); /* unknown tags are skipped */
    assert_int_equal(agentwire_msg_finish(&m), 0);
    agentwire_hdr_t h;
    assert_int_equal(agentwire_hdr_decode(m.data, m.len, &h), 0);
    assert_int_equal(h.len, m.len - AGENTWIRE_HDR_SIZE);
    agentwire_exec_t e;
    char why[256];
    assert_int_equal(agentwire_parse_exec(m.data + 16, h.len, &e, why, sizeof(why)), 0);
    assert_int_equal(e.argc, 2);
    assert_string_equal(e.argv[0], "echo");
    assert_string_equal(e.argv[1], "");
    assert_null(e.argv[2]);
    assert_int_equal(e.envc, 1);
    assert_string_equal(e.env[0], "A=b");
    assert_null(e.env[1]);
    assert_string_equal(e.cwd, "/tmp");
    assert_int_equal(e.timeout_ms, 1500);
    assert_int_equal(e.output_cap, 1ull << 33);
    assert_int_equal(e.stdin_len, 3);
    assert_memory_equal(e.stdin_data, "\0\1\2", 3);
    agentwire_exec_free(&e);
    agentwire_msg_free(&m);
}

/* Build a payload of raw fields for the decoders. */
static size_t field(uint8_t *p, uint16_t tag, const void *d, uint32_t len)
{
    p[0] = (uint8_t)tag;
    p[1] = (uint8_t)(tag >> 8);
    for (int i = 0; i < 4; i++)
        p[2 + i] = (uint8_t)(len >> (8 * i));
    memcpy(p + 6, d, len);
    return 6 + len;
}

static void test_exec_malformed(void **state)
{
    uint8_t p[256];
    char why[256];
    agentwire_exec_t e;
    size_t n;

    /* no argv */
    n = field(p, AGENTWIRE_T_CWD, "/", 1);
    assert_int_equal(agentwire_parse_exec(p, n, &e, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "no argv"));
    /* NUL inside a string */
    n = field(p, AGENTWIRE_T_ARGV, "a\0b", 3);
    assert_int_equal(agentwire_parse_exec(p, n, &e, why, sizeof(why)), -EBADMSG);
    assert_non_null(strstr(why, "argv[0]"));
    /* a field that runs past the end */
    n = field(p, AGENTWIRE_T_ARGV, "ls", 2);
    assert_int_equal(agentwire_parse_exec(p, n - 1, &e, why, sizeof(why)), -EBADMSG);
    /* a u32 field of the wrong size */
    n = field(p, AGENTWIRE_T_ARGV, "ls", 2);
    n += field(p + n, AGENTWIRE_T_TIMEOUT_MS, "abc", 3);
    assert_int_equal(agentwire_parse_exec(p, n, &e, why, sizeof(why)), -EBADMSG);
    assert_non_null(strstr(why, "timeout"));
    /* env without '=' */
    n = field(p, AGENTWIRE_T_ARGV, "ls", 2);
    n += field(p + n, AGENTWIRE_T_ENV, "NOEQ", 4);
    assert_int_equal(agentwire_parse_exec(p, n, &e, why, sizeof(why)), -EINVAL);
    /* unknown flags */
    uint32_t fl = 0x80;
    n = field(p, AGENTWIRE_T_ARGV, "ls", 2);
    n += field(p + n, AGENTWIRE_T_FLAGS, &fl, 4);
    assert_int_equal(agentwire_parse_exec(p, n, &e, why, sizeof(why)), -EINVAL);
    /* trailing bytes too short for a field header */
    n = field(p, AGENTWIRE_T_ARGV, "ls", 2);
    p[n++] = 1;
    assert_int_equal(agentwire_parse_exec(p, n, &e, why, sizeof(why)), -EBADMSG);
}

static void test_exec_caps(void **state)
{
    /* one argument more than the cap */
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_EXEC, 1);
    for (unsigned i = 0; i <= AGENTWIRE_MAX_ARGS; i++)
        agentwire_put_str(&m, AGENTWIRE_T_ARGV, "x");
    assert_int_equal(agentwire_msg_finish(&m), 0);
    agentwire_exec_t e;
    char why[256];
    assert_int_equal(agentwire_parse_exec(m.data + 16, m.len - 16, &e, why, sizeof(why)), -E2BIG);
    assert_non_null(strstr(why, "too many"));
    agentwire_msg_free(&m);

    /* one string longer than the cap */
    size_t big = AGENTWIRE_MAX_STR + 1;
    char *s = malloc(big + 1);
    memset(s, 'a', big);
    s[big] = '\0';
    agentwire_msg_init(&m, AGENTWIRE_EXEC, 1);
    agentwire_put_str(&m, AGENTWIRE_T_ARGV, s);
    assert_int_equal(agentwire_msg_finish(&m), 0);
    assert_int_equal(agentwire_parse_exec(m.data + 16, m.len - 16, &e, why, sizeof(why)), -E2BIG);
    agentwire_msg_free(&m);
    free(s);
}

static void test_builder_cap(void **state)
{
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_PUT, 1);
    uint8_t *big = calloc(1, AGENTWIRE_MAX_PAYLOAD);
    agentwire_put_bytes(&m, AGENTWIRE_T_DATA, big, AGENTWIRE_MAX_PAYLOAD - 6);
    assert_int_equal(agentwire_msg_finish(&m), 0); /* exactly at the cap */
    agentwire_put_u32(&m, AGENTWIRE_T_MODE, 1);
    assert_int_equal(agentwire_msg_finish(&m), -EMSGSIZE); /* sticky */
    agentwire_msg_free(&m);
    free(big);
}

static void test_exit_and_error(void **state)
{
    uint8_t p[256];
    char why[256];
    size_t n;
    uint32_t v;
    agentwire_exit_t x;

    v = 3;
    n = field(p, AGENTWIRE_T_EXIT_CODE, &v, 4);
    assert_int_equal(agentwire_parse_exit(p, n, &x, why, sizeof(why)), 0);
    assert_int_equal(x.exit_code, 3);
    v = 9;
    n = field(p, AGENTWIRE_T_TERMSIG, &v, 4);
    assert_int_equal(agentwire_parse_exit(p, n, &x, why, sizeof(why)), 0);
    assert_int_equal(x.exit_code, -1);
    assert_int_equal(x.termsig, 9);
    /* both, or neither, is a lie */
    n += field(p + n, AGENTWIRE_T_EXIT_CODE, &v, 4);
    assert_int_equal(agentwire_parse_exit(p, n, &x, why, sizeof(why)), -EINVAL);
    assert_int_equal(agentwire_parse_exit(p, 0, &x, why, sizeof(why)), -EINVAL);
    v = 300;
    n = field(p, AGENTWIRE_T_EXIT_CODE, &v, 4);
    assert_int_equal(agentwire_parse_exit(p, n, &x, why, sizeof(why)), -EINVAL);

    agentwire_error_t e;
    v = 0; /* a zero errno becomes EIO: an error is never success */
    n = field(p, AGENTWIRE_T_ERRNO, &v, 4);
    n += field(p + n, AGENTWIRE_T_MESSAGE, "boom", 4);
    assert_int_equal(agentwire_parse_error(p, n, &e, why, sizeof(why)), 0);
    assert_int_equal(e.errnum, EIO);
    assert_string_equal(e.message, "boom");
}

static void test_put_get_thaw(void **state)
{
    uint8_t p[8192];
    char why[256];
    size_t n;
    agentwire_put_t put;
    uint32_t mode = 010000;
    n = field(p, AGENTWIRE_T_PATH, "/x", 2);
    n += field(p + n, AGENTWIRE_T_MODE, &mode, 4);
    assert_int_equal(agentwire_parse_put(p, n, &put, why, sizeof(why)), -EINVAL);
    n = field(p, AGENTWIRE_T_DATA, "abc", 3);
    assert_int_equal(agentwire_parse_put(p, n, &put, why, sizeof(why)), -EINVAL); /* no path */
    n = field(p, AGENTWIRE_T_PATH, "/x", 2);
    n += field(p + n, AGENTWIRE_T_DATA, "abc", 3);
    assert_int_equal(agentwire_parse_put(p, n, &put, why, sizeof(why)), 0);
    assert_int_equal(put.mode, 0644);
    assert_int_equal(put.len, 3);
    free(put.path);

    agentwire_get_t get;
    uint32_t max = 1u << 30;
    n = field(p, AGENTWIRE_T_PATH, "/y", 2);
    n += field(p + n, AGENTWIRE_T_MAX, &max, 4);
    assert_int_equal(agentwire_parse_get(p, n, &get, why, sizeof(why)), 0);
    assert_int_equal(get.max, AGENTWIRE_CHUNK); /* clamped */
    free(get.path);

    agentwire_thaw_t t;
    static uint8_t ent[AGENTWIRE_MAX_ENTROPY + 1];
    n = field(p, AGENTWIRE_T_ENTROPY, ent, AGENTWIRE_MAX_ENTROPY);
    assert_int_equal(agentwire_parse_thaw(p, n, &t, why, sizeof(why)), 0);
    n = field(p, AGENTWIRE_T_ENTROPY, ent, AGENTWIRE_MAX_ENTROPY + 1);
    assert_int_equal(agentwire_parse_thaw(p, n, &t, why, sizeof(why)), -E2BIG);
}

static void test_signal_and_hello(void **state)
{
    uint8_t p[256];
    char why[256];
    size_t n;
    uint32_t v = 0;
    agentwire_signal_t s;
    n = field(p, AGENTWIRE_T_SIGNO, &v, 4);
    assert_int_equal(agentwire_parse_signal(p, n, &s, why, sizeof(why)), -EINVAL);
    assert_int_equal(agentwire_parse_signal(p, 0, &s, why, sizeof(why)), -EINVAL);
    v = 15;
    n = field(p, AGENTWIRE_T_SIGNO, &v, 4);
    assert_int_equal(agentwire_parse_signal(p, n, &s, why, sizeof(why)), 0);
    assert_int_equal(s.signo, 15);

    agentwire_hello_t hl;
    n = field(p, AGENTWIRE_T_AGENT_MODE, "vm", 2);
    assert_int_equal(agentwire_parse_hello(p, n, &hl, why, sizeof(why)), -EBADMSG); /* no version */
    v = 1;
    n += field(p + n, AGENTWIRE_T_VERSION, &v, 4);
    assert_int_equal(agentwire_parse_hello(p, n, &hl, why, sizeof(why)), 0);
    assert_string_equal(hl.mode, "vm");
    /* a mode string longer than its field is rejected, not cut */
    n += field(p + n, AGENTWIRE_T_AGENT_MODE, "0123456789abcdefXYZ", 19);
    assert_int_equal(agentwire_parse_hello(p, n, &hl, why, sizeof(why)), -E2BIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_roundtrip), cmocka_unit_test(test_header_rejects),
        cmocka_unit_test(test_fields_roundtrip), cmocka_unit_test(test_exec_malformed),
        cmocka_unit_test(test_exec_caps),        cmocka_unit_test(test_builder_cap),
        cmocka_unit_test(test_exit_and_error),   cmocka_unit_test(test_put_get_thaw),
        cmocka_unit_test(test_signal_and_hello),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
