/* clformer: text corpus input for tokenizer training and preparation: walking files and
 * directories, and reading a file in pieces that end at exact pre-tokenizer split points (or blank
 * lines). */
#ifndef CF_TOKENIZER_CORPUS_H
#define CF_TOKENIZER_CORPUS_H

#include <stdint.h>
#include <stdio.h>

#include "tokenizer/pretok.h"

typedef struct {
    char *path;
    uint64_t size;
} cf_corpus_file;

typedef struct {
    cf_corpus_file *files;
    size_t n, cap;
    uint64_t total_bytes;
} cf_corpus;

/* Regular files named by inputs, directories walked recursively in sorted order (names starting
 * with
 * '.' skipped). A missing input is an error naming it. */
int cf_corpus_collect(cf_corpus *c, const char *const *inputs, int n_inputs);
void cf_corpus_free(cf_corpus *c);

enum cf_cut_mode {
    CF_CUT_PRETOK = 0,    /* pieces end at exact pre-token boundaries */
    CF_CUT_BLANKLINE = 1, /* pieces end after a blank line when there is one, else as above */
};

typedef struct {
    FILE *f;
    const char *path;
    const cf_specials *sp;
    int mode;
    uint8_t *buf;
    size_t len, cap, start; /* buf[start..len) is the carry not yet returned */
    size_t chunk;           /* bytes read per piece */
    int eof, binary, warned;
    uint64_t bytes_read;
} cf_chunk_reader;

/* Opens path and reads the first bytes; r->binary is set when they contain a NUL byte (the caller
 * then skips the file). */
int cf_chunk_reader_open(cf_chunk_reader *r, const char *path, size_t chunk, int mode,
                         const cf_specials *sp);
/* Next piece (valid until the next call): 1 with data and len set, 0 at the end, or an error.
 * *clean is 1 when the piece ends at end of file or right after a blank line. */
int cf_chunk_reader_next(cf_chunk_reader *r, const uint8_t **data, size_t *len, int *clean);
void cf_chunk_reader_close(cf_chunk_reader *r);

#endif
