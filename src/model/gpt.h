/* clformer: the GPT-2 style model on top of the backend interface: parameter/activation layout,
 * forward, backward, AdamW update, initialisation. Never touches device memory directly. */
#ifndef CF_MODEL_GPT_H
#define CF_MODEL_GPT_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "clformer/config.h"

/* The one list of parameters: sizes, offsets, names (checkpoints), init and weight decay all come
 * from here. Shapes use V (vocab), T (max_length), C (d_model), L (layers), F (d_ff).
 * Tensors with weight decay come first so the optimizer can treat them as one range.
 *   X(name,        ndim, d0, d1,    d2, init,            decay) */
#define CF_GPT_PARAMS(X)                                                                           \
    X(wte,          2,    V,  C,     1,  CF_INIT_NORMAL,  1) /* (V,C) token embedding, tied head */ \
    X(wpe,          2,    T,  C,     1,  CF_INIT_NORMAL,  1) /* (T,C) position embedding */      \
    X(qkv_w,        3,    L,  3 * C, C,  CF_INIT_NORMAL,  1) /* (L,3C,C) */                      \
    X(attn_proj_w,  3,    L,  C,     C,  CF_INIT_RESID,   1) /* (L,C,C) */                       \
    X(fc_w,         3,    L,  F,     C,  CF_INIT_NORMAL,  1) /* (L,F,C) */                       \
    X(fc_proj_w,    3,    L,  C,     F,  CF_INIT_RESID,   1) /* (L,C,F) */                       \
    X(ln1_w,        2,    L,  C,     1,  CF_INIT_ONE,     0) /* (L,C) */                         \
    X(ln1_b,        2,    L,  C,     1,  CF_INIT_ZERO,    0) /* (L,C) */                         \
    X(qkv_b,        2,    L,  3 * C, 1,  CF_INIT_ZERO,    0) /* (L,3C) */                        \
    X(attn_proj_b,  2,    L,  C,     1,  CF_INIT_ZERO,    0) /* (L,C) */                         \
    X(ln2_w,        2,    L,  C,     1,  CF_INIT_ONE,     0) /* (L,C) */                         \
    X(ln2_b,        2,    L,  C,     1,  CF_INIT_ZERO,    0) /* (L,C) */                         \
    X(fc_b,         2,    L,  F,     1,  CF_INIT_ZERO,    0) /* (L,F) */                         \
    X(fc_proj_b,    2,    L,  C,     1,  CF_INIT_ZERO,    0) /* (L,C) */                         \
    X(lnf_w,        1,    C,  1,     1,  CF_INIT_ONE,     0) /* (C) */                           \
    X(lnf_b,        1,    C,  1,     1,  CF_INIT_ZERO,    0) /* (C) */

enum { CF_INIT_NORMAL, CF_INIT_RESID, CF_INIT_ONE, CF_INIT_ZERO };

enum cf_param_id {
#define CF_X(name, ...) CF_P_##name,
    CF_GPT_PARAMS(CF_X)
#undef CF_X
    CF_NUM_PARAMS
};

/* Forward activations, sized for the maximum (B, T); per-layer tensors are stacked over L.
 *   X(name, size) with BT = B*T, BNT = B*NH*T*T */
#define CF_GPT_ACTS(X)                                                                             \
    X(encoded,   BT * C)          /* (B,T,C) */                                                    \
    X(ln1,       L * BT * C)      /* (L,B,T,C) */                                                  \
    X(ln1_mean,  L * BT)          /* (L,B,T) */                                                    \
    X(ln1_rstd,  L * BT)          /* (L,B,T) */                                                    \
    X(qkv,       L * BT * 3 * C)  /* (L,B,T,3C) */                                                 \
    X(atty,      L * BT * C)      /* (L,B,T,C) */                                                  \
    X(att,       L * BNT)         /* (L,B,NH,T,T) softmax probabilities */                         \
    X(attproj,   L * BT * C)      /* (L,B,T,C) */                                                  \
    X(residual2, L * BT * C)      /* (L,B,T,C) */                                                  \
    X(ln2,       L * BT * C)      /* (L,B,T,C) */                                                  \
    X(ln2_mean,  L * BT)          /* (L,B,T) */                                                    \
    X(ln2_rstd,  L * BT)          /* (L,B,T) */                                                    \
    X(fch,       L * BT * F)      /* (L,B,T,F) */                                                  \
    X(fch_gelu,  L * BT * F)      /* (L,B,T,F) */                                                  \
    X(fcproj,    L * BT * C)      /* (L,B,T,C) */                                                  \
    X(residual3, L * BT * C)      /* (L,B,T,C) */                                                  \
    X(lnf,       BT * C)          /* (B,T,C) */                                                    \
    X(lnf_mean,  BT)              /* (B,T) */                                                      \
    X(lnf_rstd,  BT)              /* (B,T) */                                                      \
    X(logits,    BT * V)          /* (B,T,V); holds dlogits after the fused loss backward */       \
    X(losses,    BT)              /* (B,T) */                                                      \
    X(tokens,    BT)              /* (B,T) int32 inputs */                                         \
    X(targets,   BT)              /* (B,T) int32 targets */                                        \
    X(scalars,   64)              /* loss sums, grad norm */

/* Backward scratch, reused layer by layer (not stacked over L). */
#define CF_GPT_GRAD_ACTS(X)                                                                        \
    X(dres,      BT * C)          /* (B,T,C) gradient of the residual stream */                    \
    X(dln,       BT * C)          /* (B,T,C) gradient of a LayerNorm output */                     \
    X(datty,     BT * C)          /* (B,T,C) */                                                    \
    X(dqkv,      BT * 3 * C)      /* (B,T,3C) */                                                   \
    X(dfch_gelu, BT * F)          /* (B,T,F) the MLP's input gradient, then (in place) d(fch) */   \
    X(datt,      BNT)             /* (B,NH,T,T) */                                                 \
    X(dpreatt,   BNT)             /* (B,NH,T,T) */

enum cf_act_id {
#define CF_X(name, size) CF_A_##name,
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
    const char *name;
    int ndim;
    int64_t shape[3];
    size_t size;   /* elements */
    size_t offset; /* elements into the parameter buffer */
    int init;
    int decay;
} cf_param_info;

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
     * (be->max_alloc) requires: tensor i is at act_off[i] in acts_bufs[act_chunk[i]]. */
    cf_buffer *acts_bufs[CF_NUM_ACTS];
    int n_act_chunks;
    int act_chunk[CF_NUM_ACTS];
    size_t act_off[CF_NUM_ACTS], act_size[CF_NUM_ACTS];
    size_t act_chunk_elems[CF_NUM_ACTS];
    size_t gact_off[CF_NUM_GACTS];
    size_t acts_elems, gacts_elems;
    int have_grads; /* grads/m/v/grad-acts allocated (training) */
    int cur_B, cur_T; /* shape of the last forward */
    int opt_step;     /* AdamW steps taken */
} cf_model;

/* Create a model for (max_B, max_T) batches on a backend. training = 0 allocates only params and
 * forward activations (generation / eval). Parameters are uninitialised until init or load. */
int cf_model_create(cf_backend *be, const cf_config *cfg, int max_B, int max_T, int training,
                    cf_model **out);
void cf_model_free(cf_model *m);

/* GPT-2 initialisation (normal 0.02, residual projections 0.02/sqrt(2L), LN 1/0, biases 0),
 * drawn on the host from a seeded RNG so every backend starts from identical weights. */
int cf_model_init(cf_model *m, uint64_t seed);

/* Forward on B x T int32 tokens (B <= max_B, T <= max_T). With targets, *loss receives the mean
 * cross-entropy (one 4-byte download); without, only logits are computed. */
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

/* Logits (V floats) at position t of batch row b of the last forward, downloaded to the host. */
int cf_model_logits_row(cf_model *m, int b, int t, float *out);

/* Parameters and optimizer state to/from host float arrays laid out like the device buffers. */
int cf_model_get_params(cf_model *m, float *host);
int cf_model_set_params(cf_model *m, const float *host);
int cf_model_get_opt_state(cf_model *m, float *host_m, float *host_v);
int cf_model_set_opt_state(cf_model *m, const float *host_m, const float *host_v);
int cf_model_get_grads(cf_model *m, float *host);

/* Learning rate at (0-based) optimizer step: linear warmup, then cosine to lr*min_lr_ratio. */
float cf_lr_schedule(const cf_config *cfg, int step);

/* Model FLOPs per trained token (forward + backward = 3x forward matmul FLOPs, plus attention). */
double cf_model_flops_per_token(const cf_config *cfg);

#endif
