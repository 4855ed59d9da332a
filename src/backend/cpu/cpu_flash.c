/* clformer: the CPU backend's flash attention (flash_forward / flash_backward, backend.h):
 * blocked loops with an online softmax, so no (T,T) matrix is ever formed.
 *
 * Tiles: queries in blocks of CF_FLASH_BQ rows, keys in blocks of CF_FLASH_BK. A query block walks
 * the key blocks its rows can see (lo(first row) .. last row: lo is non-decreasing, so blocks
 * wholly outside the window or before the document start are never visited, and the cost is
 * O(T * W) with a window W). Per tile, the key (and in the backward the value) rows are transposed
 * into per-thread scratch, so that a row of scores is a register-blocked product over CF_FLASH_VW
 * contiguous keys at a time (vectorised, no horizontal sums); the products with V, K, Q and dO
 * keep CF_FLASH_VW columns of the result in registers while they walk the tile's rows.
 *
 * Forward, one work item per (b, query head h), split over OpenMP threads: per row the running
 * maximum m, the running sum l of exp(s - m) and the unnormalised output acc; out = acc / l and
 * lse = m + ln l.
 *
 * Backward, one work item per (b, kv head): it owns dK and dV of its kv head and dQ of the query
 * heads of its group, so it accumulates all three in place with no atomics and no reduction
 * between threads. For each query head of the group, delta = rowsum(dO * O) is written to the
 * delta scratch (B,NH,T); then per tile P = exp(s q.k - lse) and dS = s P (dO.v - delta) for the
 * visible (i, j) (0 elsewhere), and dV += P^T dO, dK += dS^T Q, dQ += dS K. Every element of dqkv
 * is assigned (zeroed by its owner first). The arithmetic of an item does not depend on the
 * thread count, so neither do the results. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#pragma GCC optimize("fp-contract=fast")
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#define CF_FLASH_BQ 32 /* query rows per block */
#define CF_FLASH_BK 64 /* keys per block */

typedef struct {
    const float *qkv;
    const int32_t *doc; /* NULL: no document mask */
    int B, T, NH, KVH, hs, W, QKV;
    float scale;
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
static inline void cf_flash_axpy(float *y, float a, const float *x, int n) {
#pragma omp simd
    for (int c = 0; c < n; c++) y[c] += a * x[c];
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

/* Kt (hs, BK) = the key rows j0 .. j0 + n - 1 of kv head kh transposed (value rows: part 2) */
static void cf_flash_transpose(const cf_flash_args *g, int b, int kh, int part, int j0, int n,
                               float *Kt) {
    for (int jj = 0; jj < n; jj++) {
        const float *k = part == 2 ? cf_flash_v(g, b, j0 + jj, kh) : cf_flash_k(g, b, j0 + jj, kh);
        for (int c = 0; c < g->hs; c++) Kt[(size_t)c * CF_FLASH_BK + jj] = k[c];
    }
}

#define CF_FLASH_VW 16 /* columns a register block holds */

/* s[a..e] = scale * q . (columns a..e of Kt), in blocks of VW aligned columns (the columns of a
 * block outside a..e are computed from whatever Kt holds there and not used) */
static inline void cf_flash_scores(const float *q, const float *Kt, int hs, int a, int e,
                                   float scale, float *s) {
    for (int j = a / CF_FLASH_VW * CF_FLASH_VW; j <= e; j += CF_FLASH_VW) {
        float acc[CF_FLASH_VW] = {0};
        for (int c = 0; c < hs; c++) {
            const float qc = q[c] * scale, *kt = Kt + (size_t)c * CF_FLASH_BK + j;
#pragma omp simd
            for (int x = 0; x < CF_FLASH_VW; x++) acc[x] += qc * kt[x];
        }
        for (int x = 0; x < CF_FLASH_VW; x++) s[j + x] = acc[x];
    }
}

/* y[0..hs) = y * alpha + sum over r in [r0, r1] of w[r * ws] * x_r, x_r = x0 + r * xs: the
 * columns of y in register blocks of VW while the rows stream past */
static inline void cf_flash_gemv(float *y, float alpha, const float *w, ptrdiff_t ws, int r0,
                                 int r1, const float *x0, ptrdiff_t xs, int hs) {
    int c = 0;
    for (; c + CF_FLASH_VW <= hs; c += CF_FLASH_VW) {
        float acc[CF_FLASH_VW];
        for (int x = 0; x < CF_FLASH_VW; x++) acc[x] = y[c + x] * alpha;
        for (int r = r0; r <= r1; r++) {
            const float wr = w[r * ws], *xr = x0 + r * xs + c;
#pragma omp simd
            for (int x = 0; x < CF_FLASH_VW; x++) acc[x] += wr * xr[x];
        }
        for (int x = 0; x < CF_FLASH_VW; x++) y[c + x] = acc[x];
    }
    if (c < hs) { /* a head size that is not a multiple of VW: the last columns one by one */
        for (int x = c; x < hs; x++) y[x] *= alpha;
        for (int r = r0; r <= r1; r++) {
            const float wr = w[r * ws], *xr = x0 + r * xs;
            for (int x = c; x < hs; x++) y[x] += wr * xr[x];
        }
    }
}

/* one (b, h): scr holds BQ * (hs + 2) + BK + hs * BK floats */
static void cf_flash_fwd_item(const cf_flash_args *g, int b, int h, float *out, float *lse,
                              float *scr) {
    const int T = g->T, hs = g->hs, kh = h / (g->NH / g->KVH), C = g->NH * hs;
    float *acc = scr, *m = acc + CF_FLASH_BQ * hs, *l = m + CF_FLASH_BQ, *s = l + CF_FLASH_BQ;
    float *Kt = s + CF_FLASH_BK;
    for (int i0 = 0; i0 < T; i0 += CF_FLASH_BQ) {
        const int nq = T - i0 < CF_FLASH_BQ ? T - i0 : CF_FLASH_BQ, i1 = i0 + nq - 1;
        memset(acc, 0, sizeof(float) * (size_t)nq * hs);
        for (int r = 0; r < nq; r++) m[r] = -INFINITY, l[r] = 0.0f;
        for (int j0 = cf_flash_lo(g, b, i0); j0 <= i1; j0 += CF_FLASH_BK) {
            const int j1 = j0 + CF_FLASH_BK - 1 < i1 ? j0 + CF_FLASH_BK - 1 : i1;
            cf_flash_transpose(g, b, kh, 1, j0, j1 - j0 + 1, Kt);
            const float *v0 = cf_flash_v(g, b, j0, kh);
            for (int r = 0; r < nq; r++) {
                const int i = i0 + r, lo = cf_flash_lo(g, b, i);
                const int a = (j0 > lo ? j0 : lo) - j0, e = (j1 < i ? j1 : i) - j0;
                if (a > e) continue;
                cf_flash_scores(cf_flash_q(g, b, i, h), Kt, hs, a, e, g->scale, s);
                float mx = m[r];
                for (int jj = a; jj <= e; jj++) mx = s[jj] > mx ? s[jj] : mx;
                const float corr = expf(m[r] - mx); /* 0 on the first visit (m = -inf) */
                float sum = 0.0f;
                for (int jj = a; jj <= e; jj++) {
                    s[jj] = expf(s[jj] - mx);
                    sum += s[jj];
                }
                cf_flash_gemv(acc + (size_t)r * hs, corr, s, 1, a, e, v0, g->QKV, hs);
                l[r] = l[r] * corr + sum;
                m[r] = mx;
            }
        }
        for (int r = 0; r < nq; r++) {
            const int i = i0 + r;
            float *o = out + ((size_t)b * T + i) * C + (size_t)h * hs;
            const float inv = 1.0f / l[r];
            for (int c = 0; c < hs; c++) o[c] = acc[(size_t)r * hs + c] * inv;
            lse[((size_t)b * g->NH + h) * T + i] = m[r] + logf(l[r]);
        }
    }
}

int cf_cpu_flash_forward(cf_backend *be, const cf_attn_desc *d, cf_view out_v, cf_view lse_v,
                         cf_view qkv_v, cf_view doc_v) {
    (void)be;
    const cf_flash_args g = {cf_cpu_f32(qkv_v), doc_v.buf ? cf_cpu_i32(doc_v) : NULL, d->B, d->T,
                             d->NH, d->KVH, d->hs, d->window, (d->NH + 2 * d->KVH) * d->hs,
                             1.0f / sqrtf((float)d->hs)};
    float *out = cf_cpu_f32(out_v), *lse = cf_cpu_f32(lse_v);
    const int n = d->B * d->NH;
    const size_t per = (size_t)CF_FLASH_BQ * (size_t)(d->hs + 2) + CF_FLASH_BK +
                       (size_t)d->hs * CF_FLASH_BK;
    int fail = 0;
#pragma omp parallel if (n > 1 && (size_t)d->T * d->T * d->hs * n >= 32768)
    {
        float *scr = malloc(sizeof(float) * per);
        if (!scr) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < n; it++)
            if (scr) cf_flash_fwd_item(&g, it / d->NH, it % d->NH, out, lse, scr);
        free(scr);
    }
    if (fail) {
        CF_ERROR("flash_forward: out of memory for %zu bytes of per-thread scratch",
                 sizeof(float) * per);
        return CF_ERR_NOMEM;
    }
    return CF_OK;
}

/* one (b, kv head): owns dK, dV of kh and dQ of its group's query heads; scr holds
 * 2 hs BK + 2 BQ BK floats */
static void cf_flash_bwd_item(const cf_flash_args *g, int b, int kh, float *dqkv, float *delta,
                              const float *dout, const float *out, const float *lse, float *scr) {
    const int T = g->T, hs = g->hs, G = g->NH / g->KVH, C = g->NH * hs, QKV = g->QKV;
    float *Kt = scr, *Vt = Kt + (size_t)hs * CF_FLASH_BK, *P = Vt + (size_t)hs * CF_FLASH_BK;
    float *dS = P + (size_t)CF_FLASH_BQ * CF_FLASH_BK;
    for (int i = 0; i < T; i++) {
        float *row = dqkv + ((size_t)b * T + i) * QKV;
        memset(row + (size_t)kh * G * hs, 0, sizeof(float) * (size_t)G * hs);
        memset(row + (size_t)(g->NH + kh) * hs, 0, sizeof(float) * (size_t)hs);
        memset(row + (size_t)(g->NH + g->KVH + kh) * hs, 0, sizeof(float) * (size_t)hs);
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
            const float *q0 = cf_flash_q(g, b, i0, h);
            const float *dO0 = dout + ((size_t)b * T + i0) * C + (size_t)h * hs;
            float *dq0 = dqkv + ((size_t)b * T + i0) * QKV + (size_t)h * hs;
            for (int j0 = cf_flash_lo(g, b, i0); j0 <= i1; j0 += CF_FLASH_BK) {
                const int j1 = j0 + CF_FLASH_BK - 1 < i1 ? j0 + CF_FLASH_BK - 1 : i1;
                const int nk = j1 - j0 + 1;
                cf_flash_transpose(g, b, kh, 1, j0, nk, Kt);
                cf_flash_transpose(g, b, kh, 2, j0, nk, Vt);
                /* P and dS of the tile, rows r < nq, columns jj < nk; 0 where masked */
                int rfirst = nq, rlast = -1;
                for (int r = 0; r < nq; r++) {
                    float *p = P + (size_t)r * CF_FLASH_BK, *d = dS + (size_t)r * CF_FLASH_BK;
                    const int i = i0 + r, lo = cf_flash_lo(g, b, i);
                    const int a = (j0 > lo ? j0 : lo) - j0, e = (j1 < i ? j1 : i) - j0;
                    if (a > e) {
                        memset(p, 0, sizeof(float) * (size_t)nk);
                        memset(d, 0, sizeof(float) * (size_t)nk);
                        continue;
                    }
                    rfirst = r < rfirst ? r : rfirst;
                    rlast = r;
                    cf_flash_scores(q0 + (size_t)r * QKV, Kt, hs, a, e, g->scale, p);
                    cf_flash_scores(dO0 + (size_t)r * C, Vt, hs, a, e, 1.0f, d);
                    const float Li = ls[i], Di = dl[i];
                    for (int jj = 0; jj < nk; jj++) {
                        const int in = jj >= a && jj <= e;
                        const float pj = in ? expf(p[jj] - Li) : 0.0f;
                        d[jj] = in ? pj * (d[jj] - Di) * g->scale : 0.0f;
                        p[jj] = pj;
                    }
                    /* dQ_i += dS_i K (scale folded into dS) */
                    cf_flash_gemv(dq0 + (size_t)r * QKV, 1.0f, d, 1, a, e,
                                  cf_flash_k(g, b, j0, kh), QKV, hs);
                }
                if (rlast < 0) continue;
                /* dV_j += P^T dO, dK_j += dS^T Q over the tile's rows */
                for (int jj = 0; jj < nk; jj++) {
                    float *drow = dqkv + ((size_t)b * T + j0 + jj) * QKV;
                    cf_flash_gemv(drow + (size_t)(g->NH + g->KVH + kh) * hs, 1.0f, P + jj,
                                  CF_FLASH_BK, rfirst, rlast, dO0, C, hs);
                    cf_flash_gemv(drow + (size_t)(g->NH + kh) * hs, 1.0f, dS + jj, CF_FLASH_BK,
                                  rfirst, rlast, q0, QKV, hs);
                }
            }
        }
    }
}

int cf_cpu_flash_backward(cf_backend *be, const cf_attn_desc *d, cf_view dqkv_v, cf_view delta_v,
                          cf_view dout_v, cf_view out_v, cf_view lse_v, cf_view qkv_v,
                          cf_view doc_v) {
    (void)be;
    const cf_flash_args g = {cf_cpu_f32(qkv_v), doc_v.buf ? cf_cpu_i32(doc_v) : NULL, d->B, d->T,
                             d->NH, d->KVH, d->hs, d->window, (d->NH + 2 * d->KVH) * d->hs,
                             1.0f / sqrtf((float)d->hs)};
    float *dqkv = cf_cpu_f32(dqkv_v), *delta = cf_cpu_f32(delta_v);
    const float *dout = cf_cpu_f32(dout_v), *out = cf_cpu_f32(out_v), *lse = cf_cpu_f32(lse_v);
    const int n = d->B * d->KVH;
    const size_t per = (size_t)(2 * d->hs + 2 * CF_FLASH_BQ) * CF_FLASH_BK;
    int fail = 0;
#pragma omp parallel if (n > 1 && (size_t)d->T * d->T * d->hs * n >= 32768)
    {
        float *scr = malloc(sizeof(float) * per);
        if (!scr) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < n; it++)
            if (scr) cf_flash_bwd_item(&g, it / d->KVH, it % d->KVH, dqkv, delta, dout, out, lse, scr);
        free(scr);
    }
    if (fail) {
        CF_ERROR("flash_backward: out of memory for %zu bytes of per-thread scratch",
                 sizeof(float) * per);
        return CF_ERR_NOMEM;
    }
    return CF_OK;
}
