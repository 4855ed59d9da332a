/* clformer: LayerNorm over the last dimension (eps from the host), forward and backward.
 * Forward: one work-group per row (exactly N groups: no early exit ahead of the barriers). Backward: a fixed number of work-groups walk the rows; each keeps
 * private partial sums of dweight/dbias in its own row of a scratch buffer (no atomics), which the
 * host then adds into dweight/dbias with reduce_colsum_partial, so results are deterministic.
 * Build-time parameter: LS, the work-group size (a power of two). */
#ifndef LS
#define LS 256
#endif


/* out(N,C) = (inp - mean) * rstd * weight(C) + bias(C), rstd = 1 / sqrt(var + eps); without
 * the bias (has_bias == 0: bias is not read) when the model has none; mean(N), rstd(N) saved when
 * save != 0 */
__kernel void layernorm_forward(__global float *out, ulong out_off, __global float *mean,
                                ulong mean_off, __global float *rstd, ulong rstd_off, int save,
                                __global const float *inp, ulong inp_off,
                                __global const float *weight, ulong w_off,
                                __global const float *bias, ulong b_off, int has_bias, int N,
                                int C, float eps) {
    __local float red[LS];
    int row = get_group_id(0), lid = get_local_id(0);
    __global const float *x = inp + inp_off + (size_t)row * C;
    __global float *o = out + out_off + (size_t)row * C;
    __global const float *w = weight + w_off;
    __global const float *b = bias + b_off;
    float s = 0.0f;
    for (int c = lid; c < C; c += LS) s += x[c];
    float m = cf_group_sum(red, s) / C;
    float v = 0.0f;
    for (int c = lid; c < C; c += LS) {
        float d = x[c] - m;
        v += d * d;
    }
    float var = cf_group_sum(red, v) / C;
    float rs = 1.0f / sqrt(var + eps);
    if (has_bias) /* uniform over the group */
        for (int c = lid; c < C; c += LS) o[c] = (x[c] - m) * rs * w[c] + b[c];
    else
        for (int c = lid; c < C; c += LS) o[c] = (x[c] - m) * rs * w[c];
    if (save && lid == 0) {
        mean[mean_off + row] = m;
        rstd[rstd_off + row] = rs;
    }
}

/* Both sums of a row in one reduction: cf_group_sum2 (cl_kernels/common.cl). */

/* Columns per work-item kept in registers by the backward (C <= LN_CPT * LS); wider rows take the
 * loop below, which keeps the sums in the partial buffer instead. */
#define LN_CPT 8

/* dinp(N,C) += LayerNorm input gradient; partial(num_groups, 2C): row g holds work-group g's sums
 * over its rows of dout (columns 0..C-1, for dbias) and dout * norm (columns C..2C-1, dweight).
 * Each work-item owns columns lid, lid+LS, ...: it keeps their normalised inputs, gradients and
 * running sums in registers, so a row is read once and the partial row written once at the end. */
__kernel void layernorm_backward(__global float *dinp, ulong dinp_off, __global float *partial,
                                 __global const float *dout, ulong dout_off,
                                 __global const float *inp, ulong inp_off,
                                 __global const float *weight, ulong w_off,
                                 __global const float *mean, ulong mean_off,
                                 __global const float *rstd, ulong rstd_off, int N, int C) {
    __local float red[LS];
    __local float2 red2[LS];
    int g = get_group_id(0), ng = get_num_groups(0), lid = get_local_id(0);
    __global float *pb = partial + (size_t)g * 2 * C; /* this group's dbias sums */
    __global float *pw = pb + C;                       /* this group's dweight sums */
    __global const float *w = weight + w_off;
    if (C <= LN_CPT * LS) {
        float wv[LN_CPT], ab[LN_CPT], aw[LN_CPT];
#pragma unroll
        for (int j = 0; j < LN_CPT; j++) {
            const int c = lid + j * LS;
            wv[j] = c < C ? w[c] : 0.0f;
            ab[j] = 0.0f;
            aw[j] = 0.0f;
        }
        for (int row = g; row < N; row += ng) {
            __global const float *x = inp + inp_off + (size_t)row * C;
            __global const float *dy = dout + dout_off + (size_t)row * C;
            __global float *dx = dinp + dinp_off + (size_t)row * C;
            const float m = mean[mean_off + row], rs = rstd[rstd_off + row];
            float nv[LN_CPT], dv[LN_CPT];
            float2 sum = (float2)(0.0f, 0.0f);
#pragma unroll
            for (int j = 0; j < LN_CPT; j++) {
                const int c = lid + j * LS;
                nv[j] = c < C ? (x[c] - m) * rs : 0.0f;
                dv[j] = c < C ? dy[c] : 0.0f;
                const float dnorm = wv[j] * dv[j];
                sum += (float2)(dnorm, dnorm * nv[j]);
            }
            sum = cf_group_sum2(red2, sum) / C;
#pragma unroll
            for (int j = 0; j < LN_CPT; j++) {
                const int c = lid + j * LS;
                if (c < C) {
                    dx[c] += (wv[j] * dv[j] - sum.x - nv[j] * sum.y) * rs;
                    ab[j] += dv[j];
                    aw[j] += nv[j] * dv[j];
                }
            }
        }
#pragma unroll
        for (int j = 0; j < LN_CPT; j++) {
            const int c = lid + j * LS;
            if (c < C) {
                pb[c] = ab[j];
                pw[c] = aw[j];
            }
        }
        return; /* the branch is uniform over the group: no barrier is skipped by part of it */
    }
    /* each work-item owns columns lid, lid+LS, ... of its group's partial row: no races */
    for (int c = lid; c < C; c += LS) {
        pb[c] = 0.0f;
        pw[c] = 0.0f;
    }
    for (int row = g; row < N; row += ng) {
        __global const float *x = inp + inp_off + (size_t)row * C;
        __global const float *dy = dout + dout_off + (size_t)row * C;
        __global float *dx = dinp + dinp_off + (size_t)row * C;
        float m = mean[mean_off + row], rs = rstd[rstd_off + row];
        float s1 = 0.0f, s2 = 0.0f;
        for (int c = lid; c < C; c += LS) {
            float norm = (x[c] - m) * rs;
            float dnorm = w[c] * dy[c];
            s1 += dnorm;
            s2 += dnorm * norm;
        }
        float dnorm_mean = cf_group_sum(red, s1) / C;
        float dnorm_norm_mean = cf_group_sum(red, s2) / C;
        for (int c = lid; c < C; c += LS) {
            float norm = (x[c] - m) * rs;
            float dnorm = w[c] * dy[c];
            dx[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * rs;
            pb[c] += dy[c];
            pw[c] += norm * dy[c];
        }
    }
}
