/* clformer: the OpenCL backend: creation from a device spec (context, queue, programs, GEMM and
 * tuning set-up), teardown, and the public cf_backend_opencl_* extras. The other parts live in
 * cl_device.c (discovery, selection), cl_kernel_table.c (programs and kernels), cl_runtime.c
 * (launches, buffers, transfers, profiling) and cl_ops.c (the ops). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend/opencl/cl_internal.h"
#include "backend/opencl/cl_gemm_half.h"
#include "backend/opencl/cl_matrix.h"
#include "backend/opencl/cl_plan.h"

static cf_cl_ctx *CTX(cf_backend *be) { return (cf_cl_ctx *)be->ctx; }
static int is_gpu(const cf_cl_ctx *ctx) { return (ctx->dev.type & CL_DEVICE_TYPE_GPU) != 0; }

static void ctx_free(cf_cl_ctx *ctx) {
    if (!ctx) return;
    if (ctx->queue) clFinish(ctx->queue);
    cf_cl_prof_drop(ctx);
    free(ctx->prof_events);
    for (int i = 0; i < CF_SCRATCH_COUNT; i++)
        if (ctx->scratch[i]) clReleaseMemObject(ctx->scratch[i]);
    cf_cl_gemm_release(ctx);
    cf_cl_attention_release(ctx);
    cf_cl_flash_release(ctx);
    cf_cl_infer_release(ctx);
    cf_cl_plan_release(ctx);
    cf_cl_tuning_detach(ctx);
    cf_cl_release_programs(ctx);
    if (ctx->queue) clReleaseCommandQueue(ctx->queue);
    if (ctx->context) clReleaseContext(ctx->context);
    free(ctx);
}

void cf_cl_destroy(cf_backend *be) {
    cf_cl_flash_free_scratch(be);
    ctx_free(CTX(be));
    free(be);
}

/* ---- creation ---------------------------------------------------------------------------------- */

/* "auto"/NULL -1, "0"/"off" 0, anything else 1 */
static int parse_fast(const char *e) {
    if (!e || !*e || strcasecmp(e, "auto") == 0) return -1;
    if (strcmp(e, "0") == 0 || strcasecmp(e, "off") == 0) return 0;
    return 1;
}

static void apply_options(cf_cl_ctx *ctx, const cf_backend_options *o) {
    const char *g = o->gemm;
    ctx->gemm_mode = CF_GEMM_AUTO;
    if (g && strcasecmp(g, "native") == 0) ctx->gemm_mode = CF_GEMM_NATIVE;
    else if (g && strcasecmp(g, "clblast") == 0) ctx->gemm_mode = CF_GEMM_CLBLAST;
    else if (g && *g && strcasecmp(g, "auto") != 0)
        CF_WARN("gemm path '%s' (CF_GEMM / --gemm) not understood (auto, clblast or native); "
                "using auto",
                g);
    if (o->kernel_dir && *o->kernel_dir)
        snprintf(ctx->kernel_dir, sizeof ctx->kernel_dir, "%s", o->kernel_dir);
    else if (o->kernels_from_disk)
        snprintf(ctx->kernel_dir, sizeof ctx->kernel_dir, "%s", CF_KERNEL_DIR);
    if (o->cache_dir) snprintf(ctx->cache_dir, sizeof ctx->cache_dir, "%s", o->cache_dir);
    ctx->use_map = ctx->dev.unified && o->map != 0;
    ctx->gemm_fast_mode = parse_fast(o->gemm_fast);
    ctx->gemm_fast_verbose = o->gemm_fast_verbose;
    ctx->gemm_half_mode = parse_fast(o->gemm_half);
    ctx->gh_bn = ctx->gh_bk = 0;
    if (o->gemm_half_block && *o->gemm_half_block &&
        cf_cl_gemm_half_block_parse(o->gemm_half_block, &ctx->gh_bn, &ctx->gh_bk) != CF_OK)
        CF_WARN("gemm_half block '%s' (CF_GEMM_HALF_BLOCK) not understood (64x32, 128x32, "
                "192x32 or 256x16); using the default",
                o->gemm_half_block);
    ctx->gemm_tile = o->gemm_tile;
    /* precision tf32 / bf16 / fp16: the matrix engine (cl_matrix.h) that applies, if any */
    ctx->mma_tf32 = ctx->mma_half = 0;
    ctx->gemm_round = o->bf16 ? 1 : o->fp16 ? 2 : 0;
    ctx->mx_prec = o->bf16   ? CF_CL_MX_BF16
                   : o->fp16 ? CF_CL_MX_FP16
                   : o->tf32 ? CF_CL_MX_TF32
                             : CF_CL_MX_NONE;
    ctx->mx = NULL;
    ctx->mx_emulate = 0;
    snprintf(ctx->mx_name, sizeof ctx->mx_name, "none");
    if (ctx->mx_prec) {
        char note[512];
        const cf_cl_matrix_choice c =
            cf_cl_matrix_select(cf_cl_matrix_engines, cf_cl_matrix_n_engines, &ctx->dev,
                                ctx->mx_prec, o->matrix_engine, note, sizeof note);
        if (note[0]) CF_WARN("%s", note);
        ctx->mx = c.e;
        ctx->mx_emulate = c.emulate;
        cf_cl_matrix_name(c, ctx->mx_name, sizeof ctx->mx_name);
        ctx->mma_tf32 = ctx->mx && ctx->mx_prec == CF_CL_MX_TF32;
        ctx->mma_half = ctx->mx && ctx->gemm_round;
    }
    ctx->flash_kernel = CF_FLASH_K_AUTO;
    ctx->flash_scratch = o->flash_scratch;
    if (o->flash_kernel && cf_cl_flash_kernel_parse(o->flash_kernel, &ctx->flash_kernel) < 0) {
        CF_WARN("flash kernels '%s' (CF_FLASH_KERNEL) not understood (auto, tiled, rows, matrix or "
                "mma); using auto",
                o->flash_kernel);
        ctx->flash_kernel = CF_FLASH_K_AUTO;
    }
    /* flash attention on the engine too (cl_flash.c) */
    char flash_too[96] = "";
    const int flash_k = cf_cl_flash_mma_engine(ctx);
    if (flash_k)
        snprintf(flash_too, sizeof flash_too,
                 "; flash attention too (head sizes a multiple of %d up to 128)", flash_k);
    if (o->tf32 && !ctx->gemm_round) {
        if (ctx->mma_tf32)
            CF_INFO("precision tf32: GEMMs on %s's tensor cores%s with TF32 inputs (%s)%s",
                    ctx->dev.name, ctx->mx_emulate ? " (emulated)" : "", ctx->mx_name, flash_too);
        else
            CF_INFO("precision tf32: %s has no TF32 matrix engine this backend can use; GEMMs "
                    "run in fp32",
                    ctx->dev.name);
    }
    if (ctx->gemm_round) {
        const char *p = ctx->gemm_round == 1 ? "bf16" : "fp16";
        /* the GEMM on half operands (cl_gemm_half.c) where it runs */
        const char *half_ops = !cf_cl_gemm_half_engine(ctx) ? ""
                               : ctx->gemm_half_mode == 1
                                   ? ", every product's operands converted once to the format"
                                   : ", the operands of products of 128 x 128 outputs and more "
                                     "converted once to the format";
        if (ctx->mma_half)
            CF_INFO("precision %s: GEMMs on %s's tensor cores%s with %s inputs, fp32 accumulation "
                    "(%s%s)%s",
                    p, ctx->dev.name, ctx->mx_emulate ? " (emulated)" : "", p, ctx->mx_name,
                    half_ops, flash_too);
        else
            CF_INFO("precision %s: %s has no matrix engine this backend uses; GEMM inputs are "
                    "rounded to %s in the kernel, fp32 arithmetic (no faster than fp32)",
                    p, ctx->dev.name, p);
    }
    ctx->attention_mode = -1;
    if (o->attention && cf_cl_attention_parse(o->attention, &ctx->attention_mode) < 0) {
        CF_WARN("attention path '%s' (CF_ATTENTION) not understood (auto, fused or gemm); using "
                "auto",
                o->attention);
        ctx->attention_mode = -1;
    }
    if (o->tuning && *o->tuning) {
        if (strcmp(o->tuning, "off") == 0 || strcmp(o->tuning, "none") == 0) ctx->tuning_off = 1;
        else snprintf(ctx->tuning_path, sizeof ctx->tuning_path, "%s", o->tuning);
    }
}

/* cf_backend_options.gemm_tile: the rule's WPT and TK with the forced work-group side */
static int force_tile_tuner(void *user, const char *device, int M, int N, int K, int ta, int tb,
                            cf_cl_gemm_params *out) {
    (void)device;
    (void)ta;
    (void)tb;
    const int tile = *(const int *)user;
    cf_cl_gemm_rule(M, N, K, 1 << 30, out);
    out->tile = tile;
    out->source = tile == 8 ? "forced 8x8" : "forced 16x16";
    return 1;
}

static int ctx_init(cf_cl_ctx *ctx, const cf_backend_options *opts) {
    cl_int err = CL_SUCCESS;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->dev.platform,
                                     0};
    ctx->context = clCreateContext(props, 1, &ctx->dev.device, NULL, NULL, &err);
    CF_CHECK_CL(ctx, err);
    /* profiling on: events are requested only while the per-op profiler runs */
    ctx->queue = clCreateCommandQueue(ctx->context, ctx->dev.device, CL_QUEUE_PROFILING_ENABLE,
                                      &err);
    CF_CHECK_CL(ctx, err);
    apply_options(ctx, opts);
    if (ctx->gemm_mode == CF_GEMM_CLBLAST && !cf_cl_have_clblast())
        CF_WARN("CF_GEMM=clblast: this build has no CLBlast; using the native GEMM");

    int ls = 256;
    while ((size_t)ls > ctx->dev.max_group) ls /= 2;
    ctx->ls = ls;
    size_t gm = (size_t)ctx->dev.compute_units * (is_gpu(ctx) ? 4 : 2);
    ctx->max_groups = gm < 1 ? 1 : (gm > 1024 ? 1024 : (int)gm);

    size_t max_ls = 0;
    CF_TRY(cf_cl_build_programs(ctx, &max_ls));
    if (max_ls < (size_t)ctx->ls) {
        /* some kernel cannot run LS-item groups on this device: rebuild with a smaller LS */
        while ((size_t)ctx->ls > max_ls && ctx->ls > 32) ctx->ls /= 2;
        CF_DEBUG("opencl: reduction work-groups reduced to %d items on %s", ctx->ls,
                 ctx->dev.name);
        cf_cl_release_programs(ctx);
        CF_TRY(cf_cl_build_programs(ctx, &max_ls));
        if (max_ls < (size_t)ctx->ls) {
            cf_cl_fail(ctx, "opencl: %s cannot run the reduction kernels with %d-item work-groups",
                       ctx->dev.name, ctx->ls);
            return CF_ERR_UNSUPPORTED;
        }
    }
    CF_TRY(cf_cl_gemm_prepare(ctx));
    cf_cl_tuning_attach(ctx); /* tuned GEMM parameters and work-group sizes, if a file matches */
    if (ctx->gemm_tile) {
        if (ctx->gemm_tile != 8 && ctx->gemm_tile != 16) {
            cf_cl_fail(ctx, "gemm_tile %d: the native GEMM's work-group side is 8 or 16",
                       ctx->gemm_tile);
            return CF_ERR_INVALID;
        }
        ctx->tuner = force_tile_tuner;
        ctx->tuner_user = &ctx->gemm_tile;
    }
    snprintf(ctx->name, sizeof ctx->name, "opencl: %s (%s)", ctx->dev.name, ctx->dev.platform_name);
    return CF_OK;
}

int cf_backend_opencl_create(const char *spec, const cf_backend_options *opts, cf_backend **out) {
    *out = NULL;
    cf_backend_options defaults = cf_backend_options_default();
    if (!opts) opts = &defaults;
    if (!spec || !*spec) spec = "auto";
    int is_auto = strcasecmp(spec, "auto") == 0;
    cf_cl_device_info *list = NULL;
    int n = 0;
    char why[256];
    CF_TRY(cf_cl_enumerate(&list, &n, why, sizeof why));
    int idx = cf_cl_select_device(spec, list, n, why, is_auto, opts->auto_cpu_devices);
    if (idx < 0) {
        free(list);
        return CF_ERR_NOT_FOUND;
    }
    cf_cl_ctx *ctx = calloc(1, sizeof *ctx);
    cf_backend *be = calloc(1, sizeof *be);
    if (!ctx || !be) {
        free(ctx);
        free(be);
        free(list);
        CF_ERROR("out of host memory creating the OpenCL backend");
        return CF_ERR_NOMEM;
    }
    ctx->dev = list[idx];
    free(list);
    ctx->quiet_init = is_auto;
    double t0 = cf_time_now();
    int rc = ctx_init(ctx, opts);
    if (rc < 0) {
        if (is_auto)
            CF_WARN("OpenCL device opencl:%d:%d %s could not be used (%s; --device opencl:%d:%d "
                    "shows the details); falling back to the CPU backend",
                    ctx->dev.platform_index, ctx->dev.device_index, ctx->dev.name,
                    ctx->last_error[0] ? ctx->last_error : cf_status_str(rc),
                    ctx->dev.platform_index, ctx->dev.device_index);
        ctx_free(ctx);
        free(be);
        return rc;
    }
    ctx->quiet_init = 0;
    CF_DEBUG("%s ready in %.3f s (%d programs compiled, %d from the cache in %s; gemm %s)",
             ctx->name, cf_time_now() - t0, ctx->build.programs_from_source,
             ctx->build.programs_from_cache, ctx->cache_dir[0] ? ctx->cache_dir : "(no cache)",
             ctx->gemm_mode == CF_GEMM_NATIVE || !cf_cl_have_clblast() ? "native" : "clblast");
    be->ops = &cf_cl_ops;
    be->ctx = ctx;
    ctx->be = be;
    be->verbose = opts->verbose;
    be->max_alloc = ctx->dev.max_alloc; /* the model splits its activations to fit */
    *out = be;
    return CF_OK;
}

/* ---- public extras ----------------------------------------------------------------------------- */

int cf_backend_is_opencl(const cf_backend *be) { return be && be->ops == &cf_cl_ops; }

int cf_backend_opencl_set_gemm(cf_backend *be, const char *which) {
    if (!cf_backend_is_opencl(be)) return CF_ERR_UNSUPPORTED;
    cf_cl_ctx *ctx = CTX(be);
    if (!which || strcasecmp(which, "auto") == 0) {
        ctx->gemm_mode = CF_GEMM_AUTO;
    } else if (strcasecmp(which, "native") == 0) {
        ctx->gemm_mode = CF_GEMM_NATIVE;
    } else if (strcasecmp(which, "clblast") == 0) {
        if (!cf_cl_have_clblast()) {
            CF_ERROR("--gemm clblast: this build of clformer has no CLBlast (install libclblast-dev "
                     "and rebuild with -DCF_CLBLAST=ON); use --gemm native");
            return CF_ERR_UNSUPPORTED;
        }
        ctx->gemm_mode = CF_GEMM_CLBLAST;
        ctx->clblast_failed = 0;
    } else {
        CF_ERROR("--gemm '%s': expected auto, clblast or native", which);
        return CF_ERR_INVALID;
    }
    /* shapes log their path again after a switch */
    for (int i = 0; i < ctx->n_memo; i++) ctx->memo[i].logged = 0;
    cf_cl_plan_invalidate(ctx);
    return CF_OK;
}

const char *cf_backend_opencl_gemm_path(cf_backend *be) {
    if (!cf_backend_is_opencl(be)) return "none";
    cf_cl_ctx *ctx = CTX(be);
    if (ctx->gemm_mode == CF_GEMM_NATIVE || ctx->clblast_failed || !cf_cl_have_clblast())
        return "native";
    return "clblast";
}

int cf_backend_opencl_set_gemm_tuner(cf_backend *be, cf_cl_gemm_tuner_fn fn, void *user) {
    if (!cf_backend_is_opencl(be)) return CF_ERR_UNSUPPORTED;
    cf_cl_ctx *ctx = CTX(be);
    ctx->tuner = fn;
    ctx->tuner_user = user;
    ctx->n_memo = 0; /* shapes are decided again */
    cf_cl_plan_invalidate(ctx);
    return CF_OK;
}

int cf_backend_opencl_gemm_params(cf_backend *be, int M, int N, int K, int ta, int tb,
                                  cf_cl_gemm_params *out) {
    if (!cf_backend_is_opencl(be)) return CF_ERR_UNSUPPORTED;
    return cf_cl_gemm_params_lookup(CTX(be), M, N, K, ta, tb, out);
}

int cf_backend_opencl_set_gemm_fast(cf_backend *be, const char *mode) {
    if (!cf_backend_is_opencl(be)) return CF_ERR_UNSUPPORTED;
    CTX(be)->gemm_fast_mode = parse_fast(mode);
    cf_cl_plan_invalidate(CTX(be));
    return CF_OK;
}

int cf_cl_info(cf_backend *be, cf_backend_info *out) {
    const cf_cl_ctx *ctx = CTX(be);
    const cf_cl_device_info *d = &ctx->dev;
    out->kind = "opencl";
    out->device_type = cf_cl_device_type(d);
    out->host_threads = 0;
    snprintf(out->device, sizeof out->device, "%s", d->name);
    snprintf(out->vendor, sizeof out->vendor, "%s", d->vendor);
    snprintf(out->platform, sizeof out->platform, "%s", d->platform_name);
    snprintf(out->driver, sizeof out->driver, "%s", d->driver);
    out->compute_units = (int)d->compute_units;
    out->global_mem = (uint64_t)d->global_mem;
    out->unified_memory = d->unified;
    out->gemm_paths = CF_GEMM_PATH_NATIVE | CF_GEMM_PATH_TILED | CF_GEMM_PATH_FAST |
                      (cf_cl_have_clblast() ? CF_GEMM_PATH_CLBLAST : 0u);
    snprintf(out->gemm, sizeof out->gemm, "%s", cf_backend_opencl_gemm_path(be));
    out->scratch_bytes = cf_cl_scratch_bytes(be);
    out->flash_scratch_bytes = cf_cl_flash_scratch_bytes(CTX(be));
    out->flash_scratch_last = cf_cl_flash_scratch_last(CTX(be));
    cf_cl_attention_counts(CTX(be), &out->attention_fused, &out->attention_gemm);
    return CF_OK;
}

int cf_cl_peak(cf_backend *be, double seconds, double *gflops, const char **how) {
    /* precision tf32 / bf16 / fp16 on a matrix engine: MFU against that engine's peak (its
     * products run there); a failure of that measure falls back to the fp32 one, said once */
    const cf_cl_ctx *ctx = CTX(be);
    if (ctx->mx && ctx->mx_prec) {
        static char buf[CF_CL_MX_PRECISIONS][160];
        snprintf(buf[ctx->mx_prec], sizeof buf[0], "%s matrix engine %s: mma chains",
                 cf_precision_name(ctx->mx_prec), ctx->mx_name);
        *how = buf[ctx->mx_prec];
        if (cf_cl_peak_engine_gflops(be, seconds, gflops) == CF_OK) return CF_OK;
        CF_WARN("bench: the %s engine's peak could not be measured on %s (above); MFU is "
                "against the fp32 peak",
                ctx->mx_name, ctx->dev.name);
    }
    *how = "OpenCL FMA kernel";
    return cf_cl_peak_gflops(be, seconds, gflops);
}

int cf_cl_gemm_describe(cf_backend *be, int M, int N, int K, int ta, int tb, char *out,
                        size_t len) {
    cf_cl_gemm_params p;
    CF_TRY(cf_cl_gemm_params_lookup(CTX(be), M, N, K, ta, tb, &p));
    snprintf(out, len, "%dx%d wpt%d tk%d (%s)", p.tile, p.tile, p.wpt, p.tk,
             p.source ? p.source : "?");
    return CF_OK;
}

int cf_backend_opencl_build_stats(cf_backend *be, cf_cl_build_stats *out) {
    if (!cf_backend_is_opencl(be)) return CF_ERR_UNSUPPORTED;
    *out = CTX(be)->build;
    return CF_OK;
}
