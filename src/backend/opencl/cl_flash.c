/* clformer: flash attention on OpenCL: the ops table's flash_forward / flash_backward, the tile
 * rules and the programs (one per head size and tile, built on first use and kept in the ctx).
 * Two sets of kernels compute the same op (CF_FLASH_KERNEL / cf_backend_options.flash_kernel):
 *
 * tiled (cl_kernels/flash_tiled.cl, CF_FLASH_KERNEL=tiled): FlashAttention-2 style, work-groups of
 * TX x TY = 16 x 16 work-items, each computing a small block of scores and of the output in
 * registers from float4 tiles in local memory. Per kernel the block per work-item (FM x FN
 * forward, QM x QN dq, KM x KN dkv) is the first of a short ladder whose tiles fit the local
 * memory (at most 48 KiB, what NVIDIA's OpenCL gives a group); at head sizes up to 64: forward 64
 * query rows x 32 keys, dq 32 x 32, dkv 32 keys x 16 queries. An 8 x 8 group is tried when a
 * device cannot run 256 work-items or the tiles do not fit (head size 128: dkv). Head sizes that
 * are not a multiple of 4 have no tiled shape. The backward is delta = rowsum(dout * out) (its
 * own small kernel), dq over query blocks, and dk, dv over key blocks (each group summing the
 * query heads of its kv head, so no float atomics). auto runs them on GPUs (timed on an H100:
 * 1.5-3.8x faster than the rows set).
 *
 * rows (cl_kernels/flash_attention.cl, the first version, what auto runs on CPU devices): one work-item per query (or key) row
 * holding its vectors in registers, key/value tiles in local memory. BQ = BK = 32 rows for head
 * sizes up to 64, 16 above (the dkv kernel keeps two query tiles and two padded key tiles in
 * local memory: (2 BQ HS + 2 BK (HS + 1)) floats, 32.5 KiB at HS 64 with 32-row tiles); each
 * smaller tile is tried in turn when a device cannot run one (local memory, work-group size, or
 * the private-memory budget of CPU devices), down to 4 rows. The forward is one kernel; the
 * backward is two: dq (which also writes delta) over query tiles, then dk and dv over key
 * tiles. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/opencl/cl_internal.h"
#include "backend/opencl/cl_matrix.h"
#include "backend/opencl/cl_plan.h"

#define FLASH_MAX_VARIANTS 8

typedef struct {
    int hs, tile; /* -DHS, -DBQ = -DBK */
    int status;   /* CF_OK usable; negative: build failed or the device cannot run it */
    cl_program program;
    cl_kernel fwd, bwd_dq, bwd_dkv;
} flash_variant;

/* a tiled program: head size, work-group TX x TY, the block per work-item of each kernel */
typedef struct {
    int hs, tx, ty, fm, fn, qm, qn, km, kn;
    int status; /* CF_OK usable; negative: build failed or the device cannot run it */
    int warned; /* auto fell back to the rows kernels after a failure, said once */
    cl_program program;
    cl_kernel fwd, delta, dq, dkv;
} tiled_variant;

struct cf_cl_flash {
    flash_variant v[FLASH_MAX_VARIANTS];
    int n;
    tiled_variant t[FLASH_MAX_VARIANTS];
    int nt;
    /* the matrix backward's scratch (probabilities, their gradient, the pre-softmax gradient,
     * an output copy, one after another), kept between calls; its size is m_buf->nbytes */
    cf_buffer *m_buf;
    size_t m_last;  /* the bytes of it the last backward call used (0: it ran another kernel) */
    int m_failed;   /* auto could not allocate it once: the tiled or rows kernels from then on */
    int noted_hs[FLASH_MAX_VARIANTS]; /* head sizes whose tile was logged */
    int n_noted;
    /* the matrix engine's kernels (flash_mma.cl) for one head size and precision at a time */
    cl_program mma_prog;
    cl_kernel mma_fwd, mma_dq, mma_dkv;
    int mma_hs, mma_prec, mma_status; /* mma_status: 0 not built, 1 built, < 0 failed */
    size_t mma_nt; /* the kernels' work-items a group (flash_mma.cl's FM_NT: 128 unless a
                    * variant's FM_WARPS says otherwise), read from the built kernels */
};

/* the matrix engine's program and kernels, released and cleared */
static void mma_free(struct cf_cl_flash *st) {
    if (st->mma_fwd) clReleaseKernel(st->mma_fwd);
    if (st->mma_dq) clReleaseKernel(st->mma_dq);
    if (st->mma_dkv) clReleaseKernel(st->mma_dkv);
    if (st->mma_prog) clReleaseProgram(st->mma_prog);
    st->mma_fwd = st->mma_dq = st->mma_dkv = NULL;
    st->mma_prog = NULL;
}

static void variant_free(flash_variant *v) {
    if (v->fwd) clReleaseKernel(v->fwd);
    if (v->bwd_dq) clReleaseKernel(v->bwd_dq);
    if (v->bwd_dkv) clReleaseKernel(v->bwd_dkv);
    if (v->program) clReleaseProgram(v->program);
    memset(v, 0, sizeof *v);
}

static void tiled_free(tiled_variant *v) {
    if (v->fwd) clReleaseKernel(v->fwd);
    if (v->delta) clReleaseKernel(v->delta);
    if (v->dq) clReleaseKernel(v->dq);
    if (v->dkv) clReleaseKernel(v->dkv);
    if (v->program) clReleaseProgram(v->program);
    memset(v, 0, sizeof *v);
}

void cf_cl_flash_free_scratch(cf_backend *be) {
    struct cf_cl_flash *st = ((cf_cl_ctx *)be->ctx)->flash;
    if (!st) return;
    if (st->m_buf) cf_be_free(be, st->m_buf);
    st->m_buf = NULL;
    st->m_last = 0;
}

uint64_t cf_cl_flash_scratch_bytes(const cf_cl_ctx *ctx) {
    const struct cf_cl_flash *st = ctx->flash;
    return st && st->m_buf ? (uint64_t)st->m_buf->nbytes : 0;
}

uint64_t cf_cl_flash_scratch_last(const cf_cl_ctx *ctx) {
    return ctx->flash ? (uint64_t)ctx->flash->m_last : 0;
}

void cf_cl_flash_release(cf_cl_ctx *ctx) {
    struct cf_cl_flash *st = ctx->flash;
    if (!st) return;
    for (int i = 0; i < st->n; i++) variant_free(&st->v[i]);
    for (int i = 0; i < st->nt; i++) tiled_free(&st->t[i]);
    mma_free(st);
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
    static const char *const names[] = {"flash_forward", "flash_backward_dq", "flash_backward_dkv"};
    cl_kernel *const ks[] = {&v->fwd, &v->bwd_dq, &v->bwd_dkv};
    int rc = cf_cl_build_kernels(ctx, "flash_attention.cl", opts, &v->program, 3, names, ks);
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

static int state(cf_cl_ctx *ctx) {
    if (!ctx->flash) {
        ctx->flash = calloc(1, sizeof *ctx->flash);
        if (!ctx->flash) return CF_ERR_NOMEM;
    }
    return CF_OK;
}

/* The variant for head size hs: the largest tile of the rule that builds and fits. */
static int choose(cf_cl_ctx *ctx, int hs, flash_variant **out) {
    CF_TRY(state(ctx));
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

static int rows_forward(cf_cl_ctx *ctx, const cf_attn_desc *d, cf_view out, cf_view lse,
                        cf_view qkv, cf_view doc) {
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

static int rows_backward(cf_cl_ctx *ctx, const cf_attn_desc *d, cf_view dqkv, cf_view delta,
                         cf_view dout, cf_view out, cf_view lse, cf_view qkv, cf_view doc) {
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

/* ---- tiled kernels (flash_tiled.cl) ---------------------------------------------------------- */

int cf_cl_flash_kernel_parse(const char *s, int *kind) {
    if (!s || !*s || strcmp(s, "auto") == 0) *kind = CF_FLASH_K_AUTO;
    else if (strcmp(s, "tiled") == 0) *kind = CF_FLASH_K_TILED;
    else if (strcmp(s, "rows") == 0) *kind = CF_FLASH_K_ROWS;
    else if (strcmp(s, "matrix") == 0) *kind = CF_FLASH_K_MATRIX;
    else if (strcmp(s, "mma") == 0) *kind = CF_FLASH_K_MMA;
    else return CF_ERR_INVALID;
    return CF_OK;
}

/* local floats of each tiled kernel (the arrays of flash_tiled.cl): rows of float4s, a row of n
 * floats padded to an odd number of float4s (odd4) */
static size_t odd4(size_t n) {
    return n / 4 % 2 ? n / 4 : n / 4 + 1;
}
static size_t max_sz(size_t a, size_t b) {
    return a > b ? a : b;
}
static size_t fwd_local(int hs, int tx, int ty, int m, int n) {
    const size_t br = (size_t)(ty * m), bc = (size_t)(tx * n), h4 = odd4((size_t)hs);
    return 4 * (br * h4 + max_sz(bc * h4, br * odd4(bc)) + (size_t)hs * odd4(bc)) +
           br * (size_t)tx;
}
static size_t dq_local(int hs, int tx, int ty, int m, int n) {
    const size_t br = (size_t)(ty * m), bc = (size_t)(tx * n), h4 = odd4((size_t)hs);
    return 4 * (2 * br * h4 + bc * h4 + (size_t)hs * odd4(bc) + max_sz(bc * h4, br * odd4(bc)));
}
static size_t dkv_local(int hs, int tx, int ty, int m, int n) {
    const size_t bk = (size_t)(ty * m), bq = (size_t)(tx * n), h4 = odd4((size_t)hs);
    return 4 * (2 * bk * h4 + 2 * max_sz(bq * h4, bk * odd4(bq)) + 2 * (size_t)hs * odd4(bq));
}

/* the first (m, n) of ladder whose local floats fit limit bytes; 0 when none */
static int pick(size_t (*local)(int, int, int, int, int), int hs, int tx, int ty,
                const int ladder[][2], int nl, size_t limit, int *m, int *n) {
    for (int i = 0; i < nl; i++)
        if (local(hs, tx, ty, ladder[i][0], ladder[i][1]) * sizeof(float) <= limit) {
            *m = ladder[i][0];
            *n = ladder[i][1];
            return 1;
        }
    return 0;
}

/* The tile rule for a work-group of tx x ty: 0 when some kernel fits no block of its ladder. */
static int tiled_rule(const cf_cl_ctx *ctx, int hs, int tx, int ty, tiled_variant *v) {
    static const int fwd[][2] = {{4, 2}, {2, 2}, {2, 1}, {1, 1}};
    static const int bwd[][2] = {{2, 2}, {2, 1}, {1, 1}};
    if (hs % 4) return 0; /* rows of float4s along the head dimension */
    size_t limit = (size_t)48 << 10;
    if (ctx->dev.local_mem < limit) limit = (size_t)ctx->dev.local_mem;
    memset(v, 0, sizeof *v);
    v->hs = hs;
    v->tx = tx;
    v->ty = ty;
    return pick(fwd_local, hs, tx, ty, fwd, 4, limit, &v->fm, &v->fn) &&
           pick(dq_local, hs, tx, ty, bwd, 3, limit, &v->qm, &v->qn) &&
           pick(dkv_local, hs, tx, ty, bwd, 3, limit, &v->km, &v->kn);
}

static int tiled_fits(cf_cl_ctx *ctx, cl_kernel k, const char *name, const tiled_variant *v,
                      int m, int n) {
    char why[256];
    const size_t local[1] = {(size_t)(v->tx * v->ty)};
    const int td = (v->hs + v->tx - 1) / v->tx;
    /* the block of scores (two in the backward), the accumulators, the row state */
    const size_t priv =
        ((size_t)(2 * m * n + 2 * m * td + 4 * m + 2 * n + 8 * (m + n + td)) + 32) * 4;
    int ok = cf_cl_kernel_fits(ctx, k, 1, local, priv, why, sizeof why);
    if (ok < 0) {
        cf_cl_fail(ctx, "cl_kernels/flash_tiled.cl: %s (HS %d, %dx%d): %s", name, v->hs, v->tx,
                   v->ty, why);
        return ok;
    }
    if (!ok) {
        CF_DEBUG("cl_kernels/flash_tiled.cl: %s (HS %d, %dx%d) does not fit %s: %s", name, v->hs,
                 v->tx, v->ty, ctx->dev.name, why);
        return CF_ERR_UNSUPPORTED;
    }
    return CF_OK;
}

static int tiled_build(cf_cl_ctx *ctx, tiled_variant *v) {
    char opts[192];
    snprintf(opts, sizeof opts,
             "-cl-std=CL1.2 -DHS=%d -DTX=%d -DTY=%d -DFM=%d -DFN=%d -DQM=%d -DQN=%d -DKM=%d "
             "-DKN=%d",
             v->hs, v->tx, v->ty, v->fm, v->fn, v->qm, v->qn, v->km, v->kn);
    static const char *const names[] = {"flash_tiled_forward", "flash_tiled_delta",
                                        "flash_tiled_dq", "flash_tiled_dkv"};
    cl_kernel *const ks[] = {&v->fwd, &v->delta, &v->dq, &v->dkv};
    int rc = cf_cl_build_kernels(ctx, "flash_tiled.cl", opts, &v->program, 4, names, ks);
    if (rc == CF_OK) rc = tiled_fits(ctx, v->fwd, "flash_tiled_forward", v, v->fm, v->fn);
    if (rc == CF_OK) rc = tiled_fits(ctx, v->dq, "flash_tiled_dq", v, v->qm, v->qn);
    if (rc == CF_OK) rc = tiled_fits(ctx, v->dkv, "flash_tiled_dkv", v, v->km, v->kn);
    if (rc == CF_OK)
        CF_DEBUG("flash attention hs=%d: tiled kernels on %s (%s)", v->hs, ctx->dev.name, opts);
    return rc;
}

/* The tiled program for head size hs: 16 x 16 work-groups, else 8 x 8. CF_ERR_UNSUPPORTED when
 * neither fits the device (said once per head size at debug level). */
static int tiled_choose(cf_cl_ctx *ctx, int hs, tiled_variant **out) {
    CF_TRY(state(ctx));
    struct cf_cl_flash *st = ctx->flash;
    for (int i = 0; i < st->nt; i++)
        if (st->t[i].hs == hs) {
            *out = &st->t[i];
            return st->t[i].status;
        }
    if (st->nt == FLASH_MAX_VARIANTS) { /* many head sizes (tests): recycle the oldest */
        tiled_free(&st->t[0]);
        memmove(&st->t[0], &st->t[1], (size_t)(FLASH_MAX_VARIANTS - 1) * sizeof st->t[0]);
        memset(&st->t[FLASH_MAX_VARIANTS - 1], 0, sizeof st->t[0]);
        st->nt--;
    }
    tiled_variant *v = &st->t[st->nt++];
    static const int grids[][2] = {{16, 16}, {8, 8}};
    int rc = CF_ERR_UNSUPPORTED;
    for (int g = 0; g < 2 && rc == CF_ERR_UNSUPPORTED; g++) {
        if (!tiled_rule(ctx, hs, grids[g][0], grids[g][1], v)) continue;
        rc = tiled_build(ctx, v);
        if (rc < 0) {
            tiled_variant keep = *v;
            tiled_free(v);
            *v = keep;
            v->program = NULL;
            v->fwd = v->delta = v->dq = v->dkv = NULL;
        }
    }
    if (rc == CF_ERR_UNSUPPORTED)
        CF_DEBUG("flash attention hs=%d: no tiled shape fits %s", hs, ctx->dev.name);
    v->hs = hs;
    v->status = rc;
    *out = v;
    return rc;
}

static int tiled_forward(cf_cl_ctx *ctx, const tiled_variant *v, const cf_attn_desc *d,
                         cf_view out, cf_view lse, cf_view qkv, cf_view doc) {
    int has_doc;
    cl_mem dm = doc_mem(doc, qkv, &has_doc);
    const size_t nt = (size_t)(v->tx * v->ty), br = (size_t)(v->ty * v->fm);
    const size_t local[3] = {nt, 1, 1};
    const size_t global[3] = {((size_t)d->T + br - 1) / br * nt, (size_t)d->NH, (size_t)d->B};
    return cf_cl_launch(
        ctx, v->fwd, "flash_tiled_forward", 3, global, local,
        CF_ARGS(ARG_MEM(cf_cl_mem(out)), ARG_ULONG(cf_view_elem_off(out)), ARG_MEM(cf_cl_mem(lse)),
                ARG_ULONG(cf_view_elem_off(lse)), ARG_MEM(cf_cl_mem(qkv)),
                ARG_ULONG(cf_view_elem_off(qkv)), ARG_MEM(dm),
                ARG_ULONG(has_doc ? cf_view_elem_off(doc) : 0), ARG_INT(has_doc), ARG_INT(d->NH),
                ARG_INT(d->KVH), ARG_INT(d->T), ARG_INT(d->window),
                ARG_FLOAT(1.0f / sqrtf((float)d->hs))));
}

static int tiled_backward(cf_cl_ctx *ctx, const tiled_variant *v, const cf_attn_desc *d,
                          cf_view dqkv, cf_view delta, cf_view dout, cf_view out, cf_view lse,
                          cf_view qkv, cf_view doc) {
    int has_doc;
    cl_mem dm = doc_mem(doc, qkv, &has_doc);
    const size_t nt = (size_t)(v->tx * v->ty);
    const size_t br = (size_t)(v->ty * v->qm), bk = (size_t)(v->ty * v->km);
    const size_t local[3] = {nt, 1, 1};
    const size_t gq[3] = {((size_t)d->T + br - 1) / br * nt, (size_t)d->NH, (size_t)d->B};
    const size_t gkv[3] = {((size_t)d->T + bk - 1) / bk * nt, (size_t)d->KVH, (size_t)d->B};
    const int rows = d->B * d->T * d->NH;
    const size_t gd[1] = {((size_t)rows + 63) / 64 * 64}, ld[1] = {64};
    const float scale = 1.0f / sqrtf((float)d->hs);
    const cl_ulong doc_off = has_doc ? cf_view_elem_off(doc) : 0;
    CF_TRY(cf_cl_launch(ctx, v->delta, "flash_tiled_delta", 1, gd, ld,
                        CF_ARGS(ARG_MEM(cf_cl_mem(delta)), ARG_ULONG(cf_view_elem_off(delta)),
                                ARG_MEM(cf_cl_mem(dout)), ARG_ULONG(cf_view_elem_off(dout)),
                                ARG_MEM(cf_cl_mem(out)), ARG_ULONG(cf_view_elem_off(out)),
                                ARG_INT(d->NH), ARG_INT(d->T), ARG_INT(rows))));
    CF_TRY(cf_cl_launch(
        ctx, v->dq, "flash_tiled_dq", 3, gq, local,
        CF_ARGS(ARG_MEM(cf_cl_mem(dqkv)), ARG_ULONG(cf_view_elem_off(dqkv)),
                ARG_MEM(cf_cl_mem(delta)), ARG_ULONG(cf_view_elem_off(delta)),
                ARG_MEM(cf_cl_mem(dout)), ARG_ULONG(cf_view_elem_off(dout)),
                ARG_MEM(cf_cl_mem(lse)), ARG_ULONG(cf_view_elem_off(lse)),
                ARG_MEM(cf_cl_mem(qkv)), ARG_ULONG(cf_view_elem_off(qkv)), ARG_MEM(dm),
                ARG_ULONG(doc_off), ARG_INT(has_doc), ARG_INT(d->NH), ARG_INT(d->KVH),
                ARG_INT(d->T), ARG_INT(d->window), ARG_FLOAT(scale))));
    return cf_cl_launch(
        ctx, v->dkv, "flash_tiled_dkv", 3, gkv, local,
        CF_ARGS(ARG_MEM(cf_cl_mem(dqkv)), ARG_ULONG(cf_view_elem_off(dqkv)),
                ARG_MEM(cf_cl_mem(delta)), ARG_ULONG(cf_view_elem_off(delta)),
                ARG_MEM(cf_cl_mem(dout)), ARG_ULONG(cf_view_elem_off(dout)),
                ARG_MEM(cf_cl_mem(lse)), ARG_ULONG(cf_view_elem_off(lse)),
                ARG_MEM(cf_cl_mem(qkv)), ARG_ULONG(cf_view_elem_off(qkv)), ARG_MEM(dm),
                ARG_ULONG(doc_off), ARG_INT(has_doc), ARG_INT(d->NH), ARG_INT(d->KVH),
                ARG_INT(d->T), ARG_INT(d->window), ARG_FLOAT(scale)));
}

/* ---- the ops --------------------------------------------------------------------------------- */

/* the tiled program when the setting allows it and it fits; NULL (CF_OK) for the rows kernels */
static int which(cf_cl_ctx *ctx, int hs, tiled_variant **t) {
    *t = NULL;
    /* auto: the tiled kernels on GPUs, the rows kernels on CPU devices. On an H100 the tiled set
     * ran the forward 1.7-3.2x and the backward 1.5-3.8x faster than the rows set at T 128 to 8192
     * (BENCHMARKS.md "Register-tiled flash kernels"); on PoCL the two are within about 1.3x, the
     * rows ones ahead at T 1024 and far ahead under load (PoCL vectorises their independent
     * work-items). A head size with no tiled shape (not a multiple of 4, or tiles that do not
     * fit) runs the rows kernels under auto, and is an error when tiled was asked for by name;
     * so is a tiled program that failed to build, which auto reports once and runs the rows
     * kernels instead. */
    const int gpu_auto = (ctx->flash_kernel == CF_FLASH_K_AUTO ||
                          ctx->flash_kernel == CF_FLASH_K_MATRIX) &&
                         (ctx->dev.type & CL_DEVICE_TYPE_GPU);
    const int want = ctx->flash_kernel == CF_FLASH_K_TILED || gpu_auto;
    if (!want) return CF_OK;
    int rc = tiled_choose(ctx, hs, t);
    if (rc == CF_OK) return CF_OK;
    tiled_variant *failed = *t;
    *t = NULL;
    if (ctx->flash_kernel != CF_FLASH_K_TILED) {
        if (rc != CF_ERR_UNSUPPORTED && failed && !failed->warned) {
            failed->warned = 1;
            CF_WARN("flash attention hs=%d: the tiled kernels failed on %s (above); running the "
                    "rows kernels",
                    hs, ctx->dev.name);
        }
        return CF_OK;
    }
    if (rc != CF_ERR_UNSUPPORTED) return rc;
    cf_cl_fail(ctx, "flash attention: the tiled kernels (CF_FLASH_KERNEL=tiled) do not fit %s at "
               "head size %d; use CF_FLASH_KERNEL=auto or rows",
               ctx->dev.name, hs);
    return CF_ERR_UNSUPPORTED;
}

/* ---- forward and backward on the matrix engine (flash_mma.cl) -------------------------------- */

int cf_cl_flash_mma_engine(const cf_cl_ctx *ctx) {
    if (!(ctx->mma_half || ctx->mma_tf32) || !ctx->mx || !ctx->mx->flash) return 0;
    const int named = ctx->flash_kernel == CF_FLASH_K_MMA;
    const int chosen = named || (ctx->flash_kernel == CF_FLASH_K_AUTO &&
                                 ctx->mx->flash_verified && !ctx->mx_emulate);
    return chosen ? (ctx->mma_tf32 ? 8 : 16) : 0;
}

/* Do the matrix engine's kernels run this call? Where cf_cl_flash_mma_engine says so and the head
 * size is one they take (a multiple of the product's k, at most 128); asked for by name
 * (CF_FLASH_KERNEL=mma) where they cannot run: an error. */
static int mma_wanted(cf_cl_ctx *ctx, const cf_attn_desc *d) {
    const int named = ctx->flash_kernel == CF_FLASH_K_MMA;
    if (!named && ctx->flash_kernel != CF_FLASH_K_AUTO) return 0;
    const int k = cf_cl_flash_mma_engine(ctx);
    const int can = k > 0 && d->hs % k == 0 && d->hs <= 128;
    if (named && !can) {
        cf_cl_fail(ctx, "flash attention: CF_FLASH_KERNEL=mma needs precision tf32, bf16 or fp16 "
                   "on a matrix engine with flash kernels (%s) and a head size that is a "
                   "multiple of %d up to 128 (this one: %d); use CF_FLASH_KERNEL=auto",
                   ctx->mx ? ctx->mx_name : "none here", ctx->mma_tf32 ? 8 : 16, d->hs);
        return -1;
    }
    return can;
}

static int mma_build(cf_cl_ctx *ctx, int hs) {
    CF_TRY(state(ctx));
    struct cf_cl_flash *st = ctx->flash;
    const int prec = ctx->mx_prec; /* tf32, bf16 or fp16 (mma_wanted) */
    if (st->mma_status != 0 && st->mma_hs == hs && st->mma_prec == prec)
        return st->mma_status > 0 ? CF_OK : st->mma_status;
    mma_free(st);
    char form[160], file[160], opts[320];
    const cf_cl_matrix_choice mc = {ctx->mx, ctx->mx_emulate};
    cf_cl_matrix_options(mc, prec, form, sizeof form);
    snprintf(file, sizeof file, "%s+%s", ctx->mx->file, ctx->mx->flash);
    /* on a CPU device (the emulation's tests) without optimisation: LLVM takes minutes per
     * head size over this kernel's unrolled loops replicated across the work-group (PoCL), as
     * gemm_fast.cl's emulated forms do (cl_gemm_fast.c) */
    const int cpu = !(ctx->dev.type & CL_DEVICE_TYPE_GPU), verbose = cf_cl_nv_verbose(ctx);
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DGF_MMA_HELPERS_ONLY -DHS=%d %s%s%s", hs, form,
             cpu ? " -cl-opt-disable" : "", verbose ? " -cl-nv-verbose" : "");
    static const char *const names[] = {"flash_mma_forward", "flash_mma_dq", "flash_mma_dkv"};
    cl_kernel *const ks[] = {&st->mma_fwd, &st->mma_dq, &st->mma_dkv};
    int rc = cf_cl_build_kernels(ctx, file, opts, &st->mma_prog, 3, names, ks);
    if (rc == CF_OK && verbose) {
        char what[32];
        snprintf(what, sizeof what, "flash_mma hs %d", hs);
        cf_cl_nv_report(ctx, st->mma_prog, what);
    }
    if (rc == CF_OK) {
        /* the group size the kernels were built with (16 query rows or keys a warp of 32) */
        size_t req[3] = {0, 0, 0};
        const cl_int err = clGetKernelWorkGroupInfo(st->mma_fwd, ctx->dev.device,
                                                    CL_KERNEL_COMPILE_WORK_GROUP_SIZE,
                                                    sizeof req, req, NULL);
        char why[256] = "";
        int fits = 1;
        if (err != CL_SUCCESS || req[0] < 32 || req[0] > 1024 || req[0] % 32 != 0) {
            snprintf(why, sizeof why, "its group size is not known (%s, %zu work-items)",
                     err != CL_SUCCESS ? cf_cl_errstr(err) : "queried", req[0]);
            fits = 0;
        }
        for (int i = 0; i < 3 && fits > 0; i++)
            fits = cf_cl_kernel_fits(ctx, *ks[i], 1, req, 0, why, sizeof why);
        if (fits <= 0) {
            cf_cl_fail(ctx, "cl_kernels/%s: the flash kernels cannot run on %s: %s",
                       ctx->mx->flash, ctx->dev.name, why);
            rc = fits == 0 ? CF_ERR_UNSUPPORTED : CF_ERR_BUILD;
            mma_free(st);
        }
        st->mma_nt = req[0];
    }
    st->mma_hs = hs;
    st->mma_prec = prec;
    st->mma_status = rc == CF_OK ? 1 : rc;
    if (rc == CF_OK)
        CF_DEBUG("flash attention hs=%d: forward and backward on %s (%s)", hs, ctx->mx_name,
                 opts);
    return rc;
}

/* flash_mma.cl's shape: work-groups of nt work-items (st->mma_nt: 4 warps by default) over
 * nt / 2 query rows (or keys), 16 a warp; its local arguments: lm, the staged tiles of a block of
 * bc keys or queries (FM_BC) and the kernel's reductions, and the emulated warps' registers
 * (nt x 6 words; 4 bytes unused on hardware). The tiles (32-bit words, flash_mma.cl's FM_RSZ
 * and FM_TSZ): row-major, bc rows of hs + 4 words (TF32) or hs / 2 + 4 (two bf16 / fp16 values a
 * word); transposed (bf16 / fp16 only), hs rows of bc / 2 + 4 words. The forward stages K
 * row-major and V transposed (TF32: both row-major) with 4 reductions a row of the group;
 * flash_mma_dq K both ways and V row-major (its rows' 4 partial deltas fit the first tile);
 * flash_mma_dkv Q and dO both ways with 3 values a query. */
enum { MMA_K_FWD, MMA_K_DQ, MMA_K_DKV };
static cf_cl_arg mma_local_lm(const cf_cl_ctx *ctx, int hs, int kernel) {
    const size_t bc = hs <= 64 ? 64 : 32, h = (size_t)hs;
    const int tf32 = ctx->mx_prec == CF_CL_MX_TF32; /* the build's (mma_build) */
    const size_t rsz = bc * (tf32 ? h + 4 : h / 2 + 4), tsz = tf32 ? 0 : h * (bc / 2 + 4);
    size_t words;
    if (kernel == MMA_K_FWD)
        words = rsz + (tf32 ? rsz : tsz) + ctx->flash->mma_nt / 2 * 4;
    else if (kernel == MMA_K_DQ)
        words = 2 * rsz + tsz;
    else
        words = 2 * rsz + 2 * tsz + 3 * bc;
    return ARG_LOCAL(words * sizeof(cl_uint));
}
static cf_cl_arg mma_local_emu(const cf_cl_ctx *ctx) {
    return ARG_LOCAL(ctx->mx_emulate ? ctx->flash->mma_nt * 6 * sizeof(cl_uint)
                                     : sizeof(cl_uint));
}
/* the range over the T rows of every (batch, head) (heads: NH, or KVH for the keys' kernel) */
static void mma_range(const cf_cl_ctx *ctx, const cf_attn_desc *d, int heads, size_t global[3],
                      size_t local[3]) {
    const size_t nt = ctx->flash->mma_nt, rows = nt / 2;
    global[0] = ((size_t)d->T + rows - 1) / rows * nt;
    global[1] = (size_t)heads;
    global[2] = (size_t)d->B;
    local[0] = nt;
    local[1] = local[2] = 1;
}

static int mma_forward(cf_cl_ctx *ctx, const cf_attn_desc *d, cf_view out, cf_view lse,
                       cf_view qkv, cf_view doc) {
    CF_TRY(mma_build(ctx, d->hs));
    int has_doc;
    cl_mem dm = doc_mem(doc, qkv, &has_doc);
    size_t global[3], local[3];
    mma_range(ctx, d, d->NH, global, local);
    return cf_cl_launch(
        ctx, ctx->flash->mma_fwd, "flash_mma_forward", 3, global, local,
        CF_ARGS(ARG_MEM(cf_cl_mem(out)), ARG_ULONG(cf_view_elem_off(out)), ARG_MEM(cf_cl_mem(lse)),
                ARG_ULONG(cf_view_elem_off(lse)), ARG_MEM(cf_cl_mem(qkv)),
                ARG_ULONG(cf_view_elem_off(qkv)), ARG_MEM(dm),
                ARG_ULONG(has_doc ? cf_view_elem_off(doc) : 0), ARG_INT(has_doc), ARG_INT(d->NH),
                ARG_INT(d->KVH), ARG_INT(d->T), ARG_INT(d->window),
                ARG_FLOAT(1.0f / sqrtf((float)d->hs)), mma_local_lm(ctx, d->hs, MMA_K_FWD),
                mma_local_emu(ctx)));
}

/* dq and delta (flash_mma_dq), then dk and dv (flash_mma_dkv, which reads delta) */
static int mma_backward(cf_cl_ctx *ctx, const cf_attn_desc *d, cf_view dqkv, cf_view delta,
                        cf_view dout, cf_view out, cf_view lse, cf_view qkv, cf_view doc) {
    CF_TRY(mma_build(ctx, d->hs));
    int has_doc;
    cl_mem dm = doc_mem(doc, qkv, &has_doc);
    size_t gq[3], gkv[3], local[3];
    mma_range(ctx, d, d->NH, gq, local);
    mma_range(ctx, d, d->KVH, gkv, local);
    const float scale = 1.0f / sqrtf((float)d->hs);
    const cl_ulong doc_off = has_doc ? cf_view_elem_off(doc) : 0;
    const cf_cl_arg emu = mma_local_emu(ctx);
    CF_TRY(cf_cl_launch(
        ctx, ctx->flash->mma_dq, "flash_mma_dq", 3, gq, local,
        CF_ARGS(ARG_MEM(cf_cl_mem(dqkv)), ARG_ULONG(cf_view_elem_off(dqkv)),
                ARG_MEM(cf_cl_mem(delta)), ARG_ULONG(cf_view_elem_off(delta)),
                ARG_MEM(cf_cl_mem(dout)), ARG_ULONG(cf_view_elem_off(dout)),
                ARG_MEM(cf_cl_mem(out)), ARG_ULONG(cf_view_elem_off(out)),
                ARG_MEM(cf_cl_mem(lse)), ARG_ULONG(cf_view_elem_off(lse)),
                ARG_MEM(cf_cl_mem(qkv)), ARG_ULONG(cf_view_elem_off(qkv)), ARG_MEM(dm),
                ARG_ULONG(doc_off), ARG_INT(has_doc), ARG_INT(d->NH), ARG_INT(d->KVH),
                ARG_INT(d->T), ARG_INT(d->window), ARG_FLOAT(scale),
                mma_local_lm(ctx, d->hs, MMA_K_DQ), emu)));
    return cf_cl_launch(
        ctx, ctx->flash->mma_dkv, "flash_mma_dkv", 3, gkv, local,
        CF_ARGS(ARG_MEM(cf_cl_mem(dqkv)), ARG_ULONG(cf_view_elem_off(dqkv)),
                ARG_MEM(cf_cl_mem(delta)), ARG_ULONG(cf_view_elem_off(delta)),
                ARG_MEM(cf_cl_mem(dout)), ARG_ULONG(cf_view_elem_off(dout)),
                ARG_MEM(cf_cl_mem(lse)), ARG_ULONG(cf_view_elem_off(lse)),
                ARG_MEM(cf_cl_mem(qkv)), ARG_ULONG(cf_view_elem_off(qkv)), ARG_MEM(dm),
                ARG_ULONG(doc_off), ARG_INT(has_doc), ARG_INT(d->NH), ARG_INT(d->KVH),
                ARG_INT(d->T), ARG_INT(d->window), ARG_FLOAT(scale),
                mma_local_lm(ctx, d->hs, MMA_K_DKV), emu));
}

int cf_cl_flash_forward(cf_backend *be, const cf_attn_desc *d, cf_view out, cf_view lse,
                        cf_view qkv, cf_view doc) {
    cf_cl_ctx *ctx = (cf_cl_ctx *)be->ctx;
    const int mma = mma_wanted(ctx, d);
    if (mma < 0) return CF_ERR_UNSUPPORTED;
    if (mma) {
        const int rc = mma_forward(ctx, d, out, lse, qkv, doc);
        /* auto: a build or launch that failed is said once (its own message), then the kernels
         * below from then on (mma_status keeps the failure); asked for by name it is the error */
        if (rc == CF_OK || ctx->flash_kernel == CF_FLASH_K_MMA) return rc;
        ctx->flash->mma_status = rc;
        ctx->last_error[0] = 0;
    }
    tiled_variant *t;
    CF_TRY(which(ctx, d->hs, &t));
    return t ? tiled_forward(ctx, t, d, out, lse, qkv, doc)
             : rows_forward(ctx, d, out, lse, qkv, doc);
}

/* ---- the backward through the matrix attention ops ------------------------------------------ */

/* Does the matrix backward run this call, and in which chunks (cl_plan.h)? The fused kernels are
 * asked for only when the call is considered: asking builds them. */
static int matrix_wanted(cf_cl_ctx *ctx, const cf_attn_desc *d, int has_doc, cf_cl_flash_split *m) {
    if (!cf_cl_plan_flash_matrix_considered(ctx->flash_kernel,
                                            (ctx->dev.type & CL_DEVICE_TYPE_GPU) != 0,
                                            ctx->flash && ctx->flash->m_failed, d, has_doc))
        return 0;
    /* the fused kernels where a variant of them builds and fits here (not the plan's rule alone:
     * where none builds, the batched GEMMs, as in the matrix attention ops) */
    const int fused = cf_cl_attention_fused_available(ctx, d->NH, d->KVH, d->hs);
    return cf_cl_plan_flash_matrix_split(d, ctx->flash_kernel == CF_FLASH_K_MATRIX, fused,
                                         ctx->flash_scratch, ctx->dev.global_mem,
                                         ctx->dev.max_alloc, m);
}

/* dq, dk, dv (assigned) by recomputing the probabilities, chunk by chunk (mp, matrix_wanted's): the
 * forward into scratch (the probabilities and an output copy), then the backward from them.
 * Nothing of size T x T outlives the call's chunk; out, lse and delta are not used. */
static int matrix_backward(cf_backend *be, const cf_attn_desc *d, const cf_cl_flash_split *mp,
                           cf_view dqkv, cf_view dout, cf_view qkv) {
    cf_cl_ctx *ctx = (cf_cl_ctx *)be->ctx;
    CF_TRY(state(ctx));
    struct cf_cl_flash *st = ctx->flash;
    const int B = d->B, T = d->T, NH = d->NH, KVH = d->KVH, hs = d->hs;
    const size_t QKV = (size_t)(NH + 2 * KVH) * hs, C = (size_t)NH * hs;
    const cf_cl_flash_split m = *mp;
    /* one buffer (allocated through the backend, so the peak memory counts it), replaced when a
     * larger one is needed; under auto a failed allocation is not an error: the caller runs the
     * tiled kernels */
    const size_t per = m.nb * m.nh * (size_t)T * T * sizeof(float); /* one (nb, nh, T, T) part */
    const size_t need = m.parts * per + m.nb * (size_t)T * C * sizeof(float);
    if (!st->m_buf || st->m_buf->nbytes < need) {
        cf_cl_flash_free_scratch(be);
        const int quiet = ctx->quiet_init;
        if (ctx->flash_kernel == CF_FLASH_K_AUTO) ctx->quiet_init = 1;
        const int rc = cf_be_alloc(be, need, &st->m_buf);
        ctx->quiet_init = quiet;
        CF_TRY(rc);
    }
    st->m_last = need;
    const size_t pf = per / sizeof(float);
    const cf_view att = cf_view_f32(st->m_buf, 0), datt = cf_view_f32(st->m_buf, pf);
    const cf_view dpre = cf_view_f32(st->m_buf, (m.parts - 1) * pf);
    const cf_view out = cf_view_f32(st->m_buf, m.parts * pf);
    for (int b0 = 0; b0 < B; b0 += (int)m.nb) {
        const int cb = B - b0 < (int)m.nb ? B - b0 : (int)m.nb;
        const cf_view q = cf_view_add(qkv, (size_t)b0 * T * QKV);
        const cf_view dq = cf_view_add(dqkv, (size_t)b0 * T * QKV);
        const cf_view dO = cf_view_add(dout, (size_t)b0 * T * C);
        if (!m.fused) {
            CF_TRY(be->ops->attention_forward(be, out, att, q, cb, T, NH, KVH, hs));
            CF_TRY(be->ops->attention_backward(be, dq, datt, dpre, dO, q, att, cb, T, NH, KVH,
                                               hs));
            continue;
        }
        for (int h0 = 0; h0 < NH; h0 += (int)m.nh) {
            const int hn = NH - h0 < (int)m.nh ? NH - h0 : (int)m.nh;
            int rc = cf_cl_attention_fused_forward(ctx, out, att, q, cb, T, NH, KVH, hs, h0, hn);
            if (rc > 0)
                rc = cf_cl_attention_fused_backward(ctx, dq, dpre, dO, q, att, cb, T, NH, KVH, hs,
                                                    h0, hn);
            /* (rc 0, declined, cannot happen: matrix_wanted built the variant) */
            CF_TRY(rc < 0 ? rc : rc == 0 ? CF_ERR_UNSUPPORTED : CF_OK);
        }
    }
    return CF_OK;
}

int cf_cl_flash_backward(cf_backend *be, const cf_attn_desc *d, cf_view dqkv, cf_view delta,
                         cf_view dout, cf_view out, cf_view lse, cf_view qkv, cf_view doc) {
    cf_cl_ctx *ctx = (cf_cl_ctx *)be->ctx;
    if (ctx->flash) ctx->flash->m_last = 0;
    /* the matrix engine's kernels where the forward runs them (mma_wanted: the same rule) */
    const int mma = mma_wanted(ctx, d);
    if (mma < 0) return CF_ERR_UNSUPPORTED;
    if (mma) {
        const int rc = mma_backward(ctx, d, dqkv, delta, dout, out, lse, qkv, doc);
        if (rc == CF_OK || ctx->flash_kernel == CF_FLASH_K_MMA) return rc;
        ctx->flash->mma_status = rc; /* (as the forward) */
        ctx->last_error[0] = 0;
    }
    cf_cl_flash_split m;
    if (matrix_wanted(ctx, d, doc.buf != NULL, &m)) {
        const int rc = matrix_backward(be, d, &m, dqkv, dout, qkv);
        /* auto chose it from the budget, not from the memory left: where its scratch does not
         * fit, the tiled (or rows) kernels take over for good, said once */
        if (rc != CF_ERR_NOMEM || ctx->flash_kernel != CF_FLASH_K_AUTO) return rc;
        cf_cl_flash_free_scratch(be);
        ctx->flash->m_failed = 1;
        ctx->last_error[0] = 0;
        CF_WARN("flash attention: no device memory left on %s for the matrix backward's scratch; "
                "running the tiled kernels", ctx->dev.name);
    }
    tiled_variant *t;
    CF_TRY(which(ctx, d->hs, &t));
    return t ? tiled_backward(ctx, t, d, dqkv, delta, dout, out, lse, qkv, doc)
             : rows_backward(ctx, d, dqkv, delta, dout, out, lse, qkv, doc);
}
