/* clformer: `clformer prepare`: encode a text corpus on all threads into train/val token shards.
 *
 * The corpus is cut into units: a document (a file, or a blank-line separated block with
 * blank_line_docs), or a piece of about 1 MB of a longer document cut where pre-tokenization is
 * unaffected. Each unit goes to val with probability val_fraction, drawn from (seed, unit index),
 * so the split is reproducible. Within each split's stream an end-of-text id follows every document
 * and separates pieces that were not adjacent in the text; it never appears twice in a row. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clformer/common.h"
#include "data/shards.h"
#include "tokenizer/corpus.h"
#include "tokenizer/progress.h"
#include "tokenizer/tok_internal.h"

#define PREP_READ_CHUNK ((size_t)16 << 20)  /* bytes read from a file at a time */
#define PREP_BATCH_BYTES ((size_t)32 << 20) /* text encoded per parallel batch */
#define PREP_UNIT_BYTES ((size_t)1 << 20)   /* longer documents are cut into pieces of about this */

typedef struct {
    const uint8_t *p;
    size_t n;
    int doc_end;  /* the unit ends its document */
    uint64_t doc; /* document number */
} unit;

typedef struct {
    uint8_t **blocks;
    size_t nblocks, cap_blocks;
    unit *u;
    size_t nu, cap_u;
    size_t bytes;
    cf_token_buf *out; /* (cap_out) ids per unit */
    size_t cap_out;
} batch;

typedef struct {
    const char *name; /* "train" / "val" */
    cf_shard_writer *w;
    int shard;         /* index of the open shard */
    int64_t open_doc;  /* document whose last written unit did not end it, or -1 */
    int64_t last_unit; /* index of the last unit written */
    int last_was_sep;  /* the stream ends with the separator */
    uint64_t tokens;
} split_out;

typedef struct {
    const cf_prepare_opts *o;
    cf_tokenizer *tok;
    uint32_t dtype, sep;
    split_out sp[2];
    uint64_t unit_index, doc_index;
    cf_tok_encoder **enc;
    int nt;
    int shards_done; /* shards closed so far (for opts->stop_after_shards) */
} prep;

static int batch_add_block(batch *b, const uint8_t *data, size_t n, uint8_t **copy) {
    if (b->nblocks == b->cap_blocks) {
        size_t c = b->cap_blocks ? b->cap_blocks * 2 : 16;
        uint8_t **nb = realloc(b->blocks, c * sizeof *nb);
        if (!nb) return CF_ERR_NOMEM;
        b->blocks = nb;
        b->cap_blocks = c;
    }
    uint8_t *p = malloc(n ? n : 1);
    if (!p) return CF_ERR_NOMEM;
    memcpy(p, data, n);
    b->blocks[b->nblocks++] = p;
    b->bytes += n;
    *copy = p;
    return CF_OK;
}

static int batch_add_unit(batch *b, const uint8_t *p, size_t n, int doc_end, uint64_t doc) {
    if (b->nu == b->cap_u) {
        size_t c = b->cap_u ? b->cap_u * 2 : 1024;
        unit *nu = realloc(b->u, c * sizeof *nu);
        if (!nu) return CF_ERR_NOMEM;
        b->u = nu;
        b->cap_u = c;
    }
    b->u[b->nu++] = (unit){p, n, doc_end, doc};
    return CF_OK;
}

/* One document's text (or the part of it in this piece) as units of about PREP_UNIT_BYTES. */
static int add_doc_text(prep *P, batch *b, const uint8_t *p, size_t n, int doc_end) {
    size_t pos = 0;
    size_t U = P->o->unit_bytes ? P->o->unit_bytes : PREP_UNIT_BYTES;
    while (n - pos > U + U / 2) {
        size_t c = cf_pretok_find_cut(&P->tok->sp, p, n, pos + U, pos + U / 2);
        if (!c) break; /* no exact cut near: keep the rest whole */
        CF_TRY(batch_add_unit(b, p + pos, c - pos, 0, P->doc_index));
        pos = c;
    }
    CF_TRY(batch_add_unit(b, p + pos, n - pos, doc_end, P->doc_index));
    if (doc_end) P->doc_index++;
    return CF_OK;
}

static int is_blank(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') return 0;
    return 1;
}

/* Units of a piece in blank-line mode. *open: a document continues from the previous piece (in),
 * and into the next one (out). A document is a maximal run of non-blank lines without its final
 * newline. */
static int add_blank_line_docs(prep *P, batch *b, const uint8_t *p, size_t n, int clean,
                               int *open) {
    size_t ls = 0, content_end = 0;
    int64_t doc_start = *open ? 0 : -1;
    int first = 1;
    while (ls < n) {
        const uint8_t *nl = memchr(p + ls, '\n', n - ls);
        size_t le = nl ? (size_t)(nl - p) : n;
        /* the first line of a continued document is the rest of a non-blank line */
        int blank = !(first && *open) && is_blank(p + ls, le - ls) && (nl || clean);
        first = 0;
        if (!blank) {
            if (doc_start < 0) doc_start = (int64_t)ls;
            content_end = le;
            if (nl && le > ls && p[le - 1] == '\r') content_end = le - 1;
        } else if (doc_start >= 0) {
            CF_TRY(add_doc_text(P, b, p + doc_start, content_end - (size_t)doc_start, 1));
            doc_start = -1;
        }
        ls = nl ? le + 1 : n;
    }
    *open = 0;
    if (doc_start >= 0) {
        if (clean) {
            CF_TRY(add_doc_text(P, b, p + doc_start, content_end - (size_t)doc_start, 1));
        } else {
            CF_TRY(add_doc_text(P, b, p + doc_start, n - (size_t)doc_start, 0));
            *open = 1;
        }
    }
    return CF_OK;
}

static int split_open_shard(prep *P, split_out *S) {
    char name[64];
    if (P->o->shard_tokens)
        snprintf(name, sizeof name, "%s_%05d.bin", S->name, S->shard);
    else
        snprintf(name, sizeof name, "%s.bin", S->name);
    size_t len = strlen(P->o->out_dir) + strlen(name) + 2;
    char *path = malloc(len);
    if (!path) return CF_ERR_NOMEM;
    snprintf(path, len, "%s/%s", P->o->out_dir, name);
    int rc =
        cf_shard_writer_open(path, P->dtype, cf_tokenizer_hash(P->tok),
                             cf_tokenizer_vocab_size(P->tok), cf_tokenizer_eot_id(P->tok), &S->w);
    free(path);
    return rc;
}

/* Append ids to a split, starting a new shard every shard_tokens tokens. */
static int split_write(prep *P, split_out *S, const uint32_t *ids, size_t n) {
    while (n > 0) {
        size_t k = n;
        if (P->o->shard_tokens) {
            uint64_t room = P->o->shard_tokens - cf_shard_writer_count(S->w);
            if (room == 0) {
                int rc = cf_shard_writer_close(S->w);
                S->w = NULL;
                CF_TRY(rc);
                P->shards_done++;
                if (cf_interrupted() ||
                    (P->o->stop_after_shards && P->shards_done >= P->o->stop_after_shards))
                    return CF_ERR_INTERRUPTED;
                S->shard++;
                CF_TRY(split_open_shard(P, S));
                continue;
            }
            if (k > room) k = (size_t)room;
        }
        CF_TRY(cf_shard_writer_append(S->w, ids, k));
        S->tokens += k;
        ids += k;
        n -= k;
    }
    return CF_OK;
}

static int split_sep(prep *P, split_out *S) {
    S->open_doc = -1;
    if (S->last_was_sep || S->tokens == 0) return CF_OK;
    S->last_was_sep = 1;
    return split_write(P, S, &P->sep, 1);
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Encode the batch's units in parallel, then write them in order. */
static int batch_flush(prep *P, batch *b) {
    if (b->nu > b->cap_out) {
        cf_token_buf *no = realloc(b->out, b->nu * sizeof *no);
        if (!no) return CF_ERR_NOMEM;
        memset(no + b->cap_out, 0, (b->nu - b->cap_out) * sizeof *no);
        b->out = no;
        b->cap_out = b->nu;
    }
    int rc = CF_OK;
#pragma omp parallel for schedule(dynamic, 1) num_threads(P->nt)
    for (size_t k = 0; k < b->nu; k++) {
        b->out[k].n = 0;
        int r =
            cf_tok_encoder_encode(P->enc[omp_get_thread_num()], b->u[k].p, b->u[k].n, &b->out[k]);
        if (r < 0) {
#pragma omp critical(cf_prepare_rc)
            rc = r;
        }
    }
    for (size_t k = 0; k < b->nu && rc == CF_OK; k++) {
        const unit *u = &b->u[k];
        uint64_t ui = P->unit_index++;
        if (b->out[k].n == 0) {
            /* an empty end of a document: close it wherever it is open */
            if (u->doc_end)
                for (int s = 0; s < 2 && rc == CF_OK; s++)
                    if (P->sp[s].open_doc == (int64_t)u->doc) rc = split_sep(P, &P->sp[s]);
            continue;
        }
        double draw =
            (double)(mix64(P->o->seed ^ mix64(ui + 0x5851F42D4C957F2Dull)) >> 11) * 0x1.0p-53;
        split_out *S = &P->sp[draw < P->o->val_fraction ? 1 : 0];
        if (S->open_doc >= 0 &&
            !(S->open_doc == (int64_t)u->doc && S->last_unit == (int64_t)ui - 1))
            rc = split_sep(P, S); /* the stream would jump: mark the discontinuity */
        if (rc == CF_OK) rc = split_write(P, S, b->out[k].ids, b->out[k].n);
        if (rc != CF_OK) break;
        S->last_was_sep = b->out[k].ids[b->out[k].n - 1] == P->sep;
        S->last_unit = (int64_t)ui;
        if (u->doc_end)
            rc = split_sep(P, S);
        else
            S->open_doc = (int64_t)u->doc;
    }
    for (size_t k = 0; k < b->nblocks; k++) free(b->blocks[k]);
    b->nblocks = 0;
    b->nu = 0;
    b->bytes = 0;
    return rc;
}

static void batch_free(batch *b) {
    for (size_t k = 0; k < b->nblocks; k++) free(b->blocks[k]);
    free(b->blocks);
    free(b->u);
    for (size_t k = 0; k < b->cap_out; k++) cf_token_buf_free(&b->out[k]);
    free(b->out);
}

/* Remove dir/meta.json before anything else changes in dir, and make that durable: the dataset is
 * marked complete only by the meta.json written at the very end, so an interrupted run leaves a
 * directory that `train` refuses (cf_shard_set_open) instead of old metadata over new shards. */
static int remove_meta(const char *dir) {
    size_t len = strlen(dir) + 16;
    char *p = malloc(len);
    if (!p) return CF_ERR_NOMEM;
    snprintf(p, len, "%s/meta.json", dir);
    int rc = CF_OK;
    if (remove(p) != 0 && errno != ENOENT) {
        CF_ERROR("prepare: cannot remove the old %s: %s; delete it by hand", p, strerror(errno));
        rc = CF_ERR_IO;
    }
    free(p);
    int fd = rc == CF_OK ? open(dir, O_RDONLY) : -1;
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    return rc;
}

/* Delete shards of an earlier run in dir (files named like ours that carry our magic). */
static int remove_stale_shards(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return CF_OK;
    struct dirent *e;
    int rc = CF_OK;
    while ((e = readdir(d)) && rc == CF_OK) {
        const char *nm = e->d_name;
        size_t ln = strlen(nm);
        if (ln < 5 || strcmp(nm + ln - 4, ".bin") != 0 ||
            (strncmp(nm, "train", 5) && strncmp(nm, "val", 3)))
            continue;
        size_t len = strlen(dir) + ln + 2;
        char *p = malloc(len);
        if (!p) {
            rc = CF_ERR_NOMEM;
            break;
        }
        snprintf(p, len, "%s/%s", dir, nm);
        struct stat sb;
        FILE *f = lstat(p, &sb) == 0 && S_ISREG(sb.st_mode) ? fopen(p, "rb") : NULL;
        char magic[8] = {0};
        int ours = f && fread(magic, 1, 8, f) == 8 && memcmp(magic, CF_SHARD_MAGIC, 8) == 0;
        if (f) fclose(f);
        if (ours) {
            if (remove(p) == 0)
                CF_INFO("removed %s from an earlier prepare run", p);
            else {
                CF_ERROR("cannot remove the old shard %s: %s; delete it by hand", p,
                         strerror(errno));
                rc = CF_ERR_IO;
            }
        }
        free(p);
    }
    closedir(d);
    return rc;
}

static int write_meta(prep *P, const cf_prepare_stats *st) {
    cf_sbuf b = {0};
    cf_sbuf_printf(&b, "{\n  \"format\": \"clformer token shards\",\n  \"version\": %d,\n",
                   CF_SHARD_VERSION);
    cf_sbuf_puts(&b, "  \"tokenizer\": \"");
    for (const char *c = cf_tokenizer_name(P->tok); *c; c++) {
        if (*c == '"' || *c == '\\') cf_sbuf_put(&b, "\\", 1);
        if ((unsigned char)*c >= 0x20) cf_sbuf_put(&b, c, 1);
    }
    cf_sbuf_printf(&b,
                   "\",\n  \"tokenizer_hash\": \"%016" PRIx64
                   "\",\n  \"vocab_size\": %u,\n  \"eot_id\": %d,\n",
                   cf_tokenizer_hash(P->tok), cf_tokenizer_vocab_size(P->tok),
                   (int)cf_tokenizer_eot_id(P->tok));
    cf_sbuf_printf(&b, "  \"dtype\": \"%s\",\n  \"val_fraction\": %g,\n  \"seed\": %" PRIu64 ",\n",
                   P->dtype == 2 ? "uint16" : "uint32", P->o->val_fraction, P->o->seed);
    cf_sbuf_printf(&b, "  \"documents\": \"%s\",\n",
                   P->o->blank_line_docs ? "blank-line separated" : "one per file");
    cf_sbuf_printf(&b,
                   "  \"files\": %" PRIu64 ",\n  \"skipped_files\": %" PRIu64
                   ",\n  \"document_count\": %" PRIu64 ",\n  \"input_bytes\": %" PRIu64 ",\n",
                   st->files, st->skipped_files, st->documents, st->input_bytes);
    cf_sbuf_printf(&b,
                   "  \"train_tokens\": %" PRIu64 ",\n  \"val_tokens\": %" PRIu64
                   ",\n  \"train_shards\": %d,\n"
                   "  \"val_shards\": %d\n}\n",
                   st->train_tokens, st->val_tokens, st->train_shards, st->val_shards);
    if (b.oom) {
        free(b.p);
        return CF_ERR_NOMEM;
    }
    size_t len = strlen(P->o->out_dir) + 16;
    char *path = malloc(len);
    int rc = CF_ERR_NOMEM;
    if (path) {
        snprintf(path, len, "%s/meta.json", P->o->out_dir);
        rc = cf_write_file_atomic(path, b.p, b.n);
        free(path);
    }
    free(b.p);
    return rc;
}

int cf_prepare_run(const cf_prepare_opts *o, cf_prepare_stats *st) {
    cf_prepare_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    if (!o->out_dir || !o->out_dir[0]) {
        CF_ERROR("prepare: no output directory; pass --out DIR");
        return CF_ERR_INVALID;
    }
    if (!(o->val_fraction >= 0.0 && o->val_fraction < 1.0)) {
        CF_ERROR("prepare: --val-fraction %g is out of range; use a value in [0, 1), e.g. 0.05",
                 o->val_fraction);
        return CF_ERR_INVALID;
    }
    prep P;
    memset(&P, 0, sizeof P);
    P.o = o;
    P.sp[0] = (split_out){"train", NULL, 0, -1, -1, 0, 0};
    P.sp[1] = (split_out){"val", NULL, 0, -1, -1, 0, 0};
    CF_TRY(cf_tokenizer_load(o->tokenizer, &P.tok));
    uint32_t V = cf_tokenizer_vocab_size(P.tok);
    P.dtype = V <= 65536 ? 2 : 4;
    /* the byte tokenizer has no end-of-text id: documents are separated by a newline byte */
    P.sep = cf_tokenizer_eot_id(P.tok) >= 0 ? (uint32_t)cf_tokenizer_eot_id(P.tok) : (uint32_t)'\n';
    cf_corpus corpus = {0};
    batch b = {0};
    int rc = cf_corpus_collect(&corpus, o->inputs, o->n_inputs);
    if (rc == CF_OK && (rc = cf_mkdirs(o->out_dir)) < 0)
        CF_ERROR("prepare: cannot create the output directory '%s'", o->out_dir);
    if (rc == CF_OK) rc = remove_meta(o->out_dir);
    if (rc == CF_OK) rc = remove_stale_shards(o->out_dir);
    P.nt = o->threads > 0 ? o->threads : omp_get_max_threads();
    if (P.nt < 1) P.nt = 1;
    if (rc == CF_OK && !(P.enc = calloc((size_t)P.nt, sizeof *P.enc))) rc = CF_ERR_NOMEM;
    for (int k = 0; k < P.nt && rc == CF_OK; k++) rc = cf_tok_encoder_new(P.tok, &P.enc[k]);
    for (int s = 0; s < 2 && rc == CF_OK; s++) rc = split_open_shard(&P, &P.sp[s]);
    cf_progress bar;
    if (o->progress) cf_progress_start(&bar, "prepare", corpus.total_bytes, 1);
    double t0 = cf_time_now();
    uint64_t done = 0;
    for (size_t f = 0; f < corpus.n && rc == CF_OK; f++) {
        cf_chunk_reader r;
        rc = cf_chunk_reader_open(
            &r, corpus.files[f].path, o->read_bytes ? o->read_bytes : PREP_READ_CHUNK,
            o->blank_line_docs ? CF_CUT_BLANKLINE : CF_CUT_PRETOK, &P.tok->sp);
        if (rc < 0) break;
        if (r.binary) {
            CF_DEBUG("skipping binary file '%s'", corpus.files[f].path);
            st->skipped_files++;
            done += corpus.files[f].size;
            cf_chunk_reader_close(&r);
            continue;
        }
        st->files++;
        const uint8_t *piece;
        size_t plen;
        int clean, got, open = 0;
        while (rc == CF_OK && (got = cf_chunk_reader_next(&r, &piece, &plen, &clean)) > 0) {
            uint8_t *copy;
            if ((rc = batch_add_block(&b, piece, plen, &copy)) < 0) break;
            if (o->blank_line_docs)
                rc = add_blank_line_docs(&P, &b, copy, plen, clean, &open);
            else
                rc = add_doc_text(&P, &b, copy, plen, clean);
            done += plen;
            st->input_bytes += plen;
            if (rc == CF_OK && b.bytes >= PREP_BATCH_BYTES) rc = batch_flush(&P, &b);
            if (o->progress) cf_progress_update(&bar, done);
            if (rc == CF_OK && cf_interrupted()) rc = CF_ERR_INTERRUPTED;
        }
        if (got < 0 && rc == CF_OK) rc = got;
        cf_chunk_reader_close(&r);
    }
    if (rc == CF_OK) rc = batch_flush(&P, &b);
    for (int s = 0; s < 2 && rc == CF_OK; s++) rc = split_sep(&P, &P.sp[s]);
    if (o->progress) cf_progress_finish(&bar, done);
    st->seconds = cf_time_now() - t0;
    st->documents = P.doc_index;
    st->train_tokens = P.sp[0].tokens;
    st->val_tokens = P.sp[1].tokens;
    st->train_shards = P.sp[0].shard + 1;
    st->val_shards = P.sp[1].shard + 1;
    for (int s = 0; s < 2; s++) {
        if (!P.sp[s].w) continue;
        if (rc == CF_OK)
            rc = cf_shard_writer_close(P.sp[s].w);
        else
            cf_shard_writer_abort(P.sp[s].w);
        P.sp[s].w = NULL;
    }
    if (rc == CF_OK && st->train_tokens == 0 && st->val_tokens == 0) {
        CF_ERROR("prepare: the inputs hold no text (%" PRIu64 " file(s), %" PRIu64
                 " skipped as binary)",
                 st->files, st->skipped_files);
        rc = CF_ERR_INVALID;
    } else if (rc == CF_OK && st->train_tokens == 0) {
        CF_ERROR("prepare: all %" PRIu64
                 " tokens went to val; lower --val-fraction (%g) or add text",
                 st->val_tokens, o->val_fraction);
        rc = CF_ERR_INVALID;
    }
    if (rc == CF_OK) rc = write_meta(&P, st);
    if (P.enc)
        for (int k = 0; k < P.nt; k++) cf_tok_encoder_free(P.enc[k]);
    free(P.enc);
    batch_free(&b);
    cf_corpus_free(&corpus);
    cf_tokenizer_free(P.tok);
    return rc;
}
