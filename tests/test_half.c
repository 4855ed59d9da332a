/* clformer test: F16 and BF16 conversions (src/io/half.c). Every one of the 65536 encodings of
 * each format survives fp32 and back (NaNs stay NaN with their sign); between every two adjacent
 * finite values the exact midpoint rounds to the even one and one fp32 step either side of it to
 * the nearer one (round to nearest even, subnormals included: a truncating or round-half-up
 * converter fails here); F16 overflow (65520 -> Inf, 65519.996 -> 65504), values under 2^-25
 * -> 0, signed zeros, Inf and NaN inputs; the bulk functions count overflows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "clformer/common.h"
#include "io/half.h"

static int g_fail = 0, g_checks = 0;

static void expect(int cond, const char *what, unsigned a, unsigned b) {
    g_checks++;
    if (cond) return;
    if (g_fail < 20) printf("FAIL %s (0x%04x, 0x%04x)\n", what, a, b);
    g_fail++;
}

typedef uint16_t (*to_fn)(float);
typedef float (*from_fn)(uint16_t);

/* next fp32 up / down (x finite, > 0) */
static float up(float x) { return nextafterf(x, INFINITY); }
static float down(float x) { return nextafterf(x, -INFINITY); }

static void format_checks(const char *name, to_fn to, from_fn from, uint16_t inf) {
    char what[160];
    for (uint32_t h = 0; h < 0x10000u; h++) {
        const float x = from((uint16_t)h);
        const int nan = (h & 0x7fffu) > inf;
        snprintf(what, sizeof what, "%s: encoding -> fp32 -> encoding", name);
        if (nan) expect(isnan(x) && isnan(from(to(x))) && ((to(x) ^ h) & 0x8000u) == 0, what, h,
                        to(x));
        else expect(to(x) == h, what, h, to(x));
    }
    /* adjacent positive finite values a < b (0 and the smallest subnormal first): the midpoint is
     * exact in fp32 (F16 and BF16 have fewer mantissa bits) */
    for (uint32_t h = 0; h < inf; h++) {
        const float a = from((uint16_t)h);
        /* above the largest finite value: the step below it (the midpoint is still finite) */
        const float step = h + 1 == inf ? a - from((uint16_t)(h - 1)) : from((uint16_t)(h + 1)) - a;
        const float mid = a + step / 2;
        const uint16_t even = (h & 1u) ? (uint16_t)(h + 1) : (uint16_t)h;
        snprintf(what, sizeof what, "%s: midpoint of adjacent values rounds to the even one", name);
        expect(to(mid) == even && to(-mid) == (even | 0x8000u), what, h, to(mid));
        snprintf(what, sizeof what, "%s: just above the midpoint rounds up", name);
        expect(to(up(mid)) == h + 1, what, h, to(up(mid)));
        snprintf(what, sizeof what, "%s: just below the midpoint rounds down", name);
        expect(to(down(mid)) == h, what, h, to(down(mid)));
    }
    expect(to(INFINITY) == inf && to(-INFINITY) == (inf | 0x8000u), "Inf stays Inf", to(INFINITY),
           inf);
    expect((to(NAN) & 0x7fffu) > inf && (to(-NAN) & 0x8000u), "NaN stays NaN", to(NAN), 0);
    expect(to(0.0f) == 0 && to(-0.0f) == 0x8000u, "signed zeros", to(0.0f), to(-0.0f));
}

/* The CPU backend's cf_be_copy across dtypes (the storage of activations kept half) gives the
 * bits of the scalar conversions here: every encoding to fp32, and to the format a set of fp32
 * values with ties, subnormals, overflow, Inf and NaN, n crossing the backend's 16K blocks and
 * its eight-wide tail. */
static void backend_copy_checks(const char *name, enum cf_dtype dt, to_fn to, from_fn from,
                                uint16_t inf) {
    char what[160];
    cf_backend *be = NULL;
    cf_buffer *bf = NULL, *bh = NULL;
    const size_t n = 65536 + 3;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    uint16_t *h = malloc(n * sizeof(uint16_t));
    if (!x || !y || !h || cf_backend_cpu_create("cpu", NULL, &be) < 0 ||
        cf_be_alloc(be, n * sizeof(float), &bf) < 0 || cf_be_alloc(be, n * 2, &bh) < 0) {
        expect(0, "backend copy: setup", 0, 0);
        return;
    }
    const cf_view vf = cf_view_f32(bf, 0), vh = cf_view_typed(bh, dt, 0);
    /* every encoding (and 3 more) -> fp32 */
    for (size_t i = 0; i < n; i++) h[i] = (uint16_t)(i & 0xffffu);
    int ok = cf_be_upload(be, vh, h, n * 2) == CF_OK && cf_be_copy(be, vf, vh, n) == CF_OK &&
             cf_be_download(be, y, vf, n * sizeof(float)) == CF_OK;
    snprintf(what, sizeof what, "%s: backend copy of every encoding to fp32", name);
    for (size_t i = 0; ok && i < n; i++) {
        const float r = from(h[i]);
        const int same = (h[i] & 0x7fffu) > inf ? isnan(y[i]) != 0 : memcmp(&r, &y[i], 4) == 0;
        if (!same) {
            expect(0, what, h[i], 0);
            ok = 0;
        }
    }
    expect(ok, what, 0, 0);
    /* fp32 values -> the format: each encoding's value, the midpoints of neighbours and one fp32
     * step either side, then specials */
    for (size_t i = 0; i < n; i++) {
        const uint16_t e = (uint16_t)(i & 0xffffu);
        const float v = from(e), w = from((uint16_t)(e + 1));
        switch (i % 4) {
        case 0: x[i] = v; break;
        case 1: x[i] = isfinite(v) && isfinite(w) ? 0.5f * (v + w) : v; break;
        case 2: x[i] = isfinite(v) ? up(v) : v; break;
        default: x[i] = isfinite(v) ? down(v) : v; break;
        }
    }
    const float sp[] = {INFINITY, -INFINITY, NAN, 65520.0f, 1e6f, -1e30f, 0x1p-25f, 0x1p-149f,
                        -0.0f, 3.4028235e38f};
    for (size_t k = 0; k < sizeof sp / sizeof sp[0]; k++) x[n - 1 - k] = sp[k];
    ok = cf_be_upload(be, vf, x, n * sizeof(float)) == CF_OK && cf_be_copy(be, vh, vf, n) == CF_OK &&
         cf_be_download(be, h, vh, n * 2) == CF_OK;
    snprintf(what, sizeof what, "%s: backend copy of fp32 values (ties, specials) to the format",
             name);
    for (size_t i = 0; ok && i < n; i++) {
        const uint16_t r = to(x[i]);
        const int same = isnan(x[i]) ? (h[i] & 0x7fffu) > inf : h[i] == r;
        if (!same) {
            expect(0, what, r, h[i]);
            ok = 0;
        }
    }
    expect(ok, what, 0, 0);
    cf_be_free(be, bf);
    cf_be_free(be, bh);
    cf_backend_destroy(be);
    free(x);
    free(y);
    free(h);
}

int main(void) {
    cf_log_set_level(CF_LOG_WARN);
    backend_copy_checks("F16", CF_F16, cf_f32_to_f16, cf_f16_to_f32, 0x7c00u);
    backend_copy_checks("BF16", CF_BF16, cf_f32_to_bf16, cf_bf16_to_f32, 0x7f80u);
    format_checks("F16", cf_f32_to_f16, cf_f16_to_f32, 0x7c00u);
    format_checks("BF16", cf_f32_to_bf16, cf_bf16_to_f32, 0x7f80u);
    expect(cf_f32_to_f16(1.0f) == 0x3c00u && cf_f32_to_f16(-2.0f) == 0xc000u &&
               cf_f32_to_f16(65504.0f) == 0x7bffu,
           "F16: 1, -2, 65504", cf_f32_to_f16(1.0f), cf_f32_to_f16(65504.0f));
    expect(cf_f32_to_f16(65520.0f) == 0x7c00u && cf_f32_to_f16(down(65520.0f)) == 0x7bffu &&
               cf_f32_to_f16(1e6f) == 0x7c00u && cf_f32_to_f16(-1e30f) == 0xfc00u,
           "F16 overflow: 65520 and beyond -> Inf, just under 65520 -> 65504",
           cf_f32_to_f16(65520.0f), cf_f32_to_f16(down(65520.0f)));
    expect(cf_f32_to_f16(0x1p-24f) == 1 && cf_f32_to_f16(0x1p-25f) == 0 &&
               cf_f32_to_f16(up(0x1p-25f)) == 1 && cf_f32_to_f16(0x1.8p-24f) == 2 &&
               cf_f32_to_f16(1e-10f) == 0 && cf_f32_to_f16(0x1p-149f) == 0 &&
               cf_f32_to_f16(0x1.ffcp-15f) == 0x0400u,
           "F16 subnormals: 2^-24 -> 1, 2^-25 -> 0 (tie), 1.5*2^-24 -> 2 (tie to even), tiny -> 0, "
           "the largest subnormal's midpoint with 2^-14 -> 2^-14",
           cf_f32_to_f16(0x1p-24f), cf_f32_to_f16(0x1.8p-24f));
    expect(cf_f32_to_bf16(1.0f) == 0x3f80u && cf_f32_to_bf16(0x1.01p0f) == 0x3f80u &&
               cf_f32_to_bf16(0x1.03p0f) == 0x3f82u && cf_f32_to_bf16(3.4028235e38f) == 0x7f80u &&
               cf_f32_to_bf16(0x1p-149f) == 0,
           "BF16: 1, ties to even (1+2^-8 -> 1, 1+3*2^-8 -> 1+2^-6), FLT_MAX -> Inf, the "
           "smallest fp32 subnormal -> 0",
           cf_f32_to_bf16(0x1.01p0f), cf_f32_to_bf16(0x1.03p0f));
    const float v[5] = {1.0f, 70000.0f, -1e5f, INFINITY, NAN};
    uint16_t o[5];
    expect(cf_f32_to_f16_n(v, o, 5) == 2 && o[1] == 0x7c00u && o[2] == 0xfc00u,
           "F16 bulk: 2 finite values overflow (Inf and NaN inputs are not counted)", o[1], o[2]);
    expect(cf_f32_to_bf16_n(v, o, 5) == 0 && o[1] == cf_f32_to_bf16(70000.0f),
           "BF16 bulk: no overflow", o[1], 0);
    printf("%s test_half: %d of %d checks failed\n", g_fail ? "FAIL" : "PASS", g_fail, g_checks);
    return g_fail ? 1 : 0;
}
