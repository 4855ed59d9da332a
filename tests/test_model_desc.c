/* clformer test: what the model description (gpt.h's tables, src/model/layout.c) derives for a
 * small GPT-2 config, against values worked out by hand: tensor shapes, offsets, per-layer
 * strides, the weight-decayed range, the absent untied head, the linear layers and the GEMMs of
 * a training step. */
#include <stdio.h>
#include <string.h>

#include "model/gpt.h"

static int g_fail = 0;

static void expect(const char *what, long long got, long long want) {
    const int ok = got == want;
    printf("  %-44s got %lld want %lld %s\n", what, got, want, ok ? "ok" : "FAIL");
    if (!ok) g_fail = 1;
}

int main(void) {
    cf_config c;
    cf_config_defaults(&c);
    c.d_model = 8;
    c.num_heads = 2;
    c.num_layers = 3;
    c.d_ff = 20;
    c.max_length = 4;
    c.vocab_size = 16;
    c.batch_size = 2;
    const int C = 8, L = 3, F = 20, T = 4, V = 16;

    printf("parameter table:\n");
    cf_param_info p[CF_NUM_PARAMS];
    size_t n = 0, nd = 0;
    cf_model_layout(&c, p, &n, &nd);
    expect("qkv_w ndim", p[CF_P_qkv_w].ndim, 3);
    expect("qkv_w shape[0] = L", p[CF_P_qkv_w].shape[0], L);
    expect("qkv_w shape[1] = 3C", p[CF_P_qkv_w].shape[1], 3 * C);
    expect("qkv_w shape[2] = C", p[CF_P_qkv_w].shape[2], C);
    expect("qkv_w per-layer stride 3C*C", (long long)p[CF_P_qkv_w].layer_stride, 3 * C * C);
    expect("fc_proj_w shape (L,C,F)[2]", p[CF_P_fc_proj_w].shape[2], F);
    expect("ln1_b ndim (L,C)", p[CF_P_ln1_b].ndim, 2);
    expect("ln1_b stride C", (long long)p[CF_P_ln1_b].layer_stride, C);
    expect("lnf_w ndim (C)", p[CF_P_lnf_w].ndim, 1);
    expect("wpe shape (T,C)[0]", p[CF_P_wpe].shape[0], T);
    expect("lm_head absent while the head is tied", p[CF_P_lm_head].present, 0);
    expect("lm_head size 0", (long long)p[CF_P_lm_head].size, 0);
    /* decayed: wte V*C + wpe T*C + per layer 3CC + CC + FC + CF */
    const long long decay = (long long)V * C + T * C + L * (3 * C * C + C * C + 2 * F * C);
    /* not decayed: per layer ln1 2C, qkv_b 3C, attn_proj_b C, ln2 2C, fc_b F, fc_proj_b C; lnf 2C */
    const long long total = decay + L * (2 * C + 3 * C + C + 2 * C + F + C) + 2 * C;
    expect("decayed elements", (long long)nd, decay);
    expect("parameter elements", (long long)n, total);
    size_t off = 0;
    int packed = 1;
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        packed &= p[i].offset == off;
        off += p[i].size;
    }
    expect("tensors packed in table order", packed, 1);
    expect("hf transposed: c_attn", p[CF_P_qkv_w].hf_transposed, 1);
    expect("hf transposed: ln_1.bias", p[CF_P_ln1_b].hf_transposed, 0);

    printf("activations (B=2, T=4):\n");
    cf_act_info a[CF_NUM_ACTS];
    size_t g[CF_NUM_GACTS];
    cf_model_act_layout(&c, 2, 4, a, g);
    expect("qkv stride BT*3C", (long long)a[CF_A_qkv].slice, 8 * 3 * C);
    expect("qkv stacked over L", a[CF_A_qkv].n, L);
    expect("att stride B*NH*T*T", (long long)a[CF_A_att].slice, 2 * 2 * 4 * 4);
    expect("logits (B,T,V) once", (long long)a[CF_A_logits].size, 8 * V);
    expect("scalars not kept for backward", a[CF_A_scalars].kept, 0);
    expect("dqkv scratch BT*3C", (long long)g[CF_G_dqkv], 8 * 3 * C);

    printf("linear layers and GEMMs of a step (BT = 8):\n");
    cf_linear_info li[CF_NUM_LINEARS];
    expect("linear layers", cf_model_linears(&c, li), 5);
    expect("fc: in C", li[CF_LIN_fc].in, C);
    expect("fc: out F", li[CF_LIN_fc].out, F);
    expect("fc: per layer", li[CF_LIN_fc].per_step, L);
    expect("head: weight is wte (tied)", li[CF_LIN_head].weight, CF_P_wte);
    expect("head: no bias", li[CF_LIN_head].bias, -1);
    expect("head: once per step", li[CF_LIN_head].per_step, 1);
    expect("qkv: bias qkv_b", li[CF_LIN_qkv].bias, CF_P_qkv_b);
    cf_gemm_shape s[CF_MAX_GEMM_SHAPES];
    const int ns = cf_model_gemm_shapes(&c, 2, 4, s);
    expect("GEMM shapes", ns, 15);
    /* fc_proj in F -> out C: fwd NT (8, C, F), dinp NN (8, F, C), dw TN (C, F, 8) */
    const struct {
        const char *name;
        int ta, tb, M, N, K, per;
    } want[] = {{"fc_proj.fwd", 0, 1, 8, C, F, L},
                {"fc_proj.dinp", 0, 0, 8, F, C, L},
                {"fc_proj.dw", 1, 0, C, F, 8, L},
                {"head.fwd", 0, 1, 8, V, C, 1},
                {"head.dw", 1, 0, V, C, 8, 1}};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        const cf_gemm_shape *h = NULL;
        for (int i = 0; i < ns; i++)
            if (!strcmp(s[i].name, want[k].name)) h = &s[i];
        char what[64];
        snprintf(what, sizeof what, "%s ta,tb,M,N,K,per_step", want[k].name);
        const long long gotv = h ? ((((((long long)h->ta * 2 + h->tb) * 1000 + h->M) * 1000 +
                                        h->N) * 1000 + h->K) * 10 + h->per_step)
                                 : -1;
        const long long wantv = (((((long long)want[k].ta * 2 + want[k].tb) * 1000 + want[k].M) *
                                      1000 + want[k].N) * 1000 + want[k].K) * 10 + want[k].per;
        expect(what, gotv, wantv);
    }
    printf(g_fail ? "FAILED\n" : "all ok\n");
    return g_fail;
}
