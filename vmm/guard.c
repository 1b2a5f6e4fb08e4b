// SPDX-License-Identifier: Apache-2.0
/*
 * Guest memory touched by host threads (the event thread's device work, the
 * vCPU threads' exit handlers, vmm_snapshot's caller), guarded.  Guest RAM
 * restored by snapshot/'s lazy engine can fail under our feet: a chunk that
 * fails its checksum is replaced by a mapping that raises SIGBUS, so a plain
 * load or store from a host thread would kill the whole process (thawd and
 * every sandbox in it).  Every such access therefore goes through the
 * helpers here, each of which arms a thread-local recovery point
 * (sigsetjmp) for exactly the guest bytes it copies; a process-wide SIGBUS
 * handler jumps back to it when the fault is on this thread, inside that
 * range, and otherwise passes the signal on to whatever disposition was
 * there before (the default one kills the process as it always did).
 *
 * The armed region is one memcpy or one atomic load/store: no lock, no
 * allocation, no call that could be left half-done by the jump.  The handler
 * is installed with SA_NODEFER so that jumping out of it leaves the signal
 * mask as it was (sigsetjmp(.., 0) saves no mask and costs no syscall).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "common/log.h"
#include "snapshot/snap.h"
#include "vmm/internal.h"

typedef struct guard {
    sigjmp_buf jb;
    uintptr_t lo, hi; /* the guest bytes this access may fault on */
} guard_t;

/* initial-exec: reading it in the handler must not allocate (vmm is linked
 * statically into executables, where this model is always available). */
static __thread guard_t *tl_guard __attribute__((tls_model("initial-exec")));

static struct sigaction prev_sigbus;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

/* Not ours: behave as if our handler were not installed. */
static void pass_on(int sig, siginfo_t *si, void *uc)
{
    if (prev_sigbus.sa_flags & SA_SIGINFO) {
        if (prev_sigbus.sa_sigaction) {
            prev_sigbus.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (prev_sigbus.sa_handler == SIG_IGN) {
        if (si->si_code <= 0)
            return; /* a sent SIGBUS, ignored as before; a fault cannot be ignored */
    } else if (prev_sigbus.sa_handler != SIG_DFL) {
        prev_sigbus.sa_handler(sig);
        return;
    }
    /* Default action: restore it and let the signal come again.  A fault
     * re-executes the access on return and dies of it; a sent signal is
     * re-raised (not blocked: SA_NODEFER). */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, NULL);
    if (si->si_code <= 0)
        raise(SIGBUS);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    guard_t *g = tl_guard;
    uintptr_t a = (uintptr_t)si->si_addr;
    /* si_code > 0: raised by the kernel for a fault, not sent by someone. */
    if (g && si->si_code > 0 && a >= g->lo && a < g->hi) {
        tl_guard = NULL;
        siglongjmp(g->jb, 1);
    }
    pass_on(sig, si, uc);
}

/*
 * Install on_sigbus unless it is the current disposition.  Checked again at
 * every VM build: whoever replaced it meanwhile (cmocka swaps SIGBUS around
 * every test) is chained behind it from then on.  The old disposition is
 * read first so that it is in place before any SIGBUS can reach on_sigbus.
 */
void vmm__guard_init(void)
{
    pthread_mutex_lock(&install_lock);
    struct sigaction cur;
    if (sigaction(SIGBUS, NULL, &cur) == 0 &&
        !((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sigbus)) {
        prev_sigbus = cur;
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, NULL);
    }
    pthread_mutex_unlock(&install_lock);
}

typedef enum { OP_READ, OP_WRITE, OP_LOAD16, OP_STORE16, OP_TOUCH } op_t;

/*
 * The one place host code touches guest memory.  noinline: the recovery
 * point must live in a frame that is still there when the handler jumps.
 * Nothing read after the jump was changed after sigsetjmp.
 */
__attribute__((noinline)) static int guarded(op_t op, void *dst, const void *src, size_t len,
                                             const void *guest)
{
    guard_t g;
    g.lo = (uintptr_t)guest;
    g.hi = g.lo + len;
    if (sigsetjmp(g.jb, 0)) {
        /* the handler already disarmed */
        return -EFAULT;
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    tl_guard = &g;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    switch (op) {
    case OP_READ:
    case OP_WRITE:
        memcpy(dst, src, len);
        break;
    case OP_LOAD16:
        *(uint16_t *)dst = __atomic_load_n((const uint16_t *)src, __ATOMIC_ACQUIRE);
        break;
    case OP_STORE16:
        __atomic_store_n((uint16_t *)dst, *(const uint16_t *)src, __ATOMIC_RELEASE);
        break;
    case OP_TOUCH: {
        /* One load per page: faults in whatever is not there yet. */
        const volatile uint8_t *p = src;
        for (size_t off = 0; off < len; off += 4096)
            (void)p[off];
        if (len)
            (void)p[len - 1];
        break;
    }
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    tl_guard = NULL;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return 0;
}

int vmm__gmem_read(void *dst, const void *guest, size_t len)
{
    return guarded(OP_READ, dst, guest, len, guest);
}

int vmm__gmem_write(void *guest, const void *src, size_t len)
{
    return guarded(OP_WRITE, guest, src, len, guest);
}

int vmm__gmem_load16(const uint16_t *guest, uint16_t *out)
{
    return guarded(OP_LOAD16, out, guest, sizeof(*guest), guest);
}

int vmm__gmem_store16(uint16_t *guest, uint16_t v)
{
    return guarded(OP_STORE16, guest, &v, sizeof(v), guest);
}

int vmm__gmem_touch(const void *guest, size_t len)
{
    return guarded(OP_TOUCH, NULL, guest, len, guest);
}

bool vmm__mem_gone(vmm_t *vm)
{
    return vm->snap_mem && snap_mem_error(vm->snap_mem, NULL) < 0;
}

void vmm__mem_failed(vmm_t *vm, const char *who, const char *what)
{
    thaw_err_t e;
    if (vm->snap_mem && snap_mem_error(vm->snap_mem, &e) < 0) {
        /* Same wording as the lazy engine's callback: whichever comes first. */
        thaw_warn("vmm", "guest-memory-failed", "who=%s what=\"%s\" err=\"%s\"", who, what,
                  thaw_err_msg(&e));
        vmm__stop(vm, VMM_EXIT_INTERNAL_ERROR, 0, 0, "guest memory: %s", thaw_err_msg(&e));
    } else {
        thaw_warn("vmm", "guest-memory-failed", "who=%s what=\"%s\"", who, what);
        vmm__stop(vm, VMM_EXIT_INTERNAL_ERROR, 0, 0, "guest memory: %s: %s: unavailable", who,
                  what);
    }
}
