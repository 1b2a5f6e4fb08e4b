/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the files of sentry/ share and nobody else sees: the sandbox and
 * supervisor structs, the pure path and network-policy helpers (unit-tested),
 * target-memory reads, cgroups, and the child's set-up plan.
 */
#ifndef THAW_SENTRY_INTERNAL_H
#define THAW_SENTRY_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "common/err.h"
#include "sentry/policy.h"
#include "sentry/sentry.h"

#define SENTRY_IDS_PER_SANDBOX 65536u

/* ---- paths (paths.c, pure) ---------------------------------------------- */

/* Lexically normalise an absolute path: collapse "//", ".", ".." (clamped at
 * "/"), drop a trailing "/".  Returns 0 or -EINVAL (relative) or
 * -ENAMETOOLONG. */
int sentry__path_normalize(const char *in, char *out, size_t outlen);
/* base (absolute) joined with rel (relative or absolute), normalised. */
int sentry__path_join(const char *base, const char *rel, char *out, size_t outlen);
/* true when path equals prefix or lies beneath it ("/" holds everything). */
bool sentry__path_under(const char *path, const char *prefix);
/* Rewrite a leading /proc/self or /proc/thread-self for a caller whose pid
 * and tid in the sandbox are given; other paths are copied.  Returns 0 or
 * -ENAMETOOLONG. */
int sentry__path_proc_self(const char *in, int nspid, int nstid, char *out, size_t outlen);

/* The areas a sandbox may write to and the paths it may not see. */
typedef struct sentry_areas {
    char writable[8][SENTRY_PATH_MAX];
    unsigned n_writable;
    char hidden[SENTRY_MAX_AREAS + 16][SENTRY_PATH_MAX];
    unsigned n_hidden;
    bool custom_hidden; /* the config added hidden paths */
} sentry_areas_t;

/* Fill the built-in areas plus the config's; -EINVAL naming a bad entry. */
int sentry__areas_init(sentry_areas_t *a, const sentry_config_t *cfg, thaw_err_t *err);
bool sentry__areas_hidden(const sentry_areas_t *a, const char *path);
bool sentry__areas_writable(const sentry_areas_t *a, const char *path);

/* ---- network allowlist (netpolicy.c, pure) ------------------------------ */

typedef struct sentry_net_rule {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* network byte order */
    unsigned prefix;  /* bits */
    int port;         /* -1 = any */
} sentry_net_rule_t;

typedef struct sentry_netpolicy {
    sentry_net_rule_t rules[SENTRY_MAX_NET];
    unsigned n;
} sentry_netpolicy_t;

/* Parse "ADDR[/PREFIX]:PORT" entries ("[v6]:port", port "*" = any). */
int sentry__net_parse(sentry_netpolicy_t *np, const char *const *entries, unsigned n,
                      thaw_err_t *err);
/* Decide on a destination.  Returns 1 allowed, 0 denied; AF_UNIX and
 * AF_UNSPEC are allowed (local to the sandbox), other families denied. */
int sentry__net_allowed(const sentry_netpolicy_t *np, const struct sockaddr *sa, socklen_t len);
/* "1.2.3.4:80" / "[::1]:80" / "unix" for logs. */
void sentry__net_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen);

/* ---- the ABI of brokered syscalls (syscalls.c) -------------------------- */

typedef enum sentry_kind {
    SENTRY_K_NONE = 0,
    SENTRY_K_OPEN,  /* resolved and opened by the supervisor, fd installed */
    SENTRY_K_EXEC,  /* checked, then continued */
    SENTRY_K_STAT,  /* read-only lookups: hidden check, then continued */
    SENTRY_K_WRITE, /* namespace changes: area check, then continued */
    SENTRY_K_NET,   /* destination check, then continued */
    SENTRY_K_ID,    /* identity changes: emulated */
} sentry_kind_t;

typedef struct sentry_sysinfo {
    sentry_kind_t kind;
    /* Argument indexes, -1 = none.  dirfd -1 with a path means AT_FDCWD. */
    int8_t dirfd, path, dirfd2, path2, flags, mode, atflags;
} sentry_sysinfo_t;

/* The layout of syscall nr, or NULL when the supervisor cannot broker it. */
const sentry_sysinfo_t *sentry__sysinfo(long nr);

/* ---- target memory (memread.c) ------------------------------------------ */

/* Read len bytes at addr of pid.  Returns 0 or -EFAULT/-ESRCH. */
int sentry__mem_read(pid_t pid, uint64_t addr, void *buf, size_t len);
/* Read a NUL-terminated string of at most size-1 bytes.  Returns its length,
 * -ENAMETOOLONG, or -EFAULT. */
int sentry__mem_read_str(pid_t pid, uint64_t addr, char *buf, size_t size);

/* ---- cgroups (cgroup.c) ------------------------------------------------- */

typedef struct sentry_cgroup {
    int version; /* 1 or 2; 0 = none created */
    unsigned n;
    char ctrl[3][16];
    char path[3][SENTRY_PATH_MAX];
} sentry_cgroup_t;

typedef struct sentry_limits {
    uint64_t memory_bytes;
    uint32_t pids_max, cpu_shares;
} sentry_limits_t;

int sentry__cgroup_create(sentry_cgroup_t *cg, const char *name, const sentry_limits_t *lim,
                          thaw_err_t *err);
int sentry__cgroup_attach(const sentry_cgroup_t *cg, pid_t pid, thaw_err_t *err);
/* Kill whatever is left and remove the directories (retrying while busy). */
void sentry__cgroup_destroy(sentry_cgroup_t *cg);
/* Remove the cgroups (and kill the sandboxes) of thawd processes that died
 * without destroying them; their names carry the owner's pid.  Returns how
 * many directories went. */
unsigned sentry__cgroup_sweep(void);

/* ---- the child between clone3 and exec (child.c) ------------------------ */

typedef struct sentry_plan {
    const char *root;
    char usr[SENTRY_PATH_MAX], tmp[SENTRY_PATH_MAX], work[SENTRY_PATH_MAX], dev[SENTRY_PATH_MAX],
        proc[SENTRY_PATH_MAX];
    char devnode[5][SENTRY_PATH_MAX];
    char tmp_opts[64], work_opts[64];
    unsigned long root_lock, usr_lock; /* MS_* flags the remounts must keep */
    const char *agent;
    char *argv[16];
    char *envp[8];
    char env_id[64];
    uint32_t nofile, nproc;
    bool keep_stderr;
    int sync_rd, sync_wr, agent_sock;
    const sentry_bpf_t *bpf;
} sentry_plan_t;

/* Messages the child writes on sync_wr. */
typedef struct sentry_child_msg {
    char tag; /* 'L' listener fd number in val; 'E' failure: step in val, errno */
    int val;
    int err;
} sentry_child_msg_t;

/* Runs in the child; never returns (exec or _exit). */
__attribute__((noreturn)) void sentry__child_run(const sentry_plan_t *plan);
/* Name of a child step number, for the parent's error message. */
const char *sentry__child_step(int step);

/* ---- supervisor and sandbox --------------------------------------------- */

struct sentry {
    sentry_supervisor_t *sup;
    uint32_t slot, gen;
    char id[32];
    pid_t pid;
    int pidfd, listener, rootfd, agent_fd;
    uint32_t host_uid;
    dev_t proc_dev; /* st_dev of the sandbox's /proc */
    bool registered, listener_dead;
    sentry_cgroup_t cg;
    sentry_areas_t areas;
    sentry_netpolicy_t net;
    /* Denial log rate limit: window start and lines in it. */
    uint64_t log_window_ns;
    unsigned log_lines, log_dropped;
};

struct sentry_supervisor {
    pthread_t thread;
    bool thread_started;
    int epfd, wakefd;
    pthread_mutex_t lock;
    uint32_t id_base, max;
    sentry_t **slots;
    uint32_t *gens;
    uint64_t next_id;
    sentry_policy_t policy;
    sentry_bpf_t bpf;
    char *names[SENTRY_NR_MAX];
    sentry_stats_t stats;
    uint32_t cur_fsid; /* fsuid/fsgid the supervisor thread holds now */
};

/* Take a free slot (its id range) for sb; -EAGAIN when full. */
int sentry__sup_reserve(sentry_supervisor_t *sup, sentry_t *sb);
void sentry__sup_release(sentry_supervisor_t *sup, sentry_t *sb);
/* Start serving sb->listener; stop (waits for a request in progress). */
int sentry__sup_register(sentry_supervisor_t *sup, sentry_t *sb, thaw_err_t *err);
void sentry__sup_unregister(sentry_supervisor_t *sup, sentry_t *sb);

/* Handle one notification of sb (handlers.c).  Called with sup->lock held. */
struct seccomp_notif;
struct seccomp_notif_resp;
void sentry__handle(sentry_supervisor_t *sup, sentry_t *sb, struct seccomp_notif *req,
                    struct seccomp_notif_resp *resp);

/* Log a denial, rate-limited per sandbox. */
void sentry__log_deny(sentry_supervisor_t *sup, sentry_t *sb, pid_t pid, long nr, int errnum,
                      const char *why, const char *detail);

#endif
