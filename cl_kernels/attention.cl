/* clformer: causal self-attention kernels, two families in one file.
 *
 * Built without HS (at backend creation, with -DLS): the non-GEMM parts of the batched-GEMM path.
 * The host computes the products (Q K^T, att V and their gradients) with the batched GEMM; these
 * kernels do the causal softmax and its backward, one work-group per row of the (B, NH, T, T)
 * score tensor (exactly rows groups are launched: no early exit ahead of the barriers).
 * Build-time parameter: LS, the work-group size (a power of two).
 *
 * Built with -DHS (on first use, per head size; src/backend/opencl/cl_attention.c): the fused
 * kernels, the whole of attention forward in one launch and backward in one launch, register-tiled
 * over local-memory tiles (see below). Build-time parameters: HS the head size (1..64: each
 * work-item's tiles are private arrays with constant indices, registers on GPUs), TY the
 * work-group height (8 or 16: groups of 16 x TY work-items), ATT_UNROLL the unrolling of the tile
 * copies. */

#ifndef HS

#ifndef LS
#define LS 256
#endif


/* In place on att(rows, T), rows = B*NH*T, row r is query position t = r % T: the scaled scores
 * (already multiplied by 1/sqrt(hs)) become softmax probabilities over t2 <= t; t2 > t are set to 0. */
__kernel void attention_softmax_forward(__global float *att, ulong att_off, int rows, int T) {
    __local float red[LS];
    int r = get_group_id(0), lid = get_local_id(0);
    int t = r % T;
    __global float *a = att + att_off + (size_t)r * T;
    float mx = -INFINITY;
    for (int i = lid; i <= t; i += LS) mx = fmax(mx, a[i]);
    mx = cf_group_reduce(red, mx, 1);
    float s = 0.0f;
    for (int i = lid; i <= t; i += LS) s += exp(a[i] - mx);
    s = cf_group_reduce(red, s, 0);
    float inv = 1.0f / s;
    for (int i = lid; i < T; i += LS) a[i] = i <= t ? exp(a[i] - mx) * inv : 0.0f;
}

/* dpreatt(rows, T) = scale * att * (datt - sum_t2 att * datt) over t2 <= t, 0 above the diagonal.
 * The scale folds the 1/sqrt(hs) of the forward into the score gradient. dpreatt may alias datt. */
__kernel void attention_softmax_backward(__global float *dpreatt, ulong dp_off,
                                         __global const float *datt, ulong da_off,
                                         __global const float *att, ulong att_off, int rows,
                                         int T, float scale) {
    __local float red[LS];
    int r = get_group_id(0), lid = get_local_id(0);
    int t = r % T;
    __global const float *a = att + att_off + (size_t)r * T;
    __global const float *da = datt + da_off + (size_t)r * T;
    __global float *dp = dpreatt + dp_off + (size_t)r * T;
    float s = 0.0f;
    for (int i = lid; i <= t; i += LS) s += a[i] * da[i];
    s = cf_group_reduce(red, s, 0);
    for (int i = lid; i < T; i += LS) dp[i] = i <= t ? scale * a[i] * (da[i] - s) : 0.0f;
}

#else /* HS: the fused kernels */

/* Work-groups of TX x TY work-items (tx = lid % TX, ty = lid / TX). A block is BM = 4 * TY query
 * rows (or keys); keys (or query rows) are staged BK at a time in local memory. Products run as
 * two register-tiled micro-kernels on local tiles:
 *   NT, scores-like: s(BM, BK) = A(BM, HS) B(BK, HS)^T, work-item rows ty + TY*i (i < 4), columns
 *       tx + TX*j (j < NK = 2): per 4 of HS, 6 float4 reads for 32 multiply-adds;
 *   TN, outputs-like: acc(BM, HS) += At(BK, BM)^T B(BK, HS), work-item rows 4*ty + i, head
 *       dimensions tx + TX*j (j < RD): 4*RD multiply-adds per 1 + RD local reads.
 * Local row strides are 4 more than a multiple of 8 floats, so that the float4 reads of 16
 * consecutive rows spread over all banks, and multiples of 4, so that they are aligned. */
#if !defined(TY) || (TY != 8 && TY != 16) || HS < 1 || HS > 64
#error "the fused attention kernels need -DHS=1..64 and -DTY=8 or 16"
#endif
#define TX 16
#define WG (TX * TY)
#define BM (4 * TY)
#define BK 32
#define NK (BK / TX)
#define HS4 ((HS + 3) / 4)
#define RD ((HS + TX - 1) / TX)
#define LDK (TX * RD + 4) /* [row][head dim] tiles; columns past HS hold zeros */
#define LDA (BM + 4)      /* [k][m] tiles */
/* the power of two >= TX * RD that the row copies walk (no division: see att_rows) */
#define LDR (TX * RD <= 16 ? 16 : TX * RD <= 32 ? 32 : 64)

/* Unrolling. ATT_UNROLL is 8 on GPUs (from the host): the cooperative copies, which run a fixed
 * number of steps of WG elements, are unrolled that far, so that a work-item has that many global
 * loads in flight instead of paying one memory latency per step, and the micro-kernels' loops
 * are unrolled in full, so that the tiles are registers. CPU devices (ATT_UNROLL 1), which run
 * the work-items of a group one after another, keep the loops: PoCL compiles the unrolled kernels
 * ten times slower, for no gain. */
#ifndef ATT_UNROLL
#define ATT_UNROLL 1
#endif
#define ATT_PRAGMA_(x) _Pragma(#x)
#define ATT_PRAGMA(x) ATT_PRAGMA_(x)
#if ATT_UNROLL > 1
#define ATT_UNROLL_ALL ATT_PRAGMA(unroll)
#define ATT_UNROLL_K ATT_PRAGMA(unroll 4)
#else
#define ATT_UNROLL_ALL
#define ATT_UNROLL_K
#endif
#define ATT_STEPS(total) (((total) + WG - 1) / WG)

/* Rows [r0, r0 + n) of a head's (T, HS) slice (row stride ld), times c, into dst[n][LDK]; zeros
 * past row T and column HS. Consecutive work-items read consecutive floats of a row. Indices
 * come from unsigned divisions by powers of two (shifts): a division and a remainder by one
 * value become a `freeze` instruction, which oclgrind's uninitialised-value checker refuses. */
static inline __attribute__((always_inline)) void
att_rows(__local float *dst, __global const float *src, int ld, int r0, const int n, int T,
         float c) {
    ATT_PRAGMA(unroll ATT_UNROLL)
    for (int i = 0; i < ATT_STEPS(n * LDR); i++) {
        const uint e = get_local_id(0) + (uint)i * WG, rr = e / LDR, cc = e % LDR;
        const int row = r0 + (int)rr;
        if (e < (uint)(n * LDR) && cc < TX * RD)
            dst[rr * LDK + cc] = row < T && cc < HS ? c * src[(size_t)row * ld + cc] : 0.0f;
    }
}

/* The same for BK rows in two halves, so that a step's copy can be issued one step ahead
 * (software pipelining: the loads fly while the previous step computes): att_rows_load fetches
 * this work-item's elements into registers, att_rows_store puts them into the local tile. */
#define RSTEPS ATT_STEPS(BK * LDR)
static inline __attribute__((always_inline)) void
att_rows_load(float x[RSTEPS], __global const float *src, int ld, int r0, int T) {
    ATT_UNROLL_ALL
    for (int i = 0; i < RSTEPS; i++) {
        const uint e = get_local_id(0) + (uint)i * WG, rr = e / LDR, cc = e % LDR;
        const int row = r0 + (int)rr;
        x[i] = e < BK * LDR && row < T && cc < HS ? src[(size_t)row * ld + cc] : 0.0f;
    }
}
static inline __attribute__((always_inline)) void att_rows_store(__local float *dst,
                                                                  const float x[RSTEPS]) {
    ATT_UNROLL_ALL
    for (int i = 0; i < RSTEPS; i++) {
        const uint e = get_local_id(0) + (uint)i * WG, rr = e / LDR, cc = e % LDR;
        if (e < BK * LDR && cc < TX * RD) dst[rr * LDK + cc] = x[i];
    }
}

/* Rows [r0, r0 + BK) x columns [c0, c0 + BM) of a head's (T, T) matrix, for a local [BK][LDA]
 * tile, in the same two halves; zeros outside the matrix and above the diagonal (column > row). */
#define TSTEPS ATT_STEPS(BK * BM)
static inline __attribute__((always_inline)) void
att_tile_load(float x[TSTEPS], __global const float *m, int r0, int c0, int T) {
    ATT_UNROLL_ALL
    for (int i = 0; i < TSTEPS; i++) {
        const uint e = get_local_id(0) + (uint)i * WG, rr = e / BM, cc = e % BM;
        const int row = r0 + (int)rr, col = c0 + (int)cc;
        x[i] = e < BK * BM && row < T && col <= row ? m[(size_t)row * T + col] : 0.0f;
    }
}
static inline __attribute__((always_inline)) void att_tile_store(__local float *dst,
                                                                  const float x[TSTEPS]) {
    ATT_UNROLL_ALL
    for (int i = 0; i < TSTEPS; i++) {
        const uint e = get_local_id(0) + (uint)i * WG, rr = e / BM, cc = e % BM;
        if (e < BK * BM) dst[rr * LDA + cc] = x[i];
    }
}

/* NT: s[i][j] = A[ty + TY*i] . B[tx + TX*j], rows of local [row][LDK] tiles */
static inline __attribute__((always_inline)) void att_nt(float s[4][NK], __local const float4 *A,
                                                          __local const float4 *B) {
    const uint tx = get_local_id(0) % TX, ty = get_local_id(0) / TX;
    ATT_UNROLL_ALL
    for (int i = 0; i < 4; i++)
        ATT_UNROLL_ALL
        for (int j = 0; j < NK; j++) s[i][j] = 0.0f;
    ATT_UNROLL_ALL
    for (int d4 = 0; d4 < HS4; d4++) {
        float4 a[4], b[NK];
        ATT_UNROLL_ALL
        for (int i = 0; i < 4; i++) a[i] = A[(ty + TY * i) * (LDK / 4) + d4];
        ATT_UNROLL_ALL
        for (int j = 0; j < NK; j++) b[j] = B[(tx + TX * j) * (LDK / 4) + d4];
        ATT_UNROLL_ALL
        for (int i = 0; i < 4; i++)
            ATT_UNROLL_ALL
            for (int j = 0; j < NK; j++)
                s[i][j] = fma(a[i].s3, b[j].s3,
                              fma(a[i].s2, b[j].s2,
                                  fma(a[i].s1, b[j].s1, fma(a[i].s0, b[j].s0, s[i][j]))));
    }
}

/* TN: acc[i][j] += sum over k < BK of At[k][4*ty + i] * Bk[k][tx + TX*j] */
static inline __attribute__((always_inline)) void att_tn(float acc[4][RD], __local const float4 *At,
                                                          __local const float *Bk) {
    const uint tx = get_local_id(0) % TX, ty = get_local_id(0) / TX;
    ATT_UNROLL_K
    for (int k = 0; k < BK; k++) {
        const float4 a = At[k * (LDA / 4) + ty];
        float bv[RD];
        ATT_UNROLL_ALL
        for (int j = 0; j < RD; j++) bv[j] = Bk[k * LDK + tx + TX * j];
        ATT_UNROLL_ALL
        for (int j = 0; j < RD; j++) {
            acc[0][j] = fma(a.s0, bv[j], acc[0][j]);
            acc[1][j] = fma(a.s1, bv[j], acc[1][j]);
            acc[2][j] = fma(a.s2, bv[j], acc[2][j]);
            acc[3][j] = fma(a.s3, bv[j], acc[3][j]);
        }
    }
}

/* c * acc[i][j] into rows r0 + 4*ty + i, columns tx + TX*j of a (T, HS) slice, stride ld:
 * assigned (the old contents are not read); a group's 16 x TY work-items cover all BM rows of
 * its block (past T: skipped) and all HS columns (RD * TX >= HS) */
static inline __attribute__((always_inline)) void att_out(__global float *dst, int ld, int r0,
                                                           int T, float acc[4][RD], float c) {
    const uint tx = get_local_id(0) % TX, ty = get_local_id(0) / TX;
    ATT_UNROLL_ALL
    for (int i = 0; i < 4; i++) {
        const int row = r0 + 4 * (int)ty + i;
        ATT_UNROLL_ALL
        for (int j = 0; j < RD; j++) {
            const int d = (int)tx + TX * j;
            if (row < T && d < HS) dst[(size_t)row * ld + d] = c * acc[i][j];
        }
    }
}

/* Grouped-query attention: qkv(B,T,QKV) rows hold NH query heads, then KVH key heads, then KVH
 * value heads of HS each (QKV = (NH + 2 KVH) HS, C = NH HS); query head h reads key and value
 * head h / (NH / KVH), in place. With KVH == NH these are the columns h*HS, C + h*HS, 2C + h*HS
 * of rows of 3C: the multi-head layout.
 * Built with -DATT_MHA (the host does when KVH == NH): the multi-head addressing as constants of
 * the build, ld = 3C and key/value head = query head with no division, and the key kernel's
 * single pass over one query head's rows; the forward then has no KVH parameter and the
 * backward kernels do not read theirs. (On an H100 the
 * grouped-query form made GPT-2's fused forward 0.060 -> 0.081 ms per call, backward
 * 0.090 -> 0.100.) */
#ifdef ATT_MHA
/* The forward kernel has no KVH parameter in this build: with it, unread, NVIDIA's compiler gave
 * the kernel 78 registers instead of 64 (3 groups of 256 per multiprocessor instead of 4) and the
 * forward took 0.078 instead of 0.061 ms per call on an H100 (BENCHMARKS.md, issue 11). */
#define ATT_FWD_KVH
#define ATT_LD(C, KVH) (3 * (C))
#define ATT_KV_HEAD(h, NH, KVH) (h)
#define ATT_KV_SPAN(C, KVH) ((size_t)(C)) /* from a key head to its value head */
#else
#define ATT_FWD_KVH int KVH,
#define ATT_LD(C, KVH) ((C) + 2 * (KVH) * HS)
#define ATT_KV_HEAD(h, NH, KVH) ((h) / ((NH) / (KVH)))
#define ATT_KV_SPAN(C, KVH) ((size_t)(KVH) * HS)
#endif

/* Forward. out(B,T,C) = softmax_causal(q k^T * scale) v per head, and att(B,NH,T,T) the
 * probabilities (exact 0 above the diagonal). One work-group per (head, batch, block of BM query rows); the groups of
 * the last (most expensive) blocks come first (GPUs start groups in order). The block sees keys
 * [0, q0 + BM), BK at a time. Pass 1: scores (NT), parked in att, and each work-item's running
 * maximum and sum of exp over its keys (online, one exp per score), combined across the TX
 * work-items of a row at the end. Pass 2: each work-item turns the scores it parked into
 * probabilities (stored to att, 16 consecutive keys per half-warp, and into a local [key][row]
 * tile), out += att . v (TN).
 * Launch: (NH * WG, B, ceil(T / BM)) items in groups of (WG, 1, 1). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void
attention_fused_forward(__global float *out, ulong out_off, __global float *att, ulong att_off,
                        __global const float *qkv, ulong qkv_off, int NH, ATT_FWD_KVH int T,
                        int C, float scale) {
    __local float4 Qs[BM * LDK / 4], KVs[BK * LDK / 4];
    __local float4 Ps[BK * LDA / 4]; /* probabilities [key][row]; first the row statistics */
    __local float *P = (__local float *)Ps;
    const uint tx = get_local_id(0) % TX, ty = get_local_id(0) / TX;
    const int h = get_group_id(0), b = get_group_id(1);
    /* (get_num_groups(2) would do, but crashes oclgrind's uninitialised-value checker) */
    const int q0 = ((T + BM - 1) / BM - 1 - (int)get_group_id(2)) * BM, bh = b * NH + h;
    const int kend = min(T, q0 + BM); /* keys the block sees */
    const int ld = ATT_LD(C, KVH);
    __global const float *Q = qkv + qkv_off + (size_t)b * T * ld + (size_t)h * HS;
#ifdef ATT_MHA /* key and value as offsets of Q: one live base pointer */
    __global const float *K = Q + C, *Vg = Q + 2 * (size_t)C;
#else
    const int kvh = ATT_KV_HEAD(h, NH, KVH);
    __global const float *K = qkv + qkv_off + (size_t)b * T * ld + (size_t)(C + kvh * HS);
    __global const float *Vg = K + ATT_KV_SPAN(C, KVH);
#endif
    __global float *A = att + att_off + (size_t)bh * T * T;

    att_rows((__local float *)Qs, Q, ld, q0, BM, T, scale);
    /* pass 1: maximum m and sum l of exp(s - m) over this work-item's keys, per row */
    float m[4], l[4], s[4][NK];
    ATT_UNROLL_ALL
    for (int i = 0; i < 4; i++) m[i] = -INFINITY, l[i] = 0.0f;
    for (int c0 = 0; c0 < kend; c0 += BK) {
        barrier(CLK_LOCAL_MEM_FENCE);
        att_rows((__local float *)KVs, K, ld, c0, BK, T, 1.0f);
        barrier(CLK_LOCAL_MEM_FENCE);
        att_nt(s, Qs, KVs);
        ATT_UNROLL_ALL
        for (int i = 0; i < 4; i++) {
            const int row = q0 + (int)ty + TY * i;
            ATT_UNROLL_ALL
            for (int j = 0; j < NK; j++) {
                const int key = c0 + (int)tx + TX * j;
                if (key <= row && row < T) {
                    const float e = exp(-fabs(s[i][j] - m[i])); /* m = -inf: e = 0 */
                    if (s[i][j] > m[i]) {
                        l[i] = l[i] * e + 1.0f;
                        m[i] = s[i][j];
                    } else {
                        l[i] += e;
                    }
                    A[(size_t)row * T + key] = s[i][j]; /* read back by this work-item */
                }
            }
        }
    }
    /* the row's statistics from its TX work-items (in the probability tile's space) */
    ATT_UNROLL_ALL
    for (int i = 0; i < 4; i++) {
        P[(ty + TY * i) * TX + tx] = m[i];
        P[BM * TX + (ty + TY * i) * TX + tx] = l[i];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float inv[4];
    ATT_UNROLL_ALL
    for (int i = 0; i < 4; i++) {
        const int r = (int)ty + TY * i;
        float mm = -INFINITY, ll = 0.0f;
        for (int t = 0; t < TX; t++) mm = fmax(mm, P[r * TX + t]);
        if (q0 + r < T) /* rows past T saw no key: their mm stays -inf */
            for (int t = 0; t < TX; t++) ll += P[BM * TX + r * TX + t] * exp(P[r * TX + t] - mm);
        m[i] = q0 + r < T ? mm : 0.0f;
        inv[i] = q0 + r < T ? 1.0f / ll : 0.0f;
    }

    /* pass 2: probabilities, out = att . v */
    float o[4][RD];
    ATT_UNROLL_ALL
    for (int i = 0; i < 4; i++)
        ATT_UNROLL_ALL
        for (int j = 0; j < RD; j++) o[i][j] = 0.0f;
    for (int c0 = 0; c0 < kend; c0 += BK) {
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous step's (and the statistics') readers */
        att_rows((__local float *)KVs, Vg, ld, c0, BK, T, 1.0f);
        ATT_UNROLL_ALL
        for (int i = 0; i < 4; i++) { /* the scores parked in pass 1 */
            const int row = q0 + (int)ty + TY * i;
            ATT_UNROLL_ALL
            for (int j = 0; j < NK; j++) {
                const int key = c0 + (int)tx + TX * j;
                s[i][j] = key <= row && row < T ? A[(size_t)row * T + key] : 0.0f;
            }
        }
        ATT_UNROLL_ALL
        for (int i = 0; i < 4; i++) {
            const int row = q0 + (int)ty + TY * i;
            ATT_UNROLL_ALL
            for (int j = 0; j < NK; j++) {
                const int key = c0 + (int)tx + TX * j;
                const float p = key <= row && row < T ? exp(s[i][j] - m[i]) * inv[i] : 0.0f;
                if (row < T && key < T) A[(size_t)row * T + key] = p;
                P[((int)tx + TX * j) * LDA + (int)ty + TY * i] = p;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        att_tn(o, Ps, (__local const float *)KVs);
    }
    /* zeros right of the last chunk */
    const int zc = min(T, (kend + BK - 1) / BK * BK);
    if (zc < T)
        for (int row = q0; row < kend; row++)
            for (int col = zc + (int)get_local_id(0); col < T; col += WG)
                A[(size_t)row * T + col] = 0.0f;
    att_out(out + out_off + (size_t)b * T * C + (size_t)h * HS, C, q0, T, o, 1.0f);
}

/* Backward, with datt = dout v^T and dpre = att * (datt - rowsum(att * datt)):
 *   dq = scale * dpre k,  dk = scale * dpre^T q,  dv = att^T dout
 * in two launches (the second reads the first's dpre; a queue runs them in order). dqkv(B,T,QKV)
 * is assigned, not accumulated: the groups of the two launches together cover every (row, head)
 * of dq, dk and dv, each element is stored once, and none is read (the caller need not clear
 * dqkv). */

/* Query rows: dpre(B,NH,T,T) (scratch) and dq. One work-group per (head, batch, block of BM query
 * rows), the most expensive first; keys BK at a time. Pass A: datt (NT: dout v^T), parked in
 * dpre, and the row sums of att * datt (att read at the work-item's positions, summed over the
 * row's TX work-items). Pass B: each work-item turns its parked datt into dpre (stored, and into
 * a local [key][row] tile), dq = dpre k (TN).
 * Launch: (NH * WG, B, ceil(T / BM)) items in groups of (WG, 1, 1). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void
attention_fused_backward_q(__global float *dqkv, ulong dqkv_off, __global float *dpre,
                           ulong dpre_off, __global const float *dout, ulong dout_off,
                           __global const float *qkv, ulong qkv_off, __global const float *att,
                           ulong att_off, int NH, int KVH, int T, int C, float scale) {
    __local float4 Os[BM * LDK / 4], KVs[BK * LDK / 4];
    __local float4 Ps[BK * LDA / 4]; /* dpre [key][row]; first the row sums */
    __local float *P = (__local float *)Ps;
    const uint tx = get_local_id(0) % TX, ty = get_local_id(0) / TX;
    const int h = get_group_id(0), b = get_group_id(1), bh = b * NH + h;
    const int q0 = ((T + BM - 1) / BM - 1 - (int)get_group_id(2)) * BM;
    const int kend = min(T, q0 + BM);
    const int ld = ATT_LD(C, KVH);
    const size_t head = (size_t)b * T * ld + (size_t)h * HS;
#ifdef ATT_MHA
    __global const float *K = qkv + qkv_off + head + C, *Vg = K + C;
#else
    const int kvh = ATT_KV_HEAD(h, NH, KVH);
    __global const float *K = qkv + qkv_off + (size_t)b * T * ld + (size_t)(C + kvh * HS);
    __global const float *Vg = K + ATT_KV_SPAN(C, KVH);
#endif
    __global const float *dO = dout + dout_off + (size_t)b * T * C + (size_t)h * HS;
    __global const float *A = att + att_off + (size_t)bh * T * T;
    __global float *D = dpre + dpre_off + (size_t)bh * T * T;
    float s[4][NK], pa[4][NK];

    float x[RSTEPS]; /* the next step's rows, loaded while this one computes */
    att_rows_load(x, Vg, ld, 0, T);
    att_rows((__local float *)Os, dO, C, q0, BM, T, 1.0f);
    /* pass A: datt, rs = sum over keys of att * datt */
    float rs[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int c0 = 0; c0 < kend; c0 += BK) {
        barrier(CLK_LOCAL_MEM_FENCE);
        att_rows_store((__local float *)KVs, x);
        ATT_UNROLL_ALL
        for (int i = 0; i < 4; i++) {
            const int row = q0 + (int)ty + TY * i;
            ATT_UNROLL_ALL
            for (int j = 0; j < NK; j++) {
                const int key = c0 + (int)tx + TX * j;
                pa[i][j] = key <= row && row < T ? A[(size_t)row * T + key] : 0.0f;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (c0 + BK < kend) att_rows_load(x, Vg, ld, c0 + BK, T);
        att_nt(s, Os, KVs);
        ATT_UNROLL_ALL
        for (int i = 0; i < 4; i++) {
            const int row = q0 + (int)ty + TY * i;
            ATT_UNROLL_ALL
            for (int j = 0; j < NK; j++) {
                const int key = c0 + (int)tx + TX * j;
                if (key <= row && row < T) {
                    rs[i] += pa[i][j] * s[i][j];
                    D[(size_t)row * T + key] = s[i][j]; /* read back by this work-item */
                }
            }
        }
    }
    att_rows_load(x, K, ld, 0, T);
    ATT_UNROLL_ALL
    for (int i = 0; i < 4; i++) P[(ty + TY * i) * TX + tx] = rs[i];
    barrier(CLK_LOCAL_MEM_FENCE);
    ATT_UNROLL_ALL
    for (int i = 0; i < 4; i++) {
        float sum = 0.0f;
        for (int t = 0; t < TX; t++) sum += P[((int)ty + TY * i) * TX + t];
        rs[i] = sum;
    }
    /* pass B: dpre, dq */
    float dq[4][RD];
    ATT_UNROLL_ALL
    for (int i = 0; i < 4; i++)
        ATT_UNROLL_ALL
        for (int j = 0; j < RD; j++) dq[i][j] = 0.0f;
    for (int c0 = 0; c0 < kend; c0 += BK) {
        barrier(CLK_LOCAL_MEM_FENCE); /* also: the row sums are read before P is overwritten */
        att_rows_store((__local float *)KVs, x);
        if (c0 + BK < kend) att_rows_load(x, K, ld, c0 + BK, T);
        ATT_UNROLL_ALL
        for (int i = 0; i < 4; i++) {
            const int row = q0 + (int)ty + TY * i;
            ATT_UNROLL_ALL
            for (int j = 0; j < NK; j++) {
                const int key = c0 + (int)tx + TX * j;
                const int on = key <= row && row < T;
                pa[i][j] = on ? A[(size_t)row * T + key] : 0.0f;
                s[i][j] = on ? D[(size_t)row * T + key] : 0.0f;
            }
        }
        ATT_UNROLL_ALL
        for (int i = 0; i < 4; i++) {
            const int row = q0 + (int)ty + TY * i;
            ATT_UNROLL_ALL
            for (int j = 0; j < NK; j++) {
                const int key = c0 + (int)tx + TX * j;
                const float d = pa[i][j] * (s[i][j] - rs[i]); /* 0 where masked */
                if (row < T && key < T) D[(size_t)row * T + key] = d;
                P[((int)tx + TX * j) * LDA + (int)ty + TY * i] = d;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        att_tn(dq, Ps, (__local const float *)KVs);
    }
    att_out(dqkv + dqkv_off + head, ld, q0, T, dq, scale);
}

/* Keys: dk and dv. One work-group per (key/value head, batch, block of BM keys), the most
 * expensive (first keys) first; for each of the NH / KVH query heads of the key/value head in
 * turn, query rows BK at a time from the block's first key on: dv += att^T dout and
 * dk += dpre^T q (TN, with the att and dpre tiles as they lie in memory), so a shared head's
 * gradient is the sum over its query heads, kept in registers and stored once.
 * Launch: (KVH * WG, B, ceil(T / BM)) items in groups of (WG, 1, 1). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void
attention_fused_backward_kv(__global float *dqkv, ulong dqkv_off, __global const float *dpre,
                            ulong dpre_off, __global const float *dout, ulong dout_off,
                            __global const float *qkv, ulong qkv_off, __global const float *att,
                            ulong att_off, int NH, int KVH, int T, int C, float scale) {
    __local float4 As[BK * LDA / 4], Ds[BK * LDA / 4], Os[BK * LDK / 4], Qs[BK * LDK / 4];
#ifdef ATT_MHA
    const int kvh = get_group_id(0), b = get_group_id(1);
#else
    const int kvh = get_group_id(0), b = get_group_id(1), G = NH / KVH;
#endif
    const int k0 = (int)get_group_id(2) * BM;
    const int ld = ATT_LD(C, KVH);
    /* the first query head's operands; the loop moves them on to the next head */
#ifdef ATT_MHA
    const int h = kvh, bh = b * NH + h;
#else
    const int h = kvh * G, bh = b * NH + h;
#endif
    __global const float *Q = qkv + qkv_off + (size_t)b * T * ld + (size_t)h * HS;
    __global const float *dO = dout + dout_off + (size_t)b * T * C + (size_t)h * HS;
    __global const float *A = att + att_off + (size_t)bh * T * T;
    __global const float *D = dpre + dpre_off + (size_t)bh * T * T;
    float dk[4][RD], dv[4][RD];
    ATT_UNROLL_ALL
    for (int i = 0; i < 4; i++)
        ATT_UNROLL_ALL
        for (int j = 0; j < RD; j++) dk[i][j] = dv[i][j] = 0.0f;
    float xa[TSTEPS], xd[TSTEPS], xo[RSTEPS], xq[RSTEPS];
    att_tile_load(xa, A, k0, k0, T);
    att_tile_load(xd, D, k0, k0, T);
    att_rows_load(xo, dO, C, k0, T);
    att_rows_load(xq, Q, ld, k0, T);
#ifdef ATT_MHA
    /* one query head: its rows BK at a time */
    for (int c0 = k0; c0 < T; c0 += BK) {
        barrier(CLK_LOCAL_MEM_FENCE);
        att_tile_store((__local float *)As, xa);
        att_tile_store((__local float *)Ds, xd);
        att_rows_store((__local float *)Os, xo);
        att_rows_store((__local float *)Qs, xq);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (c0 + BK < T) { /* the next step's rows */
            att_tile_load(xa, A, c0 + BK, k0, T);
            att_tile_load(xd, D, c0 + BK, k0, T);
            att_rows_load(xo, dO, C, c0 + BK, T);
            att_rows_load(xq, Q, ld, c0 + BK, T);
        }
        att_tn(dv, As, (__local const float *)Os);
        att_tn(dk, Ds, (__local const float *)Qs);
    }
#else
    for (int g = 0, c0 = k0; g < G;) {
        barrier(CLK_LOCAL_MEM_FENCE);
        att_tile_store((__local float *)As, xa);
        att_tile_store((__local float *)Ds, xd);
        att_rows_store((__local float *)Os, xo);
        att_rows_store((__local float *)Qs, xq);
        barrier(CLK_LOCAL_MEM_FENCE);
        int nc0 = c0 + BK, ng = g; /* the next step: the next rows, or the next query head */
        if (nc0 >= T) {
            nc0 = k0;
            ng = g + 1;
            if (ng < G) {
                Q += HS;
                dO += HS;
                A += (size_t)T * T;
                D += (size_t)T * T;
            }
        }
        if (ng < G) { /* the next step's rows */
            att_tile_load(xa, A, nc0, k0, T);
            att_tile_load(xd, D, nc0, k0, T);
            att_rows_load(xo, dO, C, nc0, T);
            att_rows_load(xq, Q, ld, nc0, T);
        }
        att_tn(dv, As, (__local const float *)Os);
        att_tn(dk, Ds, (__local const float *)Qs);
        c0 = nc0;
        g = ng;
    }
#endif
    __global float *dK = dqkv + dqkv_off + (size_t)b * T * ld + (size_t)(C + kvh * HS);
    att_out(dK, ld, k0, T, dk, scale);
    att_out(dK + ATT_KV_SPAN(C, KVH), ld, k0, T, dv, 1.0f);
}

#endif /* HS */
