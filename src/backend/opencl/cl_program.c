/* clformer: kernel sources (embedded or read from cl_kernels/) and program builds with the on-disk
 * binary cache. Cache key: hash of the source, the build options, the device name and version, the
 * driver version, the platform version and clformer's version; files are written to a temporary
 * name, flushed to disk and renamed, so a concurrent reader never sees half a binary. Each entry
 * starts with a header (magic, format version, payload length, payload checksum); an entry that is
 * not a regular file or does not match its header is never handed to the driver: the program is
 * compiled from source and the entry rewritten. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/opencl/cl_internal.h"

/* generated from the cl_kernels directory by tools/embed_kernels.cmake */
struct cf_embedded_kernel {
    const char *name;
    const char *source;
};
extern const struct cf_embedded_kernel cf_embedded_kernels[];

int cf_cl_kernel_source(cf_cl_ctx *ctx, const char *file, char **src, size_t *len) {
    *src = NULL;
    *len = 0;
    const char *plus = strchr(file, '+');
    if (plus) { /* "a.cl+b.cl": the two texts one after the other, each counting its own lines */
        char first[256];
        const size_t fl = (size_t)(plus - file);
        if (fl >= sizeof first) return CF_ERR_INVALID;
        memcpy(first, file, fl);
        first[fl] = 0;
        char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        CF_TRY(cf_cl_kernel_source(ctx, first, &a, &al));
        int rc = cf_cl_kernel_source(ctx, plus + 1, &b, &bl);
        static const char line[] = "\n#line 1\n";
        char *all = rc < 0 ? NULL : malloc(al + sizeof line - 1 + bl + 1);
        if (all) {
            memcpy(all, a, al);
            memcpy(all + al, line, sizeof line - 1);
            memcpy(all + al + sizeof line - 1, b, bl + 1);
            *src = all;
            *len = al + sizeof line - 1 + bl;
        } else if (rc >= 0) {
            rc = CF_ERR_NOMEM;
        }
        free(a);
        free(b);
        return rc;
    }
    if (!ctx->kernel_dir[0]) {
        for (const struct cf_embedded_kernel *k = cf_embedded_kernels; k->name; k++) {
            if (strcmp(k->name, file) != 0) continue;
            size_t n = strlen(k->source);
            *src = malloc(n + 1);
            if (!*src) return CF_ERR_NOMEM;
            memcpy(*src, k->source, n + 1);
            *len = n;
            return CF_OK;
        }
    }
    /* read from the directory: asked for, or the build did not embed the kernels */
    const char *dir = ctx->kernel_dir[0] ? ctx->kernel_dir : CF_KERNEL_DIR;
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int rc = cf_read_file(path, src, len);
    if (rc < 0)
        cf_cl_fail(ctx, "kernel source %s not readable; set CF_KERNEL_DIR to the cl_kernels "
                        "directory or rebuild with CF_EMBED_KERNELS=ON", path);
    return rc;
}

/* mkdir -p without error messages (the cache is optional: failures go to the debug log) */
static int quiet_mkdirs(const char *path) {
    char buf[1100];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        buf[i] = c;
    }
    return 0;
}

static int quiet_write_atomic(const char *path, const void *data, size_t len) {
    static unsigned counter = 0;
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(), counter++);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    /* an empty directory in place of the entry is removed; anything else there stays */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) rmdir(path);
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static uint64_t hash_str(const char *s, uint64_t h) { return cf_hash64(s, strlen(s) + 1, h); }

static void cache_path(cf_cl_ctx *ctx, const char *file, const char *src, size_t len,
                       const char *options, char *out, size_t out_len) {
    uint64_t h = cf_hash64(src, len, 0x636c666f726d6572ull);
    h = hash_str(file, h);
    h = hash_str(options, h);
    h = hash_str(ctx->dev.name, h);
    h = hash_str(ctx->dev.version, h);
    h = hash_str(ctx->dev.driver, h);
    h = hash_str(ctx->dev.platform_name, h);
    h = hash_str(ctx->dev.platform_version, h);
    h = hash_str(CF_VERSION_STRING, h);
    char stem[64];
    snprintf(stem, sizeof stem, "%s", file);
    char *dot = strrchr(stem, '.');
    if (dot) *dot = 0;
    snprintf(out, out_len, "%s/%s-%016llx.bin", ctx->cache_dir, stem, (unsigned long long)h);
}

/* Cache entry layout: a 32-byte header, then the driver's program binary.
 *   bytes 0..7   magic "CFPROGC\n"
 *   bytes 8..11  format version (CACHE_VERSION), little-endian
 *   bytes 12..15 zero
 *   bytes 16..23 payload length in bytes, little-endian
 *   bytes 24..31 cf_hash64 of the payload, little-endian */
#define CACHE_MAGIC "CFPROGC\n"
#define CACHE_VERSION 1u
#define CACHE_HEADER 32u

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint64_t payload_hash(const void *data, size_t len) {
    return cf_hash64(data, len, 0x70726f6763616368ull);
}

/* Read and validate a cache entry without touching anything but a regular file: opened
 * non-blocking (a FIFO never blocks the run), then checked with fstat; the header's magic, version
 * and length must match the file and the checksum the payload. 0 and the payload (caller frees)
 * when valid; -1 when missing (why ""); -1 with why set when present but unusable. */
static int read_entry(const char *path, char **data, size_t *len, char *why, size_t why_len) {
    *data = NULL;
    *len = 0;
    why[0] = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        if (errno != ENOENT) snprintf(why, why_len, "cannot be opened (%s)", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, why_len, "is not a regular file");
        close(fd);
        return -1;
    }
    if (st.st_size < (off_t)CACHE_HEADER + 1) {
        snprintf(why, why_len, "is too short (%lld bytes)", (long long)st.st_size);
        close(fd);
        return -1;
    }
    size_t total = (size_t)st.st_size;
    unsigned char *buf = malloc(total);
    size_t got = 0;
    while (buf && got < total) {
        ssize_t r = read(fd, buf + got, total - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf || got != total) {
        snprintf(why, why_len, buf ? "could not be read whole" : "does not fit in memory");
        free(buf);
        return -1;
    }
    uint64_t n = get_u64(buf + 16);
    if (memcmp(buf, CACHE_MAGIC, 8) != 0)
        snprintf(why, why_len, "has no clformer cache header");
    else if (get_u64(buf + 8) != CACHE_VERSION)
        snprintf(why, why_len, "has cache format %llu, not %u",
                 (unsigned long long)(get_u64(buf + 8)), CACHE_VERSION);
    else if (n != total - CACHE_HEADER)
        snprintf(why, why_len, "holds %zu bytes after its header, the header says %llu",
                 total - CACHE_HEADER, (unsigned long long)n);
    else if (payload_hash(buf + CACHE_HEADER, (size_t)n) != get_u64(buf + 24))
        snprintf(why, why_len, "fails its checksum");
    if (why[0]) {
        free(buf);
        return -1;
    }
    memmove(buf, buf + CACHE_HEADER, (size_t)n);
    *data = (char *)buf;
    *len = (size_t)n;
    return 0;
}

/* Try the cached binary; 1 = loaded and built, 0 = not usable (caller compiles the source). */
static int load_cached(cf_cl_ctx *ctx, const char *path, const char *options, cl_program *out) {
    char *bin = NULL, why[160];
    size_t len = 0;
    if (read_entry(path, &bin, &len, why, sizeof why) != 0) {
        if (why[0]) CF_DEBUG("program cache %s %s; compiling from source", path, why);
        return 0;
    }
    const unsigned char *bins[1] = {(const unsigned char *)bin};
    cl_int status = CL_SUCCESS, err = CL_SUCCESS;
    cl_program prog = clCreateProgramWithBinary(ctx->context, 1, &ctx->dev.device, &len, bins,
                                                &status, &err);
    free(bin);
    if (err != CL_SUCCESS || status != CL_SUCCESS) {
        CF_DEBUG("program cache %s unusable (%s); compiling from source", path,
                 cf_cl_errstr(err != CL_SUCCESS ? err : status));
        if (prog) clReleaseProgram(prog);
        return 0;
    }
    err = clBuildProgram(prog, 1, &ctx->dev.device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        CF_DEBUG("program cache %s did not build (%s); compiling from source", path,
                 cf_cl_errstr(err));
        clReleaseProgram(prog);
        return 0;
    }
    *out = prog;
    return 1;
}

static void store_cached(cf_cl_ctx *ctx, const char *path, cl_program prog) {
    /* check the directory first: fetching binaries can itself cost a compile (PoCL) */
    if (ctx->cache_writable == 0) {
        if (quiet_mkdirs(ctx->cache_dir) == 0 && access(ctx->cache_dir, W_OK) == 0) {
            ctx->cache_writable = 1;
        } else {
            ctx->cache_writable = -1;
            CF_DEBUG("program cache: %s is not writable (%s); kernels will be compiled again next "
                     "run (set CF_CACHE_DIR to a writable directory)",
                     ctx->cache_dir, strerror(errno));
        }
    }
    if (ctx->cache_writable < 0) return;
    size_t size = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS ||
        size == 0)
        return;
    unsigned char *entry = malloc(CACHE_HEADER + size);
    if (!entry) return;
    unsigned char *bin = entry + CACHE_HEADER;
    unsigned char *bins[1] = {bin};
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) == CL_SUCCESS) {
        memcpy(entry, CACHE_MAGIC, 8);
        put_u64(entry + 8, CACHE_VERSION);
        put_u64(entry + 16, size);
        put_u64(entry + 24, payload_hash(bin, size));
        if (quiet_write_atomic(path, entry, CACHE_HEADER + size) == 0)
            ctx->build.cache_writes++;
        else
            CF_DEBUG("program cache: cannot write %s (%s); kernels will be compiled again next "
                     "run", path, strerror(errno));
    }
    free(entry);
}

/* A failed build: one line naming the kernel file, the device and the first compiler error, then
 * (unless quiet) the whole build log. */
static void report_build_log(cf_cl_ctx *ctx, cl_program prog, const char *file,
                             const char *options, cl_int err) {
    size_t n = 0;
    clGetProgramBuildInfo(prog, ctx->dev.device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
    char *log = calloc(n + 1, 1);
    if (log) clGetProgramBuildInfo(prog, ctx->dev.device, CL_PROGRAM_BUILD_LOG, n, log, NULL);
    char first[200] = "see the build log";
    const char *e = log ? strstr(log, "error") : NULL;
    if (e) {
        const char *start = e;
        while (start > log && start[-1] != '\n') start--;
        size_t len = strcspn(start, "\n");
        if (len >= sizeof first) len = sizeof first - 1;
        memcpy(first, start, len);
        first[len] = 0;
    }
    cf_cl_fail(ctx, "cl_kernels/%s: kernel build failed on %s (%s, options '%s'): %s", file,
               ctx->dev.name, cf_cl_errstr(err), options, first);
    if (!log) return;
    int level = ctx->quiet_init ? CF_LOG_DEBUG : CF_LOG_ERROR;
    cf_log(level, "build log of cl_kernels/%s:", file);
    char *save = NULL;
    for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        cf_log(level, "  %s", line);
    free(log);
}

int cf_cl_build_program(cf_cl_ctx *ctx, const char *file, const char *options, cl_program *out) {
    *out = NULL;
    double t0 = cf_time_now();
#ifdef CF_FAULT_INJECTION
    if (cf_fault_build_hit()) {
        cf_cl_fail(ctx, "cl_kernels/%s: kernel build failed on %s (injected fault, CF_FAULT_BUILD)",
                   file, ctx->dev.name);
        return CF_ERR_BUILD;
    }
#endif
    char *src = NULL;
    size_t len = 0;
    CF_TRY(cf_cl_kernel_source(ctx, file, &src, &len));
    /* every program starts with cl_kernels/common.cl (embedded or from the same directory as the
     * file); the cache key below hashes the whole text, prelude included */
    if (strcmp(file, CF_CL_PRELUDE) != 0) {
        char *pre = NULL;
        size_t pre_len = 0;
        int rc = cf_cl_kernel_source(ctx, CF_CL_PRELUDE, &pre, &pre_len);
        if (rc < 0) {
            free(src);
            return rc;
        }
        static const char line[] = "\n#line 1\n"; /* compiler messages count the file's lines */
        char *all = malloc(pre_len + sizeof line - 1 + len + 1);
        if (!all) {
            free(pre);
            free(src);
            return CF_ERR_NOMEM;
        }
        memcpy(all, pre, pre_len);
        memcpy(all + pre_len, line, sizeof line - 1);
        memcpy(all + pre_len + sizeof line - 1, src, len + 1);
        len += pre_len + sizeof line - 1;
        free(pre);
        free(src);
        src = all;
    }
    char path[1400] = "";
    if (ctx->cache_dir[0]) {
        cache_path(ctx, file, src, len, options, path, sizeof path);
        if (load_cached(ctx, path, options, out)) {
            free(src);
            ctx->build.programs_from_cache++;
            ctx->build.build_seconds += cf_time_now() - t0;
            CF_DEBUG("cl_kernels/%s: loaded from the program cache %s", file, path);
            return CF_OK;
        }
    }
    cl_int err = CL_SUCCESS;
    const char *srcs[1] = {src};
    cl_program prog = clCreateProgramWithSource(ctx->context, 1, srcs, &len, &err);
    free(src);
    if (err != CL_SUCCESS) {
        cf_cl_fail(ctx, "cl_kernels/%s: clCreateProgramWithSource failed: %s", file,
                   cf_cl_errstr(err));
        return CF_ERR_BUILD;
    }
    err = clBuildProgram(prog, 1, &ctx->dev.device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        report_build_log(ctx, prog, file, options, err);
        clReleaseProgram(prog);
        return CF_ERR_BUILD;
    }
    ctx->build.programs_from_source++;
    if (path[0]) store_cached(ctx, path, prog);
    ctx->build.build_seconds += cf_time_now() - t0;
    CF_DEBUG("cl_kernels/%s: compiled in %.3f s (options '%s')", file, cf_time_now() - t0,
             options);
    *out = prog;
    return CF_OK;
}

size_t cf_cl_group_private_budget(const cf_cl_device_info *dev) {
    if (!(dev->type & CL_DEVICE_TYPE_CPU)) return SIZE_MAX;
    /* the driver's threads get the default stack: RLIMIT_STACK at start-up (glibc), 2 MiB when
     * unlimited; half of it leaves room for the driver's own frames */
    size_t stack = (size_t)2 << 20;
    struct rlimit rl;
    if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > 0)
        stack = (size_t)rl.rlim_cur;
    return stack / 2;
}

int cf_cl_kernel_fits(cf_cl_ctx *ctx, cl_kernel k, int dims, const size_t *local,
                      size_t private_bytes, char *why, size_t why_len) {
    why[0] = 0;
    size_t wg = 0, items = 1, max_items[3] = {0, 0, 0};
    cl_ulong lmem = 0, pmem = 0;
    cl_int err = clGetKernelWorkGroupInfo(k, ctx->dev.device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg,
                                          &wg, NULL);
    if (err == CL_SUCCESS)
        err = clGetKernelWorkGroupInfo(k, ctx->dev.device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof lmem,
                                       &lmem, NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(ctx->dev.device, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof max_items,
                              max_items, NULL);
    if (err != CL_SUCCESS) {
        snprintf(why, why_len, "the driver did not report the kernel's limits (%s)",
                 cf_cl_errstr(err));
        return CF_ERR_DEVICE;
    }
    /* optional: some drivers report 0 or nothing useful */
    if (clGetKernelWorkGroupInfo(k, ctx->dev.device, CL_KERNEL_PRIVATE_MEM_SIZE, sizeof pmem,
                                 &pmem, NULL) == CL_SUCCESS &&
        pmem > private_bytes)
        private_bytes = (size_t)pmem;
    for (int i = 0; i < dims && i < 3; i++) {
        items *= local[i];
        if (local[i] > max_items[i]) {
            snprintf(why, why_len, "local size %zu in dimension %d exceeds the device's maximum "
                     "work-item size %zu", local[i], i, max_items[i]);
            return 0;
        }
    }
    if (items > wg) {
        snprintf(why, why_len, "%zu work-items per group exceed the %zu the built kernel can run "
                 "(CL_KERNEL_WORK_GROUP_SIZE)", items, wg);
        return 0;
    }
    if (lmem > ctx->dev.local_mem) {
        snprintf(why, why_len, "it needs %llu bytes of local memory, the device has %llu",
                 (unsigned long long)lmem, (unsigned long long)ctx->dev.local_mem);
        return 0;
    }
    size_t budget = cf_cl_group_private_budget(&ctx->dev);
    if (budget != SIZE_MAX && private_bytes > 0 && items > budget / private_bytes) {
        snprintf(why, why_len, "%zu work-items with about %zu bytes of private state each exceed "
                 "the %zu bytes a work-group may keep on the stack of one host thread",
                 items, private_bytes, budget);
        return 0;
    }
    return 1;
}

int cf_cl_build_kernels(cf_cl_ctx *ctx, const char *file, const char *options, cl_program *program,
                        int n, const char *const names[], cl_kernel *const kernels[]) {
    CF_TRY(cf_cl_build_program(ctx, file, options, program));
    for (int i = 0; i < n; i++) {
        cl_int err = CL_SUCCESS;
        *kernels[i] = clCreateKernel(*program, names[i], &err);
        if (err != CL_SUCCESS) {
            *kernels[i] = NULL;
            cf_cl_fail(ctx, "cl_kernels/%s (%s): kernel %s not created: %s", file, options,
                       names[i], cf_cl_errstr(err));
            return CF_ERR_BUILD;
        }
    }
    return CF_OK;
}
