/* clformer: the OpenCL backend's ops: every op of struct cf_backend_ops as kernel launches
 * (GEMM epilogues and bias sums, encoder, LayerNorm, attention around the fused kernels or batched
 * GEMMs, element-wise ops, cross-entropy, reductions, AdamW), and the ops table itself. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/opencl/cl_gemm_fast.h"
#include "backend/opencl/cl_internal.h"

static cf_cl_ctx *CTX(cf_backend *be) { return (cf_cl_ctx *)be->ctx; }

static int is_gpu(const cf_cl_ctx *ctx) { return (ctx->dev.type & CL_DEVICE_TYPE_GPU) != 0; }

/* 1-D element-wise launch over n items */
#define LAUNCH_1D(ctx, kid, n, ...)                                                                \
    do {                                                                                           \
        size_t ls_ = cf_cl_kernel_ls((ctx), (kid)), g_ = cf_round_up((n), ls_);                    \
        return cf_cl_launch((ctx), (ctx)->kernels[kid], cf_cl_kernel_name(kid), 1, &g_, &ls_,      \
                            CF_ARGS(__VA_ARGS__));                                                 \
    } while (0)

/* ---- GEMM and bias ----------------------------------------------------------------------------- */

cf_cl_gemm_desc cf_cl_gemm_desc_plain(int ta, int tb, int M, int N, int K, float alpha, cf_view A,
                                      int lda, cf_view B, int ldb, float beta, cf_view C,
                                      int ldc) {
    cf_cl_gemm_desc d;
    memset(&d, 0, sizeof d);
    d.ta = ta;
    d.tb = tb;
    d.M = M;
    d.N = N;
    d.K = K;
    d.alpha = alpha;
    d.beta = beta;
    d.A = cf_cl_mem(A);
    d.B = cf_cl_mem(B);
    d.C = cf_cl_mem(C);
    d.a_off = cf_view_elem_off(A);
    d.b_off = cf_view_elem_off(B);
    d.c_off = cf_view_elem_off(C);
    d.lda = lda;
    d.ldb = ldb;
    d.ldc = ldc;
    d.outer = 1;
    d.inner = 1;
    return d;
}

static int cl_gemm_op(cf_backend *be, int ta, int tb, int M, int N, int K, float alpha, cf_view A,
                      int lda, cf_view B, int ldb, float beta, cf_view C, int ldc) {
    cf_cl_ctx *ctx = CTX(be);
    if (M <= 0 || N <= 0) return CF_OK;
    cf_cl_gemm_desc d = cf_cl_gemm_desc_plain(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return cf_cl_gemm(ctx, &d);
}

static int cl_gemm_bias_op(cf_backend *be, int ta, int tb, int M, int N, int K, float alpha,
                           cf_view A, int lda, cf_view B, int ldb, float beta, cf_view C, int ldc,
                           cf_view bias) {
    cf_cl_ctx *ctx = CTX(be);
    if (M <= 0 || N <= 0) return CF_OK;
    cf_cl_gemm_desc d = cf_cl_gemm_desc_plain(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    d.bias = cf_cl_mem(bias);
    d.bias_off = cf_view_elem_off(bias);
    return cf_cl_gemm(ctx, &d);
}

static int cl_gelu_forward(cf_backend *be, cf_view out, cf_view inp, size_t n);
static int cl_gelu_backward(cf_backend *be, cf_view dinp, cf_view inp, cf_view dout, size_t n);

static int cl_gemm_gelu_op(cf_backend *be, int ta, int tb, int M, int N, int K, cf_view A,
                           int lda, cf_view B, int ldb, cf_view C, cf_view bias, cf_view X,
                           int backward) {
    cf_cl_ctx *ctx = CTX(be);
    if (M <= 0 || N <= 0) return CF_OK;
    cf_cl_gemm_desc d = cf_cl_gemm_desc_plain(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
    d.bias = cf_cl_mem(bias);
    d.bias_off = cf_view_elem_off(bias);
    d.act = backward ? 2 : 1;
    d.act_x = cf_cl_mem(X);
    d.act_x_off = cf_view_elem_off(X);
    const int fast = cf_cl_gemm_fast_try(ctx, &d); /* the epilogue in the store */
    if (fast != 0) return fast < 0 ? fast : CF_OK;
    /* other paths: the product (with its bias), then the GELU ops */
    d.act = 0;
    CF_TRY(cf_cl_gemm(ctx, &d));
    const size_t n = (size_t)M * N;
    return backward ? cl_gelu_backward(be, C, X, C, n) : cl_gelu_forward(be, X, C, n);
}

static int cl_add_bias(cf_backend *be, cf_view out, cf_view bias, int N, int OC) {
    cf_cl_ctx *ctx = CTX(be);
    size_t local[2] = {64, 1};
    size_t global[2] = {cf_round_up((size_t)OC, 64), (size_t)N};
    return cf_cl_launch(ctx, ctx->kernels[K_ADD_BIAS], "residual_add_bias", 2, global, local,
                        CF_ARGS(ARG_MEM(cf_cl_mem(out)), ARG_ULONG(cf_view_elem_off(out)),
                                ARG_MEM(cf_cl_mem(bias)), ARG_ULONG(cf_view_elem_off(bias)),
                                ARG_INT(N), ARG_INT(OC)));
}

/* out(cols) += column sums of x(rows, cols) with row stride ld; columns c >= split go to
 * out2[out2_off + c - split] instead (split = cols: out only). Work is split into row chunks when
 * there are too few columns to fill the device; the split depends only on the device, so the
 * result is reproducible. */
static int colsum2(cf_cl_ctx *ctx, cl_mem x, size_t x_off, int rows, int cols, int ld, cl_mem out,
                   size_t out_off, cl_mem out2, size_t out2_off, int split) {
    if (rows <= 0 || cols <= 0) return CF_OK;
    /* groups of 32 columns x 8 row lanes (cl_kernels/reduce.cl); enough row chunks for about four
     * groups per compute unit, each lane adding at least 4 rows */
    const size_t cgroups = ((size_t)cols + 31) / 32;
    const size_t target = (size_t)ctx->dev.compute_units * 4;
    size_t chunks = target / cgroups;
    if (chunks < 1) chunks = 1;
    size_t rpc = ((size_t)rows + chunks - 1) / chunks;
    if (rpc < 32) rpc = 32;
    chunks = ((size_t)rows + rpc - 1) / rpc;
    size_t local[2] = {32, 8};
    size_t global[2] = {cgroups * 32, chunks * 8};
    if (chunks == 1) {
        return cf_cl_launch(ctx, ctx->kernels[K_COLSUM_PARTIAL], "reduce_colsum_partial", 2,
                            global, local,
                            CF_ARGS(ARG_MEM(x), ARG_ULONG(x_off), ARG_INT(rows), ARG_INT(cols),
                                    ARG_INT(ld), ARG_INT(rows), ARG_MEM(out), ARG_MEM(out),
                                    ARG_ULONG(out_off), ARG_MEM(out2), ARG_ULONG(out2_off),
                                    ARG_INT(split), ARG_INT(1)));
    }
    cl_mem part = NULL;
    CF_TRY(cf_cl_scratch(ctx, CF_SCRATCH_COLSUM, chunks * (size_t)cols * 4, &part));
    CF_TRY(cf_cl_launch(ctx, ctx->kernels[K_COLSUM_PARTIAL], "reduce_colsum_partial", 2, global,
                        local,
                        CF_ARGS(ARG_MEM(x), ARG_ULONG(x_off), ARG_INT(rows), ARG_INT(cols),
                                ARG_INT(ld), ARG_INT((int)rpc), ARG_MEM(part), ARG_MEM(out),
                                ARG_ULONG(out_off), ARG_MEM(out2), ARG_ULONG(out2_off),
                                ARG_INT(split), ARG_INT(0))));
    size_t fglobal[2] = {cgroups * 32, 8};
    return cf_cl_launch(ctx, ctx->kernels[K_COLSUM_FINAL], "reduce_colsum_final", 2, fglobal, local,
                        CF_ARGS(ARG_MEM(part), ARG_INT((int)chunks), ARG_INT(cols), ARG_MEM(out),
                                ARG_ULONG(out_off), ARG_MEM(out2), ARG_ULONG(out2_off),
                                ARG_INT(split)));
}

static int colsum(cf_cl_ctx *ctx, cl_mem x, size_t x_off, int rows, int cols, int ld, cl_mem out,
                  size_t out_off) {
    return colsum2(ctx, x, x_off, rows, cols, ld, out, out_off, out, out_off, cols);
}

static int cl_bias_backward(cf_backend *be, cf_view dbias, cf_view dout, int N, int OC) {
    cf_cl_ctx *ctx = CTX(be);
    return colsum(ctx, cf_cl_mem(dout), cf_view_elem_off(dout), N, OC, OC, cf_cl_mem(dbias),
                  cf_view_elem_off(dbias));
}

/* dweight(OC,IC) += dout^T(OC,N) @ inp(N,IC) and dbias(OC) += column sums of dout: where the
 * register-blocked kernel takes the product, it sums dout as it stages it (EPI_COLSUM in
 * cl_kernels/gemm_fast.cl); elsewhere the product, then the column-sum passes. */
static int cl_weight_bias_backward(cf_backend *be, cf_view dweight, cf_view dbias, cf_view dout,
                                   cf_view inp, int N, int IC, int OC) {
    cf_cl_ctx *ctx = CTX(be);
    if (OC <= 0 || IC <= 0) return CF_OK;
    cf_cl_gemm_desc d = cf_cl_gemm_desc_plain(1, 0, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f,
                                              dweight, IC);
    d.colsum = cf_cl_mem(dbias);
    d.colsum_off = cf_view_elem_off(dbias);
    const int fast = N > 0 ? cf_cl_gemm_fast_try(ctx, &d) : 0;
    if (fast != 0) return fast < 0 ? fast : CF_OK;
    d.colsum = NULL;
    CF_TRY(cf_cl_gemm(ctx, &d));
    return cl_bias_backward(be, dbias, dout, N, OC);
}

/* ---- encoder ----------------------------------------------------------------------------------- */

static int cl_encoder_forward(cf_backend *be, cf_view out, cf_view tokens, cf_view wte, cf_view wpe,
                              int B, int T, int C, int V) {
    cf_cl_ctx *ctx = CTX(be);
    const int has_wpe = wpe.buf != NULL; /* RoPE models: no position table (not read) */
    LAUNCH_1D(ctx, K_ENC_FORWARD, (size_t)B * T * C, ARG_MEM(cf_cl_mem(out)),
              ARG_ULONG(cf_view_elem_off(out)), ARG_MEM(cf_cl_mem(tokens)),
              ARG_ULONG(cf_view_elem_off(tokens)), ARG_MEM(cf_cl_mem(wte)),
              ARG_ULONG(cf_view_elem_off(wte)), ARG_MEM(cf_cl_mem(has_wpe ? wpe : wte)),
              ARG_ULONG(has_wpe ? cf_view_elem_off(wpe) : 0), ARG_INT(has_wpe), ARG_INT(B),
              ARG_INT(T), ARG_INT(C), ARG_ULONG((size_t)V));
}

static int cl_encoder_backward(cf_backend *be, cf_view dwte, cf_view dwpe, cf_view dout,
                               cf_view tokens, int B, int T, int C, int V) {
    cf_cl_ctx *ctx = CTX(be);
    int n = B * T;
    if (n <= 0 || C <= 0) return CF_OK;
    const size_t cu = ctx->dev.compute_units > 0 ? ctx->dev.compute_units : 1;
    /* order(3, n): positions sorted by (token, position), their tokens, run lengths (encoder.cl) */
    cl_mem order = NULL;
    CF_TRY(cf_cl_scratch(ctx, CF_SCRATCH_SORT, 3 * (size_t)n * 4, &order));
    /* ranks: P positions per group of ls items, P halved from ls until there are four groups per
     * compute unit (the LS / P items of a position split its compares; counts are exact) */
    size_t ls = cf_cl_kernel_ls(ctx, K_ENC_RANK), P = ls;
    while (P > 1 && ((size_t)n + P - 1) / P < 4 * cu) P /= 2;
    size_t g = ((size_t)n + P - 1) / P * ls;
    CF_TRY(cf_cl_launch(ctx, ctx->kernels[K_ENC_RANK], "encoder_rank", 1, &g, &ls,
                        CF_ARGS(ARG_MEM(cf_cl_mem(tokens)), ARG_ULONG(cf_view_elem_off(tokens)),
                                ARG_INT(n), ARG_INT((int)P), ARG_INT(V), ARG_MEM(order))));
    /* runs: items of 4 channels, one work-group across a row where it fits in ls items (a CPU
     * then reads each row once); the n slots in blocks of sb, about 16 groups per compute unit */
    const size_t quads = ((size_t)C + 3) / 4;
    size_t l0 = cf_round_up(quads, 32);
    if (l0 > ls) l0 = ls;
    const size_t cgroups = (quads + l0 - 1) / l0;
    size_t blocks = 16 * cu / cgroups;
    if (blocks < 1) blocks = 1;
    if (blocks > (size_t)n) blocks = (size_t)n;
    const size_t sb = ((size_t)n + blocks - 1) / blocks;
    size_t local[2] = {l0, 1}, global[2] = {cgroups * l0, ((size_t)n + sb - 1) / sb};
    CF_TRY(cf_cl_launch(ctx, ctx->kernels[K_ENC_WTE], "encoder_backward_wte", 2, global, local,
                        CF_ARGS(ARG_MEM(cf_cl_mem(dwte)), ARG_ULONG(cf_view_elem_off(dwte)),
                                ARG_MEM(cf_cl_mem(dout)), ARG_ULONG(cf_view_elem_off(dout)),
                                ARG_MEM(order), ARG_INT(n), ARG_INT(C), ARG_ULONG((size_t)V),
                                ARG_INT((int)sb))));
    /* dwpe(T,C) += sum over b of dout(b, T, C): column sums over B rows of width T*C (no dwpe:
     * no position table) */
    if (!dwpe.buf) return CF_OK;
    return colsum(ctx, cf_cl_mem(dout), cf_view_elem_off(dout), B, T * C, T * C, cf_cl_mem(dwpe),
                  cf_view_elem_off(dwpe));
}

/* ---- LayerNorm --------------------------------------------------------------------------------- */

static int cl_layernorm_forward(cf_backend *be, cf_view out, cf_view mean, cf_view rstd,
                                cf_view inp, cf_view weight, cf_view bias, int N, int C,
                                float eps) {
    cf_cl_ctx *ctx = CTX(be);
    int save = mean.buf && rstd.buf;
    const int has_bias = bias.buf != NULL; /* no bias: not read */
    cl_mem om = cf_cl_mem(out);
    size_t ls = cf_cl_kernel_ls(ctx, K_LN_FORWARD), g = (size_t)N * ls;
    return cf_cl_launch(
        ctx, ctx->kernels[K_LN_FORWARD], "layernorm_forward", 1, &g, &ls,
        CF_ARGS(ARG_MEM(om), ARG_ULONG(cf_view_elem_off(out)), ARG_MEM(save ? cf_cl_mem(mean) : om),
                ARG_ULONG(cf_view_elem_off(mean)), ARG_MEM(save ? cf_cl_mem(rstd) : om),
                ARG_ULONG(cf_view_elem_off(rstd)), ARG_INT(save), ARG_MEM(cf_cl_mem(inp)),
                ARG_ULONG(cf_view_elem_off(inp)), ARG_MEM(cf_cl_mem(weight)),
                ARG_ULONG(cf_view_elem_off(weight)), ARG_MEM(cf_cl_mem(has_bias ? bias : weight)),
                ARG_ULONG(has_bias ? cf_view_elem_off(bias) : 0), ARG_INT(has_bias), ARG_INT(N),
                ARG_INT(C), ARG_FLOAT(eps)));
}

static int cl_layernorm_backward(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dbias,
                                 cf_view dout, cf_view inp, cf_view weight, cf_view mean,
                                 cf_view rstd, int N, int C) {
    cf_cl_ctx *ctx = CTX(be);
    if (N <= 0 || C <= 0) return CF_OK;
    size_t groups = (size_t)ctx->dev.compute_units * (is_gpu(ctx) ? 4 : 2);
    if (groups > (size_t)N) groups = (size_t)N;
    if (groups < 1) groups = 1;
    cl_mem part = NULL;
    CF_TRY(cf_cl_scratch(ctx, CF_SCRATCH_PARTIAL, groups * 2 * (size_t)C * 4, &part));
    size_t ls = cf_cl_kernel_ls(ctx, K_LN_BACKWARD), g = groups * ls;
    CF_TRY(cf_cl_launch(ctx, ctx->kernels[K_LN_BACKWARD], "layernorm_backward", 1, &g, &ls,
                        CF_ARGS(ARG_MEM(cf_cl_mem(dinp)), ARG_ULONG(cf_view_elem_off(dinp)),
                                ARG_MEM(part), ARG_MEM(cf_cl_mem(dout)),
                                ARG_ULONG(cf_view_elem_off(dout)), ARG_MEM(cf_cl_mem(inp)),
                                ARG_ULONG(cf_view_elem_off(inp)), ARG_MEM(cf_cl_mem(weight)),
                                ARG_ULONG(cf_view_elem_off(weight)), ARG_MEM(cf_cl_mem(mean)),
                                ARG_ULONG(cf_view_elem_off(mean)), ARG_MEM(cf_cl_mem(rstd)),
                                ARG_ULONG(cf_view_elem_off(rstd)), ARG_INT(N), ARG_INT(C))));
    /* partial(groups, 2C): columns [0, C) sum to dbias, [C, 2C) to dweight (one pass for both) */
    if (dbias.buf && dweight.buf)
        return colsum2(ctx, part, 0, (int)groups, 2 * C, 2 * C, cf_cl_mem(dbias),
                       cf_view_elem_off(dbias), cf_cl_mem(dweight), cf_view_elem_off(dweight), C);
    if (dbias.buf)
        CF_TRY(
            colsum(ctx, part, 0, (int)groups, C, 2 * C, cf_cl_mem(dbias), cf_view_elem_off(dbias)));
    if (dweight.buf)
        CF_TRY(colsum(ctx, part, (size_t)C, (int)groups, C, 2 * C, cf_cl_mem(dweight),
                      cf_view_elem_off(dweight)));
    return CF_OK;
}

/* ---- attention --------------------------------------------------------------------------------- */

/* A per-(batch, head) operand of attention: base offset, row stride, and the strides between
 * batches (outer) and heads (inner). */
typedef struct {
    cl_mem m;
    size_t off, so, si;
    int ld;
} att_operand;

static int att_gemm(cf_cl_ctx *ctx, int ta, int tb, int M, int N, int K, float alpha,
                    att_operand a, att_operand b, float beta, att_operand c, int B, int NH,
                    int causal) {
    cf_cl_gemm_desc d;
    memset(&d, 0, sizeof d);
    d.ta = ta;
    d.tb = tb;
    d.M = M;
    d.N = N;
    d.K = K;
    d.alpha = alpha;
    d.beta = beta;
    d.A = a.m;
    d.a_off = a.off;
    d.lda = a.ld;
    d.a_so = a.so;
    d.a_si = a.si;
    d.B = b.m;
    d.b_off = b.off;
    d.ldb = b.ld;
    d.b_so = b.so;
    d.b_si = b.si;
    d.C = c.m;
    d.c_off = c.off;
    d.ldc = c.ld;
    d.c_so = c.so;
    d.c_si = c.si;
    d.outer = B;
    d.inner = NH;
    d.causal = causal;
    return cf_cl_gemm(ctx, &d);
}

/* Grouped-query attention: qkv(B,T,QKV) rows hold NH query heads, then KVH key heads, then KVH
 * value heads of hs each, QKV = (NH + 2 KVH) hs; query head h reads kv head h / G, G = NH / KVH.
 * The batched GEMMs run over (batch, kv head) once per g < G, on query head kvh * G + g: the
 * per-head operands below take g, and their inner stride steps over G query heads. With G = 1
 * (multi-head) these are the operands, and the launches, of the multi-head path. */
/* q of query head kvh * G + g: columns [(kvh G + g) hs, ...), row stride QKV */
static att_operand q_part(cf_view qkv, int g, int T, int NH, int KVH, int hs) {
    const int G = NH / KVH, ld = (NH + 2 * KVH) * hs;
    att_operand o = {cf_cl_mem(qkv), cf_view_elem_off(qkv) + (size_t)g * hs, (size_t)T * ld,
                     (size_t)G * hs, ld};
    return o;
}
/* k (part 1) or v (part 2) of kv head kvh: columns [NH hs + (part - 1) KVH hs + kvh hs, ...) */
static att_operand kv_part(cf_view qkv, int part, int T, int NH, int KVH, int hs) {
    const int ld = (NH + 2 * KVH) * hs;
    att_operand o = {cf_cl_mem(qkv),
                     cf_view_elem_off(qkv) + (size_t)(NH + (part - 1) * KVH) * hs, (size_t)T * ld,
                     (size_t)hs, ld};
    return o;
}
/* (B,NH,T,T) score-shaped tensors, query head kvh * G + g */
static att_operand tt_part(cf_view v, int g, int NH, int KVH, int T) {
    const int G = NH / KVH;
    att_operand o = {cf_cl_mem(v), cf_view_elem_off(v) + (size_t)g * T * T, (size_t)NH * T * T,
                     (size_t)G * T * T, T};
    return o;
}
/* (B,T,NH hs) tensors split by head, query head kvh * G + g */
static att_operand btc_part(cf_view v, int g, int T, int NH, int KVH, int hs) {
    const int G = NH / KVH, C = NH * hs;
    att_operand o = {cf_cl_mem(v), cf_view_elem_off(v) + (size_t)g * hs, (size_t)T * C,
                     (size_t)G * hs, C};
    return o;
}

static int softmax_rows(cf_cl_ctx *ctx, int kid, size_t rows, int nargs, const cf_cl_arg *args) {
    size_t ls = cf_cl_kernel_ls(ctx, kid), g = rows * ls;
    return cf_cl_launch(ctx, ctx->kernels[kid], cf_cl_kernel_name(kid), 1, &g, &ls, nargs, args);
}

static int cl_attention_forward(cf_backend *be, cf_view out, cf_view att, cf_view qkv, int B,
                                int T, int NH, int KVH, int hs) {
    cf_cl_ctx *ctx = CTX(be);
    /* one fused launch (cl_attention.c) where the shape fits, else the GEMM path below */
    int fused = cf_cl_attention_fused_forward(ctx, out, att, qkv, B, T, NH, KVH, hs, 0, NH);
    if (fused != 0) return fused < 0 ? fused : CF_OK;
    cf_cl_attention_count_gemm(ctx);
    const int G = NH / KVH;
    float scale = 1.0f / sqrtf((float)hs);
    int rows = B * NH * T;
    att_operand k = kv_part(qkv, 1, T, NH, KVH, hs), v = kv_part(qkv, 2, T, NH, KVH, hs);
    /* att(T,T) = scale * q(T,hs) k^T; blocks wholly above the diagonal are skipped */
    for (int g = 0; g < G; g++)
        CF_TRY(att_gemm(ctx, 0, 1, T, T, hs, scale, q_part(qkv, g, T, NH, KVH, hs), k, 0.0f,
                        tt_part(att, g, NH, KVH, T), B, KVH, 1));
    CF_TRY(softmax_rows(ctx, K_SOFTMAX_FORWARD, (size_t)rows,
                        CF_ARGS(ARG_MEM(cf_cl_mem(att)), ARG_ULONG(cf_view_elem_off(att)),
                                ARG_INT(rows), ARG_INT(T))));
    /* out(T,hs) = att(T,T) v(T,hs); att is lower triangular */
    for (int g = 0; g < G; g++)
        CF_TRY(att_gemm(ctx, 0, 0, T, hs, T, 1.0f, tt_part(att, g, NH, KVH, T), v, 0.0f,
                        btc_part(out, g, T, NH, KVH, hs), B, KVH, 2));
    return CF_OK;
}

static int cl_attention_backward(cf_backend *be, cf_view dqkv, cf_view datt, cf_view dpreatt,
                                 cf_view dout, cf_view qkv, cf_view att, int B, int T, int NH,
                                 int KVH, int hs) {
    cf_cl_ctx *ctx = CTX(be);
    int fused =
        cf_cl_attention_fused_backward(ctx, dqkv, dpreatt, dout, qkv, att, B, T, NH, KVH, hs, 0,
                                       NH);
    if (fused != 0) return fused < 0 ? fused : CF_OK;
    cf_cl_attention_count_gemm(ctx);
    const int G = NH / KVH;
    float scale = 1.0f / sqrtf((float)hs);
    int rows = B * NH * T;
    att_operand k = kv_part(qkv, 1, T, NH, KVH, hs), v = kv_part(qkv, 2, T, NH, KVH, hs);
    att_operand dk = kv_part(dqkv, 1, T, NH, KVH, hs), dv = kv_part(dqkv, 2, T, NH, KVH, hs);
    /* datt(T,T) = dout(T,hs) v^T (only t2 <= t is read below) */
    for (int g = 0; g < G; g++)
        CF_TRY(att_gemm(ctx, 0, 1, T, T, hs, 1.0f, btc_part(dout, g, T, NH, KVH, hs), v, 0.0f,
                        tt_part(datt, g, NH, KVH, T), B, KVH, 1));
    /* dqkv is assigned, not accumulated: dq is one product with beta 0 per query head, dv and dk
     * the first query head's product with beta 0 (C not read) and the others' added (beta 1);
     * causal modes 2 and 3 only shorten the K loop, so every (row, column) of each is stored.
     * dv(T,hs) = sum over the kv head's query heads of att^T dout; att^T is upper triangular */
    for (int g = 0; g < G; g++)
        CF_TRY(att_gemm(ctx, 1, 0, T, hs, T, 1.0f, tt_part(att, g, NH, KVH, T),
                        btc_part(dout, g, T, NH, KVH, hs), g ? 1.0f : 0.0f, dv, B, KVH, 3));
    CF_TRY(softmax_rows(ctx, K_SOFTMAX_BACKWARD, (size_t)rows,
                        CF_ARGS(ARG_MEM(cf_cl_mem(dpreatt)), ARG_ULONG(cf_view_elem_off(dpreatt)),
                                ARG_MEM(cf_cl_mem(datt)), ARG_ULONG(cf_view_elem_off(datt)),
                                ARG_MEM(cf_cl_mem(att)), ARG_ULONG(cf_view_elem_off(att)),
                                ARG_INT(rows), ARG_INT(T), ARG_FLOAT(scale))));
    /* dq(T,hs) = dpreatt k (lower triangular); dk(T,hs) = sum of dpreatt^T q (upper triangular;
     * the K loop from the block's first key reads dpreatt's zeros above the diagonal, which the
     * softmax backward writes) */
    for (int g = 0; g < G; g++)
        CF_TRY(att_gemm(ctx, 0, 0, T, hs, T, 1.0f, tt_part(dpreatt, g, NH, KVH, T), k, 0.0f,
                        q_part(dqkv, g, T, NH, KVH, hs), B, KVH, 2));
    for (int g = 0; g < G; g++)
        CF_TRY(att_gemm(ctx, 1, 0, T, hs, T, 1.0f, tt_part(dpreatt, g, NH, KVH, T),
                        q_part(qkv, g, T, NH, KVH, hs), g ? 1.0f : 0.0f, dk, B, KVH, 3));
    return CF_OK;
}

/* ---- element-wise ------------------------------------------------------------------------------ */

static int cl_gelu_forward(cf_backend *be, cf_view out, cf_view inp, size_t n) {
    cf_cl_ctx *ctx = CTX(be);
    LAUNCH_1D(ctx, K_GELU_FORWARD, n, ARG_MEM(cf_cl_mem(out)), ARG_ULONG(cf_view_elem_off(out)),
              ARG_MEM(cf_cl_mem(inp)), ARG_ULONG(cf_view_elem_off(inp)), ARG_ULONG(n));
}

static int cl_gelu_backward(cf_backend *be, cf_view dinp, cf_view inp, cf_view dout, size_t n) {
    cf_cl_ctx *ctx = CTX(be);
    LAUNCH_1D(ctx, K_GELU_BACKWARD, n, ARG_MEM(cf_cl_mem(dinp)), ARG_ULONG(cf_view_elem_off(dinp)),
              ARG_MEM(cf_cl_mem(inp)), ARG_ULONG(cf_view_elem_off(inp)), ARG_MEM(cf_cl_mem(dout)),
              ARG_ULONG(cf_view_elem_off(dout)), ARG_ULONG(n));
}

/* ---- activations, SwiGLU ------------------------------------------------------------------------ */

/* forward and backward kernel of each enum cf_act (cl_kernels/gelu.cl, act.cl); the wrappers
 * check act */
static const int act_kernels[CF_ACT_COUNT][2] = {
    [CF_ACT_GELU] = {K_GELU_FORWARD, K_GELU_BACKWARD},
    [CF_ACT_RELU2] = {K_RELU2_FORWARD, K_RELU2_BACKWARD},
    [CF_ACT_SILU] = {K_SILU_FORWARD, K_SILU_BACKWARD},
};

static int cl_act_forward(cf_backend *be, enum cf_act act, cf_view out, cf_view inp, size_t n) {
    cf_cl_ctx *ctx = CTX(be);
    if (n == 0) return CF_OK;
    LAUNCH_1D(ctx, act_kernels[act][0], n, ARG_MEM(cf_cl_mem(out)),
              ARG_ULONG(cf_view_elem_off(out)), ARG_MEM(cf_cl_mem(inp)),
              ARG_ULONG(cf_view_elem_off(inp)), ARG_ULONG(n));
}

static int cl_act_backward(cf_backend *be, enum cf_act act, cf_view dinp, cf_view inp,
                           cf_view dout, size_t n) {
    cf_cl_ctx *ctx = CTX(be);
    if (n == 0) return CF_OK;
    LAUNCH_1D(ctx, act_kernels[act][1], n, ARG_MEM(cf_cl_mem(dinp)),
              ARG_ULONG(cf_view_elem_off(dinp)), ARG_MEM(cf_cl_mem(inp)),
              ARG_ULONG(cf_view_elem_off(inp)), ARG_MEM(cf_cl_mem(dout)),
              ARG_ULONG(cf_view_elem_off(dout)), ARG_ULONG(n));
}

static int cl_swiglu_forward(cf_backend *be, cf_view out, cf_view inp, int N, int F) {
    cf_cl_ctx *ctx = CTX(be);
    if (N <= 0 || F <= 0) return CF_OK;
    LAUNCH_1D(ctx, K_SWIGLU_FORWARD, (size_t)N * F, ARG_MEM(cf_cl_mem(out)),
              ARG_ULONG(cf_view_elem_off(out)), ARG_MEM(cf_cl_mem(inp)),
              ARG_ULONG(cf_view_elem_off(inp)), ARG_INT(N), ARG_INT(F));
}

static int cl_swiglu_backward(cf_backend *be, cf_view dinp, cf_view inp, cf_view dout, int N,
                              int F) {
    cf_cl_ctx *ctx = CTX(be);
    if (N <= 0 || F <= 0) return CF_OK;
    LAUNCH_1D(ctx, K_SWIGLU_BACKWARD, (size_t)N * F, ARG_MEM(cf_cl_mem(dinp)),
              ARG_ULONG(cf_view_elem_off(dinp)), ARG_MEM(cf_cl_mem(inp)),
              ARG_ULONG(cf_view_elem_off(inp)), ARG_MEM(cf_cl_mem(dout)),
              ARG_ULONG(cf_view_elem_off(dout)), ARG_INT(N), ARG_INT(F));
}

/* ---- RMSNorm, RoPE ------------------------------------------------------------------------------ */

/* one work-group per (row, group) unit (cl_kernels/rmsnorm.cl) */
static int cl_rmsnorm_forward(cf_backend *be, cf_view out, cf_view rstd, cf_view inp,
                              cf_view weight, int N, int G, int C, int ld, float eps) {
    cf_cl_ctx *ctx = CTX(be);
    if (N <= 0 || G <= 0 || C <= 0) return CF_OK;
    const int save = rstd.buf != NULL;
    cl_mem om = cf_cl_mem(out);
    size_t ls = cf_cl_kernel_ls(ctx, K_RMS_FORWARD), g = (size_t)N * G * ls;
    return cf_cl_launch(
        ctx, ctx->kernels[K_RMS_FORWARD], "rmsnorm_forward", 1, &g, &ls,
        CF_ARGS(ARG_MEM(om), ARG_ULONG(cf_view_elem_off(out)), ARG_MEM(save ? cf_cl_mem(rstd) : om),
                ARG_ULONG(save ? cf_view_elem_off(rstd) : 0), ARG_INT(save),
                ARG_MEM(cf_cl_mem(inp)), ARG_ULONG(cf_view_elem_off(inp)),
                ARG_MEM(cf_cl_mem(weight)), ARG_ULONG(cf_view_elem_off(weight)), ARG_INT(G),
                ARG_INT(C), ARG_INT(ld), ARG_FLOAT(eps)));
}

/* a fixed number of groups walk the units, each summing dweight into its row of a scratch
 * matrix; the column sums then add those rows into dweight (deterministic, as LayerNorm's) */
static int cl_rmsnorm_backward(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dout,
                               cf_view inp, cf_view weight, cf_view rstd, int N, int G, int C,
                               int ld, int accumulate) {
    cf_cl_ctx *ctx = CTX(be);
    if (N <= 0 || G <= 0 || C <= 0) return CF_OK;
    const size_t units = (size_t)N * G;
    size_t groups = (size_t)ctx->dev.compute_units * (is_gpu(ctx) ? 4 : 2);
    if (groups > units) groups = units;
    if (groups < 1) groups = 1;
    cl_mem part = NULL;
    CF_TRY(cf_cl_scratch(ctx, CF_SCRATCH_PARTIAL, groups * (size_t)C * 4, &part));
    size_t ls = cf_cl_kernel_ls(ctx, K_RMS_BACKWARD), g = groups * ls;
    CF_TRY(cf_cl_launch(ctx, ctx->kernels[K_RMS_BACKWARD], "rmsnorm_backward", 1, &g, &ls,
                        CF_ARGS(ARG_MEM(cf_cl_mem(dinp)), ARG_ULONG(cf_view_elem_off(dinp)),
                                ARG_MEM(part), ARG_MEM(cf_cl_mem(dout)),
                                ARG_ULONG(cf_view_elem_off(dout)), ARG_MEM(cf_cl_mem(inp)),
                                ARG_ULONG(cf_view_elem_off(inp)), ARG_MEM(cf_cl_mem(weight)),
                                ARG_ULONG(cf_view_elem_off(weight)), ARG_MEM(cf_cl_mem(rstd)),
                                ARG_ULONG(cf_view_elem_off(rstd)), ARG_INT((int)units), ARG_INT(G),
                                ARG_INT(C), ARG_INT(ld), ARG_INT(accumulate))));
    return colsum(ctx, part, 0, (int)groups, C, C, cf_cl_mem(dweight), cf_view_elem_off(dweight));
}

/* one work-item per rotated pair (cl_kernels/rope.cl) */
static int cl_rope(cf_backend *be, cf_view x, cf_view cs, int B, int T, int H, int hs, int ld,
                   int pos0, int inverse) {
    cf_cl_ctx *ctx = CTX(be);
    const size_t n = (size_t)B * T * H * (size_t)(hs / 2);
    if (n == 0) return CF_OK;
    LAUNCH_1D(ctx, K_ROPE, n, ARG_MEM(cf_cl_mem(x)), ARG_ULONG(cf_view_elem_off(x)),
              ARG_MEM(cf_cl_mem(cs)), ARG_ULONG(cf_view_elem_off(cs)), ARG_INT(B * T), ARG_INT(T),
              ARG_INT(H), ARG_INT(hs), ARG_INT(ld), ARG_INT(pos0), ARG_INT(inverse));
}

static int cl_residual_forward(cf_backend *be, cf_view out, cf_view a, cf_view b, size_t n) {
    cf_cl_ctx *ctx = CTX(be);
    if (n == 0) return CF_OK;
    size_t ls = cf_cl_kernel_ls(ctx, K_RESIDUAL_FORWARD),
           g = cf_cl_quad_range(ctx, K_RESIDUAL_FORWARD, n);
    const int aligned = cf_view_elem_off(out) % 4 == 0 && cf_view_elem_off(a) % 4 == 0 &&
                        cf_view_elem_off(b) % 4 == 0;
    return cf_cl_launch(ctx, ctx->kernels[K_RESIDUAL_FORWARD], "residual_forward", 1, &g, &ls,
                        CF_ARGS(ARG_MEM(cf_cl_mem(out)), ARG_ULONG(cf_view_elem_off(out)),
                                ARG_MEM(cf_cl_mem(a)), ARG_ULONG(cf_view_elem_off(a)),
                                ARG_MEM(cf_cl_mem(b)), ARG_ULONG(cf_view_elem_off(b)), ARG_ULONG(n),
                                ARG_INT(aligned)));
}

static int cl_axpy(cf_backend *be, cf_view y, cf_view x, float alpha, size_t n) {
    cf_cl_ctx *ctx = CTX(be);
    LAUNCH_1D(ctx, K_AXPY, n, ARG_MEM(cf_cl_mem(y)), ARG_ULONG(cf_view_elem_off(y)),
              ARG_MEM(cf_cl_mem(x)), ARG_ULONG(cf_view_elem_off(x)), ARG_FLOAT(alpha),
              ARG_ULONG(n));
}

/* ---- cross-entropy ----------------------------------------------------------------------------- */

static int cl_crossentropy_forward(cf_backend *be, cf_view losses, cf_view logits,
                                   cf_view targets, int N, int V, float softcap) {
    cf_cl_ctx *ctx = CTX(be);
    return softmax_rows(ctx, softcap > 0.0f ? K_CE_FORWARD_SOFTCAP : K_CE_FORWARD, (size_t)N,
                        CF_ARGS(ARG_MEM(cf_cl_mem(losses)), ARG_ULONG(cf_view_elem_off(losses)),
                                ARG_MEM(cf_cl_mem(logits)), ARG_ULONG(cf_view_elem_off(logits)),
                                ARG_MEM(cf_cl_mem(targets)), ARG_ULONG(cf_view_elem_off(targets)),
                                ARG_INT(N), ARG_INT(V), ARG_FLOAT(softcap)));
}

static int cl_crossentropy_fused(cf_backend *be, cf_view losses, cf_view dlogits, cf_view logits,
                                 cf_view targets, int N, int V, float dloss, float softcap) {
    cf_cl_ctx *ctx = CTX(be);
    return softmax_rows(ctx, softcap > 0.0f ? K_CE_FUSED_SOFTCAP : K_CE_FUSED, (size_t)N,
                        CF_ARGS(ARG_MEM(cf_cl_mem(losses)), ARG_ULONG(cf_view_elem_off(losses)),
                                ARG_MEM(cf_cl_mem(dlogits)), ARG_ULONG(cf_view_elem_off(dlogits)),
                                ARG_MEM(cf_cl_mem(logits)), ARG_ULONG(cf_view_elem_off(logits)),
                                ARG_MEM(cf_cl_mem(targets)), ARG_ULONG(cf_view_elem_off(targets)),
                                ARG_INT(N), ARG_INT(V), ARG_FLOAT(dloss), ARG_FLOAT(softcap)));
}

/* ---- reductions and optimizer ------------------------------------------------------------------ */

static int cl_reduce_sum(cf_backend *be, cf_view out, cf_view x, size_t n, int square) {
    cf_cl_ctx *ctx = CTX(be);
    size_t ls = (size_t)ctx->ls;
    size_t groups = (n + ls - 1) / ls;
    if (groups > (size_t)ctx->max_groups) groups = (size_t)ctx->max_groups;
    if (groups < 1) groups = 1;
    cl_mem part = NULL;
    CF_TRY(cf_cl_scratch(ctx, CF_SCRATCH_PARTIAL, groups * 4, &part));
    size_t g = groups * ls;
    CF_TRY(cf_cl_launch(ctx, ctx->kernels[K_SUM_PARTIAL], "reduce_sum_partial", 1, &g, &ls,
                        CF_ARGS(ARG_MEM(cf_cl_mem(x)), ARG_ULONG(cf_view_elem_off(x)), ARG_ULONG(n),
                                ARG_INT(square), ARG_MEM(part))));
    return cf_cl_launch(ctx, ctx->kernels[K_SUM_FINAL], "reduce_sum_final", 1, &ls, &ls,
                        CF_ARGS(ARG_MEM(part), ARG_INT((int)groups), ARG_MEM(cf_cl_mem(out)),
                                ARG_ULONG(cf_view_elem_off(out))));
}

static int cl_adamw(cf_backend *be, cf_view params, cf_view grads, cf_view m, cf_view v,
                    size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                    float grad_scale, int t) {
    cf_cl_ctx *ctx = CTX(be);
    /* in double: 1 - beta2^t is tiny for small t and beta2 near 1 */
    float inv_bc1 = (float)(1.0 / (1.0 - pow((double)beta1, (double)t)));
    float inv_bc2 = (float)(1.0 / (1.0 - pow((double)beta2, (double)t)));
    const int aligned = cf_view_elem_off(params) % 4 == 0 && cf_view_elem_off(grads) % 4 == 0 &&
                        cf_view_elem_off(m) % 4 == 0 && cf_view_elem_off(v) % 4 == 0;
    size_t ls = cf_cl_kernel_ls(ctx, K_ADAMW), g = cf_cl_quad_range(ctx, K_ADAMW, n);
    return cf_cl_launch(ctx, ctx->kernels[K_ADAMW], "adamw_update", 1, &g, &ls,
                        CF_ARGS(ARG_MEM(cf_cl_mem(params)), ARG_ULONG(cf_view_elem_off(params)),
                                ARG_MEM(cf_cl_mem(grads)), ARG_ULONG(cf_view_elem_off(grads)),
                                ARG_MEM(cf_cl_mem(m)), ARG_ULONG(cf_view_elem_off(m)),
                                ARG_MEM(cf_cl_mem(v)), ARG_ULONG(cf_view_elem_off(v)), ARG_ULONG(n),
                                ARG_FLOAT(lr), ARG_FLOAT(beta1), ARG_FLOAT(beta2),
                                ARG_FLOAT(inv_bc1), ARG_FLOAT(inv_bc2), ARG_FLOAT(eps),
                                ARG_FLOAT(weight_decay), ARG_FLOAT(grad_scale), ARG_INT(aligned)));
}

/* ---- Muon's element-wise ops (cl_kernels/muon.cl) --------------------------------------------- */

static int cl_muon_momentum(cf_backend *be, cf_view buf, cf_view grads, cf_view out, size_t n,
                            float beta, float grad_scale) {
    cf_cl_ctx *ctx = CTX(be);
    if (n == 0) return CF_OK;
    LAUNCH_1D(ctx, K_MUON_MOMENTUM, n, ARG_MEM(cf_cl_mem(buf)), ARG_ULONG(cf_view_elem_off(buf)),
              ARG_MEM(cf_cl_mem(grads)), ARG_ULONG(cf_view_elem_off(grads)),
              ARG_MEM(cf_cl_mem(out)), ARG_ULONG(cf_view_elem_off(out)), ARG_ULONG(n),
              ARG_FLOAT(beta), ARG_FLOAT(grad_scale));
}

static int cl_scale_rnorm(cf_backend *be, cf_view x, cf_view sumsq, size_t n, float eps) {
    cf_cl_ctx *ctx = CTX(be);
    if (n == 0) return CF_OK;
    LAUNCH_1D(ctx, K_SCALE_RNORM, n, ARG_MEM(cf_cl_mem(x)), ARG_ULONG(cf_view_elem_off(x)),
              ARG_MEM(cf_cl_mem(sumsq)), ARG_ULONG(cf_view_elem_off(sumsq)), ARG_ULONG(n),
              ARG_FLOAT(eps));
}

static int cl_axpby(cf_backend *be, cf_view y, cf_view x, float alpha, float beta, size_t n) {
    cf_cl_ctx *ctx = CTX(be);
    if (n == 0) return CF_OK;
    LAUNCH_1D(ctx, K_AXPBY, n, ARG_MEM(cf_cl_mem(y)), ARG_ULONG(cf_view_elem_off(y)),
              ARG_MEM(cf_cl_mem(x)), ARG_ULONG(cf_view_elem_off(x)), ARG_FLOAT(alpha),
              ARG_FLOAT(beta), ARG_ULONG(n));
}

const struct cf_backend_ops cf_cl_ops = {
    /* .api_version = */ CF_BACKEND_API_VERSION,
    /* .name = */ cf_cl_name,
    /* .destroy = */ cf_cl_destroy,
    /* .buffer_alloc = */ cf_cl_buffer_alloc,
    /* .buffer_free = */ cf_cl_buffer_free,
    /* .upload = */ cf_cl_upload,
    /* .download = */ cf_cl_download,
    /* .copy = */ cf_cl_copy,
    /* .fill = */ cf_cl_fill,
    /* .synchronize = */ cf_cl_synchronize,
    /* .gemm = */ cl_gemm_op,
    /* .gemm_bias = */ cl_gemm_bias_op,
    /* .gemm_gelu = */ cl_gemm_gelu_op,
    /* .add_bias = */ cl_add_bias,
    /* .bias_backward = */ cl_bias_backward,
    /* .weight_bias_backward = */ cl_weight_bias_backward,
    /* .encoder_forward = */ cl_encoder_forward,
    /* .encoder_backward = */ cl_encoder_backward,
    /* .layernorm_forward = */ cl_layernorm_forward,
    /* .layernorm_backward = */ cl_layernorm_backward,
    /* .attention_forward = */ cl_attention_forward,
    /* .attention_backward = */ cl_attention_backward,
    /* .flash_forward = */ cf_cl_flash_forward,
    /* .flash_backward = */ cf_cl_flash_backward,
    /* .act_forward = */ cl_act_forward,
    /* .act_backward = */ cl_act_backward,
    /* .swiglu_forward = */ cl_swiglu_forward,
    /* .swiglu_backward = */ cl_swiglu_backward,
    /* .rmsnorm_forward = */ cl_rmsnorm_forward,
    /* .rmsnorm_backward = */ cl_rmsnorm_backward,
    /* .rope = */ cl_rope,
    /* .residual_forward = */ cl_residual_forward,
    /* .axpy = */ cl_axpy,
    /* .crossentropy_forward = */ cl_crossentropy_forward,
    /* .crossentropy_fused = */ cl_crossentropy_fused,
    /* .reduce_sum = */ cl_reduce_sum,
    /* .adamw = */ cl_adamw,
    /* .muon_momentum = */ cl_muon_momentum,
    /* .scale_rnorm = */ cl_scale_rnorm,
    /* .axpby = */ cl_axpby,
    /* .prof_collect = */ cf_cl_prof_collect,
    /* .info = */ cf_cl_info,
    /* .peak_gflops = */ cf_cl_peak,
    /* .gemm_describe = */ cf_cl_gemm_describe,
    /* .host_alloc = */ cf_cl_host_alloc,
    /* .host_free = */ cf_cl_host_free,
    /* .kv_append = */ cf_cl_kv_append,
    /* .decode_attention = */ cf_cl_decode_attention,
    /* .gemm_q8 = */ cf_cl_gemm_q8,
    /* .embed_q8 = */ cf_cl_embed_q8,
};
