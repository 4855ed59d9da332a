/* clformer: `clformer tokenizer train|encode|decode|info` and `clformer prepare`. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clformer/common.h"
#include "tokenizer/tokenizer.h"

static const char *TOKENIZER_HELP =
    "usage: clformer tokenizer train --vocab-size N --input PATH... --out tokenizer.json "
    "[--threads N]\n"
    "       clformer tokenizer encode --tokenizer FILE [--input FILE]\n"
    "       clformer tokenizer decode --tokenizer FILE [--input FILE]\n"
    "       clformer tokenizer info --tokenizer FILE\n"
    "\n"
    "train   learns a byte-level BPE (GPT-2 pre-tokenization, every byte representable, "
    "<|endoftext|>\n"
    "        as the last id) from text files and directories (walked recursively; binary files "
    "are\n"
    "        skipped) and writes it in the Hugging Face `tokenizers` JSON format. N counts all "
    "ids:\n"
    "        256 bytes + merges + <|endoftext|>.\n"
    "encode  prints the ids of the input (stdin when no --input), space-separated.\n"
    "decode  reads whitespace-separated ids (stdin when no --input) and writes their bytes.\n"
    "info    prints vocab size, end-of-text id and the identity hash shards record.\n"
    "FILE may be \"byte\" for the built-in byte tokenizer (id = byte value).\n"
    "Options: --quiet (no progress bar), --verbose.\n";

static const char *PREPARE_HELP =
    "usage: clformer prepare --tokenizer FILE --input PATH... --out DIR [--val-fraction F]\n"
    "                        [--blank-line-docs] [--shard-tokens N] [--seed S] [--threads N]\n"
    "\n"
    "Encodes text files and directories (walked recursively, binary files skipped) with the "
    "tokenizer\n"
    "on all cores and writes DIR/train.bin and DIR/val.bin (DIR/train_00000.bin, ... with\n"
    "--shard-tokens) plus DIR/meta.json. Ids are uint16 when the vocab fits, else uint32, after a\n"
    "header with magic, version, token count, dtype and the tokenizer's hash; <|endoftext|> "
    "follows\n"
    "every document. A document is one file, or with --blank-line-docs a block of text between "
    "blank\n"
    "lines. Text goes to val in units (a document, or ~1 MB of a longer one) with probability F\n"
    "(default 0.05), drawn from the seed (default 1337). Earlier shards in DIR are replaced.\n"
    "Train with: data=DIR tokenizer=FILE vocab_size=<the tokenizer's vocab size>.\n";

/* Shared option parsing: log level flags. Returns 1 when argv[i] was one of them. */
static int log_flag(const char *a) {
    if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
        cf_log_set_level(CF_LOG_WARN);
        return 1;
    }
    if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
        cf_log_set_level(CF_LOG_DEBUG);
        return 1;
    }
    return 0;
}

static int need(int argc, char **argv, int i, const char *cmd) {
    if (i + 1 >= argc || (argv[i + 1][0] == '-' && argv[i + 1][1] == '-')) {
        CF_ERROR("%s: option %s needs a value; see `clformer %s --help`", cmd, argv[i], cmd);
        return 0;
    }
    return 1;
}

static int parse_u64(const char *cmd, const char *opt, const char *s, uint64_t lo, uint64_t hi,
                     uint64_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || !end || *end || s[0] == '-' || v < lo || v > hi) {
        CF_ERROR("%s: %s '%s' is not an integer in [%" PRIu64 ", %" PRIu64 "]", cmd, opt, s, lo,
                 hi);
        return CF_ERR_INVALID;
    }
    *out = v;
    return CF_OK;
}

static int exit_code(int rc) { return rc == CF_OK ? 0 : rc == CF_ERR_INTERRUPTED ? 130 : 1; }

/* --input PATH [PATH ...]: every following argument up to the next option. */
static int take_inputs(int argc, char **argv, int *i, const char ***inputs, int *n,
                       const char *cmd) {
    if (!need(argc, argv, *i, cmd)) return CF_ERR_INVALID;
    while (*i + 1 < argc && !(argv[*i + 1][0] == '-' && argv[*i + 1][1] == '-')) {
        const char **ni = realloc(*inputs, (size_t)(*n + 1) * sizeof *ni);
        if (!ni) return CF_ERR_NOMEM;
        *inputs = ni;
        (*inputs)[(*n)++] = argv[++*i];
    }
    return CF_OK;
}

static int read_input(const char *path, char **data, size_t *len) {
    if (path && strcmp(path, "-") != 0) return cf_read_file(path, data, len);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return CF_ERR_NOMEM;
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, stdin)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return CF_ERR_NOMEM;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (ferror(stdin)) {
        free(buf);
        CF_ERROR("cannot read standard input: %s", strerror(errno));
        return CF_ERR_IO;
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return CF_OK;
}

static int cmd_train(int argc, char **argv) {
    cf_bpe_train_opts o = {0};
    const char **inputs = NULL;
    int n_inputs = 0, rc = CF_OK;
    uint64_t v = 0, threads = 0;
    o.progress = 1;
    for (int i = 1; i < argc && rc == CF_OK; i++) {
        const char *a = argv[i];
        if (log_flag(a)) continue;
        if (!strcmp(a, "--vocab-size")) {
            if (!need(argc, argv, i, "tokenizer train"))
                rc = CF_ERR_INVALID;
            else
                rc = parse_u64("tokenizer train", a, argv[++i], 257, 1u << 24, &v);
        } else if (!strcmp(a, "--input")) {
            rc = take_inputs(argc, argv, &i, &inputs, &n_inputs, "tokenizer train");
        } else if (!strcmp(a, "--out")) {
            if (!need(argc, argv, i, "tokenizer train"))
                rc = CF_ERR_INVALID;
            else
                o.out_path = argv[++i];
        } else if (!strcmp(a, "--threads")) {
            if (!need(argc, argv, i, "tokenizer train"))
                rc = CF_ERR_INVALID;
            else
                rc = parse_u64("tokenizer train", a, argv[++i], 1, 64, &threads);
        } else {
            CF_ERROR("tokenizer train: unknown option '%s'; see `clformer tokenizer --help`", a);
            rc = CF_ERR_INVALID;
        }
    }
    if (rc == CF_OK && (!v || !n_inputs || !o.out_path)) {
        CF_ERROR("tokenizer train: needs --vocab-size N, --input PATH and --out FILE; see "
                 "`clformer tokenizer "
                 "--help`");
        rc = CF_ERR_INVALID;
    }
    if (rc < 0) {
        free(inputs);
        return 2;
    }
    o.vocab_size = (uint32_t)v;
    o.inputs = inputs;
    o.n_inputs = n_inputs;
    o.threads = (int)threads;
    o.progress = cf_log_get_level() >= CF_LOG_INFO;
    cf_install_sigint_handler();
    cf_bpe_train_stats st;
    rc = cf_tokenizer_train(&o, &st);
    free(inputs);
    if (rc == CF_OK)
        CF_INFO("wrote %s: %u ids (%u merges) from %.1f MB in %" PRIu64 " file(s), %" PRIu64
                " distinct words; counting %.2fs, merges %.2fs",
                o.out_path, st.vocab_size, st.merges, (double)st.input_bytes / 1e6, st.files,
                st.distinct_words, st.count_seconds, st.merge_seconds);
    return exit_code(rc);
}

/* Common options of encode / decode / info. */
static int parse_io(int argc, char **argv, const char *cmd, const char **tok, const char **input) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (log_flag(a)) continue;
        if (!strcmp(a, "--tokenizer")) {
            if (!need(argc, argv, i, cmd)) return CF_ERR_INVALID;
            *tok = argv[++i];
        } else if (!strcmp(a, "--input") && input) {
            if (!need(argc, argv, i, cmd)) return CF_ERR_INVALID;
            *input = argv[++i];
        } else {
            CF_ERROR("%s: unknown option '%s'; see `clformer tokenizer --help`", cmd, a);
            return CF_ERR_INVALID;
        }
    }
    if (!*tok) {
        CF_ERROR("%s: needs --tokenizer FILE (a tokenizer.json, or \"byte\")", cmd);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}

static int cmd_encode(int argc, char **argv) {
    const char *tpath = NULL, *input = NULL;
    if (parse_io(argc, argv, "tokenizer encode", &tpath, &input) < 0) return 2;
    cf_tokenizer *tok;
    int rc = cf_tokenizer_load(tpath, &tok);
    if (rc < 0) return exit_code(rc);
    char *text = NULL;
    size_t len = 0;
    cf_token_buf ids = {0};
    rc = read_input(input, &text, &len);
    if (rc == CF_OK) rc = cf_tokenizer_encode(tok, (const uint8_t *)text, len, &ids);
    if (rc == CF_OK) {
        /* decimal ids written by hand (snprintf per id would dominate the run time) */
        char buf[1 << 16];
        size_t o = 0;
        for (size_t i = 0; i < ids.n; i++) {
            if (o > sizeof buf - 16) {
                fwrite(buf, 1, o, stdout);
                o = 0;
            }
            if (i) buf[o++] = ' ';
            char d[12];
            int k = 0;
            uint32_t v = ids.ids[i];
            do {
                d[k++] = (char)('0' + v % 10);
                v /= 10;
            } while (v);
            while (k) buf[o++] = d[--k];
        }
        buf[o++] = '\n';
        fwrite(buf, 1, o, stdout);
        if (fflush(stdout) != 0) {
            CF_ERROR("tokenizer encode: cannot write the ids: %s", strerror(errno));
            rc = CF_ERR_IO;
        }
    }
    free(text);
    cf_token_buf_free(&ids);
    cf_tokenizer_free(tok);
    return exit_code(rc);
}

static int cmd_decode(int argc, char **argv) {
    const char *tpath = NULL, *input = NULL;
    if (parse_io(argc, argv, "tokenizer decode", &tpath, &input) < 0) return 2;
    cf_tokenizer *tok;
    int rc = cf_tokenizer_load(tpath, &tok);
    if (rc < 0) return exit_code(rc);
    char *text = NULL;
    size_t len = 0;
    cf_token_buf ids = {0};
    rc = read_input(input, &text, &len);
    for (size_t i = 0; rc == CF_OK && i < len;) {
        while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' ||
                           text[i] == '\r' || text[i] == ','))
            i++;
        if (i >= len) break;
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(text + i, &end, 10);
        if (end == text + i || errno || v > UINT32_MAX || text[i] == '-' || text[i] == '+') {
            size_t k = 0;
            while (i + k < len && k < 20 && text[i + k] != ' ' && text[i + k] != '\n') k++;
            CF_ERROR("tokenizer decode: '%.*s' at byte %zu of %s is not a token id; the input is "
                     "whitespace-"
                     "separated integers (the output of `clformer tokenizer encode`)",
                     (int)k, text + i, i, input ? input : "stdin");
            rc = CF_ERR_INVALID;
            break;
        }
        rc = cf_token_buf_push(&ids, (uint32_t)v);
        i = (size_t)(end - text);
    }
    uint8_t *out = NULL;
    size_t olen = 0;
    if (rc == CF_OK) rc = cf_tokenizer_decode(tok, ids.ids, ids.n, &out, &olen);
    if (rc == CF_OK && (fwrite(out, 1, olen, stdout) != olen || fflush(stdout) != 0)) {
        CF_ERROR("tokenizer decode: cannot write the text: %s", strerror(errno));
        rc = CF_ERR_IO;
    }
    free(out);
    free(text);
    cf_token_buf_free(&ids);
    cf_tokenizer_free(tok);
    return exit_code(rc);
}

static int cmd_info(int argc, char **argv) {
    const char *tpath = NULL;
    if (parse_io(argc, argv, "tokenizer info", &tpath, NULL) < 0) return 2;
    cf_tokenizer *tok;
    int rc = cf_tokenizer_load(tpath, &tok);
    if (rc < 0) return exit_code(rc);
    printf("tokenizer:  %s\n", cf_tokenizer_name(tok));
    printf("kind:       %s\n",
           cf_tokenizer_kind(tok) == CF_TOKENIZER_BYTE ? "byte" : "byte-level BPE");
    printf("vocab_size: %u\n", cf_tokenizer_vocab_size(tok));
    printf("eot_id:     %d\n", (int)cf_tokenizer_eot_id(tok));
    printf("hash:       %016" PRIx64 "\n", cf_tokenizer_hash(tok));
    cf_tokenizer_free(tok);
    return 0;
}

int cf_cmd_tokenizer(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(TOKENIZER_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(TOKENIZER_HELP, stdout);
            return 0;
        }
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(sub, "encode")) return cmd_encode(argc - 1, argv + 1);
    if (!strcmp(sub, "decode")) return cmd_decode(argc - 1, argv + 1);
    if (!strcmp(sub, "info")) return cmd_info(argc - 1, argv + 1);
    CF_ERROR("tokenizer: unknown subcommand '%s'; use train, encode, decode or info", sub);
    return 2;
}

int cf_cmd_prepare(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(PREPARE_HELP, stdout);
            return 0;
        }
    }
    cf_prepare_opts o = {0};
    const char **inputs = NULL;
    int n_inputs = 0, rc = CF_OK;
    uint64_t threads = 0;
    o.val_fraction = 0.05;
    o.seed = 1337;
    for (int i = 1; i < argc && rc == CF_OK; i++) {
        const char *a = argv[i];
        if (log_flag(a)) continue;
        if (!strcmp(a, "--tokenizer")) {
            if (!need(argc, argv, i, "prepare"))
                rc = CF_ERR_INVALID;
            else
                o.tokenizer = argv[++i];
        } else if (!strcmp(a, "--input")) {
            rc = take_inputs(argc, argv, &i, &inputs, &n_inputs, "prepare");
        } else if (!strcmp(a, "--out")) {
            if (!need(argc, argv, i, "prepare"))
                rc = CF_ERR_INVALID;
            else
                o.out_dir = argv[++i];
        } else if (!strcmp(a, "--val-fraction")) {
            if (!need(argc, argv, i, "prepare")) {
                rc = CF_ERR_INVALID;
            } else {
                char *end = NULL;
                const char *s = argv[++i];
                o.val_fraction = strtod(s, &end);
                if (!end || *end || !(o.val_fraction >= 0.0 && o.val_fraction < 1.0)) {
                    CF_ERROR("prepare: --val-fraction '%s' must be a number in [0, 1), e.g. 0.05",
                             s);
                    rc = CF_ERR_INVALID;
                }
            }
        } else if (!strcmp(a, "--blank-line-docs")) {
            o.blank_line_docs = 1;
        } else if (!strcmp(a, "--shard-tokens")) {
            if (!need(argc, argv, i, "prepare"))
                rc = CF_ERR_INVALID;
            else
                rc = parse_u64("prepare", a, argv[++i], 1, UINT64_MAX / 8, &o.shard_tokens);
        } else if (!strcmp(a, "--seed")) {
            if (!need(argc, argv, i, "prepare"))
                rc = CF_ERR_INVALID;
            else
                rc = parse_u64("prepare", a, argv[++i], 0, UINT64_MAX, &o.seed);
        } else if (!strcmp(a, "--threads")) {
            if (!need(argc, argv, i, "prepare"))
                rc = CF_ERR_INVALID;
            else
                rc = parse_u64("prepare", a, argv[++i], 1, 64, &threads);
        } else {
            CF_ERROR("prepare: unknown option '%s'; see `clformer prepare --help`", a);
            rc = CF_ERR_INVALID;
        }
    }
    if (rc == CF_OK && (!o.tokenizer || !n_inputs || !o.out_dir)) {
        CF_ERROR("prepare: needs --tokenizer FILE, --input PATH and --out DIR; see `clformer "
                 "prepare --help`");
        rc = CF_ERR_INVALID;
    }
    if (rc < 0) {
        free(inputs);
        return 2;
    }
    o.inputs = inputs;
    o.n_inputs = n_inputs;
    o.threads = (int)threads;
    o.progress = cf_log_get_level() >= CF_LOG_INFO;
    cf_install_sigint_handler();
    cf_prepare_stats st;
    rc = cf_prepare_run(&o, &st);
    free(inputs);
    if (rc == CF_OK)
        CF_INFO("wrote %s: %" PRIu64 " train + %" PRIu64 " val tokens from %" PRIu64
                " document(s) in %" PRIu64 " file(s) (%.1f MB, %" PRIu64
                " binary skipped), %.1f MB/s",
                o.out_dir, st.train_tokens, st.val_tokens, st.documents, st.files,
                (double)st.input_bytes / 1e6, st.skipped_files,
                st.seconds > 0 ? (double)st.input_bytes / 1e6 / st.seconds : 0.0);
    return exit_code(rc);
}
