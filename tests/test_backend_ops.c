/* clformer test: every op of struct cf_backend_ops, table-driven (after ggml's test-backend-ops).
 * One row per op: how to build its random inputs for a shape case, how to run it through the cf_be_*
 * wrappers, which of its tensors are outputs. Every case runs on every backend under test and its
 * outputs are compared with the CPU backend's:
 *   err  = max|a - ref| / (max|ref| + 1e-20)     (normalised maximum error, must be <= the row's tol)
 *   nmse = sum (a - ref)^2 / (sum ref^2 + 1e-20)  (ggml's NMSE, must be <= min(tol, 1e-7))
 * Tensors sit at an offset inside guard elements that must come back untouched; assigned outputs
 * start as NaN (an element left unwritten shows); outputs must be finite.
 *
 * --grad checks each backward op on the CPU backend against central finite differences of its
 * forward op (loss = sum(out * dout)), which double-checks the oracle the comparison relies on.
 *
 *   test_backend_ops [--grad | --cross] [--only OP[,OP...]] [--small] [SPEC...]
 * --only runs the rows whose name contains one of the comma-separated OPs; --small only the cases
 * whose tensors have at most SMALL_MAX elements each (for device simulators such as oclgrind).
 * SPECs (or CF_TEST_BACKENDS, comma-separated) name the backends to compare with the CPU backend
 * ("cpu", "opencl", "opencl:P:D", a device-name substring); default: "cpu" and every usable OpenCL
 * device. Without --grad/--cross both parts run. Exit 0: all ran and passed; 1: a failure; 77:
 * nothing failed but a part asked for could not run (no OpenCL device; CF_REQUIRE_OPENCL=1 makes
 * that a failure). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* setenv */
#endif
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_ops_common.h"
#include "cli/cli_env.h"
#ifdef CF_HAVE_OPENCL
#include "backend/opencl/cl_internal.h"
#endif

#define PAD 5            /* guard elements before and after every tensor */
#define GUARD 12345.678f /* their value */
#define MAXT 10          /* tensors per case */
#define MAXP 6           /* shape parameters per case */
#define MAXC 12          /* cases per row */
#define SKIP_CODE 77

/* The only place views are made (element index into the buffer). */
static cf_view tv(cf_buffer *b, size_t elem) { return cf_view_f32(b, elem); }
/* int32 tensors (tokens, targets) get i32 views: the wrappers check the dtype. */
static cf_view tv_i32(cf_buffer *b, size_t elem) { return cf_view_i32(b, elem); }
/* The only place a backend is created from a spec. */
static int open_backend(const char *spec, cf_backend **out) {
    static cf_backend_options o; /* the environment's options, as the CLI reads them */
    cf_cli_backend_options_from_env(&o);
    return cf_backend_create(spec, &o, out);
}

/* ---- cases ---------------------------------------------------------------------------------- */

enum {
    T_IN = 1,   /* read by the op (uploaded from init) */
    T_OUT = 2,  /* compared after the op */
    T_INT = 4,  /* int32 data (tokens, targets): never perturbed */
    T_ACC = 8,  /* gradient the op accumulates into (grad mode subtracts the initial values) */
    T_LOSS = 16 /* forward output that enters the finite-difference loss */
};

typedef struct {
    const char *name;
    size_t n;
    int flags;
    float *init; /* n elements (int32 bits for T_INT) */
} tensor;

typedef struct {
    int p[MAXP];
    int nt;
    tensor t[MAXT];
    cf_rng rng;
} tcase;

static float *add_t(tcase *c, const char *name, size_t n, int flags) {
    if (c->nt == MAXT) {
        fprintf(stderr, "FAIL: too many tensors in one case (raise MAXT)\n");
        exit(1);
    }
    tensor *t = &c->t[c->nt++];
    t->name = name;
    t->n = n;
    t->flags = flags;
    t->init = cft_floats(n);
    return t->init;
}
/* uniform in [-scale, scale) */
static float *add_rand(tcase *c, const char *name, size_t n, int flags, float scale) {
    float *x = add_t(c, name, n, flags);
    cft_rand(&c->rng, x, n, scale);
    return x;
}
static float *add_const(tcase *c, const char *name, size_t n, int flags, float v) {
    float *x = add_t(c, name, n, flags);
    for (size_t i = 0; i < n; i++) x[i] = v;
    return x;
}
/* int32 ids in [lo, hi) */
static void add_ids(tcase *c, const char *name, size_t n, int lo, int hi) {
    float *x = add_t(c, name, n, T_IN | T_INT);
    for (size_t i = 0; i < n; i++) {
        int32_t v = lo + (int32_t)(cf_rng_uniform(&c->rng) * (float)(hi - lo));
        if (v >= hi) v = hi - 1;
        memcpy(&x[i], &v, 4);
    }
}
static int find_t(const tcase *c, const char *name) {
    for (int i = 0; i < c->nt; i++)
        if (!strcmp(c->t[i].name, name)) return i;
    return -1;
}
static void free_case(tcase *c) {
    for (int i = 0; i < c->nt; i++) free(c->t[i].init);
    c->nt = 0;
}

/* A view of tensor `name` of the case on the buffers b (the data starts after the guards). */
static cf_view V_(const tcase *c, cf_buffer **b, const char *name) {
    int i = find_t(c, name);
    if (i < 0) {
        fprintf(stderr, "FAIL: the test's op row uses tensor '%s' it did not declare\n", name);
        exit(1);
    }
    return (c->t[i].flags & T_INT) ? tv_i32(b[i], PAD) : tv(b[i], PAD);
}
#define V(name) V_(c, b, name)
#define P c->p

/* ---- rows: build and run ------------------------------------------------------------------- */

typedef struct {
    const char *op;     /* printed name */
    const char *fwd;    /* forward row whose tensors (by name) feed this row's inputs, or NULL */
    int grad;           /* --grad: check "d<X>" outputs against finite differences of fwd in X */
    const char *pnames; /* names of the case parameters, space-separated */
    void (*build)(tcase *c);
    int (*run)(cf_backend *be, const tcase *c, cf_buffer **b);
    double tol;  /* normalised max error allowed */
    int tol_k;   /* >= 0: tol scales with sqrt(p[tol_k]) (a dot product's length) */
    int ncases;
    int cases[MAXC][MAXP];
} oprow;

/* gemm: p = ta tb M N K ab; ab picks (alpha, beta); strides are wider than the rows */
static const float AB[3][2] = {{1.0f, 0.0f}, {0.7f, -1.3f}, {1.0f, 1.0f}};
static int g_lda(const tcase *c) { return (P[0] ? P[2] : P[4]) + 3; }
static int g_ldb(const tcase *c) { return (P[1] ? P[4] : P[3]) + 1; }
static int g_ldc(const tcase *c) { return P[3] + 2; }
static void build_gemm_common(tcase *c, int bias, int ldc) {
    int ta = P[0], tb = P[1], M = P[2], N = P[3], K = P[4];
    add_rand(c, "A", (size_t)(ta ? K : M) * g_lda(c), T_IN, 1.0f);
    add_rand(c, "B", (size_t)(tb ? N : K) * g_ldb(c), T_IN, 1.0f);
    float *C = add_rand(c, "C", (size_t)M * ldc, T_IN | T_OUT, 1.0f);
    if (AB[P[5]][1] == 0.0f) /* beta 0 must not read C: NaN there, the gap between rows kept */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = NAN;
    if (bias) add_rand(c, "bias", (size_t)N, T_IN, 1.0f);
}
static void build_gemm(tcase *c) { build_gemm_common(c, 0, g_ldc(c)); }
static int run_gemm(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_gemm(be, P[0], P[1], P[2], P[3], P[4], AB[P[5]][0], V("A"), g_lda(c), V("B"),
                      g_ldb(c), AB[P[5]][1], V("C"), g_ldc(c));
}

/* Slots without a cf_be_* wrapper of their own are called here as the wrappers call them, with the
 * fallback the contract names when a backend leaves the optional slot NULL. */
static int slot_add_bias(cf_backend *be, cf_view out, cf_view bias, int N, int OC) {
    return be->ops->add_bias(be, out, bias, N, OC);
}
static int slot_bias_backward(cf_backend *be, cf_view dbias, cf_view dout, int N, int OC) {
    return be->ops->bias_backward(be, dbias, dout, N, OC);
}
static int slot_gemm_bias(cf_backend *be, int ta, int tb, int M, int N, int K, float alpha,
                          cf_view A, int lda, cf_view B, int ldb, float beta, cf_view C, int ldc,
                          cf_view bias) {
    if (be->ops->gemm_bias)
        return be->ops->gemm_bias(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias);
    CF_TRY(cf_be_gemm(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
    for (int i = 0; i < M; i++) /* add_bias works on packed rows: one row at a time */
        CF_TRY(slot_add_bias(be, cf_view_add(C, (size_t)i * ldc), bias, 1, N));
    return CF_OK;
}
/* X has C's shape with ldc == N */
static int slot_gemm_gelu(cf_backend *be, int ta, int tb, int M, int N, int K, cf_view A, int lda,
                          cf_view B, int ldb, cf_view C, cf_view bias, cf_view X, int backward) {
    if (be->ops->gemm_gelu)
        return be->ops->gemm_gelu(be, ta, tb, M, N, K, A, lda, B, ldb, C, bias, X, backward);
    CF_TRY(cf_be_gemm(be, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N));
    if (backward) return cf_be_gelu_backward(be, C, X, C, (size_t)M * N);
    if (bias.buf) CF_TRY(slot_add_bias(be, C, bias, M, N));
    return cf_be_gelu_forward(be, X, C, (size_t)M * N);
}
static int slot_weight_bias_backward(cf_backend *be, cf_view dweight, cf_view dbias, cf_view dout,
                                     cf_view inp, int N, int IC, int OC) {
    if (be->ops->weight_bias_backward)
        return be->ops->weight_bias_backward(be, dweight, dbias, dout, inp, N, IC, OC);
    CF_TRY(cf_be_gemm(be, 1, 0, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC));
    return slot_bias_backward(be, dbias, dout, N, OC);
}

/* gemm_bias with packed C (ldc == N): the OpenCL backend's gemm_bias refuses other strides */
static void build_gemm_bias(tcase *c) { build_gemm_common(c, 1, P[3]); }
static int run_gemm_bias(cf_backend *be, const tcase *c, cf_buffer **b) {
    return slot_gemm_bias(be, P[0], P[1], P[2], P[3], P[4], AB[P[5]][0], V("A"), g_lda(c), V("B"),
                          g_ldb(c), AB[P[5]][1], V("C"), P[3], V("bias"));
}

/* gemm_gelu: p = ta tb M N K hasbias; C and X packed (ldc = N) */
static void build_gemm_gelu_fwd(tcase *c) {
    int ta = P[0], tb = P[1], M = P[2], N = P[3], K = P[4];
    add_rand(c, "A", (size_t)(ta ? K : M) * g_lda(c), T_IN, 1.0f);
    add_rand(c, "B", (size_t)(tb ? N : K) * g_ldb(c), T_IN, 1.0f);
    add_const(c, "C", (size_t)M * N, T_OUT, NAN);
    add_const(c, "X", (size_t)M * N, T_OUT, NAN);
    if (P[5]) add_rand(c, "bias", (size_t)N, T_IN, 1.0f);
}
static int run_gemm_gelu_fwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return slot_gemm_gelu(be, P[0], P[1], P[2], P[3], P[4], V("A"), g_lda(c), V("B"), g_ldb(c),
                          V("C"), P[5] ? V("bias") : CF_VIEW_NULL, V("X"), 0);
}
static void build_gemm_gelu_bwd(tcase *c) {
    int ta = P[0], tb = P[1], M = P[2], N = P[3], K = P[4];
    add_rand(c, "A", (size_t)(ta ? K : M) * g_lda(c), T_IN, 1.0f);
    add_rand(c, "B", (size_t)(tb ? N : K) * g_ldb(c), T_IN, 1.0f);
    add_const(c, "C", (size_t)M * N, T_OUT, NAN);
    add_rand(c, "X", (size_t)M * N, T_IN, 3.0f); /* pre-activation, GELU's curved range */
}
static int run_gemm_gelu_bwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return slot_gemm_gelu(be, P[0], P[1], P[2], P[3], P[4], V("A"), g_lda(c), V("B"), g_ldb(c),
                          V("C"), CF_VIEW_NULL, V("X"), 1);
}

/* linear layers: p = N IC OC */
static void build_matmul_fwd(tcase *c) {
    int N = P[0], IC = P[1], OC = P[2];
    add_const(c, "out", (size_t)N * OC, T_OUT | T_LOSS, NAN);
    add_rand(c, "inp", (size_t)N * IC, T_IN, 1.0f);
    add_rand(c, "weight", (size_t)OC * IC, T_IN, 0.5f);
    add_rand(c, "bias", (size_t)OC, T_IN, 0.5f);
}
static int run_matmul_fwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_matmul_forward(be, V("out"), V("inp"), V("weight"), V("bias"), P[0], P[1], P[2]);
}
static void build_matmul_bwd_common(tcase *c, int set) {
    int N = P[0], IC = P[1], OC = P[2];
    if (set) add_const(c, "dinp", (size_t)N * IC, T_OUT, NAN);
    else add_rand(c, "dinp", (size_t)N * IC, T_OUT | T_ACC, 1.0f);
    add_rand(c, "dweight", (size_t)OC * IC, T_OUT | T_ACC, 1.0f);
    add_rand(c, "dbias", (size_t)OC, T_OUT | T_ACC, 1.0f);
    add_rand(c, "dout", (size_t)N * OC, T_IN, 1.0f);
    add_rand(c, "inp", (size_t)N * IC, T_IN, 1.0f);
    add_rand(c, "weight", (size_t)OC * IC, T_IN, 0.5f);
}
static void build_matmul_bwd(tcase *c) { build_matmul_bwd_common(c, 0); }
static void build_matmul_bwd_set(tcase *c) { build_matmul_bwd_common(c, 1); }
static int run_matmul_bwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_matmul_backward(be, V("dinp"), V("dweight"), V("dbias"), V("dout"), V("inp"),
                                 V("weight"), P[0], P[1], P[2]);
}
static int run_matmul_bwd_set(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_matmul_backward_set(be, V("dinp"), V("dweight"), V("dbias"), V("dout"), V("inp"),
                                     V("weight"), P[0], P[1], P[2]);
}
static void build_wbb(tcase *c) {
    int N = P[0], IC = P[1], OC = P[2];
    add_rand(c, "dweight", (size_t)OC * IC, T_OUT | T_ACC, 1.0f);
    add_rand(c, "dbias", (size_t)OC, T_OUT | T_ACC, 1.0f);
    add_rand(c, "dout", (size_t)N * OC, T_IN, 1.0f);
    add_rand(c, "inp", (size_t)N * IC, T_IN, 1.0f);
}
static int run_wbb(cf_backend *be, const tcase *c, cf_buffer **b) {
    return slot_weight_bias_backward(be, V("dweight"), V("dbias"), V("dout"), V("inp"), P[0],
                                     P[1], P[2]);
}
/* pre(N,OC), act = gelu(pre) */
static void build_matmul_gelu_fwd(tcase *c) {
    int N = P[0], IC = P[1], OC = P[2];
    add_const(c, "pre", (size_t)N * OC, T_OUT, NAN);
    add_const(c, "act", (size_t)N * OC, T_OUT, NAN);
    add_rand(c, "inp", (size_t)N * IC, T_IN, 1.0f);
    add_rand(c, "weight", (size_t)OC * IC, T_IN, 0.5f);
    add_rand(c, "bias", (size_t)OC, T_IN, 0.5f);
}
static int run_matmul_gelu_fwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_matmul_gelu_forward(be, V("pre"), V("act"), V("inp"), V("weight"), V("bias"),
                                     P[0], P[1], P[2]);
}
/* The forward that matmul_gelu_backward_set differentiates: inp(N,IC) = gelu(pre), out(N,OC) =
 * inp @ weight^T + bias. */
static void build_gelu_matmul(tcase *c) {
    int N = P[0], IC = P[1], OC = P[2];
    add_const(c, "out", (size_t)N * OC, T_OUT | T_LOSS, NAN);
    add_const(c, "inp", (size_t)N * IC, T_OUT, NAN);
    add_rand(c, "pre", (size_t)N * IC, T_IN, 2.0f);
    add_rand(c, "weight", (size_t)OC * IC, T_IN, 0.5f);
    add_rand(c, "bias", (size_t)OC, T_IN, 0.5f);
}
static int run_gelu_matmul(cf_backend *be, const tcase *c, cf_buffer **b) {
    CF_TRY(cf_be_gelu_forward(be, V("inp"), V("pre"), (size_t)P[0] * P[1]));
    return cf_be_matmul_forward(be, V("out"), V("inp"), V("weight"), V("bias"), P[0], P[1], P[2]);
}
static void build_matmul_gelu_bwd(tcase *c) {
    int N = P[0], IC = P[1], OC = P[2];
    add_const(c, "dpre", (size_t)N * IC, T_OUT, NAN);
    add_rand(c, "dweight", (size_t)OC * IC, T_OUT | T_ACC, 1.0f);
    add_rand(c, "dbias", (size_t)OC, T_OUT | T_ACC, 1.0f);
    add_rand(c, "dout", (size_t)N * OC, T_IN, 1.0f);
    add_rand(c, "inp", (size_t)N * IC, T_IN, 1.0f);
    add_rand(c, "weight", (size_t)OC * IC, T_IN, 0.5f);
    add_rand(c, "pre", (size_t)N * IC, T_IN, 2.0f);
}
static int run_matmul_gelu_bwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_matmul_gelu_backward_set(be, V("dpre"), V("dweight"), V("dbias"), V("dout"),
                                          V("inp"), V("weight"), V("pre"), P[0], P[1], P[2]);
}

/* bias: p = N OC */
static void build_add_bias(tcase *c) {
    add_rand(c, "out", (size_t)P[0] * P[1], T_IN | T_OUT | T_LOSS, 1.0f);
    add_rand(c, "bias", (size_t)P[1], T_IN, 1.0f);
}
static int run_add_bias(cf_backend *be, const tcase *c, cf_buffer **b) {
    return slot_add_bias(be, V("out"), V("bias"), P[0], P[1]);
}
static void build_bias_bwd(tcase *c) {
    add_rand(c, "dbias", (size_t)P[1], T_OUT | T_ACC, 1.0f);
    add_rand(c, "dout", (size_t)P[0] * P[1], T_IN, 1.0f);
}
static int run_bias_bwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return slot_bias_backward(be, V("dbias"), V("dout"), P[0], P[1]);
}

/* a view of the tensor, or none (NULL buffer) when the case leaves it out */
#define VOPT(on, name) ((on) ? V(name) : CF_VIEW_NULL)

/* encoder: p = B T C V nopos (nopos: no position table, wpe and dwpe left out) */
static void build_enc_fwd(tcase *c) {
    int B = P[0], T = P[1], C = P[2], Vv = P[3];
    add_const(c, "out", (size_t)B * T * C, T_OUT | T_LOSS, NAN);
    add_ids(c, "tokens", (size_t)B * T, 0, Vv);
    add_rand(c, "wte", (size_t)Vv * C, T_IN, 1.0f);
    if (!P[4]) add_rand(c, "wpe", (size_t)T * C, T_IN, 1.0f);
}
static int run_enc_fwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_encoder_forward(be, V("out"), V("tokens"), V("wte"), VOPT(!P[4], "wpe"), P[0],
                                 P[1], P[2], P[3]);
}
static void build_enc_bwd(tcase *c) {
    int B = P[0], T = P[1], C = P[2], Vv = P[3];
    add_rand(c, "dwte", (size_t)Vv * C, T_OUT | T_ACC, 1.0f);
    if (!P[4]) add_rand(c, "dwpe", (size_t)T * C, T_OUT | T_ACC, 1.0f);
    add_rand(c, "dout", (size_t)B * T * C, T_IN, 1.0f);
    add_ids(c, "tokens", (size_t)B * T, 0, Vv);
}
static int run_enc_bwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_encoder_backward(be, V("dwte"), VOPT(!P[4], "dwpe"), V("dout"), V("tokens"), P[0],
                                  P[1], P[2], P[3]);
}

/* layernorm: p = N C nobias (nobias: bias and dbias left out, eps 1e-3 instead of 1e-5) */
static float ln_eps(const tcase *c) { return P[2] ? 1e-3f : 1e-5f; }
static void build_ln_fwd(tcase *c) {
    int N = P[0], C = P[1];
    add_const(c, "out", (size_t)N * C, T_OUT | T_LOSS, NAN);
    add_const(c, "mean", (size_t)N, T_OUT, NAN);
    add_const(c, "rstd", (size_t)N, T_OUT, NAN);
    float *x = add_rand(c, "inp", (size_t)N * C, T_IN, 1.0f);
    for (size_t i = 0; i < (size_t)N * C; i++) x[i] += 0.3f; /* a non-zero mean */
    add_rand(c, "weight", (size_t)C, T_IN, 1.0f);
    if (!P[2]) add_rand(c, "bias", (size_t)C, T_IN, 1.0f);
}
static int run_ln_fwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_layernorm_forward(be, V("out"), V("mean"), V("rstd"), V("inp"), V("weight"),
                                   VOPT(!P[2], "bias"), P[0], P[1], ln_eps(c));
}
static void build_ln_bwd(tcase *c) {
    int N = P[0], C = P[1];
    add_rand(c, "dinp", (size_t)N * C, T_OUT | T_ACC, 1.0f);
    add_rand(c, "dweight", (size_t)C, T_OUT | T_ACC, 1.0f);
    if (!P[2]) add_rand(c, "dbias", (size_t)C, T_OUT | T_ACC, 1.0f);
    add_rand(c, "dout", (size_t)N * C, T_IN, 1.0f);
    add_rand(c, "inp", (size_t)N * C, T_IN, 1.0f);
    add_rand(c, "weight", (size_t)C, T_IN, 1.0f);
    add_rand(c, "mean", (size_t)N, T_IN, 0.1f);        /* replaced by the forward's */
    add_const(c, "rstd", (size_t)N, T_IN, 1.0f);       /* replaced by the forward's */
}
static int run_ln_bwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_layernorm_backward(be, V("dinp"), V("dweight"), VOPT(!P[2], "dbias"), V("dout"),
                                    V("inp"), V("weight"), V("mean"), V("rstd"), P[0], P[1]);
}

/* attention: p = B T NH KVH hs; qkv rows (NH + 2 KVH) hs, out rows NH hs */
static void build_att_fwd(tcase *c) {
    int B = P[0], T = P[1], NH = P[2], KVH = P[3], hs = P[4];
    add_const(c, "out", (size_t)B * T * NH * hs, T_OUT | T_LOSS, NAN);
    add_const(c, "att", (size_t)B * NH * T * T, T_OUT, NAN);
    add_rand(c, "qkv", (size_t)B * T * (NH + 2 * KVH) * hs, T_IN, 1.0f);
}
static int run_att_fwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_attention_forward(be, V("out"), V("att"), V("qkv"), P[0], P[1], P[2], P[3], P[4]);
}
static void build_att_bwd(tcase *c) {
    int B = P[0], T = P[1], NH = P[2], KVH = P[3], hs = P[4];
    size_t tt = (size_t)B * NH * T * T, nqkv = (size_t)B * T * (NH + 2 * KVH) * hs;
    add_const(c, "dqkv", nqkv, T_OUT, NAN);
    add_rand(c, "datt", tt, T_IN, 1.0f);    /* scratch */
    add_rand(c, "dpreatt", tt, T_IN, 1.0f); /* scratch */
    add_rand(c, "dout", (size_t)B * T * NH * hs, T_IN, 1.0f);
    add_rand(c, "qkv", nqkv, T_IN, 1.0f); /* replaced by the forward's */
    add_const(c, "att", tt, T_IN, 0.0f);  /* replaced by the forward's */
}
static int run_att_bwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_attention_backward(be, V("dqkv"), V("datt"), V("dpreatt"), V("dout"), V("qkv"),
                                    V("att"), P[0], P[1], P[2], P[3], P[4]);
}

/* elementwise: p = n [inplace] */
static void build_gelu_fwd(tcase *c) {
    add_const(c, "out", (size_t)P[0], T_OUT | T_LOSS, NAN);
    add_rand(c, "inp", (size_t)P[0], T_IN, 4.0f);
}
static int run_gelu_fwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_gelu_forward(be, V("out"), V("inp"), (size_t)P[0]);
}
static void build_gelu_bwd(tcase *c) {
    /* in place (p[1]): dinp is dout's memory, so dout is the compared output */
    if (!P[1]) add_const(c, "dinp", (size_t)P[0], T_OUT, NAN);
    add_rand(c, "inp", (size_t)P[0], T_IN, 4.0f);
    add_rand(c, "dout", (size_t)P[0], T_IN | (P[1] ? T_OUT : 0), 1.0f);
}
static int run_gelu_bwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_gelu_backward(be, P[1] ? V("dout") : V("dinp"), V("inp"), V("dout"), (size_t)P[0]);
}
/* act: p = n act [inplace] (act: enum cf_act); relu2's kink at 0 is kept away from the
 * finite differences' steps */
static void build_act_fwd(tcase *c) {
    add_const(c, "out", (size_t)P[0], T_OUT | T_LOSS, NAN);
    float *x = add_rand(c, "inp", (size_t)P[0], T_IN, 4.0f);
    for (int i = 0; P[1] == CF_ACT_RELU2 && i < P[0]; i++)
        if (fabsf(x[i]) < 0.01f) x[i] = 0.5f;
}
static int run_act_fwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_act_forward(be, (enum cf_act)P[1], V("out"), V("inp"), (size_t)P[0]);
}
static void build_act_bwd(tcase *c) {
    if (!P[2]) add_const(c, "dinp", (size_t)P[0], T_OUT, NAN);
    float *x = add_rand(c, "inp", (size_t)P[0], T_IN, 4.0f);
    for (int i = 0; P[1] == CF_ACT_RELU2 && i < P[0]; i++)
        if (fabsf(x[i]) < 0.01f) x[i] = 0.5f;
    add_rand(c, "dout", (size_t)P[0], T_IN | (P[2] ? T_OUT : 0), 1.0f);
}
static int run_act_bwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_act_backward(be, (enum cf_act)P[1], P[2] ? V("dout") : V("dinp"), V("inp"),
                              V("dout"), (size_t)P[0]);
}

/* swiglu: p = N F; inp (N, 2F) = [gate | up] */
static void build_swiglu_fwd(tcase *c) {
    add_const(c, "out", (size_t)P[0] * P[1], T_OUT | T_LOSS, NAN);
    add_rand(c, "inp", 2 * (size_t)P[0] * P[1], T_IN, 4.0f);
}
static int run_swiglu_fwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_swiglu_forward(be, V("out"), V("inp"), P[0], P[1]);
}
static void build_swiglu_bwd(tcase *c) {
    add_const(c, "dinp", 2 * (size_t)P[0] * P[1], T_OUT, NAN);
    add_rand(c, "inp", 2 * (size_t)P[0] * P[1], T_IN, 4.0f);
    add_rand(c, "dout", (size_t)P[0] * P[1], T_IN, 1.0f);
}
static int run_swiglu_bwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_swiglu_backward(be, V("dinp"), V("inp"), V("dout"), P[0], P[1]);
}

/* rmsnorm: p = N G C ld acc; rows of ld elements holding G groups of C (the rest: columns the op
 * must leave alone, so out starts random, not NaN); the backward assigns dinp (acc 0: the groups
 * start as NaN, the columns between them as 0, which must come back untouched) or adds to it
 * (acc 1) */
static void build_rms_fwd(tcase *c) {
    int N = P[0], G = P[1], C = P[2], ld = P[3];
    float *o = add_rand(c, "out", (size_t)N * ld, T_IN | T_OUT | T_LOSS, 1.0f);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < G * C; k++) o[(size_t)i * ld + k] = NAN;
    add_const(c, "rstd", (size_t)N * G, T_OUT, NAN);
    add_rand(c, "inp", (size_t)N * ld, T_IN, 1.5f);
    add_rand(c, "weight", (size_t)C, T_IN, 1.0f);
}
static float rms_eps(const tcase *c) { return P[1] > 1 ? 1e-6f : 1e-5f; }
static int run_rms_fwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_rmsnorm_forward(be, V("out"), V("rstd"), V("inp"), V("weight"), P[0], P[1], P[2],
                                 P[3], rms_eps(c));
}
static void build_rms_bwd(tcase *c) {
    int N = P[0], G = P[1], C = P[2], ld = P[3];
    if (P[4]) add_rand(c, "dinp", (size_t)N * ld, T_OUT | T_ACC, 1.0f);
    else {
        float *g = add_const(c, "dinp", (size_t)N * ld, T_OUT, 0.0f);
        for (int i = 0; i < N; i++)
            for (int k = 0; k < G * C; k++) g[(size_t)i * ld + k] = NAN;
    }
    add_rand(c, "dweight", (size_t)C, T_OUT | T_ACC, 1.0f);
    float *d = add_rand(c, "dout", (size_t)N * ld, T_IN, 1.0f);
    for (int i = 0; i < N; i++) /* outside the groups the forward's output is a constant */
        for (int k = G * C; k < ld; k++) d[(size_t)i * ld + k] = 0.0f;
    add_rand(c, "inp", (size_t)N * ld, T_IN, 1.5f);
    add_rand(c, "weight", (size_t)C, T_IN, 1.0f);
    add_const(c, "rstd", (size_t)N * G, T_IN, 1.0f); /* replaced by the forward's */
}
static int run_rms_bwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_rmsnorm_backward(be, V("dinp"), V("dweight"), V("dout"), V("inp"), V("weight"),
                                  V("rstd"), P[0], P[1], P[2], P[3], P[4]);
}

/* rope: p = B T H hs ld pos0. The forward row is copy + rope (so that the rotated input is not
 * the op's output buffer); the backward row copies dout and applies the inverse rotation. The
 * (cos, sin) table is built here in double, as the model builds it. */
static float *rope_cs(tcase *c) {
    int T = P[1], hs = P[3], Pn = P[5] + P[1];
    float *cs = add_t(c, "cs", (size_t)Pn * hs, T_IN | T_INT); /* data, never perturbed */
    for (int p = 0; p < Pn; p++)
        for (int i = 0; i < hs / 2; i++) {
            const double a = p * pow(10000.0, -2.0 * i / hs);
            cs[((size_t)p * (hs / 2) + i) * 2] = (float)cos(a);
            cs[((size_t)p * (hs / 2) + i) * 2 + 1] = (float)sin(a);
        }
    (void)T;
    return cs;
}
static void build_rope_fwd(tcase *c) {
    size_t n = (size_t)P[0] * P[1] * P[4];
    add_rand(c, "out", n, T_OUT | T_LOSS, 1.0f);
    add_rand(c, "inp", n, T_IN, 2.0f);
    rope_cs(c);
}
static int run_rope_fwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    CF_TRY(cf_be_copy(be, V("out"), V("inp"), (size_t)P[0] * P[1] * P[4]));
    return cf_be_rope(be, V("out"), cf_view_f32(b[find_t(c, "cs")], PAD), P[0], P[1], P[2], P[3],
                      P[4], P[5], 0);
}
static void build_rope_bwd(tcase *c) {
    size_t n = (size_t)P[0] * P[1] * P[4];
    add_rand(c, "dinp", n, T_OUT, 1.0f);
    add_rand(c, "dout", n, T_IN, 1.0f);
    rope_cs(c);
}
static int run_rope_bwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    CF_TRY(cf_be_copy(be, V("dinp"), V("dout"), (size_t)P[0] * P[1] * P[4]));
    return cf_be_rope(be, V("dinp"), cf_view_f32(b[find_t(c, "cs")], PAD), P[0], P[1], P[2],
                      P[3], P[4], P[5], 1);
}

static void build_residual(tcase *c) {
    add_const(c, "out", (size_t)P[0], T_OUT | T_LOSS, NAN);
    add_rand(c, "a", (size_t)P[0], T_IN, 1.0f);
    add_rand(c, "b", (size_t)P[0], T_IN, 1.0f);
}
static int run_residual(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_residual_forward(be, V("out"), V("a"), V("b"), (size_t)P[0]);
}
static void build_axpy(tcase *c) {
    add_rand(c, "y", (size_t)P[0], T_IN | T_OUT, 1.0f);
    add_rand(c, "x", (size_t)P[0], T_IN, 1.0f);
}
static int run_axpy(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_axpy(be, V("y"), V("x"), -0.37f, (size_t)P[0]);
}

/* cross-entropy: p = N V [inplace] cap (the logit soft-cap, 0 = off); every 5th target is -1
 * (ignored) */
static void build_ce_common(tcase *c, int fused) {
    int N = P[0], Vv = P[1];
    add_const(c, "losses", (size_t)N, T_OUT | T_LOSS, NAN);
    if (fused && !P[2]) add_const(c, "dlogits", (size_t)N * Vv, T_OUT, NAN);
    add_rand(c, "logits", (size_t)N * Vv, T_IN | (fused && P[2] ? T_OUT : 0), 3.0f);
    add_ids(c, "targets", (size_t)N, 0, Vv);
    float *t = c->t[find_t(c, "targets")].init;
    for (int i = 4; i < N; i += 5) {
        int32_t ign = -1;
        memcpy(&t[i], &ign, 4);
    }
}
static void build_ce_fwd(tcase *c) { build_ce_common(c, 0); }
static void build_ce_fused(tcase *c) { build_ce_common(c, 1); }
static int run_ce_fwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_crossentropy_forward(be, V("losses"), V("logits"), V("targets"), P[0], P[1],
                                      (float)P[3]);
}
#define CE_DLOSS 0.37f /* the fused op's dloss: the loss weight of every row in --grad */
static int run_ce_fused(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_crossentropy_fused(be, V("losses"), P[2] ? V("logits") : V("dlogits"),
                                    V("logits"), V("targets"), P[0], P[1], CE_DLOSS, (float)P[3]);
}

/* reduce_sum: p = n square; x in [-0.5, 1.5) so the sum does not cancel to noise */
static void build_reduce(tcase *c) {
    add_const(c, "out", 1, T_OUT, NAN);
    float *x = add_rand(c, "x", (size_t)P[0], T_IN, 1.0f);
    for (int i = 0; i < P[0]; i++) x[i] += 0.5f;
}
static int run_reduce(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_reduce_sum(be, V("out"), V("x"), (size_t)P[0], P[1]);
}

/* adamw: p = n t (step), three steps from t */
static void build_adamw(tcase *c) {
    size_t n = (size_t)P[0];
    add_rand(c, "params", n, T_IN | T_OUT, 1.0f);
    add_rand(c, "grads", n, T_IN, 1.0f);
    add_rand(c, "m", n, T_IN | T_OUT, 0.1f);
    float *v = add_rand(c, "v", n, T_IN | T_OUT, 0.01f);
    for (size_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
}
static int run_adamw(cf_backend *be, const tcase *c, cf_buffer **b) {
    for (int s = 0; s < 3; s++)
        CF_TRY(cf_be_adamw(be, V("params"), V("grads"), V("m"), V("v"), (size_t)P[0], 1e-2f,
                           0.9f, 0.95f, 1e-8f, 0.1f, 0.8f, P[1] + s));
    return CF_OK;
}

/* copy / fill: p = n off (extra element offset of the views) */
static void build_copy(tcase *c) {
    add_rand(c, "dst", (size_t)P[0] + P[1], T_IN | T_OUT, 10.0f);
    add_rand(c, "src", (size_t)P[0] + P[1], T_IN, 1.0f);
}
static int run_copy(cf_backend *be, const tcase *c, cf_buffer **b) {
    /* the source from its start, the destination at +off (and the rest left as it was) */
    return cf_be_copy(be, cf_view_add(V("dst"), (size_t)P[1]), V("src"), (size_t)P[0]);
}
static void build_fill(tcase *c) { add_rand(c, "dst", (size_t)P[0] + P[1], T_OUT | T_IN, 1.0f); }
static int run_fill(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_fill(be, cf_view_add(V("dst"), (size_t)P[1]), -2.5f, (size_t)P[0]);
}
/* upload/download at offsets: p = n off. host data goes to dst at +off; dst's window
 * [off/2, off/2 + n) is downloaded and uploaded again into back (whole buffer, guards included,
 * so a download that wrote beyond n elements or an upload at the wrong place shows). */
static void build_xfer(tcase *c) {
    add_const(c, "dst", (size_t)P[0] + P[1], T_OUT | T_IN, 7.0f);
    add_const(c, "back", (size_t)P[0], T_OUT, NAN);
    add_rand(c, "host", (size_t)P[0], T_INT, 1.0f); /* host data only, not on the device */
}
static int run_xfer(cf_backend *be, const tcase *c, cf_buffer **b) {
    size_t n = (size_t)P[0], off = (size_t)P[1];
    const float *host = c->t[find_t(c, "host")].init;
    CF_TRY(cf_be_upload(be, cf_view_add(V("dst"), off), host, n * 4));
    float *tmp = cft_floats(n + 2);
    tmp[n] = tmp[n + 1] = GUARD;
    int rc = cf_be_download(be, tmp, cf_view_add(V("dst"), off / 2), n * 4);
    if (rc == CF_OK && (tmp[n] != GUARD || tmp[n + 1] != GUARD)) {
        printf("  download of %zu floats wrote past its end\n", n);
        rc = CF_ERR_INVALID;
    }
    if (rc == CF_OK) rc = cf_be_upload(be, V("back"), tmp, n * 4);
    free(tmp);
    return rc;
}

/* clang-format off */
static const oprow ROWS[] = {
    {"gemm", NULL, 0, "ta tb M N K ab", build_gemm, run_gemm, 2e-6, 4, 8,
     {{0,0,1,1,1,0}, {0,1,7,5,3,1}, {1,0,33,17,65,2}, {1,1,129,67,31,1}, {0,0,200,96,130,0},
      {0,1,64,64,64,2}, {1,0,5,300,9,0}, {1,1,1,50,200,2}}},
    {"gemm_bias", NULL, 0, "ta tb M N K ab", build_gemm_bias, run_gemm_bias, 2e-6, 4, 5,
     {{0,1,1,1,1,0}, {0,0,9,13,5,1}, {1,0,70,33,17,0}, {1,1,31,129,65,2}, {0,1,128,192,96,0}}},
    {"gemm_gelu forward", NULL, 0, "ta tb M N K bias", build_gemm_gelu_fwd, run_gemm_gelu_fwd,
     2e-6, 4, 6,
     {{0,1,1,1,1,1}, {0,0,7,9,5,0}, {1,0,33,65,17,1}, {1,1,17,31,63,0}, {0,1,128,96,64,1},
      {0,0,100,257,33,1}}},
    {"gemm_gelu backward", NULL, 0, "ta tb M N K -", build_gemm_gelu_bwd, run_gemm_gelu_bwd,
     2e-6, 4, 5,
     {{0,0,1,1,1,0}, {0,1,7,9,5,0}, {1,0,33,65,17,0}, {1,1,17,31,63,0}, {0,0,128,96,64,0}}},
    {"matmul_forward (gemm_bias)", NULL, 0, "N IC OC", build_matmul_fwd, run_matmul_fwd, 2e-6,
     1, 4, {{1,1,1}, {5,7,3}, {33,65,17}, {128,96,192}}},
    {"matmul_backward (weight_bias_backward)", "matmul_forward (gemm_bias)", 1, "N IC OC",
     build_matmul_bwd, run_matmul_bwd, 2e-6, 0, 4, {{1,1,1}, {5,7,3}, {33,65,17}, {128,96,192}}},
    {"matmul_backward_set", "matmul_forward (gemm_bias)", 1, "N IC OC", build_matmul_bwd_set,
     run_matmul_bwd_set, 2e-6, 0, 3, {{3,2,5}, {17,31,9}, {96,64,130}}},
    {"matmul_gelu_forward", NULL, 0, "N IC OC", build_matmul_gelu_fwd, run_matmul_gelu_fwd, 2e-6,
     1, 4, {{1,1,1}, {5,7,3}, {33,65,17}, {128,96,192}}},
    {"gelu+matmul_forward", NULL, 0, "N IC OC", build_gelu_matmul, run_gelu_matmul, 2e-6, 1, 3,
     {{2,3,4}, {9,17,5}, {64,96,33}}},
    {"matmul_gelu_backward_set", "gelu+matmul_forward", 1, "N IC OC", build_matmul_gelu_bwd,
     run_matmul_gelu_bwd, 2e-6, 2, 4, {{2,3,4}, {9,17,5}, {64,96,33}, {128,192,96}}},
    {"weight_bias_backward", "matmul_forward (gemm_bias)", 1, "N IC OC", build_wbb, run_wbb, 2e-6,
     0, 4, {{1,1,1}, {5,7,3}, {65,33,17}, {256,96,128}}},
    {"add_bias", NULL, 0, "N OC", build_add_bias, run_add_bias, 1e-7, -1, 4,
     {{1,1}, {3,7}, {33,129}, {256,384}}},
    {"bias_backward", "add_bias", 1, "N OC", build_bias_bwd, run_bias_bwd, 1e-5, -1, 4,
     {{1,1}, {3,7}, {33,129}, {1000,97}}},
    {"encoder_forward", NULL, 0, "B T C V nopos", build_enc_fwd, run_enc_fwd, 1e-7, -1, 6,
     {{1,1,1,1,0}, {2,5,7,3,1}, {2,5,7,3,0}, {3,17,33,50,0}, {4,64,96,500,0}, {3,17,33,50,1},
      {1,1,3,2,1}}},
    {"encoder_backward", "encoder_forward", 1, "B T C V nopos", build_enc_bwd, run_enc_bwd, 1e-6,
     -1, 7, {{1,1,1,1,0}, {2,5,7,3,1}, {2,5,7,3,0}, {3,17,33,50,0}, {4,64,96,500,0},
     {8,33,20,2,0}, {3,17,33,50,1}, {1,1,3,2,1}}},
    {"layernorm_forward", NULL, 0, "N C nobias", build_ln_fwd, run_ln_fwd, 1e-5, -1, 8,
     {{1,1,0}, {3,7,1}, {3,7,0}, {17,129,0}, {64,768,0}, {5,1031,0}, {17,129,1}, {1,5,1}}},
    {"layernorm_backward", "layernorm_forward", 1, "N C nobias", build_ln_bwd, run_ln_bwd, 2e-5,
     -1, 8, {{1,2,0}, {3,7,1}, {3,7,0}, {17,129,0}, {64,768,0}, {5,1031,0}, {17,129,1},
     {1,5,1}}},
    {"attention_forward", NULL, 0, "B T NH KVH hs", build_att_fwd, run_att_fwd, 2e-5, -1, 11,
     {{1,1,1,1,4}, {2,7,4,2,4}, {2,7,3,3,4}, {1,33,2,2,10}, {2,65,4,4,16}, {1,130,2,2,48},
      {2,33,6,2,20}, {1,65,4,1,16}, {2,37,8,2,8}, {1,70,8,1,6}, {2,1,4,2,12}}},
    {"attention_backward", "attention_forward", 1, "B T NH KVH hs", build_att_bwd, run_att_bwd,
     5e-5, -1, 11, {{1,1,1,1,4}, {2,7,4,2,4}, {2,7,3,3,4}, {1,33,2,2,10}, {2,65,4,4,16},
     {1,130,2,2,48}, {2,33,6,2,20}, {1,65,4,1,16}, {2,37,8,2,8}, {1,70,8,1,6}, {2,1,4,2,12}}},
    {"gelu_forward", NULL, 0, "n -", build_gelu_fwd, run_gelu_fwd, 1e-6, -1, 4,
     {{1,0}, {7,0}, {1001,0}, {65537,0}}},
    {"gelu_backward", "gelu_forward", 1, "n inplace", build_gelu_bwd, run_gelu_bwd, 1e-6, -1, 5,
     {{1,0}, {7,0}, {1001,0}, {65537,0}, {257,1}}},
    {"act_forward", NULL, 0, "n act -", build_act_fwd, run_act_fwd, 1e-6, -1, 8,
     {{7,1,0}, {7,2,0}, {1001,1,0}, {1001,2,0}, {1,2,0}, {65537,1,0}, {65537,2,0}, {1001,0,0}}},
    {"act_backward", "act_forward", 1, "n act inplace", build_act_bwd, run_act_bwd, 1e-6, -1, 9,
     {{7,1,0}, {7,2,0}, {1001,1,0}, {1001,2,0}, {1,2,0}, {65537,1,0}, {65537,2,0}, {257,2,1},
      {257,1,1}}},
    {"swiglu_forward", NULL, 0, "N F", build_swiglu_fwd, run_swiglu_fwd, 1e-6, -1, 5,
     {{1,1}, {3,7}, {17,129}, {64,1000}, {64,300}}},
    {"swiglu_backward", "swiglu_forward", 1, "N F", build_swiglu_bwd, run_swiglu_bwd, 1e-6, -1, 5,
     {{1,1}, {3,7}, {17,129}, {64,1000}, {64,300}}},
    {"rmsnorm_forward", NULL, 0, "N G C ld -", build_rms_fwd, run_rms_fwd, 1e-5, -1, 9,
     {{1,1,1,1,0}, {3,1,7,7,0}, {5,3,4,20,0}, {17,4,16,96,0}, {64,1,768,768,0}, {9,6,48,384,0},
      {5,1,1031,1031,0}, {6,4,8,40,0}, {9,2,6,30,0}}},
    {"rmsnorm_backward", "rmsnorm_forward", 1, "N G C ld acc", build_rms_bwd, run_rms_bwd, 2e-5,
     -1, 11, {{1,1,2,2,0}, {3,1,7,7,1}, {5,3,4,20,0}, {17,4,16,64,0}, {64,1,768,768,0},
     {9,6,48,384,1}, {3,2,8,16,0}, {5,1,1031,1031,1}, {6,4,8,40,0}, {6,4,8,40,1}, {9,2,6,30,0}}},
    {"rope", NULL, 0, "B T H hs ld pos0", build_rope_fwd, run_rope_fwd, 1e-6, -1, 8,
     {{1,1,1,2,2,0}, {2,5,3,4,14,0}, {1,7,2,16,32,3}, {2,60,3,8,30,100}, {4,64,12,64,1024,0},
      {1,7,6,6,40,0}, {2,9,12,16,200,3}, {3,17,5,64,330,0}}},
    {"rope inverse", "rope", 1, "B T H hs ld pos0", build_rope_bwd, run_rope_bwd, 1e-6, -1, 8,
     {{1,1,1,2,2,0}, {2,5,3,4,14,0}, {1,7,2,16,32,3}, {2,60,3,8,30,100}, {4,64,12,64,1024,0},
      {1,7,6,6,40,0}, {2,9,12,16,200,3}, {3,17,5,64,330,0}}},
    {"residual_forward", NULL, 0, "n", build_residual, run_residual, 0.0, -1, 4,
     {{1}, {7}, {1001}, {65539}}},
    {"axpy", NULL, 0, "n", build_axpy, run_axpy, 1e-6, -1, 4, {{1}, {7}, {1001}, {65539}}},
    {"crossentropy_forward", NULL, 0, "N V - cap", build_ce_fwd, run_ce_fwd, 1e-6, -1, 9,
     {{1,1,0,0}, {3,5,0,0}, {3,5,0,2}, {17,257,0,0}, {17,257,0,3}, {32,5003,0,0}, {32,5003,0,30},
      {5,70001,0,0}, {5,70001,0,2}}},
    {"crossentropy_fused", "crossentropy_forward", 1, "N V inplace cap", build_ce_fused,
     run_ce_fused, 1e-6, -1, 11, {{1,1,0,0}, {3,5,0,0}, {3,5,0,2}, {17,257,0,0}, {17,257,0,3},
     {32,5003,0,0}, {9,130,1,0}, {9,130,1,2}, {17,257,1,3}, {5,70001,0,0}, {5,70001,0,2}}},
    {"reduce_sum", NULL, 0, "n square", build_reduce, run_reduce, 1e-5, -1, 5,
     {{1,0}, {7,1}, {1000,0}, {4099,1}, {100003,0}}},
    {"adamw", NULL, 0, "n t", build_adamw, run_adamw, 1e-6, -1, 4,
     {{1,1}, {7,3}, {1000,10}, {65539,1}}},
    {"copy", NULL, 0, "n off", build_copy, run_copy, 0.0, -1, 4, {{1,0}, {7,3}, {1000,1}, {65539,2}}},
    {"fill", NULL, 0, "n off", build_fill, run_fill, 0.0, -1, 4, {{1,0}, {7,3}, {1000,1}, {65539,2}}},
    {"upload/download", NULL, 0, "n off", build_xfer, run_xfer, 0.0, -1, 4,
     {{1,1}, {7,3}, {1000,5}, {65539,2}}},
};
/* clang-format on */
#define NROWS ((int)(sizeof ROWS / sizeof ROWS[0]))

static const oprow *find_row(const char *op) {
    for (int i = 0; i < NROWS; i++)
        if (!strcmp(ROWS[i].op, op)) return &ROWS[i];
    return NULL;
}

/* ---- running a case on one backend ---------------------------------------------------------- */

static void make_case(const oprow *r, int ci, uint64_t salt, tcase *c) {
    memset(c, 0, sizeof *c);
    memcpy(c->p, r->cases[ci], sizeof c->p);
    uint64_t h = 1469598103934665603ull ^ salt;
    for (const char *s = r->op; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    cf_rng_seed(&c->rng, h + (uint64_t)ci * 7919u);
    r->build(c);
}

/* Runs the case; out[i] receives tensor i's whole buffer (guards included) for T_OUT tensors.
 * Returns the op's status. */
static int run_case(cf_backend *be, const oprow *r, const tcase *c, float **out) {
    cf_buffer *b[MAXT] = {0};
    int rc = CF_OK;
    for (int i = 0; i < c->nt && rc == CF_OK; i++) {
        const tensor *t = &c->t[i];
        size_t total = t->n + 2 * PAD;
        float *h = cft_floats(total);
        for (size_t k = 0; k < total; k++) h[k] = GUARD;
        memcpy(h + PAD, t->init, t->n * 4);
        rc = cf_be_alloc(be, total * 4, &b[i]);
        if (rc == CF_OK) rc = cf_be_upload(be, tv(b[i], 0), h, total * 4);
        free(h);
    }
    if (rc == CF_OK) rc = r->run(be, c, b);
    for (int i = 0; i < c->nt; i++) {
        if (rc == CF_OK && (c->t[i].flags & T_OUT)) {
            out[i] = cft_floats(c->t[i].n + 2 * PAD);
            rc = cf_be_download(be, out[i], tv(b[i], 0), (c->t[i].n + 2 * PAD) * 4);
        }
        if (b[i]) cf_be_free(be, b[i]);
    }
    return rc;
}
static void free_outs(float **out, int n) {
    for (int i = 0; i < n; i++) free(out[i]), out[i] = NULL;
}

/* Inputs that come from a forward op: build the forward row's case with the same shape, run it on
 * the CPU backend and copy every tensor of the same name (inputs and outputs) into c's inputs. */
static int feed_from_forward(cf_backend *cpu, const oprow *r, int ci, tcase *c) {
    if (!r->fwd) return CF_OK;
    const oprow *f = find_row(r->fwd);
    if (!f) {
        fprintf(stderr, "FAIL: row %s names unknown forward row %s\n", r->op, r->fwd);
        exit(1);
    }
    tcase fc;
    memset(&fc, 0, sizeof fc);
    memcpy(fc.p, r->cases[ci], sizeof fc.p);
    cf_rng_seed(&fc.rng, 99991u + (uint64_t)ci);
    f->build(&fc);
    float *fo[MAXT] = {0};
    int rc = run_case(cpu, f, &fc, fo);
    for (int i = 0; rc == CF_OK && i < fc.nt; i++) {
        int j = find_t(c, fc.t[i].name);
        if (j < 0 || !(c->t[j].flags & T_IN) || c->t[j].n != fc.t[i].n) continue;
        memcpy(c->t[j].init, fo[i] ? fo[i] + PAD : fc.t[i].init, c->t[j].n * 4);
    }
    free_outs(fo, MAXT);
    free_case(&fc);
    return rc;
}

/* the case's value of the parameter called name (0 when the row has none) */
static int case_param(const oprow *r, const tcase *c, const char *name) {
    const char *s = r->pnames;
    for (int k = 0; k < MAXP && *s; k++) {
        size_t w = strcspn(s, " ");
        if (w == strlen(name) && !strncmp(s, name, w)) return c->p[k];
        s += w;
        while (*s == ' ') s++;
    }
    return 0;
}

static void case_label(const oprow *r, const tcase *c, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = 0;
    const char *s = r->pnames;
    for (int k = 0; k < MAXP && *s; k++) {
        size_t w = strcspn(s, " ");
        if (!(w == 1 && *s == '-'))
            used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s%.*s=%d",
                                     used ? " " : "", (int)w, s, c->p[k]);
        s += w;
        while (*s == ' ') s++;
    }
}

/* ---- cross-backend comparison ---------------------------------------------------------------- */

static int g_fails = 0, g_checks = 0;
static const char *g_only = NULL;
static int g_small = 0;
#define SMALL_MAX 32768 /* --small: elements of a case's largest tensor */

/* --only: the row's name contains one of g_only's comma-separated parts */
static int row_selected(const oprow *r) {
    if (!g_only) return 1;
    for (const char *s = g_only; *s;) {
        size_t w = strcspn(s, ",");
        for (const char *o = r->op; w && *o; o++)
            if (!strncmp(o, s, w)) return 1;
        s += w;
        if (*s == ',') s++;
    }
    return 0;
}
/* --small: every tensor of the case is at most SMALL_MAX elements */
static int case_selected(const tcase *c) {
    for (int i = 0; g_small && i < c->nt; i++)
        if (c->t[i].n > SMALL_MAX) return 0;
    return 1;
}

typedef struct {
    double err, nmse;
    const char *worst; /* output with the largest err */
    const char *problem;
} cmp_result;

/* err and NMSE of a against ref (n elements); a non-finite element in either gives INFINITY */
static void cmp_arrays(const float *a, const float *ref, size_t n, double *err, double *nmse) {
    double md = 0.0, mr = 0.0, sd = 0.0, sr = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(ref[i])) { /* every output must be finite */
            *err = *nmse = INFINITY;
            return;
        }
        double d = fabs((double)a[i] - ref[i]);
        md = d > md ? d : md;
        mr = fabs((double)ref[i]) > mr ? fabs((double)ref[i]) : mr;
        sd += d * d;
        sr += (double)ref[i] * ref[i];
    }
    *err = md / (mr + 1e-20);
    *nmse = sd / (sr + 1e-20);
}

static void compare_outputs(const tcase *c, float **got, float **ref, cmp_result *res) {
    memset(res, 0, sizeof *res);
    for (int i = 0; i < c->nt; i++) {
        if (!(c->t[i].flags & T_OUT)) continue;
        size_t n = c->t[i].n;
        for (size_t k = 0; k < PAD; k++)
            if (got[i][k] != GUARD || got[i][PAD + n + k] != GUARD) res->problem = "guard overwritten";
        double err, nmse;
        cmp_arrays(got[i] + PAD, ref[i] + PAD, n, &err, &nmse);
        if (!res->worst || err > res->err || isnan(err)) {
            res->err = err;
            res->worst = c->t[i].name;
        }
        if (nmse > res->nmse) res->nmse = nmse;
    }
}

static int run_cross(cf_backend *cpu, cf_backend **bes, char **specs, int nbe) {
    for (int ri = 0; ri < NROWS; ri++) {
        const oprow *r = &ROWS[ri];
        if (!row_selected(r)) continue;
        for (int ci = 0; ci < r->ncases; ci++) {
            tcase c;
            make_case(r, ci, 0, &c);
            if (!case_selected(&c)) {
                free_case(&c);
                continue;
            }
            char label[128];
            case_label(r, &c, label, sizeof label);
            float *ref[MAXT] = {0};
            int rc = feed_from_forward(cpu, r, ci, &c);
            if (rc == CF_OK) rc = run_case(cpu, r, &c, ref);
            if (rc != CF_OK) {
                printf("FAIL %-38s %-26s cpu (reference): the op returned %d (%s)\n", r->op, label,
                       rc, cf_status_str(rc));
                g_fails++, g_checks++;
                free_outs(ref, MAXT);
                free_case(&c);
                continue;
            }
            double tol = r->tol;
            if (r->tol_k >= 0) tol *= sqrt(c.p[r->tol_k] > 16 ? (double)c.p[r->tol_k] : 16.0);
            double nmse_tol = tol < 1e-7 ? tol : 1e-7;
            for (int bi = 0; bi < nbe; bi++) {
                float *got[MAXT] = {0};
                cmp_result res;
                rc = run_case(bes[bi], r, &c, got);
                g_checks++;
                if (rc != CF_OK) {
                    printf("FAIL %-38s %-26s %s: the op returned %d (%s)\n", r->op, label, specs[bi],
                           rc, cf_status_str(rc));
                    g_fails++;
                } else {
                    compare_outputs(&c, got, ref, &res);
                    int ok = !res.problem && res.err <= tol && res.nmse <= nmse_tol;
                    if (!ok) g_fails++;
                    printf("%s %-38s %-26s %s: err %.2e (%s) nmse %.2e tol %.0e%s%s\n",
                           ok ? "PASS" : "FAIL", r->op, label, specs[bi], res.err,
                           res.worst ? res.worst : "-", res.nmse, tol, res.problem ? "  " : "",
                           res.problem ? res.problem : "");
                }
                free_outs(got, MAXT);
            }
            free_outs(ref, MAXT);
            free_case(&c);
        }
    }
    return 0;
}

/* ---- gradient mode: backward against central finite differences of the forward (CPU) ------- */

#define FD_H 1e-3f
#define FD_RTOL 1e-3
#define FD_ATOL 1e-6
#define FD_SAMPLES 24 /* elements per input checked (spread over the tensor) */
#define GRAD_CASES 3  /* the first (small) cases of each row */

/* loss = sum over the forward's T_LOSS outputs of out * w (w: the backward's dout, or dloss) */
static double fwd_loss(cf_backend *cpu, const oprow *f, tcase *fc, const float *w, float wconst,
                       float *outs_copy) {
    float *fo[MAXT] = {0};
    CFT_OK(run_case(cpu, f, fc, fo));
    double loss = 0.0;
    size_t k = 0;
    for (int i = 0; i < fc->nt; i++) {
        if (!(fc->t[i].flags & T_LOSS)) continue;
        for (size_t e = 0; e < fc->t[i].n; e++, k++) {
            float o = fo[i][PAD + e];
            outs_copy[k] = o;
            loss += (double)o * (w ? w[k] : wconst);
        }
    }
    free_outs(fo, MAXT);
    return loss;
}

static int run_grad(cf_backend *cpu) {
    for (int ri = 0; ri < NROWS; ri++) {
        const oprow *r = &ROWS[ri];
        if (!r->grad || !row_selected(r)) continue;
        const oprow *f = find_row(r->fwd);
        for (int ci = 0; ci < r->ncases && ci < GRAD_CASES; ci++) {
            tcase c;
            make_case(r, ci, 0, &c);
            if (case_param(r, &c, "inplace") || !case_selected(&c)) {
                free_case(&c);
                continue; /* in-place variants: the cross-backend part covers them */
            }
            char label[128];
            case_label(r, &c, label, sizeof label);
            CFT_OK(feed_from_forward(cpu, r, ci, &c));
            float *g[MAXT] = {0};
            CFT_OK(run_case(cpu, r, &c, g));
            /* the forward case with the same inputs (same seed as feed_from_forward) */
            tcase fc;
            memset(&fc, 0, sizeof fc);
            memcpy(fc.p, r->cases[ci], sizeof fc.p);
            cf_rng_seed(&fc.rng, 99991u + (uint64_t)ci);
            f->build(&fc);
            size_t nloss = 0;
            for (int i = 0; i < fc.nt; i++)
                if (fc.t[i].flags & T_LOSS) nloss += fc.t[i].n;
            int di = find_t(&c, "dout");
            const float *w = NULL;
            if (di >= 0) {
                if (c.t[di].n != nloss) {
                    printf("FAIL %s: dout has %zu elements, the forward's loss outputs %zu\n",
                           r->op, c.t[di].n, nloss);
                    g_fails++;
                    goto next;
                }
                w = c.t[di].init;
            }
            float *op_ = cft_floats(nloss), *om = cft_floats(nloss), *o0 = cft_floats(nloss),
                  *probe = cft_floats(nloss);
            fwd_loss(cpu, f, &fc, w, CE_DLOSS, o0);
            for (int xi = 0; xi < fc.nt; xi++) {
                tensor *X = &fc.t[xi];
                if (!(X->flags & T_IN) || (X->flags & T_INT) || (X->flags & T_OUT)) continue;
                char gname[32];
                snprintf(gname, sizeof gname, "d%s", X->name);
                int gi = find_t(&c, gname);
                if (gi < 0 || !(c.t[gi].flags & T_OUT)) continue;
                cft_err e = {0};
                size_t step = X->n > FD_SAMPLES ? X->n / FD_SAMPLES : 1;
                for (size_t j = 0; j < X->n; j += step) {
                    double ga = g[gi][PAD + j] - ((c.t[gi].flags & T_ACC) ? c.t[gi].init[j] : 0.0f);
                    const float xs = X->init[j];
                    X->init[j] = xs + 0.5f; /* which outputs depend on x[j]: those a big step moves */
                    fwd_loss(cpu, f, &fc, w, CE_DLOSS, probe);
                    X->init[j] = xs + FD_H;
                    const double xp = X->init[j];
                    double lp = fwd_loss(cpu, f, &fc, w, CE_DLOSS, op_);
                    X->init[j] = xs - FD_H;
                    const double xm = X->init[j];
                    double lm = fwd_loss(cpu, f, &fc, w, CE_DLOSS, om);
                    X->init[j] = xs;
                    double s = 0.0;
                    for (size_t k = 0; k < nloss; k++)
                        if (op_[k] != om[k] || probe[k] != o0[k])
                            s += (fabs(op_[k]) + fabs(om[k])) * fabs(w ? w[k] : CE_DLOSS);
                    const double fd = (lp - lm) / (xp - xm);
                    /* rounding of the float outputs (a few u of the dependent outputs' size) */
                    const double noise = 8.0 * CFT_U * s / (xp - xm);
                    cft_err_add(&e, j, ga, fd, noise + FD_ATOL, FD_RTOL);
                }
                g_checks++;
                int fail = e.bad > 0;
                g_fails += fail;
                printf("%s grad %-33s %-26s %s vs finite differences of %s: max_abs %.2e "
                       "max_rel %.2e worst %.2fx tol (%zu elements)\n",
                       fail ? "FAIL" : "PASS", r->op, label, gname, f->op, e.max_abs, e.max_rel,
                       e.worst_ratio, e.n);
            }
            free(op_), free(om), free(o0), free(probe);
        next:
            free_case(&fc);
            free_outs(g, MAXT);
            free_case(&c);
        }
    }
    return 0;
}

/* ---- backends ------------------------------------------------------------------------------- */

/* "cpu" and every usable OpenCL device, as `clformer devices` lists them */
static int default_specs(char **specs, int max) {
    int n = 0;
    specs[n++] = strdup("cpu");
#ifdef CF_HAVE_OPENCL
    cf_cl_device_info *list = NULL;
    int count = 0;
    char why[256];
    if (cf_cl_enumerate(&list, &count, why, sizeof why) == CF_OK) {
        for (int i = 0; i < count && n < max; i++) {
            if (!list[i].usable) {
                printf("note: opencl:%d:%d (%s) not usable: %s\n", list[i].platform_index,
                       list[i].device_index, list[i].name, list[i].reason);
                continue;
            }
            char s[64];
            snprintf(s, sizeof s, "opencl:%d:%d", list[i].platform_index, list[i].device_index);
            specs[n++] = strdup(s);
        }
        if (count == 0) printf("note: no OpenCL devices: %s\n", why);
    }
    free(list);
#else
    (void)max;
    printf("note: this build has no OpenCL backend\n");
#endif
    return n;
}

static void quiet_log(int level, const char *msg, void *user) {
    (void)user;
    if (level <= CF_LOG_WARN) fprintf(stderr, "%s%s\n", level == 0 ? "error: " : "warning: ", msg);
}

int main(int argc, char **argv) {
    double t0 = cf_time_now();
    int do_grad = 1, do_cross = 1;
    char *specs[32];
    int nspec = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--grad")) do_cross = 0;
        else if (!strcmp(argv[i], "--cross")) do_grad = 0;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) g_only = argv[++i];
        else if (!strcmp(argv[i], "--small")) g_small = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [--grad | --cross] [--only OP[,OP...]] [--small] [SPEC...]\n",
                    argv[0]);
            return 2;
        } else if (nspec < 32) specs[nspec++] = strdup(argv[i]);
    }
    const char *env = getenv("CF_TEST_BACKENDS");
    if (!nspec && env && *env) {
        char *copy = strdup(env);
        for (char *s = strtok(copy, ","); s && nspec < 32; s = strtok(NULL, ","))
            if (*s) specs[nspec++] = strdup(s);
        free(copy);
    }
    /* the tests' shared program cache, no tuning file (as the test_cl_* tests) */
    if (!getenv("CF_CACHE_DIR")) setenv("CF_CACHE_DIR", CF_BINARY_DIR "/cl_cache", 1);
    if (!getenv("CF_TUNING")) setenv("CF_TUNING", "off", 1);
    cf_log_set_callback(quiet_log, NULL);
    if (!nspec && do_cross) nspec = default_specs(specs, 32);

    cf_backend *cpu = NULL;
    CFT_OK(open_backend("cpu", &cpu));
    int skipped = 0;
    if (do_grad) {
        printf("-- gradients: backward ops against finite differences of their forward (cpu)\n");
        run_grad(cpu);
    }
    if (do_cross) {
        cf_backend *bes[32];
        char *names[32];
        int nbe = 0, non_cpu = 0;
        for (int i = 0; i < nspec; i++) {
            cf_backend *be = NULL;
            int rc = open_backend(specs[i], &be);
            if (rc < 0) {
                printf("FAIL backend '%s' could not be created (%s); run `clformer devices`\n",
                       specs[i], cf_status_str(rc));
                g_fails++, g_checks++;
                continue;
            }
            printf("backend %s: %s\n", specs[i], cf_be_name(be));
            cf_backend_info info;
            non_cpu += cf_be_info(be, &info) == CF_OK && strcmp(info.kind, "cpu") != 0;
            names[nbe] = specs[i];
            bes[nbe++] = be;
        }
        if (non_cpu == 0) {
            const char *req = getenv("CF_REQUIRE_OPENCL");
            if (req && atoi(req) != 0) {
                printf("FAIL cross-backend: no OpenCL device to compare with the CPU backend, and "
                       "CF_REQUIRE_OPENCL=1 (install PoCL: apt-get install pocl-opencl-icd)\n");
                g_fails++, g_checks++;
            } else {
                printf("SKIP cross-backend: no backend other than the CPU one to compare (set "
                       "CF_REQUIRE_OPENCL=1 to make this a failure)\n");
                skipped = 1;
            }
        }
        if (nbe) {
            printf("-- every op on %d backend(s) against the cpu backend\n", nbe);
            run_cross(cpu, bes, names, nbe);
        }
#ifdef CF_HAVE_OPENCL
        /* which attention path the OpenCL backends took (the device and CF_ATTENTION decide) */
        for (int i = 0; i < nbe; i++) {
            cf_backend_info info;
            if (cf_be_info(bes[i], &info) != CF_OK || strcmp(info.kind, "opencl") != 0) continue;
            long fused = 0, gemm = 0;
            cf_cl_attention_counts((cf_cl_ctx *)bes[i]->ctx, &fused, &gemm);
            printf("note: %s attention: %ld calls on the fused kernels, %ld on the batched GEMMs\n",
                   names[i], fused, gemm);
        }
#endif
        for (int i = 0; i < nbe; i++) cf_backend_destroy(bes[i]);
    }
    cf_backend_destroy(cpu);
    printf("%s test_backend_ops: %d of %d checks failed%s (%.1f s)\n",
           g_fails ? "FAIL" : skipped ? "SKIP" : "PASS", g_fails, g_checks,
           skipped ? ", cross-backend part skipped" : "", cf_time_now() - t0);
    for (int i = 0; i < nspec; i++) free(specs[i]);
    if (g_fails) return 1;
    return skipped ? SKIP_CODE : 0;
}
