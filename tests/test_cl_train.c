/* clformer test: a whole training run on the OpenCL backend against the CPU backend: same init and
 * batches, per-step loss and gradient norm within 1e-4 relative, final weights within 2e-3 of
 * max(|w|, 1e-2) per tensor; and the bus traffic of a step is bounded: host->device only the token
 * batch, device->host only the logged scalars. Device: CF_TEST_OPENCL_DEVICE or "opencl". */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_cl_common.h"

#include "model/gpt.h"

#define STEPS 6

typedef struct {
    float loss[STEPS], norm[STEPS];
    float *params;
    uint64_t h2d_per_step, d2h_per_step, allocs_per_step;
} run_result;

static void run(cf_backend *be, const cf_config *cfg, run_result *r) {
    cf_model *m = NULL;
    TCL_OK(cf_model_create(be, cfg, cfg->batch_size, cfg->max_length, 1, &m));
    TCL_OK(cf_model_init(m, cfg->seed));
    const int B = cfg->batch_size, T = cfg->max_length, A = cfg->grad_accum_steps;
    int32_t *x = malloc(sizeof(int32_t) * B * T), *y = malloc(sizeof(int32_t) * B * T);
    cf_rng data;
    cf_rng_seed(&data, 99);
    for (int s = 0; s < STEPS; s++) {
        cf_backend_stats before = be->stats;
        TCL_OK(cf_model_zero_grad(m));
        for (int k = 0; k < A; k++) {
            for (int i = 0; i < B * T; i++) {
                x[i] = (int32_t)(cf_rng_u32(&data) % (uint32_t)cfg->vocab_size);
                y[i] = (int32_t)(cf_rng_u32(&data) % (uint32_t)cfg->vocab_size);
            }
            TCL_OK(cf_model_forward_backward(m, x, y, B, T, 1.0f / A, k));
        }
        float norm, sc[64];
        TCL_OK(cf_model_grad_norm(m, &norm));
        float scale = norm > cfg->grad_clip ? cfg->grad_clip / (norm + 1e-6f) : 1.0f;
        TCL_OK(cf_model_adamw(m, cf_lr_schedule(cfg, s), scale));
        TCL_OK(cf_model_read_scalars(m, sc, A));
        double l = 0;
        for (int k = 0; k < A; k++) l += sc[k];
        r->loss[s] = (float)(l / ((double)B * T * A));
        r->norm[s] = norm;
        r->h2d_per_step = be->stats.h2d_bytes - before.h2d_bytes;
        r->d2h_per_step = be->stats.d2h_bytes - before.d2h_bytes;
        r->allocs_per_step = be->stats.allocs - before.allocs;
    }
    r->params = malloc(sizeof(float) * m->num_params);
    TCL_OK(cf_model_get_params(m, r->params));
    free(x);
    free(y);
    cf_model_free(m);
}

int main(void) {
    int code = 0;
    if (tcl_open("test_cl_train", NULL, &code) < 0) return code;
    cf_config cfg;
    cf_config_defaults(&cfg);
    cfg.d_model = 64;
    cfg.num_heads = 4;
    cfg.num_layers = 2;
    cfg.d_ff = 160; /* not a multiple of the 16x16 tile */
    cfg.max_length = 40;
    cfg.batch_size = 3;
    cfg.vocab_size = 256;
    cfg.grad_accum_steps = 2;
    cfg.steps = STEPS;
    cfg.warmup_steps = 2;
    cfg.learning_rate = 1e-3f;
    printf("training %d steps on %s and on the CPU backend\n", STEPS, cf_be_name(GPU));
    run_result rc, rg;
    run(CPU, &cfg, &rc);
    run(GPU, &cfg, &rg);
    int fail = 0;
    for (int s = 0; s < STEPS; s++) {
        double el = fabs(rg.loss[s] - rc.loss[s]) / fabs(rc.loss[s]);
        double en = fabs(rg.norm[s] - rc.norm[s]) / fabs(rc.norm[s]);
        int ok = el < 1e-4 && en < 1e-4;
        printf("%s step %d: loss cpu %.6f opencl %.6f (rel %.1e), grad norm %.5f / %.5f (rel %.1e)\n",
               ok ? "ok  " : "FAIL", s + 1, rc.loss[s], rg.loss[s], el, rc.norm[s], rg.norm[s], en);
        fail |= !ok;
    }
    /* final weights, tensor by tensor; the key bias has an exactly-zero true gradient, so AdamW
     * turns rounding noise into ~lr-sized steps there: bounded by steps * lr instead */
    cf_model *layout = NULL;
    TCL_OK(cf_model_create(CPU, &cfg, 1, 1, 0, &layout));
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &layout->params[i];
        if (!p->present) continue; /* a tensor this config does not have */
        double num = 0, den = 1e-2, kdiff = 0;
        for (size_t j = 0; j < p->size; j++) {
            size_t o = p->offset + j;
            double d = fabs((double)rg.params[o] - rc.params[o]);
            int is_k = i == CF_P_qkv_b && (j % (3 * (size_t)cfg.d_model)) / cfg.d_model == 1;
            if (is_k) {
                if (d > kdiff) kdiff = d;
                continue;
            }
            if (d > num || isnan(d)) num = isnan(d) ? INFINITY : d;
            if (fabs(rc.params[o]) > den) den = fabs(rc.params[o]);
        }
        int ok = num / den < 2e-3 && kdiff <= STEPS * cfg.learning_rate * 1.5;
        printf("%s final %-12s max|diff|/max(|w|,1e-2) = %.2e%s\n", ok ? "ok  " : "FAIL", p->name,
               num / den, i == CF_P_qkv_b ? " (key slice bounded by steps*lr)" : "");
        fail |= !ok;
    }
    cf_model_free(layout);
    /* bus traffic of one step */
    const uint64_t want_h2d = (uint64_t)cfg.grad_accum_steps * 2 * cfg.batch_size * cfg.max_length * 4;
    const uint64_t want_d2h = (uint64_t)(cfg.grad_accum_steps + 1) * 4;
    int ok = rg.h2d_per_step == want_h2d && rg.d2h_per_step <= want_d2h && rg.allocs_per_step == 0;
    printf("%s per step: %llu bytes host->device (token batches: %llu), %llu bytes device->host "
           "(bound %llu: losses + grad norm), %llu allocations\n",
           ok ? "ok  " : "FAIL", (unsigned long long)rg.h2d_per_step,
           (unsigned long long)want_h2d, (unsigned long long)rg.d2h_per_step,
           (unsigned long long)want_d2h, (unsigned long long)rg.allocs_per_step);
    fail |= !ok;
    free(rc.params);
    free(rg.params);
    printf(fail ? "test_cl_train: FAILED\n" : "test_cl_train: all checks passed\n");
    cf_backend_destroy(CPU);
    cf_backend_destroy(GPU);
    return fail;
}
