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

/* Map and validate one shard. Errors are one line naming the file and the fix: not a regular
 * file (a FIFO is refused without blocking), truncated, wrong magic, unknown version or dtype,
 * token count vs file size, other tokenizer, vocab larger than expected, and any token id at or
 * above the header's vocab size (or expect->max_vocab when smaller), with its position. */
int cf_shard_open(const char *path, const cf_shard_expect *expect, cf_shard *out);
void cf_shard_close(cf_shard *s);
/* Header only (no mapping), same checks except the tokenizer ones. */
int cf_shard_read_info(const char *path, cf_shard_info *info);
/* The checks of a 64-byte header h of a file of file_size bytes (what cf_shard_open runs first). */
int cf_shard_parse_header(const char *path, const uint8_t *h, uint64_t file_size,
                          cf_shard_info *info);
/* Tokens [start, start + n) as int32. Reads run under a SIGBUS guard: a shard truncated while it
 * is mapped gives CF_ERR_IO and a message naming the file instead of killing the process. Use
 * these (not cf_shard_token) wherever the file may change under a long run. */
int cf_shard_read(const cf_shard *s, uint64_t start, size_t n, int32_t *out);

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
/* Tokens [start, start + n) of the split (guarded as cf_shard_read). */
int cf_shard_list_read(const cf_shard_list *l, uint64_t start, size_t n, int32_t *out);

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

/* Whether dir is a shard directory (has train.bin, train_00000.bin, or, left by an interrupted
 * prepare, val.bin, val_00000.bin or meta.json). */
int cf_shards_is_dir(const char *path);

/* ---- the training dataset's view ---------------------------------------------------------------
 */

/* The tokens of a shard directory as one sequence: the train split, then the val split. */
typedef struct cf_shard_set {
    cf_shard_list train, val;
} cf_shard_set;

/* What <dir>/meta.json records; `clformer prepare` removes it first and writes it last, so a
 * directory whose meta.json is missing or disagrees with its shards is incomplete. */
typedef struct {
    uint64_t tokenizer_hash, train_tokens, val_tokens;
    int train_shards, val_shards;
} cf_shard_meta;
/* Parse meta.json text (origin names it in messages). */
int cf_shard_meta_parse(const char *text, size_t len, const char *origin, cf_shard_meta *out);

/* Open cfg->data-style shard directory `dir` for training: every shard must carry the hash of
 * cfg->tokenizer, a vocab no larger than cfg->vocab_size and ids below it, and meta.json must
 * describe exactly the shards found (else the directory is from an interrupted prepare). */
int cf_shard_set_open(const cf_config *cfg, const char *dir, cf_shard_set **out);
void cf_shard_set_close(cf_shard_set *s);
static inline uint64_t cf_shard_set_tokens(const cf_shard_set *s) {
    return s->train.total + s->val.total;
}
static inline uint64_t cf_shard_set_val_tokens(const cf_shard_set *s) { return s->val.total; }
/* The dataset's split: *n_val = the val shards' tokens. Fails with a message naming dir when the
 * train split has fewer than T + 1 tokens, or when need_val and the val split has fewer. */
int cf_shard_set_split(const cf_shard_set *s, const char *dir, int T, int need_val, size_t *n_val);
/* Tokens [start, start + n) of train ++ val (guarded as cf_shard_read). */
int cf_shard_set_read(const cf_shard_set *s, uint64_t start, size_t n, int32_t *out);
/* Token i of train ++ val (unguarded). */
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
