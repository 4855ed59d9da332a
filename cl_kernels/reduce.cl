/* clformer: deterministic reductions (no atomics): full sum / sum of squares in two passes, and
 * column sums of a row-major matrix (bias and LayerNorm parameter gradients, position-embedding
 * gradient). The order of additions depends only on the launch shape the host picks for a device,
 * so repeated runs on one device give bit-identical results.
 * Build-time parameter: LS, the work-group size (a power of two). */
#ifndef LS
#define LS 256
#endif

/* tree sum of one value per work-item over the group; every work-item gets the result */
static float group_sum(__local float *red, float v) {
    int lid = get_local_id(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = LS / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] += red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* pass 1: partial(num_groups) = per-group sums of x(n) (or of x*x when square) */
__kernel void reduce_sum_partial(__global const float *x, ulong x_off, ulong n, int square,
                                 __global float *partial) {
    __local float red[LS];
    size_t stride = get_global_size(0);
    float s = 0.0f;
    for (size_t i = get_global_id(0); i < n; i += stride) {
        float v = x[x_off + i];
        s += square ? v * v : v;
    }
    s = group_sum(red, s);
    if (get_local_id(0) == 0) partial[get_group_id(0)] = s;
}

/* pass 2 (one work-group): out[0] = sum of partial(count) */
__kernel void reduce_sum_final(__global const float *partial, int count, __global float *out,
                               ulong out_off) {
    __local float red[LS];
    float s = 0.0f;
    for (int i = get_local_id(0); i < count; i += LS) s += partial[i];
    s = group_sum(red, s);
    if (get_local_id(0) == 0) out[out_off] = s;
}

/* Column sums of x(rows, cols) with row stride ld. 2-D range: dim 0 = column, dim 1 = chunk of
 * rows_per_chunk consecutive rows. With direct = 0, partial(chunks, cols) receives each chunk's sum;
 * with direct = 1 (a single chunk), out(cols) += the rows, added in row order. */
__kernel void reduce_colsum_partial(__global const float *x, ulong x_off, int rows, int cols,
                                    int ld, int rows_per_chunk, __global float *partial,
                                    __global float *out, ulong out_off, int direct) {
    int c = get_global_id(0), chunk = get_global_id(1);
    if (c >= cols) return;
    int r0 = chunk * rows_per_chunk;
    int r1 = min(rows, r0 + rows_per_chunk);
    __global const float *p = x + x_off + c;
    if (direct) {
        float acc = out[out_off + c];
        for (int r = r0; r < r1; r++) acc += p[(size_t)r * ld];
        out[out_off + c] = acc;
    } else {
        float acc = 0.0f;
        for (int r = r0; r < r1; r++) acc += p[(size_t)r * ld];
        partial[(size_t)chunk * cols + c] = acc;
    }
}

/* out(cols) += sum over chunks of partial(chunks, cols), chunks added in order */
__kernel void reduce_colsum_final(__global const float *partial, int chunks, int cols,
                                  __global float *out, ulong out_off) {
    int c = get_global_id(0);
    if (c >= cols) return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++) s += partial[(size_t)k * cols + c];
    out[out_off + c] += s;
}
