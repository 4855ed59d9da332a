/* clformer: AdamW update, element-wise, decoupled weight decay, bias-corrected.
 * The host passes the inverse bias corrections 1 / (1 - beta^t), computed in double precision
 * (1 - beta2^t is tiny for small t), so the kernel needs no pow(). */

/* params(n), grads(n), m(n), v(n): g = grads * grad_scale;
 * m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
 * params -= lr * (m * inv_bc1 / (sqrt(v * inv_bc2) + eps) + weight_decay * params) */
__kernel void adamw_update(__global float *params, ulong p_off, __global const float *grads,
                           ulong g_off, __global float *m, ulong m_off, __global float *v,
                           ulong v_off, ulong n, float lr, float beta1, float beta2, float inv_bc1,
                           float inv_bc2, float eps, float weight_decay, float grad_scale) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    float g = grads[g_off + i] * grad_scale;
    float mi = beta1 * m[m_off + i] + (1.0f - beta1) * g;
    float vi = beta2 * v[v_off + i] + (1.0f - beta2) * g * g;
    m[m_off + i] = mi;
    v[v_off + i] = vi;
    float mhat = mi * inv_bc1, vhat = vi * inv_bc2;
    float p = params[p_off + i];
    params[p_off + i] = p - lr * (mhat / (sqrt(vhat) + eps) + weight_decay * p);
}
