/* clformer test: the parts of data-parallel training that need no MPI (src/dist/dist_common.c, the
 * model's gradient hook, the dataset's skip): every parameter element is in exactly one gradient
 * bucket, no bucket exceeds its size, and, run against a real backward on the CPU backend, no
 * bucket would be all-reduced before its gradients are final (the snapshot taken when its stage
 * fires equals the gradient at the end), for GPT-2 (tied head), an untied head, and Llama-style
 * shared blocks; --device lists pick one entry per rank; skipping windows equals reading them. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "data/dataset.h"
#include "dist/dist.h"
#include "model/gpt.h"

static int fails = 0;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL: " __VA_ARGS__);                                                          \
            printf("\n");                                                                          \
            fails++;                                                                               \
        }                                                                                          \
    } while (0)

typedef struct {
    cf_model *m;
    cf_dist_plan_t *plan;
    float *snap;     /* (num_params) each bucket's gradients when its stage fired */
    int *taken;      /* per bucket */
    int stages[64];  /* the order the hook saw */
    int nstages;
} hook_state;

static int hook(void *user, int stage) {
    hook_state *h = user;
    if (h->nstages < 64) h->stages[h->nstages++] = stage;
    const int ord = cf_dist_stage_ordinal(h->m, stage);
    for (int i = 0; i < h->plan->nbuckets; i++) {
        const cf_dist_bucket *b = &h->plan->buckets[i];
        if (h->taken[i] || b->ready > ord) continue;
        h->taken[i] = 1;
        for (int s = b->seg0; s < b->seg0 + b->nseg; s++) {
            const cf_dist_seg *sg = &h->plan->segs[s];
            CF_TRY(cf_be_download(h->m->be, h->snap + sg->off, cf_view_f32(h->m->grads_buf, sg->off),
                                  sg->len * sizeof(float)));
        }
    }
    return CF_OK;
}

static void check_config(const char *what, cf_config *c, size_t bucket_bytes) {
    cf_backend *be = NULL;
    cf_model *m = NULL;
    if (cf_backend_cpu_create("cpu", NULL, &be) < 0 ||
        cf_model_create(be, c, c->batch_size, c->max_length, 1, &m) < 0) {
        CHECK(0, "%s: model creation failed", what);
        return;
    }
    cf_model_init(m, 3);
    cf_dist_plan_t p;
    if (cf_dist_plan(m, bucket_bytes, &p) < 0) {
        CHECK(0, "%s: cf_dist_plan failed", what);
        return;
    }
    const size_t cap = bucket_bytes / sizeof(float);
    unsigned char *seen = calloc(m->num_params, 1);
    int overlap = 0, oversize = 0, order = 0, host_ok = 1;
    size_t host = 0;
    for (int i = 0; i < p.nbuckets; i++) {
        const cf_dist_bucket *b = &p.buckets[i];
        oversize += b->len > cap;
        order += i > 0 && b->ready < p.buckets[i - 1].ready;
        host_ok &= b->host_off == host;
        size_t len = 0;
        for (int s = b->seg0; s < b->seg0 + b->nseg; s++) {
            for (size_t k = 0; k < p.segs[s].len; k++) overlap += seen[p.segs[s].off + k]++ != 0;
            len += p.segs[s].len;
        }
        host_ok &= len == b->len;
        host += b->len;
    }
    size_t missing = 0;
    for (size_t k = 0; k < m->num_params; k++) missing += !seen[k];
    CHECK(!overlap && !missing, "%s: %d elements in two buckets, %zu in none", what, overlap,
          missing);
    CHECK(!oversize, "%s: %d buckets above %zu elements", what, oversize, cap);
    CHECK(!order, "%s: buckets not in the order the backward completes them", what);
    CHECK(host_ok && host == p.total, "%s: staging offsets do not pack the buckets", what);

    /* against a real backward: two micro-batches, the hook on the second (the last) */
    hook_state h = {m, &p, calloc(m->num_params, sizeof(float)), calloc((size_t)p.nbuckets, sizeof(int)),
                    {0}, 0};
    float *final = calloc(m->num_params, sizeof(float));
    const int B = c->batch_size, T = c->max_length;
    int32_t *x = malloc(sizeof(int32_t) * (size_t)B * T), *y = malloc(sizeof(int32_t) * (size_t)B * T);
    for (int i = 0; i < B * T; i++) {
        x[i] = (i * 37 + 5) % c->vocab_size;
        y[i] = (i * 11 + 3) % c->vocab_size;
    }
    int rc = cf_model_zero_grad(m);
    if (rc == CF_OK) rc = cf_model_forward_backward(m, x, y, B, T, 0.5f, 0);
    m->grad_hook = hook;
    m->grad_hook_user = &h;
    if (rc == CF_OK) rc = cf_model_forward_backward(m, y, x, B, T, 0.5f, 1);
    m->grad_hook = NULL;
    if (rc == CF_OK) rc = cf_model_get_grads(m, final);
    CHECK(rc == CF_OK, "%s: forward/backward failed", what);
    int all_taken = 1;
    for (int i = 0; i < p.nbuckets; i++) all_taken &= h.taken[i];
    size_t early = 0;
    for (size_t k = 0; k < m->num_params; k++) early += h.snap[k] != final[k];
    CHECK(all_taken, "%s: a bucket's stage never fired", what);
    CHECK(early == 0, "%s: %zu gradient elements changed after their bucket's stage fired", what,
          early);
    const int NB = cf_config_blocks(c);
    int stage_ok = h.nstages == NB + 2 && h.stages[0] == CF_GRAD_STAGE_HEAD &&
                   h.stages[NB + 1] == CF_GRAD_STAGE_EMBED;
    for (int b = 0; b < NB && stage_ok; b++) stage_ok = h.stages[1 + b] == NB - 1 - b;
    CHECK(stage_ok, "%s: hook stages %d, not head, blocks %d..0, embeddings", what, h.nstages,
          NB - 1);
    printf("%s, buckets of %zu bytes: %d buckets, %d segments over %zu parameters\n", what,
           bucket_bytes, p.nbuckets, p.nseg, m->num_params);
    free(x);
    free(y);
    free(final);
    free(h.snap);
    free(h.taken);
    free(seen);
    cf_dist_plan_free(&p);
    cf_model_free(m);
    cf_backend_destroy(be);
}

static void small(cf_config *c) {
    cf_config_defaults(c);
    c->d_model = 32;
    c->num_heads = 2;
    c->num_layers = 3;
    c->d_ff = 64;
    c->max_length = 16;
    c->batch_size = 2;
}

static void check_devices(void) {
    char out[64];
    CHECK(cf_dist_device("cpu,opencl:0:1", NULL, 1, 1, 2, out, sizeof out) == CF_OK &&
              strcmp(out, "opencl:0:1") == 0,
          "--device cpu,opencl:0:1 on rank 1 gave '%s'", out);
    CHECK(cf_dist_device("cpu,opencl:0:1", NULL, 0, 0, 2, out, sizeof out) == CF_OK &&
              strcmp(out, "cpu") == 0,
          "--device cpu,opencl:0:1 on rank 0 gave '%s'", out);
    CHECK(cf_dist_device("cpu,cpu", NULL, 2, 0, 3, out, sizeof out) == CF_ERR_INVALID,
          "a list of 2 devices for 3 ranks was accepted");
    CHECK(cf_dist_device("cpu", NULL, 3, 1, 4, out, sizeof out) == CF_OK && !strcmp(out, "cpu"),
          "one device for every rank gave '%s'", out);
    CHECK(cf_dist_device(NULL, NULL, 0, 0, 1, out, sizeof out) == CF_OK && !strcmp(out, "auto"),
          "one rank without --device gave '%s' (want auto, timed as before)", out);
}

static void check_skip(void) {
    char path[] = "/tmp/cf_dist_skipXXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0) {
        CHECK(0, "mkstemp");
        return;
    }
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < 3000; i++) fputc('a' + (i * 7 + i / 13) % 26, f);
    fclose(f);
    cf_config c;
    cf_config_defaults(&c);
    c.max_length = 16;
    snprintf(c.data, sizeof c.data, "%s", path);
    cf_dataset *a = NULL, *b = NULL;
    if (cf_dataset_open(&c, &a) < 0 || cf_dataset_open(&c, &b) < 0) {
        CHECK(0, "dataset open");
        unlink(path);
        return;
    }
    /* windows per epoch: about 178; read past two epoch ends in 5-window strides */
    const size_t nw = cf_dataset_num_windows(a, CF_SPLIT_TRAIN);
    int32_t xa[5 * 16], ya[5 * 16], xb[2 * 16], yb[2 * 16];
    int same = 1;
    for (size_t r = 0; r < 2 * nw / 5 + 3 && same; r++) {
        cf_dataset_next_batch(a, CF_SPLIT_TRAIN, 5, 16, xa, ya);
        /* b: skip 3, read 2 */
        cf_dataset_skip(b, 3);
        cf_dataset_next_batch(b, CF_SPLIT_TRAIN, 2, 16, xb, yb);
        same = !memcmp(xa + 3 * 16, xb, sizeof xb) && !memcmp(ya + 3 * 16, yb, sizeof yb);
    }
    cf_dataset_state sa, sb;
    cf_dataset_get_state(a, &sa);
    cf_dataset_get_state(b, &sb);
    CHECK(same && sa.epoch == sb.epoch && sa.index == sb.index && sa.epoch >= 2,
          "skipping windows differs from reading them (epoch %llu/%llu, index %llu/%llu)",
          (unsigned long long)sa.epoch, (unsigned long long)sb.epoch,
          (unsigned long long)sa.index, (unsigned long long)sb.index);
    cf_dataset_free(a);
    cf_dataset_free(b);
    unlink(path);
}

int main(void) {
    cf_config c;
    small(&c); /* GPT-2: tied head, learned positions, LayerNorm with biases */
    check_config("gpt2 tied", &c, 4096);
    check_config("gpt2 tied", &c, 1 << 20);
    check_config("gpt2 tied", &c, 4);
    small(&c);
    c.tie_embeddings = 0;
    check_config("gpt2 untied head", &c, 6000);
    small(&c); /* Llama-style, 4 layers over 2 shared blocks, qk-norm, untied */
    c.num_layers = 4;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.share_layers = 2;
    c.norm = CF_NORM_RMSNORM;
    c.position = CF_POS_ROPE;
    c.mlp = CF_MLP_SWIGLU;
    c.bias = 0;
    c.qk_norm = 1;
    c.tie_embeddings = 0;
    check_config("llama shared blocks", &c, 2048);
    check_devices();
    check_skip();
    if (fails) {
        printf("%d checks failed\n", fails);
        return 1;
    }
    printf("all dist checks passed\n");
    return 0;
}
