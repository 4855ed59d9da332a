#!/usr/bin/env python3
"""clformer: PyTorch's scaled_dot_product_attention at the shapes of `clformer bench --attention-sweep`.

  python3 bench/pytorch_attention_sweep.py --config configs/wiki_gpu_optimized.json \
      --sizes 128,256,...,8192 --batch 4 [--device cuda] [--dtype fp32|bf16] [--json]

Causal attention of one layer of the config (num_heads query heads, num_kv_heads key/value heads
read in place through enable_gqa, head size d_model / num_heads), q/k/v laid out (B, heads, T, hs)
as SDPA wants them. Per T: forward ms (with autograd on, as in training) and backward ms (a
forward plus torch.autograd.grad, minus the forward; the median of timed calls after warm-up,
CUDA events on the GPU), the backend PyTorch picked (flash, efficient, cudnn or math: the first
that runs when the others are disabled in that order), and the peak memory allocated during a
forward plus backward, everything included (q, k, v, out, dout and the three gradients), in MiB,
the quantity `clformer bench --attention-sweep` prints as "flash MiB". Exits 0 with
"skipped: ..." when PyTorch is missing.
"""

import argparse
import json
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--sizes", default="128,256,512,1024")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds of timed calls per measurement")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError as e:
        print(f"skipped: PyTorch not available ({e})")
        return 0
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("skipped: no CUDA device")
        return 0
    cfg = json.load(open(a.config))
    C, NH = int(cfg["d_model"]), int(cfg["num_heads"])
    KVH = int(cfg.get("num_kv_heads", NH))
    hs = C // NH
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[a.dtype]
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def timed(fn):
        fn()
        fn()
        sync()
        times, t_end = [], time.perf_counter() + a.min_time
        while len(times) < 3 or (time.perf_counter() < t_end and len(times) < 200):
            if cuda:
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                fn()
                e1.record()
                e1.synchronize()
                times.append(e0.elapsed_time(e1))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    order = [("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION),
             ("cudnn", SDPBackend.CUDNN_ATTENTION), ("math", SDPBackend.MATH)]
    rows = []
    if not a.json:
        print(f"PyTorch {torch.__version__} scaled_dot_product_attention on {torch.cuda.get_device_name() if cuda else 'cpu'}: "
              f"batch {a.batch}, {NH} heads over {KVH} key/value heads, head size {hs}, {a.dtype}, causal")
        print(f"{'T':>6} {'fwd ms':>10} {'bwd ms':>10} {'peak MiB':>10}  backend")
    for T in [int(s) for s in a.sizes.split(",")]:
        g = torch.Generator(device=dev).manual_seed(T)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        q = torch.randn(a.batch, NH, T, hs, device=dev, dtype=dt, generator=g, requires_grad=True)
        k = torch.randn(a.batch, KVH, T, hs, device=dev, dtype=dt, generator=g, requires_grad=True)
        v = torch.randn(a.batch, KVH, T, hs, device=dev, dtype=dt, generator=g, requires_grad=True)
        dout = torch.randn(a.batch, NH, T, hs, device=dev, dtype=dt, generator=g)
        used = None
        for name, be in order:
            try:
                with sdpa_kernel([be]):
                    o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=KVH != NH)
                    o.backward(dout)
                used = (name, be)
                break
            except RuntimeError:
                continue
        q.grad = k.grad = v.grad = None
        name, be = used
        with sdpa_kernel([be]):
            def fwd():  # with autograd on: the training forward, log-sum-exp kept for the backward
                F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=KVH != NH)

            def fwd_bwd():  # gradients assigned, not accumulated into earlier ones
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=KVH != NH)
                torch.autograd.grad(o, (q, k, v), dout)

            if cuda:
                torch.cuda.reset_peak_memory_stats()
            f_ms = timed(fwd)
            fb_ms = timed(fwd_bwd)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else float("nan")
        row = dict(T=T, batch=a.batch, heads=NH, kv_heads=KVH, head_size=hs, dtype=a.dtype,
                   fwd_ms=f_ms, bwd_ms=fb_ms - f_ms, peak_mib=peak, backend=name,
                   torch_version=torch.__version__)
        rows.append(row)
        if a.json:
            print(json.dumps(row))
        else:
            print(f"{T:>6} {f_ms:>10.3f} {fb_ms - f_ms:>10.3f} {peak:>10.1f}  {name}")
        del q, k, v, dout
    return 0


if __name__ == "__main__":
    sys.exit(main())
