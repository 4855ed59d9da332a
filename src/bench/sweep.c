/* clformer: micro-benchmarks: GFLOP/s of every GEMM shape of a training step (and a square sweep)
 * for each GEMM path of the device, and attention time and memory against sequence length. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backend/cpu/cpu_backend.h"
#include "bench/bench.h"
#include "model/gpt.h"

/* ---- shared helpers ---------------------------------------------------------------------------
 */

/* Upload n uniform values in [-scale, scale) (deterministic) to dst. */
static int fill_random(cf_backend *be, cf_view dst, size_t n, float scale, uint64_t seed) {
    float *h = malloc(n * sizeof *h);
    if (!h) return CF_ERR_NOMEM;
    cf_rng r;
    cf_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        h[i] = scale * (2.0f * cf_rng_uniform(&r) - 1.0f);
    int rc = cf_be_upload(be, dst, h, n * sizeof *h);
    free(h);
    return rc;
}

/* ---- GEMM sweep -------------------------------------------------------------------------------
 */

typedef struct {
    char name[32];
    int ta, tb, M, N, K, lda, ldb, ldc;
} gemm_shape;

typedef struct {
    const char *label;  /* column header */
    const char *device; /* backend spec */
    const char *gemm;   /* cf_backend_options.cpu_gemm (cpu) or .gemm: "native" / "clblast" */
    int force_tile;     /* cf_backend_options.gemm_tile: 8 or 16, 0 = the backend's choice */
    int cpu;            /* 1: a column of the C backend (gemm goes to cpu_gemm) */
    unsigned needs;     /* CF_GEMM_PATH_* the device must have (else the column is skipped) */
    int bf16;           /* cf_backend_options.bf16 (the CPU backend's bf16 GEMM) */
} gemm_variant;

static int add_shape(gemm_shape *s, int n, const char *name, int ta, int tb, int M, int N, int K) {
    gemm_shape *g = &s[n];
    snprintf(g->name, sizeof g->name, "%.31s", name);
    g->ta = ta;
    g->tb = tb;
    g->M = M;
    g->N = N;
    g->K = K;
    g->lda = ta ? M : K; /* A is (M,K), or stored (K,M) when transposed */
    g->ldb = tb ? K : N; /* B is (K,N), or stored (N,K) when transposed */
    g->ldc = N;
    return n + 1;
}

/* The GEMMs of one training step, from the model description (cf_model_gemm_shapes). */
static int config_shapes(const cf_config *c, gemm_shape *s, int n) {
    cf_gemm_shape g[CF_MAX_GEMM_SHAPES];
    const int ng = cf_model_gemm_shapes(c, c->batch_size, c->max_length, g);
    for (int i = 0; i < ng; i++)
        n = add_shape(s, n, g[i].name, g[i].ta, g[i].tb, g[i].M, g[i].N, g[i].K);
    return n;
}

/* Creates the backend of a variant with its GEMM path selected through the options. */
static int variant_backend(const gemm_variant *v, const cf_backend_options *base,
                           cf_backend **out) {
    cf_backend_options opts = base ? *base : cf_backend_options_default();
    opts.bf16 = v->bf16;
    if (v->cpu) {
        opts.cpu_gemm = v->gemm;
    } else {
        opts.gemm = v->gemm;
        opts.gemm_tile = v->force_tile;
    }
    return cf_backend_create(v->device, &opts, out);
}

/* GFLOP/s of one shape: one untimed call (kernel builds, first touch), then calls until
 * min_seconds have passed (at least two). */
static int time_gemm(cf_backend *be, const gemm_shape *g, cf_view A, cf_view Bv, cf_view C,
                     double min_seconds, double *gflops) {
    CF_TRY(cf_be_gemm(be, g->ta, g->tb, g->M, g->N, g->K, 1.0f, A, g->lda, Bv, g->ldb, 0.0f, C,
                      g->ldc));
    CF_TRY(cf_be_sync(be));
    int reps = 0;
    double t0 = cf_time_now(), t = 0.0;
    do {
        CF_TRY(cf_be_gemm(be, g->ta, g->tb, g->M, g->N, g->K, 1.0f, A, g->lda, Bv, g->ldb, 0.0f, C,
                          g->ldc));
        reps++;
        /* synchronise every call while calibrating, then in batches */
        if (reps < 4 || reps % 8 == 0) {
            CF_TRY(cf_be_sync(be));
            t = cf_time_now() - t0;
        }
    } while (t < min_seconds || reps < 2);
    CF_TRY(cf_be_sync(be));
    t = cf_time_now() - t0;
    *gflops = 2.0 * g->M * g->N * (double)g->K * reps / t / 1e9;
    return CF_OK;
}

int cf_bench_gemm_sweep(const cf_config *cfg, const cf_sweep_opts *o, FILE *out) {
    static const int default_sizes[] = {128, 256, 512, 1024, 2048, 0};
    const int *sizes = o->sizes ? o->sizes : default_sizes;
    const double min_s = o->min_seconds > 0 ? o->min_seconds : 0.2;
    gemm_shape shapes[64];
    int ns = 0;
    if (!o->skip_shapes) ns = config_shapes(cfg, shapes, ns);
    for (int i = 0; sizes[i] > 0 && ns < 64; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "square %d", sizes[i]);
        ns = add_shape(shapes, ns, nm, 0, 0, sizes[i], sizes[i], sizes[i]);
    }

    /* which device, and so which variants */
    cf_backend *probe = NULL;
    cf_backend_info pinfo, cinfo;
    CF_TRY(cf_backend_create(o->device, o->backend, &probe));
    char devname[640];
    snprintf(devname, sizeof devname, "%s", cf_be_name(probe));
    int rc = cf_be_info(probe, &pinfo);
    cf_backend_destroy(probe);
    CF_TRY(rc);
    CF_TRY(cf_backend_create("cpu", o->backend, &probe));
    rc = cf_be_info(probe, &cinfo);
    cf_backend_destroy(probe);
    CF_TRY(rc);
    /* a device with a tiled native kernel gets its own columns (forced tiles, its own choice,
     * CLBlast) next to the C backend's */
    const int tiled = (pinfo.gemm_paths & CF_GEMM_PATH_TILED) != 0;
    gemm_variant vars[8];
    int nv = 0;
    vars[nv++] = (gemm_variant){"cpu native", "cpu", "native", 0, 1, 0, 0};
    if (cinfo.gemm_paths & CF_GEMM_PATH_BLAS)
        vars[nv++] = (gemm_variant){"cpu blas", "cpu", "blas", 0, 1, CF_GEMM_PATH_BLAS, 0};
    /* precision bf16 on a CPU with AVX512-BF16 (inputs rounded to bf16, fp32 accumulation) */
    if (cf_cpu_gemm_bf16_available())
        vars[nv++] = (gemm_variant){"cpu bf16", "cpu", "native", 0, 1, 0, 1};
    if (tiled) {
        const char *dev = o->device ? o->device : "auto";
        vars[nv++] = (gemm_variant){"native 8x8", dev, "native", 8, 0, 0, 0};
        vars[nv++] = (gemm_variant){"native 16x16", dev, "native", 16, 0, 0, 0};
        vars[nv++] = (gemm_variant){"native auto", dev, "native", 0, 0, 0, 0};
        vars[nv++] = (gemm_variant){"clblast", dev, "clblast", 0, 0, CF_GEMM_PATH_CLBLAST, 0};
    }

    double *res = calloc((size_t)ns * nv, sizeof *res);     /* GFLOP/s, NAN = not run */
    char(*params)[48] = calloc((size_t)ns, sizeof *params); /* native auto's choice per shape */
    if (!res || !params) {
        free(res);
        free(params);
        return CF_ERR_NOMEM;
    }
    size_t maxA = 0, maxB = 0, maxC = 0;
    for (int i = 0; i < ns; i++) {
        const gemm_shape *g = &shapes[i];
        size_t a = (size_t)g->M * g->K, b = (size_t)g->K * g->N, c = (size_t)g->M * g->N;
        if (a > maxA) maxA = a;
        if (b > maxB) maxB = b;
        if (c > maxC) maxC = c;
    }
    rc = CF_OK;
    for (int v = 0; v < nv; v++) {
        for (int i = 0; i < ns; i++)
            res[(size_t)i * nv + v] = NAN;
        cf_backend *be = NULL;
        const unsigned have = vars[v].cpu ? cinfo.gemm_paths : pinfo.gemm_paths;
        if ((vars[v].needs & have) != vars[v].needs) {
            CF_WARN("gemm sweep: skipping '%s' on %s (this build or device does not have it)",
                    vars[v].label, vars[v].device);
            continue;
        }
        if (variant_backend(&vars[v], o->backend, &be) < 0) {
            CF_WARN("gemm sweep: skipping '%s' on %s (not available, see above)", vars[v].label,
                    vars[v].device);
            continue;
        }
        cf_buffer *A = NULL, *Bb = NULL, *C = NULL;
        if ((rc = cf_be_alloc(be, maxA * 4, &A)) < 0 || (rc = cf_be_alloc(be, maxB * 4, &Bb)) < 0 ||
            (rc = cf_be_alloc(be, maxC * 4, &C)) < 0 ||
            (rc = fill_random(be, cf_view_f32(A, 0), maxA, 1.0f, 1)) < 0 ||
            (rc = fill_random(be, cf_view_f32(Bb, 0), maxB, 1.0f, 2)) < 0) {
            cf_be_free(be, A);
            cf_be_free(be, Bb);
            cf_be_free(be, C);
            cf_backend_destroy(be);
            goto done;
        }
        for (int i = 0; i < ns; i++) {
            double gf = NAN;
            if ((rc = time_gemm(be, &shapes[i], cf_view_f32(A, 0), cf_view_f32(Bb, 0),
                                cf_view_f32(C, 0), min_s, &gf)) < 0)
                break;
            res[(size_t)i * nv + v] = gf;
            if (!o->json)
                CF_DEBUG("gemm sweep: %s %s: %.2f GFLOP/s", vars[v].label, shapes[i].name, gf);
            if (!vars[v].cpu && !vars[v].force_tile && !strcmp(vars[v].gemm, "native") &&
                be->ops->gemm_describe) {
                const gemm_shape *g = &shapes[i];
                if (be->ops->gemm_describe(be, g->M, g->N, g->K, g->ta, g->tb, params[i],
                                           sizeof params[i]) < 0)
                    params[i][0] = 0;
            }
        }
        cf_be_free(be, A);
        cf_be_free(be, Bb);
        cf_be_free(be, C);
        cf_backend_destroy(be);
        if (rc < 0) goto done;
    }

    if (o->json) {
        cJSON *root = cJSON_CreateObject(), *rows = NULL;
        cJSON_AddStringToObject(root, "config", cfg->name);
        cJSON_AddStringToObject(root, "device", devname);
        rows = cJSON_AddArrayToObject(root, "shapes");
        for (int i = 0; i < ns; i++) {
            const gemm_shape *g = &shapes[i];
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "name", g->name);
            cJSON_AddNumberToObject(r, "M", g->M);
            cJSON_AddNumberToObject(r, "N", g->N);
            cJSON_AddNumberToObject(r, "K", g->K);
            cJSON_AddNumberToObject(r, "ta", g->ta);
            cJSON_AddNumberToObject(r, "tb", g->tb);
            cJSON *gf = cJSON_AddObjectToObject(r, "gflops");
            for (int v = 0; v < nv; v++) {
                double x = res[(size_t)i * nv + v];
                if (isnan(x))
                    cJSON_AddNullToObject(gf, vars[v].label);
                else
                    cJSON_AddNumberToObject(gf, vars[v].label, x);
            }
            if (params[i][0]) cJSON_AddStringToObject(r, "native_auto_params", params[i]);
            cJSON_AddItemToArray(rows, r);
        }
        char *s = cJSON_PrintUnformatted(root);
        cJSON_Delete(root);
        if (s) fprintf(out, "%s\n", s);
        free(s);
    } else {
        fprintf(out, "GEMM GFLOP/s on %s, config %s (batch %d x %d = %d rows)\n", devname,
                cfg->name, cfg->batch_size, cfg->max_length, cfg->batch_size * cfg->max_length);
        fprintf(out, "%-16s %2s %2s %6s %6s %6s", "shape", "tA", "tB", "M", "N", "K");
        for (int v = 0; v < nv; v++)
            fprintf(out, " %12s", vars[v].label);
        if (tiled) fprintf(out, "  native auto chose");
        fprintf(out, "\n");
        for (int i = 0; i < ns; i++) {
            const gemm_shape *g = &shapes[i];
            fprintf(out, "%-16s %2d %2d %6d %6d %6d", g->name, g->ta, g->tb, g->M, g->N, g->K);
            for (int v = 0; v < nv; v++) {
                double x = res[(size_t)i * nv + v];
                if (isnan(x))
                    fprintf(out, " %12s", "-");
                else
                    fprintf(out, " %12.2f", x);
            }
            if (tiled) fprintf(out, "  %s", params[i]);
            fprintf(out, "\n");
        }
    }
    rc = CF_OK;
done:
    free(res);
    free(params);
    return rc;
}

/* ---- attention sweep ------------------------------------------------------------------------- */

typedef struct {
    int T;
    double fwd_ms, bwd_ms;
    uint64_t att_bytes;   /* the three (B,NH,T,T) buffers: probabilities + two backward scratch */
    uint64_t total_bytes; /* every buffer the two ops touch */
    int matrix_failed;    /* the matrix path could not allocate its buffers at this T */
    /* flash attention (flash_forward / flash_backward): the same attention, no (T,T) buffer */
    double flash_fwd_ms, flash_bwd_ms;
    uint64_t flash_total_bytes; /* qkv, out, lse, dqkv, delta, dout, the backend's flash scratch */
} att_row;

/* Time flash_forward and flash_backward at (B, T) with NH heads of C / NH, window W. */
static int time_flash(cf_backend *be, int B, int T, int C, int NH, int W, double min_s,
                      att_row *row) {
    const size_t btc = (size_t)B * T * C, bnt = (size_t)B * NH * T;
    cf_buffer *qkv = NULL, *outb = NULL, *lse = NULL, *dqkv = NULL, *delta = NULL, *dout = NULL;
    const uint64_t before = be->stats.bytes_allocated;
    const cf_attn_desc d = {B, T, NH, NH, C / NH, W};
    int rc;
    if ((rc = cf_be_alloc(be, 3 * btc * 4, &qkv)) < 0 || (rc = cf_be_alloc(be, btc * 4, &outb)) < 0 ||
        (rc = cf_be_alloc(be, bnt * 4, &lse)) < 0 ||
        (rc = cf_be_alloc(be, 3 * btc * 4, &dqkv)) < 0 ||
        (rc = cf_be_alloc(be, bnt * 4, &delta)) < 0 || (rc = cf_be_alloc(be, btc * 4, &dout)) < 0)
        goto done;
    row->flash_total_bytes = be->stats.bytes_allocated - before;
    if ((rc = fill_random(be, cf_view_f32(qkv, 0), 3 * btc, 1.0f, 11)) < 0 ||
        (rc = fill_random(be, cf_view_f32(dout, 0), btc, 1.0f, 12)) < 0)
        goto done;
    for (int fwd = 1; fwd >= 0; fwd--) {
        int reps = 0;
        double t0 = 0.0, t = 0.0;
        for (int i = -1; i < 0 || t < min_s || reps < 2; i++) {
            if (fwd)
                rc = cf_be_flash_forward(be, &d, cf_view_f32(outb, 0), cf_view_f32(lse, 0),
                                         cf_view_f32(qkv, 0), CF_VIEW_NULL);
            else
                rc = cf_be_flash_backward(be, &d, cf_view_f32(dqkv, 0), cf_view_f32(delta, 0),
                                          cf_view_f32(dout, 0), cf_view_f32(outb, 0),
                                          cf_view_f32(lse, 0), cf_view_f32(qkv, 0), CF_VIEW_NULL);
            if (rc < 0 || (rc = cf_be_sync(be)) < 0) goto done;
            if (i < 0) { /* the first call is untimed (kernel build, first touch) */
                t0 = cf_time_now();
                continue;
            }
            reps++;
            t = cf_time_now() - t0;
        }
        *(fwd ? &row->flash_fwd_ms : &row->flash_bwd_ms) = t / reps * 1e3;
    }
    /* and the (T,T) scratch the backend's flash backward used for this shape (OpenCL's matrix
     * backward; not what an earlier row left allocated) */
    cf_backend_info info;
    if (cf_be_info(be, &info) == CF_OK) row->flash_total_bytes += info.flash_scratch_last;
done:
    cf_be_free(be, qkv);
    cf_be_free(be, outb);
    cf_be_free(be, lse);
    cf_be_free(be, dqkv);
    cf_be_free(be, delta);
    cf_be_free(be, dout);
    return rc;
}

static int time_op_ms(cf_backend *be, int fwd, cf_view out, cf_view att, cf_view qkv, cf_view dqkv,
                      cf_view datt, cf_view dpre, cf_view dout, int B, int T, int C, int NH,
                      double min_s, double *ms) {
    int reps = 0;
    double t0 = 0.0, t = 0.0;
    for (int i = -1; i < 0 || t < min_s || reps < 2; i++) {
        if (fwd)
            CF_TRY(cf_be_attention_forward(be, out, att, qkv, B, T, NH, NH, C / NH));
        else
            CF_TRY(cf_be_attention_backward(be, dqkv, datt, dpre, dout, qkv, att, B, T, NH, NH,
                                                    C / NH));
        CF_TRY(cf_be_sync(be));
        if (i < 0) { /* the first call is untimed (kernel build, first touch) */
            t0 = cf_time_now();
            continue;
        }
        reps++;
        t = cf_time_now() - t0;
    }
    *ms = t / reps * 1e3;
    return CF_OK;
}

/* Bytes the sweep may allocate for the matrix path's buffers: the device's memory where it has
 * its own, and half of the host's free memory where buffers live in host memory (the C backend,
 * CPU and unified OpenCL devices), so a (B,NH,T,T) buffer larger than what is free is reported
 * as not fitting instead of being overcommitted and touched until the kernel's OOM killer ends
 * the process. 0 = no limit known. */
static uint64_t matrix_budget(cf_backend *be) {
    cf_backend_info info;
    if (cf_be_info(be, &info) < 0) return 0;
    if (info.global_mem > 0 && !info.unified_memory && !info.host_threads) return info.global_mem;
    const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return info.global_mem;
    const uint64_t half_free = (uint64_t)pages * (uint64_t)page / 2;
    return info.global_mem > 0 && info.global_mem < half_free ? info.global_mem : half_free;
}

int cf_bench_attention_sweep(const cf_config *cfg, const cf_sweep_opts *o, FILE *out) {
    static const int default_T[] = {64, 128, 256, 512, 1024, 0};
    const int *Ts = o->sizes ? o->sizes : default_T;
    const int B = o->batch > 0 ? o->batch : 4, C = cfg->d_model, NH = cfg->num_heads;
    const double min_s = o->min_seconds > 0 ? o->min_seconds : 0.2;
    if (NH <= 0 || C % NH != 0) {
        CF_ERROR("attention sweep: d_model (%d) must be divisible by num_heads (%d)", C, NH);
        return CF_ERR_INVALID;
    }
    int nT = 0;
    while (Ts[nT] > 0)
        nT++;
    att_row *rows = calloc((size_t)(nT ? nT : 1), sizeof *rows);
    if (!rows) return CF_ERR_NOMEM;
    cf_backend *be = NULL;
    int rc = cf_backend_create(o->device, o->backend, &be);
    if (rc < 0) {
        free(rows);
        return rc;
    }
    for (int k = 0; k < nT; k++) {
        const int T = Ts[k];
        const size_t btc = (size_t)B * T * C, bntt = (size_t)B * NH * T * T;
        cf_buffer *qkv = NULL, *outb = NULL, *att = NULL, *dqkv = NULL, *datt = NULL, *dpre = NULL,
                  *dout = NULL;
        rows[k].T = T;
        rows[k].att_bytes = 3 * (uint64_t)bntt * 4;
        const uint64_t before = be->stats.bytes_allocated;
        const uint64_t budget = matrix_budget(be), need = (3 * (uint64_t)bntt + 8 * btc) * 4;
        if (budget > 0 && need > budget) {
            CF_WARN("attention sweep: T=%d: the matrix path needs %.1f MiB, more than the %.1f "
                    "MiB %s can spare; flash only",
                    T, need / 1048576.0, budget / 1048576.0, cf_be_name(be));
            rows[k].matrix_failed = 1;
            goto next;
        }
        if ((rc = cf_be_alloc(be, 3 * btc * 4, &qkv)) < 0 ||
            (rc = cf_be_alloc(be, btc * 4, &outb)) < 0 ||
            (rc = cf_be_alloc(be, bntt * 4, &att)) < 0 ||
            (rc = cf_be_alloc(be, 3 * btc * 4, &dqkv)) < 0 ||
            (rc = cf_be_alloc(be, bntt * 4, &datt)) < 0 ||
            (rc = cf_be_alloc(be, bntt * 4, &dpre)) < 0 ||
            (rc = cf_be_alloc(be, btc * 4, &dout)) < 0) {
            /* the (T,T) buffers do not fit: the matrix path cannot run here, flash still can */
            if (rc == CF_ERR_NOMEM) {
                CF_WARN("attention sweep: T=%d: the matrix path's %.1f MiB of (B,NH,T,T) buffers "
                        "do not fit on %s; flash only",
                        T, 3.0 * bntt * 4 / 1048576.0, cf_be_name(be));
                rows[k].matrix_failed = 1;
                rc = CF_OK;
            }
            goto next;
        }
        rows[k].total_bytes = be->stats.bytes_allocated - before;
        if ((rc = fill_random(be, cf_view_f32(qkv, 0), 3 * btc, 1.0f, 11)) < 0 ||
            (rc = fill_random(be, cf_view_f32(dout, 0), btc, 1.0f, 12)) < 0 ||
            (rc = cf_be_fill(be, cf_view_f32(dqkv, 0), 0.0f, 3 * btc)) < 0)
            goto next;
        if ((rc = time_op_ms(be, 1, cf_view_f32(outb, 0), cf_view_f32(att, 0), cf_view_f32(qkv, 0),
                             cf_view_f32(dqkv, 0), cf_view_f32(datt, 0), cf_view_f32(dpre, 0),
                             cf_view_f32(dout, 0), B, T, C, NH, min_s, &rows[k].fwd_ms)) < 0)
            goto next;
        rc = time_op_ms(be, 0, cf_view_f32(outb, 0), cf_view_f32(att, 0), cf_view_f32(qkv, 0),
                        cf_view_f32(dqkv, 0), cf_view_f32(datt, 0), cf_view_f32(dpre, 0),
                        cf_view_f32(dout, 0), B, T, C, NH, min_s, &rows[k].bwd_ms);
    next:
        cf_be_free(be, qkv);
        cf_be_free(be, outb);
        cf_be_free(be, att);
        cf_be_free(be, dqkv);
        cf_be_free(be, datt);
        cf_be_free(be, dpre);
        cf_be_free(be, dout);
        if (rc >= 0 && cf_be_has_flash(be))
            rc = time_flash(be, B, T, C, NH, cfg->attention_window, min_s, &rows[k]);
        if (rc < 0) {
            CF_ERROR("attention sweep: T=%d failed on %s (%s)", T, cf_be_name(be),
                     cf_status_str(rc));
            nT = k;
            break;
        }
    }
    char devname[640];
    snprintf(devname, sizeof devname, "%s", cf_be_name(be));
    cf_backend_destroy(be);
    /* causal FLOPs: QK^T and AV over the t2 <= t half, 2 FLOPs per multiply-add */
    if (o->json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "device", devname);
        cJSON_AddNumberToObject(root, "batch", B);
        cJSON_AddNumberToObject(root, "d_model", C);
        cJSON_AddNumberToObject(root, "num_heads", NH);
        cJSON *arr = cJSON_AddArrayToObject(root, "rows");
        for (int k = 0; k < nT; k++) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddNumberToObject(r, "T", rows[k].T);
            cJSON_AddNumberToObject(r, "forward_ms", rows[k].fwd_ms);
            cJSON_AddNumberToObject(r, "backward_ms", rows[k].bwd_ms);
            cJSON_AddNumberToObject(r, "att_bytes", (double)rows[k].att_bytes);
            cJSON_AddNumberToObject(r, "total_bytes", (double)rows[k].total_bytes);
            cJSON_AddBoolToObject(r, "matrix_ran", !rows[k].matrix_failed);
            cJSON_AddNumberToObject(r, "flash_forward_ms", rows[k].flash_fwd_ms);
            cJSON_AddNumberToObject(r, "flash_backward_ms", rows[k].flash_bwd_ms);
            cJSON_AddNumberToObject(r, "flash_total_bytes", (double)rows[k].flash_total_bytes);
            cJSON_AddItemToArray(arr, r);
        }
        char *s = cJSON_PrintUnformatted(root);
        cJSON_Delete(root);
        if (s) fprintf(out, "%s\n", s);
        free(s);
    } else {
        fprintf(out,
                "attention on %s: batch %d, d_model %d, %d heads (x = growth over the "
                "previous T)\n",
                devname, B, C, NH);
        fprintf(out, "%6s %11s %7s %11s %7s %10s %13s %7s %11s | %11s %11s %11s\n", "T",
                "fwd ms", "x", "bwd ms", "x", "fwd GF/s", "(B,NH,T,T)MiB", "x", "total MiB",
                "flash fwd", "flash bwd", "flash MiB");
        for (int k = 0; k < nT; k++) {
            const att_row *r = &rows[k], *p = k > 0 ? &rows[k - 1] : NULL;
            const double fl = 2.0 * B * (double)r->T * r->T * C; /* causal forward FLOPs */
            char gx[16] = "", bx[16] = "", mx[16] = "";
            if (p) {
                snprintf(gx, sizeof gx, "%.2f", r->fwd_ms / p->fwd_ms);
                snprintf(bx, sizeof bx, "%.2f", r->bwd_ms / p->bwd_ms);
                snprintf(mx, sizeof mx, "%.2f", (double)r->att_bytes / p->att_bytes);
            }
            if (r->matrix_failed)
                fprintf(out, "%6d %11s %7s %11s %7s %10s %13.1f %7s %11s", r->T, "OOM", "", "OOM",
                        "", "", r->att_bytes / 1048576.0, mx, "");
            else
                fprintf(out, "%6d %11.3f %7s %11.3f %7s %10.2f %13.1f %7s %11.1f", r->T,
                        r->fwd_ms, gx, r->bwd_ms, bx, fl / (r->fwd_ms / 1e3) / 1e9,
                        r->att_bytes / 1048576.0, mx, r->total_bytes / 1048576.0);
            fprintf(out, " | %11.3f %11.3f %11.1f\n", r->flash_fwd_ms, r->flash_bwd_ms,
                    r->flash_total_bytes / 1048576.0);
        }
    }
    free(rows);
    return rc < 0 ? rc : CF_OK;
}
