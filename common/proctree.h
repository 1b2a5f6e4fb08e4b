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
 * a pass finds none alive or max_passes ran out (1 ms apart, so that those
 * just killed have died); returns how many live ones were signalled (one
 * still dying may be counted again by a later pass).  Only complete while
 * root stays alive and is a child subreaper (PR_SET_CHILD_SUBREAPER): a
 * killed process's children then move up to root, where the next pass
 * finds them, and so does a daemon that left its session; without that
 * they go to init, out of reach.  root must be a process the caller pins
 * (its own child, or itself).  Every pid read from /proc is pinned with a
 * pidfd before it is used, so a reused pid is never signalled.  One pass
 * takes at most 256 children per process and goes 16 levels deep, holding
 * two descriptors per level; deeper or wider trees take more passes.
 */
unsigned thaw_kill_descendants(pid_t root, int max_passes);

#endif
