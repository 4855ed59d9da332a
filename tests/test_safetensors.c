/* clformer tests: safetensors round trip (F32, I32, scalars, empty tensors, metadata), rejection
 * of damaged files (truncation, bad header JSON, bad offsets, unknown dtype, shape/size mismatch)
 * with one-line messages, and a simulated crash during save that must keep the previous file. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clformer/common.h"
#include "backend/backend.h" /* cf_fault_set_save_crash (test builds) */
#include "io/safetensors.h"
#include "test_common.h" /* g_fail, g_msg, CHECK, capture_log */

static char g_dir[1024];

static void tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", g_dir, name);
}

static long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* A file made by hand: 8-byte length, header text, then `data_len` bytes of data. */
static void write_raw(const char *path, const char *header, size_t data_len) {
    FILE *f = fopen(path, "wb");
    if (!f) exit(2);
    uint64_t n = strlen(header);
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(n >> (8 * i));
    fwrite(lb, 1, 8, f);
    fwrite(header, 1, n, f);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i & 0xff), f);
    fclose(f);
}

/* Open must fail with want_rc and a one-line message holding the path and the needles. */
static void expect_bad(const char *label, const char *path, int want_rc, const char *n1,
                       const char *n2) {
    cf_st_file *f = (cf_st_file *)0x1;
    g_msg[0] = 0;
    int rc = cf_st_open(path, &f);
    printf("  %-18s rc=%d msg: %s\n", label, rc, g_msg);
    CHECK(rc == want_rc, "%s: rc %d, want %d", label, rc, want_rc);
    CHECK(f == NULL, "%s: *out not NULL on failure", label);
    if (rc == CF_OK) cf_st_close(f);
    CHECK(strstr(g_msg, path) != NULL, "%s: message lacks the path: %s", label, g_msg);
    CHECK(strchr(g_msg, '\n') == NULL, "%s: message is not one line", label);
    if (n1) CHECK(strstr(g_msg, n1) != NULL, "%s: lacks [%s]: %s", label, n1, g_msg);
    if (n2) CHECK(strstr(g_msg, n2) != NULL, "%s: lacks [%s]: %s", label, n2, g_msg);
}

/* ---- round trip --------------------------------------------------------------------------- */

static float g_w[2 * 3] = {1.5f, -2.25f, 3.0f, 1e-30f, -0.0f, 65504.0f};
static int32_t g_ids[5] = {0, -1, 2147483647, -2147483647 - 1, 42};
static float g_scalar = 0.125f;

static int make_tensors(cf_st_tensor *t) {
    memset(t, 0, 4 * sizeof *t);
    t[0] = (cf_st_tensor){"wte", "F32", 2, {2, 3}, g_w, sizeof g_w};
    t[1] = (cf_st_tensor){"ids", "I32", 1, {5}, g_ids, sizeof g_ids};
    t[2] = (cf_st_tensor){"scale", "F32", 0, {0}, &g_scalar, sizeof g_scalar};
    t[3] = (cf_st_tensor){"empty", "F32", 2, {0, 7}, NULL, 0};
    return 4;
}

static void test_roundtrip(void) {
    printf("round trip\n");
    char p[2048];
    tmp_path(p, sizeof p, "rt.safetensors");
    cf_st_tensor t[4];
    int n = make_tensors(t);
    const char *mk[] = {"format", "config"};
    const char *mv[] = {"clformer-test", "{\"d_model\": 128, \"s\": \"\\\"q\\\"\"}"};
    int rc = cf_st_write(p, t, n, mk, mv, 2);
    CHECK(rc == CF_OK, "write rc %d: %s", rc, g_msg);
    cf_st_file *f = NULL;
    rc = cf_st_open(p, &f);
    CHECK(rc == CF_OK && f, "open rc %d: %s", rc, g_msg);
    if (!f) return;
    CHECK(cf_st_count(f) == 4, "count %d", cf_st_count(f));
    for (int i = 0; i < n; i++) {
        const cf_st_tensor *r = cf_st_find(f, t[i].name);
        CHECK(r != NULL, "tensor %s missing", t[i].name);
        if (!r) continue;
        CHECK(cf_st_get(f, i) == r, "header order differs at %d", i);
        CHECK(strcmp(r->dtype, t[i].dtype) == 0, "%s dtype %s", t[i].name, r->dtype);
        CHECK(r->ndim == t[i].ndim, "%s ndim %d want %d", t[i].name, r->ndim, t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++)
            CHECK(r->shape[d] == t[i].shape[d], "%s shape[%d] %lld", t[i].name, d,
                  (long long)r->shape[d]);
        CHECK(r->nbytes == t[i].nbytes, "%s nbytes %zu want %zu", t[i].name, r->nbytes,
              t[i].nbytes);
        if (r->nbytes) {
            CHECK(memcmp(r->data, t[i].data, r->nbytes) == 0, "%s data differs", t[i].name);
            CHECK(((uintptr_t)r->data & 3) == 0, "%s data not 4-byte aligned", t[i].name);
        }
    }
    CHECK(cf_st_find(f, "nope") == NULL, "found a tensor that does not exist");
    CHECK(cf_st_get(f, 4) == NULL && cf_st_get(f, -1) == NULL, "get out of range");
    const char *cfgv = cf_st_meta(f, "config");
    CHECK(cfgv && strcmp(cfgv, mv[1]) == 0, "metadata config = %s", cfgv ? cfgv : "(null)");
    CHECK(cf_st_meta(f, "format") && strcmp(cf_st_meta(f, "format"), "clformer-test") == 0,
          "metadata format");
    CHECK(cf_st_meta(f, "absent") == NULL, "absent metadata not NULL");
    CHECK(cf_st_meta_count(f) == 2, "meta count %d", cf_st_meta_count(f));
    cf_st_close(f);
    /* header length is padded to 8 bytes: data starts aligned */
    FILE *fp = fopen(p, "rb");
    unsigned char lb[8] = {0};
    if (fp) {
        CHECK(fread(lb, 1, 8, fp) == 8, "short read");
        fclose(fp);
    }
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)lb[i] << (8 * i);
    long want = (long)(8 + hl + sizeof g_w + sizeof g_ids + sizeof g_scalar);
    CHECK(hl % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)hl);
    CHECK(file_size(p) == want, "file size %ld want %ld", file_size(p), want);

    /* cf_st_expect */
    rc = cf_st_open(p, &f);
    const cf_st_tensor *e = NULL;
    CHECK(rc == CF_OK && cf_st_expect(f, "wte", "F32", 6, &e) == CF_OK && e, "expect wte");
    g_msg[0] = 0;
    CHECK(cf_st_expect(f, "wte", "F32", 7, &e) == CF_ERR_FORMAT && strstr(g_msg, "'wte'"),
          "expect wrong size: %s", g_msg);
    CHECK(cf_st_expect(f, "ids", "F32", 5, &e) == CF_ERR_FORMAT, "expect wrong dtype");
    CHECK(cf_st_expect(f, "lm_head", "F32", 5, &e) == CF_ERR_NOT_FOUND &&
              strstr(g_msg, "'lm_head' is missing"),
          "expect missing: %s", g_msg);
    cf_st_close(f);

    /* a header from another writer with no padding: data is copied to aligned memory */
    tmp_path(p, sizeof p, "unpadded.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", 12);
    rc = cf_st_open(p, &f);
    CHECK(rc == CF_OK, "unpadded open rc %d: %s", rc, g_msg);
    if (rc == CF_OK) {
        const cf_st_tensor *a = cf_st_find(f, "a");
        const unsigned char want_b[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
        CHECK(a && ((uintptr_t)a->data & 3) == 0 && memcmp(a->data, want_b, 12) == 0,
              "unpadded data wrong or unaligned");
        cf_st_close(f);
    }

    /* a larger tensor streams through the writer */
    size_t big_n = (size_t)3 << 20; /* 12 MiB of F32 */
    float *big = malloc(big_n * sizeof *big);
    for (size_t i = 0; i < big_n; i++) big[i] = (float)i * 0.5f;
    cf_st_tensor bt = {"big", "F32", 2, {3, 1 << 20}, big, big_n * sizeof *big};
    tmp_path(p, sizeof p, "big.safetensors");
    rc = cf_st_write(p, &bt, 1, NULL, NULL, 0);
    CHECK(rc == CF_OK, "big write rc %d", rc);
    rc = cf_st_open(p, &f);
    CHECK(rc == CF_OK && cf_st_count(f) == 1 && cf_st_meta_count(f) == 0, "big open rc %d", rc);
    if (rc == CF_OK) {
        const cf_st_tensor *r = cf_st_find(f, "big");
        CHECK(r && r->nbytes == bt.nbytes && memcmp(r->data, big, bt.nbytes) == 0,
              "big data differs");
        cf_st_close(f);
    }
    free(big);
}

/* ---- writer argument checks --------------------------------------------------------------- */

static void test_writer_rejects(void) {
    printf("writer argument checks\n");
    char p[2048];
    tmp_path(p, sizeof p, "reject.safetensors");
    float x[4] = {0};
    cf_st_tensor bad_size = {"x", "F32", 1, {3}, x, sizeof x};
    g_msg[0] = 0;
    CHECK(cf_st_write(p, &bad_size, 1, NULL, NULL, 0) == CF_ERR_INVALID &&
              strstr(g_msg, "shape [3]"),
          "size mismatch not rejected: %s", g_msg);
    cf_st_tensor bad_dtype = {"x", "Q4", 1, {4}, x, sizeof x};
    CHECK(cf_st_write(p, &bad_dtype, 1, NULL, NULL, 0) == CF_ERR_INVALID &&
              strstr(g_msg, "unknown dtype 'Q4'"),
          "dtype not rejected: %s", g_msg);
    cf_st_tensor dup[2] = {{"x", "F32", 1, {4}, x, sizeof x}, {"x", "F32", 1, {4}, x, sizeof x}};
    CHECK(cf_st_write(p, dup, 2, NULL, NULL, 0) == CF_ERR_INVALID && strstr(g_msg, "used twice"),
          "duplicate not rejected: %s", g_msg);
    cf_st_tensor reserved = {"__metadata__", "F32", 1, {4}, x, sizeof x};
    CHECK(cf_st_write(p, &reserved, 1, NULL, NULL, 0) == CF_ERR_INVALID, "reserved name accepted");
    CHECK(file_size(p) < 0, "a rejected write created the file");
}

/* ---- damaged files ------------------------------------------------------------------------ */

static void truncate_copy(const char *src, const char *dst, long keep) {
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    if (!a || !b) exit(2);
    for (long i = 0; i < keep; i++) {
        int c = fgetc(a);
        if (c == EOF) break;
        fputc(c, b);
    }
    fclose(a);
    fclose(b);
}

static void test_damaged(void) {
    printf("damaged files\n");
    char good[2048], p[2048];
    tmp_path(good, sizeof good, "good.safetensors");
    cf_st_tensor t[4];
    int n = make_tensors(t);
    const char *mk[] = {"format"};
    const char *mv[] = {"x"};
    CHECK(cf_st_write(good, t, n, mk, mv, 1) == CF_OK, "write good");
    long sz = file_size(good);

    tmp_path(p, sizeof p, "trunc4.safetensors");
    truncate_copy(good, p, 4);
    expect_bad("4 bytes", p, CF_ERR_FORMAT, "truncated (file has 4 bytes",
               "use an earlier checkpoint");
    tmp_path(p, sizeof p, "trunc_hdr.safetensors");
    truncate_copy(good, p, 40);
    expect_bad("cut in header", p, CF_ERR_FORMAT, "truncated (header says",
               "file has 32 after the length field); the file is damaged, use an earlier "
               "checkpoint");
    tmp_path(p, sizeof p, "trunc_data.safetensors");
    truncate_copy(good, p, sz - 10);
    expect_bad("cut in data", p, CF_ERR_FORMAT, "truncated (header says 48 bytes of tensor data, "
                                                "file has 38)",
               "use an earlier checkpoint");
    tmp_path(p, sizeof p, "empty.safetensors");
    truncate_copy(good, p, 0);
    expect_bad("empty file", p, CF_ERR_FORMAT, "truncated (file has 0 bytes", NULL);

    tmp_path(p, sizeof p, "badjson.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]", 4);
    expect_bad("bad header JSON", p, CF_ERR_FORMAT, "header is not valid JSON", "damaged");
    tmp_path(p, sizeof p, "notobj.safetensors");
    write_raw(p, "[1,2,3]", 0);
    expect_bad("header not object", p, CF_ERR_FORMAT, "header is not a JSON object", NULL);
    tmp_path(p, sizeof p, "hugelen.safetensors");
    {
        FILE *f = fopen(p, "wb");
        unsigned char lb[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
        fwrite(lb, 1, 8, f);
        fputs("{}", f);
        fclose(f);
    }
    expect_bad("huge length", p, CF_ERR_FORMAT, "truncated (header says 9223372036854775807 bytes",
               NULL);

    tmp_path(p, sizeof p, "overlap.safetensors");
    write_raw(p,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
              12);
    expect_bad("overlap", p, CF_ERR_FORMAT, "tensor 'b' data_offsets [4, 12] overlap", NULL);
    tmp_path(p, sizeof p, "pastend.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
    expect_bad("offsets past end", p, CF_ERR_FORMAT,
               "truncated (header says 16 bytes of tensor data, file has 8)", NULL);
    tmp_path(p, sizeof p, "reversed.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8);
    expect_bad("begin > end", p, CF_ERR_FORMAT, "data_offsets must be [begin, end]", NULL);
    tmp_path(p, sizeof p, "gap.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
    expect_bad("gap", p, CF_ERR_FORMAT, "gap of 4 bytes before tensor 'a'", NULL);
    tmp_path(p, sizeof p, "trailing.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12);
    expect_bad("trailing bytes", p, CF_ERR_FORMAT, "8 unexpected bytes after the last tensor",
               NULL);
    tmp_path(p, sizeof p, "neg.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
    expect_bad("negative dim", p, CF_ERR_FORMAT, "shape entry 0 is not a non-negative integer",
               NULL);

    tmp_path(p, sizeof p, "dtype.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"Q8_0\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
    expect_bad("unknown dtype", p, CF_ERR_FORMAT, "unsupported dtype 'Q8_0'", NULL);
    tmp_path(p, sizeof p, "shape.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);
    expect_bad("shape vs bytes", p, CF_ERR_FORMAT,
               "tensor 'a' shape [3] of F32 needs 12 bytes but its data_offsets [0, 8] span 8",
               NULL);
    tmp_path(p, sizeof p, "fields.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4);
    expect_bad("missing field", p, CF_ERR_FORMAT, "needs \"dtype\"", NULL);
    tmp_path(p, sizeof p, "meta.safetensors");
    write_raw(p, "{\"__metadata__\":{\"step\":5}}", 0);
    expect_bad("metadata value", p, CF_ERR_FORMAT, "metadata 'step' is not a string", NULL);

    tmp_path(p, sizeof p, "missing.safetensors");
    expect_bad("missing file", p, CF_ERR_NOT_FOUND, "cannot open", "check the path");

    /* the noun and advice follow the kind */
    cf_st_file *f = NULL;
    tmp_path(p, sizeof p, "trunc4.safetensors");
    g_msg[0] = 0;
    int rc = cf_st_open_kind(p, "fixture", &f);
    CHECK(rc == CF_ERR_FORMAT && strncmp(g_msg, "fixture ", 8) == 0 &&
              strstr(g_msg, "regenerate it"),
          "kind message: %s", g_msg);
}

/* ---- crash during save -------------------------------------------------------------------- */

static void test_crash_during_save(void) {
    printf("crash during save\n");
    char p[2048], tmp[2100];
    tmp_path(p, sizeof p, "ckpt.safetensors");
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", p, (long)getpid());
    float v1[1000], v2[1000];
    for (int i = 0; i < 1000; i++) {
        v1[i] = (float)i;
        v2[i] = -(float)i - 1.0f;
    }
    cf_st_tensor t = {"w", "F32", 1, {1000}, v1, sizeof v1};
    const char *mk[] = {"step"};
    const char *m1[] = {"100"};
    const char *m2[] = {"200"};
    CHECK(cf_st_write(p, &t, 1, mk, m1, 1) == CF_OK, "first save");
    long size1 = file_size(p);

    t.data = v2;
    cf_fault_set_save_crash(1);
    g_msg[0] = 0;
    int rc = cf_st_write(p, &t, 1, mk, m2, 1);
    cf_fault_set_save_crash(0);
    printf("  crashed save rc=%d msg: %s\n", rc, g_msg);
    CHECK(rc == CF_ERR_IO, "crashed save rc %d", rc);
    CHECK(strstr(g_msg, "simulated crash") && strstr(g_msg, "previous file is untouched"),
          "crash message: %s", g_msg);
    long tsz = file_size(tmp);
    CHECK(tsz > 0 && tsz < size1, "partial temp file size %ld (final would be %ld)", tsz, size1);
    CHECK(file_size(p) == size1, "target changed size: %ld vs %ld", file_size(p), size1);

    cf_st_file *f = NULL;
    rc = cf_st_open(p, &f);
    CHECK(rc == CF_OK, "previous file no longer loads: %s", g_msg);
    if (rc == CF_OK) {
        const cf_st_tensor *w = cf_st_find(f, "w");
        CHECK(w && memcmp(w->data, v1, sizeof v1) == 0, "previous data changed");
        CHECK(cf_st_meta(f, "step") && strcmp(cf_st_meta(f, "step"), "100") == 0,
              "previous metadata changed");
        cf_st_close(f);
    }
    /* the partial temp file is itself rejected if someone tries to load it */
    g_msg[0] = 0;
    rc = cf_st_open(tmp, &f);
    CHECK(rc == CF_ERR_FORMAT && strstr(g_msg, "truncated"), "partial temp loads? rc %d %s", rc,
          g_msg);

    /* the next successful save replaces the file and removes the stale temp */
    CHECK(cf_st_write(p, &t, 1, mk, m2, 1) == CF_OK, "save after crash: %s", g_msg);
    CHECK(file_size(tmp) < 0, "stale temp file %s still present", tmp);
    rc = cf_st_open(p, &f);
    CHECK(rc == CF_OK, "new file: %s", g_msg);
    if (rc == CF_OK) {
        const cf_st_tensor *w = cf_st_find(f, "w");
        CHECK(w && memcmp(w->data, v2, sizeof v2) == 0, "new data wrong");
        CHECK(strcmp(cf_st_meta(f, "step"), "200") == 0, "new metadata wrong");
        cf_st_close(f);
    }
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "%s/test_safetensors_tmp", CF_BINARY_DIR);
    if (cf_mkdirs(g_dir) != CF_OK) return 2;
    char p[2048];
    tmp_path(p, sizeof p, "reject.safetensors");
    unlink(p);
    cf_log_set_callback(capture_log, NULL);
    test_roundtrip();
    test_writer_rejects();
    test_damaged();
    test_crash_during_save();
    cf_log_set_callback(NULL, NULL);
    if (g_fail) {
        printf("test_safetensors: %d check(s) FAILED\n", g_fail);
        return 1;
    }
    printf("test_safetensors: all checks passed\n");
    return 0;
}
