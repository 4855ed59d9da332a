/* clformer test: tuning files (src/backend/opencl/cl_tuning.c). Without a device: a tuning round-
 * trips through JSON and through a file field by field (the register-blocked kernel's fast choice
 * included); corrupt or invalid files (an invalid fast choice among them) are refused with a reason
 * naming the entry and the field; files from before fast choices existed, and the committed H200
 * file, load; shape lookup (exact, same bucket, miss) and file names. With an OpenCL device: a
 * missing, corrupt, invalid, stale (other driver) or foreign (other device) file gives exactly one
 * warning and the built-in rule; CF_TUNING=off gives none; a matching file is found automatically
 * under ./configs/tuning/ and announced at debug level; a backend running tuned parameters (odd
 * tiles, WPT, K slices, vector widths, paddings, CLBlast/native per shape, a variant that does not
 * fit the device, tuned work-group sizes) still matches the CPU backend on GEMMs of every
 * transpose, LayerNorm, attention, softmax cross-entropy and AdamW; and under CF_GEMM_FAST=1 (the
 * register-blocked kernel on a CPU device) the dispatch runs a shape with its entry's fast choice
 * (exact and same-bucket entries), falls back to the rule with one debug line when the choice no
 * longer fits the device's local memory, and matches the CPU backend.
 *   test_cl_tuning [--device SPEC] [--tuned-only]
 * --tuned-only: only the tuned backend against the CPU (one backend: for oclgrind). */
#define _POSIX_C_SOURCE 200809L /* setenv, mkdtemp, chdir */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/opencl/cl_gemm_fast.h"
#include "backend/opencl/cl_internal.h"
#include "backend/opencl/cl_tuning.h"
#include "test_cl_common.h"

static char g_dir[512]; /* scratch directory */
static int count_of(const char *hay, const char *needle);

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        exit(1);
    }
}

static cf_tuning_gemm entry(const char *label, int ta, int tb, int M, int N, int K, int tile,
                            int wpt, int tk, int vw, int pad, int path) {
    cf_tuning_gemm g;
    memset(&g, 0, sizeof g);
    snprintf(g.label, sizeof g.label, "%s", label);
    g.ta = ta, g.tb = tb, g.M = M, g.N = N, g.K = K;
    g.tile = tile, g.wpt = wpt, g.tk = tk, g.vw = vw, g.pad = pad, g.path = path;
    g.gflops_tuned = 123.45, g.gflops_rule = 100.5, g.gflops_clblast = path ? 150.25 : 0.0;
    g.gflops_fast = path == CF_TUNING_FAST ? 170.75 : 0.0;
    g.candidates = 9, g.rejected = 1;
    return g;
}

static int same_gemm(const cf_tuning_gemm *a, const cf_tuning_gemm *b) {
    return !memcmp(&a->fast, &b->fast, sizeof a->fast) &&
           fabs(a->gflops_fast_rule - b->gflops_fast_rule) < 1e-9 && !strcmp(a->label, b->label) &&
           a->M == b->M && a->N == b->N && a->K == b->K &&
           a->ta == b->ta && a->tb == b->tb && a->tile == b->tile && a->wpt == b->wpt &&
           a->tk == b->tk && a->vw == b->vw && a->pad == b->pad && a->path == b->path &&
           fabs(a->gflops_tuned - b->gflops_tuned) < 1e-9 &&
           fabs(a->gflops_rule - b->gflops_rule) < 1e-9 &&
           fabs(a->gflops_clblast - b->gflops_clblast) < 1e-9 &&
           fabs(a->gflops_fast - b->gflops_fast) < 1e-9 && a->candidates == b->candidates &&
           a->rejected == b->rejected &&
           !strcmp(cf_tuning_entry_precision(a), cf_tuning_entry_precision(b));
}

static int same_tuning(const cf_tuning *a, const cf_tuning *b) {
    if (strcmp(a->platform, b->platform) || strcmp(a->device, b->device) ||
        strcmp(a->driver, b->driver) || strcmp(a->device_version, b->device_version) ||
        strcmp(a->created, b->created) || strcmp(a->tool, b->tool) ||
        strcmp(a->config, b->config) || a->quick != b->quick || a->n_gemm != b->n_gemm)
        return 0;
    for (int i = 0; i < a->n_gemm; i++)
        if (!same_gemm(&a->gemm[i], &b->gemm[i])) return 0;
    for (int f = 0; f < CF_TUNE_FAMILIES; f++) {
        const cf_tuning_wg *x = &a->wg[f], *y = &b->wg[f];
        if (x->ls != y->ls || x->default_ls != y->default_ls ||
            fabs(x->us_tuned - y->us_tuned) > 1e-9 || fabs(x->us_default - y->us_default) > 1e-9)
            return 0;
    }
    return 1;
}

/* a tuning with three GEMM entries and two work-group sizes for the given key */
static void sample(cf_tuning *t, const char *platform, const char *device, const char *driver) {
    cf_tuning_init(t, platform, device, driver);
    snprintf(t->device_version, sizeof t->device_version, "OpenCL 3.0 test");
    snprintf(t->created, sizeof t->created, "2025-01-02T03:04:05Z");
    snprintf(t->config, sizeof t->config, "configs/tiny.json");
    t->quick = 1;
    cf_tuning_gemm g = entry("qkv.fwd", 0, 1, 4096, 1152, 384, 16, 8, 16, 4, 0, CF_TUNING_NATIVE);
    TCL_OK(cf_tuning_set_gemm(t, &g));
    g = entry("head.dw", 1, 0, 16000, 384, 4096, 8, 4, 32, 2, 1, CF_TUNING_CLBLAST);
    g.gflops_fast_rule = 0.004057; /* a slow candidate on a CPU device: not written as 0 */
    TCL_OK(cf_tuning_set_gemm(t, &g));
    g = entry("square 512", 0, 0, 512, 512, 512, 32, 2, 8, 8, 2, CF_TUNING_FAST);
    g.fast = (cf_tuning_fast){4, 8, 16, 16, 3}; /* 64x128 blocks, K in 3 slices */
    g.gflops_fast_rule = 160.5;
    TCL_OK(cf_tuning_set_gemm(t, &g));
    t->wg[CF_TUNE_ATTENTION] = (cf_tuning_wg){128, 256, 10.5, 12.25};
    t->wg[CF_TUNE_ADAMW] = (cf_tuning_wg){64, 256, 3.5, 4.75};
}

/* ---- without a device ------------------------------------------------------------------------ */

static void test_roundtrip(void) {
    cf_tuning t, back, file;
    sample(&t, "Plat \"quoted\"", "Dev/ice 1", "1.2.3");
    char *json = cf_tuning_to_json(&t);
    char why[512];
    int rc = cf_tuning_parse(json, "memory", &back, why, sizeof why);
    expect(rc == CF_OK && same_tuning(&t, &back),
           "tuning round-trips through JSON: %d entries, 2 work-group sizes (%s)", back.n_gemm,
           rc == CF_OK ? "parsed" : why);
    expect(strstr(json, "\"fast_choice\":") && rc == CF_OK && back.gemm[2].fast.rm == 4 &&
               back.gemm[2].fast.rn == 8 && back.gemm[2].fast.bk == 16 &&
               back.gemm[2].fast.wg == 16 && back.gemm[2].fast.split == 3 &&
               back.gemm[0].fast.rm == 0 && !strstr(strstr(json, "\"fast_choice\":") + 1,
                                                   "\"fast_choice\":"),
           "the fast choice is written as \"fast_choice\" only for the entry that has one and "
           "read back (rm 4, rn 8, bk 16, wg 16, split 3)");
    expect(rc == CF_OK && back.gemm[1].gflops_fast_rule == 0.004057,
           "a small GFLOP/s value keeps 4 significant digits (0.004057 -> %g)",
           rc == CF_OK ? back.gemm[1].gflops_fast_rule : -1.0);
    char path[700];
    snprintf(path, sizeof path, "%s/sub/dir/t.json", g_dir);
    TCL_OK(cf_tuning_save(&t, path));
    rc = cf_tuning_load(path, &file, why, sizeof why);
    expect(rc == CF_OK && same_tuning(&t, &file) && !strcmp(file.path, path),
           "tuning round-trips through a file (directories created): %s", rc ? why : "equal");
    /* replacing an entry of the same shape keeps the count */
    cf_tuning_gemm g = entry("qkv.fwd", 0, 1, 4096, 1152, 384, 8, 2, 8, 1, 1, CF_TUNING_CLBLAST);
    TCL_OK(cf_tuning_set_gemm(&t, &g));
    expect(t.n_gemm == 3 && t.gemm[0].tile == 8 && t.gemm[0].path == CF_TUNING_CLBLAST,
           "cf_tuning_set_gemm replaces the entry of the same shape (%d entries)", t.n_gemm);
    free(json);
    cf_tuning_free(&t);
    cf_tuning_free(&back);
    cf_tuning_free(&file);
}

/* text with the first occurrence of `from` replaced by `to` */
static char *edit(const char *text, const char *from, const char *to) {
    const char *at = strstr(text, from);
    if (!at) {
        fprintf(stderr, "FAIL: test setup: '%s' not in the sample JSON\n", from);
        exit(1);
    }
    size_t n = strlen(text) + strlen(to) + 1;
    char *out = tcl_malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    return out;
}

static void test_parse_errors(void) {
    cf_tuning t;
    sample(&t, "P", "D", "1");
    char *good = cf_tuning_to_json(&t);
    cf_tuning_free(&t);
    const struct {
        const char *what, *from, *to, *expect;
    } cases[] = {
        {"truncated JSON", "\"workgroups\"", "", "not valid JSON"},
        {"another format", "clformer-tuning", "something-else", "'format'"},
        {"a newer version", "\"version\":\t1", "\"version\":\t2", "version 2"},
        {"no driver", "\"driver\"", "\"driverx\"", "'driver' is missing"},
        {"vector width 3", "\"vw\":\t4", "\"vw\":\t3", "'vw'"},
        {"tile 0", "\"tile\":\t16", "\"tile\":\t0", "'tile'"},
        {"path neither native, clblast nor fast", "\"clblast\",", "\"cuda\",", "'path'"},
        {"work-group size 100", "\"ls\":\t128", "\"ls\":\t100", "power of two"},
        {"unknown kernel family", "\"adamw\":", "\"adam\":", "unknown kernel family 'adam'"},
        {"gemm not an array", "\"gemm\":\t[", "\"gemm\":\t\"none\", \"g2\":\t[",
         "'gemm' must be an array"},
        /* the fast choice of entry 2 ("square 512"): rm 4, rn 8, bk 16, wg 16, split 3 */
        {"fast_choice not an object", "\"fast_choice\":\t{",
         "\"fast_choice\":\t[], \"x\":\t{", "gemm[2] (square 512): field 'fast_choice' must be"},
        {"fast_choice rm 5", "\"rm\":\t4", "\"rm\":\t5",
         "gemm[2] (square 512).fast_choice: rm 5, rn 8, bk 16, wg 16 is no variant"},
        {"fast_choice 4x8 with bk 8 and wg 16", "\"bk\":\t16", "\"bk\":\t8",
         "gemm[2] (square 512).fast_choice: rm 4, rn 8, bk 8, wg 16 is no variant"},
        {"fast_choice 256x128 with bk 16 (49 KiB of local memory)", "\"rm\":\t4", "\"rm\":\t16",
         "gemm[2] (square 512).fast_choice: rm 16, rn 8, bk 16, wg 16 is no variant of the fast "
         "kernel (rm, rn: 4, 8 or 16"},
        {"fast_choice bk 64", "\"bk\":\t16", "\"bk\":\t64",
         "gemm[2] (square 512).fast_choice: field 'bk' must be an integer in 8..32"},
        {"fast_choice rm 32", "\"rm\":\t4", "\"rm\":\t32",
         "gemm[2] (square 512).fast_choice: field 'rm' must be an integer in 4..16"},
        {"fast_choice split 0", "\"split\":\t3", "\"split\":\t0",
         "gemm[2] (square 512).fast_choice: field 'split' must be an integer in 1..64"},
        {"fast_choice without wg", "\"wg\":\t16", "\"wq\":\t16",
         "gemm[2] (square 512).fast_choice: field 'wg' (an integer in 8..16) is missing"},
        {"an unknown precision", "\"precision\":\t\"fp32\"", "\"precision\":\t\"fp33\"",
         "gemm[0] (qkv.fwd): field 'precision' must be \"fp32\", \"tf32\", \"bf16\" or "
         "\"fp16\", not \"fp33\""},
        {"a precision that is no string", "\"precision\":\t\"fp32\"", "\"precision\":\t32",
         "gemm[0] (qkv.fwd): field 'precision' must be a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *bad;
        if (!strcmp(cases[i].what, "truncated JSON")) {
            bad = tcl_malloc(strlen(good) + 1);
            snprintf(bad, strlen(good) + 1, "%.*s", (int)(strstr(good, cases[i].from) - good),
                     good);
        } else {
            bad = edit(good, cases[i].from, cases[i].to);
        }
        char why[512] = "";
        int rc = cf_tuning_parse(bad, "t.json", &t, why, sizeof why);
        expect(rc == CF_ERR_FORMAT && strstr(why, cases[i].expect),
               "refused: %s -> \"%s\" (want '%s')", cases[i].what, why, cases[i].expect);
        cf_tuning_free(&t);
        free(bad);
    }
    /* 256x128 blocks with bk 8: a variant of the fp32 form */
    char *e1 = edit(good, "\"rm\":\t4", "\"rm\":\t16"), *e2 = edit(e1, "\"bk\":\t16", "\"bk\":\t8");
    char why16[512] = "";
    int rc16 = cf_tuning_parse(e2, "t.json", &t, why16, sizeof why16);
    expect(rc16 == CF_OK && t.gemm[2].fast.rm == 16 && t.gemm[2].fast.bk == 8,
           "accepted: fast_choice rm 16, rn 8, bk 8, wg 16 (%s)", rc16 == CF_OK ? "parsed" : why16);
    if (rc16 == CF_OK) cf_tuning_free(&t);
    free(e1);
    free(e2);
    /* bk 32: a variant of the bf16 / fp16 tensor-core form (the plan checks it against the form
     * that runs); with rm 16 a variant of no form */
    char *e3 = edit(good, "\"bk\":\t16", "\"bk\":\t32");
    char why32[512] = "";
    int rc32 = cf_tuning_parse(e3, "t.json", &t, why32, sizeof why32);
    expect(rc32 == CF_OK && t.gemm[2].fast.bk == 32,
           "accepted: fast_choice rm 4, rn 8, bk 32, wg 16 (%s)", rc32 == CF_OK ? "parsed" : why32);
    if (rc32 == CF_OK) cf_tuning_free(&t);
    char *e4 = edit(e3, "\"rm\":\t4", "\"rm\":\t16");
    rc32 = cf_tuning_parse(e4, "t.json", &t, why32, sizeof why32);
    expect(rc32 == CF_ERR_FORMAT &&
               strstr(why32, "fast_choice: rm 16, rn 8, bk 32, wg 16 is no variant"),
           "refused: fast_choice rm 16 with bk 32 (%s)", why32);
    if (rc32 == CF_OK) cf_tuning_free(&t);
    free(e3);
    free(e4);
    char why[256];
    char path[700];
    snprintf(path, sizeof path, "%s/none.json", g_dir);
    int rc = cf_tuning_load(path, &t, why, sizeof why);
    expect(rc == CF_ERR_NOT_FOUND, "a missing file: CF_ERR_NOT_FOUND (%s)", why);
    free(good);
}

/* Files written before fast choices existed ("path": "fast" meant the backend's untuned choice,
 * gflops.fast its speed) load: no entry has a fast choice, fast_rule takes "fast". The committed
 * H200 file loads too, whichever it is. */
static void test_old_file(void) {
    static const char *old =
        "{\"format\": \"clformer-tuning\", \"version\": 1, \"platform\": \"NVIDIA CUDA\",\n"
        " \"device\": \"NVIDIA H200\", \"driver\": \"580.159.04\", \"quick\": true,\n"
        " \"gemm\": [\n"
        "  {\"label\": \"qkv.fwd\", \"bucket\": \"nt:4096x1024x512\", \"M\": 4096, \"N\": 1152,\n"
        "   \"K\": 384, \"ta\": 0, \"tb\": 1, \"path\": \"fast\",\n"
        "   \"native\": {\"tile\": 16, \"wpt\": 8, \"tk\": 32, \"vw\": 4, \"pad\": 1},\n"
        "   \"gflops\": {\"tuned\": 20096.93, \"rule\": 18055.84, \"clblast\": 15506.81,\n"
        "              \"fast\": 27729.24}, \"candidates\": 7, \"rejected\": 0},\n"
        "  {\"label\": \"square 256\", \"bucket\": \"nn:256x256x256\", \"M\": 256, \"N\": 256,\n"
        "   \"K\": 256, \"ta\": 0, \"tb\": 0, \"path\": \"native\",\n"
        "   \"native\": {\"tile\": 16, \"wpt\": 4, \"tk\": 32, \"vw\": 4, \"pad\": 1},\n"
        "   \"gflops\": {\"tuned\": 1405.5, \"rule\": 1191.6, \"clblast\": 1593.6, \"fast\": 0}}\n"
        " ],\n"
        " \"workgroups\": {\"attention\": {\"ls\": 64, \"default_ls\": 256}}}\n";
    cf_tuning t;
    char why[512] = "";
    int rc = cf_tuning_parse(old, "old.json", &t, why, sizeof why);
    expect(rc == CF_OK && t.n_gemm == 2 && t.gemm[0].path == CF_TUNING_FAST &&
               t.gemm[0].fast.rm == 0 && t.gemm[1].fast.rm == 0 &&
               t.gemm[0].gflops_fast_rule == 27729.24 && t.gemm[1].gflops_fast_rule == 0.0,
           "a file from before fast choices loads (%s): path fast without a choice, "
           "gflops.fast_rule = gflops.fast (%.2f)",
           rc == CF_OK ? "ok" : why, rc == CF_OK ? t.gemm[0].gflops_fast_rule : 0.0);
    expect(rc == CF_OK && !strcmp(t.gemm[0].precision, "fp32") &&
               !strcmp(t.gemm[1].precision, "fp32"),
           "entries without \"precision\" (files before per-entry precisions) are fp32");
    cf_tuning_free(&t);

    const char *path = CF_SOURCE_DIR "/configs/tuning/nvidia-cuda__nvidia-h200.json";
    rc = cf_tuning_load(path, &t, why, sizeof why);
    int with_choice = 0;
    for (int i = 0; rc == CF_OK && i < t.n_gemm; i++) with_choice += t.gemm[i].fast.rm != 0;
    expect(rc == CF_OK && t.n_gemm > 0,
           "the committed configs/tuning/nvidia-cuda__nvidia-h200.json loads (%s): %d entries, "
           "%d with a fast choice",
           rc == CF_OK ? "ok" : why, t.n_gemm, with_choice);
    cf_tuning_free(&t);
}

static void test_lookup(void) {
    cf_tuning t;
    sample(&t, "P", "D", "1");
    int exact = -1;
    const cf_tuning_gemm *g = cf_tuning_lookup(&t, 4096, 1152, 384, 0, 1, &exact);
    expect(g && exact == 1 && !strcmp(g->label, "qkv.fwd"), "lookup: exact shape");
    g = cf_tuning_lookup(&t, 4000, 1100, 400, 0, 1, &exact);
    expect(g && exact == 0 && !strcmp(g->label, "qkv.fwd"), "lookup: nearby shape, same bucket");
    g = cf_tuning_lookup(&t, 4096, 1152, 384, 1, 1, &exact);
    expect(!g, "lookup: other transposes -> no entry");
    g = cf_tuning_lookup(&t, 64, 64, 64, 0, 0, &exact);
    expect(!g, "lookup: another bucket -> no entry");
    char b[64];
    cf_tuning_bucket(4096, 1152, 384, 0, 1, b, sizeof b);
    expect(!strcmp(b, "nt:4096x1024x512"), "bucket of 4096x1152x384 NT is %s", b);
    char name[300];
    cf_tuning_file_name("Portable Computing Language", "pthread-haswell-AMD EPYC 7B13", name,
                        sizeof name);
    expect(!strcmp(name, "portable-computing-language__pthread-haswell-amd-epyc-7b13.json"),
           "file name: %s", name);
    char why[256];
    expect(cf_tuning_match(&t, "P", "D", "1", why, sizeof why) == CF_TUNING_MATCH,
           "match: same platform, device and driver");
    expect(cf_tuning_match(&t, "P", "D", "2", why, sizeof why) == CF_TUNING_STALE &&
               strstr(why, "stale"),
           "match: another driver is stale (%s)", why);
    expect(cf_tuning_match(&t, "P", "E", "1", why, sizeof why) == CF_TUNING_OTHER_DEVICE,
           "match: another device (%s)", why);
    cf_tuning_free(&t);
}

/* Entries of several precisions side by side: one per shape and precision, written with their tag
 * and read back; lookups and cf_tuning_keep_precision see only the precision asked for. */
static void test_precisions(void) {
    cf_tuning t, back;
    sample(&t, "P", "D", "1");
    cf_tuning_gemm g = entry("qkv.fwd", 0, 1, 4096, 1152, 384, 8, 4, 16, 4, 0, CF_TUNING_FAST);
    snprintf(g.precision, sizeof g.precision, "tf32");
    g.fast = (cf_tuning_fast){8, 8, 8, 16, 1};
    TCL_OK(cf_tuning_set_gemm(&t, &g));
    expect(t.n_gemm == 4, "a tf32 entry of a shape with an fp32 entry is added beside it (%d "
                          "entries, want 4)", t.n_gemm);
    g.tile = 16;
    TCL_OK(cf_tuning_set_gemm(&t, &g));
    expect(t.n_gemm == 4 && t.gemm[3].tile == 16 && t.gemm[0].tile == 16 && t.gemm[0].wpt == 8,
           "setting it again replaces the tf32 entry only");
    char *json = cf_tuning_to_json(&t);
    char why[512] = "";
    int rc = cf_tuning_parse(json, "memory", &back, why, sizeof why);
    expect(rc == CF_OK && same_tuning(&t, &back) && count_of(json, "\"precision\":\t\"tf32\"") == 1 &&
               count_of(json, "\"precision\":\t\"fp32\"") == 3,
           "each entry is written with its precision and read back (%s)", rc == CF_OK ? "ok" : why);
    free(json);
    int exact = 0;
    const cf_tuning_gemm *f = cf_tuning_lookup_precision(&back, "fp32", 4096, 1152, 384, 0, 1, &exact);
    const cf_tuning_gemm *x = cf_tuning_lookup_precision(&back, "tf32", 4000, 1100, 400, 0, 1, &exact);
    expect(f && !strcmp(f->precision, "fp32") && f->path == CF_TUNING_NATIVE && x &&
               !strcmp(x->precision, "tf32") && x->path == CF_TUNING_FAST && !exact,
           "lookups by precision find that precision's entry (exact and same bucket)");
    expect(!cf_tuning_lookup_precision(&back, "tf32", 512, 512, 512, 0, 0, NULL) &&
               cf_tuning_lookup_precision(&back, "fp32", 512, 512, 512, 0, 0, NULL),
           "a shape measured in fp32 only has no tf32 entry");
    int dropped = cf_tuning_keep_precision(&back, "tf32");
    expect(dropped == 3 && back.n_gemm == 1 && !strcmp(back.gemm[0].precision, "tf32") &&
               back.wg[CF_TUNE_ATTENTION].ls == 128,
           "keeping tf32 drops the 3 fp32 entries and keeps the work-group sizes (%d dropped)",
           dropped);
    cf_tuning_free(&back);
    cf_tuning_free(&t);
}

/* ---- with a device --------------------------------------------------------------------------- */

static cf_cl_device_info g_dev;

/* Create an OpenCL backend under CF_TUNING=value (NULL: unset), count the warnings and keep the
 * log; return the native parameters it picks for an NT 70x90x50 product. */
static cf_backend *open_with(const char *value, int *warnings, cf_cl_gemm_params *p) {
    if (value) setenv("CF_TUNING", value, 1);
    else unsetenv("CF_TUNING");
    g_log[0] = 0;
    g_warnings = 0;
    int level = cf_log_get_level();
    cf_log_set_level(CF_LOG_DEBUG);
    cf_backend *be = NULL;
    TCL_OK(cf_backend_opencl_create(tcl_spec(), tcl_opts(), &be));
    cf_log_set_level(level);
    *warnings = g_warnings;
    TCL_OK(cf_backend_opencl_gemm_params(be, 70, 90, 50, 0, 1, p));
    return be;
}

static void expect_fallback(const char *what, const char *value, const char *needle) {
    int w = 0;
    cf_cl_gemm_params p;
    cf_backend *be = open_with(value, &w, &p);
    const char *line = strstr(g_log, "tuning file");
    expect(w == 1 && line && strstr(line, needle) && !strcmp(p.source, "rule"),
           "%s: one warning naming '%s', built-in rule (%d warnings, gemm from %s)", what, needle,
           w, p.source);
    cf_backend_destroy(be);
}

/* the tuned file for this device: odd parameters that must still compute the right results */
static void device_tuning(cf_tuning *t, const char *driver) {
    cf_tuning_init(t, g_dev.platform_name, g_dev.name, driver);
    int big = g_dev.max_group >= 1024 ? 32 : 16;
    cf_tuning_gemm e[] = {
        entry("nt", 0, 1, 70, 90, 50, 4, 2, 8, 2, 0, CF_TUNING_NATIVE),
        entry("nn", 0, 0, 129, 65, 33, 8, 4, 16, 4, 2, CF_TUNING_NATIVE),
        entry("tn", 1, 0, 64, 48, 200, 16, 2, 32, 8, 1, CF_TUNING_CLBLAST),
        entry("tt", 1, 1, 33, 47, 31, big, 1, 8, 1, 0, CF_TUNING_NATIVE),
        entry("nn big", 0, 0, 300, 260, 70, 16, 8, 8, 8, 3, CF_TUNING_NATIVE),
        /* the attention products of test_tuned_ops (T 19, head size 8; batched, causal) */
        entry("q k^T", 0, 1, 19, 19, 8, 4, 2, 8, 4, 0, CF_TUNING_NATIVE),
        entry("att v", 0, 0, 19, 8, 19, 4, 2, 8, 2, 2, CF_TUNING_NATIVE),
        entry("att^T dout", 1, 0, 19, 8, 19, 8, 1, 8, 8, 1, CF_TUNING_NATIVE),
        /* left to the backend's own choice (the rule here: no "fast" kernel for this size) */
        entry("fast", 0, 0, 100, 90, 80, 16, 4, 16, 1, 1, CF_TUNING_FAST),
        /* does not fit any device: 64x64 work-groups with 16x16 accumulators per item; a GPU
         * runs at most 1024 items per group, and a CPU device (PoCL reports 4096 items and 1 MiB
         * of local memory, enough for its 512 KiB) would keep ~18 MiB of private state on one
         * thread's stack: it crashed PoCL's pthread-skylake-avx512 driver before the check */
        entry("too big", 1, 0, 40, 30, 20, 64, 16, 64, 1, 1, CF_TUNING_NATIVE),
        /* the register-blocked kernel with the entry's choice (where that kernel applies: GPUs,
         * CF_GEMM_FAST=1): 64x32 blocks, K in 2 slices */
        entry("fast choice", 0, 1, 96, 80, 300, 8, 4, 16, 1, 1, CF_TUNING_FAST),
        /* a choice of 128x128 blocks with K slices of 16 (33 KiB of local memory): test_fast_choice
         * makes the device's local memory smaller */
        entry("fast, too big", 1, 0, 72, 40, 136, 8, 4, 16, 1, 1, CF_TUNING_FAST),
    };
    e[10].fast = (cf_tuning_fast){8, 4, 8, 8, 2};
    e[11].fast = (cf_tuning_fast){8, 8, 16, 16, 1};
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) TCL_OK(cf_tuning_set_gemm(t, &e[i]));
    t->wg[CF_TUNE_ATTENTION] = (cf_tuning_wg){32, 256, 1, 1};
    t->wg[CF_TUNE_LAYERNORM] = (cf_tuning_wg){64, 256, 1, 1};
    t->wg[CF_TUNE_CROSSENTROPY] = (cf_tuning_wg){128, 256, 1, 1};
    t->wg[CF_TUNE_ADAMW] = (cf_tuning_wg){32, 256, 1, 1};
}

static void test_fallbacks(void) {
    char path[1000], other[700];
    snprintf(path, sizeof path, "%s/missing.json", g_dir);
    expect_fallback("a missing file named by CF_TUNING", path, "not found");

    cf_tuning t;
    device_tuning(&t, g_dev.driver);
    char *good = cf_tuning_to_json(&t);
    cf_tuning_free(&t);
    snprintf(path, sizeof path, "%s/corrupt.json", g_dir);
    write_text(path, "{\"format\": \"clformer-tuning\", \"version\": 1, \"gemm\": [ {");
    expect_fallback("a corrupt (truncated) file", path, "not valid JSON");
    char *bad = edit(good, "\"pad\":\t2", "\"pad\":\t9");
    snprintf(path, sizeof path, "%s/invalid.json", g_dir);
    write_text(path, bad);
    free(bad);
    expect_fallback("a file with an out-of-range field", path, "'pad'");
    bad = edit(good, "\"rn\":\t4", "\"rn\":\t6");
    snprintf(path, sizeof path, "%s/invalid_fast.json", g_dir);
    write_text(path, bad);
    free(bad);
    expect_fallback("a file with an invalid fast choice", path,
                    "gemm[10] (fast choice).fast_choice: rm 8, rn 6, bk 8, wg 8 is no variant of "
                    "the fast kernel");

    device_tuning(&t, "0.0-another-driver");
    snprintf(path, sizeof path, "%s/stale.json", g_dir);
    TCL_OK(cf_tuning_save(&t, path));
    cf_tuning_free(&t);
    expect_fallback("a stale file (another driver)", path, "stale");

    device_tuning(&t, g_dev.driver);
    snprintf(t.device, sizeof t.device, "Some Other Device 9000");
    snprintf(other, sizeof other, "%s/other.json", g_dir);
    TCL_OK(cf_tuning_save(&t, other));
    cf_tuning_free(&t);
    expect_fallback("a file of another device", other, "was measured on");

    int w = 0;
    cf_cl_gemm_params p;
    cf_backend *be = open_with("off", &w, &p);
    expect(w == 0 && !strcmp(p.source, "rule"), "CF_TUNING=off: no warning, built-in rule");
    cf_backend_destroy(be);

    /* found automatically in ./configs/tuning/<platform>__<device>.json */
    char cwd[1024], name[300], dir[600];
    if (!getcwd(cwd, sizeof cwd)) exit(1);
    cf_tuning_file_name(g_dev.platform_name, g_dev.name, name, sizeof name);
    snprintf(dir, sizeof dir, "%s/work/configs/tuning", g_dir);
    TCL_OK(cf_mkdirs(dir));
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_text(path, good);
    snprintf(dir, sizeof dir, "%s/work", g_dir);
    if (chdir(dir) != 0) exit(1);
    be = open_with(NULL, &w, &p);
    char want[400];
    snprintf(want, sizeof want, "tuning: using configs/tuning/%s", name);
    expect(w == 0 && strstr(g_log, want) && !strcmp(p.source, "tuning") && p.tile == 4,
           "automatic lookup: %s used and announced at debug level (gemm from %s, %dx%d)", name,
           p.source, p.tile, p.tile);
    cf_backend_destroy(be);
    /* an unrelated file there is a warning, not a crash */
    TCL_OK(cf_tuning_load(other, &t, want, sizeof want));
    TCL_OK(cf_tuning_save(&t, path));
    cf_tuning_free(&t);
    expect_fallback("automatic lookup finding another device's file", NULL, "was measured on");
    remove(path);
    /* none: silent (unless the source tree holds one for this device) */
    char src_file[1200];
    snprintf(src_file, sizeof src_file, "%s/configs/tuning/%s", CF_SOURCE_DIR, name);
    if (access(src_file, F_OK) != 0) {
        be = open_with(NULL, &w, &p);
        expect(w == 0 && strstr(g_log, "tuning: no tuning file") && !strcmp(p.source, "rule"),
               "no tuning file: no warning, a debug line, built-in rule");
        cf_backend_destroy(be);
    } else {
        printf("skip the no-file case: %s exists\n", src_file);
    }
    if (chdir(cwd) != 0) exit(1);
    free(good);
}

/* A tuning file applies to runs of its entries' precision only: this fp32 run (PoCL has no TF32
 * engine, so every run here is fp32) uses a file of fp32 entries, tagged or not (files before
 * per-entry precisions), and not one of tf32 entries, which it says in one warning. */
static void test_precision_files(void) {
    char path[1000];
    cf_tuning t;
    device_tuning(&t, g_dev.driver);
    char *fp32 = cf_tuning_to_json(&t);
    for (int i = 0; i < t.n_gemm; i++) snprintf(t.gemm[i].precision, 8, "tf32");
    char *tf32 = cf_tuning_to_json(&t);
    cf_tuning_free(&t);
    /* the same file without the field, as written before it existed */
    char *untagged = tcl_malloc(strlen(fp32) + 1);
    size_t n = 0;
    for (const char *p = fp32; *p;) {
        size_t len = strcspn(p, "\n") + (p[strcspn(p, "\n")] ? 1 : 0);
        char line[200];
        snprintf(line, sizeof line, "%.*s", (int)(len < 199 ? len : 199), p);
        if (!strstr(line, "\"precision\":")) {
            memcpy(untagged + n, p, len);
            n += len;
        }
        p += len;
    }
    untagged[n] = 0;
    const struct {
        const char *what, *text;
        int used;
    } files[] = {{"fp32 entries", fp32, 1}, {"untagged entries (an older file)", untagged, 1},
                 {"tf32 entries", tf32, 0}};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/precision%d.json", g_dir, i);
        write_text(path, files[i].text);
        int w = 0;
        cf_cl_gemm_params p;
        cf_backend *be = open_with(path, &w, &p);
        if (files[i].used) {
            expect(w == 0 && !strcmp(p.source, "tuning") && p.tile == 4 &&
                       strstr(g_log, "12 GEMM shapes (fp32)"),
                   "an fp32 run applies a file of %s: no warning, NT 70x90x50 from the file (%s, "
                   "%dx%d)",
                   files[i].what, p.source, p.tile, p.tile);
        } else {
            const char *line = strstr(g_log, "tuning file");
            expect(w == 1 && count_of(g_log, "another precision") == 1 && line &&
                       strstr(line, "12 GEMM entries were measured for another precision than "
                                    "this run's fp32 and not applied") &&
                       strstr(line, "clformer-tune --precision fp32") && !strcmp(p.source, "rule"),
                   "an fp32 run does not apply a file of %s: one warning saying so, built-in "
                   "rule (%d warnings, gemm from %s)",
                   files[i].what, w, p.source);
        }
        cf_backend_destroy(be);
    }
    free(fp32);
    free(tf32);
    free(untagged);
}

static void expect_params(int M, int N, int K, int ta, int tb, int tile, int wpt, int tk, int vw,
                          int pad, const char *source) {
    cf_cl_gemm_params p;
    TCL_OK(cf_backend_opencl_gemm_params(GPU, M, N, K, ta, tb, &p));
    expect(p.tile == tile && p.wpt == wpt && p.tk == tk && p.vw == vw && p.pad == pad &&
               !strcmp(p.source, source),
           "%c%c %dx%dx%d runs %dx%d wpt %d tk %d vw %d pad %d (%s), want %dx%d wpt %d tk %d vw "
           "%d pad %d (%s)",
           ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, p.tile, p.tile, p.wpt, p.tk, p.vw, p.pad,
           p.source, tile, tile, wpt, tk, vw, pad, source);
}

static void test_tuned_ops(void) {
    /* the parameters in use */
    int big = g_dev.max_group >= 1024 ? 32 : 16;
    expect_params(70, 90, 50, 0, 1, 4, 2, 8, 2, 0, "tuning");
    expect_params(72, 88, 52, 0, 1, 4, 2, 8, 2, 0, "tuning, same bucket");
    expect_params(129, 65, 33, 0, 0, 8, 4, 16, 4, 2, "tuning");
    expect_params(33, 47, 31, 1, 1, big, 1, 8, 1, 0, "tuning");
    cf_cl_gemm_params rule;
    cf_cl_gemm_rule(100, 90, 80, ((cf_cl_ctx *)GPU->ctx)->gemm_max_group, &rule);
    expect_params(100, 90, 80, 0, 0, rule.tile, rule.wpt, rule.tk, 1, 1, "rule");
    cf_cl_gemm_rule(40, 30, 20, ((cf_cl_ctx *)GPU->ctx)->gemm_max_group, &rule);
    g_warnings = 0;
    expect_params(40, 30, 20, 1, 0, rule.tile, rule.wpt, rule.tk, 1, 1, "rule");
    expect(g_warnings == 1 && strstr(g_log, "do not fit"),
           "a tuned variant that does not fit the device: one warning, the rule");
    cf_cl_ctx *ctx = GPU->ctx;
    expect(ctx->prog_ls[CF_PROG_ATTENTION] == 32 && ctx->prog_ls[CF_PROG_LAYERNORM] == 64 &&
               ctx->prog_ls[CF_PROG_CROSSENTROPY] == 128 && ctx->prog_ls[CF_PROG_ADAMW] == 32,
           "tuned work-group sizes in use: attention %d, layernorm %d, crossentropy %d, adamw %d",
           ctx->prog_ls[CF_PROG_ATTENTION], ctx->prog_ls[CF_PROG_LAYERNORM],
           ctx->prog_ls[CF_PROG_CROSSENTROPY], ctx->prog_ls[CF_PROG_ADAMW]);

    /* GEMMs under the tuned parameters, the per-shape path in auto mode */
    TCL_OK(cf_backend_opencl_set_gemm(GPU, "auto"));
    int level = cf_log_get_level();
    cf_log_set_level(CF_LOG_DEBUG);
    g_log[0] = 0;
    static const int shapes[][5] = {{0, 1, 70, 90, 50},  {0, 1, 72, 88, 52}, {0, 0, 129, 65, 33},
                                    {1, 0, 64, 48, 200}, {1, 1, 33, 47, 31}, {0, 0, 300, 260, 70},
                                    {1, 0, 40, 30, 20},  {0, 0, 100, 90, 80}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int *s = shapes[i];
        gemm_case("tuned", s[0], s[1], s[2], s[3], s[4], 1.0f, 0.0f);
        gemm_case("tuned", s[0], s[1], s[2], s[3], s[4], 0.7f, 0.5f);
    }
    cf_log_set_level(level);
    expect(strstr(g_log, "gemm M=70 N=90 K=50 NT: native 4x4 (wpt 2, tk 8, vw 2, pad 0, tuning)") !=
               NULL,
           "auto mode: the file's 'native' choice runs the native kernel (debug log)");
    if (cf_cl_have_clblast())
        expect(strstr(g_log, "gemm M=64 N=48 K=200 TN: clblast") != NULL,
               "auto mode: the file's 'clblast' choice runs CLBlast (debug log)");

    /* the kernels with tuned work-group sizes */
    const int N = 37, C = 100;
    pair inp = pair_rand((size_t)N * C, 2.0f), w = pair_rand(C, 1.0f), b = pair_rand(C, 1.0f);
    pair out = pair_rand((size_t)N * C, 1.0f), mean = pair_rand(N, 1.0f),
         rstd = pair_rand(N, 1.0f);
    BOTH(cf_be_layernorm_forward(be, V(out), V(mean), V(rstd), V(inp), V(w), V(b), N, C,
                                 1e-5f));
    check("layernorm_forward, LS 64", out, 1e-5);
    pair dinp = pair_rand((size_t)N * C, 1.0f), dw = pair_rand(C, 1.0f), db = pair_rand(C, 1.0f),
         dout = pair_rand((size_t)N * C, 1.0f);
    BOTH(cf_be_layernorm_backward(be, V(dinp), V(dw), V(db), V(dout), V(inp), V(w), V(mean),
                                  V(rstd), N, C));
    check("layernorm_backward dinp, LS 64", dinp, 1e-5);
    check("layernorm_backward dweight, LS 64", dw, 1e-5);

    const int B = 2, T = 19, AC = 24, NH = 3;
    size_t btc = (size_t)B * T * AC, att = (size_t)B * NH * T * T;
    pair qkv = pair_rand(3 * btc, 1.0f), aout = pair_rand(btc, 1.0f), a = pair_rand(att, 1.0f);
    /* the batched GEMM path of attention (not the fused kernels), whose products are tuned */
    TCL_OK(cf_cl_attention_set_mode((cf_cl_ctx *)GPU->ctx, "gemm"));
    cf_log_set_level(CF_LOG_DEBUG);
    g_log[0] = 0;
    BOTH(cf_be_attention_forward(be, V(aout), V(a), V(qkv), B, T, NH, NH, AC / NH));
    cf_log_set_level(level);
    expect(strstr(g_log, "gemm M=19 N=19 K=8 batch=6 NT: native 4x4 (wpt 2, tk 8, vw 4, pad 0, "
                         "tuning)") != NULL,
           "attention's batched products run the tuned variants (debug log)");
    check("attention_forward out, LS 32, tuned batched causal GEMMs (vw 4, 2)", aout, 1e-5);
    pair dqkv = pair_rand(3 * btc, 1.0f), datt = pair_rand(att, 1.0f),
         dpre = pair_rand(att, 1.0f), daout = pair_rand(btc, 1.0f);
    BOTH(cf_be_attention_backward(be, V(dqkv), V(datt), V(dpre), V(daout), V(qkv), V(a), B, T, NH,
                                  NH, AC / NH));
    check("attention_backward dqkv, LS 32, tuned batched causal GEMMs (vw 4, 2, 8)", dqkv, 1e-5);

    const int R = 13, Vocab = 300;
    int32_t tg[13];
    for (int i = 0; i < R; i++) tg[i] = (int32_t)(cf_rng_u32(&rng) % Vocab);
    tg[3] = -1; /* ignored row */
    pair targets = pair_new(R, tg, 0.0f), logits = pair_rand((size_t)R * Vocab, 4.0f);
    pair losses = pair_rand(R, 1.0f), dlogits = pair_rand((size_t)R * Vocab, 1.0f);
    BOTH(cf_be_crossentropy_fused(be, V(losses), V(dlogits), V(logits), VI(targets), R, Vocab,
                                  0.25f, 0.0f));
    check("crossentropy_fused losses, LS 128", losses, 1e-5);
    check("crossentropy_fused dlogits, LS 128", dlogits, 1e-5);

    const size_t n = 1000;
    pair prm = pair_rand(n, 1.0f), grd = pair_rand(n, 1.0f), m = pair_rand(n, 0.1f),
         v = pair_const(n, 0.01f);
    BOTH(cf_be_adamw(be, V(prm), V(grd), V(m), V(v), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f,
                     2));
    check("adamw params, LS 32", prm, 1e-6);
    check("adamw m, LS 32", m, 1e-6);
    pair_free(inp), pair_free(w), pair_free(b), pair_free(out), pair_free(mean), pair_free(rstd);
    pair_free(dinp), pair_free(dw), pair_free(db), pair_free(dout);
    pair_free(qkv), pair_free(aout), pair_free(a), pair_free(dqkv), pair_free(datt),
        pair_free(dpre), pair_free(daout);
    pair_free(targets), pair_free(logits), pair_free(losses), pair_free(dlogits);
    pair_free(prm), pair_free(grd), pair_free(m), pair_free(v);
}

/* The limits of a built kernel and of the device: a variant is launched only where they hold. */
static void test_group_limits(void) {
    cf_cl_ctx *ctx = GPU->ctx;
    const int cpu = (ctx->dev.type & CL_DEVICE_TYPE_CPU) != 0;
    const size_t budget = cf_cl_group_private_budget(&ctx->dev);
    expect(cpu ? budget > 0 && budget < SIZE_MAX : budget == SIZE_MAX,
           "private state per work-group bounded on a CPU device only (%zu bytes)", budget);
    /* the "too big" entry: within CL_DEVICE_MAX_WORK_GROUP_SIZE and the local memory of PoCL */
    cf_cl_gemm_params big = {64, 16, 64, "test", 1, 1, CF_GEMM_AUTO};
    int fit = cf_cl_gemm_params_fit(ctx, &big);
    int n_progs = ctx->n_gemm_progs;
    int rc = cf_cl_gemm_variant(ctx, &big);
    expect(!fit && rc == CF_ERR_UNSUPPORTED && ctx->n_gemm_progs == n_progs,
           "64x64 work-groups with wpt 16 are refused before building or launching (fit %d, %s)",
           fit, cf_status_str(rc));
    cf_cl_gemm_params mid = {32, 8, 16, "test", 1, 1, CF_GEMM_AUTO};
    if (ctx->dev.max_group >= 1024 && cpu) {
        expect(cf_cl_gemm_params_fit(ctx, &mid) && cf_cl_gemm_variant(ctx, &mid) == CF_OK,
               "32x32 work-groups with wpt 8 (1.5 MiB of private state at most) fit and build");
    } else if (ctx->dev.max_group >= 1024) {
        /* on a GPU the built kernel's own limit decides (NVIDIA, H100: 256 work-items for this
         * kernel, as CL_KERNEL_WORK_GROUP_SIZE says once it is built): the variant builds and
         * runs where that limit allows 1024, and is refused with CF_ERR_UNSUPPORTED, nothing
         * launched, where it does not; any other status is a failure */
        const int mfit = cf_cl_gemm_params_fit(ctx, &mid);
        const int mrc = cf_cl_gemm_variant(ctx, &mid);
        expect(mrc == CF_OK || (mrc == CF_ERR_UNSUPPORTED && !cpu),
               "32x32 work-groups with wpt 8 on a GPU: built where the kernel's limit allows, "
               "else refused (fit %d, %s)",
               mfit, cf_status_str(mrc));
    }
    /* more distinct variants than the program table holds (a tuning file may name them): each
     * builds, with no error; the table starts over when full */
    int built = 0, before = g_errors;
    for (int w = 1; w <= 2; w++)
        for (int tk = 4; tk <= 16; tk *= 2)
            for (int pad = 0; pad <= 2; pad++) {
                cf_cl_gemm_params v = {4, w, tk, "test", 1, pad, CF_GEMM_AUTO};
                built += cf_cl_gemm_variant(ctx, &v) == CF_OK;
            }
    expect(built == 18 && g_errors == before && ctx->n_gemm_progs >= 1 &&
               ctx->n_gemm_progs <= CF_CL_MAX_GEMM_PROGRAMS,
           "18 distinct variants (the table holds %d) all build, no error logged (%d built)",
           CF_CL_MAX_GEMM_PROGRAMS, built);
    gemm_case("after the variant table started over", 0, 0, 70, 50, 30, 1.0f, 0.0f);

    /* the built kernel's own limits */
    expect(ctx->n_gemm_progs > 0, "the rule's GEMM variants are built");
    if (ctx->n_gemm_progs == 0) return;
    const cf_cl_gemm_program *g = &ctx->gemm_progs[0];
    char why[256];
    size_t local[2] = {(size_t)g->tile, (size_t)g->tile};
    int r = cf_cl_kernel_fits(ctx, g->k[0], 2, local, 64, why, sizeof why);
    expect(r == 1, "gemm_nn %dx%d fits its device (%d: %s)", g->tile, g->tile, r, why);
    size_t wide[2] = {ctx->dev.max_group * 2, 1};
    r = cf_cl_kernel_fits(ctx, g->k[0], 2, wide, 64, why, sizeof why);
    expect(r == 0 && why[0], "a group of twice the device's maximum is refused (%d: %s)", r, why);
    r = cf_cl_kernel_fits(ctx, g->k[0], 2, local, (size_t)1 << 30, why, sizeof why);
    expect(cpu ? r == 0 && strstr(why, "stack") : r == 1,
           "1 GiB of private state per item: refused on a CPU device only (%d: %s)", r, why);
}

/* count of non-overlapping occurrences of needle in hay */
static int count_of(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + strlen(needle), needle)) n++;
    return n;
}

/* the log line that starts with `start` ("" when none) */
static void log_line(const char *start, char *out, size_t len) {
    const char *p = strstr(g_log, start);
    size_t n = p ? strcspn(p, "\n") : 0;
    snprintf(out, len, "%.*s", (int)n, p ? p : "");
}

/* The register-blocked kernel with the tuning file's choices (device_tuning's "fast choice" and
 * "fast, too big" entries), on the backend of test_tuned_ops. */
static void test_fast_choice(void) {
    cf_cl_ctx *ctx = GPU->ctx;
    const int gpu = (ctx->dev.type & CL_DEVICE_TYPE_GPU) != 0;
    int level = cf_log_get_level();
    cf_log_set_level(CF_LOG_DEBUG);
    /* where the fast kernel does not apply (a CPU device without CF_GEMM_FAST), a "fast" entry
     * leaves the shape to the untuned choice (CLBlast or the tiled rule) */
    TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, "auto"));
    g_log[0] = 0;
    gemm_case("tuned fast choice", 0, 1, 96, 80, 300, 1.0f, 0.0f);
    char line[200];
    log_line("gemm M=96 N=80 K=300 NT: ", line, sizeof line);
    expect(gpu ? strstr(line, ": fast 64x32 (bk 8, split 2, scalar, from the tuning file)") != NULL
               : line[0] && !strstr(line, ": fast"),
           "without CF_GEMM_FAST on this %s device, NT 96x80x300 (path fast, a fast choice) runs "
           "%s (%s)",
           gpu ? "GPU" : "non-GPU", gpu ? "the file's fast choice" : "another kernel", line);

    /* CF_GEMM_FAST=1: every plain product on the register-blocked kernel; a device with less
     * local memory than the "fast, too big" choice needs (33 KiB; the rule's choices fit) */
    TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, "1"));
    const cl_ulong local_mem = ctx->dev.local_mem;
    ctx->dev.local_mem = 20000;
    g_log[0] = 0;
    gemm_case("tuned fast choice", 0, 1, 96, 80, 300, 0.7f, 0.5f);
    gemm_case("tuned fast choice, same bucket", 0, 1, 100, 84, 290, 1.0f, 0.0f);
    gemm_case("tuned fast choice that does not fit", 1, 0, 72, 40, 136, 1.0f, 0.0f);
    gemm_case("tuned fast choice that does not fit", 1, 0, 72, 40, 136, 0.7f, 0.5f);
    gemm_case("tuned path fast without a choice", 0, 0, 100, 90, 80, 1.0f, 0.0f);
    ctx->dev.local_mem = local_mem;
    TCL_OK(cf_backend_opencl_set_gemm_fast(GPU, "auto"));
    cf_log_set_level(level);
    if (!gpu) /* on a GPU the shape was logged above already */
        expect(strstr(g_log, "gemm M=96 N=80 K=300 NT: fast 64x32 (bk 8, split 2, scalar, from the "
                             "tuning file)") != NULL,
               "CF_GEMM_FAST=1: NT 96x80x300 runs its entry's fast choice, 64x32 blocks in 2 K "
               "slices (debug log)");
    expect(strstr(g_log, "gemm M=100 N=84 K=290 NT: fast 64x32 (bk 8, split 2, scalar, from the "
                         "tuning file, same bucket)") != NULL,
           "CF_GEMM_FAST=1: NT 100x84x290 runs the fast choice of the same bucket's entry (debug "
           "log)");
    const char *fb = strstr(g_log, "gemm M=72 N=40 K=136 TN: the tuning file's fast choice "
                                   "(fast, too big, rm 8, rn 8, bk 16, wg 16, split 1) does not "
                                   "fit");
    char ran[200];
    log_line("gemm M=72 N=40 K=136 TN: fast ", ran, sizeof ran);
    expect(fb && count_of(g_log, "the tuning file's fast choice") == 1 && ran[0] &&
               !strstr(ran, "tuning file") && !strstr(ran, "128x128 (bk 16"),
           "a fast choice that no longer fits the local memory: one debug line, then the rule's "
           "choice (%s)",
           ran[0] ? ran : "no 'fast' line for TN 72x40x136");
    log_line("gemm M=100 N=90 K=80 NN: fast ", ran, sizeof ran);
    expect(ran[0] && !strstr(ran, "tuning file"),
           "path fast without a fast choice (an older file): the rule's choice (%s)",
           ran[0] ? ran : "no 'fast' line for NN 100x90x80");
}

int main(int argc, char **argv) {
    double t0 = cf_time_now();
    const char *spec = NULL;
    int tuned_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) spec = argv[++i];
        else if (!strcmp(argv[i], "--tuned-only")) tuned_only = 1;
        else {
            fprintf(stderr, "usage: %s [--device SPEC] [--tuned-only]\n", argv[0]);
            return 2;
        }
    }
    if (spec) setenv("CF_TEST_OPENCL_DEVICE", spec, 1);
    snprintf(g_dir, sizeof g_dir, "%s/tuning_test_XXXXXX", CF_BINARY_DIR);
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "FAIL: mkdtemp %s\n", g_dir);
        return 1;
    }
    if (!tuned_only) {
        test_roundtrip();
        test_parse_errors();
        test_old_file();
        test_lookup();
        test_precisions();
    }

    if (!getenv("CF_CACHE_DIR")) setenv("CF_CACHE_DIR", CF_BINARY_DIR "/cl_cache", 1);
    int code = 0;
    if (tcl_device_count() == 0) {
        code = tcl_no_device("test_cl_tuning (device part)");
    } else {
        /* the device's key, from a backend without tuning */
        cf_log_set_callback(capture_log, NULL);
        setenv("CF_TUNING", "off", 1);
        cf_backend *probe = NULL;
        TCL_OK(cf_backend_opencl_create(tcl_spec(), tcl_opts(), &probe));
        g_dev = ((cf_cl_ctx *)probe->ctx)->dev;
        cf_backend_destroy(probe);
        if (!tuned_only) {
            test_fallbacks();
            test_precision_files();
        }

        cf_tuning t;
        device_tuning(&t, g_dev.driver);
        char path[700];
        snprintf(path, sizeof path, "%s/tuned.json", g_dir);
        TCL_OK(cf_tuning_save(&t, path));
        cf_tuning_free(&t);
        setenv("CF_TUNING", path, 1);
        if (tcl_open("test_cl_tuning", NULL, &code) == 0) {
            test_tuned_ops();
            test_group_limits();
            test_fast_choice();
        } else {
            return code;
        }
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", g_dir);
    int rc = tcl_finish("test_cl_tuning", t0);
    /* a failed host check outranks a skipped device part (77) */
    return rc ? rc : code;
}
