/* clformer: command-line entry point: train, generate, eval, export, devices, tokenizer, prepare. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "backend/backend.h"
#include "backend/verify.h"
#include "cli/cli.h"
#include "clformer/common.h"
#include "clformer/config.h"
#include "data/dataset.h"
#include "dist/dist.h"
#include "io/safetensors.h"
#include "model/gpt.h"
#include "model/infer.h"
#include "train/checkpoint.h"
#include "train/train.h"

static const char *USAGE =
    "clformer " CF_VERSION_STRING " - train and run GPT-style language models on OpenCL devices "
    "or the CPU\n"
    "\n"
    "usage: clformer <command> [options]\n"
    "\n"
    "commands:\n"
    "  train CONFIG      train a model from a JSON config (key=value overrides allowed)\n"
    "  generate CKPT     generate text from a checkpoint (file or run directory): KV cache,\n"
    "                    batches of prompts (--prompts FILE --batch N), sampling, int8 models\n"
    "  chat CKPT         a plain-text conversation kept in the KV cache between turns\n"
    "  quantize CKPT     write an int8 (weight-only) model: --out FILE\n"
    "  eval CKPT         mean next-token loss of a checkpoint on a text file\n"
    "  export CKPT       export to the Hugging Face format (GPT2LMHeadModel)\n"
    "  devices           list the devices and whether clformer can use them; --verify checks\n"
    "                    every op and a training step on each against the CPU reference\n"
    "  tokenizer         train / encode / decode a byte-level BPE tokenizer\n"
    "  prepare           encode a text corpus into token shards for training\n"
    "  bench CONFIG      measure training speed (tokens/s, MFU, memory); bench --generate\n"
    "                    CKPT-or-CONFIG measures prefill and decode tokens/s\n"
    "  logits CKPT       write the logits of a token sequence (for checking exports)\n"
    "\n"
    "global options: --quiet, --verbose, --help; `clformer <command> --help` for details\n";

/* ---- small argument helpers ------------------------------------------------------------ */

int cf_cli_need_value(int argc, char **argv, int i, const char *cmd) {
    if (i + 1 >= argc) {
        CF_ERROR("%s: option %s needs a value; see `clformer %s --help`", cmd, argv[i], cmd);
        return 0;
    }
    return 1;
}

int cf_cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || *end || v < lo || v > hi) {
        CF_ERROR("%s: %s expects an integer in [%ld, %ld], got '%s'", cmd, opt, lo, hi, s);
        return CF_ERR_INVALID;
    }
    *out = (int)v;
    return CF_OK;
}

int cf_cli_parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi,
                       float *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || *end || !(v >= lo && v <= hi)) {
        CF_ERROR("%s: %s expects a number in [%g, %g], got '%s'", cmd, opt, lo, hi, s);
        return CF_ERR_INVALID;
    }
    *out = (float)v;
    return CF_OK;
}

/* global flags accepted anywhere */
static int global_flag(const char *a) {
    if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
        cf_log_set_level(CF_LOG_WARN);
        return 1;
    }
    if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
        cf_log_set_level(CF_LOG_DEBUG);
        return 1;
    }
    return 0;
}

static int exit_code(int rc) {
    if (rc == CF_OK) return 0;
    if (rc == CF_ERR_INTERRUPTED) return 130;
    return 1;
}

/* ---- train ------------------------------------------------------------------------------- */

static const char *TRAIN_HELP =
    "usage: clformer train CONFIG [options] [key=value ...]\n"
    "\n"
    "Train a model described by a JSON config (see configs/). Any config key can be overridden\n"
    "on the command line as key=value (e.g. steps=100 data=corpus.txt learning_rate=3e-4).\n"
    "\n"
    "options:\n"
    "  --device D      cpu, auto (default: the fastest device for this config, timed once and\n"
    "                  cached), auto:first (the first usable GPU, else CPU), opencl, opencl:P:D,\n"
    "                  or a substring of a device/platform name (env CLFORMER_DEVICE)\n"
    "  --gemm G        GEMM path: auto, clblast, native (OpenCL); auto, blas, native (CPU)\n"
    "  --precision P   fp32 (default) or tf32: GEMM inputs rounded to TF32 on tensor cores\n"
    "                  (NVIDIA compute capability 8.0+; elsewhere fp32); or bf16: GEMM inputs\n"
    "                  rounded to bf16, fp32 accumulation (CPU backend: AMX or AVX512-BF16,\n"
    "                  elsewhere on the CPU fp32; OpenCL: tensor cores on NVIDIA 8.0+, else\n"
    "                  rounded in the GEMM kernel); or fp16: GEMM inputs rounded to IEEE\n"
    "                  half, fp32 accumulation, dynamic loss scaling (keys loss_scale,\n"
    "                  loss_scale_window; CPU backend, and OpenCL as bf16);\n"
    "                  same as precision=P\n"
    "  --tuning FILE   OpenCL tuning file from clformer-tune (default: configs/tuning/ when one\n"
    "                  matches the device; 'off' for none; env CF_TUNING; docs/tuning.md)\n"
    "  --steps N       number of optimizer steps (same as steps=N)\n"
    "  --out DIR       checkpoint directory (default runs/<config name>); one run at a time\n"
    "  --resume CKPT   continue from a checkpoint file or run directory, exactly\n"
    "  --stop-after N  stop after N steps in this invocation (writes a checkpoint)\n"
    "  --log FILE      write one JSON line per step (step, loss, lr, grad_norm, tokens_per_s)\n"
    "                  and one per evaluation (step, val_loss)\n"
    "  --target-loss X stop once a periodic validation loss (every eval_interval steps) is <= X:\n"
    "                  prints the wall time and training tokens used (also in --log), saves a\n"
    "                  checkpoint, exits 0; needs validation data\n"
    "  --keep N        keep the newest N checkpoints in --out (default 2)\n"
    "  --profile       per-layer, per-op time table (forward and backward: GEMM, attention,\n"
    "                  norms, activations, loss, optimizer, transfers) over the steps after\n"
    "                  the first; ops are synchronised one by one while profiled, so those\n"
    "                  steps run slower\n"
    "  --profile-steps N  steps profiled by --profile / --trace (default 10)\n"
    "  --trace FILE    Chrome trace (JSON trace events) of the profiled steps (ui.perfetto.dev)\n"
    "  --quiet/--verbose  --verbose adds each step's device allocations to the progress line\n"
    "  --bucket-mb X   data-parallel runs: gradient all-reduce bucket size (default 25)\n"
    "  --comm C        data-parallel runs: auto (default), thread (a communication thread runs\n"
    "                  the all-reduces; GPUs) or inline (progressed from the backward; CPU)\n"
    "\n"
    "Ctrl-C saves a checkpoint and exits; resume with --resume DIR.\n"
    "\n"
    "Data-parallel training (a build with MPI): `mpirun -np N clformer train CONFIG ...` trains\n"
    "one model on N processes, one device each; the global batch is batch_size x grad_accum_steps\n"
    "x N. --device takes one device for every rank, a comma-separated list of one per rank\n"
    "(opencl:0:0,opencl:0:1), or auto: the GPUs of each node by local rank. Rank 0 prints, logs\n"
    "and writes the checkpoints; every rank loads --resume. See docs/distributed.md.\n";

static cf_backend_options g_backend_options;

cf_backend_options *cf_cli_backend_options(void) { return &g_backend_options; }

static int cmd_train(int argc, char **argv) {
    cf_train_opts o;
    memset(&o, 0, sizeof o);
    cf_config_defaults(&o.cfg);
    const char *config_path = NULL, *gemm = NULL;
    int steps = -1;
    static char out_buf[CF_PATH_MAX];
    /* one pass over the options; key=value overrides are applied after the config file loads */
    const char *overrides[256];
    int n_over = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (global_flag(a)) continue;
        if (strcmp(a, "--device") == 0) {
            if (!cf_cli_need_value(argc, argv, i, "train")) return 1;
            o.device = argv[++i];
        } else if (strcmp(a, "--gemm") == 0) {
            if (!cf_cli_need_value(argc, argv, i, "train")) return 1;
            gemm = argv[++i];
        } else if (strcmp(a, "--tuning") == 0) {
            if (!cf_cli_need_value(argc, argv, i, "train")) return 1;
            g_backend_options.tuning = argv[++i];
        } else if (strcmp(a, "--precision") == 0) {
            if (!cf_cli_need_value(argc, argv, i, "train")) return 1;
            static char prec[64];
            snprintf(prec, sizeof prec, "precision=%.50s", argv[++i]);
            if (n_over == (int)(sizeof overrides / sizeof overrides[0])) {
                CF_ERROR("train: more than 256 key=value overrides; put them in a config file");
                return 1;
            }
            overrides[n_over++] = prec;
        } else if (strcmp(a, "--steps") == 0) {
            if (!cf_cli_need_value(argc, argv, i, "train")) return 1;
            if (cf_cli_parse_int("train", "--steps", argv[++i], 1, 1000000000, &steps) < 0)
                return 1;
        } else if (strcmp(a, "--out") == 0) {
            if (!cf_cli_need_value(argc, argv, i, "train")) return 1;
            o.out_dir = argv[++i];
        } else if (strcmp(a, "--resume") == 0) {
            if (!cf_cli_need_value(argc, argv, i, "train")) return 1;
            o.resume = argv[++i];
        } else if (strcmp(a, "--log") == 0) {
            if (!cf_cli_need_value(argc, argv, i, "train")) return 1;
            o.log_path = argv[++i];
        } else if (strcmp(a, "--stop-after") == 0) {
            if (!cf_cli_need_value(argc, argv, i, "train")) return 1;
            if (cf_cli_parse_int("train", "--stop-after", argv[++i], 1, 1000000000,
                                 &o.stop_after) < 0)
                return 1;
        } else if (strcmp(a, "--target-loss") == 0) {
            if (!cf_cli_need_value(argc, argv, i, "train")) return 1;
            if (cf_cli_parse_float("train", "--target-loss", argv[++i], 1e-6, 1e6,
                                   &o.target_loss) < 0)
                return 1;
            o.has_target = 1;
        } else if (strcmp(a, "--keep") == 0) {
            if (!cf_cli_need_value(argc, argv, i, "train")) return 1;
            if (cf_cli_parse_int("train", "--keep", argv[++i], 1, 1000000, &o.keep_checkpoints) <
                0)
                return 1;
        } else if (strcmp(a, "--profile") == 0) {
            o.profile = 1;
        } else if (strcmp(a, "--profile-steps") == 0) {
            if (!cf_cli_need_value(argc, argv, i, "train")) return 1;
            if (cf_cli_parse_int("train", "--profile-steps", argv[++i], 1, 1000000,
                                 &o.profile_steps) < 0)
                return 1;
        } else if (strcmp(a, "--trace") == 0) {
            if (!cf_cli_need_value(argc, argv, i, "train")) return 1;
            o.trace_path = argv[++i];
        } else if (strcmp(a, "--bucket-mb") == 0) {
            if (!cf_cli_need_value(argc, argv, i, "train")) return 1;
            float mb = 0.0f;
            if (cf_cli_parse_float("train", "--bucket-mb", argv[++i], 1e-6, 1024.0, &mb) < 0)
                return 1;
            o.bucket_bytes = (size_t)(mb * 1048576.0);
            if (o.bucket_bytes < sizeof(float)) o.bucket_bytes = sizeof(float);
        } else if (strcmp(a, "--comm") == 0) {
            if (!cf_cli_need_value(argc, argv, i, "train")) return 1;
            const char *v = argv[++i];
            if (!strcmp(v, "auto")) o.comm = CF_DIST_COMM_AUTO;
            else if (!strcmp(v, "inline")) o.comm = CF_DIST_COMM_INLINE;
            else if (!strcmp(v, "thread")) o.comm = CF_DIST_COMM_THREAD;
            else {
                CF_ERROR("train: --comm '%s' is not known; use auto, inline or thread", v);
                return 1;
            }
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(TRAIN_HELP, stdout);
            return 0;
        } else if (a[0] == '-') {
            CF_ERROR("train: unknown option '%s'; see `clformer train --help`", a);
            return 1;
        } else if (strchr(a, '=')) {
            if (n_over == (int)(sizeof overrides / sizeof overrides[0])) {
                CF_ERROR("train: more than 256 key=value overrides; put them in a config file");
                return 1;
            }
            overrides[n_over++] = a;
        } else if (config_path) {
            CF_ERROR("train: more than one config given ('%s' and '%s')", config_path, a);
            return 1;
        } else {
            config_path = a;
        }
    }
    o.origin = config_path ? config_path : "built-in defaults";
    int bad = config_path && cf_config_load(config_path, &o.cfg) < 0;
    for (int i = 0; i < n_over && !bad; i++)
        bad = cf_config_set(&o.cfg, overrides[i], "command line") < 0;
    if (bad) return 1;
    if (steps > 0) o.cfg.steps = steps;
    cf_config_warn_ignored(&o.cfg, n_over ? "config and command line" : o.origin);
    if (!o.out_dir) {
        snprintf(out_buf, sizeof out_buf, "runs/%s", o.cfg.name[0] ? o.cfg.name : "default");
        o.out_dir = out_buf;
    }
    if (gemm && cf_cli_set_gemm(&g_backend_options, gemm) < 0) return 1;
    o.device = cf_cli_device_from_env(o.device);
    o.backend = &g_backend_options;
    o.verbose = cf_log_get_level() >= CF_LOG_DEBUG;
    o.quiet = cf_log_get_level() < CF_LOG_INFO;
    /* under mpirun: one rank of a data-parallel run (no MPI call otherwise) */
    const int rc = cf_dist_init(cf_cli_mpi_launched_size());
    if (rc < 0) return exit_code(rc);
    return exit_code(cf_dist_finish(cf_train_run(&o)));
}

/* ---- loading a checkpoint for inference ----------------------------------------------------- */

typedef struct {
    cf_config cfg;
    cf_train_state st;
    cf_backend *be;
    cf_model *m;
    cf_tok *tok;
} loaded_model;

static void unload(loaded_model *lm) {
    cf_model_free(lm->m);
    cf_backend_destroy(lm->be);
    cf_cli_tok_free(lm->tok);
    memset(lm, 0, sizeof *lm);
}

static int load_for_inference(const char *ckpt_arg, const char *device, int B, loaded_model *lm) {
    memset(lm, 0, sizeof *lm);
    char path[CF_PATH_MAX + 64];
    CF_TRY(cf_checkpoint_resolve(ckpt_arg, path, sizeof path));
    CF_TRY(cf_checkpoint_read_config(path, &lm->cfg, &lm->st));
    int rc;
    if ((rc = cf_cli_tok_open(&lm->cfg, lm->st.tokenizer_hash, path, &lm->tok)) < 0) goto fail;
    if ((rc = cf_backend_create(cf_cli_device_from_env(device), &g_backend_options, &lm->be)) < 0)
        goto fail;
    if ((rc = cf_model_create(lm->be, &lm->cfg, B, lm->cfg.max_length, 0, &lm->m)) < 0) goto fail;
    if ((rc = cf_checkpoint_load(path, lm->m, NULL, 0)) < 0) goto fail;
    CF_DEBUG("loaded %s (step %d) on %s", path, lm->st.step, cf_be_name(lm->be));
    return CF_OK;
fail:
    unload(lm);
    return rc;
}

/* ---- eval ----------------------------------------------------------------------------------- */

static const char *EVAL_HELP =
    "usage: clformer eval CKPT --data PATH [--device D] [--batch N]\n"
    "\n"
    "Mean next-token loss over consecutive non-overlapping windows of max_length tokens covering\n"
    "the file (window i predicts tokens i*T+1 .. i*T+T from tokens i*T .. i*T+T-1; a last partial\n"
    "window is dropped). Prints `loss <value>` (nats/token). PATH is a text file, a directory of\n"
    "them, or a shard directory from `clformer prepare`, of which only the validation shards are\n"
    "read.\n";

static int cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL, *device = NULL;
    int batch = 8;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (global_flag(a)) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(EVAL_HELP, stdout);
            return 0;
        } else if (!strcmp(a, "--data")) {
            if (!cf_cli_need_value(argc, argv, i, "eval")) return 1;
            data = argv[++i];
        } else if (!strcmp(a, "--device")) {
            if (!cf_cli_need_value(argc, argv, i, "eval")) return 1;
            device = argv[++i];
        } else if (!strcmp(a, "--batch")) {
            if (!cf_cli_need_value(argc, argv, i, "eval") ||
                cf_cli_parse_int("eval", "--batch", argv[++i], 1, 4096, &batch) < 0)
                return 1;
        } else if (a[0] == '-') {
            CF_ERROR("eval: unknown option '%s'; see `clformer eval --help`", a);
            return 1;
        } else if (!ckpt) {
            ckpt = a;
        } else {
            CF_ERROR("eval: unexpected argument '%s'", a);
            return 1;
        }
    }
    if (!ckpt || !data) {
        CF_ERROR("eval: usage: clformer eval CKPT --data PATH");
        return 1;
    }
    int is8 = 0;
    {
        char p8[CF_PATH_MAX + 64];
        if (cf_checkpoint_resolve(ckpt, p8, sizeof p8) == CF_OK &&
            cf_infer_file_is_int8(p8, &is8) == CF_OK && is8) /* int8: the inference engine */
            return exit_code(cf_cli_eval_int8(p8, data, device));
    }
    loaded_model lm;
    int rc = load_for_inference(ckpt, device, batch, &lm);
    if (rc < 0) return exit_code(rc);
    if (lm.cfg.doc_mask) { /* documents masked as in training (and as eval of an int8 file) */
        const int32_t eot = cf_cli_tok_eot_id(lm.tok);
        if (eot < 0)
            CF_WARN("eval: doc_mask is set but the tokenizer has no end-of-text token; attending "
                    "across documents");
        else if ((rc = cf_model_set_doc_eot(lm.m, eot)) < 0) {
            unload(&lm);
            return exit_code(rc);
        }
    }
    int32_t *toks = NULL, *x = NULL, *y = NULL;
    size_t n = 0;
    const int T = lm.cfg.max_length;
    if ((rc = cf_dataset_load_tokens(&lm.cfg, data, &toks, &n)) < 0) goto done;
    size_t windows = n > 0 ? (n - 1) / (size_t)T : 0;
    if (windows == 0) {
        CF_ERROR("eval: data %s: %zu tokens is shorter than one window of max_length %d + 1", data,
                 n, T);
        rc = CF_ERR_INVALID;
        goto done;
    }
    x = malloc(sizeof(int32_t) * (size_t)batch * T);
    y = malloc(sizeof(int32_t) * (size_t)batch * T);
    if (!x || !y) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    double sum = 0.0;
    for (size_t w = 0; w < windows; w += (size_t)batch) {
        int b = (int)((windows - w) < (size_t)batch ? windows - w : (size_t)batch);
        for (int i = 0; i < b; i++) {
            memcpy(x + (size_t)i * T, toks + (w + i) * T, sizeof(int32_t) * T);
            memcpy(y + (size_t)i * T, toks + (w + i) * T + 1, sizeof(int32_t) * T);
        }
        float loss = 0.0f;
        if ((rc = cf_model_forward(lm.m, x, y, b, T, &loss)) < 0) goto done;
        sum += (double)loss * b;
    }
    printf("loss %.6f\n", sum / (double)windows);
    CF_DEBUG("%zu windows of %d tokens", windows, T);
    rc = CF_OK;
done:
    free(toks);
    free(x);
    free(y);
    unload(&lm);
    return exit_code(rc);
}

/* ---- logits (debug/export check) -------------------------------------------------------------- */

static int cmd_logits(int argc, char **argv) {
    const char *ckpt = NULL, *tokens = NULL, *out = NULL, *device = "cpu";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (global_flag(a)) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            puts("usage: clformer logits CKPT --tokens \"ID ID ...\" --out FILE [--device D]\n"
                 "Writes the logits (T, V) as raw little-endian float32 for checking exports.");
            return 0;
        } else if (!strcmp(a, "--tokens") && cf_cli_need_value(argc, argv, i, "logits")) {
            tokens = argv[++i];
        } else if (!strcmp(a, "--out") && cf_cli_need_value(argc, argv, i, "logits")) {
            out = argv[++i];
        } else if (!strcmp(a, "--device") && cf_cli_need_value(argc, argv, i, "logits")) {
            device = argv[++i];
        } else if (a[0] != '-' && !ckpt) {
            ckpt = a;
        } else {
            CF_ERROR("logits: unexpected argument '%s'; see `clformer logits --help`", a);
            return 1;
        }
    }
    if (!ckpt || !tokens || !out) {
        CF_ERROR("logits: usage: clformer logits CKPT --tokens \"ID ID ...\" --out FILE");
        return 1;
    }
    loaded_model lm;
    int rc = load_for_inference(ckpt, device, 1, &lm);
    if (rc < 0) return exit_code(rc);
    const int V = lm.cfg.vocab_size, T = lm.cfg.max_length;
    /* at most the model's context: the model's activations are sized for max_length */
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
    float *lg = NULL;
    FILE *f = NULL;
    int n = 0;
    if (!ids) {
        rc = CF_ERR_NOMEM;
        goto done;
    }
    for (const char *p = tokens;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ',') p++;
        if (!*p) break;
        const char *tok = p;
        size_t tl = strcspn(p, " \t\n,");
        char *end = NULL;
        errno = 0;
        long v = strtol(tok, &end, 10);
        if (end != tok + tl || errno || tl == 0) {
            CF_ERROR("logits: --tokens: '%.*s' (item %d) is not an integer token id", (int)tl, tok,
                     n + 1);
            rc = CF_ERR_INVALID;
            goto done;
        }
        if (v < 0 || v >= V) {
            CF_ERROR("logits: token id %ld is outside the vocabulary [0, %d)", v, V);
            rc = CF_ERR_INVALID;
            goto done;
        }
        if (n == T) {
            size_t total = (size_t)n + 1; /* ids given, for the message */
            for (p = end;; total++) {
                p += strspn(p, " \t\n,");
                if (!*p) break;
                p += strcspn(p, " \t\n,");
            }
            CF_ERROR("logits: --tokens has %zu ids but the model's context (max_length) is %d; "
                     "give at most %d ids",
                     total, T, T);
            rc = CF_ERR_INVALID;
            goto done;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    lg = malloc(sizeof(float) * (size_t)V * (n > 0 ? n : 1));
    if (n == 0 || !lg) {
        CF_ERROR("logits: no token ids parsed from --tokens");
        rc = CF_ERR_INVALID;
        goto done;
    }
    if ((rc = cf_model_forward(lm.m, ids, NULL, 1, n, NULL)) < 0) goto done;
    if ((rc = cf_model_logits_rows(lm.m, 0, 0, n, lg)) < 0) goto done;
    f = fopen(out, "wb");
    if (!f || fwrite(lg, sizeof(float), (size_t)V * n, f) != (size_t)V * n) {
        CF_ERROR("logits: cannot write %s", out);
        rc = CF_ERR_IO;
        goto done;
    }
    rc = CF_OK;
done:
    if (f) fclose(f);
    free(lg);
    free(ids);
    unload(&lm);
    return exit_code(rc);
}

/* ---- devices -------------------------------------------------------------------------------- */

static const char *DEVICES_HELP =
    "usage: clformer devices [--verify [--device D]]\n"
    "\n"
    "Lists every OpenCL platform and device (index for --device opencl:P:D, type, compute units,\n"
    "memory, OpenCL C version, fp16/subgroups) and whether clformer can use it, the CPU backend\n"
    "(--device cpu, always available) with its GEMM kernel, and what is cached: verifications\n"
    "and the measurements --device auto made.\n"
    "\n"
    "  --verify     run every op (forward and backward) and one training step of a small model on\n"
    "               each usable device against the CPU reference (the C backend's portable GEMM),\n"
    "               print pass/fail per op with its error, and cache the result per device and\n"
    "               driver; --device auto never picks a device that failed. Exit 1 when one\n"
    "               failed.\n"
    "  --device D   verify only D (cpu, opencl, opencl:P:D, a device-name substring)\n"
    "\n"
    "--device auto: the first time a config shape runs on a set of devices, a few training steps\n"
    "are timed on each (the CPU backend included) and the fastest is used; the decision is cached\n"
    "(CF_CACHE_DIR). --device auto:first (or CF_AUTO_MEASURE=0) takes the first usable GPU, else\n"
    "the CPU, without timing.\n";

static int cmd_devices(int argc, char **argv) {
    int verify = 0;
    const char *device = NULL;
    for (int i = 1; i < argc; i++) {
        if (global_flag(argv[i])) continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(DEVICES_HELP, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--verify")) {
            verify = 1;
        } else if (!strcmp(argv[i], "--device")) {
            if (!cf_cli_need_value(argc, argv, i, "devices")) return 1;
            device = argv[++i];
        } else {
            CF_ERROR("devices: unexpected argument '%s'; see `clformer devices --help`", argv[i]);
            return 1;
        }
    }
    if (device && !verify) {
        CF_ERROR("devices: --device selects the device to verify; use it with --verify");
        return 1;
    }
    const char *cache = g_backend_options.cache_dir;
    if (!verify) {
        /* the C backend's GEMM kernel as every command gets it (the choice cached in the cache
         * directory, or measured now) */
        cf_backend *cpu = NULL;
        if (cf_backend_create("cpu", &g_backend_options, &cpu) == CF_OK) cf_backend_destroy(cpu);
        int rc = cf_backend_list_devices(stdout);
        if (cf_device_cache_report(cache, stdout) < 0 && rc == CF_OK) rc = CF_ERR_IO;
        return exit_code(rc);
    }
    cf_device_id *ids = NULL;
    int n = 0, rc, failed = 0;
    if (device) {
        /* one device: created as any command would create it */
        cf_backend *be = NULL;
        if ((rc = cf_backend_create(device, &g_backend_options, &be)) < 0) return exit_code(rc);
        cf_verify_summary sum;
        rc = cf_verify_device(be, device, cache, stdout, &sum);
        cf_backend_destroy(be);
        if (rc < 0) return exit_code(rc);
        return sum.pass ? 0 : 1;
    }
    if ((rc = cf_device_candidates(&g_backend_options, &ids, &n)) < 0) return exit_code(rc);
    for (int i = 0; i < n; i++) {
        cf_backend *be = NULL;
        cf_verify_summary sum;
        if (i) fputc('\n', stdout);
        if ((rc = cf_backend_create(ids[i].spec, &g_backend_options, &be)) < 0 ||
            (rc = cf_verify_device(be, ids[i].spec, cache, stdout, &sum)) < 0) {
            printf("FAIL %s: the verification could not run (%s)\n", ids[i].spec,
                   cf_status_str(rc));
            failed++;
        } else {
            failed += !sum.pass;
        }
        cf_backend_destroy(be);
    }
    free(ids);
    if (n > 1) printf("\n%d of %d devices failed verification\n", failed, n);
    return failed ? 1 : 0;
}

/* ---- main ------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("clformer %s\n", CF_VERSION_STRING);
        return 0;
    }
    /* the environment, read once: backend options (CF_GEMM, CF_TUNING, CF_CACHE_DIR, ...) and, in
     * the fault-injecting build clformer-fi, the CF_FAULT_* switches */
    cf_cli_backend_options_from_env(&g_backend_options);
#ifdef CF_FAULT_INJECTION
    cf_cli_faults_from_env();
#endif
    const char *cmd = argv[1];
    int sub_argc = argc - 1;
    char **sub_argv = argv + 1;
    if (!strcmp(cmd, "train")) return cmd_train(sub_argc, sub_argv);
    if (!strcmp(cmd, "generate")) return cf_cmd_generate(sub_argc, sub_argv);
    if (!strcmp(cmd, "chat")) return cf_cmd_chat(sub_argc, sub_argv);
    if (!strcmp(cmd, "quantize")) return cf_cmd_quantize(sub_argc, sub_argv);
    if (!strcmp(cmd, "eval")) return cmd_eval(sub_argc, sub_argv);
    if (!strcmp(cmd, "export")) return cf_cmd_export(sub_argc, sub_argv);
    if (!strcmp(cmd, "logits")) return cmd_logits(sub_argc, sub_argv);
    if (!strcmp(cmd, "devices")) return cmd_devices(sub_argc, sub_argv);
    if (!strcmp(cmd, "bench")) return cf_cmd_bench(sub_argc, sub_argv);
    if (!strcmp(cmd, "tokenizer")) return cf_cmd_tokenizer(sub_argc, sub_argv);
    if (!strcmp(cmd, "prepare")) return cf_cmd_prepare(sub_argc, sub_argv);
    CF_ERROR("unknown command '%s'; run `clformer --help`", cmd);
    return 2;
}
