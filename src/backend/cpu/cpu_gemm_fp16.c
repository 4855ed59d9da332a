/* clformer: the CPU backend's fp16 GEMM rounding (precision fp16): packed GEMM operands are
 * rounded to IEEE binary16 and back to fp32 in place, so the fp32 register-tile kernels of
 * cpu_gemm.c multiply half values (each product of two halves, 11 x 11 significant bits, is
 * exact in fp32) and accumulate in fp32.
 *
 * Rounding: to nearest, ties to even; magnitudes from 65520 (half an ulp above half's largest,
 * 65504) become +-Inf; half's subnormals (steps of 2^-24) are kept, below 2^-25 values become +-0
 * (2^-25 itself is a tie: +-0); NaN stays a quiet NaN. With F16C (vcvtps2ph with an immediate
 * round-to-nearest, then vcvtph2ps; neither flushes half subnormals) eight values at a time; the
 * code is compiled with target attributes, so the binary runs on every x86-64 CPU, and is used
 * where cpuid reports F16C (leaf 1, ECX bit 29) and the OS saves the ymm state. Elsewhere the
 * scalar conversions of io/half.c, which give the same bits (tests/test_cpu_gemm_fp16.c). */
#include <stdatomic.h>

#include "backend/cpu/cpu_internal.h"
#include "io/half.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define CF_F16C_X86 1
#define CF_F16C_TARGET __attribute__((target("avx,f16c")))

static int f16c_detect(void) {
    __builtin_cpu_init();
    /* (libgcc reports avx only when XCR0 shows the OS saves the ymm state) */
    if (!__builtin_cpu_supports("avx")) return 0;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (int)((c >> 29) & 1u); /* F16C */
}

static CF_F16C_TARGET void f16_round_f16c(float *x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h =
            _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(h));
    }
    if (i < n) { /* the tail through the same instructions, so every value takes one path */
        float t[8] = {0};
        for (size_t k = i; k < n; k++) t[k - i] = x[k];
        const __m128i h =
            _mm256_cvtps_ph(_mm256_loadu_ps(t), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_storeu_ps(t, _mm256_cvtph_ps(h));
        for (size_t k = i; k < n; k++) x[k] = t[k - i];
    }
}

static CF_F16C_TARGET void f16_store_f16c(const float *x, uint16_t *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) y[i] = cf_f32_to_f16(x[i]); /* the same bits */
}

static CF_F16C_TARGET void f16_load_f16c(const uint16_t *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(x + i))));
    for (; i < n; i++) y[i] = cf_f16_to_f32(x[i]);
}
#else
static int f16c_detect(void) { return 0; }
#endif

static _Atomic int g_f16c = -1;

int cf_cpu_f16c_usable(void) {
    int ok = atomic_load_explicit(&g_f16c, memory_order_relaxed);
    if (ok < 0) {
        ok = f16c_detect();
        atomic_store_explicit(&g_f16c, ok, memory_order_relaxed);
    }
    return ok;
}

void cf_cpu_f16_round_with(float *x, size_t n, int f16c) {
#ifdef CF_F16C_X86
    if (f16c) {
        f16_round_f16c(x, n);
        return;
    }
#else
    (void)f16c;
#endif
    for (size_t i = 0; i < n; i++) x[i] = cf_f16_to_f32(cf_f32_to_f16(x[i]));
}

void cf_cpu_f16_round(float *x, size_t n) { cf_cpu_f16_round_with(x, n, cf_cpu_f16c_usable()); }

void cf_cpu_f16_store(const float *x, uint16_t *y, size_t n) {
#ifdef CF_F16C_X86
    if (cf_cpu_f16c_usable()) {
        f16_store_f16c(x, y, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) y[i] = cf_f32_to_f16(x[i]);
}

void cf_cpu_f16_load(const uint16_t *x, float *y, size_t n) {
#ifdef CF_F16C_X86
    if (cf_cpu_f16c_usable()) {
        f16_load_f16c(x, y, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) y[i] = cf_f16_to_f32(x[i]);
}
