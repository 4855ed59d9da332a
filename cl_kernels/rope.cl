/* clformer: rotary position embedding (RoPE), rotate-half convention (Llama / Hugging Face).
 * The (cos, sin) table is built by the model in double precision; this kernel only applies it. */

/* RoPE in place, rotate-half: x has N = B*T rows of stride ld, each with H heads of hs elements
 * from column 0; row r has position pos = pos0 + r % T; for i < hs/2 the pair (x[i], x[i + hs/2])
 * of every head is rotated by the angle whose (cos, sin) is cs[(pos * hs/2 + i) * 2 + {0, 1}]:
 * (a, b) -> (a cos - b sin, a sin + b cos); inverse != 0 rotates by the negative angle (the
 * transposed rotation: the backward). 1-D range over N * H * hs/2 pairs (nh = hs/2), one item
 * per pair. */
__kernel void rope_rotate(__global float *x, ulong x_off, __global const float *cs, ulong cs_off,
                          int N, int T, int H, int hs, int ld, int pos0, int inverse) {
    const size_t i = get_global_id(0);
    const int nh = hs / 2;
    if (i >= (size_t)N * H * nh) return;
    const size_t rh = i / nh; /* row * H + head */
    const int p = (int)(i - rh * nh);
    const int r = (int)(rh / H), h = (int)(rh - (size_t)r * H);
    const int pos = pos0 + r % T;
    __global const float *c = cs + cs_off + ((size_t)pos * nh + p) * 2;
    const float co = c[0], si = inverse ? -c[1] : c[1];
    __global float *e = x + x_off + (size_t)r * ld + (size_t)h * hs + p;
    const float a = e[0], b = e[nh];
    e[0] = a * co - b * si;
    e[nh] = a * si + b * co;
}
