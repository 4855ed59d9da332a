/* clformer: model <-> safetensors checkpoint mapping. */
#define _POSIX_C_SOURCE 200809L
#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/safetensors.h"
#include "model/optim.h"
#include "tokenizer/tokenizer.h"

#define CF_CKPT_FORMAT "clformer-checkpoint-v1"
/* optimizer muon: the momentum of the Muon matrices, packed in table order (model/optim.h) */
#define CF_CKPT_MUON_MOMENTUM "optimizer.muon_momentum"

int cf_checkpoint_check_values(const char *path, const char *name, const void *data, size_t n,
                               int nonneg) {
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++) {
        float v;
        memcpy(&v, b + i * sizeof v, sizeof v);
        if (isfinite(v) && !(nonneg && v < 0.0f)) continue;
        CF_ERROR("checkpoint %s: tensor '%s' holds %s%g at index %zu%s; the file is damaged or "
                 "the run diverged: use an earlier checkpoint",
                 path, name, isfinite(v) ? "the negative value " : "", (double)v, i,
                 isfinite(v) ? " (a second moment must be >= 0)" : " (not a finite number)");
        return CF_ERR_FORMAT;
    }
    return CF_OK;
}

/* First non-finite parameter (or non-finite / negative AdamW moment) in host copies; names it. */
static int check_before_save(const char *path, const cf_model *m, const float *params,
                             const float *mm, const float *vv, int step) {
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &m->params[i];
        for (size_t k = 0; k < p->size; k++) {
            const float v = params[p->offset + k];
            if (isfinite(v)) continue;
            CF_ERROR("checkpoint %s not written: parameter '%s' is %g at index %zu after step %d; "
                     "the run diverged: lower learning_rate and resume from an earlier checkpoint",
                     path, p->name, (double)v, k, step);
            return CF_ERR_INVALID;
        }
    }
    for (size_t k = 0; mm && vv && k < m->num_params; k++) {
        if (isfinite(mm[k]) && isfinite(vv[k]) && vv[k] >= 0.0f) continue;
        CF_ERROR("checkpoint %s not written: the AdamW state at index %zu is m=%g v=%g after step "
                 "%d; the run diverged: lower learning_rate and resume from an earlier checkpoint",
                 path, k, (double)mm[k], (double)vv[k], step);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}

int cf_checkpoint_save(const char *path, cf_model *m, const cf_train_state *st, int with_opt) {
    const size_t n = m->num_params;
    int rc = CF_OK;
    with_opt = with_opt && m->have_grads;
    float *params = malloc(n * sizeof(float));
    float *mm = with_opt ? malloc(n * sizeof(float)) : NULL;
    float *vv = with_opt ? malloc(n * sizeof(float)) : NULL;
    /* optimizer muon: the momentum of its matrices, packed in table order */
    const size_t nmu = with_opt && m->muon ? m->muon->n : 0;
    float *mu = nmu ? malloc(nmu * sizeof(float)) : NULL;
    char *cfg_json = cf_config_to_json(&m->cfg);
    if (!params || (with_opt && (!mm || !vv)) || (nmu && !mu) || !cfg_json) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    if ((rc = cf_model_get_params(m, params)) < 0) goto done;
    if (with_opt && (rc = cf_model_get_opt_state(m, mm, vv)) < 0) goto done;
    if (nmu && (rc = cf_muon_get_state(m, mu)) < 0) goto done;
    /* a diverged model is never written, so it cannot replace a good checkpoint */
    if ((rc = check_before_save(path, m, params, mm, vv, st->step)) < 0) goto done;
    for (size_t k = 0; k < nmu; k++) {
        if (isfinite(mu[k])) continue;
        CF_ERROR("checkpoint %s not written: the Muon momentum at index %zu is %g after step %d; "
                 "the run diverged: lower muon_lr and resume from an earlier checkpoint",
                 path, k, (double)mu[k], st->step);
        rc = CF_ERR_INVALID;
        goto done;
    }

    cf_st_tensor t[CF_NUM_PARAMS + 3];
    int nt = 0;
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &m->params[i];
        if (!p->present) continue;
        cf_st_tensor *x = &t[nt++];
        memset(x, 0, sizeof *x);
        x->name = p->name;
        x->dtype = "F32";
        x->ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) x->shape[d] = p->shape[d];
        x->data = params + p->offset;
        x->nbytes = p->size * sizeof(float);
    }
    if (with_opt) {
        const char *names[2] = {"optimizer.adamw_m", "optimizer.adamw_v"};
        float *bufs[2] = {mm, vv};
        for (int k = 0; k < 2; k++) {
            cf_st_tensor *x = &t[nt++];
            memset(x, 0, sizeof *x);
            x->name = names[k];
            x->dtype = "F32";
            x->ndim = 1;
            x->shape[0] = (int64_t)n;
            x->data = bufs[k];
            x->nbytes = n * sizeof(float);
        }
    }
    if (nmu) {
        cf_st_tensor *x = &t[nt++];
        memset(x, 0, sizeof *x);
        x->name = CF_CKPT_MUON_MOMENTUM;
        x->dtype = "F32";
        x->ndim = 1;
        x->shape[0] = (int64_t)nmu;
        x->data = mu;
        x->nbytes = nmu * sizeof(float);
    }
    char step[32], opt_step[32], tok[32], ep[32], idx[32], seed[32], th[32], ll[32], bv[32];
    snprintf(step, sizeof step, "%d", st->step);
    snprintf(opt_step, sizeof opt_step, "%d", m->opt_step);
    snprintf(tok, sizeof tok, "%" PRIu64, st->tokens_seen);
    snprintf(ep, sizeof ep, "%" PRIu64, st->data.epoch);
    snprintf(idx, sizeof idx, "%" PRIu64, st->data.index);
    snprintf(seed, sizeof seed, "%" PRIu64, st->data.seed);
    uint64_t tok_hash = st->tokenizer_hash;
    if (tok_hash == 0 && cf_tokenizer_hash_of(m->cfg.tokenizer, &tok_hash) < 0) tok_hash = 0;
    snprintf(th, sizeof th, "%016" PRIx64, tok_hash);
    snprintf(ll, sizeof ll, "%.9g", st->last_loss);
    snprintf(bv, sizeof bv, "%.9g", st->best_val_loss);
    const char *keys[] = {"format",     "config",     "tokenizer",  "tokenizer_hash",
                          "step",       "opt_step",   "tokens_seen", "data_epoch",
                          "data_index", "data_seed",  "last_loss",   "best_val_loss",
                          "has_optimizer", "loss_scale", "loss_scale_good_steps", "skipped_steps"};
    /* the loss-scaling keys (the last three) only where a run scales its loss (fp16) */
    char ls[32], lsg[32], sk[32];
    snprintf(ls, sizeof ls, "%.9g", st->loss_scale);
    snprintf(lsg, sizeof lsg, "%d", st->loss_scale_good);
    snprintf(sk, sizeof sk, "%" PRIu64, st->skipped_steps);
    const char *vals[] = {CF_CKPT_FORMAT, cfg_json, m->cfg.tokenizer, th, step, opt_step, tok,
                          ep,             idx,      seed,             ll, bv, with_opt ? "1" : "0",
                          ls,             lsg,      sk};
    const int nkeys = (int)(sizeof keys / sizeof keys[0]) - (st->loss_scale > 0.0f ? 0 : 3);
    rc = cf_st_write(path, t, nt, keys, vals, nkeys);
done:
    if (rc == CF_ERR_NOMEM) CF_ERROR("checkpoint %s: out of host memory while saving", path);
    free(params);
    free(mm);
    free(vv);
    free(mu);
    free(cfg_json);
    return rc;
}

static int parse_u64(const cf_st_file *f, const char *path, const char *key, uint64_t *out,
                     int hex) {
    const char *s = cf_st_meta(f, key);
    if (!s) {
        CF_ERROR("checkpoint %s: metadata key '%s' is missing; the file was not written by "
                 "clformer or is damaged",
                 path, key);
        return CF_ERR_FORMAT;
    }
    /* digits only: strtoull alone takes "", " 1", "+1" and "-1" (as 2^64-1) */
    int ok = s[0] != 0;
    for (const char *c = s; ok && *c; c++)
        ok = (*c >= '0' && *c <= '9') ||
             (hex && ((*c >= 'a' && *c <= 'f') || (*c >= 'A' && *c <= 'F')));
    char *end = NULL;
    errno = 0;
    if (ok) *out = strtoull(s, &end, hex ? 16 : 10);
    if (!ok || errno || !end || *end) {
        CF_ERROR("checkpoint %s: metadata '%s' = '%s' is not a %s integer in [0, 2^64); the file "
                 "is damaged or was not written by clformer",
                 path, key, s, hex ? "hexadecimal" : "decimal");
        return CF_ERR_FORMAT;
    }
    return CF_OK;
}

/* A step counter: a decimal integer in [0, INT_MAX]. */
static int parse_step(const cf_st_file *f, const char *path, const char *key, int *out) {
    uint64_t v = 0;
    CF_TRY(parse_u64(f, path, key, &v, 0));
    if (v > (uint64_t)INT_MAX) {
        CF_ERROR("checkpoint %s: metadata '%s' = %" PRIu64 " is past the largest step count (%d); "
                 "the file is damaged",
                 path, key, v, INT_MAX);
        return CF_ERR_FORMAT;
    }
    *out = (int)v;
    return CF_OK;
}

static int read_meta(const cf_st_file *f, const char *path, cf_config *cfg, cf_train_state *st) {
    const char *fmt = cf_st_meta(f, "format");
    if (!fmt || strcmp(fmt, CF_CKPT_FORMAT) != 0) {
        CF_ERROR("checkpoint %s: not a clformer checkpoint (format '%s', expected '%s')", path,
                 fmt ? fmt : "missing", CF_CKPT_FORMAT);
        return CF_ERR_FORMAT;
    }
    const char *cj = cf_st_meta(f, "config");
    if (!cj) {
        CF_ERROR("checkpoint %s: the config is missing from the metadata", path);
        return CF_ERR_FORMAT;
    }
    if (cfg) {
        char origin[CF_PATH_MAX + 32];
        snprintf(origin, sizeof origin, "checkpoint %s", path);
        CF_TRY(cf_config_from_json(cj, cfg, origin));
    }
    if (st) {
        memset(st, 0, sizeof *st);
        CF_TRY(parse_step(f, path, "step", &st->step));
        CF_TRY(parse_u64(f, path, "tokens_seen", &st->tokens_seen, 0));
        CF_TRY(parse_u64(f, path, "data_epoch", &st->data.epoch, 0));
        CF_TRY(parse_u64(f, path, "data_index", &st->data.index, 0));
        CF_TRY(parse_u64(f, path, "data_seed", &st->data.seed, 0));
        CF_TRY(parse_u64(f, path, "tokenizer_hash", &st->tokenizer_hash, 1));
        const char *s = cf_st_meta(f, "last_loss");
        st->last_loss = s ? strtof(s, NULL) : 0.0f;
        s = cf_st_meta(f, "best_val_loss");
        st->best_val_loss = s ? strtof(s, NULL) : 0.0f;
        /* precision fp16's loss scale: absent in the files of other runs (0: none) */
        if ((s = cf_st_meta(f, "loss_scale"))) {
            char *end = NULL;
            const float v = strtof(s, &end);
            if (!end || end == s || *end || !isfinite(v) || v < 1.0f) {
                CF_ERROR("checkpoint %s: metadata 'loss_scale' = '%s' is not a finite number >= "
                         "1; the file is damaged",
                         path, s);
                return CF_ERR_FORMAT;
            }
            st->loss_scale = v;
            CF_TRY(parse_step(f, path, "loss_scale_good_steps", &st->loss_scale_good));
            CF_TRY(parse_u64(f, path, "skipped_steps", &st->skipped_steps, 0));
        }
    }
    return CF_OK;
}

int cf_checkpoint_read_config(const char *path, cf_config *cfg, cf_train_state *st) {
    cf_st_file *f = NULL;
    CF_TRY(cf_st_open(path, &f));
    int rc = read_meta(f, path, cfg, st);
    cf_st_close(f);
    return rc;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "(");
    for (int d = 0; d < ndim && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%" PRId64, d ? "," : "", shape[d]);
    if (o < n) snprintf(buf + o, n - o, ")");
}

int cf_checkpoint_check_tensors(const cf_st_file *f, const char *path,
                                const cf_param_info params[CF_NUM_PARAMS], const char *fix) {
    if (!fix) fix = "use the config the checkpoint was trained with";
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &params[i];
        if (!p->present) continue;
        const cf_st_tensor *t = cf_st_find(f, p->name);
        if (!t) {
            CF_ERROR("checkpoint %s: tensor '%s' is missing", path, p->name);
            return CF_ERR_FORMAT;
        }
        int same = strcmp(t->dtype, "F32") == 0 && t->ndim == p->ndim &&
                   t->nbytes == p->size * sizeof(float);
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        int same_shape = t->ndim == p->ndim;
        for (int d = 0; same_shape && d < p->ndim; d++) same_shape = t->shape[d] == p->shape[d];
        if (!same && same_shape && (!strcmp(t->dtype, "F16") || !strcmp(t->dtype, "BF16"))) {
            CF_ERROR("checkpoint %s: tensor '%s' is %s, but checkpoints hold the fp32 (F32) master "
                     "weights (whatever the run's precision); use a checkpoint clformer wrote, or "
                     "convert the tensor to F32",
                     path, p->name, t->dtype);
            return CF_ERR_FORMAT;
        }
        if (!same) {
            char want[96], got[96];
            shape_str(want, sizeof want, p->ndim, p->shape);
            shape_str(got, sizeof got, t->ndim, t->shape);
            CF_ERROR("checkpoint %s: tensor '%s' has shape %s %s but the config needs %s F32; %s",
                     path, p->name, got, t->dtype, want, fix);
            return CF_ERR_FORMAT;
        }
    }
    return CF_OK;
}

/* Muon's momentum: present exactly when the model trains with optimizer muon, one value per
 * element of the Muon matrices, finite. */
static int load_muon_state(const cf_st_file *f, const char *path, const cf_config *was,
                           cf_model *m) {
    const cf_st_tensor *t = cf_st_find(f, CF_CKPT_MUON_MOMENTUM);
    static const char *const names[] = {"adamw", "muon"};
    if (was->optimizer != m->cfg.optimizer) {
        const char *a = names[was->optimizer == CF_OPTIM_MUON],
                   *b = names[m->cfg.optimizer == CF_OPTIM_MUON];
        CF_ERROR("checkpoint %s was trained with optimizer %s but the config says optimizer %s; "
                 "the optimizer state does not carry over: resume with optimizer=%s, or start a "
                 "new run without --resume",
                 path, a, b, a);
        return CF_ERR_INVALID;
    }
    if ((t != NULL) != (m->muon != NULL)) {
        CF_ERROR("checkpoint %s: %s tensor '%s' although its config says optimizer %s; the file is "
                 "damaged: use an earlier checkpoint",
                 path, t ? "holds the" : "is missing the", CF_CKPT_MUON_MOMENTUM,
                 names[was->optimizer == CF_OPTIM_MUON]);
        return CF_ERR_FORMAT;
    }
    if (!t) return CF_OK;
    const size_t n = m->muon->n;
    if (strcmp(t->dtype, "F32") != 0 || t->ndim != 1 || t->shape[0] != (int64_t)n) {
        char got[96];
        shape_str(got, sizeof got, t->ndim, t->shape);
        CF_ERROR("checkpoint %s: tensor '%s' is %s %s but the model needs (%zu) F32 (one value per "
                 "element of the Muon matrices); the file is damaged or from another model",
                 path, t->name, got, t->dtype, n);
        return CF_ERR_FORMAT;
    }
    CF_TRY(cf_checkpoint_check_values(path, t->name, t->data, n, 0));
    return cf_muon_set_state(m, t->data);
}

int cf_checkpoint_load(const char *path, cf_model *m, cf_train_state *st, int with_opt) {
    cf_st_file *f = NULL;
    CF_TRY(cf_st_open(path, &f));
    cf_config was;
    int rc = read_meta(f, path, &was, st);
    float *host = NULL;
    const size_t n = m->num_params;
    if (rc < 0) goto done;
    if (cf_st_meta(f, "quantization")) { /* written by `clformer quantize` (src/model/infer.h) */
        CF_ERROR("checkpoint %s: is an %s-quantized model, which generate, eval and bench "
                 "--generate read but nothing can train; train or resume from the fp32 checkpoint "
                 "it was made from",
                 path, cf_st_meta(f, "quantization"));
        rc = CF_ERR_INVALID;
        goto done;
    }
    if ((rc = cf_config_check_family(&was, &m->cfg, path)) < 0) goto done;
    if ((rc = cf_checkpoint_check_tensors(f, path, m->params, NULL)) < 0) goto done;
    host = malloc(n * sizeof(float));
    if (!host) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &m->params[i];
        if (!p->present) continue;
        memcpy(host + p->offset, cf_st_find(f, p->name)->data, p->size * sizeof(float));
        if ((rc = cf_checkpoint_check_values(path, p->name, host + p->offset, p->size, 0)) < 0)
            goto done;
    }
    if ((rc = cf_model_set_params(m, host)) < 0) goto done;
    if (with_opt && m->have_grads) {
        const cf_st_tensor *tm = cf_st_find(f, "optimizer.adamw_m");
        const cf_st_tensor *tv = cf_st_find(f, "optimizer.adamw_v");
        if (!tm || !tv) {
            CF_ERROR("checkpoint %s: has no optimizer state, so training cannot resume exactly; "
                     "start a new run from it instead",
                     path);
            rc = CF_ERR_FORMAT;
            goto done;
        }
        const cf_st_tensor *opt[2] = {tm, tv};
        for (int k = 0; k < 2; k++) {
            const cf_st_tensor *t = opt[k];
            if (strcmp(t->dtype, "F32") != 0 || t->ndim != 1 || t->shape[0] != (int64_t)n) {
                char got[96];
                shape_str(got, sizeof got, t->ndim, t->shape);
                CF_ERROR("checkpoint %s: tensor '%s' is %s %s but the model needs (%zu) F32 (one "
                         "value per parameter); the file is damaged or from another model",
                         path, t->name, got, t->dtype, n);
                rc = CF_ERR_FORMAT;
                goto done;
            }
            /* m finite; v finite and >= 0 (a negative v makes sqrt(v) NaN at the next step) */
            if ((rc = cf_checkpoint_check_values(path, t->name, t->data, n, k == 1)) < 0)
                goto done;
        }
        if ((rc = cf_model_set_opt_state(m, tm->data, tv->data)) < 0) goto done;
        if ((rc = load_muon_state(f, path, &was, m)) < 0) goto done;
        int os = 0;
        if ((rc = parse_step(f, path, "opt_step", &os)) < 0) goto done;
        m->opt_step = os;
    }
done:
    free(host);
    cf_st_close(f);
    return rc;
}

int cf_checkpoint_resolve(const char *p, char *out, size_t out_len) {
    struct stat sb;
    if (stat(p, &sb) != 0) {
        CF_ERROR("checkpoint %s: no such file or directory", p);
        return CF_ERR_NOT_FOUND;
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(out, out_len, "%s", p);
        return CF_OK;
    }
    DIR *d = opendir(p);
    if (!d) {
        CF_ERROR("checkpoint %s: cannot read the directory", p);
        return CF_ERR_IO;
    }
    long best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        long s;
        char tail[16];
        if (sscanf(e->d_name, "step_%ld.safetensor%15s", &s, tail) == 2 && strcmp(tail, "s") == 0 &&
            s > best)
            best = s;
    }
    closedir(d);
    if (best < 0) {
        CF_ERROR("checkpoint %s: the directory holds no step_*.safetensors; train with --out %s "
                 "first",
                 p, p);
        return CF_ERR_NOT_FOUND;
    }
    snprintf(out, out_len, "%s/step_%06ld.safetensors", p, best);
    return CF_OK;
}
