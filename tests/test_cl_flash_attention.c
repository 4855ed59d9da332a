/* clformer test: flash attention on OpenCL (cl_kernels/flash_attention.cl, cl_flash.c) against a
 * naive double-precision reference (tests/flash_ref.h): forward output, log-sum-exp, dq, dk, dv
 * for causal, windowed, document-masked and GQA cases, T = 1 and T not a multiple of the tiles.
 *     test_cl_flash_attention [--small] [device spec]
 * --small: the few small cases oclgrind runs (tests/cli_oclgrind_flash.sh). Skips (77) without
 * an OpenCL device unless CF_REQUIRE_OPENCL=1. */
#include "test_cl_common.h"

#include "flash_ref.h"

int main(int argc, char **argv) {
    const double t0 = cf_time_now();
    int small = 0, code = 0;
    const char *spec = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--small") == 0) small = 1;
        else spec = argv[i];
    }
    if (tcl_open("test_cl_flash_attention", spec, &code) < 0) return code;
    fr_keep_buffers = small;
    fr_run_all(GPU, "cl", small);
    fails += fr_fails;
    checks += fr_checks;
    return tcl_finish("test_cl_flash_attention", t0);
}
