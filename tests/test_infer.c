/* clformer test: inference with the KV cache (src/model/infer.h) against the model's full
 * forward, for every option of the family (GPT-2 learned positions, RoPE, GQA/MQA, qk_norm,
 * RMSNorm/LayerNorm with and without biases, SwiGLU/GELU/relu2, shared blocks, tied/untied head,
 * soft-cap) and configs/llama_tiny.json:
 *   - the logits after a chunked prefill and after every decode step equal the full forward's at
 *     that position (relative 1e-5 on the CPU backend, 1e-4 on OpenCL), and again after a reset;
 *   - sequences of different lengths decoded in one batch get the logits they get alone;
 *   - int8 weights: the engine equals the fp32 engine run on the dequantised weights (so the int8
 *     GEMM and embedding lookup are checked against a reference), stays near the fp32 model, and
 *     keeps no f32 copy of a quantised table (the embeddings included);
 *   - RoPE sliding window: with one layer a slid cache equals the full forward over the window;
 *     learned positions refuse to slide or overflow;
 *   - attention_window and doc_mask (the end-of-text id set on the model and on the engine): the
 *     same checks on models with a window (3, 5), a document mask and both, with end-of-text
 *     tokens at a prefill chunk's last row, as a prompt's last token, back to back and while
 *     decoding; and a slid cache of two RoPE layers with a window (and documents) equals the full
 *     forward over the whole sequence (every key a row sees is still in the cache, and the kept
 *     rows were computed with all they saw).
 * Runs on the CPU backend and, when present, the first OpenCL device (CF_REQUIRE_OPENCL=1 makes
 * its absence a failure). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "clformer/config.h"
#include "model/gpt.h"
#include "model/infer.h"

static int g_fail = 0;
/* doc_mask: the end-of-text id of the combo under test (set on the model and on the engine);
 * -1: none */
static int32_t g_eot = -1;
#define TEST_EOT 7

#define OK(call)                                                                                   \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ < 0) {                                                                             \
            printf("FAIL %s:%d: %s returned %d\n", __FILE__, __LINE__, #call, rc_);                \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct {
    const char *name;
    int norm, bias, position, mlp, kv, qk_norm, tie, share, layers;
    float softcap;
} combo;

static double rel_err(const float *a, const float *ref, int n) {
    double num = 0.0, den = 0.0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        num = fmax(num, fabs((double)a[i] - ref[i]));
        den = fmax(den, fabs((double)ref[i]));
    }
    return num / (den + 1e-30);
}

static void check(const char *what, const char *combo_name, const char *dev, int t, double err,
                  double tol) {
    if (err <= tol) return;
    printf("FAIL %s [%s, %s] position %d: relative error %.3g > %.1g\n", what, combo_name, dev, t,
           err, tol);
    g_fail = 1;
}

static void config_of(const combo *k, cf_config *c) {
    cf_config_defaults(c);
    c->d_model = 16;
    c->num_heads = 4;
    c->num_layers = k->layers;
    c->d_ff = 24;
    c->max_length = 16;
    c->vocab_size = 40;
    c->norm = k->norm;
    c->bias = k->bias;
    c->position = k->position;
    c->mlp = k->mlp;
    c->num_kv_heads = k->kv;
    c->qk_norm = k->qk_norm;
    c->tie_embeddings = k->tie;
    c->share_layers = k->share;
    c->logit_softcap = k->softcap;
}

/* host weights of a model of cfg: the init plus noise, so every path carries signal */
static float *make_params(cf_backend *be, const cf_config *cfg, size_t *n) {
    cf_model *m = NULL;
    OK(cf_model_create(be, cfg, 1, 1, 0, &m));
    OK(cf_model_init(m, 5));
    float *p = malloc(sizeof(float) * m->num_params);
    OK(cf_model_get_params(m, p));
    cf_rng rng;
    cf_rng_seed(&rng, 17);
    for (size_t i = 0; i < m->num_params; i++) p[i] += 0.2f * cf_rng_normal(&rng);
    *n = m->num_params;
    cf_model_free(m);
    return p;
}

/* full-forward logits (T, V) of tokens on be */
static float *full_logits(cf_backend *be, const cf_config *cfg, const float *params,
                          const int32_t *tok, int T) {
    cf_model *m = NULL;
    OK(cf_model_create(be, cfg, 1, T, 0, &m));
    OK(cf_model_set_params(m, params));
    if (cfg->doc_mask) OK(cf_model_set_doc_eot(m, g_eot));
    OK(cf_model_forward(m, tok, NULL, 1, T, NULL));
    const int V = cfg->vocab_size;
    float *lg = malloc(sizeof(float) * (size_t)T * V);
    for (int t = 0; t < T; t++) OK(cf_model_logits_row(m, 0, t, lg + (size_t)t * V));
    cf_model_free(m);
    return lg;
}

static cf_infer *engine(cf_backend *be, const cf_config *cfg, const float *params, int slots,
                        int S, int rows, int int8) {
    cf_infer_opts o = {slots, S, rows, int8};
    cf_infer *inf = NULL;
    OK(cf_infer_create(be, cfg, &o, &inf));
    OK(cf_infer_set_params(inf, params));
    cf_infer_set_doc_eot(inf, g_eot);
    return inf;
}

/* the fp32 weights an int8 engine really uses: each linear weight and the embeddings (wte, wpe:
 * one scale per row of d_model) quantised and dequantised (quantising twice changes nothing, so a
 * tied wte may come twice); *qelems (optional) gets the elements quantised */
static float *dequantised(const cf_config *cfg, const float *params, size_t n, size_t *qelems) {
    float *d = malloc(sizeof(float) * n);
    memcpy(d, params, sizeof(float) * n);
    cf_param_info pi[CF_NUM_PARAMS];
    cf_linear_info lin[CF_NUM_LINEARS + 2];
    cf_model_layout(cfg, pi, NULL, NULL);
    int nl = cf_model_linears(cfg, lin);
    size_t qe = 0;
    const int emb[2] = {CF_P_wte, CF_P_wpe};
    for (int k = 0; k < 2; k++) {
        if (!pi[emb[k]].present) continue;
        int dup = 0;
        for (int i = 0; i < nl; i++) dup |= lin[i].weight == emb[k];
        if (dup) continue;
        lin[nl].weight = emb[k];
        lin[nl++].in = cfg->d_model;
    }
    for (int i = 0; i < nl; i++) {
        const cf_param_info *p = &pi[lin[i].weight];
        const int64_t rows = (int64_t)(p->size / (size_t)lin[i].in);
        qe += p->size;
        int8_t *q = malloc(p->size);
        float *s = malloc(sizeof(float) * (size_t)rows);
        cf_quantize_rows(params + p->offset, rows, lin[i].in, q, s);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < lin[i].in; k++)
                d[p->offset + r * lin[i].in + k] = s[r] * (float)q[r * lin[i].in + k];
        free(q);
        free(s);
    }
    if (qelems) *qelems = qe;
    return d;
}

static void run_combo(cf_backend *be, const char *dev, const cf_config *cfg, const char *name,
                      double tol) {
    const int T = cfg->max_length, V = cfg->vocab_size;
    size_t np = 0;
    float *params = make_params(be, cfg, &np);
    cf_rng rng;
    cf_rng_seed(&rng, 23);
    int32_t tok[3][64];
    for (int s = 0; s < 3; s++)
        for (int t = 0; t < T; t++) tok[s][t] = (int32_t)(cf_rng_u32(&rng) % (uint32_t)V);
    g_eot = cfg->doc_mask ? TEST_EOT : -1;
    if (cfg->doc_mask) {
        /* sequence 0: the last row of the first prefill chunk (2), the prompt's last token (4),
         * two in a row while decoding (9, 10), one more (13); sequences 1 and 2 of the batch:
         * the last prompt token of 1 (6), early ones, and ones in the batched decode steps */
        const int e0[] = {2, 4, 9, 10, 13}, e1[] = {1, 6, 8}, e2[] = {2, 5};
        for (size_t i = 0; i < sizeof e0 / sizeof e0[0]; i++) tok[0][e0[i]] = TEST_EOT;
        for (size_t i = 0; i < sizeof e1 / sizeof e1[0]; i++) tok[1][e1[i]] = TEST_EOT;
        for (size_t i = 0; i < sizeof e2 / sizeof e2[0]; i++) tok[2][e2[i]] = TEST_EOT;
    }
    float *ref = full_logits(be, cfg, params, tok[0], T);
    float *lg = malloc(sizeof(float) * 3 * (size_t)V);

    /* prefill 5 (two chunks of at most 3 rows), then one position per step, in slot 1 of 3 */
    cf_infer *inf = engine(be, cfg, params, 3, 0, 3, 0);
    OK(cf_infer_prefill(inf, 1, tok[0], 5, lg));
    check("prefill", name, dev, 4, rel_err(lg, ref + 4 * (size_t)V, V), tol);
    for (int t = 5; t < T; t++) {
        OK(cf_infer_step(inf, 1, 1, 1, &tok[0][t], lg));
        check("decode", name, dev, t, rel_err(lg, ref + (size_t)t * V, V), tol);
    }
    /* the cache is full: learned positions refuse another token and a slide */
    if (cf_model_learned_pos(cfg)) {
        int lv = cf_log_get_level();
        cf_log_set_level(-1);
        if (cf_infer_step(inf, 1, 1, 1, &tok[0][0], lg) >= 0 || cf_infer_slide(inf, 1, 1) >= 0) {
            printf("FAIL [%s, %s]: a full learned-position cache took another token\n", name, dev);
            g_fail = 1;
        }
        cf_log_set_level(lv);
    }
    /* a reset slot starts afresh (position 0, a new document: the rows before the first
     * end-of-text see each other) */
    cf_infer_reset(inf, 1);
    OK(cf_infer_prefill(inf, 1, tok[0], 2, lg));
    check("prefill after reset", name, dev, 1, rel_err(lg, ref + 1 * (size_t)V, V), tol);

    /* batch = alone: lengths 3, 7, 5 prefilled into slots 0..2, then 4 steps of all three */
    const int len[3] = {3, 7, 5};
    float *alone = malloc(sizeof(float) * 12 * (size_t)V); /* (sequence, step, V) */
    for (int s = 0; s < 3; s++) {
        cf_infer *a = engine(be, cfg, params, 1, 0, 8, 0);
        OK(cf_infer_prefill(a, 0, tok[s], len[s], lg));
        float *r = full_logits(be, cfg, params, tok[s], len[s]);
        check("prefill alone", name, dev, len[s] - 1, rel_err(lg, r + (size_t)(len[s] - 1) * V, V), tol);
        free(r);
        for (int k = 0; k < 4; k++) {
            OK(cf_infer_step(a, 0, 1, 1, &tok[s][len[s] + k], lg));
            memcpy(alone + (size_t)(s * 4 + k) * V, lg, sizeof(float) * V);
        }
        cf_infer_free(a);
    }
    cf_infer_free(inf); /* a batch engine prefilling in the same chunks as the lone ones */
    inf = engine(be, cfg, params, 3, 0, 8, 0);
    for (int s = 0; s < 3; s++) OK(cf_infer_prefill(inf, s, tok[s], len[s], lg));
    for (int k = 0; k < 4; k++) {
        int32_t next[3] = {tok[0][len[0] + k], tok[1][len[1] + k], tok[2][len[2] + k]};
        OK(cf_infer_step(inf, 0, 3, 1, next, lg));
        for (int s = 0; s < 3; s++)
            check("batch vs alone", name, dev, len[s] + k,
                  rel_err(lg + (size_t)s * V, alone + (size_t)(s * 4 + k) * V, V), tol * 0.1);
    }
    cf_infer_free(inf);
    free(alone);

    /* int8: equal to the fp32 engine on the dequantised weights, near the fp32 model */
    /* weights already on the int8 grid (a tied wte too, whose f32 embedding then equals its
     * int8 head), so the fp32 engine on them is the int8 engine's exact reference */
    size_t qelems = 0;
    float *dq = dequantised(cfg, params, np, &qelems);
    cf_infer *q8 = engine(be, cfg, dq, 1, 0, 16, 1);
    cf_infer *f8 = engine(be, cfg, dq, 1, 0, 16, 0);
    float *lq = malloc(sizeof(float) * (size_t)V), *lf = malloc(sizeof(float) * (size_t)V);
    OK(cf_infer_prefill(q8, 0, tok[0], 9, lq));
    OK(cf_infer_prefill(f8, 0, tok[0], 9, lf));
    check("int8 prefill vs dequantised fp32", name, dev, 8, rel_err(lq, lf, V), 10 * tol);
    check("int8 vs fp32 model", name, dev, 8, rel_err(lq, ref + 8 * (size_t)V, V), 0.05);
    for (int t = 9; t < T; t++) {
        OK(cf_infer_step(q8, 0, 1, 1, &tok[0][t], lq));
        OK(cf_infer_step(f8, 0, 1, 1, &tok[0][t], lf));
        check("int8 decode vs dequantised fp32", name, dev, t, rel_err(lq, lf, V), 10 * tol);
    }
    /* every quantised element (the linears and the embeddings, no f32 copy of any) saves 3 bytes
     * less its share of the row scales (4 bytes per row of at least 16) */
    if (cf_infer_weight_bytes(q8) + 2.5 * (double)qelems > (double)cf_infer_weight_bytes(f8)) {
        printf("FAIL [%s, %s]: int8 weights take %zu bytes, fp32 %zu: less than 2.5 bytes saved "
               "per quantised element (%zu)\n",
               name, dev, cf_infer_weight_bytes(q8), cf_infer_weight_bytes(f8), qelems);
        g_fail = 1;
    }
    cf_infer_free(q8);
    cf_infer_free(f8);
    free(dq);
    free(lq);
    free(lf);
    free(ref);
    free(lg);
    free(params);
}

/* One RoPE layer: a cache of S positions slid one position per token equals the full forward
 * over the last S tokens (at one layer a token's K and V depend on the token alone). */
static void run_slide(cf_backend *be, const char *dev, double tol) {
    const combo k = {"slide: RoPE, qk_norm, GQA, 1 layer", CF_NORM_RMSNORM, 0, CF_POS_ROPE,
                     CF_MLP_SWIGLU, 2, 1, 0, 0, 1, 0.0f};
    cf_config cfg;
    config_of(&k, &cfg);
    const int S = 6, N = 14, V = cfg.vocab_size;
    size_t np = 0;
    float *params = make_params(be, &cfg, &np);
    int32_t tok[32];
    cf_rng rng;
    cf_rng_seed(&rng, 31);
    for (int t = 0; t < N; t++) tok[t] = (int32_t)(cf_rng_u32(&rng) % (uint32_t)V);
    cf_infer *inf = engine(be, &cfg, params, 2, S, 4, 0);
    float lg[64];
    OK(cf_infer_prefill(inf, 1, tok, S, lg));
    for (int t = S; t < N; t++) {
        if (cf_infer_pos(inf, 1) == S) OK(cf_infer_slide(inf, 1, 1 + (t % 3 == 0)));
        OK(cf_infer_step(inf, 1, 1, 1, &tok[t], lg));
        const int w = cf_infer_pos(inf, 1); /* the window: the last w tokens */
        float *ref = full_logits(be, &cfg, params, tok + t + 1 - w, w);
        check("sliding window", k.name, dev, t, rel_err(lg, ref + (size_t)(w - 1) * V, V), tol);
        free(ref);
    }
    cf_infer_free(inf);
    free(params);
}

/* Two RoPE layers with attention_window 3 (and doc_mask): a cache of S = 6 positions, slid by
 * one or two positions per token once full, gives the logits of the full forward over the whole
 * sequence, past the cache's length: every key a row sees (its window, within its document) is
 * still in the cache, and every kept K/V row was computed with all it saw. */
static void run_slide_window(cf_backend *be, const char *dev, double tol, int doc) {
    const combo k = {"slide: RoPE, GQA, 2 layers, attention_window 3", CF_NORM_RMSNORM, 0,
                     CF_POS_ROPE, CF_MLP_SWIGLU, 2, 0, 0, 0, 2, 0.0f};
    char name[128];
    snprintf(name, sizeof name, "%s%s", k.name, doc ? ", doc_mask" : "");
    cf_config cfg;
    config_of(&k, &cfg);
    cfg.attention_window = 3;
    cfg.doc_mask = doc;
    g_eot = doc ? TEST_EOT : -1;
    const int S = 6, N = 16, V = cfg.vocab_size;
    size_t np = 0;
    float *params = make_params(be, &cfg, &np);
    int32_t tok[32];
    cf_rng rng;
    cf_rng_seed(&rng, 37);
    for (int t = 0; t < N; t++) tok[t] = (int32_t)(cf_rng_u32(&rng) % (uint32_t)V);
    if (doc) /* in the prefill, then documents that start just before and across slides */
        tok[3] = tok[8] = tok[11] = tok[12] = TEST_EOT;
    float *ref = full_logits(be, &cfg, params, tok, N);
    cf_infer *inf = engine(be, &cfg, params, 2, S, 4, 0);
    float lg[64];
    OK(cf_infer_prefill(inf, 1, tok, S, lg));
    check("slid window: prefill", name, dev, S - 1, rel_err(lg, ref + (size_t)(S - 1) * V, V), tol);
    for (int t = S; t < N; t++) {
        if (cf_infer_pos(inf, 1) == S) OK(cf_infer_slide(inf, 1, 1 + (t % 3 == 0)));
        OK(cf_infer_step(inf, 1, 1, 1, &tok[t], lg));
        check("slid window", name, dev, t, rel_err(lg, ref + (size_t)t * V, V), tol);
    }
    cf_infer_free(inf);
    free(ref);
    free(params);
    g_eot = -1;
}

static void run_backend(cf_backend *be, const char *dev, double tol) {
    const combo combos[] = {
        {"GPT-2: LayerNorm+bias, learned positions, GELU, tied", CF_NORM_LAYERNORM, 1,
         CF_POS_LEARNED, CF_MLP_GELU, 0, 0, 1, 0, 2, 0.0f},
        {"Llama: RMSNorm, RoPE, SwiGLU, GQA 4:2, qk_norm, untied", CF_NORM_RMSNORM, 0, CF_POS_ROPE,
         CF_MLP_SWIGLU, 2, 1, 0, 0, 2, 0.0f},
        {"relu2, MQA, RoPE, RMSNorm with biases, softcap 2, 3 layers over 1 block",
         CF_NORM_RMSNORM, 1, CF_POS_ROPE, CF_MLP_RELU2, 1, 0, 1, 1, 3, 2.0f},
        {"GELU, LayerNorm without bias, learned, GQA 4:2, qk_norm, 4 layers over 2 blocks, "
         "untied, softcap 1.5",
         CF_NORM_LAYERNORM, 0, CF_POS_LEARNED, CF_MLP_GELU, 2, 1, 0, 2, 4, 1.5f},
    };
    for (size_t i = 0; i < sizeof combos / sizeof combos[0]; i++) {
        cf_config cfg;
        config_of(&combos[i], &cfg);
        printf("%s: %s\n", dev, combos[i].name);
        run_combo(be, dev, &cfg, combos[i].name, tol);
    }
    /* the masks of training: a window, documents, both (combo, attention_window, doc_mask) */
    static const int masked[][3] = {{1, 3, 0}, {0, 5, 0}, {1, 0, 1}, {3, 0, 1}, {2, 3, 1},
                                    {0, 5, 1}};
    for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++) {
        cf_config cfg;
        config_of(&combos[masked[i][0]], &cfg);
        cfg.attention_window = masked[i][1];
        cfg.doc_mask = masked[i][2];
        char name[256];
        snprintf(name, sizeof name, "%s; attention_window %d, doc_mask %s",
                 combos[masked[i][0]].name, cfg.attention_window, cfg.doc_mask ? "on" : "off");
        printf("%s: %s\n", dev, name);
        run_combo(be, dev, &cfg, name, tol);
    }
    g_eot = -1;
    cf_config lt;
    cf_config_defaults(&lt);
    OK(cf_config_load(CF_SOURCE_DIR "/configs/llama_tiny.json", &lt));
    lt.max_length = 24; /* the positions tested; the shapes are the config's */
    printf("%s: configs/llama_tiny.json\n", dev);
    run_combo(be, dev, &lt, "llama_tiny.json", tol);
    printf("%s: sliding window\n", dev);
    run_slide(be, dev, tol);
    printf("%s: sliding cache with attention_window, without and with doc_mask\n", dev);
    run_slide_window(be, dev, tol, 0);
    run_slide_window(be, dev, tol, 1);
}

int main(void) {
    cf_backend *cpu = NULL;
    OK(cf_backend_create("cpu", NULL, &cpu));
    run_backend(cpu, "cpu", 1e-5);
    cf_backend_destroy(cpu);
    cf_backend *cl = NULL;
    int lv = cf_log_get_level();
    cf_log_set_level(-1);
    int rc = cf_backend_create("opencl", NULL, &cl);
    cf_log_set_level(lv);
    if (rc == CF_OK) {
        run_backend(cl, "opencl", 1e-4);
        cf_backend_destroy(cl);
    } else {
        const char *req = getenv("CF_REQUIRE_OPENCL");
        if (req && atoi(req) != 0) {
            printf("FAIL: no OpenCL device, and CF_REQUIRE_OPENCL=1\n");
            g_fail = 1;
        } else {
            printf("note: no OpenCL device; the CPU backend only\n");
        }
    }
    if (g_fail) {
        printf("FAIL test_infer\n");
        return 1;
    }
    printf("PASS test_infer\n");
    return 0;
}
