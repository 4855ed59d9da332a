/* clformer: private state and helpers shared by the files of the OpenCL backend. */
#ifndef CF_CL_INTERNAL_H
#define CF_CL_INTERNAL_H

#include <CL/cl.h>
#include <stddef.h>

#include "backend/backend.h"
#include "backend/opencl/cl_backend.h"

/* ---- devices ------------------------------------------------------------------------------ */

typedef struct cf_cl_device_info {
    int platform_index, device_index; /* opencl:P:D */
    cl_platform_id platform;
    cl_device_id device;
    char platform_name[256], platform_version[256];
    char name[256], vendor[256], version[256], driver[256], c_version[128];
    cl_device_type type;
    int unified; /* CL_DEVICE_HOST_UNIFIED_MEMORY: integrated GPU or CPU device */
    cl_uint compute_units, clock_mhz;
    cl_ulong global_mem, local_mem, max_alloc;
    size_t max_group; /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
    int fp16, subgroups;
    char extensions[8192]; /* CL_DEVICE_EXTENSIONS (cut at 8191 characters) */
    int nv_cc; /* NVIDIA compute capability as major*10 + minor (cl_nv_device_attribute_query),
                * 0 elsewhere */
    int usable;
    char reason[192]; /* why not usable */
} cf_cl_device_info;

/* All devices of all platforms; *count 0 (and CF_OK) when there is no platform. Free with free(). */
int cf_cl_enumerate(cf_cl_device_info **out, int *count, char *why, size_t why_len);
const char *cf_cl_type_name(const cf_cl_device_info *d);
/* enum cf_device_type of a device */
int cf_cl_device_type(const cf_cl_device_info *d);
const char *cf_cl_errstr(cl_int err);
/* Pick a device of list for spec ("auto", "opencl", "opencl:P:D" or a name fragment): its index,
 * or -1 with an error (or, for auto, the warning) printed when none (cl_device.c). */
int cf_cl_select_device(const char *spec, const cf_cl_device_info *list, int n,
                        const char *enum_why, int is_auto, int allow_cpu);

/* ---- kernels -------------------------------------------------------------------------------- */

enum cf_cl_program_id {
    CF_PROG_RESIDUAL,
    CF_PROG_REDUCE,
    CF_PROG_GELU,
    CF_PROG_ADAMW,
    CF_PROG_LAYERNORM,
    CF_PROG_CROSSENTROPY,
    CF_PROG_ATTENTION,
    CF_PROG_ENCODER,
    CF_PROG_ACT,
    CF_PROG_RMSNORM,
    CF_PROG_ROPE,
    CF_PROG_MUON,
    CF_PROG_COUNT
};

enum cf_cl_kernel_id {
    K_RESIDUAL_FORWARD,
    K_AXPY,
    K_FILL,
    K_COPY,
    K_TO_F16, /* the float <-> half storage conversions of cf_be_copy */
    K_FROM_F16,
    K_TO_BF16,
    K_FROM_BF16,
    K_ADD_BIAS,
    K_SUM_PARTIAL,
    K_SUM_FINAL,
    K_COLSUM_PARTIAL,
    K_COLSUM_FINAL,
    K_GELU_FORWARD,
    K_GELU_BACKWARD,
    K_ADAMW,
    K_LN_FORWARD,
    K_LN_BACKWARD,
    K_CE_FORWARD,
    K_CE_FUSED,
    K_CE_FORWARD_SOFTCAP, /* the same kernels with logit soft-capping compiled in */
    K_CE_FUSED_SOFTCAP,
    K_SOFTMAX_FORWARD,
    K_SOFTMAX_BACKWARD,
    K_ENC_FORWARD,
    K_ENC_RANK,
    K_ENC_WTE,
    K_RELU2_FORWARD,
    K_RELU2_BACKWARD,
    K_SILU_FORWARD,
    K_SILU_BACKWARD,
    K_SWIGLU_FORWARD,
    K_SWIGLU_BACKWARD,
    K_RMS_FORWARD,
    K_RMS_BACKWARD,
    K_ROPE,
    K_MUON_MOMENTUM,
    K_SCALE_RNORM,
    K_AXPBY,
    K_COUNT
};

#define CF_CL_MAX_GEMM_PROGRAMS 16
#define CF_CL_SHAPE_MEMO 512

enum cf_cl_gemm_mode { CF_GEMM_AUTO = 0, CF_GEMM_CLBLAST = 1, CF_GEMM_NATIVE = 2 };
enum cf_cl_scratch_slot {
    CF_SCRATCH_PARTIAL, /* reduce_sum partials, LayerNorm backward per-group sums */
    CF_SCRATCH_COLSUM,  /* column-sum chunk partials */
    CF_SCRATCH_SORT,    /* encoder backward: positions sorted by token, their tokens, run lengths */
    CF_SCRATCH_COPY,    /* staging for overlapping copies */
    CF_SCRATCH_SCORES,  /* decode_attention's score rows (cl_infer.c) */
    CF_SCRATCH_Q8_TILE, /* gemm_q8's dequantised weight tile (cl_infer.c) */
    CF_SCRATCH_HALF_A,  /* cl_gemm_half.c: op(A) in bf16 / fp16, padded */
    CF_SCRATCH_HALF_B,  /* op(B) the same */
    CF_SCRATCH_HALF_PART, /* its split-K partial products */
    CF_SCRATCH_HALF_CS, /* its column sums of op(A), chunk by chunk */
    CF_SCRATCH_COUNT
};

typedef struct {
    int tile, wpt, tk, vw, pad;
    cl_program program;
    cl_kernel k[4]; /* nn, nt, tn, tt */
} cf_cl_gemm_program;

typedef struct {
    int M, N, K, ta, tb;
    cf_cl_gemm_params p;
    int logged; /* path already logged for this shape: 0 none, 1 native, 2 clblast */
} cf_cl_shape_memo;

typedef struct cf_cl_ctx {
    cf_backend *be; /* the backend this context belongs to (for be->prof) */
    cf_cl_device_info dev;
    cl_context context;
    cl_command_queue queue;
    char name[600]; /* "opencl: <device> (<platform>)" */

    int quiet_init;       /* during `auto` creation: errors go to the debug log, one warning later */
    char last_error[512]; /* first error message seen while quiet_init */

    int ls;         /* work-group size of the reduction kernels (power of two, <= 256) */
    int max_groups; /* number of work-groups for grid-stride reductions */
    int use_map;    /* unified memory: map/unmap for transfers, ALLOC_HOST_PTR buffers */

    cl_program programs[CF_PROG_COUNT];
    int prog_ls[CF_PROG_COUNT]; /* LS each program was built with: its kernels' work-group size */
    cl_kernel kernels[K_COUNT];
    cf_cl_gemm_program gemm_progs[CF_CL_MAX_GEMM_PROGRAMS];
    int n_gemm_progs;
    cf_cl_shape_memo memo[CF_CL_SHAPE_MEMO];
    int n_memo;
    struct cf_cl_gemm_fast *gemm_fast; /* cl_gemm_fast.c state (programs, scratch); NULL = unused */
    struct cf_cl_gemm_half *gemm_half; /* cl_gemm_half.c state (programs); NULL = unused */
    struct cf_cl_attention *attention; /* cl_attention.c state (fused programs); NULL = unused */
    struct cf_cl_flash *flash;         /* cl_flash.c state (flash programs); NULL = unused */
    struct cf_cl_infer *infer;         /* cl_infer.c state (inference programs); NULL = unused */
    struct cf_cl_plan_state *plan;     /* cl_plan.c: memoised plans; NULL = none yet */
    int plan_gen; /* bumped when a setting the plans depend on changes (cf_cl_plan_invalidate) */

    int gemm_max_group; /* largest work-group the native GEMM can use (64 or 256) */
    int gemm_mode;      /* enum cf_cl_gemm_mode */
    int clblast_failed; /* CLBlast returned an error once: native from then on */
    int gemm_fast_mode;     /* cf_backend_options.gemm_fast: -1 auto, 0 never, 1 every product */
    int gemm_fast_verbose;  /* cf_backend_options.gemm_fast_verbose */
    int gemm_half_mode;     /* cf_backend_options.gemm_half: -1 auto, 0 never, 1 wherever the
                             * engine has the kernel (cl_gemm_half.c) */
    int gh_bn, gh_bk;       /* cf_backend_options.gemm_half_block: its blocks' columns (64, 128,
                             * 192, 256) and K slice (32, 16); 0 = the default (cl_gemm_half.c) */
    int mma_tf32;           /* cf_backend_options.tf32 on a device with TF32 mma.sync: the
                             * register-blocked kernel's tensor-core form takes every plain product */
    const struct cf_cl_matrix_engine *mx; /* the matrix engine of tf32 / bf16 / fp16 (cl_matrix.h),
                                           * NULL = none (fp32, or the portable form) */
    int mx_prec;            /* its precision (CF_CL_MX_*), 0 = none */
    int mx_emulate;         /* mx runs emulated (CF_MATRIX_ENGINE=emulate:<name>, tests) */
    char mx_name[96];       /* mx as CF_MATRIX_ENGINE names it ("emulate:<name>" when emulated) */
    int gemm_round;         /* cf_backend_options.bf16 (1) / .fp16 (2): every plain product takes
                             * the register-blocked kernel, its inputs rounded to bf16 / fp16 */
    int mma_half;           /* gemm_round on tensor cores (mma.sync with bf16 / fp16 inputs) */
    int gemm_tile;          /* cf_backend_options.gemm_tile: forced work-group side, 0 = none */
    int attention_mode;     /* cf_backend_options.attention parsed (cl_attention.c), -1 = unset */
    int flash_kernel;       /* cf_backend_options.flash_kernel parsed (cl_flash.c), CF_FLASH_K_* */
    size_t flash_scratch;   /* cf_backend_options.flash_scratch (0: the default budget) */
    char tuning_path[1024]; /* cf_backend_options.tuning ("" = look up configs/tuning/) */
    int tuning_off;         /* cf_backend_options.tuning was "off" / "none" */
    cf_cl_gemm_tuner_fn tuner;
    void *tuner_user;
    struct cf_tuning *tuning; /* the tuning file in use (cl_tuning.c), NULL = built-in rule */

    cl_mem scratch[CF_SCRATCH_COUNT];
    size_t scratch_bytes[CF_SCRATCH_COUNT];

    /* device-side profiling: while be->prof.enabled, every enqueue leaves an event here and
     * prof_collect sums their device times */
    cl_event *prof_events;
    int n_prof, cap_prof;
    int prof_host_timed; /* an enqueue without a usable event happened (CLBlast): host timing */

    char kernel_dir[1024]; /* read sources from here instead of the embedded copies ("" = embedded) */
    char cache_dir[1024];  /* "" = no program cache */
    int cache_writable;    /* 0 not yet checked, 1 yes, -1 no (binaries are then not fetched) */
    cf_cl_build_stats build;
} cf_cl_ctx;

/* Report an error: logged (or, while quiet_init, sent to the debug log and kept for the warning). */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void cf_cl_fail(cf_cl_ctx *ctx, const char *fmt, ...);

/* Check an OpenCL call: on failure report the call text, the error name, file and line. */
#define CF_CHECK_CL(ctx, call)                                                                     \
    do {                                                                                           \
        cl_int cf_cl_err_ = (call);                                                                \
        if (cf_cl_err_ != CL_SUCCESS) {                                                            \
            cf_cl_fail((ctx), "OpenCL call %s failed: %s (%s:%d)", #call, cf_cl_errstr(cf_cl_err_), \
                       __FILE__, __LINE__);                                                        \
            return CF_ERR_DEVICE;                                                                  \
        }                                                                                          \
    } while (0)

/* ---- programs (cl_program.c) ------------------------------------------------------------------ */

/* Source of cl_kernels/<file> (embedded copy, or read from ctx->kernel_dir). Caller frees. A file
 * "a.cl+b.cl" is the text of a.cl followed by b.cl's (flash_mma.cl after gemm_fast.cl's matrix
 * helpers). */
int cf_cl_kernel_source(cf_cl_ctx *ctx, const char *file, char **src, size_t *len);
/* The prelude put ahead of every program's source (cl_kernels/common.cl). */
#define CF_CL_PRELUDE "common.cl"
/* Build (or load from the cache) the program for cl_kernels/<file>, after the prelude, with the
 * given options. */
int cf_cl_build_program(cf_cl_ctx *ctx, const char *file, const char *options, cl_program *out);
/* cf_cl_build_program, then the n kernels names[i] of it into *kernels[i]; a kernel that cannot
 * be created is reported (file, options, name) and gives CF_ERR_BUILD. What was created stays in
 * *program and *kernels[i] for the caller to release, on failure too. */
int cf_cl_build_kernels(cf_cl_ctx *ctx, const char *file, const char *options, cl_program *program,
                        int n, const char *const names[], cl_kernel *const kernels[]);

/* Private memory (bytes) one work-group may keep on this device: on a CPU device a work-group runs
 * on one host thread, and drivers such as PoCL keep every work-item's live private values in arrays
 * on that thread's stack, so a large group of items with large private state overflows it (SIGSEGV
 * inside the work-group function). Half the thread stack (RLIMIT_STACK; 2 MiB when unlimited) on
 * CPU devices, SIZE_MAX on others (their driver sizes CL_KERNEL_WORK_GROUP_SIZE by registers). */
size_t cf_cl_group_private_budget(const cf_cl_device_info *dev);
/* Whether built kernel k can run work-groups of local[0] x .. x local[dims-1] work-items, each
 * holding about private_bytes of private state (the caller's estimate; the driver's
 * CL_KERNEL_PRIVATE_MEM_SIZE when larger), on this device: checks CL_KERNEL_WORK_GROUP_SIZE, the
 * device's maximum work-item sizes, CL_KERNEL_LOCAL_MEM_SIZE against CL_DEVICE_LOCAL_MEM_SIZE and
 * the group's private state against cf_cl_group_private_budget. 1 = fits; 0 = does not (why names
 * the limit); a negative status when the driver cannot be asked. */
int cf_cl_kernel_fits(cf_cl_ctx *ctx, cl_kernel k, int dims, const size_t *local,
                      size_t private_bytes, char *why, size_t why_len);

/* ---- program and kernel table (cl_kernel_table.c) ------------------------------------------------ */

/* Build every non-GEMM program with -DLS=ctx->ls; *max_ls receives the smallest per-kernel
 * work-group limit among the kernels that use LS-sized groups. */
int cf_cl_build_programs(cf_cl_ctx *ctx, size_t *max_ls);
void cf_cl_release_programs(cf_cl_ctx *ctx);
/* Work-group size of a kernel (enum cf_cl_kernel_id): the LS its program was built with. */
size_t cf_cl_kernel_ls(const cf_cl_ctx *ctx, int kid);
/* The kernel's function name in its cl_kernels/ file. */
const char *cf_cl_kernel_name(int kid);
/* Rebuild one program (enum cf_cl_program_id) with -DLS=ls and use ls-item work-groups for its
 * kernels from then on. On failure (build error, or a kernel that cannot run ls items per group on
 * this device) the previous program stays in use and the error is returned. */
int cf_cl_program_set_ls(cf_cl_ctx *ctx, int prog, int ls);

/* ---- launches, buffers, scratch, profiling (cl_runtime.c) ------------------------------------ */

enum { CF_ARG_MEM, CF_ARG_INT, CF_ARG_FLOAT, CF_ARG_ULONG, CF_ARG_LOCAL };
typedef struct {
    int kind;
    cl_mem m;
    cl_int i;
    cl_float f;
    cl_ulong u;
} cf_cl_arg;

#define ARG_MEM(x) ((cf_cl_arg){CF_ARG_MEM, (x), 0, 0.0f, 0})
#define ARG_INT(x) ((cf_cl_arg){CF_ARG_INT, NULL, (cl_int)(x), 0.0f, 0})
#define ARG_FLOAT(x) ((cf_cl_arg){CF_ARG_FLOAT, NULL, 0, (cl_float)(x), 0})
#define ARG_ULONG(x) ((cf_cl_arg){CF_ARG_ULONG, NULL, 0, 0.0f, (cl_ulong)(x)})
/* local memory of x bytes for a __local pointer argument */
#define ARG_LOCAL(x) ((cf_cl_arg){CF_ARG_LOCAL, NULL, 0, 0.0f, (cl_ulong)(x)})
#define CF_ARGS(...)                                                                               \
    (int)(sizeof((cf_cl_arg[]){__VA_ARGS__}) / sizeof(cf_cl_arg)), (cf_cl_arg[]) { __VA_ARGS__ }

/* Event slot for the next enqueue: NULL unless profiling is on; pass the result of
 * cf_cl_prof_keep after the call. */
static inline int cf_cl_profiling(const cf_cl_ctx *ctx) { return ctx->be && ctx->be->prof.enabled; }
void cf_cl_prof_keep(cf_cl_ctx *ctx, cl_event ev);

int cf_cl_launch(cf_cl_ctx *ctx, cl_kernel k, const char *name, int dims, const size_t *global,
                 const size_t *local, int nargs, const cf_cl_arg *args);
/* A scratch buffer of at least nbytes (grown on demand, kept for the backend's lifetime). */
int cf_cl_scratch(cf_cl_ctx *ctx, int slot, size_t nbytes, cl_mem *out);
/* Release the profiling events kept so far without reading them. */
void cf_cl_prof_drop(cf_cl_ctx *ctx);
/* A device buffer of nbytes (ALLOC_HOST_PTR on unified memory); CF_ERR_NOMEM with a message when
 * it exceeds the device's largest allocation or the allocation fails. */
int cf_cl_create_mem(cf_cl_ctx *ctx, size_t nbytes, cl_mem *out);
/* Global range of the 4-elements-per-item kernels (residual_fill, residual_forward, adamw_update)
 * over n elements. */
size_t cf_cl_quad_range(const cf_cl_ctx *ctx, int kid, size_t n);
/* Fill n floats of m from element off with value. */
int cf_cl_fill_mem(cf_cl_ctx *ctx, cl_mem m, size_t off, float value, size_t n);

/* ---- struct cf_backend_ops entries outside cl_ops.c ------------------------------------------- */

/* cl_ops.c holds the table; identity, buffers, transfers and profiling are in cl_runtime.c,
 * destroy and the queries in cl_backend.c. */
extern const struct cf_backend_ops cf_cl_ops;
const char *cf_cl_name(cf_backend *be);
void cf_cl_destroy(cf_backend *be);
int cf_cl_buffer_alloc(cf_backend *be, size_t nbytes, cf_buffer **out);
void cf_cl_buffer_free(cf_backend *be, cf_buffer *buf);
int cf_cl_upload(cf_backend *be, cf_view dst, const void *src, size_t nbytes);
int cf_cl_download(cf_backend *be, void *dst, cf_view src, size_t nbytes);
int cf_cl_copy(cf_backend *be, cf_view dst, cf_view src, size_t n);
int cf_cl_host_alloc(cf_backend *be, size_t nbytes, void **ptr, void **handle);
void cf_cl_host_free(cf_backend *be, void *ptr, void *handle);
int cf_cl_fill(cf_backend *be, cf_view dst, float value, size_t n);
int cf_cl_synchronize(cf_backend *be);
int cf_cl_prof_collect(cf_backend *be, double *device_us);
int cf_cl_info(cf_backend *be, cf_backend_info *out);
int cf_cl_peak(cf_backend *be, double seconds, double *gflops, const char **how);
int cf_cl_gemm_describe(cf_backend *be, int M, int N, int K, int ta, int tb, char *out,
                        size_t len);

static inline cl_mem cf_cl_mem(cf_view v) { return v.buf ? (cl_mem)v.buf->handle : NULL; }
static inline size_t cf_round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

/* ---- GEMM (cl_gemm.c) ------------------------------------------------------------------------- */

/* cf_backend_options.gemm_fast_verbose on an NVIDIA platform: the register-blocked GEMM and the
 * tensor-core flash kernels are built with -cl-nv-verbose and their compiler report printed
 * (cl_gemm_fast.c; elsewhere the option would be an invalid build option) */
int cf_cl_nv_verbose(const cf_cl_ctx *ctx);
/* The compiler's lines about entry points, registers and spills in program's build log, at info
 * level, each after "<what>: " */
void cf_cl_nv_report(cf_cl_ctx *ctx, cl_program program, const char *what);

typedef struct {
    int ta, tb, M, N, K;
    float alpha, beta;
    cl_mem A, B, C;
    size_t a_off, b_off, c_off; /* elements */
    int lda, ldb, ldc;
    /* batch z = zo * inner + zi for zo < outer, zi < inner; operand offset += zo*so + zi*si */
    int outer, inner;
    size_t a_so, a_si, b_so, b_si, c_so, c_si;
    int causal; /* see cl_kernels/gemm.cl; batched and causal products always run natively */
    /* plain products only: bias(N) at element bias_off of this buffer is added to every row of C
     * (NULL: none); the register-blocked kernel adds it as it stores C, other paths afterwards */
    cl_mem bias;
    size_t bias_off;
    /* plain products only, alpha 1, beta 0: act 1 also writes gelu(C) to act_x (layout of C);
     * act 2 multiplies the product by gelu'(act_x) (the pre-activation, layout of C) */
    int act;
    cl_mem act_x;
    size_t act_x_off;
    /* register-blocked kernel only, transposed A: colsum(M) at element colsum_off += the sums
     * over k of op(A) (NULL: none; cf_cl_gemm_fast_try declines the product otherwise) */
    cl_mem colsum;
    size_t colsum_off;
} cf_cl_gemm_desc;

/* The descriptor of one plain (unbatched) product on views. */
cf_cl_gemm_desc cf_cl_gemm_desc_plain(int ta, int tb, int M, int N, int K, float alpha, cf_view A,
                                      int lda, cf_view B, int ldb, float beta, cf_view C,
                                      int ldc);

int cf_cl_gemm(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d);
/* Products of at most CF_CL_GEMM_ROWS_MAX_M rows of A against B stored (N,K) (plain, no
 * activation epilogue): one work-group per output column, B's row read once (cl_infer.c).
 * 1 = done, 0 = declined (another path runs it), < 0 = error. */
#define CF_CL_GEMM_ROWS_MAX_M 8
int cf_cl_gemm_rows_try(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d);
/* Choose (and memoise, logging once per shape) the native kernel's parameters for a shape. */
int cf_cl_gemm_params_lookup(cf_cl_ctx *ctx, int M, int N, int K, int ta, int tb,
                             cf_cl_gemm_params *out);
/* Do these native parameters fit the device (work-group size, local memory, vw dividing tk and
 * tile*wpt)? And build (or find) their program: CF_ERR_UNSUPPORTED when they do not fit or a
 * kernel cannot run tile*tile items per group, CF_ERR_BUILD when it does not compile. For the
 * tuner, which measures candidates one by one (cf_cl_gemm_release frees the variants). */
int cf_cl_gemm_params_fit(cf_cl_ctx *ctx, const cf_cl_gemm_params *p);
int cf_cl_gemm_variant(cf_cl_ctx *ctx, const cf_cl_gemm_params *p);
/* Build the default 8x8 and 16x16 GEMM programs up front (part of backend creation). */
int cf_cl_gemm_prepare(cf_cl_ctx *ctx);
void cf_cl_gemm_release(cf_cl_ctx *ctx);
int cf_cl_have_clblast(void);

/* ---- fused attention (cl_attention.c) -------------------------------------------------------- */

/* Which attention path runs: auto (on GPUs the fused kernels wherever the shape fits: head size
 * up to 64, enough local memory and work-group size; elsewhere, and on CPU devices, the batched
 * GEMMs), fused (the fused kernels wherever the shape fits, on any device, with a warning for
 * each shape that does not), gemm (always the batched GEMMs around the softmax kernels). The
 * environment variable CF_ATTENTION sets it. */
enum cf_cl_attention_mode { CF_ATT_AUTO = 0, CF_ATT_FUSED = 1, CF_ATT_GEMM = 2 };
/* Set the mode: "auto", "fused" or "gemm" (CF_ERR_INVALID with a message otherwise). */
int cf_cl_attention_set_mode(cf_cl_ctx *ctx, const char *mode);
/* cl_peak.c: the device's peak fp32 rate (an FMA-chain kernel on the backend's own queue), and the
 * bytes of the backend's own scratch buffers (not counted in be->stats). */
int cf_cl_peak_gflops(cf_backend *be, double seconds, double *gflops);
/* The same for the context's matrix engine at its precision (tf32, bf16, fp16): the engine
 * file's gemm_fast_mma_peak; CF_ERR_UNSUPPORTED without an engine. */
int cf_cl_peak_engine_gflops(cf_backend *be, double seconds, double *gflops);
uint64_t cf_cl_scratch_bytes(cf_backend *be);
/* "auto", "fused", "gemm" (NULL or "" = auto) to the internal mode; CF_ERR_INVALID otherwise. */
int cf_cl_attention_parse(const char *s, int *mode);
/* Counters of attention ops (forward and backward each count one) run by each path. */
void cf_cl_attention_counts(cf_cl_ctx *ctx, long *fused, long *gemm);
/* Of the fused attention ops, those that ran on a multi-head build (-DATT_MHA, KVH == NH). */
long cf_cl_attention_fused_mha(cf_cl_ctx *ctx);
/* Run attention forward / backward (the contract of struct cf_backend_ops) with the fused kernels:
 * 1 when done, 0 when declined (the mode is gemm, or the shape does not fit this device: the caller
 * runs the GEMM path and counts it with cf_cl_attention_count_gemm), negative on an enqueue error.
 * The views are already checked. Heads [h0, h0 + nh) of the NH only (0, NH: all of them): the
 * views are the whole call's, except att, dpreatt (B, nh, T, T) for the range; a range narrower
 * than NH needs KVH == NH (CF_ERR_INVALID otherwise). */
int cf_cl_attention_fused_forward(cf_cl_ctx *ctx, cf_view out, cf_view att, cf_view qkv, int B,
                                  int T, int NH, int KVH, int hs, int h0, int nh);
int cf_cl_attention_fused_backward(cf_cl_ctx *ctx, cf_view dqkv, cf_view dpreatt, cf_view dout,
                                   cf_view qkv, cf_view att, int B, int T, int NH, int KVH,
                                   int hs, int h0, int nh);
void cf_cl_attention_count_gemm(cf_cl_ctx *ctx);
/* Whether the fused kernels run a call of this shape on this device: the plan takes them and a
 * variant builds and fits (building it if it is not yet built). */
int cf_cl_attention_fused_available(cf_cl_ctx *ctx, int NH, int KVH, int hs);
/* Free the fused programs (backend teardown). */
void cf_cl_attention_release(cf_cl_ctx *ctx);

/* ---- flash attention (cl_flash.c) ------------------------------------------------------------ */

/* The ops table's flash_forward / flash_backward (backend.h; views checked by the wrappers). */
int cf_cl_flash_forward(cf_backend *be, const cf_attn_desc *d, cf_view out, cf_view lse,
                        cf_view qkv, cf_view doc);
int cf_cl_flash_backward(cf_backend *be, const cf_attn_desc *d, cf_view dqkv, cf_view delta,
                         cf_view dout, cf_view out, cf_view lse, cf_view qkv, cf_view doc);
/* Which flash kernels run: auto (precision tf32/bf16/fp16 on a matrix engine whose row has
 * verified flash kernels: those, forward and backward; on GPUs the tiled forward and, where its scratch fits and the
 * call has no window or document mask, the matrix backward, else the tiled one; the rows kernels
 * on CPU devices or where tiled does not fit or build), tiled (flash_tiled.cl), rows
 * (flash_attention.cl), matrix (the forward as auto; the backward recomputes the probabilities
 * with the matrix attention ops in chunks of batch elements and runs their backward, where the
 * call has no mask, else as auto). The environment variable CF_FLASH_KERNEL sets it. */
enum cf_cl_flash_kernel {
    CF_FLASH_K_AUTO = 0,
    CF_FLASH_K_TILED = 1,
    CF_FLASH_K_ROWS = 2,
    CF_FLASH_K_MATRIX = 3,
    CF_FLASH_K_MMA = 4 /* forward and backward on the matrix engine (flash_mma.cl) even where its
                        * row's flash kernels are not verified, or emulated; an error where they
                        * cannot run (fp32, no engine, a head size they do not take) */
};
/* The matrix engine's flash kernels (flash_mma.cl), head size aside: do they run under this
 * context's precision, engine and flash kernel choice (auto: where the engine row's flash kernels
 * are verified and not emulated; mma: always)? The head sizes they take are multiples of the
 * returned k (8 in tf32, 16 in bf16 / fp16) up to 128; 0 = they do not run. */
int cf_cl_flash_mma_engine(const cf_cl_ctx *ctx);
/* "auto", "tiled", "rows", "matrix", "mma" (NULL or "" = auto) to the enum; CF_ERR_INVALID
 * otherwise. */
int cf_cl_flash_kernel_parse(const char *s, int *kind);
/* Free the flash programs (backend teardown). */
void cf_cl_flash_release(cf_cl_ctx *ctx);
/* Free the matrix backward's scratch buffers (backend teardown, before the context goes). */
void cf_cl_flash_free_scratch(cf_backend *be);
/* Bytes of those buffers now (cf_backend_info.flash_scratch_bytes), and of them what the last
 * flash backward used (.flash_scratch_last; 0 when it ran the tiled or rows kernels). */
uint64_t cf_cl_flash_scratch_bytes(const cf_cl_ctx *ctx);
uint64_t cf_cl_flash_scratch_last(const cf_cl_ctx *ctx);
/* ---- inference ops (cl_infer.c), signatures as in struct cf_backend_ops ---------------------- */
int cf_cl_kv_append(cf_backend *be, cf_view qkv, cf_view kc, cf_view vc, cf_view cs, cf_view pos,
                    int B, int Tq, int NH, int KVH, int hs, int S);
int cf_cl_decode_attention(cf_backend *be, cf_view out, cf_view qkv, cf_view kc, cf_view vc,
                           cf_view pos, cf_view lo, int B, int Tq, int NH, int KVH, int hs, int S);
int cf_cl_gemm_q8(cf_backend *be, int M, int N, int K, cf_view A, int lda, cf_view W8,
                  cf_view scale, cf_view bias, cf_view C, int ldc);
int cf_cl_embed_q8(cf_backend *be, cf_view out, cf_view ids, cf_view W8, cf_view scale, int N,
                   int C, int V, int accumulate);
void cf_cl_infer_release(cf_cl_ctx *ctx);

/* ---- tuning files (cl_tuning.c) --------------------------------------------------------------- */

/* At creation: find the tuning file for this device (CF_TUNING, else configs/tuning/<device>.json
 * under the working directory, then under the source tree), check that it was measured on this
 * platform, device and driver, and install its GEMM parameters and work-group sizes. A missing,
 * stale or corrupt file gives a warning (missing: only when named by CF_TUNING) and leaves the
 * built-in rule; it never fails the creation. */
void cf_cl_tuning_attach(cf_cl_ctx *ctx);
void cf_cl_tuning_detach(cf_cl_ctx *ctx);
/* The GEMM tuner hook a tuning file installs (user: its struct cf_tuning): the entry's tiled
 * parameters and path; 0 for no entry or a "fast" entry (the plan then decides). */
int cf_cl_tuning_hook(void *user, const char *device, int M, int N, int K, int ta, int tb,
                      cf_cl_gemm_params *out);

#endif
