/* clformer: the OpenCL backend's inference ops (cl_kernels/decode_attention.cl, gemm_q8.cl):
 * KV-cache append, decode attention and the int8-weight GEMM. The programs are built on first
 * use and kept in the ctx with their scratch (the attention's score rows, the GEMM's
 * dequantisation tile). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/opencl/cl_internal.h"

#define DA_LS 64      /* work-group size of decode_attention and gemm_q8_rows */
#define DA_MAX_HS 256 /* largest head size of decode_attention (its q row in local memory) */
#define Q8_ROWS 8     /* rows of A per gemm_q8_rows work-group */
#define Q8_TILE_MIN_M 16 /* products with at least this many rows dequantise a tile and use the
                          * backend's GEMM */
#define Q8_TILE_ROWS 1024 /* weight rows per dequantised tile */

struct cf_cl_infer {
    int status; /* 0 not built, 1 built, < 0 the build failed (kept, not retried) */
    cl_program att, q8;
    cl_kernel append, decode, q8_rows, q8_dequant, f32_rows, embed;
};

static cf_cl_ctx *ctx_of(cf_backend *be) { return (cf_cl_ctx *)be->ctx; }

void cf_cl_infer_release(cf_cl_ctx *ctx) {
    struct cf_cl_infer *st = ctx->infer;
    if (!st) return;
    if (st->append) clReleaseKernel(st->append);
    if (st->decode) clReleaseKernel(st->decode);
    if (st->q8_rows) clReleaseKernel(st->q8_rows);
    if (st->q8_dequant) clReleaseKernel(st->q8_dequant);
    if (st->f32_rows) clReleaseKernel(st->f32_rows);
    if (st->embed) clReleaseKernel(st->embed);
    if (st->att) clReleaseProgram(st->att);
    if (st->q8) clReleaseProgram(st->q8);
    free(st);
    ctx->infer = NULL;
}

static int infer_state(cf_cl_ctx *ctx, struct cf_cl_infer **out) {
    if (!ctx->infer) {
        ctx->infer = calloc(1, sizeof *ctx->infer);
        if (!ctx->infer) return CF_ERR_NOMEM;
    }
    struct cf_cl_infer *st = ctx->infer;
    *out = st;
    if (st->status == 1) return CF_OK;
    if (st->status < 0) return st->status;
    char opts[128];
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DLS=%d -DMAX_HS=%d -DQ8_ROWS=%d", DA_LS,
             DA_MAX_HS, Q8_ROWS);
    static const char *const att_names[] = {"kv_append", "decode_attention"};
    static const char *const q8_names[] = {"gemm_q8_rows", "gemm_q8_dequant", "gemm_f32_rows",
                                           "embed_q8"};
    cl_kernel *const att_ks[] = {&st->append, &st->decode};
    cl_kernel *const q8_ks[] = {&st->q8_rows, &st->q8_dequant, &st->f32_rows, &st->embed};
    int rc = cf_cl_build_kernels(ctx, "decode_attention.cl", opts, &st->att, 2, att_names, att_ks);
    if (rc == CF_OK)
        rc = cf_cl_build_kernels(ctx, "gemm_q8.cl", opts, &st->q8, 4, q8_names, q8_ks);
    st->status = rc == CF_OK ? 1 : rc;
    return rc;
}

int cf_cl_kv_append(cf_backend *be, cf_view qkv, cf_view kc, cf_view vc, cf_view cs, cf_view pos,
                    int B, int Tq, int NH, int KVH, int hs, int S) {
    cf_cl_ctx *ctx = ctx_of(be);
    struct cf_cl_infer *st;
    CF_TRY(infer_state(ctx, &st));
    const int rope = cs.buf != NULL, rows = B * Tq;
    const size_t n = (size_t)rows * (NH + 2 * KVH) * hs, ls = DA_LS, g = cf_round_up(n, ls);
    cl_mem csm = rope ? cf_cl_mem(cs) : cf_cl_mem(kc); /* any buffer when unused */
    return cf_cl_launch(ctx, st->append, "kv_append", 1, &g, &ls,
                        CF_ARGS(ARG_MEM(cf_cl_mem(qkv)), ARG_ULONG(cf_view_elem_off(qkv)),
                                ARG_MEM(cf_cl_mem(kc)), ARG_ULONG(cf_view_elem_off(kc)),
                                ARG_MEM(cf_cl_mem(vc)), ARG_ULONG(cf_view_elem_off(vc)),
                                ARG_MEM(csm), ARG_ULONG(rope ? cf_view_elem_off(cs) : 0),
                                ARG_MEM(cf_cl_mem(pos)), ARG_ULONG(cf_view_elem_off(pos)),
                                ARG_INT(rope), ARG_INT(rows), ARG_INT(Tq), ARG_INT(NH),
                                ARG_INT(KVH), ARG_INT(hs), ARG_INT(S)));
}

int cf_cl_decode_attention(cf_backend *be, cf_view out, cf_view qkv, cf_view kc, cf_view vc,
                           cf_view pos, cf_view lo, int B, int Tq, int NH, int KVH, int hs, int S) {
    cf_cl_ctx *ctx = ctx_of(be);
    struct cf_cl_infer *st;
    if (hs > DA_MAX_HS) {
        cf_cl_fail(ctx, "decode_attention: head size %d is larger than the kernel's %d", hs,
                   DA_MAX_HS);
        return CF_ERR_UNSUPPORTED;
    }
    CF_TRY(infer_state(ctx, &st));
    const size_t groups = (size_t)B * Tq * NH;
    cl_mem scores;
    CF_TRY(cf_cl_scratch(ctx, CF_SCRATCH_SCORES, groups * (size_t)S * sizeof(float), &scores));
    const size_t ls = DA_LS, g = groups * ls;
    const int has_lo = lo.buf != NULL;
    cl_mem lom = has_lo ? cf_cl_mem(lo) : cf_cl_mem(pos); /* any buffer when unused */
    return cf_cl_launch(ctx, st->decode, "decode_attention", 1, &g, &ls,
                        CF_ARGS(ARG_MEM(cf_cl_mem(out)), ARG_ULONG(cf_view_elem_off(out)),
                                ARG_MEM(cf_cl_mem(qkv)), ARG_ULONG(cf_view_elem_off(qkv)),
                                ARG_MEM(cf_cl_mem(kc)), ARG_ULONG(cf_view_elem_off(kc)),
                                ARG_MEM(cf_cl_mem(vc)), ARG_ULONG(cf_view_elem_off(vc)),
                                ARG_MEM(cf_cl_mem(pos)), ARG_ULONG(cf_view_elem_off(pos)),
                                ARG_MEM(lom), ARG_ULONG(has_lo ? cf_view_elem_off(lo) : 0),
                                ARG_INT(has_lo), ARG_MEM(scores), ARG_INT(Tq), ARG_INT(NH),
                                ARG_INT(KVH), ARG_INT(hs), ARG_INT(S)));
}

int cf_cl_gemm_q8(cf_backend *be, int M, int N, int K, cf_view A, int lda, cf_view W8,
                  cf_view scale, cf_view bias, cf_view C, int ldc) {
    cf_cl_ctx *ctx = ctx_of(be);
    struct cf_cl_infer *st;
    if (M <= 0 || N <= 0) return CF_OK;
    CF_TRY(infer_state(ctx, &st));
    const int has_bias = bias.buf != NULL;
    if (M < Q8_TILE_MIN_M) {
        const size_t local[2] = {DA_LS, 1};
        const size_t global[2] = {(size_t)N * DA_LS, (size_t)(M + Q8_ROWS - 1) / Q8_ROWS};
        return cf_cl_launch(
            ctx, st->q8_rows, "gemm_q8_rows", 2, global, local,
            CF_ARGS(ARG_INT(M), ARG_INT(N), ARG_INT(K), ARG_MEM(cf_cl_mem(A)),
                    ARG_ULONG(cf_view_elem_off(A)), ARG_INT(lda), ARG_MEM(cf_cl_mem(W8)),
                    ARG_ULONG(W8.off), ARG_MEM(cf_cl_mem(scale)),
                    ARG_ULONG(cf_view_elem_off(scale)),
                    ARG_MEM(has_bias ? cf_cl_mem(bias) : cf_cl_mem(scale)),
                    ARG_ULONG(has_bias ? cf_view_elem_off(bias) : 0), ARG_INT(has_bias),
                    ARG_MEM(cf_cl_mem(C)), ARG_ULONG(cf_view_elem_off(C)), ARG_INT(ldc)));
    }
    /* many rows (prefill): dequantise Q8_TILE_ROWS weight rows at a time into a scratch tile and
     * multiply through the backend's GEMM (CLBlast or the native kernels) */
    const int tr = N < Q8_TILE_ROWS ? N : Q8_TILE_ROWS;
    cl_mem tile;
    CF_TRY(cf_cl_scratch(ctx, CF_SCRATCH_Q8_TILE, (size_t)tr * K * sizeof(float), &tile));
    for (int n0 = 0; n0 < N; n0 += tr) {
        const int rows = N - n0 < tr ? N - n0 : tr;
        const size_t ls = DA_LS, g = cf_round_up((size_t)rows * K, ls);
        CF_TRY(cf_cl_launch(ctx, st->q8_dequant, "gemm_q8_dequant", 1, &g, &ls,
                            CF_ARGS(ARG_MEM(tile), ARG_MEM(cf_cl_mem(W8)), ARG_ULONG(W8.off),
                                    ARG_MEM(cf_cl_mem(scale)), ARG_ULONG(cf_view_elem_off(scale)),
                                    ARG_INT(n0), ARG_INT(rows), ARG_INT(K))));
        cf_cl_gemm_desc d;
        memset(&d, 0, sizeof d);
        d.ta = 0;
        d.tb = 1;
        d.M = M;
        d.N = rows;
        d.K = K;
        d.alpha = 1.0f;
        d.beta = 0.0f;
        d.A = cf_cl_mem(A);
        d.a_off = cf_view_elem_off(A);
        d.lda = lda;
        d.B = tile;
        d.b_off = 0;
        d.ldb = K;
        d.C = cf_cl_mem(C);
        d.c_off = cf_view_elem_off(C) + (size_t)n0;
        d.ldc = ldc;
        d.outer = 1;
        d.inner = 1;
        CF_TRY(cf_cl_gemm(ctx, &d));
    }
    if (!has_bias) return CF_OK;
    if (ldc == N) return be->ops->add_bias(be, C, bias, M, N);
    for (int m = 0; m < M; m++) /* add_bias takes packed rows */
        CF_TRY(be->ops->add_bias(be, cf_view_add(C, (size_t)m * ldc), bias, 1, N));
    return CF_OK;
}

int cf_cl_embed_q8(cf_backend *be, cf_view out, cf_view ids, cf_view W8, cf_view scale, int N,
                   int C, int V, int accumulate) {
    cf_cl_ctx *ctx = ctx_of(be);
    struct cf_cl_infer *st;
    CF_TRY(infer_state(ctx, &st));
    const size_t ls = DA_LS, g = cf_round_up((size_t)N * C, ls);
    return cf_cl_launch(ctx, st->embed, "embed_q8", 1, &g, &ls,
                        CF_ARGS(ARG_MEM(cf_cl_mem(out)), ARG_ULONG(cf_view_elem_off(out)),
                                ARG_MEM(cf_cl_mem(ids)), ARG_ULONG(cf_view_elem_off(ids)),
                                ARG_MEM(cf_cl_mem(W8)), ARG_ULONG(W8.off),
                                ARG_MEM(cf_cl_mem(scale)), ARG_ULONG(cf_view_elem_off(scale)),
                                ARG_INT(N), ARG_INT(C), ARG_INT(V), ARG_INT(accumulate)));
}

int cf_cl_gemm_rows_try(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d) {
    if (d->M > CF_CL_GEMM_ROWS_MAX_M || d->ta || !d->tb || d->act || d->colsum ||
        d->outer * d->inner != 1)
        return 0;
    struct cf_cl_infer *st;
    CF_TRY(infer_state(ctx, &st));
    const int has_bias = d->bias != NULL;
    const size_t local[2] = {DA_LS, 1};
    const size_t global[2] = {(size_t)d->N * DA_LS, (size_t)(d->M + Q8_ROWS - 1) / Q8_ROWS};
    CF_TRY(cf_cl_launch(ctx, st->f32_rows, "gemm_f32_rows", 2, global, local,
                        CF_ARGS(ARG_INT(d->M), ARG_INT(d->N), ARG_INT(d->K), ARG_FLOAT(d->alpha),
                                ARG_MEM(d->A), ARG_ULONG(d->a_off), ARG_INT(d->lda), ARG_MEM(d->B),
                                ARG_ULONG(d->b_off), ARG_INT(d->ldb), ARG_FLOAT(d->beta),
                                ARG_MEM(has_bias ? d->bias : d->B),
                                ARG_ULONG(has_bias ? d->bias_off : 0), ARG_INT(has_bias),
                                ARG_MEM(d->C), ARG_ULONG(d->c_off), ARG_INT(d->ldc))));
    return 1;
}
