/* clformer test: the register-blocked GEMM (cl_kernels/gemm_fast.cl, cl_gemm_fast.c) against the
 * CPU backend: every kernel variant (work-groups of 16x16: blocks 128x128, 128x64, 64x128, 64x64;
 * of 8x8: blocks 64x64 and 64x32; K slices of 8 and 16),
 * with float4 accesses (offsets and leading dimensions multiples of 4) and element accesses, all
 * four transpose combinations, shapes with partial blocks and K not a multiple of the slice, views
 * at offsets between guard elements, alpha/beta (beta = 0 must not read C: C starts as NaN),
 * split-K (results reproducible bit for bit), K = 0; the block/split rule; the dispatch hook
 * (CF_GEMM_FAST, the clblast mode), the linear layer through it, and a failed build falling back
 * to the other paths with one warning.
 *   test_cl_gemm_fast [--small | --planted] [--variant I] [--device SPEC]
 *   test_cl_gemm_fast --bench [--min-time S] [--device SPEC]
 * --tf32 (with either): the tensor-core form (precision tf32) on a device that has it (NVIDIA
 * compute capability 8.0+; exit 77 elsewhere): every variant, corner and split against the CPU
 * with TF32's tolerance, and a check that the inputs really are rounded to TF32.
 * --prec bf16|fp16 (with --small or alone): the bf16 / fp16 form (precision bf16, fp16): on NVIDIA
 * compute capability 8.0+ the tensor-core form, elsewhere the fp32 form with the inputs rounded
 * as they are staged. The test data is drawn on the format's grid, so every variant, corner and
 * split must meet the CPU's fp32 product to fp32's tolerance (any lost or misplaced fragment
 * value shows), and a product of unrounded data must equal the CPU's fp32 product of the same
 * data rounded to the format on the host (round to nearest even; fp16: overflow to Inf and the
 * subnormals), which fp32 and a rounding by truncation do not.
 * --small: two products per variant (for oclgrind, tests/cli_oclgrind_gemm_fast.sh).
 * --planted: one 16x16x8 product (the planted-bug check of that script).
 * --variant I: only the I-th variant (0 = 128x128/8, 1 = 128x128/16, 2 = 128x64/16, 3 = 64x128/16,
 * 4 = 64x64/16; groups of 8x8: 5 = 64x64/8, 6 = 64x64/16, 7 = 64x32/8; 16 outputs per work-item
 * along one side, the fp32 form only: 8 = 256x128/8, 9 = 128x256/8, groups of 8x8: 10 = 128x64/16,
 * 11 = 64x128/8; 32-deep slices, the bf16 / fp16 tensor-core form only (packed tiles): 12 =
 * 64x64/32 of 8x8 groups, 13 = 128x128/32) in the variant tests and in --bench's per-variant
 * columns; every other form must refuse 12 and 13.
 * --bench: TFLOP/s of every GEMM of a training step of the d_model 384 / d_ff 1536 / vocab 16000
 * model at 4096 rows (--shapes 124m: GPT-2 124M's, 8192 rows, the head in chunks of 1280 rows;
 * and 4096^3) on the device: the tiled kernel (CF_GEMM_FAST=0, native), CLBlast, what the
 * dispatch does by default, the rule's fast choice, every fast variant and split ("all"), and each
 * variant at its best split ("by variant"); no checks. */
#include "test_cl_common.h"

#include <strings.h>

#include "backend/opencl/cl_gemm_fast.h"
#include "backend/opencl/cl_matrix.h"

static int small_mode = 0;
static int only_variant = -1; /* --variant I: variants[I] only */
static int planted_mode = 0;  /* --planted: one 16x16x8 product (cli_oclgrind_gemm_fast.sh) */
/* --tf32: the tensor-core form (precision tf32); products then differ from the CPU's fp32 by the
 * rounding of their inputs to TF32 (10-bit mantissa): errors ~1e-3 relative, which a wrong
 * fragment layout or a lost K slice exceeds by orders of magnitude */
static double tol_scale = 1.0;

/* --prec: values that land on rounding ties, the tie's both neighbours, and (fp16) values beyond
 * 65504, below 2^-14 and between subnormal steps, each alone in its product: row i < ns of A holds
 * special[i] at k = i and zeros elsewhere, column i < ns of B a 1 at k = i and zeros elsewhere, so
 * C[i][i] = r(special[i]) exactly; rows ns + i of A hold a 1 at k = i and columns ns + i of B
 * special[i] at k = i, so C[ns+i][ns+i] = r(special[i]) from B's side. The rest is random data off
 * the format's grid (its rounding shows in every other element). */
static void round_exact(void) {
    const int mode = tcl_round;
    const char *name = mode == 1 ? "bf16" : "fp16";
    const float ulp = mode == 1 ? 1.0f / 128.0f : 1.0f / 1024.0f; /* of values in [1, 2) */
    const float special[] = {1.0f + ulp * 0.5f,  1.0f + ulp * 1.5f,  1.0f + ulp * 0.5f + 1e-7f,
                             -1.0f - ulp * 2.5f, 3.0f + ulp * 0.49f, 1.0f + ulp * 0.75f,
                             mode == 2 ? 65519.0f : 3.0e38f, mode == 2 ? 70000.0f : -3.4e38f,
                             mode == 2 ? 65520.0f : 3.3961e38f, mode == 2 ? 3.0e-6f : 1.0e-30f,
                             mode == 2 ? 1.5e-7f : 2.5e-38f, mode == 2 ? 8.9e-8f : -257.0f,
                             mode == 2 ? 2.9802322e-8f : 1.0e-3f, mode == 2 ? -4.5e-8f : 5.0e-1f};
    const int ns = (int)(sizeof special / sizeof special[0]);
    const int M = 2 * ns + 12, N = 2 * ns + 8, K = 48;
    float *a = tcl_malloc((size_t)M * K * 4), *b = tcl_malloc((size_t)K * N * 4);
    cf_rng r;
    cf_rng_seed(&r, 99);
    for (int i = 0; i < M * K; i++) a[i] = 2.0f * cf_rng_uniform(&r) - 1.0f;
    for (int i = 0; i < K * N; i++) b[i] = 2.0f * cf_rng_uniform(&r) - 1.0f;
    for (int i = 0; i < ns; i++)
        for (int k = 0; k < K; k++) {
            a[(size_t)i * K + k] = k == i ? special[i] : 0.0f;
            a[(size_t)(ns + i) * K + k] = k == i ? 1.0f : 0.0f;
            b[(size_t)k * N + i] = k == i ? 1.0f : 0.0f;
            b[(size_t)k * N + ns + i] = k == i ? special[i] : 0.0f;
        }
    pair A = pair_new((size_t)M * K, a, 0.0f), B = pair_new((size_t)K * N, b, 0.0f);
    /* the CPU's operands: rounded on the host */
    for (int i = 0; i < M * K; i++) a[i] = tcl_round_value(mode, a[i]);
    for (int i = 0; i < K * N; i++) b[i] = tcl_round_value(mode, b[i]);
    pair Ar = pair_new((size_t)M * K, a, 0.0f), Br = pair_new((size_t)K * N, b, 0.0f);
    pair C = pair_const((size_t)M * N, NAN);
    TCL_OK(cf_backend_opencl_gemm_fast(GPU, NULL, 0, 0, M, N, K, 1.0f, cf_view_f32(A.g, PAD), K,
                                       cf_view_f32(B.g, PAD), N, 0.0f, cf_view_f32(C.g, PAD), N));
    TCL_OK(cf_be_gemm(CPU, 0, 0, M, N, K, 1.0f, cf_view_f32(Ar.c, PAD), K, cf_view_f32(Br.c, PAD),
                      N, 0.0f, cf_view_f32(C.c, PAD), N));
    float *g = tcl_malloc((size_t)M * N * 4), *c = tcl_malloc((size_t)M * N * 4);
    TCL_OK(cf_be_download(GPU, g, cf_view_f32(C.g, PAD), (size_t)M * N * 4));
    TCL_OK(cf_be_download(CPU, c, cf_view_f32(C.c, PAD), (size_t)M * N * 4));
    /* element by element: the same infinities and NaNs, finite values within fp32 summation's
     * reach of the rounded-input product (the special values' elements are one exact product:
     * any difference there is a rounding that differs from the host's) */
    int bad = 0;
    double worst = 0.0;
    for (int i = 0; i < M * N; i++) {
        const int fg = isfinite(g[i]), fc = isfinite(c[i]);
        if (fg != fc || (!fg && !(isnan(g[i]) && isnan(c[i])) && g[i] != c[i])) {
            if (bad++ < 3)
                printf("  %s element (%d, %d): device %g, host-rounded fp32 %g\n", name, i / N,
                       i % N, g[i], c[i]);
            continue;
        }
        if (!fg) continue;
        /* the sum of |terms| of the element bounds fp32's summation error */
        double sa = 0.0;
        for (int k = 0; k < K; k++) sa += fabs((double)a[(i / N) * K + k] * b[k * N + i % N]);
        const double e = fabs((double)g[i] - c[i]) / (sa + 1e-30);
        if (e > worst) worst = e;
        if (e > 2e-5 && bad++ < 3)
            printf("  %s element (%d, %d): device %.9g, host-rounded fp32 %.9g\n", name, i / N,
                   i % N, g[i], c[i]);
    }
    expect(bad == 0, "%s %dx%dx%d with ties, overflow and subnormals: the device's product equals "
                     "the fp32 product of host-rounded inputs (%d elements differ; worst %.2e of "
                     "the sum of |terms|)",
           name, M, N, K, bad, worst);
    free(a);
    free(b);
    free(g);
    free(c);
    pair_free(A), pair_free(B), pair_free(Ar), pair_free(Br), pair_free(C);
}

/* --prec: the sums of op(A) fused into the weight-gradient product (EPI_COLSUM, a linear layer's
 * bias gradient) add the values as they are, not rounded to the product's input format: against
 * double sums of data off the format's grid, within fp32's summation error (a rounded sum is off
 * by ~1e-4 of the sum of |values| at K = 16). */
static void colsum_unrounded(void) {
    const cf_cl_gemm_fast_choice c = {8, 8, 8, 1, 16};
    const int M = 70, N = 36, K = 16;
    float *a = tcl_malloc((size_t)K * M * 4), *b = tcl_malloc((size_t)K * N * 4);
    cf_rng r;
    cf_rng_seed(&r, 7);
    for (int i = 0; i < K * M; i++) a[i] = 2.0f * cf_rng_uniform(&r) - 1.0f;
    for (int i = 0; i < K * N; i++) b[i] = 2.0f * cf_rng_uniform(&r) - 1.0f;
    pair A = pair_new((size_t)K * M, a, 0.0f), B = pair_new((size_t)K * N, b, 0.0f);
    pair C = pair_const((size_t)M * N, 0.0f), CS = pair_const((size_t)M, 0.0f);
    TCL_OK(cf_backend_opencl_gemm_fast_colsum(GPU, &c, 0, M, N, K, 1.0f, cf_view_f32(A.g, PAD), M,
                                              cf_view_f32(B.g, PAD), N, 0.0f,
                                              cf_view_f32(C.g, PAD), N, cf_view_f32(CS.g, PAD)));
    float *cs = tcl_malloc((size_t)M * 4);
    TCL_OK(cf_be_download(GPU, cs, cf_view_f32(CS.g, PAD), (size_t)M * 4));
    double worst = 0.0;
    for (int m = 0; m < M; m++) {
        double sum = 0.0, sa = 0.0;
        for (int k = 0; k < K; k++) sum += a[(size_t)k * M + m], sa += fabs(a[(size_t)k * M + m]);
        worst = fmax(worst, fabs(cs[m] - sum) / sa);
    }
    expect(worst < 1e-5, "%s: the fused sums of op(A) add unrounded values (worst %.2e of the sum "
                         "of |values|, tol 1e-5)",
           tcl_round == 1 ? "bf16" : "fp16", worst);
    free(a);
    free(b);
    free(cs);
    pair_free(A), pair_free(B), pair_free(C), pair_free(CS);
}

static const cf_cl_gemm_fast_choice variants[] = {
    {8, 8, 8, 1, 16}, {8, 8, 16, 1, 16}, {8, 4, 16, 1, 16}, {4, 8, 16, 1, 16},
    {4, 4, 16, 1, 16}, {8, 8, 8, 1, 8},   {8, 8, 16, 1, 8},  {8, 4, 8, 1, 8},
    /* 16 outputs per work-item along one side (the fp32 form only): 256x128 and 128x256 blocks
     * (K slices of 8: local memory), 128x64/16 and 64x128/8 of 8x8 groups */
    {16, 8, 8, 1, 16}, {8, 16, 8, 1, 16}, {16, 8, 16, 1, 8}, {8, 16, 8, 1, 8},
    /* 32-deep slices (the bf16 / fp16 tensor-core form only, its tiles packed): 64x64 of 8x8
     * groups (the rule's choice for large NT products there) and 128x128 */
    {8, 8, 32, 1, 8}, {8, 8, 32, 1, 16}};
#define N_VARIANTS (int)(sizeof variants / sizeof variants[0])

/* the kernel's form on this backend: gemm_fast.cl's MMA_KIND (tensor cores), 0 = fp32 */
static int form_mma(void) {
    return cf_cl_gemm_fast_form((const cf_cl_ctx *)GPU->ctx);
}


/* ld for a row of `cols`: a multiple of 4 (float4 path) or not */
static int pick_ld(int cols, int aligned, int extra) {
    if (aligned) return (cols + 3) / 4 * 4 + 4 * extra;
    int ld = cols + 1 + extra;
    return ld % 4 == 0 ? ld + 1 : ld;
}

/* One product with the fast kernel (choice c, NULL = rule) on the OpenCL side, cf_be_gemm on the
 * CPU side. aligned: offsets (PAD + 3 = 8) and leading dimensions multiples of 4. */
static void fast_case_bias(const cf_cl_gemm_fast_choice *c, int ta, int tb, int M, int N, int K,
                           float alpha, float beta, int aligned, int with_bias) {
    const size_t lead = aligned ? 3 : 1;
    const int lda = pick_ld(ta ? M : K, aligned, 1), ldb = pick_ld(tb ? K : N, aligned, 0);
    const int ldc = pick_ld(N, aligned, 1);
    operand A = operand_new(ta ? K : M, lda, lead, 0), B = operand_new(tb ? N : K, ldb, lead, 0);
    operand C = operand_new(M, ldc, lead, beta == 0.0f);
    operand bias = operand_new(1, N, lead, 0);
    for (int g_ = 0; g_ < 2; g_++) {
        if (g_)
            TCL_OK(cf_backend_opencl_gemm_fast_bias(GPU, c, ta, tb, M, N, K, alpha, OV(A), lda,
                                                    OV(B), ldb, beta, OV(C), ldc,
                                                    with_bias ? OV(bias) : (cf_view){0}));
        else if (with_bias)
            TCL_OK(CPU->ops->gemm_bias(CPU, ta, tb, M, N, K, alpha, OV(A), lda, OV(B), ldb, beta,
                                       OV(C), ldc, OV(bias)));
        else
            TCL_OK(cf_be_gemm(CPU, ta, tb, M, N, K, alpha, OV(A), lda, OV(B), ldb, beta, OV(C),
                              ldc));
    }
    char what[160], cs[48] = "rule";
    if (c)
        snprintf(cs, sizeof cs, "%dx%d bk %d wg %d split %d", c->wg * c->rm, c->wg * c->rn, c->bk,
                 c->wg, c->split);
    snprintf(what, sizeof what, "fast %s %c%c M=%d N=%d K=%d a=%.1f b=%.1f %s%s", cs,
             ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, beta, aligned ? "float4" : "scalar",
             with_bias ? " +bias" : "");
    check(what, C.p, tol_scale * 2e-6 * (K > 16 ? sqrt((double)K) : 4.0));
    pair_free(A.p);
    pair_free(B.p);
    pair_free(C.p);
    pair_free(bias.p);
}

/* The sums of op(A) (EPI_COLSUM, transposed A): C = alpha A^T op(B) + beta C and
 * colsum(M) += sum over k of A^T(m, k), against the CPU's gemm and, for the sums, the product
 * ones(1,K) A(K,M) accumulated into a copy of colsum's start values. */
static void colsum_case(const cf_cl_gemm_fast_choice *c, int tb, int M, int N, int K, float alpha,
                        float beta, int aligned) {
    const size_t lead = aligned ? 3 : 1;
    const int lda = pick_ld(M, aligned, 1), ldb = pick_ld(tb ? K : N, aligned, 0);
    const int ldc = pick_ld(N, aligned, 1);
    operand A = operand_new(K, lda, lead, 0), B = operand_new(tb ? N : K, ldb, lead, 0);
    operand C = operand_new(M, ldc, lead, beta == 0.0f);
    operand cs = operand_new(1, M, lead, 0);
    pair ones = pair_const(K > 0 ? (size_t)K : 1, 1.0f);
    for (int g_ = 0; g_ < 2; g_++) {
        if (g_) {
            TCL_OK(cf_backend_opencl_gemm_fast_colsum(GPU, c, tb, M, N, K, alpha, OV(A), lda, OV(B),
                                                      ldb, beta, OV(C), ldc, OV(cs)));
        } else {
            TCL_OK(cf_be_gemm(CPU, 1, tb, M, N, K, alpha, OV(A), lda, OV(B), ldb, beta, OV(C),
                              ldc));
            TCL_OK(cf_be_gemm(CPU, 0, 0, 1, M, K, 1.0f, cf_view_f32(ones.c, PAD), K, OV(A), lda,
                              1.0f, OV(cs), M));
        }
    }
    char what[160];
    snprintf(what, sizeof what, "fast %dx%d bk %d wg %d split %d T%c M=%d N=%d K=%d a=%.1f b=%.1f %s",
             c->wg * c->rm, c->wg * c->rn, c->bk, c->wg, c->split, tb ? 'T' : 'N', M, N, K, alpha,
             beta, aligned ? "float4" : "scalar");
    check(what, C.p, tol_scale * 2e-6 * (K > 16 ? sqrt((double)K) : 4.0));
    char what2[200];
    snprintf(what2, sizeof what2, "%s: sums of op(A)", what);
    check(what2, cs.p, tol_scale * 2e-6 * (K > 16 ? sqrt((double)K) : 4.0));
    pair_free(A.p);
    pair_free(B.p);
    pair_free(C.p);
    pair_free(cs.p);
    pair_free(ones);
}

/* The GELU epilogues (ldc == N, alpha 1, beta 0): act 1 stores C = product + bias and
 * X = gelu(C); act 2 stores C = product * gelu'(X). The CPU side runs the product, then the CPU
 * backend's GELU op. aligned: N and the offsets multiples of 4 (float4 stores). */
static void gelu_case(const cf_cl_gemm_fast_choice *c, int ta, int tb, int M, int N, int K,
                      int act) {
    const int aligned = N % 4 == 0;
    const size_t lead = aligned ? 3 : 1;
    const int lda = pick_ld(ta ? M : K, 1, 0), ldb = pick_ld(tb ? K : N, 1, 0);
    operand A = operand_new(ta ? K : M, lda, lead, 0), B = operand_new(tb ? N : K, ldb, lead, 0);
    operand C = operand_new(M, N, lead, 1), X = operand_new(M, N, lead, act == 1);
    operand bias = operand_new(1, N, lead, 0);
    for (int g_ = 0; g_ < 2; g_++) {
        if (g_) {
            TCL_OK(cf_backend_opencl_gemm_fast_gelu(GPU, c, ta, tb, M, N, K, OV(A), lda, OV(B),
                                                    ldb, OV(C), act == 1 ? OV(bias) : (cf_view){0},
                                                    OV(X), act));
        } else if (act == 1) {
            TCL_OK(CPU->ops->gemm_bias(CPU, ta, tb, M, N, K, 1.0f, OV(A), lda, OV(B), ldb, 0.0f,
                                       OV(C), N, OV(bias)));
            TCL_OK(cf_be_gelu_forward(CPU, OV(X), OV(C), (size_t)M * N));
        } else {
            TCL_OK(cf_be_gemm(CPU, ta, tb, M, N, K, 1.0f, OV(A), lda, OV(B), ldb, 0.0f, OV(C), N));
            TCL_OK(cf_be_gelu_backward(CPU, OV(C), OV(X), OV(C), (size_t)M * N));
        }
    }
    char what[160], cs[48];
    snprintf(cs, sizeof cs, "%dx%d bk %d wg %d split %d", c->wg * c->rm, c->wg * c->rn, c->bk,
             c->wg, c->split);
    snprintf(what, sizeof what, "fast %s %c%c M=%d N=%d K=%d GELU %s, C %s", cs, ta ? 'T' : 'N',
             tb ? 'T' : 'N', M, N, K, act == 1 ? "forward" : "backward",
             aligned ? "float4" : "scalar");
    check(what, C.p, tol_scale * 2e-6 * (K > 16 ? sqrt((double)K) : 4.0));
    if (act == 1) {
        snprintf(what, sizeof what, "fast %s M=%d N=%d K=%d GELU forward, X = gelu(C)", cs, M, N, K);
        check(what, X.p, tol_scale * 2e-6 * (K > 16 ? sqrt((double)K) : 4.0));
    }
    pair_free(A.p);
    pair_free(B.p);
    pair_free(C.p);
    pair_free(X.p);
    pair_free(bias.p);
}

static void fast_case(const cf_cl_gemm_fast_choice *c, int ta, int tb, int M, int N, int K,
                      float alpha, float beta, int aligned) {
    fast_case_bias(c, ta, tb, M, N, K, alpha, beta, aligned, 0);
}

/* On CPU devices (PoCL in CI) each variant costs 5 to 11 s of compiling on two cores, so there the
 * test takes three that together cover both access modes, one and two float4s staged per operand
 * and work-item, and one and two float4s read per K step (128x128/8 with float4 accesses, 128x64/16
 * and 64x64/16 with element accesses), plus 256x128/8 and 128x256/8 (four float4s read per K step
 * along one side) with both; GPUs, or CF_TEST_GEMM_FAST_ALL=1, test all of them with both access
 * modes. */
static int all_variants(void) {
    const char *e = getenv("CF_TEST_GEMM_FAST_ALL");
    if (e && atoi(e) == 1) return 1;
    return (((cf_cl_ctx *)GPU->ctx)->dev.type & CL_DEVICE_TYPE_GPU) != 0;
}

static void test_variants(void) {
    const int all = all_variants();
    /* -1: not on CPU devices; 0 / 1: element / float4 accesses there; 2: both */
    static const int subset_vec[N_VARIANTS] = {1, -1, 0, -1, 0, 0, -1, -1, 2, 2, -1, -1, 0, -1};
    if (!all)
        printf("CPU device: variants 128x128/8, 128x64/16, 64x64/16, 64x64/8 (8x8), 256x128/8, "
               "128x256/8 only\n");
    const cf_cl_device_info *dev = &((cf_cl_ctx *)GPU->ctx)->dev;
    for (int v = 0; v < N_VARIANTS; v++) {
        if ((!all && subset_vec[v] < 0) || (only_variant >= 0 && v != only_variant)) continue;
        if (!cf_cl_gemm_fast_choice_valid_form(&variants[v], form_mma())) {
            /* the tensor-core forms refuse 16 outputs per work-item, and every form but bf16 /
             * fp16 on tensor cores 32-deep slices, before building anything */
            pair a = pair_rand(64, 1.0f);
            const int rc = cf_backend_opencl_gemm_fast(
                GPU, &variants[v], 0, 0, 4, 4, 4, 1.0f, cf_view_f32(a.g, PAD), 4,
                cf_view_f32(a.g, PAD), 4, 0.0f, cf_view_f32(a.g, PAD + 16), 4);
            expect(rc == CF_ERR_INVALID,
                   "this form of the kernel refuses %dx%d bk %d wg %d (rm %d, rn %d): %d",
                   variants[v].wg * variants[v].rm, variants[v].wg * variants[v].rn,
                   variants[v].bk, variants[v].wg, variants[v].rm, variants[v].rn, rc);
            pair_free(a);
            continue;
        }
        if (cf_cl_gemm_fast_local_bytes(&variants[v]) > dev->local_mem) {
            printf("skip %dx%d bk %d: needs %zu bytes of local memory, %s has %llu\n",
                   variants[v].wg * variants[v].rm, variants[v].wg * variants[v].rn, variants[v].bk,
                   cf_cl_gemm_fast_local_bytes(&variants[v]), dev->name,
                   (unsigned long long)dev->local_mem);
            continue;
        }
        /* aligned operands take the float4 variant, unaligned the element one */
        const int both = all || subset_vec[v] == 2;
        const int vec_a = both ? 1 : subset_vec[v], vec_b = both ? 0 : subset_vec[v];
        cf_cl_gemm_fast_choice c = variants[v], c3 = variants[v];
        c3.split = 3;
        /* whole blocks next to partial ones: at least 144 x 136 (128x128 blocks), more for the
         * 256-wide blocks; the same under split-K */
        const int bm = c.wg * c.rm, bn = c.wg * c.rn;
        const int wm = bm + 16 > 144 ? bm + 16 : 144, wn = bn + 8 > 136 ? bn + 8 : 136;
        const int sm = bm + 8 > 136 ? bm + 8 : 136, sn = bn + 4 > 132 ? bn + 4 : 132;
        for (int t = 0; t < 4; t++) {
            const int ta = t >> 1, tb = t & 1;
            if (small_mode) {
                /* oclgrind takes seconds per product: two per variant, (transpose combination,
                 * float4) pairs such that every combination runs with both access modes also
                 * without 128x128/16 (too much local memory for oclgrind's 32 KiB) */
                static const int plan[N_VARIANTS][2][2] = {
                    {{0, 0}, {3, 1}},   {{1, 0}, {2, 1}},   {{2, 0}, {1, 1}},   {{1, 0}, {2, 1}},
                    {{3, 0}, {0, 1}},   {{0, 1}, {3, 0}},   {{-1, 0}, {-1, 0}}, {{2, 1}, {1, 0}},
                    {{1, 1}, {2, 0}},   {{-1, 0}, {-1, 0}}, {{-1, 0}, {-1, 0}}, {{-1, 0}, {-1, 0}},
                    {{2, 1}, {1, 0}},   {{0, 0}, {3, 1}}};
                /* 256x128: one whole block (float4 loads and stores) beside partial ones */
                const int m1 = bm > 128 ? 264 : 70, n1 = bm > 128 ? 132 : 37;
                if (t == plan[v][0][0])
                    fast_case(&c, ta, tb, m1, n1, 21, 1.0f, 0.0f, plan[v][0][1]);
                if (t == plan[v][1][0])
                    fast_case(&c3, ta, tb, 130, 68, 40, 0.7f, 0.5f, plan[v][1][1]);
                /* the fused bias: in the float4 store, and in the split-K second pass */
                if (v == 0 && t == 1) fast_case_bias(&c, ta, tb, 70, 36, 21, 1.0f, 0.0f, 1, 1);
                if (v == 4 && t == 1) fast_case_bias(&c3, ta, tb, 70, 37, 40, 1.0f, 0.5f, 0, 1);
                /* the GELU epilogues: float4 store, and scalar in the split-K second pass */
                if (v == 0 && t == 1) gelu_case(&c, ta, tb, 70, 36, 21, 1);
                if (v == 4 && t == 0) gelu_case(&c3, ta, tb, 70, 37, 40, 2);
                /* the sums of op(A): in the kernel, and added up by the split-K second pass */
                if (v == 0 && t == 2) colsum_case(&c, tb, 70, 36, 21, 1.0f, 1.0f, 1);
                if (v == 5 && t == 3) colsum_case(&c3, tb, 70, 37, 40, 1.0f, 0.0f, 0);
                /* and with 256-row blocks (64 float4 columns of As: 4 work-items each) */
                if (v == 8 && t == 2) colsum_case(&c, tb, 264, 36, 21, 1.0f, 1.0f, 0);
                continue;
            }
            /* partial blocks everywhere, K not a multiple of the slice */
            fast_case(&c, ta, tb, 131, 67, 45, 1.0f, 0.0f, vec_b);
            fast_case(&c, ta, tb, 131, 67, 45, 0.7f, 0.5f, vec_a);
            /* whole blocks (float4 stores) next to partial ones, K a multiple of 16 */
            fast_case(&c, ta, tb, wm, wn, 48, 0.7f, 0.5f, vec_a);
            /* split-K: 3 slices, the last one short */
            fast_case(&c3, ta, tb, 131, 67, 100, 1.0f, 0.0f, vec_b);
            fast_case(&c3, ta, tb, sm, sn, 72, 0.5f, 1.0f, vec_a);
            /* the fused bias (the linear layer's forward is NT): in the store and, under
             * split-K, in the second pass; partial blocks */
            /* the GELU epilogues: forward on the NT product, backward on NN; in the store and
             * in the split-K second pass */
            if (!ta && tb) {
                gelu_case(&c, 0, 1, 131, 68, 45, 1);
                gelu_case(&c3, 0, 1, 131, 67, 100, 1);
            }
            if (!ta && !tb) {
                gelu_case(&c, 0, 0, 131, 67, 45, 2);
                gelu_case(&c3, 0, 0, wm, wn, 100, 2);
            }
            /* the sums of op(A) (the weight gradient's TN product gives the bias gradient) */
            if (ta) {
                colsum_case(&c, tb, 131, 67, 45, 1.0f, 1.0f, vec_b);
                colsum_case(&c, tb, wm, wn, 48, 0.7f, 0.0f, vec_a);
                colsum_case(&c3, tb, 131, 67, 100, 1.0f, 1.0f, vec_a);
            }
            if (tb) {
                fast_case_bias(&c, ta, tb, 131, 67, 45, 1.0f, 0.0f, vec_b, 1);
                fast_case_bias(&c, ta, tb, wm, wn, 48, 0.7f, 0.5f, vec_a, 1);
                fast_case_bias(&c3, ta, tb, 131, 67, 100, 1.0f, 0.0f, vec_a, 1);
            }
        }
    }
}

/* Corner shapes: 1x1, K = 0 (C = beta * C), K = 1, a split larger than K allows. */
static void test_corners(void) {
    const cf_cl_gemm_fast_choice big = {8, 8, 8, 1, 16}, many = {4, 4, 16, 64, 16};
    /* (128x128 with float4 accesses and 64x64 with element accesses: variants built already) */
    fast_case(&big, 0, 0, 1, 1, 1, 1.0f, 0.0f, 1);
    fast_case(&big, 1, 1, 1, 1, 7, 0.5f, 2.0f, 1);
    fast_case(&big, 0, 1, 20, 30, 0, 1.0f, 0.5f, 1);
    fast_case(&many, 1, 0, 20, 30, 0, 1.0f, 0.0f, 0);
    fast_case(&many, 1, 0, 33, 65, 50, 1.0f, 1.0f, 0); /* 64 slices asked, 4 of 16 possible */
    fast_case(NULL, 0, 1, 150, 90, 70, 1.0f, 0.0f, 0);
}

/* Two runs of a split product give identical bits (the second pass adds slices in order). */
static void test_deterministic(void) {
    const cf_cl_gemm_fast_choice c = {8, 8, 8, 5, 16};
    const int M = 140, N = 130, K = 300;
    pair A = pair_rand((size_t)K * M, 1.0f), B = pair_rand((size_t)K * N, 1.0f);
    pair C1 = pair_const((size_t)M * N, 0.0f), C2 = pair_const((size_t)M * N, 0.0f);
    TCL_OK(cf_backend_opencl_gemm_fast(GPU, &c, 1, 0, M, N, K, 1.0f, cf_view_f32(A.g, PAD), M,
                                       cf_view_f32(B.g, PAD), N, 0.0f, cf_view_f32(C1.g, PAD), N));
    TCL_OK(cf_backend_opencl_gemm_fast(GPU, &c, 1, 0, M, N, K, 1.0f, cf_view_f32(A.g, PAD), M,
                                       cf_view_f32(B.g, PAD), N, 0.0f, cf_view_f32(C2.g, PAD), N));
    float *h1 = tcl_malloc((size_t)M * N * 4), *h2 = tcl_malloc((size_t)M * N * 4);
    TCL_OK(cf_be_download(GPU, h1, cf_view_f32(C1.g, PAD), (size_t)M * N * 4));
    TCL_OK(cf_be_download(GPU, h2, cf_view_f32(C2.g, PAD), (size_t)M * N * 4));
    expect(memcmp(h1, h2, (size_t)M * N * 4) == 0,
           "split-K (5 slices) TN M=%d N=%d K=%d: two runs give identical bits", M, N, K);
    free(h1);
    free(h2);
    pair_free(A), pair_free(B), pair_free(C1), pair_free(C2);
}

/* The rule (a pure function of the shape and the number of compute units). */
static void test_rule(void) {
    cf_cl_gemm_fast_choice c;
    cf_cl_gemm_fast_rule(4096, 16000, 384, 132, 49152, 0, &c);
    expect(c.rm == 8 && c.rn == 8 && c.split == 1,
           "rule, 132 CUs, LM head forward 4096 x 16000 x 384: %dx%d split %d (want 128x128, no "
           "split)",
           c.wg * c.rm, c.wg * c.rn, c.split);
    cf_cl_gemm_fast_rule(384, 384, 4096, 132, 49152, 0, &c);
    expect(c.split > 1 && cf_cl_gemm_fast_choice_valid(&c),
           "rule, 132 CUs, weight gradient 384 x 384 x 4096: split %d (want > 1)", c.split);
    cf_cl_gemm_fast_rule(4096, 4096, 4096, 132, 49152, 0, &c);
    expect(c.rm == 8 && c.rn == 8 && c.split == 1, "rule, 132 CUs, 4096^3: %dx%d split %d",
           c.wg * c.rm, c.wg * c.rn, c.split);
    /* wide (the fp32 form on NVIDIA): 128 x 256 blocks where a product has many of them */
    cf_cl_gemm_fast_rule(4096, 4096, 4096, 132, 49152, 1, &c);
    expect(c.rm == 8 && c.rn == 16 && c.bk == 8 && c.split == 1 && cf_cl_gemm_fast_choice_valid(&c),
           "rule, wide, 132 CUs, 4096^3: %dx%d bk %d split %d (want 128x256 bk 8, no split)",
           c.wg * c.rm, c.wg * c.rn, c.bk, c.split);
    cf_cl_gemm_fast_rule(8192, 768, 768, 132, 49152, 1, &c);
    expect(c.rn <= 8, "rule, wide, 132 CUs, 8192 x 768 x 768 (few 256-wide blocks): %dx%d",
           c.wg * c.rm, c.wg * c.rn);
    int found = cf_cl_gemm_fast_rule(100, 100, 100, 1, 49152, 0, &c);
    expect(found && cf_cl_gemm_fast_choice_valid(&c) && c.split == 1,
           "rule, 1 CU, 100^3: a valid choice without split (%dx%d bk %d split %d)", c.wg * c.rm,
           c.wg * c.rn, c.bk, c.split);
    found = cf_cl_gemm_fast_rule(384, 384, 4096, 132, 17000, 0, &c);
    expect(found && cf_cl_gemm_fast_local_bytes(&c) <= 17000,
           "rule with 17000 bytes of local memory: %dx%d bk %d (%zu bytes)", c.wg * c.rm, c.wg * c.rn,
           c.bk, cf_cl_gemm_fast_local_bytes(&c));
    found = cf_cl_gemm_fast_rule(4096, 4096, 4096, 132, 16384, 0, &c);
    expect(!found, "rule with 16 KiB of local memory: no variant fits");
    const cf_cl_gemm_fast_choice bad[] = {
        {2, 8, 8, 1, 16},  {4, 4, 8, 1, 16},   {8, 8, 8, 0, 16}, {8, 8, 32, 1, 16},
        {8, 8, 8, 1, 12},  {16, 8, 16, 1, 16}, {8, 16, 16, 1, 16}, {16, 16, 8, 1, 8},
        {16, 4, 8, 1, 16}, {32, 4, 8, 1, 8}};
    const int n_bad = (int)(sizeof bad / sizeof bad[0]);
    int all_rejected = 1;
    for (int i = 0; i < n_bad; i++) all_rejected &= !cf_cl_gemm_fast_choice_valid(&bad[i]);
    expect(all_rejected,
           "invalid choices (rm 2, 4x4 with bk 8, split 0, bk 32, wg 12, 256x128 and 128x256 "
           "with bk 16 (over 48 KiB), 16x16 outputs, 16x4 with bk 8, rm 32) are rejected");
    /* 16 outputs per work-item: the fp32 form's, with bk 8 beside 256 (49 KiB with 16) */
    const cf_cl_gemm_fast_choice wide[] = {
        {16, 8, 8, 1, 16}, {8, 16, 8, 1, 16}, {4, 16, 16, 1, 16}, {16, 8, 16, 1, 8}};
    int wide_ok = 1;
    for (int i = 0; i < 4; i++)
        for (int mma = 0; mma <= 3; mma++)
            wide_ok &= cf_cl_gemm_fast_choice_valid_form(&wide[i], mma) == (mma == 0);
    const cf_cl_gemm_fast_choice c88 = {8, 8, 16, 1, 16};
    for (int mma = 0; mma <= 3; mma++) wide_ok &= cf_cl_gemm_fast_choice_valid_form(&c88, mma);
    expect(wide_ok && cf_cl_gemm_fast_local_bytes(&wide[0]) == 25088 &&
               cf_cl_gemm_fast_local_bytes(&bad[5]) == 50176,
           "16x8, 8x16 (bk 8), 4x16 (bk 16) and 8x8-group 16x8 (bk 16) are the fp32 form's only; "
           "8x8 is every form's; 256x128 takes %zu bytes of local memory with bk 8, %zu with 16",
           cf_cl_gemm_fast_local_bytes(&wide[0]), cf_cl_gemm_fast_local_bytes(&bad[5]));
    /* 32-deep slices: the bf16 / fp16 tensor-core form's only (its tiles packed: 16,896 bytes at
     * 64x64, 33,792 at 128x128, the kernel's arrays) */
    const cf_cl_gemm_fast_choice p64 = {8, 8, 32, 1, 8}, p128 = {8, 8, 32, 1, 16};
    int p_ok = 1;
    for (int mma = 0; mma <= 3; mma++)
        p_ok &= cf_cl_gemm_fast_choice_valid_form(&p64, mma) == (mma >= 2) &&
                cf_cl_gemm_fast_choice_valid_form(&p128, mma) == (mma >= 2);
    expect(p_ok && !cf_cl_gemm_fast_choice_valid(&p64) &&
               cf_cl_gemm_fast_local_bytes_mma(&p64, 2) == 16896 &&
               cf_cl_gemm_fast_local_bytes_mma(&p128, 2) == 33792,
           "bk 32: valid in the bf16 / fp16 tensor-core forms only; %zu and %zu bytes",
           cf_cl_gemm_fast_local_bytes_mma(&p64, 2), cf_cl_gemm_fast_local_bytes_mma(&p128, 2));
    /* the rule of the form: in bf16 / fp16 on tensor cores the 64x64 bk-32 blocks for NT products
     * and for NN products with few 128x128 blocks, K 256..8192, at least two 64x64 blocks a compute
     * unit; the cost model's choice everywhere else */
    struct {
        int M, N, K, ta, tb, mma, want;
        const char *what;
    } rf[] = {{8192, 3072, 768, 0, 1, 2, 1, "124M fc forward, bf16"},
              {4096, 384, 384, 0, 1, 3, 1, "d 384 attn_proj forward, fp16"},
              {4096, 384, 1152, 0, 0, 2, 1, "d 384 qkv input gradient (96 128x128 blocks)"},
              {8192, 768, 2304, 0, 0, 2, 0, "124M qkv input gradient (384 128x128 blocks)"},
              {2304, 768, 8192, 1, 0, 2, 0, "124M qkv weight gradient (TN)"},
              {1280, 768, 50304, 0, 0, 2, 0, "head input gradient, K 50304"},
              {8192, 3072, 768, 0, 1, 1, 0, "124M fc forward, tf32"},
              {8192, 3072, 768, 0, 1, 0, 0, "124M fc forward, fp32"},
              {8192, 3072, 128, 0, 1, 2, 0, "K 128"},
              {256, 256, 768, 0, 1, 2, 0, "16 64x64 blocks on 132 compute units"}};
    for (size_t i = 0; i < sizeof rf / sizeof rf[0]; i++) {
        cf_cl_gemm_fast_choice base, form;
        cf_cl_gemm_fast_rule(rf[i].M, rf[i].N, rf[i].K, 132, 49152, 0, &base);
        const int found = cf_cl_gemm_fast_rule_form(rf[i].M, rf[i].N, rf[i].K, rf[i].ta, rf[i].tb,
                                                    132, 49152, 0, rf[i].mma, &form);
        const int packed = form.rm == 8 && form.rn == 8 && form.bk == 32 && form.wg == 8 &&
                           form.split == 1;
        const int same = !memcmp(&base, &form, sizeof base);
        expect(found && (rf[i].want ? packed : same),
               "rule of the form (mma %d), %s: %dx%d bk %d wg %d split %d (want %s)", rf[i].mma,
               rf[i].what, form.wg * form.rm, form.wg * form.rn, form.bk, form.wg, form.split,
               rf[i].want ? "64x64 bk 32" : "the cost model's choice");
    }

    pair a = pair_rand(64, 1.0f);
    printf("(three error lines expected)\n");
    int rc =
        cf_backend_opencl_gemm_fast(GPU, &bad[1], 0, 0, 4, 4, 4, 1.0f, cf_view_f32(a.g, PAD), 4,
                                    cf_view_f32(a.g, PAD), 4, 0.0f, cf_view_f32(a.g, PAD + 16), 4);
    int rc2 =
        cf_backend_opencl_gemm_fast(CPU, NULL, 0, 0, 4, 4, 4, 1.0f, cf_view_f32(a.c, PAD), 4,
                                    cf_view_f32(a.c, PAD), 4, 0.0f, cf_view_f32(a.c, PAD + 16), 4);
    int rc3 =
        cf_backend_opencl_gemm_fast(GPU, NULL, 0, 0, 8, 8, 8, 1.0f, cf_view_f32(a.g, PAD), 8,
                                    cf_view_f32(a.g, PAD), 8, 0.0f, cf_view_f32(a.g, PAD + 16), 8);
    /* 256x128 with bk 16 (over 48 KiB): refused before any build, whatever the device's local
     * memory */
    int rc4 =
        cf_backend_opencl_gemm_fast(GPU, &bad[5], 0, 0, 4, 4, 4, 1.0f, cf_view_f32(a.g, PAD), 4,
                                    cf_view_f32(a.g, PAD), 4, 0.0f, cf_view_f32(a.g, PAD + 16), 4);
    expect(rc == CF_ERR_INVALID && rc2 == CF_ERR_UNSUPPORTED && rc3 == CF_ERR_INVALID &&
               rc4 == CF_ERR_INVALID,
           "gemm_fast refuses an invalid choice (%d), a CPU backend (%d), views past the buffer "
           "end (%d), 256x128 with bk 16 (%d)",
           rc, rc2, rc3, rc4);
    pair_free(a);
}

/* cf_be_gemm through the dispatch: CF_GEMM_FAST=1 sends every plain product to the fast kernel
 * (the debug log says so), =0 none, the clblast mode none. */
static void hook_case(const char *env, const char *mode, int ta, int tb, int M, int N, int K,
                      const char *want_log, int want_present) {
    TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, env));
    if (cf_backend_opencl_set_gemm(GPU, mode) < 0) {
        printf("skip hook case (mode %s not compiled in)\n", mode);
        TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, "auto"));
        return;
    }
    int level = cf_log_get_level();
    cf_log_set_level(CF_LOG_DEBUG);
    g_log[0] = 0;
    char path[64];
    snprintf(path, sizeof path, "CF_GEMM_FAST=%s %s", env, mode);
    gemm_case(path, ta, tb, M, N, K, 1.0f, 0.5f);
    cf_log_set_level(level);
    char line[96];
    snprintf(line, sizeof line, "gemm M=%d N=%d K=%d %c%c: %s", M, N, K, ta ? 'T' : 'N',
             tb ? 'T' : 'N', want_log);
    expect((strstr(g_log, line) != NULL) == want_present, "debug log %s '%s'",
           want_present ? "has" : "lacks", line);
    TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, "auto"));
}

/* Which products the dispatch gives the fast kernel without CF_GEMM_FAST: on GPUs those from
 * 2^27 multiply-adds with K >= 64 (weight gradients included), from 2^28 when CLBlast would take
 * the product; never on CPU devices. */
static void test_wanted(void) {
    cf_cl_ctx *ctx = (cf_cl_ctx *)GPU->ctx;
    const int gpu = (ctx->dev.type & CL_DEVICE_TYPE_GPU) != 0;
    TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, "auto"));
    TCL_OK(cf_backend_opencl_set_gemm(GPU, "auto"));
    cf_cl_gemm_desc d;
    memset(&d, 0, sizeof d);
    d.outer = d.inner = 1;
    const int shapes[4][5] = {{384, 384, 4096, 1, 0}, /* weight gradient */
                              {4096, 16000, 384, 0, 1},
                              {64, 64, 64, 0, 0},
                              {8192, 8192, 32, 0, 1}}; /* K below 64 */
    const int want_gpu[4] = {1, 1, 0, 0};
    for (int i = 0; i < 4; i++) {
        d.M = shapes[i][0], d.N = shapes[i][1], d.K = shapes[i][2];
        d.ta = shapes[i][3], d.tb = shapes[i][4];
        const int w = cf_cl_gemm_fast_wanted(ctx, &d), want = gpu && want_gpu[i];
        expect(w == want, "dispatch on this %s device: M=%d N=%d K=%d %s the fast kernel",
               gpu ? "GPU" : "non-GPU", d.M, d.N, d.K, w ? "takes" : "does not take");
    }
    /* 512^3 = 2^27: the fast kernel's against the tiled one, CLBlast's where it would run */
    d.M = d.N = d.K = 512, d.ta = d.tb = 0;
    int w = cf_cl_gemm_fast_wanted(ctx, &d);
    expect(w == (gpu && !cf_cl_have_clblast()), "auto mode%s: 512^3 %s the fast kernel",
           cf_cl_have_clblast() ? " with CLBlast" : "", w ? "takes" : "does not take");
    TCL_OK(cf_backend_opencl_set_gemm(GPU, "native"));
    w = cf_cl_gemm_fast_wanted(ctx, &d);
    expect(w == gpu, "native mode: 512^3 %s the fast kernel", w ? "takes" : "does not take");
    TCL_OK(cf_backend_opencl_set_gemm(GPU, "auto"));
    d.M = 4096, d.N = 16000, d.K = 384, d.ta = 0, d.tb = 1;
    d.outer = 2;
    expect(!cf_cl_gemm_fast_wanted(ctx, &d), "batched products are not the fast kernel's");
}

static void test_hook(void) {
    hook_case("1", "native", 0, 1, 150, 70, 40, "fast", 1);
    hook_case("1", "auto", 1, 0, 77, 130, 66, "fast", 1);
    hook_case("0", "native", 0, 0, 150, 70, 40, "fast", 0);
    hook_case("1", "clblast", 1, 1, 150, 70, 40, "fast", 0);
    /* the linear layer (forward: NT, backward: NN and TN with accumulation) through the hook */
    TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, "1"));
    TCL_OK(cf_backend_opencl_set_gemm(GPU, "native"));
    const int N = 150, IC = 72, OC = 136;
    pair inp = pair_rand((size_t)N * IC, 1.0f), w = pair_rand((size_t)OC * IC, 0.5f);
    pair b = pair_rand(OC, 0.5f), out = pair_rand((size_t)N * OC, 1.0f);
    BOTH(cf_be_matmul_forward(be, V(out), V(inp), V(w), V(b), N, IC, OC));
    check("matmul_forward through the fast kernel N=150 IC=72 OC=136", out, 1e-5);
    /* the bias on the other paths: the product, then a second pass */
    TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, "0"));
    BOTH(cf_be_matmul_forward(be, V(out), V(inp), V(w), V(b), N, IC, OC));
    check("matmul_forward, fast kernel off (native tiled + bias pass)", out, 1e-5);
    if (cf_cl_have_clblast()) {
        TCL_OK(cf_backend_opencl_set_gemm(GPU, "clblast"));
        BOTH(cf_be_matmul_forward(be, V(out), V(inp), V(w), V(b), N, IC, OC));
        check("matmul_forward on CLBlast + bias pass", out, 1e-5);
        TCL_OK(cf_backend_opencl_set_gemm(GPU, "native"));
    }
    TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, "1"));
    pair dinp = pair_rand((size_t)N * IC, 1.0f), dw = pair_rand((size_t)OC * IC, 1.0f);
    pair db = pair_rand(OC, 1.0f), dout = pair_rand((size_t)N * OC, 1.0f);
    BOTH(cf_be_matmul_backward(be, V(dinp), V(dw), V(db), V(dout), V(inp), V(w), N, IC, OC));
    check("matmul_backward dinp through the fast kernel", dinp, 1e-5);
    check("matmul_backward dweight through the fast kernel", dw, 1e-5);
    check("matmul_backward dbias from the weight gradient's pass (EPI_COLSUM)", db, 1e-5);
    /* weight_bias_backward on the other paths: the product, then the column-sum passes */
    TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, "0"));
    BOTH(cf_be_matmul_backward(be, V(dinp), V(dw), V(db), V(dout), V(inp), V(w), N, IC, OC));
    check("matmul_backward dweight, fast kernel off", dw, 1e-5);
    check("matmul_backward dbias, fast kernel off (column-sum passes)", db, 1e-5);
    pair_free(inp), pair_free(w), pair_free(b), pair_free(out);
    pair_free(dinp), pair_free(dw), pair_free(db), pair_free(dout);
    TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, "auto"));
    TCL_OK(cf_backend_opencl_set_gemm(GPU, "auto"));
}

/* A fast program that fails to build (injected): one warning, the product still right (other
 * path), and no further warning or attempt on the next product. */
static void test_build_failure(void) {
    cf_backend *keep = GPU;
    TCL_OK(cf_backend_opencl_create(tcl_spec(), tcl_opts(), &GPU));
    TCL_OK(cf_backend_opencl_set_gemm(GPU, "native"));
    TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, "1"));
    int warn_before = g_warnings;
    cf_fault_set_build(1); /* the next program build: the fast kernel's */
    gemm_case("fast build fails -> native", 0, 1, 70, 50, 30, 1.0f, 0.0f);
    gemm_case("after the failed build", 1, 0, 70, 50, 30, 1.0f, 1.0f);
    cf_fault_set_build(0);
    expect(g_warnings - warn_before == 1,
           "a fast kernel that does not build gives one warning and the other path (%d warnings)",
           g_warnings - warn_before);
    TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, "auto"));
    cf_backend_destroy(GPU);
    GPU = keep;
}

/* ---- --bench -------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int ta, tb, M, N, K;
} bench_shape;

static double bench_time(int mode, const cf_cl_gemm_fast_choice *c, const bench_shape *s,
                         cf_view A, cf_view B, cf_view C, double min_s) {
    const int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N, ldc = s->N;
    int reps = 0;
    double t0 = 0.0, t = 0.0;
    for (int i = -1; i < 0 || t < min_s || reps < 3; i++) {
        int rc = mode == 0 ? cf_be_gemm(GPU, s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb,
                                        0.0f, C, ldc)
                           : cf_backend_opencl_gemm_fast(GPU, c, s->ta, s->tb, s->M, s->N, s->K,
                                                         1.0f, A, lda, B, ldb, 0.0f, C, ldc);
        if (rc < 0) return -1.0;
        if (i < 0 || reps % 4 == 3) {
            if (cf_be_sync(GPU) < 0) return -1.0;
            if (i < 0) {
                t0 = cf_time_now();
                continue;
            }
        }
        reps++;
        t = cf_time_now() - t0;
    }
    if (cf_be_sync(GPU) < 0) return -1.0;
    t = cf_time_now() - t0;
    return 2.0 * s->M * (double)s->N * s->K * reps / t / 1e12;
}

/* --shapes 384 (the default): the d_model 384 / d_ff 1536 / vocab 16000 model at 4096 rows, 4
 * layers; --shapes 124m: GPT-2 124M (d_model 768, d_ff 3072, vocab 50304) at 8192 rows (batch 8 x
 * 1024), 12 layers, the head over chunks of 1280 rows (7 per step, docs/memory.md) */
static int bench_shapes_124m = 0;

static int bench(double min_s) {
    const int big = bench_shapes_124m;
    const int BT = big ? 8192 : 4096, C = big ? 768 : 384, F = big ? 3072 : 1536;
    const int Vv = big ? 50304 : 16000, HR = big ? 1280 : BT; /* HR: rows of a head chunk */
    const double layers = big ? 12.0 : 4.0, head_times = big ? (BT + HR - 1) / HR : 1.0;
    const bench_shape shapes[] = {
        {"qkv.fwd", 0, 1, BT, 3 * C, C},      {"qkv.dinp", 0, 0, BT, C, 3 * C},
        {"qkv.dw", 1, 0, 3 * C, C, BT},       {"attn_proj.fwd", 0, 1, BT, C, C},
        {"attn_proj.dinp", 0, 0, BT, C, C},   {"attn_proj.dw", 1, 0, C, C, BT},
        {"fc.fwd", 0, 1, BT, F, C},           {"fc.dinp", 0, 0, BT, C, F},
        {"fc.dw", 1, 0, F, C, BT},            {"fc_proj.fwd", 0, 1, BT, C, F},
        {"fc_proj.dinp", 0, 0, BT, F, C},     {"fc_proj.dw", 1, 0, C, F, BT},
        {"head.fwd", 0, 1, HR, Vv, C},        {"head.dinp", 0, 0, HR, C, Vv},
        {"head.dw", 1, 0, Vv, C, HR},         {"square 4096", 0, 0, 4096, 4096, 4096}};
    const int ns = (int)(sizeof shapes / sizeof shapes[0]);
    /* elements of the largest op(A), op(B) and C */
    size_t na = 0, nb = 0, nc = 0;
    for (int i = 0; i < ns; i++) {
        const size_t m = (size_t)shapes[i].M, n = (size_t)shapes[i].N, k = (size_t)shapes[i].K;
        na = m * k > na ? m * k : na;
        nb = k * n > nb ? k * n : nb;
        nc = m * n > nc ? m * n : nc;
    }
    cf_buffer *A = NULL, *B = NULL, *Cb = NULL;
    TCL_OK(cf_be_alloc(GPU, na * 4, &A));
    TCL_OK(cf_be_alloc(GPU, nb * 4, &B));
    TCL_OK(cf_be_alloc(GPU, nc * 4, &Cb));
    const size_t nh = na > nb ? na : nb;
    float *h = tcl_malloc(nh * 4);
    tcl_rand(&rng, h, nh, 1.0f);
    TCL_OK(cf_be_upload(GPU, cf_view_f32(A, 0), h, na * 4));
    TCL_OK(cf_be_upload(GPU, cf_view_f32(B, 0), h, nb * 4));
    free(h);
    cf_view a = cf_view_f32(A, 0), b = cf_view_f32(B, 0), c = cf_view_f32(Cb, 0);
    const cf_cl_device_info *dev = &((cf_cl_ctx *)GPU->ctx)->dev;
    static const int splits[] = {1, 2, 3, 4, 6, 8, 12, 16};
    printf("TFLOP/s on %s (fp32; min %.2f s per cell; shapes %s)\n", cf_be_name(GPU), min_s,
           big ? "124m: d_model 768, d_ff 3072, vocab 50304, 8192 rows, head chunks of 1280"
               : "384: d_model 384, d_ff 1536, vocab 16000, 4096 rows");
    for (int v = 0; v < N_VARIANTS; v++)
        if (!cf_cl_gemm_fast_choice_valid_form(&variants[v], form_mma()))
            printf("(variant %dx%d/%d/w%d: not in this form of the kernel, not measured)\n",
                   variants[v].wg * variants[v].rm, variants[v].wg * variants[v].rn,
                   variants[v].bk, variants[v].wg);
    printf("%-15s %2s %2s %5s %5s %5s %7s %7s %7s %7s %7s  %-20s %-20s\n", "shape", "tA", "tB",
           "M", "N", "K", "tiled", "clblast", "default", "rule", "best", "rule choice",
           "best choice");
    double tot[5] = {0, 0, 0, 0, 0}; /* seconds of one step's GEMMs */
    for (int i = 0; i < ns; i++) {
        const bench_shape *s = &shapes[i];
        double r[5] = {-1, -1, -1, -1, -1};
        TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, "0"));
        if (cf_backend_opencl_set_gemm(GPU, "native") == CF_OK)
            r[0] = bench_time(0, NULL, s, a, b, c, min_s);
        if (cf_backend_opencl_set_gemm(GPU, "clblast") == CF_OK)
            r[1] = bench_time(0, NULL, s, a, b, c, min_s);
        TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, "auto"));
        TCL_OK(cf_backend_opencl_set_gemm(GPU, "auto"));
        r[2] = bench_time(0, NULL, s, a, b, c, min_s);
        cf_cl_gemm_fast_choice rc;
        cf_cl_gemm_fast_rule_form(s->M, s->N, s->K, s->ta, s->tb, (int)dev->compute_units,
                                  (size_t)dev->local_mem,
                                  cf_cl_gemm_fast_wide((cf_cl_ctx *)GPU->ctx), form_mma(), &rc);
        r[3] = bench_time(1, NULL, s, a, b, c, min_s);
        cf_cl_gemm_fast_choice best = variants[0];
        char all[4096] = "", byv[1024] = "";
        size_t used = 0, usedv = 0;
        for (int v = 0; v < N_VARIANTS; v++) {
            if (!cf_cl_gemm_fast_choice_valid_form(&variants[v], form_mma()) ||
                (only_variant >= 0 && v != only_variant))
                continue;
            double vbest = -1.0;
            int vsplit = 1;
            for (int k = 0; k < 8; k++) {
                cf_cl_gemm_fast_choice ch = variants[v];
                ch.split = splits[k];
                if (ch.split > 1 && s->K / ch.split < 128) break;
                double x = bench_time(1, &ch, s, a, b, c, min_s);
                if (x > r[4]) {
                    r[4] = x;
                    best = ch;
                }
                if (x > vbest) {
                    vbest = x;
                    vsplit = ch.split;
                }
                if (used < sizeof all - 40)
                    used += (size_t)snprintf(all + used, sizeof all - used,
                                             " %dx%d/%d/w%d/s%d=%.1f", ch.wg * ch.rm,
                                             ch.wg * ch.rn, ch.bk, ch.wg, ch.split, x);
            }
            if (usedv < sizeof byv - 40)
                usedv += (size_t)snprintf(byv + usedv, sizeof byv - usedv,
                                          " %dx%d/%d/w%d=%.2f(s%d)", variants[v].wg * variants[v].rm,
                                          variants[v].wg * variants[v].rn, variants[v].bk,
                                          variants[v].wg, vbest, vsplit);
        }
        char rcs[40], bcs[40];
        snprintf(rcs, sizeof rcs, "%dx%d bk%d wg%d split%d", rc.wg * rc.rm, rc.wg * rc.rn, rc.bk,
                 rc.wg, rc.split);
        snprintf(bcs, sizeof bcs, "%dx%d bk%d wg%d split%d", best.wg * best.rm, best.wg * best.rn,
                 best.bk, best.wg, best.split);
        printf("%-15s %2d %2d %5d %5d %5d %7.2f %7.2f %7.2f %7.2f %7.2f  %-20s %-20s\n", s->name,
               s->ta, s->tb, s->M, s->N, s->K, r[0], r[1], r[2], r[3], r[4], rcs, bcs);
        /* each variant at its best split (rule: the rule's choice above) */
        printf("    by variant:%s\n", byv);
        printf("    all:%s\n", all);
        /* a step runs the 12 layer shapes once per layer and the head's once per chunk */
        const double times = i < 12 ? layers : i < 15 ? head_times : 0.0;
        for (int k = 0; k < 5; k++)
            tot[k] += r[k] > 0 ? times * 2.0 * s->M * (double)s->N * s->K / (r[k] * 1e12) : 0.0;
    }
    printf("GEMMs of one training step (%.0f layers + head x %.0f), ms: tiled %.2f, clblast %.2f, "
           "default %.2f, rule %.2f, best %.2f\n",
           layers, head_times, tot[0] * 1e3, tot[1] * 1e3, tot[2] * 1e3, tot[3] * 1e3,
           tot[4] * 1e3);
    cf_be_free(GPU, A);
    cf_be_free(GPU, B);
    cf_be_free(GPU, Cb);
    return 0;
}

/* The tensor-core form really rounds to TF32: against the CPU's fp32 a K = 512 product of random
 * values differs by more than fp32 summation order could explain (~1e-7 relative) and by less than
 * TF32's bound. */
static void tf32_rounding_visible(void) {
    const int M = 128, N = 128, K = 512;
    operand A = operand_new(M, K, 0, 0), B = operand_new(K, N, 0, 0), C = operand_new(M, N, 0, 0);
    for (int g_ = 0; g_ < 2; g_++) {
        if (g_)
            TCL_OK(cf_backend_opencl_gemm_fast(GPU, NULL, 0, 0, M, N, K, 1.0f, OV(A), K, OV(B), N,
                                               0.0f, OV(C), N));
        else
            TCL_OK(cf_be_gemm(CPU, 0, 0, M, N, K, 1.0f, OV(A), K, OV(B), N, 0.0f, OV(C), N));
    }
    size_t total = C.p.n + 2 * PAD;
    float *a = tcl_malloc(total * 4), *b = tcl_malloc(total * 4);
    TCL_OK(cf_be_download(GPU, a, cf_view_f32(C.p.g, 0), total * 4));
    TCL_OK(cf_be_download(CPU, b, cf_view_f32(C.p.c, 0), total * 4));
    double err = tcl_norm_err(a + PAD, b + PAD, C.p.n);
    expect(err > 1e-5 && err < 5e-3, "tf32 128x128x512: error against fp32 %.2e, expected in "
                                     "(1e-5, 5e-3): inputs rounded to TF32",
           err);
    free(a);
    free(b);
    pair_free(A.p);
    pair_free(B.p);
    pair_free(C.p);
}

int main(int argc, char **argv) {
    const char *spec = NULL;
    int bench_mode = 0;
    double min_s = 0.05;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) spec = argv[++i];
        else if (strcmp(argv[i], "--small") == 0) small_mode = tcl_keep_buffers = 1;
        else if (strcmp(argv[i], "--bench") == 0) bench_mode = 1;
        else if (strcmp(argv[i], "--tf32") == 0) tcl_tf32 = 1;
        else if (strcmp(argv[i], "--prec") == 0 && i + 1 < argc) {
            ++i;
            tcl_round = strcmp(argv[i], "bf16") == 0 ? 1 : strcmp(argv[i], "fp16") == 0 ? 2 : -1;
            if (tcl_round < 0) {
                fprintf(stderr, "--prec %s: expected bf16 or fp16\n", argv[i]);
                return 2;
            }
        }
        else if (strcmp(argv[i], "--planted") == 0) planted_mode = tcl_keep_buffers = 1;
        else if (strcmp(argv[i], "--min-time") == 0 && i + 1 < argc) min_s = atof(argv[++i]);
        else if (strcmp(argv[i], "--shapes") == 0 && i + 1 < argc) {
            ++i;
            bench_shapes_124m = strcmp(argv[i], "124m") == 0  ? 1
                                : strcmp(argv[i], "384") == 0 ? 0
                                                              : -1;
            if (bench_shapes_124m < 0) {
                fprintf(stderr, "--shapes %s: expected 384 or 124m\n", argv[i]);
                return 2;
            }
        }
        else if (strcmp(argv[i], "--variant") == 0 && i + 1 < argc) {
            only_variant = atoi(argv[++i]);
            if (only_variant < 0 || only_variant >= N_VARIANTS) {
                fprintf(stderr, "--variant %s: expected 0 .. %d\n", argv[i], N_VARIANTS - 1);
                return 2;
            }
        } else {
            fprintf(stderr,
                    "usage: %s [--small | --planted] [--variant I] [--tf32 | --prec bf16|fp16] "
                    "[--device SPEC]\n"
                    "       %s --bench [--shapes 384|124m] [--variant I] [--min-time S] "
                    "[--tf32 | --prec bf16|fp16] [--device SPEC]\n",
                    argv[0], argv[0]);
            return 2;
        }
    }
    int code = 0;
    /* (on CPU devices the kernel is then compiled without optimisation, as in fp32's tests) */
    if (tcl_round) setenv("CF_GEMM_FAST", "1", 0);
    if (tcl_open("test_cl_gemm_fast", spec, &code) < 0) return code;
    double t0 = cf_time_now();
    /* an engine named by CF_MATRIX_ENGINE (ctest's test_cl_gemm_fast_emu_*: the emulation) must be
     * the one that runs: a run on the portable form instead would pass without testing it */
    const char *want = getenv("CF_MATRIX_ENGINE");
    if ((tcl_tf32 || tcl_round) && want && *want && strcasecmp(want, "off") != 0 &&
        strcasecmp(want, "none") != 0) {
        const cf_cl_ctx *ctx = (const cf_cl_ctx *)GPU->ctx;
        expect(ctx->mx && strcasecmp(ctx->mx_name, want) == 0,
               "CF_MATRIX_ENGINE=%s: that engine runs the products (running: %s)", want,
               ctx->mx_name);
        if (fails) return tcl_finish("test_cl_gemm_fast", t0);
    }
    if (tcl_tf32) {
        if (!((cf_cl_ctx *)GPU->ctx)->mma_tf32) {
            printf("SKIP test_cl_gemm_fast --tf32: %s has no TF32 matrix engine this backend uses "
                   "(NVIDIA compute capability 8.0 or later)\n",
                   cf_be_name(GPU));
            cf_backend_destroy(GPU);
            cf_backend_destroy(CPU);
            return 77;
        }
        tol_scale = 500.0;
        if (!bench_mode) tf32_rounding_visible();
    }
    if (tcl_round) {
        cf_cl_ctx *ctx = (cf_cl_ctx *)GPU->ctx;
        printf("precision %s: %s%s\n", tcl_round == 1 ? "bf16" : "fp16",
               ctx->mma_half ? "matrix engine " : "inputs rounded as they are staged",
               ctx->mma_half ? ctx->mx_name : "");
        expect(ctx->gemm_round == tcl_round, "the backend's GEMM rounding is on");
        if (!bench_mode) round_exact();
        if (!bench_mode) colsum_unrounded();
    }
    if (bench_mode) {
        cf_log_set_callback(NULL, NULL); /* info lines (CF_GEMM_FAST_VERBOSE reports) to stderr */
        int rc = bench(min_s);
        cf_backend_destroy(GPU);
        cf_backend_destroy(CPU);
        return rc;
    }
    if (planted_mode) { /* one work-group, one K slice: cheap for oclgrind to check */
        fast_case(&variants[0], 0, 0, 16, 16, 8, 1.0f, 0.0f, 0);
        return tcl_finish("test_cl_gemm_fast --planted", t0);
    }
    if (!tcl_tf32 && !tcl_round) test_rule();
    test_variants();
    if (!small_mode) {
        test_corners();
        test_deterministic();
        /* the dispatch and the paths around the kernel are fp32's (with tf32 every plain product
         * on such a GPU takes this kernel by design) */
        if (tcl_tf32) return tcl_finish("test_cl_gemm_fast --tf32", t0);
        if (tcl_round)
            return tcl_finish(tcl_round == 1 ? "test_cl_gemm_fast --prec bf16"
                                             : "test_cl_gemm_fast --prec fp16",
                              t0);
        test_wanted();
        test_hook();
        test_build_failure();
    }
    return tcl_finish(small_mode ? "test_cl_gemm_fast --small" : "test_cl_gemm_fast", t0);
}
