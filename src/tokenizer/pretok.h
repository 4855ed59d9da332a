/* clformer: GPT-2 style pre-tokenizer, byte-level alphabet and exact split points for parallel
 * work. */
#ifndef CF_TOKENIZER_PRETOK_H
#define CF_TOKENIZER_PRETOK_H

#include <stddef.h>
#include <stdint.h>

/* Character classes of the pre-tokenizer regex. */
enum cf_uclass {
    CF_UCLASS_OTHER = 0,  /* [^\s\p{L}\p{N}], and every byte that is not valid UTF-8 */
    CF_UCLASS_LETTER = 1, /* \p{L} */
    CF_UCLASS_NUMBER = 2, /* \p{N} */
    CF_UCLASS_SPACE = 3,  /* \s (Unicode White_Space) */
};

typedef struct {
    uint32_t first, last; /* inclusive code point range */
    uint8_t cls;          /* enum cf_uclass */
} cf_uclass_range;

/* Generated table (unicode_classes.c): sorted, disjoint; code points in no range are OTHER. */
extern const cf_uclass_range cf_uclass_ranges[];
extern const size_t cf_uclass_nranges;

#define CF_UTF8_INVALID 0xFFFFFFFFu

/* Class of one code point. */
int cf_uclass_of(uint32_t cp);

/* Decode the UTF-8 character at s[0..n), n >= 1. Returns its length in bytes; *cp is the code
 * point, or CF_UTF8_INVALID (length 1) when s[0] does not start a well-formed sequence (overlong,
 * surrogate, truncated, > U+10FFFF). */
size_t cf_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* End (exclusive) of the pre-token starting at s[i], i < n. Same pieces as the GPT-2 regex
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with each invalid UTF-8 byte taken as one OTHER character (so any byte string splits). */
size_t cf_pretok_next(const uint8_t *s, size_t n, size_t i);

/* Added (special) tokens, split out of the text before pre-tokenization, leftmost first (longest
 * when two start at the same byte). */
#define CF_TOK_MAX_SPECIALS 16
typedef struct {
    int n;
    const uint8_t *str[CF_TOK_MAX_SPECIALS];
    size_t len[CF_TOK_MAX_SPECIALS];
    uint32_t id[CF_TOK_MAX_SPECIALS];
} cf_specials;

/* First occurrence of any special in s[i..n): its start, or n when none; *which = its index. */
size_t cf_specials_find(const cf_specials *sp, const uint8_t *s, size_t n, size_t i, int *which);

/* An exact split point p in (lo, near]: pre-tokenizing s[0,p) and s[p,n) separately yields the same
 * pieces as s[0,n) (p sits right after an ASCII letter or digit and before an ASCII byte of another
 * class, and inside no special token). Searches downward from near; returns 0 when there is none.
 */
size_t cf_pretok_find_cut(const cf_specials *sp, const uint8_t *s, size_t n, size_t near,
                          size_t lo);

/* GPT-2 byte-level alphabet: every byte maps to one printable code point and back. */
uint32_t cf_bytelevel_cp(uint8_t b);
int cf_bytelevel_byte(uint32_t cp); /* the byte, or -1 when cp is not in the alphabet */

/* UTF-8 encode cp into out (4 bytes room); returns the length. */
size_t cf_utf8_encode(uint32_t cp, uint8_t *out);

#endif
