/* clformer test: flash attention on OpenCL against a naive double-precision reference
 * (tests/flash_ref.h): forward output, log-sum-exp, dq, dk, dv for causal, windowed,
 * document-masked and GQA cases, T = 1, T not a multiple of the tiles and around them, for both
 * sets of kernels (cl_flash.c): the register-tiled ones (cl_kernels/flash_tiled.cl, forced with
 * flash_kernel "tiled", so a device they do not fit fails here), the rows ones
 * (cl_kernels/flash_attention.cl), and the backward through batched GEMMs (flash_kernel "matrix": the
 * probabilities recomputed by the matrix attention ops, whose backward runs from them) with the
 * default scratch budget (one chunk), a budget of one byte (chunks of one batch element) and one
 * of 100 KB (a chunk of two batch elements, then one, in the case "chunks B3 T30"; one element
 * per chunk in the others); the cases with a window or a document mask run auto's kernels there.
 * Then the same on the fused attention kernels (CF_ATTENTION=fused), whose head ranges split a
 * multi-head batch element that exceeds the budget: one byte (one head a chunk) and 30 KB (heads
 * 0-1 then 2 in "heads B2 T40 NH3", two and two in "causal B2 T37 NH4").
 * --small runs tiled, rows and the fused one-byte matrix set (a head a chunk in its multi-head
 * case).
 *     test_cl_flash_attention [--small] [--kernel tiled|rows|matrix] [device spec]
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
    if (only && strcmp(only, "tiled") && strcmp(only, "rows") && strcmp(only, "matrix")) {
        fprintf(stderr, "test_cl_flash_attention: --kernel takes tiled, rows or matrix, not '%s'\n",
                only);
        return 2;
    }
    if (tcl_open("test_cl_flash_attention", spec, &code) < 0) return code;
    fr_keep_buffers = small;
    /* small: the run --small makes; attention: the matrix ops' path ("fused" runs the fused
     * kernels on CPU devices too, whose head ranges the matrix backward uses for multi-head calls
     * where one batch element's scratch exceeds the budget) */
    static const struct {
        const char *kind, *label;
        size_t scratch;
        const char *attention;
        int small;
    } runs[] = {{"tiled", "tiled", 0, NULL, 1},
                {"rows", "rows", 0, NULL, 1},
                {"matrix", "matrix", 0, NULL, 0},
                {"matrix", "matrix/1", 1, NULL, 0},
                {"matrix", "matrix/100K", 100000, NULL, 0},
                {"matrix", "matrix-fused/1", 1, "fused", 1},
                {"matrix", "matrix-fused/30K", 30000, "fused", 0}};
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        if (only && strcmp(only, runs[k].kind)) continue;
        if (small && !runs[k].small) continue;
        cf_backend_options o = *tcl_opts();
        o.flash_kernel = runs[k].kind;
        o.flash_scratch = runs[k].scratch;
        if (runs[k].attention) o.attention = runs[k].attention;
        cf_backend *be = NULL;
        TCL_OK(cf_backend_opencl_create(spec ? spec : tcl_spec(), &o, &be));
        printf("flash kernels: %s (scratch budget %zu bytes, 0: default; attention ops %s)\n",
               runs[k].label, runs[k].scratch, runs[k].attention ? runs[k].attention : "auto");
        fr_run_all(be, runs[k].label, small);
        if (!fr_keep_buffers) cf_backend_destroy(be);
    }
    fails += fr_fails;
    checks += fr_checks;
    return tcl_finish("test_cl_flash_attention", t0);
}
