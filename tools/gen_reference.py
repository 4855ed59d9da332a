#!/usr/bin/env python3
"""clformer: generate the PyTorch reference fixtures for the C end-to-end tests.

  python3 tools/gen_reference.py [--out-dir tests/fixtures] [--check]

Writes (deterministic, seeded; everything computed in float64, stored as float32 / int32):
  gpt_ref_tiny.safetensors        GPT-2, grad_accum 1, 10 AdamW steps on one batch
  gpt_ref_accum.safetensors       GPT-2, grad_accum 2 (two micro-batches per step), 5 AdamW steps
  llama_ref_tiny.safetensors      Llama-style: rmsnorm, rope, swiglu, 4 query heads over 2 KV heads,
                                  no bias, untied lm_head; 10 AdamW steps
  gpt_share_ref_tiny.safetensors  GPT-2 with share_layers 2 over 4 layers, qk_norm and
                                  logit_softcap; 10 AdamW steps
The model family and its parameter table: docs/model_family.md and tools/cf_reference_model.py.

Tensors in each file:
  <name>            initial parameters, clformer stacked names and layouts (tools/cf_reference_model.py);
                    only the tensors the fixture's config has (e.g. no wpe or biases in the Llama one)
  inputs, targets   I32: (B, T) in the tiny fixture; (A, B, T) micro-batches in the accum fixture
  logits            (B, T, V) step-0 logits of inputs (tiny) / of micro-batch 0 (accum); after
                    the soft-cap when logit_softcap > 0
  loss              (1) step-0 mean loss (accum: mean of the A micro-batch losses)
  grad.<name>       step-0 gradients of that loss (accum: mean of the micro-batch gradients)
  adamw_losses      (steps) loss before each optimizer update (step 0 equals `loss`)
  adamw_lrs         (steps) learning rate used by each update (use these, not a recomputed schedule)
  adamw_grad_norms  (steps) global L2 gradient norm before clipping
  final.<name>      parameters after all steps

Training step s (0-based): g = gradient of the mean loss (over the A micro-batches, each a mean
over its B*T positions); n = ||g||_2 over all parameters; if n > clip: g *= clip / (n + 1e-6);
AdamW with t = s + 1:  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
p -= lr_s * (m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd * p), wd only on wte wpe lm_head qkv_w
attn_proj_w fc_w fc_proj_w.  lr_s: see lr_at() in cf_reference_model.py (also stored).

Metadata (safetensors __metadata__, all strings): the model and training config (d_model,
num_heads, num_layers, d_ff, max_length, vocab_size, batch_size, steps, learning_rate, ...); the
family fixtures also carry every family key (norm, norm_eps, bias, position, rope_theta, mlp,
num_kv_heads, qk_norm, tie_embeddings, logit_softcap, share_layers; booleans "true"/"false"),
"tensors" (the parameter names of the config, in layout order) and "tolerances".

Before writing, the script cross-checks itself (and fails loudly if any check fails):
  * the spelled-out ("math") model against PyTorch's fused ops ("fast"), float64;
  * the hand-written AdamW + clipping against torch.optim.AdamW + clip_grad_norm_, float64;
  * the Hugging Face mapping (tools/check_hf_export.py): GPT2LMHeadModel (GPT-2 fixtures) or
    LlamaForCausalLM (Llama fixture) built from the parameters reproduces the reference logits
    (float64; for Llama with the rotary table computed in float64, see hf_check);
  * a float32 run of the same pipeline against the float64 reference, which must stay within the
    tolerances recommended for the C tests (printed at the end).
--check regenerates in memory and compares with the files on disk instead of writing them.
"""

import argparse
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    import numpy as np
    import torch
    from safetensors import safe_open
    from safetensors.numpy import load_file
except ImportError as e:
    print(f"skipped: {e.name} not installed (pip install torch safetensors numpy)")
    sys.exit(77)

import cf_reference_model as ref  # noqa: E402

TINY = dict(d_model=16, num_heads=2, num_layers=2, d_ff=40, max_length=8, vocab_size=67, batch_size=3,
            steps=10, learning_rate=1e-2, warmup_steps=2, min_lr_ratio=0.1, weight_decay=0.1,
            grad_clip=1.0, beta1=0.9, beta2=0.95, eps=1e-8, grad_accum_steps=1)
ACCUM = dict(TINY, steps=5, warmup_steps=1, grad_accum_steps=2)
# Llama-style: rmsnorm, rope, swiglu, GQA 4 query heads over 2 KV heads (hs 4), no bias, untied head.
LLAMA = dict(TINY, d_model=16, num_heads=4, num_layers=2, d_ff=32, max_length=16, vocab_size=64,
             batch_size=2, norm="rmsnorm", norm_eps=1e-6, bias=False, position="rope", rope_theta=10000.0,
             mlp="swiglu", num_kv_heads=2, qk_norm=False, tie_embeddings=False, logit_softcap=0.0,
             share_layers=0)
# GPT-2 with 4 layers over 2 shared blocks (layer l uses block l % 2), QK-norm and a logit soft-cap
# of 1.0: the uncapped logits reach |z| 0.28 at step 0 and 1.2 after the 10 steps, so tanh bends
# them by 2.5% to ~30% (leaving the cap out moves the logits ~1e-2 relative, far outside tolerance).
GPT_SHARE = dict(TINY, num_layers=4, norm="layernorm", norm_eps=1e-5, bias=True, position="learned",
                 rope_theta=10000.0, mlp="gelu", num_kv_heads=2, qk_norm=True, tie_embeddings=True,
                 logit_softcap=1.0, share_layers=2)
SEEDS = {"gpt_ref_tiny": 1234, "gpt_ref_accum": 5678, "llama_ref_tiny": 4321, "gpt_share_ref_tiny": 8765}
FIXTURES = (("gpt_ref_tiny", TINY), ("gpt_ref_accum", ACCUM), ("llama_ref_tiny", LLAMA),
            ("gpt_share_ref_tiny", GPT_SHARE))

# Tolerances recommended for float32 C code vs these fixtures; the float32 self-run must meet them
# with margin (checked below).  "rel" is max|c - ref| / max(max|ref|, floor) over the tensor.
TOLERANCES = {
    "logits": 1e-5,
    "loss": 1e-5,
    "grad": 1e-4,          # per tensor, relative to that tensor's max |ref|
    "adamw_losses": 1e-4,
    "adamw_grad_norms": 1e-4,
    "final": 3e-4,         # per tensor, relative to max(max|ref|, 1e-2); qkv_b: q and v slices only
    "final_k_bias_abs": 1e-2,  # absolute, the key slice [C,2C) of final.qkv_b (see K_BIAS_NOTE)
}
# The loss is invariant to the key bias (it adds q.b_k to every score of a softmax row), so its
# exact gradient is 0; AdamW turns float rounding noise g into updates ~ lr * g / (|g| + eps), so
# the key slice of final.qkv_b is not reproducible to float32 precision and gets an absolute bound.
K_BIAS_NOTE = ("qkv_b[:, C:2C] (key bias) has exactly zero gradient; its final value is driven by "
               "rounding noise through AdamW: compare it with an absolute tolerance only")
SELF_MARGIN = 10.0  # the float32 self-run must be SELF_MARGIN times inside each tolerance


def run_reference(cfg, seed, dtype=torch.float64, impl="math", init=None, data=None, use_torch_optim=False):
    """Build, evaluate and train the model.  Returns a dict of numpy arrays (float64 or float32)."""
    gen = torch.Generator().manual_seed(seed)
    model = ref.CfGPT(cfg, dtype=dtype, impl=impl)
    if init is None:
        model.init_random(gen, ln_jitter=0.1, bias_std=0.02, std=0.02)
        with torch.no_grad():  # start from float32-representable values: the fixture stores float32
            for _, p in model.named_stacked():
                p.copy_(p.float().to(dtype))
    else:
        model.load_stacked(init)
    A, B, T, V = cfg["grad_accum_steps"], cfg["batch_size"], cfg["max_length"], cfg["vocab_size"]
    if data is None:
        inputs = torch.randint(0, V, (A, B, T), generator=gen, dtype=torch.int32)
        targets = torch.randint(0, V, (A, B, T), generator=gen, dtype=torch.int32)
    else:
        inputs, targets = (torch.as_tensor(d).reshape(A, B, T) for d in data)
    out = {n: p.detach().clone() for n, p in model.named_stacked()}
    out["inputs"], out["targets"] = inputs.clone(), targets.clone()

    params = [p for _, p in model.named_stacked()]
    names = [n for n, _ in model.named_stacked()]
    decay = [n in ref.DECAY_NAMES for n in names]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    opt = None
    if use_torch_optim:
        opt = torch.optim.AdamW(
            [{"params": [p for p, d in zip(params, decay) if d], "weight_decay": cfg["weight_decay"]},
             {"params": [p for p, d in zip(params, decay) if not d], "weight_decay": 0.0}],
            lr=cfg["learning_rate"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"], foreach=False)
    losses, lrs, norms = [], [], []
    for step in range(cfg["steps"]):
        for p in params:
            p.grad = None
        total = 0.0
        for a in range(A):
            logits, loss = model(inputs[a], targets[a])
            (loss / A).backward()
            total += float(loss.detach()) / A
            if step == 0 and a == 0:
                out["logits"] = logits.detach().clone()
        grads = [p.grad for p in params]
        if step == 0:
            out["loss"] = torch.tensor([total], dtype=torch.float64)
            for n, g in zip(names, grads):
                out["grad." + n] = g.detach().clone()
        lr = ref.lr_at(step, cfg["learning_rate"], cfg["steps"], cfg["warmup_steps"], cfg["min_lr_ratio"])
        norm = ref.global_grad_norm(grads)
        losses.append(total), lrs.append(lr), norms.append(norm)
        if opt is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
        else:
            if cfg["grad_clip"] > 0 and norm > cfg["grad_clip"]:
                coef = cfg["grad_clip"] / (norm + 1e-6)
                for g in grads:
                    g.mul_(coef)
            ref.adamw_update(params, grads, m, v, step + 1, lr, cfg["weight_decay"],
                             cfg["beta1"], cfg["beta2"], cfg["eps"], decay)
    out["adamw_losses"] = torch.tensor(losses, dtype=torch.float64)
    out["adamw_lrs"] = torch.tensor(lrs, dtype=torch.float64)
    out["adamw_grad_norms"] = torch.tensor(norms, dtype=torch.float64)
    for n, p in model.named_stacked():
        out["final." + n] = p.detach().clone()
    if A == 1:
        out["inputs"], out["targets"] = out["inputs"][0], out["targets"][0]
    return {k: t.cpu().numpy() for k, t in out.items()}


def rel_err(got, want, floor=1e-30):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want))) / max(float(np.max(np.abs(want))), floor)


def tolerance_of(key):
    if key.startswith("grad."):
        return TOLERANCES["grad"], 1e-30
    if key.startswith("final."):
        return TOLERANCES["final"], 1e-2
    return TOLERANCES.get(key), 1e-30


def k_bias_range(cfg):
    """(lo, hi) columns of qkv_b holding the key bias when its gradient is exactly zero (bias on and
    no qk_norm: softmax rows are invariant to q.b_k), else None."""
    c = ref.normalize_config(cfg)
    if not c["bias"] or c["qk_norm"]:
        return None
    hs = c["d_model"] // c["num_heads"]
    lo = c["num_heads"] * hs
    return lo, lo + c["num_kv_heads"] * hs


def split_k_bias(r, cfg):
    """Replace final.qkv_b by 'final.qkv_b[q,v]' and 'final.qkv_b[k]' views (for comparisons),
    when the config has a gradient-free key bias."""
    kr = k_bias_range(cfg)
    if kr is None:
        return r
    lo, hi = kr
    r = dict(r)
    b = r.pop("final.qkv_b")
    r["final.qkv_b[q,v]"] = np.concatenate([b[:, :lo], b[:, hi:]], axis=1)
    r["final.qkv_b[k]"] = b[:, lo:hi]
    return r


def compare_all(name, got, want, tol_scale, cfg, only_checked=True):
    """Compare every float tensor; tolerance = TOLERANCES * tol_scale.  Returns (ok, worst lines)."""
    ok, lines = True, []
    got, want = split_k_bias(got, cfg), split_k_bias(want, cfg)
    for key in sorted(want):
        if key == "final.qkv_b[k]":
            e = float(np.max(np.abs(got[key].astype(np.float64) - want[key])))
            tol = TOLERANCES["final_k_bias_abs"] * tol_scale
            ok &= e <= tol
            lines.append((e / tol, f"  {name} {key:24s} abs {e:.2e} (limit {tol:.1e})" + ("" if e <= tol else "  FAIL")))
            continue
        if want[key].dtype.kind != "f":
            continue
        tol, floor = tolerance_of(key)
        if tol is None:
            if only_checked:
                continue
            tol = TOLERANCES["final"]
        e = rel_err(got[key], want[key], floor)
        good = e <= tol * tol_scale
        ok &= good
        lines.append((e / (tol * tol_scale), f"  {name} {key:24s} rel {e:.2e} (limit {tol * tol_scale:.1e})"
                      + ("" if good else "  FAIL")))
    return ok, lines


def self_checks(label, cfg, seed, r64):
    """Cross-check the float64 reference; returns True if every check passes."""
    ok = True
    names = ref.param_names(cfg)
    init = {n: r64[n] for n in names}
    data = (r64["inputs"], r64["targets"])

    fast = run_reference(cfg, seed, impl="fast", init=init, data=data)
    good, lines = compare_all("fast-vs-math", fast, r64, 1e-7, cfg, only_checked=False)
    print(f"[{label}] float64 fused-ops model vs spelled-out model: max rel "
          f"{max(rel_err(fast[k], r64[k]) for k in r64 if r64[k].dtype.kind == 'f'):.2e} -> {'ok' if good else 'FAIL'}")
    ok &= good
    if not good:
        print("\n".join(line for _, line in lines if line.endswith("FAIL")))

    topt = run_reference(cfg, seed, init=init, data=data, use_torch_optim=True)
    e = max(rel_err(topt["final." + n], r64["final." + n], 1e-2) for n in names)
    good = e <= 1e-9
    print(f"[{label}] hand AdamW vs torch.optim.AdamW + clip_grad_norm_ (float64): final params max rel "
          f"{e:.2e} -> {'ok' if good else 'FAIL'}")
    ok &= good

    r32 = run_reference(cfg, seed, dtype=torch.float32, init=init, data=data)
    good, lines = compare_all("f32", r32, r64, 1.0 / SELF_MARGIN, cfg)
    lines.sort(reverse=True)
    print(f"[{label}] float32 run vs float64 reference (must be {SELF_MARGIN:g}x inside the recommended "
          f"tolerances) -> {'ok' if good else 'FAIL'}; worst:")
    print("\n".join(line for _, line in lines[:8]))
    ok &= good
    return ok


def hf_check(label, cfg, r64):
    """Build the Hugging Face model (GPT2LMHeadModel or LlamaForCausalLM) from the parameters via
    the documented mapping and compare logits in float64.  A config no Hugging Face class expresses
    (relu2, soft-cap, qk_norm, shared layers, ...) is reported and not checked."""
    try:
        import check_hf_export as hf
        import transformers  # noqa: F401
    except ImportError:
        print(f"[{label}] Hugging Face mapping check skipped: transformers not installed")
        return True
    import tempfile

    try:
        family = hf.hf_family(cfg)
    except hf.BadInput as e:
        print(f"[{label}] Hugging Face mapping check not applicable: {e}")
        return True
    cls = hf.HF_CLASS[family]
    ok = True
    with tempfile.TemporaryDirectory(prefix="cf_hf_") as tmp:
        # export the float32-rounded parameters (exactly what the fixture stores)
        params32 = {n: r64[n].astype(np.float32) for n in ref.param_names(cfg)}
        hf.export_hf(params32, cfg, tmp)
        hf.check_config_json(tmp)
        model = hf.load_hf_model(tmp)
        mine = ref.CfGPT(cfg, dtype=torch.float64)
        mine.load_stacked(params32)
        inputs = r64["inputs"] if r64["inputs"].ndim == 2 else r64["inputs"][0]
        with torch.no_grad():
            want = mine(torch.as_tensor(inputs))[0].numpy()
        # transformers' Llama computes the RoPE tables, the RMSNorm statistics and the eager
        # softmax in float32 whatever the model's dtype, so as loaded it agrees to ~1e-7 only.
        # The mapping itself is checked to 1e-10 with those three pieces evaluated in float64
        # (hf.use_float64_numerics: same formulas, HF's weights, slices and layouts).
        runs = [("", 1e-12)]
        if family == "llama":
            runs = [(" as loaded (float32 RoPE/RMSNorm/softmax inside)", 1e-5),
                    (" with float64 RoPE/RMSNorm/softmax", 1e-10)]
        for note, tol in runs:
            if "with float64" in note:
                hf.use_float64_numerics(model)
            for b in range(inputs.shape[0]):
                got = hf.hf_logits(model, [int(x) for x in inputs[b]])
                e = rel_err(got, want[b])
                good = e <= tol
                ok &= good
                print(f"[{label}] HF {cls} (float64){note} vs reference, sequence {b}: rel {e:.2e} "
                      f"(limit {tol:g}) -> {'ok' if good else 'FAIL'}")
    return ok


def meta_value(v):
    """Metadata string of a config value: floats by repr, booleans as JSON's true/false."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) else str(v)


def metadata_of(cfg, label):
    meta = {k: meta_value(v) for k, v in cfg.items()}
    family = any(k in cfg for k in ref.FAMILY_KEYS)
    if family:  # the family fixtures state every family key (C tests build the model from them)
        full = ref.normalize_config(cfg)
        meta.update({k: meta_value(full[k]) for k in ref.FAMILY_KEYS})
        meta["tensors"] = ",".join(ref.param_names(cfg))
        meta["logits_note"] = "logits are the model's output: after the soft-cap when logit_softcap > 0"
    else:  # the GPT-2 fixtures keep their original metadata
        meta["ln_eps"] = "1e-5"
    meta.update({
        "fixture": label,
        "format_version": "1",
        "generator": "tools/gen_reference.py",
        "reference_dtype": "float64 computation, stored as float32",
        "lr_schedule": "step<warmup: lr*(step+1)/warmup; else min_lr+0.5*(lr-min_lr)*(1+cos(pi*(step-warmup)"
                       "/max(1,steps-warmup))), min_lr=lr*min_lr_ratio, step 0-based; values in adamw_lrs",
        "grad_clip_rule": "norm=||g||_2 before clipping (adamw_grad_norms); if norm>clip: g*=clip/(norm+1e-6)",
        "accum_rule": "loss and gradient are the mean over grad_accum_steps micro-batches (inputs (A,B,T))",
        "tolerances": ",".join(f"{k}={v:g}" for k, v in TOLERANCES.items()),
    })
    if k_bias_range(cfg) is not None:
        meta["k_bias_note"] = K_BIAS_NOTE
    else:
        meta["tolerances"] = ",".join(f"{k}={v:g}" for k, v in TOLERANCES.items() if k != "final_k_bias_abs")
    return meta


def to_storage(r):
    out = {}
    for k, a in r.items():
        out[k] = np.ascontiguousarray(a.astype(np.int32 if a.dtype.kind in "iu" else np.float32))
    return out


def write_safetensors(path, tensors, metadata):
    """Byte-deterministic safetensors writer (the library orders __metadata__ by a hash map):
    u64 little-endian header size, JSON header with keys sorted and tensors laid out in sorted name
    order, padded with spaces to a multiple of 8 bytes, then the raw little-endian data."""
    import json

    names = sorted(tensors)
    header, offset = {"__metadata__": dict(sorted(metadata.items()))}, 0
    for n in names:
        a = tensors[n]
        dt = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}[a.dtype]
        header[n] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for n in names:
            f.write(np.ascontiguousarray(tensors[n]).astype(tensors[n].dtype.newbyteorder("<")).tobytes())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=os.path.join(HERE, "..", "tests", "fixtures"))
    ap.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    all_ok = True
    for label, cfg in FIXTURES:
        r64 = run_reference(cfg, SEEDS[label])
        print(f"[{label}] loss {r64['loss'][0]:.6f} (ln V = {math.log(cfg['vocab_size']):.6f}); adamw_losses "
              + " ".join(f"{x:.4f}" for x in r64["adamw_losses"]))
        print(f"[{label}] lrs " + " ".join(f"{x:.6g}" for x in r64["adamw_lrs"]) + "; grad norms "
              + " ".join(f"{x:.3f}" for x in r64["adamw_grad_norms"]))
        ok = self_checks(label, cfg, SEEDS[label], r64) and hf_check(label, cfg, r64)
        all_ok &= ok
        stored = to_storage(r64)
        path = os.path.normpath(os.path.join(args.out_dir, label + ".safetensors"))
        if args.check:
            if not os.path.isfile(path):
                print(f"{path}: not found; run tools/gen_reference.py without --check")
                all_ok = False
                continue
            disk = load_file(path)
            bad = sorted(set(disk) ^ set(stored))
            worst = max(rel_err(disk[k], stored[k], 1e-2) for k in stored if k in disk)
            good = not bad and worst <= 1e-6
            print(f"[{label}] {path} vs regenerated: tensors {'match' if not bad else 'differ ' + str(bad)}, "
                  f"max rel {worst:.2e} -> {'ok' if good else 'FAIL'}")
            all_ok &= good
        elif ok:
            os.makedirs(args.out_dir, exist_ok=True)
            write_safetensors(path, stored, metadata_of(cfg, label))
            with safe_open(path, framework="numpy") as f:  # read back with the library
                n = len(list(f.keys()))
                back = {k: f.get_tensor(k) for k in f.keys()}
            if any(not np.array_equal(back[k], stored[k]) for k in stored) or len(back) != len(stored):
                print(f"{path}: read-back through safetensors differs from what was written")
                return 1
            print(f"[{label}] wrote {path}: {n} tensors, {os.path.getsize(path)} bytes")
    print("tolerances recommended for float32 C vs fixture (max|c-ref| / max|ref| per tensor; "
          "final.* with max|ref| floored at 1e-2): "
          + ", ".join(f"{k} {v:g}" for k, v in TOLERANCES.items()))
    if not all_ok:
        print("gen_reference: a self-check FAILED; fixtures not (all) written")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
