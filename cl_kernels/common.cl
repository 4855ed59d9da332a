/* clformer: the prelude of every kernel program. The runtime (src/backend/opencl/cl_program.c)
 * puts this file ahead of each cl_kernels/<family>.cl it builds, embedded or read from the kernel
 * directory, and the program cache's key covers it. It holds what several families share: the
 * work-group reductions, flash attention's mask, the GELU constants and the storage-type macros of
 * the precisions to come.
 * Build-time parameter: LS, the work-group size of the reductions (a power of two). */
#ifndef LS
#define LS 256
#endif

/* ---- work-group reductions over LS work-items (one value each), every work-item gets the
 * result. A fixed tree: element lid adds lid + s for s = LS/2, LS/4, ..., 1, so the order of the
 * additions depends only on LS (deterministic, and the same on every device). red holds LS values;
 * it is free again when the function returns. */

/* the sum */
static float cf_group_sum(__local float *red, float v) {
    int lid = get_local_id(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = LS / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] += red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* two sums in one tree (half the barriers of two reductions) */
static float2 cf_group_sum2(__local float2 *red, float2 v) {
    int lid = get_local_id(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = LS / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] += red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float2 r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* the maximum (is_max != 0) or the sum (the same tree as cf_group_sum) */
static float cf_group_reduce(__local float *red, float v, int is_max) {
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

/* ---- flash attention's mask (flash_attention.cl, flash_tiled.cl, flash_mma.cl): the first key
 * query row i of batch element b sees (it sees keys lo .. i): causal, from i - W + 1 with a window
 * W > 0, from the start of its document with a document mask (doc: each position's document start,
 * B x T at doc_off). Never decreases along the rows. T for a row past the end (it sees nothing). */
static int cf_flash_lo(__global const int *doc, ulong doc_off, int has_doc, int b, int T, int W,
                       int i) {
    if (i >= T) return T;
    int lo = (W > 0 && i - W + 1 > 0) ? i - W + 1 : 0;
    if (has_doc) {
        int d = doc[doc_off + (ulong)b * (ulong)T + (ulong)i];
        d = d < i ? d : i;
        lo = lo > d ? lo : d;
    }
    return lo;
}

/* ---- GELU, tanh approximation (GPT-2): gelu(x) = 0.5 x (1 + tanh(u)) = x sigmoid(2u),
 * u = sqrt(2/pi) (x + 0.044715 x^3); -2u = x (GELU_C1 + GELU_C2 x^2). The CPU backend uses the
 * same constants. */
#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_CUBIC 0.044715f
#define GELU_C1 (-2.0f * GELU_SCALE)
#define GELU_C2 (-2.0f * GELU_SCALE * GELU_CUBIC)

/* bfloat16 kept as ushort: the high half of a float, rounded to nearest even, NaN kept quiet */
static inline float cf_bf16_to_float(ushort b) { return as_float((uint)b << 16); }
static inline ushort cf_float_to_bf16(float f) {
    uint u = as_uint(f);
    if (isnan(f)) return (ushort)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (ushort)(u >> 16);
}

/* ---- storage types. Tensors are stored as `real` and computed in float: LOAD_REAL(p, i) reads
 * element i of p (a pointer to real) as a float, STORE_REAL(p, i, v) writes the float v there (LOAD_REAL4 /
 * STORE_REAL4: four elements from 4*i). Float32 unless the program is built with
 * -DCF_REAL_F16 (IEEE half through vload_half/vstore_half, round to nearest even; needs no
 * cl_khr_fp16) or -DCF_REAL_BF16 (bfloat16 kept as ushort: the high half of a float, round to
 * nearest even, NaN kept quiet). No kernel uses the half formats yet; the activations stored half
 * are converted by residual.cl's convert_* kernels. */
#if defined(CF_REAL_F16)
typedef half real;
typedef half4 real4;
#define LOAD_REAL(p, i) vload_half((i), (p))
#define STORE_REAL(p, i, v) vstore_half_rte((v), (i), (p))
#define LOAD_REAL4(p, i) vload_half4((i), (p))
#define STORE_REAL4(p, i, v) vstore_half4_rte((v), (i), (p))
#elif defined(CF_REAL_BF16)
typedef ushort real;
typedef ushort4 real4;
#define LOAD_REAL(p, i) cf_bf16_to_float((p)[i])
#define STORE_REAL(p, i, v) ((p)[i] = cf_float_to_bf16(v))
#define LOAD_REAL4(p, i)                                                                           \
    ((float4)(LOAD_REAL(p, 4 * (i)), LOAD_REAL(p, 4 * (i) + 1), LOAD_REAL(p, 4 * (i) + 2),         \
              LOAD_REAL(p, 4 * (i) + 3)))
#define STORE_REAL4(p, i, v)                                                                       \
    do {                                                                                           \
        float4 cf_v_ = (v);                                                                        \
        STORE_REAL(p, 4 * (i), cf_v_.x);                                                           \
        STORE_REAL(p, 4 * (i) + 1, cf_v_.y);                                                       \
        STORE_REAL(p, 4 * (i) + 2, cf_v_.z);                                                       \
        STORE_REAL(p, 4 * (i) + 3, cf_v_.w);                                                       \
    } while (0)
#else
typedef float real;
typedef float4 real4;
#define LOAD_REAL(p, i) ((p)[i])
#define STORE_REAL(p, i, v) ((p)[i] = (v))
#define LOAD_REAL4(p, i) vload4((i), (p))
#define STORE_REAL4(p, i, v) vstore4((v), (i), (p))
#endif
