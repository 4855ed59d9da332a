/* clformer: tokenizers behind one API: the built-in byte tokenizer (id = byte, 256 ids) and
 * byte-level BPE read from / written to the Hugging Face `tokenizers` JSON format; training,
 * encoding, decoding, and the `clformer tokenizer` / `clformer prepare` commands. */
#ifndef CF_TOKENIZER_TOKENIZER_H
#define CF_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct cf_tokenizer cf_tokenizer;
typedef struct cf_tok_encoder cf_tok_encoder;

enum cf_tokenizer_kind { CF_TOKENIZER_BYTE = 0, CF_TOKENIZER_BPE = 1 };

/* The end-of-text token every trained tokenizer has. */
#define CF_TOKENIZER_EOT "<|endoftext|>"

/* A growable vector of token ids (ids: n used of cap). Zero-initialise, free with
 * cf_token_buf_free. */
typedef struct {
    uint32_t *ids;
    size_t n, cap;
} cf_token_buf;
int cf_token_buf_push(cf_token_buf *b, uint32_t id);
int cf_token_buf_reserve(cf_token_buf *b, size_t cap);
void cf_token_buf_free(cf_token_buf *b);

/* ---- loading
 * ------------------------------------------------------------------------------------- */

/* "byte" (or NULL / "") gives the built-in byte tokenizer; anything else is a tokenizer.json path.
 * Errors name the file and what is wrong with it. */
int cf_tokenizer_load(const char *spec, cf_tokenizer **out);
/* Parse tokenizer JSON held in memory; origin names it in messages. */
int cf_tokenizer_load_json(const char *json, size_t len, const char *origin, cf_tokenizer **out);
int cf_tokenizer_byte(cf_tokenizer **out);
void cf_tokenizer_free(cf_tokenizer *tok);

int cf_tokenizer_kind(const cf_tokenizer *tok);
uint32_t cf_tokenizer_vocab_size(const cf_tokenizer *tok);
/* The <|endoftext|> id, or -1 (byte tokenizer, or a file without that token). */
int32_t cf_tokenizer_eot_id(const cf_tokenizer *tok);
/* Identity: cf_hash64 of the file contents (CF_TOKENIZER_BYTE_HASH for the byte tokenizer). Shards
 * record it; training refuses shards made with another tokenizer. */
uint64_t cf_tokenizer_hash(const cf_tokenizer *tok);
#define CF_TOKENIZER_BYTE_HASH 0x0000000000000100ull
/* "byte" or the path it was loaded from. */
const char *cf_tokenizer_name(const cf_tokenizer *tok);
/* Hash of a tokenizer spec without keeping it loaded ("byte" -> CF_TOKENIZER_BYTE_HASH). */
int cf_tokenizer_hash_of(const char *spec, uint64_t *hash);

/* The bytes of one id (valid while tok lives); NULL for an id out of range. */
const uint8_t *cf_tokenizer_token_bytes(const cf_tokenizer *tok, uint32_t id, size_t *len);

/* Tokenizer JSON in the Hugging Face format: the loaded file's exact text for BPE, a generated
 * equivalent (ByteLevel, 256 ids, no merges) for the byte tokenizer. malloc'ed, NUL-terminated. */
int cf_tokenizer_to_json(const cf_tokenizer *tok, char **json, size_t *len);

/* ---- encoding / decoding
 * ------------------------------------------------------------------------- */

/* Append the ids of text[0..n) to out. Any bytes are accepted (invalid UTF-8 included); special
 * tokens written literally in the text (e.g. "<|endoftext|>") become their ids, as in Hugging Face
 * tokenizers. Thread-safe; large inputs are split at exact points and encoded on all OpenMP
 * threads. */
int cf_tokenizer_encode(const cf_tokenizer *tok, const uint8_t *text, size_t n, cf_token_buf *out);

/* An encoder keeps a cache of recently seen words; one per thread for repeated calls. */
int cf_tok_encoder_new(const cf_tokenizer *tok, cf_tok_encoder **out);
void cf_tok_encoder_free(cf_tok_encoder *enc);
int cf_tok_encoder_encode(cf_tok_encoder *enc, const uint8_t *text, size_t n, cf_token_buf *out);

/* Decode ids into bytes (malloc'ed, NUL-terminated, *len excludes the NUL). decode(encode(x)) == x
 * for every byte string x. Ids out of range are an error naming the id. */
int cf_tokenizer_decode(const cf_tokenizer *tok, const uint32_t *ids, size_t n, uint8_t **text,
                        size_t *len);

/* ---- training
 * ------------------------------------------------------------------------------------ */

typedef struct {
    uint32_t vocab_size; /* total ids: 256 bytes + merges + <|endoftext|>; >= 257 */
    const char *const
        *inputs; /* files and directories (walked recursively, binary files skipped) */
    int n_inputs;
    const char *out_path; /* tokenizer.json to write (atomically) */
    int threads;          /* counting threads; 0 = all OpenMP threads */
    int progress;         /* 1: progress bars on stderr (when it is a terminal) */
    size_t chunk_bytes;   /* bytes read per piece; 0 = 8 MB (tests use small pieces) */
} cf_bpe_train_opts;

typedef struct {
    uint64_t input_bytes, files, distinct_words, words;
    uint32_t merges, vocab_size;
    double count_seconds, merge_seconds;
    size_t peak_table_bytes; /* word table + pair structures, for the memory bound */
} cf_bpe_train_stats;

int cf_tokenizer_train(const cf_bpe_train_opts *opts, cf_bpe_train_stats *stats);
/* Train on one in-memory text; *json is the tokenizer file contents (malloc'ed). */
int cf_tokenizer_train_text(const uint8_t *text, size_t n, uint32_t vocab_size, char **json,
                            size_t *len, cf_bpe_train_stats *stats);

/* ---- corpus preparation
 * -------------------------------------------------------------------------- */

typedef struct {
    const char *tokenizer; /* tokenizer.json path (or "byte") */
    const char *const *inputs;
    int n_inputs;
    const char *out_dir;
    double val_fraction; /* share of text units that go to val (deterministic, seeded) */
    int blank_line_docs; /* 1: documents are separated by blank lines; 0: one document per file */
    uint64_t
        shard_tokens; /* 0: one train.bin and one val.bin; else train_00000.bin, ... of this size */
    uint64_t seed;
    int threads;       /* 0 = all */
    int progress;      /* 1: progress bar */
    size_t read_bytes; /* bytes read from a file at a time; 0 = 16 MB (tests use small values) */
    size_t unit_bytes; /* documents longer than about this are split into units; 0 = 1 MB */
    int stop_after_shards; /* tests: stop as if interrupted once this many shards are complete
                              (0 = never); simulates a Ctrl-C between two shards */
} cf_prepare_opts;

typedef struct {
    uint64_t files, skipped_files, documents, input_bytes;
    uint64_t train_tokens, val_tokens;
    int train_shards, val_shards;
    double seconds;
} cf_prepare_stats;

int cf_prepare_run(const cf_prepare_opts *opts, cf_prepare_stats *stats);

/* ---- CLI (src/cli/cmd_tokenizer.c); argv[0] is the command name ---------------------------------
 */

int cf_cmd_tokenizer(int argc, char **argv); /* clformer tokenizer train|encode|decode ... */
int cf_cmd_prepare(int argc, char **argv);   /* clformer prepare ... */

#endif
