/* clformer test: the backend contract's registry, version check, info query and options.
 *  - the registry lists "cpu" first (and "opencl" when built with it); every row creates a backend
 *    whose ops table has CF_BACKEND_API_VERSION;
 *  - a table of another version, or without the info slot, is refused with one error line that
 *    names both versions;
 *  - cf_be_info of the CPU backend: kind "cpu", host threads, native GEMM, the path in use;
 *  - options reach the backend at creation (cpu_gemm), a bad one is an error naming it, and
 *    library code reads no environment variable (CF_CPU_GEMM set here changes nothing). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "clformer/common.h"

static int fails = 0, checks = 0;
static char g_err[2048];
static int n_err = 0;

static void expect(int cond, const char *what) {
    checks++;
    if (!cond) fails++;
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
}

static void capture(int level, const char *msg, void *user) {
    (void)user;
    if (level == CF_LOG_ERROR) {
        n_err++;
        snprintf(g_err, sizeof g_err, "%s", msg);
    }
}

static int fake_info(cf_backend *be, cf_backend_info *out) {
    (void)be;
    out->kind = "fake";
    return CF_OK;
}

int main(void) {
    cf_log_set_callback(capture, NULL);

    int n = 0;
    const cf_backend_reg *reg = cf_backend_registry(&n);
    expect(n >= 1 && !strcmp(reg[0].name, "cpu"), "the registry's first row is cpu");
#ifdef CF_HAVE_OPENCL
    int has_cl = 0;
    for (int i = 0; i < n; i++) has_cl |= !strcmp(reg[i].name, "opencl");
    expect(has_cl && n == 2, "the registry has an opencl row in an OpenCL build");
#else
    expect(n == 1, "the registry has only cpu without OpenCL");
#endif
    for (int i = 0; i < n; i++)
        expect(reg[i].create && reg[i].list_devices && reg[i].enumerate,
               "every row has create, list_devices and enumerate");

    /* the enumerate slot: the C backend is one usable CPU device, "cpu"; every device of every
     * row has a spec that creates a backend of that row (the usable ones) with its name */
    cf_device_desc one[2];
    char why[256];
    memset(one, 0, sizeof one);
    int cnt = reg[0].enumerate(NULL, one, 1, why, sizeof why);
    expect(cnt == 1 && !strcmp(one[0].spec, "cpu") && one[0].usable && one[0].name[0] &&
               one[0].driver[0] && one[0].device_type == CF_DEVICE_CPU && !one[0].reason[0],
           "the cpu row enumerates one usable CPU device, spec cpu, its GEMM kernel as driver");
    expect(reg[0].enumerate(NULL, one, 0, why, sizeof why) == 1,
           "enumerate with no room still says how many devices there are");
    cf_device_desc *all = NULL;
    int nall = 0;
    expect(cf_backend_enumerate(NULL, stdout, &all, &nall) == CF_OK && nall >= 1 && all &&
               !strcmp(all[0].kind, "cpu") && !strcmp(all[0].spec, "cpu"),
           "cf_backend_enumerate lists the cpu device first, with its kind");
    for (int i = 0; i < nall; i++) {
        char what[1200];
        int row_ok = 0;
        for (int r = 0; r < n; r++) row_ok |= all[i].kind == reg[r].name;
        snprintf(what, sizeof what, "device %d: kind %s spec %s (%s) is a row's, usable %d%s%s", i,
                 all[i].kind, all[i].spec, all[i].name, all[i].usable,
                 all[i].usable ? "" : ": ", all[i].reason);
        expect(row_ok && all[i].spec[0] && all[i].name[0] &&
                   all[i].device_type >= CF_DEVICE_CPU &&
                   all[i].device_type <= CF_DEVICE_ACCELERATOR && (all[i].usable || all[i].reason[0]),
               what);
        if (!all[i].usable) continue;
        cf_backend *d = NULL;
        cf_backend_info di;
        snprintf(what, sizeof what, "device %d: spec %s creates a %s backend on %s", i,
                 all[i].spec, all[i].kind, all[i].name);
        expect(cf_backend_create(all[i].spec, NULL, &d) == CF_OK && cf_be_info(d, &di) == CF_OK &&
                   !strcmp(di.kind, all[i].kind) && !strcmp(di.device, all[i].name) &&
                   di.device_type == all[i].device_type,
               what);
        cf_backend_destroy(d);
    }
    free(all);

    /* the version check */
    struct cf_backend_ops ops;
    memset(&ops, 0, sizeof ops);
    ops.api_version = CF_BACKEND_API_VERSION + 1;
    ops.info = fake_info;
    n_err = 0;
    int rc = cf_backend_check_ops(&ops, "fake");
    char want[64];
    snprintf(want, sizeof want, "version %d, this clformer expects %d", CF_BACKEND_API_VERSION + 1,
             CF_BACKEND_API_VERSION);
    expect(rc == CF_ERR_UNSUPPORTED && n_err == 1 && strstr(g_err, want) &&
               strstr(g_err, "'fake'"),
           "a backend of another API version is refused with one line naming both versions");
    printf("     message: %s\n", g_err);
    ops.api_version = 1;
    n_err = 0;
    expect(cf_backend_check_ops(&ops, "fake") == CF_ERR_UNSUPPORTED && n_err == 1,
           "an older API version is refused too");
    ops.api_version = CF_BACKEND_API_VERSION;
    ops.info = NULL;
    n_err = 0;
    expect(cf_backend_check_ops(&ops, "fake") == CF_ERR_UNSUPPORTED && n_err == 1 &&
               strstr(g_err, "info"),
           "a backend without the required info slot is refused");
    ops.info = fake_info;
    n_err = 0;
    expect(cf_backend_check_ops(&ops, "fake") == CF_OK && n_err == 0,
           "the current version with info is accepted");

    /* the CPU backend through the registry, with the environment ignored by the library */
    setenv("CF_CPU_GEMM", "no-such-kernel", 1);
    cf_backend *be = NULL;
    n_err = 0;
    rc = cf_backend_create("cpu", NULL, &be);
    expect(rc == CF_OK && be && n_err == 0,
           "cpu is created with the default options although CF_CPU_GEMM is nonsense (the "
           "library reads no environment)");
    if (!be) return 1;
    expect(be->ops->api_version == CF_BACKEND_API_VERSION, "the cpu table has the API version");
    cf_backend_info info;
    expect(cf_be_info(be, &info) == CF_OK && !strcmp(info.kind, "cpu") && info.host_threads == 1 &&
               info.device_type == CF_DEVICE_CPU && (info.gemm_paths & CF_GEMM_PATH_NATIVE) &&
               !(info.gemm_paths & CF_GEMM_PATH_CLBLAST) && info.gemm[0] && info.device[0] &&
               info.max_alloc == 0 && info.device_profiling == 0,
           "cf_be_info of the cpu backend: kind, host threads, device type, GEMM paths, path");
    printf("     cpu: %s, gemm %s, %d threads\n", info.device, info.gemm, info.compute_units);
    expect(((info.gemm_paths & CF_GEMM_PATH_BLAS) != 0) == (cf_cpu_blas_available() != 0),
           "the blas path is listed exactly when compiled in");
    cf_backend_destroy(be);
    unsetenv("CF_CPU_GEMM");

    /* options at creation */
    cf_backend_options o = cf_backend_options_default();
    expect(o.map == -1 && !o.gemm && !o.cache_dir && !o.tuning && !o.auto_cpu_devices,
           "the defaults: auto paths, map on unified memory, no cache, tuning looked up");
    o.cpu_gemm = "native";
    o.verbose = 1;
    be = NULL;
    rc = cf_backend_create("cpu", &o, &be);
    expect(rc == CF_OK && be && cf_be_info(be, &info) == CF_OK &&
               !strncmp(info.gemm, "native:", 7) && be->verbose == 1,
           "options.cpu_gemm native and verbose reach the backend");
    if (be) cf_backend_destroy(be);
    o.cpu_gemm = "no-such-kernel";
    be = NULL;
    n_err = 0;
    rc = cf_backend_create("cpu", &o, &be);
    expect(rc < 0 && !be && n_err == 1 && strstr(g_err, "no-such-kernel"),
           "a bad options.cpu_gemm is one error naming it");
    printf("     message: %s\n", g_err);

    /* listing through the registry */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    expect(f && cf_backend_list_devices(f) == CF_OK, "cf_backend_list_devices succeeds");
    if (f) fclose(f);
    expect(buf && strstr(buf, "cpu ") != NULL, "the listing has the cpu line");
    free(buf);

    printf("%s test_backend_registry: %d of %d checks failed\n", fails ? "FAIL" : "PASS", fails,
           checks);
    return fails ? 1 : 0;
}
