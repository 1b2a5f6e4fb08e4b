// SPDX-License-Identifier: Apache-2.0
/*
 * Human output for the thaw CLI: left-aligned columns padded to the widest
 * cell, and readable durations.  Scripts use --json instead.
 */
#include "tools/thaw-client.h"

#include <stdlib.h>
#include <string.h>

struct thaw_table {
    unsigned ncols, nrows, cap;
    char **cells; /* nrows * ncols, row 0 = headers */
};

static void add_row(thaw_table_t *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        unsigned cap = t->cap ? t->cap * 2 : 16;
        char **nc = realloc(t->cells, (size_t)cap * t->ncols * sizeof(char *));
        if (!nc)
            return;
        t->cells = nc;
        t->cap = cap;
    }
    for (unsigned i = 0; i < t->ncols; i++)
        t->cells[(size_t)t->nrows * t->ncols + i] = strdup(cells[i] ? cells[i] : "-");
    t->nrows++;
}

thaw_table_t *thaw_table_new(unsigned ncols, const char *const *headers)
{
    thaw_table_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ncols = ncols;
    add_row(t, headers);
    return t;
}

void thaw_table_add(thaw_table_t *t, const char *const *cells)
{
    if (t)
        add_row(t, cells);
}

/* Display width: count UTF-8 lead bytes, not bytes ("µs" is two columns' worth of bytes). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; s && *s; s++)
        w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

void thaw_table_print(thaw_table_t *t, FILE *f)
{
    if (!t)
        return;
    size_t *w = calloc(t->ncols, sizeof(size_t));
    for (unsigned r = 0; w && r < t->nrows; r++)
        for (unsigned c = 0; c < t->ncols; c++) {
            size_t cw = width(t->cells[(size_t)r * t->ncols + c]);
            if (cw > w[c])
                w[c] = cw;
        }
    for (unsigned r = 0; r < t->nrows; r++) {
        for (unsigned c = 0; c < t->ncols; c++) {
            const char *s = t->cells[(size_t)r * t->ncols + c];
            s = s ? s : "";
            if (c + 1 < t->ncols)
                fprintf(f, "%s%*s  ", s, (int)((w ? w[c] : 0) - width(s)), "");
            else
                fprintf(f, "%s\n", s);
        }
    }
    for (size_t i = 0; i < (size_t)t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(w);
    free(t);
}

const char *thaw_cell(json_t *v, char *buf, size_t n)
{
    if (!v || json_is_null(v))
        return "-";
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v))
        snprintf(buf, n, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, n, "%.1f", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, n, "%s", json_is_true(v) ? "yes" : "no");
    else
        snprintf(buf, n, "...");
    return buf;
}

const char *thaw_fmt_us(double us, char *buf, size_t n)
{
    if (us < 1000)
        snprintf(buf, n, "%.1fµs", us);
    else if (us < 1000000)
        snprintf(buf, n, "%.2fms", us / 1000);
    else
        snprintf(buf, n, "%.2fs", us / 1000000);
    return buf;
}
