/* clformer: the CPU backend's flash attention (flash_forward / flash_backward, backend.h): query
 * blocks whose scores and softmax are computed whole against the keys they can see, so no (T,T)
 * matrix is ever formed (a block holds CF_FLASH_BQ rows of at most T scores).
 *
 * A block of CF_FLASH_BQ query rows i0 .. i1 sees keys lo(i0) .. i1 (lo is non-decreasing, so keys
 * wholly before the window or the document start are never touched, and the cost is O(T * W)
 * with a window W). Its products are the backend's own GEMM (cf_cpu_sgemm with the native kernel,
 * one thread: the items below run in parallel), on the rows of qkv, dout and dqkv in place
 * (strided operands, nothing copied).
 *
 * Forward, one work item per (b, query head h), split over OpenMP threads; per block:
 * S = scale Q K^T (BQ x nk), then per row the maximum m over its visible keys, P = exp(S - m) / l
 * with l the sum (0 outside the mask), lse = m + ln l, and out = P V.
 *
 * Backward, one work item per (b, kv head): it owns dK and dV of its kv head and dQ of the query
 * heads of its group, so it accumulates all three in place with no atomics and no reduction
 * between threads. For each query head of the group, delta = rowsum(dO * O) is written to the
 * delta scratch (B,NH,T); then per block S = scale Q K^T and dP = dO V^T, P = exp(S - lse) and
 * dS = scale P (dP - delta) on the visible (i, j) (0 elsewhere), dQ = dS K (assigned), and
 * dV += P^T dO, dK += dS^T Q. Every element of dqkv is assigned (dK and dV zeroed by their owner
 * first). The arithmetic of an item does not depend on the thread count (the native GEMM kernels
 * never split K), so neither do the results. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#pragma GCC optimize("fp-contract=fast")
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "backend/cpu/cpu_math.h"

#define CF_FLASH_BQ 64 /* query rows per block */

typedef struct {
    const float *qkv;
    const int32_t *doc; /* NULL: no document mask */
    int B, T, NH, KVH, hs, W, QKV;
    float scale;
    int kernel; /* the native GEMM kernel (cf_cpu_flash_gemm_kernel) */
} cf_flash_args;

/* The first key query i of batch row b sees. */
static inline int cf_flash_lo(const cf_flash_args *g, int b, int i) {
    int lo = g->W > 0 && i - g->W + 1 > 0 ? i - g->W + 1 : 0;
    if (g->doc) {
        const int d = g->doc[(size_t)b * g->T + i];
        if (d > lo) lo = d <= i ? d : i; /* a start past the row itself would leave it empty */
    }
    return lo;
}

static inline float cf_flash_dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int c = 0; c < n; c++) s += a[c] * b[c];
    return s;
}

static inline const float *cf_flash_q(const cf_flash_args *g, int b, int i, int h) {
    return g->qkv + ((size_t)b * g->T + i) * g->QKV + (size_t)h * g->hs;
}
static inline const float *cf_flash_k(const cf_flash_args *g, int b, int j, int kh) {
    return g->qkv + ((size_t)b * g->T + j) * g->QKV + (size_t)(g->NH + kh) * g->hs;
}
static inline const float *cf_flash_v(const cf_flash_args *g, int b, int j, int kh) {
    return g->qkv + ((size_t)b * g->T + j) * g->QKV + (size_t)(g->NH + g->KVH + kh) * g->hs;
}

/* one (b, h): scr holds BQ * T floats */
static int cf_flash_fwd_item(const cf_flash_args *g, int b, int h, float *out, float *lse,
                             float *S) {
    const int T = g->T, hs = g->hs, kh = h / (g->NH / g->KVH), C = g->NH * hs;
    for (int i0 = 0; i0 < T; i0 += CF_FLASH_BQ) {
        const int nq = T - i0 < CF_FLASH_BQ ? T - i0 : CF_FLASH_BQ, i1 = i0 + nq - 1;
        const int lo0 = cf_flash_lo(g, b, i0), nk = i1 - lo0 + 1;
        CF_TRY(cf_cpu_sgemm(g->kernel, 0, 1, nq, nk, hs, g->scale, cf_flash_q(g, b, i0, h),
                            g->QKV, cf_flash_k(g, b, lo0, kh), g->QKV, 0.0f, S, nk));
        for (int r = 0; r < nq; r++) {
            const int i = i0 + r, a = cf_flash_lo(g, b, i) - lo0, e = i - lo0;
            float *p = S + (size_t)r * nk;
            const float mx = cf_cpu_maxf(p + a, e - a + 1);
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int j = a; j <= e; j++) {
                p[j] = cf_cpu_expf(p[j] - mx);
                sum += p[j];
            }
            const float inv = 1.0f / sum;
#pragma omp simd
            for (int j = a; j <= e; j++) p[j] *= inv;
            memset(p, 0, sizeof(float) * (size_t)a);
            memset(p + e + 1, 0, sizeof(float) * (size_t)(nk - e - 1));
            lse[((size_t)b * g->NH + h) * T + i] = mx + logf(sum);
        }
        CF_TRY(cf_cpu_sgemm(g->kernel, 0, 0, nq, hs, nk, 1.0f, S, nk, cf_flash_v(g, b, lo0, kh),
                            g->QKV, 0.0f, out + ((size_t)b * T + i0) * C + (size_t)h * hs, C));
    }
    return CF_OK;
}

/* The items of a call: n of them over OpenMP threads (when the work is worth threads), each
 * thread with `per` floats of scratch; the first failure (an item's, or a scratch allocation) is
 * returned, with one error line naming op. */
typedef int (*cf_flash_item_fn)(const cf_flash_args *g, int it, float *scr, void *io);

static int cf_flash_run(const char *op, const cf_flash_args *g, int n, size_t per,
                        cf_flash_item_fn fn, void *io) {
    int fail = CF_OK;
#pragma omp parallel if (n > 1 && (size_t)g->T * g->T * g->hs * n >= 32768)
    {
        float *scr = malloc(sizeof(float) * per);
        if (!scr) {
#pragma omp atomic write
            fail = CF_ERR_NOMEM;
        }
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < n; it++) {
            const int rc = scr ? fn(g, it, scr, io) : 0;
            if (rc < 0) {
#pragma omp atomic write
                fail = rc;
            }
        }
        free(scr);
    }
    if (fail < 0)
        CF_ERROR("%s: out of memory for %zu bytes of per-thread scratch (or the GEMM's packing "
                 "buffers)",
                 op, sizeof(float) * per);
    return fail;
}

static cf_flash_args cf_flash_args_of(cf_backend *be, const cf_attn_desc *d, cf_view qkv,
                                      cf_view doc) {
    const cf_flash_args g = {cf_cpu_f32(qkv), doc.buf ? cf_cpu_i32(doc) : NULL, d->B, d->T,
                             d->NH, d->KVH, d->hs, d->window, (d->NH + 2 * d->KVH) * d->hs,
                             1.0f / sqrtf((float)d->hs), cf_cpu_flash_gemm_kernel(be)};
    return g;
}

typedef struct {
    float *out, *lse;
} cf_flash_fwd_io;

static int cf_flash_fwd_it(const cf_flash_args *g, int it, float *scr, void *io) {
    const cf_flash_fwd_io *f = io;
    return cf_flash_fwd_item(g, it / g->NH, it % g->NH, f->out, f->lse, scr);
}

int cf_cpu_flash_forward(cf_backend *be, const cf_attn_desc *d, cf_view out_v, cf_view lse_v,
                         cf_view qkv_v, cf_view doc_v) {
    const cf_flash_args g = cf_flash_args_of(be, d, qkv_v, doc_v);
    cf_flash_fwd_io io = {cf_cpu_f32(out_v), cf_cpu_f32(lse_v)};
    return cf_flash_run("flash_forward", &g, d->B * d->NH, (size_t)CF_FLASH_BQ * (size_t)d->T,
                        cf_flash_fwd_it, &io);
}

/* one (b, kv head): owns dK, dV of kh and dQ of its group's query heads; scr holds 2 BQ T floats */
static int cf_flash_bwd_item(const cf_flash_args *g, int b, int kh, float *dqkv, float *delta,
                             const float *dout, const float *out, const float *lse, float *scr) {
    const int T = g->T, hs = g->hs, G = g->NH / g->KVH, C = g->NH * hs, QKV = g->QKV;
    float *S = scr, *dP = scr + (size_t)CF_FLASH_BQ * T;
    float *dk0 = dqkv + (size_t)b * T * QKV + (size_t)(g->NH + kh) * hs;
    float *dv0 = dqkv + (size_t)b * T * QKV + (size_t)(g->NH + g->KVH + kh) * hs;
    for (int i = 0; i < T; i++) {
        memset(dk0 + (size_t)i * QKV, 0, sizeof(float) * (size_t)hs);
        memset(dv0 + (size_t)i * QKV, 0, sizeof(float) * (size_t)hs);
    }
    for (int h = kh * G; h < (kh + 1) * G; h++) {
        float *dl = delta + ((size_t)b * g->NH + h) * T;
        const float *ls = lse + ((size_t)b * g->NH + h) * T;
        for (int i = 0; i < T; i++) {
            const size_t o = ((size_t)b * T + i) * C + (size_t)h * hs;
            dl[i] = cf_flash_dot(dout + o, out + o, hs);
        }
        for (int i0 = 0; i0 < T; i0 += CF_FLASH_BQ) {
            const int nq = T - i0 < CF_FLASH_BQ ? T - i0 : CF_FLASH_BQ, i1 = i0 + nq - 1;
            const int lo0 = cf_flash_lo(g, b, i0), nk = i1 - lo0 + 1;
            const float *q0 = cf_flash_q(g, b, i0, h), *k0 = cf_flash_k(g, b, lo0, kh);
            const float *dO0 = dout + ((size_t)b * T + i0) * C + (size_t)h * hs;
            CF_TRY(cf_cpu_sgemm(g->kernel, 0, 1, nq, nk, hs, g->scale, q0, QKV, k0, QKV, 0.0f, S,
                                nk));
            CF_TRY(cf_cpu_sgemm(g->kernel, 0, 1, nq, nk, hs, 1.0f, dO0, C,
                                cf_flash_v(g, b, lo0, kh), QKV, 0.0f, dP, nk));
            for (int r = 0; r < nq; r++) {
                const int i = i0 + r, a = cf_flash_lo(g, b, i) - lo0, e = i - lo0;
                float *p = S + (size_t)r * nk, *d = dP + (size_t)r * nk;
                const float Li = ls[i], Di = dl[i], sc = g->scale;
#pragma omp simd
                for (int j = a; j <= e; j++) {
                    const float pj = cf_cpu_expf(p[j] - Li);
                    d[j] = pj * (d[j] - Di) * sc;
                    p[j] = pj;
                }
                memset(p, 0, sizeof(float) * (size_t)a);
                memset(d, 0, sizeof(float) * (size_t)a);
                memset(p + e + 1, 0, sizeof(float) * (size_t)(nk - e - 1));
                memset(d + e + 1, 0, sizeof(float) * (size_t)(nk - e - 1));
            }
            /* dQ = dS K (scale folded into dS), assigned; dV += P^T dO, dK += dS^T Q */
            CF_TRY(cf_cpu_sgemm(g->kernel, 0, 0, nq, hs, nk, 1.0f, dP, nk, k0, QKV, 0.0f,
                                dqkv + ((size_t)b * T + i0) * QKV + (size_t)h * hs, QKV));
            CF_TRY(cf_cpu_sgemm(g->kernel, 1, 0, nk, hs, nq, 1.0f, S, nk, dO0, C, 1.0f,
                                dv0 + (size_t)lo0 * QKV, QKV));
            CF_TRY(cf_cpu_sgemm(g->kernel, 1, 0, nk, hs, nq, 1.0f, dP, nk, q0, QKV, 1.0f,
                                dk0 + (size_t)lo0 * QKV, QKV));
        }
    }
    return CF_OK;
}

typedef struct {
    float *dqkv, *delta;
    const float *dout, *out, *lse;
} cf_flash_bwd_io;

static int cf_flash_bwd_it(const cf_flash_args *g, int it, float *scr, void *io) {
    const cf_flash_bwd_io *f = io;
    return cf_flash_bwd_item(g, it / g->KVH, it % g->KVH, f->dqkv, f->delta, f->dout, f->out,
                             f->lse, scr);
}

int cf_cpu_flash_backward(cf_backend *be, const cf_attn_desc *d, cf_view dqkv_v, cf_view delta_v,
                          cf_view dout_v, cf_view out_v, cf_view lse_v, cf_view qkv_v,
                          cf_view doc_v) {
    const cf_flash_args g = cf_flash_args_of(be, d, qkv_v, doc_v);
    cf_flash_bwd_io io = {cf_cpu_f32(dqkv_v), cf_cpu_f32(delta_v), cf_cpu_f32(dout_v),
                          cf_cpu_f32(out_v), cf_cpu_f32(lse_v)};
    return cf_flash_run("flash_backward", &g, d->B * d->KVH,
                        (size_t)2 * CF_FLASH_BQ * (size_t)d->T, cf_flash_bwd_it, &io);
}
