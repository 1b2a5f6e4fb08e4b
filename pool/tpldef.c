// SPDX-License-Identifier: Apache-2.0
/*
 * Template definitions: defaults, validation, and the store's text form.
 * The store file is `key=value` lines (values escaped with \n, \\ and \xNN)
 * so that pool/ needs no JSON and a person can read it; unknown keys are
 * errors, so a file from a newer thawd is refused rather than half-read.
 */
#include "pool/pool-internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TPL_FORMAT_VERSION 1 /* bump when a key changes meaning */

void pool_tpl_def_init(pool_tpl_def_t *def)
{
    memset(def, 0, sizeof(*def));
    snprintf(def->tier, sizeof(def->tier), "sentry");
    def->vcpus = 1;
    def->memory_mb = 256;
    def->min_ready = 1;
    def->max_ready = 8;
    def->max_total = 64;
    snprintf(def->engine, sizeof(def->engine), "shared");
    def->prefetch = 1;
}

int pool__name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= POOL_NAME_MAX)
        return 0;
    if (!isalnum((unsigned char)name[0]))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '-' && c != '_' && c != '.')
            return 0;
    }
    return 1;
}

int pool_tpl_def_validate(const pool_tpl_def_t *def, thaw_err_t *err)
{
    if (!pool__name_valid(def->name))
        return thaw_err_set(err, EINVAL,
                            "template name '%.64s': use 1-63 letters, digits, '-', '_' or '.', "
                            "starting with a letter or digit",
                            def->name);
    if (strcmp(def->tier, "vm") && strcmp(def->tier, "sentry") && strcmp(def->tier, "process"))
        return thaw_err_set(err, EINVAL, "tier '%.16s': expected vm or sentry", def->tier);
    if (def->vcpus < 1 || def->vcpus > 64)
        return thaw_err_set(err, EINVAL, "vcpus %u: expected 1..64", def->vcpus);
    if (def->memory_mb < 16 || def->memory_mb > 1024 * 1024)
        return thaw_err_set(err, EINVAL, "memory_mb %u: expected 16..1048576", def->memory_mb);
    if (def->nwarmup > POOL_WARMUP_MAX)
        return thaw_err_set(err, EINVAL, "warmup: at most %d commands", POOL_WARMUP_MAX);
    if (def->max_total < 1)
        return thaw_err_set(err, EINVAL, "max_total must be at least 1");
    if (def->max_ready > def->max_total)
        return thaw_err_set(err, EINVAL, "max_ready %u exceeds max_total %u", def->max_ready,
                            def->max_total);
    if (def->min_ready > def->max_ready)
        return thaw_err_set(err, EINVAL, "min_ready %u exceeds max_ready %u", def->min_ready,
                            def->max_ready);
    if (strcmp(def->engine, "eager") && strcmp(def->engine, "lazy") &&
        strcmp(def->engine, "shared"))
        return thaw_err_set(err, EINVAL, "engine '%.16s': expected eager, lazy or shared",
                            def->engine);
    if (!strcmp(def->tier, "vm") && def->image[0] == '\0')
        return thaw_err_set(err, EINVAL, "a vm template needs an image (kernel)");
    return 0;
}

static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\')
            fputs("\\\\", f);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
}

int pool__tpl_def_write(FILE *f, const pool_tpl_def_t *def)
{
    fprintf(f, "# thaw template definition; written by thawd, read back on restart\n");
    fprintf(f, "format=%d\n", TPL_FORMAT_VERSION);
    fputs("name=", f), put_escaped(f, def->name), fputc('\n', f);
    fputs("tier=", f), put_escaped(f, def->tier), fputc('\n', f);
    fputs("image=", f), put_escaped(f, def->image), fputc('\n', f);
    fputs("initrd=", f), put_escaped(f, def->initrd), fputc('\n', f);
    fprintf(f, "vcpus=%u\nmemory_mb=%u\n", def->vcpus, def->memory_mb);
    for (unsigned i = 0; i < def->nwarmup; i++)
        fputs("warmup=", f), put_escaped(f, def->warmup[i]), fputc('\n', f);
    fprintf(f, "min_ready=%u\nmax_ready=%u\nmax_total=%u\n", def->min_ready, def->max_ready,
            def->max_total);
    fputs("engine=", f), put_escaped(f, def->engine), fputc('\n', f);
    fprintf(f, "prefetch=%d\n", def->prefetch);
    return ferror(f) ? -EIO : 0;
}

/* Undo put_escaped into dst (size n); -EINVAL on a bad escape or overflow. */
static int unescape(const char *s, char *dst, size_t n)
{
    size_t o = 0;
    for (; *s; s++) {
        char c = *s;
        if (c == '\\') {
            s++;
            if (*s == '\\')
                c = '\\';
            else if (*s == 'n')
                c = '\n';
            else if (*s == 'x' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
                char hex[3] = {s[1], s[2], 0};
                c = (char)strtol(hex, NULL, 16);
                s += 2;
            } else
                return -EINVAL;
        }
        if (o + 1 >= n)
            return -EINVAL;
        dst[o++] = c;
    }
    dst[o] = '\0';
    return 0;
}

static int parse_uint(const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > UINT_MAX || s[0] == '-')
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

int pool__tpl_def_read(FILE *f, const char *fname, pool_tpl_def_t *def, thaw_err_t *err)
{
    pool_tpl_def_init(def);
    char line[POOL_WARMUP_LEN * 4 + 64];
    unsigned lineno = 0, format = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n')
            line[--len] = '\0';
        else if (!feof(f))
            return thaw_err_set(err, EINVAL, "%s:%u: line too long", fname, lineno);
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char *eq = strchr(line, '=');
        if (!eq)
            return thaw_err_set(err, EINVAL, "%s:%u: expected key=value", fname, lineno);
        *eq = '\0';
        const char *k = line, *v = eq + 1;
        int r = 0;
        unsigned u = 0;
        if (!strcmp(k, "format"))
            r = parse_uint(v, &format);
        else if (!strcmp(k, "name"))
            r = unescape(v, def->name, sizeof(def->name));
        else if (!strcmp(k, "tier"))
            r = unescape(v, def->tier, sizeof(def->tier));
        else if (!strcmp(k, "image"))
            r = unescape(v, def->image, sizeof(def->image));
        else if (!strcmp(k, "initrd"))
            r = unescape(v, def->initrd, sizeof(def->initrd));
        else if (!strcmp(k, "vcpus"))
            r = parse_uint(v, &def->vcpus);
        else if (!strcmp(k, "memory_mb"))
            r = parse_uint(v, &def->memory_mb);
        else if (!strcmp(k, "warmup")) {
            if (def->nwarmup >= POOL_WARMUP_MAX)
                return thaw_err_set(err, EINVAL, "%s:%u: too many warmup lines", fname, lineno);
            r = unescape(v, def->warmup[def->nwarmup], POOL_WARMUP_LEN);
            def->nwarmup++;
        } else if (!strcmp(k, "min_ready"))
            r = parse_uint(v, &def->min_ready);
        else if (!strcmp(k, "max_ready"))
            r = parse_uint(v, &def->max_ready);
        else if (!strcmp(k, "max_total"))
            r = parse_uint(v, &def->max_total);
        else if (!strcmp(k, "engine"))
            r = unescape(v, def->engine, sizeof(def->engine));
        else if (!strcmp(k, "prefetch")) {
            r = parse_uint(v, &u);
            def->prefetch = u != 0;
        } else
            return thaw_err_set(err, EINVAL, "%s:%u: unknown key '%.64s'", fname, lineno, k);
        if (r < 0)
            return thaw_err_set(err, EINVAL, "%s:%u: bad value for %s", fname, lineno, k);
    }
    if (ferror(f))
        return thaw_err_sys(err, EIO, "%s: read", fname);
    if (format != TPL_FORMAT_VERSION)
        return thaw_err_set(err, EINVAL, "%s: format %u, this thawd reads format %d", fname, format,
                            TPL_FORMAT_VERSION);
    int r = pool_tpl_def_validate(def, err);
    if (r < 0)
        return thaw_err_wrap(err, "%s", fname);
    return 0;
}
