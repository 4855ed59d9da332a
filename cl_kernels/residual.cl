/* clformer: element-wise kernels: residual add, axpy, fill, copy, bias add and bias gradient.
 * Every tensor argument is a buffer plus an element offset (views into the backend's big buffers).
 * residual_forward and residual_fill give each work-item 4 consecutive elements (i = 4 * global id):
 * when the host says `aligned` (every offset a multiple of 4 elements, so 16-byte aligned) a whole
 * group of 4 moves as one float4, which a GPU's memory system needs to come near its bandwidth;
 * otherwise, and for the last partial group, element by element.
 * Build-time parameter: none. */

/* out(n) = a(n) + b(n); out may alias a or b; range ceil(n / 4) */
__kernel void residual_forward(__global float *out, ulong out_off, __global const float *a,
                               ulong a_off, __global const float *b, ulong b_off, ulong n,
                               int aligned) {
    const size_t i = get_global_id(0) * 4;
    if (i >= n) return;
    if (aligned && i + 4 <= n) {
        *(__global float4 *)(out + out_off + i) =
            *(__global const float4 *)(a + a_off + i) + *(__global const float4 *)(b + b_off + i);
        return;
    }
    for (size_t e = i; e < n && e < i + 4; e++) out[out_off + e] = a[a_off + e] + b[b_off + e];
}

/* y(n) += alpha * x(n) */
__kernel void residual_axpy(__global float *y, ulong y_off, __global const float *x, ulong x_off,
                            float alpha, ulong n) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    y[y_off + i] += alpha * x[x_off + i];
}

/* dst(n) = value; range ceil(n / 4) */
__kernel void residual_fill(__global float *dst, ulong dst_off, float value, ulong n,
                            int aligned) {
    const size_t i = get_global_id(0) * 4;
    if (i >= n) return;
    if (aligned && i + 4 <= n) {
        *(__global float4 *)(dst + dst_off + i) = (float4)(value);
        return;
    }
    for (size_t e = i; e < n && e < i + 4; e++) dst[dst_off + e] = value;
}

/* dst(n) = src(n), the two ranges must not overlap (the host stages overlapping copies) */
__kernel void residual_copy(__global float *dst, ulong dst_off, __global const float *src,
                            ulong src_off, ulong n) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    dst[dst_off + i] = src[src_off + i];
}

/* Conversions between float and the half storage types (the host's cf_be_copy across dtypes):
 * to nearest even, NaN stays NaN, overflow gives +-Inf, subnormals kept; offsets in elements of
 * each side's type. f16 through vload_half/vstore_half_rte (no cl_khr_fp16 needed), bf16 as
 * ushort (common.cl's cf_float_to_bf16). Four values a work-item (ceil(n/4) work-items): the
 * offsets need no alignment (vloadn/vstoren need only the element's). */
__kernel void convert_to_f16(__global half *dst, ulong dst_off, __global const float *src,
                             ulong src_off, ulong n) {
    const size_t i = get_global_id(0) * 4;
    if (i + 4 <= n) {
        const float4 v = vload4(0, src + src_off + i);
        vstore_half_rte(v.x, dst_off + i, dst);
        vstore_half_rte(v.y, dst_off + i + 1, dst);
        vstore_half_rte(v.z, dst_off + i + 2, dst);
        vstore_half_rte(v.w, dst_off + i + 3, dst);
        return;
    }
    for (size_t e = i; e < n; e++) vstore_half_rte(src[src_off + e], dst_off + e, dst);
}
__kernel void convert_from_f16(__global float *dst, ulong dst_off, __global const half *src,
                               ulong src_off, ulong n) {
    const size_t i = get_global_id(0) * 4;
    if (i + 4 <= n) {
        const float4 v = (float4)(vload_half(src_off + i, src), vload_half(src_off + i + 1, src),
                                  vload_half(src_off + i + 2, src), vload_half(src_off + i + 3, src));
        vstore4(v, 0, dst + dst_off + i);
        return;
    }
    for (size_t e = i; e < n; e++) dst[dst_off + e] = vload_half(src_off + e, src);
}
__kernel void convert_to_bf16(__global ushort *dst, ulong dst_off, __global const float *src,
                              ulong src_off, ulong n) {
    const size_t i = get_global_id(0) * 4;
    if (i + 4 <= n) {
        const float4 v = vload4(0, src + src_off + i);
        vstore4((ushort4)(cf_float_to_bf16(v.x), cf_float_to_bf16(v.y), cf_float_to_bf16(v.z),
                          cf_float_to_bf16(v.w)),
                0, dst + dst_off + i);
        return;
    }
    for (size_t e = i; e < n; e++) dst[dst_off + e] = cf_float_to_bf16(src[src_off + e]);
}
__kernel void convert_from_bf16(__global float *dst, ulong dst_off, __global const ushort *src,
                                ulong src_off, ulong n) {
    const size_t i = get_global_id(0) * 4;
    if (i + 4 <= n) {
        const ushort4 h = vload4(0, src + src_off + i);
        vstore4((float4)(cf_bf16_to_float(h.x), cf_bf16_to_float(h.y), cf_bf16_to_float(h.z),
                         cf_bf16_to_float(h.w)),
                0, dst + dst_off + i);
        return;
    }
    for (size_t e = i; e < n; e++) dst[dst_off + e] = cf_bf16_to_float(src[src_off + e]);
}

/* out(N,OC) += bias(OC) broadcast over rows; 2-D range: dim 0 = column, dim 1 = row */
__kernel void residual_add_bias(__global float *out, ulong out_off, __global const float *bias,
                                ulong bias_off, int N, int OC) {
    int c = get_global_id(0), r = get_global_id(1);
    if (c >= OC || r >= N) return;
    out[out_off + (size_t)r * OC + c] += bias[bias_off + c];
}
