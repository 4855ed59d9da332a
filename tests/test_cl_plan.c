/* clformer test: the OpenCL planning layer's rules (cl_plan.c) on device descriptions, no device
 * needed: the GEMM path, variant and tile for representative shapes on a discrete GPU, a CPU
 * device and a GPU with small work-groups or little local memory; the GEMM and fast modes,
 * CLBlast and its failure; tuning-file overrides (tiled parameters, path, the register-blocked
 * kernel's choice, same-bucket lookups, a recorded choice that does not fit); tuner answers that
 * do not fit the work-group limit; the GEMM on half operands' path; the attention path by head size, device type, mode and
 * limits. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "backend/opencl/cl_plan.h"
#include "backend/opencl/cl_tuning.h"
#include "test_expect.h"

/* an H100-class discrete GPU without CLBlast, auto modes */
static cf_cl_plan_device gpu_dev(void) {
    cf_cl_plan_device d;
    memset(&d, 0, sizeof d);
    d.name = "test GPU";
    d.gpu = 1;
    d.compute_units = 132;
    d.local_mem = 49152;
    d.max_group = 1024;
    d.gemm_max_group = 1024;
    d.private_budget = SIZE_MAX;
    d.gemm_mode = CF_GEMM_AUTO;
    d.fast_mode = -1;
    d.attention_mode = CF_ATT_AUTO;
    return d;
}

/* a PoCL-like CPU device: 2 cores, large groups, a private-state budget of 4 MiB */
static cf_cl_plan_device cpu_dev(void) {
    cf_cl_plan_device d = gpu_dev();
    d.name = "test CPU";
    d.gpu = 0;
    d.compute_units = 2;
    d.local_mem = 262144;
    d.max_group = 4096;
    d.gemm_max_group = 4096;
    d.private_budget = 4u << 20;
    return d;
}

static cf_cl_gemm_plan plan(const cf_cl_plan_device *d, int M, int N, int K, int ta, int tb,
                            int batch) {
    cf_cl_gemm_plan p;
    cf_cl_plan_gemm_rule(d, M, N, K, ta, tb, batch, 0, &p);
    return p;
}

static int same_choice(const cf_cl_gemm_fast_choice *a, const cf_cl_gemm_fast_choice *b) {
    return a->rm == b->rm && a->rn == b->rn && a->bk == b->bk && a->split == b->split &&
           a->wg == b->wg;
}

static void test_gpu(void) {
    cf_cl_plan_device d = gpu_dev();
    /* the LM head and a weight gradient of a 384-wide model at 4096 rows: the fast kernel with the
     * rule's choice */
    static const int big[2][5] = {{4096, 16000, 384, 0, 1}, {384, 384, 4096, 1, 0}};
    for (int i = 0; i < 2; i++) {
        const int *s = big[i];
        cf_cl_gemm_plan p = plan(&d, s[0], s[1], s[2], s[3], s[4], 1);
        cf_cl_gemm_fast_choice rule;
        cf_cl_gemm_fast_rule(s[0], s[1], s[2], d.compute_units, d.local_mem, d.fast_wide, &rule);
        expect(p.path == CF_PLAN_FAST && same_choice(&p.fast, &rule) && !p.fast_source,
               "GPU %dx%dx%d: fast with the rule's choice (got %s %dx%d bk%d split%d)", s[0], s[1],
               s[2], cf_cl_plan_path_name(p.path), p.fast.wg * p.fast.rm, p.fast.wg * p.fast.rn,
               p.fast.bk, p.fast.split);
    }
    /* a small product: the tiled kernel, 8x8 groups below 256 */
    cf_cl_gemm_plan p = plan(&d, 64, 64, 64, 0, 0, 1);
    expect(p.path == CF_PLAN_NATIVE && p.native.tile == 8 && p.native.wpt == 4 &&
               p.native.tk == 16 && strcmp(p.native.source, "rule") == 0,
           "GPU 64^3: native 8x8 wpt 4 tk 16 (rule) (got %s %dx%d wpt %d)",
           cf_cl_plan_path_name(p.path), p.native.tile, p.native.tile, p.native.wpt);
    /* K below 64: never the fast kernel */
    p = plan(&d, 8192, 8192, 32, 0, 1, 1);
    expect(p.path == CF_PLAN_NATIVE && p.native.tile == 16 && p.native.wpt == 8,
           "GPU 8192x8192x32: native 16x16 wpt 8 (got %s, tile %d wpt %d)",
           cf_cl_plan_path_name(p.path), p.native.tile, p.native.wpt);
    /* batched products (attention): the tiled kernel */
    p = plan(&d, 1024, 1024, 64, 0, 1, 48);
    expect(p.path == CF_PLAN_NATIVE, "GPU batched 1024x1024x64: native (got %s)",
           cf_cl_plan_path_name(p.path));
    /* 512^3 = 2^27: fast without CLBlast; with CLBlast in auto mode the threshold is 2^28 */
    p = plan(&d, 512, 512, 512, 0, 0, 1);
    expect(p.path == CF_PLAN_FAST, "GPU 512^3 without CLBlast: fast (got %s)",
           cf_cl_plan_path_name(p.path));
    d.have_clblast = 1;
    p = plan(&d, 512, 512, 512, 0, 0, 1);
    expect(p.path == CF_PLAN_CLBLAST, "GPU 512^3 with CLBlast: clblast (got %s)",
           cf_cl_plan_path_name(p.path));
    p = plan(&d, 1024, 1024, 64, 0, 1, 48);
    expect(p.path == CF_PLAN_NATIVE, "GPU batched with CLBlast: native (got %s)",
           cf_cl_plan_path_name(p.path));
    d.gemm_mode = CF_GEMM_NATIVE;
    p = plan(&d, 512, 512, 512, 0, 0, 1);
    expect(p.path == CF_PLAN_FAST, "GPU 512^3, gemm native: fast (got %s)",
           cf_cl_plan_path_name(p.path));
    p = plan(&d, 64, 64, 64, 0, 0, 1);
    expect(p.path == CF_PLAN_NATIVE, "GPU 64^3, gemm native: native (got %s)",
           cf_cl_plan_path_name(p.path));
    d.gemm_mode = CF_GEMM_CLBLAST;
    p = plan(&d, 4096, 16000, 384, 0, 1, 1);
    expect(p.path == CF_PLAN_CLBLAST, "GPU LM head, gemm clblast: clblast (got %s)",
           cf_cl_plan_path_name(p.path));
    d.gemm_mode = CF_GEMM_AUTO;
    d.clblast_failed = 1;
    p = plan(&d, 512, 512, 512, 0, 0, 1);
    expect(p.path == CF_PLAN_FAST, "GPU 512^3 after a CLBlast failure: fast (got %s)",
           cf_cl_plan_path_name(p.path));
    p = plan(&d, 64, 64, 64, 0, 0, 1);
    expect(p.path == CF_PLAN_NATIVE, "GPU 64^3 after a CLBlast failure: native (got %s)",
           cf_cl_plan_path_name(p.path));
    d.clblast_failed = 0;
    d.fast_broken = 1;
    p = plan(&d, 4096, 16000, 384, 0, 1, 1);
    expect(p.path == CF_PLAN_CLBLAST, "GPU LM head, fast kernel broken: clblast (got %s)",
           cf_cl_plan_path_name(p.path));
    d.fast_broken = 0;
    d.fast_mode = 0;
    p = plan(&d, 4096, 16000, 384, 0, 1, 1);
    expect(p.path == CF_PLAN_CLBLAST, "GPU LM head, gemm_fast 0: clblast (got %s)",
           cf_cl_plan_path_name(p.path));
    /* no variant fits 8 KiB of local memory: the other paths, silently */
    d = gpu_dev();
    d.local_mem = 8192;
    p = plan(&d, 4096, 16000, 384, 0, 1, 1);
    expect(p.path == CF_PLAN_NATIVE && p.native.tile == 16 && p.native.wpt == 4,
           "GPU with 8 KiB local memory: native 16x16 wpt 4 (got %s, tile %d wpt %d)",
           cf_cl_plan_path_name(p.path), p.native.tile, p.native.wpt);
}

static void test_cpu(void) {
    cf_cl_plan_device d = cpu_dev();
    cf_cl_gemm_plan p = plan(&d, 4096, 16000, 384, 0, 1, 1);
    expect(p.path == CF_PLAN_NATIVE && p.native.tile == 16 && p.native.wpt == 8,
           "CPU LM head: native 16x16 wpt 8 (got %s, tile %d wpt %d)",
           cf_cl_plan_path_name(p.path), p.native.tile, p.native.wpt);
    p = plan(&d, 200, 200, 64, 0, 0, 1);
    expect(p.path == CF_PLAN_NATIVE && p.native.tile == 8, "CPU 200x200x64: native 8x8 (tile %d)",
           p.native.tile);
    d.fast_mode = 1; /* CF_GEMM_FAST=1: every plain product, whatever the device */
    p = plan(&d, 64, 64, 64, 0, 0, 1);
    expect(p.path == CF_PLAN_FAST, "CPU 64^3 with gemm_fast 1: fast (got %s)",
           cf_cl_plan_path_name(p.path));
    p = plan(&d, 64, 64, 64, 0, 0, 4);
    expect(p.path == CF_PLAN_NATIVE, "CPU batched with gemm_fast 1: native (got %s)",
           cf_cl_plan_path_name(p.path));
}

static int tile16_tuner(void *user, const char *device, int M, int N, int K, int ta, int tb,
                        cf_cl_gemm_params *out) {
    (void)user, (void)device, (void)M, (void)N, (void)K, (void)ta, (void)tb;
    out->tile = 16;
    out->wpt = 4;
    out->tk = 16;
    out->source = "test tuner";
    return 1;
}

static void test_limits(void) {
    /* a device (or a kernel) that runs at most 64 work-items per group: 8x8 tiles everywhere */
    cf_cl_plan_device d = gpu_dev();
    d.max_group = 64;
    d.gemm_max_group = 64;
    cf_cl_gemm_plan p = plan(&d, 4096, 4096, 4096, 0, 0, 4);
    expect(p.native.tile == 8 && p.native.wpt == 4,
           "64-item groups: 8x8 tiles, wpt 4 (got %dx%d wpt %d)", p.native.tile, p.native.tile,
           p.native.wpt);
    /* 16x16 groups possible but the kernel limited to 64 at start-up (gemm_max_group) */
    d.max_group = 1024;
    p = plan(&d, 4096, 4096, 4096, 0, 0, 4);
    expect(p.native.tile == 8, "16x16 kernels unavailable: 8x8 tiles (got %d)", p.native.tile);
    /* a tuner answer larger than the work-group limit: the rule, with a warning */
    d.max_group = 64;
    d.tuner = tile16_tuner;
    cf_cl_gemm_params np;
    char warn[768];
    cf_cl_plan_native_params(&d, 1000, 1000, 100, 0, 0, &np, warn, sizeof warn);
    expect(np.tile == 8 && strcmp(np.source, "rule") == 0 && strstr(warn, "do not fit") != NULL,
           "tuner's 16x16 on a 64-item device: rule 8x8 with a warning (got %d, %s: %s)",
           np.tile, np.source, warn);
    d.max_group = 1024;
    d.gemm_max_group = 1024;
    cf_cl_plan_native_params(&d, 1000, 1000, 100, 0, 0, &np, warn, sizeof warn);
    expect(np.tile == 16 && strcmp(np.source, "test tuner") == 0 && warn[0] == 0,
           "tuner's 16x16 on a 1024-item device: taken (got %d, %s)", np.tile, np.source);
    /* local memory too small for 128x128 blocks (16.5 KiB): wpt 4 */
    d = gpu_dev();
    d.local_mem = 16384;
    p = plan(&d, 4096, 4096, 64, 0, 0, 4);
    expect(p.native.tile == 16 && p.native.wpt == 4,
           "16 KiB local memory: 16x16 wpt 4 (got %d wpt %d)", p.native.tile, p.native.wpt);
    /* a CPU thread stack too small for 256 items of wpt 8: wpt 4 */
    d = cpu_dev();
    d.private_budget = 256 * 1024;
    p = plan(&d, 4096, 4096, 64, 0, 0, 1);
    expect(p.native.tile == 16 && p.native.wpt == 4,
           "256 KiB private budget: 16x16 wpt 4 (got %d wpt %d)", p.native.tile, p.native.wpt);
}

static const char *g_entry_precision = ""; /* the precision add_entry tags ("" = fp32) */

static void add_entry(cf_tuning *t, const char *label, int M, int N, int K, int ta, int tb,
                      int path, int tile, int wpt, int tk, int vw, int pad, cf_tuning_fast fast) {
    cf_tuning_gemm g;
    memset(&g, 0, sizeof g);
    snprintf(g.precision, sizeof g.precision, "%s", g_entry_precision);
    snprintf(g.label, sizeof g.label, "%s", label);
    g.M = M, g.N = N, g.K = K, g.ta = ta, g.tb = tb;
    g.path = path;
    g.tile = tile, g.wpt = wpt, g.tk = tk, g.vw = vw, g.pad = pad;
    g.fast = fast;
    cf_tuning_set_gemm(t, &g);
}

static void test_tuning(void) {
    cf_tuning t;
    cf_tuning_init(&t, "test platform", "test GPU", "1.0");
    const cf_tuning_fast none = {0, 0, 0, 0, 0};
    add_entry(&t, "lm_head.fwd", 4096, 16000, 384, 0, 1, CF_TUNING_FAST, 16, 8, 16, 1, 1,
              (cf_tuning_fast){8, 4, 16, 16, 2});
    add_entry(&t, "small", 96, 80, 300, 0, 1, CF_TUNING_FAST, 8, 4, 16, 1, 1,
              (cf_tuning_fast){8, 4, 8, 8, 2});
    add_entry(&t, "square 1024", 1024, 1024, 1024, 0, 0, CF_TUNING_NATIVE, 16, 4, 32, 4, 2, none);
    add_entry(&t, "clblast", 2048, 2048, 512, 0, 0, CF_TUNING_CLBLAST, 16, 8, 16, 1, 1, none);
    add_entry(&t, "too big", 3000, 3000, 3000, 1, 1, CF_TUNING_FAST, 16, 8, 16, 1, 1,
              (cf_tuning_fast){8, 8, 16, 16, 1});
    add_entry(&t, "wide", 8192, 3072, 768, 0, 1, CF_TUNING_FAST, 16, 8, 16, 1, 1,
              (cf_tuning_fast){16, 8, 8, 16, 1});
    cf_cl_plan_device d = gpu_dev();
    d.tuner = cf_cl_tuning_hook;
    d.tuner_user = &t;
    d.tuning = &t;

    cf_cl_gemm_plan p = plan(&d, 4096, 16000, 384, 0, 1, 1);
    const cf_cl_gemm_fast_choice want = {8, 4, 16, 2, 16};
    expect(p.path == CF_PLAN_FAST && same_choice(&p.fast, &want) && p.fast_source &&
               strcmp(p.fast_source, "from the tuning file") == 0,
           "tuning file: LM head fast 128x64 bk16 split2 (got %s %dx%d bk%d split%d, %s)",
           cf_cl_plan_path_name(p.path), p.fast.wg * p.fast.rm, p.fast.wg * p.fast.rn, p.fast.bk,
           p.fast.split, p.fast_source ? p.fast_source : "rule");
    /* 256x128 blocks (16x8 outputs per work-item): the fp32 form takes them, the tensor-core
     * forms decline them with a reason and the rule decides (only the form changes here, so the
     * file's fp32 entry stays the one looked up) */
    p = plan(&d, 8192, 3072, 768, 0, 1, 1);
    expect(p.path == CF_PLAN_FAST && p.fast.rm == 16 && p.fast.rn == 8 && p.fast.bk == 8 &&
               p.fast_source,
           "tuning file: 8192x3072x768 fast 256x128 bk8 in the fp32 form (got %s %dx%d, %s)",
           cf_cl_plan_path_name(p.path), p.fast.wg * p.fast.rm, p.fast.wg * p.fast.rn,
           p.fast_source ? p.fast_source : "rule");
    for (int mma = 1; mma <= 3; mma++) {
        d.fast_mma = mma;
        char why16[512];
        cf_cl_gemm_fast_choice c16;
        int ex16 = 0;
        const int f16 =
            cf_cl_plan_tuned_fast(&d, 8192, 3072, 768, 0, 1, &c16, &ex16, why16, sizeof why16);
        expect(!f16 && strstr(why16, "no variant of the kernel's") != NULL &&
                   strstr(why16, "rm, rn 4 or 8") != NULL,
               "tuning file: 256x128 declined by the tensor-core form %d (%s)", mma, why16);
    }
    d.fast_mma = 0;
    /* a small shape the rule would leave to the tiled kernel: fast, as measured */
    p = plan(&d, 96, 80, 300, 0, 1, 1);
    expect(p.path == CF_PLAN_FAST && p.fast.bk == 8 && p.fast.wg * p.fast.rm == 64 &&
               p.fast.wg * p.fast.rn == 32,
           "tuning file: 96x80x300 fast 64x32 bk8 (got %s)", cf_cl_plan_path_name(p.path));
    /* the same bucket, another shape */
    p = plan(&d, 100, 84, 290, 0, 1, 1);
    expect(p.path == CF_PLAN_FAST && p.fast_source &&
               strcmp(p.fast_source, "from the tuning file, same bucket") == 0,
           "tuning file: 100x84x290 from the same bucket (got %s, %s)",
           cf_cl_plan_path_name(p.path), p.fast_source ? p.fast_source : "rule");
    /* tiled parameters from the file, and the measured native path kept against CLBlast */
    d.have_clblast = 1;
    p = plan(&d, 1024, 1024, 1024, 0, 0, 1);
    expect(p.path == CF_PLAN_NATIVE && p.native.tile == 16 && p.native.wpt == 4 &&
               p.native.tk == 32 && p.native.vw == 4 && p.native.pad == 2 &&
               strcmp(p.native.source, "tuning") == 0,
           "tuning file: 1024^3 native 16x16 wpt4 tk32 vw4 pad2 (got %s %d wpt%d tk%d, %s)",
           cf_cl_plan_path_name(p.path), p.native.tile, p.native.wpt, p.native.tk,
           p.native.source);
    p = plan(&d, 2048, 2048, 512, 0, 0, 1);
    expect(p.path == CF_PLAN_CLBLAST, "tuning file: 2048x2048x512 clblast (got %s)",
           cf_cl_plan_path_name(p.path));
    /* without CLBlast the measured entry keeps its tiled parameters, not the fast kernel */
    d.have_clblast = 0;
    p = plan(&d, 2048, 2048, 512, 0, 0, 1);
    expect(p.path == CF_PLAN_NATIVE && p.native.wpt == 8,
           "tuning file, no CLBlast: 2048x2048x512 native wpt 8 (got %s)",
           cf_cl_plan_path_name(p.path));
    /* a recorded choice with 256-item groups on a device of 128: the rule decides */
    d.max_group = 128;
    d.gemm_max_group = 128;
    char why[512];
    cf_cl_gemm_fast_choice c;
    int exact = 0;
    int found = cf_cl_plan_tuned_fast(&d, 3000, 3000, 3000, 1, 1, &c, &exact, why, sizeof why);
    expect(!found && strstr(why, "does not fit") != NULL,
           "tuning file: a fast choice that does not fit is declined (%s)", why);
    p = plan(&d, 3000, 3000, 3000, 1, 1, 1);
    cf_cl_gemm_fast_choice rule;
    cf_cl_gemm_fast_rule(3000, 3000, 3000, d.compute_units, d.local_mem, d.fast_wide, &rule);
    expect(p.path == CF_PLAN_FAST && same_choice(&p.fast, &rule) && !p.fast_source,
           "tuning file: misfit choice -> the rule's fast choice (got %s)",
           cf_cl_plan_path_name(p.path));
    /* another hook than the file's: its fast entries are not consulted */
    d = gpu_dev();
    d.tuner = cf_cl_tuning_hook;
    d.tuner_user = &t;
    d.tuning = NULL;
    p = plan(&d, 96, 80, 300, 0, 1, 1);
    expect(p.path == CF_PLAN_NATIVE, "tuning data without the file as hook: 96x80x300 native "
           "(got %s)", cf_cl_plan_path_name(p.path));
    cf_tuning_free(&t);
}

/* The plan applies only tuning entries of its run's precision: fp32 entries under fp32, tf32
 * entries under tf32 (the tensor-core form on: mma_tf32); with tf32, an entry that measured the
 * tiled kernel faster than the tensor-core kernel keeps the shape there. */
static void test_tuning_precision(void) {
    cf_tuning t;
    cf_tuning_init(&t, "test platform", "test GPU", "1.0");
    const cf_tuning_fast none = {0, 0, 0, 0, 0};
    add_entry(&t, "fp32 small", 96, 80, 300, 0, 1, CF_TUNING_FAST, 8, 4, 16, 1, 1,
              (cf_tuning_fast){8, 4, 8, 8, 2});
    g_entry_precision = "tf32";
    add_entry(&t, "tf32 small", 96, 80, 300, 0, 1, CF_TUNING_FAST, 8, 4, 16, 1, 1,
              (cf_tuning_fast){8, 8, 8, 16, 3});
    g_entry_precision = "";
    add_entry(&t, "fp32 only", 2000, 2000, 1000, 0, 0, CF_TUNING_FAST, 8, 4, 16, 1, 1,
              (cf_tuning_fast){4, 4, 16, 16, 1});
    cf_cl_plan_device d = gpu_dev();
    d.tuner = cf_cl_tuning_hook;
    d.tuner_user = &t;
    d.tuning = &t;
    cf_cl_gemm_plan p = plan(&d, 96, 80, 300, 0, 1, 1);
    expect(p.path == CF_PLAN_FAST && p.fast.rm == 8 && p.fast.rn == 4 && p.fast.split == 2,
           "fp32 run: the fp32 entry's choice 8x4 split 2 (got %s rm %d rn %d split %d)",
           cf_cl_plan_path_name(p.path), p.fast.rm, p.fast.rn, p.fast.split);
    d.mma_tf32 = 1;
    p = plan(&d, 96, 80, 300, 0, 1, 1);
    expect(p.path == CF_PLAN_FAST && p.fast.rm == 8 && p.fast.rn == 8 && p.fast.split == 3 &&
               p.fast_source && strcmp(p.fast_source, "from the tuning file") == 0,
           "tf32 run: the tf32 entry's choice 8x8 split 3 (got %s rm %d rn %d split %d)",
           cf_cl_plan_path_name(p.path), p.fast.rm, p.fast.rn, p.fast.split);
    p = plan(&d, 2000, 2000, 1000, 0, 0, 1);
    expect(p.path == CF_PLAN_FAST && !p.fast_source,
           "tf32 run, a shape with an fp32 entry only: the rule's choice (got %s, %s)",
           cf_cl_plan_path_name(p.path), p.fast_source ? p.fast_source : "rule");
    /* a tf32 entry that measured the tiled kernel fastest (fp32 on every device) */
    g_entry_precision = "tf32";
    add_entry(&t, "tf32 native", 1024, 1024, 1024, 0, 0, CF_TUNING_NATIVE, 16, 4, 32, 4, 2, none);
    g_entry_precision = "";
    cf_tuning_keep_precision(&t, "tf32"); /* as the backend does when it loads the file */
    p = plan(&d, 1024, 1024, 1024, 0, 0, 1);
    expect(p.path == CF_PLAN_NATIVE && p.native.tile == 16 && p.native.pad == 2,
           "tf32 run: a tf32 entry measuring the tiled kernel fastest keeps it (got %s)",
           cf_cl_plan_path_name(p.path));
    cf_tuning_free(&t);
}

/* precision bf16 on an engine with the GEMM on half operands: path half, with the register-blocked
 * kernel's choice as its fallback, under auto from 128 x 128 outputs over K >= 128 */
static void test_half(void) {
    cf_cl_plan_device d = gpu_dev();
    d.gemm_round = 1;
    d.fast_mma = 2;
    d.half_mode = 2;
    cf_cl_gemm_fast_choice rule;
    cf_cl_gemm_fast_rule_form(4096, 2304, 768, 0, 1, d.compute_units, d.local_mem, 0, 2, &rule);
    cf_cl_gemm_plan p = plan(&d, 4096, 2304, 768, 0, 1, 1);
    expect(p.path == CF_PLAN_HALF && same_choice(&p.fast, &rule) && rule.rm > 0,
           "bf16, half auto, 4096x2304x768 NT: half with the rule's fast choice as its fallback "
           "(got %s %dx%d)", cf_cl_plan_path_name(p.path), p.fast.wg * p.fast.rm,
           p.fast.wg * p.fast.rn);
    const int small[][3] = {{127, 768, 768}, {4096, 64, 768}, {768, 768, 127}};
    for (int i = 0; i < 3; i++) {
        p = plan(&d, small[i][0], small[i][1], small[i][2], 1, 0, 1);
        expect(p.path == CF_PLAN_FAST, "bf16, half auto, %dx%dx%d: fast, below the threshold "
               "(got %s)", small[i][0], small[i][1], small[i][2], cf_cl_plan_path_name(p.path));
    }
    p = plan(&d, 128, 128, 128, 1, 1, 1);
    expect(p.path == CF_PLAN_HALF, "bf16, half auto, 128^3 TT: half (got %s)",
           cf_cl_plan_path_name(p.path));
    p = plan(&d, 4096, 2304, 768, 0, 1, 12);
    expect(p.path == CF_PLAN_NATIVE, "bf16, half auto, a batched product: native (got %s)",
           cf_cl_plan_path_name(p.path));
    d.half_mode = 1;
    p = plan(&d, 3, 5, 1, 0, 0, 1);
    expect(p.path == CF_PLAN_HALF, "bf16, CF_GEMM_HALF=1, 3x5x1: half (got %s)",
           cf_cl_plan_path_name(p.path));
    d.half_mode = 0;
    p = plan(&d, 4096, 2304, 768, 0, 1, 1);
    expect(p.path == CF_PLAN_FAST, "bf16, no half GEMM: fast (got %s)",
           cf_cl_plan_path_name(p.path));
    d.half_mode = 2;
    d.fast_broken = 1;
    p = plan(&d, 4096, 2304, 768, 0, 1, 1);
    expect(p.path != CF_PLAN_HALF && p.path != CF_PLAN_FAST,
           "bf16 after the register-blocked kernel failed: neither it nor half (got %s)",
           cf_cl_plan_path_name(p.path));
    /* a tuning file's bf16 choice becomes the fallback */
    cf_tuning t;
    cf_tuning_init(&t, "test platform", "test GPU", "1.0");
    g_entry_precision = "bf16";
    add_entry(&t, "bf16 entry", 1024, 1024, 1024, 0, 0, CF_TUNING_FAST, 8, 4, 16, 1, 1,
              (cf_tuning_fast){8, 8, 16, 16, 2});
    g_entry_precision = "";
    d.fast_broken = 0;
    d.tuner = cf_cl_tuning_hook;
    d.tuner_user = &t;
    d.tuning = &t;
    p = plan(&d, 1024, 1024, 1024, 0, 0, 1);
    expect(p.path == CF_PLAN_HALF && p.fast.split == 2 && p.fast_source &&
               strcmp(p.fast_source, "from the tuning file") == 0,
           "bf16 with a bf16 tuning entry: half, the entry's choice as its fallback (got %s split "
           "%d)", cf_cl_plan_path_name(p.path), p.fast.split);
    cf_tuning_free(&t);
    expect(cf_cl_plan_half_takes(2, 128, 128, 128) && !cf_cl_plan_half_takes(2, 128, 128, 64) &&
               cf_cl_plan_half_takes(1, 1, 1, 1) && !cf_cl_plan_half_takes(0, 4096, 4096, 4096) &&
               !cf_cl_plan_half_takes(1, 0, 4, 4),
           "cf_cl_plan_half_takes: auto from 128^3, on from 1, off never, empty never");
}

static void test_attention(void) {
    cf_cl_plan_device gpu = gpu_dev(), cpu = cpu_dev();
    cf_cl_attention_plan a;
    cf_cl_plan_attention_rule(&gpu, CF_ATT_AUTO, 768, 12, &a);
    expect(a.fused && a.hs == 64 && a.n_ty == 2 && a.ty[0] == 16 && a.ty[1] == 8,
           "GPU hs 64: fused, groups of 256 then 128 (fused %d, n_ty %d)", a.fused, a.n_ty);
    cf_cl_plan_attention_rule(&gpu, CF_ATT_AUTO, 384, 6, &a);
    expect(a.fused && a.hs == 64, "GPU wiki model (384/6): fused (%s)", a.why);
    cf_cl_plan_attention_rule(&gpu, CF_ATT_AUTO, 1024, 8, &a);
    expect(!a.fused && strstr(a.why, "head size") != NULL, "GPU hs 128: batched GEMMs (%s)",
           a.why);
    cf_cl_plan_attention_rule(&gpu, CF_ATT_AUTO, 100, 3, &a);
    expect(!a.fused, "C not a multiple of NH: batched GEMMs (%s)", a.why);
    cf_cl_plan_attention_rule(&gpu, CF_ATT_GEMM, 768, 12, &a);
    expect(!a.fused && strstr(a.why, "gemm") != NULL, "mode gemm: batched GEMMs (%s)", a.why);
    cf_cl_plan_attention_rule(&cpu, CF_ATT_AUTO, 768, 12, &a);
    expect(!a.fused && strstr(a.why, "CPU") != NULL, "CPU auto: batched GEMMs (%s)", a.why);
    cf_cl_plan_attention_rule(&cpu, CF_ATT_FUSED, 768, 12, &a);
    expect(a.fused && a.ty[0] == 16, "CPU fused mode: fused (n_ty %d)", a.n_ty);
    gpu.max_group = 128;
    cf_cl_plan_attention_rule(&gpu, CF_ATT_AUTO, 768, 12, &a);
    expect(a.fused && a.n_ty == 1 && a.ty[0] == 8, "GPU with 128-item groups: fused, groups of "
           "128 only (n_ty %d, ty %d)", a.n_ty, a.ty[0]);
    gpu = gpu_dev();
    gpu.local_mem = 16384;
    cf_cl_plan_attention_rule(&gpu, CF_ATT_AUTO, 768, 12, &a);
    expect(!a.fused && strstr(a.why, "local memory") != NULL,
           "GPU with 16 KiB local memory, hs 64: batched GEMMs (%s)", a.why);
    gpu.local_mem = 20480;
    cf_cl_plan_attention_rule(&gpu, CF_ATT_AUTO, 256, 8, &a);
    expect(a.fused && a.hs == 32 && a.n_ty == 1 && a.ty[0] == 8,
           "GPU with 20 KiB local memory, hs 32: fused, groups of 128 (n_ty %d)", a.n_ty);
}

/* The flash backward through the matrix ops (cl_plan.h): when it is considered, and its split and
 * decision at GPT-2 124M's attention shapes on an 80 GB GPU (1/24 of it: 3.33 GB of scratch) */
static void test_flash_matrix(void) {
    const uint64_t mem = 80000000000ull, alloc = mem / 4;
    cf_attn_desc d = {8, 1024, 12, 12, 64, 0};
    expect(cf_cl_plan_flash_matrix_considered(CF_FLASH_K_AUTO, 1, 0, &d, 0),
           "auto on a GPU: considered");
    expect(!cf_cl_plan_flash_matrix_considered(CF_FLASH_K_AUTO, 0, 0, &d, 0),
           "auto on a CPU device: not considered");
    expect(!cf_cl_plan_flash_matrix_considered(CF_FLASH_K_AUTO, 1, 1, &d, 0),
           "auto after its scratch failed to allocate: not considered");
    expect(cf_cl_plan_flash_matrix_considered(CF_FLASH_K_MATRIX, 0, 1, &d, 0),
           "matrix by name (a CPU device, even after a failure): considered");
    expect(!cf_cl_plan_flash_matrix_considered(CF_FLASH_K_TILED, 1, 0, &d, 0) &&
               !cf_cl_plan_flash_matrix_considered(CF_FLASH_K_ROWS, 1, 0, &d, 0),
           "tiled or rows by name: not considered");
    expect(!cf_cl_plan_flash_matrix_considered(CF_FLASH_K_MATRIX, 1, 0, &d, 1),
           "a document mask: not considered, even by name");
    d.window = 256;
    expect(!cf_cl_plan_flash_matrix_considered(CF_FLASH_K_MATRIX, 1, 0, &d, 0),
           "a window narrower than T: not considered");
    d.window = 1024;
    expect(cf_cl_plan_flash_matrix_considered(CF_FLASH_K_AUTO, 1, 0, &d, 0),
           "a window of T (no narrower than full causal): considered");
    d.window = 0;

    cf_cl_flash_split m;
    int run = cf_cl_plan_flash_matrix_split(&d, 0, 1, 0, mem, alloc, &m);
    expect(run && m.fused && m.parts == 2 && m.nb == 8 && m.nh == 12,
           "T 1024 x 8, fused: runs, the whole batch at once (nb %zu, nh %zu)", m.nb, m.nh);
    run = cf_cl_plan_flash_matrix_split(&d, 0, 0, 0, mem, alloc, &m);
    expect(!run && m.parts == 3, "no fused variant: auto declines (the batched GEMMs were slower)");
    run = cf_cl_plan_flash_matrix_split(&d, 1, 0, 0, mem, alloc, &m);
    expect(run && m.parts == 3 && m.nh == 12, "no fused variant, by name: runs on the GEMMs");

    d.T = 4096; /* a batch element's two (T, T) matrices a head: 1.5 GiB */
    run = cf_cl_plan_flash_matrix_split(&d, 0, 1, 0, mem, alloc, &m);
    expect(run && m.nb == 2 && m.nh == 12, "T 4096 x 8: chunks of 2 batch elements (nb %zu)",
           m.nb);
    run = cf_cl_plan_flash_matrix_split(&d, 0, 1, 0, mem, 1000, &m);
    expect(!run && !m.fits && m.nb == 1 && m.nh == 1,
           "the largest allocation below the output copy: nothing fits, declined");

    d.B = 1;
    d.T = 8192; /* a head's two (T, T) matrices: 512 MiB */
    run = cf_cl_plan_flash_matrix_split(&d, 0, 1, 0, mem, alloc, &m);
    expect(run && m.nb == 1 && m.nh == 6 && m.fits, "T 8192: two ranges of 6 heads (nh %zu)", m.nh);
    const size_t head = (size_t)2 * 8192 * 8192 * sizeof(float);
    run = cf_cl_plan_flash_matrix_split(&d, 0, 1, 5 * head, mem, alloc, &m);
    expect(run && m.nh == 4, "room for 5 heads: three even ranges of 4, not 5, 5, 2 (nh %zu)",
           m.nh);
    run = cf_cl_plan_flash_matrix_split(&d, 0, 1, 3 * head, mem, alloc, &m);
    expect(!run && m.nh == 3, "ranges of 3 heads: auto declines (at least 4, or all)");
    run = cf_cl_plan_flash_matrix_split(&d, 1, 1, 3 * head, mem, alloc, &m);
    expect(run && m.nh == 3, "ranges of 3 heads by name: runs");
    run = cf_cl_plan_flash_matrix_split(&d, 0, 1, 0, mem, (uint64_t)head * 2, &m);
    expect(!run && m.nh == 1,
           "the largest allocation (two heads' parts) less the output copy: one head, declined");
    run = cf_cl_plan_flash_matrix_split(&d, 1, 1, head / 2, mem, alloc, &m);
    expect(run && !m.fits && m.nh == 1, "by name under a budget below one head: one head a chunk");
    d.KVH = 4;
    run = cf_cl_plan_flash_matrix_split(&d, 0, 1, 0, mem, alloc, &m);
    expect(!run && m.nh == 12 && !m.fits,
           "grouped-query heads (12:4) at T 8192: no head ranges, declined");
    d.KVH = 12;
    d.T = 16384;
    run = cf_cl_plan_flash_matrix_split(&d, 0, 1, 0, mem, alloc, &m);
    expect(!run && m.nh == 1, "T 16384 (2 GiB a head): ranges of 1 head, declined");
}

int main(void) {
    test_flash_matrix();
    test_gpu();
    test_cpu();
    test_limits();
    test_tuning();
    test_tuning_precision();
    test_half();
    test_attention();
    printf("%s test_cl_plan: %d of %d checks failed\n", fails ? "FAIL" : "PASS", fails, checks);
    return fails ? 1 : 0;
}
