/* clformer: `--device auto`: devices whose verification failed are skipped, and for a config the
 * fastest device is found by timing a few training steps on each (see verify.h). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backend/verify.h"
#include "clformer/common.h"
#include "model/gpt.h"
#include "train/train.h"

/* How long the measurement may take per device: one untimed step (kernel builds, first touch),
 * then timed steps until SEL_STEPS of them or SEL_SECONDS of timed stepping, or as soon as one
 * step takes SEL_LOSER times the fastest step of a device timed before (it cannot win). */
#define SEL_STEPS 3
#define SEL_SECONDS 2.0
#define SEL_LOSER 3.0

static void warn_failed(const cf_device_id *id, const char *why) {
    CF_WARN("device auto: skipping %s (%s, driver %s): it failed `clformer devices --verify` (%s); "
            "run `clformer devices --verify --device %s` again after a driver update",
            id->spec[0] ? id->spec : id->kind, id->device, id->driver[0] ? id->driver : "-",
            why[0] ? why : "see the cached result", id->spec[0] ? id->spec : id->kind);
}

static int is_gpu(const cf_device_id *id) {
    return id->device_type == CF_DEVICE_GPU || id->device_type == CF_DEVICE_INTEGRATED_GPU;
}

int cf_backend_auto_verified(const char *row, const cf_backend_options *opts, cf_backend **be) {
    const char *cache = opts ? opts->cache_dir : NULL;
    cf_device_id id;
    char why[256];
    cf_device_id_of(*be, "", &id);
    if (cf_verify_cached(cache, &id, why, sizeof why) != 0) return CF_OK;
    cf_device_id *cands = NULL;
    int n = 0;
    /* the spec this device has now, for the message */
    if (cf_device_candidates(opts, &cands, &n) == CF_OK)
        for (int i = 0; i < n; i++)
            if (!strcmp(cands[i].kind, id.kind) && !strcmp(cands[i].device, id.device) &&
                !strcmp(cands[i].platform, id.platform) && !strcmp(cands[i].driver, id.driver))
                snprintf(id.spec, sizeof id.spec, "%s", cands[i].spec);
    warn_failed(&id, why);
    cf_backend_destroy(*be);
    *be = NULL;
    for (int i = 0; i < n; i++) {
        cf_device_id *c = &cands[i];
        if (strcmp(c->kind, row) != 0 || (!is_gpu(c) && !(opts && opts->auto_cpu_devices)))
            continue;
        if (cf_verify_cached(cache, c, why, sizeof why) == 0) {
            if (strcmp(c->spec, id.spec) != 0) warn_failed(c, why);
            continue;
        }
        if (cf_backend_create(c->spec, opts, be) == CF_OK) {
            free(cands);
            return CF_OK;
        }
    }
    free(cands);
    return CF_ERR_NOT_FOUND;
}

/* ---- measurement ---------------------------------------------------------------------------- */

/* The fastest timed step of cfg on the device spec, in ms (*ms); CF_OK or why it could not run. */
static int time_steps(const char *spec, const cf_backend_options *opts, const cf_config *cfg,
                      double best_ms, double *ms, int *steps) {
    cf_backend *be = NULL;
    cf_model *m = NULL;
    const int B = cfg->batch_size, T = cfg->max_length;
    int32_t *x = malloc(sizeof(int32_t) * (size_t)B * T);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)B * T);
    int rc = x && y ? CF_OK : CF_ERR_NOMEM;
    *ms = INFINITY;
    *steps = 0;
    if (rc == CF_OK) rc = cf_backend_create(spec, opts, &be);
    if (rc == CF_OK) rc = cf_model_create(be, cfg, B, T, 1, &m);
    if (rc == CF_OK) rc = cf_model_init(m, cfg->seed);
    cf_random_batch src = {{0}, cfg->vocab_size};
    cf_rng_seed(&src.rng, 12345);
    cf_step_info si;
    if (rc == CF_OK) rc = cf_train_step(m, 0, cf_random_batch_next, &src, x, y, &si); /* warm-up */
    double timed = 0.0;
    for (int s = 1; rc == CF_OK && s <= SEL_STEPS && timed < SEL_SECONDS; s++) {
        double t0 = cf_time_now();
        rc = cf_train_step(m, s, cf_random_batch_next, &src, x, y, &si);
        double dt = cf_time_now() - t0;
        if (rc != CF_OK) break;
        timed += dt;
        if (dt * 1e3 < *ms) *ms = dt * 1e3;
        ++*steps;
        if (*ms > SEL_LOSER * best_ms) break;
    }
    cf_model_free(m);
    cf_backend_destroy(be);
    free(x);
    free(y);
    return rc;
}

/* what makes two runs the same for the measurement: the model's and the batch's shape, and the
 * precision (bf16 / fp16 send every product to another kernel, tf32 to tensor cores) */
static uint64_t shape_hash(const cf_config *c) {
    const int shape[] = {c->d_model,    c->num_heads,  c->num_layers, c->d_ff,
                         c->max_length, c->vocab_size, c->batch_size, c->grad_accum_steps};
    uint64_t h = cf_hash64(shape, sizeof shape, 0x5e1ec7);
    /* fp32 keeps the hash it had before the precision was part of it (caches stay valid) */
    if (c->precision != CF_PREC_FP32) h = cf_hash64(&c->precision, sizeof c->precision, h);
    return h;
}

static void shape_str(const cf_config *c, char *out, size_t len) {
    snprintf(out, len, "d_model=%d num_heads=%d num_layers=%d d_ff=%d max_length=%d vocab_size=%d "
                       "batch_size=%d grad_accum_steps=%d%s%s",
             c->d_model, c->num_heads, c->num_layers, c->d_ff, c->max_length, c->vocab_size,
             c->batch_size, c->grad_accum_steps, c->precision != CF_PREC_FP32 ? " precision=" : "",
             c->precision != CF_PREC_FP32 ? cf_precision_name(c->precision) : "");
}

static uint64_t ids_hash(const cf_device_id *ids, int n, uint64_t h) {
    for (int i = 0; i < n; i++) {
        h = cf_hash64(ids[i].kind, strlen(ids[i].kind) + 1, h);
        h = cf_hash64(ids[i].device, strlen(ids[i].device) + 1, h);
        h = cf_hash64(ids[i].platform, strlen(ids[i].platform) + 1, h);
        h = cf_hash64(ids[i].driver, strlen(ids[i].driver) + 1, h);
    }
    return h;
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

/* The cached decision: index into ids of the chosen device, -1 when there is none usable. */
static int cached_choice(const char *path, const char *shape, const cf_device_id *ids, int n) {
    cJSON *j = read_json(path);
    if (!j) return -1;
    int pick = -1;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "choice");
    if (!strcmp(jstr(j, "clformer"), CF_VERSION_STRING) && !strcmp(jstr(j, "shape"), shape) &&
        cJSON_IsObject(ch))
        for (int i = 0; i < n; i++)
            if (!strcmp(jstr(ch, "kind"), ids[i].kind) &&
                !strcmp(jstr(ch, "device"), ids[i].device) &&
                !strcmp(jstr(ch, "platform"), ids[i].platform) &&
                !strcmp(jstr(ch, "driver"), ids[i].driver))
                pick = i;
    cJSON_Delete(j);
    return pick;
}

static cJSON *id_json(const cf_device_id *id) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "spec", id->spec);
    cJSON_AddStringToObject(o, "kind", id->kind);
    cJSON_AddStringToObject(o, "device", id->device);
    cJSON_AddStringToObject(o, "platform", id->platform);
    cJSON_AddStringToObject(o, "driver", id->driver);
    return o;
}

static int measure_and_create(const cf_backend_options *opts, const cf_config *cfg,
                              cf_backend **out) {
    const char *cache = opts->cache_dir;
    cf_device_id *all = NULL;
    int n_all = 0;
    CF_TRY(cf_device_candidates(opts, &all, &n_all));
    /* drop the devices whose cached verification failed */
    cf_device_id *ids = calloc((size_t)n_all, sizeof *ids);
    if (!ids) {
        free(all);
        return CF_ERR_NOMEM;
    }
    int n = 0;
    for (int i = 0; i < n_all; i++) {
        char why[256];
        if (cf_verify_cached(cache, &all[i], why, sizeof why) == 0)
            warn_failed(&all[i], why);
        else
            ids[n++] = all[i];
    }
    free(all);
    int rc;
    if (n == 0) { /* the CPU backend is the fallback of last resort, as in auto:first */
        CF_WARN("device auto: every device failed verification; using the CPU backend");
        free(ids);
        return cf_backend_create("cpu", opts, out);
    }
    if (n == 1) { /* nothing to choose from */
        rc = cf_backend_create(ids[0].spec, opts, out);
        free(ids);
        return rc;
    }
    char shape[512], path[CF_PATH_MAX + 128], dir[CF_PATH_MAX + 32];
    shape_str(cfg, shape, sizeof shape);
    const uint64_t key = ids_hash(ids, n, shape_hash(cfg));
    snprintf(dir, sizeof dir, "%s/select", cache ? cache : "");
    snprintf(path, sizeof path, "%s/%016llx.json", dir, (unsigned long long)key);
    int pick = cache && *cache ? cached_choice(path, shape, ids, n) : -1;
    if (pick >= 0) {
        CF_DEBUG("device auto: %s (%s), from the measurement cached in %s", ids[pick].spec,
                 ids[pick].device, path);
        rc = cf_backend_create(ids[pick].spec, opts, out);
        free(ids);
        return rc;
    }
    /* time a few steps of this config on each device */
    double *ms = calloc((size_t)n, sizeof *ms);
    cJSON *doc = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    if (!ms || !doc || !arr) {
        free(ms), free(ids), cJSON_Delete(doc), cJSON_Delete(arr);
        return CF_ERR_NOMEM;
    }
    char line[2048];
    size_t used = 0;
    int steps_max = 0;
    for (int i = 0; i < n; i++) {
        int steps = 0;
        const double best = pick >= 0 ? ms[pick] : INFINITY;
        int r = time_steps(ids[i].spec, opts, cfg, best, &ms[i], &steps);
        steps_max = steps > steps_max ? steps : steps_max;
        cJSON *o = id_json(&ids[i]);
        if (r == CF_OK) {
            cJSON_AddNumberToObject(o, "ms_per_step", ms[i]);
            cJSON_AddNumberToObject(o, "steps", steps);
            if (pick < 0 || ms[i] < ms[pick]) pick = i;
        } else {
            ms[i] = INFINITY;
            cJSON_AddStringToObject(o, "error", cf_status_str(r));
        }
        cJSON_AddItemToArray(arr, o);
        char fig[32];
        if (r == CF_OK) snprintf(fig, sizeof fig, "%.1f ms/step", ms[i]);
        else snprintf(fig, sizeof fig, "failed (%s)", cf_status_str(r));
        used += (size_t)snprintf(line + used, used < sizeof line ? sizeof line - used : 0,
                                 "%s%s (%s) %s", i ? ", " : "", ids[i].spec, ids[i].device, fig);
    }
    if (pick < 0) {
        CF_ERROR("device auto: no device could run this config (%s)", line);
        free(ms), free(ids), cJSON_Delete(doc), cJSON_Delete(arr);
        return CF_ERR_UNSUPPORTED;
    }
    CF_INFO("device auto: timed up to %d step%s of this config on each device: %s -> %s%s%s",
            steps_max, steps_max == 1 ? "" : "s", line, ids[pick].spec,
            cache && *cache ? "; cached in " : "", cache && *cache ? path : "");
    if (cache && *cache) {
        cJSON_AddStringToObject(doc, "shape", shape);
        cJSON_AddStringToObject(doc, "clformer", CF_VERSION_STRING);
        cJSON_AddNumberToObject(doc, "time", (double)time(NULL));
        cJSON_AddItemToObject(doc, "candidates", arr);
        arr = NULL;
        cJSON *ch = id_json(&ids[pick]);
        cJSON_AddNumberToObject(ch, "ms_per_step", ms[pick]);
        cJSON_AddItemToObject(doc, "choice", ch);
        char *text = cJSON_Print(doc);
        /* a cache that cannot be written costs a measurement next time, nothing more */
        if (!text || cf_mkdirs(dir) != CF_OK || cf_write_file_atomic(path, text, strlen(text)))
            CF_WARN("device auto: could not cache the measurement in %s", path);
        free(text);
    }
    cJSON_Delete(arr);
    cJSON_Delete(doc);
    free(ms);
    rc = cf_backend_create(ids[pick].spec, opts, out);
    free(ids);
    return rc;
}

int cf_backend_create_for(const char *spec, const cf_backend_options *opts, const cf_config *cfg,
                          cf_backend **out) {
    *out = NULL;
    cf_backend_options defaults = cf_backend_options_default();
    if (!opts) opts = &defaults;
    /* the config's precision reaches the backend as an option */
    cf_backend_options with = *opts;
    if (cfg) cf_backend_options_set_precision(&with, cfg->precision);
    opts = &with;
    if (!spec || !*spec) spec = "auto";
    if (strcasecmp(spec, "auto") != 0 || !cfg || opts->auto_first)
        return cf_backend_create(spec, opts, out);
    return measure_and_create(opts, cfg, out);
}

/* ---- report ------------------------------------------------------------------------------- */

static int list_dir(const char *dir, int (*each)(const char *path, FILE *out), FILE *out) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0) continue;
        char path[CF_PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        n += each(path, out);
    }
    closedir(d);
    return n;
}

static void when(const cJSON *j, char *out, size_t len) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "time");
    time_t tt = cJSON_IsNumber(t) ? (time_t)t->valuedouble : 0;
    struct tm tmv;
    if (tt && gmtime_r(&tt, &tmv)) strftime(out, len, "%Y-%m-%d %H:%M UTC", &tmv);
    else snprintf(out, len, "?");
}

static int report_verify(const char *path, FILE *out) {
    cJSON *j = read_json(path);
    if (!j) return 0;
    char w[64];
    when(j, w, sizeof w);
    const cJSON *pass = cJSON_GetObjectItemCaseSensitive(j, "pass");
    fprintf(out, "  %s %s (%s, driver %s), %s, clformer %s%s%s\n",
            cJSON_IsTrue(pass) ? "PASS" : "FAIL", jstr(j, "device"), jstr(j, "kind"),
            jstr(j, "driver")[0] ? jstr(j, "driver") : "-", w, jstr(j, "clformer"),
            cJSON_IsTrue(pass) ? "" : ": ", cJSON_IsTrue(pass) ? "" : jstr(j, "first_failure"));
    cJSON_Delete(j);
    return 1;
}

static int report_select(const char *path, FILE *out) {
    cJSON *j = read_json(path);
    if (!j) return 0;
    char w[64];
    when(j, w, sizeof w);
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "choice");
    fprintf(out, "  %s: %s (%s)\n    ", jstr(j, "shape"), jstr(ch, "spec"), w);
    const cJSON *c;
    int i = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "candidates")) {
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(c, "ms_per_step");
        if (cJSON_IsNumber(ms))
            fprintf(out, "%s%s (%s) %.1f ms/step", i++ ? ", " : "", jstr(c, "spec"),
                    jstr(c, "device"), ms->valuedouble);
        else
            fprintf(out, "%s%s (%s) failed: %s", i++ ? ", " : "", jstr(c, "spec"),
                    jstr(c, "device"), jstr(c, "error"));
    }
    fputc('\n', out);
    cJSON_Delete(j);
    return 1;
}

int cf_device_cache_report(const char *cache_dir, FILE *out) {
    if (!cache_dir || !*cache_dir) {
        fprintf(out, "\n(no cache directory: verifications and auto measurements are not kept; "
                     "set CF_CACHE_DIR)\n");
        return CF_OK;
    }
    char dir[CF_PATH_MAX + 32];
    fprintf(out, "\nverified devices (clformer devices --verify; cached in %s/verify):\n",
            cache_dir);
    snprintf(dir, sizeof dir, "%s/verify", cache_dir);
    if (list_dir(dir, report_verify, out) == 0) fprintf(out, "  (none yet)\n");
    fprintf(out, "auto device measurements (--device auto; cached in %s/select):\n", cache_dir);
    snprintf(dir, sizeof dir, "%s/select", cache_dir);
    if (list_dir(dir, report_select, out) == 0) fprintf(out, "  (none yet)\n");
    return CF_OK;
}
