/* clformer test: the CPU backend's bf16 GEMM (precision bf16, CF_CPU_GEMM_BF16), on each kernel the
 * CPU has: AVX512-BF16 (CF_CPU_GEMM_BF16_AVX512), and AMX (CF_CPU_GEMM_BF16_AMX) where it has that
 * too (sections 1-3 for each).
 *   1. rounding: inputs halfway between two bf16 values round to the even one, others to the
 *      nearest (catches truncation and round-half-up), products of bf16 values are exact;
 *   2. against a double-precision reference computed from the bf16-rounded inputs, for all four
 *      transpose combinations, odd M/N/K (no multiple of any block or tile), K = 1, K across
 *      several depth blocks, padded strides, several alpha/beta (beta = 0 never reads C), with
 *      and without the fused bias: only the fp32 accumulation differs (bound (K+4)u sum|ab|);
 *   3. against the fp32 GEMM: within bf16's rounding of the inputs, and visibly rounded;
 *   4. through the backend created with cf_backend_options.bf16: gemm and gemm_bias (also with
 *      M <= 4 rows, where the fp32 path takes a dot-product shortcut) equal the direct call bit
 *      for bit, and the result is the same for any thread count.
 * Exits 77 (skipped) where the CPU has no AVX512-BF16. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime(CLOCK_THREAD_CPUTIME_ID) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend/cpu/cpu_backend.h"
#include "test_ops_common.h"

static int g_fail = 0;
/* the bf16 kernel the direct calls run: CF_CPU_GEMM_BF16_AVX512, then CF_CPU_GEMM_BF16_AMX */
static int g_kernel = CF_CPU_GEMM_BF16_AVX512;

static void expect(int ok, const char *what) {
    printf("%s - %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) g_fail = 1;
}

/* bf16 of x, rounded to nearest even, as a float (finite inputs) */
static float bf16_rne(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    u &= 0xFFFF0000u;
    float y;
    memcpy(&y, &u, 4);
    return y;
}

static float *rounded_copy(const float *x, size_t n) {
    float *y = cft_floats(n);
    for (size_t i = 0; i < n; i++) y[i] = bf16_rne(x[i]);
    return y;
}

static void rounding(void) {
    /* 1 + 2^-8 is halfway between 1 and 1 + 2^-7: even is 1; 1 + 3*2^-8 halfway between
     * 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6; 1 + 2^-8 + 2^-20 is above the halfway point */
    const float in[6] = {1.0f + 0x1p-8f,  1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-20f,
                         -1.0f - 0x1p-8f, 3.0f - 0x1p-7f,     1.0f + 0x1p-9f};
    const float want[6] = {1.0f, 1.0f + 0x1p-6f, 1.0f + 0x1p-7f, -1.0f, 3.0f, 1.0f};
    float one = 1.0f, out[6];
    /* C(6,1) = A(6,1) * B(1,1) with B = 1: each output is one rounded input */
    CFT_OK(cf_cpu_sgemm(g_kernel, 0, 0, 6, 1, 1, 1.0f, in, 1, &one, 1, 0.0f, out, 1));
    int ok = 1;
    for (int i = 0; i < 6; i++) {
        if (out[i] != want[i]) {
            printf("  input %.9g: got %.9g, want %.9g\n", in[i], out[i], want[i]);
            ok = 0;
        }
        if (bf16_rne(in[i]) != want[i]) ok = 0; /* the test's own rounding agrees */
    }
    expect(ok, "inputs round to the nearest bf16, ties to even (A side)");
    /* the same on the B side (transposed and not) */
    float outb[6];
    CFT_OK(cf_cpu_sgemm(g_kernel, 0, 0, 1, 6, 1, 1.0f, &one, 1, in, 6, 0.0f, outb, 6));
    ok = 1;
    for (int i = 0; i < 6; i++) ok &= outb[i] == want[i];
    CFT_OK(cf_cpu_sgemm(g_kernel, 0, 1, 1, 6, 1, 1.0f, &one, 1, in, 1, 0.0f, outb, 6));
    for (int i = 0; i < 6; i++) ok &= outb[i] == want[i];
    expect(ok, "inputs round to the nearest bf16, ties to even (B side, both layouts)");
    /* bf16 products are exact in fp32: (1 + 2^-7)^2 = 1 + 2^-6 + 2^-14 */
    const float a = 1.0f + 0x1p-7f;
    float c = 0.0f;
    CFT_OK(cf_cpu_sgemm(g_kernel, 0, 0, 1, 1, 1, 1.0f, &a, 1, &a, 1, 0.0f, &c, 1));
    expect(c == 1.0f + 0x1p-6f + 0x1p-14f, "a product of bf16 values is exact");
}

/* One product against the reference from rounded inputs and against the fp32 GEMM; returns 0 on
 * failure. */
static int one_case(cf_rng *rng, int ta, int tb, int M, int N, int K, float alpha, float beta,
                    int with_bias, double *worst_rel) {
    const int pad = (M + N + K) % 3; /* padded strides in some cases */
    const int arows = ta ? K : M, acols = ta ? M : K, brows = tb ? N : K, bcols = tb ? K : N;
    const int lda = acols + pad, ldb = bcols + 2 * pad, ldc = N + pad;
    const size_t na = (size_t)arows * lda, nb = (size_t)brows * ldb, nc = (size_t)M * ldc;
    float *A = cft_floats(na), *B = cft_floats(nb), *C0 = cft_floats(nc), *C = cft_floats(nc);
    float *C32 = cft_floats(nc), *bias = cft_floats((size_t)N);
    cft_rand(rng, A, na, 1.0f);
    cft_rand(rng, B, nb, 1.0f);
    cft_rand(rng, C0, nc, 1.0f);
    cft_rand(rng, bias, (size_t)N, 1.0f);
    if (beta == 0.0f)
        for (size_t i = 0; i < nc; i++) C0[i] = NAN; /* must not be read */
    float *Ar = rounded_copy(A, na), *Br = rounded_copy(B, nb);
    double *ref = cft_doubles((size_t)M * N), *cabs = cft_doubles((size_t)M * N);
    double *ref32 = cft_doubles((size_t)M * N);
    cft_gemm_ref(ta, tb, M, N, K, alpha, Ar, lda, Br, ldb, beta, C0, ldc, ref, cabs);
    cft_gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, ldc, ref32, NULL);
    memcpy(C, C0, nc * sizeof *C);
    memcpy(C32, C0, nc * sizeof *C);
    CFT_OK(cf_cpu_sgemm_bias(g_kernel, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C,
                             ldc, with_bias ? bias : NULL));
    CFT_OK(cf_cpu_sgemm_bias(0, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C32, ldc,
                             with_bias ? bias : NULL));
    int ok = 1;
    double maxd32 = 0.0;
    for (int i = 0; i < M && ok; i++)
        for (int j = 0; j < N; j++) {
            const size_t e = (size_t)i * N + j;
            const double b = with_bias ? bias[j] : 0.0;
            const double r = ref[e] + b, scale = cabs[e] + fabs(b);
            const double got = C[(size_t)i * ldc + j];
            /* fp32 accumulation of exact bf16 products: (K + 4) u of the absolute sum */
            const double tol = (K + 4) * CFT_U * scale + 1e-30;
            const double d = fabs(got - r);
            if (!(d <= tol)) {
                printf("  ta=%d tb=%d %dx%dx%d alpha=%g beta=%g bias=%d: C[%d,%d] = %.9g, "
                       "reference from bf16 inputs %.9g (|d| %.3g > %.3g)\n",
                       ta, tb, M, N, K, alpha, beta, with_bias, i, j, got, r, d, tol);
                ok = 0;
                break;
            }
            if (scale > 0 && d / scale > *worst_rel) *worst_rel = d / scale;
            /* against fp32: each input moves by at most 2^-8 of itself (bf16 keeps 8 significant
             * bits), a product by 2^-7 + 2^-16 */
            const double r32 = ref32[e] + b;
            const double d32 = fabs(got - r32), tol32 = (0x1p-7 + 0x1p-16) * scale +
                                                        (K + 4) * CFT_U * scale + 1e-30;
            if (!(d32 <= tol32)) {
                printf("  ta=%d tb=%d %dx%dx%d: C[%d,%d] = %.9g, fp32 reference %.9g (|d| %.3g > "
                       "bf16 bound %.3g)\n",
                       ta, tb, M, N, K, i, j, got, r32, d32, tol32);
                ok = 0;
                break;
            }
            const double g32 = C32[(size_t)i * ldc + j];
            if (fabs(got - g32) > maxd32) maxd32 = fabs(got - g32);
        }
    /* beyond the N columns of each row (padding) nothing is written */
    for (int i = 0; i < M && ok; i++)
        for (int j = N; j < ldc; j++)
            if (memcmp(&C[(size_t)i * ldc + j], &C0[(size_t)i * ldc + j], sizeof(float))) {
                printf("  ta=%d tb=%d %dx%dx%d: padding C[%d,%d] written\n", ta, tb, M, N, K, i,
                       j);
                ok = 0;
            }
    free(A), free(B), free(C0), free(C), free(C32), free(bias), free(Ar), free(Br);
    free(ref), free(cabs), free(ref32);
    return ok;
}

static void against_reference(void) {
    cf_rng rng;
    cf_rng_seed(&rng, 14);
    /* M, N, K: odd, K = 1 and 2, K past the bf16 kernel's 512-deep block (three blocks of 344,
     * 344 and 343: an odd tail; with 2 threads the shared-packing path), M past the 144-row
     * block, N past several 32-wide tiles */
    static const int shapes[][3] = {{1, 1, 1},     {13, 37, 1},  {12, 32, 2},  {29, 45, 67},
                                    {7, 3, 31},    {31, 17, 33}, {50, 70, 301}, {151, 97, 45},
                                    {3, 131, 9},   {37, 5, 257}, {40, 50, 1031},
                                    /* AMX: one whole 16 x 32 tile and 16-pair block, one more
                                     * row, column and pair, whole blocks only (K 1024: two
                                     * depth blocks of 256 pairs) */
                                    {16, 32, 32},  {17, 33, 34}, {33, 64, 1024}};
    static const float ab[][2] = {{1.0f, 0.0f}, {0.5f, 1.0f}, {-1.5f, 0.25f}};
    const int ns = (int)(sizeof shapes / sizeof shapes[0]), nab = (int)(sizeof ab / sizeof ab[0]);
    int ok = 1, cases = 0;
    double worst = 0.0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int s = 0; s < ns; s++)
                for (int a = 0; a < nab; a++) {
                    const int bias = (s + a) % 2;
                    ok &= one_case(&rng, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2],
                                   ab[a][0], ab[a][1], bias, &worst);
                    cases++;
                }
    char what[200];
    snprintf(what, sizeof what,
             "%d products (4 transpose combinations, odd shapes, K = 1, alpha/beta, bias) against "
             "the reference from bf16-rounded inputs (largest error %.2e of sum|ab|) and within "
             "bf16 rounding of fp32",
             cases, worst);
    expect(ok, what);
}

/* The same random product (M x K by, transposed, N x K; uniform in [-1, 1], seeded) through
 * kernels k1 and k2, into C1 and C2 (M x N). */
static void product_pair(int k1, int k2, int M, int N, int K, uint64_t seed, float *C1, float *C2) {
    cf_rng rng;
    cf_rng_seed(&rng, seed);
    float *A = cft_floats((size_t)M * K), *B = cft_floats((size_t)K * N);
    cft_rand(&rng, A, (size_t)M * K, 1.0f);
    cft_rand(&rng, B, (size_t)K * N, 1.0f);
    CFT_OK(cf_cpu_sgemm(k1, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C1, N));
    CFT_OK(cf_cpu_sgemm(k2, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C2, N));
    free(A);
    free(B);
}

/* The bf16 result differs from fp32's by bf16's rounding, not by less: the inputs are rounded. */
static void rounding_visible(void) {
    const int M = 64, N = 64, K = 128;
    float *C = cft_floats((size_t)M * N), *C32 = cft_floats((size_t)M * N);
    product_pair(g_kernel, 0, M, N, K, 7, C, C32);
    double num = 0.0, den = 0.0;
    for (int i = 0; i < M * N; i++) {
        num += (C[i] - C32[i]) * (double)(C[i] - C32[i]);
        den += (double)C32[i] * C32[i];
    }
    const double rel = sqrt(num / den);
    char what[160];
    snprintf(what, sizeof what,
             "64x64x128 against fp32: relative RMS difference %.2e (bf16 rounding: expected in "
             "[3e-4, 1e-2])",
             rel);
    expect(rel > 3e-4 && rel < 1e-2, what);
    free(C), free(C32);
}

/* Through the backend's ops with cf_backend_options.bf16: the same bits as the direct call, for
 * any thread count, gemv-sized products included. */
static void through_backend(void) {
    cf_backend_options o = cf_backend_options_default();
    o.bf16 = 1;
    cf_backend *be = NULL;
    CFT_OK(cf_backend_cpu_create("cpu", &o, &be));
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
        CFT_OK(cf_cpu_sgemm_bias(CF_CPU_GEMM_BF16, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, want, N,
                                 bias));
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
                printf("  gemm_bias %dx%dx%d differs from the direct bf16 call\n", M, N, K);
                ok = 0;
            }
#ifdef _OPENMP
        }
        omp_set_num_threads(saved);
#endif
        /* plain gemm: the direct call without bias */
        CFT_OK(cf_cpu_sgemm(CF_CPU_GEMM_BF16, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, want, N));
        CFT_OK(cf_be_gemm(be, 0, 1, M, N, K, 1.0f, cft_v(bA), K, cft_v(bB), K, 0.0f, cft_v(bC),
                          N));
        cft_get(be, got, bC, (size_t)M * N);
        if (memcmp(got, want, sizeof(float) * (size_t)M * N)) {
            printf("  gemm %dx%dx%d differs from the direct bf16 call\n", M, N, K);
            ok = 0;
        }
        cf_be_free(be, bA), cf_be_free(be, bB), cf_be_free(be, bC), cf_be_free(be, bb);
        free(A), free(B), free(bias), free(want), free(got);
    }
    cf_backend_destroy(be);
    expect(ok, "backend gemm / gemm_bias with options.bf16 (3 rows too) equal the bf16 GEMM bit for "
               "bit, on 1 and 2 threads");
}

/* --bench: GFLOP/s of the fp32 GEMM ("native" kernel for this CPU) and the bf16 GEMM at shapes
 * of wiki_cache_optimized's training step, on one thread, in that thread's CPU time (other
 * processes on a shared machine take the core away but barely change the cycles a product
 * needs), best of `rounds`. */
static double thread_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int bench(int rounds) {
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    static const struct {
        const char *name;
        int ta, tb, M, N, K;
    } sh[] = {{"qkv.fwd", 0, 1, 4096, 1152, 384},   {"qkv.dinp", 0, 0, 4096, 384, 1152},
              {"attn_proj.fwd", 0, 1, 4096, 384, 384}, {"fc.fwd", 0, 1, 4096, 1536, 384},
              {"fc.dinp", 0, 0, 4096, 384, 1536},  {"fc.dw", 1, 0, 1536, 384, 4096},
              {"head.fwd", 0, 1, 1024, 16000, 384}, {"head.dw", 1, 0, 16000, 384, 1024},
              {"square 1024", 0, 0, 1024, 1024, 1024}};
    const int kfp32 = cf_cpu_gemm_native_kernel(NULL);
    printf("one thread, thread CPU time, best of %d; fp32 kernel %s (%s)\n", rounds,
           cf_cpu_gemm_kernel_name(kfp32), cf_cpu_gemm_native_reason());
    const int amx = cf_cpu_gemm_amx_available();
    printf("%-14s %2s %2s %6s %6s %6s %10s %10s %10s %6s\n", "shape", "tA", "tB", "M", "N", "K",
           "fp32 GF/s", "bf16 GF/s", "AMX GF/s", "best/fp32");
    cf_rng rng;
    cf_rng_seed(&rng, 1);
    for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
        const int M = sh[s].M, N = sh[s].N, K = sh[s].K, ta = sh[s].ta, tb = sh[s].tb;
        float *A = cft_floats((size_t)M * K), *B = cft_floats((size_t)K * N);
        float *C = cft_floats((size_t)M * N);
        cft_rand(&rng, A, (size_t)M * K, 1.0f);
        cft_rand(&rng, B, (size_t)K * N, 1.0f);
        double best[3] = {1e30, 1e30, 1e30};
        static const int kv[3] = {0, CF_CPU_GEMM_BF16_AVX512, CF_CPU_GEMM_BF16_AMX};
        for (int r = 0; r < rounds; r++)
            for (int v = 0; v < (amx ? 3 : 2); v++) {
                const double t0 = thread_seconds();
                CFT_OK(cf_cpu_sgemm(v ? kv[v] : kfp32, ta, tb, M, N, K, 1.0f, A, ta ? M : K, B,
                                    tb ? K : N, 0.0f, C, N));
                const double t = thread_seconds() - t0;
                if (t < best[v]) best[v] = t;
            }
        const double fl = 2.0 * M * N * (double)K / 1e9;
        const double fast = best[1] < best[2] ? best[1] : best[2];
        printf("%-14s %2d %2d %6d %6d %6d %10.1f %10.1f %10.1f %6.2f\n", sh[s].name, ta, tb, M, N,
               K, fl / best[0], fl / best[1], amx ? fl / best[2] : 0.0, best[0] / fast);
        free(A), free(B), free(C);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (!cf_cpu_gemm_bf16_available()) {
        printf("SKIP test_cpu_gemm_bf16: this CPU has no AVX512-BF16 (cpuid leaf 7 subleaf 1 EAX "
               "bit 5)\n");
        return 77;
    }
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) return bench(argc > 2 ? atoi(argv[2]) : 3);
    const int kernels[2] = {CF_CPU_GEMM_BF16_AVX512, CF_CPU_GEMM_BF16_AMX};
    for (int k = 0; k < (cf_cpu_gemm_amx_available() ? 2 : 1); k++) {
        g_kernel = kernels[k];
        printf("kernel: %s\n", k ? "AMX (TDPBF16PS)" : "AVX512-BF16 (vdpbf16ps)");
        rounding();
        against_reference();
        rounding_visible();
    }
    if (cf_cpu_gemm_amx_available()) {
        /* the AMX index really runs another kernel: the same rounded products summed in another
         * order differ somewhere in a deep product (and agree to fp32 accumulation) */
        const int M = 64, N = 64, K = 1024;
        float *C1 = cft_floats((size_t)M * N), *C2 = cft_floats((size_t)M * N);
        product_pair(CF_CPU_GEMM_BF16_AVX512, CF_CPU_GEMM_BF16_AMX, M, N, K, 21, C1, C2);
        int differ = 0;
        double worst = 0.0;
        for (int i = 0; i < M * N; i++) {
            differ += memcmp(&C1[i], &C2[i], sizeof(float)) != 0;
            const double d = fabs((double)C1[i] - C2[i]);
            if (d > worst) worst = d;
        }
        char what[160];
        snprintf(what, sizeof what,
                 "AMX and AVX512-BF16 kernels: %d of %d results differ in some bit, by at most "
                 "%.2e (another summation order)",
                 differ, M * N, worst);
        expect(differ > 0 && worst < 1e-3, what);
        free(C1), free(C2);
    } else {
        printf("(no AMX here: its kernel is not tested)\n");
    }
    through_backend();
    printf("%s test_cpu_gemm_bf16\n", g_fail ? "FAIL" : "PASS");
    return g_fail;
}
