/* clformer: RMSNorm over groups of a row, forward and backward.
 * RMSNorm: inp has N rows of stride ld (elements); each row holds G groups of C contiguous
 * elements from column 0. A plain norm is G = 1, ld = C; the per-head q/k norm is G = heads,
 * C = head size, ld = the qkv row. Unit u = row * G + group; elements outside the groups are not
 * touched. rstd = 1 / sqrt(mean(x^2) + eps), out = x * rstd * weight(C).
 * Forward: one work-group per unit (exactly N*G groups: no early exit ahead of the barriers).
 * Backward: a fixed number of work-groups walk the units; each keeps its dweight sums in its own
 * row of a scratch buffer (no atomics), which the host adds into dweight with the column-sum
 * kernels, so results are deterministic.
 * Build-time parameter: LS, the work-group size (a power of two). */
#ifndef LS
#define LS 256
#endif

static inline size_t rms_base(int u, int G, int C, int ld) {
    const int row = u / G, g = u - row * G;
    return (size_t)row * ld + (size_t)g * C;
}

/* out = x * rstd * weight; rstd(N*G) saved when save != 0; out may alias inp (each element is
 * read by the work-item that writes it, after the group's sum) */
__kernel void rmsnorm_forward(__global float *out, ulong out_off, __global float *rstd,
                              ulong rstd_off, int save, __global const float *inp, ulong inp_off,
                              __global const float *weight, ulong w_off, int G, int C, int ld,
                              float eps) {
    __local float red[LS];
    const int u = get_group_id(0), lid = get_local_id(0);
    const size_t base = rms_base(u, G, C, ld);
    __global const float *x = inp + inp_off + base;
    __global float *o = out + out_off + base;
    __global const float *w = weight + w_off;
    float s = 0.0f;
    for (int c = lid; c < C; c += LS) s += x[c] * x[c];
    const float rs = 1.0f / sqrt(cf_group_sum(red, s) / C + eps);
    for (int c = lid; c < C; c += LS) o[c] = x[c] * rs * w[c];
    if (save && lid == 0) rstd[rstd_off + u] = rs;
}

/* With xh = x * rstd and dn = weight * dout: dx = rstd * (dn - xh * mean(dn * xh)), ASSIGNED
 * (accumulate == 0; dinp may alias dout) or added (accumulate == 1); partial(num_groups, C):
 * row g holds work-group g's sums of dout * xh over its units (for dweight). Each work-item owns
 * columns lid, lid + LS, ... of its group's partial row: no races. */
__kernel void rmsnorm_backward(__global float *dinp, ulong dinp_off, __global float *partial,
                               __global const float *dout, ulong dout_off,
                               __global const float *inp, ulong inp_off,
                               __global const float *weight, ulong w_off,
                               __global const float *rstd, ulong rstd_off, int units, int G,
                               int C, int ld, int accumulate) {
    __local float red[LS];
    const int g = get_group_id(0), ng = get_num_groups(0), lid = get_local_id(0);
    __global float *pw = partial + (size_t)g * C;
    __global const float *w = weight + w_off;
    for (int c = lid; c < C; c += LS) pw[c] = 0.0f;
    for (int u = g; u < units; u += ng) {
        const size_t base = rms_base(u, G, C, ld);
        __global const float *x = inp + inp_off + base;
        __global const float *dy = dout + dout_off + base;
        __global float *dx = dinp + dinp_off + base;
        const float rs = rstd[rstd_off + u];
        float s = 0.0f;
        for (int c = lid; c < C; c += LS) s += w[c] * dy[c] * (x[c] * rs);
        /* ends with a barrier: every dy of the unit is read before any dx is written */
        const float m = cf_group_sum(red, s) / C;
        for (int c = lid; c < C; c += LS) {
            const float xh = x[c] * rs, d = dy[c];
            const float v = rs * (w[c] * d - xh * m);
            pw[c] += d * xh;
            dx[c] = accumulate ? dx[c] + v : v;
        }
    }
}
