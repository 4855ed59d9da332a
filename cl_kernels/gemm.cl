/* clformer: tiled single-precision GEMM, batched, row-major:
 *     C(M,N) = alpha * op(A) * op(B) + beta * C        (beta == 0: C is not read)
 * op(A) is A(M,K) or, with TA, A stored (K,M); op(B) is B(K,N) or, with TB, B stored (N,K).
 *
 * Build-time parameters (-D), chosen per GEMM shape by src/backend/opencl/cl_gemm.c:
 *   TS   work-group side: a group is TS x TS work-items (8x8 or 16x16 by the built-in rule)
 *   WPT  outputs per work-item per dimension (register blocking): a group computes a
 *        BM x BN = (TS*WPT) x (TS*WPT) block of C
 *   TK   depth of the K slice staged in local memory per iteration
 *   VW   vector width of the global loads that stage A and B (1, 2, 4 or 8; TK and TS*WPT must be
 *        multiples of it): each work-item loads VW consecutive elements of the stored layout with
 *        one vloadVW, falling back to element loads at the matrix edges
 *   PAD  extra floats per local-memory row (BM + PAD), against bank conflicts on the transposing
 *        stores; 1 by default
 * The built-in rule uses VW 1 and PAD 1; tuning files (configs/tuning/) may choose others.
 * Work-item (tx, ty) owns rows m0 + ty + i*TS and columns n0 + tx + j*TS (i, j < WPT): neighbouring
 * work-items touch neighbouring columns, so stores are coalesced and local reads conflict-free.
 *
 * Batching: dimension 2 of the range is the batch index z = zo * inner + zi; each operand is offset
 * by zo * (outer stride) + zi * (inner stride), which covers the (batch, head) layout of attention.
 * causal (attention only): 0 = plain; 1 = skip blocks lying wholly above the diagonal (n > m), whose
 * results nobody reads; 2 = op(A) is lower triangular (zero for k > m): stop the K loop after the
 * block's last row; 3 = op(A) is upper triangular (zero for k < m): start the K loop at the block's
 * first row. The skipped products are exact zeros, so results equal the plain product. */
#ifndef TS
#define TS 16
#endif
#ifndef WPT
#define WPT 4
#endif
#ifndef TK
#define TK 16
#endif
#ifndef VW
#define VW 1
#endif
#ifndef PAD
#define PAD 1
#endif
#define BM (TS * WPT)
#define BN (TS * WPT)
#define NTHREADS (TS * TS)
#define LDA_S (BM + PAD) /* local row stride, padded against bank conflicts on transposing stores */
#define LDB_S (BN + PAD)
#if VW > 1
#define CF_CAT_(a, b) a##b
#define CF_CAT(a, b) CF_CAT_(a, b)
#define VLOADW CF_CAT(vload, VW)
#define VSTOREW CF_CAT(vstore, VW)
#endif

static inline void gemm_body(const int ta, const int tb, int M, int N, int K, float alpha,
                             __global const float *A, ulong a_off, int lda, ulong a_so, ulong a_si,
                             __global const float *B, ulong b_off, int ldb, ulong b_so, ulong b_si,
                             float beta, __global float *C, ulong c_off, int ldc, ulong c_so,
                             ulong c_si, int inner, int causal, __local float *As,
                             __local float *Bs) {
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int lid = ty * TS + tx;
    const int n0 = get_group_id(0) * BN, m0 = get_group_id(1) * BM;
    const int z = get_group_id(2);
    /* here and below x - q*d rather than x % d next to x / d: a div/rem pair becomes an LLVM
     * `freeze`, which oclgrind's uninitialised-value checker cannot interpret */
    const int zo_i = z / inner;
    const ulong zo = (ulong)zo_i, zi = (ulong)(z - zo_i * inner);
    A += a_off + zo * a_so + zi * a_si;
    B += b_off + zo * b_so + zi * b_si;
    C += c_off + zo * c_so + zi * c_si;

    /* no early return ahead of the barriers: a skipped block runs no K iterations and stores nothing */
    const int skip = causal == 1 && n0 > m0 + BM - 1;
    int k_begin = 0, k_end = skip ? 0 : K;
    if (causal == 2) k_end = min(K, m0 + BM);
    if (causal == 3) k_begin = min(K, m0);

    float acc[WPT][WPT];
#pragma unroll
    for (int i = 0; i < WPT; i++)
#pragma unroll
        for (int j = 0; j < WPT; j++) acc[i][j] = 0.0f;

    for (int k0 = k_begin; k0 < k_end; k0 += TK) {
#if VW > 1
        /* stage op(A) and op(B) with vector loads of VW elements along the stored rows: A's rows
         * run along k (or, transposed, along m), B's along n (or, transposed, along k) */
        for (int i = lid; i < BM * TK / VW; i += NTHREADS) {
            int mm, kk;
            if (ta) {
                kk = i / (BM / VW);
                mm = (i - kk * (BM / VW)) * VW;
            } else {
                mm = i / (TK / VW);
                kk = (i - mm * (TK / VW)) * VW;
            }
            int gm = m0 + mm, gk = k0 + kk;
            float v[VW];
            if (ta ? (gk < k_end && gm + VW <= M) : (gm < M && gk + VW <= k_end)) {
                __global const float *src =
                    ta ? A + (size_t)gk * lda + gm : A + (size_t)gm * lda + gk;
                VSTOREW(VLOADW(0, src), 0, v);
            } else {
#pragma unroll
                for (int e = 0; e < VW; e++) {
                    int em = ta ? gm + e : gm, ek = ta ? gk : gk + e;
                    v[e] = (em < M && ek < k_end)
                               ? (ta ? A[(size_t)ek * lda + em] : A[(size_t)em * lda + ek])
                               : 0.0f;
                }
            }
#pragma unroll
            for (int e = 0; e < VW; e++) {
                if (ta) As[kk * LDA_S + mm + e] = v[e];
                else As[(kk + e) * LDA_S + mm] = v[e];
            }
        }
        for (int i = lid; i < BN * TK / VW; i += NTHREADS) {
            int nn, kk;
            if (tb) {
                nn = i / (TK / VW);
                kk = (i - nn * (TK / VW)) * VW;
            } else {
                kk = i / (BN / VW);
                nn = (i - kk * (BN / VW)) * VW;
            }
            int gn = n0 + nn, gk = k0 + kk;
            float v[VW];
            if (tb ? (gn < N && gk + VW <= k_end) : (gk < k_end && gn + VW <= N)) {
                __global const float *src =
                    tb ? B + (size_t)gn * ldb + gk : B + (size_t)gk * ldb + gn;
                VSTOREW(VLOADW(0, src), 0, v);
            } else {
#pragma unroll
                for (int e = 0; e < VW; e++) {
                    int en = tb ? gn : gn + e, ek = tb ? gk + e : gk;
                    v[e] = (en < N && ek < k_end)
                               ? (tb ? B[(size_t)en * ldb + ek] : B[(size_t)ek * ldb + en])
                               : 0.0f;
                }
            }
#pragma unroll
            for (int e = 0; e < VW; e++) {
                if (tb) Bs[(kk + e) * LDB_S + nn] = v[e];
                else Bs[kk * LDB_S + nn + e] = v[e];
            }
        }
#else
        /* stage op(A)[m0:m0+BM, k0:k0+TK] as As[k][m]; consecutive work-items read consecutive
         * addresses of the stored layout */
        for (int i = lid; i < BM * TK; i += NTHREADS) {
            int mm, kk;
            if (ta) {
                kk = i / BM;
                mm = i - kk * BM;
            } else {
                mm = i / TK;
                kk = i - mm * TK;
            }
            int gm = m0 + mm, gk = k0 + kk;
            float v = 0.0f;
            if (gm < M && gk < k_end)
                v = ta ? A[(size_t)gk * lda + gm] : A[(size_t)gm * lda + gk];
            As[kk * LDA_S + mm] = v;
        }
        /* stage op(B)[k0:k0+TK, n0:n0+BN] as Bs[k][n] */
        for (int i = lid; i < BN * TK; i += NTHREADS) {
            int nn, kk;
            if (tb) {
                nn = i / TK;
                kk = i - nn * TK;
            } else {
                kk = i / BN;
                nn = i - kk * BN;
            }
            int gn = n0 + nn, gk = k0 + kk;
            float v = 0.0f;
            if (gn < N && gk < k_end)
                v = tb ? B[(size_t)gn * ldb + gk] : B[(size_t)gk * ldb + gn];
            Bs[kk * LDB_S + nn] = v;
        }
#endif
        barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll 4
        for (int kk = 0; kk < TK; kk++) {
            float a[WPT], b[WPT];
#pragma unroll
            for (int i = 0; i < WPT; i++) a[i] = As[kk * LDA_S + ty + i * TS];
#pragma unroll
            for (int j = 0; j < WPT; j++) b[j] = Bs[kk * LDB_S + tx + j * TS];
#pragma unroll
            for (int i = 0; i < WPT; i++)
#pragma unroll
                for (int j = 0; j < WPT; j++) acc[i][j] = mad(a[i], b[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    if (skip) return;
#pragma unroll
    for (int i = 0; i < WPT; i++) {
        int m = m0 + ty + i * TS;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < WPT; j++) {
            int n = n0 + tx + j * TS;
            if (n >= N) continue;
            size_t idx = (size_t)m * ldc + n;
            C[idx] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * C[idx];
        }
    }
}

/* One kernel per transpose combination, so ta/tb are constants after inlining. */
#define GEMM_KERNEL(NAME, TA_, TB_)                                                                \
    __kernel __attribute__((reqd_work_group_size(TS, TS, 1))) void NAME(                          \
        int M, int N, int K, float alpha, __global const float *A, ulong a_off, int lda,           \
        ulong a_so, ulong a_si, __global const float *B, ulong b_off, int ldb, ulong b_so,         \
        ulong b_si, float beta, __global float *C, ulong c_off, int ldc, ulong c_so, ulong c_si,   \
        int inner, int causal) {                                                                   \
        __local float As[TK * LDA_S];                                                              \
        __local float Bs[TK * LDB_S];                                                              \
        gemm_body(TA_, TB_, M, N, K, alpha, A, a_off, lda, a_so, a_si, B, b_off, ldb, b_so, b_si,  \
                  beta, C, c_off, ldc, c_so, c_si, inner, causal, As, Bs);                         \
    }

GEMM_KERNEL(gemm_nn, 0, 0)
GEMM_KERNEL(gemm_nt, 0, 1)
GEMM_KERNEL(gemm_tn, 1, 0)
GEMM_KERNEL(gemm_tt, 1, 1)
