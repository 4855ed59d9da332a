/* clformer: flash attention (backend.h: flash_forward / flash_backward). No (T,T) matrix: each
 * work-group walks tiles of keys (or queries) through local memory with an online softmax; the
 * backward recomputes the probabilities of each tile from the forward's log-sum-exp.
 *
 * Build-time parameters: HS (head size), BQ (query rows per tile), BK (keys per tile). Work-items
 * are rows: in flash_forward and flash_backward_dq one per query row (groups of BQ), in
 * flash_backward_dkv one per key row (groups of BK).
 *
 * Layout (backend.h): qkv (B,T,QKV), QKV = (NH + 2 KVH) HS, row = [q: NH heads | k: KVH | v: KVH];
 * query head h reads kv head h / (NH / KVH) in place. out, dout (B,T,NH*HS); lse, delta (B,NH,T).
 * Mask: query i sees key j when lo(i) <= j <= i, lo(i) = max(i - W + 1 when W > 0, doc[b,i] when
 * has_doc, 0); lo is non-decreasing in i, so the first row of a tile bounds the tile's keys from
 * below and tiles wholly outside the window are never loaded.
 *
 * Launch ranges (cl_flash.c): forward and dq (ceil(T/BQ) * BQ, NH, B) with groups (BQ, 1, 1);
 * dkv (ceil(T/BK) * BK, KVH, B) with groups (BK, 1, 1). The dq kernel writes delta, which the dkv
 * kernel (enqueued after it) reads. dqkv is assigned: dq by the dq kernel, dk and dv by the dkv
 * kernel, every element written once, none read. */
#ifndef HS
#define HS 64
#endif
#ifndef BQ
#define BQ 32
#endif
#ifndef BK
#define BK 32
#endif
/* local row stride of the dkv kernel's own key and value rows: each work-item reads its own row,
 * so an odd stride puts the rows of a warp in different banks */
#define KP (HS + 1)
/* Tile loads split an index e into (row, column) as e / HS and e - row * HS, never e % HS next to
 * e / HS: LLVM turns such a div/rem pair into a `freeze`, which oclgrind's uninitialised-value
 * checker cannot interpret (as in attention.cl and gemm.cl). */

__kernel __attribute__((reqd_work_group_size(BQ, 1, 1))) void
flash_forward(__global float *out, ulong out_off, __global float *lse, ulong lse_off,
              __global const float *qkv, ulong qkv_off, __global const int *doc, ulong doc_off,
              int has_doc, int NH, int KVH, int T, int W, float scale) {
    __local float Ks[BK * HS], Vs[BK * HS];
    const int r = get_local_id(0), h = get_global_id(1), b = get_global_id(2);
    const int i0 = get_group_id(0) * BQ, i = i0 + r, active = i < T;
    const int QKV = (NH + 2 * KVH) * HS, kh = h / (NH / KVH);
    const int i1 = (i0 + BQ < T ? i0 + BQ : T) - 1;
    const int lo = active ? cf_flash_lo(doc, doc_off, has_doc, b, T, W, i) : T;
    float q[HS], acc[HS], s[BK];
    for (int c = 0; c < HS; c++) {
        q[c] = active ? qkv[qkv_off + ((ulong)b * T + i) * QKV + (ulong)h * HS + c] * scale : 0.0f;
        acc[c] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j0 = cf_flash_lo(doc, doc_off, has_doc, b, T, W, i0); j0 <= i1; j0 += BK) {
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = r; e < BK * HS; e += BQ) {
            const int jr = e / HS, j = j0 + jr, c = e - jr * HS;
            const ulong base = qkv_off + ((ulong)b * T + j) * QKV;
            Ks[e] = j <= i1 ? qkv[base + (ulong)(NH + kh) * HS + c] : 0.0f;
            Vs[e] = j <= i1 ? qkv[base + (ulong)(NH + KVH + kh) * HS + c] : 0.0f;
        }
        /* the whole tile is in local memory before any row reads it */
        barrier(CLK_LOCAL_MEM_FENCE);
        /* the whole tile with constant bounds (s stays in registers once unrolled), masked
         * keys at -inf; rows that see none of it (inactive rows, or a window ending before the
         * tile) leave m, l and acc as they are */
        const int a = (j0 > lo ? j0 : lo) - j0, e = (j0 + BK - 1 < i ? j0 + BK - 1 : i) - j0;
        if (a <= e) {
            float mx = m;
            for (int jj = 0; jj < BK; jj++) {
                float d = 0.0f;
#pragma unroll
                for (int c = 0; c < HS; c++) d = fma(q[c], Ks[jj * HS + c], d);
                s[jj] = jj >= a && jj <= e ? d : -INFINITY;
                mx = fmax(mx, s[jj]);
            }
            const float corr = exp(m - mx); /* 0 on the first tile (m = -inf) */
            l *= corr;
#pragma unroll
            for (int c = 0; c < HS; c++) acc[c] *= corr;
            for (int jj = 0; jj < BK; jj++) {
                const float p = exp(s[jj] - mx); /* 0 for a masked key */
                l += p;
#pragma unroll
                for (int c = 0; c < HS; c++) acc[c] = fma(p, Vs[jj * HS + c], acc[c]);
            }
            m = mx;
        }
    }
    if (active) {
        const float inv = 1.0f / l;
        const ulong o = out_off + ((ulong)b * T + i) * (ulong)(NH * HS) + (ulong)h * HS;
        for (int c = 0; c < HS; c++) out[o + c] = acc[c] * inv;
        lse[lse_off + ((ulong)b * NH + h) * T + i] = m + log(l);
    }
}

/* dq of one query row per work-item, and delta = rowsum(dout * out) of that row (written for the
 * dkv kernel) */
__kernel __attribute__((reqd_work_group_size(BQ, 1, 1))) void
flash_backward_dq(__global float *dqkv, ulong dqkv_off, __global float *delta, ulong delta_off,
                  __global const float *dout, ulong dout_off, __global const float *out,
                  ulong out_off, __global const float *lse, ulong lse_off,
                  __global const float *qkv, ulong qkv_off, __global const int *doc,
                  ulong doc_off, int has_doc, int NH, int KVH, int T, int W, float scale) {
    __local float Ks[BK * HS], Vs[BK * HS];
    const int r = get_local_id(0), h = get_global_id(1), b = get_global_id(2);
    const int i0 = get_group_id(0) * BQ, i = i0 + r, active = i < T;
    const int QKV = (NH + 2 * KVH) * HS, kh = h / (NH / KVH);
    const int i1 = (i0 + BQ < T ? i0 + BQ : T) - 1;
    const int lo = active ? cf_flash_lo(doc, doc_off, has_doc, b, T, W, i) : T;
    const ulong orow = ((ulong)b * T + i) * (ulong)(NH * HS) + (ulong)h * HS;
    float q[HS], dO[HS], dq[HS];
    float D = 0.0f;
    for (int c = 0; c < HS; c++) {
        q[c] = active ? qkv[qkv_off + ((ulong)b * T + i) * QKV + (ulong)h * HS + c] * scale : 0.0f;
        dO[c] = active ? dout[dout_off + orow + c] : 0.0f;
        D = fma(dO[c], active ? out[out_off + orow + c] : 0.0f, D);
        dq[c] = 0.0f;
    }
    const ulong li = ((ulong)b * NH + h) * T + i;
    const float L = active ? lse[lse_off + li] : 0.0f;
    if (active) delta[delta_off + li] = D;
    for (int j0 = cf_flash_lo(doc, doc_off, has_doc, b, T, W, i0); j0 <= i1; j0 += BK) {
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = r; e < BK * HS; e += BQ) {
            const int jr = e / HS, j = j0 + jr, c = e - jr * HS;
            const ulong base = qkv_off + ((ulong)b * T + j) * QKV;
            Ks[e] = j <= i1 ? qkv[base + (ulong)(NH + kh) * HS + c] : 0.0f;
            Vs[e] = j <= i1 ? qkv[base + (ulong)(NH + KVH + kh) * HS + c] : 0.0f;
        }
        /* the whole tile is in local memory before any row reads it */
        barrier(CLK_LOCAL_MEM_FENCE);
        const int a = (j0 > lo ? j0 : lo) - j0, e = (j0 + BK - 1 < i ? j0 + BK - 1 : i) - j0;
        for (int jj = a; jj <= e; jj++) {
            float sc = 0.0f, dp = 0.0f;
#pragma unroll
            for (int c = 0; c < HS; c++) {
                sc = fma(q[c], Ks[jj * HS + c], sc);
                dp = fma(dO[c], Vs[jj * HS + c], dp);
            }
            const float ds = exp(sc - L) * (dp - D);
#pragma unroll
            for (int c = 0; c < HS; c++) dq[c] = fma(ds, Ks[jj * HS + c], dq[c]);
        }
    }
    if (active) {
        const ulong o = dqkv_off + ((ulong)b * T + i) * QKV + (ulong)h * HS;
        for (int c = 0; c < HS; c++) dqkv[o + c] = dq[c] * scale;
    }
}

/* dk and dv of one key row of kv head kh per work-item, summed over the NH / KVH query heads of
 * its group and every query tile that sees the key tile: no atomics, one writer per element */
__kernel __attribute__((reqd_work_group_size(BK, 1, 1))) void
flash_backward_dkv(__global float *dqkv, ulong dqkv_off, __global const float *delta,
                   ulong delta_off, __global const float *dout, ulong dout_off,
                   __global const float *lse, ulong lse_off, __global const float *qkv,
                   ulong qkv_off, __global const int *doc, ulong doc_off, int has_doc, int NH,
                   int KVH, int T, int W, float scale) {
    __local float Qs[BQ * HS], dOs[BQ * HS], Ks[BK * KP], Vs[BK * KP];
    __local float Ls[BQ], Ds[BQ];
    __local int Lo[BQ];
    const int r = get_local_id(0), kh = get_global_id(1), b = get_global_id(2);
    const int j0 = get_group_id(0) * BK, j = j0 + r, active = j < T;
    const int QKV = (NH + 2 * KVH) * HS, G = NH / KVH, C = NH * HS;
    const int j1 = (j0 + BK < T ? j0 + BK : T) - 1;
    for (int e = r; e < BK * HS; e += BK) {
        const int jr = e / HS, c = e - jr * HS, jj = j0 + jr;
        const ulong base = qkv_off + ((ulong)b * T + jj) * QKV;
        Ks[jr * KP + c] = jj <= j1 ? qkv[base + (ulong)(NH + kh) * HS + c] : 0.0f;
        Vs[jr * KP + c] = jj <= j1 ? qkv[base + (ulong)(NH + KVH + kh) * HS + c] : 0.0f;
    }
    float dk[HS], dv[HS];
    for (int c = 0; c < HS; c++) dk[c] = dv[c] = 0.0f;
    for (int h = kh * G; h < (kh + 1) * G; h++) {
        /* the query tiles that can see keys j0..j1: from the one holding query j0 while the
         * tile's first row still reaches back to j1 */
        for (int i0 = j0 / BQ * BQ; i0 < T && cf_flash_lo(doc, doc_off, has_doc, b, T, W, i0) <= j1;
             i0 += BQ) {
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int e = r; e < BQ * HS; e += BK) {
                const int ir = e / HS, c = e - ir * HS, ii = i0 + ir;
                const int ok = ii < T;
                Qs[e] = ok ? qkv[qkv_off + ((ulong)b * T + ii) * QKV + (ulong)h * HS + c] * scale
                           : 0.0f;
                dOs[e] = ok ? dout[dout_off + ((ulong)b * T + ii) * (ulong)C + (ulong)h * HS + c]
                            : 0.0f;
            }
            for (int ir = r; ir < BQ; ir += BK) {
                const int ii = i0 + ir, ok = ii < T;
                const ulong li = ((ulong)b * NH + h) * T + ii;
                Ls[ir] = ok ? lse[lse_off + li] : 0.0f;
                Ds[ir] = ok ? delta[delta_off + li] : 0.0f;
                Lo[ir] = cf_flash_lo(doc, doc_off, has_doc, b, T, W, ii); /* T: sees nothing */
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            if (active)
                for (int ir = 0; ir < BQ; ir++) {
                    const int ii = i0 + ir;
                    if (j < Lo[ir] || j > ii) continue;
                    float sc = 0.0f, dp = 0.0f;
#pragma unroll
                    for (int c = 0; c < HS; c++) {
                        sc = fma(Qs[ir * HS + c], Ks[r * KP + c], sc);
                        dp = fma(dOs[ir * HS + c], Vs[r * KP + c], dp);
                    }
                    const float p = exp(sc - Ls[ir]), ds = p * (dp - Ds[ir]);
#pragma unroll
                    for (int c = 0; c < HS; c++) {
                        dv[c] = fma(p, dOs[ir * HS + c], dv[c]);
                        dk[c] = fma(ds, Qs[ir * HS + c], dk[c]); /* Qs holds s q: dk = s ds q */
                    }
                }
        }
    }
    if (active) {
        const ulong o = dqkv_off + ((ulong)b * T + j) * QKV;
        for (int c = 0; c < HS; c++) {
            dqkv[o + (ulong)(NH + kh) * HS + c] = dk[c];
            dqkv[o + (ulong)(NH + KVH + kh) * HS + c] = dv[c];
        }
    }
}
