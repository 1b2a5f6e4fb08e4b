// SPDX-License-Identifier: Apache-2.0
/*
 * thaw run and thaw sandbox acquire|exec|put|get|release|ls.  run and exec
 * stream the command's output as it arrives and exit with its status.
 * A sandbox acquired from the CLI outlives the CLI's connection only with a
 * lease, so `thaw sandbox acquire` takes one by default (--lease).
 */
#include "tools/thaw-client.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rpc/rpc.h"

/* Bytes of a "key" / "key_base64" pair in obj; malloc'ed.  -1 if neither. */
static int get_bytes(json_t *obj, const char *key, void **data, size_t *len)
{
    json_t *t = json_object_get(obj, key);
    if (json_is_string(t)) {
        *len = json_string_length(t);
        *data = malloc(*len + 1);
        if (!*data)
            return -1;
        memcpy(*data, json_string_value(t), *len);
        return 0;
    }
    char k64[64];
    snprintf(k64, sizeof(k64), "%s_base64", key);
    json_t *b = json_object_get(obj, k64);
    if (json_is_string(b))
        return rpc_base64_decode(json_string_value(b), json_string_length(b), data, len);
    return -1;
}

static void write_bytes(FILE *f, json_t *obj, const char *key)
{
    void *d = NULL;
    size_t n = 0;
    if (get_bytes(obj, key, &d, &n) == 0)
        fwrite(d, 1, n, f);
    free(d);
    fflush(f);
}

static void on_output(void *ud, const char *method, json_t *params)
{
    (void)ud;
    if (strcmp(method, "sandbox.output"))
        return;
    const char *stream = json_string_value(json_object_get(params, "stream"));
    write_bytes(stream && !strcmp(stream, "stderr") ? stderr : stdout, params, "data");
}

static int exit_status(json_t *res)
{
    int sig = (int)json_integer_value(json_object_get(res, "signal"));
    if (json_is_true(json_object_get(res, "timed_out")))
        return 124;
    if (sig > 0)
        return 128 + sig;
    return (int)json_integer_value(json_object_get(res, "exit_code")) & 0xff;
}

static int read_stdin(void **data, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(0, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        if (r == 0) {
            *data = buf;
            *len = n;
            return 0;
        }
        n += (size_t)r;
    }
    free(buf);
    return -1;
}

typedef struct exec_opts {
    const char *tpl, *cwd;
    json_t *env;
    long long timeout_ms, max_output;
    bool stdin_in, no_stream;
} exec_opts_t;

/* Parse the options run and exec share; returns the index of the command or -1. */
static int parse_exec_opts(int argc, char **argv, bool with_template, exec_opts_t *o,
                           const char *prog)
{
    static const struct option opts[] = {
        {"template", required_argument, NULL, 't'},   {"env", required_argument, NULL, 'e'},
        {"cwd", required_argument, NULL, 'C'},        {"timeout", required_argument, NULL, 'T'},
        {"max-output", required_argument, NULL, 'O'}, {"stdin", no_argument, NULL, 'i'},
        {"no-stream", no_argument, NULL, 'S'},        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 0; /* 0: glibc re-initialises getopt for a new argv */
    while ((c = getopt_long(argc, argv, with_template ? "+t:e:C:i" : "+e:C:i", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (!with_template)
                goto bad;
            o->tpl = optarg;
            break;
        case 'e':
            if (!strchr(optarg, '=')) {
                fprintf(stderr, "%s: --env '%s': expected KEY=VALUE\n", prog, optarg);
                return -1;
            }
            json_array_append_new(o->env, json_string(optarg));
            break;
        case 'C':
            o->cwd = optarg;
            break;
        case 'T':
            o->timeout_ms = atoll(optarg);
            break;
        case 'O':
            o->max_output = atoll(optarg);
            break;
        case 'i':
            o->stdin_in = true;
            break;
        case 'S':
            o->no_stream = true;
            break;
        default:
        bad:
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", prog, argv[optind - 1]);
            return -1;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "%s: no command given (usage: %s [options] -- CMD [ARGS])\n", prog, prog);
        return -1;
    }
    return optind;
}

/* Build exec params (argv from argv[cmd..]) and call; prints and returns the exit status. */
static int do_exec(const thaw_cli_t *cli, const char *method, json_t *params, exec_opts_t *o,
                   int argc, char **argv, int cmd)
{
    json_t *av = json_array();
    for (int i = cmd; i < argc; i++)
        json_array_append_new(av, json_string(argv[i]));
    json_object_set_new(params, "argv", av);
    if (json_array_size(o->env))
        json_object_set(params, "env", o->env);
    if (o->cwd)
        json_object_set_new(params, "cwd", json_string(o->cwd));
    if (o->timeout_ms > 0)
        json_object_set_new(params, "timeout_ms", json_integer(o->timeout_ms));
    if (o->max_output > 0)
        json_object_set_new(params, "max_output", json_integer(o->max_output));
    if (o->stdin_in) {
        void *d = NULL;
        size_t n = 0;
        if (read_stdin(&d, &n) < 0) {
            fprintf(stderr, "thaw: reading stdin failed\n");
            json_decref(params);
            return THAW_EXIT_RUN_FAILED;
        }
        size_t elen = 0;
        char *enc = rpc_base64_encode(d, n, &elen);
        free(d);
        json_object_set_new(params, "stdin_base64", json_stringn(enc ? enc : "", elen));
        free(enc);
    }
    bool stream = !o->no_stream && !cli->json;
    if (stream)
        json_object_set_new(params, "stream", json_true());
    json_t *res = NULL;
    int r = thaw_call1(cli, method, params, stream ? on_output : NULL, NULL, &res);
    if (r)
        return r == THAW_EXIT_USAGE ? THAW_EXIT_USAGE : THAW_EXIT_RUN_FAILED;
    if (cli->json) {
        thaw_print_json(res);
    } else if (!stream) {
        write_bytes(stdout, res, "stdout");
        write_bytes(stderr, res, "stderr");
    }
    if (!cli->json && json_is_true(json_object_get(res, "truncated")))
        fprintf(stderr, "thaw: output truncated at the output cap\n");
    if (!cli->json && json_is_true(json_object_get(res, "timed_out")))
        fprintf(stderr, "thaw: the command timed out and was killed\n");
    int status = exit_status(res);
    json_decref(res);
    return status;
}

static const char run_help[] =
    "usage: thaw run [-t TEMPLATE] [options] -- CMD [ARGS]\n"
    "Acquire a fresh sandbox, run CMD in it, release it; print its output and\n"
    "exit with its status (128+N if killed by signal N, 124 on timeout, 125 if\n"
    "thaw could not run it).\n\n"
    "  -t, --template NAME  template (default: default)\n"
    "  -e, --env K=V        environment (repeatable)\n"
    "  -C, --cwd DIR        working directory\n"
    "  --timeout MS         kill the command after MS milliseconds\n"
    "  --max-output BYTES   keep at most BYTES of output\n"
    "  -i, --stdin          send this process's stdin to the command\n"
    "  --no-stream          print the output at the end instead of as it comes\n";

int thaw_cmd_run(const thaw_cli_t *cli, int argc, char **argv)
{
    if (thaw_wants_help(argc, argv)) {
        fputs(run_help, stdout);
        return THAW_EXIT_OK;
    }
    exec_opts_t o = {.tpl = "default", .env = json_array()};
    int cmd = parse_exec_opts(argc, argv, true, &o, "thaw run");
    int r = THAW_EXIT_USAGE;
    if (cmd > 0) {
        json_t *params = json_pack("{s:s}", "template", o.tpl);
        r = do_exec(cli, "sandbox.run", params, &o, argc, argv, cmd);
    }
    json_decref(o.env);
    return r;
}

/* ---- thaw sandbox ... ---- */

static const char sandbox_help[] =
    "usage: thaw sandbox COMMAND ...\n"
    "  acquire [-t TEMPLATE] [--lease S]   take a sandbox; prints its id.  The CLI's\n"
    "                                      connection ends at once, so the sandbox is\n"
    "                                      kept by a lease (default 600 s)\n"
    "  exec ID [options] -- CMD [ARGS]     run a command (options as for thaw run)\n"
    "  put ID LOCAL REMOTE [--mode MODE]   copy a file into the sandbox (LOCAL - = stdin)\n"
    "  get ID REMOTE [LOCAL]               copy a file out (default: to stdout)\n"
    "  release ID                          destroy the sandbox\n"
    "  ls                                  your sandboxes\n";

static int sb_acquire(const thaw_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"template", required_argument, NULL, 't'},
        {"lease", required_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    const char *tpl = "default";
    long long lease = 600;
    int c;
    optind = 0; /* 0: glibc re-initialises getopt for a new argv */
    while ((c = getopt_long(argc, argv, "t:", opts, NULL)) != -1) {
        if (c == 't')
            tpl = optarg;
        else if (c == 'l')
            lease = atoll(optarg);
        else {
            fputs(sandbox_help, stderr);
            return THAW_EXIT_USAGE;
        }
    }
    if (lease <= 0) {
        fprintf(stderr, "thaw sandbox acquire: --lease must be positive: the sandbox would be "
                        "released as soon as thaw exits\n");
        return THAW_EXIT_USAGE;
    }
    json_t *res = NULL;
    int r = thaw_call1(cli, "sandbox.acquire",
                       json_pack("{s:s, s:I}", "template", tpl, "lease_s", (json_int_t)lease), NULL,
                       NULL, &res);
    if (r)
        return r;
    if (cli->json)
        thaw_print_json(res);
    else
        printf("%s\n", json_string_value(json_object_get(res, "id")));
    json_decref(res);
    return THAW_EXIT_OK;
}

static int sb_exec(const thaw_cli_t *cli, int argc, char **argv)
{
    if (argc < 2) {
        fputs(sandbox_help, stderr);
        return THAW_EXIT_USAGE;
    }
    exec_opts_t o = {.env = json_array()};
    /* argv[1] is the id; options and the command follow it. */
    int cmd = parse_exec_opts(argc - 1, argv + 1, false, &o, "thaw sandbox exec");
    int r = THAW_EXIT_USAGE;
    if (cmd > 0) {
        json_t *params = json_pack("{s:s}", "id", argv[1]);
        r = do_exec(cli, "sandbox.exec", params, &o, argc - 1, argv + 1, cmd);
    }
    json_decref(o.env);
    return r;
}

static int sb_put(const thaw_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"mode", required_argument, NULL, 'm'},
                                         {NULL, 0, NULL, 0}};
    long mode = 0644;
    int c;
    optind = 0; /* 0: glibc re-initialises getopt for a new argv */
    while ((c = getopt_long(argc, argv, "m:", opts, NULL)) != -1) {
        if (c != 'm') {
            fputs(sandbox_help, stderr);
            return THAW_EXIT_USAGE;
        }
        mode = strtol(optarg, NULL, 8);
    }
    if (argc - optind != 3) {
        fprintf(stderr, "usage: thaw sandbox put ID LOCAL REMOTE [--mode MODE]\n");
        return THAW_EXIT_USAGE;
    }
    const char *id = argv[optind], *local = argv[optind + 1], *remote = argv[optind + 2];
    void *d = NULL;
    size_t n = 0;
    if (!strcmp(local, "-")) {
        if (read_stdin(&d, &n) < 0) {
            fprintf(stderr, "thaw: reading stdin failed\n");
            return THAW_EXIT_FAIL;
        }
    } else {
        FILE *f = fopen(local, "rb");
        if (!f) {
            fprintf(stderr, "thaw: %s: %s\n", local, strerror(errno));
            return THAW_EXIT_USAGE;
        }
        size_t cap = 65536;
        d = malloc(cap);
        size_t got;
        while (d && (got = fread((char *)d + n, 1, cap - n, f)) > 0) {
            n += got;
            if (n == cap) {
                void *nd = realloc(d, cap *= 2);
                if (!nd) {
                    free(d);
                    d = NULL;
                }
                d = nd;
            }
        }
        fclose(f);
        if (!d) {
            fprintf(stderr, "thaw: out of memory\n");
            return THAW_EXIT_FAIL;
        }
    }
    size_t elen = 0;
    char *enc = rpc_base64_encode(d, n, &elen);
    free(d);
    json_t *params = json_pack("{s:s, s:s, s:s%, s:i}", "id", id, "path", remote, "data_base64",
                               enc ? enc : "", elen, "mode", (int)mode);
    free(enc);
    json_t *res = NULL;
    int r = thaw_call1(cli, "sandbox.put_file", params, NULL, NULL, &res);
    if (r)
        return r;
    if (cli->json)
        thaw_print_json(res);
    json_decref(res);
    return THAW_EXIT_OK;
}

static int sb_get(const thaw_cli_t *cli, int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: thaw sandbox get ID REMOTE [LOCAL]\n");
        return THAW_EXIT_USAGE;
    }
    json_t *res = NULL;
    int r = thaw_call1(
        cli, "sandbox.get_file",
        json_pack("{s:s, s:s, s:s}", "id", argv[1], "path", argv[2], "encoding", "base64"), NULL,
        NULL, &res);
    if (r)
        return r;
    if (cli->json) {
        thaw_print_json(res);
        json_decref(res);
        return THAW_EXIT_OK;
    }
    FILE *f = argc == 4 ? fopen(argv[3], "wb") : stdout;
    if (!f) {
        fprintf(stderr, "thaw: %s: %s\n", argv[3], strerror(errno));
        json_decref(res);
        return THAW_EXIT_FAIL;
    }
    write_bytes(f, res, "data");
    if (f != stdout)
        fclose(f);
    json_decref(res);
    return THAW_EXIT_OK;
}

static int sb_release(const thaw_cli_t *cli, int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: thaw sandbox release ID\n");
        return THAW_EXIT_USAGE;
    }
    json_t *res = NULL;
    int r = thaw_call1(cli, "sandbox.release", json_pack("{s:s}", "id", argv[1]), NULL, NULL, &res);
    if (r)
        return r;
    if (cli->json)
        thaw_print_json(res);
    json_decref(res);
    return THAW_EXIT_OK;
}

static int sb_ls(const thaw_cli_t *cli, int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: thaw sandbox ls\n");
        return THAW_EXIT_USAGE;
    }
    json_t *res = NULL;
    int r = thaw_call1(cli, "sandbox.list", NULL, NULL, NULL, &res);
    if (r)
        return r;
    if (cli->json) {
        thaw_print_json(res);
    } else {
        static const char *const hdr[] = {"ID", "TEMPLATE", "AGE", "LEASE LEFT", "BUSY"};
        thaw_table_t *t = thaw_table_new(5, hdr);
        size_t i;
        json_t *s;
        json_array_foreach (json_object_get(res, "sandboxes"), i, s) {
            char b1[32], b2[32], b3[32], b4[32];
            json_t *left = json_object_get(s, "lease_left_ms");
            const char *row[] = {
                thaw_cell(json_object_get(s, "id"), b1, sizeof(b1)),
                thaw_cell(json_object_get(s, "template"), b2, sizeof(b2)),
                thaw_fmt_us((double)json_integer_value(json_object_get(s, "age_ms")) * 1000, b3,
                            sizeof(b3)),
                left ? thaw_fmt_us((double)json_integer_value(left) * 1000, b4, sizeof(b4))
                     : "until disconnect",
                json_is_true(json_object_get(s, "busy")) ? "yes" : "no",
            };
            thaw_table_add(t, row);
        }
        thaw_table_print(t, stdout);
    }
    json_decref(res);
    return THAW_EXIT_OK;
}

int thaw_cmd_sandbox(const thaw_cli_t *cli, int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(sandbox_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? THAW_EXIT_USAGE : THAW_EXIT_OK;
    }
    const char *sub = argv[1];
    if (thaw_wants_help(argc - 1, argv + 1)) {
        fputs(sandbox_help, stdout);
        return THAW_EXIT_OK;
    }
    if (!strcmp(sub, "acquire"))
        return sb_acquire(cli, argc - 1, argv + 1);
    if (!strcmp(sub, "exec"))
        return sb_exec(cli, argc - 1, argv + 1);
    if (!strcmp(sub, "put"))
        return sb_put(cli, argc - 1, argv + 1);
    if (!strcmp(sub, "get"))
        return sb_get(cli, argc - 1, argv + 1);
    if (!strcmp(sub, "release"))
        return sb_release(cli, argc - 1, argv + 1);
    if (!strcmp(sub, "ls"))
        return sb_ls(cli, argc - 1, argv + 1);
    fprintf(stderr, "thaw sandbox: unknown command '%s'\n", sub);
    fputs(sandbox_help, stderr);
    return THAW_EXIT_USAGE;
}
