/* clformer: the OpenCL backend's program and kernel table: which cl_kernels/ file each kernel
 * comes from, building them with the reduction work-group size, and rebuilding one program with
 * another (tuned) work-group size. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/opencl/cl_internal.h"

/* ---- kernel table ------------------------------------------------------------------------------ */

static const char *program_files[CF_PROG_COUNT] = {
    [CF_PROG_RESIDUAL] = "residual.cl",   [CF_PROG_REDUCE] = "reduce.cl",
    [CF_PROG_GELU] = "gelu.cl",           [CF_PROG_ADAMW] = "adamw.cl",
    [CF_PROG_LAYERNORM] = "layernorm.cl", [CF_PROG_CROSSENTROPY] = "crossentropy.cl",
    [CF_PROG_ATTENTION] = "attention.cl", [CF_PROG_ENCODER] = "encoder.cl",
    [CF_PROG_ACT] = "act.cl",             [CF_PROG_RMSNORM] = "rmsnorm.cl",
    [CF_PROG_ROPE] = "rope.cl",           [CF_PROG_MUON] = "muon.cl",
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
    [K_TO_F16] = {CF_PROG_RESIDUAL, "convert_to_f16", 0},
    [K_FROM_F16] = {CF_PROG_RESIDUAL, "convert_from_f16", 0},
    [K_TO_BF16] = {CF_PROG_RESIDUAL, "convert_to_bf16", 0},
    [K_FROM_BF16] = {CF_PROG_RESIDUAL, "convert_from_bf16", 0},
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
    [K_CE_FORWARD_SOFTCAP] = {CF_PROG_CROSSENTROPY, "crossentropy_forward_softcap", 1},
    [K_CE_FUSED_SOFTCAP] = {CF_PROG_CROSSENTROPY, "crossentropy_fused_softcap", 1},
    [K_SOFTMAX_FORWARD] = {CF_PROG_ATTENTION, "attention_softmax_forward", 1},
    [K_SOFTMAX_BACKWARD] = {CF_PROG_ATTENTION, "attention_softmax_backward", 1},
    [K_ENC_FORWARD] = {CF_PROG_ENCODER, "encoder_forward", 0},
    [K_ENC_RANK] = {CF_PROG_ENCODER, "encoder_rank", 1},
    [K_ENC_WTE] = {CF_PROG_ENCODER, "encoder_backward_wte", 1},
    [K_RELU2_FORWARD] = {CF_PROG_ACT, "relu2_forward", 0},
    [K_RELU2_BACKWARD] = {CF_PROG_ACT, "relu2_backward", 0},
    [K_SILU_FORWARD] = {CF_PROG_ACT, "silu_forward", 0},
    [K_SILU_BACKWARD] = {CF_PROG_ACT, "silu_backward", 0},
    [K_SWIGLU_FORWARD] = {CF_PROG_ACT, "swiglu_forward", 0},
    [K_SWIGLU_BACKWARD] = {CF_PROG_ACT, "swiglu_backward", 0},
    [K_RMS_FORWARD] = {CF_PROG_RMSNORM, "rmsnorm_forward", 1},
    [K_RMS_BACKWARD] = {CF_PROG_RMSNORM, "rmsnorm_backward", 1},
    [K_ROPE] = {CF_PROG_ROPE, "rope_rotate", 0},
    [K_MUON_MOMENTUM] = {CF_PROG_MUON, "muon_momentum", 0},
    [K_SCALE_RNORM] = {CF_PROG_MUON, "muon_scale_rnorm", 0},
    [K_AXPBY] = {CF_PROG_MUON, "muon_axpby", 0},
};

void cf_cl_release_programs(cf_cl_ctx *ctx) {
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
int cf_cl_build_programs(cf_cl_ctx *ctx, size_t *max_ls) {
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
size_t cf_cl_kernel_ls(const cf_cl_ctx *ctx, int kid) {
    return (size_t)ctx->prog_ls[kernel_table[kid].program];
}

const char *cf_cl_kernel_name(int kid) { return kernel_table[kid].name; }
