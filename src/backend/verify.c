/* clformer: device verification (`clformer devices --verify`) and its cache (see verify.h). */
#define _POSIX_C_SOURCE 200809L
#include "backend/verify.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/op_cases.h"
#include "clformer/common.h"
#include "model/gpt.h"
#include "train/train.h"

/* ---- device identity ------------------------------------------------------------------------ */

void cf_device_id_of(cf_backend *be, const char *spec, cf_device_id *out) {
    memset(out, 0, sizeof *out);
    cf_backend_info info;
    snprintf(out->spec, sizeof out->spec, "%s", spec ? spec : "");
    if (cf_be_info(be, &info) != CF_OK) return;
    snprintf(out->kind, sizeof out->kind, "%s", info.kind ? info.kind : "?");
    snprintf(out->device, sizeof out->device, "%s", info.device);
    snprintf(out->platform, sizeof out->platform, "%s", info.platform);
    /* the C backend has no driver: what can change its results is its GEMM kernel */
    snprintf(out->driver, sizeof out->driver, "%s",
             strcmp(out->kind, "cpu") == 0 ? info.gemm : info.driver);
    out->device_type = info.device_type;
}

int cf_device_candidates(const cf_backend_options *opts, cf_device_id **out, int *n) {
    *out = NULL;
    *n = 0;
    cf_device_desc *all = NULL;
    int count = 0;
    CF_TRY(cf_backend_enumerate(opts, NULL, &all, &count));
    cf_device_id *ids = calloc((size_t)count, sizeof *ids);
    if (!ids) {
        free(all);
        return CF_ERR_NOMEM;
    }
    for (int i = 0; i < count; i++) {
        const cf_device_desc *d = &all[i];
        if (!d->usable) continue;
        cf_device_id *id = &ids[(*n)++];
        snprintf(id->spec, sizeof id->spec, "%s", d->spec);
        snprintf(id->kind, sizeof id->kind, "%s", d->kind);
        snprintf(id->device, sizeof id->device, "%s", d->name);
        snprintf(id->platform, sizeof id->platform, "%s", d->platform);
        snprintf(id->driver, sizeof id->driver, "%s", d->driver);
        id->device_type = d->device_type;
    }
    free(all);
    *out = ids;
    return CF_OK;
}

/* ---- the cache ------------------------------------------------------------------------------ */

static uint64_t id_hash(const cf_device_id *id, uint64_t seed) {
    uint64_t h = cf_hash64(id->kind, strlen(id->kind) + 1, seed);
    h = cf_hash64(id->device, strlen(id->device) + 1, h);
    h = cf_hash64(id->platform, strlen(id->platform) + 1, h);
    return cf_hash64(id->driver, strlen(id->driver) + 1, h);
}

void cf_verify_cache_path(const char *cache_dir, const cf_device_id *id, char *out, size_t len) {
    snprintf(out, len, "%s/verify/%s-%016llx.json", cache_dir ? cache_dir : "", id->kind,
             (unsigned long long)id_hash(id, 0x5eed));
}

static cJSON *read_json(const char *path) {
    if (access(path, R_OK) != 0) return NULL; /* not cached yet: no message */
    char *text = NULL;
    size_t n = 0;
    if (cf_read_file(path, &text, &n) != CF_OK) return NULL;
    cJSON *j = cJSON_ParseWithLength(text, n);
    free(text);
    return j;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* 1 when the file's identity fields are the device's (a hash collision or a stale file is not) */
static int same_device(const cJSON *j, const cf_device_id *id) {
    return !strcmp(jstr(j, "kind"), id->kind) && !strcmp(jstr(j, "device"), id->device) &&
           !strcmp(jstr(j, "platform"), id->platform) && !strcmp(jstr(j, "driver"), id->driver);
}

int cf_verify_cached(const char *cache_dir, const cf_device_id *id, char *why, size_t why_len) {
    if (why_len) why[0] = 0;
    if (!cache_dir || !*cache_dir) return -1;
    char path[CF_PATH_MAX + 128];
    cf_verify_cache_path(cache_dir, id, path, sizeof path);
    cJSON *j = read_json(path);
    if (!j) return -1;
    int state = -1;
    const cJSON *pass = cJSON_GetObjectItemCaseSensitive(j, "pass");
    if (same_device(j, id) && !strcmp(jstr(j, "clformer"), CF_VERSION_STRING) &&
        cJSON_IsBool(pass)) {
        state = cJSON_IsTrue(pass) ? 1 : 0;
        if (why_len) snprintf(why, why_len, "%s", jstr(j, "first_failure"));
    }
    cJSON_Delete(j);
    return state;
}

/* writes doc to path through a temp file and a rename (cf_write_file_atomic) */
static int write_json(const char *dir, const char *path, cJSON *doc) {
    CF_TRY(cf_mkdirs(dir));
    char *text = cJSON_Print(doc);
    if (!text) return CF_ERR_NOMEM;
    int rc = cf_write_file_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

/* ---- the ops -------------------------------------------------------------------------------- */

/* Every case of row r; *row_pass and the worst error; the first failure into fail. */
static int verify_row(cf_backend *ref, cf_backend *be, const cf_oprow *r, int *row_pass,
                      double *worst, char *fail, size_t len) {
    *row_pass = 1;
    *worst = 0.0;
    fail[0] = 0;
    for (int ci = 0; ci < r->ncases; ci++) {
        int pass;
        cf_opcmp res;
        double tol;
        char msg[192];
        int rc = cf_opcase_check(ref, be, r, ci, &pass, &res, &tol, msg, sizeof msg);
        if (rc != CF_OK) {
            snprintf(fail, len, "%s", msg);
            return rc;
        }
        if (pass && tol > 0 && res.err / tol > *worst) *worst = res.err / tol;
        if (!pass && *row_pass) {
            cf_opcase t;
            char label[96] = "";
            if (cf_opcase_make(r, ci, 0, &t) == CF_OK) cf_opcase_label(r, &t, label, sizeof label);
            cf_opcase_free(&t);
            snprintf(fail, len, "%s: %s", label, msg);
            *row_pass = 0;
        }
    }
    return CF_OK;
}

/* ---- one training step ---------------------------------------------------------------------- */

/* A small model: two layers, every op of the step, shapes that are not multiples of the usual
 * tile sizes. */
static void verify_config(cf_config *c) {
    cf_config_defaults(c);
    c->d_model = 48;
    c->num_heads = 3;
    c->num_layers = 2;
    c->d_ff = 100;
    c->max_length = 24;
    c->vocab_size = 131;
    c->batch_size = 3;
    c->grad_accum_steps = 2;
    c->learning_rate = 1e-3f;
    c->warmup_steps = 0;
    c->grad_clip = 1.0f;
    c->seed = 4242;
    snprintf(c->name, sizeof c->name, "verify");
}

typedef struct {
    float loss, norm;
    size_t n; /* parameters */
    float *params, *grads;
} step_out;

static int run_step(cf_backend *be, const cf_config *c, step_out *o) {
    cf_model *m = NULL;
    int32_t *x = malloc(sizeof(int32_t) * (size_t)c->batch_size * c->max_length);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)c->batch_size * c->max_length);
    int rc = x && y ? CF_OK : CF_ERR_NOMEM;
    if (rc == CF_OK) rc = cf_model_create(be, c, c->batch_size, c->max_length, 1, &m);
    if (rc == CF_OK) rc = cf_model_init(m, c->seed);
    cf_random_batch src = {{0}, c->vocab_size};
    cf_rng_seed(&src.rng, 777);
    cf_step_info si;
    if (rc == CF_OK) rc = cf_train_step(m, 0, cf_random_batch_next, &src, x, y, &si);
    if (rc == CF_OK) {
        o->loss = si.loss;
        o->norm = si.grad_norm;
        o->n = m->num_params;
        o->params = malloc(sizeof(float) * m->num_params);
        o->grads = malloc(sizeof(float) * m->num_params);
        if (!o->params || !o->grads) rc = CF_ERR_NOMEM;
    }
    if (rc == CF_OK) rc = cf_model_get_params(m, o->params);
    if (rc == CF_OK) rc = cf_model_get_grads(m, o->grads);
    cf_model_free(m);
    free(x);
    free(y);
    return rc;
}

static double max_abs(const float *a, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fabs((double)a[i]) > m || !isfinite(a[i]) ? fabs(a[i]) : m;
    return m;
}

/* max |a - b| over n, INFINITY when either holds a non-finite value */
static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        double d = fabs((double)a[i] - b[i]);
        m = d > m ? d : m;
    }
    return m;
}

/* Loss, gradient norm, gradients and parameters after one AdamW step of the same model and data on
 * be and on ref. Gradients: normalised max error 1e-3 (a whole network's rounding, far below what
 * a wrong kernel gives); parameters: within 2 lr + 1e-6 of the reference (Adam's first step moves
 * each parameter by about lr in the direction of its gradient's sign, which rounding may flip for
 * a gradient near zero). */
static int verify_train_step(cf_backend *ref, cf_backend *be, int *pass, char *msg, size_t len) {
    cf_config c;
    verify_config(&c);
    step_out a = {0}, b = {0};
    *pass = 0;
    msg[0] = 0;
    int rc = run_step(ref, &c, &a);
    if (rc != CF_OK) {
        snprintf(msg, len, "the cpu reference could not run the step: %s", cf_status_str(rc));
        goto done;
    }
    int brc = run_step(be, &c, &b);
    if (brc != CF_OK) {
        snprintf(msg, len, "the step failed: %s", cf_status_str(brc));
        goto done;
    }
    const size_t n = a.n;
    const double lerr = fabs((double)a.loss - b.loss) / (fabs((double)a.loss) + 1e-20);
    const double gerr = max_diff(a.grads, b.grads, n) / (max_abs(a.grads, n) + 1e-20);
    const double perr = max_diff(a.params, b.params, n);
    const double ptol = 2.0 * c.learning_rate + 1e-6;
    if (!(lerr <= 1e-4))
        snprintf(msg, len, "loss %.6f, reference %.6f (relative error %.2e, tolerance 1e-4)",
                 b.loss, a.loss, lerr);
    else if (!(gerr <= 1e-3))
        snprintf(msg, len, "gradients: normalised max error %.2e (tolerance 1e-3)", gerr);
    else if (!(perr <= ptol))
        snprintf(msg, len, "parameters after AdamW: max error %.2e (tolerance %.1e)", perr, ptol);
    else {
        *pass = 1;
        snprintf(msg, len, "loss %.6f (ref %.6f), gradient error %.1e, parameter error %.1e",
                 b.loss, a.loss, gerr, perr);
    }
done:
    free(a.params), free(a.grads), free(b.params), free(b.grads);
    return rc;
}

/* ---- the whole verification ----------------------------------------------------------------- */

int cf_verify_device(cf_backend *be, const char *spec, const char *cache_dir, FILE *report,
                     cf_verify_summary *out) {
    memset(out, 0, sizeof *out);
    cf_device_id id;
    cf_device_id_of(be, spec, &id);
    /* the reference: the C backend with its portable GEMM kernel (so that the C backend's own
     * vector kernels are verified too) */
    cf_backend_options ro = cf_backend_options_default();
    char generic[64];
    snprintf(generic, sizeof generic, "native:%s",
             cf_cpu_gemm_kernel_name(cf_cpu_gemm_kernel_count() - 1));
    ro.cpu_gemm = generic;
    cf_backend *ref = NULL;
    CF_TRY(cf_backend_cpu_create("cpu", &ro, &ref));
    if (report)
        fprintf(report, "verifying %s (%s%s%s, driver %s) against the cpu reference (%s)\n",
                spec, id.device, id.platform[0] ? ", " : "", id.platform,
                id.driver[0] ? id.driver : "-", generic);
    cJSON *doc = cJSON_CreateObject(), *ops = cJSON_CreateArray();
    if (!doc || !ops) {
        cJSON_Delete(doc);
        cJSON_Delete(ops);
        cf_backend_destroy(ref);
        return CF_ERR_NOMEM;
    }
    int nrows, rc = CF_OK;
    const cf_oprow *rows = cf_oprows(&nrows);
    for (int i = 0; i < nrows && rc == CF_OK; i++) {
        int pass;
        double worst;
        char fail[256];
        rc = verify_row(ref, be, &rows[i], &pass, &worst, fail, sizeof fail);
        if (rc != CF_OK) {
            CF_ERROR("verify: %s: %s", rows[i].op, fail);
            break;
        }
        out->ops++;
        if (!pass) {
            out->ops_failed++;
            if (!out->first_failure[0])
                snprintf(out->first_failure, sizeof out->first_failure, "%s %s", rows[i].op, fail);
        }
        if (report) {
            if (pass)
                fprintf(report, "  PASS %-40s %d cases, worst error %.2f of tolerance\n",
                        rows[i].op, rows[i].ncases, worst);
            else
                fprintf(report, "  FAIL %-40s %s\n", rows[i].op, fail);
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "op", rows[i].op);
        cJSON_AddBoolToObject(o, "pass", pass);
        if (pass) cJSON_AddNumberToObject(o, "worst_of_tolerance", worst);
        else cJSON_AddStringToObject(o, "error", fail);
        cJSON_AddItemToArray(ops, o);
    }
    char tmsg[256] = "";
    if (rc == CF_OK) rc = verify_train_step(ref, be, &out->train_pass, tmsg, sizeof tmsg);
    cf_backend_destroy(ref);
    if (rc != CF_OK) {
        cJSON_Delete(doc);
        cJSON_Delete(ops);
        return rc;
    }
    if (report)
        fprintf(report, "  %s %-40s %s\n", out->train_pass ? "PASS" : "FAIL", "training step",
                tmsg);
    if (!out->train_pass && !out->first_failure[0])
        snprintf(out->first_failure, sizeof out->first_failure, "training step: %s", tmsg);
    out->pass = out->ops_failed == 0 && out->train_pass;
    if (report)
        fprintf(report, "%s %s: %d of %d ops failed, training step %s\n",
                out->pass ? "PASS" : "FAIL", spec, out->ops_failed, out->ops,
                out->train_pass ? "passed" : "failed");

    cJSON_AddStringToObject(doc, "kind", id.kind);
    cJSON_AddStringToObject(doc, "device", id.device);
    cJSON_AddStringToObject(doc, "platform", id.platform);
    cJSON_AddStringToObject(doc, "driver", id.driver);
    cJSON_AddStringToObject(doc, "spec", spec);
    cJSON_AddStringToObject(doc, "clformer", CF_VERSION_STRING);
    cJSON_AddNumberToObject(doc, "time", (double)time(NULL));
    cJSON_AddBoolToObject(doc, "pass", out->pass);
    cJSON_AddStringToObject(doc, "first_failure", out->first_failure);
    cJSON_AddNumberToObject(doc, "ops_failed", out->ops_failed);
    cJSON *ts = cJSON_AddObjectToObject(doc, "train_step");
    cJSON_AddBoolToObject(ts, "pass", out->train_pass);
    cJSON_AddStringToObject(ts, out->train_pass ? "detail" : "error", tmsg);
    cJSON_AddItemToObject(doc, "ops", ops);
    if (cache_dir && *cache_dir) {
        char dir[CF_PATH_MAX + 32], path[CF_PATH_MAX + 128];
        snprintf(dir, sizeof dir, "%s/verify", cache_dir);
        cf_verify_cache_path(cache_dir, &id, path, sizeof path);
        rc = write_json(dir, path, doc);
        if (rc == CF_OK && report) fprintf(report, "result cached in %s\n", path);
    }
    cJSON_Delete(doc);
    return rc;
}
