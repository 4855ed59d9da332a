/* clformer tests: flash attention (backend.h: flash_forward / flash_backward) against a naive
 * double-precision reference, on any backend. Header-only, shared by test_flash_attention (the
 * CPU backend) and test_cl_flash_attention (OpenCL).
 *
 * The reference forms each query row's visible scores in full (lo(i) <= j <= i, cf_attn_desc),
 * takes the softmax in double, and differentiates it directly:
 *   P = softmax(s q k^T), O = P V, lse = ln sum exp(s q k^T),
 *   dP = dO V^T, dS = P * (dP - rowsum(P * dP)), dQ = s dS K, dK = s dS^T Q, dV = P^T dO,
 * summing dK and dV over the query heads that share a kv head. Every tensor the op reads or
 * writes sits between guard elements in its buffer at an offset, dqkv and delta start full of
 * NaN (the op must assign every element of dqkv), and the guards must come back unchanged. */
#ifndef CF_TEST_FLASH_REF_H
#define CF_TEST_FLASH_REF_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "clformer/common.h"
#include "io/half.h"

#define FR_PAD 7
#define FR_GUARD 4242.5f

static int fr_fails = 0, fr_checks = 0;
/* keep buffers until exit (oclgrind: a reused address reads as uninitialised; see test_cl_common.h) */
static int fr_keep_buffers = 0;
/* 1 / 2 / 3: the kernels under test round their products' inputs to bf16 / fp16 / TF32
 * (flash_mma.cl): the reference gets q, k, v rounded the same way, cases whose head size is not a
 * multiple of the product's k (16; 8 in TF32) are skipped, and the tolerances are the format's
 * (fr_run) */
static int fr_round = 0;
/* measured, PoCL (emulated, 12 cases each; TF32 24): out to 1.3e-3 (bf16), 1.8e-4 (fp16, TF32),
 * dq/dk/dv with the tensor-core backward to 5.7e-3 (bf16), 7.4e-4 (fp16, TF32); the H100 gave
 * out 1.3e-3 in bf16 for the forward (head sizes 32, 64) */
#define FR_TOL_OUT_BF16 5e-3
#define FR_TOL_OUT_FP16 1e-3
#define FR_TOL_D_BF16 2e-2
#define FR_TOL_D_FP16 4e-3

/* fp32 to TF32 as cvt.rna does: to nearest, ties away from zero, 10 fraction bits; Inf and NaN
 * kept */
static float fr_tf32(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
    memcpy(&x, &u, 4);
    return x;
}

static void *fr_malloc(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) {
        fprintf(stderr, "FAIL: out of host memory\n");
        exit(1);
    }
    return p;
}

#define FR_OK(call)                                                                                \
    do {                                                                                           \
        int fr_rc_ = (call);                                                                       \
        if (fr_rc_ < 0) {                                                                          \
            fprintf(stderr, "FAIL %s:%d: %s returned %d (%s)\n", __FILE__, __LINE__, #call,        \
                    fr_rc_, cf_status_str(fr_rc_));                                                \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct {
    const char *name;
    int B, T, NH, KVH, hs, window;
    int docs; /* 0: no document mask; else documents end at random positions (about T/docs long) */
} fr_case;

static int fr_lo(const fr_case *c, const int32_t *doc, int b, int i) {
    int lo = c->window > 0 && i - c->window + 1 > 0 ? i - c->window + 1 : 0;
    if (doc && doc[b * c->T + i] > lo) lo = doc[b * c->T + i];
    return lo;
}

/* naive reference in double */
static void fr_reference(const fr_case *c, const float *qkv, const float *dout, const int32_t *doc,
                         double *out, double *lse, double *dqkv) {
    const int T = c->T, NH = c->NH, KVH = c->KVH, hs = c->hs, QKV = (NH + 2 * KVH) * hs;
    const int C = NH * hs, G = NH / KVH;
    const double s = 1.0 / sqrt((double)hs);
    double *p = fr_malloc(sizeof(double) * (size_t)T), *dp = fr_malloc(sizeof(double) * (size_t)T);
    memset(dqkv, 0, sizeof(double) * (size_t)c->B * T * QKV);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < NH; h++) {
            const int kh = h / G;
            for (int i = 0; i < T; i++) {
                const float *q = qkv + ((size_t)b * T + i) * QKV + (size_t)h * hs;
                const float *dO = dout + ((size_t)b * T + i) * C + (size_t)h * hs;
                const int lo = fr_lo(c, doc, b, i);
                double mx = -INFINITY, sum = 0.0;
                for (int j = lo; j <= i; j++) {
                    const float *k = qkv + ((size_t)b * T + j) * QKV + (size_t)(NH + kh) * hs;
                    double d = 0.0;
                    for (int e = 0; e < hs; e++) d += (double)q[e] * k[e];
                    p[j] = s * d;
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = lo; j <= i; j++) sum += exp(p[j] - mx);
                lse[((size_t)b * NH + h) * T + i] = mx + log(sum);
                double *o = out + ((size_t)b * T + i) * C + (size_t)h * hs;
                for (int e = 0; e < hs; e++) o[e] = 0.0;
                double pdp = 0.0;
                for (int j = lo; j <= i; j++) {
                    p[j] = exp(p[j] - mx) / sum;
                    const float *v =
                        qkv + ((size_t)b * T + j) * QKV + (size_t)(NH + KVH + kh) * hs;
                    double d = 0.0;
                    for (int e = 0; e < hs; e++) {
                        o[e] += p[j] * v[e];
                        d += (double)dO[e] * v[e];
                    }
                    dp[j] = d;
                    pdp += p[j] * d;
                }
                double *dq = dqkv + ((size_t)b * T + i) * QKV + (size_t)h * hs;
                for (int j = lo; j <= i; j++) {
                    const double ds = p[j] * (dp[j] - pdp);
                    const float *k = qkv + ((size_t)b * T + j) * QKV + (size_t)(NH + kh) * hs;
                    double *dk = dqkv + ((size_t)b * T + j) * QKV + (size_t)(NH + kh) * hs;
                    double *dv = dqkv + ((size_t)b * T + j) * QKV + (size_t)(NH + KVH + kh) * hs;
                    for (int e = 0; e < hs; e++) {
                        dq[e] += s * ds * k[e];
                        dk[e] += s * ds * q[e];
                        dv[e] += p[j] * dO[e];
                    }
                }
            }
        }
    free(p);
    free(dp);
}

/* max |got - ref| / max |ref|; NaN counts as an infinite error. A reference that is all zero
 * (dq and dk where every query sees only itself: T 1, window 1) is compared absolutely, against
 * the inputs' scale of 1 (uniform in [-1, 1]): the backward's dP and delta are two sums of the same
 * products in different orders, so their difference is rounding, not zero. */
static double fr_err(const float *got, const double *ref, size_t n, size_t *worst) {
    double md = 0.0, mr = 0.0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = isnan(got[i]) ? INFINITY : fabs((double)got[i] - ref[i]);
        if (d > md) md = d, *worst = i;
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return mr > 0.0 ? md / mr : md;
}

static void fr_check(const char *be_name, const fr_case *c, const char *what, const float *got,
                     const double *ref, size_t n, double tol) {
    size_t w;
    const double e = fr_err(got, ref, n, &w);
    fr_checks++;
    const int bad = !(e <= tol);
    if (bad) fr_fails++;
    printf("%s %-5s %-26s %-5s err %.2e (tol %.0e)", bad ? "FAIL" : "ok  ", be_name, c->name,
           what, e, tol);
    if (bad) printf("  worst at %zu: got %.7g want %.7g", w, got[w], ref[w]);
    printf("\n");
}

/* a buffer of n floats (or i32) between FR_PAD guards on each side, uploaded */
static cf_buffer *fr_buf(cf_backend *be, const void *data, size_t n, float fill) {
    const size_t total = n + 2 * FR_PAD;
    float *h = fr_malloc(total * 4);
    for (size_t i = 0; i < total; i++) h[i] = FR_GUARD;
    if (data) memcpy(h + FR_PAD, data, n * 4);
    else
        for (size_t i = 0; i < n; i++) h[FR_PAD + i] = fill;
    cf_buffer *buf = NULL;
    FR_OK(cf_be_alloc(be, total * 4, &buf));
    FR_OK(cf_be_upload(be, cf_view_f32(buf, 0), h, total * 4));
    free(h);
    return buf;
}
/* download the n elements between the guards into out; 1 when a guard changed */
static int fr_get(cf_backend *be, cf_buffer *buf, void *out, size_t n) {
    const size_t total = n + 2 * FR_PAD;
    float *h = fr_malloc(total * 4);
    FR_OK(cf_be_download(be, h, cf_view_f32(buf, 0), total * 4));
    memcpy(out, h + FR_PAD, n * 4);
    int bad = 0;
    for (size_t i = 0; i < FR_PAD; i++) bad |= h[i] != FR_GUARD || h[total - 1 - i] != FR_GUARD;
    free(h);
    return bad;
}

/* Run one case on be and compare with the reference; tolerances for float32 against double */
static void fr_run(cf_backend *be, const char *be_name, const fr_case *c, uint64_t seed) {
    if (fr_round && c->hs % (fr_round == 3 ? 8 : 16)) return; /* no tensor-core shape */
    const size_t BT = (size_t)c->B * c->T, QKV = (size_t)(c->NH + 2 * c->KVH) * c->hs;
    const size_t nqkv = BT * QKV, nout = BT * (size_t)c->NH * c->hs, nl = BT * (size_t)c->NH;
    cf_rng r;
    cf_rng_seed(&r, seed);
    float *qkv = fr_malloc(nqkv * 4), *dout = fr_malloc(nout * 4);
    for (size_t i = 0; i < nqkv; i++) qkv[i] = 2.0f * cf_rng_uniform(&r) - 1.0f;
    for (size_t i = 0; i < nout; i++) dout[i] = 2.0f * cf_rng_uniform(&r) - 1.0f;
    int32_t *doc = NULL;
    if (c->docs > 0) { /* random document ends; the token after an end starts the next one */
        doc = fr_malloc(BT * 4);
        for (int b = 0; b < c->B; b++) {
            int start = 0;
            for (int i = 0; i < c->T; i++) {
                doc[b * c->T + i] = start;
                if (cf_rng_uniform(&r) * (float)c->T < (float)c->docs) start = i + 1;
            }
        }
    }
    double *out_ref = fr_malloc(nout * 8), *lse_ref = fr_malloc(nl * 8);
    double *dqkv_ref = fr_malloc(nqkv * 8);
    if (fr_round) { /* the reference on the rounded inputs */
        float *qr = fr_malloc(nqkv * 4);
        for (size_t i = 0; i < nqkv; i++)
            qr[i] = fr_round == 1   ? cf_bf16_to_f32(cf_f32_to_bf16(qkv[i]))
                    : fr_round == 2 ? cf_f16_to_f32(cf_f32_to_f16(qkv[i]))
                                    : fr_tf32(qkv[i]);
        fr_reference(c, qr, dout, doc, out_ref, lse_ref, dqkv_ref);
        free(qr);
    } else {
        fr_reference(c, qkv, dout, doc, out_ref, lse_ref, dqkv_ref);
    }

    cf_buffer *bq = fr_buf(be, qkv, nqkv, 0), *bdo = fr_buf(be, dout, nout, 0);
    cf_buffer *bo = fr_buf(be, NULL, nout, NAN), *bl = fr_buf(be, NULL, nl, NAN);
    cf_buffer *bdq = fr_buf(be, NULL, nqkv, NAN), *bd = fr_buf(be, NULL, nl, NAN);
    cf_buffer *bdoc = doc ? fr_buf(be, doc, BT, 0) : NULL;
    const cf_attn_desc d = {c->B, c->T, c->NH, c->KVH, c->hs, c->window};
    const cf_view dv = doc ? cf_view_i32(bdoc, FR_PAD) : CF_VIEW_NULL;
    FR_OK(cf_be_flash_forward(be, &d, cf_view_f32(bo, FR_PAD), cf_view_f32(bl, FR_PAD),
                              cf_view_f32(bq, FR_PAD), dv));
    FR_OK(cf_be_flash_backward(be, &d, cf_view_f32(bdq, FR_PAD), cf_view_f32(bd, FR_PAD),
                               cf_view_f32(bdo, FR_PAD), cf_view_f32(bo, FR_PAD),
                               cf_view_f32(bl, FR_PAD), cf_view_f32(bq, FR_PAD), dv));
    float *out = fr_malloc(nout * 4), *lse = fr_malloc(nl * 4), *dqkv = fr_malloc(nqkv * 4);
    float *tmp = fr_malloc((nqkv > nout ? nqkv : nout) * 4);
    int guards = fr_get(be, bo, out, nout) | fr_get(be, bl, lse, nl) | fr_get(be, bdq, dqkv, nqkv) |
                 fr_get(be, bd, tmp, nl) | fr_get(be, bq, tmp, nqkv) | fr_get(be, bdo, tmp, nout);
    fr_checks++;
    if (guards) {
        fr_fails++;
        printf("FAIL %-5s %-26s a guard element next to a tensor changed\n", be_name, c->name);
    }
    /* rounded inputs: the kernels also round P (the forward's against the block's running
     * maximum, which the reference cannot follow), dout and dS as they enter their products,
     * which the reference does not */
    /* TF32 has fp16's 10 fraction bits (and bf16's range): fp16's tolerances */
    const double tol_out = fr_round == 1 ? FR_TOL_OUT_BF16 : fr_round ? FR_TOL_OUT_FP16 : 4e-6;
    const double tol_lse = fr_round ? 1e-5 : 1e-6;
    const double tol_d = fr_round == 1 ? FR_TOL_D_BF16 : fr_round ? FR_TOL_D_FP16 : 1e-5;
    fr_check(be_name, c, "out", out, out_ref, nout, tol_out);
    fr_check(be_name, c, "lse", lse, lse_ref, nl, tol_lse);
    /* dq, dk, dv separately: a k/v error must not hide behind a larger q */
    const size_t qw = (size_t)c->NH * c->hs, kw = (size_t)c->KVH * c->hs;
    const char *part[3] = {"dq", "dk", "dv"};
    const size_t p0[3] = {0, qw, qw + kw}, pw[3] = {qw, kw, kw};
    double *rp = fr_malloc(BT * qw * 8);
    for (int k = 0; k < 3; k++) {
        for (size_t t = 0; t < BT; t++)
            for (size_t e = 0; e < pw[k]; e++) {
                tmp[t * pw[k] + e] = dqkv[t * QKV + p0[k] + e];
                rp[t * pw[k] + e] = dqkv_ref[t * QKV + p0[k] + e];
            }
        fr_check(be_name, c, part[k], tmp, rp, BT * pw[k], tol_d);
    }
    free(rp);
    if (!fr_keep_buffers) {
        cf_be_free(be, bq);
        cf_be_free(be, bdo);
        cf_be_free(be, bo);
        cf_be_free(be, bl);
        cf_be_free(be, bdq);
        cf_be_free(be, bd);
        if (bdoc) cf_be_free(be, bdoc);
    }
    free(qkv);
    free(dout);
    free(doc);
    free(out_ref);
    free(lse_ref);
    free(dqkv_ref);
    free(out);
    free(lse);
    free(dqkv);
    free(tmp);
}

/* The cases: causal, GQA (NH 4 over 2 and over 1 kv heads), windows (narrower than a tile,
 * wider than T), document masks alone and with a window, T = 1, T not a multiple of any tile
 * (37, 67), T over several blocks (150), head sizes 8 to 128. small: the subset for simulators
 * (oclgrind). */
static const fr_case fr_cases[] = {
    {"causal B2 T37 NH4 hs32", 2, 37, 4, 4, 32, 0, 0},
    {"gqa 4:2 T67 hs8", 2, 67, 4, 2, 8, 0, 0},
    {"gqa 4:1 T37 hs8", 1, 37, 4, 1, 8, 0, 0},
    {"window 5 gqa 4:2 T67", 2, 67, 4, 2, 8, 5, 0},
    {"window 40 T67 hs8", 1, 67, 2, 2, 8, 40, 0},
    {"window 100 > T37", 1, 37, 2, 1, 8, 100, 0},
    {"doc mask gqa 4:2 T67", 2, 67, 4, 2, 8, 0, 4},
    {"doc mask + window 9 T67", 2, 67, 2, 1, 8, 9, 3},
    {"T1 gqa 4:2", 3, 1, 4, 2, 8, 0, 0},
    {"T1 window 1 doc", 2, 1, 2, 2, 8, 1, 1},
    {"window 1 T37", 1, 37, 2, 2, 8, 1, 0},
    {"hs64 T70 gqa 4:2", 1, 70, 4, 2, 64, 0, 0},
    {"hs96 T45 doc", 1, 45, 2, 1, 96, 0, 2},
    /* around the OpenCL tiles (flash_tiled.cl at head size <= 64: 64 query rows x 32 keys
     * forward, 32 x 32 backward; 32 x 16 and 16 x 16 at 128): one row short of a tile, exactly a
     * tile, one row over; head sizes the configs use (32, 40, 48, 64) and 128; a window narrower
     * than a tile over many tiles; many short documents inside one tile */
    {"tiles T63 hs32 4:2", 1, 63, 4, 2, 32, 0, 0},
    {"tiles T64 hs64", 1, 64, 2, 2, 64, 0, 0},
    {"tiles T65 hs40 2:1", 2, 65, 2, 1, 40, 0, 0},
    {"tiles T33 hs48", 1, 33, 2, 2, 48, 0, 0},
    {"tiles T31 hs128 2:1", 1, 31, 2, 1, 128, 0, 0},
    {"tiles T97 hs128 window 20", 1, 97, 2, 2, 128, 20, 0},
    {"window 7 T130 hs32 4:1", 1, 130, 4, 1, 32, 7, 0},
    {"short docs T100 hs16", 1, 100, 2, 2, 16, 0, 30},
    {"short docs + window 20 T129", 2, 129, 2, 1, 16, 20, 40},
    /* causal over several blocks of 64 keys and queries: blocks that every row of a warp sees
     * whole, in the forward and in both backward kernels (flash_mma.cl skips their mask) */
    {"causal T150 hs32 4:2", 1, 150, 4, 2, 32, 0, 0},
    /* three batch elements: the OpenCL matrix backward's 100 KB budget holds two of them (43,200
     * bytes each), so it runs a chunk of two, then a partial chunk of one */
    {"chunks B3 T30 gqa 4:2 hs8", 3, 30, 4, 2, 8, 0, 0},
    /* multi-head, three heads: the fused matrix backward's 30 KB budget holds two heads of a
     * batch element (12,800 bytes each), so it runs heads 0-1, then head 2, per element */
    {"heads B2 T40 NH3 hs16", 2, 40, 3, 3, 16, 0, 0},
};
static const fr_case fr_small_cases[] = {
    {"causal T19 gqa 4:2 hs8", 1, 19, 4, 2, 8, 0, 0},
    {"window 3 doc T21 4:1", 1, 21, 4, 1, 8, 3, 2},
    {"T1", 1, 1, 2, 1, 8, 0, 0},
    {"heads T13 NH2 hs8", 1, 13, 2, 2, 8, 0, 0},
    /* for the matrix engine's kernels (head sizes of a multiple of 16; the others skip them) */
    {"mma T19 gqa 4:2 hs16", 1, 19, 4, 2, 16, 0, 0},
    {"mma window 3 doc T21 4:1 hs16", 1, 21, 4, 1, 16, 3, 2},
};

/* prefix: only the cases whose name starts with it (NULL: all) */
static void fr_run_some(cf_backend *be, const char *be_name, int small, const char *prefix) {
    const fr_case *cs = small ? fr_small_cases : fr_cases;
    const int n = small ? (int)(sizeof fr_small_cases / sizeof fr_small_cases[0])
                        : (int)(sizeof fr_cases / sizeof fr_cases[0]);
    for (int i = 0; i < n; i++)
        if (!prefix || strncmp(cs[i].name, prefix, strlen(prefix)) == 0)
            fr_run(be, be_name, &cs[i], 1000 + (uint64_t)i);
}

static void fr_run_all(cf_backend *be, const char *be_name, int small) {
    fr_run_some(be, be_name, small, NULL);
}

#endif
