/* clformer: IEEE binary16 (F16) and bfloat16 (BF16) conversions from and to fp32, for files
 * (`clformer export --dtype f16|bf16`). Both round to nearest, ties to even. */
#ifndef CF_HALF_H
#define CF_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* fp32 -> F16: round to nearest even; magnitudes from 65520 (half an ulp above F16's largest,
 * 65504) become +-Inf; below 2^-14 the F16 subnormals (steps of 2^-24), under 2^-25 +-0 (2^-25
 * itself is a tie: +-0); NaN stays NaN (quiet, sign and the top payload bits kept). */
uint16_t cf_f32_to_f16(float x);
float cf_f16_to_f32(uint16_t h);
/* fp32 -> BF16: the upper 16 bits, rounded to nearest even (overflow to +-Inf, subnormals kept by
 * the same rule); NaN stays a quiet NaN. Inline: loops over tensors vectorise them. */
static inline uint16_t cf_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    /* round to nearest even on the low 16 bits; a carry into the exponent is the right result,
     * up to Inf (0x7f80) from the largest finite values */
    const uint32_t r = u + 0x7fffu + ((u >> 16) & 1u);
    const int nan = (u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu);
    return nan ? (uint16_t)((u >> 16) | 0x0040u) /* NaN: quiet, the top bits kept */
               : (uint16_t)(r >> 16);
}
static inline float cf_bf16_to_f32(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* n values; returns how many finite inputs became +-Inf (F16 overflow; BF16: only beyond
 * 3.4e38). */
size_t cf_f32_to_f16_n(const float *x, uint16_t *out, size_t n);
size_t cf_f32_to_bf16_n(const float *x, uint16_t *out, size_t n);

#endif
