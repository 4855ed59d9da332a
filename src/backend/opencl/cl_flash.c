/* clformer: flash attention on OpenCL (cl_kernels/flash_attention.cl): the ops table's
 * flash_forward / flash_backward, the tile rule and the programs (one per head size and tile,
 * built on first use and kept in the ctx).
 *
 * Tiles: BQ = BK = 32 rows for head sizes up to 64, 16 above (the dkv kernel keeps two query
 * tiles and two padded key tiles in local memory: (2 BQ HS + 2 BK (HS + 1)) floats, 32.5 KiB at
 * HS 64 with 32-row tiles); each smaller tile is tried in turn when a device cannot run one
 * (local memory, work-group size, or the private-memory budget of CPU devices), down to 4 rows.
 * The forward is one kernel; the backward is two: dq (which also writes delta = rowsum(dout *
 * out)) over query tiles, then dk and dv over key tiles, each group summing the query heads of
 * its kv head, so no float atomics are needed. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/opencl/cl_internal.h"

#define FLASH_MAX_VARIANTS 8

typedef struct {
    int hs, tile; /* -DHS, -DBQ = -DBK */
    int status;   /* CF_OK usable; negative: build failed or the device cannot run it */
    cl_program program;
    cl_kernel fwd, bwd_dq, bwd_dkv;
} flash_variant;

struct cf_cl_flash {
    flash_variant v[FLASH_MAX_VARIANTS];
    int n;
    int noted_hs[FLASH_MAX_VARIANTS]; /* head sizes whose tile was logged */
    int n_noted;
};

static void variant_free(flash_variant *v) {
    if (v->fwd) clReleaseKernel(v->fwd);
    if (v->bwd_dq) clReleaseKernel(v->bwd_dq);
    if (v->bwd_dkv) clReleaseKernel(v->bwd_dkv);
    if (v->program) clReleaseProgram(v->program);
    memset(v, 0, sizeof *v);
}

void cf_cl_flash_release(cf_cl_ctx *ctx) {
    struct cf_cl_flash *st = ctx->flash;
    if (!st) return;
    for (int i = 0; i < st->n; i++) variant_free(&st->v[i]);
    free(st);
    ctx->flash = NULL;
}

/* private floats one work-item of each kernel holds (q, acc, s / q, dO, dq / dk, dv) */
static size_t private_bytes(int hs, int tile) {
    size_t f = (size_t)3 * (size_t)hs + (size_t)tile + 16;
    return f * sizeof(float);
}

static int fits(cf_cl_ctx *ctx, cl_kernel k, const char *name, const flash_variant *v) {
    char why[256];
    const size_t local[1] = {(size_t)v->tile};
    int ok = cf_cl_kernel_fits(ctx, k, 1, local, private_bytes(v->hs, v->tile), why, sizeof why);
    if (ok < 0) {
        cf_cl_fail(ctx, "cl_kernels/flash_attention.cl: %s (HS %d, tile %d): %s", name, v->hs,
                   v->tile, why);
        return ok;
    }
    if (!ok) {
        CF_DEBUG("cl_kernels/flash_attention.cl: %s (HS %d, tile %d) does not fit %s: %s", name,
                 v->hs, v->tile, ctx->dev.name, why);
        return CF_ERR_UNSUPPORTED;
    }
    return CF_OK;
}

static int variant_get(cf_cl_ctx *ctx, struct cf_cl_flash *st, int hs, int tile,
                       flash_variant **out) {
    for (int i = 0; i < st->n; i++)
        if (st->v[i].hs == hs && st->v[i].tile == tile) {
            *out = &st->v[i];
            return st->v[i].status;
        }
    if (st->n == FLASH_MAX_VARIANTS) { /* many head sizes (tests): recycle the oldest */
        variant_free(&st->v[0]);
        memmove(&st->v[0], &st->v[1], (size_t)(FLASH_MAX_VARIANTS - 1) * sizeof st->v[0]);
        memset(&st->v[FLASH_MAX_VARIANTS - 1], 0, sizeof st->v[0]);
        st->n--;
    }
    flash_variant *v = &st->v[st->n++];
    memset(v, 0, sizeof *v);
    v->hs = hs;
    v->tile = tile;
    *out = v;
    char opts[96];
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DHS=%d -DBQ=%d -DBK=%d", hs, tile, tile);
    int rc = cf_cl_build_program(ctx, "flash_attention.cl", opts, &v->program);
    cl_int err = CL_SUCCESS;
    if (rc == CF_OK) {
        v->fwd = clCreateKernel(v->program, "flash_forward", &err);
        if (err == CL_SUCCESS) v->bwd_dq = clCreateKernel(v->program, "flash_backward_dq", &err);
        if (err == CL_SUCCESS) v->bwd_dkv = clCreateKernel(v->program, "flash_backward_dkv", &err);
        if (err != CL_SUCCESS) {
            cf_cl_fail(ctx, "cl_kernels/flash_attention.cl (%s): kernels not created: %s", opts,
                       cf_cl_errstr(err));
            rc = CF_ERR_BUILD;
        }
    }
    if (rc == CF_OK) rc = fits(ctx, v->fwd, "flash_forward", v);
    if (rc == CF_OK) rc = fits(ctx, v->bwd_dq, "flash_backward_dq", v);
    if (rc == CF_OK) rc = fits(ctx, v->bwd_dkv, "flash_backward_dkv", v);
    if (rc < 0) {
        variant_free(v);
        v->hs = hs;
        v->tile = tile;
    }
    v->status = rc;
    return rc;
}

/* The variant for head size hs: the largest tile of the rule that builds and fits. */
static int choose(cf_cl_ctx *ctx, int hs, flash_variant **out) {
    if (!ctx->flash) {
        ctx->flash = calloc(1, sizeof *ctx->flash);
        if (!ctx->flash) return CF_ERR_NOMEM;
    }
    struct cf_cl_flash *st = ctx->flash;
    int rc = CF_ERR_UNSUPPORTED;
    for (int tile = hs <= 64 ? 32 : 16; tile >= 4; tile /= 2) {
        rc = variant_get(ctx, st, hs, tile, out);
        if (rc == CF_OK) break;
        if (rc != CF_ERR_UNSUPPORTED) return rc;
    }
    if (rc != CF_OK) {
        cf_cl_fail(ctx, "flash attention: head size %d does not fit %s at any tile size (4..32 "
                   "rows); use attention: matrix in the config",
                   hs, ctx->dev.name);
        return CF_ERR_UNSUPPORTED;
    }
    int seen = 0;
    for (int i = 0; i < st->n_noted; i++) seen |= st->noted_hs[i] == hs;
    if (!seen && st->n_noted < FLASH_MAX_VARIANTS) {
        st->noted_hs[st->n_noted++] = hs;
        CF_DEBUG("flash attention hs=%d: tiles of %d rows on %s", hs, (*out)->tile, ctx->dev.name);
    }
    return CF_OK;
}

/* the doc view, or (has_doc 0) any valid buffer in its place */
static cl_mem doc_mem(cf_view doc, cf_view other, int *has_doc) {
    *has_doc = doc.buf != NULL;
    return *has_doc ? cf_cl_mem(doc) : cf_cl_mem(other);
}

int cf_cl_flash_forward(cf_backend *be, const cf_attn_desc *d, cf_view out, cf_view lse,
                        cf_view qkv, cf_view doc) {
    cf_cl_ctx *ctx = (cf_cl_ctx *)be->ctx;
    flash_variant *v = NULL;
    CF_TRY(choose(ctx, d->hs, &v));
    int has_doc;
    cl_mem dm = doc_mem(doc, qkv, &has_doc);
    const size_t tile = (size_t)v->tile;
    const size_t local[3] = {tile, 1, 1};
    const size_t global[3] = {((size_t)d->T + tile - 1) / tile * tile, (size_t)d->NH,
                              (size_t)d->B};
    return cf_cl_launch(
        ctx, v->fwd, "flash_forward", 3, global, local,
        CF_ARGS(ARG_MEM(cf_cl_mem(out)), ARG_ULONG(cf_view_elem_off(out)), ARG_MEM(cf_cl_mem(lse)),
                ARG_ULONG(cf_view_elem_off(lse)), ARG_MEM(cf_cl_mem(qkv)),
                ARG_ULONG(cf_view_elem_off(qkv)), ARG_MEM(dm),
                ARG_ULONG(has_doc ? cf_view_elem_off(doc) : 0), ARG_INT(has_doc), ARG_INT(d->NH),
                ARG_INT(d->KVH), ARG_INT(d->T), ARG_INT(d->window),
                ARG_FLOAT(1.0f / sqrtf((float)d->hs))));
}

int cf_cl_flash_backward(cf_backend *be, const cf_attn_desc *d, cf_view dqkv, cf_view delta,
                         cf_view dout, cf_view out, cf_view lse, cf_view qkv, cf_view doc) {
    cf_cl_ctx *ctx = (cf_cl_ctx *)be->ctx;
    flash_variant *v = NULL;
    CF_TRY(choose(ctx, d->hs, &v));
    int has_doc;
    cl_mem dm = doc_mem(doc, qkv, &has_doc);
    const size_t tile = (size_t)v->tile, rows = ((size_t)d->T + tile - 1) / tile * tile;
    const size_t local[3] = {tile, 1, 1};
    const size_t gq[3] = {rows, (size_t)d->NH, (size_t)d->B};
    const size_t gkv[3] = {rows, (size_t)d->KVH, (size_t)d->B};
    const float scale = 1.0f / sqrtf((float)d->hs);
    const cl_ulong doc_off = has_doc ? cf_view_elem_off(doc) : 0;
    CF_TRY(cf_cl_launch(
        ctx, v->bwd_dq, "flash_backward_dq", 3, gq, local,
        CF_ARGS(ARG_MEM(cf_cl_mem(dqkv)), ARG_ULONG(cf_view_elem_off(dqkv)),
                ARG_MEM(cf_cl_mem(delta)), ARG_ULONG(cf_view_elem_off(delta)),
                ARG_MEM(cf_cl_mem(dout)), ARG_ULONG(cf_view_elem_off(dout)),
                ARG_MEM(cf_cl_mem(out)), ARG_ULONG(cf_view_elem_off(out)), ARG_MEM(cf_cl_mem(lse)),
                ARG_ULONG(cf_view_elem_off(lse)), ARG_MEM(cf_cl_mem(qkv)),
                ARG_ULONG(cf_view_elem_off(qkv)), ARG_MEM(dm), ARG_ULONG(doc_off),
                ARG_INT(has_doc), ARG_INT(d->NH), ARG_INT(d->KVH), ARG_INT(d->T),
                ARG_INT(d->window), ARG_FLOAT(scale))));
    return cf_cl_launch(
        ctx, v->bwd_dkv, "flash_backward_dkv", 3, gkv, local,
        CF_ARGS(ARG_MEM(cf_cl_mem(dqkv)), ARG_ULONG(cf_view_elem_off(dqkv)),
                ARG_MEM(cf_cl_mem(delta)), ARG_ULONG(cf_view_elem_off(delta)),
                ARG_MEM(cf_cl_mem(dout)), ARG_ULONG(cf_view_elem_off(dout)),
                ARG_MEM(cf_cl_mem(lse)), ARG_ULONG(cf_view_elem_off(lse)),
                ARG_MEM(cf_cl_mem(qkv)), ARG_ULONG(cf_view_elem_off(qkv)), ARG_MEM(dm),
                ARG_ULONG(doc_off), ARG_INT(has_doc), ARG_INT(d->NH), ARG_INT(d->KVH),
                ARG_INT(d->T), ARG_INT(d->window), ARG_FLOAT(scale)));
}
