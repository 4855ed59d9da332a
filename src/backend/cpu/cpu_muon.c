/* clformer: the C backend's element-wise ops of the Muon optimizer (momentum with Nesterov,
 * scaling by a reciprocal norm held in device memory, y = alpha x + beta y). The Newton-Schulz
 * iteration itself is GEMMs (cpu_gemm.c), driven by src/model/optim.c. */
#include <math.h>

#include "backend/cpu/cpu_internal.h"

int cf_cpu_muon_momentum(cf_backend *be, cf_view buf_v, cf_view grads_v, cf_view out_v, size_t n,
                         float beta, float grad_scale) {
    (void)be;
    float *buf = cf_cpu_f32(buf_v), *out = cf_cpu_f32(out_v);
    const float *g = cf_cpu_f32(grads_v);
    const float one_m = 1.0f - beta;
    /* out may alias g: each element reads g[i] before it writes out[i] */
#pragma omp parallel for simd schedule(simd : static) if (parallel : n >= CF_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i] * grad_scale;
        const float b = beta * buf[i] + one_m * gi;
        buf[i] = b;
        out[i] = one_m * gi + beta * b;
    }
    return CF_OK;
}

int cf_cpu_scale_rnorm(cf_backend *be, cf_view x_v, cf_view sumsq_v, size_t n, float eps) {
    (void)be;
    float *x = cf_cpu_f32(x_v);
    const float s = 1.0f / (sqrtf(cf_cpu_f32(sumsq_v)[0]) + eps);
#pragma omp parallel for simd schedule(simd : static) if (parallel : n >= CF_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= s;
    return CF_OK;
}

int cf_cpu_axpby(cf_backend *be, cf_view y_v, cf_view x_v, float alpha, float beta, size_t n) {
    (void)be;
    float *y = cf_cpu_f32(y_v);
    const float *x = cf_cpu_f32(x_v);
#pragma omp parallel for simd schedule(simd : static) if (parallel : n >= CF_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = alpha * x[i] + beta * y[i];
    return CF_OK;
}
