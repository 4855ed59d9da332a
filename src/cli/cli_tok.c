/* clformer: the CLI's view of a checkpoint's tokenizer (byte-level for now). */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "clformer/common.h"

struct cf_tok {
    int byte_level;
};

int cf_cli_tok_open(const cf_config *cfg, uint64_t expected_hash, const char *ckpt_path,
                    cf_tok **out) {
    (void)expected_hash;
    *out = NULL;
    if (strcmp(cfg->tokenizer, "byte") != 0) {
        CF_ERROR("checkpoint %s: tokenizer '%s' is not supported by this build", ckpt_path,
                 cfg->tokenizer);
        return CF_ERR_UNSUPPORTED;
    }
    cf_tok *t = calloc(1, sizeof *t);
    if (!t) return CF_ERR_NOMEM;
    t->byte_level = 1;
    *out = t;
    return CF_OK;
}

int cf_cli_tok_encode(cf_tok *t, const char *text, size_t len, int32_t **ids, size_t *n) {
    (void)t;
    *ids = malloc(sizeof(int32_t) * (len ? len : 1));
    if (!*ids) return CF_ERR_NOMEM;
    for (size_t i = 0; i < len; i++) (*ids)[i] = (unsigned char)text[i];
    *n = len;
    return CF_OK;
}

int cf_cli_tok_print(cf_tok *t, int32_t id, FILE *out) {
    (void)t;
    fputc(id & 0xff, out);
    return CF_OK;
}

int32_t cf_cli_tok_eot(cf_tok *t) {
    (void)t;
    return '\n';
}

void cf_cli_tok_free(cf_tok *t) { free(t); }
