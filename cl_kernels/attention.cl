/* clformer: the non-GEMM parts of causal self-attention. The host computes the products
 * (Q K^T, att V and their gradients) with the batched GEMM; these kernels do the causal softmax
 * and its backward, one work-group per row of the (B, NH, T, T) score tensor (exactly rows groups
 * are launched: no early exit ahead of the barriers).
 * Build-time parameter: LS, the work-group size (a power of two). */
#ifndef LS
#define LS 256
#endif

static float att_group_reduce(__local float *red, float v, int is_max) {
    int lid = get_local_id(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = LS / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] = is_max ? fmax(red[lid], red[lid + s]) : red[lid] + red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* In place on att(rows, T), rows = B*NH*T, row r is query position t = r % T: the scaled scores
 * (already multiplied by 1/sqrt(hs)) become softmax probabilities over t2 <= t; t2 > t are set to 0. */
__kernel void attention_softmax_forward(__global float *att, ulong att_off, int rows, int T) {
    __local float red[LS];
    int r = get_group_id(0), lid = get_local_id(0);
    int t = r % T;
    __global float *a = att + att_off + (size_t)r * T;
    float mx = -INFINITY;
    for (int i = lid; i <= t; i += LS) mx = fmax(mx, a[i]);
    mx = att_group_reduce(red, mx, 1);
    float s = 0.0f;
    for (int i = lid; i <= t; i += LS) s += exp(a[i] - mx);
    s = att_group_reduce(red, s, 0);
    float inv = 1.0f / s;
    for (int i = lid; i < T; i += LS) a[i] = i <= t ? exp(a[i] - mx) * inv : 0.0f;
}

/* dpreatt(rows, T) = scale * att * (datt - sum_t2 att * datt) over t2 <= t, 0 above the diagonal.
 * The scale folds the 1/sqrt(hs) of the forward into the score gradient. dpreatt may alias datt. */
__kernel void attention_softmax_backward(__global float *dpreatt, ulong dp_off,
                                         __global const float *datt, ulong da_off,
                                         __global const float *att, ulong att_off, int rows,
                                         int T, float scale) {
    __local float red[LS];
    int r = get_group_id(0), lid = get_local_id(0);
    int t = r % T;
    __global const float *a = att + att_off + (size_t)r * T;
    __global const float *da = datt + da_off + (size_t)r * T;
    __global float *dp = dpreatt + dp_off + (size_t)r * T;
    float s = 0.0f;
    for (int i = lid; i <= t; i += LS) s += a[i] * da[i];
    s = att_group_reduce(red, s, 0);
    for (int i = lid; i < T; i += LS) dp[i] = i <= t ? scale * a[i] * (da[i] - s) : 0.0f;
}
