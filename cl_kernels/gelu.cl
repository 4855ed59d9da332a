/* clformer: GELU, tanh approximation (GPT-2), forward and backward, element-wise.
 * out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
/* GELU_SCALE, GELU_C1, GELU_C2: cl_kernels/common.cl; -2u = x (GELU_C1 + GELU_C2 x^2) */

/* gelu(x) = 0.5 x (1 + tanh(u)) = x * sigmoid(2u): one exp, no overflow (exp(-2u) -> inf gives
 * 0). d/dx = s + 2 x s (1 - s) u' = s (1 + x 2u' e s) with s = sigmoid(2u), e = exp(-2u):
 * 1 - s = e s has no cancellation where s -> 1. The same formulas as the CPU backend. */

/* out(n) = gelu(inp(n)); out may alias inp */
__kernel void gelu_forward(__global float *out, ulong out_off, __global const float *inp,
                           ulong inp_off, ulong n) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    float x = inp[inp_off + i];
    out[out_off + i] = x / (1.0f + exp(x * (GELU_C1 + GELU_C2 * (x * x))));
}

/* dinp(n) = gelu'(inp(n)) * dout(n), ASSIGNED (not accumulated); dinp may alias dout (the model
 * runs it in place) */
__kernel void gelu_backward(__global float *dinp, ulong dinp_off, __global const float *inp,
                            ulong inp_off, __global const float *dout, ulong dout_off, ulong n) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    float x = inp[inp_off + i], x2 = x * x;
    /* -2u at most 80: e s stays finite (exp(88.8) is inf, and inf * 0 is NaN); s is then about
     * 1.8e-35 instead of 0 */
    float e = exp(fmin(x * (GELU_C1 + GELU_C2 * x2), 80.0f));
    float s = 1.0f / (1.0f + e);
    float du2 = 2.0f * GELU_SCALE + 6.0f * GELU_SCALE * 0.044715f * x2;
    float q = (x * du2) * (e * s);
    dinp[dinp_off + i] = (s * q + s) * dout[dout_off + i];
}
