/* clformer: declarations shared by the CPU backend's files (ops table, ops, GEMM); not public. */
#ifndef CF_CPU_INTERNAL_H
#define CF_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Elementwise ops below this many elements run on one thread: each thread's share should take
 * tens of microseconds, well above a fork/join. (On a loaded machine waking the second thread
 * can take a scheduler slice, milliseconds; memory-bound ops gain little from it anyway.) */
#define CF_CPU_PAR_MIN (1 << 17)

static inline int cf_cpu_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
static inline int cf_cpu_thread_num(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* 1: the ops' AVX2/FMA kernels (the CPU has both, and the GEMM choice is not a portable native
 * kernel: CF_CPU_GEMM=native:generic-4x16 selects the portable code everywhere, so the tests reach
 * it on any machine), 0: the portable loops. */
int cf_cpu_use_avx2(cf_backend *be);

/* Host pointers of views (the cf_be_* wrappers have checked buffer, dtype, alignment and extent).
 */
static inline float *cf_cpu_f32(cf_view v) { return cf_view_ptr_f32(v); }
static inline int32_t *cf_cpu_i32(cf_view v) { return cf_view_ptr_i32(v); }

/* ---- ops (cpu_ops.c), signatures as in struct cf_backend_ops -------------------------------- */

int cf_cpu_add_bias(cf_backend *be, cf_view out, cf_view bias, int N, int OC);
int cf_cpu_bias_backward(cf_backend *be, cf_view dbias, cf_view dout, int N, int OC);
int cf_cpu_encoder_forward(cf_backend *be, cf_view out, cf_view tokens, cf_view wte, cf_view wpe,
                           int B, int T, int C, int V);
int cf_cpu_encoder_backward(cf_backend *be, cf_view dwte, cf_view dwpe, cf_view dout,
                            cf_view tokens, int B, int T, int C, int V);
int cf_cpu_layernorm_forward(cf_backend *be, cf_view out, cf_view mean, cf_view rstd, cf_view inp,
                             cf_view weight, cf_view bias, int N, int C, float eps);
int cf_cpu_layernorm_backward(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dbias,
                              cf_view dout, cf_view inp, cf_view weight, cf_view mean,
                              cf_view rstd, int N, int C);
int cf_cpu_attention_forward(cf_backend *be, cf_view out, cf_view att, cf_view qkv, int B, int T,
                             int NH, int KVH, int hs);
int cf_cpu_attention_backward(cf_backend *be, cf_view dqkv, cf_view datt, cf_view dpreatt,
                              cf_view dout, cf_view qkv, cf_view att, int B, int T, int NH,
                              int KVH, int hs);
/* The native GEMM kernel flash attention's blocks run on (the backend's, or the best native one
 * where the backend goes through BLAS; fp32 whatever the precision: attention stays fp32). */
int cf_cpu_flash_gemm_kernel(const cf_backend *be);
int cf_cpu_flash_forward(cf_backend *be, const cf_attn_desc *d, cf_view out, cf_view lse,
                         cf_view qkv, cf_view doc);
int cf_cpu_flash_backward(cf_backend *be, const cf_attn_desc *d, cf_view dqkv, cf_view delta,
                          cf_view dout, cf_view out, cf_view lse, cf_view qkv, cf_view doc);
int cf_cpu_act_forward(cf_backend *be, enum cf_act act, cf_view out, cf_view inp, size_t n);
int cf_cpu_act_backward(cf_backend *be, enum cf_act act, cf_view dinp, cf_view inp, cf_view dout,
                        size_t n);
int cf_cpu_swiglu_forward(cf_backend *be, cf_view out, cf_view inp, int N, int F);
int cf_cpu_swiglu_backward(cf_backend *be, cf_view dinp, cf_view inp, cf_view dout, int N, int F);
int cf_cpu_rmsnorm_forward(cf_backend *be, cf_view out, cf_view rstd, cf_view inp, cf_view weight,
                           int N, int G, int C, int ld, float eps);
int cf_cpu_rmsnorm_backward(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dout,
                            cf_view inp, cf_view weight, cf_view rstd, int N, int G, int C, int ld,
                            int accumulate);
int cf_cpu_rope(cf_backend *be, cf_view x, cf_view cs, int B, int T, int H, int hs, int ld,
                int pos0, int inverse);
int cf_cpu_residual_forward(cf_backend *be, cf_view out, cf_view a, cf_view b, size_t n);
int cf_cpu_axpy(cf_backend *be, cf_view y, cf_view x, float alpha, size_t n);
int cf_cpu_crossentropy_forward(cf_backend *be, cf_view losses, cf_view logits, cf_view targets,
                                int N, int V, float softcap);
int cf_cpu_crossentropy_fused(cf_backend *be, cf_view losses, cf_view dlogits, cf_view logits,
                              cf_view targets, int N, int V, float dloss, float softcap);
int cf_cpu_reduce_sum(cf_backend *be, cf_view out, cf_view x, size_t n, int square);
int cf_cpu_adamw(cf_backend *be, cf_view params, cf_view grads, cf_view m, cf_view v, size_t n,
                 float lr, float beta1, float beta2, float eps, float weight_decay,
                 float grad_scale, int t);
/* cpu_muon.c */
int cf_cpu_muon_momentum(cf_backend *be, cf_view buf, cf_view grads, cf_view out, size_t n,
                         float beta, float grad_scale);
int cf_cpu_scale_rnorm(cf_backend *be, cf_view x, cf_view sumsq, size_t n, float eps);
int cf_cpu_axpby(cf_backend *be, cf_view y, cf_view x, float alpha, float beta, size_t n);

/* ---- inference ops (cpu_infer.c) ------------------------------------------------------------ */
int cf_cpu_kv_append(cf_backend *be, cf_view qkv, cf_view kc, cf_view vc, cf_view cs, cf_view pos,
                     int B, int Tq, int NH, int KVH, int hs, int S);
int cf_cpu_decode_attention(cf_backend *be, cf_view out, cf_view qkv, cf_view kc, cf_view vc,
                            cf_view pos, cf_view lo, int B, int Tq, int NH, int KVH, int hs, int S);
/* gemm_q8 on host pointers; kernel is the GEMM the products with many rows go through */
int cf_cpu_gemm_q8(int kernel, int M, int N, int K, const float *A, int lda, const int8_t *W,
                   const float *scale, const float *bias, float *C, int ldc);
int cf_cpu_embed_q8(cf_backend *be, cf_view out, cf_view ids, cf_view W8, cf_view scale, int N,
                    int C, int V, int accumulate);

/* ---- bf16 GEMM pieces (cpu_gemm_bf16.c; driven by cpu_gemm.c as CF_CPU_GEMM_BF16) ---------- */
/* 1 when the CPU has AVX512-BF16 (and AVX512F/BW/VL with the zmm state saved by the OS). */
int cf_cpu_bf16_usable(void);
/* As cf_gemm_pack_a / cf_gemm_pack_b of cpu_gemm.c (same slots), the values rounded to bf16 and
 * stored as pairs of k (layout: cpu_gemm_bf16.c). */
void cf_cpu_bf16_pack_a(float *dst, int ta, const float *A, int lda, int i0, int p0, int mb,
                        int kb, int mr);
void cf_cpu_bf16_pack_b(float *bpack, int tb, const float *B, int ldb, int p0, int j0, int kb,
                        int nb, int nr, int pa, int pb);
/* The 12 x 32 register-tile kernel on those slivers (the cf_gemm_ukr contract of cpu_gemm.c). */
void cf_cpu_bf16_ukr(int kc, const float *a, const float *b, float *c, ptrdiff_t ldc, float alpha,
                     float beta, const float *bias, int m, int n);
/* 1 when the CPU has AMX-BF16 and AMX-TILE (and AVX512-BF16) and Linux granted the process the
 * tile data (asked here, once). */
int cf_cpu_amx_usable(void);
/* After cf_cpu_bf16_pack_a with mr 16: each sliver's full blocks of 16 pairs x 16 rows
 * transposed in place into AMX's A-tile order (rows of 16 pairs). */
void cf_cpu_amx_order_a(float *dst, int mb, int kb);
/* This thread's AMX tiles released (TILERELEASE) and their configuration forgotten: after each
 * GEMM and peak run on a thread, so that no thread keeps AMX state between them. */
void cf_cpu_amx_release(void);
/* FLOPs of iters rounds of four independent TDPBF16PS chains on this thread (AMX's peak; the
 * caller times them). Only where cf_cpu_amx_usable(). */
double cf_cpu_amx_peak_flops(long iters);
/* The 16 x 32 AMX kernel (TDPBF16PS) on those slivers (the cf_gemm_ukr contract). */
void cf_cpu_amx_ukr(int kc, const float *a, const float *b, float *c, ptrdiff_t ldc, float alpha,
                    float beta, const float *bias, int m, int n);

/* ---- fp16 rounding of packed GEMM operands (cpu_gemm_fp16.c; CF_CPU_GEMM_FP16) -------------- */
/* 1 when the CPU has F16C (and AVX with the ymm state saved by the OS). */
int cf_cpu_f16c_usable(void);
/* x[i] = fp32(fp16(x[i])) in place: round to nearest even, overflow to +-Inf, half subnormals
 * kept, NaN quiet. With F16C where f16c is set (the caller checked cf_cpu_f16c_usable), else the
 * scalar conversions of io/half.c; both give the same bits. */
void cf_cpu_f16_round_with(float *x, size_t n, int f16c);
/* The same, F16C where the CPU has it. */
void cf_cpu_f16_round(float *x, size_t n);
/* n values to IEEE binary16 (y) and back (the same rounding; F16C where usable): the storage of
 * activations kept half under precision fp16 (cf_be_copy across dtypes) */
void cf_cpu_f16_store(const float *x, uint16_t *y, size_t n);
void cf_cpu_f16_load(const uint16_t *x, float *y, size_t n);

/* Kernel index that "native" means (0: the best usable kernel). */
#define CF_CPU_GEMM_NATIVE_BEST 0
/* Parse a GEMM choice ("native", "native:<kernel>", "blas", "auto") into a kernel index for
 * cf_cpu_sgemm; origin names where the value came from for the error message. */
int cf_cpu_gemm_parse(const char *which, const char *origin, int *kernel);

/* GEMM micro-kernels' edge tiles (cpu_gemm.c, cpu_gemm_bf16.c): copy the valid part of C into a full MR x NR scratch tile (zeros elsewhere) and
 * back, so the kernel's vector code runs unchanged on them. */
static inline void cf_gemm_tile_in(float *tile, int nr, const float *c, ptrdiff_t ldc, int mr, int m,
                            int n, float beta) {
    memset(tile, 0, sizeof(float) * (size_t)mr * (size_t)nr);
    if (beta == 0.0f) return;
    for (int i = 0; i < m; i++) memcpy(tile + (size_t)i * nr, c + i * ldc, sizeof(float) * n);
}
static inline void cf_gemm_tile_out(float *c, ptrdiff_t ldc, const float *tile, int nr, int m, int n) {
    for (int i = 0; i < m; i++) memcpy(c + i * ldc, tile + (size_t)i * nr, sizeof(float) * n);
}
/* The n biases of an edge tile, zero-padded to nr in pad (so vector loads stay in bounds). */
static inline const float *cf_gemm_bias_pad(float *pad, int nr, const float *bias, int n) {
    if (!bias || n >= nr) return bias;
    memset(pad, 0, sizeof(float) * (size_t)nr);
    memcpy(pad, bias, sizeof(float) * (size_t)n);
    return pad;
}

#endif
