/* clformer: tuning files: read, validate, write, match against a device and look up per GEMM shape;
 * and, at backend creation, finding the file for the device and installing its GEMM parameters
 * (through the tuner hook of cl_gemm.c) and work-group sizes (by rebuilding those programs). */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "backend/opencl/cl_gemm_fast.h"
#include "backend/opencl/cl_internal.h"
#include "backend/opencl/cl_plan.h"
#include "backend/opencl/cl_tuning.h"

static const char *path_names[3] = {"native", "clblast", "fast"};

static const char *family_names[CF_TUNE_FAMILIES] = {"attention", "layernorm", "crossentropy",
                                                     "adamw"};

const char *cf_tuning_family_name(int family) {
    return family >= 0 && family < CF_TUNE_FAMILIES ? family_names[family] : "?";
}

int cf_tuning_family_from_name(const char *name) {
    for (int f = 0; f < CF_TUNE_FAMILIES; f++)
        if (name && strcmp(name, family_names[f]) == 0) return f;
    return -1;
}

void cf_tuning_init(cf_tuning *t, const char *platform, const char *device, const char *driver) {
    memset(t, 0, sizeof *t);
    snprintf(t->platform, sizeof t->platform, "%s", platform ? platform : "");
    snprintf(t->device, sizeof t->device, "%s", device ? device : "");
    snprintf(t->driver, sizeof t->driver, "%s", driver ? driver : "");
    snprintf(t->tool, sizeof t->tool, "clformer-tune %s", CF_VERSION_STRING);
}

void cf_tuning_free(cf_tuning *t) {
    if (!t) return;
    free(t->gemm);
    t->gemm = NULL;
    t->n_gemm = t->cap_gemm = 0;
}

/* the precision modes; "fp32" is also what an entry without the field means */
static const char *precision_names[] = {"fp32", "tf32", "bf16", "fp16"};

int cf_tuning_precision_known(const char *name) {
    for (size_t i = 0; i < sizeof precision_names / sizeof precision_names[0]; i++)
        if (name && strcmp(name, precision_names[i]) == 0) return 1;
    return 0;
}

const char *cf_tuning_entry_precision(const cf_tuning_gemm *g) {
    return g->precision[0] ? g->precision : "fp32";
}

static int same_precision(const cf_tuning_gemm *g, const char *precision) {
    return !precision || strcmp(cf_tuning_entry_precision(g), precision) == 0;
}

int cf_tuning_set_gemm(cf_tuning *t, const cf_tuning_gemm *g) {
    for (int i = 0; i < t->n_gemm; i++) {
        cf_tuning_gemm *e = &t->gemm[i];
        if (e->M == g->M && e->N == g->N && e->K == g->K && e->ta == g->ta && e->tb == g->tb &&
            same_precision(e, cf_tuning_entry_precision(g))) {
            *e = *g;
            return CF_OK;
        }
    }
    if (t->n_gemm == t->cap_gemm) {
        int cap = t->cap_gemm ? 2 * t->cap_gemm : 16;
        cf_tuning_gemm *grown = realloc(t->gemm, (size_t)cap * sizeof *grown);
        if (!grown) return CF_ERR_NOMEM;
        t->gemm = grown;
        t->cap_gemm = cap;
    }
    t->gemm[t->n_gemm++] = *g;
    return CF_OK;
}

/* ---- JSON ------------------------------------------------------------------------------------ */

/* two decimals, or 4 significant digits where that is finer: a CPU device's slow candidates
 * (0.004 GFLOP/s) must not be written as 0, which means "not measured" */
static double round2(double x) {
    if (!isfinite(x) || x == 0.0) return 0.0;
    double scale = 100.0;
    while (fabs(x) * scale < 1000.0 && scale < 1e12) scale *= 10.0;
    return round(x * scale) / scale;
}

char *cf_tuning_to_json(const cf_tuning *t) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "format", CF_TUNING_FORMAT);
    cJSON_AddNumberToObject(root, "version", CF_TUNING_VERSION);
    cJSON_AddStringToObject(root, "platform", t->platform);
    cJSON_AddStringToObject(root, "device", t->device);
    cJSON_AddStringToObject(root, "driver", t->driver);
    cJSON_AddStringToObject(root, "device_version", t->device_version);
    cJSON_AddStringToObject(root, "created", t->created);
    cJSON_AddStringToObject(root, "tool", t->tool);
    cJSON_AddStringToObject(root, "config", t->config);
    cJSON_AddBoolToObject(root, "quick", t->quick != 0);
    cJSON *arr = cJSON_AddArrayToObject(root, "gemm");
    for (int i = 0; arr && i < t->n_gemm; i++) {
        const cf_tuning_gemm *g = &t->gemm[i];
        cJSON *e = cJSON_CreateObject();
        if (!e) break;
        char bucket[64];
        cf_tuning_bucket(g->M, g->N, g->K, g->ta, g->tb, bucket, sizeof bucket);
        cJSON_AddStringToObject(e, "label", g->label);
        cJSON_AddStringToObject(e, "precision", cf_tuning_entry_precision(g));
        cJSON_AddStringToObject(e, "bucket", bucket);
        cJSON_AddNumberToObject(e, "M", g->M);
        cJSON_AddNumberToObject(e, "N", g->N);
        cJSON_AddNumberToObject(e, "K", g->K);
        cJSON_AddNumberToObject(e, "ta", g->ta);
        cJSON_AddNumberToObject(e, "tb", g->tb);
        cJSON_AddStringToObject(e, "path", path_names[g->path >= 0 && g->path < 3 ? g->path : 0]);
        cJSON *nat = cJSON_AddObjectToObject(e, "native");
        if (nat) {
            cJSON_AddNumberToObject(nat, "tile", g->tile);
            cJSON_AddNumberToObject(nat, "wpt", g->wpt);
            cJSON_AddNumberToObject(nat, "tk", g->tk);
            cJSON_AddNumberToObject(nat, "vw", g->vw);
            cJSON_AddNumberToObject(nat, "pad", g->pad);
        }
        if (g->fast.rm > 0) {
            cJSON *fc = cJSON_AddObjectToObject(e, "fast_choice");
            if (fc) {
                cJSON_AddNumberToObject(fc, "rm", g->fast.rm);
                cJSON_AddNumberToObject(fc, "rn", g->fast.rn);
                cJSON_AddNumberToObject(fc, "bk", g->fast.bk);
                cJSON_AddNumberToObject(fc, "wg", g->fast.wg);
                cJSON_AddNumberToObject(fc, "split", g->fast.split);
            }
        }
        cJSON *gf = cJSON_AddObjectToObject(e, "gflops");
        if (gf) {
            cJSON_AddNumberToObject(gf, "tuned", round2(g->gflops_tuned));
            cJSON_AddNumberToObject(gf, "rule", round2(g->gflops_rule));
            cJSON_AddNumberToObject(gf, "clblast", round2(g->gflops_clblast));
            cJSON_AddNumberToObject(gf, "fast", round2(g->gflops_fast));
            cJSON_AddNumberToObject(gf, "fast_rule", round2(g->gflops_fast_rule));
        }
        cJSON_AddNumberToObject(e, "candidates", g->candidates);
        cJSON_AddNumberToObject(e, "rejected", g->rejected);
        cJSON_AddItemToArray(arr, e);
    }
    cJSON *wg = cJSON_AddObjectToObject(root, "workgroups");
    for (int f = 0; wg && f < CF_TUNE_FAMILIES; f++) {
        const cf_tuning_wg *w = &t->wg[f];
        if (w->ls <= 0) continue;
        cJSON *e = cJSON_AddObjectToObject(wg, family_names[f]);
        if (!e) break;
        cJSON_AddNumberToObject(e, "ls", w->ls);
        cJSON_AddNumberToObject(e, "default_ls", w->default_ls);
        cJSON_AddNumberToObject(e, "us_tuned", round2(w->us_tuned));
        cJSON_AddNumberToObject(e, "us_default", round2(w->us_default));
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

/* field readers: fill why and return CF_ERR_FORMAT when a field is missing or out of range */
typedef struct {
    const char *origin;
    char *why;
    size_t why_len;
} parse_ctx;

static int bad(parse_ctx *pc, const char *fmt, const char *where, const char *field,
               const char *detail) {
    char head[240] = "";
    if (where && *where) snprintf(head, sizeof head, "%s: ", where);
    snprintf(pc->why, pc->why_len, fmt, head, field, detail);
    return CF_ERR_FORMAT;
}

static int get_str(parse_ctx *pc, const cJSON *o, const char *where, const char *key, char *out,
                   size_t len, int required) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        if (!required) return CF_OK;
        return bad(pc, "%sfield '%s' is missing%s", where, key, "");
    }
    if (!cJSON_IsString(v)) return bad(pc, "%sfield '%s' must be a string%s", where, key, "");
    snprintf(out, len, "%s", v->valuestring);
    return CF_OK;
}

static int get_int(parse_ctx *pc, const cJSON *o, const char *where, const char *key, int lo,
                   int hi, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    char range[64];
    snprintf(range, sizeof range, "an integer in %d..%d", lo, hi);
    if (!v) return bad(pc, "%sfield '%s' (%s) is missing", where, key, range);
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= lo && d <= hi) || d != floor(d))
        return bad(pc, "%sfield '%s' must be %s", where, key, range);
    *out = (int)d;
    return CF_OK;
}

static double get_num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0 ? v->valuedouble
                                                                                : 0.0;
}

/* An informational count (candidates, rejected, default_ls): get_num clamped to an int, since
 * converting a double beyond INT_MAX to int is undefined (found by tests/fuzz/fuzz_tuning.c). */
static int get_count(const cJSON *o, const char *key) {
    double v = get_num(o, key);
    return v < (double)INT_MAX ? (int)v : INT_MAX;
}

static int is_pow2(int x) { return x > 0 && (x & (x - 1)) == 0; }

/* the optional "fast_choice" object of an entry: the register-blocked kernel's variant and split,
 * one the kernel can be built for */
static int parse_fast_choice(parse_ctx *pc, const cJSON *fc, const char *entry,
                             cf_tuning_fast *out) {
    char where[200];
    snprintf(where, sizeof where, "%s.fast_choice", entry);
    if (!cJSON_IsObject(fc))
        return bad(pc, "%sfield '%s' must be an object {\"rm\", \"rn\", \"bk\", \"wg\", "
                       "\"split\"}%s",
                   entry, "fast_choice", "");
    cf_tuning_fast f;
    CF_TRY(get_int(pc, fc, where, "rm", 4, 16, &f.rm));
    CF_TRY(get_int(pc, fc, where, "rn", 4, 16, &f.rn));
    CF_TRY(get_int(pc, fc, where, "bk", 8, 32, &f.bk));
    CF_TRY(get_int(pc, fc, where, "wg", 8, 16, &f.wg));
    CF_TRY(get_int(pc, fc, where, "split", 1, 64, &f.split));
    const cf_cl_gemm_fast_choice c = {f.rm, f.rn, f.bk, f.split, f.wg};
    /* the plan checks it against the form that runs */
    if (!cf_cl_gemm_fast_choice_valid_any(&c)) {
        char detail[400];
        snprintf(detail, sizeof detail,
                 "rm %d, rn %d, bk %d, wg %d is no variant of the fast kernel (%s)", f.rm, f.rn,
                 f.bk, f.wg, cf_cl_gemm_fast_valid_text(0));
        return bad(pc, "%s%s%s", where, "", detail);
    }
    *out = f;
    return CF_OK;
}

static int parse_gemm(parse_ctx *pc, const cJSON *e, int idx, cf_tuning_gemm *g) {
    char where[160];
    snprintf(where, sizeof where, "gemm[%d]", idx);
    memset(g, 0, sizeof *g);
    if (!cJSON_IsObject(e)) return bad(pc, "%sentry must be an object%s%s", where, "", "");
    CF_TRY(get_str(pc, e, where, "label", g->label, sizeof g->label, 0));
    /* from here on messages name the entry by its label too */
    char entry[128];
    if (g->label[0]) snprintf(entry, sizeof entry, "gemm[%d] (%s)", idx, g->label);
    else snprintf(entry, sizeof entry, "gemm[%d]", idx);
    snprintf(where, sizeof where, "%s", entry);
    /* files before per-entry precisions: every entry was measured in fp32 */
    char prec[40] = "fp32";
    CF_TRY(get_str(pc, e, where, "precision", prec, sizeof prec, 0));
    if (!cf_tuning_precision_known(prec))
        return bad(pc, "%sfield '%s' must be \"fp32\", \"tf32\", \"bf16\" or \"fp16\", not "
                       "\"%s\"", where, "precision", prec);
    snprintf(g->precision, sizeof g->precision, "%s", prec);
    CF_TRY(get_int(pc, e, where, "M", 1, 1 << 30, &g->M));
    CF_TRY(get_int(pc, e, where, "N", 1, 1 << 30, &g->N));
    CF_TRY(get_int(pc, e, where, "K", 1, 1 << 30, &g->K));
    CF_TRY(get_int(pc, e, where, "ta", 0, 1, &g->ta));
    CF_TRY(get_int(pc, e, where, "tb", 0, 1, &g->tb));
    char path[32] = "";
    CF_TRY(get_str(pc, e, where, "path", path, sizeof path, 1));
    g->path = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(path, path_names[i]) == 0) g->path = i;
    if (g->path < 0)
        return bad(pc, "%sfield '%s' must be \"native\", \"clblast\" or \"fast\", not \"%s\"",
                   where, "path", path);
    const cJSON *nat = cJSON_GetObjectItemCaseSensitive(e, "native");
    if (!cJSON_IsObject(nat)) return bad(pc, "%sfield '%s' (an object) is missing%s", where,
                                         "native", "");
    snprintf(where, sizeof where, "%s.native", entry);
    CF_TRY(get_int(pc, nat, where, "tile", 1, 64, &g->tile));
    CF_TRY(get_int(pc, nat, where, "wpt", 1, 16, &g->wpt));
    CF_TRY(get_int(pc, nat, where, "tk", 1, 64, &g->tk));
    CF_TRY(get_int(pc, nat, where, "vw", 1, 8, &g->vw));
    CF_TRY(get_int(pc, nat, where, "pad", 0, 8, &g->pad));
    if (!is_pow2(g->vw) || g->tk % g->vw || (g->tile * g->wpt) % g->vw)
        return bad(pc, "%sfield '%s' must be 1, 2, 4 or 8 and divide tk and tile*wpt%s", where,
                   "vw", "");
    const cJSON *fc = cJSON_GetObjectItemCaseSensitive(e, "fast_choice");
    if (fc) CF_TRY(parse_fast_choice(pc, fc, entry, &g->fast));
    const cJSON *gf = cJSON_GetObjectItemCaseSensitive(e, "gflops");
    if (gf) {
        g->gflops_tuned = get_num(gf, "tuned");
        g->gflops_rule = get_num(gf, "rule");
        g->gflops_clblast = get_num(gf, "clblast");
        g->gflops_fast = get_num(gf, "fast");
        /* files before "fast_choice": "fast" was the rule's choice where the backend ran it */
        if (cJSON_GetObjectItemCaseSensitive(gf, "fast_rule"))
            g->gflops_fast_rule = get_num(gf, "fast_rule");
        else if (!fc)
            g->gflops_fast_rule = g->gflops_fast;
    }
    g->candidates = get_count(e, "candidates");
    g->rejected = get_count(e, "rejected");
    return CF_OK;
}

int cf_tuning_parse(const char *text, const char *origin, cf_tuning *t, char *why,
                    size_t why_len) {
    parse_ctx pc = {origin, why, why_len};
    cf_tuning_init(t, "", "", "");
    why[0] = 0;
    cJSON *root = cJSON_Parse(text);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long line = 1;
        if (at && at >= text)
            for (const char *p = text; p < at; p++) line += *p == '\n';
        snprintf(why, why_len, "not valid JSON (error near line %ld)", line);
        return CF_ERR_FORMAT;
    }
    int rc = CF_OK;
    char fmt[64] = "";
    int version = 0;
    if (!cJSON_IsObject(root)) {
        rc = bad(&pc, "%sthe top level must be an object%s%s", "", "", "");
        goto out;
    }
    if ((rc = get_str(&pc, root, "", "format", fmt, sizeof fmt, 1)) < 0) goto out;
    if (strcmp(fmt, CF_TUNING_FORMAT) != 0) {
        rc = bad(&pc, "%sfield 'format' is \"%s\", expected \"%s\"", "", fmt, CF_TUNING_FORMAT);
        goto out;
    }
    if ((rc = get_int(&pc, root, "", "version", 1, 1000, &version)) < 0) goto out;
    if (version != CF_TUNING_VERSION) {
        snprintf(why, why_len, "version %d is not supported (this clformer reads version %d); "
                 "rerun clformer-tune", version, CF_TUNING_VERSION);
        rc = CF_ERR_FORMAT;
        goto out;
    }
    if ((rc = get_str(&pc, root, "", "platform", t->platform, sizeof t->platform, 1)) < 0 ||
        (rc = get_str(&pc, root, "", "device", t->device, sizeof t->device, 1)) < 0 ||
        (rc = get_str(&pc, root, "", "driver", t->driver, sizeof t->driver, 1)) < 0 ||
        (rc = get_str(&pc, root, "", "device_version", t->device_version,
                      sizeof t->device_version, 0)) < 0 ||
        (rc = get_str(&pc, root, "", "created", t->created, sizeof t->created, 0)) < 0 ||
        (rc = get_str(&pc, root, "", "tool", t->tool, sizeof t->tool, 0)) < 0 ||
        (rc = get_str(&pc, root, "", "config", t->config, sizeof t->config, 0)) < 0)
        goto out;
    t->quick = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "quick"));
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "gemm");
    if (arr && !cJSON_IsArray(arr)) {
        rc = bad(&pc, "%sfield '%s' must be an array%s", "", "gemm", "");
        goto out;
    }
    int idx = 0;
    const cJSON *e = NULL;
    cJSON_ArrayForEach(e, arr) {
        cf_tuning_gemm g;
        if ((rc = parse_gemm(&pc, e, idx++, &g)) < 0) goto out;
        if ((rc = cf_tuning_set_gemm(t, &g)) < 0) {
            snprintf(why, why_len, "out of memory");
            goto out;
        }
    }
    const cJSON *wg = cJSON_GetObjectItemCaseSensitive(root, "workgroups");
    if (wg && !cJSON_IsObject(wg)) {
        rc = bad(&pc, "%sfield '%s' must be an object%s", "", "workgroups", "");
        goto out;
    }
    cJSON_ArrayForEach(e, wg) {
        int f = cf_tuning_family_from_name(e->string);
        char where[64];
        snprintf(where, sizeof where, "workgroups.%s", e->string ? e->string : "?");
        if (f < 0) {
            rc = bad(&pc, "%sunknown kernel family '%s'%s", "", e->string ? e->string : "?",
                     " (known: attention, layernorm, crossentropy, adamw)");
            goto out;
        }
        if (!cJSON_IsObject(e)) {
            rc = bad(&pc, "%s'%s' must be an object%s", "", where, "");
            goto out;
        }
        if ((rc = get_int(&pc, e, where, "ls", 1, 4096, &t->wg[f].ls)) < 0) goto out;
        if (!is_pow2(t->wg[f].ls)) {
            rc = bad(&pc, "%sfield '%s' must be a power of two%s", where, "ls", "");
            goto out;
        }
        t->wg[f].default_ls = get_count(e, "default_ls");
        t->wg[f].us_tuned = get_num(e, "us_tuned");
        t->wg[f].us_default = get_num(e, "us_default");
    }
out:
    cJSON_Delete(root);
    (void)pc.origin;
    return rc;
}

int cf_tuning_load(const char *path, cf_tuning *t, char *why, size_t why_len) {
    cf_tuning_init(t, "", "", "");
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(why, why_len, "not found");
        return CF_ERR_NOT_FOUND;
    }
    /* read here rather than with cf_read_file, which logs: the caller reports one warning */
    FILE *f = S_ISREG(st.st_mode) && st.st_size < (64 << 20) ? fopen(path, "rb") : NULL;
    char *text = f ? malloc((size_t)st.st_size + 1) : NULL;
    size_t len = text ? fread(text, 1, (size_t)st.st_size, f) : 0;
    if (f) fclose(f);
    if (!text || len != (size_t)st.st_size) {
        free(text);
        snprintf(why, why_len, "not readable (not a regular file under 64 MiB, or a read error)");
        return CF_ERR_IO;
    }
    text[len] = 0;
    int rc = cf_tuning_parse(text, path, t, why, why_len);
    free(text);
    if (rc == CF_OK) snprintf(t->path, sizeof t->path, "%s", path);
    return rc;
}

int cf_tuning_save(const cf_tuning *t, const char *path) {
    char *s = cf_tuning_to_json(t);
    if (!s) {
        CF_ERROR("tuning file %s: out of memory while writing", path);
        return CF_ERR_NOMEM;
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    int rc = CF_OK;
    if (slash && slash != dir) {
        *slash = 0;
        rc = cf_mkdirs(dir);
    }
    if (rc == CF_OK) {
        size_t n = strlen(s);
        s[n] = '\n'; /* replaces the NUL: the file ends with a newline */
        rc = cf_write_file_atomic(path, s, n + 1);
    }
    free(s);
    if (rc < 0) CF_ERROR("tuning file %s: could not be written (%s)", path, cf_status_str(rc));
    return rc;
}

/* ---- matching and lookup --------------------------------------------------------------------- */

int cf_tuning_match(const cf_tuning *t, const char *platform, const char *device,
                    const char *driver, char *why, size_t why_len) {
    if (strcmp(t->device, device) != 0 || strcmp(t->platform, platform) != 0) {
        snprintf(why, why_len, "was measured on '%s' (%s), not on this device '%s' (%s)",
                 t->device, t->platform, device, platform);
        return CF_TUNING_OTHER_DEVICE;
    }
    if (strcmp(t->driver, driver) != 0) {
        snprintf(why, why_len, "is stale: measured with driver '%s', the device now runs driver "
                 "'%s'", t->driver, driver);
        return CF_TUNING_STALE;
    }
    if (why_len) why[0] = 0;
    return CF_TUNING_MATCH;
}

static int round_pow2(int x) {
    if (x <= 1) return 1;
    return 1 << (int)lround(log2((double)x));
}

void cf_tuning_bucket(int M, int N, int K, int ta, int tb, char *out, size_t len) {
    snprintf(out, len, "%c%c:%dx%dx%d", ta ? 't' : 'n', tb ? 't' : 'n', round_pow2(M),
             round_pow2(N), round_pow2(K));
}

const cf_tuning_gemm *cf_tuning_lookup(const cf_tuning *t, int M, int N, int K, int ta, int tb,
                                       int *exact) {
    return cf_tuning_lookup_precision(t, NULL, M, N, K, ta, tb, exact);
}

int cf_tuning_keep_precision(cf_tuning *t, const char *precision) {
    int kept = 0;
    for (int i = 0; i < t->n_gemm; i++)
        if (same_precision(&t->gemm[i], precision)) t->gemm[kept++] = t->gemm[i];
    int dropped = t->n_gemm - kept;
    t->n_gemm = kept;
    return dropped;
}

const cf_tuning_gemm *cf_tuning_lookup_precision(const cf_tuning *t, const char *precision, int M,
                                                 int N, int K, int ta, int tb, int *exact) {
    if (exact) *exact = 0;
    if (!t) return NULL;
    for (int i = 0; i < t->n_gemm; i++) {
        const cf_tuning_gemm *g = &t->gemm[i];
        if (!same_precision(g, precision)) continue;
        if (g->M == M && g->N == N && g->K == K && g->ta == ta && g->tb == tb) {
            if (exact) *exact = 1;
            return g;
        }
    }
    char want[64], have[64];
    cf_tuning_bucket(M, N, K, ta, tb, want, sizeof want);
    const cf_tuning_gemm *best = NULL;
    double best_d = 0.0;
    for (int i = 0; i < t->n_gemm; i++) {
        const cf_tuning_gemm *g = &t->gemm[i];
        if (!same_precision(g, precision)) continue;
        cf_tuning_bucket(g->M, g->N, g->K, g->ta, g->tb, have, sizeof have);
        if (strcmp(want, have) != 0) continue;
        double d = fabs(log2((double)g->M / M)) + fabs(log2((double)g->N / N)) +
                   fabs(log2((double)g->K / (K > 0 ? K : 1)));
        if (!best || d < best_d) {
            best = g;
            best_d = d;
        }
    }
    return best;
}

/* ---- file names and places ------------------------------------------------------------------- */

static size_t slug(const char *s, char *out, size_t len) {
    size_t n = 0;
    int dash = 0;
    for (; *s && n + 2 < len && n < 96; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c)) {
            if (dash && n > 0) out[n++] = '-';
            dash = 0;
            out[n++] = (char)tolower(c);
        } else {
            dash = 1;
        }
    }
    out[n] = 0;
    return n;
}

void cf_tuning_file_name(const char *platform, const char *device, char *out, size_t len) {
    char p[128], d[128];
    if (slug(platform, p, sizeof p) == 0) snprintf(p, sizeof p, "platform");
    if (slug(device, d, sizeof d) == 0) snprintf(d, sizeof d, "device");
    snprintf(out, len, "%s__%s.json", p, d);
}

/* the source tree's configs/tuning (CF_KERNEL_DIR is <source>/cl_kernels) */
static void source_tuning_dir(char *out, size_t len) {
    char root[1024];
    snprintf(root, sizeof root, "%s", CF_KERNEL_DIR);
    char *slash = strrchr(root, '/');
    if (slash) *slash = 0;
    else snprintf(root, sizeof root, ".");
    snprintf(out, len, "%.900s/configs/tuning", root);
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

void cf_tuning_default_dir(char *out, size_t len) {
    if (is_dir("configs/tuning")) snprintf(out, len, "configs/tuning");
    else source_tuning_dir(out, len);
}

int cf_tuning_search_paths(const char *named, const char *platform, const char *device,
                           char paths[][1024], int max, int *from_env) {
    *from_env = 0;
    const char *env = named;
    if (env && *env) {
        if (strcmp(env, "off") == 0 || strcmp(env, "none") == 0) return 0;
        if (max < 1) return 0;
        snprintf(paths[0], 1024, "%s", env);
        *from_env = 1;
        return 1;
    }
    char name[300], dir[1024];
    cf_tuning_file_name(platform, device, name, sizeof name);
    int n = 0;
    if (n < max) snprintf(paths[n++], 1024, "configs/tuning/%s", name);
    source_tuning_dir(dir, sizeof dir);
    if (n < max) {
        snprintf(paths[n], 1024, "%.700s/%.300s", dir, name);
        /* the same file when run from the source tree */
        struct stat a, b;
        if (!(n > 0 && stat(paths[0], &a) == 0 && stat(paths[n], &b) == 0 && a.st_ino == b.st_ino &&
              a.st_dev == b.st_dev))
            n++;
    }
    return n;
}

/* ---- attaching to a backend ------------------------------------------------------------------ */

static const int family_program[CF_TUNE_FAMILIES] = {
    [CF_TUNE_ATTENTION] = CF_PROG_ATTENTION,
    [CF_TUNE_LAYERNORM] = CF_PROG_LAYERNORM,
    [CF_TUNE_CROSSENTROPY] = CF_PROG_CROSSENTROPY,
    [CF_TUNE_ADAMW] = CF_PROG_ADAMW,
};

int cf_cl_tuning_hook(void *user, const char *device, int M, int N, int K, int ta, int tb,
                      cf_cl_gemm_params *out) {
    (void)device;
    int exact = 0;
    const cf_tuning_gemm *g = cf_tuning_lookup((const cf_tuning *)user, M, N, K, ta, tb, &exact);
    /* "fast": leave the shape to the backend's own choice, which was measured fastest */
    if (!g || g->path == CF_TUNING_FAST) return 0;
    out->tile = g->tile;
    out->wpt = g->wpt;
    out->tk = g->tk;
    out->vw = g->vw;
    out->pad = g->pad;
    out->path = g->path == CF_TUNING_CLBLAST ? CF_GEMM_CLBLAST : CF_GEMM_NATIVE;
    out->source = exact ? "tuning" : "tuning, same bucket";
    return 1;
}

void cf_cl_tuning_attach(cf_cl_ctx *ctx) {
    char paths[2][1024];
    int from_env = 0;
    const char *named = ctx->tuning_off ? "off" : ctx->tuning_path;
    int n = cf_tuning_search_paths(named, ctx->dev.platform_name, ctx->dev.name, paths, 2,
                                   &from_env);
    if (n == 0) {
        CF_DEBUG("tuning: off (CF_TUNING / --tuning); built-in GEMM rule and work-group sizes");
        return;
    }
    const char *path = NULL;
    struct stat st;
    for (int i = 0; i < n && !path; i++)
        if (from_env || stat(paths[i], &st) == 0) path = paths[i];
    if (!path) {
        CF_DEBUG("tuning: no tuning file for %s (looked for %s%s%s); built-in GEMM rule and "
                 "work-group sizes (clformer-tune measures the device, see docs/tuning.md)",
                 ctx->dev.name, paths[0], n > 1 ? " and " : "", n > 1 ? paths[1] : "");
        return;
    }
    const char *named_by = from_env ? " (named by CF_TUNING / --tuning)" : "";
    cf_tuning *t = calloc(1, sizeof *t);
    if (!t) {
        CF_WARN("tuning file %s: out of host memory; using the built-in GEMM rule", path);
        return;
    }
    char why[1200];
    int rc = cf_tuning_load(path, t, why, sizeof why);
    if (rc < 0) {
        CF_WARN("tuning file %s%s: %s; using the built-in GEMM rule and work-group sizes%s", path,
                named_by, why,
                rc == CF_ERR_FORMAT ? " (rerun clformer-tune to rewrite it)" : "");
        cf_tuning_free(t);
        free(t);
        return;
    }
    if (cf_tuning_match(t, ctx->dev.platform_name, ctx->dev.name, ctx->dev.driver, why,
                        sizeof why) != CF_TUNING_MATCH) {
        CF_WARN("tuning file %s%s %s; using the built-in GEMM rule and work-group sizes (rerun "
                "clformer-tune --device opencl:%d:%d to measure this one)",
                path, named_by, why, ctx->dev.platform_index, ctx->dev.device_index);
        cf_tuning_free(t);
        free(t);
        return;
    }
    /* GEMM entries apply only to runs of the precision they were measured under: the GEMMs run
     * on TF32 tensor cores only where mma_tf32 is on (precision tf32 elsewhere runs fp32); bf16
     * and fp16 round the inputs on every device */
    cf_cl_plan_device pd;
    cf_cl_plan_device_of(ctx, &pd);
    const char *run_prec = cf_cl_plan_precision(&pd);
    const int n_all = t->n_gemm;
    const int dropped = cf_tuning_keep_precision(t, run_prec);
    /* (clformer-tune measures fp32 and tf32; bf16 / fp16 entries come from other tools or
     * hand edits) */
    const int tunable = !strcmp(run_prec, "fp32") || !strcmp(run_prec, "tf32");
    if (dropped > 0 && t->n_gemm == 0)
        CF_WARN("tuning file %s%s: its %d GEMM entr%s measured for another precision than this "
                "run's %s and not applied; built-in GEMM rule%s%s%s",
                path, named_by, n_all, n_all == 1 ? "y was" : "ies were", run_prec,
                tunable ? " (rerun clformer-tune --precision " : " (clformer-tune does not measure ",
                run_prec, tunable ? " to measure for it)" : " yet)");
    else if (dropped > 0)
        CF_DEBUG("tuning file %s: %d of its %d GEMM entries are for another precision than this "
                 "run's %s (not applied)",
                 path, dropped, n_all, run_prec);
    /* work-group sizes: a size the device cannot run leaves the default, with one warning */
    char wgs[256] = "";
    size_t used = 0;
    int quiet = ctx->quiet_init;
    for (int f = 0; f < CF_TUNE_FAMILIES; f++) {
        int ls = t->wg[f].ls;
        if (ls <= 0) continue;
        int prog = family_program[f];
        ctx->quiet_init = 1; /* build errors become the warning below */
        ctx->last_error[0] = 0;
        rc = cf_cl_program_set_ls(ctx, prog, ls);
        ctx->quiet_init = quiet;
        if (rc < 0) {
            CF_WARN("tuning file %s: work-group size %d for %s unusable on %s (%s); keeping %d",
                    path, ls, family_names[f], ctx->dev.name,
                    ctx->last_error[0] ? ctx->last_error : cf_status_str(rc),
                    ctx->prog_ls[prog]);
            ctx->last_error[0] = 0;
            continue;
        }
        int w = snprintf(wgs + used, sizeof wgs - used, "%s%s %d", used ? ", " : "",
                         family_names[f], ls);
        if (w > 0 && (size_t)w < sizeof wgs - used) used += (size_t)w;
    }
    ctx->tuning = t;
    ctx->tuner = cf_cl_tuning_hook;
    ctx->tuner_user = t;
    ctx->n_memo = 0;
    ctx->plan_gen++; /* plans are made again (cf_cl_plan_invalidate) */
    CF_DEBUG("tuning: using %s (measured %s%s for %s, driver %s): %d GEMM shape%s (%s), "
             "work-groups %s",
             path, t->created[0] ? t->created : "at an unknown time", t->quick ? ", --quick" : "",
             t->device, t->driver, t->n_gemm, t->n_gemm == 1 ? "" : "s", run_prec,
             used ? wgs : "default");
}

void cf_cl_tuning_detach(cf_cl_ctx *ctx) {
    if (!ctx->tuning) return;
    if (ctx->tuner_user == ctx->tuning) {
        ctx->tuner = NULL;
        ctx->tuner_user = NULL;
        ctx->plan_gen++;
    }
    cf_tuning_free(ctx->tuning);
    free(ctx->tuning);
    ctx->tuning = NULL;
}
