// SPDX-License-Identifier: Apache-2.0
/* Helpers shared by the test binaries; see testlib.h. */
#include "testlib.h"

#include <dirent.h>

int thaw_test_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}
