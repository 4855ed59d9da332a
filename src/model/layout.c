/* clformer: everything computed from the model description in gpt.h without a backend: parameter
 * sizes, offsets and strides, activation sizes, the linear layers and the GEMMs of a training
 * step, and the FLOPs per token. */
#include <stdio.h>
#include <string.h>

#include "model/gpt.h"

void cf_model_layout(const cf_config *c, cf_param_info params[CF_NUM_PARAMS], size_t *num_params,
                     size_t *num_decay) {
    const int64_t V = c->vocab_size, T = c->max_length, C = c->d_model, NB = cf_config_blocks(c),
                  F = c->d_ff, HS = cf_model_head_size(c), QKV = cf_model_qkv_width(c),
                  FI = cf_model_fc_width(c);
    size_t off = 0, decay_end = 0;
    int i = 0, seen_no_decay = 0;
#define CF_X(nm, lay, nd, d0, d1, ini, dec, pres, hf, hft)                                         \
    do {                                                                                           \
        cf_param_info *p = &params[i++];                                                           \
        memset(p, 0, sizeof *p);                                                                   \
        p->name = #nm;                                                                             \
        p->hf_name = hf;                                                                           \
        p->hf_transposed = hft;                                                                    \
        p->present = (pres) != 0;                                                                  \
        p->layered = lay;                                                                          \
        p->ndim = (lay) + (nd);                                                                    \
        const int64_t dims_[3] = {(lay) ? NB : (d0), (lay) ? (d0) : (d1), (d1)};                    \
        for (int d_ = 0; d_ < p->ndim; d_++) p->shape[d_] = dims_[d_];                             \
        p->layer_stride = p->present ? (size_t)((d0) * ((nd) == 2 ? (d1) : 1)) : 0;                \
        p->size = p->layer_stride * (size_t)((lay) ? NB : 1);                                      \
        p->offset = off;                                                                           \
        p->init = ini;                                                                             \
        p->decay = dec;                                                                            \
        off += p->size;                                                                            \
        if (p->present) {                                                                          \
            /* the optimizer's decayed range must be one leading block */                          \
            CF_ASSERT(!(dec) || !seen_no_decay);                                                   \
            if (dec) decay_end = off;                                                              \
            else seen_no_decay = 1;                                                                \
        }                                                                                          \
    } while (0);
    CF_GPT_PARAMS(CF_X)
#undef CF_X
    if (num_params) *num_params = off;
    if (num_decay) *num_decay = decay_end;
}

enum cf_dtype cf_model_act_dtype(const cf_config *c) {
    return c->precision == CF_PREC_BF16   ? CF_BF16
           : c->precision == CF_PREC_FP16 ? CF_F16
                                          : CF_F32;
}

void cf_model_act_layout(const cf_config *c, int B, int T, cf_act_info acts[CF_NUM_ACTS],
                         size_t grad_acts[CF_NUM_GACTS]) {
    const size_t C = (size_t)c->d_model, L = (size_t)c->num_layers, F = (size_t)c->d_ff,
                 V = (size_t)c->vocab_size, NH = (size_t)c->num_heads,
                 KVH = (size_t)cf_config_kv_heads(c), HS = (size_t)cf_model_head_size(c),
                 QKV = (size_t)cf_model_qkv_width(c), FI = (size_t)cf_model_fc_width(c);
    const int LN = cf_model_layernorm(c), QKN = cf_model_qk_norm(c), ROPE = cf_model_rope(c),
              SWI = cf_model_swiglu(c), FL = cf_model_flash(c, T), DOC = c->doc_mask != 0;
    const size_t BT = (size_t)B * (size_t)T, BNT = (size_t)B * NH * (size_t)T * (size_t)T;
    const size_t HR = (size_t)cf_model_head_rows(c, B, T);
    const size_t LB = c->recompute == CF_RECOMPUTE_BLOCK ? 1 : L,
                 LA = c->recompute == CF_RECOMPUTE_NONE ? L : 1;
    /* half storage: precision bf16/fp16, the rows half_activations allows, and only stacked ones
     * (a row held once is the work slice itself) */
    const int mode = cf_model_act_dtype(c) == CF_F32 ? CF_HALF_ACTS_NONE : c->half_activations;
    int i = 0;
#define CF_X(nm, n_, sz, kp, h)                                                                    \
    acts[i].name = #nm;                                                                            \
    acts[i].n = (int)(n_);                                                                         \
    acts[i].slice = (sz);                                                                          \
    acts[i].size = (size_t)(n_) * (sz);                                                            \
    acts[i].kept = kp;                                                                             \
    acts[i].half = (h) > 0 && (h) <= mode && acts[i].n > 1 && acts[i].size > 0;                    \
    acts[i].bytes = acts[i].half ? 2 * acts[i].size + 4 * acts[i].slice : 4 * acts[i].size;       \
    i++;
    CF_GPT_ACTS(CF_X)
#undef CF_X
    i = 0;
#define CF_X(nm, sz) grad_acts[i++] = (sz);
    CF_GPT_GRAD_ACTS(CF_X)
#undef CF_X
}

/* head_chunk 0: the rows whose logits fit CF_HEAD_CHUNK_BYTES (a multiple of 256 rows, at least
 * 256), B*T when fewer. Each chunk costs the head's products some speed (on an H100,
 * wiki_cache_optimized's step ran 2.0% slower with 4 chunks of 1024 rows and 0.8% with 2 of 2048
 * than with one: the input gradient's product, M = rows by N = d_model, fills the GPU only with
 * enough rows), so the default chunks only where the whole batch's logits would be large
 * (docs/memory.md). */
int cf_model_head_rows(const cf_config *c, int B, int T) {
    const int BT = B * T;
    int rows = c->head_chunk;
    if (rows <= 0) {
        size_t r = CF_HEAD_CHUNK_BYTES / ((size_t)(c->vocab_size > 0 ? c->vocab_size : 1) * 4);
        r = r / 256 * 256;
        if (r < 256) r = 256;
        rows = r > (size_t)BT ? BT : (int)r;
    }
    return rows < BT ? rows : BT;
}

int cf_model_linears(const cf_config *c, cf_linear_info out[CF_NUM_LINEARS]) {
    cf_param_info p[CF_NUM_PARAMS];
    cf_model_layout(c, p, NULL, NULL);
    int n = 0;
#define CF_X(nm, w, b)                                                                             \
    {                                                                                              \
        const int w_ = (w), b_ = (b);                                                              \
        const cf_param_info *pw = &p[w_];                                                          \
        if (pw->present) {                                                                         \
            cf_linear_info *li = &out[n++];                                                        \
            li->name = #nm;                                                                        \
            li->weight = w_;                                                                       \
            li->bias = b_ >= 0 && p[b_].present ? b_ : -1;                                         \
            li->out = pw->shape[pw->layered];                                                      \
            li->in = pw->shape[pw->layered + 1];                                                   \
            li->per_step = pw->layered ? c->num_layers : 1;                                        \
        }                                                                                          \
    }
    CF_GPT_LINEARS(CF_X)
#undef CF_X
    return n;
}

int cf_model_gemm_shapes(const cf_config *c, int B, int T, cf_gemm_shape out[CF_MAX_GEMM_SHAPES]) {
    cf_linear_info lin[CF_NUM_LINEARS];
    const int nl = cf_model_linears(c, lin);
    const int HR = cf_model_head_rows(c, B, T), chunks = (B * T + HR - 1) / HR;
    int n = 0;
    for (int i = 0; i < nl; i++) {
        const int IC = (int)lin[i].in, OC = (int)lin[i].out;
        const int head = !strcmp(lin[i].name, "head"), BT = head ? HR : B * T;
        const struct {
            const char *what;
            int ta, tb, M, N, K;
        } g[3] = {{"fwd", 0, 1, BT, OC, IC}, {"dinp", 0, 0, BT, IC, OC}, {"dw", 1, 0, OC, IC, BT}};
        for (int k = 0; k < 3; k++) {
            cf_gemm_shape *s = &out[n++];
            snprintf(s->name, sizeof s->name, "%s.%s", lin[i].name, g[k].what);
            s->ta = g[k].ta;
            s->tb = g[k].tb;
            s->M = g[k].M;
            s->N = g[k].N;
            s->K = g[k].K;
            s->per_step = head ? chunks : lin[i].per_step;
        }
    }
    return n;
}

double cf_model_flops_per_token(const cf_config *c) {
    /* Forward: 2 FLOPs per multiply-add of every weight matrix a token goes through (the linear
     * layers of the table, the LM head included; biases, norms and the position table are not
     * matmuls), plus attention: q.k over T keys and the weighted sum of T values, T*C
     * multiply-adds each per layer (C = NH * hs query width; grouped K/V heads do not change it),
     * counted over the full context T (the usual convention for MFU; a causal kernel does about
     * half). Backward costs 2 x forward. */
    cf_linear_info lin[CF_NUM_LINEARS];
    const int nl = cf_model_linears(c, lin);
    double mm = 0.0;
    for (int i = 0; i < nl; i++) mm += (double)lin[i].per_step * (double)lin[i].in * lin[i].out;
    const double fwd_mm = 2.0 * mm;
    const double fwd_att = 2.0 * 2.0 * c->num_layers * (double)c->max_length * c->d_model;
    return 3.0 * (fwd_mm + fwd_att);
}

int cf_model_row_part(const cf_config *c, const cf_param_info *p, enum cf_row_part part,
                      int64_t *row0, int64_t *rows) {
    /* From the row's shape in the table: qkv rows are (NH + 2*KVH)*hs, a SwiGLU fc has 2*F rows */
    const int64_t all = p->shape[p->layered], hs = c->d_model / c->num_heads;
    const int64_t q = (int64_t)c->num_heads * hs, kv = (all - q) / 2, F = c->d_ff;
    const int qkv = (!strcmp(p->name, "qkv_w") || !strcmp(p->name, "qkv_b")) && kv > 0 &&
                    kv % hs == 0 && all == q + 2 * kv;
    const int glu = (!strcmp(p->name, "fc_w") || !strcmp(p->name, "fc_b")) && all == 2 * F;
    int64_t r0 = 0, n = all;
    int ok = p->present;
    switch (part) {
    case CF_PART_ALL: break;
    case CF_PART_Q: r0 = 0, n = q, ok &= qkv; break;
    case CF_PART_K: r0 = q, n = kv, ok &= qkv; break;
    case CF_PART_V: r0 = q + kv, n = kv, ok &= qkv; break;
    case CF_PART_GATE: r0 = 0, n = F, ok &= glu; break;
    case CF_PART_UP: r0 = F, n = F, ok &= glu; break;
    default: ok = 0; break;
    }
    if (!ok) return CF_ERR_INVALID;
    *row0 = r0;
    *rows = n;
    return CF_OK;
}
