/* clformer test: F16 and BF16 conversions (src/io/half.c). Every one of the 65536 encodings of
 * each format survives fp32 and back (NaNs stay NaN with their sign); between every two adjacent
 * finite values the exact midpoint rounds to the even one and one fp32 step either side of it to
 * the nearer one (round to nearest even, subnormals included: a truncating or round-half-up
 * converter fails here); F16 overflow (65520 -> Inf, 65519.996 -> 65504), values under 2^-25
 * -> 0, signed zeros, Inf and NaN inputs; the bulk functions count overflows. */
#include <math.h>
#include <stdio.h>
#include <string.h>

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

int main(void) {
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
