/* clformer: the tuner's measuring engine (cf_tune_run, tune/tune.h; the clformer-tune command in
 * tools/tune.c is a thin CLI over it): measures clformer's OpenCL kernels on one device and
 * writes a tuning file
 * (configs/tuning/<platform>__<device>.json) that the OpenCL backend loads at creation: the best
 * native GEMM parameters (work-group tile, work per thread, K slice, vector width, local-memory
 * padding), where the register-blocked kernel applies (GPUs) its best variant and split-K, and the
 * CLBlast / tiled / register-blocked choice for each GEMM shape of a config plus a square set, and
 * the work-group sizes of the attention, LayerNorm, cross-entropy and AdamW kernels.
 * Every candidate's result is checked against the CPU backend before it may win. Times are device
 * times between OpenCL profiling events, medians of repeats after a warm-up run. A rerun resumes
 * from <out>.partial. See docs/tuning.md. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backend/backend.h"
#include "backend/opencl/cl_backend.h"
#include "backend/opencl/cl_gemm_fast.h"
#include "backend/opencl/cl_internal.h"
#include "backend/opencl/cl_tuning.h"
#include "clformer/common.h"
#include "clformer/config.h"
#include "io/half.h"
#include "model/gpt.h"
#include "tune/tune.h"

/* ---- options and state ----------------------------------------------------------------------- */

#define MAX_SHAPES 64
#define MAX_CANDS 64

typedef struct {
    char label[48];
    int ta, tb, M, N, K;
    double flops;
    int per_step; /* times one training step runs it (0: not one of the config's shapes) */
} shape;

typedef struct {
    int tile, wpt, tk, vw, pad;
} cand;

typedef struct {
    double us;  /* median device time; < 0 when not measured */
    int status; /* enum below */
    double err; /* normalised error against the CPU backend */
    char note[520];
} result;

enum { CAND_OK = 0, CAND_WRONG = 1, CAND_UNSUPPORTED = 2 };
typedef cf_tune_options options;

static const char *status_names[3] = {"ok", "wrong", "unsupported"};


typedef struct {
    cf_tune_options o;
    cf_config cfg;
    int have_config;
    cf_backend *be, *cpu;
    cf_cl_ctx *ctx;
    int have_clblast;
    int measure_fast; /* GPUs: the untuned dispatch may use another kernel (cl_gemm_fast.c) */
    int round;        /* precision bf16 (1) / fp16 (2): only the register-blocked kernel runs
                       * plain products (it rounds their inputs); the tiled kernel and CLBlast are
                       * not measured */
    const char *prec; /* the entries' precision: "tf32" where the register-blocked kernel runs on
                       * TF32 tensor cores (--precision tf32 on a device that has them), else
                       * "fp32" */
    char fast_env[32];  /* CF_GEMM_FAST as given ("" = unset) */
    char out_path[1024], partial_path[1100];
    cJSON *cache; /* "key" -> {us, status, err, note}: the measurements, resumable */
    int resumed;  /* measurements taken from the partial file */
    int measured; /* measurements taken in this run */
    double t0, last_save;
    int stopped; /* 1 budget, 2 interrupted */
    /* progress */
    long planned, done;
    double work_planned, work_done, measure_seconds;
    int tty;
    double last_draw;
    /* GEMM buffers (both backends hold the same A and B) */
    cf_buffer *gA, *gB, *gC, *cA, *cB, *cC;
    size_t maxA, maxB, maxC;
    float *host_c;
    cl_mem tiny; /* target of the bracketing fills */
    int host_timed; /* profiling info unavailable: host clock */
    /* shapes */
    shape shapes[MAX_SHAPES];
    int n_shapes;
    float *ref[MAX_SHAPES]; /* CPU results, computed on first need */
    size_t ref_bytes;
    const cand *cur; /* the candidate the GEMM hook answers with */
    int plant_wrong; /* test switch CF_TUNE_PLANT_WRONG=N: corrupt the Nth checked candidate */
    int checked;     /* native candidates other than the rule checked so far */
    const cf_cl_gemm_fast_choice *fcur; /* the register-blocked choice run_fast runs */
    int plant_wrong_fast; /* CF_TUNE_PLANT_WRONG_FAST=N: the same for the fast-kernel choices */
    int plant_error;      /* CF_TUNE_PLANT_ERROR=N: the Nth GEMM run fails with an error logged */
    int runs;             /* GEMM runs so far (for plant_error) */
    int checked_fast;     /* fast-kernel choices other than the rule's checked so far */
    /* report lines */
    char **rejects;
    int n_rejects;
} tuner;

/* ---- small helpers --------------------------------------------------------------------------- */

static void add_reject(tuner *T, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_reject(tuner *T, const char *fmt, ...) {
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **grown = realloc(T->rejects, (size_t)(T->n_rejects + 1) * sizeof *grown);
    if (!grown) return;
    T->rejects = grown;
    T->rejects[T->n_rejects] = strdup(buf);
    if (T->rejects[T->n_rejects]) T->n_rejects++;
}

static void cand_key(const cand *c, char *out, size_t len) {
    snprintf(out, len, "t%dw%dk%dv%dp%d", c->tile, c->wpt, c->tk, c->vw, c->pad);
}

static void shape_key(const shape *s, char *out, size_t len) {
    snprintf(out, len, "gemm:%c%c:%dx%dx%d", s->ta ? 't' : 'n', s->tb ? 't' : 'n', s->M, s->N,
             s->K);
}

static cf_cl_gemm_params to_params(const cand *c) {
    cf_cl_gemm_params p = {c->tile, c->wpt, c->tk, "tune", c->vw, c->pad, CF_GEMM_NATIVE};
    return p;
}

static int fits(tuner *T, const cand *c) {
    cf_cl_gemm_params p = to_params(c);
    return cf_cl_gemm_params_fit(T->ctx, &p);
}

static double elapsed(const tuner *T) { return cf_time_now() - T->t0; }

/* --budget: spent (each run measures at least one candidate, so reruns always progress) */
static int out_of_budget(const tuner *T) {
    return T->o.budget > 0 && T->measured > 0 && elapsed(T) >= T->o.budget;
}

static void fmt_time(double s, char *out, size_t len) {
    if (!(s >= 0) || s > 360000) snprintf(out, len, "--");
    else if (s >= 3600) snprintf(out, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(out, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(out, len, "%.0fs", s);
}

/* ---- progress -------------------------------------------------------------------------------- */

/* Work of one candidate, for the ETA: its flops times the runs, plus a fixed cost standing for
 * the kernel build. */
static double cand_work(const tuner *T, double flops) {
    return flops * (1 + T->o.repeats) + 2e9;
}

static void progress(tuner *T, const char *what, int force) {
    if (cf_log_get_level() < CF_LOG_INFO) return;
    double now = cf_time_now();
    if (!force && now - T->last_draw < (T->tty ? 0.2 : 15.0)) return;
    T->last_draw = now;
    double frac = T->work_planned > 0 ? T->work_done / T->work_planned : 0.0;
    if (frac > 1) frac = 1;
    double eta = T->work_done > 0 && T->measure_seconds > 0
                     ? T->measure_seconds / T->work_done * (T->work_planned - T->work_done)
                     : -1;
    if (T->o.budget > 0 && eta > T->o.budget - elapsed(T)) eta = T->o.budget - elapsed(T);
    char es[32], ts[32];
    fmt_time(eta, es, sizeof es);
    fmt_time(elapsed(T), ts, sizeof ts);
    char bar[31];
    int fill = (int)(frac * 30 + 0.5);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    if (T->tty)
        fprintf(stderr, "\r[%s] %ld/%ld candidates %3.0f%%  %s  ETA %s   %-40.40s", bar, T->done,
                T->planned, frac * 100, ts, es, what);
    else
        fprintf(stderr, "[%s] %ld/%ld candidates %3.0f%%  %s  ETA %s  %s\n", bar, T->done,
                T->planned, frac * 100, ts, es, what);
    fflush(stderr);
}

static void progress_clear(tuner *T) {
    if (T->tty && cf_log_get_level() >= CF_LOG_INFO) fprintf(stderr, "\r%130s\r", "");
}

/* one planned candidate slot is finished (measured, taken from the cache, or skipped) */
static void slot_done(tuner *T, double work) {
    T->done++;
    T->work_done += work;
}

/* ---- the measurement cache (resume) ---------------------------------------------------------- */

static int cache_get(tuner *T, const char *key, result *r) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(T->cache, key);
    if (!cJSON_IsObject(e)) return 0;
    const cJSON *us = cJSON_GetObjectItemCaseSensitive(e, "us");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "status");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(e, "err");
    const cJSON *note = cJSON_GetObjectItemCaseSensitive(e, "note");
    if (!cJSON_IsNumber(us) || !cJSON_IsString(st)) return 0;
    r->us = us->valuedouble;
    r->status = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(st->valuestring, status_names[i]) == 0) r->status = i;
    if (r->status < 0) return 0;
    r->err = cJSON_IsNumber(err) ? err->valuedouble : 0.0;
    snprintf(r->note, sizeof r->note, "%s", cJSON_IsString(note) ? note->valuestring : "");
    return 1;
}

static void save_partial(tuner *T) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return;
    cJSON_AddStringToObject(root, "format", "clformer-tuning-partial");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "platform", T->ctx->dev.platform_name);
    cJSON_AddStringToObject(root, "device", T->ctx->dev.name);
    cJSON_AddStringToObject(root, "driver", T->ctx->dev.driver);
    cJSON_AddStringToObject(root, "precision", T->prec);
    cJSON_AddItemReferenceToObject(root, "results", T->cache);
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) return;
    if (cf_write_file_atomic(T->partial_path, s, strlen(s)) < 0)
        CF_WARN("could not write %s: a rerun will start over", T->partial_path);
    free(s);
    T->last_save = cf_time_now();
}

static void cache_put(tuner *T, const char *key, const result *r) {
    T->measured++;
    cJSON *e = cJSON_CreateObject();
    if (!e) return;
    cJSON_AddNumberToObject(e, "us", r->us);
    cJSON_AddStringToObject(e, "status", status_names[r->status]);
    cJSON_AddNumberToObject(e, "err", r->err);
    if (r->note[0]) cJSON_AddStringToObject(e, "note", r->note);
    if (cJSON_GetObjectItemCaseSensitive(T->cache, key))
        cJSON_ReplaceItemInObjectCaseSensitive(T->cache, key, e);
    else cJSON_AddItemToObject(T->cache, key, e);
    if (cf_time_now() - T->last_save > 5.0) save_partial(T);
}

static void load_partial(tuner *T) {
    T->cache = cJSON_CreateObject();
    if (T->o.restart) return;
    struct stat st;
    if (stat(T->partial_path, &st) != 0) return;
    char *text = NULL;
    size_t len = 0;
    if (cf_read_file(T->partial_path, &text, &len) < 0) return;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "platform");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "device");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "driver");
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(root, "precision");
    const char *prec = cJSON_IsString(pr) ? pr->valuestring : "fp32"; /* older partial files */
    cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "results");
    if (!cJSON_IsString(p) || !cJSON_IsString(d) || !cJSON_IsString(v) || !cJSON_IsObject(res)) {
        CF_WARN("%s is not a partial tuning result (corrupt?); starting over", T->partial_path);
    } else if (strcmp(p->valuestring, T->ctx->dev.platform_name) ||
               strcmp(d->valuestring, T->ctx->dev.name) ||
               strcmp(v->valuestring, T->ctx->dev.driver)) {
        CF_WARN("%s was measured on %s (driver %s), not on this device; starting over",
                T->partial_path, d->valuestring, v->valuestring);
    } else if (strcmp(prec, T->prec) != 0) {
        CF_WARN("%s was measured for precision %s, this run measures %s; starting over",
                T->partial_path, prec, T->prec);
    } else {
        cJSON_DetachItemViaPointer(root, res);
        cJSON_Delete(T->cache);
        T->cache = res;
        T->resumed = cJSON_GetArraySize(res);
        CF_INFO("resuming: %d measurement%s from %s (--restart ignores them)", T->resumed,
                T->resumed == 1 ? "" : "s", T->partial_path);
    }
    cJSON_Delete(root);
}

/* ---- timing ---------------------------------------------------------------------------------- */

/* Device time between two tiny fills bracketing the work: END of the first to START of the second
 * (both on the in-order queue). This covers every kernel the work enqueues (CLBlast may run
 * several), so native and CLBlast are timed alike. */
static int bracket(tuner *T, cl_event *ev) {
    cl_float zero = 0.0f;
    cl_int err = clEnqueueFillBuffer(T->ctx->queue, T->tiny, &zero, sizeof zero, 0, sizeof zero,
                                     0, NULL, ev);
    if (err != CL_SUCCESS) {
        CF_ERROR("clEnqueueFillBuffer failed on %s: %s", T->ctx->dev.name, cf_cl_errstr(err));
        return CF_ERR_DEVICE;
    }
    return CF_OK;
}

static double event_us(tuner *T, cl_event e0, cl_event e1, double host_us) {
    cl_ulong end0 = 0, start1 = 0, end1 = 0;
    if (!T->host_timed &&
        clGetEventProfilingInfo(e0, CL_PROFILING_COMMAND_END, sizeof end0, &end0, NULL) ==
            CL_SUCCESS &&
        clGetEventProfilingInfo(e1, CL_PROFILING_COMMAND_START, sizeof start1, &start1, NULL) ==
            CL_SUCCESS &&
        clGetEventProfilingInfo(e1, CL_PROFILING_COMMAND_END, sizeof end1, &end1, NULL) ==
            CL_SUCCESS &&
        end1 >= end0) {
        cl_ulong stop = start1 >= end0 ? start1 : end1;
        return (double)(stop - end0) * 1e-3;
    }
    if (!T->host_timed) {
        T->host_timed = 1;
        CF_WARN("%s gives no profiling times for fills; timing on the host clock instead",
                T->ctx->dev.name);
    }
    return host_us;
}

typedef int (*work_fn)(tuner *T, void *arg);

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median device time of up to `reps` runs of fn (the caller has run it once: the warm-up). Stops
 * after the first run when it is slower than prune_us (a loser: no need for its median), and runs
 * only as many as fit in a second (three seconds without --quick) when runs are long, but at least
 * two (three). */
static int time_runs(tuner *T, work_fn fn, void *arg, int reps, double prune_us, double *median) {
    double t[64];
    int n = 0;
    if (reps > 64) reps = 64;
    const int min_reps = T->o.quick ? 2 : 3;
    const double target_us = T->o.quick ? 1e6 : 3e6;
    for (int r = 0; r < reps; r++) {
        cl_event e0 = NULL, e1 = NULL;
        CF_TRY(cf_be_sync(T->be));
        double h0 = cf_time_now();
        CF_TRY(bracket(T, &e0));
        int rc = fn(T, arg);
        if (rc >= 0) rc = bracket(T, &e1);
        if (rc >= 0) rc = cf_be_sync(T->be);
        double h1 = cf_time_now();
        if (rc >= 0) t[n++] = event_us(T, e0, e1, (h1 - h0) * 1e6);
        if (e0) clReleaseEvent(e0);
        if (e1) clReleaseEvent(e1);
        if (rc < 0) return rc;
        if (r == 0 && prune_us > 0 && t[0] > prune_us) break;
        if (r == 0 && t[0] > 0) {
            int fit = (int)ceil(target_us / t[0]);
            if (fit < reps) reps = fit < min_reps ? min_reps : fit;
        }
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_double);
    *median = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    return CF_OK;
}

/* ---- data ------------------------------------------------------------------------------------ */

/* The same random values to both backends; round (1 bf16, 2 fp16) rounds b's copy to that format
 * (to nearest even), as the device's register-blocked kernel rounds its inputs under precision
 * bf16 / fp16: the CPU's fp32 product of them is then the reference to fp32's tolerance. */
static int upload_random_round(cf_backend *a, cf_buffer *ba, cf_backend *b, cf_buffer *bb,
                               size_t n, float scale, uint64_t seed, int round) {
    float *h = malloc((n ? n : 1) * sizeof *h);
    if (!h) return CF_ERR_NOMEM;
    cf_rng r;
    cf_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) h[i] = scale * (2.0f * cf_rng_uniform(&r) - 1.0f);
    int rc = cf_be_upload(a, cf_view_f32(ba, 0), h, n * 4);
    if (round == 1)
        for (size_t i = 0; i < n; i++) h[i] = cf_bf16_to_f32(cf_f32_to_bf16(h[i]));
    else if (round == 2)
        for (size_t i = 0; i < n; i++) h[i] = cf_f16_to_f32(cf_f32_to_f16(h[i]));
    if (rc >= 0 && b) rc = cf_be_upload(b, cf_view_f32(bb, 0), h, n * 4);
    free(h);
    return rc;
}

static int upload_random(cf_backend *a, cf_buffer *ba, cf_backend *b, cf_buffer *bb, size_t n,
                         float scale, uint64_t seed) {
    return upload_random_round(a, ba, b, bb, n, scale, seed, 0);
}

/* max|x - ref| / max|ref|; INFINITY when x has a NaN (an element the kernel did not write) */
static double norm_err(const float *x, const float *ref, size_t n) {
    double md = 0.0, mr = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(x[i]) != isnan(ref[i])) return INFINITY;
        double d = fabs((double)x[i] - (double)ref[i]);
        if (d > md) md = d;
        if (fabs((double)ref[i]) > mr) mr = fabs((double)ref[i]);
    }
    return md / (mr + 1e-30);
}

/* ---- GEMM ------------------------------------------------------------------------------------ */

static int add_shape(tuner *T, const char *label, int ta, int tb, int M, int N, int K,
                     int per_step) {
    for (int i = 0; i < T->n_shapes; i++) {
        shape *s = &T->shapes[i];
        if (s->ta == ta && s->tb == tb && s->M == M && s->N == N && s->K == K) return CF_OK;
    }
    if (T->n_shapes == MAX_SHAPES) {
        CF_ERROR("more than %d GEMM shapes; use fewer --squares", MAX_SHAPES);
        return CF_ERR_INVALID;
    }
    shape *s = &T->shapes[T->n_shapes++];
    snprintf(s->label, sizeof s->label, "%.47s", label);
    s->ta = ta;
    s->tb = tb;
    s->M = M;
    s->N = N;
    s->K = K;
    s->flops = 2.0 * M * (double)N * K;
    s->per_step = per_step;
    return CF_OK;
}

/* The products of cf_be_matmul_forward/backward of one training step, from the model
 * description (cf_model_gemm_shapes: forward NT, input gradient NN, weight gradient TN of each
 * linear layer). */
static int config_shapes(tuner *T) {
    const cf_config *c = &T->cfg;
    cf_gemm_shape g[CF_MAX_GEMM_SHAPES];
    const int ng = cf_model_gemm_shapes(c, c->batch_size, c->max_length, g);
    for (int i = 0; i < ng; i++)
        CF_TRY(add_shape(T, g[i].name, g[i].ta, g[i].tb, g[i].M, g[i].N, g[i].K, g[i].per_step));
    return CF_OK;
}

/* The tuner's GEMM hook: the candidate under measurement, with a source other than "rule" also
 * for the rule's own parameters, so that the backend runs exactly the tiled kernel (its untuned
 * dispatch may pick another kernel for products the rule would get; that is measured as "fast"). */
static int cand_hook(void *user, const char *device, int M, int N, int K, int ta, int tb,
                     cf_cl_gemm_params *out) {
    (void)device, (void)M, (void)N, (void)K, (void)ta, (void)tb;
    const tuner *T = user;
    if (!T->cur) return 0;
    *out = to_params(T->cur);
    out->source = "clformer-tune candidate";
    return 1;
}

static int run_gemm(tuner *T, void *arg) {
    const shape *s = arg;
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    return cf_be_gemm(T->be, s->ta, s->tb, s->M, s->N, s->K, 1.0f, cf_view_f32(T->gA, 0), lda,
                      cf_view_f32(T->gB, 0), ldb, 0.0f, cf_view_f32(T->gC, 0), s->N);
}

/* the register-blocked kernel with the choice T->fcur, called directly (whatever the dispatch
 * would pick for the shape) */
static int run_fast(tuner *T, void *arg) {
    const shape *s = arg;
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    return cf_backend_opencl_gemm_fast(T->be, T->fcur, s->ta, s->tb, s->M, s->N, s->K, 1.0f,
                                       cf_view_f32(T->gA, 0), lda, cf_view_f32(T->gB, 0), ldb, 0.0f,
                                       cf_view_f32(T->gC, 0), s->N);
}

static void fast_key(const cf_cl_gemm_fast_choice *c, char *out, size_t len) {
    snprintf(out, len, "f%dx%db%dw%ds%d", c->rm, c->rn, c->bk, c->wg, c->split);
}

static int same_fast(const cf_cl_gemm_fast_choice *a, const cf_cl_gemm_fast_choice *b) {
    return a->rm == b->rm && a->rn == b->rn && a->bk == b->bk && a->wg == b->wg &&
           a->split == b->split;
}

/* the CPU backend's result for shape i (computed once) */
static int reference(tuner *T, int i, const float **out) {
    if (T->ref[i]) {
        *out = T->ref[i];
        return CF_OK;
    }
    const shape *s = &T->shapes[i];
    size_t n = (size_t)s->M * s->N;
    /* keep at most 2 GiB of references; beyond that recompute when needed */
    while (T->ref_bytes + n * 4 > ((size_t)2 << 30)) {
        int j = 0;
        while (j < T->n_shapes && !T->ref[j]) j++;
        if (j == T->n_shapes) break;
        free(T->ref[j]);
        T->ref[j] = NULL;
        T->ref_bytes -= (size_t)T->shapes[j].M * T->shapes[j].N * 4;
    }
    float *r = malloc(n * 4);
    if (!r) return CF_ERR_NOMEM;
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    int rc = cf_be_gemm(T->cpu, s->ta, s->tb, s->M, s->N, s->K, 1.0f, cf_view_f32(T->cA, 0), lda,
                        cf_view_f32(T->cB, 0), ldb, 0.0f, cf_view_f32(T->cC, 0), s->N);
    if (rc >= 0) rc = cf_be_download(T->cpu, r, cf_view_f32(T->cC, 0), n * 4);
    if (rc < 0) {
        free(r);
        return rc;
    }
    T->ref[i] = r;
    T->ref_bytes += n * 4;
    *out = r;
    return CF_OK;
}

/* what a measurement runs: the tiled kernel with a candidate, CLBlast, the backend's untuned choice
 * (the register-blocked kernel with its rule, where it takes the shape), the register-blocked
 * kernel with the choice T->fcur */
enum { KIND_NATIVE, KIND_CLBLAST, KIND_FAST, KIND_FAST_CHOICE };

/* Select on the backend: the tiled kernel with candidate c (native mode), CLBlast (clblast mode),
 * or the backend's untuned choice (auto mode, no hook: what a tuning entry with path "fast"
 * leaves the shape to). */
static int select_gemm(tuner *T, const cand *c, int kind) {
    T->cur = kind == KIND_NATIVE ? c : NULL;
    /* CF_GEMM_FAST=1 (the backend's gemm_fast option) would send the tiled candidates to the
     * other kernel: it applies only to the untuned choice */
    if (kind == KIND_FAST && T->fast_env[0])
        CF_TRY(cf_backend_opencl_set_gemm_fast(T->be, T->fast_env));
    else if (kind == KIND_FAST || kind == KIND_FAST_CHOICE)
        CF_TRY(cf_backend_opencl_set_gemm_fast(T->be, "auto"));
    else
        CF_TRY(cf_backend_opencl_set_gemm_fast(T->be, "0"));
    CF_TRY(cf_backend_opencl_set_gemm_tuner(T->be, kind == KIND_NATIVE ? cand_hook : NULL, T));
    return cf_backend_opencl_set_gemm(T->be, kind == KIND_CLBLAST ? "clblast"
                                             : kind == KIND_NATIVE ? "native"
                                                                   : "auto");
}

/* Which of cl_gemm.c's paths ran shape s last: 1 the tiled kernel, 2 CLBlast (it marks the memo
 * entry of the shape), 0 neither (another kernel: cl_gemm_fast.c). */
static int path_ran(const tuner *T, const shape *s) {
    const cf_cl_ctx *ctx = T->ctx;
    for (int j = 0; j < ctx->n_memo; j++) {
        const cf_cl_shape_memo *e = &ctx->memo[j];
        if (e->M == s->M && e->N == s->N && e->K == s->K && e->ta == s->ta && e->tb == s->tb)
            return e->logged;
    }
    return 0;
}

/* Measure one GEMM candidate of shape i: build, warm-up run checked against the CPU backend,
 * then the timed runs. */
static int measure_gemm(tuner *T, int i, const cand *c, int kind, int is_rule, const char *key,
                        double prune_us, result *r) {
    const shape *s = &T->shapes[i];
    memset(r, 0, sizeof *r);
    r->us = -1;
    cf_cl_ctx *ctx = T->ctx;
    /* free the variants of earlier candidates before the program table fills up */
    if (ctx->n_gemm_progs >= CF_CL_MAX_GEMM_PROGRAMS - 1) cf_cl_gemm_release(ctx);
    if (kind == KIND_NATIVE) {
        cf_cl_gemm_params p = to_params(c);
        ctx->quiet_init = 1; /* build errors become this candidate's note */
        ctx->last_error[0] = 0;
        int rc = cf_cl_gemm_variant(ctx, &p);
        ctx->quiet_init = 0;
        if (rc < 0) {
            r->status = CAND_UNSUPPORTED;
            snprintf(r->note, sizeof r->note, "%s",
                     ctx->last_error[0] ? ctx->last_error : "does not fit the device");
            ctx->last_error[0] = 0;
            return CF_OK;
        }
    }
    CF_TRY(select_gemm(T, c, kind));
    const float *ref = NULL;
    CF_TRY(reference(T, i, &ref));
    size_t n = (size_t)s->M * s->N;
    CF_TRY(cf_be_fill(T->be, cf_view_f32(T->gC, 0), NAN, n)); /* unwritten elements show */
    const work_fn fn = kind == KIND_FAST_CHOICE ? run_fast : run_gemm;
    ctx->quiet_init = kind == KIND_FAST_CHOICE; /* a variant that does not build: its note */
    ctx->last_error[0] = 0;
    int rc = fn(T, (void *)s);
    /* test switch: the Nth run fails with an error logged by the backend (as an overflowing
     * kernel-variant table once did), which must make the run exit non-zero */
    if (rc >= 0 && ++T->runs == T->plant_error && !ctx->quiet_init) {
        cf_cl_fail(ctx, "gemm: planted error (CF_TUNE_PLANT_ERROR=%d)", T->plant_error);
        rc = CF_ERR_UNSUPPORTED;
    }
    ctx->quiet_init = 0;
    if (rc >= 0) rc = cf_be_download(T->be, T->host_c, cf_view_f32(T->gC, 0), n * 4);
    if (rc < 0) {
        r->status = CAND_UNSUPPORTED;
        snprintf(r->note, sizeof r->note, "the run failed (%s)%s%.400s", cf_status_str(rc),
                 ctx->last_error[0] ? ": " : "", ctx->last_error);
        ctx->last_error[0] = 0;
        return CF_OK;
    }
    if (kind == KIND_CLBLAST && strcmp(cf_backend_opencl_gemm_path(T->be), "clblast") != 0) {
        r->status = CAND_UNSUPPORTED;
        snprintf(r->note, sizeof r->note, "CLBlast failed on this shape");
        return CF_OK;
    }
    if (kind == KIND_NATIVE && path_ran(T, s) != 1) {
        r->status = CAND_UNSUPPORTED;
        snprintf(r->note, sizeof r->note, "the backend did not run the tiled kernel");
        return CF_OK;
    }
    if (kind == KIND_FAST && path_ran(T, s) != 0) {
        r->status = CAND_UNSUPPORTED;
        snprintf(r->note, sizeof r->note, "the untuned choice here is %s, measured already",
                 path_ran(T, s) == 2 ? "CLBlast" : "the tiled rule");
        return CF_OK;
    }
    /* test switch: the Nth native candidate (other than the rule) of this run gives a wrong
     * element, which the check must catch */
    if (kind == KIND_NATIVE && !is_rule && ++T->checked == T->plant_wrong)
        T->host_c[n / 2] += 1.0f;
    if (kind == KIND_FAST_CHOICE && !is_rule && ++T->checked_fast == T->plant_wrong_fast)
        T->host_c[n / 2] += 1.0f;
    r->err = norm_err(T->host_c, ref, n);
    double tol = 1e-5 * sqrt((double)s->K) + 1e-6;
    /* the register-blocked kernel on TF32 tensor cores: inputs rounded to a 10-bit mantissa, ~1e-3
     * of the largest value (test_cl_gemm_fast --tf32 bounds the same norm by 5e-3) */
    if (ctx->mma_tf32 && (kind == KIND_FAST || kind == KIND_FAST_CHOICE)) tol += 5e-3;
    /* bf16 / fp16: the reference multiplies the same inputs rounded to the format on the host
     * (upload_random_round), so only the summation order differs: fp32's tolerance */
    if (!(r->err <= tol)) {
        r->status = CAND_WRONG;
        snprintf(r->note, sizeof r->note, "max error %.2e of the largest |value| (tolerance %.1e)",
                 r->err, tol);
        add_reject(T, "%-14s %c%c %5dx%5dx%5d  %-16s %s", s->label, s->ta ? 'T' : 'N',
                   s->tb ? 'T' : 'N', s->M, s->N, s->K, key, r->note);
        return CF_OK;
    }
    CF_TRY(time_runs(T, fn, (void *)s, T->o.repeats, prune_us, &r->us));
    r->status = CAND_OK;
    return CF_OK;
}

/* Result of one candidate: from the cache, else measured (and cached). */
static int gemm_result(tuner *T, int i, const cand *c, int kind, double prune_us, result *r) {
    const shape *s = &T->shapes[i];
    char sk[80], ck[48], key[140];
    shape_key(s, sk, sizeof sk);
    if (kind == KIND_CLBLAST) snprintf(ck, sizeof ck, "clblast");
    else if (kind == KIND_FAST) snprintf(ck, sizeof ck, "fast");
    else if (kind == KIND_FAST_CHOICE) fast_key(T->fcur, ck, sizeof ck);
    else cand_key(c, ck, sizeof ck);
    snprintf(key, sizeof key, "%s|%s", sk, ck);
    double work = cand_work(T, s->flops);
    if (cache_get(T, key, r)) {
        if (r->status == CAND_WRONG)
            add_reject(T, "%-14s %c%c %5dx%5dx%5d  %-16s %s (earlier run)", s->label,
                       s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', s->M, s->N, s->K, ck, r->note);
        slot_done(T, work);
        return CF_OK;
    }
    if (T->stopped) return CF_OK;
    if (cf_interrupted()) T->stopped = 2;
    else if (out_of_budget(T)) T->stopped = 1;
    if (T->stopped) {
        r->us = -1;
        r->status = CAND_UNSUPPORTED;
        return CF_OK;
    }
    char what[128];
    snprintf(what, sizeof what, "%s %s", s->label, ck);
    progress(T, what, 0);
    double t = cf_time_now();
    int is_rule = 0;
    if (kind == KIND_NATIVE) {
        cf_cl_gemm_params rp;
        cf_cl_gemm_rule(s->M, s->N, s->K, T->ctx->gemm_max_group, &rp);
        cand rule_c = {rp.tile, rp.wpt, rp.tk, rp.vw, rp.pad};
        is_rule = !memcmp(&rule_c, c, sizeof rule_c);
    } else if (kind == KIND_FAST_CHOICE) {
        cf_cl_gemm_fast_choice rc;
        is_rule = cf_cl_gemm_fast_rule_form(s->M, s->N, s->K, s->ta, s->tb,
                                            (int)T->ctx->dev.compute_units,
                                            (size_t)T->ctx->dev.local_mem,
                                            cf_cl_gemm_fast_wide(T->ctx),
                                            cf_cl_gemm_fast_form(T->ctx), &rc) &&
                  same_fast(&rc, T->fcur);
    }
    CF_TRY(measure_gemm(T, i, c, kind, is_rule, ck, prune_us, r));
    if (r->status == CAND_UNSUPPORTED)
        CF_DEBUG("%s %c%c %dx%dx%d %s: not measured: %s", s->label, s->ta ? 'T' : 'N',
                 s->tb ? 'T' : 'N', s->M, s->N, s->K, ck, r->note[0] ? r->note : "?");
    else
        CF_DEBUG("%s %c%c %dx%dx%d %s: %s, %.2f us, error %.1e", s->label, s->ta ? 'T' : 'N',
                 s->tb ? 'T' : 'N', s->M, s->N, s->K, ck, status_names[r->status], r->us, r->err);
    T->measure_seconds += cf_time_now() - t;
    slot_done(T, work);
    cache_put(T, key, r);
    return CF_OK;
}

/* the per-shape search state */
typedef struct {
    cand best;
    double best_us;  /* < 0: nothing measured yet */
    cand rule;
    double rule_us;  /* < 0: not measured */
    double clblast_us;
    double fast_us; /* the untuned choice when it is another kernel (cl_gemm_fast.c) */
    cf_cl_gemm_fast_choice fast_rule; /* the register-blocked kernel: the rule's choice, */
    double fast_rule_us;              /* its time (< 0: not measured), */
    cf_cl_gemm_fast_choice fast_best; /* the fastest choice measured */
    double fast_best_us;              /* and its time (< 0: none) */
    int candidates, rejected;
    cand seen[MAX_CANDS * 2];
    int n_seen;
} shape_state;

static int seen(shape_state *st, const cand *c) {
    for (int i = 0; i < st->n_seen; i++)
        if (!memcmp(&st->seen[i], c, sizeof *c)) return 1;
    if (st->n_seen < (int)(sizeof st->seen / sizeof st->seen[0])) st->seen[st->n_seen++] = *c;
    return 0;
}

static int try_cand(tuner *T, int i, shape_state *st, const cand *c) {
    if (seen(st, c)) return CF_OK;
    result r;
    double prune = st->best_us > 0 ? 1.5 * st->best_us : 0.0;
    CF_TRY(gemm_result(T, i, c, KIND_NATIVE, prune, &r));
    if (r.us < 0 && r.status != CAND_WRONG) return CF_OK; /* stopped, or unsupported */
    st->candidates++;
    if (r.status == CAND_WRONG) {
        st->rejected++;
        return CF_OK;
    }
    if (r.status == CAND_OK && (st->best_us < 0 || r.us < st->best_us)) {
        st->best = *c;
        st->best_us = r.us;
    }
    return CF_OK;
}

/* candidate value lists: --tiles, --wpt, --tk, --vw, --pad, --ls (defaults set in parse_args) */

typedef struct {
    int tiles[8], n_tiles, wpts[8], n_wpts, tks[8], n_tks, vws[8], n_vws, pads[8], n_pads;
    cand base; /* stage 1's K slice, vector width and padding */
} space;

/* v when the list holds it, else the list's first value */
static int prefer(const int *l, int n, int v) {
    for (int i = 0; i < n; i++)
        if (l[i] == v) return v;
    return l[0];
}

static space make_space(const tuner *T) {
    space s;
    memset(&s, 0, sizeof s);
    const options *o = &T->o;
    int max_group = (int)T->ctx->dev.max_group;
    for (int i = 0; i < o->n_list[CF_TUNE_L_TILE]; i++) {
        int t = o->list[CF_TUNE_L_TILE][i];
        if (t * t <= max_group) s.tiles[s.n_tiles++] = t;
    }
    memcpy(s.wpts, o->list[CF_TUNE_L_WPT], sizeof s.wpts);
    s.n_wpts = o->n_list[CF_TUNE_L_WPT];
    memcpy(s.tks, o->list[CF_TUNE_L_TK], sizeof s.tks);
    s.n_tks = o->n_list[CF_TUNE_L_TK];
    memcpy(s.vws, o->list[CF_TUNE_L_VW], sizeof s.vws);
    s.n_vws = o->n_list[CF_TUNE_L_VW];
    memcpy(s.pads, o->list[CF_TUNE_L_PAD], sizeof s.pads);
    s.n_pads = o->n_list[CF_TUNE_L_PAD];
    s.base.tk = prefer(s.tks, s.n_tks, 16);
    s.base.vw = prefer(s.vws, s.n_vws, 1);
    s.base.pad = prefer(s.pads, s.n_pads, 1);
    return s;
}

/* a block much larger than both output dimensions only adds idle work-items */
static int sensible(const shape *sh, const cand *c) {
    int block = c->tile * c->wpt;
    return !(block > 2 * sh->M && block > 2 * sh->N) && block <= 256;
}

/* ---- the register-blocked kernel's choices (cl_gemm_fast.c) ---------------------------------- */

/* The default variants: the first 10 of test_cl_gemm_fast's table (the rule's candidates are among
 * them; 256x128 and 128x256 blocks only in the fp32 form) and its 64x64 blocks with 32-deep slices
 * (the bf16 / fp16 tensor-core form only). */
#define N_FAST_VARIANTS_DEFAULT 11
static const cf_cl_gemm_fast_choice fast_variants_default[N_FAST_VARIANTS_DEFAULT] = {
    {8, 8, 8, 1, 16}, {8, 8, 16, 1, 16}, {8, 4, 16, 1, 16}, {4, 8, 16, 1, 16},
    {4, 4, 16, 1, 16}, {8, 8, 8, 1, 8},   {8, 8, 16, 1, 8},  {8, 4, 8, 1, 8},
    {16, 8, 8, 1, 16}, {8, 16, 8, 1, 16},
    {8, 8, 32, 1, 8}}; /* (the packed bf16 / fp16 tiles' 32-deep slices: those precisions only) */
static const int fast_splits_default[8] = {1, 2, 3, 4, 6, 8, 12, 16};
#define MAX_FAST_CANDS 100 /* the rule's + 12 variants x 8 splits */

/* The register-blocked choices measured for shape i, the rule's first: every variant (--fast-
 * variants, else the default table; those that fit the device) x every split that leaves
 * K/split >= 128 of the split list (--fast-splits, else all 8 values; --quick: 1, the rule's split
 * and its neighbours in the list). 0 when the fast kernel is not measured on this device or no
 * variant fits it. */
static int fast_cands(const tuner *T, int i, cf_cl_gemm_fast_choice *out) {
    if (!T->measure_fast) return 0;
    const shape *s = &T->shapes[i];
    const cf_cl_ctx *ctx = T->ctx;
    cf_cl_gemm_fast_choice rule;
    /* the rule of the form that runs (its choice is what the untuned dispatch runs) */
    if (!cf_cl_gemm_fast_rule_form(s->M, s->N, s->K, s->ta, s->tb, (int)ctx->dev.compute_units,
                                   (size_t)ctx->dev.local_mem, cf_cl_gemm_fast_wide(ctx),
                                   cf_cl_gemm_fast_form(ctx), &rule))
        return 0;
    int n = 0;
    out[n++] = rule;
    if (T->o.n_fast_var < 0) return n; /* --fast-variants none */
    const cf_cl_gemm_fast_choice *vars = T->o.n_fast_var ? T->o.fast_var : fast_variants_default;
    const int n_vars = T->o.n_fast_var ? T->o.n_fast_var : N_FAST_VARIANTS_DEFAULT;
    int splits[8], n_splits = 0;
    if (T->o.n_fast_split) {
        n_splits = T->o.n_fast_split;
        memcpy(splits, T->o.fast_split, sizeof splits);
    } else if (!T->o.quick) {
        n_splits = 8;
        memcpy(splits, fast_splits_default, sizeof splits);
    } else {
        splits[n_splits++] = 1;
        for (int k = 0; k < 8; k++) {
            if (fast_splits_default[k] != rule.split) continue;
            for (int j = k - 1; j <= k + 1; j++)
                if (j > 0 && j < 8) splits[n_splits++] = fast_splits_default[j];
        }
    }
    for (int v = 0; v < n_vars; v++)
        for (int k = 0; k < n_splits; k++) {
            cf_cl_gemm_fast_choice c = vars[v];
            c.split = splits[k];
            if (c.split > 1 && s->K / c.split < 128) continue;
            /* (the tensor-core forms take no 16-wide variant) */
            if (!cf_cl_gemm_fast_choice_valid_form(&c, cf_cl_gemm_fast_form(ctx)) ||
                cf_cl_gemm_fast_local_bytes_mma(&c, ctx->mma_tf32) > ctx->dev.local_mem ||
                (size_t)c.wg * c.wg > ctx->dev.max_group)
                continue;
            int dup = 0;
            for (int j = 0; j < n && !dup; j++) dup = same_fast(&out[j], &c);
            if (!dup && n < MAX_FAST_CANDS) out[n++] = c;
        }
    return n;
}

/* Measure the register-blocked choices of shape i (the rule's from stage 0 where the untuned
 * dispatch ran it), each checked against the CPU backend; keep the rule's and the fastest. */
static int fast_stage(tuner *T, int i, shape_state *st) {
    cf_cl_gemm_fast_choice cands[MAX_FAST_CANDS];
    const int n = fast_cands(T, i, cands);
    for (int k = 0; k < n; k++) {
        double us = -1;
        if (k == 0 && st->fast_us > 0) {
            us = st->fast_us; /* the same kernel and choice, measured through the dispatch */
            slot_done(T, cand_work(T, T->shapes[i].flops));
        } else {
            result r;
            T->fcur = &cands[k];
            double prune = st->fast_best_us > 0 ? 1.5 * st->fast_best_us : 0.0;
            int rc = gemm_result(T, i, NULL, KIND_FAST_CHOICE, prune, &r);
            T->fcur = NULL;
            CF_TRY(rc);
            if (r.status == CAND_OK) us = r.us;
        }
        if (us <= 0) continue;
        if (k == 0) {
            st->fast_rule = cands[k];
            st->fast_rule_us = us;
        }
        if (st->fast_best_us < 0 || us < st->fast_best_us) {
            st->fast_best = cands[k];
            st->fast_best_us = us;
        }
    }
    return CF_OK;
}

/* Stages of the search, per shape: 0 the rule, CLBlast and the untuned dispatch; 1 tile x WPT
 * (TK 16, VW 1, PAD 1 when those are in the lists); then the register-blocked kernel's choices
 * (STAGE_FAST, where it applies); TK; VW; padding -- the tiled ones each from the best so far.
 * Stages run over all shapes in turn, so a budget that runs out leaves every shape with the large
 * early gains. */
enum { STAGE_FAST = 5, N_STAGES = 6 };
static const int stage_order[N_STAGES] = {0, 1, STAGE_FAST, 2, 3, 4};

static int stage_slots(const tuner *T, const space *sp, int stage, int i) {
    cf_cl_gemm_fast_choice cands[MAX_FAST_CANDS];
    if (T->round && stage != 0 && stage != STAGE_FAST) return 0; /* the tiled kernel's stages */
    switch (stage) {
    case 0: return T->round ? 1 : 1 + T->have_clblast + T->measure_fast;
    case 1: return sp->n_tiles * sp->n_wpts;
    case 2: return sp->n_tks;
    case 3: return sp->n_vws;
    case 4: return sp->n_pads;
    default: return fast_cands(T, i, cands);
    }
}

static int run_stage(tuner *T, const space *sp, int stage, int i, shape_state *st) {
    const shape *sh = &T->shapes[i];
    long before = T->done;
    int slots = stage_slots(T, sp, stage, i);
    if (T->round && stage != 0 && stage != STAGE_FAST) {
        /* bf16 / fp16: the tiled kernel does not run these products */
    } else if (stage == 0) {
        cf_cl_gemm_params rp;
        cf_cl_gemm_rule(sh->M, sh->N, sh->K, T->ctx->gemm_max_group, &rp);
        st->rule = (cand){rp.tile, rp.wpt, rp.tk, rp.vw, rp.pad};
        /* bf16 / fp16: the untuned dispatch (the register-blocked kernel with its rule) only;
         * the entry keeps the tiled rule's parameters, unmeasured */
        if (!T->round) CF_TRY(try_cand(T, i, st, &st->rule));
        if (st->best_us > 0 && !memcmp(&st->best, &st->rule, sizeof st->rule))
            st->rule_us = st->best_us;
        if (T->have_clblast && !T->round) {
            result r;
            CF_TRY(gemm_result(T, i, NULL, KIND_CLBLAST, 0.0, &r));
            if (r.status == CAND_OK) st->clblast_us = r.us;
        }
        if (T->measure_fast) {
            result r;
            CF_TRY(gemm_result(T, i, NULL, KIND_FAST, 0.0, &r));
            if (r.status == CAND_OK) st->fast_us = r.us;
        }
    } else if (stage == 1) {
        for (int a = 0; a < sp->n_tiles; a++)
            for (int b = 0; b < sp->n_wpts; b++) {
                cand c = {sp->tiles[a], sp->wpts[b], sp->base.tk, sp->base.vw, sp->base.pad};
                if (fits(T, &c) && sensible(sh, &c)) CF_TRY(try_cand(T, i, st, &c));
            }
    } else if (stage == STAGE_FAST) {
        CF_TRY(fast_stage(T, i, st));
    } else if (st->best_us > 0) {
        const int *vals = stage == 2 ? sp->tks : stage == 3 ? sp->vws : sp->pads;
        int n = stage == 2 ? sp->n_tks : stage == 3 ? sp->n_vws : sp->n_pads;
        cand base = st->best;
        for (int v = 0; v < n; v++) {
            cand c = base;
            if (stage == 2) c.tk = vals[v];
            else if (stage == 3) c.vw = vals[v];
            else c.pad = vals[v];
            if (stage == 2 && c.tk % c.vw) continue;
            if (fits(T, &c)) CF_TRY(try_cand(T, i, st, &c));
        }
    }
    /* slots planned but not needed (duplicates, candidates that do not fit) */
    double w = cand_work(T, sh->flops);
    while (T->done < before + slots) slot_done(T, w);
    return CF_OK;
}

/* ---- work-group sizes of the other kernels --------------------------------------------------- */

typedef struct {
    int family;
    int B, T, C, NH, V;
    size_t nparams;
    /* buffers on both backends: index 0 OpenCL, 1 CPU */
    cf_buffer *b[2][12];
} wg_case;

static int wg_alloc(tuner *T, wg_case *w, int slot, size_t n, int random, float scale,
                    uint64_t seed) {
    CF_TRY(cf_be_alloc(T->be, n * 4, &w->b[0][slot]));
    CF_TRY(cf_be_alloc(T->cpu, n * 4, &w->b[1][slot]));
    if (random)
        CF_TRY(upload_random(T->be, w->b[0][slot], T->cpu, w->b[1][slot], n, scale, seed));
    return CF_OK;
}

static void wg_free(tuner *T, wg_case *w) {
    for (int s = 0; s < 12; s++) {
        if (w->b[0][s]) cf_be_free(T->be, w->b[0][s]);
        if (w->b[1][s]) cf_be_free(T->cpu, w->b[1][s]);
        w->b[0][s] = w->b[1][s] = NULL;
    }
}

#define WV(w, which, s) cf_view_f32((w)->b[which][s], 0)
#define WVI(w, which, s) cf_view_i32((w)->b[which][s], 0) /* int32 contents (targets) */

/* the family's ops on backend `which` (0 OpenCL, 1 CPU) */
static int wg_ops(tuner *T, wg_case *w, int which) {
    cf_backend *be = which ? T->cpu : T->be;
    const int BT = w->B * w->T;
    switch (w->family) {
    case CF_TUNE_ATTENTION:
        /* 0 qkv(B,T,3C) 1 out(B,T,C) 2 att(B,NH,T,T) 3 dout 4 dqkv 5 datt 6 dpreatt */
        CF_TRY(cf_be_attention_forward(be, WV(w, which, 1), WV(w, which, 2), WV(w, which, 0),
                                       w->B, w->T, w->NH, w->NH, w->C / w->NH));
        return cf_be_attention_backward(be, WV(w, which, 4), WV(w, which, 5), WV(w, which, 6),
                                        WV(w, which, 3), WV(w, which, 0), WV(w, which, 2), w->B,
                                        w->T, w->NH, w->NH, w->C / w->NH);
    case CF_TUNE_LAYERNORM:
        /* 0 inp(BT,C) 1 w(C) 2 b(C) 3 out 4 mean(BT) 5 rstd(BT) 6 dout 7 dinp 8 dw 9 db */
        CF_TRY(cf_be_layernorm_forward(be, WV(w, which, 3), WV(w, which, 4), WV(w, which, 5),
                                       WV(w, which, 0), WV(w, which, 1), WV(w, which, 2), BT,
                                       w->C, 1e-5f));
        return cf_be_layernorm_backward(be, WV(w, which, 7), WV(w, which, 8), WV(w, which, 9),
                                         WV(w, which, 6), WV(w, which, 0), WV(w, which, 1),
                                         WV(w, which, 4), WV(w, which, 5), BT, w->C);
    case CF_TUNE_CROSSENTROPY:
        /* 0 logits(BT,V) 1 targets(BT) int32 2 losses(BT) 3 dlogits(BT,V) */
        return cf_be_crossentropy_fused(be, WV(w, which, 2), WV(w, which, 3), WV(w, which, 0),
                                        WVI(w, which, 1), BT, w->V, 1.0f / (float)BT, 0.0f);
    default:
        /* 0 params 1 grads 2 m 3 v */
        return cf_be_adamw(be, WV(w, which, 0), WV(w, which, 1), WV(w, which, 2), WV(w, which, 3),
                           w->nparams, 6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 3);
    }
}

static int wg_run(tuner *T, void *arg) { return wg_ops(T, arg, 0); }

/* fresh inputs (and zeroed accumulators) on both backends */
static int wg_reset(tuner *T, wg_case *w) {
    const int BT = w->B * w->T;
    const size_t btc = (size_t)BT * w->C;
    for (int which = 0; which < 2; which++) {
        cf_backend *be = which ? T->cpu : T->be;
        for (int s = 0; s < 12; s++)
            if (w->b[which][s])
                CF_TRY(cf_be_fill(be, WV(w, which, s), 0.0f, w->b[which][s]->nbytes / 4));
    }
    cf_backend *g = T->be, *c = T->cpu;
    switch (w->family) {
    case CF_TUNE_ATTENTION:
        CF_TRY(upload_random(g, w->b[0][0], c, w->b[1][0], 3 * btc, 1.0f, 11));
        CF_TRY(upload_random(g, w->b[0][3], c, w->b[1][3], btc, 1.0f, 12));
        break;
    case CF_TUNE_LAYERNORM:
        CF_TRY(upload_random(g, w->b[0][0], c, w->b[1][0], btc, 2.0f, 21));
        CF_TRY(upload_random(g, w->b[0][1], c, w->b[1][1], (size_t)w->C, 1.0f, 22));
        CF_TRY(upload_random(g, w->b[0][2], c, w->b[1][2], (size_t)w->C, 1.0f, 23));
        CF_TRY(upload_random(g, w->b[0][6], c, w->b[1][6], btc, 1.0f, 24));
        break;
    case CF_TUNE_CROSSENTROPY: {
        CF_TRY(upload_random(g, w->b[0][0], c, w->b[1][0], (size_t)BT * w->V, 4.0f, 31));
        int32_t *tg = malloc((size_t)BT * 4);
        if (!tg) return CF_ERR_NOMEM;
        cf_rng r;
        cf_rng_seed(&r, 32);
        for (int i = 0; i < BT; i++) tg[i] = (int32_t)(cf_rng_u32(&r) % (uint32_t)w->V);
        int rc = cf_be_upload(g, WV(w, 0, 1), tg, (size_t)BT * 4);
        if (rc >= 0) rc = cf_be_upload(c, WV(w, 1, 1), tg, (size_t)BT * 4);
        free(tg);
        CF_TRY(rc);
        break;
    }
    default:
        CF_TRY(upload_random(g, w->b[0][0], c, w->b[1][0], w->nparams, 0.1f, 41));
        CF_TRY(upload_random(g, w->b[0][1], c, w->b[1][1], w->nparams, 0.01f, 42));
        break;
    }
    return CF_OK;
}

static int wg_setup(tuner *T, wg_case *w) {
    const int BT = w->B * w->T;
    const size_t btc = (size_t)BT * w->C, att = (size_t)w->B * w->NH * w->T * w->T;
    switch (w->family) {
    case CF_TUNE_ATTENTION: {
        const size_t n[7] = {3 * btc, btc, att, btc, 3 * btc, att, att};
        for (int s = 0; s < 7; s++) CF_TRY(wg_alloc(T, w, s, n[s], 0, 0, 0));
        break;
    }
    case CF_TUNE_LAYERNORM: {
        const size_t C = (size_t)w->C;
        const size_t n[10] = {btc, C, C, btc, (size_t)BT, (size_t)BT, btc, btc, C, C};
        for (int s = 0; s < 10; s++) CF_TRY(wg_alloc(T, w, s, n[s], 0, 0, 0));
        break;
    }
    case CF_TUNE_CROSSENTROPY: {
        const size_t n[4] = {(size_t)BT * w->V, (size_t)BT, (size_t)BT, (size_t)BT * w->V};
        for (int s = 0; s < 4; s++) CF_TRY(wg_alloc(T, w, s, n[s], 0, 0, 0));
        break;
    }
    default:
        for (int s = 0; s < 4; s++) CF_TRY(wg_alloc(T, w, s, w->nparams, 0, 0, 0));
        break;
    }
    return wg_reset(T, w);
}

/* the outputs compared with the CPU backend, per family */
static const int wg_outputs[CF_TUNE_FAMILIES][4] = {
    [CF_TUNE_ATTENTION] = {1, 4, -1},
    [CF_TUNE_LAYERNORM] = {3, 7, 8, 9},
    [CF_TUNE_CROSSENTROPY] = {2, 3, -1},
    [CF_TUNE_ADAMW] = {0, 2, 3, -1},
};

static int wg_check(tuner *T, wg_case *w, double *worst) {
    *worst = 0.0;
    for (int k = 0; k < 4; k++) {
        int s = wg_outputs[w->family][k];
        if (s < 0) break;
        size_t n = w->b[0][s]->nbytes / 4;
        float *a = malloc(n * 4), *b = malloc(n * 4);
        int rc = a && b ? CF_OK : CF_ERR_NOMEM;
        if (rc >= 0) rc = cf_be_download(T->be, a, WV(w, 0, s), n * 4);
        if (rc >= 0) rc = cf_be_download(T->cpu, b, WV(w, 1, s), n * 4);
        if (rc >= 0) {
            double e = norm_err(a, b, n);
            if (!(e <= *worst)) *worst = e;
        }
        free(a);
        free(b);
        CF_TRY(rc);
    }
    return CF_OK;
}

static size_t model_params(const cf_config *c) {
    cf_param_info p[CF_NUM_PARAMS];
    size_t n = 0;
    cf_model_layout(c, p, &n, NULL);
    return n;
}

static int tune_workgroups(tuner *T, cf_tuning *out) {
    static const int prog_of[CF_TUNE_FAMILIES] = {CF_PROG_ATTENTION, CF_PROG_LAYERNORM,
                                                  CF_PROG_CROSSENTROPY, CF_PROG_ADAMW};
    const int *ls_list = T->o.list[CF_TUNE_L_LS];
    const int n_ls = T->o.n_list[CF_TUNE_L_LS];
    for (int f = 0; f < CF_TUNE_FAMILIES && !T->stopped; f++) {
        wg_case w;
        memset(&w, 0, sizeof w);
        w.family = f;
        w.B = T->cfg.batch_size;
        w.T = T->cfg.max_length;
        w.C = T->cfg.d_model;
        w.NH = T->cfg.num_heads;
        w.V = T->cfg.vocab_size;
        w.nparams = model_params(&T->cfg);
        int prog = prog_of[f];
        const int default_ls = T->ctx->prog_ls[prog];
        char dims[96];
        snprintf(dims, sizeof dims, "B%dT%dC%dNH%dV%dP%zu", w.B, w.T, w.C, w.NH, w.V, w.nparams);
        int have_ref = 0, rc = CF_OK;
        double best_us = -1, default_us = -1;
        int best_ls = 0;
        double work = 5e9;
        for (int li = 0; li < n_ls; li++) {
            int ls = ls_list[li];
            char key[200];
            snprintf(key, sizeof key, "wg:%s:%s|ls%d", cf_tuning_family_name(f), dims, ls);
            result r;
            if (!cache_get(T, key, &r)) {
                if (cf_interrupted()) T->stopped = 2;
                else if (out_of_budget(T)) T->stopped = 1;
                if (T->stopped) break;
                memset(&r, 0, sizeof r);
                r.us = -1;
                char what[96];
                snprintf(what, sizeof what, "work-groups %s LS %d", cf_tuning_family_name(f), ls);
                progress(T, what, 0);
                double t = cf_time_now();
                if (!have_ref) {
                    if ((rc = wg_setup(T, &w)) < 0 || (rc = wg_ops(T, &w, 1)) < 0) break;
                    have_ref = 1;
                }
                if ((size_t)ls > T->ctx->dev.max_group) {
                    r.status = CAND_UNSUPPORTED;
                    snprintf(r.note, sizeof r.note, "above the device's work-group limit");
                } else {
                    T->ctx->quiet_init = 1;
                    T->ctx->last_error[0] = 0;
                    rc = cf_cl_program_set_ls(T->ctx, prog, ls);
                    T->ctx->quiet_init = 0;
                    if (rc < 0) {
                        r.status = CAND_UNSUPPORTED;
                        snprintf(r.note, sizeof r.note, "%s", T->ctx->last_error);
                        rc = CF_OK;
                    } else {
                        /* the warm-up run from fresh inputs is the one checked */
                        if ((rc = wg_reset(T, &w)) < 0 || (rc = wg_ops(T, &w, 1)) < 0 ||
                            (rc = wg_ops(T, &w, 0)) < 0 || (rc = wg_check(T, &w, &r.err)) < 0)
                            break;
                        if (!(r.err <= 1e-4)) {
                            r.status = CAND_WRONG;
                            snprintf(r.note, sizeof r.note,
                                     "max error %.2e of the largest |value| (tolerance 1e-4)",
                                     r.err);
                            add_reject(T, "work-groups %-12s LS %-4d %s", cf_tuning_family_name(f),
                                       ls, r.note);
                        } else {
                            double prune = best_us > 0 ? 1.5 * best_us : 0;
                            if ((rc = time_runs(T, wg_run, &w, T->o.repeats, prune, &r.us)) < 0)
                                break;
                            r.status = CAND_OK;
                        }
                    }
                }
                T->measure_seconds += cf_time_now() - t;
                cache_put(T, key, &r);
            }
            slot_done(T, work);
            if (r.status == CAND_OK && r.us > 0) {
                if (ls == default_ls) default_us = r.us;
                if (best_us < 0 || r.us < best_us) {
                    best_us = r.us;
                    best_ls = ls;
                }
            }
        }
        CF_TRY(cf_cl_program_set_ls(T->ctx, prog, default_ls));
        wg_free(T, &w);
        CF_TRY(rc);
        if (best_ls > 0) {
            cf_tuning_wg *o = &out->wg[f];
            /* keep the default unless another size is clearly (2%) faster */
            int keep = default_us > 0 && best_us > 0.98 * default_us;
            o->ls = keep ? default_ls : best_ls;
            o->default_ls = default_ls;
            o->us_tuned = keep ? default_us : best_us;
            o->us_default = default_us > 0 ? default_us : 0;
        }
    }
    return CF_OK;
}

/* ---- the GEMM sweep and its result ----------------------------------------------------------- */

static int gemm_buffers(tuner *T) {
    for (int i = 0; i < T->n_shapes; i++) {
        const shape *s = &T->shapes[i];
        size_t a = (size_t)s->M * s->K, b = (size_t)s->K * s->N, c = (size_t)s->M * s->N;
        if (a > T->maxA) T->maxA = a;
        if (b > T->maxB) T->maxB = b;
        if (c > T->maxC) T->maxC = c;
    }
    CF_TRY(cf_be_alloc(T->be, T->maxA * 4, &T->gA));
    CF_TRY(cf_be_alloc(T->be, T->maxB * 4, &T->gB));
    CF_TRY(cf_be_alloc(T->be, T->maxC * 4, &T->gC));
    CF_TRY(cf_be_alloc(T->cpu, T->maxA * 4, &T->cA));
    CF_TRY(cf_be_alloc(T->cpu, T->maxB * 4, &T->cB));
    CF_TRY(cf_be_alloc(T->cpu, T->maxC * 4, &T->cC));
    CF_TRY(upload_random_round(T->be, T->gA, T->cpu, T->cA, T->maxA, 1.0f, 1, T->round));
    CF_TRY(upload_random_round(T->be, T->gB, T->cpu, T->cB, T->maxB, 1.0f, 2, T->round));
    T->host_c = malloc(T->maxC * 4);
    return T->host_c ? CF_OK : CF_ERR_NOMEM;
}

static void gemm_buffers_free(tuner *T) {
    cf_be_free(T->be, T->gA);
    cf_be_free(T->be, T->gB);
    cf_be_free(T->be, T->gC);
    cf_be_free(T->cpu, T->cA);
    cf_be_free(T->cpu, T->cB);
    cf_be_free(T->cpu, T->cC);
    T->gA = T->gB = T->gC = T->cA = T->cB = T->cC = NULL;
    free(T->host_c);
    T->host_c = NULL;
    for (int i = 0; i < T->n_shapes; i++) {
        free(T->ref[i]);
        T->ref[i] = NULL;
    }
    T->ref_bytes = 0;
}

static double gflops(const shape *s, double us) { return us > 0 ? s->flops / us * 1e-3 : 0.0; }

static double us_of(double flops, double gf) { return gf > 0 ? flops / gf * 1e-3 : -1; }

/* The path the untuned backend takes for a shape: the register-blocked kernel where its dispatch
 * takes the shape (fast_rule_us > 0: measured so), else CLBlast where present, else the tiled
 * rule. */
static int untuned_path(double fast_rule_us, double clblast_us) {
    return fast_rule_us > 0   ? CF_TUNING_FAST
           : clblast_us > 0   ? CF_TUNING_CLBLAST
                              : CF_TUNING_NATIVE;
}

/* The path for a shape: the fastest measured, except that the untuned default def (see
 * untuned_path) stays unless another is clearly (2%) faster: noise must not churn files. us: native
 * tuned, clblast, fast with its tuned choice (<= 0 = not measured). */
static int decide_path(const double us[3], int def, double *chosen_us) {
    if (us[def] <= 0) def = us[CF_TUNING_CLBLAST] > 0 ? CF_TUNING_CLBLAST : CF_TUNING_NATIVE;
    int best = def;
    for (int p = 0; p < 3; p++)
        if (us[p] > 0 && (us[best] <= 0 || us[p] < us[best])) best = p;
    if (best != def && us[def] > 0 && us[best] > 0.98 * us[def]) best = def;
    *chosen_us = us[best];
    return best;
}

/* the untuned backend's time for a shape (see decide_path) */
static double default_us(const cf_tuning_gemm *g, double flops) {
    if (g->gflops_fast_rule > 0) return us_of(flops, g->gflops_fast_rule);
    if (g->gflops_clblast > 0) return us_of(flops, g->gflops_clblast);
    return us_of(flops, g->gflops_rule);
}

/* Build the result entry of a shape from its search state. */
static void shape_entry(const tuner *T, int i, const shape_state *st, cf_tuning_gemm *g) {
    const shape *s = &T->shapes[i];
    memset(g, 0, sizeof *g);
    snprintf(g->label, sizeof g->label, "%s", s->label);
    snprintf(g->precision, sizeof g->precision, "%s", T->prec);
    g->M = s->M;
    g->N = s->N;
    g->K = s->K;
    g->ta = s->ta;
    g->tb = s->tb;
    /* a candidate replaces the rule only when clearly (2%) faster: noise must not churn files */
    cand win = st->best;
    double win_us = st->best_us;
    /* (bf16 / fp16: the tiled kernel was not measured; its rule's parameters, unmeasured) */
    if (T->round || (st->rule_us > 0 && win_us > 0.98 * st->rule_us)) {
        win = st->rule;
        win_us = st->rule_us;
    }
    g->tile = win.tile;
    g->wpt = win.wpt;
    g->tk = win.tk;
    g->vw = win.vw;
    g->pad = win.pad;
    g->gflops_tuned = gflops(s, win_us);
    g->gflops_rule = gflops(s, st->rule_us);
    g->gflops_clblast = gflops(s, st->clblast_us);
    g->gflops_fast_rule = gflops(s, st->fast_us);
    /* the register-blocked kernel: the rule's choice stays unless another is clearly (2%) faster;
     * without a search (stopped early) the untuned dispatch's time and no choice */
    double fast_us = st->fast_us;
    if (st->fast_best_us > 0) {
        cf_cl_gemm_fast_choice fc = st->fast_best;
        fast_us = st->fast_best_us;
        if (st->fast_rule_us > 0 && fast_us > 0.98 * st->fast_rule_us) {
            fc = st->fast_rule;
            fast_us = st->fast_rule_us;
        }
        g->fast = (cf_tuning_fast){fc.rm, fc.rn, fc.bk, fc.wg, fc.split};
    }
    g->gflops_fast = gflops(s, fast_us);
    const double us[3] = {win_us, st->clblast_us, fast_us};
    double chosen;
    g->path = decide_path(us, untuned_path(st->fast_us, st->clblast_us), &chosen);
    g->candidates = st->candidates;
    g->rejected = st->rejected;
}

/* At most this many distinct native variants in a file (the backend holds 16 programs, 3 of them
 * the rule's): shapes whose variant is rare take the best of the common ones among their own
 * measurements, or the rule. */
#define MAX_VARIANTS 10

static int same_variant(const cf_tuning_gemm *a, const cf_tuning_gemm *b) {
    return a->tile == b->tile && a->wpt == b->wpt && a->tk == b->tk && a->vw == b->vw &&
           a->pad == b->pad;
}

/* entries running the tiled kernel with g's parameters */
static int variant_count(const cf_tuning *t, const cf_tuning_gemm *g) {
    int n = 0;
    for (int j = 0; j < t->n_gemm; j++)
        n += t->gemm[j].path == CF_TUNING_NATIVE && same_variant(&t->gemm[j], g);
    return n;
}

static int distinct_variants(const cf_tuning *t) {
    int d = 0;
    for (int i = 0; i < t->n_gemm; i++) {
        if (t->gemm[i].path != CF_TUNING_NATIVE) continue;
        int first = 1;
        for (int j = 0; j < i && first; j++)
            if (t->gemm[j].path == CF_TUNING_NATIVE && same_variant(&t->gemm[i], &t->gemm[j]))
                first = 0;
        d += first;
    }
    return d;
}

static void limit_variants(tuner *T, cf_tuning *t) {
    for (int guard = 0; guard < 64 && distinct_variants(t) > MAX_VARIANTS; guard++) {
        /* the rarest variant other than the rule's, among the entries that run the tiled kernel */
        int rare = -1, rare_n = 1 << 30;
        for (int i = 0; i < t->n_gemm; i++) {
            cf_tuning_gemm *g = &t->gemm[i];
            if (g->path != CF_TUNING_NATIVE) continue;
            cf_cl_gemm_params rp;
            cf_cl_gemm_rule(g->M, g->N, g->K, T->ctx->gemm_max_group, &rp);
            if (g->tile == rp.tile && g->wpt == rp.wpt && g->tk == rp.tk && g->vw == rp.vw &&
                g->pad == rp.pad)
                continue;
            int n = variant_count(t, g);
            if (n < rare_n) {
                rare_n = n;
                rare = i;
            }
        }
        if (rare < 0) break;
        cf_tuning_gemm *g = &t->gemm[rare];
        /* the best variant used by two or more other entries that this shape measured, else the
         * rule */
        char sk[80];
        shape s = {"", g->ta, g->tb, g->M, g->N, g->K, 2.0 * g->M * (double)g->N * g->K, 0};
        shape_key(&s, sk, sizeof sk);
        double best_us = -1;
        cand best = {0, 0, 0, 0, 0};
        for (int j = 0; j < t->n_gemm; j++) {
            const cf_tuning_gemm *h = &t->gemm[j];
            if (j == rare || h->path != CF_TUNING_NATIVE || variant_count(t, h) < 2) continue;
            cand c = {h->tile, h->wpt, h->tk, h->vw, h->pad};
            char ck[48], key[140];
            cand_key(&c, ck, sizeof ck);
            snprintf(key, sizeof key, "%s|%s", sk, ck);
            result r;
            if (cache_get(T, key, &r) && r.status == CAND_OK && (best_us < 0 || r.us < best_us)) {
                best_us = r.us;
                best = c;
            }
        }
        cf_cl_gemm_params rp;
        cf_cl_gemm_rule(g->M, g->N, g->K, T->ctx->gemm_max_group, &rp);
        double rule_us = us_of(s.flops, g->gflops_rule);
        if (best_us < 0 || (rule_us > 0 && rule_us < best_us)) {
            best = (cand){rp.tile, rp.wpt, rp.tk, rp.vw, rp.pad};
            best_us = rule_us;
        }
        g->tile = best.tile;
        g->wpt = best.wpt;
        g->tk = best.tk;
        g->vw = best.vw;
        g->pad = best.pad;
        g->gflops_tuned = gflops(&s, best_us);
        const double us[3] = {best_us, us_of(s.flops, g->gflops_clblast),
                              us_of(s.flops, g->gflops_fast)};
        double chosen;
        g->path = decide_path(us, untuned_path(us_of(s.flops, g->gflops_fast_rule), us[1]),
                              &chosen);
    }
}

static int tune_gemm(tuner *T, cf_tuning *out, int with_wg) {
    space sp = make_space(T);
    shape_state *st = calloc((size_t)T->n_shapes, sizeof *st);
    if (!st) return CF_ERR_NOMEM;
    for (int i = 0; i < T->n_shapes; i++)
        st[i].best_us = st[i].rule_us = st[i].clblast_us = st[i].fast_us = st[i].fast_rule_us =
            st[i].fast_best_us = -1;
    int rc = CF_OK;
    for (int k = 0; k < N_STAGES && rc >= 0; k++) {
        const int stage = stage_order[k];
        for (int i = 0; i < T->n_shapes && rc >= 0; i++) rc = run_stage(T, &sp, stage, i, &st[i]);
        if (stage == 1 && with_wg && rc >= 0) rc = tune_workgroups(T, out);
    }
    CF_TRY(cf_backend_opencl_set_gemm_tuner(T->be, NULL, NULL));
    for (int i = 0; i < T->n_shapes && rc >= 0; i++) {
        /* nothing measured (stopped early); bf16 / fp16: the register-blocked kernel's times */
        if (T->round ? st[i].fast_us <= 0 && st[i].fast_best_us <= 0 : st[i].best_us <= 0)
            continue;
        cf_tuning_gemm g;
        shape_entry(T, i, &st[i], &g);
        rc = cf_tuning_set_gemm(out, &g);
    }
    free(st);
    if (rc >= 0) limit_variants(T, out);
    return rc;
}

/* ---- report ---------------------------------------------------------------------------------- */

static const char *path_label(int p) {
    return p == CF_TUNING_CLBLAST ? "clblast" : p == CF_TUNING_FAST ? "fast" : "native";
}

static double path_gflops(const cf_tuning_gemm *g) {
    return g->path == CF_TUNING_CLBLAST ? g->gflops_clblast
           : g->path == CF_TUNING_FAST  ? g->gflops_fast
                                        : g->gflops_tuned;
}

static void print_table(const tuner *T, const cf_tuning *t) {
    const int fast = T->measure_fast;
    printf("\n%-14s %2s %6s %6s %6s %10s %10s %8s %12s", "shape", "op", "M", "N", "K", "rule GF/s",
           "tuned GF/s", "speed-up", "CLBlast GF/s");
    if (fast) printf(" %9s %10s", "fast GF/s", "fastT GF/s");
    printf(" %-7s %s\n", "uses",
           fast ? "tuned tiled parameters; fast choice" : "tuned tiled parameters");
    double t_rule = 0, t_tuned = 0, t_default = 0, t_chosen = 0, flops = 0;
    double f_rule = 0, f_tuned = 0, f_flops = 0; /* the register-blocked kernel's choices */
    for (int i = 0; i < T->n_shapes; i++) {
        const shape *s = &T->shapes[i];
        const cf_tuning_gemm *g = NULL;
        for (int j = 0; j < t->n_gemm && !g; j++)
            if (t->gemm[j].M == s->M && t->gemm[j].N == s->N && t->gemm[j].K == s->K &&
                t->gemm[j].ta == s->ta && t->gemm[j].tb == s->tb &&
                strcmp(cf_tuning_entry_precision(&t->gemm[j]), T->prec) == 0)
                g = &t->gemm[j];
        char op[3] = {s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', 0};
        printf("%-14s %2s %6d %6d %6d", s->label, op, s->M, s->N, s->K);
        if (!g) {
            printf(" %10s %10s %8s %12s", "-", "-", "-", "-");
            if (fast) printf(" %9s %10s", "-", "-");
            printf(" %-7s %s\n", "-", "not measured (budget)");
            continue;
        }
        char clb[32] = "-", fst[32] = "-", fstt[32] = "-", params[64], fc[64] = "";
        if (g->gflops_clblast > 0) snprintf(clb, sizeof clb, "%.1f", g->gflops_clblast);
        if (g->gflops_fast_rule > 0) snprintf(fst, sizeof fst, "%.1f", g->gflops_fast_rule);
        if (g->gflops_fast > 0) snprintf(fstt, sizeof fstt, "%.1f", g->gflops_fast);
        snprintf(params, sizeof params, "%dx%d wpt %d tk %d vw %d pad %d", g->tile, g->tile,
                 g->wpt, g->tk, g->vw, g->pad);
        if (g->fast.rm > 0)
            snprintf(fc, sizeof fc, "; %dx%d bk %d wg %d split %d", g->fast.wg * g->fast.rm,
                     g->fast.wg * g->fast.rn, g->fast.bk, g->fast.wg, g->fast.split);
        if (g->gflops_rule > 0) {
            const double up = g->gflops_tuned / g->gflops_rule;
            printf(" %10.1f %10.1f %7.2fx %12s", g->gflops_rule, g->gflops_tuned, up, clb);
        } else { /* bf16 / fp16: the tiled kernel does not run these products */
            printf(" %10s %10s %8s %12s", "-", "-", "-", clb);
        }
        if (fast) printf(" %9s %10s", fst, fstt);
        printf(" %-7s %s%s\n", path_label(g->path), params, fc);
        /* over the config's shapes as one training step runs them (the layers' shapes once per
         * layer), time-weighted: total flops / total time */
        const double times = (double)s->per_step;
        if (g->gflops_rule > 0 && g->gflops_tuned > 0 && path_gflops(g) > 0 &&
            strncmp(s->label, "square", 6) != 0) {
            t_rule += times * us_of(s->flops, g->gflops_rule);
            t_tuned += times * us_of(s->flops, g->gflops_tuned);
            t_default += times * default_us(g, s->flops);
            t_chosen += times * us_of(s->flops, path_gflops(g));
            flops += times * s->flops;
        }
        if (g->gflops_fast_rule > 0 && g->gflops_fast > 0 && strncmp(s->label, "square", 6) != 0) {
            f_rule += times * us_of(s->flops, g->gflops_fast_rule);
            f_tuned += times * us_of(s->flops, g->gflops_fast);
            f_flops += times * s->flops;
        }
    }
    if (flops > 0) {
        printf("the config's shapes together (one training step's GEMMs, %d layers, "
               "time-weighted):\n"
               "  tiled rule %.1f GFLOP/s, tuned tiled %.1f GFLOP/s (%.2fx);\n"
               "  untuned clformer (%s) %.1f GFLOP/s, tuned choice per shape %.1f GFLOP/s "
               "(%.2fx)\n",
               T->cfg.num_layers, flops / t_rule * 1e-3, flops / t_tuned * 1e-3, t_rule / t_tuned,
               fast ? "fast kernel where it applies, else CLBlast or the rule"
                    : T->have_clblast ? "CLBlast" : "the tiled rule",
               flops / t_default * 1e-3, flops / t_chosen * 1e-3, t_default / t_chosen);
    }
    if (f_flops > 0)
        printf("  register-blocked kernel (fast), the shapes its dispatch takes, per step: the "
               "rule's choices %.3f ms (%.1f GFLOP/s), the tuned choices %.3f ms (%.1f GFLOP/s, "
               "%.3fx)\n",
               f_rule * 1e-3, f_flops / f_rule * 1e-3, f_tuned * 1e-3, f_flops / f_tuned * 1e-3,
               f_rule / f_tuned);
    int any = 0;
    for (int f = 0; f < CF_TUNE_FAMILIES; f++) {
        const cf_tuning_wg *w = &t->wg[f];
        if (w->ls <= 0) continue;
        if (!any) printf("\nwork-group sizes (time of the family's forward+backward ops):\n");
        any = 1;
        printf("  %-13s default %4d: %9.1f us   tuned %4d: %9.1f us   %.2fx\n",
               cf_tuning_family_name(f), w->default_ls, w->us_default, w->ls, w->us_tuned,
               w->us_tuned > 0 && w->us_default > 0 ? w->us_default / w->us_tuned : 1.0);
    }
    if (T->n_rejects) {
        printf("\nrejected (results differ from the CPU backend):\n");
        for (int i = 0; i < T->n_rejects; i++) printf("  %s\n", T->rejects[i]);
    } else {
        printf("\nrejected: none (every candidate that ran matched the CPU backend)\n");
    }
}

void cf_tune_options_defaults(cf_tune_options *o, int squares_given) {
    if (!o->repeats) o->repeats = o->quick ? 3 : 7;
    /* the candidate values: quick keeps the ones that most often win */
    static const int full[CF_TUNE_N_LISTS][8] = {{4, 8, 16, 32}, {1, 2, 4, 8}, {8, 16, 32},
                                                 {1, 2, 4, 8},
                                         {0, 1, 2}, {32, 64, 128, 256, 512, 1024}};
    static const int full_n[CF_TUNE_N_LISTS] = {4, 4, 3, 4, 3, 6};
    static const int quick[CF_TUNE_N_LISTS][8] = {{8, 16}, {4, 8}, {16, 32}, {1, 4}, {0, 1},
                                          {64, 128, 256, 512}};
    static const int quick_n[CF_TUNE_N_LISTS] = {2, 2, 2, 2, 2, 4};
    for (int l = 0; l < CF_TUNE_N_LISTS; l++) {
        if (o->n_list[l]) continue;
        o->n_list[l] = o->quick ? quick_n[l] : full_n[l];
        memcpy(o->list[l], o->quick ? quick[l] : full[l], sizeof o->list[l]);
    }
    if (!squares_given) {
        static const int full[] = {256, 512, 1024, 2048, 4096}, quick[] = {256, 1024};
        o->n_squares = o->quick ? 2 : 5;
        memcpy(o->squares, o->quick ? quick : full, sizeof(int) * (size_t)o->n_squares);
    }
}

static void utc_now(char *out, size_t len) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int open_device(tuner *T) {
    const char *spec = T->o.device;
    if (spec && !strcasecmp(spec, "cpu")) {
        CF_ERROR("clformer-tune measures OpenCL devices; --device cpu has no kernels to tune "
                 "(run 'clformer devices' for the OpenCL ones)");
        return CF_ERR_INVALID;
    }
    /* the environment the CLI honours (CF_CACHE_DIR, CF_KERNEL_DIR, CF_GEMM_FAST, ...) */
    cf_backend_options opts = T->o.backend;
    if (!spec || !strcasecmp(spec, "auto")) {
        /* the best GPU, else any OpenCL device (a CPU device is worth tuning too), unless
         * CF_OPENCL_AUTO_CPU says otherwise */
        if (!T->o.auto_cpu_given) opts.auto_cpu_devices = 1;
        spec = "auto";
    }
    /* measure the built-in rule, not an earlier tuning file */
    opts.tuning = "off";
    cf_backend_options_set_precision(&opts, T->o.precision);
    int rc = cf_backend_opencl_create(spec, &opts, &T->be);
    if (rc < 0) {
        CF_ERROR("clformer-tune: no OpenCL device for --device %s; run 'clformer devices'",
                 T->o.device ? T->o.device : "auto");
        return rc;
    }
    T->ctx = (cf_cl_ctx *)T->be->ctx;
    /* bf16 / fp16: the backend rounds every plain product's inputs in the register-blocked
     * kernel (its gemm_round), on every device */
    T->round = T->ctx->gemm_round;
    T->prec = T->round ? cf_precision_name(T->o.precision)
                       : T->ctx->mma_tf32 ? "tf32" : "fp32";
    if (T->o.precision == CF_PREC_TF32 && !T->ctx->mma_tf32)
        CF_WARN("clformer-tune --precision tf32: %s has no TF32 matrix engine this backend can use "
                "(precision tf32 runs fp32 there); measuring fp32, entries tagged fp32",
                T->ctx->dev.name);
    /* the reference: the CPU backend in fp32 (bf16 / fp16: of inputs rounded to the format on the
     * host, upload_random_round) */
    cf_backend_options_set_precision(&opts, CF_PREC_FP32);
    CF_TRY(cf_backend_cpu_create("cpu", &opts, &T->cpu));
    cl_int err = CL_SUCCESS;
    T->tiny = clCreateBuffer(T->ctx->context, CL_MEM_READ_WRITE, 64, NULL, &err);
    if (err != CL_SUCCESS) {
        CF_ERROR("clformer-tune: a 64-byte buffer on %s failed: %s", T->ctx->dev.name,
                 cf_cl_errstr(err));
        return CF_ERR_DEVICE;
    }
    T->have_clblast = cf_cl_have_clblast() && cf_backend_opencl_set_gemm(T->be, "clblast") >= 0;
    /* on GPUs the untuned backend may run another kernel than the tiled one (cl_gemm_fast.c) for
     * large products: measured as "fast" (CF_GEMM_FAST=1 makes it apply on other devices too) */
    const char *fe = T->o.gemm_fast[0] ? T->o.gemm_fast : NULL;
    snprintf(T->fast_env, sizeof T->fast_env, "%s", fe ? fe : "");
    T->measure_fast = T->round || (T->ctx->dev.type & CL_DEVICE_TYPE_GPU) ||
                      (fe && *fe && strcmp(fe, "0") && strcasecmp(fe, "off") &&
                       strcasecmp(fe, "auto"));
    return CF_OK;
}

static int run(tuner *T) {
    T->t0 = cf_time_now();
    T->tty = isatty(2);
    T->plant_wrong = T->o.plant_wrong;
    T->plant_wrong_fast = T->o.plant_wrong_fast;
    T->plant_error = T->o.plant_error;
    cf_config_defaults(&T->cfg);
    if (T->o.config_path) {
        CF_TRY(cf_config_load(T->o.config_path, &T->cfg));
        CF_TRY(cf_config_validate(&T->cfg, T->o.config_path));
        T->have_config = 1;
    }
    CF_TRY(open_device(T));
    cf_cl_ctx *ctx = T->ctx;

    char name[300];
    cf_tuning_file_name(ctx->dev.platform_name, ctx->dev.name, name, sizeof name);
    if (T->o.out) {
        snprintf(T->out_path, sizeof T->out_path, "%s", T->o.out);
    } else {
        char dir[1024];
        cf_tuning_default_dir(dir, sizeof dir);
        snprintf(T->out_path, sizeof T->out_path, "%.700s/%.300s", dir, name);
    }
    snprintf(T->partial_path, sizeof T->partial_path, "%s.partial", T->out_path);
    {
        /* the output's directory must exist before the first partial save */
        char dir[1024];
        snprintf(dir, sizeof dir, "%s", T->out_path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = 0;
            CF_TRY(cf_mkdirs(dir));
        }
    }
    load_partial(T);

    /* shapes */
    if (!T->o.no_gemm) {
        if (T->have_config) CF_TRY(config_shapes(T));
        for (int i = 0; i < T->o.n_squares; i++) {
            char nm[48];
            int n = T->o.squares[i];
            snprintf(nm, sizeof nm, "square %d", n);
            CF_TRY(add_shape(T, nm, 0, 0, n, n, n, 0));
        }
    }
    space sp = make_space(T);
    for (int i = 0; i < T->n_shapes; i++)
        for (int stage = 0; stage < N_STAGES; stage++) {
            int slots = stage_slots(T, &sp, stage, i);
            T->planned += slots;
            T->work_planned += slots * cand_work(T, T->shapes[i].flops);
        }
    int n_ls = T->o.n_list[CF_TUNE_L_LS];
    if (!T->o.no_wg) {
        T->planned += (long)CF_TUNE_FAMILIES * n_ls;
        T->work_planned += CF_TUNE_FAMILIES * n_ls * 5e9;
    }
    CF_INFO("clformer-tune: %s (%s, driver %s), max work-group %zu, local memory %llu KiB; %d GEMM "
            "shape%s%s%s, %ld candidates at most%s%s; %d timed runs each%s",
            ctx->dev.name, ctx->dev.platform_name, ctx->dev.driver, ctx->dev.max_group,
            (unsigned long long)(ctx->dev.local_mem >> 10), T->n_shapes,
            T->n_shapes == 1 ? "" : "s", T->have_config ? " from " : "",
            T->have_config ? T->o.config_path : "", T->planned,
            T->have_clblast ? ", CLBlast included" : " (no CLBlast in this build)",
            !T->measure_fast           ? ""
            : T->o.n_fast_var < 0      ? ", the register-blocked kernel with its rule's choice"
                                       : ", the register-blocked kernel's variants and splits",
            T->o.repeats, T->o.quick ? " (--quick)" : "");

    cf_tuning out;
    cf_tuning_init(&out, ctx->dev.platform_name, ctx->dev.name, ctx->dev.driver);
    snprintf(out.device_version, sizeof out.device_version, "%s", ctx->dev.version);
    snprintf(out.config, sizeof out.config, "%s", T->have_config ? T->o.config_path : "");
    out.quick = T->o.quick;
    utc_now(out.created, sizeof out.created);

    int rc = CF_OK;
    cf_install_sigint_handler();
    if (T->n_shapes > 0) {
        rc = gemm_buffers(T);
        if (rc >= 0) rc = tune_gemm(T, &out, !T->o.no_wg);
        gemm_buffers_free(T);
    } else if (!T->o.no_wg) {
        rc = tune_workgroups(T, &out);
    }
    progress(T, T->stopped ? "stopped" : "done", 1);
    progress_clear(T);
    if (rc < 0) {
        save_partial(T);
        CF_ERROR("clformer-tune stopped by an error (%s); measurements so far are in %s, a rerun "
                 "continues from them", cf_status_str(rc), T->partial_path);
        cf_tuning_free(&out);
        return rc;
    }

    /* keep the entries of an earlier file for this device that this run did not measure (those
     * of other precisions too: a file holds each precision's entries side by side) */
    cf_tuning old;
    char why[1200];
    if (cf_tuning_load(T->out_path, &old, why, sizeof why) == CF_OK &&
        cf_tuning_match(&old, out.platform, out.device, out.driver, why, sizeof why) ==
            CF_TUNING_MATCH) {
        int kept = 0;
        for (int i = 0; i < old.n_gemm; i++) {
            const cf_tuning_gemm *g = &old.gemm[i];
            int exact = 0;
            cf_tuning_lookup_precision(&out, cf_tuning_entry_precision(g), g->M, g->N, g->K, g->ta,
                                       g->tb, &exact);
            if (!exact && cf_tuning_set_gemm(&out, g) == CF_OK) kept++;
        }
        for (int f = 0; f < CF_TUNE_FAMILIES; f++)
            if (out.wg[f].ls <= 0 && old.wg[f].ls > 0) out.wg[f] = old.wg[f];
        if (kept) CF_INFO("kept %d GEMM shape%s of the earlier %s", kept, kept == 1 ? "" : "s",
                          T->out_path);
    }
    cf_tuning_free(&old);

    print_table(T, &out);
    rc = cf_tuning_save(&out, T->out_path);
    cf_tuning_free(&out);
    if (rc < 0) {
        save_partial(T);
        return rc;
    }
    if (T->stopped) {
        save_partial(T);
        printf("\n%s after %.0f s: %ld of %ld candidates done. Wrote what was measured to %s; run "
               "the same command again to continue (measurements kept in %s).\n",
               T->stopped == 1 ? "budget reached" : "interrupted", elapsed(T), T->done, T->planned,
               T->out_path, T->partial_path);
        return T->stopped == 2 ? CF_ERR_INTERRUPTED : CF_OK;
    }
    remove(T->partial_path);
    printf("\nwrote %s in %.0f s (%d measurements reused from an earlier run)%s\n", T->out_path,
           elapsed(T), T->resumed, T->host_timed ? "; times from the host clock" : "");
    char cwd_path[400];
    snprintf(cwd_path, sizeof cwd_path, "configs/tuning/%s", name);
    if (strcmp(T->out_path, cwd_path) != 0 && !strstr(T->out_path, name))
        printf("clformer loads it when it is at configs/tuning/%s (in the working directory or the "
               "source tree), or with CF_TUNING=%s\n", name, T->out_path);
    else
        printf("clformer loads it automatically on this device (--verbose says so); CF_TUNING=off "
               "ignores it\n");
    return CF_OK;
}

int cf_tune_run(const cf_tune_options *o, cf_tune_result *result) {
    tuner *T = calloc(1, sizeof *T);
    if (!T) {
        CF_ERROR("clformer-tune: out of host memory");
        return CF_ERR_NOMEM;
    }
    T->o = *o;
    int rc = run(T);
    if (result) {
        memset(result, 0, sizeof *result);
        snprintf(result->out_path, sizeof result->out_path, "%s", T->out_path);
        result->stopped = T->stopped;
        result->done = T->done;
        result->planned = T->planned;
        result->measured = T->measured;
        result->resumed = T->resumed;
    }
    if (T->tiny) clReleaseMemObject(T->tiny);
    if (T->cpu) cf_backend_destroy(T->cpu);
    if (T->be) cf_backend_destroy(T->be);
    cJSON_Delete(T->cache);
    for (int i = 0; i < T->n_rejects; i++) free(T->rejects[i]);
    free(T->rejects);
    free(T);
    return rc;
}
