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
#include "model/gpt.h"
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

/* One layer's slice (or the whole tensor) of a table row as Hugging Face stores it: the slice's
 * dims, swapped and the data transposed where the row says HF keeps it transposed. The checkpoint
 * tensor was checked against the table (cf_checkpoint_check_tensors) before. */
static int hf_slice(const cf_param_info *p, const cf_st_tensor *t, int layer, hf_tensor *h) {
    const int nd = p->ndim - p->layered; /* dims of one slice: 1 or 2 */
    const int64_t rows = p->shape[p->layered], cols = nd == 2 ? p->shape[p->layered + 1] : 1;
    const float *src = (const float *)t->data + (size_t)layer * p->layer_stride;
    const int tr = p->hf_transposed && nd == 2;
    if (p->layered) snprintf(h->name, sizeof h->name, p->hf_name, layer);
    else snprintf(h->name, sizeof h->name, "%s", p->hf_name);
    h->ndim = nd;
    h->shape[0] = tr ? cols : rows;
    h->shape[1] = tr ? rows : cols;
    h->data = malloc(sizeof(float) * p->layer_stride);
    if (!h->data) {
        CF_ERROR("export: out of host memory for tensor '%s'", h->name);
        return CF_ERR_NOMEM;
    }
    if (!tr) {
        memcpy(h->data, src, sizeof(float) * p->layer_stride);
    } else {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) h->data[c * rows + r] = src[r * cols + c];
    }
    return CF_OK;
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
    int cap = 0, n = 0, rc = 0;
    for (int i = 0; i < CF_NUM_PARAMS; i++)
        if (params[i].present) cap += params[i].layered ? cfg.num_layers : 1;
    hf_tensor *ts = calloc((size_t)cap, sizeof *ts);
    if (!ts) {
        cf_st_close(f);
        return 1;
    }
    /* the table's rows: global tensors, then each layered row over the layers */
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        for (int i = 0; i < CF_NUM_PARAMS && rc == 0; i++) {
            const cf_param_info *pi = &params[i];
            if (!pi->present || pi->layered != pass) continue;
            const cf_st_tensor *t = cf_st_find(f, pi->name);
            if (cf_checkpoint_check_values(path, pi->name, t->data, t->nbytes / sizeof(float), 0) <
                0) {
                rc = 1;
                break;
            }
            for (int l = 0; l < (pi->layered ? cfg.num_layers : 1) && rc == 0; l++)
                if (hf_slice(pi, t, l, &ts[n++]) < 0) rc = 1;
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
