/* clformer test: the model against the independent PyTorch reference (tools/gen_reference.py):
 * step-0 logits, loss and every gradient, then the losses, grad norms and final weights of the
 * AdamW steps, with and without gradient accumulation, for GPT-2 and the family fixtures (a
 * Llama-style model; GPT-2 with shared layers, qk_norm and a logit soft-cap). Backend from CF_TEST_DEVICE (default cpu). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "cli/cli_env.h"
#include "io/safetensors.h"
#include "model/gpt.h"

static int g_fail = 0;

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > num || isnan(d)) num = isnan(d) ? INFINITY : d;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return num / (den + 1e-12);
}

static void check_floor(const char *what, const float *got, const float *want, size_t n,
                        double tol, double floor) {
    double num = 0.0, den = floor;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (d > num || isnan(d)) num = isnan(d) ? INFINITY : d;
        if (fabs((double)want[i]) > den) den = fabs((double)want[i]);
    }
    double e = num / den;
    int ok = e <= tol;
    printf("  %-28s max|err|/max(|ref|,%g) = %.3e (tol %.0e) %s\n", what, floor, e, tol,
           ok ? "ok" : "FAIL");
    if (!ok) g_fail = 1;
}

static void check(const char *what, const float *got, const float *want, size_t n, double tol) {
    double e = rel_err(got, want, n);
    int ok = e <= tol;
    printf("  %-28s max|err|/max|ref| = %.3e (tol %.0e) %s\n", what, e, tol, ok ? "ok" : "FAIL");
    if (!ok) g_fail = 1;
}

static const cf_st_tensor *need(cf_st_file *f, const char *name) {
    const cf_st_tensor *t = cf_st_find(f, name);
    if (!t) {
        printf("fixture lacks tensor '%s'\n", name);
        exit(1);
    }
    return t;
}

static int meta_int(cf_st_file *f, const char *k) { return atoi(cf_st_meta(f, k)); }
static float meta_f(cf_st_file *f, const char *k) { return strtof(cf_st_meta(f, k), NULL); }

/* The model family's keys, present in the family fixtures' metadata (strings; booleans "true" /
 * "false"); a fixture without them is GPT-2 (the defaults). */
static int meta_bool(cf_st_file *f, const char *k, int dflt) {
    const char *v = cf_st_meta(f, k);
    if (!v) return dflt;
    if (strcmp(v, "true") == 0) return 1;
    if (strcmp(v, "false") == 0) return 0;
    printf("fixture metadata %s = '%s' is not a boolean\n", k, v);
    exit(1);
}
static int meta_enum(cf_st_file *f, const char *k, const char *const *names, int n, int dflt) {
    const char *v = cf_st_meta(f, k);
    if (!v) return dflt;
    for (int i = 0; i < n; i++)
        if (strcmp(v, names[i]) == 0) return i;
    printf("fixture metadata %s = '%s' is not known\n", k, v);
    exit(1);
}
static void meta_family(cf_st_file *f, cf_config *c) {
    static const char *const norms[] = {"layernorm", "rmsnorm"};
    static const char *const pos[] = {"learned", "rope"};
    static const char *const mlps[] = {"gelu", "swiglu", "relu2"};
    c->norm = meta_enum(f, "norm", norms, 2, c->norm);
    c->position = meta_enum(f, "position", pos, 2, c->position);
    c->mlp = meta_enum(f, "mlp", mlps, 3, c->mlp);
    c->bias = meta_bool(f, "bias", c->bias);
    c->qk_norm = meta_bool(f, "qk_norm", c->qk_norm);
    c->tie_embeddings = meta_bool(f, "tie_embeddings", c->tie_embeddings);
    if (cf_st_meta(f, "norm_eps")) c->norm_eps = meta_f(f, "norm_eps");
    if (cf_st_meta(f, "rope_theta")) c->rope_theta = meta_f(f, "rope_theta");
    if (cf_st_meta(f, "logit_softcap")) c->logit_softcap = meta_f(f, "logit_softcap");
    if (cf_st_meta(f, "num_kv_heads")) c->num_kv_heads = meta_int(f, "num_kv_heads");
    if (cf_st_meta(f, "share_layers")) c->share_layers = meta_int(f, "share_layers");
}

/* a tolerance from the fixture's "tolerances" metadata ("key=value,..."), else dflt */
static double meta_tol(cf_st_file *f, const char *key, double dflt) {
    const char *v = cf_st_meta(f, "tolerances");
    const size_t kl = strlen(key);
    for (const char *p = v; p && *p;) {
        if (strncmp(p, key, kl) == 0 && p[kl] == '=') return strtod(p + kl + 1, NULL);
        p = strchr(p, ',');
        if (p) p++;
    }
    return dflt;
}

static void run_fixture(const char *path, const char *device) {
    cf_st_file *f = NULL;
    if (cf_st_open(path, &f) < 0) {
        printf("cannot open fixture %s\n", path);
        exit(1);
    }
    cf_config cfg;
    cf_config_defaults(&cfg);
    cfg.d_model = meta_int(f, "d_model");
    cfg.num_heads = meta_int(f, "num_heads");
    cfg.num_layers = meta_int(f, "num_layers");
    cfg.d_ff = meta_int(f, "d_ff");
    cfg.max_length = meta_int(f, "max_length");
    cfg.vocab_size = meta_int(f, "vocab_size");
    cfg.batch_size = meta_int(f, "batch_size");
    cfg.steps = meta_int(f, "steps");
    cfg.learning_rate = meta_f(f, "learning_rate");
    cfg.warmup_steps = meta_int(f, "warmup_steps");
    cfg.min_lr_ratio = meta_f(f, "min_lr_ratio");
    cfg.weight_decay = meta_f(f, "weight_decay");
    cfg.grad_clip = meta_f(f, "grad_clip");
    cfg.beta1 = meta_f(f, "beta1");
    cfg.beta2 = meta_f(f, "beta2");
    cfg.eps = meta_f(f, "eps");
    const char *ga = cf_st_meta(f, "grad_accum_steps");
    cfg.grad_accum_steps = ga ? atoi(ga) : 1;
    meta_family(f, &cfg);
    const double tol_logits = meta_tol(f, "logits", 1e-5), tol_loss = meta_tol(f, "loss", 1e-5),
                 tol_grad = meta_tol(f, "grad", 1e-4),
                 tol_losses = meta_tol(f, "adamw_losses", 1e-4),
                 tol_norms = meta_tol(f, "adamw_grad_norms", 1e-3),
                 tol_final = meta_tol(f, "final", 3e-4);
    const int B = cfg.batch_size, T = cfg.max_length, V = cfg.vocab_size,
              A = cfg.grad_accum_steps;
    printf("%s on %s: B=%d T=%d C=%d L=%d F=%d V=%d accum=%d steps=%d\n", path, device, B, T,
           cfg.d_model, cfg.num_layers, cfg.d_ff, V, A, cfg.steps);
    printf("  family: norm %d eps %g bias %d position %d theta %g mlp %d kv_heads %d qk_norm %d "
           "tied %d softcap %g share %d\n",
           cfg.norm, cfg.norm_eps, cfg.bias, cfg.position, cfg.rope_theta, cfg.mlp,
           cf_config_kv_heads(&cfg), cfg.qk_norm, cfg.tie_embeddings, cfg.logit_softcap,
           cfg.share_layers);

    cf_backend *be = NULL;
    cf_backend_options opts; /* the environment's, as the CLI reads it (CF_CACHE_DIR, ...) */
    cf_cli_backend_options_from_env(&opts);
    if (cf_backend_create(device, &opts, &be) < 0) exit(1);
    cf_model *m = NULL;
    if (cf_model_create(be, &cfg, B, T, 1, &m) < 0) exit(1);
    float *host = calloc(m->num_params, sizeof(float));
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &m->params[i];
        if (!p->present) continue; /* a tensor this config does not have */
        const cf_st_tensor *t = need(f, p->name);
        if (t->nbytes != p->size * 4) {
            printf("fixture tensor %s has %zu bytes, model wants %zu\n", p->name, t->nbytes,
                   p->size * 4);
            exit(1);
        }
        memcpy(host + p->offset, t->data, t->nbytes);
    }
    if (cf_model_set_params(m, host) < 0) exit(1);
    const int32_t *inputs = need(f, "inputs")->data, *targets = need(f, "targets")->data;

    /* step 0: logits and loss of (micro-batch 0) */
    float loss = 0.0f;
    if (cf_model_forward(m, inputs, targets, B, T, &loss) < 0) exit(1);
    float *logits = malloc(sizeof(float) * (size_t)B * T * V);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) cf_model_logits_row(m, b, t, logits + ((size_t)b * T + t) * V);
    check("logits (step 0)", logits, need(f, "logits")->data, (size_t)B * T * V, tol_logits);

    /* step 0 gradients (mean over the micro-batches) */
    float *grads = malloc(sizeof(float) * m->num_params);
    cf_model_zero_grad(m);
    for (int k = 0; k < A; k++)
        if (cf_model_forward_backward(m, inputs + (size_t)k * B * T, targets + (size_t)k * B * T,
                                      B, T, 1.0f / A, k) < 0)
            exit(1);
    float sc[64];
    cf_model_read_scalars(m, sc, A);
    double lsum = 0;
    for (int k = 0; k < A; k++) lsum += sc[k];
    float loss0 = (float)(lsum / ((double)B * T * A));
    check("loss (step 0)", &loss0, need(f, "loss")->data, 1, tol_loss);
    cf_model_get_grads(m, grads);
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &m->params[i];
        if (!p->present) continue; /* a tensor this config does not have */
        char name[64];
        snprintf(name, sizeof name, "grad.%s", p->name);
        check(name, grads + p->offset, need(f, name)->data, p->size, tol_grad);
    }

    /* AdamW steps with the reference's learning rates */
    const float *ref_losses = need(f, "adamw_losses")->data;
    const float *ref_lrs = need(f, "adamw_lrs")->data;
    const float *ref_norms = need(f, "adamw_grad_norms")->data;
    float *losses = malloc(sizeof(float) * cfg.steps), *norms = malloc(sizeof(float) * cfg.steps);
    float *lrs = malloc(sizeof(float) * cfg.steps);
    for (int s = 0; s < cfg.steps; s++) {
        cf_model_zero_grad(m);
        for (int k = 0; k < A; k++)
            cf_model_forward_backward(m, inputs + (size_t)k * B * T, targets + (size_t)k * B * T,
                                      B, T, 1.0f / A, k);
        float norm;
        cf_model_grad_norm(m, &norm);
        float scale = (cfg.grad_clip > 0 && norm > cfg.grad_clip) ? cfg.grad_clip / (norm + 1e-6f)
                                                                  : 1.0f;
        lrs[s] = cf_lr_schedule(&cfg, s);
        cf_model_adamw(m, ref_lrs[s], scale);
        cf_model_read_scalars(m, sc, A);
        lsum = 0;
        for (int k = 0; k < A; k++) lsum += sc[k];
        losses[s] = (float)(lsum / ((double)B * T * A));
        norms[s] = norm;
    }
    check("lr schedule", lrs, ref_lrs, (size_t)cfg.steps, 1e-6);
    check("adamw losses", losses, ref_losses, (size_t)cfg.steps, tol_losses);
    check("adamw grad norms", norms, ref_norms, (size_t)cfg.steps, tol_norms);
    cf_model_get_params(m, host);
    /* final weights: relative to max(|ref|, 1e-2). Without qk_norm the key slice of qkv_b has an
     * exactly-zero true gradient (softmax is shift invariant), so AdamW amplifies float32 rounding
     * noise there into updates of ~lr; it gets an absolute bound, the q and v slices the normal
     * one. (With qk_norm the key bias passes through a per-head RMSNorm and is an ordinary
     * parameter.) */
    const int QS = cfg.num_heads * cf_model_head_size(&cfg),
              KS = cf_config_kv_heads(&cfg) * cf_model_head_size(&cfg);
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &m->params[i];
        if (!p->present) continue; /* a tensor this config does not have */
        char name[64];
        snprintf(name, sizeof name, "final.%s", p->name);
        const float *ref = need(f, name)->data, *got = host + p->offset;
        if (i != CF_P_qkv_b || cfg.qk_norm) {
            check_floor(name, got, ref, p->size, tol_final, 1e-2);
            continue;
        }
        for (int l = 0; l < (int)p->shape[0]; l++) {
            const char *part[3] = {"q", "k", "v"};
            const size_t off[3] = {0, (size_t)QS, (size_t)QS + KS}, len[3] = {(size_t)QS, (size_t)KS, (size_t)KS};
            for (int k = 0; k < 3; k++) {
                char nm[80];
                snprintf(nm, sizeof nm, "final.qkv_b[%d].%s", l, part[k]);
                size_t o = (size_t)l * p->layer_stride + off[k];
                check_floor(nm, got + o, ref + o, len[k], k == 1 ? 1e-2 : tol_final,
                            k == 1 ? 1.0 : 1e-2);
            }
        }
    }
    free(host);
    free(logits);
    free(grads);
    free(losses);
    free(norms);
    free(lrs);
    cf_model_free(m);
    cf_backend_destroy(be);
    cf_st_close(f);
}

int main(void) {
    const char *device = getenv("CF_TEST_DEVICE");
    if (!device) device = "cpu";
    run_fixture(CF_SOURCE_DIR "/tests/fixtures/gpt_ref_tiny.safetensors", device);
    run_fixture(CF_SOURCE_DIR "/tests/fixtures/gpt_ref_accum.safetensors", device);
    run_fixture(CF_SOURCE_DIR "/tests/fixtures/llama_ref_tiny.safetensors", device);
    run_fixture(CF_SOURCE_DIR "/tests/fixtures/gpt_share_ref_tiny.safetensors", device);
    printf(g_fail ? "FAILED\n" : "all reference checks passed\n");
    return g_fail;
}
