/* clformer tests: config defaults, shipped configs, every error class of the JSON loader and of
 * key=value overrides (return code and message text), and the to_json/from_json round trip. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clformer/common.h"
#include "clformer/config.h"
#include "model/gpt.h"
#include "test_common.h"

static char g_dir[1024];

static const char *write_tmp(const char *name, const char *text) {
    static char path[2048];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        printf("cannot create %s\n", path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

/* Load `text` as a config file; expect status `want_rc` and, when given, every needle in the
 * message (the file path is always required in error messages). */
static void expect_load(const char *name, const char *text, int want_rc, const char *n1,
                        const char *n2) {
    const char *path = write_tmp(name, text);
    char p[2048];
    snprintf(p, sizeof p, "%s", path);
    cf_config cfg;
    cf_config_defaults(&cfg);
    cfg.d_model = 77; /* marker: a failed load must leave cfg untouched */
    g_msg[0] = 0;
    int rc = cf_config_load(p, &cfg);
    printf("  %-22s rc=%d msg: %s\n", name, rc, rc ? g_msg : "(none)");
    CHECK(rc == want_rc, "%s: rc %d, want %d", name, rc, want_rc);
    if (want_rc != CF_OK) {
        CHECK(cfg.d_model == 77, "%s: failed load changed cfg (d_model %d)", name, cfg.d_model);
        CHECK(strstr(g_msg, p) != NULL, "%s: message does not name the file: %s", name, g_msg);
        CHECK(strncmp(g_msg, "config ", 7) == 0, "%s: message should start 'config ': %s", name,
              g_msg);
        CHECK(strchr(g_msg, '\n') == NULL, "%s: message is not one line", name);
    }
    if (n1) CHECK(strstr(g_msg, n1) != NULL, "%s: message lacks [%s]: %s", name, n1, g_msg);
    if (n2) CHECK(strstr(g_msg, n2) != NULL, "%s: message lacks [%s]: %s", name, n2, g_msg);
}

static void expect_set(cf_config *cfg, const char *kv, int want_rc, const char *needle) {
    g_msg[0] = 0;
    cf_config before = *cfg;
    int rc = cf_config_set(cfg, kv, "command line");
    printf("  set %-24s rc=%d msg: %s\n", kv, rc, rc ? g_msg : "(none)");
    CHECK(rc == want_rc, "set '%s': rc %d, want %d", kv, rc, want_rc);
    if (want_rc != CF_OK) {
        CHECK(memcmp(&before, cfg, sizeof before) == 0, "set '%s' failed but changed cfg", kv);
        CHECK(strncmp(g_msg, "command line: ", 14) == 0, "set '%s': message lacks origin: %s", kv,
              g_msg);
    }
    if (needle) CHECK(strstr(g_msg, needle) != NULL, "set '%s': lacks [%s]: %s", kv, needle, g_msg);
}

static int cfg_equal(const cf_config *a, const cf_config *b) {
    return a->d_model == b->d_model && a->num_heads == b->num_heads &&
           a->num_layers == b->num_layers && a->d_ff == b->d_ff && a->max_length == b->max_length &&
           a->vocab_size == b->vocab_size && a->batch_size == b->batch_size &&
           a->steps == b->steps && a->learning_rate == b->learning_rate &&
           a->min_lr_ratio == b->min_lr_ratio && a->warmup_steps == b->warmup_steps &&
           a->weight_decay == b->weight_decay && a->grad_clip == b->grad_clip &&
           a->beta1 == b->beta1 && a->beta2 == b->beta2 && a->eps == b->eps &&
           a->grad_accum_steps == b->grad_accum_steps && a->eval_interval == b->eval_interval &&
           a->eval_batches == b->eval_batches && a->checkpoint_interval == b->checkpoint_interval &&
           a->log_interval == b->log_interval && a->seed == b->seed &&
           a->val_fraction == b->val_fraction && strcmp(a->data, b->data) == 0 &&
           strcmp(a->tokenizer, b->tokenizer) == 0 && strcmp(a->name, b->name) == 0;
}

static void test_defaults_and_shipped(void) {
    printf("defaults and configs/*.json\n");
    cf_config d;
    cf_config_defaults(&d);
    CHECK(cf_config_validate(&d, "defaults") == CF_OK, "defaults do not validate: %s", g_msg);
    CHECK(d.d_model == 128 && d.num_heads == 4 && d.num_layers == 4 && d.d_ff == 512,
          "model defaults %d %d %d %d", d.d_model, d.num_heads, d.num_layers, d.d_ff);
    CHECK(d.max_length == 128 && d.batch_size == 16 && d.vocab_size == 256, "shape defaults");
    CHECK(d.seed == 1337 && strcmp(d.tokenizer, "byte") == 0 &&
              strcmp(d.data, "data/tiny_corpus.txt") == 0,
          "seed %llu tokenizer %s data %s", (unsigned long long)d.seed, d.tokenizer, d.data);

    cf_config t;
    char path[2048];
    snprintf(path, sizeof path, "%s/configs/tiny.json", CF_SOURCE_DIR);
    int rc = cf_config_load(path, &t);
    CHECK(rc == CF_OK, "tiny.json: %s", g_msg);
    CHECK(cfg_equal(&t, &d), "configs/tiny.json differs from the built-in defaults");

    static const struct {
        const char *file;
        int C, NH, L, F, B, T;
    } wiki[] = {{"wiki_cache_optimized.json", 384, 8, 4, 1536, 32, 128},
                {"wiki_performance_tuned.json", 320, 8, 5, 1280, 40, 96},
                {"wiki_gpu_optimized.json", 512, 8, 6, 2048, 64, 256}};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/configs/%s", CF_SOURCE_DIR, wiki[i].file);
        cf_config w;
        rc = cf_config_load(path, &w);
        CHECK(rc == CF_OK, "%s: %s", wiki[i].file, g_msg);
        CHECK(w.d_model == wiki[i].C && w.num_heads == wiki[i].NH && w.num_layers == wiki[i].L &&
                  w.d_ff == wiki[i].F && w.batch_size == wiki[i].B && w.max_length == wiki[i].T &&
                  w.vocab_size == 16000,
              "%s: got %d %d %d %d %d %d %d", wiki[i].file, w.d_model, w.num_heads, w.num_layers,
              w.d_ff, w.batch_size, w.max_length, w.vocab_size);
        CHECK(strcmp(w.tokenizer, "tokenizers/wiki16k.json") == 0 &&
                  strcmp(w.data, "data/wiki") == 0,
              "%s: tokenizer %s data %s", wiki[i].file, w.tokenizer, w.data);
    }
}

/* configs/gpt2_124m.json: GPT-2 small (12 layers of 768, 12 heads, d_ff 3072, T 1024, the
 * vocabulary padded to 50304, tied head, learned positions, LayerNorm, GELU, biases); its size
 * from the model's parameter table must be GPT-2's 124M */
static void test_gpt2_124m(void) {
    printf("configs/gpt2_124m.json\n");
    char path[2048];
    snprintf(path, sizeof path, "%s/configs/gpt2_124m.json", CF_SOURCE_DIR);
    cf_config c;
    int rc = cf_config_load(path, &c);
    CHECK(rc == CF_OK, "gpt2_124m.json: %s", g_msg);
    if (rc != CF_OK) return;
    CHECK(c.d_model == 768 && c.num_heads == 12 && c.num_layers == 12 && c.d_ff == 3072 &&
              c.max_length == 1024 && c.batch_size == 8 && c.vocab_size == 50304,
          "gpt2_124m.json: got %d %d %d %d %d %d %d", c.d_model, c.num_heads, c.num_layers,
          c.d_ff, c.max_length, c.batch_size, c.vocab_size);
    CHECK(c.norm == CF_NORM_LAYERNORM && c.position == CF_POS_LEARNED && c.mlp == CF_MLP_GELU &&
              c.bias && c.tie_embeddings && c.num_kv_heads == 0 && !c.qk_norm,
          "gpt2_124m.json is not the GPT-2 architecture");
    cf_param_info p[CF_NUM_PARAMS];
    size_t n = 0;
    cf_model_layout(&c, p, &n, NULL);
    CHECK(n > 123500000 && n < 125000000, "gpt2_124m.json: %zu parameters, want about 124M", n);
    printf("  %zu parameters\n", n);
}

static void test_file_errors(void) {
    printf("config file errors\n");
    /* malformed JSON: positions */
    expect_load("trailing_comma.json",
                "{\n  \"d_model\": 128,\n  \"num_heads\": 4,\n  \"num_layers\": 4,\n"
                "  \"d_ff\": 512,\n  \"steps\": 10,\n  \"seed\": 5,\n}\n",
                CF_ERR_INVALID, "malformed JSON at line 7, column 12", "trailing comma");
    expect_load("missing_comma.json", "{\n  \"d_model\": 128\n  \"num_heads\": 4\n}\n",
                CF_ERR_INVALID, "malformed JSON at line 3, column 3", "near '  \"num_heads\"");
    expect_load("unterminated.json", "{\n  \"d_model\": 128,\n  \"num_heads\": 4\n", CF_ERR_INVALID,
                "malformed JSON at line 3", "missing '}'");
    expect_load("bad_literal.json", "{\"d_model\": 128, \"steps\": tru}", CF_ERR_INVALID,
                "malformed JSON at line 1, column 27", NULL);
    expect_load("comment.json", "{\n  \"steps\": 5, // fewer\n  \"seed\": 1\n}\n", CF_ERR_INVALID,
                "malformed JSON at line 2, column 15", "does not allow comments");
    expect_load("empty.json", "  \n", CF_ERR_INVALID, "empty", NULL);
    expect_load("array.json", "[1, 2]", CF_ERR_INVALID, "must be a JSON object", "an array");
    /* unknown keys */
    expect_load("typo.json", "{\"d_modle\": 128}", CF_ERR_INVALID,
                "unknown key 'd_modle'; did you mean 'd_model'?", NULL);
    expect_load("typo2.json", "{\"learning_rte\": 0.01}", CF_ERR_INVALID,
                "did you mean 'learning_rate'?", NULL);
    expect_load("unknown.json", "{\"xyzzy\": 1}", CF_ERR_INVALID, "unknown key 'xyzzy'",
                "known keys are: d_model");
    expect_load("dup.json", "{\"steps\": 1, \"steps\": 2}", CF_ERR_INVALID,
                "'steps' appears more than once", NULL);
    /* types */
    expect_load("type_str.json", "{\"num_heads\": \"8\"}", CF_ERR_INVALID,
                "'num_heads' must be an integer, got string \"8\"", NULL);
    expect_load("type_frac.json", "{\"num_heads\": 8.5}", CF_ERR_INVALID,
                "'num_heads' must be an integer, got 8.5", NULL);
    expect_load("type_bool.json", "{\"learning_rate\": true}", CF_ERR_INVALID,
                "'learning_rate' must be a number, got true", NULL);
    expect_load("type_num.json", "{\"data\": 5}", CF_ERR_INVALID, "'data' must be a string, got 5",
                NULL);
    expect_load("type_null.json", "{\"seed\": null}", CF_ERR_INVALID,
                "'seed' must be a non-negative integer, got null", NULL);
    /* ranges */
    expect_load("divisible.json", "{\"d_model\": 500, \"num_heads\": 8}", CF_ERR_INVALID,
                "d_model (500) must be divisible by num_heads (8)", NULL);
    expect_load("steps0.json", "{\"steps\": 0}", CF_ERR_INVALID, "steps (0) must be >= 1", NULL);
    expect_load("neg_layers.json", "{\"num_layers\": -2}", CF_ERR_INVALID,
                "num_layers (-2) must be in [1, 4096]", NULL);
    expect_load("lr0.json", "{\"learning_rate\": 0}", CF_ERR_INVALID,
                "learning_rate (0) must be in (0, 10]", NULL);
    expect_load("valfrac.json", "{\"val_fraction\": 1.0}", CF_ERR_INVALID,
                "val_fraction (1) must be in [0, 1)", NULL);
    expect_load("beta2.json", "{\"beta2\": 1}", CF_ERR_INVALID, "beta2 (1) must be in [0, 1)",
                NULL);
    expect_load("beta1neg.json", "{\"beta1\": -0.1}", CF_ERR_INVALID,
                "beta1 (-0.1) must be in [0, 1)", NULL);
    expect_load("inf.json", "{\"weight_decay\": 1e999}", CF_ERR_INVALID,
                "weight_decay (inf) must be a finite number", NULL);
    expect_load("vocab_byte.json", "{\"vocab_size\": 16000}", CF_ERR_INVALID,
                "vocab_size (16000) must be 256 when tokenizer is \"byte\"", NULL);
    expect_load("noval.json", "{\"val_fraction\": 0}", CF_ERR_INVALID,
                "eval_interval (100) needs a validation split", "eval_interval to 0");
    expect_load("empty_data.json", "{\"data\": \"\"}", CF_ERR_INVALID, "'data' must not be empty",
                NULL);
    /* valid files (paths need not exist at validation time) */
    expect_load("ok.json",
                "{\"d_model\": 64, \"num_heads\": 2, \"tokenizer\": \"tok/none.json\", "
                "\"vocab_size\": 16000, \"data\": \"nowhere/x\", \"val_fraction\": 0, "
                "\"eval_interval\": 0}",
                CF_OK, NULL, NULL);
    {
        cf_config c;
        g_msg[0] = 0;
        char p[2048];
        snprintf(p, sizeof p, "%s/does_not_exist.json", g_dir);
        int rc = cf_config_load(p, &c);
        printf("  %-22s rc=%d msg: %s\n", "missing file", rc, g_msg);
        CHECK(rc == CF_ERR_IO, "missing file rc %d", rc);
        CHECK(strstr(g_msg, p) && strstr(g_msg, "cannot open"), "missing file msg: %s", g_msg);
    }
}

static void test_overrides(void) {
    printf("key=value overrides\n");
    cf_config c;
    cf_config_defaults(&c);
    expect_set(&c, "steps=10", CF_OK, NULL);
    CHECK(c.steps == 10, "steps=%d", c.steps);
    expect_set(&c, "learning_rate=3e-4", CF_OK, NULL);
    CHECK(c.learning_rate == 3e-4f, "lr=%g", (double)c.learning_rate);
    expect_set(&c, "data=some dir/with space.txt", CF_OK, NULL);
    CHECK(strcmp(c.data, "some dir/with space.txt") == 0, "data=%s", c.data);
    expect_set(&c, "name=\"quoted\"", CF_OK, NULL);
    CHECK(strcmp(c.name, "quoted") == 0, "name=%s", c.name);
    expect_set(&c, "seed=9007199254740992", CF_OK, NULL);
    CHECK(c.seed == 9007199254740992ull, "seed=%llu", (unsigned long long)c.seed);
    expect_set(&c, "seed=9007199254740993000", CF_ERR_INVALID, "must be in [0, 9007199254740992]");
    expect_set(&c, "steps=abc", CF_ERR_INVALID, "'steps' must be an integer, got 'abc'");
    expect_set(&c, "steps=", CF_ERR_INVALID, "'steps' must be an integer");
    expect_set(&c, "steps=1.5", CF_ERR_INVALID, "'steps' must be an integer, got 1.5");
    expect_set(&c, "steps=0x10", CF_ERR_INVALID, "in decimal");
    expect_set(&c, "steps=0", CF_ERR_INVALID, "steps (0) must be >= 1");
    expect_set(&c, "d_modle=64", CF_ERR_INVALID, "unknown key 'd_modle'; did you mean 'd_model'?");
    expect_set(&c, "steps", CF_ERR_INVALID, "must look like key=value");
    expect_set(&c, "=5", CF_ERR_INVALID, "no valid key");
    expect_set(&c, "beta1=1", CF_ERR_INVALID, "beta1 (1) must be in [0, 1)");
    expect_set(&c, "learning_rate=-1", CF_ERR_INVALID, "learning_rate (-1) must be in (0, 10]");
    expect_set(&c, "tokenizer=", CF_ERR_INVALID, "'tokenizer' must not be empty");
    expect_set(&c, "grad_clip=-1", CF_OK, NULL); /* <= 0 disables clipping */
    /* cross-field rules run in cf_config_validate once all overrides are applied */
    expect_set(&c, "num_heads=7", CF_OK, NULL);
    g_msg[0] = 0;
    int rc = cf_config_validate(&c, "command line");
    printf("  validate after num_heads=7: rc=%d msg: %s\n", rc, g_msg);
    CHECK(rc == CF_ERR_INVALID, "validate rc %d", rc);
    CHECK(strcmp(g_msg, "command line: d_model (128) must be divisible by num_heads (7)") == 0,
          "msg: %s", g_msg);
    expect_set(&c, "num_heads=8", CF_OK, NULL);
    CHECK(cf_config_validate(&c, "command line") == CF_OK, "valid again: %s", g_msg);
    /* struct filled by hand: validate catches per-key ranges too */
    c.batch_size = 0;
    g_msg[0] = 0;
    rc = cf_config_validate(&c, "configs/x.json");
    CHECK(rc == CF_ERR_INVALID &&
              strcmp(g_msg, "config configs/x.json: batch_size (0) must be in [1, 1048576]") == 0,
          "rc %d msg: %s", rc, g_msg);
}

static void test_json_roundtrip(void) {
    printf("to_json / from_json\n");
    cf_config a;
    cf_config_defaults(&a);
    char *js = cf_config_to_json(&a);
    CHECK(js != NULL, "to_json returned NULL");
    if (!js) return;
    printf("  defaults: %s\n", js);
    CHECK(strstr(js, "\"learning_rate\":0.003,") != NULL, "lr not printed shortest: %s", js);
    CHECK(strstr(js, "\"eps\":1e-08") != NULL, "eps: %s", js);
    CHECK(strstr(js, "\"d_model\":128,") == js + 1, "key order / names: %s", js);
    cf_config b;
    memset(&b, 0xAB, sizeof b);
    int rc = cf_config_from_json(js, &b, "checkpoint runs/x.safetensors");
    CHECK(rc == CF_OK && cfg_equal(&a, &b), "defaults round trip rc %d", rc);
    free(js);

    const char *sets[] = {"d_model=96",       "num_heads=3",        "num_layers=7",
                          "d_ff=333",         "max_length=77",      "batch_size=5",
                          "steps=12345",      "learning_rate=2.5e-4", "min_lr_ratio=0.03",
                          "warmup_steps=0",   "weight_decay=0.0123", "grad_clip=0",
                          "beta1=0.85",       "beta2=0.999",        "eps=1e-6",
                          "grad_accum_steps=4", "eval_interval=0",  "eval_batches=3",
                          "checkpoint_interval=50", "log_interval=1", "seed=123456789012345",
                          "val_fraction=0",   "data=/abs/path/corpus dir", "tokenizer=t/x.json",
                          "vocab_size=16000", "name=run \"quoted\" \\ name"};
    cf_config_defaults(&a);
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        CHECK(cf_config_set(&a, sets[i], "command line") == CF_OK, "set %s: %s", sets[i], g_msg);
    CHECK(cf_config_validate(&a, "test") == CF_OK, "modified config invalid: %s", g_msg);
    js = cf_config_to_json(&a);
    printf("  modified: %s\n", js ? js : "(null)");
    memset(&b, 0, sizeof b);
    rc = cf_config_from_json(js, &b, "checkpoint runs/x.safetensors");
    CHECK(rc == CF_OK, "from_json rc %d: %s", rc, g_msg);
    CHECK(cfg_equal(&a, &b), "modified config does not round trip");
    CHECK(b.learning_rate == 2.5e-4f && b.seed == 123456789012345ull &&
              strcmp(b.name, "run \"quoted\" \\ name") == 0,
          "lr %g seed %llu name %s", (double)b.learning_rate, (unsigned long long)b.seed, b.name);
    free(js);

    /* from_json errors carry the caller's origin */
    g_msg[0] = 0;
    rc = cf_config_from_json("{\"d_model\": 64,", &b, "checkpoint runs/x.safetensors");
    CHECK(rc == CF_ERR_INVALID && strncmp(g_msg, "checkpoint runs/x.safetensors: malformed JSON",
                                          45) == 0,
          "rc %d msg: %s", rc, g_msg);
    /* a missing key keeps its default (older checkpoints) */
    rc = cf_config_from_json("{\"d_model\": 64, \"num_heads\": 2}", &b, "test");
    CHECK(rc == CF_OK && b.d_model == 64 && b.num_layers == 4, "partial json rc %d", rc);
}

/* cf_config_check_family: num_kv_heads 0 and num_kv_heads = num_heads are the same model (MHA) */
static void test_family_kv_heads(void) {
    cf_config a, b;
    cf_config_defaults(&a);
    a.num_heads = 4;
    a.num_kv_heads = 0;
    b = a;
    b.num_kv_heads = 4;
    g_msg[0] = 0;
    CHECK(cf_config_check_family(&a, &b, "ck") == CF_OK, "num_kv_heads 0 -> 4 (num_heads 4): %s",
          g_msg);
    CHECK(cf_config_check_family(&b, &a, "ck") == CF_OK, "num_kv_heads 4 -> 0 (num_heads 4): %s",
          g_msg);
    b.num_kv_heads = 2;
    int rc = cf_config_check_family(&a, &b, "ck");
    CHECK(rc == CF_ERR_INVALID && strstr(g_msg, "num_kv_heads=4") && strstr(g_msg, "num_kv_heads=2"),
          "MHA -> GQA 4:2 is refused naming num_kv_heads 4 and 2 (rc %d): %s", rc, g_msg);
    /* both multi-head, one written as 0 and one as num_heads: only num_heads differs */
    b.num_heads = 2;
    b.num_kv_heads = 2;
    rc = cf_config_check_family(&a, &b, "ck");
    CHECK(rc == CF_ERR_INVALID && strstr(g_msg, "num_heads=4") && !strstr(g_msg, "num_kv_heads"),
          "MHA 4 heads (num_kv_heads 0) -> MHA 2 heads (num_kv_heads 2) names num_heads only (rc "
          "%d): %s",
          rc, g_msg);
}

/* configs/wiki_speedrun.json: wiki_cache_optimized's shape, data and schedule with the recipe of
 * the time-to-loss ablation's fastest row (BENCHMARKS.md "Time to loss"): RoPE, RMSNorm, QK-norm,
 * ReLU^2, an untied head; AdamW and the cosine schedule stay */
static void test_speedrun(void) {
    printf("configs/wiki_speedrun.json\n");
    char path[2048];
    cf_config s, w;
    snprintf(path, sizeof path, "%s/configs/wiki_speedrun.json", CF_SOURCE_DIR);
    int rc = cf_config_load(path, &s);
    CHECK(rc == CF_OK, "wiki_speedrun.json: %s", g_msg);
    snprintf(path, sizeof path, "%s/configs/wiki_cache_optimized.json", CF_SOURCE_DIR);
    int rc2 = cf_config_load(path, &w);
    CHECK(rc2 == CF_OK, "wiki_cache_optimized.json: %s", g_msg);
    if (rc != CF_OK || rc2 != CF_OK) return;
    CHECK(s.position == CF_POS_ROPE && s.norm == CF_NORM_RMSNORM && s.qk_norm &&
              s.mlp == CF_MLP_RELU2 && !s.tie_embeddings && s.optimizer == w.optimizer &&
              s.lr_schedule == w.lr_schedule,
          "wiki_speedrun.json is not the ablation's fastest recipe");
    /* everything else as wiki_cache_optimized, so the two race on equal terms */
    cf_config t = s;
    t.position = w.position;
    t.norm = w.norm;
    t.qk_norm = w.qk_norm;
    t.mlp = w.mlp;
    t.tie_embeddings = w.tie_embeddings;
    snprintf(t.name, sizeof t.name, "%s", w.name);
    /* every key, through the serialisation that checkpoints use */
    char *jt = cf_config_to_json(&t), *jw = cf_config_to_json(&w);
    CHECK(jt && jw && strcmp(jt, jw) == 0,
          "wiki_speedrun.json differs from wiki_cache_optimized.json beyond the recipe keys:\n  %s\n  %s",
          jt ? jt : "(null)", jw ? jw : "(null)");
    free(jt);
    free(jw);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "%s/test_config_tmp", CF_BINARY_DIR);
    if (cf_mkdirs(g_dir) != CF_OK) return 2;
    cf_log_set_callback(capture_log, NULL);
    test_defaults_and_shipped();
    test_gpt2_124m();
    test_speedrun();
    test_file_errors();
    test_overrides();
    test_json_roundtrip();
    test_family_kv_heads();
    cf_log_set_callback(NULL, NULL);
    if (g_fail) {
        printf("test_config: %d check(s) FAILED\n", g_fail);
        return 1;
    }
    printf("test_config: all checks passed (%d errors reported as expected)\n", g_nerr);
    return 0;
}
