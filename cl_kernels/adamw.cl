/* clformer: AdamW update, element-wise, decoupled weight decay, bias-corrected.
 * The host passes the inverse bias corrections 1 / (1 - beta^t), computed in double precision
 * (1 - beta2^t is tiny for small t), so the kernel needs no pow().
 * Each work-item updates 4 consecutive elements (i = 4 * global id): as float4s when the host says
 * `aligned` (all four offsets multiples of 4 elements), else, and for a last partial group, one by
 * one with the same expressions. */

/* params(n), grads(n), m(n), v(n): g = grads * grad_scale;
 * m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
 * params -= lr * (m * inv_bc1 / (sqrt(v * inv_bc2) + eps) + weight_decay * params);
 * range ceil(n / 4) */
__kernel void adamw_update(__global float *params, ulong p_off, __global const float *grads,
                           ulong g_off, __global float *m, ulong m_off, __global float *v,
                           ulong v_off, ulong n, float lr, float beta1, float beta2, float inv_bc1,
                           float inv_bc2, float eps, float weight_decay, float grad_scale,
                           int aligned) {
    const size_t i = get_global_id(0) * 4;
    if (i >= n) return;
    if (aligned && i + 4 <= n) {
        __global float4 *p4 = (__global float4 *)(params + p_off + i);
        __global float4 *m4 = (__global float4 *)(m + m_off + i);
        __global float4 *v4 = (__global float4 *)(v + v_off + i);
        const float4 g = *(__global const float4 *)(grads + g_off + i) * grad_scale;
        const float4 mi = beta1 * *m4 + (1.0f - beta1) * g;
        const float4 vi = beta2 * *v4 + (1.0f - beta2) * g * g;
        *m4 = mi;
        *v4 = vi;
        const float4 p = *p4;
        *p4 = p - lr * (mi * inv_bc1 / (sqrt(vi * inv_bc2) + eps) + weight_decay * p);
        return;
    }
    for (size_t e = i; e < n && e < i + 4; e++) {
        const float g = grads[g_off + e] * grad_scale;
        const float mi = beta1 * m[m_off + e] + (1.0f - beta1) * g;
        const float vi = beta2 * v[v_off + e] + (1.0f - beta2) * g * g;
        m[m_off + e] = mi;
        v[v_off + e] = vi;
        const float p = params[p_off + e];
        params[p_off + e] = p - lr * (mi * inv_bc1 / (sqrt(vi * inv_bc2) + eps) + weight_decay * p);
    }
}
