/* clformer: flash attention on tensor cores, forward and backward (precision tf32, bf16, fp16;
 * host code src/backend/opencl/cl_flash.c). Built after gemm_fast.cl's matrix-engine helpers
 * (that file with -DGF_MMA_HELPERS_ONLY: gf_tf32, gf_pack, gf_mma, gf_mma16 and their emulation
 * under MMA_EMULATE), with MMA_KIND 1 (tf32), 2 (bf16) or 3 (fp16) and HS a multiple of the
 * product's k (8 in tf32, 16 else), at most 128.
 *
 * The forward's contract and mask are flash_tiled_forward's (flash_tiled.cl): out and lse of every
 * query row; query i sees key j when lo(i) <= j <= i. Products: S = Q K^T with Q and K rounded to
 * the format as they are packed into fragments (bf16 / fp16 to nearest, ties to even; TF32 by
 * cvt.rna, ties away from zero) and fp32 accumulation, then scaled by 1/sqrt(hs) in fp32; the
 * online softmax in fp32; O += P V with P and V rounded to the format and fp32 accumulation.
 * That is what FlashAttention does with bf16 / fp16 inputs. The backward is below.
 *
 * A work-group is FM_WARPS warps (4: 128 work-items, consecutive local ids); warp w owns query rows
 * i0 + 16 w .. + 15 of one (batch, head), and the group walks the blocks of 64 keys its rows can
 * see. Each warp keeps its Q as A fragments in registers (loaded once from global memory), the
 * scores of a block as 8 accumulator fragments of 16 x 8 (lane: rows g and g + 8, keys 2t and
 * 2t + 1 of each; g = lane / 4, t = lane % 4), and the output as HS / 8 such fragments. K and V
 * blocks are staged in local memory already in the format (fm_stage: each value rounded once per
 * work-group, not once per warp that reads it), so a B fragment register is one 32-bit read. Row
 * maxima and sums
 * meet across the 4 lanes of a row through local memory (no sub-group shuffles: the same code
 * runs under the emulation). The accumulator fragments of two adjacent key tiles are exactly the
 * A fragment of m16n8k16 for P (registers: rows g / g + 8, keys 2t, 2t+1 / 2t+8, 2t+9), so P never
 * leaves the registers. Every loop over a private array is unrolled (#pragma unroll): the
 * arrays then live in registers, and no pointer into them is held across the barriers of the
 * emulated mma.sync (PoCL's work-group loops lose track of such pointers: wrong results with more
 * than one thread, seen here before the pragmas). The softmax's exponentials are exp2 of scores
 * scaled by scale * log2(e) (one multiply-add and exp2 a score); lse stays in natural log. */
#if MMA_KIND < 1 || MMA_KIND > 3
#error "flash_mma.cl: MMA_KIND 1 (tf32), 2 (bf16) or 3 (fp16)"
#endif
/* One product step and its operands' registers (gemm_fast.cl's fragment layouts):
 *   FM_K        the k of one mma.sync: 16 (bf16 / fp16, m16n8k16), 8 (TF32, m16n8k8)
 *   FM_RW(p, h) register h (0, 1) of a lane's operand contiguous along k in global memory (the
 *               fragments held in registers), p at its k 2t of the step: bf16 / fp16 the pairs at
 *               2t, 2t + 1 and 2t + 8, 2t + 9; TF32 the value at 2t (h 0) or 2t + 1 (h 1)
 *   FM_PA(c, u, r)   register r of the A fragment of k step u made of accumulator fragments c
 *               (rows g, g + 8 at columns 2t, 2t + 1 of each tile of 8): bf16 / fp16 tiles 2u and
 *               2u + 1 packed in pairs, TF32 tile u alone
 * TF32 permutes k inside each step of 8: PTX's lane k t and t + 4 carry columns 2t and 2t + 1 (both
 * operands of a product the same way, so the sum is unchanged), which makes an accumulator tile
 * the A fragment as it stands and keeps the two values of a lane adjacent, as bf16's pairs are. */
#if MMA_KIND == 1
#define FM_K 8
#define FM_MMA gf_mma
#define FM_RW(p, h) gf_tf32((p)[h])
#define FM_PA(c, u, r) gf_tf32(c[u][((r) & 1) * 2 + ((r) >> 1)])
#else
#define FM_K 16
#define FM_MMA gf_mma16
#define FM_RW(p, h) gf_pack((p)[8 * (h)], (p)[8 * (h) + 1])
#define FM_PA(c, u, r)                                                                             \
    gf_pack(c[2 * (u) + ((r) >> 1)][((r) & 1) * 2], c[2 * (u) + ((r) >> 1)][((r) & 1) * 2 + 1])
#endif
#if HS % FM_K != 0 || HS > 128
#error "flash_mma.cl: HS must be a multiple of the product's k (16; 8 in TF32), at most 128"
#endif
#ifndef FM_WARPS
#define FM_WARPS 4 /* warps a group, 16 query rows (or keys) each: 4, or 8 in a variant */
#endif
#define FM_NT (32 * FM_WARPS)
#define FM_BR (16 * FM_WARPS) /* query rows of a group */
/* keys (or queries) of a block: 64, or 32 above head size 64, so that the backward's staged tiles
 * fit NVIDIA's 48 KiB (cl_flash.c: mma_local_lm) */
#define FM_BC (HS <= 64 ? 64 : 32)
#define FM_KT (FM_BC / 8)     /* key tiles of 8 in a block */
#define FM_DT (HS / 8)        /* output tiles of 8 head columns */
#define FM_KS (HS / FM_K)     /* product steps over the head dimension */
#define FM_LOG2E 1.4426950408889634f
#define FM_LN2 0.6931471805599453f

/* Staged tiles: 32-bit words in local memory, each value rounded to the format as it is staged
 * (fm_stage): two bf16 / fp16 values of consecutive k a word (the lower k in bits 0-15, as
 * gf_pack), or one TF32 value (cvt.rna, gf_tf32). Product step s (FM_K values of k) is 8 words;
 * FM_WI(s, h) is the word of a lane's register h in it (bf16 / fp16: the pairs at k 2t and 2t + 8;
 * TF32: the values at 2t and 2t + 1, FM_RW's permutation).
 *   row-major: FM_BC rows (keys or queries) of HS values along the head, FM_RWD words a row;
 *       FM_RR(buf, row, s, h) is register h of step s along the head of that row.
 *   transposed (bf16 / fp16): HS rows (head columns) of FM_BC values along the keys or queries,
 *       FM_TWD words a row; FM_TR(buf, col, u, h) is register h of step u along the keys of head
 *       column col. TF32 has nothing to pair, so it reads its row-major tile down the column
 *       instead (FM_TR of a row-major buffer) and stages no transposed tile (FM_TSZ 0).
 * Padding: bf16 / fp16 rows are 4 words past a multiple of 8, so the 8 rows (g) x 4 words (t) of a
 * fragment read meet 32 banks; TF32 rows (HS + 4 words) make the column reads meet 32 banks. */
#if MMA_KIND == 1
#define FM_EPW 1
#define FM_RWD (HS + 4)
#define FM_WI(s, h) (8 * (s) + 2 * t + (h))
#define FM_TR(buf, col, u, h) (buf)[(8 * (u) + 2 * t + (h)) * FM_RWD + (col)]
#define FM_TSZ 0
#else
#define FM_EPW 2
#define FM_RWD (HS / 2 + 4)
#define FM_TWD (FM_BC / 2 + 4)
#define FM_WI(s, h) (8 * (s) + 4 * (h) + t)
#define FM_TR(buf, col, u, h) (buf)[(col) * FM_TWD + FM_WI(u, h)]
#define FM_TSZ (HS * FM_TWD)
#endif
#define FM_RR(buf, row, s, h) (buf)[(row) * FM_RWD + FM_WI(s, h)]
#define FM_RSZ (FM_BC * FM_RWD) /* words of a row-major tile */

/* rows n0 .. n0 + FM_BC - 1 of a row-major fp32 matrix x (ld floats a row, columns col0 ..
 * col0 + HS - 1; rows at or past T as 0) into the row-major tile R (want_r) and, in bf16 / fp16,
 * the transposed tile Tt (want_t). A work-item takes 4 columns of 2 rows at a time: a warp's 32
 * are 8 row pairs x 4 consecutive column quads, so it reads 64 contiguous bytes of each row, and
 * at most 2 of its transposed stores meet in a bank. */
static inline void fm_stage(__local uint *R, __local uint *Tt, int want_r, int want_t,
                            __global const float *x, ulong x_off, int ld, int col0, int b, int T,
                            int n0) {
    for (int e = get_local_id(0); e < FM_BC / 2 * (HS / 4); e += FM_NT) {
        const int q = e >> 3, rh = q / (HS / 4), cq = q - rh * (HS / 4);
        const int rp = rh * 8 + (e & 7), i = n0 + 2 * rp, c = 4 * cq;
        const ulong at = x_off + ((ulong)b * T + i) * (ulong)ld + (ulong)col0 + c;
        const float4 v0 = i < T ? vload4(0, x + at) : (float4)(0.0f);
        const float4 v1 = i + 1 < T ? vload4(0, x + at + ld) : (float4)(0.0f);
#if MMA_KIND == 1
        if (want_r) {
            __local uint *r = R + 2 * rp * FM_RWD + c;
            r[0] = gf_tf32(v0.x);
            r[1] = gf_tf32(v0.y);
            r[2] = gf_tf32(v0.z);
            r[3] = gf_tf32(v0.w);
            r[FM_RWD] = gf_tf32(v1.x);
            r[FM_RWD + 1] = gf_tf32(v1.y);
            r[FM_RWD + 2] = gf_tf32(v1.z);
            r[FM_RWD + 3] = gf_tf32(v1.w);
        }
#else
        if (want_r) {
            __local uint *r = R + 2 * rp * FM_RWD + c / 2;
            r[0] = gf_pack(v0.x, v0.y);
            r[1] = gf_pack(v0.z, v0.w);
            r[FM_RWD] = gf_pack(v1.x, v1.y);
            r[FM_RWD + 1] = gf_pack(v1.z, v1.w);
        }
        if (want_t) {
            __local uint *w = Tt + c * FM_TWD + rp;
            w[0] = gf_pack(v0.x, v1.x);
            w[FM_TWD] = gf_pack(v0.y, v1.y);
            w[2 * FM_TWD] = gf_pack(v0.z, v1.z);
            w[3 * FM_TWD] = gf_pack(v0.w, v1.w);
        }
#endif
    }
}

/* FM_SHFL 1 (hardware only, a build variant): the forward's row maxima of a block meet across a
 * row's 4 lanes by shfl.sync instead of through local memory and a barrier */
#ifndef FM_SHFL
#define FM_SHFL 0 /* (1: the variant) */
#endif
#ifdef MMA_EMULATE
#undef FM_SHFL
#define FM_SHFL 0
#endif
#if FM_SHFL
static inline float fm_quad_max(float v) {
    float o;
    asm volatile("shfl.sync.bfly.b32 %0, %1, 1, 0x1f, 0xffffffff;" : "=f"(o) : "f"(v));
    v = fmax(v, o);
    asm volatile("shfl.sync.bfly.b32 %0, %1, 2, 0x1f, 0xffffffff;" : "=f"(o) : "f"(v));
    return fmax(v, o);
}
#endif

static inline void flash_mma_body(__global float *out, ulong out_off, __global float *lse,
                                  ulong lse_off, __global const float *qkv, ulong qkv_off,
                                  __global const int *doc, ulong doc_off, int has_doc, int NH,
                                  int KVH, int T, int W, float scale, __local uint *Ks,
                                  __local uint *Vs, __local float *red GF_EMU_PARAM) {
    const int tid = get_local_id(0), w = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int h = get_global_id(1), b = get_global_id(2), i0 = get_group_id(0) * FM_BR;
    const int QKV = (NH + 2 * KVH) * HS, kh = h / (NH / KVH);
    const int i1 = (i0 + FM_BR < T ? i0 + FM_BR : T) - 1; /* the group's last row */
    const int r0 = i0 + 16 * w + g, r1 = r0 + 8;          /* this lane's two rows */
    const int lo0 = cf_flash_lo(doc, doc_off, has_doc, b, T, W, r0);
    const int lo1 = cf_flash_lo(doc, doc_off, has_doc, b, T, W, r1);
    /* the warp's rows i0 + 16 w .. + 15 see a whole block from key wlo (the first visible key of
     * its last row before T, the largest) up to its first row: no mask there (the same for the
     * whole warp, so the branch below never splits a warp before its mma.sync) */
    const int wr0 = i0 + 16 * w, wlo = cf_flash_lo(doc, doc_off, has_doc, b, T, W,
                                                   wr0 + 15 < T ? wr0 + 15 : T - 1);
    const float sl2 = scale * FM_LOG2E; /* scores in log2 units */
    /* Q's A fragments: registers 0, 2 row g, registers 1, 3 row g + 8 (FM_RW's columns of step s;
     * rows past T read as 0) */
    uint qf[FM_KS][4];
    #pragma unroll
    for (int s = 0; s < FM_KS; s++)
        #pragma unroll
        for (int r = 0; r < 4; r++) {
            const int row = (r & 1) ? r1 : r0;
            const ulong q = qkv_off + ((ulong)b * T + row) * (ulong)QKV + (ulong)h * HS +
                            FM_K * s + 2 * t;
            qf[s][r] = row < T ? FM_RW(qkv + q, r >> 1) : 0u;
        }
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    float o[FM_DT][4];
    #pragma unroll
    for (int d = 0; d < FM_DT; d++)
        #pragma unroll
        for (int e = 0; e < 4; e++) o[d][e] = 0.0f;
    for (int j0 = cf_flash_lo(doc, doc_off, has_doc, b, T, W, i0); j0 <= i1; j0 += FM_BC) {
        barrier(CLK_LOCAL_MEM_FENCE); /* the last block's K, V and red are read */
        /* K row-major; V transposed (TF32: row-major, read down its columns) */
        fm_stage(Ks, Ks, 1, 0, qkv, qkv_off, QKV, (NH + kh) * HS, b, T, j0);
        fm_stage(Vs, Vs, FM_EPW == 1, FM_EPW == 2, qkv, qkv_off, QKV, (NH + KVH + kh) * HS, b, T,
                 j0);
        /* the whole tile is in local memory before any row reads it (forward) */
        barrier(CLK_LOCAL_MEM_FENCE);
        /* S = Q K^T: key tile n holds keys j0 + 8 n .. + 7; B fragment: column (key) g, FM_RW's
         * head columns of step s */
        float sc[FM_KT][4];
        #pragma unroll
        for (int n = 0; n < FM_KT; n++) {
            #pragma unroll
            for (int e = 0; e < 4; e++) sc[n][e] = 0.0f;
            #pragma unroll
            for (int s = 0; s < FM_KS; s++)
                FM_MMA(sc[n], qf[s][0], qf[s][1], qf[s][2], qf[s][3], FM_RR(Ks, 8 * n + g, s, 0),
                       FM_RR(Ks, 8 * n + g, s, 1) GF_EMU_ARG);
        }
        /* scale and mask (none where the warp's rows see the whole block), then this lane's
         * partial row maxima */
        if (j0 >= wlo && j0 + FM_BC - 1 <= wr0) {
            #pragma unroll
            for (int n = 0; n < FM_KT; n++)
                #pragma unroll
                for (int e = 0; e < 4; e++) sc[n][e] *= sl2;
        } else {
            #pragma unroll
            for (int n = 0; n < FM_KT; n++)
                #pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int j = j0 + 8 * n + 2 * t + (e & 1), row = e < 2 ? r0 : r1;
                    const int lo = e < 2 ? lo0 : lo1;
                    sc[n][e] = j >= lo && j <= row ? sc[n][e] * sl2 : -INFINITY;
                }
        }
        float x0 = -INFINITY, x1 = -INFINITY;
        #pragma unroll
        for (int n = 0; n < FM_KT; n++) {
            x0 = fmax(x0, fmax(sc[n][0], sc[n][1]));
            x1 = fmax(x1, fmax(sc[n][2], sc[n][3]));
        }
#if FM_SHFL
        const float mx0 = fmax(m0, fm_quad_max(x0)), mx1 = fmax(m1, fm_quad_max(x1));
#else
        red[(16 * w + g) * 4 + t] = x0;
        red[(16 * w + g + 8) * 4 + t] = x1;
        barrier(CLK_LOCAL_MEM_FENCE);
        float mx0 = m0, mx1 = m1;
        #pragma unroll
        for (int k = 0; k < 4; k++) {
            mx0 = fmax(mx0, red[(16 * w + g) * 4 + k]);
            mx1 = fmax(mx1, red[(16 * w + g + 8) * 4 + k]);
        }
#endif
        /* a row that has seen no key yet keeps m = -inf; its p are 0 */
        const float c0 = mx0 == -INFINITY ? 1.0f : exp2(m0 - mx0);
        const float c1 = mx1 == -INFINITY ? 1.0f : exp2(m1 - mx1);
        float ps0 = 0.0f, ps1 = 0.0f;
        #pragma unroll
        for (int n = 0; n < FM_KT; n++)
            #pragma unroll
            for (int e = 0; e < 4; e++) {
                const float mx = e < 2 ? mx0 : mx1;
                const float p = mx == -INFINITY ? 0.0f : exp2(sc[n][e] - mx);
                sc[n][e] = p;
                if (e < 2)
                    ps0 += p;
                else
                    ps1 += p;
            }
        l0 = l0 * c0 + ps0;
        l1 = l1 * c1 + ps1;
        m0 = mx0;
        m1 = mx1;
        #pragma unroll
        for (int d = 0; d < FM_DT; d++) {
            o[d][0] *= c0;
            o[d][1] *= c0;
            o[d][2] *= c1;
            o[d][3] *= c1;
        }
        /* O += P V over the key steps: P's A fragment from the key tiles (FM_PA); V's B fragment:
         * column (head column) 8 d + g at the keys of step u (FM_TR) */
        #pragma unroll
        for (int u = 0; u < FM_BC / FM_K; u++) {
            const uint a0 = FM_PA(sc, u, 0), a1 = FM_PA(sc, u, 1);
            const uint a2 = FM_PA(sc, u, 2), a3 = FM_PA(sc, u, 3);
            #pragma unroll
            for (int d = 0; d < FM_DT; d++)
                FM_MMA(o[d], a0, a1, a2, a3, FM_TR(Vs, 8 * d + g, u, 0), FM_TR(Vs, 8 * d + g, u, 1)
                       GF_EMU_ARG);
        }
    }
    /* the row sums across the 4 lanes of each row */
    barrier(CLK_LOCAL_MEM_FENCE);
    red[(16 * w + g) * 4 + t] = l0;
    red[(16 * w + g + 8) * 4 + t] = l1;
    barrier(CLK_LOCAL_MEM_FENCE);
    float s0 = 0.0f, s1 = 0.0f;
    #pragma unroll
    for (int k = 0; k < 4; k++) {
        s0 += red[(16 * w + g) * 4 + k];
        s1 += red[(16 * w + g + 8) * 4 + k];
    }
    #pragma unroll
    for (int hr = 0; hr < 2; hr++) { /* rows g, g + 8 */
        const int row = hr ? r1 : r0;
        if (row >= T) continue;
        const float sum = hr ? s1 : s0, inv = 1.0f / sum;
        const ulong orow = out_off + ((ulong)b * T + row) * (ulong)(NH * HS) + (ulong)h * HS;
        #pragma unroll
        for (int d = 0; d < FM_DT; d++) {
            out[orow + 8 * d + 2 * t] = o[d][2 * hr] * inv;
            out[orow + 8 * d + 2 * t + 1] = o[d][2 * hr + 1] * inv;
        }
        if (t == 0)
            lse[lse_off + ((ulong)b * NH + h) * T + row] = (hr ? m1 : m0) * FM_LN2 + log(sum);
    }
}

/* The local arrays come as arguments (the host sizes them: cl_flash.c, mma_local_lm and
 * mma_local_emu): in lm the staged K (FM_RSZ words), the staged V (FM_VSZ) and the row
 * reductions (FM_BR * 4 floats); the emulated warps' registers in emu (FM_NT * 6 uints, or 4
 * bytes unused without the emulation). */
#define FM_VSZ (FM_EPW == 1 ? FM_RSZ : FM_TSZ)
__kernel __attribute__((reqd_work_group_size(FM_NT, 1, 1))) void
flash_mma_forward(__global float *out, ulong out_off, __global float *lse, ulong lse_off,
                  __global const float *qkv, ulong qkv_off, __global const int *doc, ulong doc_off,
                  int has_doc, int NH, int KVH, int T, int W, float scale, __local uint *lm,
                  __local uint *emu_) {
#ifdef MMA_EMULATE
    __local uint *emu = emu_;
#endif
    flash_mma_body(out, out_off, lse, lse_off, qkv, qkv_off, doc, doc_off, has_doc, NH, KVH, T, W,
                   scale, lm, lm + FM_RSZ, (__local float *)(lm + FM_RSZ + FM_VSZ) GF_EMU_ARG);
}

/* ---- the backward (flash_mma_dq, then flash_mma_dkv) -------------------------------------------
 * The contract is flash_tiled_dq / flash_tiled_dkv's (flash_tiled.cl), dq, dk, dv assigned:
 *     P = exp(scale q.k - lse) on the visible pairs (computed as exp2),
 *     D_i = sum_c dout_i,c out_i,c, dS = P (dout.v - D), dq_i = scale sum_j dS_ij k_j,
 *     dk_j = scale sum_i dS_ij q_i (over the query heads of k's group), dv_j = sum_i P_ij dout_i,
 * with every product on the matrix engine: its inputs (q, k, v, dout, P, dS) rounded to the format
 * as they are packed into fragments, fp32 accumulation; exp, the mask and the differences in fp32.
 * flash_mma_dq also writes D (delta: it reads each of its rows' dout and out once), which
 * flash_mma_dkv, launched after it on the same queue, reads. Nothing is atomic: each output is
 * written by one work-item, the sums in a fixed order. */

/* dq (and delta) of FM_BR query rows of one (batch, head): the forward's walk over the key blocks,
 * with S = Q K^T and dP = dO V^T from Q and dO fragments held in registers, then dQ += dS K. */
__kernel __attribute__((reqd_work_group_size(FM_NT, 1, 1))) void
flash_mma_dq(__global float *dqkv, ulong dqkv_off, __global float *delta, ulong delta_off,
             __global const float *dout, ulong dout_off, __global const float *out, ulong out_off,
             __global const float *lse, ulong lse_off, __global const float *qkv, ulong qkv_off,
             __global const int *doc, ulong doc_off, int has_doc, int NH, int KVH, int T, int W,
             float scale, __local uint *lm, __local uint *emu_) {
#ifdef MMA_EMULATE
    __local uint *emu = emu_;
#endif
    /* lm: K row-major, V row-major, K transposed (TF32: none; K's columns are read instead) */
    __local uint *Ks = lm, *Vs = lm + FM_RSZ, *Kt = FM_EPW == 1 ? lm : lm + 2 * FM_RSZ;
    const int tid = get_local_id(0), w = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int h = get_global_id(1), b = get_global_id(2), i0 = get_group_id(0) * FM_BR;
    const int QKV = (NH + 2 * KVH) * HS, kh = h / (NH / KVH), C = NH * HS;
    const int i1 = (i0 + FM_BR < T ? i0 + FM_BR : T) - 1;
    const int r0 = i0 + 16 * w + g, r1 = r0 + 8;
    const int lo0 = cf_flash_lo(doc, doc_off, has_doc, b, T, W, r0);
    const int lo1 = cf_flash_lo(doc, doc_off, has_doc, b, T, W, r1);
    /* as the forward's: the warp's rows see a whole block from key wlo to key wr0 */
    const int wr0 = i0 + 16 * w, wlo = cf_flash_lo(doc, doc_off, has_doc, b, T, W,
                                                   wr0 + 15 < T ? wr0 + 15 : T - 1);
    const float sl2 = scale * FM_LOG2E; /* P = exp2(s sl2 - lse log2(e)) */
    /* delta of this lane's rows: each of a row's 4 lanes adds every 4th column from column t,
     * the 4 partial sums meet in local memory (lm, before the first block is staged there) and
     * are added in order by each lane alike; lane t 0 stores it */
    float L0 = 0.0f, L1 = 0.0f;
    __local float *part = (__local float *)lm; /* FM_BR rows x 4 lanes */
    #pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        const int row = hr ? r1 : r0;
        float D = 0.0f;
        if (row < T) {
            const ulong o = ((ulong)b * T + row) * (ulong)C + (ulong)h * HS;
            for (int c = t; c < HS; c += 4)
                D = fma(dout[dout_off + o + c], out[out_off + o + c], D);
            const float L = lse[lse_off + ((ulong)b * NH + h) * T + row] * FM_LOG2E;
            if (hr)
                L1 = L;
            else
                L0 = L;
        }
        part[(16 * w + g + 8 * hr) * 4 + t] = D;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const float D0 = part[(16 * w + g) * 4] + part[(16 * w + g) * 4 + 1] +
                     part[(16 * w + g) * 4 + 2] + part[(16 * w + g) * 4 + 3];
    const float D1 = part[(16 * w + g + 8) * 4] + part[(16 * w + g + 8) * 4 + 1] +
                     part[(16 * w + g + 8) * 4 + 2] + part[(16 * w + g + 8) * 4 + 3];
    if (t == 0 && r0 < T) delta[delta_off + ((ulong)b * NH + h) * T + r0] = D0;
    if (t == 0 && r1 < T) delta[delta_off + ((ulong)b * NH + h) * T + r1] = D1;
    /* Q's and dO's A fragments: registers 0, 2 row r0, registers 1, 3 row r1 (FM_RW's columns
     * of step s; rows past T read as 0) */
    uint qf[FM_KS][4], of[FM_KS][4];
    #pragma unroll
    for (int s = 0; s < FM_KS; s++)
        #pragma unroll
        for (int r = 0; r < 4; r++) {
            const int row = (r & 1) ? r1 : r0, c = h * HS + FM_K * s + 2 * t;
            const ulong bt = (ulong)b * T + row;
            qf[s][r] = row < T ? FM_RW(qkv + qkv_off + bt * (ulong)QKV + c, r >> 1) : 0u;
            of[s][r] = row < T ? FM_RW(dout + dout_off + bt * (ulong)C + c, r >> 1) : 0u;
        }
    float dq[FM_DT][4];
    #pragma unroll
    for (int d = 0; d < FM_DT; d++)
        #pragma unroll
        for (int e = 0; e < 4; e++) dq[d][e] = 0.0f;
    for (int j0 = cf_flash_lo(doc, doc_off, has_doc, b, T, W, i0); j0 <= i1; j0 += FM_BC) {
        barrier(CLK_LOCAL_MEM_FENCE); /* the last block's K and V are read */
        fm_stage(Ks, Kt, 1, FM_EPW == 2, qkv, qkv_off, QKV, (NH + kh) * HS, b, T, j0);
        fm_stage(Vs, Vs, 1, 0, qkv, qkv_off, QKV, (NH + KVH + kh) * HS, b, T, j0);
        /* the whole tile is in local memory before any row reads it (dq) */
        barrier(CLK_LOCAL_MEM_FENCE);
        /* S = Q K^T and dP = dO V^T, key tile n: keys j0 + 8 n .. + 7 (B fragments as the
         * forward's) */
        float sc[FM_KT][4], dp[FM_KT][4];
        #pragma unroll
        for (int n = 0; n < FM_KT; n++) {
            #pragma unroll
            for (int e = 0; e < 4; e++) sc[n][e] = dp[n][e] = 0.0f;
            #pragma unroll
            for (int s = 0; s < FM_KS; s++) {
                FM_MMA(sc[n], qf[s][0], qf[s][1], qf[s][2], qf[s][3], FM_RR(Ks, 8 * n + g, s, 0),
                       FM_RR(Ks, 8 * n + g, s, 1) GF_EMU_ARG);
                FM_MMA(dp[n], of[s][0], of[s][1], of[s][2], of[s][3], FM_RR(Vs, 8 * n + g, s, 0),
                       FM_RR(Vs, 8 * n + g, s, 1) GF_EMU_ARG);
            }
        }
        /* dS = P (dP - D), 0 outside the mask (none where the warp's rows see the whole block) */
        if (j0 >= wlo && j0 + FM_BC - 1 <= wr0) {
            #pragma unroll
            for (int n = 0; n < FM_KT; n++)
                #pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float L = e < 2 ? L0 : L1, D = e < 2 ? D0 : D1;
                    sc[n][e] = exp2(sc[n][e] * sl2 - L) * (dp[n][e] - D);
                }
        } else {
            #pragma unroll
            for (int n = 0; n < FM_KT; n++)
                #pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int j = j0 + 8 * n + 2 * t + (e & 1), row = e < 2 ? r0 : r1;
                    const int lo = e < 2 ? lo0 : lo1;
                    const float L = e < 2 ? L0 : L1, D = e < 2 ? D0 : D1;
                    sc[n][e] =
                        j >= lo && j <= row ? exp2(sc[n][e] * sl2 - L) * (dp[n][e] - D) : 0.0f;
                }
        }
        /* dQ += dS K over the key steps: dS's A fragment from the key tiles (FM_PA); K's B
         * fragment: column (head column) 8 d + g at the keys of step u (FM_TR) */
        #pragma unroll
        for (int u = 0; u < FM_BC / FM_K; u++) {
            const uint a0 = FM_PA(sc, u, 0), a1 = FM_PA(sc, u, 1);
            const uint a2 = FM_PA(sc, u, 2), a3 = FM_PA(sc, u, 3);
            #pragma unroll
            for (int d = 0; d < FM_DT; d++)
                FM_MMA(dq[d], a0, a1, a2, a3, FM_TR(Kt, 8 * d + g, u, 0),
                       FM_TR(Kt, 8 * d + g, u, 1) GF_EMU_ARG);
        }
    }
    #pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        const int row = hr ? r1 : r0;
        if (row >= T) continue;
        const ulong o = dqkv_off + ((ulong)b * T + row) * (ulong)QKV + (ulong)h * HS;
        #pragma unroll
        for (int d = 0; d < FM_DT; d++) {
            dqkv[o + 8 * d + 2 * t] = dq[d][2 * hr] * scale;
            dqkv[o + 8 * d + 2 * t + 1] = dq[d][2 * hr + 1] * scale;
        }
    }
}

/* dk and dv of FM_BR keys of one (batch, kv head): warp w owns keys j0 + 16 w .. + 15 (lane:
 * keys g, g + 8) with their K and V as A fragments in registers, and walks, for each query head
 * of the group, the blocks of FM_BC queries that can see its keys. Transposed products:
 * S^T = K Q^T and dP^T = V dO^T (accumulator rows keys, columns queries), then dV += P^T dO and
 * dK += dS^T Q with the accumulators of two query tiles as the A fragment. The query block's Q
 * and dO rows, lse, delta and first visible key are staged in local memory. */
__kernel __attribute__((reqd_work_group_size(FM_NT, 1, 1))) void
flash_mma_dkv(__global float *dqkv, ulong dqkv_off, __global const float *delta, ulong delta_off,
              __global const float *dout, ulong dout_off, __global const float *lse,
              ulong lse_off, __global const float *qkv, ulong qkv_off, __global const int *doc,
              ulong doc_off, int has_doc, int NH, int KVH, int T, int W, float scale,
              __local uint *lm, __local uint *emu_) {
#ifdef MMA_EMULATE
    __local uint *emu = emu_;
#endif
    /* lm: Q and dO row-major, then transposed (TF32: none; their columns are read instead), then
     * the block's lse (in log2 units), delta and first visible keys */
    __local uint *Qs = lm, *Os = lm + FM_RSZ;
    __local uint *Qt = FM_EPW == 1 ? Qs : lm + 2 * FM_RSZ, *Ot = FM_EPW == 1 ? Os : Qt + FM_TSZ;
    __local float *Ls = (__local float *)(lm + 2 * FM_RSZ + 2 * FM_TSZ), *Ds = Ls + FM_BC;
    __local int *Lo = (__local int *)(Ds + FM_BC);
    const int tid = get_local_id(0), w = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int kh = get_global_id(1), b = get_global_id(2), j0 = get_group_id(0) * FM_BR;
    const int QKV = (NH + 2 * KVH) * HS, G = NH / KVH, C = NH * HS;
    const int j1 = (j0 + FM_BR < T ? j0 + FM_BR : T) - 1;
    const int c0 = j0 + 16 * w + g, c1 = c0 + 8; /* this lane's two keys */
    const float sl2 = scale * FM_LOG2E; /* P = exp2(s sl2 - lse log2(e)) */
    /* K's and V's A fragments: registers 0, 2 key c0, registers 1, 3 key c1 (keys past T read
     * as 0) */
    uint kf[FM_KS][4], vf[FM_KS][4];
    #pragma unroll
    for (int s = 0; s < FM_KS; s++)
        #pragma unroll
        for (int r = 0; r < 4; r++) {
            const int key = (r & 1) ? c1 : c0, c = FM_K * s + 2 * t;
            const ulong row = qkv_off + ((ulong)b * T + key) * (ulong)QKV;
            kf[s][r] = key < T ? FM_RW(qkv + row + (ulong)(NH + kh) * HS + c, r >> 1) : 0u;
            vf[s][r] = key < T ? FM_RW(qkv + row + (ulong)(NH + KVH + kh) * HS + c, r >> 1) : 0u;
        }
    float dk[FM_DT][4], dv[FM_DT][4];
    #pragma unroll
    for (int d = 0; d < FM_DT; d++)
        #pragma unroll
        for (int e = 0; e < 4; e++) dk[d][e] = dv[d][e] = 0.0f;
    for (int h = kh * G; h < (kh + 1) * G; h++) {
        /* the query blocks that can see keys j0..j1: from query j0 while the block's first row
         * still reaches back to j1 (a row's first visible key never decreases along the rows) */
        for (int i0 = j0; i0 < T && cf_flash_lo(doc, doc_off, has_doc, b, T, W, i0) <= j1;
             i0 += FM_BC) {
            barrier(CLK_LOCAL_MEM_FENCE); /* the last block's rows are read */
            fm_stage(Qs, Qt, 1, FM_EPW == 2, qkv, qkv_off, QKV, h * HS, b, T, i0);
            fm_stage(Os, Ot, 1, FM_EPW == 2, dout, dout_off, C, h * HS, b, T, i0);
            for (int q = tid; q < FM_BC; q += FM_NT) {
                const int i = i0 + q;
                const ulong li = ((ulong)b * NH + h) * T + i;
                Ls[q] = i < T ? lse[lse_off + li] * FM_LOG2E : 0.0f;
                Ds[q] = i < T ? delta[delta_off + li] : 0.0f;
                Lo[q] = cf_flash_lo(doc, doc_off, has_doc, b, T, W, i); /* T past the end: masked */
            }
            /* the whole tile is in local memory before any row reads it (dkv) */
            barrier(CLK_LOCAL_MEM_FENCE);
            /* S^T and dP^T, query tile n: queries i0 + 8 n .. + 7; B fragment: column (query)
             * g, FM_RW's head columns of step s */
            float st[FM_KT][4], dpt[FM_KT][4];
            #pragma unroll
            for (int n = 0; n < FM_KT; n++) {
                #pragma unroll
                for (int e = 0; e < 4; e++) st[n][e] = dpt[n][e] = 0.0f;
                #pragma unroll
                for (int s = 0; s < FM_KS; s++) {
                    FM_MMA(st[n], kf[s][0], kf[s][1], kf[s][2], kf[s][3],
                           FM_RR(Qs, 8 * n + g, s, 0), FM_RR(Qs, 8 * n + g, s, 1) GF_EMU_ARG);
                    FM_MMA(dpt[n], vf[s][0], vf[s][1], vf[s][2], vf[s][3],
                           FM_RR(Os, 8 * n + g, s, 0), FM_RR(Os, 8 * n + g, s, 1) GF_EMU_ARG);
                }
            }
            /* P^T and dS^T = P^T (dP^T - D), 0 outside the mask (none where every query of the
             * block sees all the warp's keys j0 + 16 w .. + 15: the block's last query's first
             * visible key is its largest; the same for the whole warp, so the branch never
             * splits a warp before its mma.sync) */
            if (j0 + 16 * w + 15 <= i0 && i0 + FM_BC <= T && j0 + 16 * w >= Lo[FM_BC - 1]) {
                #pragma unroll
                for (int n = 0; n < FM_KT; n++)
                    #pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int q = 8 * n + 2 * t + (e & 1);
                        const float p = exp2(st[n][e] * sl2 - Ls[q]);
                        st[n][e] = p;
                        dpt[n][e] = p * (dpt[n][e] - Ds[q]);
                    }
            } else {
                #pragma unroll
                for (int n = 0; n < FM_KT; n++)
                    #pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int q = 8 * n + 2 * t + (e & 1), i = i0 + q, j = e < 2 ? c0 : c1;
                        const float p =
                            i < T && j >= Lo[q] && j <= i ? exp2(st[n][e] * sl2 - Ls[q]) : 0.0f;
                        st[n][e] = p;
                        dpt[n][e] = p * (dpt[n][e] - Ds[q]);
                    }
            }
            /* dV += P^T dO and dK += dS^T Q over the query steps (FM_PA); B fragments: column
             * (head column) 8 d + g at the queries of step u (FM_TR) */
            #pragma unroll
            for (int u = 0; u < FM_BC / FM_K; u++) {
                const uint p0 = FM_PA(st, u, 0), p1 = FM_PA(st, u, 1);
                const uint p2 = FM_PA(st, u, 2), p3 = FM_PA(st, u, 3);
                const uint s0 = FM_PA(dpt, u, 0), s1 = FM_PA(dpt, u, 1);
                const uint s2 = FM_PA(dpt, u, 2), s3 = FM_PA(dpt, u, 3);
                #pragma unroll
                for (int d = 0; d < FM_DT; d++) {
                    FM_MMA(dv[d], p0, p1, p2, p3, FM_TR(Ot, 8 * d + g, u, 0),
                           FM_TR(Ot, 8 * d + g, u, 1) GF_EMU_ARG);
                    FM_MMA(dk[d], s0, s1, s2, s3, FM_TR(Qt, 8 * d + g, u, 0),
                           FM_TR(Qt, 8 * d + g, u, 1) GF_EMU_ARG);
                }
            }
        }
    }
    #pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        const int j = hr ? c1 : c0;
        if (j >= T) continue;
        const ulong o = dqkv_off + ((ulong)b * T + j) * (ulong)QKV;
        #pragma unroll
        for (int d = 0; d < FM_DT; d++)
            #pragma unroll
            for (int f = 0; f < 2; f++) {
                const int c = 8 * d + 2 * t + f;
                dqkv[o + (ulong)(NH + kh) * HS + c] = dk[d][2 * hr + f] * scale;
                dqkv[o + (ulong)(NH + KVH + kh) * HS + c] = dv[d][2 * hr + f];
            }
    }
}
