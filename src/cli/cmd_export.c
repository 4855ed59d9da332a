/* clformer: `clformer export CKPT --format hf OUTDIR`: Hugging Face GPT2LMHeadModel layout.
 * The name and transpose mapping is documented in docs/hf_mapping.md. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "clformer/common.h"
#include "io/safetensors.h"
#include "train/checkpoint.h"

static const char *EXPORT_HELP =
    "usage: clformer export CKPT --format hf OUTDIR\n"
    "\n"
    "Writes OUTDIR/config.json and OUTDIR/model.safetensors that Hugging Face transformers loads\n"
    "with GPT2LMHeadModel.from_pretrained(OUTDIR), giving the same logits as clformer. A BPE\n"
    "tokenizer (tokenizer.json) is copied alongside. See docs/hf_mapping.md.\n";

typedef struct {
    char name[96];
    int64_t shape[2];
    int ndim;
    float *data; /* owned */
} hf_tensor;

/* (rows, cols) slice of a stacked tensor, optionally transposed into (cols, rows) */
static float *slice(const cf_st_tensor *t, int layer, int64_t rows, int64_t cols, int transpose) {
    const float *src = (const float *)t->data + (size_t)layer * rows * cols;
    float *dst = malloc(sizeof(float) * (size_t)(rows * cols));
    if (!dst) return NULL;
    if (!transpose) {
        memcpy(dst, src, sizeof(float) * (size_t)(rows * cols));
    } else {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) dst[c * rows + r] = src[r * cols + c];
    }
    return dst;
}

int cf_cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *format = NULL, *outdir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(EXPORT_HELP, stdout);
            return 0;
        } else if (!strcmp(a, "--format")) {
            if (!cf_cli_need_value(argc, argv, i, "export")) return 1;
            format = argv[++i];
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "--verbose")) {
            continue;
        } else if (a[0] == '-') {
            CF_ERROR("export: unknown option '%s'; see `clformer export --help`", a);
            return 1;
        } else if (!ckpt) {
            ckpt = a;
        } else if (!outdir) {
            outdir = a;
        } else {
            CF_ERROR("export: unexpected argument '%s'", a);
            return 1;
        }
    }
    if (!ckpt || !outdir) {
        CF_ERROR("export: usage: clformer export CKPT --format hf OUTDIR");
        return 1;
    }
    if (!format || strcmp(format, "hf") != 0) {
        CF_ERROR("export: --format '%s' is not supported; the only format is 'hf'",
                 format ? format : "(missing)");
        return 1;
    }
    char path[CF_PATH_MAX + 64];
    if (cf_checkpoint_resolve(ckpt, path, sizeof path) < 0) return 1;
    cf_config cfg;
    cf_train_state st;
    if (cf_checkpoint_read_config(path, &cfg, &st) < 0) return 1;
    cf_st_file *f = NULL;
    if (cf_st_open(path, &f) < 0) return 1;
    const int L = cfg.num_layers;
    const int64_t C = cfg.d_model, F = cfg.d_ff;
    int cap = 4 + 12 * L, n = 0, rc = 0;
    hf_tensor *ts = calloc((size_t)cap, sizeof *ts);
    if (!ts) {
        cf_st_close(f);
        return 1;
    }
    /* (clformer name, hf name pattern, rows, cols, transpose, per-layer) */
    struct map {
        const char *src, *dst;
        int64_t rows, cols;
        int tr, layered;
    } maps[] = {
        {"wte", "transformer.wte.weight", cfg.vocab_size, C, 0, 0},
        {"wpe", "transformer.wpe.weight", cfg.max_length, C, 0, 0},
        {"lnf_w", "transformer.ln_f.weight", 1, C, 0, 0},
        {"lnf_b", "transformer.ln_f.bias", 1, C, 0, 0},
        {"ln1_w", "transformer.h.%d.ln_1.weight", 1, C, 0, 1},
        {"ln1_b", "transformer.h.%d.ln_1.bias", 1, C, 0, 1},
        {"qkv_w", "transformer.h.%d.attn.c_attn.weight", 3 * C, C, 1, 1},
        {"qkv_b", "transformer.h.%d.attn.c_attn.bias", 1, 3 * C, 0, 1},
        {"attn_proj_w", "transformer.h.%d.attn.c_proj.weight", C, C, 1, 1},
        {"attn_proj_b", "transformer.h.%d.attn.c_proj.bias", 1, C, 0, 1},
        {"ln2_w", "transformer.h.%d.ln_2.weight", 1, C, 0, 1},
        {"ln2_b", "transformer.h.%d.ln_2.bias", 1, C, 0, 1},
        {"fc_w", "transformer.h.%d.mlp.c_fc.weight", F, C, 1, 1},
        {"fc_b", "transformer.h.%d.mlp.c_fc.bias", 1, F, 0, 1},
        {"fc_proj_w", "transformer.h.%d.mlp.c_proj.weight", C, F, 1, 1},
        {"fc_proj_b", "transformer.h.%d.mlp.c_proj.bias", 1, C, 0, 1},
    };
    for (size_t k = 0; k < sizeof maps / sizeof maps[0] && rc == 0; k++) {
        const cf_st_tensor *t = cf_st_find(f, maps[k].src);
        if (!t) {
            CF_ERROR("export: checkpoint %s lacks tensor '%s'", path, maps[k].src);
            rc = 1;
            break;
        }
        if (cf_checkpoint_check_values(path, maps[k].src, t->data, t->nbytes / sizeof(float), 0) <
            0) {
            rc = 1;
            break;
        }
        for (int l = 0; l < (maps[k].layered ? L : 1); l++) {
            hf_tensor *h = &ts[n++];
            snprintf(h->name, sizeof h->name, maps[k].dst, l);
            h->data = slice(t, l, maps[k].rows, maps[k].cols, maps[k].tr);
            if (!h->data) {
                rc = 1;
                break;
            }
            if (maps[k].rows == 1) {
                h->ndim = 1;
                h->shape[0] = maps[k].cols;
            } else {
                h->ndim = 2;
                h->shape[0] = maps[k].tr ? maps[k].cols : maps[k].rows;
                h->shape[1] = maps[k].tr ? maps[k].rows : maps[k].cols;
            }
        }
    }
    cf_st_close(f);
    char p[CF_PATH_MAX + 64];
    if (rc == 0 && cf_mkdirs(outdir) < 0) rc = 1;
    if (rc == 0) {
        cf_st_tensor *st_t = calloc((size_t)n, sizeof *st_t);
        if (!st_t) rc = 1;
        for (int i = 0; rc == 0 && i < n; i++) {
            st_t[i].name = ts[i].name;
            st_t[i].dtype = "F32";
            st_t[i].ndim = ts[i].ndim;
            st_t[i].shape[0] = ts[i].shape[0];
            st_t[i].shape[1] = ts[i].shape[1];
            st_t[i].data = ts[i].data;
            st_t[i].nbytes = sizeof(float) * (size_t)ts[i].shape[0] *
                             (size_t)(ts[i].ndim == 2 ? ts[i].shape[1] : 1);
        }
        const char *mk[] = {"format"}, *mv[] = {"pt"};
        snprintf(p, sizeof p, "%s/model.safetensors", outdir);
        if (rc == 0 && cf_st_write(p, st_t, n, mk, mv, 1) < 0) rc = 1;
        free(st_t);
    }
    if (rc == 0) {
        cJSON *j = cJSON_CreateObject();
        cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
        cJSON_AddItemToArray(arch, cJSON_CreateString("GPT2LMHeadModel"));
        cJSON_AddStringToObject(j, "model_type", "gpt2");
        cJSON_AddNumberToObject(j, "vocab_size", cfg.vocab_size);
        cJSON_AddNumberToObject(j, "n_positions", cfg.max_length);
        cJSON_AddNumberToObject(j, "n_ctx", cfg.max_length);
        cJSON_AddNumberToObject(j, "n_embd", cfg.d_model);
        cJSON_AddNumberToObject(j, "n_layer", cfg.num_layers);
        cJSON_AddNumberToObject(j, "n_head", cfg.num_heads);
        cJSON_AddNumberToObject(j, "n_inner", cfg.d_ff);
        cJSON_AddStringToObject(j, "activation_function", "gelu_new");
        cJSON_AddNumberToObject(j, "layer_norm_epsilon", 1e-5);
        cJSON_AddNumberToObject(j, "initializer_range", 0.02);
        cJSON_AddNumberToObject(j, "resid_pdrop", 0.0);
        cJSON_AddNumberToObject(j, "embd_pdrop", 0.0);
        cJSON_AddNumberToObject(j, "attn_pdrop", 0.0);
        cJSON_AddBoolToObject(j, "scale_attn_weights", 1);
        cJSON_AddBoolToObject(j, "tie_word_embeddings", 1);
        cJSON_AddStringToObject(j, "torch_dtype", "float32");
        cJSON_AddNullToObject(j, "bos_token_id"); /* else transformers assumes GPT-2's 50256 */
        cJSON_AddNullToObject(j, "eos_token_id");
        cJSON_AddStringToObject(j, "clformer_tokenizer", cfg.tokenizer);
        char *s = cJSON_Print(j);
        cJSON_Delete(j);
        snprintf(p, sizeof p, "%s/config.json", outdir);
        if (!s || cf_write_file_atomic(p, s, strlen(s)) < 0) rc = 1;
        free(s);
    }
    if (rc == 0 && strcmp(cfg.tokenizer, "byte") != 0) {
        char *tj = NULL;
        size_t tl = 0;
        snprintf(p, sizeof p, "%s/tokenizer.json", outdir);
        if (cf_read_file(cfg.tokenizer, &tj, &tl) < 0 || cf_write_file_atomic(p, tj, tl) < 0) {
            CF_ERROR("export: could not copy the tokenizer %s into %s", cfg.tokenizer, outdir);
            rc = 1;
        }
        free(tj);
    }
    for (int i = 0; i < n; i++) free(ts[i].data);
    free(ts);
    if (rc == 0) CF_INFO("exported %s to %s (Hugging Face GPT2LMHeadModel)", path, outdir);
    return rc;
}
