/* clformer test: flash attention on OpenCL against a naive double-precision reference
 * (tests/flash_ref.h): forward output, log-sum-exp, dq, dk, dv for causal, windowed,
 * document-masked and GQA cases, T = 1, T not a multiple of the tiles and around them, for both
 * sets of kernels (cl_flash.c): the register-tiled ones (cl_kernels/flash_tiled.cl, forced with
 * flash_kernel "tiled", so a device they do not fit fails here) and the rows ones
 * (cl_kernels/flash_attention.cl).
 *     test_cl_flash_attention [--small] [--kernel tiled|rows] [device spec]
 * --small: the few small cases oclgrind runs (tests/cli_oclgrind_flash.sh); --kernel: one set
 * only. Skips (77) without an OpenCL device unless CF_REQUIRE_OPENCL=1. */
#include "test_cl_common.h"

#include "flash_ref.h"

int main(int argc, char **argv) {
    const double t0 = cf_time_now();
    int small = 0, code = 0;
    const char *spec = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--small") == 0) small = 1;
        else if (strcmp(argv[i], "--kernel") == 0 && i + 1 < argc) only = argv[++i];
        else spec = argv[i];
    }
    if (only && strcmp(only, "tiled") && strcmp(only, "rows")) {
        fprintf(stderr, "test_cl_flash_attention: --kernel takes tiled or rows, not '%s'\n", only);
        return 2;
    }
    if (tcl_open("test_cl_flash_attention", spec, &code) < 0) return code;
    fr_keep_buffers = small;
    static const char *kinds[2] = {"tiled", "rows"};
    for (int k = 0; k < 2; k++) {
        if (only && strcmp(only, kinds[k])) continue;
        cf_backend_options o = *tcl_opts();
        o.flash_kernel = kinds[k];
        cf_backend *be = NULL;
        TCL_OK(cf_backend_opencl_create(spec ? spec : tcl_spec(), &o, &be));
        printf("flash kernels: %s\n", kinds[k]);
        fr_run_all(be, kinds[k], small);
        if (!fr_keep_buffers) cf_backend_destroy(be);
    }
    fails += fr_fails;
    checks += fr_checks;
    return tcl_finish("test_cl_flash_attention", t0);
}
