/* clformer: GPT-2 forward, backward and AdamW expressed as backend ops. */
#include "model/gpt.h"
#include "model/optim.h"

#include <math.h>

#include "data/dataset.h"
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
    m->act_dtype = cf_model_act_dtype(&m->cfg);
    /* bytes per chunk allowed by the device (0 = no limit); every start 64-byte aligned */
    const size_t cap = m->be->max_alloc ? m->be->max_alloc : (size_t)-1;
#define CF_ALIGN64(x) (((x) + 63) & ~(size_t)63)
    size_t off = 0, total = 0;
    int chunk = 0;
    for (int i = 0; i < CF_NUM_ACTS; i++) {
        const int h = acts[i].half;
        const size_t work = CF_ALIGN64(4 * (h ? acts[i].slice : acts[i].size));
        const size_t sz_ = work + (h ? CF_ALIGN64(2 * acts[i].size) : 0);
        if (off > 0 && off + sz_ > cap) {
            m->act_chunk_bytes[chunk++] = off;
            off = 0;
        }
        m->act_chunk[i] = chunk;
        m->act_off[i] = off;
        m->act_half_off[i] = h ? off + work : 0;
        m->act_half[i] = h;
        m->act_stride[i] = acts[i].slice;
        m->act_n[i] = acts[i].n;
        off += sz_;
        total += sz_;
    }
#undef CF_ALIGN64
    m->act_chunk_bytes[chunk++] = off;
    m->n_act_chunks = chunk;
    m->acts_bytes = total;
    off = 0;
    for (int i = 0; i < CF_NUM_GACTS; i++) {
        m->gact_off[i] = off;
        off += (gacts[i] + 15) & ~(size_t)15;
    }
    m->gacts_elems = off;
}

static inline cf_view A(cf_model *m, int id, size_t l);

/* RoPE's (cos, sin) table (T, hs/2, 2) for positions [0, T): angles in double, rounded once */
static int upload_rope_table(cf_model *m) {
    const int hs = cf_model_head_size(&m->cfg), half = hs / 2;
    const double theta = m->cfg.rope_theta;
    float *cs = malloc(sizeof(float) * (size_t)m->T * (size_t)hs);
    if (!cs) return CF_ERR_NOMEM;
    for (int p = 0; p < m->T; p++)
        for (int i = 0; i < half; i++) {
            const double a = p * pow(theta, -2.0 * i / hs);
            cs[((size_t)p * half + i) * 2] = (float)cos(a);
            cs[((size_t)p * half + i) * 2 + 1] = (float)sin(a);
        }
    int rc = cf_be_upload(m->be, A(m, CF_A_rope_cs, 0), cs, sizeof(float) * (size_t)m->T * hs);
    free(cs);
    return rc;
}

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
    m->head_rows = cf_model_head_rows(cfg, max_B, max_T);
    m->flash = cf_model_flash(cfg, max_T);
    m->doc_eot = -1;
    if (m->flash && !cf_be_has_flash(be)) {
        CF_ERROR("model: backend %s has no flash attention, which this config needs (%s); set "
                 "attention: matrix without attention_window and doc_mask",
                 cf_be_name(be),
                 cfg->attention_window > 0 ? "attention_window"
                 : cfg->doc_mask           ? "doc_mask"
                 : cfg->attention == CF_ATTN_FLASH ? "attention: flash"
                                                   : "attention: auto at this max_length");
        free(m);
        return CF_ERR_UNSUPPORTED;
    }
    if (cfg->doc_mask) {
        m->doc_host = malloc(sizeof(int32_t) * (size_t)max_B * (size_t)max_T);
        if (!m->doc_host) {
            free(m);
            return CF_ERR_NOMEM;
        }
    }
    layout_params(m);
    layout_acts(m);
    int rc;
    const size_t pb = m->num_params * sizeof(float);
    if ((rc = cf_be_alloc(be, pb, &m->params_buf)) < 0) goto fail;
    for (int c = 0; c < m->n_act_chunks; c++)
        if ((rc = cf_be_alloc(be, m->act_chunk_bytes[c], &m->acts_bufs[c])) < 0)
            goto fail;
    if (m->n_act_chunks > 1)
        CF_DEBUG("model: activations split into %d buffers (device allows %zu bytes per buffer)",
                 m->n_act_chunks, be->max_alloc);
    if (training) {
        if ((rc = cf_be_alloc(be, pb, &m->grads_buf)) < 0) goto fail;
        m->adam_elems = cf_optim_adam_layout(cfg, m->params, m->num_params, m->adam_off);
        const size_t ab = (m->adam_elems ? m->adam_elems : 1) * sizeof(float);
        if ((rc = cf_be_alloc(be, ab, &m->m_buf)) < 0) goto fail;
        if ((rc = cf_be_alloc(be, ab, &m->v_buf)) < 0) goto fail;
        if ((rc = cf_be_alloc(be, m->gacts_elems * sizeof(float), &m->gacts_buf)) < 0) goto fail;
        if ((rc = cf_muon_create(m)) < 0) goto fail; /* optimizer muon only */
        m->have_grads = 1;
        if ((rc = cf_be_fill(be, cf_view_f32(m->grads_buf, 0), 0.0f, m->num_params)) < 0 ||
            (rc = cf_be_fill(be, cf_view_f32(m->m_buf, 0), 0.0f, m->adam_elems)) < 0 ||
            (rc = cf_be_fill(be, cf_view_f32(m->v_buf, 0), 0.0f, m->adam_elems)) < 0)
            goto fail;
    }
    /* scratch scalars start defined */
    if ((rc = cf_be_fill(be, A(m, CF_A_scalars, 0), 0.0f, 64)) < 0)
        goto fail;
    if (cf_model_rope(cfg) && (rc = upload_rope_table(m)) < 0) goto fail;
    *out = m;
    return CF_OK;
fail:
    if (rc == CF_ERR_NOMEM)
        CF_ERROR("model: not enough memory on %s for %zu parameters and batch %d x %d; lower "
                 "batch_size or max_length%s",
                 cf_be_name(be), m->num_params, max_B, max_T,
                 training && cfg->recompute != CF_RECOMPUTE_BLOCK
                     ? ", or set recompute=block (docs/memory.md)"
                     : "");
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
    free(m->doc_host);
    cf_muon_free(m);
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
/* per-layer activation slices are strided by the allocated (max) B*T, packed within; a tensor
 * held once (recomputed layer by layer) is the same slice for every layer, and so is a tensor
 * stored half: its fp32 work slice (HA gives the half slices) */
static inline cf_view A(cf_model *m, int id, size_t l) {
    const enum cf_dtype t =
        id == CF_A_tokens || id == CF_A_targets || id == CF_A_doc ? CF_I32 : CF_F32;
    const size_t slot = m->act_n[id] > 1 && !m->act_half[id] ? l : 0;
    cf_view v = {m->acts_bufs[m->act_chunk[id]], m->act_off[id] + slot * m->act_stride[id] * 4, t};
    return v;
}
/* layer l's half slice of a tensor stored half */
static inline cf_view HA(cf_model *m, int id, size_t l) {
    cf_view v = {m->acts_bufs[m->act_chunk[id]],
                 m->act_half_off[id] + l * m->act_stride[id] * cf_dtype_size(m->act_dtype),
                 m->act_dtype};
    return v;
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
    if (m->cfg.doc_mask && m->doc_eot >= 0) {
        const size_t ends = cf_doc_starts(tokens, B, T, m->doc_eot, m->doc_host);
        if (ends == 0 && !m->doc_noted) {
            m->doc_noted = 1;
            CF_INFO("doc_mask: a batch holds no end-of-text token (id %d): each of its sequences "
                    "is one document, and the mask changes nothing there",
                    (int)m->doc_eot);
        }
        CF_TRY(cf_be_upload(be, A(m, CF_A_doc, 0), m->doc_host, BT * sizeof(int32_t)));
    }
    return CF_OK;
}

int cf_model_set_doc_eot(cf_model *m, int32_t eot) {
    if (m->cfg.doc_mask && eot < 0) {
        CF_ERROR("model: doc_mask needs the tokenizer's end-of-text id, but it has none; set "
                 "doc_mask: false or use a tokenizer with <|endoftext|>");
        return CF_ERR_INVALID;
    }
    m->doc_eot = m->cfg.doc_mask ? eot : -1;
    return CF_OK;
}

/* the flash attention descriptor and document starts of a B x T batch */
static cf_attn_desc attn_desc(const cf_model *m, int B, int T) {
    const cf_config *c = &m->cfg;
    const cf_attn_desc d = {B, T, c->num_heads, cf_config_kv_heads(c), cf_model_head_size(c),
                            c->attention_window};
    return d;
}
static cf_view doc_view(cf_model *m) {
    return m->cfg.doc_mask && m->doc_eot >= 0 ? A(m, CF_A_doc, 0) : CF_VIEW_NULL;
}

/* The block layer l uses: layers cycle over the stored blocks when they share them. */
static inline size_t blk(const cf_model *m, int l) {
    return (size_t)(l % cf_config_blocks(&m->cfg));
}

/* out = norm(inp) over rows of C: LayerNorm (mean, rstd, optional bias) or RMSNorm (rstd) */
static int norm_forward(cf_model *m, cf_view out, cf_view mean, cf_view rstd, cf_view inp,
                        cf_view w, cf_view b, int N) {
    const cf_config *c = &m->cfg;
    if (cf_model_layernorm(c))
        return cf_be_layernorm_forward(m->be, out, mean, rstd, inp, w, b, N, c->d_model,
                                       c->norm_eps);
    return cf_be_rmsnorm_forward(m->be, out, rstd, inp, w, N, 1, c->d_model, c->d_model,
                                 c->norm_eps);
}
/* dinp += the input gradient of norm_forward; dw (and db) += */
static int norm_backward(cf_model *m, cf_view dinp, cf_view dw, cf_view db, cf_view dout,
                         cf_view inp, cf_view w, cf_view mean, cf_view rstd, int N) {
    const cf_config *c = &m->cfg;
    if (cf_model_layernorm(c))
        return cf_be_layernorm_backward(m->be, dinp, dw, db, dout, inp, w, mean, rstd, N,
                                        c->d_model);
    return cf_be_rmsnorm_backward(m->be, dinp, dw, dout, inp, w, rstd, N, 1, c->d_model,
                                  c->d_model, 1);
}

/* the LM head's weight: wte when tied, else lm_head */
static inline int head_id(const cf_model *m) {
    return cf_model_tied_head(&m->cfg) ? CF_P_wte : CF_P_lm_head;
}

/* What block_forward runs for layer l: the whole block (the forward pass); the block without
 * its last linear and residual add (the recomputation under `block`: the backward reads neither
 * the projection nor residual3 of the layer); the attention op alone (the recomputation under
 * `attention`: atty and the probabilities again from the kept qkv). Recomputing runs the same
 * ops on the same inputs as the forward, so the results are the same bits (but for the tensors
 * bf16/fp16 stores half: the recomputation reads their rounded values). */
enum { BLOCK_ALL, BLOCK_FOR_BACKWARD, BLOCK_ATTENTION };

/* layer l's attention op: flash (out and the log-sum-exps) or the matrix path (out and the
 * probabilities) */
static int attention_forward(cf_model *m, int l, int B, int T, cf_view atty, cf_view att,
                             cf_view qkv) {
    if (m->flash) {
        const cf_attn_desc d = attn_desc(m, B, T);
        return cf_be_flash_forward(m->be, &d, atty, A(m, CF_A_lse, l), qkv, doc_view(m));
    }
    const cf_config *c = &m->cfg;
    return cf_be_attention_forward(m->be, atty, att, qkv, B, T, c->num_heads,
                                   cf_config_kv_heads(c), cf_model_head_size(c));
}

static int block_forward(cf_model *m, int l, int B, int T, int what) {
    cf_backend *be = m->be;
    const cf_config *c = &m->cfg;
    const int C = c->d_model, F = c->d_ff, NH = c->num_heads, KVH = cf_config_kv_heads(c),
              hs = cf_model_head_size(c), QKV = cf_model_qkv_width(c), FI = cf_model_fc_width(c);
    const int BT = B * T;
    const size_t b = blk(m, l);
    cf_view residual = l == 0 ? A(m, CF_A_encoded, 0) : A(m, CF_A_residual3, l - 1);
    cf_view ln1 = A(m, CF_A_ln1, l), qkv = A(m, CF_A_qkv, l);
    cf_view atty = A(m, CF_A_atty, l), att = A(m, CF_A_att, l);
    /* the attention's and the MLP's output projections share one scratch tensor: each is read
     * only by the residual add that follows it */
    cf_view proj = A(m, CF_A_proj, 0), res2 = A(m, CF_A_residual2, l);
    cf_view ln2 = A(m, CF_A_ln2, l), fch = A(m, CF_A_fch, l);
    cf_view fcha = A(m, CF_A_fch_act, l);
    cf_view res3 = A(m, CF_A_residual3, l);

    if (what == BLOCK_ATTENTION) return attention_forward(m, l, B, T, atty, att, qkv);
    CF_TRY(norm_forward(m, ln1, A(m, CF_A_ln1_mean, l), A(m, CF_A_ln1_rstd, l), residual,
                        P(m, CF_P_ln1_w, b), P(m, CF_P_ln1_b, b), BT));
    if (cf_model_qk_norm(c)) {
        /* qkv_raw = the GEMM; qkv = its copy with each q and k head RMS-normalised */
        cf_view raw = A(m, CF_A_qkv_raw, l);
        CF_TRY(cf_be_matmul_forward(be, raw, ln1, P(m, CF_P_qkv_w, b), P(m, CF_P_qkv_b, b), BT,
                                    C, QKV));
        CF_TRY(cf_be_copy(be, qkv, raw, (size_t)BT * QKV));
        CF_TRY(cf_be_rmsnorm_forward(be, qkv, A(m, CF_A_q_rstd, l), raw, P(m, CF_P_q_norm_w, b),
                                     BT, NH, hs, QKV, c->norm_eps));
        CF_TRY(cf_be_rmsnorm_forward(be, cf_view_add(qkv, (size_t)NH * hs), A(m, CF_A_k_rstd, l),
                                     cf_view_add(raw, (size_t)NH * hs), P(m, CF_P_k_norm_w, b),
                                     BT, KVH, hs, QKV, c->norm_eps));
    } else {
        CF_TRY(cf_be_matmul_forward(be, qkv, ln1, P(m, CF_P_qkv_w, b), P(m, CF_P_qkv_b, b), BT,
                                    C, QKV));
    }
    if (cf_model_rope(c)) /* q and k heads are adjacent in a row: one call rotates both */
        CF_TRY(cf_be_rope(be, qkv, A(m, CF_A_rope_cs, 0), B, T, NH + KVH, hs, QKV, 0, 0));
    CF_TRY(attention_forward(m, l, B, T, atty, att, qkv));
    CF_TRY(cf_be_matmul_forward(be, proj, atty, P(m, CF_P_attn_proj_w, b),
                                P(m, CF_P_attn_proj_b, b), BT, C, C));
    CF_TRY(cf_be_residual_forward(be, res2, residual, proj, (size_t)BT * C));
    CF_TRY(norm_forward(m, ln2, A(m, CF_A_ln2_mean, l), A(m, CF_A_ln2_rstd, l), res2,
                        P(m, CF_P_ln2_w, b), P(m, CF_P_ln2_b, b), BT));
    switch (c->mlp) {
    case CF_MLP_SWIGLU: /* fch = [gate | up], fcha = silu(gate) * up */
        CF_TRY(cf_be_matmul_forward(be, fch, ln2, P(m, CF_P_fc_w, b), P(m, CF_P_fc_b, b), BT, C,
                                    FI));
        CF_TRY(cf_be_swiglu_forward(be, fcha, fch, BT, F));
        break;
    case CF_MLP_RELU2:
        CF_TRY(cf_be_matmul_forward(be, fch, ln2, P(m, CF_P_fc_w, b), P(m, CF_P_fc_b, b), BT, C,
                                    FI));
        CF_TRY(cf_be_act_forward(be, CF_ACT_RELU2, fcha, fch, (size_t)BT * F));
        break;
    default:
        /* fch = ln2 @ fc_w^T + fc_b, fcha = gelu(fch) (one launch where the backend can) */
        CF_TRY(cf_be_matmul_gelu_forward(be, fch, fcha, ln2, P(m, CF_P_fc_w, b),
                                         P(m, CF_P_fc_b, b), BT, C, F));
        break;
    }
    if (what == BLOCK_FOR_BACKWARD) return CF_OK;
    CF_TRY(cf_be_matmul_forward(be, proj, fcha, P(m, CF_P_fc_proj_w, b),
                                P(m, CF_P_fc_proj_b, b), BT, F, C));
    return cf_be_residual_forward(be, res3, res2, proj, (size_t)BT * C);
}

/* Precision bf16/fp16: layer l's tensors stored half (cf_act_info.half) for the batch (B, T),
 * from their fp32 work slices into the layer's half slices (save, after the layer's forward) or
 * back (before its backward): the backward reads what a half tensor holds, whichever layer ran
 * last. */
static int half_acts(cf_model *m, int l, int B, int T, int save) {
    const size_t full = (size_t)m->B * (size_t)m->T, bt = (size_t)B * (size_t)T;
    for (int id = 0; id < CF_NUM_ACTS; id++) {
        if (!m->act_half[id]) continue;
        const size_t n = m->act_stride[id] / full * bt; /* every such slice is B*T rows */
        if (save)
            CF_TRY(cf_be_copy(m->be, HA(m, id, (size_t)l), A(m, id, (size_t)l), n));
        else
            CF_TRY(cf_be_copy(m->be, A(m, id, (size_t)l), HA(m, id, (size_t)l), n));
    }
    return CF_OK;
}

/* Runs the network up to the final norm's output lnf for a batch already uploaded; the LM head
 * runs chunk by chunk after it (head_loss, cf_model_logits_row). save: a backward follows (the
 * tensors stored half are saved layer by layer). */
static int forward_body(cf_model *m, int B, int T, int save) {
    cf_backend *be = m->be;
    const cf_config *c = &m->cfg;
    const int C = c->d_model, L = c->num_layers, V = c->vocab_size;
    const int BT = B * T;

    cf_prof_scope(be, -1, CF_PHASE_FORWARD);
    CF_TRY(cf_be_encoder_forward(be, A(m, CF_A_encoded, 0), A(m, CF_A_tokens, 0),
                                 P(m, CF_P_wte, 0), P(m, CF_P_wpe, 0), B, T, C, V));
    for (int l = 0; l < L; l++) {
        cf_prof_scope(be, l, CF_PHASE_FORWARD);
        CF_TRY(block_forward(m, l, B, T, BLOCK_ALL));
        if (save) CF_TRY(half_acts(m, l, B, T, 1));
    }
    cf_prof_scope(be, -1, CF_PHASE_FORWARD);
    CF_TRY(norm_forward(m, A(m, CF_A_lnf, 0), A(m, CF_A_lnf_mean, 0), A(m, CF_A_lnf_rstd, 0),
                        A(m, CF_A_residual3, L - 1), P(m, CF_P_lnf_w, 0), P(m, CF_P_lnf_b, 0),
                        BT));
    m->cur_B = B;
    m->cur_T = T;
    return CF_OK;
}

/* The LM head and the loss over the BT rows in chunks of head_rows (cf_model_head_rows), so the
 * logits buffer holds head_rows rows, not BT, where BT rows would exceed its budget: per chunk logits(n,V) = lnf rows @ W^T (W = wte when tied, else lm_head), then the
 * (soft-capped) cross-entropy of each row into losses. With dlnf (training) the fused op turns
 * the chunk's logits into dlogits in place, scaled by dscale, and dlnf's rows are ASSIGNED
 * dlogits @ W while W's gradient accumulates dlogits^T @ lnf rows, chunk after chunk. */
static int head_loss(cf_model *m, int BT, cf_view dlnf, float dscale) {
    cf_backend *be = m->be;
    const int C = m->cfg.d_model, V = m->cfg.vocab_size, hw = head_id(m);
    const float cap = m->cfg.logit_softcap;
    cf_view logits = A(m, CF_A_logits, 0);
    for (int r0 = 0; r0 < BT; r0 += m->head_rows) {
        const int n = BT - r0 < m->head_rows ? BT - r0 : m->head_rows;
        cf_view lnf = cf_view_add(A(m, CF_A_lnf, 0), (size_t)r0 * C);
        cf_view losses = cf_view_add(A(m, CF_A_losses, 0), (size_t)r0);
        cf_view targets = cf_view_add(A(m, CF_A_targets, 0), (size_t)r0);
        /* profiled as before the chunking: the head's product is forward, the loss backward */
        cf_prof_scope(be, -1, CF_PHASE_FORWARD);
        CF_TRY(cf_be_matmul_forward(be, logits, lnf, P(m, hw, 0), CF_VIEW_NULL, n, C, V));
        if (dlnf.buf == NULL) {
            CF_TRY(cf_be_crossentropy_forward(be, losses, logits, targets, n, V, cap));
            continue;
        }
        cf_prof_scope(be, -1, CF_PHASE_BACKWARD);
        CF_TRY(cf_be_crossentropy_fused(be, losses, logits, logits, targets, n, V, dscale, cap));
        CF_TRY(cf_be_matmul_backward_set(be, cf_view_add(dlnf, (size_t)r0 * C), G(m, hw, 0),
                                         CF_VIEW_NULL, logits, lnf, P(m, hw, 0), n, C, V));
    }
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
    CF_TRY(forward_body(m, B, T, 0));
    if (targets) {
        cf_backend *be = m->be;
        const int BT = B * T;
        cf_view scal = A(m, CF_A_scalars, 0);
        CF_TRY(head_loss(m, BT, CF_VIEW_NULL, 0.0f));
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
    CF_TRY(forward_body(m, B, T, 1));

    cf_backend *be = m->be;
    const cf_config *c = &m->cfg;
    const int C = c->d_model, L = c->num_layers, F = c->d_ff, NH = c->num_heads,
              V = c->vocab_size, KVH = cf_config_kv_heads(c), hs = cf_model_head_size(c),
              QKV = cf_model_qkv_width(c), FI = cf_model_fc_width(c);
    const int BT = B * T;

    cf_view dres = GA(m, CF_G_dres), dln = GA(m, CF_G_dln), datty = GA(m, CF_G_datty);
    cf_view dqkv = GA(m, CF_G_dqkv), dfch = GA(m, CF_G_dfch), dfcha = GA(m, CF_G_dfch_act);
    cf_view datt = GA(m, CF_G_datt), dpreatt = GA(m, CF_G_dpreatt);

    /* LM head and fused softmax + cross-entropy chunk by chunk: losses, dlnf (into dln) and the
     * head weight's gradient */
    cf_prof_scope(be, -1, CF_PHASE_BACKWARD);
    cf_view losses = A(m, CF_A_losses, 0);
    CF_TRY(head_loss(m, BT, dln, dloss_scale / (float)BT));
    CF_TRY(cf_be_reduce_sum(be, cf_view_add(A(m, CF_A_scalars, 0), (size_t)slot), losses,
                            (size_t)BT, 0));
    CF_TRY(cf_be_fill(be, dres, 0.0f, (size_t)BT * C));
    CF_TRY(norm_backward(m, dres, G(m, CF_P_lnf_w, 0), G(m, CF_P_lnf_b, 0), dln,
                         A(m, CF_A_residual3, L - 1), P(m, CF_P_lnf_w, 0), A(m, CF_A_lnf_mean, 0),
                         A(m, CF_A_lnf_rstd, 0), BT));
    if (m->grad_hook) CF_TRY(m->grad_hook(m->grad_hook_user, CF_GRAD_STAGE_HEAD));

    for (int l = L - 1; l >= 0; l--) {
        /* a shared block's gradients accumulate over its layers: the ops add into G */
        const size_t b = blk(m, l);
        cf_view residual = l == 0 ? A(m, CF_A_encoded, 0) : A(m, CF_A_residual3, l - 1);
        cf_view ln1 = A(m, CF_A_ln1, l), qkv = A(m, CF_A_qkv, l);
        cf_view atty = A(m, CF_A_atty, l), att = A(m, CF_A_att, l);
        cf_view res2 = A(m, CF_A_residual2, l), ln2 = A(m, CF_A_ln2, l);
        cf_view fch = A(m, CF_A_fch, l), fcha = A(m, CF_A_fch_act, l);

        cf_prof_scope(be, l, CF_PHASE_BACKWARD);
        CF_TRY(half_acts(m, l, B, T, 0)); /* the layer's tensors stored half, as fp32 again */
        /* recompute: the block's inside again from its kept input (`block`) */
        if (c->recompute == CF_RECOMPUTE_BLOCK)
            CF_TRY(block_forward(m, l, B, T, BLOCK_FOR_BACKWARD));
        /* residual3 = residual2 + fcproj: dfcproj = dres, and dres flows on to residual2.
         * dfch receives d(fch), assigned */
        switch (c->mlp) {
        case CF_MLP_SWIGLU:
            CF_TRY(cf_be_matmul_backward_set(be, dfcha, G(m, CF_P_fc_proj_w, b),
                                             G(m, CF_P_fc_proj_b, b), dres, fcha,
                                             P(m, CF_P_fc_proj_w, b), BT, F, C));
            CF_TRY(cf_be_swiglu_backward(be, dfch, fch, dfcha, BT, F));
            break;
        case CF_MLP_RELU2:
            CF_TRY(cf_be_matmul_backward_set(be, dfch, G(m, CF_P_fc_proj_w, b),
                                             G(m, CF_P_fc_proj_b, b), dres, fcha,
                                             P(m, CF_P_fc_proj_w, b), BT, F, C));
            CF_TRY(cf_be_act_backward(be, CF_ACT_RELU2, dfch, fch, dfch, (size_t)BT * F));
            break;
        default:
            /* (dres @ fc_proj_w) * gelu'(fch): the GELU's backward with the product where the
             * backend can, else a pass of its own (no zero-fill) */
            CF_TRY(cf_be_matmul_gelu_backward_set(be, dfch, G(m, CF_P_fc_proj_w, b),
                                                  G(m, CF_P_fc_proj_b, b), dres, fcha,
                                                  P(m, CF_P_fc_proj_w, b), fch, BT, F, C));
            break;
        }
        CF_TRY(cf_be_matmul_backward_set(be, dln, G(m, CF_P_fc_w, b), G(m, CF_P_fc_b, b), dfch,
                                         ln2, P(m, CF_P_fc_w, b), BT, C, FI));
        CF_TRY(norm_backward(m, dres, G(m, CF_P_ln2_w, b), G(m, CF_P_ln2_b, b), dln, res2,
                             P(m, CF_P_ln2_w, b), A(m, CF_A_ln2_mean, l), A(m, CF_A_ln2_rstd, l),
                             BT));
        /* recompute: atty and the probabilities again from the kept qkv (`attention`) */
        if (c->recompute == CF_RECOMPUTE_ATTENTION)
            CF_TRY(block_forward(m, l, B, T, BLOCK_ATTENTION));
        /* residual2 = residual + attproj: dattproj = dres (now d residual2) */
        CF_TRY(cf_be_matmul_backward_set(be, datty, G(m, CF_P_attn_proj_w, b),
                                         G(m, CF_P_attn_proj_b, b), dres, atty,
                                         P(m, CF_P_attn_proj_w, b), BT, C, C));
        /* dqkv is assigned by the attention backward (no zero-fill) */
        if (m->flash) {
            const cf_attn_desc d = attn_desc(m, B, T);
            CF_TRY(cf_be_flash_backward(be, &d, dqkv, GA(m, CF_G_delta), datty, atty,
                                        A(m, CF_A_lse, l), qkv, doc_view(m)));
        } else {
            CF_TRY(cf_be_attention_backward(be, dqkv, datt, dpreatt, datty, qkv, att, B, T, NH,
                                            KVH, hs));
        }
        if (cf_model_rope(c)) /* the transposed rotation, in place */
            CF_TRY(cf_be_rope(be, dqkv, A(m, CF_A_rope_cs, 0), B, T, NH + KVH, hs, QKV, 0, 1));
        if (cf_model_qk_norm(c)) {
            /* through the per-head RMSNorms of q and k, in place; v passes unchanged */
            cf_view raw = A(m, CF_A_qkv_raw, l);
            const size_t ko = (size_t)NH * hs;
            CF_TRY(cf_be_rmsnorm_backward(be, dqkv, G(m, CF_P_q_norm_w, b), dqkv, raw,
                                          P(m, CF_P_q_norm_w, b), A(m, CF_A_q_rstd, l), BT, NH,
                                          hs, QKV, 0));
            CF_TRY(cf_be_rmsnorm_backward(be, cf_view_add(dqkv, ko), G(m, CF_P_k_norm_w, b),
                                          cf_view_add(dqkv, ko), cf_view_add(raw, ko),
                                          P(m, CF_P_k_norm_w, b), A(m, CF_A_k_rstd, l), BT, KVH,
                                          hs, QKV, 0));
        }
        CF_TRY(cf_be_matmul_backward_set(be, dln, G(m, CF_P_qkv_w, b), G(m, CF_P_qkv_b, b), dqkv,
                                         ln1, P(m, CF_P_qkv_w, b), BT, C, QKV));
        CF_TRY(norm_backward(m, dres, G(m, CF_P_ln1_w, b), G(m, CF_P_ln1_b, b), dln, residual,
                             P(m, CF_P_ln1_w, b), A(m, CF_A_ln1_mean, l), A(m, CF_A_ln1_rstd, l),
                             BT));
        /* block b is complete once its lowest layer (l == b) is done */
        if (m->grad_hook && (size_t)l == b) CF_TRY(m->grad_hook(m->grad_hook_user, l));
    }
    cf_prof_scope(be, -1, CF_PHASE_BACKWARD);
    CF_TRY(cf_be_encoder_backward(be, G(m, CF_P_wte, 0), G(m, CF_P_wpe, 0), dres,
                                  A(m, CF_A_tokens, 0), B, T, C, V));
    if (m->grad_hook) CF_TRY(m->grad_hook(m->grad_hook_user, CF_GRAD_STAGE_EMBED));
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

int cf_model_logits_rows(cf_model *m, int b, int t0, int n, float *out) {
    const int V = m->cfg.vocab_size, C = m->cfg.d_model;
    if (b < 0 || b >= m->cur_B || t0 < 0 || n <= 0 || n > m->cur_T - t0) return CF_ERR_INVALID;
    /* the head for these positions, from the last forward's lnf, chunk by chunk through the
     * chunk buffer */
    cf_view logits = A(m, CF_A_logits, 0);
    for (int r = 0; r < n; r += m->head_rows) {
        const int k = n - r < m->head_rows ? n - r : m->head_rows;
        const size_t row = (size_t)b * m->cur_T + (size_t)(t0 + r);
        CF_TRY(cf_be_matmul_forward(m->be, logits, cf_view_add(A(m, CF_A_lnf, 0), row * C),
                                    P(m, head_id(m), 0), CF_VIEW_NULL, k, C, V));
        CF_TRY(cf_be_download(m->be, out + (size_t)r * V, logits, (size_t)k * V * sizeof(float)));
    }
    /* the soft-cap lives in the loss ops; the logits handed out carry it too */
    const float cap = m->cfg.logit_softcap;
    if (cap > 0.0f)
        for (size_t i = 0; i < (size_t)n * V; i++) out[i] = cap * tanhf(out[i] / cap);
    return CF_OK;
}

int cf_model_logits_row(cf_model *m, int b, int t, float *out) {
    return cf_model_logits_rows(m, b, t, 1, out);
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
/* The host side of AdamW's moments is always the parameter layout (num_params elements, zero
 * where AdamW keeps none: the Muon matrices, padding), so checkpoints do not depend on how the
 * device packs them (cf_optim_adam_layout). */
static int adam_packed(const cf_model *m) { return m->adam_elems != m->num_params || m->muon; }
static int opt_moment_get(cf_model *m, cf_buffer *buf, float *host) {
    if (!adam_packed(m))
        return cf_be_download(m->be, host, cf_view_f32(buf, 0), m->num_params * sizeof(float));
    float *t = malloc((m->adam_elems ? m->adam_elems : 1) * sizeof(float));
    if (!t) return CF_ERR_NOMEM;
    int rc = cf_be_download(m->be, t, cf_view_f32(buf, 0), m->adam_elems * sizeof(float));
    if (rc == CF_OK) {
        memset(host, 0, m->num_params * sizeof(float));
        for (int i = 0; i < CF_NUM_PARAMS; i++) {
            const cf_param_info *p = &m->params[i];
            if (p->present && !cf_optim_is_matrix(p))
                memcpy(host + p->offset, t + m->adam_off[i], p->size * sizeof(float));
        }
    }
    free(t);
    return rc;
}
static int opt_moment_set(cf_model *m, cf_buffer *buf, const float *host) {
    if (!adam_packed(m))
        return cf_be_upload(m->be, cf_view_f32(buf, 0), host, m->num_params * sizeof(float));
    float *t = malloc((m->adam_elems ? m->adam_elems : 1) * sizeof(float));
    if (!t) return CF_ERR_NOMEM;
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &m->params[i];
        if (p->present && !cf_optim_is_matrix(p))
            memcpy(t + m->adam_off[i], host + p->offset, p->size * sizeof(float));
    }
    const int rc = cf_be_upload(m->be, cf_view_f32(buf, 0), t, m->adam_elems * sizeof(float));
    free(t);
    return rc;
}
int cf_model_get_opt_state(cf_model *m, float *hm, float *hv) {
    if (!m->have_grads) return CF_ERR_INVALID;
    CF_TRY(opt_moment_get(m, m->m_buf, hm));
    return opt_moment_get(m, m->v_buf, hv);
}
int cf_model_set_opt_state(cf_model *m, const float *hm, const float *hv) {
    if (!m->have_grads) return CF_ERR_INVALID;
    CF_TRY(opt_moment_set(m, m->m_buf, hm));
    return opt_moment_set(m, m->v_buf, hv);
}

/* ---- schedule ------------------------------------------------------------------- */

float cf_lr_schedule(const cf_config *cfg, int step) {
    return cf_lr_at(cfg, cfg->learning_rate, step);
}
