/* SPDX-License-Identifier: Apache-2.0 */
/*
 * thawd's command line and embedded defaults (options.c), used by main.c.
 * Not part of rpc/'s library: only the thawd program includes it.
 */
#ifndef THAW_RPC_THAWD_H
#define THAW_RPC_THAWD_H

#include <stdbool.h>

#include "pool/pool.h"
#include "rpc/rpc.h"

typedef struct thawd_opts {
    rpc_config_t rpc;
    pool_config_t pool;
    char socket_path[108];
    char store_dir[1024];
    char agent_path[1024];
    char vm_kernel[1024]; /* the default vm template's guest ("" = none found) */
    char vm_initrd[1024];
    unsigned threads; /* libuv worker threads (UV_THREADPOOL_SIZE) */
    bool enable_process_tier;
    bool no_default_templates;
} thawd_opts_t;

/*
 * Parse argv over the embedded defaults: socket /run/thaw/thaw.sock as root,
 * $XDG_RUNTIME_DIR/thaw.sock otherwise (THAW_SOCKET and --socket override);
 * store /var/lib/thaw as root, $XDG_STATE_HOME/thaw (~/.local/state/thaw)
 * otherwise.  Returns 0, 1 when --help/--version printed, or -EINVAL after
 * printing the problem.
 */
int thawd_parse_opts(int argc, char **argv, thawd_opts_t *o);

#endif
