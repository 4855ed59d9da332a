/* clformer: deterministic reductions (no atomics): full sum / sum of squares in two passes, and
 * column sums of a row-major matrix (bias and LayerNorm parameter gradients, position-embedding
 * gradient). The order of additions depends only on the launch shape the host picks for a device,
 * so repeated runs on one device give bit-identical results.
 * Build-time parameter: LS, the work-group size (a power of two). */
#ifndef LS
#define LS 256
#endif

/* group sums: cf_group_sum of cl_kernels/common.cl */

/* pass 1: partial(num_groups) = per-group sums of x(n) (or of x*x when square).
 * With x_off a multiple of 4 the work-items read float4s, two per iteration (so that twice the
 * loads are in flight) into two sums, then the n % 4 tail element by element; otherwise element by
 * element. (The float4s are taken apart at once: oclgrind's uninitialised-value checker crashes
 * on float4 arithmetic in this loop.) */
static float sq_or(float v, int square) { return square ? v * v : v; }
static float sum4(float4 a, int square) {
    return (sq_or(a.x, square) + sq_or(a.y, square)) + (sq_or(a.z, square) + sq_or(a.w, square));
}
__kernel void reduce_sum_partial(__global const float *x, ulong x_off, ulong n, int square,
                                 __global float *partial) {
    __local float red[LS];
    const size_t stride = get_global_size(0), gid = get_global_id(0);
    float s = 0.0f;
    size_t i0 = 0; /* the elements from i0 on are added one by one */
    if (x_off % 4 == 0) {
        __global const float4 *x4 = (__global const float4 *)(x + x_off);
        const size_t n4 = n / 4;
        float s1 = 0.0f;
        size_t i = gid;
        for (; i + stride < n4; i += 2 * stride) {
            const float4 a = x4[i], b = x4[i + stride];
            s += sum4(a, square);
            s1 += sum4(b, square);
        }
        if (i < n4) s += sum4(x4[i], square);
        s += s1;
        i0 = n4 * 4;
    }
    for (size_t i = i0 + gid; i < n; i += stride) s += sq_or(x[x_off + i], square);
    s = cf_group_sum(red, s);
    if (get_local_id(0) == 0) partial[get_group_id(0)] = s;
}

/* pass 2 (one work-group): out[0] = sum of partial(count) */
__kernel void reduce_sum_final(__global const float *partial, int count, __global float *out,
                               ulong out_off) {
    __local float red[LS];
    float s = 0.0f;
    for (int i = get_local_id(0); i < count; i += LS) s += partial[i];
    s = cf_group_sum(red, s);
    if (get_local_id(0) == 0) out[out_off] = s;
}

/* Column sums of x(rows, cols) with row stride ld, in work-groups of CS_C columns x CS_R row lanes:
 * a warp reads 32 consecutive floats of a row, and the lanes keep many independent loads in flight.
 * 2-D range: dim 0 = column (groups of CS_C), dim 1 = CS_R lanes per chunk of rows_per_chunk
 * consecutive rows. Lane l of a column adds the chunk's rows r0 + l, r0 + l + CS_R, ... in order,
 * then the lanes' sums are added in lane order. With direct = 0, partial(chunks, cols) receives
 * each chunk's sum; with direct = 1 (a single chunk), out(cols) += the column sums.
 * Two outputs: columns c >= split go to out2[out2_off + c - split] instead of out[out_off + c]
 * (LayerNorm's bias and weight gradients from one partial matrix); split = cols: out only. */
#define CS_C 32
#define CS_R 8
__kernel __attribute__((reqd_work_group_size(CS_C, CS_R, 1))) void
reduce_colsum_partial(__global const float *x, ulong x_off, int rows, int cols, int ld,
                      int rows_per_chunk, __global float *partial, __global float *out,
                      ulong out_off, __global float *out2, ulong out2_off, int split, int direct) {
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
        if (direct && c < split)
            out[out_off + c] += s;
        else if (direct)
            out2[out2_off + c - split] += s;
        else
            partial[(size_t)chunk * cols + c] = s;
    }
}

/* out(cols) += sum over chunks of partial(chunks, cols): lane l adds chunks l, l + CS_R, ... in
 * order, then the lanes' sums in lane order; columns from split on into out2 as above. Range
 * (ceil(cols / CS_C) * CS_C, CS_R). */
__kernel __attribute__((reqd_work_group_size(CS_C, CS_R, 1))) void
reduce_colsum_final(__global const float *partial, int chunks, int cols, __global float *out,
                    ulong out_off, __global float *out2, ulong out2_off, int split) {
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
        if (c < split)
            out[out_off + c] += s;
        else
            out2[out2_off + c - split] += s;
    }
}
