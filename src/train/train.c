/* clformer: training loop, evaluation, checkpoint cadence, progress line, JSON step log. */
#define _POSIX_C_SOURCE 200809L
#include "train/train.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backend/backend.h"
#include "backend/verify.h"
#include "bench/bench.h"
#include "data/dataset.h"
#include "dist/dist.h"
#include "model/gpt.h"
#include "model/optim.h"
#include "train/checkpoint.h"
#include "tokenizer/tokenizer.h"

static void fmt_eta(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, n, "--:--");
        return;
    }
    int t = (int)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, n, "%d:%02d", t / 60, t % 60);
}

/* Checkpoints of the run being written: pruning may remove only these, so a run never deletes
 * another run's files (nor its own resume source) because their step numbers are higher. */
typedef struct {
    int lineage_max; /* steps <= this in out_dir are this run's history (the resume source's
                      * directory is out_dir), -1 if none are */
    int *written;    /* steps saved by this invocation, still on disk */
    int n_written, cap;
} run_files;

static int is_written(const run_files *rf, long s) {
    for (int i = 0; i < rf->n_written; i++)
        if (rf->written[i] == s) return 1;
    return 0;
}

static int parse_step_name(const char *name, long *s) {
    char tail[16];
    return sscanf(name, "step_%ld.safetensor%15s", s, tail) == 2 && strcmp(tail, "s") == 0;
}

/* Removes this run's step_*.safetensors older than its newest `keep` in dir. */
static void prune_checkpoints(const char *dir, int keep, run_files *rf) {
    if (keep <= 0) return;
    DIR *d = opendir(dir);
    if (!d) return;
    long steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        long s;
        if (parse_step_name(e->d_name, &s) && (s <= rf->lineage_max || is_written(rf, s)))
            steps[n++] = s;
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        int newer = 0;
        for (int j = 0; j < n; j++) newer += steps[j] > steps[i];
        if (newer >= keep) {
            char p[CF_PATH_MAX + 64];
            snprintf(p, sizeof p, "%s/step_%06ld.safetensors", dir, steps[i]);
            unlink(p);
            for (int k = 0; k < rf->n_written; k++)
                if (rf->written[k] == steps[i]) rf->written[k--] = rf->written[--rf->n_written];
        }
    }
}

static int save(cf_train_opts *o, cf_model *m, cf_dataset *ds, cf_train_state *st,
                run_files *rf) {
    cf_dataset_get_state(ds, &st->data);
    char path[CF_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/step_%06d.safetensors", o->out_dir, st->step);
    const size_t plen = strlen(path);
    if (plen >= sizeof o->last_checkpoint) {
        CF_ERROR("--out %s: checkpoint path is longer than %zu bytes; use a shorter directory",
                 o->out_dir, sizeof o->last_checkpoint - 1);
        return CF_ERR_INVALID;
    }
    if (rf->n_written == rf->cap) {
        int cap = rf->cap ? 2 * rf->cap : 16;
        int *w = realloc(rf->written, sizeof *w * (size_t)cap);
        if (!w) return CF_ERR_NOMEM;
        rf->written = w;
        rf->cap = cap;
    }
    double t0 = cf_time_now();
    CF_TRY(cf_checkpoint_save(path, m, st, 1));
    memcpy(o->last_checkpoint, path, plen + 1);
    if (!is_written(rf, st->step)) rf->written[rf->n_written++] = st->step;
    prune_checkpoints(o->out_dir, o->keep_checkpoints, rf);
    if (o->verbose) CF_INFO("saved %s (%.2f s)", path, cf_time_now() - t0);
    return CF_OK;
}

/* The end of a run that could not save: name what survives. */
static void report_last_good(const cf_train_opts *o, int step) {
    if (cf_dist_rank() != 0) return; /* rank 0 writes the checkpoints */
    if (o->last_checkpoint[0])
        CF_ERROR("training stopped at step %d; the last good checkpoint is %s", step,
                 o->last_checkpoint);
    else
        CF_ERROR("training stopped at step %d; no checkpoint of this run was saved", step);
}

/* ---- the output directory: name, lock, space, leftovers ---------------------------------- */

#define CF_LOCK_NAME "clformer.lock"

static int check_out_name(const char *dir) {
    /* room for "/step_NNNNNN.safetensors.<pid>.tmp" under CF_PATH_MAX */
    const size_t max = CF_PATH_MAX - 64;
    if (!dir || !dir[0]) {
        CF_ERROR("--out is empty; give a directory for the checkpoints (default runs/<config "
                 "name>)");
        return CF_ERR_INVALID;
    }
    if (strlen(dir) > max) {
        CF_ERROR("--out is %zu characters long; checkpoint paths must stay under %d bytes, so use "
                 "a directory name of at most %zu characters",
                 strlen(dir), CF_PATH_MAX, max);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}

/* Advisory lock (fcntl) on DIR/clformer.lock, which holds the owner's PID. The kernel drops the
 * lock when its process dies, so a lock file left by a killed run does not block. */
static int lock_out_dir(const char *dir, int *out_fd) {
    char p[CF_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/" CF_LOCK_NAME, dir);
    for (int attempt = 0; attempt < 100; attempt++) {
        int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            CF_ERROR("--out %s: cannot create %s: %s; choose a writable directory", dir, p,
                     strerror(errno));
            return CF_ERR_IO;
        }
        struct flock fl;
        memset(&fl, 0, sizeof fl);
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        if (fcntl(fd, F_SETLK, &fl) != 0) {
            const int e = errno;
            if (e == EACCES || e == EAGAIN) {
                long pid = 0;
                struct flock q;
                memset(&q, 0, sizeof q);
                q.l_type = F_WRLCK;
                q.l_whence = SEEK_SET;
                if (fcntl(fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK) pid = (long)q.l_pid;
                if (pid <= 0) {
                    char buf[32] = {0};
                    if (pread(fd, buf, sizeof buf - 1, 0) > 0) pid = strtol(buf, NULL, 10);
                }
                close(fd);
                CF_ERROR("--out %s: another training run (PID %ld) is writing there (lock %s); "
                         "wait for it to finish or choose another --out",
                         dir, pid, p);
                return CF_ERR_INVALID;
            }
            close(fd);
            CF_ERROR("--out %s: cannot lock %s: %s", dir, p, strerror(e));
            return CF_ERR_IO;
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(p, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino) {
            char buf[32];
            const int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
            if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
                CF_ERROR("--out %s: cannot write %s: %s; choose a writable directory with free "
                         "space",
                         dir, p, strerror(errno));
                close(fd);
                unlink(p);
                return CF_ERR_IO;
            }
            *out_fd = fd;
            return CF_OK;
        }
        close(fd); /* the owner removed the file between our open and lock: take the new one */
    }
    CF_ERROR("--out %s: cannot take the lock %s (it keeps being replaced)", dir, p);
    return CF_ERR_IO;
}

static void unlock_out_dir(const char *dir, int fd) {
    if (fd < 0) return;
    char p[CF_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/" CF_LOCK_NAME, dir);
    unlink(p); /* while still locked: a waiter that opened this file sees it replaced and retries */
    close(fd);
}

/* Free space in dir against one checkpoint of m (a save writes a whole temp file first). */
static int check_space(const char *dir, const cf_model *m, int keep) {
    struct statvfs v;
    /* unknown (or a filesystem that reports no sizes): the saves will tell */
    if (statvfs(dir, &v) != 0 || v.f_blocks == 0) return CF_OK;
    const double free_b = (double)v.f_bavail * (double)v.f_frsize;
    const double need = (double)m->num_params * sizeof(float) * (m->have_grads ? 3.0 : 1.0) +
                        (double)(m->muon ? m->muon->n : 0) * sizeof(float) +
                        65536.0; /* weights, AdamW m and v, Muon momentum, header */
    if (free_b < need) {
        CF_ERROR("--out %s: %.1f MiB free, but one checkpoint of this model needs %.1f MiB; free "
                 "disk space or choose another --out",
                 dir, free_b / 1048576.0, need / 1048576.0);
        return CF_ERR_IO;
    }
    if (free_b < need * (keep + 1))
        CF_WARN("--out %s: %.1f MiB free holds fewer than the %d checkpoints of %.1f MiB kept "
                "(plus one being written); later saves may fail",
                dir, free_b / 1048576.0, keep, need / 1048576.0);
    return CF_OK;
}

/* Removes step_*.safetensors.<pid>.tmp left by a save that was killed (the lock is held, so no
 * other run is writing them), and warns about checkpoints newer than this run's start. */
static void tidy_out_dir(const char *dir, int start_step) {
    DIR *d = opendir(dir);
    if (!d) return;
    long newest_other = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        long s;
        if (parse_step_name(n, &s)) {
            if (s > start_step && s > newest_other) newest_other = s;
            continue;
        }
        const char *q = strstr(n, ".safetensors.");
        const size_t nl = strlen(n);
        if (strncmp(n, "step_", 5) != 0 || !q || nl < 5 || strcmp(n + nl - 4, ".tmp") != 0)
            continue;
        const char *dg = q + strlen(".safetensors.");
        if (dg >= n + nl - 4) continue;
        int digits = 1;
        for (const char *c = dg; c < n + nl - 4; c++) digits &= *c >= '0' && *c <= '9';
        if (!digits) continue;
        char full[CF_PATH_MAX + 300];
        snprintf(full, sizeof full, "%s/%s", dir, n);
        if (unlink(full) == 0) CF_INFO("removed %s, left by an interrupted save", full);
    }
    closedir(d);
    if (newest_other >= 0)
        CF_WARN("--out %s holds checkpoints of another run past step %d (newest step_%06ld); "
                "they are kept, but `--resume %s` picks the highest step, so resume this run "
                "with its checkpoint file",
                dir, start_step, newest_other, dir);
}

/* ---- resume: what may change -------------------------------------------------------------- */

/* Config keys that may differ on --resume (one line names each change); any other difference
 * changes the model (shapes, architecture) and is refused. batch_size is here because the saved
 * data position counts sequences, not batches: a new batch size reads on from the same window. */
static const struct {
    const char *key, *note;
} RUNTIME_KEYS[] = {
    {"steps", "the learning-rate schedule follows the new value"},
    {"learning_rate", ""},
    {"min_lr_ratio", ""},
    {"warmup_steps", ""},
    {"weight_decay", ""},
    {"grad_clip", ""},
    {"beta1", ""},
    {"beta2", ""},
    {"eps", ""},
    {"muon_lr", ""},
    {"muon_momentum", ""},
    {"lr_schedule", "the learning rates follow the new schedule from the resumed step"},
    {"decay_fraction", ""},
    {"batch_size", "tokens per step change; the data position counts sequences, so none are "
                   "skipped or repeated, but the run is no longer identical to an uninterrupted one"},
    {"grad_accum_steps", "tokens per step change; the run is no longer identical to an "
                         "uninterrupted one"},
    {"precision", "the checkpoint holds fp32 weights; the arithmetic changes from here on"},
    {"half_activations", "which activations bf16/fp16 stores half; the results agree to rounding"},
    {"loss_scale", "the first scale of a run; a resumed fp16 run goes on with the checkpoint's "
                   "scale"},
    {"loss_scale_window", ""},
    {"eval_interval", ""},
    {"eval_batches", ""},
    {"checkpoint_interval", ""},
    {"log_interval", ""},
    {"seed", "no effect: the weights come from the checkpoint and the data order keeps the "
             "checkpoint's seed"},
    {"val_fraction", "the train/validation split changes; the saved data position is applied to "
                     "the new split"},
    {"data", "the saved data position is applied to the new data"},
    {"tokenizer", "same tokenizer contents (hash), another path"},
    {"name", ""},
    {"recompute", "what the backward recomputes; the results are the same"},
    {"head_chunk", "rows per LM-head chunk; the loss and gradients agree to rounding"},
    {"attention", "the attention path; the results agree to rounding"},
    /* what each token sees, not what the model holds: a run may widen its window as it trains */
    {"attention_window", "the weights carry over; each token sees another span of keys from here "
                         "on"},
    {"doc_mask", "the weights carry over; attention across document boundaries changes from "
                 "here on"},
};

static const char *runtime_note(const char *key) {
    for (size_t i = 0; i < sizeof RUNTIME_KEYS / sizeof RUNTIME_KEYS[0]; i++)
        if (strcmp(RUNTIME_KEYS[i].key, key) == 0) return RUNTIME_KEYS[i].note;
    return NULL;
}

static int check_resume_config(const char *ckpt, const cf_config *now, int quiet) {
    cf_config was;
    cf_train_state st;
    CF_TRY(cf_checkpoint_read_config(ckpt, &was, &st));
    uint64_t h = 0;
    CF_TRY(cf_tokenizer_hash_of(now->tokenizer, &h));
    if (st.tokenizer_hash != 0 && h != st.tokenizer_hash) {
        CF_ERROR("--resume %s: the checkpoint was trained with tokenizer %016" PRIx64 " (%s) but "
                 "%s is %016" PRIx64 "; a model cannot change its tokenizer: use the original "
                 "tokenizer file or start a new run",
                 ckpt, st.tokenizer_hash, was.tokenizer, now->tokenizer, h);
        return CF_ERR_INVALID;
    }
    /* the model family first, with its own message (num_kv_heads compared by its effective value) */
    CF_TRY(cf_config_check_family(&was, now, ckpt));
    /* the optimizer's state is of one kind: AdamW moments, or Muon momentum for the matrices */
    if (was.optimizer != now->optimizer) {
        static const char *const names[] = {"adamw", "muon"};
        const char *a = names[was.optimizer == CF_OPTIM_MUON],
                   *b = names[now->optimizer == CF_OPTIM_MUON];
        CF_ERROR("--resume %s: the checkpoint was trained with optimizer %s but the config says "
                 "optimizer %s; the optimizer state does not carry over: resume with "
                 "optimizer=%s, or start a new run without --resume",
                 ckpt, a, b, a);
        return CF_ERR_INVALID;
    }
    char *ja = cf_config_to_json(&was), *jb = cf_config_to_json(now);
    cJSON *a = ja ? cJSON_Parse(ja) : NULL, *b = jb ? cJSON_Parse(jb) : NULL;
    free(ja);
    free(jb);
    int rc = a && b ? CF_OK : CF_ERR_NOMEM;
    char shape[1024] = "";
    size_t so = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, b) {
        if (rc < 0) break;
        const cJSON *old = cJSON_GetObjectItemCaseSensitive(a, it->string);
        char *vb = cJSON_PrintUnformatted(it), *va = old ? cJSON_PrintUnformatted(old) : NULL;
        /* num_kv_heads 0 means num_heads: cf_config_check_family compared the effective values */
        const int same_kv = strcmp(it->string, "num_kv_heads") == 0;
        if (vb && !same_kv && (!va || strcmp(va, vb) != 0)) {
            const char *note = runtime_note(it->string);
            if (!note) {
                if (so < sizeof shape)
                    so += (size_t)snprintf(shape + so, sizeof shape - so, "%s%s %s -> %s",
                                           so ? ", " : "", it->string, va ? va : "(none)", vb);
            } else if (!quiet) {
                CF_INFO("resume: %s changed from %s to %s%s%s%s", it->string, va ? va : "(none)",
                        vb, note[0] ? " (" : "", note, note[0] ? ")" : "");
            }
        }
        if (!vb) rc = CF_ERR_NOMEM;
        cJSON_free(va);
        cJSON_free(vb);
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    if (rc == CF_OK && shape[0]) {
        CF_ERROR("--resume %s: the model's shape cannot change on resume (%s); use the "
                 "checkpoint's values or start a new run without --resume",
                 ckpt, shape);
        rc = CF_ERR_INVALID;
    }
    return rc;
}

/* On resume, drop --log records past the resumed step (written after the checkpoint by the run
 * that was stopped) and a partial last line, so each step appears once. */
static int trim_log(const char *path, int step) {
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return CF_OK; /* new file or a device */
    char *data = NULL;
    size_t len = 0;
    CF_TRY(cf_read_file(path, &data, &len));
    size_t keep = 0;
    int dropped = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(data + i, '\n', len - i);
        if (!nl) { /* a record cut by a crash */
            dropped++;
            break;
        }
        int s = 0;
        if (sscanf(data + i, "{\"step\": %d", &s) == 1 && s > step) {
            for (const char *c = data + i; c < data + len; c++) dropped += *c == '\n';
            break;
        }
        i = (size_t)(nl - data) + 1;
        keep = i;
    }
    free(data);
    if (keep < len) {
        if (truncate(path, (off_t)keep) != 0) {
            CF_ERROR("--log %s: cannot truncate it to step %d: %s", path, step, strerror(errno));
            return CF_ERR_IO;
        }
        CF_INFO("--log %s: removed %d record%s past step %d, written after the checkpoint", path,
                dropped, dropped == 1 ? "" : "s", step);
    }
    return CF_OK;
}

static int evaluate(cf_model *m, cf_dataset *ds, int batches, int32_t *x, int32_t *y,
                    float *out) {
    const cf_config *c = &m->cfg;
    double sum = 0.0;
    cf_dataset_reset_val(ds);
    for (int i = 0; i < batches; i++) {
        float loss = 0.0f;
        CF_TRY(cf_dataset_next_batch(ds, CF_SPLIT_VAL, c->batch_size, c->max_length, x, y));
        CF_TRY(cf_model_forward(m, x, y, c->batch_size, c->max_length, &loss));
        sum += loss;
    }
    *out = (float)(sum / batches);
    return CF_OK;
}

int cf_random_batch_next(void *user, int32_t *x, int32_t *y, int B, int T) {
    cf_random_batch *s = user;
    for (int i = 0; i < B * T; i++) {
        x[i] = (int32_t)(cf_rng_u32(&s->rng) % (uint32_t)s->V);
        y[i] = (int32_t)(cf_rng_u32(&s->rng) % (uint32_t)s->V);
    }
    return CF_OK;
}

int cf_train_step(cf_model *m, int step, cf_batch_fn next, void *user, int32_t *x, int32_t *y,
                  cf_step_info *out) {
    return cf_train_step_scaled(m, step, NULL, next, user, x, y, out);
}

int cf_train_step_scaled(cf_model *m, int step, cf_loss_scaler *ls, cf_batch_fn next, void *user,
                         int32_t *x, int32_t *y, cf_step_info *out) {
    const cf_config *c = &m->cfg;
    const int B = c->batch_size, T = c->max_length, accum = c->grad_accum_steps;
    if (accum < 1 || accum > 60) {
        CF_ERROR("grad_accum_steps (%d) must be in [1, 60]", accum);
        return CF_ERR_INVALID;
    }
    /* data-parallel (m->dist): each rank's loss is scaled by 1/(accum * ranks) and the last
     * micro-batch's backward sums the gradients over the ranks (src/dist) */
    const int world = m->dist ? cf_dist_size() : 1;
    /* loss scaling: the loss gradient times S (the losses read back are not scaled) */
    const float dloss = ls ? ls->scale / (float)(accum * world) : 1.0f / (float)(accum * world);
    CF_TRY(cf_model_zero_grad(m));
    for (int k = 0; k < accum; k++) {
        CF_TRY(next(user, x, y, B, T));
        if (k == accum - 1) CF_TRY(cf_dist_grads_begin(m->dist));
        CF_TRY(cf_model_forward_backward(m, x, y, B, T, dloss, k));
    }
    CF_TRY(cf_dist_grads_end(m->dist));
    float norm = 0.0f;
    CF_TRY(cf_model_grad_norm(m, &norm));
#ifdef CF_FAULT_INJECTION
    if (ls && cf_fault_grad_inf_hit()) norm = INFINITY; /* test switch: overflowed gradients */
#endif
    /* the norm of the scaled gradients: inf or nan when any of them is (or their squares
     * overflow, which only a far too large scale gives); unscaled it is the gradients' norm */
    const int overflow = ls && !isfinite(norm);
    if (ls) norm /= ls->scale;
    float scale = 1.0f;
    if (c->grad_clip > 0.0f && norm > c->grad_clip) scale = c->grad_clip / (norm + 1e-6f);
    if (ls) scale /= ls->scale; /* unscale: the optimizer multiplies the gradients by this */
    float lr = 0.0f, muon_lr = 0.0f;
    if (overflow) {
        /* skipped: no update, no optimizer step; the rates it would have used are reported */
        lr = cf_lr_schedule(c, step);
        if (c->optimizer == CF_OPTIM_MUON) muon_lr = cf_lr_at(c, c->muon_lr, step);
        ls->skipped++;
        ls->good_steps = 0;
        if (ls->scale <= 1.0f) {
            CF_ERROR("step %d: the gradients hold inf or nan even at loss scale 1 (%" PRIu64
                     " steps skipped); the model has diverged: lower learning_rate (now %g) or "
                     "train in precision bf16 or fp32",
                     step + 1, ls->skipped, c->learning_rate);
            return CF_ERR_INVALID;
        }
        ls->scale = ls->scale * 0.5f < 1.0f ? 1.0f : ls->scale * 0.5f;
    } else {
        CF_TRY(cf_model_optimizer_step(m, step, scale, &lr, &muon_lr));
        if (ls && ++ls->good_steps >= ls->window) {
            if (ls->scale * 2.0f <= CF_LOSS_SCALE_MAX) ls->scale *= 2.0f;
            ls->good_steps = 0;
        }
    }
    float scal[64];
    CF_TRY(cf_model_read_scalars(m, scal, accum));
    double lsum = 0.0;
    for (int k = 0; k < accum; k++) lsum += scal[k];
    if (m->dist) CF_TRY(cf_dist_sum(&lsum, 1));
    /* scalars hold the sum over B*T of per-token losses for each micro-batch */
    out->loss = (float)(lsum / ((double)B * T * accum * world));
    out->grad_norm = norm;
    out->lr = lr;
    out->muon_lr = muon_lr;
    out->skipped = overflow;
    out->loss_scale = ls ? ls->scale : 0.0f;
    return CF_OK;
}

/* The --log record of --target-loss: reached or not, the wall time and tokens used. */
static void write_target_record(cf_train_opts *o, FILE *logf, int *log_failed, int step,
                                float val) {
    if (!logf || *log_failed) return;
    char v[32];
    if (isfinite(val))
        snprintf(v, sizeof v, "%.6f", val);
    else
        snprintf(v, sizeof v, "null");
    errno = 0;
    int w;
    if (o->target_reached)
        w = fprintf(logf,
                    "{\"step\": %d, \"target_loss\": %.6g, \"target_reached\": true, "
                    "\"val_loss\": %s, \"wall_time_s\": %.3f, \"tokens\": %" PRIu64 "}\n",
                    step, (double)o->target_loss, v, o->target_wall_s, o->target_tokens);
    else
        w = fprintf(logf,
                    "{\"step\": %d, \"target_loss\": %.6g, \"target_reached\": false, "
                    "\"val_loss\": %s}\n",
                    step, (double)o->target_loss, v);
    if (w < 0 || fflush(logf) != 0 || ferror(logf)) {
        *log_failed = 1;
        CF_WARN("--log %s: writing the target record failed (%s)", o->log_path,
                errno ? strerror(errno) : "write error");
    }
}
/* The training data of one rank: of every `world` consecutive micro-batches of the data order, rank
 * r reads the r-th, so a global batch holds the same windows for any number of ranks (2 ranks x
 * batch b read what 1 process with grad_accum_steps 2 x batch b reads) and the cursor every rank
 * keeps (and rank 0 saves) is the single-process one. */
typedef struct {
    cf_dataset *ds;
    int rank, world;
} train_source;

static int next_train_batch(void *user, int32_t *x, int32_t *y, int B, int T) {
    train_source *s = user;
    CF_TRY(cf_dataset_skip(s->ds, (size_t)s->rank * (size_t)B));
    CF_TRY(cf_dataset_next_batch(s->ds, CF_SPLIT_TRAIN, B, T, x, y));
    return cf_dataset_skip(s->ds, (size_t)(s->world - 1 - s->rank) * (size_t)B);
}

/* Prints the --profile table and writes the --trace file for the profiled steps. */
static int finish_profile(cf_train_opts *o, cf_backend *be, const cf_trace_span *spans, int n,
                          const cf_dist_grads *dg) {
    if (o->profile) {
        fflush(stderr);
        fprintf(stderr, "\n");
        cf_prof_print(stderr, be, n);
        cf_dist_stats ds;
        cf_dist_grads_stats(dg, &ds);
        cf_dist_print_stats(stderr, &ds, cf_dist_size());
    }
    if (o->trace_path) {
        char name[256];
        snprintf(name, sizeof name, "clformer train %s", o->cfg.name[0] ? o->cfg.name : o->origin);
        CF_TRY(cf_prof_write_trace(o->trace_path, be, name, spans, n));
        if (!o->quiet) CF_INFO("trace of %d steps written to %s (open in ui.perfetto.dev)", n,
                               o->trace_path);
    }
    return CF_OK;
}

/* --target-loss is checked at each periodic evaluation: it needs a validation split and
 * eval_interval > 0 (the data's own split is checked once the data is open). */
static int check_target(const cf_train_opts *o) {
    const cf_config *c = &o->cfg;
    if (!(o->target_loss > 0.0f) || !isfinite(o->target_loss)) {
        CF_ERROR("--target-loss %g: the target must be a positive validation loss in nats/token "
                 "(e.g. --target-loss 4.5)",
                 (double)o->target_loss);
        return CF_ERR_INVALID;
    }
    if (c->val_fraction <= 0.0f) {
        CF_ERROR("--target-loss %g needs validation data, but val_fraction is 0 (%s); set "
                 "val_fraction > 0 (e.g. val_fraction=0.05)",
                 (double)o->target_loss, o->origin);
        return CF_ERR_INVALID;
    }
    if (c->eval_interval <= 0) {
        CF_ERROR("--target-loss %g is checked at each validation, but eval_interval is 0 (%s); "
                 "set eval_interval > 0 (e.g. eval_interval=50)",
                 (double)o->target_loss, o->origin);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}

int cf_train_run(cf_train_opts *o) {
    cf_config *c = &o->cfg;
    int rc;
    cf_backend *be = NULL;
    cf_dataset *ds = NULL;
    cf_model *m = NULL;
    FILE *logf = NULL;
    int32_t *x = NULL, *y = NULL;
    cf_trace_span *spans = NULL;
    cf_dist_grads *dg = NULL;
    int lock_fd = -1, log_failed = 0, save_failures = 0;
    run_files rf = {-1, NULL, 0, 0};
    cf_train_state st;
    memset(&st, 0, sizeof st);
    st.best_val_loss = INFINITY;
    o->final_val_loss = NAN;
    o->final_loss = NAN;
    o->tokens_per_s = 0.0;
    if (o->keep_checkpoints == 0) o->keep_checkpoints = 2;

    o->last_checkpoint[0] = 0;
    o->target_reached = 0;
    if (o->has_target && (rc = check_target(o)) < 0) return rc;
    /* data-parallel (mpirun): rank 0 prints, logs, profiles and writes checkpoints */
    const int rank = cf_dist_rank(), world = cf_dist_size();
    if (rank != 0) {
        o->quiet = 1;
        o->verbose = 0;
        o->log_path = NULL;
        o->profile = 0;
        o->trace_path = NULL;
    }
    if ((rc = cf_config_validate(c, o->origin)) < 0) return rc;
    if ((rc = cf_dist_check_config(c, o->origin)) < 0) return rc;
    if ((rc = check_out_name(o->out_dir)) < 0) return rc;
    char resume_path[CF_PATH_MAX + 64] = {0};
    if (o->resume) {
        if ((rc = cf_checkpoint_resolve(o->resume, resume_path, sizeof resume_path)) < 0)
            return rc;
        if ((rc = check_resume_config(resume_path, c, o->quiet)) < 0) return rc;
    }
    int32_t eot = -1;
    if (c->doc_mask) { /* documents are cut at the tokenizer's end-of-text token */
        if ((rc = cf_data_eot_id(c, &eot)) < 0) return rc;
        if (eot < 0) {
            CF_ERROR("config%s%s: doc_mask: true needs a tokenizer with an <|endoftext|> token, "
                     "and tokenizer '%s' has none; set doc_mask: false, or train one with "
                     "`clformer tokenizer train` and set tokenizer to it",
                     o->origin && *o->origin ? " " : "", o->origin ? o->origin : "", c->tokenizer);
            return CF_ERR_INVALID;
        }
    }
    if ((rc = cf_dataset_open(c, &ds)) < 0) goto done;
    if (o->has_target && cf_dataset_num_tokens(ds, CF_SPLIT_VAL) < (size_t)c->max_length + 1) {
        CF_ERROR("--target-loss %g needs validation data, but data %s has no validation split "
                 "(%zu tokens); set val_fraction > 0, or prepare the shards with --val-fraction",
                 (double)o->target_loss, c->data, cf_dataset_num_tokens(ds, CF_SPLIT_VAL));
        rc = CF_ERR_INVALID;
        goto done;
    }
    char device[256];
    if ((rc = cf_dist_device(o->device, o->backend, rank, cf_dist_local_rank(), world, device,
                             sizeof device)) < 0)
        goto done;
    if ((rc = cf_backend_create_for(device, o->backend, c, &be)) < 0) goto done;
    be->verbose = o->verbose;
    if ((rc = cf_model_create(be, c, c->batch_size, c->max_length, 1, &m)) < 0) goto done;
    if (c->doc_mask && (rc = cf_model_set_doc_eot(m, eot)) < 0) goto done;
    if (m->act_dtype != CF_F32) { /* bf16/fp16: what half_activations saves */
        cf_act_info a[CF_NUM_ACTS];
        size_t ga[CF_NUM_GACTS];
        cf_model_act_layout(c, c->batch_size, c->max_length, a, ga);
        int nh = 0;
        double hb = 0.0, fb = 0.0;
        for (int i = 0; i < CF_NUM_ACTS; i++)
            if (a[i].half) {
                nh++;
                hb += (double)a[i].bytes;
                fb += 4.0 * (double)a[i].size;
            }
        if (nh > 0)
            CF_INFO("precision %s: %d activation tensors kept for the backward are stored in %s: "
                    "%.1f MiB instead of %.1f (half_activations, docs/precision.md)",
                    cf_precision_name(c->precision), nh, cf_dtype_name(m->act_dtype),
                    hb / 1048576.0, fb / 1048576.0);
    }
    if (world > 1) {
        if ((rc = cf_dist_grads_create(m, o->bucket_bytes ? o->bucket_bytes : CF_DIST_BUCKET_BYTES,
                                       (enum cf_dist_comm)o->comm, &dg)) < 0)
            goto done;
        if (cf_log_get_level() >= CF_LOG_INFO)
            CF_INFO("data-parallel rank %d of %d (local rank %d): %s, all-reduce %s", rank, world,
                    cf_dist_local_rank(), cf_be_name(be), cf_dist_grads_comm(dg));
    }
    if (resume_path[0]) {
        if ((rc = cf_checkpoint_load(resume_path, m, &st, 1)) < 0) goto done;
        if ((rc = cf_dataset_set_state(ds, &st.data)) < 0) goto done;
        if (!o->quiet)
            CF_INFO("resumed from %s at step %d (%llu tokens seen)", resume_path, st.step,
                    (unsigned long long)st.tokens_seen);
    } else {
        if ((rc = cf_model_init(m, c->seed)) < 0) goto done;
    }
    if (rank == 0) {
        if ((rc = cf_mkdirs(o->out_dir)) < 0) goto done;
        if ((rc = lock_out_dir(o->out_dir, &lock_fd)) < 0) goto done;
        if ((rc = check_space(o->out_dir, m, o->keep_checkpoints)) < 0) goto done;
        tidy_out_dir(o->out_dir, st.step);
    }
    if (resume_path[0]) {
        /* the resume source and its predecessors in out_dir are this run's history */
        char rdir[CF_PATH_MAX + 64];
        snprintf(rdir, sizeof rdir, "%s", resume_path);
        char *sl = strrchr(rdir, '/');
        if (sl) *sl = 0;
        struct stat a, b;
        if (stat(sl ? (rdir[0] ? rdir : "/") : ".", &a) == 0 && stat(o->out_dir, &b) == 0 &&
            a.st_dev == b.st_dev && a.st_ino == b.st_ino)
            rf.lineage_max = st.step;
        snprintf(o->last_checkpoint, sizeof o->last_checkpoint, "%s", resume_path);
    }
    if (o->log_path) {
        if (resume_path[0] && (rc = trim_log(o->log_path, st.step)) < 0) goto done;
        logf = fopen(o->log_path, resume_path[0] ? "a" : "w");
        if (!logf) {
            CF_ERROR("--log %s: cannot open for writing; check the directory exists", o->log_path);
            rc = CF_ERR_IO;
            goto done;
        }
    }
    const int B = c->batch_size, T = c->max_length, accum = c->grad_accum_steps;
    x = malloc(sizeof(int32_t) * (size_t)B * T);
    y = malloc(sizeof(int32_t) * (size_t)B * T);
    if (!x || !y) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    const double tokens_per_step = (double)B * T * accum * world;
    if (!o->quiet) {
        char ranks[32] = "";
        if (world > 1) snprintf(ranks, sizeof ranks, " x %d ranks", world);
        CF_INFO("clformer %s | device %s | %.2fM parameters | batch %d x %d x %d accum%s | "
                "%d steps | data %zu train / %zu val tokens",
                CF_VERSION_STRING, cf_be_name(be), (double)m->num_params / 1e6, B, T, accum,
                ranks, c->steps, cf_dataset_num_tokens(ds, CF_SPLIT_TRAIN),
                cf_dataset_num_tokens(ds, CF_SPLIT_VAL));
        if (!resume_path[0])
            CF_INFO("unigram entropy of the training data: %.4f nats/token (loss must fall below)",
                    cf_dataset_unigram_entropy(ds));
    }
    const int tty = isatty(fileno(stderr));
    cf_install_sigint_handler();
    const int start_step = st.step;
    const double t_start = cf_time_now(); /* --target-loss's wall time counts from here */
    double t_run0 = 0.0, t_last_print = 0.0;
    int timed_steps = 0, steps_this_run = 0;
    /* --profile / --trace: the steps after the first, profile_steps of them */
    const int want_prof = o->profile || o->trace_path;
    const int prof_steps = o->profile_steps > 0 ? o->profile_steps : 10;
    int prof_done = 0;
    if (want_prof && !(spans = calloc((size_t)prof_steps, sizeof *spans))) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    train_source src = {ds, rank, world};
    /* precision fp16: dynamic loss scaling, continued from the checkpoint's state on resume
     * (config loss_scale sets only the first scale of a run); other precisions scale nothing */
    cf_loss_scaler scaler = {0}, *ls = NULL;
    if (c->precision == CF_PREC_FP16) {
        ls = &scaler;
        scaler.window = c->loss_scale_window;
        if (st.loss_scale > 0.0f) {
            scaler.scale = st.loss_scale;
            scaler.good_steps = st.loss_scale_good;
            scaler.skipped = st.skipped_steps;
        } else {
            scaler.scale = c->loss_scale > 0.0f ? c->loss_scale : CF_LOSS_SCALE_DEFAULT;
        }
        if (!o->quiet && o->verbose)
            CF_INFO("loss scaling: scale %g, doubled after %d good steps (at most %g), %" PRIu64
                    " steps skipped so far",
                    (double)scaler.scale, scaler.window, (double)CF_LOSS_SCALE_MAX,
                    scaler.skipped);
    } else {
        st.loss_scale = 0.0f; /* a resumed fp16 checkpoint's scale does not carry over */
        st.loss_scale_good = 0;
        st.skipped_steps = 0;
    }
    for (int step = st.step; step < c->steps; step++) {
        double t0 = cf_time_now();
        const int prof_on = want_prof && steps_this_run >= 1 && prof_done < prof_steps;
        if (prof_on && prof_done == 0) cf_dist_grads_reset_stats(dg);
        if (prof_on && !be->prof.enabled) cf_prof_enable(be, 1);
        const double span0 = prof_on ? cf_prof_now_us(be) : 0.0;
        const uint64_t allocs0 = be->stats.allocs, h2d0 = be->stats.h2d_bytes,
                       d2h0 = be->stats.d2h_bytes;
        cf_step_info si;
        if ((rc = cf_train_step_scaled(m, step, ls, next_train_batch, &src, x, y, &si)) < 0) {
            /* the gradients overflowed at loss scale 1: a diverged model, as a nan loss below */
            if (rc == CF_ERR_INVALID && ls && scaler.scale <= 1.0f) report_last_good(o, step);
            goto done;
        }
        const float loss = si.loss, norm = si.grad_norm, lr = si.lr;
        const uint64_t step_allocs = be->stats.allocs - allocs0;
        const uint64_t step_h2d = be->stats.h2d_bytes - h2d0, step_d2h = be->stats.d2h_bytes - d2h0;
        if (prof_on) {
            spans[prof_done].start_us = span0;
            spans[prof_done].dur_us = cf_prof_now_us(be) - span0;
            if (++prof_done == prof_steps) {
                if ((rc = finish_profile(o, be, spans, prof_done, dg)) < 0) goto done;
                cf_prof_enable(be, 0);
            }
        }
        if (o->verbose && steps_this_run >= 1 && step_allocs > 0)
            CF_DEBUG("step %d made %llu device allocations (a step after the first should make "
                     "none)",
                     step + 1, (unsigned long long)step_allocs);
        const double t1 = cf_time_now();
        if (!isfinite(loss)) {
            CF_ERROR("step %d: loss is %f; lower learning_rate (now %g) or check the data", step + 1,
                     loss, c->learning_rate);
            report_last_good(o, step);
            rc = CF_ERR_INVALID;
            goto done;
        }
        st.step = step + 1;
        st.tokens_seen += (uint64_t)tokens_per_step;
        st.last_loss = loss;
        if (ls) {
            st.loss_scale = scaler.scale;
            st.loss_scale_good = scaler.good_steps;
            st.skipped_steps = scaler.skipped;
        }
        o->final_loss = loss;
        steps_this_run++;
        /* the first step of a run includes warm-up costs: time from the second on */
        if (steps_this_run == 1)
            t_run0 = t1;
        else
            timed_steps++;
        const double ms = (t1 - t0) * 1e3;
        const double tps = timed_steps > 0 ? timed_steps * tokens_per_step / (t1 - t_run0)
                                           : tokens_per_step / (t1 - t0);
        o->tokens_per_s = tps;
        if (logf && !log_failed) {
            errno = 0;
            char mlr[48] = ""; /* optimizer muon: its learning rate too */
            if (c->optimizer == CF_OPTIM_MUON)
                snprintf(mlr, sizeof mlr, ", \"muon_lr\": %.6g", si.muon_lr);
            char gn[32] = "null"; /* a skipped step's norm is inf or nan: JSON has neither */
            if (isfinite(norm)) snprintf(gn, sizeof gn, "%.6f", norm);
            char lsc[128] = ""; /* loss scaling: the scale after this step, the count, the flag */
            if (ls)
                snprintf(lsc, sizeof lsc,
                         ", \"loss_scale\": %.9g, \"skipped_steps\": %" PRIu64
                         ", \"skipped\": %s",
                         (double)scaler.scale, scaler.skipped, si.skipped ? "true" : "false");
            const int w = fprintf(logf,
                                  "{\"step\": %d, \"loss\": %.6f, \"lr\": %.6g%s, \"grad_norm\": "
                                  "%s, \"tokens_per_s\": %.1f, \"ms_per_step\": %.2f%s}\n",
                                  st.step, loss, lr, mlr, gn, tps, ms, lsc);
            if (w < 0 || fflush(logf) != 0 || ferror(logf)) {
                log_failed = 1; /* said once; the training matters more than its log */
                CF_WARN("--log %s: writing step %d failed (%s); training goes on without the log",
                        o->log_path, st.step, errno ? strerror(errno) : "write error");
            }
        }
        float val = NAN;
        const int last = st.step == c->steps;
        /* evaluation and checkpoints stay out of a profile of training steps */
        const int prof_paused = be->prof.enabled;
        be->prof.enabled = 0;
        if (rank == 0 && c->eval_interval > 0 && (st.step % c->eval_interval == 0 || last)) {
            if ((rc = evaluate(m, ds, c->eval_batches, x, y, &val)) < 0) goto done;
            o->final_val_loss = val;
            if (val < st.best_val_loss) st.best_val_loss = val;
            /* the evaluation's record in the --log file (the step's own record came first) */
            if (logf && !log_failed) {
                errno = 0;
                const int w = fprintf(logf, "{\"step\": %d, \"val_loss\": %.6f}\n", st.step, val);
                if (w < 0 || fflush(logf) != 0 || ferror(logf)) {
                    log_failed = 1;
                    CF_WARN("--log %s: writing the evaluation of step %d failed (%s); training goes "
                            "on without the log",
                            o->log_path, st.step, errno ? strerror(errno) : "write error");
                }
            }
            if (o->has_target && val <= o->target_loss) {
                o->target_reached = 1;
                o->target_wall_s = cf_time_now() - t_start;
                o->target_tokens = st.tokens_seen;
            }
        }
        if (!o->quiet) {
            char eta[32];
            fmt_eta(eta, sizeof eta, (c->steps - st.step) * tokens_per_step / tps);
            char line[448], allocs[96] = "", lsc[80] = "";
            if (ls) /* the scale the next step uses, steps skipped so far (this one: "skip") */
                snprintf(lsc, sizeof lsc, " | scale %g skipped %" PRIu64 "%s",
                         (double)scaler.scale, scaler.skipped, si.skipped ? " (skip)" : "");
            if (o->verbose) /* bus traffic of the step itself (eval and checkpoints excluded) */
                snprintf(allocs, sizeof allocs, " | h2d %llu B d2h %llu B | allocs %llu",
                         (unsigned long long)step_h2d, (unsigned long long)step_d2h,
                         (unsigned long long)step_allocs);
            snprintf(line, sizeof line,
                     "step %5d/%d | loss %.4f | lr %.2e | norm %6.3f%s | %8.0f tok/s | %7.1f "
                     "ms/step%s | ETA %s",
                     st.step, c->steps, loss, lr, norm, lsc, tps, ms, allocs, eta);
            const int print_line = !tty && (st.step % c->log_interval == 0 || last ||
                                            st.step == start_step + 1);
            if (tty && (t1 - t_last_print > 0.1 || last || !isnan(val))) {
                fprintf(stderr, "\r\033[K%s", line);
                t_last_print = t1;
            } else if (print_line) {
                fprintf(stderr, "%s\n", line);
            }
            if (!isnan(val)) {
                if (tty) fprintf(stderr, "\n");
                fprintf(stderr, "step %5d | val loss %.4f\n", st.step, val);
            }
        }
        const int ckpt = c->checkpoint_interval > 0 && st.step % c->checkpoint_interval == 0;
        /* only rank 0 evaluates, and a signal may reach one rank first: one collective makes
         * both flags global, so every rank stops at the same step */
        int flags[2] = {o->target_reached, cf_interrupted()};
        cf_dist_any_n(flags, 2);
        const int stop = (o->stop_after > 0 && steps_this_run >= o->stop_after) || flags[0];
        if (flags[1]) {
            if (tty && !o->quiet) fprintf(stderr, "\n");
            rc = CF_ERR_INTERRUPTED;
            if (rank != 0) goto done;
            CF_WARN("interrupted at step %d: saving a checkpoint", st.step);
            if ((rc = save(o, m, ds, &st, &rf)) < 0) {
                report_last_good(o, st.step);
                goto done;
            }
            CF_INFO("saved %s; resume with --resume %s", o->last_checkpoint, o->out_dir);
            /* the log says why the run ended: under mpirun the message above may never reach
             * the terminal (mpirun stops forwarding output once Ctrl-C starts its teardown) */
            if (logf && !log_failed) {
                cJSON *r = cJSON_CreateObject();
                cJSON_AddNumberToObject(r, "step", st.step);
                cJSON_AddBoolToObject(r, "interrupted", 1);
                cJSON_AddStringToObject(r, "checkpoint", o->last_checkpoint);
                char *text = cJSON_PrintUnformatted(r); /* escapes the path */
                if (!text || fprintf(logf, "%s\n", text) < 0 || fflush(logf) != 0)
                    CF_WARN("--log %s: writing the interruption record failed", o->log_path);
                cJSON_free(text);
                cJSON_Delete(r);
            }
            rc = CF_ERR_INTERRUPTED;
            goto done;
        }
        if (rank == 0 && (ckpt || last || stop)) {
            /* a failed periodic save (full disk, ...) keeps the training state and tries again at
             * the next interval; the last save, a diverged model (CF_ERR_INVALID) or three
             * failures in a row stop the run, naming the last good checkpoint */
            if ((rc = save(o, m, ds, &st, &rf)) < 0) {
                if (rc == CF_ERR_INVALID || last || stop || ++save_failures >= 3) {
                    report_last_good(o, st.step);
                    goto done;
                }
                const int next = (st.step / c->checkpoint_interval + 1) * c->checkpoint_interval;
                CF_WARN("step %d: checkpoint not saved; training goes on and tries again at step "
                        "%d (last good checkpoint: %s)",
                        st.step, next < c->steps ? next : c->steps,
                        o->last_checkpoint[0] ? o->last_checkpoint : "none yet");
                rc = CF_OK;
            } else {
                save_failures = 0;
            }
        }
        be->prof.enabled = prof_paused;
        if (o->target_reached) {
            if (tty && !o->quiet) fprintf(stderr, "\n");
            CF_INFO("target loss %g reached at step %d: val loss %.4f after %.1f s wall time and "
                    "%" PRIu64 " training tokens; checkpoint %s",
                    (double)o->target_loss, st.step, val, o->target_wall_s, o->target_tokens,
                    o->last_checkpoint);
            write_target_record(o, logf, &log_failed, st.step, val);
        }
        if (stop) break;
    }
    if (rank == 0 && o->has_target && !o->target_reached) { /* rank 0 alone evaluates */
        CF_WARN("target loss %g not reached in %d steps (best val loss %.4f); raise steps or the "
                "target",
                (double)o->target_loss, st.step, (double)st.best_val_loss);
        write_target_record(o, logf, &log_failed, st.step, o->final_val_loss);
    }
    if (tty && !o->quiet) fprintf(stderr, "\n");
    /* a run shorter than the profiling window still reports what it profiled */
    if (want_prof && prof_done > 0 && prof_done < prof_steps &&
        (rc = finish_profile(o, be, spans, prof_done, dg)) < 0)
        goto done;
    if (!o->quiet) {
        if (st.step == start_step) {
            CF_INFO("nothing to do: the checkpoint is already at step %d of %d", st.step, c->steps);
        } else {
            char val[48] = "";
            if (!isnan(o->final_val_loss))
                snprintf(val, sizeof val, ", val loss %.4f", o->final_val_loss);
            CF_INFO("done: %d steps, final loss %.4f%s, %.0f tokens/s, peak host memory %.1f "
                    "MiB, device memory %.1f MiB, checkpoint %s",
                    st.step - start_step, o->final_loss, val, o->tokens_per_s,
                    cf_peak_rss_bytes() / 1048576.0,
                    be->stats.peak_bytes_allocated / 1048576.0, o->last_checkpoint);
        }
    }
    rc = CF_OK;
done:
    if (logf) fclose(logf);
    unlock_out_dir(o->out_dir, lock_fd);
    free(rf.written);
    free(spans);
    free(x);
    free(y);
    cf_dist_grads_free(dg);
    cf_model_free(m);
    cf_backend_destroy(be);
    cf_dataset_free(ds);
    return rc;
}
