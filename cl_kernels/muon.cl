/* clformer: the element-wise kernels of the Muon optimizer (src/model/optim.c runs the
 * Newton-Schulz iteration as GEMMs around them). One work-item per element.
 * Build-time parameter: none. */

/* g = grads * grad_scale; buf = beta * buf + (1 - beta) * g; out = (1 - beta) * g + beta * buf
 * (Nesterov, with the new buf). out may alias grads (read before written), not buf. */
__kernel void muon_momentum(__global float *buf, ulong buf_off, __global const float *grads,
                            ulong g_off, __global float *out, ulong out_off, ulong n, float beta,
                            float grad_scale) {
    const size_t i = get_global_id(0);
    if (i >= n) return;
    const float one_m = 1.0f - beta;
    const float g = grads[g_off + i] * grad_scale;
    const float b = beta * buf[buf_off + i] + one_m * g;
    buf[buf_off + i] = b;
    out[out_off + i] = one_m * g + beta * b;
}

/* x(n) *= 1 / (sqrt(sumsq[0]) + eps) */
__kernel void muon_scale_rnorm(__global float *x, ulong x_off, __global const float *sumsq,
                               ulong s_off, ulong n, float eps) {
    const size_t i = get_global_id(0);
    if (i >= n) return;
    const float s = 1.0f / (sqrt(sumsq[s_off]) + eps);
    x[x_off + i] *= s;
}

/* y(n) = alpha * x(n) + beta * y(n) */
__kernel void muon_axpby(__global float *y, ulong y_off, __global const float *x, ulong x_off,
                         float alpha, float beta, ulong n) {
    const size_t i = get_global_id(0);
    if (i >= n) return;
    y[y_off + i] = alpha * x[x_off + i] + beta * y[y_off + i];
}
