// SPDX-License-Identifier: Apache-2.0
/*
 * The policy parser: text (sentry/policy/default.policy, or a file given to
 * the supervisor) to a table of rules.  Pure code: names resolve through
 * libseccomp's syscall table, nothing touches the kernel, so a bad policy is
 * caught by unit tests and reported with its line, never half-installed.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "common/cleanup.h"
#include "sentry/policy.h"

/* Constant names a policy may use for argument values. */
static const struct {
    const char *name;
    uint64_t value;
} policy_consts[] = {
    {"AF_UNIX", AF_UNIX},
    {"AF_INET", AF_INET},
    {"AF_INET6", AF_INET6},
    {"AF_NETLINK", AF_NETLINK},
    {"AF_PACKET", AF_PACKET},
    {"SOCK_STREAM", SOCK_STREAM},
    {"SOCK_DGRAM", SOCK_DGRAM},
    {"SOCK_RAW", SOCK_RAW},
    {"SOCK_SEQPACKET", SOCK_SEQPACKET},
    {"CLONE_NEWNS", CLONE_NEWNS},
    {"CLONE_NEWUTS", CLONE_NEWUTS},
    {"CLONE_NEWIPC", CLONE_NEWIPC},
    {"CLONE_NEWUSER", CLONE_NEWUSER},
    {"CLONE_NEWPID", CLONE_NEWPID},
    {"CLONE_NEWNET", CLONE_NEWNET},
    {"CLONE_NEWCGROUP", CLONE_NEWCGROUP},
    {"CLONE_NEWTIME", 0x00000080},
    {"TIOCSTI", TIOCSTI},
    {"TIOCLINUX", TIOCLINUX},
    {"AT_EMPTY_PATH", AT_EMPTY_PATH},
};

static const struct {
    const char *name;
    int value;
} policy_errnos[] = {
    {"EPERM", EPERM},   {"ENOSYS", ENOSYS}, {"EACCES", EACCES},
    {"EINVAL", EINVAL}, {"ENOENT", ENOENT}, {"EOPNOTSUPP", EOPNOTSUPP},
};

static int perr(thaw_err_t *err, const char *name, unsigned line, const char *what, const char *tok)
{
    return thaw_err_set(err, EINVAL, "%s:%u: %s '%.64s'", name, line, what, tok ? tok : "");
}

/* One value: a number (strtoull base 0) or constant names joined by '|'. */
static bool parse_value(const char *tok, uint64_t *out)
{
    char buf[256];
    if (strlen(tok) >= sizeof(buf))
        return false;
    strcpy(buf, tok);
    uint64_t v = 0;
    char *save = NULL;
    for (char *part = strtok_r(buf, "|", &save); part; part = strtok_r(NULL, "|", &save)) {
        char *end = NULL;
        errno = 0;
        unsigned long long n = strtoull(part, &end, 0);
        if (end != part && *end == '\0' && errno == 0 && part[0] != '-') {
            v |= n;
            continue;
        }
        bool found = false;
        for (size_t i = 0; i < THAW_ARRAY_SIZE(policy_consts); i++)
            if (!strcmp(policy_consts[i].name, part)) {
                v |= policy_consts[i].value;
                found = true;
                break;
            }
        if (!found)
            return false;
    }
    *out = v;
    return true;
}

static bool parse_arg(const char *tok, unsigned *arg)
{
    if (tok[0] != 'a' || tok[1] < '0' || tok[1] > '5' || tok[2] != '\0')
        return false;
    *arg = (unsigned)(tok[1] - '0');
    return true;
}

static bool parse_op(const char *tok, sentry_cmp_t *op)
{
    static const struct {
        const char *s;
        sentry_cmp_t op;
    } ops[] = {{"==", SENTRY_CMP_EQ}, {"!=", SENTRY_CMP_NE}, {"<", SENTRY_CMP_LT},
               {"<=", SENTRY_CMP_LE}, {">", SENTRY_CMP_GT},  {">=", SENTRY_CMP_GE}};
    for (size_t i = 0; i < THAW_ARRAY_SIZE(ops); i++)
        if (!strcmp(ops[i].s, tok)) {
            *op = ops[i].op;
            return true;
        }
    return false;
}

static int add_rule(sentry_policy_t *p, const sentry_rule_t *r)
{
    if (p->nrules == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 128;
        sentry_rule_t *n = realloc(p->rules, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        p->rules = n;
        p->cap = ncap;
    }
    p->rules[p->nrules++] = *r;
    return 0;
}

#define MAX_TOKS 32

/* Parse the tokens of one line (already split, comments removed). */
static int parse_line(sentry_policy_t *p, char **tok, int ntok, const char *name, unsigned line,
                      thaw_err_t *err)
{
    sentry_rule_t r = {.line = line};
    const char *act = tok[0];
    if (!strcmp(act, "allow"))
        r.act = SENTRY_ACT_ALLOW;
    else if (!strcmp(act, "errno"))
        r.act = SENTRY_ACT_ERRNO;
    else if (!strcmp(act, "notify"))
        r.act = SENTRY_ACT_NOTIFY;
    else if (!strcmp(act, "deny"))
        r.act = SENTRY_ACT_DENY;
    else
        return perr(err, name, line, "unknown action (allow, errno, notify, deny)", act);
    if (ntok < 2)
        return perr(err, name, line, "missing syscall name after", act);
    r.nr = seccomp_syscall_resolve_name(tok[1]);
    if (r.nr < 0 || r.nr >= SENTRY_NR_MAX)
        return perr(err, name, line, "unknown syscall", tok[1]);

    int i = 2;
    if (r.act == SENTRY_ACT_ERRNO) {
        if (ntok < 3)
            return perr(err, name, line, "errno rule needs an errno name for", tok[1]);
        bool found = false;
        for (size_t k = 0; k < THAW_ARRAY_SIZE(policy_errnos); k++)
            if (!strcmp(policy_errnos[k].name, tok[2])) {
                r.errno_val = policy_errnos[k].value;
                found = true;
            }
        if (!found)
            return perr(err, name, line, "unknown errno", tok[2]);
        i = 3;
    }
    if (i < ntok) {
        if (r.act != SENTRY_ACT_ALLOW || strcmp(tok[i], "if"))
            return perr(err, name, line, "unexpected token", tok[i]);
        i++;
        for (;;) {
            if (r.ncond == SENTRY_MAX_CONDS)
                return perr(err, name, line, "too many conditions for", tok[1]);
            sentry_cond_t *c = &r.cond[r.ncond];
            /* aN OP V  |  aN & M == V */
            if (i + 3 > ntok || !parse_arg(tok[i], &c->arg))
                return perr(err, name, line, "expected a condition 'aN OP VALUE' at",
                            i < ntok ? tok[i] : "end of line");
            if (!strcmp(tok[i + 1], "&")) {
                if (i + 5 > ntok || strcmp(tok[i + 3], "=="))
                    return perr(err, name, line, "expected 'aN & MASK == VALUE' at", tok[i]);
                if (!parse_value(tok[i + 2], &c->mask))
                    return perr(err, name, line, "bad value", tok[i + 2]);
                if (!parse_value(tok[i + 4], &c->value))
                    return perr(err, name, line, "bad value", tok[i + 4]);
                if ((c->value & ~c->mask) != 0)
                    return perr(err, name, line, "value has bits outside its mask", tok[i + 4]);
                c->op = SENTRY_CMP_MASKED_EQ;
                i += 5;
            } else {
                if (!parse_op(tok[i + 1], &c->op))
                    return perr(err, name, line, "unknown operator", tok[i + 1]);
                if (!parse_value(tok[i + 2], &c->value))
                    return perr(err, name, line, "bad value", tok[i + 2]);
                i += 3;
            }
            r.ncond++;
            if (i == ntok)
                break;
            if (strcmp(tok[i], "&&"))
                return perr(err, name, line, "expected '&&' at", tok[i]);
            i++;
        }
    }

    /* Consistency: one fallback class per syscall; unconditional allow is final. */
    if (r.act == SENTRY_ACT_ALLOW) {
        if (p->has_allow[r.nr] == 1 || (r.ncond == 0 && p->has_allow[r.nr]))
            return perr(err, name, line, "allowed twice", tok[1]);
        if (r.ncond == 0 && p->fallback[r.nr] != SENTRY_ACT_UNKNOWN)
            return perr(err, name, line, "allowed unconditionally but also given another action",
                        tok[1]);
        p->has_allow[r.nr] = r.ncond ? 2 : 1;
    } else {
        if (p->fallback[r.nr] != SENTRY_ACT_UNKNOWN)
            return perr(err, name, line, "given two actions", tok[1]);
        if (p->has_allow[r.nr] == 1)
            return perr(err, name, line, "allowed unconditionally but also given another action",
                        tok[1]);
        if (r.act == SENTRY_ACT_ERRNO && p->has_allow[r.nr])
            return perr(err, name, line, "errno cannot follow a conditional allow for", tok[1]);
        p->fallback[r.nr] = (uint8_t)r.act;
    }
    if (add_rule(p, &r) < 0)
        return thaw_err_set(err, ENOMEM, "%s:%u: out of memory", name, line);
    return 0;
}

int sentry__policy_parse(const char *text, const char *name, sentry_policy_t *p, thaw_err_t *err)
{
    memset(p, 0, sizeof(*p));
    unsigned line = 0;
    const char *s = text;
    while (*s) {
        line++;
        const char *eol = strchr(s, '\n');
        size_t len = eol ? (size_t)(eol - s) : strlen(s);
        char buf[1024];
        if (len >= sizeof(buf)) {
            sentry__policy_free(p);
            return thaw_err_set(err, EINVAL, "%s:%u: line longer than %zu bytes", name, line,
                                sizeof(buf) - 1);
        }
        memcpy(buf, s, len);
        buf[len] = '\0';
        s = eol ? eol + 1 : s + len;
        char *hash = strchr(buf, '#');
        if (hash)
            *hash = '\0';
        char *tok[MAX_TOKS];
        int ntok = 0;
        char *save = NULL;
        for (char *t = strtok_r(buf, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
            if (ntok == MAX_TOKS) {
                sentry__policy_free(p);
                return thaw_err_set(err, EINVAL, "%s:%u: more than %d words", name, line, MAX_TOKS);
            }
            tok[ntok++] = t;
        }
        if (ntok == 0)
            continue;
        int rc = parse_line(p, tok, ntok, name, line, err);
        if (rc < 0) {
            sentry__policy_free(p);
            return rc;
        }
    }
    if (p->nrules == 0) {
        sentry__policy_free(p);
        return thaw_err_set(err, EINVAL, "%s: no rules", name);
    }
    return 0;
}

void sentry__policy_free(sentry_policy_t *p)
{
    free(p->rules);
    memset(p, 0, sizeof(*p));
}

sentry_act_t sentry__policy_class(const sentry_policy_t *p, long nr)
{
    if (nr < 0 || nr >= SENTRY_NR_MAX)
        return SENTRY_ACT_UNKNOWN;
    if (p->fallback[nr] != SENTRY_ACT_UNKNOWN)
        return (sentry_act_t)p->fallback[nr];
    /* Conditional allow whose conditions failed: denied and logged. */
    if (p->has_allow[nr] == 2)
        return SENTRY_ACT_DENY;
    return SENTRY_ACT_UNKNOWN;
}
