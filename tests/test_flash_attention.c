/* clformer test: flash attention on the CPU backend (src/backend/cpu/cpu_flash.c).
 * 1. flash_forward / flash_backward against a naive double-precision reference (flash_ref.h):
 *    output, log-sum-exp, dq, dk, dv for causal, windowed, document-masked and GQA cases, T = 1
 *    and T not a multiple of any tile; with one thread and with the default team (the results
 *    must be bit-identical: each work item's arithmetic does not depend on the thread count).
 * 2. The wrappers refuse a bad descriptor (negative window, KVH not dividing NH) and short views.
 * 3. A training step of a small Llama-style model (GQA, RoPE, qk_norm) with attention: flash and
 *    with attention: matrix gives the same loss and gradients within float tolerance, and the
 *    flash model allocates no (L,B,NH,T,T) probabilities nor (B,NH,T,T) backward scratch. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "flash_ref.h"
#include "model/gpt.h"

static void expect(int ok, const char *what) {
    fr_checks++;
    if (!ok) fr_fails++;
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
}

static void quiet_log(int level, const char *msg, void *u) { (void)level, (void)msg, (void)u; }

static void refusals(cf_backend *be) {
    cf_buffer *b = NULL;
    FR_OK(cf_be_alloc(be, 4096 * 4, &b));
    const cf_view v = cf_view_f32(b, 0);
    cf_attn_desc d = {1, 4, 4, 2, 8, -1};
    cf_log_set_callback(quiet_log, NULL);
    expect(cf_be_flash_forward(be, &d, v, v, v, CF_VIEW_NULL) == CF_ERR_INVALID,
           "flash_forward refuses window -1");
    d.window = 0;
    d.KVH = 3;
    expect(cf_be_flash_forward(be, &d, v, v, v, CF_VIEW_NULL) == CF_ERR_INVALID,
           "flash_forward refuses KVH 3 with NH 4");
    d.KVH = 2;
    d.T = 400; /* qkv needs 400 * 64 floats: more than the buffer */
    expect(cf_be_flash_forward(be, &d, v, v, v, CF_VIEW_NULL) == CF_ERR_INVALID,
           "flash_forward refuses a qkv view shorter than B*T*QKV");
    d.T = 4;
    expect(cf_be_flash_backward(be, &d, v, v, v, v, v, v, cf_view_f32(b, 0)) == CF_ERR_INVALID,
           "flash_backward refuses a doc view that is not i32");
    expect(cf_be_flash_forward(be, NULL, v, v, v, CF_VIEW_NULL) == CF_ERR_INVALID,
           "flash_forward refuses a NULL descriptor");
    cf_log_set_callback(NULL, NULL);
    cf_be_free(be, b);
}

/* Same results with one thread as with the team. */
static void thread_independence(cf_backend *be) {
#ifdef _OPENMP
    const fr_case c = {"threads", 3, 45, 4, 2, 16, 0, 0};
    const size_t BT = 3 * 45, QKV = 8 * 16, nq = BT * QKV, no = BT * 64, nl = BT * 4;
    cf_rng r;
    cf_rng_seed(&r, 77);
    float *h = fr_malloc(nq * 4), *g = fr_malloc(no * 4);
    for (size_t i = 0; i < nq; i++) h[i] = 2.0f * cf_rng_uniform(&r) - 1.0f;
    for (size_t i = 0; i < no; i++) g[i] = 2.0f * cf_rng_uniform(&r) - 1.0f;
    float *res[2];
    const int nth = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k == 0 ? 1 : (nth > 1 ? nth : 2));
        cf_buffer *bq = fr_buf(be, h, nq, 0), *bdo = fr_buf(be, g, no, 0);
        cf_buffer *bo = fr_buf(be, NULL, no, 0), *bl = fr_buf(be, NULL, nl, 0);
        cf_buffer *bd = fr_buf(be, NULL, nl, 0), *bdq = fr_buf(be, NULL, nq, 0);
        const cf_attn_desc d = {c.B, c.T, c.NH, c.KVH, c.hs, 0};
        FR_OK(cf_be_flash_forward(be, &d, cf_view_f32(bo, FR_PAD), cf_view_f32(bl, FR_PAD),
                                  cf_view_f32(bq, FR_PAD), CF_VIEW_NULL));
        FR_OK(cf_be_flash_backward(be, &d, cf_view_f32(bdq, FR_PAD), cf_view_f32(bd, FR_PAD),
                                   cf_view_f32(bdo, FR_PAD), cf_view_f32(bo, FR_PAD),
                                   cf_view_f32(bl, FR_PAD), cf_view_f32(bq, FR_PAD),
                                   CF_VIEW_NULL));
        res[k] = fr_malloc((nq + no) * 4);
        fr_get(be, bdq, res[k], nq);
        fr_get(be, bo, res[k] + nq, no);
        cf_be_free(be, bq), cf_be_free(be, bdo), cf_be_free(be, bo), cf_be_free(be, bl);
        cf_be_free(be, bd), cf_be_free(be, bdq);
    }
    omp_set_num_threads(nth);
    expect(memcmp(res[0], res[1], (nq + no) * 4) == 0,
           "flash forward and backward are bit-identical with 1 thread and with the team");
    free(res[0]), free(res[1]), free(h), free(g);
#else
    (void)be;
#endif
}

/* A small Llama-style model (GQA 4:2, RoPE, qk_norm, SwiGLU) with T = 40 (no tile multiple) */
static cf_config small_config(const char *attention) {
    cf_config c;
    cf_config_defaults(&c);
    c.d_model = 32;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.num_layers = 2;
    c.d_ff = 48;
    c.max_length = 40;
    c.vocab_size = 64;
    c.norm = CF_NORM_RMSNORM;
    c.bias = 0;
    c.position = CF_POS_ROPE;
    c.mlp = CF_MLP_SWIGLU;
    c.qk_norm = 1;
    c.tie_embeddings = 0;
    char kv[64];
    snprintf(kv, sizeof kv, "attention=%s", attention);
    FR_OK(cf_config_set(&c, kv, "test"));
    return c;
}

static cf_model *make_model(cf_backend *be, const cf_config *c, int B, int T, uint64_t *bytes) {
    const uint64_t before = be->stats.bytes_allocated;
    cf_model *m = NULL;
    FR_OK(cf_model_create(be, c, B, T, 1, &m));
    FR_OK(cf_model_init(m, 5));
    /* larger weights than the init, so attention is far from uniform */
    float *p = fr_malloc(sizeof(float) * m->num_params);
    cf_rng r;
    cf_rng_seed(&r, 9);
    FR_OK(cf_model_get_params(m, p));
    for (size_t i = 0; i < m->num_params; i++) p[i] += 0.2f * cf_rng_normal(&r);
    FR_OK(cf_model_set_params(m, p));
    free(p);
    if (bytes) *bytes = be->stats.bytes_allocated - before;
    return m;
}

/* 3. one training step, flash against the matrix path: loss and every gradient */
static void training_step(cf_backend *be) {
    const int B = 2, T = 40, BT = B * T;
    int32_t x[80], y[80];
    cf_rng r;
    cf_rng_seed(&r, 3);
    for (int i = 0; i < BT; i++) x[i] = (int32_t)(cf_rng_uniform(&r) * 64) % 64;
    for (int i = 0; i < BT; i++) y[i] = (int32_t)(cf_rng_uniform(&r) * 64) % 64;
    float loss[2];
    float *grads[2];
    uint64_t bytes[2];
    size_t np = 0;
    for (int k = 0; k < 2; k++) {
        const cf_config c = small_config(k == 0 ? "flash" : "matrix");
        cf_model *m = make_model(be, &c, B, T, &bytes[k]);
        expect(m->flash == (k == 0), k == 0 ? "attention: flash runs the flash path"
                                            : "attention: matrix runs the matrix path");
        if (k == 0) {
            size_t g[CF_NUM_GACTS];
            cf_act_info a[CF_NUM_ACTS];
            cf_model_act_layout(&c, B, T, a, g);
            expect(a[CF_A_att].size == 0 && a[CF_A_lse].size == (size_t)c.num_layers * BT *
                                                                    c.num_heads,
                   "flash: no (L,B,NH,T,T) probabilities, (L,B,NH,T) log-sum-exp instead");
            expect(g[CF_G_datt] == 0 && g[CF_G_dpreatt] == 0 && g[CF_G_delta] == (size_t)BT * 4,
                   "flash: no (B,NH,T,T) backward scratch, a (B,NH,T) delta instead");
        }
        FR_OK(cf_model_zero_grad(m));
        FR_OK(cf_model_forward_backward(m, x, y, B, T, 1.0f, 0));
        FR_OK(cf_model_read_scalars(m, &loss[k], 1));
        np = m->num_params;
        grads[k] = fr_malloc(sizeof(float) * np);
        FR_OK(cf_model_get_grads(m, grads[k]));
        cf_model_free(m);
    }
    double md = 0.0, mg = 0.0;
    for (size_t i = 0; i < np; i++) {
        const double d = fabs((double)grads[0][i] - grads[1][i]);
        md = d > md || isnan(d) ? d : md;
        mg = fabs((double)grads[1][i]) > mg ? fabs((double)grads[1][i]) : mg;
    }
    char what[200];
    snprintf(what, sizeof what,
             "training step flash vs matrix: loss %.7f vs %.7f, gradients max |diff| / max |g| = "
             "%.2e (tol 1e-5)",
             loss[0] / (B * T), loss[1] / (B * T), md / mg);
    expect(fabsf(loss[0] - loss[1]) <= 1e-5f * fabsf(loss[1]) && md / mg <= 1e-5 && mg > 0, what);
    snprintf(what, sizeof what,
             "flash model allocates less (%.1f KiB) than the matrix model (%.1f KiB), by at least "
             "the three (B,NH,T,T) buffers",
             bytes[0] / 1024.0, bytes[1] / 1024.0);
    expect(bytes[0] + (uint64_t)(2 * 4 * 40 * 40) * 4 * 3 <= bytes[1] + 4096, what);
    free(grads[0]);
    free(grads[1]);
}

/* 4. doc_mask in the model: with RoPE the scores depend on relative positions only, so the tokens
 * after an end-of-text see exactly what a sequence starting there would see. The logits of a
 * masked batch after the end-of-text must match an unmasked forward on the shifted tokens, and
 * the logits up to and including the end-of-text (which belongs to the document it closes) must
 * match the unmasked forward of the whole row. */
static void doc_mask_model(cf_backend *be) {
    const int T = 40, eot = 63, p = 13;
    int32_t x[40], shifted[40];
    cf_rng r;
    cf_rng_seed(&r, 21);
    for (int i = 0; i < T; i++) x[i] = (int32_t)(cf_rng_uniform(&r) * 62) % 62;
    x[p] = eot;
    for (int i = 0; i < T; i++) shifted[i] = i + p + 1 < T ? x[i + p + 1] : 1;
    cf_config c = small_config("flash");
    FR_OK(cf_config_set(&c, "doc_mask=true", "test"));
    cf_model *masked = make_model(be, &c, 1, T, NULL);
    c.doc_mask = 0;
    cf_model *plain = make_model(be, &c, 1, T, NULL);
    cf_log_set_callback(quiet_log, NULL);
    expect(cf_model_set_doc_eot(masked, -1) == CF_ERR_INVALID,
           "doc_mask: the model refuses a tokenizer without an end-of-text id");
    cf_log_set_callback(NULL, NULL);
    FR_OK(cf_model_set_doc_eot(masked, eot));
    float *a = fr_malloc(64 * 4), *b = fr_malloc(64 * 4);
    double worst_after = 0.0, worst_before = 0.0, diff_plain = 0.0;
    FR_OK(cf_model_forward(masked, x, NULL, 1, T, NULL));
    float *lm = fr_malloc((size_t)T * 64 * 4);
    for (int t = 0; t < T; t++) FR_OK(cf_model_logits_row(masked, 0, t, lm + (size_t)t * 64));
    FR_OK(cf_model_forward(plain, shifted, NULL, 1, T, NULL));
    for (int t = p + 1; t < T; t++) {
        FR_OK(cf_model_logits_row(plain, 0, t - p - 1, b));
        for (int v = 0; v < 64; v++) {
            const double d = fabs((double)lm[(size_t)t * 64 + v] - b[v]);
            worst_after = d > worst_after ? d : worst_after;
        }
    }
    FR_OK(cf_model_forward(plain, x, NULL, 1, T, NULL));
    for (int t = 0; t < T; t++) {
        FR_OK(cf_model_logits_row(plain, 0, t, a));
        for (int v = 0; v < 64; v++) {
            const double d = fabs((double)lm[(size_t)t * 64 + v] - a[v]);
            if (t <= p) worst_before = d > worst_before ? d : worst_before;
            else diff_plain = d > diff_plain ? d : diff_plain;
        }
    }
    char what[200];
    snprintf(what, sizeof what,
             "doc_mask: logits after the end-of-text match a forward of the next document alone "
             "(max |diff| %.2e, tol 3e-5)",
             worst_after);
    expect(worst_after <= 3e-5, what);
    snprintf(what, sizeof what,
             "doc_mask: logits up to and including the end-of-text match the unmasked row (max "
             "|diff| %.2e, tol 1e-5)",
             worst_before);
    expect(worst_before <= 1e-5, what);
    snprintf(what, sizeof what,
             "doc_mask: and the mask does change the logits after it (max |diff| %.2e > 1e-3)",
             diff_plain);
    expect(diff_plain > 1e-3, what);
    free(a), free(b), free(lm);
    cf_model_free(masked);
    cf_model_free(plain);
}

int main(void) {
    cf_backend *be = NULL;
    FR_OK(cf_backend_cpu_create("cpu", NULL, &be));
    fr_run_all(be, "cpu", 0);
    thread_independence(be);
    refusals(be);
    training_step(be);
    doc_mask_model(be);
    cf_backend_destroy(be);
    printf("%s test_flash_attention: %d of %d checks failed\n", fr_fails ? "FAIL" : "PASS",
           fr_fails, fr_checks);
    return fr_fails ? 1 : 0;
}
