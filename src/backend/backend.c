/* clformer: backend registry, options, checked wrappers around struct cf_backend_ops, fault
 * injection (test builds). */
#define _POSIX_C_SOURCE 200809L
#include "backend/backend.h"
#ifdef CF_HAVE_OPENCL
#include "backend/opencl/cl_backend.h"
#endif

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- fault injection (test builds only) --------------------------------------------------- */

#ifdef CF_FAULT_INJECTION
static int g_fault_alloc = 0, g_fault_build = 0, g_fault_clblast = 0, g_fault_save_crash = 0;

void cf_fault_set_alloc(int nth) { g_fault_alloc = nth; }
void cf_fault_set_build(int nth) { g_fault_build = nth; }
void cf_fault_set_clblast(int nth) { g_fault_clblast = nth; }
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

/* ---- registry ---------------------------------------------------------------------------- */

static const cf_backend_reg registry[] = {
    {/* .name = */ "cpu", /* .create = */ cf_backend_cpu_create,
     /* .list_devices = */ cf_backend_cpu_list_devices},
#ifdef CF_HAVE_OPENCL
    {/* .name = */ "opencl", /* .create = */ cf_backend_opencl_create,
     /* .list_devices = */ cf_opencl_list_devices},
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
    if (strcasecmp(spec, "auto") == 0) {
        /* the best usable GPU of the device backends; each says why not (a one-line warning) */
        for (int i = 0; i < N_REGISTRY; i++) {
            if (&registry[i] == cpu) continue;
            if (create_row(&registry[i], "auto", opts, out) == CF_OK) return CF_OK;
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

static int prof_end(cf_backend *be, const char *op, double t_start, uint64_t bytes, int rc) {
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
    return rc;
}

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

int cf_be_upload(cf_backend *be, cf_view dst, const void *src, size_t nbytes) {
    be->stats.h2d_bytes += nbytes;
    double t = prof_begin(be);
    return prof_end(be, "upload", t, nbytes, be->ops->upload(be, dst, src, nbytes));
}
int cf_be_download(cf_backend *be, void *dst, cf_view src, size_t nbytes) {
    be->stats.d2h_bytes += nbytes;
    double t = prof_begin(be);
    return prof_end(be, "download", t, nbytes, be->ops->download(be, dst, src, nbytes));
}
int cf_be_copy(cf_backend *be, cf_view dst, cf_view src, size_t n) {
    if (n == 0) return CF_OK;
    be->stats.kernel_launches++;
    double t = prof_begin(be);
    return prof_end(be, "copy", t, 0, be->ops->copy(be, dst, src, n));
}
int cf_be_fill(cf_backend *be, cf_view dst, float value, size_t n) {
    if (n == 0) return CF_OK;
    be->stats.kernel_launches++;
    double t = prof_begin(be);
    return prof_end(be, "fill", t, 0, be->ops->fill(be, dst, value, n));
}
int cf_be_sync(cf_backend *be) { return be->ops->synchronize(be); }

int cf_be_gemm(cf_backend *be, int ta, int tb, int M, int N, int K, float alpha, cf_view A,
               int lda, cf_view B, int ldb, float beta, cf_view C, int ldc) {
    if (M <= 0 || N <= 0) return CF_OK;
    CF_ASSERT(K >= 0 && A.buf && B.buf && C.buf);
    CF_ASSERT(ldc >= N && lda >= (ta ? M : K) && ldb >= (tb ? K : N));
    be->stats.kernel_launches++;
    double t = prof_begin(be);
    return prof_end(be, "gemm", t, 0,
                    be->ops->gemm(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
}

int cf_be_matmul_forward(cf_backend *be, cf_view out, cf_view inp, cf_view weight, cf_view bias,
                         int N, int IC, int OC) {
    /* out(N,OC) = inp(N,IC) @ weight(OC,IC)^T */
    if (bias.buf && be->ops->gemm_bias && N > 0 && OC > 0) {
        /* the bias is added as the product is stored: no second pass over out */
        CF_ASSERT(IC >= 0 && inp.buf && weight.buf && out.buf);
        be->stats.kernel_launches++;
        double t = prof_begin(be);
        return prof_end(be, "gemm", t, 0,
                        be->ops->gemm_bias(be, 0, 1, N, OC, IC, 1.0f, inp, IC, weight, IC, 0.0f,
                                           out, OC, bias));
    }
    CF_TRY(cf_be_gemm(be, 0, 1, N, OC, IC, 1.0f, inp, IC, weight, IC, 0.0f, out, OC));
    if (bias.buf) {
        be->stats.kernel_launches++;
        double t = prof_begin(be);
        CF_TRY(prof_end(be, "add_bias", t, 0, be->ops->add_bias(be, out, bias, N, OC)));
    }
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
    if (dbias.buf && be->ops->weight_bias_backward) {
        CF_ASSERT(dweight.buf && dout.buf && inp.buf);
        be->stats.kernel_launches++;
        double t = prof_begin(be);
        return prof_end(be, "gemm", t, 0,
                        be->ops->weight_bias_backward(be, dweight, dbias, dout, inp, N, IC, OC));
    }
    CF_TRY(cf_be_gemm(be, 1, 0, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC));
    if (dbias.buf) {
        be->stats.kernel_launches++;
        double t = prof_begin(be);
        CF_TRY(prof_end(be, "bias_backward", t, 0, be->ops->bias_backward(be, dbias, dout, N, OC)));
    }
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
    if (be->ops->gemm_gelu && N > 0 && OC > 0) {
        /* pre(N,OC) = inp(N,IC) @ weight(OC,IC)^T + bias, act = gelu(pre), as pre is stored */
        CF_ASSERT(IC >= 0 && inp.buf && weight.buf && pre.buf && act.buf);
        be->stats.kernel_launches++;
        double t = prof_begin(be);
        return prof_end(be, "gemm", t, 0,
                        be->ops->gemm_gelu(be, 0, 1, N, OC, IC, inp, IC, weight, IC, pre, bias,
                                           act, 0));
    }
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
    CF_ASSERT(OC >= 0 && dout.buf && weight.buf && dpre.buf && pre.buf);
    be->stats.kernel_launches++;
    double t = prof_begin(be);
    const cf_view none = {0};
    CF_TRY(prof_end(be, "gemm", t, 0,
                    be->ops->gemm_gelu(be, 0, 0, N, IC, OC, dout, OC, weight, IC, dpre, none, pre,
                                       1)));
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
                          int B, int T, int C) {
    CF_DISPATCH(encoder_forward, out, tokens, wte, wpe, B, T, C);
}
int cf_be_encoder_backward(cf_backend *be, cf_view dwte, cf_view dwpe, cf_view dout,
                           cf_view tokens, int B, int T, int C) {
    CF_DISPATCH(encoder_backward, dwte, dwpe, dout, tokens, B, T, C);
}
int cf_be_layernorm_forward(cf_backend *be, cf_view out, cf_view mean, cf_view rstd, cf_view inp,
                            cf_view weight, cf_view bias, int N, int C) {
    CF_DISPATCH(layernorm_forward, out, mean, rstd, inp, weight, bias, N, C);
}
int cf_be_layernorm_backward(cf_backend *be, cf_view dinp, cf_view dweight, cf_view dbias,
                             cf_view dout, cf_view inp, cf_view weight, cf_view mean,
                             cf_view rstd, int N, int C) {
    CF_DISPATCH(layernorm_backward, dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}
int cf_be_attention_forward(cf_backend *be, cf_view out, cf_view att, cf_view qkv, int B, int T,
                            int C, int NH) {
    CF_ASSERT(NH > 0 && C % NH == 0);
    CF_DISPATCH(attention_forward, out, att, qkv, B, T, C, NH);
}
/* dqkv(B,T,3C) is assigned, not accumulated (see backend.h) */
int cf_be_attention_backward(cf_backend *be, cf_view dqkv, cf_view datt, cf_view dpreatt,
                             cf_view dout, cf_view qkv, cf_view att, int B, int T, int C, int NH) {
    CF_ASSERT(NH > 0 && C % NH == 0);
    CF_DISPATCH(attention_backward, dqkv, datt, dpreatt, dout, qkv, att, B, T, C, NH);
}
int cf_be_gelu_forward(cf_backend *be, cf_view out, cf_view inp, size_t n) {
    CF_DISPATCH(gelu_forward, out, inp, n);
}
int cf_be_gelu_backward(cf_backend *be, cf_view dinp, cf_view inp, cf_view dout, size_t n) {
    CF_DISPATCH(gelu_backward, dinp, inp, dout, n);
}
int cf_be_residual_forward(cf_backend *be, cf_view out, cf_view a, cf_view b, size_t n) {
    CF_DISPATCH(residual_forward, out, a, b, n);
}
int cf_be_axpy(cf_backend *be, cf_view y, cf_view x, float alpha, size_t n) {
    CF_DISPATCH(axpy, y, x, alpha, n);
}
int cf_be_crossentropy_forward(cf_backend *be, cf_view losses, cf_view logits, cf_view targets,
                               int N, int V) {
    CF_DISPATCH(crossentropy_forward, losses, logits, targets, N, V);
}
int cf_be_crossentropy_fused(cf_backend *be, cf_view losses, cf_view dlogits, cf_view logits,
                             cf_view targets, int N, int V, float dloss) {
    CF_DISPATCH(crossentropy_fused, losses, dlogits, logits, targets, N, V, dloss);
}
int cf_be_reduce_sum(cf_backend *be, cf_view out, cf_view x, size_t n, int square) {
    CF_DISPATCH(reduce_sum, out, x, n, square);
}
int cf_be_adamw(cf_backend *be, cf_view params, cf_view grads, cf_view m, cf_view v, size_t n,
                float lr, float beta1, float beta2, float eps, float weight_decay,
                float grad_scale, int t) {
    CF_DISPATCH(adamw, params, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, t);
}
