// SPDX-License-Identifier: Apache-2.0
/*
 * A blocking JSON-RPC 2.0 client for thawd: one request line out, then lines
 * in until the reply with our id, handing notifications (progress, streamed
 * output) to a callback on the way.  The CLI makes one request per run, so
 * nothing here needs an event loop.
 */
#include "tools/thaw-client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "rpc/rpc.h"

const char *thaw_client_default_socket(char *buf, size_t n)
{
    const char *env = getenv("THAW_SOCKET");
    if (env && env[0]) {
        snprintf(buf, n, "%s", env);
        return buf;
    }
    if (geteuid() != 0 && (env = getenv("XDG_RUNTIME_DIR")) && env[0]) {
        snprintf(buf, n, "%s/thaw.sock", env);
        if (access(buf, F_OK) == 0)
            return buf;
    }
    /* The system thawd, also for users who may open its socket. */
    snprintf(buf, n, "/run/thaw/thaw.sock");
    return buf;
}

int thaw_client_open(thaw_client_t *c, const char *socket_path)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    if (socket_path)
        snprintf(c->socket_path, sizeof(c->socket_path), "%s", socket_path);
    else
        thaw_client_default_socket(c->socket_path, sizeof(c->socket_path));
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fprintf(stderr, "thaw: socket: %s\n", strerror(errno));
        return THAW_EXIT_CONNECT;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->socket_path);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        fprintf(stderr, "thaw: cannot reach thawd at %s: %s%s\n", c->socket_path, strerror(e),
                e == ENOENT || e == ECONNREFUSED
                    ? " (is thawd running? start it with tools/up, or pass --socket)"
                    : "");
        close(c->fd);
        c->fd = -1;
        return THAW_EXIT_CONNECT;
    }
    c->in = fdopen(dup(c->fd), "r");
    if (!c->in) {
        fprintf(stderr, "thaw: %s\n", strerror(errno));
        close(c->fd);
        c->fd = -1;
        return THAW_EXIT_CONNECT;
    }
    c->next_id = 1;
    return 0;
}

void thaw_client_close(thaw_client_t *c)
{
    if (c->in)
        fclose(c->in);
    if (c->fd >= 0)
        close(c->fd);
    c->in = NULL;
    c->fd = -1;
}

int thaw_exit_for_code(int code)
{
    switch (code) {
    case RPC_E_NOT_FOUND:
        return THAW_EXIT_NOT_FOUND;
    case RPC_E_CAPACITY:
    case RPC_E_BUSY:
        return THAW_EXIT_CAPACITY;
    case RPC_E_PARAMS:
        return THAW_EXIT_USAGE;
    default:
        return THAW_EXIT_FAIL;
    }
}

static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -errno;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

int thaw_call(thaw_client_t *c, const char *method, json_t *params, thaw_note_fn note, void *ud,
              json_t **result)
{
    long id = c->next_id++;
    json_t *req =
        json_pack("{s:s, s:I, s:s}", "jsonrpc", "2.0", "id", (json_int_t)id, "method", method);
    if (params)
        json_object_set_new(req, "params", params);
    char *line = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!line) {
        fprintf(stderr, "thaw: out of memory\n");
        return THAW_EXIT_FAIL;
    }
    size_t n = strlen(line);
    line[n] = '\n'; /* json_dumps leaves room only for the NUL: replace it */
    int r = write_all(c->fd, line, n + 1);
    free(line);
    if (r < 0) {
        fprintf(stderr, "thaw: send to %s: %s\n", c->socket_path, strerror(-r));
        return THAW_EXIT_CONNECT;
    }
    char *buf = NULL;
    size_t cap = 0;
    for (;;) {
        ssize_t len = getline(&buf, &cap, c->in);
        if (len <= 0) {
            free(buf);
            fprintf(stderr, "thaw: thawd closed the connection before answering %s\n", method);
            return THAW_EXIT_PROTOCOL;
        }
        json_error_t jerr;
        json_t *msg = json_loadb(buf, (size_t)len, 0, &jerr);
        if (!json_is_object(msg)) {
            json_decref(msg);
            free(buf);
            fprintf(stderr, "thaw: unreadable reply from thawd: %s\n", jerr.text);
            return THAW_EXIT_PROTOCOL;
        }
        json_t *mid = json_object_get(msg, "id");
        json_t *m = json_object_get(msg, "method");
        if (!mid && json_is_string(m)) {
            if (note)
                note(ud, json_string_value(m), json_object_get(msg, "params"));
            json_decref(msg);
            continue;
        }
        json_t *err = json_object_get(msg, "error");
        if (err) {
            int code = (int)json_integer_value(json_object_get(err, "code"));
            const char *emsg = json_string_value(json_object_get(err, "message"));
            fprintf(stderr, "thaw: %s: %s\n", method, emsg ? emsg : "error");
            json_decref(msg);
            free(buf);
            return thaw_exit_for_code(code);
        }
        if (!json_is_integer(mid) || json_integer_value(mid) != id) {
            json_decref(msg);
            continue; /* not ours (cannot happen with one request at a time) */
        }
        *result = json_incref(json_object_get(msg, "result"));
        json_decref(msg);
        free(buf);
        return *result ? 0 : THAW_EXIT_PROTOCOL;
    }
}

int thaw_call1(const thaw_cli_t *cli, const char *method, json_t *params, thaw_note_fn note,
               void *ud, json_t **result)
{
    thaw_client_t c;
    int r = thaw_client_open(&c, cli->socket);
    if (r) {
        json_decref(params);
        return r;
    }
    r = thaw_call(&c, method, params, note, ud, result);
    thaw_client_close(&c);
    return r;
}

void thaw_print_json(json_t *v)
{
    json_dumpf(v, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
}

bool thaw_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            return false;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return true;
    }
    return false;
}
