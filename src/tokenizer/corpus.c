/* clformer: text corpus input for tokenizer training and preparation. */
#define _POSIX_C_SOURCE 200809L
#include "tokenizer/corpus.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clformer/common.h"

static int add_file(cf_corpus *c, const char *path, uint64_t size) {
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        cf_corpus_file *nf = realloc(c->files, ncap * sizeof *nf);
        if (!nf) return CF_ERR_NOMEM;
        c->files = nf;
        c->cap = ncap;
    }
    char *p = strdup(path);
    if (!p) return CF_ERR_NOMEM;
    c->files[c->n].path = p;
    c->files[c->n].size = size;
    c->n++;
    c->total_bytes += size;
    return CF_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int walk(cf_corpus *c, const char *path, int depth) {
    struct stat st;
    if (stat(path, &st) != 0) {
        CF_ERROR("input '%s': %s; pass existing text files or directories with --input", path,
                 strerror(errno));
        return CF_ERR_NOT_FOUND;
    }
    if (S_ISREG(st.st_mode)) return add_file(c, path, (uint64_t)st.st_size);
    if (!S_ISDIR(st.st_mode)) return CF_OK; /* devices, sockets: not text */
    if (depth > 64) {
        CF_ERROR("input '%s': directories nested deeper than 64 levels (a symlink loop?)", path);
        return CF_ERR_INVALID;
    }
    DIR *d = opendir(path);
    if (!d) {
        CF_ERROR("input '%s': cannot open directory: %s", path, strerror(errno));
        return CF_ERR_IO;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = CF_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                rc = CF_ERR_NOMEM;
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = CF_ERR_NOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == CF_OK) qsort(names, n, sizeof *names, cmp_str);
    size_t plen = strlen(path);
    for (size_t i = 0; i < n && rc == CF_OK; i++) {
        size_t len = plen + strlen(names[i]) + 2;
        char *child = malloc(len);
        if (!child) {
            rc = CF_ERR_NOMEM;
            break;
        }
        snprintf(child, len, "%s%s%s", path, (plen && path[plen - 1] == '/') ? "" : "/", names[i]);
        rc = walk(c, child, depth + 1);
        free(child);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int cf_corpus_collect(cf_corpus *c, const char *const *inputs, int n_inputs) {
    memset(c, 0, sizeof *c);
    if (n_inputs <= 0) {
        CF_ERROR("no input given; pass text files or directories with --input PATH");
        return CF_ERR_INVALID;
    }
    for (int i = 0; i < n_inputs; i++) {
        int rc = walk(c, inputs[i], 0);
        if (rc < 0) {
            cf_corpus_free(c);
            return rc;
        }
    }
    return CF_OK;
}

void cf_corpus_free(cf_corpus *c) {
    for (size_t i = 0; i < c->n; i++) free(c->files[i].path);
    free(c->files);
    memset(c, 0, sizeof *c);
}

/* Largest a piece may grow while looking for a split point before it is cut anyway. */
#define CF_READER_MAX_PIECE ((size_t)256 << 20)

static int fill(cf_chunk_reader *r, size_t want) {
    if (r->len + want > r->cap) {
        size_t ncap = r->cap ? r->cap : 1 << 16;
        while (ncap < r->len + want) ncap *= 2;
        uint8_t *nb = realloc(r->buf, ncap);
        if (!nb) {
            CF_ERROR("out of memory reading '%s' (%zu byte buffer)", r->path, ncap);
            return CF_ERR_NOMEM;
        }
        r->buf = nb;
        r->cap = ncap;
    }
    size_t got = fread(r->buf + r->len, 1, want, r->f);
    if (got < want) {
        if (ferror(r->f)) {
            CF_ERROR("read error on '%s': %s", r->path, strerror(errno));
            return CF_ERR_IO;
        }
        r->eof = 1;
    }
    r->len += got;
    r->bytes_read += got;
    return CF_OK;
}

int cf_chunk_reader_open(cf_chunk_reader *r, const char *path, size_t chunk, int mode,
                         const cf_specials *sp) {
    memset(r, 0, sizeof *r);
    r->path = path;
    r->sp = sp;
    r->mode = mode;
    r->chunk = chunk ? chunk : ((size_t)8 << 20);
    r->f = fopen(path, "rb");
    if (!r->f) {
        CF_ERROR("cannot open '%s': %s", path, strerror(errno));
        return CF_ERR_IO;
    }
    /* a small file is read whole at once, into a buffer of its size (one byte more shows EOF) */
    struct stat st;
    size_t first = r->chunk;
    if (fstat(fileno(r->f), &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size < first)
        first = (size_t)st.st_size + 1;
    int rc = fill(r, first);
    if (rc < 0) {
        cf_chunk_reader_close(r);
        return rc;
    }
    r->binary = memchr(r->buf, 0, r->len < 8192 ? r->len : 8192) != NULL;
    return CF_OK;
}

/* End of the last blank line in buf[lo..n): the offset just after its '\n', or 0. A blank line
 * holds only spaces, tabs and '\r'. */
static size_t last_blank_line_end(const uint8_t *b, size_t n, size_t lo) {
    if (n == 0) return 0;
    size_t i = n; /* look for "\n<blank>\n" ending at or before n */
    while (i > lo) {
        /* find the '\n' ending a line at i-1 */
        size_t end = i - 1;
        while (end > lo && b[end] != '\n') end--;
        if (b[end] != '\n') return 0;
        /* the line before it: (prev '\n', end) */
        size_t k = end;
        int blank = 1;
        while (k > lo) {
            uint8_t c = b[k - 1];
            if (c == '\n') break;
            if (c != ' ' && c != '\t' && c != '\r') {
                blank = 0;
                break;
            }
            k--;
        }
        if (blank && k > lo && b[k - 1] == '\n') return end + 1;
        i = end;
    }
    return 0;
}

int cf_chunk_reader_next(cf_chunk_reader *r, const uint8_t **data, size_t *len, int *clean) {
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->len - r->start);
        r->len -= r->start;
        r->start = 0;
        if (!r->eof) {
            int rc = fill(r, r->chunk);
            if (rc < 0) return rc;
        }
    }
    if (r->len == 0) return 0;
    for (;;) {
        size_t p = 0;
        int at_blank = 0;
        if (r->eof) {
            p = r->len;
            at_blank = 1;
        } else {
            if (r->mode == CF_CUT_BLANKLINE) {
                p = last_blank_line_end(r->buf, r->len, r->len / 2);
                at_blank = p > 0;
            }
            if (!p) p = cf_pretok_find_cut(r->sp, r->buf, r->len, r->len - 1, r->len / 2);
            if (!p && r->len < CF_READER_MAX_PIECE) {
                /* no split point in the back half: read more and look again */
                int rc = fill(r, r->len);
                if (rc < 0) return rc;
                continue;
            }
            if (!p) {
                p = r->len;
                while (p > r->len - 4 && (r->buf[p - 1] & 0xC0) == 0x80)
                    p--; /* keep a UTF-8 char whole */
                if (!r->warned)
                    CF_WARN("'%s': no word boundary in %zu MB of text; cutting there, the words at "
                            "the cut "
                            "may split differently than in one piece",
                            r->path, r->len >> 20);
                r->warned = 1;
            }
        }
        *data = r->buf;
        *len = p;
        *clean = at_blank;
        r->start = p;
        return 1;
    }
}

void cf_chunk_reader_close(cf_chunk_reader *r) {
    if (r->f) fclose(r->f);
    free(r->buf);
    memset(r, 0, sizeof *r);
}
