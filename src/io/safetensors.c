/* clformer: safetensors reader (mmap + full validation) and streaming atomic writer. */
#define _POSIX_C_SOURCE 200809L
#include "io/safetensors.h"
#ifdef CF_FAULT_INJECTION
#include "backend/backend.h" /* cf_fault_save_crash */
#endif

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader/writer assumes a little-endian host"
#endif

/* The format's own limit on the header; anything larger is a damaged length field. */
#define CF_ST_MAX_HEADER (100u << 20)

static const struct {
    const char *name;
    size_t size;
} g_dtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
    {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1},
};
#define CF_ST_NDTYPES ((int)(sizeof g_dtypes / sizeof g_dtypes[0]))

static const char *canonical_dtype(const char *dtype) {
    if (!dtype) return NULL;
    for (int i = 0; i < CF_ST_NDTYPES; i++)
        if (strcmp(g_dtypes[i].name, dtype) == 0) return g_dtypes[i].name;
    return NULL;
}

size_t cf_st_dtype_size(const char *dtype) {
    if (!dtype) return 0;
    for (int i = 0; i < CF_ST_NDTYPES; i++)
        if (strcmp(g_dtypes[i].name, dtype) == 0) return g_dtypes[i].size;
    return 0;
}

/* numel of a shape, 0 on overflow past 2^62 (reported by the callers as a size mismatch) */
static int shape_numel(const int64_t *shape, int ndim, uint64_t *out) {
    uint64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return -1;
        if (shape[d] != 0 && n > (UINT64_C(1) << 62) / (uint64_t)shape[d]) return -1;
        n *= (uint64_t)shape[d];
    }
    *out = n;
    return 0;
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t n) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, n - off, "[");
    for (int d = 0; d < ndim && off < n; d++)
        off += (size_t)snprintf(buf + off, n - off, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (off < n) snprintf(buf + off, n - off, "]");
}

/* ======================================== writer ======================================== */

typedef struct {
    int fd;
    const char *tmp;
    uint64_t written;
    uint64_t crash_at; /* fault hook: stop once this many bytes are written (UINT64_MAX = never) */
    int crashed;
} st_sink;

static int sink_write(st_sink *s, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        size_t chunk = len > (64u << 20) ? (64u << 20) : len;
        if (s->written + chunk > s->crash_at) {
            chunk = (size_t)(s->crash_at - s->written);
            s->crashed = 1;
        }
        size_t left = chunk;
        while (left > 0) {
            ssize_t w = write(s->fd, p, left);
            if (w < 0) {
                if (errno == EINTR) continue;
                return -errno;
            }
            p += w;
            left -= (size_t)w;
            s->written += (uint64_t)w;
        }
        len -= chunk;
        if (s->crashed) return 1;
    }
    return 0;
}

/* Remove "<base>.<digits>.tmp" siblings left by crashed saves of the same path. */
static void remove_stale_temps(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (slash) {
        size_t dl = (size_t)(slash - path);
        if (dl == 0) dl = 1; /* "/file" */
        if (dl >= sizeof dir) return;
        memcpy(dir, path, dl);
        dir[dl] = 0;
    } else {
        strcpy(dir, ".");
    }
    size_t bl = strlen(base);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        size_t nl = strlen(n);
        if (nl < bl + 6 || strncmp(n, base, bl) != 0 || n[bl] != '.') continue;
        if (strcmp(n + nl - 4, ".tmp") != 0) continue;
        int digits = 1;
        for (size_t i = bl + 1; i < nl - 4; i++)
            if (n[i] < '0' || n[i] > '9') digits = 0;
        if (!digits || nl - 4 == bl + 1) continue;
        char full[8192];
        snprintf(full, sizeof full, "%s/%s", dir, n);
        if (unlink(full) == 0) CF_DEBUG("removed stale temp file '%s'", full);
    }
    closedir(d);
}

static void fsync_parent_dir(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash) {
        size_t dl = (size_t)(slash - path);
        if (dl == 0) dl = 1;
        if (dl >= sizeof dir) return;
        memcpy(dir, path, dl);
        dir[dl] = 0;
    } else {
        strcpy(dir, ".");
    }
    int fd = open(dir, O_RDONLY);
    if (fd < 0) return;
    (void)fsync(fd); /* best effort: some filesystems refuse fsync on directories */
    close(fd);
}


int cf_st_write(const char *path, const cf_st_tensor *tensors, int n, const char *const *meta_keys,
                const char *const *meta_vals, int nmeta) {
    if (!path || !*path || n < 0 || nmeta < 0 || (n > 0 && !tensors) ||
        (nmeta > 0 && (!meta_keys || !meta_vals))) {
        CF_ERROR("cannot save '%s': invalid arguments to cf_st_write", path ? path : "(null)");
        return CF_ERR_INVALID;
    }
    /* ---- validate and build the header ---- */
    for (int i = 0; i < n; i++) {
        const cf_st_tensor *t = &tensors[i];
        if (!t->name || !*t->name || strcmp(t->name, "__metadata__") == 0) {
            CF_ERROR("cannot save %s: tensor %d has an empty or reserved name", path, i);
            return CF_ERR_INVALID;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(tensors[j].name, t->name) == 0) {
                CF_ERROR("cannot save %s: tensor name '%s' is used twice", path, t->name);
                return CF_ERR_INVALID;
            }
        }
        size_t es = cf_st_dtype_size(t->dtype);
        if (es == 0) {
            CF_ERROR("cannot save %s: tensor '%s' has unknown dtype '%s' (use F32, I32, ...)", path,
                     t->name, t->dtype ? t->dtype : "(null)");
            return CF_ERR_INVALID;
        }
        uint64_t numel = 0;
        if (t->ndim < 0 || t->ndim > CF_ST_MAX_DIMS ||
            shape_numel(t->shape, t->ndim, &numel) != 0 || numel * es != (uint64_t)t->nbytes) {
            char sh[256];
            shape_str(t->shape, t->ndim < 0 ? 0 : (t->ndim > 8 ? 8 : t->ndim), sh, sizeof sh);
            CF_ERROR("cannot save %s: tensor '%s' shape %s (ndim %d) of %s does not match its "
                     "%zu bytes",
                     path, t->name, sh, t->ndim, t->dtype, t->nbytes);
            return CF_ERR_INVALID;
        }
        if (t->nbytes > 0 && !t->data) {
            CF_ERROR("cannot save %s: tensor '%s' has no data", path, t->name);
            return CF_ERR_INVALID;
        }
    }
    cJSON *root = cJSON_CreateObject();
    if (!root) return CF_ERR_NOMEM;
    int nomem = 0;
    if (nmeta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; meta && i < nmeta; i++) {
            if (!meta_keys[i] || !meta_vals[i]) {
                cJSON_Delete(root);
                CF_ERROR("cannot save %s: metadata entry %d is NULL", path, i);
                return CF_ERR_INVALID;
            }
            if (!cJSON_AddStringToObject(meta, meta_keys[i], meta_vals[i])) nomem = 1;
        }
        if (!meta) nomem = 1;
    }
    uint64_t off = 0;
    for (int i = 0; i < n && !nomem; i++) {
        const cf_st_tensor *t = &tensors[i];
        cJSON *o = cJSON_AddObjectToObject(root, t->name);
        cJSON *shape = cJSON_CreateArray();
        cJSON *offs = cJSON_CreateArray();
        if (!o || !shape || !offs) {
            cJSON_Delete(shape);
            cJSON_Delete(offs);
            nomem = 1;
            break;
        }
        cJSON_AddStringToObject(o, "dtype", canonical_dtype(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddItemToObject(o, "shape", shape);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + t->nbytes)));
        cJSON_AddItemToObject(o, "data_offsets", offs);
        off += t->nbytes;
    }
    char *json = nomem ? NULL : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) {
        CF_ERROR("cannot save %s: out of memory building the header", path);
        return CF_ERR_NOMEM;
    }
    if (off > (UINT64_C(1) << 53)) {
        cJSON_free(json);
        CF_ERROR("cannot save %s: %llu bytes of tensor data is more than the format's offsets "
                 "can address exactly",
                 path, (unsigned long long)off);
        return CF_ERR_INVALID;
    }
    size_t jlen = strlen(json);
    size_t hlen = (jlen + 7) & ~(size_t)7; /* pad so the data starts 8-byte aligned */
    char *header = malloc(hlen);
    if (!header) {
        cJSON_free(json);
        return CF_ERR_NOMEM;
    }
    memcpy(header, json, jlen);
    memset(header + jlen, ' ', hlen - jlen);
    cJSON_free(json);

    /* ---- stream to a temp file, fsync, rename ---- */
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp) {
        free(header);
        return CF_ERR_NOMEM;
    }
    snprintf(tmp, plen + 32, "%s.%ld.tmp", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        CF_ERROR("cannot save %s: cannot create '%s': %s; check that the directory exists and is "
                 "writable",
                 path, tmp, strerror(errno));
        free(header);
        free(tmp);
        return CF_ERR_IO;
    }
    uint64_t total = 8 + (uint64_t)hlen + off;
    st_sink s = {fd, tmp, 0, UINT64_MAX, 0};
#ifdef CF_FAULT_INJECTION
    if (cf_fault_save_crash()) s.crash_at = total / 2; /* test builds: cf_fault_set_save_crash */
#endif
    unsigned char lenbuf[8];
    for (int b = 0; b < 8; b++) lenbuf[b] = (unsigned char)((uint64_t)hlen >> (8 * b));
    int wr = sink_write(&s, lenbuf, 8);
    if (wr == 0) wr = sink_write(&s, header, hlen);
    for (int i = 0; i < n && wr == 0; i++)
        if (tensors[i].nbytes) wr = sink_write(&s, tensors[i].data, tensors[i].nbytes);
    free(header);
    if (wr == 1) {
        /* simulated crash: leave the partial temp file exactly as a killed process would */
        close(fd);
        CF_ERROR("cannot save %s: simulated crash after %llu of %llu bytes (injected fault, "
                 "CF_FAULT_SAVE_CRASH); the previous file is untouched",
                 path, (unsigned long long)s.written, (unsigned long long)total);
        free(tmp);
        return CF_ERR_IO;
    }
    if (wr < 0) {
        CF_ERROR("cannot save %s: write to '%s' failed: %s; free disk space and retry (the "
                 "previous file is untouched)",
                 path, tmp, strerror(-wr));
        close(fd);
        unlink(tmp);
        free(tmp);
        return CF_ERR_IO;
    }
    if (fsync(fd) != 0) {
        CF_ERROR("cannot save %s: fsync of '%s' failed: %s (the previous file is untouched)", path,
                 tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return CF_ERR_IO;
    }
    if (close(fd) != 0) {
        CF_ERROR("cannot save %s: closing '%s' failed: %s (the previous file is untouched)", path,
                 tmp, strerror(errno));
        unlink(tmp);
        free(tmp);
        return CF_ERR_IO;
    }
    if (rename(tmp, path) != 0) {
        CF_ERROR("cannot save %s: rename from '%s' failed: %s", path, tmp, strerror(errno));
        unlink(tmp);
        free(tmp);
        return CF_ERR_IO;
    }
    free(tmp);
    fsync_parent_dir(path);
    remove_stale_temps(path);
    return CF_OK;
}

/* ======================================== reader ======================================== */

typedef struct {
    cf_st_tensor t;
    uint64_t begin, end; /* relative to the data section */
} st_entry;

struct cf_st_file {
    char *path;
    void *map; /* whole file (mmap) or NULL */
    size_t map_len;
    void *copy;                /* data section copied to aligned memory, when the mapping is not */
    const unsigned char *data; /* start of the data section */
    st_entry *ents;
    int n;
    char **meta_k, **meta_v;
    int nmeta;
};

typedef struct {
    const char *path, *kind;
} st_ctx;

static const char *advice(const st_ctx *c) {
    return strcmp(c->kind, "checkpoint") == 0
               ? "the file is damaged, use an earlier checkpoint"
               : "the file is damaged, regenerate it";
}

#define ST_BAD(c, fmt, ...)                                                                        \
    CF_ERROR("%s %s: " fmt "; %s", (c)->kind, (c)->path, __VA_ARGS__, advice(c))

/* A JSON number that is a non-negative integer representable exactly. */
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != (double)(uint64_t)d) return -1;
    *out = (uint64_t)d;
    return 0;
}

static int cmp_begin(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int parse_header(cf_st_file *f, const st_ctx *c, const char *hdr, uint64_t data_len) {
    const char *endp = NULL;
    cJSON *root = cJSON_ParseWithOpts(hdr, &endp, 1);
    if (!root) {
        ST_BAD(c, "header is not valid JSON (error near byte %ld of the header)",
               endp ? (long)(endp - hdr) : 0L);
        return CF_ERR_FORMAT;
    }
    if (!cJSON_IsObject(root)) {
        ST_BAD(c, "header is not a JSON object%s", "");
        cJSON_Delete(root);
        return CF_ERR_FORMAT;
    }
    int count = 0;
    for (cJSON *it = root->child; it; it = it->next) count++;
    f->ents = calloc((size_t)count + 1, sizeof *f->ents);
    f->meta_k = calloc((size_t)count + 1, sizeof(char *));
    f->meta_v = calloc((size_t)count + 1, sizeof(char *));
    if (!f->ents || !f->meta_k || !f->meta_v) {
        cJSON_Delete(root);
        return CF_ERR_NOMEM;
    }
    int rc = CF_OK;
    for (cJSON *it = root->child; it && rc == CF_OK; it = it->next) {
        const char *name = it->string ? it->string : "";
        if (strcmp(name, "__metadata__") == 0) {
            if (!cJSON_IsObject(it)) {
                ST_BAD(c, "__metadata__ is not an object%s", "");
                rc = CF_ERR_FORMAT;
                break;
            }
            int nm = 0;
            for (cJSON *m = it->child; m; m = m->next) nm++;
            size_t cap = (size_t)f->nmeta + (size_t)nm + 1;
            char **k2 = realloc(f->meta_k, cap * sizeof(char *));
            if (k2) f->meta_k = k2;
            char **v2 = realloc(f->meta_v, cap * sizeof(char *));
            if (v2) f->meta_v = v2;
            if (!k2 || !v2) {
                rc = CF_ERR_NOMEM;
                break;
            }
            for (cJSON *m = it->child; m; m = m->next) {
                if (!cJSON_IsString(m)) {
                    ST_BAD(c, "metadata '%s' is not a string", m->string ? m->string : "");
                    rc = CF_ERR_FORMAT;
                    break;
                }
                f->meta_k[f->nmeta] = strdup(m->string ? m->string : "");
                f->meta_v[f->nmeta] = strdup(m->valuestring);
                f->nmeta++;
                if (!f->meta_k[f->nmeta - 1] || !f->meta_v[f->nmeta - 1]) {
                    rc = CF_ERR_NOMEM;
                    break;
                }
            }
            continue;
        }
        for (int j = 0; j < f->n; j++) {
            if (strcmp(f->ents[j].t.name, name) == 0) {
                ST_BAD(c, "tensor '%s' appears twice in the header", name);
                rc = CF_ERR_FORMAT;
                break;
            }
        }
        if (rc != CF_OK) break;
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
        const cJSON *of = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsObject(it) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) ||
            !cJSON_IsArray(of)) {
            ST_BAD(c, "tensor '%s' needs \"dtype\" (string), \"shape\" and \"data_offsets\" "
                      "(arrays)",
                   name);
            rc = CF_ERR_FORMAT;
            break;
        }
        st_entry *e = &f->ents[f->n];
        e->t.name = strdup(name);
        if (!e->t.name) {
            rc = CF_ERR_NOMEM;
            break;
        }
        f->n++;
        size_t es = cf_st_dtype_size(dt->valuestring);
        if (es == 0) {
            ST_BAD(c, "tensor '%s' has unsupported dtype '%s' (known: F64 F32 F16 BF16 I64 I32 I16 "
                      "I8 U8 BOOL)",
                   name, dt->valuestring);
            rc = CF_ERR_FORMAT;
            break;
        }
        e->t.dtype = canonical_dtype(dt->valuestring);
        int nd = cJSON_GetArraySize(sh);
        if (nd > CF_ST_MAX_DIMS) {
            ST_BAD(c, "tensor '%s' has %d dimensions (at most %d supported)", name, nd,
                   CF_ST_MAX_DIMS);
            rc = CF_ERR_FORMAT;
            break;
        }
        e->t.ndim = nd;
        int d = 0;
        for (const cJSON *x = sh->child; x; x = x->next, d++) {
            uint64_t v;
            if (json_u64(x, &v) != 0 || v > (UINT64_C(1) << 62)) {
                ST_BAD(c, "tensor '%s' shape entry %d is not a non-negative integer", name, d);
                rc = CF_ERR_FORMAT;
                break;
            }
            e->t.shape[d] = (int64_t)v;
        }
        if (rc != CF_OK) break;
        if (cJSON_GetArraySize(of) != 2 || json_u64(of->child, &e->begin) != 0 ||
            json_u64(of->child->next, &e->end) != 0 || e->begin > e->end) {
            ST_BAD(c, "tensor '%s' data_offsets must be [begin, end] with 0 <= begin <= end", name);
            rc = CF_ERR_FORMAT;
            break;
        }
        uint64_t numel = 0;
        if (shape_numel(e->t.shape, nd, &numel) != 0 || numel > UINT64_MAX / es ||
            numel * es != e->end - e->begin) {
            char s[256];
            shape_str(e->t.shape, nd, s, sizeof s);
            ST_BAD(c, "tensor '%s' shape %s of %s needs %llu bytes but its data_offsets [%llu, "
                      "%llu] span %llu",
                   name, s, e->t.dtype, (unsigned long long)(numel * es),
                   (unsigned long long)e->begin, (unsigned long long)e->end,
                   (unsigned long long)(e->end - e->begin));
            rc = CF_ERR_FORMAT;
            break;
        }
        e->t.nbytes = (size_t)(e->end - e->begin);
    }
    cJSON_Delete(root);
    if (rc != CF_OK) return rc;

    /* offsets: in range, sorted spans tile [0, data_len) with no overlap, gap or trailing bytes */
    uint64_t max_end = 0;
    for (int i = 0; i < f->n; i++)
        if (f->ents[i].end > max_end) max_end = f->ents[i].end;
    if (max_end > data_len) {
        CF_ERROR("%s %s: truncated (header says %llu bytes of tensor data, file has %llu); %s",
                 c->kind, c->path, (unsigned long long)max_end, (unsigned long long)data_len,
                 advice(c));
        return CF_ERR_FORMAT;
    }
    st_entry **order = malloc(((size_t)f->n + 1) * sizeof *order);
    if (!order) return CF_ERR_NOMEM;
    for (int i = 0; i < f->n; i++) order[i] = &f->ents[i];
    qsort(order, (size_t)f->n, sizeof *order, cmp_begin);
    uint64_t pos = 0;
    for (int i = 0; i < f->n && rc == CF_OK; i++) {
        st_entry *e = order[i];
        if (e->begin < pos) {
            ST_BAD(c, "tensor '%s' data_offsets [%llu, %llu] overlap the previous tensor (ends at "
                      "%llu)",
                   e->t.name, (unsigned long long)e->begin, (unsigned long long)e->end,
                   (unsigned long long)pos);
            rc = CF_ERR_FORMAT;
        } else if (e->begin > pos) {
            ST_BAD(c, "gap of %llu bytes before tensor '%s' (data_offsets [%llu, %llu])",
                   (unsigned long long)(e->begin - pos), e->t.name, (unsigned long long)e->begin,
                   (unsigned long long)e->end);
            rc = CF_ERR_FORMAT;
        }
        pos = e->end;
    }
    free(order);
    if (rc == CF_OK && pos != data_len) {
        ST_BAD(c, "%llu unexpected bytes after the last tensor",
               (unsigned long long)(data_len - pos));
        rc = CF_ERR_FORMAT;
    }
    return rc;
}

int cf_st_open_kind(const char *path, const char *kind, cf_st_file **out) {
    *out = NULL;
    st_ctx c = {path, kind && *kind ? kind : "checkpoint"};
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        int err = errno;
        CF_ERROR("%s %s: cannot open: %s%s", c.kind, path, strerror(err),
                 err == ENOENT ? "; check the path" : "");
        return err == ENOENT ? CF_ERR_NOT_FOUND : CF_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        CF_ERROR("%s %s: not a regular file", c.kind, path);
        return CF_ERR_IO;
    }
    uint64_t fsize = (uint64_t)st.st_size;
    if (fsize < 8) {
        close(fd);
        CF_ERROR("%s %s: truncated (file has %llu bytes, less than the 8-byte header length); %s",
                 c.kind, path, (unsigned long long)fsize, advice(&c));
        return CF_ERR_FORMAT;
    }
    unsigned char lb[8];
    ssize_t got = pread(fd, lb, 8, 0);
    if (got != 8) {
        close(fd);
        CF_ERROR("%s %s: cannot read the header length: %s", c.kind, path,
                 got < 0 ? strerror(errno) : "short read");
        return CF_ERR_IO;
    }
    uint64_t hlen = 0;
    for (int b = 0; b < 8; b++) hlen |= (uint64_t)lb[b] << (8 * b);
    if (hlen > fsize - 8) {
        close(fd);
        CF_ERROR("%s %s: truncated (header says %llu bytes, file has %llu after the length "
                 "field); %s",
                 c.kind, path, (unsigned long long)hlen, (unsigned long long)(fsize - 8),
                 advice(&c));
        return CF_ERR_FORMAT;
    }
    if (hlen < 2 || hlen > CF_ST_MAX_HEADER) {
        close(fd);
        ST_BAD(&c, "header length %llu is implausible (expected 2 .. %u)", (unsigned long long)hlen,
               CF_ST_MAX_HEADER);
        return CF_ERR_FORMAT;
    }
    cf_st_file *f = calloc(1, sizeof *f);
    char *hdr = malloc((size_t)hlen + 1);
    if (!f || !hdr) {
        close(fd);
        free(f);
        free(hdr);
        return CF_ERR_NOMEM;
    }
    f->path = strdup(path);
    int rc = CF_OK;
    size_t done = 0;
    while (done < hlen) {
        ssize_t r = pread(fd, hdr + done, (size_t)hlen - done, (off_t)(8 + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            CF_ERROR("%s %s: cannot read the header: %s", c.kind, path,
                     r < 0 ? strerror(errno) : "short read");
            rc = CF_ERR_IO;
            break;
        }
        done += (size_t)r;
    }
    if (rc == CF_OK && memchr(hdr, 0, (size_t)hlen)) {
        ST_BAD(&c, "header contains a NUL byte%s", "");
        rc = CF_ERR_FORMAT;
    }
    hdr[hlen] = 0;
    uint64_t data_len = fsize - 8 - hlen;
    if (rc == CF_OK) rc = parse_header(f, &c, hdr, data_len);
    free(hdr);
    if (rc == CF_OK && data_len > 0) {
        uint64_t data_off = 8 + hlen;
        void *m = mmap(NULL, (size_t)fsize, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED && data_off % 8 == 0) {
            f->map = m;
            f->map_len = (size_t)fsize;
            f->data = (const unsigned char *)m + data_off;
        } else {
            /* unaligned data section (another writer's unpadded header) or no mmap: copy */
            if (m != MAP_FAILED) munmap(m, (size_t)fsize);
            f->copy = malloc((size_t)data_len);
            if (!f->copy) {
                CF_ERROR("%s %s: out of memory reading %llu bytes", c.kind, path,
                         (unsigned long long)data_len);
                rc = CF_ERR_NOMEM;
            }
            size_t dd = 0;
            while (rc == CF_OK && dd < data_len) {
                ssize_t r = pread(fd, (char *)f->copy + dd, (size_t)data_len - dd,
                                  (off_t)(data_off + dd));
                if (r < 0 && errno == EINTR) continue;
                if (r <= 0) {
                    CF_ERROR("%s %s: cannot read tensor data: %s", c.kind, path,
                             r < 0 ? strerror(errno) : "short read");
                    rc = CF_ERR_IO;
                } else {
                    dd += (size_t)r;
                }
            }
            f->data = f->copy;
        }
    }
    close(fd);
    if (rc != CF_OK) {
        cf_st_close(f);
        return rc;
    }
    for (int i = 0; i < f->n; i++)
        f->ents[i].t.data = f->data ? f->data + f->ents[i].begin : NULL;
    *out = f;
    return CF_OK;
}

int cf_st_open(const char *path, cf_st_file **out) {
    return cf_st_open_kind(path, "checkpoint", out);
}

int cf_st_count(const cf_st_file *f) { return f ? f->n : 0; }

const cf_st_tensor *cf_st_get(const cf_st_file *f, int i) {
    if (!f || i < 0 || i >= f->n) return NULL;
    return &f->ents[i].t;
}

const cf_st_tensor *cf_st_find(const cf_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->ents[i].t.name, name) == 0) return &f->ents[i].t;
    return NULL;
}

const char *cf_st_meta(const cf_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_k[i], key) == 0) return f->meta_v[i];
    return NULL;
}

int cf_st_meta_count(const cf_st_file *f) { return f ? f->nmeta : 0; }

const char *cf_st_meta_key(const cf_st_file *f, int i) {
    if (!f || i < 0 || i >= f->nmeta) return NULL;
    return f->meta_k[i];
}

const char *cf_st_path(const cf_st_file *f) { return f ? f->path : NULL; }

void cf_st_close(cf_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    free(f->copy);
    if (f->ents)
        for (int i = 0; i < f->n; i++) free((char *)f->ents[i].t.name);
    free(f->ents);
    if (f->meta_k)
        for (int i = 0; i < f->nmeta; i++) free(f->meta_k[i]);
    if (f->meta_v)
        for (int i = 0; i < f->nmeta; i++) free(f->meta_v[i]);
    free(f->meta_k);
    free(f->meta_v);
    free(f->path);
    free(f);
}

int cf_st_expect(const cf_st_file *f, const char *name, const char *dtype, size_t numel,
                 const cf_st_tensor **out) {
    *out = NULL;
    const cf_st_tensor *t = cf_st_find(f, name);
    if (!t) {
        CF_ERROR("%s: tensor '%s' is missing; was the file written by a different model?",
                 cf_st_path(f), name);
        return CF_ERR_NOT_FOUND;
    }
    size_t es = cf_st_dtype_size(dtype);
    if (strcmp(t->dtype, dtype) != 0 || es == 0 || t->nbytes != numel * es) {
        CF_ERROR("%s: tensor '%s' is %s with %zu elements, expected %s with %zu; the file does not "
                 "match this model's configuration",
                 cf_st_path(f), name, t->dtype, t->nbytes / cf_st_dtype_size(t->dtype), dtype,
                 numel);
        return CF_ERR_FORMAT;
    }
    *out = t;
    return CF_OK;
}
