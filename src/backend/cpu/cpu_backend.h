/* clformer: the CPU backend's public extras: GEMM path selection and the raw SGEMM entry point.
 *
 * The backend itself is created with cf_backend_cpu_create() (declared in backend/backend.h).
 * Its GEMM runs either through the built-in packed, cache-blocked, OpenMP-parallel kernels
 * ("native") or, when clformer was built with CF_HAVE_BLAS, through cblas_sgemm ("blas").
 * At creation cf_backend_options.cpu_gemm (same values as cf_backend_cpu_set_gemm) overrides the
 * default. */
#ifndef CF_CPU_BACKEND_H
#define CF_CPU_BACKEND_H

#include "backend/backend.h"

/* Pseudo kernel index for cf_cpu_sgemm: go through CBLAS. */
#define CF_CPU_GEMM_BLAS (-1)
/* Pseudo kernel index for cf_cpu_sgemm: the bf16 GEMM (precision bf16): op(A) and op(B) rounded
 * to bf16 (nearest even) as they are packed, products accumulated in fp32 (AVX512-BF16
 * vdpbf16ps), C, alpha, beta and the bias in fp32. CF_ERR_UNSUPPORTED where the CPU lacks
 * AVX512-BF16 (cf_cpu_gemm_bf16_available). */
#define CF_CPU_GEMM_BF16 (-2)
/* The bf16 GEMM on a given kernel: AVX512-BF16's 12 x 32 register tiles (vdpbf16ps), or AMX's
 * 16 x 32 tiles (TDPBF16PS; CF_ERR_UNSUPPORTED without AMX). CF_CPU_GEMM_BF16 is AMX where the
 * CPU has it, else AVX512-BF16. */
#define CF_CPU_GEMM_BF16_AVX512 (-3)
#define CF_CPU_GEMM_BF16_AMX (-4)
/* 1 when this CPU runs the bf16 GEMM (AVX512-BF16: cpuid leaf 7 subleaf 1 EAX bit 5). */
int cf_cpu_gemm_bf16_available(void);
/* 1 when it runs on AMX (AMX-BF16 and AMX-TILE, the tile data granted by Linux). */
int cf_cpu_gemm_amx_available(void);
/* AMX's bf16 peak in GFLOP/s over every OpenMP thread (chains of TDPBF16PS, each thread's FLOPs
 * over its own CPU time, the best of runs of about 50 ms for `seconds` in all);
 * CF_ERR_UNSUPPORTED without AMX. */
int cf_cpu_amx_peak_gflops(double seconds, double *gflops);
/* Kernel index base for cf_cpu_sgemm: CF_CPU_GEMM_FP16 + k is the fp16 GEMM (precision fp16) on
 * native kernel k (k below cf_cpu_gemm_kernel_count()): op(A) and op(B) rounded to IEEE half
 * (nearest even, overflow to +-Inf, subnormals kept) as they are packed, then kernel k's fp32
 * products (exact for halves) and fp32 accumulation; C, alpha, beta and the bias in fp32. The
 * rounding uses F16C where the CPU has it, else a scalar conversion with the same bits, so every
 * x86-64 CPU (and any other) runs it. Bit-identical for any thread count, as the fp32 GEMM. */
#define CF_CPU_GEMM_FP16 0x100

/* Select the GEMM of a CPU backend. which:
 *   "native"           the best built-in kernel for this CPU (cf_cpu_gemm_native_kernel)
 *   "native:<kernel>"  one built-in kernel by name (see cf_cpu_gemm_kernel_name)
 *   "blas"             cblas_sgemm; CF_ERR_UNSUPPORTED when not compiled with CF_HAVE_BLAS
 *   "auto"             the default (see cf_cpu_gemm_default)
 * Returns CF_ERR_INVALID for a non-CPU backend or an unknown name (with a one-line message). */
int cf_backend_cpu_set_gemm(cf_backend *be, const char *which);
/* The current choice, e.g. "native:avx2-6x16" or "blas". */
const char *cf_backend_cpu_get_gemm(cf_backend *be);
/* The choice a new backend starts with when cf_backend_options.cpu_gemm is not set ("native"; why: see
 * cpu_gemm.c). */
const char *cf_cpu_gemm_default(void);

/* 1 when the CBLAS path was compiled in. */
int cf_cpu_blas_available(void);

/* Built-in kernels usable on this CPU (cpuid), in order of preference: AVX2+FMA, AVX-512, the
 * portable kernel. */
int cf_cpu_gemm_kernel_count(void);
/* The name of kernel index `kernel` (also "blas" and the bf16 kernels' names for
 * CF_CPU_GEMM_BF16_AVX512 / _AMX); "?" for anything else. */
const char *cf_cpu_gemm_kernel_name(int kernel);
/* The kernel "native" (and "auto") means on this CPU: kernel 0, or where the CPU has more than one
 * vector kernel (AVX2 and AVX-512), the one a short measurement at first use finds at least 10%
 * faster (about 30 ms of CPU time, once per process; kept in <cache_dir>/cpu_gemm-*.txt when
 * cache_dir is set, so every run on this CPU uses the same kernel). */
int cf_cpu_gemm_native_kernel(const char *cache_dir);
/* Why: "measured at first use: avx2-6x16 41.0 GFLOP/s, avx512-12x32 38.2 GFLOP/s", ... */
const char *cf_cpu_gemm_native_reason(void);

/* C(M,N) = alpha * op(A) * op(B) + beta * C on host pointers, row-major, same conventions as
 * cf_backend_ops.gemm (A is (M,K) or stored (K,M) when ta; B is (K,N) or stored (N,K) when tb;
 * lda/ldb/ldc are row strides in elements). beta == 0 never reads C. kernel is an index below
 * cf_cpu_gemm_kernel_count(), CF_CPU_GEMM_BLAS, CF_CPU_GEMM_BF16, or CF_CPU_GEMM_FP16 plus an index. The native kernels never split K across
 * threads, so their output is bit-identical for any thread count.
 * Returns CF_OK, CF_ERR_NOMEM (packing buffers), CF_ERR_UNSUPPORTED (BLAS not compiled in) or
 * CF_ERR_INVALID (bad kernel index or leading dimension). */
int cf_cpu_sgemm(int kernel, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc);
/* As cf_cpu_sgemm, plus bias(N) (NULL: none) added to every row of C as it is stored. */
int cf_cpu_sgemm_bias(int kernel, int ta, int tb, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc, const float *bias);

#endif
