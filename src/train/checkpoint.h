/* clformer: checkpoints as safetensors: weights under stable names, config/tokenizer/training
 * position in __metadata__, AdamW moments as two flat tensors in the same file, and with optimizer
 * muon its momentum as a third (optimizer.muon_momentum, the Muon matrices packed in table order). */
#ifndef CF_TRAIN_CHECKPOINT_H
#define CF_TRAIN_CHECKPOINT_H

#include <stdint.h>

#include "clformer/config.h"
#include "data/dataset.h"
#include "io/safetensors.h"
#include "model/gpt.h"

typedef struct {
    int step;                /* optimizer steps completed */
    uint64_t tokens_seen;    /* training tokens consumed */
    cf_dataset_state data;   /* train cursor */
    uint64_t tokenizer_hash; /* identity of the tokenizer the model was trained with */
    float last_loss;
    float best_val_loss;
    /* precision fp16's dynamic loss scaling (train.h cf_loss_scaler), so a resume continues it
     * exactly; stored only when loss_scale > 0 (metadata loss_scale, loss_scale_good_steps,
     * skipped_steps), 0 in files of other runs */
    float loss_scale;       /* the scale the next step uses */
    int loss_scale_good;    /* consecutive steps with finite gradients since it last changed */
    uint64_t skipped_steps; /* steps skipped for inf/nan gradients */
} cf_train_state;

/* Write atomically (temp + fsync + rename). with_opt also stores the AdamW moments (and Muon's
 * momentum with optimizer muon). A model with
 * a non-finite parameter or AdamW moment (or a negative second moment) is not written: the error
 * names the tensor and CF_ERR_INVALID is returned, so a diverged run never replaces a good file. */
int cf_checkpoint_save(const char *path, cf_model *m, const cf_train_state *st, int with_opt);

/* Read only the config and training state stored in a checkpoint. */
int cf_checkpoint_read_config(const char *path, cf_config *cfg, cf_train_state *st);

/* Load weights (and, with with_opt, the AdamW moments, Muon's momentum and the step) into a model
 * whose config must match the checkpoint's shapes; a mismatch names the tensor and both shapes. A
 * checkpoint trained with the other optimizer is refused (with_opt) with one line naming both. */
int cf_checkpoint_load(const char *path, cf_model *m, cf_train_state *st, int with_opt);

/* Every tensor the parameter table (cf_model_layout) says the config has must be in the open
 * checkpoint f as F32 with exactly the table's shape; the first that is not is reported in one
 * line (naming the tensor, both shapes and `fix`; NULL: use the config the checkpoint was trained
 * with) and CF_ERR_FORMAT returned. Used by the loader and the exporter alike. */
int cf_checkpoint_check_tensors(const cf_st_file *f, const char *path,
                                const cf_param_info params[CF_NUM_PARAMS], const char *fix);

/* n float32 values (any alignment) of tensor `name` must be finite (and >= 0 with nonneg); else
 * one error naming the file, tensor, index and value, and CF_ERR_FORMAT. cf_checkpoint_load
 * applies it to every tensor; other readers of checkpoint tensors (export) call it too. */
int cf_checkpoint_check_values(const char *path, const char *name, const void *data, size_t n,
                               int nonneg);

/* A checkpoint argument may be a file or a run directory: resolve a directory to its newest
 * step_*.safetensors. out receives the file path. */
int cf_checkpoint_resolve(const char *path_or_dir, char *out, size_t out_len);

#endif
