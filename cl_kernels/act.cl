/* clformer: the MLP activations other than GELU (cl_kernels/gelu.cl), element-wise, forward and
 * backward, with the formulas of the CPU backend:
 *   relu2(x) = max(x, 0)^2,        relu2'(x) = 2 max(x, 0)
 *   silu(x)  = x sigmoid(x),       silu'(x)  = s (1 + x (1 - s)), s = sigmoid(x)
 *   swiglu: inp(N, 2F) = [gate | up] per row, out(N, F) = silu(gate) * up.
 * sigmoid(x) = 1 / (1 + exp(-x)): exp overflows to inf for x < -88, giving s = 0 (no NaN). */

static inline float cf_sigmoid(float x) { return 1.0f / (1.0f + exp(-x)); }

/* out(n) = relu2(inp(n)); out may alias inp */
__kernel void relu2_forward(__global float *out, ulong out_off, __global const float *inp,
                            ulong inp_off, ulong n) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    const float r = fmax(inp[inp_off + i], 0.0f);
    out[out_off + i] = r * r;
}

/* dinp(n) = relu2'(inp(n)) * dout(n), ASSIGNED; dinp may alias dout */
__kernel void relu2_backward(__global float *dinp, ulong dinp_off, __global const float *inp,
                             ulong inp_off, __global const float *dout, ulong dout_off, ulong n) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    dinp[dinp_off + i] = 2.0f * fmax(inp[inp_off + i], 0.0f) * dout[dout_off + i];
}

/* out(n) = silu(inp(n)); out may alias inp */
__kernel void silu_forward(__global float *out, ulong out_off, __global const float *inp,
                           ulong inp_off, ulong n) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    const float x = inp[inp_off + i];
    out[out_off + i] = x * cf_sigmoid(x);
}

/* dinp(n) = silu'(inp(n)) * dout(n), ASSIGNED; dinp may alias dout */
__kernel void silu_backward(__global float *dinp, ulong dinp_off, __global const float *inp,
                            ulong inp_off, __global const float *dout, ulong dout_off, ulong n) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    const float x = inp[inp_off + i], s = cf_sigmoid(x);
    dinp[dinp_off + i] = s * (1.0f + x * (1.0f - s)) * dout[dout_off + i];
}

/* out(N, F) = silu(inp[:, :F]) * inp[:, F:]; 1-D range over N*F */
__kernel void swiglu_forward(__global float *out, ulong out_off, __global const float *inp,
                             ulong inp_off, int N, int F) {
    size_t i = get_global_id(0);
    if (i >= (size_t)N * F) return;
    const size_t r = i / F, c = i - r * F;
    __global const float *x = inp + inp_off + r * 2 * F;
    const float g = x[c], u = x[F + c];
    out[out_off + i] = g * cf_sigmoid(g) * u;
}

/* dinp(N, 2F) ASSIGNED from dout(N, F): dgate = dout * up * silu'(gate), dup = dout * silu(gate);
 * 1-D range over N*F, each item writes both halves of its column */
__kernel void swiglu_backward(__global float *dinp, ulong dinp_off, __global const float *inp,
                              ulong inp_off, __global const float *dout, ulong dout_off, int N,
                              int F) {
    size_t i = get_global_id(0);
    if (i >= (size_t)N * F) return;
    const size_t r = i / F, c = i - r * F;
    __global const float *x = inp + inp_off + r * 2 * F;
    __global float *dx = dinp + dinp_off + r * 2 * F;
    const float g = x[c], u = x[F + c], d = dout[dout_off + i], s = cf_sigmoid(g);
    dx[c] = d * u * s * (1.0f + g * (1.0f - s));
    dx[F + c] = d * g * s;
}
