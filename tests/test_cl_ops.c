/* clformer test: every op of the OpenCL backend, forward and backward, against the CPU backend on
 * the same inputs, with a normalised error max|a-b| / max|b| per output. Views sit at an offset
 * inside guard elements that must survive untouched; backward ops that accumulate start from
 * non-zero gradients, and those that assign (attention's dqkv) from NaN on the OpenCL side and
 * zeros on the CPU side, so that an element left unwritten or read shows. GEMM paths, tiles and
 * transposes are covered by test_cl_gemm.
 *   test_cl_ops [--small] [--only FAMILY] [--device SPEC]
 * --small: small shapes, every kernel including both GEMM tile sizes (for oclgrind, see
 * tests/cli_oclgrind.sh). */
#include "test_cl_common.h"

#include "backend/opencl/cl_internal.h"

static int small_mode = 0;

/* ---- GEMM ---------------------------------------------------------------------------------- */

/* ---- the other ops ------------------------------------------------------------------------- */

static void test_bias(int N, int OC) {
    pair out = pair_rand((size_t)N * OC, 1.0f), bias = pair_rand(OC, 1.0f);
    for (int g_ = 0; g_ < 2; g_++) {
        cf_backend *be = g_ ? GPU : CPU;
        TCL_OK(be->ops->add_bias(be, V(out), V(bias), N, OC));
    }
    char what[96];
    snprintf(what, sizeof what, "add_bias N=%d OC=%d", N, OC);
    check(what, out, 1e-6);
    pair dbias = pair_rand(OC, 1.0f), dout = pair_rand((size_t)N * OC, 1.0f);
    for (int g_ = 0; g_ < 2; g_++) {
        cf_backend *be = g_ ? GPU : CPU;
        TCL_OK(be->ops->bias_backward(be, V(dbias), V(dout), N, OC));
    }
    snprintf(what, sizeof what, "bias_backward (accumulates) N=%d OC=%d", N, OC);
    check(what, dbias, 1e-5);
    pair_free(out);
    pair_free(bias);
    pair_free(dbias);
    pair_free(dout);
}

static void test_matmul(int N, int IC, int OC) {
    pair inp = pair_rand((size_t)N * IC, 1.0f), w = pair_rand((size_t)OC * IC, 0.5f);
    pair b = pair_rand(OC, 0.5f), out = pair_rand((size_t)N * OC, 1.0f);
    BOTH(cf_be_matmul_forward(be, V(out), V(inp), V(w), V(b), N, IC, OC));
    char what[96];
    snprintf(what, sizeof what, "matmul_forward N=%d IC=%d OC=%d", N, IC, OC);
    check(what, out, 1e-5);
    pair dinp = pair_rand((size_t)N * IC, 1.0f), dw = pair_rand((size_t)OC * IC, 1.0f);
    pair db = pair_rand(OC, 1.0f), dout = pair_rand((size_t)N * OC, 1.0f);
    BOTH(cf_be_matmul_backward(be, V(dinp), V(dw), V(db), V(dout), V(inp), V(w), N, IC, OC));
    snprintf(what, sizeof what, "matmul_backward dinp N=%d IC=%d OC=%d", N, IC, OC);
    check(what, dinp, 1e-5);
    snprintf(what, sizeof what, "matmul_backward dweight N=%d IC=%d OC=%d", N, IC, OC);
    check(what, dw, 1e-5);
    snprintf(what, sizeof what, "matmul_backward dbias N=%d IC=%d OC=%d", N, IC, OC);
    check(what, db, 1e-5);
    pair_free(inp), pair_free(w), pair_free(b), pair_free(out);
    pair_free(dinp), pair_free(dw), pair_free(db), pair_free(dout);
}

static void test_encoder(int B, int T, int C, int Vocab) {
    int n = B * T;
    int *tok = tcl_malloc((size_t)n * 4);
    for (int i = 0; i < n; i++) tok[i] = (int)(cf_rng_u32(&rng) % (uint32_t)Vocab);
    tok[0] = tok[n - 1] = Vocab - 1; /* repeated ids, the last row of the table */
    pair tokens = pair_new((size_t)n, tok, 0.0f);
    pair wte = pair_rand((size_t)Vocab * C, 1.0f), wpe = pair_rand((size_t)T * C, 1.0f);
    pair out = pair_rand((size_t)n * C, 1.0f);
    BOTH(cf_be_encoder_forward(be, V(out), VI(tokens), V(wte), V(wpe), B, T, C, Vocab));
    char what[96];
    snprintf(what, sizeof what, "encoder_forward B=%d T=%d C=%d V=%d", B, T, C, Vocab);
    check(what, out, 1e-7);
    pair dwte = pair_rand((size_t)Vocab * C, 1.0f), dwpe = pair_rand((size_t)T * C, 1.0f);
    pair dout = pair_rand((size_t)n * C, 1.0f);
    BOTH(cf_be_encoder_backward(be, V(dwte), V(dwpe), V(dout), VI(tokens), B, T, C, Vocab));
    snprintf(what, sizeof what, "encoder_backward dwte B=%d T=%d C=%d V=%d", B, T, C, Vocab);
    check(what, dwte, 1e-6);
    snprintf(what, sizeof what, "encoder_backward dwpe B=%d T=%d C=%d", B, T, C);
    check(what, dwpe, 1e-6);
    /* determinism: a second run from the same start gives bit-identical gradients */
    size_t nw = (size_t)Vocab * C;
    float *first = tcl_malloc(nw * 4), *second = tcl_malloc(nw * 4);
    float *zeros = calloc(nw + 2 * PAD, 4); /* the whole buffer: see tcl_keep_buffers */
    for (int rep = 0; rep < 2; rep++) {
        TCL_OK(cf_be_upload(GPU, cf_view_f32(dwte.g, 0), zeros, (nw + 2 * PAD) * 4));
        TCL_OK(cf_be_encoder_backward(GPU, cf_view_f32(dwte.g, PAD), cf_view_f32(dwpe.g, PAD),
                                      cf_view_f32(dout.g, PAD), cf_view_i32(tokens.g, PAD), B, T, C,
                                      Vocab));
        TCL_OK(cf_be_download(GPU, rep ? second : first, cf_view_f32(dwte.g, PAD), nw * 4));
    }
    expect(memcmp(first, second, nw * 4) == 0, "encoder_backward dwte is bit-identical run to run");
    free(first), free(second), free(zeros), free(tok);
    pair_free(tokens), pair_free(wte), pair_free(wpe), pair_free(out);
    pair_free(dwte), pair_free(dwpe), pair_free(dout);
}

static void test_layernorm(int N, int C) {
    pair inp = pair_rand((size_t)N * C, 2.0f), w = pair_rand(C, 1.0f), b = pair_rand(C, 1.0f);
    pair out = pair_rand((size_t)N * C, 1.0f), mean = pair_rand(N, 1.0f),
         rstd = pair_rand(N, 1.0f);
    BOTH(cf_be_layernorm_forward(be, V(out), V(mean), V(rstd), V(inp), V(w), V(b), N, C,
                                 1e-5f));
    char what[96];
    snprintf(what, sizeof what, "layernorm_forward out N=%d C=%d", N, C);
    check(what, out, 1e-5);
    snprintf(what, sizeof what, "layernorm_forward mean N=%d C=%d", N, C);
    check(what, mean, 1e-5);
    snprintf(what, sizeof what, "layernorm_forward rstd N=%d C=%d", N, C);
    check(what, rstd, 1e-5);
    /* mean/rstd left out (inference) */
    pair out2 = pair_rand((size_t)N * C, 1.0f);
    BOTH(cf_be_layernorm_forward(be, V(out2), CF_VIEW_NULL, CF_VIEW_NULL, V(inp), V(w), V(b), N,
                                 C, 1e-5f));
    snprintf(what, sizeof what, "layernorm_forward without mean/rstd N=%d C=%d", N, C);
    check(what, out2, 1e-5);
    pair dinp = pair_rand((size_t)N * C, 1.0f), dw = pair_rand(C, 1.0f), db = pair_rand(C, 1.0f);
    pair dout = pair_rand((size_t)N * C, 1.0f);
    BOTH(cf_be_layernorm_backward(be, V(dinp), V(dw), V(db), V(dout), V(inp), V(w), V(mean),
                                  V(rstd), N, C));
    snprintf(what, sizeof what, "layernorm_backward dinp N=%d C=%d", N, C);
    check(what, dinp, 2e-5);
    snprintf(what, sizeof what, "layernorm_backward dweight N=%d C=%d", N, C);
    check(what, dw, 2e-5);
    snprintf(what, sizeof what, "layernorm_backward dbias N=%d C=%d", N, C);
    check(what, db, 2e-5);
    pair_free(inp), pair_free(w), pair_free(b), pair_free(out), pair_free(mean), pair_free(rstd);
    pair_free(out2), pair_free(dinp), pair_free(dw), pair_free(db), pair_free(dout);
}

/* ---- attention -------------------------------------------------------------------------------
 * Each case runs forward and backward with the path forced by mode ("fused" or "gemm", as
 * CF_ATTENTION would) and checks, with the backend's counters, that `expect_path` ran: a shape the
 * fused kernels do not take falls back to the GEMMs even when the fused path is asked for. */

static cf_cl_ctx *gpu_ctx(void) { return (cf_cl_ctx *)GPU->ctx; }
/* the path of mode auto on this device: fused on GPUs (oclgrind's simulator is one), the GEMMs
 * on CPU devices (PoCL) */
static const char *auto_path(void) {
    return (gpu_ctx()->dev.type & CL_DEVICE_TYPE_GPU) ? "fused" : "gemm";
}

/* Refill a pair between its guards: gpu_v on the OpenCL side, cpu_v on the CPU side (whole-buffer
 * uploads: see tcl_keep_buffers). */
static void pair_fill_sides(pair p, float gpu_v, float cpu_v) {
    const size_t total = p.n + 2 * PAD;
    float *h = tcl_malloc(total * 4);
    for (int g_ = 0; g_ < 2; g_++) {
        for (size_t i = 0; i < total; i++)
            h[i] = i < PAD || i >= PAD + p.n ? GUARD : g_ ? gpu_v : cpu_v;
        TCL_OK(cf_be_upload(g_ ? GPU : CPU, cf_view_f32(g_ ? p.g : p.c, 0), h, total * 4));
    }
    free(h);
}

/* KVH key/value heads (KVH == NH: multi-head, run on the fused kernels' -DATT_MHA build) */
static void test_attention_kv(int B, int T, int C, int NH, int KVH, const char *mode,
                              const char *expect_path) {
    char path[64];
    snprintf(path, sizeof path, "hs=%d KVH=%d %s", C / NH, KVH, mode);
    if (strcmp(mode, expect_path) != 0)
        snprintf(path, sizeof path, "hs=%d KVH=%d %s -> %s", C / NH, KVH, mode, expect_path);
    long fused0, gemm0, fused1, gemm1;
    TCL_OK(cf_cl_attention_set_mode(gpu_ctx(), mode));
    cf_cl_attention_counts(gpu_ctx(), &fused0, &gemm0);
    const long mha0 = cf_cl_attention_fused_mha(gpu_ctx());
    size_t btc = (size_t)B * T * C, att_n = (size_t)B * NH * T * T;
    size_t qkv_n = (size_t)B * T * (NH + 2 * KVH) * (C / NH);
    pair qkv = pair_rand(qkv_n, 1.0f), out = pair_rand(btc, 1.0f);
    pair att = pair_rand(att_n, 1.0f); /* garbage in: the op must write every entry */
    BOTH(cf_be_attention_forward(be, V(out), V(att), V(qkv), B, T, NH, KVH, C / NH));
    char what[128];
    snprintf(what, sizeof what, "attention_forward out B=%d T=%d C=%d NH=%d %s", B, T, C, NH,
             path);
    check(what, out, 2e-5);
    snprintf(what, sizeof what, "attention_forward att B=%d T=%d C=%d NH=%d %s", B, T, C, NH,
             path);
    check(what, att, 2e-5);
    float *a = tcl_malloc(att_n * 4);
    TCL_OK(cf_be_download(GPU, a, cf_view_f32(att.g, PAD), att_n * 4));
    size_t nonzero = 0;
    for (size_t r = 0; r < (size_t)B * NH * T; r++)
        for (int t2 = (int)(r % T) + 1; t2 < T; t2++)
            if (a[r * T + t2] != 0.0f) nonzero++;
    expect(nonzero == 0, "attention_forward att upper triangle is exactly 0 (%zu non-zero)",
           nonzero);
    free(a);
    /* dqkv is assigned: NaN in on the OpenCL side must come out as the CPU's result from a
     * zero-filled dqkv (a NaN left anywhere fails the comparison) */
    pair dqkv = pair_rand(qkv_n, 1.0f), dout = pair_rand(btc, 1.0f);
    pair datt = pair_rand(att_n, 1.0f), dpre = pair_rand(att_n, 1.0f);
    pair_fill_sides(dqkv, NAN, 0.0f);
    BOTH(cf_be_attention_backward(be, V(dqkv), V(datt), V(dpre), V(dout), V(qkv), V(att), B, T, NH,
                                  KVH, C / NH));
    snprintf(what, sizeof what, "attention_backward dqkv (NaN in, assigned) B=%d T=%d NH=%d %s", B,
             T, NH, path);
    check(what, dqkv, 5e-5);
    cf_cl_attention_counts(gpu_ctx(), &fused1, &gemm1);
    const int want_fused = strcmp(expect_path, "fused") == 0;
    expect(fused1 - fused0 == (want_fused ? 2 : 0) && gemm1 - gemm0 == (want_fused ? 0 : 2),
           "attention B=%d T=%d C=%d NH=%d mode %s: forward and backward ran on the %s path "
           "(fused ops %ld, gemm ops %ld)",
           B, T, C, NH, mode, expect_path, fused1 - fused0, gemm1 - gemm0);
    if (want_fused) {
        const long mha = cf_cl_attention_fused_mha(gpu_ctx()) - mha0;
        expect(mha == (KVH == NH ? 2 : 0),
               "attention B=%d T=%d NH=%d KVH=%d: the fused ops ran on the %s build (%ld of 2 on "
               "the multi-head one)",
               B, T, NH, KVH, KVH == NH ? "multi-head" : "grouped-query", mha);
    }
    TCL_OK(cf_cl_attention_set_mode(gpu_ctx(), "auto"));
    pair_free(qkv), pair_free(out), pair_free(att), pair_free(dqkv), pair_free(dout);
    pair_free(datt), pair_free(dpre);
}

static void test_attention(int B, int T, int C, int NH, const char *mode, const char *expect_path) {
    test_attention_kv(B, T, C, NH, NH, mode, expect_path);
}

/* the fused kernels' block sizes: blocks of 32 rows (groups of 128) where the device cannot run
 * groups of 256 or lacks the local memory for them, and no fit at all (little local memory) */
static void test_attention_blocks(int small) {
    cf_cl_ctx *ctx = gpu_ctx();
    const size_t max_group = ctx->dev.max_group;
    const cl_ulong local_mem = ctx->dev.local_mem;
    ctx->dev.max_group = 128;
    if (small) test_attention(1, 37, 6, 2, "fused", "fused");
    else test_attention(2, 70, 39, 3, "fused", "fused");
    ctx->dev.max_group = max_group;
    if (!small) {
        /* hs 13 (as any up to 16): groups of 256 need 22528 bytes, of 128 14336 (cl_attention.c) */
        ctx->dev.local_mem = 20000;
        test_attention(1, 100, 26, 2, "fused", "fused");
        ctx->dev.local_mem = 10000;
        test_attention(1, 20, 26, 2, "fused", "gemm");
        ctx->dev.local_mem = local_mem;
    }
}

/* CF_ATTENTION (cf_backend_options.attention, read by the tests as by the CLI) sets the path */
static void test_attention_env(const char *spec) {
    setenv("CF_ATTENTION", "gemm", 1);
    cf_backend *be = NULL;
    TCL_OK(cf_backend_opencl_create(spec, tcl_opts(), &be));
    const int B = 1, T = 9, C = 8, NH = 2;
    cf_buffer *buf = NULL;
    const size_t btc = (size_t)B * T * C, tt = (size_t)B * NH * T * T;
    TCL_OK(cf_be_alloc(be, (4 * btc + tt) * 4, &buf));
    TCL_OK(cf_be_attention_forward(be, cf_view_f32(buf, 3 * btc), cf_view_f32(buf, 4 * btc),
                                   cf_view_f32(buf, 0), B, T, NH, NH, C / NH));
    TCL_OK(cf_be_sync(be));
    long fused, gemm;
    cf_cl_attention_counts((cf_cl_ctx *)be->ctx, &fused, &gemm);
    expect(fused == 0 && gemm == 1, "CF_ATTENTION=gemm: attention runs the GEMM path (fused %ld, "
           "gemm %ld)", fused, gemm);
    expect(cf_cl_attention_set_mode((cf_cl_ctx *)be->ctx, "fast") == CF_ERR_INVALID,
           "an unknown attention path is refused");
    cf_be_free(be, buf);
    cf_backend_destroy(be);
    unsetenv("CF_ATTENTION");
}

static void test_elementwise(size_t n) {
    pair x = pair_rand(n, 4.0f), y = pair_rand(n, 1.0f), out = pair_rand(n, 1.0f);
    char what[96];
    BOTH(cf_be_gelu_forward(be, V(out), V(x), n));
    snprintf(what, sizeof what, "gelu_forward n=%zu", n);
    check(what, out, 1e-6);
    pair dinp = pair_rand(n, 1.0f);
    BOTH(cf_be_gelu_backward(be, V(dinp), V(x), V(y), n));
    snprintf(what, sizeof what, "gelu_backward (assigns) n=%zu", n);
    check(what, dinp, 1e-6);
    BOTH(cf_be_residual_forward(be, V(out), V(x), V(y), n));
    snprintf(what, sizeof what, "residual_forward n=%zu", n);
    check(what, out, 1e-7);
    BOTH(cf_be_residual_forward(be, V(x), V(x), V(y), n)); /* in place */
    snprintf(what, sizeof what, "residual_forward in place n=%zu", n);
    check(what, x, 1e-7);
    /* the kernels move 4 elements at a time, as float4 when every view starts on a multiple of 4
     * elements: V() sits at PAD = 5 (element by element), PAD + 3 on the grid (float4) */
    BOTH(cf_be_residual_forward(be, cf_view_add(V(out), 3), cf_view_add(V(x), 3),
                                cf_view_add(V(y), 3), n - 4));
    snprintf(what, sizeof what, "residual_forward n=%zu, views on the 4-element grid", n - 4);
    check(what, out, 1e-7);
    /* OpenCL may contract y + alpha*x into one fma: a last-bit difference */
    BOTH(cf_be_axpy(be, V(y), V(x), -0.375f, n));
    snprintf(what, sizeof what, "axpy n=%zu", n);
    check(what, y, 1e-6);
    /* Muon's element-wise ops: momentum (twice, out over a separate tensor, then over grads),
     * division by a norm held on the device, y = alpha x + beta y */
    pair mom = pair_rand(n, 0.1f), mout = pair_rand(n, 1.0f), ss = pair_const(1, 3.0f);
    BOTH(cf_be_muon_momentum(be, V(mom), V(x), V(mout), n, 0.95f, 0.8f));
    BOTH(cf_be_muon_momentum(be, V(mom), V(mout), V(mout), n, 0.95f, 0.8f));
    snprintf(what, sizeof what, "muon_momentum n=%zu", n);
    check(what, mout, 1e-6);
    check(what, mom, 1e-6);
    BOTH(cf_be_scale_rnorm(be, V(mout), V(ss), n, 1e-7f));
    snprintf(what, sizeof what, "scale_rnorm n=%zu", n);
    check(what, mout, 1e-6);
    BOTH(cf_be_axpby(be, V(y), V(x), -0.375f, 0.998f, n));
    snprintf(what, sizeof what, "axpby n=%zu", n);
    check(what, y, 1e-6);
    pair_free(mom);
    pair_free(mout);
    pair_free(ss);
    pair src = pair_rand(n, 1.0f), mid = pair_rand(n, 1.0f);
    BOTH(cf_be_fill(be, cf_view_add(V(out), 3), 2.5f, n - 5)); /* on the 4-element grid */
    snprintf(what, sizeof what, "fill n=%zu at offset 3", n - 5);
    check(what, out, 0.0);
    BOTH(cf_be_fill(be, cf_view_add(V(out), 4), -1.5f, n - 7)); /* off it */
    snprintf(what, sizeof what, "fill n=%zu at offset 4", n - 7);
    check(what, out, 0.0);
    BOTH(cf_be_copy(be, V(out), V(src), n));
    snprintf(what, sizeof what, "copy n=%zu", n);
    check(what, out, 0.0);
    /* overlapping copies within one buffer behave like memmove */
    BOTH(cf_be_copy(be, cf_view_add(V(out), 7), V(out), n - 7));
    snprintf(what, sizeof what, "copy overlapping forward n=%zu", n - 7);
    check(what, out, 0.0);
    BOTH(cf_be_copy(be, V(out), cf_view_add(V(out), 3), n - 3));
    snprintf(what, sizeof what, "copy overlapping backward n=%zu", n - 3);
    check(what, out, 0.0);
    /* to half storage and back (the activations bf16/fp16 stores half), at an odd offset and a
     * length that is not a multiple of the kernels' four values a work-item */
    for (int h = 0; h < 2; h++) {
        const enum cf_dtype dt = h ? CF_F16 : CF_BF16;
        BOTH(cf_be_copy(be, cf_view_add(VT(mid, dt), 3), V(src), n - 2));
        BOTH(cf_be_copy(be, cf_view_add(V(out), 1), cf_view_add(VT(mid, dt), 3), n - 2));
        snprintf(what, sizeof what, "copy to %s and back n=%zu", cf_dtype_name(dt), n - 2);
        check(what, out, 0.0);
    }
    pair_free(src);
    pair_free(mid);
    pair_free(x), pair_free(y), pair_free(out), pair_free(dinp);
}

/* lead: the logits and their gradient start that many elements after PAD (lead 3: on the
 * 4-element grid, which the OpenCL kernel's float4 form needs); cap: the logit soft-cap (0 off) */
static void test_crossentropy(int N, int Vocab, size_t lead, float cap) {
#define VL(p) cf_view_f32(g_ ? (p).g : (p).c, PAD + lead)
    int *tg = tcl_malloc((size_t)N * 4);
    for (int i = 0; i < N; i++) tg[i] = (int)(cf_rng_u32(&rng) % (uint32_t)Vocab);
    tg[1 % N] = -1; /* ignored row */
    tg[0] = Vocab - 1;
    /* a target past the vocabulary on the last row: ignored on both backends (backend.h) */
    if (N > 2) tg[N - 1] = Vocab + 5;
    pair targets = pair_new((size_t)N, tg, 0.0f);
    pair logits = pair_rand(lead + (size_t)N * Vocab, 6.0f), losses = pair_rand(N, 1.0f);
    char what[96];
    BOTH(cf_be_crossentropy_forward(be, V(losses), VL(logits), VI(targets), N, Vocab, cap));
    snprintf(what, sizeof what, "crossentropy_forward N=%d V=%d lead %zu cap %g", N, Vocab, lead,
             cap);
    check(what, losses, 1e-6);
    pair dlogits = pair_rand(lead + (size_t)N * Vocab, 1.0f), losses2 = pair_rand(N, 1.0f);
    BOTH(cf_be_crossentropy_fused(be, V(losses2), VL(dlogits), VL(logits), VI(targets), N, Vocab,
                                  0.25f, cap));
    snprintf(what, sizeof what, "crossentropy_fused losses N=%d V=%d lead %zu cap %g", N, Vocab,
             lead, cap);
    check(what, losses2, 1e-6);
    snprintf(what, sizeof what, "crossentropy_fused dlogits (assigned) N=%d V=%d lead %zu cap %g",
             N, Vocab, lead, cap);
    check(what, dlogits, 1e-6);
    if (N > 2) {
        float l[2];
        float *row = tcl_malloc((size_t)Vocab * 4);
        TCL_OK(cf_be_download(GPU, &l[0], cf_view_f32(losses.g, PAD + (size_t)N - 1), 4));
        TCL_OK(cf_be_download(GPU, &l[1], cf_view_f32(losses2.g, PAD + (size_t)N - 1), 4));
        TCL_OK(cf_be_download(GPU, row,
                              cf_view_f32(dlogits.g, PAD + lead + (size_t)(N - 1) * Vocab),
                              (size_t)Vocab * 4));
        int zero = 1;
        for (int j = 0; j < Vocab; j++) zero &= row[j] == 0.0f;
        expect(l[0] == 0.0f && l[1] == 0.0f && zero,
               "crossentropy target %d >= V=%d ignored on OpenCL: losses %g, %g, dlogits row "
               "zero: %s",
               Vocab + 5, Vocab, l[0], l[1], zero ? "yes" : "no");
        free(row);
    }
    /* in place: dlogits aliases logits */
    BOTH(cf_be_crossentropy_fused(be, V(losses2), VL(logits), VL(logits), VI(targets), N, Vocab,
                                  1.0f / N, cap));
    snprintf(what, sizeof what, "crossentropy_fused in place losses N=%d V=%d lead %zu cap %g", N,
             Vocab, lead, cap);
    check(what, losses2, 1e-6);
    snprintf(what, sizeof what, "crossentropy_fused in place dlogits N=%d V=%d lead %zu cap %g", N,
             Vocab, lead, cap);
    check(what, logits, 1e-6);
    free(tg);
    pair_free(targets), pair_free(logits), pair_free(losses), pair_free(dlogits);
    pair_free(losses2);
#undef VL
}

/* skip = 0: x at PAD = 5, read element by element; skip = 3: on the 4-element grid (float4s) */
static void test_reduce(size_t n0, size_t skip) {
    if (n0 <= skip) return;
    const size_t n = n0 - skip;
    pair x = pair_rand(n0, 1.0f), out = pair_rand(2, 1.0f);
    char what[96];
    BOTH(cf_be_reduce_sum(be, V(out), cf_view_add(V(x), skip), n, 0));
    BOTH(cf_be_reduce_sum(be, cf_view_add(V(out), 1), cf_view_add(V(x), skip), n, 1));
    /* the plain sum of random signs cancels: compare against the sum of |x| scale instead */
    float a[2], b[2];
    TCL_OK(cf_be_download(GPU, a, cf_view_f32(out.g, PAD), 8));
    TCL_OK(cf_be_download(CPU, b, cf_view_f32(out.c, PAD), 8));
    double e0 = fabs((double)a[0] - b[0]) / ((double)n * 0.5);
    double e1 = fabs((double)a[1] - b[1]) / fabs((double)b[1]);
    snprintf(what, sizeof what, "reduce_sum n=%zu at +%zu: %.6g vs %.6g, err/sum|x| %.1e", n, skip,
             a[0], b[0], e0);
    expect(e0 < 1e-6, "%s", what);
    snprintf(what, sizeof what, "reduce_sum square n=%zu at +%zu: %.6g vs %.6g, err %.1e", n,
             skip, a[1], b[1], e1);
    expect(e1 < 1e-5, "%s", what);
    pair_free(x), pair_free(out);
}

/* skip = 0: views at PAD = 5 (element by element); 3: on the 4-element grid (float4s) */
static void test_adamw(size_t n0, size_t skip) {
    if (n0 <= skip) return;
    const size_t n = n0 - skip;
    pair p = pair_rand(n0, 1.0f), g = pair_rand(n0, 1.0f), m = pair_const(n0, 0.0f),
         v = pair_const(n0, 0.0f);
    for (int t = 1; t <= 3; t++)
        BOTH(cf_be_adamw(be, cf_view_add(V(p), skip), cf_view_add(V(g), skip),
                         cf_view_add(V(m), skip), cf_view_add(V(v), skip), n, 1e-2f, 0.9f, 0.95f,
                         1e-8f, 0.1f, 0.8f, t));
    char what[96];
    snprintf(what, sizeof what, "adamw params after 3 steps n=%zu at +%zu", n, skip);
    check(what, p, 1e-6);
    snprintf(what, sizeof what, "adamw m n=%zu at +%zu", n, skip);
    check(what, m, 1e-6);
    snprintf(what, sizeof what, "adamw v n=%zu at +%zu", n, skip);
    check(what, v, 1e-6);
    pair_free(p), pair_free(g), pair_free(m), pair_free(v);
}

/* transfers at offsets, and the copy path of devices without unified memory (CF_CL_MAP=0) */
static void test_transfers(cf_backend *be, const char *label) {
    size_t n = 1000;
    float *h = tcl_malloc(n * 4), *back = tcl_malloc(n * 4);
    tcl_rand(&rng, h, n, 1.0f);
    cf_buffer *b;
    TCL_OK(cf_be_alloc(be, (n + 40) * 4, &b));
    float z[40];
    TCL_OK(cf_be_download(be, z, cf_view_f32(b, 0), sizeof z));
    int zeroed = 1;
    for (int i = 0; i < 40; i++) zeroed &= z[i] == 0.0f;
    expect(zeroed, "%s: new buffers start zeroed", label);
    TCL_OK(cf_be_upload(be, cf_view_f32(b, 17), h, n * 4));
    TCL_OK(cf_be_download(be, back, cf_view_f32(b, 17), n * 4));
    expect(memcmp(h, back, n * 4) == 0, "%s: upload/download round trip at offset 17", label);
    TCL_OK(cf_be_download(be, back, cf_view_f32(b, 20), 8));
    expect(back[0] == h[3] && back[1] == h[4], "%s: partial download at another offset", label);
    cf_be_free(be, b);
    free(h), free(back);
}

/* oclgrind mode: every GEMM kernel variant the rule can pick (8x8; 16x16 with WPT 4 and 8), all
 * transposes */
static void small_gemm(void) {
    static const int variants[3][2] = {{8, 4}, {16, 4}, {16, 8}};
    for (int f = 0; f < 3; f++) {
        g_force_tile = variants[f][0];
        g_force_wpt = variants[f][1];
        g_force_tk = 16;
        TCL_OK(cf_backend_opencl_set_gemm_tuner(GPU, force_tuner, NULL));
        for (int t = 0; t < 4; t++) {
            gemm_case("native", t >> 1, t & 1, 37, 21, 13, 1.0f, 0.0f);
            gemm_case("native", t >> 1, t & 1, 9, 40, 5, 0.7f, 0.5f);
        }
    }
    g_force_tile = 0;
    TCL_OK(cf_backend_opencl_set_gemm_tuner(GPU, NULL, NULL));
}

/* The per-op profiler takes device times from OpenCL events (prof_collect). */
static void test_profile(void) {
    size_t n = 4096;
    pair a = pair_rand(n, 1.0f), b = pair_rand(n, 1.0f);
    cf_backend *be = GPU;
    cf_prof_enable(be, 1);
    TCL_OK(cf_be_gelu_forward(be, cf_view_f32(b.g, PAD), cf_view_f32(a.g, PAD), n));
    TCL_OK(cf_be_gemm(be, 0, 0, 64, 64, 64, 1.0f, cf_view_f32(a.g, PAD), 64, cf_view_f32(a.g, PAD),
                      64, 0.0f, cf_view_f32(b.g, PAD), 64));
    float h[16];
    TCL_OK(cf_be_download(be, h, cf_view_f32(b.g, PAD), sizeof h));
    int ok = be->prof.n == 3;
    for (size_t i = 0; ok && i < be->prof.n; i++) ok = be->prof.events[i].dur_us > 0.0;
    expect(ok && strcmp(be->prof.events[0].op, "act_forward") == 0 &&
               strcmp(be->prof.events[1].op, "gemm") == 0,
           "profiler records 3 ops with device times (%zu events: %.1f, %.1f, %.1f us)",
           be->prof.n, be->prof.n > 0 ? be->prof.events[0].dur_us : -1.0,
           be->prof.n > 1 ? be->prof.events[1].dur_us : -1.0,
           be->prof.n > 2 ? be->prof.events[2].dur_us : -1.0);
    cf_prof_enable(be, 0);
    pair_free(a);
    pair_free(b);
}

/* --only FAMILY runs one family: gemm, matmul, attention, bias, encoder, layernorm,
 * elementwise, crossentropy, reduce, adamw, transfers, profile */
static const char *only = NULL;
static int want(const char *family) { return !only || strcmp(only, family) == 0; }

int main(int argc, char **argv) {
    const char *spec = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--small") == 0) small_mode = tcl_keep_buffers = 1;
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) spec = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--small] [--only FAMILY] [--device SPEC]\n", argv[0]);
            return 2;
        }
    }
    int code = 0;
    if (tcl_open("test_cl_ops", spec, &code) < 0) return code;
    double t0 = cf_time_now();
    /* GEMM paths, tiles and transposes are test_cl_gemm's; here the ops built on GEMM use the
     * native kernel (attention always does) */
    TCL_OK(cf_backend_opencl_set_gemm(GPU, "native"));
    if (want("transfers")) test_transfers(GPU, "opencl");
    if (small_mode) {
        if (want("gemm")) small_gemm();
        if (want("matmul")) test_matmul(9, 13, 7);
        if (want("attention")) {
            test_attention(1, 5, 8, 2, "fused", "fused");
            test_attention(2, 37, 8, 2, "fused", "fused");
            test_attention(1, 11, 6, 2, "fused", "fused"); /* hs 3 */
            test_attention_kv(2, 37, 16, 4, 2, "fused", "fused"); /* GQA 4:2, hs 4 */
            test_attention_kv(1, 11, 8, 4, 1, "fused", "fused");  /* MQA */
            test_attention(2, 37, 8, 2, "gemm", "gemm");
            test_attention(1, 9, 8, 2, "auto", auto_path());
            test_attention_blocks(1);
        }
        if (want("bias")) test_bias(5, 7);
        if (want("encoder")) test_encoder(2, 5, 6, 4);
        if (want("layernorm")) test_layernorm(3, 10);
        if (want("elementwise")) test_elementwise(37);
        if (want("crossentropy")) {
            test_crossentropy(3, 11, 0, 0.0f);
            /* a row longer than the registers hold, on the float4 grid: the blocked form */
            test_crossentropy(2, 64 * ((cf_cl_ctx *)GPU->ctx)->prog_ls[CF_PROG_CROSSENTROPY] + 36,
                              3, 0.0f);
        }
        if (want("reduce")) {
            test_reduce(1, 0);
            test_reduce(300, 0);
            test_reduce(300, 3);
        }
        if (want("adamw")) {
            test_adamw(37, 0);
            test_adamw(37, 3);
        }
        return tcl_finish("test_cl_ops --small", t0);
    }
    if (want("matmul")) test_matmul(70, 48, 150);
    if (want("attention")) {
        /* hs 13 (not a multiple of 4) for most cases: on PoCL each head size and block height
         * costs 5 s of compiling; T 260: five blocks of 64 rows */
        static const int both[][4] = {{2, 19, 52, 4}, {1, 260, 26, 2}, {2, 37, 26, 2}};
        for (size_t i = 0; i < sizeof both / sizeof both[0]; i++)
            for (int m = 0; m < 2; m++)
                test_attention(both[i][0], both[i][1], both[i][2], both[i][3],
                               m ? "gemm" : "fused", m ? "gemm" : "fused");
        test_attention(1, 70, 24, 3, "gemm", "gemm");
        test_attention(3, 128, 96, 2, "fused", "fused"); /* hs 48, the wiki configs' heads */
        test_attention_kv(1, 40, 32, 4, 2, "fused", "fused"); /* GQA 4:2, hs 8 */
        test_attention(2, 40, 26, 2, "auto", auto_path());
        test_attention(1, 33, 128, 2, "fused", "fused"); /* hs 64, the largest fused */
        test_attention(1, 20, 130, 2, "fused", "gemm");  /* hs 65: the GEMMs, with a warning */
        test_attention(2, 1, 26, 2, "fused", "fused");   /* T 1 */
        if (cf_cl_have_clblast()) {
            /* B 1, NH 1: the GEMM path's products are unbatched, so CLBlast runs them (beta 0:
             * it must not read the NaN in dqkv) */
            TCL_OK(cf_backend_opencl_set_gemm(GPU, "clblast"));
            const int level = cf_log_get_level();
            g_log[0] = 0;
            cf_log_set_callback(capture_log, NULL);
            cf_log_set_level(CF_LOG_DEBUG);
            test_attention(1, 21, 8, 1, "gemm", "gemm");
            cf_log_set_level(level);
            cf_log_set_callback(NULL, NULL);
            expect(strstr(g_log, "gemm M=21 N=8 K=21 TN: clblast") != NULL,
                   "attention B=1 NH=1: the backward's products ran on CLBlast (debug log)");
            TCL_OK(cf_backend_opencl_set_gemm(GPU, "native"));
        }
        test_attention_blocks(0);
        test_attention_env(spec ? spec : tcl_spec());
    }
    if (want("bias")) {
        test_bias(1, 1);
        test_bias(70, 33);
        test_bias(3000, 96);
    }
    if (want("encoder")) {
        test_encoder(3, 17, 40, 11);
        test_encoder(4, 64, 72, 256);
    }
    if (want("layernorm")) {
        test_layernorm(23, 70);
        test_layernorm(40, 300);
        test_layernorm(1, 1);
        /* rows wider than the backward keeps in registers (8 columns per work-item): the loop */
        const int ls = ((cf_cl_ctx *)GPU->ctx)->prog_ls[CF_PROG_LAYERNORM];
        test_layernorm(5, 8 * ls + 37);
    }
    if (want("elementwise")) {
        test_elementwise(8);
        test_elementwise(100003);
    }
    if (want("crossentropy")) {
        test_crossentropy(7, 50, 0, 0.0f);
        test_crossentropy(33, 300, 0, 0.0f);
        /* rows wider than the fused kernel keeps in registers (64 per work-item): the loops */
        const int ls = ((cf_cl_ctx *)GPU->ctx)->prog_ls[CF_PROG_CROSSENTROPY];
        test_crossentropy(3, 64 * ls + 37, 0, 0.0f);
        /* and of whole float4s: the blocked two-read form (V % 4 == 0, blocks of 8 float4s a
         * work-item, the last one partial) */
        test_crossentropy(5, 64 * ls + 36, 3, 0.0f);
        test_crossentropy(3, 64 * ls + 36, 0, 0.0f); /* (not on the grid: element by element) */
        test_crossentropy(4, 64 * ls + 36, 3, 5.0f); /* soft-capped, both forms */
        test_crossentropy(3, 64 * ls + 37, 0, 5.0f);
    }
    if (want("reduce")) {
        for (size_t skip = 0; skip <= 3; skip += 3) {
            test_reduce(1, skip);
            test_reduce(1000, skip);
            test_reduce(100003, skip);
            test_reduce(100006, skip);
        }
    }
    if (want("adamw")) {
        for (size_t skip = 0; skip <= 3; skip += 3) {
            test_adamw(1, skip);
            test_adamw(10007, skip);
            test_adamw(10010, skip);
        }
    }
    if (want("profile")) test_profile();
    cf_backend_destroy(GPU);
    GPU = NULL;

    /* the same device through copies instead of map/unmap (the discrete-GPU transfer path) */
    if (want("transfers")) {
        const char *dev = spec ? spec : tcl_spec();
        setenv("CF_CL_MAP", "0", 1);
        cf_backend *copy_be = NULL;
        TCL_OK(cf_backend_opencl_create(dev, tcl_opts(), &copy_be));
        test_transfers(copy_be, "opencl, CF_CL_MAP=0");
        cf_backend_destroy(copy_be);
        unsetenv("CF_CL_MAP");
    }
    return tcl_finish("test_cl_ops", t0);
}
