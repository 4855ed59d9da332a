/* clformer: helpers shared by the CLI subcommands. */
#ifndef CF_CLI_H
#define CF_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "cli/cli_env.h"
#include "clformer/config.h"

int cf_cli_need_value(int argc, char **argv, int i, const char *cmd);
int cf_cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out);
int cf_cli_parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi,
                       float *out);

/* The backend options of this run: read from the environment once at start-up
 * (cf_cli_backend_options_from_env, cli_env.h), then changed by --gemm, --tuning, ... */
struct cf_backend_options *cf_cli_backend_options(void);

/* The tokenizer a checkpoint was trained with (byte-level or BPE), checked against the hash
 * stored in the checkpoint. */
typedef struct cf_tok cf_tok;
int cf_cli_tok_open(const cf_config *cfg, uint64_t expected_hash, const char *ckpt_path,
                    cf_tok **out);
int cf_cli_tok_encode(cf_tok *t, const char *text, size_t len, int32_t **ids, size_t *n);
int cf_cli_tok_print(cf_tok *t, int32_t id, FILE *out);
int32_t cf_cli_tok_eot(cf_tok *t);
/* The bytes of token id (NULL, *len 0, for an id the tokenizer does not have). */
const uint8_t *cf_cli_tok_bytes(cf_tok *t, int32_t id, size_t *len);
/* The tokenizer's end-of-text id, or -1 when it has none (byte-level). */
int32_t cf_cli_tok_eot_id(cf_tok *t);
void cf_cli_tok_free(cf_tok *t);

int cf_cmd_export(int argc, char **argv);
int cf_cmd_bench(int argc, char **argv);
int cf_cmd_tokenizer(int argc, char **argv);
int cf_cmd_prepare(int argc, char **argv);
/* src/cli/cmd_generate.c */
int cf_cmd_generate(int argc, char **argv);
int cf_cmd_chat(int argc, char **argv);
int cf_cmd_quantize(int argc, char **argv);
/* bench --generate (called by cf_cmd_bench when its arguments hold --generate) */
int cf_cmd_bench_generate(int argc, char **argv);
/* eval of an int8 model (written by quantize): the same windows and loss as eval's fp32 path,
 * computed by the inference engine; prints `loss <value>` */
int cf_cli_eval_int8(const char *path, const char *data, const char *device);

#endif
