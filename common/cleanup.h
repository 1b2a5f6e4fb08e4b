/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Scope-bound release of locals (systemd, crun, minijail): declare with a
 * _cleanup_*_ attribute, initialise to NULL / -1 / THAW_MAPPING_NONE, and hand
 * ownership on with TAKE_PTR / TAKE_FD.  Every helper tolerates the "empty"
 * value, so a variable may be released on any path.
 */
#ifndef THAW_COMMON_CLEANUP_H
#define THAW_COMMON_CLEANUP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static inline void thaw__freep(void *p)
{
    free(*(void **)p);
}

static inline void thaw__closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno; /* close must not clobber the errno a caller reads */
        close(*fd);
        errno = saved;
    }
}

static inline void thaw__fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

/* A mapping that knows its length, so it can be unmapped from a cleanup. */
typedef struct thaw_mapping {
    void *addr;
    size_t len;
} thaw_mapping_t;

#define THAW_MAPPING_NONE ((thaw_mapping_t){.addr = MAP_FAILED, .len = 0})

static inline void thaw__munmapp(thaw_mapping_t *m)
{
    if (m->addr != MAP_FAILED && m->addr != NULL && m->len)
        munmap(m->addr, m->len);
}

#define _cleanup_(f)     __attribute__((cleanup(f)))
#define _cleanup_free_   _cleanup_(thaw__freep)
#define _cleanup_close_  _cleanup_(thaw__closep)
#define _cleanup_fclose_ _cleanup_(thaw__fclosep)
#define _cleanup_munmap_ _cleanup_(thaw__munmapp)

/* Return the pointer and leave NULL behind: ownership moves to the caller. */
#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _tp = (p);                                                                   \
        (p) = NULL;                                                                                \
        _tp;                                                                                       \
    })

/* Return the descriptor and leave -1 behind. */
#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int _tf = (fd);                                                                            \
        (fd) = -1;                                                                                 \
        _tf;                                                                                       \
    })

/* Return the mapping and leave THAW_MAPPING_NONE behind. */
#define TAKE_MAPPING(m)                                                                            \
    ({                                                                                             \
        thaw_mapping_t _tm = (m);                                                                  \
        (m) = THAW_MAPPING_NONE;                                                                   \
        _tm;                                                                                       \
    })

#define THAW_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
