/* clformer test: the Muon optimizer on the OpenCL backend against the CPU backend: one matrix's
 * step (momentum, Newton-Schulz as GEMMs, update) three times in a row for wide, square and tall
 * matrices, parameters and momentum within 1e-5 (normalised); and a small model trained a few
 * steps with optimizer muon on both, losses within 1e-4 relative and final Muon weights within
 * 1e-4.
 * Device: CF_TEST_OPENCL_DEVICE or "opencl". */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_cl_common.h"

#include "model/gpt.h"
#include "model/optim.h"
#include "train/train.h"

static void matrix_case(int r, int c) {
    const size_t n = (size_t)r * c;
    pair p = pair_const(n, 0.0f), mom = pair_const(n, 0.0f);
    pair scratch = pair_const(cf_muon_scratch_elems(r, c), 0.0f);
    const cf_muon_hparams h = {0.02f, 0.95f, 0.1f, 0.8f};
    for (int s = 0; s < 3; s++) {
        pair g = pair_rand(n, 1.0f);
        BOTH(cf_muon_matrix_step(be, V(p), V(g), V(mom), r, c, &h, V(scratch)));
        pair_free(g);
    }
    char what[96];
    snprintf(what, sizeof what, "muon 3 steps (%d,%d) params", r, c);
    check(what, p, 1e-5);
    snprintf(what, sizeof what, "muon 3 steps (%d,%d) momentum", r, c);
    check(what, mom, 1e-5);
    pair_free(p);
    pair_free(mom);
    pair_free(scratch);
}

#define STEPS 3

static void train(cf_backend *be, const cf_config *cfg, float *loss, float **params) {
    cf_model *m = NULL;
    TCL_OK(cf_model_create(be, cfg, cfg->batch_size, cfg->max_length, 1, &m));
    TCL_OK(cf_model_init(m, cfg->seed));
    const size_t BT = (size_t)cfg->batch_size * cfg->max_length;
    int32_t *x = tcl_malloc(BT * 4), *y = tcl_malloc(BT * 4);
    cf_random_batch rb;
    cf_rng_seed(&rb.rng, 99);
    rb.V = cfg->vocab_size;
    for (int s = 0; s < STEPS; s++) {
        cf_step_info si;
        TCL_OK(cf_train_step(m, s, cf_random_batch_next, &rb, x, y, &si));
        loss[s] = si.loss;
    }
    *params = tcl_malloc(m->num_params * 4);
    TCL_OK(cf_model_get_params(m, *params));
    free(x);
    free(y);
    cf_model_free(m);
}

int main(void) {
    int code = 0;
    const double t0 = cf_time_now();
    if (tcl_open("test_cl_muon", NULL, &code) < 0) return code;
    static const int shapes[][2] = {{8, 16}, {16, 8}, {24, 24}, {70, 20}, {20, 70}, {1, 9}, {9, 1}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        matrix_case(shapes[i][0], shapes[i][1]);

    cf_config cfg;
    cf_config_defaults(&cfg);
    cfg.d_model = 32;
    cfg.num_heads = 2;
    cfg.num_layers = 2;
    cfg.d_ff = 72;
    cfg.max_length = 16;
    cfg.batch_size = 2;
    cfg.vocab_size = 64;
    cfg.steps = 10;
    cfg.warmup_steps = 1;
    cfg.optimizer = CF_OPTIM_MUON;
    cfg.lr_schedule = CF_LR_WSD;
    float lc[STEPS], lg[STEPS], *pc = NULL, *pg = NULL;
    train(CPU, &cfg, lc, &pc);
    train(GPU, &cfg, lg, &pg);
    for (int s = 0; s < STEPS; s++) {
        const double e = fabs(lg[s] - lc[s]) / fabs(lc[s]);
        checks++;
        if (!(e < 1e-4)) fails++;
        printf("%-4s optimizer muon step %d: loss cpu %.6f opencl %.6f (rel %.1e, tol 1e-4)\n",
               e < 1e-4 ? "ok" : "FAIL", s + 1, lc[s], lg[s], e);
    }
    cf_param_info info[CF_NUM_PARAMS];
    cf_model_layout(&cfg, info, NULL, NULL);
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &info[i];
        if (!cf_optim_is_matrix(p)) continue;
        double num = 0, den = 1e-2;
        for (size_t j = 0; j < p->size; j++) {
            num = fmax(num, fabs((double)pg[p->offset + j] - pc[p->offset + j]));
            den = fmax(den, fabs((double)pc[p->offset + j]));
        }
        checks++;
        if (!(num / den < 1e-4)) fails++;
        printf("%-4s final %-12s (Muon) max|diff|/max(|w|,1e-2) = %.2e (tol 1e-4)\n",
               num / den < 1e-4 ? "ok" : "FAIL", p->name, num / den);
    }
    free(pc);
    free(pg);
    return tcl_finish("test_cl_muon", t0);
}
