/* clformer test: the model's gradients for combinations of the family's options that the
 * reference fixtures do not cover (relu2, MQA, RoPE with qk_norm, RMSNorm with linear biases,
 * SwiGLU with biases, shared blocks with an untied head and a soft-cap, ...), against central
 * finite differences of the model's own loss. For every present parameter tensor the entries with
 * the largest analytic gradient are checked. Also: the parameter count and FLOPs follow the table
 * (GQA shrinks qkv). Backend from CF_TEST_DEVICE (default cpu). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "cli/cli_env.h"
#include "model/gpt.h"

static int g_fail = 0;

typedef struct {
    const char *name;
    int norm, bias, position, mlp, kv, qk_norm, tie, share, layers;
    float softcap;
} combo;

static double loss_at(cf_model *m, const int32_t *x, const int32_t *y, int B, int T) {
    float loss = 0.0f;
    if (cf_model_forward(m, x, y, B, T, &loss) < 0) exit(1);
    return loss;
}

static void run_combo(cf_backend *be, const combo *k) {
    cf_config c;
    cf_config_defaults(&c);
    c.d_model = 16;
    c.num_heads = 4;
    c.num_layers = k->layers;
    c.d_ff = 24;
    c.max_length = 8;
    c.vocab_size = 32;
    c.norm = k->norm;
    c.bias = k->bias;
    c.position = k->position;
    c.mlp = k->mlp;
    c.num_kv_heads = k->kv;
    c.qk_norm = k->qk_norm;
    c.tie_embeddings = k->tie;
    c.share_layers = k->share;
    c.logit_softcap = k->softcap;
    const int B = 2, T = 8, BT = B * T;
    printf("%s\n", k->name);
    cf_model *m = NULL;
    if (cf_model_create(be, &c, B, T, 1, &m) < 0 || cf_model_init(m, 7) < 0) exit(1);
    /* larger weights than the init so every path carries a visible gradient */
    float *p = malloc(sizeof(float) * m->num_params), *g = malloc(sizeof(float) * m->num_params);
    cf_rng rng;
    cf_rng_seed(&rng, 11);
    cf_model_get_params(m, p);
    for (size_t i = 0; i < m->num_params; i++) p[i] += 0.3f * cf_rng_normal(&rng);
    cf_model_set_params(m, p);
    int32_t x[16], y[16];
    for (int i = 0; i < BT; i++) {
        x[i] = (int32_t)(cf_rng_u32(&rng) % (uint32_t)c.vocab_size);
        y[i] = (int32_t)(cf_rng_u32(&rng) % (uint32_t)c.vocab_size);
    }
    cf_model_zero_grad(m);
    if (cf_model_forward_backward(m, x, y, B, T, 1.0f, 0) < 0) exit(1);
    cf_model_get_grads(m, g);
    const float h = 1e-2f;
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *pi = &m->params[i];
        if (!pi->present) continue;
        /* the two entries with the largest |gradient| */
        size_t best[2] = {0, 0};
        for (size_t j = 0; j < pi->size; j++) {
            const float a = fabsf(g[pi->offset + j]);
            if (a > fabsf(g[pi->offset + best[0]])) {
                best[1] = best[0];
                best[0] = j;
            } else if (j != best[0] && a > fabsf(g[pi->offset + best[1]])) {
                best[1] = j;
            }
        }
        for (int b = 0; b < 2; b++) {
            const size_t o = pi->offset + best[b];
            const float keep = p[o];
            p[o] = keep + h;
            cf_model_set_params(m, p);
            const double lp = loss_at(m, x, y, B, T);
            p[o] = keep - h;
            cf_model_set_params(m, p);
            const double lm = loss_at(m, x, y, B, T);
            p[o] = keep;
            cf_model_set_params(m, p);
            const double fd = (lp - lm) / (2.0 * h), an = g[o];
            const double err = fabs(fd - an), lim = 2e-3 + 3e-2 * fabs(an);
            const int ok = err <= lim;
            printf("  %-12s [%6zu] analytic %+.5e  finite diff %+.5e  %s\n", pi->name, best[b], an,
                   fd, ok ? "ok" : "FAIL");
            if (!ok) g_fail = 1;
        }
    }
    free(p);
    free(g);
    cf_model_free(m);
}

int main(void) {
    const char *device = getenv("CF_TEST_DEVICE");
    if (!device) device = "cpu";
    cf_backend *be = NULL;
    cf_backend_options opts;
    cf_cli_backend_options_from_env(&opts);
    if (cf_backend_create(device, &opts, &be) < 0) return 1;
    const combo combos[] = {
        {"relu2, MQA, RoPE, RMSNorm with linear biases", CF_NORM_RMSNORM, 1, CF_POS_ROPE,
         CF_MLP_RELU2, 1, 0, 1, 0, 2, 0.0f},
        {"swiglu with biases, qk_norm + RoPE, GQA 4:2, untied, softcap 2, 2 layers over 1 block",
         CF_NORM_LAYERNORM, 1, CF_POS_ROPE, CF_MLP_SWIGLU, 2, 1, 0, 1, 2, 2.0f},
        {"gelu, LayerNorm without bias, GQA 4:2, qk_norm, 4 layers over 2 blocks, untied",
         CF_NORM_LAYERNORM, 0, CF_POS_LEARNED, CF_MLP_GELU, 2, 1, 0, 2, 4, 0.0f},
        {"relu2, RMSNorm, learned positions, MQA, qk_norm, softcap 1.5, 3 layers over 1 block",
         CF_NORM_RMSNORM, 0, CF_POS_LEARNED, CF_MLP_RELU2, 1, 1, 1, 1, 3, 1.5f},
    };
    for (size_t i = 0; i < sizeof combos / sizeof combos[0]; i++) run_combo(be, &combos[i]);

    /* counts from the table: GQA shrinks qkv_w by 2*(NH-KVH)*hs rows per block, and the FLOPs
     * per token by 6 * that many weights per layer */
    cf_config a, b;
    cf_config_defaults(&a);
    b = a;
    b.num_kv_heads = 1;
    size_t na = 0, nb = 0;
    cf_param_info pa[CF_NUM_PARAMS], pb[CF_NUM_PARAMS];
    cf_model_layout(&a, pa, &na, NULL);
    cf_model_layout(&b, pb, &nb, NULL);
    const size_t hs = (size_t)a.d_model / a.num_heads, dq = 2 * (a.num_heads - 1) * hs;
    const size_t want = (size_t)a.num_layers * dq * (a.d_model + 1); /* weights and biases */
    const double dflops = cf_model_flops_per_token(&a) - cf_model_flops_per_token(&b);
    const double want_flops = 6.0 * a.num_layers * (double)dq * a.d_model;
    printf("MQA: %zu fewer parameters (want %zu), %.0f fewer FLOPs per token (want %.0f)\n",
           na - nb, want, dflops, want_flops);
    if (na - nb != want || fabs(dflops - want_flops) > 0.5) g_fail = 1;

    cf_backend_destroy(be);
    printf(g_fail ? "FAILED\n" : "all family gradient checks passed\n");
    return g_fail;
}
