// SPDX-License-Identifier: Apache-2.0
/*
 * thawd: parse options, open the store, register the tiers this build and
 * this host can run (and the reasons for those they cannot), reload the
 * templates, create the default template on first start, then serve
 * JSON-RPC until SIGTERM/SIGINT.  Shutdown releases every sandbox and keeps
 * the store.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "pool/backends.h"
#include "rpc/thawd.h"

/* What this host's KVM means for the vm tier (a note for server.info), and
 * why the tier is missing when this build has no vmm/. */
static void vm_reason(char *why, size_t n, char *note, size_t nn)
{
    note[0] = '\0';
    if (access("/dev/kvm", R_OK | W_OK) < 0)
        snprintf(note, nn, "no usable /dev/kvm: %s", strerror(errno));
    else if (access("/sys/module/kvm_pvm", F_OK) == 0)
        snprintf(note, nn,
                 "KVM is PVM here: guest kernels run emulated (about 1.6M "
                 "instructions/s), so a Linux guest cannot boot at a useful speed; "
                 "freestanding guests run");
    snprintf(why, n, "vmm/ and snapshot/ were not built into this thawd%s%s",
             note[0] ? "; also: " : "", note);
}

static void log_progress(void *ud, const char *stage, const char *detail)
{
    thaw_info("thawd", "default_template", "stage=%s detail=\"%s\"", stage, detail ? detail : "");
    (void)ud;
}

static bool have_template(pool_t *pool, const char *name)
{
    char **names = NULL;
    size_t n = 0;
    bool have = false;
    if (pool_template_names(pool, &names, &n) >= 0) {
        for (size_t i = 0; i < n; i++)
            have |= !strcmp(names[i], name);
        pool_names_free(names, n);
    }
    return have;
}

/*
 * The default vm template ("vm"): the guest image booted, snapshotted and
 * pooled like any vm template, but only on hardware KVM, where a Linux guest
 * boots in well under a second.  Under PVM it could not (server.info says
 * so), and without the kernel and initramfs there is nothing to boot.
 */
static void create_default_vm(pool_t *pool, const thawd_opts_t *o, const char *vm_note)
{
    char why[512];
    if (have_template(pool, "vm"))
        return;
    if (pool_tier_available(pool, "vm", why, sizeof(why)) != 1 || vm_note[0]) {
        thaw_info("thawd", "no_default_vm_template", "reason=\"%s\"", vm_note[0] ? vm_note : why);
        return;
    }
    if (!o->vm_kernel[0] || access(o->vm_kernel, R_OK) < 0 || !o->vm_initrd[0] ||
        access(o->vm_initrd, R_OK) < 0) {
        thaw_info("thawd", "no_default_vm_template",
                  "reason=\"no guest image: kernel '%s', initramfs '%s' (guest/kernel/build.sh "
                  "builds the kernel; --vm-kernel/--vm-initrd)\"",
                  o->vm_kernel, o->vm_initrd);
        return;
    }
    pool_tpl_def_t def;
    pool_tpl_def_init(&def);
    snprintf(def.name, sizeof(def.name), "vm");
    snprintf(def.tier, sizeof(def.tier), "vm");
    snprintf(def.image, sizeof(def.image), "%s", o->vm_kernel);
    snprintf(def.initrd, sizeof(def.initrd), "%s", o->vm_initrd);
    thaw_err_t err = {0};
    if (pool_template_create(pool, &def, log_progress, NULL, &err) < 0)
        thaw_error("thawd", "default_vm_template_failed", "msg=\"%s\"", thaw_err_msg(&err));
}

static void create_defaults(pool_t *pool)
{
    char why[512];
    if (have_template(pool, "default"))
        return;
    if (pool_tier_available(pool, "sentry", why, sizeof(why)) != 1) {
        thaw_warn("thawd", "no_default_template", "reason=\"sentry tier unavailable: %s\"", why);
        return;
    }
    pool_tpl_def_t def;
    pool_tpl_def_init(&def);
    snprintf(def.name, sizeof(def.name), "default");
    snprintf(def.tier, sizeof(def.tier), "sentry");
    def.min_ready = 2;
    thaw_err_t err = {0};
    if (pool_template_create(pool, &def, log_progress, NULL, &err) < 0)
        thaw_error("thawd", "default_template_failed", "msg=\"%s\"", thaw_err_msg(&err));
}

int main(int argc, char **argv)
{
    thawd_opts_t o;
    int r = thawd_parse_opts(argc, argv, &o);
    if (r != 0)
        return r > 0 ? 0 : 2;
    /* Blocking requests run on libuv's pool; size it before the loop uses it. */
    char nthreads[16];
    snprintf(nthreads, sizeof(nthreads), "%u", o.threads);
    setenv("UV_THREADPOOL_SIZE", nthreads, 1);
    /* A client that vanishes must not kill thawd with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);

    thaw_err_t err = {0};
    pool_t *pool = NULL;
    if (pool_new(&o.pool, &pool, &err) < 0) {
        fprintf(stderr, "thawd: %s\n", thaw_err_msg(&err));
        return 1;
    }

    pool_process_backend_t proc = {.agent_path = o.agent_path, .enabled = o.enable_process_tier};
#ifdef THAW_HAVE_SENTRY
    pool_sentry_backend_t *sentry = pool_sentry_backend_new(o.agent_path);
    if (sentry)
        pool_add_backend(pool, &pool_sentry_ops, sentry);
#else
    pool_unavailable_backend_t sentry_un;
    pool_unavailable_init(&sentry_un, "sentry", "sentry/ (issue #8) was not built into this thawd");
    pool_add_backend(pool, &sentry_un.ops, &sentry_un);
#endif
    char why[512], note[256];
    vm_reason(why, sizeof(why), note, sizeof(note));
#ifdef THAW_HAVE_VM
    pool_add_backend(pool, &pool_vm_ops, NULL);
#else
    pool_unavailable_backend_t vm_un;
    pool_unavailable_init(&vm_un, "vm", why);
    pool_add_backend(pool, &vm_un.ops, &vm_un);
#endif
    pool_add_backend(pool, &pool_process_ops, &proc);

    int loaded = pool_load(pool, &err);
    if (loaded < 0)
        thaw_warn("thawd", "store_load_failed", "msg=\"%s\"", thaw_err_msg(&err));
    if (!o.no_default_templates) {
        create_defaults(pool);
        create_default_vm(pool, &o, note);
    }

    o.rpc.vm_note = note;
    rpc_server_t *srv = NULL;
    if (rpc_server_new(&o.rpc, pool, &srv, &err) < 0) {
        fprintf(stderr, "thawd: %s\n", thaw_err_msg(&err));
        pool_free(pool);
#ifdef THAW_HAVE_SENTRY
        pool_sentry_backend_free(sentry);
#endif
        return 1;
    }
    thaw_info("thawd", "ready", "socket=%s store=%s templates=%d pid=%d", o.socket_path,
              o.store_dir, loaded < 0 ? 0 : loaded, (int)getpid());
    rpc_server_run(srv);
    rpc_server_free(srv);
    pool_free(pool);
#ifdef THAW_HAVE_SENTRY
    pool_sentry_backend_free(sentry);
#endif
    thaw_info("thawd", "stopped", NULL);
    return 0;
}
