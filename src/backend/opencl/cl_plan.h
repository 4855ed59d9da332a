/* clformer: the OpenCL backend's planning layer: for each GEMM shape, which path runs it (the
 * register-blocked kernel of cl_gemm_fast.c, CLBlast, or the tiled kernel of cl_kernels/gemm.cl)
 * with which kernel variant and tile, and for each attention shape whether the fused kernels
 * (cl_attention.c) or the batched GEMMs run it. The rules take a device description (no device
 * needed: tests call them directly); the backend asks through cf_cl_plan_gemm /
 * cf_cl_plan_attention, which memoise the decision per shape and log it once at debug level
 * ("plan: gemm 4096 16000 384 NT -> fast 128x128 bk8 split1 (rule)"). */
#ifndef CF_CL_PLAN_H
#define CF_CL_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "backend/opencl/cl_gemm_fast.h"
#include "backend/opencl/cl_internal.h"

struct cf_tuning;

/* What the rules need to know about a device and the backend's current settings. */
typedef struct cf_cl_plan_device {
    const char *name;      /* device name (passed to the tuner hook) */
    int gpu;               /* CL_DEVICE_TYPE_GPU */
    int compute_units;     /* CL_DEVICE_MAX_COMPUTE_UNITS */
    size_t local_mem;      /* CL_DEVICE_LOCAL_MEM_SIZE */
    size_t max_group;      /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
    int gemm_max_group;    /* the tiled kernel's largest group after start-up (64 or max_group) */
    size_t private_budget; /* cf_cl_group_private_budget: SIZE_MAX = no limit */
    int have_clblast;      /* built with CLBlast */
    int gemm_mode;         /* enum cf_cl_gemm_mode */
    int clblast_failed;    /* CLBlast failed once: never again */
    int fast_mode;         /* cf_backend_options.gemm_fast: -1 auto, 0 never, 1 every product */
    int fast_broken;       /* the register-blocked kernel did not build here: never */
    int mma_tf32;          /* its tensor-core form is on (precision tf32): every plain product */
    int gemm_round;        /* precision bf16 (1) / fp16 (2): every plain product, inputs rounded */
    int fast_mma;          /* the register-blocked kernel's form: gemm_fast.cl's MMA_KIND (1 tf32,
                            * 2 bf16, 3 fp16 on tensor cores), 0 = the fp32 form */
    int fast_wide;         /* the rule may choose 16-wide tiles (cf_cl_gemm_fast_wide) */
    int half_mode;         /* the GEMM on half operands (cl_gemm_half.h) may take the products
                            * the register-blocked kernel would: 0 no (not bf16 / fp16, no such
                            * kernel for the engine, CF_GEMM_HALF=0, not verified under auto, or
                            * it failed here), 1 every one, 2 those of at least 128 x 128 outputs
                            * over K >= 128 */
    cf_cl_gemm_tuner_fn tuner; /* the GEMM tuner hook (a tuning file's or another), NULL = none */
    void *tuner_user;
    /* the tuning file, while it is the tuner hook (its "fast" entries choose the register-blocked
     * kernel's variant); NULL otherwise */
    const struct cf_tuning *tuning;
    int attention_mode; /* enum cf_cl_attention_mode */
} cf_cl_plan_device;

/* The description of a backend's device and settings now. */
void cf_cl_plan_device_of(cf_cl_ctx *ctx, cf_cl_plan_device *out);

/* ---- GEMM ------------------------------------------------------------------------------------- */

/* CF_PLAN_HALF: the GEMM on half operands, with the register-blocked kernel's choice (fast) as its
 * fallback where it cannot run (its scratch does not fit, or it fails to build) */
enum cf_cl_gemm_path { CF_PLAN_NATIVE = 0, CF_PLAN_CLBLAST = 1, CF_PLAN_FAST = 2, CF_PLAN_HALF = 3 };
const char *cf_cl_plan_path_name(int path); /* "native", "clblast", "fast", "half" */
/* Does the GEMM on half operands take a product of this shape that the register-blocked kernel
 * would (half_mode as cf_cl_plan_device's)? */
int cf_cl_plan_half_takes(int half_mode, int M, int N, int K);
/* The precision the device's plain products run in: "fp32", "tf32" (tensor cores), "bf16",
 * "fp16" (the names of tuning entries) */
const char *cf_cl_plan_precision(const cf_cl_plan_device *dev);

typedef struct cf_cl_gemm_plan {
    int path;                    /* enum cf_cl_gemm_path */
    cf_cl_gemm_params native;    /* the tiled kernel's parameters (path native, and the fallback
                                  * when another path fails at run time) */
    cf_cl_gemm_fast_choice fast; /* path fast (and half, as its fallback): variant and split */
    const char *fast_source;     /* path fast / half: "from the tuning file", "from the tuning file, same
                                  * bucket", or NULL for the built-in rule */
} cf_cl_gemm_plan;

/* Bytes of local memory and (estimated) private state per work-item of the tiled kernel. */
size_t cf_cl_gemm_local_bytes(const cf_cl_gemm_params *p);
size_t cf_cl_gemm_private_bytes(const cf_cl_gemm_params *p);
/* Do these tiled-kernel parameters fit the device (work-group size, local memory, private state
 * budget, vw dividing tk and tile*wpt)? 1 yes, 0 no. */
int cf_cl_plan_params_fit(const cf_cl_plan_device *dev, const cf_cl_gemm_params *p);
/* The tiled kernel's parameters for a shape: the tuner hook's when it answers with parameters that
 * fit, else the built-in rule (cf_cl_gemm_rule; WPT 4 when the rule's do not fit local memory).
 * A tuner answer that does not fit is described in warn (warn[0] = 0 otherwise). */
void cf_cl_plan_native_params(const cf_cl_plan_device *dev, int M, int N, int K, int ta, int tb,
                              cf_cl_gemm_params *out, char *warn, size_t warn_len);
/* The tuning file's register-blocked choice for a shape (its exact entry, else the nearest of the
 * bucket) when that entry says "path": "fast" with a "fast_choice" that is valid and fits the
 * device: 1, *out and *exact. 0 otherwise; why (may be NULL) says why a recorded choice was not
 * taken. */
int cf_cl_plan_tuned_fast(const cf_cl_plan_device *dev, int M, int N, int K, int ta, int tb,
                          cf_cl_gemm_fast_choice *out, int *exact, char *why, size_t why_len);
/* The whole decision for a product of this shape, from scratch (calls the tuner hook): batch is
 * outer * inner of cf_cl_gemm_desc, causal its flag. No logging. */
void cf_cl_plan_gemm_rule(const cf_cl_plan_device *dev, int M, int N, int K, int ta, int tb,
                          int batch, int causal, cf_cl_gemm_plan *out);

/* The backend's plan for a product: memoised per shape (the tiled parameters in ctx->memo, the
 * tuning file's fast choice and the path in the plan state), recomputed after a setting changes
 * (cf_cl_plan_invalidate), logged once per shape and path. */
int cf_cl_plan_gemm(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d, cf_cl_gemm_plan *out);
/* A setting the plans depend on changed (GEMM mode, fast mode, tuner, a path that failed). */
void cf_cl_plan_invalidate(cf_cl_ctx *ctx);
void cf_cl_plan_release(cf_cl_ctx *ctx);

/* ---- attention -------------------------------------------------------------------------------- */

/* Largest head size of the fused kernels (see cl_attention.c). */
#define CF_CL_ATT_MAX_HS 64

typedef struct cf_cl_attention_plan {
    int fused;       /* 1: the fused kernels with one of ty[] (tried in order), 0: batched GEMMs */
    int hs;          /* head size */
    int n_ty, ty[2]; /* work-group heights that fit (groups of 16 x ty items, blocks of 4 ty rows) */
    const char *why; /* fused 0: why not */
} cf_cl_attention_plan;

/* Local memory one work-group of the fused kernels uses for head size hs and height ty. */
size_t cf_cl_attention_local_bytes(int hs, int ty);
/* The rule: mode (enum cf_cl_attention_mode) gemm: the GEMMs; head sizes above 64 (or C not a
 * multiple of NH): the GEMMs; auto on a device that is not a GPU: the GEMMs; else the fused
 * kernels with groups of 256 (ty 16), then 128 (ty 8), those that fit the device's work-group
 * limit and local memory (none: the GEMMs). */
void cf_cl_plan_attention_rule(const cf_cl_plan_device *dev, int mode, int C, int NH,
                               cf_cl_attention_plan *out);
/* The backend's plan for an attention shape in the given mode (memoised, logged once). */
void cf_cl_plan_attention(cf_cl_ctx *ctx, int mode, int C, int NH, cf_cl_attention_plan *out);

/* ---- the flash backward through the matrix attention ops (cl_flash.c) ------------------------ */

/* How the matrix backward splits a call: chunks of nb batch elements, each in ranges of nh heads
 * (nh < NH only with nb = 1), over parts (T, T) matrices per head. On the fused kernels
 * (cl_kernels/attention.cl, run directly) those are the probabilities and the pre-softmax
 * gradient; elsewhere (the batched GEMMs of attention_forward / attention_backward) also the
 * probabilities' gradient, and whole batch elements only. Head ranges need a multi-head call
 * (cf_cl_attention_fused_forward), so NH == KVH. fits: one chunk of the smallest kind fits the
 * budget. */
typedef struct cf_cl_flash_split {
    int fused, parts, fits;
    size_t nb, nh;
} cf_cl_flash_split;

/* Whether the matrix backward is considered for a call at all: flash_kernel (enum
 * cf_cl_flash_kernel) matrix, or auto on a GPU where its scratch has not failed to allocate; and
 * only without a document mask or a window narrower than T (the matrix ops have neither). */
int cf_cl_plan_flash_matrix_considered(int flash_kernel, int gpu, int failed,
                                       const cf_attn_desc *d, int has_doc);
/* The split of a call d (fused: a variant of the fused kernels builds and fits here) within
 * budget bytes of scratch (0: 1/24 of global_mem), the parts within the largest allocation less
 * the output copy (B*T*NH*hs floats, in the same buffer); returns whether it runs: always when
 * named (CF_FLASH_KERNEL=matrix; at least one batch element, or one head of one, per chunk), under
 * auto on the fused kernels where a chunk fits, in head ranges of at least 4 heads or all. */
int cf_cl_plan_flash_matrix_split(const cf_attn_desc *d, int named, int fused, size_t budget,
                                  uint64_t global_mem, uint64_t max_alloc, cf_cl_flash_split *m);

#endif
