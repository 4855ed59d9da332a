/* clformer: backend registry, options, checked wrappers around struct cf_backend_ops, fault
 * injection (test builds). */
#define _POSIX_C_SOURCE 200809L
#include "backend/backend.h"
#include "backend/verify.h"
#ifdef CF_HAVE_OPENCL
#include "backend/opencl/cl_backend.h"
#endif

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- fault injection (test builds only) --------------------------------------------------- */

#ifdef CF_FAULT_INJECTION
static int g_fault_alloc = 0, g_fault_build = 0, g_fault_clblast = 0, g_fault_save_crash = 0;

void cf_fault_set_alloc(int nth) { g_fault_alloc = nth; }
void cf_fault_set_build(int nth) { g_fault_build = nth; }
void cf_fault_set_clblast(int nth) { g_fault_clblast = nth; }
static int g_fault_grad_inf = 0, g_fault_grad_inf_calls = 0;
void cf_fault_set_grad_inf(int nth) {
    g_fault_grad_inf = nth;
    g_fault_grad_inf_calls = 0;
}
int cf_fault_grad_inf_hit(void) {
    if (g_fault_grad_inf <= 0) return 0;
    return ++g_fault_grad_inf_calls >= g_fault_grad_inf; /* from the Nth call on, every call */
}
void cf_fault_set_save_crash(int on) { g_fault_save_crash = on; }
int cf_fault_alloc_hit(void) {
    if (g_fault_alloc <= 0) return 0;
    return --g_fault_alloc == 0;
}
int cf_fault_build_hit(void) {
    if (g_fault_build <= 0) return 0;
    return --g_fault_build == 0;
}
int cf_fault_clblast_hit(void) {
    if (g_fault_clblast <= 0) return 0;
    return --g_fault_clblast == 0;
}
int cf_fault_save_crash(void) { return g_fault_save_crash != 0; }
#endif

/* ---- options ------------------------------------------------------------------------------ */

cf_backend_options cf_backend_options_default(void) {
    cf_backend_options o;
    memset(&o, 0, sizeof o);
    o.map = -1;
    return o;
}

void cf_backend_options_set_precision(cf_backend_options *o, int precision) {
    o->tf32 = precision == CF_PREC_TF32;
    o->bf16 = precision == CF_PREC_BF16;
    o->fp16 = precision == CF_PREC_FP16;
}

/* ---- registry ---------------------------------------------------------------------------- */

static const cf_backend_reg registry[] = {
    {/* .name = */ "cpu", /* .create = */ cf_backend_cpu_create,
     /* .list_devices = */ cf_backend_cpu_list_devices,
     /* .enumerate = */ cf_backend_cpu_enumerate},
#ifdef CF_HAVE_OPENCL
    {/* .name = */ "opencl", /* .create = */ cf_backend_opencl_create,
     /* .list_devices = */ cf_opencl_list_devices,
     /* .enumerate = */ cf_opencl_enumerate},
#endif
};
enum { N_REGISTRY = (int)(sizeof registry / sizeof registry[0]) };

const cf_backend_reg *cf_backend_registry(int *n) {
    *n = N_REGISTRY;
    return registry;
}

int cf_backend_check_ops(const struct cf_backend_ops *ops, const char *name) {
    if (ops && ops->api_version == CF_BACKEND_API_VERSION && ops->info) return CF_OK;
    if (ops && ops->api_version == CF_BACKEND_API_VERSION)
        CF_ERROR("backend '%s' has no info slot (required by backend API version %d); fill "
                 "cf_backend_ops.info",
                 name, CF_BACKEND_API_VERSION);
    else
        CF_ERROR("backend '%s' was written for backend API version %d, this clformer expects %d; "
                 "update the backend's cf_backend_ops table and rebuild",
                 name, ops ? ops->api_version : -1, CF_BACKEND_API_VERSION);
    return CF_ERR_UNSUPPORTED;
}

static int create_row(const cf_backend_reg *r, const char *spec, const cf_backend_options *opts,
                      cf_backend **out) {
    CF_TRY(r->create(spec, opts, out));
    int rc = cf_backend_check_ops((*out)->ops, r->name);
    if (rc < 0) {
        cf_backend_destroy(*out);
        *out = NULL;
        return rc;
    }
    (*out)->verbose = opts->verbose;
    return CF_OK;
}

int cf_backend_create(const char *spec, const cf_backend_options *opts, cf_backend **out) {
    *out = NULL;
    cf_backend_options defaults = cf_backend_options_default();
    if (!opts) opts = &defaults;
    if (!spec || !*spec) spec = "auto";
    const cf_backend_reg *cpu = &registry[0];
    /* a row by name, or "name:..." */
    for (int i = 0; i < N_REGISTRY; i++) {
        size_t n = strlen(registry[i].name);
        if (strcasecmp(spec, registry[i].name) == 0 ||
            (strncasecmp(spec, registry[i].name, n) == 0 && spec[n] == ':'))
            return create_row(&registry[i], spec, opts, out);
    }
    if (strcasecmp(spec, "auto") == 0 || strcasecmp(spec, "auto:first") == 0) {
        /* the best usable GPU of the device backends; each says why not (a one-line warning); a
         * device whose cached verification failed is replaced or dropped (backend/verify.c) */
        for (int i = 0; i < N_REGISTRY; i++) {
            if (&registry[i] == cpu) continue;
            if (create_row(&registry[i], "auto", opts, out) == CF_OK &&
                cf_backend_auto_verified(registry[i].name, opts, out) == CF_OK)
                return CF_OK;
        }
        return create_row(cpu, "cpu", opts, out);
    }
    /* a device-name substring: the device backends in order */
    for (int i = 0; i < N_REGISTRY; i++)
        if (&registry[i] != cpu) return create_row(&registry[i], spec, opts, out);
    CF_ERROR("device '%s' not available: this build of clformer has no OpenCL backend "
             "(rebuild with OpenCL headers installed) ; use --device cpu",
             spec);
    return CF_ERR_NOT_FOUND;
}

int cf_backend_list_devices(FILE *out) {
    int rc = CF_OK;
    for (int i = 0; i < N_REGISTRY; i++) {
        int r = registry[i].list_devices(out);
        if (r < 0 && rc == CF_OK) rc = r;
    }
    if (N_REGISTRY == 1) fprintf(out, "(this build has no OpenCL backend)\n");
    return rc;
}

int cf_backend_enumerate(const cf_backend_options *opts, FILE *notes, cf_device_desc **out,
                         int *n) {
    *out = NULL;
    *n = 0;
    cf_backend_options defaults = cf_backend_options_default();
    if (!opts) opts = &defaults;
    cf_device_desc *all = NULL;
    int total = 0;
    for (int i = 0; i < N_REGISTRY; i++) {
        const cf_backend_reg *r = &registry[i];
        char why[256] = "";
        int cap = 16, count = 0;
        for (;;) { /* room for 16 devices first; a row with more says so and is asked again */
            cf_device_desc *grown = realloc(all, (size_t)(total + cap) * sizeof *all);
            if (!grown) {
                free(all);
                return CF_ERR_NOMEM;
            }
            all = grown;
            memset(all + total, 0, (size_t)cap * sizeof *all);
            count = r->enumerate(opts, all + total, cap, why, sizeof why);
            if (count <= cap) break;
            cap = count;
        }
        if (count <= 0) {
            if (i == 0) { /* the C backend is always there */
                free(all);
                CF_ERROR("backend '%s' lists no device (%s)", r->name,
                         count < 0 ? cf_status_str(count) : why);
                return count < 0 ? count : CF_ERR_DEVICE;
            }
            if (notes)
                fprintf(notes, "note: no %s devices: %s\n", r->name,
                        count < 0 ? cf_status_str(count) : why[0] ? why : "none found");
            continue;
        }
        for (int k = 0; k < count; k++) all[total + k].kind = r->name;
        total += count;
    }
    *out = all;
    *n = total;
    return CF_OK;
}

int cf_be_info(cf_backend *be, cf_backend_info *out) {
    memset(out, 0, sizeof *out);
    out->max_alloc = be->max_alloc;
    out->device_profiling = be->ops->prof_collect != NULL;
    return be->ops->info(be, out);
}

void cf_backend_destroy(cf_backend *be) {
    if (!be) return;
    cf_prof_reset(be);
    if (be->ops && be->ops->destroy) be->ops->destroy(be);
}

/* ---- profiling --------------------------------------------------------------------------- */

void cf_prof_enable(cf_backend *be, int on) {
    cf_prof_reset(be);
    be->prof.enabled = on;
    be->prof.t0 = cf_time_now();
    if (on && be->ops->prof_collect) {
        double d;
        be->ops->synchronize(be);
        be->ops->prof_collect(be, &d); /* discard what came before */
    }
}

void cf_prof_reset(cf_backend *be) {
    free(be->prof.events);
    be->prof.events = NULL;
    be->prof.n = be->prof.cap = 0;
}

static double prof_begin(cf_backend *be) {
    if (!be->prof.enabled) return 0.0;
    be->ops->synchronize(be);
    return cf_time_now();
}

/* the event of an op that ran: its time, and the bytes (transfers) or flops (GEMMs) it moved */
static int prof_end_n(cf_backend *be, const char *op, double t_start, uint64_t bytes, double flops,
                      int rc) {
    if (!be->prof.enabled || rc < 0) return rc;
    be->ops->synchronize(be);
    double t_end = cf_time_now(), dev_us = -1.0;
    if (be->ops->prof_collect && be->ops->prof_collect(be, &dev_us) < 0) dev_us = -1.0;
    cf_profiler *p = &be->prof;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 4096;
        cf_prof_event *e = realloc(p->events, cap * sizeof *e);
        if (!e) return rc; /* drop the event rather than fail the op */
        p->events = e;
        p->cap = cap;
    }
    cf_prof_event *e = &p->events[p->n++];
    e->op = op;
    e->layer = p->layer;
    e->phase = (bytes > 0 && (strcmp(op, "upload") == 0 || strcmp(op, "download") == 0))
                   ? CF_PHASE_TRANSFER
                   : p->phase;
    e->start_us = (t_start - p->t0) * 1e6;
    e->dur_us = dev_us >= 0.0 ? dev_us : (t_end - t_start) * 1e6;
    e->bytes = bytes;
    e->flops = flops;
    return rc;
}
static int prof_end(cf_backend *be, const char *op, double t_start, uint64_t bytes, int rc) {
    return prof_end_n(be, op, t_start, bytes, 0.0, rc);
}
static double gemm_flops(int M, int N, int K) { return 2.0 * M * (double)N * K; }

/* ---- argument checks ------------------------------------------------------------------------ */

const char *cf_dtype_name(enum cf_dtype t) {
    switch (t) {
    case CF_F32: return "f32";
    case CF_BF16: return "bf16";
    case CF_F16: return "f16";
    case CF_I32: return "i32";
    case CF_I8: return "i8";
    }
    return "?";
}

/* the view's buffer, alignment and nbytes from its offset, whatever the op's element type */
static int view_bytes_check(const char *op, const char *arg, cf_view v, size_t nbytes, size_t n,
                            enum cf_dtype t) {
    const size_t es = cf_dtype_size(v.dtype);
    if (es == 0) {
        CF_ERROR("%s: argument '%s' has an unknown dtype (%d); build views with cf_view_f32, "
                 "cf_view_i32 or cf_view_typed",
                 op, arg, (int)v.dtype);
        return CF_ERR_INVALID;
    }
    if (v.off % es) {
        CF_ERROR("%s: argument '%s' starts at byte %zu, not a multiple of its %zu-byte %s "
                 "element; build offsets from element indices (cf_view_%s, cf_view_add)",
                 op, arg, v.off, es, cf_dtype_name(v.dtype), cf_dtype_name(v.dtype));
        return CF_ERR_INVALID;
    }
    if (v.off > v.buf->nbytes || nbytes > v.buf->nbytes - v.off) {
        CF_ERROR("%s: argument '%s' needs %zu %s elements (%zu bytes) from byte offset %zu but "
                 "its buffer holds %zu bytes; check the tensor's offset and shape",
                 op, arg, n, cf_dtype_name(t), nbytes, v.off, v.buf->nbytes);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}

int cf_view_check(const char *op, const char *arg, cf_view v, enum cf_dtype t, size_t n,
                  int optional) {
    if (!v.buf) {
        if (optional) return CF_OK;
        CF_ERROR("%s: argument '%s' has no buffer; it needs a %s view of %zu elements", op, arg,
                 cf_dtype_name(t), n);
        return CF_ERR_INVALID;
    }
    if (v.dtype != t) {
        CF_ERROR("%s: argument '%s' must have dtype %s but the view is %s; build it with "
                 "cf_view_%s",
                 op, arg, cf_dtype_name(t), cf_dtype_name(v.dtype), cf_dtype_name(t));
        return CF_ERR_INVALID;
    }
    const size_t es = cf_dtype_size(t);
    if (n > SIZE_MAX / es) {
        CF_ERROR("%s: argument '%s': %zu elements overflow a size; check the shape", op, arg, n);
        return CF_ERR_INVALID;
    }
    return view_bytes_check(op, arg, v, n * es, n, t);
}

/* the arguments of an op in one line each, and the shape arguments that must not be negative */
#define CHECK(op, arg, v, t, n) CF_TRY(cf_view_check((op), (arg), (v), (t), (n), 0))
#define CHECK_OPT(op, arg, v, t, n) CF_TRY(cf_view_check((op), (arg), (v), (t), (n), 1))

static int dims_check(const char *op, int n, const char *const *names, const long long *vals) {
    for (int i = 0; i < n; i++)
        if (vals[i] < 0) {
            CF_ERROR("%s: %s = %lld must not be negative", op, names[i], vals[i]);
            return CF_ERR_INVALID;
        }
    return CF_OK;
}
#define DIMS(op, ...)                                                                              \
    do {                                                                                           \
        const char *const n_[] = {CF_DIM_NAMES(__VA_ARGS__)};                                      \
        const long long v_[] = {__VA_ARGS__};                                                      \
        CF_TRY(dims_check((op), (int)(sizeof v_ / sizeof v_[0]), n_, v_));                         \
    } while (0)
#define CF_DIM_NAMES(...) CF_DIM_NAMES_(__VA_ARGS__, , , , , , , )
#define CF_DIM_NAMES_(a, b, c, d, e, f, ...) #a, #b, #c, #d, #e, #f

/* elements a rows x cols matrix with row stride ld spans */
static size_t extent(int rows, int cols, int ld) {
    return rows <= 0 || cols <= 0 ? 0 : (size_t)(rows - 1) * (size_t)ld + (size_t)cols;
}

int cf_gemm_check(const char *op, int ta, int tb, int M, int N, int K, cf_view A, int lda,
                  cf_view B, int ldb, cf_view C, int ldc, cf_view bias) {
    DIMS(op, M, N, K);
    if (lda < (ta ? M : K) || ldb < (tb ? K : N) || ldc < N || lda < 0 || ldb < 0) {
        CF_ERROR("%s: M=%d N=%d K=%d (ta %d, tb %d) with lda %d, ldb %d, ldc %d: a leading "
                 "dimension is shorter than its row (lda >= %d, ldb >= %d, ldc >= %d)",
                 op, M, N, K, ta, tb, lda, ldb, ldc, ta ? M : K, tb ? K : N, N);
        return CF_ERR_INVALID;
    }
    CHECK(op, "A", A, CF_F32, extent(ta ? K : M, ta ? M : K, lda));
    CHECK(op, "B", B, CF_F32, extent(tb ? N : K, tb ? K : N, ldb));
    CHECK(op, "C", C, CF_F32, extent(M, N, ldc));
    CHECK_OPT(op, "bias", bias, CF_F32, (size_t)N);
    return CF_OK;
}

static size_t zmul(long long a, long long b) { return (size_t)a * (size_t)b; }

/* ---- wrappers ---------------------------------------------------------------------------- */

const char *cf_be_name(cf_backend *be) { return be->ops->name(be); }

int cf_be_alloc(cf_backend *be, size_t nbytes, cf_buffer **out) {
    *out = NULL;
#ifdef CF_FAULT_INJECTION
    if (cf_fault_alloc_hit()) {
        CF_ERROR("%s: allocation of %zu bytes failed (injected fault)", cf_be_name(be), nbytes);
        return CF_ERR_NOMEM;
    }
#endif
    if (nbytes == 0) nbytes = 4;
    int rc = be->ops->buffer_alloc(be, nbytes, out);
    if (rc < 0) return rc;
    (*out)->nbytes = nbytes;
    be->stats.allocs++;
    be->stats.bytes_allocated += nbytes;
    if (be->stats.bytes_allocated > be->stats.peak_bytes_allocated)
        be->stats.peak_bytes_allocated = be->stats.bytes_allocated;
    return CF_OK;
}

void cf_be_free(cf_backend *be, cf_buffer *buf) {
    if (!buf) return;
    be->stats.frees++;
    be->stats.bytes_allocated -= buf->nbytes;
    be->ops->buffer_free(be, buf);
}

/* a transfer of nbytes at the view's offset (any dtype; the offset aligned to it) */
static int transfer_check(const char *op, cf_view v, size_t nbytes) {
    if (!v.buf) {
        CF_ERROR("%s: the view has no buffer; pass a view of an allocated buffer", op);
        return CF_ERR_INVALID;
    }
    const size_t es = cf_dtype_size(v.dtype);
    return view_bytes_check(op, op[0] == 'u' ? "dst" : "src", v, nbytes, es ? nbytes / es : 0,
                            v.dtype);
}

int cf_be_upload(cf_backend *be, cf_view dst, const void *src, size_t nbytes) {
    CF_TRY(transfer_check("upload", dst, nbytes));
    if (nbytes == 0) return CF_OK;
    be->stats.h2d_bytes += nbytes;
    double t = prof_begin(be);
    return prof_end(be, "upload", t, nbytes, be->ops->upload(be, dst, src, nbytes));
}
int cf_be_download(cf_backend *be, void *dst, cf_view src, size_t nbytes) {
    CF_TRY(transfer_check("download", src, nbytes));
    if (nbytes == 0) return CF_OK;
    be->stats.d2h_bytes += nbytes;
    double t = prof_begin(be);
    return prof_end(be, "download", t, nbytes, be->ops->download(be, dst, src, nbytes));
}
int cf_be_copy(cf_backend *be, cf_view dst, cf_view src, size_t n) {
    /* f32 -> f32, f32 -> bf16/f16, bf16/f16 -> f32 */
    const int half_dst = dst.dtype == CF_BF16 || dst.dtype == CF_F16;
    CHECK("copy", "dst", dst, half_dst ? dst.dtype : CF_F32, n);
    const int half_src = !half_dst && (src.dtype == CF_BF16 || src.dtype == CF_F16);
    CHECK("copy", "src", src, half_src ? src.dtype : CF_F32, n);
    if (n == 0) return CF_OK;
    be->stats.kernel_launches++;
    double t = prof_begin(be);
    return prof_end(be, "copy", t, 0, be->ops->copy(be, dst, src, n));
}
int cf_be_fill(cf_backend *be, cf_view dst, float value, size_t n) {
    CHECK("fill", "dst", dst, CF_F32, n);
    if (n == 0) return CF_OK;
    be->stats.kernel_launches++;
    double t = prof_begin(be);
    return prof_end(be, "fill", t, 0, be->ops->fill(be, dst, value, n));
}
int cf_be_sync(cf_backend *be) { return be->ops->synchronize(be); }
int cf_be_host_alloc(cf_backend *be, size_t nbytes, void **ptr, void **handle) {
    *ptr = NULL;
    *handle = NULL;
    if (be->ops->host_alloc) return be->ops->host_alloc(be, nbytes ? nbytes : 1, ptr, handle);
    *ptr = malloc(nbytes ? nbytes : 1);
    return *ptr ? CF_OK : CF_ERR_NOMEM;
}
void cf_be_host_free(cf_backend *be, void *ptr, void *handle) {
    if (!ptr) return;
    if (be->ops->host_alloc && be->ops->host_free)
        be->ops->host_free(be, ptr, handle);
    else
        free(ptr);
}

static const cf_view none = {NULL, 0, CF_F32};

int cf_be_gemm(cf_backend *be, int ta, int tb, int M, int N, int K, float alpha, cf_view A,
               int lda, cf_view B, int ldb, float beta, cf_view C, int ldc) {
    if (M <= 0 || N <= 0) return CF_OK;
    CF_TRY(cf_gemm_check("gemm", ta, tb, M, N, K, A, lda, B, ldb, C, ldc, none));
    be->stats.kernel_launches++;
    double t = prof_begin(be);
    return prof_end_n(be, "gemm", t, 0, gemm_flops(M, N, K),
                      be->ops->gemm(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
}

/* the optional fused slots, each checked before the backend sees it */
static int op_gemm_bias(cf_backend *be, int ta, int tb, int M, int N, int K, float alpha, cf_view A,
                        int lda, cf_view B, int ldb, float beta, cf_view C, int ldc, cf_view bias) {
    CHECK("gemm_bias", "bias", bias, CF_F32, (size_t)(N > 0 ? N : 0));
    CF_TRY(cf_gemm_check("gemm_bias", ta, tb, M, N, K, A, lda, B, ldb, C, ldc, bias));
    be->stats.kernel_launches++;
    double t = prof_begin(be);
    return prof_end_n(
        be, "gemm", t, 0, gemm_flops(M, N, K),
        be->ops->gemm_bias(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias));
}

static int op_gemm_gelu(cf_backend *be, int ta, int tb, int M, int N, int K, cf_view A, int lda,
                        cf_view B, int ldb, cf_view C, cf_view bias, cf_view X, int backward) {
    if (backward && bias.buf) {
        CF_ERROR("gemm_gelu: argument 'bias' must be left out (NULL) in the backward form");
        return CF_ERR_INVALID;
    }
    CF_TRY(cf_gemm_check("gemm_gelu", ta, tb, M, N, K, A, lda, B, ldb, C, N, bias));
    CHECK("gemm_gelu", "X", X, CF_F32, extent(M, N, N));
    be->stats.kernel_launches++;
    double t = prof_begin(be);
    return prof_end_n(be, "gemm", t, 0, gemm_flops(M, N, K),
                      be->ops->gemm_gelu(be, ta, tb, M, N, K, A, lda, B, ldb, C, bias, X, backward));
}

static int op_add_bias(cf_backend *be, cf_view out, cf_view bias, int N, int OC) {
    DIMS("add_bias", N, OC);
    CHECK("add_bias", "out", out, CF_F32, zmul(N, OC));
    CHECK("add_bias", "bias", bias, CF_F32, (size_t)OC);
    be->stats.kernel_launches++;
    double t = prof_begin(be);
    return prof_end(be, "add_bias", t, 0, be->ops->add_bias(be, out, bias, N, OC));
}

static int op_bias_backward(cf_backend *be, cf_view dbias, cf_view dout, int N, int OC) {
    DIMS("bias_backward", N, OC);
    CHECK("bias_backward", "dbias", dbias, CF_F32, (size_t)OC);
    CHECK("bias_backward", "dout", dout, CF_F32, zmul(N, OC));
    be->stats.kernel_launches++;
    double t = prof_begin(be);
    return prof_end(be, "bias_backward", t, 0, be->ops->bias_backward(be, dbias, dout, N, OC));
}

static int op_weight_bias_backward(cf_backend *be, cf_view dweight, cf_view dbias, cf_view dout,
                                   cf_view inp, int N, int IC, int OC) {
    static const char op[] = "weight_bias_backward";
    DIMS(op, N, IC, OC);
    CHECK(op, "dweight", dweight, CF_F32, zmul(OC, IC));
    CHECK(op, "dbias", dbias, CF_F32, (size_t)OC);
    CHECK(op, "dout", dout, CF_F32, zmul(N, OC));
    CHECK(op, "inp", inp, CF_F32, zmul(N, IC));
    be->stats.kernel_launches++;
    double t = prof_begin(be);
    return prof_end_n(be, "gemm", t, 0, gemm_flops(OC, IC, N),
                      be->ops->weight_bias_backward(be, dweight, dbias, dout, inp, N, IC, OC));
}

int cf_be_matmul_forward(cf_backend *be, cf_view out, cf_view inp, cf_view weight, cf_view bias,
                         int N, int IC, int OC) {
    /* out(N,OC) = inp(N,IC) @ weight(OC,IC)^T */
    if (bias.buf && be->ops->gemm_bias && N > 0 && OC > 0)
        /* the bias is added as the product is stored: no second pass over out */
        return op_gemm_bias(be, 0, 1, N, OC, IC, 1.0f, inp, IC, weight, IC, 0.0f, out, OC, bias);
    CF_TRY(cf_be_gemm(be, 0, 1, N, OC, IC, 1.0f, inp, IC, weight, IC, 0.0f, out, OC));
    if (bias.buf) CF_TRY(op_add_bias(be, out, bias, N, OC));
    return CF_OK;
}

static int matmul_backward(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dbias,
                           cf_view dout, cf_view inp, cf_view weight, int N, int IC, int OC,
                           float dinp_beta) {
    /* dinp(N,IC) = dinp_beta * dinp + dout(N,OC) @ weight(OC,IC) */
    if (dinp.buf)
        CF_TRY(cf_be_gemm(be, 0, 0, N, IC, OC, 1.0f, dout, OC, weight, IC, dinp_beta, dinp, IC));
    /* dweight(OC,IC) += dout^T(OC,N) @ inp(N,IC), dbias(OC) += column sums of dout: one op where
     * the backend has it */
    if (dbias.buf && be->ops->weight_bias_backward)
        return op_weight_bias_backward(be, dweight, dbias, dout, inp, N, IC, OC);
    CF_TRY(cf_be_gemm(be, 1, 0, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC));
    if (dbias.buf) CF_TRY(op_bias_backward(be, dbias, dout, N, OC));
    return CF_OK;
}

int cf_be_matmul_backward(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dbias,
                          cf_view dout, cf_view inp, cf_view weight, int N, int IC, int OC) {
    return matmul_backward(be, dinp, dweight, dbias, dout, inp, weight, N, IC, OC, 1.0f);
}

int cf_be_matmul_backward_set(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dbias,
                              cf_view dout, cf_view inp, cf_view weight, int N, int IC, int OC) {
    return matmul_backward(be, dinp, dweight, dbias, dout, inp, weight, N, IC, OC, 0.0f);
}

int cf_be_matmul_gelu_forward(cf_backend *be, cf_view pre, cf_view act, cf_view inp,
                              cf_view weight, cf_view bias, int N, int IC, int OC) {
    if (be->ops->gemm_gelu && N > 0 && OC > 0)
        /* pre(N,OC) = inp(N,IC) @ weight(OC,IC)^T + bias, act = gelu(pre), as pre is stored */
        return op_gemm_gelu(be, 0, 1, N, OC, IC, inp, IC, weight, IC, pre, bias, act, 0);
    CF_TRY(cf_be_matmul_forward(be, pre, inp, weight, bias, N, IC, OC));
    return cf_be_gelu_forward(be, act, pre, (size_t)N * OC);
}

int cf_be_matmul_gelu_backward_set(cf_backend *be, cf_view dpre, cf_view dweight, cf_view dbias,
                                   cf_view dout, cf_view inp, cf_view weight, cf_view pre, int N,
                                   int IC, int OC) {
    if (!be->ops->gemm_gelu || N <= 0 || IC <= 0) {
        CF_TRY(matmul_backward(be, dpre, dweight, dbias, dout, inp, weight, N, IC, OC, 0.0f));
        return cf_be_gelu_backward(be, dpre, pre, dpre, (size_t)N * IC);
    }
    /* dpre(N,IC) = (dout(N,OC) @ weight(OC,IC)) * gelu'(pre), as dpre is stored */
    CF_TRY(op_gemm_gelu(be, 0, 0, N, IC, OC, dout, OC, weight, IC, dpre, none, pre, 1));
    /* then dweight and dbias (no dinp: done above) */
    return matmul_backward(be, none, dweight, dbias, dout, inp, weight, N, IC, OC, 0.0f);
}

#define CF_DISPATCH(op, ...)                                                                       \
    do {                                                                                           \
        be->stats.kernel_launches++;                                                               \
        double t_ = prof_begin(be);                                                                \
        return prof_end(be, #op, t_, 0, be->ops->op(be, __VA_ARGS__));                             \
    } while (0)

int cf_be_encoder_forward(cf_backend *be, cf_view out, cf_view tokens, cf_view wte, cf_view wpe,
                          int B, int T, int C, int V) {
    static const char op[] = "encoder_forward";
    DIMS(op, B, T, C);
    if (V <= 0) {
        CF_ERROR("%s: V = %d: the embedding table needs at least one row", op, V);
        return CF_ERR_INVALID;
    }
    const size_t BT = zmul(B, T);
    CHECK(op, "out", out, CF_F32, BT * (size_t)C);
    CHECK(op, "tokens", tokens, CF_I32, BT);
    CHECK(op, "wte", wte, CF_F32, zmul(V, C));
    CHECK_OPT(op, "wpe", wpe, CF_F32, zmul(T, C)); /* optional: no position table */
    CF_DISPATCH(encoder_forward, out, tokens, wte, wpe, B, T, C, V);
}
int cf_be_encoder_backward(cf_backend *be, cf_view dwte, cf_view dwpe, cf_view dout, cf_view tokens,
                           int B, int T, int C, int V) {
    static const char op[] = "encoder_backward";
    DIMS(op, B, T, C);
    if (V <= 0) {
        CF_ERROR("%s: V = %d: the embedding table needs at least one row", op, V);
        return CF_ERR_INVALID;
    }
    const size_t BT = zmul(B, T);
    CHECK(op, "dwte", dwte, CF_F32, zmul(V, C));
    CHECK_OPT(op, "dwpe", dwpe, CF_F32, zmul(T, C));
    CHECK(op, "dout", dout, CF_F32, BT * (size_t)C);
    CHECK(op, "tokens", tokens, CF_I32, BT);
    CF_DISPATCH(encoder_backward, dwte, dwpe, dout, tokens, B, T, C, V);
}
/* a norm's eps: positive and finite */
static int eps_check(const char *op, float eps) {
    if (!(eps > 0.0f) || eps > 1e30f) {
        CF_ERROR("%s: argument 'eps' = %g must be positive and finite", op, (double)eps);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}

int cf_be_layernorm_forward(cf_backend *be, cf_view out, cf_view mean, cf_view rstd, cf_view inp,
                            cf_view weight, cf_view bias, int N, int C, float eps) {
    static const char op[] = "layernorm_forward";
    DIMS(op, N, C);
    CF_TRY(eps_check(op, eps));
    CHECK(op, "out", out, CF_F32, zmul(N, C));
    CHECK(op, "inp", inp, CF_F32, zmul(N, C));
    CHECK(op, "weight", weight, CF_F32, (size_t)C);
    CHECK_OPT(op, "bias", bias, CF_F32, (size_t)C); /* optional: no bias */
    /* mean and rstd may be left out (NULL buffer) when no backward follows */
    CHECK_OPT(op, "mean", mean, CF_F32, (size_t)N);
    CHECK_OPT(op, "rstd", rstd, CF_F32, (size_t)N);
    CF_DISPATCH(layernorm_forward, out, mean, rstd, inp, weight, bias, N, C, eps);
}
int cf_be_layernorm_backward(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dbias,
                             cf_view dout, cf_view inp, cf_view weight, cf_view mean,
                             cf_view rstd, int N, int C) {
    static const char op[] = "layernorm_backward";
    DIMS(op, N, C);
    CHECK(op, "dinp", dinp, CF_F32, zmul(N, C));
    CHECK(op, "dweight", dweight, CF_F32, (size_t)C);
    CHECK_OPT(op, "dbias", dbias, CF_F32, (size_t)C); /* optional: no bias */
    CHECK(op, "dout", dout, CF_F32, zmul(N, C));
    CHECK(op, "inp", inp, CF_F32, zmul(N, C));
    CHECK(op, "weight", weight, CF_F32, (size_t)C);
    CHECK(op, "mean", mean, CF_F32, (size_t)N);
    CHECK(op, "rstd", rstd, CF_F32, (size_t)N);
    CF_DISPATCH(layernorm_backward, dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

/* NH query heads over KVH key/value heads of hs each: KVH divides NH */
static int heads_check(const char *op, int B, int T, int NH, int KVH, int hs) {
    DIMS(op, B, T);
    if (NH <= 0 || KVH <= 0 || hs <= 0 || NH % KVH != 0) {
        CF_ERROR("%s: arguments NH = %d query heads, 'KVH' = %d key/value heads, hs = %d: all "
                 "must be positive and KVH must divide NH",
                 op, NH, KVH, hs);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}
int cf_be_attention_forward(cf_backend *be, cf_view out, cf_view att, cf_view qkv, int B, int T,
                            int NH, int KVH, int hs) {
    static const char op[] = "attention_forward";
    CF_TRY(heads_check(op, B, T, NH, KVH, hs));
    const size_t BT = zmul(B, T), bhtt = zmul(B, NH) * zmul(T, T);
    CHECK(op, "out", out, CF_F32, BT * zmul(NH, hs));
    CHECK(op, "att", att, CF_F32, bhtt);
    CHECK(op, "qkv", qkv, CF_F32, BT * zmul(NH + 2 * KVH, hs));
    CF_DISPATCH(attention_forward, out, att, qkv, B, T, NH, KVH, hs);
}
/* dqkv(B,T,QKV) is assigned, not accumulated (see backend.h) */
int cf_be_attention_backward(cf_backend *be, cf_view dqkv, cf_view datt, cf_view dpreatt,
                             cf_view dout, cf_view qkv, cf_view att, int B, int T, int NH, int KVH,
                             int hs) {
    static const char op[] = "attention_backward";
    CF_TRY(heads_check(op, B, T, NH, KVH, hs));
    const size_t BT = zmul(B, T), bhtt = zmul(B, NH) * zmul(T, T);
    const size_t nqkv = BT * zmul(NH + 2 * KVH, hs);
    CHECK(op, "dqkv", dqkv, CF_F32, nqkv);
    CHECK(op, "datt", datt, CF_F32, bhtt);
    CHECK(op, "dpreatt", dpreatt, CF_F32, bhtt);
    CHECK(op, "dout", dout, CF_F32, BT * zmul(NH, hs));
    CHECK(op, "qkv", qkv, CF_F32, nqkv);
    CHECK(op, "att", att, CF_F32, bhtt);
    CF_DISPATCH(attention_backward, dqkv, datt, dpreatt, dout, qkv, att, B, T, NH, KVH, hs);
}
static int flash_check(const char *op, const cf_attn_desc *d) {
    if (!d) {
        CF_ERROR("%s: argument 'd' (the attention descriptor) is NULL", op);
        return CF_ERR_INVALID;
    }
    CF_TRY(heads_check(op, d->B, d->T, d->NH, d->KVH, d->hs));
    if (d->window < 0) {
        CF_ERROR("%s: window = %d must be 0 (full causal) or a positive number of keys", op,
                 d->window);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}
int cf_be_has_flash(cf_backend *be) {
    return be && be->ops->flash_forward && be->ops->flash_backward;
}
int cf_be_flash_forward(cf_backend *be, const cf_attn_desc *d, cf_view out, cf_view lse,
                        cf_view qkv, cf_view doc) {
    static const char op[] = "flash_forward";
    CF_TRY(flash_check(op, d));
    const size_t BT = zmul(d->B, d->T);
    CHECK(op, "out", out, CF_F32, BT * zmul(d->NH, d->hs));
    CHECK(op, "lse", lse, CF_F32, BT * (size_t)d->NH);
    CHECK(op, "qkv", qkv, CF_F32, BT * zmul(d->NH + 2 * d->KVH, d->hs));
    CHECK_OPT(op, "doc", doc, CF_I32, BT);
    if (!be->ops->flash_forward) {
        CF_ERROR("%s: backend '%s' has no flash attention; use attention: matrix", op,
                 cf_be_name(be));
        return CF_ERR_UNSUPPORTED;
    }
    CF_DISPATCH(flash_forward, d, out, lse, qkv, doc);
}
int cf_be_flash_backward(cf_backend *be, const cf_attn_desc *d, cf_view dqkv, cf_view delta,
                         cf_view dout, cf_view out, cf_view lse, cf_view qkv, cf_view doc) {
    static const char op[] = "flash_backward";
    CF_TRY(flash_check(op, d));
    const size_t BT = zmul(d->B, d->T), nqkv = BT * zmul(d->NH + 2 * d->KVH, d->hs);
    CHECK(op, "dqkv", dqkv, CF_F32, nqkv);
    CHECK(op, "delta", delta, CF_F32, BT * (size_t)d->NH);
    CHECK(op, "dout", dout, CF_F32, BT * zmul(d->NH, d->hs));
    CHECK(op, "out", out, CF_F32, BT * zmul(d->NH, d->hs));
    CHECK(op, "lse", lse, CF_F32, BT * (size_t)d->NH);
    CHECK(op, "qkv", qkv, CF_F32, nqkv);
    CHECK_OPT(op, "doc", doc, CF_I32, BT);
    if (!be->ops->flash_backward) {
        CF_ERROR("%s: backend '%s' has no flash attention; use attention: matrix", op,
                 cf_be_name(be));
        return CF_ERR_UNSUPPORTED;
    }
    CF_DISPATCH(flash_backward, d, dqkv, delta, dout, out, lse, qkv, doc);
}
const char *cf_act_name(enum cf_act act) {
    switch (act) {
    case CF_ACT_GELU: return "gelu";
    case CF_ACT_RELU2: return "relu2";
    case CF_ACT_SILU: return "silu";
    case CF_ACT_COUNT: break;
    }
    return "?";
}

static int act_check(const char *op, enum cf_act act) {
    if ((int)act < 0 || act >= CF_ACT_COUNT) {
        CF_ERROR("%s: argument 'activation' = %d is not one of enum cf_act (gelu, relu2, silu)", op, (int)act);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}

int cf_be_act_forward(cf_backend *be, enum cf_act act, cf_view out, cf_view inp, size_t n) {
    static const char op[] = "act_forward";
    CF_TRY(act_check(op, act));
    CHECK(op, "out", out, CF_F32, n);
    CHECK(op, "inp", inp, CF_F32, n);
    CF_DISPATCH(act_forward, act, out, inp, n);
}
int cf_be_act_backward(cf_backend *be, enum cf_act act, cf_view dinp, cf_view inp, cf_view dout,
                       size_t n) {
    static const char op[] = "act_backward";
    CF_TRY(act_check(op, act));
    CHECK(op, "dinp", dinp, CF_F32, n);
    CHECK(op, "inp", inp, CF_F32, n);
    CHECK(op, "dout", dout, CF_F32, n);
    CF_DISPATCH(act_backward, act, dinp, inp, dout, n);
}
int cf_be_gelu_forward(cf_backend *be, cf_view out, cf_view inp, size_t n) {
    return cf_be_act_forward(be, CF_ACT_GELU, out, inp, n);
}
int cf_be_gelu_backward(cf_backend *be, cf_view dinp, cf_view inp, cf_view dout, size_t n) {
    return cf_be_act_backward(be, CF_ACT_GELU, dinp, inp, dout, n);
}
int cf_be_swiglu_forward(cf_backend *be, cf_view out, cf_view inp, int N, int F) {
    static const char op[] = "swiglu_forward";
    DIMS(op, N, F);
    CHECK(op, "out", out, CF_F32, zmul(N, F));
    CHECK(op, "inp", inp, CF_F32, 2 * zmul(N, F));
    CF_DISPATCH(swiglu_forward, out, inp, N, F);
}
int cf_be_swiglu_backward(cf_backend *be, cf_view dinp, cf_view inp, cf_view dout, int N, int F) {
    static const char op[] = "swiglu_backward";
    DIMS(op, N, F);
    CHECK(op, "dinp", dinp, CF_F32, 2 * zmul(N, F));
    CHECK(op, "inp", inp, CF_F32, 2 * zmul(N, F));
    CHECK(op, "dout", dout, CF_F32, zmul(N, F));
    CF_DISPATCH(swiglu_backward, dinp, inp, dout, N, F);
}

/* N rows of stride ld, each with G groups of C elements from column 0 */
static int groups_check(const char *op, int N, int G, int C, int ld) {
    DIMS(op, N, G, C, ld);
    if ((long long)G * C > ld) {
        CF_ERROR("%s: G = %d groups of C = %d elements do not fit a row of 'ld' = %d elements; "
                 "ld >= G*C",
                 op, G, C, ld);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}
int cf_be_rmsnorm_forward(cf_backend *be, cf_view out, cf_view rstd, cf_view inp, cf_view weight,
                          int N, int G, int C, int ld, float eps) {
    static const char op[] = "rmsnorm_forward";
    CF_TRY(groups_check(op, N, G, C, ld));
    CF_TRY(eps_check(op, eps));
    const size_t ext = extent(N, G * C, ld);
    CHECK(op, "out", out, CF_F32, ext);
    CHECK(op, "inp", inp, CF_F32, ext);
    CHECK(op, "weight", weight, CF_F32, (size_t)C);
    /* rstd may be left out (NULL buffer) when no backward follows */
    CHECK_OPT(op, "rstd", rstd, CF_F32, zmul(N, G));
    CF_DISPATCH(rmsnorm_forward, out, rstd, inp, weight, N, G, C, ld, eps);
}
int cf_be_rmsnorm_backward(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dout,
                           cf_view inp, cf_view weight, cf_view rstd, int N, int G, int C, int ld,
                           int accumulate) {
    static const char op[] = "rmsnorm_backward";
    CF_TRY(groups_check(op, N, G, C, ld));
    if (accumulate != 0 && accumulate != 1) {
        CF_ERROR("%s: argument 'accumulate' = %d must be 0 (assign dinp) or 1 (add to it)", op, accumulate);
        return CF_ERR_INVALID;
    }
    const size_t ext = extent(N, G * C, ld);
    CHECK(op, "dinp", dinp, CF_F32, ext);
    CHECK(op, "dweight", dweight, CF_F32, (size_t)C);
    CHECK(op, "dout", dout, CF_F32, ext);
    CHECK(op, "inp", inp, CF_F32, ext);
    CHECK(op, "weight", weight, CF_F32, (size_t)C);
    CHECK(op, "rstd", rstd, CF_F32, zmul(N, G));
    CF_DISPATCH(rmsnorm_backward, dinp, dweight, dout, inp, weight, rstd, N, G, C, ld, accumulate);
}
int cf_be_rope(cf_backend *be, cf_view x, cf_view cs, int B, int T, int H, int hs, int ld,
               int pos0, int inverse) {
    static const char op[] = "rope";
    DIMS(op, B, T, H, hs, ld, pos0);
    if (hs % 2 != 0) {
        CF_ERROR("%s: head size 'hs' = %d must be even (RoPE rotates pairs (i, i + hs/2))", op, hs);
        return CF_ERR_INVALID;
    }
    if ((long long)H * hs > ld) {
        CF_ERROR("%s: H = %d heads of hs = %d do not fit a row of 'ld' = %d elements; ld >= H*hs",
                 op, H, hs, ld);
        return CF_ERR_INVALID;
    }
    if (inverse != 0 && inverse != 1) {
        CF_ERROR("%s: argument 'inverse' = %d must be 0 (rotate) or 1 (the transposed rotation)", op,
                 inverse);
        return CF_ERR_INVALID;
    }
    CHECK(op, "x", x, CF_F32, extent(B * T, H * hs, ld));
    /* positions pos0 .. pos0 + T - 1: the table needs pos0 + T rows of hs/2 (cos, sin) pairs */
    CHECK(op, "cs", cs, CF_F32, T > 0 && hs > 0 ? zmul(pos0 + T, hs) : 0);
    CF_DISPATCH(rope, x, cs, B, T, H, hs, ld, pos0, inverse);
}
int cf_be_residual_forward(cf_backend *be, cf_view out, cf_view a, cf_view b, size_t n) {
    CHECK("residual_forward", "out", out, CF_F32, n);
    CHECK("residual_forward", "a", a, CF_F32, n);
    CHECK("residual_forward", "b", b, CF_F32, n);
    CF_DISPATCH(residual_forward, out, a, b, n);
}
int cf_be_axpy(cf_backend *be, cf_view y, cf_view x, float alpha, size_t n) {
    CHECK("axpy", "y", y, CF_F32, n);
    CHECK("axpy", "x", x, CF_F32, n);
    CF_DISPATCH(axpy, y, x, alpha, n);
}
/* the logit soft-cap: 0 (off) or positive and finite */
static int softcap_check(const char *op, float softcap) {
    if (!(softcap >= 0.0f) || softcap > 1e30f) {
        CF_ERROR("%s: argument 'softcap' = %g must be 0 (off) or positive and finite", op, (double)softcap);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}

int cf_be_crossentropy_forward(cf_backend *be, cf_view losses, cf_view logits, cf_view targets,
                               int N, int V, float softcap) {
    static const char op[] = "crossentropy_forward";
    DIMS(op, N, V);
    CF_TRY(softcap_check(op, softcap));
    CHECK(op, "losses", losses, CF_F32, (size_t)N);
    CHECK(op, "logits", logits, CF_F32, zmul(N, V));
    CHECK(op, "targets", targets, CF_I32, (size_t)N);
    CF_DISPATCH(crossentropy_forward, losses, logits, targets, N, V, softcap);
}
int cf_be_crossentropy_fused(cf_backend *be, cf_view losses, cf_view dlogits, cf_view logits,
                             cf_view targets, int N, int V, float dloss, float softcap) {
    static const char op[] = "crossentropy_fused";
    DIMS(op, N, V);
    CF_TRY(softcap_check(op, softcap));
    CHECK(op, "losses", losses, CF_F32, (size_t)N);
    CHECK(op, "dlogits", dlogits, CF_F32, zmul(N, V));
    CHECK(op, "logits", logits, CF_F32, zmul(N, V));
    CHECK(op, "targets", targets, CF_I32, (size_t)N);
    CF_DISPATCH(crossentropy_fused, losses, dlogits, logits, targets, N, V, dloss, softcap);
}
int cf_be_reduce_sum(cf_backend *be, cf_view out, cf_view x, size_t n, int square) {
    CHECK("reduce_sum", "out", out, CF_F32, 1);
    CHECK("reduce_sum", "x", x, CF_F32, n);
    CF_DISPATCH(reduce_sum, out, x, n, square);
}
int cf_be_adamw(cf_backend *be, cf_view params, cf_view grads, cf_view m, cf_view v, size_t n,
                float lr, float beta1, float beta2, float eps, float weight_decay,
                float grad_scale, int t) {
    if (t < 1) {
        CF_ERROR("adamw: step t=%d must be >= 1 (bias correction divides by 1 - beta^t)", t);
        return CF_ERR_INVALID;
    }
    CHECK("adamw", "params", params, CF_F32, n);
    CHECK("adamw", "grads", grads, CF_F32, n);
    CHECK("adamw", "m", m, CF_F32, n);
    CHECK("adamw", "v", v, CF_F32, n);
    CF_DISPATCH(adamw, params, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, t);
}

/* ---- Muon's element-wise ops ---------------------------------------------------------------- */

int cf_be_muon_momentum(cf_backend *be, cf_view buf, cf_view grads, cf_view out, size_t n,
                        float beta, float grad_scale) {
    static const char op[] = "muon_momentum";
    if (!(beta >= 0.0f && beta < 1.0f)) {
        CF_ERROR("%s: argument 'beta' = %g must be in [0, 1)", op, (double)beta);
        return CF_ERR_INVALID;
    }
    CHECK(op, "buf", buf, CF_F32, n);
    CHECK(op, "grads", grads, CF_F32, n);
    CHECK(op, "out", out, CF_F32, n);
    if (n > 0 && out.buf == buf.buf && out.off < buf.off + n * sizeof(float) &&
        buf.off < out.off + n * sizeof(float)) {
        CF_ERROR("%s: argument 'out' must not alias 'buf' (it may alias 'grads')", op);
        return CF_ERR_INVALID;
    }
    CF_DISPATCH(muon_momentum, buf, grads, out, n, beta, grad_scale);
}
int cf_be_scale_rnorm(cf_backend *be, cf_view x, cf_view sumsq, size_t n, float eps) {
    static const char op[] = "scale_rnorm";
    if (!(eps > 0.0f) || eps > 1e30f) {
        CF_ERROR("%s: argument 'eps' = %g must be positive and finite", op, (double)eps);
        return CF_ERR_INVALID;
    }
    CHECK(op, "x", x, CF_F32, n);
    CHECK(op, "sumsq", sumsq, CF_F32, 1);
    CF_DISPATCH(scale_rnorm, x, sumsq, n, eps);
}
int cf_be_axpby(cf_backend *be, cf_view y, cf_view x, float alpha, float beta, size_t n) {
    CHECK("axpby", "y", y, CF_F32, n);
    CHECK("axpby", "x", x, CF_F32, n);
    CF_DISPATCH(axpby, y, x, alpha, beta, n);
}

/* ---- inference ops ------------------------------------------------------------------------ */

static int infer_slot_check(cf_backend *be, const char *op, int present) {
    if (present) return CF_OK;
    CF_ERROR("%s: backend %s does not implement this op (backend API %d); use --device cpu", op,
             cf_be_name(be), CF_BACKEND_API_VERSION);
    return CF_ERR_UNSUPPORTED;
}
static int cache_check(const char *op, int B, int Tq, int NH, int KVH, int hs, int S) {
    CF_TRY(heads_check(op, B, Tq, NH, KVH, hs));
    if (S <= 0 || Tq > S) {
        CF_ERROR("%s: the cache holds 'S' = %d positions per sequence; it must be positive and "
                 "at least Tq = %d",
                 op, S, Tq);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}
int cf_be_kv_append(cf_backend *be, cf_view qkv, cf_view kc, cf_view vc, cf_view cs, cf_view pos,
                    int B, int Tq, int NH, int KVH, int hs, int S) {
    static const char op[] = "kv_append";
    CF_TRY(infer_slot_check(be, op, be->ops->kv_append != NULL));
    CF_TRY(cache_check(op, B, Tq, NH, KVH, hs, S));
    if (cs.buf && hs % 2 != 0) {
        CF_ERROR("%s: head size 'hs' = %d must be even with RoPE (pairs (i, i + hs/2))", op, hs);
        return CF_ERR_INVALID;
    }
    const size_t cache = zmul(B, S) * zmul(KVH, hs);
    CHECK(op, "qkv", qkv, CF_F32, zmul(B, Tq) * zmul(NH + 2 * KVH, hs));
    CHECK(op, "kc", kc, CF_F32, cache);
    CHECK(op, "vc", vc, CF_F32, cache);
    CHECK_OPT(op, "cs", cs, CF_F32, zmul(S, hs));
    CHECK(op, "pos", pos, CF_I32, (size_t)B);
    CF_DISPATCH(kv_append, qkv, kc, vc, cs, pos, B, Tq, NH, KVH, hs, S);
}
int cf_be_decode_attention(cf_backend *be, cf_view out, cf_view qkv, cf_view kc, cf_view vc,
                           cf_view pos, cf_view lo, int B, int Tq, int NH, int KVH, int hs, int S) {
    static const char op[] = "decode_attention";
    CF_TRY(infer_slot_check(be, op, be->ops->decode_attention != NULL));
    CF_TRY(cache_check(op, B, Tq, NH, KVH, hs, S));
    const size_t cache = zmul(B, S) * zmul(KVH, hs);
    CHECK(op, "out", out, CF_F32, zmul(B, Tq) * zmul(NH, hs));
    CHECK(op, "qkv", qkv, CF_F32, zmul(B, Tq) * zmul(NH + 2 * KVH, hs));
    CHECK(op, "kc", kc, CF_F32, cache);
    CHECK(op, "vc", vc, CF_F32, cache);
    CHECK(op, "pos", pos, CF_I32, (size_t)B);
    CHECK_OPT(op, "lo", lo, CF_I32, zmul(B, Tq));
    CF_DISPATCH(decode_attention, out, qkv, kc, vc, pos, lo, B, Tq, NH, KVH, hs, S);
}
int cf_be_gemm_q8(cf_backend *be, int M, int N, int K, cf_view A, int lda, cf_view W8,
                  cf_view scale, cf_view bias, cf_view C, int ldc) {
    static const char op[] = "gemm_q8";
    CF_TRY(infer_slot_check(be, op, be->ops->gemm_q8 != NULL));
    DIMS(op, M, N, K);
    if (lda < K || ldc < N) {
        CF_ERROR("%s: M=%d N=%d K=%d with lda %d, ldc %d: lda must be >= K and ldc >= N", op, M, N,
                 K, lda, ldc);
        return CF_ERR_INVALID;
    }
    CHECK(op, "A", A, CF_F32, extent(M, K, lda));
    CHECK(op, "W8", W8, CF_I8, zmul(N, K));
    CHECK(op, "scale", scale, CF_F32, (size_t)N);
    CHECK_OPT(op, "bias", bias, CF_F32, (size_t)N);
    CHECK(op, "C", C, CF_F32, extent(M, N, ldc));
    CF_DISPATCH(gemm_q8, M, N, K, A, lda, W8, scale, bias, C, ldc);
}
int cf_be_embed_q8(cf_backend *be, cf_view out, cf_view ids, cf_view W8, cf_view scale, int N,
                   int C, int V, int accumulate) {
    static const char op[] = "embed_q8";
    CF_TRY(infer_slot_check(be, op, be->ops->embed_q8 != NULL));
    if (N <= 0 || C <= 0 || V <= 0) {
        CF_ERROR("%s: N=%d rows of C=%d from a table of V=%d rows: all must be positive", op, N, C,
                 V);
        return CF_ERR_INVALID;
    }
    CHECK(op, "out", out, CF_F32, zmul(N, C));
    CHECK(op, "ids", ids, CF_I32, (size_t)N);
    CHECK(op, "W8", W8, CF_I8, zmul(V, C));
    CHECK(op, "scale", scale, CF_F32, (size_t)V);
    CF_DISPATCH(embed_q8, out, ids, W8, scale, N, C, V, accumulate != 0);
}
