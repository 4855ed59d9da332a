/* clformer: corpus loading, train/val split, seeded window shuffling and batch assembly. */
#define _POSIX_C_SOURCE 200809L
#include "data/dataset.h"
#include "data/shards.h"
#include "tokenizer/tokenizer.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Tokens in memory: width 1 (byte level) today; token shards of a trained tokenizer will use
 * 2 or 4. Every reader of tokens goes through tok_at / copy_window. */
typedef struct {
    void *data;
    int width; /* bytes per token: 1, 2 or 4 */
    size_t n;
    cf_shard_set *shards; /* token shards (memory-mapped) instead of data, when not NULL */
} cf_tokbuf;

struct cf_dataset {
    char path[CF_PATH_MAX]; /* for messages */
    int T;                  /* train window = T + 1 tokens (cfg->max_length) */
    int vocab_size;
    cf_tokbuf tok;
    size_t n_train, n_val; /* train = tokens [0, n_train), val = [n_train, n_train + n_val) */
    /* train cursor */
    uint64_t seed, epoch, index;
    uint32_t *perm; /* (n_win) window indices of the current epoch, shuffled */
    size_t n_win;   /* windows in the current epoch */
    size_t shift;   /* first window start of the current epoch */
    /* val cursor: offset of the next window within the val split */
    size_t val_pos;
    double unigram_nats;
};

/* Token i of in-memory data (shards are read with cf_shard_set_read). */
static inline uint32_t tok_at(const cf_tokbuf *t, size_t i) {
    switch (t->width) {
    case 1: return ((const uint8_t *)t->data)[i];
    case 2: return ((const uint16_t *)t->data)[i];
    default: return ((const uint32_t *)t->data)[i];
    }
}

/* inputs(T) = tok[start, start+T), targets(T) = tok[start+1, start+T+1). Shard tokens are read
 * through the guarded reader: a shard truncated during the run is an error, not a SIGBUS. */
static int copy_window(const cf_tokbuf *t, size_t start, int T, int32_t *in, int32_t *tg) {
    if (t->shards) {
        CF_TRY(cf_shard_set_read(t->shards, start, (size_t)T, in));
        return cf_shard_set_read(t->shards, start + 1, (size_t)T, tg);
    }
    if (t->width == 1) {
        const uint8_t *p = (const uint8_t *)t->data + start;
        for (int i = 0; i < T; i++) {
            in[i] = p[i];
            tg[i] = p[i + 1];
        }
        return CF_OK;
    }
    for (int i = 0; i < T; i++) {
        in[i] = (int32_t)tok_at(t, start + (size_t)i);
        tg[i] = (int32_t)tok_at(t, start + (size_t)i + 1);
    }
    return CF_OK;
}

/* ---- reading text: a file or a directory tree ---------------------------------------------- */

typedef struct {
    char **paths;
    size_t n, cap;
} path_list;

static int path_list_add(path_list *l, const char *p) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        char **np = realloc(l->paths, nc * sizeof *np);
        if (!np) return CF_ERR_NOMEM;
        l->paths = np;
        l->cap = nc;
    }
    l->paths[l->n] = strdup(p);
    if (!l->paths[l->n]) return CF_ERR_NOMEM;
    l->n++;
    return CF_OK;
}

static void path_list_free(path_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int walk_dir(const char *root, const char *dir, int depth, path_list *out) {
    if (depth > 32) {
        CF_ERROR("data %s: directories nested deeper than 32 levels at '%s' (a symlink loop?)",
                 root, dir);
        return CF_ERR_INVALID;
    }
    DIR *d = opendir(dir);
    if (!d) {
        CF_ERROR("data %s: cannot read directory '%s': %s; check its permissions", root, dir,
                 strerror(errno));
        return CF_ERR_IO;
    }
    path_list names = {0};
    struct dirent *e;
    int rc = CF_OK;
    while ((e = readdir(d)) != NULL && rc == CF_OK) {
        if (e->d_name[0] == '.') continue; /* ., .., hidden files */
        rc = path_list_add(&names, e->d_name);
    }
    closedir(d);
    if (rc == CF_OK && names.n > 1) qsort(names.paths, names.n, sizeof *names.paths, cmp_str);
    for (size_t i = 0; i < names.n && rc == CF_OK; i++) {
        size_t len = strlen(dir) + strlen(names.paths[i]) + 2;
        char *full = malloc(len);
        if (!full) {
            rc = CF_ERR_NOMEM;
            break;
        }
        snprintf(full, len, "%s/%s", dir, names.paths[i]);
        struct stat st;
        if (stat(full, &st) != 0) {
            CF_WARN("data %s: skipping '%s': %s", root, full, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            rc = walk_dir(root, full, depth + 1, out);
        } else if (S_ISREG(st.st_mode)) {
            rc = path_list_add(out, full);
        }
        free(full);
    }
    path_list_free(&names);
    return rc;
}

/* Append one file to buf; skips (with a warning) files that look binary. */
static int append_file(const char *root, const char *path, int warn_binary, char **buf,
                       size_t *len, size_t *cap) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        CF_ERROR("data %s: cannot open '%s': %s", root, path, strerror(errno));
        return CF_ERR_IO;
    }
    size_t start = *len;
    char chunk[1 << 16];
    size_t got;
    int checked = 0;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (!checked && warn_binary) {
            checked = 1;
            size_t probe = got < 4096 ? got : 4096;
            if (memchr(chunk, 0, probe)) {
                fclose(f);
                CF_WARN("data %s: skipping '%s': it contains NUL bytes (not a text file)", root,
                        path);
                return CF_OK;
            }
        }
        if (*len + got + 1 > *cap) {
            size_t nc = *cap ? *cap : (1u << 20);
            while (*len + got + 1 > nc) nc *= 2;
            char *nb = realloc(*buf, nc);
            if (!nb) {
                fclose(f);
                CF_ERROR("data %s: out of memory reading '%s'", root, path);
                return CF_ERR_NOMEM;
            }
            *buf = nb;
            *cap = nc;
        }
        memcpy(*buf + *len, chunk, got);
        *len += got;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        CF_ERROR("data %s: read error on '%s'", root, path);
        return CF_ERR_IO;
    }
    /* keep files apart: end each non-empty file with a newline */
    if (warn_binary && *len > start && (*buf)[*len - 1] != '\n') (*buf)[(*len)++] = '\n';
    return CF_OK;
}

/* Raw bytes of a file, or of every text file under a directory. */
static int read_text(const char *path, unsigned char **out, size_t *n) {
    *out = NULL;
    *n = 0;
    struct stat st;
    if (stat(path, &st) != 0) {
        int err = errno;
        if (err == ENOENT)
            CF_ERROR("data %s: no such file or directory; set \"data\" in the config or pass "
                     "data=PATH (relative paths start at the current directory)",
                     path);
        else
            CF_ERROR("data %s: cannot access: %s", path, strerror(err));
        return err == ENOENT ? CF_ERR_NOT_FOUND : CF_ERR_IO;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = CF_OK;
    if (S_ISDIR(st.st_mode)) {
        path_list files = {0};
        rc = walk_dir(path, path, 0, &files);
        if (rc == CF_OK && files.n == 0) {
            CF_ERROR("data %s: the directory holds no files; put .txt files in it or point data at "
                     "a text file",
                     path);
            rc = CF_ERR_INVALID;
        }
        /* the slack is the newline that may follow each file */
        for (size_t i = 0; i < files.n && rc == CF_OK; i++)
            rc = append_file(path, files.paths[i], 1, &buf, &len, &cap);
        path_list_free(&files);
    } else if (S_ISREG(st.st_mode)) {
        rc = append_file(path, path, 0, &buf, &len, &cap);
    } else {
        CF_ERROR("data %s: not a regular file or directory", path);
        rc = CF_ERR_INVALID;
    }
    if (rc != CF_OK) {
        free(buf);
        return rc;
    }
    if (len == 0) {
        free(buf);
        CF_ERROR("data %s: empty (0 bytes of text); provide a non-empty text file or directory",
                 path);
        return CF_ERR_INVALID;
    }
    *out = (unsigned char *)buf;
    *n = len;
    return CF_OK;
}

/* The tokenizer dispatch point: a shard directory (data/shards.h) is memory-mapped whatever the
 * tokenizer; "byte" maps each byte of text to one token; a tokenizer.json encodes the text. */
static int load_corpus(const cf_config *cfg, const char *path, cf_tokbuf *out) {
    memset(out, 0, sizeof *out);
    if (cf_shards_is_dir(path)) { /* from `clformer prepare`: checked against cfg->tokenizer */
        CF_TRY(cf_shard_set_open(cfg, path, &out->shards));
        out->width = 4;
        out->n = (size_t)cf_shard_set_tokens(out->shards);
        return CF_OK;
    }
    int rc;
    if (strcmp(cfg->tokenizer, "byte") == 0) {
        unsigned char *bytes;
        size_t n;
        CF_TRY(read_text(path, &bytes, &n));
        out->data = bytes;
        out->width = 1;
        out->n = n;
    } else {
        /* text with a trained tokenizer: encoded now (token shards avoid redoing this every run) */
        unsigned char *bytes;
        size_t n;
        CF_TRY(read_text(path, &bytes, &n));
        rc = cf_shards_encode_text(cfg, path, bytes, n, &out->data, &out->width, &out->n);
        free(bytes);
        if (rc != CF_OK) return rc;
    }
    /* every id must index the model's embedding table, whatever backend reads it (shards were
     * checked the same way when opened) */
    for (size_t i = 0; i < out->n; i++) {
        uint32_t t = tok_at(out, i);
        if (cfg->vocab_size < 1 || t >= (uint32_t)cfg->vocab_size) {
            CF_ERROR("data %s: token id %u at position %zu is outside vocab_size %d (ids 0..%d); "
                     "the tokenizer '%s' has more ids than the model: set vocab_size to its vocab "
                     "or use the tokenizer the model was trained with",
                     path, t, i, cfg->vocab_size, cfg->vocab_size - 1, cfg->tokenizer);
            free(out->data);
            memset(out, 0, sizeof *out);
            return CF_ERR_FORMAT;
        }
    }
    return CF_OK;
}

/* ---- split sizes --------------------------------------------------------------------------- */

static size_t val_count(size_t n, double f) { return (size_t)floor((double)n * f); }

static int split_ok(size_t n, double f, int T) {
    size_t nv = val_count(n, f), nt = n - nv, need = (size_t)T + 1;
    return nt >= need && (f <= 0.0 || nv >= need);
}

/* Smallest corpus (in tokens) whose both splits hold one window of T + 1 tokens. */
static size_t min_tokens(double f, int T) {
    size_t need = (size_t)T + 1;
    size_t n = need;
    if (f > 0.0) {
        double a = ceil((double)need / f), b = ceil((double)need / (1.0 - f));
        n = (size_t)(a > b ? a : b);
        if (n > 8) n -= 8; /* step back over rounding, then walk up */
    }
    while (!split_ok(n, f, T)) n++;
    return n;
}

/* ---- train order --------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t windows_for_shift(size_t n_train, int T, size_t shift) {
    if (n_train < shift + (size_t)T + 1) return 0;
    return (n_train - 1 - shift) / (size_t)T;
}

/* Build the window order of ds->epoch from (seed, epoch). */
static int build_epoch(cf_dataset *ds) {
    uint64_t h = mix64(ds->seed ^ mix64(ds->epoch + 0x632BE59BD9B4E019ull));
    size_t shift = ds->epoch == 0 ? 0 : (size_t)(h % (uint64_t)ds->T);
    size_t nw = windows_for_shift(ds->n_train, ds->T, shift);
    if (nw == 0) {
        shift = 0;
        nw = windows_for_shift(ds->n_train, ds->T, 0);
    }
    if (nw > UINT32_MAX) {
        CF_ERROR("data %s: %zu training windows is more than this loader indexes (2^32); split the "
                 "corpus or raise max_length",
                 ds->path, nw);
        return CF_ERR_UNSUPPORTED;
    }
    if (nw != ds->n_win || !ds->perm) {
        uint32_t *p = realloc(ds->perm, (nw ? nw : 1) * sizeof *p);
        if (!p) {
            CF_ERROR("data %s: out of memory for %zu window indices", ds->path, nw);
            return CF_ERR_NOMEM;
        }
        ds->perm = p;
    }
    ds->n_win = nw;
    ds->shift = shift;
    for (size_t i = 0; i < nw; i++) ds->perm[i] = (uint32_t)i;
    cf_rng rng;
    cf_rng_seed(&rng, h);
    for (size_t i = nw; i > 1; i--) { /* Fisher-Yates */
        uint64_t r = ((uint64_t)cf_rng_u32(&rng) << 32) | cf_rng_u32(&rng);
        size_t j = (size_t)(r % (uint64_t)i);
        uint32_t t = ds->perm[i - 1];
        ds->perm[i - 1] = ds->perm[j];
        ds->perm[j] = t;
    }
    return CF_OK;
}

/* ---- public API ---------------------------------------------------------------------------- */

int cf_dataset_open(const cf_config *cfg, cf_dataset **out) {
    *out = NULL;
    cf_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return CF_ERR_NOMEM;
    snprintf(ds->path, sizeof ds->path, "%s", cfg->data);
    ds->T = cfg->max_length;
    ds->vocab_size = cfg->vocab_size;
    ds->seed = cfg->seed;
    if (ds->T < 1) {
        CF_ERROR("data %s: max_length (%d) must be >= 1", ds->path, ds->T);
        free(ds);
        return CF_ERR_INVALID;
    }
    int rc = load_corpus(cfg, cfg->data, &ds->tok);
    if (rc != CF_OK) {
        free(ds);
        return rc;
    }
    double f = cfg->val_fraction;
    if (ds->tok.shards) { /* the split is the one `clformer prepare` wrote */
        rc = cf_shard_set_split(ds->tok.shards, ds->path, ds->T, f > 0.0, &ds->n_val);
        if (rc != CF_OK) {
            cf_dataset_free(ds);
            return rc;
        }
    } else if (!split_ok(ds->tok.n, f, ds->T)) {
        CF_ERROR("data %s: %zu tokens is too short for max_length %d with val_fraction %g; need at "
                 "least %zu tokens (provide more text or lower max_length)",
                 ds->path, ds->tok.n, ds->T, f, min_tokens(f, ds->T));
        cf_dataset_free(ds);
        return CF_ERR_INVALID;
    }
    if (!ds->tok.shards) ds->n_val = val_count(ds->tok.n, f);
    ds->n_train = ds->tok.n - ds->n_val;
    /* unigram counts of the train split (ids were checked against vocab_size by load_corpus) */
    size_t *counts = calloc((size_t)ds->vocab_size, sizeof *counts);
    int32_t *chunk = ds->tok.shards ? malloc(((size_t)1 << 16) * sizeof *chunk) : NULL;
    if (!counts || (ds->tok.shards && !chunk)) {
        free(counts);
        free(chunk);
        cf_dataset_free(ds);
        return CF_ERR_NOMEM;
    }
    for (size_t i = 0; i < ds->n_train && rc == CF_OK;) {
        if (!chunk) {
            counts[tok_at(&ds->tok, i++)]++;
            continue;
        }
        size_t m = ds->n_train - i < ((size_t)1 << 16) ? ds->n_train - i : ((size_t)1 << 16);
        rc = cf_shard_set_read(ds->tok.shards, i, m, chunk);
        for (size_t k = 0; k < m && rc == CF_OK; k++) counts[chunk[k]]++;
        i += m;
    }
    free(chunk);
    if (rc != CF_OK) {
        free(counts);
        cf_dataset_free(ds);
        return rc;
    }
    double H = 0.0;
    for (int v = 0; v < ds->vocab_size; v++) {
        if (!counts[v]) continue;
        double p = (double)counts[v] / (double)ds->n_train;
        H -= p * log(p);
    }
    free(counts);
    ds->unigram_nats = H;
    rc = build_epoch(ds);
    if (rc != CF_OK) {
        cf_dataset_free(ds);
        return rc;
    }
    CF_DEBUG("data %s: %zu tokens (%zu train, %zu val), %zu train windows of %d, unigram entropy "
             "%.4f nats",
             ds->path, ds->tok.n, ds->n_train, ds->n_val, ds->n_win, ds->T + 1, H);
    *out = ds;
    return CF_OK;
}

int cf_dataset_next_batch(cf_dataset *ds, int split, int B, int T, int32_t *inputs,
                          int32_t *targets) {
    if (B < 1 || T < 1 || T > ds->T || !inputs || !targets) {
        CF_ERROR("data %s: batch (B=%d, T=%d) is invalid; need B >= 1 and 1 <= T <= max_length "
                 "(%d)",
                 ds->path, B, T, ds->T);
        return CF_ERR_INVALID;
    }
    if (split == CF_SPLIT_TRAIN) {
        for (int b = 0; b < B; b++) {
            if (ds->index >= ds->n_win) {
                ds->epoch++;
                ds->index = 0;
                CF_TRY(build_epoch(ds));
            }
            size_t start = ds->shift + (size_t)ds->perm[ds->index] * (size_t)ds->T;
            CF_TRY(
                copy_window(&ds->tok, start, T, inputs + (size_t)b * T, targets + (size_t)b * T));
            ds->index++;
        }
        return CF_OK;
    }
    if (split != CF_SPLIT_VAL) {
        CF_ERROR("data %s: unknown split %d", ds->path, split);
        return CF_ERR_INVALID;
    }
    if (ds->n_val < (size_t)T + 1) {
        CF_ERROR("data %s: no validation split (val_fraction gave %zu tokens, a batch needs %d); "
                 "set val_fraction > 0",
                 ds->path, ds->n_val, T + 1);
        return CF_ERR_INVALID;
    }
    for (int b = 0; b < B; b++) {
        if (ds->val_pos + (size_t)T + 1 > ds->n_val) ds->val_pos = 0;
        CF_TRY(copy_window(&ds->tok, ds->n_train + ds->val_pos, T, inputs + (size_t)b * T,
                           targets + (size_t)b * T));
        ds->val_pos += (size_t)T;
    }
    return CF_OK;
}

int cf_dataset_skip(cf_dataset *ds, size_t n) {
    while (n > 0) {
        if (ds->index >= ds->n_win) {
            ds->epoch++;
            ds->index = 0;
            CF_TRY(build_epoch(ds));
        }
        const size_t left = ds->n_win - (size_t)ds->index, k = n < left ? n : left;
        ds->index += k;
        n -= k;
    }
    return CF_OK;
}

void cf_dataset_reset_val(cf_dataset *ds) { ds->val_pos = 0; }

void cf_dataset_get_state(const cf_dataset *ds, cf_dataset_state *st) {
    st->epoch = ds->epoch;
    st->index = ds->index;
    st->seed = ds->seed;
}

int cf_dataset_set_state(cf_dataset *ds, const cf_dataset_state *st) {
    uint64_t old_seed = ds->seed, old_epoch = ds->epoch, old_index = ds->index;
    ds->seed = st->seed;
    ds->epoch = st->epoch;
    int rc = build_epoch(ds);
    if (rc == CF_OK && st->index > ds->n_win) {
        CF_ERROR("data %s: saved data position (epoch %llu, window %llu) is past this corpus's %zu "
                 "windows; the checkpoint was trained on different data or max_length",
                 ds->path, (unsigned long long)st->epoch, (unsigned long long)st->index,
                 ds->n_win);
        rc = CF_ERR_INVALID;
    }
    if (rc != CF_OK) {
        ds->seed = old_seed;
        ds->epoch = old_epoch;
        (void)build_epoch(ds);
        ds->index = old_index;
        return rc;
    }
    ds->index = st->index;
    return CF_OK;
}

size_t cf_dataset_num_tokens(const cf_dataset *ds, int split) {
    return split == CF_SPLIT_TRAIN ? ds->n_train : split == CF_SPLIT_VAL ? ds->n_val : 0;
}

size_t cf_dataset_num_windows(const cf_dataset *ds, int split) {
    if (split == CF_SPLIT_TRAIN) return windows_for_shift(ds->n_train, ds->T, 0);
    if (split == CF_SPLIT_VAL) return windows_for_shift(ds->n_val, ds->T, 0);
    return 0;
}

double cf_dataset_unigram_entropy(const cf_dataset *ds) { return ds->unigram_nats; }

int cf_dataset_load_tokens(const cf_config *cfg, const char *path, int32_t **tokens, size_t *n) {
    *tokens = NULL;
    *n = 0;
    cf_tokbuf tb;
    CF_TRY(load_corpus(cfg, path, &tb));
    int32_t *out = malloc(tb.n * sizeof *out);
    if (!out) {
        free(tb.data);
        cf_shard_set_close(tb.shards);
        CF_ERROR("data %s: out of memory for %zu tokens", path, tb.n);
        return CF_ERR_NOMEM;
    }
    int rc = CF_OK;
    if (tb.shards) {
        /* a shard directory: its validation shards only (the training shards are what the model
         * was fitted to; a loss over them is not an evaluation) */
        const uint64_t nv = cf_shard_set_val_tokens(tb.shards);
        if (nv < 2) {
            CF_ERROR("data %s: the shard directory has no validation shard (%llu tokens) to "
                     "evaluate on; prepare it with --val-fraction > 0, or pass a text file",
                     path, (unsigned long long)nv);
            rc = CF_ERR_INVALID;
        } else {
            rc = cf_shard_set_read(tb.shards, tb.n - nv, (size_t)nv, out);
            tb.n = (size_t)nv;
        }
    } else
        for (size_t i = 0; i < tb.n; i++) out[i] = (int32_t)tok_at(&tb, i);
    free(tb.data);
    cf_shard_set_close(tb.shards);
    if (rc != CF_OK) {
        free(out);
        return rc;
    }
    *tokens = out;
    *n = tb.n;
    return CF_OK;
}

void cf_dataset_free(cf_dataset *ds) {
    if (!ds) return;
    free(ds->tok.data);
    cf_shard_set_close(ds->tok.shards);
    free(ds->perm);
    free(ds);
}

/* ---- document boundaries -------------------------------------------------------------------- */

size_t cf_doc_starts(const int32_t *tokens, int B, int T, int32_t eot, int32_t *starts) {
    size_t ends = 0;
    for (int b = 0; b < B; b++) {
        int32_t start = 0;
        for (int i = 0; i < T; i++) {
            starts[(size_t)b * T + i] = start;
            if (tokens[(size_t)b * T + i] == eot) {
                start = i + 1; /* the end-of-text closes its document; the next token starts one */
                ends++;
            }
        }
    }
    return ends;
}

int cf_data_eot_id(const cf_config *cfg, int32_t *eot) {
    *eot = -1;
    if (strcmp(cfg->tokenizer, "byte") == 0) return CF_OK;
    cf_tokenizer *t = NULL;
    CF_TRY(cf_tokenizer_load(cfg->tokenizer, &t));
    *eot = cf_tokenizer_eot_id(t);
    cf_tokenizer_free(t);
    return CF_OK;
}
