/* clformer test: the GEMM on half operands (cl_kernels/gemm_half.cl, cl_gemm_half.c) against the
 * CPU backend, in precision bf16 or fp16 on a matrix engine that has it (the NVIDIA tensor cores;
 * elsewhere CF_MATRIX_ENGINE=emulate:nvidia-mma-sync, as ctest runs it; exit 77 without one).
 * The test data is drawn on the format's grid, so the products must meet the CPU's fp32 ones to
 * fp32's tolerance: a lost, doubled or misplaced value of the packed operands, of a staged tile's
 * chunk or of a fragment shows. Covered: all four transpose combinations; shapes with partial
 * 128 x 128 blocks, K not a multiple of 32, one row, one column, K = 1; operands at offsets with
 * leading dimensions larger than their rows; alpha, beta (beta 0 must not read C: it starts as
 * NaN); split-K (bit for bit the same on a rerun); the bias and GELU epilogues; the sums of a
 * transposed A (a linear layer's bias gradient, from the unrounded values); a product of
 * unrounded data against the CPU's product of the same data rounded on the host (round to nearest
 * even); the dispatch (cf_be_gemm) taking this path under CF_GEMM_HALF=1; and a build that fails
 * (one warning, the register-blocked kernel from then on).
 *   test_cl_gemm_half [--prec bf16|fp16] [--small] [--device SPEC]
 * --small: three small products (for oclgrind, tests/cli_oclgrind_gemm_half.sh); --planted: one
 * (its planted-bug runs). */
#include "test_cl_common.h"

#include <strings.h>

#include "backend/opencl/cl_gemm_half.h"
#include "backend/opencl/cl_internal.h"

static int small_mode = 0;
static int planted_mode = 0; /* --planted: one small product (cli_oclgrind_gemm_half.sh) */

static const cf_view none = {0};

static double tol_k(int K) { return 2e-6 * (K > 16 ? sqrt((double)K) : 4.0); }

/* One product: C = alpha op(A) op(B) + beta C [+ bias] with split K slices (0: the rule's) */
static void half_case(int ta, int tb, int M, int N, int K, float alpha, float beta, int split,
                      int with_bias) {
    const size_t lead = 1 + (size_t)(M + N + K) % 5;
    const int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    operand A = operand_new(ta ? K : M, lda, lead, 0), B = operand_new(tb ? N : K, ldb, lead, 0);
    operand C = operand_new(M, ldc, lead, beta == 0.0f);
    operand bias = operand_new(1, N, lead, 0);
    for (int g_ = 0; g_ < 2; g_++) {
        if (g_)
            TCL_OK(cf_backend_opencl_gemm_half(GPU, split, ta, tb, M, N, K, alpha, OV(A), lda,
                                               OV(B), ldb, beta, OV(C), ldc,
                                               with_bias ? OV(bias) : none, none, 0, none));
        else if (with_bias)
            TCL_OK(CPU->ops->gemm_bias(CPU, ta, tb, M, N, K, alpha, OV(A), lda, OV(B), ldb, beta,
                                       OV(C), ldc, OV(bias)));
        else
            TCL_OK(cf_be_gemm(CPU, ta, tb, M, N, K, alpha, OV(A), lda, OV(B), ldb, beta, OV(C),
                              ldc));
    }
    char what[160];
    snprintf(what, sizeof what, "half %c%c M=%d N=%d K=%d a=%.1f b=%.1f split %d%s",
             ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, beta, split,
             with_bias ? " +bias" : "");
    check(what, C.p, tol_k(K));
    pair_free(A.p);
    pair_free(B.p);
    pair_free(C.p);
    pair_free(bias.p);
}

/* The GELU epilogues (alpha 1, beta 0, ldc N): act 1 C = product + bias, X = gelu(C); act 2
 * C = product * gelu'(X) */
static void gelu_case(int ta, int tb, int M, int N, int K, int act, int split) {
    const size_t lead = 2;
    const int lda = ta ? M : K, ldb = tb ? K : N;
    operand A = operand_new(ta ? K : M, lda, lead, 0), B = operand_new(tb ? N : K, ldb, lead, 0);
    operand C = operand_new(M, N, lead, 1), X = operand_new(M, N, lead, act == 1);
    operand bias = operand_new(1, N, lead, 0);
    for (int g_ = 0; g_ < 2; g_++) {
        if (g_) {
            TCL_OK(cf_backend_opencl_gemm_half(GPU, split, ta, tb, M, N, K, 1.0f, OV(A), lda,
                                               OV(B), ldb, 0.0f, OV(C), N,
                                               act == 1 ? OV(bias) : none, OV(X), act, none));
        } else if (act == 1) {
            TCL_OK(CPU->ops->gemm_bias(CPU, ta, tb, M, N, K, 1.0f, OV(A), lda, OV(B), ldb, 0.0f,
                                       OV(C), N, OV(bias)));
            TCL_OK(cf_be_gelu_forward(CPU, OV(X), OV(C), (size_t)M * N));
        } else {
            TCL_OK(cf_be_gemm(CPU, ta, tb, M, N, K, 1.0f, OV(A), lda, OV(B), ldb, 0.0f, OV(C), N));
            TCL_OK(cf_be_gelu_backward(CPU, OV(C), OV(X), OV(C), (size_t)M * N));
        }
    }
    char what[160];
    snprintf(what, sizeof what, "half %c%c M=%d N=%d K=%d GELU %s split %d", ta ? 'T' : 'N',
             tb ? 'T' : 'N', M, N, K, act == 1 ? "forward" : "backward", split);
    check(what, C.p, tol_k(K));
    if (act == 1) {
        snprintf(what, sizeof what, "half M=%d N=%d K=%d GELU forward split %d: X", M, N, K, split);
        check(what, X.p, tol_k(K));
    }
    pair_free(A.p);
    pair_free(B.p);
    pair_free(C.p);
    pair_free(X.p);
    pair_free(bias.p);
}

/* The sums of op(A) (A stored (K, M)): colsum(M) += sum over k of A(k, m), against the CPU's
 * ones(1, K) A; C against the CPU's product */
static void colsum_case(int tb, int M, int N, int K, int split) {
    const size_t lead = 3;
    const int lda = M + 1, ldb = tb ? K : N;
    operand A = operand_new(K, lda, lead, 0), B = operand_new(tb ? N : K, ldb, lead, 0);
    operand C = operand_new(M, N, lead, 1), cs = operand_new(1, M, lead, 0);
    pair ones = pair_const((size_t)K, 1.0f);
    for (int g_ = 0; g_ < 2; g_++) {
        if (g_) {
            TCL_OK(cf_backend_opencl_gemm_half(GPU, split, 1, tb, M, N, K, 1.0f, OV(A), lda, OV(B),
                                               ldb, 0.0f, OV(C), N, none, none, 0, OV(cs)));
        } else {
            TCL_OK(cf_be_gemm(CPU, 1, tb, M, N, K, 1.0f, OV(A), lda, OV(B), ldb, 0.0f, OV(C), N));
            TCL_OK(cf_be_gemm(CPU, 0, 0, 1, M, K, 1.0f, cf_view_f32(ones.c, PAD), K, OV(A), lda,
                              1.0f, OV(cs), M));
        }
    }
    char what[160];
    snprintf(what, sizeof what, "half T%c M=%d N=%d K=%d split %d +sums of op(A)", tb ? 'T' : 'N',
             M, N, K, split);
    check(what, C.p, tol_k(K));
    snprintf(what, sizeof what, "half T%c M=%d N=%d K=%d split %d: the sums", tb ? 'T' : 'N', M, N,
             K, split);
    check(what, cs.p, tol_k(K));
    pair_free(A.p);
    pair_free(B.p);
    pair_free(C.p);
    pair_free(cs.p);
    pair_free(ones);
}

/* Unrounded data: the product must be the CPU's fp32 product of the data rounded to the format on
 * the host (to nearest, ties to even), to fp32's tolerance, and differ from the unrounded one */
static void rounding_case(int ta, int tb, int M, int N, int K) {
    const int mode = tcl_round;
    tcl_round = 0;
    operand A = operand_new(ta ? K : M, ta ? M : K, 1, 0);
    operand B = operand_new(tb ? N : K, tb ? K : N, 1, 0);
    tcl_round = mode;
    operand C = operand_new(M, N, 1, 1), R = operand_new(M, N, 1, 1);
    /* the host-rounded copies on the CPU side */
    const size_t na = A.p.n, nb = B.p.n;
    float *ha = tcl_malloc(na * 4), *hb = tcl_malloc(nb * 4);
    TCL_OK(cf_be_download(CPU, ha, cf_view_f32(A.p.c, PAD), na * 4));
    TCL_OK(cf_be_download(CPU, hb, cf_view_f32(B.p.c, PAD), nb * 4));
    for (size_t i = 0; i < na; i++) ha[i] = tcl_round_value(mode, ha[i]);
    for (size_t i = 0; i < nb; i++) hb[i] = tcl_round_value(mode, hb[i]);
    cf_buffer *ra = NULL, *rb = NULL;
    TCL_OK(cf_be_alloc(CPU, na * 4, &ra));
    TCL_OK(cf_be_alloc(CPU, nb * 4, &rb));
    TCL_OK(cf_be_upload(CPU, cf_view_f32(ra, 0), ha, na * 4));
    TCL_OK(cf_be_upload(CPU, cf_view_f32(rb, 0), hb, nb * 4));
    const int lda = ta ? M : K, ldb = tb ? K : N;
    for (int g_ = 0; g_ < 2; g_++) {
        if (g_) {
            TCL_OK(cf_backend_opencl_gemm_half(GPU, 1, ta, tb, M, N, K, 1.0f, OV(A), lda, OV(B),
                                               ldb, 0.0f, OV(C), N, none, none, 0, none));
            TCL_OK(cf_backend_opencl_gemm_half(GPU, 1, ta, tb, M, N, K, 1.0f, OV(A), lda, OV(B),
                                               ldb, 0.0f, OV(R), N, none, none, 0, none));
        } else {
            TCL_OK(cf_be_gemm(CPU, ta, tb, M, N, K, 1.0f, cf_view_f32(ra, 1), lda,
                              cf_view_f32(rb, 1), ldb, 0.0f, OV(C), N));
            /* R: the unrounded product, which must NOT match */
            TCL_OK(cf_be_gemm(CPU, ta, tb, M, N, K, 1.0f, OV(A), lda, OV(B), ldb, 0.0f, OV(R), N));
        }
    }
    char what[160];
    snprintf(what, sizeof what, "half %c%c M=%d N=%d K=%d unrounded data: rounded products",
             ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K);
    check(what, C.p, tol_k(K));
    /* the unrounded product differs by the format's rounding (2e-3 in bf16, 2e-4 in fp16 here),
     * beyond 4x fp32's tolerance (1.1e-4 here; the matched products meet it at 0 to 2e-7) */
    float *a = tcl_malloc(R.p.n * 4), *b = tcl_malloc(R.p.n * 4);
    TCL_OK(cf_be_download(GPU, a, cf_view_f32(R.p.g, PAD), R.p.n * 4));
    TCL_OK(cf_be_download(CPU, b, cf_view_f32(R.p.c, PAD), R.p.n * 4));
    const double err = tcl_norm_err(a, b, R.p.n);
    expect(err > 4 * tol_k(K), "%s: the unrounded fp32 product is not matched (err %.2e)", what,
           err);
    free(a);
    free(b);
    free(ha);
    free(hb);
    cf_be_free(CPU, ra);
    cf_be_free(CPU, rb);
    pair_free(A.p);
    pair_free(B.p);
    pair_free(C.p);
    pair_free(R.p);
}

/* Split-K adds the slices in a fixed order: a rerun agrees bit for bit, and both meet the CPU */
static void deterministic(void) {
    const int M = 200, N = 150, K = 700;
    operand A = operand_new(K, M, 0, 0), B = operand_new(N, K, 0, 0);
    operand C1 = operand_new(M, N, 0, 1);
    pair C2 = pair_const((size_t)M * N, NAN);
    for (int g_ = 0; g_ < 2; g_++) {
        if (g_)
            TCL_OK(cf_backend_opencl_gemm_half(GPU, 3, 1, 1, M, N, K, 1.0f, OV(A), M, OV(B), K,
                                               0.0f, OV(C1), N, none, none, 0, none));
        else
            TCL_OK(cf_be_gemm(CPU, 1, 1, M, N, K, 1.0f, OV(A), M, OV(B), K, 0.0f, OV(C1), N));
    }
    check("half TT M=200 N=150 K=700 split 3 (the rerun's reference)", C1.p, tol_k(K));
    TCL_OK(cf_backend_opencl_gemm_half(GPU, 3, 1, 1, M, N, K, 1.0f, cf_view_f32(A.p.g, PAD), M,
                                       cf_view_f32(B.p.g, PAD), K, 0.0f, cf_view_f32(C2.g, PAD), N,
                                       none, none, 0, none));
    float *a = tcl_malloc((size_t)M * N * 4), *b = tcl_malloc((size_t)M * N * 4);
    TCL_OK(cf_be_download(GPU, a, cf_view_f32(C1.p.g, PAD), (size_t)M * N * 4));
    TCL_OK(cf_be_download(GPU, b, cf_view_f32(C2.g, PAD), (size_t)M * N * 4));
    expect(memcmp(a, b, (size_t)M * N * 4) == 0, "split 3: two runs agree bit for bit");
    free(a);
    free(b);
    pair_free(A.p);
    pair_free(B.p);
    pair_free(C1.p);
    pair_free(C2);
}

/* The sums of op(A) come from the unrounded values (a bias gradient, not a product): on data off
 * the format's grid they meet the CPU's fp32 sums to fp32's tolerance, which sums of the rounded
 * values miss by the format's rounding */
static void colsum_unrounded(void) {
    const int M = 140, N = 64, K = 300, mode = tcl_round;
    tcl_round = 0;
    operand A = operand_new(K, M, 0, 0);
    tcl_round = mode;
    operand B = operand_new(K, N, 0, 0), C = operand_new(M, N, 0, 1), cs = operand_new(1, M, 0, 0);
    pair ones = pair_const((size_t)K, 1.0f);
    for (int g_ = 0; g_ < 2; g_++) {
        if (g_)
            TCL_OK(cf_backend_opencl_gemm_half(GPU, 2, 1, 0, M, N, K, 1.0f, OV(A), M, OV(B), N,
                                               0.0f, OV(C), N, none, none, 0, OV(cs)));
        else
            TCL_OK(cf_be_gemm(CPU, 0, 0, 1, M, K, 1.0f, cf_view_f32(ones.c, PAD), K, OV(A), M,
                              1.0f, OV(cs), M));
    }
    check("half TN M=140 N=64 K=300 split 2, unrounded A: the sums of op(A)", cs.p, tol_k(K));
    pair_free(A.p);
    pair_free(B.p);
    pair_free(C.p);
    pair_free(cs.p);
    pair_free(ones);
}

/* The dispatch: with CF_GEMM_HALF=1 a plain cf_be_gemm runs here (its packed op(A) appears in the
 * scratch slot, emptied before), and its result is the CPU's */
static void dispatch_case(void) {
    cf_cl_ctx *ctx = (cf_cl_ctx *)GPU->ctx;
    TCL_OK(cf_be_sync(GPU));
    if (ctx->scratch[CF_SCRATCH_HALF_A]) clReleaseMemObject(ctx->scratch[CF_SCRATCH_HALF_A]);
    ctx->scratch[CF_SCRATCH_HALF_A] = NULL;
    ctx->scratch_bytes[CF_SCRATCH_HALF_A] = 0;
    const int M = 300, N = 260, K = 96;
    operand A = operand_new(M, K, 0, 0), B = operand_new(N, K, 0, 0), C = operand_new(M, N, 0, 1);
    for (int g_ = 0; g_ < 2; g_++) {
        cf_backend *be = g_ ? GPU : CPU;
        TCL_OK(cf_be_gemm(be, 0, 1, M, N, K, 1.0f, OV(A), K, OV(B), K, 0.0f, OV(C), N));
    }
    check("dispatch: cf_be_gemm NT M=300 N=260 K=96", C.p, tol_k(K));
    expect(ctx->scratch_bytes[CF_SCRATCH_HALF_A] >= (size_t)384 * 96 * 2,
           "dispatch: the product ran on half operands (packed op(A) scratch: %zu bytes)",
           ctx->scratch_bytes[CF_SCRATCH_HALF_A]);
    pair_free(A.p);
    pair_free(B.p);
    pair_free(C.p);
}

/* A build of its kernels that fails (an injected fault, on a fresh backend): one warning, the
 * product on the register-blocked kernel with the right result, and that kernel from then on */
static void build_failure(void) {
    cf_backend *keep = GPU;
    cf_backend_options o = *tcl_opts();
    o.bf16 = tcl_round == 1;
    o.fp16 = tcl_round == 2;
    TCL_OK(cf_backend_opencl_create(tcl_spec(), &o, &GPU));
    const int warn_before = g_warnings;
    const int M = 130, N = 140, K = 64;
    operand A = operand_new(M, K, 0, 0), B = operand_new(N, K, 0, 0), C = operand_new(M, N, 0, 1);
    cf_fault_set_build(1); /* the next program build: the half GEMM's */
    for (int g_ = 0; g_ < 2; g_++)
        TCL_OK(cf_be_gemm(g_ ? GPU : CPU, 0, 1, M, N, K, 1.0f, OV(A), K, OV(B), K, 0.0f, OV(C), N));
    cf_fault_set_build(0);
    check("half build fails -> the register-blocked kernel", C.p, tol_k(K));
    expect(g_warnings - warn_before == 1 && !cf_cl_gemm_half_engine((cf_cl_ctx *)GPU->ctx),
           "a half GEMM that does not build: one warning (%d), then declined",
           g_warnings - warn_before);
    for (int g_ = 0; g_ < 2; g_++)
        TCL_OK(cf_be_gemm(g_ ? GPU : CPU, 0, 1, M, N, K, 1.0f, OV(A), K, OV(B), K, 0.0f, OV(C), N));
    check("after the failed build", C.p, tol_k(K));
    expect(g_warnings - warn_before == 1, "no second warning (%d)", g_warnings - warn_before);
    pair_free(A.p);
    pair_free(B.p);
    pair_free(C.p);
    cf_backend_destroy(GPU);
    GPU = keep;
}

/* The split rule: one slice where the blocks fill the compute units, more (at most 16, slices
 * of at least 256) where they do not */
static void test_split_rule(void) {
    expect(cf_cl_gemm_half_split(NULL, 8192, 2304, 768, 132) == 1,
           "split rule: many blocks, one slice");
    expect(cf_cl_gemm_half_split(NULL, 768, 768, 8192, 132) == 7,
           "split rule: 36 blocks on 132 units, K 8192: 7 slices, one wave of two a unit (got %d)",
           cf_cl_gemm_half_split(NULL, 768, 768, 8192, 132));
    expect(cf_cl_gemm_half_split(NULL, 128, 128, 512, 132) == 2,
           "split rule: slices of at least 256 (got %d)",
           cf_cl_gemm_half_split(NULL, 128, 128, 512, 132));
    expect(cf_cl_gemm_half_split(NULL, 128, 128, 100000, 132) == 16,
           "split rule: at most 16 (got %d)", cf_cl_gemm_half_split(NULL, 128, 128, 100000, 132));
    expect(cf_cl_gemm_half_split(NULL, 128, 128, 200, 132) == 1, "split rule: short K, one slice");
    expect(cf_cl_gemm_half_split(NULL, 1280, 2048, 4096, 132) == 1,
           "split rule: 160 blocks, between one and two a unit: one slice (got %d)",
           cf_cl_gemm_half_split(NULL, 1280, 2048, 4096, 132));
    expect(cf_cl_gemm_half_split(NULL, 1024, 2048, 4096, 132) == 2,
           "split rule: 128 blocks on 132 units: two slices, one wave (got %d)",
           cf_cl_gemm_half_split(NULL, 1024, 2048, 4096, 132));
    /* the block shape's groups a unit: 128 x 64 blocks (three a unit), 72 of them */
    cf_cl_ctx *c = calloc(1, sizeof *c);
    if (!c) return;
    c->gh_bn = 64;
    c->gh_bk = 32;
    expect(cf_cl_gemm_half_split(c, 768, 768, 8192, 132) == 5,
           "split rule: 72 blocks of 128 x 64, three a unit: 5 slices (got %d)",
           cf_cl_gemm_half_split(c, 768, 768, 8192, 132));
    free(c);
}

int main(int argc, char **argv) {
    const char *spec = NULL;
    tcl_round = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) spec = argv[++i];
        else if (strcmp(argv[i], "--small") == 0) small_mode = tcl_keep_buffers = 1;
        else if (strcmp(argv[i], "--planted") == 0) planted_mode = tcl_keep_buffers = 1;
        else if (strcmp(argv[i], "--prec") == 0 && i + 1 < argc) {
            ++i;
            tcl_round = strcmp(argv[i], "bf16") == 0 ? 1 : strcmp(argv[i], "fp16") == 0 ? 2 : -1;
            if (tcl_round < 0) {
                fprintf(stderr, "--prec %s: expected bf16 or fp16\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: %s [--prec bf16|fp16] [--small | --planted] [--device SPEC]\n", argv[0]);
            return 2;
        }
    }
    setenv("CF_GEMM_HALF", "1", 1); /* this path, whatever the environment says */
    int code = 0;
    if (tcl_open("test_cl_gemm_half", spec, &code) < 0) return code;
    const double t0 = cf_time_now();
    cf_cl_ctx *ctx = (cf_cl_ctx *)GPU->ctx;
    if (!cf_cl_gemm_half_engine(ctx)) {
        printf("SKIP test_cl_gemm_half: %s has no matrix engine with the GEMM on half operands in "
               "%s (%s; CF_MATRIX_ENGINE=emulate:nvidia-mma-sync runs its emulation anywhere, "
               "CF_GEMM_HALF=%s)\n",
               cf_be_name(GPU), tcl_round == 1 ? "bf16" : "fp16", ctx->mx_name,
               getenv("CF_GEMM_HALF"));
        cf_backend_destroy(GPU);
        cf_backend_destroy(CPU);
        return TCL_SKIP;
    }
    /* an engine named by CF_MATRIX_ENGINE must be the one that runs */
    const char *want = getenv("CF_MATRIX_ENGINE");
    if (want && *want)
        expect(strcasecmp(ctx->mx_name, want) == 0,
               "CF_MATRIX_ENGINE=%s: that engine runs the products (running: %s)", want,
               ctx->mx_name);
    int bn, bk;
    cf_cl_gemm_half_block(ctx, &bn, &bk);
    printf("precision %s on %s, blocks of 128 x %d, K slices of %d\n",
           tcl_round == 1 ? "bf16" : "fp16", ctx->mx_name, bn, bk);
    if (planted_mode) {
        half_case(1, 0, 20, 24, 40, 1.0f, 0.0f, 1, 0);
        return tcl_finish("test_cl_gemm_half", t0);
    }
    if (small_mode) {
        half_case(0, 1, 20, 136, 40, 1.0f, 0.0f, 1, 0);
        half_case(1, 0, 130, 9, 70, 0.5f, 1.0f, 2, 1);
        colsum_case(0, 33, 17, 48, 1);
        return tcl_finish("test_cl_gemm_half", t0);
    }
    test_split_rule();
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            half_case(ta, tb, 130, 200, 100, 1.0f, 0.0f, 1, 0);
            half_case(ta, tb, 257, 129, 300, 0.5f, 1.5f, 3, 0);
            half_case(ta, tb, 128, 128, 32, 1.0f, 0.0f, 1, ta ^ tb);
        }
    half_case(0, 1, 1, 1, 1, 1.0f, 0.0f, 1, 0);
    half_case(1, 0, 1, 300, 33, 2.0f, 0.0f, 1, 1);
    half_case(0, 0, 300, 1, 65, 1.0f, -1.0f, 2, 0);
    half_case(0, 1, 140, 150, 1000, 1.0f, 0.0f, 0, 1); /* the rule's split */
    /* 9 x 3 blocks: a full group of 8 block rows and a group of one (gh_gemm's block order) */
    half_case(0, 1, 1100, 260, 40, 1.0f, 0.0f, 1, 0);
    half_case(1, 0, 1100, 260, 40, 1.0f, 0.5f, 2, 1);
    gelu_case(0, 1, 150, 136, 96, 1, 1);
    gelu_case(0, 0, 150, 136, 96, 2, 1);
    gelu_case(0, 1, 150, 136, 600, 1, 2);
    gelu_case(1, 1, 150, 136, 600, 2, 2);
    colsum_case(0, 140, 130, 300, 1);
    colsum_case(1, 140, 130, 300, 2);
    colsum_case(0, 40, 20, 1, 1);
    rounding_case(0, 1, 70, 90, 200);
    rounding_case(1, 0, 70, 90, 200);
    deterministic();
    colsum_unrounded();
    dispatch_case();
    build_failure();
    return tcl_finish("test_cl_gemm_half", t0);
}
