/* clformer: flash attention, register-tiled (backend.h: flash_forward / flash_backward; host code
 * src/backend/opencl/cl_flash.c). The same contract and mask as flash_attention.cl (the kernels
 * with one work-item per row, kept as the "rows" variant), computed FlashAttention-2 style:
 *
 * - flash_tiled_forward: a work-group of TX x TY work-items owns BR = TY * FM query rows of one
 *   (batch, head) and walks the key/value blocks of BC = TX * FN rows that its rows can see,
 *   staged in local memory. Work-item (tx, ty) computes the FM x FN scores of rows ty + TY a and
 *   keys tx + TX n, the online softmax in fp32 (row maxima reduced across the TX work-items of a
 *   row through local memory; running sums kept per work-item and reduced once at the end), and
 *   keeps the output of its FM rows at the columns tx + TX d in registers. Writes out and lse.
 * - flash_tiled_delta: delta = rowsum(dout * out), one work-item per (b, i, h).
 * - flash_tiled_dq: the forward's shape (BR = TY * QM rows, BC = TX * QN keys): recomputes P from
 *   lse tile by tile, dP = dO V^T, dS = P (dP - delta) through local memory, dQ += dS K.
 * - flash_tiled_dkv: a work-group per block of BK = TY * KM keys of one (batch, kv head): it walks
 *   the query heads of its group and the blocks of BQ = TX * KN queries that see its keys,
 *   accumulating dK and dV of its keys in registers. One writer per element: no atomics.
 *
 * Every product contracts an index that is contiguous in local memory: each operand tile is kept
 * as rows of float4 along the contracted index (Q, K, V, dO rows along the head dimension for the
 * scores; P, dS and the transposed V, K, Q, dO along keys or queries for the products after the
 * softmax), so one local read brings four values of the contraction and feeds 4 FM (or FN)
 * multiply-adds. Row strides are an odd number of float4s, so the rows tx + TX n that a warp
 * reads fall in different banks.
 *
 * Build-time parameters: HS (head size, a multiple of 4), TX, TY (work-group TX * TY, launched as
 * one dimension), FM, FN, QM, QN, KM, KN (above; TX a multiple of 4). Launch ranges
 * (cl_flash.c): forward and dq (ceil(T / BR) * TX * TY, NH, B), dkv (ceil(T / BK) * TX * TY, KVH,
 * B), groups (TX * TY, 1, 1); delta (ceil(B * T * NH / 64) * 64) before dq and dkv.
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
#define KN 1
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
/* float4s per local row of n floats: n / 4 rounded up to an odd number (conflict-free strides) */
#define ODD4(n) ((n) / 4 % 2 ? (n) / 4 : (n) / 4 + 1)
#define H4 (HS / 4)
#define HSP4 ODD4(HS)
/* column tx + TX d of a head row exists (always when TX divides HS) */
#define COLOK(d) (HS % TX == 0 || tx + TX * (d) < HS)
/* acc += the dot product of two float4s, component by component */
#define FMA4(acc_, u_, v_)                                                                         \
    acc_ = fma((u_).w, (v_).w, fma((u_).z, (v_).z, fma((u_).y, (v_).y, fma((u_).x, (v_).x, acc_))))

/* Tile loads split an index e into (row, column) as e / HS and e - row * HS, never e % HS next to
 * e / HS (oclgrind cannot interpret the `freeze` LLVM makes of such a pair; flash_attention.cl). */

/* rows rows (from r0) of the head columns col0.. of a (B, T, ld) tensor, times mul, rows past T
 * as 0: into X (rows along the head dimension, stride HSP4 float4s) and, when XT is not 0, also
 * into XT (transposed: XT[c][row], stride ODD4(rows) float4s) */
#define FT_LOAD(X, XT, rows, src, off, ld, col0, r0, mul)                                          \
    for (int e_ = tid; e_ < (rows) * HS; e_ += NT) {                                               \
        const int rr_ = e_ / HS, c_ = e_ - rr_ * HS, i_ = (r0) + rr_;                              \
        const ulong g_ = (off) + ((ulong)b * T + i_) * (ulong)(ld) + (ulong)(col0) + c_;          \
        const float x_ = i_ < T ? (src)[g_] * (mul) : 0.0f;                                        \
        ((__local float *)(X))[rr_ * HSP4 * 4 + c_] = x_;                                          \
        if (XT) ((__local float *)(XT))[c_ * ODD4(rows) * 4 + rr_] = x_;                           \
    }

__kernel __attribute__((reqd_work_group_size(NT, 1, 1))) void
flash_tiled_forward(__global float *out, ulong out_off, __global float *lse, ulong lse_off,
                    __global const float *qkv, ulong qkv_off, __global const int *doc,
                    ulong doc_off, int has_doc, int NH, int KVH, int T, int W, float scale) {
    __local float4 Qs[FBR * HSP4];
    __local float4 KP[TMAX(FBC * HSP4, FBR * ODD4(FBC))]; /* K rows, then P rows */
    __local float4 Vt[HS * ODD4(FBC)];
    __local float4 red[FBR * TX / 4]; /* per row, the TX work-items' partial maxima (or sums) */
    const int tid = get_local_id(0), ty = tid / TX, tx = tid - ty * TX;
    const int h = get_global_id(1), b = get_global_id(2), i0 = get_group_id(0) * FBR;
    const int QKV = (NH + 2 * KVH) * HS, kh = h / (NH / KVH);
    const int i1 = (i0 + FBR < T ? i0 + FBR : T) - 1;
    int lo[FM];
    float m[FM], l[FM], o[FM][TD];
    for (int a = 0; a < FM; a++) {
        lo[a] = cf_flash_lo(doc, doc_off, has_doc, b, T, W, i0 + ty + TY * a);
        m[a] = -INFINITY;
        l[a] = 0.0f;
        for (int d = 0; d < TD; d++) o[a][d] = 0.0f;
    }
    FT_LOAD(Qs, 0, FBR, qkv, qkv_off, QKV, h * HS, i0, scale)
    for (int j0 = cf_flash_lo(doc, doc_off, has_doc, b, T, W, i0); j0 <= i1; j0 += FBC) {
        barrier(CLK_LOCAL_MEM_FENCE);
        FT_LOAD(KP, 0, FBC, qkv, qkv_off, QKV, (NH + kh) * HS, j0, 1.0f)
        for (int e = tid; e < FBC * HS; e += NT) {
            const int jr = e / HS, c = e - jr * HS, j = j0 + jr;
            const ulong g = qkv_off + ((ulong)b * T + j) * QKV + (ulong)(NH + KVH + kh) * HS + c;
            ((__local float *)Vt)[c * ODD4(FBC) * 4 + jr] = j < T ? qkv[g] : 0.0f;
        }
        /* the whole tile is in local memory before any row reads it */
        barrier(CLK_LOCAL_MEM_FENCE);
        float s[FM][FN];
        for (int a = 0; a < FM; a++)
            for (int n = 0; n < FN; n++) s[a][n] = 0.0f;
        for (int c = 0; c < H4; c++) {
            float4 qa[FM], kb[FN];
            for (int a = 0; a < FM; a++) qa[a] = Qs[(ty + TY * a) * HSP4 + c];
            for (int n = 0; n < FN; n++) kb[n] = KP[(tx + TX * n) * HSP4 + c];
            for (int a = 0; a < FM; a++)
                for (int n = 0; n < FN; n++) FMA4(s[a][n], qa[a], kb[n]);
        }
        for (int a = 0; a < FM; a++) {
            const int i = i0 + ty + TY * a;
            float mx = -INFINITY;
            for (int n = 0; n < FN; n++) {
                const int j = j0 + tx + TX * n;
                s[a][n] = j >= lo[a] && j <= i ? s[a][n] : -INFINITY;
                mx = fmax(mx, s[a][n]);
            }
            ((__local float *)red)[(ty + TY * a) * TX + tx] = mx;
        }
        /* every partial row maximum is written, and every work-item is done reading K */
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int a = 0; a < FM; a++) {
            const int r = ty + TY * a;
            float mx = m[a];
            for (int k = 0; k < TX / 4; k++) {
                const float4 x = red[r * (TX / 4) + k];
                mx = fmax(mx, fmax(fmax(x.x, x.y), fmax(x.z, x.w)));
            }
            /* a row that has seen no key yet keeps m = -inf; its p are 0 */
            const float corr = mx == -INFINITY ? 1.0f : exp(m[a] - mx);
            float ps = 0.0f;
            for (int n = 0; n < FN; n++) {
                const float p = mx == -INFINITY ? 0.0f : exp(s[a][n] - mx);
                ps += p;
                ((__local float *)KP)[r * ODD4(FBC) * 4 + tx + TX * n] = p;
            }
            l[a] = l[a] * corr + ps;
            m[a] = mx;
            for (int d = 0; d < TD; d++) o[a][d] *= corr;
        }
        /* P is complete before any row reads it */
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int j = 0; j < FBC / 4; j++) {
            float4 pa[FM], vd[TD];
            for (int a = 0; a < FM; a++) pa[a] = KP[(ty + TY * a) * ODD4(FBC) + j];
            for (int d = 0; d < TD; d++)
                vd[d] = COLOK(d) ? Vt[(tx + TX * d) * ODD4(FBC) + j] : (float4)(0.0f);
            for (int a = 0; a < FM; a++)
                for (int d = 0; d < TD; d++) FMA4(o[a][d], pa[a], vd[d]);
        }
    }
    /* the row sums: partial per work-item, summed across the TX work-items of each row */
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int a = 0; a < FM; a++) ((__local float *)red)[(ty + TY * a) * TX + tx] = l[a];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int a = 0; a < FM; a++) {
        const int r = ty + TY * a, i = i0 + r;
        if (i >= T) continue;
        float sum = 0.0f;
        for (int k = 0; k < TX / 4; k++) {
            const float4 x = red[r * (TX / 4) + k];
            sum += (x.x + x.y) + (x.z + x.w);
        }
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
    const int bt = g / NH, h = g - bt * NH, b = bt / T, i = bt - b * T;
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
    __local float4 Qs[QBR * HSP4], dOs[QBR * HSP4];
    __local float4 Ks[QBC * HSP4], Kt[HS * ODD4(QBC)];
    __local float4 VS[TMAX(QBC * HSP4, QBR * ODD4(QBC))]; /* V rows, then dS rows */
    const int tid = get_local_id(0), ty = tid / TX, tx = tid - ty * TX;
    const int h = get_global_id(1), b = get_global_id(2), i0 = get_group_id(0) * QBR;
    const int QKV = (NH + 2 * KVH) * HS, kh = h / (NH / KVH), C = NH * HS;
    const int i1 = (i0 + QBR < T ? i0 + QBR : T) - 1;
    int lo[QM];
    float L[QM], D[QM], dq[QM][TD];
    for (int a = 0; a < QM; a++) {
        const int i = i0 + ty + TY * a;
        const ulong li = ((ulong)b * NH + h) * T + i;
        lo[a] = cf_flash_lo(doc, doc_off, has_doc, b, T, W, i);
        L[a] = i < T ? lse[lse_off + li] : 0.0f;
        D[a] = i < T ? delta[delta_off + li] : 0.0f;
        for (int d = 0; d < TD; d++) dq[a][d] = 0.0f;
    }
    FT_LOAD(Qs, 0, QBR, qkv, qkv_off, QKV, h * HS, i0, scale)
    FT_LOAD(dOs, 0, QBR, dout, dout_off, C, h * HS, i0, 1.0f)
    for (int j0 = cf_flash_lo(doc, doc_off, has_doc, b, T, W, i0); j0 <= i1; j0 += QBC) {
        barrier(CLK_LOCAL_MEM_FENCE);
        FT_LOAD(Ks, Kt, QBC, qkv, qkv_off, QKV, (NH + kh) * HS, j0, 1.0f)
        FT_LOAD(VS, 0, QBC, qkv, qkv_off, QKV, (NH + KVH + kh) * HS, j0, 1.0f)
        /* the whole tile is in local memory before any row reads it */
        barrier(CLK_LOCAL_MEM_FENCE);
        float s[QM][QN], dp[QM][QN];
        for (int a = 0; a < QM; a++)
            for (int n = 0; n < QN; n++) s[a][n] = dp[a][n] = 0.0f;
        for (int c = 0; c < H4; c++) {
            float4 qa[QM], oa[QM], kb[QN], vb[QN];
            for (int a = 0; a < QM; a++) {
                qa[a] = Qs[(ty + TY * a) * HSP4 + c];
                oa[a] = dOs[(ty + TY * a) * HSP4 + c];
            }
            for (int n = 0; n < QN; n++) {
                kb[n] = Ks[(tx + TX * n) * HSP4 + c];
                vb[n] = VS[(tx + TX * n) * HSP4 + c];
            }
            for (int a = 0; a < QM; a++)
                for (int n = 0; n < QN; n++) {
                    FMA4(s[a][n], qa[a], kb[n]);
                    FMA4(dp[a][n], oa[a], vb[n]);
                }
        }
        /* every work-item is done reading V before dS overwrites it */
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int a = 0; a < QM; a++) {
            const int i = i0 + ty + TY * a;
            for (int n = 0; n < QN; n++) {
                const int j = j0 + tx + TX * n;
                const float ds = j >= lo[a] && j <= i ? exp(s[a][n] - L[a]) * (dp[a][n] - D[a])
                                                      : 0.0f;
                ((__local float *)VS)[(ty + TY * a) * ODD4(QBC) * 4 + tx + TX * n] = ds;
            }
        }
        /* dS is complete before any row reads it */
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int j = 0; j < QBC / 4; j++) {
            float4 da[QM], kd[TD];
            for (int a = 0; a < QM; a++) da[a] = VS[(ty + TY * a) * ODD4(QBC) + j];
            for (int d = 0; d < TD; d++)
                kd[d] = COLOK(d) ? Kt[(tx + TX * d) * ODD4(QBC) + j] : (float4)(0.0f);
            for (int a = 0; a < QM; a++)
                for (int d = 0; d < TD; d++) FMA4(dq[a][d], da[a], kd[d]);
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
    __local float4 Ks[KBK * HSP4], Vs[KBK * HSP4];
    /* Q and dO rows, then P and dS rows (key by key, along the queries) */
    __local float4 QP[TMAX(KBQ * HSP4, KBK * ODD4(KBQ))], OS[TMAX(KBQ * HSP4, KBK * ODD4(KBQ))];
    __local float4 Qt[HS * ODD4(KBQ)], dOt[HS * ODD4(KBQ)];
    const int tid = get_local_id(0), ty = tid / TX, tx = tid - ty * TX;
    const int kh = get_global_id(1), b = get_global_id(2), j0 = get_group_id(0) * KBK;
    const int QKV = (NH + 2 * KVH) * HS, G = NH / KVH, C = NH * HS;
    const int j1 = (j0 + KBK < T ? j0 + KBK : T) - 1;
    float dk[KM][TD], dv[KM][TD];
    for (int a = 0; a < KM; a++)
        for (int d = 0; d < TD; d++) dk[a][d] = dv[a][d] = 0.0f;
    FT_LOAD(Ks, 0, KBK, qkv, qkv_off, QKV, (NH + kh) * HS, j0, 1.0f)
    FT_LOAD(Vs, 0, KBK, qkv, qkv_off, QKV, (NH + KVH + kh) * HS, j0, 1.0f)
    for (int h = kh * G; h < (kh + 1) * G; h++) {
        /* the query blocks that can see keys j0..j1: from query j0 while the block's first row
         * still reaches back to j1 */
        for (int i0 = j0; i0 < T && cf_flash_lo(doc, doc_off, has_doc, b, T, W, i0) <= j1;
             i0 += KBQ) {
            barrier(CLK_LOCAL_MEM_FENCE);
            FT_LOAD(QP, Qt, KBQ, qkv, qkv_off, QKV, h * HS, i0, scale)
            FT_LOAD(OS, dOt, KBQ, dout, dout_off, C, h * HS, i0, 1.0f)
            /* the whole tile is in local memory before any row reads it */
            barrier(CLK_LOCAL_MEM_FENCE);
            int lo[KN];
            float L[KN], D[KN];
            for (int n = 0; n < KN; n++) {
                const int i = i0 + tx + TX * n;
                const ulong li = ((ulong)b * NH + h) * T + i;
                lo[n] = cf_flash_lo(doc, doc_off, has_doc, b, T, W, i);
                L[n] = i < T ? lse[lse_off + li] : 0.0f;
                D[n] = i < T ? delta[delta_off + li] : 0.0f;
            }
            float s[KM][KN], dp[KM][KN];
            for (int a = 0; a < KM; a++)
                for (int n = 0; n < KN; n++) s[a][n] = dp[a][n] = 0.0f;
            for (int c = 0; c < H4; c++) {
                float4 ka[KM], va[KM], qb[KN], ob[KN];
                for (int a = 0; a < KM; a++) {
                    ka[a] = Ks[(ty + TY * a) * HSP4 + c];
                    va[a] = Vs[(ty + TY * a) * HSP4 + c];
                }
                for (int n = 0; n < KN; n++) {
                    qb[n] = QP[(tx + TX * n) * HSP4 + c];
                    ob[n] = OS[(tx + TX * n) * HSP4 + c];
                }
                for (int a = 0; a < KM; a++)
                    for (int n = 0; n < KN; n++) {
                        FMA4(s[a][n], ka[a], qb[n]);
                        FMA4(dp[a][n], va[a], ob[n]);
                    }
            }
            /* every work-item is done reading the Q and dO rows before P and dS overwrite them */
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int a = 0; a < KM; a++) {
                const int j = j0 + ty + TY * a;
                for (int n = 0; n < KN; n++) {
                    const int i = i0 + tx + TX * n;
                    const float p = j >= lo[n] && j <= i ? exp(s[a][n] - L[n]) : 0.0f;
                    const int at = (ty + TY * a) * ODD4(KBQ) * 4 + tx + TX * n;
                    ((__local float *)QP)[at] = p;
                    ((__local float *)OS)[at] = p * (dp[a][n] - D[n]);
                }
            }
            /* P and dS are complete before any key reads them */
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int i = 0; i < KBQ / 4; i++) {
                float4 pa[KM], da[KM], od[TD], qd[TD];
                for (int a = 0; a < KM; a++) {
                    pa[a] = QP[(ty + TY * a) * ODD4(KBQ) + i];
                    da[a] = OS[(ty + TY * a) * ODD4(KBQ) + i];
                }
                for (int d = 0; d < TD; d++) {
                    od[d] = COLOK(d) ? dOt[(tx + TX * d) * ODD4(KBQ) + i] : (float4)(0.0f);
                    qd[d] = COLOK(d) ? Qt[(tx + TX * d) * ODD4(KBQ) + i] : (float4)(0.0f);
                }
                for (int a = 0; a < KM; a++)
                    for (int d = 0; d < TD; d++) {
                        FMA4(dv[a][d], pa[a], od[d]);
                        FMA4(dk[a][d], da[a], qd[d]); /* Qt holds s q: dk = s dS q */
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
