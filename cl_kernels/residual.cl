/* clformer: element-wise kernels: residual add, axpy, fill, copy, bias add and bias gradient.
 * Every tensor argument is a buffer plus an element offset (views into the backend's big buffers).
 * Build-time parameter: none. */

/* out(n) = a(n) + b(n); out may alias a or b */
__kernel void residual_forward(__global float *out, ulong out_off, __global const float *a,
                               ulong a_off, __global const float *b, ulong b_off, ulong n) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    out[out_off + i] = a[a_off + i] + b[b_off + i];
}

/* y(n) += alpha * x(n) */
__kernel void residual_axpy(__global float *y, ulong y_off, __global const float *x, ulong x_off,
                            float alpha, ulong n) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    y[y_off + i] += alpha * x[x_off + i];
}

/* dst(n) = value */
__kernel void residual_fill(__global float *dst, ulong dst_off, float value, ulong n) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    dst[dst_off + i] = value;
}

/* dst(n) = src(n), the two ranges must not overlap (the host stages overlapping copies) */
__kernel void residual_copy(__global float *dst, ulong dst_off, __global const float *src,
                            ulong src_off, ulong n) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    dst[dst_off + i] = src[src_off + i];
}

/* out(N,OC) += bias(OC) broadcast over rows; 2-D range: dim 0 = column, dim 1 = row */
__kernel void residual_add_bias(__global float *out, ulong out_off, __global const float *bias,
                                ulong bias_off, int N, int OC) {
    int c = get_global_id(0), r = get_global_id(1);
    if (c >= OC || r >= N) return;
    out[out_off + (size_t)r * OC + c] += bias[bias_off + c];
}
