/* clformer test: the memory settings change what is held, never the result.
 * - recompute: attention and block give gradients, losses and (after an AdamW step) parameters
 *   bit-identical to none on the CPU backend, for GPT-2, the Llama-style family and shared
 *   layers, over two accumulated micro-batches and a second step;
 * - the LM head over row chunks (head_chunk not dividing B*T) gives the loss and gradients of the
 *   unchunked head within fp32 rounding, in training and in the forward-only loss;
 * - the activation table and bench's planned activation bytes follow the settings: a recomputed
 *   tensor exists once instead of L times (sizes counted independently here), the logits buffer
 *   is one chunk of rows.
 * Backend from CF_TEST_DEVICE (default cpu; bit-identity is asserted on the CPU backend only). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "bench/bench.h"
#include "cli/cli_env.h"
#include "model/gpt.h"

static int g_fail = 0;

static void expect(const char *what, int ok) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) g_fail = 1;
}

/* the families under test, tiny */
static cf_config family(int which) {
    cf_config c;
    cf_config_defaults(&c);
    c.d_model = 16;
    c.num_heads = 4;
    c.num_layers = 3;
    c.d_ff = 24;
    c.max_length = 8;
    c.vocab_size = 37;
    c.learning_rate = 1e-2f;
    switch (which) {
    case 0: snprintf(c.name, sizeof c.name, "GPT-2"); break;
    case 1: /* Llama-style: RMSNorm, RoPE, SwiGLU, GQA, qk_norm, untied, soft-cap */
        snprintf(c.name, sizeof c.name, "Llama-style (GQA 4:2, qk_norm, softcap 3)");
        c.norm = CF_NORM_RMSNORM;
        c.bias = 0;
        c.position = CF_POS_ROPE;
        c.mlp = CF_MLP_SWIGLU;
        c.num_kv_heads = 2;
        c.qk_norm = 1;
        c.tie_embeddings = 0;
        c.logit_softcap = 3.0f;
        break;
    case 2:
        snprintf(c.name, sizeof c.name, "GPT-2, 4 layers over 2 shared blocks");
        c.num_layers = 4;
        c.share_layers = 2;
        break;
    default:
        snprintf(c.name, sizeof c.name, "Llama-style, relu2, 3 layers over 1 shared block");
        c.norm = CF_NORM_RMSNORM;
        c.bias = 0;
        c.position = CF_POS_ROPE;
        c.mlp = CF_MLP_RELU2;
        c.share_layers = 1;
        c.tie_embeddings = 0;
        break;
    }
    return c;
}

typedef struct {
    float loss[3];
    float *grads1, *grads2, *params; /* grads after step 1 (two micro-batches), after step 2 */
    size_t n;
} step_result;

enum { B = 2, T = 8, BT = B * T };

/* two micro-batches, an AdamW step, a third micro-batch */
static void run(cf_backend *be, const cf_config *c, step_result *r) {
    cf_model *m = NULL;
    if (cf_model_create(be, c, B, T, 1, &m) < 0 || cf_model_init(m, 7) < 0) exit(1);
    r->n = m->num_params;
    r->grads1 = malloc(sizeof(float) * r->n);
    r->grads2 = malloc(sizeof(float) * r->n);
    r->params = malloc(sizeof(float) * r->n);
    /* larger weights than the init so every path carries a visible gradient */
    cf_rng rng;
    cf_rng_seed(&rng, 11);
    if (cf_model_get_params(m, r->params) < 0) exit(1);
    for (size_t i = 0; i < r->n; i++) r->params[i] += 0.3f * cf_rng_normal(&rng);
    if (cf_model_set_params(m, r->params) < 0) exit(1);
    int32_t x[3][BT], y[3][BT];
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < BT; i++) {
            x[s][i] = (int32_t)(cf_rng_u32(&rng) % (uint32_t)c->vocab_size);
            y[s][i] = (int32_t)(cf_rng_u32(&rng) % (uint32_t)c->vocab_size);
        }
    if (cf_model_zero_grad(m) < 0 || cf_model_forward_backward(m, x[0], y[0], B, T, 0.5f, 0) < 0 ||
        cf_model_forward_backward(m, x[1], y[1], B, T, 0.5f, 1) < 0 ||
        cf_model_get_grads(m, r->grads1) < 0 || cf_model_adamw(m, 1e-2f, 1.0f) < 0 ||
        cf_model_zero_grad(m) < 0 || cf_model_forward_backward(m, x[2], y[2], B, T, 1.0f, 2) < 0 ||
        cf_model_get_grads(m, r->grads2) < 0 || cf_model_get_params(m, r->params) < 0 ||
        cf_model_read_scalars(m, r->loss, 3) < 0)
        exit(1);
    cf_model_free(m);
}

static void result_free(step_result *r) {
    free(r->grads1);
    free(r->grads2);
    free(r->params);
}

/* entries that differ in their bits, and the largest difference */
static size_t bit_diffs(const float *a, const float *b, size_t n, double *maxd) {
    size_t d = 0;
    *maxd = 0.0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            d++;
            const double e = fabs((double)a[i] - (double)b[i]);
            if (e > *maxd) *maxd = e;
        }
    return d;
}

/* max|a-b| / max|b| */
static double norm_err(const float *a, const float *b, size_t n) {
    double md = 0.0, mb = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= md)) md = d; /* NaN wins */
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return md / (mb + 1e-30);
}

static void check_recompute(cf_backend *be, const cf_config *base, const step_result *ref,
                            int setting, const char *sname) {
    cf_config c = *base;
    c.recompute = setting;
    step_result r;
    run(be, &c, &r);
    const float *got[3] = {r.grads1, r.grads2, r.params};
    const float *want[3] = {ref->grads1, ref->grads2, ref->params};
    const char *what[3] = {"gradients of step 1", "gradients of step 2", "parameters"};
    for (int k = 0; k < 3; k++) {
        double maxd = 0.0;
        const size_t d = bit_diffs(got[k], want[k], r.n, &maxd);
        char msg[256];
        snprintf(msg, sizeof msg, "recompute=%s: %s bit-identical to none (%zu of %zu differ, max "
                 "%.2e)", sname, what[k], d, r.n, maxd);
        expect(msg, d == 0);
    }
    char msg[160];
    snprintf(msg, sizeof msg, "recompute=%s: the three losses bit-identical to none", sname);
    expect(msg, memcmp(r.loss, ref->loss, sizeof r.loss) == 0);
    result_free(&r);
}

static void check_head_chunks(cf_backend *be, const cf_config *base, const step_result *ref) {
    cf_config c = *base;
    c.head_chunk = 5; /* chunks of 5, 5, 5 and 1 rows */
    step_result r;
    run(be, &c, &r);
    double el = 0.0;
    for (int s = 0; s < 3; s++) {
        const double e = fabs((double)r.loss[s] - ref->loss[s]) / fabs((double)ref->loss[s]);
        if (!(e <= el)) el = e;
    }
    char msg[200];
    snprintf(msg, sizeof msg, "head_chunk=5: losses within 1e-6 of one chunk (rel %.1e)", el);
    expect(msg, el <= 1e-6);
    const double e1 = norm_err(r.grads1, ref->grads1, r.n);
    const double e2 = norm_err(r.grads2, ref->grads2, r.n);
    snprintf(msg, sizeof msg, "head_chunk=5: gradients within 1e-5 of one chunk (%.1e, %.1e)", e1,
             e2);
    expect(msg, e1 <= 1e-5 && e2 <= 1e-5);
    result_free(&r);

    /* the forward-only loss (evaluation) over chunks, against the unchunked one */
    float l1 = 0.0f, l5 = 0.0f;
    int32_t x[BT], y[BT];
    for (int i = 0; i < BT; i++) x[i] = (int32_t)((7 * i + 3) % base->vocab_size),
                                 y[i] = (int32_t)((5 * i + 1) % base->vocab_size);
    for (int k = 0; k < 2; k++) {
        cf_config ck = *base;
        ck.head_chunk = k ? 5 : 0;
        cf_model *m = NULL;
        if (cf_model_create(be, &ck, B, T, 0, &m) < 0 || cf_model_init(m, 3) < 0 ||
            cf_model_forward(m, x, y, B, T, k ? &l5 : &l1) < 0)
            exit(1);
        cf_model_free(m);
    }
    snprintf(msg, sizeof msg, "head_chunk=5: forward-only loss %.7f vs %.7f", l5, l1);
    expect(msg, fabs((double)l5 - l1) <= 1e-6 * fabs((double)l1));

    /* logits where they are needed (generation, `clformer logits`): the positions of batch row 1
     * over chunks of 3 against one position at a time, and the loss they give against the
     * forward's */
    const int V = base->vocab_size;
    float *all = malloc(sizeof(float) * T * V), *one = malloc(sizeof(float) * T * V);
    double nll = 0.0;
    for (int k = 0; k < 2; k++) {
        cf_config ck = *base;
        ck.head_chunk = k ? 3 : 0;
        cf_model *m = NULL;
        float lf = 0.0f;
        if (cf_model_create(be, &ck, B, T, 0, &m) < 0 || cf_model_init(m, 3) < 0 ||
            cf_model_forward(m, x, y, B, T, &lf) < 0)
            exit(1);
        if (k) {
            if (cf_model_logits_rows(m, 1, 0, T, all) < 0) exit(1);
        } else {
            for (int t = 0; t < T; t++)
                if (cf_model_logits_row(m, 1, t, one + (size_t)t * V) < 0) exit(1);
        }
        cf_model_free(m);
    }
    for (int t = 0; t < T; t++) {
        const float *z = all + (size_t)t * V;
        double mx = z[0], s = 0.0;
        for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
        for (int v = 0; v < V; v++) s += exp(z[v] - mx);
        nll += mx + log(s) - z[y[T + t]];
    }
    const double elg = norm_err(all, one, (size_t)T * V);
    snprintf(msg, sizeof msg, "logits of 8 positions over chunks of 3 vs one at a time (%.1e)",
             elg);
    expect(msg, elg <= 1e-6);
    /* the loss of batch row 1 alone from those logits, against the forward on row 1 only */
    cf_model *m = NULL;
    float l_row = 0.0f;
    if (cf_model_create(be, base, 1, T, 0, &m) < 0 || cf_model_init(m, 3) < 0 ||
        cf_model_forward(m, x + T, y + T, 1, T, &l_row) < 0)
        exit(1);
    cf_model_free(m);
    snprintf(msg, sizeof msg, "loss from those logits %.6f vs the forward's %.6f", nll / T,
             l_row);
    expect(msg, fabs(nll / T - l_row) <= 1e-5 * fabs((double)l_row));
    free(all);
    free(one);
}

/* Activation elements of one layer's inside, counted from the model's definition here (not from
 * the table): what recompute=block keeps once instead of L times. */
static size_t block_inside(const cf_config *c, size_t bt) {
    const size_t C = c->d_model, F = c->d_ff, NH = c->num_heads, HS = C / NH,
                 KVH = c->num_kv_heads ? (size_t)c->num_kv_heads : NH, QKV = (NH + 2 * KVH) * HS,
                 FI = c->mlp == CF_MLP_SWIGLU ? 2 * F : F;
    const int ln = c->norm == CF_NORM_LAYERNORM;
    size_t n = bt * C /* ln1 */ + bt * (ln ? 2 : 1) /* stats */ + bt * QKV /* qkv */;
    if (c->qk_norm) n += bt * QKV + bt * NH + bt * KVH; /* raw qkv and the head norms' rstd */
    n += bt * C /* residual2 */ + bt * C /* ln2 */ + bt * (ln ? 2 : 1) + bt * FI /* fch */ +
         bt * F /* fch_act */;
    return n;
}

static void check_accounting(void) {
    for (int f = 0; f < 4; f++) {
        cf_config c = family(f % 2);
        c.num_layers = 6;
        c.max_length = 512;
        c.vocab_size = 1000;
        /* the matrix attention path keeps the (T,T) probabilities, flash one log-sum-exp a row */
        const int flash = f >= 2;
        c.attention = flash ? CF_ATTN_FLASH : CF_ATTN_MATRIX;
        const int b = 4, t = 512;
        const size_t bt = (size_t)b * t, L = (size_t)c.num_layers;
        const size_t attn = bt * c.d_model + (flash ? (size_t)b * c.num_heads * t
                                                    : (size_t)b * c.num_heads * t * t);
        cf_mem_estimate est[3];
        for (int s = 0; s < 3; s++) {
            c.recompute = s;
            cf_bench_mem_estimate(&c, b, t, &est[s]);
        }
        printf("%s (%s), L=%zu, B*T=%zu: planned activation bytes none %llu, attention %llu, "
               "block %llu\n",
               c.name, flash ? "flash" : "matrix", L, bt, (unsigned long long)est[0].acts, (unsigned long long)est[1].acts,
               (unsigned long long)est[2].acts);
        expect("attention: atty and the probabilities once instead of L times",
               est[0].acts - est[1].acts == 4 * (L - 1) * attn);
        expect("block: the layer's inside once instead of L times",
               est[0].acts - est[2].acts == 4 * (L - 1) * (attn + block_inside(&c, bt)));
        expect("backward scratch unchanged by recompute",
               est[0].grad_scratch == est[2].grad_scratch);
        /* the table itself: a recomputed tensor has one slice */
        cf_act_info a[CF_NUM_ACTS];
        size_t g[CF_NUM_GACTS];
        c.recompute = CF_RECOMPUTE_BLOCK;
        cf_model_act_layout(&c, b, t, a, g);
        expect("block: ln1 and fch held once, residual3 (the block inputs) per layer",
               a[CF_A_ln1].n == 1 && a[CF_A_fch].n == 1 && a[CF_A_residual3].n == (int)L);
        /* the LM head: by default the rows whose logits fit CF_HEAD_CHUNK_BYTES (multiples of
         * 256, at most B*T), head_chunk rows when set */
        expect("logits: all B*T rows by default where they fit 256 MiB",
               a[CF_A_logits].size == bt * c.vocab_size);
        {
            cf_config big = c;
            big.vocab_size = 50304; /* 256 MiB / (50304 * 4 B) = 1334 rows: 1280 */
            cf_act_info ab[CF_NUM_ACTS];
            size_t gb[CF_NUM_GACTS];
            cf_model_act_layout(&big, 8, 1024, ab, gb);
            expect("logits: 1280 rows of V = 50304 by default at B*T = 8192",
                   cf_model_head_rows(&big, 8, 1024) == 1280 &&
                       ab[CF_A_logits].size == (size_t)1280 * 50304);
            expect("logits: B*T rows when fewer than the budget's (B*T = 512)",
                   cf_model_head_rows(&big, 1, 512) == 512);
            big.vocab_size = 2000000; /* 33 rows fit: at least 256 */
            expect("logits: at least 256 rows", cf_model_head_rows(&big, 8, 1024) == 256);
        }
        c.head_chunk = 100;
        cf_model_act_layout(&c, b, t, a, g);
        expect("logits: head_chunk=100 rows of V",
               a[CF_A_logits].size == (size_t)100 * c.vocab_size);
        c.head_chunk = 1 << 20;
        cf_model_act_layout(&c, b, t, a, g);
        expect("logits: head_chunk above B*T is one chunk of B*T rows",
               a[CF_A_logits].size == bt * c.vocab_size);
        c.head_chunk = 100;
        cf_gemm_shape sh[CF_MAX_GEMM_SHAPES];
        const int ns = cf_model_gemm_shapes(&c, b, t, sh);
        int head_ok = 0;
        for (int i = 0; i < ns; i++)
            if (!strcmp(sh[i].name, "head.fwd"))
                head_ok = sh[i].M == 100 && sh[i].N == c.vocab_size && sh[i].per_step == 21;
        expect("GEMM shapes: head.fwd is 100 rows, 21 chunks per step", head_ok);
    }
}

int main(void) {
    const char *device = getenv("CF_TEST_DEVICE");
    if (!device) device = "cpu";
    cf_backend *be = NULL;
    cf_backend_options opts;
    cf_cli_backend_options_from_env(&opts);
    if (cf_backend_create(device, &opts, &be) < 0) return 1;
    for (int f = 0; f < 4; f++) {
        const cf_config c = family(f);
        printf("%s on %s\n", c.name, cf_be_name(be));
        step_result ref;
        run(be, &c, &ref);
        check_recompute(be, &c, &ref, CF_RECOMPUTE_ATTENTION, "attention");
        check_recompute(be, &c, &ref, CF_RECOMPUTE_BLOCK, "block");
        check_head_chunks(be, &c, &ref);
        result_free(&ref);
    }
    check_accounting();
    cf_backend_destroy(be);
    printf(g_fail ? "FAILED\n" : "all memory-setting checks passed\n");
    return g_fail;
}
