/* clformer: token + position embedding, forward and backward.
 * The token-embedding gradient is a scatter by token id. To stay deterministic without float
 * atomics, the backward first ranks the positions by (token, position) -- a stable counting sort
 * done by comparisons, O((B*T)^2) integer compares, which a GPU does in well under a millisecond at
 * B*T = 16K -- then one work-item per (run of equal tokens, channel) adds the gradient rows of that
 * token in position order, exactly the order of a sequential loop over (b, t).
 * Tokens outside the embedding table (0..V-1, V = rows the wte view holds) give NaN outputs in the
 * forward and are skipped by the backward, instead of reading or writing out of bounds.
 * Build-time parameter: LS, the work-group size of encoder_rank. */
#ifndef LS
#define LS 256
#endif

/* out(B,T,C) = wte[tokens[b,t]] + wpe[t]; 1-D range over B*T*C */
__kernel void encoder_forward(__global float *out, ulong out_off, __global const int *tokens,
                              ulong tok_off, __global const float *wte, ulong wte_off,
                              __global const float *wpe, ulong wpe_off, int B, int T, int C,
                              long V) {
    size_t i = get_global_id(0);
    size_t n = (size_t)B * T * C;
    if (i >= n) return;
    size_t bt = i / C;
    int c = (int)(i - bt * C);
    int t = (int)(bt % T);
    int tok = tokens[tok_off + bt];
    out[out_off + i] = (tok >= 0 && tok < V)
                           ? wte[wte_off + (size_t)tok * C + c] + wpe[wpe_off + (size_t)t * C + c]
                           : NAN;
}

/* sorted(n): sorted[rank(i)] = i where rank orders positions by (token, position) */
__kernel void encoder_rank(__global const int *tokens, ulong tok_off, int n,
                           __global int *sorted) {
    __local int tile[LS];
    int i = get_global_id(0), lid = get_local_id(0);
    int key = i < n ? tokens[tok_off + i] : 0;
    int rank = 0;
    for (int j0 = 0; j0 < n; j0 += LS) {
        int j = j0 + lid;
        tile[lid] = j < n ? tokens[tok_off + j] : 0;
        barrier(CLK_LOCAL_MEM_FENCE);
        int cnt = min(LS, n - j0);
        for (int jj = 0; jj < cnt; jj++) {
            int kj = tile[jj];
            rank += (kj < key) | ((kj == key) & (j0 + jj < i));
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (i < n) sorted[rank] = i;
}

/* dwte(V,C) += dout rows gathered by token. 2-D range: dim 0 = channel, dim 1 = slot of sorted.
 * Only the first slot of each run of equal tokens does work. */
__kernel void encoder_backward_wte(__global float *dwte, ulong dwte_off, __global const float *dout,
                                   ulong dout_off, __global const int *tokens, ulong tok_off,
                                   __global const int *sorted, int n, int C, long V) {
    int c = get_global_id(0), s = get_global_id(1);
    if (c >= C || s >= n) return;
    int tok = tokens[tok_off + sorted[s]];
    if (tok < 0 || tok >= V) return;
    if (s > 0 && tokens[tok_off + sorted[s - 1]] == tok) return;
    __global float *w = dwte + dwte_off + (size_t)tok * C + c;
    float acc = *w;
    for (int s2 = s; s2 < n; s2++) {
        int pos = sorted[s2];
        if (s2 > s && tokens[tok_off + pos] != tok) break;
        acc += dout[dout_off + (size_t)pos * C + c];
    }
    *w = acc;
}
