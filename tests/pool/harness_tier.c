// SPDX-License-Identifier: Apache-2.0
/*
 * Set-up of a test's thawd and pool, for tests that run one body against
 * the process, sentry and vm tiers: the daemon's arguments, a template's
 * parameters, a skip with thawd's own reason when the tier cannot run on
 * this machine (so a test without root or KVM says why instead of failing),
 * and a fixture's start up to a ready pool.  See harness.h.
 */
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

int th_start_pool(th_daemon_t *d, th_conn_t *c, const char *const *args, json_t *params, long ready,
                  int timeout_ms)
{
    if (th_start(d, args) < 0 || th_connect(c, d->sock) < 0) {
        json_decref(params);
        return -1;
    }
    const char *n = json_string_value(json_object_get(params, "name"));
    char name[128];
    snprintf(name, sizeof(name), "%s", n ? n : "");
    if (th_create_or_skip(d, c, params) < 0)
        return -1;
    if (!th_wait_pool(c, name, "ready", ready, timeout_ms)) {
        fprintf(stderr, "template %s: %ld sandboxes not ready within %d ms\n", name, ready,
                timeout_ms);
        return -1;
    }
    return 0;
}

int th_fx_setup(void **state, const char *const *args, json_t *params, long ready, int timeout_ms)
{
    th_fx_t *f = calloc(1, sizeof(*f));
    *state = f;
    if (!f) {
        json_decref(params);
        return -1;
    }
    f->c.fd = -1; /* th_finish may close it before it was connected */
    if (th_start_pool(&f->d, &f->c, args, params, ready, timeout_ms) < 0)
        return -1;
    f->rss0 = th_rss_kb(&f->d);
    f->fds0 = th_fd_count(&f->d);
    return 0;
}

int th_fx_teardown(void **state)
{
    th_fx_t *f = *state;
    if (!f)
        return -1;
    int rc = th_finish(&f->d, &f->c);
    free(f);
    return rc;
}
