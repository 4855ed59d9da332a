/* clformer test: the data loaders under faults. A FIFO in place of a shard is refused without
 * blocking; a shard truncated while a run reads it gives an error naming it (no SIGBUS); token
 * ids outside the vocabulary are refused at load for every reader (training and eval, any
 * backend), naming the file, the id and its position; an interrupted `prepare` (or a meta.json
 * that does not describe the shards) leaves a directory that training refuses. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "clformer/common.h"
#include "clformer/config.h"
#include "data/dataset.h"
#include "data/shards.h"
#include "tokenizer/tokenizer.h"
#include "test_common.h"

static char g_dir[512], g_tok[1024], g_in[1024];
static uint32_t g_vocab;

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        printf("FAIL: cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

static int prepare(const char *name, double val, uint64_t shard_tokens, uint64_t seed,
                   int stop_after, char *out, size_t out_len) {
    snprintf(out, out_len, "%s/%s", g_dir, name);
    const char *inputs[] = {g_in};
    cf_prepare_opts o = {0};
    o.tokenizer = g_tok;
    o.inputs = inputs;
    o.n_inputs = 1;
    o.out_dir = out;
    o.val_fraction = val;
    o.shard_tokens = shard_tokens;
    o.seed = seed;
    o.threads = 1;
    o.stop_after_shards = stop_after;
    g_msg[0] = 0;
    return cf_prepare_run(&o, NULL);
}

static void config_for(cf_config *c, const char *data) {
    cf_config_defaults(c);
    snprintf(c->data, sizeof c->data, "%s", data);
    snprintf(c->tokenizer, sizeof c->tokenizer, "%s", g_tok);
    c->vocab_size = (int)g_vocab;
    c->max_length = 16;
    c->val_fraction = 0.3f;
}

/* A FIFO as val.bin: refused at once (an alarm fails the test if the open blocks). */
static void test_fifo(void) {
    printf("fifo as a shard\n");
    char dir[1100], p[1200];
    CHECK(prepare("fifo", 0.3, 0, 1, 0, dir, sizeof dir) == CF_OK, "prepare: %s", g_msg);
    snprintf(p, sizeof p, "%s/val.bin", dir);
    remove(p);
    CHECK(mkfifo(p, 0600) == 0, "mkfifo %s", p);
    cf_config c;
    config_for(&c, dir);
    cf_dataset *ds = NULL;
    g_msg[0] = 0;
    alarm(60);
    int rc = cf_dataset_open(&c, &ds);
    cf_shard_info info;
    char m2[4096];
    snprintf(m2, sizeof m2, "%s", g_msg);
    int rc2 = cf_shard_read_info(p, &info);
    alarm(0);
    CHECK(rc < 0 && strstr(m2, "val.bin") && strstr(m2, "FIFO"),
          "a FIFO val.bin: rc %d, message: %s", rc, m2);
    CHECK(rc2 < 0 && strstr(g_msg, "FIFO"), "read_info on a FIFO: rc %d, %s", rc2, g_msg);
    cf_dataset_free(ds);
}

/* A shard truncated under an open dataset: next_batch fails naming it; the process lives on. */
static void test_truncated_while_open(void) {
    printf("shard truncated while in use\n");
    char dir[1100], p[1200];
    CHECK(prepare("trunc", 0.3, 0, 1, 0, dir, sizeof dir) == CF_OK, "prepare: %s", g_msg);
    cf_config c;
    config_for(&c, dir);
    for (int split = 0; split < 2; split++) {
        cf_dataset *ds = NULL;
        g_msg[0] = 0;
        CHECK(cf_dataset_open(&c, &ds) == CF_OK, "open: %s", g_msg);
        if (!ds) return;
        int32_t in[16], tg[16];
        CHECK(cf_dataset_next_batch(ds, split, 1, 16, in, tg) == CF_OK, "first batch");
        const char *name = split == CF_SPLIT_TRAIN ? "train.bin" : "val.bin";
        snprintf(p, sizeof p, "%s/%s", dir, name);
        struct stat st;
        stat(p, &st);
        CHECK(st.st_size > 3 * 4096, "%s has only %lld bytes: the test needs pages past the first",
              name, (long long)st.st_size);
        /* shrink in place to the header: every page past the first is gone from the mapping */
        CHECK(truncate(p, 64) == 0, "truncate %s", p);
        size_t windows = cf_dataset_num_windows(ds, split) + 2;
        int rc = CF_OK;
        g_msg[0] = 0;
        for (size_t k = 0; k < windows && rc == CF_OK; k++)
            rc = cf_dataset_next_batch(ds, split, 1, 16, in, tg);
        CHECK(rc == CF_ERR_IO && strstr(g_msg, name) && strstr(g_msg, "changed while in use"),
              "reading a truncated %s: rc %d, message: %s", name, rc, g_msg);
        cf_dataset_free(ds);
        /* reopening reports the size mismatch */
        ds = NULL;
        g_msg[0] = 0;
        CHECK(cf_dataset_open(&c, &ds) < 0 && strstr(g_msg, "truncated"), "reopen: %s", g_msg);
        cf_dataset_free(ds);
        CHECK(prepare("trunc", 0.3, 0, 1, 0, dir, sizeof dir) == CF_OK, "re-prepare: %s", g_msg);
    }
}

/* Ids outside the vocabulary: refused at load (train and eval readers), naming file, id, position. */
static void test_bad_ids(void) {
    printf("token ids outside the vocabulary\n");
    char dir[1100], p[1200];
    CHECK(prepare("badid", 0.3, 0, 1, 0, dir, sizeof dir) == CF_OK, "prepare: %s", g_msg);
    snprintf(p, sizeof p, "%s/val.bin", dir);
    FILE *f = fopen(p, "r+b");
    uint16_t bad = (uint16_t)(g_vocab + 3);
    CHECK(f && fseek(f, 64 + 2 * 5, SEEK_SET) == 0 && fwrite(&bad, 2, 1, f) == 1, "patch %s", p);
    if (f) fclose(f);
    cf_config c;
    config_for(&c, dir);
    char want_id[32];
    snprintf(want_id, sizeof want_id, "id %u", (unsigned)bad);
    int32_t *ids = NULL;
    size_t n = 0;
    g_msg[0] = 0;
    int rc = cf_dataset_load_tokens(&c, dir, &ids, &n);
    CHECK(rc < 0 && strstr(g_msg, "val.bin") && strstr(g_msg, want_id) &&
              strstr(g_msg, "position 5"),
          "eval's loader on a shard with id %u: rc %d, message: %s", (unsigned)bad, rc, g_msg);
    free(ids);
    cf_dataset *ds = NULL;
    g_msg[0] = 0;
    rc = cf_dataset_open(&c, &ds);
    CHECK(rc < 0 && strstr(g_msg, "val.bin") && strstr(g_msg, want_id),
          "training's loader: rc %d, message: %s", rc, g_msg);
    cf_dataset_free(ds);

    /* text through a tokenizer with more ids than the model's vocab_size */
    char txt[1200];
    snprintf(txt, sizeof txt, "%s/text.txt", g_dir);
    write_bytes(txt, "hello hello hello world, the quick brown fox\n", 45);
    config_for(&c, txt);
    c.vocab_size = 200; /* the byte ids alone go up to 255 */
    ids = NULL;
    g_msg[0] = 0;
    rc = cf_dataset_load_tokens(&c, txt, &ids, &n);
    CHECK(rc < 0 && strstr(g_msg, "text.txt") && strstr(g_msg, "vocab_size 200") &&
              strstr(g_msg, "position"),
          "text with ids >= vocab_size: rc %d, message: %s", rc, g_msg);
    free(ids);
}

/* An interrupted prepare over a complete dataset, and a meta.json that does not match. */
static void test_interrupted_prepare(void) {
    printf("interrupted prepare\n");
    char dir[1100], other[1100], p[1200], q[1200];
    CHECK(prepare("interrupt", 0.3, 1500, 1, 0, dir, sizeof dir) == CF_OK, "prepare: %s", g_msg);
    cf_config c;
    config_for(&c, dir);
    cf_dataset *ds = NULL;
    g_msg[0] = 0;
    CHECK(cf_dataset_open(&c, &ds) == CF_OK, "complete dataset refused: %s", g_msg);
    cf_dataset_free(ds);
    /* a second run into the same directory stops after two shards (as a Ctrl-C would) */
    int rc = prepare("interrupt", 0.2, 1000, 9, 2, dir, sizeof dir);
    CHECK(rc == CF_ERR_INTERRUPTED, "the interrupted prepare returned %d", rc);
    snprintf(p, sizeof p, "%s/meta.json", dir);
    struct stat st;
    CHECK(stat(p, &st) != 0, "meta.json of the earlier run survived an interrupted prepare");
    ds = NULL;
    g_msg[0] = 0;
    rc = cf_dataset_open(&c, &ds);
    CHECK(rc < 0 && strstr(g_msg, "interrupted") && strstr(g_msg, "meta.json"),
          "a partial dataset was accepted: rc %d, message: %s", rc, g_msg);
    cf_dataset_free(ds);
    /* a complete run, then another run's meta.json put in place */
    CHECK(prepare("interrupt", 0.3, 1500, 1, 0, dir, sizeof dir) == CF_OK, "prepare: %s", g_msg);
    CHECK(prepare("interrupt_other", 0.2, 1000, 9, 0, other, sizeof other) == CF_OK, "prepare: %s",
          g_msg);
    snprintf(q, sizeof q, "%s/meta.json", other);
    char *meta = NULL;
    size_t ml = 0;
    CHECK(cf_read_file(q, &meta, &ml) == CF_OK, "read %s", q);
    if (meta) write_bytes(p, meta, ml);
    free(meta);
    ds = NULL;
    g_msg[0] = 0;
    rc = cf_dataset_open(&c, &ds);
    CHECK(rc < 0 && strstr(g_msg, "meta.json records"),
          "a meta.json of other shards was accepted: rc %d, message: %s", rc, g_msg);
    cf_dataset_free(ds);
    /* meta.json parse errors are clear */
    cf_shard_meta m;
    g_msg[0] = 0;
    CHECK(cf_shard_meta_parse("{\"format\": \"clformer token shards\", \"version\": 1}", 49, "m",
                              &m) < 0 &&
              strstr(g_msg, "tokenizer_hash"),
          "meta without a hash: %s", g_msg);
}

int main(void) {
    cf_log_set_callback(capture_log, NULL);
    snprintf(g_dir, sizeof g_dir, "%s/test_data_faults_tmp_%ld", CF_BINARY_DIR, (long)getpid());
    snprintf(g_in, sizeof g_in, "%s/corpus", g_dir);
    cf_mkdirs(g_in);
    char *corpus;
    size_t clen;
    if (cf_read_file(CF_SOURCE_DIR "/tests/fixtures/tokenizer_corpus.txt", &corpus, &clen) !=
        CF_OK) {
        printf("FAIL: no fixture corpus\n");
        return 1;
    }
    char *json;
    size_t jl;
    CHECK(cf_tokenizer_train_text((const uint8_t *)corpus, clen, 400, &json, &jl, NULL) == CF_OK,
          "train a tokenizer");
    snprintf(g_tok, sizeof g_tok, "%s/tok.json", g_dir);
    write_bytes(g_tok, json, jl);
    free(json);
    cf_tokenizer *tok = NULL;
    CHECK(cf_tokenizer_load(g_tok, &tok) == CF_OK, "load tokenizer: %s", g_msg);
    if (!tok) return 1;
    g_vocab = cf_tokenizer_vocab_size(tok);
    cf_tokenizer_free(tok);
    /* 8 documents (files), the corpus four times over: a few thousand tokens per split */
    for (int k = 0; k < 8; k++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/doc%d.txt", g_in, k);
        FILE *f = fopen(p, "wb");
        for (int r = 0; f && r < 2; r++) fwrite(corpus, 1, clen, f);
        if (f) fclose(f);
    }
    free(corpus);
    test_fifo();
    test_truncated_while_open();
    test_bad_ids();
    test_interrupted_prepare();
    if (!g_fail) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0) printf("note: could not remove %s\n", g_dir);
    }
    if (g_fail) {
        printf("%d check(s) failed (files kept in %s)\n", g_fail, g_dir);
        return 1;
    }
    printf("all data fault checks passed\n");
    return 0;
}
