/* clformer: token + position embedding, forward and backward.
 * The token-embedding gradient is a scatter by token id. To stay deterministic without float
 * atomics, the backward first orders the positions by (token, position) -- a stable counting sort
 * done by comparisons (encoder_rank: one launch, the compares of each position split over several
 * items of a work-group so that even a few thousand positions fill a large GPU, integer counts
 * added exactly) -- then one work-item per 4 channels adds up each run of equal tokens in
 * position order (encoder_backward_wte): exactly the order of a sequential loop over (b, t), so
 * the result is bit-identical to the CPU backend's and the same on every run.
 * Token ids are clamped into the table, [0, V) with V the vocab size passed by the host (the
 * contract of backend.h, the same on every backend): an id < 0 uses row 0, an id >= V row V-1, so
 * no id reads or writes outside wte. encoder_rank clamps as it reads, so the runs of the backward
 * are runs of clamped ids and each row of dwte is written by one item.
 * Build-time parameter: LS, the work-group size of encoder_rank. */
#ifndef LS
#define LS 256
#endif
/* encoder_rank: tokens staged in local memory per pass (ints) */
#define RANK_TILE (4 * LS)
/* encoder_backward_wte: rows of a run loaded together, before their adds in order */
#define RUN_BATCH 16

/* out(B,T,C) = wte[tokens[b,t] clamped into [0, V)] + wpe[t]; without wpe (has_wpe == 0: not
 * read; RoPE models have no position table) the token rows alone; 1-D range over B*T*C */
__kernel void encoder_forward(__global float *out, ulong out_off, __global const int *tokens,
                              ulong tok_off, __global const float *wte, ulong wte_off,
                              __global const float *wpe, ulong wpe_off, int has_wpe, int B,
                              int T, int C, long V) {
    size_t i = get_global_id(0);
    size_t n = (size_t)B * T * C;
    if (i >= n) return;
    size_t bt = i / C;
    int c = (int)(i - bt * C);
    int t = (int)(bt % T);
    const long tok = clamp((long)tokens[tok_off + bt], 0L, V - 1);
    float v = wte[wte_off + (size_t)tok * C + c];
    if (has_wpe) v += wpe[wpe_off + (size_t)t * C + c];
    out[out_off + i] = v;
}

/* order(3, n): for the position i of rank r in (token, position) order, token ids clamped into
 * [0, V), order[r] = i, order[n + r] = the clamped tokens[i] and order[2n + r] = the number
 * of positions holding that token.
 * Work-groups of LS items rank P positions each (P a power of two dividing LS, chosen by the host
 * so that there are enough groups to fill the device); the Q = LS / P items of one position each
 * compare it with every Q-th token of a tile, and their integer counts are added in local memory,
 * so the result is exact and does not depend on P. O(n^2) compares in all, n / P groups.
 * The loops run the same number of times on every item of a group (no item-dependent bounds or
 * branches), which lets CPU compilers run the items of a group as vector lanes. */
__kernel void encoder_rank(__global const int *tokens, ulong tok_off, int n, int P, int V,
                           __global int *order) {
    __local int tile[RANK_TILE];
    __local int part[2 * LS];
    const int lid = get_local_id(0), Q = LS / P, p = lid / Q, q = lid - p * Q;
    const int i = get_group_id(0) * P + p;
    const int key = i < n ? clamp(tokens[tok_off + i], 0, V - 1) : 0;
    int rank = 0, count = 0; /* tokens before (key, i); tokens == key */
    for (int j0 = 0; j0 < n; j0 += RANK_TILE) {
        for (int t = lid; t < RANK_TILE; t += LS)
            tile[t] = j0 + t < n ? clamp(tokens[tok_off + j0 + t], 0, V - 1) : 0;
        /* every item's share of the tile stored before any item reads it */
        barrier(CLK_LOCAL_MEM_FENCE);
        const int m = min(RANK_TILE, n - j0), steps = (m + Q - 1) / Q;
        for (int t = 0; t < steps; t++) {
            int jj = t * Q + q, in = jj < m, kj = in ? tile[jj] : 0;
            int eq = in & (kj == key);
            rank += (in & (kj < key)) | (eq & (j0 + jj < i));
            count += eq;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    part[lid] = rank;
    part[LS + lid] = count;
    for (int h = Q >> 1; h > 0; h >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (q < h) {
            part[lid] += part[lid + h];
            part[LS + lid] += part[LS + lid + h];
        }
    }
    if (q == 0 && i < n) {
        const int r = part[lid];
        order[r] = i;
        order[(size_t)n + r] = key;
        order[(size_t)2 * n + r] = part[LS + lid];
    }
}

/* acc(4) + the rows dout[pos[k]] (4 channels at d), k = 0..len-1, added in that order. The loads
 * of RUN_BATCH rows are issued before their adds, so a long run waits on memory once per batch
 * instead of once per row. */
static float4 run_sum4(float4 acc, const __global float *d, const __global int *pos, int len,
                       int C) {
    int k = 0;
    for (; k + RUN_BATCH <= len; k += RUN_BATCH) {
        float4 v[RUN_BATCH];
#pragma unroll
        for (int u = 0; u < RUN_BATCH; u++) v[u] = vload4(0, d + (size_t)pos[k + u] * C);
#pragma unroll
        for (int u = 0; u < RUN_BATCH; u++) acc += v[u];
    }
    if (k < len) {
        float4 v[RUN_BATCH];
#pragma unroll
        for (int u = 0; u < RUN_BATCH; u++)
            if (k + u < len) v[u] = vload4(0, d + (size_t)pos[k + u] * C);
#pragma unroll
        for (int u = 0; u < RUN_BATCH; u++)
            if (k + u < len) acc += v[u];
    }
    return acc;
}

/* the same for one channel (the last 1-3 channels when C is not a multiple of 4) */
static float run_sum1(float acc, const __global float *d, const __global int *pos, int len,
                      int C) {
    for (int k = 0; k < len; k++) acc += d[(size_t)pos[k] * C];
    return acc;
}

/* dwte(V,C) += the dout(n,C) rows of each token, added in position order. order(3, n) comes from
 * encoder_rank. 2-D range: dim 0 = 4 channels c..c+3 per item, dim 1 = a block of SB slots of
 * order; an item adds up the runs whose first slot lies in its block. */
__kernel void encoder_backward_wte(__global float *dwte, ulong dwte_off, __global const float *dout,
                                   ulong dout_off, __global const int *order, int n, int C, long V,
                                   int SB) {
    const int c = 4 * (int)get_global_id(0);
    const size_t s0 = get_global_id(1) * (size_t)SB;
    if (c >= C || s0 >= (size_t)n) return;
    const int s1 = (int)min(s0 + (size_t)SB, (size_t)n);
    const __global float *d = dout + dout_off + c;
    for (int s = (int)s0; s < s1; s++) {
        const int tok = order[(size_t)n + s];
        if ((s > 0 && order[(size_t)n + s - 1] == tok) || tok < 0 || tok >= V)
            continue; /* not the first slot of its run (ids are clamped: never outside the table) */
        const int len = order[(size_t)2 * n + s];
        __global float *w = dwte + dwte_off + (size_t)tok * C + c;
        if (C - c >= 4) {
            vstore4(run_sum4(vload4(0, w), d, order + s, len, C), 0, w);
        } else {
            for (int cc = 0; cc < C - c; cc++) w[cc] = run_sum1(w[cc], d + cc, order + s, len, C);
        }
    }
}
