/* clformer test: the model FLOP count against values worked out by hand for two small configs,
 * and the analytic memory estimate against the parameter count and device bytes of a real
 * model on the CPU backend. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "model/gpt.h"

static int g_fail = 0;

static void expect_eq(const char *what, double got, double want) {
    const int ok = fabs(got - want) <= 1e-9 * fabs(want);
    printf("  %-52s got %.0f want %.0f %s\n", what, got, want, ok ? "ok" : "FAIL");
    if (!ok) g_fail = 1;
}

static void expect(const char *what, int cond) {
    printf("  %-52s %s\n", what, cond ? "ok" : "FAIL");
    if (!cond) g_fail = 1;
}

static cf_config small(int C, int NH, int L, int F, int T, int V, int B) {
    cf_config c;
    cf_config_defaults(&c);
    c.d_model = C;
    c.num_heads = NH;
    c.num_layers = L;
    c.d_ff = F;
    c.max_length = T;
    c.vocab_size = V;
    c.batch_size = B;
    return c;
}

int main(void) {
    printf("model FLOPs per token (forward matmuls x 3, attention at full T):\n");
    /* C=8, L=2, F=32, V=16, T=4.
     * Matmul weights per layer: qkv 3*8*8 = 192, attention projection 8*8 = 64, MLP up 8*32 = 256,
     * MLP down 32*8 = 256 -> 768; two layers 1536; tied head 16*8 = 128; total 1664 multiply-adds
     * per token = 3328 FLOPs forward.
     * Attention per layer and token: q.k over T=4 keys of width 8 (32 multiply-adds) and the
     * weighted sum of 4 values of width 8 (32) -> 64 multiply-adds = 128 FLOPs; two layers 256.
     * Forward 3584 FLOPs; forward + backward (backward = 2 x forward) = 3 * 3584 = 10752. */
    cf_config a = small(8, 2, 2, 32, 4, 16, 2);
    expect_eq("C8 L2 F32 V16 T4", cf_model_flops_per_token(&a), 10752.0);

    /* configs/tiny.json: C=128, L=4, F=512, V=256, T=128.
     * Per layer 3*128*128 + 128*128 + 128*512 + 512*128 = 49152 + 16384 + 65536 + 65536 = 196608;
     * 4 layers 786432; head 256*128 = 32768; 819200 multiply-adds = 1638400 FLOPs.
     * Attention: 2 * 128 * 128 = 32768 multiply-adds = 65536 FLOPs per layer, 4 layers 262144.
     * Forward 1900544; training 5701632. */
    cf_config t = small(128, 4, 4, 512, 128, 256, 16);
    expect_eq("tiny (C128 L4 F512 V256 T128)", cf_model_flops_per_token(&t), 5701632.0);

    printf("analytic memory estimate:\n");
    /* C=8, NH=2, L=2, F=32, T=4, V=16 at B=2, T=4 (BT=8, B*NH*T*T=64).
     * Params: wte 16*8=128, wpe 4*8=32, per layer 2*8 + (192+24) + (64+8) + 2*8 + (256+32) +
     * (256+8) = 16+216+72+16+288+264 = 872, two layers 1744, final LN 16 -> 1920. */
    cf_mem_estimate e;
    cf_bench_mem_estimate(&a, 2, 4, &e);
    expect_eq("parameter count C8 L2 F32 V16 T4", (double)e.num_params, 1920.0);
    expect_eq("AdamW moments = 2 x params bytes", (double)e.adam, 2.0 * 1920 * 4);
    /* activations: per layer BT*C*(1+3+1+1+1+1) = 8*8*8 = 512 (ln1, qkv, atty, residual2, ln2,
     * residual3), 2*BT*2 = 32 (LN stats), 2*BT*F = 512, probs 64 -> 1120; two layers 2240;
     * embeddings 64, the projection scratch 64, final LN 64 + 16, logits 8*16 = 128, losses 8,
     * ids 16, scalars 64 -> 2664 floats */
    expect_eq("activation bytes", (double)e.acts, 2664.0 * 4);
    /* precision bf16 with four layers: ln1, qkv, atty, ln2, fch, fch_act (64+192+64+64+256+256
     * = 896 elements a layer) stored half, 4 x 896 x 2 bytes, plus one fp32 work slice each,
     * 896 x 4, instead of 4 x 896 x 4: 3584 bytes fewer */
    cf_config a4 = a;
    a4.num_layers = 4;
    cf_config b4 = a4;
    b4.precision = CF_PREC_BF16;
    cf_mem_estimate e4, eb4;
    cf_bench_mem_estimate(&a4, 2, 4, &e4);
    cf_bench_mem_estimate(&b4, 2, 4, &eb4);
    expect_eq("activation bytes: fp32 - bf16, four layers", (double)e4.acts - (double)eb4.acts,
              3584.0);
    /* scratch: 6*BT*C = 384, BT*F = 256, 2*64 = 128 -> 768 floats */
    expect_eq("backward scratch bytes", (double)e.grad_scratch, 768.0 * 4);

    /* against a real model: same parameter count, and the device bytes it allocates are the
     * estimate plus alignment padding (each tensor starts on 64 bytes) */
    cf_config tb = t; /* and tiny in bf16: its half rows and work slices */
    tb.precision = CF_PREC_BF16;
    const cf_config cfgs[3] = {a, t, tb};
    for (int i = 0; i < 3; i++) {
        cf_backend *be = NULL;
        cf_model *m = NULL;
        if (cf_backend_cpu_create("cpu", NULL, &be) < 0 ||
            cf_model_create(be, &cfgs[i], cfgs[i].batch_size, cfgs[i].max_length, 1, &m) < 0) {
            printf("  could not create the model on the CPU backend: FAIL\n");
            return 1;
        }
        cf_bench_mem_estimate(&cfgs[i], cfgs[i].batch_size, cfgs[i].max_length, &e);
        char what[96];
        snprintf(what, sizeof what, "config %d: model parameter count", i);
        expect_eq(what, (double)m->num_params, (double)e.num_params);
        const double dev = (double)be->stats.peak_bytes_allocated;
        /* every activation row (two regions for one stored half) and 9 backward scratch
         * tensors, at most 63 bytes of padding each */
        const double slack = (2.0 * CF_NUM_ACTS + CF_NUM_GACTS) * 63.0;
        snprintf(what, sizeof what, "config %d: device bytes %.0f in [est %.0f, est + %.0f]", i,
                 dev, (double)e.total, slack);
        expect(what, dev >= (double)e.total && dev <= (double)e.total + slack);
        cf_model_free(m);
        cf_backend_destroy(be);
    }
    printf(g_fail ? "FAILED\n" : "all ok\n");
    return g_fail;
}
