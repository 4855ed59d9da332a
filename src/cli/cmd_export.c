/* clformer: `clformer export CKPT --format hf [--dtype f32|f16|bf16] OUTDIR`: Hugging Face
 * GPT2LMHeadModel or LlamaForCausalLM layout, tensors in fp32 or rounded to F16/BF16. The mappings
 * are data in src/model/gpt.h (the hf column of the parameter table for GPT-2, CF_LLAMA_HF for
 * Llama) and are documented in docs/hf_mapping.md and docs/model_family.md. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "clformer/common.h"
#include "io/half.h"
#include "io/safetensors.h"
#include "model/gpt.h"
#include "train/checkpoint.h"

static const char *EXPORT_HELP =
    "usage: clformer export CKPT --format hf [--dtype f32|f16|bf16] OUTDIR\n"
    "\n"
    "Writes OUTDIR/config.json and OUTDIR/model.safetensors that Hugging Face transformers loads\n"
    "with from_pretrained(OUTDIR), giving the same logits as clformer: GPT2LMHeadModel for the\n"
    "GPT-2 family (layernorm, learned positions, gelu, biases), LlamaForCausalLM for Llama-style\n"
    "models (rmsnorm, rope, swiglu, no bias; any num_kv_heads; tied or untied head). Options no\n"
    "Hugging Face class expresses (mlp relu2, logit_softcap, qk_norm, share_layers,\n"
    "attention_window, other mixes) are refused: the safetensors checkpoint is their native\n"
    "format. A BPE tokenizer (tokenizer.json) is copied alongside. See docs/hf_mapping.md and\n"
    "docs/model_family.md.\n"
    "\n"
    "  --dtype D   the tensors' type: f32 (default), f16 (IEEE half) or bf16 (bfloat16), each\n"
    "              rounded to nearest even from the checkpoint's fp32 weights; config.json says\n"
    "              float16/bfloat16. A weight beyond f16's range (65504) is refused: use bf16.\n";

/* The two Hugging Face classes that express a clformer config exactly. */
enum hf_family { HF_GPT2, HF_LLAMA };
static const char *const HF_CLASS[] = {"GPT2LMHeadModel", "LlamaForCausalLM"};

/* The family keys of a config, as the exporter reads them. */
typedef struct {
    const char *norm, *position, *mlp; /* "layernorm"/"rmsnorm", "learned"/"rope", "gelu"/... */
    int bias, num_kv_heads, qk_norm, tied, share_layers, attention_window;
    float norm_eps, rope_theta, logit_softcap;
} hf_keys;

static void hf_read_keys(const cf_config *c, hf_keys *k) {
    k->norm = c->norm == CF_NORM_RMSNORM ? "rmsnorm" : "layernorm";
    k->position = c->position == CF_POS_ROPE ? "rope" : "learned";
    k->mlp = c->mlp == CF_MLP_SWIGLU ? "swiglu" : c->mlp == CF_MLP_RELU2 ? "relu2" : "gelu";
    k->bias = c->bias;
    k->num_kv_heads = cf_config_kv_heads(c);
    k->qk_norm = c->qk_norm;
    k->tied = c->tie_embeddings;
    k->share_layers = c->share_layers;
    k->attention_window = c->attention_window;
    k->norm_eps = c->norm_eps;
    k->rope_theta = c->rope_theta;
    k->logit_softcap = c->logit_softcap;
}

/* The family keys that pick the class, with the value each class needs. */
typedef struct {
    const char *key;
    char have[32];
    const char *want[2]; /* GPT2LMHeadModel, LlamaForCausalLM; NULL: any value */
} hf_key;

/* The class of cfg, or -1 after one error line naming the option that no class expresses (or, for
 * a mix of family options, the keys that differ from the nearest class). */
static int hf_family(const hf_keys *k, int num_heads, const char *path) {
    /* options neither class has at all */
    char opt[64] = "", why[96] = "";
    if (!strcmp(k->mlp, "relu2")) {
        snprintf(opt, sizeof opt, "mlp relu2");
        snprintf(why, sizeof why, "no ReLU^2 MLP");
    } else if (k->logit_softcap > 0.0f) {
        snprintf(opt, sizeof opt, "logit_softcap %g", (double)k->logit_softcap);
        snprintf(why, sizeof why, "neither caps its logits");
    } else if (k->qk_norm) {
        snprintf(opt, sizeof opt, "qk_norm true");
        snprintf(why, sizeof why, "no QK-norm");
    } else if (k->share_layers > 0) {
        snprintf(opt, sizeof opt, "share_layers %d", k->share_layers);
        snprintf(why, sizeof why, "one set of weights per layer");
    } else if (k->attention_window > 0) {
        snprintf(opt, sizeof opt, "attention_window %d", k->attention_window);
        snprintf(why, sizeof why, "no sliding-window attention");
    }
    if (opt[0]) {
        CF_ERROR("export: %s has no Hugging Face class (GPT2LMHeadModel and LlamaForCausalLM: %s); "
                 "the safetensors checkpoint %s stays this model's native format",
                 opt, why, path);
        return -1;
    }
    char nh[16];
    snprintf(nh, sizeof nh, "%d", num_heads);
    hf_key keys[] = {
        {"norm", "", {"layernorm", "rmsnorm"}},
        {"position", "", {"learned", "rope"}},
        {"mlp", "", {"gelu", "swiglu"}},
        {"bias", "", {"true", "false"}},
        {"num_kv_heads", "", {nh, NULL}},
    };
    const int nk = (int)(sizeof keys / sizeof keys[0]);
    snprintf(keys[0].have, sizeof keys[0].have, "%s", k->norm);
    snprintf(keys[1].have, sizeof keys[1].have, "%s", k->position);
    snprintf(keys[2].have, sizeof keys[2].have, "%s", k->mlp);
    snprintf(keys[3].have, sizeof keys[3].have, "%s", k->bias ? "true" : "false");
    snprintf(keys[4].have, sizeof keys[4].have, "%d", k->num_kv_heads);
    int diff[2] = {0, 0};
    for (int f = 0; f < 2; f++)
        for (int i = 0; i < nk; i++)
            diff[f] += keys[i].want[f] && strcmp(keys[i].have, keys[i].want[f]) != 0;
    if (diff[HF_GPT2] == 0) return HF_GPT2;
    if (diff[HF_LLAMA] == 0) return HF_LLAMA;
    const int near = diff[HF_LLAMA] < diff[HF_GPT2] ? HF_LLAMA : HF_GPT2;
    char list[256] = "";
    size_t o = 0;
    for (int i = 0; i < nk && o < sizeof list; i++)
        if (keys[i].want[near] && strcmp(keys[i].have, keys[i].want[near]) != 0)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s %s (is %s)", o ? ", " : "",
                                  keys[i].key, keys[i].want[near], keys[i].have);
    CF_ERROR("export: this mix of options has no Hugging Face class; the nearest, %s, needs %s; "
             "the safetensors checkpoint %s stays this model's native format",
             HF_CLASS[near], list, path);
    return -1;
}

typedef struct {
    char name[96];
    int64_t shape[2];
    int ndim;
    float *data; /* owned */
} hf_tensor;

/* Rows [row0, row0 + rows) of one layer's slice (or of the whole tensor) of a table row as Hugging
 * Face stores it, under the name pattern hf: the slice's dims, swapped and the data transposed
 * where HF keeps it transposed. The checkpoint tensor was checked against the table
 * (cf_checkpoint_check_tensors) before. */
static int hf_slice(const cf_param_info *p, const cf_st_tensor *t, int layer, int64_t row0,
                    int64_t rows, const char *hf, int transposed, hf_tensor *h) {
    const int nd = p->ndim - p->layered; /* dims of one slice: 1 or 2 */
    const int64_t cols = nd == 2 ? p->shape[p->layered + 1] : 1;
    const size_t n = (size_t)(rows * cols);
    const float *src = (const float *)t->data + (size_t)layer * p->layer_stride + row0 * cols;
    const int tr = transposed && nd == 2;
    if (p->layered) snprintf(h->name, sizeof h->name, hf, layer);
    else snprintf(h->name, sizeof h->name, "%s", hf);
    h->ndim = nd;
    h->shape[0] = tr ? cols : rows;
    h->shape[1] = tr ? rows : cols;
    h->data = malloc(sizeof(float) * n);
    if (!h->data) {
        CF_ERROR("export: out of host memory for tensor '%s'", h->name);
        return CF_ERR_NOMEM;
    }
    if (!tr) {
        memcpy(h->data, src, sizeof(float) * n);
    } else {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) h->data[c * rows + r] = src[r * cols + c];
    }
    return CF_OK;
}

/* One entry of a family's mapping: a row part of a parameter under a Hugging Face name. */
typedef struct {
    int param;
    enum cf_row_part part;
    const char *hf;
    int transposed;
} hf_map;

/* The mapping of a family: GPT-2 from the hf columns of the parameter table, Llama from
 * CF_LLAMA_HF. Returns the number of entries. */
static int hf_mapping(enum hf_family fam, const cf_param_info *params, hf_map *out) {
    int n = 0;
    if (fam == HF_GPT2) {
        for (int i = 0; i < CF_NUM_PARAMS; i++)
            out[n++] = (hf_map){i, CF_PART_ALL, params[i].hf_name, params[i].hf_transposed};
    } else {
#define CF_X(nm, part, hf) out[n++] = (hf_map){CF_P_##nm, part, hf, 0};
        CF_LLAMA_HF(CF_X)
#undef CF_X
    }
    return n;
}

/* The float as the shortest decimal that reads back as the same float (1e-05, not
 * 9.99999974737875e-06), as a double for cJSON. */
static double json_float(float v) {
    char b[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, (double)v);
        if (strtof(b, NULL) == v) break;
    }
    return strtod(b, NULL);
}

int cf_cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *format = NULL, *outdir = NULL, *dtype = "f32";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(EXPORT_HELP, stdout);
            return 0;
        } else if (!strcmp(a, "--format")) {
            if (!cf_cli_need_value(argc, argv, i, "export")) return 1;
            format = argv[++i];
        } else if (!strcmp(a, "--dtype")) {
            if (!cf_cli_need_value(argc, argv, i, "export")) return 1;
            dtype = argv[++i];
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
    /* the tensors' type on disk: 0 F32, 1 F16, 2 BF16 */
    const int dt = !strcmp(dtype, "f32")    ? 0
                   : !strcmp(dtype, "f16")  ? 1
                   : !strcmp(dtype, "bf16") ? 2
                                            : -1;
    if (dt < 0) {
        CF_ERROR("export: --dtype '%s' is not supported; use f32, f16 or bf16", dtype);
        return 1;
    }
    static const char *const st_dtype[] = {"F32", "F16", "BF16"};
    static const char *const torch_dtype[] = {"float32", "float16", "bfloat16"};
    char path[CF_PATH_MAX + 64];
    if (cf_checkpoint_resolve(ckpt, path, sizeof path) < 0) return 1;
    cf_config cfg;
    cf_train_state st;
    if (cf_checkpoint_read_config(path, &cfg, &st) < 0) return 1;
    /* the same checks as loading the checkpoint for training or generation: the stored config
     * was range-checked above; every tensor the model description derives from it must be there
     * as F32 with exactly its shape; the tokenizer must be the one it was trained with */
    cf_param_info params[CF_NUM_PARAMS];
    cf_model_layout(&cfg, params, NULL, NULL);
    cf_st_file *f = NULL;
    if (cf_st_open(path, &f) < 0) return 1;
    if (cf_checkpoint_check_tensors(f, path, params,
                                    "the checkpoint's stored config does not match its tensors "
                                    "(the file is damaged or was edited); export another "
                                    "checkpoint") < 0) {
        cf_st_close(f);
        return 1;
    }
    cf_tok *tok = NULL;
    if (cf_cli_tok_open(&cfg, st.tokenizer_hash, path, &tok) < 0) {
        cf_st_close(f);
        return 1;
    }
    cf_cli_tok_free(tok);
    /* every value finite: a diverged run's NaN/Inf weights would load and give NaN logits */
    for (int i = 0; i < CF_NUM_PARAMS; i++) {
        if (!params[i].present) continue;
        const float *d = cf_st_find(f, params[i].name)->data;
        for (size_t k = 0; k < params[i].size; k++) {
            if (!isfinite(d[k])) {
                CF_ERROR("export: checkpoint %s: tensor '%s' holds %s at element %zu (the run "
                         "diverged); export an earlier checkpoint",
                         path, params[i].name, isnan(d[k]) ? "NaN" : "Inf", k);
                cf_st_close(f);
                return 1;
            }
        }
    }
    /* a sound checkpoint whose options no Hugging Face class expresses is refused here */
    hf_keys keys;
    hf_read_keys(&cfg, &keys);
    const int fam = hf_family(&keys, cfg.num_heads, path);
    if (fam < 0) {
        cf_st_close(f);
        return 1;
    }
    hf_map map[CF_NUM_PARAMS * 4];
    const int nmap = hf_mapping(fam, params, map);
    int64_t covered[CF_NUM_PARAMS] = {0};
    int cap = 0, n = 0, rc = 0;
    for (int e = 0; e < nmap; e++)
        if (params[map[e].param].present) cap += params[map[e].param].layered ? cfg.num_layers : 1;
    hf_tensor *ts = calloc((size_t)(cap ? cap : 1), sizeof *ts);
    if (!ts) {
        cf_st_close(f);
        return 1;
    }
    /* the mapping's entries, each over the layers; share_layers was refused, so block l is layer l */
    for (int e = 0; e < nmap && rc == 0; e++) {
        const cf_param_info *pi = &params[map[e].param];
        if (!pi->present) continue;
        int64_t row0 = 0, rows = 0;
        if (!map[e].hf || !map[e].hf[0] ||
            cf_model_row_part(&cfg, pi, map[e].part, &row0, &rows) < 0) {
            CF_ERROR("export: tensor '%s' has no %s name for this config (the mapping in "
                     "src/model/gpt.h is incomplete)", pi->name, HF_CLASS[fam]);
            rc = 1;
            break;
        }
        covered[map[e].param] += rows;
        const cf_st_tensor *t = cf_st_find(f, pi->name);
        for (int l = 0; l < (pi->layered ? cfg.num_layers : 1) && rc == 0; l++)
            if (hf_slice(pi, t, l, row0, rows, map[e].hf, map[e].transposed, &ts[n++]) < 0) rc = 1;
    }
    /* the mapping writes every present tensor whole: each row exactly once */
    for (int i = 0; i < CF_NUM_PARAMS && rc == 0; i++) {
        if (params[i].present && covered[i] != params[i].shape[params[i].layered]) {
            CF_ERROR("export: tensor '%s' is not mapped to %s exactly once (the mapping in "
                     "src/model/gpt.h is incomplete)", params[i].name, HF_CLASS[fam]);
            rc = 1;
        }
    }
    cf_st_close(f);
    char p[CF_PATH_MAX + 64];
    if (rc == 0 && cf_mkdirs(outdir) < 0) rc = 1;
    if (rc == 0) {
        cf_st_tensor *st_t = calloc((size_t)(n ? n : 1), sizeof *st_t);
        if (!st_t) rc = 1;
        for (int i = 0; rc == 0 && i < n; i++) {
            const size_t numel =
                (size_t)ts[i].shape[0] * (size_t)(ts[i].ndim == 2 ? ts[i].shape[1] : 1);
            st_t[i].name = ts[i].name;
            st_t[i].dtype = st_dtype[dt];
            st_t[i].ndim = ts[i].ndim;
            st_t[i].shape[0] = ts[i].shape[0];
            st_t[i].shape[1] = ts[i].shape[1];
            st_t[i].data = ts[i].data;
            st_t[i].nbytes = sizeof(float) * numel;
            if (dt == 0) continue;
            /* half: converted in place (2 bytes per value over the first half of the floats) */
            uint16_t *h = malloc((numel ? numel : 1) * sizeof *h);
            if (!h) {
                rc = 1;
                break;
            }
            const size_t over = dt == 1 ? cf_f32_to_f16_n(ts[i].data, h, numel)
                                        : cf_f32_to_bf16_n(ts[i].data, h, numel);
            memcpy(ts[i].data, h, numel * sizeof *h);
            free(h);
            st_t[i].nbytes = numel * sizeof(uint16_t);
            if (over) {
                CF_ERROR("export: tensor '%s' (%s) has %zu value%s beyond %s's range (+-%s) "
                         "that would become Inf; export with --dtype bf16 or f32",
                         ts[i].name, path, over, over == 1 ? "" : "s", st_dtype[dt],
                         dt == 1 ? "65504" : "3.4e38");
                rc = 1;
            }
        }
        const char *mk[] = {"format"}, *mv[] = {"pt"};
        snprintf(p, sizeof p, "%s/model.safetensors", outdir);
        if (rc == 0 && cf_st_write(p, st_t, n, mk, mv, 1) < 0) rc = 1;
        free(st_t);
    }
    if (rc == 0) {
        cJSON *j = cJSON_CreateObject();
        cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
        cJSON_AddItemToArray(arch, cJSON_CreateString(HF_CLASS[fam]));
        if (fam == HF_GPT2) {
            cJSON_AddStringToObject(j, "model_type", "gpt2");
            cJSON_AddNumberToObject(j, "vocab_size", cfg.vocab_size);
            cJSON_AddNumberToObject(j, "n_positions", cfg.max_length);
            cJSON_AddNumberToObject(j, "n_ctx", cfg.max_length);
            cJSON_AddNumberToObject(j, "n_embd", cfg.d_model);
            cJSON_AddNumberToObject(j, "n_layer", cfg.num_layers);
            cJSON_AddNumberToObject(j, "n_head", cfg.num_heads);
            cJSON_AddNumberToObject(j, "n_inner", cfg.d_ff);
            cJSON_AddStringToObject(j, "activation_function", "gelu_new");
            cJSON_AddNumberToObject(j, "layer_norm_epsilon", json_float(keys.norm_eps));
            cJSON_AddNumberToObject(j, "initializer_range", 0.02);
            cJSON_AddNumberToObject(j, "resid_pdrop", 0.0);
            cJSON_AddNumberToObject(j, "embd_pdrop", 0.0);
            cJSON_AddNumberToObject(j, "attn_pdrop", 0.0);
            cJSON_AddBoolToObject(j, "scale_attn_weights", 1);
        } else {
            cJSON_AddStringToObject(j, "model_type", "llama");
            cJSON_AddNumberToObject(j, "vocab_size", cfg.vocab_size);
            cJSON_AddNumberToObject(j, "hidden_size", cfg.d_model);
            cJSON_AddNumberToObject(j, "intermediate_size", cfg.d_ff);
            cJSON_AddNumberToObject(j, "num_hidden_layers", cfg.num_layers);
            cJSON_AddNumberToObject(j, "num_attention_heads", cfg.num_heads);
            cJSON_AddNumberToObject(j, "num_key_value_heads", keys.num_kv_heads);
            cJSON_AddNumberToObject(j, "head_dim", cfg.d_model / cfg.num_heads);
            cJSON_AddStringToObject(j, "hidden_act", "silu");
            cJSON_AddNumberToObject(j, "max_position_embeddings", cfg.max_length);
            cJSON_AddNumberToObject(j, "rms_norm_eps", json_float(keys.norm_eps));
            cJSON_AddNumberToObject(j, "rope_theta", json_float(keys.rope_theta));
            cJSON_AddNullToObject(j, "rope_scaling");
            cJSON_AddBoolToObject(j, "attention_bias", 0);
            cJSON_AddNumberToObject(j, "attention_dropout", 0.0);
            cJSON_AddBoolToObject(j, "mlp_bias", 0);
            cJSON_AddNumberToObject(j, "pretraining_tp", 1);
            cJSON_AddNumberToObject(j, "initializer_range", 0.02);
            cJSON_AddBoolToObject(j, "use_cache", 1);
        }
        cJSON_AddBoolToObject(j, "tie_word_embeddings", keys.tied);
        /* torch_dtype for transformers < 4.56, dtype for newer ones */
        cJSON_AddStringToObject(j, "torch_dtype", torch_dtype[dt]);
        cJSON_AddStringToObject(j, "dtype", torch_dtype[dt]);
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
    if (rc == 0)
        CF_INFO("exported %s to %s (Hugging Face %s, %s)", path, outdir, HF_CLASS[fam],
                torch_dtype[dt]);
    return rc;
}
