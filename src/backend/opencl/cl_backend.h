/* clformer: public entry points of the OpenCL backend beyond struct cf_backend_ops: creation and
 * device listing (the registry's row), and a narrow API for the OpenCL tests and the tuner
 * (tools/tune.c): GEMM path selection at run time, the GEMM parameter hook, build statistics.
 * Generic code (src/bench, src/cli, src/train, src/model) does not include this header: it uses
 * cf_backend_options, cf_be_info and the optional ops slots instead. */
#ifndef CF_CL_BACKEND_H
#define CF_CL_BACKEND_H

#include <stdio.h>

#include "backend/backend.h"

/* Print every OpenCL platform and device (index opencl:P:D, platform, name, type, compute units,
 * memory sizes, OpenCL C version, fp16/subgroup support, and whether clformer can use it and why
 * not). Returns CF_OK also when no platform exists (it says so). */
int cf_opencl_list_devices(FILE *out);
/* The registry's enumerate slot (cf_backend_reg.enumerate): every device of every platform as
 * opencl:P:D, usable or not; 0 and why when there is no platform. */
int cf_opencl_enumerate(const cf_backend_options *opts, cf_device_desc *out, int max, char *why,
                        size_t why_len);

/* The registry's "opencl" row: spec "auto" (best usable GPU; with opts->auto_cpu_devices CPU
 * devices too; none: one warning, CF_ERR_NOT_FOUND), "opencl", "opencl:P:D" or a device-name
 * substring. opts NULL = cf_backend_options_default(). */
int cf_backend_opencl_create(const char *spec, const cf_backend_options *opts, cf_backend **out);

/* Is this backend an OpenCL one (the functions below need one)? */
int cf_backend_is_opencl(const cf_backend *be);

/* GEMM path: "auto" (CLBlast when compiled in, else native), "clblast" or "native".
 * cf_backend_options.gemm sets the initial choice. Returns CF_ERR_UNSUPPORTED, without
 * logging, when be is not an OpenCL backend; CF_ERR_UNSUPPORTED with a message for "clblast" in a
 * build without CLBlast; CF_ERR_INVALID for an unknown name. */
int cf_backend_opencl_set_gemm(cf_backend *be, const char *which);
/* The path in use: "clblast" or "native" (after a CLBlast failure, "native"). */
const char *cf_backend_opencl_gemm_path(cf_backend *be);
/* The register-blocked kernel at run time, as cf_backend_options.gemm_fast at creation: "auto"
 * (or NULL), "1"/"on" every plain product, "0"/"off" never. */
int cf_backend_opencl_set_gemm_fast(cf_backend *be, const char *mode);

/* Parameters of the native GEMM kernel for one shape. The kernel is built once per distinct set. */
typedef struct cf_cl_gemm_params {
    int tile;           /* work-group side TS: the group is TS x TS work-items (8 or 16) */
    int wpt;            /* outputs per work-item per dimension; a group covers (TS*WPT)^2 of C */
    int tk;             /* K slice staged in local memory per iteration */
    const char *source; /* where the choice came from: "rule", "tuning", ... (static string) */
    int vw;             /* vector width of the global loads (1, 2, 4, 8); a tuner that leaves it 0
                         * gets 1 */
    int pad;            /* floats of padding per local-memory row (0..8; the rule uses 1) */
    int path;           /* enum cf_cl_gemm_mode: CLBlast or native for this shape when the GEMM
                         * mode is auto (a tuning file's measured choice); 0 = no preference */
} cf_cl_gemm_params;

/* The built-in rule (used when no tuner answers): 8x8 work-groups when both M and N are below 256,
 * else 16x16 (8x8 also when the device cannot run 256-item groups); WPT 8 for 16x16 groups once
 * M*N >= 2^21, else 4; TK 16. */
void cf_cl_gemm_rule(int M, int N, int K, int max_group, cf_cl_gemm_params *out);

/* Tuning hook: when set, called for every new GEMM shape before the rule; return 1 and fill *out to
 * override (the values are validated: tile*tile must fit the device's work-group limit, wpt in
 * 1..16, tk in 1..64, vw 1/2/4/8 dividing tk and tile*wpt, pad 0..8, local memory within the
 * device's), 0 to let the rule decide. *out arrives with vw 1 and pad 1 filled in. device is the
 * device name. A tuning file (configs/tuning/, see docs/tuning.md) installs such a hook at
 * creation; setting another replaces it. */
typedef int (*cf_cl_gemm_tuner_fn)(void *user, const char *device, int M, int N, int K, int ta,
                                   int tb, cf_cl_gemm_params *out);
int cf_backend_opencl_set_gemm_tuner(cf_backend *be, cf_cl_gemm_tuner_fn fn, void *user);

/* Native GEMM parameters that the backend chose for a shape (as cf_cl_gemm_params_lookup would). */
int cf_backend_opencl_gemm_params(cf_backend *be, int M, int N, int K, int ta, int tb,
                                  cf_cl_gemm_params *out);

/* Program build statistics since creation (for the start-up measurement and the cache test). */
typedef struct cf_cl_build_stats {
    int programs_from_source; /* compiled from OpenCL C */
    int programs_from_cache;  /* loaded from the on-disk binary cache */
    int cache_writes;         /* binaries written to the cache */
    double build_seconds;     /* wall time spent creating programs (both kinds) */
} cf_cl_build_stats;
int cf_backend_opencl_build_stats(cf_backend *be, cf_cl_build_stats *out);

#endif
