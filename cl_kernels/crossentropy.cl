/* clformer: softmax cross-entropy over logits(N,V) with int32 targets; a target outside [0, V)
 * is ignored (loss 0, gradient 0), as on every backend (backend.h): < 0 is the ignore marker,
 * >= V bad data that the loaders reject before it gets here.
 * One work-group per row; the row max and the sum of exponentials are tree reductions.
 * Row kernels here have no early exit: the host launches exactly one group per row, and a return
 * ahead of a barrier is undefined (PoCL 3.1 crashes on it).
 * Build-time parameter: LS, the work-group size (a power of two). */
#ifndef LS
#define LS 256
#endif

/* Logit soft-capping: with softcap c > 0 the loss sees z' = c tanh(z / c) in place of each logit
 * z, and the fused gradient carries dz'/dz = 1 - tanh(z / c)^2. c = 0 (off) takes the plain
 * reads, the arithmetic of the uncapped kernels; the test is uniform over the launch. */
#define CE_Z(z, c) ((c) > 0.0f ? (c) * tanh((z) / (c)) : (z))


/* The kernels come in two forms with the same arguments: crossentropy_* (softcap off: the body
 * is inlined with a constant 0, so the capping code is compiled out and the plain kernels keep
 * their registers and speed) and crossentropy_*_softcap; the host picks by the soft-cap value. */

/* Rows of whole float4s (V and the offsets multiples of 4) longer than crossentropy_fused keeps
 * in registers: read twice instead of three times by it, and once instead of twice by
 * crossentropy_forward. The first read gives the row's max and sum: each work-item
 * takes blocks of CE_B4 float4s (at lid + j * LS within the block), finds the block's max, and
 * adds the block's exponentials to its running sum, rescaled when the max grows (one exp more a
 * block, no branch per element); the group then combines the pairs. The second read writes the
 * gradient. (An earlier one-read form with a branch per element was slower on an H100, session
 * 18: it kept one load in flight; these blocks keep CE_B4.) A NaN logit makes the sum NaN, +inf
 * too, as in the three-read form; -inf adds nothing. */
#define CE_B4 8
static inline float4 ce_z4(float4 z, float softcap) {
    return softcap > 0.0f ? softcap * tanh(z / softcap) : z;
}
static inline __attribute__((always_inline)) void
ce_row_stats4(__local float *red, __global const float4 *x4, int V4, float softcap, float *mx_out,
              float *s_out) {
    const int lid = get_local_id(0);
    float m = -INFINITY, s = 0.0f;
    for (int b = 0; b < V4; b += CE_B4 * LS) {
        float4 z[CE_B4];
        float bm = -INFINITY;
#pragma unroll
        for (int j = 0; j < CE_B4; j++) {
            const int i = b + lid + j * LS;
            z[j] = i < V4 ? ce_z4(x4[i], softcap) : (float4)(-INFINITY);
            bm = fmax(bm, fmax(fmax(z[j].x, z[j].y), fmax(z[j].z, z[j].w)));
        }
        const float mn = fmax(m, bm);
        if (mn == -INFINITY) continue; /* nothing seen yet (per work-item: no barrier inside) */
        float t = 0.0f;
#pragma unroll
        for (int j = 0; j < CE_B4; j++)
            t += (exp(z[j].x - mn) + exp(z[j].y - mn)) + (exp(z[j].z - mn) + exp(z[j].w - mn));
        s = s * exp(m - mn) + t; /* (m = -inf: s is 0, and exp gives 0) */
        m = mn;
    }
    const float mx = cf_group_reduce(red, m, 1);
    *s_out = cf_group_reduce(red, m == -INFINITY ? 0.0f : s * exp(m - mx), 0);
    *mx_out = mx;
}
/* The row's max and sum of exp(z - max): the float4 form above when vec (uniform over the
 * launch), else two element-by-element reads. Ends with a barrier: all reads of the row done. */
static inline __attribute__((always_inline)) void
ce_row_stats(__local float *red, __global const float *x, int V, float softcap, int vec,
             float *mx_out, float *s_out) {
    if (vec) {
        ce_row_stats4(red, (__global const float4 *)x, V / 4, softcap, mx_out, s_out);
        return;
    }
    const int lid = get_local_id(0);
    float mx = -INFINITY, s = 0.0f;
    for (int i = lid; i < V; i += LS) mx = fmax(mx, CE_Z(x[i], softcap));
    mx = cf_group_reduce(red, mx, 1);
    for (int i = lid; i < V; i += LS) s += exp(CE_Z(x[i], softcap) - mx);
    *s_out = cf_group_reduce(red, s, 0);
    *mx_out = mx;
}

/* losses(N) = logsumexp(logits row) - logits[target] (of the capped logits when softcap > 0) */
static inline __attribute__((always_inline)) void
ce_forward_body(__local float *red, __global float *losses, ulong loss_off,
                __global const float *logits, ulong logits_off, __global const int *targets,
                ulong tgt_off, int N, int V, float softcap) {
    int row = get_group_id(0), lid = get_local_id(0);
    __global const float *x = logits + logits_off + (size_t)row * V;
    int target = targets[tgt_off + row];
    if (target >= V) target = -1; /* outside the row: ignored */
    float mx, s;
    ce_row_stats(red, x, V, softcap, V % 4 == 0 && logits_off % 4 == 0, &mx, &s);
    if (lid == 0) {
        float loss = 0.0f;
        if (target >= 0) loss = log(s) + mx - CE_Z(x[target], softcap);
        losses[loss_off + row] = loss;
    }
}
__kernel void crossentropy_forward(__global float *losses, ulong loss_off,
                                   __global const float *logits, ulong logits_off,
                                   __global const int *targets, ulong tgt_off, int N, int V,
                                   float softcap) {
    __local float red[LS];
    ce_forward_body(red, losses, loss_off, logits, logits_off, targets, tgt_off, N, V, 0.0f);
}
__kernel void crossentropy_forward_softcap(__global float *losses, ulong loss_off,
                                           __global const float *logits, ulong logits_off,
                                           __global const int *targets, ulong tgt_off, int N,
                                           int V, float softcap) {
    __local float red[LS];
    ce_forward_body(red, losses, loss_off, logits, logits_off, targets, tgt_off, N, V, softcap);
}

/* losses(N) as above and dlogits(N,V) = (softmax - onehot(target)) * dloss, assigned (times
 * 1 - tanh(z / softcap)^2 when softcap > 0).
 * dlogits may alias logits: every element is read by the work-item that later overwrites it, and
 * all reads of other elements (max, sum, target logit) finish before the first write. */
/* Elements of a row each work-item keeps in registers in crossentropy_fused (V <= CE_CPT * LS): the
 * row is then read from global memory once instead of three times. */
#define CE_CPT 64
static inline __attribute__((always_inline)) void
ce_fused_body(__local float *red, __global float *losses, ulong loss_off, __global float *dlogits,
              ulong dlogits_off, __global const float *logits, ulong logits_off,
              __global const int *targets, ulong tgt_off, int N, int V, float dloss,
              float softcap) {
    int row = get_group_id(0), lid = get_local_id(0);
    __global const float *x = logits + logits_off + (size_t)row * V;
    __global float *dx = dlogits + dlogits_off + (size_t)row * V;
    int target = targets[tgt_off + row];
    if (target >= V) target = -1; /* outside the row: ignored */
    if (V <= CE_CPT * LS) { /* uniform over the group */
        float v[CE_CPT];
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < CE_CPT; j++) {
            const int i = lid + j * LS;
            v[j] = i < V ? CE_Z(x[i], softcap) : -INFINITY;
            mx = fmax(mx, v[j]);
        }
        mx = cf_group_reduce(red, mx, 1);
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < CE_CPT; j++) {
            const int i = lid + j * LS;
            v[j] = i < V ? exp(v[j] - mx) : 0.0f;
            s += v[j];
        }
        s = cf_group_reduce(red, s, 0);
        if (lid == 0) {
            float loss = 0.0f;
            if (target >= 0) loss = log(s) + mx - CE_Z(x[target], softcap);
            losses[loss_off + row] = loss;
        }
        barrier(CLK_GLOBAL_MEM_FENCE); /* the target logit is read before any write */
        const float inv = 1.0f / s;
        if (softcap > 0.0f) { /* x[i] is read again by the work-item that then writes dx[i] */
#pragma unroll
            for (int j = 0; j < CE_CPT; j++) {
                const int i = lid + j * LS;
                if (i < V) {
                    const float th = tanh(x[i] / softcap);
                    dx[i] = target < 0 ? 0.0f
                                       : (v[j] * inv - (i == target ? 1.0f : 0.0f)) * dloss *
                                             (1.0f - th * th);
                }
            }
            return;
        }
#pragma unroll
        for (int j = 0; j < CE_CPT; j++) {
            const int i = lid + j * LS;
            if (i < V)
                dx[i] = target < 0 ? 0.0f : (v[j] * inv - (i == target ? 1.0f : 0.0f)) * dloss;
        }
        return;
    }
    /* whole float4s: every row starts on the 4-element grid (uniform over the launch) */
    const int vec = V % 4 == 0 && logits_off % 4 == 0 && dlogits_off % 4 == 0;
    float mx, s;
    ce_row_stats(red, x, V, softcap, vec, &mx, &s); /* (all reads of the row done) */
    if (lid == 0) {
        float loss = 0.0f;
        if (target >= 0) loss = log(s) + mx - CE_Z(x[target], softcap);
        losses[loss_off + row] = loss;
    }
    /* the target logit was read above by work-item 0; keep its read ahead of any write */
    barrier(CLK_GLOBAL_MEM_FENCE);
    float inv = 1.0f / s;
    if (target < 0) {
        for (int i = lid; i < V; i += LS) dx[i] = 0.0f;
    } else if (vec) {
        __global const float4 *x4 = (__global const float4 *)x;
        __global float4 *dx4 = (__global float4 *)dx;
        for (int i = lid; i < V / 4; i += LS) {
            const float4 z = x4[i];
            const int k = target - 4 * i; /* the target's component here, if any */
            const float4 hot = (float4)(k == 0, k == 1, k == 2, k == 3);
            float4 d = (exp(ce_z4(z, softcap) - mx) * inv - hot) * dloss;
            if (softcap > 0.0f) {
                const float4 th = tanh(z / softcap);
                d *= 1.0f - th * th;
            }
            dx4[i] = d;
        }
    } else {
        for (int i = lid; i < V; i += LS) {
            const float z = x[i];
            float p = exp(CE_Z(z, softcap) - mx) * inv;
            float d = (p - (i == target ? 1.0f : 0.0f)) * dloss;
            if (softcap > 0.0f) {
                const float th = tanh(z / softcap);
                d *= 1.0f - th * th;
            }
            dx[i] = d;
        }
    }
}
__kernel void crossentropy_fused(__global float *losses, ulong loss_off, __global float *dlogits,
                                 ulong dlogits_off, __global const float *logits,
                                 ulong logits_off, __global const int *targets, ulong tgt_off,
                                 int N, int V, float dloss, float softcap) {
    __local float red[LS];
    ce_fused_body(red, losses, loss_off, dlogits, dlogits_off, logits, logits_off, targets,
                  tgt_off, N, V, dloss, 0.0f);
}
__kernel void crossentropy_fused_softcap(__global float *losses, ulong loss_off,
                                         __global float *dlogits, ulong dlogits_off,
                                         __global const float *logits, ulong logits_off,
                                         __global const int *targets, ulong tgt_off, int N, int V,
                                         float dloss, float softcap) {
    __local float red[LS];
    ce_fused_body(red, losses, loss_off, dlogits, dlogits_off, logits, logits_off, targets,
                  tgt_off, N, V, dloss, softcap);
}
