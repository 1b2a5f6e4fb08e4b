// SPDX-License-Identifier: Apache-2.0
/*
 * Per-tier set-up for tests that run one body against the process, sentry
 * and vm tiers through a real thawd: the daemon's arguments, a template's
 * parameters, and a skip with thawd's own reason when the tier cannot run
 * on this machine (so a test without root or KVM says why instead of
 * failing).  See harness.h.
 */
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "testlib.h"

/* thawd's JSON-RPC error for a tier that cannot run here. */
#define TH_TIER_UNAVAILABLE (-32006)

const char *const *th_tier_args(const char *tier, const char *const *extra, const char **out,
                                size_t n)
{
    size_t k = 0;
    if (k + 1 < n)
        out[k++] = "--no-default-templates";
    if (!strcmp(tier, "process") && k + 1 < n)
        out[k++] = "--enable-process-tier";
    for (size_t i = 0; extra && extra[i] && k + 1 < n; i++)
        out[k++] = extra[i];
    out[k] = NULL;
    return out;
}

json_t *th_tpl_params(const char *tier, const char *image, const char *engine, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *p = json_vpack_ex(NULL, 0, fmt, ap);
    va_end(ap);
    if (!p)
        return NULL;
    json_object_set_new(p, "tier", json_string(tier));
    if (!strcmp(tier, "vm")) {
        json_object_set_new(p, "image", json_string(image));
        json_object_set_new(p, "memory_mb", json_integer(64));
        if (engine)
            json_object_set_new(p, "engine", json_string(engine));
    }
    return p;
}

void th_skip_unless_tier(th_daemon_t *d, th_conn_t *c, const char *tier)
{
    json_t *info = th_ok(c, "server.info", NULL);
    size_t i;
    json_t *t;
    json_array_foreach (json_object_get(info, "tiers"), i, t) {
        if (strcmp(json_string_value(json_object_get(t, "name")), tier) ||
            json_is_true(json_object_get(t, "available")))
            continue;
        char why[512];
        snprintf(why, sizeof(why), "%s", json_string_value(json_object_get(t, "reason")));
        json_decref(info);
        th_close(c);
        th_cleanup(d);
        thaw_test_skip("the %s tier is unavailable: %s", tier, why);
    }
    json_decref(info);
}

int th_create_or_skip(th_daemon_t *d, th_conn_t *c, json_t *params)
{
    json_t *r = th_call(c, "template.create", params);
    if (r && th_code(r) == TH_TIER_UNAVAILABLE) {
        char why[512];
        snprintf(why, sizeof(why), "%s", th_msg(r));
        json_decref(r);
        th_close(c);
        th_cleanup(d);
        thaw_test_skip("%s", why);
    }
    if (!r || th_code(r)) {
        fprintf(stderr, "template.create: %s\n", r ? th_msg(r) : "no reply");
        json_decref(r);
        return -1;
    }
    json_decref(r);
    return 0;
}
