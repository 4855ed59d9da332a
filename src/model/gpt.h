/* clformer: the GPT-2 style model on top of the backend interface: parameter/activation layout,
 * forward, backward, AdamW update, initialisation. Never touches device memory directly. */
#ifndef CF_MODEL_GPT_H
#define CF_MODEL_GPT_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "clformer/config.h"

/* ---- the model description -----------------------------------------------------------------
 *
 * One table per family says which tensors exist, their names on disk and in Hugging Face, their
 * shapes as functions of the config, their init, weight decay, and when they are present. Sizes,
 * offsets and per-layer strides are computed from it (cf_model_layout), and so are the checkpoint
 * tensor list, the exporter, bench's parameter/activation counts and FLOPs, and the GEMM shapes of
 * a training step (cf_model_gemm_shapes). Nothing outside this header restates a shape. A new
 * variant of the family (Llama-style: no biases, RoPE, untied head, SwiGLU) is new rows with their
 * presence conditions, not new code paths in the consumers.
 *
 * Presence conditions are functions of the config (docs/model_family.md). */
static inline int cf_model_has_bias(const cf_config *c) { return c->bias != 0; }   /* `bias` */
static inline int cf_model_learned_pos(const cf_config *c) { return c->position == CF_POS_LEARNED; }
static inline int cf_model_rope(const cf_config *c) { return c->position == CF_POS_ROPE; }
static inline int cf_model_tied_head(const cf_config *c) { return c->tie_embeddings != 0; }
static inline int cf_model_layernorm(const cf_config *c) { return c->norm == CF_NORM_LAYERNORM; }
/* LayerNorm's bias (RMSNorm never has one) */
static inline int cf_model_norm_bias(const cf_config *c) {
    return cf_model_has_bias(c) && cf_model_layernorm(c);
}
static inline int cf_model_qk_norm(const cf_config *c) { return c->qk_norm != 0; }
static inline int cf_model_swiglu(const cf_config *c) { return c->mlp == CF_MLP_SWIGLU; }
/* head size, and the width of one qkv row: NH query heads then KVH key and KVH value heads */
static inline int cf_model_head_size(const cf_config *c) { return c->d_model / c->num_heads; }
static inline int cf_model_qkv_width(const cf_config *c) {
    return (c->num_heads + 2 * cf_config_kv_heads(c)) * cf_model_head_size(c);
}
/* Attention path for batches of up to T tokens (docs/attention.md): flash (output and one
 * log-sum-exp per query row kept, O(T) memory) or matrix (the (T,T) probabilities of every layer
 * kept, the fused or GEMM kernels). auto takes flash for a window, a document mask, or T above
 * CF_FLASH_AUTO_MIN_T; below it the matrix kernels, faster at short T, whose (T,T) buffers are
 * then small. A rule of the shape alone, so that memory reports agree with what runs. */
#define CF_FLASH_AUTO_MIN_T 256
static inline int cf_model_flash(const cf_config *c, int T) {
    if (c->attention == CF_ATTN_FLASH || c->attention_window > 0 || c->doc_mask) return 1;
    if (c->attention == CF_ATTN_MATRIX) return 0;
    return T > CF_FLASH_AUTO_MIN_T;
}
/* the width of the MLP's first linear: gate and up for SwiGLU, else d_ff */
static inline int cf_model_fc_width(const cf_config *c) {
    return cf_model_swiglu(c) ? 2 * c->d_ff : c->d_ff;
}

/* Parameters. Shapes use V (vocab), T (max_length), C (d_model), F (d_ff), HS (head size), QKV
 * (qkv width), FI (fc width); a row with layered = 1 is stacked over the NB stored blocks
 * (cf_config_blocks: num_layers, or share_layers when layers share blocks): its shape is
 * (NB, d0[, d1]) and one block's slice (d0[, d1]) is its per-layer stride; layer l uses block
 * l % NB. nd is the number of dims of one slice (1 or 2).
 * present is an expression of the config `c`; an absent tensor has size 0, is not stored in
 * checkpoints and not exported. hf names the tensor in Hugging Face's GPT2LMHeadModel (%d: the
 * layer), hf_t says HF stores its slice transposed (GPT-2's Conv1D keeps weights as (in, out)).
 * Tensors with weight decay come first so the optimizer can treat them as one range.
 *   X(name,       layered, nd, d0,    d1, init,           decay, present,
 *     hf,                                          hf_t) */
#define CF_GPT_PARAMS(X)                                                                           \
    X(wte,         0, 2, V,     C, CF_INIT_NORMAL, 1, 1,                        /* (V,C) */        \
      "transformer.wte.weight",                     0)                                             \
    X(wpe,         0, 2, T,     C, CF_INIT_NORMAL, 1, cf_model_learned_pos(c),  /* (T,C) */        \
      "transformer.wpe.weight",                     0)                                             \
    X(lm_head,     0, 2, V,     C, CF_INIT_NORMAL, 1, !cf_model_tied_head(c),   /* (V,C) */        \
      "lm_head.weight",                             0)                                             \
    X(qkv_w,       1, 2, QKV,   C, CF_INIT_NORMAL, 1, 1,                        /* (NB,QKV,C) */   \
      "transformer.h.%d.attn.c_attn.weight",        1)                                             \
    X(attn_proj_w, 1, 2, C,     C, CF_INIT_RESID,  1, 1,                        /* (L,C,C) */      \
      "transformer.h.%d.attn.c_proj.weight",        1)                                             \
    X(fc_w,        1, 2, FI,    C, CF_INIT_NORMAL, 1, 1,                        /* (NB,FI,C) */    \
      "transformer.h.%d.mlp.c_fc.weight",           1)                                             \
    X(fc_proj_w,   1, 2, C,     F, CF_INIT_RESID,  1, 1,                        /* (L,C,F) */      \
      "transformer.h.%d.mlp.c_proj.weight",         1)                                             \
    X(ln1_w,       1, 1, C,     1, CF_INIT_ONE,    0, 1,                        /* (L,C) */        \
      "transformer.h.%d.ln_1.weight",               0)                                             \
    X(ln1_b,       1, 1, C,     1, CF_INIT_ZERO,   0, cf_model_norm_bias(c),    /* (L,C) */        \
      "transformer.h.%d.ln_1.bias",                 0)                                             \
    X(qkv_b,       1, 1, QKV,   1, CF_INIT_ZERO,   0, cf_model_has_bias(c),     /* (NB,QKV) */     \
      "transformer.h.%d.attn.c_attn.bias",          0)                                             \
    X(q_norm_w,    1, 1, HS,    1, CF_INIT_ONE,    0, cf_model_qk_norm(c),      /* (NB,HS) */      \
      "model.layers.%d.self_attn.q_norm.weight",    0)                                             \
    X(k_norm_w,    1, 1, HS,    1, CF_INIT_ONE,    0, cf_model_qk_norm(c),      /* (NB,HS) */      \
      "model.layers.%d.self_attn.k_norm.weight",    0)                                             \
    X(attn_proj_b, 1, 1, C,     1, CF_INIT_ZERO,   0, cf_model_has_bias(c),     /* (L,C) */        \
      "transformer.h.%d.attn.c_proj.bias",          0)                                             \
    X(ln2_w,       1, 1, C,     1, CF_INIT_ONE,    0, 1,                        /* (L,C) */        \
      "transformer.h.%d.ln_2.weight",               0)                                             \
    X(ln2_b,       1, 1, C,     1, CF_INIT_ZERO,   0, cf_model_norm_bias(c),    /* (L,C) */        \
      "transformer.h.%d.ln_2.bias",                 0)                                             \
    X(fc_b,        1, 1, FI,    1, CF_INIT_ZERO,   0, cf_model_has_bias(c),     /* (NB,FI) */      \
      "transformer.h.%d.mlp.c_fc.bias",             0)                                             \
    X(fc_proj_b,   1, 1, C,     1, CF_INIT_ZERO,   0, cf_model_has_bias(c),     /* (L,C) */        \
      "transformer.h.%d.mlp.c_proj.bias",           0)                                             \
    X(lnf_w,       0, 1, C,     1, CF_INIT_ONE,    0, 1,                        /* (C) */          \
      "transformer.ln_f.weight",                    0)                                             \
    X(lnf_b,       0, 1, C,     1, CF_INIT_ZERO,   0, cf_model_norm_bias(c),    /* (C) */          \
      "transformer.ln_f.bias",                      0)

/* normal(0, 0.02); normal(0, 0.02/sqrt(2L)) for the projections into the residual stream; 1; 0 */
enum { CF_INIT_NORMAL, CF_INIT_RESID, CF_INIT_ONE, CF_INIT_ZERO };

enum cf_param_id {
#define CF_X(name, ...) CF_P_##name,
    CF_GPT_PARAMS(CF_X)
#undef CF_X
    CF_NUM_PARAMS
};

/* Row parts of the packed weights, as both the model and the Hugging Face Llama mapping cut
 * them: qkv_w / qkv_b rows are [q: NH*hs | k: KVH*hs | v: KVH*hs]; a SwiGLU fc_w / fc_b is
 * [gate: F | up: F]. CF_PART_ALL is the whole slice. */
enum cf_row_part { CF_PART_ALL, CF_PART_Q, CF_PART_K, CF_PART_V, CF_PART_GATE, CF_PART_UP };

/* Hugging Face LlamaForCausalLM names for the Llama-style config (rmsnorm, rope, swiglu, no bias):
 * each entry is one row part of one layer's slice of a parameter row (nn.Linear on both sides, so
 * nothing is transposed); %d is the layer. An absent row (lm_head while tied) is not written. The
 * GPT-2 names are the hf column of CF_GPT_PARAMS.
 *   X(param, part, hf) */
#define CF_LLAMA_HF(X)                                                                             \
    X(wte,         CF_PART_ALL,  "model.embed_tokens.weight")                                      \
    X(lm_head,     CF_PART_ALL,  "lm_head.weight")                                                 \
    X(ln1_w,       CF_PART_ALL,  "model.layers.%d.input_layernorm.weight")                         \
    X(qkv_w,       CF_PART_Q,    "model.layers.%d.self_attn.q_proj.weight")                        \
    X(qkv_w,       CF_PART_K,    "model.layers.%d.self_attn.k_proj.weight")                        \
    X(qkv_w,       CF_PART_V,    "model.layers.%d.self_attn.v_proj.weight")                        \
    X(attn_proj_w, CF_PART_ALL,  "model.layers.%d.self_attn.o_proj.weight")                        \
    X(ln2_w,       CF_PART_ALL,  "model.layers.%d.post_attention_layernorm.weight")                \
    X(fc_w,        CF_PART_GATE, "model.layers.%d.mlp.gate_proj.weight")                           \
    X(fc_w,        CF_PART_UP,   "model.layers.%d.mlp.up_proj.weight")                             \
    X(fc_proj_w,   CF_PART_ALL,  "model.layers.%d.mlp.down_proj.weight")                           \
    X(lnf_w,       CF_PART_ALL,  "model.norm.weight")

/* The linear layers of one training step, in the order the forward runs them:
 * out(BT,OC) = in(BT,IC) @ W(OC,IC)^T (+ b), where (OC, IC) is one slice of the weight's row in
 * the parameter table; a layered weight runs once per layer. A linear whose weight is absent does
 * not run. bias may be -1 (none).
 *   X(name, weight, bias) */
#define CF_GPT_LINEARS(X)                                                                          \
    X(qkv,       CF_P_qkv_w,                                       CF_P_qkv_b)                     \
    X(attn_proj, CF_P_attn_proj_w,                                 CF_P_attn_proj_b)               \
    X(fc,        CF_P_fc_w,                                        CF_P_fc_b)                      \
    X(fc_proj,   CF_P_fc_proj_w,                                   CF_P_fc_proj_b)                 \
    X(head,      cf_model_tied_head(c) ? CF_P_wte : CF_P_lm_head, -1) /* the LM head */

enum cf_linear_id {
#define CF_X(name, ...) CF_LIN_##name,
    CF_GPT_LINEARS(CF_X)
#undef CF_X
    CF_NUM_LINEARS
};

/* Forward activations, sized for the maximum (B, T); a row with n = L is stacked over the layers
 * with one layer's slice (size) as its stride, a row with n = 1 exists once. kept = 1: held for
 * the backward pass; 0: scratch. half: how the row may be stored in precision bf16 and fp16
 * (config half_activations, docs/precision.md): 0 fp32; 1 half, read in the backward only by GEMMs
 * (which round their inputs to the half type anyway: storing it half changes no result); 2 half,
 * read by other ops too (as PyTorch's autocast saves them).
 *   X(name, n, size of one slice, kept, half) with BT = B*T, BNT = B*NH*T*T; a tensor the config does
 * not use has size 0 (LN: layernorm, QKN: qk_norm, ROPE: rope, SWI: swiglu, FL: flash attention
 * (cf_model_flash), DOC: doc_mask).
 * Recomputation (`recompute`, docs/memory.md) decides which per-layer tensors are stacked:
 * LB = L, or 1 under `block` (the block's inside is recomputed from its input, encoded or
 * residual3 of the layer before, which stay stacked); LA = L, or 1 under `attention` and `block`
 * (the attention op's outputs are recomputed from qkv). A tensor with n = 1 holds the layer being
 * computed; every layer's view of it is its one slice.
 * The LM head holds HR rows of the (B*T, V) logits at a time (cf_model_head_rows): all of them
 * only where they fit CF_HEAD_CHUNK_BYTES. */
#define CF_GPT_ACTS(X)                                                                             \
    X(encoded,   1, BT * C, 1, 0) /* (B,T,C) */                                                    \
    X(ln1,       LB, BT * C, 1, 1) /* (L,B,T,C) */                                                 \
    X(ln1_mean,  LB, LN ? BT : 0, 1, 0) /* (L,B,T) LayerNorm only */                               \
    X(ln1_rstd,  LB, BT, 1, 0) /* (L,B,T) */                                                       \
    X(qkv,       LB, BT * QKV, 1, 2) /* (L,B,T,QKV) the attention input (after qk_norm and RoPE) */\
    X(qkv_raw,   LB, QKN ? BT * QKV : 0, 1, 2) /* (L,B,T,QKV) the GEMM output, with qk_norm */     \
    X(q_rstd,    LB, QKN ? BT * NH : 0, 1, 0) /* (L,B,T,NH) qk_norm's rstd of each q head */       \
    X(k_rstd,    LB, QKN ? BT * KVH : 0, 1, 0) /* (L,B,T,KVH) and of each k head */                \
    X(atty,      LA, BT * C, 1, 2) /* (L,B,T,C) */                                                 \
    X(att,       LA, FL ? 0 : BNT, 1, 0) /* (L,B,NH,T,T) softmax probabilities (matrix attention) */\
    X(lse,       LA, FL ? BT * NH : 0, 1, 0) /* (L,B,NH,T) log-sum-exp per query row (flash) */    \
    X(proj,      1, BT * C, 0, 0) /* (B,T,C) an output projection before its residual add */       \
    X(residual2, LB, BT * C, 1, 0) /* (L,B,T,C) */                                                 \
    X(ln2,       LB, BT * C, 1, 1) /* (L,B,T,C) */                                                 \
    X(ln2_mean,  LB, LN ? BT : 0, 1, 0) /* (L,B,T) LayerNorm only */                               \
    X(ln2_rstd,  LB, BT, 1, 0) /* (L,B,T) */                                                       \
    X(fch,       LB, BT * FI, 1, 2) /* (L,B,T,FI) */                                               \
    X(fch_act,   LB, BT * F, 1, 1) /* (L,B,T,F) the MLP's activation output */                     \
    X(residual3, L, BT * C, 1, 0) /* (L,B,T,C) */                                                  \
    X(lnf,       1, BT * C, 1, 0) /* (B,T,C) */                                                    \
    X(lnf_mean,  1, LN ? BT : 0, 1, 0) /* (B,T) LayerNorm only */                                  \
    X(lnf_rstd,  1, BT, 1, 0) /* (B,T) */                                                          \
    X(logits,    1, HR * V, 1, 0) /* (HR,V) one chunk of the head's rows; then its dlogits */      \
    X(losses,    1, BT, 1, 0) /* (B,T) */                                                          \
    X(tokens,    1, BT, 1, 0) /* (B,T) int32 inputs */                                             \
    X(targets,   1, BT, 1, 0) /* (B,T) int32 targets */                                            \
    X(doc,       1, DOC ? BT : 0, 1, 0) /* (B,T) int32 document start of each token (doc_mask) */  \
    X(scalars,   1, 64, 0, 0) /* loss sums, grad norm */                                           \
    X(rope_cs,   1, ROPE ? (size_t)T * HS : 0, 1, 0) /* (T,HS/2,2) RoPE's (cos, sin), built once */\

/* Backward scratch, reused layer by layer (not stacked over L). */
#define CF_GPT_GRAD_ACTS(X)                                                                        \
    X(dres,      BT * C)          /* (B,T,C) gradient of the residual stream */                    \
    X(dln,       BT * C)          /* (B,T,C) gradient of a LayerNorm output */                     \
    X(datty,     BT * C)          /* (B,T,C) */                                                    \
    X(dqkv,      BT * QKV)        /* (B,T,QKV) */                                                  \
    X(dfch,      BT * FI)         /* (B,T,FI) d(fch); gelu/relu2: first the MLP's input gradient */\
    X(dfch_act,  SWI ? BT * F : 0) /* (B,T,F) SwiGLU: the gradient of its output */                \
    X(datt,      FL ? 0 : BNT)    /* (B,NH,T,T) matrix attention */                                \
    X(dpreatt,   FL ? 0 : BNT)    /* (B,NH,T,T) matrix attention */                                \
    X(delta,     FL ? BT * NH : 0) /* (B,NH,T) flash: rowsum(dout * out) */

enum cf_act_id {
#define CF_X(name, ...) CF_A_##name,
    CF_GPT_ACTS(CF_X)
#undef CF_X
    CF_NUM_ACTS
};
enum cf_gact_id {
#define CF_X(name, size) CF_G_##name,
    CF_GPT_GRAD_ACTS(CF_X)
#undef CF_X
    CF_NUM_GACTS
};

typedef struct {
    const char *name;    /* checkpoint tensor name */
    const char *hf_name; /* Hugging Face name (printf pattern with %d for the layer if layered) */
    int hf_transposed;   /* HF stores each slice transposed */
    int present;         /* the config has this tensor (else size 0) */
    int layered;         /* stacked over the stored blocks: shape[0] = NB */
    int ndim;            /* dims of the whole tensor (shape[0..ndim)) */
    int64_t shape[3];
    size_t size;         /* elements (0 when absent) */
    size_t layer_stride; /* elements of one layer's slice (layered), else size */
    size_t offset;       /* elements into the parameter buffer */
    int init;
    int decay;
} cf_param_info;

/* Sizes, offsets and strides of every row of the parameter table for a config. *num_params
 * receives the total elements, *num_decay the elements of the leading weight-decayed range (both
 * may be NULL). Needs no backend. */
void cf_model_layout(const cf_config *cfg, cf_param_info params[CF_NUM_PARAMS],
                     size_t *num_params, size_t *num_decay);

typedef struct {
    const char *name;
    int n;        /* 1, or L for tensors stacked over the layers */
    size_t slice; /* elements of one layer's slice: the per-layer stride */
    size_t size;  /* n * slice */
    int kept;     /* held for the backward pass */
    int half;     /* 0: fp32 slices; else a stacked row stored in the precision's half type
                   * (CF_BF16 / CF_F16), its layers' slices converted after the layer's forward
                   * and back into one fp32 work slice before its backward */
    size_t bytes; /* device bytes: 4 * size, or stored half 2 * size plus the fp32 work slice */
} cf_act_info;

/* The half dtype of a config's precision: CF_BF16, CF_F16, or CF_F32 (no half storage). */
enum cf_dtype cf_model_act_dtype(const cf_config *cfg);

/* Rows of the B*T positions that one LM-head chunk covers: head_chunk when set (at most B*T),
 * else the rows whose logits fit CF_HEAD_CHUNK_BYTES (multiples of 256 rows, at least 256, at
 * most B*T): one chunk where the batch's logits are small (each chunk costs the head's products
 * speed), a bounded buffer, whatever B*T, where they are not (GPT-2 124M at batch 8 x 1024: 1280
 * rows, 246 MiB, instead of 1.54 GiB). */
#define CF_HEAD_CHUNK_BYTES ((size_t)256 << 20)
int cf_model_head_rows(const cf_config *cfg, int B, int T);

/* Activation and backward-scratch sizes (elements, unpadded) for batches up to (B, T); each
 * activation row's device bytes and half storage (cf_act_info). */
void cf_model_act_layout(const cf_config *cfg, int B, int T, cf_act_info acts[CF_NUM_ACTS],
                         size_t grad_acts[CF_NUM_GACTS]);

typedef struct {
    const char *name;
    int weight, bias;  /* parameter ids; bias -1 when there is none or it is absent */
    int64_t in, out;   /* IC, OC */
    int per_step;      /* times one forward runs it: L for a layered weight, else 1 */
} cf_linear_info;

/* The present linear layers of the config in forward order; returns how many. */
int cf_model_linears(const cf_config *cfg, cf_linear_info out[CF_NUM_LINEARS]);

/* Rows [*row0, *row0 + *rows) of one layer's slice of parameter p that make up part. Returns
 * CF_ERR_INVALID when the part does not apply to p under this config or does not fit its rows. */
int cf_model_row_part(const cf_config *cfg, const cf_param_info *p, enum cf_row_part part,
                      int64_t *row0, int64_t *rows);

/* The GEMMs of one training step (cf_be_matmul_forward / _backward) for micro-batches of B x T:
 * for each linear in(BT,IC) -> out(BT,OC): "<name>.fwd" out = in @ W^T (NT: M=BT, N=OC, K=IC),
 * "<name>.dinp" dinp = dout @ W (NN: M=BT, N=IC, K=OC), "<name>.dw" dW = dout^T @ in
 * (TN: M=OC, N=IC, K=BT). ta: A is stored (K,M); tb: B is stored (N,K).
 * The LM head runs over chunks of cf_model_head_rows rows: its shapes have M (fwd, dinp) or K
 * (dw) = the chunk's rows and per_step = the number of chunks (a last, shorter chunk is counted
 * at the full chunk's shape). */
#define CF_MAX_GEMM_SHAPES (3 * CF_NUM_LINEARS)
typedef struct {
    char name[32];
    int ta, tb, M, N, K;
    int per_step; /* times one training step runs it (the linear's per_step) */
} cf_gemm_shape;
int cf_model_gemm_shapes(const cf_config *cfg, int B, int T, cf_gemm_shape out[CF_MAX_GEMM_SHAPES]);

typedef struct cf_model {
    cf_config cfg;
    cf_backend *be;
    int B, T; /* maximum batch and sequence length the activations were sized for */
    cf_param_info params[CF_NUM_PARAMS];
    size_t num_params;       /* total parameter elements */
    size_t num_decay_params; /* elements in the leading weight-decayed range */
    /* device buffers: one allocation each */
    cf_buffer *params_buf, *grads_buf, *m_buf, *v_buf, *gacts_buf;
    /* Activations live in one allocation, or in as few chunks as the device's largest allocation
     * (be->max_alloc) requires: tensor i is at byte act_off[i] in acts_bufs[act_chunk[i]]; a row
     * stored half (act_half[i]) has its fp32 work slice there and its half slices at byte
     * act_half_off[i] of the same buffer. */
    cf_buffer *acts_bufs[CF_NUM_ACTS];
    int n_act_chunks;
    int act_chunk[CF_NUM_ACTS];
    size_t act_off[CF_NUM_ACTS], act_half_off[CF_NUM_ACTS];
    size_t act_stride[CF_NUM_ACTS]; /* elements of one layer's slice (the per-layer stride) */
    int act_n[CF_NUM_ACTS];         /* slices: L, or 1 for a tensor held once (recomputation) */
    int act_half[CF_NUM_ACTS];      /* stored in act_dtype (cf_act_info.half) */
    enum cf_dtype act_dtype;        /* the half type of precision bf16/fp16 (cf_model_act_dtype) */
    int head_rows;                  /* rows per LM-head chunk (cf_model_head_rows) */
    size_t act_chunk_bytes[CF_NUM_ACTS];
    size_t gact_off[CF_NUM_GACTS];
    size_t acts_bytes, gacts_elems;
    int have_grads; /* grads/m/v/grad-acts allocated (training) */
    int flash;        /* flash attention (cf_model_flash at creation), else the matrix path */
    int32_t doc_eot;  /* doc_mask: the end-of-text id (cf_model_set_doc_eot); -1 = no mask */
    int32_t *doc_host;/* doc_mask: (B,T) document starts built on the host for each batch */
    int doc_noted;    /* doc_mask: the "batch without end-of-text" note was printed */
    int cur_B, cur_T; /* shape of the last forward */
    int opt_step;     /* AdamW steps taken */
    /* AdamW's moments m_buf, v_buf: adam_elems elements, parameter i's at adam_off[i]
     * (cf_optim_adam_layout: optimizer adamw the parameter's own offset; muon only the
     * parameters AdamW updates, packed, so the Muon matrices hold no unused moments) */
    size_t adam_elems;
    size_t adam_off[CF_NUM_PARAMS];
    struct cf_muon *muon; /* optimizer muon: its state (model/optim.h), else NULL */
    /* Optional (NULL: none): cf_model_forward_backward calls grad_hook(grad_hook_user, stage) as
     * parts of the parameter gradients receive their last contribution of the micro-batch, in
     * this order: CF_GRAD_STAGE_HEAD (lm_head, lnf_w, lnf_b), then each stored block b from NB-1
     * down to 0 (its layered slices, after the lowest layer using it), then CF_GRAD_STAGE_EMBED
     * (wte, wpe: the end of the backward). A negative return stops the backward with it.
     * Data-parallel training (src/dist) starts its gradient all-reduces from here. */
    int (*grad_hook)(void *user, int stage);
    void *grad_hook_user;
    struct cf_dist_grads *dist; /* data-parallel gradient averaging (src/dist); NULL: one process */
} cf_model;

enum { CF_GRAD_STAGE_HEAD = -1, CF_GRAD_STAGE_EMBED = -2 };

/* Create a model for (max_B, max_T) batches on a backend. training = 0 allocates only params and
 * forward activations (generation / eval). Parameters are uninitialised until init or load. */
int cf_model_create(cf_backend *be, const cf_config *cfg, int max_B, int max_T, int training,
                    cf_model **out);
void cf_model_free(cf_model *m);

/* doc_mask: the end-of-text token id of the data's tokenizer (cf_data_eot_id, data/dataset.h).
 * From then on every forward builds each token's document start from its batch's input tokens
 * (cf_doc_starts: the token after an end-of-text starts a new document; the end-of-text token
 * belongs to the document it closes) and attention stays inside documents. Without this call, or
 * with eot < 0, or when the config has no doc_mask, attention is plain causal (or windowed).
 * CF_ERR_INVALID when the config has doc_mask but eot < 0. */
int cf_model_set_doc_eot(cf_model *m, int32_t eot);

/* GPT-2 initialisation (normal 0.02, residual projections 0.02/sqrt(2L) with L = num_layers
 * also when layers share blocks, norm weights 1, biases 0),
 * drawn on the host from a seeded RNG so every backend starts from identical weights. */
int cf_model_init(cf_model *m, uint64_t seed);

/* Forward on B x T int32 tokens (B <= max_B, T <= max_T). With targets, *loss receives the mean
 * cross-entropy (one 4-byte download), the LM head running over row chunks; without, the network
 * runs up to the final norm and cf_model_logits_row computes the logits of the positions asked
 * for. */
int cf_model_forward(cf_model *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                     float *loss);

/* Forward + backward for one micro-batch, ACCUMULATING parameter gradients scaled by dloss_scale
 * (1/grad_accum_steps). The mean loss is reduced on the device into scalars[slot]; it is not
 * downloaded here. */
int cf_model_forward_backward(cf_model *m, const int32_t *tokens, const int32_t *targets, int B,
                              int T, float dloss_scale, int slot);
int cf_model_zero_grad(cf_model *m);
/* Global L2 norm of the gradients (one 4-byte download). */
int cf_model_grad_norm(cf_model *m, float *norm);
/* One AdamW update with the given learning rate and gradient scale (clipping). */
int cf_model_adamw(cf_model *m, float lr, float grad_scale);
/* Download scalars[0..n) (the micro-batch losses). */
int cf_model_read_scalars(cf_model *m, float *out, int n);

/* Logits (V floats) at position t of batch row b of the last forward, downloaded to the host:
 * the LM head for that one position (a GEMM of one row into the chunk buffer). */
int cf_model_logits_row(cf_model *m, int b, int t, float *out);
/* The same for positions [t0, t0 + n) of batch row b into out (n x V floats), the head running
 * over chunks of head_rows positions. */
int cf_model_logits_rows(cf_model *m, int b, int t0, int n, float *out);

/* Parameters and optimizer state to/from host float arrays laid out like the device buffers. */
int cf_model_get_params(cf_model *m, float *host);
int cf_model_set_params(cf_model *m, const float *host);
int cf_model_get_opt_state(cf_model *m, float *host_m, float *host_v);
int cf_model_set_opt_state(cf_model *m, const float *host_m, const float *host_v);
int cf_model_get_grads(cf_model *m, float *host);

/* Learning rate at (0-based) optimizer step: linear warmup, then lr_schedule (cosine to
 * lr*min_lr_ratio, wsd or constant; cf_lr_at in model/optim.h). */
float cf_lr_schedule(const cf_config *cfg, int step);

/* Model FLOPs per trained token (forward + backward = 3x forward matmul FLOPs, plus attention). */
double cf_model_flops_per_token(const cf_config *cfg);

#endif
