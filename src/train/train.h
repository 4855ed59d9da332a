/* clformer: the training driver (data -> steps -> eval -> checkpoints) with live progress. */
#ifndef CF_TRAIN_TRAIN_H
#define CF_TRAIN_TRAIN_H

#include <stdint.h>

#include "clformer/common.h"
#include "clformer/config.h"

struct cf_model;

typedef struct {
    cf_config cfg;          /* after overrides */
    const char *origin;     /* config file name, for messages */
    const char *device;     /* --device */
    const struct cf_backend_options *backend; /* options at creation, NULL = the defaults */
    const char *out_dir;    /* --out, default runs/<config name> */
    const char *resume;     /* --resume file or dir, NULL for a fresh run */
    const char *log_path;   /* --log: one JSON line per step */
    int profile;            /* --profile: per-op table over profile_steps steps after the first */
    int profile_steps;      /* default 10 */
    const char *trace_path; /* --trace: Chrome trace of those steps (implies profiling) */
    int stop_after;         /* stop (with a checkpoint) after this many steps in this run, 0 = off */
    int keep_checkpoints;   /* step_*.safetensors kept in out_dir (older ones removed) */
    int has_target;         /* --target-loss given */
    float target_loss;      /* stop (with a checkpoint) at a periodic validation loss <= this */
    size_t bucket_bytes;    /* data-parallel gradient all-reduce bucket (--bucket-mb), 0 = 25 MB */
    int comm;               /* data-parallel all-reduce progress (--comm): enum cf_dist_comm */
    int quiet, verbose;
    float final_loss;       /* out: last training loss */
    float final_val_loss;   /* out: last validation loss (NAN if none) */
    double tokens_per_s;    /* out: average over the run, after the first step */
    char last_checkpoint[CF_PATH_MAX]; /* out */
    int target_reached;     /* out: --target-loss was reached */
    double target_wall_s;   /* out: wall time of this invocation until then (s) */
    uint64_t target_tokens; /* out: training tokens seen until then (resumed runs: from step 0) */
} cf_train_opts;

/* Source of micro-batches for cf_train_step: fills inputs x(B,T) and targets y(B,T). */
typedef int (*cf_batch_fn)(void *user, int32_t *x, int32_t *y, int B, int T);

/* A cf_batch_fn of uniform random inputs and targets in [0, V) (user: a cf_random_batch), for runs
 * that time or check the step without a dataset (device verification and measurement). */
typedef struct {
    cf_rng rng;
    int V;
} cf_random_batch;
int cf_random_batch_next(void *user, int32_t *x, int32_t *y, int B, int T);

typedef struct {
    float loss;      /* mean training loss over the step's micro-batches */
    float grad_norm; /* global L2 norm before clipping */
    float lr;        /* learning rate used */
    float muon_lr;   /* Muon's learning rate used (optimizer muon), else 0 */
    int skipped;     /* loss scaling: 1 when the gradients held inf/nan and nothing was updated */
    float loss_scale; /* loss scaling: the scale after this step's update (the next step's), else 0 */
} cf_step_info;

/* Dynamic loss scaling (precision fp16; docs/precision.md). The loss gradient that enters the
 * backward is multiplied by `scale`, so small gradients survive the GEMMs' rounding to half; the
 * gradients are unscaled before clipping and the optimizer (1/scale joins the factor the
 * optimizer multiplies them by). Gradients with an inf or nan (their global norm is not finite)
 * skip the step: parameters, optimizer moments and the optimizer's own step count (AdamW's bias
 * correction) stay as they were, `skipped` counts it and the scale halves (not below 1: a step
 * that overflows at scale 1 stops the run). After `window` consecutive good steps it doubles, up
 * to CF_LOSS_SCALE_MAX. */
typedef struct {
    float scale;      /* S > 0 */
    int window;       /* good steps before S doubles (config loss_scale_window) */
    int good_steps;   /* consecutive good steps since S last changed */
    uint64_t skipped; /* steps skipped so far */
} cf_loss_scaler;
#define CF_LOSS_SCALE_DEFAULT 65536.0f /* 2^16, the initial scale for config loss_scale 0 */
#define CF_LOSS_SCALE_MAX 16777216.0f  /* 2^24: the scale does not double past it */

/* One optimizer step at 0-based index `step`: zero the gradients, grad_accum_steps micro-batches
 * of cfg (B = batch_size, T = max_length) drawn from next() into the host arrays x, y (B*T each),
 * forward + backward, global-norm clipping, the optimizer (cf_model_optimizer_step: AdamW, or
 * Muon and AdamW) with the scheduled learning rates, and the losses
 * read back. The training loop and `clformer bench` both run exactly this. */
int cf_train_step(struct cf_model *m, int step, cf_batch_fn next, void *user, int32_t *x,
                  int32_t *y, cf_step_info *out);
/* cf_train_step with dynamic loss scaling (ls; NULL: none, exactly cf_train_step). A skipped
 * step still reads its batches and reports its loss and learning rate; the caller counts it as
 * a step (docs/precision.md). CF_ERR_INVALID when the gradients overflow at scale 1. */
int cf_train_step_scaled(struct cf_model *m, int step, cf_loss_scaler *ls, cf_batch_fn next,
                         void *user, int32_t *x, int32_t *y, cf_step_info *out);

/* Returns CF_OK, CF_ERR_INTERRUPTED after a Ctrl-C (a checkpoint was written), or an error. */
int cf_train_run(cf_train_opts *o);

#endif
