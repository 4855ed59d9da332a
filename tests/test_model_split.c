/* clformer test: on a device whose largest allocation is smaller than the activations, the model
 * splits them into several buffers (be->max_alloc) and computes exactly what one buffer gives:
 * same loss and bit-identical gradients on the CPU backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "model/gpt.h"

static int run(size_t max_alloc, float *grads, float *loss, int *chunks) {
    cf_backend *be = NULL;
    if (cf_backend_cpu_create("cpu", NULL, &be) < 0) return 1;
    be->max_alloc = max_alloc;
    cf_config c;
    cf_config_defaults(&c);
    c.d_model = 32;
    c.num_heads = 2;
    c.num_layers = 2;
    c.d_ff = 64;
    c.max_length = 16;
    c.batch_size = 4;
    cf_model *m = NULL;
    if (cf_model_create(be, &c, c.batch_size, c.max_length, 1, &m) < 0) return 1;
    *chunks = m->n_act_chunks;
    cf_model_init(m, 7);
    int32_t x[64], y[64];
    for (int i = 0; i < 64; i++) {
        x[i] = (i * 37) % 256;
        y[i] = (i * 11 + 3) % 256;
    }
    cf_model_zero_grad(m);
    if (cf_model_forward_backward(m, x, y, 4, 16, 1.0f, 0) < 0) return 1;
    cf_model_read_scalars(m, loss, 1);
    cf_model_get_grads(m, grads);
    size_t n = m->num_params;
    cf_model_free(m);
    cf_backend_destroy(be);
    return n == 0;
}

int main(void) {
    float *g1 = calloc(1 << 20, sizeof(float)), *g2 = calloc(1 << 20, sizeof(float));
    float l1 = 0, l2 = 0;
    int c1 = 0, c2 = 0;
    if (run(0, g1, &l1, &c1) || run(64 * 1024, g2, &l2, &c2)) {
        printf("FAIL: model creation or step failed\n");
        return 1;
    }
    int same = l1 == l2 && memcmp(g1, g2, (1 << 20) * sizeof(float)) == 0;
    printf("%s one buffer (%d chunk) vs 64 KiB max allocation (%d chunks): loss %.6f / %.6f, "
           "gradients %s\n",
           same && c1 == 1 && c2 > 1 ? "ok  " : "FAIL", c1, c2, l1, l2,
           same ? "bit-identical" : "DIFFER");
    free(g1);
    free(g2);
    return !(same && c1 == 1 && c2 > 1);
}
