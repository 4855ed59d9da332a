/* clformer: the register-blocked GPU GEMM (cl_kernels/gemm_fast.cl): block-size and split-K rule,
 * the dispatch hook that cl_gemm.c calls first for every product, and an entry point that runs a
 * chosen variant (tests, benchmarks). */
#ifndef CF_CL_GEMM_FAST_H
#define CF_CL_GEMM_FAST_H

#include "backend/backend.h"
#include "backend/opencl/cl_internal.h"

/* One variant of the kernel and how the product is split. */
typedef struct cf_cl_gemm_fast_choice {
    int rm, rn; /* outputs per work-item along m and n (4, 8 or 16; rm*rn at most 128; 16 in the
                 * fp32 form only): blocks of C are wg*rm x wg*rn */
    int bk;     /* K depth of one local-memory slice (8 or 16; 32 in the bf16 / fp16 tensor-core
                 * form, whose tiles are then packed); rm*bk and rn*bk must be >= 4*wg,
                 * and the tiles' two copies must fit 48 KiB (cf_cl_gemm_fast_local_bytes): wg 16
                 * with a 16 next to 8 or 16 takes bk 8 */
    int split;  /* K slices (1..64): > 1 writes partial products to scratch, then a second kernel
                 * adds them in order (deterministic) */
    int wg;     /* work-group side: 16 (256 work-items) or 8 (64) */
} cf_cl_gemm_fast_choice;

/* The most local memory a variant may use: 48 KiB, NVIDIA's limit per work-group (the device's
 * own limit is checked as well where the kernel is built). */
#define CF_CL_GEMM_FAST_MAX_LOCAL 49152

/* Is the choice one the kernel's fp32 form can be built for (rm, rn, bk, wg, split within the
 * ranges above, at most CF_CL_GEMM_FAST_MAX_LOCAL bytes of local memory)? */
int cf_cl_gemm_fast_choice_valid(const cf_cl_gemm_fast_choice *c);
/* The same for the form the kernel is built in: mma 0 the fp32 form (ROUND_IN included), 1..3 the
 * tensor-core forms (gemm_fast.cl's MMA_KIND: tf32, bf16, fp16), which take rm and rn 4 or 8
 * only. */
int cf_cl_gemm_fast_choice_valid_form(const cf_cl_gemm_fast_choice *c, int mma);
/* Is it a variant of some form (tuning files and the tuner's list, checked against the form that
 * runs when used)? */
int cf_cl_gemm_fast_choice_valid_any(const cf_cl_gemm_fast_choice *c);
/* The form this context builds the kernel in: its matrix engine's precision code (cl_matrix.h; 1
 * tf32, 2 bf16, 3 fp16, from the engine's file with its options), 0 = the fp32 form */
int cf_cl_gemm_fast_form(const cf_cl_ctx *ctx);
/* The valid values, for error messages: "rm, rn: 4, 8 or 16 ..." (mma: the tensor-core forms'). */
const char *cf_cl_gemm_fast_valid_text(int mma);

/* Bytes of local memory one work-group of the choice uses. */
size_t cf_cl_gemm_fast_local_bytes(const cf_cl_gemm_fast_choice *c);
/* The same for the tensor-core form when mma (precision tf32: 4 more floats of padding a row). */
size_t cf_cl_gemm_fast_local_bytes_mma(const cf_cl_gemm_fast_choice *c, int mma);

/* The built-in rule: the choice for a product of M x N outputs over K on a GPU with
 * compute_units multiprocessors and local_mem bytes of local memory per work-group (see the
 * comment in cl_gemm_fast.c for the cost model); wide: the 128 x 256 block (16 outputs a row per
 * work-item) is a candidate (cf_cl_gemm_fast_wide). Returns 0 (and a default in *out) when no
 * variant fits local_mem, else 1. */
int cf_cl_gemm_fast_rule(int M, int N, int K, int compute_units, size_t local_mem, int wide,
                         cf_cl_gemm_fast_choice *out);
/* The rule for the form the kernel is built in (mma as in cf_cl_gemm_fast_choice_valid_form) and
 * the product's transposes: cf_cl_gemm_fast_rule's choice, except that bf16 / fp16 on tensor
 * cores (mma 2, 3) take the packed tiles' 64 x 64 blocks with 32-deep slices (K from 256) for NT
 * products (a linear layer's forward) and for NN products (input gradients) with few 128 x 128
 * output blocks, where an H100 ran them up to 1.8x faster (the comment in cl_gemm_fast.c). */
int cf_cl_gemm_fast_rule_form(int M, int N, int K, int ta, int tb, int compute_units,
                              size_t local_mem, int wide, int mma, cf_cl_gemm_fast_choice *out);
/* Whether the rule may choose 16-wide register tiles here: the fp32 form (the tensor-core forms
 * take 4 and 8 only) on NVIDIA GPUs of compute capability 9.0 or later, where they were measured
 * (an H100; 128 accumulators a work-item: GPUs with smaller register files would spill them). */
int cf_cl_gemm_fast_wide(const cf_cl_ctx *ctx);

/* Would the dispatch use the fast kernel for this shape on this device, GEMM mode and tuner (the
 * plan of cl_plan.c, which cf_cl_gemm_fast_try follows)? 1 yes, 0 no. A tuning file entry
 * with "path": "fast" and a "fast_choice" (docs/tuning.md) takes the shape whatever its size,
 * where the kernel applies (GPUs, or CF_GEMM_FAST=1). */
int cf_cl_gemm_fast_wanted(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d);
/* Did a variant fail to build on this device (the kernel is then declined for good)? */
int cf_cl_gemm_fast_broken(const cf_cl_ctx *ctx);

/* The hook at the top of cf_cl_gemm: runs d with the fast kernel when cf_cl_gemm_fast_wanted says
 * so (with the tuning file's fast choice for the shape when it has one that fits the device, else
 * the rule's) and returns 1; returns 0 (nothing enqueued) when the product belongs to the other
 * paths, or when the fast kernel cannot be built on this device (one warning, then never again for
 * this backend); a negative status when an enqueue fails. */
int cf_cl_gemm_fast_try(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d);

/* Run d with the given choice (NULL = the rule's). d must be a plain product (outer = inner = 1,
 * causal 0). CF_ERR_INVALID for an invalid choice, CF_ERR_UNSUPPORTED when it does not fit the
 * device's local memory or work-group size. */
int cf_cl_gemm_fast_run(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d,
                        const cf_cl_gemm_fast_choice *choice);

/* Free the programs and the split-K scratch (backend teardown; the next use rebuilds). */
void cf_cl_gemm_fast_release(cf_cl_ctx *ctx);

/* Public form for tests and benchmarks: C(M,N) = alpha op(A) op(B) + beta C on an OpenCL backend
 * with the fast kernel, whatever the device and the GEMM mode; choice NULL = the rule's.
 * CF_ERR_UNSUPPORTED when be is not an OpenCL backend, CF_ERR_INVALID for an invalid choice or
 * views too short for the shape. */
int cf_backend_opencl_gemm_fast(cf_backend *be, const cf_cl_gemm_fast_choice *choice, int ta,
                                int tb, int M, int N, int K, float alpha, cf_view A, int lda,
                                cf_view B, int ldb, float beta, cf_view C, int ldc);
/* With the GELU epilogue (alpha 1, beta 0, ldc == N): act 1: C = product + bias, X = gelu(C);
 * act 2: C = product * gelu'(X) (no bias). For tests. */
int cf_backend_opencl_gemm_fast_gelu(cf_backend *be, const cf_cl_gemm_fast_choice *choice, int ta,
                                     int tb, int M, int N, int K, cf_view A, int lda, cf_view B,
                                     int ldb, cf_view C, cf_view bias, cf_view X, int act);
/* With A transposed (stored (K, M)): also colsum(M) += the sums over k of op(A) (a linear layer's
 * bias gradient from the pass of its weight gradient). For tests. */
int cf_backend_opencl_gemm_fast_colsum(cf_backend *be, const cf_cl_gemm_fast_choice *choice,
                                       int tb, int M, int N, int K, float alpha, cf_view A,
                                       int lda, cf_view B, int ldb, float beta, cf_view C, int ldc,
                                       cf_view colsum);
/* The same plus bias(N) added to every row of C as it is stored (bias.buf NULL: none). */
int cf_backend_opencl_gemm_fast_bias(cf_backend *be, const cf_cl_gemm_fast_choice *choice, int ta,
                                     int tb, int M, int N, int K, float alpha, cf_view A, int lda,
                                     cf_view B, int ldb, float beta, cf_view C, int ldc,
                                     cf_view bias);

#endif
