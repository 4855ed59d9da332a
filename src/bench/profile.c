/* clformer: the --profile report (time by category and phase, then by layer and op) and the
 * Chrome trace-event file, both built from the events the backend wrappers record. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bench/bench.h"

static const char *const CAT_NAMES[CF_CAT_COUNT] = {
    "gemm",      "attention", "norm",      "activation",  "loss",
    "optimizer", "transfer",  "embedding", "elementwise",
};

const char *cf_prof_cat_name(int cat) {
    return cat >= 0 && cat < CF_CAT_COUNT ? CAT_NAMES[cat] : "?";
}

const char *cf_prof_phase_short(int phase) {
    switch (phase) {
    case CF_PHASE_FORWARD: return "fwd";
    case CF_PHASE_BACKWARD: return "bwd";
    case CF_PHASE_OPTIMIZER: return "opt";
    case CF_PHASE_TRANSFER: return "xfer";
    default: return "other";
    }
}

int cf_prof_category(const cf_prof_event *e) {
    const char *op = e->op ? e->op : "";
    if (e->phase == CF_PHASE_TRANSFER || !strcmp(op, "upload") || !strcmp(op, "download"))
        return CF_CAT_TRANSFER;
    if (e->phase == CF_PHASE_OPTIMIZER) return CF_CAT_OPTIMIZER;
    if (!strcmp(op, "gemm") || !strcmp(op, "gemm_q8") || !strcmp(op, "add_bias") ||
        !strcmp(op, "bias_backward") || !strcmp(op, "weight_bias_backward"))
        return CF_CAT_GEMM;
    /* the matrix ops, the flash kernels, and generation's attention over the KV cache */
    if (!strncmp(op, "attention", 9) || !strncmp(op, "flash_", 6) ||
        !strcmp(op, "decode_attention") || !strcmp(op, "kv_append"))
        return CF_CAT_ATTENTION;
    if (!strncmp(op, "layernorm", 9) || !strncmp(op, "rmsnorm", 7)) return CF_CAT_NORM;
    if (!strncmp(op, "act_", 4) || !strncmp(op, "swiglu", 6)) return CF_CAT_ACTIVATION;
    if (!strcmp(op, "rope")) return CF_CAT_ATTENTION; /* positions enter through q and k */
    if (!strncmp(op, "crossentropy", 12)) return CF_CAT_LOSS;
    /* the loss sum is the only reduction outside the optimizer phase */
    if (!strcmp(op, "reduce_sum")) return CF_CAT_LOSS;
    if (!strcmp(op, "adamw")) return CF_CAT_OPTIMIZER;
    if (!strncmp(op, "encoder", 7) || !strcmp(op, "embed_q8")) return CF_CAT_EMBEDDING;
    return CF_CAT_ELEMENTWISE;
}

double cf_prof_now_us(const cf_backend *be) {
    return (cf_time_now() - be->prof.t0) * 1e6;
}

double cf_prof_summary(const cf_backend *be, int nsteps, double *ms_per_cat, double *gemm_gflop,
                       double *gemm_ms) {
    const cf_profiler *p = &be->prof;
    for (int c = 0; c < CF_CAT_COUNT; c++)
        ms_per_cat[c] = 0.0;
    double total = 0.0, flops = 0.0, fms = 0.0;
    for (size_t i = 0; i < p->n; i++) {
        const double ms = p->events[i].dur_us / 1e3;
        ms_per_cat[cf_prof_category(&p->events[i])] += ms;
        total += ms;
        if (p->events[i].flops > 0) {
            flops += p->events[i].flops;
            fms += ms;
        }
    }
    const double d = nsteps > 0 ? nsteps : 1;
    if (gemm_gflop) *gemm_gflop = flops / 1e9 / d;
    if (gemm_ms) *gemm_ms = fms / d;
    for (int c = 0; c < CF_CAT_COUNT; c++)
        ms_per_cat[c] /= d;
    return total / d;
}

/* One row of the per-op table: (layer, phase, op). */
typedef struct {
    int layer, phase;
    const char *op;
    long calls;
    double us, flops;
} prof_row;

static int row_cmp(const void *a, const void *b) {
    const prof_row *x = a, *y = b;
    /* model-level ops (layer -1) first, then the layers in order; forward before backward; the
     * most expensive op first within a (layer, phase) */
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    if (x->phase != y->phase) return x->phase < y->phase ? -1 : 1;
    if (x->us != y->us) return x->us > y->us ? -1 : 1;
    return strcmp(x->op, y->op);
}

static void scope_name(char *buf, size_t n, int layer) {
    if (layer < 0)
        snprintf(buf, n, "model");
    else
        snprintf(buf, n, "L%d", layer);
}

void cf_prof_print(FILE *out, const cf_backend *be, int nsteps) {
    const cf_profiler *p = &be->prof;
    const double d = nsteps > 0 ? nsteps : 1;
    if (p->n == 0) {
        fprintf(out, "profile: no ops were recorded\n");
        return;
    }
    const char *source =
        be->ops->prof_collect ? "device profiling events" : "host timers around a synchronize";
    /* category x phase matrix, ms */
    double m[CF_CAT_COUNT][5];
    memset(m, 0, sizeof m);
    double total = 0.0;
    for (size_t i = 0; i < p->n; i++) {
        const cf_prof_event *e = &p->events[i];
        int ph = e->phase >= 0 && e->phase <= CF_PHASE_OTHER ? e->phase : CF_PHASE_OTHER;
        m[cf_prof_category(e)][ph] += e->dur_us / 1e3;
        total += e->dur_us / 1e3;
    }
    double cat_ms[CF_CAT_COUNT], gemm_gflop = 0.0, gemm_ms = 0.0; /* per step */
    cf_prof_summary(be, nsteps, cat_ms, &gemm_gflop, &gemm_ms);
    fprintf(out, "profile of %d step%s on %s: %zu ops, %.2f ms of op time per step (%s)\n", nsteps,
            nsteps == 1 ? "" : "s", cf_be_name((cf_backend *)be), p->n, total / d, source);
    fprintf(out, "\nwhere the time goes (ms per step)\n");
    fprintf(out, "%-12s %10s %10s %10s %10s %10s %7s\n", "category", "forward", "backward",
            "optimizer", "transfer", "total", "share");
    for (int c = 0; c < CF_CAT_COUNT; c++) {
        double row = 0.0;
        for (int ph = 0; ph < 5; ph++)
            row += m[c][ph];
        if (row == 0.0) continue;
        fprintf(out, "%-12s %10.3f %10.3f %10.3f %10.3f %10.3f %6.1f%%\n", CAT_NAMES[c],
                m[c][0] / d, m[c][1] / d, m[c][2] / d, (m[c][3] + m[c][4]) / d, row / d,
                total > 0 ? 100.0 * row / total : 0.0);
    }
    double col[5] = {0};
    for (int c = 0; c < CF_CAT_COUNT; c++)
        for (int ph = 0; ph < 5; ph++)
            col[ph] += m[c][ph];
    fprintf(out, "%-12s %10.3f %10.3f %10.3f %10.3f %10.3f %6.1f%%\n", "total", col[0] / d,
            col[1] / d, col[2] / d, (col[3] + col[4]) / d, total / d, 100.0);
    if (gemm_ms > 0)
        fprintf(out, "GEMMs: %.2f GFLOP per step in %.3f ms: %.2f TFLOP/s\n", gemm_gflop, gemm_ms,
                gemm_gflop / gemm_ms);

    /* per (layer, phase, op) */
    size_t nrows = 0, cap = 64;
    prof_row *rows = malloc(cap * sizeof *rows);
    if (!rows) return;
    for (size_t i = 0; i < p->n; i++) {
        const cf_prof_event *e = &p->events[i];
        size_t j = 0;
        for (; j < nrows; j++)
            if (rows[j].layer == e->layer && rows[j].phase == e->phase &&
                strcmp(rows[j].op, e->op) == 0)
                break;
        if (j == nrows) {
            if (nrows == cap) {
                prof_row *r = realloc(rows, 2 * cap * sizeof *rows);
                if (!r) {
                    free(rows);
                    return;
                }
                rows = r;
                cap *= 2;
            }
            rows[nrows].layer = e->layer;
            rows[nrows].phase = e->phase;
            rows[nrows].op = e->op;
            rows[nrows].calls = 0;
            rows[nrows].us = 0.0;
            rows[nrows].flops = 0.0;
            nrows++;
        }
        rows[j].calls++;
        rows[j].us += e->dur_us;
        rows[j].flops += e->flops;
    }
    qsort(rows, nrows, sizeof *rows, row_cmp);
    fprintf(out, "\nper layer and op (ms per step; model = embedding, final norm, head, loss, "
                 "optimizer, transfers)\n");
    fprintf(out, "%-6s %-5s %-20s %-12s %9s %10s %7s %9s\n", "layer", "phase", "op", "category",
            "calls", "ms/step", "share", "TFLOP/s");
    for (size_t j = 0; j < nrows; j++) {
        char sc[16];
        scope_name(sc, sizeof sc, rows[j].layer);
        cf_prof_event probe = {rows[j].op, rows[j].layer, rows[j].phase, 0, 0, 0, 0};
        char rate[24] = "";
        if (rows[j].flops > 0 && rows[j].us > 0)
            snprintf(rate, sizeof rate, "%9.2f", rows[j].flops / (rows[j].us * 1e6));
        fprintf(out, "%-6s %-5s %-20s %-12s %9.1f %10.3f %6.1f%% %s\n", sc,
                cf_prof_phase_short(rows[j].phase), rows[j].op, CAT_NAMES[cf_prof_category(&probe)],
                rows[j].calls / d, rows[j].us / 1e3 / d,
                total > 0 ? 100.0 * rows[j].us / 1e3 / total : 0.0, rate);
    }
    /* layer totals: forward and backward side by side */
    int max_layer = -1;
    for (size_t j = 0; j < nrows; j++)
        if (rows[j].layer > max_layer) max_layer = rows[j].layer;
    fprintf(out, "\nper layer (ms per step)\n%-6s %10s %10s %10s %7s\n", "layer", "forward",
            "backward", "total", "share");
    for (int l = -1; l <= max_layer; l++) {
        double f = 0.0, b = 0.0, o = 0.0;
        for (size_t j = 0; j < nrows; j++) {
            if (rows[j].layer != l) continue;
            if (rows[j].phase == CF_PHASE_FORWARD)
                f += rows[j].us;
            else if (rows[j].phase == CF_PHASE_BACKWARD)
                b += rows[j].us;
            else
                o += rows[j].us;
        }
        char sc[16];
        scope_name(sc, sizeof sc, l);
        const double t = f + b + o;
        fprintf(out, "%-6s %10.3f %10.3f %10.3f %6.1f%%\n", sc, f / 1e3 / d, b / 1e3 / d,
                t / 1e3 / d, total > 0 ? 100.0 * t / 1e3 / total : 0.0);
    }
    free(rows);
}

/* ---- Chrome trace ---------------------------------------------------------------------------- */

/* Track ids: 1 = steps (host), 2 = the device queue (or the CPU backend's thread team). */
enum { TRACK_STEPS = 1, TRACK_QUEUE = 2 };

static cJSON *meta_event(const char *what, int tid, const char *name) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", what);
    cJSON_AddStringToObject(e, "ph", "M");
    cJSON_AddNumberToObject(e, "pid", 1);
    if (tid >= 0) cJSON_AddNumberToObject(e, "tid", tid);
    cJSON *a = cJSON_AddObjectToObject(e, "args");
    cJSON_AddStringToObject(a, "name", name);
    return e;
}

static cJSON *x_event(const char *name, const char *cat, int tid, double ts, double dur) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", name);
    cJSON_AddStringToObject(e, "cat", cat);
    cJSON_AddStringToObject(e, "ph", "X");
    cJSON_AddNumberToObject(e, "pid", 1);
    cJSON_AddNumberToObject(e, "tid", tid);
    /* microseconds, rounded to ns so files stay small */
    cJSON_AddNumberToObject(e, "ts", round(ts * 1e3) / 1e3);
    cJSON_AddNumberToObject(e, "dur", round(dur * 1e3) / 1e3);
    return e;
}

int cf_prof_write_trace(const char *path, const cf_backend *be, const char *process_name,
                        const cf_trace_span *steps, int nsteps) {
    const cf_profiler *p = &be->prof;
    cJSON *root = cJSON_CreateObject();
    if (!root) return CF_ERR_NOMEM;
    cJSON *ev = cJSON_AddArrayToObject(root, "traceEvents");
    cJSON_AddStringToObject(root, "displayTimeUnit", "ms");
    char qname[700];
    cf_backend_info info;
    int host = cf_be_info((cf_backend *)be, &info) == CF_OK && info.host_threads;
    snprintf(qname, sizeof qname, "%s %s", host ? "cpu backend:" : "device queue:",
             cf_be_name((cf_backend *)be));
    cJSON_AddItemToArray(ev,
                         meta_event("process_name", -1, process_name ? process_name : "clformer"));
    cJSON_AddItemToArray(ev, meta_event("thread_name", TRACK_STEPS, "steps (host)"));
    cJSON_AddItemToArray(ev, meta_event("thread_name", TRACK_QUEUE, qname));
    for (int s = 0; s < nsteps && steps; s++) {
        char nm[32];
        snprintf(nm, sizeof nm, "step %d", s + 1);
        cJSON_AddItemToArray(ev, x_event(nm, "step", TRACK_STEPS, steps[s].start_us,
                                         steps[s].dur_us > 0 ? steps[s].dur_us : 0.0));
    }
    /* Ops run one after another while profiled; a device duration can exceed the host gap to
     * the next op by timer noise, so each event starts no earlier than the previous one ended
     * (events on a track must not overlap unless nested). */
    double prev_end = -INFINITY;
    for (size_t i = 0; i < p->n; i++) {
        const cf_prof_event *e = &p->events[i];
        char nm[96], sc[16];
        scope_name(sc, sizeof sc, e->layer);
        snprintf(nm, sizeof nm, "%s.%s.%s", sc, cf_prof_phase_short(e->phase), e->op);
        double ts = e->start_us > prev_end ? e->start_us : prev_end;
        double dur = e->dur_us > 0 ? e->dur_us : 0.0;
        cJSON *x = x_event(nm, CAT_NAMES[cf_prof_category(e)], TRACK_QUEUE, ts, dur);
        cJSON *a = cJSON_AddObjectToObject(x, "args");
        cJSON_AddStringToObject(a, "op", e->op);
        cJSON_AddNumberToObject(a, "layer", e->layer);
        cJSON_AddStringToObject(a, "phase", cf_prof_phase_short(e->phase));
        if (e->bytes) cJSON_AddNumberToObject(a, "bytes", (double)e->bytes);
        cJSON_AddItemToArray(ev, x);
        prev_end = ts + dur;
    }
    char *txt = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!txt) return CF_ERR_NOMEM;
    int rc = cf_write_file_atomic(path, txt, strlen(txt));
    free(txt);
    return rc; /* cf_write_file_atomic has said why */
}
