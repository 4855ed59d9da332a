/* clformer: the training driver (data -> steps -> eval -> checkpoints) with live progress. */
#ifndef CF_TRAIN_TRAIN_H
#define CF_TRAIN_TRAIN_H

#include "clformer/config.h"

typedef struct {
    cf_config cfg;          /* after overrides */
    const char *origin;     /* config file name, for messages */
    const char *device;     /* --device */
    const char *out_dir;    /* --out, default runs/<config name> */
    const char *resume;     /* --resume file or dir, NULL for a fresh run */
    const char *log_path;   /* --log: one JSON line per step */
    int stop_after;         /* stop (with a checkpoint) after this many steps in this run, 0 = off */
    int keep_checkpoints;   /* step_*.safetensors kept in out_dir (older ones removed) */
    int quiet, verbose;
    float final_loss;       /* out: last training loss */
    float final_val_loss;   /* out: last validation loss (NAN if none) */
    double tokens_per_s;    /* out: average over the run, after the first step */
    char last_checkpoint[CF_PATH_MAX]; /* out */
} cf_train_opts;

/* Returns CF_OK, CF_ERR_INTERRUPTED after a Ctrl-C (a checkpoint was written), or an error. */
int cf_train_run(cf_train_opts *o);

#endif
