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
 * multi-head batch element that exceeds the budget: one byte (one head a chunk), 30 KB (heads
 * 0-1 then 2 in "heads B2 T40 NH3", two and two in "causal B2 T37 NH4") and 60 KB (a chunk of
 * two batch elements, then one, in "chunks B3 T30": two (T,T) matrices a head on this path).
 * Last, the matrix backward with the fused kernels asked for where none builds: the batched GEMMs;
 * and the attention-op counter, which counts a call in head ranges once.
 * --small runs tiled, rows and the fused one-byte matrix set (a head a chunk in its multi-head
 * case).
 * Then the forward and backward on the matrix engine's tensor cores (flash_kernel "mma",
 * cl_kernels/flash_mma.cl) in bf16, fp16 and TF32, emulated unless CF_MATRIX_ENGINE names the
 * engine, against the reference on q, k, v rounded to the format (cases with a head size that is
 * a multiple of the product's k: 16, 8 in TF32); --small: the two small "mma" cases in bf16 and
 * TF32.
 *     test_cl_flash_attention [--small] [--kernel tiled|rows|matrix|mma] [device spec]
 * --small: the few small cases oclgrind runs (tests/cli_oclgrind_flash.sh); --kernel: one set
 * only. Skips (77) without an OpenCL device unless CF_REQUIRE_OPENCL=1. */
#include "test_cl_common.h"

#include "flash_ref.h"

#include <dirent.h>
#include <unistd.h>

/* The matrix backward asked for the fused kernels where none of them builds (a copy of the kernel
 * files whose attention.cl refuses every build with a head size, the fused kernels' builds, and
 * keeps the matrix ops' softmax kernels): it must run the batched GEMMs instead, and the results
 * still meet the reference */
static void fused_unavailable(const char *spec) {
    char dir[] = "/tmp/cf_nofused_XXXXXX";
    if (!mkdtemp(dir)) {
        expect(0, "mkdtemp for the kernel directory");
        return;
    }
    DIR *d = opendir(CF_SOURCE_DIR "/cl_kernels");
    if (!d) {
        expect(0, "open %s", CF_SOURCE_DIR "/cl_kernels");
        rmdir(dir);
        return;
    }
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d)) != NULL) {
        const size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".cl") != 0) continue;
        char *src = NULL;
        size_t len = 0;
        snprintf(path, sizeof path, "%s/cl_kernels/%s", CF_SOURCE_DIR, e->d_name);
        TCL_OK(cf_read_file(path, &src, &len));
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (strcmp(e->d_name, "attention.cl") == 0) {
            static const char planted[] = "#ifdef HS\n#error planted: no fused kernels here\n#endif\n";
            char *both = malloc(sizeof planted + len);
            if (!both) abort();
            memcpy(both, planted, sizeof planted - 1);
            memcpy(both + sizeof planted - 1, src, len);
            TCL_OK(cf_write_file_atomic(path, both, sizeof planted - 1 + len));
            free(both);
        } else {
            TCL_OK(cf_write_file_atomic(path, src, len));
        }
        free(src);
    }
    closedir(d);
    cf_backend_options o = *tcl_opts();
    o.flash_kernel = "matrix";
    o.flash_scratch = 1;
    o.attention = "fused";
    o.kernel_dir = dir;
    cf_backend *be = NULL;
    TCL_OK(cf_backend_opencl_create(spec ? spec : tcl_spec(), &o, &be));
    printf("flash kernels: matrix, attention ops fused, where no fused kernel builds\n");
    fr_run_all(be, "matrix-nofused/1", 0);
    cf_backend_info info;
    TCL_OK(cf_be_info(be, &info));
    expect(info.attention_fused == 0 && info.attention_gemm > 0,
           "without fused kernels the matrix backward ran the batched GEMMs (%ld fused, %ld GEMM "
           "attention ops)",
           info.attention_fused, info.attention_gemm);
    cf_backend_destroy(be);
    if ((d = opendir(dir)) != NULL) {
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.') {
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                unlink(path);
            }
        closedir(d);
    }
    rmdir(dir);
}

/* The attention-op counter (cf_backend_info.attention_fused) counts a matrix backward's call on the
 * fused kernels once per batch chunk, forward and backward, however many head ranges it takes:
 * "heads B2 T40 NH3 hs16" under a 30 KB budget runs heads 0-1, then head 2, of each element. */
static void ranges_counted_once(const char *spec) {
    const fr_case *c = &fr_cases[sizeof fr_cases / sizeof fr_cases[0] - 1];
    cf_backend_options o = *tcl_opts();
    o.flash_kernel = "matrix";
    o.flash_scratch = 30000;
    o.attention = "fused";
    cf_backend *be = NULL;
    TCL_OK(cf_backend_opencl_create(spec ? spec : tcl_spec(), &o, &be));
    cf_backend_info before, after;
    TCL_OK(cf_be_info(be, &before));
    fr_run(be, "matrix-fused/30K (counted)", c, 77);
    TCL_OK(cf_be_info(be, &after));
    const long n = after.attention_fused - before.attention_fused;
    expect(strncmp(c->name, "heads", 5) == 0 && n == 2L * c->B,
           "%s in head ranges: %ld fused attention ops counted, %d expected (a forward and a "
           "backward per batch element)",
           c->name, n, 2 * c->B);
    cf_backend_destroy(be);
}

int main(int argc, char **argv) {
    const double t0 = cf_time_now();
    int small = 0, code = 0;
    const char *spec = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--small") == 0) small = 1;
        else if (strcmp(argv[i], "--kernel") == 0 && i + 1 < argc) only = argv[++i];
        else spec = argv[i];
    }
    if (only && strcmp(only, "tiled") && strcmp(only, "rows") && strcmp(only, "matrix") &&
        strcmp(only, "mma")) {
        fprintf(stderr,
                "test_cl_flash_attention: --kernel takes tiled, rows, matrix or mma, not '%s'\n",
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
                {"matrix", "matrix-fused/30K", 30000, "fused", 0},
                {"matrix", "matrix-fused/60K", 60000, "fused", 0}};
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
    /* forward and backward on the matrix engine's tensor cores (flash_mma.cl), in bf16, fp16 and
     * TF32: emulated (emulate:nvidia-mma-sync) unless CF_MATRIX_ENGINE names the engine (on a
     * GPU that has it: CF_MATRIX_ENGINE=nvidia-mma-sync) */
    if (!only || strcmp(only, "mma") == 0)
        for (int p = 1; p <= 3; p++) {
            static const char *const names[] = {"", "bf16", "fp16", "tf32"};
            /* --small (oclgrind): bf16 and TF32 (fp16 is bf16's code but for the conversion) */
            if (small && p == 2) continue;
            cf_backend_options o = *tcl_opts();
            o.flash_kernel = "mma";
            o.bf16 = p == 1;
            o.fp16 = p == 2;
            o.tf32 = p == 3;
            if (!o.matrix_engine) o.matrix_engine = "emulate:nvidia-mma-sync";
            cf_backend *be = NULL;
            TCL_OK(cf_backend_opencl_create(spec ? spec : tcl_spec(), &o, &be));
            printf("flash kernels: mma forward and backward, %s (engine %s)\n", names[p],
                   o.matrix_engine);
            char label[16];
            snprintf(label, sizeof label, "mma-%s", names[p]);
            fr_round = p;
            fr_run_some(be, label, small, small ? "mma" : NULL); /* small: its two cases */
            fr_round = 0;
            cf_backend_destroy(be);
        }
    if (!small && (!only || strcmp(only, "matrix") == 0)) fused_unavailable(spec);
    if (!small && (!only || strcmp(only, "matrix") == 0)) ranges_counted_once(spec);
    fails += fr_fails;
    checks += fr_checks;
    return tcl_finish("test_cl_flash_attention", t0);
}
