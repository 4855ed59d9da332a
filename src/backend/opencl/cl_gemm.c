/* clformer: GEMM on OpenCL: parameter choice per shape (built-in rule, tuner hook), clformer's
 * tiled kernel (cl_kernels/gemm.cl) and the CLBlast path (plain products only) with fallback to the
 * native kernel when CLBlast reports an error. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/opencl/cl_gemm_fast.h"
#include "backend/opencl/cl_gemm_half.h"
#include "backend/opencl/cl_internal.h"
#include "backend/opencl/cl_plan.h"

#ifdef CF_HAVE_CLBLAST
#include <clblast_c.h>
#endif

int cf_cl_have_clblast(void) {
#ifdef CF_HAVE_CLBLAST
    return 1;
#else
    return 0;
#endif
}

/* Why 8x8 below 256: a 16x16 group with 4x4 outputs per work-item covers 64x64 of C, so a
 * 200x200 result would give only 16 groups -- too few to fill a GPU; 8x8 groups (32x32 blocks)
 * give 49. Above 256 the larger block reuses each staged value twice as often.
 * Why WPT 8 from 2^21 outputs: 8x8 outputs per work-item (128x128 blocks) halve the local-memory
 * reads per multiply-add again -- on an H200, 27 instead of 18 TFLOP/s at 4096^3 and 26 instead of
 * 19 at (8192, 2304, 768) -- once there are enough 128x128 blocks (2^21 / 2^14 = 128) to occupy
 * the device; smaller products keep 64x64 blocks. */
void cf_cl_gemm_rule(int M, int N, int K, int max_group, cf_cl_gemm_params *out) {
    (void)K;
    int tile = (M < 256 && N < 256) ? 8 : 16;
    if (tile * tile > max_group) tile = 8;
    out->tile = tile;
    out->wpt = (tile == 16 && (long long)M * N >= (1ll << 21)) ? 8 : 4;
    out->tk = 16;
    out->source = "rule";
    out->vw = 1;
    out->pad = 1;
    out->path = CF_GEMM_AUTO;
}

static int params_valid(cf_cl_ctx *ctx, const cf_cl_gemm_params *p) {
    cf_cl_plan_device dev;
    cf_cl_plan_device_of(ctx, &dev);
    return cf_cl_plan_params_fit(&dev, p);
}

static cf_cl_shape_memo *memo_find(cf_cl_ctx *ctx, int M, int N, int K, int ta, int tb) {
    for (int i = 0; i < ctx->n_memo; i++) {
        cf_cl_shape_memo *e = &ctx->memo[i];
        if (e->M == M && e->N == N && e->K == K && e->ta == ta && e->tb == tb) return e;
    }
    return NULL;
}

/* The tiled kernel's parameters for a shape (cl_plan.c), with the tuner's misfit as a warning. */
static void choose(cf_cl_ctx *ctx, int M, int N, int K, int ta, int tb, cf_cl_gemm_params *p) {
    cf_cl_plan_device dev;
    cf_cl_plan_device_of(ctx, &dev);
    char warn[768];
    cf_cl_plan_native_params(&dev, M, N, K, ta, tb, p, warn, sizeof warn);
    if (warn[0]) CF_WARN("%s", warn);
}

int cf_cl_gemm_params_lookup(cf_cl_ctx *ctx, int M, int N, int K, int ta, int tb,
                             cf_cl_gemm_params *out) {
    cf_cl_shape_memo *e = memo_find(ctx, M, N, K, ta, tb);
    if (e) {
        *out = e->p;
        return CF_OK;
    }
    choose(ctx, M, N, K, ta, tb, out);
    if (ctx->n_memo < CF_CL_SHAPE_MEMO) {
        e = &ctx->memo[ctx->n_memo++];
        e->M = M;
        e->N = N;
        e->K = K;
        e->ta = ta;
        e->tb = tb;
        e->p = *out;
        e->logged = 0;
    }
    return CF_OK;
}

/* Log the path taken for a shape once (visible with --verbose). */
static void log_shape(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d, int path,
                      const cf_cl_gemm_params *p) {
    cf_cl_gemm_params tmp;
    cf_cl_gemm_params_lookup(ctx, d->M, d->N, d->K, d->ta, d->tb, &tmp); /* memo entry */
    cf_cl_shape_memo *e = memo_find(ctx, d->M, d->N, d->K, d->ta, d->tb);
    if (e && e->logged == path) return;
    if (e) e->logged = path;
    int batch = d->outer * d->inner;
    char bs[32] = "";
    if (batch > 1) snprintf(bs, sizeof bs, " batch=%d", batch);
    if (path == 2)
        CF_DEBUG("gemm M=%d N=%d K=%d%s %c%c: clblast", d->M, d->N, d->K, bs, d->ta ? 'T' : 'N',
                 d->tb ? 'T' : 'N');
    else
        CF_DEBUG("gemm M=%d N=%d K=%d%s %c%c: native %dx%d (wpt %d, tk %d, vw %d, pad %d, %s)",
                 d->M, d->N, d->K, bs, d->ta ? 'T' : 'N', d->tb ? 'T' : 'N', p->tile, p->tile,
                 p->wpt, p->tk, p->vw, p->pad, p->source);
}

static const char *kernel_names[4] = {"gemm_nn", "gemm_nt", "gemm_tn", "gemm_tt"};

static int gemm_program(cf_cl_ctx *ctx, const cf_cl_gemm_params *p, cf_cl_gemm_program **out) {
    for (int i = 0; i < ctx->n_gemm_progs; i++) {
        cf_cl_gemm_program *g = &ctx->gemm_progs[i];
        if (g->tile == p->tile && g->wpt == p->wpt && g->tk == p->tk && g->vw == p->vw &&
            g->pad == p->pad) {
            *out = g;
            return CF_OK;
        }
    }
    if (ctx->n_gemm_progs == CF_CL_MAX_GEMM_PROGRAMS) {
        /* a tuning file (or the tuner) may use more variants than the table holds: start the table
         * over (kernels already enqueued keep their programs alive); they come back from the
         * program cache when used again */
        CF_DEBUG("gemm: %d kernel variants built; releasing them to build tile %d, wpt %d, tk %d, "
                 "vw %d, pad %d",
                 CF_CL_MAX_GEMM_PROGRAMS, p->tile, p->wpt, p->tk, p->vw, p->pad);
        for (int i = 0; i < ctx->n_gemm_progs; i++) {
            for (int j = 0; j < 4; j++)
                if (ctx->gemm_progs[i].k[j]) clReleaseKernel(ctx->gemm_progs[i].k[j]);
            if (ctx->gemm_progs[i].program) clReleaseProgram(ctx->gemm_progs[i].program);
        }
        ctx->n_gemm_progs = 0;
    }
    char opts[160];
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DTS=%d -DWPT=%d -DTK=%d -DVW=%d -DPAD=%d",
             p->tile, p->wpt, p->tk, p->vw, p->pad);
    cf_cl_gemm_program g;
    memset(&g, 0, sizeof g);
    g.tile = p->tile;
    g.wpt = p->wpt;
    g.tk = p->tk;
    g.vw = p->vw;
    g.pad = p->pad;
    CF_TRY(cf_cl_build_program(ctx, "gemm.cl", opts, &g.program));
    for (int i = 0; i < 4; i++) {
        cl_int err = CL_SUCCESS;
        g.k[i] = clCreateKernel(g.program, kernel_names[i], &err);
        const size_t local[2] = {(size_t)p->tile, (size_t)p->tile};
        char why[256] = "";
        int fits = err == CL_SUCCESS
                       ? cf_cl_kernel_fits(ctx, g.k[i], 2, local, cf_cl_gemm_private_bytes(p), why,
                                           sizeof why)
                       : 0;
        if (err == CL_SUCCESS && fits < 0) err = CL_INVALID_KERNEL;
        if (err == CL_SUCCESS && fits == 0) {
            cf_cl_fail(ctx, "cl_kernels/gemm.cl: %s with %dx%d work-groups (wpt %d, tk %d) cannot "
                            "run on %s: %s",
                       kernel_names[i], p->tile, p->tile, p->wpt, p->tk, ctx->dev.name, why);
            for (int j = 0; j <= i; j++)
                if (g.k[j]) clReleaseKernel(g.k[j]);
            clReleaseProgram(g.program);
            return CF_ERR_UNSUPPORTED;
        } else if (err != CL_SUCCESS) {
            cf_cl_fail(ctx, "cl_kernels/gemm.cl: kernel %s: %s", kernel_names[i],
                       cf_cl_errstr(err));
        }
        if (err != CL_SUCCESS) {
            for (int j = 0; j <= i; j++)
                if (g.k[j]) clReleaseKernel(g.k[j]);
            clReleaseProgram(g.program);
            return CF_ERR_BUILD;
        }
    }
    ctx->gemm_progs[ctx->n_gemm_progs] = g;
    *out = &ctx->gemm_progs[ctx->n_gemm_progs++];
    return CF_OK;
}

int cf_cl_gemm_params_fit(cf_cl_ctx *ctx, const cf_cl_gemm_params *p) {
    return params_valid(ctx, p);
}

int cf_cl_gemm_variant(cf_cl_ctx *ctx, const cf_cl_gemm_params *p) {
    if (!params_valid(ctx, p)) return CF_ERR_UNSUPPORTED;
    cf_cl_gemm_program *g = NULL;
    return gemm_program(ctx, p, &g);
}

/* Build the variants the rule can pick (8x8; 16x16 with WPT 4 and 8) at start-up, so that a
 * device that cannot build them fails (or, under `auto`, falls back) before training starts. */
int cf_cl_gemm_prepare(cf_cl_ctx *ctx) {
    ctx->gemm_max_group = (int)ctx->dev.max_group;
    static const int shapes[3][2] = {{1, 1}, {256, 256}, {4096, 4096}};
    for (int i = 0; i < 3; i++) {
        cf_cl_gemm_params p;
        choose(ctx, shapes[i][0], shapes[i][1], 1, 0, 0, &p);
        cf_cl_gemm_program *g = NULL;
        int rc = gemm_program(ctx, &p, &g);
        if (rc == CF_ERR_UNSUPPORTED && p.tile * p.tile > 64) {
            /* this device's 16x16 kernels cannot run 256 items per group: 8x8 everywhere */
            ctx->gemm_max_group = 64;
            CF_DEBUG("gemm: 16x16 work-groups unavailable on %s; using 8x8 tiles", ctx->dev.name);
            ctx->last_error[0] = 0;
            break;
        }
        if (rc < 0) return rc;
    }
    return CF_OK;
}

void cf_cl_gemm_release(cf_cl_ctx *ctx) {
    for (int i = 0; i < ctx->n_gemm_progs; i++) {
        for (int j = 0; j < 4; j++)
            if (ctx->gemm_progs[i].k[j]) clReleaseKernel(ctx->gemm_progs[i].k[j]);
        if (ctx->gemm_progs[i].program) clReleaseProgram(ctx->gemm_progs[i].program);
    }
    ctx->n_gemm_progs = 0;
    cf_cl_gemm_fast_release(ctx);
    cf_cl_gemm_half_release(ctx);
}

static int gemm_native(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d) {
    cf_cl_gemm_params p;
    CF_TRY(cf_cl_gemm_params_lookup(ctx, d->M, d->N, d->K, d->ta, d->tb, &p));
    cf_cl_gemm_program *g = NULL;
    int rc = gemm_program(ctx, &p, &g);
    if (rc < 0 && strcmp(p.source, "rule") != 0) {
        /* a tuned variant that does not build must not stop the run */
        CF_WARN("gemm: tuned variant tile %d, wpt %d, tk %d, vw %d, pad %d unusable on %s; using "
                "the built-in rule for M=%d N=%d K=%d",
                p.tile, p.wpt, p.tk, p.vw, p.pad, ctx->dev.name, d->M, d->N, d->K);
        cf_cl_gemm_rule(d->M, d->N, d->K, ctx->gemm_max_group, &p);
        cf_cl_shape_memo *e = memo_find(ctx, d->M, d->N, d->K, d->ta, d->tb);
        if (e) e->p = p;
        cf_cl_plan_invalidate(ctx); /* the shape's parameters changed */
        rc = gemm_program(ctx, &p, &g);
    }
    if (rc < 0) return rc;
    log_shape(ctx, d, 1, &p);
    int bm = p.tile * p.wpt;
    size_t global[3] = {(size_t)((d->N + bm - 1) / bm) * (size_t)p.tile,
                        (size_t)((d->M + bm - 1) / bm) * (size_t)p.tile,
                        (size_t)d->outer * (size_t)d->inner};
    size_t local[3] = {(size_t)p.tile, (size_t)p.tile, 1};
    cl_kernel k = g->k[(d->ta ? 2 : 0) + (d->tb ? 1 : 0)];
    return cf_cl_launch(ctx, k, kernel_names[(d->ta ? 2 : 0) + (d->tb ? 1 : 0)], 3, global, local,
                        CF_ARGS(ARG_INT(d->M), ARG_INT(d->N), ARG_INT(d->K), ARG_FLOAT(d->alpha),
                                ARG_MEM(d->A), ARG_ULONG(d->a_off), ARG_INT(d->lda),
                                ARG_ULONG(d->a_so), ARG_ULONG(d->a_si), ARG_MEM(d->B),
                                ARG_ULONG(d->b_off), ARG_INT(d->ldb), ARG_ULONG(d->b_so),
                                ARG_ULONG(d->b_si), ARG_FLOAT(d->beta), ARG_MEM(d->C),
                                ARG_ULONG(d->c_off), ARG_INT(d->ldc), ARG_ULONG(d->c_so),
                                ARG_ULONG(d->c_si), ARG_INT(d->inner), ARG_INT(d->causal)));
}

#ifdef CF_HAVE_CLBLAST
/* 0 on success, else the CLBlast status code (negative) */
static int gemm_clblast(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d) {
#ifdef CF_FAULT_INJECTION
    /* test switch cf_fault_set_clblast (CF_FAULT_CLBLAST=N in clformer-fi): the Nth CLBlast call
     * "fails" (exercises the fallback) */
    if (cf_fault_clblast_hit()) return (int)CLBlastUnexpectedError;
#endif
    CLBlastTranspose ta = d->ta ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastTranspose tb = d->tb ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastStatusCode st =
        CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, (size_t)d->M, (size_t)d->N, (size_t)d->K,
                     d->alpha, d->A, d->a_off, (size_t)d->lda, d->B, d->b_off, (size_t)d->ldb,
                     d->beta, d->C, d->c_off, (size_t)d->ldc, &ctx->queue, NULL);
    /* CLBlast's event would cover only its last kernel (of pad, transpose, GEMM, unpad): let the
     * profiler time this op on the host instead */
    if (cf_cl_profiling(ctx)) ctx->prof_host_timed = 1;
    return st == CLBlastSuccess ? 0 : (int)st;
}
#endif

static int gemm_product(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d);

int cf_cl_gemm(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d) {
    if (d->M <= 0 || d->N <= 0 || d->outer * d->inner <= 0) return CF_OK;
    /* a few rows against a weight stored (N,K) (decode): cl_infer.c's row kernel */
    const int rows = cf_cl_gemm_rows_try(ctx, d);
    if (rows != 0) return rows < 0 ? rows : CF_OK;
    /* large plain products on GPUs: the register-blocked kernel (cl_gemm_fast.c), unless the mode
     * is clblast or a tuning file measured the shape; it adds a bias as it stores C */
    int fast = cf_cl_gemm_fast_try(ctx, d);
    if (fast != 0) return fast < 0 ? fast : CF_OK;
    if (d->act) { /* the activation epilogue exists in the fast kernel only (cl_gemm_gelu_op) */
        cf_cl_fail(ctx, "gemm M=%d N=%d: an activation epilogue on a path without one", d->M, d->N);
        return CF_ERR_INVALID;
    }
    if (!d->bias) return gemm_product(ctx, d);
    if (d->outer * d->inner != 1 || d->ldc != d->N) {
        cf_cl_fail(ctx, "gemm M=%d N=%d: a bias needs a plain product with ldc == N (ldc %d)",
                   d->M, d->N, d->ldc);
        return CF_ERR_INVALID;
    }
    /* the other paths: the product, then the bias in a second pass */
    cf_cl_gemm_desc p = *d;
    p.bias = NULL;
    CF_TRY(gemm_product(ctx, &p));
    size_t local[2] = {64, 1};
    size_t global[2] = {cf_round_up((size_t)d->N, 64), (size_t)d->M};
    return cf_cl_launch(ctx, ctx->kernels[K_ADD_BIAS], "residual_add_bias", 2, global, local,
                        CF_ARGS(ARG_MEM(d->C), ARG_ULONG(d->c_off), ARG_MEM(d->bias),
                                ARG_ULONG(d->bias_off), ARG_INT(d->M), ARG_INT(d->N)));
}

/* the product alone (no bias) on CLBlast or the tiled kernel of cl_kernels/gemm.cl */
static int gemm_product(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d) {
#ifdef CF_HAVE_CLBLAST
    /* which products CLBlast takes: cl_plan.c */
    cf_cl_gemm_plan plan;
    CF_TRY(cf_cl_plan_gemm(ctx, d, &plan));
    if (plan.path == CF_PLAN_CLBLAST) {
        double t0 = cf_time_now();
        int st = gemm_clblast(ctx, d);
        if (st == 0) {
            if (!memo_find(ctx, d->M, d->N, d->K, d->ta, d->tb))
                CF_DEBUG("gemm: first CLBlast call for this shape took %.3f s",
                         cf_time_now() - t0);
            log_shape(ctx, d, 2, NULL);
            return CF_OK;
        }
        ctx->clblast_failed = 1;
        cf_cl_plan_invalidate(ctx);
        CF_WARN("gemm M=%d N=%d K=%d: CLBlast failed with status %d on %s; using clformer's "
                "native GEMM kernel from now on (--gemm native avoids this)",
                d->M, d->N, d->K, st, ctx->dev.name);
    }
#endif
    return gemm_native(ctx, d);
}
