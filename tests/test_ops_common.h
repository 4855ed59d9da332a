/* clformer tests: helpers shared by the op tests (random data, buffers on any backend, error
 * measurement and reporting). Header-only; every helper is static inline. */
#ifndef CF_TEST_OPS_COMMON_H
#define CF_TEST_OPS_COMMON_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "clformer/common.h"

/* Unit roundoff of float32 (2^-24). */
#define CFT_U 5.9604644775390625e-8

/* Abort the test (non-zero exit) when a call that must succeed fails. */
#define CFT_OK(call)                                                                               \
    do {                                                                                           \
        int cft_rc_ = (call);                                                                      \
        if (cft_rc_ < 0) {                                                                         \
            fprintf(stderr, "FAIL %s:%d: %s returned %d (%s)\n", __FILE__, __LINE__, #call,        \
                    cft_rc_, cf_status_str(cft_rc_));                                              \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static inline void *cft_malloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "FAIL: test could not allocate %zu bytes\n", bytes);
        exit(1);
    }
    return p;
}
static inline float *cft_floats(size_t n) { return (float *)cft_malloc(n * sizeof(float)); }
static inline double *cft_doubles(size_t n) { return (double *)cft_malloc(n * sizeof(double)); }

/* uniform in [-scale, scale) */
static inline void cft_rand(cf_rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * (2.0f * cf_rng_uniform(r) - 1.0f);
}

/* A buffer of n floats (or int32s) holding data (zeros when data is NULL). */
static inline cf_buffer *cft_buf(cf_backend *be, const void *data, size_t n) {
    cf_buffer *b;
    CFT_OK(cf_be_alloc(be, n * 4, &b));
    if (data)
        CFT_OK(cf_be_upload(be, cf_view_f32(b, 0), data, n * 4));
    else
        CFT_OK(cf_be_fill(be, cf_view_f32(b, 0), 0.0f, n));
    return b;
}
static inline void cft_put(cf_backend *be, cf_buffer *b, const void *data, size_t n) {
    CFT_OK(cf_be_upload(be, cf_view_f32(b, 0), data, n * 4));
}
static inline void cft_get(cf_backend *be, void *dst, cf_buffer *b, size_t n) {
    CFT_OK(cf_be_download(be, dst, cf_view_f32(b, 0), n * 4));
}
static inline cf_view cft_v(cf_buffer *b) { return cf_view_f32(b, 0); }
static inline cf_view cft_vi(cf_buffer *b) { return cf_view_i32(b, 0); } /* int32 contents */

/* Error statistics of got against a double reference. An element passes when
 * |got - ref| <= atol + rtol * |ref|. */
typedef struct {
    double max_abs, max_rel;
    size_t worst;     /* index with the largest violation ratio */
    double worst_ratio;
    size_t n, bad;
} cft_err;

static inline void cft_err_add(cft_err *e, size_t i, double got, double ref, double atol,
                               double rtol) {
    const double d = fabs(got - ref), tol = atol + rtol * fabs(ref);
    const double rel = d / (fabs(ref) > 1e-30 ? fabs(ref) : 1e-30);
    if (d > e->max_abs) e->max_abs = d;
    if (rel > e->max_rel && fabs(ref) > atol) e->max_rel = rel;
    const double ratio = tol > 0 ? d / tol : (d > 0 ? INFINITY : 0.0);
    if (ratio > e->worst_ratio || !(d == d)) {
        e->worst_ratio = d == d ? ratio : INFINITY;
        e->worst = i;
    }
    if (!(d <= tol)) e->bad++; /* NaN fails */
    e->n++;
}

/* Print one result line; returns 1 on failure (for fails += ...). */
static inline int cft_err_report(const char *op, const char *what, const cft_err *e) {
    const int fail = e->bad > 0;
    printf("  %-5s %-24s %-14s n=%-6zu max_abs=%.3e max_rel=%.3e worst=%.2fx tol", fail ? "FAIL" : "ok",
           op, what, e->n, e->max_abs, e->max_rel, e->worst_ratio);
    if (fail) printf("  (%zu over tolerance, worst at index %zu)", e->bad, e->worst);
    printf("\n");
    return fail;
}

/* Compare float results with a double reference elementwise and report. */
static inline int cft_compare(const char *op, const char *what, const float *got,
                              const double *ref, size_t n, double atol, double rtol) {
    cft_err e = {0};
    for (size_t i = 0; i < n; i++) cft_err_add(&e, i, got[i], ref[i], atol, rtol);
    return cft_err_report(op, what, &e);
}

/* Same, against a float reference. */
static inline int cft_compare_f(const char *op, const char *what, const float *got,
                                const float *ref, size_t n, double atol, double rtol) {
    cft_err e = {0};
    for (size_t i = 0; i < n; i++) cft_err_add(&e, i, got[i], ref[i], atol, rtol);
    return cft_err_report(op, what, &e);
}

/* Bit-identical comparison (determinism checks). */
static inline int cft_identical(const char *op, const char *what, const float *a, const float *b,
                                size_t n) {
    size_t diff = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            if (!diff) first = i;
            diff++;
        }
    printf("  %-5s %-24s %-14s n=%-6zu %s", diff ? "FAIL" : "ok", op, what, n,
           diff ? "differs" : "bit-identical");
    if (diff) printf(" (%zu elements, first at %zu: %.9g vs %.9g)", diff, first, a[first],
                     b[first]);
    printf("\n");
    return diff > 0;
}

/* Reference GEMM in double: C = alpha op(A) op(B) + beta C, with |alpha| sum |a||b| +
 * |beta c| per element in cabs (for an error bound); same conventions as the backend. */
static inline void cft_gemm_ref(int ta, int tb, int M, int N, int K, double alpha, const float *A,
                                int lda, const float *B, int ldb, double beta, const float *C,
                                int ldc, double *out, double *cabs) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0, sa = 0.0;
            for (int k = 0; k < K; k++) {
                const double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                const double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += a * b;
                sa += fabs(a * b);
            }
            const double c = beta != 0.0 ? C[(size_t)i * ldc + j] : 0.0;
            out[(size_t)i * N + j] = alpha * s + beta * c;
            if (cabs) cabs[(size_t)i * N + j] = fabs(alpha) * sa + fabs(beta * c);
        }
}

#endif
