/* clformer: inference with a KV cache: appending new rows to the cache (with RoPE at the cache
 * position) and attention of a few query rows per sequence against the cache (GQA in place).
 * Built with -DLS=<work-group size of decode_attention> (a power of two) and -DMAX_HS. */
#ifndef MAX_HS
#define MAX_HS 256
#endif

static int da_clamp(int p, int S) { return p < 0 ? 0 : p >= S ? S - 1 : p; }

/* One item per element of a qkv row: rows = B*Tq, row r = b*Tq + t at cache position
 * p = pos[b] + t (clamped to S-1). With RoPE (rope != 0) the q and k heads are rotated in place
 * by cs[p] (rotate-half, as rope_rotate): the item of pair index i < hs/2 rotates (i, i + hs/2);
 * k heads are then written to kc, v heads to vc (rows of KVH*hs at (b*S + p)). */
__kernel void kv_append(__global float *qkv, ulong qkv_off, __global float *kc, ulong kc_off,
                        __global float *vc, ulong vc_off, __global const float *cs, ulong cs_off,
                        __global const int *pos, ulong pos_off, int rope, int rows, int Tq, int NH,
                        int KVH, int hs, int S) {
    const size_t gid = get_global_id(0);
    const int QKV = (NH + 2 * KVH) * hs, KV = KVH * hs;
    if (gid >= (size_t)rows * QKV) return;
    const int r = (int)(gid / QKV), e = (int)(gid - (size_t)r * QKV);
    const int h = e / hs, i = e - h * hs;
    const int b = r / Tq, t = r - b * Tq;
    const int p = da_clamp(pos[pos_off + b] + t, S);
    __global float *row = qkv + qkv_off + (size_t)r * QKV;
    const size_t dst = ((size_t)b * S + p) * KV;
    if (h >= NH + KVH) { /* a v element */
        vc[vc_off + dst + (size_t)(h - NH - KVH) * hs + i] = row[e];
        return;
    }
    if (!rope) {
        if (h >= NH) kc[kc_off + dst + (size_t)(h - NH) * hs + i] = row[e];
        return;
    }
    const int nh = hs / 2;
    if (i >= nh) return; /* the item of the pair's first element does both */
    __global const float *c = cs + cs_off + ((size_t)p * nh + i) * 2;
    const float co = c[0], si = c[1];
    __global float *a = row + (size_t)h * hs + i;
    const float x0 = a[0], x1 = a[nh];
    const float y0 = x0 * co - x1 * si, y1 = x0 * si + x1 * co;
    a[0] = y0;
    a[nh] = y1;
    if (h >= NH) {
        __global float *k = kc + kc_off + dst + (size_t)(h - NH) * hs + i;
        k[0] = y0;
        k[nh] = y1;
    }
}

static float da_group_max(__local float *red, float v) {
    const int lid = get_local_id(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = LS / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] = fmax(red[lid], red[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* One work-group of LS items per (row, query head): item = group id = r * NH + h. The row sees
 * cache positions lo[r]..p (has_lo; lo[r] clamped into [0, p]), else 0..p. Scores go to sc (one
 * row of S floats per group, indexed by cache position), then the probabilities, then
 * out = P @ V. */
__kernel void decode_attention(__global float *out, ulong out_off, __global const float *qkv,
                               ulong qkv_off, __global const float *kc, ulong kc_off,
                               __global const float *vc, ulong vc_off, __global const int *pos,
                               ulong pos_off, __global const int *lov, ulong lo_off, int has_lo,
                               __global float *sc, int Tq, int NH, int KVH, int hs, int S) {
    __local float q[MAX_HS];
    __local float red[LS];
    const int g = get_group_id(0), lid = get_local_id(0);
    const int r = g / NH, h = g - r * NH, b = r / Tq, t = r - b * Tq;
    const int QKV = (NH + 2 * KVH) * hs, KV = KVH * hs, kvh = h / (NH / KVH);
    const int p = da_clamp(pos[pos_off + b] + t, S);
    int lo = has_lo ? lov[lo_off + r] : 0;
    lo = clamp(lo, 0, p); /* a bad lo never reads outside the row's keys */
    const float scale = 1.0f / sqrt((float)hs);
    for (int i = lid; i < hs; i += LS) q[i] = qkv[qkv_off + (size_t)r * QKV + (size_t)h * hs + i];
    barrier(CLK_LOCAL_MEM_FENCE);
    __global const float *kb = kc + kc_off + (size_t)b * S * KV + (size_t)kvh * hs;
    __global const float *vb = vc + vc_off + (size_t)b * S * KV + (size_t)kvh * hs;
    __global float *s = sc + (size_t)g * S;
    float mx = -INFINITY;
    for (int j = lo + lid; j <= p; j += LS) {
        __global const float *k = kb + (size_t)j * KV;
        float d = 0.0f;
        for (int i = 0; i < hs; i++) d += q[i] * k[i];
        d *= scale;
        s[j] = d;
        mx = fmax(mx, d);
    }
    mx = da_group_max(red, mx);
    float sum = 0.0f;
    for (int j = lo + lid; j <= p; j += LS) {
        const float e = exp(s[j] - mx);
        s[j] = e;
        sum += e;
    }
    sum = cf_group_sum(red, sum);
    barrier(CLK_GLOBAL_MEM_FENCE);
    const float inv = 1.0f / sum;
    for (int i = lid; i < hs; i += LS) {
        float acc = 0.0f;
        for (int j = lo; j <= p; j++) acc += s[j] * vb[(size_t)j * KV + i];
        out[out_off + (size_t)r * NH * hs + (size_t)h * hs + i] = acc * inv;
    }
}
