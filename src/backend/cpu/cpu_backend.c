/* clformer: the CPU backend: host buffers, the ops table, and the choice of GEMM path.
 * This backend is the oracle the other backends are checked against. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "io/half.h"

typedef struct {
    int gemm_kernel;     /* native kernel index or CF_CPU_GEMM_BLAS */
    char gemm_name[64];  /* "native:<kernel>" or "blas" */
    int bf16;            /* precision bf16 on a CPU with AVX512-BF16: the bf16 GEMM kernel
                          * (CF_CPU_GEMM_BF16_AMX or _AVX512) every gemm / gemm_bias goes
                          * through instead of gemm_kernel; 0: none */
    int fp16;            /* precision fp16: every gemm / gemm_bias goes through the fp16 GEMM
                          * (CF_CPU_GEMM_FP16 + gemm_kernel; with BLAS chosen, + the kernel
                          * "native" picks, as BLAS's packing is not ours) */
} cf_cpu_ctx;

static const struct cf_backend_ops cf_cpu_ops;

/* ---- identity, lifetime, buffers ------------------------------------------------------------ */

static const char *cf_cpu_name(cf_backend *be) { return "cpu"; }

static void cf_cpu_destroy(cf_backend *be) {
    free(be->ctx);
    free(be);
}

static int cf_cpu_buffer_alloc(cf_backend *be, size_t nbytes, cf_buffer **out) {
    cf_buffer *b = calloc(1, sizeof *b);
    /* 64-byte aligned (a cache line, an AVX-512 vector); aligned_alloc wants a multiple */
    void *mem = nbytes <= SIZE_MAX - 63 ? aligned_alloc(64, (nbytes + 63) / 64 * 64) : NULL;
    if (!b || !mem) {
        free(b);
        free(mem);
        CF_ERROR("cpu: could not allocate %zu bytes (%.1f MiB) of host memory; reduce "
                 "batch_size, max_length or the model size",
                 nbytes, (double)nbytes / (1024.0 * 1024.0));
        return CF_ERR_NOMEM;
    }
    b->nbytes = nbytes;
    b->host = mem;
    *out = b;
    return CF_OK;
}

static void cf_cpu_buffer_free(cf_backend *be, cf_buffer *buf) {
    if (!buf) return;
    free(buf->host);
    free(buf);
}

static int cf_cpu_upload(cf_backend *be, cf_view dst, const void *src, size_t nbytes) {
    if (nbytes) memcpy((char *)dst.buf->host + dst.off, src, nbytes);
    return CF_OK;
}

static int cf_cpu_download(cf_backend *be, void *dst, cf_view src, size_t nbytes) {
    if (nbytes) memcpy(dst, (const char *)src.buf->host + src.off, nbytes);
    return CF_OK;
}

static int cf_cpu_copy(cf_backend *be, cf_view dst, cf_view src, size_t n) {
    (void)be;
    void *d = (char *)dst.buf->host + dst.off;
    const void *s = (const char *)src.buf->host + src.off;
    if (dst.dtype == CF_F32 && src.dtype == CF_F32) {
        memmove(d, s, n * sizeof(float));
        return CF_OK;
    }
    /* f32 <-> bf16/f16 (the wrapper allows no other pair), in blocks of 16K values */
    const size_t blk = 16384, nb = (n + blk - 1) / blk;
    const int kind = (dst.dtype == CF_F32 ? 1 : 0) + (dst.dtype == CF_F16 || src.dtype == CF_F16 ? 2 : 0);
#pragma omp parallel for schedule(static) if (n >= 16 * CF_CPU_PAR_MIN)
    for (size_t k = 0; k < nb; k++) {
        const size_t i0 = k * blk, m = n - i0 < blk ? n - i0 : blk;
        float *yf = (float *)d + i0;
        uint16_t *yh = (uint16_t *)d + i0;
        const float *xf = (const float *)s + i0;
        const uint16_t *xh = (const uint16_t *)s + i0;
        switch (kind) {
        case 0: /* to bf16 (vectorised: cf_f32_to_bf16 is integer arithmetic) */
            for (size_t i = 0; i < m; i++) yh[i] = cf_f32_to_bf16(xf[i]);
            break;
        case 1:
            for (size_t i = 0; i < m; i++) yf[i] = cf_bf16_to_f32(xh[i]);
            break;
        case 2: cf_cpu_f16_store(xf, yh, m); break;
        default: cf_cpu_f16_load(xh, yf, m); break;
        }
    }
    return CF_OK;
}

static int cf_cpu_fill(cf_backend *be, cf_view dst, float value, size_t n) {
    float *d = cf_cpu_f32(dst);
#pragma omp parallel for simd schedule(static) if (n >= 16 * CF_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) d[i] = value;
    return CF_OK;
}

static int cf_cpu_synchronize(cf_backend *be) { return CF_OK; } /* every op is synchronous */

/* ---- GEMM ----------------------------------------------------------------------------------- */

/* Products with very few rows against a weight stored (N,K) (a linear layer at decode time):
 * one dot product per output, each weight row read once from memory; the blocked kernels would
 * pack all of B for a handful of rows. The result of a row does not depend on M or the thread
 * count. */
#define CF_CPU_GEMV_MAX_M 4
static int gemv_rows(int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                     int ldb, float beta, float *C, int ldc, const float *bias) {
#pragma omp parallel for schedule(static) if ((long long)N * K >= CF_CPU_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *w = B + (size_t)n * ldb;
        for (int m = 0; m < M; m++) {
            const float *a = A + (size_t)m * lda;
            float d = 0.0f;
#pragma omp simd reduction(+ : d)
            for (int k = 0; k < K; k++) d += a[k] * w[k];
            float *c = C + (size_t)m * ldc + n;
            *c = alpha * d + (beta != 0.0f ? beta * *c : 0.0f) + (bias ? bias[n] : 0.0f);
        }
    }
    return CF_OK;
}

int cf_cpu_flash_gemm_kernel(const cf_backend *be) {
    const cf_cpu_ctx *ctx = be->ctx;
    return ctx->gemm_kernel == CF_CPU_GEMM_BLAS ? cf_cpu_gemm_native_kernel(NULL)
                                                : ctx->gemm_kernel;
}

/* The kernel of the gemm / gemm_bias slots: the bf16 or fp16 GEMM under those precisions. */
static int cf_cpu_train_kernel(const cf_cpu_ctx *ctx) {
    if (ctx->bf16) return ctx->bf16;
    if (ctx->fp16)
        return CF_CPU_GEMM_FP16 + (ctx->gemm_kernel == CF_CPU_GEMM_BLAS
                                       ? cf_cpu_gemm_native_kernel(NULL)
                                       : ctx->gemm_kernel);
    return ctx->gemm_kernel;
}

static int cf_cpu_gemm(cf_backend *be, int ta, int tb, int M, int N, int K, float alpha,
                       cf_view A, int lda, cf_view B, int ldb, float beta, cf_view C, int ldc) {
    if (M <= 0 || N <= 0) return CF_OK;
    const cf_cpu_ctx *ctx = be->ctx;
    if (M <= CF_CPU_GEMV_MAX_M && !ta && tb && !ctx->bf16 && !ctx->fp16)
        return gemv_rows(M, N, K, alpha, cf_cpu_f32(A), lda, cf_cpu_f32(B), ldb, beta,
                         cf_cpu_f32(C), ldc, NULL);
    const int kernel = cf_cpu_train_kernel(ctx);
    return cf_cpu_sgemm(kernel, ta, tb, M, N, K, alpha, cf_cpu_f32(A), lda, cf_cpu_f32(B), ldb,
                        beta, cf_cpu_f32(C), ldc);
}

static int cf_cpu_gemm_bias(cf_backend *be, int ta, int tb, int M, int N, int K, float alpha,
                            cf_view A, int lda, cf_view B, int ldb, float beta, cf_view C,
                            int ldc, cf_view bias) {
    if (M <= 0 || N <= 0) return CF_OK;
    const cf_cpu_ctx *ctx = be->ctx;
    if (M <= CF_CPU_GEMV_MAX_M && !ta && tb && !ctx->bf16 && !ctx->fp16)
        return gemv_rows(M, N, K, alpha, cf_cpu_f32(A), lda, cf_cpu_f32(B), ldb, beta,
                         cf_cpu_f32(C), ldc, bias.buf ? cf_cpu_f32(bias) : NULL);
    const int kernel = cf_cpu_train_kernel(ctx);
    return cf_cpu_sgemm_bias(kernel, ta, tb, M, N, K, alpha, cf_cpu_f32(A), lda, cf_cpu_f32(B),
                             ldb, beta, cf_cpu_f32(C), ldc, cf_cpu_f32(bias));
}

int cf_cpu_use_avx2(cf_backend *be) {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    const char *g = cf_backend_cpu_get_gemm(be);
    if (strncmp(g, "native:", 7) == 0 && !strstr(g, "avx")) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    (void)be;
    return 0;
#endif
}

static int cf_cpu_gemm_q8_op(cf_backend *be, int M, int N, int K, cf_view A, int lda, cf_view W8,
                             cf_view scale, cf_view bias, cf_view C, int ldc) {
    const cf_cpu_ctx *ctx = be->ctx;
    return cf_cpu_gemm_q8(ctx->gemm_kernel, M, N, K, cf_cpu_f32(A), lda,
                          (const int8_t *)(const void *)((const char *)W8.buf->host + W8.off),
                          cf_cpu_f32(scale), bias.buf ? cf_cpu_f32(bias) : NULL, cf_cpu_f32(C),
                          ldc);
}

/* ---- the table ------------------------------------------------------------------------------ */

static int cf_cpu_info(cf_backend *be, cf_backend_info *out);

/* precision bf16 on AMX: the engine's peak (its products run there); otherwise none of its own */
static int cf_cpu_peak(cf_backend *be, double seconds, double *gflops, const char **how) {
    const cf_cpu_ctx *ctx = (const cf_cpu_ctx *)be->ctx;
    *gflops = 0.0;
    if (ctx->bf16 != CF_CPU_GEMM_BF16_AMX) return CF_ERR_UNSUPPORTED;
    *how = "bf16 AMX TDPBF16PS chains on every OpenMP thread, per-thread CPU time";
    return cf_cpu_amx_peak_gflops(seconds, gflops);
}

static const struct cf_backend_ops cf_cpu_ops = {
    /* .api_version = */ CF_BACKEND_API_VERSION,
    /* .name = */ cf_cpu_name,
    /* .destroy = */ cf_cpu_destroy,
    /* .buffer_alloc = */ cf_cpu_buffer_alloc,
    /* .buffer_free = */ cf_cpu_buffer_free,
    /* .upload = */ cf_cpu_upload,
    /* .download = */ cf_cpu_download,
    /* .copy = */ cf_cpu_copy,
    /* .fill = */ cf_cpu_fill,
    /* .synchronize = */ cf_cpu_synchronize,
    /* .gemm = */ cf_cpu_gemm,
    /* .gemm_bias = */ cf_cpu_gemm_bias,
    /* .gemm_gelu = */ NULL, /* matmul, then the vectorised GELU kernels of cpu_ops.c */
    /* .add_bias = */ cf_cpu_add_bias,
    /* .bias_backward = */ cf_cpu_bias_backward,
    /* .weight_bias_backward = */ NULL, /* the GEMM, then one pass over dout */
    /* .encoder_forward = */ cf_cpu_encoder_forward,
    /* .encoder_backward = */ cf_cpu_encoder_backward,
    /* .layernorm_forward = */ cf_cpu_layernorm_forward,
    /* .layernorm_backward = */ cf_cpu_layernorm_backward,
    /* .attention_forward = */ cf_cpu_attention_forward,
    /* .attention_backward = */ cf_cpu_attention_backward,
    /* .flash_forward = */ cf_cpu_flash_forward,
    /* .flash_backward = */ cf_cpu_flash_backward,
    /* .act_forward = */ cf_cpu_act_forward,
    /* .act_backward = */ cf_cpu_act_backward,
    /* .swiglu_forward = */ cf_cpu_swiglu_forward,
    /* .swiglu_backward = */ cf_cpu_swiglu_backward,
    /* .rmsnorm_forward = */ cf_cpu_rmsnorm_forward,
    /* .rmsnorm_backward = */ cf_cpu_rmsnorm_backward,
    /* .rope = */ cf_cpu_rope,
    /* .residual_forward = */ cf_cpu_residual_forward,
    /* .axpy = */ cf_cpu_axpy,
    /* .crossentropy_forward = */ cf_cpu_crossentropy_forward,
    /* .crossentropy_fused = */ cf_cpu_crossentropy_fused,
    /* .reduce_sum = */ cf_cpu_reduce_sum,
    /* .adamw = */ cf_cpu_adamw,
    /* .muon_momentum = */ cf_cpu_muon_momentum,
    /* .scale_rnorm = */ cf_cpu_scale_rnorm,
    /* .axpby = */ cf_cpu_axpby,
    /* .prof_collect = */ NULL, /* host timing around synchronize is exact here */
    /* .info = */ cf_cpu_info,
    /* .peak_gflops = */ cf_cpu_peak, /* AMX's under precision bf16 there; else unsupported:
                                       * the host's FMA loop (src/bench/peak.c) */
    /* .gemm_describe = */ NULL,
    /* .host_alloc = */ NULL, /* malloc: the buffers are host memory */
    /* .host_free = */ NULL,
    /* .kv_append = */ cf_cpu_kv_append,
    /* .decode_attention = */ cf_cpu_decode_attention,
    /* .gemm_q8 = */ cf_cpu_gemm_q8_op,
    /* .embed_q8 = */ cf_cpu_embed_q8,
};

/* ---- creation and GEMM choice --------------------------------------------------------------- */

static void cf_cpu_set_kernel(cf_cpu_ctx *ctx, int kernel) {
    ctx->gemm_kernel = kernel;
    if (kernel == CF_CPU_GEMM_BLAS)
        snprintf(ctx->gemm_name, sizeof ctx->gemm_name, "blas");
    else
        snprintf(ctx->gemm_name, sizeof ctx->gemm_name, "native:%s",
                 cf_cpu_gemm_kernel_name(kernel));
}

/* "native" or the default: the kernel cf_cpu_gemm_native_kernel picks for this CPU */
static int is_native(const char *which) {
    if (!which || !*which || strcmp(which, "auto") == 0) which = cf_cpu_gemm_default();
    return strcmp(which, "native") == 0;
}

/* The host CPU's model name from /proc/cpuinfo ("" where there is none). */
static void cpu_model_name(char *out, size_t len, char *vendor, size_t vlen) {
    out[0] = vendor[0] = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f) && (!out[0] || !vendor[0])) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        v[strcspn(v, "\n")] = 0;
        if (!out[0] && strncmp(line, "model name", 10) == 0) snprintf(out, len, "%s", v);
        if (!vendor[0] && strncmp(line, "vendor_id", 9) == 0) snprintf(vendor, vlen, "%s", v);
    }
    fclose(f);
}

static int cf_cpu_info(cf_backend *be, cf_backend_info *out) {
    const cf_cpu_ctx *ctx = be->ctx;
    out->kind = "cpu";
    out->device_type = CF_DEVICE_CPU;
    out->host_threads = 1;
    cpu_model_name(out->device, sizeof out->device, out->vendor, sizeof out->vendor);
    if (!out->device[0]) snprintf(out->device, sizeof out->device, "host CPU");
    out->compute_units = cf_cpu_max_threads();
    out->unified_memory = 1;
    out->gemm_paths = CF_GEMM_PATH_NATIVE | (cf_cpu_blas_available() ? CF_GEMM_PATH_BLAS : 0u);
    /* (precision bf16: the bf16 kernel every training product runs on) */
    if (ctx->bf16)
        snprintf(out->gemm, sizeof out->gemm, "bf16:%s", cf_cpu_gemm_kernel_name(ctx->bf16));
    else
        snprintf(out->gemm, sizeof out->gemm, "%s", ctx->gemm_name);
    return CF_OK;
}

int cf_backend_cpu_list_devices(FILE *out) {
    const int native = cf_cpu_gemm_native_kernel(NULL); /* before its reason is read */
    fprintf(out,
            "cpu           clformer's C backend (OpenMP, %d threads; GEMM native:%s, %s%s%s; "
            "CF_CPU_GEMM overrides)\n",
            cf_cpu_max_threads(), cf_cpu_gemm_kernel_name(native), cf_cpu_gemm_native_reason(),
            cf_cpu_blas_available() ? "; OpenBLAS available" : "",
            cf_cpu_gemm_amx_available()    ? "; AMX-BF16: precision bf16"
            : cf_cpu_gemm_bf16_available() ? "; AVX512-BF16: precision bf16"
                                           : "");
    return CF_OK;
}

int cf_backend_cpu_enumerate(const cf_backend_options *opts, cf_device_desc *out, int max,
                             char *why, size_t why_len) {
    if (why && why_len) why[0] = 0;
    if (max < 1) return 1;
    /* one device, created as every command creates it: its GEMM kernel is its "driver" */
    cf_backend *be = NULL;
    cf_backend_info info;
    int rc = cf_backend_cpu_create("cpu", opts, &be);
    if (rc == CF_OK) rc = cf_be_info(be, &info);
    cf_backend_destroy(be);
    if (rc < 0) {
        if (why && why_len) snprintf(why, why_len, "%s", cf_status_str(rc));
        return rc;
    }
    memset(out, 0, sizeof *out);
    snprintf(out->spec, sizeof out->spec, "cpu");
    snprintf(out->name, sizeof out->name, "%s", info.device);
    snprintf(out->driver, sizeof out->driver, "%s", info.gemm);
    out->device_type = info.device_type;
    out->usable = 1;
    return 1;
}

int cf_backend_cpu_create(const char *spec, const cf_backend_options *opts, cf_backend **out) {
    (void)spec;
    *out = NULL;
    int kernel;
    const char *which = opts ? opts->cpu_gemm : NULL;
    CF_TRY(cf_cpu_gemm_parse(which, "cpu gemm (CF_CPU_GEMM / --gemm)", &kernel));
    if (is_native(which)) kernel = cf_cpu_gemm_native_kernel(opts ? opts->cache_dir : NULL);
    cf_backend *be = calloc(1, sizeof *be);
    cf_cpu_ctx *ctx = calloc(1, sizeof *ctx);
    if (!be || !ctx) {
        free(be);
        free(ctx);
        CF_ERROR("cpu: could not allocate the backend object");
        return CF_ERR_NOMEM;
    }
    cf_cpu_set_kernel(ctx, kernel);
    be->ops = &cf_cpu_ops;
    be->ctx = ctx;
    be->verbose = opts ? opts->verbose : 0;
    CF_DEBUG("cpu backend: gemm %s, %d OpenMP threads", ctx->gemm_name, cf_cpu_max_threads());
    if (opts && opts->tf32)
        CF_INFO("precision tf32: the CPU backend has no TF32 matrix engine; GEMMs run in fp32");
    if (opts && opts->bf16) {
        /* the bf16 kernel: AMX where the CPU has it, else AVX512-BF16; CF_CPU_GEMM_BF16 forces
         * one (a forced kernel the CPU does not have is an error) */
        const char *k = opts->cpu_bf16;
        const int amx = cf_cpu_gemm_amx_available();
        if (k && *k && strcmp(k, "auto") && strcmp(k, "avx512bf16") && strcmp(k, "amx")) {
            CF_ERROR("CF_CPU_GEMM_BF16='%s' is not known; use auto, avx512bf16 or amx", k);
            free(ctx);
            free(be);
            return CF_ERR_INVALID;
        }
        if (k && !strcmp(k, "amx") && !amx) {
            CF_ERROR("CF_CPU_GEMM_BF16=amx: this CPU %s; use avx512bf16 or auto",
                     cf_cpu_gemm_bf16_available() ? "has no AMX-BF16 the process may use"
                                                  : "has neither AMX nor AVX512-BF16");
            free(ctx);
            free(be);
            return CF_ERR_UNSUPPORTED;
        }
        if (k && !strcmp(k, "avx512bf16") && !cf_cpu_gemm_bf16_available()) {
            CF_ERROR("CF_CPU_GEMM_BF16=avx512bf16: this CPU has no AVX512-BF16; use auto (bf16 "
                     "GEMMs then run in fp32 here)");
            free(ctx);
            free(be);
            return CF_ERR_UNSUPPORTED;
        }
        const int use_amx = amx && !(k && !strcmp(k, "avx512bf16"));
        ctx->bf16 = !cf_cpu_gemm_bf16_available() ? 0
                    : use_amx                     ? CF_CPU_GEMM_BF16_AMX
                                                  : CF_CPU_GEMM_BF16_AVX512;
        if (ctx->bf16)
            CF_INFO("precision bf16: GEMM inputs rounded to bf16, fp32 accumulation "
                    "(%s)",
                    use_amx ? "AMX tiles" : "AVX512-BF16");
        else
            CF_INFO("precision bf16: this CPU has no AVX512-BF16; GEMMs run in fp32");
    }
    if (opts && opts->fp16) {
        /* the fp32 kernel "native" picks (also when the fp32 GEMMs go through BLAS, whose
         * packing is not ours) on operands rounded to half while packed */
        const int k = kernel == CF_CPU_GEMM_BLAS ? cf_cpu_gemm_native_kernel(opts->cache_dir)
                                                 : kernel;
        ctx->fp16 = 1;
        CF_INFO("precision fp16: GEMM inputs rounded to fp16, fp32 accumulation "
                "(kernel %s, %s); dynamic loss scaling in training",
                cf_cpu_gemm_kernel_name(k), cf_cpu_f16c_usable() ? "F16C" : "scalar rounding");
    }
    *out = be;
    return CF_OK;
}

int cf_backend_cpu_set_gemm(cf_backend *be, const char *which) {
    if (!be || be->ops != &cf_cpu_ops) {
        CF_ERROR("cf_backend_cpu_set_gemm: backend '%s' is not the CPU backend",
                 be ? cf_be_name(be) : "(null)");
        return CF_ERR_INVALID;
    }
    int kernel;
    CF_TRY(cf_cpu_gemm_parse(which, "cpu gemm choice", &kernel));
    if (is_native(which)) kernel = cf_cpu_gemm_native_kernel(NULL);
    cf_cpu_set_kernel(be->ctx, kernel);
    return CF_OK;
}

const char *cf_backend_cpu_get_gemm(cf_backend *be) {
    if (!be || be->ops != &cf_cpu_ops) return "";
    return ((cf_cpu_ctx *)be->ctx)->gemm_name;
}
