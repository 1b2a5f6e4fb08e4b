// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for the agent wire decoder (guest/agentwire*.c): the input
 * is a byte stream as either side of the channel would read it.  Frames are
 * cut from it exactly as the agent and the client do, and every payload goes
 * through every message parser (not only the one its type names), so each
 * parser sees every shape of field list.  The invariants are the sanitizers'
 * (no out-of-bounds read, no leak, no undefined behaviour) plus the
 * assertions below on what a successful parse promises.
 *
 * Build: CC=clang meson setup build-fuzz -Dfuzzing=true && ninja -C build-fuzz
 * Run:   build-fuzz/tests/guest/fuzz-agentwire tests/fuzz/agent/corpus
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guest/agentwire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

static void parse_all(const uint8_t *p, size_t len)
{
    char msg[256];
    agentwire_exec_t e;
    if (agentwire_parse_exec(p, len, &e, msg, sizeof(msg)) == 0) {
        CHECK(e.argc >= 1 && e.argc <= AGENTWIRE_MAX_ARGS && e.argv[e.argc] == NULL);
        CHECK(e.envc <= AGENTWIRE_MAX_ENV);
        CHECK(!e.env || e.env[e.envc] == NULL);
        for (size_t i = 0; i < e.argc; i++)
            CHECK(strlen(e.argv[i]) <= AGENTWIRE_MAX_STR);
        CHECK(e.stdin_len <= len);
        agentwire_exec_free(&e);
    }
    agentwire_stdin_t s;
    if (agentwire_parse_stdin(p, len, &s, msg, sizeof(msg)) == 0)
        CHECK(s.len <= len);
    agentwire_signal_t sig;
    if (agentwire_parse_signal(p, len, &sig, msg, sizeof(msg)) == 0)
        CHECK(sig.signo >= 1 && sig.signo <= 64);
    agentwire_put_t put;
    if (agentwire_parse_put(p, len, &put, msg, sizeof(msg)) == 0) {
        CHECK(put.path && put.path[0] && strlen(put.path) <= AGENTWIRE_MAX_PATH);
        CHECK((put.mode & ~07777u) == 0);
        free(put.path);
    }
    agentwire_get_t get;
    if (agentwire_parse_get(p, len, &get, msg, sizeof(msg)) == 0) {
        CHECK(get.max >= 1 && get.max <= AGENTWIRE_CHUNK);
        free(get.path);
    }
    agentwire_thaw_t t;
    if (agentwire_parse_thaw(p, len, &t, msg, sizeof(msg)) == 0)
        CHECK(t.entropy_len <= AGENTWIRE_MAX_ENTROPY);
    agentwire_exit_t x;
    if (agentwire_parse_exit(p, len, &x, msg, sizeof(msg)) == 0)
        CHECK((x.exit_code == -1) == (x.termsig != 0) && x.exit_code <= 255);
    agentwire_error_t er;
    if (agentwire_parse_error(p, len, &er, msg, sizeof(msg)) == 0)
        CHECK(er.errnum > 0 && er.errnum <= 4095 && strlen(er.message) <= AGENTWIRE_MAX_MSG);
    agentwire_hello_t h;
    (void)agentwire_parse_hello(p, len, &h, msg, sizeof(msg));
    agentwire_data_t d;
    if (agentwire_parse_data(p, len, &d, msg, sizeof(msg)) == 0)
        CHECK(d.len <= len);
    uint32_t v;
    bool found;
    (void)agentwire_parse_u32_field(p, len, AGENTWIRE_T_PID, &v, &found, msg, sizeof(msg));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    for (int frames = 0; frames < 64; frames++) {
        agentwire_hdr_t h;
        int r = agentwire_hdr_decode(data + off, size - off, &h);
        if (r < 0)
            break; /* -EAGAIN: need more; others: framing broken, reader stops */
        CHECK(h.len <= AGENTWIRE_MAX_PAYLOAD);
        if (size - off - AGENTWIRE_HDR_SIZE < h.len)
            break;
        parse_all(data + off + AGENTWIRE_HDR_SIZE, h.len);
        off += AGENTWIRE_HDR_SIZE + h.len;
    }
    /* the whole input as a bare payload too, for inputs without a header */
    parse_all(data, size);
    return 0;
}
