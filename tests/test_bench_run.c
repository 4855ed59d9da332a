/* clformer test: the training benchmark on a small model: the --json object parses and has every
 * field with sane values, steps after the first make no device allocations, the bytes moved per
 * step are exactly the token ids and the loss/norm scalars, the profile covers every category a
 * step runs, and the Chrome trace is valid JSON whose complete events are well formed and do not
 * overlap on a track. Backend from CF_TEST_DEVICE (default cpu). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bench/bench.h"
#include "cli/cli_env.h"

static int g_fail = 0;

static void expect(const char *what, int cond) {
    printf("  %-64s %s\n", what, cond ? "ok" : "FAIL");
    if (!cond) g_fail = 1;
}

/* clang-format off */
static const char *const FIELDS[] = {
    "config", "device", "gemm", "batch_size", "max_length", "grad_accum_steps", "num_params",
    "steps", "warmup", "tokens_per_step", "tokens_per_s", "ms_per_step", "ms_per_step_mean",
    "ms_per_step_min", "ms_per_step_max", "ms_per_step_p10", "ms_per_step_p90", "first_step_ms",
    "flops_per_token", "achieved_gflops", "peak_gflops", "peak_method", "mfu", "peak_host_bytes",
    "peak_device_bytes", "device_scratch_bytes", "analytic_bytes", "analytic",
    "h2d_bytes_per_step", "d2h_bytes_per_step", "first_step_allocs", "allocs_per_step",
    "ops_per_step", "final_loss", "host_cpu_cores", "profile_ms_per_step",
    "profile_gemm_gflop_per_step", "profile_gemm_ms_per_step", NULL};
/* clang-format on */

static double num(cJSON *o, const char *k) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Every op the backend wrappers record lands in its category (the flash kernels under attention,
 * not elementwise) */
static void categories(void) {
    static const struct {
        const char *op;
        int phase, cat;
    } T[] = {
        {"gemm", CF_PHASE_FORWARD, CF_CAT_GEMM},
        {"gemm_q8", CF_PHASE_FORWARD, CF_CAT_GEMM},
        {"weight_bias_backward", CF_PHASE_BACKWARD, CF_CAT_GEMM},
        {"bias_backward", CF_PHASE_BACKWARD, CF_CAT_GEMM},
        {"attention_forward", CF_PHASE_FORWARD, CF_CAT_ATTENTION},
        {"flash_forward", CF_PHASE_FORWARD, CF_CAT_ATTENTION},
        {"flash_backward", CF_PHASE_BACKWARD, CF_CAT_ATTENTION},
        {"decode_attention", CF_PHASE_FORWARD, CF_CAT_ATTENTION},
        {"kv_append", CF_PHASE_FORWARD, CF_CAT_ATTENTION},
        {"rope", CF_PHASE_FORWARD, CF_CAT_ATTENTION},
        {"rmsnorm_backward", CF_PHASE_BACKWARD, CF_CAT_NORM},
        {"act_forward", CF_PHASE_FORWARD, CF_CAT_ACTIVATION},
        {"swiglu_backward", CF_PHASE_BACKWARD, CF_CAT_ACTIVATION},
        {"crossentropy_fused", CF_PHASE_BACKWARD, CF_CAT_LOSS},
        {"encoder_forward", CF_PHASE_FORWARD, CF_CAT_EMBEDDING},
        {"embed_q8", CF_PHASE_FORWARD, CF_CAT_EMBEDDING},
        {"scale_rnorm", CF_PHASE_OPTIMIZER, CF_CAT_OPTIMIZER},
        {"upload", CF_PHASE_TRANSFER, CF_CAT_TRANSFER},
        {"fill", CF_PHASE_BACKWARD, CF_CAT_ELEMENTWISE},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        cf_prof_event e;
        memset(&e, 0, sizeof e);
        e.op = T[i].op;
        e.phase = T[i].phase;
        char what[96];
        snprintf(what, sizeof what, "profile category of %s: %s", T[i].op,
                 cf_prof_cat_name(T[i].cat));
        expect(what, cf_prof_category(&e) == T[i].cat);
    }
}

int main(void) {
    categories();
    const char *dev = getenv("CF_TEST_DEVICE");
    if (!dev || !*dev) dev = "cpu";
    cf_config cfg;
    cf_config_defaults(&cfg);
    cfg.d_model = 32;
    cfg.num_heads = 2;
    cfg.num_layers = 2;
    cfg.d_ff = 64;
    cfg.max_length = 16;
    cfg.vocab_size = 256; /* byte tokenizer (unused: random tokens) */
    cfg.batch_size = 4;
    cfg.grad_accum_steps = 2;
    snprintf(cfg.name, sizeof cfg.name, "bench-test");
    char trace[1200];
    snprintf(trace, sizeof trace, "%s/test_bench_trace.json", CF_BINARY_DIR);
    remove(trace);

    cf_bench_opts o;
    memset(&o, 0, sizeof o);
    o.device = dev;
    cf_backend_options bopts; /* the environment's, as the CLI reads it */
    cf_cli_backend_options_from_env(&bopts);
    o.backend = &bopts;
    o.origin = "test_bench_run";
    o.steps = 4;
    o.warmup = 1;
    o.profile = 1;
    o.profile_steps = 2;
    o.trace_path = trace;
    o.peak_seconds = 0.3;
    o.report = stdout;
    cf_bench_result r;
    int rc = cf_bench_run(&cfg, &o, &r);
    printf("cf_bench_run on %s: %s\n", dev, cf_status_str(rc));
    if (rc < 0) return 1;

    printf("--json:\n");
    char *js = cf_bench_to_json(&r);
    printf("  %s\n", js ? js : "(null)");
    cJSON *j = js ? cJSON_Parse(js) : NULL;
    expect("the JSON object parses", j != NULL && cJSON_IsObject(j));
    if (!j) return 1;
    for (int i = 0; FIELDS[i]; i++) {
        char what[96];
        snprintf(what, sizeof what, "has \"%s\"", FIELDS[i]);
        expect(what, cJSON_GetObjectItemCaseSensitive(j, FIELDS[i]) != NULL);
    }
    const double B = 4, T = 16, accum = 2;
    expect("tokens_per_step = B*T*accum", num(j, "tokens_per_step") == B * T * accum);
    expect("tokens_per_s > 0 and finite",
           num(j, "tokens_per_s") > 0 && isfinite(num(j, "tokens_per_s")));
    expect("tokens_per_s = tokens_per_step / (ms_per_step / 1000)",
           fabs(num(j, "tokens_per_s") - B * T * accum / (num(j, "ms_per_step") / 1e3)) <=
               1e-6 * num(j, "tokens_per_s"));
    expect("min <= p10 <= median <= p90 <= max",
           num(j, "ms_per_step_min") <= num(j, "ms_per_step_p10") &&
               num(j, "ms_per_step_p10") <= num(j, "ms_per_step") &&
               num(j, "ms_per_step") <= num(j, "ms_per_step_p90") &&
               num(j, "ms_per_step_p90") <= num(j, "ms_per_step_max"));
    expect("peak_gflops > 0", num(j, "peak_gflops") > 0);
    expect("0 < mfu < 1", num(j, "mfu") > 0 && num(j, "mfu") < 1);
    expect("mfu = flops_per_token * tokens_per_s / peak",
           fabs(num(j, "mfu") - num(j, "flops_per_token") * num(j, "tokens_per_s") /
                                    (num(j, "peak_gflops") * 1e9)) <= 1e-9);
    expect(
        "peak_host_bytes > peak_device_bytes > 0 (CPU)",
        num(j, "peak_device_bytes") > 0 &&
            (strcmp(dev, "cpu") != 0 || num(j, "peak_host_bytes") > num(j, "peak_device_bytes")));
    expect("peak_device_bytes >= analytic_bytes",
           num(j, "peak_device_bytes") >= num(j, "analytic_bytes"));
    /* per micro-batch: input and target ids; nothing else goes up during a step */
    expect("h2d_bytes_per_step = accum * 2 * B*T * 4 (token ids only)",
           num(j, "h2d_bytes_per_step") == accum * 2 * B * T * 4);
    /* grad norm (1 float) + the micro-batch losses (accum floats) */
    expect("d2h_bytes_per_step = (1 + accum) * 4", num(j, "d2h_bytes_per_step") == (1 + accum) * 4);
    printf("  device allocations: first step %.0f, per later step %.3f\n",
           num(j, "first_step_allocs"), num(j, "allocs_per_step"));
    expect("allocs_per_step after the first = 0", num(j, "allocs_per_step") == 0.0);
    expect("final_loss finite and near ln(256) on random tokens",
           fabs(num(j, "final_loss") - log(256.0)) < 1.0);
    /* the profiled GEMMs' work is exactly the linear layers' and the head's, forward and both
     * gradients, per micro-batch: 3 x 2 x B*T x (layers x (C*3C + C*C + 2*C*F) + C*V) */
    {
        const double BT = (double)cfg.batch_size * cfg.max_length, C = cfg.d_model, F = cfg.d_ff;
        const double want = cfg.grad_accum_steps * 3.0 * 2.0 * BT *
                            (cfg.num_layers * (C * 3 * C + C * C + 2 * C * F) +
                             C * cfg.vocab_size) / 1e9;
        const double got = num(j, "profile_gemm_gflop_per_step");
        char what[160];
        snprintf(what, sizeof what, "profile_gemm_gflop_per_step %.9f = the model's %.9f", got,
                 want);
        expect(what, fabs(got - want) <= 1e-9 * want);
        expect("profile_gemm_ms_per_step > 0", num(j, "profile_gemm_ms_per_step") > 0);
    }
    cJSON *pm = cJSON_GetObjectItemCaseSensitive(j, "profile_ms_per_step");
    const char *cats[] = {"gemm", "attention", "norm",     "activation",
                          "loss", "optimizer", "transfer", NULL};
    for (int i = 0; cats[i]; i++) {
        /* (OpenCL runs the GELU in the epilogue of its GEMM: no activation op of its own; only
         * the CPU backend is required to show one) */
        if (!strcmp(cats[i], "activation") && strcmp(dev, "cpu") != 0) continue;
        char what[96];
        snprintf(what, sizeof what, "profile has time for %s", cats[i]);
        expect(what, num(pm, cats[i]) > 0);
    }
    cJSON_Delete(j);
    free(js);

    printf("trace %s:\n", trace);
    char *txt = NULL;
    size_t len = 0;
    if (cf_read_file(trace, &txt, &len) < 0) {
        expect("trace file was written", 0);
        return 1;
    }
    cJSON *t = cJSON_Parse(txt);
    expect("trace is valid JSON", t != NULL);
    cJSON *ev = t ? cJSON_GetObjectItemCaseSensitive(t, "traceEvents") : NULL;
    expect("has a traceEvents array", cJSON_IsArray(ev));
    int nx = 0, nmeta = 0, bad = 0, overlap = 0, steps = 0, named_ok = 0, unbalanced = 0;
    double last_end[8];
    for (int i = 0; i < 8; i++)
        last_end[i] = -1e300;
    cJSON *e;
    cJSON_ArrayForEach(e, ev) {
        const cJSON *ph = cJSON_GetObjectItemCaseSensitive(e, "ph");
        const char *p = cJSON_IsString(ph) ? ph->valuestring : "";
        if (!strcmp(p, "M")) {
            nmeta++;
            continue;
        }
        if (!strcmp(p, "B") || !strcmp(p, "E")) unbalanced += !strcmp(p, "B") ? 1 : -1;
        if (strcmp(p, "X") != 0) {
            if (strcmp(p, "B") && strcmp(p, "E")) bad++;
            continue;
        }
        nx++;
        const double ts = num(e, "ts"), dur = num(e, "dur"), tid = num(e, "tid");
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (!(ts >= 0) || !(dur >= 0) || !(tid >= 0 && tid < 8) || !cJSON_IsString(nm) ||
            isnan(num(e, "pid"))) {
            bad++;
            continue;
        }
        /* events on one track come in time order and must not overlap (1 ns rounding allowed) */
        if (ts < last_end[(int)tid] - 1e-3) overlap++;
        last_end[(int)tid] = ts + dur;
        if (!strncmp(nm->valuestring, "step ", 5)) steps++;
        if (!strcmp(nm->valuestring, "L1.fwd.gemm") || !strcmp(nm->valuestring, "L0.bwd.gemm"))
            named_ok++;
    }
    printf("  %d complete events, %d metadata events, %d step spans\n", nx, nmeta, steps);
    expect("every event is a complete event (X) with ts >= 0, dur >= 0", bad == 0 && nx > 0);
    expect("begin/end events (if any) are balanced", unbalanced == 0);
    expect("no overlapping events on a track", overlap == 0);
    expect("one span per profiled step", steps == 2);
    expect("op events are named like L1.fwd.gemm / L0.bwd.gemm", named_ok >= 2);
    expect("tracks are named (thread_name metadata)", nmeta >= 3);
    cJSON_Delete(t);
    free(txt);
    remove(trace);
    printf(g_fail ? "FAILED\n" : "all ok\n");
    return g_fail;
}
