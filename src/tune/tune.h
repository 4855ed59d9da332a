/* clformer: the OpenCL tuner's measuring engine (src/tune/tune.c): measures clformer's OpenCL
 * kernels on one device -- the tiled GEMM's parameters, the register-blocked kernel's variants and
 * split-K, CLBlast, per GEMM shape of a config plus squares, and the work-group sizes of the
 * attention, LayerNorm, cross-entropy and AdamW kernels -- checks every candidate against the CPU
 * backend and writes a tuning file (configs/tuning/<platform>__<device>.json, docs/tuning.md).
 * The clformer-tune command (tools/tune.c) is a thin CLI over cf_tune_run. */
#ifndef CF_TUNE_H
#define CF_TUNE_H

#include "backend/backend.h"
#include "backend/opencl/cl_gemm_fast.h"

/* The candidate-value lists of cf_tune_options.list. */
enum { CF_TUNE_L_TILE, CF_TUNE_L_WPT, CF_TUNE_L_TK, CF_TUNE_L_VW, CF_TUNE_L_PAD, CF_TUNE_L_LS,
       CF_TUNE_N_LISTS };

typedef struct cf_tune_options {
    const char *device;      /* OpenCL device spec (NULL/"auto": the best GPU, else any device) */
    const char *config_path; /* GEMM shapes and kernel sizes from this config (NULL: squares) */
    const char *out;         /* output file (NULL: configs/tuning/<platform>__<device>.json) */
    int quick, repeats, restart, no_gemm, no_wg, verbose;
    int precision; /* --precision, enum cf_precision: tf32 measures the register-blocked kernel
                    * on TF32 tensor cores where the device has them (entries tagged "tf32";
                    * elsewhere fp32, said once); bf16 / fp16 measure it alone, the only kernel
                    * that rounds GEMM inputs (on tensor cores where an engine has the format,
                    * elsewhere rounded in the kernel; entries tagged "bf16" / "fp16") */
    double budget; /* stop after this many seconds (0 = none), writing what was measured */
    int squares[16], n_squares;
    int list[CF_TUNE_N_LISTS][8], n_list[CF_TUNE_N_LISTS]; /* tiles, wpt, tk, vw, pad, ls */
    cf_cl_gemm_fast_choice fast_var[12]; /* --fast-variants (split unused) */
    int n_fast_var;                     /* -1 none, 0 the default table */
    int fast_split[8], n_fast_split;    /* --fast-splits; 0 = the default */
    /* what the caller read from its environment */
    cf_backend_options backend; /* backend options (the tuning file is always "off") */
    int auto_cpu_given;         /* backend.auto_cpu_devices was set explicitly (else, for
                                 * device auto, CPU devices are candidates too) */
    char gemm_fast[32];         /* cf_backend_options.gemm_fast as given ("" = unset) */
    int plant_wrong, plant_wrong_fast, plant_error; /* test switches (CF_TUNE_PLANT_*), 0 = off */
} cf_tune_options;

typedef struct cf_tune_result {
    char out_path[1024]; /* the tuning file written (or that would have been) */
    int stopped;         /* 0 complete, 1 budget reached, 2 interrupted */
    long done, planned;  /* candidates measured / planned */
    int measured, resumed; /* measurements taken now / reused from <out>.partial */
} cf_tune_result;

/* Fill the lists, squares and repeats the caller left at 0 (the defaults, fewer with quick);
 * squares_given: o->n_squares was set by the caller (0 = none). */
void cf_tune_options_defaults(cf_tune_options *o, int squares_given);

/* Measure and write the tuning file. CF_OK also when stopped by the budget (result->stopped 1);
 * CF_ERR_INTERRUPTED when interrupted (measurements kept in <out>.partial); a negative status on
 * an error (logged). result may be NULL. */
int cf_tune_run(const cf_tune_options *o, cf_tune_result *result);

#endif
