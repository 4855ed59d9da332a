/* clformer: the CPU backend's ops other than GEMM and attention (bias, encoder, LayerNorm,
 * activations, SwiGLU, RMSNorm, RoPE, residual, cross-entropy, reductions, AdamW): OpenMP-parallel, vectorisable loops. Attention is
 * in cpu_attention.c.
 *
 * Determinism: every output element is produced by exactly one thread with a fixed order of
 * additions that does not depend on the thread count. Sums over rows into a shared vector are
 * split by column ranges, each range walking all rows in order (dbias, the dwte scatter), or
 * summed per fixed-size chunk of rows with the chunks' partials then added in order (LayerNorm's
 * dweight, dbias); sums over a whole tensor go through fixed-size chunks combined in order. No
 * atomics. Elementwise loops are split between threads at multiples of the vector width
 * (schedule(simd : static)) or in fixed blocks (AdamW), so which elements a vector body and
 * which a scalar tail computes does not depend on the thread count either.
 *
 * Speed (2 cores of an AMD EPYC Zen 3, the reference machine): memory gives about 30 GB/s to
 * streams that only read and 45 GB/s read + written, so bias_backward, LayerNorm, residual and
 * AdamW (28 bytes per parameter) run at memory speed once vectorised; GELU and the
 * cross-entropy's exp are compute-bound, hence their AVX2/FMA kernels (chosen at run time, next
 * to portable loops that compute the same formulas; AdamW's too, for vsqrtps). */

/* GCC: vectorise loops with float compares (no code here inspects floating-point exception
 * flags; Clang assumes this by default), and let a * b + c become one FMA (ISO C mode turns
 * contraction off; FMAs double the inner loops' throughput, and results stay deterministic for
 * a given build). (optimize("no-math-errno") would be no help for sqrtf: GCC fixes a builtin's
 * errno semantics for the whole translation unit, so AdamW's vsqrtps needs intrinsics.) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#pragma GCC optimize("fp-contract=fast")
#endif

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "backend/cpu/cpu_math.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define CF_OPS_X86 1
#include <immintrin.h>
#define CF_OPS_AVX2 __attribute__((target("avx2,fma")))
#endif

/* Column ranges for "sum over rows" reductions: 64 floats = four cache lines, so two threads
 * never write the same line and each range's accumulators fit in registers. */
#define CF_COLS 64
/* Elements per partial sum of reduce_sum (fixed, so the result does not depend on threads). */
#define CF_SUM_CHUNK 16384

/* Rows per partial sum of LayerNorm's dweight/dbias (fixed, so the result does not depend on
 * threads; 64 rows of C floats stay in L1/L2 while the partials are built). */
#define CF_LN_ROWS 64
/* Widest column block one thread sums over rows in bias_backward: its accumulators (4 KB)
 * stay in L1 while the rows stream past. */
#define CF_BIAS_BLOCK 1024

#define CF_GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define CF_GELU_A 0.044715f
/* -2u = x (C1 + C2 x^2), u = K (x + A x^3) */
#define CF_GELU_C1 (-2.0f * CF_GELU_K)
#define CF_GELU_C2 (-2.0f * CF_GELU_K * CF_GELU_A)

static inline int cf_cpu_num_threads(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* Row reductions in 32 fixed lanes: four independent vector accumulators (so the adds' latency
 * overlaps instead of chaining) combined in a fixed order; deterministic for a given build. */
static inline float cf_cpu_lanes32_sum(const float a[32]) {
    float h[8];
    for (int l = 0; l < 8; l++) h[l] = (a[l] + a[l + 8]) + (a[l + 16] + a[l + 24]);
    return ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7]));
}

/* The lanes start from the first 32 terms rather than from zero: a zeroed local array becomes
 * a memset (rep stosq under GCC 12), which cost more than the row's arithmetic. */

/* sum of x[0..n) */
static inline float cf_cpu_sum32(const float *x, int n) {
    if (n < 32) {
        float s = 0.0f;
        for (int j = 0; j < n; j++) s += x[j];
        return s;
    }
    float a[32];
    for (int l = 0; l < 32; l++) a[l] = x[l];
    int j = 32;
    for (; j + 32 <= n; j += 32)
        for (int l = 0; l < 32; l++) a[l] += x[j + l];
    for (; j < n; j++) a[j & 31] += x[j];
    return cf_cpu_lanes32_sum(a);
}

/* sum of (x[j] - m)^2 over [0, n) */
static inline float cf_cpu_sqdev32(const float *x, float m, int n) {
    if (n < 32) {
        float s = 0.0f;
        for (int j = 0; j < n; j++) s += (x[j] - m) * (x[j] - m);
        return s;
    }
    float a[32];
    for (int l = 0; l < 32; l++) a[l] = (x[l] - m) * (x[l] - m);
    int j = 32;
    for (; j + 32 <= n; j += 32)
        for (int l = 0; l < 32; l++) {
            const float d = x[j + l] - m;
            a[l] += d * d;
        }
    for (; j < n; j++) {
        const float d = x[j] - m;
        a[j & 31] += d * d;
    }
    return cf_cpu_lanes32_sum(a);
}

/* s1 = sum of w*d, s2 = sum of w*d*(x - m) over [0, n) (LayerNorm backward's row sums) */
static inline void cf_cpu_lnb_sums32(const float *x, const float *d, const float *w, float m, int n,
                                     float *s1, float *s2) {
    if (n < 32) {
        float t1 = 0.0f, t2 = 0.0f;
        for (int j = 0; j < n; j++) {
            t1 += w[j] * d[j];
            t2 += w[j] * d[j] * (x[j] - m);
        }
        *s1 = t1, *s2 = t2;
        return;
    }
    float a1[32], a2[32];
    for (int l = 0; l < 32; l++) {
        a1[l] = w[l] * d[l];
        a2[l] = a1[l] * (x[l] - m);
    }
    int j = 32;
    for (; j + 32 <= n; j += 32)
        for (int l = 0; l < 32; l++) {
            const float dn = w[j + l] * d[j + l];
            a1[l] += dn;
            a2[l] += dn * (x[j + l] - m);
        }
    for (; j < n; j++) {
        const float dn = w[j] * d[j];
        a1[j & 31] += dn;
        a2[j & 31] += dn * (x[j] - m);
    }
    *s1 = cf_cpu_lanes32_sum(a1), *s2 = cf_cpu_lanes32_sum(a2);
}

/* max of x[0..n) (n >= 1) as an OpenMP simd max reduction: GCC turns this into vmaxps, while
 * the eight-lane ternary form in cpu_math.h stays scalar (vmaxss) under GCC 12. Clang 14-15
 * vectorise neither form without fast-math, and warn when told to. */
static inline float cf_cpu_vmaxf(const float *x, int n) {
    float m = x[0];
#if !defined(__clang__)
#pragma omp simd reduction(max : m)
#endif
    for (int j = 0; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

/* ---- bias ----------------------------------------------------------------------------------- */

int cf_cpu_add_bias(cf_backend *be, cf_view out_v, cf_view bias_v, int N, int OC) {
    float *out = cf_cpu_f32(out_v);
    const float *bias = cf_cpu_f32(bias_v);
#pragma omp parallel for schedule(static) if (cf_zmul(N, OC) >= CF_CPU_PAR_MIN)
    for (int i = 0; i < N; i++) {
        float *o = out + cf_zmul(i, OC);
#pragma omp simd
        for (int j = 0; j < OC; j++) o[j] += bias[j];
    }
    return CF_OK;
}

/* dbias(OC) += column sums of dout(N,OC). Each thread owns one contiguous column range (cut at
 * multiples of 16 floats, so two threads never write the same cache line) and walks every row in
 * order over it: each row is read as one contiguous piece per thread, and a column's sum is the
 * same sequence of additions whatever the ranges are, so the result does not depend on the
 * thread count. */
int cf_cpu_bias_backward(cf_backend *be, cf_view dbias_v, cf_view dout_v, int N, int OC) {
    float *dbias = cf_cpu_f32(dbias_v);
    const float *dout = cf_cpu_f32(dout_v);
#pragma omp parallel if (cf_zmul(N, OC) >= CF_CPU_PAR_MIN)
    {
        const int nt = cf_cpu_num_threads(), tid = cf_cpu_thread_num();
        const int per = ((OC + nt - 1) / nt + 15) & ~15;
        const int lo = tid * per < OC ? tid * per : OC;
        const int hi = lo + per < OC ? lo + per : OC;
        for (int c0 = lo; c0 < hi; c0 += CF_BIAS_BLOCK) {
            const int w = hi - c0 < CF_BIAS_BLOCK ? hi - c0 : CF_BIAS_BLOCK;
            float acc[CF_BIAS_BLOCK];
            const float *d = dout + c0;
            const size_t ld = (size_t)OC;
            int i = 0;
#pragma omp simd
            for (int j = 0; j < w; j++) acc[j] = 0.0f;
            /* four rows per visit of acc: the same additions in the same order as one row at a
             * time, with a quarter of the accumulator loads and stores */
            for (; i + 4 <= N; i += 4, d += 4 * ld)
#pragma omp simd
                for (int j = 0; j < w; j++)
                    acc[j] = (((acc[j] + d[j]) + d[ld + j]) + d[2 * ld + j]) + d[3 * ld + j];
            for (; i < N; i++, d += ld)
#pragma omp simd
                for (int j = 0; j < w; j++) acc[j] += d[j];
#pragma omp simd
            for (int j = 0; j < w; j++) dbias[c0 + j] += acc[j];
        }
    }
    return CF_OK;
}

/* ---- encoder -------------------------------------------------------------------------------- */

/* token ids clamped into [0, V) (backend.h): a bad id never reads past the table */
static inline size_t cf_cpu_tok(int32_t tok, int V) {
    return (size_t)(tok < 0 ? 0 : tok >= V ? V - 1 : tok);
}

int cf_cpu_encoder_forward(cf_backend *be, cf_view out_v, cf_view tokens_v, cf_view wte_v,
                           cf_view wpe_v, int B, int T, int C, int V) {
    const size_t BT = cf_zmul(B, T);
    const int32_t *tokens = cf_cpu_i32(tokens_v);
    float *out = cf_cpu_f32(out_v);
    const float *wte = cf_cpu_f32(wte_v), *wpe = wpe_v.buf ? cf_cpu_f32(wpe_v) : NULL;
#pragma omp parallel for schedule(static) if (BT * C >= CF_CPU_PAR_MIN)
    for (int i = 0; i < B * T; i++) {
        float *o = out + cf_zmul(i, C);
        const float *e = wte + cf_cpu_tok(tokens[i], V) * C;
        if (!wpe) { /* no position table (RoPE models) */
            memcpy(o, e, sizeof(float) * (size_t)C);
            continue;
        }
        const float *p = wpe + cf_zmul(i % T, C);
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
    }
    return CF_OK;
}

int cf_cpu_encoder_backward(cf_backend *be, cf_view dwte_v, cf_view dwpe_v, cf_view dout_v,
                            cf_view tokens_v, int B, int T, int C, int V) {
    const size_t BT = cf_zmul(B, T);
    const int32_t *tokens = cf_cpu_i32(tokens_v);
    float *dwte = cf_cpu_f32(dwte_v), *dwpe = dwpe_v.buf ? cf_cpu_f32(dwpe_v) : NULL;
    const float *dout = cf_cpu_f32(dout_v);
    const int nr = (C + CF_COLS - 1) / CF_COLS;
    const int par = BT * C >= CF_CPU_PAR_MIN;
#pragma omp parallel if (par)
    {
        /* dwpe(T,C): position t sums its B rows in batch order */
#pragma omp for schedule(static)
        for (int t = 0; t < (dwpe ? T : 0); t++) {
            float *dp = dwpe + cf_zmul(t, C);
            for (int b = 0; b < B; b++) {
                const float *d = dout + (cf_zmul(b, T) + t) * C;
#pragma omp simd
                for (int c = 0; c < C; c++) dp[c] += d[c];
            }
        }
        /* dwte(V,C): the scatter by token, split by column ranges, rows in (b,t) order, so
         * repeated tokens always add up in the same order */
#pragma omp for schedule(static)
        for (int r = 0; r < nr; r++) {
            const int c0 = r * CF_COLS, w = C - c0 < CF_COLS ? C - c0 : CF_COLS;
            for (size_t i = 0; i < BT; i++) {
                float *dw = dwte + cf_cpu_tok(tokens[i], V) * C + c0;
                const float *d = dout + i * C + c0;
#pragma omp simd
                for (int j = 0; j < w; j++) dw[j] += d[j];
            }
        }
    }
    return CF_OK;
}

/* ---- LayerNorm ------------------------------------------------------------------------------ */

int cf_cpu_layernorm_forward(cf_backend *be, cf_view out_v, cf_view mean_v, cf_view rstd_v,
                             cf_view inp_v, cf_view weight_v, cf_view bias_v, int N, int C,
                             float eps) {
    const size_t NC = cf_zmul(N, C);
    float *out = cf_cpu_f32(out_v);
    float *mean = mean_v.buf ? cf_cpu_f32(mean_v) : NULL;
    float *rstd = rstd_v.buf ? cf_cpu_f32(rstd_v) : NULL;
    const float *inp = cf_cpu_f32(inp_v), *w = cf_cpu_f32(weight_v);
    const float *bb = bias_v.buf ? cf_cpu_f32(bias_v) : NULL;
#pragma omp parallel for schedule(static) if (NC >= CF_CPU_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *x = inp + cf_zmul(i, C);
        const float m = cf_cpu_sum32(x, C) / (float)C;
        const float r = 1.0f / sqrtf(cf_cpu_sqdev32(x, m, C) / (float)C + eps);
        float *o = out + cf_zmul(i, C);
        if (bb) {
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * w[c] + bb[c];
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * w[c];
        }
        if (mean) mean[i] = m;
        if (rstd) rstd[i] = r;
    }
    return CF_OK;
}

int cf_cpu_layernorm_backward(cf_backend *be, cf_view dinp_v, cf_view dweight_v, cf_view dbias_v,
                              cf_view dout_v, cf_view inp_v, cf_view weight_v, cf_view mean_v,
                              cf_view rstd_v, int N, int C) {
    const size_t NC = cf_zmul(N, C);
    float *dinp = cf_cpu_f32(dinp_v), *dweight = cf_cpu_f32(dweight_v);
    float *dbias = dbias_v.buf ? cf_cpu_f32(dbias_v) : NULL; /* optional: no bias */
    const float *dout = cf_cpu_f32(dout_v), *inp = cf_cpu_f32(inp_v);
    const float *w = cf_cpu_f32(weight_v), *mean = cf_cpu_f32(mean_v);
    const float *rstd = cf_cpu_f32(rstd_v);
    /* One pass over the rows does both gradients: dinp row by row, and per chunk of CF_LN_ROWS
     * rows the partial sums of norm * dout and dout (part: (nch, 2, C)); the partials are then
     * added in chunk order, so the result does not depend on how chunks fall to threads. */
    if (N <= 0 || C <= 0) return CF_OK;
    const int nch = (N + CF_LN_ROWS - 1) / CF_LN_ROWS;
    float *part = malloc(sizeof(float) * 2 * cf_zmul(nch, C));
    if (!part) {
        CF_ERROR("cpu layernorm_backward: could not allocate %d x %d partial sums", nch, 2 * C);
        return CF_ERR_NOMEM;
    }
    const int nr = (C + CF_COLS - 1) / CF_COLS;
#pragma omp parallel if (NC >= CF_CPU_PAR_MIN)
    {
#pragma omp for schedule(static)
        for (int ch = 0; ch < nch; ch++) {
            float *pw = part + 2 * cf_zmul(ch, C), *pb = pw + C;
            const int i1 = (ch + 1) * CF_LN_ROWS < N ? (ch + 1) * CF_LN_ROWS : N;
#pragma omp simd
            for (int c = 0; c < 2 * C; c++) pw[c] = 0.0f;
            for (int i = ch * CF_LN_ROWS; i < i1; i++) {
                const float *x = inp + cf_zmul(i, C), *d = dout + cf_zmul(i, C);
                float *di = dinp + cf_zmul(i, C);
                const float m = mean[i], rs = rstd[i];
                /* s1 = mean(w*dout), s2 = mean(w*dout*norm), in 32 fixed lanes */
                float t1, t2;
                cf_cpu_lnb_sums32(x, d, w, m, C, &t1, &t2);
                const float s1 = t1 / (float)C, s2 = t2 * rs / (float)C;
                /* dinp(N,C) += (w*dout - s1 - norm * s2) * rstd */
#pragma omp simd
                for (int j = 0; j < C; j++) {
                    const float norm = (x[j] - m) * rs;
                    pw[j] += norm * d[j];
                    pb[j] += d[j];
                    di[j] += (w[j] * d[j] - s1 - norm * s2) * rs;
                }
            }
        }
        /* dweight(C) += sum of the chunks' partials, dbias(C) likewise: column ranges, chunks in
         * order */
#pragma omp for schedule(static)
        for (int r = 0; r < nr; r++) {
            const int c0 = r * CF_COLS, cw = C - c0 < CF_COLS ? C - c0 : CF_COLS;
            float aw[CF_COLS] = {0}, ab[CF_COLS] = {0};
            for (int ch = 0; ch < nch; ch++) {
                const float *pw = part + 2 * cf_zmul(ch, C) + c0, *pb = pw + C;
#pragma omp simd
                for (int j = 0; j < cw; j++) {
                    aw[j] += pw[j];
                    ab[j] += pb[j];
                }
            }
            for (int j = 0; j < cw; j++) {
                dweight[c0 + j] += aw[j];
                if (dbias) dbias[c0 + j] += ab[j];
            }
        }
    }
    free(part);
    return CF_OK;
}

#ifdef CF_OPS_X86
/* 2^t for 8 lanes of t in [-126, 127] (the caller clamps) or NaN: t = k + f with k = round(t),
 * |f| <= 1/2, read from the bits of t + 1.5 * 2^23 (its low bits hold k, so shifted left by 23
 * they are k << 23, the exponent field of 2^k); 2^f by a degree-6 polynomial fitted for relative
 * error on [-1/2, 1/2] (1.9e-9, 1.0e-7 = 1.7 ulp with float rounding, like cf_cpu_expf's degree-7
 * Taylor after a two-constant ln 2 reduction, in 12 operations instead of 14). Callers fold
 * log2(e) into their own constants. */
CF_OPS_AVX2 static inline __m256 cf_exp2_8(__m256 t) {
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    const __m256 kb = _mm256_add_ps(t, magic);
    const __m256 f = _mm256_sub_ps(t, _mm256_sub_ps(kb, magic));
    __m256 p = _mm256_set1_ps(1.5345655265264213e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3399870367720723e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618489071726799e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550329014658928e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.24022646248340607f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.6931471824645996f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_add_epi32(_mm256_slli_epi32(_mm256_castps_si256(kb), 23),
                                       _mm256_set1_epi32(127 << 23));
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

#define CF_LOG2E 1.44269504088896341f

/* Elements per work item of the AVX2 elementwise kernels (a multiple of 8); each kernel runs
 * its last n % 8 elements through masked loads and stores with the same arithmetic, so every
 * element gets the same bits whatever the split between threads. */
#define CF_EW_BLOCK 8192

/* lanes i < rem set */
CF_OPS_AVX2 static inline __m256i cf_tail_mask(size_t rem) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* GELU in 19 vector operations per 8 elements (the portable loop compiles to 34): e = exp(-2u)
 * = 2^t with t = x (C1 + C2 x^2) log2(e) (the constants folded), clamped to [-125, 115]
 * (NaN kept: vmaxps/vminps return their second operand on NaN; 115 = 80 / ln 2 rather than 127
 * keeps 1/(1+e) a normal float, since subnormal results cost a microcode assist per vector),
 * s = 1/(1+e). */
CF_OPS_AVX2 static inline __m256 cf_gelu_exp8(__m256 x, __m256 x2) {
    __m256 t = _mm256_mul_ps(x, _mm256_fmadd_ps(x2, _mm256_set1_ps(CF_GELU_C2 * CF_LOG2E),
                                                _mm256_set1_ps(CF_GELU_C1 * CF_LOG2E)));
    t = _mm256_min_ps(_mm256_set1_ps(115.0f), _mm256_max_ps(_mm256_set1_ps(-125.0f), t));
    return cf_exp2_8(t);
}

/* out = x / (1 + e) */
CF_OPS_AVX2 static inline __m256 cf_gelu_fwd8(__m256 x) {
    const __m256 e = cf_gelu_exp8(x, _mm256_mul_ps(x, x));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* gelu'(x) * dout = s (1 + x 2u' (1 - s)) dout, with 1 - s = e s (exact where s -> 1) and
 * 2u' = 2K + 6KA x^2 */
CF_OPS_AVX2 static inline __m256 cf_gelu_bwd8(__m256 x, __m256 dout) {
    const __m256 x2 = _mm256_mul_ps(x, x);
    const __m256 e = cf_gelu_exp8(x, x2);
    const __m256 s = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    const __m256 du2 = _mm256_fmadd_ps(x2, _mm256_set1_ps(6.0f * CF_GELU_K * CF_GELU_A),
                                       _mm256_set1_ps(2.0f * CF_GELU_K));
    const __m256 q = _mm256_mul_ps(_mm256_mul_ps(x, du2), _mm256_mul_ps(e, s));
    return _mm256_mul_ps(_mm256_fmadd_ps(s, q, s), dout);
}

/* The kernels below take 2-4 vectors per step: each vector's chain of dependent operations is
 * about 90 cycles long, and independent chains side by side let the out-of-order core overlap
 * them (one at a time ran at half the throughput). */
CF_OPS_AVX2 static void cf_gelu_fwd_avx2(float *out, const float *inp, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256 y0 = cf_gelu_fwd8(_mm256_loadu_ps(inp + i));
        const __m256 y1 = cf_gelu_fwd8(_mm256_loadu_ps(inp + i + 8));
        const __m256 y2 = cf_gelu_fwd8(_mm256_loadu_ps(inp + i + 16));
        const __m256 y3 = cf_gelu_fwd8(_mm256_loadu_ps(inp + i + 24));
        _mm256_storeu_ps(out + i, y0);
        _mm256_storeu_ps(out + i + 8, y1);
        _mm256_storeu_ps(out + i + 16, y2);
        _mm256_storeu_ps(out + i + 24, y3);
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, cf_gelu_fwd8(_mm256_loadu_ps(inp + i)));
    if (i < n) {
        const __m256i m = cf_tail_mask(n - i);
        _mm256_maskstore_ps(out + i, m, cf_gelu_fwd8(_mm256_maskload_ps(inp + i, m)));
    }
}

CF_OPS_AVX2 static void cf_gelu_bwd_avx2(float *dinp, const float *inp, const float *dout,
                                         size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 g0 = cf_gelu_bwd8(_mm256_loadu_ps(inp + i), _mm256_loadu_ps(dout + i));
        const __m256 g1 =
            cf_gelu_bwd8(_mm256_loadu_ps(inp + i + 8), _mm256_loadu_ps(dout + i + 8));
        _mm256_storeu_ps(dinp + i, g0);
        _mm256_storeu_ps(dinp + i + 8, g1);
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dinp + i,
                         cf_gelu_bwd8(_mm256_loadu_ps(inp + i), _mm256_loadu_ps(dout + i)));
    if (i < n) {
        const __m256i m = cf_tail_mask(n - i);
        _mm256_maskstore_ps(dinp + i, m,
                            cf_gelu_bwd8(_mm256_maskload_ps(inp + i, m),
                                         _mm256_maskload_ps(dout + i, m)));
    }
}
#endif

/* ---- GELU, residual, axpy ------------------------------------------------------------------- */

/* gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). With 1 + tanh(u) =
 * 2 / (1 + exp(-2u)) this is x * s, s = sigmoid(2u), which needs one exp and no branches;
 * d/dx = s + 2 x s (1 - s) u' = s (1 + x 2u' e s) with e = exp(-2u): 1 - s = e s has no
 * cancellation where s -> 1 (written as 1 - s it cost up to 1e-6 of relative accuracy).
 * The portable loops, the AVX2 kernels and gelu.cl compute these same formulas. */
static int cf_cpu_gelu_forward(cf_backend *be, cf_view out_v, cf_view inp_v, size_t n) {
    float *out = cf_cpu_f32(out_v);
    const float *inp = cf_cpu_f32(inp_v);
#ifdef CF_OPS_X86
    if (cf_cpu_use_avx2(be)) {
        const size_t nb = (n + CF_EW_BLOCK - 1) / CF_EW_BLOCK;
#pragma omp parallel for schedule(static) if (n >= CF_CPU_PAR_MIN)
        for (size_t b = 0; b < nb; b++) {
            const size_t i0 = b * CF_EW_BLOCK;
            cf_gelu_fwd_avx2(out + i0, inp + i0, n - i0 < CF_EW_BLOCK ? n - i0 : CF_EW_BLOCK);
        }
        return CF_OK;
    }
#endif
#pragma omp parallel for simd schedule(simd : static) if (parallel : n >= CF_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        out[i] = x / (1.0f + cf_cpu_expf(x * (CF_GELU_C1 + CF_GELU_C2 * (x * x))));
    }
    return CF_OK;
}

/* dinp = gelu'(inp) * dout, ASSIGNED (see backend.h); dinp may alias dout or inp: each element
 * is read before it is written, and the simd loop carries no dependence between elements. */
static int cf_cpu_gelu_backward(cf_backend *be, cf_view dinp_v, cf_view inp_v, cf_view dout_v,
                                size_t n) {
    float *dinp = cf_cpu_f32(dinp_v);
    const float *inp = cf_cpu_f32(inp_v), *dout = cf_cpu_f32(dout_v);
#ifdef CF_OPS_X86
    if (cf_cpu_use_avx2(be)) {
        const size_t nb = (n + CF_EW_BLOCK - 1) / CF_EW_BLOCK;
#pragma omp parallel for schedule(static) if (n >= CF_CPU_PAR_MIN)
        for (size_t b = 0; b < nb; b++) {
            const size_t i0 = b * CF_EW_BLOCK;
            cf_gelu_bwd_avx2(dinp + i0, inp + i0, dout + i0,
                             n - i0 < CF_EW_BLOCK ? n - i0 : CF_EW_BLOCK);
        }
        return CF_OK;
    }
#endif
#pragma omp parallel for simd schedule(simd : static) if (parallel : n >= CF_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i], x2 = x * x;
        const float e = cf_cpu_expf(x * (CF_GELU_C1 + CF_GELU_C2 * x2));
        const float s = 1.0f / (1.0f + e);
        const float du2 = 2.0f * CF_GELU_K + 6.0f * CF_GELU_K * CF_GELU_A * x2;
        const float q = (x * du2) * (e * s);
        dinp[i] = (s * q + s) * dout[i];
    }
    return CF_OK;
}

/* silu(x) = x * sigmoid(x) = x / (1 + exp(-x)); silu'(x) = s (1 + x (1 - s)), s = sigmoid(x) */
static inline float cf_cpu_silu(float x) { return x / (1.0f + cf_cpu_expf(-x)); }
static inline float cf_cpu_dsilu(float x) {
    const float s = 1.0f / (1.0f + cf_cpu_expf(-x));
    return s * (1.0f + x * (1.0f - s));
}

int cf_cpu_act_forward(cf_backend *be, enum cf_act act, cf_view out_v, cf_view inp_v, size_t n) {
    if (act == CF_ACT_GELU) return cf_cpu_gelu_forward(be, out_v, inp_v, n);
    float *out = cf_cpu_f32(out_v);
    const float *inp = cf_cpu_f32(inp_v);
    if (act == CF_ACT_RELU2) {
#pragma omp parallel for simd schedule(simd : static) if (parallel : n >= CF_CPU_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            const float r = inp[i] > 0.0f ? inp[i] : 0.0f;
            out[i] = r * r;
        }
    } else {
#pragma omp parallel for simd schedule(simd : static) if (parallel : n >= CF_CPU_PAR_MIN)
        for (size_t i = 0; i < n; i++) out[i] = cf_cpu_silu(inp[i]);
    }
    return CF_OK;
}

/* dinp = act'(inp) * dout, ASSIGNED; dinp may alias dout (each element is read first) */
int cf_cpu_act_backward(cf_backend *be, enum cf_act act, cf_view dinp_v, cf_view inp_v,
                        cf_view dout_v, size_t n) {
    if (act == CF_ACT_GELU) return cf_cpu_gelu_backward(be, dinp_v, inp_v, dout_v, n);
    float *dinp = cf_cpu_f32(dinp_v);
    const float *inp = cf_cpu_f32(inp_v), *dout = cf_cpu_f32(dout_v);
    if (act == CF_ACT_RELU2) {
#pragma omp parallel for simd schedule(simd : static) if (parallel : n >= CF_CPU_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            const float r = inp[i] > 0.0f ? inp[i] : 0.0f;
            dinp[i] = 2.0f * r * dout[i];
        }
    } else {
#pragma omp parallel for simd schedule(simd : static) if (parallel : n >= CF_CPU_PAR_MIN)
        for (size_t i = 0; i < n; i++) dinp[i] = cf_cpu_dsilu(inp[i]) * dout[i];
    }
    return CF_OK;
}

/* ---- SwiGLU --------------------------------------------------------------------------------- */

int cf_cpu_swiglu_forward(cf_backend *be, cf_view out_v, cf_view inp_v, int N, int F) {
    float *out = cf_cpu_f32(out_v);
    const float *inp = cf_cpu_f32(inp_v);
#pragma omp parallel for schedule(static) if (cf_zmul(N, F) >= CF_CPU_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *g = inp + 2 * cf_zmul(i, F), *u = g + F;
        float *o = out + cf_zmul(i, F);
#pragma omp simd
        for (int j = 0; j < F; j++) o[j] = cf_cpu_silu(g[j]) * u[j];
    }
    return CF_OK;
}

/* d gate = dout * up * silu'(gate), d up = dout * silu(gate), both ASSIGNED */
int cf_cpu_swiglu_backward(cf_backend *be, cf_view dinp_v, cf_view inp_v, cf_view dout_v, int N,
                           int F) {
    float *dinp = cf_cpu_f32(dinp_v);
    const float *inp = cf_cpu_f32(inp_v), *dout = cf_cpu_f32(dout_v);
#pragma omp parallel for schedule(static) if (cf_zmul(N, F) >= CF_CPU_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *g = inp + 2 * cf_zmul(i, F), *u = g + F, *d = dout + cf_zmul(i, F);
        float *dg = dinp + 2 * cf_zmul(i, F), *du = dg + F;
#pragma omp simd
        for (int j = 0; j < F; j++) {
            const float x = g[j], dj = d[j], uj = u[j];
            const float s = 1.0f / (1.0f + cf_cpu_expf(-x));
            dg[j] = dj * uj * (s * (1.0f + x * (1.0f - s)));
            du[j] = dj * (x * s);
        }
    }
    return CF_OK;
}

/* ---- RMSNorm, RoPE -------------------------------------------------------------------------- */

/* sum of x[j]*y[j], j < n, in 8 fixed lanes (the order does not depend on threads) */
static inline float cf_cpu_dot8(const float *x, const float *y, int n) {
    float a[8] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) a[l] += x[j + l] * y[j + l];
    for (; j < n; j++) a[0] += x[j] * y[j];
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

int cf_cpu_rmsnorm_forward(cf_backend *be, cf_view out_v, cf_view rstd_v, cf_view inp_v,
                           cf_view weight_v, int N, int G, int C, int ld, float eps) {
    float *out = cf_cpu_f32(out_v), *rstd = rstd_v.buf ? cf_cpu_f32(rstd_v) : NULL;
    const float *inp = cf_cpu_f32(inp_v), *w = cf_cpu_f32(weight_v);
#pragma omp parallel for schedule(static) if (cf_zmul(N, G * C) >= CF_CPU_PAR_MIN)
    for (int i = 0; i < N; i++)
        for (int g = 0; g < G; g++) {
            const size_t o = cf_zmul(i, ld) + cf_zmul(g, C);
            const float *x = inp + o;
            const float r = 1.0f / sqrtf(cf_cpu_dot8(x, x, C) / (float)C + eps);
            float *y = out + o;
#pragma omp simd
            for (int c = 0; c < C; c++) y[c] = x[c] * r * w[c];
            if (rstd) rstd[cf_zmul(i, G) + (size_t)g] = r;
        }
    return CF_OK;
}

/* y = x r w, r = (mean(x^2) + eps)^-1/2:
 *   dx = r (w dout) - x r^3 sum(w dout x) / C,   dw += sum over rows and groups of dout x r.
 * dweight first (column ranges, rows in order), then dinp, so that dinp may alias dout. */
int cf_cpu_rmsnorm_backward(cf_backend *be, cf_view dinp_v, cf_view dweight_v, cf_view dout_v,
                            cf_view inp_v, cf_view weight_v, cf_view rstd_v, int N, int G, int C,
                            int ld, int accumulate) {
    float *dinp = cf_cpu_f32(dinp_v), *dweight = cf_cpu_f32(dweight_v);
    const float *dout = cf_cpu_f32(dout_v), *inp = cf_cpu_f32(inp_v);
    const float *w = cf_cpu_f32(weight_v), *rstd = cf_cpu_f32(rstd_v);
    const int par = cf_zmul(N, G * C) >= CF_CPU_PAR_MIN;
    const int nr = (C + CF_COLS - 1) / CF_COLS;
    const size_t rows = cf_zmul(N, G);
#pragma omp parallel for schedule(static) if (par)
    for (int r = 0; r < nr; r++) {
        const int c0 = r * CF_COLS, cw = C - c0 < CF_COLS ? C - c0 : CF_COLS;
        float acc[CF_COLS] = {0};
        for (size_t k = 0; k < rows; k++) {
            const size_t o = (k / (size_t)G) * (size_t)ld + (k % (size_t)G) * (size_t)C + c0;
            const float rs = rstd[k];
            const float *x = inp + o, *d = dout + o;
#pragma omp simd
            for (int j = 0; j < cw; j++) acc[j] += d[j] * x[j] * rs;
        }
        for (int j = 0; j < cw; j++) dweight[c0 + j] += acc[j];
    }
#pragma omp parallel for schedule(static) if (par)
    for (int i = 0; i < N; i++)
        for (int g = 0; g < G; g++) {
            const size_t o = cf_zmul(i, ld) + cf_zmul(g, C);
            const float *x = inp + o, *d = dout + o;
            float *di = dinp + o;
            const float rs = rstd[cf_zmul(i, G) + (size_t)g];
            float a[8] = {0};
            int j = 0;
            for (; j + 8 <= C; j += 8)
                for (int l = 0; l < 8; l++) a[l] += w[j + l] * d[j + l] * x[j + l];
            for (; j < C; j++) a[0] += w[j] * d[j] * x[j];
            const float s = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
            const float k3 = rs * rs * rs * s / (float)C;
            if (accumulate) {
#pragma omp simd
                for (int c = 0; c < C; c++) di[c] += rs * w[c] * d[c] - x[c] * k3;
            } else {
#pragma omp simd
                for (int c = 0; c < C; c++) di[c] = rs * w[c] * d[c] - x[c] * k3;
            }
        }
    return CF_OK;
}

int cf_cpu_rope(cf_backend *be, cf_view x_v, cf_view cs_v, int B, int T, int H, int hs, int ld,
                int pos0, int inverse) {
    float *x = cf_cpu_f32(x_v);
    const float *cs = cf_cpu_f32(cs_v);
    const int half = hs / 2, N = B * T;
    const float sgn = inverse ? -1.0f : 1.0f; /* the inverse rotates by -angle */
#pragma omp parallel for schedule(static) if (cf_zmul(N, H * hs) >= CF_CPU_PAR_MIN)
    for (int r = 0; r < N; r++) {
        const float *p = cs + cf_zmul(pos0 + r % T, hs); /* hs/2 (cos, sin) pairs */
        for (int h = 0; h < H; h++) {
            float *a = x + cf_zmul(r, ld) + cf_zmul(h, hs), *b = a + half;
#pragma omp simd
            for (int i = 0; i < half; i++) {
                const float c = p[2 * i], s = sgn * p[2 * i + 1], ai = a[i], bi = b[i];
                a[i] = ai * c - bi * s;
                b[i] = ai * s + bi * c;
            }
        }
    }
    return CF_OK;
}

int cf_cpu_residual_forward(cf_backend *be, cf_view out_v, cf_view a_v, cf_view b_v, size_t n) {
    float *out = cf_cpu_f32(out_v);
    const float *a = cf_cpu_f32(a_v), *b = cf_cpu_f32(b_v);
#pragma omp parallel for simd schedule(simd : static) if (parallel : n >= CF_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    return CF_OK;
}

int cf_cpu_axpy(cf_backend *be, cf_view y_v, cf_view x_v, float alpha, size_t n) {
    float *y = cf_cpu_f32(y_v);
    const float *x = cf_cpu_f32(x_v);
#pragma omp parallel for simd schedule(simd : static) if (parallel : n >= CF_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
    return CF_OK;
}

/* ---- cross-entropy -------------------------------------------------------------------------- */

/* max of a row and sum of exp(x - max), with exp(x - max) stored into e when e != NULL
 * (e may be x itself) */
static inline float cf_cpu_softmax_row(const float *x, float *e, int V, float *sum_out) {
    const float maxv = cf_cpu_vmaxf(x, V);
    float sum = 0.0f;
    if (e) {
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) {
            const float ex = cf_cpu_expf(x[j] - maxv);
            e[j] = ex;
            sum += ex;
        }
    } else {
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) sum += cf_cpu_expf(x[j] - maxv);
    }
    *sum_out = sum;
    return maxv;
}

/* z' = c tanh(z / c) of a row into zc */
static inline void cf_cpu_softcap_row(const float *x, float *zc, int V, float c) {
    const float ic = 1.0f / c;
    for (int j = 0; j < V; j++) zc[j] = c * tanhf(x[j] * ic);
}

/* The soft-capped loss (c > 0), portable: each thread a scratch row of the capped logits z';
 * with d (the fused form) d = (softmax(z') - onehot) * dloss * (1 - (z'/c)^2). */
static int cf_cpu_crossentropy_capped(const float *logits, const int32_t *targets, float *losses,
                                      float *dlogits, int N, int V, float dloss, float c) {
    int rc = CF_OK;
#pragma omp parallel if (cf_zmul(N, V) >= CF_CPU_PAR_MIN)
    {
        float *zc = malloc(sizeof(float) * (size_t)V);
        if (!zc) {
#pragma omp atomic write
            rc = CF_ERR_NOMEM;
        }
#pragma omp for schedule(static)
        for (int i = 0; i < N; i++) {
            if (!zc) continue;
            const int tg = targets[i];
            float *d = dlogits ? dlogits + cf_zmul(i, V) : NULL;
            if (tg < 0 || tg >= V) { /* ignored (backend.h) */
                losses[i] = 0.0f;
                if (d) memset(d, 0, sizeof(float) * (size_t)V);
                continue;
            }
            cf_cpu_softcap_row(logits + cf_zmul(i, V), zc, V, c);
            float sum;
            const float maxv = cf_cpu_softmax_row(zc, d, V, &sum);
            losses[i] = logf(sum) - (zc[tg] - maxv);
            if (!d) continue;
            const float s = dloss / sum, ic = 1.0f / c;
#pragma omp simd
            for (int j = 0; j < V; j++) d[j] *= s;
            d[tg] -= dloss;
#pragma omp simd
            for (int j = 0; j < V; j++) {
                const float t = zc[j] * ic;
                d[j] *= 1.0f - t * t;
            }
        }
        free(zc);
    }
    if (rc < 0) CF_ERROR("cpu crossentropy: could not allocate a row of %d logits", V);
    return rc;
}

int cf_cpu_crossentropy_forward(cf_backend *be, cf_view losses_v, cf_view logits_v,
                                cf_view targets_v, int N, int V, float softcap) {
    const int32_t *targets = cf_cpu_i32(targets_v);
    float *losses = cf_cpu_f32(losses_v);
    const float *logits = cf_cpu_f32(logits_v);
    if (softcap > 0.0f)
        return cf_cpu_crossentropy_capped(logits, targets, losses, NULL, N, V, 0.0f, softcap);
#pragma omp parallel for schedule(static) if (cf_zmul(N, V) >= CF_CPU_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const int tg = targets[i];
        if (tg < 0 || tg >= V) { /* ignored (backend.h) */
            losses[i] = 0.0f;
            continue;
        }
        const float *x = logits + cf_zmul(i, V);
        float sum;
        const float maxv = cf_cpu_softmax_row(x, NULL, V, &sum);
        losses[i] = logf(sum) - (x[tg] - maxv);
    }
    return CF_OK;
}

#ifdef CF_OPS_X86
/* exp(x - max) = 2^t, t = x log2(e) - max log2(e) in one fma (mlog = -max log2(e)); t <= 0
 * up to rounding, clamped below at -125 (NaN kept: vmaxps returns its second operand) */
CF_OPS_AVX2 static inline __m256 cf_ce_exp8(__m256 x, __m256 mlog) {
    const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(CF_LOG2E), mlog);
    return cf_exp2_8(_mm256_max_ps(_mm256_set1_ps(-125.0f), t));
}

/* One row of the fused cross-entropy, V >= 1: max, then e = exp(x - max) into d with its sum,
 * then d *= dloss / sum. The row (64 KB at V = 16000) stays in L2 between the passes; while the
 * exp pass computes, a later row (nx, or NULL) is prefetched, so that its max pass finds it in
 * cache instead of waiting on memory. The last V % 8 entries go through masked loads and stores
 * (the same arithmetic). Returns the sum; *maxv_out gets the max. */
CF_OPS_AVX2 static float cf_ce_row_avx2(const float *x, float *d, const float *nx, int V,
                                        float *maxv_out) {
    const int V8 = V & ~7, rem = V - V8;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), lane);
    /* max: four accumulators, then the masked tail (masked-off lanes read as x[0]'s value) */
    __m256 m0 = _mm256_set1_ps(x[0]), m1 = m0, m2 = m0, m3 = m0;
    int j = 0;
    for (; j + 32 <= V8; j += 32) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(x + j), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(x + j + 8), m1);
        m2 = _mm256_max_ps(_mm256_loadu_ps(x + j + 16), m2);
        m3 = _mm256_max_ps(_mm256_loadu_ps(x + j + 24), m3);
    }
    for (; j < V8; j += 8) m0 = _mm256_max_ps(_mm256_loadu_ps(x + j), m0);
    if (rem)
        m1 = _mm256_max_ps(_mm256_blendv_ps(_mm256_set1_ps(x[0]), _mm256_maskload_ps(x + V8, tail),
                                            _mm256_castsi256_ps(tail)),
                           m1);
    m0 = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
    float mx[8];
    _mm256_storeu_ps(mx, m0);
    float maxv = mx[0];
    for (int l = 1; l < 8; l++) maxv = mx[l] > maxv ? mx[l] : maxv;
    /* exp and sum: two accumulators, 16 floats (one cache line of nx) per step */
    const __m256 mlog = _mm256_set1_ps(-maxv * CF_LOG2E);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    j = 0;
    for (; j + 16 <= V8; j += 16) {
        if (nx) _mm_prefetch((const char *)(nx + j), _MM_HINT_T0);
        const __m256 e0 = cf_ce_exp8(_mm256_loadu_ps(x + j), mlog);
        const __m256 e1 = cf_ce_exp8(_mm256_loadu_ps(x + j + 8), mlog);
        _mm256_storeu_ps(d + j, e0);
        _mm256_storeu_ps(d + j + 8, e1);
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
    }
    if (nx)
        for (int k = j; k < V; k += 16) _mm_prefetch((const char *)(nx + k), _MM_HINT_T0);
    for (; j < V8; j += 8) {
        const __m256 e0 = cf_ce_exp8(_mm256_loadu_ps(x + j), mlog);
        _mm256_storeu_ps(d + j, e0);
        s0 = _mm256_add_ps(s0, e0);
    }
    if (rem) {
        const __m256 e1 = _mm256_and_ps(cf_ce_exp8(_mm256_maskload_ps(x + V8, tail), mlog),
                                         _mm256_castsi256_ps(tail));
        _mm256_maskstore_ps(d + V8, tail, e1);
        s1 = _mm256_add_ps(s1, e1);
    }
    float sv[8];
    _mm256_storeu_ps(sv, _mm256_add_ps(s0, s1));
    const float sum = ((sv[0] + sv[4]) + (sv[1] + sv[5])) + ((sv[2] + sv[6]) + (sv[3] + sv[7]));
    *maxv_out = maxv;
    return sum;
}

/* d[0..V) *= s */
CF_OPS_AVX2 static void cf_scale_avx2(float *d, int V, float s) {
    const __m256 vs = _mm256_set1_ps(s);
    int j = 0;
    for (; j + 8 <= V; j += 8) _mm256_storeu_ps(d + j, _mm256_mul_ps(_mm256_loadu_ps(d + j), vs));
    for (; j < V; j++) d[j] *= s;
}
#endif

int cf_cpu_crossentropy_fused(cf_backend *be, cf_view losses_v, cf_view dlogits_v, cf_view logits_v,
                              cf_view targets_v, int N, int V, float dloss, float softcap) {
    const int32_t *targets = cf_cpu_i32(targets_v);
    float *losses = cf_cpu_f32(losses_v), *dlogits = cf_cpu_f32(dlogits_v);
    const float *logits = cf_cpu_f32(logits_v);
    if (softcap > 0.0f) /* the row is capped into scratch first, so dlogits may alias logits */
        return cf_cpu_crossentropy_capped(logits, targets, losses, dlogits, N, V, dloss, softcap);
    const int avx2 = cf_cpu_use_avx2(be) && V >= 1;
    (void)avx2;
    /* each row: read once from memory, then twice from L2 (exp, scale); per thread the rows are
     * consecutive, and each row's exp pass prefetches the row two ahead (measured in the
     * training step: 15.1-15.7 ms per step prefetching one row ahead, 13.1-14.6 two ahead,
     * 13.7 four ahead) */
#pragma omp parallel if (cf_zmul(N, V) >= CF_CPU_PAR_MIN)
    {
        const int nt = cf_cpu_num_threads(), tid = cf_cpu_thread_num();
        const int per = N / nt, extra = N % nt;
        const int i0 = tid * per + (tid < extra ? tid : extra);
        const int i1 = i0 + per + (tid < extra);
        for (int i = i0; i < i1; i++) {
            const int tg = targets[i];
            float *d = dlogits + cf_zmul(i, V);
            if (tg < 0 || tg >= V) { /* ignored (backend.h) */
                losses[i] = 0.0f;
                memset(d, 0, sizeof(float) * (size_t)V);
                continue;
            }
            const float *x = logits + cf_zmul(i, V);
            const float xt = x[tg]; /* read before d (possibly x itself) is overwritten */
            float sum, maxv;
#ifdef CF_OPS_X86
            if (avx2) {
                sum = cf_ce_row_avx2(x, d, i + 2 < i1 ? x + 2 * (size_t)V : NULL, V, &maxv);
                const float s = dloss / sum;
                cf_scale_avx2(d, V, s);
                losses[i] = logf(sum) - (xt - maxv);
                d[tg] -= dloss;
                continue;
            }
#endif
            maxv = cf_cpu_softmax_row(x, d, V, &sum);
            losses[i] = logf(sum) - (xt - maxv);
            const float s = dloss / sum;
#pragma omp simd
            for (int j = 0; j < V; j++) d[j] *= s;
            d[tg] -= dloss;
        }
    }
    return CF_OK;
}

/* ---- reductions, AdamW ---------------------------------------------------------------------- */

int cf_cpu_reduce_sum(cf_backend *be, cf_view out_v, cf_view x_v, size_t n, int square) {
    const float *x = cf_cpu_f32(x_v);
    const size_t nchunks = (n + CF_SUM_CHUNK - 1) / CF_SUM_CHUNK;
    double stack_part[64];
    double *part = nchunks <= 64 ? stack_part : malloc(sizeof(double) * nchunks);
    if (!part) {
        CF_ERROR("cpu reduce_sum: could not allocate %zu partial sums", nchunks);
        return CF_ERR_NOMEM;
    }
#pragma omp parallel for schedule(static) if (n >= CF_CPU_PAR_MIN)
    for (size_t c = 0; c < nchunks; c++) {
        const float *xc = x + c * CF_SUM_CHUNK;
        const size_t len = n - c * CF_SUM_CHUNK < CF_SUM_CHUNK ? n - c * CF_SUM_CHUNK : CF_SUM_CHUNK;
        double s = 0.0;
        if (square) {
#pragma omp simd reduction(+ : s)
            for (size_t i = 0; i < len; i++) s += (double)xc[i] * (double)xc[i];
        } else {
#pragma omp simd reduction(+ : s)
            for (size_t i = 0; i < len; i++) s += (double)xc[i];
        }
        part[c] = s;
    }
    double total = 0.0;
    for (size_t c = 0; c < nchunks; c++) total += part[c];
    if (part != stack_part) free(part);
    cf_cpu_f32(out_v)[0] = (float)total;
    return CF_OK;
}

/* AdamW's per-step constants */
typedef struct {
    float lr, beta1, beta2, omb1, omb2, eps, wd, scale, inv_bc1, inv_bc2;
} cf_adamw_k;

/* Elements per AdamW work item (a multiple of 8): which elements take a kernel's vector body
 * and which its scalar tail is then the same for any thread count. */
#define CF_ADAMW_BLOCK 16384

/* portable: scalar sqrtf (with errno semantics, which both GCC and Clang keep by default, a
 * compiler cannot vectorise it) */
static void cf_adamw_portable(float *p, const float *g, float *m, float *v, size_t n,
                              const cf_adamw_k *k) {
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i] * k->scale;
        const float mi = k->beta1 * m[i] + k->omb1 * gi;
        const float vi = k->beta2 * v[i] + k->omb2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const float mhat = mi * k->inv_bc1, vhat = vi * k->inv_bc2;
        p[i] -= k->lr * (mhat / (sqrtf(vhat) + k->eps) + k->wd * p[i]);
    }
}

#ifdef CF_OPS_X86
/* AVX2/FMA: vsqrtps and vdivps whatever the compiler's errno semantics; the last n % 8 elements
 * go through the portable loop */
CF_OPS_AVX2 static void cf_adamw_avx2(float *p, const float *g, float *m, float *v, size_t n,
                                      const cf_adamw_k *k) {
    const __m256 scale = _mm256_set1_ps(k->scale), b1 = _mm256_set1_ps(k->beta1);
    const __m256 b2 = _mm256_set1_ps(k->beta2), omb1 = _mm256_set1_ps(k->omb1);
    const __m256 omb2 = _mm256_set1_ps(k->omb2), ibc1 = _mm256_set1_ps(k->inv_bc1);
    const __m256 ibc2 = _mm256_set1_ps(k->inv_bc2), eps = _mm256_set1_ps(k->eps);
    const __m256 wd = _mm256_set1_ps(k->wd), lr = _mm256_set1_ps(k->lr);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), scale);
        const __m256 mi = _mm256_fmadd_ps(b1, _mm256_loadu_ps(m + i), _mm256_mul_ps(omb1, gi));
        const __m256 vi = _mm256_fmadd_ps(b2, _mm256_loadu_ps(v + i),
                                          _mm256_mul_ps(_mm256_mul_ps(omb2, gi), gi));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        const __m256 den = _mm256_add_ps(_mm256_sqrt_ps(_mm256_mul_ps(vi, ibc2)), eps);
        const __m256 pi = _mm256_loadu_ps(p + i);
        const __m256 upd = _mm256_fmadd_ps(wd, pi, _mm256_div_ps(_mm256_mul_ps(mi, ibc1), den));
        _mm256_storeu_ps(p + i, _mm256_fnmadd_ps(lr, upd, pi));
    }
    if (i < n) cf_adamw_portable(p + i, g + i, m + i, v + i, n - i, k);
}
#endif

int cf_cpu_adamw(cf_backend *be, cf_view params_v, cf_view grads_v, cf_view m_v, cf_view v_v,
                 size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                 float grad_scale, int t) {
    float *p = cf_cpu_f32(params_v), *m = cf_cpu_f32(m_v), *v = cf_cpu_f32(v_v);
    const float *g = cf_cpu_f32(grads_v);
    /* bias corrections in double: 1 - beta2^t is tiny for small t and beta2 near 1 */
    const cf_adamw_k k = {lr,
                          beta1,
                          beta2,
                          1.0f - beta1,
                          1.0f - beta2,
                          eps,
                          weight_decay,
                          grad_scale,
                          (float)(1.0 / (1.0 - pow((double)beta1, (double)t))),
                          (float)(1.0 / (1.0 - pow((double)beta2, (double)t)))};
    /* Memory-bound once vectorised (four arrays read, three written: 28 bytes per parameter);
     * with scalar sqrt and division it was compute-bound. */
    const int avx2 = cf_cpu_use_avx2(be);
    const size_t nb = (n + CF_ADAMW_BLOCK - 1) / CF_ADAMW_BLOCK;
#pragma omp parallel for schedule(static) if (n >= CF_CPU_PAR_MIN)
    for (size_t b = 0; b < nb; b++) {
        const size_t i0 = b * CF_ADAMW_BLOCK, len = n - i0 < CF_ADAMW_BLOCK ? n - i0 : CF_ADAMW_BLOCK;
#ifdef CF_OPS_X86
        if (avx2) {
            cf_adamw_avx2(p + i0, g + i0, m + i0, v + i0, len, &k);
            continue;
        }
#endif
        cf_adamw_portable(p + i0, g + i0, m + i0, v + i0, len, &k);
    }
    (void)avx2;
    return CF_OK;
}
