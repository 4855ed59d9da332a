/* clformer tests: helpers shared by the OpenCL tests: opening a device (with the skip rule),
 * paired CPU/OpenCL buffers holding the same data, and the normalised-error comparison.
 * Header-only (static inline) for the test_cl_* executables. */
#ifndef CF_TEST_CL_COMMON_H
#define CF_TEST_CL_COMMON_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* setenv, mkdtemp */
#endif
#include <CL/cl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/opencl/cl_backend.h"
#include "cli/cli_env.h"
#include "clformer/common.h"
#include "io/half.h"
#include "test_expect.h"

#define TCL_OK(call)                                                                               \
    do {                                                                                           \
        int tcl_rc_ = (call);                                                                      \
        if (tcl_rc_ < 0) {                                                                         \
            fprintf(stderr, "FAIL %s:%d: %s returned %d (%s)\n", __FILE__, __LINE__, #call,        \
                    tcl_rc_, cf_status_str(tcl_rc_));                                              \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Number of OpenCL devices on all platforms (0 when there is no driver). */
static inline int tcl_device_count(void) {
    cl_uint np = 0;
    if (clGetPlatformIDs(0, NULL, &np) != CL_SUCCESS || np == 0) return 0;
    cl_platform_id plats[16];
    if (np > 16) np = 16;
    clGetPlatformIDs(np, plats, NULL);
    int total = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) == CL_SUCCESS)
            total += (int)nd;
    }
    return total;
}

/* Exit status of a test that could not run: ctest reports it as skipped (SKIP_RETURN_CODE). */
#define TCL_SKIP 77

/* Exit status for "no OpenCL device": 77 (skipped, not passed) unless CF_REQUIRE_OPENCL=1 makes it
 * a failure. */
static inline int tcl_no_device(const char *test) {
    const char *req = getenv("CF_REQUIRE_OPENCL");
    if (req && atoi(req) != 0) {
        printf("FAIL %s: no OpenCL device, and CF_REQUIRE_OPENCL=1 (install PoCL: "
               "apt-get install pocl-opencl-icd)\n",
               test);
        return 1;
    }
    printf("SKIP %s: no OpenCL device present (set CF_REQUIRE_OPENCL=1 to make this a failure)\n",
           test);
    return TCL_SKIP;
}

static inline void *tcl_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "FAIL: out of host memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* uniform in [-scale, scale) */
static inline void tcl_rand(cf_rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * (2.0f * cf_rng_uniform(r) - 1.0f);
}

/* max|a-b| / (max|b| + tiny); NaN anywhere in a or b where the other is not NaN gives INFINITY */
static inline double tcl_norm_err(const float *a, const float *b, size_t n) {
    double md = 0.0, mb = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i])) return INFINITY;
        if (isnan(a[i])) continue;
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > md) md = d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return md / (mb + 1e-30);
}

#define PAD 5              /* guard elements before and after every tensor */
#define GUARD 12345.678f   /* their value */

/* the two backends under comparison, counters, and the data RNG */
static cf_backend *CPU, *GPU;
static cf_rng rng;

typedef struct {
    cf_buffer *c, *g; /* the same data on the CPU and OpenCL backends */
    size_t n;         /* elements between the guards */
} pair;

/* precision bf16 (1) / fp16 (2) for the OpenCL backend (tcl_open); random data (pair_rand) is then
 * drawn on that format's grid, so that rounding GEMM inputs changes nothing and the products
 * meet the CPU's fp32 ones to fp32's tolerance */
static int tcl_round = 0;
static inline float tcl_round_value(int mode, float x) {
    return mode == 1 ? cf_bf16_to_f32(cf_f32_to_bf16(x))
           : mode == 2 ? cf_f16_to_f32(cf_f32_to_f16(x))
                       : x;
}

static inline pair pair_new(size_t n, const void *data, float scale) {
    size_t total = n + 2 * PAD;
    float *h = tcl_malloc(total * 4);
    for (size_t i = 0; i < total; i++) h[i] = GUARD;
    if (data) memcpy(h + PAD, data, n * 4);
    else {
        tcl_rand(&rng, h + PAD, n, scale);
        for (size_t i = 0; i < n && tcl_round; i++) h[PAD + i] = tcl_round_value(tcl_round, h[PAD + i]);
    }
    pair p = {NULL, NULL, n};
    TCL_OK(cf_be_alloc(CPU, total * 4, &p.c));
    TCL_OK(cf_be_alloc(GPU, total * 4, &p.g));
    TCL_OK(cf_be_upload(CPU, cf_view_f32(p.c, 0), h, total * 4));
    TCL_OK(cf_be_upload(GPU, cf_view_f32(p.g, 0), h, total * 4));
    free(h);
    return p;
}
static inline pair pair_rand(size_t n, float scale) { return pair_new(n, NULL, scale); }
static inline pair pair_const(size_t n, float v) {
    float *h = tcl_malloc(n * 4);
    for (size_t i = 0; i < n; i++) h[i] = v;
    pair p = pair_new(n, h, 0.0f);
    free(h);
    return p;
}
/* Under oclgrind (--small) buffers are kept until exit and uploads cover whole buffers: oclgrind
 * 21.10's uninitialised-value checker loses track of a buffer's contents after a write at an
 * offset (clEnqueueWriteBuffer with offset > 0 marks the whole buffer uninitialised) and after a
 * released buffer's address is reused, and then reports correct data as uninitialised. */
static int tcl_keep_buffers = 0;
static inline void pair_free(pair p) {
    if (tcl_keep_buffers) return;
    cf_be_free(CPU, p.c);
    cf_be_free(GPU, p.g);
}

/* A GEMM operand: rows x ld elements (leading dimension ld) at element `lead` of a guarded pair,
 * random (or NaN: fill_nan, for a C that beta 0 must not read); OV(o) its view inside BOTH-style
 * loops over g_ (0 the CPU, 1 the OpenCL device). */
typedef struct {
    pair p;
    size_t lead;
} operand;

static inline operand operand_new(int rows, int ld, size_t lead, float fill_nan) {
    operand o;
    o.lead = lead;
    const size_t n = lead + (size_t)rows * ld;
    o.p = fill_nan ? pair_const(n, NAN) : pair_rand(n, 1.0f);
    return o;
}
#define OV(o) cf_view_f32(g_ ? (o).p.g : (o).p.c, PAD + (o).lead)

/* Run the same call on both backends: inside, `be` is the backend and V(p) the pair's view. */
#define V(p) cf_view_f32(g_ ? (p).g : (p).c, PAD)
#define VI(p) cf_view_i32(g_ ? (p).g : (p).c, PAD) /* the pair holds int32 (tokens, targets) */
/* the pair's data (after the same guard bytes) as elements of dtype t (bf16/f16 storage) */
#define VT(p, t) cf_view_typed(g_ ? (p).g : (p).c, (t), PAD * 4 / cf_dtype_size(t))
#define BOTH(expr)                                                                                 \
    do {                                                                                           \
        for (int g_ = 0; g_ < 2; g_++) {                                                           \
            cf_backend *be = g_ ? GPU : CPU;                                                       \
            (void)be;                                                                              \
            TCL_OK(expr);                                                                          \
        }                                                                                          \
    } while (0)

/* Compare a pair: guards intact on the OpenCL side, normalised error within tol. */
static inline void check(const char *what, pair p, double tol) {
    size_t total = p.n + 2 * PAD;
    float *a = tcl_malloc(total * 4), *b = tcl_malloc(total * 4);
    TCL_OK(cf_be_download(GPU, a, cf_view_f32(p.g, 0), total * 4));
    TCL_OK(cf_be_download(CPU, b, cf_view_f32(p.c, 0), total * 4));
    int guard_ok = 1;
    for (size_t i = 0; i < PAD; i++)
        if (a[i] != GUARD || a[PAD + p.n + i] != GUARD) guard_ok = 0;
    double err = tcl_norm_err(a + PAD, b + PAD, p.n);
    int ok = guard_ok && err <= tol;
    checks++;
    if (!ok) fails++;
    printf("%-4s %-52s n=%-7zu err %.2e (tol %.0e)%s\n", ok ? "ok" : "FAIL", what, p.n, err, tol,
           guard_ok ? "" : "  guard elements overwritten");
    free(a);
    free(b);
}

/* ---- log capture (GEMM tile choice is logged at debug level) ------------------------------- */

static char g_log[16384];
static int g_warnings = 0, g_errors = 0;
static inline void capture_log(int level, const char *msg, void *user) {
    (void)user;
    if (level == CF_LOG_WARN) g_warnings++;
    if (level == CF_LOG_ERROR) g_errors++;
    if (level <= CF_LOG_WARN) fprintf(stderr, "%s%s\n", level == 0 ? "error: " : "warning: ", msg);
    size_t used = strlen(g_log), len = strlen(msg);
    if (used + len + 2 < sizeof g_log) {
        memcpy(g_log + used, msg, len);
        g_log[used + len] = '\n';
        g_log[used + len + 1] = 0;
    }
}


/* ---- GEMM cases (test_cl_gemm, and test_cl_ops --small for oclgrind) ---------------------- */

static int g_force_tile = 0, g_force_wpt = 4, g_force_tk = 16;
static inline int force_tuner(void *user, const char *dev, int M, int N, int K, int ta, int tb,
                       cf_cl_gemm_params *out) {
    (void)user, (void)dev, (void)M, (void)N, (void)K, (void)ta, (void)tb;
    if (!g_force_tile) return 0;
    out->tile = g_force_tile;
    out->wpt = g_force_wpt;
    out->tk = g_force_tk;
    out->source = "test";
    return 1;
}

static inline void gemm_case(const char *path, int ta, int tb, int M, int N, int K, float alpha,
                      float beta) {
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    int arows = ta ? K : M, brows = tb ? N : K;
    pair A = pair_rand((size_t)arows * lda, 1.0f), B = pair_rand((size_t)brows * ldb, 1.0f);
    /* beta == 0 must not read C: start it as NaN so a read would show */
    pair C = beta == 0.0f ? pair_const((size_t)M * ldc, NAN) : pair_rand((size_t)M * ldc, 1.0f);
    BOTH(cf_be_gemm(be, ta, tb, M, N, K, alpha, V(A), lda, V(B), ldb, beta, V(C), ldc));
    char what[128];
    char forced[32] = "";
    if (g_force_tile)
        snprintf(forced, sizeof forced, " [%dx%d wpt %d tk %d]", g_force_tile, g_force_tile,
                 g_force_wpt, g_force_tk);
    snprintf(what, sizeof what, "gemm %s %c%c M=%d N=%d K=%d a=%.1f b=%.1f%s", path,
             ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, beta, forced);
    check(what, C, 2e-6 * (K > 16 ? sqrt((double)K) : 4.0));
    pair_free(A);
    pair_free(B);
    pair_free(C);
}


/* Backend options from the environment, as the CLI reads them (CF_CACHE_DIR, CF_TUNING,
 * CF_KERNEL_DIR, CF_ATTENTION, CF_CL_MAP, CF_GEMM_FAST, CF_OPENCL_AUTO_CPU, ...): the tests set
 * those variables and create a backend with these. Valid until the next call. */
static inline const cf_backend_options *tcl_opts(void) {
    static cf_backend_options o;
    cf_cli_backend_options_from_env(&o);
    return &o;
}

/* The OpenCL device the tests use: CF_TEST_OPENCL_DEVICE (e.g. "nvidia" on a machine that also
 * has PoCL), else the first usable device. */
static inline const char *tcl_spec(void) {
    const char *s = getenv("CF_TEST_OPENCL_DEVICE");
    return s && *s ? s : "opencl";
}

/* Open both backends: the CPU oracle and the OpenCL device spec (CF_TEST_OPENCL_DEVICE or
 * "opencl"). Returns -1 (after printing SKIP/FAIL and setting *exit_code) when there is none.
 * Programs are cached under the build directory unless CF_CACHE_DIR says otherwise, so the tests
 * share one warm cache and leave the user's cache alone. */
static int tcl_tf32 = 0; /* open the OpenCL backend with precision tf32 (cf_backend_options.tf32) */
static inline int tcl_open(const char *test, const char *spec, int *exit_code) {
    if (!getenv("CF_CACHE_DIR")) setenv("CF_CACHE_DIR", CF_BINARY_DIR "/cl_cache", 1);
    /* a committed tuning file matching this device would change build counts and kernel
     * variants under test; tests that want tuning set CF_TUNING themselves */
    if (!getenv("CF_TUNING")) setenv("CF_TUNING", "off", 1);
    if (!spec) spec = tcl_spec();
    if (tcl_device_count() == 0) {
        *exit_code = tcl_no_device(test);
        return -1;
    }
    cf_log_set_callback(capture_log, NULL);
    cf_rng_seed(&rng, 1234);
    TCL_OK(cf_backend_cpu_create("cpu", NULL, &CPU));
    cf_backend_options o = *tcl_opts();
    o.tf32 = tcl_tf32;
    o.bf16 = tcl_round == 1;
    o.fp16 = tcl_round == 2;
    int rc = cf_backend_opencl_create(spec, &o, &GPU);
    if (rc < 0) {
        printf("FAIL %s: OpenCL devices exist but '%s' could not be opened (%s)\n", test, spec,
               cf_status_str(rc));
        *exit_code = 1;
        return -1;
    }
    printf("device: %s\n", cf_be_name(GPU));
    return 0;
}

static inline int tcl_finish(const char *test, double t0) {
    if (GPU) cf_backend_destroy(GPU);
    if (CPU) cf_backend_destroy(CPU);
    GPU = CPU = NULL;
    printf("%s %s: %d of %d checks failed (%.1f s)\n", fails ? "FAIL" : "PASS", test, fails,
           checks, cf_time_now() - t0);
    return fails ? 1 : 0;
}

#endif
