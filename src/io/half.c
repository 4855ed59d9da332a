/* clformer: F16 and BF16 conversions (half.h): bit manipulation on the IEEE encodings, no
 * dependence on the compiler's _Float16 or the FPU's rounding mode. */
#include "io/half.h"

#include <math.h>
#include <string.h>

static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float float_of(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

uint16_t cf_f32_to_f16(float x) {
    const uint32_t u = bits_of(x);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t exp = (u >> 23) & 0xffu, man = u & 0x7fffffu;
    if (exp == 0xffu) /* Inf, or NaN: quiet, the payload's top bits */
        return (uint16_t)(sign | 0x7c00u | (man ? 0x0200u | (man >> 13) : 0u));
    const int e = (int)exp - 127; /* unbiased; fp32 subnormals (e = -127) are far below F16's */
    if (e > 15) return (uint16_t)(sign | 0x7c00u);
    if (e >= -14) {
        /* normal: 10 of the 23 mantissa bits, the other 13 rounded to nearest even; a carry out of
         * the mantissa steps the exponent, out of exponent 30 it gives Inf (0x7c00) */
        uint32_t h = ((uint32_t)(e + 15) << 10) | (man >> 13);
        const uint32_t rest = man & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    if (e < -25) return sign; /* below half the smallest subnormal (2^-25): zero */
    /* subnormal: the value in units of 2^-24 is (1.man) * 2^(e + 24), e + 24 in -1..-11 */
    const uint32_t full = man | 0x800000u;  /* 24 bits, value full * 2^(e - 23) */
    const int shift = -e - 1;               /* (full >> shift) = units of 2^-24; 13 < shift < 25 */
    uint32_t h = full >> shift;
    const uint32_t rest = full & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (h & 1u))) h++; /* up to 0x400: the smallest normal */
    return (uint16_t)(sign | h);
}

float cf_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1fu) return float_of(sign | 0x7f800000u | (man << 13));
    if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in fp32 */
        const float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return float_of(sign | ((exp + 112u) << 23) | (man << 13));
}

size_t cf_f32_to_f16_n(const float *x, uint16_t *out, size_t n) {
    size_t overflow = 0;
    for (size_t i = 0; i < n; i++) {
        out[i] = cf_f32_to_f16(x[i]);
        overflow += isfinite(x[i]) && (out[i] & 0x7fffu) == 0x7c00u;
    }
    return overflow;
}

size_t cf_f32_to_bf16_n(const float *x, uint16_t *out, size_t n) {
    size_t overflow = 0;
    for (size_t i = 0; i < n; i++) {
        out[i] = cf_f32_to_bf16(x[i]);
        overflow += isfinite(x[i]) && (out[i] & 0x7fffu) == 0x7f80u;
    }
    return overflow;
}
