/* clformer: flash attention, register-tiled (backend.h: flash_forward / flash_backward; host code
 * src/backend/opencl/cl_flash.c). The same contract and mask as flash_attention.cl (the kernels
 * with one work-item per row, kept as the "rows" variant), computed FlashAttention-2 style:
 *
 * - flash_tiled_forward: a work-group of TX x TY work-items owns BR = TY * FM query rows of one
 *   (batch, head) and walks the key/value blocks of BC = TX * FN rows that its rows can see,
 *   staged in local memory. Work-item (tx, ty) computes the FM x FN scores of rows ty + TY a and
 *   keys tx + TX b (each local value read feeds FM or FN multiply-adds), the online softmax in
 *   fp32 (row maxima reduced across the TX work-items of a row through local memory; the running
 *   sums stay per work-item and are reduced once at the end), and keeps the output of its FM rows
 *   and the columns tx + TX d in registers. Writes out and lse.
 * - flash_tiled_delta: delta = rowsum(dout * out), one work-item per (b, i, h).
 * - flash_tiled_dq: the forward's shape (BR = TY * QM rows, BC = TX * QN keys): recomputes P from
 *   lse tile by tile, dP = dO V^T, dS = P (dP - delta) through local memory, dQ += dS K.
 * - flash_tiled_dkv: a work-group per block of BKV = TY * KM keys of one (batch, kv head): it
 *   walks the query heads of its group and the blocks of BQ = TX * KN queries that see its keys,
 *   accumulating dK and dV of its keys in registers. One writer per element: no atomics.
 *
 * Every tile lives in local memory transposed, X[c * (rows + 1) + row]: the odd stride makes the
 * column reads of a warp (consecutive rows) and the row reads (consecutive c) conflict-free.
 *
 * Build-time parameters: HS (head size), TX, TY (work-group TX * TY, launched as one dimension),
 * FM, FN, QM, QN, KM, KN (above). Launch ranges (cl_flash.c): forward and dq
 * (ceil(T / BR) * TX * TY, NH, B), dkv (ceil(T / BKV) * TX * TY, KVH, B), groups (TX * TY, 1, 1);
 * delta (ceil(B * T * NH / 64) * 64). delta runs before dq and dkv.
 *
 * Mask: query i sees key j when lo(i) <= j <= i (flash_attention.cl); lo is non-decreasing in i,
 * so a block's first row bounds its keys from below: blocks wholly before the window or the
 * document start are never loaded. Rows past T get lo = T and see nothing. */
#ifndef HS
#define HS 64
#endif
#ifndef TX
#define TX 16
#endif
#ifndef TY
#define TY 16
#endif
#ifndef FM
#define FM 4
#endif
#ifndef FN
#define FN 2
#endif
#ifndef QM
#define QM 2
#endif
#ifndef QN
#define QN 2
#endif
#ifndef KM
#define KM 2
#endif
#ifndef KN
#define KN 2
#endif
#define NT (TX * TY)
#define TD ((HS + TX - 1) / TX) /* output columns per work-item: tx + TX d < HS */
#define FBR (TY * FM)
#define FBC (TX * FN)
#define QBR (TY * QM)
#define QBC (TX * QN)
#define KBK (TY * KM)
#define KBQ (TX * KN)
#define TMAX(a, b) ((a) > (b) ? (a) : (b))
/* column tx + TX d of a head row exists (always when TX divides HS) */
#define COLOK(d) (HS % TX == 0 || tx + TX * (d) < HS)
/* Tile loads split an index e into (row, column) as e / HS and e - row * HS, never e % HS next to
 * e / HS (oclgrind cannot interpret the `freeze` LLVM makes of such a pair; flash_attention.cl). */

static int ft_lo(__global const int *doc, ulong doc_off, int has_doc, int b, int T, int W, int i) {
    if (i >= T) return T;
    int lo = (W > 0 && i - W + 1 > 0) ? i - W + 1 : 0;
    if (has_doc) {
        int d = doc[doc_off + (ulong)b * (ulong)T + (ulong)i];
        d = d < i ? d : i;
        lo = lo > d ? lo : d;
    }
    return lo;
}

/* rows rows of head column block col0 (of width HS) of a (B, T, ld) tensor into X[c * (rows + 1)
 * + r], times mul; rows past T as 0 */
#define FT_LOAD_T(X, rows, src, off, ld, col0, r0, mul)                                            \
    for (int e_ = tid; e_ < (rows) * HS; e_ += NT) {                                               \
        const int rr_ = e_ / HS, c_ = e_ - rr_ * HS, i_ = (r0) + rr_;                              \
        const ulong g_ = (off) + ((ulong)b * T + i_) * (ulong)(ld) + (ulong)(col0) + c_;          \
        X[c_ * ((rows) + 1) + rr_] = i_ < T ? (src)[g_] * (mul) : 0.0f;                            \
    }

__kernel __attribute__((reqd_work_group_size(NT, 1, 1))) void
flash_tiled_forward(__global float *out, ulong out_off, __global float *lse, ulong lse_off,
                    __global const float *qkv, ulong qkv_off, __global const int *doc,
                    ulong doc_off, int has_doc, int NH, int KVH, int T, int W, float scale) {
    __local float Qt[HS * (FBR + 1)];
    __local float KP[TMAX(HS * (FBC + 1), FBC * (FBR + 1))]; /* K^T, then P^T */
    __local float Vs[FBC * HS];
    __local float red[FBR * TX];
    const int tid = get_local_id(0), tx = tid % TX, ty = tid / TX;
    const int h = get_global_id(1), b = get_global_id(2), i0 = get_group_id(0) * FBR;
    const int QKV = (NH + 2 * KVH) * HS, kh = h / (NH / KVH);
    const int i1 = (i0 + FBR < T ? i0 + FBR : T) - 1;
    int lo[FM];
    float m[FM], l[FM], o[FM][TD];
    for (int a = 0; a < FM; a++) {
        lo[a] = ft_lo(doc, doc_off, has_doc, b, T, W, i0 + ty + TY * a);
        m[a] = -INFINITY;
        l[a] = 0.0f;
        for (int d = 0; d < TD; d++) o[a][d] = 0.0f;
    }
    FT_LOAD_T(Qt, FBR, qkv, qkv_off, QKV, h * HS, i0, scale)
    for (int j0 = ft_lo(doc, doc_off, has_doc, b, T, W, i0); j0 <= i1; j0 += FBC) {
        barrier(CLK_LOCAL_MEM_FENCE);
        FT_LOAD_T(KP, FBC, qkv, qkv_off, QKV, (NH + kh) * HS, j0, 1.0f)
        for (int e = tid; e < FBC * HS; e += NT) {
            const int jr = e / HS, c = e - jr * HS, j = j0 + jr;
            const ulong g = qkv_off + ((ulong)b * T + j) * QKV + (ulong)(NH + KVH + kh) * HS + c;
            Vs[e] = j < T ? qkv[g] : 0.0f;
        }
        /* the whole tile is in local memory before any row reads it */
        barrier(CLK_LOCAL_MEM_FENCE);
        float s[FM][FN];
        for (int a = 0; a < FM; a++)
            for (int n = 0; n < FN; n++) s[a][n] = 0.0f;
#pragma unroll 4
        for (int c = 0; c < HS; c++) {
            float qa[FM], kb[FN];
            for (int a = 0; a < FM; a++) qa[a] = Qt[c * (FBR + 1) + ty + TY * a];
            for (int n = 0; n < FN; n++) kb[n] = KP[c * (FBC + 1) + tx + TX * n];
            for (int a = 0; a < FM; a++)
                for (int n = 0; n < FN; n++) s[a][n] = fma(qa[a], kb[n], s[a][n]);
        }
        for (int a = 0; a < FM; a++) {
            const int i = i0 + ty + TY * a;
            float mx = -INFINITY;
            for (int n = 0; n < FN; n++) {
                const int j = j0 + tx + TX * n;
                s[a][n] = j >= lo[a] && j <= i ? s[a][n] : -INFINITY;
                mx = fmax(mx, s[a][n]);
            }
            red[(ty + TY * a) * TX + tx] = mx;
        }
        /* every partial row maximum is written, and every work-item is done reading K^T */
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int a = 0; a < FM; a++) {
            const int r = ty + TY * a;
            float mx = m[a];
            for (int k = 0; k < TX; k++) mx = fmax(mx, red[r * TX + k]);
            /* a row that has seen no key yet keeps m = -inf; its p are 0 */
            const float corr = mx == -INFINITY ? 1.0f : exp(m[a] - mx);
            float ps = 0.0f;
            for (int n = 0; n < FN; n++) {
                const float p = mx == -INFINITY ? 0.0f : exp(s[a][n] - mx);
                ps += p;
                KP[(tx + TX * n) * (FBR + 1) + r] = p;
            }
            l[a] = l[a] * corr + ps;
            m[a] = mx;
            for (int d = 0; d < TD; d++) o[a][d] *= corr;
        }
        /* P^T is complete before any row reads it */
        barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll 2
        for (int jj = 0; jj < FBC; jj++) {
            float pa[FM], vd[TD];
            for (int a = 0; a < FM; a++) pa[a] = KP[jj * (FBR + 1) + ty + TY * a];
            for (int d = 0; d < TD; d++)
                vd[d] = COLOK(d) ? Vs[jj * HS + tx + TX * d] : 0.0f;
            for (int a = 0; a < FM; a++)
                for (int d = 0; d < TD; d++) o[a][d] = fma(pa[a], vd[d], o[a][d]);
        }
    }
    /* the row sums: partial per work-item, summed across the TX work-items of each row */
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int a = 0; a < FM; a++) red[(ty + TY * a) * TX + tx] = l[a];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int a = 0; a < FM; a++) {
        const int r = ty + TY * a, i = i0 + r;
        if (i >= T) continue;
        float sum = 0.0f;
        for (int k = 0; k < TX; k++) sum += red[r * TX + k];
        const float inv = 1.0f / sum;
        const ulong orow = out_off + ((ulong)b * T + i) * (ulong)(NH * HS) + (ulong)h * HS;
        for (int d = 0; d < TD; d++)
            if (COLOK(d)) out[orow + tx + TX * d] = o[a][d] * inv;
        if (tx == 0) lse[lse_off + ((ulong)b * NH + h) * T + i] = m[a] + log(sum);
    }
}

/* delta[b, h, i] = sum_c dout[b, i, h, c] * out[b, i, h, c]; work-item g = (b T + i) NH + h */
__kernel void flash_tiled_delta(__global float *delta, ulong delta_off, __global const float *dout,
                                ulong dout_off, __global const float *out, ulong out_off, int NH,
                                int T, int n) {
    const int g = get_global_id(0);
    if (g >= n) return;
    const int h = g % NH, bt = g / NH, b = bt / T, i = bt - b * T;
    const ulong row = (ulong)g * HS;
    float D = 0.0f;
    for (int c = 0; c < HS; c++) D = fma(dout[dout_off + row + c], out[out_off + row + c], D);
    delta[delta_off + ((ulong)b * NH + h) * T + i] = D;
}

__kernel __attribute__((reqd_work_group_size(NT, 1, 1))) void
flash_tiled_dq(__global float *dqkv, ulong dqkv_off, __global const float *delta, ulong delta_off,
               __global const float *dout, ulong dout_off, __global const float *lse,
               ulong lse_off, __global const float *qkv, ulong qkv_off, __global const int *doc,
               ulong doc_off, int has_doc, int NH, int KVH, int T, int W, float scale) {
    __local float Qt[HS * (QBR + 1)], dOt[HS * (QBR + 1)];
    __local float Kt[HS * (QBC + 1)], Vt[HS * (QBC + 1)];
    __local float dSt[QBC * (QBR + 1)];
    const int tid = get_local_id(0), tx = tid % TX, ty = tid / TX;
    const int h = get_global_id(1), b = get_global_id(2), i0 = get_group_id(0) * QBR;
    const int QKV = (NH + 2 * KVH) * HS, kh = h / (NH / KVH), C = NH * HS;
    const int i1 = (i0 + QBR < T ? i0 + QBR : T) - 1;
    int lo[QM];
    float L[QM], D[QM], dq[QM][TD];
    for (int a = 0; a < QM; a++) {
        const int i = i0 + ty + TY * a;
        const ulong li = ((ulong)b * NH + h) * T + i;
        lo[a] = ft_lo(doc, doc_off, has_doc, b, T, W, i);
        L[a] = i < T ? lse[lse_off + li] : 0.0f;
        D[a] = i < T ? delta[delta_off + li] : 0.0f;
        for (int d = 0; d < TD; d++) dq[a][d] = 0.0f;
    }
    FT_LOAD_T(Qt, QBR, qkv, qkv_off, QKV, h * HS, i0, scale)
    FT_LOAD_T(dOt, QBR, dout, dout_off, C, h * HS, i0, 1.0f)
    for (int j0 = ft_lo(doc, doc_off, has_doc, b, T, W, i0); j0 <= i1; j0 += QBC) {
        barrier(CLK_LOCAL_MEM_FENCE);
        FT_LOAD_T(Kt, QBC, qkv, qkv_off, QKV, (NH + kh) * HS, j0, 1.0f)
        FT_LOAD_T(Vt, QBC, qkv, qkv_off, QKV, (NH + KVH + kh) * HS, j0, 1.0f)
        /* the whole tile is in local memory before any row reads it */
        barrier(CLK_LOCAL_MEM_FENCE);
        float s[QM][QN], dp[QM][QN];
        for (int a = 0; a < QM; a++)
            for (int n = 0; n < QN; n++) s[a][n] = dp[a][n] = 0.0f;
#pragma unroll 4
        for (int c = 0; c < HS; c++) {
            float qa[QM], oa[QM], kb[QN], vb[QN];
            for (int a = 0; a < QM; a++) {
                qa[a] = Qt[c * (QBR + 1) + ty + TY * a];
                oa[a] = dOt[c * (QBR + 1) + ty + TY * a];
            }
            for (int n = 0; n < QN; n++) {
                kb[n] = Kt[c * (QBC + 1) + tx + TX * n];
                vb[n] = Vt[c * (QBC + 1) + tx + TX * n];
            }
            for (int a = 0; a < QM; a++)
                for (int n = 0; n < QN; n++) {
                    s[a][n] = fma(qa[a], kb[n], s[a][n]);
                    dp[a][n] = fma(oa[a], vb[n], dp[a][n]);
                }
        }
        for (int a = 0; a < QM; a++) {
            const int i = i0 + ty + TY * a;
            for (int n = 0; n < QN; n++) {
                const int j = j0 + tx + TX * n;
                const float ds = j >= lo[a] && j <= i ? exp(s[a][n] - L[a]) * (dp[a][n] - D[a])
                                                      : 0.0f;
                dSt[(tx + TX * n) * (QBR + 1) + ty + TY * a] = ds;
            }
        }
        /* dS^T is complete before any row reads it */
        barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll 2
        for (int jj = 0; jj < QBC; jj++) {
            float da[QM], kd[TD];
            for (int a = 0; a < QM; a++) da[a] = dSt[jj * (QBR + 1) + ty + TY * a];
            for (int d = 0; d < TD; d++)
                kd[d] = COLOK(d) ? Kt[(tx + TX * d) * (QBC + 1) + jj] : 0.0f;
            for (int a = 0; a < QM; a++)
                for (int d = 0; d < TD; d++) dq[a][d] = fma(da[a], kd[d], dq[a][d]);
        }
    }
    for (int a = 0; a < QM; a++) {
        const int i = i0 + ty + TY * a;
        if (i >= T) continue;
        const ulong o = dqkv_off + ((ulong)b * T + i) * QKV + (ulong)h * HS;
        for (int d = 0; d < TD; d++)
            if (COLOK(d)) dqkv[o + tx + TX * d] = dq[a][d] * scale;
    }
}

__kernel __attribute__((reqd_work_group_size(NT, 1, 1))) void
flash_tiled_dkv(__global float *dqkv, ulong dqkv_off, __global const float *delta,
                ulong delta_off, __global const float *dout, ulong dout_off,
                __global const float *lse, ulong lse_off, __global const float *qkv,
                ulong qkv_off, __global const int *doc, ulong doc_off, int has_doc, int NH,
                int KVH, int T, int W, float scale) {
    __local float Kt[HS * (KBK + 1)], Vt[HS * (KBK + 1)];
    __local float Qt[HS * (KBQ + 1)], dOt[HS * (KBQ + 1)];
    __local float Pt[KBQ * (KBK + 1)], dSt[KBQ * (KBK + 1)];
    const int tid = get_local_id(0), tx = tid % TX, ty = tid / TX;
    const int kh = get_global_id(1), b = get_global_id(2), j0 = get_group_id(0) * KBK;
    const int QKV = (NH + 2 * KVH) * HS, G = NH / KVH, C = NH * HS;
    const int j1 = (j0 + KBK < T ? j0 + KBK : T) - 1;
    float dk[KM][TD], dv[KM][TD];
    for (int a = 0; a < KM; a++)
        for (int d = 0; d < TD; d++) dk[a][d] = dv[a][d] = 0.0f;
    FT_LOAD_T(Kt, KBK, qkv, qkv_off, QKV, (NH + kh) * HS, j0, 1.0f)
    FT_LOAD_T(Vt, KBK, qkv, qkv_off, QKV, (NH + KVH + kh) * HS, j0, 1.0f)
    for (int h = kh * G; h < (kh + 1) * G; h++) {
        /* the query blocks that can see keys j0..j1: from query j0 while the block's first row
         * still reaches back to j1 */
        for (int i0 = j0; i0 < T && ft_lo(doc, doc_off, has_doc, b, T, W, i0) <= j1; i0 += KBQ) {
            barrier(CLK_LOCAL_MEM_FENCE);
            FT_LOAD_T(Qt, KBQ, qkv, qkv_off, QKV, h * HS, i0, scale)
            FT_LOAD_T(dOt, KBQ, dout, dout_off, C, h * HS, i0, 1.0f)
            /* the whole tile is in local memory before any row reads it */
            barrier(CLK_LOCAL_MEM_FENCE);
            int lo[KN];
            float L[KN], D[KN];
            for (int n = 0; n < KN; n++) {
                const int i = i0 + tx + TX * n;
                const ulong li = ((ulong)b * NH + h) * T + i;
                lo[n] = ft_lo(doc, doc_off, has_doc, b, T, W, i);
                L[n] = i < T ? lse[lse_off + li] : 0.0f;
                D[n] = i < T ? delta[delta_off + li] : 0.0f;
            }
            float s[KM][KN], dp[KM][KN];
            for (int a = 0; a < KM; a++)
                for (int n = 0; n < KN; n++) s[a][n] = dp[a][n] = 0.0f;
#pragma unroll 4
            for (int c = 0; c < HS; c++) {
                float ka[KM], va[KM], qb[KN], ob[KN];
                for (int a = 0; a < KM; a++) {
                    ka[a] = Kt[c * (KBK + 1) + ty + TY * a];
                    va[a] = Vt[c * (KBK + 1) + ty + TY * a];
                }
                for (int n = 0; n < KN; n++) {
                    qb[n] = Qt[c * (KBQ + 1) + tx + TX * n];
                    ob[n] = dOt[c * (KBQ + 1) + tx + TX * n];
                }
                for (int a = 0; a < KM; a++)
                    for (int n = 0; n < KN; n++) {
                        s[a][n] = fma(ka[a], qb[n], s[a][n]);
                        dp[a][n] = fma(va[a], ob[n], dp[a][n]);
                    }
            }
            for (int a = 0; a < KM; a++) {
                const int j = j0 + ty + TY * a;
                for (int n = 0; n < KN; n++) {
                    const int i = i0 + tx + TX * n;
                    const int vis = j >= lo[n] && j <= i;
                    const float p = vis ? exp(s[a][n] - L[n]) : 0.0f;
                    Pt[(tx + TX * n) * (KBK + 1) + ty + TY * a] = p;
                    dSt[(tx + TX * n) * (KBK + 1) + ty + TY * a] = p * (dp[a][n] - D[n]);
                }
            }
            /* P^T and dS^T are complete before any key reads them */
            barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll 2
            for (int ii = 0; ii < KBQ; ii++) {
                float pa[KM], da[KM], od[TD], qd[TD];
                for (int a = 0; a < KM; a++) {
                    pa[a] = Pt[ii * (KBK + 1) + ty + TY * a];
                    da[a] = dSt[ii * (KBK + 1) + ty + TY * a];
                }
                for (int d = 0; d < TD; d++) {
                    const int ok = COLOK(d);
                    od[d] = ok ? dOt[(tx + TX * d) * (KBQ + 1) + ii] : 0.0f;
                    qd[d] = ok ? Qt[(tx + TX * d) * (KBQ + 1) + ii] : 0.0f;
                }
                for (int a = 0; a < KM; a++)
                    for (int d = 0; d < TD; d++) {
                        dv[a][d] = fma(pa[a], od[d], dv[a][d]);
                        dk[a][d] = fma(da[a], qd[d], dk[a][d]); /* Qt holds s q: dk = s dS q */
                    }
            }
        }
    }
    for (int a = 0; a < KM; a++) {
        const int j = j0 + ty + TY * a;
        if (j >= T) continue;
        const ulong o = dqkv_off + ((ulong)b * T + j) * QKV;
        for (int d = 0; d < TD; d++)
            if (COLOK(d)) {
                dqkv[o + (ulong)(NH + kh) * HS + tx + TX * d] = dk[a][d];
                dqkv[o + (ulong)(NH + KVH + kh) * HS + tx + TX * d] = dv[a][d];
            }
    }
}
