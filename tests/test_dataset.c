/* clformer tests: byte-level dataset. Split sizes, window order (each epoch a permutation of the
 * non-overlapping windows, fixed by the seed), state save/restore, validation batches, directory
 * corpora, unigram entropy, and the bad-input errors (missing, empty, too short). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clformer/common.h"
#include "clformer/config.h"
#include "data/dataset.h"
#include "test_common.h"

static char g_dir[1024];

static void write_bytes(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        printf("cannot create %s\n", path);
        exit(2);
    }
    if (n) fwrite(b, 1, n, f);
    fclose(f);
}

/* Pseudo-random bytes: windows are distinct, so a window can be located by its content. */
static unsigned char *random_corpus(size_t n, uint64_t seed) {
    unsigned char *b = malloc(n);
    cf_rng r;
    cf_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(cf_rng_u32(&r) >> 24);
    return b;
}

static void small_cfg(cf_config *c, const char *data, int T, float vf, uint64_t seed) {
    cf_config_defaults(c);
    snprintf(c->data, sizeof c->data, "%.*s", (int)sizeof c->data - 1, data);
    c->max_length = T;
    c->val_fraction = vf;
    c->seed = seed;
}

/* ---- splits, window order, determinism ---------------------------------------------------- */

static void test_order_and_state(void) {
    printf("splits, epochs, determinism, state\n");
    const size_t N = 20000;
    const int T = 16, B = 4;
    unsigned char *corp = random_corpus(N, 7);
    char path[2048];
    snprintf(path, sizeof path, "%s/random.bin", g_dir);
    write_bytes(path, corp, N);
    cf_config c;
    small_cfg(&c, path, T, 0.1f, 1234);
    cf_dataset *ds = NULL;
    int rc = cf_dataset_open(&c, &ds);
    CHECK(rc == CF_OK, "open: %s", g_msg);
    if (rc) return;
    size_t nv = (size_t)floor((double)N * (double)0.1f);
    size_t ntr = cf_dataset_num_tokens(ds, CF_SPLIT_TRAIN);
    CHECK(cf_dataset_num_tokens(ds, CF_SPLIT_VAL) == nv, "val tokens %zu want %zu",
          cf_dataset_num_tokens(ds, CF_SPLIT_VAL), nv);
    CHECK(ntr == N - nv, "train tokens %zu want %zu", ntr, N - nv);
    size_t nw = cf_dataset_num_windows(ds, CF_SPLIT_TRAIN);
    CHECK(nw == (ntr - 1) / T, "windows %zu want %zu", nw, (ntr - 1) / T);
    printf("  N=%zu train=%zu val=%zu windows=%zu\n", N, ntr, nv, nw);

    /* epoch 0: every window k (start k*T) exactly once, in a shuffled order */
    int32_t *x = malloc(sizeof(int32_t) * B * T), *y = malloc(sizeof(int32_t) * B * T);
    int *seen = calloc(nw, sizeof *seen);
    size_t in_order = 0, bad_target = 0, not_found = 0;
    for (size_t got = 0; got < nw;) {
        int nb = (int)((nw - got) < (size_t)B ? (nw - got) : (size_t)B);
        CHECK(cf_dataset_next_batch(ds, CF_SPLIT_TRAIN, nb, T, x, y) == CF_OK, "next_batch");
        for (int b = 0; b < nb; b++, got++) {
            const int32_t *xi = x + b * T, *yi = y + b * T;
            for (int t = 0; t + 1 < T; t++)
                if (yi[t] != xi[t + 1]) bad_target++;
            size_t k;
            for (k = 0; k < nw; k++) {
                int eq = 1;
                for (int t = 0; t < T && eq; t++) eq = corp[k * T + t] == (unsigned char)xi[t];
                if (eq && corp[k * T + T] == (unsigned char)yi[T - 1]) break;
            }
            if (k == nw) {
                not_found++;
                continue;
            }
            seen[k]++;
            if (k == got) in_order++;
        }
    }
    size_t dup = 0, missing = 0;
    for (size_t k = 0; k < nw; k++) {
        if (seen[k] > 1) dup++;
        if (seen[k] == 0) missing++;
    }
    CHECK(bad_target == 0, "%zu targets are not inputs shifted by one", bad_target);
    CHECK(not_found == 0 && dup == 0 && missing == 0,
          "epoch 0 is not a permutation of the windows: %zu unknown, %zu repeated, %zu missing",
          not_found, dup, missing);
    CHECK(in_order < nw / 4, "order is not shuffled (%zu of %zu in place)", in_order, nw);
    cf_dataset_state st;
    cf_dataset_get_state(ds, &st);
    CHECK(st.epoch == 0 && st.index == nw && st.seed == 1234, "state after epoch 0: %llu %llu %llu",
          (unsigned long long)st.epoch, (unsigned long long)st.index,
          (unsigned long long)st.seed);
    /* epochs 1 and 2: windows keep one boundary shift per epoch, never repeat, and never reach
     * into the validation split. A row belongs to the epoch the state shows after serving it. */
    {
        size_t rows[3] = {0}, outside = 0, unknown = 0, mixed = 0, repeats = 0;
        long shift[3] = {-1, -1, -1};
        int *seen2 = calloc(2 * (nw + 1), sizeof *seen2);
        for (;;) {
            CHECK(cf_dataset_next_batch(ds, CF_SPLIT_TRAIN, 1, T, x, y) == CF_OK, "epoch batch");
            cf_dataset_get_state(ds, &st);
            if (st.epoch > 2) break;
            int ep = (int)st.epoch;
            rows[ep]++;
            size_t s;
            for (s = 0; s + T < N; s++) {
                int eq = 1;
                for (int t = 0; t < T && eq; t++) eq = corp[s + t] == (unsigned char)x[t];
                if (eq && corp[s + T] == (unsigned char)y[T - 1]) break;
            }
            if (s + T >= N) {
                unknown++;
                continue;
            }
            if (s + T > ntr - 1) outside++;
            if (shift[ep] < 0) shift[ep] = (long)(s % T);
            if ((long)(s % T) != shift[ep]) mixed++;
            if (seen2[(size_t)(ep - 1) * (nw + 1) + s / T]++) repeats++;
        }
        free(seen2);
        printf("  epoch 1: %zu windows (shift %ld), epoch 2: %zu windows (shift %ld)\n", rows[1],
               shift[1], rows[2], shift[2]);
        CHECK(unknown == 0 && outside == 0 && mixed == 0 && repeats == 0,
              "epochs 1-2: %zu unknown, %zu reach into val, %zu off-grid, %zu repeated", unknown,
              outside, mixed, repeats);
        for (int ep = 1; ep <= 2; ep++) {
            size_t want = (ntr - 1 - (size_t)shift[ep]) / T;
            CHECK(rows[ep] == want, "epoch %d served %zu windows, want %zu", ep, rows[ep], want);
        }
        CHECK(shift[1] != shift[2] || shift[1] != 0, "epochs 1 and 2 both unshifted");
    }
    cf_dataset_free(ds);

    /* same seed -> same batches over several epochs; state restore continues identically */
    cf_dataset *a = NULL, *b = NULL, *d = NULL;
    CHECK(cf_dataset_open(&c, &a) == CF_OK && cf_dataset_open(&c, &b) == CF_OK, "open a/b");
    int steps = (int)(2 * nw / B) + 7; /* crosses two epoch boundaries */
    int32_t *xa = malloc(sizeof(int32_t) * B * T), *ya = malloc(sizeof(int32_t) * B * T);
    int32_t *xb = malloc(sizeof(int32_t) * B * T), *yb = malloc(sizeof(int32_t) * B * T);
    size_t diff = 0;
    cf_dataset_state mid = {0};
    int mid_step = (int)(nw / B) - 3; /* saved shortly before the first wrap */
    for (int s = 0; s < steps; s++) {
        cf_dataset_next_batch(a, CF_SPLIT_TRAIN, B, T, xa, ya);
        cf_dataset_next_batch(b, CF_SPLIT_TRAIN, B, T, xb, yb);
        diff += memcmp(xa, xb, sizeof(int32_t) * B * T) != 0 ||
                memcmp(ya, yb, sizeof(int32_t) * B * T) != 0;
        if (s == mid_step) cf_dataset_get_state(a, &mid);
    }
    CHECK(diff == 0, "same seed gave %zu differing batches of %d", diff, steps);
    /* restore into a fresh dataset opened with a different seed: the state's seed wins */
    cf_config c2 = c;
    c2.seed = 999;
    CHECK(cf_dataset_open(&c2, &d) == CF_OK, "open d");
    CHECK(cf_dataset_set_state(d, &mid) == CF_OK, "set_state: %s", g_msg);
    cf_dataset_free(a);
    CHECK(cf_dataset_open(&c, &a) == CF_OK, "reopen a");
    for (int s = 0; s <= mid_step; s++) cf_dataset_next_batch(a, CF_SPLIT_TRAIN, B, T, xa, ya);
    diff = 0;
    for (int s = mid_step + 1; s < steps; s++) {
        cf_dataset_next_batch(a, CF_SPLIT_TRAIN, B, T, xa, ya);
        cf_dataset_next_batch(d, CF_SPLIT_TRAIN, B, T, xb, yb);
        diff += memcmp(xa, xb, sizeof(int32_t) * B * T) != 0 ||
                memcmp(ya, yb, sizeof(int32_t) * B * T) != 0;
    }
    CHECK(diff == 0, "restored state diverged in %zu of %d batches", diff, steps - mid_step - 1);
    cf_dataset_state sa, sd;
    cf_dataset_get_state(a, &sa);
    cf_dataset_get_state(d, &sd);
    CHECK(sa.epoch == sd.epoch && sa.index == sd.index && sa.seed == sd.seed,
          "end states differ: (%llu,%llu) vs (%llu,%llu)", (unsigned long long)sa.epoch,
          (unsigned long long)sa.index, (unsigned long long)sd.epoch,
          (unsigned long long)sd.index);
    /* a different seed gives a different order */
    cf_dataset *e = NULL;
    CHECK(cf_dataset_open(&c2, &e) == CF_OK, "open e");
    cf_dataset_free(b);
    CHECK(cf_dataset_open(&c, &b) == CF_OK, "reopen b");
    cf_dataset_next_batch(b, CF_SPLIT_TRAIN, B, T, xa, ya);
    cf_dataset_next_batch(e, CF_SPLIT_TRAIN, B, T, xb, yb);
    CHECK(memcmp(xa, xb, sizeof(int32_t) * B * T) != 0, "seeds 1234 and 999 gave the same batch");
    /* a state from other data is refused with a message, and the cursor is kept */
    cf_dataset_state bogus = {0, nw + 5, 1234};
    cf_dataset_state before;
    cf_dataset_get_state(e, &before);
    g_msg[0] = 0;
    rc = cf_dataset_set_state(e, &bogus);
    cf_dataset_state after;
    cf_dataset_get_state(e, &after);
    CHECK(rc == CF_ERR_INVALID && strstr(g_msg, "different data"), "bogus state rc %d: %s", rc,
          g_msg);
    CHECK(after.epoch == before.epoch && after.index == before.index && after.seed == before.seed,
          "refused set_state moved the cursor");
    /* shorter T than max_length uses the window's first T + 1 tokens */
    CHECK(cf_dataset_next_batch(e, CF_SPLIT_TRAIN, 2, 8, xb, yb) == CF_OK, "T < max_length");
    CHECK(cf_dataset_next_batch(e, CF_SPLIT_TRAIN, 2, T + 1, xb, yb) == CF_ERR_INVALID,
          "T > max_length accepted");

    /* validation: consecutive windows from the split start, wrapping; reset rewinds */
    cf_dataset_reset_val(e);
    size_t val_windows = (nv - 1) / T;
    CHECK(cf_dataset_num_windows(e, CF_SPLIT_VAL) == val_windows, "val windows %zu want %zu",
          cf_dataset_num_windows(e, CF_SPLIT_VAL), val_windows);
    size_t bad = 0;
    for (size_t w = 0; w < val_windows + 3; w++) {
        CHECK(cf_dataset_next_batch(e, CF_SPLIT_VAL, 1, T, xb, yb) == CF_OK, "val batch");
        size_t start = ntr + (w % val_windows) * T;
        for (int t = 0; t < T; t++)
            if (xb[t] != corp[start + t] || yb[t] != corp[start + t + 1]) bad++;
    }
    CHECK(bad == 0, "%zu val tokens not at the expected positions", bad);
    cf_dataset_reset_val(e);
    cf_dataset_next_batch(e, CF_SPLIT_VAL, 1, T, xb, yb);
    CHECK(xb[0] == corp[ntr] && xb[1] == corp[ntr + 1], "reset_val did not rewind");

    /* unigram entropy of the train split */
    double cnt[256] = {0}, H = 0;
    for (size_t i = 0; i < ntr; i++) cnt[corp[i]] += 1;
    for (int v = 0; v < 256; v++)
        if (cnt[v] > 0) H -= cnt[v] / ntr * log(cnt[v] / ntr);
    CHECK(fabs(cf_dataset_unigram_entropy(e) - H) < 1e-9, "unigram %f want %f",
          cf_dataset_unigram_entropy(e), H);

    cf_dataset_free(a);
    cf_dataset_free(b);
    cf_dataset_free(d);
    cf_dataset_free(e);
    free(x);
    free(y);
    free(xa);
    free(ya);
    free(xb);
    free(yb);
    free(seen);
    free(corp);
}

/* ---- shipped corpus ----------------------------------------------------------------------- */

static void test_shipped_corpus(void) {
    printf("shipped corpus\n");
    cf_config c;
    cf_config_defaults(&c);
    snprintf(c.data, sizeof c.data, "%s/data/tiny_corpus.txt", CF_SOURCE_DIR);
    cf_dataset *ds = NULL;
    int rc = cf_dataset_open(&c, &ds);
    CHECK(rc == CF_OK, "default corpus does not open: %s", g_msg);
    if (rc) return;
    size_t tr = cf_dataset_num_tokens(ds, CF_SPLIT_TRAIN);
    size_t va = cf_dataset_num_tokens(ds, CF_SPLIT_VAL);
    double H = cf_dataset_unigram_entropy(ds);
    printf("  %zu train + %zu val tokens, unigram entropy %.4f nats, %zu train windows\n", tr, va,
           H, cf_dataset_num_windows(ds, CF_SPLIT_TRAIN));
    CHECK(tr + va > 1000000 && tr + va <= 2000000, "corpus size %zu outside 1-2 MB", tr + va);
    CHECK(va == (size_t)floor((double)(tr + va) * (double)c.val_fraction), "val split %zu", va);
    /* English text: byte unigram entropy well below uniform (5.55) and above 2.5 */
    CHECK(H > 2.5 && H < 3.6, "unigram entropy %f is not that of English text", H);
    /* enough windows for the default run: steps * batch within about one epoch */
    CHECK(cf_dataset_num_windows(ds, CF_SPLIT_TRAIN) >= (size_t)c.steps * c.batch_size,
          "default run exceeds one epoch");
    cf_dataset_free(ds);
}

/* ---- directories and load_tokens ---------------------------------------------------------- */

static void test_directory(void) {
    printf("directory corpus and load_tokens\n");
    char root[2048], sub[2100], p[2200];
    snprintf(root, sizeof root, "%s/corpus_dir", g_dir);
    snprintf(sub, sizeof sub, "%s/sub", root);
    cf_mkdirs(sub);
    snprintf(p, sizeof p, "%s/b.txt", root);
    write_bytes(p, (const unsigned char *)"BBB\n", 4);
    snprintf(p, sizeof p, "%s/a.txt", root);
    write_bytes(p, (const unsigned char *)"AA", 2); /* no final newline: one is inserted */
    snprintf(p, sizeof p, "%s/sub/c.txt", root);
    write_bytes(p, (const unsigned char *)"C", 1);
    snprintf(p, sizeof p, "%s/.hidden", root);
    write_bytes(p, (const unsigned char *)"HIDDEN", 6);
    snprintf(p, sizeof p, "%s/z.bin", root);
    write_bytes(p, (const unsigned char *)"\x01\x00\x02", 3);
    cf_config c;
    cf_config_defaults(&c);
    int32_t *tok = NULL;
    size_t n = 0;
    int rc = cf_dataset_load_tokens(&c, root, &tok, &n);
    const char *want = "AA\nBBB\nC\n";
    int ok = rc == CF_OK && n == strlen(want);
    for (size_t i = 0; ok && i < n; i++) ok = tok[i] == (unsigned char)want[i];
    CHECK(ok, "directory tokens: rc %d n %zu (want \"AA\\nBBB\\nC\\n\", sorted, hidden and binary "
              "files skipped)",
          rc, n);
    free(tok);

    /* a single file is taken byte for byte (no newline added) */
    snprintf(p, sizeof p, "%s/a.txt", root);
    rc = cf_dataset_load_tokens(&c, p, &tok, &n);
    CHECK(rc == CF_OK && n == 2 && tok[0] == 'A' && tok[1] == 'A', "file tokens rc %d n %zu", rc,
          n);
    free(tok);
    /* UTF-8 bytes come through as 0..255 */
    const unsigned char u[] = {0xe2, 0x80, 0x99, 'x'};
    snprintf(p, sizeof p, "%s/utf8.txt", g_dir);
    write_bytes(p, u, 4);
    rc = cf_dataset_load_tokens(&c, p, &tok, &n);
    CHECK(rc == CF_OK && n == 4 && tok[0] == 0xe2 && tok[2] == 0x99, "utf-8 bytes");
    free(tok);

    /* a directory corpus opens as a dataset too */
    char big[2100];
    snprintf(big, sizeof big, "%s/big_dir", g_dir);
    cf_mkdirs(big);
    unsigned char *r1 = random_corpus(3000, 1), *r2 = random_corpus(3000, 2);
    for (int i = 0; i < 3000; i++) r1[i] = r2[i] = (unsigned char)(' ' + r1[i] % 90);
    r1[2999] = r2[2999] = '\n';
    snprintf(p, sizeof p, "%s/1.txt", big);
    write_bytes(p, r1, 3000);
    snprintf(p, sizeof p, "%s/2.txt", big);
    write_bytes(p, r2, 3000);
    cf_config dc;
    small_cfg(&dc, big, 32, 0.1f, 1);
    cf_dataset *ds = NULL;
    rc = cf_dataset_open(&dc, &ds);
    CHECK(rc == CF_OK && cf_dataset_num_tokens(ds, CF_SPLIT_TRAIN) +
                                 cf_dataset_num_tokens(ds, CF_SPLIT_VAL) ==
                             6000,
          "directory dataset rc %d", rc);
    cf_dataset_free(ds);
    free(r1);
    free(r2);
}

/* ---- bad input ---------------------------------------------------------------------------- */

static void expect_open_fail(const char *label, const cf_config *c, int want_rc, const char *n1,
                             const char *n2) {
    cf_dataset *ds = (cf_dataset *)0x1;
    g_msg[0] = 0;
    int rc = cf_dataset_open(c, &ds);
    printf("  %-20s rc=%d msg: %s\n", label, rc, g_msg);
    CHECK(rc == want_rc, "%s: rc %d want %d", label, rc, want_rc);
    CHECK(ds == NULL, "%s: *out not NULL", label);
    if (rc == CF_OK) cf_dataset_free(ds);
    CHECK(strncmp(g_msg, "data ", 5) == 0 && strstr(g_msg, c->data), "%s: message lacks path: %s",
          label, g_msg);
    if (n1) CHECK(strstr(g_msg, n1) != NULL, "%s: lacks [%s]: %s", label, n1, g_msg);
    if (n2) CHECK(strstr(g_msg, n2) != NULL, "%s: lacks [%s]: %s", label, n2, g_msg);
}

static void test_bad_input(void) {
    printf("bad input\n");
    cf_config c;
    char p[2048];
    snprintf(p, sizeof p, "%s/no/such/file.txt", g_dir);
    small_cfg(&c, p, 128, 0.05f, 1);
    expect_open_fail("missing", &c, CF_ERR_NOT_FOUND, "no such file or directory", "data=PATH");

    snprintf(p, sizeof p, "%s/empty.txt", g_dir);
    write_bytes(p, NULL, 0);
    small_cfg(&c, p, 128, 0.05f, 1);
    expect_open_fail("empty file", &c, CF_ERR_INVALID, "empty", NULL);

    snprintf(p, sizeof p, "%s/empty_dir", g_dir);
    cf_mkdirs(p);
    small_cfg(&c, p, 128, 0.05f, 1);
    expect_open_fail("empty directory", &c, CF_ERR_INVALID, "holds no files", NULL);

    unsigned char *r = random_corpus(4000, 3);
    snprintf(p, sizeof p, "%s/short.txt", g_dir);
    write_bytes(p, r, 300);
    small_cfg(&c, p, 128, 0.05f, 1);
    expect_open_fail("too short", &c, CF_ERR_INVALID,
                     "300 tokens is too short for max_length 128 with val_fraction 0.05; need at "
                     "least 2580 tokens (provide more text or lower max_length)",
                     NULL);
    /* the stated minimum is exact: it opens, one token less does not */
    write_bytes(p, r, 2580);
    cf_dataset *ds = NULL;
    int rc = cf_dataset_open(&c, &ds);
    CHECK(rc == CF_OK, "2580 tokens should open: %s", g_msg);
    if (rc == CF_OK) {
        CHECK(cf_dataset_num_tokens(ds, CF_SPLIT_VAL) == 129 &&
                  cf_dataset_num_windows(ds, CF_SPLIT_VAL) == 1,
              "minimal val split %zu", cf_dataset_num_tokens(ds, CF_SPLIT_VAL));
        cf_dataset_free(ds);
    }
    write_bytes(p, r, 2579);
    expect_open_fail("one short of minimum", &c, CF_ERR_INVALID, "need at least 2580 tokens", NULL);
    /* no validation split: train needs T + 1 tokens, val batches are refused */
    small_cfg(&c, p, 128, 0.0f, 1);
    write_bytes(p, r, 128);
    expect_open_fail("no val, too short", &c, CF_ERR_INVALID, "need at least 129 tokens", NULL);
    write_bytes(p, r, 129);
    rc = cf_dataset_open(&c, &ds);
    CHECK(rc == CF_OK, "129 tokens, val_fraction 0: %s", g_msg);
    if (rc == CF_OK) {
        int32_t x[128], y[128];
        CHECK(cf_dataset_next_batch(ds, CF_SPLIT_TRAIN, 1, 128, x, y) == CF_OK, "one window");
        g_msg[0] = 0;
        CHECK(cf_dataset_next_batch(ds, CF_SPLIT_VAL, 1, 128, x, y) == CF_ERR_INVALID &&
                  strstr(g_msg, "no validation split"),
              "val batch without a val split: %s", g_msg);
        cf_dataset_free(ds);
    }
    free(r);

    /* a BPE tokenizer that does not load: the error names the data path and the tokenizer */
    small_cfg(&c, p, 128, 0.05f, 1);
    snprintf(c.tokenizer, sizeof c.tokenizer, "%.900s/no_such_tokenizer.json", g_dir);
    c.vocab_size = 16000;
    expect_open_fail("missing tokenizer", &c, CF_ERR_IO, "no_such_tokenizer.json", NULL);

    /* unreadable directory (permission bits do not stop root) */
    if (geteuid() != 0) {
        snprintf(p, sizeof p, "%s/locked", g_dir);
        cf_mkdirs(p);
        char f[2100];
        snprintf(f, sizeof f, "%s/locked/x.txt", g_dir);
        write_bytes(f, (const unsigned char *)"x", 1);
        chmod(p, 0);
        small_cfg(&c, p, 128, 0.05f, 1);
        expect_open_fail("unreadable directory", &c, CF_ERR_IO, "cannot read directory",
                         "permissions");
        chmod(p, 0755);
    } else {
        printf("  unreadable directory: skipped (running as root)\n");
    }
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "%s/test_dataset_tmp", CF_BINARY_DIR);
    if (cf_mkdirs(g_dir) != CF_OK) return 2;
    cf_log_set_callback(capture_log, NULL);
    test_order_and_state();
    test_shipped_corpus();
    test_directory();
    test_bad_input();
    cf_log_set_callback(NULL, NULL);
    if (g_fail) {
        printf("test_dataset: %d check(s) FAILED\n", g_fail);
        return 1;
    }
    printf("test_dataset: all checks passed\n");
    return 0;
}
