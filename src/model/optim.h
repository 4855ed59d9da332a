/* clformer: the optimizers over the model's parameter table: AdamW for everything (optimizer
 * adamw), or Muon for the blocks' 2-D weight matrices and AdamW for the rest (optimizer muon);
 * the learning-rate schedules. Everything runs as backend ops, so it runs on every backend. */
#ifndef CF_MODEL_OPTIM_H
#define CF_MODEL_OPTIM_H

#include <stddef.h>

#include "backend/backend.h"
#include "clformer/config.h"
#include "model/gpt.h"

/* Muon's group, from the parameter table: the present 2-D weight slices of the blocks (layered
 * rows with nd 2: qkv_w, attn_proj_w, fc_w, fc_proj_w). Each stored block's slice (rows = out
 * features, cols = in features) is one matrix. Embeddings, the head, norms and biases stay with
 * AdamW. */
static inline int cf_optim_is_matrix(const cf_param_info *p) {
    return p->present && p->layered && p->ndim == 3;
}

/* Learning rate at 0-based optimizer step for a peak of `base`: linear warmup over warmup_steps,
 * then by lr_schedule: cosine to base * min_lr_ratio over the remaining steps; wsd: base until the
 * last round(decay_fraction * steps) steps, then linear to base * min_lr_ratio; constant: base.
 * cf_lr_schedule(cfg, step) is cf_lr_at(cfg, cfg->learning_rate, step). */
float cf_lr_at(const cf_config *cfg, float base, int step);

/* Newton-Schulz quintic iteration of the public Muon reference, coefficients (a, b, c) =
 * (3.4445, -4.7750, 2.0315): X <- X / (|X|_F + 1e-7), then `steps` times A = X X^T,
 * B = b A + c A A, X <- a X + B X. A tall matrix (rows > cols) runs in its transposed form
 * (A = X^T X, X <- a X + X B) so the Gram matrix is the smaller side, without a transpose.
 * Each singular value s of the normalised input goes to f^steps(s), f(s) = a s + b s^3 + c s^5:
 * after 5 steps every s in [0.01, 1] lands in [0.68, 1.14] (approximately orthogonal). */
#define CF_MUON_NS_A 3.4445f
#define CF_MUON_NS_B -4.7750f
#define CF_MUON_NS_C 2.0315f
#define CF_MUON_NS_STEPS 5
#define CF_MUON_NS_EPS 1e-7f

/* Elements of the scratch one (rows, cols) matrix needs: two (rows, cols) iterates, two
 * (s, s) Gram products (s = min(rows, cols)) and one scalar. */
size_t cf_muon_scratch_elems(int rows, int cols);
/* The iteration on the matrix held in scratch's first rows*cols elements (row-major); *out
 * receives the view that holds the result (in scratch). */
int cf_muon_newton_schulz(cf_backend *be, cf_view scratch, int rows, int cols, int steps,
                          cf_view *out);

typedef struct {
    float lr;           /* this step's Muon learning rate (muon_lr through the schedule) */
    float momentum;     /* muon_momentum */
    float weight_decay; /* decoupled: param *= 1 - lr * weight_decay */
    float grad_scale;   /* global-norm clipping factor applied to the gradient */
} cf_muon_hparams;

/* The scale of the orthogonalised update of a (rows, cols) matrix: sqrt(max(1, rows / cols)), the
 * public reference's choice (rows = output features): a tall matrix's update grows with its aspect
 * ratio; square and wide ones keep singular values near 1. */
float cf_muon_scale(int rows, int cols);

/* One Muon step of one (rows, cols) matrix: mom = momentum * mom + (1 - momentum) * g,
 * u = NS((1 - momentum) * g + momentum * mom) (Nesterov), param = param * (1 - lr * wd) -
 * lr * cf_muon_scale(rows, cols) * u, with g = grad * grad_scale.
 * scratch: cf_muon_scratch_elems(rows, cols) elements. */
int cf_muon_matrix_step(cf_backend *be, cf_view param, cf_view grad, cf_view mom, int rows,
                        int cols, const cf_muon_hparams *h, cf_view scratch);

/* Muon's state of a model (allocated by cf_model_create for training with optimizer muon):
 * momentum for every Muon matrix, packed in table order, and the scratch of the largest one. */
struct cf_muon {
    cf_buffer *mom, *scratch;
    size_t n;                   /* momentum elements */
    size_t off[CF_NUM_PARAMS];  /* momentum offset of each Muon parameter */
};
int cf_muon_create(cf_model *m);
void cf_muon_free(cf_model *m);
/* Momentum elements of a config's Muon group (0 with optimizer adamw). */
size_t cf_muon_state_elems(const cf_config *cfg);
/* Where AdamW keeps its moments (m and v, one layout each) for the parameter table p of a config:
 * optimizer adamw: every parameter at its own offset (num_params elements, padding included);
 * muon: only the parameters AdamW updates (cf_optim_is_matrix false), packed in table order.
 * off (optional) receives each present parameter's offset; returns the elements. */
size_t cf_optim_adam_layout(const cf_config *cfg, const cf_param_info *p, size_t num_params,
                            size_t *off);
/* cf_optim_adam_layout's elements for a config (bench's memory estimate). */
size_t cf_optim_adam_elems(const cf_config *cfg);
/* The momentum, packed as in struct cf_muon, to/from the host (checkpoints). */
int cf_muon_get_state(cf_model *m, float *host);
int cf_muon_set_state(cf_model *m, const float *host);

/* One optimizer step at 0-based step index `step` (the schedule's position) with the clipping
 * factor grad_scale: optimizer adamw is cf_model_adamw at cf_lr_schedule; muon is AdamW over the
 * non-matrix parameters (learning_rate, beta1, beta2, eps; weight decay where the table says) and
 * cf_muon_matrix_step over every block's matrices (muon_lr). *lr_used receives the AdamW
 * learning rate, *muon_lr_used (may be NULL) Muon's (0 with adamw). */
int cf_model_optimizer_step(cf_model *m, int step, float grad_scale, float *lr_used,
                            float *muon_lr_used);

#endif
