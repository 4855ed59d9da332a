/* clformer: the GEMM on half operands (cl_kernels/gemm_half.cl) for precision bf16 / fp16 on a
 * matrix engine that has it (cl_matrix.h's half_gemm): each operand converted once to the format
 * (and transposed where needed) by gh_pack, then multiplied by gh_gemm with fp32 accumulation.
 * The planning layer (cl_plan.c, path "half") chooses the products it takes, with the
 * register-blocked kernel's choice (cl_gemm_fast.c) as the fallback where it cannot run. */
#ifndef CF_CL_GEMM_HALF_H
#define CF_CL_GEMM_HALF_H

#include "backend/backend.h"
#include "backend/opencl/cl_internal.h"

/* May the half-operand GEMM run on this context: precision bf16 / fp16 on a matrix engine whose
 * row has the kernel, CF_GEMM_HALF not off, and either asked for (on) or verified on hardware and
 * not emulated (auto), and it has not failed to build here? */
int cf_cl_gemm_half_engine(const cf_cl_ctx *ctx);
/* The block shape of ctx's kernels: bn columns (128, or a variant's 64 / 192 / 256) and K slices
 * of bk (32, or 16) for blocks of 128 x bn (ctx NULL: the default, 128 x 32). */
void cf_cl_gemm_half_block(const cf_cl_ctx *ctx, int *bn, int *bk);
/* "<bn>x<bk>": "64x32", "128x32", "192x32" or "256x16" (CF_ERR_INVALID otherwise) */
int cf_cl_gemm_half_block_parse(const char *s, int *bn, int *bk);
/* The split-K rule: K slices for M x N outputs over K on compute_units multiprocessors: where
 * ctx's blocks are fewer than the compute units, as many slices as keep the groups within one
 * wave (two a compute unit for 128 x 128 blocks, three for 128 x 64, one for the wider ones;
 * slices of at least 256 values of k, at most 16); else 1. */
int cf_cl_gemm_half_split(const cf_cl_ctx *ctx, int M, int N, int K, int compute_units);
/* Run plain product d (bias, GELU epilogues, column sums of a transposed A as gemm_fast.cl's);
 * split 0: the rule's. CF_ERR_BUILD / CF_ERR_UNSUPPORTED when the kernels cannot be built or run
 * here (cf_cl_gemm_fast_try then declines this path for good); CF_ERR_NOMEM, with nothing
 * enqueued, when its scratch (the packed operands: 2 bytes a value of the padded operands, the
 * split slices' partial products) cannot be allocated (that product then runs another way). */
int cf_cl_gemm_half_run(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d, int split);
/* Mark it unusable on this context (after a failed build), and the plans to be made again. */
void cf_cl_gemm_half_disable(cf_cl_ctx *ctx);
/* Free its programs (backend teardown). */
void cf_cl_gemm_half_release(cf_cl_ctx *ctx);

/* Public form for tests: C(M,N) = alpha op(A) op(B) + beta C [+ bias] on an OpenCL backend with
 * precision bf16 / fp16 on a matrix engine with the kernel (CF_ERR_UNSUPPORTED elsewhere), split
 * K slices (0 = the rule's); act 1 / 2 as cf_backend_opencl_gemm_fast_gelu (alpha 1, beta 0, ldc
 * N; X.buf NULL: act 0); colsum.buf non-NULL (ta only): colsum(M) += the sums over k of op(A). */
int cf_backend_opencl_gemm_half(cf_backend *be, int split, int ta, int tb, int M, int N, int K,
                                float alpha, cf_view A, int lda, cf_view B, int ldb, float beta,
                                cf_view C, int ldc, cf_view bias, cf_view X, int act,
                                cf_view colsum);

#endif
