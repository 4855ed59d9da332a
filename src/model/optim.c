/* clformer: AdamW and Muon over the model's parameter table, and the learning-rate schedules
 * (see optim.h). Muon's Newton-Schulz iteration is GEMMs through cf_be_gemm, so it runs on the
 * device of every backend. */
#include "model/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- schedules --------------------------------------------------------------------------- */

float cf_lr_at(const cf_config *cfg, float base, int step) {
    const float lr = base, lr_min = base * cfg->min_lr_ratio;
    if (step < cfg->warmup_steps) return lr * (float)(step + 1) / (float)cfg->warmup_steps;
    if (cfg->lr_schedule == CF_LR_CONSTANT) return lr;
    if (cfg->lr_schedule == CF_LR_WSD) {
        /* stable, then linear over the last decay_fraction of all steps (warmup included) */
        int decay_steps = (int)lrint((double)cfg->decay_fraction * cfg->steps);
        if (decay_steps < 1) return lr;
        int start = cfg->steps - decay_steps;
        if (start < cfg->warmup_steps) start = cfg->warmup_steps;
        if (step < start) return lr;
        const int span = cfg->steps - start > 0 ? cfg->steps - start : 1;
        float progress = (float)(step - start) / (float)span;
        if (progress > 1.0f) progress = 1.0f;
        return lr - (lr - lr_min) * progress;
    }
    int decay_steps = cfg->steps - cfg->warmup_steps;
    if (decay_steps < 1) decay_steps = 1;
    float progress = (float)(step - cfg->warmup_steps) / (float)decay_steps;
    if (progress > 1.0f) progress = 1.0f;
    return lr_min + 0.5f * (lr - lr_min) * (1.0f + cosf(3.14159265358979f * progress));
}

/* ---- Newton-Schulz and one matrix's step ------------------------------------------------- */

static size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

/* scratch layout: X (r*c) | Y (r*c) | A (s*s) | B (s*s) | sumsq (1), each 64-byte aligned */
typedef struct {
    size_t x, y, a, b, s, total;
} ns_layout;

static ns_layout layout_of(int rows, int cols) {
    const size_t rc = (size_t)rows * (size_t)cols, sm = (size_t)(rows < cols ? rows : cols);
    ns_layout l;
    l.x = 0;
    l.y = pad16(rc);
    l.a = l.y + pad16(rc);
    l.b = l.a + pad16(sm * sm);
    l.s = l.b + pad16(sm * sm);
    l.total = l.s + 16;
    return l;
}

size_t cf_muon_scratch_elems(int rows, int cols) { return layout_of(rows, cols).total; }

float cf_muon_scale(int rows, int cols) {
    const float r = (float)rows / (float)cols;
    return sqrtf(r > 1.0f ? r : 1.0f);
}

int cf_muon_newton_schulz(cf_backend *be, cf_view scratch, int rows, int cols, int steps,
                          cf_view *out) {
    if (rows <= 0 || cols <= 0 || steps < 0) {
        CF_ERROR("muon: matrix (%d, %d) with %d Newton-Schulz steps: dimensions must be positive",
                 rows, cols, steps);
        return CF_ERR_INVALID;
    }
    const ns_layout l = layout_of(rows, cols);
    const size_t rc = (size_t)rows * (size_t)cols;
    cf_view X = cf_view_add(scratch, l.x), Y = cf_view_add(scratch, l.y);
    const cf_view A = cf_view_add(scratch, l.a), B = cf_view_add(scratch, l.b),
                  S = cf_view_add(scratch, l.s);
    CF_TRY(cf_be_reduce_sum(be, S, X, rc, 1));
    CF_TRY(cf_be_scale_rnorm(be, X, S, rc, CF_MUON_NS_EPS));
    const int tall = rows > cols, s = tall ? cols : rows;
    for (int k = 0; k < steps; k++) {
        /* A = X X^T (s = rows), or X^T X for a tall X (s = cols) */
        if (tall)
            CF_TRY(cf_be_gemm(be, 1, 0, s, s, rows, 1.0f, X, cols, X, cols, 0.0f, A, s));
        else
            CF_TRY(cf_be_gemm(be, 0, 1, s, s, cols, 1.0f, X, cols, X, cols, 0.0f, A, s));
        /* B = b A + c A A */
        CF_TRY(cf_be_copy(be, B, A, (size_t)s * s));
        CF_TRY(cf_be_gemm(be, 0, 0, s, s, s, CF_MUON_NS_C, A, s, A, s, CF_MUON_NS_B, B, s));
        /* Y = a X + B X, or a X + X B for a tall X (B is symmetric) */
        CF_TRY(cf_be_copy(be, Y, X, rc));
        if (tall)
            CF_TRY(cf_be_gemm(be, 0, 0, rows, cols, cols, 1.0f, X, cols, B, cols, CF_MUON_NS_A, Y,
                              cols));
        else
            CF_TRY(cf_be_gemm(be, 0, 0, rows, cols, rows, 1.0f, B, rows, X, cols, CF_MUON_NS_A, Y,
                              cols));
        const cf_view t = X;
        X = Y;
        Y = t;
    }
    *out = X;
    return CF_OK;
}

int cf_muon_matrix_step(cf_backend *be, cf_view param, cf_view grad, cf_view mom, int rows,
                        int cols, const cf_muon_hparams *h, cf_view scratch) {
    const size_t rc = (size_t)rows * (size_t)cols;
    cf_view u;
    CF_TRY(cf_be_muon_momentum(be, mom, grad, scratch, rc, h->momentum, h->grad_scale));
    CF_TRY(cf_muon_newton_schulz(be, scratch, rows, cols, CF_MUON_NS_STEPS, &u));
    return cf_be_axpby(be, param, u, -h->lr * cf_muon_scale(rows, cols),
                       1.0f - h->lr * h->weight_decay, rc);
}

/* ---- the model's Muon state ------------------------------------------------------------------ */

size_t cf_muon_state_elems(const cf_config *cfg) {
    if (cfg->optimizer != CF_OPTIM_MUON) return 0;
    cf_param_info p[CF_NUM_PARAMS];
    cf_model_layout(cfg, p, NULL, NULL);
    size_t n = 0;
    for (int i = 0; i < CF_NUM_PARAMS; i++)
        if (cf_optim_is_matrix(&p[i])) n += p[i].size;
    return n;
}

size_t cf_optim_adam_layout(const cf_config *cfg, const cf_param_info *p, size_t num_params,
                            size_t *off) {
    const int muon = cfg->optimizer == CF_OPTIM_MUON;
    size_t n = 0;
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        if (off) off[i] = muon ? n : p[i].offset;
        if (muon && p[i].present && !cf_optim_is_matrix(&p[i])) n += p[i].size;
    }
    return muon ? n : num_params;
}

size_t cf_optim_adam_elems(const cf_config *cfg) {
    cf_param_info p[CF_NUM_PARAMS];
    size_t np = 0;
    cf_model_layout(cfg, p, &np, NULL);
    return cf_optim_adam_layout(cfg, p, np, NULL);
}

int cf_muon_create(cf_model *m) {
    if (m->cfg.optimizer != CF_OPTIM_MUON || m->muon) return CF_OK;
    struct cf_muon *mu = calloc(1, sizeof *mu);
    if (!mu) return CF_ERR_NOMEM;
    size_t scratch = 0;
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &m->params[i];
        if (!cf_optim_is_matrix(p)) continue;
        mu->off[i] = mu->n;
        mu->n += p->size;
        const size_t s = cf_muon_scratch_elems((int)p->shape[1], (int)p->shape[2]);
        if (s > scratch) scratch = s;
    }
    m->muon = mu;
    if (mu->n == 0) return CF_OK;
    CF_TRY(cf_be_alloc(m->be, mu->n * sizeof(float), &mu->mom));
    CF_TRY(cf_be_alloc(m->be, scratch * sizeof(float), &mu->scratch));
    return cf_be_fill(m->be, cf_view_f32(mu->mom, 0), 0.0f, mu->n);
}

void cf_muon_free(cf_model *m) {
    if (!m->muon) return;
    cf_be_free(m->be, m->muon->mom);
    cf_be_free(m->be, m->muon->scratch);
    free(m->muon);
    m->muon = NULL;
}

int cf_muon_get_state(cf_model *m, float *host) {
    if (!m->muon) return CF_ERR_INVALID;
    if (m->muon->n == 0) return CF_OK;
    return cf_be_download(m->be, host, cf_view_f32(m->muon->mom, 0), m->muon->n * sizeof(float));
}

int cf_muon_set_state(cf_model *m, const float *host) {
    if (!m->muon) return CF_ERR_INVALID;
    if (m->muon->n == 0) return CF_OK;
    return cf_be_upload(m->be, cf_view_f32(m->muon->mom, 0), host, m->muon->n * sizeof(float));
}

/* ---- one step ---------------------------------------------------------------------------- */

int cf_model_optimizer_step(cf_model *m, int step, float grad_scale, float *lr_used,
                            float *muon_lr_used) {
    const cf_config *c = &m->cfg;
    const float lr = cf_lr_schedule(c, step);
    *lr_used = lr;
    if (muon_lr_used) *muon_lr_used = 0.0f;
    if (c->optimizer != CF_OPTIM_MUON) return cf_model_adamw(m, lr, grad_scale);
    if (!m->muon || !m->have_grads) {
        CF_ERROR("muon: the model was created without its optimizer state (training = 0)");
        return CF_ERR_INVALID;
    }
    cf_backend *be = m->be;
    const int t = ++m->opt_step;
    cf_prof_scope(be, -1, CF_PHASE_OPTIMIZER);
    /* AdamW over maximal runs of adjacent non-matrix parameters with the same decay flag (their
     * moments are packed in the same order: adam_off) */
    for (int i = 0; i < CF_NUM_PARAMS;) {
        const cf_param_info *p = &m->params[i];
        if (!p->present || cf_optim_is_matrix(p)) {
            i++;
            continue;
        }
        const size_t off = p->offset;
        size_t end = off + p->size;
        int j = i + 1;
        for (; j < CF_NUM_PARAMS; j++) {
            const cf_param_info *q = &m->params[j];
            if (!q->present) continue; /* size 0: does not break a run */
            if (cf_optim_is_matrix(q) || q->decay != p->decay || q->offset != end) break;
            end = q->offset + q->size;
        }
        const size_t mo = m->adam_off[i];
        CF_TRY(cf_be_adamw(be, cf_view_f32(m->params_buf, off), cf_view_f32(m->grads_buf, off),
                           cf_view_f32(m->m_buf, mo), cf_view_f32(m->v_buf, mo), end - off, lr,
                           c->beta1, c->beta2, c->eps, p->decay ? c->weight_decay : 0.0f,
                           grad_scale, t));
        i = j;
    }
    const float mlr = cf_lr_at(c, c->muon_lr, step);
    if (muon_lr_used) *muon_lr_used = mlr;
    const cf_view scratch = cf_view_f32(m->muon->scratch, 0);
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &m->params[i];
        if (!cf_optim_is_matrix(p)) continue;
        const cf_muon_hparams h = {mlr, c->muon_momentum, p->decay ? c->weight_decay : 0.0f,
                                   grad_scale};
        for (int64_t l = 0; l < p->shape[0]; l++) {
            const size_t o = p->offset + (size_t)l * p->layer_stride;
            CF_TRY(cf_muon_matrix_step(be, cf_view_f32(m->params_buf, o),
                                       cf_view_f32(m->grads_buf, o),
                                       cf_view_f32(m->muon->mom,
                                                   m->muon->off[i] + (size_t)l * p->layer_stride),
                                       (int)p->shape[1], (int)p->shape[2], &h, scratch));
        }
    }
    return CF_OK;
}
