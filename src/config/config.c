/* clformer: configuration. One X-macro table of keys drives defaults, JSON parsing, key=value
 * overrides, type and range checks, and serialisation; cross-field rules live in
 * cf_config_validate. Relative paths (data, tokenizer) are kept as written and resolved against the
 * current working directory by whoever opens them. */
#define _POSIX_C_SOURCE 200809L
#include "clformer/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clformer/common.h"

/* Seeds are kept within the range a JSON number (an IEEE double) represents exactly, so that
 * cf_config_to_json / cf_config_from_json round-trip them. */
#define CF_SEED_MAX 9007199254740992.0 /* 2^53 */

/* ---- the key table ------------------------------------------------------------------------ */
/* INT(name, default, min, max)
 * FLT(name, default, min, max, min_inclusive, max_inclusive)
 * U64(name, default, max)
 * STR(name, default, may_be_empty)
 * ENUM(name, default, names): one of the NULL-terminated names, stored as its index (an int)
 * BOOL(name, default): JSON true/false; overrides take true/false/1/0 */
#define CF_CONFIG_KEYS(INT, FLT, U64, STR, ENUM, BOOL)                                             \
    INT(d_model, 128, 1, 1 << 16)                                                                  \
    INT(num_heads, 4, 1, 1 << 12)                                                                  \
    INT(num_layers, 4, 1, 1 << 12)                                                                 \
    INT(d_ff, 512, 1, 1 << 20)                                                                     \
    INT(max_length, 128, 1, 1 << 20)                                                               \
    INT(vocab_size, 256, 2, 1 << 24)                                                               \
    ENUM(norm, CF_NORM_LAYERNORM, g_norm_names)                                                    \
    FLT(norm_eps, 1e-5, 0.0, 1.0, 0, 1)                                                            \
    BOOL(bias, 1)                                                                                  \
    ENUM(position, CF_POS_LEARNED, g_position_names)                                               \
    FLT(rope_theta, 10000.0, 0.0, 1e30, 0, 1)                                                      \
    ENUM(mlp, CF_MLP_GELU, g_mlp_names)                                                            \
    INT(num_kv_heads, 0, 0, 1 << 12)                                                               \
    BOOL(qk_norm, 0)                                                                               \
    BOOL(tie_embeddings, 1)                                                                        \
    FLT(logit_softcap, 0.0, -1e30, 1e30, 1, 1)                                                     \
    INT(share_layers, 0, 0, 1 << 12)                                                               \
    ENUM(recompute, CF_RECOMPUTE_NONE, g_recompute_names)                                          \
    INT(head_chunk, 0, 0, 1 << 30)                                                                 \
    ENUM(attention, CF_ATTN_AUTO, g_attention_names)                                               \
    INT(attention_window, 0, INT_MIN, INT_MAX)                                                     \
    BOOL(doc_mask, 0)                                                                              \
    INT(batch_size, 16, 1, 1 << 20)                                                                \
    INT(steps, 400, 1, INT_MAX)                                                                    \
    FLT(learning_rate, 3e-3, 0.0, 10.0, 0, 1)                                                      \
    FLT(min_lr_ratio, 0.1, 0.0, 1.0, 1, 1)                                                         \
    INT(warmup_steps, 30, 0, INT_MAX)                                                              \
    FLT(weight_decay, 0.1, 0.0, 10.0, 1, 1)                                                        \
    FLT(grad_clip, 1.0, -1e30, 1e30, 1, 1)                                                         \
    FLT(beta1, 0.9, 0.0, 1.0, 1, 0)                                                                \
    FLT(beta2, 0.95, 0.0, 1.0, 1, 0)                                                               \
    FLT(eps, 1e-8, 0.0, 1.0, 0, 1)                                                                 \
    ENUM(optimizer, CF_OPTIM_ADAMW, g_optimizer_names)                                             \
    FLT(muon_lr, 0.02, 0.0, 10.0, 0, 1)                                                            \
    FLT(muon_momentum, 0.95, 0.0, 1.0, 1, 0)                                                       \
    ENUM(lr_schedule, CF_LR_COSINE, g_lr_schedule_names)                                           \
    FLT(decay_fraction, 0.2, 0.0, 1.0, 1, 1)                                                       \
    INT(grad_accum_steps, 1, 1, 60)                                                                \
    ENUM(precision, CF_PREC_FP32, g_precision_names)                                               \
    ENUM(half_activations, CF_HALF_ACTS_ALL, g_half_acts_names)                                    \
    FLT(loss_scale, 0.0, -3.4e38, 3.4e38, 1, 1)                                                    \
    INT(loss_scale_window, 1000, 1, INT_MAX)                                                       \
    INT(eval_interval, 100, 0, INT_MAX)                                                            \
    INT(eval_batches, 10, 1, 1 << 20)                                                              \
    INT(checkpoint_interval, 200, 0, INT_MAX)                                                      \
    INT(log_interval, 10, 1, INT_MAX)                                                              \
    U64(seed, 1337, CF_SEED_MAX)                                                                   \
    FLT(val_fraction, 0.05, 0.0, 1.0, 1, 0)                                                        \
    STR(data, "data/tiny_corpus.txt", 0)                                                           \
    STR(tokenizer, "byte", 0)                                                                      \
    STR(name, "tiny", 1)

/* Names of the enum keys' values, indexed by the enum (config.h). */
static const char *const g_norm_names[] = {"layernorm", "rmsnorm", NULL};
static const char *const g_position_names[] = {"learned", "rope", NULL};
static const char *const g_mlp_names[] = {"gelu", "swiglu", "relu2", NULL};
static const char *const g_precision_names[] = {"fp32", "tf32", "bf16", "fp16", NULL};

const char *cf_precision_name(int precision) {
    return precision >= CF_PREC_FP32 && precision <= CF_PREC_FP16 ? g_precision_names[precision]
                                                                  : "?";
}
static const char *const g_recompute_names[] = {"none", "attention", "block", NULL};
static const char *const g_half_acts_names[] = {"none", "gemm", "all", NULL};
static const char *const g_attention_names[] = {"auto", "flash", "matrix", NULL};
static const char *const g_optimizer_names[] = {"adamw", "muon", NULL};
static const char *const g_lr_schedule_names[] = {"cosine", "wsd", "constant", NULL};

typedef enum { KT_INT, KT_FLOAT, KT_U64, KT_STR, KT_ENUM, KT_BOOL } cf_key_type;

typedef struct {
    const char *name;
    cf_key_type type;
    size_t offset, size; /* into cf_config */
    double def;          /* numeric default */
    const char *def_str; /* string default */
    double lo, hi;       /* numeric range */
    int lo_incl, hi_incl;
    int may_be_empty; /* strings */
    const char *const *names; /* enums: value names, NULL-terminated */
} cf_key;

static int count_names(const char *const *names) {
    int n = 0;
    while (names[n]) n++;
    return n;
}

#define CF_KEY_INT(n, d, lo, hi)                                                                   \
    {#n,   KT_INT, offsetof(cf_config, n), sizeof(((cf_config *)0)->n), d, NULL, lo, hi, 1, 1,     \
     0,    NULL},
#define CF_KEY_FLT(n, d, lo, hi, li, hi_)                                                          \
    {#n,  KT_FLOAT, offsetof(cf_config, n), sizeof(((cf_config *)0)->n), d, NULL, lo, hi, li,      \
     hi_, 0,        NULL},
#define CF_KEY_U64(n, d, hi)                                                                       \
    {#n, KT_U64, offsetof(cf_config, n), sizeof(((cf_config *)0)->n), d, NULL, 0, hi, 1, 1, 0,     \
     NULL},
#define CF_KEY_STR(n, d, e)                                                                        \
    {#n, KT_STR, offsetof(cf_config, n), sizeof(((cf_config *)0)->n), 0, d, 0, 0, 1, 1, e, NULL},
#define CF_KEY_ENUM(n, d, names)                                                                   \
    {#n, KT_ENUM, offsetof(cf_config, n), sizeof(((cf_config *)0)->n), d, NULL, 0, 0, 1, 1, 0,     \
     names},
#define CF_KEY_BOOL(n, d)                                                                          \
    {#n, KT_BOOL, offsetof(cf_config, n), sizeof(((cf_config *)0)->n), d, NULL, 0, 1, 1, 1, 0,     \
     NULL},

static const cf_key g_keys[] = {
    CF_CONFIG_KEYS(CF_KEY_INT, CF_KEY_FLT, CF_KEY_U64, CF_KEY_STR, CF_KEY_ENUM, CF_KEY_BOOL)};
#define CF_NKEYS ((int)(sizeof g_keys / sizeof g_keys[0]))

/* The table's types must match the struct's: a mismatch is a compile error. */
#define CF_CHECK_INT(n, ...)                                                                       \
    _Static_assert(_Generic(((cf_config *)0)->n, int: 1, default: 0), #n " must be int");
#define CF_CHECK_FLT(n, ...)                                                                       \
    _Static_assert(_Generic(((cf_config *)0)->n, float: 1, default: 0), #n " must be float");
#define CF_CHECK_U64(n, ...)                                                                       \
    _Static_assert(_Generic(((cf_config *)0)->n, uint64_t: 1, default: 0), #n " must be uint64_t");
#define CF_CHECK_STR(n, ...)                                                                       \
    _Static_assert(sizeof(((cf_config *)0)->n) > sizeof(char *), #n " must be a char array");
CF_CONFIG_KEYS(CF_CHECK_INT, CF_CHECK_FLT, CF_CHECK_U64, CF_CHECK_STR, CF_CHECK_INT, CF_CHECK_INT)

/* ---- message helpers ---------------------------------------------------------------------- */

/* "config configs/x.json" for a path; an origin that already reads as a phrase ("command line",
 * "checkpoint runs/x.safetensors") is used as it is. */
static void origin_label(const char *origin, char *buf, size_t n) {
    if (!origin || !*origin)
        snprintf(buf, n, "config");
    else if (strchr(origin, ' '))
        snprintf(buf, n, "%s", origin);
    else
        snprintf(buf, n, "config %s", origin);
}

#define CFG_ERR(origin, fmt, ...)                                                                  \
    do {                                                                                           \
        char lbl_[CF_PATH_MAX + 64];                                                               \
        origin_label(origin, lbl_, sizeof lbl_);                                                   \
        CF_ERROR("%s: " fmt, lbl_, __VA_ARGS__);                                                   \
    } while (0)

static size_t levenshtein(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return (size_t)-1 / 2;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = (a[i - 1] == b[j - 1]) ? 0 : 1;
            size_t best = diag + cost;
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const cf_key *find_key(const char *name) {
    for (int i = 0; i < CF_NKEYS; i++)
        if (strcmp(g_keys[i].name, name) == 0) return &g_keys[i];
    return NULL;
}

static void report_unknown_key(const char *origin, const char *name) {
    const cf_key *best = NULL;
    size_t best_d = (size_t)-1;
    for (int i = 0; i < CF_NKEYS; i++) {
        size_t d = levenshtein(name, g_keys[i].name);
        if (d < best_d) {
            best_d = d;
            best = &g_keys[i];
        }
    }
    size_t len = strlen(name);
    size_t limit = len < 6 ? 2 : (len / 3 + 1);
    if (best && best_d <= limit) {
        CFG_ERR(origin, "unknown key '%s'; did you mean '%s'?", name, best->name);
        return;
    }
    char list[1024];
    size_t off = 0;
    list[0] = 0;
    for (int i = 0; i < CF_NKEYS && off < sizeof list; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", i ? ", " : "",
                                g_keys[i].name);
    CFG_ERR(origin, "unknown key '%s'; known keys are: %s", name, list);
}

/* "unknown norm 'rmsnrom'; did you mean 'rmsnorm'?" or the list of names. */
static void report_unknown_name(const char *origin, const cf_key *k, const char *name) {
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (int i = 0; k->names[i]; i++) {
        size_t d = levenshtein(name, k->names[i]);
        if (d < best_d) {
            best_d = d;
            best = k->names[i];
        }
    }
    size_t len = strlen(name);
    size_t limit = len < 6 ? 2 : (len / 3 + 1);
    if (best && best_d <= limit) {
        CFG_ERR(origin, "unknown %s '%.60s'; did you mean '%s'?", k->name, name, best);
        return;
    }
    char list[256];
    size_t off = 0;
    list[0] = 0;
    for (int i = 0; k->names[i] && off < sizeof list; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", i ? ", " : "",
                                k->names[i]);
    CFG_ERR(origin, "unknown %s '%.60s'; use one of: %s", k->name, name, list);
}

static int set_enum(cf_config *cfg, const cf_key *k, const char *s, const char *origin) {
    for (int i = 0; k->names[i]; i++) {
        if (strcmp(s, k->names[i]) == 0) {
            *(int *)((char *)cfg + k->offset) = i;
            return CF_OK;
        }
    }
    report_unknown_name(origin, k, s);
    return CF_ERR_INVALID;
}

static const char *type_word(cf_key_type t) {
    switch (t) {
    case KT_INT: return "an integer";
    case KT_FLOAT: return "a number";
    case KT_U64: return "a non-negative integer";
    case KT_BOOL: return "true or false";
    default: return "a string";
    }
}

/* Shortest %g spelling that reads back as the same double (-0.1, not -0.10000000000000001). */
static void shortest_double(double v, char *buf, size_t n) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* Describe a JSON value briefly: `string "8"`, `true`, `an array`. */
static void describe_json(const cJSON *v, char *buf, size_t n) {
    if (cJSON_IsString(v))
        snprintf(buf, n, "string \"%.60s\"", v->valuestring);
    else if (cJSON_IsBool(v))
        snprintf(buf, n, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNull(v))
        snprintf(buf, n, "null");
    else if (cJSON_IsArray(v))
        snprintf(buf, n, "an array");
    else if (cJSON_IsObject(v))
        snprintf(buf, n, "an object");
    else if (cJSON_IsNumber(v))
        shortest_double(v->valuedouble, buf, n);
    else
        snprintf(buf, n, "an invalid value");
}

static void range_text(const cf_key *k, char *buf, size_t n) {
    if (k->type == KT_INT || k->type == KT_U64) {
        if (k->type == KT_INT && k->hi >= (double)INT_MAX)
            snprintf(buf, n, "must be >= %.0f", k->lo);
        else
            snprintf(buf, n, "must be in [%.0f, %.0f]", k->lo, k->hi);
        return;
    }
    if (k->lo <= -1e29 && k->hi >= 1e29) {
        snprintf(buf, n, "must be a finite number");
        return;
    }
    if (k->hi >= 1e29) {
        snprintf(buf, n, "must be %s %g", k->lo_incl ? ">=" : ">", k->lo);
        return;
    }
    snprintf(buf, n, "must be in %c%g, %g%c", k->lo_incl ? '[' : '(', k->lo, k->hi,
             k->hi_incl ? ']' : ')');
}

/* ---- setting one key from a number or a string -------------------------------------------- */

static int in_range(const cf_key *k, double v) {
    if (!isfinite(v)) return 0;
    if (k->lo_incl ? v < k->lo : v <= k->lo) return 0;
    if (k->hi_incl ? v > k->hi : v >= k->hi) return 0;
    return 1;
}

/* v is the value as parsed (text is its spelling, for messages). */
static int set_number(cf_config *cfg, const cf_key *k, double v, const char *text,
                      const char *origin) {
    char rt[128];
    char *p = (char *)cfg + k->offset;
    if (!isfinite(v)) {
        CFG_ERR(origin, "%s (%s) must be a finite number", k->name, text);
        return CF_ERR_INVALID;
    }
    if (k->type == KT_INT || k->type == KT_U64) {
        if (v != floor(v)) {
            CFG_ERR(origin, "'%s' must be %s, got %s", k->name, type_word(k->type), text);
            return CF_ERR_INVALID;
        }
        if (!in_range(k, v)) {
            range_text(k, rt, sizeof rt);
            CFG_ERR(origin, "%s (%s) %s", k->name, text, rt);
            return CF_ERR_INVALID;
        }
        if (k->type == KT_INT)
            *(int *)p = (int)v;
        else
            *(uint64_t *)p = (uint64_t)v;
        return CF_OK;
    }
    /* float: check the value that will actually be stored */
    float f = (float)v;
    if (!in_range(k, (double)f)) {
        range_text(k, rt, sizeof rt);
        CFG_ERR(origin, "%s (%s) %s", k->name, text, rt);
        return CF_ERR_INVALID;
    }
    *(float *)p = f;
    return CF_OK;
}

static int set_string(cf_config *cfg, const cf_key *k, const char *s, const char *origin) {
    size_t len = strlen(s);
    if (len + 1 > k->size) {
        CFG_ERR(origin, "'%s' is too long (%zu bytes, at most %zu)", k->name, len, k->size - 1);
        return CF_ERR_INVALID;
    }
    if (len == 0 && !k->may_be_empty) {
        CFG_ERR(origin, "'%s' must not be empty (default: \"%s\")", k->name, k->def_str);
        return CF_ERR_INVALID;
    }
    memcpy((char *)cfg + k->offset, s, len + 1);
    return CF_OK;
}

static int set_from_json(cf_config *cfg, const cf_key *k, const cJSON *v, const char *origin) {
    char got[128];
    if (k->type == KT_STR) {
        if (!cJSON_IsString(v)) {
            describe_json(v, got, sizeof got);
            CFG_ERR(origin, "'%s' must be a string, got %s", k->name, got);
            return CF_ERR_INVALID;
        }
        return set_string(cfg, k, v->valuestring, origin);
    }
    if (k->type == KT_ENUM) {
        if (!cJSON_IsString(v)) {
            describe_json(v, got, sizeof got);
            CFG_ERR(origin, "'%s' must be a string naming one of its values (e.g. \"%s\"), got %s",
                    k->name, k->names[0], got);
            return CF_ERR_INVALID;
        }
        return set_enum(cfg, k, v->valuestring, origin);
    }
    if (k->type == KT_BOOL) {
        if (!cJSON_IsBool(v)) {
            describe_json(v, got, sizeof got);
            CFG_ERR(origin, "'%s' must be true or false (without quotes), got %s", k->name, got);
            return CF_ERR_INVALID;
        }
        *(int *)((char *)cfg + k->offset) = cJSON_IsTrue(v) ? 1 : 0;
        return CF_OK;
    }
    if (!cJSON_IsNumber(v)) {
        describe_json(v, got, sizeof got);
        if (cJSON_IsString(v))
            CFG_ERR(origin, "'%s' must be %s, got %s (remove the quotes)", k->name,
                    type_word(k->type), got);
        else
            CFG_ERR(origin, "'%s' must be %s, got %s", k->name, type_word(k->type), got);
        return CF_ERR_INVALID;
    }
    describe_json(v, got, sizeof got);
    return set_number(cfg, k, v->valuedouble, got, origin);
}

/* ---- cross-field validation --------------------------------------------------------------- */

int cf_config_validate(const cf_config *cfg, const char *origin) {
    char rt[128], txt[64];
    /* per-key ranges first (a struct filled by hand may bypass the setters) */
    for (int i = 0; i < CF_NKEYS; i++) {
        const cf_key *k = &g_keys[i];
        const char *p = (const char *)cfg + k->offset;
        double v;
        switch (k->type) {
        case KT_INT: v = *(const int *)p; break;
        case KT_FLOAT: v = *(const float *)p; break;
        case KT_U64: v = (double)*(const uint64_t *)p; break;
        case KT_BOOL: {
            int b = *(const int *)p;
            if (b != 0 && b != 1) {
                CFG_ERR(origin, "%s (%d) must be true or false", k->name, b);
                return CF_ERR_INVALID;
            }
            continue;
        }
        case KT_ENUM: {
            int e = *(const int *)p;
            if (e < 0 || e >= count_names(k->names)) {
                CFG_ERR(origin, "%s (%d) is not a known %s; use one of its names (e.g. \"%s\")",
                        k->name, e, k->name, k->names[0]);
                return CF_ERR_INVALID;
            }
            continue;
        }
        default: {
            size_t len = strnlen(p, k->size);
            if (len == k->size) {
                CFG_ERR(origin, "'%s' is not NUL-terminated", k->name);
                return CF_ERR_INVALID;
            }
            if (len == 0 && !k->may_be_empty) {
                CFG_ERR(origin, "'%s' must not be empty (default: \"%s\")", k->name, k->def_str);
                return CF_ERR_INVALID;
            }
            continue;
        }
        }
        if (!in_range(k, v)) {
            range_text(k, rt, sizeof rt);
            snprintf(txt, sizeof txt, "%.9g", v);
            CFG_ERR(origin, "%s (%s) %s", k->name, txt, rt);
            return CF_ERR_INVALID;
        }
    }
    if (cfg->d_model % cfg->num_heads != 0) {
        CFG_ERR(origin, "d_model (%d) must be divisible by num_heads (%d)", cfg->d_model,
                cfg->num_heads);
        return CF_ERR_INVALID;
    }
    /* the model family (sign checks here, not in the key table, so the message names the fix) */
    if (cfg->logit_softcap < 0.0f) {
        CFG_ERR(origin,
                "logit_softcap (%g) must be >= 0; use a positive cap such as 30, or 0 to turn "
                "soft-capping off",
                (double)cfg->logit_softcap);
        return CF_ERR_INVALID;
    }
    if (cfg->num_heads % cf_config_kv_heads(cfg) != 0) {
        CFG_ERR(origin,
                "num_kv_heads (%d) must divide num_heads (%d); use a divisor of num_heads (%d "
                "for MHA, 1 for MQA) or 0 for as many as num_heads",
                cfg->num_kv_heads, cfg->num_heads, cfg->num_heads);
        return CF_ERR_INVALID;
    }
    if (cfg->position == CF_POS_ROPE && (cfg->d_model / cfg->num_heads) % 2 != 0) {
        CFG_ERR(origin,
                "position \"rope\" needs an even head size, but d_model / num_heads = %d / %d = "
                "%d; change d_model or num_heads so the head size is even, or use position "
                "\"learned\"",
                cfg->d_model, cfg->num_heads, cfg->d_model / cfg->num_heads);
        return CF_ERR_INVALID;
    }
    /* attention (sign and range checks here, not in the key table, so the message names the fix) */
    if (cfg->attention_window < 0 || cfg->attention_window > cfg->max_length) {
        CFG_ERR(origin,
                "attention_window (%d) must be between 0 and max_length (%d): 0 for full causal "
                "attention, W for the last W keys of each query",
                cfg->attention_window, cfg->max_length);
        return CF_ERR_INVALID;
    }
    if (cfg->attention == CF_ATTN_MATRIX && (cfg->attention_window > 0 || cfg->doc_mask)) {
        CFG_ERR(origin,
                "attention \"matrix\" has no %s; use attention \"flash\" (or \"auto\") with it",
                cfg->attention_window > 0 ? "sliding window (attention_window)"
                                          : "document mask (doc_mask)");
        return CF_ERR_INVALID;
    }
    if (cfg->share_layers > 0 && cfg->num_layers % cfg->share_layers != 0) {
        CFG_ERR(origin,
                "share_layers (%d) must divide num_layers (%d); use a divisor of num_layers, or 0 "
                "for no sharing",
                cfg->share_layers, cfg->num_layers);
        return CF_ERR_INVALID;
    }
    if (strcmp(cfg->tokenizer, "byte") == 0 && cfg->vocab_size != 256) {
        CFG_ERR(origin,
                "vocab_size (%d) must be 256 when tokenizer is \"byte\"; set vocab_size to 256 "
                "or point tokenizer at a trained tokenizer file",
                cfg->vocab_size);
        return CF_ERR_INVALID;
    }
    /* (the key table admits any finite float, so this one message covers the range) */
    if (cfg->loss_scale != 0.0f && !(cfg->loss_scale >= 1.0f && cfg->loss_scale <= 1e38f)) {
        CFG_ERR(origin,
                "loss_scale (%g) must be 0 (the default initial scale, 65536) or in [1, 1e38]; "
                "the loss is multiplied by it before the backward of a precision fp16 run",
                (double)cfg->loss_scale);
        return CF_ERR_INVALID;
    }
    if (cfg->eval_interval > 0 && cfg->val_fraction <= 0.0f) {
        CFG_ERR(origin,
                "eval_interval (%d) needs a validation split but val_fraction is 0; set "
                "val_fraction > 0 or eval_interval to 0",
                cfg->eval_interval);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}

int cf_config_warn_ignored(const cf_config *cfg, const char *origin) {
    cf_config d;
    cf_config_defaults(&d);
    char lbl[CF_PATH_MAX + 64];
    origin_label(origin, lbl, sizeof lbl);
    int n = 0;
    if (cfg->optimizer == CF_OPTIM_ADAMW) {
        char keys[64] = "";
        if (cfg->muon_lr != d.muon_lr) strcat(keys, "muon_lr");
        if (cfg->muon_momentum != d.muon_momentum)
            strcat(strcat(keys, keys[0] ? ", " : ""), "muon_momentum");
        if (keys[0]) {
            CF_WARN("%s: %s %s ignored with optimizer \"adamw\"; set optimizer to \"muon\" to "
                    "use %s, or remove %s",
                    lbl, keys, strchr(keys, ',') ? "are" : "is", strchr(keys, ',') ? "them" : "it",
                    strchr(keys, ',') ? "them" : "it");
            n++;
        }
    }
    if (cfg->precision != CF_PREC_FP16 && (cfg->loss_scale != d.loss_scale ||
                                           cfg->loss_scale_window != d.loss_scale_window)) {
        CF_WARN("%s: loss_scale and loss_scale_window are ignored with precision \"%s\" (no loss "
                "scaling); set precision to \"fp16\" to use them, or remove them",
                lbl, g_precision_names[cfg->precision]);
        n++;
    }
    if (cfg->lr_schedule != CF_LR_WSD && cfg->decay_fraction != d.decay_fraction) {
        CF_WARN("%s: decay_fraction is ignored with lr_schedule \"%s\"; set lr_schedule to "
                "\"wsd\" to use it, or remove it",
                lbl, g_lr_schedule_names[cfg->lr_schedule == CF_LR_CONSTANT ? 2 : 0]);
        n++;
    }
    return n;
}

/* ---- the model family of a checkpoint ---------------------------------------------------- */

/* Keys that change the function the weights compute without (always) changing a tensor's shape;
 * a checkpoint only makes sense under its own values. num_heads is here because the packed qkv
 * tensor has the same shape for any head count. */
static const char *const g_family_keys[] = {
    "norm",         "norm_eps", "bias",           "position",      "rope_theta",   "mlp",
    "num_kv_heads", "qk_norm",  "tie_embeddings", "logit_softcap", "share_layers", "num_heads",
};

static double float_as_short_double(float f);

static void value_text(const cf_config *cfg, const cf_key *k, char *buf, size_t n) {
    const char *p = (const char *)cfg + k->offset;
    switch (k->type) {
    case KT_ENUM: {
        int e = *(const int *)p;
        snprintf(buf, n, "%s", e >= 0 && e < count_names(k->names) ? k->names[e] : "?");
        break;
    }
    case KT_BOOL: snprintf(buf, n, "%s", *(const int *)p ? "true" : "false"); break;
    case KT_FLOAT: snprintf(buf, n, "%.9g", float_as_short_double(*(const float *)p)); break;
    case KT_U64: snprintf(buf, n, "%llu", (unsigned long long)*(const uint64_t *)p); break;
    case KT_STR: snprintf(buf, n, "%s", p); break;
    default:
        /* num_kv_heads 0 means num_heads: print what the model uses */
        snprintf(buf, n, "%d",
                 strcmp(k->name, "num_kv_heads") == 0 ? cf_config_kv_heads(cfg) : *(const int *)p);
        break;
    }
}

int cf_config_check_family(const cf_config *ckpt, const cf_config *cfg, const char *ckpt_path) {
    char was[512] = "", now[512] = "";
    size_t wo = 0, no = 0;
    for (size_t i = 0; i < sizeof g_family_keys / sizeof g_family_keys[0]; i++) {
        const cf_key *k = find_key(g_family_keys[i]);
        char va[64], vb[64];
        value_text(ckpt, k, va, sizeof va);
        value_text(cfg, k, vb, sizeof vb);
        if (strcmp(va, vb) == 0) continue;
        /* multi-head on both sides (num_kv_heads 0 or num_heads: the same model): the key/value
         * heads follow num_heads, which is reported itself */
        if (!strcmp(k->name, "num_kv_heads") && cf_config_kv_heads(ckpt) == ckpt->num_heads &&
            cf_config_kv_heads(cfg) == cfg->num_heads)
            continue;
        if (wo < sizeof was)
            wo += (size_t)snprintf(was + wo, sizeof was - wo, "%s%s=%s", wo ? ", " : "", k->name,
                                   va);
        if (no < sizeof now)
            no += (size_t)snprintf(now + no, sizeof now - no, "%s%s=%s", no ? ", " : "", k->name,
                                   vb);
    }
    if (!was[0]) return CF_OK;
    CF_ERROR("checkpoint %s was trained with %s but the config says %s; use the checkpoint's "
             "config (or start a new run without the checkpoint)",
             ckpt_path ? ckpt_path : "(unnamed)", was, now);
    return CF_ERR_INVALID;
}

/* ---- defaults, JSON ----------------------------------------------------------------------- */

void cf_config_defaults(cf_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < CF_NKEYS; i++) {
        const cf_key *k = &g_keys[i];
        char *p = (char *)cfg + k->offset;
        switch (k->type) {
        case KT_INT:
        case KT_ENUM:
        case KT_BOOL: *(int *)p = (int)k->def; break;
        case KT_FLOAT: *(float *)p = (float)k->def; break;
        case KT_U64: *(uint64_t *)p = (uint64_t)k->def; break;
        case KT_STR: snprintf(p, k->size, "%s", k->def_str); break;
        }
    }
}

/* Error position -> 1-based line and column (in bytes). */
static void line_col(const char *text, size_t pos, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t i = 0; i < pos && text[i]; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void report_malformed(const char *origin, const char *text, size_t len, size_t pos) {
    const char *what = "";
    if (pos > len) pos = len;
    /* cJSON often reports one token late; make the two commonest slips precise. */
    size_t i = pos;
    while (i > 0 && is_ws(text[i - 1])) i--;
    if (i > 0 && (text[i - 1] == '}' || text[i - 1] == ']') && (i == pos || pos == len)) {
        size_t j = i - 1;
        while (j > 0 && is_ws(text[j - 1])) j--;
        if (j > 0 && text[j - 1] == ',') {
            pos = j - 1;
            what = "; remove the trailing comma";
        }
    }
    if (!*what) {
        size_t r = pos;
        while (r < len && is_ws(text[r])) r++;
        if (r >= len) {
            pos = i > 0 ? i - 1 : 0;
            what = "; unexpected end of file, check for a missing '}' or ']'";
        } else if (text[r] == '/' || text[r] == '#' || text[r] == '*') {
            /* back to the comment opener */
            while (r > 0 && (text[r - 1] == '/' || text[r - 1] == '*')) r--;
            pos = r;
            what = "; JSON does not allow comments, remove them";
        } else {
            what = "; check for a missing comma, an unquoted key or string, or a stray character";
        }
    }
    int line, col;
    line_col(text, pos, &line, &col);
    /* snippet: up to 24 characters around pos on the same line, control chars dropped */
    size_t s = pos;
    while (s > 0 && pos - s < 12 && text[s - 1] != '\n') s--;
    char near[64];
    size_t n = 0;
    for (size_t q = s; q < len && n < 24 && text[q] != '\n'; q++)
        if ((unsigned char)text[q] >= 0x20) near[n++] = text[q];
    near[n] = 0;
    CFG_ERR(origin, "malformed JSON at line %d, column %d (near '%s')%s", line, col, near, what);
}

/* Apply a parsed JSON object to cfg (all keys checked; stops at the first error). */
static int apply_json(cf_config *cfg, const cJSON *root, const char *origin) {
    if (!cJSON_IsObject(root)) {
        char got[128];
        describe_json(root, got, sizeof got);
        CFG_ERR(origin, "the top level must be a JSON object like {\"d_model\": 128}, got %s", got);
        return CF_ERR_INVALID;
    }
    for (const cJSON *it = root->child; it; it = it->next) {
        if (!it->string) continue;
        for (const cJSON *prev = root->child; prev != it; prev = prev->next) {
            if (prev->string && strcmp(prev->string, it->string) == 0) {
                CFG_ERR(origin, "key '%s' appears more than once; keep one", it->string);
                return CF_ERR_INVALID;
            }
        }
        const cf_key *k = find_key(it->string);
        if (!k) {
            report_unknown_key(origin, it->string);
            return CF_ERR_INVALID;
        }
        CF_TRY(set_from_json(cfg, k, it, origin));
    }
    return CF_OK;
}

static int parse_text(const char *text, size_t len, cf_config *cfg, const char *origin) {
    /* skip a UTF-8 byte-order mark */
    if (len >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
        (unsigned char)text[2] == 0xBF) {
        text += 3;
        len -= 3;
    }
    size_t nonws = 0;
    while (nonws < len && is_ws(text[nonws])) nonws++;
    if (nonws == len) {
        CFG_ERR(origin, "file is empty; expected a JSON object like {\"d_model\": 128}%s", "");
        return CF_ERR_INVALID;
    }
    if (strlen(text) != len) {
        CFG_ERR(origin, "contains a NUL byte at offset %zu; is this a JSON text file?",
                strlen(text));
        return CF_ERR_INVALID;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) {
        size_t pos = end ? (size_t)(end - text) : 0;
        report_malformed(origin, text, len, pos);
        return CF_ERR_INVALID;
    }
    cf_config tmp;
    cf_config_defaults(&tmp);
    int rc = apply_json(&tmp, root, origin);
    cJSON_Delete(root);
    if (rc == CF_OK) rc = cf_config_validate(&tmp, origin);
    if (rc == CF_OK) *cfg = tmp;
    return rc;
}

int cf_config_load(const char *path, cf_config *cfg) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        CF_ERROR("config %s: cannot open: %s; check the path (shipped configs are in configs/)",
                 path, strerror(errno));
        return CF_ERR_IO;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (64u << 20)) {
                fclose(f);
                free(buf);
                CF_ERROR("config %s: larger than 64 MiB; is this really a config file?", path);
                return CF_ERR_INVALID;
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                fclose(f);
                free(buf);
                return CF_ERR_NOMEM;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        CF_ERROR("config %s: read error (is it a directory?)", path);
        return CF_ERR_IO;
    }
    buf[len] = 0;
    int rc = parse_text(buf, len, cfg, path);
    free(buf);
    return rc;
}

int cf_config_from_json(const char *json, cf_config *cfg, const char *origin) {
    if (!json) {
        CFG_ERR(origin, "no configuration text%s", "");
        return CF_ERR_INVALID;
    }
    return parse_text(json, strlen(json), cfg, origin);
}

/* Shortest decimal that reads back as the same float (so 1e-3f prints as 0.001). */
static double float_as_short_double(float f) {
    char buf[48];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if ((float)strtod(buf, NULL) == f) return strtod(buf, NULL);
    }
    return (double)f;
}

char *cf_config_to_json(const cf_config *cfg) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    for (int i = 0; i < CF_NKEYS; i++) {
        const cf_key *k = &g_keys[i];
        const char *p = (const char *)cfg + k->offset;
        cJSON *item = NULL;
        switch (k->type) {
        case KT_INT: item = cJSON_CreateNumber(*(const int *)p); break;
        case KT_BOOL: item = cJSON_CreateBool(*(const int *)p != 0); break;
        case KT_ENUM: {
            int e = *(const int *)p;
            if (e < 0 || e >= count_names(k->names)) {
                cJSON_Delete(root);
                return NULL;
            }
            item = cJSON_CreateString(k->names[e]);
            break;
        }
        case KT_FLOAT: item = cJSON_CreateNumber(float_as_short_double(*(const float *)p)); break;
        case KT_U64: item = cJSON_CreateNumber((double)*(const uint64_t *)p); break;
        case KT_STR: {
            char tmp[CF_PATH_MAX];
            snprintf(tmp, sizeof tmp, "%.*s", (int)strnlen(p, k->size), p);
            item = cJSON_CreateString(tmp);
            break;
        }
        }
        if (!item) {
            cJSON_Delete(root);
            return NULL;
        }
        cJSON_AddItemToObject(root, k->name, item);
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s) return NULL;
    /* hand back memory the caller frees with free() whatever cJSON's allocator is */
    char *out = strdup(s);
    cJSON_free(s);
    return out;
}

/* ---- key=value overrides ------------------------------------------------------------------ */

int cf_config_set(cf_config *cfg, const char *key_eq_value, const char *origin) {
    if (!origin || !*origin) origin = "command line";
    const char *eq = key_eq_value ? strchr(key_eq_value, '=') : NULL;
    if (!eq) {
        CFG_ERR(origin, "override '%s' must look like key=value (e.g. steps=100)",
                key_eq_value ? key_eq_value : "(null)");
        return CF_ERR_INVALID;
    }
    char key[128];
    size_t klen = (size_t)(eq - key_eq_value);
    while (klen > 0 && is_ws(key_eq_value[klen - 1])) klen--;
    const char *ks = key_eq_value;
    while (klen > 0 && is_ws(*ks)) {
        ks++;
        klen--;
    }
    if (klen == 0 || klen >= sizeof key) {
        CFG_ERR(origin, "override '%s' has no valid key before '=' (e.g. steps=100)",
                key_eq_value);
        return CF_ERR_INVALID;
    }
    memcpy(key, ks, klen);
    key[klen] = 0;
    const char *val = eq + 1;
    const cf_key *k = find_key(key);
    if (!k) {
        report_unknown_key(origin, key);
        return CF_ERR_INVALID;
    }
    if (k->type == KT_STR) {
        /* allow key="value" for shells that keep the quotes */
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
            char tmp[CF_PATH_MAX + 2];
            if (vl - 2 >= sizeof tmp) {
                CFG_ERR(origin, "'%s' is too long (%zu bytes, at most %zu)", k->name, vl - 2,
                        k->size - 1);
                return CF_ERR_INVALID;
            }
            memcpy(tmp, val + 1, vl - 2);
            tmp[vl - 2] = 0;
            return set_string(cfg, k, tmp, origin);
        }
        return set_string(cfg, k, val, origin);
    }
    while (is_ws(*val)) val++;
    if (k->type == KT_ENUM || k->type == KT_BOOL) {
        char word[64];
        size_t vl = strlen(val);
        while (vl > 0 && is_ws(val[vl - 1])) vl--;
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
            val++;
            vl -= 2;
        }
        snprintf(word, sizeof word, "%.*s", (int)(vl < sizeof word ? vl : sizeof word - 1), val);
        if (k->type == KT_ENUM) return set_enum(cfg, k, word, origin);
        int b = -1;
        if (strcmp(word, "true") == 0 || strcmp(word, "1") == 0) b = 1;
        if (strcmp(word, "false") == 0 || strcmp(word, "0") == 0) b = 0;
        if (b < 0) {
            CFG_ERR(origin, "'%s' must be true or false (or 1 or 0), got '%s'", k->name, word);
            return CF_ERR_INVALID;
        }
        *(int *)((char *)cfg + k->offset) = b;
        return CF_OK;
    }
    char *endp = NULL;
    errno = 0;
    double v = *val ? strtod(val, &endp) : 0.0;
    int bad = (*val == 0) || !endp || endp == val;
    if (!bad)
        while (is_ws(*endp)) endp++;
    if (bad || *endp != 0) {
        CFG_ERR(origin, "'%s' must be %s, got '%s'", k->name, type_word(k->type), val);
        return CF_ERR_INVALID;
    }
    if (k->type != KT_FLOAT && (strchr(val, 'x') || strchr(val, 'X'))) {
        CFG_ERR(origin, "'%s' must be %s in decimal, got '%s'", k->name, type_word(k->type), val);
        return CF_ERR_INVALID;
    }
    char text[96];
    snprintf(text, sizeof text, "%.80s", val);
    return set_number(cfg, k, v, text, origin);
}
