/* clformer: the CPU backend's bf16 GEMM pieces (precision bf16): packing that rounds the fp32
 * operands to bf16 (round to nearest even) as it copies them, an AVX512-BF16 register-tile
 * kernel (vdpbf16ps: fp32 accumulation of bf16 products), and an AMX kernel (TDPBF16PS, at the
 * end of this file) where the CPU has AMX. The five-loop driver, blocking and
 * threads are cpu_gemm.c's (kernel "avx512bf16-12x32", selected by CF_CPU_GEMM_BF16).
 *
 * Packed layout: pairs of consecutive k. A packed sliver of op(A) holds, for each pair q
 * (k = 2q, 2q+1 of the block) and each of its mr rows, one 32-bit word whose low half is the bf16
 * of op(A)(i, 2q) and whose high half that of op(A)(i, 2q+1); a sliver of op(B) the same for
 * each of its nr columns. An odd depth pads the last pair with a zero. vdpbf16ps multiplies the
 * low halves and the high halves lane by lane and adds both products to the fp32 accumulator, so
 * one instruction is two steps of k. The packed slivers take ceil(kb/2) words per row where the
 * fp32 ones take kb floats: they fit in the driver's fp32 slots (same offsets), half filled.
 *
 * Rounding: vcvtne2ps2bf16 (round to nearest even; like every AVX512-BF16 instruction it treats
 * denormal inputs as zero and flushes denormal results). vdpbf16ps also treats denormal inputs
 * as zero and rounds each of its two additions to fp32 (nearest even), whatever MXCSR says.
 *
 * Everything here is compiled with target attributes, so the binary runs on any x86-64 CPU; the
 * kernel is used only where cf_cpu_bf16_usable() says the CPU has AVX512-BF16 (cpuid leaf 7,
 * subleaf 1, EAX bit 5) and AVX512F/BW/VL with the OS saving the zmm state. */
#define _GNU_SOURCE /* syscall (arch_prctl for AMX) */
#include <stdint.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

/* The AMX kernel needs x86-64 (GCC's AMX intrinsics), Linux (arch_prctl grants the tile data)
 * and a compiler that knows the amx-tile / amx-bf16 targets (GCC 11, Clang 12) */
#if defined(__x86_64__) && defined(__linux__) &&                                                   \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11))
#define CF_AMX_BUILD 1
#include <sys/syscall.h>
#include <unistd.h>
#else
#define CF_AMX_BUILD 0
#endif

#define CF_BF16_TARGET __attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl")))

int cf_cpu_bf16_usable(void) {
    __builtin_cpu_init();
    /* (libgcc sets the AVX-512 features only when XCR0 shows the OS saves the zmm state) */
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl"))
        return 0;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (int)((a >> 5) & 1u); /* AVX512_BF16 */
}

/* 16 lanes of (bf16(lo[j]) | bf16(hi[j]) << 16), each rounded to nearest even */
static inline CF_BF16_TARGET __m512i cf_bf16_pairs(__m512 lo, __m512 hi) {
    /* bf16 0..15 are lo's, 16..31 hi's; word j takes halves j and 16 + j */
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24,
                                         8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16,
                                         0);
    const __m512i v = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
    return _mm512_permutexvar_epi16(idx, v);
}

/* width <= 16 lanes as a mask */
static inline __mmask16 cf_bf16_mask(int n) {
    return n <= 0 ? (__mmask16)0 : n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

/* Operand stored with the packed dimension contiguous (op(A) for ta, op(B) for !tb): stored row
 * k holds consecutive rows (columns) of op(). Packs slivers s0 .. s1-1 of `width` rows (columns)
 * each, sliver s starting at row (column) first + s*width, valid up to first + nvalid (the rest
 * zero), at depths p0 .. p0+kb-1; sliver s's ceil(kb/2) x width words start `slot` words after
 * sliver s-1's. The stored rows are walked once, each feeding every sliver. */
static CF_BF16_TARGET void cf_bf16_pack_across(uint32_t *d, size_t slot, const float *S, int ld,
                                               int first, int nvalid, int width, int s0, int s1,
                                               int p0, int kb) {
    const int kp = (kb + 1) / 2;
    for (int q = 0; q < kp; q++) {
        const float *r0 = S + (size_t)(p0 + 2 * q) * ld + first;
        const float *r1 = r0 + ld;
        const int has1 = 2 * q + 1 < kb;
        for (int s = s0; s < s1; s++) {
            uint32_t *dq = d + (size_t)s * slot + (size_t)q * width;
            for (int g = 0; g < width; g += 16) {
                const int c = s * width + g;
                const __mmask16 m = cf_bf16_mask(nvalid - c);
                const __m512 lo = _mm512_maskz_loadu_ps(m, r0 + c);
                const __m512 hi = has1 ? _mm512_maskz_loadu_ps(m, r1 + c) : _mm512_setzero_ps();
                _mm512_mask_storeu_epi32(dq + g, cf_bf16_mask(width - g), cf_bf16_pairs(lo, hi));
            }
        }
    }
}

/* In-register transpose of 16 x 16 32-bit words: on entry x[i] is row i, on exit x[j] is column
 * j. Unpacks of 32- and 64-bit halves within 128-bit lanes, then two rounds of lane shuffles. */
static inline CF_BF16_TARGET void cf_bf16_transpose16(__m512i x[16]) {
    __m512i t[16], y[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(x[2 * i], x[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
    }
    /* x[4b + j], 128-bit lane L: rows 4b .. 4b+3 of column 4L + j */
    for (int b = 0; b < 4; b++) {
        x[4 * b] = _mm512_unpacklo_epi64(t[4 * b], t[4 * b + 2]);
        x[4 * b + 1] = _mm512_unpackhi_epi64(t[4 * b], t[4 * b + 2]);
        x[4 * b + 2] = _mm512_unpacklo_epi64(t[4 * b + 1], t[4 * b + 3]);
        x[4 * b + 3] = _mm512_unpackhi_epi64(t[4 * b + 1], t[4 * b + 3]);
    }
    for (int j = 0; j < 4; j++) {
        y[j] = _mm512_shuffle_i32x4(x[j], x[4 + j], 0x88);
        y[4 + j] = _mm512_shuffle_i32x4(x[j], x[4 + j], 0xdd);
        y[8 + j] = _mm512_shuffle_i32x4(x[8 + j], x[12 + j], 0x88);
        y[12 + j] = _mm512_shuffle_i32x4(x[8 + j], x[12 + j], 0xdd);
    }
    for (int j = 0; j < 4; j++) {
        x[j] = _mm512_shuffle_i32x4(y[j], y[8 + j], 0x88);
        x[8 + j] = _mm512_shuffle_i32x4(y[j], y[8 + j], 0xdd);
        x[4 + j] = _mm512_shuffle_i32x4(y[4 + j], y[12 + j], 0x88);
        x[12 + j] = _mm512_shuffle_i32x4(y[4 + j], y[12 + j], 0xdd);
    }
}

#if CF_AMX_BUILD
/* blk (16 x 16 words, rows 16 words apart) transposed in place */
static CF_BF16_TARGET void cf_cpu_amx_transpose16(uint32_t *blk) {
    __m512i x[16];
    for (int i = 0; i < 16; i++) x[i] = _mm512_loadu_si512(blk + i * 16);
    cf_bf16_transpose16(x);
    for (int i = 0; i < 16; i++) _mm512_storeu_si512(blk + i * 16, x[i]);
}
#endif

/* Operand stored with k contiguous (op(A) for !ta, op(B) for tb): stored row r (r = first ..
 * first+width-1; valid: the first nvalid, the rest zero) holds its elements at consecutive k.
 * Sixteen rows at a time, 32 k each: converted to 16 words of pairs per row, transposed in
 * registers, and stored as 16 pairs x 16 rows into d (ceil(kb/2) x width words). */
static CF_BF16_TARGET void cf_bf16_pack_along(uint32_t *d, const float *S, int ld, int first,
                                              int nvalid, int width, int p0, int kb) {
    for (int g = 0; g < width; g += 16) {
        const int gw = width - g < 16 ? width - g : 16;
        const __mmask16 sm = cf_bf16_mask(gw);
        for (int k = 0; k < kb; k += 32) {
            const int left = kb - k;
            const __mmask16 m0 = cf_bf16_mask(left), m1 = cf_bf16_mask(left - 16);
            __m512i x[16];
            for (int i = 0; i < 16; i++) {
                if (i < gw && g + i < nvalid) {
                    const float *src = S + (size_t)(first + g + i) * ld + p0 + k;
                    const __m512 x0 = _mm512_maskz_loadu_ps(m0, src);
                    const __m512 x1 = _mm512_maskz_loadu_ps(m1, src + 16);
                    /* in order: words are the pairs (k, k+1), (k+2, k+3), ... */
                    x[i] = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
                } else {
                    x[i] = _mm512_setzero_si512();
                }
            }
            cf_bf16_transpose16(x);
            const int nq = left >= 32 ? 16 : (left + 1) / 2;
            for (int q = 0; q < nq; q++)
                _mm512_mask_storeu_epi32(d + (size_t)(k / 2 + q) * width + g, sm, x[q]);
        }
    }
}

void cf_cpu_bf16_pack_a(float *dst, int ta, const float *A, int lda, int i0, int p0, int mb,
                        int kb, int mr) {
    const int nsl = (mb + mr - 1) / mr;
    const size_t slot = (size_t)mr * kb; /* the driver's sliver stride (fp32 sized) */
    if (ta) { /* op(A)(i,k) = A[k*lda + i] */
        cf_bf16_pack_across((uint32_t *)(void *)dst, slot, A, lda, i0, mb, mr, 0, nsl, p0, kb);
        return;
    }
    for (int s = 0; s < nsl; s++) { /* op(A)(i,k) = A[i*lda + k] */
        const int mm = mb - s * mr < mr ? mb - s * mr : mr;
        cf_bf16_pack_along((uint32_t *)(void *)(dst + s * slot), A, lda, i0 + s * mr, mm, mr, p0,
                           kb);
    }
}

void cf_cpu_bf16_pack_b(float *bpack, int tb, const float *B, int ldb, int p0, int j0, int kb,
                        int nb, int nr, int pa, int pb) {
    const size_t slot = (size_t)nr * kb;
    if (!tb) { /* op(B)(k,j) = B[k*ldb + j] */
        cf_bf16_pack_across((uint32_t *)(void *)bpack, slot, B, ldb, j0, nb, nr, pa, pb, p0, kb);
        return;
    }
    for (int p = pa; p < pb; p++) { /* op(B)(k,j) = B[j*ldb + k] */
        const int nn = nb - p * nr < nr ? nb - p * nr : nr;
        cf_bf16_pack_along((uint32_t *)(void *)(bpack + p * slot), B, ldb, j0 + p * nr, nn, nr,
                           p0, kb);
    }
}

/* ---- the 12 x 32 kernel: 24 zmm accumulators, one vdpbf16ps per (row, 16 columns, 2 k) ---- */

static inline CF_BF16_TARGET void cf_bf16_store(float *p, __m512 acc, __m512 va, __m512 vb,
                                                int beta_mode) {
    if (beta_mode == 0)
        _mm512_storeu_ps(p, _mm512_mul_ps(va, acc));
    else if (beta_mode == 1)
        _mm512_storeu_ps(p, _mm512_fmadd_ps(va, acc, _mm512_loadu_ps(p)));
    else
        _mm512_storeu_ps(p, _mm512_fmadd_ps(va, acc, _mm512_mul_ps(vb, _mm512_loadu_ps(p))));
}

#define CF_BF16_DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps()
#define CF_BF16_ROW(r)                                                                             \
    ak = (__m512bh)_mm512_set1_epi32(a[r]);                                                        \
    c##r##0 = _mm512_dpbf16_ps(c##r##0, ak, b0);                                                   \
    c##r##1 = _mm512_dpbf16_ps(c##r##1, ak, b1)
#define CF_BF16_BIAS(r)                                                                            \
    c##r##0 = _mm512_fmadd_ps(c##r##0, va, bv0);                                                   \
    c##r##1 = _mm512_fmadd_ps(c##r##1, va, bv1)
#define CF_BF16_STORE(r, row)                                                                      \
    cf_bf16_store(cp + (row)*ldp, c##r##0, va, vb, bm);                                            \
    cf_bf16_store(cp + (row)*ldp + 16, c##r##1, va, vb, bm)

CF_BF16_TARGET void cf_cpu_bf16_ukr(int kc, const float *a_, const float *b_, float *c,
                                    ptrdiff_t ldc, float alpha, float beta, const float *bias,
                                    int m, int n) {
    const int32_t *a = (const int32_t *)(const void *)a_;
    const __m512i *b = (const __m512i *)(const void *)b_;
    /* rows 0..9 and A, B (10, 11: names c10x/c11x would clash with row 1's) */
    CF_BF16_DECL(0);
    CF_BF16_DECL(1);
    CF_BF16_DECL(2);
    CF_BF16_DECL(3);
    CF_BF16_DECL(4);
    CF_BF16_DECL(5);
    CF_BF16_DECL(6);
    CF_BF16_DECL(7);
    CF_BF16_DECL(8);
    CF_BF16_DECL(9);
    CF_BF16_DECL(A);
    CF_BF16_DECL(B);
    for (int r = 0; r < 12; r++) {
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + r * ldc + 31), _MM_HINT_T0);
    }
    const int kp = (kc + 1) / 2;
    for (int q = 0; q < kp; q++) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 1);
        __m512bh ak;
        CF_BF16_ROW(0);
        CF_BF16_ROW(1);
        CF_BF16_ROW(2);
        CF_BF16_ROW(3);
        CF_BF16_ROW(4);
        CF_BF16_ROW(5);
        CF_BF16_ROW(6);
        CF_BF16_ROW(7);
        CF_BF16_ROW(8);
        CF_BF16_ROW(9);
        ak = (__m512bh)_mm512_set1_epi32(a[10]);
        cA0 = _mm512_dpbf16_ps(cA0, ak, b0);
        cA1 = _mm512_dpbf16_ps(cA1, ak, b1);
        ak = (__m512bh)_mm512_set1_epi32(a[11]);
        cB0 = _mm512_dpbf16_ps(cB0, ak, b0);
        cB1 = _mm512_dpbf16_ps(cB1, ak, b1);
        a += 12;
        b += 2;
    }
    /* edge tiles: the valid part of C in a full 12 x 32 scratch tile (zeros elsewhere) */
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
        const __m512 bv0 = _mm512_loadu_ps(bb), bv1 = _mm512_loadu_ps(bb + 16);
        CF_BF16_BIAS(0);
        CF_BF16_BIAS(1);
        CF_BF16_BIAS(2);
        CF_BF16_BIAS(3);
        CF_BF16_BIAS(4);
        CF_BF16_BIAS(5);
        CF_BF16_BIAS(6);
        CF_BF16_BIAS(7);
        CF_BF16_BIAS(8);
        CF_BF16_BIAS(9);
        CF_BF16_BIAS(A);
        CF_BF16_BIAS(B);
        va = _mm512_set1_ps(1.0f);
    }
    CF_BF16_STORE(0, 0);
    CF_BF16_STORE(1, 1);
    CF_BF16_STORE(2, 2);
    CF_BF16_STORE(3, 3);
    CF_BF16_STORE(4, 4);
    CF_BF16_STORE(5, 5);
    CF_BF16_STORE(6, 6);
    CF_BF16_STORE(7, 7);
    CF_BF16_STORE(8, 8);
    CF_BF16_STORE(9, 9);
    CF_BF16_STORE(A, 10);
    CF_BF16_STORE(B, 11);
    if (edge) cf_gemm_tile_out(c, ldc, tile, 32, m, n);
}

#if CF_AMX_BUILD
/* ---- the AMX kernel: 16 x 32 tiles of TDPBF16PS (where the CPU has AMX-BF16) ------------------
 *
 * Same packing (bf16 pairs of k), slivers of 16 rows of op(A) and 32 columns of op(B). AMX's B tile
 * is 16 pairs x 16 columns of words, which is the packed B sliver as it is (rows 128 bytes apart,
 * columns 0-15 and 16-31 two tiles); its A tile is 16 rows x 16 pairs, the transpose of the
 * packed A layout, so cf_cpu_amx_order_a transposes each full block of 16 pairs x 16 rows of a
 * sliver in place after packing (the last kp % 16 pairs stay pair-major). The kernel runs the
 * full blocks on the tiles (C in tiles 0-1, A in 2, B in 3-4), stores C to a 16 x 32 fp32 tile
 * in memory, adds the leftover pairs with vdpbf16ps, and applies alpha, beta and the bias as it
 * stores the valid m x n part. TDPBF16PS, like vdpbf16ps, treats denormal inputs as zero and
 * accumulates in fp32 (its order of additions is its own).
 *
 * Linux grants a process AMX's tile data only on request (arch_prctl ARCH_REQ_XCOMP_PERM,
 * XFEATURE_XTILEDATA), asked once in cf_cpu_amx_usable; the tile configuration is per thread,
 * loaded on a thread's first call. */
#define CF_AMX_TARGET                                                                              \
    __attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl,amx-tile,amx-bf16")))

int cf_cpu_amx_usable(void) {
    static _Atomic int ok = -1;
    int v = ok;
    if (v >= 0) return v;
    v = 0;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (cf_cpu_bf16_usable() && __get_cpuid_count(7, 0, &a, &b, &c, &d) &&
        ((d >> 22) & 1u) /* AMX-BF16 */ && ((d >> 24) & 1u) /* AMX-TILE */) {
        /* ARCH_REQ_XCOMP_PERM (0x1023) for XFEATURE_XTILEDATA (18): 0 once granted */
        v = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
    }
    ok = v;
    return v;
}

void cf_cpu_amx_order_a(float *dst, int mb, int kb) {
    const int kp = (kb + 1) / 2, nsl = (mb + 15) / 16;
    const size_t slot = (size_t)16 * kb;
    for (int s = 0; s < nsl; s++)
        for (int q0 = 0; q0 + 16 <= kp; q0 += 16) {
            uint32_t *blk = (uint32_t *)(void *)(dst + s * slot) + (size_t)q0 * 16;
            cf_cpu_amx_transpose16(blk);
        }
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} cf_amx_config;

static _Thread_local int cf_amx_configured;

/* this thread's tiles: 8 of 16 rows x 64 bytes (the kernel uses 0-4, the peak loop all 8) */
static CF_AMX_TARGET void cf_amx_release_tiles(void) { _tile_release(); }

static CF_AMX_TARGET void cf_amx_configure(void) {
    if (cf_amx_configured) return;
    cf_amx_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
    cf_amx_configured = 1;
}

CF_AMX_TARGET double cf_cpu_amx_peak_flops(long iters) {
    cf_amx_configure();
    /* bf16 2^-8 in both halves of every word: a TDPBF16PS adds 32 products of 2^-16 (2^-11) to
     * each element, so the sums stay finite and normal (they stall near 2^9 in fp32) */
    uint32_t ab[256] __attribute__((aligned(64)));
    for (int i = 0; i < 256; i++) ab[i] = 0x3B803B80u;
    _tile_loadd(4, ab, 64);
    _tile_loadd(5, ab, 64);
    _tile_loadd(6, ab, 64);
    _tile_loadd(7, ab, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (long i = 0; i < iters; i++) { /* four independent chains */
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    float out[256] __attribute__((aligned(64)));
    _tile_stored(0, out, 64);
    volatile float keep = out[0];
    (void)keep;
    return 4.0 * 2.0 * 16 * 16 * 32 * (double)iters;
}

CF_AMX_TARGET void cf_cpu_amx_ukr(int kc, const float *a_, const float *b_, float *c,
                                  ptrdiff_t ldc, float alpha, float beta, const float *bias, int m,
                                  int n) {
    cf_amx_configure();
    const uint32_t *a = (const uint32_t *)(const void *)a_;
    const uint32_t *b = (const uint32_t *)(const void *)b_;
    const int kp = (kc + 1) / 2, full = kp / 16;
    _tile_zero(0);
    _tile_zero(1);
    for (int q = 0; q < full; q++) {
        _tile_loadd(2, a + (size_t)q * 256, 64);
        _tile_loadd(3, b + (size_t)q * 512, 128);
        _tile_loadd(4, b + (size_t)q * 512 + 16, 128);
        _tile_dpbf16ps(0, 2, 3);
        _tile_dpbf16ps(1, 2, 4);
    }
    float acc[16 * 32] __attribute__((aligned(64)));
    _tile_stored(0, acc, 128);
    _tile_stored(1, acc + 16, 128);
    /* the leftover pairs (pair-major: a[q * 16 + i], b[q * 32 + j]) */
    const uint32_t *at = a + (size_t)full * 256, *bt = b + (size_t)full * 512;
    const int rest = kp - full * 16;
    if (rest > 0)
        for (int i = 0; i < 16; i++) {
            __m512 c0 = _mm512_load_ps(acc + i * 32), c1 = _mm512_load_ps(acc + i * 32 + 16);
            for (int q = 0; q < rest; q++) {
                const __m512bh ak = (__m512bh)_mm512_set1_epi32((int)at[q * 16 + i]);
                c0 = _mm512_dpbf16_ps(c0, ak, (__m512bh)_mm512_loadu_si512(bt + q * 32));
                c1 = _mm512_dpbf16_ps(c1, ak, (__m512bh)_mm512_loadu_si512(bt + q * 32 + 16));
            }
            _mm512_store_ps(acc + i * 32, c0);
            _mm512_store_ps(acc + i * 32 + 16, c1);
        }
    float bpad[32] __attribute__((aligned(64)));
    const float *bb = bias ? cf_gemm_bias_pad(bpad, 32, bias, n) : NULL;
    const __mmask16 m0 = cf_bf16_mask(n), m1 = cf_bf16_mask(n - 16);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i = 0; i < m; i++) {
        float *ci = c + (size_t)i * ldc;
        __m512 r0 = _mm512_mul_ps(va, _mm512_load_ps(acc + i * 32));
        __m512 r1 = _mm512_mul_ps(va, _mm512_load_ps(acc + i * 32 + 16));
        if (bb) {
            /* (unaligned: with n 32 bb is the caller's bias itself) */
            r0 = _mm512_add_ps(r0, _mm512_loadu_ps(bb));
            r1 = _mm512_add_ps(r1, _mm512_loadu_ps(bb + 16));
        }
        if (beta != 0.0f) {
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
            r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
        }
        _mm512_mask_storeu_ps(ci, m0, r0);
        _mm512_mask_storeu_ps(ci + 16, m1, r1);
    }
}

void cf_cpu_amx_release(void) {
    if (!cf_amx_configured) return;
    cf_amx_release_tiles();
    cf_amx_configured = 0;
}

#else /* no AMX build: cf_cpu_amx_usable() says so, and nothing below is ever called */

int cf_cpu_amx_usable(void) { return 0; }
void cf_cpu_amx_order_a(float *dst, int mb, int kb) {
    (void)dst, (void)mb, (void)kb;
}
void cf_cpu_amx_ukr(int kc, const float *a, const float *b, float *c, ptrdiff_t ldc, float alpha,
                    float beta, const float *bias, int m, int n) {
    (void)kc, (void)a, (void)b, (void)c, (void)ldc, (void)alpha, (void)beta, (void)bias, (void)m,
        (void)n;
}
double cf_cpu_amx_peak_flops(long iters) {
    (void)iters;
    return 0.0;
}
void cf_cpu_amx_release(void) {}

#endif /* CF_AMX_BUILD */

#else /* not x86 with GCC/Clang: no AVX512-BF16 or AMX kernel; the usable checks say so */

int cf_cpu_bf16_usable(void) { return 0; }
int cf_cpu_amx_usable(void) { return 0; }
double cf_cpu_amx_peak_flops(long iters) {
    (void)iters;
    return 0.0;
}
void cf_cpu_amx_release(void) {}

#endif
