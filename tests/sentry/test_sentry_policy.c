// SPDX-License-Identifier: Apache-2.0
/*
 * sentry/'s pure parts, without privileges: the policy parser (the built-in
 * policy and bad input with its line numbers), the libseccomp compile step,
 * lexical paths and areas, and the network allowlist.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>

#include <cmocka.h>

#include "sentry/internal.h"
#include "sentry/policy.h"

static void builtin_policy_parses_and_compiles(void **state)
{
    (void)state;
    sentry_policy_t p;
    thaw_err_t err = {0};
    assert_int_equal(sentry__policy_parse(sentry__policy_default, "default.policy", &p, &err), 0);
    assert_int_equal(sentry__policy_class(&p, SYS_openat), SENTRY_ACT_NOTIFY);
    assert_int_equal(sentry__policy_class(&p, SYS_mount), SENTRY_ACT_DENY);
    assert_int_equal(sentry__policy_class(&p, SYS_clone3), SENTRY_ACT_ERRNO);
    /* socket is allowed only for some families: the rest is denied. */
    assert_int_equal(sentry__policy_class(&p, SYS_socket), SENTRY_ACT_DENY);
    assert_int_equal(p.has_allow[SYS_socket], 2);
    assert_int_equal(p.has_allow[SYS_read], 1);
    assert_int_equal(sentry__policy_class(&p, SYS_read), SENTRY_ACT_UNKNOWN);
    /* Not named at all: unknown (ENOSYS from the supervisor). */
    assert_int_equal(sentry__policy_class(&p, 499), SENTRY_ACT_UNKNOWN);
    /* Every brokered call has an argument layout. */
    for (int nr = 0; nr < SENTRY_NR_MAX; nr++)
        if (p.fallback[nr] == SENTRY_ACT_NOTIFY)
            assert_non_null(sentry__sysinfo(nr));

    sentry_bpf_t b;
    int rc = sentry__policy_compile(&p, &b, &err);
    if (rc != 0)
        fail_msg("compile: %s", thaw_err_msg(&err));
    assert_true(b.len > 10);
    assert_true(b.allowed > 100);
    assert_true(b.notified > 40);
    assert_true(b.denied > 40);
    printf("built-in policy: %u allowed (%u conditional), %u notified, %u denied, %u BPF insns\n",
           b.allowed, b.allowed_cond, b.notified, b.denied, (unsigned)b.len);
    sentry__bpf_free(&b);
    sentry__policy_free(&p);
}

static void expect_parse_error(const char *text, const char *needle)
{
    sentry_policy_t p;
    thaw_err_t err = {0};
    assert_int_equal(sentry__policy_parse(text, "t.policy", &p, &err), -EINVAL);
    if (!strstr(thaw_err_msg(&err), needle))
        fail_msg("message '%s' lacks '%s'", thaw_err_msg(&err), needle);
}

static void bad_policies_name_the_line(void **state)
{
    (void)state;
    expect_parse_error("allow read\nallow nosuchcall\n",
                       "t.policy:2: unknown syscall 'nosuchcall'");
    expect_parse_error("permit read\n", "t.policy:1: unknown action");
    expect_parse_error("allow read\nallow read\n", "t.policy:2: allowed twice");
    expect_parse_error("allow read\ndeny read\n", "t.policy:2: allowed unconditionally");
    expect_parse_error("deny mount\nnotify mount\n", "t.policy:2: given two actions");
    expect_parse_error("errno clone3\n", "needs an errno name");
    expect_parse_error("errno clone3 EWHAT\n", "unknown errno 'EWHAT'");
    expect_parse_error("allow socket if b0 == 1\n", "expected a condition");
    expect_parse_error("allow socket if a0 =~ 1\n", "unknown operator '=~'");
    expect_parse_error("allow socket if a0 == NOPE\n", "bad value 'NOPE'");
    expect_parse_error("allow socket if a0 & 0xf == 0x10\n", "bits outside its mask");
    expect_parse_error("allow socket if a0 == 1 a1 == 2\n", "expected '&&'");
    expect_parse_error("notify open extra\n", "unexpected token 'extra'");
    expect_parse_error("# only a comment\n\n", "no rules");
    expect_parse_error("allow\n", "missing syscall name");
}

static void conditions_parse(void **state)
{
    (void)state;
    sentry_policy_t p;
    thaw_err_t err = {0};
    const char *text = "allow socket if a0 == AF_UNIX\n"
                       "allow socket if a0 == AF_INET && a1 & 0xf == SOCK_STREAM  # tcp\n"
                       "allow clone if a0 & CLONE_NEWNS|CLONE_NEWUSER == 0\n"
                       "notify socket\n";
    assert_int_equal(sentry__policy_parse(text, "c.policy", &p, &err), 0);
    assert_int_equal(p.nrules, 4);
    assert_int_equal(p.rules[1].ncond, 2);
    assert_int_equal(p.rules[1].cond[1].op, SENTRY_CMP_MASKED_EQ);
    assert_int_equal(p.rules[1].cond[1].mask, 0xf);
    assert_int_equal(p.rules[2].cond[0].mask, 0x00020000 | 0x10000000);
    assert_int_equal(sentry__policy_class(&p, SYS_socket), SENTRY_ACT_NOTIFY);
    assert_int_equal(sentry__policy_class(&p, SYS_clone), SENTRY_ACT_DENY);
    sentry_bpf_t b;
    assert_int_equal(sentry__policy_compile(&p, &b, &err), 0);
    assert_int_equal(b.allowed, 2);
    assert_int_equal(b.allowed_cond, 2);
    sentry__bpf_free(&b);
    sentry__policy_free(&p);
}

static void paths_normalize(void **state)
{
    (void)state;
    char out[64];
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"/", "/"},
        {"/a/b/../c", "/a/c"},
        {"//a///b/", "/a/b"},
        {"/../../etc/shadow", "/etc/shadow"},
        {"/a/./b/.", "/a/b"},
        {"/a/b/../../..", "/"},
        {"/tmp/..x", "/tmp/..x"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(sentry__path_normalize(cases[i].in, out, sizeof(out)), 0);
        assert_string_equal(out, cases[i].want);
    }
    assert_int_equal(sentry__path_normalize("rel", out, sizeof(out)), -EINVAL);
    char longp[200];
    memset(longp, 'a', sizeof(longp));
    longp[0] = '/';
    longp[199] = '\0';
    assert_int_equal(sentry__path_normalize(longp, out, sizeof(out)), -ENAMETOOLONG);
    assert_int_equal(sentry__path_join("/work/x", "../y", out, sizeof(out)), 0);
    assert_string_equal(out, "/work/y");
    assert_int_equal(sentry__path_join("/work", "/etc/../tmp", out, sizeof(out)), 0);
    assert_string_equal(out, "/tmp");

    assert_true(sentry__path_under("/tmp", "/tmp"));
    assert_true(sentry__path_under("/tmp/a", "/tmp"));
    assert_false(sentry__path_under("/tmpx", "/tmp"));
    assert_true(sentry__path_under("/x", "/"));

    assert_int_equal(sentry__path_proc_self("/proc/self/fd/3", 7, 9, out, sizeof(out)), 0);
    assert_string_equal(out, "/proc/7/fd/3");
    assert_int_equal(sentry__path_proc_self("/proc/thread-self/comm", 7, 9, out, sizeof(out)), 0);
    assert_string_equal(out, "/proc/7/task/9/comm");
    assert_int_equal(sentry__path_proc_self("/proc/selfish", 7, 9, out, sizeof(out)), 0);
    assert_string_equal(out, "/proc/selfish");
}

static void areas(void **state)
{
    (void)state;
    sentry_areas_t a;
    sentry_config_t cfg = {0};
    thaw_err_t err = {0};
    cfg.hidden[0] = "/etc/secret";
    cfg.n_hidden = 1;
    assert_int_equal(sentry__areas_init(&a, &cfg, &err), 0);
    assert_true(sentry__areas_writable(&a, "/tmp/x"));
    assert_true(sentry__areas_writable(&a, "/dev/null"));
    assert_false(sentry__areas_writable(&a, "/dev/nullx"));
    assert_false(sentry__areas_writable(&a, "/usr/bin/sh"));
    assert_true(sentry__areas_hidden(&a, "/proc/kcore"));
    assert_true(sentry__areas_hidden(&a, "/etc/secret/a"));
    assert_false(sentry__areas_hidden(&a, "/etc/secrets"));
    cfg.hidden[0] = "relative";
    assert_int_equal(sentry__areas_init(&a, &cfg, &err), -EINVAL);
    assert_non_null(strstr(thaw_err_msg(&err), "'relative': must be absolute"));
}

static struct sockaddr_in v4(const char *ip, int port)
{
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &s.sin_addr);
    return s;
}

static void netpolicy(void **state)
{
    (void)state;
    sentry_netpolicy_t np;
    thaw_err_t err = {0};
    const char *entries[] = {"127.0.0.1:8080", "10.0.0.0/8:*", "[::1]:53"};
    assert_int_equal(sentry__net_parse(&np, entries, 3, &err), 0);
    struct sockaddr_in a = v4("127.0.0.1", 8080);
    assert_int_equal(sentry__net_allowed(&np, (void *)&a, sizeof(a)), 1);
    a = v4("127.0.0.1", 8081);
    assert_int_equal(sentry__net_allowed(&np, (void *)&a, sizeof(a)), 0);
    a = v4("10.200.3.4", 1);
    assert_int_equal(sentry__net_allowed(&np, (void *)&a, sizeof(a)), 1);
    a = v4("11.0.0.1", 1);
    assert_int_equal(sentry__net_allowed(&np, (void *)&a, sizeof(a)), 0);
    /* A truncated address is denied, never read past. */
    a = v4("127.0.0.1", 8080);
    assert_int_equal(sentry__net_allowed(&np, (void *)&a, 4), 0);
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(53)};
    inet_pton(AF_INET6, "::1", &s6.sin6_addr);
    assert_int_equal(sentry__net_allowed(&np, (void *)&s6, sizeof(s6)), 1);
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_int_equal(sentry__net_allowed(&np, &un, sizeof(un)), 1);
    /* Default: nothing inet. */
    sentry_netpolicy_t none;
    assert_int_equal(sentry__net_parse(&none, NULL, 0, &err), 0);
    a = v4("127.0.0.1", 8080);
    assert_int_equal(sentry__net_allowed(&none, (void *)&a, sizeof(a)), 0);
    char buf[64];
    sentry__net_format((void *)&a, sizeof(a), buf, sizeof(buf));
    assert_string_equal(buf, "127.0.0.1:8080");

    static const char *const bad[] = {"127.0.0.1", "1.2.3.4:99999", "1.2.3.4/33:1",
                                      "[::1:80",   "nothost:80",    "1.2.3.4:"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sentry__net_parse(&np, &bad[i], 1, &err), -EINVAL);
        assert_non_null(strstr(thaw_err_msg(&err), bad[i]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(builtin_policy_parses_and_compiles),
        cmocka_unit_test(bad_policies_name_the_line),
        cmocka_unit_test(conditions_parse),
        cmocka_unit_test(paths_normalize),
        cmocka_unit_test(areas),
        cmocka_unit_test(netpolicy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
