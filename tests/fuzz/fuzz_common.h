/* clformer: shared helpers of the libFuzzer targets in tests/fuzz (built with -DCF_FUZZ=ON, run by
 * tests/fuzz/run.sh): silence the library's log, and hand a loader that takes a path the input
 * as a file (an in-memory memfd, reached through /proc/self/fd). */
#ifndef CF_FUZZ_COMMON_H
#define CF_FUZZ_COMMON_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "clformer/common.h"

static inline void cf_fuzz_quiet(int level, const char *msg, void *user) {
    (void)level;
    (void)msg;
    (void)user;
}

/* Log silenced on the first call; the path of a file holding data (the same memfd every call). */
static inline const char *cf_fuzz_file(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        cf_log_set_callback(cf_fuzz_quiet, NULL);
        fd = memfd_create("cf_fuzz", 0);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) {
        perror("fuzz input file");
        abort();
    }
    return path;
}

/* A NUL-terminated copy (free it). */
static inline char *cf_fuzz_text(const uint8_t *data, size_t size) {
    cf_log_set_callback(cf_fuzz_quiet, NULL);
    char *s = malloc(size + 1);
    if (!s) abort();
    for (size_t i = 0; i < size; i++) s[i] = (char)data[i];
    s[size] = 0;
    return s;
}

#endif
