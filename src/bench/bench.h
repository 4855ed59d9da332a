/* clformer: measurement: the device's peak FLOP rate, the training throughput benchmark (tokens/s,
 * MFU, memory, transfers, allocations), the analytic memory model, the per-op profile report and
 * Chrome trace, and the GEMM and attention sweeps. */
#ifndef CF_BENCH_H
#define CF_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backend/backend.h"
#include "clformer/config.h"

/* ---- peak FLOP rate ------------------------------------------------------------------------ */

/* Peak fp32 rate of the host CPU: every OpenMP thread runs independent chains of SIMD fused
 * multiply-adds (AVX-512, AVX2+FMA, or plain vectors elsewhere); each thread's rate is its FLOPs
 * over its own CPU time (so other processes on a shared machine do not lower it), summed over
 * the threads; the best of runs of about 50 ms for `seconds` in all. One FMA is 2 FLOPs. */
int cf_bench_cpu_peak_gflops(double seconds, double *gflops);

/* Peak of the backend's device: its peak_gflops slot where it has one (an FMA kernel on OpenCL
 * devices), else the CPU loop above for a backend that runs on the host's threads
 * (cf_backend_info.host_threads). *how (static string) names the method for the report. */
int cf_bench_device_peak_gflops(cf_backend *be, double seconds, double *gflops, const char **how);


/* ---- analytic memory ------------------------------------------------------------------------ */

/* What training a config at batch (B, T) must hold on the device, in bytes, counted from the
 * model's definition (not from the allocator): fp32, except the activations precision bf16/fp16
 * stores half (cf_act_info.half). */
typedef struct {
    uint64_t num_params; /* parameter count */
    uint64_t params;     /* weights */
    uint64_t grads;      /* their gradients */
    uint64_t adam;       /* optimizer state: AdamW first and second moments (2x params), plus
                          * Muon's momentum of the block matrices with optimizer muon */
    uint64_t acts; /* forward activations (what `recompute` leaves; bf16/fp16: some stored half,
                    * each with one fp32 work slice), incl. one chunk of the LM head's logits,
                    * on the matrix attention path the B*NH*T*T probabilities (flash: B*NH*T
                    * log-sum-exps), and the small scratch tensors of the forward */
    uint64_t grad_scratch; /* backward scratch reused layer by layer (matrix attention: two
                            * B*NH*T*T buffers; flash: one B*NH*T, plus flash_scratch) */
    uint64_t flash_scratch; /* of grad_scratch, the (T,T) scratch of the backend's flash backward
                             * (OpenCL's matrix backward, cl_flash.c), as the run allocated it;
                             * 0 before a run and where the backward needs none */
    uint64_t total;
    int flash;     /* the attention path these counts are for (cf_model_flash): 1 flash, 0 matrix */
} cf_mem_estimate;

void cf_bench_mem_estimate(const cf_config *cfg, int B, int T, cf_mem_estimate *out);
/* The config's name of a `recompute` value ("none", "attention", "block"). */
const char *cf_bench_recompute_name(int recompute);

/* ---- training benchmark --------------------------------------------------------------------- */

typedef struct {
    const char *device;     /* backend spec, NULL = auto */
    const cf_backend_options *backend; /* options at creation, NULL = the defaults */
    const char *origin;     /* config file name for messages */
    int steps;              /* timed steps (default 10) */
    int warmup;             /* untimed steps before them (default 2, at least 1) */
    int profile;            /* after the timed steps, profile_steps more with per-op profiling */
    int profile_steps;      /* default 2 */
    const char *trace_path; /* Chrome trace of the profiled steps (implies profiling) */
    double peak_seconds;    /* duration of the peak FMA measurement (default 0.3) */
    FILE *report;           /* where --profile prints its table (NULL = stderr) */
} cf_bench_opts;

typedef struct {
    char device[640];
    char config_name[128];
    char gemm[64];     /* GEMM path of the backend ("native:avx2-6x16", "blas", "clblast", ...) */
    char peak_how[128]; /* how the peak was measured */
    int B, T, accum, steps, warmup;
    int recompute; /* enum cf_recompute of the run */
    int head_rows; /* rows per LM-head chunk (cf_model_head_rows) */
    uint64_t num_params;
    double tokens_per_step;
    /* step time over the timed steps, milliseconds */
    double ms_median, ms_mean, ms_min, ms_max, ms_p10, ms_p90;
    double first_step_ms;   /* includes kernel builds, first-touch of buffers */
    double tokens_per_s;    /* tokens_per_step / median step time */
    double flops_per_token; /* cf_model_flops_per_token */
    double achieved_gflops; /* flops_per_token * tokens_per_s / 1e9 */
    double peak_gflops;
    double mfu;                    /* achieved / peak */
    uint64_t peak_host_bytes;      /* peak resident set of the process */
    uint64_t peak_device_bytes;    /* high-water mark of buffers allocated through the backend, plus
                                      the backend's private scratch (OpenCL) */
    uint64_t device_scratch_bytes; /* that scratch alone */
    cf_mem_estimate est;           /* analytic, at (B, T) */
    double h2d_bytes_per_step, d2h_bytes_per_step;
    uint64_t first_step_allocs; /* device allocations during the first step */
    double allocs_per_step;     /* device allocations per step after the first (want 0) */
    double launches_per_step;   /* backend ops dispatched per step */
    float final_loss;
    double host_cpu_cores; /* process CPU time / wall time over the timed steps: how much of the
                              host the run got (below the core count on a shared machine) */
    /* filled when profiled: ms per step by category (see cf_prof_category) */
    int profiled_steps;
    double prof_ms[16];
    double prof_gemm_gflop; /* the GEMMs' work per step (2 M N K each) and their ms per step */
    double prof_gemm_ms;
} cf_bench_result;

/* Random tokens (no dataset), a fresh model on the device, warmup + timed steps of exactly the
 * training step (cf_train_step). */
int cf_bench_run(const cf_config *cfg, const cf_bench_opts *o, cf_bench_result *r);

/* Human-readable report (stdout of `clformer bench`). */
void cf_bench_print(FILE *out, const cf_bench_result *r);
/* The --json object (malloc'ed string, one line). Keys: see docs in BENCHMARKS.md. */
char *cf_bench_to_json(const cf_bench_result *r);

/* ---- profile report and trace (profile.c) ------------------------------------------------- */

enum cf_prof_cat {
    CF_CAT_GEMM = 0,    /* gemm, add_bias, bias_backward (the linear layers) */
    CF_CAT_ATTENTION,   /* attention_forward/backward */
    CF_CAT_NORM,        /* layernorm */
    CF_CAT_ACTIVATION,  /* gelu */
    CF_CAT_LOSS,        /* cross-entropy and the loss reduction */
    CF_CAT_OPTIMIZER,   /* everything in the optimizer phase: grad norm, AdamW */
    CF_CAT_TRANSFER,    /* upload, download */
    CF_CAT_EMBEDDING,   /* encoder forward/backward */
    CF_CAT_ELEMENTWISE, /* residual adds, axpy, fill (gradient zeroing), copy */
    CF_CAT_COUNT
};
const char *cf_prof_cat_name(int cat);
int cf_prof_category(const cf_prof_event *e);
const char *cf_prof_phase_short(int phase); /* "fwd", "bwd", "opt", "xfer", "other" */

/* Per-category milliseconds per step over the recorded events (ms_per_cat[CF_CAT_COUNT]); returns
 * the total. gemm_gflop and gemm_ms (optional): the GEMMs' work (2 M N K each) and time per step. */
double cf_prof_summary(const cf_backend *be, int nsteps, double *ms_per_cat, double *gemm_gflop,
                       double *gemm_ms);

/* The --profile tables: where the time goes by category and phase, then every (layer, phase, op)
 * with calls, ms per step and share. nsteps divides the totals; source says where times came
 * from. */
void cf_prof_print(FILE *out, const cf_backend *be, int nsteps);

/* Chrome trace-event JSON of the recorded events: one "X" event per op named
 * "L<layer>.<phase>.<op>" ("model" for ops outside the blocks) on the device-queue track, and one
 * span per step on a "steps" track (steps[i] = {start_us, dur_us} on the profiler's clock; may
 * be NULL). Opens in Perfetto / chrome://tracing. */
typedef struct {
    double start_us, dur_us;
} cf_trace_span;
int cf_prof_write_trace(const char *path, const cf_backend *be, const char *process_name,
                        const cf_trace_span *steps, int nsteps);

/* Profiler clock now, in microseconds since cf_prof_enable (for step spans). */
double cf_prof_now_us(const cf_backend *be);

/* ---- sweeps (sweep.c) ------------------------------------------------------------------------ */

typedef struct {
    const char *device; /* NULL = auto */
    const cf_backend_options *backend; /* options at creation, NULL = the defaults; the GEMM
                                        * sweep sets the GEMM path of each column itself */
    int json;           /* print JSON instead of the table */
    double min_seconds; /* time per measurement (default 0.2) */
    const int *sizes;   /* square sweep sizes (GEMM) or sequence lengths (attention), 0-terminated;
                           NULL = defaults */
    int batch;          /* attention sweep batch (default 4) */
    int skip_shapes;    /* GEMM: square sweep only */
} cf_sweep_opts;

/* GFLOP/s of every GEMM of a training step of cfg (forward, dinp, dweight of each linear layer,
 * the tied head included) and of square M=N=K sizes, for each GEMM path of the device: CPU
 * backend native / BLAS; OpenCL native with 8x8 and 16x16 work-groups forced, the backend's own
 * choice (rule or tuning file), and CLBlast. */
int cf_bench_gemm_sweep(const cf_config *cfg, const cf_sweep_opts *o, FILE *out);

/* Attention forward and backward time and memory for T = 64 .. 1024 (doubling) at cfg's d_model
 * and num_heads. */
int cf_bench_attention_sweep(const cf_config *cfg, const cf_sweep_opts *o, FILE *out);

#endif
