/* clformer: the GEMM on half operands (cl_gemm_half.h, cl_kernels/gemm_half.cl): which products it
 * takes, the split-K rule, its programs (one per epilogue) and the launches. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/opencl/cl_gemm_half.h"
#include "backend/opencl/cl_gemm_fast.h"
#include "backend/opencl/cl_matrix.h"
#include "backend/opencl/cl_plan.h"

/* gemm_half.cl's shape: blocks of GH_BM x bn, K slices of bk (bn x bk: 128 x 32 by default;
 * 64 x 32, 192 x 32 or 256 x 16 as build variants, cf_backend_options.gemm_half_block;
 * gh_gemm's work-items a group, its GH_NT, are read from the built kernel: gh_program's nt); K
 * padded to a multiple of GH_KP (gh_pack's steps); gh_pack's groups of 32 x 8 over 32 rows and
 * GH_PK values of k */
#define GH_BM 128
#define GH_KP 32
#define GH_PK 128
#define GH_MAX_SPLIT 16

enum { GH_PACK, GH_COLSUM, GH_GEMM, GH_REDUCE, GH_KERNELS };
static const char *const gh_names[GH_KERNELS] = {"gh_pack", "gh_colsum", "gh_gemm",
                                                 "gemm_fast_reduce"};

typedef struct {
    int prec; /* the context's precision it was built for (CF_CL_MX_BF16 / FP16), 0 = not built */
    size_t nt; /* gh_gemm's work-items a group (its reqd_work_group_size, gemm_half.cl's GH_NT:
                * 256, or 128 in a variant) */
    cl_program program;
    cl_kernel k[GH_KERNELS];
} gh_program;

struct cf_cl_gemm_half {
    gh_program progs[2][3]; /* [EPI_BIAS][EPI_ACT] */
    int broken;             /* a build failed here: declined for good */
};

static struct cf_cl_gemm_half *gh_state(cf_cl_ctx *ctx) {
    if (!ctx->gemm_half) ctx->gemm_half = calloc(1, sizeof *ctx->gemm_half);
    return ctx->gemm_half;
}

static void gh_program_free(gh_program *g) {
    for (int i = 0; i < GH_KERNELS; i++)
        if (g->k[i]) clReleaseKernel(g->k[i]);
    if (g->program) clReleaseProgram(g->program);
    memset(g, 0, sizeof *g);
}

void cf_cl_gemm_half_release(cf_cl_ctx *ctx) {
    struct cf_cl_gemm_half *st = ctx->gemm_half;
    if (!st) return;
    for (int b = 0; b < 2; b++)
        for (int a = 0; a < 3; a++) gh_program_free(&st->progs[b][a]);
    free(st);
    ctx->gemm_half = NULL;
}

void cf_cl_gemm_half_disable(cf_cl_ctx *ctx) {
    struct cf_cl_gemm_half *st = gh_state(ctx);
    if (st) st->broken = 1;
    cf_cl_plan_invalidate(ctx); /* the plans' half paths go to their fallback */
}

int cf_cl_gemm_half_engine(const cf_cl_ctx *ctx) {
    if (!ctx->mma_half || !ctx->mx || !ctx->mx->half_gemm || ctx->gemm_half_mode == 0) return 0;
    if (ctx->gemm_half && ctx->gemm_half->broken) return 0;
    return ctx->gemm_half_mode == 1 || (ctx->mx->half_gemm_verified && !ctx->mx_emulate);
}

void cf_cl_gemm_half_block(const cf_cl_ctx *ctx, int *bn, int *bk) {
    *bn = ctx && ctx->gh_bn ? ctx->gh_bn : 128;
    *bk = ctx && ctx->gh_bk ? ctx->gh_bk : 32;
}

int cf_cl_gemm_half_block_parse(const char *s, int *bn, int *bk) {
    int n = 0, k = 0;
    char tail = 0;
    if (!s || sscanf(s, "%dx%d%c", &n, &k, &tail) != 2) return CF_ERR_INVALID;
    if (!((n == 64 && k == 32) || (n == 128 && k == 32) || (n == 192 && k == 32) ||
          (n == 256 && k == 16)))
        return CF_ERR_INVALID;
    *bn = n;
    *bk = k;
    return CF_OK;
}

int cf_cl_gemm_half_split(const cf_cl_ctx *ctx, int M, int N, int K, int compute_units) {
    int bn, bk;
    cf_cl_gemm_half_block(ctx, &bn, &bk);
    const long blocks = (long)((M + GH_BM - 1) / GH_BM) * ((N + bn - 1) / bn);
    /* groups a compute unit at once, on an H100: the default build's 122 registers and 32 KiB of
     * local memory let two run, and so do the GH_NT 128 variant's 226 with its half-size groups
     * (bench/results/h100/session18/callC); 128 x 64 blocks (4 warps) took 160 registers, so
     * three (session20/callB); the wider blocks' 64 x 48 and 64 x 64 warp tiles hold 96 and 128
     * accumulators a work-item, so one (by the register budget; their report was not read) */
    const long per_cu = bn == 64 ? 3 : bn == 128 ? 2 : 1;
    if (blocks <= 0 || blocks >= compute_units) return 1;
    /* as many slices as keep the groups within one wave */
    long s = per_cu * compute_units / blocks;
    const long by_k = ((long)K + bk - 1) / bk * bk / 256;
    if (s > by_k) s = by_k;
    if (s > GH_MAX_SPLIT) s = GH_MAX_SPLIT;
    return s < 1 ? 1 : (int)s;
}

/* The program with epilogue (eb, ea) built in (gemm_fast.cl's EPI_BIAS, EPI_ACT), for the
 * context's precision */
static int gh_program_get(cf_cl_ctx *ctx, int eb, int ea, gh_program **out) {
    struct cf_cl_gemm_half *st = gh_state(ctx);
    if (!st) return CF_ERR_NOMEM;
    gh_program *g = &st->progs[eb][ea];
    if (g->prec == ctx->mx_prec) {
        *out = g;
        return CF_OK;
    }
    gh_program_free(g);
    char form[160], file[160], opts[384];
    const cf_cl_matrix_choice mc = {ctx->mx, ctx->mx_emulate};
    cf_cl_matrix_options(mc, ctx->mx_prec, form, sizeof form);
    snprintf(file, sizeof file, "%s+%s", ctx->mx->file, ctx->mx->half_gemm);
    /* on a CPU device (the emulation's tests) without optimisation, as the flash kernels
     * (cl_flash.c): LLVM over the unrolled loops replicated across the work-group takes minutes */
    const int cpu = !(ctx->dev.type & CL_DEVICE_TYPE_GPU), verbose = cf_cl_nv_verbose(ctx);
    int bn, bk;
    cf_cl_gemm_half_block(ctx, &bn, &bk);
    char block[48] = "";
    if (bn != 128 || bk != 32) snprintf(block, sizeof block, " -DGH_BN=%d -DGH_BK=%d", bn, bk);
    snprintf(
        opts, sizeof opts,
        "-cl-std=CL1.2 -DGF_MMA_HELPERS_ONLY -DEPI_BIAS=%d -DEPI_ACT=%d -DEPI_COLSUM=0 %s%s%s%s",
        eb, ea, form, block, cpu ? " -cl-opt-disable" : "", verbose ? " -cl-nv-verbose" : "");
    cl_kernel *ks[GH_KERNELS];
    for (int i = 0; i < GH_KERNELS; i++) ks[i] = &g->k[i];
    int rc = cf_cl_build_kernels(ctx, file, opts, &g->program, GH_KERNELS, gh_names, ks);
    if (rc == CF_OK && verbose) {
        char what[48];
        snprintf(what, sizeof what, "gemm_half bias %d act %d", eb, ea);
        cf_cl_nv_report(ctx, g->program, what);
    }
    if (rc == CF_OK) {
        /* gh_gemm: the group size its build says (GH_NT: 256 by default, 128 a variant),
         * 128 x bn / nt accumulators and about 64 more registers each */
        size_t req[3] = {0, 0, 0};
        const cl_int err =
            clGetKernelWorkGroupInfo(g->k[GH_GEMM], ctx->dev.device,
                                     CL_KERNEL_COMPILE_WORK_GROUP_SIZE, sizeof req, req, NULL);
        g->nt = req[0];
        const size_t local[1] = {g->nt};
        char why[256] = "";
        int fits = 0;
        if (err != CL_SUCCESS || (req[0] != 256 && req[0] != 128))
            snprintf(why, sizeof why, "its group size is not known (%s, %zu work-items; 256 or "
                     "128 expected)", err != CL_SUCCESS ? cf_cl_errstr(err) : "queried", req[0]);
        else
            fits = cf_cl_kernel_fits(ctx, g->k[GH_GEMM], 1, local,
                                     (GH_BM * bn / (int)g->nt + 64) * 4 + 256, why, sizeof why);
        if (fits <= 0) {
            cf_cl_fail(ctx, "cl_kernels/%s: gh_gemm cannot run on %s: %s", ctx->mx->half_gemm,
                       ctx->dev.name, why);
            rc = fits == 0 ? CF_ERR_UNSUPPORTED : CF_ERR_BUILD;
        }
    }
    if (rc != CF_OK) {
        gh_program_free(g);
        return rc;
    }
    g->prec = ctx->mx_prec;
    CF_DEBUG("gemm_half: bias %d act %d built (%s)", eb, ea, opts);
    *out = g;
    return CF_OK;
}

/* op(X) (rows along x: R of them, K values of k; xc: X stored (K, R)) into out as 16-bit
 * values, rp x kp; cs (xc only; NULL: none) also receives its sums over each GH_PK chunk of k */
static int gh_pack(cf_cl_ctx *ctx, gh_program *g, cl_mem X, size_t x_off, int ldx, int xc, int R,
                   int K, int rp, int kp, cl_mem out, cl_mem cs) {
    const size_t global[2] = {(size_t)rp, (size_t)((kp + GH_PK - 1) / GH_PK) * 8};
    const size_t local[2] = {32, 8};
    return cf_cl_launch(ctx, g->k[GH_PACK], "gh_pack", 2, global, local,
                        CF_ARGS(ARG_MEM(X), ARG_ULONG(x_off), ARG_INT(ldx), ARG_INT(xc),
                                ARG_INT(R), ARG_INT(K), ARG_MEM(out), ARG_INT(kp),
                                ARG_MEM(cs ? cs : out), ARG_INT(cs != NULL)));
}

int cf_cl_gemm_half_run(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d, int split) {
    if (d->M <= 0 || d->N <= 0) return CF_OK;
    if (!cf_cl_gemm_half_engine(ctx) || d->K <= 0 || (d->colsum && !d->ta)) {
        cf_cl_fail(ctx, "gemm_half: needs precision bf16 / fp16 on a matrix engine with the kernel "
                        "(%s), K >= 1 and a transposed A for the sums of op(A)",
                   ctx->mx ? ctx->mx_name : "none here");
        return CF_ERR_UNSUPPORTED;
    }
    const int eb = d->bias != NULL, ea = d->act;
    const int M = d->M, N = d->N, K = d->K;
    int bn, bk;
    cf_cl_gemm_half_block(ctx, &bn, &bk);
    const int mp = (M + GH_BM - 1) / GH_BM * GH_BM, np = (N + bn - 1) / bn * bn;
    const int kp = (K + GH_KP - 1) / GH_KP * GH_KP;
    if (split <= 0) split = cf_cl_gemm_half_split(ctx, M, N, K, (int)ctx->dev.compute_units);
    if (split > GH_MAX_SPLIT) split = GH_MAX_SPLIT;
    /* K per slice, a multiple of bk; the split actually used may be smaller than asked */
    int kps = (kp + split - 1) / split;
    kps = (kps + bk - 1) / bk * bk;
    split = (kp + kps - 1) / kps;

    gh_program *g = NULL, *gp = NULL;
    CF_TRY(gh_program_get(ctx, eb, ea, &g));
    if (split > 1) CF_TRY(gh_program_get(ctx, 0, 0, &gp));
    /* every scratch buffer before the first launch: if one cannot be had (CF_ERR_NOMEM), nothing
     * was enqueued and the caller can run the product another way */
    const int ldp = (N + 3) / 4 * 4;
    const size_t p_split = (size_t)M * (size_t)ldp;
    const int chunks = (kp + GH_PK - 1) / GH_PK;
    cl_mem ah, bh, cs = NULL, part = NULL;
    CF_TRY(cf_cl_scratch(ctx, CF_SCRATCH_HALF_A, (size_t)mp * kp * 2, &ah));
    CF_TRY(cf_cl_scratch(ctx, CF_SCRATCH_HALF_B, (size_t)np * kp * 2, &bh));
    if (d->colsum)
        CF_TRY(cf_cl_scratch(ctx, CF_SCRATCH_HALF_CS, (size_t)chunks * (size_t)M * sizeof(float),
                             &cs));
    if (split > 1)
        CF_TRY(cf_cl_scratch(ctx, CF_SCRATCH_HALF_PART, (size_t)split * p_split * sizeof(float),
                             &part));
    CF_TRY(gh_pack(ctx, g, d->A, d->a_off, d->lda, d->ta, M, K, mp, kp, ah, cs));
    CF_TRY(gh_pack(ctx, g, d->B, d->b_off, d->ldb, !d->tb, N, K, np, kp, bh, NULL));
    if (d->colsum) {
        const size_t global = cf_round_up((size_t)M, 64), local = 64;
        CF_TRY(cf_cl_launch(ctx, g->k[GH_COLSUM], "gh_colsum", 1, &global, &local,
                            CF_ARGS(ARG_MEM(cs), ARG_INT(chunks), ARG_INT(M),
                                    ARG_MEM(d->colsum), ARG_ULONG(d->colsum_off), ARG_INT(1))));
    }
    CF_DEBUG("gemm M=%d N=%d K=%d %c%c: half operands, 128x%d bk %d (split %d)", M, N, K,
             d->ta ? 'T' : 'N', d->tb ? 'T' : 'N', bn, bk, split);
    cl_mem bias_mem = d->bias ? d->bias : d->C;
    cl_mem x_mem = d->act ? d->act_x : d->C;
    /* one slice: C with the epilogue; more: the slices' partial products into the scratch (no
     * epilogue), which gemm_fast_reduce then adds in order with it */
    const int one = split == 1;
    const size_t nt = (one ? g : gp)->nt;
    const size_t global[3] = {(size_t)(np / bn) * nt, (size_t)(mp / GH_BM), (size_t)split};
    const size_t local[3] = {nt, 1, 1};
    const int ldq = kp / 8;
    CF_TRY(cf_cl_launch(
        ctx, (one ? g : gp)->k[GH_GEMM], "gh_gemm", 3, global, local,
        CF_ARGS(ARG_INT(M), ARG_INT(N), ARG_INT(one ? kp : kps), ARG_INT(kp),
                ARG_FLOAT(one ? d->alpha : 1.0f), ARG_MEM(ah), ARG_MEM(bh), ARG_INT(ldq),
                ARG_FLOAT(one ? d->beta : 0.0f), ARG_MEM(one ? d->C : part),
                ARG_ULONG(one ? d->c_off : 0), ARG_INT(one ? d->ldc : ldp),
                ARG_ULONG(one ? 0 : p_split), ARG_MEM(bias_mem), ARG_ULONG(d->bias_off),
                ARG_MEM(x_mem), ARG_ULONG(d->act_x_off))));
    if (one) return CF_OK;
    const size_t rglobal[2] = {cf_round_up((size_t)N, 64), (size_t)M};
    const size_t rlocal[2] = {64, 1};
    return cf_cl_launch(ctx, g->k[GH_REDUCE], "gemm_fast_reduce", 2, rglobal, rlocal,
                        CF_ARGS(ARG_INT(M), ARG_INT(N), ARG_INT(split), ARG_MEM(part),
                                ARG_INT(ldp), ARG_ULONG(p_split), ARG_FLOAT(d->alpha),
                                ARG_FLOAT(d->beta), ARG_MEM(d->C), ARG_ULONG(d->c_off),
                                ARG_INT(d->ldc), ARG_MEM(bias_mem), ARG_ULONG(d->bias_off),
                                ARG_MEM(x_mem), ARG_ULONG(d->act_x_off), ARG_ULONG(0),
                                ARG_MEM(part), ARG_ULONG(0)));
}

int cf_backend_opencl_gemm_half(cf_backend *be, int split, int ta, int tb, int M, int N, int K,
                                float alpha, cf_view A, int lda, cf_view B, int ldb, float beta,
                                cf_view C, int ldc, cf_view bias, cf_view X, int act,
                                cf_view colsum) {
    if (!cf_backend_is_opencl(be)) return CF_ERR_UNSUPPORTED;
    cf_cl_ctx *ctx = (cf_cl_ctx *)be->ctx;
    if (!cf_cl_gemm_half_engine(ctx)) return CF_ERR_UNSUPPORTED;
    if (M <= 0 || N <= 0) return CF_OK;
    if (act && (act < 0 || act > 2 || (act == 2 && bias.buf) || alpha != 1.0f || beta != 0.0f || ldc != N ||
                !X.buf)) {
        CF_ERROR("gemm_half: GELU epilogue %d: 1 (forward) or 2 (backward, no bias), alpha 1, "
                 "beta 0, ldc N, and X",
                 act);
        return CF_ERR_INVALID;
    }
    if (colsum.buf && !ta) {
        CF_ERROR("gemm_half: the sums of op(A) need a transposed A");
        return CF_ERR_INVALID;
    }
    CF_TRY(cf_gemm_check("gemm_half", ta, tb, M, N, K, A, lda, B, ldb, C, ldc, bias));
    if (act) CF_TRY(cf_view_check("gemm_half", "X", X, CF_F32, (size_t)M * N, 0));
    if (colsum.buf) CF_TRY(cf_view_check("gemm_half", "colsum", colsum, CF_F32, (size_t)M, 0));
    cf_cl_gemm_desc d = cf_cl_gemm_desc_plain(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    d.bias = cf_cl_mem(bias);
    d.bias_off = cf_view_elem_off(bias);
    if (act) {
        d.act = act;
        d.act_x = cf_cl_mem(X);
        d.act_x_off = cf_view_elem_off(X);
    }
    if (colsum.buf) {
        d.colsum = cf_cl_mem(colsum);
        d.colsum_off = cf_view_elem_off(colsum);
    }
    return cf_cl_gemm_half_run(ctx, &d, split);
}
