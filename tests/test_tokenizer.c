/* clformer test: byte-level BPE tokenizer: round trips of arbitrary bytes, deterministic training
 * equal to a naive trainer, encoding equal to a naive regex + merge reference, exact split points,
 * parallel encoding, file format errors. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clformer/common.h"
#include "tokenizer/pretok.h"
#include "tokenizer/tokenizer.h"
#include "test_common.h"

/* ---- naive reference: byte-level alphabet, regex emulation, merges by linear search
 * --------------- */

static uint32_t ref_byte_cp[256];

static void ref_init_alphabet(void) {
    int printable[256] = {0}, extra = 0;
    for (int b = '!'; b <= '~'; b++) printable[b] = 1;
    for (int b = 0xA1; b <= 0xAC; b++) printable[b] = 1;
    for (int b = 0xAE; b <= 0xFF; b++) printable[b] = 1;
    for (int b = 0; b < 256; b++)
        ref_byte_cp[b] = printable[b] ? (uint32_t)b : (uint32_t)(256 + extra++);
}

/* UTF-8 of one code point into out (NUL-terminated). */
static void ref_utf8(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 63));
        out[2] = 0;
    } else {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 63));
        out[2] = (char)(0x80 | (cp & 63));
        out[3] = 0;
    }
}

typedef struct {
    size_t start, len;
    int cls;
    uint32_t cp;
} ref_char;

/* Decode by trying each length and re-encoding: a sequence is valid when its bits give a code point
 * whose shortest encoding has that length and which is not a surrogate. */
static size_t ref_decode(const uint8_t *s, size_t n, ref_char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t len = 1;
        uint32_t cp = s[i];
        int ok = s[i] < 0x80;
        for (size_t L = 2; L <= 4 && !ok; L++) {
            uint8_t lead_mask = (uint8_t)(0xFF << (7 - L)), lead_val = (uint8_t)(0xFF << (8 - L));
            if ((s[i] & lead_mask) != lead_val || i + L > n) continue;
            uint32_t v = s[i] & (0xFF >> (L + 1));
            int cont = 1;
            for (size_t j = 1; j < L; j++) {
                if ((s[i + j] & 0xC0) != 0x80) cont = 0;
                v = (v << 6) | (s[i + j] & 63);
            }
            size_t shortest = v < 0x80 ? 1 : v < 0x800 ? 2 : v < 0x10000 ? 3 : 4;
            if (cont && shortest == L && v <= 0x10FFFF && !(v >= 0xD800 && v <= 0xDFFF)) {
                ok = 1;
                len = L;
                cp = v;
            }
        }
        int cls;
        if (!ok)
            cls = CF_UCLASS_OTHER;
        else if (cp < 128)
            cls = (cp == ' ' || (cp >= 9 && cp <= 13))     ? CF_UCLASS_SPACE
                  : ((cp | 32) >= 'a' && (cp | 32) <= 'z') ? CF_UCLASS_LETTER
                  : (cp >= '0' && cp <= '9')               ? CF_UCLASS_NUMBER
                                                           : CF_UCLASS_OTHER;
        else
            cls = cf_uclass_of(cp);
        out[k++] = (ref_char){i, len, cls, ok ? cp : 0xFFFFFFFF};
        i += len;
    }
    return k;
}

/* The regex 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ emulated
 * alternative by alternative with explicit backtracking, over decoded characters. Returns the
 * number of characters matched at c[i]. */
static size_t ref_match(const ref_char *c, size_t n, size_t i) {
    static const char *contr[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    if (c[i].cp == '\'') {
        for (int k = 0; k < 7; k++) {
            size_t L = strlen(contr[k]), j;
            for (j = 0; j < L && i + 1 + j < n && c[i + 1 + j].cp == (uint32_t)contr[k][j]; j++) {
            }
            if (j == L) return 1 + L;
        }
    }
    int classes[3] = {CF_UCLASS_LETTER, CF_UCLASS_NUMBER, CF_UCLASS_OTHER};
    for (int a = 0; a < 3; a++) {
        for (int with_space = 1; with_space >= 0; with_space--) {
            size_t j = i;
            if (with_space) {
                if (c[j].cp != ' ') continue;
                j++;
            }
            size_t k = j;
            while (k < n && c[k].cls == classes[a]) k++;
            if (k > j) return k - i;
        }
    }
    size_t run = 0;
    while (i + run < n && c[i + run].cls == CF_UCLASS_SPACE) run++;
    for (size_t len = run; len >= 1; len--) /* \s+(?!\S) */
        if (i + len == n || c[i + len].cls == CF_UCLASS_SPACE) return len;
    return run; /* \s+ */
}

typedef struct {
    char **vocab; /* id -> byte-level string */
    int nv;
    char **ml, **mr; /* merges */
    int nm;
    int eot;
} ref_tok;

static int ref_load(const char *json, ref_tok *r) {
    memset(r, 0, sizeof *r);
    cJSON *root = cJSON_Parse(json);
    if (!root) return -1;
    cJSON *model = cJSON_GetObjectItem(root, "model");
    cJSON *vocab = cJSON_GetObjectItem(model, "vocab"),
          *merges = cJSON_GetObjectItem(model, "merges"), *it;
    r->nv = cJSON_GetArraySize(vocab);
    r->vocab = calloc((size_t)r->nv, sizeof *r->vocab);
    cJSON_ArrayForEach(it, vocab) r->vocab[it->valueint] = strdup(it->string);
    r->nm = cJSON_GetArraySize(merges);
    r->ml = calloc((size_t)r->nm + 1, sizeof *r->ml);
    r->mr = calloc((size_t)r->nm + 1, sizeof *r->mr);
    int k = 0;
    cJSON_ArrayForEach(it, merges) {
        char *s = strdup(it->valuestring), *sp = strchr(s, ' ');
        *sp = 0;
        r->ml[k] = s;
        r->mr[k] = strdup(sp + 1);
        k++;
    }
    r->eot = -1;
    cJSON *added = cJSON_GetObjectItem(root, "added_tokens");
    cJSON_ArrayForEach(it, added) {
        if (!strcmp(cJSON_GetObjectItem(it, "content")->valuestring, "<|endoftext|>"))
            r->eot = cJSON_GetObjectItem(it, "id")->valueint;
    }
    cJSON_Delete(root);
    return 0;
}

static void ref_free(ref_tok *r) {
    for (int i = 0; i < r->nv; i++) free(r->vocab[i]);
    for (int i = 0; i < r->nm; i++) {
        free(r->ml[i]);
        free(r->mr[i]);
    }
    free(r->vocab);
    free(r->ml);
    free(r->mr);
}

/* BPE of one word: merge the lowest-ranked adjacent pair (leftmost on ties) until none applies. */
static void ref_word(const ref_tok *r, const uint8_t *w, size_t n, cf_token_buf *out) {
    char **sym = malloc(n * sizeof *sym);
    size_t m = n;
    for (size_t k = 0; k < n; k++) {
        sym[k] = malloc(8);
        ref_utf8(ref_byte_cp[w[k]], sym[k]);
    }
    for (;;) {
        int best = -1;
        size_t pos = 0;
        for (size_t k = 0; k + 1 < m; k++)
            for (int q = 0; q < r->nm && (best < 0 || q < best); q++)
                if (!strcmp(r->ml[q], sym[k]) && !strcmp(r->mr[q], sym[k + 1])) {
                    best = q;
                    pos = k;
                    break;
                }
        if (best < 0) break;
        char *joined = malloc(strlen(sym[pos]) + strlen(sym[pos + 1]) + 1);
        strcpy(joined, sym[pos]);
        strcat(joined, sym[pos + 1]);
        free(sym[pos]);
        free(sym[pos + 1]);
        sym[pos] = joined;
        for (size_t k = pos + 1; k + 1 < m; k++) sym[k] = sym[k + 1];
        m--;
    }
    for (size_t k = 0; k < m; k++) {
        int id = -1;
        for (int v = 0; v < r->nv && id < 0; v++)
            if (v != r->eot && !strcmp(r->vocab[v], sym[k])) id = v;
        cf_token_buf_push(out, (uint32_t)id);
        free(sym[k]);
    }
    free(sym);
}

static void ref_encode(const ref_tok *r, const uint8_t *s, size_t n, cf_token_buf *out) {
    const char *eot = "<|endoftext|>";
    size_t el = strlen(eot), i = 0;
    ref_char *c = malloc((n + 1) * sizeof *c);
    while (i < n) {
        size_t e = i;
        while (e < n && !(r->eot >= 0 && e + el <= n && !memcmp(s + e, eot, el))) e++;
        size_t nc = ref_decode(s + i, e - i, c);
        for (size_t k = 0; k < nc;) {
            size_t len = ref_match(c, nc, k);
            size_t b0 = c[k].start, b1 = c[k + len - 1].start + c[k + len - 1].len;
            ref_word(r, s + i + b0, b1 - b0, out);
            k += len;
        }
        i = e;
        if (i < n) {
            cf_token_buf_push(out, (uint32_t)r->eot);
            i += el;
        }
    }
    free(c);
}

/* ---- naive trainer: recount every pair after every merge
 * ------------------------------------------ */

typedef struct {
    uint32_t *sym;
    size_t len;
    uint64_t count;
} ref_word_t;

/* Merges (a, b) learned from text until vocab_size - 1 tokens exist; returns how many. */
static int ref_train(const uint8_t *s, size_t n, uint32_t vocab_size, uint32_t *merges) {
    ref_word_t *w = calloc(n + 1, sizeof *w);
    size_t nw = 0;
    ref_char *c = malloc((n + 1) * sizeof *c);
    const char *eot = "<|endoftext|>";
    size_t el = strlen(eot), i = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && !(e + el <= n && !memcmp(s + e, eot, el))) e++;
        size_t nc = ref_decode(s + i, e - i, c);
        for (size_t k = 0; k < nc;) {
            size_t len = ref_match(c, nc, k);
            size_t b0 = i + c[k].start, b1 = i + c[k + len - 1].start + c[k + len - 1].len, j;
            /* distinct words with counts (linear search: the corpus is small) */
            for (j = 0; j < nw; j++)
                if (w[j].len == b1 - b0) {
                    size_t q;
                    for (q = 0; q < w[j].len && w[j].sym[q] == s[b0 + q]; q++) {
                    }
                    if (q == w[j].len) break;
                }
            if (j == nw) {
                w[nw].sym = malloc((b1 - b0) * sizeof(uint32_t));
                for (size_t q = 0; q < b1 - b0; q++) w[nw].sym[q] = s[b0 + q];
                w[nw].len = b1 - b0;
                nw++;
            }
            w[j].count++;
            k += len;
        }
        i = e < n ? e + el : e;
    }
    free(c);
    /* token strings to detect a merge that rebuilds an existing token */
    uint32_t ntok = 256;
    char **tokstr = calloc(vocab_size, sizeof *tokstr);
    size_t *toklen = calloc(vocab_size, sizeof *toklen);
    for (int b = 0; b < 256; b++) {
        tokstr[b] = malloc(1);
        tokstr[b][0] = (char)b;
        toklen[b] = 1;
    }
    int nm = 0;
    /* dense pair counts: ids stay below vocab_size */
    uint64_t *pc = malloc((size_t)vocab_size * vocab_size * sizeof *pc);
    while (ntok < vocab_size - 1) {
        memset(pc, 0, (size_t)vocab_size * vocab_size * sizeof *pc);
        for (size_t j = 0; j < nw; j++)
            for (size_t q = 0; q + 1 < w[j].len; q++)
                pc[(size_t)w[j].sym[q] * vocab_size + w[j].sym[q + 1]] += w[j].count;
        size_t best = 0;
        for (size_t t = 1; t < (size_t)vocab_size * vocab_size;
             t++) /* strictly larger: smallest (a, b) wins ties */
            if (pc[t] > pc[best]) best = t;
        if (pc[best] == 0) break;
        uint32_t a = (uint32_t)(best / vocab_size), b = (uint32_t)(best % vocab_size);
        merges[2 * nm] = a;
        merges[2 * nm + 1] = b;
        nm++;
        size_t L = toklen[a] + toklen[b];
        char *cat = malloc(L);
        memcpy(cat, tokstr[a], toklen[a]);
        memcpy(cat + toklen[a], tokstr[b], toklen[b]);
        uint32_t z = ntok;
        for (uint32_t t = 0; t < ntok; t++)
            if (toklen[t] == L && !memcmp(tokstr[t], cat, L)) z = t;
        if (z == ntok) {
            tokstr[ntok] = cat;
            toklen[ntok] = L;
            ntok++;
        } else {
            free(cat);
        }
        for (size_t j = 0; j < nw; j++) {
            size_t d = 0;
            for (size_t q = 0; q < w[j].len; q++) {
                if (q + 1 < w[j].len && w[j].sym[q] == a && w[j].sym[q + 1] == b) {
                    w[j].sym[d++] = z;
                    q++;
                } else {
                    w[j].sym[d++] = w[j].sym[q];
                }
            }
            w[j].len = d;
        }
    }
    for (size_t j = 0; j < nw; j++) free(w[j].sym);
    for (uint32_t t = 0; t < ntok; t++) free(tokstr[t]);
    free(w);
    free(tokstr);
    free(toklen);
    free(pc);
    return nm;
}

/* ---- helpers
 * --------------------------------------------------------------------------------------- */

static int same_ids(const cf_token_buf *a, const cf_token_buf *b, const char *what) {
    if (a->n == b->n && (a->n == 0 || !memcmp(a->ids, b->ids, a->n * sizeof *a->ids))) return 1;
    size_t k = 0;
    while (k < a->n && k < b->n && a->ids[k] == b->ids[k]) k++;
    printf("  %s: %zu vs %zu ids, first difference at %zu (%d vs %d)\n", what, a->n, b->n, k,
           k < a->n ? (int)a->ids[k] : -1, k < b->n ? (int)b->ids[k] : -1);
    return 0;
}

static int roundtrip(const cf_tokenizer *tok, const uint8_t *s, size_t n) {
    cf_token_buf ids = {0};
    uint8_t *back = NULL;
    size_t blen = 0;
    int ok = cf_tokenizer_encode(tok, s, n, &ids) == CF_OK &&
             cf_tokenizer_decode(tok, ids.ids, ids.n, &back, &blen) == CF_OK && blen == n &&
             (n == 0 || !memcmp(back, s, n));
    if (ok) /* every id in range */
        for (size_t i = 0; i < ids.n; i++) ok &= ids.ids[i] < cf_tokenizer_vocab_size(tok);
    free(back);
    cf_token_buf_free(&ids);
    return ok;
}

static uint64_t g_rng = 88172645463325252ull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

/* Random text mixing ASCII words, whitespace of all kinds, digits, apostrophes, the EOT token,
 * UTF-8 of many scripts and invalid bytes. */
static size_t random_text(uint8_t *out, size_t cap) {
    static const char *frag[] = {"the",
                                 " the",
                                 "model",
                                 " tokens",
                                 "'s",
                                 "'ll",
                                 "'re",
                                 "'ve",
                                 "'d",
                                 "'t",
                                 "'m",
                                 "'",
                                 "''",
                                 " '",
                                 "123",
                                 " 4567",
                                 "3.14",
                                 "  ",
                                 "   ",
                                 "\t",
                                 "\n",
                                 "\n\n",
                                 " \n",
                                 "\r\n",
                                 "!!",
                                 "?!",
                                 " ...",
                                 "--",
                                 "(x)",
                                 "<|endoftext|>",
                                 "<|endoftext",
                                 "caf\xc3\xa9",
                                 " \xc3\xa9t\xc3\xa9",
                                 "\xe6\x9d\xb1\xe4\xba\xac",
                                 "\xd0\xb4\xd0\xb0",
                                 "\xf0\x9f\x98\x80",
                                 "\xc2\xa0",
                                 "\xe2\x80\x83",
                                 "\xe3\x80\x80",
                                 "\xc2\x85",
                                 "\xe2\x85\xa7",
                                 "\xd9\xa3",
                                 "\xc2\xbd",
                                 "\xff",
                                 "\xc3",
                                 "\xe2\x82",
                                 "\xed\xa0\x80",
                                 "\xc0\xaf",
                                 "\xf4\x90\x80\x80",
                                 "\x80\x80",
                                 "A",
                                 "Z",
                                 "q"};
    size_t n = 0, nf = sizeof frag / sizeof *frag;
    while (n + 16 < cap) {
        const char *f = frag[rnd() % nf];
        size_t L = strlen(f);
        memcpy(out + n, f, L);
        n += L;
        if (rnd() % 8 == 0) break;
    }
    return n;
}

static char *read_fixture(size_t *len) {
    char *d = NULL;
    if (cf_read_file(CF_SOURCE_DIR "/tests/fixtures/tokenizer_corpus.txt", &d, len) != CF_OK)
        return NULL;
    return d;
}

/* ---- tests
 * ----------------------------------------------------------------------------------------- */

static void test_alphabet(void) {
    /* GPT-2 facts: space -> U+0120 'Ġ', newline -> U+010A 'Ċ', NUL -> U+0100, '!' stays */
    CHECK(cf_bytelevel_cp(' ') == 0x120, "space maps to U+%04X, expected U+0120",
          cf_bytelevel_cp(' '));
    CHECK(cf_bytelevel_cp('\n') == 0x10A, "newline maps to U+%04X, expected U+010A",
          cf_bytelevel_cp('\n'));
    CHECK(cf_bytelevel_cp(0) == 0x100, "NUL maps to U+%04X", cf_bytelevel_cp(0));
    CHECK(cf_bytelevel_cp('!') == '!', "'!' maps to U+%04X", cf_bytelevel_cp('!'));
    int bad = 0;
    for (int b = 0; b < 256; b++) {
        if (cf_bytelevel_cp((uint8_t)b) != ref_byte_cp[b]) bad++;
        if (cf_bytelevel_byte(cf_bytelevel_cp((uint8_t)b)) != b) bad++;
    }
    CHECK(bad == 0, "%d bytes differ from the reference alphabet or do not map back", bad);
}

static void test_byte_tokenizer(void) {
    cf_tokenizer *t;
    CHECK(cf_tokenizer_load("byte", &t) == CF_OK, "load byte");
    CHECK(cf_tokenizer_vocab_size(t) == 256 && cf_tokenizer_eot_id(t) == -1 &&
              cf_tokenizer_hash(t) == CF_TOKENIZER_BYTE_HASH &&
              cf_tokenizer_kind(t) == CF_TOKENIZER_BYTE,
          "byte tokenizer: vocab %u eot %d", cf_tokenizer_vocab_size(t), cf_tokenizer_eot_id(t));
    uint8_t s[300];
    for (int i = 0; i < 300; i++) s[i] = (uint8_t)(i * 7 + 3);
    cf_token_buf ids = {0};
    cf_tokenizer_encode(t, s, 300, &ids);
    int same = ids.n == 300;
    for (size_t i = 0; same && i < 300; i++) same = ids.ids[i] == s[i];
    CHECK(same, "byte tokenizer ids are not the bytes");
    CHECK(roundtrip(t, s, 300) && roundtrip(t, s, 0), "byte tokenizer round trip");
    /* its Hugging Face JSON loads as a BPE without merges and encodes any text to the same ids */
    char *json;
    size_t jl;
    CHECK(cf_tokenizer_to_json(t, &json, &jl) == CF_OK, "byte tokenizer to_json");
    cf_tokenizer *j = NULL;
    CHECK(cf_tokenizer_load_json(json, jl, "byte.json", &j) == CF_OK, "byte tokenizer JSON loads");
    if (j) {
        for (int trial = 0; trial < 50; trial++) {
            uint8_t buf[512];
            size_t n = random_text(buf, sizeof buf);
            cf_token_buf a = {0}, b = {0};
            cf_tokenizer_encode(t, buf, n, &a);
            cf_tokenizer_encode(j, buf, n, &b);
            /* the JSON form has no added tokens, so <|endoftext|> stays bytes there too */
            CHECK(same_ids(&a, &b, "byte JSON"),
                  "byte tokenizer JSON encodes differently (trial %d)", trial);
            cf_token_buf_free(&a);
            cf_token_buf_free(&b);
        }
        cf_tokenizer_free(j);
    }
    free(json);
    cf_token_buf_free(&ids);
    cf_tokenizer_free(t);
}

static void test_roundtrip(const cf_tokenizer *t) {
    CHECK(roundtrip(t, (const uint8_t *)"", 0), "empty string");
    const char *invalid[] = {"\xff\xfe\xfd",
                             "\xc0\x80",
                             "\xed\xa0\x80\xed\xbf\xbf",
                             "\xf4\x90\x80\x80",
                             "abc\xe2\x82",
                             "\xe2\x82 x",
                             "\x80",
                             "caf\xc3",
                             "<|endoftext|>\xff<|endoftext|>",
                             "\0\0\0 \0"};
    for (size_t k = 0; k < sizeof invalid / sizeof *invalid; k++) {
        size_t n = k == 9 ? 5 : strlen(invalid[k]);
        CHECK(roundtrip(t, (const uint8_t *)invalid[k], n), "invalid UTF-8 case %zu", k);
    }
    uint8_t buf[4096];
    for (int trial = 0; trial < 200; trial++) {
        size_t n = rnd() % sizeof buf;
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rnd();
        CHECK(roundtrip(t, buf, n), "random bytes, trial %d (%zu bytes)", trial, n);
    }
    for (int trial = 0; trial < 200; trial++) {
        size_t n = random_text(buf, sizeof buf);
        CHECK(roundtrip(t, buf, n), "random text, trial %d", trial);
    }
}

static void test_reference_encode(const cf_tokenizer *t, const char *json, const uint8_t *corpus,
                                  size_t clen) {
    ref_tok r;
    CHECK(ref_load(json, &r) == 0, "reference cannot parse the JSON");
    cf_tok_encoder *enc;
    cf_tok_encoder_new(t, &enc);
    /* the fixture in pieces, random texts, and long runs (the heap path of long words) */
    size_t checked = 0;
    for (size_t off = 0; off < clen; off += 4000) {
        size_t n = clen - off < 4000 ? clen - off : 4000;
        cf_token_buf a = {0}, b = {0};
        cf_tok_encoder_encode(enc, corpus + off, n, &a);
        ref_encode(&r, corpus + off, n, &b);
        CHECK(same_ids(&a, &b, "fixture"),
              "encode differs from the reference at fixture offset %zu", off);
        checked += a.n;
        cf_token_buf_free(&a);
        cf_token_buf_free(&b);
    }
    for (int trial = 0; trial < 300; trial++) {
        uint8_t buf[600];
        size_t n = random_text(buf, sizeof buf);
        if (trial % 10 == 0) { /* a long word: a letter run, a digit run or a space run */
            const char *unit = trial % 30 == 0 ? "ab" : trial % 30 == 10 ? "7" : " ";
            n = 0;
            while (n + 2 < 200) n += (size_t)snprintf((char *)buf + n, sizeof buf - n, "%s", unit);
            buf[n++] = 'x';
        }
        cf_token_buf a = {0}, b = {0};
        cf_tok_encoder_encode(enc, buf, n, &a);
        ref_encode(&r, buf, n, &b);
        CHECK(same_ids(&a, &b, "random"), "encode differs from the reference on random text %d",
              trial);
        checked += a.n;
        cf_token_buf_free(&a);
        cf_token_buf_free(&b);
    }
    printf("encode vs naive reference: %zu ids compared\n", checked);
    cf_tok_encoder_free(enc);
    ref_free(&r);
}

static void test_training(const uint8_t *corpus, size_t clen, char **json_out) {
    const uint32_t V = 600;
    char *j1 = NULL, *j2 = NULL, *j3 = NULL, *j4 = NULL;
    size_t l1 = 0, l2 = 0, l3 = 0, l4 = 0;
    cf_bpe_train_stats st;
    CHECK(cf_tokenizer_train_text(corpus, clen, V, &j1, &l1, &st) == CF_OK, "train_text");
    CHECK(cf_tokenizer_train_text(corpus, clen, V, &j2, &l2, NULL) == CF_OK, "train_text again");
    CHECK(l1 == l2 && j1 && j2 && !memcmp(j1, j2, l1), "training twice gives different files");
    CHECK(st.vocab_size == V && st.merges == V - 257, "vocab %u, merges %u (expected %u, %u)",
          st.vocab_size, st.merges, V, V - 257);
    /* from the file, streamed in 1000-byte pieces on one thread and in one piece on all threads */
    char out3[256], out4[256];
    snprintf(out3, sizeof out3, "%s/test_tokenizer_%ld_a.json", CF_BINARY_DIR, (long)getpid());
    snprintf(out4, sizeof out4, "%s/test_tokenizer_%ld_b.json", CF_BINARY_DIR, (long)getpid());
    const char *in[] = {CF_SOURCE_DIR "/tests/fixtures/tokenizer_corpus.txt"};
    cf_bpe_train_opts o = {V, in, 1, out3, 1, 0, 1000};
    CHECK(cf_tokenizer_train(&o, NULL) == CF_OK, "train from file, small pieces");
    cf_bpe_train_opts o2 = {V, in, 1, out4, 0, 0, 0};
    CHECK(cf_tokenizer_train(&o2, NULL) == CF_OK, "train from file");
    CHECK(cf_read_file(out3, &j3, &l3) == CF_OK && cf_read_file(out4, &j4, &l4) == CF_OK,
          "read trained files");
    CHECK(j3 && l3 == l1 && !memcmp(j3, j1, l1),
          "streamed 1-thread training differs from in-memory training");
    CHECK(j4 && l4 == l1 && !memcmp(j4, j1, l1), "file training differs from in-memory training");
    remove(out3);
    remove(out4);
    /* the merges equal those of a naive trainer that recounts every pair after every merge */
    uint32_t *ref = malloc(2 * V * sizeof *ref);
    int nm = ref_train(corpus, clen, V, ref);
    ref_tok r;
    ref_load(j1, &r);
    CHECK(nm == r.nm, "naive trainer learned %d merges, clformer %d", nm, r.nm);
    int first_bad = -1;
    for (int k = 0; k < nm && k < r.nm && first_bad < 0; k++) {
        int ia = -1, ib = -1; /* clformer's merge k as ids, found by name in its vocab */
        for (int v = 0; v < r.nv; v++) {
            if (!strcmp(r.vocab[v], r.ml[k])) ia = v;
            if (!strcmp(r.vocab[v], r.mr[k])) ib = v;
        }
        if (ia != (int)ref[2 * k] || ib != (int)ref[2 * k + 1]) first_bad = k;
    }
    CHECK(first_bad < 0,
          "merge %d differs from the naive trainer's: clformer \"%s %s\", naive ids (%u, %u)",
          first_bad, first_bad >= 0 ? r.ml[first_bad] : "", first_bad >= 0 ? r.mr[first_bad] : "",
          first_bad >= 0 ? ref[2 * first_bad] : 0, first_bad >= 0 ? ref[2 * first_bad + 1] : 0);
    printf(
        "training: %d merges equal to the naive trainer's, deterministic across runs and threads\n",
        nm);
    ref_free(&r);
    free(ref);
    free(j2);
    free(j3);
    free(j4);
    *json_out = j1;
}

static void test_cuts(const cf_tokenizer *t) {
    cf_specials sp = {1, {(const uint8_t *)"<|endoftext|>"}, {13}, {0}};
    int checked = 0;
    for (int trial = 0; trial < 400; trial++) {
        uint8_t buf[800];
        size_t n = random_text(buf, sizeof buf);
        if (n < 4) continue;
        size_t p = cf_pretok_find_cut(&sp, buf, n, 1 + rnd() % (n - 1), 0);
        if (!p) continue;
        /* pieces of the whole text vs pieces of the two halves */
        cf_token_buf a = {0}, b = {0};
        cf_tokenizer_encode(t, buf, n, &a);
        cf_tokenizer_encode(t, buf, p, &b);
        cf_tokenizer_encode(t, buf + p, n - p, &b);
        CHECK(same_ids(&a, &b, "cut"), "cut at %zu of %zu changes the encoding (trial %d)", p, n,
              trial);
        size_t i = 0, ends_at_p = 0;
        while (i < p) i = cf_pretok_next(buf, n, i);
        ends_at_p = i == p;
        CHECK(ends_at_p, "cut at %zu is not a piece boundary (trial %d)", p, trial);
        checked++;
        cf_token_buf_free(&a);
        cf_token_buf_free(&b);
    }
    CHECK(checked > 100, "only %d texts had a cut point", checked);
}

static void test_parallel(const cf_tokenizer *t, const uint8_t *corpus, size_t clen) {
    /* a few MB: the fixture repeated with varying joins, so encode splits it across threads */
    size_t n = 0, cap = (size_t)3 << 20;
    uint8_t *big = malloc(cap + clen + 64);
    int k = 0;
    while (n < cap) {
        memcpy(big + n, corpus, clen);
        n += clen;
        n += (size_t)snprintf((char *)big + n, 64,
                              k % 3 == 0   ? "<|endoftext|>"
                              : k % 3 == 1 ? "  \n"
                                           : "x%d",
                              k);
        k++;
    }
    cf_token_buf a = {0}, b = {0};
    cf_tok_encoder *e;
    cf_tok_encoder_new(t, &e);
    CHECK(cf_tok_encoder_encode(e, big, n, &a) == CF_OK, "single-thread encode");
    CHECK(cf_tokenizer_encode(t, big, n, &b) == CF_OK, "parallel encode");
    CHECK(same_ids(&a, &b, "parallel"), "parallel encode of %zu bytes differs from one thread", n);
    cf_tok_encoder_free(e);
    cf_token_buf_free(&a);
    cf_token_buf_free(&b);
    free(big);
}

/* Training on a few MB (several counting segments, all threads) equals training on the same text
 * streamed from a file in 100 KB pieces on one thread. */
static void test_training_big(const uint8_t *corpus, size_t clen) {
    size_t n = 0, cap = (size_t)3 << 20;
    uint8_t *big = malloc(cap + clen + 64);
    for (int k = 0; n < cap; k++) {
        memcpy(big + n, corpus, clen);
        n += clen;
        n += (size_t)snprintf((char *)big + n, 64, " variant%d <|endoftext|>", k % 97);
    }
    char *j1 = NULL, *j2 = NULL;
    size_t l1 = 0, l2 = 0;
    CHECK(cf_tokenizer_train_text(big, n, 700, &j1, &l1, NULL) == CF_OK, "train on %zu bytes", n);
    char path[256], out[256];
    snprintf(path, sizeof path, "%s/test_tokenizer_%ld_big.txt", CF_BINARY_DIR, (long)getpid());
    snprintf(out, sizeof out, "%s/test_tokenizer_%ld_big.json", CF_BINARY_DIR, (long)getpid());
    CHECK(cf_write_file_atomic(path, big, n) == CF_OK, "write %s", path);
    const char *in[] = {path};
    cf_bpe_train_opts o = {700, in, 1, out, 1, 0, 100000};
    CHECK(cf_tokenizer_train(&o, NULL) == CF_OK, "train streamed");
    CHECK(cf_read_file(out, &j2, &l2) == CF_OK, "read %s", out);
    CHECK(j1 && j2 && l1 == l2 && !memcmp(j1, j2, l1),
          "%zu-byte text: parallel in-memory training differs from streamed one-thread training",
          n);
    remove(path);
    remove(out);
    free(j1);
    free(j2);
    free(big);
}

static int load_fails(const char *json, const char *what, const char *expect_in_msg) {
    cf_tokenizer *t = NULL;
    g_msg[0] = 0;
    int rc = cf_tokenizer_load_json(json, strlen(json), "bad.json", &t);
    cf_tokenizer_free(t);
    int ok = rc < 0 && strstr(g_msg, "bad.json") && strstr(g_msg, expect_in_msg);
    if (!ok) printf("  %s: rc %d, message \"%s\"\n", what, rc, g_msg);
    return ok;
}

/* good with text inserted right after the first occurrence of anchor (malloc'ed; NULL if absent). */
static char *splice(const char *good, const char *anchor, const char *text) {
    const char *a = strstr(good, anchor);
    if (!a) return NULL;
    size_t pre = (size_t)(a - good) + strlen(anchor);
    char *s = malloc(strlen(good) + strlen(text) + 1);
    memcpy(s, good, pre);
    strcpy(s + pre, text);
    strcat(s, good + pre);
    return s;
}

/* Files whose encode/decode could not round-trip: ids shared by an added token and a vocab entry
 * of other content, one id on two added tokens, keys or contents cut at an escaped NUL, a vocab
 * key listed twice. Each is refused naming the entry. */
static void test_ambiguous_entries(const char *good) {
    cf_tokenizer *t = NULL;
    if (cf_tokenizer_load_json(good, strlen(good), "good.json", &t) != CF_OK) return;
    uint32_t V = cf_tokenizer_vocab_size(t);
    int32_t eot = cf_tokenizer_eot_id(t);
    cf_tokenizer_free(t);
    char buf[256], id_eot[32];
    snprintf(id_eot, sizeof id_eot, "\"id\": %d", (int)eot);
    /* the end-of-text added token moved onto id 260, a merge result in vocab */
    const char *a = strstr(good, "\"added_tokens\"");
    const char *p = a ? strstr(a, id_eot) : NULL;
    CHECK(p, "no added end-of-text token in the trained JSON");
    if (p) {
        char *s = strdup(good);
        size_t off = (size_t)(p - good);
        snprintf(buf, sizeof buf, "\"id\": 260%*s", (int)(strlen(id_eot) - strlen("\"id\": 260")),
                 "");
        memcpy(s + off, buf, strlen(id_eot));
        CHECK(load_fails(s, "added token on a vocab id", "share id 260") &&
                  strstr(g_msg, "<|endoftext|>"),
              "an added token sharing a vocab entry's id was accepted");
        free(s);
    }
    snprintf(buf, sizeof buf, "{\"id\": %d, \"content\": \"<|pad|>\"}, ", (int)eot);
    char *s = splice(good, "\"added_tokens\": [", buf);
    CHECK(s && load_fails(s, "two added tokens on one id", "<|pad|>"),
          "two added tokens with one id were accepted");
    free(s);
    snprintf(buf, sizeof buf, "{\"id\": %u, \"content\": \"<|a\\u0000b|>\"}, ", V);
    s = splice(good, "\"added_tokens\": [", buf);
    CHECK(s && load_fails(s, "NUL in an added token", "<|a\\u0000b|>"),
          "an added token holding \\u0000 was accepted");
    free(s);
    snprintf(buf, sizeof buf, "\"zq\\u0000\": %u, ", V);
    s = splice(good, "\"vocab\": {", buf);
    CHECK(s && load_fails(s, "NUL in a vocab key", "\"zq\\u0000\""),
          "a vocab key holding \\u0000 was accepted");
    free(s);
    snprintf(buf, sizeof buf, "\"!\": %u, ", V);
    s = splice(good, "\"vocab\": {", buf);
    CHECK(s && load_fails(s, "a vocab key twice", "appears twice"),
          "a vocab key listed twice was accepted");
    free(s);
}

static void test_format_errors(const char *good) {
    test_ambiguous_entries(good);
    CHECK(load_fails("{\"model\": ", "truncated JSON", "not valid JSON"),
          "truncated JSON accepted");
    CHECK(load_fails("{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\": "
                     "\"BPE\", \"vocab\": {}, "
                     "\"merges\": []}}",
                     "whitespace pre-tokenizer", "Whitespace"),
          "non-byte-level pre-tokenizer accepted");
    CHECK(load_fails("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "WordPiece", "BPE"),
          "WordPiece accepted");
    /* the good file with one byte symbol renamed, and with a merge naming a missing token */
    char *s = strdup(good);
    char *v = strstr(s, "\"!\": 33,");
    if (v) memcpy(v, "\"Q!\":33,", 8); /* a key no merge makes, so only byte 0x21 is missing */
    CHECK(v && load_fails(s, "missing byte symbol", "byte 0x21"),
          "vocab without a byte symbol accepted");
    free(s);
    const char *m = strstr(good, "\"merges\": [");
    if (m) {
        size_t pre = (size_t)(m - good) + strlen("\"merges\": [");
        const char *bad = "\"\xc4\x80\xc4\x80\xc4\x80 \xc4\x80\xc4\x80\xc4\x80\", ";
        s = malloc(strlen(good) + strlen(bad) + 1);
        memcpy(s, good, pre);
        strcpy(s + pre, bad);
        strcat(s, good + pre);
        CHECK(load_fails(s, "bad merge", "merge 0"), "merge naming missing tokens accepted");
        free(s);
    }
    CHECK(m, "no merges in the trained JSON");
    cf_tokenizer *t = NULL;
    g_msg[0] = 0;
    CHECK(cf_tokenizer_load("/nonexistent/tok.json", &t) < 0 &&
              strstr(g_msg, "/nonexistent/tok.json"),
          "missing file: \"%s\"", g_msg);
}

int main(void) {
    cf_log_set_callback(capture_log, NULL);
    ref_init_alphabet();
    size_t clen;
    char *corpus = read_fixture(&clen);
    if (!corpus) {
        printf("FAIL: cannot read the fixture corpus\n");
        return 1;
    }
    test_alphabet();
    test_byte_tokenizer();
    char *json = NULL;
    test_training((const uint8_t *)corpus, clen, &json);
    cf_tokenizer *t = NULL;
    if (json)
        CHECK(cf_tokenizer_load_json(json, strlen(json), "trained.json", &t) == CF_OK,
              "load trained JSON");
    if (t) {
        CHECK(cf_tokenizer_vocab_size(t) == 600 && cf_tokenizer_eot_id(t) == 599, "vocab %u eot %d",
              cf_tokenizer_vocab_size(t), cf_tokenizer_eot_id(t));
        CHECK(cf_tokenizer_hash(t) == cf_hash64(json, strlen(json), 0),
              "hash is not that of the file contents");
        test_roundtrip(t);
        test_reference_encode(t, json, (const uint8_t *)corpus, clen);
        test_cuts(t);
        test_parallel(t, (const uint8_t *)corpus, clen);
        test_training_big((const uint8_t *)corpus, clen);
        test_format_errors(json);
        /* compression: the trained tokenizer must beat bytes clearly on its own corpus */
        cf_token_buf ids = {0};
        cf_tokenizer_encode(t, (const uint8_t *)corpus, clen, &ids);
        printf("fixture: %zu bytes -> %zu ids (%.2f bytes/id)\n", clen, ids.n,
               (double)clen / (double)ids.n);
        CHECK(ids.n * 2 < clen, "600-id BPE gives %zu ids for %zu bytes", ids.n, clen);
        cf_token_buf_free(&ids);
        cf_tokenizer_free(t);
    }
    free(json);
    free(corpus);
    if (g_fail) {
        printf("%d check(s) failed\n", g_fail);
        return 1;
    }
    printf("all tokenizer checks passed\n");
    return 0;
}
