/* clformer: small inline math shared by the CPU backend's op files (cpu_ops.c,
 * cpu_attention.c): a branch-free vectorisable exp, a vectorisable max, a size product. */
#ifndef CF_CPU_MATH_H
#define CF_CPU_MATH_H

#include <stddef.h>
#include <stdint.h>

/* exp(x) without libm: Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, then a degree-7
 * Taylor polynomial (truncation error < 1e-8 relative) and 2^k from the exponent bits. Inputs
 * are clamped to [-87, 88] (so 2^k stays a normal float); NaN propagates. Written without
 * branches or calls so that loops around it vectorise. The clamp is a bitwise select on purpose:
 * with `x < -87 ? -87 : x` GCC evaluates the rest for the constant bound as a separate branch
 * in every lane, and that branch's tiny results (1/exp(88) in the GELU) are subnormal, which
 * costs a microcode assist per vector (10x slower). */
static inline float cf_cpu_expf(float x) {
    union {
        float f;
        uint32_t u;
    } v = {x}, lo = {-87.0f}, hi = {88.0f};
    const uint32_t mlo = (uint32_t) - (int32_t)(x < -87.0f), mhi = (uint32_t) - (int32_t)(x > 88.0f);
    v.u = (v.u & ~(mlo | mhi)) | (lo.u & mlo) | (hi.u & mhi);
    x = v.f;
    /* round to nearest by adding and removing 1.5 * 2^23 (valid for |t| < 2^22) */
    const float kf = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - kf * 0.693145751953125f; /* ln2 high part, exact in kf * hi */
    r = r - kf * 1.42860682030941723212e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union {
        uint32_t u;
        float f;
    } s;
    s.u = (uint32_t)((int32_t)kf + 127) << 23;
    return p * s.f;
}

static inline size_t cf_zmul(int a, int b) { return (size_t)a * (size_t)b; }

/* max of x[0..n) (n >= 1) in eight explicit lanes: compilers turn this into vector max
 * instructions, which they will not do for a float max reduction without -ffast-math */
static inline float cf_cpu_maxf(const float *x, int n) {
    float m[8];
    for (int l = 0; l < 8; l++) m[l] = x[0];
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) m[l] = x[j + l] > m[l] ? x[j + l] : m[l];
    for (; j < n; j++) m[0] = x[j] > m[0] ? x[j] : m[0];
    for (int l = 1; l < 8; l++) m[0] = m[l] > m[0] ? m[l] : m[0];
    return m[0];
}

#endif
