#!/usr/bin/env python3
"""clformer: PyTorch baseline for time to a target validation loss (the "Time to loss" benchmark).

  python3 bench/pytorch_time_to_loss.py --config configs/wiki_cache_optimized.json --target-loss 4.5 \
      --device cpu --threads 2 [--set optimizer=muon ...] [--log FILE] [--json]

Trains the model clformer trains for the config, the way `clformer train CONFIG --target-loss X`
does, and stops at the first periodic validation loss <= X:
  - model: tools/cf_reference_model.py ("fast" path), float32, the config's family keys;
  - initialisation: clformer's cf_model_init re-implemented (its xorshift generator, the table
    order of src/model/gpt.h, Box-Muller in float32; numpy's float32 log/cos may differ from the
    C library's in the last bit, so weights agree to about 1e-7 relative);
  - data: the same token stream (a shard directory from `clformer prepare`, or a text file with
    tokenizer "byte" split by val_fraction) in the same order (clformer's per-epoch window shuffle,
    src/data/dataset.c build_epoch), the same validation batches (eval_batches x batch_size
    windows from the start of the validation split);
  - optimizer: optimizer adamw: AdamW (decay on the matrices and embeddings); optimizer muon: Muon
    (the public reference's momentum with Nesterov, 5 Newton-Schulz steps in float32, not bfloat16,
    scale sqrt(max(1, rows/cols)), decoupled weight decay) on every block's 2-D weight slice, AdamW
    on the rest; global-norm clipping over all parameters first;
  - schedule: warmup, then cosine | wsd (decay_fraction) | constant, for both groups
    (src/model/optim.c cf_lr_at).
The wall time counts from the first training step (evaluations included, as clformer's), the
tokens are training tokens (batch_size * max_length * grad_accum_steps per step). Prints one line
(or with --json one object: {target_reached, step, val_loss, wall_time_s, tokens, ...}); --log
writes clformer-style JSON lines. Exits 0 with "skipped: ..." when PyTorch is missing.
"""

import argparse
import glob
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))

# clformer's config keys used here, with clformer's defaults (src/config/config.c)
DEFAULTS = dict(
    d_model=128, num_heads=4, num_layers=4, d_ff=512, max_length=128, vocab_size=256,
    batch_size=16, steps=400, learning_rate=3e-3, min_lr_ratio=0.1, warmup_steps=30,
    weight_decay=0.1, grad_clip=1.0, beta1=0.9, beta2=0.95, eps=1e-8, optimizer="adamw",
    muon_lr=0.02, muon_momentum=0.95, lr_schedule="cosine", decay_fraction=0.2,
    grad_accum_steps=1, eval_interval=100, eval_batches=10, seed=1337, val_fraction=0.05,
    data="data/tiny_corpus.txt", tokenizer="byte")
INTS = ("d_model", "num_heads", "num_layers", "d_ff", "max_length", "vocab_size", "batch_size",
        "steps", "warmup_steps", "grad_accum_steps", "eval_interval", "eval_batches", "seed")
FLOATS = ("learning_rate", "min_lr_ratio", "weight_decay", "grad_clip", "beta1", "beta2", "eps",
          "muon_lr", "muon_momentum", "decay_fraction", "val_fraction")
FAMILY = ("norm", "norm_eps", "bias", "position", "rope_theta", "mlp", "num_kv_heads", "qk_norm",
          "tie_embeddings", "logit_softcap", "share_layers")
IGNORED = ("log_interval", "checkpoint_interval", "name")  # clformer keys with no effect here

# clformer's parameter table order and init kinds (src/model/gpt.h CF_GPT_PARAMS)
TABLE = [("wte", "normal"), ("wpe", "normal"), ("lm_head", "normal"), ("qkv_w", "normal"),
         ("attn_proj_w", "resid"), ("fc_w", "normal"), ("fc_proj_w", "resid"), ("ln1_w", "one"),
         ("ln1_b", "zero"), ("qkv_b", "zero"), ("q_norm_w", "one"), ("k_norm_w", "one"),
         ("attn_proj_b", "zero"), ("ln2_w", "one"), ("ln2_b", "zero"), ("fc_b", "zero"),
         ("fc_proj_b", "zero"), ("lnf_w", "one"), ("lnf_b", "zero")]
M64 = (1 << 64) - 1


def load_config(path, overrides):
    with open(path) as f:
        raw = json.load(f)
    cfg = dict(DEFAULTS)
    cfg.update(raw)
    for ov in overrides:
        k, _, v = ov.partition("=")
        if k not in DEFAULTS and k not in FAMILY and k not in IGNORED:
            raise SystemExit(f"--set {k}: unknown or unsupported key")
        cfg[k] = v
    for k in INTS:
        cfg[k] = int(cfg[k])
    for k in FLOATS:
        cfg[k] = float(cfg[k])
    if cfg["optimizer"] not in ("adamw", "muon"):
        raise SystemExit(f"optimizer {cfg['optimizer']!r}: use adamw or muon")
    if cfg["lr_schedule"] not in ("cosine", "wsd", "constant"):
        raise SystemExit(f"lr_schedule {cfg['lr_schedule']!r}: use cosine, wsd or constant")
    return cfg


# ---- clformer's random numbers (src/common/common.c) ----------------------------------------

def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class CfRng:
    def __init__(self, seed):
        z = mix64((seed + 0x9E3779B97F4A7C15) & M64)
        self.s = z if z else 0x2545F4914F6CDD1D

    def u32(self):
        s = self.s
        s ^= s >> 12
        s ^= (s << 25) & M64
        s ^= s >> 27
        self.s = s
        return ((s * 0x2545F4914F6CDD1D) & M64) >> 32

    def u32_many(self, n):
        out = np.empty(n, dtype=np.uint64)
        s = self.s
        for i in range(n):
            s ^= s >> 12
            s ^= (s << 25) & M64
            s ^= s >> 27
            out[i] = ((s * 0x2545F4914F6CDD1D) & M64) >> 32
        self.s = s
        return out


def cf_normals(rng, n):
    """n draws of cf_rng_normal (float32 Box-Muller on two 24-bit uniforms)."""
    u = rng.u32_many(2 * n)
    uni = ((u >> 8).astype(np.float32) / np.float32(16777216.0)).reshape(n, 2)
    u1 = np.maximum(uni[:, 0], np.float32(1e-12))
    u2 = uni[:, 1]
    return np.sqrt(np.float32(-2.0) * np.log(u1)) * np.cos(np.float32(6.283185307179586) * u2)


def cf_init(shapes, num_layers, seed):
    """clformer's cf_model_init: {name: float32 array} for the present parameters."""
    rng = CfRng(seed)
    resid = np.float32(0.02) / np.sqrt(np.float32(2.0) * np.float32(num_layers))
    out = {}
    for name, kind in TABLE:
        if name not in shapes:
            continue
        shape = shapes[name]
        n = int(np.prod(shape))
        if kind in ("normal", "resid"):
            std = np.float32(0.02) if kind == "normal" else resid
            out[name] = (std * cf_normals(rng, n)).astype(np.float32).reshape(shape)
        else:
            out[name] = np.full(shape, 1.0 if kind == "one" else 0.0, dtype=np.float32)
    return out


# ---- data: clformer's token stream, split and window order (src/data/dataset.c) ----------------

def read_shards(files):
    parts = []
    for f in files:
        with open(f, "rb") as fh:
            h = fh.read(64)
        if h[:8] != b"CFTOKENS":
            raise SystemExit(f"data {f}: not a clformer token shard")
        width = int.from_bytes(h[12:16], "little")
        count = int.from_bytes(h[16:24], "little")
        dt = {2: np.uint16, 4: np.uint32}[width]
        parts.append(np.memmap(f, dtype=dt, mode="r", offset=64, shape=(count,)))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def load_tokens(cfg):
    """(tokens, n_train, n_val): the train split then the validation split, as clformer sees them."""
    path = cfg["data"]
    if os.path.isdir(path):
        def split(name):
            one = os.path.join(path, name + ".bin")
            return [one] if os.path.exists(one) else sorted(glob.glob(os.path.join(path, name + "_*.bin")))
        train, val = read_shards(split("train")), read_shards(split("val"))
        return np.concatenate([train, val]), len(train), len(val)
    if cfg["tokenizer"] != "byte":
        raise SystemExit(f"data {path}: text needs tokenizer byte here; prepare shards with "
                         "`clformer prepare` for a trained tokenizer")
    with open(path, "rb") as f:
        toks = np.frombuffer(f.read(), dtype=np.uint8).astype(np.int64)
    n_val = int(math.floor(len(toks) * cfg["val_fraction"]))
    return toks, len(toks) - n_val, n_val


class TrainOrder:
    """clformer's training windows: per epoch a shift and a Fisher-Yates shuffle of the windows."""

    def __init__(self, n_train, T, seed):
        self.n_train, self.T, self.seed = n_train, T, seed
        self.epoch, self.index = 0, 0
        self._build()

    def _windows(self, shift):
        return 0 if self.n_train < shift + self.T + 1 else (self.n_train - 1 - shift) // self.T

    def _build(self):
        h = mix64(self.seed ^ mix64((self.epoch + 0x632BE59BD9B4E019) & M64))
        shift = 0 if self.epoch == 0 else h % self.T
        nw = self._windows(shift)
        if nw == 0:
            shift, nw = 0, self._windows(0)
        perm = list(range(nw))
        rng = CfRng(h)
        for i in range(nw, 1, -1):
            r = (rng.u32() << 32) | rng.u32()
            j = r % i
            perm[i - 1], perm[j] = perm[j], perm[i - 1]
        self.shift, self.perm = shift, perm

    def next_starts(self, B):
        out = []
        for _ in range(B):
            if self.index >= len(self.perm):
                self.epoch += 1
                self.index = 0
                self._build()
            out.append(self.shift + self.perm[self.index] * self.T)
            self.index += 1
        return out


# ---- schedule and Muon --------------------------------------------------------------------

def lr_at(cfg, base, step):
    """src/model/optim.c cf_lr_at."""
    lr, floor_ = base, base * cfg["min_lr_ratio"]
    w, steps = cfg["warmup_steps"], cfg["steps"]
    if step < w:
        return lr * (step + 1) / w
    if cfg["lr_schedule"] == "constant":
        return lr
    if cfg["lr_schedule"] == "wsd":
        decay = int(round(cfg["decay_fraction"] * steps))
        if decay < 1:
            return lr
        start = max(steps - decay, w)
        if step < start:
            return lr
        return lr - (lr - floor_) * min(1.0, (step - start) / max(1, steps - start))
    p = min(1.0, (step - w) / max(1, steps - w))
    return floor_ + 0.5 * (lr - floor_) * (1.0 + math.cos(math.pi * p))


def newton_schulz5(G, steps=5):
    """The public Muon reference's zeropower_via_newtonschulz5, in float32."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G
    tall = G.size(-2) > G.size(-1)
    if tall:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.mT if tall else X


def main():
    ap = argparse.ArgumentParser(description="PyTorch time to a target validation loss, as clformer trains.")
    ap.add_argument("--config", required=True)
    ap.add_argument("--target-loss", type=float, required=True)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on CUDA (default off)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--log", help="JSON lines: one per step, one per evaluation, the target record")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        import torch
        import cf_reference_model as ref
    except ImportError as e:
        print(f"skipped: {e.name} not installed (pip install torch)")
        return 0
    cfg = load_config(args.config, args.set)
    if cfg["eval_interval"] <= 0 or cfg["val_fraction"] <= 0 and not os.path.isdir(cfg["data"]):
        raise SystemExit("--target-loss needs validation data and eval_interval > 0")
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("skipped: torch has no CUDA device here (use --device cpu)")
            return 0
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)

    mcfg = {k: cfg[k] for k in ("d_model", "num_heads", "num_layers", "d_ff", "max_length", "vocab_size")}
    mcfg.update({k: cfg[k] for k in FAMILY if k in cfg})
    model = ref.CfGPT(mcfg, dtype=torch.float32, impl="fast")
    shapes = {n: tuple(p.shape) for n, p in model.named_stacked()}
    model.load_stacked(cf_init(shapes, cfg["num_layers"], cfg["seed"]))
    model.to(dev)
    named = model.named_stacked()
    muon = cfg["optimizer"] == "muon"
    # Muon's group as clformer's cf_optim_is_matrix: stacked over the blocks with 2-D slices
    mats = [p for n, p in named if muon and p.dim() == 3]
    rest = [(n, p) for n, p in named if not (muon and p.dim() == 3)]
    adamw = torch.optim.AdamW(
        [{"params": [p for n, p in rest if n in ref.DECAY_NAMES], "weight_decay": cfg["weight_decay"]},
         {"params": [p for n, p in rest if n not in ref.DECAY_NAMES], "weight_decay": 0.0}],
        lr=cfg["learning_rate"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"])
    mom = [torch.zeros_like(p) for p in mats]
    params = [p for _, p in named]

    toks, n_train, n_val = load_tokens(cfg)
    B, T, A = cfg["batch_size"], cfg["max_length"], cfg["grad_accum_steps"]
    if n_val < T + 1:
        raise SystemExit(f"data {cfg['data']}: no validation split ({n_val} tokens)")
    data = torch.from_numpy(toks)
    order = TrainOrder(n_train, T, cfg["seed"])
    idx = torch.arange(T + 1)

    def batch(starts):
        w = data[torch.tensor(starts).unsqueeze(1) + idx].to(dev)  # (B, T+1)
        return w[:, :-1], w[:, 1:]

    @torch.no_grad()
    def evaluate():
        pos, total = 0, 0.0
        for _ in range(cfg["eval_batches"]):
            starts = []
            for _ in range(B):
                if pos + T + 1 > n_val:
                    pos = 0
                starts.append(n_train + pos)
                pos += T
            _, loss = model(*batch(starts))
            total += float(loss)
        return total / cfg["eval_batches"]

    logf = open(args.log, "w") if args.log else None
    sync = (lambda: torch.cuda.synchronize()) if args.device == "cuda" else (lambda: None)
    tokens_per_step = B * T * A
    t0 = time.perf_counter()
    reached, val, step = False, float("nan"), 0
    for step in range(1, cfg["steps"] + 1):
        for p in params:
            p.grad = None
        lsum = 0.0
        for _ in range(A):
            _, loss = model(*batch(order.next_starts(B)))
            (loss / A).backward()
            lsum += float(loss.detach())
        norm = float(torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])) if cfg["grad_clip"] > 0 \
            else float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params)))
        lr = lr_at(cfg, cfg["learning_rate"], step - 1)
        for g in adamw.param_groups:
            g["lr"] = lr
        adamw.step()
        if muon:
            mlr = lr_at(cfg, cfg["muon_lr"], step - 1)
            beta = cfg["muon_momentum"]
            with torch.no_grad():
                for p, m in zip(mats, mom):
                    g = p.grad
                    m.lerp_(g, 1 - beta)
                    u = g.lerp(m, beta)
                    rows, cols = p.shape[-2], p.shape[-1]
                    o = newton_schulz5(u)  # batched over the stored blocks
                    p.mul_(1 - mlr * cfg["weight_decay"])
                    p.add_(o, alpha=-mlr * max(1.0, rows / cols) ** 0.5)
        if logf:
            logf.write(json.dumps({"step": step, "loss": lsum / A, "lr": lr, "grad_norm": norm}) + "\n")
        if step % cfg["eval_interval"] == 0 or step == cfg["steps"]:
            val = evaluate()
            if logf:
                logf.write(json.dumps({"step": step, "val_loss": val}) + "\n")
            if not args.json:
                print(f"step {step:5d} | val loss {val:.4f} | {time.perf_counter() - t0:.1f} s", flush=True)
            if val <= args.target_loss:
                reached = True
                break
    sync()
    wall = time.perf_counter() - t0
    res = {"target_loss": args.target_loss, "target_reached": reached, "step": step,
           "val_loss": round(val, 6), "wall_time_s": round(wall, 3), "tokens": step * tokens_per_step,
           "optimizer": cfg["optimizer"], "lr_schedule": cfg["lr_schedule"], "device": args.device,
           "threads": torch.get_num_threads(), "torch_version": torch.__version__,
           "config_path": args.config}
    if logf:
        logf.write(json.dumps(res) + "\n")
        logf.close()
    if args.json:
        print(json.dumps(res))
    elif reached:
        print(f"target loss {args.target_loss:g} reached at step {step}: val loss {val:.4f} after "
              f"{wall:.1f} s wall time and {step * tokens_per_step} training tokens")
    else:
        print(f"target loss {args.target_loss:g} not reached in {step} steps (last val loss {val:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
