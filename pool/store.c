// SPDX-License-Identifier: Apache-2.0
/*
 * The template store on disk:
 *   <store>/.thaw-store                    marks an initialised store
 *   <store>/templates/<name>/template.conf the definition (tpldef.c)
 *   <store>/templates/<name>/...           whatever the backend keeps (snapshot)
 * template.conf is written last and atomically (temporary name, fsync,
 * rename, fsync of the directory), so a directory without it is the leftover
 * of a create that did not finish and is removed on load.
 */
#include "pool/pool-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"

/*
 * Directories are search-only for others (0711): nobody can list the store,
 * but a sentry sandbox, whose processes run as an unprivileged host uid,
 * must be able to reach its template root beneath it.
 */
#define POOL_STORE_DIR_MODE 0711

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[POOL_PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -ENAMETOOLONG;
    for (char *s = buf + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int fsync_dir(const char *path)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return fsync(fd) < 0 ? -errno : 0;
}

int pool__store_init(pool_t *p, thaw_err_t *err)
{
    char path[POOL_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/templates", p->store_dir);
    int r = mkdir_p(path, POOL_STORE_DIR_MODE);
    if (r < 0)
        return thaw_err_sys(err, -r, "store %s: create", path);
    /* A store made by an older thawd may be tighter: open the way down. */
    chmod(p->store_dir, POOL_STORE_DIR_MODE);
    chmod(path, POOL_STORE_DIR_MODE);
    snprintf(path, sizeof(path), "%s/.thaw-store", p->store_dir);
    if (access(path, F_OK) == 0) {
        p->store_new = false;
        return 0;
    }
    p->store_new = true;
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return thaw_err_sys(err, errno, "store %s: create marker", path);
    static const char text[] = "thaw store version 1\n";
    if (write(fd, text, sizeof(text) - 1) != (ssize_t)sizeof(text) - 1)
        return thaw_err_sys(err, errno ? errno : EIO, "store %s: write marker", path);
    return 0;
}

int pool__store_tpl_dir(pool_t *p, const char *name, char *out, size_t n)
{
    if (snprintf(out, n, "%s/templates/%s", p->store_dir, name) >= (int)n)
        return -ENAMETOOLONG;
    return 0;
}

int pool__store_mkdir(pool_t *p, const char *name, thaw_err_t *err)
{
    char dir[POOL_PATH_MAX];
    if (pool__store_tpl_dir(p, name, dir, sizeof(dir)) < 0)
        return thaw_err_set(err, ENAMETOOLONG, "store path for '%s' too long", name);
    int r = mkdir_p(dir, POOL_STORE_DIR_MODE);
    if (r < 0)
        return thaw_err_sys(err, -r, "store: create %s", dir);
    return 0;
}

int pool__store_save(pool_t *p, const pool_tpl_def_t *def, thaw_err_t *err)
{
    char dir[POOL_PATH_MAX], tmp[POOL_PATH_MAX + 32], final[POOL_PATH_MAX + 32];
    if (pool__store_tpl_dir(p, def->name, dir, sizeof(dir)) < 0)
        return thaw_err_set(err, ENAMETOOLONG, "store path for '%s' too long", def->name);
    int r = mkdir_p(dir, POOL_STORE_DIR_MODE);
    if (r < 0)
        return thaw_err_sys(err, -r, "store: create %s", dir);
    snprintf(tmp, sizeof(tmp), "%s/.template.conf.tmp", dir);
    snprintf(final, sizeof(final), "%s/template.conf", dir);
    /* An explicit mode, not fopen's 0666 & ~umask: a definition names the
     * image thawd boots, so no one but thawd may write it. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return thaw_err_sys(err, errno, "store: create %s", tmp);
    (void)fchmod(fd, 0644); /* an old temporary may have been created wider */
    _cleanup_fclose_ FILE *f = fdopen(fd, "w");
    if (!f) {
        r = errno;
        close(fd);
        unlink(tmp);
        return thaw_err_sys(err, r, "store: create %s", tmp);
    }
    r = pool__tpl_def_write(f, def);
    if (r == 0 && fflush(f) != 0)
        r = -errno;
    if (r == 0 && fsync(fileno(f)) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        return thaw_err_sys(err, -r, "store: write %s", tmp);
    }
    if (rename(tmp, final) < 0) {
        r = errno;
        unlink(tmp);
        return thaw_err_sys(err, r, "store: rename %s", final);
    }
    fsync_dir(dir);
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

int pool__store_remove(pool_t *p, const char *name)
{
    char dir[POOL_PATH_MAX];
    if (pool__store_tpl_dir(p, name, dir, sizeof(dir)) < 0)
        return -ENAMETOOLONG;
    if (nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

/* Load one template directory; called by pool_load in pool.c through this helper. */
int pool__store_read_def(pool_t *p, const char *name, pool_tpl_def_t *def, thaw_err_t *err)
{
    char path[POOL_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/templates/%s/template.conf", p->store_dir, name);
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return thaw_err_sys(err, errno, "%s", path);
    int r = pool__tpl_def_read(f, path, def, err);
    if (r < 0)
        return r;
    if (strcmp(def->name, name))
        return thaw_err_set(err, EINVAL, "%s: name '%s' does not match its directory", path,
                            def->name);
    return 0;
}

/*
 * Names of template directories in the store, sorted.  Directories without
 * template.conf are leftovers of an interrupted create and are removed.
 */
int pool__store_list(pool_t *p, char ***names, size_t *n, thaw_err_t *err)
{
    char path[POOL_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/templates", p->store_dir);
    struct dirent **ents = NULL;
    int cnt = scandir(path, &ents, NULL, alphasort);
    if (cnt < 0)
        return thaw_err_sys(err, errno, "store: list %s", path);
    char **out = calloc((size_t)cnt + 1, sizeof(char *));
    size_t k = 0;
    for (int i = 0; i < cnt; i++) {
        const char *nm = ents[i]->d_name;
        if (out && nm[0] != '.') {
            char conf[POOL_PATH_MAX * 2];
            snprintf(conf, sizeof(conf), "%s/%s/template.conf", path, nm);
            if (access(conf, F_OK) == 0) {
                out[k] = strdup(nm);
                if (out[k])
                    k++;
            } else if (pool__name_valid(nm)) {
                thaw_warn("pool", "store_leftover", "dir=%s/%s action=remove", path, nm);
                pool__store_remove(p, nm);
            }
        }
        free(ents[i]);
    }
    free(ents);
    if (!out)
        return thaw_err_set(err, ENOMEM, "store: out of memory");
    *names = out;
    *n = k;
    return 0;
}
