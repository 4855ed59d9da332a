/* clformer test: devices verified and chosen by measurement (backend/verify.h).
 *   - the CPU backend passes verification against the CPU reference; the result is cached as JSON
 *     (no temporary file left behind) and read back as "passed";
 *   - a planted failure (a backend whose gelu_forward is 0.1% off) fails gelu_forward, and the
 *     cache says "failed" with the op named;
 *   - --device auto with a config times the candidates once (one line), caches the decision, and
 *     reuses it without timing again; auto_first / "auto:first" never time;
 *   - OpenCL (PoCL here): a kernel directory with a broken gelu kernel makes the device fail
 *     verification, after which auto (which chose it before) skips it with one warning and takes
 *     the CPU backend, and the measured auto no longer considers it.
 * Exit 0: passed; 1: a failure; 77: the OpenCL part could not run (no device) and nothing failed
 * (CF_REQUIRE_OPENCL=1 makes that a failure). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/verify.h"
#include "clformer/common.h"
#include "clformer/config.h"

static int g_fail = 0;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            printf("ok   ");                                                                       \
        } else {                                                                                   \
            printf("FAIL ");                                                                       \
            g_fail++;                                                                              \
        }                                                                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
    } while (0)

/* ---- log capture ---------------------------------------------------------------------------- */

static int g_timed_lines, g_skip_lines;
static void capture(int level, const char *msg, void *user) {
    (void)user;
    if (strstr(msg, "device auto: timed")) g_timed_lines++;
    if (strstr(msg, "device auto: skipping")) g_skip_lines++;
    if (level <= CF_LOG_INFO) fprintf(stderr, "  [log] %s\n", msg);
}

/* files in dir ending in suffix */
static int count_files(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), s = strlen(suffix);
        if (e->d_name[0] != '.' && l >= s && !strcmp(e->d_name + l - s, suffix)) n++;
    }
    closedir(d);
    return n;
}

static const char *kind_of(cf_backend *be) {
    static cf_backend_info info;
    if (!be || cf_be_info(be, &info) != CF_OK) return "?";
    return info.kind;
}

/* ---- a planted failure: the CPU backend with gelu_forward 0.1% off ------------------------- */

static struct cf_backend_ops g_broken;
static const struct cf_backend_ops *g_cpu_ops;

static int broken_gelu(cf_backend *be, enum cf_act act, cf_view out, cf_view inp, size_t n) {
    CF_TRY(g_cpu_ops->act_forward(be, act, out, inp, n));
    float *o = cf_view_ptr_f32(out);
    for (size_t i = 0; act == CF_ACT_GELU && i < n; i++) o[i] *= 1.001f;
    return CF_OK;
}
static int broken_info(cf_backend *be, cf_backend_info *out) {
    CF_TRY(g_cpu_ops->info(be, out));
    snprintf(out->device, sizeof out->device, "test device with a wrong gelu");
    return CF_OK;
}

int main(void) {
    char cache[1024], dir[1200], cmd[8192];
    snprintf(cache, sizeof cache, "%s/test_verify_cache", CF_BINARY_DIR);
    /* keep the OpenCL program binaries there between runs, start the two caches afresh */
    snprintf(cmd, sizeof cmd, "rm -rf '%s/verify' '%s/select'", cache, cache);
    if (system(cmd) != 0) return 1;
    cf_log_set_callback(capture, NULL);
    cf_backend_options opts = cf_backend_options_default();
    opts.cache_dir = cache;
    opts.tuning = "off";

    /* ---- the CPU backend passes, cached as JSON ---------------------------------------------- */
    cf_device_id *ids = NULL;
    int n = 0;
    if (cf_device_candidates(&opts, &ids, &n) != CF_OK || n < 1) {
        printf("FAIL cf_device_candidates\n");
        return 1;
    }
    CHECK(!strcmp(ids[0].spec, "cpu"), "the CPU backend is the first candidate (%s)", ids[0].spec);
    cf_backend *cpu = NULL;
    if (cf_backend_create("cpu", &opts, &cpu) != CF_OK) return 1;
    cf_verify_summary sum;
    CHECK(cf_verify_device(cpu, "cpu", cache, stdout, &sum) == CF_OK, "verification of cpu ran");
    CHECK(sum.pass && sum.ops > 20 && sum.ops_failed == 0 && sum.train_pass,
          "cpu passes: %d ops, %d failed, training step %s", sum.ops, sum.ops_failed,
          sum.train_pass ? "passed" : "failed");
    cf_device_id cpu_id;
    cf_device_id_of(cpu, "cpu", &cpu_id);
    char why[256], path[1400];
    CHECK(cf_verify_cached(cache, &cpu_id, why, sizeof why) == 1, "the cache says cpu passed");
    cf_verify_cache_path(cache, &cpu_id, path, sizeof path);
    char *text = NULL;
    size_t len = 0;
    cJSON *j = cf_read_file(path, &text, &len) == CF_OK ? cJSON_Parse(text) : NULL;
    CHECK(j && cJSON_IsTrue(cJSON_GetObjectItem(j, "pass")) &&
              cJSON_GetArraySize(cJSON_GetObjectItem(j, "ops")) == sum.ops,
          "%s is JSON with pass true and one entry per op", path);
    cJSON_Delete(j);
    free(text);
    snprintf(dir, sizeof dir, "%s/verify", cache);
    CHECK(count_files(dir, ".json") == 1 && count_files(dir, "") == 1,
          "one file in %s, no temporary file left", dir);

    /* ---- a planted failure ---------------------------------------------------------------- */
    g_cpu_ops = cpu->ops;
    g_broken = *cpu->ops;
    g_broken.act_forward = broken_gelu;
    g_broken.info = broken_info;
    cpu->ops = &g_broken;
    CHECK(cf_verify_device(cpu, "broken", cache, stdout, &sum) == CF_OK, "verification ran");
    CHECK(!sum.pass && sum.ops_failed >= 1 && strstr(sum.first_failure, "gelu"),
          "the broken gelu fails (%d ops failed; first: %s)", sum.ops_failed, sum.first_failure);
    cf_device_id bad_id;
    cf_device_id_of(cpu, "broken", &bad_id);
    CHECK(cf_verify_cached(cache, &bad_id, why, sizeof why) == 0 && strstr(why, "gelu"),
          "the cache says it failed: %s", why);
    CHECK(cf_verify_cached(cache, &cpu_id, why, sizeof why) == 1,
          "the real cpu's entry is untouched");
    cpu->ops = g_cpu_ops;
    cf_backend_destroy(cpu);

    /* ---- auto measures once per config shape and device set ------------------------------- */
    cf_config cfg;
    cf_config_defaults(&cfg);
    cfg.batch_size = 2;
    cf_backend *be = NULL;
    snprintf(dir, sizeof dir, "%s/select", cache);
    g_timed_lines = 0;
    CHECK(cf_backend_create_for("auto", &opts, &cfg, &be) == CF_OK, "auto with a config");
    const int timed = n > 1;
    char first_kind[16];
    snprintf(first_kind, sizeof first_kind, "%s", kind_of(be));
    cf_backend_destroy(be);
    CHECK(g_timed_lines == timed, "%d device%s: %d measurement line (%d expected)", n,
          n == 1 ? "" : "s", g_timed_lines, timed);
    CHECK(count_files(dir, ".json") == timed, "%d cached decision in %s", timed, dir);
    g_timed_lines = 0;
    CHECK(cf_backend_create_for("auto", &opts, &cfg, &be) == CF_OK && g_timed_lines == 0 &&
              !strcmp(kind_of(be), first_kind),
          "the second auto reuses the decision (%s, %d new measurements)", first_kind,
          g_timed_lines);
    cf_backend_destroy(be);
    cfg.batch_size = 3; /* another shape: measured again */
    CHECK(cf_backend_create_for("auto", &opts, &cfg, &be) == CF_OK && g_timed_lines == timed,
          "another config shape is measured again");
    cf_backend_destroy(be);
    cf_backend_options first = opts;
    first.auto_first = 1;
    char plain_kind[16];
    CHECK(cf_backend_create("auto", &opts, &be) == CF_OK, "plain auto (no config)");
    snprintf(plain_kind, sizeof plain_kind, "%s", kind_of(be));
    cf_backend_destroy(be);
    g_timed_lines = 0;
    CHECK(cf_backend_create_for("auto", &first, &cfg, &be) == CF_OK && g_timed_lines == 0 &&
              !strcmp(kind_of(be), plain_kind),
          "auto_first: no measurement, the first usable GPU or the CPU (%s)", kind_of(be));
    cf_backend_destroy(be);
    cfg.batch_size = 4;
    CHECK(cf_backend_create_for("auto:first", &opts, &cfg, &be) == CF_OK && g_timed_lines == 0,
          "\"auto:first\": no measurement");
    cf_backend_destroy(be);

    /* ---- OpenCL: a broken kernel makes auto skip the device ------------------------------- */
    int skipped = 0;
    int cl = -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(ids[i].kind, "opencl")) {
            cl = i;
            break;
        }
    if (cl < 0) {
        skipped = 1;
        printf("note: no usable OpenCL device: the OpenCL part is skipped\n");
    } else {
        cf_backend_options any = opts;
        any.auto_cpu_devices = 1; /* auto may take an OpenCL CPU device such as PoCL */
        CHECK(cf_backend_create("auto", &any, &be) == CF_OK && !strcmp(kind_of(be), "opencl"),
              "before: auto (CPU devices allowed) picks %s", kind_of(be));
        cf_backend_destroy(be);
        char kdir[1200];
        snprintf(kdir, sizeof kdir, "%s/test_verify_kernels", CF_BINARY_DIR);
        snprintf(cmd, sizeof cmd,
                 "rm -rf '%s' && mkdir -p '%s' && cp '%s'/cl_kernels/*.cl '%s'/ && sed -i "
                 "'s|out\\[out_off + i\\] = x / (1.0f + exp(x \\* (GELU_C1 + GELU_C2 \\* (x \\* "
                 "x))));|out[out_off + i] = 1.001f * x / (1.0f + exp(x * (GELU_C1 + GELU_C2 * (x "
                 "* x))));|' '%s/gelu.cl' && grep -q '1.001f' '%s/gelu.cl'",
                 kdir, kdir, CF_SOURCE_DIR, kdir, kdir, kdir);
        CHECK(system(cmd) == 0, "planted a broken gelu_forward in %s", kdir);
        cf_backend_options broken = opts;
        broken.kernel_dir = kdir;
        CHECK(cf_backend_create(ids[cl].spec, &broken, &be) == CF_OK, "opened %s with it",
              ids[cl].spec);
        CHECK(be && cf_verify_device(be, ids[cl].spec, cache, stdout, &sum) == CF_OK &&
                  !sum.pass && strstr(sum.first_failure, "gelu"),
              "%s fails verification: %s", ids[cl].spec, sum.first_failure);
        cf_backend_destroy(be);
        CHECK(cf_verify_cached(cache, &ids[cl], why, sizeof why) == 0,
              "the cache says %s failed", ids[cl].spec);
        g_skip_lines = 0;
        CHECK(cf_backend_create("auto", &any, &be) == CF_OK && !strcmp(kind_of(be), "cpu"),
              "after: auto skips it and takes %s", kind_of(be));
        cf_backend_destroy(be);
        CHECK(g_skip_lines == 1, "auto said so once (%d lines)", g_skip_lines);
        g_skip_lines = g_timed_lines = 0;
        cfg.batch_size = 5; /* a shape not measured yet */
        CHECK(cf_backend_create_for("auto", &opts, &cfg, &be) == CF_OK &&
                  !strcmp(kind_of(be), "cpu") && g_skip_lines == 1 &&
                  g_timed_lines == (n - 1 > 1),
              "the measured auto leaves it out (%s; %d skip line, %d measurements)", kind_of(be),
              g_skip_lines, g_timed_lines);
        cf_backend_destroy(be);
    }
    free(ids);
    cf_log_set_callback(NULL, NULL);
    if (g_fail) {
        printf("FAIL test_verify: %d checks failed\n", g_fail);
        return 1;
    }
    if (skipped) {
        const char *req = getenv("CF_REQUIRE_OPENCL");
        if (req && atoi(req) != 0) {
            printf("FAIL test_verify: no OpenCL device and CF_REQUIRE_OPENCL=1\n");
            return 1;
        }
        printf("SKIP test_verify: the OpenCL part could not run\n");
        return 77;
    }
    printf("PASS test_verify\n");
    return 0;
}
