/* clformer: the CPU backend's SGEMM. A packed, cache-blocked, OpenMP-parallel GEMM in the
 * five-loop layout (NC columns of B packed per block, KC depth, MC rows of A packed per thread,
 * then MR x NR register tiles), with AVX-512, AVX2/FMA and portable C micro-kernels chosen at run
 * time, plus the optional CBLAS path.
 *
 * Threads: when each thread gets at least CF_GEMM_SPLIT_MIN rows (or columns) of C, the longer
 * side is split and every thread runs the whole loop nest on its block with its own packing;
 * otherwise (small C, long K) the threads share one packed B block per depth step and divide
 * the row blocks.
 *
 * Determinism: K is never split across threads, the depth blocks depend on K alone, and every
 * register tile is computed with the same instruction sequence wherever it lies (edge tiles go
 * through a scratch tile with the same arithmetic), so the result is bit-identical for any
 * thread count and any schedule. (OpenBLAS, the "blas" path, is deterministic for a fixed thread
 * count only: its results change with OPENBLAS_NUM_THREADS.) */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#ifdef CF_HAVE_BLAS
#include <cblas.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define CF_GEMM_X86 1
#include <immintrin.h>
#endif

/* Blocking. On the reference machine (Zen 3: 32 KiB L1d, 512 KiB L2 per core, shared L3):
 * an MR x KC sliver of A (6 KiB) and a KC x NR sliver of B (16-32 KiB) share L1, the MC x KC
 * packed block of A (144 KiB) sits in L2, and the KC x NC packed block of B (3 MiB) in L3.
 * (KC 192..384 and MC 72..192 measured within noise of each other there.) Overridable with -D
 * for tuning. */
#ifndef CF_GEMM_KC
#define CF_GEMM_KC 256
#endif
#ifndef CF_GEMM_MC
#define CF_GEMM_MC 144
#endif
#ifndef CF_GEMM_NC
#define CF_GEMM_NC 3072
#endif
/* Below this many flops a GEMM runs on one thread. */
#define CF_GEMM_PAR_FLOPS 2.0e6

/* One register-tile kernel: C[m x n] = alpha * (A sliver * B sliver) + beta * C [+ bias], where
 * the slivers are packed (a: kc x MR, b: kc x NR, row-major by k), m <= MR, n <= NR, beta == 0
 * means C is not read, and bias (NULL: none) holds the n column biases of the tile. */
typedef void (*cf_gemm_ukr)(int kc, const float *a, const float *b, float *c, ptrdiff_t ldc,
                            float alpha, float beta, const float *bias, int m, int n);

typedef struct {
    const char *name;
    int mr, nr;
    cf_gemm_ukr fn;
    int (*usable)(void);
    int simd_pack; /* 1: pack the strided operands with AVX2 transposes (x86 kernels only);
                    * 2: pack to bf16 pairs (cpu_gemm_bf16.c; the bf16 kernel);
                    * 3: the same, op(A) in AMX's tile order (the AMX kernel, mr 16) */
    int f16;       /* 1: the packed operands are rounded to fp16 (precision fp16, CF_CPU_GEMM_FP16;
                    * set on a copy of an fp32 kernel, never in the tables) */
} cf_gemm_kernel;

/* ---- portable kernel (plain C; compilers vectorise the inner loops) ------------------------- */

#define CF_GEN_MR 4
#define CF_GEN_NR 16

static void cf_gemm_ukr_generic(int kc, const float *a, const float *b, float *c, ptrdiff_t ldc,
                                float alpha, float beta, const float *bias, int m, int n) {
    float acc[CF_GEN_MR][CF_GEN_NR];
    memset(acc, 0, sizeof acc);
    for (int k = 0; k < kc; k++) {
        const float *bk = b + (size_t)k * CF_GEN_NR, *ak = a + (size_t)k * CF_GEN_MR;
        for (int i = 0; i < CF_GEN_MR; i++)
            for (int j = 0; j < CF_GEN_NR; j++) acc[i][j] += ak[i] * bk[j];
    }
    float tile[CF_GEN_MR * CF_GEN_NR];
    float *cp = c;
    ptrdiff_t ldp = ldc;
    const int edge = m < CF_GEN_MR || n < CF_GEN_NR;
    if (edge) {
        cf_gemm_tile_in(tile, CF_GEN_NR, c, ldc, CF_GEN_MR, m, n, beta);
        cp = tile;
        ldp = CF_GEN_NR;
    }
    float bpad[CF_GEN_NR];
    const float *bb = cf_gemm_bias_pad(bpad, CF_GEN_NR, bias, n);
    for (int i = 0; i < CF_GEN_MR; i++)
        for (int j = 0; j < CF_GEN_NR; j++) {
            float v = alpha * acc[i][j] + (bb ? bb[j] : 0.0f);
            cp[i * ldp + j] = beta == 0.0f ? v : v + beta * cp[i * ldp + j];
        }
    if (edge) cf_gemm_tile_out(c, ldc, tile, CF_GEN_NR, m, n);
}

static int cf_gemm_usable_generic(void) { return 1; }

/* ---- AVX2 + FMA kernel: 6 x 16 tile, 12 ymm accumulators --------------------------------- */
#ifdef CF_GEMM_X86

#define CF_AVX2_TARGET __attribute__((target("avx2,fma")))

/* c(8 floats at p) = alpha * acc + beta * c, beta_mode 0: beta == 0, 1: beta == 1, 2: other */
static inline CF_AVX2_TARGET void cf_avx2_store(float *p, __m256 acc, __m256 va, __m256 vb,
                                                int beta_mode) {
    if (beta_mode == 0)
        _mm256_storeu_ps(p, _mm256_mul_ps(va, acc));
    else if (beta_mode == 1)
        _mm256_storeu_ps(p, _mm256_fmadd_ps(va, acc, _mm256_loadu_ps(p)));
    else
        _mm256_storeu_ps(p, _mm256_fmadd_ps(va, acc, _mm256_mul_ps(vb, _mm256_loadu_ps(p))));
}

static CF_AVX2_TARGET void cf_gemm_ukr_avx2(int kc, const float *a, const float *b, float *c,
                                            ptrdiff_t ldc, float alpha, float beta,
                                            const float *bias, int m, int n) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    /* start fetching the C tile now; it is needed after the loop (prefetches never fault) */
    for (int r = 0; r < 6; r++) {
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + r * ldc + 15), _MM_HINT_T0);
    }
    for (int k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        __m256 ak;
        ak = _mm256_broadcast_ss(a + 0);
        c00 = _mm256_fmadd_ps(ak, b0, c00);
        c01 = _mm256_fmadd_ps(ak, b1, c01);
        ak = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(ak, b0, c10);
        c11 = _mm256_fmadd_ps(ak, b1, c11);
        ak = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(ak, b0, c20);
        c21 = _mm256_fmadd_ps(ak, b1, c21);
        ak = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(ak, b0, c30);
        c31 = _mm256_fmadd_ps(ak, b1, c31);
        ak = _mm256_broadcast_ss(a + 4);
        c40 = _mm256_fmadd_ps(ak, b0, c40);
        c41 = _mm256_fmadd_ps(ak, b1, c41);
        ak = _mm256_broadcast_ss(a + 5);
        c50 = _mm256_fmadd_ps(ak, b0, c50);
        c51 = _mm256_fmadd_ps(ak, b1, c51);
        a += 6;
        b += 16;
    }
    float tile[6 * 16] __attribute__((aligned(32)));
    float *cp = c;
    ptrdiff_t ldp = ldc;
    const int edge = m < 6 || n < 16;
    if (edge) {
        cf_gemm_tile_in(tile, 16, c, ldc, 6, m, n, beta);
        cp = tile;
        ldp = 16;
    }
    __m256 va = _mm256_set1_ps(alpha);
    const __m256 vb = _mm256_set1_ps(beta);
    const int bm = beta == 0.0f ? 0 : (beta == 1.0f ? 1 : 2);
    if (bias) { /* fold alpha and the bias into the accumulators, then store with alpha 1 */
        float bpad[16] __attribute__((aligned(32)));
        const float *bb = cf_gemm_bias_pad(bpad, 16, bias, n);
        const __m256 b0 = _mm256_loadu_ps(bb), b1 = _mm256_loadu_ps(bb + 8);
        c00 = _mm256_fmadd_ps(c00, va, b0);
        c01 = _mm256_fmadd_ps(c01, va, b1);
        c10 = _mm256_fmadd_ps(c10, va, b0);
        c11 = _mm256_fmadd_ps(c11, va, b1);
        c20 = _mm256_fmadd_ps(c20, va, b0);
        c21 = _mm256_fmadd_ps(c21, va, b1);
        c30 = _mm256_fmadd_ps(c30, va, b0);
        c31 = _mm256_fmadd_ps(c31, va, b1);
        c40 = _mm256_fmadd_ps(c40, va, b0);
        c41 = _mm256_fmadd_ps(c41, va, b1);
        c50 = _mm256_fmadd_ps(c50, va, b0);
        c51 = _mm256_fmadd_ps(c51, va, b1);
        va = _mm256_set1_ps(1.0f);
    }
    cf_avx2_store(cp + 0 * ldp, c00, va, vb, bm);
    cf_avx2_store(cp + 0 * ldp + 8, c01, va, vb, bm);
    cf_avx2_store(cp + 1 * ldp, c10, va, vb, bm);
    cf_avx2_store(cp + 1 * ldp + 8, c11, va, vb, bm);
    cf_avx2_store(cp + 2 * ldp, c20, va, vb, bm);
    cf_avx2_store(cp + 2 * ldp + 8, c21, va, vb, bm);
    cf_avx2_store(cp + 3 * ldp, c30, va, vb, bm);
    cf_avx2_store(cp + 3 * ldp + 8, c31, va, vb, bm);
    cf_avx2_store(cp + 4 * ldp, c40, va, vb, bm);
    cf_avx2_store(cp + 4 * ldp + 8, c41, va, vb, bm);
    cf_avx2_store(cp + 5 * ldp, c50, va, vb, bm);
    cf_avx2_store(cp + 5 * ldp + 8, c51, va, vb, bm);
    if (edge) cf_gemm_tile_out(c, ldc, tile, 16, m, n);
}

static int cf_gemm_usable_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* ---- AVX-512 kernel: 12 x 32 tile, 24 zmm accumulators ----------------------------------- */

#define CF_AVX512_TARGET __attribute__((target("avx512f")))

static inline CF_AVX512_TARGET void cf_avx512_store(float *p, __m512 acc, __m512 va, __m512 vb,
                                                    int beta_mode) {
    if (beta_mode == 0)
        _mm512_storeu_ps(p, _mm512_mul_ps(va, acc));
    else if (beta_mode == 1)
        _mm512_storeu_ps(p, _mm512_fmadd_ps(va, acc, _mm512_loadu_ps(p)));
    else
        _mm512_storeu_ps(p, _mm512_fmadd_ps(va, acc, _mm512_mul_ps(vb, _mm512_loadu_ps(p))));
}

#define CF_AVX512_ROW(r)                                                                           \
    ak = _mm512_set1_ps(a[r]);                                                                     \
    c##r##0 = _mm512_fmadd_ps(ak, b0, c##r##0);                                                    \
    c##r##1 = _mm512_fmadd_ps(ak, b1, c##r##1)
#define CF_AVX512_DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps()
#define CF_AVX512_STORE(r)                                                                         \
    cf_avx512_store(cp + (r)*ldp, c##r##0, va, vb, bm);                                            \
    cf_avx512_store(cp + (r)*ldp + 16, c##r##1, va, vb, bm)

static CF_AVX512_TARGET void cf_gemm_ukr_avx512(int kc, const float *a, const float *b, float *c,
                                                ptrdiff_t ldc, float alpha, float beta,
                                                const float *bias, int m, int n) {
    CF_AVX512_DECL(0);
    CF_AVX512_DECL(1);
    CF_AVX512_DECL(2);
    CF_AVX512_DECL(3);
    CF_AVX512_DECL(4);
    CF_AVX512_DECL(5);
    CF_AVX512_DECL(6);
    CF_AVX512_DECL(7);
    CF_AVX512_DECL(8);
    CF_AVX512_DECL(9);
    /* rows 10 and 11 (names c10x/c11x would clash with row 1's) */
    __m512 cA0 = _mm512_setzero_ps(), cA1 = _mm512_setzero_ps();
    __m512 cB0 = _mm512_setzero_ps(), cB1 = _mm512_setzero_ps();
    for (int r = 0; r < 12; r++) {
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + r * ldc + 31), _MM_HINT_T0);
    }
    for (int k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        __m512 ak;
        CF_AVX512_ROW(0);
        CF_AVX512_ROW(1);
        CF_AVX512_ROW(2);
        CF_AVX512_ROW(3);
        CF_AVX512_ROW(4);
        CF_AVX512_ROW(5);
        CF_AVX512_ROW(6);
        CF_AVX512_ROW(7);
        CF_AVX512_ROW(8);
        CF_AVX512_ROW(9);
        ak = _mm512_set1_ps(a[10]);
        cA0 = _mm512_fmadd_ps(ak, b0, cA0);
        cA1 = _mm512_fmadd_ps(ak, b1, cA1);
        ak = _mm512_set1_ps(a[11]);
        cB0 = _mm512_fmadd_ps(ak, b0, cB0);
        cB1 = _mm512_fmadd_ps(ak, b1, cB1);
        a += 12;
        b += 32;
    }
    float tile[12 * 32] __attribute__((aligned(64)));
    float *cp = c;
    ptrdiff_t ldp = ldc;
    const int edge = m < 12 || n < 32;
    if (edge) {
        cf_gemm_tile_in(tile, 32, c, ldc, 12, m, n, beta);
        cp = tile;
        ldp = 32;
    }
    __m512 va = _mm512_set1_ps(alpha);
    const __m512 vb = _mm512_set1_ps(beta);
    const int bm = beta == 0.0f ? 0 : (beta == 1.0f ? 1 : 2);
    if (bias) { /* fold alpha and the bias into the accumulators, then store with alpha 1 */
        float bpad[32] __attribute__((aligned(64)));
        const float *bb = cf_gemm_bias_pad(bpad, 32, bias, n);
        const __m512 b0 = _mm512_loadu_ps(bb), b1 = _mm512_loadu_ps(bb + 16);
#define CF_AVX512_BIAS(x0, x1)                                                                     \
    x0 = _mm512_fmadd_ps(x0, va, b0);                                                              \
    x1 = _mm512_fmadd_ps(x1, va, b1)
        CF_AVX512_BIAS(c00, c01);
        CF_AVX512_BIAS(c10, c11);
        CF_AVX512_BIAS(c20, c21);
        CF_AVX512_BIAS(c30, c31);
        CF_AVX512_BIAS(c40, c41);
        CF_AVX512_BIAS(c50, c51);
        CF_AVX512_BIAS(c60, c61);
        CF_AVX512_BIAS(c70, c71);
        CF_AVX512_BIAS(c80, c81);
        CF_AVX512_BIAS(c90, c91);
        CF_AVX512_BIAS(cA0, cA1);
        CF_AVX512_BIAS(cB0, cB1);
#undef CF_AVX512_BIAS
        va = _mm512_set1_ps(1.0f);
    }
    CF_AVX512_STORE(0);
    CF_AVX512_STORE(1);
    CF_AVX512_STORE(2);
    CF_AVX512_STORE(3);
    CF_AVX512_STORE(4);
    CF_AVX512_STORE(5);
    CF_AVX512_STORE(6);
    CF_AVX512_STORE(7);
    CF_AVX512_STORE(8);
    CF_AVX512_STORE(9);
    cf_avx512_store(cp + 10 * ldp, cA0, va, vb, bm);
    cf_avx512_store(cp + 10 * ldp + 16, cA1, va, vb, bm);
    cf_avx512_store(cp + 11 * ldp, cB0, va, vb, bm);
    cf_avx512_store(cp + 11 * ldp + 16, cB1, va, vb, bm);
    if (edge) cf_gemm_tile_out(c, ldc, tile, 32, m, n);
}

static int cf_gemm_usable_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}
#endif /* CF_GEMM_X86 */

/* All compiled kernels in order of preference; cf_cpu_gemm_kernel_count() keeps the ones the CPU
 * supports (cpuid) and kernel 0 is the default. Where the CPU has both AVX2 and AVX-512F, "native"
 * is chosen by a short measurement at first use (cf_cpu_gemm_native_kernel): the AVX-512 kernel
 * trained wiki_cache_optimized about 1.44x faster on an AVX-512 Xeon, but no faster on an AMD
 * EPYC with AVX-512 (BENCHMARKS.md, "CPU GEMM kernel"), so the CPU's features alone do not say. */
static const cf_gemm_kernel cf_gemm_all_kernels[] = {
#ifdef CF_GEMM_X86
    {"avx2-6x16", 6, 16, cf_gemm_ukr_avx2, cf_gemm_usable_avx2, 1, 0},
    {"avx512-12x32", 12, 32, cf_gemm_ukr_avx512, cf_gemm_usable_avx512, 1, 0},
#endif
    {"generic-4x16", CF_GEN_MR, CF_GEN_NR, cf_gemm_ukr_generic, cf_gemm_usable_generic, 0, 0},
};
#define CF_GEMM_NALL ((int)(sizeof cf_gemm_all_kernels / sizeof cf_gemm_all_kernels[0]))

/* The bf16 GEMM (precision bf16, CF_CPU_GEMM_BF16): not one of the fp32 kernels above, which
 * "native" chooses among; used only on request, where the CPU has AVX512-BF16. Its tile is the
 * AVX-512 kernel's, each step of its loop two steps of k; where the CPU has AMX, the AMX kernel
 * below runs instead (CF_CPU_GEMM_BF16_AVX512 / _AMX force one). */
#ifdef CF_GEMM_X86
static const cf_gemm_kernel cf_gemm_bf16_kernel = {"avx512bf16-12x32", 12, 32, cf_cpu_bf16_ukr,
                                                   cf_cpu_bf16_usable, 2, 0};
/* AMX (cpu_gemm_bf16.c): the same packing, A in tile order; where the CPU has it, the default */
static const cf_gemm_kernel cf_gemm_amx_kernel = {"amx-bf16-16x32", 16, 32, cf_cpu_amx_ukr,
                                                  cf_cpu_amx_usable, 3, 0};
#endif
/* (cf_cpu_amx_usable caches its answer: it asks the OS for the tile data once) */
int cf_cpu_gemm_amx_available(void) {
#ifdef CF_GEMM_X86
    return cf_cpu_amx_usable();
#else
    return 0;
#endif
}
static _Atomic int cf_gemm_bf16_ok = -1;

int cf_cpu_gemm_bf16_available(void) {
    int ok = atomic_load_explicit(&cf_gemm_bf16_ok, memory_order_relaxed);
    if (ok < 0) {
#ifdef CF_GEMM_X86
        ok = cf_cpu_bf16_usable();
#else
        ok = 0;
#endif
        atomic_store_explicit(&cf_gemm_bf16_ok, ok, memory_order_relaxed);
    }
    return ok;
}

static const cf_gemm_kernel *cf_gemm_usable[CF_GEMM_NALL];
static _Atomic int cf_gemm_nusable = -1; /* set once, after the list is complete */

int cf_cpu_gemm_kernel_count(void) {
    int n = atomic_load_explicit(&cf_gemm_nusable, memory_order_acquire);
    if (n >= 0) return n;
    /* first use, possibly from several threads (the attention ops call GEMM inside a team) */
#ifdef _OPENMP
#pragma omp critical(cf_gemm_detect)
#endif
    {
        if (atomic_load_explicit(&cf_gemm_nusable, memory_order_relaxed) < 0) {
            int k = 0;
            for (int i = 0; i < CF_GEMM_NALL; i++)
                if (cf_gemm_all_kernels[i].usable()) cf_gemm_usable[k++] = &cf_gemm_all_kernels[i];
            atomic_store_explicit(&cf_gemm_nusable, k, memory_order_release);
        }
    }
    return atomic_load_explicit(&cf_gemm_nusable, memory_order_acquire);
}

const char *cf_cpu_gemm_kernel_name(int kernel) {
    if (kernel == CF_CPU_GEMM_BLAS) return "blas";
#ifdef CF_GEMM_X86
    if (kernel == CF_CPU_GEMM_BF16_AMX) return cf_gemm_amx_kernel.name;
    if (kernel == CF_CPU_GEMM_BF16_AVX512) return cf_gemm_bf16_kernel.name;
#endif
    if (kernel < 0 || kernel >= cf_cpu_gemm_kernel_count()) return "?";
    return cf_gemm_usable[kernel]->name;
}

int cf_cpu_blas_available(void) {
#ifdef CF_HAVE_BLAS
    return 1;
#else
    return 0;
#endif
}

/* ---- packing -------------------------------------------------------------------------------- */

/* Slack after each packed A block: the AVX2 packer may spill up to 7 floats past its last
 * sliver (see cf_gemm_pack_a_avx2). 16 keeps the blocks 64-byte aligned. */
#define CF_GEMM_APAD 16

#ifdef CF_GEMM_X86
/* In-register 8 x 8 transpose: on entry r[i] is row i, on exit r[k] is column k. */
static inline CF_AVX2_TARGET void cf_avx2_transpose8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* One sliver of op(A) = A (rows contiguous in k): rows r0 .. r0+mm-1 (mm <= mr <= 16), depth
 * p0 .. p0+kb-1, into d (kb x mr). Each 8 x 8 chunk (8 rows, 8 k) is transposed in registers
 * and stored as 8 floats per k. When mr is not a multiple of 8 the last group's store runs into
 * the next k's slot, which that k's own stores (issued afterwards) overwrite; the sliver's last
 * k spills at most 7 floats past it (into the next sliver, packed later, or CF_GEMM_APAD). */
static CF_AVX2_TARGET void cf_gemm_pack_a_avx2(float *d, const float *A, int lda, int r0, int p0,
                                               int mm, int kb, int mr) {
    int k = 0;
    for (; k + 8 <= kb; k += 8) {
        __m256 g[2][8];
        for (int q = 0; q * 8 < mr; q++) {
            for (int i = 0; i < 8; i++) {
                const int row = q * 8 + i;
                g[q][i] = row < mm ? _mm256_loadu_ps(A + (size_t)(r0 + row) * lda + p0 + k)
                                   : _mm256_setzero_ps();
            }
            cf_avx2_transpose8(g[q]);
        }
        for (int kk = 0; kk < 8; kk++)
            for (int q = 0; q * 8 < mr; q++)
                _mm256_storeu_ps(d + (size_t)(k + kk) * mr + q * 8, g[q][kk]);
    }
    for (; k < kb; k++)
        for (int r = 0; r < mr; r++)
            d[(size_t)k * mr + r] = r < mm ? A[(size_t)(r0 + r) * lda + p0 + k] : 0.0f;
}

/* One sliver of op(B) = B^T (columns of op(B) contiguous in k): columns j0 .. j0+nn-1
 * (nn <= nr, nr a multiple of 8), into d (kb x nr), by 8 x 8 register transposes. */
static CF_AVX2_TARGET void cf_gemm_pack_bt_avx2(float *d, const float *B, int ldb, int p0, int j0,
                                                int kb, int nn, int nr) {
    int k = 0;
    for (; k + 8 <= kb; k += 8)
        for (int q = 0; q < nr; q += 8) {
            __m256 g[8];
            for (int i = 0; i < 8; i++)
                g[i] = q + i < nn ? _mm256_loadu_ps(B + (size_t)(j0 + q + i) * ldb + p0 + k)
                                  : _mm256_setzero_ps();
            cf_avx2_transpose8(g);
            for (int kk = 0; kk < 8; kk++) _mm256_storeu_ps(d + (size_t)(k + kk) * nr + q, g[kk]);
        }
    for (; k < kb; k++)
        for (int j = 0; j < nr; j++)
            d[(size_t)k * nr + j] = j < nn ? B[(size_t)(j0 + j) * ldb + p0 + k] : 0.0f;
}
#endif

static inline int cf_min_i(int a, int b) { return a < b ? a : b; }

/* n floats; inlined with a constant n it becomes a few vector moves */
static inline void cf_gemm_copy(float *restrict d, const float *restrict s, int n) {
    for (int i = 0; i < n; i++) d[i] = s[i];
}

/* Pack rows [i0, i0+mb) x depth [p0, p0+kb) of op(A) into slivers of mr rows: sliver s holds
 * kb x mr floats, element (k, r) at s*mr*kb + k*mr + r; rows past mb are zero. */
static void cf_gemm_pack_a(float *dst, int ta, const float *A, int lda, int i0, int p0, int mb,
                           int kb, int mr, int simd) {
    if (simd == 2 || simd == 3) {
        cf_cpu_bf16_pack_a(dst, ta, A, lda, i0, p0, mb, kb, mr);
#ifdef CF_GEMM_X86
        if (simd == 3) cf_cpu_amx_order_a(dst, mb, kb);
#endif
        return;
    }
    const int nsl = (mb + mr - 1) / mr;
    if (ta) {
        /* op(A)(i,k) = A[k*lda + i]: walk the stored rows once, each feeding every sliver */
        const int full = mb / mr; /* slivers without padding rows */
        for (int k = 0; k < kb; k++) {
            const float *src = A + (size_t)(p0 + k) * lda + i0;
            float *dk = dst + (size_t)k * mr;
            const size_t step = (size_t)mr * kb;
            /* fixed-length copies compile to a few vector moves */
            if (mr == 6)
                for (int s = 0; s < full; s++) cf_gemm_copy(dk + s * step, src + s * 6, 6);
            else if (mr == 12)
                for (int s = 0; s < full; s++) cf_gemm_copy(dk + s * step, src + s * 12, 12);
            else
                for (int s = 0; s < full; s++) cf_gemm_copy(dk + s * step, src + s * mr, mr);
            if (full < nsl) {
                const int mm = mb - full * mr;
                float *d = dk + full * step;
                for (int r = 0; r < mm; r++) d[r] = src[full * mr + r];
                for (int r = mm; r < mr; r++) d[r] = 0.0f;
            }
        }
        return;
    }
    /* op(A)(i,k) = A[i*lda + k]: each row is contiguous in k; transpose into the sliver */
    for (int s = 0; s < nsl; s++) {
        float *d = dst + (size_t)s * mr * kb;
        const int r0 = i0 + s * mr, mm = mb - s * mr < mr ? mb - s * mr : mr;
#ifdef CF_GEMM_X86
        if (simd) {
            cf_gemm_pack_a_avx2(d, A, lda, r0, p0, mm, kb, mr);
            continue;
        }
#else
        (void)simd;
#endif
        for (int r = 0; r < mm; r++) {
            const float *src = A + (size_t)(r0 + r) * lda + p0;
            for (int k = 0; k < kb; k++) d[(size_t)k * mr + r] = src[k];
        }
        for (int r = mm; r < mr; r++)
            for (int k = 0; k < kb; k++) d[(size_t)k * mr + r] = 0.0f;
    }
}

/* Pack slivers [pa, pb) of the block depth [p0, p0+kb) x columns [j0, j0+nb) of op(B): sliver
 * p holds kb x nr floats at p*nr*kb, element (k, j) at k*nr + j (column j0 + p*nr + j);
 * columns past nb are zero. */
static void cf_gemm_pack_b(float *bpack, int tb, const float *B, int ldb, int p0, int j0, int kb,
                           int nb, int nr, int pa, int pb, int simd) {
    if (simd == 2 || simd == 3) {
        cf_cpu_bf16_pack_b(bpack, tb, B, ldb, p0, j0, kb, nb, nr, pa, pb);
        return;
    }
    if (!tb) {
        /* op(B)(k,j) = B[k*ldb + j]: walk the stored rows once, each feeding every sliver */
        const int full = cf_min_i(pb, nb / nr); /* slivers without padding columns */
        const size_t step = (size_t)nr * kb;
        for (int k = 0; k < kb; k++) {
            const float *src = B + (size_t)(p0 + k) * ldb + j0;
            float *dk = bpack + (size_t)k * nr;
            if (nr == 16)
                for (int p = pa; p < full; p++) cf_gemm_copy(dk + p * step, src + p * 16, 16);
            else if (nr == 32)
                for (int p = pa; p < full; p++) cf_gemm_copy(dk + p * step, src + p * 32, 32);
            else
                for (int p = pa; p < full; p++) cf_gemm_copy(dk + p * step, src + p * nr, nr);
            for (int p = full > pa ? full : pa; p < pb; p++) {
                const int nn = nb - p * nr;
                float *d = dk + p * step;
                for (int j = 0; j < nn; j++) d[j] = src[p * nr + j];
                for (int j = nn; j < nr; j++) d[j] = 0.0f;
            }
        }
        return;
    }
    /* op(B)(k,j) = B[j*ldb + k]: each column of op(B) is contiguous in k; transpose */
    for (int p = pa; p < pb; p++) {
        float *d = bpack + (size_t)p * nr * kb;
        const int jp = j0 + p * nr, nn = nb - p * nr < nr ? nb - p * nr : nr;
#ifdef CF_GEMM_X86
        if (simd) {
            cf_gemm_pack_bt_avx2(d, B, ldb, p0, jp, kb, nn, nr);
            continue;
        }
#else
        (void)simd;
#endif
        if (nn < nr)
            for (int k = 0; k < kb; k++)
                for (int j = nn; j < nr; j++) d[(size_t)k * nr + j] = 0.0f;
        for (int j = 0; j < nn; j++) {
            const float *src = B + (size_t)(jp + j) * ldb + p0;
            for (int k = 0; k < kb; k++) d[(size_t)k * nr + j] = src[k];
        }
    }
}

/* ---- driver --------------------------------------------------------------------------------- */

/* The packing of kernel kr: cf_gemm_pack_a / cf_gemm_pack_b, and with kr->f16 (precision fp16)
 * the values just packed rounded to fp16 in place (cf_cpu_f16_round: F16C where the CPU has it),
 * while the block is still in cache; no other copy of the operands is made. The kernel then
 * multiplies half values in fp32. Padding (zeros) stays zero. */
static void cf_gemm_pack_a_kr(const cf_gemm_kernel *kr, float *dst, int ta, const float *A,
                              int lda, int i0, int p0, int mb, int kb) {
    const int mr = kr->mr;
    cf_gemm_pack_a(dst, ta, A, lda, i0, p0, mb, kb, mr, kr->simd_pack);
    if (kr->f16) cf_cpu_f16_round(dst, (size_t)((mb + mr - 1) / mr) * mr * kb);
}
static void cf_gemm_pack_b_kr(const cf_gemm_kernel *kr, float *bpack, int tb, const float *B,
                              int ldb, int p0, int j0, int kb, int nb, int pa, int pb) {
    const int nr = kr->nr;
    cf_gemm_pack_b(bpack, tb, B, ldb, p0, j0, kb, nb, nr, pa, pb, kr->simd_pack);
    if (kr->f16 && pb > pa)
        cf_cpu_f16_round(bpack + (size_t)pa * nr * kb, (size_t)(pb - pa) * nr * kb);
}

static inline int cf_ceil_div(int a, int b) { return (a + b - 1) / b; }
static inline int cf_round_up(int a, int b) { return cf_ceil_div(a, b) * b; }

/* C = beta * C (beta == 0 writes zeros without reading C). */
static void cf_gemm_scale_c(int M, int N, float beta, float *C, int ldc) {
    if (beta == 1.0f) return;
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f)
            memset(c, 0, sizeof(float) * (size_t)N);
        else
            for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

/* The whole five-loop nest on one thread for the block C[i0:i1, j0:j1] (row blocks of mc),
 * with its own packing buffers. */
static void cf_gemm_serial(const cf_gemm_kernel *kr, int ta, int tb, int i0, int i1, int j0,
                           int j1, int K, int kc, int nc, int mc, float alpha, const float *A,
                           int lda, const float *B, int ldb, float beta, float *C, int ldc,
                           const float *bias, float *apack, float *bpack) {
    const int mr = kr->mr, nr = kr->nr;
    for (int jc = j0; jc < j1; jc += nc) {
        const int nb = cf_min_i(nc, j1 - jc), npan = cf_ceil_div(nb, nr);
        for (int pc = 0; pc < K; pc += kc) {
            const int kb = cf_min_i(kc, K - pc);
            const float bet = pc == 0 ? beta : 1.0f;
            const float *bia = pc == 0 ? bias : NULL; /* added once, with the first depth block */
            cf_gemm_pack_b_kr(kr, bpack, tb, B, ldb, pc, jc, kb, nb, 0, npan);
            for (int ic = i0; ic < i1; ic += mc) {
                const int mb = cf_min_i(mc, i1 - ic);
                cf_gemm_pack_a_kr(kr, apack, ta, A, lda, ic, pc, mb, kb);
                for (int p = 0; p < npan; p++) {
                    const int j = p * nr, nn = cf_min_i(nr, nb - j);
                    const float *bp = bpack + (size_t)p * nr * kb;
                    float *cblk = C + (size_t)ic * ldc + jc + j;
                    const float *bj = bia ? bia + jc + j : NULL;
                    for (int i = 0; i < mb; i += mr)
                        kr->fn(kb, apack + (size_t)i * kb, bp, cblk + (size_t)i * ldc, ldc, alpha,
                               bet, bj, cf_min_i(mr, mb - i), nn);
                }
            }
        }
    }
#ifdef CF_GEMM_X86
    if (kr->simd_pack == 3) cf_cpu_amx_release(); /* the AMX kernel's tiles, on this thread */
#endif
}

static float *cf_gemm_alloc(size_t floats, int M, int N, int K) {
    const size_t bytes = sizeof(float) * floats;
    float *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p)
        CF_ERROR("cpu gemm: could not allocate %zu bytes of packing buffers for M=%d N=%d K=%d",
                 bytes, M, N, K);
    return p;
}

/* Per-thread extent (rows or columns) from which each thread takes a separate block of C and
 * packs both operands itself. The other operand is then packed by every thread (an extra copy
 * out of L3 per element, against 2 * extent flops per element: a few percent at 128); in
 * return the threads never wait for each other until the end. That matters on a shared
 * machine, where a thread that loses its core at one of the barriers of the shared-packing
 * scheme stalls the other: on the loaded 2-core reference box the 384x384x4096 dW product ran
 * at 5-20 GFLOP/s with shared packing and at 38-45 with separate blocks. */
#ifndef CF_GEMM_SPLIT_MIN
#define CF_GEMM_SPLIT_MIN 128
#endif

static int cf_gemm_native(const cf_gemm_kernel *kr, int ta, int tb, int M, int N, int K,
                          float alpha, const float *A, int lda, const float *B, int ldb,
                          float beta, float *C, int ldc, const float *bias) {
    const int mr = kr->mr, nr = kr->nr;
    /* depth and column blocks split evenly, so no block is a thin sliver; the bf16 kernel's
     * blocks are twice as deep (a bf16 pair takes the bytes of one float, so its packed blocks
     * touch as much cache as the fp32 ones; on the reference Zen 4 this took its products from
     * 1.4-1.7x to 1.6-2.0x the fp32 kernel's rate) */
    const int kc = cf_ceil_div(K, cf_ceil_div(K, CF_GEMM_KC * (kr->simd_pack >= 2 ? 2 : 1)));
    const int nc = cf_round_up(cf_ceil_div(N, cf_ceil_div(N, CF_GEMM_NC)), nr);

    int nth = cf_cpu_max_threads();
    if (2.0 * M * N * K < CF_GEMM_PAR_FLOPS) nth = 1;
#ifdef _OPENMP
    if (omp_in_parallel()) nth = 1; /* called from a team (the attention ops): no nesting */
#endif
    const size_t bsize = (size_t)kc * nc; /* a multiple of 16: nc is one of nr */
    const size_t asize_mc = ((size_t)kc * CF_GEMM_MC + CF_GEMM_APAD + 15) / 16 * 16;

    if (nth == 1) {
        float *pack = cf_gemm_alloc(bsize + asize_mc, M, N, K);
        if (!pack) return CF_ERR_NOMEM;
        cf_gemm_serial(kr, ta, tb, 0, M, 0, N, K, kc, nc, CF_GEMM_MC, alpha, A, lda, B, ldb, beta,
                       C, ldc, bias, pack + bsize, pack);
        free(pack);
        return CF_OK;
    }

    /* Separate blocks: split the longer side of C evenly (in whole register tiles). */
    const int rows_t = cf_round_up(cf_ceil_div(M, nth), mr);
    const int cols_t = cf_round_up(cf_ceil_div(N, nth), nr);
    if (rows_t >= CF_GEMM_SPLIT_MIN || cols_t >= CF_GEMM_SPLIT_MIN) {
        const int by_rows = rows_t >= cols_t;
        const size_t per = bsize + asize_mc;
        float *pack = cf_gemm_alloc(per * (size_t)nth, M, N, K);
        if (!pack) return CF_ERR_NOMEM;
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
#endif
        {
            const int t = cf_cpu_thread_num();
            float *bp = pack + per * (size_t)t, *ap = bp + bsize;
            if (by_rows) {
                const int i0 = cf_min_i(M, t * rows_t), i1 = cf_min_i(M, i0 + rows_t);
                if (i0 < i1)
                    cf_gemm_serial(kr, ta, tb, i0, i1, 0, N, K, kc, nc, CF_GEMM_MC, alpha, A, lda,
                                   B, ldb, beta, C, ldc, bias, ap, bp);
            } else {
                const int j0 = cf_min_i(N, t * cols_t), j1 = cf_min_i(N, j0 + cols_t);
                if (j0 < j1)
                    cf_gemm_serial(kr, ta, tb, 0, M, j0, j1, K, kc, nc, CF_GEMM_MC, alpha, A, lda,
                                   B, ldb, beta, C, ldc, bias, ap, bp);
            }
        }
        free(pack);
        return CF_OK;
    }

    /* Small C, long K (the dW products of narrow layers): one shared packed B block per depth
     * step, row blocks of about MC rows in a count that is a multiple of the thread count
     * (equal shares); when M is too small for that, each row block is also split into nsplit
     * column ranges (each such work item packs its A block itself). */
    int mblocks = cf_ceil_div(M, CF_GEMM_MC), nsplit = 1;
    const int mpanels = cf_ceil_div(M, mr);
    if (mblocks >= nth)
        mblocks = cf_min_i(cf_round_up(mblocks, nth), mpanels);
    else {
        mblocks = cf_min_i(nth, mpanels);
        nsplit = cf_ceil_div(nth, mblocks);
    }
    const int mc = cf_round_up(cf_ceil_div(M, mblocks), mr);
    mblocks = cf_ceil_div(M, mc);
    const int nitems = mblocks * nsplit;
    if (nth > nitems) nth = nitems;
    const size_t asize = ((size_t)kc * mc + CF_GEMM_APAD + 15) / 16 * 16;
    float *pack = cf_gemm_alloc(bsize + asize * (size_t)nth, M, N, K);
    if (!pack) return CF_ERR_NOMEM;
    float *bpack = pack;

#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
#endif
    {
        const int tid = cf_cpu_thread_num();
#ifdef _OPENMP
        const int team = omp_get_num_threads();
#else
        const int team = 1;
#endif
        float *apack = pack + bsize + asize * (size_t)tid;
        for (int jc = 0; jc < N; jc += nc) {
            const int nb = cf_min_i(nc, N - jc), npan = cf_ceil_div(nb, nr);
            for (int pc = 0; pc < K; pc += kc) {
                const int kb = cf_min_i(kc, K - pc);
                const float bet = pc == 0 ? beta : 1.0f;
                const float *bia = pc == 0 ? bias : NULL;
                /* every thread packs an equal share of the B block's slivers */
                const int pa = (int)((long)tid * npan / team);
                const int pb = (int)((long)(tid + 1) * npan / team);
                cf_gemm_pack_b_kr(kr, bpack, tb, B, ldb, pc, jc, kb, nb, pa, pb);
#ifdef _OPENMP
#pragma omp barrier
#pragma omp for schedule(static)
#endif
                for (int it = 0; it < nitems; it++) {
                    const int ic = (it / nsplit) * mc, split = it % nsplit;
                    const int mb = cf_min_i(mc, M - ic);
                    cf_gemm_pack_a_kr(kr, apack, ta, A, lda, ic, pc, mb, kb);
                    const int p0 = (int)((long)split * npan / nsplit);
                    const int p1 = (int)((long)(split + 1) * npan / nsplit);
                    for (int p = p0; p < p1; p++) {
                        const int j = p * nr, nn = cf_min_i(nr, nb - j);
                        const float *bp = bpack + (size_t)p * nr * kb;
                        float *cblk = C + (size_t)ic * ldc + jc + j;
                        const float *bj = bia ? bia + jc + j : NULL;
                        for (int i = 0; i < mb; i += mr)
                            kr->fn(kb, apack + (size_t)i * kb, bp, cblk + (size_t)i * ldc, ldc,
                                   alpha, bet, bj, cf_min_i(mr, mb - i), nn);
                    }
                }
                /* (implicit barrier: nobody still reads bpack when the next block is packed) */
            }
        }
#ifdef CF_GEMM_X86
        if (kr->simd_pack == 3) cf_cpu_amx_release(); /* the AMX kernel's tiles, this thread */
#endif
    }
    free(pack);
    return CF_OK;
}

#ifdef CF_HAVE_BLAS
static int cf_gemm_blas(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                        const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return CF_OK;
}
#endif

/* C(M,N) += bias(N) on every row */
static void cf_gemm_add_bias(int M, int N, const float *bias, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        for (int j = 0; j < N; j++) c[j] += bias[j];
    }
}

int cf_cpu_sgemm(int kernel, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    return cf_cpu_sgemm_bias(kernel, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

int cf_cpu_sgemm_bias(int kernel, int ta, int tb, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc, const float *bias) {
    if (M <= 0 || N <= 0) return CF_OK;
    if (K < 0 || ldc < N || lda < (ta ? M : K) || ldb < (tb ? K : N)) {
        CF_ERROR("cpu gemm: bad shape M=%d N=%d K=%d lda=%d ldb=%d ldc=%d (ta=%d tb=%d); "
                 "row strides must cover the rows they step over",
                 M, N, K, lda, ldb, ldc, ta, tb);
        return CF_ERR_INVALID;
    }
    /* CF_CPU_GEMM_FP16 + k: native kernel k on fp16-rounded operands */
    const int fp16 = kernel >= CF_CPU_GEMM_FP16;
    if (fp16) kernel -= CF_CPU_GEMM_FP16;
    const int bf16 = kernel == CF_CPU_GEMM_BF16 || kernel == CF_CPU_GEMM_BF16_AVX512 ||
                     kernel == CF_CPU_GEMM_BF16_AMX;
    if (kernel != CF_CPU_GEMM_BLAS && !bf16 &&
        (kernel < 0 || kernel >= cf_cpu_gemm_kernel_count())) {
        CF_ERROR("cpu gemm: kernel index %d out of range (0..%d)", kernel,
                 cf_cpu_gemm_kernel_count() - 1);
        return CF_ERR_INVALID;
    }
    if (bf16 && !cf_cpu_gemm_bf16_available()) {
        CF_ERROR("cpu gemm: the bf16 GEMM needs AVX512-BF16, which this CPU does not report; "
                 "use an fp32 kernel (precision fp32)");
        return CF_ERR_UNSUPPORTED;
    }
    if (kernel == CF_CPU_GEMM_BF16_AMX && !cf_cpu_gemm_amx_available()) {
        CF_ERROR("cpu gemm: the AMX bf16 GEMM needs AMX-BF16 and AMX-TILE (and the tile data "
                 "granted by the OS), which this CPU or kernel does not give; use the "
                 "AVX512-BF16 one");
        return CF_ERR_UNSUPPORTED;
    }
    if (K == 0 || alpha == 0.0f) {
        cf_gemm_scale_c(M, N, beta, C, ldc);
        if (bias) cf_gemm_add_bias(M, N, bias, C, ldc);
        return CF_OK;
    }
    if (kernel == CF_CPU_GEMM_BLAS) {
#ifdef CF_HAVE_BLAS
        CF_TRY(cf_gemm_blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
        if (bias) cf_gemm_add_bias(M, N, bias, C, ldc);
        return CF_OK;
#else
        CF_ERROR("cpu gemm: the BLAS path is not compiled in (rebuild with OpenBLAS installed "
                 "and -DCF_BLAS=ON); use CF_CPU_GEMM=native");
        return CF_ERR_UNSUPPORTED;
#endif
    }
    if (fp16) {
        cf_gemm_kernel k16 = *cf_gemm_usable[kernel];
        k16.f16 = 1;
        return cf_gemm_native(&k16, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias);
    }
#ifdef CF_GEMM_X86
    if (bf16) {
        const int amx = kernel == CF_CPU_GEMM_BF16_AMX ||
                        (kernel == CF_CPU_GEMM_BF16 && cf_cpu_gemm_amx_available());
        return cf_gemm_native(amx ? &cf_gemm_amx_kernel : &cf_gemm_bf16_kernel, ta, tb, M, N, K,
                              alpha, A, lda, B, ldb, beta, C, ldc, bias);
    }
#endif
    return cf_gemm_native(cf_gemm_usable[kernel], ta, tb, M, N, K, alpha, A, lda, B, ldb, beta,
                          C, ldc, bias);
}

/* ---- choice of path ------------------------------------------------------------------------- */

/* The default is the native GEMM even when OpenBLAS is compiled in. On the 2-core reference
 * box OpenBLAS's SGEMM alone is 2-5% faster per core, but whole training steps were as fast or
 * faster with the native one (OpenBLAS's own thread pool keeps spinning after each call and
 * competes with the OpenMP threads of the other ops), and the native results are the same for
 * every thread count and every build, with or without OpenBLAS, which the reference backend
 * should be. CF_CPU_GEMM=blas selects OpenBLAS. */
const char *cf_cpu_gemm_default(void) { return "native"; }

int cf_cpu_gemm_parse(const char *which, const char *origin, int *kernel) {
    if (!which || !*which || strcmp(which, "auto") == 0) which = cf_cpu_gemm_default();
    if (strcmp(which, "native") == 0) {
        *kernel = CF_CPU_GEMM_NATIVE_BEST;
        return CF_OK;
    }
    if (strcmp(which, "blas") == 0) {
        if (!cf_cpu_blas_available()) {
            CF_ERROR("%s: gemm 'blas' requested but this build has no BLAS (install OpenBLAS "
                     "and rebuild with -DCF_BLAS=ON); use 'native'",
                     origin);
            return CF_ERR_UNSUPPORTED;
        }
        *kernel = CF_CPU_GEMM_BLAS;
        return CF_OK;
    }
    if (strncmp(which, "native:", 7) == 0) {
        for (int i = 0; i < cf_cpu_gemm_kernel_count(); i++)
            if (strcmp(which + 7, cf_gemm_usable[i]->name) == 0) {
                *kernel = i;
                return CF_OK;
            }
    }
    char names[256] = "";
    for (int i = 0; i < cf_cpu_gemm_kernel_count(); i++) {
        size_t len = strlen(names);
        snprintf(names + len, sizeof names - len, "%snative:%s", i ? ", " : "",
                 cf_gemm_usable[i]->name);
    }
    CF_ERROR("%s: unknown gemm '%s'; use auto, native, blas or one of: %s", origin, which, names);
    return CF_ERR_INVALID;
}

/* ---- "native": the fastest kernel for this CPU -------------------------------------------- */

/* The measurement: a product of a transformer layer's shape (256 x 384 x 384, B^T as in the
 * forward), run serially by each vector kernel in turn, best of CF_GEMM_PICK_ROUNDS, timed in the
 * calling thread's CPU time so that other processes on a loaded machine (which take the core away,
 * not its cycles) change it little. An alternative to kernel 0 is taken only when it is at least
 * CF_GEMM_PICK_MARGIN faster, so a close race keeps the same (default) kernel from run to run. */
#define CF_GEMM_PICK_M 256
#define CF_GEMM_PICK_N 384
#define CF_GEMM_PICK_K 384
#define CF_GEMM_PICK_ROUNDS 5
#define CF_GEMM_PICK_MARGIN 1.10

static _Atomic int cf_gemm_native_pick = -1;
static char cf_gemm_native_why[256] = "the only vector kernel this CPU supports";

/* seconds of CPU time for one product with kernel kr, the best of `rounds` */
static double cf_gemm_time_kernel(const cf_gemm_kernel *kr, const float *A, const float *B,
                                  float *C, float *pack) {
    const int M = CF_GEMM_PICK_M, N = CF_GEMM_PICK_N, K = CF_GEMM_PICK_K;
    const int kc = cf_ceil_div(K, cf_ceil_div(K, CF_GEMM_KC));
    const int nc = cf_round_up(cf_ceil_div(N, cf_ceil_div(N, CF_GEMM_NC)), kr->nr);
    const size_t bsize = (size_t)kc * nc;
    const double t0 = cf_thread_seconds();
    cf_gemm_serial(kr, 0, 1, 0, M, 0, N, K, kc, nc, CF_GEMM_MC, 1.0f, A, K, B, K, 0.0f, C, N, NULL,
                   pack + bsize, pack);
    return cf_thread_seconds() - t0;
}

static int cf_gemm_measure_pick(char *why, size_t len) {
    const int n = cf_cpu_gemm_kernel_count();
    int vec = 0;
    for (int i = 0; i < n; i++) vec += cf_gemm_usable[i]->simd_pack;
    if (vec < 2) {
        snprintf(why, len, "the only vector kernel this CPU supports");
        return 0;
    }
    const int M = CF_GEMM_PICK_M, N = CF_GEMM_PICK_N, K = CF_GEMM_PICK_K;
    float *A = malloc(sizeof(float) * (size_t)M * K), *B = malloc(sizeof(float) * (size_t)N * K);
    float *C = malloc(sizeof(float) * (size_t)M * N);
    /* packing space for the widest kernel: B (kc x nc) and A (kc x mc) */
    float *pack = cf_gemm_alloc((size_t)CF_GEMM_KC * (N + 64) + (size_t)CF_GEMM_KC * CF_GEMM_MC +
                                    CF_GEMM_APAD + 64,
                                M, N, K);
    if (!A || !B || !C || !pack) {
        free(A), free(B), free(C), free(pack);
        snprintf(why, len, "the default (no memory to measure)");
        return 0;
    }
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)((i * 7) % 13) * 0.1f - 0.6f;
    for (size_t i = 0; i < (size_t)N * K; i++) B[i] = (float)((i * 5) % 11) * 0.1f - 0.5f;
    double best[CF_GEMM_NALL];
    for (int i = 0; i < n; i++) best[i] = 1e30;
    for (int r = 0; r < CF_GEMM_PICK_ROUNDS; r++)
        for (int i = 0; i < n; i++) {
            if (!cf_gemm_usable[i]->simd_pack) continue;
            double t = cf_gemm_time_kernel(cf_gemm_usable[i], A, B, C, pack);
            if (t < best[i]) best[i] = t;
        }
    free(A), free(B), free(C), free(pack);
    int pick = 0;
    for (int i = 1; i < n; i++)
        if (cf_gemm_usable[i]->simd_pack && best[i] * CF_GEMM_PICK_MARGIN < best[pick]) pick = i;
    size_t used = (size_t)snprintf(why, len, "measured at first use:");
    for (int i = 0; i < n && used < len; i++)
        if (cf_gemm_usable[i]->simd_pack)
            used += (size_t)snprintf(why + used, len - used, "%s %s %.1f GFLOP/s", i ? "," : "",
                                     cf_gemm_usable[i]->name,
                                     2.0 * M * N * K / best[i] / 1e9);
    return pick;
}

/* the cache file: one per CPU model and set of kernels */
static void cf_gemm_pick_path(const char *cache_dir, char *out, size_t len) {
    char model[512] = "";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "model name", 10) == 0) {
                snprintf(model, sizeof model, "%s", line);
                break;
            }
        fclose(f);
    }
    uint64_t h = cf_hash64(model, strlen(model), 0xc0de);
    for (int i = 0; i < cf_cpu_gemm_kernel_count(); i++)
        h = cf_hash64(cf_gemm_usable[i]->name, strlen(cf_gemm_usable[i]->name) + 1, h);
    snprintf(out, len, "%s/cpu_gemm-%016llx.txt", cache_dir, (unsigned long long)h);
}

int cf_cpu_gemm_native_kernel(const char *cache_dir) {
    int pick = atomic_load_explicit(&cf_gemm_native_pick, memory_order_acquire);
    if (pick >= 0) return pick;
    const int n = cf_cpu_gemm_kernel_count();
    char path[1200] = "", why[256];
    pick = -1;
    if (cache_dir && *cache_dir) {
        /* "<kernel name>\n<why>\n", written after the first measurement */
        cf_gemm_pick_path(cache_dir, path, sizeof path);
        FILE *f = fopen(path, "r");
        char name[64] = "";
        if (f) {
            if (fgets(name, sizeof name, f) && fgets(why, sizeof why, f)) {
                name[strcspn(name, "\n")] = 0;
                why[strcspn(why, "\n")] = 0;
                for (int i = 0; i < n; i++)
                    if (!strcmp(name, cf_gemm_usable[i]->name)) pick = i;
            }
            fclose(f);
        }
        if (pick >= 0) {
            const size_t l = strlen(why);
            snprintf(why + l, sizeof why - l, " (cached)");
        }
    }
    if (pick < 0) {
        pick = cf_gemm_measure_pick(why, sizeof why);
        if (path[0]) {
            char text[400];
            int len = snprintf(text, sizeof text, "%s\n%s\n", cf_gemm_usable[pick]->name, why);
            /* a cache that cannot be written costs a measurement next time, nothing more */
            if (cf_mkdirs(cache_dir) == CF_OK) cf_write_file_atomic(path, text, (size_t)len);
        }
    }
#ifdef _OPENMP
#pragma omp critical(cf_gemm_pick)
#endif
    {
        if (atomic_load_explicit(&cf_gemm_native_pick, memory_order_relaxed) < 0) {
            snprintf(cf_gemm_native_why, sizeof cf_gemm_native_why, "%s", why);
            atomic_store_explicit(&cf_gemm_native_pick, pick, memory_order_release);
        }
    }
    return atomic_load_explicit(&cf_gemm_native_pick, memory_order_acquire);
}

const char *cf_cpu_gemm_native_reason(void) {
    return atomic_load_explicit(&cf_gemm_native_pick, memory_order_acquire) >= 0
               ? cf_gemm_native_why
               : "not chosen yet";
}

/* ---- AMX peak (bench's MFU for precision bf16 on AMX) ----------------------------------------- */

int cf_cpu_amx_peak_gflops(double seconds, double *gflops) {
    *gflops = 0.0;
    if (!cf_cpu_gemm_amx_available()) return CF_ERR_UNSUPPORTED;
#ifdef CF_GEMM_X86
    /* four independent TDPBF16PS chains per thread, the tiles released after each run */
    const double best = cf_peak_flops(seconds, cf_cpu_amx_peak_flops, cf_cpu_amx_release);
    *gflops = best / 1e9;
    return best > 0 ? CF_OK : CF_ERR_DEVICE;
#else
    (void)seconds;
    return CF_ERR_UNSUPPORTED;
#endif
}
