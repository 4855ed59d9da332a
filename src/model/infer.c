/* clformer: inference with a KV cache (see infer.h): weights, caches, the step (prefill and
 * decode are the same code with Tq rows per sequence), sliding, int8 weights. */
#include "model/infer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "train/checkpoint.h"

/* int8 tables: the linears, the token embedding when it is not the tied head, wpe */
#define CF_NUM_QTABLES (CF_NUM_LINEARS + 2)

/* step buffers (rows R = max_rows) */
enum { S_X, S_LN, S_QKV, S_ATTY, S_TMP, S_FCH, S_FCHA, S_MEAN, S_RSTD, S_LOGITS, S_CS, S_SLIDE,
       S_COUNT };

struct cf_infer {
    cf_config cfg;
    cf_backend *be;
    int slots, S, R, int8;
    int L, NB, C, V, NH, KVH, hs, QKV, F, FI, KV;
    cf_param_info params[CF_NUM_PARAMS];
    size_t num_params;
    /* f32 tensors: param i at f32_off[i] in wbuf (quantised weights are not there) */
    cf_buffer *wbuf;
    size_t f32_off[CF_NUM_PARAMS], f32_elems;
    int quant[CF_NUM_PARAMS]; /* the param is stored only as int8 */
    cf_linear_info lin[CF_NUM_LINEARS];
    int nlin;
    /* int8 tables (q_tables): weight rows (per block rows x cols) at q8_off bytes in qbuf,
     * scales at sc_off; table i < nlin is linear i */
    int nq, qid[CF_NUM_QTABLES];
    int64_t qcols[CF_NUM_QTABLES];
    cf_buffer *qbuf, *sbuf;
    size_t q8_off[CF_NUM_QTABLES], sc_off[CF_NUM_QTABLES], q8_bytes, sc_elems;
    /* caches: kc[l], vc[l] (slots, S, KV) */
    cf_buffer **kc, **vc;
    /* step buffers */
    cf_buffer *sbufs[S_COUNT];
    cf_buffer *tok, *posb, *pidb; /* pidb: each row's position (int8 learned positions) */
    cf_buffer *lg_all; /* (max_rows, V) logits of every row, allocated on first use */
    int32_t *pos;   /* host copy: positions each slot holds */
    /* the mask of attention_window and doc_mask: each row's first visible cache position (lo,
     * max_rows entries on the host and in lob, which exists only when the config has a window
     * or doc_mask); doc[s]: the cache position where slot s's current document starts */
    int32_t eot; /* doc_mask: the end-of-text id (cf_infer_set_doc_eot); -1 = no document mask */
    int32_t *doc, *lo_host;
    cf_buffer *lob;
};

static int lin_index(const cf_infer *inf, int id) {
    for (int i = 0; i < inf->nlin; i++)
        if (inf->lin[i].weight == id) return i;
    return -1;
}
/* the linear whose weight is id, as the head (tied: wte) or a block weight */
static int head_lin(const cf_infer *inf) {
    for (int i = 0; i < inf->nlin; i++)
        if (!strcmp(inf->lin[i].name, "head")) return i;
    return -1;
}

/* The int8 tables of a model: every linear (cf_model_linears, the head included, wte when tied),
 * then the token embedding wte when it is not the head, then the learned position table wpe.
 * All have one scale per row (an output channel of a linear, a token's or a position's row of
 * an embedding), so a tied wte serves the lookup and the head from one int8 copy. */
static int q_tables(const cf_param_info *params, const cf_linear_info *lin, int nlin, int *id,
                    int64_t *cols) {
    int n = 0, wte_lin = 0;
    for (int i = 0; i < nlin; i++) {
        id[n] = lin[i].weight;
        cols[n++] = lin[i].in;
        wte_lin |= lin[i].weight == CF_P_wte;
    }
    const int emb[2] = {wte_lin ? -1 : CF_P_wte, CF_P_wpe};
    for (int k = 0; k < 2; k++)
        if (emb[k] >= 0 && params[emb[k]].present) {
            const cf_param_info *p = &params[emb[k]];
            id[n] = emb[k];
            cols[n++] = p->shape[p->ndim - 1];
        }
    return n;
}
static int q_index(const cf_infer *inf, int id) {
    for (int i = 0; i < inf->nq; i++)
        if (inf->qid[i] == id) return i;
    return -1;
}

static size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

static size_t cache_bytes_of(const cf_infer *inf) {
    return 2 * (size_t)inf->L * inf->slots * (size_t)inf->S * inf->KV * sizeof(float);
}

int cf_infer_create(cf_backend *be, const cf_config *cfg, const cf_infer_opts *o, cf_infer **out) {
    *out = NULL;
    int S = o->S > 0 ? o->S : cfg->max_length;
    if (o->slots <= 0 || S > cfg->max_length) {
        CF_ERROR("infer: %d sequences of %d positions: need at least one sequence and at most "
                 "max_length = %d positions",
                 o->slots, S, cfg->max_length);
        return CF_ERR_INVALID;
    }
    cf_infer *inf = calloc(1, sizeof *inf);
    if (!inf) return CF_ERR_NOMEM;
    inf->cfg = *cfg;
    inf->be = be;
    inf->slots = o->slots;
    inf->S = S;
    inf->R = o->max_rows > 0 ? o->max_rows : (o->slots > S ? o->slots : S);
    if (inf->R < o->slots) inf->R = o->slots;
    inf->int8 = o->int8 != 0;
    inf->L = cfg->num_layers;
    inf->NB = cf_config_blocks(cfg);
    inf->C = cfg->d_model;
    inf->V = cfg->vocab_size;
    inf->NH = cfg->num_heads;
    inf->KVH = cf_config_kv_heads(cfg);
    inf->hs = cf_model_head_size(cfg);
    inf->QKV = cf_model_qkv_width(cfg);
    inf->F = cfg->d_ff;
    inf->FI = cf_model_fc_width(cfg);
    inf->KV = inf->KVH * inf->hs;
    cf_model_layout(cfg, inf->params, &inf->num_params, NULL);
    inf->nlin = cf_model_linears(cfg, inf->lin);
    /* which params live only as int8: the linear weights and the embeddings (q_tables) */
    if (inf->int8) {
        inf->nq = q_tables(inf->params, inf->lin, inf->nlin, inf->qid, inf->qcols);
        for (int i = 0; i < inf->nq; i++) inf->quant[inf->qid[i]] = 1;
    }
    size_t off = 0;
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        inf->f32_off[i] = off;
        if (inf->params[i].present && !inf->quant[i]) off += pad16(inf->params[i].size);
    }
    inf->f32_elems = off;
    size_t qo = 0, so = 0;
    for (int i = 0; i < inf->nq; i++) {
        const cf_param_info *p = &inf->params[inf->qid[i]];
        inf->q8_off[i] = qo;
        inf->sc_off[i] = so;
        qo += (p->size + 63) & ~(size_t)63;
        so += pad16(p->size / (size_t)inf->qcols[i]);
    }
    inf->q8_bytes = qo;
    inf->sc_elems = so;

    const int R = inf->R, C = inf->C;
    const size_t sizes[S_COUNT] = {
        [S_X] = (size_t)R * C,      [S_LN] = (size_t)R * C,     [S_QKV] = (size_t)R * inf->QKV,
        [S_ATTY] = (size_t)R * C,   [S_TMP] = (size_t)R * C,    [S_FCH] = (size_t)R * inf->FI,
        [S_FCHA] = (size_t)R * inf->F, [S_MEAN] = (size_t)R,
        [S_RSTD] = (size_t)R * (inf->NH > 1 ? inf->NH : 1),
        [S_LOGITS] = (size_t)inf->slots * inf->V,
        [S_CS] = cf_model_rope(cfg) ? (size_t)S * inf->hs : 0,
        [S_SLIDE] = cf_model_rope(cfg) ? (size_t)S * inf->KV : 0,
    };
    int rc = CF_ERR_NOMEM;
    inf->kc = calloc((size_t)inf->L, sizeof *inf->kc);
    inf->vc = calloc((size_t)inf->L, sizeof *inf->vc);
    inf->pos = calloc((size_t)inf->slots, sizeof *inf->pos);
    inf->doc = calloc((size_t)inf->slots, sizeof *inf->doc);
    inf->eot = -1;
    if (!inf->kc || !inf->vc || !inf->pos || !inf->doc) goto fail;
    if (cfg->attention_window > 0 || cfg->doc_mask) {
        if (!(inf->lo_host = malloc(sizeof(int32_t) * (size_t)R))) goto fail;
        if ((rc = cf_be_alloc(be, (size_t)R * 4, &inf->lob)) < 0) goto fail;
    }
    if ((rc = cf_be_alloc(be, (inf->f32_elems ? inf->f32_elems : 1) * 4, &inf->wbuf)) < 0) goto fail;
    if (inf->int8) {
        if ((rc = cf_be_alloc(be, inf->q8_bytes, &inf->qbuf)) < 0) goto fail;
        if ((rc = cf_be_alloc(be, inf->sc_elems * 4, &inf->sbuf)) < 0) goto fail;
    }
    const size_t cache = (size_t)inf->slots * S * inf->KV * sizeof(float);
    for (int l = 0; l < inf->L; l++) {
        if ((rc = cf_be_alloc(be, cache, &inf->kc[l])) < 0) goto fail;
        if ((rc = cf_be_alloc(be, cache, &inf->vc[l])) < 0) goto fail;
        /* defined contents: a row is read only after it was written, but keep NaN-free memory */
        if ((rc = cf_be_fill(be, cf_view_f32(inf->kc[l], 0), 0.0f, cache / 4)) < 0) goto fail;
        if ((rc = cf_be_fill(be, cf_view_f32(inf->vc[l], 0), 0.0f, cache / 4)) < 0) goto fail;
    }
    for (int i = 0; i < S_COUNT; i++)
        if (sizes[i] && (rc = cf_be_alloc(be, sizes[i] * 4, &inf->sbufs[i])) < 0) goto fail;
    if ((rc = cf_be_alloc(be, (size_t)R * 4, &inf->tok)) < 0) goto fail;
    if ((rc = cf_be_alloc(be, (size_t)inf->slots * 4, &inf->posb)) < 0) goto fail;
    if (inf->int8 && cf_model_learned_pos(cfg) &&
        (rc = cf_be_alloc(be, (size_t)R * 4, &inf->pidb)) < 0)
        goto fail;
    if (cf_model_rope(cfg)) { /* (S, hs/2, 2) (cos, sin), in double as the model builds it */
        const int hs = inf->hs, half = hs / 2;
        float *cs = malloc(sizeof(float) * (size_t)S * hs);
        if (!cs) {
            rc = CF_ERR_NOMEM;
            goto fail;
        }
        for (int p = 0; p < S; p++)
            for (int i = 0; i < half; i++) {
                const double a = p * pow(cfg->rope_theta, -2.0 * i / hs);
                cs[((size_t)p * half + i) * 2] = (float)cos(a);
                cs[((size_t)p * half + i) * 2 + 1] = (float)sin(a);
            }
        rc = cf_be_upload(be, cf_view_f32(inf->sbufs[S_CS], 0), cs, sizeof(float) * (size_t)S * hs);
        free(cs);
        if (rc < 0) goto fail;
    }
    *out = inf;
    return CF_OK;
fail:
    if (rc == CF_ERR_NOMEM)
        CF_ERROR("infer: not enough memory on %s for %d sequences of %d positions (KV cache "
                 "%.1f MiB); lower --batch or the context",
                 cf_be_name(be), inf->slots, S,
                 (double)cache_bytes_of(inf) / (1024.0 * 1024.0));
    cf_infer_free(inf);
    return rc;
}

void cf_infer_free(cf_infer *inf) {
    if (!inf) return;
    cf_backend *be = inf->be;
    cf_be_free(be, inf->wbuf);
    cf_be_free(be, inf->qbuf);
    cf_be_free(be, inf->sbuf);
    for (int l = 0; l < inf->L && inf->kc; l++) cf_be_free(be, inf->kc[l]);
    for (int l = 0; l < inf->L && inf->vc; l++) cf_be_free(be, inf->vc[l]);
    for (int i = 0; i < S_COUNT; i++) cf_be_free(be, inf->sbufs[i]);
    cf_be_free(be, inf->tok);
    cf_be_free(be, inf->posb);
    cf_be_free(be, inf->pidb);
    cf_be_free(be, inf->lg_all);
    cf_be_free(be, inf->lob);
    free(inf->kc);
    free(inf->vc);
    free(inf->pos);
    free(inf->doc);
    free(inf->lo_host);
    free(inf);
}

void cf_infer_reset(cf_infer *inf, int slot) {
    if (slot >= 0 && slot < inf->slots) inf->pos[slot] = inf->doc[slot] = 0;
}
void cf_infer_set_doc_eot(cf_infer *inf, int32_t eot) {
    inf->eot = inf->cfg.doc_mask && eot >= 0 ? eot : -1;
}
int cf_infer_pos(const cf_infer *inf, int slot) { return inf->pos[slot]; }
int cf_infer_capacity(const cf_infer *inf) { return inf->S; }
int cf_infer_slots(const cf_infer *inf) { return inf->slots; }
int cf_infer_max_rows(const cf_infer *inf) { return inf->R; }
size_t cf_infer_weight_bytes(const cf_infer *inf) {
    return inf->f32_elems * 4 + inf->q8_bytes + inf->sc_elems * 4;
}
size_t cf_infer_cache_bytes(const cf_infer *inf) { return cache_bytes_of(inf); }

/* ---- weights ----------------------------------------------------------------------------------- */

void cf_quantize_rows(const float *w, int64_t rows, int64_t cols, int8_t *q, float *scale) {
    for (int64_t r = 0; r < rows; r++) {
        const float *x = w + r * cols;
        float mx = 0.0f;
        for (int64_t k = 0; k < cols; k++) mx = fmaxf(mx, fabsf(x[k]));
        const float s = mx / 127.0f, inv = s > 0.0f ? 1.0f / s : 0.0f;
        scale[r] = s;
        for (int64_t k = 0; k < cols; k++) {
            float v = nearbyintf(x[k] * inv);
            q[r * cols + k] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
        }
    }
}

/* f32 tensors from host (model layout); int8 tables from q8/sc when given (per table: NULL =
 * quantise it from host) */
static int upload_weights(cf_infer *inf, const float *host, const int8_t *const *q8,
                          const float *const *sc) {
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &inf->params[i];
        if (!p->present || inf->quant[i]) continue;
        CF_TRY(cf_be_upload(inf->be, cf_view_f32(inf->wbuf, inf->f32_off[i]), host + p->offset,
                            p->size * sizeof(float)));
    }
    if (!inf->int8) return CF_OK;
    for (int i = 0; i < inf->nq; i++) {
        const cf_param_info *p = &inf->params[inf->qid[i]];
        const int64_t rows = (int64_t)(p->size / (size_t)inf->qcols[i]);
        const int8_t *q = q8 ? q8[i] : NULL;
        const float *s = sc ? sc[i] : NULL;
        int8_t *qa = NULL;
        float *sa = NULL;
        if (!q || !s) {
            qa = malloc(p->size);
            sa = malloc(sizeof(float) * (size_t)rows);
            if (!qa || !sa) {
                free(qa);
                free(sa);
                return CF_ERR_NOMEM;
            }
            cf_quantize_rows(host + p->offset, rows, inf->qcols[i], qa, sa);
            q = qa;
            s = sa;
        }
        int rc = cf_be_upload(inf->be, cf_view_typed(inf->qbuf, CF_I8, inf->q8_off[i]), q, p->size);
        if (rc == CF_OK)
            rc = cf_be_upload(inf->be, cf_view_f32(inf->sbuf, inf->sc_off[i]), s,
                              sizeof(float) * (size_t)rows);
        free(qa);
        free(sa);
        CF_TRY(rc);
    }
    return CF_OK;
}

int cf_infer_set_params(cf_infer *inf, const float *host) {
    return upload_weights(inf, host, NULL, NULL);
}

int cf_infer_file_is_int8(const char *path, int *int8) {
    cf_st_file *f = NULL;
    CF_TRY(cf_st_open(path, &f));
    *int8 = cf_st_meta(f, "quantization") != NULL;
    cf_st_close(f);
    return CF_OK;
}

static const char Q8_SUFFIX[] = ".q8", SCALE_SUFFIX[] = ".scale";

int cf_infer_load(cf_infer *inf, const char *path) {
    cf_st_file *f = NULL;
    CF_TRY(cf_st_open(path, &f));
    const int is_q8 = cf_st_meta(f, "quantization") != NULL;
    int rc = CF_OK;
    float *host = NULL;
    const int8_t *q8[CF_NUM_QTABLES] = {0};
    const float *sc[CF_NUM_QTABLES] = {0};
    if (is_q8 && !inf->int8) {
        CF_ERROR("%s: is an int8 model; the engine was created for fp32 weights", path);
        rc = CF_ERR_INVALID;
        goto done;
    }
    if (!is_q8 && (rc = cf_checkpoint_check_tensors(f, path, inf->params, NULL)) < 0) goto done;
    host = calloc(inf->num_params ? inf->num_params : 1, sizeof(float));
    if (!host) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &inf->params[i];
        if (!p->present) continue;
        if (is_q8 && inf->quant[i]) {
            /* an int8 table; an embedding stored F32 (files written before the embeddings were
             * quantised) is read here and quantised on upload */
            char qn[96];
            snprintf(qn, sizeof qn, "%s%s", p->name, Q8_SUFFIX);
            if (cf_st_find(f, qn) || !cf_st_find(f, p->name)) continue;
        }
        const cf_st_tensor *t = NULL;
        if ((rc = cf_st_expect(f, p->name, "F32", p->size, &t)) < 0) goto done;
        memcpy(host + p->offset, t->data, p->size * sizeof(float));
        if ((rc = cf_checkpoint_check_values(path, p->name, host + p->offset, p->size, 0)) < 0)
            goto done;
    }
    if (is_q8)
        for (int i = 0; i < inf->nq; i++) {
            const cf_param_info *p = &inf->params[inf->qid[i]];
            char qn[96], sn[96];
            snprintf(qn, sizeof qn, "%s%s", p->name, Q8_SUFFIX);
            snprintf(sn, sizeof sn, "%s%s", p->name, SCALE_SUFFIX);
            if (i >= inf->nlin && !cf_st_find(f, qn) && cf_st_find(f, p->name))
                continue; /* an F32 embedding, read above */
            const cf_st_tensor *tq = NULL, *ts = NULL;
            if ((rc = cf_st_expect(f, qn, "I8", p->size, &tq)) < 0) goto done;
            if ((rc = cf_st_expect(f, sn, "F32", p->size / (size_t)inf->qcols[i], &ts)) < 0)
                goto done;
            if ((rc = cf_checkpoint_check_values(path, sn, ts->data, ts->nbytes / 4, 1)) < 0)
                goto done;
            q8[i] = tq->data;
            sc[i] = ts->data;
        }
    rc = upload_weights(inf, host, is_q8 ? q8 : NULL, is_q8 ? sc : NULL);
done:
    free(host);
    cf_st_close(f);
    return rc;
}

int cf_quantize_write(const char *path, const char *src, const cf_config *cfg, const float *host,
                      size_t *fp32_bytes, size_t *int8_bytes) {
    cf_param_info params[CF_NUM_PARAMS];
    cf_linear_info lin[CF_NUM_LINEARS];
    cf_model_layout(cfg, params, NULL, NULL);
    const int nlin = cf_model_linears(cfg, lin);
    int qid[CF_NUM_QTABLES];
    int64_t qcols[CF_NUM_QTABLES];
    const int nq = q_tables(params, lin, nlin, qid, qcols);
    int quant[CF_NUM_PARAMS] = {0};
    for (int i = 0; i < nq; i++) quant[qid[i]] = 1;
    cf_st_tensor t[CF_NUM_PARAMS + 2 * CF_NUM_QTABLES];
    char names[2 * CF_NUM_QTABLES][96];
    int8_t *q[CF_NUM_QTABLES] = {0};
    float *s[CF_NUM_QTABLES] = {0};
    int nt = 0, rc = CF_OK;
    size_t b32 = 0, b8 = 0;
    cf_st_file *sf = NULL;
    const char **keys = NULL, **vals = NULL;
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &params[i];
        if (!p->present) continue;
        b32 += p->size * 4;
        if (quant[i]) continue;
        b8 += p->size * 4;
        cf_st_tensor *x = &t[nt++];
        memset(x, 0, sizeof *x);
        x->name = p->name;
        x->dtype = "F32";
        x->ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) x->shape[d] = p->shape[d];
        x->data = host + p->offset;
        x->nbytes = p->size * 4;
    }
    for (int i = 0; i < nq; i++) {
        const cf_param_info *p = &params[qid[i]];
        const int64_t rows = (int64_t)(p->size / (size_t)qcols[i]);
        q[i] = malloc(p->size);
        s[i] = malloc(sizeof(float) * (size_t)rows);
        if (!q[i] || !s[i]) {
            rc = CF_ERR_NOMEM;
            goto done;
        }
        cf_quantize_rows(host + p->offset, rows, qcols[i], q[i], s[i]);
        b8 += p->size + (size_t)rows * 4;
        snprintf(names[2 * i], sizeof names[0], "%s%s", p->name, Q8_SUFFIX);
        snprintf(names[2 * i + 1], sizeof names[0], "%s%s", p->name, SCALE_SUFFIX);
        cf_st_tensor *x = &t[nt++];
        memset(x, 0, sizeof *x);
        x->name = names[2 * i];
        x->dtype = "I8";
        x->ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) x->shape[d] = p->shape[d];
        x->data = q[i];
        x->nbytes = p->size;
        x = &t[nt++];
        memset(x, 0, sizeof *x);
        x->name = names[2 * i + 1];
        x->dtype = "F32";
        x->ndim = p->ndim - 1 > 0 ? p->ndim - 1 : 1;
        if (p->ndim == 3) {
            x->shape[0] = p->shape[0];
            x->shape[1] = p->shape[1];
        } else {
            x->shape[0] = p->shape[0];
        }
        x->data = s[i];
        x->nbytes = sizeof(float) * (size_t)rows;
    }
    /* metadata: the source's (config, tokenizer, step, ...) plus what the file is */
    if ((rc = cf_st_open(src, &sf)) < 0) goto done;
    const int nm = cf_st_meta_count(sf);
    keys = calloc((size_t)nm + 2, sizeof *keys);
    vals = calloc((size_t)nm + 2, sizeof *vals);
    if (!keys || !vals) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    int k = 0;
    for (int i = 0; i < nm; i++) {
        const char *key = cf_st_meta_key(sf, i);
        if (!strcmp(key, "has_optimizer") || !strcmp(key, "quantization") ||
            !strcmp(key, "quantization_scheme"))
            continue;
        keys[k] = key;
        vals[k++] = cf_st_meta(sf, key);
    }
    keys[k] = "quantization";
    vals[k++] = "int8";
    keys[k] = "quantization_scheme";
    vals[k++] = "weight-only, symmetric, one scale per row: <name> ~= <name>.scale[row] * "
                "<name>.q8[row, :] for the linear weights (qkv_w, attn_proj_w, fc_w, fc_proj_w, "
                "and the head: lm_head, or wte when tied; a row is an output channel) and the "
                "embeddings (wte, one row per token, serving the lookup and a tied head; wpe, "
                "one row per position); the other tensors are F32 under their checkpoint names";
    rc = cf_st_write(path, t, nt, keys, vals, k);
    if (fp32_bytes) *fp32_bytes = b32;
    if (int8_bytes) *int8_bytes = b8;
done:
    if (rc == CF_ERR_NOMEM) CF_ERROR("quantize: out of host memory");
    for (int i = 0; i < nq; i++) {
        free(q[i]);
        free(s[i]);
    }
    free(keys);
    free(vals);
    cf_st_close(sf);
    return rc;
}

/* ---- the step ---------------------------------------------------------------------------------- */

static cf_view W(cf_infer *inf, int id, int b) {
    const cf_param_info *p = &inf->params[id];
    if (!p->present) return CF_VIEW_NULL;
    return cf_view_f32(inf->wbuf, inf->f32_off[id] + (size_t)b * p->layer_stride);
}
static cf_view SB(cf_infer *inf, int i) { return cf_view_f32(inf->sbufs[i], 0); }
/* int8 table i (block 0): its rows and their scales */
static cf_view QT(cf_infer *inf, int i) { return cf_view_typed(inf->qbuf, CF_I8, inf->q8_off[i]); }
static cf_view QS(cf_infer *inf, int i) { return cf_view_f32(inf->sbuf, inf->sc_off[i]); }
#define CF_INFER_PID_MAX 256 /* positions uploaded per call */

/* out(N,OC) = inp(N,IC; row stride lda) @ W^T + bias, W the linear li's block b */
static int linear(cf_infer *inf, int li, int b, cf_view out, cf_view inp, int lda, cf_view bias,
                  int N) {
    const cf_linear_info *l = &inf->lin[li];
    const int IC = (int)l->in, OC = (int)l->out;
    if (inf->int8) {
        const size_t rows = (size_t)OC;
        return cf_be_gemm_q8(inf->be, N, OC, IC, inp, lda,
                             cf_view_typed(inf->qbuf, CF_I8, inf->q8_off[li] + (size_t)b * rows * IC),
                             cf_view_f32(inf->sbuf, inf->sc_off[li] + (size_t)b * rows), bias, out,
                             OC);
    }
    if (lda == IC) return cf_be_matmul_forward(inf->be, out, inp, W(inf, l->weight, b), bias, N, IC, OC);
    /* rows with a stride (the head on each sequence's last row): a GEMM, no bias */
    return cf_be_gemm(inf->be, 0, 1, N, OC, IC, 1.0f, inp, lda, W(inf, l->weight, b), IC, 0.0f,
                      out, OC);
}

static int norm(cf_infer *inf, cf_view out, cf_view inp, cf_view w, cf_view bias, int N) {
    const cf_config *c = &inf->cfg;
    if (cf_model_layernorm(c))
        return cf_be_layernorm_forward(inf->be, out, SB(inf, S_MEAN), SB(inf, S_RSTD), inp, w,
                                       bias, N, c->d_model, c->norm_eps);
    return cf_be_rmsnorm_forward(inf->be, out, SB(inf, S_RSTD), inp, w, N, 1, c->d_model,
                                 c->d_model, c->norm_eps);
}

static int step_impl(cf_infer *inf, int slot0, int B, int Tq, const int32_t *tokens, float *logits,
                     int all_rows) {
    cf_backend *be = inf->be;
    const cf_config *c = &inf->cfg;
    if (B <= 0 || Tq <= 0 || slot0 < 0 || slot0 + B > inf->slots || (long long)B * Tq > inf->R) {
        CF_ERROR("infer: step of %d sequences x %d tokens from slot %d does not fit %d slots and "
                 "%d rows",
                 B, Tq, slot0, inf->slots, inf->R);
        return CF_ERR_INVALID;
    }
    for (int b = 0; b < B; b++)
        if (inf->pos[slot0 + b] + Tq > inf->S) {
            CF_ERROR("infer: sequence %d holds %d of %d positions; %d more do not fit (slide or "
                     "stop first)",
                     slot0 + b, inf->pos[slot0 + b], inf->S, Tq);
            return CF_ERR_INVALID;
        }
    const int R = B * Tq, C = inf->C, V = inf->V, NH = inf->NH, KVH = inf->KVH, hs = inf->hs,
              QKV = inf->QKV, F = inf->F, S = inf->S, KV = inf->KV;
    CF_TRY(cf_be_upload(be, cf_view_i32(inf->tok, 0), tokens, sizeof(int32_t) * (size_t)R));
    CF_TRY(cf_be_upload(be, cf_view_i32(inf->posb, 0), inf->pos + slot0, sizeof(int32_t) * B));
    cf_view x = SB(inf, S_X), ln = SB(inf, S_LN), qkv = SB(inf, S_QKV), atty = SB(inf, S_ATTY),
            tmp = SB(inf, S_TMP), fch = SB(inf, S_FCH), fcha = SB(inf, S_FCHA);
    cf_view pos = cf_view_i32(inf->posb, 0);
    cf_view cs = cf_model_rope(c) ? SB(inf, S_CS) : CF_VIEW_NULL;
    /* each row's first visible cache position: the window's and its document's start; the
     * end-of-text row belongs to the document it closes, the row after it starts the next */
    cf_view lo = CF_VIEW_NULL;
    const int win = c->attention_window;
    if (inf->lob && (win > 0 || inf->eot >= 0)) {
        for (int b = 0; b < B; b++) {
            int32_t d = inf->doc[slot0 + b];
            for (int t = 0; t < Tq; t++) {
                const int r = b * Tq + t, p = inf->pos[slot0 + b] + t;
                inf->lo_host[r] = win > 0 && p - win + 1 > d ? p - win + 1 : d;
                if (inf->eot >= 0 && tokens[r] == inf->eot) d = p + 1;
            }
        }
        lo = cf_view_i32(inf->lob, 0);
        CF_TRY(cf_be_upload(be, lo, inf->lo_host, sizeof(int32_t) * (size_t)R));
    }
    cf_prof_scope(be, -1, CF_PHASE_FORWARD);
    if (inf->int8) { /* rows of the int8 tables, dequantised as they are read */
        const int qe = q_index(inf, CF_P_wte);
        CF_TRY(cf_be_embed_q8(be, x, cf_view_i32(inf->tok, 0), QT(inf, qe), QS(inf, qe), R, C, V,
                              0));
        if (cf_model_learned_pos(c)) {
            const int qp = q_index(inf, CF_P_wpe);
            int32_t pid[CF_INFER_PID_MAX];
            for (int r0 = 0; r0 < R; r0 += CF_INFER_PID_MAX) {
                const int n = R - r0 < CF_INFER_PID_MAX ? R - r0 : CF_INFER_PID_MAX;
                for (int i = 0; i < n; i++)
                    pid[i] = inf->pos[slot0 + (r0 + i) / Tq] + (r0 + i) % Tq;
                CF_TRY(cf_be_upload(be, cf_view_i32(inf->pidb, (size_t)r0), pid,
                                    sizeof(int32_t) * (size_t)n));
            }
            CF_TRY(cf_be_embed_q8(be, x, cf_view_i32(inf->pidb, 0), QT(inf, qp), QS(inf, qp), R,
                                  C, c->max_length, 1));
        }
    } else if (cf_model_learned_pos(c)) {
        /* each sequence's positions start at its own pos: one lookup per sequence */
        for (int b = 0; b < B; b++)
            CF_TRY(cf_be_encoder_forward(be, cf_view_add(x, (size_t)b * Tq * C),
                                         cf_view_i32(inf->tok, (size_t)b * Tq), W(inf, CF_P_wte, 0),
                                         cf_view_add(W(inf, CF_P_wpe, 0),
                                                     (size_t)inf->pos[slot0 + b] * C),
                                         1, Tq, C, V));
    } else {
        CF_TRY(cf_be_encoder_forward(be, x, cf_view_i32(inf->tok, 0), W(inf, CF_P_wte, 0),
                                     CF_VIEW_NULL, 1, R, C, V));
    }
    const int lq = lin_index(inf, CF_P_qkv_w), lp = lin_index(inf, CF_P_attn_proj_w),
              lf = lin_index(inf, CF_P_fc_w), lfp = lin_index(inf, CF_P_fc_proj_w);
    const size_t slot_off = (size_t)slot0 * S * KV;
    for (int l = 0; l < inf->L; l++) {
        const int b = l % inf->NB;
        cf_prof_scope(be, l, CF_PHASE_FORWARD);
        cf_view kc = cf_view_f32(inf->kc[l], slot_off), vc = cf_view_f32(inf->vc[l], slot_off);
        CF_TRY(norm(inf, ln, x, W(inf, CF_P_ln1_w, b), W(inf, CF_P_ln1_b, b), R));
        CF_TRY(linear(inf, lq, b, qkv, ln, C, W(inf, CF_P_qkv_b, b), R));
        if (cf_model_qk_norm(c)) { /* per-head RMSNorm of q and k, in place */
            CF_TRY(cf_be_rmsnorm_forward(be, qkv, SB(inf, S_RSTD), qkv, W(inf, CF_P_q_norm_w, b),
                                         R, NH, hs, QKV, c->norm_eps));
            CF_TRY(cf_be_rmsnorm_forward(be, cf_view_add(qkv, (size_t)NH * hs), SB(inf, S_RSTD),
                                         cf_view_add(qkv, (size_t)NH * hs),
                                         W(inf, CF_P_k_norm_w, b), R, KVH, hs, QKV, c->norm_eps));
        }
        CF_TRY(cf_be_kv_append(be, qkv, kc, vc, cs, pos, B, Tq, NH, KVH, hs, S));
        CF_TRY(cf_be_decode_attention(be, atty, qkv, kc, vc, pos, lo, B, Tq, NH, KVH, hs, S));
        CF_TRY(linear(inf, lp, b, tmp, atty, C, W(inf, CF_P_attn_proj_b, b), R));
        CF_TRY(cf_be_axpy(be, x, tmp, 1.0f, (size_t)R * C));
        CF_TRY(norm(inf, ln, x, W(inf, CF_P_ln2_w, b), W(inf, CF_P_ln2_b, b), R));
        switch (c->mlp) {
        case CF_MLP_SWIGLU:
            CF_TRY(linear(inf, lf, b, fch, ln, C, W(inf, CF_P_fc_b, b), R));
            CF_TRY(cf_be_swiglu_forward(be, fcha, fch, R, F));
            break;
        case CF_MLP_RELU2:
            CF_TRY(linear(inf, lf, b, fch, ln, C, W(inf, CF_P_fc_b, b), R));
            CF_TRY(cf_be_act_forward(be, CF_ACT_RELU2, fcha, fch, (size_t)R * F));
            break;
        default:
            if (inf->int8) {
                CF_TRY(linear(inf, lf, b, fch, ln, C, W(inf, CF_P_fc_b, b), R));
                CF_TRY(cf_be_act_forward(be, CF_ACT_GELU, fcha, fch, (size_t)R * F));
            } else { /* as the training forward does it */
                CF_TRY(cf_be_matmul_gelu_forward(be, fch, fcha, ln, W(inf, CF_P_fc_w, b),
                                                 W(inf, CF_P_fc_b, b), R, C, F));
            }
            break;
        }
        CF_TRY(linear(inf, lfp, b, tmp, fcha, F, W(inf, CF_P_fc_proj_b, b), R));
        CF_TRY(cf_be_axpy(be, x, tmp, 1.0f, (size_t)R * C));
    }
    for (int b = 0; b < B; b++) {
        for (int t = 0; inf->eot >= 0 && t < Tq; t++)
            if (tokens[b * Tq + t] == inf->eot) inf->doc[slot0 + b] = inf->pos[slot0 + b] + t + 1;
        inf->pos[slot0 + b] += Tq;
    }
    if (!logits) return CF_OK;
    cf_prof_scope(be, -1, CF_PHASE_FORWARD);
    /* the final norm, and the head on each sequence's last row (or on every row) */
    CF_TRY(norm(inf, ln, x, W(inf, CF_P_lnf_w, 0), W(inf, CF_P_lnf_b, 0), R));
    const int rows = all_rows ? R : B;
    cf_view lg = SB(inf, S_LOGITS);
    if (all_rows) {
        if (!inf->lg_all && cf_be_alloc(be, sizeof(float) * (size_t)R * V, &inf->lg_all) < 0)
            return CF_ERR_NOMEM;
        lg = cf_view_f32(inf->lg_all, 0);
        CF_TRY(linear(inf, head_lin(inf), 0, lg, ln, C, CF_VIEW_NULL, R));
    } else {
        CF_TRY(linear(inf, head_lin(inf), 0, lg, cf_view_add(ln, (size_t)(Tq - 1) * C), Tq * C,
                      CF_VIEW_NULL, B));
    }
    CF_TRY(cf_be_download(be, logits, lg, sizeof(float) * (size_t)rows * V));
    const float cap = c->logit_softcap;
    if (cap > 0.0f)
        for (size_t i = 0; i < (size_t)rows * V; i++) logits[i] = cap * tanhf(logits[i] / cap);
    return CF_OK;
}

int cf_infer_step(cf_infer *inf, int slot0, int B, int Tq, const int32_t *tokens, float *logits) {
    return step_impl(inf, slot0, B, Tq, tokens, logits, 0);
}

int cf_infer_step_all(cf_infer *inf, int slot0, int B, int Tq, const int32_t *tokens,
                      float *logits) {
    return step_impl(inf, slot0, B, Tq, tokens, logits, 1);
}

int cf_infer_prefill(cf_infer *inf, int slot, const int32_t *tokens, int n, float *logits) {
    for (int i = 0; i < n;) {
        const int k = n - i < inf->R ? n - i : inf->R;
        CF_TRY(cf_infer_step(inf, slot, 1, k, tokens + i, i + k == n ? logits : NULL));
        i += k;
    }
    return CF_OK;
}

int cf_infer_slide(cf_infer *inf, int slot, int d) {
    if (!cf_model_rope(&inf->cfg)) {
        CF_ERROR("infer: a model with learned positions cannot slide its cache (positions past "
                 "max_length have no embedding)");
        return CF_ERR_INVALID;
    }
    const int S = inf->S, KV = inf->KV;
    if (d <= 0 || d > inf->pos[slot]) return d == 0 ? CF_OK : CF_ERR_INVALID;
    const int keep = inf->pos[slot] - d;
    cf_backend *be = inf->be;
    cf_view scratch = SB(inf, S_SLIDE);
    const size_t base = (size_t)slot * S * KV;
    for (int l = 0; l < inf->L; l++) {
        cf_buffer *bufs[2] = {inf->kc[l], inf->vc[l]};
        for (int k = 0; k < 2; k++) {
            if (keep == 0) break;
            /* through a scratch: the source and destination rows overlap */
            CF_TRY(cf_be_copy(be, scratch, cf_view_f32(bufs[k], base + (size_t)d * KV),
                              (size_t)keep * KV));
            CF_TRY(cf_be_copy(be, cf_view_f32(bufs[k], base), scratch, (size_t)keep * KV));
        }
        /* every kept key one rotation of d positions back: rows of T = 1 at position d */
        if (keep > 0)
            CF_TRY(cf_be_rope(be, cf_view_f32(inf->kc[l], base), SB(inf, S_CS), keep, 1, inf->KVH,
                              inf->hs, KV, d, 1));
    }
    inf->pos[slot] = keep;
    inf->doc[slot] = inf->doc[slot] > d ? inf->doc[slot] - d : 0;
    return CF_OK;
}
