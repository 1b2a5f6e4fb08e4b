// SPDX-License-Identifier: Apache-2.0
/*
 * thaw tune TEMPLATE: ask thawd (template.tune) to try restore
 * configurations on a vm template's snapshot and print them ranked by the
 * chosen goal, the best marked; --apply makes the best the template's
 * configuration.  thawd's progress notifications are shown on stderr.
 */
#include "tools/thaw-tune.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: thaw tune [options] TEMPLATE [-- CMD [ARGS]]\n\n"
               "Try restore configurations on a vm template's snapshot: engine, chunk size,\n"
               "lz4 level and prefetch (a working set is recorded first by running CMD, default\n"
               "the template's first warm-up command, else `true`).  Each configuration restores\n"
               "--iterations clones; the table is sorted by --goal, the best marked with '*'.\n\n"
               "  --goal latency|memory|disk   what to rank by (default latency: restore call\n"
               "                               to the command's result, p50)\n"
               "  --apply                      make the best the template's configuration\n"
               "  --engines LIST               eager,lazy,shared (default all)\n"
               "  --chunk-kib LIST             chunk sizes in KiB, 4..2048 (default 4,64,2048)\n"
               "  --lz4 LIST                   lz4 levels, <3 fast, 3..12 HC (default 0)\n"
               "  --prefetch on|off|both       lazy engine's prefetch (default both)\n"
               "  --iterations N               clones per configuration (default 5)\n");
}

/* "a,b,c" into a JSON array of strings or integers. */
static json_t *list_arg(const char *s, bool ints, const char *opt)
{
    json_t *a = json_array();
    char *dup = strdup(s), *save = NULL;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!ints) {
            json_array_append_new(a, json_string(tok));
            continue;
        }
        char *end;
        long long v = strtoll(tok, &end, 10);
        if (*end || end == tok) {
            fprintf(stderr, "thaw tune: %s '%s': expected comma-separated integers\n", opt, s);
            json_decref(a);
            free(dup);
            return NULL;
        }
        json_array_append_new(a, json_integer(v));
    }
    free(dup);
    return a;
}

static void on_progress(void *ud, const char *method, json_t *params)
{
    (void)ud;
    if (strcmp(method, "template.progress"))
        return;
    const char *detail = json_string_value(json_object_get(params, "detail"));
    fprintf(stderr, "tune: %s\n", detail ? detail : "");
}

static const char *fmt_bytes(double b, char *buf, size_t n)
{
    if (b < 1024 * 1024)
        snprintf(buf, n, "%.1fKiB", b / 1024);
    else
        snprintf(buf, n, "%.1fMiB", b / (1024 * 1024));
    return buf;
}

static void print_table(json_t *res)
{
    static const char *const hdr[] = {"",          "ENGINE",    "CHUNK",     "LZ4",      "PREFETCH",
                                      "SNAPSHOT",  "RESTORE50", "RESTORE99", "ANSWER50", "ANSWER99",
                                      "COMMAND50", "FAULTS",    "MEM/CLONE", "ERROR"};
    thaw_table_t *t = thaw_table_new(14, hdr);
    size_t i;
    json_t *r;
    json_array_foreach (json_object_get(res, "results"), i, r) {
        char b[12][32];
        const char *err = json_string_value(json_object_get(r, "error"));
        snprintf(b[0], 32, "%lldKiB",
                 (long long)json_integer_value(json_object_get(r, "chunk_kib")));
        const char *cells[14] = {
            json_is_true(json_object_get(r, "best")) ? "*" : "",
            json_string_value(json_object_get(r, "engine")),
            b[0],
            thaw_cell(json_object_get(r, "lz4_level"), b[1], 32),
            json_is_true(json_object_get(r, "prefetch")) ? "on" : "off",
            fmt_bytes((double)json_integer_value(json_object_get(r, "snapshot_bytes")), b[2], 32),
            err ? "-"
                : thaw_fmt_us(json_number_value(json_object_get(r, "restore_p50_us")), b[3], 32),
            err ? "-"
                : thaw_fmt_us(json_number_value(json_object_get(r, "restore_p99_us")), b[4], 32),
            err ? "-"
                : thaw_fmt_us(json_number_value(json_object_get(r, "answer_p50_us")), b[5], 32),
            err ? "-"
                : thaw_fmt_us(json_number_value(json_object_get(r, "answer_p99_us")), b[6], 32),
            err ? "-"
                : thaw_fmt_us(json_number_value(json_object_get(r, "command_p50_us")), b[7], 32),
            thaw_cell(json_object_get(r, "faults"), b[8], 32),
            err ? "-"
                : fmt_bytes(1024.0 * (double)json_integer_value(json_object_get(r, "rss_kib")),
                            b[9], 32),
            err ? err : "",
        };
        thaw_table_add(t, cells);
    }
    thaw_table_print(t, stdout);
    printf("sorted by %s; * = best%s\n", json_string_value(json_object_get(res, "goal")),
           json_is_true(json_object_get(res, "applied")) ? " (applied to the template)" : "");
}

int thaw_cmd_tune(const thaw_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"goal", required_argument, NULL, 'g'},
        {"apply", no_argument, NULL, 'a'},
        {"engines", required_argument, NULL, 'e'},
        {"chunk-kib", required_argument, NULL, 'c'},
        {"lz4", required_argument, NULL, 'l'},
        {"prefetch", required_argument, NULL, 'p'},
        {"iterations", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    json_t *params = json_object();
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        json_t *v = NULL;
        switch (c) {
        case 'g':
            if (strcmp(optarg, "latency") && strcmp(optarg, "memory") && strcmp(optarg, "disk")) {
                fprintf(stderr, "thaw tune: --goal '%s': expected latency, memory or disk\n",
                        optarg);
                goto usage_err;
            }
            json_object_set_new(params, "goal", json_string(optarg));
            break;
        case 'a':
            json_object_set_new(params, "apply", json_true());
            break;
        case 'e':
        case 'c':
        case 'l':
            v = list_arg(optarg, c != 'e', argv[optind - 1]);
            if (!v)
                goto usage_err;
            json_object_set_new(params, c == 'e' ? "engines" : c == 'c' ? "chunk_kib" : "lz4", v);
            break;
        case 'p':
            if (!strcmp(optarg, "on") || !strcmp(optarg, "off"))
                json_object_set_new(params, "prefetch", json_boolean(!strcmp(optarg, "on")));
            else if (strcmp(optarg, "both")) {
                fprintf(stderr, "thaw tune: --prefetch '%s': expected on, off or both\n", optarg);
                goto usage_err;
            }
            break;
        case 'n':
            json_object_set_new(params, "iterations", json_integer(atoll(optarg)));
            break;
        case 'h':
            usage(stdout);
            json_decref(params);
            return THAW_EXIT_OK;
        default:
            goto usage_err;
        }
    }
    if (optind >= argc || !strcmp(argv[optind], "--")) {
        fprintf(stderr, "thaw tune: which template? (usage: thaw tune [options] TEMPLATE)\n");
        goto usage_err;
    }
    json_object_set_new(params, "name", json_string(argv[optind++]));
    if (optind < argc && !strcmp(argv[optind], "--"))
        optind++;
    if (optind < argc) {
        json_t *av = json_array();
        for (int i = optind; i < argc; i++)
            json_array_append_new(av, json_string(argv[i]));
        json_object_set_new(params, "argv", av);
    }
    json_t *res = NULL;
    int r = thaw_call1(cli, "template.tune", params, on_progress, NULL, &res);
    if (r)
        return r;
    if (cli->json)
        thaw_print_json(res);
    else
        print_table(res);
    json_decref(res);
    return THAW_EXIT_OK;
usage_err:
    json_decref(params);
    usage(stderr);
    return THAW_EXIT_USAGE;
}
