/* clformer: `generate`, `chat`, `quantize` and `bench --generate`: text generation with the KV
 * cache engine (src/model/infer.h), batches of prompts, sampling, int8 models. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "backend/backend.h"
#include "cli/cli.h"
#include "clformer/common.h"
#include "clformer/config.h"
#include "data/dataset.h"
#include "model/gpt.h"
#include "model/infer.h"
#include "train/checkpoint.h"

static int gen_exit(int rc) {
    if (rc == CF_OK) return 0;
    if (rc == CF_ERR_INTERRUPTED) return 130;
    return 1;
}
static int gen_global_flag(const char *a) {
    if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
        cf_log_set_level(CF_LOG_WARN);
        return 1;
    }
    if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
        cf_log_set_level(CF_LOG_DEBUG);
        return 1;
    }
    return 0;
}

/* ---- sampling -------------------------------------------------------------------------------- */

#define MAX_STOPS 16

typedef struct {
    int tokens;        /* new tokens at most */
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = all */
    float top_p;       /* (0, 1]; 1 = all */
    float rep;         /* repetition penalty, 1 = none */
    uint64_t seed;
    int nstop;
    const char *stop[MAX_STOPS];
} gen_params;

typedef struct {
    float v;
    int i;
} cand;

static int cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i - y->i;
}

/* the k largest of lg[0..V) into c[0..k), sorted descending (a min-heap of k, then a sort) */
static void top_k_of(const float *lg, int V, int k, cand *c) {
    int n = 0;
    for (int i = 0; i < V; i++) {
        const float v = lg[i];
        if (n < k) {
            int j = n++;
            c[j] = (cand){v, i};
            while (j > 0) { /* sift up: min at the root */
                int p = (j - 1) / 2;
                if (cand_desc(&c[p], &c[j]) <= 0) break; /* parent is larger or equal: swap */
                cand t = c[p];
                c[p] = c[j];
                c[j] = t;
                j = p;
            }
        } else if (v > c[0].v) {
            c[0] = (cand){v, i};
            for (int j = 0;;) { /* sift down */
                int l = 2 * j + 1, r = l + 1, m = j;
                if (l < n && cand_desc(&c[l], &c[m]) > 0) m = l;
                if (r < n && cand_desc(&c[r], &c[m]) > 0) m = r;
                if (m == j) break;
                cand t = c[m];
                c[m] = c[j];
                c[j] = t;
                j = m;
            }
        }
    }
    qsort(c, (size_t)n, sizeof *c, cand_desc);
}

/* Next token from logits lg (modified: repetition penalty applied in place). seen marks the ids
 * of the context. Greedy at temperature 0; else top-k, then top-p, then a draw from rng. */
static int sample_next(float *lg, int V, const gen_params *p, const uint8_t *seen, cf_rng *rng,
                       cand *c) {
    if (p->rep != 1.0f)
        for (int i = 0; i < V; i++)
            if (seen[i]) lg[i] = lg[i] > 0.0f ? lg[i] / p->rep : lg[i] * p->rep;
    if (p->temperature <= 0.0f) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (lg[i] > lg[best]) best = i;
        return best;
    }
    const int k = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    top_k_of(lg, V, k, c);
    double sum = 0.0;
    for (int i = 0; i < k; i++) sum += exp((double)(c[i].v - c[0].v) / p->temperature);
    int n = k;
    if (p->top_p < 1.0f) { /* the smallest prefix whose probability reaches top_p */
        double acc = 0.0;
        for (int i = 0; i < k; i++) {
            acc += exp((double)(c[i].v - c[0].v) / p->temperature) / sum;
            if (acc >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    double tot = 0.0;
    for (int i = 0; i < n; i++) tot += exp((double)(c[i].v - c[0].v) / p->temperature);
    const double r = (double)cf_rng_uniform(rng) * tot;
    double acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += exp((double)(c[i].v - c[0].v) / p->temperature);
        if (r < acc) return c[i].i;
    }
    return c[n - 1].i;
}

/* ---- the model --------------------------------------------------------------------------------- */

typedef struct {
    char path[CF_PATH_MAX + 64];
    cf_config cfg;
    cf_train_state st;
    cf_backend *be;
    cf_infer *inf;
    cf_tok *tok;
    int int8;
} gen_model;

static void gen_unload(gen_model *g) {
    cf_infer_free(g->inf);
    cf_backend_destroy(g->be);
    cf_cli_tok_free(g->tok);
    memset(g, 0, sizeof *g);
}

/* config, tokenizer and backend of a checkpoint (fp32 or int8) */
static int gen_open(const char *ckpt, const char *device, int want_int8, gen_model *g) {
    memset(g, 0, sizeof *g);
    CF_TRY(cf_checkpoint_resolve(ckpt, g->path, sizeof g->path));
    CF_TRY(cf_checkpoint_read_config(g->path, &g->cfg, &g->st));
    int is8 = 0;
    CF_TRY(cf_infer_file_is_int8(g->path, &is8));
    g->int8 = is8 || want_int8;
    int rc;
    if ((rc = cf_cli_tok_open(&g->cfg, g->st.tokenizer_hash, g->path, &g->tok)) < 0) goto fail;
    if ((rc = cf_backend_create(cf_cli_device_from_env(device), cf_cli_backend_options(),
                                &g->be)) < 0)
        goto fail;
    return CF_OK;
fail:
    gen_unload(g);
    return rc;
}

static int gen_engine(gen_model *g, int slots, int S, int rows) {
    cf_infer_opts o = {slots, S, rows, g->int8};
    CF_TRY(cf_infer_create(g->be, &g->cfg, &o, &g->inf));
    CF_TRY(cf_infer_load(g->inf, g->path));
    if (g->cfg.doc_mask) { /* attend within documents, as the model was trained */
        const int32_t eot = cf_cli_tok_eot_id(g->tok);
        if (eot < 0)
            CF_WARN("%s: doc_mask is set but the tokenizer has no end-of-text token; attending "
                    "across the whole context",
                    g->path);
        cf_infer_set_doc_eot(g->inf, eot);
    }
    CF_DEBUG("generate: %s (%s weights, %.1f MiB; KV cache %.1f MiB) on %s", g->path,
             g->int8 ? "int8" : "fp32", cf_infer_weight_bytes(g->inf) / 1048576.0,
             cf_infer_cache_bytes(g->inf) / 1048576.0, cf_be_name(g->be));
    return CF_OK;
}

/* ---- prompts ------------------------------------------------------------------------------------ */

typedef struct {
    char *text;
    gen_params p;
    char *stops[MAX_STOPS]; /* owned copies of per-prompt stop strings */
    int32_t *ids;
    size_t n;
    int seed_set; /* the line gave "seed" */
} gen_item;

static void items_free(gen_item *it, int n) {
    for (int i = 0; i < n && it; i++) {
        free(it[i].text);
        free(it[i].ids);
        for (int k = 0; k < MAX_STOPS; k++) free(it[i].stops[k]);
    }
    free(it);
}

static int json_num(const char *file, int line, const cJSON *o, const char *key, double lo,
                    double hi, int lo_open, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi ||
        (lo_open && v->valuedouble <= lo)) {
        CF_ERROR("generate: %s line %d: \"%s\" must be a number in %s%g, %g]", file, line, key,
                 lo_open ? "(" : "[", lo, hi);
        return -1;
    }
    *out = v->valuedouble;
    return 1;
}

/* one prompt per line; a line starting with '{' is a JSON object with "prompt" and optional
 * per-prompt options; empty lines are skipped */
static int read_prompts(const char *file, const gen_params *def, gen_item **out, int *count) {
    *out = NULL;
    *count = 0;
    FILE *f = fopen(file, "rb");
    if (!f) {
        CF_ERROR("generate: cannot open prompts file %s: %s", file, strerror(errno));
        return CF_ERR_IO;
    }
    gen_item *it = NULL;
    int n = 0, cap = 0, lineno = 0, rc = CF_OK;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            gen_item *ni = realloc(it, sizeof *it * (size_t)cap);
            if (!ni) {
                rc = CF_ERR_NOMEM;
                break;
            }
            it = ni;
        }
        gen_item *g = &it[n];
        memset(g, 0, sizeof *g);
        g->p = *def;
        n++;
        if (line[0] != '{') {
            g->text = strdup(line);
            if (!g->text) rc = CF_ERR_NOMEM;
            if (rc < 0) break;
            continue;
        }
        cJSON *o = cJSON_Parse(line);
        const cJSON *pr = o ? cJSON_GetObjectItemCaseSensitive(o, "prompt") : NULL;
        if (!o || !cJSON_IsObject(o) || !cJSON_IsString(pr)) {
            CF_ERROR("generate: %s line %d: a line starting with '{' must be a JSON object with a "
                     "string \"prompt\"",
                     file, lineno);
            cJSON_Delete(o);
            rc = CF_ERR_INVALID;
            break;
        }
        static const char *known[] = {"prompt", "tokens", "temperature", "top_k", "top_p",
                                      "repetition_penalty", "seed", "stop"};
        for (const cJSON *k = o->child; k && rc == CF_OK; k = k->next) {
            int ok = 0;
            for (size_t j = 0; j < sizeof known / sizeof known[0]; j++) ok |= !strcmp(k->string, known[j]);
            if (!ok) {
                CF_ERROR("generate: %s line %d: unknown key \"%s\" (known: prompt, tokens, "
                         "temperature, top_k, top_p, repetition_penalty, seed, stop)",
                         file, lineno, k->string);
                rc = CF_ERR_INVALID;
            }
        }
        double v;
        int r;
        if (rc == CF_OK && (r = json_num(file, lineno, o, "tokens", 1, 1e6, 0, &v)) != 0) {
            if (r < 0) rc = CF_ERR_INVALID; else g->p.tokens = (int)v;
        }
        if (rc == CF_OK && (r = json_num(file, lineno, o, "temperature", 0, 100, 0, &v)) != 0) {
            if (r < 0) rc = CF_ERR_INVALID; else g->p.temperature = (float)v;
        }
        if (rc == CF_OK && (r = json_num(file, lineno, o, "top_k", 0, 1e8, 0, &v)) != 0) {
            if (r < 0) rc = CF_ERR_INVALID; else g->p.top_k = (int)v;
        }
        if (rc == CF_OK && (r = json_num(file, lineno, o, "top_p", 0, 1, 1, &v)) != 0) {
            if (r < 0) rc = CF_ERR_INVALID; else g->p.top_p = (float)v;
        }
        if (rc == CF_OK &&
            (r = json_num(file, lineno, o, "repetition_penalty", 0, 100, 1, &v)) != 0) {
            if (r < 0) rc = CF_ERR_INVALID; else g->p.rep = (float)v;
        }
        if (rc == CF_OK && (r = json_num(file, lineno, o, "seed", 0, 9007199254740992.0, 0, &v)) != 0) {
            if (r < 0) rc = CF_ERR_INVALID; else g->p.seed = (uint64_t)v, g->seed_set = 1;
        }
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "stop");
        if (rc == CF_OK && st) {
            g->p.nstop = 0;
            const cJSON *e = cJSON_IsArray(st) ? st->child : st;
            for (; e && rc == CF_OK; e = cJSON_IsArray(st) ? e->next : NULL) {
                if (!cJSON_IsString(e) || !e->valuestring[0] || g->p.nstop == MAX_STOPS) {
                    CF_ERROR("generate: %s line %d: \"stop\" must be a non-empty string or an array "
                             "of at most %d of them",
                             file, lineno, MAX_STOPS);
                    rc = CF_ERR_INVALID;
                    break;
                }
                g->stops[g->p.nstop] = strdup(e->valuestring);
                g->p.stop[g->p.nstop] = g->stops[g->p.nstop];
                g->p.nstop++;
            }
        }
        if (rc == CF_OK) g->text = strdup(pr->valuestring);
        cJSON_Delete(o);
        if (rc < 0) break;
    }
    free(line);
    fclose(f);
    if (rc == CF_OK && n == 0) {
        CF_ERROR("generate: prompts file %s has no prompts (one per line, or JSON lines with "
                 "\"prompt\")",
                 file);
        rc = CF_ERR_INVALID;
    }
    if (rc < 0) {
        items_free(it, n);
        return rc;
    }
    *out = it;
    *count = n;
    return CF_OK;
}

/* ---- generation ----------------------------------------------------------------------------------- */

typedef struct {
    int item; /* -1: free */
    int ngen;
    int32_t next; /* the token to feed at the next step */
    char *text;
    size_t tlen, tcap, printed;
    const char *finish;
    cf_rng rng;
    uint8_t *seen;
} gen_slot;

typedef struct {
    char *text;
    size_t tlen;
    int ngen;
    const char *finish;
    int done;
} gen_result;

typedef struct {
    gen_model *g;
    gen_item *items;
    int nitems;
    gen_slot *slots;
    int nslots;
    gen_result *res;
    int stream, json, next_print;
    float *logits, *lgrow;
    cand *cands;
    int32_t eot;
    size_t maxstop;
} gen_run;

static int text_add(gen_slot *s, const uint8_t *b, size_t n) {
    if (s->tlen + n + 1 > s->tcap) {
        size_t nc = (s->tlen + n + 1) * 2;
        char *t = realloc(s->text, nc);
        if (!t) return CF_ERR_NOMEM;
        s->text = t;
        s->tcap = nc;
    }
    memcpy(s->text + s->tlen, b, n);
    s->tlen += n;
    s->text[s->tlen] = 0;
    return CF_OK;
}

static void print_json(const gen_run *r, int i) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "prompt_index", i);
    cJSON_AddStringToObject(o, "text", r->res[i].text ? r->res[i].text : "");
    cJSON_AddNumberToObject(o, "tokens", r->res[i].ngen);
    cJSON_AddStringToObject(o, "finish_reason", r->res[i].finish);
    char *s = cJSON_PrintUnformatted(o);
    if (s) puts(s);
    free(s);
    cJSON_Delete(o);
}

/* results are printed in prompt order as they become available */
static void flush_results(gen_run *r) {
    while (r->next_print < r->nitems && r->res[r->next_print].done) {
        const int i = r->next_print++;
        if (r->json) {
            print_json(r, i);
        } else if (!r->stream) {
            printf("=== prompt %d (%d tokens, %s) ===\n%s", i, r->res[i].ngen, r->res[i].finish,
                   r->items[i].text);
            fwrite(r->res[i].text ? r->res[i].text : "", 1, r->res[i].tlen, stdout);
            fputc('\n', stdout);
        }
        fflush(stdout);
    }
}

static void finish_slot(gen_run *r, gen_slot *s, const char *why) {
    gen_result *x = &r->res[s->item];
    if (r->stream) { /* what the stop hold-back kept */
        fwrite(s->text + s->printed, 1, s->tlen - s->printed, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    x->text = s->text;
    x->tlen = s->tlen;
    x->ngen = s->ngen;
    x->finish = why;
    x->done = 1;
    s->text = NULL;
    s->tlen = s->tcap = s->printed = 0;
    s->item = -1;
    flush_results(r);
}

/* a token sampled for slot s: text, stop checks, streaming */
static int take_token(gen_run *r, gen_slot *s, int32_t t) {
    const gen_params *p = &r->items[s->item].p;
    s->ngen++;
    if (t >= 0 && t < r->g->cfg.vocab_size) s->seen[t] = 1;
    if (r->eot >= 0 && t == r->eot) {
        finish_slot(r, s, "eos");
        return CF_OK;
    }
    size_t bl = 0;
    const uint8_t *b = cf_cli_tok_bytes(r->g->tok, t, &bl);
    const size_t before = s->tlen;
    if (b && bl) CF_TRY(text_add(s, b, bl));
    for (int k = 0; k < p->nstop; k++) {
        const size_t sl = strlen(p->stop[k]);
        const size_t from = before >= sl ? before - sl + 1 : 0;
        for (size_t i = from; i + sl <= s->tlen; i++)
            if (!memcmp(s->text + i, p->stop[k], sl)) {
                s->tlen = i; /* the text ends before the stop string */
                s->text[i] = 0;
                if (s->printed > s->tlen) s->printed = s->tlen;
                finish_slot(r, s, "stop");
                return CF_OK;
            }
    }
    if (r->stream) { /* hold back what could be the start of a stop string */
        size_t safe = s->tlen > r->maxstop ? s->tlen - r->maxstop : 0;
        if (r->maxstop == 0) safe = s->tlen;
        if (safe > s->printed) {
            fwrite(s->text + s->printed, 1, safe - s->printed, stdout);
            fflush(stdout);
            s->printed = safe;
        }
    }
    if (s->ngen >= p->tokens) {
        finish_slot(r, s, "length");
        return CF_OK;
    }
    s->next = t;
    return CF_OK;
}

static int start_item(gen_run *r, int si, int item) {
    gen_slot *s = &r->slots[si];
    gen_item *it = &r->items[item];
    const int V = r->g->cfg.vocab_size;
    s->item = item;
    s->ngen = 0;
    s->tlen = s->printed = 0;
    memset(s->seen, 0, (size_t)V);
    for (size_t i = 0; i < it->n; i++)
        if (it->ids[i] >= 0 && it->ids[i] < V) s->seen[it->ids[i]] = 1;
    cf_rng_seed(&s->rng, it->p.seed);
    cf_infer_reset(r->g->inf, si);
    CF_TRY(cf_infer_prefill(r->g->inf, si, it->ids, (int)it->n, r->lgrow));
    return take_token(r, s, sample_next(r->lgrow, V, &it->p, s->seen, &s->rng, r->cands));
}

static int run_generation(gen_run *r) {
    gen_model *g = r->g;
    const int V = g->cfg.vocab_size, S = cf_infer_capacity(g->inf);
    int next_item = 0, rc = CF_OK;
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)r->nslots);
    if (!toks) return CF_ERR_NOMEM;
    cf_install_sigint_handler();
    while (r->next_print < r->nitems) {
        if (cf_interrupted()) {
            rc = CF_ERR_INTERRUPTED;
            break;
        }
        for (int si = 0; si < r->nslots && rc == CF_OK; si++)
            while (r->slots[si].item < 0 && next_item < r->nitems && rc == CF_OK)
                rc = start_item(r, si, next_item++);
        if (rc < 0) break;
        /* room for one more position in every active slot */
        int lo = -1, hi = -1;
        for (int si = 0; si < r->nslots; si++) {
            gen_slot *s = &r->slots[si];
            if (s->item < 0) continue;
            if (cf_infer_pos(g->inf, si) >= S) {
                if (cf_model_rope(&g->cfg)) {
                    if ((rc = cf_infer_slide(g->inf, si, 1)) < 0) break;
                } else {
                    CF_WARN("generate: prompt %d reached the model's context (max_length %d) "
                            "after %d new tokens; a model with learned positions cannot go on "
                            "(finish_reason \"length\")",
                            s->item, g->cfg.max_length, s->ngen);
                    finish_slot(r, s, "length");
                    continue;
                }
            }
            if (lo < 0) lo = si;
            hi = si + 1;
        }
        if (rc < 0) break;
        if (lo < 0) continue; /* everything finished this round; refill or end */
        for (int si = lo; si < hi; si++) {
            gen_slot *s = &r->slots[si];
            if (s->item < 0) { /* an idle row between active ones: a throwaway token */
                cf_infer_reset(g->inf, si);
                toks[si - lo] = 0;
            } else {
                toks[si - lo] = s->next;
            }
        }
        if ((rc = cf_infer_step(g->inf, lo, hi - lo, 1, toks, r->logits)) < 0) break;
        for (int si = lo; si < hi && rc == CF_OK; si++) {
            gen_slot *s = &r->slots[si];
            if (s->item < 0) continue;
            const gen_params *p = &r->items[s->item].p;
            rc = take_token(r, s, sample_next(r->logits + (size_t)(si - lo) * V, V, p, s->seen,
                                              &s->rng, r->cands));
        }
    }
    if (rc == CF_ERR_INTERRUPTED) /* what was generated so far */
        for (int si = 0; si < r->nslots; si++)
            if (r->slots[si].item >= 0) finish_slot(r, &r->slots[si], "interrupted");
    free(toks);
    return rc;
}

static const char *GEN_HELP =
    "usage: clformer generate CKPT [options]\n"
    "\n"
    "Generate text from a checkpoint (a .safetensors file, a run directory: its newest step, or\n"
    "an int8 model written by `clformer quantize`). The prompt is processed once, then each new\n"
    "token costs one position per layer against a KV cache on the device.\n"
    "\n"
    "options:\n"
    "  --prompt TEXT            text to continue (default: a newline)\n"
    "  --prompts FILE           one prompt per line, or JSON lines {\"prompt\": ..., and any of\n"
    "                           \"tokens\", \"temperature\", \"top_k\", \"top_p\",\n"
    "                           \"repetition_penalty\", \"seed\", \"stop\"}; empty lines skipped\n"
    "  --batch N                prompts generated together (default 8); a prompt's output does\n"
    "                           not depend on N or on the other prompts\n"
    "  --tokens N               new tokens at most (default 200)\n"
    "  --temperature T          0 = greedy (default 0.8)\n"
    "  --top-k K                sample among the K most likely tokens, 0 = all (default 40)\n"
    "  --top-p P                nucleus sampling, P in (0, 1] (default 1)\n"
    "  --repetition-penalty R   divide positive / multiply negative logits of tokens already in\n"
    "                           the context by R (default 1 = off)\n"
    "  --seed S                 sampling seed (default 42); prompt i of a file draws from seed\n"
    "                           S + i unless its line sets \"seed\"\n"
    "  --stop STRING            stop when the text contains STRING (repeatable; the text ends\n"
    "                           before it)\n"
    "  --json                   one JSON line per prompt: prompt_index, text, tokens,\n"
    "                           finish_reason (\"length\", \"stop\", \"eos\", \"interrupted\")\n"
    "  --int8                   quantise an fp32 checkpoint to int8 weights on load\n"
    "  --device D               as for train (default auto)\n"
    "\n"
    "A single prompt streams to stdout token by token. A prompt longer than the context keeps its\n"
    "last max_length tokens (a warning says so). Past max_length, RoPE models slide the cache\n"
    "(the oldest position is dropped); models with learned positions stop with finish_reason\n"
    "\"length\" and a note on stderr.\n";

/* the options shared by generate and chat */
typedef struct {
    const char *ckpt, *prompt, *prompts, *device;
    int batch, json, int8;
    gen_params p;
} gen_args;

static int parse_gen_args(const char *cmd, int argc, char **argv, gen_args *a, int chat) {
    memset(a, 0, sizeof *a);
    a->batch = 8;
    a->p.tokens = 200;
    a->p.temperature = 0.8f;
    a->p.top_k = 40;
    a->p.top_p = 1.0f;
    a->p.rep = 1.0f;
    a->p.seed = 42;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int iv;
        float fv;
        if (gen_global_flag(s)) continue;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            return 1;
        } else if (!chat && !strcmp(s, "--prompt")) {
            if (!cf_cli_need_value(argc, argv, i, cmd)) return -1;
            a->prompt = argv[++i];
        } else if (!chat && !strcmp(s, "--prompts")) {
            if (!cf_cli_need_value(argc, argv, i, cmd)) return -1;
            a->prompts = argv[++i];
        } else if (!chat && !strcmp(s, "--batch")) {
            if (!cf_cli_need_value(argc, argv, i, cmd) ||
                cf_cli_parse_int(cmd, "--batch", argv[++i], 1, 4096, &a->batch) < 0)
                return -1;
        } else if (!strcmp(s, "--tokens")) {
            if (!cf_cli_need_value(argc, argv, i, cmd) ||
                cf_cli_parse_int(cmd, "--tokens", argv[++i], 1, 1000000, &a->p.tokens) < 0)
                return -1;
        } else if (!strcmp(s, "--top-k")) {
            if (!cf_cli_need_value(argc, argv, i, cmd) ||
                cf_cli_parse_int(cmd, "--top-k", argv[++i], 0, 100000000, &a->p.top_k) < 0)
                return -1;
        } else if (!strcmp(s, "--seed")) {
            if (!cf_cli_need_value(argc, argv, i, cmd) ||
                cf_cli_parse_int(cmd, "--seed", argv[++i], 0, 2147483647, &iv) < 0)
                return -1;
            a->p.seed = (uint64_t)iv;
        } else if (!strcmp(s, "--temperature")) {
            if (!cf_cli_need_value(argc, argv, i, cmd) ||
                cf_cli_parse_float(cmd, "--temperature", argv[++i], 0.0, 100.0,
                                   &a->p.temperature) < 0)
                return -1;
        } else if (!strcmp(s, "--top-p")) {
            if (!cf_cli_need_value(argc, argv, i, cmd)) return -1;
            if (cf_cli_parse_float(cmd, "--top-p", argv[++i], 0.0, 1.0, &fv) < 0) return -1;
            if (!(fv > 0.0f)) {
                CF_ERROR("%s: --top-p %s is outside (0, 1]; 1 keeps every token", cmd, argv[i]);
                return -1;
            }
            a->p.top_p = fv;
        } else if (!strcmp(s, "--repetition-penalty")) {
            if (!cf_cli_need_value(argc, argv, i, cmd)) return -1;
            if (cf_cli_parse_float(cmd, "--repetition-penalty", argv[++i], 0.0, 100.0, &fv) < 0)
                return -1;
            if (!(fv > 0.0f)) {
                CF_ERROR("%s: --repetition-penalty %s must be > 0 (1 = off)", cmd, argv[i]);
                return -1;
            }
            a->p.rep = fv;
        } else if (!strcmp(s, "--stop")) {
            if (!cf_cli_need_value(argc, argv, i, cmd)) return -1;
            if (!argv[i + 1][0] || a->p.nstop == MAX_STOPS) {
                CF_ERROR("%s: --stop takes a non-empty string, at most %d times", cmd, MAX_STOPS);
                return -1;
            }
            a->p.stop[a->p.nstop++] = argv[++i];
        } else if (!chat && !strcmp(s, "--json")) {
            a->json = 1;
        } else if (!strcmp(s, "--int8")) {
            a->int8 = 1;
        } else if (!strcmp(s, "--device")) {
            if (!cf_cli_need_value(argc, argv, i, cmd)) return -1;
            a->device = argv[++i];
        } else if (s[0] == '-') {
            CF_ERROR("%s: unknown option '%s'; see `clformer %s --help`", cmd, s, cmd);
            return -1;
        } else if (!a->ckpt) {
            a->ckpt = s;
        } else {
            CF_ERROR("%s: unexpected argument '%s'", cmd, s);
            return -1;
        }
    }
    if (!a->ckpt) {
        CF_ERROR("%s: no checkpoint given; usage: clformer %s CKPT [options]", cmd, cmd);
        return -1;
    }
    if (a->prompt && a->prompts) {
        CF_ERROR("%s: give --prompt or --prompts, not both", cmd);
        return -1;
    }
    return 0;
}

int cf_cmd_generate(int argc, char **argv) {
    gen_args a;
    int pr = parse_gen_args("generate", argc, argv, &a, 0);
    if (pr == 1) {
        fputs(GEN_HELP, stdout);
        return 0;
    }
    if (pr < 0) return 1;
    gen_item *items = NULL;
    int nitems = 0, rc;
    if (a.prompts) {
        if ((rc = read_prompts(a.prompts, &a.p, &items, &nitems)) < 0) return 1;
        for (int i = 0; i < nitems; i++) /* per-prompt streams: batch-independent draws */
            if (!items[i].seed_set) items[i].p.seed = a.p.seed + (uint64_t)i;
    } else {
        items = calloc(1, sizeof *items);
        if (!items) return 1;
        nitems = 1;
        items[0].text = strdup(a.prompt ? a.prompt : "\n");
        items[0].p = a.p;
        if (!items[0].text) {
            items_free(items, nitems);
            return 1;
        }
    }
    gen_model g;
    if ((rc = gen_open(a.ckpt, a.device, a.int8, &g)) < 0) {
        items_free(items, nitems);
        return gen_exit(rc);
    }
    const int T = g.cfg.max_length, V = g.cfg.vocab_size;
    gen_run r;
    memset(&r, 0, sizeof r);
    int need = 1;
    for (int i = 0; i < nitems; i++) {
        gen_item *it = &items[i];
        if ((rc = cf_cli_tok_encode(g.tok, it->text, strlen(it->text), &it->ids, &it->n)) < 0)
            goto done;
        if (it->n == 0) { /* an empty prompt starts from end-of-text */
            it->ids[0] = cf_cli_tok_eot(g.tok);
            it->n = 1;
        }
        if (it->n > (size_t)T) {
            CF_WARN("generate: prompt %d has %zu tokens, more than the context (max_length %d); "
                    "keeping its last %d tokens",
                    i, it->n, T, T);
            memmove(it->ids, it->ids + (it->n - (size_t)T), sizeof(int32_t) * (size_t)T);
            it->n = (size_t)T;
        }
        const long long want = (long long)it->n + it->p.tokens;
        if (want > need) need = want > T ? T : (int)want;
        for (int k = 0; k < it->p.nstop; k++)
            if (strlen(it->p.stop[k]) > r.maxstop) r.maxstop = strlen(it->p.stop[k]);
    }
    r.g = &g;
    r.items = items;
    r.nitems = nitems;
    r.nslots = a.batch < nitems ? a.batch : nitems;
    r.stream = nitems == 1 && !a.json;
    r.json = a.json;
    r.eot = cf_cli_tok_eot_id(g.tok);
    const int rows = r.nslots > (need < 512 ? need : 512) ? r.nslots : (need < 512 ? need : 512);
    if ((rc = gen_engine(&g, r.nslots, need, rows)) < 0) goto done;
    r.slots = calloc((size_t)r.nslots, sizeof *r.slots);
    r.res = calloc((size_t)nitems, sizeof *r.res);
    r.logits = malloc(sizeof(float) * (size_t)r.nslots * V);
    r.lgrow = malloc(sizeof(float) * (size_t)V);
    r.cands = malloc(sizeof(cand) * (size_t)V);
    if (!r.slots || !r.res || !r.logits || !r.lgrow || !r.cands) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    for (int si = 0; si < r.nslots; si++) {
        r.slots[si].item = -1;
        if (!(r.slots[si].seen = calloc((size_t)V, 1))) {
            rc = CF_ERR_NOMEM;
            goto done;
        }
    }
    if (r.stream) {
        fputs(items[0].text, stdout);
        fflush(stdout);
    }
    rc = run_generation(&r);
done:
    for (int si = 0; r.slots && si < r.nslots; si++) {
        free(r.slots[si].seen);
        free(r.slots[si].text);
    }
    for (int i = 0; r.res && i < nitems; i++) free(r.res[i].text);
    free(r.slots);
    free(r.res);
    free(r.logits);
    free(r.lgrow);
    free(r.cands);
    items_free(items, nitems);
    gen_unload(&g);
    return gen_exit(rc);
}

/* ---- chat ---------------------------------------------------------------------------------------- */

static const char *CHAT_HELP =
    "usage: clformer chat CKPT [options]\n"
    "\n"
    "A conversation in plain text: each line read from stdin is a turn; it is appended to the\n"
    "KV cache (with its newline) and the model's reply is generated after it and printed, then\n"
    "stays in the cache for the next turn (nothing is recomputed). The reply ends at a newline\n"
    "(or at any --stop STRING given instead), at the end-of-text token, or after --tokens tokens.\n"
    "Past max_length a RoPE model slides the cache; a model with learned positions ends the chat.\n"
    "\n"
    "options: --tokens N (per reply, default 200), --temperature, --top-k, --top-p,\n"
    "--repetition-penalty, --seed, --stop STRING (repeatable), --int8, --device D\n"
    "(as for generate)\n";

/* room for n more positions in slot 0: 1, or 0 when a learned-position model is full */
static int chat_room(gen_model *g, int n, int *ok) {
    const int S = cf_infer_capacity(g->inf), pos = cf_infer_pos(g->inf, 0);
    *ok = 1;
    if (pos + n <= S) return CF_OK;
    if (!cf_model_rope(&g->cfg)) {
        *ok = 0;
        return CF_OK;
    }
    if (n >= S) { /* the turn alone fills the window: it starts the window afresh */
        cf_infer_reset(g->inf, 0);
        return CF_OK;
    }
    return cf_infer_slide(g->inf, 0, pos + n - S);
}

int cf_cmd_chat(int argc, char **argv) {
    gen_args a;
    int pr = parse_gen_args("chat", argc, argv, &a, 1);
    if (pr == 1) {
        fputs(CHAT_HELP, stdout);
        return 0;
    }
    if (pr < 0) return 1;
    if (a.p.nstop == 0) {
        a.p.stop[0] = "\n";
        a.p.nstop = 1;
    }
    gen_model g;
    int rc = gen_open(a.ckpt, a.device, a.int8, &g);
    if (rc < 0) return gen_exit(rc);
    const int T = g.cfg.max_length, V = g.cfg.vocab_size;
    float *lg = malloc(sizeof(float) * (size_t)V);
    cand *cands = malloc(sizeof(cand) * (size_t)V);
    uint8_t *seen = calloc((size_t)V, 1);
    gen_slot s;
    memset(&s, 0, sizeof s);
    char *line = NULL;
    size_t lcap = 0;
    int32_t *ids = NULL, pending = -1;
    size_t maxstop = 0;
    for (int k = 0; k < a.p.nstop; k++)
        if (strlen(a.p.stop[k]) > maxstop) maxstop = strlen(a.p.stop[k]);
    if (!lg || !cands || !seen) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    if ((rc = gen_engine(&g, 1, T, T < 512 ? T : 512)) < 0) goto done;
    cf_rng_seed(&s.rng, a.p.seed);
    const int32_t eot = cf_cli_tok_eot_id(g.tok);
    for (;;) {
        fputs("> ", stderr);
        fflush(stderr);
        ssize_t len = getline(&line, &lcap, stdin);
        if (len < 0) break;
        size_t n = 0;
        free(ids);
        ids = NULL;
        if ((rc = cf_cli_tok_encode(g.tok, line, (size_t)len, &ids, &n)) < 0) goto done;
        if (pending >= 0) { /* the previous reply's last token enters the cache first */
            int32_t *ni = realloc(ids, sizeof(int32_t) * (n + 1));
            if (!ni) {
                rc = CF_ERR_NOMEM;
                goto done;
            }
            ids = ni;
            memmove(ids + 1, ids, sizeof(int32_t) * n);
            ids[0] = pending;
            n++;
        }
        if (n == 0) continue;
        if (n > (size_t)T) {
            CF_WARN("chat: the turn has %zu tokens, more than the context (max_length %d); keeping "
                    "its last %d",
                    n, T, T);
            memmove(ids, ids + (n - (size_t)T), sizeof(int32_t) * (size_t)T);
            n = (size_t)T;
        }
        for (size_t i = 0; i < n; i++)
            if (ids[i] >= 0 && ids[i] < V) seen[ids[i]] = 1;
        int ok = 1;
        if ((rc = chat_room(&g, (int)n, &ok)) < 0) goto done;
        if (!ok) {
            CF_WARN("chat: the conversation filled the model's context (max_length %d) and a model "
                    "with learned positions cannot slide; start a new chat",
                    T);
            break;
        }
        if ((rc = cf_infer_prefill(g.inf, 0, ids, (int)n, lg)) < 0) goto done;
        s.tlen = s.printed = 0;
        for (int k = 0;; k++) {
            if (cf_interrupted()) {
                rc = CF_ERR_INTERRUPTED;
                goto done;
            }
            const int32_t t = sample_next(lg, V, &a.p, seen, &s.rng, cands);
            pending = t;
            if (t >= 0 && t < V) seen[t] = 1;
            if (eot >= 0 && t == eot) break;
            size_t bl = 0;
            const uint8_t *b = cf_cli_tok_bytes(g.tok, t, &bl);
            const size_t before = s.tlen;
            if (b && bl && (rc = text_add(&s, b, bl)) < 0) goto done;
            int stop = 0;
            for (int q = 0; q < a.p.nstop && !stop; q++) {
                const size_t sl = strlen(a.p.stop[q]);
                for (size_t i = before >= sl ? before - sl + 1 : 0; i + sl <= s.tlen; i++)
                    if (!memcmp(s.text + i, a.p.stop[q], sl)) {
                        s.tlen = i;
                        stop = 1;
                        break;
                    }
            }
            const size_t safe = stop ? s.tlen : s.tlen > maxstop ? s.tlen - maxstop : 0;
            if (safe > s.printed) {
                fwrite(s.text + s.printed, 1, safe - s.printed, stdout);
                s.printed = safe;
            }
            fflush(stdout);
            if (stop || k + 1 >= a.p.tokens) break;
            if ((rc = chat_room(&g, 1, &ok)) < 0) goto done;
            if (!ok) {
                CF_WARN("chat: the conversation filled the model's context (max_length %d); a "
                        "model with learned positions cannot slide; start a new chat",
                        T);
                goto end;
            }
            pending = -1;
            if ((rc = cf_infer_step(g.inf, 0, 1, 1, &t, lg)) < 0) goto done;
        }
        if (s.tlen > s.printed) fwrite(s.text + s.printed, 1, s.tlen - s.printed, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
end:
    rc = CF_OK;
done:
    free(line);
    free(ids);
    free(s.text);
    free(lg);
    free(cands);
    free(seen);
    gen_unload(&g);
    return gen_exit(rc);
}

/* ---- quantize -------------------------------------------------------------------------------- */

static const char *QUANT_HELP =
    "usage: clformer quantize CKPT --out FILE\n"
    "\n"
    "Writes the int8 model of a checkpoint: weight-only, symmetric, one scale per row, for every\n"
    "linear layer, the LM head and the embeddings (<name>.q8 int8 + <name>.scale f32 in\n"
    "safetensors; a tied wte is one int8 table for the lookup and the head; the norms and biases\n"
    "stay f32). generate, chat, eval and bench --generate read it; train and --resume refuse it.\n"
    "Prints the weight bytes before and after.\n";

int cf_cmd_quantize(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (gen_global_flag(s)) continue;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            fputs(QUANT_HELP, stdout);
            return 0;
        } else if (!strcmp(s, "--out")) {
            if (!cf_cli_need_value(argc, argv, i, "quantize")) return 1;
            out = argv[++i];
        } else if (s[0] == '-') {
            CF_ERROR("quantize: unknown option '%s'; see `clformer quantize --help`", s);
            return 1;
        } else if (!ckpt) {
            ckpt = s;
        } else {
            CF_ERROR("quantize: unexpected argument '%s'", s);
            return 1;
        }
    }
    if (!ckpt || !out) {
        CF_ERROR("quantize: usage: clformer quantize CKPT --out FILE");
        return 1;
    }
    char path[CF_PATH_MAX + 64];
    cf_config cfg;
    cf_train_state st;
    int rc, is8 = 0;
    if ((rc = cf_checkpoint_resolve(ckpt, path, sizeof path)) < 0) return gen_exit(rc);
    if ((rc = cf_checkpoint_read_config(path, &cfg, &st)) < 0) return gen_exit(rc);
    if ((rc = cf_infer_file_is_int8(path, &is8)) < 0) return gen_exit(rc);
    if (is8) {
        CF_ERROR("quantize: %s is already an int8 model; give the fp32 checkpoint", path);
        return 1;
    }
    /* the weights through the checkpoint loader's checks, on the host backend */
    cf_backend *be = NULL;
    cf_model *m = NULL;
    float *host = NULL;
    size_t b32 = 0, b8 = 0;
    if ((rc = cf_backend_create("cpu", cf_cli_backend_options(), &be)) < 0) goto done;
    if ((rc = cf_model_create(be, &cfg, 1, 1, 0, &m)) < 0) goto done;
    if ((rc = cf_checkpoint_load(path, m, NULL, 0)) < 0) goto done;
    if (!(host = malloc(sizeof(float) * m->num_params))) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    if ((rc = cf_model_get_params(m, host)) < 0) goto done;
    if ((rc = cf_quantize_write(out, path, &cfg, host, &b32, &b8)) < 0) goto done;
    printf("wrote %s: weights %.2f MiB int8 (from %.2f MiB fp32, %.1f%% saved)\n", out,
           b8 / 1048576.0, b32 / 1048576.0, 100.0 * (1.0 - (double)b8 / (double)b32));
done:
    free(host);
    cf_model_free(m);
    cf_backend_destroy(be);
    return gen_exit(rc);
}

/* ---- bench --generate --------------------------------------------------------------------------- */

static const char *BENCH_GEN_HELP =
    "usage: clformer bench --generate CKPT-or-CONFIG [options] [key=value ...]\n"
    "\n"
    "Generation speed with the KV cache: for each precision and batch size, the prefill of B\n"
    "random prompts of --prompt-len tokens (one step of B x P rows), then --new greedy decode\n"
    "steps of B tokens each (host argmax included). Prints prefill and decode tokens/s, the\n"
    "device memory of the weights and the cache. A CONFIG (.json, key=value overrides allowed)\n"
    "runs with random weights; a checkpoint with its own; an int8 file in int8 only.\n"
    "\n"
    "options:\n"
    "  --device D          as for train (default auto)\n"
    "  --batch LIST        batch sizes, comma-separated (default 1,32)\n"
    "  --prompt-len P      prompt tokens (default 128)\n"
    "  --new N             new tokens per sequence (default 256)\n"
    "  --precision LIST    fp32, int8 or fp32,int8 (default both)\n"
    "  --json              one JSON line per row\n"
    "P + N must fit max_length for learned positions (RoPE models slide past it); override\n"
    "max_length for a CONFIG (e.g. max_length=384).\n";

static int parse_list(const char *s, int *v, int max) {
    int n = 0;
    for (const char *p = s; *p && n < max;) {
        char *end = NULL;
        long x = strtol(p, &end, 10);
        if (end == p || x < 1 || x > 4096) return -1;
        v[n++] = (int)x;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static int bench_one(cf_backend *be, const cf_config *cfg, const float *host, const char *path,
                     int int8, int B, int P, int N, int json) {
    const int V = cfg->vocab_size, T = cfg->max_length;
    if (P > T || (!cf_model_rope(cfg) && P + N > T)) {
        CF_ERROR("bench --generate: prompt %d + %d new tokens do not fit max_length %d of a model "
                 "with learned positions; lower --prompt-len/--new or set max_length=%d",
                 P, N, T, P + N);
        return CF_ERR_INVALID;
    }
    const int S = P + N < T ? P + N : T;
    cf_infer_opts o = {B, S, B * P, int8};
    cf_infer *inf = NULL;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * P);
    float *lg = malloc(sizeof(float) * (size_t)B * V);
    int rc = CF_ERR_NOMEM;
    if (!tok || !lg) goto done;
    if ((rc = cf_infer_create(be, cfg, &o, &inf)) < 0) goto done;
    rc = host ? cf_infer_set_params(inf, host) : cf_infer_load(inf, path);
    if (rc < 0) goto done;
    cf_rng rng;
    cf_rng_seed(&rng, 1234);
    for (int i = 0; i < B * P; i++) tok[i] = (int32_t)(cf_rng_u32(&rng) % (uint32_t)V);
    /* warm-up (kernel builds, first-touch, each shape's first GEMM): a prefill of the timed one's
     * shape and two decode steps. (The warm-up prefill used to be 8 rows a sequence, so the timed
     * prefill was the first product of B*P rows.) */
    if ((rc = cf_infer_step(inf, 0, B, P, tok, lg)) < 0) goto done;
    for (int b = 0; b < B; b++) cf_infer_reset(inf, b); /* the decode steps from position 0 */
    for (int k = 0; k < 2 && (rc = cf_infer_step(inf, 0, B, 1, tok, lg)) >= 0; k++) {
    }
    if (rc < 0) goto done;
    for (int b = 0; b < B; b++) cf_infer_reset(inf, b);
    double t0 = cf_time_now();
    if ((rc = cf_infer_step(inf, 0, B, P, tok, lg)) < 0) goto done;
    const double tp = cf_time_now() - t0;
    int32_t *next = tok; /* B tokens, reused */
    t0 = cf_time_now();
    for (int k = 0; k < N; k++) {
        for (int b = 0; b < B; b++) {
            const float *row = lg + (size_t)b * V;
            int best = 0;
            for (int i = 1; i < V; i++)
                if (row[i] > row[best]) best = i;
            next[b] = best;
        }
        if (cf_infer_pos(inf, 0) >= S)
            for (int b = 0; b < B; b++)
                if ((rc = cf_infer_slide(inf, b, 1)) < 0) goto done;
        if ((rc = cf_infer_step(inf, 0, B, 1, next, lg)) < 0) goto done;
    }
    const double td = cf_time_now() - t0;
    const double wmb = cf_infer_weight_bytes(inf) / 1048576.0,
                 cmb = cf_infer_cache_bytes(inf) / 1048576.0;
    if (json)
        printf("{\"precision\":\"%s\",\"batch\":%d,\"prompt\":%d,\"new\":%d,\"prefill_tok_s\":%.1f,"
               "\"decode_tok_s\":%.1f,\"prefill_s\":%.4f,\"decode_s\":%.4f,\"weights_mib\":%.2f,"
               "\"cache_mib\":%.2f,\"device\":\"%s\"}\n",
               int8 ? "int8" : "fp32", B, P, N, B * P / tp, B * (double)N / td, tp, td, wmb, cmb,
               cf_be_name(be));
    else
        printf("%-5s %6d %7d %6d %14.1f %14.1f %10.2f %10.2f\n", int8 ? "int8" : "fp32", B, P, N,
               B * P / tp, B * (double)N / td, wmb, cmb);
    fflush(stdout);
    rc = CF_OK;
done:
    cf_infer_free(inf);
    free(tok);
    free(lg);
    return rc;
}

int cf_cmd_bench_generate(int argc, char **argv) {
    const char *src = NULL, *device = NULL;
    int batches[16] = {1, 32}, nb = 2, P = 128, N = 256, json = 0, prec = 3;
    cf_config cfg;
    cf_config_defaults(&cfg);
    const char *over[64];
    int nover = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (gen_global_flag(s) || !strcmp(s, "--generate")) continue;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            fputs(BENCH_GEN_HELP, stdout);
            return 0;
        } else if (!strcmp(s, "--device")) {
            if (!cf_cli_need_value(argc, argv, i, "bench")) return 1;
            device = argv[++i];
        } else if (!strcmp(s, "--batch")) {
            if (!cf_cli_need_value(argc, argv, i, "bench")) return 1;
            if ((nb = parse_list(argv[++i], batches, 16)) <= 0) {
                CF_ERROR("bench --generate: --batch '%s' is not a list of sizes 1..4096", argv[i]);
                return 1;
            }
        } else if (!strcmp(s, "--prompt-len")) {
            if (!cf_cli_need_value(argc, argv, i, "bench") ||
                cf_cli_parse_int("bench", "--prompt-len", argv[++i], 1, 1 << 20, &P) < 0)
                return 1;
        } else if (!strcmp(s, "--new")) {
            if (!cf_cli_need_value(argc, argv, i, "bench") ||
                cf_cli_parse_int("bench", "--new", argv[++i], 1, 1 << 20, &N) < 0)
                return 1;
        } else if (!strcmp(s, "--precision")) {
            if (!cf_cli_need_value(argc, argv, i, "bench")) return 1;
            const char *v = argv[++i];
            prec = !strcmp(v, "fp32") ? 1 : !strcmp(v, "int8") ? 2
                   : (!strcmp(v, "fp32,int8") || !strcmp(v, "int8,fp32")) ? 3 : 0;
            if (!prec) {
                CF_ERROR("bench --generate: --precision '%s': expected fp32, int8 or fp32,int8", v);
                return 1;
            }
        } else if (!strcmp(s, "--json")) {
            json = 1;
        } else if (s[0] == '-') {
            CF_ERROR("bench --generate: unknown option '%s'; see `clformer bench --generate --help`",
                     s);
            return 1;
        } else if (strchr(s, '=')) {
            if (nover < 64) over[nover++] = s;
        } else if (!src) {
            src = s;
        } else {
            CF_ERROR("bench --generate: unexpected argument '%s'", s);
            return 1;
        }
    }
    if (!src) {
        CF_ERROR("bench --generate: give a checkpoint or a config; see `clformer bench --generate "
                 "--help`");
        return 1;
    }
    const size_t sl = strlen(src);
    const int is_config = sl > 5 && !strcmp(src + sl - 5, ".json");
    char path[CF_PATH_MAX + 64] = "";
    int rc, is8 = 0;
    if (is_config) {
        if (cf_config_load(src, &cfg) < 0) return 1;
        for (int i = 0; i < nover; i++)
            if (cf_config_set(&cfg, over[i], "command line") < 0) return 1;
    } else {
        if (nover) {
            CF_ERROR("bench --generate: key=value overrides need a CONFIG, not a checkpoint");
            return 1;
        }
        if ((rc = cf_checkpoint_resolve(src, path, sizeof path)) < 0) return gen_exit(rc);
        if ((rc = cf_checkpoint_read_config(path, &cfg, NULL)) < 0) return gen_exit(rc);
        if ((rc = cf_infer_file_is_int8(path, &is8)) < 0) return gen_exit(rc);
        if (is8) prec = 2;
    }
    cf_backend *be = NULL;
    cf_model *m = NULL;
    float *host = NULL;
    if ((rc = cf_backend_create(cf_cli_device_from_env(device), cf_cli_backend_options(), &be)) < 0)
        return gen_exit(rc);
    if (!is8) { /* host weights: random (config) or the checkpoint's, through the model */
        cf_backend *cpu = NULL;
        if ((rc = cf_backend_create("cpu", cf_cli_backend_options(), &cpu)) < 0) goto done;
        rc = cf_model_create(cpu, &cfg, 1, 1, 0, &m);
        if (rc == CF_OK) rc = is_config ? cf_model_init(m, 1234) : cf_checkpoint_load(path, m, NULL, 0);
        if (rc == CF_OK && !(host = malloc(sizeof(float) * m->num_params))) rc = CF_ERR_NOMEM;
        if (rc == CF_OK) rc = cf_model_get_params(m, host);
        cf_model_free(m);
        cf_backend_destroy(cpu);
        if (rc < 0) goto done;
    }
    if (!json) {
        printf("# bench --generate %s on %s: prompt %d, %d new tokens, greedy\n", src,
               cf_be_name(be), P, N);
        printf("%-5s %6s %7s %6s %14s %14s %10s %10s\n", "prec", "batch", "prompt", "new",
               "prefill tok/s", "decode tok/s", "weights MiB", "cache MiB");
    }
    for (int pi = 0; pi < 2; pi++) {
        if (!(prec & (1 << pi))) continue;
        for (int k = 0; k < nb; k++)
            if ((rc = bench_one(be, &cfg, host, path, pi, batches[k], P, N, json)) < 0) goto done;
    }
done:
    free(host);
    cf_backend_destroy(be);
    return gen_exit(rc);
}

/* ---- eval of an int8 model ------------------------------------------------------------------- */

int cf_cli_eval_int8(const char *path, const char *data, const char *device) {
    gen_model g;
    int rc = gen_open(path, device, 1, &g);
    if (rc < 0) return rc;
    const int T = g.cfg.max_length, V = g.cfg.vocab_size;
    int32_t *toks = NULL;
    size_t n = 0;
    float *lg = NULL;
    if ((rc = gen_engine(&g, 1, T, T)) < 0) goto done;
    if ((rc = cf_dataset_load_tokens(&g.cfg, data, &toks, &n)) < 0) goto done;
    const size_t windows = n > 0 ? (n - 1) / (size_t)T : 0;
    if (windows == 0) {
        CF_ERROR("eval: data %s: %zu tokens is shorter than one window of max_length %d + 1", data,
                 n, T);
        rc = CF_ERR_INVALID;
        goto done;
    }
    if (!(lg = malloc(sizeof(float) * (size_t)T * V))) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    double sum = 0.0;
    for (size_t w = 0; w < windows; w++) {
        cf_infer_reset(g.inf, 0);
        const int32_t *x = toks + w * (size_t)T;
        if ((rc = cf_infer_step_all(g.inf, 0, 1, T, x, lg)) < 0) goto done;
        double wl = 0.0;
        for (int t = 0; t < T; t++) { /* -log softmax(z)[target], as crossentropy_forward */
            const float *z = lg + (size_t)t * V;
            float mx = z[0];
            for (int i = 1; i < V; i++) mx = fmaxf(mx, z[i]);
            double se = 0.0;
            for (int i = 0; i < V; i++) se += exp((double)(z[i] - mx));
            const int32_t y = x[t + 1];
            if (y >= 0 && y < V) wl += log(se) + mx - z[y];
        }
        sum += wl / T;
    }
    printf("loss %.6f\n", sum / (double)windows);
    CF_DEBUG("%zu windows of %d tokens (int8 weights)", windows, T);
    rc = CF_OK;
done:
    free(toks);
    free(lg);
    gen_unload(&g);
    return rc;
}
