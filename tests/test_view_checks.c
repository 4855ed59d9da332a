/* clformer test: the cf_be_* wrappers check every op's views before a backend sees them. The CPU
 * backend's ops table is copied and each op slot replaced by a stub that only counts its calls;
 * then, for each op family, a call with a wrong dtype, a misaligned offset, an extent past the
 * buffer or a missing required buffer must return CF_ERR_INVALID with one error line naming the op
 * and the argument, and must not reach the backend, while the same call with good views reaches
 * it exactly once (so a wrapper that refuses everything fails too). */
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"
#include "clformer/common.h"

static int calls = 0, fails = 0, n_err = 0;
static char last_err[512];

static void count_log(int level, const char *msg, void *user) {
    (void)user;
    if (level != CF_LOG_ERROR) return;
    n_err++;
    snprintf(last_err, sizeof last_err, "%s", msg);
}

/* ---- stubs: count, touch nothing ------------------------------------------------------------ */

#define STUB(name, ...)                                                                            \
    static int stub_##name(cf_backend *be, __VA_ARGS__) {                                          \
        calls++;                                                                                   \
        return CF_OK;                                                                              \
    }
STUB(upload, cf_view d, const void *s, size_t n)
STUB(download, void *d, cf_view s, size_t n)
STUB(copy, cf_view d, cf_view s, size_t n)
STUB(fill, cf_view d, float v, size_t n)
STUB(gemm, int ta, int tb, int M, int N, int K, float al, cf_view A, int lda, cf_view B, int ldb,
     float be_, cf_view C, int ldc)
STUB(gemm_bias, int ta, int tb, int M, int N, int K, float al, cf_view A, int lda, cf_view B,
     int ldb, float be_, cf_view C, int ldc, cf_view bias)
STUB(gemm_gelu, int ta, int tb, int M, int N, int K, cf_view A, int lda, cf_view B, int ldb,
     cf_view C, cf_view bias, cf_view X, int bw)
STUB(add_bias, cf_view o, cf_view b, int N, int OC)
STUB(bias_backward, cf_view db, cf_view d, int N, int OC)
STUB(weight_bias_backward, cf_view dw, cf_view db, cf_view d, cf_view i, int N, int IC, int OC)
STUB(encoder_forward, cf_view o, cf_view t, cf_view w, cf_view p, int B, int T, int C, int V)
STUB(encoder_backward, cf_view dw, cf_view dp, cf_view d, cf_view t, int B, int T, int C, int V)
STUB(layernorm_forward, cf_view o, cf_view m, cf_view r, cf_view i, cf_view w, cf_view b, int N,
     int C, float eps)
STUB(layernorm_backward, cf_view di, cf_view dw, cf_view db, cf_view d, cf_view i, cf_view w,
     cf_view m, cf_view r, int N, int C)
STUB(attention_forward, cf_view o, cf_view a, cf_view q, int B, int T, int NH, int KVH, int hs)
STUB(attention_backward, cf_view dq, cf_view da, cf_view dp, cf_view d, cf_view q, cf_view a,
     int B, int T, int NH, int KVH, int hs)
STUB(act_forward, enum cf_act act, cf_view o, cf_view i, size_t n)
STUB(act_backward, enum cf_act act, cf_view di, cf_view i, cf_view d, size_t n)
STUB(swiglu_forward, cf_view o, cf_view i, int N, int F)
STUB(swiglu_backward, cf_view di, cf_view i, cf_view d, int N, int F)
STUB(rmsnorm_forward, cf_view o, cf_view r, cf_view i, cf_view w, int N, int G, int C, int ld,
     float eps)
STUB(rmsnorm_backward, cf_view di, cf_view dw, cf_view d, cf_view i, cf_view w, cf_view r, int N,
     int G, int C, int ld, int acc)
STUB(rope, cf_view x, cf_view cs, int B, int T, int H, int hs, int ld, int pos0, int inv)
STUB(residual_forward, cf_view o, cf_view a, cf_view b, size_t n)
STUB(axpy, cf_view y, cf_view x, float a, size_t n)
STUB(crossentropy_forward, cf_view l, cf_view g, cf_view t, int N, int V, float cap)
STUB(crossentropy_fused, cf_view l, cf_view dl, cf_view g, cf_view t, int N, int V, float d,
     float cap)
STUB(reduce_sum, cf_view o, cf_view x, size_t n, int sq)
STUB(adamw, cf_view p, cf_view g, cf_view m, cf_view v, size_t n, float lr, float b1, float b2,
     float eps, float wd, float gs, int t)
STUB(muon_momentum, cf_view b, cf_view g, cf_view o, size_t n, float beta, float gs)
STUB(scale_rnorm, cf_view x, cf_view s, size_t n, float eps)
STUB(axpby, cf_view y, cf_view x, float a, float b, size_t n)

/* ---- checking one call ---------------------------------------------------------------------- */

/* rc and the calls that reached the stubs for one wrapper call; want_arg NULL: must pass */
static void expect_call(const char *what, int rc, int before, const char *want_op,
                        const char *want_arg) {
    const int reached = calls - before;
    int ok;
    if (!want_arg) {
        ok = rc == CF_OK && reached == 1 && n_err == 0;
        printf("%-4s %-62s rc %d, backend calls %d\n", ok ? "ok" : "FAIL", what, rc, reached);
    } else {
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", want_arg);
        ok = rc == CF_ERR_INVALID && reached == 0 && n_err == 1 && strstr(last_err, want_op) &&
             strstr(last_err, quoted);
        printf("%-4s %-62s rc %d, backend calls %d\n     message: %s\n", ok ? "ok" : "FAIL",
               what, rc, reached, n_err ? last_err : "(none)");
    }
    fails += !ok;
    n_err = 0;
    last_err[0] = 0;
}
#define CALL(what, call, op, arg)                                                                  \
    do {                                                                                           \
        const int before_ = calls;                                                                 \
        const int rc_ = (call);                                                                    \
        expect_call((what), rc_, before_, (op), (arg));                                            \
    } while (0)

/* a view moved by a number of bytes that is not a multiple of its element */
static cf_view misaligned(cf_view v) {
    v.off += 2;
    return v;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    cf_backend *be = NULL;
    if (cf_backend_cpu_create("cpu", NULL, &be) < 0) return 1;
    const struct cf_backend_ops *real = be->ops;
    struct cf_backend_ops fake = *real; /* name, buffers, synchronize stay the CPU backend's */
    fake.upload = stub_upload;
    fake.download = stub_download;
    fake.copy = stub_copy;
    fake.fill = stub_fill;
    fake.gemm = stub_gemm;
    fake.gemm_bias = stub_gemm_bias;
    fake.gemm_gelu = stub_gemm_gelu;
    fake.add_bias = stub_add_bias;
    fake.bias_backward = stub_bias_backward;
    fake.weight_bias_backward = stub_weight_bias_backward;
    fake.encoder_forward = stub_encoder_forward;
    fake.encoder_backward = stub_encoder_backward;
    fake.layernorm_forward = stub_layernorm_forward;
    fake.layernorm_backward = stub_layernorm_backward;
    fake.attention_forward = stub_attention_forward;
    fake.attention_backward = stub_attention_backward;
    fake.act_forward = stub_act_forward;
    fake.act_backward = stub_act_backward;
    fake.swiglu_forward = stub_swiglu_forward;
    fake.swiglu_backward = stub_swiglu_backward;
    fake.rmsnorm_forward = stub_rmsnorm_forward;
    fake.rmsnorm_backward = stub_rmsnorm_backward;
    fake.rope = stub_rope;
    fake.residual_forward = stub_residual_forward;
    fake.axpy = stub_axpy;
    fake.crossentropy_forward = stub_crossentropy_forward;
    fake.crossentropy_fused = stub_crossentropy_fused;
    fake.reduce_sum = stub_reduce_sum;
    fake.adamw = stub_adamw;
    fake.muon_momentum = stub_muon_momentum;
    fake.scale_rnorm = stub_scale_rnorm;
    fake.axpby = stub_axpby;
    fake.prof_collect = NULL;
    cf_buffer *f = NULL, *i = NULL; /* 1000 floats; 100 int32s */
    if (cf_be_alloc(be, 1000 * 4, &f) < 0 || cf_be_alloc(be, 100 * 4, &i) < 0) return 1;
    be->ops = &fake;
    cf_log_set_callback(count_log, NULL);
    const cf_view F = cf_view_f32(f, 0), I = cf_view_i32(i, 0), none = CF_VIEW_NULL;
    float host[8] = {0};

    printf("the cf_be_* wrappers: bad views are refused before the backend\n");
    /* views and helpers */
    const int views_ok = cf_view_f32(f, 3).off == 12 && cf_view_i32(i, 5).off == 20 &&
                         cf_view_typed(f, CF_BF16, 3).off == 6 &&
                         cf_view_add(cf_view_typed(f, CF_F16, 1), 4).off == 10 &&
                         cf_view_elem_off(cf_view_add(F, 7)) == 7 &&
                         cf_dtype_size(CF_F32) == 4 && cf_dtype_size(CF_BF16) == 2 &&
                         strcmp(cf_dtype_name(CF_I32), "i32") == 0;
    printf("%-4s view constructors: byte offsets from element indices, per dtype\n",
           views_ok ? "ok" : "FAIL");
    fails += !views_ok;

    /* transfers */
    CALL("upload 32 bytes at byte 16", cf_be_upload(be, cf_view_add(F, 4), host, 32), NULL, NULL);
    CALL("upload at a misaligned offset", cf_be_upload(be, misaligned(F), host, 32), "upload",
         "dst");
    CALL("download past the end", cf_be_download(be, host, cf_view_add(F, 995), 32), "download",
         "src");
    CALL("fill 1000", cf_be_fill(be, F, 0.0f, 1000), NULL, NULL);
    CALL("fill 1001", cf_be_fill(be, F, 0.0f, 1001), "fill", "dst");
    CALL("fill an i32 view", cf_be_fill(be, I, 0.0f, 10), "fill", "dst");
    CALL("copy src misaligned", cf_be_copy(be, F, misaligned(cf_view_add(F, 10)), 5), "copy",
         "src");

    /* gemm: A(4,6) B(6,5) C(4,5), transposes change the extents */
    CALL("gemm 4x5x6", cf_be_gemm(be, 0, 0, 4, 5, 6, 1, F, 6, cf_view_add(F, 100), 5, 0,
                                  cf_view_add(F, 200), 5),
         NULL, NULL);
    CALL("gemm C past the end",
         cf_be_gemm(be, 0, 0, 4, 5, 6, 1, F, 6, F, 5, 0, cf_view_add(F, 990), 5), "gemm", "C");
    CALL("gemm transposed A (6,4) with lda 4 past the end",
         cf_be_gemm(be, 1, 0, 4, 5, 6, 1, cf_view_add(F, 980), 4, F, 5, 0, F, 5), "gemm", "A");
    CALL("gemm B an i32 view", cf_be_gemm(be, 0, 0, 4, 5, 6, 1, F, 6, I, 5, 0, F, 5), "gemm",
         "B");
    CALL("matmul_forward bias past the end (gemm_bias)",
         cf_be_matmul_forward(be, F, F, F, cf_view_add(F, 998), 4, 6, 5), "gemm_bias", "bias");
    CALL("matmul_gelu_forward act past the end (gemm_gelu)",
         cf_be_matmul_gelu_forward(be, F, cf_view_add(F, 990), F, F, none, 4, 6, 5), "gemm_gelu",
         "X");
    CALL("matmul_backward dbias misaligned (weight_bias_backward), no dinp",
         cf_be_matmul_backward(be, none, F, misaligned(F), F, F, F, 4, 6, 5),
         "weight_bias_backward", "dbias");

    /* encoder: B 2, T 3, C 4, V 10 */
    CALL("encoder_forward", cf_be_encoder_forward(be, F, I, F, F, 2, 3, 4, 10), NULL, NULL);
    CALL("encoder_forward tokens as f32",
         cf_be_encoder_forward(be, F, F, F, F, 2, 3, 4, 10), "encoder_forward", "tokens");
    CALL("encoder_forward wte of V=10 rows past the end",
         cf_be_encoder_forward(be, F, I, cf_view_add(F, 970), F, 2, 3, 4, 10), "encoder_forward",
         "wte");
    CALL("encoder_backward dwte an i32 view",
         cf_be_encoder_backward(be, I, F, F, I, 2, 3, 4, 10), "encoder_backward", "dwte");
    CALL("encoder_forward without wpe (RoPE models)",
         cf_be_encoder_forward(be, F, I, F, none, 2, 3, 4, 10), NULL, NULL);
    CALL("encoder_backward dwpe misaligned",
         cf_be_encoder_backward(be, F, misaligned(F), F, I, 2, 3, 4, 10), "encoder_backward",
         "dwpe");

    /* layernorm: N 10, C 8 */
    CALL("layernorm_forward without mean and rstd",
         cf_be_layernorm_forward(be, F, none, none, F, F, F, 10, 8, 1e-5f), NULL, NULL);
    CALL("layernorm_forward without bias",
         cf_be_layernorm_forward(be, F, none, none, F, F, none, 10, 8, 1e-5f), NULL, NULL);
    CALL("layernorm_forward without weight",
         cf_be_layernorm_forward(be, F, none, none, F, none, F, 10, 8, 1e-5f),
         "layernorm_forward", "weight");
    CALL("layernorm_forward eps 0",
         cf_be_layernorm_forward(be, F, none, none, F, F, F, 10, 8, 0.0f), "layernorm_forward",
         "eps");
    CALL("layernorm_backward rstd past the end",
         cf_be_layernorm_backward(be, F, F, F, F, F, F, F, cf_view_add(F, 995), 10, 8),
         "layernorm_backward", "rstd");

    /* attention: B 2, T 4, NH 2, hs 4: qkv (2,4,24) = 192, att (2,2,4,4) = 64 */
    CALL("attention_forward", cf_be_attention_forward(be, F, F, F, 2, 4, 2, 2, 4), NULL, NULL);
    CALL("attention_forward qkv (B,T,QKV) past the end",
         cf_be_attention_forward(be, F, F, cf_view_add(F, 900), 2, 4, 2, 2, 4),
         "attention_forward", "qkv");
    CALL("attention_forward GQA qkv (B,T,(4+2)4) past the end",
         cf_be_attention_forward(be, F, F, cf_view_add(F, 810), 2, 4, 4, 1, 4),
         "attention_forward", "qkv");
    CALL("attention_forward KVH 3 not dividing NH 4",
         cf_be_attention_forward(be, F, F, F, 2, 4, 4, 3, 4), "attention_forward", "KVH");
    CALL("attention_backward att (B,NH,T,T) past the end",
         cf_be_attention_backward(be, F, F, F, F, F, cf_view_add(F, 950), 2, 4, 2, 2, 4),
         "attention_backward", "att");

    /* element-wise, loss, reductions, optimizer */
    CALL("gelu_forward out misaligned", cf_be_gelu_forward(be, misaligned(F), F, 10),
         "act_forward", "out");
    CALL("gelu_backward dout past the end",
         cf_be_gelu_backward(be, F, F, cf_view_add(F, 500), 600), "act_backward", "dout");
    CALL("act_forward relu2", cf_be_act_forward(be, CF_ACT_RELU2, F, F, 10), NULL, NULL);
    CALL("act_forward activation 7", cf_be_act_forward(be, (enum cf_act)7, F, F, 10),
         "act_forward", "activation");
    CALL("swiglu_forward inp (N,2F) past the end",
         cf_be_swiglu_forward(be, F, cf_view_add(F, 700), 10, 20), "swiglu_forward", "inp");
    CALL("swiglu_backward dinp an i32 view", cf_be_swiglu_backward(be, I, F, F, 10, 2),
         "swiglu_backward", "dinp");
    CALL("rmsnorm_forward qk_norm groups, rstd left out",
         cf_be_rmsnorm_forward(be, F, none, F, F, 10, 3, 4, 20, 1e-5f), NULL, NULL);
    CALL("rmsnorm_forward G*C > ld",
         cf_be_rmsnorm_forward(be, F, none, F, F, 10, 3, 8, 20, 1e-5f), "rmsnorm_forward", "ld");
    CALL("rmsnorm_backward rstd (N*G) past the end",
         cf_be_rmsnorm_backward(be, F, F, F, F, F, cf_view_add(F, 980), 10, 3, 4, 20, 0),
         "rmsnorm_backward", "rstd");
    CALL("rope q and k heads", cf_be_rope(be, F, F, 2, 3, 3, 4, 20, 0, 0), NULL, NULL);
    CALL("rope odd head size", cf_be_rope(be, F, F, 2, 3, 3, 5, 20, 0, 0), "rope", "hs");
    CALL("rope cs too short for pos0 + T",
         cf_be_rope(be, F, cf_view_add(F, 990), 2, 3, 3, 4, 20, 0, 0), "rope", "cs");
    CALL("residual_forward b an i32 view", cf_be_residual_forward(be, F, F, I, 10),
         "residual_forward", "b");
    CALL("axpy x missing", cf_be_axpy(be, F, none, 1.0f, 10), "axpy", "x");
    CALL("crossentropy_fused", cf_be_crossentropy_fused(be, F, F, F, I, 10, 50, 1.0f, 0.0f), NULL,
         NULL);
    CALL("crossentropy_forward targets as f32",
         cf_be_crossentropy_forward(be, F, F, F, 10, 50, 0.0f), "crossentropy_forward",
         "targets");
    CALL("crossentropy_fused dlogits (N,V) past the end",
         cf_be_crossentropy_fused(be, F, F, F, I, 10, 101, 1.0f, 0.0f), "crossentropy_fused",
         "dlogits");
    CALL("crossentropy_fused negative softcap",
         cf_be_crossentropy_fused(be, F, F, F, I, 10, 50, 1.0f, -1.0f), "crossentropy_fused",
         "softcap");
    CALL("reduce_sum x past the end", cf_be_reduce_sum(be, F, cf_view_add(F, 1), 1000, 0),
         "reduce_sum", "x");
    CALL("adamw v misaligned",
         cf_be_adamw(be, F, F, F, misaligned(F), 10, 1e-3f, 0.9f, 0.95f, 1e-8f, 0, 1, 1), "adamw",
         "v");
    CALL("muon_momentum fine", cf_be_muon_momentum(be, F, cf_view_add(F, 10), cf_view_add(F, 10),
                                                   10, 0.95f, 1.0f), NULL, NULL);
    CALL("muon_momentum out overlaps buf",
         cf_be_muon_momentum(be, F, cf_view_add(F, 20), cf_view_add(F, 5), 10, 0.95f, 1.0f),
         "muon_momentum", "out");
    CALL("muon_momentum beta 1", cf_be_muon_momentum(be, F, F, cf_view_add(F, 10), 10, 1.0f, 1.0f),
         "muon_momentum", "beta");
    CALL("muon_momentum grads int32",
         cf_be_muon_momentum(be, F, I, cf_view_add(F, 10), 10, 0.9f, 1.0f), "muon_momentum",
         "grads");
    CALL("scale_rnorm sumsq missing", cf_be_scale_rnorm(be, F, none, 10, 1e-7f), "scale_rnorm",
         "sumsq");
    CALL("scale_rnorm eps 0", cf_be_scale_rnorm(be, F, F, 10, 0.0f), "scale_rnorm", "eps");
    CALL("axpby y past the end", cf_be_axpby(be, cf_view_add(F, 995), F, 1.0f, 1.0f, 10), "axpby",
         "y");

    cf_log_set_callback(NULL, NULL);
    be->ops = real;
    cf_be_free(be, f);
    cf_be_free(be, i);
    cf_backend_destroy(be);
    printf("%s: %d failure(s)\n", fails ? "FAILED" : "PASSED", fails);
    return fails ? 1 : 0;
}
