#!/usr/bin/env python3
"""clformer: PyTorch baseline for training throughput of the clformer GPT model.

  python3 bench/pytorch_gpt.py --config configs/wiki_cache_optimized.json --device cpu --threads 2 \
      --steps 10 --warmup 2 [--json] [--attn fast|math] [--set key=value ...]

Same model as clformer (tools/cf_reference_model.py, "fast" path: the family of
docs/model_family.md; the config's norm, norm_eps, bias, position, rope_theta, mlp, num_kv_heads,
qk_norm, tie_embeddings, logit_softcap and share_layers keys are honoured, with GPT-2's defaults),
float32 eager mode, TF32 off on CUDA (--tf32 turns it on; --amp bf16|fp16 autocasts the forward
pass, fp16 with a GradScaler), fused AdamW on CUDA.  Attention is
F.scaled_dot_product_attention; grouped-query attention passes enable_gqa=True (--gqa sdpa) or
repeats k and v to every query head first (--gqa repeat).  Each optimizer step: grad_accum_steps
micro-batches of random tokens (B, T), forward + backward, global-norm clipping, torch.optim.AdamW
(fused=True on CUDA; weight decay on the matrices and embeddings only) at a constant learning rate.  Reports the median
over the measured steps: ms per optimizer step and training tokens/s = B * T * grad_accum / step.
With --json prints one JSON object: {tokens_per_s, ms_per_step, device, threads, torch_version,
peak_device_bytes (CUDA: torch.cuda.max_memory_allocated over the run),
config, ...}.  Exits 0 with "skipped: torch not installed" when PyTorch is missing.
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))

FIELDS_INT = ("d_model", "num_heads", "num_layers", "d_ff", "max_length", "vocab_size", "batch_size",
              "grad_accum_steps")
FIELDS_FLOAT = ("learning_rate", "weight_decay", "grad_clip", "beta1", "beta2", "eps")
# The model family's keys (tools/cf_reference_model.py FAMILY_DEFAULTS; parsed and checked there).
FIELDS_FAMILY = ("norm", "norm_eps", "bias", "position", "rope_theta", "mlp", "num_kv_heads", "qk_norm",
                 "tie_embeddings", "logit_softcap", "share_layers")
FIELDS = FIELDS_INT + FIELDS_FLOAT + FIELDS_FAMILY
DEFAULTS = dict(grad_accum_steps=1, learning_rate=3e-4, weight_decay=0.1, grad_clip=1.0,
                beta1=0.9, beta2=0.95, eps=1e-8)


def load_config(path, overrides):
    """Read the fields this benchmark needs from a clformer config JSON (flat, or with the fields
    one level down in sub-objects) and apply key=value overrides."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"config {path}: not found; pass an existing configs/*.json")
    except json.JSONDecodeError as e:
        raise SystemExit(f"config {path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}")
    flat = dict(DEFAULTS)
    for k, v in raw.items():
        if isinstance(v, dict):
            flat.update({kk: vv for kk, vv in v.items() if kk in FIELDS})
    flat.update({k: v for k, v in raw.items() if k in FIELDS})
    for ov in overrides:
        if "=" not in ov:
            raise SystemExit(f"--set {ov}: expected key=value")
        k, v = ov.split("=", 1)
        if k not in FIELDS:
            raise SystemExit(f"--set {k}: unknown field; known: {', '.join(FIELDS)}")
        flat[k] = v
    cfg = {}
    for k in FIELDS_INT:
        if k not in flat:
            raise SystemExit(f"config {path}: missing field '{k}'")
        try:
            cfg[k] = int(flat[k])
        except (TypeError, ValueError):
            raise SystemExit(f"config {path}: {k} ({flat[k]!r}) must be an integer")
        if cfg[k] <= 0:
            raise SystemExit(f"config {path}: {k} ({cfg[k]}) must be positive")
    for k in FIELDS_FLOAT:
        cfg[k] = float(flat[k])
    cfg.update({k: flat[k] for k in FIELDS_FAMILY if k in flat})  # checked by normalize_config
    if cfg["d_model"] % cfg["num_heads"]:
        raise SystemExit(f"config {path}: d_model ({cfg['d_model']}) must be divisible by "
                         f"num_heads ({cfg['num_heads']})")
    return cfg


def main():
    ap = argparse.ArgumentParser(description="PyTorch training-throughput baseline for clformer models.")
    ap.add_argument("--config", required=True, help="clformer config JSON")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    ap.add_argument("--steps", type=int, default=10, help="measured optimizer steps")
    ap.add_argument("--warmup", type=int, default=2, help="unmeasured steps first")
    ap.add_argument("--attn", choices=("fast", "math"), default="fast",
                    help="fast: fused PyTorch ops (scaled_dot_product_attention, F.layer_norm, F.rms_norm, F.gelu, F.silu); "
                         "math: the formulas spelled out")
    ap.add_argument("--gqa", choices=("sdpa", "repeat"), default="sdpa",
                    help="grouped-query attention in the fast path: sdpa (enable_gqa=True) or repeat "
                         "(k, v repeated to every query head before SDPA)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on CUDA (default off)")
    ap.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off",
                    help="autocast the forward pass to bf16 or fp16 (CUDA; fp16 with a GradScaler)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after the measured steps, profile N more steps with torch.profiler and print "
                         "the per-kernel table (self device time), to stderr")
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit(f"--steps ({args.steps}) must be >= 1 and --warmup ({args.warmup}) >= 0")

    try:
        import torch
        import cf_reference_model as ref
    except ImportError as e:
        print(f"skipped: {e.name} not installed (pip install torch)")
        return 0

    cfg = load_config(args.config, args.set)
    try:
        cfg = ref.normalize_config(cfg)
    except ValueError as e:
        raise SystemExit(f"config {args.config}: {str(e).removeprefix('config: ')}")
    ref.GQA_MODE = args.gqa
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("skipped: torch has no CUDA device here (use --device cpu)")
            return 0
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)

    model = ref.CfGPT(cfg, dtype=torch.float32, impl=args.attn)
    model.init_random(torch.Generator().manual_seed(args.seed))  # CPU generator: same init everywhere
    model.to(dev)
    named = model.named_stacked()
    decay = [p for n, p in named if n in ref.DECAY_NAMES]
    no_decay = [p for n, p in named if n not in ref.DECAY_NAMES]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg["learning_rate"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"],
                            fused=args.device == "cuda")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    scaler = torch.amp.GradScaler("cuda") if args.amp == "fp16" else None
    params = [p for _, p in named]
    n_params = sum(p.numel() for p in params)

    B, T, V, A = cfg["batch_size"], cfg["max_length"], cfg["vocab_size"], cfg["grad_accum_steps"]
    pool = 4  # distinct random batches, cycled
    gen = torch.Generator().manual_seed(args.seed + 1)
    xs = torch.randint(0, V, (pool, B, T), generator=gen).to(dev)
    ys = torch.randint(0, V, (pool, B, T), generator=gen).to(dev)

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    k = 0

    def train_step():
        """One optimizer step over A micro-batches of the pool; returns the last micro-batch loss."""
        nonlocal k
        opt.zero_grad(set_to_none=True)
        for _ in range(A):
            with torch.autocast(args.device, dtype=amp_dtype, enabled=amp_dtype is not None):
                _, loss = model(xs[k % pool], ys[k % pool])
            if scaler:
                scaler.scale(loss / A).backward()
            else:
                (loss / A).backward()
            k += 1
        if scaler:
            scaler.unscale_(opt)
        if cfg["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        return loss

    times, losses = [], []
    for step in range(args.warmup + args.steps):
        sync()
        t0 = time.perf_counter()
        loss = train_step()
        sync()
        dt = time.perf_counter() - t0
        losses.append(float(loss.detach()))
        if step >= args.warmup:
            times.append(dt)
        if not args.json:
            print(f"  step {step:3d}{' (warmup)' if step < args.warmup else ''}: {dt * 1e3:9.1f} ms  "
                  f"loss {losses[-1]:.4f}", flush=True)

    if args.profile > 0:
        acts = [torch.profiler.ProfilerActivity.CPU]
        if args.device == "cuda":
            acts.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=acts) as prof:
            for _ in range(args.profile):
                train_step()
            sync()
        key = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
        print(f"torch.profiler, {args.profile} steps (times are totals over them):", file=sys.stderr)
        print(prof.key_averages().table(sort_by=key, row_limit=40, max_name_column_width=70),
              file=sys.stderr)

    ms = statistics.median(times) * 1e3
    tps = B * T * A / (ms / 1e3)
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    result = {
        "tokens_per_s": round(tps, 1),
        "ms_per_step": round(ms, 3),
        "ms_per_step_min": round(min(times) * 1e3, 3),
        "device": args.device,
        "device_name": name,
        "threads": threads,
        "torch_version": torch.__version__,
        "attn": args.attn,
        "gqa": args.gqa,
        "tf32": args.tf32,
        "amp": args.amp,
        "fused_adamw": args.device == "cuda",
        "steps": args.steps,
        "warmup": args.warmup,
        "params": n_params,
        "final_loss": round(losses[-1], 5),
        "config": {k: cfg[k] for k in FIELDS_INT + FIELDS_FAMILY},
        "config_path": args.config,
    }
    if args.device == "cuda":  # everything PyTorch allocated during the run, model and optimizer included
        result["peak_device_bytes"] = torch.cuda.max_memory_allocated()
    if args.json:
        print(json.dumps(result))
    else:
        print(f"pytorch_gpt: {name} threads={threads} torch {torch.__version__} attn={args.attn} "
              f"params={n_params}: {tps:.1f} tokens/s, {ms:.1f} ms/step (median of {args.steps} steps "
              f"after {args.warmup} warmup; B={B} T={T} accum={A})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
