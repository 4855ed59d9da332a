/* clformer: devices verified and chosen by measurement.
 *
 * Verification (`clformer devices --verify`): every op of the op case table (op_cases.h, forward
 * and backward) and one full training step of a small model run on a device and on the CPU
 * reference (the C backend with its portable GEMM kernel), and each op passes or fails with its
 * error. The result is cached per device and driver as JSON in <cache>/verify/; `--device auto`
 * never picks a device whose cached verification failed.
 *
 * Selection (`--device auto`): the first time a config shape runs on a set of devices, a few
 * training steps of that config are timed on every usable candidate (the CPU backend included) and
 * the fastest is used; the decision is cached per config shape, device and driver in
 * <cache>/select/. `--device auto:first` (or cf_backend_options.auto_first) keeps the older rule:
 * the first usable GPU, else the CPU backend. */
#ifndef CF_BACKEND_VERIFY_H
#define CF_BACKEND_VERIFY_H

#include <stdio.h>

#include "backend/backend.h"
#include "clformer/config.h"

/* What names a device for the caches: its backend kind, name, platform and driver, and the spec
 * that creates it now ("cpu", "opencl:P:D"). */
typedef struct {
    char spec[64];
    char kind[16];
    char device[256];
    char platform[256];
    char driver[256]; /* the C backend: its GEMM kernel ("native:avx512-12x32") */
    int device_type;  /* enum cf_device_type */
} cf_device_id;

/* The identity of a created backend. */
void cf_device_id_of(cf_backend *be, const char *spec, cf_device_id *out);

/* The usable devices: the C backend ("cpu") first, then every usable OpenCL device (GPUs and CPU
 * devices alike). *out is malloc'd; *n >= 1. opts give the C backend's GEMM (its "driver"). */
int cf_device_candidates(const cf_backend_options *opts, cf_device_id **out, int *n);

/* ---- verification -------------------------------------------------------------------------- */

typedef struct {
    int pass;          /* every op and the training step passed */
    int ops, ops_failed;
    int train_pass;
    char first_failure[256]; /* "<op> <case>: <error>" of the first failure, "" when none */
} cf_verify_summary;

/* Runs every op of the table and one training step on be against the CPU reference, printing one
 * line per op (and the training step) to report (NULL: nothing printed). When cache_dir is set the
 * result is written to <cache_dir>/verify/ (temp file + rename). Returns CF_OK when the
 * verification ran, pass or fail (see *out), or an error when it could not run. */
int cf_verify_device(cf_backend *be, const char *spec, const char *cache_dir, FILE *report,
                     cf_verify_summary *out);

/* The cached verification of a device: 1 passed, 0 failed (why receives the first failure), -1
 * never verified with this clformer version (or no cache). */
int cf_verify_cached(const char *cache_dir, const cf_device_id *id, char *why, size_t why_len);
/* The cache file of a device (whether it exists or not). */
void cf_verify_cache_path(const char *cache_dir, const cf_device_id *id, char *out, size_t len);

/* ---- selection ----------------------------------------------------------------------------- */

/* Creates the backend for spec: "auto" (or NULL) with a config measures (see above) unless
 * opts->auto_first; "auto" without a config (cfg NULL) or "auto:first" takes the first usable GPU,
 * else the CPU backend; both skip devices whose cached verification failed (one warning each).
 * Any other spec goes to cf_backend_create unchanged. */
int cf_backend_create_for(const char *spec, const cf_backend_options *opts, const cf_config *cfg,
                          cf_backend **out);

/* The auto path of cf_backend_create: *be was created by registry row `row` for "auto". CF_OK
 * when its cached verification did not fail; else one warning, *be destroyed and replaced by the
 * next usable device of that row whose verification did not fail (GPUs only unless
 * opts->auto_cpu_devices), or NULL and CF_ERR_NOT_FOUND when there is none. */
int cf_backend_auto_verified(const char *row, const cf_backend_options *opts, cf_backend **be);

/* `clformer devices`: the cached verifications and auto measurements (none: one line saying so). */
int cf_device_cache_report(const char *cache_dir, FILE *out);

#endif
