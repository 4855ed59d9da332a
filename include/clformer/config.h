/* clformer: model and training configuration, read from JSON with key=value overrides. */
#ifndef CLFORMER_CONFIG_H
#define CLFORMER_CONFIG_H

#include <stdint.h>

#define CF_PATH_MAX 1024

typedef struct cf_config {
    /* model */
    int d_model;     /* C: embedding width */
    int num_heads;   /* NH: attention heads, d_model % num_heads == 0 */
    int num_layers;  /* L */
    int d_ff;        /* F: MLP hidden width */
    int max_length;  /* T: context length (also the training window) */
    int vocab_size;  /* V: 256 for the byte-level tokenizer */
    /* training */
    int batch_size;          /* B: sequences per micro-batch */
    int steps;               /* optimizer steps */
    float learning_rate;     /* peak lr */
    float min_lr_ratio;      /* cosine decays to learning_rate * min_lr_ratio */
    int warmup_steps;        /* linear warmup steps */
    float weight_decay;      /* decoupled; not applied to LayerNorm params and biases */
    float grad_clip;         /* global-norm clip, <= 0 disables */
    float beta1, beta2, eps; /* AdamW */
    int grad_accum_steps;    /* micro-batches per optimizer step */
    int eval_interval;       /* steps between val-loss evaluations, 0 disables */
    int eval_batches;        /* micro-batches per evaluation */
    int checkpoint_interval; /* steps between checkpoints, 0 = only at the end */
    int log_interval;        /* steps between progress prints */
    uint64_t seed;
    float val_fraction; /* fraction of the corpus held out for validation */
    char data[CF_PATH_MAX];      /* text file, directory of text files, or shard directory */
    char tokenizer[CF_PATH_MAX]; /* "byte" or a tokenizer.json path */
    char name[128];              /* free-form run name */
} cf_config;

/* Fill with the built-in defaults (the tiny model). */
void cf_config_defaults(cf_config *cfg);

/* Load a JSON config file over the defaults. Errors name file, field and fix, with line/column for
 * malformed JSON; unknown keys suggest the nearest known one. */
int cf_config_load(const char *path, cf_config *cfg);

/* Apply one "key=value" override (same keys, types and checks as the JSON file). */
int cf_config_set(cf_config *cfg, const char *key_eq_value, const char *origin);

/* Cross-field validation (d_model % num_heads, ranges). origin names the file for messages. */
int cf_config_validate(const cf_config *cfg, const char *origin);

/* Serialise to a compact JSON string (malloc'ed), used in checkpoint metadata. */
char *cf_config_to_json(const cf_config *cfg);
/* Parse what cf_config_to_json wrote. */
int cf_config_from_json(const char *json, cf_config *cfg, const char *origin);

#endif
