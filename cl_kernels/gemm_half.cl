/* clformer: GEMM on tensor cores with half operands (precision bf16 / fp16; host code
 * src/backend/opencl/cl_gemm_half.c). Built after gemm_fast.cl's matrix-engine helpers (that file
 * with -DGF_MMA_HELPERS_ONLY: gf_pack, gf_mma16, gf_store, gemm_fast_reduce and their emulation
 * under MMA_EMULATE) with MMA_KIND 2 (bf16) or 3 (fp16) and gemm_fast.cl's EPI_BIAS / EPI_ACT.
 *
 * The product is gemm_fast.cl's, C(M,N) = alpha * op(A) op(B) + beta * C [+ bias], with the same
 * numbers: each operand value rounded to the format (to nearest, ties to even), fp32 accumulation.
 * It runs in two steps:
 *   gh_pack  writes each operand once in the format, rows along m (op(A)) or n (op(B)) with k
 *            contiguous, R rows padded with zeros to a multiple of 128 and K to a multiple of 32
 *            (2 bytes a value, half the fp32 operand); a transposed operand is transposed on the
 *            way through local memory. With a column-sum array it also adds op(A) over each
 *            chunk of GH_PK values of k, in fp32 before rounding (gemm_fast.cl's EPI_COLSUM: a
 *            linear layer's bias gradient); gh_colsum adds the chunks in order.
 *   gh_gemm  multiplies those: no bounds checks in its loop (the padding is zeros), 16-byte
 *            loads of 8 values, and fragments read from local memory by ldmatrix (four 8 x 8
 *            matrices of 16-bit values a warp instruction) instead of a 32-bit read and a
 *            conversion per pair of values as in gemm_fast.cl.
 * The conversion is a pass over each operand (4 bytes read, 2 written a value) where gemm_fast.cl
 * converts every staged value in every block that stages it, and reads the fp32 operand once per
 * block row or column of blocks.
 *
 * gh_gemm: a work-group of 8 warps (256 work-items) computes a 128 x 128 block of C in K slices
 * of 32. The staged tiles are rows of 4 chunks of 16 bytes (8 values of k); chunk c of row r lies
 * at r * 4 + (c ^ ((r / 2) % 4)) (GH_SW): the 8 rows of one ldmatrix matrix (16 bytes each) then
 * meet all 32 banks, and so do the staging stores (two rows of four chunks a quarter warp). Warp
 * w owns the 64 x 32 tile at rows (w % 2) * 64 and columns (w / 2) * 32 of the block: 4 x 4
 * fragments of 16 x 8 (gemm_fast.cl's accumulator layout), fed per 16 values of k by 4 ldmatrix.x4
 * for A and 2 for B. With GH_NT 128 (a build variant) 4 warps own 64 x 64 tiles (4 x 8
 * fragments: 4 ldmatrix.x4 for A and 4 for B per 32 mma.sync, against 6 per 16) and each
 * work-item stages four rows of a tile instead of two. Two copies of each tile: while the group
 * multiplies one slice, the next slice's 16-byte loads are in registers (one barrier a slice),
 * as gemm_fast.cl does.
 * Other blocks (build variants, -DGH_BN / -DGH_BK, which the host passes from
 * cf_backend_options.gemm_half_block): 128 x 192 (GH_BN 192: warp tiles of 64 x 48, B staged in
 * three passes) and 128 x 256 with K slices of 16 (GH_BN 256, GH_BK 16: warp tiles of 64 x 64,
 * rows of 2 chunks at r * 2 + (c ^ ((r / 4) % 2)), which again spreads each ldmatrix matrix over
 * the 32 banks) read (128 + bn) / (128 bn) of a value from L2 per multiply-add, against 1/64 for
 * 128 x 128, and fewer fragment bytes from local memory (two copies of 128 x 256 slices of 32
 * would take 48 KiB, over NVIDIA's limit with the 16 bytes its compiler adds); 128 x 64 (GH_BN
 * 64) runs groups of 4 warps of 64 x 32, each group with its own barrier. On an H100 each was
 * slower than the default (session 20, BENCHMARKS.md).
 * Split-K: dimension 2 of the range is the slice s of kps values of k (a multiple of GH_BK), as in
 * gemm_fast.cl; the host then passes a scratch buffer as C and gemm_fast_reduce adds the slices in
 * order and applies the epilogue.
 * Under MMA_EMULATE (CF_MATRIX_ENGINE=emulate:<row>, tests on any device) the fragments are read
 * word by word from the same layout, as ldmatrix delivers them (lane l: row l / 4 of each 8 x 8
 * matrix, its 32-bit word l % 4). */
#if MMA_KIND != 2 && MMA_KIND != 3
#error "gemm_half.cl: MMA_KIND 2 (bf16) or 3 (fp16)"
#endif
#if EPI_COLSUM
#error "gemm_half.cl: the sums of op(A) come from gh_pack (EPI_COLSUM is gemm_fast.cl's)"
#endif

#ifndef GH_BN
#define GH_BN 128 /* block of C: columns (128; 64, 192 and 256 are build variants: -DGH_BN) */
#endif
#ifndef GH_BK
#define GH_BK 32 /* K slice (32; 16 a build variant, -DGH_BK, for 256-wide blocks) */
#endif
#define GH_BM 128 /* rows */
#if GH_BN == 64
#define GH_NT_64 128 /* 128 x 64 blocks: 4 warps of 64 x 32 */
#endif
#ifdef GH_NT_64
#define GH_NT GH_NT_64
#else
#define GH_NT 256 /* work-items a group: 256 (8 warps) or 128 (4 warps; a build variant) */
#endif
#define GH_CH (GH_BK / 8) /* 16-byte chunks a staged row: 4 (GH_BK 32) or 2 (16) */
#define GH_WTM 64 /* warp tile: rows (2 warps along m) */
#define GH_WTN (GH_BN * 64 / GH_NT) /* columns (GH_NT / 64 warps along n): 32, 48, 64 */
#if GH_NT != 256 && GH_NT != 128
#error "gemm_half.cl: GH_NT 256 or 128"
#endif
#if (GH_BN != 64 && GH_BN != 128 && GH_BN != 192 && GH_BN != 256) ||                              \
    (GH_BK != 32 && GH_BK != 16) || (GH_NT == 128 && GH_BN > 128)
#error "gemm_half.cl: GH_BN 64, 128, 192 or 256, GH_BK 32 or 16 (GH_NT 128: GH_BN 64 or 128)"
#endif
#define GH_SROWS (GH_NT / GH_CH)     /* rows of a tile one staging pass covers: 32, 64 or 128 */
#define GH_SPA (GH_BM / GH_SROWS)    /* passes of the A tile */
#define GH_SPB (GH_BN / GH_SROWS)    /* of the B tile */
#if GH_SPA * GH_SROWS != GH_BM || GH_SPB * GH_SROWS != GH_BN
#error "gemm_half.cl: each tile must be whole staging passes (GH_BN 192 needs GH_BK 32)"
#endif
#define GH_SOFF (GH_SROWS * GH_CH)  /* 16-byte chunks from one pass's rows to the next's */
#define GH_MT (GH_WTM / 16)
#define GH_NTL (GH_WTN / 8)
/* chunk c of staged row r: the 8 rows of one ldmatrix matrix (same c) meet all 32 banks */
#if GH_CH == 4
#define GH_SW(r, c) ((r) * GH_CH + ((c) ^ (((r) >> 1) & 3)))
#else
#define GH_SW(r, c) ((r) * GH_CH + ((c) ^ (((r) >> 2) & 1)))
#endif
#define GH_PK 128 /* gh_pack: values of k a work-group covers (its column sums' chunk) */
#define GH_GROUP_M 8 /* gh_gemm: block rows of a group of blocks (the order below) */

/* ---- gh_pack ----------------------------------------------------------------------------------
 * Xh (16-bit values, row x at x * kp, kp a multiple of 32) for x < rp, k < kp: op(X)(x, k) in the
 * format for x < R and k < K, else 0, where op(X)(x, k) = X[x_off + x * ldx + k] (xc 0) or
 * X[x_off + k * ldx + x] (xc 1). A work-group of 32 x 8 work-items covers rows x0 .. x0 + 31 (rp
 * is a multiple of 32) and k0 .. k0 + GH_PK - 1, in steps of 32 values of k. cs (xc 1 only, NULL
 * without): cs[(k0 / GH_PK) * R + x] = the sum of op(X)(x, k) over the group's k, in fp32. */
__kernel __attribute__((reqd_work_group_size(32, 8, 1))) void gh_pack(
    __global const float *X, ulong x_off, int ldx, int xc, int R, int K, __global uint *Xh,
    int kp, __global float *cs, int want_cs) {
    __local float tile[32][33];
    __local float sums[8][32];
    const int lx = get_local_id(0), ly = get_local_id(1), lid = ly * 32 + lx;
    const int x0 = get_group_id(0) * 32, k0 = get_group_id(1) * GH_PK;
    X += x_off;
    float csum = 0.0f;
    for (int ks = k0; ks < k0 + GH_PK && ks < kp; ks += 32) { /* (uniform in the group) */
        if (xc) {
            /* rows k of X (x contiguous): 32 x 32 through local memory */
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const int k = ks + ly + 8 * r, x = x0 + lx;
                const float v = (k < K && x < R) ? X[(size_t)k * ldx + x] : 0.0f;
                tile[ly + 8 * r][lx] = v;
                csum += v;
            }
            /* the tile complete before its columns are read */
            barrier(CLK_LOCAL_MEM_FENCE);
            const int x = lid >> 3, kq = (lid & 7) * 4;
            /* (two 32-bit stores: oclgrind's uninitialised-value checker takes a vector built
             * from scalars for undefined, as gemm_fast.cl notes) */
            __global uint *o = Xh + ((size_t)(x0 + x) * kp + ks + kq) / 2;
            o[0] = gf_pack(tile[kq][x], tile[kq + 1][x]);
            o[1] = gf_pack(tile[kq + 2][x], tile[kq + 3][x]);
            barrier(CLK_LOCAL_MEM_FENCE);
        } else {
            /* rows x of X (k contiguous): 4 values of k a work-item, 8 work-items a row */
            const int xr = x0 + (lid >> 3), k = ks + (lid & 7) * 4;
            float v[4];
#pragma unroll
            for (int e = 0; e < 4; e++)
                v[e] = (xr < R && k + e < K) ? X[(size_t)xr * ldx + k + e] : 0.0f;
            __global uint *o = Xh + ((size_t)xr * kp + k) / 2;
            o[0] = gf_pack(v[0], v[1]);
            o[1] = gf_pack(v[2], v[3]);
        }
    }
    if (xc && want_cs) {
        sums[ly][lx] = csum;
        barrier(CLK_LOCAL_MEM_FENCE);
        if (ly == 0 && x0 + lx < R) {
            float t = sums[0][lx];
            for (int j = 1; j < 8; j++) t += sums[j][lx];
            cs[(size_t)get_group_id(1) * R + x0 + lx] = t;
        }
    }
}

/* CS[cs_off + m] (+= with acc) the chunks' sums cs[c * M + m], c = 0 .. chunks - 1 in order */
__kernel void gh_colsum(__global const float *cs, int chunks, int M, __global float *CS,
                        ulong cs_off, int acc) {
    const int m = get_global_id(0);
    if (m >= M) return;
    float t = 0.0f;
    for (int c = 0; c < chunks; c++) t += cs[(size_t)c * M + m];
    CS[cs_off + m] = acc ? CS[cs_off + m] + t : t;
}

/* ---- gh_gemm ---------------------------------------------------------------------------------- */

#ifdef MMA_EMULATE
#define GH_LDSM 0
#endif
#ifndef GH_LDSM
#define GH_LDSM 1
#endif

#if GH_LDSM
/* ldmatrix .x4: lane l gives the address of row l % 8 of matrix l / 8 and receives, in register
 * i, the 32-bit word l % 4 of row l / 4 of matrix i. A __local pointer converted to an integer is
 * its address in the shared window (.shared state space). */
static inline void gh_ldsm4(__local const uint4 *p, uint *r0, uint *r1, uint *r2, uint *r3) {
    const uint a = (uint)(size_t)p;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(*r0), "=r"(*r1), "=r"(*r2), "=r"(*r3)
                 : "r"(a)
                 : "memory");
}
#endif

/* A fragment (m16n8k16, rows r0 .. r0 + 15, the k16 step kk of the slice) of tile s */
#define GH_FRAG_A(s, r0, kk, f)                                                                    \
    do {                                                                                           \
        if (GH_LDSM) {                                                                             \
            const int rr = (r0) + (lane & 7) + ((lane >> 3) & 1) * 8;                              \
            gh_ldsm4_any(s + GH_SW(rr, (kk) * 2 + (lane >> 4)), &f[0], &f[1], &f[2], &f[3]);      \
        } else {                                                                                   \
            __local const uint *w_ = (__local const uint *)(s);                                   \
            f[0] = w_[GH_SW((r0) + g, (kk) * 2) * 4 + t];                                          \
            f[1] = w_[GH_SW((r0) + g + 8, (kk) * 2) * 4 + t];                                      \
            f[2] = w_[GH_SW((r0) + g, (kk) * 2 + 1) * 4 + t];                                      \
            f[3] = w_[GH_SW((r0) + g + 8, (kk) * 2 + 1) * 4 + t];                                  \
        }                                                                                          \
    } while (0)
/* B fragments of the two n tiles at columns c0 .. c0 + 7 (f) and c0 + 8 .. c0 + 15 (h) */
#define GH_FRAG_B2(s, c0, kk, f, h)                                                                \
    do {                                                                                           \
        if (GH_LDSM) {                                                                             \
            const int rr = (c0) + (lane & 7) + (lane >> 4) * 8;                                    \
            gh_ldsm4_any(s + GH_SW(rr, (kk) * 2 + ((lane >> 3) & 1)), &f[0], &f[1], &h[0], &h[1]);\
        } else {                                                                                   \
            __local const uint *w_ = (__local const uint *)(s);                                   \
            f[0] = w_[GH_SW((c0) + g, (kk) * 2) * 4 + t];                                          \
            f[1] = w_[GH_SW((c0) + g, (kk) * 2 + 1) * 4 + t];                                      \
            h[0] = w_[GH_SW((c0) + 8 + g, (kk) * 2) * 4 + t];                                      \
            h[1] = w_[GH_SW((c0) + 8 + g, (kk) * 2 + 1) * 4 + t];                                  \
        }                                                                                          \
    } while (0)
#if GH_LDSM
#define gh_ldsm4_any gh_ldsm4
#else
#define gh_ldsm4_any(p, a, b, c, d) ((void)0)
#endif

#ifdef MMA_EMULATE
#define GH_EMU_DECL __local uint emu[GH_NT * 6]; /* the emulated warps' registers */
#else
#define GH_EMU_DECL
#endif

/* GH_ASYNC 1 (hardware only): the tiles staged by cp.async (16 bytes a copy, global to local
 * memory without registers) in GH_ASYNC_STAGES copies, GH_ASYNC_STAGES - 1 slices loading while
 * one is multiplied (2 by default: three copies take 48 KiB, and NVIDIA's compiler adds 16 bytes
 * to that, over the H100's 49152); 0: the 16-byte loads go through registers into two copies, one
 * slice ahead */
#ifdef MMA_EMULATE
#undef GH_ASYNC
#define GH_ASYNC 0
#endif
#ifndef GH_ASYNC
#define GH_ASYNC 0
#endif
#ifndef GH_ASYNC_STAGES
#define GH_ASYNC_STAGES 2
#endif
#define GH_STAGES (GH_ASYNC ? GH_ASYNC_STAGES : 2)
/* GH_DIAG (a measurement build: its products are wrong, never on in the code; registers-staged
 * form only): where gh_gemm's time goes without a profiler. 1: every slice multiplies the first
 * staged copy again, no global loads or staging stores in the loop, its barrier kept; 2: the same
 * without the barrier; 3: as 2, with fragments made from the lane id instead of ldmatrix (the
 * mma.sync chain and the epilogue alone) */
#ifndef GH_DIAG
#define GH_DIAG 0 /* (measurement builds: 1, 2, 3) */
#endif
#if GH_DIAG && GH_ASYNC
#error "gemm_half.cl: GH_DIAG needs GH_ASYNC 0"
#endif
#define GH_TILEA (GH_BM * GH_CH) /* 16-byte chunks of one copy of the A tile */
#define GH_TILEB (GH_BN * GH_CH) /* of the B tile */
#if GH_ASYNC
#if GH_ASYNC_STAGES == 2
#define GH_WAIT_PENDING "0"
#elif GH_ASYNC_STAGES == 3
#define GH_WAIT_PENDING "1"
#else
#error "GH_ASYNC_STAGES: 2 or 3"
#endif
static inline void gh_cp16(__local uint4 *d, __global const uint4 *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;"
                 :
                 : "r"((uint)(size_t)d), "l"((ulong)src)
                 : "memory");
}
#endif


/* C(M,N) (+ c_split per slice s) from Ah (rows m, mp = a multiple of 128) and Bh (rows n), both
 * with ldq 16-byte chunks a row (kp / 8), over k in [s * kps, min(kp, (s + 1) * kps)) */
__kernel __attribute__((reqd_work_group_size(GH_NT, 1, 1))) void gh_gemm(
    int M, int N, int kps, int kp, float alpha, __global const uint4 *restrict Ah,
    __global const uint4 *restrict Bh,
    int ldq, float beta, __global float *C, ulong c_off, int ldc, ulong c_split,
    __global const float *bias, ulong bias_off, __global float *X, ulong x_off) {
    __local uint4 As[GH_STAGES * GH_TILEA];
    __local uint4 Bs[GH_STAGES * GH_TILEB];
    GH_EMU_DECL
    const int lid = get_local_id(0), lane = lid & 31, warp = lid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wm0 = (warp & 1) * GH_WTM, wn0 = (warp >> 1) * GH_WTN;
    /* the blocks in groups of GH_GROUP_M block rows, column after column inside a group: the
     * groups that run at once share a few columns of B (a wide B, such as the LM head's weight
     * at 50304 rows, is then read about once per GH_GROUP_M block rows instead of once per
     * block row) */
    const int nbn = get_num_groups(0), nbm = get_num_groups(1);
    const int lin = get_group_id(1) * nbn + get_group_id(0);
    const int first_m = lin / (GH_GROUP_M * nbn) * GH_GROUP_M;
    const int rows_m = min(nbm - first_m, GH_GROUP_M), in_group = lin - first_m * nbn;
    /* (qn and in_group - qn * rows_m, not a division next to a remainder: see gf_load4) */
    const int qn = in_group / rows_m;
    const int n0 = qn * GH_BN, m0 = (first_m + in_group - qn * rows_m) * GH_BM;
    const int s = get_group_id(2);
    const int k_begin = s * kps, k_end = min(kp, k_begin + kps);
    C += c_off + (ulong)s * c_split;
    X += x_off;

    float acc[GH_MT][GH_NTL][4];
#pragma unroll
    for (int i = 0; i < GH_MT; i++)
#pragma unroll
        for (int j = 0; j < GH_NTL; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;

    /* staging: rows r + u * GH_SROWS (u < GH_SPA, or GH_SPB) of each tile, chunk c */
    /* (lid - r * GH_CH, not a remainder next to the division: see gf_load4) */
    const int r = lid / GH_CH, c = lid - r * GH_CH;
    __global const uint4 *pa = Ah + (size_t)(m0 + r) * ldq + c;
    __global const uint4 *pb = Bh + (size_t)(n0 + r) * ldq + c;
    const size_t hs = (size_t)GH_SROWS * ldq;
    /* row r + u * GH_SROWS: st + u * GH_SOFF (the swizzle repeats every 8 rows) */
    const int st = GH_SW(r, c);
    /* the slices of the group's range: nsl of them, from chunk q0 of each row */
    const int nsl = k_end > k_begin ? (k_end - k_begin) / GH_BK : 0, q0 = k_begin >> 3;
#if GH_ASYNC
    /* slice i is cp.async group i (one committed per slice, empty past the end, so that "all
     * but the newest group landed" means "slice it landed") */
#pragma unroll
    for (int p = 0; p < GH_STAGES - 1; p++) {
        if (p < nsl) {
#pragma unroll
            for (int u = 0; u < GH_SPA; u++)
                gh_cp16(As + p * GH_TILEA + st + u * GH_SOFF, pa + q0 + p * GH_CH + u * hs);
#pragma unroll
            for (int u = 0; u < GH_SPB; u++)
                gh_cp16(Bs + p * GH_TILEB + st + u * GH_SOFF, pb + q0 + p * GH_CH + u * hs);
        }
        asm volatile("cp.async.commit_group;" ::: "memory");
    }
    int nxt = GH_STAGES - 1; /* the copy slice it + GH_STAGES - 1 goes into */
#else
    uint4 ra[GH_SPA], rb[GH_SPB];
    if (nsl > 0) {
#pragma unroll
        for (int u = 0; u < GH_SPA; u++) {
            ra[u] = pa[q0 + u * hs];
            As[st + u * GH_SOFF] = ra[u];
        }
#pragma unroll
        for (int u = 0; u < GH_SPB; u++) {
            rb[u] = pb[q0 + u * hs];
            Bs[st + u * GH_SOFF] = rb[u];
        }
    }
    /* copy 0 staged before anyone reads it */
    barrier(CLK_LOCAL_MEM_FENCE);
#endif

    int cur = 0;
    for (int it = 0; it < nsl; it++) {
#if GH_ASYNC
        /* all but the newest GH_STAGES - 2 groups landed: slice it */
        asm volatile("cp.async.wait_group " GH_WAIT_PENDING ";" ::: "memory");
        /* every work-item's copies of slice it landed, and nobody still reads the copy that
         * slice it + GH_STAGES - 1 goes into (slice it - 1's) */
        barrier(CLK_LOCAL_MEM_FENCE);
        if (it + GH_STAGES - 1 < nsl) {
            const int q = q0 + (it + GH_STAGES - 1) * GH_CH;
#pragma unroll
            for (int u = 0; u < GH_SPA; u++)
                gh_cp16(As + nxt * GH_TILEA + st + u * GH_SOFF, pa + q + u * hs);
#pragma unroll
            for (int u = 0; u < GH_SPB; u++)
                gh_cp16(Bs + nxt * GH_TILEB + st + u * GH_SOFF, pb + q + u * hs);
        }
        asm volatile("cp.async.commit_group;" ::: "memory");
        nxt = nxt == GH_STAGES - 1 ? 0 : nxt + 1;
#else
        const int more = !GH_DIAG && it + 1 < nsl;
        if (more) { /* the next slice into registers while this one is multiplied */
            const int q = q0 + (it + 1) * GH_CH;
#pragma unroll
            for (int u = 0; u < GH_SPA; u++) ra[u] = pa[q + u * hs];
#pragma unroll
            for (int u = 0; u < GH_SPB; u++) rb[u] = pb[q + u * hs];
        }
#endif
        __local const uint4 *as = As + cur * GH_TILEA;
        __local const uint4 *bs = Bs + cur * GH_TILEB;
#pragma unroll
        for (int kk = 0; kk < GH_BK / 16; kk++) {
            uint fa[GH_MT][4], fb[GH_NTL][2];
#if GH_DIAG == 3
#pragma unroll
            for (int i = 0; i < GH_MT; i++)
#pragma unroll
                for (int e = 0; e < 4; e++) fa[i][e] = (uint)(lane + i + e + kk);
#pragma unroll
            for (int j = 0; j < GH_NTL; j++) fb[j][0] = fb[j][1] = (uint)(lane + j + kk);
#else
#pragma unroll
            for (int i = 0; i < GH_MT; i++) GH_FRAG_A(as, wm0 + i * 16, kk, fa[i]);
#pragma unroll
            for (int j = 0; j < GH_NTL; j += 2) GH_FRAG_B2(bs, wn0 + j * 8, kk, fb[j], fb[j + 1]);
#endif
#pragma unroll
            for (int i = 0; i < GH_MT; i++)
#pragma unroll
                for (int j = 0; j < GH_NTL; j++)
                    gf_mma16(acc[i][j], fa[i][0], fa[i][1], fa[i][2], fa[i][3], fb[j][0], fb[j][1]
                             GF_EMU_ARG);
        }
#if GH_ASYNC
        cur = cur == GH_STAGES - 1 ? 0 : cur + 1;
#else
        if (more) {
            __local uint4 *na = As + (cur ^ 1) * GH_TILEA;
            __local uint4 *nb = Bs + (cur ^ 1) * GH_TILEB;
#pragma unroll
            for (int u = 0; u < GH_SPA; u++) na[st + u * GH_SOFF] = ra[u];
#pragma unroll
            for (int u = 0; u < GH_SPB; u++) nb[st + u * GH_SOFF] = rb[u];
        }
        /* the copy just written is complete, and nobody reads the other one any more before it
         * is overwritten in the next iteration */
#if GH_DIAG < 2
        barrier(CLK_LOCAL_MEM_FENCE);
#endif
        if (!GH_DIAG) cur ^= 1;
#endif
    }

    /* each lane's accumulators: fragment (i, j), rows g and g+8, columns 2t and 2t+1 */
#pragma unroll
    for (int i = 0; i < GH_MT; i++)
#pragma unroll
        for (int j = 0; j < GH_NTL; j++)
            gf_store_frag(C, X, bias, bias_off, ldc, M, N, m0 + wm0 + i * 16 + g,
                          n0 + wn0 + j * 8 + 2 * t, alpha, beta, acc[i][j]);
}
