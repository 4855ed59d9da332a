/* clformer: `clformer bench CONFIG`: steady-state training throughput on random tokens, MFU against
 * the measured device peak, host and device memory against the analytic estimate, host<->device
 * bytes and device allocations per step, and the optional per-op profile and trace. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "backend/verify.h"
#include "bench/bench.h"
#include "model/gpt.h"
#include "model/optim.h"
#include "train/train.h"

/* ---- analytic memory ------------------------------------------------------------------------ */

void cf_bench_mem_estimate(const cf_config *c, int B, int T, cf_mem_estimate *out) {
    const uint64_t f = sizeof(float);
    memset(out, 0, sizeof *out);
    /* every present row of the model's parameter table */
    cf_param_info params[CF_NUM_PARAMS];
    size_t np = 0;
    cf_model_layout(c, params, &np, NULL);
    out->num_params = np;
    out->params = out->num_params * f;
    out->grads = out->params;
    /* AdamW's two moments (optimizer muon: for the parameters AdamW updates) and Muon's momentum */
    out->adam = (2 * cf_optim_adam_elems(c) + cf_muon_state_elems(c)) * f;
    /* the activation table's tensors (per-layer ones stacked over L: norm outputs and
     * statistics, qkv, attention output and (B,NH,T,T) probabilities, residuals, MLP pre- and
     * post-activation, in precision bf16/fp16 some of them half with one fp32 work slice; the
     * embedding output, final norm, a chunk of logits, per-token losses, input and target ids,
     * the projection scratch and the loss scalars), and the backward scratch reused layer by
     * layer */
    cf_act_info acts[CF_NUM_ACTS];
    size_t gacts[CF_NUM_GACTS];
    cf_model_act_layout(c, B, T, acts, gacts);
    uint64_t a = 0, g = 0;
    for (int i = 0; i < CF_NUM_ACTS; i++) a += acts[i].bytes;
    for (int i = 0; i < CF_NUM_GACTS; i++) g += gacts[i];
    out->acts = a;
    out->grad_scratch = f * g;
    out->total = out->params + out->grads + out->adam + out->acts + out->grad_scratch;
    out->flash = cf_model_flash(c, T);
}

const char *cf_bench_recompute_name(int recompute) {
    switch (recompute) {
    case CF_RECOMPUTE_NONE: return "none";
    case CF_RECOMPUTE_ATTENTION: return "attention";
    case CF_RECOMPUTE_BLOCK: return "block";
    default: return "?";
    }
}

/* ---- the benchmark ------------------------------------------------------------------------- */

typedef struct {
    int32_t *pool; /* (nbatch, B*T+1) random ids */
    int nbatch, next;
    size_t bt;
} rand_batches;

/* Micro-batches from a small pool of random token windows (no dataset, no tokenizer). */
static int next_rand_batch(void *user, int32_t *x, int32_t *y, int B, int T) {
    rand_batches *rb = user;
    const int32_t *w = rb->pool + (size_t)rb->next * (rb->bt + 1);
    rb->next = (rb->next + 1) % rb->nbatch;
    (void)B;
    (void)T;
    memcpy(x, w, rb->bt * sizeof(int32_t));
    memcpy(y, w + 1, rb->bt * sizeof(int32_t));
    return CF_OK;
}

/* CPU time of the whole process, seconds. */
static double process_cpu_seconds(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0.0;
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Linear-interpolated quantile q in [0,1] of sorted v[n]. */
static double quantile(const double *v, int n, double q) {
    if (n <= 0) return NAN;
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i >= n - 1) return v[n - 1];
    return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

static void gemm_path(cf_backend *be, char *out, size_t n) {
    cf_backend_info info;
    if (cf_be_info(be, &info) < 0 || !info.gemm[0]) snprintf(out, n, "unknown");
    else snprintf(out, n, "%s", info.gemm);
}

int cf_bench_run(const cf_config *cfg, const cf_bench_opts *o, cf_bench_result *r) {
    memset(r, 0, sizeof *r);
    const int steps = o->steps > 0 ? o->steps : 10;
    const int warmup = o->warmup > 0 ? o->warmup : 2;
    const int prof = o->profile || o->trace_path;
    const int prof_steps = prof ? (o->profile_steps > 0 ? o->profile_steps : 2) : 0;
    const char *origin = o->origin ? o->origin : "config";
    CF_TRY(cf_config_validate(cfg, origin));
    const int B = cfg->batch_size, T = cfg->max_length, V = cfg->vocab_size;

    cf_backend *be = NULL;
    cf_model *m = NULL;
    int32_t *x = NULL, *y = NULL;
    double *ms = NULL;
    cf_trace_span *spans = NULL;
    rand_batches rb = {0};
    int rc;
    if ((rc = cf_backend_create_for(o->device, o->backend, cfg, &be)) < 0) return rc;
    snprintf(r->device, sizeof r->device, "%s", cf_be_name(be));
    snprintf(r->config_name, sizeof r->config_name, "%s", cfg->name[0] ? cfg->name : origin);
    r->B = B;
    r->T = T;
    r->accum = cfg->grad_accum_steps;
    r->recompute = cfg->recompute;
    r->head_rows = cf_model_head_rows(cfg, B, T);
    r->steps = steps;
    r->warmup = warmup;
    r->tokens_per_step = (double)B * T * cfg->grad_accum_steps;
    r->flops_per_token = cf_model_flops_per_token(cfg);
    cf_bench_mem_estimate(cfg, B, T, &r->est);

    /* the peak first, while nothing else is allocated */
    const char *how = "";
    double peak_s = o->peak_seconds > 0 ? o->peak_seconds : 0.3;
    if (cf_bench_device_peak_gflops(be, peak_s, &r->peak_gflops, &how) < 0) {
        /* the throughput is still worth having; MFU is reported as 0 */
        CF_WARN("bench: the peak measurement failed on %s (see above); MFU will read 0",
                cf_be_name(be));
        r->peak_gflops = 0.0;
        how = "failed";
    }
    snprintf(r->peak_how, sizeof r->peak_how, "%s", how);

    if ((rc = cf_model_create(be, cfg, B, T, 1, &m)) < 0) goto done;
    if ((rc = cf_model_init(m, cfg->seed)) < 0) goto done;
    r->num_params = m->num_params;
    gemm_path(be, r->gemm, sizeof r->gemm);

    const size_t bt = (size_t)B * T;
    rb.nbatch = 4;
    rb.bt = bt;
    x = malloc(bt * sizeof *x);
    y = malloc(bt * sizeof *y);
    rb.pool = malloc((size_t)rb.nbatch * (bt + 1) * sizeof *rb.pool);
    ms = malloc((size_t)steps * sizeof *ms);
    if (prof) spans = calloc((size_t)prof_steps, sizeof *spans);
    if (!x || !y || !rb.pool || !ms || (prof && !spans)) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    cf_rng rng;
    cf_rng_seed(&rng, cfg->seed ^ 0x9e3779b97f4a7c15ULL);
    for (size_t i = 0; i < (size_t)rb.nbatch * (bt + 1); i++)
        rb.pool[i] = (int32_t)(cf_rng_u32(&rng) % (uint32_t)V);

    cf_step_info si;
    int step = 0;
    for (int w = 0; w < warmup; w++, step++) {
        const uint64_t a0 = be->stats.allocs;
        const double t0 = cf_time_now();
        if ((rc = cf_train_step(m, step, next_rand_batch, &rb, x, y, &si)) < 0) goto done;
        if (w == 0) {
            r->first_step_ms = (cf_time_now() - t0) * 1e3;
            r->first_step_allocs = be->stats.allocs - a0;
        }
    }
    /* timed steps: each step ends with the loss download, so its host time is its device time */
    const cf_backend_stats s0 = be->stats;
    const double cpu0 = process_cpu_seconds(), wall0 = cf_time_now();
    for (int i = 0; i < steps; i++, step++) {
        const double t0 = cf_time_now();
        if ((rc = cf_train_step(m, step, next_rand_batch, &rb, x, y, &si)) < 0) goto done;
        ms[i] = (cf_time_now() - t0) * 1e3;
        if (cf_interrupted()) {
            rc = CF_ERR_INTERRUPTED;
            goto done;
        }
    }
    const cf_backend_stats s1 = be->stats;
    const double wall = cf_time_now() - wall0;
    r->host_cpu_cores = wall > 0 ? (process_cpu_seconds() - cpu0) / wall : 0.0;
    r->final_loss = si.loss;
    if (!isfinite(si.loss)) {
        CF_ERROR("bench: loss became %f on random tokens; the device computes wrong results "
                 "(check with the test suite)",
                 si.loss);
        rc = CF_ERR_DEVICE;
        goto done;
    }
    r->h2d_bytes_per_step = (double)(s1.h2d_bytes - s0.h2d_bytes) / steps;
    r->d2h_bytes_per_step = (double)(s1.d2h_bytes - s0.d2h_bytes) / steps;
    r->allocs_per_step = (double)(s1.allocs - s0.allocs) / steps;
    r->launches_per_step = (double)(s1.kernel_launches - s0.kernel_launches) / steps;

    double sum = 0.0;
    for (int i = 0; i < steps; i++)
        sum += ms[i];
    qsort(ms, (size_t)steps, sizeof *ms, cmp_double);
    r->ms_mean = sum / steps;
    r->ms_min = ms[0];
    r->ms_max = ms[steps - 1];
    r->ms_median = quantile(ms, steps, 0.5);
    r->ms_p10 = quantile(ms, steps, 0.1);
    r->ms_p90 = quantile(ms, steps, 0.9);
    r->tokens_per_s = r->tokens_per_step / (r->ms_median / 1e3);
    r->achieved_gflops = r->flops_per_token * r->tokens_per_s / 1e9;
    r->mfu = r->peak_gflops > 0 ? r->achieved_gflops / r->peak_gflops : 0.0;

    /* profiled steps come after the timed ones: profiling synchronises after every op */
    if (prof) {
        cf_prof_enable(be, 1);
        for (int i = 0; i < prof_steps; i++, step++) {
            spans[i].start_us = cf_prof_now_us(be);
            if ((rc = cf_train_step(m, step, next_rand_batch, &rb, x, y, &si)) < 0) goto done;
            spans[i].dur_us = cf_prof_now_us(be) - spans[i].start_us;
        }
        be->prof.enabled = 0; /* keep the events for the report */
        r->profiled_steps = prof_steps;
        cf_prof_summary(be, prof_steps, r->prof_ms, &r->prof_gemm_gflop, &r->prof_gemm_ms);
        if (o->profile) cf_prof_print(o->report ? o->report : stderr, be, prof_steps);
        if (o->trace_path) {
            char name[256];
            snprintf(name, sizeof name, "clformer bench %s", r->config_name);
            if ((rc = cf_prof_write_trace(o->trace_path, be, name, spans, prof_steps)) < 0)
                goto done;
        }
    }
    {
        cf_backend_info info;
        if (cf_be_info(be, &info) == CF_OK) {
            r->device_scratch_bytes = info.scratch_bytes;
            /* the backend's choice for the flash backward (OpenCL's matrix backward): part of
             * the backward scratch that runs, which the model's tables cannot know */
            r->est.flash_scratch = info.flash_scratch_bytes;
            r->est.grad_scratch += info.flash_scratch_bytes;
            r->est.total += info.flash_scratch_bytes;
        }
    }
    r->peak_device_bytes = be->stats.peak_bytes_allocated + r->device_scratch_bytes;
    r->peak_host_bytes = cf_peak_rss_bytes();
    rc = CF_OK;
done:
    free(x);
    free(y);
    free(rb.pool);
    free(ms);
    free(spans);
    cf_model_free(m);
    cf_backend_destroy(be);
    return rc;
}

/* ---- output --------------------------------------------------------------------------------- */

static double mib(double b) {
    return b / 1048576.0;
}

void cf_bench_print(FILE *out, const cf_bench_result *r) {
    fprintf(out, "clformer bench %s on %s (GEMM %s)\n", r->config_name, r->device, r->gemm);
    fprintf(out,
            "  model             %.2fM parameters, batch %d x %d x %d accum = %.0f tokens/step\n",
            r->num_params / 1e6, r->B, r->T, r->accum, r->tokens_per_step);
    fprintf(out, "  steps             %d timed after %d warm-up (first step %.1f ms)\n", r->steps,
            r->warmup, r->first_step_ms);
    fprintf(out, "  memory settings   recompute %s, LM head over chunks of %d rows\n",
            cf_bench_recompute_name(r->recompute), r->head_rows);
    fprintf(out, "  throughput        %.0f tokens/s\n", r->tokens_per_s);
    fprintf(out,
            "  ms/step           median %.2f  mean %.2f  p10 %.2f  p90 %.2f  min %.2f  max "
            "%.2f\n",
            r->ms_median, r->ms_mean, r->ms_p10, r->ms_p90, r->ms_min, r->ms_max);
    fprintf(out, "  model FLOPs       %.2f MFLOP/token -> %.2f GFLOP/s\n", r->flops_per_token / 1e6,
            r->achieved_gflops);
    fprintf(out, "  device peak       %.2f GFLOP/s (%s)\n", r->peak_gflops, r->peak_how);
    fprintf(out, "  MFU               %.2f%%\n", 100.0 * r->mfu);
    fprintf(out, "  peak host memory  %.1f MiB (resident set)\n", mib((double)r->peak_host_bytes));
    fprintf(out,
            "  peak device mem   %.1f MiB allocated (backend scratch %.1f MiB of it); analytic "
            "%.1f MiB = params %.1f + grads "
            "%.1f + AdamW %.1f + activations %.1f + backward scratch %.1f (%s attention%s; "
            "measured/analytic %.3f)\n",
            mib((double)r->peak_device_bytes), mib((double)r->device_scratch_bytes),
            mib((double)r->est.total), mib((double)r->est.params), mib((double)r->est.grads),
            mib((double)r->est.adam), mib((double)r->est.acts), mib((double)r->est.grad_scratch),
            r->est.flash ? "flash" : "matrix",
            r->est.flash_scratch ? ", backward through the matrix ops: (T,T) scratch included" : "",
            r->est.total ? (double)r->peak_device_bytes / (double)r->est.total : 0.0);
    fprintf(out, "  transfers/step    %.0f bytes host->device, %.0f bytes device->host\n",
            r->h2d_bytes_per_step, r->d2h_bytes_per_step);
    fprintf(out, "  allocations       %llu in the first step, %.2f per step after it%s\n",
            (unsigned long long)r->first_step_allocs, r->allocs_per_step,
            r->allocs_per_step > 0 ? " (NOT zero: something allocates every step)" : "");
    fprintf(out, "  ops/step          %.0f\n", r->launches_per_step);
    fprintf(out, "  host CPU          %.2f cores busy on average during the timed steps\n",
            r->host_cpu_cores);
}

char *cf_bench_to_json(const cf_bench_result *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "config", r->config_name);
    cJSON_AddStringToObject(o, "device", r->device);
    cJSON_AddStringToObject(o, "gemm", r->gemm);
    cJSON_AddNumberToObject(o, "batch_size", r->B);
    cJSON_AddNumberToObject(o, "max_length", r->T);
    cJSON_AddNumberToObject(o, "grad_accum_steps", r->accum);
    cJSON_AddStringToObject(o, "recompute", cf_bench_recompute_name(r->recompute));
    cJSON_AddNumberToObject(o, "head_chunk_rows", r->head_rows);
    cJSON_AddNumberToObject(o, "num_params", (double)r->num_params);
    cJSON_AddNumberToObject(o, "steps", r->steps);
    cJSON_AddNumberToObject(o, "warmup", r->warmup);
    cJSON_AddNumberToObject(o, "tokens_per_step", r->tokens_per_step);
    cJSON_AddNumberToObject(o, "tokens_per_s", r->tokens_per_s);
    cJSON_AddNumberToObject(o, "ms_per_step", r->ms_median);
    cJSON_AddNumberToObject(o, "ms_per_step_mean", r->ms_mean);
    cJSON_AddNumberToObject(o, "ms_per_step_min", r->ms_min);
    cJSON_AddNumberToObject(o, "ms_per_step_max", r->ms_max);
    cJSON_AddNumberToObject(o, "ms_per_step_p10", r->ms_p10);
    cJSON_AddNumberToObject(o, "ms_per_step_p90", r->ms_p90);
    cJSON_AddNumberToObject(o, "first_step_ms", r->first_step_ms);
    cJSON_AddNumberToObject(o, "flops_per_token", r->flops_per_token);
    cJSON_AddNumberToObject(o, "achieved_gflops", r->achieved_gflops);
    cJSON_AddNumberToObject(o, "peak_gflops", r->peak_gflops);
    cJSON_AddStringToObject(o, "peak_method", r->peak_how);
    cJSON_AddNumberToObject(o, "mfu", r->mfu);
    cJSON_AddNumberToObject(o, "peak_host_bytes", (double)r->peak_host_bytes);
    cJSON_AddNumberToObject(o, "peak_device_bytes", (double)r->peak_device_bytes);
    cJSON_AddNumberToObject(o, "device_scratch_bytes", (double)r->device_scratch_bytes);
    cJSON_AddNumberToObject(o, "analytic_bytes", (double)r->est.total);
    cJSON *a = cJSON_AddObjectToObject(o, "analytic");
    cJSON_AddNumberToObject(a, "params", (double)r->est.params);
    cJSON_AddNumberToObject(a, "grads", (double)r->est.grads);
    cJSON_AddNumberToObject(a, "adamw", (double)r->est.adam);
    cJSON_AddNumberToObject(a, "activations", (double)r->est.acts);
    cJSON_AddNumberToObject(a, "backward_scratch", (double)r->est.grad_scratch);
    cJSON_AddNumberToObject(a, "flash_backward_scratch", (double)r->est.flash_scratch);
    cJSON_AddStringToObject(o, "attention", r->est.flash ? "flash" : "matrix");
    cJSON_AddNumberToObject(o, "h2d_bytes_per_step", r->h2d_bytes_per_step);
    cJSON_AddNumberToObject(o, "d2h_bytes_per_step", r->d2h_bytes_per_step);
    cJSON_AddNumberToObject(o, "first_step_allocs", (double)r->first_step_allocs);
    cJSON_AddNumberToObject(o, "allocs_per_step", r->allocs_per_step);
    cJSON_AddNumberToObject(o, "ops_per_step", r->launches_per_step);
    cJSON_AddNumberToObject(o, "final_loss", r->final_loss);
    cJSON_AddNumberToObject(o, "host_cpu_cores", r->host_cpu_cores);
    if (r->profiled_steps > 0) {
        cJSON *p = cJSON_AddObjectToObject(o, "profile_ms_per_step");
        for (int c = 0; c < CF_CAT_COUNT; c++)
            cJSON_AddNumberToObject(p, cf_prof_cat_name(c), r->prof_ms[c]);
        cJSON_AddNumberToObject(o, "profile_gemm_gflop_per_step", r->prof_gemm_gflop);
        cJSON_AddNumberToObject(o, "profile_gemm_ms_per_step", r->prof_gemm_ms);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
