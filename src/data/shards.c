/* clformer: token shard files: writer, memory-mapped reader with header validation, shard
 * directories for the training dataset. */
#define _POSIX_C_SOURCE 200809L
#include "data/shards.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clformer/common.h"
#include "tokenizer/tokenizer.h"

static void put32(uint8_t *p, uint32_t v) {
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int k = 0; k < 8; k++) p[k] = (uint8_t)(v >> (8 * k));
}
static uint32_t get32(const uint8_t *p) {
    uint32_t v = 0;
    for (int k = 3; k >= 0; k--) v = (v << 8) | p[k];
    return v;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--) v = (v << 8) | p[k];
    return v;
}

static int host_little_endian(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

void cf_shard_header_encode(const cf_shard_info *info, uint8_t out[CF_SHARD_HEADER_BYTES]) {
    memset(out, 0, CF_SHARD_HEADER_BYTES);
    memcpy(out, CF_SHARD_MAGIC, 8);
    put32(out + 8, info->version);
    put32(out + 12, info->dtype);
    put64(out + 16, info->count);
    put64(out + 24, info->tokenizer_hash);
    put32(out + 32, info->vocab_size);
    put32(out + 36, (uint32_t)info->eot_id);
    put32(out + 40, CF_SHARD_HEADER_BYTES);
}

#define REPREPARE "re-create it with `clformer prepare`"

/* Checks of the header against the file size; info filled on success. */
static int parse_header(const char *path, const uint8_t *h, uint64_t file_size,
                        cf_shard_info *info) {
    if (file_size < CF_SHARD_HEADER_BYTES) {
        CF_ERROR("shard %s: truncated: %" PRIu64 " bytes, less than the %d-byte header; " REPREPARE,
                 path, file_size, CF_SHARD_HEADER_BYTES);
        return CF_ERR_FORMAT;
    }
    if (memcmp(h, CF_SHARD_MAGIC, 8) != 0) {
        CF_ERROR("shard %s: not a clformer token shard (no \"" CF_SHARD_MAGIC
                 "\" magic); point data at a "
                 "directory made by `clformer prepare`",
                 path);
        return CF_ERR_FORMAT;
    }
    info->version = get32(h + 8);
    info->dtype = get32(h + 12);
    info->count = get64(h + 16);
    info->tokenizer_hash = get64(h + 24);
    info->vocab_size = get32(h + 32);
    info->eot_id = (int32_t)get32(h + 36);
    uint32_t hb = get32(h + 40);
    if (info->version != CF_SHARD_VERSION) {
        CF_ERROR("shard %s: format version %u, this build reads version %d; " REPREPARE
                 " from this build",
                 path, info->version, CF_SHARD_VERSION);
        return CF_ERR_FORMAT;
    }
    if ((info->dtype != 2 && info->dtype != 4) || hb != CF_SHARD_HEADER_BYTES) {
        CF_ERROR("shard %s: corrupt header (%u bytes per token, %u header bytes; expected 2 or 4, "
                 "and %d); " REPREPARE,
                 path, info->dtype, hb, CF_SHARD_HEADER_BYTES);
        return CF_ERR_FORMAT;
    }
    if (info->dtype == 2 && info->vocab_size > 65536) {
        CF_ERROR("shard %s: corrupt header (uint16 ids but a vocab of %u); " REPREPARE, path,
                 info->vocab_size);
        return CF_ERR_FORMAT;
    }
    uint64_t have = file_size - CF_SHARD_HEADER_BYTES;
    if (info->count > UINT64_MAX / info->dtype || have != info->count * info->dtype) {
        if (info->count <= UINT64_MAX / info->dtype && have < info->count * info->dtype)
            CF_ERROR("shard %s: truncated: the header says %" PRIu64 " tokens (%" PRIu64
                     " bytes) but the file "
                     "holds %" PRIu64 " bytes of tokens; " REPREPARE,
                     path, info->count, info->count * info->dtype, have);
        else
            CF_ERROR("shard %s: the header says %" PRIu64 " tokens but the file holds %" PRIu64
                     " bytes of "
                     "tokens (%u bytes each): extra data or a corrupt header; " REPREPARE,
                     path, info->count, have, info->dtype);
        return CF_ERR_FORMAT;
    }
    return CF_OK;
}

static int check_expect(const char *path, const cf_shard_info *info, const cf_shard_expect *e) {
    if (!e) return CF_OK;
    if (e->check_hash && info->tokenizer_hash != e->tokenizer_hash) {
        CF_ERROR("shard %s: made with tokenizer %016" PRIx64 " but tokenizer %s is %016" PRIx64
                 "; re-run "
                 "`clformer prepare --tokenizer %s` or set tokenizer to the file the shards were "
                 "made with",
                 path, info->tokenizer_hash, e->tokenizer_name ? e->tokenizer_name : "?",
                 e->tokenizer_hash, e->tokenizer_name ? e->tokenizer_name : "FILE");
        return CF_ERR_FORMAT;
    }
    if (e->max_vocab && info->vocab_size > e->max_vocab) {
        CF_ERROR("shard %s: its tokenizer has %u ids but vocab_size is %u; set vocab_size=%u", path,
                 info->vocab_size, e->max_vocab, info->vocab_size);
        return CF_ERR_FORMAT;
    }
    return CF_OK;
}

/* Open path for reading without blocking (a FIFO would wait for a writer) and require a regular
 * file; *size is its length. Returns the descriptor or a (negative) status, logged. */
static int open_regular(const char *path, uint64_t *size) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) {
        int err = errno;
        CF_ERROR("shard %s: cannot open: %s", path, strerror(err));
        return err == ENOENT ? CF_ERR_NOT_FOUND : CF_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        CF_ERROR("shard %s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return CF_ERR_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        CF_ERROR("shard %s: not a regular file (a %s); shards are files written by `clformer "
                 "prepare`: replace it with one",
                 path,
                 S_ISFIFO(st.st_mode)  ? "FIFO"
                 : S_ISDIR(st.st_mode) ? "directory"
                 : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "device"
                 : S_ISSOCK(st.st_mode) ? "socket"
                                        : "special file");
        close(fd);
        return CF_ERR_IO;
    }
    *size = (uint64_t)st.st_size;
    return fd;
}

int cf_shard_read_info(const char *path, cf_shard_info *info) {
    uint64_t size = 0;
    int fd = open_regular(path, &size);
    if (fd < 0) return fd;
    uint8_t h[CF_SHARD_HEADER_BYTES];
    ssize_t got = size >= sizeof h ? pread(fd, h, sizeof h, 0) : 0;
    int err = errno;
    close(fd);
    if (got < 0) {
        CF_ERROR("shard %s: cannot read: %s", path, strerror(err));
        return CF_ERR_IO;
    }
    if ((size_t)got < sizeof h) {
        CF_ERROR("shard %s: truncated: %" PRIu64 " bytes, less than the %d-byte header; " REPREPARE,
                 path, size, CF_SHARD_HEADER_BYTES);
        return CF_ERR_FORMAT;
    }
    return parse_header(path, h, size, info);
}

int cf_shard_parse_header(const char *path, const uint8_t *h, uint64_t file_size,
                          cf_shard_info *info) {
    return parse_header(path, h, file_size, info);
}

/* ---- reading the mapping: SIGBUS guard ---------------------------------------------------------
 * A shard truncated (or replaced in place) while it is mapped turns reads past its new end into
 * SIGBUS. Every read of shard tokens goes through shard_scan, which runs under a handler that
 * turns a bus error inside the mapping being read into an error return (siglongjmp); a bus error
 * anywhere else is left to the previous disposition. The guard is per thread; sigsetjmp does not
 * save the signal mask (no system call per read): the handler is installed with SA_NODEFER so
 * SIGBUS is not left blocked after the jump. */

typedef struct {
    sigjmp_buf env;
    const uint8_t *lo, *hi; /* the mapping being read */
} shard_guard;

static _Thread_local shard_guard *volatile g_guard;
static struct sigaction g_old_bus;
static pthread_once_t g_bus_once = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
    shard_guard *g = g_guard;
    if (g && si && si->si_code > 0 && (const uint8_t *)si->si_addr >= g->lo &&
        (const uint8_t *)si->si_addr < g->hi) {
        g_guard = NULL;
        siglongjmp(g->env, 1);
    }
    /* not ours: the previous disposition handles it (the faulting access repeats on return) */
    sigaction(SIGBUS, &g_old_bus, NULL);
    if (g_old_bus.sa_flags & SA_SIGINFO) {
        if (g_old_bus.sa_sigaction) g_old_bus.sa_sigaction(sig, si, uc);
    } else if (!si || si->si_code <= 0) {
        raise(sig); /* sent by kill(): it would not repeat */
    }
}

static void install_sigbus(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &g_old_bus) != 0)
        CF_WARN("cannot install the SIGBUS handler (%s): a shard truncated during a run will kill "
                "it without a message",
                strerror(errno));
}

typedef struct {
    const cf_shard *s;
    uint64_t a;
    size_t n;
    int32_t *out;
    uint32_t limit;
    uint64_t bad;
} scan_args;

static int scan_loop(scan_args *q) {
    const uint64_t a = q->a;
    const uint32_t limit = q->limit;
    int32_t *out = q->out;
    if (q->s->info.dtype == 2) {
        const uint16_t *p = (const uint16_t *)(const void *)q->s->tokens + a;
        for (size_t i = 0; i < q->n; i++) {
            uint32_t v = p[i];
            if (limit && v >= limit) {
                q->bad = a + i;
                return 2;
            }
            if (out) out[i] = (int32_t)v;
        }
    } else {
        const uint32_t *p = (const uint32_t *)(const void *)q->s->tokens + a;
        for (size_t i = 0; i < q->n; i++) {
            uint32_t v = p[i];
            if (limit && v >= limit) {
                q->bad = a + i;
                return 2;
            }
            if (out) out[i] = (int32_t)v;
        }
    }
    return 0;
}

/* Tokens [q->a, q->a + q->n) of q->s (within its count) into q->out when not NULL, each checked to
 * be below q->limit when it is > 0. Returns 0, 1 on a bus error (the file shrank), 2 with q->bad =
 * the index of the first id >= limit. Nothing but q (in memory) is used after the jump. */
static int shard_scan(scan_args *q) {
    pthread_once(&g_bus_once, install_sigbus);
    shard_guard g;
    g.lo = q->s->map;
    g.hi = q->s->map + q->s->map_len;
    if (sigsetjmp(g.env, 0)) return 1;
    g_guard = &g;
    int rc = scan_loop(q);
    g_guard = NULL;
    return rc;
}

static int report_bus_error(const cf_shard *s, uint64_t a, size_t n) {
    struct stat st;
    char now[64] = "removed";
    if (stat(s->path, &st) == 0) snprintf(now, sizeof now, "%lld bytes", (long long)st.st_size);
    CF_ERROR("shard %s: bus error reading tokens %" PRIu64 "..%" PRIu64 ": the file changed while "
             "in use (%zu bytes when opened, now %s); do not modify or re-prepare shards while a "
             "run reads them; restore the file (or " REPREPARE ") and resume from the last "
             "checkpoint",
             s->path, a, a + n, s->map_len, now);
    return CF_ERR_IO;
}

int cf_shard_read(const cf_shard *s, uint64_t start, size_t n, int32_t *out) {
    if (start > s->info.count || n > s->info.count - start) {
        CF_ERROR("shard %s: tokens %" PRIu64 "..%" PRIu64 " requested, it has %" PRIu64, s->path,
                 start, start + n, s->info.count);
        return CF_ERR_INVALID;
    }
    scan_args q = {s, start, n, out, 0, 0};
    if (shard_scan(&q) == 1) return report_bus_error(s, start, n);
    return CF_OK;
}

/* Every id below limit (once, at open). */
static int check_ids(const cf_shard *s, uint32_t limit, const char *what) {
    const uint64_t step = (uint64_t)1 << 20;
    for (uint64_t a = 0; a < s->info.count; a += step) {
        size_t n = (size_t)(s->info.count - a < step ? s->info.count - a : step);
        scan_args q = {s, a, n, NULL, limit, 0};
        int r = shard_scan(&q);
        uint64_t bad = q.bad;
        if (r == 1) return report_bus_error(s, a, n);
        if (r == 2) {
            CF_ERROR("shard %s: token id %u at position %" PRIu64 " (of %" PRIu64 ") is outside %s "
                     "(ids 0..%u); the file is corrupt or was made with another tokenizer; " REPREPARE,
                     s->path, cf_shard_token(s, bad), bad, s->info.count, what, limit - 1);
            return CF_ERR_FORMAT;
        }
    }
    return CF_OK;
}

int cf_shard_open(const char *path, const cf_shard_expect *expect, cf_shard *out) {
    memset(out, 0, sizeof *out);
    if (!host_little_endian()) {
        CF_ERROR("shard %s: token shards are little-endian and this host is not; not supported",
                 path);
        return CF_ERR_UNSUPPORTED;
    }
    uint64_t size = 0;
    int fd = open_regular(path, &size);
    if (fd < 0) return fd;
    if (size < CF_SHARD_HEADER_BYTES) {
        close(fd);
        CF_ERROR("shard %s: truncated: %" PRIu64 " bytes, less than the %d-byte header; " REPREPARE,
                 path, size, CF_SHARD_HEADER_BYTES);
        return CF_ERR_FORMAT;
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        CF_ERROR("shard %s: cannot memory-map %" PRIu64 " bytes: %s", path, size, strerror(errno));
        return CF_ERR_IO;
    }
    int rc = parse_header(path, map, size, &out->info);
    if (rc == CF_OK) rc = check_expect(path, &out->info, expect);
    if (rc == CF_OK && !(out->path = strdup(path))) rc = CF_ERR_NOMEM;
    if (rc < 0) {
        munmap(map, (size_t)size);
        memset(out, 0, sizeof *out);
        return rc;
    }
    out->map = map;
    out->map_len = (size_t)size;
    out->tokens = out->map + CF_SHARD_HEADER_BYTES;
    /* ids against the shard's own vocab, and the model's when smaller: every reader (train, eval,
     * any backend) gets ids it can index with */
    uint32_t limit = out->info.vocab_size;
    const char *what = "the vocab its header records";
    if (expect && expect->max_vocab && expect->max_vocab < limit) {
        limit = expect->max_vocab;
        what = "the model's vocab_size";
    }
    rc = limit ? check_ids(out, limit, what) : CF_OK;
    if (rc == CF_OK && limit == 0 && out->info.count) {
        CF_ERROR("shard %s: its header records a vocab of 0 ids but it holds %" PRIu64
                 " tokens; " REPREPARE, path, out->info.count);
        rc = CF_ERR_FORMAT;
    }
    if (rc < 0) cf_shard_close(out);
    return rc;
}

void cf_shard_close(cf_shard *s) {
    if (s->map) munmap((void *)s->map, s->map_len);
    free(s->path);
    memset(s, 0, sizeof *s);
}

/* ---- writer
 * -------------------------------------------------------------------------------------- */

struct cf_shard_writer {
    FILE *f;
    char *path, *tmp;
    cf_shard_info info;
    uint8_t buf[1 << 16];
    size_t nbuf;
};

int cf_shard_writer_open(const char *path, uint32_t dtype, uint64_t tokenizer_hash,
                         uint32_t vocab_size, int32_t eot_id, cf_shard_writer **out) {
    *out = NULL;
    if (dtype != 2 && dtype != 4) {
        CF_ERROR("shard %s: bytes per token must be 2 or 4, not %u", path, dtype);
        return CF_ERR_INVALID;
    }
    if (!host_little_endian()) {
        CF_ERROR("shard %s: token shards are little-endian and this host is not; not supported",
                 path);
        return CF_ERR_UNSUPPORTED;
    }
    cf_shard_writer *w = calloc(1, sizeof *w);
    if (!w) return CF_ERR_NOMEM;
    size_t n = strlen(path) + 32;
    w->path = strdup(path);
    w->tmp = malloc(n);
    if (!w->path || !w->tmp) {
        free(w->path);
        free(w->tmp);
        free(w);
        return CF_ERR_NOMEM;
    }
    snprintf(w->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        CF_ERROR("shard %s: cannot create '%s': %s", path, w->tmp, strerror(errno));
        free(w->path);
        free(w->tmp);
        free(w);
        return CF_ERR_IO;
    }
    w->info = (cf_shard_info){CF_SHARD_VERSION, dtype, 0, tokenizer_hash, vocab_size, eot_id};
    uint8_t h[CF_SHARD_HEADER_BYTES];
    cf_shard_header_encode(&w->info, h); /* count is fixed by close() */
    if (fwrite(h, 1, sizeof h, w->f) != sizeof h) {
        CF_ERROR("shard %s: write failed: %s", w->tmp, strerror(errno));
        cf_shard_writer_abort(w);
        return CF_ERR_IO;
    }
    *out = w;
    return CF_OK;
}

static int writer_flush(cf_shard_writer *w) {
    if (w->nbuf && fwrite(w->buf, 1, w->nbuf, w->f) != w->nbuf) {
        CF_ERROR("shard %s: write failed: %s (disk full?)", w->tmp, strerror(errno));
        return CF_ERR_IO;
    }
    w->nbuf = 0;
    return CF_OK;
}

int cf_shard_writer_append(cf_shard_writer *w, const uint32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= w->info.vocab_size) {
            CF_ERROR("shard %s: id %u is outside the vocab of %u", w->path, ids[i],
                     w->info.vocab_size);
            return CF_ERR_INVALID;
        }
        if (w->nbuf + 4 > sizeof w->buf) CF_TRY(writer_flush(w));
        if (w->info.dtype == 2) {
            uint16_t v = (uint16_t)ids[i];
            memcpy(w->buf + w->nbuf, &v, 2);
        } else {
            memcpy(w->buf + w->nbuf, &ids[i], 4);
        }
        w->nbuf += w->info.dtype;
    }
    w->info.count += n;
    return CF_OK;
}

uint64_t cf_shard_writer_count(const cf_shard_writer *w) { return w->info.count; }

void cf_shard_writer_abort(cf_shard_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    remove(w->tmp);
    free(w->path);
    free(w->tmp);
    free(w);
}

int cf_shard_writer_close(cf_shard_writer *w) {
    int rc = writer_flush(w);
    uint8_t h[CF_SHARD_HEADER_BYTES];
    cf_shard_header_encode(&w->info, h);
    if (rc == CF_OK && (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(h, 1, sizeof h, w->f) != sizeof h ||
                        fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)) {
        CF_ERROR("shard %s: write failed: %s", w->tmp, strerror(errno));
        rc = CF_ERR_IO;
    }
    if (rc == CF_OK) {
        int err = fclose(w->f);
        w->f = NULL;
        if (err != 0 || rename(w->tmp, w->path) != 0) {
            CF_ERROR("shard %s: cannot finish writing: %s", w->path, strerror(errno));
            rc = CF_ERR_IO;
        }
    }
    if (rc < 0) {
        cf_shard_writer_abort(w);
        return rc;
    }
    free(w->path);
    free(w->tmp);
    free(w);
    return CF_OK;
}

/* ---- shard lists and directories
 * ----------------------------------------------------------------- */

/* Whether name is "<split>.bin" (returns 1) or "<split>_<digits>.bin" (returns 2). */
static int shard_name_kind(const char *name, const char *split) {
    size_t ls = strlen(split), ln = strlen(name);
    if (ln < ls + 4 || strncmp(name, split, ls) != 0 || strcmp(name + ln - 4, ".bin") != 0)
        return 0;
    if (ln == ls + 4) return 1;
    if (name[ls] != '_' || ln == ls + 5) return 0;
    for (size_t i = ls + 1; i < ln - 4; i++)
        if (name[i] < '0' || name[i] > '9') return 0;
    return 2;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void cf_shard_list_close(cf_shard_list *l) {
    for (int k = 0; k < l->n; k++) cf_shard_close(&l->sh[k]);
    free(l->sh);
    free(l->first);
    memset(l, 0, sizeof *l);
}

int cf_shard_list_open(const char *dir, const char *split, const cf_shard_expect *expect,
                       cf_shard_list *out) {
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) {
        CF_ERROR("data %s: cannot open the shard directory: %s", dir, strerror(errno));
        return errno == ENOENT ? CF_ERR_NOT_FOUND : CF_ERR_IO;
    }
    char **names = NULL;
    int n = 0, cap = 0, single = 0, numbered = 0, rc = CF_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        int kind = shard_name_kind(e->d_name, split);
        if (!kind) continue;
        if (kind == 1)
            single++;
        else
            numbered++;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
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
    if (rc == CF_OK && single && numbered) {
        CF_ERROR("data %s: has both %s.bin and %s_*.bin shards (from two prepare runs?); delete "
                 "the stale ones "
                 "or re-run `clformer prepare` into an empty directory",
                 dir, split, split);
        rc = CF_ERR_INVALID;
    }
    if (rc == CF_OK && n) qsort(names, (size_t)n, sizeof *names, cmp_name);
    if (rc == CF_OK) {
        out->sh = calloc((size_t)(n ? n : 1), sizeof *out->sh);
        out->first = calloc((size_t)n + 1, sizeof *out->first);
        if (!out->sh || !out->first) rc = CF_ERR_NOMEM;
    }
    for (int k = 0; k < n && rc == CF_OK; k++) {
        size_t len = strlen(dir) + strlen(names[k]) + 2;
        char *p = malloc(len);
        if (!p) {
            rc = CF_ERR_NOMEM;
            break;
        }
        snprintf(p, len, "%s/%s", dir, names[k]);
        rc = cf_shard_open(p, expect, &out->sh[k]);
        free(p);
        if (rc < 0) break;
        out->n = k + 1;
        if (k > 0 && (out->sh[k].info.dtype != out->sh[0].info.dtype ||
                      out->sh[k].info.tokenizer_hash != out->sh[0].info.tokenizer_hash)) {
            CF_ERROR("shard %s: its dtype or tokenizer differs from %s; all shards of a directory "
                     "come from one "
                     "prepare run",
                     out->sh[k].path, out->sh[0].path);
            rc = CF_ERR_FORMAT;
            break;
        }
        out->first[k + 1] = out->first[k] + out->sh[k].info.count;
    }
    for (int k = 0; k < n; k++) free(names[k]);
    free(names);
    if (rc < 0) {
        cf_shard_list_close(out);
        return rc;
    }
    out->total = out->first[out->n];
    return CF_OK;
}

int cf_shard_list_read(const cf_shard_list *l, uint64_t start, size_t n, int32_t *out) {
    if (start > l->total || n > l->total - start) {
        CF_ERROR("shards: tokens %" PRIu64 "..%" PRIu64 " requested, the split has %" PRIu64, start,
                 start + n, l->total);
        return CF_ERR_INVALID;
    }
    int k = 0;
    while (k + 1 < l->n && l->first[k + 1] <= start) k++;
    while (n > 0) {
        uint64_t off = start - l->first[k], have = l->sh[k].info.count - off;
        size_t m = have < n ? (size_t)have : n;
        if (m) CF_TRY(cf_shard_read(&l->sh[k], off, m, out));
        out += m;
        start += m;
        n -= m;
        k++;
    }
    return CF_OK;
}

int cf_shard_set_read(const cf_shard_set *s, uint64_t start, size_t n, int32_t *out) {
    if (start < s->train.total) {
        size_t m = (size_t)(s->train.total - start < n ? s->train.total - start : n);
        CF_TRY(cf_shard_list_read(&s->train, start, m, out));
        out += m;
        start += m;
        n -= m;
    }
    return n ? cf_shard_list_read(&s->val, start - s->train.total, n, out) : CF_OK;
}

/* ---- meta.json: written last by `clformer prepare`, so a directory without it (or with one that
 * does not describe its shards) is an interrupted or mixed prepare ------------------------------ */

static int meta_u64(const cJSON *o, const char *key, uint64_t max, uint64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > (double)max || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

int cf_shard_meta_parse(const char *text, size_t len, const char *origin, cf_shard_meta *out) {
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(text, len);
    int rc = CF_ERR_FORMAT;
    const char *why = NULL;
    if (!cJSON_IsObject(root)) {
        why = "not a JSON object";
    } else {
        const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
        const cJSON *hash = cJSON_GetObjectItemCaseSensitive(root, "tokenizer_hash");
        uint64_t ver = 0, ts = 0, vs = 0;
        char *end = NULL;
        if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "clformer token shards") != 0)
            why = "\"format\" is not \"clformer token shards\"";
        else if (!meta_u64(root, "version", 1000, &ver) || ver != CF_SHARD_VERSION)
            why = "\"version\" is missing or not this build's shard version";
        else if (!cJSON_IsString(hash) || strlen(hash->valuestring) != 16 ||
                 (errno = 0, out->tokenizer_hash = strtoull(hash->valuestring, &end, 16),
                  errno != 0 || !end || *end != 0))
            why = "\"tokenizer_hash\" is not 16 hex digits";
        else if (!meta_u64(root, "train_tokens", UINT64_MAX / 8, &out->train_tokens) ||
                 !meta_u64(root, "val_tokens", UINT64_MAX / 8, &out->val_tokens) ||
                 !meta_u64(root, "train_shards", 100000000, &ts) ||
                 !meta_u64(root, "val_shards", 100000000, &vs))
            why = "train_tokens, val_tokens, train_shards or val_shards is missing or not a "
                  "non-negative integer";
        else {
            out->train_shards = (int)ts;
            out->val_shards = (int)vs;
            rc = CF_OK;
        }
    }
    if (rc != CF_OK)
        CF_ERROR("data %s: %s; " REPREPARE, origin, why);
    cJSON_Delete(root);
    return rc;
}

/* dir/meta.json against the shards found in dir. */
static int check_meta(const char *dir, const cf_shard_set *s) {
    size_t len = strlen(dir) + 16;
    char *path = malloc(len);
    if (!path) return CF_ERR_NOMEM;
    snprintf(path, len, "%s/meta.json", dir);
    struct stat st;
    int rc = CF_OK;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 20)) {
        CF_ERROR("data %s: no meta.json (or not a small regular file): the dataset is incomplete, "
                 "from an interrupted `clformer prepare`; re-run prepare into %s",
                 dir, dir);
        rc = CF_ERR_FORMAT;
    }
    char *text = NULL;
    size_t tl = 0;
    cf_shard_meta m;
    if (rc == CF_OK) rc = cf_read_file(path, &text, &tl);
    if (rc == CF_OK) rc = cf_shard_meta_parse(text, tl, path, &m);
    free(text);
    if (rc == CF_OK && (m.train_shards != s->train.n || m.val_shards != s->val.n ||
                        m.train_tokens != s->train.total || m.val_tokens != s->val.total ||
                        (s->train.n && m.tokenizer_hash != s->train.sh[0].info.tokenizer_hash))) {
        CF_ERROR("data %s: meta.json records %d train shard(s) of %" PRIu64 " tokens and %d val "
                 "shard(s) of %" PRIu64 " tokens, the directory holds %d (%" PRIu64 " tokens) and "
                 "%d (%" PRIu64 " tokens)%s: an interrupted or mixed `clformer prepare`; re-run "
                 "prepare into %s",
                 dir, m.train_shards, m.train_tokens, m.val_shards, m.val_tokens, s->train.n,
                 s->train.total, s->val.n, s->val.total,
                 s->train.n && m.tokenizer_hash != s->train.sh[0].info.tokenizer_hash
                     ? ", and another tokenizer"
                     : "",
                 dir);
        rc = CF_ERR_FORMAT;
    }
    free(path);
    return rc;
}

int cf_shards_is_dir(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return 0;
    size_t len = strlen(path) + 32;
    char *p = malloc(len);
    if (!p) return 0;
    int yes = 0;
    /* meta.json or a val shard alone: an incomplete prepare, reported by cf_shard_set_open */
    const char *names[] = {"train.bin", "train_00000.bin", "val.bin", "val_00000.bin", "meta.json"};
    for (int k = 0; k < 5 && !yes; k++) {
        snprintf(p, len, "%s/%s", path, names[k]);
        yes = stat(p, &st) == 0 && S_ISREG(st.st_mode);
    }
    free(p);
    return yes;
}

void cf_shard_set_close(cf_shard_set *s) {
    if (!s) return;
    cf_shard_list_close(&s->train);
    cf_shard_list_close(&s->val);
    free(s);
}

int cf_shard_set_open(const cf_config *cfg, const char *dir, cf_shard_set **out) {
    *out = NULL;
    cf_shard_expect e = {0};
    e.check_hash = 1;
    e.tokenizer_name = cfg->tokenizer;
    e.max_vocab = cfg->vocab_size > 0 ? (uint32_t)cfg->vocab_size : 0;
    int rc = cf_tokenizer_hash_of(cfg->tokenizer, &e.tokenizer_hash);
    if (rc < 0) {
        CF_ERROR("data %s: cannot read tokenizer '%s' to check the shards against it; set "
                 "tokenizer to the "
                 "tokenizer.json the shards were prepared with",
                 dir, cfg->tokenizer);
        return rc;
    }
    cf_shard_set *s = calloc(1, sizeof *s);
    if (!s) return CF_ERR_NOMEM;
    rc = cf_shard_list_open(dir, "train", &e, &s->train);
    if (rc == CF_OK) rc = cf_shard_list_open(dir, "val", &e, &s->val);
    if (rc == CF_OK) rc = check_meta(dir, s);
    if (rc == CF_OK && s->train.n == 0) {
        CF_ERROR("data %s: no train.bin or train_*.bin; run `clformer prepare --out %s`", dir, dir);
        rc = CF_ERR_NOT_FOUND;
    }
    if (rc == CF_OK && s->val.n && s->val.sh[0].info.dtype != s->train.sh[0].info.dtype) {
        CF_ERROR(
            "data %s: train and val shards have different token widths; re-run `clformer prepare`",
            dir);
        rc = CF_ERR_FORMAT;
    }
    if (rc < 0) {
        cf_shard_set_close(s);
        return rc;
    }
    CF_DEBUG("data %s: %d train shard(s) %" PRIu64 " tokens, %d val shard(s) %" PRIu64 " tokens",
             dir, s->train.n, s->train.total, s->val.n, s->val.total);
    *out = s;
    return CF_OK;
}

int cf_shard_set_split(const cf_shard_set *s, const char *dir, int T, int need_val, size_t *n_val) {
    uint64_t need = (uint64_t)T + 1;
    if (s->train.total < need || (need_val && s->val.total < need)) {
        CF_ERROR(
            "data %s: %" PRIu64 " train and %" PRIu64 " val tokens, but each split needs at least "
            "max_length + 1 = %" PRIu64 "; prepare more text%s",
            dir, s->train.total, s->val.total, need,
            s->train.total >= need ? " or a larger --val-fraction, or set val_fraction=0" : "");
        return CF_ERR_INVALID;
    }
    *n_val = (size_t)s->val.total;
    return CF_OK;
}

int cf_shards_encode_text(const cf_config *cfg, const char *origin, const unsigned char *text,
                          size_t n, void **ids, int *width, size_t *count) {
    *ids = NULL;
    *count = 0;
    cf_tokenizer *tok;
    int rc = cf_tokenizer_load(cfg->tokenizer, &tok);
    if (rc < 0) {
        CF_ERROR(
            "data %s: cannot encode it: tokenizer '%s' did not load (see above); fix the tokenizer "
            "path or use tokenizer=byte vocab_size=256",
            origin, cfg->tokenizer);
        return rc;
    }
    cf_token_buf b = {0};
    rc = cf_tokenizer_encode(tok, text, n, &b);
    int w = cf_tokenizer_vocab_size(tok) <= 65536 ? 2 : 4;
    cf_tokenizer_free(tok);
    if (rc < 0) {
        cf_token_buf_free(&b);
        return rc;
    }
    if (w == 2) {
        uint16_t *p = malloc((b.n ? b.n : 1) * sizeof *p);
        if (!p) {
            cf_token_buf_free(&b);
            return CF_ERR_NOMEM;
        }
        for (size_t i = 0; i < b.n; i++) p[i] = (uint16_t)b.ids[i];
        *ids = p;
        *count = b.n;
        cf_token_buf_free(&b);
    } else {
        *ids = b.ids; /* already uint32 */
        *count = b.n;
    }
    *width = w;
    return CF_OK;
}
