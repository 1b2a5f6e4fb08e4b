/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A process's descendants, through /proc/PID/task/TID/children: for tearing
 * down everything a workload started when nothing else (a pid namespace, a
 * cgroup) holds it.  Linux only, needs CONFIG_PROC_CHILDREN (every distro
 * kernel has it).
 */
#ifndef THAW_COMMON_PROCTREE_H
#define THAW_COMMON_PROCTREE_H

#include <sys/types.h>

/*
 * SIGKILL every descendant of root (not root itself), pass after pass until
 * a pass finds none or max_passes ran out (1 ms apart, so that those just
 * killed have died); returns how many signals were sent (one process may be
 * signalled again in a later pass while it is still dying).
 * Only complete while root stays alive and is a child subreaper
 * (PR_SET_CHILD_SUBREAPER): a killed process's children then move up to
 * root, where the next pass finds them, and so does a daemon that left its
 * session; without that they go to init, out of reach.  A pid read from
 * /proc may be reaped and reused before the signal, so each is pinned with
 * a pidfd and signalled only if it is still the child it was listed as.
 */
unsigned thaw_kill_descendants(pid_t root, int max_passes);

#endif
