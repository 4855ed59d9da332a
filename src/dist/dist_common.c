/* clformer: the parts of data-parallel training that need no MPI: the gradient bucket plan, the
 * per-rank device choice and the --profile lines (dist.h). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend/verify.h"
#include "dist/dist.h"
#include "model/gpt.h"

/* ---- buckets ------------------------------------------------------------------------------- */

int cf_dist_stage_ordinal(const cf_model *m, int stage) {
    const int NB = cf_config_blocks(&m->cfg);
    if (stage == CF_GRAD_STAGE_HEAD) return 0;
    if (stage == CF_GRAD_STAGE_EMBED) return NB + 1;
    return 1 + (NB - 1 - stage);
}

/* the stage ordinal at which a non-layered parameter's gradient is complete */
static int flat_ready(const cf_model *m, int id) {
    /* the LM head (untied) and the final norm are done before the blocks; wte (also the tied
     * head's weight), wpe and anything else at the end */
    if (id == CF_P_lm_head || id == CF_P_lnf_w || id == CF_P_lnf_b) return 0;
    return cf_config_blocks(&m->cfg) + 1;
}

typedef struct {
    size_t off, len;
    int ready;
} raw_seg;

static int raw_cmp(const void *a, const void *b) {
    const raw_seg *x = a, *y = b;
    if (x->ready != y->ready) return x->ready < y->ready ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

void cf_dist_plan_free(cf_dist_plan_t *p) {
    free(p->segs);
    free(p->buckets);
    memset(p, 0, sizeof *p);
}

int cf_dist_plan(const cf_model *m, size_t bucket_bytes, cf_dist_plan_t *out) {
    memset(out, 0, sizeof *out);
    const int NB = cf_config_blocks(&m->cfg);
    size_t cap = bucket_bytes / sizeof(float);
    if (cap < 1) cap = 1;
    /* one raw segment per present flat tensor and per (layered tensor, block) */
    int nraw = 0;
    for (int i = 0; i < CF_NUM_PARAMS; i++)
        if (m->params[i].present && m->params[i].size) nraw += m->params[i].layered ? NB : 1;
    raw_seg *raw = calloc((size_t)nraw + 1, sizeof *raw);
    if (!raw) return CF_ERR_NOMEM;
    int k = 0;
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &m->params[i];
        if (!p->present || !p->size) continue;
        if (!p->layered) {
            raw[k++] = (raw_seg){p->offset, p->size, flat_ready(m, i)};
            continue;
        }
        for (int b = 0; b < NB; b++)
            raw[k++] = (raw_seg){p->offset + (size_t)b * p->layer_stride, p->layer_stride,
                                 1 + (NB - 1 - b)};
    }
    qsort(raw, (size_t)nraw, sizeof *raw, raw_cmp);
    /* neighbours adjacent in memory and ready at the same stage become one (one transfer) */
    int nm = 0;
    for (int i = 0; i < nraw; i++) {
        if (nm && raw[nm - 1].ready == raw[i].ready && raw[nm - 1].off + raw[nm - 1].len == raw[i].off)
            raw[nm - 1].len += raw[i].len;
        else
            raw[nm++] = raw[i];
    }
    nraw = nm;
    /* split to at most cap elements */
    size_t nseg_max = 0;
    for (int i = 0; i < nraw; i++) nseg_max += (raw[i].len + cap - 1) / cap;
    out->segs = calloc(nseg_max + 1, sizeof *out->segs);
    out->buckets = calloc(nseg_max + 1, sizeof *out->buckets);
    int *seg_ready = calloc(nseg_max + 1, sizeof *seg_ready);
    if (!out->segs || !out->buckets || !seg_ready) {
        free(raw);
        free(seg_ready);
        cf_dist_plan_free(out);
        return CF_ERR_NOMEM;
    }
    int ns = 0;
    for (int i = 0; i < nraw; i++)
        for (size_t o = 0; o < raw[i].len; o += cap) {
            const size_t len = raw[i].len - o < cap ? raw[i].len - o : cap;
            out->segs[ns] = (cf_dist_seg){raw[i].off + o, len};
            seg_ready[ns++] = raw[i].ready;
        }
    free(raw);
    out->nseg = ns;
    /* greedy buckets in readiness order: close one when the next segment would overflow it */
    int nb = 0;
    size_t host = 0;
    for (int s = 0; s < ns; s++) {
        cf_dist_bucket *cur = nb ? &out->buckets[nb - 1] : NULL;
        if (!cur || cur->len + out->segs[s].len > cap) {
            cur = &out->buckets[nb++];
            *cur = (cf_dist_bucket){s, 0, host, 0, 0};
        }
        cur->nseg++;
        cur->len += out->segs[s].len;
        cur->ready = seg_ready[s]; /* segments are in readiness order: the last one decides */
        host += out->segs[s].len;
    }
    free(seg_ready);
    out->nbuckets = nb;
    out->nstages = NB + 2;
    out->total = host;
    if (host != m->num_params) {
        CF_ERROR("dist: the gradient buckets cover %zu of %zu parameters (the parameter table has "
                 "a row the bucket plan does not know)",
                 host, m->num_params);
        cf_dist_plan_free(out);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}

/* ---- devices ------------------------------------------------------------------------------- */

static int usable_for_auto(const cf_device_id *c, const cf_backend_options *opts) {
    const int gpu = c->device_type == CF_DEVICE_GPU || c->device_type == CF_DEVICE_INTEGRATED_GPU;
    if (strcmp(c->kind, "opencl") != 0 || (!gpu && !(opts && opts->auto_cpu_devices))) return 0;
    char why[256];
    /* a device whose cached verification failed is skipped, as --device auto does */
    return cf_verify_cached(opts ? opts->cache_dir : NULL, c, why, sizeof why) != 0;
}

int cf_dist_device(const char *spec, const cf_backend_options *opts, int rank, int local_rank,
                   int size, char *out, size_t n) {
    if (!spec || !*spec) spec = "auto";
    if (strchr(spec, ',')) {
        int count = 1;
        for (const char *p = spec; *p; p++) count += *p == ',';
        if (count < size) {
            CF_ERROR("--device %s names %d devices for %d ranks; give one device for all ranks "
                     "or one per rank",
                     spec, count, size);
            return CF_ERR_INVALID;
        }
        const char *p = spec;
        for (int i = 0; i < rank; i++) p = strchr(p, ',') + 1;
        const char *e = strchr(p, ',');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || len >= n) {
            CF_ERROR("--device %s: entry %d (rank %d) is %s", spec, rank, rank,
                     len ? "too long" : "empty");
            return CF_ERR_INVALID;
        }
        memcpy(out, p, len);
        out[len] = 0;
        return CF_OK;
    }
    if (size <= 1 || strcasecmp(spec, "auto") != 0) {
        if (strlen(spec) >= n) return CF_ERR_INVALID;
        memcpy(out, spec, strlen(spec) + 1);
        return CF_OK;
    }
    /* auto across ranks: no timing (each rank would time every device at once); GPUs of this node
     * in listing order, round-robin by local rank */
    cf_device_id *ids = NULL;
    int nid = 0, ngpu = 0;
    CF_TRY(cf_device_candidates(opts, &ids, &nid));
    for (int i = 0; i < nid; i++) ngpu += usable_for_auto(&ids[i], opts);
    const char *pick = "cpu";
    if (ngpu > 0) {
        if (local_rank >= ngpu && local_rank == ngpu)
            CF_WARN("device auto: this node runs more ranks than it has GPUs (%d); ranks share "
                    "GPUs round-robin",
                    ngpu);
        int want = local_rank % ngpu;
        for (int i = 0; i < nid; i++)
            if (usable_for_auto(&ids[i], opts) && want-- == 0) {
                pick = ids[i].spec;
                break;
            }
    }
    snprintf(out, n, "%s", pick);
    free(ids);
    return CF_OK;
}

/* ---- profile ------------------------------------------------------------------------------- */

void cf_dist_print_stats(FILE *f, const cf_dist_stats *s, int ranks) {
    if (s->steps <= 0) return;
    const double k = 1.0 / s->steps;
    const double hidden = s->comm_s > 0 ? 1.0 - s->exposed_s / s->comm_s : 0.0;
    fprintf(f,
            "gradient all-reduce over %d ranks (per step, %d steps): %.2f MB in %.1f buckets | "
            "in flight %.3f ms, of which %.3f ms after the backward (%.0f%% overlapped with the "
            "last micro-batch's %.3f ms forward + backward) | staging device<->host %.3f ms\n",
            ranks, s->steps, (double)s->bytes * k / 1e6, s->buckets * k, s->comm_s * k * 1e3,
            s->exposed_s * k * 1e3, 100.0 * (hidden < 0 ? 0 : hidden), s->backward_s * k * 1e3,
            s->staging_s * k * 1e3);
}
