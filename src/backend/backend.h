/* clformer: the backend interface. Every device (the C CPU backend, OpenCL devices) fills one
 * static const struct cf_backend_ops; src/model/ calls only the cf_be_* wrappers below.
 *
 * Memory model: a backend owns buffers the host cannot touch directly; data crosses only through
 * upload/download. Tensors are typed views = (buffer, byte offset, dtype); float tensors are f32,
 * token ids and targets i32. All ops are row-major and asynchronous with respect to the host: only
 * download and synchronize are ordering points.
 *
 * Argument checks live in the cf_be_* wrappers only (backend.c): before an op reaches a backend,
 * every view it requires has a buffer, has the dtype the op takes (f32 for float tensors, i32 for
 * token ids and targets), an offset that is a multiple of its element size, and the extent the
 * op's shape arguments say it needs. Backends trust their arguments and do arithmetic only; a
 * backend function called directly, not through a wrapper, gets no checks.
 *
 * Gradient convention: every *_backward ACCUMULATES (+=) into its parameter-gradient
 * and input-gradient outputs; the model zeroes gradient buffers with fill() when it needs to.
 * Exceptions, which ASSIGN their input gradient: act_backward and swiglu_backward (their only
 * consumer is the fc layer's backward, so accumulating would only cost a zero-fill and a read per
 * step), attention_backward and flash_backward (dqkv), and rmsnorm_backward when asked to (accumulate == 0). */
#ifndef CF_BACKEND_H
#define CF_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "clformer/common.h"

typedef struct cf_backend cf_backend;
/* A device buffer. Backends allocate it and fill the fields they use. */
typedef struct cf_buffer {
    size_t nbytes; /* size as allocated */
    void *host;    /* CPU backend: the memory; OpenCL: NULL (or a mapping on unified memory) */
    void *handle;  /* OpenCL: the cl_mem */
} cf_buffer;

/* Element types a view can hold. CF_F32 (float tensors) and CF_I32 (token ids, targets, cache
 * positions) are used by most ops, CF_I8 by the int8 weights of gemm_q8; CF_BF16 and CF_F16 are
 * for the reduced-precision work. */
enum cf_dtype { CF_F32 = 0, CF_BF16 = 1, CF_F16 = 2, CF_I32 = 3, CF_I8 = 4 };

/* bytes per element: 4 (f32, i32), 2 (bf16, f16) or 1 (i8); 0 for a value outside the enum */
static inline size_t cf_dtype_size(enum cf_dtype t) {
    switch (t) {
    case CF_F32:
    case CF_I32: return 4;
    case CF_BF16:
    case CF_F16: return 2;
    case CF_I8: return 1;
    }
    return 0;
}
/* "f32", "bf16", "f16", "i32", "i8" ("?" outside the enum) */
const char *cf_dtype_name(enum cf_dtype t);

/* A tensor: a typed window into a buffer starting off BYTES in. The extent is not stored: each op
 * states what it needs from its shape arguments, and the cf_be_* wrappers check it against
 * buf->nbytes before any backend sees the view. A zero view ({0}: NULL buffer) stands for an
 * optional argument left out. */
typedef struct {
    cf_buffer *buf;
    size_t off; /* in bytes from the start of buf */
    enum cf_dtype dtype;
} cf_view;

/* A view of dtype t starting at element elem of buf (elements of t, so byte offset elem*size). */
static inline cf_view cf_view_typed(cf_buffer *buf, enum cf_dtype t, size_t elem) {
    cf_view v = {buf, elem * cf_dtype_size(t), t};
    return v;
}
static inline cf_view cf_view_f32(cf_buffer *buf, size_t elem) {
    return cf_view_typed(buf, CF_F32, elem);
}
static inline cf_view cf_view_i32(cf_buffer *buf, size_t elem) {
    return cf_view_typed(buf, CF_I32, elem);
}
/* v advanced by n elements of its own dtype */
static inline cf_view cf_view_add(cf_view v, size_t n) {
    v.off += n * cf_dtype_size(v.dtype);
    return v;
}
/* The offset in elements of the view's dtype (what the kernels take); the wrappers have checked
 * that off is a multiple of the element size. */
static inline size_t cf_view_elem_off(cf_view v) { return v.off / cf_dtype_size(v.dtype); }
/* Host pointers of a view whose buffer has host memory (the CPU backend). */
static inline float *cf_view_ptr_f32(cf_view v) {
    return (float *)(void *)((char *)v.buf->host + v.off);
}
static inline int32_t *cf_view_ptr_i32(cf_view v) {
    return (int32_t *)(void *)((char *)v.buf->host + v.off);
}
#define CF_VIEW_NULL ((cf_view){NULL, 0, CF_F32})

/* Counters kept by the generic wrappers for every backend. */
typedef struct {
    uint64_t h2d_bytes, d2h_bytes; /* bytes uploaded / downloaded since creation */
    uint64_t allocs, frees;        /* buffer allocations since creation */
    uint64_t bytes_allocated;      /* currently allocated */
    uint64_t peak_bytes_allocated; /* high-water mark */
    uint64_t kernel_launches;      /* ops dispatched */
} cf_backend_stats;

/* Version of struct cf_backend_ops. A backend sets .api_version to the value it was written for;
 * cf_backend_create refuses one whose version differs (a table laid out for another version would
 * call the wrong slots). Raise it whenever a slot is added, removed or changes its meaning. */
#define CF_BACKEND_API_VERSION 5

/* What a backend is and can do, for generic code (bench, sweep, peak, CLI) that must not switch on
 * the backend's type. Filled by cf_be_info. */
enum cf_device_type {
    CF_DEVICE_CPU = 0,           /* a CPU: the C backend, or an OpenCL CPU device (PoCL) */
    CF_DEVICE_GPU = 1,           /* a discrete GPU */
    CF_DEVICE_INTEGRATED_GPU = 2,/* a GPU sharing the host's memory */
    CF_DEVICE_ACCELERATOR = 3,   /* anything else */
};
/* GEMM paths a backend has (bits of cf_backend_info.gemm_paths); select one with
 * cf_backend_options.gemm (OpenCL) or .cpu_gemm (C backend). */
enum {
    CF_GEMM_PATH_NATIVE = 1u << 0,  /* the backend's own kernel ("native") */
    CF_GEMM_PATH_BLAS = 1u << 1,    /* a host CBLAS ("blas") */
    CF_GEMM_PATH_CLBLAST = 1u << 2, /* CLBlast ("clblast") */
    CF_GEMM_PATH_FAST = 1u << 3,    /* the register-blocked kernel (cf_backend_options.gemm_fast) */
    CF_GEMM_PATH_TILED = 1u << 4,   /* the native kernel is a tiled one whose work-group side
                                     * cf_backend_options.gemm_tile can force (8 or 16) */
};
typedef struct cf_backend_info {
    const char *kind;      /* registry name of the backend: "cpu", "opencl" (static string) */
    int device_type;       /* enum cf_device_type */
    int host_threads;      /* 1: ops run on the host's threads as they are called (the C backend:
                            * the host's peak is the device's); 0: queued to a device */
    char device[256];      /* device name */
    char vendor[256];
    char platform[256];    /* OpenCL platform; "" for the C backend */
    char driver[256];      /* driver version; "" where none */
    int compute_units;
    uint64_t global_mem;   /* bytes; 0 = unknown */
    int unified_memory;    /* the device shares the host's memory */
    size_t max_alloc;      /* largest single buffer in bytes, 0 = no limit (= be->max_alloc) */
    int device_profiling;  /* per-op times come from the device (prof_collect), not host clocks */
    unsigned gemm_paths;   /* CF_GEMM_PATH_* bits */
    char gemm[64];         /* the GEMM path in use ("native:avx2-6x16", "blas", "clblast", ...) */
    uint64_t scratch_bytes;/* the backend's own scratch buffers (not counted in be->stats) */
    uint64_t flash_scratch_bytes; /* (T,T) scratch the flash backward holds so far (OpenCL's
                                   * matrix backward; counted in be->stats); 0 where none */
    uint64_t flash_scratch_last;  /* of it, what the last flash backward call used (0: none) */
    long attention_fused;  /* attention ops run so far on fused kernels, and on batched GEMMs */
    long attention_gemm;   /* (the OpenCL backend's two paths; 0 where a backend has one path) */
} cf_backend_info;

/* Options a backend receives at creation (cf_backend_create). Library code never reads the
 * environment: the CLI reads it once (cf_cli_backend_options_from_env, src/cli/) and fills this.
 * Strings are borrowed for the duration of the create call only; NULL means the default. */
typedef struct cf_backend_options {
    const char *gemm;       /* OpenCL GEMM path: "auto" (CLBlast when compiled in, else native),
                             * "clblast", "native" (env CF_GEMM, --gemm) */
    const char *cpu_bf16;   /* C backend, precision bf16: "avx512bf16" or "amx" forces that
                             * kernel; NULL / "auto": AMX where the CPU has it (env
                             * CF_CPU_GEMM_BF16) */
    const char *cpu_gemm;   /* C backend GEMM: "auto", "native", "native:<kernel>", "blas" (env
                             * CF_CPU_GEMM, --gemm) */
    const char *gemm_fast;  /* OpenCL register-blocked GEMM: "auto" (GPUs, large products),
                             * "1"/"on" every plain product, "0"/"off" never (env CF_GEMM_FAST) */
    const char *gemm_half; /* OpenCL precision bf16 / fp16 on a matrix engine: the GEMM on half
                             * operands (cl_gemm_half.c): "auto" (where the engine's row says it
                             * was verified, for products of 128 x 128 outputs and more), "1"/"on"
                             * every plain product (an unverified or emulated engine too), "0"/"off"
                             * never (env CF_GEMM_HALF) */
    const char *gemm_half_block; /* that GEMM's block shape, "<columns>x<K slice>": "128x32"
                                  * (NULL: the default), "64x32", "192x32" or "256x16", build
                                  * variants of cl_kernels/gemm_half.cl for measurement (env
                                  * CF_GEMM_HALF_BLOCK) */
    int gemm_fast_verbose;  /* NVIDIA: print the compiler's report of the fast kernel and of
                             * the tensor-core flash kernels (env CF_GEMM_FAST_VERBOSE) */
    int gemm_tile;          /* OpenCL native GEMM: force 8x8 or 16x16 work-groups (the GEMM sweep);
                             * 0 = the rule or the tuning file */
    const char *tuning;     /* OpenCL tuning file; NULL = look in configs/tuning/ for the device,
                             * "off" = none (env CF_TUNING, --tuning) */
    const char *kernel_dir; /* read cl_kernels/ sources from this directory instead of the embedded
                             * copies (env CF_KERNEL_DIR) */
    int kernels_from_disk;  /* read them from the source tree's cl_kernels/ (env
                             * CF_KERNEL_SOURCE=dir); kernel_dir wins when both are set */
    const char *cache_dir;  /* OpenCL program binary cache; NULL or "" = no cache (the CLI resolves
                             * CF_CACHE_DIR, XDG_CACHE_HOME, HOME) */
    const char *attention;  /* OpenCL attention path: "auto", "fused", "gemm" (env CF_ATTENTION) */
    const char *flash_kernel; /* OpenCL flash attention kernels: "auto" (in tf32 / bf16 / fp16
                               * the matrix engine's where a verified engine has them and the
                               * head size suits them, else tiled on GPUs where they fit and
                               * build, else rows), "tiled" (register-tiled), "rows" (one
                               * work-item per row, the first version), "matrix" (the backward
                               * through the matrix attention ops over (T,T) scratch, batch
                               * element by batch element, for calls without masks), "mma" (on
                               * the matrix engine's tensor cores: flash_mma.cl)
                               * (env CF_FLASH_KERNEL) */
    size_t flash_scratch;   /* bytes of (T,T) scratch the matrix flash backward may hold at once
                             * (a chunk of one batch element, or of one head, always runs); 0 =
                             * the default, 1/24 of the device's memory (env CF_FLASH_SCRATCH,
                             * bytes) */
    int map;                /* transfers on unified memory: -1 auto (map/unmap), 0 copy (env
                             * CF_CL_MAP=0) */
    int auto_cpu_devices;   /* "auto" may choose an OpenCL CPU device (env CF_OPENCL_AUTO_CPU=1) */
    int auto_first;         /* "auto" with a config takes the first usable GPU, else the CPU, as
                             * "auto:first" does, instead of timing a few steps on each device
                             * (env CF_AUTO_MEASURE=0; backend/verify.h) */
    int verbose;            /* be->verbose */
    int tf32;               /* precision tf32 (the config's `precision`): GEMMs may round their
                             * inputs to TF32 on a matrix engine (OpenCL on NVIDIA compute
                             * capability 8.0 and later); elsewhere fp32 (said once) */
    int bf16;               /* precision bf16: GEMMs round their inputs to bf16 and accumulate in
                             * fp32, storage stays fp32 (the CPU backend with AVX512-BF16,
                             * elsewhere on the CPU fp32, said once; OpenCL: on NVIDIA tensor
                             * cores, elsewhere rounded in the kernel; docs/precision.md) */
    const char *matrix_engine; /* OpenCL: the matrix engine for tf32/bf16/fp16 by name, "off" for
                                * none; NULL = the first verified one that applies (env
                                * CF_MATRIX_ENGINE; docs/opencl.md) */
    int fp16;               /* precision fp16: GEMMs round their inputs to IEEE half and accumulate
                             * in fp32, storage stays fp32 (the CPU backend: F16C where the CPU
                             * has it, else scalar rounding; OpenCL as bf16). The trainer adds
                             * dynamic loss scaling (docs/precision.md) */
} cf_backend_options;

/* Today's defaults: every path "auto", tuning files looked up, embedded kernels, no program cache,
 * map on unified memory, auto takes GPUs only, not verbose. */
cf_backend_options cf_backend_options_default(void);
/* Set the options a config's precision (enum cf_precision) gives a backend: tf32, bf16, fp16. */
void cf_backend_options_set_precision(cf_backend_options *o, int precision);

/* Elementwise activations of act_forward / act_backward:
 *   GELU   tanh approximation (GPT-2): 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3)))
 *   RELU2  max(x,0)^2, derivative 2 max(x,0)
 *   SILU   x * sigmoid(x) */
enum cf_act { CF_ACT_GELU = 0, CF_ACT_RELU2 = 1, CF_ACT_SILU = 2, CF_ACT_COUNT };
/* "gelu", "relu2", "silu" ("?" outside the enum) */
const char *cf_act_name(enum cf_act act);

/* The shape and mask of a flash attention call (flash_forward / flash_backward). Query i of a
 * sequence sees key j when
 *     lo(i) <= j <= i,   lo(i) = max(0, i - window + 1 when window > 0, doc[b, i] when doc is given)
 * window 0 is full causal attention; window W > 0 keeps the last W keys (i - W < j <= i). doc, an
 * optional (B,T) i32 view, holds for each token the position where its document starts (doc[b, i]
 * <= i, non-decreasing along a row): a token attends only inside its own document. The loader's
 * cf_doc_starts (src/data/dataset.h) builds it from the end-of-text token, which belongs to the
 * document it closes. Every query sees at least itself, so no row is empty. */
typedef struct cf_attn_desc {
    int B, T;   /* batch, sequence length */
    int NH;     /* query heads */
    int KVH;    /* key/value heads; divides NH, query head h reads kv head h / (NH / KVH) */
    int hs;     /* head size */
    int window; /* 0: full causal; W >= 1: i - W < j <= i */
} cf_attn_desc;

struct cf_backend_ops {
    int api_version; /* CF_BACKEND_API_VERSION */

    /* identity and lifetime */
    const char *(*name)(cf_backend *be); /* e.g. "cpu" or "opencl: NVIDIA H100 (NVIDIA CUDA)" */
    void (*destroy)(cf_backend *be);

    /* buffers */
    int (*buffer_alloc)(cf_backend *be, size_t nbytes, cf_buffer **out);
    void (*buffer_free)(cf_backend *be, cf_buffer *buf);
    int (*upload)(cf_backend *be, cf_view dst, const void *src, size_t nbytes);
    int (*download)(cf_backend *be, void *dst, cf_view src, size_t nbytes); /* blocking */
    /* n elements; f32 to f32 (overlap allowed), or a conversion between f32 and bf16 / f16 (round
     * to nearest even; NaN stays NaN, overflow gives +-Inf, subnormals kept: io/half.h's rules) */
    int (*copy)(cf_backend *be, cf_view dst, cf_view src, size_t n);
    int (*fill)(cf_backend *be, cf_view dst, float value, size_t n);        /* n floats */
    int (*synchronize)(cf_backend *be);

    /* C(M,N) = alpha * op(A) * op(B) + beta * C, row-major, op(X) = X or X^T.
     * A is (M,K) or, transposed, stored (K,M); B is (K,N) or stored (N,K). lda/ldb/ldc are row
     * strides in elements. */
    int (*gemm)(cf_backend *be, int trans_a, int trans_b, int M, int N, int K, float alpha,
                cf_view A, int lda, cf_view B, int ldb, float beta, cf_view C, int ldc);
    /* Optional (NULL: gemm, then add_bias): as gemm, plus bias(N) added to every row of C in the
     * same pass over C: C = alpha * op(A) * op(B) + beta * C + bias. */
    int (*gemm_bias)(cf_backend *be, int trans_a, int trans_b, int M, int N, int K, float alpha,
                     cf_view A, int lda, cf_view B, int ldb, float beta, cf_view C, int ldc,
                     cf_view bias);
    /* Optional (NULL: gemm_bias or gemm, then act_forward / act_backward with CF_ACT_GELU): a product with the
     * MLP's activation in the same pass over C, alpha 1 and beta 0.
     *   backward 0: C = op(A) op(B) + bias (bias.buf may be NULL), X = gelu(C)
     *   backward 1: C = (op(A) op(B)) * gelu'(X), X the pre-activation (bias must be NULL)
     * X has C's shape and row stride ldc == N. */
    int (*gemm_gelu)(cf_backend *be, int trans_a, int trans_b, int M, int N, int K, cf_view A,
                     int lda, cf_view B, int ldb, cf_view C, cf_view bias, cf_view X,
                     int backward);
    /* out(N,OC) += bias(OC) broadcast over rows */
    int (*add_bias)(cf_backend *be, cf_view out, cf_view bias, int N, int OC);
    /* dbias(OC) += sum over rows of dout(N,OC) */
    int (*bias_backward)(cf_backend *be, cf_view dbias, cf_view dout, int N, int OC);
    /* Optional (NULL: gemm, then bias_backward): a linear layer's weight and bias gradients in one
     * pass over dout: dweight(OC,IC) += dout(N,OC)^T @ inp(N,IC), dbias(OC) += sum over rows of
     * dout (the same results as those two ops, up to the order of the additions). */
    int (*weight_bias_backward)(cf_backend *be, cf_view dweight, cf_view dbias, cf_view dout,
                                cf_view inp, int N, int IC, int OC);

    /* token + position embedding: out(B,T,C) = wte[tok] + wpe[t], tok = tokens[b,t] clamped
     * into [0, V): tokens i32 (B,T), wte(V,C). An id < 0 reads row 0 and an id >= V row V-1, on
     * every backend, so a bad id never reads past the table (the data loaders reject such ids
     * before they get here; the clamp only keeps the op memory-safe). wpe is optional (a view
     * with a NULL buffer: no position table, RoPE models): out = wte[tok]. */
    int (*encoder_forward)(cf_backend *be, cf_view out, cf_view tokens, cf_view wte, cf_view wpe,
                           int B, int T, int C, int V);
    /* dwte(V,C) += scatter of dout by token (clamped into [0, V) as in the forward);
     * dwpe(T,C) += sum over batch (dwpe optional like wpe) */
    int (*encoder_backward)(cf_backend *be, cf_view dwte, cf_view dwpe, cf_view dout,
                            cf_view tokens, int B, int T, int C, int V);

    /* LayerNorm over the last dim C: out(N,C) = (x - mean) * rstd * weight + bias,
     * rstd = 1/sqrt(var + eps); mean(N), rstd(N) saved for backward (optional: NULL buffers when
     * no backward follows). bias optional (NULL buffer: no bias); dbias likewise. */
    int (*layernorm_forward)(cf_backend *be, cf_view out, cf_view mean, cf_view rstd, cf_view inp,
                             cf_view weight, cf_view bias, int N, int C, float eps);
    int (*layernorm_backward)(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dbias,
                              cf_view dout, cf_view inp, cf_view weight, cf_view mean,
                              cf_view rstd, int N, int C);

    /* Causal GQA self-attention. qkv (B,T,QKV), QKV = (NH + 2*KVH)*hs, each row laid out
     * [q: NH heads of hs | k: KVH heads | v: KVH heads]; query head h uses kv head h / (NH/KVH)
     * (KVH divides NH; KVH = NH is multi-head attention); scale 1/sqrt(hs). out (B,T,NH*hs);
     * att (B,NH,T,T) receives the softmax probabilities (row t valid for t2 <= t, entries
     * t2 > t must be written as 0). K and V are read in place (no copies to NH heads). */
    int (*attention_forward)(cf_backend *be, cf_view out, cf_view att, cf_view qkv, int B, int T,
                             int NH, int KVH, int hs);
    /* dqkv (B,T,QKV) = the gradient of qkv, ASSIGNED (not accumulated): every element of dqkv
     * is written, zeros included, and none is read, so the caller need not clear it first; a k/v
     * head shared by several query heads gets the sum over those heads. datt and dpreatt are
     * (B,NH,T,T) scratch the backend may overwrite. */
    int (*attention_backward)(cf_backend *be, cf_view dqkv, cf_view datt, cf_view dpreatt,
                              cf_view dout, cf_view qkv, cf_view att, int B, int T, int NH,
                              int KVH, int hs);

    /* Flash attention: the same attention as attention_forward (qkv layout, GQA read in place,
     * scale 1/sqrt(hs)) with the mask of cf_attn_desc, computed tile by tile with an online
     * softmax, so no (T,T) matrix exists anywhere. out (B,T,NH*hs); lse (B,NH,T) receives each
     * query row's log-sum-exp of its scaled scores, ln sum_j exp(s q.k_j), all the backward keeps
     * of the probabilities (P = exp(s q.k - lse)). doc: (B,T) i32 document starts or a NULL view.
     * Optional slots (NULL: the model keeps the matrix path). */
    int (*flash_forward)(cf_backend *be, const cf_attn_desc *d, cf_view out, cf_view lse,
                         cf_view qkv, cf_view doc);
    /* dqkv (B,T,QKV) ASSIGNED as attention_backward's, from dout (B,T,NH*hs), the forward's out
     * and lse, qkv and the same doc; the probabilities are recomputed per tile from lse.
     * delta (B,NH,T) is scratch the backend overwrites (rowsum(dout * out) per query row). */
    int (*flash_backward)(cf_backend *be, const cf_attn_desc *d, cf_view dqkv, cf_view delta,
                          cf_view dout, cf_view out, cf_view lse, cf_view qkv, cf_view doc);

    /* out(n) = act(inp) (enum cf_act); out may alias inp */
    int (*act_forward)(cf_backend *be, enum cf_act act, cf_view out, cf_view inp, size_t n);
    /* dinp(n) = act'(inp) * dout, ASSIGNED (not accumulated); dinp may alias dout (in place) */
    int (*act_backward)(cf_backend *be, enum cf_act act, cf_view dinp, cf_view inp, cf_view dout,
                        size_t n);
    /* SwiGLU: inp (N, 2F) = [gate | up] per row; out (N, F) = silu(gate) * up */
    int (*swiglu_forward)(cf_backend *be, cf_view out, cf_view inp, int N, int F);
    /* dinp (N, 2F) = the gradient of [gate | up] from dout (N, F), ASSIGNED */
    int (*swiglu_backward)(cf_backend *be, cf_view dinp, cf_view inp, cf_view dout, int N, int F);

    /* RMSNorm over groups: inp has N rows of row stride ld (elements); each row holds G groups of
     * C contiguous elements from column 0 (G*C <= ld). out (same layout; may alias inp) =
     * x * rstd * weight(C), rstd (N*G) saved, rstd = 1/sqrt(mean(x^2) + eps). A plain norm:
     * G = 1, ld = C. qk_norm: N = B*T, G = NH (or KVH), C = hs, ld = QKV. Elements of a row
     * outside the groups are not touched. */
    int (*rmsnorm_forward)(cf_backend *be, cf_view out, cf_view rstd, cf_view inp, cf_view weight,
                           int N, int G, int C, int ld, float eps);
    /* dinp (same layout) = the input gradient, ASSIGNED when accumulate == 0 (dinp may then
     * alias dout), added when accumulate == 1; dweight (C) += */
    int (*rmsnorm_backward)(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dout,
                            cf_view inp, cf_view weight, cf_view rstd, int N, int G, int C, int ld,
                            int accumulate);
    /* RoPE in place, rotate-half (Llama/HF): x has N = B*T rows of stride ld; each row holds H
     * heads of hs contiguous elements from column 0 (hs even); row r has position
     * pos0 + r % T; for i < hs/2 the pair (x[i], x[i + hs/2]) is rotated by angle
     * pos * theta^(-2i/hs): (a, b) -> (a cos - b sin, a sin + b cos). cs (P, hs/2, 2) f32 holds
     * (cos, sin) per position and pair, built by the model in double precision (P > every
     * position used). inverse = 1 applies the transposed rotation (the backward). q and k are
     * rotated by one call with H = NH + KVH (they are adjacent in a qkv row). */
    int (*rope)(cf_backend *be, cf_view x, cf_view cs, int B, int T, int H, int hs, int ld,
                int pos0, int inverse);

    /* out = a + b */
    int (*residual_forward)(cf_backend *be, cf_view out, cf_view a, cf_view b, size_t n);
    /* y += alpha * x (residual backward and gradient accumulation) */
    int (*axpy)(cf_backend *be, cf_view y, cf_view x, float alpha, size_t n);

    /* Cross-entropy over logits(N,V) with int32 targets(N); a target outside [0, V) (negative:
     * the "ignore" marker; >= V: bad data, which the loaders reject) is ignored on every backend:
     * loss 0 and, in the fused form, a zero dlogits row. No logit outside the row is read.
     * losses(N) = -log softmax(z')[target]. softcap c > 0: z' = c*tanh(z/c) in place of the
     * logit z; c = 0: z' = z (bit-identical to the op without a cap). */
    int (*crossentropy_forward)(cf_backend *be, cf_view losses, cf_view logits, cf_view targets,
                                int N, int V, float softcap);
    /* Fused softmax + cross-entropy forward and backward: writes losses(N) and
     * dlogits(N,V) = (softmax(z') - onehot(target)) * dloss * (1 - tanh(z/c)^2) (the last factor
     * only with softcap c > 0; ASSIGNED, not accumulated; ignored rows get 0). dlogits may alias
     * logits (in place). */
    int (*crossentropy_fused)(cf_backend *be, cf_view losses, cf_view dlogits, cf_view logits,
                              cf_view targets, int N, int V, float dloss, float softcap);

    /* out[0] = sum(x) (square = 0) or sum(x*x) (square = 1), x of n floats */
    int (*reduce_sum)(cf_backend *be, cf_view out, cf_view x, size_t n, int square);

    /* AdamW, decoupled weight decay, bias-corrected with step t >= 1; the gradient used is
     * grads * grad_scale (clipping). param -= lr * (mhat / (sqrt(vhat) + eps) + wd * param) */
    int (*adamw)(cf_backend *be, cf_view params, cf_view grads, cf_view m, cf_view v, size_t n,
                 float lr, float beta1, float beta2, float eps, float weight_decay,
                 float grad_scale, int t);

    /* Muon (the optimizer of the blocks' weight matrices; src/model/optim.c runs it as these ops
     * plus gemm and reduce_sum). Momentum with Nesterov in the public reference's form, on
     * g = grads * grad_scale (clipping): buf = beta * buf + (1 - beta) * g, then
     * out = (1 - beta) * g + beta * buf (the new buf). out may alias grads, not buf. */
    int (*muon_momentum)(cf_backend *be, cf_view buf, cf_view grads, cf_view out, size_t n,
                         float beta, float grad_scale);
    /* x(n) *= 1 / (sqrt(sumsq[0]) + eps): x over its Frobenius norm when sumsq[0] holds
     * reduce_sum(x, square = 1), without a trip to the host */
    int (*scale_rnorm)(cf_backend *be, cf_view x, cf_view sumsq, size_t n, float eps);
    /* y(n) = alpha * x(n) + beta * y(n) (Muon's decayed parameter update) */
    int (*axpby)(cf_backend *be, cf_view y, cf_view x, float alpha, float beta, size_t n);

    /* optional (NULL allowed): device time in microseconds of the work enqueued since the last
     * call, from device profiling events; called by the profiler after each op when profiling is
     * on. Backends without it are timed on the host around a synchronize. */
    int (*prof_collect)(cf_backend *be, double *device_us);

    /* ---- capabilities and backend-specific measurement ---- */
    /* Fill what the backend knows (cf_be_info has zeroed *out and filled max_alloc and
     * device_profiling). Required. */
    int (*info)(cf_backend *be, cf_backend_info *out);
    /* Optional (NULL: the host's CPU loop when info.host_threads, else unsupported): the device's
     * peak fp32 GFLOP/s, measured for about `seconds`; *how (static string) names the method. */
    int (*peak_gflops)(cf_backend *be, double seconds, double *gflops, const char **how);
    /* Optional (NULL: nothing to say): one line describing the parameters of the native GEMM kernel
     * for a shape ("16x16 wpt8 tk16 (rule)"), as the backend would choose them now. */
    int (*gemm_describe)(cf_backend *be, int M, int N, int K, int ta, int tb, char *out,
                         size_t len);
    /* Optional (NULL: malloc / free): host memory that downloads and uploads move fastest
     * (OpenCL: a CL_MEM_ALLOC_HOST_PTR buffer kept mapped, pinned on discrete GPUs), for staging
     * such as the data-parallel gradient all-reduce. *handle is the backend's own (may be NULL). */
    int (*host_alloc)(cf_backend *be, size_t nbytes, void **ptr, void **handle);
    void (*host_free)(cf_backend *be, void *ptr, void *handle);

    /* ---- inference (a KV cache of S positions per sequence; src/model/infer.c) ---- */
    /* Append Tq new positions to each of B sequences' caches. qkv (B,Tq,QKV) rows laid out as for
     * attention_forward; pos (B) i32: the positions sequence b holds before this call (its new
     * rows go to cache positions pos[b] .. pos[b]+Tq-1; a position >= S is clamped to S-1, so a
     * bad value never writes past the cache). kc, vc (B,S,KVH*hs): the K and V caches. With cs
     * (RoPE's (cos, sin) table, (S, hs/2, 2) as for rope) the q and k heads of each row are first
     * rotated IN PLACE in qkv by the row's cache position; cs NULL: no rotation. Then the k and v
     * heads of each row are copied to kc and vc. */
    int (*kv_append)(cf_backend *be, cf_view qkv, cf_view kc, cf_view vc, cf_view cs, cf_view pos,
                     int B, int Tq, int NH, int KVH, int hs, int S);
    /* Causal attention of Tq query rows per sequence against its cache: out (B,Tq,NH*hs); the
     * queries are the q heads of qkv (B,Tq,QKV); row t of sequence b sits at cache position
     * p = pos[b] + t (clamped to S-1) and attends to cache positions lo[r]..p, r = b*Tq + t, with
     * lo (B*Tq) i32 optional (a sliding window, a document start; lo[r] is clamped into [0, p], so
     * a bad value never reads outside the row's keys); lo NULL: positions 0..p. Query head h
     * reads kv head h / (NH/KVH) of kc, vc (B,S,KVH*hs) in place; scale 1/sqrt(hs). */
    int (*decode_attention)(cf_backend *be, cf_view out, cf_view qkv, cf_view kc, cf_view vc,
                            cf_view pos, cf_view lo, int B, int Tq, int NH, int KVH, int hs,
                            int S);
    /* A linear layer with int8 weights: C(M,N) = A(M,K) @ (scale[n] * W8(N,K))^T (+ bias(N)),
     * A f32 with row stride lda, W8 i8 (N,K) packed, scale f32 (N), bias optional, C with row
     * stride ldc (assigned). The weights are dequantised inside the kernel: no f32 copy of W8. */
    int (*gemm_q8)(cf_backend *be, int M, int N, int K, cf_view A, int lda, cf_view W8,
                   cf_view scale, cf_view bias, cf_view C, int ldc);
    /* Rows of an int8 table (the embedding): out(N,C) = scale[id] * W8(id, :) for id = ids[r]
     * (i32, clamped into [0, V) as encoder_forward's tokens), assigned (accumulate 0) or added to
     * out (accumulate 1). W8 i8 (V,C) packed, scale f32 (V): the per-row layout of gemm_q8's
     * weights, so one table serves the lookup and a tied head. */
    int (*embed_q8)(cf_backend *be, cf_view out, cf_view ids, cf_view W8, cf_view scale, int N,
                    int C, int V, int accumulate);
};

/* ---- profiling --------------------------------------------------------------------------- */

enum cf_phase { CF_PHASE_FORWARD = 0, CF_PHASE_BACKWARD = 1, CF_PHASE_OPTIMIZER = 2,
                CF_PHASE_TRANSFER = 3, CF_PHASE_OTHER = 4 };

typedef struct {
    const char *op;  /* static string: "gemm", "attention_forward", "upload", ... */
    int layer;       /* -1 for ops outside the blocks (embedding, head, loss, optimizer) */
    int phase;       /* enum cf_phase */
    double start_us; /* host time since profiling was enabled */
    double dur_us;   /* device time when available, else host time around a sync */
    uint64_t bytes;  /* transfers: bytes moved */
    double flops;    /* GEMMs: 2 M N K (0: not counted) */
} cf_prof_event;

typedef struct {
    int enabled;
    int layer, phase; /* current scope, set by the model */
    double t0;        /* cf_time_now() when enabled */
    cf_prof_event *events;
    size_t n, cap;
} cf_profiler;

struct cf_backend {
    const struct cf_backend_ops *ops;
    void *ctx;              /* backend private state */
    cf_backend_stats stats; /* maintained by the wrappers */
    size_t max_alloc;       /* largest single buffer the device allows in bytes, 0 = no limit */
    int verbose;
    cf_profiler prof;       /* per-op timing, off unless enabled */
};

/* Turn per-op profiling on (clears recorded events) or off. While on, every op is followed by a
 * synchronize, so steps run slower: profile for the breakdown, benchmark without. */
void cf_prof_enable(cf_backend *be, int on);
/* Scope for the following ops (the model sets it per layer and phase). */
static inline void cf_prof_scope(cf_backend *be, int layer, int phase) {
    be->prof.layer = layer;
    be->prof.phase = phase;
}
void cf_prof_reset(cf_backend *be); /* drop recorded events, keep enabled */

/* ---- creation ---------------------------------------------------------------------------- */

/* device spec: "auto", "auto:first", "cpu", "opencl", "opencl:P:D", or a substring of a
 * platform/device name. The backend is found in the registry (backend.c): a row's name, or
 * "name:..." goes to that row; "auto" and "auto:first" try every row but "cpu" with "auto" (best
 * usable GPU), skip a device whose cached verification failed (backend/verify.h) and fall back to
 * the CPU backend with the one-line warning the failing backend printed; anything else goes to the
 * device backends. (cf_backend_create_for, backend/verify.h, makes "auto" measure for a config.)
 * opts NULL = cf_backend_options_default(). A backend whose ops table has another api_version is
 * refused (CF_ERR_UNSUPPORTED, one error line). */
int cf_backend_create(const char *device_spec, const cf_backend_options *opts, cf_backend **out);
void cf_backend_destroy(cf_backend *be);

/* One device of a registry row, for generic code that lists, verifies or chooses devices without
 * naming a backend (cf_backend_reg.enumerate, cf_backend_enumerate). */
typedef struct cf_device_desc {
    const char *kind;   /* the registry row's name: "cpu", "opencl" (static string; filled by
                         * cf_backend_enumerate, not by the row) */
    char spec[64];      /* the --device spec that creates it: "cpu", "opencl:P:D" */
    char name[256];     /* device name */
    char platform[256]; /* OpenCL platform; "" for the C backend */
    char driver[256];   /* driver version; the C backend: its GEMM kernel ("native:avx2-6x16") */
    int device_type;    /* enum cf_device_type */
    int usable;         /* 0: listed, but clformer cannot run on it (reason) */
    char reason[192];   /* why not usable; "" when usable */
} cf_device_desc;

/* A registry row. create receives the whole spec; list_devices prints the backend's devices (one
 * per line, with their --device names) and returns CF_OK also when there are none; enumerate
 * fills up to max descriptions of its devices (usable or not, in --device order) and returns how
 * many it has (which may exceed max), 0 with a reason in why when it has none (no driver, no
 * platform), or a negative status. opts are those the devices would be created with (the C
 * backend's GEMM kernel is its driver). */
typedef struct cf_backend_reg {
    const char *name;
    int (*create)(const char *spec, const cf_backend_options *opts, cf_backend **out);
    int (*list_devices)(FILE *out);
    int (*enumerate)(const cf_backend_options *opts, cf_device_desc *out, int max, char *why,
                     size_t why_len);
} cf_backend_reg;
/* The rows compiled in ("cpu" first, then "opencl" when built with OpenCL); *n receives the count. */
const cf_backend_reg *cf_backend_registry(int *n);
/* Print every backend's devices through the registry (`clformer devices`). */
int cf_backend_list_devices(FILE *out);
/* Every device of every registry row, in registry order ("cpu" first), usable or not, with .kind
 * set: *out is malloc'd (free()), *n >= 1 (the C backend). A row with no devices adds none; when
 * notes is not NULL it prints one line there saying why ("note: no opencl devices: ..."). A row
 * whose enumeration fails is reported the same way and skipped. opts NULL = defaults. */
int cf_backend_enumerate(const cf_backend_options *opts, FILE *notes, cf_device_desc **out,
                         int *n);
/* The check cf_backend_create applies to a new backend: CF_OK, or CF_ERR_UNSUPPORTED with one
 * error line naming both versions when ops->api_version differs from CF_BACKEND_API_VERSION. */
int cf_backend_check_ops(const struct cf_backend_ops *ops, const char *name);

/* The registry's rows (also callable directly; spec and opts as for cf_backend_create). */
int cf_backend_cpu_create(const char *spec, const cf_backend_options *opts, cf_backend **out);
int cf_backend_cpu_list_devices(FILE *out);
int cf_backend_cpu_enumerate(const cf_backend_options *opts, cf_device_desc *out, int max,
                             char *why, size_t why_len);

/* What the backend is and can do (see cf_backend_info). */
int cf_be_info(cf_backend *be, cf_backend_info *out);

/* ---- wrappers (argument checks, stats, fault injection) ----------------------------------- */

const char *cf_be_name(cf_backend *be);
int cf_be_alloc(cf_backend *be, size_t nbytes, cf_buffer **out);
void cf_be_free(cf_backend *be, cf_buffer *buf);
int cf_be_upload(cf_backend *be, cf_view dst, const void *src, size_t nbytes);
int cf_be_download(cf_backend *be, void *dst, cf_view src, size_t nbytes);
/* Staging host memory (the backend's host_alloc, else malloc); free with cf_be_host_free. */
int cf_be_host_alloc(cf_backend *be, size_t nbytes, void **ptr, void **handle);
void cf_be_host_free(cf_backend *be, void *ptr, void *handle);
/* n elements of src into dst: f32 to f32, or f32 to or from bf16 / f16 (ops.copy) */
int cf_be_copy(cf_backend *be, cf_view dst, cf_view src, size_t n);
int cf_be_fill(cf_backend *be, cf_view dst, float value, size_t n);
int cf_be_sync(cf_backend *be);
int cf_be_gemm(cf_backend *be, int ta, int tb, int M, int N, int K, float alpha, cf_view A,
               int lda, cf_view B, int ldb, float beta, cf_view C, int ldc);

/* Linear layer built on gemm: out(N,OC) = inp(N,IC) @ weight(OC,IC)^T + bias(OC) (bias buf may
 * be NULL). Backward accumulates dinp(N,IC), dweight(OC,IC), dbias(OC) (dbias buf may be NULL). */
int cf_be_matmul_forward(cf_backend *be, cf_view out, cf_view inp, cf_view weight, cf_view bias,
                         int N, int IC, int OC);
int cf_be_matmul_backward(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dbias,
                          cf_view dout, cf_view inp, cf_view weight, int N, int IC, int OC);
/* The same, but dinp is ASSIGNED (written, not accumulated): no zero-fill needed before it. */
int cf_be_matmul_backward_set(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dbias,
                              cf_view dout, cf_view inp, cf_view weight, int N, int IC, int OC);
/* A linear layer followed by GELU: pre(N,OC) = inp @ weight^T + bias, act(N,OC) = gelu(pre); one
 * launch where the backend has gemm_gelu, else matmul_forward then gelu_forward. */
int cf_be_matmul_gelu_forward(cf_backend *be, cf_view pre, cf_view act, cf_view inp,
                              cf_view weight, cf_view bias, int N, int IC, int OC);
/* The backward of a linear layer whose input inp(N,IC) = gelu(pre(N,IC)): dpre(N,IC) =
 * (dout @ weight) * gelu'(pre) ASSIGNED (the gradient through the GELU as well), dweight and dbias
 * accumulated as in matmul_backward; gemm_gelu where the backend has it. */
int cf_be_matmul_gelu_backward_set(cf_backend *be, cf_view dpre, cf_view dweight, cf_view dbias,
                                   cf_view dout, cf_view inp, cf_view weight, cf_view pre, int N,
                                   int IC, int OC);

int cf_be_encoder_forward(cf_backend *be, cf_view out, cf_view tokens, cf_view wte, cf_view wpe,
                          int B, int T, int C, int V);
int cf_be_encoder_backward(cf_backend *be, cf_view dwte, cf_view dwpe, cf_view dout, cf_view tokens,
                           int B, int T, int C, int V);
int cf_be_layernorm_forward(cf_backend *be, cf_view out, cf_view mean, cf_view rstd, cf_view inp,
                            cf_view weight, cf_view bias, int N, int C, float eps);
int cf_be_layernorm_backward(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dbias,
                             cf_view dout, cf_view inp, cf_view weight, cf_view mean,
                             cf_view rstd, int N, int C);
int cf_be_attention_forward(cf_backend *be, cf_view out, cf_view att, cf_view qkv, int B, int T,
                            int NH, int KVH, int hs);
int cf_be_attention_backward(cf_backend *be, cf_view dqkv, cf_view datt, cf_view dpreatt,
                             cf_view dout, cf_view qkv, cf_view att, int B, int T, int NH, int KVH,
                             int hs);
/* Flash attention (see flash_forward / flash_backward in the ops table). The wrappers check the
 * descriptor (positive sizes, KVH divides NH, 0 <= window) and every view's extent; a backend
 * without the slots answers CF_ERR_UNSUPPORTED. */
int cf_be_has_flash(cf_backend *be);
int cf_be_flash_forward(cf_backend *be, const cf_attn_desc *d, cf_view out, cf_view lse,
                        cf_view qkv, cf_view doc);
int cf_be_flash_backward(cf_backend *be, const cf_attn_desc *d, cf_view dqkv, cf_view delta,
                         cf_view dout, cf_view out, cf_view lse, cf_view qkv, cf_view doc);
int cf_be_act_forward(cf_backend *be, enum cf_act act, cf_view out, cf_view inp, size_t n);
int cf_be_act_backward(cf_backend *be, enum cf_act act, cf_view dinp, cf_view inp, cf_view dout,
                       size_t n);
/* act_forward / act_backward with CF_ACT_GELU */
int cf_be_gelu_forward(cf_backend *be, cf_view out, cf_view inp, size_t n);
int cf_be_gelu_backward(cf_backend *be, cf_view dinp, cf_view inp, cf_view dout, size_t n);
int cf_be_swiglu_forward(cf_backend *be, cf_view out, cf_view inp, int N, int F);
int cf_be_swiglu_backward(cf_backend *be, cf_view dinp, cf_view inp, cf_view dout, int N, int F);
int cf_be_rmsnorm_forward(cf_backend *be, cf_view out, cf_view rstd, cf_view inp, cf_view weight,
                          int N, int G, int C, int ld, float eps);
int cf_be_rmsnorm_backward(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dout,
                           cf_view inp, cf_view weight, cf_view rstd, int N, int G, int C, int ld,
                           int accumulate);
int cf_be_rope(cf_backend *be, cf_view x, cf_view cs, int B, int T, int H, int hs, int ld,
               int pos0, int inverse);
int cf_be_residual_forward(cf_backend *be, cf_view out, cf_view a, cf_view b, size_t n);
int cf_be_axpy(cf_backend *be, cf_view y, cf_view x, float alpha, size_t n);
int cf_be_crossentropy_forward(cf_backend *be, cf_view losses, cf_view logits, cf_view targets,
                               int N, int V, float softcap);
int cf_be_crossentropy_fused(cf_backend *be, cf_view losses, cf_view dlogits, cf_view logits,
                             cf_view targets, int N, int V, float dloss, float softcap);
int cf_be_reduce_sum(cf_backend *be, cf_view out, cf_view x, size_t n, int square);
int cf_be_adamw(cf_backend *be, cf_view params, cf_view grads, cf_view m, cf_view v, size_t n,
                float lr, float beta1, float beta2, float eps, float weight_decay,
                float grad_scale, int t);
int cf_be_muon_momentum(cf_backend *be, cf_view buf, cf_view grads, cf_view out, size_t n,
                        float beta, float grad_scale);
int cf_be_scale_rnorm(cf_backend *be, cf_view x, cf_view sumsq, size_t n, float eps);
int cf_be_axpby(cf_backend *be, cf_view y, cf_view x, float alpha, float beta, size_t n);
/* inference ops (see struct cf_backend_ops) */
int cf_be_kv_append(cf_backend *be, cf_view qkv, cf_view kc, cf_view vc, cf_view cs, cf_view pos,
                    int B, int Tq, int NH, int KVH, int hs, int S);
int cf_be_decode_attention(cf_backend *be, cf_view out, cf_view qkv, cf_view kc, cf_view vc,
                           cf_view pos, cf_view lo, int B, int Tq, int NH, int KVH, int hs, int S);
int cf_be_gemm_q8(cf_backend *be, int M, int N, int K, cf_view A, int lda, cf_view W8,
                  cf_view scale, cf_view bias, cf_view C, int ldc);
int cf_be_embed_q8(cf_backend *be, cf_view out, cf_view ids, cf_view W8, cf_view scale, int N,
                   int C, int V, int accumulate);

/* ---- argument checks (the ones every wrapper uses; also for entry points outside the table) ---
 * Each returns CF_OK, or logs one line "<op>: argument '<arg>' ..." saying what the op needs and
 * what the view holds, and returns CF_ERR_INVALID. */

/* v must have a buffer (unless optional and v.buf is NULL), dtype t, an offset that is a multiple
 * of t's size, and n elements of t from its offset inside the buffer. */
int cf_view_check(const char *op, const char *arg, cf_view v, enum cf_dtype t, size_t n,
                  int optional);
/* The operands of C(M,N) = op(A) op(B) (+ bias(N), optional) as cf_be_gemm takes them: f32
 * views spanning their rows x cols with the given leading dimensions, ld >= row length. */
int cf_gemm_check(const char *op, int ta, int tb, int M, int N, int K, cf_view A, int lda,
                  cf_view B, int ldb, cf_view C, int ldc, cf_view bias);

/* ---- test switches (fault injection) ------------------------------------------------------
 * Only in test builds (CF_FAULT_INJECTION: the clformer_core_fi library the tests and clformer-fi
 * link); the product binaries have none of these hooks. Make the Nth (1-based, counted from the
 * call) buffer allocation, kernel build or CLBlast call fail; 0 turns it off. save_crash 1 makes
 * every checkpoint write stop half way as a crash would. The fault-injecting CLI (clformer-fi)
 * sets them from CF_FAULT_ALLOC, CF_FAULT_BUILD, CF_FAULT_CLBLAST and CF_FAULT_SAVE_CRASH. */
#ifdef CF_FAULT_INJECTION
void cf_fault_set_alloc(int nth);
void cf_fault_set_build(int nth);
void cf_fault_set_clblast(int nth);
void cf_fault_set_save_crash(int on);
int cf_fault_alloc_hit(void);   /* called by the alloc wrappers; 1 = fail this one */
int cf_fault_build_hit(void);   /* called by backends before each program build */
int cf_fault_clblast_hit(void); /* called before each CLBlast call */
int cf_fault_save_crash(void);  /* 1 = the checkpoint writer simulates a crash */
/* From the Nth fp16 training step on (counted from the call), every step's gradients read as
 * overflowed (their norm inf): the loss scaler's skip, halving and stop at scale 1 (CF_FAULT_GRAD_INF
 * in clformer-fi) */
void cf_fault_set_grad_inf(int nth);
int cf_fault_grad_inf_hit(void); /* called by the trainer once per loss-scaled step */
#endif

#endif
