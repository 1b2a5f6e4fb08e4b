/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's wire protocol, shared by the host (agent_client.c, linked into
 * thawd, the VMM and the sentry tier) and the guest (thaw-agent).  Pure code:
 * no syscalls, so both sides and the fuzzer use the same decoder.
 *
 * A frame is a 16-byte little-endian header followed by a payload:
 *   u32 magic "THAW" | u16 type | u16 flags (0) | u32 request id | u32 length
 * The payload is a sequence of fields, each
 *   u16 tag | u32 length | bytes
 * Tags may repeat (argv, env); unknown tags are skipped so either side can
 * add fields without breaking the other.  docs/agent-protocol.md describes
 * every message; this header is the reference for the numbers.
 *
 * Two kinds of bad input, handled differently:
 *  - a header that breaks framing (wrong magic, length over the cap): the
 *    stream can no longer be trusted, the reader closes the channel;
 *  - a well-framed frame whose type or fields are wrong: the receiver
 *    answers with an ERROR frame for that request id and carries on.
 */
#ifndef THAW_GUEST_AGENTWIRE_H
#define THAW_GUEST_AGENTWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bump when a change is not compatible with an older peer (a new required
 * field, a changed meaning); new optional fields and messages do not. */
#define AGENTWIRE_VERSION 1

#define AGENTWIRE_MAGIC       0x57414854u /* "THAW" read as little-endian u32 */
#define AGENTWIRE_HDR_SIZE    16u
#define AGENTWIRE_MAX_PAYLOAD (1u << 20)   /* per frame; files and output are chunked */
#define AGENTWIRE_CHUNK       (256u << 10) /* data bytes per STDOUT/STDERR/DATA/PUT frame */

/* Caps every decoder applies (both sides). */
#define AGENTWIRE_MAX_ARGS    4096u
#define AGENTWIRE_MAX_ENV     4096u
#define AGENTWIRE_MAX_STR     (64u << 10) /* one argv/env string */
#define AGENTWIRE_MAX_PATH    4096u
#define AGENTWIRE_MAX_ENTROPY 4096u /* bytes of host entropy per THAW */
#define AGENTWIRE_MAX_MSG     1024u /* error messages, names */

/* Message types.  Host → agent below 0x80, agent → host from 0x80. */
enum agentwire_type {
    AGENTWIRE_EXEC = 0x01,     /* start a command; replies STARTED, output, EXIT */
    AGENTWIRE_STDIN = 0x02,    /* more stdin for a running exec (id = exec id) */
    AGENTWIRE_SIGNAL = 0x03,   /* signal a running exec (id = exec id) */
    AGENTWIRE_PUT = 0x04,      /* write a chunk of a file; replies OK */
    AGENTWIRE_GET = 0x05,      /* read a chunk of a file; replies DATA */
    AGENTWIRE_THAW = 0x06,     /* entropy + wall clock after a restore; replies OK */
    AGENTWIRE_QUIESCE = 0x07,  /* before a snapshot: stop taking execs, sync; OK */
    AGENTWIRE_PING = 0x08,     /* replies PONG echoing DATA */
    AGENTWIRE_SHUTDOWN = 0x09, /* replies OK, then the agent ends the sandbox */

    AGENTWIRE_HELLO = 0x81,   /* unsolicited, id 0, once the agent is ready */
    AGENTWIRE_STARTED = 0x82, /* exec running: PID */
    AGENTWIRE_STDOUT = 0x83,  /* DATA: a chunk of the exec's stdout */
    AGENTWIRE_STDERR = 0x84,  /* DATA: a chunk of the exec's stderr */
    AGENTWIRE_EXIT = 0x85,    /* exec finished; the last frame for that id */
    AGENTWIRE_OK = 0x86,      /* generic success */
    AGENTWIRE_ERROR = 0x87,   /* ERRNO + MESSAGE; the last frame for that id */
    AGENTWIRE_DATA = 0x88,    /* reply to GET */
    AGENTWIRE_PONG = 0x89,    /* reply to PING */
};

/* Field tags. */
enum agentwire_tag {
    AGENTWIRE_T_ARGV = 1,        /* str, repeated, at least one */
    AGENTWIRE_T_ENV = 2,         /* str "KEY=VALUE", repeated */
    AGENTWIRE_T_CWD = 3,         /* str */
    AGENTWIRE_T_UID = 4,         /* u32 */
    AGENTWIRE_T_GID = 5,         /* u32 */
    AGENTWIRE_T_STDIN = 6,       /* bytes: inline stdin */
    AGENTWIRE_T_TIMEOUT_MS = 7,  /* u32, 0 = none */
    AGENTWIRE_T_OUTPUT_CAP = 8,  /* u64: stdout+stderr bytes forwarded */
    AGENTWIRE_T_FLAGS = 9,       /* u32, meaning per message type */
    AGENTWIRE_T_PID = 10,        /* u32 */
    AGENTWIRE_T_DATA = 11,       /* bytes */
    AGENTWIRE_T_EOF = 12,        /* u32 0/1 */
    AGENTWIRE_T_SIGNO = 13,      /* u32 */
    AGENTWIRE_T_PATH = 14,       /* str */
    AGENTWIRE_T_MODE = 15,       /* u32 file mode bits */
    AGENTWIRE_T_OFFSET = 16,     /* u64 */
    AGENTWIRE_T_MAX = 17,        /* u32 max bytes */
    AGENTWIRE_T_SIZE = 18,       /* u64 file size */
    AGENTWIRE_T_ENTROPY = 19,    /* bytes */
    AGENTWIRE_T_WALLCLOCK = 20,  /* u64 ns since the epoch, CLOCK_REALTIME */
    AGENTWIRE_T_EXIT_CODE = 21,  /* u32 (0..255) */
    AGENTWIRE_T_TERMSIG = 22,    /* u32, 0 = exited normally */
    AGENTWIRE_T_TIMED_OUT = 23,  /* u32 0/1 */
    AGENTWIRE_T_TRUNCATED = 24,  /* u32 0/1 */
    AGENTWIRE_T_CPU_USER = 25,   /* u64 microseconds */
    AGENTWIRE_T_CPU_SYS = 26,    /* u64 microseconds */
    AGENTWIRE_T_MAX_RSS = 27,    /* u64 KiB */
    AGENTWIRE_T_WALL = 28,       /* u64 microseconds, start to exit */
    AGENTWIRE_T_ERRNO = 29,      /* u32 positive errno */
    AGENTWIRE_T_MESSAGE = 30,    /* str */
    AGENTWIRE_T_VERSION = 31,    /* u32 protocol version */
    AGENTWIRE_T_CAPS = 32,       /* u64 AGENTWIRE_CAP_* */
    AGENTWIRE_T_AGENT_MODE = 33, /* str vm|sentry|test */
    AGENTWIRE_T_KERNEL = 34,     /* str: uname sysname release version */
    AGENTWIRE_T_BOOT_ID = 35,    /* str */
    AGENTWIRE_T_AGENT_VER = 36,  /* str */
    AGENTWIRE_T_UPTIME = 37,     /* u64 ns of CLOCK_BOOTTIME at hello */
    AGENTWIRE_T_APPLIED = 38,    /* u32 0/1: THAW changed guest state */
    AGENTWIRE_T_PTY_ROWS = 39,   /* u32: terminal size of a pty exec */
    AGENTWIRE_T_PTY_COLS = 40,   /* u32 */
};

/* EXEC flags */
#define AGENTWIRE_EXEC_STDIN_OPEN 0x1u /* keep stdin open for STDIN frames */
#define AGENTWIRE_EXEC_PTY        0x2u /* a pseudo-terminal instead of pipes */
/* SIGNAL flags */
#define AGENTWIRE_SIGNAL_GROUP    0x1u /* signal the exec's whole process group */
/* PUT flags */
#define AGENTWIRE_PUT_TRUNCATE    0x1u /* first chunk: create or truncate */

/* HELLO capabilities */
#define AGENTWIRE_CAP_EXEC    0x1u
#define AGENTWIRE_CAP_FILES   0x2u
#define AGENTWIRE_CAP_THAW    0x4u /* THAW reseeds and sets the clock (vm mode) */
#define AGENTWIRE_CAP_QUIESCE 0x8u

typedef struct agentwire_hdr {
    uint32_t magic;
    uint16_t type;
    uint16_t flags;
    uint32_t id;
    uint32_t len; /* payload bytes, <= AGENTWIRE_MAX_PAYLOAD */
} agentwire_hdr_t;

/* Write a header into out[AGENTWIRE_HDR_SIZE]. */
void agentwire_hdr_encode(uint8_t *out, uint16_t type, uint32_t id, uint32_t len);

/*
 * Decode a header from buf[0..len).  Returns 0; -EAGAIN if len is shorter
 * than a header; -EBADMSG for a wrong magic or -EMSGSIZE for a length over
 * AGENTWIRE_MAX_PAYLOAD (both break framing: close the channel).  Nonzero
 * flags are returned as they are: the caller rejects that one frame.
 */
int agentwire_hdr_decode(const uint8_t *buf, size_t len, agentwire_hdr_t *hdr);

/* Name of a message type for logs and errors ("exec", "unknown"). */
const char *agentwire_type_name(uint16_t type);

/* ---- building a frame ---- */

/*
 * A frame under construction.  Errors are sticky: the put_* helpers do
 * nothing after a failure and agentwire_msg_finish() reports it, so a
 * builder reads as a straight sequence of puts.
 */
typedef struct agentwire_msg {
    uint8_t *data; /* header + payload once finished; owned */
    size_t len;
    size_t cap;
    int err; /* 0 or -ENOMEM / -EMSGSIZE */
} agentwire_msg_t;

void agentwire_msg_init(agentwire_msg_t *m, uint16_t type, uint32_t id);
void agentwire_put_bytes(agentwire_msg_t *m, uint16_t tag, const void *data, size_t len);
void agentwire_put_str(agentwire_msg_t *m, uint16_t tag, const char *s);
void agentwire_put_u32(agentwire_msg_t *m, uint16_t tag, uint32_t v);
void agentwire_put_u64(agentwire_msg_t *m, uint16_t tag, uint64_t v);
/* Fill in the length; returns 0 or the sticky error.  m->data/m->len is the frame. */
int agentwire_msg_finish(agentwire_msg_t *m);
void agentwire_msg_free(agentwire_msg_t *m);

/* ---- reading a payload ---- */

typedef struct agentwire_field {
    uint16_t tag;
    uint32_t len;
    const uint8_t *data; /* points into the payload */
} agentwire_field_t;

typedef struct agentwire_iter {
    const uint8_t *p;
    size_t left;
} agentwire_iter_t;

void agentwire_iter_init(agentwire_iter_t *it, const uint8_t *payload, size_t len);
/* 1 and *f filled; 0 at the end; -EBADMSG if a field runs past the payload. */
int agentwire_iter_next(agentwire_iter_t *it, agentwire_field_t *f);

/* Typed views of a field: -EBADMSG if the length is wrong for the type. */
int agentwire_field_u32(const agentwire_field_t *f, uint32_t *v);
int agentwire_field_u64(const agentwire_field_t *f, uint64_t *v);
/*
 * Copy a string field into a new NUL-terminated string: -EBADMSG if it holds
 * a NUL byte, -E2BIG if longer than max, -ENOMEM.
 */
int agentwire_field_strdup(const agentwire_field_t *f, size_t max, char **out);
/* Same into a caller's buffer (truncating is an error: -E2BIG). */
int agentwire_field_strcpy(const agentwire_field_t *f, char *buf, size_t size);

/* ---- decoded messages (agentwire_msg.c) ---- */

/*
 * Each parser validates every field against the caps above and fills a
 * struct; on failure it returns -errno and, when msg is not NULL, writes a
 * one-line reason ("exec: argv[3]: string holds a NUL byte").  Pointers to
 * byte fields point into the payload, which must outlive the struct.
 */

typedef struct agentwire_exec {
    char **argv; /* argc strings + NULL */
    size_t argc;
    char **env; /* envc strings + NULL; NULL if no ENV field was sent */
    size_t envc;
    char *cwd; /* NULL = agent's default */
    bool has_uid, has_gid;
    uint32_t uid, gid;
    const uint8_t *stdin_data;
    size_t stdin_len;
    uint32_t timeout_ms;
    uint64_t output_cap; /* 0 = not sent */
    uint32_t flags;
    uint32_t pty_rows, pty_cols; /* 0 = not sent */
} agentwire_exec_t;

int agentwire_parse_exec(const uint8_t *p, size_t len, agentwire_exec_t *out, char *msg,
                         size_t msgsz);
void agentwire_exec_free(agentwire_exec_t *e);

typedef struct agentwire_stdin {
    const uint8_t *data;
    size_t len;
    bool eof;
} agentwire_stdin_t;
int agentwire_parse_stdin(const uint8_t *p, size_t len, agentwire_stdin_t *out, char *msg,
                          size_t msgsz);

typedef struct agentwire_signal {
    uint32_t signo;
    uint32_t flags;
} agentwire_signal_t;
int agentwire_parse_signal(const uint8_t *p, size_t len, agentwire_signal_t *out, char *msg,
                           size_t msgsz);

typedef struct agentwire_put {
    char *path;
    uint32_t mode; /* default 0644 */
    uint64_t offset;
    uint32_t flags;
    const uint8_t *data;
    size_t len;
} agentwire_put_t;
int agentwire_parse_put(const uint8_t *p, size_t len, agentwire_put_t *out, char *msg,
                        size_t msgsz);

typedef struct agentwire_get {
    char *path;
    uint64_t offset;
    uint32_t max; /* clamped to AGENTWIRE_CHUNK */
} agentwire_get_t;
int agentwire_parse_get(const uint8_t *p, size_t len, agentwire_get_t *out, char *msg,
                        size_t msgsz);

typedef struct agentwire_thaw {
    const uint8_t *entropy;
    size_t entropy_len;
    uint64_t wallclock_ns; /* 0 = leave the clock alone */
} agentwire_thaw_t;
int agentwire_parse_thaw(const uint8_t *p, size_t len, agentwire_thaw_t *out, char *msg,
                         size_t msgsz);

typedef struct agentwire_exit {
    int32_t exit_code; /* -1 if killed by a signal */
    uint32_t termsig;
    bool timed_out, truncated;
    uint64_t cpu_user_us, cpu_sys_us, max_rss_kb, wall_us;
} agentwire_exit_t;
int agentwire_parse_exit(const uint8_t *p, size_t len, agentwire_exit_t *out, char *msg,
                         size_t msgsz);

typedef struct agentwire_error {
    uint32_t errnum;
    char message[AGENTWIRE_MAX_MSG + 1];
} agentwire_error_t;
int agentwire_parse_error(const uint8_t *p, size_t len, agentwire_error_t *out, char *msg,
                          size_t msgsz);

typedef struct agentwire_hello {
    uint32_t version;
    uint64_t caps;
    char mode[16];
    char kernel[256];
    char boot_id[64];
    char agent_version[32];
    uint64_t uptime_ns;
} agentwire_hello_t;
int agentwire_parse_hello(const uint8_t *p, size_t len, agentwire_hello_t *out, char *msg,
                          size_t msgsz);

typedef struct agentwire_data {
    const uint8_t *data;
    size_t len;
    uint64_t size; /* whole file size */
    bool eof;
} agentwire_data_t;
int agentwire_parse_data(const uint8_t *p, size_t len, agentwire_data_t *out, char *msg,
                         size_t msgsz);

/* PID of STARTED; APPLIED of OK (absent = 0). */
int agentwire_parse_u32_field(const uint8_t *p, size_t len, uint16_t tag, uint32_t *out,
                              bool *found, char *msg, size_t msgsz);

#endif
