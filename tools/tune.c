/* clformer-tune: the command over the tuner's measuring engine (src/tune/tune.c, cf_tune_run):
 * parses the options, reads the environment (the backend options the CLI honours, CF_GEMM_FAST,
 * CF_OPENCL_AUTO_CPU, the CF_TUNE_PLANT_* test switches), runs the tuner and exits non-zero when an
 * error was reported. See docs/tuning.md. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_env.h"
#include "clformer/common.h"
#include "clformer/config.h"
#include "tune/tune.h"

static const char *HELP =
    "usage: clformer-tune [--device D] [--config CONFIG] [options]\n"
    "\n"
    "Measures clformer's OpenCL kernels on one device and writes a tuning file that clformer\n"
    "loads automatically for that device (platform, device name and driver must match):\n"
    "  - GEMM: for each shape of CONFIG's training step (QKV, attention projection, MLP up/down,\n"
    "    LM head; forward, input-gradient and weight-gradient products) and a set of squares,\n"
    "    the native kernel's work-group tile, work per thread, K slice, vector width and\n"
    "    local-memory padding; where the register-blocked kernel applies (GPUs, or\n"
    "    CF_GEMM_FAST=1) its variant and split-K; and whether CLBlast, the tiled or the\n"
    "    register-blocked kernel is fastest;\n"
    "  - the work-group sizes of the attention softmax, LayerNorm, cross-entropy and AdamW\n"
    "    kernels.\n"
    "Each candidate's result is compared with the CPU backend; wrong ones are rejected and\n"
    "listed.\n"
    "Times are device times from OpenCL profiling events, the median of repeats after a warm-up.\n"
    "\n"
    "options:\n"
    "  --device D       OpenCL device: opencl, opencl:P:D or a device/platform name substring\n"
    "                   (default: the best GPU, else the first OpenCL device)\n"
    "  --config FILE    take the GEMM shapes and kernel sizes from this config (default: squares\n"
    "                   only, kernel sizes of the built-in tiny model)\n"
    "  --out FILE       where to write (default configs/tuning/<platform>__<device>.json)\n"
    "  --quick          fewer candidates and repeats (an H200: 29 s for wiki_cache_optimized;\n"
    "                   a 2-core CPU device: about 15 minutes for it, 20 s for\n"
    "                   configs/tiny.json, without the fast-kernel search)\n"
    "  --precision P    fp32 (default), tf32, bf16 or fp16. tf32: the register-blocked kernel\n"
    "                   on TF32 tensor cores (NVIDIA compute capability 8.0+; elsewhere fp32,\n"
    "                   said once). bf16 / fp16: that kernel alone (the only one that rounds\n"
    "                   GEMM inputs; on tensor cores where an engine has the format, elsewhere\n"
    "                   rounded in the kernel), its variants and splits per shape. Entries\n"
    "                   record their precision; clformer applies only those of its run's\n"
    "                   precision, and a file keeps each precision's entries side by side\n"
    "  --budget S       stop after S seconds (at least one measurement), write what was measured;\n"
    "                   rerun to continue\n"
    "  --repeats N      timed runs per candidate (default 7, --quick 3)\n"
    "  --squares LIST   square sizes, comma separated (default 256,512,1024,2048,4096; --quick\n"
    "                   256,1024); 'none' for none\n"
    "  --tiles L, --wpt L, --tk L, --vw L, --pad L, --ls L\n"
    "                   candidate values, comma separated (defaults: tiles 4,8,16,32, wpt\n"
    "                   1,2,4,8, tk 8,16,32, vw 1,2,4,8, pad 0,1,2, work-group sizes\n"
    "                   32..1024; --quick: 8,16 / 4,8 / 16,32 / 1,4 / 0,1 / 64..512)\n"
    "  --fast-variants L  register-blocked kernel variants RMxRNxBKxWG, comma separated, at most\n"
    "                   12 (default 11 of test_cl_gemm_fast's: 8x8x8x16,8x8x16x16,8x4x16x16,\n"
    "                   4x8x16x16,4x4x16x16,8x8x8x8,8x8x16x8,8x4x8x8,16x8x8x16,8x16x8x16,\n"
    "                   8x8x32x8; RM or RN 16 in the fp32 form only, BK 32 in the bf16 / fp16\n"
    "                   tensor-core form only); 'none': measure only the rule's\n"
    "                   choice. The rule's choice is always a candidate.\n"
    "  --fast-splits L  split-K values (default 1,2,3,4,6,8,12,16; --quick: 1, the rule's\n"
    "                   split and its neighbours in that list); only splits leaving K/split\n"
    "                   >= 128\n"
    "  --no-gemm        skip the GEMM sweep      --no-workgroups  skip the work-group sweep\n"
    "  --restart        ignore the results of an interrupted run (<out>.partial)\n"
    "  --quiet/--verbose\n"
    "\n"
    "Use the result: it is found automatically under configs/tuning/ (working directory, then\n"
    "the source tree), or named with CF_TUNING=FILE (clformer: --tuning FILE); CF_TUNING=off\n"
    "ignores tuning files.\n";

static const char *list_opts[CF_TUNE_N_LISTS] = {"--tiles", "--wpt", "--tk",
                                                 "--vw",    "--pad", "--ls"};

/* ---- main ------------------------------------------------------------------------------------ */

/* a comma-separated list of up to max integers in lo..hi (powers of two when pow2) */
static int parse_list(const char *opt, const char *s, int lo, int hi, int pow2, int max, int *out,
                      int *n) {
    *n = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char *end = NULL;
        long v = strtol(tok, &end, 10);
        if (!end || *end || v < lo || v > hi || (pow2 && (v & (v - 1))) || *n == max) {
            CF_ERROR("clformer-tune: %s '%s': expected up to %d %s in %d..%d, comma separated",
                     opt, s, max, pow2 ? "powers of two" : "integers", lo, hi);
            return CF_ERR_INVALID;
        }
        out[(*n)++] = (int)v;
    }
    if (*n == 0) {
        CF_ERROR("clformer-tune: %s needs at least one value", opt);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}

/* --fast-variants: up to 12 of RMxRNxBKxWG, comma separated, or "none" (n = -1) */
static int parse_fast_variants(const char *s, cf_cl_gemm_fast_choice *out, int *n) {
    *n = 0;
    if (!strcmp(s, "none")) {
        *n = -1;
        return CF_OK;
    }
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        cf_cl_gemm_fast_choice c = {0, 0, 0, 1, 0};
        char extra = 0;
        if (sscanf(tok, "%dx%dx%dx%d%c", &c.rm, &c.rn, &c.bk, &c.wg, &extra) != 4 ||
            !cf_cl_gemm_fast_choice_valid_any(&c) || *n == 12) {
            CF_ERROR("clformer-tune: --fast-variants '%s': '%s' is %s (RMxRNxBKxWG with %s; up to "
                     "12, comma separated, or 'none')",
                     s, tok, *n == 12 ? "one too many" : "no variant of the fast kernel",
                     cf_cl_gemm_fast_valid_text(0));
            return CF_ERR_INVALID;
        }
        out[(*n)++] = c;
    }
    if (*n == 0) {
        CF_ERROR("clformer-tune: --fast-variants needs at least one value (or 'none')");
        return CF_ERR_INVALID;
    }
    return CF_OK;
}

static int list_index(const char *opt) {
    for (int l = 0; l < CF_TUNE_N_LISTS; l++)
        if (!strcmp(opt, list_opts[l])) return l;
    return -1;
}

static int parse_args(int argc, char **argv, cf_tune_options *o) {
    memset(o, 0, sizeof *o);
    int squares_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
#define NEED_VALUE()                                                                               \
    do {                                                                                           \
        if (!has_val) {                                                                            \
            CF_ERROR("clformer-tune: %s needs a value; see clformer-tune --help", a);             \
            return CF_ERR_INVALID;                                                                 \
        }                                                                                          \
    } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(HELP, stdout);
            return 1;
        } else if (!strcmp(a, "--device")) {
            NEED_VALUE();
            o->device = argv[++i];
        } else if (!strcmp(a, "--config")) {
            NEED_VALUE();
            o->config_path = argv[++i];
        } else if (!strcmp(a, "--out")) {
            NEED_VALUE();
            o->out = argv[++i];
        } else if (!strcmp(a, "--quick")) {
            o->quick = 1;
        } else if (!strcmp(a, "--precision")) {
            NEED_VALUE();
            const char *p = argv[++i];
            o->precision = -1;
            for (int k = CF_PREC_FP32; k <= CF_PREC_FP16; k++)
                if (!strcmp(p, cf_precision_name(k))) o->precision = k;
            if (o->precision < 0) {
                CF_ERROR("clformer-tune: --precision '%s': expected fp32, tf32, bf16 or fp16", p);
                return CF_ERR_INVALID;
            }
        } else if (!strcmp(a, "--budget")) {
            NEED_VALUE();
            char *end = NULL;
            o->budget = strtod(argv[++i], &end);
            if (!end || *end || !(o->budget > 0)) {
                CF_ERROR("clformer-tune: --budget '%s': expected a number of seconds > 0",
                         argv[i]);
                return CF_ERR_INVALID;
            }
        } else if (!strcmp(a, "--repeats")) {
            NEED_VALUE();
            char *end = NULL;
            long v = strtol(argv[++i], &end, 10);
            if (!end || *end || v < 1 || v > 64) {
                CF_ERROR("clformer-tune: --repeats '%s': expected 1..64", argv[i]);
                return CF_ERR_INVALID;
            }
            o->repeats = (int)v;
        } else if (!strcmp(a, "--squares")) {
            NEED_VALUE();
            if (!strcmp(argv[++i], "none")) o->n_squares = 0;
            else CF_TRY(parse_list("--squares", argv[i], 1, 16384, 0, 16, o->squares,
                                   &o->n_squares));
            squares_given = 1;
        } else if (list_index(a) >= 0) {
            NEED_VALUE();
            int l = list_index(a);
            static const int lo[CF_TUNE_N_LISTS] = {1, 1, 1, 1, 0, 1};
            static const int hi[CF_TUNE_N_LISTS] = {64, 16, 64, 8, 8, 4096};
            static const int pow2[CF_TUNE_N_LISTS] = {0, 0, 0, 1, 0, 1};
            CF_TRY(parse_list(a, argv[++i], lo[l], hi[l], pow2[l], 8, o->list[l], &o->n_list[l]));
        } else if (!strcmp(a, "--fast-variants")) {
            NEED_VALUE();
            CF_TRY(parse_fast_variants(argv[++i], o->fast_var, &o->n_fast_var));
        } else if (!strcmp(a, "--fast-splits")) {
            NEED_VALUE();
            CF_TRY(parse_list("--fast-splits", argv[++i], 1, 64, 0, 8, o->fast_split,
                              &o->n_fast_split));
        } else if (!strcmp(a, "--no-gemm")) {
            o->no_gemm = 1;
        } else if (!strcmp(a, "--no-workgroups")) {
            o->no_wg = 1;
        } else if (!strcmp(a, "--restart")) {
            o->restart = 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            cf_log_set_level(CF_LOG_WARN);
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            cf_log_set_level(CF_LOG_DEBUG);
            o->verbose = 1;
        } else {
            CF_ERROR("clformer-tune: unknown argument '%s'; see clformer-tune --help", a);
            return CF_ERR_INVALID;
        }
#undef NEED_VALUE
    }
    cf_tune_options_defaults(o, squares_given);
    return CF_OK;
}

/* The default log output (stderr, with the level's prefix), counting the error lines: a run that
 * reported an error never exits 0, whatever path printed it. */
static int g_errors;

static void log_counting(int level, const char *msg, void *user) {
    (void)user;
    static const char *prefix[] = {"error: ", "warning: ", "", "debug: "};
    if (level <= CF_LOG_ERROR) g_errors++;
    fprintf(stderr, "%s%s\n", prefix[level < 0 ? 0 : (level > 3 ? 3 : level)], msg);
}

int main(int argc, char **argv) {
    cf_tune_options o;
    cf_log_set_callback(log_counting, NULL);
    int rc = parse_args(argc, argv, &o);
    if (rc == 1) return 0;
    if (rc < 0) return 2;
    /* the environment the CLI honours (CF_CACHE_DIR, CF_KERNEL_DIR, CF_GEMM_FAST, ...) */
    cf_cli_backend_options_from_env(&o.backend);
    o.auto_cpu_given = getenv("CF_OPENCL_AUTO_CPU") != NULL;
    const char *fe = getenv("CF_GEMM_FAST");
    snprintf(o.gemm_fast, sizeof o.gemm_fast, "%s", fe ? fe : "");
    const char *pw = getenv("CF_TUNE_PLANT_WRONG");
    o.plant_wrong = pw ? atoi(pw) : 0;
    const char *pwf = getenv("CF_TUNE_PLANT_WRONG_FAST");
    o.plant_wrong_fast = pwf ? atoi(pwf) : 0;
    const char *pe = getenv("CF_TUNE_PLANT_ERROR");
    o.plant_error = pe ? atoi(pe) : 0;
    rc = cf_tune_run(&o, NULL);
    if (rc >= 0 && g_errors > 0) {
        CF_ERROR("clformer-tune: %d error%s reported above; the results written may be incomplete "
                 "(fix the cause and rerun)", g_errors, g_errors == 1 ? " was" : "s were");
        rc = CF_ERR_INVALID;
    }
    if (rc == CF_ERR_INTERRUPTED) return 130;
    return rc < 0 ? 1 : 0;
}
