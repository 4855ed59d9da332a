"""clformer: independent PyTorch implementation of the clformer model family and its training step.

Used by tools/gen_reference.py (float64 reference fixtures for the C tests), tools/check_hf_export.py
and bench/pytorch_gpt.py (float32 PyTorch baseline).  Written from the model description only
(docs/model_family.md):

  x      = wte[tokens] (+ wpe[0:T] when position == "learned")               # (B, T, C)
  per layer l, block b = l % share_layers if share_layers else l (pre-norm):
    h    = norm1(x);  q, k, v = split(h @ qkv_w[b]^T (+ qkv_b[b]))           # NH, KVH, KVH heads
    q, k = rmsnorm per head (q_norm_w[b], k_norm_w[b])                        # if qk_norm
    q, k = rotate-half RoPE, angle t * rope_theta^(-2i/hs)                    # if position == "rope"
    x    = x + causal_attention(q, k, v) @ attn_proj_w[b]^T (+ attn_proj_b[b]) # q head h: kv head h/(NH/KVH)
    u    = norm2(x) @ fc_w[b]^T (+ fc_b[b])
    x    = x + act(u) @ fc_proj_w[b]^T (+ fc_proj_b[b])   act: gelu_tanh | relu(u)^2 | silu(u[:F]) * u[F:]
  logits = normf(x) @ (wte if tie_embeddings else lm_head)^T;  c * tanh(logits / c) if logit_softcap c > 0
  loss   = mean cross-entropy over all B*T positions
  norm   = LayerNorm (biased variance, + bias when bias is on) or RMSNorm (no bias), eps norm_eps

Family keys and defaults (FAMILY_DEFAULTS; the defaults are GPT-2): norm layernorm, norm_eps 1e-5,
bias true, position learned, rope_theta 10000, mlp gelu, num_kv_heads = num_heads, qk_norm false,
tie_embeddings true, logit_softcap 0 (off), share_layers 0 (off).

Parameter names and stacked layouts are clformer's (nn.Linear convention, weight is (out, in));
NB = share_layers or num_layers, hs = C / NH, QKV = (NH + 2 KVH) hs, FI = 2 F for swiglu else F:
  wte (V,C) [wpe (T,C)] ln1_w [ln1_b] (NB,C) qkv_w (NB,QKV,C) [qkv_b (NB,QKV)]
  [q_norm_w k_norm_w (NB,hs)] attn_proj_w (NB,C,C) [attn_proj_b (NB,C)] ln2_w [ln2_b] (NB,C)
  fc_w (NB,FI,C) [fc_b (NB,FI)] fc_proj_w (NB,C,F) [fc_proj_b (NB,C)] lnf_w [lnf_b] (C) [lm_head (V,C)]
qkv_w rows: [0, NH hs) q, then KVH hs k rows, then KVH hs v rows; swiglu fc_w rows: [0, F) gate,
[F, 2F) up.  Bracketed tensors exist only under their option (param_shapes() is the one table).
For the default config the names, order and shapes are exactly the GPT-2 ones.
"""

import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

LN_EPS = 1e-5  # the default norm_eps (GPT-2's LayerNorm eps)

# Order in which parameters are listed (a superset: param_names(cfg) keeps the present ones).
# The GPT-2 tensors keep their historical order; the family's additions slot in next to their
# block (q_norm_w, k_norm_w after qkv_b) or at the end (lm_head), so GPT-2 configs are unchanged.
PARAM_NAMES = [
    "wte", "wpe",
    "ln1_w", "ln1_b", "qkv_w", "qkv_b", "q_norm_w", "k_norm_w", "attn_proj_w", "attn_proj_b",
    "ln2_w", "ln2_b", "fc_w", "fc_b", "fc_proj_w", "fc_proj_b",
    "lnf_w", "lnf_b", "lm_head",
]
# Parameters that receive decoupled weight decay; all others (norm weights, biases) do not.
DECAY_NAMES = {"wte", "wpe", "lm_head", "qkv_w", "attn_proj_w", "fc_w", "fc_proj_w"}
# Per-block parameters (stacked with a leading NB dimension in clformer's layout).
LAYER_NAMES = [n for n in PARAM_NAMES if n not in ("wte", "wpe", "lnf_w", "lnf_b", "lm_head")]
# Weights of norms (initialised to one).
NORM_WEIGHT_NAMES = {"ln1_w", "ln2_w", "lnf_w", "q_norm_w", "k_norm_w"}

MODEL_KEYS = ("d_model", "num_heads", "num_layers", "d_ff", "max_length", "vocab_size")
FAMILY_DEFAULTS = OrderedDict([
    ("norm", "layernorm"), ("norm_eps", 1e-5), ("bias", True), ("position", "learned"),
    ("rope_theta", 10000.0), ("mlp", "gelu"), ("num_kv_heads", 0), ("qk_norm", False),
    ("tie_embeddings", True), ("logit_softcap", 0.0), ("share_layers", 0),
])
FAMILY_KEYS = tuple(FAMILY_DEFAULTS)
CHOICES = {"norm": ("layernorm", "rmsnorm"), "position": ("learned", "rope"),
           "mlp": ("gelu", "swiglu", "relu2")}
BOOL_KEYS = ("bias", "qk_norm", "tie_embeddings")
FLOAT_KEYS = ("norm_eps", "rope_theta", "logit_softcap")
INT_KEYS = ("num_kv_heads", "share_layers")


def _as_bool(key, v):
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0"):
        return v.strip().lower() in ("true", "1")
    raise ValueError(f"config: {key} ({v!r}) must be true or false")


def normalize_config(cfg):
    """Return a new dict: the model keys as int, every family key present with its type (defaults
    filled in; num_kv_heads 0/absent -> num_heads), other keys copied.  Raises ValueError naming
    the field at fault and the fix."""
    out = dict(cfg)
    for k in MODEL_KEYS:
        if k not in cfg:
            raise ValueError(f"config: missing field '{k}'")
        try:
            out[k] = int(cfg[k])
        except (TypeError, ValueError):
            raise ValueError(f"config: {k} ({cfg[k]!r}) must be an integer")
        if out[k] <= 0:
            raise ValueError(f"config: {k} ({cfg[k]}) must be positive")
    for k, d in FAMILY_DEFAULTS.items():
        v = cfg.get(k, d)
        if k in CHOICES:
            if v not in CHOICES[k]:
                raise ValueError(f"config: {k} is {v!r}; use one of {', '.join(CHOICES[k])}")
        elif k in BOOL_KEYS:
            v = _as_bool(k, v)
        elif k in FLOAT_KEYS:
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"config: {k} ({v!r}) must be a number")
        else:
            try:
                v = int(v)
            except (TypeError, ValueError):
                raise ValueError(f"config: {k} ({v!r}) must be an integer")
        out[k] = v
    C, NH, L = out["d_model"], out["num_heads"], out["num_layers"]
    if C % NH != 0:
        raise ValueError(f"config: d_model ({C}) must be divisible by num_heads ({NH})")
    if out["num_kv_heads"] == 0:
        out["num_kv_heads"] = NH
    KVH = out["num_kv_heads"]
    if KVH < 0 or NH % KVH != 0:
        raise ValueError(f"config: num_kv_heads ({KVH}) must divide num_heads ({NH}); "
                         f"use {NH} (MHA), 1 (MQA) or another divisor")
    if out["norm_eps"] <= 0:
        raise ValueError(f"config: norm_eps ({out['norm_eps']}) must be > 0")
    if out["rope_theta"] <= 0:
        raise ValueError(f"config: rope_theta ({out['rope_theta']}) must be > 0")
    if out["position"] == "rope" and (C // NH) % 2 != 0:
        raise ValueError(f"config: position rope needs an even head size; d_model/num_heads is {C // NH}")
    if out["logit_softcap"] < 0:
        raise ValueError(f"config: logit_softcap ({out['logit_softcap']}) must be >= 0 (0 = off)")
    k = out["share_layers"]
    if k < 0 or (k > 0 and L % k != 0):
        raise ValueError(f"config: share_layers ({k}) must be 0 (off) or divide num_layers ({L})")
    return out


def check_config(cfg):
    """Raise ValueError naming the field at fault."""
    normalize_config(cfg)


def num_blocks(cfg):
    """Number of stored blocks NB."""
    c = normalize_config(cfg)
    return c["share_layers"] or c["num_layers"]


def param_shapes(cfg):
    """Ordered {name: shape} of the stacked clformer parameters present for a config dict."""
    c = normalize_config(cfg)
    V, T, C = c["vocab_size"], c["max_length"], c["d_model"]
    NH, KVH, Fh = c["num_heads"], c["num_kv_heads"], c["d_ff"]
    hs = C // NH
    NB = c["share_layers"] or c["num_layers"]
    QKV = (NH + 2 * KVH) * hs
    FI = 2 * Fh if c["mlp"] == "swiglu" else Fh
    ln_bias = c["bias"] and c["norm"] == "layernorm"
    table = {
        "wte": ((V, C), True), "wpe": ((T, C), c["position"] == "learned"),
        "ln1_w": ((NB, C), True), "ln1_b": ((NB, C), ln_bias),
        "qkv_w": ((NB, QKV, C), True), "qkv_b": ((NB, QKV), c["bias"]),
        "q_norm_w": ((NB, hs), c["qk_norm"]), "k_norm_w": ((NB, hs), c["qk_norm"]),
        "attn_proj_w": ((NB, C, C), True), "attn_proj_b": ((NB, C), c["bias"]),
        "ln2_w": ((NB, C), True), "ln2_b": ((NB, C), ln_bias),
        "fc_w": ((NB, FI, C), True), "fc_b": ((NB, FI), c["bias"]),
        "fc_proj_w": ((NB, C, Fh), True), "fc_proj_b": ((NB, C), c["bias"]),
        "lnf_w": ((C,), True), "lnf_b": ((C,), ln_bias),
        "lm_head": ((V, C), not c["tie_embeddings"]),
    }
    return OrderedDict((n, table[n][0]) for n in PARAM_NAMES if table[n][1])


def param_names(cfg):
    """The present parameter names, in layout order."""
    return list(param_shapes(cfg))


# ---------------------------------------------------------------------------------------------
# Layers.  Two implementations of each non-linear piece: "math" spells the formula out
# (used for the reference fixtures), "fast" uses PyTorch's fused functions (used by the bench).
# gen_reference.py checks that both agree in float64.
# ---------------------------------------------------------------------------------------------

def layernorm(x, w, b, impl, eps=LN_EPS):
    """x (..., C), w (C), b (C) or None -> (..., C); biased variance."""
    if impl == "fast":
        return F.layer_norm(x, (x.shape[-1],), w, b, eps)
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps) * w
    return y if b is None else y + b


def rmsnorm(x, w, impl, eps=LN_EPS):
    """x (..., D), w (D) -> x / sqrt(mean(x^2) + eps) * w (no bias, no mean subtraction)."""
    if impl == "fast":
        return F.rms_norm(x, (x.shape[-1],), w, eps)
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def gelu_tanh(x, impl):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if impl == "fast":
        return F.gelu(x, approximate="tanh")
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def mlp_act(u, kind, impl):
    """u (..., FI) -> (..., F): gelu_tanh(u) | relu(u)^2 | silu(u[:F]) * u[F:] (swiglu)."""
    if kind == "gelu":
        return gelu_tanh(u, impl)
    if kind == "relu2":
        if impl == "fast":
            return torch.square(F.relu(u))
        r = torch.where(u > 0, u, torch.zeros_like(u))
        return r * r
    gate, up = u.chunk(2, dim=-1)
    if impl == "fast":
        return F.silu(gate) * up
    return gate / (1.0 + torch.exp(-gate)) * up


def rope_tables(T, hs, theta, dtype, device):
    """cos, sin (T, hs/2) with angle[t, i] = t * theta^(-2i/hs), computed in float64."""
    inv = torch.tensor([theta ** (-2.0 * i / hs) for i in range(hs // 2)], dtype=torch.float64)
    ang = torch.arange(T, dtype=torch.float64).unsqueeze(1) * inv.unsqueeze(0)
    return ang.cos().to(dtype=dtype, device=device), ang.sin().to(dtype=dtype, device=device)


def rope(x, theta, impl, tables=None):
    """x (B, H, T, hs) -> rotated (rotate-half, as Llama in Hugging Face): for i in [0, hs/2),
    the pair (x_i, x_{i+hs/2}) at position t is rotated by angle t * theta^(-2i/hs):
      out_i        = x_i cos - x_{i+hs/2} sin
      out_{i+hs/2} = x_{i+hs/2} cos + x_i sin"""
    T, hs = x.shape[-2], x.shape[-1]
    half = hs // 2
    if impl == "fast":
        cos, sin = tables if tables is not None else rope_tables(T, hs, theta, x.dtype, x.device)
        cos, sin = torch.cat([cos, cos], dim=-1), torch.cat([sin, sin], dim=-1)  # (T, hs)
        rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rot * sin
    cols = []
    for i in range(half):
        ang = torch.tensor([t * theta ** (-2.0 * i / hs) for t in range(T)], dtype=torch.float64)
        c = torch.tensor([math.cos(a) for a in ang.tolist()], dtype=x.dtype, device=x.device)
        s = torch.tensor([math.sin(a) for a in ang.tolist()], dtype=x.dtype, device=x.device)
        cols.append((i, x[..., i] * c - x[..., i + half] * s, x[..., i + half] * c + x[..., i] * s))
    out = [None] * hs
    for i, a, b in cols:
        out[i], out[i + half] = a, b
    return torch.stack(out, dim=-1)


def causal_attention(q, k, v, impl):
    """q (B, NH, T, hs), k and v (B, KVH, T, hs) -> (B, NH, T, hs).  Query head h uses key/value
    head h // (NH / KVH); scores scaled by 1/sqrt(hs); position t attends to 0..t."""
    NH, KVH, T, hs = q.shape[1], k.shape[1], q.shape[2], q.shape[3]
    if impl == "fast":
        if KVH == NH:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        if GQA_MODE == "sdpa":
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        rep = NH // KVH
        return F.scaled_dot_product_attention(q, k.repeat_interleave(rep, dim=1),
                                              v.repeat_interleave(rep, dim=1), is_causal=True)
    if KVH != NH:  # (MHA keeps k and v as they are, so GPT-2 results stay bit for bit)
        rep = NH // KVH
        kv_of = torch.tensor([h // rep for h in range(NH)], device=q.device)
        k, v = k.index_select(1, kv_of), v.index_select(1, kv_of)  # (B, NH, T, hs)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, NH, T, T)
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    att = att.masked_fill(~mask, float("-inf"))
    att = att - att.amax(dim=-1, keepdim=True)
    att = att.exp()
    att = att / att.sum(dim=-1, keepdim=True)
    return att @ v  # (B, NH, T, hs)


# How the "fast" path gives grouped-query attention to SDPA: "sdpa" (enable_gqa=True) or "repeat"
# (k and v repeated to NH heads first).  bench/pytorch_gpt.py --gqa sets it.
GQA_MODE = "sdpa"


def cross_entropy_mean(logits, targets, impl):
    """logits (B, T, V), targets (B, T) int -> scalar mean over B*T."""
    V = logits.shape[-1]
    if impl == "fast":
        return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1).long())
    m = logits.amax(dim=-1, keepdim=True)
    lse = (logits - m).exp().sum(dim=-1).log() + m.squeeze(-1)  # (B, T)
    picked = logits.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)  # (B, T)
    return (lse - picked).mean()


class CfGPT(nn.Module):
    """A clformer model of the family with one nn.Parameter per clformer stacked tensor.

    Per-block views are slices of the stacked tensors, so gradients come out in exactly
    clformer's layout (the uses of a shared block accumulate into its slice).
    impl: "math" (formulas spelled out) or "fast" (fused PyTorch ops)."""

    def __init__(self, cfg, dtype=torch.float32, device="cpu", impl="math"):
        super().__init__()
        self.cfg = normalize_config(cfg)
        self.impl = impl
        self.names = param_names(self.cfg)
        for name, shape in param_shapes(self.cfg).items():
            self.register_parameter(name, nn.Parameter(torch.zeros(shape, dtype=dtype, device=device)))
        self._rope_cache = None

    def named_stacked(self):
        """[(clformer name, parameter)] in layout order (present parameters only)."""
        return [(n, getattr(self, n)) for n in self.names]

    def _p(self, name, idx=None):
        """Parameter `name` (slice idx of it), or None when the config does not have it."""
        if name not in self.names:
            return None
        p = getattr(self, name)
        return p if idx is None else p[idx]

    @torch.no_grad()
    def load_stacked(self, tensors):
        """Copy {clformer name: array-like} into the parameters (shapes must match)."""
        for n, p in self.named_stacked():
            if n not in tensors:
                raise ValueError(f"parameter {n}: missing (the config needs it)")
            src = torch.as_tensor(tensors[n])
            if tuple(src.shape) != tuple(p.shape):
                raise ValueError(f"parameter {n}: shape {tuple(src.shape)} != expected {tuple(p.shape)}")
            p.copy_(src.to(dtype=p.dtype, device=p.device))

    @torch.no_grad()
    def init_random(self, gen, ln_jitter=0.0, bias_std=0.0, std=0.02):
        """GPT-2 style init from a torch.Generator: matrices N(0, std).  ln_jitter > 0 draws norm
        weights from 1 + N(0, ln_jitter); bias_std > 0 draws all biases (LayerNorm and linear)
        from N(0, bias_std) so every parameter is exercised by tests."""
        for n, p in self.named_stacked():
            shape = p.shape
            if n.endswith("_b"):
                v = torch.randn(shape, generator=gen, dtype=torch.float64) * bias_std
            elif n in NORM_WEIGHT_NAMES:
                v = 1.0 + torch.randn(shape, generator=gen, dtype=torch.float64) * ln_jitter
            else:
                v = torch.randn(shape, generator=gen, dtype=torch.float64) * std
            p.copy_(v.to(p.dtype))

    def _norm(self, x, w, b, impl):
        if self.cfg["norm"] == "rmsnorm":
            return rmsnorm(x, w, impl, self.cfg["norm_eps"])
        return layernorm(x, w, b, impl, self.cfg["norm_eps"])

    def _rope_tables(self, T, hs, x):
        key = (T, hs, x.dtype, x.device)
        if self._rope_cache is None or self._rope_cache[0] != key:
            self._rope_cache = (key, rope_tables(T, hs, self.cfg["rope_theta"], x.dtype, x.device))
        return self._rope_cache[1]

    def block(self, x, b):
        """One pre-norm block using stored block b.  x (B, T, C) -> (B, T, C)."""
        c, impl = self.cfg, self.impl
        B, T, C = x.shape
        NH, KVH = c["num_heads"], c["num_kv_heads"]
        hs = C // NH
        h = self._norm(x, self.ln1_w[b], self._p("ln1_b", b), impl)             # (B, T, C)
        qkv = F.linear(h, self.qkv_w[b], self._p("qkv_b", b))                   # (B, T, QKV)
        q, k, v = qkv.split([NH * hs, KVH * hs, KVH * hs], dim=2)
        q = q.view(B, T, NH, hs).transpose(1, 2)                                # (B, NH, T, hs)
        k = k.view(B, T, KVH, hs).transpose(1, 2)                               # (B, KVH, T, hs)
        v = v.view(B, T, KVH, hs).transpose(1, 2)                               # (B, KVH, T, hs)
        if c["qk_norm"]:
            q = rmsnorm(q, self.q_norm_w[b], impl, c["norm_eps"])
            k = rmsnorm(k, self.k_norm_w[b], impl, c["norm_eps"])
        if c["position"] == "rope":
            tables = self._rope_tables(T, hs, q) if impl == "fast" else None
            q = rope(q, c["rope_theta"], impl, tables)
            k = rope(k, c["rope_theta"], impl, tables)
        y = causal_attention(q, k, v, impl)                                      # (B, NH, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        x = x + F.linear(y, self.attn_proj_w[b], self._p("attn_proj_b", b))     # (B, T, C)
        h = self._norm(x, self.ln2_w[b], self._p("ln2_b", b), impl)             # (B, T, C)
        u = F.linear(h, self.fc_w[b], self._p("fc_b", b))                       # (B, T, FI)
        m = mlp_act(u, c["mlp"], impl)                                           # (B, T, F)
        return x + F.linear(m, self.fc_proj_w[b], self._p("fc_proj_b", b))      # (B, T, C)

    def forward(self, idx, targets=None):
        """idx (B, T) int -> logits (B, T, V) (after the soft-cap), loss (scalar or None)."""
        c, impl = self.cfg, self.impl
        B, T = idx.shape
        if T > c["max_length"]:
            raise ValueError(f"sequence length {T} exceeds max_length {c['max_length']}")
        if impl == "fast":
            x = F.embedding(idx.long(), self.wte)  # (B, T, C)
        else:
            x = self.wte[idx.long()]  # (B, T, C)
        if c["position"] == "learned":
            x = x + self.wpe[:T].unsqueeze(0)
        k = c["share_layers"]
        for l in range(c["num_layers"]):
            x = self.block(x, l % k if k else l)
        x = self._norm(x, self.lnf_w, self._p("lnf_b"), impl)                  # (B, T, C)
        head = self.wte if c["tie_embeddings"] else self.lm_head
        logits = x @ head.t()                                                   # (B, T, V)
        cap = c["logit_softcap"]
        if cap > 0:
            logits = cap * torch.tanh(logits / cap)
        loss = None if targets is None else cross_entropy_mean(logits, targets, impl)
        return logits, loss


# ---------------------------------------------------------------------------------------------
# Optimizer pieces, written out so the reference does not depend on torch.optim's details.
# ---------------------------------------------------------------------------------------------

def lr_at(step, lr, steps, warmup_steps, min_lr_ratio):
    """Learning rate used for optimizer step `step` (0-based):
         step < warmup:  lr * (step + 1) / warmup
         otherwise:      min_lr + 0.5 * (lr - min_lr) * (1 + cos(pi * p)),
                         p = (step - warmup) / max(1, steps - warmup),  min_lr = lr * min_lr_ratio
       (so the first post-warmup step uses the full lr and p never reaches 1 within `steps`)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    min_lr = lr * min_lr_ratio
    p = (step - warmup_steps) / max(1, steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * p))


def global_grad_norm(grads):
    """sqrt(sum of squares of every gradient element), computed in float64."""
    return math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))


@torch.no_grad()
def adamw_update(params, grads, m, v, t, lr, weight_decay, beta1, beta2, eps, decay_mask):
    """One AdamW step on lists of tensors (in place).  t is the 1-based step for bias correction.
    p <- p - lr * (mhat / (sqrt(vhat) + eps) + wd * p)   (wd only where decay_mask is True)."""
    for p, g, mi, vi, dec in zip(params, grads, m, v, decay_mask):
        mi.mul_(beta1).add_(g, alpha=1.0 - beta1)
        vi.mul_(beta2).add_(g * g, alpha=1.0 - beta2)
        mhat = mi / (1.0 - beta1 ** t)
        vhat = vi / (1.0 - beta2 ** t)
        upd = mhat / (vhat.sqrt() + eps)
        if dec:
            upd = upd + weight_decay * p
        p.sub_(lr * upd)
