/* clformer: status codes, logging and small shared helpers used by every module. */
#ifndef CLFORMER_COMMON_H
#define CLFORMER_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define CF_VERSION_STRING "0.1.0"

/* Every fallible function returns an int status: 0 ok, negative error. Library code never exits. */
enum cf_status {
    CF_OK = 0,
    CF_ERR_INVALID = -1,     /* bad argument, config value or user input */
    CF_ERR_IO = -2,          /* file could not be read or written */
    CF_ERR_NOMEM = -3,       /* host or device allocation failed */
    CF_ERR_DEVICE = -4,      /* a device/driver call failed */
    CF_ERR_BUILD = -5,       /* a kernel program failed to build */
    CF_ERR_UNSUPPORTED = -6, /* feature not compiled in or not supported by the device */
    CF_ERR_FORMAT = -7,      /* corrupt or mismatched file contents */
    CF_ERR_INTERRUPTED = -8, /* stopped by the user (Ctrl-C) */
    CF_ERR_NOT_FOUND = -9,   /* named thing (device, file, tensor) does not exist */
};

const char *cf_status_str(int status);

/* Logging: one function, levels, and a settable sink. Messages are one line, no trailing newline. */
enum cf_log_level { CF_LOG_ERROR = 0, CF_LOG_WARN = 1, CF_LOG_INFO = 2, CF_LOG_DEBUG = 3 };
typedef void (*cf_log_fn)(int level, const char *msg, void *user);

void cf_log_set_level(int level);
int cf_log_get_level(void);
void cf_log_set_callback(cf_log_fn fn, void *user); /* NULL restores the default (stderr) */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void cf_log(int level, const char *fmt, ...);

#define CF_ERROR(...) cf_log(CF_LOG_ERROR, __VA_ARGS__)
#define CF_WARN(...) cf_log(CF_LOG_WARN, __VA_ARGS__)
#define CF_INFO(...) cf_log(CF_LOG_INFO, __VA_ARGS__)
#define CF_DEBUG(...) cf_log(CF_LOG_DEBUG, __VA_ARGS__)

/* Propagate a negative status. */
#define CF_TRY(call)                                                                               \
    do {                                                                                           \
        int cf_try_rc_ = (call);                                                                   \
        if (cf_try_rc_ < 0) return cf_try_rc_;                                                     \
    } while (0)

/* Programmer errors only (never user input). */
#define CF_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) cf_assert_fail(#cond, __FILE__, __LINE__);                                    \
    } while (0)
void cf_assert_fail(const char *expr, const char *file, int line);

/* Monotonic wall clock in seconds. */
double cf_time_now(void);
/* CPU time of the calling thread in seconds (wall time where there is no per-thread clock). */
double cf_thread_seconds(void);

/* Peak rate of a compute loop, FLOP/s: body(iters) runs iters rounds of some instruction chain
 * on the calling thread and returns the FLOPs it did; after (may be NULL) runs on the same thread
 * once the body returns (to release per-thread state). The body is calibrated on one thread to
 * runs of about 50 ms, then run on every OpenMP thread at once for `seconds` (at least 3 runs),
 * keeping the best run: each thread's FLOPs count over its own CPU time, so on a shared machine
 * a thread that loses its core does not count the wait. Returns 0 when nothing could be timed. */
double cf_peak_flops(double seconds, double (*body)(long iters), void (*after)(void));

/* Deterministic RNG (xorshift64*), state is one uint64 so it can be checkpointed. */
typedef struct { uint64_t s; } cf_rng;
void cf_rng_seed(cf_rng *r, uint64_t seed);
uint32_t cf_rng_u32(cf_rng *r);
float cf_rng_uniform(cf_rng *r); /* [0,1) */
float cf_rng_normal(cf_rng *r);  /* N(0,1), Box-Muller */

/* 64-bit FNV-1a, used for cache keys and tokenizer identity. */
uint64_t cf_hash64(const void *data, size_t n, uint64_t seed);

/* Read a whole file (NUL-terminated for convenience; *len excludes the NUL). */
int cf_read_file(const char *path, char **data, size_t *len);
/* Write a file atomically: temp name, fsync, rename. */
int cf_write_file_atomic(const char *path, const void *data, size_t len);
/* mkdir -p */
int cf_mkdirs(const char *path);

/* Ctrl-C: set by the SIGINT handler, polled by long loops. */
void cf_install_sigint_handler(void);
int cf_interrupted(void);
void cf_clear_interrupt(void);
/* Under a launcher that forwards our output through pipes (mpirun), the launcher stops reading
 * them once it starts tearing the job down after Ctrl-C, and a write to a full pipe would block
 * until its kill timer fires. With this on, the signal handler makes stdout and stderr
 * non-blocking, so the interrupted run reaches its checkpoint instead of hanging in a write. */
void cf_set_interrupt_unblocks_output(int on);

/* Peak resident set size of this process in bytes (from getrusage). */
size_t cf_peak_rss_bytes(void);

#endif
