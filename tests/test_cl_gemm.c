/* clformer test: GEMM on the OpenCL backend against the CPU backend: both paths (clformer's native
 * kernel and CLBlast when compiled in), all four transpose combinations, alpha/beta (beta = 0 must
 * not read C: C starts as NaN), padded leading dimensions, views at offsets, shapes that are not
 * multiples of the tile; the adaptive-tile rule (8x8 below 256, else 16x16; WPT 8 for large
 * products) and its debug log line; both tile sizes, both WPTs and a non-default variant forced
 * through the tuner hook; the linear layer (matmul forward/backward) on both paths.
 *   test_cl_gemm [--device SPEC] */
#include "test_cl_common.h"

static void test_gemm(const char *path) {
    static const int big[][3] = {{37, 61, 45},  {300, 70, 33}, {5, 1, 7},  {64, 64, 64},
                                 {1, 300, 2},   {257, 259, 19}, {33, 17, 0}};
    for (int s = 0; s < 7; s++) {
        const int *sh = big[s];
        for (int t = 0; t < 4; t++) {
            int ta = t >> 1, tb = t & 1;
            gemm_case(path, ta, tb, sh[0], sh[1], sh[2], 1.0f, 0.0f);
            gemm_case(path, ta, tb, sh[0], sh[1], sh[2], 0.7f, 0.5f);
        }
    }
}

static void test_gemm_rule(void) {
    cf_cl_gemm_params p;
    TCL_OK(cf_backend_opencl_set_gemm_tuner(GPU, NULL, NULL));
    TCL_OK(cf_backend_opencl_gemm_params(GPU, 200, 255, 1000, 0, 1, &p));
    expect(p.tile == 8, "gemm rule: M=200 N=255 -> %dx%d (want 8x8)", p.tile, p.tile);
    TCL_OK(cf_backend_opencl_gemm_params(GPU, 256, 10, 10, 0, 0, &p));
    expect(p.tile == 16, "gemm rule: M=256 N=10 -> %dx%d (want 16x16)", p.tile, p.tile);
    TCL_OK(cf_backend_opencl_gemm_params(GPU, 10, 4096, 10, 1, 0, &p));
    expect(p.tile == 16 && p.wpt == 4, "gemm rule: M=10 N=4096 -> %dx%d wpt %d (want 16x16 wpt 4)",
           p.tile, p.tile, p.wpt);
    TCL_OK(cf_backend_opencl_gemm_params(GPU, 2048, 1024, 64, 0, 1, &p));
    expect(p.tile == 16 && p.wpt == 8, "gemm rule: M=2048 N=1024 -> %dx%d wpt %d (want 16x16 wpt 8)",
           p.tile, p.tile, p.wpt);
    /* the choice is logged once per shape at debug level */
    int level = cf_log_get_level();
    cf_log_set_level(CF_LOG_DEBUG);
    g_log[0] = 0;
    TCL_OK(cf_backend_opencl_set_gemm(GPU, "native"));
    gemm_case("native", 0, 0, 37, 61, 45, 1.0f, 0.0f);
    gemm_case("native", 0, 1, 300, 70, 33, 1.0f, 0.0f);
    cf_log_set_level(level);
    expect(strstr(g_log, "gemm M=37 N=61 K=45 NN: native 8x8") != NULL,
           "debug log names the 8x8 tile for M=37 N=61 K=45");
    expect(strstr(g_log, "gemm M=300 N=70 K=33 NT: native 16x16") != NULL,
           "debug log names the 16x16 tile for M=300 N=70 K=33");
}

static void test_gemm_paths(void) {
    const char *paths[2] = {"native", "clblast"};
    for (int i = 0; i < 2; i++) {
        if (cf_backend_opencl_set_gemm(GPU, paths[i]) < 0) {
            printf("skip gemm path %s: not compiled in\n", paths[i]);
            continue;
        }
        test_gemm(paths[i]);
        expect(strcmp(cf_backend_opencl_gemm_path(GPU), paths[i]) == 0,
               "gemm path after the %s cases is still %s (no silent fallback)", paths[i],
               paths[i]);
    }
    /* both tile sizes forced on the same shapes, and a non-default variant */
    TCL_OK(cf_backend_opencl_set_gemm(GPU, "native"));
    static const int forced[][3] = {{16, 4, 16}, {16, 8, 16}, {8, 4, 16}, {8, 2, 8}};
    for (int f = 0; f < 4; f++) {
        g_force_tile = forced[f][0];
        g_force_wpt = forced[f][1];
        g_force_tk = forced[f][2];
        TCL_OK(cf_backend_opencl_set_gemm_tuner(GPU, force_tuner, NULL));
        cf_cl_gemm_params p;
        TCL_OK(cf_backend_opencl_gemm_params(GPU, 45, 33, 20, 0, 0, &p));
        expect(p.tile == g_force_tile && p.wpt == g_force_wpt && p.tk == g_force_tk &&
                   strcmp(p.source, "test") == 0,
               "tuner hook overrides the rule (tile %d wpt %d tk %d from '%s')", p.tile, p.wpt,
               p.tk, p.source);
        for (int t = 0; t < 4; t++) {
            gemm_case("native", t >> 1, t & 1, 45, 33, 20, 1.0f, 0.0f);
            gemm_case("native", t >> 1, t & 1, 270, 130, 70, 1.0f, 1.0f);
        }
    }
    g_force_tile = 0;
    TCL_OK(cf_backend_opencl_set_gemm_tuner(GPU, NULL, NULL));
}


static void test_matmul(int N, int IC, int OC, const char *path) {
    pair inp = pair_rand((size_t)N * IC, 1.0f), w = pair_rand((size_t)OC * IC, 0.5f);
    pair b = pair_rand(OC, 0.5f), out = pair_rand((size_t)N * OC, 1.0f);
    BOTH(cf_be_matmul_forward(be, V(out), V(inp), V(w), V(b), N, IC, OC));
    char what[96];
    snprintf(what, sizeof what, "matmul_forward %s N=%d IC=%d OC=%d", path, N, IC, OC);
    check(what, out, 1e-5);
    pair dinp = pair_rand((size_t)N * IC, 1.0f), dw = pair_rand((size_t)OC * IC, 1.0f);
    pair db = pair_rand(OC, 1.0f), dout = pair_rand((size_t)N * OC, 1.0f);
    BOTH(cf_be_matmul_backward(be, V(dinp), V(dw), V(db), V(dout), V(inp), V(w), N, IC, OC));
    snprintf(what, sizeof what, "matmul_backward dinp %s N=%d IC=%d OC=%d", path, N, IC, OC);
    check(what, dinp, 1e-5);
    snprintf(what, sizeof what, "matmul_backward dweight %s N=%d IC=%d OC=%d", path, N, IC, OC);
    check(what, dw, 1e-5);
    pair_free(inp), pair_free(w), pair_free(b), pair_free(out);
    pair_free(dinp), pair_free(dw), pair_free(db), pair_free(dout);
}

/* CLBlast reporting an error (test switch cf_fault_set_clblast): one warning, the result comes from
 * the native kernel, and the backend stays on the native path without further warnings. */
static void test_clblast_fallback(void) {
    cf_fault_set_clblast(1); /* the next CLBlast call fails */
    cf_backend *keep = GPU;
    TCL_OK(cf_backend_opencl_create(tcl_spec(), tcl_opts(), &GPU));
    if (cf_backend_opencl_set_gemm(GPU, "clblast") == CF_OK) {
        int warn_before = g_warnings;
        gemm_case("clblast->native", 0, 1, 70, 50, 30, 1.0f, 0.0f);
        gemm_case("native after fallback", 1, 0, 70, 50, 30, 1.0f, 1.0f);
        expect(g_warnings - warn_before == 1 &&
                   strcmp(cf_backend_opencl_gemm_path(GPU), "native") == 0,
               "a CLBlast error gives one warning and the native path from then on (%d warnings)",
               g_warnings - warn_before);
    }
    cf_backend_destroy(GPU);
    GPU = keep;
    cf_fault_set_clblast(0);
}

int main(int argc, char **argv) {
    const char *spec = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) spec = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--device SPEC]\n", argv[0]);
            return 2;
        }
    }
    int code = 0;
    if (tcl_open("test_cl_gemm", spec, &code) < 0) return code;
    double t0 = cf_time_now();
    test_gemm_rule();
    test_gemm_paths();
    test_matmul(70, 48, 150, "native");
    if (cf_backend_opencl_set_gemm(GPU, "clblast") == CF_OK) {
        test_matmul(70, 48, 150, "clblast");
        test_matmul(300, 64, 257, "clblast");
        expect(strcmp(cf_backend_opencl_gemm_path(GPU), "clblast") == 0,
               "gemm path after the clblast matmuls is still clblast");
        test_clblast_fallback();
    }
    return tcl_finish("test_cl_gemm", t0);
}
