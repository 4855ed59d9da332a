/* clformer: the CPU backend's inference ops: appending to the KV cache (with RoPE at the cache
 * position), attention of a few query rows against the cache, and the int8-weight GEMM. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

static inline int clamp_pos(int p, int S) { return p < 0 ? 0 : p >= S ? S - 1 : p; }

int cf_cpu_kv_append(cf_backend *be, cf_view qkv_v, cf_view kc_v, cf_view vc_v, cf_view cs_v,
                     cf_view pos_v, int B, int Tq, int NH, int KVH, int hs, int S) {
    float *qkv = cf_cpu_f32(qkv_v), *kc = cf_cpu_f32(kc_v), *vc = cf_cpu_f32(vc_v);
    const float *cs = cs_v.buf ? cf_cpu_f32(cs_v) : NULL;
    const int32_t *pos = cf_cpu_i32(pos_v);
    const int QKV = (NH + 2 * KVH) * hs, KV = KVH * hs, half = hs / 2;
    for (int r = 0; r < B * Tq; r++) {
        const int b = r / Tq, t = r % Tq, p = clamp_pos(pos[b] + t, S);
        float *row = qkv + (size_t)r * QKV;
        if (cs) { /* rotate q and k heads (adjacent in the row) as cf_cpu_rope does */
            const float *c = cs + (size_t)p * hs;
            for (int h = 0; h < NH + KVH; h++) {
                float *a = row + (size_t)h * hs, *bb = a + half;
                for (int i = 0; i < half; i++) {
                    const float co = c[2 * i], si = c[2 * i + 1], ai = a[i], bi = bb[i];
                    a[i] = ai * co - bi * si;
                    bb[i] = ai * si + bi * co;
                }
            }
        }
        const size_t dst = ((size_t)b * S + p) * KV;
        memcpy(kc + dst, row + (size_t)NH * hs, sizeof(float) * KV);
        memcpy(vc + dst, row + (size_t)(NH + KVH) * hs, sizeof(float) * KV);
    }
    return CF_OK;
}

int cf_cpu_decode_attention(cf_backend *be, cf_view out_v, cf_view qkv_v, cf_view kc_v,
                            cf_view vc_v, cf_view pos_v, cf_view lo_v, int B, int Tq, int NH,
                            int KVH, int hs, int S) {
    float *out = cf_cpu_f32(out_v);
    const float *qkv = cf_cpu_f32(qkv_v), *kc = cf_cpu_f32(kc_v), *vc = cf_cpu_f32(vc_v);
    const int32_t *pos = cf_cpu_i32(pos_v), *lov = lo_v.buf ? cf_cpu_i32(lo_v) : NULL;
    const int QKV = (NH + 2 * KVH) * hs, KV = KVH * hs, group = NH / KVH;
    const float scale = 1.0f / sqrtf((float)hs);
    const int items = B * Tq * NH;
    int rc = CF_OK;
    /* one item = one query head of one row; the work of an item is about (p+1) * 2 * hs */
#pragma omp parallel if ((long long)items * S * hs >= 4 * CF_CPU_PAR_MIN)
    {
        float *sc = malloc(sizeof(float) * (size_t)S);
        if (!sc) {
#pragma omp atomic write
            rc = CF_ERR_NOMEM;
        }
#pragma omp for schedule(dynamic, 4)
        for (int it = 0; it < items; it++) {
            if (!sc) continue;
            const int r = it / NH, h = it % NH, b = r / Tq, t = r % Tq;
            const int p = clamp_pos(pos[b] + t, S), kvh = h / group;
            /* the first key the row sees (a window, a document start), clamped into [0, p] */
            const int lo = lov ? (lov[r] < 0 ? 0 : lov[r] > p ? p : lov[r]) : 0;
            const float *q = qkv + (size_t)r * QKV + (size_t)h * hs;
            const float *kb = kc + (size_t)b * S * KV + (size_t)kvh * hs;
            const float *vb = vc + (size_t)b * S * KV + (size_t)kvh * hs;
            float mx = -INFINITY;
            for (int j = lo; j <= p; j++) {
                const float *k = kb + (size_t)j * KV;
                float d = 0.0f;
#pragma omp simd reduction(+ : d)
                for (int i = 0; i < hs; i++) d += q[i] * k[i];
                sc[j] = d * scale;
                if (sc[j] > mx) mx = sc[j];
            }
            float sum = 0.0f;
            for (int j = lo; j <= p; j++) {
                sc[j] = expf(sc[j] - mx);
                sum += sc[j];
            }
            const float inv = 1.0f / sum;
            float *o = out + (size_t)r * NH * hs + (size_t)h * hs;
            for (int i = 0; i < hs; i++) o[i] = 0.0f;
            for (int j = lo; j <= p; j++) {
                const float w = sc[j] * inv;
                const float *v = vb + (size_t)j * KV;
#pragma omp simd
                for (int i = 0; i < hs; i++) o[i] += w * v[i];
            }
        }
        free(sc);
    }
    if (rc < 0) CF_ERROR("decode_attention: out of host memory for %d scores", S);
    return rc;
}

/* Rows of W dequantised per tile for the products with many rows of A (prefill): the tile is
 * scratch, never a copy of the whole weight. */
#define Q8_TILE 256
#define Q8_SMALL_M 8

int cf_cpu_gemm_q8(int kernel, int M, int N, int K, const float *A, int lda, const int8_t *W,
                   const float *scale, const float *bias, float *C, int ldc) {
    if (M <= 0 || N <= 0) return CF_OK;
    if (M <= Q8_SMALL_M) {
        /* decode: each weight row is read once, from memory, for every row of A */
#pragma omp parallel for schedule(static) if ((long long)N * K >= CF_CPU_PAR_MIN)
        for (int n = 0; n < N; n++) {
            const int8_t *w = W + (size_t)n * K;
            for (int m = 0; m < M; m++) {
                const float *a = A + (size_t)m * lda;
                float d = 0.0f;
#pragma omp simd reduction(+ : d)
                for (int k = 0; k < K; k++) d += a[k] * (float)w[k];
                C[(size_t)m * ldc + n] = d * scale[n] + (bias ? bias[n] : 0.0f);
            }
        }
        return CF_OK;
    }
    float *tile = malloc(sizeof(float) * (size_t)Q8_TILE * K);
    if (!tile) {
        CF_ERROR("gemm_q8: out of host memory for a %d x %d dequantisation tile", Q8_TILE, K);
        return CF_ERR_NOMEM;
    }
    int rc = CF_OK;
    for (int n0 = 0; n0 < N && rc == CF_OK; n0 += Q8_TILE) {
        const int nt = N - n0 < Q8_TILE ? N - n0 : Q8_TILE;
        for (int n = 0; n < nt; n++) {
            const int8_t *w = W + (size_t)(n0 + n) * K;
            const float s = scale[n0 + n];
            float *d = tile + (size_t)n * K;
            for (int k = 0; k < K; k++) d[k] = s * (float)w[k];
        }
        rc = cf_cpu_sgemm_bias(kernel, 0, 1, M, nt, K, 1.0f, A, lda, tile, K, 0.0f, C + n0, ldc,
                               bias ? bias + n0 : NULL);
    }
    free(tile);
    return rc;
}

int cf_cpu_embed_q8(cf_backend *be, cf_view out_v, cf_view ids_v, cf_view W8, cf_view scale_v,
                    int N, int C, int V, int accumulate) {
    (void)be;
    float *out = cf_cpu_f32(out_v);
    const int32_t *ids = cf_cpu_i32(ids_v);
    const int8_t *W = (const int8_t *)(const void *)((const char *)W8.buf->host + W8.off);
    const float *scale = cf_cpu_f32(scale_v);
    for (int r = 0; r < N; r++) {
        const int id = ids[r] < 0 ? 0 : ids[r] >= V ? V - 1 : ids[r];
        const int8_t *w = W + (size_t)id * C;
        const float s = scale[id];
        float *o = out + (size_t)r * C;
        if (accumulate)
            for (int k = 0; k < C; k++) o[k] += s * (float)w[k];
        else
            for (int k = 0; k < C; k++) o[k] = s * (float)w[k];
    }
    return CF_OK;
}
