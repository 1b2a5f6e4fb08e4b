// SPDX-License-Identifier: Apache-2.0
/*
 * thaw template create|ls|show|rm, thaw pool status|prewarm|set, thaw stats,
 * thaw metrics and thaw info.
 */
#include "tools/thaw-client.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char template_help[] =
    "usage: thaw template COMMAND ...\n"
    "  create NAME [options]   create a template (progress is shown while it builds)\n"
    "      --tier vm|sentry    isolation tier (default sentry)\n"
    "      --image PATH        vm: kernel; sentry: root directory (default: built-in root)\n"
    "      --initrd PATH       vm: initramfs\n"
    "      --vcpus N           vm: vCPUs (default 1)\n"
    "      --memory MB         memory per sandbox (default 256)\n"
    "      --warmup CMD        shell command run before the snapshot (repeatable)\n"
    "      --min-ready N --max-ready N --max-total N   pool policy (default 1/8/64)\n"
    "      --engine eager|lazy|shared                 vm restore engine\n"
    "  ls                      list templates\n"
    "  show NAME               one template with its pool and latencies\n"
    "  rm NAME                 delete a template and its store directory\n";

static void on_progress(void *ud, const char *method, json_t *params)
{
    const thaw_cli_t *cli = ud;
    if (strcmp(method, "template.progress") || cli->json)
        return;
    const char *detail = json_string_value(json_object_get(params, "detail"));
    fprintf(stderr, "thaw: %s: %s%s%s\n", json_string_value(json_object_get(params, "template")),
            json_string_value(json_object_get(params, "stage")), detail ? ": " : "",
            detail ? detail : "");
}

static void print_templates(json_t *arr)
{
    static const char *const hdr[] = {"NAME",   "TIER",          "MEMORY", "READY",
                                      "IN USE", "MIN/MAX/TOTAL", "HITS",   "MISSES"};
    thaw_table_t *t = thaw_table_new(8, hdr);
    size_t i;
    json_t *tpl;
    json_array_foreach (arr, i, tpl) {
        json_t *p = json_object_get(tpl, "pool"), *c = json_object_get(tpl, "counters");
        char b[8][64];
        snprintf(b[2], sizeof(b[2]), "%lld MiB",
                 (long long)json_integer_value(json_object_get(tpl, "memory_mb")));
        snprintf(b[5], sizeof(b[5]), "%lld/%lld/%lld",
                 (long long)json_integer_value(json_object_get(p, "min_ready")),
                 (long long)json_integer_value(json_object_get(p, "max_ready")),
                 (long long)json_integer_value(json_object_get(p, "max_total")));
        const char *row[] = {
            thaw_cell(json_object_get(tpl, "name"), b[0], 64),
            thaw_cell(json_object_get(tpl, "tier"), b[1], 64),
            b[2],
            thaw_cell(json_object_get(p, "ready"), b[3], 64),
            thaw_cell(json_object_get(p, "in_use"), b[4], 64),
            b[5],
            thaw_cell(json_object_get(c, "hits"), b[6], 64),
            thaw_cell(json_object_get(c, "misses"), b[7], 64),
        };
        thaw_table_add(t, row);
    }
    thaw_table_print(t, stdout);
}

static void print_latency(json_t *lat)
{
    static const char *const hdr[] = {"LATENCY", "COUNT", "P50", "P90", "P99", "MAX"};
    thaw_table_t *t = thaw_table_new(6, hdr);
    const char *key;
    json_t *h;
    json_object_foreach (lat, key, h) {
        char b[5][32];
        const char *row[] = {
            key,
            thaw_cell(json_object_get(h, "count"), b[0], 32),
            thaw_fmt_us(json_number_value(json_object_get(h, "p50_us")), b[1], 32),
            thaw_fmt_us(json_number_value(json_object_get(h, "p90_us")), b[2], 32),
            thaw_fmt_us(json_number_value(json_object_get(h, "p99_us")), b[3], 32),
            thaw_fmt_us(json_number_value(json_object_get(h, "max_us")), b[4], 32),
        };
        thaw_table_add(t, row);
    }
    thaw_table_print(t, stdout);
}

static int tpl_create(const thaw_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"tier", required_argument, NULL, 't'},
        {"image", required_argument, NULL, 'i'},
        {"initrd", required_argument, NULL, 'r'},
        {"vcpus", required_argument, NULL, 'c'},
        {"memory", required_argument, NULL, 'm'},
        {"warmup", required_argument, NULL, 'w'},
        {"min-ready", required_argument, NULL, '1'},
        {"max-ready", required_argument, NULL, '2'},
        {"max-total", required_argument, NULL, '3'},
        {"engine", required_argument, NULL, 'e'},
        {NULL, 0, NULL, 0},
    };
    json_t *p = json_object(), *warm = json_array();
    int c;
    optind = 0; /* 0: glibc re-initialises getopt for a new argv */
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            json_object_set_new(p, "tier", json_string(optarg));
            break;
        case 'i':
            json_object_set_new(p, "image", json_string(optarg));
            break;
        case 'r':
            json_object_set_new(p, "initrd", json_string(optarg));
            break;
        case 'e':
            json_object_set_new(p, "engine", json_string(optarg));
            break;
        case 'w':
            json_array_append_new(warm, json_string(optarg));
            break;
        case 'c':
        case 'm':
        case '1':
        case '2':
        case '3': {
            char *end;
            long long v = strtoll(optarg, &end, 10);
            if (*end || end == optarg || v < 0) {
                fprintf(stderr, "thaw template create: '%s' is not a number\n", optarg);
                json_decref(p);
                json_decref(warm);
                return THAW_EXIT_USAGE;
            }
            const char *k = c == 'c'   ? "vcpus"
                            : c == 'm' ? "memory_mb"
                            : c == '1' ? "min_ready"
                            : c == '2' ? "max_ready"
                                       : "max_total";
            json_object_set_new(p, k, json_integer(v));
            break;
        }
        default:
            fputs(template_help, stderr);
            json_decref(p);
            json_decref(warm);
            return THAW_EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "usage: thaw template create NAME [options] (see --help)\n");
        json_decref(p);
        json_decref(warm);
        return THAW_EXIT_USAGE;
    }
    json_object_set_new(p, "name", json_string(argv[optind]));
    if (json_array_size(warm))
        json_object_set(p, "warmup", warm);
    json_decref(warm);
    json_t *res = NULL;
    int r = thaw_call1(cli, "template.create", p, on_progress, (void *)cli, &res);
    if (r)
        return r;
    if (cli->json) {
        thaw_print_json(res);
    } else {
        json_t *arr = json_array();
        json_array_append(arr, res);
        print_templates(arr);
        json_decref(arr);
    }
    json_decref(res);
    return THAW_EXIT_OK;
}

int thaw_cmd_template(const thaw_cli_t *cli, int argc, char **argv)
{
    if (argc < 2 || thaw_wants_help(argc, argv)) {
        fputs(template_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? THAW_EXIT_USAGE : THAW_EXIT_OK;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "create"))
        return tpl_create(cli, argc - 1, argv + 1);
    json_t *res = NULL;
    int r;
    if (!strcmp(sub, "ls") && argc == 2) {
        r = thaw_call1(cli, "template.list", NULL, NULL, NULL, &res);
        if (r == 0 && !cli->json)
            print_templates(json_object_get(res, "templates"));
    } else if (!strcmp(sub, "show") && argc == 3) {
        r = thaw_call1(cli, "template.get", json_pack("{s:s}", "name", argv[2]), NULL, NULL, &res);
        if (r == 0 && !cli->json) {
            json_t *arr = json_array();
            json_array_append(arr, res);
            print_templates(arr);
            json_decref(arr);
            json_t *err = json_object_get(res, "last_error");
            if (err)
                printf("\nlast error: %s\n", json_string_value(err));
            printf("\n");
            print_latency(json_object_get(res, "latency"));
        }
    } else if (!strcmp(sub, "rm") && argc == 3) {
        r = thaw_call1(cli, "template.delete", json_pack("{s:s}", "name", argv[2]), NULL, NULL,
                       &res);
    } else {
        fprintf(stderr, "thaw template: bad command or arguments\n");
        fputs(template_help, stderr);
        return THAW_EXIT_USAGE;
    }
    if (r == 0 && cli->json)
        thaw_print_json(res);
    json_decref(res);
    return r;
}

static const char pool_help[] =
    "usage: thaw pool COMMAND ...\n"
    "  status [NAME]                          ready/in-use counts per template\n"
    "  prewarm NAME COUNT [--window MS] [--wait MS]\n"
    "                                         keep COUNT ready for MS (default 60000);\n"
    "                                         --wait blocks until they are\n"
    "  set NAME [--min-ready N] [--max-ready N] [--max-total N]\n";

static void print_pools(json_t *arr)
{
    static const char *const hdr[] = {"TEMPLATE", "READY", "IN USE", "CREATING", "TARGET",
                                      "PREWARM",  "HITS",  "MISSES", "DIED"};
    thaw_table_t *t = thaw_table_new(9, hdr);
    size_t i;
    json_t *p;
    json_array_foreach (arr, i, p) {
        json_t *c = json_object_get(p, "counters");
        char b[9][64];
        const char *row[] = {
            thaw_cell(json_object_get(p, "name"), b[0], 64),
            thaw_cell(json_object_get(p, "ready"), b[1], 64),
            thaw_cell(json_object_get(p, "in_use"), b[2], 64),
            thaw_cell(json_object_get(p, "creating"), b[3], 64),
            thaw_cell(json_object_get(p, "target"), b[4], 64),
            thaw_cell(json_object_get(p, "prewarm"), b[5], 64),
            thaw_cell(json_object_get(c, "hits"), b[6], 64),
            thaw_cell(json_object_get(c, "misses"), b[7], 64),
            thaw_cell(json_object_get(c, "died"), b[8], 64),
        };
        thaw_table_add(t, row);
    }
    thaw_table_print(t, stdout);
    json_array_foreach (arr, i, p) {
        json_t *e = json_object_get(p, "last_error");
        if (e)
            printf("%s: last error: %s\n", json_string_value(json_object_get(p, "name")),
                   json_string_value(e));
    }
}

static int num_arg(const char *s, long long *v)
{
    char *end;
    *v = strtoll(s, &end, 10);
    if (*end || end == s || *v < 0) {
        fprintf(stderr, "thaw pool: '%s' is not a number\n", s);
        return -1;
    }
    return 0;
}

int thaw_cmd_pool(const thaw_cli_t *cli, int argc, char **argv)
{
    if (argc < 2 || thaw_wants_help(argc, argv)) {
        fputs(pool_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? THAW_EXIT_USAGE : THAW_EXIT_OK;
    }
    const char *sub = argv[1];
    static const struct option opts[] = {
        {"window", required_argument, NULL, 'w'},    {"wait", required_argument, NULL, 'W'},
        {"min-ready", required_argument, NULL, '1'}, {"max-ready", required_argument, NULL, '2'},
        {"max-total", required_argument, NULL, '3'}, {NULL, 0, NULL, 0},
    };
    json_t *p = json_object();
    int c;
    optind = 0; /* 0: glibc re-initialises getopt for a new argv */
    while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
        long long v;
        if (c == '?' || num_arg(optarg, &v) < 0) {
            json_decref(p);
            fputs(pool_help, stderr);
            return THAW_EXIT_USAGE;
        }
        const char *k = c == 'w'   ? "window_ms"
                        : c == 'W' ? "wait_ms"
                        : c == '1' ? "min_ready"
                        : c == '2' ? "max_ready"
                                   : "max_total";
        json_object_set_new(p, k, json_integer(v));
    }
    int npos = argc - 1 - optind;
    char **pos = argv + 1 + optind;
    const char *method = NULL;
    if (!strcmp(sub, "status") && npos <= 1 && json_object_size(p) == 0) {
        method = "pool.status";
        if (npos == 1)
            json_object_set_new(p, "name", json_string(pos[0]));
    } else if (!strcmp(sub, "prewarm") && npos == 2) {
        long long v;
        if (num_arg(pos[1], &v) < 0) {
            json_decref(p);
            return THAW_EXIT_USAGE;
        }
        method = "pool.prewarm";
        json_object_set_new(p, "name", json_string(pos[0]));
        json_object_set_new(p, "count", json_integer(v));
    } else if (!strcmp(sub, "set") && npos == 1) {
        method = "pool.configure";
        json_object_set_new(p, "name", json_string(pos[0]));
    }
    if (!method) {
        json_decref(p);
        fprintf(stderr, "thaw pool: bad command or arguments\n");
        fputs(pool_help, stderr);
        return THAW_EXIT_USAGE;
    }
    json_t *res = NULL;
    int r = thaw_call1(cli, method, p, NULL, NULL, &res);
    if (r)
        return r;
    if (cli->json) {
        thaw_print_json(res);
    } else if (!strcmp(method, "pool.status")) {
        print_pools(json_object_get(res, "pools"));
    } else {
        printf("%s: min_ready %lld, max_ready %lld, max_total %lld, ready %lld, target %lld\n",
               json_string_value(json_object_get(res, "name")),
               (long long)json_integer_value(json_object_get(res, "min_ready")),
               (long long)json_integer_value(json_object_get(res, "max_ready")),
               (long long)json_integer_value(json_object_get(res, "max_total")),
               (long long)json_integer_value(json_object_get(res, "ready")),
               (long long)json_integer_value(json_object_get(res, "target")));
    }
    json_decref(res);
    return THAW_EXIT_OK;
}

/* An integer field of a JSON object, 0 when absent (an older thawd). */
static long long num(json_t *obj, const char *key)
{
    return (long long)json_integer_value(json_object_get(obj, key));
}

int thaw_cmd_stats(const thaw_cli_t *cli, int argc, char **argv)
{
    if (thaw_wants_help(argc, argv) || argc != 1) {
        fputs("usage: thaw stats\nPool counts per template and latency percentiles "
              "(acquire hit/miss, restore, exec, run).\n",
              argc != 1 && !thaw_wants_help(argc, argv) ? stderr : stdout);
        return argc != 1 && !thaw_wants_help(argc, argv) ? THAW_EXIT_USAGE : THAW_EXIT_OK;
    }
    json_t *res = NULL;
    int r = thaw_call1(cli, "server.stats", NULL, NULL, NULL, &res);
    if (r)
        return r;
    if (cli->json) {
        thaw_print_json(res);
    } else {
        json_t *s = json_object_get(res, "server");
        printf("sandboxes %lld of %lld, memory %lld of %lld MiB, hits %lld, misses %lld, "
               "died %lld, capacity refusals %lld\n",
               num(s, "sandboxes"), num(s, "max_sandboxes"), num(s, "memory_mb"),
               num(s, "memory_budget_mb"), num(s, "hits"), num(s, "misses"), num(s, "died"),
               num(s, "capacity_refusals"));
        /* The blocking-work side: thawd's worker threads and its per-uid queues. */
        printf("workers %lld of %lld busy, %lld requests waiting (%lld in all), "
               "uid refusals %lld\n\n",
               num(s, "workers_busy"), num(s, "workers"), num(s, "queued"), num(s, "queued_total"),
               num(s, "uid_refusals"));
        print_latency(json_object_get(res, "latency"));
        json_t *arr = json_array();
        const char *k;
        json_t *t;
        json_object_foreach (json_object_get(res, "templates"), k, t) {
            json_t *p = json_deep_copy(json_object_get(t, "pool"));
            json_object_set(p, "name", json_object_get(t, "name"));
            json_object_set(p, "counters", json_object_get(t, "counters"));
            json_array_append_new(arr, p);
        }
        printf("\n");
        print_pools(arr);
        json_decref(arr);
    }
    json_decref(res);
    return THAW_EXIT_OK;
}

int thaw_cmd_metrics(const thaw_cli_t *cli, int argc, char **argv)
{
    if (thaw_wants_help(argc, argv) || argc != 1) {
        fputs("usage: thaw metrics\nserver.metrics: statistics in Prometheus text format.\n",
              stdout);
        return argc != 1 && !thaw_wants_help(argc, argv) ? THAW_EXIT_USAGE : THAW_EXIT_OK;
    }
    json_t *res = NULL;
    int r = thaw_call1(cli, "server.metrics", NULL, NULL, NULL, &res);
    if (r)
        return r;
    if (cli->json)
        thaw_print_json(res);
    else
        fputs(json_string_value(json_object_get(res, "text")), stdout);
    json_decref(res);
    return THAW_EXIT_OK;
}

int thaw_cmd_info(const thaw_cli_t *cli, int argc, char **argv)
{
    if (thaw_wants_help(argc, argv) || argc != 1) {
        fputs("usage: thaw info\nthawd's version, socket, store, tiers (and why one is "
              "unavailable) and limits.\n",
              stdout);
        return argc != 1 && !thaw_wants_help(argc, argv) ? THAW_EXIT_USAGE : THAW_EXIT_OK;
    }
    json_t *res = NULL;
    int r = thaw_call1(cli, "server.info", NULL, NULL, NULL, &res);
    if (r)
        return r;
    if (cli->json) {
        thaw_print_json(res);
    } else {
        printf("thawd %s (pid %lld), socket %s, store %s\n\n",
               json_string_value(json_object_get(res, "version")),
               (long long)json_integer_value(json_object_get(res, "pid")),
               json_string_value(json_object_get(res, "socket")),
               json_string_value(json_object_get(res, "store")));
        /* A tier that runs can still carry a note worth reading ("KVM is
         * PVM here: ..."), so the last column shows a reason or a note. */
        static const char *const hdr[] = {"TIER", "AVAILABLE", "WHY NOT / NOTE"};
        thaw_table_t *t = thaw_table_new(3, hdr);
        size_t i;
        json_t *tier;
        json_array_foreach (json_object_get(res, "tiers"), i, tier) {
            char b[2][64];
            const char *row[] = {thaw_cell(json_object_get(tier, "name"), b[0], 64),
                                 thaw_cell(json_object_get(tier, "available"), b[1], 64),
                                 json_string_value(json_object_get(tier, "reason"))};
            if (!row[2])
                row[2] = json_string_value(json_object_get(tier, "note"));
            thaw_table_add(t, row);
        }
        thaw_table_print(t, stdout);
        printf("\nlimits:");
        const char *k;
        json_t *v;
        json_object_foreach (json_object_get(res, "limits"), k, v)
            printf(" %s=%lld", k, (long long)json_integer_value(v));
        printf("\n");
    }
    json_decref(res);
    return THAW_EXIT_OK;
}
