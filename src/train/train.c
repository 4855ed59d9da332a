/* clformer: training loop, evaluation, checkpoint cadence, progress line, JSON step log. */
#define _POSIX_C_SOURCE 200809L
#include "train/train.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/verify.h"
#include "bench/bench.h"
#include "data/dataset.h"
#include "model/gpt.h"
#include "train/checkpoint.h"

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

/* Removes step_*.safetensors older than the newest `keep` in dir. */
static void prune_checkpoints(const char *dir, int keep) {
    if (keep <= 0) return;
    DIR *d = opendir(dir);
    if (!d) return;
    long steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        long s;
        char tail[16];
        if (sscanf(e->d_name, "step_%ld.safetensor%15s", &s, tail) == 2 && strcmp(tail, "s") == 0)
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
        }
    }
}

static int save(cf_train_opts *o, cf_model *m, cf_dataset *ds, cf_train_state *st) {
    cf_dataset_get_state(ds, &st->data);
    char path[CF_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/step_%06d.safetensors", o->out_dir, st->step);
    const size_t plen = strlen(path);
    if (plen >= sizeof o->last_checkpoint) {
        CF_ERROR("--out %s: checkpoint path is longer than %zu bytes; use a shorter directory",
                 o->out_dir, sizeof o->last_checkpoint - 1);
        return CF_ERR_INVALID;
    }
    double t0 = cf_time_now();
    CF_TRY(cf_checkpoint_save(path, m, st, 1));
    memcpy(o->last_checkpoint, path, plen + 1);
    prune_checkpoints(o->out_dir, o->keep_checkpoints);
    if (o->verbose) CF_INFO("saved %s (%.2f s)", path, cf_time_now() - t0);
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

int cf_train_step(cf_model *m, int step, cf_batch_fn next, void *user, int32_t *x, int32_t *y,
                  cf_step_info *out) {
    const cf_config *c = &m->cfg;
    const int B = c->batch_size, T = c->max_length, accum = c->grad_accum_steps;
    if (accum < 1 || accum > 60) {
        CF_ERROR("grad_accum_steps (%d) must be in [1, 60]", accum);
        return CF_ERR_INVALID;
    }
    CF_TRY(cf_model_zero_grad(m));
    for (int k = 0; k < accum; k++) {
        CF_TRY(next(user, x, y, B, T));
        CF_TRY(cf_model_forward_backward(m, x, y, B, T, 1.0f / (float)accum, k));
    }
    float norm = 0.0f;
    CF_TRY(cf_model_grad_norm(m, &norm));
    float scale = 1.0f;
    if (c->grad_clip > 0.0f && norm > c->grad_clip) scale = c->grad_clip / (norm + 1e-6f);
    const float lr = cf_lr_schedule(c, step);
    CF_TRY(cf_model_adamw(m, lr, scale));
    float scal[64];
    CF_TRY(cf_model_read_scalars(m, scal, accum));
    double lsum = 0.0;
    for (int k = 0; k < accum; k++) lsum += scal[k];
    /* scalars hold the sum over B*T of per-token losses for each micro-batch */
    out->loss = (float)(lsum / ((double)B * T * accum));
    out->grad_norm = norm;
    out->lr = lr;
    return CF_OK;
}

static int next_train_batch(void *user, int32_t *x, int32_t *y, int B, int T) {
    return cf_dataset_next_batch((cf_dataset *)user, CF_SPLIT_TRAIN, B, T, x, y);
}

/* Prints the --profile table and writes the --trace file for the profiled steps. */
static int finish_profile(cf_train_opts *o, cf_backend *be, const cf_trace_span *spans, int n) {
    if (o->profile) {
        fflush(stderr);
        fprintf(stderr, "\n");
        cf_prof_print(stderr, be, n);
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

int cf_train_run(cf_train_opts *o) {
    cf_config *c = &o->cfg;
    int rc;
    cf_backend *be = NULL;
    cf_dataset *ds = NULL;
    cf_model *m = NULL;
    FILE *logf = NULL;
    int32_t *x = NULL, *y = NULL;
    cf_trace_span *spans = NULL;
    cf_train_state st;
    memset(&st, 0, sizeof st);
    st.best_val_loss = INFINITY;
    o->final_val_loss = NAN;
    o->final_loss = NAN;
    o->tokens_per_s = 0.0;
    if (o->keep_checkpoints == 0) o->keep_checkpoints = 2;

    if ((rc = cf_config_validate(c, o->origin)) < 0) return rc;
    char resume_path[CF_PATH_MAX + 64] = {0};
    if (o->resume) {
        if ((rc = cf_checkpoint_resolve(o->resume, resume_path, sizeof resume_path)) < 0)
            return rc;
    }
    if ((rc = cf_dataset_open(c, &ds)) < 0) goto done;
    if ((rc = cf_backend_create_for(o->device, o->backend, c, &be)) < 0) goto done;
    be->verbose = o->verbose;
    if ((rc = cf_model_create(be, c, c->batch_size, c->max_length, 1, &m)) < 0) goto done;
    if (resume_path[0]) {
        if ((rc = cf_checkpoint_load(resume_path, m, &st, 1)) < 0) goto done;
        if ((rc = cf_dataset_set_state(ds, &st.data)) < 0) goto done;
        if (!o->quiet)
            CF_INFO("resumed from %s at step %d (%llu tokens seen)", resume_path, st.step,
                    (unsigned long long)st.tokens_seen);
    } else {
        if ((rc = cf_model_init(m, c->seed)) < 0) goto done;
    }
    if ((rc = cf_mkdirs(o->out_dir)) < 0) goto done;
    if (o->log_path) {
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
    const double tokens_per_step = (double)B * T * accum;
    if (!o->quiet) {
        CF_INFO("clformer %s | device %s | %.2fM parameters | batch %d x %d x %d accum | "
                "%d steps | data %zu train / %zu val tokens",
                CF_VERSION_STRING, cf_be_name(be), (double)m->num_params / 1e6, B, T, accum,
                c->steps, cf_dataset_num_tokens(ds, CF_SPLIT_TRAIN),
                cf_dataset_num_tokens(ds, CF_SPLIT_VAL));
        if (!resume_path[0])
            CF_INFO("unigram entropy of the training data: %.4f nats/token (loss must fall below)",
                    cf_dataset_unigram_entropy(ds));
    }
    const int tty = isatty(fileno(stderr));
    cf_install_sigint_handler();
    const int start_step = st.step;
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
    for (int step = st.step; step < c->steps; step++) {
        double t0 = cf_time_now();
        const int prof_on = want_prof && steps_this_run >= 1 && prof_done < prof_steps;
        if (prof_on && !be->prof.enabled) cf_prof_enable(be, 1);
        const double span0 = prof_on ? cf_prof_now_us(be) : 0.0;
        const uint64_t allocs0 = be->stats.allocs, h2d0 = be->stats.h2d_bytes,
                       d2h0 = be->stats.d2h_bytes;
        cf_step_info si;
        if ((rc = cf_train_step(m, step, next_train_batch, ds, x, y, &si)) < 0) goto done;
        const float loss = si.loss, norm = si.grad_norm, lr = si.lr;
        const uint64_t step_allocs = be->stats.allocs - allocs0;
        const uint64_t step_h2d = be->stats.h2d_bytes - h2d0, step_d2h = be->stats.d2h_bytes - d2h0;
        if (prof_on) {
            spans[prof_done].start_us = span0;
            spans[prof_done].dur_us = cf_prof_now_us(be) - span0;
            if (++prof_done == prof_steps) {
                if ((rc = finish_profile(o, be, spans, prof_done)) < 0) goto done;
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
            rc = CF_ERR_INVALID;
            goto done;
        }
        st.step = step + 1;
        st.tokens_seen += (uint64_t)tokens_per_step;
        st.last_loss = loss;
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
        if (logf) {
            fprintf(logf,
                    "{\"step\": %d, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6f, "
                    "\"tokens_per_s\": %.1f, \"ms_per_step\": %.2f}\n",
                    st.step, loss, lr, norm, tps, ms);
            fflush(logf);
        }
        float val = NAN;
        const int last = st.step == c->steps;
        /* evaluation and checkpoints stay out of a profile of training steps */
        const int prof_paused = be->prof.enabled;
        be->prof.enabled = 0;
        if (c->eval_interval > 0 && (st.step % c->eval_interval == 0 || last)) {
            if ((rc = evaluate(m, ds, c->eval_batches, x, y, &val)) < 0) goto done;
            o->final_val_loss = val;
            if (val < st.best_val_loss) st.best_val_loss = val;
        }
        if (!o->quiet) {
            char eta[32];
            fmt_eta(eta, sizeof eta, (c->steps - st.step) * tokens_per_step / tps);
            char line[384], allocs[96] = "";
            if (o->verbose) /* bus traffic of the step itself (eval and checkpoints excluded) */
                snprintf(allocs, sizeof allocs, " | h2d %llu B d2h %llu B | allocs %llu",
                         (unsigned long long)step_h2d, (unsigned long long)step_d2h,
                         (unsigned long long)step_allocs);
            snprintf(line, sizeof line,
                     "step %5d/%d | loss %.4f | lr %.2e | norm %6.3f | %8.0f tok/s | %7.1f "
                     "ms/step%s | ETA %s",
                     st.step, c->steps, loss, lr, norm, tps, ms, allocs, eta);
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
        const int stop = o->stop_after > 0 && steps_this_run >= o->stop_after;
        if (cf_interrupted()) {
            if (tty && !o->quiet) fprintf(stderr, "\n");
            CF_WARN("interrupted at step %d: saving a checkpoint", st.step);
            if ((rc = save(o, m, ds, &st)) < 0) goto done;
            CF_INFO("saved %s; resume with --resume %s", o->last_checkpoint, o->out_dir);
            rc = CF_ERR_INTERRUPTED;
            goto done;
        }
        if (ckpt || last || stop) {
            if ((rc = save(o, m, ds, &st)) < 0) goto done;
        }
        be->prof.enabled = prof_paused;
        if (stop) break;
    }
    if (tty && !o->quiet) fprintf(stderr, "\n");
    /* a run shorter than the profiling window still reports what it profiled */
    if (want_prof && prof_done > 0 && prof_done < prof_steps &&
        (rc = finish_profile(o, be, spans, prof_done)) < 0)
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
    free(spans);
    free(x);
    free(y);
    cf_model_free(m);
    cf_backend_destroy(be);
    cf_dataset_free(ds);
    return rc;
}
