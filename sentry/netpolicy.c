// SPDX-License-Identifier: Apache-2.0
/*
 * The network allowlist: parsing "ADDR[/PREFIX]:PORT" entries and matching a
 * destination socket address against them.  Pure code, unit-tested.  The
 * default is deny: an inet destination passes only if an entry matches.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "sentry/internal.h"

static int parse_one(sentry_net_rule_t *r, const char *entry, thaw_err_t *err)
{
    char buf[128];
    if (!entry || strlen(entry) >= sizeof(buf))
        return thaw_err_set(err, EINVAL, "network allow entry '%.64s': too long or empty",
                            entry ? entry : "");
    strcpy(buf, entry);
    char *addr = buf, *port;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close || close[1] != ':')
            return thaw_err_set(err, EINVAL, "network allow entry '%s': expected [IPv6]:PORT",
                                entry);
        *close = '\0';
        addr = buf + 1;
        port = close + 2;
        r->family = AF_INET6;
    } else {
        port = strrchr(buf, ':');
        if (!port)
            return thaw_err_set(err, EINVAL, "network allow entry '%s': expected ADDR:PORT", entry);
        *port++ = '\0';
        r->family = AF_INET;
    }
    unsigned maxbits = r->family == AF_INET ? 32 : 128;
    r->prefix = maxbits;
    char *slash = strchr(addr, '/');
    if (slash) {
        *slash++ = '\0';
        char *end;
        unsigned long b = strtoul(slash, &end, 10);
        if (*slash == '\0' || *end || b > maxbits)
            return thaw_err_set(err, EINVAL, "network allow entry '%s': bad prefix length", entry);
        r->prefix = (unsigned)b;
    }
    memset(r->addr, 0, sizeof(r->addr));
    if (inet_pton(r->family, addr, r->addr) != 1)
        return thaw_err_set(err, EINVAL, "network allow entry '%s': bad %s address", entry,
                            r->family == AF_INET ? "IPv4" : "IPv6");
    if (!strcmp(port, "*")) {
        r->port = -1;
    } else {
        char *end;
        unsigned long p = strtoul(port, &end, 10);
        if (*port == '\0' || *end || p > 65535)
            return thaw_err_set(err, EINVAL, "network allow entry '%s': bad port", entry);
        r->port = (int)p;
    }
    return 0;
}

int sentry__net_parse(sentry_netpolicy_t *np, const char *const *entries, unsigned n,
                      thaw_err_t *err)
{
    memset(np, 0, sizeof(*np));
    if (n > SENTRY_MAX_NET)
        return thaw_err_set(err, E2BIG, "more than %d network allow entries", SENTRY_MAX_NET);
    for (unsigned i = 0; i < n; i++) {
        int rc = parse_one(&np->rules[i], entries[i], err);
        if (rc < 0)
            return rc;
        np->n++;
    }
    return 0;
}

static bool prefix_match(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

int sentry__net_allowed(const sentry_netpolicy_t *np, const struct sockaddr *sa, socklen_t len)
{
    if (len < (socklen_t)sizeof(sa_family_t))
        return 0;
    int family = sa->sa_family;
    if (family == AF_UNIX || family == AF_UNSPEC)
        return 1;
    uint8_t addr[16] = {0};
    int port;
    if (family == AF_INET) {
        if (len < (socklen_t)sizeof(struct sockaddr_in))
            return 0;
        const struct sockaddr_in *in = (const void *)sa;
        memcpy(addr, &in->sin_addr, 4);
        port = ntohs(in->sin_port);
    } else if (family == AF_INET6) {
        if (len < (socklen_t)sizeof(struct sockaddr_in6))
            return 0;
        const struct sockaddr_in6 *in6 = (const void *)sa;
        memcpy(addr, &in6->sin6_addr, 16);
        port = ntohs(in6->sin6_port);
    } else {
        return 0;
    }
    for (unsigned i = 0; i < np->n; i++) {
        const sentry_net_rule_t *r = &np->rules[i];
        if (r->family != family)
            continue;
        if (r->port != -1 && r->port != port)
            continue;
        if (prefix_match(addr, r->addr, r->prefix))
            return 1;
    }
    return 0;
}

void sentry__net_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
    char a[INET6_ADDRSTRLEN] = "?";
    if (len >= (socklen_t)sizeof(struct sockaddr_in) && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
        snprintf(out, outlen, "%s:%u", a, ntohs(in->sin_port));
    } else if (len >= (socklen_t)sizeof(struct sockaddr_in6) && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
        snprintf(out, outlen, "[%s]:%u", a, ntohs(in6->sin6_port));
    } else if (len >= (socklen_t)sizeof(sa_family_t)) {
        snprintf(out, outlen, "family-%d", sa->sa_family);
    } else {
        snprintf(out, outlen, "short-address");
    }
}
