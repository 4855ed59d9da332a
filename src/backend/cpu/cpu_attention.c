/* clformer: the CPU backend's causal self-attention, forward and backward.
 *
 * Determinism: each (batch, head) pair is one work item whose arithmetic does not depend on the
 * thread count, so neither do the results. */

/* GCC: vectorise loops with float compares (no code here inspects floating-point exception
 * flags; Clang assumes this by default), and let a * b + c become one FMA (ISO C mode turns
 * contraction off; FMAs double the inner loops' throughput, and results stay deterministic for
 * a given build). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#pragma GCC optimize("fp-contract=fast")
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "backend/cpu/cpu_math.h"

/* ---- attention ------------------------------------------------------------------------------
 * Per (b, h) attention is three small matrix products around a row softmax:
 *   S = Q K^T / sqrt(hs),  att = causal_softmax(S),  out = att V,
 * and backward
 *   datt = dout V^T,  dpre = att * (datt - rowsum(att * datt)),
 *   dQ += dpre K / sqrt(hs),  dK += dpre^T Q / sqrt(hs),  dV += att^T dout.
 * They run on the native GEMM (single-threaded inside the (b, h) loop, which is the parallel
 * one), in blocks of CF_ATT_BLK query rows so that only the causal part (plus the diagonal
 * blocks) is computed: a block of rows [r0, r1) needs keys [0, r1) only. Entries above the
 * diagonal of att are zero (the forward writes them), which keeps the products exact where a
 * block crosses the diagonal. Each (b, h) is one work item and the GEMM does not depend on the
 * thread count, so neither do the results. (About 1.6x faster here than the same loops written
 * as per-(t, t2) dot products.) */

#define CF_ATT_BLK 64

/* the native GEMM on host pointers; only fails on allocation */
#define CF_ATT_GEMM(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)                          \
    do {                                                                                           \
        if (cf_cpu_sgemm(CF_CPU_GEMM_NATIVE_BEST, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta,    \
                         C, ldc) < 0)                                                              \
            failed = 1;                                                                            \
    } while (0)

int cf_cpu_attention_forward(cf_backend *be, cf_view out_v, cf_view att_v, cf_view qkv_v, int B,
                             int T, int C, int NH) {
    const size_t BT = cf_zmul(B, T);
    CF_CPU_NEED(out_v, BT * C, "attention_forward", "out");
    CF_CPU_NEED(att_v, cf_zmul(B, NH) * cf_zmul(T, T), "attention_forward", "att");
    CF_CPU_NEED(qkv_v, BT * 3 * C, "attention_forward", "qkv");
    float *out = cf_cpu_f32(out_v), *att = cf_cpu_f32(att_v);
    const float *qkv = cf_cpu_f32(qkv_v);
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    int failed = 0;
#pragma omp parallel for collapse(2) schedule(static) reduction(| : failed)                      \
    if (BT * C >= CF_CPU_PAR_MIN / 8)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q0 = qkv + cf_zmul(b, T) * C3 + cf_zmul(h, hs);
            const float *k0 = q0 + C, *v0 = q0 + 2 * (size_t)C;
            float *att0 = att + (cf_zmul(b, NH) + h) * T * T;
            float *o0 = out + cf_zmul(b, T) * C + cf_zmul(h, hs);
            for (int r0 = 0; r0 < T; r0 += CF_ATT_BLK) {
                const int r1 = r0 + CF_ATT_BLK < T ? r0 + CF_ATT_BLK : T, m = r1 - r0;
                float *a0 = att0 + (size_t)r0 * T;
                /* S[r0:r1, 0:r1] = Q[r0:r1] K[0:r1]^T / sqrt(hs) */
                CF_ATT_GEMM(0, 1, m, r1, hs, scale, q0 + (size_t)r0 * C3, C3, k0, C3, 0.0f, a0, T);
                /* causal softmax of each row t over t2 <= t; zeros beyond */
                for (int t = r0; t < r1; t++) {
                    float *arow = att0 + (size_t)t * T;
                    const int n = t + 1;
                    const float maxv = cf_cpu_maxf(arow, n);
                    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                    for (int t2 = 0; t2 < n; t2++) {
                        const float e = cf_cpu_expf(arow[t2] - maxv);
                        arow[t2] = e;
                        sum += e;
                    }
                    const float inv = 1.0f / sum;
#pragma omp simd
                    for (int t2 = 0; t2 < n; t2++) arow[t2] *= inv;
                    for (int t2 = n; t2 < T; t2++) arow[t2] = 0.0f;
                }
                /* out[r0:r1] = att[r0:r1, 0:r1] V[0:r1] */
                CF_ATT_GEMM(0, 0, m, hs, r1, 1.0f, a0, T, v0, C3, 0.0f, o0 + (size_t)r0 * C, C);
            }
        }
    if (failed) return CF_ERR_NOMEM;
    return CF_OK;
}

int cf_cpu_attention_backward(cf_backend *be, cf_view dqkv_v, cf_view datt_v, cf_view dpreatt_v,
                              cf_view dout_v, cf_view qkv_v, cf_view att_v, int B, int T, int C,
                              int NH) {
    const size_t BT = cf_zmul(B, T), BHTT = cf_zmul(B, NH) * cf_zmul(T, T);
    CF_CPU_NEED(dqkv_v, BT * 3 * C, "attention_backward", "dqkv");
    CF_CPU_NEED(datt_v, BHTT, "attention_backward", "datt");
    CF_CPU_NEED(dpreatt_v, BHTT, "attention_backward", "dpreatt");
    CF_CPU_NEED(dout_v, BT * C, "attention_backward", "dout");
    CF_CPU_NEED(qkv_v, BT * 3 * C, "attention_backward", "qkv");
    CF_CPU_NEED(att_v, BHTT, "attention_backward", "att");
    float *dqkv = cf_cpu_f32(dqkv_v), *datt = cf_cpu_f32(datt_v);
    float *dpreatt = cf_cpu_f32(dpreatt_v);
    const float *dout = cf_cpu_f32(dout_v), *qkv = cf_cpu_f32(qkv_v), *att = cf_cpu_f32(att_v);
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    int failed = 0;
    /* One (b, h) per iteration: it owns head h's columns of dq, dk, dv in batch b. */
#pragma omp parallel for collapse(2) schedule(static) reduction(| : failed)                      \
    if (BT * C >= CF_CPU_PAR_MIN / 8)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const size_t base = cf_zmul(b, T) * C3 + cf_zmul(h, hs);
            const float *q0 = qkv + base, *k0 = q0 + C, *v0 = q0 + 2 * (size_t)C;
            float *dq0 = dqkv + base, *dk0 = dq0 + C, *dv0 = dq0 + 2 * (size_t)C;
            const float *dO0 = dout + cf_zmul(b, T) * C + cf_zmul(h, hs);
            const size_t bh = (cf_zmul(b, NH) + h) * T * T;
            const float *att0 = att + bh;
            float *datt0 = datt + bh, *dpre0 = dpreatt + bh;
            for (int r0 = 0; r0 < T; r0 += CF_ATT_BLK) {
                const int r1 = r0 + CF_ATT_BLK < T ? r0 + CF_ATT_BLK : T, m = r1 - r0;
                const float *a0 = att0 + (size_t)r0 * T;
                float *da0 = datt0 + (size_t)r0 * T, *dp0 = dpre0 + (size_t)r0 * T;
                const float *dOb = dO0 + (size_t)r0 * C;
                /* datt[r0:r1, 0:r1] = dout[r0:r1] V[0:r1]^T */
                CF_ATT_GEMM(0, 1, m, r1, hs, 1.0f, dOb, C, v0, C3, 0.0f, da0, T);
                /* softmax backward, row by row; att is zero above the diagonal, so is dpre */
                for (int i = 0; i < m; i++) {
                    const float *arow = a0 + (size_t)i * T, *drow = da0 + (size_t)i * T;
                    float *dprow = dp0 + (size_t)i * T;
                    float sd = 0.0f;
#pragma omp simd reduction(+ : sd)
                    for (int t2 = 0; t2 < r1; t2++) sd += arow[t2] * drow[t2];
#pragma omp simd
                    for (int t2 = 0; t2 < r1; t2++) dprow[t2] = arow[t2] * (drow[t2] - sd);
                }
                /* dQ[r0:r1] += dpre K[0:r1] / sqrt(hs) */
                CF_ATT_GEMM(0, 0, m, hs, r1, scale, dp0, T, k0, C3, 1.0f, dq0 + (size_t)r0 * C3,
                            C3);
                /* dK[0:r1] += dpre^T Q[r0:r1] / sqrt(hs) ; dV[0:r1] += att^T dout[r0:r1] */
                CF_ATT_GEMM(1, 0, r1, hs, m, scale, dp0, T, q0 + (size_t)r0 * C3, C3, 1.0f, dk0,
                            C3);
                CF_ATT_GEMM(1, 0, r1, hs, m, 1.0f, a0, T, dOb, C, 1.0f, dv0, C3);
            }
        }
    if (failed) return CF_ERR_NOMEM;
    return CF_OK;
}
