/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The syscall policy as data (sentry/policy/default.policy) and the pure code
 * around it: the parser that turns the text into rules, the compiler that
 * turns rules into a BPF program with libseccomp, and the per-syscall class
 * table the supervisor dispatches on.  Module-internal: not part of sentry.h,
 * but the unit tests include it.
 */
#ifndef THAW_SENTRY_POLICY_H
#define THAW_SENTRY_POLICY_H

#include <linux/filter.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* x86_64 syscall numbers stay below this; anything above is unknown. */
#define SENTRY_NR_MAX    512
#define SENTRY_MAX_CONDS 6

typedef enum sentry_act {
    SENTRY_ACT_UNKNOWN = 0, /* not named: the supervisor answers ENOSYS, logged */
    SENTRY_ACT_ALLOW,       /* the kernel runs it (maybe only under conditions) */
    SENTRY_ACT_ERRNO,       /* the filter answers -errno itself */
    SENTRY_ACT_NOTIFY,      /* the supervisor brokers it */
    SENTRY_ACT_DENY,        /* the supervisor answers EPERM, logged */
} sentry_act_t;

typedef enum sentry_cmp {
    SENTRY_CMP_EQ,
    SENTRY_CMP_NE,
    SENTRY_CMP_LT,
    SENTRY_CMP_LE,
    SENTRY_CMP_GT,
    SENTRY_CMP_GE,
    SENTRY_CMP_MASKED_EQ,
} sentry_cmp_t;

typedef struct sentry_cond {
    unsigned arg; /* 0..5 */
    sentry_cmp_t op;
    uint64_t mask; /* MASKED_EQ only */
    uint64_t value;
} sentry_cond_t;

typedef struct sentry_rule {
    int nr;
    sentry_act_t act;
    int errno_val;  /* ERRNO */
    unsigned ncond; /* ALLOW: 0 = unconditional */
    sentry_cond_t cond[SENTRY_MAX_CONDS];
    unsigned line;
} sentry_rule_t;

typedef struct sentry_policy {
    sentry_rule_t *rules;
    size_t nrules, cap;
    /* Per syscall: what happens when no allow rule matched. */
    uint8_t fallback[SENTRY_NR_MAX];  /* sentry_act_t: UNKNOWN, ERRNO, NOTIFY or DENY */
    uint8_t has_allow[SENTRY_NR_MAX]; /* 1 unconditional, 2 conditional only */
} sentry_policy_t;

/*
 * Parse policy text.  `name` is used in messages ("default.policy:12: ...").
 * Returns 0 or -EINVAL with err naming the line and the problem; *p is
 * released on failure.
 */
int sentry__policy_parse(const char *text, const char *name, sentry_policy_t *p, thaw_err_t *err);
void sentry__policy_free(sentry_policy_t *p);

/* The class of a syscall number for the supervisor (fallback for notified
 * calls that failed an allow condition). */
sentry_act_t sentry__policy_class(const sentry_policy_t *p, long nr);

/* The built-in policy text (generated from policy/default.policy). */
extern const char sentry__policy_default[];
extern const char sentry__policy_default_name[];

/* A compiled filter: the BPF program libseccomp generated for the policy. */
typedef struct sentry_bpf {
    struct sock_filter *insns;
    unsigned short len;
    unsigned allowed, allowed_cond, notified, denied, errno_direct;
} sentry_bpf_t;

/*
 * Compile a parsed policy for the native architecture (x86_64): default
 * action USER_NOTIF, allow and errno rules as written, foreign architectures
 * (i386, x32) kill the process.  Returns 0 or -errno with err filled.
 */
int sentry__policy_compile(const sentry_policy_t *p, sentry_bpf_t *out, thaw_err_t *err);
void sentry__bpf_free(sentry_bpf_t *b);

/*
 * Install a compiled filter on the calling thread with a user-notification
 * listener.  Async-signal-safe (raw syscalls only): it runs in the child
 * between clone3 and exec.  Returns the listener fd or -errno.
 */
int sentry__filter_install(const sentry_bpf_t *b);

#endif
