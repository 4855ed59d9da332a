/* clformer test: device selection and the documented failure behaviour of the OpenCL backend.
 *  - `clformer devices` listing; specs opencl, opencl:P:D, name/version substrings (any case),
 *    CLFORMER_DEVICE; unknown specs are errors that list what exists.
 *  - A kernel build that fails (injected with cf_fault_set_build at every build of the start-up
 *    sequence, and a real compile error from a broken kernel file): `auto` falls back to the CPU
 *    backend with exactly one warning line; an explicit device is an error naming the kernel file.
 *  - Allocation failures (injected in the wrapper and in the backend's scratch, and a request over
 *    the device's limit) return CF_ERR_NOMEM and leave the backend usable.
 *  - Views too small for an op's shape are CF_ERR_INVALID before anything reaches the device. */
#include "test_cl_common.h"

#include <sys/stat.h>
#include <unistd.h>

/* ---- counting log lines by level ----------------------------------------------------------- */

static int n_err, n_warn;
static char last_warn[1024], all_errors[8192];
static void count_log(int level, const char *msg, void *user) {
    (void)user;
    if (level == CF_LOG_ERROR) {
        n_err++;
        size_t used = strlen(all_errors);
        snprintf(all_errors + used, sizeof all_errors - used, "%s\n", msg);
    } else if (level == CF_LOG_WARN) {
        n_warn++;
        snprintf(last_warn, sizeof last_warn, "%s", msg);
    }
}
static void reset_log(void) {
    n_err = n_warn = 0;
    last_warn[0] = all_errors[0] = 0;
}

/* ---- device specs -------------------------------------------------------------------------- */

static void test_listing(void) {
    FILE *f = tmpfile();
    TCL_OK(cf_opencl_list_devices(f));
    long len = ftell(f);
    rewind(f);
    char *text = tcl_malloc((size_t)len + 1);
    size_t got = fread(text, 1, (size_t)len, f);
    text[got] = 0;
    fclose(f);
    expect(strstr(text, "opencl:0:0") && strstr(text, "usable") && strstr(text, "compute units") &&
               strstr(text, "OpenCL C") && strstr(text, "fp16"),
           "devices listing names opencl:0:0 with type, units, memory, OpenCL C, fp16, usable");
    printf("%s", text);
    free(text);
}

static void expect_spec_ok(const char *spec, const char *why) {
    reset_log();
    cf_backend *be = NULL;
    int rc = cf_backend_create(spec, tcl_opts(), &be);
    expect(rc == CF_OK && be && cf_backend_is_opencl(be) && n_err == 0 && n_warn == 0,
           "device '%s' opens the OpenCL backend (%s)%s%s", spec, why, rc ? ": " : "",
           rc ? cf_status_str(rc) : "");
    if (be) cf_backend_destroy(be);
}

static void expect_spec_error(const char *spec, const char *must_say) {
    reset_log();
    cf_backend *be = NULL;
    int rc = cf_backend_create(spec, tcl_opts(), &be);
    expect(rc < 0 && !be && n_err == 1 && strstr(all_errors, must_say) != NULL,
           "device '%s' is an error saying \"%s\" (rc %d, %d error lines)", spec, must_say, rc,
           n_err);
    if (n_err) printf("     message: %s", all_errors);
    if (be) cf_backend_destroy(be);
}

static void test_specs(void) {
    expect_spec_ok("opencl", "first usable device");
    expect_spec_ok("opencl:0:0", "platform 0, device 0");
    /* a substring of the first device's name, in another case */
    char name[256];
    snprintf(name, sizeof name, "%s", cf_be_name(GPU) + strlen("opencl: "));
    char *paren = strrchr(name, '(');
    if (paren && paren > name) paren[-1] = 0;
    name[6] = 0;
    for (char *p = name; *p; p++)
        if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
        else if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    expect_spec_ok(name, "device-name substring, case swapped");
    if (strstr(cf_be_name(GPU), "Portable Computing Language")) {
        expect_spec_ok("pocl", "PoCL's device version says PoCL");
        expect_spec_ok("PoCL", "any case");
    }
    setenv("CLFORMER_DEVICE", "opencl:0:0", 1);
    expect_spec_ok(cf_cli_device_from_env(NULL), "from CLFORMER_DEVICE (read by the CLI)");
    unsetenv("CLFORMER_DEVICE");
    expect_spec_error("no-such-device-xyz", "not found; available:");
    expect_spec_error("no-such-device-xyz", "clformer devices");
    expect_spec_error("opencl:7:3", "not found");
    expect_spec_error("opencl:zero", "expected opencl:P:D");
}

/* ---- build failures ------------------------------------------------------------------------ */

/* `auto` must fall back to the CPU backend with one warning; the OpenCL CPU device counts for
 * `auto` only with CF_OPENCL_AUTO_CPU=1, which the caller sets. */
static void expect_auto_fallback(const char *label, const char *warn_must_say) {
    reset_log();
    cf_backend *be = NULL;
    int rc = cf_backend_create("auto", tcl_opts(), &be);
    cf_backend_info info;
    int is_cpu = rc == CF_OK && be && cf_be_info(be, &info) == CF_OK && !strcmp(info.kind, "cpu");
    expect(rc == CF_OK && is_cpu && n_warn == 1 && n_err == 0 &&
               strstr(last_warn, "falling back to the CPU backend") &&
               strstr(last_warn, warn_must_say),
           "%s: auto falls back to the CPU backend with one warning (%d warnings, %d errors)",
           label, n_warn, n_err);
    printf("     warning: %s\n", last_warn);
    if (be) cf_backend_destroy(be);
}

static void expect_explicit_error(const char *label, int want_rc, const char *must_say) {
    reset_log();
    cf_backend *be = NULL;
    int rc = cf_backend_create(tcl_spec(), tcl_opts(), &be);
    expect(rc == want_rc && !be && n_err >= 1 && n_warn == 0 && strstr(all_errors, must_say),
           "%s: explicit device is an error (rc %d) naming \"%s\"", label, rc, must_say);
    if (be) cf_backend_destroy(be);
}

static void test_build_failures(void) {
    setenv("CF_OPENCL_AUTO_CPU", "1", 1);
    /* every build of the start-up sequence, failed in turn */
    int builds = 0;
    {
        cf_backend *be = NULL;
        TCL_OK(cf_backend_create(tcl_spec(), tcl_opts(), &be));
        cf_cl_build_stats st;
        TCL_OK(cf_backend_opencl_build_stats(be, &st));
        builds = st.programs_from_source + st.programs_from_cache;
        cf_backend_destroy(be);
    }
    expect(builds >= 9, "start-up builds %d programs", builds);
    for (int nth = 1; nth <= builds; nth++) {
        char label[64];
        snprintf(label, sizeof label, "injected failure of build %d of %d", nth, builds);
        cf_fault_set_build(nth);
        expect_explicit_error(label, CF_ERR_BUILD, "cl_kernels/");
        cf_fault_set_build(nth);
        expect_auto_fallback(label, "injected fault");
    }
    cf_fault_set_build(0);

    /* a real compile error: a kernel directory whose gelu.cl does not compile */
    char dir[] = "/tmp/cf_badkernels_XXXXXX";
    if (!mkdtemp(dir)) {
        expect(0, "mkdtemp for the broken kernel directory");
        return;
    }
    static const char *files[] = {"residual.cl", "reduce.cl",    "adamw.cl",     "layernorm.cl",
                                  "gemm.cl",     "encoder.cl",   "attention.cl", "crossentropy.cl",
                                  "common.cl",   "act.cl",       "rmsnorm.cl",   "rope.cl"};
    char path[512], *src = NULL;
    size_t len = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", CF_SOURCE_DIR "/cl_kernels", files[i]);
        TCL_OK(cf_read_file(path, &src, &len));
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        TCL_OK(cf_write_file_atomic(path, src, len));
        free(src);
    }
    snprintf(path, sizeof path, "%s/gelu.cl", dir);
    const char *bad = "__kernel void gelu_forward(__global float *out) { out[0] = undefined_x; }\n";
    TCL_OK(cf_write_file_atomic(path, bad, strlen(bad)));
    setenv("CF_KERNEL_DIR", dir, 1);
    expect_explicit_error("broken gelu.cl", CF_ERR_BUILD, "cl_kernels/gelu.cl");
    expect(strstr(all_errors, "undefined_x") != NULL,
           "the build log (with the offending identifier) is printed");
    expect_auto_fallback("broken gelu.cl", "cl_kernels/gelu.cl");
    unsetenv("CF_KERNEL_DIR");
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/gelu.cl", dir);
    unlink(path);
    rmdir(dir);
    unsetenv("CF_OPENCL_AUTO_CPU");

    /* without CF_OPENCL_AUTO_CPU, auto takes only GPUs: with none usable it says so */
    int has_gpu = 0;
    {
        cl_uint np = 0;
        cl_platform_id plats[16];
        if (clGetPlatformIDs(16, plats, &np) == CL_SUCCESS)
            for (cl_uint p = 0; p < np && p < 16; p++) {
                cl_uint nd = 0;
                if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_GPU, 0, NULL, &nd) == CL_SUCCESS &&
                    nd > 0)
                    has_gpu = 1;
            }
    }
    if (!has_gpu) expect_auto_fallback("no OpenCL GPU", "no usable OpenCL GPU");
}

/* ---- allocation failures ------------------------------------------------------------------- */

static void test_alloc_failures(void) {
    cf_buffer *b = NULL;
    reset_log();
    cf_fault_set_alloc(1);
    int rc = cf_be_alloc(GPU, 4096, &b);
    expect(rc == CF_ERR_NOMEM && !b && n_err == 1,
           "injected wrapper allocation failure: CF_ERR_NOMEM, one error line");
    reset_log();
    rc = cf_be_alloc(GPU, (size_t)1 << 62, &b);
    expect(rc == CF_ERR_NOMEM && !b && n_err == 1 && strstr(all_errors, "largest allocation"),
           "allocation over the device limit: CF_ERR_NOMEM naming the limit");
    printf("     message: %s", all_errors);

    /* the backend's own scratch (reduce_sum partials) failing inside an op */
    pair x = pair_rand(100000, 1.0f), out = pair_rand(1, 1.0f);
    cf_backend *fresh = NULL;
    TCL_OK(cf_backend_opencl_create(tcl_spec(), tcl_opts(), &fresh));
    cf_buffer *fx = NULL, *fo = NULL;
    TCL_OK(cf_be_alloc(fresh, 4000, &fx));
    TCL_OK(cf_be_alloc(fresh, 4, &fo));
    reset_log();
    cf_fault_set_alloc(1);
    rc = cf_be_reduce_sum(fresh, cf_view_f32(fo, 0), cf_view_f32(fx, 0), 1000, 1);
    expect(rc == CF_ERR_NOMEM && n_err == 1,
           "injected scratch allocation failure inside reduce_sum: CF_ERR_NOMEM (rc %d)", rc);
    cf_fault_set_alloc(0);
    float v = -1.0f;
    rc = cf_be_reduce_sum(fresh, cf_view_f32(fo, 0), cf_view_f32(fx, 0), 1000, 1);
    if (rc == CF_OK) rc = cf_be_download(fresh, &v, cf_view_f32(fo, 0), 4);
    expect(rc == CF_OK && v == 0.0f, "the same op works afterwards (sum of a zeroed buffer: %g)",
           v);
    cf_be_free(fresh, fx);
    cf_be_free(fresh, fo);
    cf_backend_destroy(fresh);
    pair_free(x);
    pair_free(out);
    b = NULL;
    TCL_OK(cf_be_alloc(GPU, 4096, &b));
    expect(b != NULL, "allocation works again after the injected failures");
    cf_be_free(GPU, b);
}

/* an op whose view is too small for its shape is an error before anything reaches the device */
static void test_view_checks(void) {
    cf_buffer *small = NULL;
    TCL_OK(cf_be_alloc(GPU, 100 * 4, &small));
    reset_log();
    int rc = cf_be_gelu_forward(GPU, cf_view_f32(small, 50), cf_view_f32(small, 0), 60);
    expect(rc == CF_ERR_INVALID && n_err == 1 && strstr(all_errors, "'out' needs 60 f32 elements"),
           "gelu_forward on a view too small: CF_ERR_INVALID naming the argument");
    printf("     message: %s", all_errors);
    reset_log();
    rc = cf_be_gemm(GPU, 0, 0, 10, 10, 10, 1.0f, cf_view_f32(small, 0), 10, cf_view_f32(small, 0),
                    10, 0.0f, cf_view_f32(small, 10), 10);
    expect(rc == CF_ERR_INVALID && n_err == 1 && strstr(all_errors, "'C'"),
           "gemm whose C overruns the buffer: CF_ERR_INVALID naming C");
    cf_be_free(GPU, small);
}

int main(void) {
    int code = 0;
    if (tcl_open("test_cl_fallback", NULL, &code) < 0) return code;
    double t0 = cf_time_now();
    cf_log_set_callback(count_log, NULL);
    test_listing();
    test_specs();
    test_build_failures();
    test_alloc_failures();
    test_view_checks();
    cf_log_set_callback(NULL, NULL);
    return tcl_finish("test_cl_fallback", t0);
}
