/* clformer: training data. Loads the corpus named by cfg->data, tokenizes it (byte level:
 * token = byte value, vocab 256), splits off the last val_fraction of tokens for validation, and
 * serves (inputs, targets) batches: targets are inputs shifted by one token.
 *
 * Train order: the train split is cut into non-overlapping windows of max_length + 1 tokens
 * (consecutive windows share one boundary token, start k * max_length + shift); each epoch visits
 * every window once in an order drawn from (seed, epoch). Epoch 0 has shift 0; later epochs use a
 * shift in [0, max_length) drawn from (seed, epoch) so that the windows see new boundaries. The
 * cursor (epoch, index) plus the seed is the whole state, saved in checkpoints.
 * Validation: consecutive windows from the start of the val split, wrapping around. */
#ifndef CF_DATASET_H
#define CF_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "clformer/common.h"
#include "clformer/config.h"

enum { CF_SPLIT_TRAIN = 0, CF_SPLIT_VAL = 1 };

typedef struct cf_dataset cf_dataset;

typedef struct {
    uint64_t epoch; /* completed passes over the train windows */
    uint64_t index; /* windows of this epoch already served */
    uint64_t seed;  /* shuffle seed (cfg->seed at open) */
} cf_dataset_state;

/* cfg->data: a text file, or a directory of text files read recursively in sorted path order
 * (hidden entries and files with NUL bytes in their first 4 KiB are skipped; a newline is inserted
 * between files that do not end with one). Relative paths are taken from the current working
 * directory. Needs at least max_length + 1 tokens in each non-empty split. */
int cf_dataset_open(const cf_config *cfg, cf_dataset **out);

/* inputs, targets: (B, T) int32, row-major. T <= cfg->max_length. Train advances the cursor by B
 * windows (wrapping into the next epoch); val advances the val cursor by B windows. */
int cf_dataset_next_batch(cf_dataset *ds, int split, int B, int T, int32_t *inputs,
                          int32_t *targets);

/* Advances the train cursor by n windows without reading them (wrapping into the next epoch as
 * cf_dataset_next_batch does): data-parallel ranks skip the other ranks' slices of a batch. */
int cf_dataset_skip(cf_dataset *ds, size_t n);

/* Rewind the val cursor so every evaluation sees the same batches. */
void cf_dataset_reset_val(cf_dataset *ds);

void cf_dataset_get_state(const cf_dataset *ds, cf_dataset_state *st);
/* Restore a cursor (from a checkpoint); the state's seed replaces the dataset's. Fails with a
 * message when index is beyond the epoch's window count (a checkpoint from different data). */
int cf_dataset_set_state(cf_dataset *ds, const cf_dataset_state *st);

size_t cf_dataset_num_tokens(const cf_dataset *ds, int split);
/* Number of windows one train epoch has (epoch 0), or val windows before wrapping. */
size_t cf_dataset_num_windows(const cf_dataset *ds, int split);

/* Entropy in nats/token of the train split's unigram distribution: the loss a model that ignores
 * context would reach; a trained model must go below it. */
double cf_dataset_unigram_entropy(const cf_dataset *ds);

/* Tokenize a whole file (or directory, as above) with cfg's tokenizer, for evaluation; of a
 * shard directory (`clformer prepare`) only its validation shards. *tokens is malloc'ed (free
 * it); *n is the token count. */
int cf_dataset_load_tokens(const cf_config *cfg, const char *path, int32_t **tokens, size_t *n);

/* ---- document boundaries (doc_mask) ----
 * A batch row may hold the tail of one document, several whole ones and the head of another,
 * separated by the end-of-text token. The end-of-text token belongs to the document it closes
 * (it is that document's last input, the one that predicts what comes after it); the token after
 * it starts the next document. starts (B,T) receives, for each input token, the position in its
 * row where its document starts (0 for the tokens before the row's first end-of-text, whose
 * document began before the window): the attention mask of cf_attn_desc (backend.h). Returns the
 * number of end-of-text tokens in the batch. */
size_t cf_doc_starts(const int32_t *tokens, int B, int T, int32_t eot, int32_t *starts);

/* The end-of-text id of cfg's tokenizer ("byte": none, -1; a tokenizer.json: its <|endoftext|>
 * id, or -1 when it has none) into *eot. */
int cf_data_eot_id(const cf_config *cfg, int32_t *eot);

void cf_dataset_free(cf_dataset *ds);

#endif
