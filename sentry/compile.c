// SPDX-License-Identifier: Apache-2.0
/*
 * The policy compiler: parsed rules to a BPF program, with libseccomp doing
 * the compiling.  It runs once per supervisor; every sandbox then installs
 * the same program (install.c), so creating a sandbox never pays for filter
 * generation and the child between clone3 and exec needs no allocation.
 *
 * The default action is USER_NOTIF: whatever the policy does not allow goes
 * to the supervisor, which brokers the `notify` calls and answers the rest
 * with an errno and a log line naming the sandbox.  If the supervisor is gone
 * the kernel answers ENOSYS, so the filter fails closed.
 */
#include <errno.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "sentry/policy.h"

static enum scmp_compare cmp_of(sentry_cmp_t op)
{
    switch (op) {
    case SENTRY_CMP_EQ:
        return SCMP_CMP_EQ;
    case SENTRY_CMP_NE:
        return SCMP_CMP_NE;
    case SENTRY_CMP_LT:
        return SCMP_CMP_LT;
    case SENTRY_CMP_LE:
        return SCMP_CMP_LE;
    case SENTRY_CMP_GT:
        return SCMP_CMP_GT;
    case SENTRY_CMP_GE:
        return SCMP_CMP_GE;
    case SENTRY_CMP_MASKED_EQ:
        return SCMP_CMP_MASKED_EQ;
    }
    return SCMP_CMP_EQ;
}

static void ctx_releasep(scmp_filter_ctx *c)
{
    if (*c)
        seccomp_release(*c);
}

int sentry__policy_compile(const sentry_policy_t *p, sentry_bpf_t *out, thaw_err_t *err)
{
    memset(out, 0, sizeof(*out));
    __attribute__((cleanup(ctx_releasep))) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_NOTIFY);
    if (!ctx)
        return thaw_err_set(err, ENOMEM, "seccomp_init failed");
    /* Only the native arch is in the filter; libseccomp then sends i386
     * (int 0x80) and x32 (the 0x40000000 bit) to the bad-arch action. */
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (rc < 0)
        return thaw_err_sys(err, -rc, "seccomp: set bad-arch action");
    /* NNP is set by the child itself; libseccomp must not try on export. */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    if (rc < 0)
        return thaw_err_sys(err, -rc, "seccomp: clear NNP attribute");
    /* A binary tree of syscall numbers: fewer comparisons per call. */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (rc < 0)
        return thaw_err_sys(err, -rc, "seccomp: set optimisation level");

    for (size_t i = 0; i < p->nrules; i++) {
        const sentry_rule_t *r = &p->rules[i];
        uint32_t action;
        if (r->act == SENTRY_ACT_ALLOW)
            action = SCMP_ACT_ALLOW;
        else if (r->act == SENTRY_ACT_ERRNO)
            action = SCMP_ACT_ERRNO((uint32_t)r->errno_val);
        else
            continue; /* notify and deny are the default action */
        struct scmp_arg_cmp cmp[SENTRY_MAX_CONDS];
        for (unsigned k = 0; k < r->ncond; k++) {
            const sentry_cond_t *c = &r->cond[k];
            cmp[k] = (struct scmp_arg_cmp){.arg = c->arg, .op = cmp_of(c->op)};
            if (c->op == SENTRY_CMP_MASKED_EQ) {
                cmp[k].datum_a = c->mask;
                cmp[k].datum_b = c->value;
            } else {
                cmp[k].datum_a = c->value;
            }
        }
        rc = seccomp_rule_add_exact_array(ctx, action, r->nr, r->ncond, cmp);
        if (rc < 0) {
            char *nm = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, r->nr);
            int ret = thaw_err_sys(err, -rc, "policy line %u: libseccomp refused the rule for '%s'",
                                   r->line, nm ? nm : "?");
            free(nm);
            return ret;
        }
    }

    /* Export into a memfd and read the program back. */
    _cleanup_close_ int mfd = memfd_create("sentry-bpf", MFD_CLOEXEC);
    if (mfd < 0)
        return thaw_err_sys(err, errno, "memfd_create");
    rc = seccomp_export_bpf(ctx, mfd);
    if (rc < 0)
        return thaw_err_sys(err, -rc, "seccomp_export_bpf");
    off_t size = lseek(mfd, 0, SEEK_END);
    if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0 ||
        size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS)
        return thaw_err_set(err, EINVAL, "seccomp_export_bpf: program of %lld bytes",
                            (long long)size);
    struct sock_filter *insns = malloc((size_t)size);
    if (!insns)
        return thaw_err_set(err, ENOMEM, "out of memory for the BPF program");
    if (pread(mfd, insns, (size_t)size, 0) != size) {
        free(insns);
        return thaw_err_sys(err, errno ? errno : EIO, "read back the BPF program");
    }
    out->insns = insns;
    out->len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));

    for (int nr = 0; nr < SENTRY_NR_MAX; nr++) {
        if (p->has_allow[nr]) {
            out->allowed++;
            if (p->has_allow[nr] == 2)
                out->allowed_cond++;
        }
        switch (p->fallback[nr]) {
        case SENTRY_ACT_NOTIFY:
            out->notified++;
            break;
        case SENTRY_ACT_DENY:
            out->denied++;
            break;
        case SENTRY_ACT_ERRNO:
            out->errno_direct++;
            break;
        default:
            break;
        }
    }
    return 0;
}

void sentry__bpf_free(sentry_bpf_t *b)
{
    free(b->insns);
    memset(b, 0, sizeof(*b));
}
