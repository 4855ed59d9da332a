/* clformer: status strings, logging, RNG, hashing, file helpers, Ctrl-C flag. */
#define _POSIX_C_SOURCE 200809L
#include "clformer/common.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

const char *cf_status_str(int status) {
    switch (status) {
    case CF_OK: return "ok";
    case CF_ERR_INVALID: return "invalid input";
    case CF_ERR_IO: return "i/o error";
    case CF_ERR_NOMEM: return "out of memory";
    case CF_ERR_DEVICE: return "device error";
    case CF_ERR_BUILD: return "kernel build failed";
    case CF_ERR_UNSUPPORTED: return "unsupported";
    case CF_ERR_FORMAT: return "corrupt or mismatched file";
    case CF_ERR_INTERRUPTED: return "interrupted";
    case CF_ERR_NOT_FOUND: return "not found";
    default: return "unknown error";
    }
}

static int g_log_level = CF_LOG_INFO;
static cf_log_fn g_log_fn = NULL;
static void *g_log_user = NULL;

void cf_log_set_level(int level) { g_log_level = level; }
int cf_log_get_level(void) { return g_log_level; }
void cf_log_set_callback(cf_log_fn fn, void *user) {
    g_log_fn = fn;
    g_log_user = user;
}

void cf_log(int level, const char *fmt, ...) {
    if (level > g_log_level) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_log_fn) {
        g_log_fn(level, msg, g_log_user);
        return;
    }
    static const char *prefix[] = {"error: ", "warning: ", "", "debug: "};
    fprintf(stderr, "%s%s\n", prefix[level < 0 ? 0 : (level > 3 ? 3 : level)], msg);
}

void cf_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "clformer: internal assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

double cf_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double cf_thread_seconds(void) {
#ifdef CLOCK_THREAD_CPUTIME_ID
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0)
        return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#endif
    return cf_time_now();
}

double cf_peak_flops(double seconds, double (*body)(long iters), void (*after)(void)) {
    if (!(seconds > 0)) seconds = 0.3;
    const double per_run = seconds / 3.0 < 0.05 ? seconds / 3.0 : 0.05;
    long iters = 1 << 10;
    for (;;) {
        const double t0 = cf_thread_seconds();
        body(iters);
        const double t = cf_thread_seconds() - t0;
        if (after) after();
        if (t >= 0.01 || iters > (1L << 40)) {
            iters = (long)((double)iters * per_run / (t > 1e-9 ? t : 1e-9));
            break;
        }
        iters *= 2;
    }
    if (iters < 64) iters = 64;
    int runs = (int)(seconds / per_run + 0.5);
    if (runs < 3) runs = 3;
    double best = 0.0;
    for (int r = 0; r < runs; r++) {
        double rate = 0.0;
#ifdef _OPENMP
#pragma omp parallel reduction(+ : rate)
#endif
        {
            const double t0 = cf_thread_seconds();
            const double fl = body(iters);
            const double t = cf_thread_seconds() - t0;
            if (after) after();
            if (t > 0) rate += fl / t;
        }
        if (rate > best) best = rate;
    }
    /* more threads than processors would count one core's rate several times */
    const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
#ifdef _OPENMP
    const int nth = omp_get_max_threads();
#else
    const int nth = 1;
#endif
    if (ncpu > 0 && nth > ncpu) best *= (double)ncpu / nth;
    return best;
}

void cf_rng_seed(cf_rng *r, uint64_t seed) {
    /* splitmix64 scramble so small seeds give good states; never zero */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    r->s = z ? z : 0x2545F4914F6CDD1Dull;
}

uint32_t cf_rng_u32(cf_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (uint32_t)((r->s * 0x2545F4914F6CDD1Dull) >> 32);
}

float cf_rng_uniform(cf_rng *r) { return (float)(cf_rng_u32(r) >> 8) / 16777216.0f; }

float cf_rng_normal(cf_rng *r) {
    float u1 = cf_rng_uniform(r), u2 = cf_rng_uniform(r);
    if (u1 < 1e-12f) u1 = 1e-12f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.283185307179586f * u2);
}

uint64_t cf_hash64(const void *data, size_t n, uint64_t seed) {
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

int cf_read_file(const char *path, char **data, size_t *len) {
    *data = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        CF_ERROR("cannot open '%s': %s", path, strerror(errno));
        return CF_ERR_IO;
    }
    /* a directory opens fine on Linux and then reports a size of LONG_MAX; a FIFO never ends */
    struct stat sb;
    memset(&sb, 0, sizeof sb);
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        CF_ERROR("cannot read '%s': it is %s; give the path of a regular file", path,
                 S_ISDIR(sb.st_mode) ? "a directory" : "not a regular file");
        return CF_ERR_IO;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        CF_ERROR("cannot read '%s': not a regular file", path);
        return CF_ERR_IO;
    }
    long sz = ftell(f);
    if (sz < 0) {
        fclose(f);
        CF_ERROR("cannot read '%s': not a regular file", path);
        return CF_ERR_IO;
    }
    rewind(f);
    char *buf = malloc((size_t)sz + 1);
    if (!buf) {
        fclose(f);
        CF_ERROR("out of memory reading '%s' (%ld bytes)", path, sz);
        return CF_ERR_NOMEM;
    }
    size_t got = fread(buf, 1, (size_t)sz, f);
    fclose(f);
    if (got != (size_t)sz) {
        free(buf);
        CF_ERROR("short read on '%s'", path);
        return CF_ERR_IO;
    }
    buf[sz] = 0;
    *data = buf;
    if (len) *len = (size_t)sz;
    return CF_OK;
}

int cf_write_file_atomic(const char *path, const void *data, size_t len) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp) return CF_ERR_NOMEM;
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        CF_ERROR("cannot create '%s': %s", tmp, strerror(errno));
        free(tmp);
        return CF_ERR_IO;
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            CF_ERROR("cannot write '%s': %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            free(tmp);
            return CF_ERR_IO;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        CF_ERROR("cannot flush '%s': %s", tmp, strerror(errno));
        unlink(tmp);
        free(tmp);
        return CF_ERR_IO;
    }
    if (rename(tmp, path) != 0) {
        CF_ERROR("cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return CF_ERR_IO;
    }
    free(tmp);
    return CF_OK;
}

int cf_mkdirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return CF_ERR_INVALID;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                CF_ERROR("cannot create directory '%s': %s", buf, strerror(errno));
                return CF_ERR_IO;
            }
            buf[i] = c;
        }
    }
    return CF_OK;
}

static volatile sig_atomic_t g_interrupted = 0;
static volatile sig_atomic_t g_unblock_output = 0;
static void on_sigint(int sig) {
    (void)sig;
    if (g_interrupted) _exit(130); /* second Ctrl-C: leave now */
    g_interrupted = 1;
    if (g_unblock_output) { /* fcntl is async-signal-safe */
        const int saved = errno;
        for (int fd = 1; fd <= 2; fd++) {
            const int fl = fcntl(fd, F_GETFL);
            if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        }
        errno = saved;
    }
}
void cf_set_interrupt_unblocks_output(int on) { g_unblock_output = on != 0; }
void cf_install_sigint_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}
int cf_interrupted(void) { return g_interrupted != 0; }
void cf_clear_interrupt(void) { g_interrupted = 0; }

size_t cf_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024u;
}
