/* clformer: `clformer bench`: the training benchmark, the device peak, and the GEMM and attention
 * sweeps (argument parsing and output only; the measurements live in src/bench/). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bench/bench.h"
#include "cli/cli.h"
#include "clformer/common.h"
#include "clformer/config.h"

static const char *BENCH_HELP =
    "usage: clformer bench CONFIG [options] [key=value ...]\n"
    "       clformer bench --gemm-sweep [CONFIG] [options] [key=value ...]\n"
    "       clformer bench --attention-sweep [CONFIG] [options] [key=value ...]\n"
    "       clformer bench --peak [--device D]\n"
    "       clformer bench --generate CKPT-or-CONFIG [options] (generation speed with the KV\n"
    "                    cache; see `clformer bench --generate --help`)\n"
    "\n"
    "Training benchmark (default): random tokens (no dataset needed), a freshly initialised "
    "model,\n"
    "--warmup untimed steps, then --steps timed training steps (the exact step `clformer train`\n"
    "runs). Reports tokens/s (tokens per step / median step time), ms/step (median, mean, p10,\n"
    "p90, min, max), model FLOPs per token and MFU against the device's peak (measured by an FMA\n"
    "loop or kernel, printed), peak host memory (resident set), peak device memory allocated vs\n"
    "the analytic estimate (params + grads + 2 AdamW moments + activations + backward scratch),\n"
    "bytes host->device and device->host per step, and device allocations per step after the\n"
    "first (0 expected).\n"
    "\n"
    "options:\n"
    "  --device D        cpu, auto, opencl, opencl:P:D or a device-name substring\n"
    "  --gemm G          GEMM path: auto, clblast, native (OpenCL); auto, blas, native (CPU)\n"
    "  --precision P     fp32, tf32, bf16 or fp16 (same as precision=P)\n"
    "  --tuning FILE     OpenCL tuning file from clformer-tune ('off' for none; env CF_TUNING)\n"
    "  --steps N         timed steps (default 10)\n"
    "  --warmup N        untimed steps first (default 2)\n"
    "  --json            print one JSON object (keys: tokens_per_s, ms_per_step, mfu,\n"
    "                    peak_host_bytes, peak_device_bytes, h2d_bytes_per_step, ...)\n"
    "  --profile         after the timed steps, profile more steps op by op and print the\n"
    "                    time by category and the per-layer, per-op table (forward and\n"
    "                    backward; TFLOP/s of the GEMMs) to stderr\n"
    "  --profile-steps N steps profiled by --profile / --trace (default 2)\n"
    "  --trace FILE      Chrome trace (JSON trace events) of the profiled steps (ui.perfetto.dev)\n"
    "\n"
    "sweeps:\n"
    "  --gemm-sweep      GFLOP/s of every GEMM of a training step of CONFIG (forward, dinp, dW of\n"
    "                    each linear layer and the head) and of square sizes, for the CPU backend\n"
    "                    (native, BLAS) and, on an OpenCL device, the native kernel with 8x8 and\n"
    "                    16x16 work-groups forced, its own choice (rule or tuning file), CLBlast\n"
    "  --attention-sweep attention forward/backward time and memory for T = 64 .. 1024\n"
    "  --sizes A,B,...   square GEMM sizes (default 128,256,512,1024,2048) or attention sequence\n"
    "                    lengths (default 64,128,256,512,1024)\n"
    "  --square-only     GEMM sweep without the config's shapes\n"
    "  --batch N         attention sweep batch (default 4)\n"
    "  --min-time S      seconds per sweep measurement (default 0.2)\n"
    "  --peak            print only the device's peak GFLOP/s\n"
    "\n"
    "CONFIG defaults to the built-in tiny model for the sweeps. Without --json the report goes to\n"
    "stdout; --json prints exactly one JSON document to stdout (logs go to stderr).\n";

static int parse_sizes(const char *s, int *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p && n < max - 1) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 65536 || (*end && *end != ',')) {
            CF_ERROR("bench: --sizes '%s' must be a comma-separated list of integers in [1, "
                     "65536]",
                     s);
            return CF_ERR_INVALID;
        }
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    out[n] = 0;
    if (n == 0) {
        CF_ERROR("bench: --sizes '%s' is empty", s);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}

static int is_value_opt(const char *a) {
    static const char *const v[] = {
        "--device",        "--gemm",  "--steps", "--warmup",   "--trace",
        "--profile-steps", "--sizes", "--batch", "--min-time", "--tuning", "--precision", NULL};
    for (int i = 0; v[i]; i++)
        if (!strcmp(a, v[i])) return 1;
    return 0;
}

int cf_cmd_bench(int argc, char **argv) {
    for (int i = 1; i < argc; i++) /* generation speed: its own options (cmd_generate.c) */
        if (!strcmp(argv[i], "--generate")) return cf_cmd_bench_generate(argc, argv);
    cf_config cfg;
    cf_config_defaults(&cfg);
    const char *config_path = NULL, *gemm = NULL;
    cf_bench_opts o;
    memset(&o, 0, sizeof o);
    cf_sweep_opts so;
    memset(&so, 0, sizeof so);
    int json = 0, mode = 0; /* 0 train bench, 1 gemm sweep, 2 attention sweep, 3 peak */
    int sizes[64];
    float min_time = 0.0f;
    /* first pass: help and the config file, so key=value overrides apply on top of it */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(BENCH_HELP, stdout);
            return 0;
        }
        if (argv[i][0] == '-') {
            if (is_value_opt(argv[i])) i++;
            continue;
        }
        if (!strchr(argv[i], '=')) {
            if (config_path) {
                CF_ERROR("bench: more than one config given ('%s' and '%s')", config_path, argv[i]);
                return 1;
            }
            config_path = argv[i];
        }
    }
    if (config_path && cf_config_load(config_path, &cfg) < 0) return 1;
    o.origin = config_path ? config_path : "built-in defaults";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            cf_log_set_level(CF_LOG_WARN);
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            cf_log_set_level(CF_LOG_DEBUG);
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--profile")) {
            o.profile = 1;
        } else if (!strcmp(a, "--gemm-sweep")) {
            mode = 1;
        } else if (!strcmp(a, "--attention-sweep")) {
            mode = 2;
        } else if (!strcmp(a, "--peak")) {
            mode = 3;
        } else if (!strcmp(a, "--square-only")) {
            so.skip_shapes = 1;
        } else if (is_value_opt(a)) {
            if (!cf_cli_need_value(argc, argv, i, "bench")) return 1;
            const char *v = argv[++i];
            int rc = CF_OK;
            if (!strcmp(a, "--device"))
                o.device = so.device = v;
            else if (!strcmp(a, "--gemm"))
                gemm = v;
            else if (!strcmp(a, "--tuning"))
                cf_cli_backend_options()->tuning = v;
            else if (!strcmp(a, "--precision")) {
                char kv[64];
                snprintf(kv, sizeof kv, "precision=%.50s", v);
                rc = cf_config_set(&cfg, kv, "--precision");
            }
            else if (!strcmp(a, "--steps"))
                rc = cf_cli_parse_int("bench", a, v, 1, 1000000, &o.steps);
            else if (!strcmp(a, "--warmup"))
                rc = cf_cli_parse_int("bench", a, v, 1, 1000000, &o.warmup);
            else if (!strcmp(a, "--profile-steps"))
                rc = cf_cli_parse_int("bench", a, v, 1, 10000, &o.profile_steps);
            else if (!strcmp(a, "--trace"))
                o.trace_path = v;
            else if (!strcmp(a, "--batch"))
                rc = cf_cli_parse_int("bench", a, v, 1, 65536, &so.batch);
            else if (!strcmp(a, "--min-time"))
                rc = cf_cli_parse_float("bench", a, v, 0.001, 60.0, &min_time);
            else if (!strcmp(a, "--sizes")) {
                rc = parse_sizes(v, sizes, 64);
                so.sizes = sizes;
            }
            if (rc < 0) return 1;
        } else if (a[0] == '-') {
            CF_ERROR("bench: unknown option '%s'; see `clformer bench --help`", a);
            return 1;
        } else if (strchr(a, '=')) {
            if (cf_config_set(&cfg, a, "command line") < 0) return 1;
        }
    }
    if (gemm && cf_cli_set_gemm(cf_cli_backend_options(), gemm) < 0) return 1;
    o.device = so.device = cf_cli_device_from_env(o.device);
    o.backend = so.backend = cf_cli_backend_options();
    so.json = json;
    so.min_seconds = min_time;
    cf_install_sigint_handler();
    int rc;
    if (mode == 1 || mode == 2) {
        if ((rc = cf_config_validate(&cfg, o.origin)) < 0) return 1;
        /* --precision reaches the attention sweep's backend (tensor-core flash kernels for tf32 /
         * bf16 / fp16 where a matrix engine has them); the GEMM sweep keeps its own columns */
        cf_backend_options abo = o.backend ? *o.backend : cf_backend_options_default();
        if (mode == 2) {
            cf_backend_options_set_precision(&abo, cfg.precision);
            so.backend = &abo;
        }
        rc = mode == 1 ? cf_bench_gemm_sweep(&cfg, &so, stdout)
                       : cf_bench_attention_sweep(&cfg, &so, stdout);
        return rc < 0 ? 1 : 0;
    }
    if (mode == 3) {
        cf_backend *be = NULL;
        /* --precision reaches the backend (a matrix engine's peak for tf32 / bf16 / fp16) */
        cf_backend_options bo = o.backend ? *o.backend : cf_backend_options_default();
        cf_backend_options_set_precision(&bo, cfg.precision);
        if (cf_backend_create(o.device, &bo, &be) < 0) return 1;
        double gf = 0.0;
        const char *how = "";
        rc = cf_bench_device_peak_gflops(be, 0.5, &gf, &how);
        if (rc >= 0) {
            if (json) {
                cJSON *j = cJSON_CreateObject();
                cJSON_AddStringToObject(j, "device", cf_be_name(be));
                cJSON_AddNumberToObject(j, "peak_gflops", gf);
                cJSON_AddStringToObject(j, "peak_method", how);
                char *txt = cJSON_PrintUnformatted(j);
                cJSON_Delete(j);
                if (txt) printf("%s\n", txt);
                free(txt);
            } else
                printf("%s: peak %.2f GFLOP/s (%s)\n", cf_be_name(be), gf, how);
        }
        cf_backend_destroy(be);
        return rc < 0 ? 1 : 0;
    }
    if (!config_path) CF_INFO("bench: no CONFIG given, measuring the built-in tiny model");
    cf_bench_result r;
    o.report = stderr;
    rc = cf_bench_run(&cfg, &o, &r);
    if (rc < 0) return rc == CF_ERR_INTERRUPTED ? 130 : 1;
    if (json) {
        char *s = cf_bench_to_json(&r);
        if (!s) return 1;
        printf("%s\n", s);
        free(s);
    } else {
        cf_bench_print(stdout, &r);
        if (o.trace_path)
            printf("  trace             %s (open in ui.perfetto.dev)\n", o.trace_path);
    }
    return 0;
}
