// SPDX-License-Identifier: Apache-2.0
/*
 * The default template root: a small directory that becomes the sandbox's
 * "/".  The host's /usr is bind-mounted over usr/ read-only at create time,
 * so python3 and the shared libraries come from the host without copying;
 * bin/ holds a static busybox and its applet links (so /bin/sh exists even
 * where /usr has none), .thaw/agent a copy of the agent, and etc/ the few
 * files programs expect.  Built once per template, read-only afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "sentry/sentry.h"

static const char *const applets[] = {
    "sh",       "ash",     "cat",   "echo",  "ls",   "cp",       "mv",    "rm",   "mkdir",  "rmdir",
    "sleep",    "true",    "false", "env",   "grep", "sed",      "awk",   "head", "tail",   "wc",
    "sort",     "uniq",    "tr",    "cut",   "ps",   "kill",     "id",    "pwd",  "printf", "test",
    "[",        "touch",   "date",  "uname", "find", "xargs",    "tee",   "yes",  "seq",    "expr",
    "basename", "dirname", "chmod", "ln",    "stat", "hostname", "which", "du",   "df",     "dd",
};

static int mk(const char *dir, const char *sub, mode_t mode, thaw_err_t *err)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", dir, sub);
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return thaw_err_sys(err, errno, "template: mkdir %s", p);
    if (chmod(p, mode) < 0)
        return thaw_err_sys(err, errno, "template: chmod %s", p);
    return 0;
}

static int link_to(const char *dir, const char *sub, const char *target, thaw_err_t *err)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", dir, sub);
    if (symlink(target, p) < 0 && errno != EEXIST)
        return thaw_err_sys(err, errno, "template: symlink %s", p);
    return 0;
}

static int put(const char *dir, const char *sub, const char *text, thaw_err_t *err)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", dir, sub);
    _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return thaw_err_sys(err, errno, "template: create %s", p);
    size_t n = strlen(text);
    if (write(fd, text, n) != (ssize_t)n)
        return thaw_err_sys(err, errno ? errno : EIO, "template: write %s", p);
    return 0;
}

static int copy(const char *src, const char *dir, const char *sub, thaw_err_t *err)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", dir, sub);
    _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return thaw_err_sys(err, errno, "template: open %s", src);
    struct stat st;
    if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode))
        return thaw_err_set(err, EINVAL, "template: %s is not a regular file", src);
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", p);
    _cleanup_close_ int outfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (outfd < 0)
        return thaw_err_sys(err, errno, "template: create %s", tmp);
    off_t off = 0;
    while (off < st.st_size) {
        ssize_t n = sendfile(outfd, in, &off, (size_t)(st.st_size - off));
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            unlink(tmp);
            return thaw_err_sys(err, e, "template: copy %s", src);
        }
    }
    if (fchmod(outfd, 0755) < 0 || rename(tmp, p) < 0) {
        int e = errno;
        unlink(tmp);
        return thaw_err_sys(err, e, "template: install %s", p);
    }
    return 0;
}

int sentry_template_build(const char *dir, const char *agent_exe, const char *busybox,
                          thaw_err_t *err)
{
    if (!dir || dir[0] != '/' || strlen(dir) > 3000)
        return thaw_err_set(err, EINVAL, "template: '%s' is not an absolute path", dir ? dir : "");
    if (!agent_exe)
        return thaw_err_set(err, EINVAL, "template: no agent binary given");
    if (!busybox) {
        busybox = access("/usr/bin/busybox", X_OK) == 0 ? "/usr/bin/busybox"
                  : access("/bin/busybox", X_OK) == 0   ? "/bin/busybox"
                                                        : NULL;
        if (!busybox)
            return thaw_err_set(err, ENOENT,
                                "template: busybox not found (install busybox-static)");
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return thaw_err_sys(err, errno, "template: mkdir %s", dir);
    /* The sandbox's root user is an unprivileged host uid: it must be able
     * to walk its own "/" (mkdtemp makes 0700 directories). */
    if (chmod(dir, 0755) < 0)
        return thaw_err_sys(err, errno, "template: chmod %s", dir);
    int rc;
    static const struct {
        const char *sub;
        mode_t mode;
    } dirs[] = {{"bin", 0755},   {"usr", 0755}, {"etc", 0755},  {"tmp", 01777},
                {"work", 0755},  {"dev", 0755}, {"proc", 0755}, {"root", 0700},
                {".thaw", 0755}, {"var", 0755}, {"sys", 0555}};
    for (size_t i = 0; i < THAW_ARRAY_SIZE(dirs); i++)
        if ((rc = mk(dir, dirs[i].sub, dirs[i].mode, err)) < 0)
            return rc;
    /* Debian merges / into /usr: the loader is found through these. */
    if ((rc = link_to(dir, "lib", "usr/lib", err)) < 0 ||
        (rc = link_to(dir, "lib64", "usr/lib64", err)) < 0 ||
        (rc = link_to(dir, "sbin", "usr/sbin", err)) < 0)
        return rc;
    if ((rc = copy(busybox, dir, "bin/busybox", err)) < 0 ||
        (rc = copy(agent_exe, dir, ".thaw/agent", err)) < 0)
        return rc;
    for (size_t i = 0; i < THAW_ARRAY_SIZE(applets); i++) {
        char sub[64];
        snprintf(sub, sizeof(sub), "bin/%s", applets[i]);
        if ((rc = link_to(dir, sub, "busybox", err)) < 0)
            return rc;
    }
    if ((rc = put(dir, "etc/passwd",
                  "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
                  err)) < 0 ||
        (rc = put(dir, "etc/group", "root:x:0:\nnogroup:x:65534:\n", err)) < 0 ||
        (rc = put(dir, "etc/hosts", "127.0.0.1 localhost sentry\n::1 localhost\n", err)) < 0 ||
        (rc = put(dir, "etc/hostname", "sentry\n", err)) < 0 ||
        (rc = put(dir, "etc/resolv.conf", "", err)) < 0 ||
        (rc = put(dir, "etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n", err)) <
            0)
        return rc;
    return 0;
}
