/* clformer: the op case table (see op_cases.h): one row per op of struct cf_backend_ops, how to
 * build its random inputs for a shape case, how to run it through the cf_be_* wrappers, which of
 * its tensors are outputs; running a case on a backend and comparing it with the CPU backend's. */
#define _POSIX_C_SOURCE 200809L
#include "backend/op_cases.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clformer/common.h"

#define PAD CF_OPCASE_PAD
#define GUARD CF_OPCASE_GUARD
#define MAXT CF_OPCASE_MAXT
#define MAXP CF_OPCASE_MAXP
#define MAXC CF_OPCASE_MAXC
#define T_IN CF_OPT_IN
#define T_OUT CF_OPT_OUT
#define T_INT CF_OPT_INT
#define T_ACC CF_OPT_ACC
#define T_LOSS CF_OPT_LOSS
#define CE_DLOSS CF_OPCASE_DLOSS
typedef cf_opcase tcase;
typedef cf_optensor tensor;
typedef cf_oprow oprow;

/* The only place views are made (element index into the buffer). */
static cf_view tv(cf_buffer *b, size_t elem) { return cf_view_f32(b, elem); }
/* int32 tensors (tokens, targets) get i32 views: the wrappers check the dtype. */
static cf_view tv_i32(cf_buffer *b, size_t elem) { return cf_view_i32(b, elem); }

/* ---- cases ---------------------------------------------------------------------------------- */

/* A new tensor of the case; NULL (and c->status set) when it cannot be had: the build functions
 * leave a NULL tensor alone and cf_opcase_make reports the status. */
static float *add_t(tcase *c, const char *name, size_t n, int flags) {
    if (c->nt == MAXT) {
        CF_ERROR("op case: row declares more than %d tensors (raise CF_OPCASE_MAXT)", MAXT);
        c->status = CF_ERR_INVALID;
        return NULL;
    }
    tensor *t = &c->t[c->nt++];
    t->name = name;
    t->n = n;
    t->flags = flags;
    t->init = malloc((n ? n : 1) * sizeof(float));
    if (!t->init && c->status == CF_OK) c->status = CF_ERR_NOMEM;
    return t->init;
}
/* uniform in [-scale, scale) */
static float *add_rand(tcase *c, const char *name, size_t n, int flags, float scale) {
    float *x = add_t(c, name, n, flags);
    for (size_t i = 0; x && i < n; i++) x[i] = scale * (2.0f * cf_rng_uniform(&c->rng) - 1.0f);
    return x;
}
static float *add_const(tcase *c, const char *name, size_t n, int flags, float v) {
    float *x = add_t(c, name, n, flags);
    for (size_t i = 0; x && i < n; i++) x[i] = v;
    return x;
}
/* int32 ids in [lo, hi) */
static void add_ids(tcase *c, const char *name, size_t n, int lo, int hi) {
    float *x = add_t(c, name, n, T_IN | T_INT);
    for (size_t i = 0; x && i < n; i++) {
        int32_t v = lo + (int32_t)(cf_rng_uniform(&c->rng) * (float)(hi - lo));
        if (v >= hi) v = hi - 1;
        memcpy(&x[i], &v, 4);
    }
}
int cf_opcase_find(const tcase *c, const char *name) {
    for (int i = 0; i < c->nt; i++)
        if (!strcmp(c->t[i].name, name)) return i;
    return -1;
}
#define find_t cf_opcase_find
void cf_opcase_free(tcase *c) {
    for (int i = 0; i < c->nt; i++) free(c->t[i].init);
    c->nt = 0;
}
#define free_case cf_opcase_free

/* A view of tensor `name` of the case on the buffers b (the data starts after the guards); a row
 * naming a tensor it did not declare gets a view without a buffer, which the wrappers refuse. */
static cf_view V_(const tcase *c, cf_buffer **b, const char *name) {
    int i = find_t(c, name);
    if (i < 0) {
        CF_ERROR("op case: the row uses tensor '%s' it did not declare", name);
        return CF_VIEW_NULL;
    }
    return (c->t[i].flags & T_INT) ? tv_i32(b[i], PAD) : tv(b[i], PAD);
}
#define V(name) V_(c, b, name)
#define P c->p

/* ---- rows: build and run ------------------------------------------------------------------- */

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
    if (C && AB[P[5]][1] == 0.0f) /* beta 0 must not read C: NaN there, the gap between rows kept */
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
    for (size_t i = 0; x && i < (size_t)N * C; i++) x[i] += 0.3f; /* a non-zero mean */
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

/* flash attention: p = B T NH KVH hs W docs; W the window (0: full causal), docs > 0: document
 * starts from random document ends, about docs per row (the backward takes the forward's) */
static cf_attn_desc flash_desc(const tcase *c) {
    const cf_attn_desc d = {P[0], P[1], P[2], P[3], P[4], P[5]};
    return d;
}
static void add_flash_doc(tcase *c) {
    const int B = P[0], T = P[1];
    if (P[6] <= 0) return;
    float *x = add_t(c, "doc", (size_t)B * T, T_IN | T_INT);
    for (int b = 0; x && b < B; b++) {
        int32_t start = 0;
        for (int i = 0; i < T; i++) {
            memcpy(&x[(size_t)b * T + i], &start, 4);
            if (cf_rng_uniform(&c->rng) * (float)T < (float)P[6]) start = i + 1;
        }
    }
}
static void build_flash_fwd(tcase *c) {
    int B = P[0], T = P[1], NH = P[2], KVH = P[3], hs = P[4];
    add_const(c, "out", (size_t)B * T * NH * hs, T_OUT | T_LOSS, NAN);
    add_const(c, "lse", (size_t)B * NH * T, T_OUT, NAN);
    add_rand(c, "qkv", (size_t)B * T * (NH + 2 * KVH) * hs, T_IN, 1.0f);
    add_flash_doc(c);
}
static int run_flash_fwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    const cf_attn_desc d = flash_desc(c);
    return cf_be_flash_forward(be, &d, V("out"), V("lse"), V("qkv"), VOPT(P[6] > 0, "doc"));
}
static void build_flash_bwd(tcase *c) {
    int B = P[0], T = P[1], NH = P[2], KVH = P[3], hs = P[4];
    size_t nqkv = (size_t)B * T * (NH + 2 * KVH) * hs, nout = (size_t)B * T * NH * hs;
    add_const(c, "dqkv", nqkv, T_OUT, NAN);
    add_rand(c, "delta", (size_t)B * NH * T, T_IN, 1.0f); /* scratch */
    add_rand(c, "dout", nout, T_IN, 1.0f);
    add_rand(c, "out", nout, T_IN, 1.0f);                 /* replaced by the forward's */
    add_const(c, "lse", (size_t)B * NH * T, T_IN, 0.0f);  /* replaced by the forward's */
    add_rand(c, "qkv", nqkv, T_IN, 1.0f);                 /* replaced by the forward's */
    add_flash_doc(c);                                     /* replaced by the forward's */
}
static int run_flash_bwd(cf_backend *be, const tcase *c, cf_buffer **b) {
    const cf_attn_desc d = flash_desc(c);
    return cf_be_flash_backward(be, &d, V("dqkv"), V("delta"), V("dout"), V("out"), V("lse"),
                                V("qkv"), VOPT(P[6] > 0, "doc"));
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
    int ti = find_t(c, "targets");
    float *t = ti >= 0 ? c->t[ti].init : NULL;
    for (int i = 4; t && i < N; i += 5) {
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
static int run_ce_fused(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_crossentropy_fused(be, V("losses"), P[2] ? V("logits") : V("dlogits"),
                                    V("logits"), V("targets"), P[0], P[1], CE_DLOSS, (float)P[3]);
}

/* reduce_sum: p = n square; x in [-0.5, 1.5) so the sum does not cancel to noise */
static void build_reduce(tcase *c) {
    add_const(c, "out", 1, T_OUT, NAN);
    float *x = add_rand(c, "x", (size_t)P[0], T_IN, 1.0f);
    for (int i = 0; x && i < P[0]; i++) x[i] += 0.5f;
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
    for (size_t i = 0; v && i < n; i++) v[i] = fabsf(v[i]);
}
static int run_adamw(cf_backend *be, const tcase *c, cf_buffer **b) {
    for (int s = 0; s < 3; s++)
        CF_TRY(cf_be_adamw(be, V("params"), V("grads"), V("m"), V("v"), (size_t)P[0], 1e-2f,
                           0.9f, 0.95f, 1e-8f, 0.1f, 0.8f, P[1] + s));
    return CF_OK;
}

/* Muon's element-wise ops: p = n alias (muon_momentum: out written over grads) */
static void build_muon_momentum(tcase *c) {
    size_t n = (size_t)P[0];
    add_rand(c, "buf", n, T_IN | T_OUT, 0.1f);
    add_rand(c, "grads", n, T_IN | (P[1] ? T_OUT : 0), 1.0f);
    if (!P[1]) add_const(c, "out", n, T_OUT, NAN);
}
static int run_muon_momentum(cf_backend *be, const tcase *c, cf_buffer **b) {
    /* two steps, so the second reads the buffer the first wrote */
    for (int s = 0; s < 2; s++)
        CF_TRY(cf_be_muon_momentum(be, V("buf"), V("grads"), P[1] ? V("grads") : V("out"),
                                   (size_t)P[0], 0.95f, 0.8f));
    return CF_OK;
}
/* scale_rnorm: p = n; sumsq is the sum of squares of x, so x comes out with unit norm */
static void build_scale_rnorm(tcase *c) {
    size_t n = (size_t)P[0];
    float *x = add_rand(c, "x", n, T_IN | T_OUT, 2.0f);
    float *s = add_t(c, "sumsq", 1, T_IN);
    double ss = 0.0;
    for (size_t i = 0; x && i < n; i++) ss += (double)x[i] * x[i];
    if (s) s[0] = (float)ss;
}
static int run_scale_rnorm(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_scale_rnorm(be, V("x"), V("sumsq"), (size_t)P[0], 1e-7f);
}
static void build_axpby(tcase *c) {
    add_rand(c, "y", (size_t)P[0], T_IN | T_OUT, 1.0f);
    add_rand(c, "x", (size_t)P[0], T_IN, 1.0f);
}
static int run_axpby(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_axpby(be, V("y"), V("x"), -0.37f, 0.998f, (size_t)P[0]);
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
/* copy to half storage and back: p = n off dt (0 bf16, 1 f16). Magnitudes from 2^-30 to 2^14
 * (half's subnormals and values that round to zero included, no f16 overflow: the comparison
 * wants finite outputs), every fourth value a tie of the format (the midpoint of two
 * neighbours, which rounds to the even one). */
static void build_copy_half(tcase *c) {
    add_rand(c, "dst", (size_t)P[0] + P[1], T_IN | T_OUT, 10.0f);
    add_rand(c, "mid", ((size_t)P[0] + P[1]) / 2 + 1, T_IN, 1.0f);
    float *x = add_t(c, "src", (size_t)P[0], T_IN);
    for (size_t i = 0; x && i < (size_t)P[0]; i++) {
        uint32_t u = (cf_rng_u32(&c->rng) & 0x807fffffu) |
                     (uint32_t)(127 - 30 + (int)(cf_rng_u32(&c->rng) % 45)) << 23;
        if (i % 4 == 3) u = P[2] ? (u & ~0x1fffu) | 0x1000u : (u & ~0xffffu) | 0x8000u;
        memcpy(&x[i], &u, 4);
    }
}
static int run_copy_half(cf_backend *be, const tcase *c, cf_buffer **b) {
    cf_view h = V("mid");
    h.dtype = P[2] ? CF_F16 : CF_BF16;
    h = cf_view_add(h, (size_t)P[1]);
    CF_TRY(cf_be_copy(be, h, V("src"), (size_t)P[0]));
    return cf_be_copy(be, cf_view_add(V("dst"), (size_t)P[1]), h, (size_t)P[0]);
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
    float *tmp = malloc((n + 2) * sizeof(float));
    if (!tmp) return CF_ERR_NOMEM;
    tmp[n] = tmp[n + 1] = GUARD;
    int rc = cf_be_download(be, tmp, cf_view_add(V("dst"), off / 2), n * 4);
    if (rc == CF_OK && (tmp[n] != GUARD || tmp[n + 1] != GUARD)) {
        CF_ERROR("download of %zu floats wrote past its end", n);
        rc = CF_ERR_INVALID;
    }
    if (rc == CF_OK) rc = cf_be_upload(be, V("back"), tmp, n * 4);
    free(tmp);
    return rc;
}


/* ---- inference ops: p = B Tq NH KVH hs S for the cache ops, M N K bias for gemm_q8 --------- */
static size_t kv_rows(const tcase *c) { return (size_t)P[0] * P[1]; }
static size_t kv_qkv(const tcase *c) { return kv_rows(c) * (size_t)(P[2] + 2 * P[3]) * P[4]; }
static size_t kv_cache(const tcase *c) { return (size_t)P[0] * P[5] * P[3] * P[4]; }
/* cache positions before the call: pos[b] + Tq <= S */
static void add_pos(tcase *c) { add_ids(c, "pos", (size_t)P[0], 0, P[5] - P[1] + 1); }
static void build_kv_append(tcase *c) {
    add_rand(c, "qkv", kv_qkv(c), T_IN | T_OUT, 1.0f);
    add_rand(c, "kc", kv_cache(c), T_IN | T_OUT, 1.0f);
    add_rand(c, "vc", kv_cache(c), T_IN | T_OUT, 1.0f);
    const int S = P[5], hs = P[4];
    float *cs = add_t(c, "cs", (size_t)S * hs, T_IN | T_INT); /* data, never perturbed */
    for (int p = 0; cs && p < S; p++)
        for (int i = 0; i < hs / 2; i++) {
            const double a = p * pow(10000.0, -2.0 * i / hs);
            cs[((size_t)p * (hs / 2) + i) * 2] = (float)cos(a);
            cs[((size_t)p * (hs / 2) + i) * 2 + 1] = (float)sin(a);
        }
    add_pos(c);
}
static int run_kv_append_rope(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_kv_append(be, V("qkv"), V("kc"), V("vc"), cf_view_f32(b[find_t(c, "cs")], PAD),
                           V("pos"), P[0], P[1], P[2], P[3], P[4], P[5]);
}
static int run_kv_append(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_kv_append(be, V("qkv"), V("kc"), V("vc"), CF_VIEW_NULL, V("pos"), P[0], P[1],
                           P[2], P[3], P[4], P[5]);
}
static void build_decode_att(tcase *c) {
    add_const(c, "out", kv_rows(c) * (size_t)P[2] * P[4], T_OUT, NAN);
    add_rand(c, "qkv", kv_qkv(c), T_IN, 1.0f);
    add_rand(c, "kc", kv_cache(c), T_IN, 1.0f);
    add_rand(c, "vc", kv_cache(c), T_IN, 1.0f);
    add_pos(c);
}
static int run_decode_att(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_decode_attention(be, V("out"), V("qkv"), V("kc"), V("vc"), V("pos"), CF_VIEW_NULL,
                                  P[0], P[1], P[2], P[3], P[4], P[5]);
}
/* with each row's first key lo, in [p - 2 - w, p + 1] for the row at cache position p and a
 * random w in 0..7: rows see one key, a few or all of theirs, and values below 0 or past p (which
 * the op clamps) come too */
static void build_decode_att_lo(tcase *c) {
    build_decode_att(c);
    const int B = P[0], Tq = P[1], S = P[5];
    float *lo = add_t(c, "lo", kv_rows(c), T_IN | T_INT);
    const int pi = find_t(c, "pos");
    if (!lo || pi < 0 || !c->t[pi].init) return;
    for (int r = 0; r < B * Tq; r++) {
        int32_t pb, v;
        memcpy(&pb, &c->t[pi].init[r / Tq], 4);
        const int p = pb + r % Tq < S ? pb + r % Tq : S - 1;
        const int w = (int)(cf_rng_u32(&c->rng) % 8u);
        v = p - 2 - w + (int)(cf_rng_u32(&c->rng) % (uint32_t)(w + 4));
        memcpy(&lo[r], &v, 4);
    }
}
static int run_decode_att_lo(cf_backend *be, const tcase *c, cf_buffer **b) {
    return cf_be_decode_attention(be, V("out"), V("qkv"), V("kc"), V("vc"), V("pos"), V("lo"),
                                  P[0], P[1], P[2], P[3], P[4], P[5]);
}
static int q8_lda(const tcase *c) { return P[2] + 3; }
static void build_gemm_q8(tcase *c) {
    const int M = P[0], N = P[1], K = P[2];
    add_rand(c, "A", (size_t)M * q8_lda(c), T_IN, 1.0f);
    /* N*K int8 weights in [-127, 127], packed four to a float slot (never perturbed) */
    const size_t nb = (size_t)N * K;
    float *w = add_t(c, "W8", (nb + 3) / 4, T_IN | T_INT);
    for (size_t i = 0; w && i < nb; i++) {
        int v = (int)(cf_rng_uniform(&c->rng) * 255.0f) - 127;
        ((int8_t *)(void *)w)[i] = (int8_t)(v > 127 ? 127 : v);
    }
    for (size_t i = nb; w && i < 4 * ((nb + 3) / 4); i++) ((int8_t *)(void *)w)[i] = 0;
    float *sc = add_rand(c, "scale", (size_t)N, T_IN, 0.01f);
    for (int i = 0; sc && i < N; i++) sc[i] = fabsf(sc[i]) + 1e-3f;
    if (P[3]) add_rand(c, "bias", (size_t)N, T_IN, 1.0f);
    float *C = add_rand(c, "C", (size_t)M * (N + 2), T_OUT, 1.0f);
    for (int i = 0; C && i < M; i++) /* assigned: NaN shows an unwritten element; gaps kept */
        for (int j = 0; j < N; j++) C[(size_t)i * (N + 2) + j] = NAN;
}
static int run_gemm_q8(cf_backend *be, const tcase *c, cf_buffer **b) {
    cf_view w8 = cf_view_typed(b[find_t(c, "W8")], CF_I8, PAD * 4);
    return cf_be_gemm_q8(be, P[0], P[1], P[2], V("A"), q8_lda(c), w8, V("scale"),
                         P[3] ? V("bias") : CF_VIEW_NULL, V("C"), P[1] + 2);
}
/* p = N C V acc: rows of an int8 table of V rows (ids include out-of-range values, clamped) */
static void build_embed_q8(tcase *c) {
    const int N = P[0], C = P[1], Vv = P[2];
    add_ids(c, "ids", (size_t)N, -1, Vv + 1);
    const size_t nb = (size_t)Vv * C;
    float *w = add_t(c, "W8", (nb + 3) / 4, T_IN | T_INT); /* packed as gemm_q8's */
    for (size_t i = 0; w && i < nb; i++) {
        int v = (int)(cf_rng_uniform(&c->rng) * 255.0f) - 127;
        ((int8_t *)(void *)w)[i] = (int8_t)(v > 127 ? 127 : v);
    }
    for (size_t i = nb; w && i < 4 * ((nb + 3) / 4); i++) ((int8_t *)(void *)w)[i] = 0;
    float *sc = add_rand(c, "scale", (size_t)Vv, T_IN, 0.01f);
    for (int i = 0; sc && i < Vv; i++) sc[i] = fabsf(sc[i]) + 1e-3f;
    if (P[3])
        add_rand(c, "out", (size_t)N * C, T_IN | T_OUT, 1.0f);
    else /* assigned: NaN shows an unwritten element */
        add_const(c, "out", (size_t)N * C, T_OUT, NAN);
}
static int run_embed_q8(cf_backend *be, const tcase *c, cf_buffer **b) {
    cf_view w8 = cf_view_typed(b[find_t(c, "W8")], CF_I8, PAD * 4);
    return cf_be_embed_q8(be, V("out"), V("ids"), w8, V("scale"), P[0], P[1], P[2], P[3]);
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
    {"flash_forward", NULL, 0, "B T NH KVH hs W docs", build_flash_fwd, run_flash_fwd, 2e-5, -1,
     9, {{1,1,1,1,4,0,0}, {2,7,4,2,4,0,0}, {1,33,2,2,8,5,0}, {2,65,4,4,16,0,2},
     {1,70,8,1,8,9,3}, {2,37,8,2,8,0,0}, {1,130,2,2,16,40,0}, {2,1,4,2,4,1,1},
     {1,67,4,2,64,0,4}}},
    {"flash_backward", "flash_forward", 1, "B T NH KVH hs W docs", build_flash_bwd, run_flash_bwd,
     5e-5, -1, 9, {{1,1,1,1,4,0,0}, {2,7,4,2,4,0,0}, {1,33,2,2,8,5,0}, {2,65,4,4,16,0,2},
     {1,70,8,1,8,9,3}, {2,37,8,2,8,0,0}, {1,130,2,2,16,40,0}, {2,1,4,2,4,1,1},
     {1,67,4,2,64,0,4}}},
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
    {"muon_momentum", NULL, 0, "n alias", build_muon_momentum, run_muon_momentum, 1e-6, -1, 5,
     {{1,0}, {7,1}, {1000,0}, {65539,0}, {4099,1}}},
    {"scale_rnorm", NULL, 0, "n", build_scale_rnorm, run_scale_rnorm, 1e-6, -1, 4,
     {{1}, {7}, {1000}, {65539}}},
    {"axpby", NULL, 0, "n", build_axpby, run_axpby, 1e-6, -1, 4, {{1}, {7}, {1001}, {65539}}},
    {"kv_append", NULL, 0, "B Tq NH KVH hs S", build_kv_append, run_kv_append_rope, 1e-6, -1, 6,
     {{1,1,1,1,2,1}, {2,1,4,2,8,9}, {3,5,6,2,16,12}, {1,33,4,4,64,40}, {2,1,8,1,6,5},
      {4,2,12,4,64,70}}},
    {"kv_append norope", NULL, 0, "B Tq NH KVH hs S", build_kv_append, run_kv_append, 0.0, -1, 5,
     {{1,1,1,1,3,1}, {2,1,4,2,8,9}, {3,5,6,2,16,12}, {1,33,4,4,64,40}, {2,1,8,1,5,5}}},
    {"decode_attention", NULL, 0, "B Tq NH KVH hs S", build_decode_att, run_decode_att, 2e-5, -1,
     8, {{1,1,1,1,4,1}, {2,1,4,2,8,9}, {3,5,6,2,16,12}, {1,33,4,4,64,40}, {2,1,8,1,6,5},
      {4,1,12,4,64,300}, {2,3,4,4,128,67}, {1,1,2,1,10,1100}}},
    {"decode_attention lo", NULL, 0, "B Tq NH KVH hs S", build_decode_att_lo, run_decode_att_lo,
     2e-5, -1, 6, {{1,1,1,1,4,1}, {2,1,4,2,8,9}, {3,5,6,2,16,12}, {1,33,4,4,64,40},
      {4,1,12,4,64,300}, {2,3,4,4,128,67}}},
    {"gemm_q8", NULL, 0, "M N K bias", build_gemm_q8, run_gemm_q8, 1e-6, 2, 8,
     {{1,1,1,0}, {1,7,5,1}, {3,33,17,0}, {8,64,96,1}, {9,65,130,0}, {32,129,257,1},
      {70,100,64,1}, {130,1100,96,0}}},
    {"embed_q8", NULL, 0, "N C V acc", build_embed_q8, run_embed_q8, 1e-6, -1, 5,
     {{1,1,1,0}, {7,5,3,1}, {33,64,100,0}, {64,384,1000,1}, {3,130,17,0}}},
    {"copy", NULL, 0, "n off", build_copy, run_copy, 0.0, -1, 4, {{1,0}, {7,3}, {1000,1}, {65539,2}}},
    {"copy half", NULL, 0, "n off dt", build_copy_half, run_copy_half, 0.0, -1, 6,
     {{1,0,0}, {7,3,0}, {65539,1,0}, {1,0,1}, {7,3,1}, {65539,1,1}}},
    {"fill", NULL, 0, "n off", build_fill, run_fill, 0.0, -1, 4, {{1,0}, {7,3}, {1000,1}, {65539,2}}},
    {"upload/download", NULL, 0, "n off", build_xfer, run_xfer, 0.0, -1, 4,
     {{1,1}, {7,3}, {1000,5}, {65539,2}}},
};
/* clang-format on */
#define NROWS ((int)(sizeof ROWS / sizeof ROWS[0]))

const cf_oprow *cf_oprows(int *n) {
    *n = NROWS;
    return ROWS;
}

const cf_oprow *cf_oprow_find(const char *op) {
    for (int i = 0; i < NROWS; i++)
        if (!strcmp(ROWS[i].op, op)) return &ROWS[i];
    return NULL;
}

/* ---- running a case on one backend ---------------------------------------------------------- */

int cf_opcase_make(const oprow *r, int ci, uint64_t salt, tcase *c) {
    memset(c, 0, sizeof *c);
    memcpy(c->p, r->cases[ci], sizeof c->p);
    uint64_t h = 1469598103934665603ull ^ salt;
    for (const char *s = r->op; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    cf_rng_seed(&c->rng, h + (uint64_t)ci * 7919u);
    r->build(c);
    return c->status;
}

int cf_opcase_make_forward(const oprow *f, const oprow *r, int ci, tcase *fc) {
    memset(fc, 0, sizeof *fc);
    memcpy(fc->p, r->cases[ci], sizeof fc->p);
    cf_rng_seed(&fc->rng, 99991u + (uint64_t)ci);
    f->build(fc);
    return fc->status;
}

int cf_opcase_run(cf_backend *be, const oprow *r, const tcase *c, float **out) {
    cf_buffer *b[MAXT] = {0};
    int rc = c->status;
    for (int i = 0; i < c->nt && rc == CF_OK; i++) {
        const tensor *t = &c->t[i];
        size_t total = t->n + 2 * PAD;
        float *h = malloc(total * sizeof(float));
        if (!h) {
            rc = CF_ERR_NOMEM;
            break;
        }
        for (size_t k = 0; k < total; k++) h[k] = GUARD;
        memcpy(h + PAD, t->init, t->n * 4);
        rc = cf_be_alloc(be, total * 4, &b[i]);
        if (rc == CF_OK) rc = cf_be_upload(be, tv(b[i], 0), h, total * 4);
        free(h);
    }
    if (rc == CF_OK) rc = r->run(be, c, b);
    for (int i = 0; i < c->nt; i++) {
        if (rc == CF_OK && (c->t[i].flags & T_OUT)) {
            out[i] = malloc((c->t[i].n + 2 * PAD) * sizeof(float));
            rc = out[i] ? cf_be_download(be, out[i], tv(b[i], 0), (c->t[i].n + 2 * PAD) * 4)
                        : CF_ERR_NOMEM;
        }
        if (b[i]) cf_be_free(be, b[i]);
    }
    return rc;
}
#define run_case cf_opcase_run

void cf_opcase_free_outs(float **out, int n) {
    for (int i = 0; i < n; i++) free(out[i]), out[i] = NULL;
}
#define free_outs cf_opcase_free_outs

int cf_opcase_feed_from_forward(cf_backend *cpu, const oprow *r, int ci, tcase *c) {
    if (!r->fwd) return CF_OK;
    const oprow *f = cf_oprow_find(r->fwd);
    if (!f) {
        CF_ERROR("op case: row %s names unknown forward row %s", r->op, r->fwd);
        return CF_ERR_INVALID;
    }
    tcase fc;
    float *fo[MAXT] = {0};
    int rc = cf_opcase_make_forward(f, r, ci, &fc);
    if (rc == CF_OK) rc = run_case(cpu, f, &fc, fo);
    for (int i = 0; rc == CF_OK && i < fc.nt; i++) {
        int j = find_t(c, fc.t[i].name);
        if (j < 0 || !(c->t[j].flags & T_IN) || c->t[j].n != fc.t[i].n) continue;
        memcpy(c->t[j].init, fo[i] ? fo[i] + PAD : fc.t[i].init, c->t[j].n * 4);
    }
    free_outs(fo, MAXT);
    free_case(&fc);
    return rc;
}

int cf_opcase_param(const oprow *r, const tcase *c, const char *name) {
    const char *s = r->pnames;
    for (int k = 0; k < MAXP && *s; k++) {
        size_t w = strcspn(s, " ");
        if (w == strlen(name) && !strncmp(s, name, w)) return c->p[k];
        s += w;
        while (*s == ' ') s++;
    }
    return 0;
}

void cf_opcase_label(const oprow *r, const tcase *c, char *buf, size_t len) {
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

double cf_opcase_tol(const oprow *r, const tcase *c) {
    double tol = r->tol;
    if (r->tol_k >= 0) tol *= sqrt(c->p[r->tol_k] > 16 ? (double)c->p[r->tol_k] : 16.0);
    return tol;
}

/* ---- comparison ---------------------------------------------------------------------------- */

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

void cf_opcase_compare(const tcase *c, float **got, float **ref, cf_opcmp *res) {
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

int cf_opcase_check(cf_backend *cpu, cf_backend *be, const oprow *r, int ci, int *pass,
                    cf_opcmp *res, double *tol, char *msg, size_t len) {
    tcase c;
    float *ref[MAXT] = {0}, *got[MAXT] = {0};
    memset(res, 0, sizeof *res);
    *pass = 0;
    *tol = 0.0;
    msg[0] = 0;
    int rc = cf_opcase_make(r, ci, 0, &c);
    if (rc == CF_OK) rc = cf_opcase_feed_from_forward(cpu, r, ci, &c);
    if (rc == CF_OK) rc = run_case(cpu, r, &c, ref);
    if (rc != CF_OK) {
        snprintf(msg, len, "the cpu reference could not run the case: %s", cf_status_str(rc));
        goto done;
    }
    *tol = cf_opcase_tol(r, &c);
    const double nmse_tol = *tol < 1e-7 ? *tol : 1e-7;
    int brc = run_case(be, r, &c, got);
    if (brc != CF_OK) {
        snprintf(msg, len, "the op returned %d (%s)", brc, cf_status_str(brc));
    } else {
        cf_opcase_compare(&c, got, ref, res);
        *pass = !res->problem && res->err <= *tol && res->nmse <= nmse_tol;
        if (!*pass)
            snprintf(msg, len, "err %.2e (%s) nmse %.2e, tolerance %.0e%s%s", res->err,
                     res->worst ? res->worst : "-", res->nmse, *tol, res->problem ? "; " : "",
                     res->problem ? res->problem : "");
    }
done:
    free_outs(ref, MAXT);
    free_outs(got, MAXT);
    free_case(&c);
    return rc;
}
