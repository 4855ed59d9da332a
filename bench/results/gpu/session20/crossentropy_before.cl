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

/* losses(N) = logsumexp(logits row) - logits[target] (of the capped logits when softcap > 0) */
static inline __attribute__((always_inline)) void
ce_forward_body(__local float *red, __global float *losses, ulong loss_off,
                __global const float *logits, ulong logits_off, __global const int *targets,
                ulong tgt_off, int N, int V, float softcap) {
    int row = get_group_id(0), lid = get_local_id(0);
    __global const float *x = logits + logits_off + (size_t)row * V;
    int target = targets[tgt_off + row];
    if (target >= V) target = -1; /* outside the row: ignored */
    float mx = -INFINITY;
    for (int i = lid; i < V; i += LS) mx = fmax(mx, CE_Z(x[i], softcap));
    mx = cf_group_reduce(red, mx, 1);
    float s = 0.0f;
    for (int i = lid; i < V; i += LS) s += exp(CE_Z(x[i], softcap) - mx);
    s = cf_group_reduce(red, s, 0);
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
    float mx = -INFINITY;
    for (int i = lid; i < V; i += LS) mx = fmax(mx, CE_Z(x[i], softcap));
    mx = cf_group_reduce(red, mx, 1);
    float s = 0.0f;
    for (int i = lid; i < V; i += LS) s += exp(CE_Z(x[i], softcap) - mx);
    s = cf_group_reduce(red, s, 0); /* ends with a barrier: all reads of the row are done */
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
