/* clformer test: the CPU backend's GEMM paths (every built-in kernel usable on this CPU, and
 * CBLAS when compiled in) against a double-precision reference, over all four transpose
 * combinations, several alpha/beta, odd sizes, padded row strides and unaligned view offsets;
 * plus beta = 0 never reading C, K = 0, bit-identical results for any thread count, the
 * path selection API, and the fused bias (gemm_bias: C = alpha op(A) op(B) + beta C + bias). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend/cpu/cpu_backend.h"
#include "test_ops_common.h"

typedef struct {
    float alpha, beta;
} cft_ab;

/* 1: run_case goes through the backend's gemm_bias with a random bias(N) */
static int g_bias;

/* One GEMM through the backend with views at element offset `off`, compared with the
 * reference. Error bound per element: (K + 4) u (|alpha| sum_k |a b| + |beta c|), the
 * classical bound for a length-K dot product plus the alpha/beta roundings. */
static int run_case(cf_backend *be, const char *path, int ta, int tb, int M, int N, int K,
                    cft_ab ab, int pad, int off, cf_rng *rng, int verbose) {
    const int arows = ta ? K : M, acols = ta ? M : K, brows = tb ? N : K, bcols = tb ? K : N;
    const int lda = acols + pad, ldb = bcols + 2 * pad, ldc = N + 3 * pad;
    const size_t na = (size_t)arows * lda, nb = (size_t)brows * ldb, nc = (size_t)M * ldc;
    float *A = cft_floats(na), *B = cft_floats(nb), *C = cft_floats(nc), *Cout = cft_floats(nc);
    cft_rand(rng, A, na, 1.0f);
    cft_rand(rng, B, nb, 1.0f);
    cft_rand(rng, C, nc, 1.0f);
    /* beta == 0 must not read C: poison it */
    if (ab.beta == 0.0f)
        for (size_t i = 0; i < nc; i++) C[i] = NAN;
    double *ref = cft_doubles((size_t)M * N), *cabs = cft_doubles((size_t)M * N);
    cft_gemm_ref(ta, tb, M, N, K, ab.alpha, A, lda, B, ldb, ab.beta, C, ldc, ref, cabs);
    float *bias = cft_floats((size_t)N);
    cft_rand(rng, bias, (size_t)N, 1.0f);
    if (g_bias)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                ref[(size_t)i * N + j] += bias[j];
                cabs[(size_t)i * N + j] += fabs(bias[j]);
            }
    cf_buffer *bBias = cft_buf(be, NULL, (size_t)N + off);
    CFT_OK(cf_be_upload(be, cf_view_f32(bBias, off), bias, (size_t)N * 4));

    cf_buffer *bA = cft_buf(be, NULL, na + off), *bB = cft_buf(be, NULL, nb + off);
    cf_buffer *bC = cft_buf(be, NULL, nc + off);
    CFT_OK(cf_be_upload(be, cf_view_f32(bA, off), A, na * 4));
    CFT_OK(cf_be_upload(be, cf_view_f32(bB, off), B, nb * 4));
    CFT_OK(cf_be_upload(be, cf_view_f32(bC, off), C, nc * 4));
    if (g_bias)
        CFT_OK(be->ops->gemm_bias(be, ta, tb, M, N, K, ab.alpha, cf_view_f32(bA, off), lda,
                                  cf_view_f32(bB, off), ldb, ab.beta, cf_view_f32(bC, off), ldc,
                                  cf_view_f32(bBias, off)));
    else
        CFT_OK(cf_be_gemm(be, ta, tb, M, N, K, ab.alpha, cf_view_f32(bA, off), lda,
                          cf_view_f32(bB, off), ldb, ab.beta, cf_view_f32(bC, off), ldc));
    CFT_OK(cf_be_download(be, Cout, cf_view_f32(bC, off), nc * 4));

    cft_err e = {0};
    int pad_ok = 1;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            const size_t r = (size_t)i * N + j;
            cft_err_add(&e, r, Cout[(size_t)i * ldc + j], ref[r], (K + 4) * CFT_U * cabs[r] + 1e-30,
                        0.0);
        }
        /* the padding between rows must be untouched */
        for (int j = N; j < ldc; j++)
            if (memcmp(&Cout[(size_t)i * ldc + j], &C[(size_t)i * ldc + j], 4) != 0) pad_ok = 0;
    }
    int fail = e.bad > 0 || !pad_ok;
    if (fail || verbose) {
        char what[160];
        snprintf(what, sizeof what, "%s%s ta=%d tb=%d M=%d N=%d K=%d a=%g b=%g pad=%d off=%d",
                 path, g_bias ? " +bias" : "", ta, tb, M, N, K, ab.alpha, ab.beta, pad, off);
        cft_err_report("gemm", what, &e);
        if (!pad_ok) printf("  FAIL  gemm %s: wrote into the row padding of C\n", what);
    }
    cf_be_free(be, bA);
    cf_be_free(be, bB);
    cf_be_free(be, bC);
    cf_be_free(be, bBias);
    free(bias);
    free(A);
    free(B);
    free(C);
    free(Cout);
    free(ref);
    free(cabs);
    return fail;
}

/* The same product with 1, 2 and 3 threads must give the same bits (native kernels). */
static int check_threads(cf_backend *be, const char *path, int ta, int tb, int M, int N, int K,
                         cf_rng *rng) {
#ifdef _OPENMP
    const int lda = ta ? M : K, ldb = tb ? K : N;
    const size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
    float *A = cft_floats(na), *B = cft_floats(nb), *C0 = cft_floats(nc);
    float *R[3] = {cft_floats(nc), cft_floats(nc), cft_floats(nc)};
    cft_rand(rng, A, na, 1.0f);
    cft_rand(rng, B, nb, 1.0f);
    cft_rand(rng, C0, nc, 1.0f);
    cf_buffer *bA = cft_buf(be, A, na), *bB = cft_buf(be, B, nb), *bC = cft_buf(be, C0, nc);
    const int saved = omp_get_max_threads();
    int fail = 0;
    for (int th = 1; th <= 3; th++) {
        omp_set_num_threads(th);
        cft_put(be, bC, C0, nc);
        CFT_OK(cf_be_gemm(be, ta, tb, M, N, K, 0.5f, cft_v(bA), lda, cft_v(bB), ldb, 1.0f,
                          cft_v(bC), N));
        cft_get(be, R[th - 1], bC, nc);
    }
    omp_set_num_threads(saved);
    for (int th = 2; th <= 3; th++) {
        char what[128];
        snprintf(what, sizeof what, "%s %dx%dx%d ta=%d tb=%d: 1 vs %d threads", path, M, N, K, ta,
                 tb, th);
        fail += cft_identical("gemm", what, R[0], R[th - 1], nc);
    }
    cf_be_free(be, bA);
    cf_be_free(be, bB);
    cf_be_free(be, bC);
    free(A);
    free(B);
    free(C0);
    for (int i = 0; i < 3; i++) free(R[i]);
    return fail;
#else
    (void)be, (void)path, (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)rng;
    return 0;
#endif
}

static int test_path(cf_backend *be, const char *path, int native, cf_rng *rng) {
    int fail = 0, cases = 0;
    CFT_OK(cf_backend_cpu_set_gemm(be, path));
    printf("path %s (%s)\n", path, cf_backend_cpu_get_gemm(be));
    static const int sizes[] = {1, 7, 33, 65, 130};
    static const cft_ab abs_[] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {-0.5f, 0.75f}};
    const int ns = (int)(sizeof sizes / sizeof sizes[0]);
    for (int t = 0; t < 4; t++)
        for (int a = 0; a < 3; a++)
            for (int im = 0; im < ns; im++)
                for (int in = 0; in < ns; in++)
                    for (int ik = 0; ik < ns; ik++) {
                        const int pad = (im + in + ik + a) % 3 == 0 ? 0 : (im + 2 * ik) % 5 + 1;
                        const int off = (in + ik + t) % 4 == 0 ? 0 : 1 + (im * 7 + in) % 13;
                        fail += run_case(be, path, t >> 1, t & 1, sizes[im], sizes[in],
                                         sizes[ik], abs_[a], pad, off, rng, 0);
                        cases++;
                    }
    printf("  %-5s gemm %-20s %d small cases (sizes 1..130, 4 transposes, 3 alpha/beta)\n",
           fail ? "FAIL" : "ok", path, cases);
    /* larger shapes: several K, M and N blocks, N past one column block, and each way the
     * native GEMM shares work among threads (shared packing; separate row blocks; separate
     * column blocks) */
    for (int t = 0; t < 4; t++) {
        fail += run_case(be, path, t >> 1, t & 1, 301, 157, 601, (cft_ab){1.0f, 1.0f}, 3, 5, rng,
                         1);
        fail += run_case(be, path, t >> 1, t & 1, 13, 3100, 260, (cft_ab){0.5f, 0.0f}, 1, 2, rng,
                         1);
        fail += run_case(be, path, t >> 1, t & 1, 1100, 70, 50, (cft_ab){1.0f, 0.5f}, 2, 3, rng,
                         1);
    }
    /* the fused bias: edge tiles (N not a multiple of the tile), several depth blocks (the bias
     * is added once), each threading scheme, K == 0 and alpha == 0 */
    g_bias = 1;
    int bias_fail = 0, bias_cases = 0;
    for (int t = 0; t < 4; t++)
        for (int in = 0; in < ns; in++) {
            bias_fail += run_case(be, path, t >> 1, t & 1, sizes[(in + t) % ns], sizes[in], 33,
                                  abs_[(in + t) % 3], in % 3, in % 2 ? 3 : 0, rng, 0);
            bias_cases++;
        }
    for (int t = 0; t < 4; t++) {
        bias_fail += run_case(be, path, t >> 1, t & 1, 301, 157, 601, (cft_ab){1.0f, 0.0f}, 3, 5,
                              rng, 0);
        bias_fail += run_case(be, path, t >> 1, t & 1, 13, 3100, 260, (cft_ab){0.5f, 1.0f}, 1, 2,
                              rng, 0);
        bias_fail += run_case(be, path, t >> 1, t & 1, 1100, 70, 50, (cft_ab){1.0f, 0.0f}, 2, 3,
                              rng, 0);
        bias_cases += 3;
    }
    bias_fail += run_case(be, path, 0, 0, 33, 17, 9, (cft_ab){0.0f, 2.0f}, 2, 1, rng, 0);
    bias_fail += run_case(be, path, 0, 1, 33, 17, 0, (cft_ab){1.0f, 0.0f}, 2, 1, rng, 0);
    bias_cases += 2;
    g_bias = 0;
    printf("  %-5s gemm_bias %-15s %d cases\n", bias_fail ? "FAIL" : "ok", path, bias_cases);
    fail += bias_fail;
    /* alpha == 0 and K == 0 reduce to C = beta C */
    fail += run_case(be, path, 0, 0, 33, 17, 9, (cft_ab){0.0f, 2.0f}, 2, 1, rng, 1);
    fail += run_case(be, path, 1, 1, 33, 17, 0, (cft_ab){1.0f, -1.5f}, 2, 1, rng, 1);
    fail += run_case(be, path, 0, 1, 33, 17, 0, (cft_ab){1.0f, 0.0f}, 2, 1, rng, 1);
    if (native)
        for (int t = 0; t < 4; t++) {
            fail += check_threads(be, path, t >> 1, t & 1, 250, 190, 300, rng);
            fail += check_threads(be, path, t >> 1, t & 1, 1100, 70, 50, rng);
            fail += check_threads(be, path, t >> 1, t & 1, 20, 1100, 60, rng);
        }
    return fail;
}

int main(void) {
    cf_backend *be;
    CFT_OK(cf_backend_cpu_create("cpu", NULL, &be));
    cf_rng rng;
    cf_rng_seed(&rng, 1234);
    int fail = 0;

    printf("gemm default: %s (built-in kernels usable here:", cf_backend_cpu_get_gemm(be));
    for (int i = 0; i < cf_cpu_gemm_kernel_count(); i++) printf(" %s", cf_cpu_gemm_kernel_name(i));
    printf("; blas %s)\n", cf_cpu_blas_available() ? "compiled in" : "not compiled in");

    for (int i = 0; i < cf_cpu_gemm_kernel_count(); i++) {
        char path[64];
        snprintf(path, sizeof path, "native:%s", cf_cpu_gemm_kernel_name(i));
        fail += test_path(be, path, 1, &rng);
    }
    if (cf_cpu_blas_available()) fail += test_path(be, "blas", 0, &rng);

    /* selection API */
    printf("path selection (errors below are expected)\n");
    int rc = cf_backend_cpu_set_gemm(be, "no-such-gemm");
    printf("  %-5s set_gemm(\"no-such-gemm\") -> %d\n", rc == CF_ERR_INVALID ? "ok" : "FAIL", rc);
    fail += rc != CF_ERR_INVALID;
    rc = cf_backend_cpu_set_gemm(be, "blas");
    const int want = cf_cpu_blas_available() ? CF_OK : CF_ERR_UNSUPPORTED;
    printf("  %-5s set_gemm(\"blas\") -> %d (want %d)\n", rc == want ? "ok" : "FAIL", rc, want);
    fail += rc != want;
    CFT_OK(cf_backend_cpu_set_gemm(be, "native"));
    rc = strncmp(cf_backend_cpu_get_gemm(be), "native:", 7) == 0;
    printf("  %-5s set_gemm(\"native\") -> %s\n", rc ? "ok" : "FAIL", cf_backend_cpu_get_gemm(be));
    fail += !rc;
    /* a view too small for the product is refused, not overrun */
    cf_buffer *small = cft_buf(be, NULL, 10);
    rc = cf_be_gemm(be, 0, 0, 4, 4, 4, 1.0f, cft_v(small), 4, cft_v(small), 4, 0.0f, cft_v(small),
                    4);
    printf("  %-5s gemm on a 10-element buffer for 4x4x4 -> %d\n",
           rc == CF_ERR_INVALID ? "ok" : "FAIL", rc);
    fail += rc != CF_ERR_INVALID;
    cf_be_free(be, small);

    cf_backend_destroy(be);
    printf("%s: %d failure(s)\n", fail ? "FAILED" : "PASSED", fail);
    return fail ? 1 : 0;
}
