/* clformer: GPT-2 forward, backward and AdamW expressed as backend ops. */
#include "model/gpt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- layout ------------------------------------------------------------------------------ */

static void layout_params(cf_model *m) {
    cf_model_layout(&m->cfg, m->params, &m->num_params, &m->num_decay_params);
}

static void layout_acts(cf_model *m) {
    cf_act_info acts[CF_NUM_ACTS];
    size_t gacts[CF_NUM_GACTS];
    cf_model_act_layout(&m->cfg, m->B, m->T, acts, gacts);
    /* elements per chunk allowed by the device (0 = no limit) */
    const size_t cap = m->be->max_alloc ? m->be->max_alloc / sizeof(float) : (size_t)-1;
    size_t off = 0, total = 0;
    int chunk = 0;
    for (int i = 0; i < CF_NUM_ACTS; i++) {
        const size_t sz_ = (acts[i].size + 15) & ~(size_t)15; /* 64-byte aligned starts */
        if (off > 0 && off + sz_ > cap) {
            m->act_chunk_elems[chunk++] = off;
            off = 0;
        }
        m->act_chunk[i] = chunk;
        m->act_off[i] = off;
        m->act_size[i] = acts[i].size;
        m->act_stride[i] = acts[i].slice;
        off += sz_;
        total += sz_;
    }
    m->act_chunk_elems[chunk++] = off;
    m->n_act_chunks = chunk;
    m->acts_elems = total;
    off = 0;
    for (int i = 0; i < CF_NUM_GACTS; i++) {
        m->gact_off[i] = off;
        off += (gacts[i] + 15) & ~(size_t)15;
    }
    m->gacts_elems = off;
}

static inline cf_view A(cf_model *m, int id, size_t l);

int cf_model_create(cf_backend *be, const cf_config *cfg, int max_B, int max_T, int training,
                    cf_model **out) {
    *out = NULL;
    if (max_B <= 0 || max_T <= 0 || max_T > cfg->max_length) {
        CF_ERROR("model: batch %d x %d is invalid for max_length %d", max_B, max_T,
                 cfg->max_length);
        return CF_ERR_INVALID;
    }
    cf_model *m = calloc(1, sizeof *m);
    if (!m) return CF_ERR_NOMEM;
    m->cfg = *cfg;
    m->be = be;
    m->B = max_B;
    m->T = max_T;
    layout_params(m);
    layout_acts(m);
    int rc;
    const size_t pb = m->num_params * sizeof(float);
    if ((rc = cf_be_alloc(be, pb, &m->params_buf)) < 0) goto fail;
    for (int c = 0; c < m->n_act_chunks; c++)
        if ((rc = cf_be_alloc(be, m->act_chunk_elems[c] * sizeof(float), &m->acts_bufs[c])) < 0)
            goto fail;
    if (m->n_act_chunks > 1)
        CF_DEBUG("model: activations split into %d buffers (device allows %zu bytes per buffer)",
                 m->n_act_chunks, be->max_alloc);
    if (training) {
        if ((rc = cf_be_alloc(be, pb, &m->grads_buf)) < 0) goto fail;
        if ((rc = cf_be_alloc(be, pb, &m->m_buf)) < 0) goto fail;
        if ((rc = cf_be_alloc(be, pb, &m->v_buf)) < 0) goto fail;
        if ((rc = cf_be_alloc(be, m->gacts_elems * sizeof(float), &m->gacts_buf)) < 0) goto fail;
        m->have_grads = 1;
        if ((rc = cf_be_fill(be, cf_view_f32(m->grads_buf, 0), 0.0f, m->num_params)) < 0 ||
            (rc = cf_be_fill(be, cf_view_f32(m->m_buf, 0), 0.0f, m->num_params)) < 0 ||
            (rc = cf_be_fill(be, cf_view_f32(m->v_buf, 0), 0.0f, m->num_params)) < 0)
            goto fail;
    }
    /* scratch scalars start defined */
    if ((rc = cf_be_fill(be, A(m, CF_A_scalars, 0), 0.0f, 64)) < 0)
        goto fail;
    *out = m;
    return CF_OK;
fail:
    if (rc == CF_ERR_NOMEM)
        CF_ERROR("model: not enough memory on %s for %zu parameters and batch %d x %d; lower "
                 "batch_size or max_length",
                 cf_be_name(be), m->num_params, max_B, max_T);
    cf_model_free(m);
    return rc;
}

void cf_model_free(cf_model *m) {
    if (!m) return;
    cf_be_free(m->be, m->params_buf);
    cf_be_free(m->be, m->grads_buf);
    cf_be_free(m->be, m->m_buf);
    cf_be_free(m->be, m->v_buf);
    for (int c = 0; c < m->n_act_chunks; c++) cf_be_free(m->be, m->acts_bufs[c]);
    cf_be_free(m->be, m->gacts_buf);
    free(m);
}

/* ---- views ------------------------------------------------------------------------------- */

/* layer l's slice of a parameter, its gradient, or an activation: strides from the tables; an
 * absent parameter (a bias the config leaves out) is CF_VIEW_NULL */
static inline cf_view P(cf_model *m, int id, size_t l) {
    if (!m->params[id].present) return CF_VIEW_NULL;
    return cf_view_f32(m->params_buf, m->params[id].offset + l * m->params[id].layer_stride);
}
static inline cf_view G(cf_model *m, int id, size_t l) {
    if (!m->params[id].present) return CF_VIEW_NULL;
    return cf_view_f32(m->grads_buf, m->params[id].offset + l * m->params[id].layer_stride);
}
/* per-layer activation slices are strided by the allocated (max) B*T, packed within */
static inline cf_view A(cf_model *m, int id, size_t l) {
    const enum cf_dtype t = id == CF_A_tokens || id == CF_A_targets ? CF_I32 : CF_F32;
    return cf_view_typed(m->acts_bufs[m->act_chunk[id]], t, m->act_off[id] + l * m->act_stride[id]);
}
static inline cf_view GA(cf_model *m, int id) { return cf_view_f32(m->gacts_buf, m->gact_off[id]); }

/* ---- init -------------------------------------------------------------------------------- */

int cf_model_init(cf_model *m, uint64_t seed) {
    float *host = malloc(m->num_params * sizeof(float));
    if (!host) return CF_ERR_NOMEM;
    cf_rng rng;
    cf_rng_seed(&rng, seed);
    const float resid_std = 0.02f / sqrtf(2.0f * (float)m->cfg.num_layers);
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &m->params[i];
        float *w = host + p->offset;
        for (size_t j = 0; j < p->size; j++) {
            switch (p->init) {
            case CF_INIT_NORMAL: w[j] = 0.02f * cf_rng_normal(&rng); break;
            case CF_INIT_RESID: w[j] = resid_std * cf_rng_normal(&rng); break;
            case CF_INIT_ONE: w[j] = 1.0f; break;
            default: w[j] = 0.0f; break;
            }
        }
    }
    int rc = cf_model_set_params(m, host);
    free(host);
    m->opt_step = 0;
    return rc;
}

/* ---- forward ----------------------------------------------------------------------------- */

static int upload_batch(cf_model *m, const int32_t *tokens, const int32_t *targets, int B, int T) {
    cf_backend *be = m->be;
    const size_t BT = (size_t)B * T;
    CF_TRY(cf_be_upload(be, A(m, CF_A_tokens, 0), tokens, BT * sizeof(int32_t)));
    if (targets) CF_TRY(cf_be_upload(be, A(m, CF_A_targets, 0), targets, BT * sizeof(int32_t)));
    return CF_OK;
}

/* Runs the network up to the logits for a batch already uploaded. */
static int forward_logits(cf_model *m, int B, int T) {
    cf_backend *be = m->be;
    const cf_config *c = &m->cfg;
    const int C = c->d_model, L = c->num_layers, F = c->d_ff, NH = c->num_heads,
              V = c->vocab_size;
    const int BT = B * T;

    cf_prof_scope(be, -1, CF_PHASE_FORWARD);
    CF_TRY(cf_be_encoder_forward(be, A(m, CF_A_encoded, 0), A(m, CF_A_tokens, 0),
                                 P(m, CF_P_wte, 0), P(m, CF_P_wpe, 0), B, T, C, V));
    for (int l = 0; l < L; l++) {
        cf_view residual = l == 0 ? A(m, CF_A_encoded, 0) : A(m, CF_A_residual3, l - 1);
        cf_view ln1 = A(m, CF_A_ln1, l), qkv = A(m, CF_A_qkv, l);
        cf_view atty = A(m, CF_A_atty, l), att = A(m, CF_A_att, l);
        cf_view attproj = A(m, CF_A_attproj, l), res2 = A(m, CF_A_residual2, l);
        cf_view ln2 = A(m, CF_A_ln2, l), fch = A(m, CF_A_fch, l);
        cf_view fchg = A(m, CF_A_fch_gelu, l), fcproj = A(m, CF_A_fcproj, l);
        cf_view res3 = A(m, CF_A_residual3, l);

        cf_prof_scope(be, l, CF_PHASE_FORWARD);
        CF_TRY(cf_be_layernorm_forward(be, ln1, A(m, CF_A_ln1_mean, l),
                                       A(m, CF_A_ln1_rstd, l), residual,
                                       P(m, CF_P_ln1_w, l), P(m, CF_P_ln1_b, l), BT, C, 1e-5f));
        CF_TRY(cf_be_matmul_forward(be, qkv, ln1, P(m, CF_P_qkv_w, l),
                                    P(m, CF_P_qkv_b, l), BT, C, 3 * C));
        CF_TRY(cf_be_attention_forward(be, atty, att, qkv, B, T, NH, NH, C / NH));
        CF_TRY(cf_be_matmul_forward(be, attproj, atty, P(m, CF_P_attn_proj_w, l),
                                    P(m, CF_P_attn_proj_b, l), BT, C, C));
        CF_TRY(cf_be_residual_forward(be, res2, residual, attproj, (size_t)BT * C));
        CF_TRY(cf_be_layernorm_forward(be, ln2, A(m, CF_A_ln2_mean, l),
                                       A(m, CF_A_ln2_rstd, l), res2, P(m, CF_P_ln2_w, l),
                                       P(m, CF_P_ln2_b, l), BT, C, 1e-5f));
        /* fch = ln2 @ fc_w^T + fc_b, fchg = gelu(fch) (one launch where the backend can) */
        CF_TRY(cf_be_matmul_gelu_forward(be, fch, fchg, ln2, P(m, CF_P_fc_w, l),
                                         P(m, CF_P_fc_b, l), BT, C, F));
        CF_TRY(cf_be_matmul_forward(be, fcproj, fchg, P(m, CF_P_fc_proj_w, l),
                                    P(m, CF_P_fc_proj_b, l), BT, F, C));
        CF_TRY(cf_be_residual_forward(be, res3, res2, fcproj, (size_t)BT * C));
    }
    cf_prof_scope(be, -1, CF_PHASE_FORWARD);
    CF_TRY(cf_be_layernorm_forward(be, A(m, CF_A_lnf, 0), A(m, CF_A_lnf_mean, 0),
                                   A(m, CF_A_lnf_rstd, 0), A(m, CF_A_residual3, L - 1),
                                   P(m, CF_P_lnf_w, 0), P(m, CF_P_lnf_b, 0), BT, C, 1e-5f));
    /* tied LM head: logits(BT,V) = lnf(BT,C) @ wte(V,C)^T */
    CF_TRY(cf_be_matmul_forward(be, A(m, CF_A_logits, 0), A(m, CF_A_lnf, 0),
                                P(m, CF_P_wte, 0), CF_VIEW_NULL, BT, C, V));
    m->cur_B = B;
    m->cur_T = T;
    return CF_OK;
}

static int check_batch(cf_model *m, int B, int T) {
    if (B <= 0 || T <= 0 || B > m->B || T > m->T) {
        CF_ERROR("model: batch %d x %d exceeds the allocated %d x %d", B, T, m->B, m->T);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}

int cf_model_forward(cf_model *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                     float *loss) {
    CF_TRY(check_batch(m, B, T));
    CF_TRY(upload_batch(m, tokens, targets, B, T));
    CF_TRY(forward_logits(m, B, T));
    if (targets) {
        cf_backend *be = m->be;
        const int BT = B * T, V = m->cfg.vocab_size;
        cf_view scal = A(m, CF_A_scalars, 0);
        CF_TRY(cf_be_crossentropy_forward(be, A(m, CF_A_losses, 0), A(m, CF_A_logits, 0),
                                          A(m, CF_A_targets, 0), BT, V, 0.0f));
        CF_TRY(cf_be_reduce_sum(be, cf_view_add(scal, 63), A(m, CF_A_losses, 0), (size_t)BT,
                                0));
        float sum = 0.0f;
        CF_TRY(cf_be_download(be, &sum, cf_view_add(scal, 63), sizeof(float)));
        if (loss) *loss = sum / (float)BT;
    }
    return CF_OK;
}

/* ---- backward ---------------------------------------------------------------------------- */

int cf_model_zero_grad(cf_model *m) {
    cf_prof_scope(m->be, -1, CF_PHASE_BACKWARD);
    return cf_be_fill(m->be, cf_view_f32(m->grads_buf, 0), 0.0f, m->num_params);
}

int cf_model_forward_backward(cf_model *m, const int32_t *tokens, const int32_t *targets, int B,
                              int T, float dloss_scale, int slot) {
    if (!m->have_grads) {
        CF_ERROR("model: created without training buffers");
        return CF_ERR_INVALID;
    }
    CF_ASSERT(slot >= 0 && slot < 60);
    CF_TRY(check_batch(m, B, T));
    CF_TRY(upload_batch(m, tokens, targets, B, T));
    CF_TRY(forward_logits(m, B, T));

    cf_backend *be = m->be;
    const cf_config *c = &m->cfg;
    const int C = c->d_model, L = c->num_layers, F = c->d_ff, NH = c->num_heads,
              V = c->vocab_size;
    const int BT = B * T;

    /* fused softmax + cross-entropy: losses and dlogits (in place over the logits) */
    cf_prof_scope(be, -1, CF_PHASE_BACKWARD);
    cf_view logits = A(m, CF_A_logits, 0), losses = A(m, CF_A_losses, 0);
    CF_TRY(cf_be_crossentropy_fused(be, losses, logits, logits, A(m, CF_A_targets, 0), BT, V,
                                    dloss_scale / (float)BT, 0.0f));
    CF_TRY(cf_be_reduce_sum(be, cf_view_add(A(m, CF_A_scalars, 0), (size_t)slot), losses,
                            (size_t)BT, 0));

    cf_view dres = GA(m, CF_G_dres), dln = GA(m, CF_G_dln), datty = GA(m, CF_G_datty);
    cf_view dqkv = GA(m, CF_G_dqkv), dfchg = GA(m, CF_G_dfch_gelu);
    cf_view datt = GA(m, CF_G_datt), dpreatt = GA(m, CF_G_dpreatt);

    /* LM head: dlnf = dlogits @ wte; dwte += dlogits^T @ lnf */
    CF_TRY(cf_be_matmul_backward_set(be, dln, G(m, CF_P_wte, 0), CF_VIEW_NULL, logits,
                                 A(m, CF_A_lnf, 0), P(m, CF_P_wte, 0), BT, C, V));
    CF_TRY(cf_be_fill(be, dres, 0.0f, (size_t)BT * C));
    CF_TRY(cf_be_layernorm_backward(be, dres, G(m, CF_P_lnf_w, 0), G(m, CF_P_lnf_b, 0), dln,
                                    A(m, CF_A_residual3, L - 1), P(m, CF_P_lnf_w, 0),
                                    A(m, CF_A_lnf_mean, 0), A(m, CF_A_lnf_rstd, 0), BT, C));

    for (int l = L - 1; l >= 0; l--) {
        cf_view residual = l == 0 ? A(m, CF_A_encoded, 0) : A(m, CF_A_residual3, l - 1);
        cf_view ln1 = A(m, CF_A_ln1, l), qkv = A(m, CF_A_qkv, l);
        cf_view atty = A(m, CF_A_atty, l), att = A(m, CF_A_att, l);
        cf_view res2 = A(m, CF_A_residual2, l), ln2 = A(m, CF_A_ln2, l);
        cf_view fch = A(m, CF_A_fch, l), fchg = A(m, CF_A_fch_gelu, l);

        cf_prof_scope(be, l, CF_PHASE_BACKWARD);
        /* residual3 = residual2 + fcproj: dfcproj = dres, and dres flows on to residual2 */
        /* dfchg receives d(fch) = (dres @ fc_proj_w) * gelu'(fch), assigned: the GELU's backward
         * with the product where the backend can, else a pass of its own (no zero-fill) */
        CF_TRY(cf_be_matmul_gelu_backward_set(be, dfchg, G(m, CF_P_fc_proj_w, l),
                                              G(m, CF_P_fc_proj_b, l), dres, fchg,
                                              P(m, CF_P_fc_proj_w, l), fch, BT, F,
                                              C));
        CF_TRY(cf_be_matmul_backward_set(be, dln, G(m, CF_P_fc_w, l),
                                     G(m, CF_P_fc_b, l), dfchg, ln2,
                                     P(m, CF_P_fc_w, l), BT, C, F));
        CF_TRY(cf_be_layernorm_backward(be, dres, G(m, CF_P_ln2_w, l), G(m, CF_P_ln2_b, l),
                                        dln, res2, P(m, CF_P_ln2_w, l),
                                        A(m, CF_A_ln2_mean, l), A(m, CF_A_ln2_rstd, l),
                                        BT, C));
        /* residual2 = residual + attproj: dattproj = dres (now d residual2) */
        CF_TRY(cf_be_matmul_backward_set(be, datty, G(m, CF_P_attn_proj_w, l),
                                     G(m, CF_P_attn_proj_b, l), dres, atty,
                                     P(m, CF_P_attn_proj_w, l), BT, C, C));
        /* dqkv is assigned by the attention backward (no zero-fill) */
        CF_TRY(cf_be_attention_backward(be, dqkv, datt, dpreatt, datty, qkv, att, B, T, NH, NH,
                                        C / NH));
        CF_TRY(cf_be_matmul_backward_set(be, dln, G(m, CF_P_qkv_w, l),
                                     G(m, CF_P_qkv_b, l), dqkv, ln1,
                                     P(m, CF_P_qkv_w, l), BT, C, 3 * C));
        CF_TRY(cf_be_layernorm_backward(be, dres, G(m, CF_P_ln1_w, l), G(m, CF_P_ln1_b, l),
                                        dln, residual, P(m, CF_P_ln1_w, l),
                                        A(m, CF_A_ln1_mean, l), A(m, CF_A_ln1_rstd, l),
                                        BT, C));
    }
    cf_prof_scope(be, -1, CF_PHASE_BACKWARD);
    CF_TRY(cf_be_encoder_backward(be, G(m, CF_P_wte, 0), G(m, CF_P_wpe, 0), dres,
                                  A(m, CF_A_tokens, 0), B, T, C, V));
    return CF_OK;
}

int cf_model_read_scalars(cf_model *m, float *out, int n) {
    return cf_be_download(m->be, out, A(m, CF_A_scalars, 0), (size_t)n * sizeof(float));
}

int cf_model_grad_norm(cf_model *m, float *norm) {
    cf_view out = cf_view_add(A(m, CF_A_scalars, 0), 62);
    cf_prof_scope(m->be, -1, CF_PHASE_OPTIMIZER);
    CF_TRY(cf_be_reduce_sum(m->be, out, cf_view_f32(m->grads_buf, 0), m->num_params, 1));
    float ss = 0.0f;
    CF_TRY(cf_be_download(m->be, &ss, out, sizeof(float)));
    *norm = sqrtf(ss);
    return CF_OK;
}

int cf_model_adamw(cf_model *m, float lr, float grad_scale) {
    const cf_config *c = &m->cfg;
    int t = ++m->opt_step;
    cf_prof_scope(m->be, -1, CF_PHASE_OPTIMIZER);
    size_t nd = m->num_decay_params, n = m->num_params;
    CF_TRY(cf_be_adamw(m->be, cf_view_f32(m->params_buf, 0), cf_view_f32(m->grads_buf, 0),
                       cf_view_f32(m->m_buf, 0), cf_view_f32(m->v_buf, 0), nd, lr, c->beta1,
                       c->beta2, c->eps, c->weight_decay, grad_scale, t));
    CF_TRY(cf_be_adamw(m->be, cf_view_f32(m->params_buf, nd), cf_view_f32(m->grads_buf, nd),
                       cf_view_f32(m->m_buf, nd), cf_view_f32(m->v_buf, nd), n - nd, lr, c->beta1,
                       c->beta2, c->eps, 0.0f, grad_scale, t));
    return CF_OK;
}

int cf_model_logits_row(cf_model *m, int b, int t, float *out) {
    const int V = m->cfg.vocab_size;
    if (b < 0 || b >= m->cur_B || t < 0 || t >= m->cur_T) return CF_ERR_INVALID;
    size_t off = ((size_t)b * m->cur_T + t) * V;
    return cf_be_download(m->be, out, cf_view_add(A(m, CF_A_logits, 0), off),
                          (size_t)V * sizeof(float));
}

/* ---- host transfer ------------------------------------------------------------------------ */

int cf_model_get_params(cf_model *m, float *host) {
    return cf_be_download(m->be, host, cf_view_f32(m->params_buf, 0),
                          m->num_params * sizeof(float));
}
int cf_model_set_params(cf_model *m, const float *host) {
    return cf_be_upload(m->be, cf_view_f32(m->params_buf, 0), host, m->num_params * sizeof(float));
}
int cf_model_get_grads(cf_model *m, float *host) {
    if (!m->have_grads) return CF_ERR_INVALID;
    return cf_be_download(m->be, host, cf_view_f32(m->grads_buf, 0), m->num_params * sizeof(float));
}
int cf_model_get_opt_state(cf_model *m, float *hm, float *hv) {
    if (!m->have_grads) return CF_ERR_INVALID;
    CF_TRY(cf_be_download(m->be, hm, cf_view_f32(m->m_buf, 0), m->num_params * sizeof(float)));
    return cf_be_download(m->be, hv, cf_view_f32(m->v_buf, 0), m->num_params * sizeof(float));
}
int cf_model_set_opt_state(cf_model *m, const float *hm, const float *hv) {
    if (!m->have_grads) return CF_ERR_INVALID;
    CF_TRY(cf_be_upload(m->be, cf_view_f32(m->m_buf, 0), hm, m->num_params * sizeof(float)));
    return cf_be_upload(m->be, cf_view_f32(m->v_buf, 0), hv, m->num_params * sizeof(float));
}

/* ---- schedule ------------------------------------------------------------------- */

float cf_lr_schedule(const cf_config *cfg, int step) {
    const float lr = cfg->learning_rate, lr_min = cfg->learning_rate * cfg->min_lr_ratio;
    if (step < cfg->warmup_steps) return lr * (float)(step + 1) / (float)cfg->warmup_steps;
    int decay_steps = cfg->steps - cfg->warmup_steps;
    if (decay_steps < 1) decay_steps = 1;
    float progress = (float)(step - cfg->warmup_steps) / (float)decay_steps;
    if (progress > 1.0f) progress = 1.0f;
    return lr_min + 0.5f * (lr - lr_min) * (1.0f + cosf(3.14159265358979f * progress));
}
