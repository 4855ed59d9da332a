/* clformer test: what the checkpoint loader and writer refuse. A model with a NaN parameter is
 * not saved (and the good file it would replace stays byte for byte); files whose weights or AdamW
 * moments are non-finite (or whose v is negative), whose optimizer tensors are stored as I32/F64
 * or in another shape, or whose step metadata is -1, "", 2^31 or 1e20 are refused with one error
 * naming the tensor or key, while the untouched file loads. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "clformer/common.h"
#include "io/safetensors.h"
#include "model/gpt.h"
#include "train/checkpoint.h"
#include "test_common.h"

static char g_dir[1024];

static char *slurp(const char *path, size_t *len) {
    char *d = NULL;
    if (cf_read_file(path, &d, len) < 0) return NULL;
    return d;
}

/* Copy of `src` with one tensor or one metadata value replaced. */
typedef struct {
    const char *tensor;   /* replace this tensor's bytes/dtype/shape, or NULL */
    const char *dtype;    /* new dtype (NULL: keep) */
    int ndim;             /* new shape when > 0 */
    int64_t shape[2];
    const void *data;     /* new bytes (NULL: keep) */
    size_t nbytes;
    const char *meta_key; /* replace this metadata value, or NULL */
    const char *meta_val;
} edit;

static int write_edited(const char *src, const char *dst, const edit *e) {
    cf_st_file *f = NULL;
    if (cf_st_open(src, &f) < 0) return -1;
    const int n = cf_st_count(f), nm = cf_st_meta_count(f);
    cf_st_tensor *t = calloc((size_t)n, sizeof *t);
    const char **k = calloc((size_t)nm, sizeof *k), **v = calloc((size_t)nm, sizeof *v);
    for (int i = 0; i < n; i++) {
        t[i] = *cf_st_get(f, i);
        if (e->tensor && strcmp(t[i].name, e->tensor) == 0) {
            if (e->dtype) t[i].dtype = e->dtype;
            if (e->ndim > 0) {
                t[i].ndim = e->ndim;
                for (int d = 0; d < e->ndim; d++) t[i].shape[d] = e->shape[d];
            }
            if (e->data) {
                t[i].data = e->data;
                t[i].nbytes = e->nbytes;
            }
        }
    }
    for (int i = 0; i < nm; i++) {
        k[i] = cf_st_meta_key(f, i);
        v[i] = cf_st_meta(f, k[i]);
        if (e->meta_key && strcmp(k[i], e->meta_key) == 0) v[i] = e->meta_val;
    }
    int rc = cf_st_write(dst, t, n, k, v, nm);
    free(t);
    free(k);
    free(v);
    cf_st_close(f);
    return rc;
}

static cf_model *new_model(cf_backend *be) {
    cf_config c;
    cf_config_defaults(&c);
    c.d_model = 16;
    c.num_heads = 2;
    c.num_layers = 1;
    c.d_ff = 32;
    c.max_length = 8;
    c.batch_size = 2;
    cf_model *m = NULL;
    if (cf_model_create(be, &c, c.batch_size, c.max_length, 1, &m) < 0) return NULL;
    return m;
}

/* Loading `path` (weights + optimizer) must fail with an error holding both needles. */
static void expect_refused(cf_model *m, const char *label, const char *path, const char *n1,
                           const char *n2) {
    cf_train_state st;
    g_msg[0] = 0;
    int rc = cf_checkpoint_load(path, m, &st, 1);
    CHECK(rc < 0, "%s: loaded (rc %d)", label, rc);
    CHECK(strstr(g_msg, n1) && (!n2 || strstr(g_msg, n2)),
          "%s: error '%s' does not name '%s'%s%s", label, g_msg, n1, n2 ? " / " : "",
          n2 ? n2 : "");
    if (rc < 0) printf("ok   - %s: %s\n", label, g_msg);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/cf_ckchecks_XXXXXX");
    if (!mkdtemp(g_dir)) return 2;
    cf_log_set_callback(capture_log, NULL);
    cf_backend *be = NULL;
    if (cf_backend_cpu_create("cpu", NULL, &be) < 0) return 2;
    cf_model *m = new_model(be);
    if (!m || cf_model_init(m, 3) < 0) return 2;
    const size_t n = m->num_params;
    char good[1200], p[1200];
    snprintf(good, sizeof good, "%s/good.safetensors", g_dir);
    cf_train_state st;
    memset(&st, 0, sizeof st);
    st.step = 5;
    CHECK(cf_checkpoint_save(good, m, &st, 1) == CF_OK, "saving a finite model: %s", g_msg);
    CHECK(cf_checkpoint_load(good, m, &st, 1) == CF_OK && st.step == 5, "good file: %s", g_msg);

    /* 1. a NaN parameter is never written, and the good file at that path stays as it was */
    size_t len0 = 0, len1 = 0;
    char *before = slurp(good, &len0);
    float *params = malloc(n * sizeof(float));
    cf_model_get_params(m, params);
    params[n / 2] = NAN;
    cf_model_set_params(m, params);
    g_msg[0] = 0;
    int rc = cf_checkpoint_save(good, m, &st, 1);
    char *after = slurp(good, &len1);
    CHECK(rc == CF_ERR_INVALID, "a model with a NaN parameter was saved (rc %d)", rc);
    CHECK(strstr(g_msg, "not written") && strstr(g_msg, "nan"), "save message: %s", g_msg);
    CHECK(before && after && len0 == len1 && memcmp(before, after, len0) == 0,
          "the good checkpoint changed");
    if (rc < 0) printf("ok   - NaN parameter not saved: %s\n", g_msg);
    free(before);
    free(after);
    params[n / 2] = 0.25f;
    cf_model_set_params(m, params);

    /* 2. non-finite weights and moments, negative v */
    cf_st_file *f = NULL;
    if (cf_st_open(good, &f) < 0) return 2;
    const cf_st_tensor *wte = cf_st_find(f, "wte");
    if (!wte) return 2;
    float *buf = malloc(2 * n * sizeof(double));
    memcpy(buf, wte->data, wte->nbytes);
    const size_t wte_bytes = wte->nbytes;
    cf_st_close(f);
    buf[7] = INFINITY;
    edit e1 = {"wte", NULL, 0, {0, 0}, buf, wte_bytes, NULL, NULL};
    snprintf(p, sizeof p, "%s/inf_wte.safetensors", g_dir);
    CHECK(write_edited(good, p, &e1) == CF_OK, "writing %s", p);
    expect_refused(m, "Inf in wte", p, "'wte'", "inf");

    float *mv = calloc(n, sizeof(float));
    mv[3] = NAN;
    edit e2 = {"optimizer.adamw_m", NULL, 0, {0, 0}, mv, n * sizeof(float), NULL, NULL};
    snprintf(p, sizeof p, "%s/nan_m.safetensors", g_dir);
    CHECK(write_edited(good, p, &e2) == CF_OK, "writing %s", p);
    expect_refused(m, "NaN in AdamW m", p, "optimizer.adamw_m", "nan");

    mv[3] = -1e-3f;
    edit e3 = {"optimizer.adamw_v", NULL, 0, {0, 0}, mv, n * sizeof(float), NULL, NULL};
    snprintf(p, sizeof p, "%s/neg_v.safetensors", g_dir);
    CHECK(write_edited(good, p, &e3) == CF_OK, "writing %s", p);
    expect_refused(m, "negative AdamW v", p, "optimizer.adamw_v", "negative");

    /* 3. optimizer tensors in another dtype or shape */
    memset(mv, 0, n * sizeof(float));
    edit e4 = {"optimizer.adamw_v", "I32", 0, {0, 0}, mv, n * sizeof(int32_t), NULL, NULL};
    snprintf(p, sizeof p, "%s/i32_v.safetensors", g_dir);
    CHECK(write_edited(good, p, &e4) == CF_OK, "writing %s", p);
    expect_refused(m, "AdamW v stored as I32", p, "optimizer.adamw_v", "I32");
    double *dv = calloc(n, sizeof(double));
    edit e5 = {"optimizer.adamw_m", "F64", 1, {(int64_t)n, 0}, dv, n * sizeof(double), NULL, NULL};
    snprintf(p, sizeof p, "%s/f64_m.safetensors", g_dir);
    CHECK(write_edited(good, p, &e5) == CF_OK, "writing %s", p);
    expect_refused(m, "AdamW m stored as F64", p, "optimizer.adamw_m", "F64");
    if (n % 2 == 0) {
        edit e6 = {"optimizer.adamw_m", NULL, 2, {(int64_t)n / 2, 2}, NULL, 0, NULL, NULL};
        snprintf(p, sizeof p, "%s/shape_m.safetensors", g_dir);
        CHECK(write_edited(good, p, &e6) == CF_OK, "writing %s", p);
        expect_refused(m, "AdamW m of shape (n/2, 2)", p, "optimizer.adamw_m", "shape");
    }
    free(dv);

    /* 4. step metadata: -1, "", 2^31, 1e20, 10^20, " 1" */
    const char *bad_steps[] = {"-1", "", "2147483648", "1e20", "100000000000000000000", " 1",
                               "+3"};
    for (size_t i = 0; i < sizeof bad_steps / sizeof bad_steps[0]; i++) {
        edit e = {NULL, NULL, 0, {0, 0}, NULL, 0, "step", bad_steps[i]};
        snprintf(p, sizeof p, "%s/step_%zu.safetensors", g_dir, i);
        CHECK(write_edited(good, p, &e) == CF_OK, "writing %s", p);
        char label[64];
        snprintf(label, sizeof label, "step '%s'", bad_steps[i]);
        expect_refused(m, label, p, "'step'", NULL);
        cf_config c;
        g_msg[0] = 0;
        CHECK(cf_checkpoint_read_config(p, &c, &st) < 0, "read_config accepted step '%s'",
              bad_steps[i]);
    }
    edit e7 = {NULL, NULL, 0, {0, 0}, NULL, 0, "opt_step", "-1"};
    snprintf(p, sizeof p, "%s/optstep.safetensors", g_dir);
    CHECK(write_edited(good, p, &e7) == CF_OK, "writing %s", p);
    expect_refused(m, "opt_step '-1'", p, "'opt_step'", NULL);

    /* the largest valid step still loads */
    edit e8 = {NULL, NULL, 0, {0, 0}, NULL, 0, "step", "2147483647"};
    snprintf(p, sizeof p, "%s/maxstep.safetensors", g_dir);
    CHECK(write_edited(good, p, &e8) == CF_OK, "writing %s", p);
    CHECK(cf_checkpoint_load(p, m, &st, 1) == CF_OK && st.step == 2147483647,
          "step 2147483647 refused: %s", g_msg);

    free(mv);
    free(buf);
    free(params);
    cf_model_free(m);
    cf_backend_destroy(be);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", g_dir);
    printf("%s: %d failure(s)\n", g_fail ? "FAIL" : "ok", g_fail);
    return g_fail ? 1 : 0;
}
