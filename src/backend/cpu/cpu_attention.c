/* clformer: the CPU backend's causal self-attention, forward and backward, as register-tiled
 * loops over the causal triangle of each (batch, head) pair.
 *
 * Kernels: an AVX2/FMA register tile (x86 CPUs that have AVX2 and FMA, checked at run time) and
 * a portable C tile that compilers vectorise. The portable one also runs where the CPU GEMM is
 * set to a native kernel without "avx" in its name (CF_CPU_GEMM=native:generic-4x16), so that
 * one switch selects the portable code everywhere and the tests can reach it on any machine.
 *
 * Determinism: each (batch, head) pair is one work item whose arithmetic does not depend on the
 * thread count, so neither do the results.
 *
 * Where the time goes (configs/wiki_cache_optimized.json, B 32, NH 8, T 128, hs 48, 4 layers,
 * on the 2-core reference machine): the causal products are 1.22 GFLOP per layer, 4.9 per
 * step, 26 ms at the FMA peak of both cores (93 GFLOP/s each); with the half-empty diagonal
 * tiles, the softmax exponentials and the copies they take about 42 ms per step when the data
 * is in cache, and about 50 ms in the model: a layer moves about 100 MB (att written in the
 * forward and read in the backward, q, k, v read twice, dqkv written), which at the
 * machine's 10 GB/s takes as long as the arithmetic, and the two overlap only in part.
 *
 * The backward ASSIGNS dqkv (every element of dq, dk and dv is written and none is read), so
 * that the model needs no zero-fill of dqkv before each layer's call (18.9 MB per layer at the
 * sizes above), and dqkv is only written here, not read and written. */

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

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define CF_ATT_X86 1
#include <immintrin.h>
#define CF_ATT_AVX2 __attribute__((target("avx2,fma")))
#endif

#if defined(__GNUC__)
#define CF_ATT_INLINE static inline __attribute__((always_inline))
#else
#define CF_ATT_INLINE static inline
#endif

/* ---- the algorithm ---------------------------------------------------------------------------
 * Per (b, h), with Q, K, V, dO (T, hs) and s = 1/sqrt(hs):
 *   forward   S = s Q K^T,  P = causal_softmax(S) (written to att),  O = P V
 *   backward  dP = dO V^T,  dS = s P * (dP - rowsum(P * dP)),
 *             dQ = dS K,  dK = dS^T Q,  dV = P^T dO   (assigned: dqkv's old values are not read).
 * Every product is a sequence of MR x NR register tiles
 *   acc[r][c] = sum_{k < kc} A(r, k) B(k, c),   A(r, k) = a_r[k * ks],  B(k, c) = b[k * ldb + c],
 * where A is read element by element (broadcast) through one pointer per tile row and a stride,
 * so that Q, dO, P, dS and their transposes all serve as A in place; B is read as vectors, from
 * per-thread copies whose rows are padded to a multiple of NR with zeros:
 *   S, dP:      A = Q or dO rows (ks 1),  B = K^T or V^T (hs, Tc)   tiles of keys <= the last row
 *   O, dQ:      A = P or dS rows (ks 1),  B = V or K (T, hp)        kc = keys up to the last row
 *   dK, dV:     A = dS or P columns (ks = row stride), B = Q or dO  kc = query rows >= the key
 * Entries of P and dS above the diagonal are zero (att's contract; the rows of dS are
 * completed with zeros up to T, those of the forward's P block up to the block's last key), so
 * running a tile over the whole block of keys or rows is exact. A tile's rows past the end of
 * its block repeat its last row and are not stored.
 *
 * Tile 6 x 16: 12 accumulators of 8 floats, two vector loads and six broadcasts per k (the
 * shape of the GEMM's AVX2 kernel). */

#define CF_ATT_MR 6
#define CF_ATT_NR 16

static inline int cf_att_min(int a, int b) { return a < b ? a : b; }
static inline int cf_att_round(int x, int to) { return (x + to - 1) / to * to; }
/* Rows of the first block of query rows. The products over query rows (S, O, dP, dQ) take the
 * partial block first, where rows see the fewest keys: its unused tile rows cost least there. */
static inline int cf_att_first(int T) { return T % CF_ATT_MR ? T % CF_ATT_MR : CF_ATT_MR; }

/* Portable tile. c[r * ldc + j] = alpha * acc (r < m, j < n), assigned. */
CF_ATT_INLINE void cf_att_tile_portable(int kc, const float *const *a, ptrdiff_t ks,
                                        const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc,
                                        float alpha, int m, int n) {
    float acc[CF_ATT_MR][CF_ATT_NR] = {{0.0f}};
    for (int k = 0; k < kc; k++) {
        const float *bk = b + (ptrdiff_t)k * ldb;
        for (int r = 0; r < CF_ATT_MR; r++) {
            const float ar = a[r][(ptrdiff_t)k * ks];
            for (int j = 0; j < CF_ATT_NR; j++) acc[r][j] += ar * bk[j];
        }
    }
    for (int r = 0; r < m; r++)
        for (int j = 0; j < n; j++) c[r * ldc + j] = alpha * acc[r][j];
}

#ifdef CF_ATT_X86
/* p[0..8) = alpha * acc */
CF_ATT_INLINE CF_ATT_AVX2 void cf_att_store8(float *p, __m256 acc, __m256 va) {
    _mm256_storeu_ps(p, _mm256_mul_ps(va, acc));
}

#define CF_ATT_ROW(r)                                                                              \
    x = _mm256_broadcast_ss(a##r + o);                                                             \
    c##r##0 = _mm256_fmadd_ps(x, b0, c##r##0);                                                     \
    c##r##1 = _mm256_fmadd_ps(x, b1, c##r##1)
#define CF_ATT_STORE(r, p, ld)                                                                     \
    cf_att_store8((p) + (r) * (ld), c##r##0, va);                                                  \
    cf_att_store8((p) + (r) * (ld) + 8, c##r##1, va)

/* AVX2 tile, same contract as cf_att_tile_portable. (Not always_inline: it is inlined into the
 * AVX2 instances of the per-head loops, and must not be into the portable ones.) */
static inline CF_ATT_AVX2 void cf_att_tile_avx2(int kc, const float *const *a, ptrdiff_t ks,
                                                const float *b, ptrdiff_t ldb, float *c,
                                                ptrdiff_t ldc, float alpha, int m, int n) {
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    ptrdiff_t o = 0;
    for (int k = 0; k < kc; k++, o += ks, b += ldb) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        __m256 x;
        CF_ATT_ROW(0);
        CF_ATT_ROW(1);
        CF_ATT_ROW(2);
        CF_ATT_ROW(3);
        CF_ATT_ROW(4);
        CF_ATT_ROW(5);
    }
    const __m256 va = _mm256_set1_ps(alpha);
    if (m == CF_ATT_MR && n == CF_ATT_NR) {
        CF_ATT_STORE(0, c, ldc);
        CF_ATT_STORE(1, c, ldc);
        CF_ATT_STORE(2, c, ldc);
        CF_ATT_STORE(3, c, ldc);
        CF_ATT_STORE(4, c, ldc);
        CF_ATT_STORE(5, c, ldc);
        return;
    }
    /* edge tile: through a scratch tile, the valid m x n part only */
    float t[CF_ATT_MR * CF_ATT_NR] __attribute__((aligned(32)));
    CF_ATT_STORE(0, t, CF_ATT_NR);
    CF_ATT_STORE(1, t, CF_ATT_NR);
    CF_ATT_STORE(2, t, CF_ATT_NR);
    CF_ATT_STORE(3, t, CF_ATT_NR);
    CF_ATT_STORE(4, t, CF_ATT_NR);
    CF_ATT_STORE(5, t, CF_ATT_NR);
    for (int r = 0; r < m; r++)
        for (int j = 0; j < n; j++)
            c[r * ldc + j] = t[r * CF_ATT_NR + j];
}

/* Half-width tile, 6 x 8, assigned (c[r * ldc + j] = alpha * acc, r < m, j < 8): the key tile
 * on the diagonal when the block's rows need at most its first 8 keys. */
static inline CF_ATT_AVX2 void cf_att_tile8_avx2(int kc, const float *const *a, ptrdiff_t ks,
                                                 const float *b, ptrdiff_t ldb, float *c,
                                                 ptrdiff_t ldc, float alpha, int m) {
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    __m256 acc[CF_ATT_MR];
    for (int r = 0; r < CF_ATT_MR; r++) acc[r] = _mm256_setzero_ps();
    ptrdiff_t o = 0;
    for (int k = 0; k < kc; k++, o += ks, b += ldb) {
        const __m256 b0 = _mm256_loadu_ps(b);
        acc[0] = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + o), b0, acc[0]);
        acc[1] = _mm256_fmadd_ps(_mm256_broadcast_ss(a1 + o), b0, acc[1]);
        acc[2] = _mm256_fmadd_ps(_mm256_broadcast_ss(a2 + o), b0, acc[2]);
        acc[3] = _mm256_fmadd_ps(_mm256_broadcast_ss(a3 + o), b0, acc[3]);
        acc[4] = _mm256_fmadd_ps(_mm256_broadcast_ss(a4 + o), b0, acc[4]);
        acc[5] = _mm256_fmadd_ps(_mm256_broadcast_ss(a5 + o), b0, acc[5]);
    }
    const __m256 va = _mm256_set1_ps(alpha);
    for (int r = 0; r < m; r++) _mm256_storeu_ps(c + r * ldc, _mm256_mul_ps(va, acc[r]));
}
#undef CF_ATT_ROW
#undef CF_ATT_STORE
#endif /* CF_ATT_X86 */

/* One tile through the kernel named by avx2 (a compile-time constant after inlining). */
CF_ATT_INLINE void cf_att_tile(int avx2, int kc, const float *const *a, ptrdiff_t ks,
                               const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, float alpha,
                               int m, int n) {
#ifdef CF_ATT_X86
    if (avx2) {
        cf_att_tile_avx2(kc, a, ks, b, ldb, c, ldc, alpha, m, n);
        return;
    }
#endif
    (void)avx2;
    cf_att_tile_portable(kc, a, ks, b, ldb, c, ldc, alpha, m, n);
}

/* A key tile of S or dP (assigned, whole width in the padded destination), half width when
 * the rows need only keys < j0 + 8 (i1 - j0 <= 8): about half of the diagonal tiles. */
CF_ATT_INLINE void cf_att_key_tile(int avx2, int i1, int j0, int kc, const float *const *a,
                                   const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc,
                                   float alpha, int m) {
#ifdef CF_ATT_X86
    if (avx2 && i1 - j0 <= 8) {
        cf_att_tile8_avx2(kc, a, 1, b, ldb, c, ldc, alpha, m);
        return;
    }
#endif
    (void)i1, (void)j0;
    cf_att_tile(avx2, kc, a, 1, b, ldb, c, ldc, alpha, m, CF_ATT_NR);
}

/* Tile row pointers base + r * ld for rows i0 + r; rows at or past i0 + m repeat the last. */
static inline void cf_att_rows(const float **a, const float *base, ptrdiff_t ld, int m) {
    for (int r = 0; r < CF_ATT_MR; r++) a[r] = base + (ptrdiff_t)cf_att_min(r, m - 1) * ld;
}

/* dst (hs, Tc) = src^T for src (T, hs) with row stride ld; columns T..Tc of dst are left as
 * they are (zero in the scratch). Blocks of 8 rows keep the writes in few cache lines. */
static inline void cf_att_transpose_portable(float *dst, int Tc, const float *src, ptrdiff_t ld,
                                             int T, int hs) {
    for (int j0 = 0; j0 < T; j0 += 8) {
        const int j1 = cf_att_min(j0 + 8, T);
        for (int d = 0; d < hs; d++)
            for (int j = j0; j < j1; j++) dst[(ptrdiff_t)d * Tc + j] = src[(ptrdiff_t)j * ld + d];
    }
}

/* Causal softmax of one row of S: row[0..n) (scaled scores) becomes the probabilities,
 * row[n..i1) zeros (the O tile runs over keys < i1); dst (att's row, T floats) receives them
 * with zeros up to T. */
static inline void cf_att_softmax_row_portable(float *row, int n, int i1, float *dst, int T) {
    const float maxv = cf_cpu_maxf(row, n);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        const float e = cf_cpu_expf(row[j] - maxv);
        row[j] = e;
        sum += e;
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < n; j++) row[j] *= inv;
    for (int j = n; j < i1; j++) row[j] = 0.0f;
    memcpy(dst, row, sizeof(float) * (size_t)n);
    memset(dst + n, 0, sizeof(float) * (size_t)(T - n));
}

/* Softmax backward of one row: with p the probabilities (att's row, zero past n) and ds[0..n)
 * holding dP, ds[j] = scale p[j] (dP[j] - sum_j p dP) for j < n and 0 for j in [n, T). */
static inline void cf_att_dsoftmax_row_portable(const float *p, float *ds, int n, int T,
                                                float scale) {
    float sd = 0.0f;
#pragma omp simd reduction(+ : sd)
    for (int j = 0; j < n; j++) sd += p[j] * ds[j];
#pragma omp simd
    for (int j = 0; j < n; j++) ds[j] = scale * p[j] * (ds[j] - sd);
    for (int j = n; j < T; j++) ds[j] = 0.0f;
}

#ifdef CF_ATT_X86
/* The same transpose in 8 x 8 blocks through registers (the edges as above). */
static inline CF_ATT_AVX2 void cf_att_transpose_avx2(float *dst, int Tc, const float *src,
                                                     ptrdiff_t ld, int T, int hs) {
    const int T8 = T / 8 * 8, h8 = hs / 8 * 8;
    for (int j0 = 0; j0 < T8; j0 += 8)
        for (int d0 = 0; d0 < h8; d0 += 8) {
            const float *s = src + (ptrdiff_t)j0 * ld + d0;
            const __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ld);
            const __m256 r2 = _mm256_loadu_ps(s + 2 * ld), r3 = _mm256_loadu_ps(s + 3 * ld);
            const __m256 r4 = _mm256_loadu_ps(s + 4 * ld), r5 = _mm256_loadu_ps(s + 5 * ld);
            const __m256 r6 = _mm256_loadu_ps(s + 6 * ld), r7 = _mm256_loadu_ps(s + 7 * ld);
            /* pairs of rows interleaved, then quadruples, then the 128-bit halves swapped */
            const __m256 u0 = _mm256_unpacklo_ps(r0, r1), u1 = _mm256_unpackhi_ps(r0, r1);
            const __m256 u2 = _mm256_unpacklo_ps(r2, r3), u3 = _mm256_unpackhi_ps(r2, r3);
            const __m256 u4 = _mm256_unpacklo_ps(r4, r5), u5 = _mm256_unpackhi_ps(r4, r5);
            const __m256 u6 = _mm256_unpacklo_ps(r6, r7), u7 = _mm256_unpackhi_ps(r6, r7);
            const __m256 v0 = _mm256_shuffle_ps(u0, u2, 0x44), v1 = _mm256_shuffle_ps(u0, u2, 0xEE);
            const __m256 v2 = _mm256_shuffle_ps(u1, u3, 0x44), v3 = _mm256_shuffle_ps(u1, u3, 0xEE);
            const __m256 v4 = _mm256_shuffle_ps(u4, u6, 0x44), v5 = _mm256_shuffle_ps(u4, u6, 0xEE);
            const __m256 v6 = _mm256_shuffle_ps(u5, u7, 0x44), v7 = _mm256_shuffle_ps(u5, u7, 0xEE);
            float *o = dst + (ptrdiff_t)d0 * Tc + j0;
            _mm256_storeu_ps(o, _mm256_permute2f128_ps(v0, v4, 0x20));
            _mm256_storeu_ps(o + Tc, _mm256_permute2f128_ps(v1, v5, 0x20));
            _mm256_storeu_ps(o + 2 * (ptrdiff_t)Tc, _mm256_permute2f128_ps(v2, v6, 0x20));
            _mm256_storeu_ps(o + 3 * (ptrdiff_t)Tc, _mm256_permute2f128_ps(v3, v7, 0x20));
            _mm256_storeu_ps(o + 4 * (ptrdiff_t)Tc, _mm256_permute2f128_ps(v0, v4, 0x31));
            _mm256_storeu_ps(o + 5 * (ptrdiff_t)Tc, _mm256_permute2f128_ps(v1, v5, 0x31));
            _mm256_storeu_ps(o + 6 * (ptrdiff_t)Tc, _mm256_permute2f128_ps(v2, v6, 0x31));
            _mm256_storeu_ps(o + 7 * (ptrdiff_t)Tc, _mm256_permute2f128_ps(v3, v7, 0x31));
        }
    for (int j = 0; j < T; j++) /* columns d >= h8 */
        for (int d = h8; d < hs; d++) dst[(ptrdiff_t)d * Tc + j] = src[(ptrdiff_t)j * ld + d];
    for (int j = T8; j < T; j++) /* rows j >= T8 */
        for (int d = 0; d < h8; d++) dst[(ptrdiff_t)d * Tc + j] = src[(ptrdiff_t)j * ld + d];
}

/* Lanes j0 + l < n of a vector: all ones; the others zero. */
static inline CF_ATT_AVX2 __m256 cf_att_mask(int j0, int n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n - j0), lane));
}

static inline CF_ATT_AVX2 float cf_att_hsum(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

/* cf_cpu_expf on 8 lanes (the same reduction and polynomial; NaN propagates through the
 * clamps because max/min return their second operand when either is NaN) */
static inline CF_ATT_AVX2 __m256 cf_att_exp8(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);
    const __m256 kf = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(1.42860682030941723212e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(kf), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* cf_att_softmax_row_portable in vectors. row has room up to n rounded up to 8 (its padding
 * to Tc). att is written with streaming stores when T is whole aligned vectors: it is read
 * next in the backward, long after, so there is no reason to read its lines into the cache. */
static inline CF_ATT_AVX2 void cf_att_softmax_row_avx2(float *row, int n, int i1, float *dst,
                                                       int T) {
    const int n8 = n / 8 * 8, nv = (n + 7) / 8 * 8;
    __m256 mx = _mm256_set1_ps(-INFINITY);
    int j = 0;
    for (; j < n8; j += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(row + j));
    if (j < n) /* lanes past n read as -inf */
        mx = _mm256_max_ps(mx, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY),
                                                 _mm256_loadu_ps(row + j), cf_att_mask(j, n)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const __m256 vmax = _mm256_broadcastss_ps(m4);
    __m256 sum = _mm256_setzero_ps();
    for (j = 0; j < nv; j += 8) {
        __m256 e = cf_att_exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), vmax));
        if (j + 8 > n) e = _mm256_and_ps(e, cf_att_mask(j, n));
        _mm256_storeu_ps(row + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / cf_att_hsum(sum));
    for (j = nv; j < i1; j++) row[j] = 0.0f;
    if (T % 8 == 0 && (uintptr_t)dst % 32 == 0) {
        for (j = 0; j < nv; j += 8) {
            const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(row + j), inv);
            _mm256_storeu_ps(row + j, p);
            _mm256_stream_ps(dst + j, p);
        }
        for (; j < T; j += 8) _mm256_stream_ps(dst + j, _mm256_setzero_ps());
    } else {
        for (j = 0; j < nv; j += 8)
            _mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), inv));
        memcpy(dst, row, sizeof(float) * (size_t)n);
        memset(dst + n, 0, sizeof(float) * (size_t)(T - n));
    }
}

/* cf_att_dsoftmax_row_portable in vectors; ds has room up to n rounded up to 8. */
static inline CF_ATT_AVX2 void cf_att_dsoftmax_row_avx2(const float *p, float *ds, int n, int T,
                                                        float scale) {
    const int n8 = n / 8 * 8, nv = (n + 7) / 8 * 8;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= n8; j += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(p + j), _mm256_loadu_ps(ds + j), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(p + j + 8), _mm256_loadu_ps(ds + j + 8), s1);
    }
    for (; j < n8; j += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(p + j), _mm256_loadu_ps(ds + j), s0);
    __m256 ptail = _mm256_setzero_ps();
    if (j < n) { /* p may end at T: a masked load */
        const __m256i mi = _mm256_castps_si256(cf_att_mask(j, n));
        ptail = _mm256_maskload_ps(p + j, mi);
        s1 = _mm256_fmadd_ps(ptail, _mm256_and_ps(_mm256_loadu_ps(ds + j), cf_att_mask(j, n)), s1);
    }
    const __m256 sd = _mm256_set1_ps(cf_att_hsum(_mm256_add_ps(s0, s1)));
    const __m256 vs = _mm256_set1_ps(scale);
    for (j = 0; j < n8; j += 8) {
        const __m256 pj = _mm256_mul_ps(vs, _mm256_loadu_ps(p + j));
        _mm256_storeu_ps(ds + j, _mm256_mul_ps(pj, _mm256_sub_ps(_mm256_loadu_ps(ds + j), sd)));
    }
    if (j < n) { /* ptail is zero past n */
        const __m256 pj = _mm256_mul_ps(vs, ptail);
        _mm256_storeu_ps(ds + j, _mm256_and_ps(_mm256_mul_ps(pj, _mm256_sub_ps(
                                                                _mm256_loadu_ps(ds + j), sd)),
                                               cf_att_mask(j, n)));
    }
    for (j = nv; j < T; j++) ds[j] = 0.0f;
}
#endif

/* The transpose and the softmax rows of the kernel named by avx2. */
CF_ATT_INLINE void cf_att_transpose(int avx2, float *dst, int Tc, const float *src, ptrdiff_t ld,
                                    int T, int hs) {
#ifdef CF_ATT_X86
    if (avx2) {
        cf_att_transpose_avx2(dst, Tc, src, ld, T, hs);
        return;
    }
#endif
    cf_att_transpose_portable(dst, Tc, src, ld, T, hs);
}
CF_ATT_INLINE void cf_att_softmax_row(int avx2, float *row, int n, int i1, float *dst, int T) {
#ifdef CF_ATT_X86
    if (avx2) {
        cf_att_softmax_row_avx2(row, n, i1, dst, T);
        return;
    }
#endif
    cf_att_softmax_row_portable(row, n, i1, dst, T);
}
CF_ATT_INLINE void cf_att_dsoftmax_row(int avx2, const float *p, float *ds, int n, int T,
                                       float scale) {
#ifdef CF_ATT_X86
    if (avx2) {
        cf_att_dsoftmax_row_avx2(p, ds, n, T, scale);
        return;
    }
#endif
    cf_att_dsoftmax_row_portable(p, ds, n, T, scale);
}

/* dst (T, hp) = src (T, hs) with row stride ld; columns hs..hp of dst stay zero. */
static inline void cf_att_copy_portable(float *dst, int hp, const float *src, ptrdiff_t ld, int T,
                                        int hs) {
    for (int j = 0; j < T; j++)
        memcpy(dst + (ptrdiff_t)j * hp, src + (ptrdiff_t)j * ld, sizeof(float) * (size_t)hs);
}

#ifdef CF_ATT_X86
/* The same in vectors (a row is a few of them: no call per row) */
static inline CF_ATT_AVX2 void cf_att_copy_avx2(float *dst, int hp, const float *src,
                                                ptrdiff_t ld, int T, int hs) {
    const int h8 = hs / 8 * 8;
    for (int j = 0; j < T; j++) {
        const float *s = src + (ptrdiff_t)j * ld;
        float *d = dst + (ptrdiff_t)j * hp;
        for (int c = 0; c < h8; c += 8) _mm256_storeu_ps(d + c, _mm256_loadu_ps(s + c));
        for (int c = h8; c < hs; c++) d[c] = s[c];
    }
}
#endif

CF_ATT_INLINE void cf_att_copy(int avx2, float *dst, int hp, const float *src, ptrdiff_t ld, int T,
                               int hs) {
#ifdef CF_ATT_X86
    if (avx2) {
        cf_att_copy_avx2(dst, hp, src, ld, T, hs);
        return;
    }
#endif
    cf_att_copy_portable(dst, hp, src, ld, T, hs);
}

/* Zeroed per-thread scratch: nth blocks of per floats, each 64-byte aligned. NULL (logged) when
 * the allocation fails. */
static float *cf_att_scratch(const char *op, size_t per, int nth, size_t *stride) {
    *stride = (per + 15) / 16 * 16;
    const size_t bytes = *stride * sizeof(float) * (size_t)nth;
    float *p = aligned_alloc(64, bytes);
    if (!p) {
        CF_ERROR("cpu %s: could not allocate %zu bytes of per-thread scratch", op, bytes);
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}

/* ---- per-(b, h) work items ------------------------------------------------------------------ */

/* One call of an op: the tensors and the shapes. QKV = (NH + 2 KVH) hs, C = NH hs. */
typedef struct {
    const float *qkv;  /* (B, T, QKV): NH q heads, KVH k heads, KVH v heads per row */
    const float *att;  /* (B, NH, T, T) read by the backward */
    float *att_out;    /* (B, NH, T, T) written by the forward */
    float *out;        /* (B, T, C) forward output */
    const float *dout; /* (B, T, C) */
    float *dqkv;       /* (B, T, QKV), assigned by the backward */
    int B, T, C, NH, hs;
    int KVH, QKV; /* key/value heads (query head h uses kv head h / (NH / KVH)), row length */
    float scale;  /* 1 / sqrt(hs) */
} cf_att_args;

/* Item it = b * NH + h: offsets of head h of batch b's q columns in (B, T, QKV) and of its
 * columns in (B, T, C) tensors, and of its (T, T) slice of att. cf_att_offk: the offset of the
 * k columns of the kv head h uses (its v columns follow KVH hs further on). */
static inline size_t cf_att_off3(const cf_att_args *g, int it) {
    return cf_zmul(it / g->NH, g->T) * (size_t)g->QKV + cf_zmul(it % g->NH, g->hs);
}
static inline size_t cf_att_offk(const cf_att_args *g, int it) {
    const int kvh = (it % g->NH) / (g->NH / g->KVH);
    return cf_zmul(it / g->NH, g->T) * (size_t)g->QKV + cf_zmul(g->NH + kvh, g->hs);
}
static inline size_t cf_att_off1(const cf_att_args *g, int it) {
    return cf_zmul(it / g->NH, g->T) * (size_t)g->C + cf_zmul(it % g->NH, g->hs);
}
static inline size_t cf_att_offa(const cf_att_args *g, int it) {
    return (size_t)it * cf_zmul(g->T, g->T);
}

/* Part `part` of nparts of the rows [0, rows) of a (rows, cols) block with row stride ld: a
 * prefetch of each of their cache lines (for writing when write). The item a thread takes
 * next reads its Q, K, V (dO, att) from memory and writes its dqkv rows, whose lines a store
 * must fetch first; fetching them while this item computes hides that latency (rows 3C floats apart are a pattern the hardware prefetchers follow
 * poorly). */
static inline void cf_att_prefetch(const float *p, ptrdiff_t ld, int rows, int cols, int tri,
                                   int part, int nparts, int write) {
#if defined(__GNUC__)
    const int r0 = (int)((long long)rows * part / nparts);
    const int r1 = (int)((long long)rows * (part + 1) / nparts);
    for (int r = r0; r < r1; r++) { /* each 64-byte line of the row once */
        const float *row = p + (ptrdiff_t)r * ld;
        /* tri: the lower triangle (of att: the backward reads row r up to key r + MR - 1) */
        const int n = tri ? cf_att_min(cols, r + CF_ATT_MR) : cols;
        const uintptr_t l1 = (uintptr_t)(row + n - 1) >> 6;
        for (uintptr_t l = (uintptr_t)row >> 6; l <= l1; l++) {
            if (write)
                __builtin_prefetch((const void *)(l << 6), 1, 2);
            else
                __builtin_prefetch((const void *)(l << 6), 0, 2);
        }
    }
#else
    (void)p, (void)ld, (void)rows, (void)cols, (void)tri, (void)part, (void)nparts, (void)write;
#endif
}

/* ---- forward -------------------------------------------------------------------------------- */

/* floats of per-thread scratch */
static size_t cf_att_fwd_scratch(int T, int hs) {
    const int Tc = cf_att_round(T, CF_ATT_NR), hp = cf_att_round(hs, CF_ATT_NR);
    return cf_zmul(hs, Tc) + cf_zmul(T, hp) + cf_zmul(CF_ATT_MR, Tc);
}

/* Item it; next: the item this thread takes next (prefetched), -1 for none. scr: this thread's
 * zeroed scratch (cf_att_fwd_scratch floats). */
CF_ATT_INLINE void cf_att_fwd_item(int avx2, const cf_att_args *g, int it, int next,
                                   float *scr) {
    const int T = g->T, hs = g->hs;
    const ptrdiff_t ld = g->QKV, ldo = g->C, kvs = (ptrdiff_t)g->KVH * hs;
    const float *q0 = g->qkv + cf_att_off3(g, it), *k0 = g->qkv + cf_att_offk(g, it);
    const float *v0 = k0 + kvs;
    float *o0 = g->out + cf_att_off1(g, it), *att0 = g->att_out + cf_att_offa(g, it);
    const float *qn = next >= 0 ? g->qkv + cf_att_off3(g, next) : NULL;
    const float *kn = next >= 0 ? g->qkv + cf_att_offk(g, next) : NULL;
    const float *on = next >= 0 ? g->out + cf_att_off1(g, next) : NULL;
    const int Tc = cf_att_round(T, CF_ATT_NR), hp = cf_att_round(hs, CF_ATT_NR);
    const int nblk = (T + CF_ATT_MR - 1) / CF_ATT_MR;
    float *Kt = scr;                     /* (hs, Tc): K^T, columns >= T zero */
    float *Vl = Kt + (ptrdiff_t)hs * Tc; /* (T, hp): V, columns >= hs zero */
    float *Sb = Vl + (ptrdiff_t)T * hp;  /* (MR, Tc): one block of rows of S, then of P */
    cf_att_transpose(avx2, Kt, Tc, k0, ld, T, hs);
    cf_att_copy(avx2, Vl, hp, v0, ld, T, hs);
    const float *a[CF_ATT_MR];
    for (int blk = 0, i0 = 0, m = cf_att_first(T); i0 < T; blk++, i0 += m, m = CF_ATT_MR) {
        /* query rows [i0, i1) see keys [0, i1) */
        const int i1 = i0 + m;
        if (qn) { /* the next item's q, k, v rows (hs floats each) and out rows */
            cf_att_prefetch(qn, ld, T, hs, 0, blk, nblk, 0);
            cf_att_prefetch(kn, ld, T, hs, 0, blk, nblk, 0);
            cf_att_prefetch(kn + kvs, ld, T, hs, 0, blk, nblk, 0);
            cf_att_prefetch(on, ldo, T, hs, 0, blk, nblk, 1);
        }
        /* S = scale Q K^T, key tiles up to the last row's diagonal (all MR rows: Sb has them;
         * a half tile leaves keys >= j0 + 8 > i1 unwritten, and nothing reads them) */
        cf_att_rows(a, q0 + (ptrdiff_t)i0 * ld, ld, m);
        for (int j0 = 0; j0 < i1; j0 += CF_ATT_NR)
            cf_att_key_tile(avx2, i1, j0, hs, a, Kt + j0, Tc, Sb + j0, Tc, g->scale, CF_ATT_MR);
        /* causal softmax of each row t over keys <= t, zeros for keys in (t, i1); to att with
         * zeros up to T */
        for (int t = i0; t < i1; t++)
            cf_att_softmax_row(avx2, Sb + (ptrdiff_t)(t - i0) * Tc, t + 1, i1,
                               att0 + (ptrdiff_t)t * T, T);
        /* O = P V over keys [0, i1) */
        cf_att_rows(a, Sb, Tc, m);
        for (int d0 = 0; d0 < hs; d0 += CF_ATT_NR)
            cf_att_tile(avx2, i1, a, 1, Vl + d0, hp, o0 + (ptrdiff_t)i0 * ldo + d0, ldo, 1.0f, m,
                        cf_att_min(CF_ATT_NR, hs - d0));
    }
#ifdef CF_ATT_X86
    if (avx2) _mm_sfence(); /* order the streaming stores before the loop's closing barrier */
#endif
}

static void cf_att_fwd_item_portable(const cf_att_args *g, int it, int next, float *scr) {
    cf_att_fwd_item(0, g, it, next, scr);
}
#ifdef CF_ATT_X86
static CF_ATT_AVX2 void cf_att_fwd_item_avx2(const cf_att_args *g, int it, int next,
                                             float *scr) {
    cf_att_fwd_item(1, g, it, next, scr);
}
#endif

/* ---- backward ------------------------------------------------------------------------------- */

static size_t cf_att_bwd_scratch(int T, int hs) {
    const int Tc = cf_att_round(T, CF_ATT_NR), hp = cf_att_round(hs, CF_ATT_NR);
    return cf_zmul(hs, Tc) + 3 * cf_zmul(T, hp) + cf_zmul(T, Tc);
}

/* As cf_att_fwd_item; assigns head h's columns of dq in batch b, and its contributions to dk
 * and dv to dk0 / dv0 (row stride ldk: the kv head's columns of dqkv when it has one query head,
 * else scratch the caller sums over the group): every row and column of them is stored once (dq
 * by the row blocks, dk and dv by the key blocks), from tiles that start at zero, so stale
 * contents never leak in. */
CF_ATT_INLINE void cf_att_bwd_head(int avx2, const cf_att_args *g, int it, int next, float *scr,
                                   float *dk0, float *dv0, ptrdiff_t ldk) {
    const int T = g->T, hs = g->hs;
    const ptrdiff_t ld = g->QKV, ldo = g->C, kvs = (ptrdiff_t)g->KVH * hs;
    const size_t o3 = cf_att_off3(g, it);
    const float *q0 = g->qkv + o3, *k0 = g->qkv + cf_att_offk(g, it), *v0 = k0 + kvs;
    float *dq0 = g->dqkv + o3;
    const float *dO0 = g->dout + cf_att_off1(g, it), *att0 = g->att + cf_att_offa(g, it);
    const float *qn = NULL, *kn = NULL, *dqn = NULL, *dkn = NULL, *dOn = NULL, *attn = NULL;
    if (next >= 0) {
        qn = g->qkv + cf_att_off3(g, next);
        kn = g->qkv + cf_att_offk(g, next);
        dqn = g->dqkv + cf_att_off3(g, next);
        dkn = g->dqkv + cf_att_offk(g, next);
        dOn = g->dout + cf_att_off1(g, next);
        attn = g->att + cf_att_offa(g, next);
    }
    const int Tc = cf_att_round(T, CF_ATT_NR), hp = cf_att_round(hs, CF_ATT_NR);
    const int nblk = (T + CF_ATT_MR - 1) / CF_ATT_MR;
    const ptrdiff_t nrow = (ptrdiff_t)T * hp;
    float *Vt = scr;                     /* (hs, Tc): V^T, columns >= T zero */
    float *Kl = Vt + (ptrdiff_t)hs * Tc; /* (T, hp): K, columns >= hs zero */
    float *Ql = Kl + nrow;               /* (T, hp): Q */
    float *dOl = Ql + nrow;              /* (T, hp): dO */
    float *dS = dOl + nrow;              /* (T, Tc): scale * dpreatt, zero above the diagonal */
    cf_att_transpose(avx2, Vt, Tc, v0, ld, T, hs);
    cf_att_copy(avx2, Kl, hp, k0, ld, T, hs);
    cf_att_copy(avx2, Ql, hp, q0, ld, T, hs);
    cf_att_copy(avx2, dOl, hp, dO0, ldo, T, hs);
    const float *a[CF_ATT_MR];
    for (int blk = 0, i0 = 0, m = cf_att_first(T); i0 < T; blk++, i0 += m, m = CF_ATT_MR) {
        const int i1 = i0 + m;
        if (qn) { /* the next item's inputs; its dq, dk, dv come in the second loop */
            cf_att_prefetch(qn, ld, T, hs, 0, blk, nblk, 0);
            cf_att_prefetch(kn, ld, T, hs, 0, blk, nblk, 0);
            cf_att_prefetch(kn + kvs, ld, T, hs, 0, blk, nblk, 0);
            cf_att_prefetch(dOn, ldo, T, hs, 0, blk, nblk, 0);
            cf_att_prefetch(attn, T, T, T, 1, blk, nblk, 0);
        }
        float *ds0 = dS + (ptrdiff_t)i0 * Tc;
        /* dP = dO V^T into dS's rows (padded to Tc: whole tiles; as in the forward, a half tile
         * leaves keys past the block's last row unwritten, and the rows are completed below) */
        cf_att_rows(a, dOl + (ptrdiff_t)i0 * hp, hp, m);
        for (int j0 = 0; j0 < i1; j0 += CF_ATT_NR)
            cf_att_key_tile(avx2, i1, j0, hs, a, Vt + j0, Tc, ds0 + j0, Tc, 1.0f, m);
        /* dS = scale P (dP - rowsum(P dP)) for keys <= t, zero for keys in (t, T) */
        for (int t = i0; t < i1; t++)
            cf_att_dsoftmax_row(avx2, att0 + (ptrdiff_t)t * T, dS + (ptrdiff_t)t * Tc, t + 1, T,
                                g->scale);
        /* dQ[i0:i1] = dS[i0:i1, 0:i1] K[0:i1] */
        cf_att_rows(a, ds0, Tc, m);
        for (int d0 = 0; d0 < hs; d0 += CF_ATT_NR)
            cf_att_tile(avx2, i1, a, 1, Kl + d0, hp, dq0 + (ptrdiff_t)i0 * ld + d0, ld, 1.0f, m,
                        cf_att_min(CF_ATT_NR, hs - d0));
    }
    /* dK[j0:j1] = dS[j0:T, j0:j1]^T Q[j0:T],  dV[j0:j1] = P[j0:T, j0:j1]^T dO[j0:T]
     * (rows above j0 hold zeros in these columns: skipped; kc >= 1 for every key) */
    for (int j0 = 0; j0 < T; j0 += CF_ATT_MR) {
        const int m = cf_att_min(CF_ATT_MR, T - j0), kc = T - j0;
        if (dqn) {
            cf_att_prefetch(dqn, ld, T, hs, 0, j0 / CF_ATT_MR, nblk, 1);
            cf_att_prefetch(dkn, ld, T, hs, 0, j0 / CF_ATT_MR, nblk, 1);
            cf_att_prefetch(dkn + kvs, ld, T, hs, 0, j0 / CF_ATT_MR, nblk, 1);
        }
        cf_att_rows(a, dS + (ptrdiff_t)j0 * Tc + j0, 1, m);
        for (int d0 = 0; d0 < hs; d0 += CF_ATT_NR)
            cf_att_tile(avx2, kc, a, Tc, Ql + (ptrdiff_t)j0 * hp + d0, hp,
                        dk0 + (ptrdiff_t)j0 * ldk + d0, ldk, 1.0f, m,
                        cf_att_min(CF_ATT_NR, hs - d0));
        cf_att_rows(a, att0 + (ptrdiff_t)j0 * T + j0, 1, m);
        for (int d0 = 0; d0 < hs; d0 += CF_ATT_NR)
            cf_att_tile(avx2, kc, a, T, dOl + (ptrdiff_t)j0 * hp + d0, hp,
                        dv0 + (ptrdiff_t)j0 * ldk + d0, ldk, 1.0f, m,
                        cf_att_min(CF_ATT_NR, hs - d0));
    }
}

/* Floats of the group scratch after cf_att_bwd_scratch when KVH < NH: one head's dK and dV,
 * and their sums over the group (T, hs) each. */
static size_t cf_att_group_scratch(const cf_att_args *g) {
    return g->KVH < g->NH ? 4 * cf_zmul(g->T, g->hs) : 0;
}

/* Item it = b * KVH + kvh (kvh = it % KVH, one item per kv head): the query heads of the group
 * in order. One query head per kv head (multi-head attention): dk and dv go straight into dqkv.
 * Else each head's dK, dV go to scratch and are summed in head order (deterministic), then
 * stored once. */
CF_ATT_INLINE void cf_att_bwd_item(int avx2, const cf_att_args *g, int it, int next,
                                   float *scr) {
    const int grp = g->NH / g->KVH, b = it / g->KVH, kvh = it % g->KVH;
    const int h0 = b * g->NH + kvh * grp; /* the first query head's item */
    const int hnext = next >= 0 ? (next / g->KVH) * g->NH + (next % g->KVH) * grp : -1;
    const ptrdiff_t ld = g->QKV, kvs = (ptrdiff_t)g->KVH * g->hs;
    float *dk = g->dqkv + cf_att_offk(g, h0), *dv = dk + kvs;
    if (grp == 1) {
        cf_att_bwd_head(avx2, g, h0, hnext, scr, dk, dv, ld);
        return;
    }
    const int T = g->T, hs = g->hs;
    const size_t th = cf_zmul(T, hs);
    float *gs = scr + cf_att_bwd_scratch(T, hs);
    float *hk = gs, *hv = gs + th, *sk = gs + 2 * th, *sv = gs + 3 * th;
    for (int j = 0; j < grp; j++) {
        const int h = h0 + j;
        cf_att_bwd_head(avx2, g, h, j + 1 < grp ? h + 1 : hnext, scr, j ? hk : sk, j ? hv : sv,
                        hs);
        if (j)
            for (size_t e = 0; e < th; e++) {
                sk[e] += hk[e];
                sv[e] += hv[e];
            }
    }
    for (int t = 0; t < T; t++) {
        memcpy(dk + (ptrdiff_t)t * ld, sk + (size_t)t * hs, sizeof(float) * (size_t)hs);
        memcpy(dv + (ptrdiff_t)t * ld, sv + (size_t)t * hs, sizeof(float) * (size_t)hs);
    }
}

static void cf_att_bwd_item_portable(const cf_att_args *g, int it, int next, float *scr) {
    cf_att_bwd_item(0, g, it, next, scr);
}
#ifdef CF_ATT_X86
static CF_ATT_AVX2 void cf_att_bwd_item_avx2(const cf_att_args *g, int it, int next,
                                             float *scr) {
    cf_att_bwd_item(1, g, it, next, scr);
}
#endif

/* ---- kernel choice, thread split, the ops --------------------------------------------------- */

typedef void (*cf_att_item_fn)(const cf_att_args *g, int it, int next, float *scr);

/* Runs fn on every item [0, n) (b * NH + h forward, b * KVH + kvh backward), each thread on one
 * contiguous range of items (so that it knows which item it takes next), with per_thread floats
 * of zeroed scratch each. */
static int cf_att_run(const char *op, const cf_att_args *g, cf_att_item_fn fn, int n,
                      size_t per_thread) {
    const int par = cf_zmul(g->B, g->T) * g->C >= CF_CPU_PAR_MIN / 8;
    const int nth = par ? cf_cpu_max_threads() : 1;
    size_t stride;
    float *scr = cf_att_scratch(op, per_thread, nth, &stride);
    if (!scr) return CF_ERR_NOMEM;
#pragma omp parallel num_threads(nth) if (par)
    {
        int team = 1;
#ifdef _OPENMP
        team = omp_get_num_threads();
#endif
        const int tid = cf_cpu_thread_num();
        const int lo = (int)((long long)n * tid / team);
        const int hi = (int)((long long)n * (tid + 1) / team);
        float *mine = scr + stride * (size_t)tid;
        for (int it = lo; it < hi; it++) fn(g, it, it + 1 < hi ? it + 1 : -1, mine);
    }
    free(scr);
    return CF_OK;
}

int cf_cpu_attention_forward(cf_backend *be, cf_view out_v, cf_view att_v, cf_view qkv_v, int B,
                             int T, int NH, int KVH, int hs) {
    const cf_att_args g = {cf_cpu_f32(qkv_v), NULL, cf_cpu_f32(att_v), cf_cpu_f32(out_v), NULL,
                           NULL, B, T, NH * hs, NH, hs, KVH, (NH + 2 * KVH) * hs,
                           1.0f / sqrtf((float)hs)};
    cf_att_item_fn fn = cf_att_fwd_item_portable;
#ifdef CF_ATT_X86
    if (cf_cpu_use_avx2(be)) fn = cf_att_fwd_item_avx2;
#endif
    return cf_att_run("attention_forward", &g, fn, B * NH, cf_att_fwd_scratch(T, hs));
}

int cf_cpu_attention_backward(cf_backend *be, cf_view dqkv_v, cf_view datt_v, cf_view dpreatt_v,
                              cf_view dout_v, cf_view qkv_v, cf_view att_v, int B, int T, int NH,
                              int KVH, int hs) {
    /* datt and dpreatt stay untouched: dP and dS live in per-thread scratch */
    const cf_att_args g = {cf_cpu_f32(qkv_v), cf_cpu_f32(att_v), NULL, NULL, cf_cpu_f32(dout_v),
                           cf_cpu_f32(dqkv_v), B, T, NH * hs, NH, hs, KVH, (NH + 2 * KVH) * hs,
                           1.0f / sqrtf((float)hs)};
    cf_att_item_fn fn = cf_att_bwd_item_portable;
#ifdef CF_ATT_X86
    if (cf_cpu_use_avx2(be)) fn = cf_att_bwd_item_avx2;
#endif
    return cf_att_run("attention_backward", &g, fn, B * KVH,
                      cf_att_bwd_scratch(T, hs) + cf_att_group_scratch(&g));
}
