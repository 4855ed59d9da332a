/* clformer: register-blocked single-precision GEMM for GPUs, row-major, with optional split-K:
 *     C(M,N) = alpha * op(A) * op(B) + beta * C [+ bias]   (beta == 0: C is not read)
 * op(A) is A(M,K) or, with TA, A stored (K,M); op(B) is B(K,N) or, with TB, B stored (N,K).
 * Plain (unbatched) products only; src/backend/opencl/cl_gemm_fast.c decides when to use it.
 *
 * A work-group is WG x WG work-items and computes a BM x BN = (WG*RM) x (WG*RN) block of C; each
 * work-item keeps RM x RN outputs in registers: rows ty*4 + i*4*WG + e and columns
 * tx*4 + j*4*WG + f (i < RM/4, j < RN/4, e, f < 4), so every operand value it needs from local
 * memory comes as one float4 read (4 per K step for RM = RN = 8, against 64 multiply-adds) and its
 * stores are float4.
 * Local memory holds op(A) as As[k][m] and op(B) as Bs[k][n] (both "k-major"), each twice: while
 * the work-group multiplies one K slice out of one copy, the next slice's global loads are already
 * in registers and go into the other copy afterwards (one barrier per K slice).
 *
 * Build-time parameters (-D), chosen by cl_gemm_fast.c:
 *   WG      work-group side: 16 (256 work-items) or 8 (64 work-items: more, smaller groups for
 *           products with few outputs)
 *   RM, RN  outputs per work-item along m and n: 4, 8 or 16 (blocks of WG*4, WG*8 or WG*16);
 *           16 in the fp32 form only (MMA_KIND 0), and not both (RM*RN at most 128 accumulators:
 *           NVIDIA gives a work-item at most 255 registers)
 *   BK      K depth of one local-memory slice: 8 or 16 (32: the packed bf16 / fp16 tiles below,
 *           MMA_PACKED_TILES with MMA_KIND 2 or 3); BM*BK and BN*BK must be multiples of
 *           4*WG*WG (each work-item stages whole float4s); the two copies of both tiles must fit
 *           48 KiB (NVIDIA's limit per work-group), so 256-wide blocks (WG 16 with RM or RN 16)
 *           next to 128 take BK 8: 2*16*(256+4 + 128+4)*4 bytes = 49 KiB is too much
 *   VEC     1: the host checked that A, B and C offsets and leading dimensions are multiples of 4
 *           elements, so whole tiles are read and written as float4; 0: element accesses
 *
 * Split-K: dimension 2 of the range is the K slice s; the group multiplies k in
 * [s*kps, min(K, (s+1)*kps)) and writes its block to C + s*c_split. The host then passes a scratch
 * buffer as C (alpha 1, beta 0) and gemm_fast_reduce adds the slices in order s = 0, 1, ... and
 * applies alpha and beta: deterministic, no atomics. Without split, kps >= K and c_split is 0.
 *
 * With EPI_BIAS, bias(N) (at bias + bias_off) is added to every row of C as C is stored (by the
 * reduce pass under split-K), which saves the separate pass over C of a linear layer's bias.
 * EPI_ACT 1 (GELU forward) also writes gelu(C) to X (same layout as C); EPI_ACT 2 (GELU backward)
 * stores C = (the product) * gelu'(X) with X the pre-activation (alpha 1, beta 0, no bias): the
 * MLP's activation and its gradient without a pass of their own. The epilogue is a build-time
 * choice (EPI_BIAS 0/1, EPI_ACT 0/1/2; bias and X are unused arguments without it): a run-time
 * branch would cost every product registers (measured on an H200: 0.7 ms more per training step).
 * EPI_COLSUM 1 (transposed A only, the tn and tt kernels) also sums op(A) over k:
 * CS[m] (+)= sum over k of op(A)(m, k), the bias gradient of a linear layer from the pass of its
 * weight gradient (A = dout stored (N, OC)). Each work-item adds the float4s of A it stages as it
 * writes them to local memory (all of one float4 column of the block), the work-group adds its work-items' sums in a fixed order, and
 * the groups of the first column of blocks write them: CS[cs_off + s*cs_split + m] += (cs_acc) or
 * = (a split-K slice's partial; the reduce pass adds the slices in order into CS). Deterministic.
 *
 * Every staged element outside op(A) or op(B) (block edges, last K slice) is staged as 0, so edge
 * blocks need no checks in the multiply loop; only their stores are checked.
 *
 * Reduced-precision inputs (precision tf32, bf16, fp16; docs/precision.md): the product is
 * C = alpha * fl32(sum_k r(op(A)[m,k]) * r(op(B)[k,n])) + beta * C (+ bias) with r rounding an
 * fp32 value to nearest (ties to even for bf16 and fp16) and fp32 accumulation.
 *   MMA_KIND 1 (tf32), 2 (bf16), 3 (fp16): NVIDIA tensor cores through PTX mma.sync (below); the
 *            staged tiles stay fp32 and each value is rounded as its fragment is read
 *   ROUND_IN 1 (bf16), 2 (fp16): the fp32 form on any device, each value rounded as it is
 *            staged into local memory (fp32 multiply-adds of the rounded values)
 * The sums of op(A) (EPI_COLSUM) add the staged values before rounding: they are a bias gradient,
 * not a product. */
#ifndef RM
#define RM 8
#endif
#ifndef RN
#define RN 8
#endif
#ifndef BK
#define BK 8
#endif
#ifndef VEC
#define VEC 0
#endif
#ifndef WG
#define WG 16
#endif
#ifndef EPI_BIAS
#define EPI_BIAS 0
#endif
#ifndef EPI_ACT
#define EPI_ACT 0
#endif
#ifndef EPI_COLSUM
#define EPI_COLSUM 0
#endif
#ifndef MMA_KIND
#define MMA_KIND 0
#endif
#ifndef ROUND_IN
#define ROUND_IN 0
#endif
#ifndef MMA_PACKED_TILES
/* 32-deep slices exist in the packed-tile form only (bf16 / fp16: the host builds them there) */
#define MMA_PACKED_TILES (BK == 32)
#endif
#if MMA_PACKED_TILES && !MMA_KIND
#error "gemm_fast.cl: MMA_PACKED_TILES is a form of the tensor-core kernels (MMA_KIND 1, 2, 3)"
#endif
#if MMA_KIND && ROUND_IN
#error "gemm_fast.cl: MMA_KIND rounds in the fragment reads; ROUND_IN is for the fp32 form"
#endif
#define NT (WG * WG) /* work-items per group */

/* GELU, tanh form, as cl_kernels/gelu.cl (the same expressions and the constants of
 * cl_kernels/common.cl): gelu(x) = x sigmoid(2u) */
static inline float gf_gelu(float x) {
    return x / (1.0f + exp(x * (GELU_C1 + GELU_C2 * (x * x))));
}
static inline float gf_gelu_grad(float x) {
    const float x2 = x * x;
    const float e = exp(fmin(x * (GELU_C1 + GELU_C2 * x2), 80.0f));
    const float s = 1.0f / (1.0f + e);
    const float du2 = 2.0f * GELU_SCALE + 6.0f * GELU_SCALE * 0.044715f * x2;
    const float q = (x * du2) * (e * s);
    return s * q + s;
}
/* the store of one value of C at idx: bias already added; act as above */
static inline void gf_store(__global float *C, __global float *X, size_t idx, float v, int act) {
    if (act == 2) v *= gf_gelu_grad(X[idx]);
    C[idx] = v;
    if (act == 1) X[idx] = gf_gelu(v);
}
/* The store of one lane's accumulator fragment a (a 16 x 8 tile of mma.sync's layout: a[h * 2 + f]
 * at row r + 8 h and column c + f, r = the tile's row + g, c = its column + 2t) with the epilogue
 * (alpha, beta, EPI_BIAS, EPI_ACT); rows from M and columns from N on are outside C */
static inline void gf_store_frag(__global float *C, __global float *X, __global const float *bias,
                                 ulong bias_off, int ldc, int M, int N, int r, int c, float alpha,
                                 float beta, const float *a) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int m = r + h * 8;
        if (m >= M) continue;
#pragma unroll
        for (int f = 0; f < 2; f++) {
            if (c + f >= N) continue;
            const size_t idx = (size_t)m * ldc + c + f;
            const float v = a[h * 2 + f] * alpha;
            const float bv = EPI_BIAS ? bias[bias_off + c + f] : 0.0f;
            gf_store(C, X, idx, (beta == 0.0f ? v : v + beta * C[idx]) + bv, EPI_ACT);
        }
    }
}
#define BM (WG * RM)
#define BN (WG * RN)
/* float4s per local-memory row: one float4 of padding, so that the transposing scalar stores of
 * k-contiguous operands (rows 4 floats apart) fall into different banks */
#if MMA_KIND == 1
/* two float4s of padding: the fragment reads of the TF32 form (lanes 1 k apart by 8 m) then meet
 * 32 different banks; the bf16/fp16 forms read pairs of k (lanes 2 k apart by 8 m), for which one
 * float4 does that */
#define LDA4 (BM / 4 + 2)
#define LDB4 (BN / 4 + 2)
#else
#define LDA4 (BM / 4 + 1)
#define LDB4 (BN / 4 + 1)
#endif
#define NLA (BM * BK / 4 / NT) /* float4s of op(A) each work-item stages per K slice */
#define NLB (BN * BK / 4 / NT)
#if (RM != 4 && RM != 8 && RM != 16) || (RN != 4 && RN != 8 && RN != 16) ||                   \
    (BK != 8 && BK != 16 && !(BK == 32 && MMA_PACKED_TILES && MMA_KIND >= 2)) ||               \
    (WG != 8 && WG != 16)
#error "gemm_fast.cl: RM and RN must be 4, 8 or 16, BK 8 or 16 (32: packed bf16 / fp16 tiles), WG 8 or 16"
#endif
#if RM * RN > 128
#error "gemm_fast.cl: RM*RN must be at most 128 (accumulators per work-item)"
#endif
#if MMA_KIND && (RM > 8 || RN > 8)
#error "gemm_fast.cl: the tensor-core forms (MMA_KIND) take RM and RN 4 or 8; 16 is the fp32 form's"
#endif
#if !MMA_PACKED_TILES
#define GF_COPY_A (BK * LDA4) /* float4s of one copy of each tile */
#define GF_COPY_B (BK * LDB4)
#endif
#if (BM * BK) % (4 * NT) != 0 || (BN * BK) % (4 * NT) != 0
#error "gemm_fast.cl: BM*BK and BN*BK must be multiples of 4*WG*WG"
#endif
/* EPI_COLSUM: the work-items' sums meet in the As array (GF_AS_SIZE), and every float4 a
 * work-item stages from a transposed A lies in float4 column lid % (BM/4) (NT is a multiple of
 * BM/4) */
#if EPI_COLSUM && (NT % (BM / 4) != 0)
#error "gemm_fast.cl: EPI_COLSUM needs NT to be a multiple of BM/4"
#endif

#if MMA_KIND
/* The tensor-core forms (NVIDIA, compute capability 8.0 or later; the host builds them only there):
 * the staging, the double buffer, split-K and the epilogues are the ones above, and the multiply of
 * each K slice runs as PTX mma.sync with fp32 accumulation: m16n8k8 with TF32 inputs (rounded to
 * nearest from the staged fp32 values by cvt.rna), or with bf16 / fp16 inputs (cvt.rn: ties to
 * even) m16n8k16 for slices of 16 and m16n8k8 for slices of 8. The group's warps (32 consecutive work-items)
 * split the BM x BN block into 2 x (NT/64) tiles of WTM x WTN; a warp's tile is MT x NTL
 * fragments of 16 x 8, each lane holding 4 accumulators per fragment at rows g, g+8 and columns
 * 2t, 2t+1 of it (g = lane / 4, t = lane % 4), as PTX's fragment layout for m16n8k8 says.
 * A fragment (16 x 8, row): a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4); B (8 x 8, col):
 * b0 (k t, n g), b1 (k t+4, n g).
 * bf16/fp16 fragments hold two values of consecutive k per 32-bit register, the lower k in the
 * lower half: A (row) register r of m16n8k16 holds rows g (r even) or g+8 (r odd) at k 2t, 2t+1
 * (r < 2) or 2t+8, 2t+9 (r >= 2); B (col) register r holds column g at k 2t, 2t+1 (r = 0) or
 * 2t+8, 2t+9 (r = 1). m16n8k8 has A's registers 0 and 1 and B's register 0. The accumulators are
 * laid out as for TF32. */
#define WARPS_M 2
#define WARPS_N (NT / 64)
#define WTM (BM / WARPS_M)
#define WTN (BN / WARPS_N)
#define MT (WTM / 16)
#define NTL (WTN / 8)
#if MT < 1 || NTL < 1 || WTM % 16 != 0 || WTN % 8 != 0
#error "gemm_fast.cl: MMA_KIND needs warp tiles of whole 16 x 8 fragments"
#endif
#ifdef MMA_EMULATE
/* An emulation of the above for tests on any OpenCL device (CF_MATRIX_ENGINE=emulate:<row>,
 * cl_matrix.h: never chosen by itself): the same fragment layouts, conversions with the same
 * rounding, and each mma.sync as a collective of the warp's 32 work-items (consecutive local ids,
 * as NVIDIA's warps): every lane writes its registers to the warp's part of the local array emu,
 * and after a barrier reads the operands of its 4 accumulators from the lanes that hold them (the
 * layouts above, backwards). All work-items of the group call it the same number of times (the
 * multiply loops are uniform), so the barriers are legal. It checks the kernel's fragment
 * addressing and conversions where no tensor cores exist (PoCL in CI); it is slow. */
#define GF_EMU_PARAM , __local uint *emu
#define GF_EMU_ARG , emu
static inline uint gf_tf32(float x) { /* cvt.rna: to nearest, ties away; 10 fraction bits */
    const uint u = as_uint(x);
    return (u & 0x7f800000u) == 0x7f800000u ? u : (u + 0x1000u) & 0xffffe000u;
}
#if MMA_KIND >= 2
static inline uint gf_half_bits(float x) {
#if MMA_KIND == 2
    const uint u = as_uint(x); /* to nearest, ties to even; NaN stays a (quiet) NaN */
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
#else
    ushort h;
    vstore_half_rte(x, 0, (__private half *)&h);
    return h;
#endif
}
static inline uint gf_pack(float lo, float hi) { return gf_half_bits(lo) | (gf_half_bits(hi) << 16); }
static inline float gf_half_value(uint bits) {
#if MMA_KIND == 2
    return as_float(bits << 16);
#else
    const ushort h = (ushort)bits;
    return vload_half(0, (__private const half *)&h);
#endif
}
#endif
/* c (4 accumulators) += A (16 x K) B (K x 8) of the warp, K = 8 (tf32: the m16n8k8 layout with
 * one value a register; bf16/fp16 m16n8k8) or 16 (bf16/fp16 m16n8k16), from na A and nb B
 * registers per lane */
static inline void gf_emu_mma(float *c, const uint *a, const int na, const uint *b, const int nb,
                              const int K, __local uint *emu) {
    const int lid = (int)(get_local_id(1) * WG + get_local_id(0));
    __local uint *w = emu + (lid >> 5) * (32 * 6);
    const int lane = lid & 31, g = lane >> 2, t = lane & 3;
    for (int r = 0; r < na; r++) w[lane * 6 + r] = a[r];
    for (int r = 0; r < nb; r++) w[lane * 6 + 4 + r] = b[r];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int e = 0; e < 4; e++) {
        const int row = g + (e >> 1) * 8, col = 2 * t + (e & 1);
        float sum = c[e];
        for (int k = 0; k < K; k++) {
#if MMA_KIND == 1
            const float av = as_float(w[((row & 7) * 4 + (k & 3)) * 6 + (row >> 3) + 2 * (k >> 2)]);
            const float bv = as_float(w[(col * 4 + (k & 3)) * 6 + 4 + (k >> 2)]);
#else
            const uint ar = w[((row & 7) * 4 + ((k & 7) >> 1)) * 6 + (row >> 3) + 2 * (k >> 3)];
            const uint br = w[(col * 4 + ((k & 7) >> 1)) * 6 + 4 + (k >> 3)];
            const float av = gf_half_value((k & 1) ? ar >> 16 : ar & 0xffffu);
            const float bv = gf_half_value((k & 1) ? br >> 16 : br & 0xffffu);
#endif
            sum = fma(av, bv, sum);
        }
        c[e] = sum;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}
static inline void gf_mma(float *c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1
                          GF_EMU_PARAM) {
    const uint a[4] = {a0, a1, a2, a3}, b[2] = {b0, b1};
    gf_emu_mma(c, a, 4, b, 2, 8, emu);
}
#if MMA_KIND >= 2
static inline void gf_mma16(float *c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1
                            GF_EMU_PARAM) {
    const uint a[4] = {a0, a1, a2, a3}, b[2] = {b0, b1};
    gf_emu_mma(c, a, 4, b, 2, 16, emu);
}
static inline void gf_mma8(float *c, uint a0, uint a1, uint b0 GF_EMU_PARAM) {
    const uint a[2] = {a0, a1}, b[1] = {b0};
    gf_emu_mma(c, a, 2, b, 1, 8, emu);
}
#endif
#else
static inline uint gf_tf32(float x) {
    uint r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}
static inline void gf_mma(float *c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
#if MMA_KIND >= 2
/* two fp32 values rounded to bf16 / fp16 (to nearest, ties to even) in one register: lo (the
 * lower k) in bits 0-15, hi in bits 16-31 (cvt puts its first source in the upper half) */
static inline uint gf_pack(float lo, float hi) {
    uint r;
#if MMA_KIND == 2
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#endif
    return r;
}
static inline void gf_mma16(float *c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1) {
#if MMA_KIND == 2
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}
static inline void gf_mma8(float *c, uint a0, uint a1, uint b0) {
#if MMA_KIND == 2
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5}, {%6}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(b0));
#else
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5}, {%6}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(b0));
#endif
}
#endif
#endif /* MMA_EMULATE */
#endif
#ifndef GF_EMU_PARAM /* the fp32 form and the hardware tensor-core forms */
#define GF_EMU_PARAM
#define GF_EMU_ARG
#endif

/* Second pass of split-K (this GEMM's, and gemm_half.cl's, whose programs are built with
 * -DGF_MMA_HELPERS_ONLY): C(M,N) = alpha * sum_s P_s + beta * C [+ bias], adding the S slices
 * P_s(M,N) = P + s*p_split (row stride ldp) in order s = 0 .. S-1. One work-item per element of C.
 * EPI_COLSUM: the work-items of column 0 also add the slices' sums of op(A) at
 * P + csp_off + s*M (m < M), in order, into CS[cs_off + m]. */
__kernel void gemm_fast_reduce(int M, int N, int S, __global const float *P, int ldp, ulong p_split,
                               float alpha, float beta, __global float *C, ulong c_off, int ldc,
                               __global const float *bias, ulong bias_off, __global float *X,
                               ulong x_off, ulong csp_off, __global float *CS, ulong cs_off) {
    const int n = get_global_id(0), m = get_global_id(1);
    if (n >= N || m >= M) return;
    if (EPI_COLSUM && n == 0) {
        float t = 0.0f;
        for (int s = 0; s < S; s++) t += P[csp_off + (size_t)s * M + m];
        CS[cs_off + m] += t;
    }
    __global const float *p = P + (size_t)m * ldp + n;
    float sum = 0.0f;
    for (int s = 0; s < S; s++) sum += p[(size_t)s * p_split];
    const float b = EPI_BIAS ? bias[bias_off + n] : 0.0f;
    gf_store(C + c_off, X + x_off, (size_t)m * ldc + n,
             (beta == 0.0f ? alpha * sum : alpha * sum + beta * C[c_off + (size_t)m * ldc + n]) + b,
             EPI_ACT);
}
/* GF_MMA_HELPERS_ONLY: the file so far (the matrix-engine helpers, the epilogue's store and the
 * split-K reduce above) for another kernel file built after it (flash_mma.cl, gemm_half.cl); the
 * GEMM below is left out */
#ifndef GF_MMA_HELPERS_ONLY

#if ROUND_IN == 1
/* fp32 -> bf16 -> fp32: to nearest, ties to even, on the bits (overflow carries into +-Inf);
 * NaN stays NaN */
static inline float gf_round(float x) {
    uint u = as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return x;
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    return as_float(u);
}
#elif ROUND_IN == 2
/* fp32 -> fp16 -> fp32 (IEEE binary16, to nearest, ties to even): from 65520 (half an ulp above
 * 65504) +-Inf; below 2^-14 the subnormals' steps of 2^-24 (rint: ties to even); else 11
 * significant bits; NaN stays NaN */
static inline float gf_round(float x) {
    const float a = fabs(x);
    if (isnan(x)) return x;
    if (a >= 65520.0f) return copysign(INFINITY, x);
    if (a < 6.103515625e-05f) return rint(x * 16777216.0f) * 5.9604644775390625e-08f;
    uint u = as_uint(x);
    u = (u + 0xfffu + ((u >> 13) & 1u)) & 0xffffe000u;
    return as_float(u);
}
#endif
#if ROUND_IN
#define GF_ROUND4(v) ((float4)(gf_round((v).x), gf_round((v).y), gf_round((v).z), gf_round((v).w)))
#else
#define GF_ROUND4(v) (v)
#endif

/* Load float4 number idx (0 <= idx < BX*BK/4) of the BX x BK tile of an operand X whose rows and
 * columns are (x, k): x in [x0, x0+BX), k in [k0, k0+BK).
 *   xc = 1: X stores (k, x) at X[k*ldx + x] (rows run along x): the float4 holds x .. x+3 of one k
 *   xc = 0: X stores (k, x) at X[x*ldx + k] (rows run along k): the float4 holds k .. k+3 of one x
 * full: the whole tile lies inside [0, xdim) x [0, kend); otherwise outside elements read as 0.
 * Here and below x - q*d rather than x % d next to x / d: a div/rem pair becomes an LLVM `freeze`,
 * which oclgrind's uninitialised-value checker cannot interpret. */
static inline float4 gf_load4(const int xc, const int bx, __global const float *X, int ldx, int x0,
                              int k0, int idx, int xdim, int kend, int full) {
    int x, k;
    if (xc) {
        k = idx / (bx / 4);
        x = (idx - k * (bx / 4)) * 4;
    } else {
        x = idx / (BK / 4);
        k = (idx - x * (BK / 4)) * 4;
    }
    const int gx = x0 + x, gk = k0 + k;
    const size_t base = xc ? (size_t)gk * ldx + gx : (size_t)gx * ldx + gk;
    if (full) {
#if VEC
        return *(__global const float4 *)(X + base);
#else
        return (float4)(X[base], X[base + 1], X[base + 2], X[base + 3]);
#endif
    }
    float v[4];
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const int ex = xc ? gx + e : gx, ek = xc ? gk : gk + e;
        v[e] = (ex < xdim && ek < kend) ? X[base + e] : 0.0f;
    }
    return (float4)(v[0], v[1], v[2], v[3]);
}

/* Store what gf_load4 loaded for idx into the k-major local tile Xs[k][x] (row stride ld4 float4s). */
static inline void gf_store4(const int xc, const int bx, __local float4 *Xs, const int ld4, int idx,
                             float4 v) {
    if (xc) {
        const int k = idx / (bx / 4), x4 = idx - k * (bx / 4);
        Xs[k * ld4 + x4] = v;
    } else {
        const int x = idx / (BK / 4), k = (idx - x * (BK / 4)) * 4;
        __local float *s = (__local float *)Xs;
        s[(k + 0) * ld4 * 4 + x] = v.x;
        s[(k + 1) * ld4 * 4 + x] = v.y;
        s[(k + 2) * ld4 * 4 + x] = v.z;
        s[(k + 3) * ld4 * 4 + x] = v.w;
    }
}

#if MMA_PACKED_TILES
/* Packed tiles (MMA_PACKED_TILES, the tensor-core forms): the staged tiles hold the values
 * already converted for the engine, as 32-bit words the mma.sync fragments take as they are: one
 * TF32 value (cvt.rna) a word, or two bf16 / fp16 values of consecutive k (the lower k in the lower
 * half). Each operand is x-major (rows of op(A), columns of op(B)) in planes of PW words a row,
 * in k order: word w of row x at (w / PW) * P + x * PW + (x / 8) * (PW / 4) + w % PW, with planes
 * of P = bx * PW + (bx / 8) * (PW / 4) words: each group of 8 rows is shifted by PW / 4 words (2
 * with PW 8, keeping 64-bit reads aligned), so that the stores of operands contiguous along x,
 * whose lanes write rows 4 apart (one float4 of x each, element e of all lanes at once), meet 16
 * banks (2 lanes a bank) instead of one at 128-wide tiles: 32 lanes on one bank, once per element,
 * is the likely cause (read from the code, not measured) of this form's first layout running
 * GPT-2 124M 1.57x slower than the fp32 tiles (an H100, session 12). 8 rows of a fragment read
 * share one shift, so the reads still meet 32 banks. With PW = 8 a lane reads
 * words 2t and 2t + 1 of its row as one 64-bit read and hands them to the engine as the words of
 * "k t" and "k t + 4" (TF32 m16n8k8; the pairs t and t + 4 of bf16 / fp16 m16n8k16): A registers 0
 * and 2 of row g, 1 and 3 of row g + 8, B registers 0 and 1 of column g. That feeds the engine the
 * slice's k in another order, the same for both operands, so every product meets its partner and
 * the sum is the same product (the engine's order of additions is its own either way). A K slice
 * of 8 in bf16 / fp16 is one plane of 4 words (m16n8k8 reads word t alone, in order). Lanes g
 * (rows) and t (words) meet distinct banks (8 g + 2 t with 64-bit reads, 4 g + t with 32-bit
 * ones). Against the fp32 tiles, whose fragments take one 32-bit read and one conversion per value
 * on every read: a quarter of the reads (bf16 / fp16) or half (TF32), and one conversion per
 * staged value (at 128 x 128 the A tile is read by four warps, B by two). The packed tiles take
 * the room they need (GF_COPY_A, GF_COPY_B): half the fp32 tiles' in bf16 / fp16, which makes
 * K slices of 32 possible there (BK 32, bf16 / fp16 only: two planes a copy; BK 32 selects this
 * form by itself). */
#define KPW (MMA_KIND == 1 ? 1 : 2)           /* k per word */
#define PW (BK / KPW < 8 ? BK / KPW : 8)    /* words a row of a plane */
#define PWS (PW == 8 ? 3 : 2)
/* (shifts and masks, w >= 0: a division next to a remainder becomes a `freeze`, see gf_load4) */
#define GF_PLANE(bx) ((bx) * PW + ((bx) >> 3) * (PW / 4))
#define GF_PADDR(bx, x, w) (((w) >> PWS) * GF_PLANE(bx) + (x) * PW + ((x) >> 3) * (PW / 4) + ((w) & (PW - 1)))
#define GF_COPY_A ((BK / KPW / PW * GF_PLANE(BM) + 3) / 4)
#define GF_COPY_B ((BK / KPW / PW * GF_PLANE(BN) + 3) / 4)
static inline void gf_store4p(const int xc, const int bx, __local uint *Xw, int idx, float4 v) {
    if (xc) { /* x .. x+3 of one k */
        const int k = idx / (bx / 4), x = (idx - k * (bx / 4)) * 4;
#if MMA_KIND == 1
        Xw[GF_PADDR(bx, x + 0, k)] = gf_tf32(v.x);
        Xw[GF_PADDR(bx, x + 1, k)] = gf_tf32(v.y);
        Xw[GF_PADDR(bx, x + 2, k)] = gf_tf32(v.z);
        Xw[GF_PADDR(bx, x + 3, k)] = gf_tf32(v.w);
#else /* four 16-bit stores into the halves of four words */
        __local ushort *h = (__local ushort *)Xw;
        const uint lo = gf_pack(v.x, v.y), hi = gf_pack(v.z, v.w);
        const int part = k & 1;
        h[GF_PADDR(bx, x + 0, k >> 1) * 2 + part] = (ushort)(lo & 0xffffu);
        h[GF_PADDR(bx, x + 1, k >> 1) * 2 + part] = (ushort)(lo >> 16);
        h[GF_PADDR(bx, x + 2, k >> 1) * 2 + part] = (ushort)(hi & 0xffffu);
        h[GF_PADDR(bx, x + 3, k >> 1) * 2 + part] = (ushort)(hi >> 16);
#endif
    } else { /* k .. k+3 of one x (k a multiple of 4): adjacent words of one plane (stored one by
              * one: oclgrind's uninitialised-value checker takes a vector built from scalars
              * for undefined) */
        const int x = idx / (BK / 4), k = (idx - x * (BK / 4)) * 4;
        __local uint *w = Xw + GF_PADDR(bx, x, k / KPW);
#if MMA_KIND == 1
        w[0] = gf_tf32(v.x);
        w[1] = gf_tf32(v.y);
        w[2] = gf_tf32(v.z);
        w[3] = gf_tf32(v.w);
#else
        w[0] = gf_pack(v.x, v.y);
        w[1] = gf_pack(v.z, v.w);
#endif
    }
}
#define GF_STAGE(xc, bx, Xs, ld4, idx, v) gf_store4p(xc, bx, (__local uint *)(Xs), idx, v)
#else
#define GF_STAGE(xc, bx, Xs, ld4, idx, v) gf_store4(xc, bx, Xs, ld4, idx, v)
#endif

/* the As array: both copies, and at least one float4 per work-item (EPI_COLSUM's sums meet there) */
#define GF_AS_SIZE (2 * GF_COPY_A < NT ? NT : 2 * GF_COPY_A)
#if (GF_AS_SIZE + 2 * GF_COPY_B) * 16 > 49152
#error "gemm_fast.cl: the two copies of the As and Bs tiles exceed 48 KiB of local memory"
#endif

static inline void gemm_fast_body(const int ta, const int tb, int M, int N, int K, int kps,
                                  float alpha, __global const float *A, ulong a_off, int lda,
                                  __global const float *B, ulong b_off, int ldb, float beta,
                                  __global float *C, ulong c_off, int ldc, ulong c_split,
                                  __global const float *bias, ulong bias_off,
                                  __global float *X, ulong x_off, __global float *CS,
                                  ulong cs_off, ulong cs_split, int cs_acc, __local float4 *As,
                                  __local float4 *Bs GF_EMU_PARAM) {
    /* (a warp of 32 work-items spans 16 x 2 positions; 8 x 4, which halves the distinct float4
     * addresses of the As reads and doubles those of Bs, measured the same on an H200) */
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int lid = ty * WG + tx;
    const int n0 = get_group_id(0) * BN, m0 = get_group_id(1) * BM;
    const int s = get_group_id(2);
    A += a_off;
    B += b_off;
    C += c_off + (ulong)s * c_split;
    X += x_off;
    const int k_begin = s * kps;
    const int k_end = min(K, k_begin + kps);
    const int inside = m0 + BM <= M && n0 + BN <= N;
    /* op(A) is stored with rows along m when transposed, op(B) with rows along n when not */
    const int a_xc = ta, b_xc = !tb;

#if MMA_KIND
    const int lane = lid & 31, warp = lid >> 5;
    const int g = lane >> 2, t = lane & 3;
    /* (warp - wq * WARPS_M, not warp % WARPS_M next to warp / WARPS_M: see gf_load4) */
    const int wq = warp / WARPS_M, wm0 = (warp - wq * WARPS_M) * WTM, wn0 = wq * WTN;
    float acc[MT][NTL][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NTL; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;
#else
    float acc[RM][RN];
#pragma unroll
    for (int i = 0; i < RM; i++)
#pragma unroll
        for (int j = 0; j < RN; j++) acc[i][j] = 0.0f;
#endif

    float4 ra[NLA], rb[NLB];
    float4 csum = (float4)(0.0f); /* EPI_COLSUM: this work-item's staged A float4s, added */
    /* first slice: global -> registers -> copy 0 */
    if (k_begin < k_end) {
        const int full = inside && k_begin + BK <= k_end;
#pragma unroll
        for (int q = 0; q < NLA; q++)
            ra[q] = gf_load4(a_xc, BM, A, lda, m0, k_begin, lid + q * NT, M, k_end, full);
#pragma unroll
        for (int q = 0; q < NLB; q++)
            rb[q] = gf_load4(b_xc, BN, B, ldb, n0, k_begin, lid + q * NT, N, k_end, full);
#pragma unroll
        for (int q = 0; q < NLA; q++) GF_STAGE(a_xc, BM, As, LDA4, lid + q * NT, GF_ROUND4(ra[q]));
        if (EPI_COLSUM && ta) {
#pragma unroll
            for (int q = 0; q < NLA; q++) csum += ra[q];
        }
#pragma unroll
        for (int q = 0; q < NLB; q++) GF_STAGE(b_xc, BN, Bs, LDB4, lid + q * NT, GF_ROUND4(rb[q]));
    }
    /* copy 0 complete before anyone reads it */
    barrier(CLK_LOCAL_MEM_FENCE);

    int cur = 0;
    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        const int kn = k0 + BK;
        const int more = kn < k_end;
        if (more) { /* next slice into registers while this one is multiplied */
            const int full = inside && kn + BK <= k_end;
#pragma unroll
            for (int q = 0; q < NLA; q++)
                ra[q] = gf_load4(a_xc, BM, A, lda, m0, kn, lid + q * NT, M, k_end, full);
#pragma unroll
            for (int q = 0; q < NLB; q++)
                rb[q] = gf_load4(b_xc, BN, B, ldb, n0, kn, lid + q * NT, N, k_end, full);
        }
        __local const float4 *as = As + cur * GF_COPY_A;
        __local const float4 *bs = Bs + cur * GF_COPY_B;
#if MMA_KIND
#if MMA_PACKED_TILES
        __local const uint *ah = (__local const uint *)as, *bh = (__local const uint *)bs;
#if PW == 8 /* 64-bit reads: TF32 m16n8k8 per plane of 8 k, or bf16 / fp16 m16n8k16 */
#pragma unroll
        for (int p = 0; p < BK / (8 * KPW); p++) {
            uint fa[MT][4], fb[NTL][2];
#pragma unroll
            for (int i = 0; i < MT; i++) {
                const int m = wm0 + i * 16 + g;
                const uint2 r0 = *(__local const uint2 *)(ah + GF_PADDR(BM, m, p * 8) + 2 * t);
                const uint2 r8 = *(__local const uint2 *)(ah + GF_PADDR(BM, m + 8, p * 8) + 2 * t);
                fa[i][0] = r0.x;
                fa[i][2] = r0.y;
                fa[i][1] = r8.x;
                fa[i][3] = r8.y;
            }
#pragma unroll
            for (int j = 0; j < NTL; j++) {
                const int n = wn0 + j * 8 + g;
                const uint2 r = *(__local const uint2 *)(bh + GF_PADDR(BN, n, p * 8) + 2 * t);
                fb[j][0] = r.x;
                fb[j][1] = r.y;
            }
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int j = 0; j < NTL; j++)
#if MMA_KIND == 1
                    gf_mma(acc[i][j], fa[i][0], fa[i][1], fa[i][2], fa[i][3], fb[j][0], fb[j][1]
                           GF_EMU_ARG);
#else
                    gf_mma16(acc[i][j], fa[i][0], fa[i][1], fa[i][2], fa[i][3], fb[j][0], fb[j][1]
                             GF_EMU_ARG);
#endif
        }
#else /* bf16 / fp16, a K slice of 8: m16n8k8, word t of rows g and g + 8 */
        {
            uint fa[MT][2], fb[NTL];
#pragma unroll
            for (int i = 0; i < MT; i++) {
                const int m = wm0 + i * 16 + g;
                fa[i][0] = ah[GF_PADDR(BM, m, t)];
                fa[i][1] = ah[GF_PADDR(BM, m + 8, t)];
            }
#pragma unroll
            for (int j = 0; j < NTL; j++) fb[j] = bh[GF_PADDR(BN, wn0 + j * 8 + g, t)];
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int j = 0; j < NTL; j++) gf_mma8(acc[i][j], fa[i][0], fa[i][1], fb[j] GF_EMU_ARG);
        }
#endif
#else
        __local const float *af = (__local const float *)as;
        __local const float *bf = (__local const float *)bs;
#if MMA_KIND >= 2
#define LA (LDA4 * 4)
#define LB (LDB4 * 4)
#if BK % 16 == 0
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            uint fa[MT][4], fb[NTL][2];
            const int k0 = kk + 2 * t;
#pragma unroll
            for (int i = 0; i < MT; i++) {
                const int m = wm0 + i * 16 + g;
                fa[i][0] = gf_pack(af[k0 * LA + m], af[(k0 + 1) * LA + m]);
                fa[i][1] = gf_pack(af[k0 * LA + m + 8], af[(k0 + 1) * LA + m + 8]);
                fa[i][2] = gf_pack(af[(k0 + 8) * LA + m], af[(k0 + 9) * LA + m]);
                fa[i][3] = gf_pack(af[(k0 + 8) * LA + m + 8], af[(k0 + 9) * LA + m + 8]);
            }
#pragma unroll
            for (int j = 0; j < NTL; j++) {
                const int n = wn0 + j * 8 + g;
                fb[j][0] = gf_pack(bf[k0 * LB + n], bf[(k0 + 1) * LB + n]);
                fb[j][1] = gf_pack(bf[(k0 + 8) * LB + n], bf[(k0 + 9) * LB + n]);
            }
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int j = 0; j < NTL; j++)
                    gf_mma16(acc[i][j], fa[i][0], fa[i][1], fa[i][2], fa[i][3], fb[j][0], fb[j][1]
                             GF_EMU_ARG);
        }
#else
        {
            uint fa[MT][2], fb[NTL];
            const int k0 = 2 * t;
#pragma unroll
            for (int i = 0; i < MT; i++) {
                const int m = wm0 + i * 16 + g;
                fa[i][0] = gf_pack(af[k0 * LA + m], af[(k0 + 1) * LA + m]);
                fa[i][1] = gf_pack(af[k0 * LA + m + 8], af[(k0 + 1) * LA + m + 8]);
            }
#pragma unroll
            for (int j = 0; j < NTL; j++) {
                const int n = wn0 + j * 8 + g;
                fb[j] = gf_pack(bf[k0 * LB + n], bf[(k0 + 1) * LB + n]);
            }
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int j = 0; j < NTL; j++) gf_mma8(acc[i][j], fa[i][0], fa[i][1], fb[j] GF_EMU_ARG);
        }
#endif
#undef LA
#undef LB
#else
#pragma unroll
        for (int kk = 0; kk < BK; kk += 8) {
            uint fa[MT][4], fb[NTL][2];
#pragma unroll
            for (int i = 0; i < MT; i++) {
                const int m = wm0 + i * 16 + g;
                fa[i][0] = gf_tf32(af[(kk + t) * (LDA4 * 4) + m]);
                fa[i][1] = gf_tf32(af[(kk + t) * (LDA4 * 4) + m + 8]);
                fa[i][2] = gf_tf32(af[(kk + t + 4) * (LDA4 * 4) + m]);
                fa[i][3] = gf_tf32(af[(kk + t + 4) * (LDA4 * 4) + m + 8]);
            }
#pragma unroll
            for (int j = 0; j < NTL; j++) {
                const int n = wn0 + j * 8 + g;
                fb[j][0] = gf_tf32(bf[(kk + t) * (LDB4 * 4) + n]);
                fb[j][1] = gf_tf32(bf[(kk + t + 4) * (LDB4 * 4) + n]);
            }
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int j = 0; j < NTL; j++)
                    gf_mma(acc[i][j], fa[i][0], fa[i][1], fa[i][2], fa[i][3], fb[j][0], fb[j][1]
                           GF_EMU_ARG);
        }
#endif
#endif /* MMA_PACKED_TILES */
#else
#pragma unroll
        for (int kk = 0; kk < BK; kk++) {
            float a[RM], b[RN];
#pragma unroll
            for (int i = 0; i < RM / 4; i++) {
                const float4 v = as[kk * LDA4 + ty + i * WG];
                a[i * 4 + 0] = v.x;
                a[i * 4 + 1] = v.y;
                a[i * 4 + 2] = v.z;
                a[i * 4 + 3] = v.w;
            }
#pragma unroll
            for (int j = 0; j < RN / 4; j++) {
                const float4 v = bs[kk * LDB4 + tx + j * WG];
                b[j * 4 + 0] = v.x;
                b[j * 4 + 1] = v.y;
                b[j * 4 + 2] = v.z;
                b[j * 4 + 3] = v.w;
            }
#pragma unroll
            for (int i = 0; i < RM; i++)
#pragma unroll
                for (int j = 0; j < RN; j++) acc[i][j] = mad(a[i], b[j], acc[i][j]);
        }
#endif
        if (more) {
            __local float4 *na = As + (cur ^ 1) * GF_COPY_A;
            __local float4 *nb = Bs + (cur ^ 1) * GF_COPY_B;
#pragma unroll
            for (int q = 0; q < NLA; q++) GF_STAGE(a_xc, BM, na, LDA4, lid + q * NT, GF_ROUND4(ra[q]));
            /* (added here, where the loads are consumed anyway: an add right after them waits
             * for global memory before the multiply; on an H200 that cost each layer's backward
             * products 0.11 ms per step) */
            if (EPI_COLSUM && ta) {
#pragma unroll
                for (int q = 0; q < NLA; q++) csum += ra[q];
            }
#pragma unroll
            for (int q = 0; q < NLB; q++) GF_STAGE(b_xc, BN, nb, LDB4, lid + q * NT, GF_ROUND4(rb[q]));
        }
        /* the copy just written is complete, and nobody reads the other one any more before it is
         * overwritten in the next iteration */
        barrier(CLK_LOCAL_MEM_FENCE);
        cur ^= 1;
    }

#if EPI_COLSUM
    if (ta) { /* the loop ended at a barrier: nobody reads As any more */
        As[lid] = csum;
        barrier(CLK_LOCAL_MEM_FENCE);
        if (get_group_id(0) == 0 && lid < BM / 4) {
            float4 t = As[lid];
            for (int j = 1; j < NT / (BM / 4); j++) t += As[lid + j * (BM / 4)];
            __global float *cs = CS + cs_off + (ulong)s * cs_split;
            const float w[4] = {t.x, t.y, t.z, t.w};
            for (int e = 0; e < 4; e++) {
                const int m = m0 + lid * 4 + e;
                if (m < M) cs[m] = cs_acc ? cs[m] + w[e] : w[e];
            }
        }
    }
#endif

#if MMA_KIND
    /* each lane's accumulators: fragment (i, j), rows g and g+8, columns 2t and 2t+1 */
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NTL; j++)
            gf_store_frag(C, X, bias, bias_off, ldc, M, N, m0 + wm0 + i * 16 + g,
                          n0 + wn0 + j * 8 + 2 * t, alpha, beta, acc[i][j]);
#else
#pragma unroll
    for (int i = 0; i < RM / 4; i++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int r = i * 4 + e;
            const int m = m0 + ty * 4 + i * 4 * WG + e;
#pragma unroll
            for (int j = 0; j < RN / 4; j++) {
                const int n = n0 + tx * 4 + j * 4 * WG;
                const float4 v = (float4)(acc[r][j * 4 + 0], acc[r][j * 4 + 1], acc[r][j * 4 + 2],
                                          acc[r][j * 4 + 3]) *
                                 alpha;
#if VEC
                if (inside) { /* (the host checked X's offset too) */
                    const size_t i4 = (size_t)m * ldc + n;
                    __global float4 *p = (__global float4 *)(C + i4);
                    const float4 bv = EPI_BIAS ? vload4(0, bias + bias_off + n) : (float4)(0.0f);
                    float4 o = (beta == 0.0f ? v : v + beta * *p) + bv;
                    if (EPI_ACT == 2) {
                        const float4 xv = *(__global const float4 *)(X + i4);
                        o *= (float4)(gf_gelu_grad(xv.x), gf_gelu_grad(xv.y), gf_gelu_grad(xv.z),
                                      gf_gelu_grad(xv.w));
                    }
                    *p = o;
                    if (EPI_ACT == 1)
                        *(__global float4 *)(X + i4) =
                            (float4)(gf_gelu(o.x), gf_gelu(o.y), gf_gelu(o.z), gf_gelu(o.w));
                    continue;
                }
#endif
                if (m >= M) continue;
                const float w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                for (int f = 0; f < 4; f++) {
                    if (n + f >= N) continue;
                    const size_t idx = (size_t)m * ldc + n + f;
                    const float bf = EPI_BIAS ? bias[bias_off + n + f] : 0.0f;
                    gf_store(C, X, idx, (beta == 0.0f ? w[f] : w[f] + beta * C[idx]) + bf, EPI_ACT);
                }
            }
        }
    }
#endif
}

/* One kernel per transpose combination, so ta/tb are constants after inlining. */
#if MMA_KIND && defined(MMA_EMULATE)
#define GF_EMU_DECL __local uint emu[NT * 6]; /* the emulated warps' registers */
#else
#define GF_EMU_DECL
#endif
#define GEMM_FAST_KERNEL(NAME, TA_, TB_)                                                           \
    __kernel __attribute__((reqd_work_group_size(WG, WG, 1))) void NAME(                          \
        int M, int N, int K, int kps, float alpha, __global const float *A, ulong a_off, int lda,  \
        __global const float *B, ulong b_off, int ldb, float beta, __global float *C,              \
        ulong c_off, int ldc, ulong c_split, __global const float *bias, ulong bias_off,           \
        __global float *X, ulong x_off, __global float *CS, ulong cs_off, ulong cs_split,          \
        int cs_acc) {                                                                              \
        __local float4 As[GF_AS_SIZE];                                                             \
        __local float4 Bs[2 * GF_COPY_B];                                                          \
        GF_EMU_DECL                                                                                \
        gemm_fast_body(TA_, TB_, M, N, K, kps, alpha, A, a_off, lda, B, b_off, ldb, beta, C,       \
                       c_off, ldc, c_split, bias, bias_off, X, x_off, CS, cs_off, cs_split,        \
                       cs_acc, As, Bs GF_EMU_ARG);                                                 \
    }

GEMM_FAST_KERNEL(gemm_fast_nn, 0, 0)
GEMM_FAST_KERNEL(gemm_fast_nt, 0, 1)
GEMM_FAST_KERNEL(gemm_fast_tn, 1, 0)
GEMM_FAST_KERNEL(gemm_fast_tt, 1, 1)

#if MMA_KIND && !defined(MMA_EMULATE)
/* The matrix engine's peak, for bench's MFU in tf32 / bf16 / fp16 runs (src/backend/opencl/
 * cl_peak.c): every warp runs GF_PEAK_CHAINS independent accumulator fragments through iters
 * rounds of mma.sync on operands held in registers (m16n8k8 with TF32 inputs: 2048 flops a warp
 * instruction; m16n8k16 with bf16 / fp16 inputs: 4096), and every accumulator feeds the stored
 * result. The operands are numbers near 1 in each format (1 + a few ulps: products of zeros or
 * of values that underflow would draw less power than a real product), and the sums stay far
 * below the fp32 range for any loop count bench runs (16 a product, at most 2^28 rounds). */
#define GF_PEAK_CHAINS 8
__kernel void gemm_fast_mma_peak(__global float *out, int iters) {
    const uint g = (uint)get_global_id(0);
#if MMA_KIND == 1
    const uint one = 0x3f800000u; /* 1.0f: TF32 takes the upper 19 bits */
    const uint a0 = one + ((g & 7u) << 13), a1 = a0 + (1u << 13), a2 = a0 + (2u << 13);
    const uint a3 = a0 + (3u << 13), b0 = a0 + (4u << 13), b1 = a0 + (5u << 13);
#else
#if MMA_KIND == 2
    const uint one = 0x3f803f80u; /* two bf16 1.0 */
#else
    const uint one = 0x3c003c00u; /* two fp16 1.0 */
#endif
    const uint a0 = one + (g & 7u) * 0x00010001u, a1 = a0 + 0x00010001u, a2 = a0 + 0x00020002u;
    const uint a3 = a0 + 0x00030003u, b0 = a0 + 0x00040004u, b1 = a0 + 0x00050005u;
#endif
    float c[GF_PEAK_CHAINS][4];
#pragma unroll
    for (int j = 0; j < GF_PEAK_CHAINS; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) c[j][e] = 0.0f;
    for (int i = 0; i < iters; i++) {
#pragma unroll
        for (int j = 0; j < GF_PEAK_CHAINS; j++) {
#if MMA_KIND == 1
            gf_mma(c[j], a0, a1, a2, a3, b0, b1);
#else
            gf_mma16(c[j], a0, a1, a2, a3, b0, b1);
#endif
        }
    }
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < GF_PEAK_CHAINS; j++) s += (c[j][0] + c[j][1]) + (c[j][2] + c[j][3]);
    out[g] = s;
}
#endif

#endif /* GF_MMA_HELPERS_ONLY */
