/* clformer test: the Muon optimizer and the learning-rate schedules on the CPU backend, against a
 * float64 reference written here (not the code under test):
 *   - Newton-Schulz: for wide, square and tall matrices, the result matches the reference and its
 *     singular values lie in the band the quintic iteration maps [0.01, 1] into, [0.68, 1.14];
 *   - one matrix's Muon step (momentum with Nesterov, NS, shape scale, decoupled weight decay),
 *     three steps in a row, wide, square and tall, including a single row and a single column;
 *   - a whole model's optimizer step with optimizer muon: every block matrix takes the Muon
 *     update and every other tensor (embeddings, norms, biases) the AdamW update;
 *   - cosine, wsd and constant schedule values at key steps. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "model/gpt.h"
#include "model/optim.h"

static int g_fail = 0;

static void report(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (!ok) g_fail = 1;
}

#define OK(call)                                                                                   \
    do {                                                                                           \
        if ((call) < 0) {                                                                          \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #call);                                 \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* ---- the float64 reference ------------------------------------------------------------------ */

static const double NA = 3.4445, NB = -4.7750, NC = 2.0315;

/* C(m,n) = A(m,k) B(k,n) */
static void mm(const double *A, const double *B, double *C, int m, int k, int n) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++) s += A[i * k + p] * B[p * n + j];
            C[i * n + j] = s;
        }
}
static void transpose(const double *A, double *T, int m, int n) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) T[j * m + i] = A[i * n + j];
}

/* The public reference's zeropower_via_newtonschulz5 in float64: a tall G is transposed, so
 * the iteration always runs on a wide (r <= c) matrix. out(rows, cols). */
static void ref_ns(const double *G, double *out, int rows, int cols, int steps) {
    const int tall = rows > cols, r = tall ? cols : rows, c = tall ? rows : cols;
    const size_t n = (size_t)rows * cols;
    double *X = malloc(n * sizeof *X), *T = malloc(n * sizeof *T),
           *A = malloc(sizeof(double) * r * r), *B = malloc(sizeof(double) * r * r), *AA = malloc(sizeof(double) * r * r);
    if (tall)
        transpose(G, X, rows, cols);
    else
        memcpy(X, G, n * sizeof *X);
    double nrm = 0;
    for (size_t i = 0; i < n; i++) nrm += X[i] * X[i];
    nrm = sqrt(nrm) + 1e-7;
    for (size_t i = 0; i < n; i++) X[i] /= nrm;
    for (int s = 0; s < steps; s++) {
        transpose(X, T, r, c);
        mm(X, T, A, r, c, r);
        mm(A, A, AA, r, r, r);
        for (int i = 0; i < r * r; i++) B[i] = NB * A[i] + NC * AA[i];
        mm(B, X, T, r, r, c);
        for (size_t i = 0; i < n; i++) X[i] = NA * X[i] + T[i];
    }
    if (tall)
        transpose(X, out, r, c);
    else
        memcpy(out, X, n * sizeof *X);
    free(X);
    free(T);
    free(A);
    free(B);
    free(AA);
}

/* One Muon step as the public reference: momentum.lerp_(g, 1 - beta); u = g.lerp_(momentum,
 * beta); NS; p.mul_(1 - lr wd); p.add_(u * max(1, rows/cols)^0.5, alpha=-lr). */
static void ref_muon_step(double *p, const double *grad, double *mom, int rows, int cols, double lr,
                          double beta, double wd, double gs) {
    const size_t n = (size_t)rows * cols;
    double *u = malloc(n * sizeof *u), *o = malloc(n * sizeof *o);
    for (size_t i = 0; i < n; i++) {
        const double g = grad[i] * gs;
        mom[i] = mom[i] + (1 - beta) * (g - mom[i]);
        u[i] = g + beta * (mom[i] - g);
    }
    ref_ns(u, o, rows, cols, 5);
    const double scale = sqrt(fmax(1.0, (double)rows / cols));
    for (size_t i = 0; i < n; i++) p[i] = p[i] * (1 - lr * wd) - lr * scale * o[i];
    free(u);
    free(o);
}

/* Eigenvalues of a symmetric s x s matrix (cyclic Jacobi), into ev (unsorted). */
static void sym_eig(double *A, int s, double *ev) {
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int i = 0; i < s; i++)
            for (int j = i + 1; j < s; j++) off += A[i * s + j] * A[i * s + j];
        if (off < 1e-26) break;
        for (int p = 0; p < s; p++)
            for (int q = p + 1; q < s; q++) {
                const double apq = A[p * s + q];
                if (fabs(apq) < 1e-300) continue;
                const double th = (A[q * s + q] - A[p * s + p]) / (2 * apq);
                const double t = (th >= 0 ? 1 : -1) / (fabs(th) + sqrt(th * th + 1));
                const double c = 1 / sqrt(t * t + 1), sn = t * c;
                for (int k = 0; k < s; k++) { /* columns p, q */
                    const double akp = A[k * s + p], akq = A[k * s + q];
                    A[k * s + p] = c * akp - sn * akq;
                    A[k * s + q] = sn * akp + c * akq;
                }
                for (int k = 0; k < s; k++) { /* rows p, q */
                    const double apk = A[p * s + k], aqk = A[q * s + k];
                    A[p * s + k] = c * apk - sn * aqk;
                    A[q * s + k] = sn * apk + c * aqk;
                }
            }
    }
    for (int i = 0; i < s; i++) ev[i] = A[i * s + i];
}

/* Smallest and largest singular value of X(rows, cols) (float or double data). */
static void sv_range(const double *X, int rows, int cols, double *lo, double *hi) {
    const int s = rows < cols ? rows : cols;
    double *G = malloc(sizeof(double) * s * s), *ev = malloc(sizeof(double) * s);
    for (int i = 0; i < s; i++)
        for (int j = 0; j < s; j++) {
            double acc = 0;
            if (rows <= cols)
                for (int k = 0; k < cols; k++) acc += X[i * cols + k] * X[j * cols + k];
            else
                for (int k = 0; k < rows; k++) acc += X[k * cols + i] * X[k * cols + j];
            G[i * s + j] = acc;
        }
    sym_eig(G, s, ev);
    *lo = INFINITY;
    *hi = 0;
    for (int i = 0; i < s; i++) {
        const double sv = sqrt(fmax(ev[i], 0.0));
        if (sv < *lo) *lo = sv;
        if (sv > *hi) *hi = sv;
    }
    free(G);
    free(ev);
}

static double maxabs_diff(const float *a, const double *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}
static double maxabs(const double *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

/* ---- the cases ------------------------------------------------------------------------------ */

static const int SHAPES[][2] = {{8, 16}, {16, 8}, {12, 12}, {40, 6},
                                {6, 40}, {1, 7},  {7, 1},   {33, 20}};
#define NSHAPES ((int)(sizeof SHAPES / sizeof SHAPES[0]))

static void test_newton_schulz(cf_backend *be, cf_rng *rng) {
    printf("Newton-Schulz (5 steps) against float64, and its singular values:\n");
    for (int si = 0; si < NSHAPES; si++) {
        const int r = SHAPES[si][0], c = SHAPES[si][1];
        const size_t n = (size_t)r * c, ns = cf_muon_scratch_elems(r, c);
        float *g = malloc(n * sizeof *g), *o = malloc(n * sizeof *o);
        double *gd = malloc(n * sizeof *gd), *od = malloc(n * sizeof *od);
        /* Gaussian plus a diagonal rising from 1 to 4 x sqrt(max(r, c)) (above the noise's
         * spectral norm, about sqrt(r) + sqrt(c)): singular values spread over a few x, none
         * near 0 (the band holds for inputs whose singular values are >= 0.01 of the Frobenius
         * norm) */
        const int sm = r < c ? r : c;
        for (size_t i = 0; i < n; i++) g[i] = cf_rng_normal(rng);
        for (int i = 0; i < sm; i++)
            g[(size_t)i * c + i] += (1.0f + 3.0f * i / sm) * sqrtf((float)(r > c ? r : c));
        for (size_t i = 0; i < n; i++) gd[i] = g[i];
        cf_buffer *buf = NULL;
        OK(cf_be_alloc(be, ns * sizeof(float), &buf));
        cf_view sc = cf_view_f32(buf, 0), out;
        OK(cf_be_upload(be, sc, g, n * sizeof(float)));
        OK(cf_muon_newton_schulz(be, sc, r, c, CF_MUON_NS_STEPS, &out));
        OK(cf_be_download(be, o, out, n * sizeof(float)));
        ref_ns(gd, od, r, c, 5);
        const double err = maxabs_diff(o, od, n) / maxabs(od, n);
        /* the input's singular values relative to its Frobenius norm (what the iteration starts
         * from) and the output's */
        double ilo, ihi, lo, hi, nrm = 0;
        for (size_t i = 0; i < n; i++) nrm += gd[i] * gd[i];
        sv_range(gd, r, c, &ilo, &ihi);
        ilo /= sqrt(nrm);
        ihi /= sqrt(nrm);
        for (size_t i = 0; i < n; i++) od[i] = o[i];
        sv_range(od, r, c, &lo, &hi);
        report(err < 1e-5, "NS (%2d,%2d) max|f32 - f64| / max|f64| = %.1e (tol 1e-5)", r, c, err);
        if (ilo >= 0.01)
            report(lo >= 0.68 && hi <= 1.14,
                   "NS (%2d,%2d) singular values [%.4f, %.4f] from [%.4f, %.4f]: in [0.68, 1.14]",
                   r, c, lo, hi, ilo, ihi);
        else
            report(0, "NS (%2d,%2d): the random input's smallest singular value %.4f is below "
                      "0.01 (pick another seed)", r, c, ilo);
        cf_be_free(be, buf);
        free(g);
        free(o);
        free(gd);
        free(od);
    }
}

static void test_matrix_step(cf_backend *be, cf_rng *rng) {
    printf("Muon step of one matrix, 3 steps, against float64:\n");
    const float lr = 0.02f, beta = 0.95f, wd = 0.1f, gs = 0.75f;
    for (int si = 0; si < NSHAPES; si++) {
        const int r = SHAPES[si][0], c = SHAPES[si][1];
        const size_t n = (size_t)r * c;
        float *p = malloc(n * 4), *g = malloc(n * 4), *mo = malloc(n * 4);
        double *pd = malloc(n * 8), *p0 = malloc(n * 8), *gd = malloc(n * 8), *md = calloc(n, 8);
        for (size_t i = 0; i < n; i++) p0[i] = pd[i] = p[i] = 0.05f * cf_rng_normal(rng);
        cf_buffer *bp = NULL, *bg = NULL, *bm = NULL, *bs = NULL;
        OK(cf_be_alloc(be, n * 4, &bp));
        OK(cf_be_alloc(be, n * 4, &bg));
        OK(cf_be_alloc(be, n * 4, &bm));
        OK(cf_be_alloc(be, cf_muon_scratch_elems(r, c) * 4, &bs));
        OK(cf_be_upload(be, cf_view_f32(bp, 0), p, n * 4));
        OK(cf_be_fill(be, cf_view_f32(bm, 0), 0.0f, n));
        const cf_muon_hparams h = {lr, beta, wd, gs};
        for (int s = 0; s < 3; s++) {
            for (size_t i = 0; i < n; i++) gd[i] = g[i] = cf_rng_normal(rng);
            OK(cf_be_upload(be, cf_view_f32(bg, 0), g, n * 4));
            OK(cf_muon_matrix_step(be, cf_view_f32(bp, 0), cf_view_f32(bg, 0), cf_view_f32(bm, 0),
                                   r, c, &h, cf_view_f32(bs, 0)));
            ref_muon_step(pd, gd, md, r, c, lr, beta, wd, gs);
        }
        OK(cf_be_download(be, p, cf_view_f32(bp, 0), n * 4));
        OK(cf_be_download(be, mo, cf_view_f32(bm, 0), n * 4));
        /* the parameters' error relative to how far they moved */
        double moved = 0;
        for (size_t i = 0; i < n; i++) moved = fmax(moved, fabs(pd[i] - p0[i]));
        const double ep = maxabs_diff(p, pd, n) / moved;
        const double em = maxabs_diff(mo, md, n) / maxabs(md, n);
        report(ep < 2e-5 && em < 1e-6,
               "Muon (%2d,%2d): params err %.1e of the change (tol 2e-5), momentum err %.1e "
               "(tol 1e-6)",
               r, c, ep, em);
        cf_be_free(be, bp);
        cf_be_free(be, bg);
        cf_be_free(be, bm);
        cf_be_free(be, bs);
        free(p);
        free(g);
        free(mo);
        free(pd);
        free(p0);
        free(gd);
        free(md);
    }
}

/* A model's step: every matrix slice Muon, every other tensor AdamW (t = 1, m = v = 0). */
static void test_model_step(cf_backend *be, int llama) {
    cf_config c;
    cf_config_defaults(&c);
    c.d_model = 16;
    c.num_heads = 2;
    c.num_layers = 2;
    c.d_ff = 24;
    c.max_length = 8;
    c.vocab_size = 32;
    c.batch_size = 2;
    c.optimizer = CF_OPTIM_MUON;
    c.muon_lr = 0.03f;
    c.warmup_steps = 0;
    c.steps = 10;
    if (llama) { /* RMSNorm, SwiGLU (fc_w of 2F rows), GQA, untied head, shared blocks, QK-norm */
        c.norm = CF_NORM_RMSNORM;
        c.bias = 0;
        c.position = CF_POS_ROPE;
        c.mlp = CF_MLP_SWIGLU;
        c.num_kv_heads = 1;
        c.tie_embeddings = 0;
        c.share_layers = 1;
        c.qk_norm = 1;
    }
    cf_model *m = NULL;
    OK(cf_model_create(be, &c, c.batch_size, c.max_length, 1, &m));
    OK(cf_model_init(m, 11));
    const int BT = c.batch_size * c.max_length;
    int32_t x[64], y[64];
    for (int i = 0; i < BT; i++) {
        x[i] = (i * 7 + 3) % c.vocab_size;
        y[i] = (i * 5 + 1) % c.vocab_size;
    }
    OK(cf_model_zero_grad(m));
    OK(cf_model_forward_backward(m, x, y, c.batch_size, c.max_length, 1.0f, 0));
    const size_t n = m->num_params;
    float *p0 = malloc(n * 4), *g = malloc(n * 4), *p1 = malloc(n * 4);
    OK(cf_model_get_params(m, p0));
    OK(cf_model_get_grads(m, g));
    const float gs = 0.9f;
    float lr = 0, mlr = 0;
    OK(cf_model_optimizer_step(m, 0, gs, &lr, &mlr));
    OK(cf_model_get_params(m, p1));
    report(lr == cf_lr_at(&c, c.learning_rate, 0) && mlr == cf_lr_at(&c, c.muon_lr, 0),
           "%s: the step used lr %g (AdamW) and %g (Muon) from the schedule",
           llama ? "llama-style" : "gpt-2", lr, mlr);
    int n_muon = 0, n_adamw = 0;
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &m->params[i];
        if (!p->present) continue;
        const int mat = cf_optim_is_matrix(p);
        const double wd = p->decay ? c.weight_decay : 0.0;
        double *ref = malloc(p->size * 8);
        if (mat) {
            n_muon++;
            const int r = (int)p->shape[1], cc = (int)p->shape[2];
            for (int64_t l = 0; l < p->shape[0]; l++) {
                const size_t o = (size_t)l * p->layer_stride;
                double *pd = ref + o, *gd = malloc(p->layer_stride * 8),
                       *md = calloc(p->layer_stride, 8);
                for (size_t k = 0; k < p->layer_stride; k++) {
                    pd[k] = p0[p->offset + o + k];
                    gd[k] = g[p->offset + o + k];
                }
                ref_muon_step(pd, gd, md, r, cc, mlr, c.muon_momentum, wd, gs);
                free(gd);
                free(md);
            }
        } else {
            n_adamw++;
            for (size_t k = 0; k < p->size; k++) { /* AdamW, t = 1: mhat = g, vhat = g^2 */
                const double gg = (double)g[p->offset + k] * gs, w = p0[p->offset + k];
                ref[k] = w - lr * (gg / (sqrt(gg * gg) + c.eps) + wd * w);
            }
        }
        double moved = 1e-12;
        for (size_t k = 0; k < p->size; k++) moved = fmax(moved, fabs(ref[k] - p0[p->offset + k]));
        const double err = maxabs_diff(p1 + p->offset, ref, p->size) / moved;
        report(err < 2e-4, "%s: %-12s %s update, err %.1e of the change (tol 2e-4)",
               llama ? "llama-style" : "gpt-2", p->name, mat ? "Muon " : "AdamW", err);
        free(ref);
    }
    report(n_muon == 4 && n_adamw >= 3, "%s: %d tensors in Muon's group, %d with AdamW",
           llama ? "llama-style" : "gpt-2", n_muon, n_adamw);
    report(cf_muon_state_elems(&c) == m->muon->n,
           "%s: the Muon state holds %zu elements (the block matrices)",
           llama ? "llama-style" : "gpt-2", m->muon->n);
    /* AdamW's moments exist only for AdamW's parameters (packed on the device), and read back in
     * the parameter layout: after the first step m = (1 - beta1) g and v = (1 - beta2) g^2 (g
     * scaled) there, 0 at every Muon matrix */
    size_t adam = 0, mat = 0;
    for (int i = 0; i < CF_NUM_PARAMS; i++)
        if (m->params[i].present) *(cf_optim_is_matrix(&m->params[i]) ? &mat : &adam) += m->params[i].size;
    report(m->adam_elems == adam && cf_optim_adam_elems(&c) == adam && mat > 0,
           "%s: AdamW's moments hold %zu elements each (the %zu of its parameters, none of the "
           "%zu in Muon's matrices)",
           llama ? "llama-style" : "gpt-2", m->adam_elems, adam, mat);
    float *hm = malloc(n * 4), *hv = malloc(n * 4);
    OK(cf_model_get_opt_state(m, hm, hv));
    double em = 0.0, ev = 0.0, zero = 0.0;
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        const cf_param_info *p = &m->params[i];
        if (!p->present) continue;
        for (size_t k = 0; k < p->size; k++) {
            const double gg = (double)g[p->offset + k] * gs;
            if (cf_optim_is_matrix(p)) {
                zero = fmax(zero, fmax(fabs(hm[p->offset + k]), fabs(hv[p->offset + k])));
            } else {
                em = fmax(em, fabs(hm[p->offset + k] - (1 - c.beta1) * gg) / (fabs(gg) + 1e-30));
                ev = fmax(ev, fabs(hv[p->offset + k] - (1 - c.beta2) * gg * gg) / (gg * gg + 1e-30));
            }
        }
    }
    report(em < 1e-5 && ev < 1e-5 && zero == 0.0,
           "%s: AdamW's moments read back in the parameter layout (m err %.1e, v err %.1e, tol "
           "1e-5; largest at a Muon matrix %g)",
           llama ? "llama-style" : "gpt-2", em, ev, zero);
    /* written back shifted (every element + 1 where AdamW keeps moments) and read again */
    for (int i = 0; i < CF_NUM_PARAMS; i++)
        if (m->params[i].present && !cf_optim_is_matrix(&m->params[i]))
            for (size_t k = 0; k < m->params[i].size; k++) hm[m->params[i].offset + k] += 1.0f;
    float *hm2 = malloc(n * 4);
    OK(cf_model_set_opt_state(m, hm, hv));
    OK(cf_model_get_opt_state(m, hm2, hv));
    report(memcmp(hm, hm2, n * 4) == 0, "%s: AdamW's moments set and read back unchanged",
           llama ? "llama-style" : "gpt-2");
    /* the device: an adamw model of the config holds 2 x (the matrices' elements) of moments
     * more, and no Muon momentum and scratch */
    size_t scratch = 0;
    for (int i = 0; i < CF_NUM_PARAMS; i++)
        if (cf_optim_is_matrix(&m->params[i])) {
            const size_t e = cf_muon_scratch_elems((int)m->params[i].shape[1],
                                                   (int)m->params[i].shape[2]);
            if (e > scratch) scratch = e;
        }
    const size_t muon_state = m->muon->n;
    cf_model_free(m);
    m = NULL;
    const uint64_t b0 = be->stats.bytes_allocated;
    OK(cf_model_create(be, &c, c.batch_size, c.max_length, 1, &m));
    const int64_t muon_bytes = (int64_t)(be->stats.bytes_allocated - b0);
    cf_model_free(m);
    m = NULL;
    c.optimizer = CF_OPTIM_ADAMW;
    const uint64_t b1 = be->stats.bytes_allocated;
    OK(cf_model_create(be, &c, c.batch_size, c.max_length, 1, &m));
    const int64_t adamw_bytes = (int64_t)(be->stats.bytes_allocated - b1);
    const int64_t want = (int64_t)(2 * mat * 4) - (int64_t)((muon_state + scratch) * 4);
    report(adamw_bytes - muon_bytes == want,
           "%s: device bytes adamw %lld, muon %lld: adamw - muon = %lld (want 2 x %zu matrix "
           "elements less Muon's %zu momentum and %zu scratch elements = %lld)",
           llama ? "llama-style" : "gpt-2", (long long)adamw_bytes, (long long)muon_bytes,
           (long long)(adamw_bytes - muon_bytes), mat, muon_state, scratch, (long long)want);
    free(hm);
    free(hv);
    free(hm2);
    free(p0);
    free(g);
    free(p1);
    cf_model_free(m);
}

static void test_schedules(void) {
    printf("schedules:\n");
    cf_config c;
    cf_config_defaults(&c);
    c.steps = 100;
    c.warmup_steps = 10;
    c.min_lr_ratio = 0.1f;
    const float b = 1.0f;
    struct {
        int sched, step;
        double want;
    } cases[] = {
        {CF_LR_COSINE, 0, 0.1},   {CF_LR_COSINE, 9, 1.0},  {CF_LR_COSINE, 10, 1.0},
        {CF_LR_COSINE, 55, 0.55},
        {CF_LR_COSINE, 99, 0.1 + 0.45 * (1 + cos(3.14159265358979 * 89 / 90))},
        {CF_LR_COSINE, 100, 0.1}, {CF_LR_CONSTANT, 0, 0.1}, {CF_LR_CONSTANT, 9, 1.0},
        {CF_LR_CONSTANT, 50, 1.0}, {CF_LR_CONSTANT, 99, 1.0},
        /* wsd, decay_fraction 0.2: stable through step 79, linear from 80 over 20 steps */
        {CF_LR_WSD, 0, 0.1},      {CF_LR_WSD, 10, 1.0},     {CF_LR_WSD, 79, 1.0},
        {CF_LR_WSD, 80, 1.0},     {CF_LR_WSD, 90, 0.55},    {CF_LR_WSD, 99, 1.0 - 0.9 * 19 / 20},
        {CF_LR_WSD, 100, 0.1},
    };
    c.decay_fraction = 0.2f;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        c.lr_schedule = cases[i].sched;
        const float got = cf_lr_at(&c, b, cases[i].step);
        static const char *const nm[] = {"cosine", "wsd", "constant"};
        report(fabs(got - cases[i].want) < 1e-5, "%-8s step %3d: lr %.6f want %.6f",
               nm[cases[i].sched], cases[i].step, got, cases[i].want);
    }
    /* wsd with decay_fraction 0 is constant after the warmup; 1 decays from the warmup on */
    c.lr_schedule = CF_LR_WSD;
    c.decay_fraction = 0.0f;
    report(cf_lr_at(&c, 2.0f, 99) == 2.0f, "wsd decay_fraction 0: step 99 at the peak");
    c.decay_fraction = 1.0f;
    report(fabs(cf_lr_at(&c, 1.0f, 55) - 0.55) < 1e-5,
           "wsd decay_fraction 1: linear from the end of the warmup (step 55: %.4f)",
           cf_lr_at(&c, 1.0f, 55));
    /* the schedule scales both groups alike */
    c.lr_schedule = CF_LR_COSINE;
    c.learning_rate = 3e-3f;
    report(fabs(cf_lr_at(&c, 0.02f, 40) / cf_lr_at(&c, 3e-3f, 40) - 0.02 / 3e-3) < 1e-4 &&
               cf_lr_schedule(&c, 40) == cf_lr_at(&c, c.learning_rate, 40),
           "cosine: Muon's and AdamW's learning rates keep their ratio");
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    cf_backend *be = NULL;
    OK(cf_backend_cpu_create("cpu", NULL, &be));
    cf_rng rng;
    cf_rng_seed(&rng, 2024);
    test_schedules();
    test_newton_schulz(be, &rng);
    test_matrix_step(be, &rng);
    printf("a model's optimizer step with optimizer muon:\n");
    test_model_step(be, 0);
    test_model_step(be, 1);
    cf_backend_destroy(be);
    printf("%s test_muon\n", g_fail ? "FAIL" : "PASS");
    return g_fail;
}
