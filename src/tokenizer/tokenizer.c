/* clformer: tokenizers behind one API: the built-in byte tokenizer and byte-level BPE in the
 * Hugging Face `tokenizers` JSON format (reading, writing, encoding, decoding). */
#define _POSIX_C_SOURCE 200809L
#include "tokenizer/tok_internal.h"

#include <cjson/cJSON.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clformer/common.h"

/* ---- small buffers
 * ------------------------------------------------------------------------------- */

int cf_token_buf_reserve(cf_token_buf *b, size_t cap) {
    if (cap <= b->cap) return CF_OK;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < cap) ncap *= 2;
    uint32_t *ni = realloc(b->ids, ncap * sizeof *ni);
    if (!ni) return CF_ERR_NOMEM;
    b->ids = ni;
    b->cap = ncap;
    return CF_OK;
}

int cf_token_buf_push(cf_token_buf *b, uint32_t id) {
    if (b->n == b->cap) CF_TRY(cf_token_buf_reserve(b, b->n + 1));
    b->ids[b->n++] = id;
    return CF_OK;
}

void cf_token_buf_free(cf_token_buf *b) {
    free(b->ids);
    b->ids = NULL;
    b->n = b->cap = 0;
}

void cf_sbuf_put(cf_sbuf *b, const void *data, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        while (ncap < b->n + n + 1) ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
}

void cf_sbuf_puts(cf_sbuf *b, const char *s) { cf_sbuf_put(b, s, strlen(s)); }

void cf_sbuf_printf(cf_sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    cf_sbuf_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* ---- writing the JSON format
 * --------------------------------------------------------------------- */

/* A JSON string literal of UTF-8 text (escapes quote, backslash and control characters). */
static void json_string_utf8(cf_sbuf *b, const uint8_t *s, size_t n) {
    cf_sbuf_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        cf_sbuf_put(b, s + run, i - run);
        if (c == '"')
            cf_sbuf_puts(b, "\\\"");
        else if (c == '\\')
            cf_sbuf_puts(b, "\\\\");
        else
            cf_sbuf_printf(b, "\\u%04x", c);
        run = i + 1;
    }
    cf_sbuf_put(b, s + run, n - run);
    cf_sbuf_put(b, "\"", 1);
}

/* Token bytes as their byte-level string (every byte one printable code point), UTF-8. */
static void bytelevel_string(cf_sbuf *b, const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint8_t u[4];
        size_t k = cf_utf8_encode(cf_bytelevel_cp(s[i]), u);
        cf_sbuf_put(b, u, k);
    }
}

int cf_bpe_write_json(const uint8_t *const *tok, const size_t *len, uint32_t n_tokens,
                      const uint32_t *merges, uint32_t n_merges, int32_t eot, char **out,
                      size_t *out_len) {
    cf_sbuf b = {0}, s = {0};
    cf_sbuf_puts(&b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n");
    cf_sbuf_puts(&b, "  \"added_tokens\": [");
    if (eot >= 0) {
        cf_sbuf_printf(&b, "\n    {\n      \"id\": %d,\n      \"content\": ", (int)eot);
        json_string_utf8(&b, tok[eot], len[eot]);
        cf_sbuf_puts(
            &b,
            ",\n      \"single_word\": false,\n      \"lstrip\": false,\n      \"rstrip\": false,\n"
            "      \"normalized\": true,\n      \"special\": true\n    }\n  ");
    }
    cf_sbuf_puts(&b, "],\n  \"normalizer\": null,\n");
    cf_sbuf_puts(
        &b,
        "  \"pre_tokenizer\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": false,\n"
        "    \"trim_offsets\": true,\n    \"use_regex\": true\n  },\n");
    cf_sbuf_puts(
        &b,
        "  \"post_processor\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": true,\n"
        "    \"trim_offsets\": false,\n    \"use_regex\": true\n  },\n");
    cf_sbuf_puts(&b,
                 "  \"decoder\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": true,\n"
                 "    \"trim_offsets\": true,\n    \"use_regex\": true\n  },\n");
    cf_sbuf_puts(
        &b,
        "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
        "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
        "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n"
        "    \"vocab\": {");
    for (uint32_t i = 0; i < n_tokens; i++) {
        cf_sbuf_puts(&b, i ? ",\n      " : "\n      ");
        s.n = 0;
        if ((int32_t)i == eot)
            cf_sbuf_put(&s, tok[i], len[i]); /* the added token is stored as its text */
        else
            bytelevel_string(&s, tok[i], len[i]);
        json_string_utf8(&b, (const uint8_t *)s.p, s.n);
        cf_sbuf_printf(&b, ": %u", i);
    }
    cf_sbuf_puts(&b, "\n    },\n    \"merges\": [");
    for (uint32_t k = 0; k < n_merges; k++) {
        /* "a b": byte-level strings never contain a space (it is written as U+0120) */
        cf_sbuf_puts(&b, k ? ",\n      " : "\n      ");
        s.n = 0;
        bytelevel_string(&s, tok[merges[2 * k]], len[merges[2 * k]]);
        cf_sbuf_put(&s, " ", 1);
        bytelevel_string(&s, tok[merges[2 * k + 1]], len[merges[2 * k + 1]]);
        json_string_utf8(&b, (const uint8_t *)s.p, s.n);
    }
    cf_sbuf_puts(&b, n_merges ? "\n    ]\n  }\n}\n" : "]\n  }\n}\n");
    free(s.p);
    if (b.oom || s.oom) {
        free(b.p);
        CF_ERROR("out of memory writing tokenizer JSON (%u tokens)", n_tokens);
        return CF_ERR_NOMEM;
    }
    *out = b.p;
    *out_len = b.n;
    return CF_OK;
}

/* ---- construction
 * -------------------------------------------------------------------------------- */

void cf_tokenizer_free(cf_tokenizer *t) {
    if (!t) return;
    free(t->name);
    free(t->tok_bytes);
    free(t->tok_off);
    free(t->mkey);
    free(t->mval);
    cf_strmap_free(&t->vocab);
    free(t->special_bytes);
    free(t->json);
    free(t);
}

int cf_tokenizer_byte(cf_tokenizer **out) {
    *out = NULL;
    cf_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return CF_ERR_NOMEM;
    t->kind = CF_TOKENIZER_BYTE;
    t->vocab_size = 256;
    t->eot = -1;
    t->hash = CF_TOKENIZER_BYTE_HASH;
    t->name = strdup("byte");
    t->tok_bytes = malloc(256);
    t->tok_off = malloc(257 * sizeof *t->tok_off);
    if (!t->name || !t->tok_bytes || !t->tok_off) {
        cf_tokenizer_free(t);
        return CF_ERR_NOMEM;
    }
    for (int i = 0; i < 256; i++) {
        t->tok_bytes[i] = (uint8_t)i;
        t->tok_off[i] = (uint64_t)i;
        t->byte_id[i] = (uint32_t)i;
    }
    t->tok_off[256] = 256;
    *out = t;
    return CF_OK;
}

/* ---- reading the JSON format
 * --------------------------------------------------------------------- */

/* Byte-level string (UTF-8) -> bytes; -1 when a character is outside the byte-level alphabet. */
static long bytelevel_decode(const char *s, uint8_t *out) {
    const uint8_t *p = (const uint8_t *)s;
    size_t n = strlen(s), i = 0;
    long k = 0;
    while (i < n) {
        uint32_t cp;
        i += cf_utf8_decode(p + i, n - i, &cp);
        int b = cp == CF_UTF8_INVALID ? -1 : cf_bytelevel_byte(cp);
        if (b < 0) return -1;
        out[k++] = (uint8_t)b;
    }
    return k;
}

static int json_is_false_or_absent(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return !v || cJSON_IsNull(v) || cJSON_IsFalse(v);
}

static int json_is_empty_string_or_absent(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return !v || cJSON_IsNull(v) || (cJSON_IsString(v) && v->valuestring[0] == 0);
}

static int check_bytelevel(const cJSON *pt, const char *origin, const char *field) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pt, "type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "ByteLevel") != 0) {
        CF_ERROR("tokenizer %s: %s type '%s' is not supported; clformer reads byte-level BPE files "
                 "(ByteLevel pre-tokenizer), e.g. from `clformer tokenizer train`",
                 origin, field, cJSON_IsString(type) ? type->valuestring : "?");
        return CF_ERR_UNSUPPORTED;
    }
    if (!json_is_false_or_absent(pt, "add_prefix_space")) {
        CF_ERROR("tokenizer %s: %s.add_prefix_space is true; clformer supports false only (so "
                 "decode gives "
                 "back the exact input)",
                 origin, field);
        return CF_ERR_UNSUPPORTED;
    }
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(pt, "use_regex");
    if (re && cJSON_IsFalse(re)) {
        CF_ERROR(
            "tokenizer %s: %s.use_regex is false; clformer supports the GPT-2 split regex only",
            origin, field);
        return CF_ERR_UNSUPPORTED;
    }
    return CF_OK;
}

static int merges_insert(cf_tokenizer *t, uint32_t a, uint32_t b, uint32_t rank, uint32_t id) {
    uint64_t key = ((uint64_t)a << 32) | b;
    size_t j = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (t->mcap - 1);
    while (t->mval[j]) {
        if (t->mkey[j] == key) return 0; /* a repeated merge keeps its first (lowest) rank */
        j = (j + 1) & (t->mcap - 1);
    }
    t->mkey[j] = key;
    t->mval[j] = ((uint64_t)(rank + 1) << 32) | id;
    return 1;
}

/* cJSON ends a string at an escaped NUL (\u0000), so a key or content holding one would be cut
 * silently and encode/decode would not round-trip. Returns the offset of the first string
 * literal holding one (*lit_len its length with the quotes), or -1. */
static long find_escaped_nul(const char *json, size_t len, size_t *lit_len) {
    long start = -1;
    for (size_t i = 0; i < len; i++) {
        if (start < 0) {
            if (json[i] == '"') start = (long)i;
            continue;
        }
        if (json[i] == '"') {
            start = -1;
        } else if (json[i] == '\\' && i + 1 < len) {
            if (json[i + 1] == 'u' && i + 5 < len && json[i + 2] == '0' && json[i + 3] == '0' &&
                json[i + 4] == '0' && json[i + 5] == '0') {
                size_t e = i + 6;
                while (e < len && json[e] != '"') e += json[e] == '\\' ? 2 : 1;
                *lit_len = (e < len ? e + 1 : len) - (size_t)start;
                return start;
            }
            i++; /* the escaped character */
        }
    }
    return -1;
}

int cf_tokenizer_load_json(const char *json, size_t len, const char *origin, cf_tokenizer **out) {
    *out = NULL;
    int rc = CF_ERR_FORMAT;
    cf_tokenizer *t = NULL;
    cf_strmap smap = {0}; /* byte-level string -> id */
    uint8_t **tokb = NULL;
    size_t *tokn = NULL;
    uint8_t *scratch = NULL;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        const char *at = cJSON_GetErrorPtr();
        long off = (at && at >= json && at <= json + len) ? (long)(at - json) : -1;
        CF_ERROR(
            "tokenizer %s: not valid JSON (near byte %ld); expected a Hugging Face tokenizer.json",
            origin, off);
        goto done;
    }
    size_t lit_len = 0;
    long lit = find_escaped_nul(json, len, &lit_len);
    if (lit >= 0) {
        CF_ERROR("tokenizer %s: the string %.*s%s at byte %ld holds \\u0000 (a NUL character), "
                 "which clformer cannot represent in a token; remove or change that entry",
                 origin, (int)(lit_len > 80 ? 80 : lit_len), json + lit, lit_len > 80 ? "..." : "",
                 lit);
        goto done;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = model ? cJSON_GetObjectItemCaseSensitive(model, "vocab") : NULL;
    const cJSON *merges = model ? cJSON_GetObjectItemCaseSensitive(model, "merges") : NULL;
    const cJSON *mtype = model ? cJSON_GetObjectItemCaseSensitive(model, "type") : NULL;
    if (!cJSON_IsObject(model) || !cJSON_IsObject(vocab) || !cJSON_IsArray(merges) ||
        (mtype && (!cJSON_IsString(mtype) || strcmp(mtype->valuestring, "BPE") != 0))) {
        CF_ERROR("tokenizer %s: model is not BPE with vocab and merges (type '%s'); clformer reads "
                 "byte-level "
                 "BPE tokenizer.json files",
                 origin, cJSON_IsString(mtype) ? mtype->valuestring : "?");
        rc = CF_ERR_UNSUPPORTED;
        goto done;
    }
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) {
        CF_ERROR("tokenizer %s: has a normalizer; clformer supports \"normalizer\": null only",
                 origin);
        rc = CF_ERR_UNSUPPORTED;
        goto done;
    }
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (!cJSON_IsObject(pt)) {
        CF_ERROR("tokenizer %s: pre_tokenizer missing; clformer needs the ByteLevel pre-tokenizer",
                 origin);
        rc = CF_ERR_UNSUPPORTED;
        goto done;
    }
    if ((rc = check_bytelevel(pt, origin, "pre_tokenizer")) < 0) goto done;
    rc = CF_ERR_UNSUPPORTED;
    if (!json_is_false_or_absent(model, "byte_fallback") ||
        !json_is_empty_string_or_absent(model, "continuing_subword_prefix") ||
        !json_is_empty_string_or_absent(model, "end_of_word_suffix")) {
        CF_ERROR("tokenizer %s: model uses byte_fallback, continuing_subword_prefix or "
                 "end_of_word_suffix, "
                 "which byte-level BPE does not; clformer does not support them",
                 origin);
        goto done;
    }
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) &&
        !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0)) {
        CF_ERROR("tokenizer %s: model.dropout is set; clformer encodes deterministically, set it "
                 "to null",
                 origin);
        goto done;
    }
    rc = CF_ERR_FORMAT;

    /* ids: vocab entries and added tokens; V = largest id + 1, every id in [0, V) must be named */
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added)) {
        CF_ERROR("tokenizer %s: added_tokens must be an array", origin);
        goto done;
    }
    long maxid = -1;
    size_t total_chars = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 16777215.0 ||
            it->valuedouble != (double)(long)it->valuedouble) {
            CF_ERROR(
                "tokenizer %s: vocab entry \"%s\" has id %g; ids must be integers in [0, 16777215]",
                origin, it->string, it->valuedouble);
            goto done;
        }
        if (it->valueint > maxid) maxid = it->valueint;
        total_chars += strlen(it->string);
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 16777215.0 ||
            id->valuedouble != (double)(long)id->valuedouble || !cJSON_IsString(content)) {
            CF_ERROR("tokenizer %s: added_tokens entry without an integer id and a content string",
                     origin);
            goto done;
        }
        if (id->valueint > maxid) maxid = id->valueint;
        total_chars += strlen(content->valuestring);
    }
    if (maxid < 255) {
        CF_ERROR(
            "tokenizer %s: vocab has %ld ids; a byte-level BPE has at least the 256 byte symbols",
            origin, maxid + 1);
        goto done;
    }
    uint32_t V = (uint32_t)maxid + 1;
    t = calloc(1, sizeof *t);
    tokb = calloc(V, sizeof *tokb);
    tokn = calloc(V, sizeof *tokn);
    scratch = malloc(total_chars + 1);
    if (!t || !tokb || !tokn || !scratch || cf_strmap_init(&smap, V) < 0) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    t->kind = CF_TOKENIZER_BPE;
    t->vocab_size = V;
    t->eot = -1;
    t->hash = cf_hash64(json, len, 0);
    size_t used = 0;
    uint8_t *present = calloc(V, 1);
    if (!present) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    /* added tokens first: their bytes are their content */
    cJSON_ArrayForEach(it, added) {
        uint32_t id = (uint32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valueint;
        const char *content = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
        size_t n = strlen(content);
        if (n == 0) {
            CF_ERROR("tokenizer %s: added token %u has empty content", origin, id);
            free(present);
            goto done;
        }
        if (present[id]) {
            CF_ERROR("tokenizer %s: added token \"%s\" has id %u, which the added token \"%.*s\" "
                     "already has; every id names one token",
                     origin, content, id, (int)tokn[id], (const char *)tokb[id]);
            free(present);
            goto done;
        }
        if (!json_is_false_or_absent(it, "lstrip") || !json_is_false_or_absent(it, "rstrip") ||
            !json_is_false_or_absent(it, "single_word")) {
            CF_ERROR("tokenizer %s: added token \"%s\" uses lstrip/rstrip/single_word, which "
                     "clformer does "
                     "not support",
                     origin, content);
            rc = CF_ERR_UNSUPPORTED;
            free(present);
            goto done;
        }
        if (t->sp.n == CF_TOK_MAX_SPECIALS) {
            CF_ERROR("tokenizer %s: more than %d added tokens", origin, CF_TOK_MAX_SPECIALS);
            rc = CF_ERR_UNSUPPORTED;
            free(present);
            goto done;
        }
        memcpy(scratch + used, content, n);
        tokb[id] = scratch + used;
        tokn[id] = n;
        used += n;
        present[id] = 2;
        t->sp.len[t->sp.n] = n;
        t->sp.id[t->sp.n] = id;
        t->sp.str[t->sp.n] = tokb[id];
        t->sp.n++;
        if (strcmp(content, CF_TOKENIZER_EOT) == 0) t->eot = (int32_t)id;
    }
    cJSON_ArrayForEach(it, vocab) {
        uint32_t id = (uint32_t)it->valueint;
        uint64_t *v;
        size_t sl = strlen(it->string);
        int ins = cf_strmap_upsert(&smap, it->string, sl, cf_strmap_hash(it->string, sl), &v);
        if (ins < 0) {
            rc = CF_ERR_NOMEM;
            free(present);
            goto done;
        }
        if (ins == 0) {
            CF_ERROR("tokenizer %s: vocab key \"%s\" appears twice (ids %u and %u); every token "
                     "has one id",
                     origin, it->string, (unsigned)*v, id);
            free(present);
            goto done;
        }
        *v = id;
        if (present[id] == 1) {
            CF_ERROR("tokenizer %s: id %u appears twice in vocab", origin, id);
            free(present);
            goto done;
        }
        if (present[id] == 2) {
            /* an added token that the vocab also lists: the same token (its content, raw or in
             * byte-level form), or two tokens on one id that cannot both encode and decode */
            long k = bytelevel_decode(it->string, scratch + used);
            if ((sl == tokn[id] && memcmp(it->string, tokb[id], sl) == 0) ||
                (k == (long)tokn[id] && memcmp(scratch + used, tokb[id], tokn[id]) == 0))
                continue;
            CF_ERROR("tokenizer %s: vocab entry \"%s\" and added token \"%.*s\" share id %u; "
                     "give the added token an id of its own (or list it in vocab under its "
                     "content)",
                     origin, it->string, (int)tokn[id], (const char *)tokb[id], id);
            free(present);
            goto done;
        }
        long k = bytelevel_decode(it->string, scratch + used);
        if (k < 0) {
            CF_ERROR("tokenizer %s: vocab token \"%s\" (id %u) is not a byte-level string; "
                     "clformer reads "
                     "byte-level BPE files",
                     origin, it->string, id);
            rc = CF_ERR_UNSUPPORTED;
            free(present);
            goto done;
        }
        tokb[id] = scratch + used;
        tokn[id] = (size_t)k;
        used += (size_t)k;
        present[id] = 1;
    }
    for (uint32_t i = 0; i < V; i++) {
        if (!present[i]) {
            CF_ERROR("tokenizer %s: id %u is neither in model.vocab nor in added_tokens; ids must "
                     "be 0..%u "
                     "without gaps",
                     origin, i, V - 1);
            free(present);
            goto done;
        }
    }
    free(present);
    for (int b = 0; b < 256; b++) {
        uint8_t u[5];
        size_t k = cf_utf8_encode(cf_bytelevel_cp((uint8_t)b), u);
        uint64_t *v = cf_strmap_find(&smap, u, k, cf_strmap_hash(u, k));
        if (!v) {
            u[k] = 0;
            CF_ERROR("tokenizer %s: vocab lacks \"%s\", the symbol of byte 0x%02x; a byte-level "
                     "BPE needs all 256",
                     origin, (char *)u, b);
            goto done;
        }
        t->byte_id[b] = (uint32_t)*v;
    }
    /* id -> bytes table */
    t->tok_off = malloc((V + 1) * sizeof *t->tok_off);
    t->tok_bytes = malloc(used ? used : 1);
    if (!t->tok_off || !t->tok_bytes) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    size_t off = 0;
    for (uint32_t i = 0; i < V; i++) {
        t->tok_off[i] = off;
        memcpy(t->tok_bytes + off, tokb[i], tokn[i]);
        off += tokn[i];
    }
    t->tok_off[V] = off;
    /* specials point into the final table */
    for (int k = 0; k < t->sp.n; k++) t->sp.str[k] = t->tok_bytes + t->tok_off[t->sp.id[k]];
    /* merges: "a b" strings or ["a", "b"] pairs, in rank order */
    uint32_t nm = (uint32_t)cJSON_GetArraySize(merges);
    t->mcap = 16;
    while (t->mcap < (size_t)nm * 2 + 2) t->mcap <<= 1;
    t->mkey = calloc(t->mcap, sizeof *t->mkey);
    t->mval = calloc(t->mcap, sizeof *t->mval);
    if (!t->mkey || !t->mval) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    cf_sbuf cat = {0};
    uint32_t rank = 0;
    cJSON_ArrayForEach(it, merges) {
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if (cJSON_IsString(it)) {
            const char *sp = strchr(it->valuestring, ' ');
            if (sp && sp != it->valuestring && !strchr(sp + 1, ' ')) {
                a = it->valuestring;
                la = (size_t)(sp - a);
                b = sp + 1;
                lb = strlen(b);
            }
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(it->child) &&
                   cJSON_IsString(it->child->next)) {
            a = it->child->valuestring;
            la = strlen(a);
            b = it->child->next->valuestring;
            lb = strlen(b);
        }
        uint64_t *ia = a ? cf_strmap_find(&smap, a, la, cf_strmap_hash(a, la)) : NULL;
        uint64_t *ib = b ? cf_strmap_find(&smap, b, lb, cf_strmap_hash(b, lb)) : NULL;
        cat.n = 0;
        if (ia && ib) {
            cf_sbuf_put(&cat, a, la);
            cf_sbuf_put(&cat, b, lb);
        }
        uint64_t *iz = (ia && ib && !cat.oom)
                           ? cf_strmap_find(&smap, cat.p, cat.n, cf_strmap_hash(cat.p, cat.n))
                           : NULL;
        if (!iz) {
            char *txt = cJSON_PrintUnformatted(it);
            CF_ERROR("tokenizer %s: merge %u (%s) is malformed or names tokens missing from vocab",
                     origin, rank, txt ? txt : "?");
            free(txt);
            free(cat.p);
            goto done;
        }
        merges_insert(t, (uint32_t)*ia, (uint32_t)*ib, rank, (uint32_t)*iz);
        rank++;
    }
    free(cat.p);
    t->n_merges = rank;
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(model, "ignore_merges");
    t->ignore_merges = cJSON_IsTrue(im);
    if (t->ignore_merges) {
        /* whole words found in the vocab map straight to their id */
        if (cf_strmap_init(&t->vocab, V) < 0) {
            rc = CF_ERR_NOMEM;
            goto done;
        }
        for (uint32_t i = 0; i < V; i++) {
            uint64_t *v;
            size_t n = t->tok_off[i + 1] - t->tok_off[i];
            const uint8_t *p = t->tok_bytes + t->tok_off[i];
            int r = cf_strmap_upsert(&t->vocab, p, n, cf_strmap_hash(p, n), &v);
            if (r < 0) {
                rc = CF_ERR_NOMEM;
                goto done;
            }
            if (r == 1) *v = i;
        }
    }
    t->json = malloc(len + 1);
    t->name = strdup(origin);
    if (!t->json || !t->name) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    memcpy(t->json, json, len);
    t->json[len] = 0;
    t->json_len = len;
    rc = CF_OK;
done:
    cJSON_Delete(root);
    cf_strmap_free(&smap);
    free(tokb);
    free(tokn);
    free(scratch);
    if (rc < 0) {
        if (rc == CF_ERR_NOMEM) CF_ERROR("tokenizer %s: out of memory while loading", origin);
        cf_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return CF_OK;
}

static int is_byte_spec(const char *spec) { return !spec || !spec[0] || strcmp(spec, "byte") == 0; }

int cf_tokenizer_load(const char *spec, cf_tokenizer **out) {
    *out = NULL;
    if (is_byte_spec(spec)) return cf_tokenizer_byte(out);
    char *data;
    size_t len;
    int rc = cf_read_file(spec, &data, &len);
    if (rc < 0) {
        CF_ERROR("tokenizer '%s' could not be read; train one with `clformer tokenizer train` or "
                 "use \"byte\"",
                 spec);
        return rc;
    }
    rc = cf_tokenizer_load_json(data, len, spec, out);
    free(data);
    return rc;
}

int cf_tokenizer_hash_of(const char *spec, uint64_t *hash) {
    if (is_byte_spec(spec)) {
        *hash = CF_TOKENIZER_BYTE_HASH;
        return CF_OK;
    }
    char *data;
    size_t len;
    CF_TRY(cf_read_file(spec, &data, &len));
    *hash = cf_hash64(data, len, 0);
    free(data);
    return CF_OK;
}

int cf_tokenizer_kind(const cf_tokenizer *t) { return t->kind; }
uint32_t cf_tokenizer_vocab_size(const cf_tokenizer *t) { return t->vocab_size; }
int32_t cf_tokenizer_eot_id(const cf_tokenizer *t) { return t->eot; }
uint64_t cf_tokenizer_hash(const cf_tokenizer *t) { return t->hash; }
const char *cf_tokenizer_name(const cf_tokenizer *t) { return t->name; }

const uint8_t *cf_tokenizer_token_bytes(const cf_tokenizer *t, uint32_t id, size_t *len) {
    if (id >= t->vocab_size) return NULL;
    *len = (size_t)(t->tok_off[id + 1] - t->tok_off[id]);
    return t->tok_bytes + t->tok_off[id];
}

int cf_tokenizer_to_json(const cf_tokenizer *t, char **json, size_t *len) {
    if (t->kind == CF_TOKENIZER_BPE) {
        *json = malloc(t->json_len + 1);
        if (!*json) return CF_ERR_NOMEM;
        memcpy(*json, t->json, t->json_len + 1);
        *len = t->json_len;
        return CF_OK;
    }
    const uint8_t *tok[256];
    size_t tl[256];
    for (int i = 0; i < 256; i++) {
        tok[i] = t->tok_bytes + i;
        tl[i] = 1;
    }
    return cf_bpe_write_json(tok, tl, 256, NULL, 0, -1, json, len);
}

/* ---- encoding
 * ------------------------------------------------------------------------------------ */

/* Words up to this many bytes are cached per encoder; the cache is emptied when it holds more than
 * CF_ENC_CACHE_IDS ids. */
#define CF_ENC_CACHE_WORD 256
#define CF_ENC_CACHE_IDS ((size_t)1 << 22)
/* Words up to this many bytes merge by rescanning an array; longer ones use a heap. */
#define CF_ENC_SHORT_WORD 48

typedef struct {
    uint32_t rank;
    uint32_t pos;
} heap_ent;

struct cf_tok_encoder {
    const cf_tokenizer *tok;
    cf_strmap cache; /* word bytes -> offset into cache_ids (count first, then the ids) */
    cf_token_buf cache_ids;
    uint32_t *sym, *rk; /* symbols and pair ranks of the word being merged */
    int32_t *prv, *nxt;
    heap_ent *heap;
    size_t cap, heap_cap;
};

int cf_tok_encoder_new(const cf_tokenizer *tok, cf_tok_encoder **out) {
    *out = NULL;
    cf_tok_encoder *e = calloc(1, sizeof *e);
    if (!e) return CF_ERR_NOMEM;
    e->tok = tok;
    if (tok->kind == CF_TOKENIZER_BPE && cf_strmap_init(&e->cache, 1 << 12) < 0) {
        free(e);
        return CF_ERR_NOMEM;
    }
    *out = e;
    return CF_OK;
}

void cf_tok_encoder_free(cf_tok_encoder *e) {
    if (!e) return;
    cf_strmap_free(&e->cache);
    cf_token_buf_free(&e->cache_ids);
    free(e->sym);
    free(e->rk);
    free(e->prv);
    free(e->nxt);
    free(e->heap);
    free(e);
}

static int enc_reserve(cf_tok_encoder *e, size_t n) {
    if (n <= e->cap) return CF_OK;
    size_t c = e->cap ? e->cap : 64;
    while (c < n) c *= 2;
    uint32_t *s = realloc(e->sym, c * sizeof *s);
    if (s) e->sym = s;
    uint32_t *r = realloc(e->rk, c * sizeof *r);
    if (r) e->rk = r;
    int32_t *p = realloc(e->prv, c * sizeof *p);
    if (p) e->prv = p;
    int32_t *q = realloc(e->nxt, c * sizeof *q);
    if (q) e->nxt = q;
    if (!s || !r || !p || !q) return CF_ERR_NOMEM;
    e->cap = c;
    return CF_OK;
}

static inline int heap_less(heap_ent a, heap_ent b) {
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static int heap_push(cf_tok_encoder *e, size_t *n, heap_ent x) {
    if (*n == e->heap_cap) {
        size_t c = e->heap_cap ? e->heap_cap * 2 : 256;
        heap_ent *h = realloc(e->heap, c * sizeof *h);
        if (!h) return CF_ERR_NOMEM;
        e->heap = h;
        e->heap_cap = c;
    }
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(x, e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = x;
    return CF_OK;
}

static heap_ent heap_pop(cf_tok_encoder *e, size_t *n) {
    heap_ent top = e->heap[0], x = e->heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(e->heap[c + 1], e->heap[c])) c++;
        if (!heap_less(e->heap[c], x)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (*n) e->heap[i] = x;
    return top;
}

/* BPE of one pre-token: repeatedly apply the lowest-ranked merge present, leftmost first (the rule
 * of Hugging Face tokenizers). Leaves the ids in e->sym[0..*m). */
static int bpe_word(cf_tok_encoder *e, const uint8_t *w, size_t n, size_t *m_out) {
    const cf_tokenizer *t = e->tok;
    CF_TRY(enc_reserve(e, n + 1));
    uint32_t *sym = e->sym, *rk = e->rk;
    for (size_t k = 0; k < n; k++) sym[k] = t->byte_id[w[k]];
    uint32_t id = 0;
    if (n <= CF_ENC_SHORT_WORD) {
        size_t m = n;
        for (size_t k = 0; k + 1 < m; k++)
            if (!cf_bpe_merge_lookup(t, sym[k], sym[k + 1], &rk[k], &id)) rk[k] = UINT32_MAX;
        while (m > 1) {
            size_t best = 0;
            for (size_t k = 1; k + 1 < m; k++)
                if (rk[k] < rk[best]) best = k;
            if (rk[best] == UINT32_MAX) break;
            uint32_t r;
            cf_bpe_merge_lookup(t, sym[best], sym[best + 1], &r, &id);
            sym[best] = id;
            memmove(sym + best + 1, sym + best + 2, (m - best - 2) * sizeof *sym);
            if (m > best + 3) memmove(rk + best + 1, rk + best + 2, (m - best - 3) * sizeof *rk);
            m--;
            if (best > 0 && !cf_bpe_merge_lookup(t, sym[best - 1], sym[best], &rk[best - 1], &id))
                rk[best - 1] = UINT32_MAX;
            if (best + 1 < m && !cf_bpe_merge_lookup(t, sym[best], sym[best + 1], &rk[best], &id))
                rk[best] = UINT32_MAX;
        }
        *m_out = m;
        return CF_OK;
    }
    /* long words: linked list of symbols and a heap of (rank, position) */
    int32_t *prv = e->prv, *nxt = e->nxt;
    size_t hn = 0;
    for (size_t k = 0; k < n; k++) {
        prv[k] = (int32_t)k - 1;
        nxt[k] = k + 1 < n ? (int32_t)k + 1 : -1;
    }
    for (size_t k = 0; k + 1 < n; k++) {
        uint32_t r;
        if (cf_bpe_merge_lookup(t, sym[k], sym[k + 1], &r, &id))
            CF_TRY(heap_push(e, &hn, (heap_ent){r, (uint32_t)k}));
    }
    const uint32_t dead = UINT32_MAX;
    while (hn) {
        heap_ent h = heap_pop(e, &hn);
        uint32_t p = h.pos, r;
        if (sym[p] == dead || nxt[p] < 0) continue;
        uint32_t q = (uint32_t)nxt[p];
        if (!cf_bpe_merge_lookup(t, sym[p], sym[q], &r, &id) || r != h.rank) continue; /* stale */
        sym[p] = id;
        sym[q] = dead;
        nxt[p] = nxt[q];
        if (nxt[q] >= 0) prv[nxt[q]] = (int32_t)p;
        if (prv[p] >= 0 && cf_bpe_merge_lookup(t, sym[prv[p]], sym[p], &r, &id))
            CF_TRY(heap_push(e, &hn, (heap_ent){r, (uint32_t)prv[p]}));
        if (nxt[p] >= 0 && cf_bpe_merge_lookup(t, sym[p], sym[nxt[p]], &r, &id))
            CF_TRY(heap_push(e, &hn, (heap_ent){r, p}));
    }
    size_t m = 0;
    for (int32_t k = 0; k >= 0; k = nxt[k]) sym[m++] = sym[k];
    *m_out = m;
    return CF_OK;
}

static int encode_word(cf_tok_encoder *e, const uint8_t *w, size_t n, cf_token_buf *out) {
    const cf_tokenizer *t = e->tok;
    uint64_t h = 0, *v = NULL;
    if (n <= CF_ENC_CACHE_WORD) {
        h = cf_strmap_hash(w, n);
        v = cf_strmap_find(&e->cache, w, n, h);
        if (v) {
            const uint32_t *c = e->cache_ids.ids + *v;
            CF_TRY(cf_token_buf_reserve(out, out->n + c[0]));
            memcpy(out->ids + out->n, c + 1, c[0] * sizeof *c);
            out->n += c[0];
            return CF_OK;
        }
    }
    if (t->ignore_merges) {
        uint64_t *id = cf_strmap_find(&t->vocab, w, n, cf_strmap_hash(w, n));
        if (id) return cf_token_buf_push(out, (uint32_t)*id);
    }
    size_t m;
    CF_TRY(bpe_word(e, w, n, &m));
    CF_TRY(cf_token_buf_reserve(out, out->n + m));
    memcpy(out->ids + out->n, e->sym, m * sizeof *e->sym);
    out->n += m;
    if (n <= CF_ENC_CACHE_WORD) {
        if (e->cache_ids.n + m + 1 > CF_ENC_CACHE_IDS) {
            cf_strmap_clear(&e->cache);
            e->cache_ids.n = 0;
        }
        size_t off = e->cache_ids.n;
        CF_TRY(cf_token_buf_push(&e->cache_ids, (uint32_t)m));
        CF_TRY(cf_token_buf_reserve(&e->cache_ids, off + 1 + m));
        memcpy(e->cache_ids.ids + off + 1, e->sym, m * sizeof *e->sym);
        e->cache_ids.n += m;
        if (cf_strmap_upsert(&e->cache, w, n, h, &v) < 0) return CF_ERR_NOMEM;
        *v = off;
    }
    return CF_OK;
}

int cf_tok_encoder_encode(cf_tok_encoder *e, const uint8_t *text, size_t n, cf_token_buf *out) {
    const cf_tokenizer *t = e->tok;
    if (t->kind == CF_TOKENIZER_BYTE) {
        CF_TRY(cf_token_buf_reserve(out, out->n + n));
        for (size_t i = 0; i < n; i++) out->ids[out->n + i] = text[i];
        out->n += n;
        return CF_OK;
    }
    size_t i = 0;
    while (i < n) {
        int which = -1;
        size_t s = t->sp.n ? cf_specials_find(&t->sp, text, n, i, &which) : n;
        while (i < s) {
            size_t j = cf_pretok_next(text, s, i);
            CF_TRY(encode_word(e, text + i, j - i, out));
            i = j;
        }
        if (which >= 0) {
            CF_TRY(cf_token_buf_push(out, t->sp.id[which]));
            i = s + t->sp.len[which];
        }
    }
    return CF_OK;
}

/* Inputs at least this large are split across threads. */
#define CF_ENC_PARALLEL_MIN ((size_t)1 << 20)

int cf_tokenizer_encode(const cf_tokenizer *tok, const uint8_t *text, size_t n, cf_token_buf *out) {
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (tok->kind == CF_TOKENIZER_BYTE || n < CF_ENC_PARALLEL_MIN || nt < 2) {
        cf_tok_encoder *e;
        CF_TRY(cf_tok_encoder_new(tok, &e));
        int rc = cf_tok_encoder_encode(e, text, n, out);
        cf_tok_encoder_free(e);
        return rc;
    }
    /* pieces of about 256 KB, cut where pre-tokenization is unaffected, encoded in parallel */
    size_t np_cap = n / (1 << 18) + 2, np = 0;
    size_t *cut = malloc((np_cap + 1) * sizeof *cut);
    cf_token_buf *part = calloc(np_cap, sizeof *part);
    cf_tok_encoder **enc = calloc((size_t)nt, sizeof *enc);
    int rc = (cut && part && enc) ? CF_OK : CF_ERR_NOMEM;
    if (rc == CF_OK) {
        cut[0] = 0;
        size_t pos = 0;
        while (pos < n) {
            size_t target = pos + (1 << 18), p = 0;
            if (target < n) p = cf_pretok_find_cut(&tok->sp, text, n, target, pos);
            if (!p || target >= n || np + 2 > np_cap) p = n;
            cut[++np] = p;
            pos = p;
        }
        for (int k = 0; k < nt && rc == CF_OK; k++) rc = cf_tok_encoder_new(tok, &enc[k]);
    }
    if (rc == CF_OK) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
        for (size_t k = 0; k < np; k++) {
            int r = cf_tok_encoder_encode(enc[omp_get_thread_num()], text + cut[k],
                                          cut[k + 1] - cut[k], &part[k]);
            if (r < 0) {
#pragma omp critical(cf_tok_encode_rc)
                rc = r;
            }
        }
    }
    if (rc == CF_OK) {
        size_t total = out->n;
        for (size_t k = 0; k < np; k++) total += part[k].n;
        rc = cf_token_buf_reserve(out, total);
        for (size_t k = 0; k < np && rc == CF_OK; k++) {
            memcpy(out->ids + out->n, part[k].ids, part[k].n * sizeof *part[k].ids);
            out->n += part[k].n;
        }
    }
    if (part)
        for (size_t k = 0; k < np; k++) cf_token_buf_free(&part[k]);
    if (enc)
        for (int k = 0; k < nt; k++) cf_tok_encoder_free(enc[k]);
    free(part);
    free(enc);
    free(cut);
    return rc;
}

/* ---- decoding
 * ------------------------------------------------------------------------------------ */

int cf_tokenizer_decode(const cf_tokenizer *t, const uint32_t *ids, size_t n, uint8_t **text,
                        size_t *len) {
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= t->vocab_size) {
            CF_ERROR("token id %u at position %zu is out of range for tokenizer %s (vocab size %u)",
                     ids[i], i, t->name, t->vocab_size);
            return CF_ERR_INVALID;
        }
        total += (size_t)(t->tok_off[ids[i] + 1] - t->tok_off[ids[i]]);
    }
    uint8_t *buf = malloc(total + 1);
    if (!buf) return CF_ERR_NOMEM;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)(t->tok_off[ids[i] + 1] - t->tok_off[ids[i]]);
        memcpy(buf + o, t->tok_bytes + t->tok_off[ids[i]], k);
        o += k;
    }
    buf[o] = 0;
    *text = buf;
    *len = o;
    return CF_OK;
}
