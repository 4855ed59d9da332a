/* clformer: the OpenCL backend: device selection from a device spec, context and program setup,
 * device buffers and transfers, and every op of struct cf_backend_ops as kernel launches. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend/opencl/cl_gemm_fast.h"
#include "backend/opencl/cl_internal.h"

static const struct cf_backend_ops cf_cl_ops;
static cf_cl_ctx *CTX(cf_backend *be) { return (cf_cl_ctx *)be->ctx; }

/* ---- errors ------------------------------------------------------------------------------------ */

void cf_cl_fail(cf_cl_ctx *ctx, const char *fmt, ...) {
    char msg[480];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ctx && ctx->quiet_init) {
        CF_DEBUG("%s", msg);
        if (!ctx->last_error[0]) snprintf(ctx->last_error, sizeof ctx->last_error, "%s", msg);
        return;
    }
    CF_ERROR("%s", msg);
}

/* ---- kernel table ------------------------------------------------------------------------------ */

static const char *program_files[CF_PROG_COUNT] = {
    [CF_PROG_RESIDUAL] = "residual.cl",   [CF_PROG_REDUCE] = "reduce.cl",
    [CF_PROG_GELU] = "gelu.cl",           [CF_PROG_ADAMW] = "adamw.cl",
    [CF_PROG_LAYERNORM] = "layernorm.cl", [CF_PROG_CROSSENTROPY] = "crossentropy.cl",
    [CF_PROG_ATTENTION] = "attention.cl", [CF_PROG_ENCODER] = "encoder.cl",
};

static const struct {
    int program;
    const char *name;
    int uses_ls; /* launched with work-groups of ctx->ls items (local arrays sized by LS) */
} kernel_table[K_COUNT] = {
    [K_RESIDUAL_FORWARD] = {CF_PROG_RESIDUAL, "residual_forward", 0},
    [K_AXPY] = {CF_PROG_RESIDUAL, "residual_axpy", 0},
    [K_FILL] = {CF_PROG_RESIDUAL, "residual_fill", 0},
    [K_COPY] = {CF_PROG_RESIDUAL, "residual_copy", 0},
    [K_ADD_BIAS] = {CF_PROG_RESIDUAL, "residual_add_bias", 0},
    [K_SUM_PARTIAL] = {CF_PROG_REDUCE, "reduce_sum_partial", 1},
    [K_SUM_FINAL] = {CF_PROG_REDUCE, "reduce_sum_final", 1},
    [K_COLSUM_PARTIAL] = {CF_PROG_REDUCE, "reduce_colsum_partial", 0},
    [K_COLSUM_FINAL] = {CF_PROG_REDUCE, "reduce_colsum_final", 0},
    [K_GELU_FORWARD] = {CF_PROG_GELU, "gelu_forward", 0},
    [K_GELU_BACKWARD] = {CF_PROG_GELU, "gelu_backward", 0},
    [K_ADAMW] = {CF_PROG_ADAMW, "adamw_update", 0},
    [K_LN_FORWARD] = {CF_PROG_LAYERNORM, "layernorm_forward", 1},
    [K_LN_BACKWARD] = {CF_PROG_LAYERNORM, "layernorm_backward", 1},
    [K_CE_FORWARD] = {CF_PROG_CROSSENTROPY, "crossentropy_forward", 1},
    [K_CE_FUSED] = {CF_PROG_CROSSENTROPY, "crossentropy_fused", 1},
    [K_SOFTMAX_FORWARD] = {CF_PROG_ATTENTION, "attention_softmax_forward", 1},
    [K_SOFTMAX_BACKWARD] = {CF_PROG_ATTENTION, "attention_softmax_backward", 1},
    [K_ENC_FORWARD] = {CF_PROG_ENCODER, "encoder_forward", 0},
    [K_ENC_RANK] = {CF_PROG_ENCODER, "encoder_rank", 1},
    [K_ENC_WTE] = {CF_PROG_ENCODER, "encoder_backward_wte", 1},
};

static void release_programs(cf_cl_ctx *ctx) {
    for (int i = 0; i < K_COUNT; i++) {
        if (ctx->kernels[i]) clReleaseKernel(ctx->kernels[i]);
        ctx->kernels[i] = NULL;
    }
    for (int i = 0; i < CF_PROG_COUNT; i++) {
        if (ctx->programs[i]) clReleaseProgram(ctx->programs[i]);
        ctx->programs[i] = NULL;
    }
}

/* Build every non-GEMM program with -DLS=ctx->ls; *max_ls receives the smallest per-kernel
 * work-group limit among the kernels that use LS-sized groups. */
static int build_programs(cf_cl_ctx *ctx, size_t *max_ls) {
    char opts[96];
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DLS=%d", ctx->ls);
    for (int p = 0; p < CF_PROG_COUNT; p++) {
        CF_TRY(cf_cl_build_program(ctx, program_files[p], opts, &ctx->programs[p]));
        ctx->prog_ls[p] = ctx->ls;
    }
    *max_ls = (size_t)-1;
    for (int k = 0; k < K_COUNT; k++) {
        cl_int err = CL_SUCCESS;
        ctx->kernels[k] = clCreateKernel(ctx->programs[kernel_table[k].program],
                                         kernel_table[k].name, &err);
        if (err != CL_SUCCESS) {
            cf_cl_fail(ctx, "cl_kernels/%s: kernel %s not created: %s",
                       program_files[kernel_table[k].program], kernel_table[k].name,
                       cf_cl_errstr(err));
            return CF_ERR_BUILD;
        }
        size_t wg = 0;
        CF_CHECK_CL(ctx, clGetKernelWorkGroupInfo(ctx->kernels[k], ctx->dev.device,
                                                  CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg,
                                                  NULL));
        if (kernel_table[k].uses_ls && wg < *max_ls) *max_ls = wg;
    }
    return CF_OK;
}

int cf_cl_program_set_ls(cf_cl_ctx *ctx, int prog, int ls) {
    if (prog < 0 || prog >= CF_PROG_COUNT || ls < 1 || (ls & (ls - 1)) != 0 ||
        (size_t)ls > ctx->dev.max_group) {
        cf_cl_fail(ctx, "opencl: work-group size %d for cl_kernels/%s is not a power of two within "
                        "the device's limit (%zu)", ls, prog >= 0 && prog < CF_PROG_COUNT ?
                        program_files[prog] : "?", ctx->dev.max_group);
        return CF_ERR_INVALID;
    }
    if (ctx->prog_ls[prog] == ls) return CF_OK;
    char opts[96];
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DLS=%d", ls);
    cl_program program = NULL;
    CF_TRY(cf_cl_build_program(ctx, program_files[prog], opts, &program));
    cl_kernel ks[K_COUNT] = {0};
    int rc = CF_OK;
    for (int k = 0; k < K_COUNT && rc == CF_OK; k++) {
        if (kernel_table[k].program != prog) continue;
        cl_int err = CL_SUCCESS;
        ks[k] = clCreateKernel(program, kernel_table[k].name, &err);
        size_t wg = 0;
        if (err == CL_SUCCESS)
            err = clGetKernelWorkGroupInfo(ks[k], ctx->dev.device, CL_KERNEL_WORK_GROUP_SIZE,
                                           sizeof wg, &wg, NULL);
        if (err != CL_SUCCESS) {
            cf_cl_fail(ctx, "cl_kernels/%s: kernel %s with LS=%d: %s", program_files[prog],
                       kernel_table[k].name, ls, cf_cl_errstr(err));
            rc = CF_ERR_BUILD;
        } else if (wg < (size_t)ls) {
            cf_cl_fail(ctx, "cl_kernels/%s: kernel %s can run %zu work-items per group on %s, "
                            "fewer than LS=%d", program_files[prog], kernel_table[k].name, wg,
                       ctx->dev.name, ls);
            rc = CF_ERR_UNSUPPORTED;
        }
    }
    if (rc < 0) {
        for (int k = 0; k < K_COUNT; k++)
            if (ks[k]) clReleaseKernel(ks[k]);
        clReleaseProgram(program);
        return rc;
    }
    /* kernels already enqueued keep the old objects alive until they finish */
    for (int k = 0; k < K_COUNT; k++) {
        if (kernel_table[k].program != prog) continue;
        if (ctx->kernels[k]) clReleaseKernel(ctx->kernels[k]);
        ctx->kernels[k] = ks[k];
    }
    if (ctx->programs[prog]) clReleaseProgram(ctx->programs[prog]);
    ctx->programs[prog] = program;
    ctx->prog_ls[prog] = ls;
    return CF_OK;
}

/* work-group size of a kernel: the LS its program was built with */
static size_t kernel_ls(const cf_cl_ctx *ctx, int kid) {
    return (size_t)ctx->prog_ls[kernel_table[kid].program];
}

/* ---- launches and scratch ---------------------------------------------------------------------- */

int cf_cl_launch(cf_cl_ctx *ctx, cl_kernel k, const char *name, int dims, const size_t *global,
                 const size_t *local, int nargs, const cf_cl_arg *args) {
    for (int d = 0; d < dims; d++)
        if (global[d] == 0) return CF_OK; /* empty range: nothing to do */
    for (int i = 0; i < nargs; i++) {
        const cf_cl_arg *a = &args[i];
        cl_int err;
        switch (a->kind) {
        case CF_ARG_MEM: err = clSetKernelArg(k, (cl_uint)i, sizeof(cl_mem), &a->m); break;
        case CF_ARG_INT: err = clSetKernelArg(k, (cl_uint)i, sizeof(cl_int), &a->i); break;
        case CF_ARG_FLOAT: err = clSetKernelArg(k, (cl_uint)i, sizeof(cl_float), &a->f); break;
        default: err = clSetKernelArg(k, (cl_uint)i, sizeof(cl_ulong), &a->u); break;
        }
        if (err != CL_SUCCESS) {
            cf_cl_fail(ctx, "kernel %s: argument %d not set: %s", name, i, cf_cl_errstr(err));
            return CF_ERR_DEVICE;
        }
    }
    cl_event ev = NULL;
    cl_int err = clEnqueueNDRangeKernel(ctx->queue, k, (cl_uint)dims, NULL, global, local, 0, NULL,
                                        cf_cl_profiling(ctx) ? &ev : NULL);
    cf_cl_prof_keep(ctx, ev);
    if (err != CL_SUCCESS) {
        cf_cl_fail(ctx, "kernel %s: launch of (%zu, %zu, %zu) items failed on %s: %s", name,
                   global[0], dims > 1 ? global[1] : 1, dims > 2 ? global[2] : 1, ctx->dev.name,
                   cf_cl_errstr(err));
        return (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES)
                   ? CF_ERR_NOMEM
                   : CF_ERR_DEVICE;
    }
    return CF_OK;
}

void cf_cl_prof_keep(cf_cl_ctx *ctx, cl_event ev) {
    if (!ev) return;
    if (ctx->n_prof == ctx->cap_prof) {
        int cap = ctx->cap_prof ? ctx->cap_prof * 2 : 256;
        cl_event *grown = cap <= (1 << 20) ? realloc(ctx->prof_events, (size_t)cap * sizeof *grown)
                                           : NULL;
        if (!grown) { /* nobody collects: drop this one rather than grow without bound */
            clReleaseEvent(ev);
            return;
        }
        ctx->prof_events = grown;
        ctx->cap_prof = cap;
    }
    ctx->prof_events[ctx->n_prof++] = ev;
}

static void prof_drop(cf_cl_ctx *ctx) {
    for (int i = 0; i < ctx->n_prof; i++) clReleaseEvent(ctx->prof_events[i]);
    ctx->n_prof = 0;
}

/* Device time of everything enqueued since the last call: the sum of (END - START) of the events
 * (the profiler synchronises first, so they are complete). */
static int cl_prof_collect(cf_backend *be, double *device_us) {
    cf_cl_ctx *ctx = CTX(be);
    *device_us = 0.0;
    int rc = ctx->prof_host_timed ? CF_ERR_UNSUPPORTED : CF_OK;
    ctx->prof_host_timed = 0;
    for (int i = 0; i < ctx->n_prof; i++) {
        cl_ulong t0 = 0, t1 = 0;
        if (clGetEventProfilingInfo(ctx->prof_events[i], CL_PROFILING_COMMAND_START, sizeof t0,
                                    &t0, NULL) != CL_SUCCESS ||
            clGetEventProfilingInfo(ctx->prof_events[i], CL_PROFILING_COMMAND_END, sizeof t1, &t1,
                                    NULL) != CL_SUCCESS) {
            rc = CF_ERR_DEVICE; /* the caller falls back to host timing */
            continue;
        }
        if (t1 > t0) *device_us += (double)(t1 - t0) * 1e-3;
    }
    prof_drop(ctx);
    return rc;
}

static int create_mem(cf_cl_ctx *ctx, size_t nbytes, cl_mem *out) {
    *out = NULL;
    if (nbytes > ctx->dev.max_alloc) {
        cf_cl_fail(ctx, "opencl: a buffer of %zu bytes exceeds the largest allocation %s allows "
                        "(%llu bytes); use a smaller model or batch",
                   nbytes, ctx->dev.name, (unsigned long long)ctx->dev.max_alloc);
        return CF_ERR_NOMEM;
    }
    cl_int err = CL_SUCCESS;
    cl_mem_flags flags = CL_MEM_READ_WRITE | (ctx->use_map ? CL_MEM_ALLOC_HOST_PTR : 0);
    cl_mem m = clCreateBuffer(ctx->context, flags, nbytes, NULL, &err);
    if (err != CL_SUCCESS || !m) {
        cf_cl_fail(ctx, "opencl: allocation of %zu bytes on %s failed: %s", nbytes, ctx->dev.name,
                   cf_cl_errstr(err));
        return CF_ERR_NOMEM;
    }
    *out = m;
    return CF_OK;
}

/* residual_fill, residual_forward and adamw_update: 4 elements per work-item, float4 when every
 * offset is a multiple of 4 (cl_kernels/residual.cl, adamw.cl) */
static size_t quad_range(const cf_cl_ctx *ctx, int kid, size_t n) {
    return cf_round_up((n + 3) / 4, kernel_ls(ctx, kid));
}

static int fill_mem(cf_cl_ctx *ctx, cl_mem m, size_t off, float value, size_t n) {
    size_t ls = kernel_ls(ctx, K_FILL), g = quad_range(ctx, K_FILL, n);
    return cf_cl_launch(ctx, ctx->kernels[K_FILL], "residual_fill", 1, &g, &ls,
                        CF_ARGS(ARG_MEM(m), ARG_ULONG(off), ARG_FLOAT(value), ARG_ULONG(n),
                                ARG_INT(off % 4 == 0)));
}

int cf_cl_scratch(cf_cl_ctx *ctx, int slot, size_t nbytes, cl_mem *out) {
    if (nbytes < 4) nbytes = 4;
    if (ctx->scratch[slot] && ctx->scratch_bytes[slot] >= nbytes) {
        *out = ctx->scratch[slot];
        return CF_OK;
    }
#ifdef CF_FAULT_INJECTION
    if (cf_fault_alloc_hit()) {
        cf_cl_fail(ctx, "opencl: scratch allocation of %zu bytes failed (injected fault)", nbytes);
        return CF_ERR_NOMEM;
    }
#endif
    /* kernels still queued on the old buffer keep it alive until they finish */
    if (ctx->scratch[slot]) clReleaseMemObject(ctx->scratch[slot]);
    ctx->scratch[slot] = NULL;
    ctx->scratch_bytes[slot] = 0;
    size_t grown = cf_round_up(nbytes + nbytes / 4, 256); /* headroom, whole cache lines */
    CF_TRY(create_mem(ctx, grown, &ctx->scratch[slot]));
    ctx->scratch_bytes[slot] = grown;
    *out = ctx->scratch[slot];
    return CF_OK;
}

static int is_gpu(const cf_cl_ctx *ctx) { return (ctx->dev.type & CL_DEVICE_TYPE_GPU) != 0; }

/* 1-D element-wise launch over n items */
#define LAUNCH_1D(ctx, kid, n, ...)                                                                \
    do {                                                                                           \
        size_t ls_ = kernel_ls((ctx), (kid)), g_ = cf_round_up((n), ls_);                          \
        return cf_cl_launch((ctx), (ctx)->kernels[kid], kernel_table[kid].name, 1, &g_, &ls_,      \
                            CF_ARGS(__VA_ARGS__));                                                 \
    } while (0)

/* ---- identity, buffers, transfers -------------------------------------------------------------- */

static const char *cl_name(cf_backend *be) { return CTX(be)->name; }

static void ctx_free(cf_cl_ctx *ctx) {
    if (!ctx) return;
    if (ctx->queue) clFinish(ctx->queue);
    prof_drop(ctx);
    free(ctx->prof_events);
    for (int i = 0; i < CF_SCRATCH_COUNT; i++)
        if (ctx->scratch[i]) clReleaseMemObject(ctx->scratch[i]);
    cf_cl_gemm_release(ctx);
    cf_cl_attention_release(ctx);
    cf_cl_tuning_detach(ctx);
    release_programs(ctx);
    if (ctx->queue) clReleaseCommandQueue(ctx->queue);
    if (ctx->context) clReleaseContext(ctx->context);
    free(ctx);
}

static void cl_destroy(cf_backend *be) {
    ctx_free(CTX(be));
    free(be);
}

/* New buffers start zeroed, as the CPU backend's do, so no op can read garbage. */
static int cl_buffer_alloc(cf_backend *be, size_t nbytes, cf_buffer **out) {
    cf_cl_ctx *ctx = CTX(be);
    *out = NULL;
    cl_mem m = NULL;
    CF_TRY(create_mem(ctx, nbytes, &m));
    int rc = fill_mem(ctx, m, 0, 0.0f, nbytes / 4);
    if (rc == CF_OK && nbytes % 4) {
        cl_uchar zero = 0;
        for (size_t i = nbytes - nbytes % 4; i < nbytes && rc == CF_OK; i++)
            if (clEnqueueWriteBuffer(ctx->queue, m, CL_TRUE, i, 1, &zero, 0, NULL, NULL) !=
                CL_SUCCESS)
                rc = CF_ERR_DEVICE;
    }
    cf_buffer *b = rc == CF_OK ? calloc(1, sizeof *b) : NULL;
    if (!b) {
        clReleaseMemObject(m);
        return rc < 0 ? rc : CF_ERR_NOMEM;
    }
    b->nbytes = nbytes;
    b->handle = m;
    *out = b;
    return CF_OK;
}

static void cl_buffer_free(cf_backend *be, cf_buffer *buf) {
    (void)be;
    if (!buf) return;
    if (buf->handle) clReleaseMemObject((cl_mem)buf->handle);
    free(buf);
}

static int cl_upload(cf_backend *be, cf_view dst, const void *src, size_t nbytes) {
    cf_cl_ctx *ctx = CTX(be);
    if (nbytes == 0) return CF_OK;
    cl_mem m = cf_cl_mem(dst);
    if (ctx->use_map) {
        cl_int err = CL_SUCCESS;
        void *p = clEnqueueMapBuffer(ctx->queue, m, CL_TRUE, CL_MAP_WRITE_INVALIDATE_REGION,
                                     dst.off, nbytes, 0, NULL, NULL, &err);
        CF_CHECK_CL(ctx, err);
        memcpy(p, src, nbytes);
        cl_event ev = NULL;
        err = clEnqueueUnmapMemObject(ctx->queue, m, p, 0, NULL,
                                      cf_cl_profiling(ctx) ? &ev : NULL);
        cf_cl_prof_keep(ctx, ev);
        CF_CHECK_CL(ctx, err);
        return CF_OK;
    }
    cl_event ev = NULL;
    cl_int err = clEnqueueWriteBuffer(ctx->queue, m, CL_TRUE, dst.off, nbytes, src, 0, NULL,
                                      cf_cl_profiling(ctx) ? &ev : NULL);
    cf_cl_prof_keep(ctx, ev);
    CF_CHECK_CL(ctx, err);
    return CF_OK;
}

static int cl_download(cf_backend *be, void *dst, cf_view src, size_t nbytes) {
    cf_cl_ctx *ctx = CTX(be);
    if (nbytes == 0) return CF_OK;
    cl_mem m = cf_cl_mem(src);
    if (ctx->use_map) {
        cl_int err = CL_SUCCESS;
        cl_event ev = NULL;
        void *p = clEnqueueMapBuffer(ctx->queue, m, CL_TRUE, CL_MAP_READ, src.off, nbytes, 0, NULL,
                                     cf_cl_profiling(ctx) ? &ev : NULL, &err);
        cf_cl_prof_keep(ctx, ev);
        CF_CHECK_CL(ctx, err);
        memcpy(dst, p, nbytes);
        CF_CHECK_CL(ctx, clEnqueueUnmapMemObject(ctx->queue, m, p, 0, NULL, NULL));
        return CF_OK;
    }
    cl_event ev = NULL;
    cl_int err = clEnqueueReadBuffer(ctx->queue, m, CL_TRUE, src.off, nbytes, dst, 0, NULL,
                                     cf_cl_profiling(ctx) ? &ev : NULL);
    cf_cl_prof_keep(ctx, ev);
    CF_CHECK_CL(ctx, err);
    return CF_OK;
}

static int cl_copy(cf_backend *be, cf_view dst, cf_view src, size_t n) {
    cf_cl_ctx *ctx = CTX(be);
    cl_mem d = cf_cl_mem(dst), s = cf_cl_mem(src);
    size_t doff = cf_view_elem_off(dst), soff = cf_view_elem_off(src);
    if (d == s && doff == soff) return CF_OK;
    size_t ls = (size_t)ctx->ls, g = cf_round_up(n, ls);
    if (d == s && doff < soff + n && soff < doff + n) {
        /* overlapping ranges: stage through scratch (memmove semantics) */
        cl_mem t = NULL;
        CF_TRY(cf_cl_scratch(ctx, CF_SCRATCH_COPY, n * 4, &t));
        CF_TRY(cf_cl_launch(
            ctx, ctx->kernels[K_COPY], "residual_copy", 1, &g, &ls,
            CF_ARGS(ARG_MEM(t), ARG_ULONG(0), ARG_MEM(s), ARG_ULONG(soff), ARG_ULONG(n))));
        s = t;
        soff = 0;
    }
    return cf_cl_launch(
        ctx, ctx->kernels[K_COPY], "residual_copy", 1, &g, &ls,
        CF_ARGS(ARG_MEM(d), ARG_ULONG(doff), ARG_MEM(s), ARG_ULONG(soff), ARG_ULONG(n)));
}

static int cl_fill(cf_backend *be, cf_view dst, float value, size_t n) {
    cf_cl_ctx *ctx = CTX(be);
    return fill_mem(ctx, cf_cl_mem(dst), cf_view_elem_off(dst), value, n);
}

static int cl_synchronize(cf_backend *be) {
    cf_cl_ctx *ctx = CTX(be);
    CF_CHECK_CL(ctx, clFinish(ctx->queue));
    return CF_OK;
}

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
    LAUNCH_1D(ctx, K_ENC_FORWARD, (size_t)B * T * C, ARG_MEM(cf_cl_mem(out)),
              ARG_ULONG(cf_view_elem_off(out)), ARG_MEM(cf_cl_mem(tokens)),
              ARG_ULONG(cf_view_elem_off(tokens)), ARG_MEM(cf_cl_mem(wte)),
              ARG_ULONG(cf_view_elem_off(wte)), ARG_MEM(cf_cl_mem(wpe)),
              ARG_ULONG(cf_view_elem_off(wpe)), ARG_INT(B), ARG_INT(T), ARG_INT(C),
              ARG_ULONG((size_t)V));
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
    size_t ls = kernel_ls(ctx, K_ENC_RANK), P = ls;
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
    /* dwpe(T,C) += sum over b of dout(b, T, C): column sums over B rows of width T*C */
    return colsum(ctx, cf_cl_mem(dout), cf_view_elem_off(dout), B, T * C, T * C, cf_cl_mem(dwpe),
                  cf_view_elem_off(dwpe));
}

/* ---- LayerNorm --------------------------------------------------------------------------------- */

static int cl_layernorm_forward(cf_backend *be, cf_view out, cf_view mean, cf_view rstd,
                                cf_view inp, cf_view weight, cf_view bias, int N, int C) {
    cf_cl_ctx *ctx = CTX(be);
    int save = mean.buf && rstd.buf;
    cl_mem om = cf_cl_mem(out);
    size_t ls = kernel_ls(ctx, K_LN_FORWARD), g = (size_t)N * ls;
    return cf_cl_launch(
        ctx, ctx->kernels[K_LN_FORWARD], "layernorm_forward", 1, &g, &ls,
        CF_ARGS(ARG_MEM(om), ARG_ULONG(cf_view_elem_off(out)), ARG_MEM(save ? cf_cl_mem(mean) : om),
                ARG_ULONG(cf_view_elem_off(mean)), ARG_MEM(save ? cf_cl_mem(rstd) : om),
                ARG_ULONG(cf_view_elem_off(rstd)), ARG_INT(save), ARG_MEM(cf_cl_mem(inp)),
                ARG_ULONG(cf_view_elem_off(inp)), ARG_MEM(cf_cl_mem(weight)),
                ARG_ULONG(cf_view_elem_off(weight)), ARG_MEM(cf_cl_mem(bias)),
                ARG_ULONG(cf_view_elem_off(bias)), ARG_INT(N), ARG_INT(C)));
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
    size_t ls = kernel_ls(ctx, K_LN_BACKWARD), g = groups * ls;
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

/* q, k, v of head h in qkv(B,T,3C): columns [h*hs + part*C, ...), row stride 3C */
static att_operand qkv_part(cf_view qkv, int part, int T, int C, int hs) {
    att_operand o = {cf_cl_mem(qkv), cf_view_elem_off(qkv) + (size_t)part * C, (size_t)T * 3 * C,
                     (size_t)hs, 3 * C};
    return o;
}
/* (B,NH,T,T) score-shaped tensors */
static att_operand tt_part(cf_view v, int NH, int T) {
    att_operand o = {cf_cl_mem(v), cf_view_elem_off(v), (size_t)NH * T * T, (size_t)T * T, T};
    return o;
}
/* (B,T,C) tensors split by head */
static att_operand btc_part(cf_view v, int T, int C, int hs) {
    att_operand o = {cf_cl_mem(v), cf_view_elem_off(v), (size_t)T * C, (size_t)hs, C};
    return o;
}

static int softmax_rows(cf_cl_ctx *ctx, int kid, size_t rows, int nargs, const cf_cl_arg *args) {
    size_t ls = kernel_ls(ctx, kid), g = rows * ls;
    return cf_cl_launch(ctx, ctx->kernels[kid], kernel_table[kid].name, 1, &g, &ls, nargs, args);
}

static int cl_attention_forward(cf_backend *be, cf_view out, cf_view att, cf_view qkv, int B,
                                int T, int C, int NH) {
    cf_cl_ctx *ctx = CTX(be);
    /* one fused launch (cl_attention.c) where the shape fits, else the GEMM path below */
    int fused = cf_cl_attention_fused_forward(ctx, out, att, qkv, B, T, C, NH);
    if (fused != 0) return fused < 0 ? fused : CF_OK;
    cf_cl_attention_count_gemm(ctx);
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    int rows = B * NH * T;
    att_operand q = qkv_part(qkv, 0, T, C, hs), k = qkv_part(qkv, 1, T, C, hs),
                v = qkv_part(qkv, 2, T, C, hs);
    att_operand a = tt_part(att, NH, T), o = btc_part(out, T, C, hs);
    /* att(T,T) = scale * q(T,hs) k^T; blocks wholly above the diagonal are skipped */
    CF_TRY(att_gemm(ctx, 0, 1, T, T, hs, scale, q, k, 0.0f, a, B, NH, 1));
    CF_TRY(softmax_rows(
        ctx, K_SOFTMAX_FORWARD, (size_t)rows,
        CF_ARGS(ARG_MEM(a.m), ARG_ULONG(cf_view_elem_off(att)), ARG_INT(rows), ARG_INT(T))));
    /* out(T,hs) = att(T,T) v(T,hs); att is lower triangular */
    return att_gemm(ctx, 0, 0, T, hs, T, 1.0f, a, v, 0.0f, o, B, NH, 2);
}

static int cl_attention_backward(cf_backend *be, cf_view dqkv, cf_view datt, cf_view dpreatt,
                                 cf_view dout, cf_view qkv, cf_view att, int B, int T, int C,
                                 int NH) {
    cf_cl_ctx *ctx = CTX(be);
    int fused = cf_cl_attention_fused_backward(ctx, dqkv, dpreatt, dout, qkv, att, B, T, C, NH);
    if (fused != 0) return fused < 0 ? fused : CF_OK;
    cf_cl_attention_count_gemm(ctx);
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    int rows = B * NH * T;
    att_operand q = qkv_part(qkv, 0, T, C, hs), k = qkv_part(qkv, 1, T, C, hs),
                v = qkv_part(qkv, 2, T, C, hs);
    att_operand dq = qkv_part(dqkv, 0, T, C, hs), dk = qkv_part(dqkv, 1, T, C, hs),
                dv = qkv_part(dqkv, 2, T, C, hs);
    att_operand a = tt_part(att, NH, T), da = tt_part(datt, NH, T), dp = tt_part(dpreatt, NH, T);
    att_operand dO = btc_part(dout, T, C, hs);
    /* datt(T,T) = dout(T,hs) v^T (only t2 <= t is read below) */
    CF_TRY(att_gemm(ctx, 0, 1, T, T, hs, 1.0f, dO, v, 0.0f, da, B, NH, 1));
    /* dqkv is assigned, not accumulated: dv, dq and dk are each one product with beta 0 (C not
     * read), and causal modes 2 and 3 only shorten the K loop, so every (row, column) of each
     * is stored. dv(T,hs) = att^T dout; att^T is upper triangular */
    CF_TRY(att_gemm(ctx, 1, 0, T, hs, T, 1.0f, a, dO, 0.0f, dv, B, NH, 3));
    CF_TRY(softmax_rows(ctx, K_SOFTMAX_BACKWARD, (size_t)rows,
                        CF_ARGS(ARG_MEM(dp.m), ARG_ULONG(cf_view_elem_off(dpreatt)), ARG_MEM(da.m),
                                ARG_ULONG(cf_view_elem_off(datt)), ARG_MEM(a.m),
                                ARG_ULONG(cf_view_elem_off(att)), ARG_INT(rows), ARG_INT(T),
                                ARG_FLOAT(scale))));
    /* dq(T,hs) = dpreatt k (lower triangular); dk(T,hs) = dpreatt^T q (upper triangular; the
     * K loop from the block's first key reads dpreatt's zeros above the diagonal, which the
     * softmax backward writes) */
    CF_TRY(att_gemm(ctx, 0, 0, T, hs, T, 1.0f, dp, k, 0.0f, dq, B, NH, 2));
    return att_gemm(ctx, 1, 0, T, hs, T, 1.0f, dp, q, 0.0f, dk, B, NH, 3);
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

static int cl_residual_forward(cf_backend *be, cf_view out, cf_view a, cf_view b, size_t n) {
    cf_cl_ctx *ctx = CTX(be);
    if (n == 0) return CF_OK;
    size_t ls = kernel_ls(ctx, K_RESIDUAL_FORWARD), g = quad_range(ctx, K_RESIDUAL_FORWARD, n);
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
                                   cf_view targets, int N, int V) {
    cf_cl_ctx *ctx = CTX(be);
    return softmax_rows(ctx, K_CE_FORWARD, (size_t)N,
                        CF_ARGS(ARG_MEM(cf_cl_mem(losses)), ARG_ULONG(cf_view_elem_off(losses)),
                                ARG_MEM(cf_cl_mem(logits)), ARG_ULONG(cf_view_elem_off(logits)),
                                ARG_MEM(cf_cl_mem(targets)), ARG_ULONG(cf_view_elem_off(targets)),
                                ARG_INT(N), ARG_INT(V)));
}

static int cl_crossentropy_fused(cf_backend *be, cf_view losses, cf_view dlogits, cf_view logits,
                                 cf_view targets, int N, int V, float dloss) {
    cf_cl_ctx *ctx = CTX(be);
    return softmax_rows(ctx, K_CE_FUSED, (size_t)N,
                        CF_ARGS(ARG_MEM(cf_cl_mem(losses)), ARG_ULONG(cf_view_elem_off(losses)),
                                ARG_MEM(cf_cl_mem(dlogits)), ARG_ULONG(cf_view_elem_off(dlogits)),
                                ARG_MEM(cf_cl_mem(logits)), ARG_ULONG(cf_view_elem_off(logits)),
                                ARG_MEM(cf_cl_mem(targets)), ARG_ULONG(cf_view_elem_off(targets)),
                                ARG_INT(N), ARG_INT(V), ARG_FLOAT(dloss)));
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
    size_t ls = kernel_ls(ctx, K_ADAMW), g = quad_range(ctx, K_ADAMW, n);
    return cf_cl_launch(ctx, ctx->kernels[K_ADAMW], "adamw_update", 1, &g, &ls,
                        CF_ARGS(ARG_MEM(cf_cl_mem(params)), ARG_ULONG(cf_view_elem_off(params)),
                                ARG_MEM(cf_cl_mem(grads)), ARG_ULONG(cf_view_elem_off(grads)),
                                ARG_MEM(cf_cl_mem(m)), ARG_ULONG(cf_view_elem_off(m)),
                                ARG_MEM(cf_cl_mem(v)), ARG_ULONG(cf_view_elem_off(v)), ARG_ULONG(n),
                                ARG_FLOAT(lr), ARG_FLOAT(beta1), ARG_FLOAT(beta2),
                                ARG_FLOAT(inv_bc1), ARG_FLOAT(inv_bc2), ARG_FLOAT(eps),
                                ARG_FLOAT(weight_decay), ARG_FLOAT(grad_scale), ARG_INT(aligned)));
}

static int cl_info(cf_backend *be, cf_backend_info *out);
static int cl_peak(cf_backend *be, double seconds, double *gflops, const char **how);
static int cl_gemm_describe(cf_backend *be, int M, int N, int K, int ta, int tb, char *out,
                            size_t len);

static const struct cf_backend_ops cf_cl_ops = {
    /* .api_version = */ CF_BACKEND_API_VERSION,
    /* .name = */ cl_name,
    /* .destroy = */ cl_destroy,
    /* .buffer_alloc = */ cl_buffer_alloc,
    /* .buffer_free = */ cl_buffer_free,
    /* .upload = */ cl_upload,
    /* .download = */ cl_download,
    /* .copy = */ cl_copy,
    /* .fill = */ cl_fill,
    /* .synchronize = */ cl_synchronize,
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
    /* .gelu_forward = */ cl_gelu_forward,
    /* .gelu_backward = */ cl_gelu_backward,
    /* .residual_forward = */ cl_residual_forward,
    /* .axpy = */ cl_axpy,
    /* .crossentropy_forward = */ cl_crossentropy_forward,
    /* .crossentropy_fused = */ cl_crossentropy_fused,
    /* .reduce_sum = */ cl_reduce_sum,
    /* .adamw = */ cl_adamw,
    /* .prof_collect = */ cl_prof_collect,
    /* .info = */ cl_info,
    /* .peak_gflops = */ cl_peak,
    /* .gemm_describe = */ cl_gemm_describe,
};

/* ---- device selection -------------------------------------------------------------------------- */

static int contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    if (n == 0) return 0;
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n) return 1;
    }
    return 0;
}

/* "opencl:0:0 NAME (PLATFORM), ..." for error messages */
static void describe_all(const cf_cl_device_info *list, int n, int with_reason, char *out,
                         size_t len) {
    out[0] = 0;
    size_t used = 0;
    for (int i = 0; i < n && used + 1 < len; i++) {
        const cf_cl_device_info *d = &list[i];
        int w = snprintf(out + used, len - used, "%sopencl:%d:%d %s (%s%s%s)", i ? ", " : "",
                         d->platform_index, d->device_index, d->name, cf_cl_type_name(d),
                         with_reason && !d->usable ? ", not usable: " : "",
                         with_reason && !d->usable ? d->reason : "");
        if (w < 0) break;
        used += (size_t)w;
    }
    if (n == 0) snprintf(out, len, "none");
}

static int gpu_rank(const cf_cl_device_info *d) {
    if (d->type & CL_DEVICE_TYPE_GPU) return d->unified ? 2 : 3; /* discrete before integrated */
    if (d->type & CL_DEVICE_TYPE_ACCELERATOR) return 1;
    return 0;
}

/* Pick a device for spec; -1 with an error (or, for auto, the warning) printed when none. */
static int select_device(const char *spec, const cf_cl_device_info *list, int n,
                         const char *enum_why, int is_auto, int allow_cpu) {
    char all[2048];
    if (is_auto) {
        int best = -1;
        double best_score = -1.0;
        for (int i = 0; i < n; i++) {
            const cf_cl_device_info *d = &list[i];
            int r = gpu_rank(d);
            if (!d->usable || (r < 2 && !allow_cpu)) continue;
            double score = r * 1e12 + (double)d->compute_units * d->clock_mhz * 1e3 +
                           (double)(d->global_mem >> 20);
            if (score > best_score) {
                best_score = score;
                best = i;
            }
        }
        if (best < 0) {
            if (n == 0) snprintf(all, sizeof all, "%s", enum_why);
            else describe_all(list, n, 1, all, sizeof all);
            CF_WARN("no usable OpenCL GPU (found: %s); falling back to the CPU backend", all);
        }
        return best;
    }
    describe_all(list, n, 1, all, sizeof all);
    if (strcasecmp(spec, "opencl") == 0) {
        for (int i = 0; i < n; i++)
            if (list[i].usable) return i;
        CF_ERROR("device 'opencl': no usable OpenCL device (found: %s); run 'clformer devices'",
                 n ? all : enum_why);
        return -1;
    }
    int p = -1, dv = -1;
    char tail = 0;
    if (strncasecmp(spec, "opencl:", 7) == 0) {
        if (sscanf(spec + 7, "%d:%d%c", &p, &dv, &tail) != 2 || p < 0 || dv < 0) {
            CF_ERROR("device '%s': expected opencl:P:D with platform and device numbers, e.g. "
                     "opencl:0:0; run 'clformer devices'",
                     spec);
            return -1;
        }
        for (int i = 0; i < n; i++) {
            if (list[i].platform_index != p || list[i].device_index != dv) continue;
            if (list[i].usable) return i;
            CF_ERROR("device '%s' (%s) is not usable: %s; run 'clformer devices'", spec,
                     list[i].name, list[i].reason);
            return -1;
        }
        CF_ERROR("device '%s' not found; available: %s; run 'clformer devices'", spec,
                 n ? all : enum_why);
        return -1;
    }
    int first_match = -1;
    for (int i = 0; i < n; i++) {
        const cf_cl_device_info *d = &list[i];
        if (!contains_ci(d->platform_name, spec) && !contains_ci(d->name, spec) &&
            !contains_ci(d->version, spec))
            continue;
        if (d->usable) return i;
        if (first_match < 0) first_match = i;
    }
    if (first_match >= 0) {
        CF_ERROR("device '%s' (opencl:%d:%d %s) is not usable: %s; run 'clformer devices'", spec,
                 list[first_match].platform_index, list[first_match].device_index,
                 list[first_match].name, list[first_match].reason);
        return -1;
    }
    CF_ERROR("device '%s' not found; available: cpu, %s; run 'clformer devices'", spec,
             n ? all : enum_why);
    return -1;
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
    ctx->gemm_tile = o->gemm_tile;
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
    CF_TRY(build_programs(ctx, &max_ls));
    if (max_ls < (size_t)ctx->ls) {
        /* some kernel cannot run LS-item groups on this device: rebuild with a smaller LS */
        while ((size_t)ctx->ls > max_ls && ctx->ls > 32) ctx->ls /= 2;
        CF_DEBUG("opencl: reduction work-groups reduced to %d items on %s", ctx->ls,
                 ctx->dev.name);
        release_programs(ctx);
        CF_TRY(build_programs(ctx, &max_ls));
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
    int idx = select_device(spec, list, n, why, is_auto, opts->auto_cpu_devices);
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
    return CF_OK;
}

static int cl_info(cf_backend *be, cf_backend_info *out) {
    const cf_cl_ctx *ctx = CTX(be);
    const cf_cl_device_info *d = &ctx->dev;
    out->kind = "opencl";
    if (d->type & CL_DEVICE_TYPE_GPU)
        out->device_type = d->unified ? CF_DEVICE_INTEGRATED_GPU : CF_DEVICE_GPU;
    else if (d->type & CL_DEVICE_TYPE_CPU)
        out->device_type = CF_DEVICE_CPU;
    else
        out->device_type = CF_DEVICE_ACCELERATOR;
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
    return CF_OK;
}

static int cl_peak(cf_backend *be, double seconds, double *gflops, const char **how) {
    *how = "OpenCL FMA kernel";
    return cf_cl_peak_gflops(be, seconds, gflops);
}

static int cl_gemm_describe(cf_backend *be, int M, int N, int K, int ta, int tb, char *out,
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
