/* SPDX-License-Identifier: Apache-2.0 */
/*
 * thaw tune (tools/thaw-tune.c): the subcommand's entry point, registered
 * in tools/thaw.c.
 */
#ifndef THAW_TOOLS_THAW_TUNE_H
#define THAW_TOOLS_THAW_TUNE_H

#include "tools/thaw-client.h"

int thaw_cmd_tune(const thaw_cli_t *cli, int argc, char **argv);

#endif
