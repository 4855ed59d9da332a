/* clformer: fused causal attention for the OpenCL backend (cl_kernels/attention.cl built with
 * -DHS): the path switch (CF_ATTENTION), the block-size rule, the programs (one per head size,
 * work-group height and head layout, multi-head (-DATT_MHA) or grouped-query, built on first use
 * and kept in the ctx) and the launches: forward in one
 * kernel, backward in two. cl_backend.c's attention ops call these first; what they decline runs
 * as batched GEMMs around the softmax kernels. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend/opencl/cl_internal.h"
#include "backend/opencl/cl_plan.h"

/* Largest head size of the fused kernels (CF_CL_ATT_MAX_HS, cl_plan.h): their register tiles and
 * local row tiles grow with it (at 64, 43.5 KiB of local memory per group of 256); larger heads
 * have products large enough for the batched GEMMs. */
#define ATT_MAX_VARIANTS 12
#define ATT_MAX_NOTED 32

typedef struct {
    int hs, ty; /* -DHS, -DTY: groups of 16 x ty work-items, blocks of 4 * ty rows */
    int mha;    /* -DATT_MHA: built for KVH == NH (multi-head addressing, cl_kernels/attention.cl) */
    int status; /* CF_OK usable; negative: build failed or the device cannot run it (kept, so
                 * that it is not built again) */
    cl_program program;
    cl_kernel fwd, bwd_q, bwd_kv;
} att_variant;

struct cf_cl_attention {
    int mode; /* enum cf_cl_attention_mode */
    att_variant v[ATT_MAX_VARIANTS];
    int n;
    long fused, gemm; /* ops run by each path */
    long fused_mha;   /* of the fused ones, those on a multi-head (-DATT_MHA) build */
    struct {
        int T, hs, bwd;
    } noted[ATT_MAX_NOTED]; /* shapes whose path was logged */
    int n_noted;
};

static int parse_mode(const char *s) {
    if (!s || !*s || strcasecmp(s, "auto") == 0) return CF_ATT_AUTO;
    if (strcasecmp(s, "fused") == 0) return CF_ATT_FUSED;
    if (strcasecmp(s, "gemm") == 0) return CF_ATT_GEMM;
    return -1;
}

int cf_cl_attention_parse(const char *s, int *mode) {
    *mode = parse_mode(s);
    return *mode < 0 ? CF_ERR_INVALID : CF_OK;
}

static struct cf_cl_attention *att_state(cf_cl_ctx *ctx) {
    if (ctx->attention) return ctx->attention;
    struct cf_cl_attention *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    /* cf_backend_options.attention, parsed at creation (-1: not given) */
    st->mode = ctx->attention_mode >= 0 ? ctx->attention_mode : CF_ATT_AUTO;
    ctx->attention = st;
    return st;
}

int cf_cl_attention_set_mode(cf_cl_ctx *ctx, const char *mode) {
    int m = parse_mode(mode);
    if (m < 0) {
        cf_cl_fail(ctx, "attention path '%s': expected auto, fused or gemm", mode);
        return CF_ERR_INVALID;
    }
    struct cf_cl_attention *st = att_state(ctx);
    if (!st) return CF_ERR_NOMEM;
    st->mode = m;
    st->n_noted = 0; /* shapes log their path again */
    return CF_OK;
}

void cf_cl_attention_counts(cf_cl_ctx *ctx, long *fused, long *gemm) {
    const struct cf_cl_attention *st = ctx->attention;
    *fused = st ? st->fused : 0;
    *gemm = st ? st->gemm : 0;
}

long cf_cl_attention_fused_mha(cf_cl_ctx *ctx) {
    return ctx->attention ? ctx->attention->fused_mha : 0;
}

void cf_cl_attention_count_gemm(cf_cl_ctx *ctx) {
    struct cf_cl_attention *st = att_state(ctx);
    if (st) st->gemm++;
}

static void variant_free(att_variant *v) {
    if (v->fwd) clReleaseKernel(v->fwd);
    if (v->bwd_q) clReleaseKernel(v->bwd_q);
    if (v->bwd_kv) clReleaseKernel(v->bwd_kv);
    if (v->program) clReleaseProgram(v->program);
    memset(v, 0, sizeof *v);
}

void cf_cl_attention_release(cf_cl_ctx *ctx) {
    struct cf_cl_attention *st = ctx->attention;
    if (!st) return;
    for (int i = 0; i < st->n; i++) variant_free(&st->v[i]);
    free(st);
    ctx->attention = NULL;
}

/* ---- programs ----------------------------------------------------------------------------------- */

static int kernel_fits(cf_cl_ctx *ctx, cl_kernel k, const char *name, const att_variant *v) {
    size_t wg = 0;
    cl_ulong lmem = 0;
    cl_int err = clGetKernelWorkGroupInfo(k, ctx->dev.device, CL_KERNEL_WORK_GROUP_SIZE,
                                          sizeof wg, &wg, NULL);
    if (err == CL_SUCCESS)
        err = clGetKernelWorkGroupInfo(k, ctx->dev.device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof lmem,
                                       &lmem, NULL);
    if (err != CL_SUCCESS) {
        cf_cl_fail(ctx, "cl_kernels/attention.cl: %s (HS %d, TY %d): work-group info: %s", name,
                   v->hs, v->ty, cf_cl_errstr(err));
        return CF_ERR_DEVICE;
    }
    if (wg < (size_t)(16 * v->ty) || lmem > ctx->dev.local_mem) {
        CF_DEBUG("cl_kernels/attention.cl: %s (HS %d, TY %d) runs at most %zu work-items per "
                 "group with %llu bytes of local memory on %s (%llu available)",
                 name, v->hs, v->ty, wg, (unsigned long long)lmem, ctx->dev.name,
                 (unsigned long long)ctx->dev.local_mem);
        return CF_ERR_UNSUPPORTED;
    }
    return CF_OK;
}

/* The variant (hs, ty, mha), built on first use. Returns its status: CF_OK, or the reason it
 * cannot be used (a build error is reported once, when it happens). */
static int variant_get(cf_cl_ctx *ctx, struct cf_cl_attention *st, int hs, int ty, int mha,
                       att_variant **out) {
    *out = NULL;
    for (int i = 0; i < st->n; i++) {
        att_variant *v = &st->v[i];
        if (v->hs == hs && v->ty == ty && v->mha == mha) {
            *out = v;
            return v->status;
        }
    }
    if (st->n == ATT_MAX_VARIANTS) { /* many shapes (tests, sweeps): recycle the oldest */
        variant_free(&st->v[0]);
        memmove(&st->v[0], &st->v[1], (size_t)(ATT_MAX_VARIANTS - 1) * sizeof st->v[0]);
        memset(&st->v[ATT_MAX_VARIANTS - 1], 0, sizeof st->v[0]);
        st->n--;
    }
    att_variant *v = &st->v[st->n++];
    memset(v, 0, sizeof *v);
    v->hs = hs;
    v->ty = ty;
    v->mha = mha;
    *out = v;
    /* GPUs: tile copies unrolled 8 deep, 8 loads in flight per work-item (see the kernels) */
    const int unroll = (ctx->dev.type & CL_DEVICE_TYPE_GPU) ? 8 : 1;
    char opts[128];
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DHS=%d -DTY=%d -DATT_UNROLL=%d%s", hs, ty, unroll,
             mha ? " -DATT_MHA" : "");
    static const char *const names[] = {"attention_fused_forward", "attention_fused_backward_q",
                                        "attention_fused_backward_kv"};
    cl_kernel *const ks[] = {&v->fwd, &v->bwd_q, &v->bwd_kv};
    int rc = cf_cl_build_kernels(ctx, "attention.cl", opts, &v->program, 3, names, ks);
    if (rc == CF_OK) rc = kernel_fits(ctx, v->fwd, "attention_fused_forward", v);
    if (rc == CF_OK) rc = kernel_fits(ctx, v->bwd_q, "attention_fused_backward_q", v);
    if (rc == CF_OK) rc = kernel_fits(ctx, v->bwd_kv, "attention_fused_backward_kv", v);
    if (rc < 0) {
        variant_free(v);
        v->hs = hs;
        v->ty = ty;
        v->mha = mha;
    }
    v->status = rc;
    return rc;
}

/* Log the path of a shape once (debug; a warning when the fused path was asked for by name). */
static void note(cf_cl_ctx *ctx, struct cf_cl_attention *st, int T, int hs, int bwd,
                 const att_variant *v, const char *why) {
    for (int i = 0; i < st->n_noted; i++)
        if (st->noted[i].T == T && st->noted[i].hs == hs && st->noted[i].bwd == bwd) return;
    if (st->n_noted < ATT_MAX_NOTED) {
        st->noted[st->n_noted].T = T;
        st->noted[st->n_noted].hs = hs;
        st->noted[st->n_noted].bwd = bwd;
        st->n_noted++;
    }
    const char *op = bwd ? "backward" : "forward";
    if (v)
        CF_DEBUG("attention %s T=%d hs=%d: fused (blocks of %d rows, groups of %d, %s build)", op,
                 T, hs, 4 * v->ty, 16 * v->ty, v->mha ? "multi-head" : "grouped-query");
    else if (st->mode == CF_ATT_FUSED)
        CF_WARN("attention %s T=%d hs=%d: the fused kernels do not fit (%s); using the batched "
                "GEMMs", op, T, hs, why);
    else
        CF_DEBUG("attention %s T=%d hs=%d: batched GEMMs (%s)", op, T, hs, why);
}

/* The variant for a shape, or NULL (with *why) when the fused path declines it: the plan's
 * work-group heights (cl_plan.c) in order, the first that builds and runs on this device; the
 * multi-head build when KVH == NH. */
static att_variant *choose(cf_cl_ctx *ctx, struct cf_cl_attention *st, int C, int NH, int KVH,
                           const char **why) {
    cf_cl_attention_plan plan;
    cf_cl_plan_attention(ctx, st->mode, C, NH, &plan);
    *why = plan.why;
    if (!plan.fused) return NULL;
    *why = "not enough local memory or work-group size on this device";
    for (int i = 0; i < plan.n_ty; i++) {
        att_variant *v = NULL;
        int rc = variant_get(ctx, st, plan.hs, plan.ty[i], KVH == NH, &v);
        if (rc == CF_OK) return v;
        if (rc != CF_ERR_UNSUPPORTED) {
            *why = "the program did not build";
            return NULL;
        }
    }
    return NULL;
}

/* ---- launches ----------------------------------------------------------------------------------- */

/* The variant for this shape (noted once per shape; NULL: the GEMM path) and the launch range of
 * its kernels for nh of the NH query heads: groups (query head, batch, block of 4*ty query or key
 * rows), indices from the range, not divided out of one; the key kernel's range has KVH heads (nh
 * in a head range) in dimension 0. */
static att_variant *fused_setup(cf_cl_ctx *ctx, int B, int T, int NH, int KVH, int hs, int nh,
                                int backward, size_t local[3], size_t global[3]) {
    struct cf_cl_attention *st = att_state(ctx);
    if (!st) return NULL;
    const char *why = "";
    att_variant *v = choose(ctx, st, NH * hs, NH, KVH, &why);
    note(ctx, st, T, hs, backward, v, why);
    if (!v) return NULL;
    const int bm = 4 * v->ty;
    local[0] = (size_t)(16 * v->ty);
    local[1] = local[2] = 1;
    global[0] = (size_t)nh * local[0];
    global[1] = (size_t)B;
    global[2] = (size_t)((T + bm - 1) / bm);
    return v;
}

int cf_cl_attention_fused_available(cf_cl_ctx *ctx, int NH, int KVH, int hs) {
    struct cf_cl_attention *st = att_state(ctx);
    const char *why = "";
    return st && choose(ctx, st, NH * hs, NH, KVH, &why) != NULL;
}

/* A head range [h0, h0 + nh) of a multi-head call runs the multi-head build on views moved on by
 * h0 heads, with nh as the kernels' head count: in that build the head count only indexes the
 * (B, nh, T, T) matrices, and the key and value columns lie at fixed offsets (C, 2C) from the
 * query's, so nothing else changes. Grouped-query calls take the whole range only. */
static int head_range_ok(int NH, int KVH, int h0, int nh) {
    return h0 >= 0 && nh >= 1 && h0 + nh <= NH && (nh == NH || KVH == NH);
}

int cf_cl_attention_fused_forward(cf_cl_ctx *ctx, cf_view out, cf_view att, cf_view qkv, int B,
                                  int T, int NH, int KVH, int hs, int h0, int nh) {
    if (!head_range_ok(NH, KVH, h0, nh)) return CF_ERR_INVALID;
    size_t local[3], global[3];
    att_variant *v = fused_setup(ctx, B, T, NH, KVH, hs, nh, 0, local, global);
    if (!v) return 0;
    const int C = NH * hs;
    out = cf_view_add(out, (size_t)h0 * hs);
    qkv = cf_view_add(qkv, (size_t)h0 * hs);
    /* the multi-head build's forward takes no KVH (cl_kernels/attention.cl says why): its
     * arguments are these without args[7] */
    cf_cl_arg args[] = {ARG_MEM(cf_cl_mem(out)), ARG_ULONG(cf_view_elem_off(out)),
                        ARG_MEM(cf_cl_mem(att)), ARG_ULONG(cf_view_elem_off(att)),
                        ARG_MEM(cf_cl_mem(qkv)), ARG_ULONG(cf_view_elem_off(qkv)),
                        ARG_INT(nh),             ARG_INT(KVH),
                        ARG_INT(T),              ARG_INT(C),
                        ARG_FLOAT(1.0f / sqrtf((float)hs))};
    int nargs = (int)(sizeof args / sizeof args[0]);
    if (v->mha) {
        memmove(&args[7], &args[8], sizeof args - 8 * sizeof args[0]);
        nargs--;
    }
    CF_TRY(cf_cl_launch(ctx, v->fwd, "attention_fused_forward", 3, global, local, nargs, args));
    /* (a call in head ranges counts once: at its first range) */
    if (h0 == 0) {
        ctx->attention->fused++;
        ctx->attention->fused_mha += v->mha;
    }
    return 1;
}

int cf_cl_attention_fused_backward(cf_cl_ctx *ctx, cf_view dqkv, cf_view dpreatt, cf_view dout,
                                   cf_view qkv, cf_view att, int B, int T, int NH, int KVH,
                                   int hs, int h0, int nh) {
    /* query blocks for dq and dpreatt, then key blocks for dk, dv; dqkv is assigned (every
     * element written, none read: cl_kernels/attention.cl) */
    if (!head_range_ok(NH, KVH, h0, nh)) return CF_ERR_INVALID;
    size_t local[3], global[3];
    att_variant *v = fused_setup(ctx, B, T, NH, KVH, hs, nh, 1, local, global);
    if (!v) return 0;
    const int C = NH * hs;
    dqkv = cf_view_add(dqkv, (size_t)h0 * hs);
    dout = cf_view_add(dout, (size_t)h0 * hs);
    qkv = cf_view_add(qkv, (size_t)h0 * hs);
    const int KVN = nh < NH ? nh : KVH; /* key/value heads of the range */
    const float scale = 1.0f / sqrtf((float)hs);
    CF_TRY(cf_cl_launch(ctx, v->bwd_q, "attention_fused_backward_q", 3, global, local,
                        CF_ARGS(ARG_MEM(cf_cl_mem(dqkv)), ARG_ULONG(cf_view_elem_off(dqkv)),
                                ARG_MEM(cf_cl_mem(dpreatt)), ARG_ULONG(cf_view_elem_off(dpreatt)),
                                ARG_MEM(cf_cl_mem(dout)), ARG_ULONG(cf_view_elem_off(dout)),
                                ARG_MEM(cf_cl_mem(qkv)), ARG_ULONG(cf_view_elem_off(qkv)),
                                ARG_MEM(cf_cl_mem(att)), ARG_ULONG(cf_view_elem_off(att)),
                                ARG_INT(nh), ARG_INT(KVH), ARG_INT(T), ARG_INT(C),
                                ARG_FLOAT(scale))));
    /* one group per key/value head: it sums the gradients of its NH / KVH query heads */
    global[0] = (size_t)KVN * local[0];
    CF_TRY(cf_cl_launch(ctx, v->bwd_kv, "attention_fused_backward_kv", 3, global, local,
                        CF_ARGS(ARG_MEM(cf_cl_mem(dqkv)), ARG_ULONG(cf_view_elem_off(dqkv)),
                                ARG_MEM(cf_cl_mem(dpreatt)), ARG_ULONG(cf_view_elem_off(dpreatt)),
                                ARG_MEM(cf_cl_mem(dout)), ARG_ULONG(cf_view_elem_off(dout)),
                                ARG_MEM(cf_cl_mem(qkv)), ARG_ULONG(cf_view_elem_off(qkv)),
                                ARG_MEM(cf_cl_mem(att)), ARG_ULONG(cf_view_elem_off(att)),
                                ARG_INT(nh), ARG_INT(KVH), ARG_INT(T), ARG_INT(C),
                                ARG_FLOAT(scale))));
    /* (a call in head ranges counts once: at its first range) */
    if (h0 == 0) {
        ctx->attention->fused++;
        ctx->attention->fused_mha += v->mha;
    }
    return 1;
}
