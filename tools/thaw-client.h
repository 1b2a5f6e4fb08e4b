/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The thaw CLI's pieces: a blocking JSON-RPC client for thawd's socket
 * (thaw-client.c), table output (thaw-table.c) and the subcommands
 * (thaw-cmd-*.c).  Exit codes are listed here so every subcommand means the
 * same thing by them.
 */
#ifndef THAW_TOOLS_THAW_CLIENT_H
#define THAW_TOOLS_THAW_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

/* Exit codes of thaw (run and exec exit with the command's own status). */
enum {
    THAW_EXIT_OK = 0,
    THAW_EXIT_FAIL = 1,        /* thawd answered with an error not listed below */
    THAW_EXIT_USAGE = 2,       /* bad command line */
    THAW_EXIT_CONNECT = 3,     /* cannot reach thawd */
    THAW_EXIT_NOT_FOUND = 4,   /* no such template or sandbox */
    THAW_EXIT_CAPACITY = 5,    /* capacity or busy: try again later */
    THAW_EXIT_PROTOCOL = 6,    /* thawd's answer made no sense */
    THAW_EXIT_RUN_FAILED = 125 /* run/exec: thaw could not run the command (docker's code) */
};

typedef struct thaw_client {
    int fd;
    FILE *in;
    long next_id;
    char socket_path[108];
} thaw_client_t;

/* Global options every subcommand sees. */
typedef struct thaw_cli {
    const char *socket;
    bool json;
    const char *prog; /* "thaw template create", for messages */
} thaw_cli_t;

/* Which socket: --socket, THAW_SOCKET, then the defaults thawd uses. */
const char *thaw_client_default_socket(char *buf, size_t n);
/* Connect; prints why on failure and returns THAW_EXIT_CONNECT. */
int thaw_client_open(thaw_client_t *c, const char *socket);
void thaw_client_close(thaw_client_t *c);

/* Called for each notification that arrives while waiting for a reply. */
typedef void (*thaw_note_fn)(void *ud, const char *method, json_t *params);

/*
 * Send one request and wait for its reply.  Returns 0 with *result (owned),
 * or an exit code after printing the error (thawd's message, or why the
 * connection failed).  params is stolen (may be NULL).
 */
int thaw_call(thaw_client_t *c, const char *method, json_t *params, thaw_note_fn note, void *ud,
              json_t **result);
/* Map a JSON-RPC error code to an exit code. */
int thaw_exit_for_code(int code);

/* Connect, call, print a failure; the usual one-shot of a subcommand. */
int thaw_call1(const thaw_cli_t *cli, const char *method, json_t *params, thaw_note_fn note,
               void *ud, json_t **result);

/* Print v as indented JSON on stdout. */
void thaw_print_json(json_t *v);

/* ---- tables (thaw-table.c) ---- */
typedef struct thaw_table thaw_table_t;
thaw_table_t *thaw_table_new(unsigned ncols, const char *const *headers);
void thaw_table_add(thaw_table_t *t, const char *const *cells);
/* Print with columns padded to their widest cell, then free. */
void thaw_table_print(thaw_table_t *t, FILE *f);
/* Format helpers for cells: a JSON value as text ("-" for missing). */
const char *thaw_cell(json_t *v, char *buf, size_t n);
/* Microseconds (double) as a human duration: "3.2µs", "1.4ms", "2.0s". */
const char *thaw_fmt_us(double us, char *buf, size_t n);

/* ---- subcommands ---- */
int thaw_cmd_run(const thaw_cli_t *cli, int argc, char **argv);
int thaw_cmd_template(const thaw_cli_t *cli, int argc, char **argv);
int thaw_cmd_pool(const thaw_cli_t *cli, int argc, char **argv);
int thaw_cmd_sandbox(const thaw_cli_t *cli, int argc, char **argv);
int thaw_cmd_stats(const thaw_cli_t *cli, int argc, char **argv);
int thaw_cmd_info(const thaw_cli_t *cli, int argc, char **argv);
int thaw_cmd_metrics(const thaw_cli_t *cli, int argc, char **argv);

/* True if argv has -h/--help before a "--"; the caller prints its usage. */
bool thaw_wants_help(int argc, char **argv);

#endif
