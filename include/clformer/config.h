/* clformer: model and training configuration, read from JSON with key=value overrides. */
#ifndef CLFORMER_CONFIG_H
#define CLFORMER_CONFIG_H

#include <stdint.h>

#define CF_PATH_MAX 1024

/* The model family's choices (docs/model_family.md); 0 is GPT-2's in each. */
enum cf_norm { CF_NORM_LAYERNORM = 0, CF_NORM_RMSNORM = 1 };
enum cf_position { CF_POS_LEARNED = 0, CF_POS_ROPE = 1 };
enum cf_mlp { CF_MLP_GELU = 0, CF_MLP_SWIGLU = 1, CF_MLP_RELU2 = 2 };
/* Arithmetic of the training step: fp32, or tf32 (fp32 storage; GEMM inputs rounded to TF32 on a
 * matrix engine where the device has one the backend can use, as PyTorch's allow_tf32), or bf16
 * (fp32 storage; GEMM inputs rounded to bf16, fp32 accumulation: the CPU backend with
 * AVX512-BF16; docs/precision.md), or fp16 (fp32 storage; GEMM inputs rounded to IEEE half, fp32
 * accumulation: the CPU backend; the trainer scales the loss dynamically). */
enum cf_precision { CF_PREC_FP32 = 0, CF_PREC_TF32 = 1, CF_PREC_BF16 = 2, CF_PREC_FP16 = 3 };
/* Which activations precision bf16/fp16 stores in half (docs/precision.md): none; gemm, those read
 * in the backward only by GEMMs (which round them anyway: no result changes); all (the default),
 * also the attention's inputs and output and the MLP's pre-activation, as PyTorch's autocast. */
enum cf_half_acts { CF_HALF_ACTS_NONE = 0, CF_HALF_ACTS_GEMM = 1, CF_HALF_ACTS_ALL = 2 };
/* What the backward recomputes instead of keeping from the forward (docs/memory.md). */
enum cf_recompute { CF_RECOMPUTE_NONE = 0, CF_RECOMPUTE_ATTENTION = 1, CF_RECOMPUTE_BLOCK = 2 };
/* Which attention runs (docs/attention.md): auto picks by shape (cf_model_flash, model/gpt.h),
 * flash keeps only the output and one log-sum-exp per query row, matrix stores the (T,T)
 * probabilities of every layer (the fused or GEMM kernels). */
enum cf_attention { CF_ATTN_AUTO = 0, CF_ATTN_FLASH = 1, CF_ATTN_MATRIX = 2 };
/* The optimizer and the learning-rate schedule (docs/optimizer.md). */
enum cf_optimizer { CF_OPTIM_ADAMW = 0, CF_OPTIM_MUON = 1 };
enum cf_lr_schedule { CF_LR_COSINE = 0, CF_LR_WSD = 1, CF_LR_CONSTANT = 2 };

typedef struct cf_config {
    /* model */
    int d_model;     /* C: embedding width */
    int num_heads;   /* NH: attention heads, d_model % num_heads == 0 */
    int num_layers;  /* L */
    int d_ff;        /* F: MLP hidden width */
    int max_length;  /* T: context length (also the training window) */
    int vocab_size;  /* V: 256 for the byte-level tokenizer */
    /* model family; the defaults are GPT-2 */
    int norm;            /* enum cf_norm */
    float norm_eps;      /* eps of every norm (1e-5) */
    int bias;            /* 1: biases in every linear layer and LayerNorm (RMSNorm has none) */
    int position;        /* enum cf_position */
    float rope_theta;    /* RoPE base (10000) */
    int mlp;             /* enum cf_mlp; swiglu: d_ff is the gate (= up) width */
    int num_kv_heads;    /* KVH: divides num_heads; 0 = num_heads (see cf_config_kv_heads) */
    int qk_norm;         /* 1: RMSNorm over each head of q and k before RoPE */
    int tie_embeddings;  /* 1: the LM head is wte */
    float logit_softcap; /* c > 0: logits = c * tanh(logits / c); 0 = off */
    int share_layers;    /* k > 0: k distinct blocks cycled over the layers; 0 = none */
    /* memory (run-time settings: they change no result of the model, only what is held) */
    int recompute;  /* enum cf_recompute: activations the backward recomputes */
    int head_chunk; /* rows of B*T per LM-head and loss chunk; 0 = automatic (cf_model_head_rows) */
    int attention;        /* enum cf_attention */
    int attention_window; /* W > 0: query i sees keys i - W < j <= i; 0 = full causal */
    int doc_mask;         /* 1: a token attends only within its document (<|endoftext|> ends one) */
    /* training */
    int batch_size;          /* B: sequences per micro-batch */
    int steps;               /* optimizer steps */
    float learning_rate;     /* peak lr */
    float min_lr_ratio;      /* cosine decays to learning_rate * min_lr_ratio */
    int warmup_steps;        /* linear warmup steps */
    float weight_decay;      /* decoupled; not applied to LayerNorm params and biases */
    float grad_clip;         /* global-norm clip, <= 0 disables */
    float beta1, beta2, eps; /* AdamW */
    int optimizer;           /* enum cf_optimizer: adamw, or muon for the blocks' weight matrices
                              * (AdamW with learning_rate for everything else) */
    float muon_lr;           /* Muon's peak lr (the schedule scales it like learning_rate) */
    float muon_momentum;     /* Muon's momentum (Nesterov) */
    int lr_schedule;         /* enum cf_lr_schedule, after the warmup: cosine, wsd, constant */
    float decay_fraction;    /* wsd: the last decay_fraction of the steps decay linearly */
    int grad_accum_steps;    /* micro-batches per optimizer step */
    int precision;           /* enum cf_precision */
    int half_activations;    /* enum cf_half_acts: bf16/fp16, the activations stored half */
    float loss_scale;        /* precision fp16: initial loss scale; 0 = the default, 65536 */
    int loss_scale_window;   /* precision fp16: steps with finite gradients before it doubles */
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

/* Key/value heads of a config (num_kv_heads 0 means as many as query heads). */
static inline int cf_config_kv_heads(const cf_config *c) {
    return c->num_kv_heads > 0 ? c->num_kv_heads : c->num_heads;
}
/* Stored blocks: share_layers when sharing, else num_layers. */
static inline int cf_config_blocks(const cf_config *c) {
    return c->share_layers > 0 ? c->share_layers : c->num_layers;
}

/* Fill with the built-in defaults (the tiny model). */
void cf_config_defaults(cf_config *cfg);
/* The name of an enum cf_precision value ("fp32", "tf32", "bf16", "fp16"; "?" outside it) */
const char *cf_precision_name(int precision);

/* Load a JSON config file over the defaults. Errors name file, field and fix, with line/column for
 * malformed JSON; unknown keys suggest the nearest known one. */
int cf_config_load(const char *path, cf_config *cfg);

/* Apply one "key=value" override (same keys, types and checks as the JSON file). */
int cf_config_set(cf_config *cfg, const char *key_eq_value, const char *origin);

/* Cross-field validation (d_model % num_heads, ranges). origin names the file for messages. */
int cf_config_validate(const cf_config *cfg, const char *origin);

/* Warn (one line each) about keys that have no effect under the rest of the config: the Muon
 * keys set away from their defaults with optimizer adamw, decay_fraction without lr_schedule wsd.
 * Returns the number of warnings. */
int cf_config_warn_ignored(const cf_config *cfg, const char *origin);

/* A checkpoint's config (ckpt) against the config it is loaded with: the model-family keys
 * (norm, norm_eps, bias, position, rope_theta, mlp, num_kv_heads, qk_norm, tie_embeddings,
 * logit_softcap, share_layers) and num_heads must agree. A difference is one error line naming
 * every differing key with both values ("checkpoint X was trained with norm=rmsnorm but the config
 * says norm=layernorm; ..."); returns CF_ERR_INVALID. */
int cf_config_check_family(const cf_config *ckpt, const cf_config *cfg, const char *ckpt_path);

/* Serialise to a compact JSON string (malloc'ed), used in checkpoint metadata. */
char *cf_config_to_json(const cf_config *cfg);
/* Parse what cf_config_to_json wrote. */
int cf_config_from_json(const char *json, cf_config *cfg, const char *origin);

#endif
