/* clformer test: the CPU backend's fp16 GEMM (precision fp16, CF_CPU_GEMM_FP16 + kernel).
 *   1. rounding: cf_cpu_f16_round_with, through F16C and through the scalar fallback, gives the
 *      test's own reference (round to nearest even on the double value) for every half value's
 *      neighbourhood (the value, the midpoints to its neighbours and one float either side of
 *      them), overflow (65504, 65519.99, 65520, 1e5, Inf), underflow (subnormals, 2^-25 ties,
 *      fp32 subnormals) and NaN; both paths give the same bits;
 *   2. through the GEMM of every native kernel: inputs on the A and the B side (both layouts)
 *      round to the nearest half, ties to even, overflow to Inf and keep subnormals; a product
 *      of halves is exact;
 *   3. against a double-precision reference computed from the fp16-rounded inputs, for every
 *      kernel, all four transpose combinations, odd M/N/K, K past a depth block, padded strides,
 *      alpha/beta (beta = 0 never reads C), with and without the fused bias, with some inputs
 *      in half's subnormal range: only the fp32 accumulation differs ((K+4)u sum|ab|); an input
 *      that overflows half makes its row of C non-finite and leaves the others exact;
 *   4. the inputs are really rounded: a value half cannot hold changes the result, and against
 *      the fp32 GEMM the relative RMS difference is that of half's rounding;
 *   5. through the backend created with cf_backend_options.fp16: gemm and gemm_bias (also with
 *      M <= 4 rows, where the fp32 path takes a dot-product shortcut) equal the direct call bit
 *      for bit, on 1 and 2 threads. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_internal.h"
#include "test_ops_common.h"

static int g_fail = 0;

static void expect(int ok, const char *what) {
    printf("%s - %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) g_fail = 1;
}

/* The reference: x rounded to IEEE half (11 significant bits, exponents -14..15, subnormals in
 * steps of 2^-24), to nearest even, in double arithmetic (rint rounds ties to even). */
static float f16_ref(float xf) {
    const double x = xf;
    if (isnan(x) || isinf(x)) return xf;
    const double ax = fabs(x);
    double q; /* the quantum at |x| */
    if (ax < 0x1p-14) {
        q = 0x1p-24;
    } else {
        int e;
        frexp(ax, &e); /* ax in [2^(e-1), 2^e) */
        q = ldexp(1.0, e - 1 - 10);
    }
    double r = rint(x / q) * q;
    if (fabs(r) > 65504.0) r = copysign(INFINITY, x);
    return (float)r;
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static float bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float half_value(unsigned h) { /* h < 0x7c00: a finite, non-negative half */
    const unsigned e = h >> 10, m = h & 0x3ffu;
    return e ? (float)ldexp(1.0 + m / 1024.0, (int)e - 15) : (float)ldexp((double)m, -24);
}

static void rounding_values(void) {
    size_t cap = 40 * 0x7c00 + 64, n = 0;
    float *v = cft_floats(cap);
    for (unsigned h = 0; h < 0x7c00; h++) {
        const float a = half_value(h), b = h + 1 < 0x7c00 ? half_value(h + 1) : 65536.0f;
        const float mid = (float)(((double)a + b) / 2); /* exact in fp32 */
        const float pts[5] = {a, mid, nextafterf(mid, 0.0f), nextafterf(mid, INFINITY),
                              nextafterf(a, INFINITY)};
        for (int k = 0; k < 5; k++) {
            v[n++] = pts[k];
            v[n++] = -pts[k];
        }
    }
    const float special[] = {65504.0f, 65519.99f, 65520.0f, 65536.0f, 1e5f, 3e38f, INFINITY,
                             -INFINITY, 0x1p-24f, 0x1p-25f, 0x1.000002p-25f, 0x1p-26f, 1e-30f,
                             0x1p-149f, 0x1p-126f, 0.0f, -0.0f, 3e-8f, 6e-8f, 1e-7f};
    for (size_t k = 0; k < sizeof special / sizeof special[0]; k++) {
        v[n++] = special[k];
        v[n++] = -special[k];
    }
    cf_rng rng;
    cf_rng_seed(&rng, 16);
    for (int k = 0; k < 100000; k++) /* random bit patterns over the finite and NaN range */
        v[n++] = bits_float(cf_rng_u32(&rng));
    v[n++] = bits_float(0x7fc00000u); /* quiet NaN */
    v[n++] = bits_float(0x7f800001u); /* signalling NaN, low payload */
    v[n++] = bits_float(0xffa00000u); /* negative signalling NaN, high payload */
    if (n > cap) abort();
    float *s = cft_floats(n), *f = cft_floats(n);
    memcpy(s, v, n * sizeof *v);
    memcpy(f, v, n * sizeof *v);
    cf_cpu_f16_round_with(s, n, 0);
    const int f16c = cf_cpu_f16c_usable();
    if (f16c) cf_cpu_f16_round_with(f, n, 1);
    size_t bad_s = 0, bad_f = 0, bad_eq = 0;
    for (size_t i = 0; i < n; i++) {
        const float want = f16_ref(v[i]);
        const int nan = isnan(v[i]);
        const int ok_s = nan ? isnan(s[i]) : same_bits(s[i], want);
        if (!ok_s && bad_s++ < 5)
            printf("  scalar: %a -> %a, want %a\n", (double)v[i], (double)s[i], (double)want);
        if (f16c) {
            const int ok_f = nan ? isnan(f[i]) : same_bits(f[i], want);
            if (!ok_f && bad_f++ < 5)
                printf("  F16C: %a -> %a, want %a\n", (double)v[i], (double)f[i], (double)want);
            if (!same_bits(f[i], s[i]) && bad_eq++ < 5)
                printf("  F16C %08x vs scalar %08x for %08x\n", *(uint32_t *)(void *)&f[i],
                       *(uint32_t *)(void *)&s[i], *(uint32_t *)(void *)&v[i]);
        }
    }
    char what[200];
    snprintf(what, sizeof what,
             "%zu values (every half's neighbourhood, overflow, underflow, NaN) round to the "
             "nearest half, ties to even, with the scalar fallback",
             n);
    expect(bad_s == 0, what);
    if (f16c) {
        snprintf(what, sizeof what, "the same %zu values with F16C, and the same bits as the "
                                    "scalar fallback (NaN payloads too)",
                 n);
        expect(bad_f == 0 && bad_eq == 0, what);
    } else {
        printf("(this CPU has no F16C: only the scalar rounding is checked)\n");
    }
    free(v), free(s), free(f);
}

/* One input per output through the GEMM of kernel k, on both sides and layouts. */
static void rounding_gemm(int k) {
    const float in[10] = {1.0f + 0x1p-11f,  1.0f + 3 * 0x1p-11f, 1.0f + 0x1p-11f + 0x1p-20f,
                          -1.0f - 0x1p-11f, 65519.0f,           70000.0f,
                          0x1.8p-24f,       0x1p-26f,           -0x1.4p-20f,
                          2049.0f};
    float want[10];
    const float want_lit[10] = {1.0f, 1.0f + 0x1p-9f, 1.0f + 0x1p-10f, -1.0f, 65504.0f, INFINITY,
                                0x1p-23f, 0.0f, -0x1.4p-20f, 2048.0f};
    int ok = 1;
    for (int i = 0; i < 10; i++) {
        want[i] = f16_ref(in[i]);
        ok &= same_bits(want[i], want_lit[i]); /* the reference agrees with the literals */
    }
    expect(ok, "the test's reference rounding gives the expected halves");
    const int kern = CF_CPU_GEMM_FP16 + k;
    float one = 1.0f, out[10];
    char what[160];
    /* C(10,1) = A(10,1) * B(1,1), B = 1; and transposed A */
    ok = 1;
    for (int ta = 0; ta < 2; ta++) {
        CFT_OK(cf_cpu_sgemm(kern, ta, 0, 10, 1, 1, 1.0f, in, ta ? 10 : 1, &one, 1, 0.0f, out, 1));
        for (int i = 0; i < 10; i++)
            if (!same_bits(out[i], want[i])) {
                printf("  %s A ta=%d: input %a gave %a, want %a\n", cf_cpu_gemm_kernel_name(k), ta,
                       (double)in[i], (double)out[i], (double)want[i]);
                ok = 0;
            }
    }
    snprintf(what, sizeof what, "%s: A inputs round to the nearest half (ties to even, Inf, "
                                "subnormals), both layouts",
             cf_cpu_gemm_kernel_name(k));
    expect(ok, what);
    ok = 1;
    for (int tb = 0; tb < 2; tb++) {
        CFT_OK(cf_cpu_sgemm(kern, 0, tb, 1, 10, 1, 1.0f, &one, 1, in, tb ? 1 : 10, 0.0f, out, 10));
        for (int i = 0; i < 10; i++)
            if (!same_bits(out[i], want[i])) {
                printf("  %s B tb=%d: input %a gave %a, want %a\n", cf_cpu_gemm_kernel_name(k), tb,
                       (double)in[i], (double)out[i], (double)want[i]);
                ok = 0;
            }
    }
    snprintf(what, sizeof what, "%s: B inputs round to the nearest half, both layouts",
             cf_cpu_gemm_kernel_name(k));
    expect(ok, what);
    /* products of halves are exact in fp32: (1 + 2^-10)^2 = 1 + 2^-9 + 2^-20; and an input half
     * cannot hold changes the result: (1 + 2^-12) * 1 is 1, where fp32 gives 1 + 2^-12 */
    const float a = 1.0f + 0x1p-10f, b = 1.0f + 0x1p-12f;
    float c = 0.0f, d = 0.0f, d32 = 0.0f;
    CFT_OK(cf_cpu_sgemm(kern, 0, 0, 1, 1, 1, 1.0f, &a, 1, &a, 1, 0.0f, &c, 1));
    CFT_OK(cf_cpu_sgemm(kern, 0, 0, 1, 1, 1, 1.0f, &b, 1, &one, 1, 0.0f, &d, 1));
    CFT_OK(cf_cpu_sgemm(k, 0, 0, 1, 1, 1, 1.0f, &b, 1, &one, 1, 0.0f, &d32, 1));
    snprintf(what, sizeof what,
             "%s: a product of halves is exact; 1 + 2^-12 is rounded to 1 (fp32 keeps it)",
             cf_cpu_gemm_kernel_name(k));
    expect(c == 1.0f + 0x1p-9f + 0x1p-20f && d == 1.0f && d32 == b, what);
}

static float *rounded_copy(const float *x, size_t n) {
    float *y = cft_floats(n);
    for (size_t i = 0; i < n; i++) y[i] = f16_ref(x[i]);
    return y;
}

/* One product against the reference from rounded inputs; returns 0 on failure. */
static int one_case(cf_rng *rng, int k, int ta, int tb, int M, int N, int K, float alpha,
                    float beta, int with_bias, double *worst_rel) {
    const int pad = (M + N + K) % 3;
    const int arows = ta ? K : M, acols = ta ? M : K, brows = tb ? N : K, bcols = tb ? K : N;
    const int lda = acols + pad, ldb = bcols + 2 * pad, ldc = N + pad;
    const size_t na = (size_t)arows * lda, nb = (size_t)brows * ldb, nc = (size_t)M * ldc;
    float *A = cft_floats(na), *B = cft_floats(nb), *C0 = cft_floats(nc), *C = cft_floats(nc);
    float *bias = cft_floats((size_t)N);
    cft_rand(rng, A, na, 1.0f);
    cft_rand(rng, B, nb, 1.0f);
    cft_rand(rng, C0, nc, 1.0f);
    cft_rand(rng, bias, (size_t)N, 1.0f);
    /* every 7th input of A scaled into half's subnormal range (below 2^-14), every 11th of B
     * below half's smallest subnormal (rounds to 0 or 2^-24) */
    for (size_t i = 0; i < na; i += 7) A[i] *= 0x1p-16f;
    for (size_t i = 0; i < nb; i += 11) B[i] *= 0x1p-25f;
    if (beta == 0.0f)
        for (size_t i = 0; i < nc; i++) C0[i] = NAN; /* must not be read */
    float *Ar = rounded_copy(A, na), *Br = rounded_copy(B, nb);
    double *ref = cft_doubles((size_t)M * N), *cabs = cft_doubles((size_t)M * N);
    cft_gemm_ref(ta, tb, M, N, K, alpha, Ar, lda, Br, ldb, beta, C0, ldc, ref, cabs);
    memcpy(C, C0, nc * sizeof *C);
    CFT_OK(cf_cpu_sgemm_bias(CF_CPU_GEMM_FP16 + k, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta,
                             C, ldc, with_bias ? bias : NULL));
    int ok = 1;
    for (int i = 0; i < M && ok; i++)
        for (int j = 0; j < N; j++) {
            const size_t e = (size_t)i * N + j;
            const double b = with_bias ? bias[j] : 0.0;
            const double r = ref[e] + b, scale = cabs[e] + fabs(b);
            const double got = C[(size_t)i * ldc + j];
            const double tol = (K + 4) * CFT_U * scale + 1e-30;
            const double d = fabs(got - r);
            if (!(d <= tol)) {
                printf("  %s ta=%d tb=%d %dx%dx%d alpha=%g beta=%g bias=%d: C[%d,%d] = %.9g, "
                       "reference from fp16 inputs %.9g (|d| %.3g > %.3g)\n",
                       cf_cpu_gemm_kernel_name(k), ta, tb, M, N, K, alpha, beta, with_bias, i, j,
                       got, r, d, tol);
                ok = 0;
                break;
            }
            if (scale > 0 && d / scale > *worst_rel) *worst_rel = d / scale;
        }
    for (int i = 0; i < M && ok; i++)
        for (int j = N; j < ldc; j++)
            if (memcmp(&C[(size_t)i * ldc + j], &C0[(size_t)i * ldc + j], sizeof(float))) {
                printf("  padding C[%d,%d] written\n", i, j);
                ok = 0;
            }
    free(A), free(B), free(C0), free(C), free(bias), free(Ar), free(Br), free(ref), free(cabs);
    return ok;
}

static void against_reference(int k) {
    cf_rng rng;
    cf_rng_seed(&rng, 14 + k);
    /* odd M, N, K; K = 1 and 2; K past the 256-deep block (3 blocks of 344/344/343); M past the
     * 144-row block; N past several tiles */
    static const int shapes[][3] = {{1, 1, 1},   {13, 37, 1},  {12, 32, 2},   {29, 45, 67},
                                    {7, 3, 31},  {31, 17, 33}, {50, 70, 301}, {151, 97, 45},
                                    {3, 131, 9}, {37, 5, 257}, {40, 50, 1031}};
    static const float ab[][2] = {{1.0f, 0.0f}, {0.5f, 1.0f}, {-1.5f, 0.25f}};
    const int ns = (int)(sizeof shapes / sizeof shapes[0]), nab = (int)(sizeof ab / sizeof ab[0]);
    int ok = 1, cases = 0;
    double worst = 0.0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int s = 0; s < ns; s++)
                for (int a = 0; a < nab; a++) {
                    ok &= one_case(&rng, k, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2],
                                   ab[a][0], ab[a][1], (s + a) % 2, &worst);
                    cases++;
                }
    char what[240];
    snprintf(what, sizeof what,
             "%s: %d products (4 transpose combinations, odd shapes, alpha/beta, bias, half "
             "subnormal inputs) against the reference from fp16-rounded inputs (largest error "
             "%.2e of sum|ab|)",
             cf_cpu_gemm_kernel_name(k), cases, worst);
    expect(ok, what);
}

/* An input beyond half's range (1e5) becomes Inf: its row of C is non-finite, the rest exact. */
static void overflow_rows(int k) {
    const int M = 9, N = 21, K = 40;
    cf_rng rng;
    cf_rng_seed(&rng, 5);
    float *A = cft_floats((size_t)M * K), *B = cft_floats((size_t)K * N);
    float *C = cft_floats((size_t)M * N);
    cft_rand(&rng, A, (size_t)M * K, 1.0f);
    cft_rand(&rng, B, (size_t)K * N, 1.0f);
    for (int j = 0; j < N; j++) B[(size_t)3 * N + j] = 0.5f + 0.01f * j; /* row 3 of B > 0 */
    A[(size_t)4 * K + 3] = 1e5f; /* row 4: Inf * positive B values */
    float *Ar = rounded_copy(A, (size_t)M * K), *Br = rounded_copy(B, (size_t)K * N);
    double *ref = cft_doubles((size_t)M * N), *cabs = cft_doubles((size_t)M * N);
    cft_gemm_ref(0, 0, M, N, K, 1.0, Ar, K, Br, N, 0.0, C, N, ref, cabs);
    CFT_OK(cf_cpu_sgemm(CF_CPU_GEMM_FP16 + k, 0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N));
    int ok = 1;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            const float got = C[(size_t)i * N + j];
            if (i == 4)
                ok &= isinf(got) && got > 0;
            else
                ok &= fabs(got - ref[(size_t)i * N + j]) <=
                      (K + 4) * CFT_U * cabs[(size_t)i * N + j] + 1e-30;
        }
    char what[160];
    snprintf(what, sizeof what,
             "%s: an input of 1e5 (beyond half's 65504) makes its row +Inf, the others exact",
             cf_cpu_gemm_kernel_name(k));
    expect(ok, what);
    free(A), free(B), free(C), free(Ar), free(Br), free(ref), free(cabs);
}

/* The fp16 result differs from fp32's by half's rounding: the inputs are rounded. */
static void rounding_visible(int k) {
    const int M = 64, N = 64, K = 128;
    cf_rng rng;
    cf_rng_seed(&rng, 7);
    float *A = cft_floats((size_t)M * K), *B = cft_floats((size_t)K * N);
    float *C = cft_floats((size_t)M * N), *C32 = cft_floats((size_t)M * N);
    cft_rand(&rng, A, (size_t)M * K, 1.0f);
    cft_rand(&rng, B, (size_t)K * N, 1.0f);
    CFT_OK(cf_cpu_sgemm(CF_CPU_GEMM_FP16 + k, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N));
    CFT_OK(cf_cpu_sgemm(k, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C32, N));
    double num = 0.0, den = 0.0;
    for (int i = 0; i < M * N; i++) {
        num += (C[i] - C32[i]) * (double)(C[i] - C32[i]);
        den += (double)C32[i] * C32[i];
    }
    const double rel = sqrt(num / den);
    char what[200];
    snprintf(what, sizeof what,
             "%s: 64x64x128 against fp32: relative RMS difference %.2e (half rounding: expected "
             "in [3e-5, 2e-3])",
             cf_cpu_gemm_kernel_name(k), rel);
    expect(rel > 3e-5 && rel < 2e-3, what);
    free(A), free(B), free(C), free(C32);
}

/* Through the backend's ops with cf_backend_options.fp16: the same bits as the direct call, for
 * any thread count, dot-product-sized products included. */
static void through_backend(void) {
    cf_backend_options o = cf_backend_options_default();
    o.fp16 = 1;
    cf_backend *be = NULL;
    CFT_OK(cf_backend_cpu_create("cpu", &o, &be));
    const int kern = CF_CPU_GEMM_FP16 + cf_cpu_gemm_native_kernel(NULL);
    cf_rng rng;
    cf_rng_seed(&rng, 3);
    static const int shapes[][3] = {{3, 40, 33}, {96, 200, 130}, {257, 300, 96}};
    int ok = 1;
    for (int s = 0; s < 3; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = cft_floats((size_t)M * K), *B = cft_floats((size_t)N * K);
        float *bias = cft_floats((size_t)N), *want = cft_floats((size_t)M * N);
        float *got = cft_floats((size_t)M * N);
        cft_rand(&rng, A, (size_t)M * K, 1.0f);
        cft_rand(&rng, B, (size_t)N * K, 1.0f);
        cft_rand(&rng, bias, (size_t)N, 1.0f);
        CFT_OK(cf_cpu_sgemm_bias(kern, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, want, N, bias));
        cf_buffer *bA = cft_buf(be, A, (size_t)M * K), *bB = cft_buf(be, B, (size_t)N * K);
        cf_buffer *bC = cft_buf(be, NULL, (size_t)M * N), *bb = cft_buf(be, bias, (size_t)N);
#ifdef _OPENMP
        const int saved = omp_get_max_threads();
        for (int th = 1; th <= (saved > 1 ? 2 : 1); th++) {
            omp_set_num_threads(th);
#endif
            CFT_OK(be->ops->gemm_bias(be, 0, 1, M, N, K, 1.0f, cft_v(bA), K, cft_v(bB), K, 0.0f,
                                      cft_v(bC), N, cft_v(bb)));
            cft_get(be, got, bC, (size_t)M * N);
            if (memcmp(got, want, sizeof(float) * (size_t)M * N)) {
                printf("  gemm_bias %dx%dx%d differs from the direct fp16 call\n", M, N, K);
                ok = 0;
            }
#ifdef _OPENMP
        }
        omp_set_num_threads(saved);
#endif
        CFT_OK(cf_cpu_sgemm(kern, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, want, N));
        CFT_OK(cf_be_gemm(be, 0, 1, M, N, K, 1.0f, cft_v(bA), K, cft_v(bB), K, 0.0f, cft_v(bC),
                          N));
        cft_get(be, got, bC, (size_t)M * N);
        if (memcmp(got, want, sizeof(float) * (size_t)M * N)) {
            printf("  gemm %dx%dx%d differs from the direct fp16 call\n", M, N, K);
            ok = 0;
        }
        cf_be_free(be, bA), cf_be_free(be, bB), cf_be_free(be, bC), cf_be_free(be, bb);
        free(A), free(B), free(bias), free(want), free(got);
    }
    cf_backend_destroy(be);
    expect(ok, "backend gemm / gemm_bias with options.fp16 (3 rows too) equal the fp16 GEMM bit "
               "for bit, on 1 and 2 threads");
}

int main(void) {
    rounding_values();
    for (int k = 0; k < cf_cpu_gemm_kernel_count(); k++) {
        rounding_gemm(k);
        against_reference(k);
        overflow_rows(k);
        rounding_visible(k);
    }
    through_backend();
    printf("%s test_cpu_gemm_fp16\n", g_fail ? "FAIL" : "PASS");
    return g_fail;
}
