/* clformer: the register-blocked GPU GEMM (cl_kernels/gemm_fast.cl): which products it takes, the
 * block size and split-K rule, program building (one program per variant, built on first use),
 * the split-K scratch and the launches. cl_gemm.c calls cf_cl_gemm_fast_try first for every
 * product; what it declines goes to CLBlast or to the tiled kernel of cl_kernels/gemm.cl. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend/opencl/cl_gemm_fast.h"
#include "backend/opencl/cl_gemm_half.h"
#include "backend/opencl/cl_matrix.h"
#include "backend/opencl/cl_plan.h"

#define FAST_MAX_PROGRAMS 192 /* variants x float4 or not x epilogues (6) */
#define FAST_MAX_LOGGED 128
#define FAST_MAX_SPLIT 64

typedef struct {
    int rm, rn, bk, vec, wg;
    int epi_bias, epi_act, epi_colsum; /* the epilogue built in (gemm_fast.cl: EPI_*) */
    int mma, round;                    /* gemm_fast.cl: MMA_KIND, ROUND_IN */
    cl_program program;
    cl_kernel k[4]; /* nn, nt, tn, tt */
    cl_kernel reduce;
} fast_program;

struct cf_cl_gemm_fast {
    fast_program progs[FAST_MAX_PROGRAMS];
    int n_progs;
    int broken;           /* a variant did not build or cannot run 256-item groups: decline all */
    cl_mem scratch;       /* split-K partial products */
    size_t scratch_bytes; /* its size */
    struct {
        int M, N, K, ta, tb;
    } logged[FAST_MAX_LOGGED]; /* shapes whose choice was logged (debug level) */
    int n_logged;
};

static const char *fast_kernel_names[4] = {"gemm_fast_nn", "gemm_fast_nt", "gemm_fast_tn",
                                           "gemm_fast_tt"};

int cf_cl_gemm_fast_choice_valid(const cf_cl_gemm_fast_choice *c) {
    return c && (c->rm == 4 || c->rm == 8 || c->rm == 16) &&
           (c->rn == 4 || c->rn == 8 || c->rn == 16) && c->rm * c->rn <= 128 &&
           (c->bk == 8 || c->bk == 16) && (c->wg == 8 || c->wg == 16) &&
           c->rm * c->bk >= 4 * c->wg && c->rn * c->bk >= 4 * c->wg && c->split >= 1 &&
           c->split <= FAST_MAX_SPLIT &&
           cf_cl_gemm_fast_local_bytes(c) <= CF_CL_GEMM_FAST_MAX_LOCAL;
}

int cf_cl_gemm_fast_choice_valid_any(const cf_cl_gemm_fast_choice *c) {
    /* every form's variants are the fp32 form's, but for the bf16 / fp16 form's 32-deep slices */
    return cf_cl_gemm_fast_choice_valid(c) || cf_cl_gemm_fast_choice_valid_form(c, 2);
}

int cf_cl_gemm_fast_choice_valid_form(const cf_cl_gemm_fast_choice *c, int mma) {
    if (c && c->bk == 32) {
        /* the packed bf16 / fp16 tiles' 32-deep slices: what holds for bk 16 also holds here
         * (the float4s each work-item stages double), and the packed tiles fit */
        if (mma < 2) return 0;
        cf_cl_gemm_fast_choice h = *c;
        h.bk = 16;
        return cf_cl_gemm_fast_choice_valid_form(&h, mma) &&
               cf_cl_gemm_fast_local_bytes_mma(c, mma) <= CF_CL_GEMM_FAST_MAX_LOCAL;
    }
    /* the tensor-core forms' warp tiling is written for blocks of 32 to 128 (gemm_fast.cl) */
    return cf_cl_gemm_fast_choice_valid(c) && (mma == 0 || (c->rm <= 8 && c->rn <= 8)) &&
           cf_cl_gemm_fast_local_bytes_mma(c, mma) <= CF_CL_GEMM_FAST_MAX_LOCAL;
}

const char *cf_cl_gemm_fast_valid_text(int mma) {
    return mma ? "the tensor-core form: rm, rn 4 or 8; bk 8 or 16 (32 in bf16 / fp16); wg 8 or "
                 "16; rm*bk and rn*bk at least 4*wg"
               : "rm, rn: 4, 8 or 16, rm*rn at most 128; bk: 8 or 16 (32 in the bf16 / fp16 "
                 "tensor-core form, rm and rn 4 or 8); wg: 8 or 16; rm*bk and "
                 "rn*bk at least 4*wg; both tiles twice in at most 48 KiB of local memory, so "
                 "256-wide blocks next to 128 take bk 8";
}

/* ---- the rule ----------------------------------------------------------------------------------
 * Estimated time of each candidate (block size, K slice, split), the smallest wins:
 *   waves * resident * BM*BN*kps / (eff * per-CU rate)   the multiply (kps = K per split slice)
 *   + (2*split + 2) * M*N * 4 bytes / bandwidth          split > 1: partials written and read back,
 *                                                        C written (and read when beta != 0)
 * plus a launch cost per kernel, where waves = ceil(groups / (compute_units * resident)): the
 * groups that run at once share a compute unit, and a last wave that fills few compute units costs
 * a whole wave. A block that is too large for the product leaves compute units idle; one that is
 * too small reloads each operand value more often (eff lower); split-K multiplies the groups of a
 * long-K product with few outputs (weight gradients) at the price of the second pass.
 * resident and eff were fitted to every block/split candidate measured on the 15 GEMM shapes of a
 * training step (d_model 384, d_ff 1536, vocab 16000, 4096 rows) on an NVIDIA H200
 * (test_cl_gemm_fast --bench, docs/opencl.md). resident agrees with the register counts NVIDIA's
 * compiler reports (128 for 8x8 outputs and K slices of 8: two groups of 256 per compute unit;
 * 129 to 144 with slices of 16: one; 79 to 99 for 8x4; 59 to 64 for 4x4). Groups of 8 x 8
 * work-items (64x64 blocks with 8x8 outputs each) were added later and fitted the same way: with
 * them the rule's choices for those 15 shapes take 8.87 ms (9.09 ms without), the best measured
 * candidate of each shape 8.62 ms. The 128 x 256 block (8 x 16 outputs a work-item, K slices of
 * 8: 128 accumulators, one group per multiprocessor) was fitted on GPT-2 124M's 15 shapes at 8192
 * rows on an H100 (bench/results/h100/session11/callM/gemm_bench.txt): it ran 42.7-46.0 TFLOP/s
 * where the product has many blocks (fc forward, fc_proj input gradient, the LM head, 4096^3)
 * against 39.0-41.5 for the rule's earlier choices, and lost where it leaves multiprocessors idle
 * (attn_proj: 32-33 against 39); with eff 1.02 the rule's choices for those shapes add up to
 * 147.9 ms a step over the measured times (the best of each shape 146.5, the rule without it
 * 153.1), though it also takes attn_proj's weight gradient, 35.9 against 39.4 TFLOP/s. It is a
 * candidate only where cf_cl_gemm_fast_wide says so. */
typedef struct {
    int rm, rn, bk, wg;
    int resident;
    double eff;
} fast_candidate;

static const fast_candidate candidates[] = {
    {8, 8, 8, 16, 2, 1.00}, {8, 8, 16, 16, 1, 0.95}, {8, 4, 16, 16, 3, 0.90},
    {4, 8, 16, 16, 3, 0.85}, {4, 4, 16, 16, 4, 0.65}, {8, 8, 16, 8, 6, 0.95},
    {8, 16, 8, 16, 1, 1.02}, /* wide: last */
};
#define N_CANDIDATES (int)(sizeof candidates / sizeof candidates[0])

size_t cf_cl_gemm_fast_local_bytes(const cf_cl_gemm_fast_choice *c) {
    return cf_cl_gemm_fast_local_bytes_mma(c, 0);
}

size_t cf_cl_gemm_fast_local_bytes_mma(const cf_cl_gemm_fast_choice *c, int mma) {
    if (c->bk == 32) {
        /* the packed bf16 / fp16 tiles (gemm_fast.cl's GF_COPY_A, GF_COPY_B): two planes of 8
         * words a row, each group of 8 rows shifted by 2 words, per copy; two copies; the As
         * array at least one float4 per work-item */
        const size_t a = 2 * ((size_t)c->wg * c->rm * 8 + (size_t)c->wg * c->rm / 8 * 2) * 4;
        const size_t b = 2 * ((size_t)c->wg * c->rn * 8 + (size_t)c->wg * c->rn / 8 * 2) * 4;
        const size_t nt = (size_t)c->wg * c->wg * 16;
        (void)mma;
        return (2 * a < nt ? nt : 2 * a) + 2 * b;
    }
    /* two copies of As[bk][wg*rm + 4] and Bs[bk][wg*rn + 4] (gemm_fast.cl; + 8 in the TF32
     * tensor-core form, mma = 1) */
    const int pad = mma == 1 ? 8 : 4;
    return (size_t)2 * c->bk * (size_t)(c->wg * c->rm + pad + c->wg * c->rn + pad) * sizeof(float);
}

static double fast_estimate(int M, int N, int K, int cu, const fast_candidate *c, int split) {
    const double rate = 128.0 * 1.9e9; /* multiply-adds per second of one compute unit */
    const double bandwidth = 2.5e12, launch = 4e-6;
    const int bm = c->wg * c->rm, bn = c->wg * c->rn;
    const int kps = ((K + split - 1) / split + c->bk - 1) / c->bk * c->bk;
    const int slices = kps > 0 ? (K + kps - 1) / kps : 1; /* the split actually used */
    const long long groups = (long long)((M + bm - 1) / bm) * ((N + bn - 1) / bn) * slices;
    const long long slots = (long long)cu * c->resident;
    const long long waves = (groups + slots - 1) / slots;
    double t = (double)waves * c->resident * bm * (double)bn * kps / (c->eff * rate) + launch;
    if (slices > 1) t += (2.0 * slices + 2.0) * M * (double)N * 4.0 / bandwidth + launch;
    return t;
}

int cf_cl_gemm_fast_rule(int M, int N, int K, int compute_units, size_t local_mem, int wide,
                         cf_cl_gemm_fast_choice *out) {
    static const int splits[] = {1, 2, 3, 4, 6, 8, 12, 16};
    const int cu = compute_units > 0 ? compute_units : 1;
    double best = 0.0;
    *out = (cf_cl_gemm_fast_choice){8, 8, 8, 1, 16};
    for (int c = 0; c < N_CANDIDATES - !wide; c++) {
        const cf_cl_gemm_fast_choice cc = {candidates[c].rm, candidates[c].rn, candidates[c].bk, 1,
                                           candidates[c].wg};
        if (cf_cl_gemm_fast_local_bytes(&cc) > local_mem) continue;
        for (size_t s = 0; s < sizeof splits / sizeof splits[0]; s++) {
            const int split = splits[s];
            /* each slice keeps at least 256 of K, so the pipeline has something to overlap */
            if (split > 1 && K / split < 256) break;
            double t = fast_estimate(M, N, K, cu, &candidates[c], split);
            if (best == 0.0 || t < best) {
                best = t;
                *out = (cf_cl_gemm_fast_choice){candidates[c].rm, candidates[c].rn,
                                                candidates[c].bk, split, candidates[c].wg};
            }
        }
    }
    return best > 0.0;
}

/* The packed bf16 / fp16 tiles' 64 x 64 blocks of two warps with 32-deep slices (BK 32), no split,
 * K from 256: measured on an H100 against the cost model's choices, shape by shape, at GPT-2
 * 124M's shapes and the d_model 384 model's (bench/results/h100/session15/callA and callB):
 *   - NT products (a linear layer's forward, activations times the stored weight's transpose):
 *     1.0-1.55x at 124M's shapes, 1.7-1.8x where the output has few 128 x 128 blocks (d_model
 *     384: attn_proj 67 against 40 TFLOP/s, fc_proj 93 against 51);
 *   - NN products (the input gradients) whose output has fewer 128 x 128 blocks than twice the
 *     compute units: 1.2-1.35x (d_model 384: qkv, attn_proj, fc); with more blocks (124M) the
 *     cost model's 128 x 128 blocks were as fast or faster (this variant 0.95-1.02x);
 *   - TN products (weight gradients): mostly slower (0.83-1.05x), left to the cost model.
 * Only K from 256 to 8192 and outputs of at least two 64 x 64 blocks a compute unit were measured
 * (a long K or a small output wants the cost model's split), so the choice stays within them.
 * More groups per multiprocessor (two warps each, about six at a time, against one group of
 * eight warps) hide the loads better than one large group. */
int cf_cl_gemm_fast_rule_form(int M, int N, int K, int ta, int tb, int compute_units,
                              size_t local_mem, int wide, int mma, cf_cl_gemm_fast_choice *out) {
    if (!cf_cl_gemm_fast_rule(M, N, K, compute_units, local_mem, wide, out)) return 0;
    const cf_cl_gemm_fast_choice packed = {8, 8, 32, 1, 8};
    /* only where it was measured: K from 256 to 8192 (a longer K wants a split, which this
     * choice does not take), at least two 64 x 64 blocks a compute unit */
    const long long blocks64 = (long long)((M + 63) / 64) * ((N + 63) / 64);
    if (mma < 2 || ta || K < 256 || K > 8192 || blocks64 < 2ll * compute_units ||
        cf_cl_gemm_fast_local_bytes_mma(&packed, mma) > local_mem)
        return 1;
    const long long blocks128 = (long long)((M + 127) / 128) * ((N + 127) / 128);
    if (tb || blocks128 < 2ll * compute_units) *out = packed;
    return 1;
}

/* ---- which products ---------------------------------------------------------------------------- */

static struct cf_cl_gemm_fast *fast_state(cf_cl_ctx *ctx);

int cf_cl_gemm_fast_broken(const cf_cl_ctx *ctx) {
    return ctx->gemm_fast && ctx->gemm_fast->broken;
}

/* the decision is cl_plan.c's */
int cf_cl_gemm_fast_wanted(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d) {
    if (d->M <= 0 || d->N <= 0) return 0;
    cf_cl_gemm_plan plan;
    if (cf_cl_plan_gemm(ctx, d, &plan) < 0) return 0;
    return plan.path == CF_PLAN_FAST || plan.path == CF_PLAN_HALF;
}

/* ---- programs ----------------------------------------------------------------------------------- */

int cf_cl_gemm_fast_form(const cf_cl_ctx *ctx) { return ctx->mx ? ctx->mx_prec : 0; }
int cf_cl_gemm_fast_wide(const cf_cl_ctx *ctx) {
    return cf_cl_gemm_fast_form(ctx) == 0 && strstr(ctx->dev.platform_name, "NVIDIA") != NULL &&
           ctx->dev.nv_cc >= 90;
}
/* ROUND_IN: 1 bf16, 2 fp16 inputs rounded in the fp32 form */
static int fast_round_in(const cf_cl_ctx *ctx) {
    return ctx->gemm_round && !ctx->mma_half ? ctx->gemm_round : 0;
}

static struct cf_cl_gemm_fast *fast_state(cf_cl_ctx *ctx) {
    if (!ctx->gemm_fast) ctx->gemm_fast = calloc(1, sizeof *ctx->gemm_fast);
    return ctx->gemm_fast;
}

static void program_free(fast_program *g) {
    for (int i = 0; i < 4; i++)
        if (g->k[i]) clReleaseKernel(g->k[i]);
    if (g->reduce) clReleaseKernel(g->reduce);
    if (g->program) clReleaseProgram(g->program);
    memset(g, 0, sizeof *g);
}

/* cf_backend_options.gemm_fast_verbose (CF_GEMM_FAST_VERBOSE=1) on NVIDIA: build with
 * -cl-nv-verbose and print the compiler's report (registers, spills, local memory per kernel) at
 * info level. Use with CF_CACHE_DIR=off: a program from the cache has no report. */
int cf_cl_nv_verbose(const cf_cl_ctx *ctx) {
    return ctx->gemm_fast_verbose == 1 && strstr(ctx->dev.platform_name, "NVIDIA") != NULL;
}

void cf_cl_nv_report(cf_cl_ctx *ctx, cl_program program, const char *what) {
    const size_t cap = 1 << 16;
    char *log = calloc(1, cap), *save = NULL;
    if (log && clGetProgramBuildInfo(program, ctx->dev.device, CL_PROGRAM_BUILD_LOG, cap - 1, log,
                                     NULL) == CL_SUCCESS)
        for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
            if (strstr(line, "entry") || strstr(line, "registers") || strstr(line, "spill"))
                CF_INFO("%s: %s", what, line);
    free(log);
}

/* The program of a variant with an epilogue built in: epi_bias 0/1, epi_act 0/1/2, epi_colsum 0/1
 * (gemm_fast.cl). */
static int fast_program_get(cf_cl_ctx *ctx, const cf_cl_gemm_fast_choice *c, int vec,
                            int epi_bias, int epi_act, int epi_colsum, fast_program **out) {
    struct cf_cl_gemm_fast *st = fast_state(ctx);
    if (!st) return CF_ERR_NOMEM;
    for (int i = 0; i < st->n_progs; i++) {
        fast_program *g = &st->progs[i];
        if (g->rm == c->rm && g->rn == c->rn && g->bk == c->bk && g->wg == c->wg &&
            g->vec == vec && g->epi_bias == epi_bias && g->epi_act == epi_act &&
            g->epi_colsum == epi_colsum && g->mma == cf_cl_gemm_fast_form(ctx) &&
            g->round == fast_round_in(ctx)) {
            *out = g;
            return CF_OK;
        }
    }
    if (st->n_progs == FAST_MAX_PROGRAMS) {
        /* more variants than the table holds (the tuner over many shapes): start it over (kernels
         * already enqueued keep their programs alive) */
        CF_DEBUG("gemm_fast: %d kernel variants built; releasing them to build rm %d, rn %d, bk "
                 "%d, wg %d, vec %d",
                 FAST_MAX_PROGRAMS, c->rm, c->rn, c->bk, c->wg, vec);
        for (int i = 0; i < st->n_progs; i++) program_free(&st->progs[i]);
        st->n_progs = 0;
    }
    const int verbose = cf_cl_nv_verbose(ctx);
    /* Without precision bf16 / fp16 the dispatch sends products here on GPUs only; on CPU
     * devices the kernel then runs in tests (and under CF_GEMM_FAST=1), where compiling it
     * dominates: PoCL takes 5 to 11 s per variant on two cores with optimisation and 1 to 3 s
     * without it. With bf16 / fp16 it takes every product there, so it is optimised, unless
     * CF_GEMM_FAST=1 says that this is such a test. */
    const int cpu = !(ctx->dev.type & CL_DEVICE_TYPE_GPU) &&
                    (!ctx->gemm_round || ctx->gemm_fast_mode == 1);
    /* the matrix engine's file and options (cl_matrix.h), else gemm_fast.cl's fp32 form */
    const int kind = cf_cl_gemm_fast_form(ctx);
    const char *file = kind ? ctx->mx->file : "gemm_fast.cl";
    char form[160];
    if (kind) {
        const cf_cl_matrix_choice mc = {ctx->mx, ctx->mx_emulate};
        cf_cl_matrix_options(mc, kind, form, sizeof form);
    } else
        snprintf(form, sizeof form, "-DMMA_KIND=0 -DROUND_IN=%d", fast_round_in(ctx));
    char opts[384];
    snprintf(opts, sizeof opts,
             "-cl-std=CL1.2 -DRM=%d -DRN=%d -DBK=%d -DWG=%d -DVEC=%d -DEPI_BIAS=%d -DEPI_ACT=%d "
             "-DEPI_COLSUM=%d %s%s%s",
             c->rm, c->rn, c->bk, c->wg, vec, epi_bias, epi_act, epi_colsum, form,
             cpu ? " -cl-opt-disable" : "", verbose ? " -cl-nv-verbose" : "");
    fast_program g;
    memset(&g, 0, sizeof g);
    g.rm = c->rm;
    g.rn = c->rn;
    g.bk = c->bk;
    g.wg = c->wg;
    g.vec = vec;
    g.epi_bias = epi_bias;
    g.epi_act = epi_act;
    g.epi_colsum = epi_colsum;
    g.mma = cf_cl_gemm_fast_form(ctx);
    g.round = fast_round_in(ctx);
    CF_TRY(cf_cl_build_program(ctx, file, opts, &g.program));
    if (verbose) {
        char what[96];
        snprintf(what, sizeof what, "gemm_fast rm %d rn %d bk %d wg %d vec %d", c->rm, c->rn,
                 c->bk, c->wg, vec);
        cf_cl_nv_report(ctx, g.program, what);
    }
    cl_int err = CL_SUCCESS;
    for (int i = 0; i < 5 && err == CL_SUCCESS; i++) {
        const char *name = i < 4 ? fast_kernel_names[i] : "gemm_fast_reduce";
        cl_kernel k = clCreateKernel(g.program, name, &err);
        if (err != CL_SUCCESS) {
            cf_cl_fail(ctx, "cl_kernels/%s: kernel %s: %s", file, name, cf_cl_errstr(err));
            break;
        }
        if (i < 4) g.k[i] = k;
        else g.reduce = k;
        /* the kernels' work-groups: wg x wg items with rm x rn accumulators each (the reduction:
         * 64 items); see cl_gemm.c's gemm_private_bytes for the estimate */
        const size_t local[2] = {i < 4 ? (size_t)c->wg : 64u, i < 4 ? (size_t)c->wg : 1u};
        const size_t priv = 4 * (size_t)(c->rm * c->rn + c->rm + c->rn) * sizeof(float) + 256;
        char why[256] = "";
        int fits = cf_cl_kernel_fits(ctx, k, 2, local, i < 4 ? priv : 256u, why, sizeof why);
        if (fits == 0) {
            cf_cl_fail(ctx, "cl_kernels/%s: %s (rm %d, rn %d, bk %d, wg %d) cannot run "
                            "on %s: %s",
                       file, name, c->rm, c->rn, c->bk, c->wg, ctx->dev.name, why);
            program_free(&g);
            return CF_ERR_UNSUPPORTED;
        }
        if (fits < 0) {
            cf_cl_fail(ctx, "cl_kernels/%s: %s: %s", file, name, why);
            err = CL_INVALID_KERNEL;
        }
    }
    if (err != CL_SUCCESS) {
        program_free(&g);
        return CF_ERR_BUILD;
    }
    st->progs[st->n_progs] = g;
    *out = &st->progs[st->n_progs++];
    return CF_OK;
}

void cf_cl_gemm_fast_release(cf_cl_ctx *ctx) {
    struct cf_cl_gemm_fast *st = ctx->gemm_fast;
    if (!st) return;
    for (int i = 0; i < st->n_progs; i++) program_free(&st->progs[i]);
    if (st->scratch) clReleaseMemObject(st->scratch);
    free(st);
    ctx->gemm_fast = NULL;
}

/* ---- launches ----------------------------------------------------------------------------------- */

static int scratch_get(cf_cl_ctx *ctx, size_t nbytes, cl_mem *out) {
    struct cf_cl_gemm_fast *st = ctx->gemm_fast;
    if (st->scratch && st->scratch_bytes >= nbytes) {
        *out = st->scratch;
        return CF_OK;
    }
    if (st->scratch) clReleaseMemObject(st->scratch);
    st->scratch = NULL;
    st->scratch_bytes = 0;
#ifdef CF_FAULT_INJECTION
    if (cf_fault_alloc_hit()) return CF_ERR_NOMEM;
#endif
    cl_int err = CL_SUCCESS;
    st->scratch = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, nbytes, NULL, &err);
    if (err != CL_SUCCESS) {
        st->scratch = NULL;
        return CF_ERR_NOMEM;
    }
    st->scratch_bytes = nbytes;
    *out = st->scratch;
    return CF_OK;
}

static int aligned4(size_t off, int ld) { return off % 4 == 0 && ld % 4 == 0; }

static void log_choice(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d, const cf_cl_gemm_fast_choice *c,
                       int vec, const char *source) {
    struct cf_cl_gemm_fast *st = ctx->gemm_fast;
    for (int i = 0; i < st->n_logged; i++)
        if (st->logged[i].M == d->M && st->logged[i].N == d->N && st->logged[i].K == d->K &&
            st->logged[i].ta == d->ta && st->logged[i].tb == d->tb)
            return;
    if (st->n_logged < FAST_MAX_LOGGED) {
        st->logged[st->n_logged].M = d->M;
        st->logged[st->n_logged].N = d->N;
        st->logged[st->n_logged].K = d->K;
        st->logged[st->n_logged].ta = d->ta;
        st->logged[st->n_logged].tb = d->tb;
        st->n_logged++;
    }
    CF_DEBUG("gemm M=%d N=%d K=%d %c%c: fast %dx%d (bk %d, split %d, %s%s%s)", d->M, d->N, d->K,
             d->ta ? 'T' : 'N', d->tb ? 'T' : 'N', c->wg * c->rm, c->wg * c->rn, c->bk, c->split,
             vec ? "float4" : "scalar", source ? ", " : "", source ? source : "");
}

/* cf_cl_gemm_fast_run; source (may be NULL) says in the debug line where the choice came from */
static int fast_run(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d, const cf_cl_gemm_fast_choice *choice,
                    const char *source) {
    if (d->M <= 0 || d->N <= 0) return CF_OK;
    cf_cl_gemm_fast_choice c;
    if (choice) {
        c = *choice;
    } else if (!cf_cl_gemm_fast_rule_form(d->M, d->N, d->K, d->ta, d->tb,
                                          (int)ctx->dev.compute_units, (size_t)ctx->dev.local_mem,
                                          cf_cl_gemm_fast_wide(ctx), cf_cl_gemm_fast_form(ctx), &c)) {
        cf_cl_fail(ctx, "gemm_fast: no variant fits the %llu bytes of local memory of %s",
                   (unsigned long long)ctx->dev.local_mem, ctx->dev.name);
        return CF_ERR_UNSUPPORTED;
    }
    if (!cf_cl_gemm_fast_choice_valid_form(&c, cf_cl_gemm_fast_form(ctx))) {
        cf_cl_fail(ctx, "gemm_fast: invalid choice rm %d, rn %d, bk %d, split %d, wg %d (%s; "
                        "split 1..%d)",
                   c.rm, c.rn, c.bk, c.split, c.wg, cf_cl_gemm_fast_valid_text(cf_cl_gemm_fast_form(ctx)),
                   FAST_MAX_SPLIT);
        return CF_ERR_INVALID;
    }
    if (cf_cl_gemm_fast_local_bytes_mma(&c, ctx->mma_tf32) > ctx->dev.local_mem) {
        cf_cl_fail(ctx, "gemm_fast: %dx%d blocks with bk %d need %zu bytes of local memory; %s "
                        "has %llu",
                   c.wg * c.rm, c.wg * c.rn, c.bk, cf_cl_gemm_fast_local_bytes_mma(&c, ctx->mma_tf32),
                   ctx->dev.name,
                   (unsigned long long)ctx->dev.local_mem);
        return CF_ERR_UNSUPPORTED;
    }
    if (!fast_state(ctx)) return CF_ERR_NOMEM;
    const int bm = c.wg * c.rm, bn = c.wg * c.rn;
    const int K = d->K > 0 ? d->K : 0;
    /* K per slice, a multiple of bk; the split actually used may be smaller than asked */
    int kps = (K + c.split - 1) / c.split;
    kps = (kps + c.bk - 1) / c.bk * c.bk;
    int split = kps > 0 ? (K + kps - 1) / kps : 1;
    if (split < 1) split = 1;
    const int ldp = (d->N + 3) / 4 * 4; /* scratch row stride: float4 rows */
    /* the scratch: split partial products, then (colsum) split partial sums of op(A) */
    const size_t csp_off = (size_t)split * (size_t)d->M * (size_t)ldp;
    const size_t part_elems = csp_off + (d->colsum ? (size_t)split * (size_t)d->M : 0);
    cl_mem part = NULL;
    if (split > 1 && scratch_get(ctx, part_elems * sizeof(float), &part) < 0) {
        CF_DEBUG("gemm_fast: no scratch for %d K slices of %dx%d; one slice", split, d->M, d->N);
        split = 1;
    }
    if (split == 1) kps = K;
    c.split = split;
    const int vec = aligned4(d->a_off, d->lda) && aligned4(d->b_off, d->ldb) &&
                    (split > 1 || (aligned4(d->c_off, d->ldc) &&
                                   (!d->act || aligned4(d->act_x_off, d->ldc))));
    /* the epilogue is built into the program: without split the product's, with split the
     * partial products get none and the second pass (this program's reduce kernel) applies it */
    const int eb = d->bias != NULL, ea = d->act, ecs = d->colsum != NULL;
    if (ecs && !d->ta) {
        cf_cl_fail(ctx, "gemm_fast: the sums of op(A) need a transposed A");
        return CF_ERR_INVALID;
    }
    fast_program *g = NULL, *gp = NULL;
    CF_TRY(fast_program_get(ctx, &c, vec, eb, ea, ecs, &g));
    /* the partial products' program sums op(A) too (into the scratch), the reduce adds them */
    if (split > 1) {
        CF_TRY(fast_program_get(ctx, &c, vec, 0, 0, ecs, &gp));
        /* a full table was started over for gp: look g up again (rebuilt if it went) */
        CF_TRY(fast_program_get(ctx, &c, vec, eb, ea, ecs, &g));
    }
    log_choice(ctx, d, &c, vec, source);
    const int which = (d->ta ? 2 : 0) + (d->tb ? 1 : 0);
    /* without a bias the kernels still get a valid buffer for it (never read) */
    cl_mem bias_mem = d->bias ? d->bias : d->C;
    cl_mem x_mem = d->act ? d->act_x : d->C;
    cl_mem cs_mem = d->colsum ? d->colsum : d->C;
    size_t global[3] = {(size_t)((d->N + bn - 1) / bn) * c.wg,
                        (size_t)((d->M + bm - 1) / bm) * c.wg, (size_t)split};
    size_t local[3] = {(size_t)c.wg, (size_t)c.wg, 1};
    if (split == 1)
        return cf_cl_launch(ctx, g->k[which], fast_kernel_names[which], 3, global, local,
                            CF_ARGS(ARG_INT(d->M), ARG_INT(d->N), ARG_INT(K), ARG_INT(kps),
                                    ARG_FLOAT(d->alpha), ARG_MEM(d->A), ARG_ULONG(d->a_off),
                                    ARG_INT(d->lda), ARG_MEM(d->B), ARG_ULONG(d->b_off),
                                    ARG_INT(d->ldb), ARG_FLOAT(d->beta), ARG_MEM(d->C),
                                    ARG_ULONG(d->c_off), ARG_INT(d->ldc), ARG_ULONG(0),
                                    ARG_MEM(bias_mem), ARG_ULONG(d->bias_off), ARG_MEM(x_mem),
                                    ARG_ULONG(d->act_x_off), ARG_MEM(cs_mem),
                                    ARG_ULONG(d->colsum_off), ARG_ULONG(0), ARG_INT(1)));
    const size_t p_split = (size_t)d->M * (size_t)ldp;
    CF_TRY(cf_cl_launch(ctx, gp->k[which], fast_kernel_names[which], 3, global, local,
                        CF_ARGS(ARG_INT(d->M), ARG_INT(d->N), ARG_INT(K), ARG_INT(kps),
                                ARG_FLOAT(1.0f), ARG_MEM(d->A), ARG_ULONG(d->a_off),
                                ARG_INT(d->lda), ARG_MEM(d->B), ARG_ULONG(d->b_off),
                                ARG_INT(d->ldb), ARG_FLOAT(0.0f), ARG_MEM(part), ARG_ULONG(0),
                                ARG_INT(ldp), ARG_ULONG(p_split), ARG_MEM(bias_mem),
                                ARG_ULONG(0), ARG_MEM(x_mem), ARG_ULONG(0), ARG_MEM(part),
                                ARG_ULONG(csp_off), ARG_ULONG((size_t)d->M), ARG_INT(0))));
    size_t rglobal[2] = {cf_round_up((size_t)d->N, 64), (size_t)d->M};
    size_t rlocal[2] = {64, 1};
    return cf_cl_launch(ctx, g->reduce, "gemm_fast_reduce", 2, rglobal, rlocal,
                        CF_ARGS(ARG_INT(d->M), ARG_INT(d->N), ARG_INT(split), ARG_MEM(part),
                                ARG_INT(ldp), ARG_ULONG(p_split), ARG_FLOAT(d->alpha),
                                ARG_FLOAT(d->beta), ARG_MEM(d->C), ARG_ULONG(d->c_off),
                                ARG_INT(d->ldc), ARG_MEM(bias_mem), ARG_ULONG(d->bias_off),
                                ARG_MEM(x_mem), ARG_ULONG(d->act_x_off), ARG_ULONG(csp_off),
                                ARG_MEM(cs_mem), ARG_ULONG(d->colsum_off)));
}

int cf_cl_gemm_fast_run(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d,
                        const cf_cl_gemm_fast_choice *choice) {
    return fast_run(ctx, d, choice, NULL);
}

int cf_cl_gemm_fast_try(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d) {
    if (d->M <= 0 || d->N <= 0 || (d->colsum && !d->ta)) return 0;
    cf_cl_gemm_plan plan;
    CF_TRY(cf_cl_plan_gemm(ctx, d, &plan));
    if (plan.path != CF_PLAN_FAST && plan.path != CF_PLAN_HALF) return 0;
    cf_cl_gemm_fast_choice c = plan.fast;
    const char *source = plan.fast_source;
    /* a variant that does not build here (a compiler limit, an injected fault) must not stop the
     * run: the error goes to the debug log and one warning, and the other paths take over */
    const int quiet = ctx->quiet_init;
    ctx->quiet_init = 1;
    ctx->last_error[0] = 0;
    int rc;
    /* the plan's half path (precision bf16 / fp16): the GEMM on half operands (cl_gemm_half.h),
     * with this kernel's choice as its fallback: for this product where its scratch does not fit,
     * from then on where it cannot be built here */
    if (plan.path == CF_PLAN_HALF) {
        rc = cf_cl_gemm_half_run(ctx, d, 0);
        if (rc == CF_ERR_NOMEM) {
            CF_DEBUG("gemm M=%d N=%d K=%d: no scratch for the half operands (%s); the "
                     "register-blocked kernel",
                     d->M, d->N, d->K, ctx->last_error[0] ? ctx->last_error : "?");
            ctx->last_error[0] = 0;
        } else if (rc != CF_ERR_BUILD && rc != CF_ERR_UNSUPPORTED) {
            ctx->quiet_init = quiet;
            if (rc < 0 && ctx->last_error[0]) CF_ERROR("%s", ctx->last_error);
            ctx->last_error[0] = 0;
            return rc < 0 ? rc : 1;
        } else {
            CF_WARN("gemm M=%d N=%d K=%d: the GEMM on half operands is unusable on %s (%s); "
                    "using the register-blocked kernel from now on",
                    d->M, d->N, d->K, ctx->dev.name, ctx->last_error[0] ? ctx->last_error : "?");
            ctx->last_error[0] = 0;
            cf_cl_gemm_half_disable(ctx); /* (and the plans with it) */
        }
    }
    rc = fast_run(ctx, d, &c, source);
    ctx->quiet_init = quiet;
    if (rc == CF_ERR_BUILD || rc == CF_ERR_UNSUPPORTED) {
        CF_WARN("gemm M=%d N=%d K=%d: the fast GEMM kernel is unusable on %s (%s); using the "
                "other GEMM paths from now on%s",
                d->M, d->N, d->K, ctx->dev.name, ctx->last_error[0] ? ctx->last_error : "?",
                ctx->gemm_round == 1   ? ", whose products are fp32: precision bf16 is fp32 now"
                : ctx->gemm_round == 2 ? ", whose products are fp32: precision fp16 is fp32 now"
                                       : "");
        ctx->last_error[0] = 0;
        if (ctx->gemm_fast) ctx->gemm_fast->broken = 1;
        cf_cl_plan_invalidate(ctx);
        return 0;
    }
    if (rc < 0 && ctx->last_error[0]) CF_ERROR("%s", ctx->last_error);
    ctx->last_error[0] = 0;
    return rc < 0 ? rc : 1;
}

/* ---- public entry point ------------------------------------------------------------------------- */

int cf_backend_opencl_gemm_fast(cf_backend *be, const cf_cl_gemm_fast_choice *choice, int ta,
                                int tb, int M, int N, int K, float alpha, cf_view A, int lda,
                                cf_view B, int ldb, float beta, cf_view C, int ldc) {
    const cf_view none = {0};
    return cf_backend_opencl_gemm_fast_bias(be, choice, ta, tb, M, N, K, alpha, A, lda, B, ldb,
                                            beta, C, ldc, none);
}

int cf_backend_opencl_gemm_fast_gelu(cf_backend *be, const cf_cl_gemm_fast_choice *choice, int ta,
                                     int tb, int M, int N, int K, cf_view A, int lda, cf_view B,
                                     int ldb, cf_view C, cf_view bias, cf_view X, int act) {
    if (!cf_backend_is_opencl(be)) return CF_ERR_UNSUPPORTED;
    if (act < 1 || act > 2 || (act == 2 && bias.buf)) {
        CF_ERROR("gemm_fast: GELU epilogue %d: 1 (forward) or 2 (backward, no bias)", act);
        return CF_ERR_INVALID;
    }
    if (M <= 0 || N <= 0) return CF_OK;
    CF_TRY(cf_gemm_check("gemm_fast_gelu", ta, tb, M, N, K, A, lda, B, ldb, C, N, bias));
    CF_TRY(cf_view_check("gemm_fast_gelu", "X", X, CF_F32, (size_t)M * N, 0));
    cf_cl_gemm_desc d = cf_cl_gemm_desc_plain(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
    d.bias = cf_cl_mem(bias);
    d.bias_off = cf_view_elem_off(bias);
    d.act = act;
    d.act_x = cf_cl_mem(X);
    d.act_x_off = cf_view_elem_off(X);
    return cf_cl_gemm_fast_run((cf_cl_ctx *)be->ctx, &d, choice);
}

int cf_backend_opencl_gemm_fast_colsum(cf_backend *be, const cf_cl_gemm_fast_choice *choice,
                                       int tb, int M, int N, int K, float alpha, cf_view A,
                                       int lda, cf_view B, int ldb, float beta, cf_view C, int ldc,
                                       cf_view colsum) {
    if (!cf_backend_is_opencl(be)) return CF_ERR_UNSUPPORTED;
    CF_TRY(cf_view_check("gemm_fast_colsum", "colsum", colsum, CF_F32, (size_t)(M > 0 ? M : 0), 0));
    if (M <= 0 || N <= 0) return CF_OK;
    const cf_view none = {0};
    CF_TRY(cf_gemm_check("gemm_fast_colsum", 1, tb, M, N, K, A, lda, B, ldb, C, ldc, none));
    cf_cl_gemm_desc d = cf_cl_gemm_desc_plain(1, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    d.colsum = cf_cl_mem(colsum);
    d.colsum_off = cf_view_elem_off(colsum);
    return cf_cl_gemm_fast_run((cf_cl_ctx *)be->ctx, &d, choice);
}

int cf_backend_opencl_gemm_fast_bias(cf_backend *be, const cf_cl_gemm_fast_choice *choice, int ta,
                                     int tb, int M, int N, int K, float alpha, cf_view A, int lda,
                                     cf_view B, int ldb, float beta, cf_view C, int ldc,
                                     cf_view bias) {
    if (!cf_backend_is_opencl(be)) return CF_ERR_UNSUPPORTED;
    if (M <= 0 || N <= 0) return CF_OK;
    CF_TRY(cf_gemm_check("gemm_fast", ta, tb, M, N, K, A, lda, B, ldb, C, ldc, bias));
    cf_cl_gemm_desc d = cf_cl_gemm_desc_plain(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    d.bias = cf_cl_mem(bias);
    d.bias_off = cf_view_elem_off(bias);
    return cf_cl_gemm_fast_run((cf_cl_ctx *)be->ctx, &d, choice);
}
