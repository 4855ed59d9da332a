"""clformer: independent PyTorch implementation of the clformer GPT model and its training step.

Used by tools/gen_reference.py (float64 reference fixtures for the C tests) and by
bench/pytorch_gpt.py (float32 PyTorch baseline).  Written from the model description only:

  x      = wte[tokens] + wpe[0:T]                                   # (B, T, C)
  per layer l (pre-LN):
    x    = x + attn_proj(causal_mha(ln1(x)))
    x    = x + fc_proj(gelu_tanh(fc(ln2(x))))
  logits = lnf(x) @ wte^T                                           # (B, T, V), tied embedding
  loss   = mean cross-entropy over all B*T positions

Parameter names and stacked layouts are clformer's (nn.Linear convention, weight is (out, in)):
  wte (V,C) wpe (T,C) ln1_w ln1_b (L,C) qkv_w (L,3C,C) qkv_b (L,3C) attn_proj_w (L,C,C)
  attn_proj_b (L,C) ln2_w ln2_b (L,C) fc_w (L,F,C) fc_b (L,F) fc_proj_w (L,C,F) fc_proj_b (L,C)
  lnf_w lnf_b (C)
"""

import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

LN_EPS = 1e-5

# Order in which parameters are listed (and laid out in clformer's parameter buffer).
PARAM_NAMES = [
    "wte", "wpe",
    "ln1_w", "ln1_b", "qkv_w", "qkv_b", "attn_proj_w", "attn_proj_b",
    "ln2_w", "ln2_b", "fc_w", "fc_b", "fc_proj_w", "fc_proj_b",
    "lnf_w", "lnf_b",
]
# Parameters that receive decoupled weight decay; all others (LayerNorm, biases) do not.
DECAY_NAMES = {"wte", "wpe", "qkv_w", "attn_proj_w", "fc_w", "fc_proj_w"}
# Per-layer parameters (stacked with a leading L dimension in clformer's layout).
LAYER_NAMES = [n for n in PARAM_NAMES if n not in ("wte", "wpe", "lnf_w", "lnf_b")]

MODEL_KEYS = ("d_model", "num_heads", "num_layers", "d_ff", "max_length", "vocab_size")


def param_shapes(cfg):
    """Ordered {name: shape} of the stacked clformer parameters for a config dict."""
    V, T, C = cfg["vocab_size"], cfg["max_length"], cfg["d_model"]
    L, Fh = cfg["num_layers"], cfg["d_ff"]
    return OrderedDict([
        ("wte", (V, C)), ("wpe", (T, C)),
        ("ln1_w", (L, C)), ("ln1_b", (L, C)),
        ("qkv_w", (L, 3 * C, C)), ("qkv_b", (L, 3 * C)),
        ("attn_proj_w", (L, C, C)), ("attn_proj_b", (L, C)),
        ("ln2_w", (L, C)), ("ln2_b", (L, C)),
        ("fc_w", (L, Fh, C)), ("fc_b", (L, Fh)),
        ("fc_proj_w", (L, C, Fh)), ("fc_proj_b", (L, C)),
        ("lnf_w", (C,)), ("lnf_b", (C,)),
    ])


def check_config(cfg):
    """Raise ValueError naming the field at fault."""
    for k in MODEL_KEYS:
        if k not in cfg:
            raise ValueError(f"config: missing field '{k}'")
        if int(cfg[k]) <= 0:
            raise ValueError(f"config: {k} ({cfg[k]}) must be positive")
    if cfg["d_model"] % cfg["num_heads"] != 0:
        raise ValueError(f"config: d_model ({cfg['d_model']}) must be divisible by "
                         f"num_heads ({cfg['num_heads']})")


# ---------------------------------------------------------------------------------------------
# Layers.  Two implementations of each non-linear piece: "math" spells the formula out
# (used for the reference fixtures), "fast" uses PyTorch's fused functions (used by the bench).
# gen_reference.py checks that both agree in float64.
# ---------------------------------------------------------------------------------------------

def layernorm(x, w, b, impl):
    """x (..., C), w (C), b (C) -> (..., C); biased variance, eps 1e-5."""
    if impl == "fast":
        return F.layer_norm(x, (x.shape[-1],), w, b, LN_EPS)
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + LN_EPS) * w + b


def gelu_tanh(x, impl):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if impl == "fast":
        return F.gelu(x, approximate="tanh")
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def causal_attention(qkv, NH, impl):
    """qkv (B, T, 3C) -> (B, T, C).  q = cols [0,C), k = [C,2C), v = [2C,3C); head h uses
    cols h*hs..(h+1)*hs of each; scores scaled by 1/sqrt(hs); position t attends to 0..t."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // NH
    q, k, v = qkv.split(C, dim=2)
    q = q.view(B, T, NH, hs).transpose(1, 2)  # (B, NH, T, hs)
    k = k.view(B, T, NH, hs).transpose(1, 2)  # (B, NH, T, hs)
    v = v.view(B, T, NH, hs).transpose(1, 2)  # (B, NH, T, hs)
    if impl == "fast":
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, NH, T, T)
        mask = torch.ones(T, T, dtype=torch.bool, device=qkv.device).tril()
        att = att.masked_fill(~mask, float("-inf"))
        att = att - att.amax(dim=-1, keepdim=True)
        att = att.exp()
        att = att / att.sum(dim=-1, keepdim=True)
        y = att @ v  # (B, NH, T, hs)
    return y.transpose(1, 2).contiguous().view(B, T, C)


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
    """The clformer GPT with one nn.Parameter per clformer stacked tensor.

    Per-layer views are slices of the stacked tensors, so gradients come out in exactly
    clformer's layout.  impl: "math" (formulas spelled out) or "fast" (fused PyTorch ops)."""

    def __init__(self, cfg, dtype=torch.float32, device="cpu", impl="math"):
        super().__init__()
        check_config(cfg)
        self.cfg = {k: int(cfg[k]) for k in MODEL_KEYS}
        self.impl = impl
        for name, shape in param_shapes(self.cfg).items():
            self.register_parameter(name, nn.Parameter(torch.zeros(shape, dtype=dtype, device=device)))

    def named_stacked(self):
        """[(clformer name, parameter)] in PARAM_NAMES order."""
        return [(n, getattr(self, n)) for n in PARAM_NAMES]

    @torch.no_grad()
    def load_stacked(self, tensors):
        """Copy {clformer name: array-like} into the parameters (shapes must match)."""
        for n, p in self.named_stacked():
            src = torch.as_tensor(tensors[n])
            if tuple(src.shape) != tuple(p.shape):
                raise ValueError(f"parameter {n}: shape {tuple(src.shape)} != expected {tuple(p.shape)}")
            p.copy_(src.to(dtype=p.dtype, device=p.device))

    @torch.no_grad()
    def init_random(self, gen, ln_jitter=0.0, bias_std=0.0, std=0.02):
        """GPT-2 style init from a torch.Generator: matrices N(0, std).  ln_jitter > 0 draws
        LayerNorm weights from 1 + N(0, ln_jitter); bias_std > 0 draws all biases (LayerNorm and
        linear) from N(0, bias_std) so every parameter is exercised by tests."""
        for n, p in self.named_stacked():
            shape = p.shape
            if n.endswith("_b"):
                v = torch.randn(shape, generator=gen, dtype=torch.float64) * bias_std
            elif n in ("ln1_w", "ln2_w", "lnf_w"):
                v = 1.0 + torch.randn(shape, generator=gen, dtype=torch.float64) * ln_jitter
            else:
                v = torch.randn(shape, generator=gen, dtype=torch.float64) * std
            p.copy_(v.to(p.dtype))

    def forward(self, idx, targets=None):
        """idx (B, T) int -> logits (B, T, V), loss (scalar or None)."""
        c, impl = self.cfg, self.impl
        B, T = idx.shape
        if T > c["max_length"]:
            raise ValueError(f"sequence length {T} exceeds max_length {c['max_length']}")
        if impl == "fast":
            x = F.embedding(idx.long(), self.wte) + self.wpe[:T].unsqueeze(0)  # (B, T, C)
        else:
            x = self.wte[idx.long()] + self.wpe[:T].unsqueeze(0)  # (B, T, C)
        for l in range(c["num_layers"]):
            h = layernorm(x, self.ln1_w[l], self.ln1_b[l], impl)           # (B, T, C)
            qkv = F.linear(h, self.qkv_w[l], self.qkv_b[l])                # (B, T, 3C)
            y = causal_attention(qkv, c["num_heads"], impl)               # (B, T, C)
            x = x + F.linear(y, self.attn_proj_w[l], self.attn_proj_b[l])  # (B, T, C)
            h = layernorm(x, self.ln2_w[l], self.ln2_b[l], impl)           # (B, T, C)
            u = gelu_tanh(F.linear(h, self.fc_w[l], self.fc_b[l]), impl)   # (B, T, F)
            x = x + F.linear(u, self.fc_proj_w[l], self.fc_proj_b[l])      # (B, T, C)
        x = layernorm(x, self.lnf_w, self.lnf_b, impl)                     # (B, T, C)
        logits = x @ self.wte.t()                                          # (B, T, V)
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
