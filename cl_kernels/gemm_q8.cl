/* clformer: linear layers with int8 weights (weight-only, symmetric, one scale per output
 * channel). Built with -DLS=<work-group size> (a power of two) and -DQ8_ROWS. */
#ifndef Q8_ROWS
#define Q8_ROWS 8
#endif

/* C(M,N) = A(M,K) @ (scale[n] * W(N,K))^T (+ bias): one work-group of LS items per output channel
 * n (dimension 0) and tile of Q8_ROWS rows of A (dimension 1); the items stride over K, so a
 * weight row is read once per tile, coalesced, and dequantised in registers. */
__kernel void gemm_q8_rows(int M, int N, int K, __global const float *A, ulong a_off, int lda,
                           __global const char *W, ulong w_off, __global const float *scale,
                           ulong s_off, __global const float *bias, ulong b_off, int has_bias,
                           __global float *C, ulong c_off, int ldc) {
    __local float red[LS];
    const int n = get_group_id(0), m0 = get_group_id(1) * Q8_ROWS, lid = get_local_id(0);
    float acc[Q8_ROWS];
    for (int i = 0; i < Q8_ROWS; i++) acc[i] = 0.0f;
    const int mr = M - m0 < Q8_ROWS ? M - m0 : Q8_ROWS;
    __global const char *w = W + w_off + (size_t)n * K;
    for (int k = lid; k < K; k += LS) {
        const float wk = (float)w[k];
        for (int i = 0; i < mr; i++) acc[i] += A[a_off + (size_t)(m0 + i) * lda + k] * wk;
    }
    const float s = scale[s_off + n], bb = has_bias ? bias[b_off + n] : 0.0f;
    for (int i = 0; i < mr; i++) {
        const float v = cf_group_sum(red, acc[i]);
        if (lid == 0) C[c_off + (size_t)(m0 + i) * ldc + n] = v * s + bb;
    }
}

/* T(rows,K) = scale[n0 + r] * W(n0 + r, :): a tile of dequantised rows for the products with many
 * rows of A, which then go through the backend's GEMM (the tile is scratch, not a weight copy). */
__kernel void gemm_q8_dequant(__global float *T, __global const char *W, ulong w_off,
                              __global const float *scale, ulong s_off, int n0, int rows, int K) {
    const size_t i = get_global_id(0);
    if (i >= (size_t)rows * K) return;
    const int r = (int)(i / K);
    T[i] = scale[s_off + n0 + r] * (float)W[w_off + (size_t)n0 * K + i];
}

/* The same for f32 weights (the backend's products of a few rows against a weight stored (N,K),
 * decode): C = alpha * A @ W^T + beta * C (beta 0 never reads C) + bias. */
__kernel void gemm_f32_rows(int M, int N, int K, float alpha, __global const float *A, ulong a_off,
                            int lda, __global const float *W, ulong w_off, int ldw, float beta,
                            __global const float *bias, ulong b_off, int has_bias,
                            __global float *C, ulong c_off, int ldc) {
    __local float red[LS];
    const int n = get_group_id(0), m0 = get_group_id(1) * Q8_ROWS, lid = get_local_id(0);
    float acc[Q8_ROWS];
    for (int i = 0; i < Q8_ROWS; i++) acc[i] = 0.0f;
    const int mr = M - m0 < Q8_ROWS ? M - m0 : Q8_ROWS;
    __global const float *w = W + w_off + (size_t)n * ldw;
    for (int k = lid; k < K; k += LS) {
        const float wk = w[k];
        for (int i = 0; i < mr; i++) acc[i] += A[a_off + (size_t)(m0 + i) * lda + k] * wk;
    }
    const float bb = has_bias ? bias[b_off + n] : 0.0f;
    for (int i = 0; i < mr; i++) {
        const float v = cf_group_sum(red, acc[i]);
        if (lid == 0) {
            __global float *c = C + c_off + (size_t)(m0 + i) * ldc + n;
            *c = alpha * v + (beta != 0.0f ? beta * *c : 0.0f) + bb;
        }
    }
}

/* out(N,C) (=, or += with accumulate) scale[id] * W(id, :), id = ids[r] clamped into [0, V):
 * the rows of an int8 embedding table, one item per output element. */
__kernel void embed_q8(__global float *out, ulong out_off, __global const int *ids, ulong ids_off,
                       __global const char *W, ulong w_off, __global const float *scale,
                       ulong s_off, int N, int C, int V, int accumulate) {
    const size_t gid = get_global_id(0);
    if (gid >= (size_t)N * C) return;
    const int r = (int)(gid / C), k = (int)(gid - (size_t)r * C);
    int id = ids[ids_off + r];
    id = id < 0 ? 0 : id >= V ? V - 1 : id;
    const float v = scale[s_off + id] * (float)W[w_off + (size_t)id * C + k];
    __global float *o = out + out_off + gid;
    *o = accumulate ? *o + v : v;
}
