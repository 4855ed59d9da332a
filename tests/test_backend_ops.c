/* clformer test: every op of struct cf_backend_ops, table-driven (after ggml's test-backend-ops).
 * One row per op (src/backend/op_cases.c, the table `clformer devices --verify` runs too): how to
 * build its random inputs for a shape case, how to run it through the cf_be_* wrappers, which of
 * its tensors are outputs. Every case runs on every backend under test and its
 * outputs are compared with the CPU backend's:
 *   err  = max|a - ref| / (max|ref| + 1e-20)     (normalised maximum error, must be <= the row's tol)
 *   nmse = sum (a - ref)^2 / (sum ref^2 + 1e-20)  (ggml's NMSE, must be <= min(tol, 1e-7))
 * Tensors sit at an offset inside guard elements that must come back untouched; assigned outputs
 * start as NaN (an element left unwritten shows); outputs must be finite.
 *
 * --grad checks each backward op on the CPU backend against central finite differences of its
 * forward op (loss = sum(out * dout)), which double-checks the oracle the comparison relies on.
 *
 *   test_backend_ops [--grad | --cross] [--only OP[,OP...]] [--small] [SPEC...]
 * --only runs the rows whose name contains one of the comma-separated OPs; --small only the cases
 * whose tensors have at most SMALL_MAX elements each (for device simulators such as oclgrind).
 * SPECs (or CF_TEST_BACKENDS, comma-separated) name the backends to compare with the CPU backend
 * ("cpu", "opencl", "opencl:P:D", a device-name substring); default: "cpu" and every usable OpenCL
 * device. Without --grad/--cross both parts run. Exit 0: all ran and passed; 1: a failure; 77:
 * nothing failed but a part asked for could not run (no OpenCL device; CF_REQUIRE_OPENCL=1 makes
 * that a failure). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* setenv */
#endif
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_ops_common.h"
#include "backend/op_cases.h"
#include "cli/cli_env.h"

#define PAD CF_OPCASE_PAD
#define GUARD CF_OPCASE_GUARD
#define MAXT CF_OPCASE_MAXT
#define T_IN CF_OPT_IN
#define T_OUT CF_OPT_OUT
#define T_INT CF_OPT_INT
#define T_ACC CF_OPT_ACC
#define T_LOSS CF_OPT_LOSS
#define CE_DLOSS CF_OPCASE_DLOSS
#define SKIP_CODE 77

/* The only place a backend is created from a spec. */
static int open_backend(const char *spec, cf_backend **out) {
    static cf_backend_options o; /* the environment's options, as the CLI reads them */
    cf_cli_backend_options_from_env(&o);
    return cf_backend_create(spec, &o, out);
}

/* ---- the op case table (src/backend/op_cases.c) ---------------------------------------------- */

typedef cf_opcase tcase;
typedef cf_optensor tensor;
typedef cf_oprow oprow;
static const oprow *ROWS;
static int NROWS;
#define find_row cf_oprow_find
#define find_t cf_opcase_find
#define make_case cf_opcase_make
#define run_case cf_opcase_run
#define free_outs cf_opcase_free_outs
#define free_case cf_opcase_free
#define feed_from_forward cf_opcase_feed_from_forward
#define case_param cf_opcase_param
#define case_label cf_opcase_label

/* ---- cross-backend comparison ---------------------------------------------------------------- */

static int g_fails = 0, g_checks = 0;
static const char *g_only = NULL;
static int g_small = 0;
#define SMALL_MAX 32768 /* --small: elements of a case's largest tensor */

/* --only: the row's name contains one of g_only's comma-separated parts */
static int row_selected(const oprow *r) {
    if (!g_only) return 1;
    for (const char *s = g_only; *s;) {
        size_t w = strcspn(s, ",");
        for (const char *o = r->op; w && *o; o++)
            if (!strncmp(o, s, w)) return 1;
        s += w;
        if (*s == ',') s++;
    }
    return 0;
}
/* --small: every tensor of the case is at most SMALL_MAX elements */
static int case_selected(const tcase *c) {
    for (int i = 0; g_small && i < c->nt; i++)
        if (c->t[i].n > SMALL_MAX) return 0;
    return 1;
}

static int run_cross(cf_backend *cpu, cf_backend **bes, char **specs, int nbe) {
    for (int ri = 0; ri < NROWS; ri++) {
        const oprow *r = &ROWS[ri];
        if (!row_selected(r)) continue;
        for (int ci = 0; ci < r->ncases; ci++) {
            tcase c;
            make_case(r, ci, 0, &c);
            if (!case_selected(&c)) {
                free_case(&c);
                continue;
            }
            char label[128];
            case_label(r, &c, label, sizeof label);
            float *ref[MAXT] = {0};
            int rc = feed_from_forward(cpu, r, ci, &c);
            if (rc == CF_OK) rc = run_case(cpu, r, &c, ref);
            if (rc != CF_OK) {
                printf("FAIL %-38s %-26s cpu (reference): the op returned %d (%s)\n", r->op, label,
                       rc, cf_status_str(rc));
                g_fails++, g_checks++;
                free_outs(ref, MAXT);
                free_case(&c);
                continue;
            }
            double tol = cf_opcase_tol(r, &c);
            double nmse_tol = tol < 1e-7 ? tol : 1e-7;
            for (int bi = 0; bi < nbe; bi++) {
                float *got[MAXT] = {0};
                cf_opcmp res;
                rc = run_case(bes[bi], r, &c, got);
                g_checks++;
                if (rc != CF_OK) {
                    printf("FAIL %-38s %-26s %s: the op returned %d (%s)\n", r->op, label, specs[bi],
                           rc, cf_status_str(rc));
                    g_fails++;
                } else {
                    cf_opcase_compare(&c, got, ref, &res);
                    int ok = !res.problem && res.err <= tol && res.nmse <= nmse_tol;
                    if (!ok) g_fails++;
                    printf("%s %-38s %-26s %s: err %.2e (%s) nmse %.2e tol %.0e%s%s\n",
                           ok ? "PASS" : "FAIL", r->op, label, specs[bi], res.err,
                           res.worst ? res.worst : "-", res.nmse, tol, res.problem ? "  " : "",
                           res.problem ? res.problem : "");
                }
                free_outs(got, MAXT);
            }
            free_outs(ref, MAXT);
            free_case(&c);
        }
    }
    return 0;
}

/* ---- gradient mode: backward against central finite differences of the forward (CPU) ------- */

#define FD_H 1e-3f
#define FD_RTOL 1e-3
#define FD_ATOL 1e-6
#define FD_SAMPLES 24 /* elements per input checked (spread over the tensor) */
#define GRAD_CASES 3  /* the first (small) cases of each row */

/* loss = sum over the forward's T_LOSS outputs of out * w (w: the backward's dout, or dloss) */
static double fwd_loss(cf_backend *cpu, const oprow *f, tcase *fc, const float *w, float wconst,
                       float *outs_copy) {
    float *fo[MAXT] = {0};
    CFT_OK(run_case(cpu, f, fc, fo));
    double loss = 0.0;
    size_t k = 0;
    for (int i = 0; i < fc->nt; i++) {
        if (!(fc->t[i].flags & T_LOSS)) continue;
        for (size_t e = 0; e < fc->t[i].n; e++, k++) {
            float o = fo[i][PAD + e];
            outs_copy[k] = o;
            loss += (double)o * (w ? w[k] : wconst);
        }
    }
    free_outs(fo, MAXT);
    return loss;
}

static int run_grad(cf_backend *cpu) {
    for (int ri = 0; ri < NROWS; ri++) {
        const oprow *r = &ROWS[ri];
        if (!r->grad || !row_selected(r)) continue;
        const oprow *f = find_row(r->fwd);
        for (int ci = 0; ci < r->ncases && ci < GRAD_CASES; ci++) {
            tcase c;
            make_case(r, ci, 0, &c);
            if (case_param(r, &c, "inplace") || !case_selected(&c)) {
                free_case(&c);
                continue; /* in-place variants: the cross-backend part covers them */
            }
            char label[128];
            case_label(r, &c, label, sizeof label);
            CFT_OK(feed_from_forward(cpu, r, ci, &c));
            float *g[MAXT] = {0};
            CFT_OK(run_case(cpu, r, &c, g));
            /* the forward case with the same inputs (same seed as feed_from_forward) */
            tcase fc;
            CFT_OK(cf_opcase_make_forward(f, r, ci, &fc));
            size_t nloss = 0;
            for (int i = 0; i < fc.nt; i++)
                if (fc.t[i].flags & T_LOSS) nloss += fc.t[i].n;
            int di = find_t(&c, "dout");
            const float *w = NULL;
            if (di >= 0) {
                if (c.t[di].n != nloss) {
                    printf("FAIL %s: dout has %zu elements, the forward's loss outputs %zu\n",
                           r->op, c.t[di].n, nloss);
                    g_fails++;
                    goto next;
                }
                w = c.t[di].init;
            }
            float *op_ = cft_floats(nloss), *om = cft_floats(nloss), *o0 = cft_floats(nloss),
                  *probe = cft_floats(nloss);
            fwd_loss(cpu, f, &fc, w, CE_DLOSS, o0);
            for (int xi = 0; xi < fc.nt; xi++) {
                tensor *X = &fc.t[xi];
                if (!(X->flags & T_IN) || (X->flags & T_INT) || (X->flags & T_OUT)) continue;
                char gname[32];
                snprintf(gname, sizeof gname, "d%s", X->name);
                int gi = find_t(&c, gname);
                if (gi < 0 || !(c.t[gi].flags & T_OUT)) continue;
                cft_err e = {0};
                size_t step = X->n > FD_SAMPLES ? X->n / FD_SAMPLES : 1;
                for (size_t j = 0; j < X->n; j += step) {
                    double ga = g[gi][PAD + j] - ((c.t[gi].flags & T_ACC) ? c.t[gi].init[j] : 0.0f);
                    const float xs = X->init[j];
                    X->init[j] = xs + 0.5f; /* which outputs depend on x[j]: those a big step moves */
                    fwd_loss(cpu, f, &fc, w, CE_DLOSS, probe);
                    X->init[j] = xs + FD_H;
                    const double xp = X->init[j];
                    double lp = fwd_loss(cpu, f, &fc, w, CE_DLOSS, op_);
                    X->init[j] = xs - FD_H;
                    const double xm = X->init[j];
                    double lm = fwd_loss(cpu, f, &fc, w, CE_DLOSS, om);
                    X->init[j] = xs;
                    double s = 0.0;
                    for (size_t k = 0; k < nloss; k++)
                        if (op_[k] != om[k] || probe[k] != o0[k])
                            s += (fabs(op_[k]) + fabs(om[k])) * fabs(w ? w[k] : CE_DLOSS);
                    const double fd = (lp - lm) / (xp - xm);
                    /* rounding of the float outputs (a few u of the dependent outputs' size) */
                    const double noise = 8.0 * CFT_U * s / (xp - xm);
                    cft_err_add(&e, j, ga, fd, noise + FD_ATOL, FD_RTOL);
                }
                g_checks++;
                int fail = e.bad > 0;
                g_fails += fail;
                printf("%s grad %-33s %-26s %s vs finite differences of %s: max_abs %.2e "
                       "max_rel %.2e worst %.2fx tol (%zu elements)\n",
                       fail ? "FAIL" : "PASS", r->op, label, gname, f->op, e.max_abs, e.max_rel,
                       e.worst_ratio, e.n);
            }
            free(op_), free(om), free(o0), free(probe);
        next:
            free_case(&fc);
            free_outs(g, MAXT);
            free_case(&c);
        }
    }
    return 0;
}

/* ---- backends ------------------------------------------------------------------------------- */

/* "cpu" and every usable device of the other registry rows (cf_backend_enumerate), as `clformer
 * devices` lists them */
static int default_specs(char **specs, int max) {
    int n = 0, count = 0;
    specs[n++] = strdup("cpu");
    cf_device_desc *all = NULL;
    static cf_backend_options o;
    cf_cli_backend_options_from_env(&o);
    if (cf_backend_enumerate(&o, stdout, &all, &count) != CF_OK) return n;
    int rows = 0;
    const cf_backend_reg *reg = cf_backend_registry(&rows);
    for (int i = 0; i < count && n < max; i++) {
        if (!strcmp(all[i].kind, reg[0].name)) continue; /* the reference, already first */
        if (!all[i].usable) {
            printf("note: %s (%s) not usable: %s\n", all[i].spec, all[i].name, all[i].reason);
            continue;
        }
        specs[n++] = strdup(all[i].spec);
    }
    if (rows == 1) printf("note: this build has only the %s backend\n", reg[0].name);
    free(all);
    return n;
}

static void quiet_log(int level, const char *msg, void *user) {
    (void)user;
    if (level <= CF_LOG_WARN) fprintf(stderr, "%s%s\n", level == 0 ? "error: " : "warning: ", msg);
}

int main(int argc, char **argv) {
    double t0 = cf_time_now();
    int do_grad = 1, do_cross = 1;
    char *specs[32];
    int nspec = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--grad")) do_cross = 0;
        else if (!strcmp(argv[i], "--cross")) do_grad = 0;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) g_only = argv[++i];
        else if (!strcmp(argv[i], "--small")) g_small = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr,
                    "usage: %s [--grad | --cross] [--only OP[,OP...]] [--small] [SPEC...]\n",
                    argv[0]);
            return 2;
        } else if (nspec < 32) specs[nspec++] = strdup(argv[i]);
    }
    const char *env = getenv("CF_TEST_BACKENDS");
    if (!nspec && env && *env) {
        char *copy = strdup(env);
        for (char *s = strtok(copy, ","); s && nspec < 32; s = strtok(NULL, ","))
            if (*s) specs[nspec++] = strdup(s);
        free(copy);
    }
    /* the tests' shared program cache, no tuning file (as the test_cl_* tests) */
    if (!getenv("CF_CACHE_DIR")) setenv("CF_CACHE_DIR", CF_BINARY_DIR "/cl_cache", 1);
    if (!getenv("CF_TUNING")) setenv("CF_TUNING", "off", 1);
    cf_log_set_callback(quiet_log, NULL);
    if (!nspec && do_cross) nspec = default_specs(specs, 32);

    ROWS = cf_oprows(&NROWS);
    cf_backend *cpu = NULL;
    CFT_OK(open_backend("cpu", &cpu));
    int skipped = 0;
    if (do_grad) {
        printf("-- gradients: backward ops against finite differences of their forward (cpu)\n");
        run_grad(cpu);
    }
    if (do_cross) {
        cf_backend *bes[32];
        char *names[32];
        int nbe = 0, non_cpu = 0;
        for (int i = 0; i < nspec; i++) {
            cf_backend *be = NULL;
            int rc = open_backend(specs[i], &be);
            if (rc < 0) {
                printf("FAIL backend '%s' could not be created (%s); run `clformer devices`\n",
                       specs[i], cf_status_str(rc));
                g_fails++, g_checks++;
                continue;
            }
            printf("backend %s: %s\n", specs[i], cf_be_name(be));
            cf_backend_info info;
            non_cpu += cf_be_info(be, &info) == CF_OK && strcmp(info.kind, "cpu") != 0;
            names[nbe] = specs[i];
            bes[nbe++] = be;
        }
        if (non_cpu == 0) {
            const char *req = getenv("CF_REQUIRE_OPENCL");
            if (req && atoi(req) != 0) {
                printf("FAIL cross-backend: no OpenCL device to compare with the CPU backend, and "
                       "CF_REQUIRE_OPENCL=1 (install PoCL: apt-get install pocl-opencl-icd)\n");
                g_fails++, g_checks++;
            } else {
                printf("SKIP cross-backend: no backend other than the CPU one to compare (set "
                       "CF_REQUIRE_OPENCL=1 to make this a failure)\n");
                skipped = 1;
            }
        }
        if (nbe) {
            printf("-- every op on %d backend(s) against the cpu backend\n", nbe);
            run_cross(cpu, bes, names, nbe);
        }
        /* which attention path a backend with two took (the device and CF_ATTENTION decide) */
        for (int i = 0; i < nbe; i++) {
            cf_backend_info info;
            if (cf_be_info(bes[i], &info) != CF_OK ||
                info.attention_fused + info.attention_gemm == 0)
                continue;
            printf("note: %s attention: %ld calls on the fused kernels, %ld on the batched GEMMs\n",
                   names[i], info.attention_fused, info.attention_gemm);
        }
        for (int i = 0; i < nbe; i++) cf_backend_destroy(bes[i]);
    }
    cf_backend_destroy(cpu);
    printf("%s test_backend_ops: %d of %d checks failed%s (%.1f s)\n",
           g_fails ? "FAIL" : skipped ? "SKIP" : "PASS", g_fails, g_checks,
           skipped ? ", cross-backend part skipped" : "", cf_time_now() - t0);
    for (int i = 0; i < nspec; i++) free(specs[i]);
    if (g_fails) return 1;
    return skipped ? SKIP_CODE : 0;
}
