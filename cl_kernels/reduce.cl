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

/* Column sums of x(rows, cols) with row stride ld, in work-groups of CS_C columns x CS_R row lanes:
 * a warp reads 32 consecutive floats of a row, and the lanes keep many independent loads in flight.
 * 2-D range: dim 0 = column (groups of CS_C), dim 1 = CS_R lanes per chunk of rows_per_chunk
 * consecutive rows. Lane l of a column adds the chunk's rows r0 + l, r0 + l + CS_R, ... in order,
 * then the lanes' sums are added in lane order. With direct = 0, partial(chunks, cols) receives
 * each chunk's sum; with direct = 1 (a single chunk), out(cols) += the column sums. */
#define CS_C 32
#define CS_R 8
__kernel __attribute__((reqd_work_group_size(CS_C, CS_R, 1))) void
reduce_colsum_partial(__global const float *x, ulong x_off, int rows, int cols, int ld,
                      int rows_per_chunk, __global float *partial, __global float *out,
                      ulong out_off, int direct) {
    __local float red[CS_R * CS_C];
    const int lx = get_local_id(0), ly = get_local_id(1);
    const int c = get_group_id(0) * CS_C + lx, chunk = get_group_id(1);
    const int r0 = chunk * rows_per_chunk, r1 = min(rows, r0 + rows_per_chunk);
    float acc = 0.0f;
    if (c < cols) {
        __global const float *p = x + x_off + c;
        for (int r = r0 + ly; r < r1; r += CS_R) acc += p[(size_t)r * ld];
    }
    red[ly * CS_C + lx] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (ly == 0 && c < cols) {
        float s = red[lx];
        for (int l = 1; l < CS_R; l++) s += red[l * CS_C + lx];
        if (direct)
            out[out_off + c] += s;
        else
            partial[(size_t)chunk * cols + c] = s;
    }
}

/* out(cols) += sum over chunks of partial(chunks, cols): lane l adds chunks l, l + CS_R, ... in
 * order, then the lanes' sums in lane order. Range (ceil(cols / CS_C) * CS_C, CS_R). */
__kernel __attribute__((reqd_work_group_size(CS_C, CS_R, 1))) void
reduce_colsum_final(__global const float *partial, int chunks, int cols, __global float *out,
                    ulong out_off) {
    __local float red[CS_R * CS_C];
    const int lx = get_local_id(0), ly = get_local_id(1);
    const int c = get_group_id(0) * CS_C + lx;
    float acc = 0.0f;
    if (c < cols)
        for (int k = ly; k < chunks; k += CS_R) acc += partial[(size_t)k * cols + c];
    red[ly * CS_C + lx] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (ly == 0 && c < cols) {
        float s = red[lx];
        for (int l = 1; l < CS_R; l++) s += red[l * CS_C + lx];
        out[out_off + c] += s;
    }
}
