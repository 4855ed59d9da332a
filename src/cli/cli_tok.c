/* clformer: the CLI's view of a checkpoint's tokenizer (byte-level or BPE), identity-checked
 * against the hash the checkpoint recorded at training time. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "clformer/common.h"
#include "tokenizer/tokenizer.h"

struct cf_tok {
    cf_tokenizer *t;
};

int cf_cli_tok_open(const cf_config *cfg, uint64_t expected_hash, const char *ckpt_path,
                    cf_tok **out) {
    *out = NULL;
    cf_tokenizer *t = NULL;
    CF_TRY(cf_tokenizer_load(cfg->tokenizer, &t));
    uint64_t h = cf_tokenizer_hash(t);
    if (expected_hash != 0 && h != expected_hash) {
        CF_ERROR("checkpoint %s: was trained with tokenizer %016" PRIx64 " but %s is %016" PRIx64
                 "; restore the tokenizer file the model was trained with",
                 ckpt_path, expected_hash, cfg->tokenizer, h);
        cf_tokenizer_free(t);
        return CF_ERR_FORMAT;
    }
    if (cf_tokenizer_vocab_size(t) > (uint32_t)cfg->vocab_size) {
        CF_ERROR("checkpoint %s: tokenizer %s has %u ids but the model's vocab_size is %d",
                 ckpt_path, cfg->tokenizer, cf_tokenizer_vocab_size(t), cfg->vocab_size);
        cf_tokenizer_free(t);
        return CF_ERR_FORMAT;
    }
    cf_tok *k = calloc(1, sizeof *k);
    if (!k) {
        cf_tokenizer_free(t);
        return CF_ERR_NOMEM;
    }
    k->t = t;
    *out = k;
    return CF_OK;
}

int cf_cli_tok_encode(cf_tok *k, const char *text, size_t len, int32_t **ids, size_t *n) {
    cf_token_buf b = {0};
    int rc = cf_tokenizer_encode(k->t, (const uint8_t *)text, len, &b);
    if (rc < 0) {
        cf_token_buf_free(&b);
        return rc;
    }
    *ids = malloc(sizeof(int32_t) * (b.n ? b.n : 1));
    if (!*ids) {
        cf_token_buf_free(&b);
        return CF_ERR_NOMEM;
    }
    for (size_t i = 0; i < b.n; i++) (*ids)[i] = (int32_t)b.ids[i];
    *n = b.n;
    cf_token_buf_free(&b);
    return CF_OK;
}

int cf_cli_tok_print(cf_tok *k, int32_t id, FILE *out) {
    size_t len = 0;
    const uint8_t *bytes = cf_tokenizer_token_bytes(k->t, (uint32_t)id, &len);
    if (!bytes) return CF_OK; /* ids past the tokenizer (padding of vocab_size) print nothing */
    fwrite(bytes, 1, len, out);
    return CF_OK;
}

const uint8_t *cf_cli_tok_bytes(cf_tok *k, int32_t id, size_t *len) {
    *len = 0;
    if (id < 0) return NULL;
    return cf_tokenizer_token_bytes(k->t, (uint32_t)id, len);
}

int32_t cf_cli_tok_eot_id(cf_tok *k) { return cf_tokenizer_eot_id(k->t); }

int32_t cf_cli_tok_eot(cf_tok *k) {
    int32_t e = cf_tokenizer_eot_id(k->t);
    return e >= 0 ? e : '\n';
}

void cf_cli_tok_free(cf_tok *k) {
    if (!k) return;
    cf_tokenizer_free(k->t);
    free(k);
}
