/* clformer: the OpenCL backend's planning layer (see cl_plan.h): the GEMM path, variant and tile
 * per shape and the attention path per shape, decided in one place from a device description,
 * memoised and logged once. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/opencl/cl_plan.h"
#include "backend/opencl/cl_gemm_half.h"
#include "clformer/config.h"
#include "backend/opencl/cl_tuning.h"

#define PLAN_MAX_GEMM 256
#define PLAN_MAX_ATT 32

typedef struct {
    int M, N, K, ta, tb;
    int batched, causal; /* batch > 1, causal flag */
    int gen;             /* ctx->plan_gen the plan was made for */
    cf_cl_gemm_plan plan;
    int logged;          /* path + 1 last logged, 0 none */
} plan_gemm_entry;

typedef struct {
    int M, N, K, ta, tb;
    const struct cf_tuning *tuning; /* the tuning file the answer came from */
    int found, exact;
    cf_cl_gemm_fast_choice choice;
} plan_tuned_entry;

typedef struct {
    int C, NH, mode;
    size_t max_group, local_mem; /* the device limits the plan was made for */
    cf_cl_attention_plan plan;
} plan_att_entry;

struct cf_cl_plan_state {
    plan_gemm_entry gemm[PLAN_MAX_GEMM];
    int n_gemm;
    plan_tuned_entry tuned[PLAN_MAX_GEMM];
    int n_tuned;
    plan_att_entry att[PLAN_MAX_ATT];
    int n_att;
};

static struct cf_cl_plan_state *plan_state(cf_cl_ctx *ctx) {
    if (!ctx->plan) ctx->plan = calloc(1, sizeof *ctx->plan);
    return ctx->plan;
}

void cf_cl_plan_release(cf_cl_ctx *ctx) {
    free(ctx->plan);
    ctx->plan = NULL;
}

void cf_cl_plan_invalidate(cf_cl_ctx *ctx) { ctx->plan_gen++; }

void cf_cl_plan_device_of(cf_cl_ctx *ctx, cf_cl_plan_device *out) {
    memset(out, 0, sizeof *out);
    out->name = ctx->dev.name;
    out->gpu = (ctx->dev.type & CL_DEVICE_TYPE_GPU) != 0;
    out->compute_units = (int)ctx->dev.compute_units;
    out->local_mem = (size_t)ctx->dev.local_mem;
    out->max_group = ctx->dev.max_group;
    out->gemm_max_group = ctx->gemm_max_group;
    out->private_budget = cf_cl_group_private_budget(&ctx->dev);
    out->have_clblast = cf_cl_have_clblast();
    out->gemm_mode = ctx->gemm_mode;
    out->clblast_failed = ctx->clblast_failed;
    out->fast_mode = ctx->gemm_fast_mode;
    out->fast_broken = cf_cl_gemm_fast_broken(ctx);
    out->mma_tf32 = ctx->mma_tf32;
    out->gemm_round = ctx->gemm_round;
    out->fast_mma = cf_cl_gemm_fast_form(ctx);
    out->fast_wide = cf_cl_gemm_fast_wide(ctx);
    out->half_mode = !cf_cl_gemm_half_engine(ctx) ? 0 : ctx->gemm_half_mode == 1 ? 1 : 2;
    out->tuner = ctx->tuner;
    out->tuner_user = ctx->tuner_user;
    out->tuning = ctx->tuning && ctx->tuner_user == (void *)ctx->tuning ? ctx->tuning : NULL;
    out->attention_mode = ctx->attention_mode >= 0 ? ctx->attention_mode : CF_ATT_AUTO;
}

const char *cf_cl_plan_precision(const cf_cl_plan_device *dev) {
    /* bf16 / fp16 round on every device; tf32 is tf32 only on a TF32 engine */
    return cf_precision_name(dev->gemm_round == 1   ? CF_PREC_BF16
                             : dev->gemm_round == 2 ? CF_PREC_FP16
                             : dev->mma_tf32        ? CF_PREC_TF32
                                                    : CF_PREC_FP32);
}

const char *cf_cl_plan_path_name(int path) {
    return path == CF_PLAN_HALF      ? "half"
           : path == CF_PLAN_FAST    ? "fast"
           : path == CF_PLAN_CLBLAST ? "clblast"
                                     : "native";
}

int cf_cl_plan_half_takes(int half_mode, int M, int N, int K) {
    if (half_mode <= 0 || M <= 0 || N <= 0 || K <= 0) return 0;
    /* auto: whole 128 x 128 blocks (gemm_half.cl's) and K >= 128; below that the packing passes
     * cost more than they save (not yet measured: the threshold is the block size) */
    return half_mode == 1 || (M >= 128 && N >= 128 && K >= 128);
}

/* ---- the tiled kernel's parameters --------------------------------------------------------------- */

size_t cf_cl_gemm_local_bytes(const cf_cl_gemm_params *p) {
    return (size_t)p->tk * (size_t)(p->tile * p->wpt + p->pad) * 2 * sizeof(float);
}

/* Private state of one work-item of cl_kernels/gemm.cl: the WPT x WPT accumulators and the WPT
 * staged values of A and B, about four times over once a CPU driver keeps them (and the unrolled
 * loops' temporaries) live across the barriers, plus the indices. Measured with PoCL 3.1
 * (pthread-skylake-avx512, the smallest stack each group ran with): WPT 4 ~500 B, WPT 8 ~1.4 KiB,
 * WPT 16 ~4.6 KiB, WPT 32 ~6.2 KiB per work-item; this estimate is 640 B, 1.5 KiB, 4.75 KiB and
 * 17 KiB. A 64x64 group with WPT 16 (4096 items, ~18 MiB) overflowed an 8 MiB thread stack. */
size_t cf_cl_gemm_private_bytes(const cf_cl_gemm_params *p) {
    return 4 * (size_t)(p->wpt * p->wpt + 2 * p->wpt) * sizeof(float) + 256;
}

int cf_cl_plan_params_fit(const cf_cl_plan_device *dev, const cf_cl_gemm_params *p) {
    int vw_ok = (p->vw == 1 || p->vw == 2 || p->vw == 4 || p->vw == 8) && p->tk % p->vw == 0 &&
                (p->tile * p->wpt) % p->vw == 0;
    if (!(p->tile >= 1 && p->tile * p->tile <= (int)dev->max_group && p->wpt >= 1 &&
          p->wpt <= 16 && p->tk >= 1 && p->tk <= 64 && vw_ok && p->pad >= 0 && p->pad <= 8 &&
          cf_cl_gemm_local_bytes(p) <= dev->local_mem))
        return 0;
    size_t budget = dev->private_budget;
    return budget == SIZE_MAX ||
           (size_t)p->tile * (size_t)p->tile <= budget / cf_cl_gemm_private_bytes(p);
}

void cf_cl_plan_native_params(const cf_cl_plan_device *dev, int M, int N, int K, int ta, int tb,
                              cf_cl_gemm_params *p, char *warn, size_t warn_len) {
    if (warn_len) warn[0] = 0;
    if (dev->tuner) {
        cf_cl_gemm_params t = {0, 0, 0, "tuning", 1, 1, CF_GEMM_AUTO};
        if (dev->tuner(dev->tuner_user, dev->name, M, N, K, ta, tb, &t)) {
            if (!t.source) t.source = "tuning";
            if (t.vw == 0) t.vw = 1;
            if (cf_cl_plan_params_fit(dev, &t)) {
                *p = t;
                return;
            }
            char priv[160] = "";
            if (dev->private_budget != SIZE_MAX && t.wpt >= 1)
                snprintf(priv, sizeof priv, "; %zu bytes of private state per group, this one "
                         "needs about %zu", dev->private_budget,
                         (size_t)t.tile * (size_t)t.tile * cf_cl_gemm_private_bytes(&t));
            if (warn_len)
                snprintf(warn, warn_len,
                         "gemm M=%d N=%d K=%d %c%c: the tuning entry's parameters tile %d, wpt %d, "
                         "tk %d, vw %d, pad %d do not fit %s (work-groups up to %zu, %llu bytes "
                         "local memory%s; vw must divide tk and tile*wpt); using the built-in rule",
                         M, N, K, ta ? 'T' : 'N', tb ? 'T' : 'N', t.tile, t.wpt, t.tk, t.vw, t.pad,
                         dev->name, dev->max_group, (unsigned long long)dev->local_mem, priv);
        }
    }
    cf_cl_gemm_rule(M, N, K, dev->gemm_max_group, p);
    /* 128x128 blocks need 16.5 KiB of local memory */
    if (!cf_cl_plan_params_fit(dev, p)) p->wpt = 4;
}

/* ---- the register-blocked kernel ----------------------------------------------------------------- */

int cf_cl_plan_tuned_fast(const cf_cl_plan_device *dev, int M, int N, int K, int ta, int tb,
                          cf_cl_gemm_fast_choice *out, int *exact, char *why, size_t why_len) {
    if (why && why_len) why[0] = 0;
    if (!dev->tuning) return 0;
    int ex = 0;
    /* only an entry measured under this run's precision */
    const char *prec = cf_cl_plan_precision(dev);
    const cf_tuning_gemm *g = cf_tuning_lookup_precision(dev->tuning, prec, M, N, K, ta, tb, &ex);
    if (!g || g->path != CF_TUNING_FAST || g->fast.rm <= 0) return 0;
    cf_cl_gemm_fast_choice c = {g->fast.rm, g->fast.rn, g->fast.bk, g->fast.split, g->fast.wg};
    const int valid = cf_cl_gemm_fast_choice_valid_form(&c, dev->fast_mma);
    const size_t need = valid ? cf_cl_gemm_fast_local_bytes_mma(&c, dev->mma_tf32) : 0;
    int found = valid && need <= dev->local_mem && (size_t)c.wg * c.wg <= dev->max_group;
    if (!found) {
        if (why && why_len && !valid)
            snprintf(why, why_len,
                     "gemm M=%d N=%d K=%d %c%c: the tuning file's fast choice (%s, rm %d, rn %d, "
                     "bk %d, wg %d, split %d) is no variant of the kernel's %s form (%s); the "
                     "built-in rule decides",
                     M, N, K, ta ? 'T' : 'N', tb ? 'T' : 'N', g->label, c.rm, c.rn, c.bk, c.wg,
                     c.split, cf_precision_name(dev->fast_mma),
                     cf_cl_gemm_fast_valid_text(dev->fast_mma));
        else if (why && why_len)
            snprintf(why, why_len,
                     "gemm M=%d N=%d K=%d %c%c: the tuning file's fast choice (%s, rm %d, rn %d, "
                     "bk %d, wg %d, split %d) does not fit %s (it needs %zu bytes "
                     "of local memory, the device has %llu; work-groups up to %zu); the built-in "
                     "rule decides",
                     M, N, K, ta ? 'T' : 'N', tb ? 'T' : 'N', g->label, c.rm, c.rn, c.bk, c.wg,
                     c.split, dev->name,
                     need,
                     (unsigned long long)dev->local_mem, dev->max_group);
        return 0;
    }
    if (out) *out = c;
    if (exact) *exact = ex;
    return 1;
}

/* The path from the parts: the tiled parameters (their source and the tuning file's path) and the
 * tuning file's fast choice. */
static void decide(const cf_cl_plan_device *dev, int M, int N, int K, int ta, int tb, int batched,
                   int causal,
                   const cf_cl_gemm_params *native, int tuned_found, int tuned_exact,
                   const cf_cl_gemm_fast_choice *tuned, cf_cl_gemm_plan *out) {
    memset(out, 0, sizeof *out);
    out->native = *native;
    out->path = CF_PLAN_NATIVE;
    /* the register-blocked kernel: plain products only, never when CLBlast was asked for by name */
    int want = 0;
    if (dev->gemm_round && !batched && !causal && K > 0 && M > 0 && N > 0 && !dev->fast_broken) {
        /* precision bf16 / fp16: only this kernel rounds its inputs, so it takes every plain
         * product on every device, whatever the GEMM settings say */
        want = 1;
    } else if (dev->gemm_mode != CF_GEMM_CLBLAST && !batched && !causal && K > 0 && M > 0 &&
               N > 0 && !dev->fast_broken) {
        if (dev->fast_mode >= 0) {
            /* cf_backend_options.gemm_fast (CF_GEMM_FAST): 0 never, 1 every plain product
             * (whatever the device and size; for tests on CPU devices) */
            want = dev->fast_mode;
        } else if (!dev->gpu) {
            want = 0; /* on CPU devices (PoCL) the tiled kernel and CLBlast do as well */
        } else if (dev->mma_tf32) {
            /* precision tf32: only this kernel has the tensor-core form; a tf32 tuning file that
             * measured the tiled kernel or CLBlast faster for the shape keeps it there */
            want = tuned_found || !dev->tuner || !native->source ||
                   strcmp(native->source, "rule") == 0;
        } else if (tuned_found) {
            want = 1; /* a tuning file measured this kernel fastest for the shape: any size */
        } else {
            /* Large products only, K >= 64: from 2^27 multiply-adds against the tiled kernel
             * (512^3 on an H200: 7.4 against 5.5 TFLOP/s), from 2^28 when CLBlast would take the
             * product (512^3: 9.6 TFLOP/s with CLBlast; 1024^3: 29.8 here, 15.0 with CLBlast).
             * Every product of the model's linear layers at 4096 rows is above both, the weight
             * gradients included (small M x N, long K: split-K, 2.5 to 10 times CLBlast's
             * speed). */
            const int clblast_next =
                dev->have_clblast && dev->gemm_mode != CF_GEMM_NATIVE && !dev->clblast_failed;
            const long long min_macs = clblast_next ? (1ll << 28) : (1ll << 27);
            want = (long long)M * N * K >= min_macs && K >= 64;
            /* a tuner (tuning file) that measured this shape keeps it on the path it chose */
            if (want && dev->tuner && (!native->source || strcmp(native->source, "rule") != 0))
                want = 0;
        }
    }
    if (want) {
        /* (tuned_found: an entry of this run's precision, cf_cl_plan_tuned_fast) */
        if (tuned_found) {
            out->fast = *tuned;
            out->fast_source = tuned_exact ? "from the tuning file"
                                           : "from the tuning file, same bucket";
            out->path = CF_PLAN_FAST;
        } else if (cf_cl_gemm_fast_rule_form(M, N, K, ta, tb, dev->compute_units, dev->local_mem,
                                             dev->fast_wide, dev->fast_mma, &out->fast)) {
            out->path = CF_PLAN_FAST;
        } else {
            /* no variant fits this device's local memory: the other paths, silently */
            memset(&out->fast, 0, sizeof out->fast);
        }
        /* precision bf16 / fp16 on an engine with the GEMM on half operands: that kernel, the
         * register-blocked choice kept as its fallback */
        if (out->path == CF_PLAN_FAST && cf_cl_plan_half_takes(dev->half_mode, M, N, K))
            out->path = CF_PLAN_HALF;
        if (out->path != CF_PLAN_NATIVE) return;
    }
    /* CLBlast for plain products when compiled in and not switched off or failed. Batched products
     * (attention) stay on the tiled kernel: it skips the blocks that causality makes zero, which
     * CLBlast cannot, and CLBlast's batched kernels would be one more set to compile at start-up.
     * A tuning file may have measured the tiled kernel faster for the shape. */
    if (dev->have_clblast && dev->gemm_mode != CF_GEMM_NATIVE && !dev->clblast_failed && K > 0 &&
        !batched &&
        !(dev->gemm_mode == CF_GEMM_AUTO && dev->tuner && native->path == CF_GEMM_NATIVE))
        out->path = CF_PLAN_CLBLAST;
}

void cf_cl_plan_gemm_rule(const cf_cl_plan_device *dev, int M, int N, int K, int ta, int tb,
                          int batch, int causal, cf_cl_gemm_plan *out) {
    cf_cl_gemm_params native;
    char warn[768];
    cf_cl_plan_native_params(dev, M, N, K, ta, tb, &native, warn, sizeof warn);
    cf_cl_gemm_fast_choice tuned = {0, 0, 0, 0, 0};
    int exact = 0;
    int found = cf_cl_plan_tuned_fast(dev, M, N, K, ta, tb, &tuned, &exact, NULL, 0);
    decide(dev, M, N, K, ta, tb, batch != 1, causal, &native, found, exact, &tuned, out);
}

/* The tuning file's fast choice for a shape, memoised per tuning file (one debug line when its
 * recorded choice does not fit). */
static int tuned_memo(cf_cl_ctx *ctx, const cf_cl_plan_device *dev, int M, int N, int K, int ta,
                      int tb, cf_cl_gemm_fast_choice *out, int *exact) {
    if (!dev->tuning) return 0;
    struct cf_cl_plan_state *st = plan_state(ctx);
    if (st)
        for (int i = 0; i < st->n_tuned; i++) {
            const plan_tuned_entry *e = &st->tuned[i];
            if (e->M != M || e->N != N || e->K != K || e->ta != ta || e->tb != tb ||
                e->tuning != dev->tuning)
                continue;
            if (e->found) {
                *out = e->choice;
                *exact = e->exact;
            }
            return e->found;
        }
    char why[512];
    cf_cl_gemm_fast_choice c = {0, 0, 0, 0, 0};
    int ex = 0;
    int found = cf_cl_plan_tuned_fast(dev, M, N, K, ta, tb, &c, &ex, why, sizeof why);
    if (why[0]) CF_DEBUG("%s", why);
    if (st && st->n_tuned < PLAN_MAX_GEMM) {
        plan_tuned_entry *e = &st->tuned[st->n_tuned++];
        e->M = M;
        e->N = N;
        e->K = K;
        e->ta = ta;
        e->tb = tb;
        e->tuning = dev->tuning;
        e->found = found;
        e->exact = ex;
        e->choice = c;
    }
    if (found) {
        *out = c;
        *exact = ex;
    }
    return found;
}

static void log_gemm(const cf_cl_gemm_desc *d, const cf_cl_gemm_plan *p) {
    char what[160];
    if (p->path == CF_PLAN_FAST || p->path == CF_PLAN_HALF)
        snprintf(what, sizeof what, "%s %dx%d bk%d split%d (%s)",
                 p->path == CF_PLAN_HALF ? "half, else fast" : "fast", p->fast.wg * p->fast.rm,
                 p->fast.wg * p->fast.rn, p->fast.bk, p->fast.split,
                 p->fast_source ? p->fast_source + strlen("from the ") : "rule");
    else if (p->path == CF_PLAN_CLBLAST)
        snprintf(what, sizeof what, "clblast");
    else
        snprintf(what, sizeof what, "native %dx%d wpt%d tk%d vw%d pad%d (%s)", p->native.tile,
                 p->native.tile, p->native.wpt, p->native.tk, p->native.vw, p->native.pad,
                 p->native.source ? p->native.source : "?");
    const int batch = d->outer * d->inner;
    CF_DEBUG("plan: gemm %d %d %d %c%c%s%s -> %s", d->M, d->N, d->K, d->ta ? 'T' : 'N',
             d->tb ? 'T' : 'N', batch != 1 ? " batched" : "", d->causal ? " causal" : "", what);
}

int cf_cl_plan_gemm(cf_cl_ctx *ctx, const cf_cl_gemm_desc *d, cf_cl_gemm_plan *out) {
    const int batched = d->outer * d->inner != 1, causal = d->causal != 0;
    struct cf_cl_plan_state *st = plan_state(ctx);
    plan_gemm_entry *e = NULL;
    if (st)
        for (int i = 0; i < st->n_gemm; i++) {
            plan_gemm_entry *x = &st->gemm[i];
            if (x->M == d->M && x->N == d->N && x->K == d->K && x->ta == d->ta && x->tb == d->tb &&
                x->batched == batched && x->causal == causal) {
                e = x;
                break;
            }
        }
    if (e && e->gen == ctx->plan_gen) {
        *out = e->plan;
        return CF_OK;
    }
    cf_cl_plan_device dev;
    cf_cl_plan_device_of(ctx, &dev);
    cf_cl_gemm_params native;
    CF_TRY(cf_cl_gemm_params_lookup(ctx, d->M, d->N, d->K, d->ta, d->tb, &native));
    cf_cl_gemm_fast_choice tuned = {0, 0, 0, 0, 0};
    int exact = 0, found = 0;
    /* asked only where the register-blocked kernel may run (the lookup may log): with bf16 /
     * fp16 every plain product on every device (decide()), else as the GEMM settings say */
    if (!batched && !causal && d->K > 0 && d->M > 0 && d->N > 0 && !dev.fast_broken &&
        (dev.gemm_round || (dev.gemm_mode != CF_GEMM_CLBLAST &&
                            (dev.fast_mode == 1 || (dev.fast_mode < 0 && dev.gpu)))))
        found = tuned_memo(ctx, &dev, d->M, d->N, d->K, d->ta, d->tb, &tuned, &exact);
    decide(&dev, d->M, d->N, d->K, d->ta, d->tb, batched, causal, &native, found, exact, &tuned,
           out);
    if (!e && st && st->n_gemm < PLAN_MAX_GEMM) {
        e = &st->gemm[st->n_gemm++];
        memset(e, 0, sizeof *e);
        e->M = d->M;
        e->N = d->N;
        e->K = d->K;
        e->ta = d->ta;
        e->tb = d->tb;
        e->batched = batched;
        e->causal = causal;
    }
    if (e) {
        e->gen = ctx->plan_gen;
        e->plan = *out;
        if (e->logged != out->path + 1) {
            e->logged = out->path + 1;
            log_gemm(d, out);
        }
    } else {
        log_gemm(d, out);
    }
    return CF_OK;
}

/* ---- attention ---------------------------------------------------------------------------------
 * The block sizes: the same formulas as cl_kernels/attention.cl: RD head dimensions per work-item,
 * row tiles of LDK floats, [k][m] tiles of LDA, chunks of BK = 32. */

size_t cf_cl_attention_local_bytes(int hs, int ty) {
    const size_t rd = (size_t)(hs + 15) / 16, ldk = 16 * rd + 4, lda = 4 * (size_t)ty + 4;
    const size_t bm = 4 * (size_t)ty, bk = 32;
    const size_t rows = (bm + bk) * ldk + bk * lda; /* forward, backward over query rows */
    const size_t keys = 2 * bk * (lda + ldk);        /* backward over keys */
    return (rows > keys ? rows : keys) * 4;
}

void cf_cl_plan_attention_rule(const cf_cl_plan_device *dev, int mode, int C, int NH,
                               cf_cl_attention_plan *out) {
    memset(out, 0, sizeof *out);
    const int hs = NH > 0 ? C / NH : 0;
    out->hs = hs;
    out->why = "";
    if (mode == CF_ATT_GEMM) {
        out->why = "CF_ATTENTION=gemm";
        return;
    }
    if (hs > CF_CL_ATT_MAX_HS || hs < 1 || hs * NH != C) {
        out->why = "head size above 64";
        return;
    }
    /* CPU devices run a group's work-items one after another, the register tiles as memory: on
     * PoCL (2 cores, wiki_cache_optimized's attention at batch 4) the fused kernels took 66 and
     * 100-116 ms against 47-61 and 50 ms for the batched GEMMs, forward and backward */
    if (mode == CF_ATT_AUTO && !dev->gpu) {
        out->why = "CPU device: the batched GEMMs are faster there; CF_ATTENTION=fused overrides";
        return;
    }
    /* groups of 256 (blocks of 64 rows), else of 128 (32 rows) where the device's local memory or
     * work-group limit needs it */
    for (int ty = 16; ty >= 8; ty /= 2) {
        if ((size_t)(16 * ty) > dev->max_group ||
            cf_cl_attention_local_bytes(hs, ty) > dev->local_mem)
            continue;
        out->ty[out->n_ty++] = ty;
    }
    out->fused = out->n_ty > 0;
    if (!out->fused) out->why = "not enough local memory or work-group size on this device";
}

void cf_cl_plan_attention(cf_cl_ctx *ctx, int mode, int C, int NH, cf_cl_attention_plan *out) {
    struct cf_cl_plan_state *st = plan_state(ctx);
    if (st)
        for (int i = 0; i < st->n_att; i++)
            if (st->att[i].C == C && st->att[i].NH == NH && st->att[i].mode == mode &&
                st->att[i].max_group == ctx->dev.max_group &&
                st->att[i].local_mem == (size_t)ctx->dev.local_mem) {
                *out = st->att[i].plan;
                return;
            }
    cf_cl_plan_device dev;
    cf_cl_plan_device_of(ctx, &dev);
    cf_cl_plan_attention_rule(&dev, mode, C, NH, out);
    if (out->fused)
        CF_DEBUG("plan: attention C=%d NH=%d hs=%d -> fused (groups of %d%s)", C, NH, out->hs,
                 16 * out->ty[0], out->n_ty > 1 ? ", then 128" : "");
    else
        CF_DEBUG("plan: attention C=%d NH=%d hs=%d -> batched GEMMs (%s)", C, NH, out->hs,
                 out->why);
    if (st && st->n_att < PLAN_MAX_ATT) {
        st->att[st->n_att].C = C;
        st->att[st->n_att].NH = NH;
        st->att[st->n_att].mode = mode;
        st->att[st->n_att].max_group = ctx->dev.max_group;
        st->att[st->n_att].local_mem = (size_t)ctx->dev.local_mem;
        st->att[st->n_att].plan = *out;
        st->n_att++;
    }
}

/* ---- the flash backward through the matrix attention ops ---------------------------------------- */

int cf_cl_plan_flash_matrix_considered(int flash_kernel, int gpu, int failed,
                                       const cf_attn_desc *d, int has_doc) {
    if (has_doc || (d->window > 0 && d->window < d->T)) return 0;
    if (flash_kernel == CF_FLASH_K_MATRIX) return 1;
    return flash_kernel == CF_FLASH_K_AUTO && gpu && !failed;
}

int cf_cl_plan_flash_matrix_split(const cf_attn_desc *d, int named, int fused, size_t budget,
                                  uint64_t global_mem, uint64_t max_alloc, cf_cl_flash_split *m) {
    m->fused = fused != 0;
    m->parts = m->fused ? 2 : 3;
    /* the default budget: 1/24 of the device's memory (about 3.3 GiB on an H100: GPT-2 124M at
     * T 8192 in two ranges of 6 heads, as a 3.3 GB budget gave in callM, whose backward took 14.8
     * ms a layer against 16.3 in three ranges of 4 under 1/32, and 22.8 with the tiled kernels;
     * bench/results/h100/session11/callM). One buffer holds the parts and the output copy, so the
     * parts get at most the largest allocation less the copy. */
    const size_t out_bytes = (size_t)d->B * d->T * (size_t)d->NH * d->hs * sizeof(float);
    const size_t cap = max_alloc > out_bytes ? (size_t)(max_alloc - out_bytes) : 0;
    size_t b = budget ? budget : (size_t)(global_mem / 24);
    if (b > cap) b = cap;
    const size_t head = (size_t)m->parts * d->T * d->T * sizeof(float);
    const size_t batch = head * d->NH;
    m->nb = b / batch;
    m->nh = d->NH;
    m->fits = m->nb >= 1;
    if (m->nb < 1) {
        m->nb = 1;
        if (m->fused && d->KVH == d->NH) {
            m->nh = b / head;
            m->fits = m->nh >= 1;
            if (m->nh < 1) m->nh = 1;
            /* as few ranges as that takes, of even sizes (12 heads in 3 of 4, not 5, 5, 2) */
            const size_t ranges = (d->NH + m->nh - 1) / m->nh;
            m->nh = (d->NH + ranges - 1) / ranges;
        }
    }
    if (m->nb > (size_t)d->B) m->nb = (size_t)d->B;
    /* auto: the fused kernels only (a backward through gemm.cl's batched GEMMs took 3.275 ms on
     * an H100 at GPT-2 124M's shapes against the tiled kernels' 3.111: BENCHMARKS.md; the matrix
     * ops run those GEMMs for head sizes above 64, or under CF_ATTENTION=gemm), where a chunk
     * fits the budget, and head ranges of at least 4 heads (or all of them): 4 and 6 were
     * measured faster than the tiled kernels (callM; at head size 64 and 12 heads the matrix
     * ops' forward and backward together took 2.05 ms against the tiled backward's 3.11 at T
     * 1024, batch 8, and 30 ms against 44 at T 4096: BENCHMARKS.md "Flash backward through the
     * matrix ops"); a range of 1 or 2 heads at T 8192 would start fewer work-groups than an H100
     * has multiprocessors, not measured */
    return named || (m->fused && m->fits && (m->nh == (size_t)d->NH || m->nh >= 4));
}
