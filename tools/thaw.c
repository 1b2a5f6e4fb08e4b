// SPDX-License-Identifier: Apache-2.0
/*
 * thaw: the command-line client of thawd.  One subcommand per RPC method
 * group; human tables by default, --json for scripts; `thaw run -- CMD`
 * prints the command's output and exits with its status.
 */
#include "tools/thaw-client.h"
#include "tools/thaw-bench.h"
#include "tools/thaw-tune.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "thaw-config.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: thaw [--socket PATH] [--json] COMMAND [ARGS]\n\n"
               "  run [-t TEMPLATE] -- CMD [ARGS]   run a command in a fresh sandbox\n"
               "  template create|ls|show|rm         manage templates\n"
               "  pool status|prewarm|set            warm pools\n"
               "  sandbox acquire|exec|put|get|release|ls\n"
               "  stats                              pool counts and latencies\n"
               "  metrics                            the same in Prometheus text format\n"
               "  info                               thawd's version, tiers and limits\n"
               "  tune TEMPLATE                      try restore configurations, rank them\n"
               "  bench                              scenario benchmarks, tables and plots\n\n"
               "  --socket PATH   thawd's socket (env THAW_SOCKET; default as thawd's)\n"
               "  --json          print JSON instead of tables\n"
               "  COMMAND --help  help for one command\n\n"
               "exit codes: 0 ok, 1 thawd refused, 2 usage, 3 cannot reach thawd, 4 not found,\n"
               "5 capacity/busy, 6 protocol error; run and exec exit with the command's status\n"
               "(128+N if killed by signal N, 124 on timeout, 125 if thaw could not run it).\n");
}

int main(int argc, char **argv)
{
    thaw_cli_t cli = {.socket = NULL, .json = false};
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;
    /* "+": stop at the subcommand, whose own options follow it. */
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            cli.socket = optarg;
            break;
        case 'j':
            cli.json = true;
            break;
        case 'h':
            usage(stdout);
            return THAW_EXIT_OK;
        case 'V':
            printf("thaw %s\n", THAW_VERSION);
            return THAW_EXIT_OK;
        default:
            usage(stderr);
            return THAW_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return THAW_EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    optind = 1; /* each subcommand parses its own options from its argv */
    static const struct {
        const char *name;
        int (*fn)(const thaw_cli_t *, int, char **);
    } cmds[] = {
        {"run", thaw_cmd_run},         {"template", thaw_cmd_template}, {"pool", thaw_cmd_pool},
        {"sandbox", thaw_cmd_sandbox}, {"stats", thaw_cmd_stats},       {"info", thaw_cmd_info},
        {"metrics", thaw_cmd_metrics}, {"tune", thaw_cmd_tune},         {"bench", thaw_cmd_bench},
    };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (!strcmp(cmd, cmds[i].name))
            return cmds[i].fn(&cli, sub_argc, sub_argv);
    fprintf(stderr, "thaw: unknown command '%s'\n", cmd);
    usage(stderr);
    return THAW_EXIT_USAGE;
}
