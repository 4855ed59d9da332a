/* clformer test: token shards (header validation with clear errors, multi-shard reads), `prepare`
 * (documents and end-of-text ids, exact splitting of long documents, deterministic train/val
 * split), and the training dataset reading shards. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clformer/common.h"
#include "clformer/config.h"
#include "data/dataset.h"
#include "data/shards.h"
#include "tokenizer/tokenizer.h"
#include "test_common.h"

static char g_dir[512];

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        printf("FAIL: cannot write %s\n", path);
        exit(1);
    }
    fwrite(data, 1, n, f);
    fclose(f);
}

static int files_equal(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    if (cf_read_file(a, &x, &nx) != CF_OK || cf_read_file(b, &y, &ny) != CF_OK) return 0;
    int eq = nx == ny && !memcmp(x, y, nx);
    free(x);
    free(y);
    return eq;
}

/* ---- header validation -------------------------------------------------------------------------
 */

/* A shard with tokens 0..n-1 (mod vocab), returns its path in out. */
static void make_shard(const char *name, uint32_t dtype, size_t n, uint64_t hash, char *out) {
    snprintf(out, 1024, "%s/%s", g_dir, name);
    cf_shard_writer *w;
    CHECK(cf_shard_writer_open(out, dtype, hash, 1000, 999, &w) == CF_OK, "writer open %s", out);
    uint32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    for (size_t i = 0; i < n; i++) ids[i] = (uint32_t)((i * 37) % 1000);
    CHECK(cf_shard_writer_append(w, ids, n) == CF_OK, "append");
    CHECK(cf_shard_writer_close(w) == CF_OK, "close");
    free(ids);
}

/* Open must fail with a one-line message naming the file and containing `word`. */
static void expect_bad(const char *label, const char *path, const cf_shard_expect *e,
                       const char *word) {
    cf_shard s;
    g_msg[0] = 0;
    int rc = cf_shard_open(path, e, &s);
    printf("  %-22s rc=%d: %s\n", label, rc, g_msg);
    CHECK(rc < 0, "%s: opened", label);
    CHECK(strstr(g_msg, path) && strstr(g_msg, word) && !strchr(g_msg, '\n'),
          "%s: message must name the file and say '%s': %s", label, word, g_msg);
    if (rc == CF_OK) cf_shard_close(&s);
}

static void patch(const char *path, long off, const void *bytes, size_t n) {
    FILE *f = fopen(path, "r+b");
    fseek(f, off, SEEK_SET);
    fwrite(bytes, 1, n, f);
    fclose(f);
}

static void test_headers(void) {
    printf("shard headers\n");
    char p[1024], q[1024];
    for (uint32_t dtype = 2; dtype <= 4; dtype += 2) {
        make_shard(dtype == 2 ? "ok16.bin" : "ok32.bin", dtype, 5000, 0xABCDull, p);
        cf_shard s;
        cf_shard_expect e = {1, 0xABCDull, "tok.json", 1000};
        CHECK(cf_shard_open(p, &e, &s) == CF_OK, "open good shard (dtype %u): %s", dtype, g_msg);
        int ok = s.info.count == 5000 && s.info.dtype == dtype && s.info.vocab_size == 1000 &&
                 s.info.eot_id == 999;
        for (size_t i = 0; ok && i < 5000; i++)
            ok = cf_shard_token(&s, i) == (uint32_t)((i * 37) % 1000);
        CHECK(ok, "dtype %u: header or tokens read back wrong", dtype);
        struct stat st;
        stat(p, &st);
        CHECK((size_t)st.st_size == 64 + 5000 * dtype, "file size %ld", (long)st.st_size);
        cf_shard_close(&s);
    }
    make_shard("ok16.bin", 2, 5000, 0xABCDull, p);
    cf_shard_expect e = {1, 0xABCDull, "tok.json", 1000};

    /* truncated inside the tokens, and inside the header */
    char *data;
    size_t len;
    cf_read_file(p, &data, &len);
    snprintf(q, sizeof q, "%s/trunc.bin", g_dir);
    write_bytes(q, data, len - 3);
    expect_bad("truncated tokens", q, &e, "truncated");
    write_bytes(q, data, 40);
    expect_bad("truncated header", q, &e, "truncated");
    write_bytes(q, data, 0);
    expect_bad("empty file", q, &e, "truncated");
    /* extra bytes after the tokens */
    char *more = malloc(len + 8);
    memcpy(more, data, len);
    memset(more + len, 7, 8);
    snprintf(q, sizeof q, "%s/extra.bin", g_dir);
    write_bytes(q, more, len + 8);
    expect_bad("trailing bytes", q, &e, "extra data");
    free(more);
    /* wrong magic, version, dtype */
    snprintf(q, sizeof q, "%s/magic.bin", g_dir);
    write_bytes(q, data, len);
    patch(q, 0, "GPT2TOKS", 8);
    expect_bad("wrong magic", q, &e, "magic");
    snprintf(q, sizeof q, "%s/version.bin", g_dir);
    write_bytes(q, data, len);
    uint8_t v2[4] = {2, 0, 0, 0};
    patch(q, 8, v2, 4);
    expect_bad("wrong version", q, &e, "version 2");
    snprintf(q, sizeof q, "%s/dtype.bin", g_dir);
    write_bytes(q, data, len);
    uint8_t d3[4] = {3, 0, 0, 0};
    patch(q, 12, d3, 4);
    expect_bad("bad dtype", q, &e, "corrupt header");
    /* another tokenizer, a vocab larger than the model's */
    cf_shard_expect other = {1, 0x1234ull, "tokenizers/other.json", 1000};
    expect_bad("other tokenizer", p, &other, "tokenizers/other.json");
    cf_shard_expect small = {1, 0xABCDull, "tok.json", 500};
    expect_bad("vocab too large", p, &small, "vocab_size");
    free(data);

    /* numbered shards read as one sequence; mixing naming schemes is refused */
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/multi", g_dir);
    cf_mkdirs(sub);
    uint32_t next = 0;
    for (int k = 0; k < 3; k++) {
        char name[1100];
        snprintf(name, sizeof name, "%s/train_%05d.bin", sub, k);
        cf_shard_writer *w;
        cf_shard_writer_open(name, 2, 0xABCDull, 1000, 999, &w);
        for (int i = 0; i < 700 + 300 * k; i++, next++) {
            uint32_t id = next % 1000;
            cf_shard_writer_append(w, &id, 1);
        }
        cf_shard_writer_close(w);
    }
    cf_shard_list l;
    CHECK(cf_shard_list_open(sub, "train", &e, &l) == CF_OK && l.n == 3 && l.total == next,
          "list of 3 shards: %s", g_msg);
    int ok = 1;
    for (uint64_t i = 0; i < l.total; i += 7) ok &= cf_shard_list_token(&l, i) == i % 1000;
    for (uint64_t i = l.total; i-- > 0;)
        ok &= cf_shard_list_token(&l, i) == i % 1000; /* backwards too */
    CHECK(ok, "tokens across shard boundaries");
    cf_shard_list_close(&l);
    char name[1100];
    snprintf(name, sizeof name, "%s/train.bin", sub);
    make_shard("tmp.bin", 2, 10, 0xABCDull, q);
    rename(q, name);
    g_msg[0] = 0;
    CHECK(cf_shard_list_open(sub, "train", &e, &l) < 0 && strstr(g_msg, "both"),
          "mixed names accepted: %s", g_msg);
}

/* ---- prepare -----------------------------------------------------------------------------------
 */

typedef struct {
    char **doc;
    size_t *len;
    int n;
} docs;

static void docs_add(docs *d, const char *s, size_t n) {
    d->doc = realloc(d->doc, (size_t)(d->n + 1) * sizeof *d->doc);
    d->len = realloc(d->len, (size_t)(d->n + 1) * sizeof *d->len);
    d->doc[d->n] = malloc(n + 1);
    memcpy(d->doc[d->n], s, n);
    d->doc[d->n][n] = 0;
    d->len[d->n] = n;
    d->n++;
}

static void docs_free(docs *d) {
    for (int i = 0; i < d->n; i++) free(d->doc[i]);
    free(d->doc);
    free(d->len);
    memset(d, 0, sizeof *d);
}

/* Reference blank-line split: paragraphs of non-blank lines, without the final newline (and '\r').
 */
static void blank_line_docs(const char *s, size_t n, docs *out) {
    size_t i = 0, start = 0, end = 0;
    int in = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '\n') j++;
        int blank = 1;
        for (size_t k = i; k < j; k++)
            if (s[k] != ' ' && s[k] != '\t' && s[k] != '\r') blank = 0;
        if (!blank) {
            if (!in) start = i;
            in = 1;
            end = (j > i && j < n && s[j - 1] == '\r') ? j - 1 : j;
        } else if (in) {
            docs_add(out, s + start, end - start);
            in = 0;
        }
        i = j + 1;
    }
    if (in) docs_add(out, s + start, end - start);
}

/* Decode a split of a prepared directory and cut it at end-of-text ids. */
static void read_split(const char *dir, const char *split, const cf_tokenizer *tok, docs *out,
                       uint64_t *ntok) {
    cf_shard_list l;
    cf_shard_expect e = {1, cf_tokenizer_hash(tok), "tok", cf_tokenizer_vocab_size(tok)};
    memset(out, 0, sizeof *out);
    *ntok = 0;
    if (cf_shard_list_open(dir, split, &e, &l) != CF_OK) {
        CHECK(0, "cannot open %s of %s: %s", split, dir, g_msg);
        return;
    }
    uint32_t eot = (uint32_t)cf_tokenizer_eot_id(tok);
    cf_token_buf cur = {0};
    *ntok = l.total;
    for (uint64_t i = 0; i < l.total; i++) {
        uint32_t id = cf_shard_list_token(&l, i);
        if (id != eot) {
            cf_token_buf_push(&cur, id);
            continue;
        }
        uint8_t *text;
        size_t n;
        cf_tokenizer_decode(tok, cur.ids, cur.n, &text, &n);
        docs_add(out, (char *)text, n);
        free(text);
        cur.n = 0;
    }
    CHECK(cur.n == 0, "%s/%s does not end with <|endoftext|> (%zu ids after the last)", dir, split,
          cur.n);
    cf_token_buf_free(&cur);
    cf_shard_list_close(&l);
}

static int run_prepare(const char *tok, const char *in, const char *out, double val, int blank,
                       size_t read_bytes, size_t unit_bytes, uint64_t shard_tokens,
                       cf_prepare_stats *st) {
    const char *inputs[] = {in};
    cf_prepare_opts o = {tok,          inputs, 1, out, val,        blank,
                         shard_tokens, 7,      0, 0,   read_bytes, unit_bytes, 0};
    g_msg[0] = 0;
    int rc = cf_prepare_run(&o, st);
    if (rc != CF_OK) printf("  prepare %s -> %s failed: %s\n", in, out, g_msg);
    return rc;
}

static int same_split(const char *d1, const char *d2, const char *split) {
    cf_shard_list a, b;
    if (cf_shard_list_open(d1, split, NULL, &a) != CF_OK) return 0;
    if (cf_shard_list_open(d2, split, NULL, &b) != CF_OK) {
        cf_shard_list_close(&a);
        return 0;
    }
    int eq = a.total == b.total;
    for (uint64_t i = 0; eq && i < a.total; i++)
        eq = cf_shard_list_token(&a, i) == cf_shard_list_token(&b, i);
    cf_shard_list_close(&a);
    cf_shard_list_close(&b);
    return eq;
}

static void test_prepare(const char *tok_path, const cf_tokenizer *tok, const char *corpus,
                         size_t clen) {
    printf("prepare\n");
    char in[768], p[1100], out1[1024], out2[1024], out3[1024];
    snprintf(in, sizeof in, "%s/corpus", g_dir);
    snprintf(p, sizeof p, "%s/sub", in);
    cf_mkdirs(p);
    /* files in walk order: a.txt, b_empty.txt, c.bin (binary, skipped), sub/d.txt */
    snprintf(p, sizeof p, "%s/a.txt", in);
    write_bytes(p, corpus, clen / 2);
    snprintf(p, sizeof p, "%s/b_empty.txt", in);
    write_bytes(p, "", 0);
    snprintf(p, sizeof p, "%s/c.bin", in);
    write_bytes(p, "\x01\x00\x02\x00binary", 10);
    const char *d = "Caf\xc3\xa9 and <|endoftext|> literal\n\n\n  \nsecond\r\nparagraph \xff\xfe\n "
                    "  \n\nlast one";
    snprintf(p, sizeof p, "%s/sub/d.txt", in);
    write_bytes(p, d, strlen(d));
    snprintf(p, sizeof p, "%s/.hidden.txt", in);
    write_bytes(p, "hidden files are skipped", 24);

    /* one document per file, all in train */
    cf_prepare_stats st;
    snprintf(out1, sizeof out1, "%s/out1", g_dir);
    CHECK(run_prepare(tok_path, in, out1, 0.0, 0, 0, 0, 0, &st) == CF_OK,
          "prepare, one doc per file");
    CHECK(st.files == 3 && st.skipped_files == 1 && st.documents == 2 && st.val_tokens == 0,
          "files %llu skipped %llu documents %llu val %llu", (unsigned long long)st.files,
          (unsigned long long)st.skipped_files, (unsigned long long)st.documents,
          (unsigned long long)st.val_tokens);
    docs got;
    uint64_t ntok;
    read_split(out1, "train", tok, &got, &ntok);
    /* the literal <|endoftext|> in d.txt encodes to the id too, so d.txt reads back as two pieces
     */
    const char *lit = strstr(d, "<|endoftext|>");
    CHECK(got.n == 3 && got.len[0] == clen / 2 && !memcmp(got.doc[0], corpus, clen / 2) &&
              got.len[1] == (size_t)(lit - d) && !memcmp(got.doc[1], d, got.len[1]) &&
              !strcmp(got.doc[2] ? (got.doc[2][got.len[2]] = 0, got.doc[2]) : "", lit + 13),
          "train.bin does not decode to a.txt <eot> d.txt <eot> (%d pieces)", got.n);
    docs_free(&got);
    snprintf(p, sizeof p, "%s/meta.json", out1);
    struct stat sb;
    CHECK(stat(p, &sb) == 0, "no meta.json");

    /* tiny read pieces, tiny units and tiny shards give the same token stream */
    snprintf(out2, sizeof out2, "%s/out2", g_dir);
    CHECK(run_prepare(tok_path, in, out2, 0.0, 0, 700, 300, 1000, &st) == CF_OK,
          "prepare, small pieces");
    CHECK(st.train_shards >= 3, "only %d train shards of 1000 tokens", st.train_shards);
    CHECK(same_split(out1, out2, "train"), "small pieces/shards change the token stream");
    /* preparing again over an existing output replaces it and is byte-identical */
    CHECK(run_prepare(tok_path, in, out2, 0.0, 0, 700, 300, 1000, &st) == CF_OK, "prepare again");
    snprintf(out3, sizeof out3, "%s/out3", g_dir);
    CHECK(run_prepare(tok_path, in, out3, 0.0, 0, 700, 300, 1000, &st) == CF_OK,
          "prepare, third run");
    char f2[1100], f3[1100];
    int same = 1;
    for (int k = 0; k < st.train_shards; k++) {
        snprintf(f2, sizeof f2, "%s/train_%05d.bin", out2, k);
        snprintf(f3, sizeof f3, "%s/train_%05d.bin", out3, k);
        same &= files_equal(f2, f3);
    }
    CHECK(same, "two runs wrote different shards");

    /* blank-line documents, split between train and val */
    docs want = {0};
    blank_line_docs(corpus, clen / 2, &want);
    /* d.txt's paragraphs; its literal <|endoftext|> reads back as a cut */
    docs dd = {0};
    blank_line_docs(d, strlen(d), &dd);
    for (int i = 0; i < dd.n; i++) {
        char *cut = strstr(dd.doc[i], "<|endoftext|>");
        if (cut && (size_t)(cut - dd.doc[i]) < dd.len[i]) {
            docs_add(&want, dd.doc[i], (size_t)(cut - dd.doc[i]));
            docs_add(&want, cut + 13, dd.len[i] - (size_t)(cut - dd.doc[i]) - 13);
        } else {
            docs_add(&want, dd.doc[i], dd.len[i]);
        }
    }
    docs_free(&dd);
    for (int pass = 0; pass < 3; pass++) {
        /* 0: whole documents, 30% to val; 1: small read pieces and units, all train, so blank lines
         * and documents straddle piece ends; 2: small units, 30% to val */
        double val = pass == 1 ? 0.0 : 0.3;
        size_t rb = pass ? 333 : 0, ub = pass ? 200 : 0;
        snprintf(out3, sizeof out3, "%s/out_blank%d", g_dir, pass);
        CHECK(run_prepare(tok_path, in, out3, val, 1, rb, ub, 0, &st) == CF_OK,
              "prepare blank-line docs");
        CHECK(st.documents == (uint64_t)want.n - 1 /* the literal eot is not a document end */,
              "blank-line documents: %llu, expected %d", (unsigned long long)st.documents,
              want.n - 1);
        docs tr, va;
        uint64_t nt, nv;
        read_split(out3, "train", tok, &tr, &nt);
        read_split(out3, "val", tok, &va, &nv);
        int i = 0, j = 0, ok = 1;
        if (pass < 2) {
            /* every document lands whole in one split, in order */
            for (int k = 0; k < want.n && ok; k++) {
                if (i < tr.n && tr.len[i] == want.len[k] &&
                    !memcmp(tr.doc[i], want.doc[k], want.len[k]))
                    i++;
                else if (j < va.n && va.len[j] == want.len[k] &&
                         !memcmp(va.doc[j], want.doc[k], want.len[k]))
                    j++;
                else
                    ok = 0;
            }
            CHECK(ok && i == tr.n && j == va.n && (pass == 1 ? va.n == 0 : va.n > 0 && tr.n > va.n),
                  "pass %d: %d train + %d val pieces do not make the %d documents", pass, tr.n,
                  va.n, want.n);
        } else {
            /* pieces of documents: each run between end-of-text ids lies inside one document (no
             * two distant pieces glued together), and the splits hold all the text */
            size_t total = 0, want_total = 0;
            for (int sp = 0; sp < 2; sp++) {
                docs *g = sp ? &va : &tr;
                for (int k = 0; k < g->n; k++) {
                    int inside = g->len[k] == 0;
                    for (int q = 0; q < want.n && !inside; q++)
                        for (size_t o = 0; !inside && o + g->len[k] <= want.len[q]; o++)
                            inside = !memcmp(want.doc[q] + o, g->doc[k], g->len[k]);
                    ok &= inside;
                    total += g->len[k];
                }
            }
            for (int k = 0; k < want.n; k++) want_total += want.len[k];
            CHECK(ok && total == want_total && va.n > 0 && tr.n > 0,
                  "small units: pieces outside any document (%d) or %zu bytes in the splits, %zu "
                  "in the "
                  "documents",
                  !ok, total, want_total);
        }
        docs_free(&tr);
        docs_free(&va);
    }
    docs_free(&want);

    /* a piece that ends right before a newline: the next piece starts with the rest of that line,
     * which is not a blank line (a 300-letter line has no split point inside) */
    char in2[1024], lines[700];
    snprintf(in2, sizeof in2, "%s/corpus2", g_dir);
    cf_mkdirs(in2);
    memset(lines, 'A', 300);
    lines[300] = '\n';
    memset(lines + 301, 'B', 300);
    memcpy(lines + 601, "\n\nC", 3);
    snprintf(p, sizeof p, "%s/lines.txt", in2);
    write_bytes(p, lines, 604);
    snprintf(out3, sizeof out3, "%s/out_lines", g_dir);
    CHECK(run_prepare(tok_path, in2, out3, 0.0, 1, 400, 0, 0, &st) == CF_OK, "prepare lines");
    docs ln;
    read_split(out3, "train", tok, &ln, &ntok);
    CHECK(ln.n == 2 && ln.len[0] == 601 && !memcmp(ln.doc[0], lines, 601) && ln.len[1] == 1 &&
              ln.doc[1][0] == 'C',
          "a document continued after a piece end reads back as %d documents (first %zu bytes)",
          ln.n, ln.n ? ln.len[0] : 0);
    docs_free(&ln);
}

/* ---- dataset on shards -------------------------------------------------------------------------
 */

static void test_dataset(const char *tok_path, const cf_tokenizer *tok) {
    printf("dataset on shards\n");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/out_blank0", g_dir);
    cf_config c;
    cf_config_defaults(&c);
    snprintf(c.data, sizeof c.data, "%s", dir);
    snprintf(c.tokenizer, sizeof c.tokenizer, "%s", tok_path);
    c.vocab_size = (int)cf_tokenizer_vocab_size(tok);
    c.max_length = 16;
    c.val_fraction = 0.3f;
    c.seed = 5;
    cf_dataset *ds = NULL;
    g_msg[0] = 0;
    CHECK(cf_dataset_open(&c, &ds) == CF_OK, "dataset on shards: %s", g_msg);
    if (!ds) return;
    cf_shard_set *s;
    cf_shard_set_open(&c, dir, &s);
    CHECK(cf_dataset_num_tokens(ds, CF_SPLIT_TRAIN) == s->train.total &&
              cf_dataset_num_tokens(ds, CF_SPLIT_VAL) == s->val.total,
          "dataset splits %zu/%zu, shards %llu/%llu", cf_dataset_num_tokens(ds, CF_SPLIT_TRAIN),
          cf_dataset_num_tokens(ds, CF_SPLIT_VAL), (unsigned long long)s->train.total,
          (unsigned long long)s->val.total);
    /* eval's loader on a shard directory: the validation shards only, in order */
    {
        int32_t *ev = NULL;
        size_t nev = 0;
        int rc = cf_dataset_load_tokens(&c, dir, &ev, &nev);
        int same = rc == CF_OK && nev == s->val.total;
        for (size_t i = 0; same && i < nev; i++)
            same = (uint32_t)ev[i] == cf_shard_list_token(&s->val, i);
        CHECK(same, "eval's tokens of a shard directory: rc %d, %zu tokens, the val shards %llu",
              rc, nev, (unsigned long long)s->val.total);
        free(ev);
    }
    /* each row is T consecutive train tokens, targets shifted by one */
    int32_t in[4 * 16], tg[4 * 16];
    int ok = 1;
    for (int batch = 0; batch < 3; batch++) {
        cf_dataset_next_batch(ds, CF_SPLIT_TRAIN, 4, 16, in, tg);
        for (int b = 0; b < 4; b++) {
            int found = 0;
            for (uint64_t st = 0; st + 17 <= s->train.total && !found; st++) {
                int m = 1;
                for (int t = 0; t < 16 && m; t++)
                    m = (uint32_t)in[b * 16 + t] == cf_shard_list_token(&s->train, st + t) &&
                        (uint32_t)tg[b * 16 + t] == cf_shard_list_token(&s->train, st + t + 1);
                found = m;
            }
            ok &= found;
        }
    }
    CHECK(ok, "a training window is not a run of train shard tokens");
    /* resuming from the cursor gives the same next batch */
    cf_dataset_state state;
    cf_dataset_get_state(ds, &state);
    int32_t in2[4 * 16], tg2[4 * 16];
    cf_dataset_next_batch(ds, CF_SPLIT_TRAIN, 4, 16, in, tg);
    cf_dataset *ds2 = NULL;
    cf_dataset_open(&c, &ds2);
    CHECK(ds2 && cf_dataset_set_state(ds2, &state) == CF_OK, "set state");
    if (ds2) cf_dataset_next_batch(ds2, CF_SPLIT_TRAIN, 4, 16, in2, tg2);
    CHECK(ds2 && !memcmp(in, in2, sizeof in) && !memcmp(tg, tg2, sizeof tg),
          "resume gives another batch");
    cf_dataset_free(ds2);
    cf_dataset_free(ds);
    cf_shard_set_close(s);

    /* the config's tokenizer must be the one the shards were made with */
    char other[1024];
    snprintf(other, sizeof other, "%s/other_tok.json", g_dir);
    char *json;
    size_t jl;
    cf_read_file(tok_path, &json, &jl);
    json[jl - 1] =
        json[jl - 1] == '\n' ? ' ' : '\n'; /* same tokenizer, other bytes: other identity */
    write_bytes(other, json, jl);
    free(json);
    snprintf(c.tokenizer, sizeof c.tokenizer, "%s", other);
    g_msg[0] = 0;
    ds = NULL;
    CHECK(cf_dataset_open(&c, &ds) < 0 && strstr(g_msg, other) && strstr(g_msg, "prepare"),
          "shards of another tokenizer accepted: %s", g_msg);
    cf_dataset_free(ds);
    snprintf(c.tokenizer, sizeof c.tokenizer, "%s", tok_path);
    c.vocab_size = 300;
    g_msg[0] = 0;
    ds = NULL;
    CHECK(cf_dataset_open(&c, &ds) < 0 && strstr(g_msg, "vocab_size"),
          "vocab_size 300 accepted: %s", g_msg);
    cf_dataset_free(ds);

    /* text data with the BPE tokenizer is encoded on load */
    c.vocab_size = (int)cf_tokenizer_vocab_size(tok);
    char txt[1024];
    snprintf(txt, sizeof txt, "%s/corpus/a.txt", g_dir);
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(cf_dataset_load_tokens(&c, txt, &ids, &n) == CF_OK, "load_tokens with BPE: %s", g_msg);
    char *text;
    size_t tl;
    cf_read_file(txt, &text, &tl);
    cf_token_buf ref = {0};
    cf_tokenizer_encode(tok, (const uint8_t *)text, tl, &ref);
    ok = ref.n == n;
    for (size_t i = 0; ok && i < n; i++) ok = (uint32_t)ids[i] == ref.ids[i];
    CHECK(ok, "load_tokens gave %zu ids, the tokenizer %zu", n, ref.n);
    cf_token_buf_free(&ref);
    free(text);
    free(ids);
}

int main(void) {
    cf_log_set_callback(capture_log, NULL);
    snprintf(g_dir, sizeof g_dir, "%s/test_shards_tmp_%ld", CF_BINARY_DIR, (long)getpid());
    cf_mkdirs(g_dir);
    test_headers();
    char *corpus;
    size_t clen;
    if (cf_read_file(CF_SOURCE_DIR "/tests/fixtures/tokenizer_corpus.txt", &corpus, &clen) !=
        CF_OK) {
        printf("FAIL: no fixture corpus\n");
        return 1;
    }
    char *json;
    size_t jl;
    CHECK(cf_tokenizer_train_text((const uint8_t *)corpus, clen, 500, &json, &jl, NULL) == CF_OK,
          "train");
    char tok_path[1024];
    snprintf(tok_path, sizeof tok_path, "%s/tok.json", g_dir);
    write_bytes(tok_path, json, jl);
    free(json);
    cf_tokenizer *tok = NULL;
    CHECK(cf_tokenizer_load(tok_path, &tok) == CF_OK, "load tokenizer");
    if (tok) {
        test_prepare(tok_path, tok, corpus, clen);
        test_dataset(tok_path, tok);
        cf_tokenizer_free(tok);
    }
    free(corpus);
    if (!g_fail) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0) printf("note: could not remove %s\n", g_dir);
    }
    if (g_fail) {
        printf("%d check(s) failed (files kept in %s)\n", g_fail, g_dir);
        return 1;
    }
    printf("all shard checks passed\n");
    return 0;
}
