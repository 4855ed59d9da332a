/* clformer: token shard files written by `clformer prepare`: a 64-byte header (magic, version,
 * dtype, token count, tokenizer hash) followed by the ids; a writer, a memory-mapped reader that
 * validates the header, and the shard directory the training dataset reads.
 *
 * Header, little-endian:
 *   0  char[8] "CFTOKENS"     16 u64 token count        36 i32 <|endoftext|> id (-1: none)
 *   8  u32 version (1)        24 u64 tokenizer hash     40 u32 header bytes (64)
 *   12 u32 bytes per token    32 u32 vocab size         44..63 zero
 *      (2: uint16, 4: uint32)
 * A directory holds train.bin and val.bin, or train_00000.bin, train_00001.bin, ... (and val_*). */
#ifndef CF_DATA_SHARDS_H
#define CF_DATA_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include "clformer/config.h"

#define CF_SHARD_MAGIC "CFTOKENS"
#define CF_SHARD_VERSION 1
#define CF_SHARD_HEADER_BYTES 64

typedef struct {
    uint32_t version;
    uint32_t dtype; /* bytes per token: 2 or 4 */
    uint64_t count; /* tokens */
    uint64_t tokenizer_hash;
    uint32_t vocab_size;
    int32_t eot_id;
} cf_shard_info;

/* What a reader requires of a shard; zero fields are not checked. */
typedef struct {
    int check_hash;
    uint64_t tokenizer_hash;
    const char *tokenizer_name; /* for messages */
    uint32_t max_vocab;         /* the model's vocab_size */
} cf_shard_expect;

typedef struct {
    char *path;
    cf_shard_info info;
    const uint8_t *map; /* the whole file, read-only */
    size_t map_len;
    const uint8_t *tokens; /* map + CF_SHARD_HEADER_BYTES */
} cf_shard;

/* Map and validate one shard. Errors are one line naming the file and the fix: truncated, wrong
 * magic, unknown version or dtype, token count vs file size, other tokenizer, vocab larger than
 * expected. */
int cf_shard_open(const char *path, const cf_shard_expect *expect, cf_shard *out);
void cf_shard_close(cf_shard *s);
/* Header only (no mapping), same checks except the tokenizer ones. */
int cf_shard_read_info(const char *path, cf_shard_info *info);

static inline uint32_t cf_shard_token(const cf_shard *s, uint64_t i) {
    return s->info.dtype == 2 ? ((const uint16_t *)(const void *)s->tokens)[i]
                              : ((const uint32_t *)(const void *)s->tokens)[i];
}

/* ---- writing -----------------------------------------------------------------------------------
 */

typedef struct cf_shard_writer cf_shard_writer;

/* Writes to "<path>.tmp.<pid>"; close() fixes the token count in the header, syncs and renames. */
int cf_shard_writer_open(const char *path, uint32_t dtype, uint64_t tokenizer_hash,
                         uint32_t vocab_size, int32_t eot_id, cf_shard_writer **out);
int cf_shard_writer_append(cf_shard_writer *w, const uint32_t *ids, size_t n);
uint64_t cf_shard_writer_count(const cf_shard_writer *w);
int cf_shard_writer_close(cf_shard_writer *w);  /* frees w */
void cf_shard_writer_abort(cf_shard_writer *w); /* removes the temporary file, frees w */

/* Build the 64-byte header (for writers and tests). */
void cf_shard_header_encode(const cf_shard_info *info, uint8_t out[CF_SHARD_HEADER_BYTES]);

/* ---- a split (train or val) of a shard directory
 * ------------------------------------------------- */

typedef struct {
    int n;           /* shards, in name order */
    cf_shard *sh;    /* (n) */
    uint64_t *first; /* (n+1) index of each shard's first token; first[n] = total */
    uint64_t total;
} cf_shard_list;

/* "<dir>/<split>.bin" or "<dir>/<split>_NNNNN.bin"; no file gives an empty list (n = 0). */
int cf_shard_list_open(const char *dir, const char *split, const cf_shard_expect *expect,
                       cf_shard_list *out);
void cf_shard_list_close(cf_shard_list *l);

static inline uint32_t cf_shard_list_token(const cf_shard_list *l, uint64_t i) {
    int k = 0;
    if (l->n > 1) { /* the last shard starting at or before i (empty shards are skipped) */
        int lo = 0, hi = l->n - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (l->first[mid] <= i)
                lo = mid;
            else
                hi = mid - 1;
        }
        k = lo;
    }
    return cf_shard_token(&l->sh[k], i - l->first[k]);
}

/* Whether dir is a shard directory (has train.bin or train_00000.bin). */
int cf_shards_is_dir(const char *path);

/* ---- the training dataset's view ---------------------------------------------------------------
 */

/* The tokens of a shard directory as one sequence: the train split, then the val split. */
typedef struct cf_shard_set {
    cf_shard_list train, val;
} cf_shard_set;

/* Open cfg->data-style shard directory `dir` for training: every shard must carry the hash of
 * cfg->tokenizer and a vocab no larger than cfg->vocab_size. */
int cf_shard_set_open(const cf_config *cfg, const char *dir, cf_shard_set **out);
void cf_shard_set_close(cf_shard_set *s);
static inline uint64_t cf_shard_set_tokens(const cf_shard_set *s) {
    return s->train.total + s->val.total;
}
static inline uint64_t cf_shard_set_val_tokens(const cf_shard_set *s) { return s->val.total; }
/* The dataset's split: *n_val = the val shards' tokens. Fails with a message naming dir when the
 * train split has fewer than T + 1 tokens, or when need_val and the val split has fewer. */
int cf_shard_set_split(const cf_shard_set *s, const char *dir, int T, int need_val, size_t *n_val);
/* Token i of train ++ val. */
static inline uint32_t cf_shard_set_token(const cf_shard_set *s, uint64_t i) {
    return i < s->train.total ? cf_shard_list_token(&s->train, i)
                              : cf_shard_list_token(&s->val, i - s->train.total);
}

/* Text of a corpus through cfg->tokenizer (a tokenizer.json; "byte" also works): *ids malloc'ed
 * with *width bytes per id (2 when the vocab fits in uint16, else 4). For text data with a trained
 * tokenizer and for cf_dataset_load_tokens; origin names the data in messages. */
int cf_shards_encode_text(const cf_config *cfg, const char *origin, const unsigned char *text,
                          size_t n, void **ids, int *width, size_t *count);

#endif
