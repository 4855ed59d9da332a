/* clformer: GPT-2 style pre-tokenizer, byte-level alphabet and exact split points for parallel
 * work. */
#include "tokenizer/pretok.h"

#include <string.h>

/* ASCII classes; bytes >= 0x80 go through the UTF-8 decoder and the generated range table. */
static const uint8_t g_ascii_class[128] = {
    /* 0x00-0x08 other, \t \n \v \f \r space, 0x0E-0x1F other */
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    3,
    3,
    3,
    3,
    3,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    /* ' ' !"#$%&'()*+,-./ 0-9 :;<=>? */
    3,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    0,
    0,
    0,
    0,
    0,
    0,
    /* @ A-Z [\]^_ */
    0,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    0,
    0,
    0,
    0,
    0,
    /* ` a-z {|}~ DEL */
    0,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    0,
    0,
    0,
    0,
    0,
};

int cf_uclass_of(uint32_t cp) {
    if (cp < 128) return g_ascii_class[cp];
    size_t lo = 0, hi = cf_uclass_nranges;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cf_uclass_ranges[mid].last < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < cf_uclass_nranges && cf_uclass_ranges[lo].first <= cp) return cf_uclass_ranges[lo].cls;
    return CF_UCLASS_OTHER;
}

size_t cf_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    /* Well-formed sequences (Unicode table 3-7): the second byte's range depends on the lead byte.
     */
    size_t len;
    uint8_t lo2 = 0x80, hi2 = 0xBF;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
        if (c == 0xE0) lo2 = 0xA0; /* no overlongs */
        if (c == 0xED) hi2 = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
        if (c == 0xF0) lo2 = 0x90; /* no overlongs */
        if (c == 0xF4) hi2 = 0x8F; /* nothing above U+10FFFF */
    } else {
        *cp = CF_UTF8_INVALID;
        return 1;
    }
    if (n < len || s[1] < lo2 || s[1] > hi2) {
        *cp = CF_UTF8_INVALID;
        return 1;
    }
    v = (v << 6) | (s[1] & 0x3F);
    for (size_t k = 2; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) {
            *cp = CF_UTF8_INVALID;
            return 1;
        }
        v = (v << 6) | (s[k] & 0x3F);
    }
    *cp = v;
    return len;
}

size_t cf_utf8_encode(uint32_t cp, uint8_t *out) {
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Class of the character at s[i] and its length in bytes. */
static inline int class_at(const uint8_t *s, size_t n, size_t i, size_t *len) {
    uint8_t c = s[i];
    if (c < 0x80) {
        *len = 1;
        return g_ascii_class[c];
    }
    uint32_t cp;
    *len = cf_utf8_decode(s + i, n - i, &cp);
    return cp == CF_UTF8_INVALID ? CF_UCLASS_OTHER : cf_uclass_of(cp);
}

size_t cf_pretok_next(const uint8_t *s, size_t n, size_t i) {
    /* 's|'t|'re|'ve|'m|'ll|'d : ASCII apostrophe and lower-case suffix only */
    if (s[i] == '\'' && i + 1 < n) {
        uint8_t a = s[i + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if (i + 2 < n) {
            uint8_t b = s[i + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
                return i + 3;
        }
    }
    size_t len, j;
    int c0 = class_at(s, n, i, &len), run;
    if (c0 != CF_UCLASS_SPACE) {
        /* \p{L}+ | \p{N}+ | [^\s\p{L}\p{N}]+ */
        run = c0;
        j = i + len;
    } else {
        size_t len1;
        int c1 = (s[i] == ' ' && i + 1 < n) ? class_at(s, n, i + 1, &len1) : CF_UCLASS_SPACE;
        if (c1 == CF_UCLASS_SPACE) goto whitespace;
        /* " ?" followed by a run of letters, numbers or others */
        run = c1;
        j = i + 1 + len1;
    }
    while (j < n) {
        size_t l;
        if (class_at(s, n, j, &l) != run) break;
        j += l;
    }
    return j;

whitespace:;
    /* \s+(?!\S) then \s+ : a whitespace run followed by a non-space gives up its last character to
     * the next piece (which then starts " word"), unless the run is a single character. */
    size_t last = i, nchar = 1;
    j = i + len;
    while (j < n) {
        size_t l;
        if (class_at(s, n, j, &l) != CF_UCLASS_SPACE) break;
        last = j;
        j += l;
        nchar++;
    }
    if (j < n && nchar >= 2) return last;
    return j;
}

size_t cf_specials_find(const cf_specials *sp, const uint8_t *s, size_t n, size_t i, int *which) {
    size_t best = n;
    int bw = -1;
    if (!sp) return n;
    for (int k = 0; k < sp->n; k++) {
        size_t L = sp->len[k];
        if (L == 0 || L > n - i) continue;
        const uint8_t *p = s + i, *end = s + n - L + 1;
        while (p < end) {
            p = memchr(p, sp->str[k][0], (size_t)(end - p));
            if (!p) break;
            if (memcmp(p, sp->str[k], L) == 0) break;
            p++;
        }
        if (!p || p >= end) continue;
        size_t pos = (size_t)(p - s);
        if (pos < best || (pos == best && bw >= 0 && L > sp->len[bw])) {
            best = pos;
            bw = k;
        }
    }
    if (which) *which = bw;
    return best;
}

static inline int is_ascii_letter(uint8_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static inline int is_ascii_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* Whether p lies strictly inside an occurrence of a special token. */
static int inside_special(const cf_specials *sp, const uint8_t *s, size_t n, size_t p) {
    if (!sp) return 0;
    for (int k = 0; k < sp->n; k++) {
        size_t L = sp->len[k];
        if (L < 2) continue;
        size_t from = p >= L - 1 ? p - (L - 1) : 0;
        for (size_t q = from; q < p; q++)
            if (q + L <= n && memcmp(s + q, sp->str[k], L) == 0) return 1;
    }
    return 0;
}

size_t cf_pretok_find_cut(const cf_specials *sp, const uint8_t *s, size_t n, size_t near,
                          size_t lo) {
    if (near >= n) near = n - 1;
    for (size_t p = near; p > lo && p > 0; p--) {
        uint8_t a = s[p - 1], b = s[p];
        if (b >= 0x80) continue;
        /* A letter run ends before any non-letter, a digit run before any non-digit, whatever
         * follows; the piece starting at p does not look behind. */
        int ok = (is_ascii_letter(a) && !is_ascii_letter(b)) ||
                 (is_ascii_digit(a) && !is_ascii_digit(b));
        if (ok && !inside_special(sp, s, n, p)) return p;
    }
    return 0;
}

/* bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF stand for themselves; the other 68 bytes take the code
 * points 256, 257, ... in byte order. */
static int printable_byte(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t cf_bytelevel_cp(uint8_t b) {
    if (printable_byte(b)) return b;
    uint32_t k = 0;
    for (unsigned x = 0; x < b; x++)
        if (!printable_byte(x)) k++;
    return 256 + k;
}

int cf_bytelevel_byte(uint32_t cp) {
    if (cp < 256) return printable_byte(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t k = cp - 256;
    for (unsigned x = 0; x < 256; x++)
        if (!printable_byte(x) && k-- == 0) return (int)x;
    return -1;
}
