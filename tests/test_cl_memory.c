/* clformer test: the memory settings on OpenCL. For GPT-2 and the Llama-style family (GQA,
 * qk_norm, RoPE, SwiGLU, untied head, soft-cap) and shared blocks, one training step (two
 * micro-batches) on OpenCL with recompute = none, attention, block and with the LM head over row
 * chunks (head_chunk not dividing B*T) against the CPU backend with recompute none and one chunk:
 * losses and every gradient within fp32 tolerance; and OpenCL's recompute results against its own
 * none. Skipped (77) without an OpenCL device. */
#include "test_cl_common.h"

#include "model/gpt.h"

enum { B = 2, T = 24, BT = B * T };

typedef struct {
    float loss[2];
    float *grads;
    size_t n;
} step_result;

static void run(cf_backend *be, const cf_config *c, step_result *r) {
    cf_model *m = NULL;
    TCL_OK(cf_model_create(be, c, B, T, 1, &m));
    TCL_OK(cf_model_init(m, 7));
    r->n = m->num_params;
    r->grads = tcl_malloc(sizeof(float) * r->n);
    float *p = tcl_malloc(sizeof(float) * r->n);
    cf_rng g;
    cf_rng_seed(&g, 11);
    TCL_OK(cf_model_get_params(m, p));
    for (size_t i = 0; i < r->n; i++) p[i] += 0.1f * cf_rng_normal(&g);
    TCL_OK(cf_model_set_params(m, p));
    free(p);
    int32_t x[2][BT], y[2][BT];
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < BT; i++) {
            x[s][i] = (int32_t)(cf_rng_u32(&g) % (uint32_t)c->vocab_size);
            y[s][i] = (int32_t)(cf_rng_u32(&g) % (uint32_t)c->vocab_size);
        }
    TCL_OK(cf_model_zero_grad(m));
    TCL_OK(cf_model_forward_backward(m, x[0], y[0], B, T, 0.5f, 0));
    TCL_OK(cf_model_forward_backward(m, x[1], y[1], B, T, 0.5f, 1));
    TCL_OK(cf_model_get_grads(m, r->grads));
    TCL_OK(cf_model_read_scalars(m, r->loss, 2));
    cf_model_free(m);
}

static void compare(const char *what, const step_result *got, const step_result *want,
                    double tol) {
    double el = 0.0;
    for (int s = 0; s < 2; s++) {
        const double e = fabs((double)got->loss[s] - want->loss[s]) / fabs((double)want->loss[s]);
        if (!(e <= el)) el = e;
    }
    const double eg = tcl_norm_err(got->grads, want->grads, got->n);
    const int ok = el <= tol && eg <= tol;
    printf("%s %s: loss rel %.1e, gradients %.1e (tolerance %.0e)\n", ok ? "ok  " : "FAIL", what,
           el, eg, tol);
    checks++;
    if (!ok) fails++;
}

int main(void) {
    int code = 0;
    const double t0 = cf_time_now();
    if (tcl_open("test_cl_memory", NULL, &code) < 0) return code;
    for (int f = 0; f < 3; f++) {
        cf_config c;
        cf_config_defaults(&c);
        c.d_model = 32;
        c.num_heads = 4;
        c.num_layers = 3;
        c.d_ff = 48;
        c.max_length = T;
        c.vocab_size = 70;
        const char *name = "GPT-2";
        if (f == 1) {
            name = "Llama-style (GQA 4:2, qk_norm, softcap 5)";
            c.norm = CF_NORM_RMSNORM;
            c.bias = 0;
            c.position = CF_POS_ROPE;
            c.mlp = CF_MLP_SWIGLU;
            c.num_kv_heads = 2;
            c.qk_norm = 1;
            c.tie_embeddings = 0;
            c.logit_softcap = 5.0f;
        } else if (f == 2) {
            name = "GPT-2, 4 layers over 2 shared blocks";
            c.num_layers = 4;
            c.share_layers = 2;
        }
        printf("%s\n", name);
        step_result ref, gnone;
        run(CPU, &c, &ref);
        run(GPU, &c, &gnone);
        compare("opencl recompute=none vs cpu", &gnone, &ref, 1e-4);
        const char *names[3] = {"none", "attention", "block"};
        for (int s = 1; s < 3; s++) {
            cf_config k = c;
            k.recompute = s;
            step_result r;
            run(GPU, &k, &r);
            char what[96];
            snprintf(what, sizeof what, "opencl recompute=%s vs opencl none", names[s]);
            compare(what, &r, &gnone, 1e-6);
            snprintf(what, sizeof what, "opencl recompute=%s vs cpu none", names[s]);
            compare(what, &r, &ref, 1e-4);
            free(r.grads);
        }
        cf_config k = c;
        k.head_chunk = 7; /* 48 rows: six chunks of 7 and one of 6 */
        k.recompute = CF_RECOMPUTE_BLOCK;
        step_result r;
        run(GPU, &k, &r);
        compare("opencl head_chunk=7 + recompute=block vs cpu one chunk", &r, &ref, 1e-4);
        free(r.grads);
        free(ref.grads);
        free(gnone.grads);
    }
    return tcl_finish("test_cl_memory", t0);
}
