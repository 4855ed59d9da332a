/* clformer: the CPU backend's ops other than GEMM and attention (bias, encoder, LayerNorm, GELU,
 * residual, cross-entropy, reductions, AdamW): OpenMP-parallel, vectorisable loops. Attention is
 * in cpu_attention.c.
 *
 * Determinism: every output element is produced by exactly one thread with a fixed order of
 * additions that does not depend on the thread count. Sums over rows into a shared vector
 * (dbias, dweight, the dwte scatter) are split by column ranges, each range walking all rows in
 * order; sums over a whole tensor go through fixed-size chunks combined in order. No atomics. */

/* GCC: vectorise loops with float compares (no code here inspects floating-point exception
 * flags; Clang assumes this by default), and let a * b + c become one FMA (ISO C mode turns
 * contraction off; FMAs double the inner loops' throughput, and results stay deterministic for
 * a given build). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#pragma GCC optimize("fp-contract=fast")
#endif

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "backend/cpu/cpu_math.h"

/* Column ranges for "sum over rows" reductions: 64 floats = four cache lines, so two threads
 * never write the same line and each range's accumulators fit in registers. */
#define CF_COLS 64
/* Elements per partial sum of reduce_sum (fixed, so the result does not depend on threads). */
#define CF_SUM_CHUNK 16384

#define CF_GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define CF_GELU_A 0.044715f

/* ---- bias ----------------------------------------------------------------------------------- */

int cf_cpu_add_bias(cf_backend *be, cf_view out_v, cf_view bias_v, int N, int OC) {
    CF_CPU_NEED(out_v, cf_zmul(N, OC), "add_bias", "out");
    CF_CPU_NEED(bias_v, (size_t)OC, "add_bias", "bias");
    float *out = cf_cpu_f32(out_v);
    const float *bias = cf_cpu_f32(bias_v);
#pragma omp parallel for schedule(static) if (cf_zmul(N, OC) >= CF_CPU_PAR_MIN)
    for (int i = 0; i < N; i++) {
        float *o = out + cf_zmul(i, OC);
#pragma omp simd
        for (int j = 0; j < OC; j++) o[j] += bias[j];
    }
    return CF_OK;
}

int cf_cpu_bias_backward(cf_backend *be, cf_view dbias_v, cf_view dout_v, int N, int OC) {
    CF_CPU_NEED(dbias_v, (size_t)OC, "bias_backward", "dbias");
    CF_CPU_NEED(dout_v, cf_zmul(N, OC), "bias_backward", "dout");
    float *dbias = cf_cpu_f32(dbias_v);
    const float *dout = cf_cpu_f32(dout_v);
    const int nr = (OC + CF_COLS - 1) / CF_COLS;
#pragma omp parallel for schedule(static) if (cf_zmul(N, OC) >= CF_CPU_PAR_MIN)
    for (int r = 0; r < nr; r++) {
        const int c0 = r * CF_COLS, w = OC - c0 < CF_COLS ? OC - c0 : CF_COLS;
        float acc[CF_COLS] = {0};
        for (int i = 0; i < N; i++) {
            const float *d = dout + cf_zmul(i, OC) + c0;
#pragma omp simd
            for (int j = 0; j < w; j++) acc[j] += d[j];
        }
        for (int j = 0; j < w; j++) dbias[c0 + j] += acc[j];
    }
    return CF_OK;
}

/* ---- encoder -------------------------------------------------------------------------------- */

/* Tokens must index rows that exist in the embedding buffer (V is not passed to the op, so
 * the bound is the buffer's extent from the view). */
static int cf_cpu_check_tokens(const int32_t *tokens, int B, int T, int C, cf_view wte,
                               const char *op) {
    const size_t rows = (wte.buf->nbytes / sizeof(float) - wte.off) / (size_t)C;
    for (int i = 0; i < B * T; i++)
        if (tokens[i] < 0 || (size_t)tokens[i] >= rows) {
            CF_ERROR("cpu %s: token %d at (b=%d, t=%d) is outside the embedding table "
                     "(0..%zu); check the tokenizer's vocab_size against the model's",
                     op, tokens[i], i / T, i % T, rows - 1);
            return CF_ERR_INVALID;
        }
    return CF_OK;
}

int cf_cpu_encoder_forward(cf_backend *be, cf_view out_v, cf_view tokens_v, cf_view wte_v,
                           cf_view wpe_v, int B, int T, int C) {
    const size_t BT = cf_zmul(B, T);
    CF_CPU_NEED(out_v, BT * C, "encoder_forward", "out");
    CF_CPU_NEED(tokens_v, BT, "encoder_forward", "tokens");
    CF_CPU_NEED(wte_v, (size_t)C, "encoder_forward", "wte");
    CF_CPU_NEED(wpe_v, cf_zmul(T, C), "encoder_forward", "wpe");
    const int32_t *tokens = cf_cpu_i32(tokens_v);
    CF_TRY(cf_cpu_check_tokens(tokens, B, T, C, wte_v, "encoder_forward"));
    float *out = cf_cpu_f32(out_v);
    const float *wte = cf_cpu_f32(wte_v), *wpe = cf_cpu_f32(wpe_v);
#pragma omp parallel for schedule(static) if (BT * C >= CF_CPU_PAR_MIN)
    for (int i = 0; i < B * T; i++) {
        float *o = out + cf_zmul(i, C);
        const float *e = wte + cf_zmul(tokens[i], C), *p = wpe + cf_zmul(i % T, C);
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
    }
    return CF_OK;
}

int cf_cpu_encoder_backward(cf_backend *be, cf_view dwte_v, cf_view dwpe_v, cf_view dout_v,
                            cf_view tokens_v, int B, int T, int C) {
    const size_t BT = cf_zmul(B, T);
    CF_CPU_NEED(dwte_v, (size_t)C, "encoder_backward", "dwte");
    CF_CPU_NEED(dwpe_v, cf_zmul(T, C), "encoder_backward", "dwpe");
    CF_CPU_NEED(dout_v, BT * C, "encoder_backward", "dout");
    CF_CPU_NEED(tokens_v, BT, "encoder_backward", "tokens");
    const int32_t *tokens = cf_cpu_i32(tokens_v);
    CF_TRY(cf_cpu_check_tokens(tokens, B, T, C, dwte_v, "encoder_backward"));
    float *dwte = cf_cpu_f32(dwte_v), *dwpe = cf_cpu_f32(dwpe_v);
    const float *dout = cf_cpu_f32(dout_v);
    const int nr = (C + CF_COLS - 1) / CF_COLS;
    const int par = BT * C >= CF_CPU_PAR_MIN;
#pragma omp parallel if (par)
    {
        /* dwpe(T,C): position t sums its B rows in batch order */
#pragma omp for schedule(static)
        for (int t = 0; t < T; t++) {
            float *dp = dwpe + cf_zmul(t, C);
            for (int b = 0; b < B; b++) {
                const float *d = dout + (cf_zmul(b, T) + t) * C;
#pragma omp simd
                for (int c = 0; c < C; c++) dp[c] += d[c];
            }
        }
        /* dwte(V,C): the scatter by token, split by column ranges, rows in (b,t) order, so
         * repeated tokens always add up in the same order */
#pragma omp for schedule(static)
        for (int r = 0; r < nr; r++) {
            const int c0 = r * CF_COLS, w = C - c0 < CF_COLS ? C - c0 : CF_COLS;
            for (size_t i = 0; i < BT; i++) {
                float *dw = dwte + (size_t)tokens[i] * C + c0;
                const float *d = dout + i * C + c0;
#pragma omp simd
                for (int j = 0; j < w; j++) dw[j] += d[j];
            }
        }
    }
    return CF_OK;
}

/* ---- LayerNorm ------------------------------------------------------------------------------ */

int cf_cpu_layernorm_forward(cf_backend *be, cf_view out_v, cf_view mean_v, cf_view rstd_v,
                             cf_view inp_v, cf_view weight_v, cf_view bias_v, int N, int C) {
    const size_t NC = cf_zmul(N, C);
    CF_CPU_NEED(out_v, NC, "layernorm_forward", "out");
    CF_CPU_NEED(inp_v, NC, "layernorm_forward", "inp");
    CF_CPU_NEED(weight_v, (size_t)C, "layernorm_forward", "weight");
    CF_CPU_NEED(bias_v, (size_t)C, "layernorm_forward", "bias");
    /* mean and rstd may be left out (NULL buffer) when no backward follows */
    if (mean_v.buf) CF_CPU_NEED(mean_v, (size_t)N, "layernorm_forward", "mean");
    if (rstd_v.buf) CF_CPU_NEED(rstd_v, (size_t)N, "layernorm_forward", "rstd");
    float *out = cf_cpu_f32(out_v);
    float *mean = mean_v.buf ? cf_cpu_f32(mean_v) : NULL;
    float *rstd = rstd_v.buf ? cf_cpu_f32(rstd_v) : NULL;
    const float *inp = cf_cpu_f32(inp_v), *w = cf_cpu_f32(weight_v), *bb = cf_cpu_f32(bias_v);
#pragma omp parallel for schedule(static) if (NC >= CF_CPU_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *x = inp + cf_zmul(i, C);
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < C; c++) s += x[c];
        const float m = s / (float)C;
        float v = 0.0f;
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++) {
            const float d = x[c] - m;
            v += d * d;
        }
        const float r = 1.0f / sqrtf(v / (float)C + 1e-5f);
        float *o = out + cf_zmul(i, C);
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * w[c] + bb[c];
        if (mean) mean[i] = m;
        if (rstd) rstd[i] = r;
    }
    return CF_OK;
}

int cf_cpu_layernorm_backward(cf_backend *be, cf_view dinp_v, cf_view dweight_v, cf_view dbias_v,
                              cf_view dout_v, cf_view inp_v, cf_view weight_v, cf_view mean_v,
                              cf_view rstd_v, int N, int C) {
    const size_t NC = cf_zmul(N, C);
    CF_CPU_NEED(dinp_v, NC, "layernorm_backward", "dinp");
    CF_CPU_NEED(dweight_v, (size_t)C, "layernorm_backward", "dweight");
    CF_CPU_NEED(dbias_v, (size_t)C, "layernorm_backward", "dbias");
    CF_CPU_NEED(dout_v, NC, "layernorm_backward", "dout");
    CF_CPU_NEED(inp_v, NC, "layernorm_backward", "inp");
    CF_CPU_NEED(weight_v, (size_t)C, "layernorm_backward", "weight");
    CF_CPU_NEED(mean_v, (size_t)N, "layernorm_backward", "mean");
    CF_CPU_NEED(rstd_v, (size_t)N, "layernorm_backward", "rstd");
    float *dinp = cf_cpu_f32(dinp_v), *dweight = cf_cpu_f32(dweight_v);
    float *dbias = cf_cpu_f32(dbias_v);
    const float *dout = cf_cpu_f32(dout_v), *inp = cf_cpu_f32(inp_v);
    const float *w = cf_cpu_f32(weight_v), *mean = cf_cpu_f32(mean_v);
    const float *rstd = cf_cpu_f32(rstd_v);
    const int nr = (C + CF_COLS - 1) / CF_COLS;
#pragma omp parallel if (NC >= CF_CPU_PAR_MIN)
    {
        /* dweight(C) += sum_i norm_i * dout_i, dbias(C) += sum_i dout_i: column ranges, rows in
         * order (done first, so it reads dout before anything writes dinp) */
#pragma omp for schedule(static)
        for (int r = 0; r < nr; r++) {
            const int c0 = r * CF_COLS, cw = C - c0 < CF_COLS ? C - c0 : CF_COLS;
            float aw[CF_COLS] = {0}, ab[CF_COLS] = {0};
            for (int i = 0; i < N; i++) {
                const float *x = inp + cf_zmul(i, C) + c0, *d = dout + cf_zmul(i, C) + c0;
                const float m = mean[i], rs = rstd[i];
#pragma omp simd
                for (int j = 0; j < cw; j++) {
                    aw[j] += (x[j] - m) * rs * d[j];
                    ab[j] += d[j];
                }
            }
            for (int j = 0; j < cw; j++) {
                dweight[c0 + j] += aw[j];
                dbias[c0 + j] += ab[j];
            }
        }
        /* dinp(N,C) += (w*dout - mean(w*dout) - norm * mean(w*dout*norm)) * rstd, per row */
#pragma omp for schedule(static)
        for (int i = 0; i < N; i++) {
            const float *x = inp + cf_zmul(i, C), *d = dout + cf_zmul(i, C);
            float *di = dinp + cf_zmul(i, C);
            const float m = mean[i], rs = rstd[i];
            float s1 = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s1, s2)
            for (int c = 0; c < C; c++) {
                const float dn = w[c] * d[c];
                s1 += dn;
                s2 += dn * (x[c] - m) * rs;
            }
            s1 /= (float)C;
            s2 /= (float)C;
#pragma omp simd
            for (int c = 0; c < C; c++) {
                const float norm = (x[c] - m) * rs;
                di[c] += (w[c] * d[c] - s1 - norm * s2) * rs;
            }
        }
    }
    return CF_OK;
}

/* ---- GELU, residual, axpy ------------------------------------------------------------------- */

/* gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). With 1 + tanh(u) =
 * 2 / (1 + exp(-2u)) this is x * s, s = sigmoid(2u), which needs one exp and no branches;
 * d/dx = s + 2 x s (1 - s) u'. */
int cf_cpu_gelu_forward(cf_backend *be, cf_view out_v, cf_view inp_v, size_t n) {
    CF_CPU_NEED(out_v, n, "gelu_forward", "out");
    CF_CPU_NEED(inp_v, n, "gelu_forward", "inp");
    float *out = cf_cpu_f32(out_v);
    const float *inp = cf_cpu_f32(inp_v);
#pragma omp parallel for simd schedule(static) if (n >= CF_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        const float u = CF_GELU_K * (x + CF_GELU_A * x * x * x);
        out[i] = x / (1.0f + cf_cpu_expf(-2.0f * u));
    }
    return CF_OK;
}

int cf_cpu_gelu_backward(cf_backend *be, cf_view dinp_v, cf_view inp_v, cf_view dout_v,
                         size_t n) {
    CF_CPU_NEED(dinp_v, n, "gelu_backward", "dinp");
    CF_CPU_NEED(inp_v, n, "gelu_backward", "inp");
    CF_CPU_NEED(dout_v, n, "gelu_backward", "dout");
    float *dinp = cf_cpu_f32(dinp_v);
    const float *inp = cf_cpu_f32(inp_v), *dout = cf_cpu_f32(dout_v);
#pragma omp parallel for simd schedule(static) if (n >= CF_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        const float u = CF_GELU_K * (x + CF_GELU_A * x * x * x);
        const float du = CF_GELU_K * (1.0f + 3.0f * CF_GELU_A * x * x);
        const float s = 1.0f / (1.0f + cf_cpu_expf(-2.0f * u));
        dinp[i] += (s + 2.0f * x * s * (1.0f - s) * du) * dout[i];
    }
    return CF_OK;
}

int cf_cpu_residual_forward(cf_backend *be, cf_view out_v, cf_view a_v, cf_view b_v, size_t n) {
    CF_CPU_NEED(out_v, n, "residual_forward", "out");
    CF_CPU_NEED(a_v, n, "residual_forward", "a");
    CF_CPU_NEED(b_v, n, "residual_forward", "b");
    float *out = cf_cpu_f32(out_v);
    const float *a = cf_cpu_f32(a_v), *b = cf_cpu_f32(b_v);
#pragma omp parallel for simd schedule(static) if (n >= CF_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    return CF_OK;
}

int cf_cpu_axpy(cf_backend *be, cf_view y_v, cf_view x_v, float alpha, size_t n) {
    CF_CPU_NEED(y_v, n, "axpy", "y");
    CF_CPU_NEED(x_v, n, "axpy", "x");
    float *y = cf_cpu_f32(y_v);
    const float *x = cf_cpu_f32(x_v);
#pragma omp parallel for simd schedule(static) if (n >= CF_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
    return CF_OK;
}

/* ---- cross-entropy -------------------------------------------------------------------------- */

static int cf_cpu_check_targets(const int32_t *targets, int N, int V, const char *op) {
    for (int i = 0; i < N; i++)
        if (targets[i] >= V) {
            CF_ERROR("cpu %s: target %d at row %d is not below vocab_size %d; check the data "
                     "against the tokenizer",
                     op, targets[i], i, V);
            return CF_ERR_INVALID;
        }
    return CF_OK;
}

/* max of a row and sum of exp(x - max), with exp(x - max) stored into e when e != NULL
 * (e may be x itself) */
static inline float cf_cpu_softmax_row(const float *x, float *e, int V, float *sum_out) {
    const float maxv = cf_cpu_maxf(x, V);
    float sum = 0.0f;
    if (e) {
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) {
            const float ex = cf_cpu_expf(x[j] - maxv);
            e[j] = ex;
            sum += ex;
        }
    } else {
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) sum += cf_cpu_expf(x[j] - maxv);
    }
    *sum_out = sum;
    return maxv;
}

int cf_cpu_crossentropy_forward(cf_backend *be, cf_view losses_v, cf_view logits_v,
                                cf_view targets_v, int N, int V) {
    CF_CPU_NEED(losses_v, (size_t)N, "crossentropy_forward", "losses");
    CF_CPU_NEED(logits_v, cf_zmul(N, V), "crossentropy_forward", "logits");
    CF_CPU_NEED(targets_v, (size_t)N, "crossentropy_forward", "targets");
    const int32_t *targets = cf_cpu_i32(targets_v);
    CF_TRY(cf_cpu_check_targets(targets, N, V, "crossentropy_forward"));
    float *losses = cf_cpu_f32(losses_v);
    const float *logits = cf_cpu_f32(logits_v);
#pragma omp parallel for schedule(static) if (cf_zmul(N, V) >= CF_CPU_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const int tg = targets[i];
        if (tg < 0) {
            losses[i] = 0.0f;
            continue;
        }
        const float *x = logits + cf_zmul(i, V);
        float sum;
        const float maxv = cf_cpu_softmax_row(x, NULL, V, &sum);
        losses[i] = logf(sum) - (x[tg] - maxv);
    }
    return CF_OK;
}

int cf_cpu_crossentropy_fused(cf_backend *be, cf_view losses_v, cf_view dlogits_v,
                              cf_view logits_v, cf_view targets_v, int N, int V, float dloss) {
    CF_CPU_NEED(losses_v, (size_t)N, "crossentropy_fused", "losses");
    CF_CPU_NEED(dlogits_v, cf_zmul(N, V), "crossentropy_fused", "dlogits");
    CF_CPU_NEED(logits_v, cf_zmul(N, V), "crossentropy_fused", "logits");
    CF_CPU_NEED(targets_v, (size_t)N, "crossentropy_fused", "targets");
    const int32_t *targets = cf_cpu_i32(targets_v);
    CF_TRY(cf_cpu_check_targets(targets, N, V, "crossentropy_fused"));
    float *losses = cf_cpu_f32(losses_v), *dlogits = cf_cpu_f32(dlogits_v);
    const float *logits = cf_cpu_f32(logits_v);
#pragma omp parallel for schedule(static) if (cf_zmul(N, V) >= CF_CPU_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const int tg = targets[i];
        float *d = dlogits + cf_zmul(i, V);
        if (tg < 0) {
            losses[i] = 0.0f;
            memset(d, 0, sizeof(float) * (size_t)V);
            continue;
        }
        const float *x = logits + cf_zmul(i, V);
        const float xt = x[tg]; /* read before d (possibly x itself) is overwritten */
        float sum;
        const float maxv = cf_cpu_softmax_row(x, d, V, &sum);
        losses[i] = logf(sum) - (xt - maxv);
        const float s = dloss / sum;
#pragma omp simd
        for (int j = 0; j < V; j++) d[j] *= s;
        d[tg] -= dloss;
    }
    return CF_OK;
}

/* ---- reductions, AdamW ---------------------------------------------------------------------- */

int cf_cpu_reduce_sum(cf_backend *be, cf_view out_v, cf_view x_v, size_t n, int square) {
    CF_CPU_NEED(out_v, 1, "reduce_sum", "out");
    CF_CPU_NEED(x_v, n, "reduce_sum", "x");
    const float *x = cf_cpu_f32(x_v);
    const size_t nchunks = (n + CF_SUM_CHUNK - 1) / CF_SUM_CHUNK;
    double stack_part[64];
    double *part = nchunks <= 64 ? stack_part : malloc(sizeof(double) * nchunks);
    if (!part) {
        CF_ERROR("cpu reduce_sum: could not allocate %zu partial sums", nchunks);
        return CF_ERR_NOMEM;
    }
#pragma omp parallel for schedule(static) if (n >= CF_CPU_PAR_MIN)
    for (size_t c = 0; c < nchunks; c++) {
        const float *xc = x + c * CF_SUM_CHUNK;
        const size_t len = n - c * CF_SUM_CHUNK < CF_SUM_CHUNK ? n - c * CF_SUM_CHUNK : CF_SUM_CHUNK;
        double s = 0.0;
        if (square) {
#pragma omp simd reduction(+ : s)
            for (size_t i = 0; i < len; i++) s += (double)xc[i] * (double)xc[i];
        } else {
#pragma omp simd reduction(+ : s)
            for (size_t i = 0; i < len; i++) s += (double)xc[i];
        }
        part[c] = s;
    }
    double total = 0.0;
    for (size_t c = 0; c < nchunks; c++) total += part[c];
    if (part != stack_part) free(part);
    cf_cpu_f32(out_v)[0] = (float)total;
    return CF_OK;
}

int cf_cpu_adamw(cf_backend *be, cf_view params_v, cf_view grads_v, cf_view m_v, cf_view v_v,
                 size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                 float grad_scale, int t) {
    if (t < 1) {
        CF_ERROR("cpu adamw: step t=%d must be >= 1 (bias correction divides by 1 - beta^t)", t);
        return CF_ERR_INVALID;
    }
    CF_CPU_NEED(params_v, n, "adamw", "params");
    CF_CPU_NEED(grads_v, n, "adamw", "grads");
    CF_CPU_NEED(m_v, n, "adamw", "m");
    CF_CPU_NEED(v_v, n, "adamw", "v");
    float *p = cf_cpu_f32(params_v), *m = cf_cpu_f32(m_v), *v = cf_cpu_f32(v_v);
    const float *g = cf_cpu_f32(grads_v);
    /* bias corrections in double: 1 - beta2^t is tiny for small t and beta2 near 1 */
    const float inv_bc1 = (float)(1.0 / (1.0 - pow((double)beta1, (double)t)));
    const float inv_bc2 = (float)(1.0 / (1.0 - pow((double)beta2, (double)t)));
    const float omb1 = 1.0f - beta1, omb2 = 1.0f - beta2;
    /* Memory-bound (four arrays read, three written). Not marked simd: with errno semantics no
     * compiler vectorises sqrtf, and Clang warns when told to. */
#pragma omp parallel for schedule(static) if (n >= CF_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i] * grad_scale;
        const float mi = beta1 * m[i] + omb1 * gi;
        const float vi = beta2 * v[i] + omb2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const float mhat = mi * inv_bc1, vhat = vi * inv_bc2;
        p[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * p[i]);
    }
    return CF_OK;
}
