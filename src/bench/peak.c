/* clformer: the peak fp32 FLOP rate that MFU is measured against: on the CPU a loop of
 * independent SIMD fused multiply-add chains on every OpenMP thread, on OpenCL devices a kernel
 * (src/backend/opencl/cl_peak.c). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <string.h>

#if defined(__AVX512F__) || (defined(__AVX__) && defined(__FMA__))
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench/bench.h"

/* 12 independent accumulators: an FMA has a latency of 4-5 cycles and current cores issue two per
 * cycle, so at least 8-10 chains are in flight to keep both pipes full. */
#define CF_PEAK_CHAINS 12

#if defined(__AVX512F__)
#define CF_PEAK_ISA "AVX-512 FMA"
#define CF_PEAK_LANES 16
typedef __m512 peak_vec;
#define PV_SET(x) _mm512_set1_ps(x)
#define PV_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
static float pv_sum(peak_vec v) {
    return _mm512_reduce_add_ps(v);
}
#elif defined(__AVX__) && defined(__FMA__)
#define CF_PEAK_ISA "AVX2 FMA"
#define CF_PEAK_LANES 8
typedef __m256 peak_vec;
#define PV_SET(x) _mm256_set1_ps(x)
#define PV_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
static float pv_sum(peak_vec v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#else
/* Portable vectors (GCC/Clang extension); without a fused instruction this counts a multiply and
 * an add, which is the peak such a CPU has. */
#define CF_PEAK_ISA "generic SIMD"
#define CF_PEAK_LANES 4
typedef float peak_vec __attribute__((vector_size(16)));
#define PV_SET(x) ((peak_vec){(x), (x), (x), (x)})
#define PV_FMA(a, b, c) ((a) * (b) + (c))
static float pv_sum(peak_vec v) {
    return v[0] + v[1] + v[2] + v[3];
}
#endif

/* iters rounds of CF_PEAK_CHAINS vector FMAs on the calling thread; returns the FLOPs done. */
static double peak_fma_body(long iters) {
#ifdef _OPENMP
    const float seed = 1.0f + 1e-3f * (float)omp_get_thread_num();
#else
    const float seed = 1.0f;
#endif
    /* x -> x*a + b with a < 1 converges to b/(1-a): values stay finite and normal */
    const peak_vec a = PV_SET(0.999f), b = PV_SET(1e-3f);
    peak_vec c0 = PV_SET(seed), c1 = PV_SET(seed + 0.01f), c2 = PV_SET(seed + 0.02f),
             c3 = PV_SET(seed + 0.03f), c4 = PV_SET(seed + 0.04f), c5 = PV_SET(seed + 0.05f),
             c6 = PV_SET(seed + 0.06f), c7 = PV_SET(seed + 0.07f), c8 = PV_SET(seed + 0.08f),
             c9 = PV_SET(seed + 0.09f), c10 = PV_SET(seed + 0.10f), c11 = PV_SET(seed + 0.11f);
    for (long i = 0; i < iters; i++) {
        c0 = PV_FMA(c0, a, b);
        c1 = PV_FMA(c1, a, b);
        c2 = PV_FMA(c2, a, b);
        c3 = PV_FMA(c3, a, b);
        c4 = PV_FMA(c4, a, b);
        c5 = PV_FMA(c5, a, b);
        c6 = PV_FMA(c6, a, b);
        c7 = PV_FMA(c7, a, b);
        c8 = PV_FMA(c8, a, b);
        c9 = PV_FMA(c9, a, b);
        c10 = PV_FMA(c10, a, b);
        c11 = PV_FMA(c11, a, b);
    }
    peak_vec s = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
    /* the result is used, so the loop cannot be removed */
    volatile float keep = pv_sum(s);
    (void)keep;
    return 2.0 * CF_PEAK_CHAINS * CF_PEAK_LANES * (double)iters;
}

int cf_bench_cpu_peak_gflops(double seconds, double *gflops) {
    const double best = cf_peak_flops(seconds, peak_fma_body, NULL);
    *gflops = best / 1e9;
    return best > 0 ? CF_OK : CF_ERR_DEVICE;
}

int cf_bench_device_peak_gflops(cf_backend *be, double seconds, double *gflops, const char **how) {
    *gflops = 0.0;
    if (be->ops->peak_gflops) {
        /* (unsupported: the backend has no peak of its own for this run; a host's loop below) */
        const int rc = be->ops->peak_gflops(be, seconds, gflops, how);
        if (rc != CF_ERR_UNSUPPORTED) return rc;
    }
    cf_backend_info info;
    CF_TRY(cf_be_info(be, &info));
    if (info.host_threads) {
        *how = CF_PEAK_ISA " loop on every OpenMP thread, per-thread CPU time";
        return cf_bench_cpu_peak_gflops(seconds, gflops);
    }
    *how = "unknown device";
    CF_ERROR("bench: no peak measurement for device %s", cf_be_name(be));
    return CF_ERR_UNSUPPORTED;
}
