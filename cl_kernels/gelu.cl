/* clformer: GELU, tanh approximation (GPT-2), forward and backward, element-wise.
 * out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */

/* gelu(x) = 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): one exp,
 * no overflow (exp(-2u) -> inf gives 0); d/dx = s + 2 x s (1 - s) u' with s = sigmoid(2u). */

/* out(n) = gelu(inp(n)); out may alias inp */
__kernel void gelu_forward(__global float *out, ulong out_off, __global const float *inp,
                           ulong inp_off, ulong n) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    float x = inp[inp_off + i];
    float u = GELU_SCALE * (x + 0.044715f * x * x * x);
    out[out_off + i] = x / (1.0f + exp(-2.0f * u));
}

/* dinp(n) = gelu'(inp(n)) * dout(n), ASSIGNED (not accumulated); dinp may alias dout (the model
 * runs it in place) */
__kernel void gelu_backward(__global float *dinp, ulong dinp_off, __global const float *inp,
                            ulong inp_off, __global const float *dout, ulong dout_off, ulong n) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    float x = inp[inp_off + i];
    float u = GELU_SCALE * (x + 0.044715f * x * x * x);
    float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    float s = 1.0f / (1.0f + exp(-2.0f * u));
    dinp[dinp_off + i] = (s + 2.0f * x * s * (1.0f - s) * du) * dout[dout_off + i];
}
