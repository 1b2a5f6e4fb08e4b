// SPDX-License-Identifier: Apache-2.0
/*
 * thawd's options and the embedded defaults that let `tools/up` start it
 * with no configuration at all.
 */
#include "rpc/thawd.h"

#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "thaw-config.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: thawd [options]\n"
               "Keeps pools of ready sandboxes and hands them out over JSON-RPC 2.0\n"
               "(one JSON object per line) on a Unix socket.\n\n"
               "  --socket PATH          socket (default /run/thaw/thaw.sock as root,\n"
               "                         $XDG_RUNTIME_DIR/thaw.sock otherwise; env THAW_SOCKET)\n"
               "  --store DIR            template store (default /var/lib/thaw as root,\n"
               "                         $XDG_STATE_HOME/thaw otherwise)\n"
               "  --agent PATH           the thaw-agent binary\n"
               "  --memory-budget MB     memory all sandboxes may reserve (default: half of RAM)\n"
               "  --max-sandboxes N      global cap on live sandboxes (default 256)\n"
               "  --refill-threads N     sandboxes made at once in the background (default 2)\n"
               "  --health-interval MS   how often ready sandboxes are checked (default 500)\n"
               "  --threads N            worker threads for blocking requests (default 64)\n"
               "  --max-message BYTES    request line cap (default 8 MiB)\n"
               "  --max-inflight N       requests in flight per connection (default 64)\n"
               "  --max-inflight-per-uid N  blocking requests in flight per uid, over all its\n"
               "                         connections (default 3/4 of --threads; 0 = no cap)\n"
               "  --max-exec-ms MS       cap on an exec's timeout (default 300000)\n"
               "  --max-output BYTES     cap on an exec's kept output (default 16 MiB)\n"
               "  --max-file BYTES       cap on put/get file size (default 4 MiB)\n"
               "  --max-lease S          cap on an acquire lease (default 3600)\n"
               "  --allow-uid UID|NAME   allow this uid (repeatable; default: anyone who can\n"
               "                         open the socket, which is mode 0660)\n"
               "  --allow-gid GID|NAME   allow this primary gid (repeatable)\n"
               "  --admin-uid UID|NAME   may also create/delete templates and configure pools\n"
               "                         (root and thawd's own uid always may; repeatable)\n"
               "  --admin-gid GID|NAME   the same for a primary gid (repeatable)\n"
               "  --vm-kernel PATH       guest kernel of the default vm template (default:\n"
               "                         $THAW_GUEST_KERNEL, else guest/kernel/build.sh's cache)\n"
               "  --vm-initrd PATH       its initramfs (default: this build's guest initramfs)\n"
               "  --enable-process-tier  offer the 'process' tier (NO isolation: tests only)\n"
               "  --no-default-templates do not create the 'default' template\n"
               "  --log-level LEVEL      debug|info|warn|error (env THAW_LOG)\n"
               "  --help, --version\n");
}

static int parse_num(const char *opt, const char *s, unsigned long long max,
                     unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || v > max || s[0] == '-') {
        fprintf(stderr, "thawd: %s '%s': expected a number up to %llu\n", opt, s, max);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static void default_paths(thawd_opts_t *o)
{
    const char *env = getenv("THAW_SOCKET");
    if (env && env[0])
        snprintf(o->socket_path, sizeof(o->socket_path), "%s", env);
    else if (geteuid() == 0)
        snprintf(o->socket_path, sizeof(o->socket_path), "/run/thaw/thaw.sock");
    else if ((env = getenv("XDG_RUNTIME_DIR")) && env[0])
        snprintf(o->socket_path, sizeof(o->socket_path), "%s/thaw.sock", env);
    else
        snprintf(o->socket_path, sizeof(o->socket_path), "/tmp/thaw-%d.sock", (int)geteuid());

    if (geteuid() == 0)
        snprintf(o->store_dir, sizeof(o->store_dir), "/var/lib/thaw");
    else if ((env = getenv("XDG_STATE_HOME")) && env[0])
        snprintf(o->store_dir, sizeof(o->store_dir), "%s/thaw", env);
    else if ((env = getenv("HOME")) && env[0])
        snprintf(o->store_dir, sizeof(o->store_dir), "%s/.local/state/thaw", env);
    else
        snprintf(o->store_dir, sizeof(o->store_dir), "/tmp/thaw-%d-store", (int)geteuid());

    /* The guest for the default vm template: a kernel built by
     * guest/kernel/build.sh into its cache, and this build's initramfs. */
    if ((env = getenv("THAW_GUEST_KERNEL")) && env[0]) {
        snprintf(o->vm_kernel, sizeof(o->vm_kernel), "%s", env);
    } else {
        char pattern[1100];
        const char *cache = getenv("THAW_CACHE"), *xdg = getenv("XDG_CACHE_HOME");
        const char *home = getenv("HOME");
        if (cache && cache[0])
            snprintf(pattern, sizeof(pattern), "%s/kernel/*/bzImage", cache);
        else if (xdg && xdg[0])
            snprintf(pattern, sizeof(pattern), "%s/thaw/kernel/*/bzImage", xdg);
        else
            snprintf(pattern, sizeof(pattern), "%s/.cache/thaw/kernel/*/bzImage",
                     home && home[0] ? home : "/root");
        glob_t g;
        if (glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc > 0)
            snprintf(o->vm_kernel, sizeof(o->vm_kernel), "%s", g.gl_pathv[g.gl_pathc - 1]);
        globfree(&g);
    }
    snprintf(o->vm_initrd, sizeof(o->vm_initrd), "%s", THAW_GUEST_INITRAMFS_PATH);

    /* The installed agent if there is one, else the one from this build tree. */
    if (access(THAW_AGENT_INSTALL_PATH, X_OK) == 0)
        snprintf(o->agent_path, sizeof(o->agent_path), "%s", THAW_AGENT_INSTALL_PATH);
    else
        snprintf(o->agent_path, sizeof(o->agent_path), "%s", THAW_AGENT_BUILD_PATH);
}

static int parse_id(const char *opt, const char *s, bool gid, unsigned *out)
{
    unsigned long long v;
    if (s[0] >= '0' && s[0] <= '9')
        return parse_num(opt, s, UINT_MAX - 1, &v) < 0 ? -EINVAL : (*out = (unsigned)v, 0);
    if (gid) {
        struct group *g = getgrnam(s);
        if (g) {
            *out = g->gr_gid;
            return 0;
        }
    } else {
        struct passwd *p = getpwnam(s);
        if (p) {
            *out = p->pw_uid;
            return 0;
        }
    }
    fprintf(stderr, "thawd: %s '%s': no such %s\n", opt, s, gid ? "group" : "user");
    return -EINVAL;
}

enum {
    O_SOCKET = 256,
    O_STORE,
    O_AGENT,
    O_BUDGET,
    O_MAXSB,
    O_REFILL,
    O_HEALTH,
    O_THREADS,
    O_MAXMSG,
    O_INFLIGHT,
    O_INFLIGHT_UID,
    O_EXEC,
    O_OUTPUT,
    O_FILE,
    O_LEASE,
    O_UID,
    O_GID,
    O_ADMIN_UID,
    O_ADMIN_GID,
    O_PROCESS,
    O_VM_KERNEL,
    O_VM_INITRD,
    O_NODEFAULT,
    O_LOG,
    O_HELP,
    O_VERSION,
};

int thawd_parse_opts(int argc, char **argv, thawd_opts_t *o)
{
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, O_SOCKET},
        {"store", required_argument, NULL, O_STORE},
        {"agent", required_argument, NULL, O_AGENT},
        {"memory-budget", required_argument, NULL, O_BUDGET},
        {"max-sandboxes", required_argument, NULL, O_MAXSB},
        {"refill-threads", required_argument, NULL, O_REFILL},
        {"health-interval", required_argument, NULL, O_HEALTH},
        {"threads", required_argument, NULL, O_THREADS},
        {"max-message", required_argument, NULL, O_MAXMSG},
        {"max-inflight", required_argument, NULL, O_INFLIGHT},
        {"max-inflight-per-uid", required_argument, NULL, O_INFLIGHT_UID},
        {"max-exec-ms", required_argument, NULL, O_EXEC},
        {"max-output", required_argument, NULL, O_OUTPUT},
        {"max-file", required_argument, NULL, O_FILE},
        {"max-lease", required_argument, NULL, O_LEASE},
        {"allow-uid", required_argument, NULL, O_UID},
        {"allow-gid", required_argument, NULL, O_GID},
        {"admin-uid", required_argument, NULL, O_ADMIN_UID},
        {"admin-gid", required_argument, NULL, O_ADMIN_GID},
        {"enable-process-tier", no_argument, NULL, O_PROCESS},
        {"vm-kernel", required_argument, NULL, O_VM_KERNEL},
        {"vm-initrd", required_argument, NULL, O_VM_INITRD},
        {"no-default-templates", no_argument, NULL, O_NODEFAULT},
        {"log-level", required_argument, NULL, O_LOG},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    default_paths(o);
    o->threads = 64;
    bool per_uid_given = false;
    int c;
    unsigned long long v = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int r = 0;
        const char *name = optind > 0 && optind <= argc ? argv[optind - 1] : "option";
        switch (c) {
        case O_SOCKET:
            if (strlen(optarg) >= sizeof(o->socket_path)) {
                fprintf(stderr, "thawd: --socket '%s': longer than %zu bytes\n", optarg,
                        sizeof(o->socket_path) - 1);
                return -EINVAL;
            }
            snprintf(o->socket_path, sizeof(o->socket_path), "%s", optarg);
            break;
        case O_STORE:
            snprintf(o->store_dir, sizeof(o->store_dir), "%s", optarg);
            break;
        case O_AGENT:
            snprintf(o->agent_path, sizeof(o->agent_path), "%s", optarg);
            break;
        case O_BUDGET:
            r = parse_num(name, optarg, 1ull << 40, &v);
            o->pool.memory_budget_mb = v;
            break;
        case O_MAXSB:
            r = parse_num(name, optarg, 65536, &v);
            o->pool.max_sandboxes = (unsigned)v;
            break;
        case O_REFILL:
            r = parse_num(name, optarg, 64, &v);
            o->pool.refill_threads = (unsigned)v;
            break;
        case O_HEALTH:
            r = parse_num(name, optarg, 3600000, &v);
            o->pool.health_interval_ms = (unsigned)v;
            break;
        case O_THREADS:
            r = parse_num(name, optarg, 1024, &v); /* libuv's own cap */
            o->threads = v ? (unsigned)v : 1;
            break;
        case O_MAXMSG:
            r = parse_num(name, optarg, 1u << 30, &v);
            o->rpc.max_message = (uint32_t)v;
            break;
        case O_INFLIGHT:
            r = parse_num(name, optarg, 65536, &v);
            o->rpc.max_inflight = (unsigned)v;
            break;
        case O_INFLIGHT_UID:
            r = parse_num(name, optarg, 65536, &v);
            o->rpc.max_inflight_per_uid = (unsigned)v;
            per_uid_given = true;
            break;
        case O_EXEC:
            r = parse_num(name, optarg, 24ull * 3600 * 1000, &v);
            o->rpc.max_exec_ms = (uint32_t)v;
            break;
        case O_OUTPUT:
            r = parse_num(name, optarg, 1u << 30, &v);
            o->rpc.max_output = (uint32_t)v;
            break;
        case O_FILE:
            r = parse_num(name, optarg, 1u << 30, &v);
            o->rpc.max_file = (uint32_t)v;
            break;
        case O_LEASE:
            r = parse_num(name, optarg, 7ull * 24 * 3600, &v);
            o->rpc.max_lease_s = (uint32_t)v;
            break;
        case O_UID:
        case O_GID:
        case O_ADMIN_UID:
        case O_ADMIN_GID: {
            bool gid = c == O_GID || c == O_ADMIN_GID;
            bool admin = c == O_ADMIN_UID || c == O_ADMIN_GID;
            unsigned *n = admin ? (gid ? &o->rpc.n_admin_gids : &o->rpc.n_admin_uids)
                                : (gid ? &o->rpc.n_allowed_gids : &o->rpc.n_allowed_uids);
            unsigned *ids = admin ? (gid ? o->rpc.admin_gids : o->rpc.admin_uids)
                                  : (gid ? o->rpc.allowed_gids : o->rpc.allowed_uids);
            unsigned id;
            if (*n >= RPC_MAX_ALLOWED) {
                fprintf(stderr, "thawd: at most %d of %s\n", RPC_MAX_ALLOWED, name);
                return -EINVAL;
            }
            r = parse_id(name, optarg, gid, &id);
            if (r == 0)
                ids[(*n)++] = id;
            break;
        }
        case O_PROCESS:
            o->enable_process_tier = true;
            break;
        case O_VM_KERNEL:
            snprintf(o->vm_kernel, sizeof(o->vm_kernel), "%s", optarg);
            break;
        case O_VM_INITRD:
            snprintf(o->vm_initrd, sizeof(o->vm_initrd), "%s", optarg);
            break;
        case O_NODEFAULT:
            o->no_default_templates = true;
            break;
        case O_LOG: {
            thaw_log_level_t lvl;
            if (thaw_log_parse_level(optarg, &lvl) < 0) {
                fprintf(stderr, "thawd: --log-level '%s': expected debug|info|warn|error\n",
                        optarg);
                return -EINVAL;
            }
            thaw_log_set_level(lvl);
            break;
        }
        case O_HELP:
            usage(stdout);
            return 1;
        case O_VERSION:
            printf("thawd %s\n", THAW_VERSION);
            return 1;
        default:
            fprintf(stderr, "thawd: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return -EINVAL;
        }
        if (r < 0)
            return r;
    }
    if (optind < argc) {
        fprintf(stderr, "thawd: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    /*
     * Three quarters of the worker threads: one uid alone still gets most of
     * the pool, but never all of it, so while one uid holds long execs on
     * many connections a quarter of the threads stays free for everyone
     * else.  (Several uids together can still fill the pool; then queued
     * work is handed out one uid at a time, see rpc/uidtable.c.)
     */
    if (!per_uid_given)
        o->rpc.max_inflight_per_uid = o->threads * 3 / 4 ? o->threads * 3 / 4 : 1;
    o->rpc.threads = o->threads;
    o->rpc.socket_path = o->socket_path;
    o->rpc.store_dir = o->store_dir;
    o->pool.store_dir = o->store_dir;
    return 0;
}
