// SPDX-License-Identifier: Apache-2.0
/*
 * The parts of thaw-agent that touch the system as a whole: PID 1 set-up in
 * a microVM (file systems, hostname), THAW (entropy and wall clock after a
 * restore), QUIESCE before a snapshot, and SHUTDOWN.  Only vm mode changes
 * system state: a sentry or test agent shares the host's kernel, where
 * mounting, reseeding or setting the clock would reach far beyond the
 * sandbox.
 */
#include "guest/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void mount_one(const char *src, const char *dst, const char *type, unsigned long flags,
                      const char *data)
{
    mkdir(dst, 0755);
    if (mount(src, dst, type, flags, data) < 0 && errno != EBUSY)
        fprintf(stderr, "thaw-agent: mount %s on %s: %s\n", type, dst, strerror(errno));
}

int agent__pid1_setup(agent_t *a)
{
    if (a->mode != AGENT_MODE_VM)
        return 0;
    const unsigned long nosuid = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    mount_one("proc", "/proc", "proc", nosuid, NULL);
    mount_one("sysfs", "/sys", "sysfs", nosuid, NULL);
    mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    mount_one("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666");
    mount_one("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    mount_one("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    mount_one("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
    /* devtmpfs has no /dev/fd or /dev/std*; shells and python expect them */
    symlink("/proc/self/fd", "/dev/fd");
    symlink("/proc/self/fd/0", "/dev/stdin");
    symlink("/proc/self/fd/1", "/dev/stdout");
    symlink("/proc/self/fd/2", "/dev/stderr");
    const char *host = getenv("THAW_HOSTNAME");
    if (!host)
        host = "thaw";
    if (sethostname(host, strlen(host)) < 0)
        fprintf(stderr, "thaw-agent: sethostname: %s\n", strerror(errno));
    return 0;
}

/* Credit the host's bytes to the kernel pool, then force a CRNG reseed so
 * the very next getrandom() in a clone differs from its siblings'. */
static int reseed(const uint8_t *entropy, size_t len, char *why, size_t whysz)
{
    int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whysz, "open /dev/urandom: %s", strerror(errno));
        return -errno;
    }
    int r = 0;
    if (len) {
        struct rand_pool_info *info = calloc(1, sizeof(*info) + len);
        if (!info) {
            close(fd);
            snprintf(why, whysz, "out of memory");
            return -ENOMEM;
        }
        info->entropy_count = (int)(len * 8);
        info->buf_size = (int)len;
        memcpy(info->buf, entropy, len);
        if (ioctl(fd, RNDADDENTROPY, info) < 0) {
            r = -errno;
            snprintf(why, whysz, "RNDADDENTROPY: %s", strerror(errno));
        }
        free(info);
    }
    if (r == 0 && ioctl(fd, RNDRESEEDCRNG) < 0) {
        r = -errno;
        snprintf(why, whysz, "RNDRESEEDCRNG: %s", strerror(errno));
    }
    close(fd);
    return r;
}

int agent__thaw(agent_t *a, uint32_t id, const uint8_t *p, size_t len)
{
    char why[AGENTWIRE_MAX_MSG];
    agentwire_thaw_t t;
    int r = agentwire_parse_thaw(p, len, &t, why, sizeof(why));
    if (r < 0)
        return agent__send_error(a, id, -r, "%s", why);
    bool applied = false;
    if (a->mode == AGENT_MODE_VM) {
        r = reseed(t.entropy, t.entropy_len, why, sizeof(why));
        if (r < 0)
            return agent__send_error(a, id, -r, "thaw: %s", why);
        if (t.wallclock_ns) {
            struct timespec ts = {.tv_sec = (time_t)(t.wallclock_ns / 1000000000ull),
                                  .tv_nsec = (long)(t.wallclock_ns % 1000000000ull)};
            if (clock_settime(CLOCK_REALTIME, &ts) < 0)
                return agent__send_error(a, id, errno, "thaw: clock_settime: %s", strerror(errno));
        }
        applied = true;
    }
    a->quiesced = false;
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_OK, id);
    agentwire_put_u32(&m, AGENTWIRE_T_APPLIED, applied);
    r = agent__send(a, &m);
    agentwire_msg_free(&m);
    return r;
}

int agent__quiesce(agent_t *a, uint32_t id)
{
    if (a->nprocs)
        return agent__send_error(a, id, EBUSY, "quiesce: %zu commands still running", a->nprocs);
    a->quiesced = true;
    sync();
    return agent__send_ok(a, id);
}

_Noreturn void agent__shutdown(agent_t *a)
{
    agent__procs_free(a);
    if (a->mode != AGENT_MODE_VM) {
        /* sentry: PID 1 leaving tears down the pid namespace; test: just exit */
        free(a->rbuf);
        exit(0);
    }
    kill(-1, SIGTERM);
    sync();
    kill(-1, SIGKILL);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    /* A reset, not a power-off: without ACPI the kernel can only halt on
     * power-off, while every VMM (QEMU -no-reboot, thaw's i8042) ends the
     * VM on a reset. */
    reboot(RB_AUTOBOOT);
    for (;;)
        pause();
}
