#!/usr/bin/env python3
"""TFLOP/s of PyTorch's GEMM (cuBLAS on CUDA; fp32 with TF32 off, or --dtype tf32 / bf16) on
the 15 products of one training step of a GPT config, laid out as clformer runs them (row-major,
the same transposes), so that clformer's `test_cl_gemm_fast --bench` table (`--tf32`, `--prec
bf16`) can be read against it shape by shape.

    python3 bench/pytorch_gemm_shapes.py [--config configs/wiki_cache_optimized.json]
                                         [--device cuda] [--min-time 0.2]
                                         [--dtype fp32|tf32|bf16]

Rows: C(M,N) = op(A) op(B), tA/tB as in clformer (tA: A stored (K,M); tB: B stored (N,K)).
The last line sums one step's GEMM time (each layer shape once per layer, the head's once)."""
import argparse
import json
import time

import torch


def shapes(cfg, rows):
    c, f, v = cfg["d_model"], cfg["d_ff"], cfg["vocab_size"]
    return [
        ("qkv.fwd", 0, 1, rows, 3 * c, c), ("qkv.dinp", 0, 0, rows, c, 3 * c),
        ("qkv.dw", 1, 0, 3 * c, c, rows), ("attn_proj.fwd", 0, 1, rows, c, c),
        ("attn_proj.dinp", 0, 0, rows, c, c), ("attn_proj.dw", 1, 0, c, c, rows),
        ("fc.fwd", 0, 1, rows, f, c), ("fc.dinp", 0, 0, rows, c, f),
        ("fc.dw", 1, 0, f, c, rows), ("fc_proj.fwd", 0, 1, rows, c, f),
        ("fc_proj.dinp", 0, 0, rows, f, c), ("fc_proj.dw", 1, 0, c, f, rows),
        ("head.fwd", 0, 1, rows, v, c), ("head.dinp", 0, 0, rows, c, v),
        ("head.dw", 1, 0, v, c, rows),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/wiki_cache_optimized.json")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--min-time", type=float, default=0.2)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "tf32", "bf16"],
                    help="fp32 (TF32 off), tf32 (fp32 tensors, TF32 on) or bf16 tensors")
    args = ap.parse_args()
    with open(args.config) as fh:
        cfg = json.load(fh)
    model = cfg
    rows = cfg["batch_size"] * cfg["max_length"]
    torch.backends.cuda.matmul.allow_tf32 = args.dtype == "tf32"
    torch.backends.cudnn.allow_tf32 = args.dtype == "tf32"
    dt = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(f"PyTorch {torch.__version__} {args.dtype} GEMM on "
          f"{torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'}; "
          f"{args.config}, {rows} rows")
    print(f"{'shape':<15} tA tB {'M':>5} {'N':>5} {'K':>5} {'us':>9} {'TFLOP/s':>8}")
    layers = model["num_layers"]
    step = 0.0
    for i, (name, ta, tb, m, n, k) in enumerate(shapes(model, rows)):
        a = torch.randn((k, m) if ta else (m, k), device=dev, dtype=dt)
        b = torch.randn((n, k) if tb else (k, n), device=dev, dtype=dt)
        a_op = a.t() if ta else a
        b_op = b.t() if tb else b
        out = torch.empty((m, n), device=dev, dtype=dt)
        for _ in range(3):
            torch.matmul(a_op, b_op, out=out)
        sync()
        reps, t0 = 0, time.perf_counter()
        while True:
            for _ in range(10):
                torch.matmul(a_op, b_op, out=out)
            reps += 10
            sync()
            t = time.perf_counter() - t0
            if t >= args.min_time:
                break
        sec = t / reps
        step += sec * (layers if i < 12 else 1)
        print(f"{name:<15} {ta:2d} {tb:2d} {m:5d} {n:5d} {k:5d} {sec * 1e6:9.1f} "
              f"{2.0 * m * n * k / sec / 1e12:8.2f}")
    print(f"GEMMs of one training step ({layers} layers + head): {step * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
