/* clformer: internals shared by the tokenizer sources (not a public interface). */
#ifndef CF_TOKENIZER_TOK_INTERNAL_H
#define CF_TOKENIZER_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/pretok.h"
#include "tokenizer/strmap.h"
#include "tokenizer/tokenizer.h"

struct cf_tokenizer {
    int kind;            /* enum cf_tokenizer_kind */
    uint32_t vocab_size; /* V */
    int32_t eot;         /* <|endoftext|> id or -1 */
    uint64_t hash;       /* cf_hash64 of the file contents */
    char *name;          /* "byte" or the path */
    /* id -> bytes: tok_bytes[tok_off[id] .. tok_off[id+1]) */
    uint8_t *tok_bytes;
    uint64_t *tok_off; /* (V+1) */
    uint32_t byte_id[256];
    /* merges (a, b) -> rank, new id: open addressing on key a<<32|b, mval = (rank+1)<<32 | new id
     */
    uint64_t *mkey, *mval;
    size_t mcap;
    uint32_t n_merges;
    int ignore_merges;
    cf_strmap vocab; /* token bytes -> id, for ignore_merges */
    cf_specials sp;  /* added tokens, split out before pre-tokenization */
    uint8_t *special_bytes;
    char *json; /* file contents */
    size_t json_len;
};

/* Growable byte buffer. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} cf_sbuf;
void cf_sbuf_put(cf_sbuf *b, const void *data, size_t n);
void cf_sbuf_puts(cf_sbuf *b, const char *s);
void cf_sbuf_printf(cf_sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Tokenizer JSON (Hugging Face format) for a byte-level BPE: token i has bytes tok[i][0..len[i]),
 * merges[k] = (a, b) in rank order, eot < 0 for none (else its bytes are the content of the added
 * token). Deterministic output. */
int cf_bpe_write_json(const uint8_t *const *tok, const size_t *len, uint32_t n_tokens,
                      const uint32_t *merges, uint32_t n_merges, int32_t eot, char **out,
                      size_t *out_len);

/* Rank and result of merging (a, b); 0 when there is no such merge. */
static inline int cf_bpe_merge_lookup(const struct cf_tokenizer *t, uint32_t a, uint32_t b,
                                      uint32_t *rank, uint32_t *id) {
    if (!t->mcap) return 0;
    uint64_t key = ((uint64_t)a << 32) | b;
    size_t j = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (t->mcap - 1);
    for (;;) {
        uint64_t v = t->mval[j];
        if (!v) return 0;
        if (t->mkey[j] == key) {
            *rank = (uint32_t)(v >> 32) - 1;
            *id = (uint32_t)v;
            return 1;
        }
        j = (j + 1) & (t->mcap - 1);
    }
}

#endif
