#!/usr/bin/env python3
"""clformer: generation speed against Hugging Face transformers' generate (with its KV cache).

  python3 bench/hf_generate.py CKPT --clformer build/clformer [--device cpu] [--threads 2] \
      [--batch 1,32] [--prompt-len 128] [--new 256] [--check-tokens 32] [--json]

The checkpoint is exported with `clformer export --format hf` (GPT2LMHeadModel or
LlamaForCausalLM) and loaded in float32; both sides use the same threads (torch.set_num_threads
and OMP_NUM_THREADS for clformer) and greedy decoding.

1. Identical greedy outputs: four text prompts of different lengths go through
   `clformer generate --prompts --batch 4 --temperature 0 --json` and through HF generate one at
   a time; the generated tokens must be the same (byte tokenizer: token id = byte; a BPE
   tokenizer.json is used through `tokenizers` when present). Exit 1 when they differ.
2. Speed at each batch size: random prompts of --prompt-len tokens. HF prefill = one forward of
   the prompts with use_cache=True; HF decode = generate(max_new_tokens = min_new_tokens = N)
   minus its prefill. clformer: `clformer bench --generate CKPT --precision fp32` (its prefill is
   one step of B x P rows; decode N steps of B tokens, host argmax included).

Exits 0 with "skipped: ..." when torch or transformers is missing. Tests never need it.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, env=env)
    if p.returncode != 0:
        sys.stderr.write(p.stderr.decode(errors="replace"))
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt")
    ap.add_argument("--clformer", default="build/clformer")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (HF); clformer gets --cl-device")
    ap.add_argument("--cl-device", default=None, help="clformer --device (default: cpu when --device cpu, else auto)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", default="1,32")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--check-tokens", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    try:
        import torch
        import transformers
    except ImportError as e:
        print(f"skipped: {e.name} not installed (pip install torch transformers)")
        return 0
    torch.set_num_threads(a.threads)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    cl_dev = a.cl_device or ("cpu" if a.device == "cpu" else "auto")
    tmp = tempfile.mkdtemp(prefix="cf_hf_")
    hf_dir = os.path.join(tmp, "hf")
    run([a.clformer, "export", a.ckpt, "--format", "hf", hf_dir, "--quiet"])
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    model = model.to(a.device).eval()
    tok_json = os.path.join(hf_dir, "tokenizer.json")
    if os.path.exists(tok_json):
        from tokenizers import Tokenizer
        tk = Tokenizer.from_file(tok_json)
        encode = lambda s: tk.encode(s).ids
        decode = lambda ids: tk.decode(ids).encode()
    else:  # the byte tokenizer: id = byte
        encode = lambda s: list(s.encode())
        decode = lambda ids: bytes(ids)
    gen_kw = dict(do_sample=False, eos_token_id=None, pad_token_id=0)

    # 1. identical greedy outputs
    prompts = ["The ", "Once upon a time there was", "A", "In the beginning of the long story, the king said"]
    pfile = os.path.join(tmp, "prompts.txt")
    with open(pfile, "w") as f:
        f.write("\n".join(prompts) + "\n")
    n = a.check_tokens
    out = run([a.clformer, "generate", a.ckpt, "--device", cl_dev, "--prompts", pfile, "--batch", "4",
               "--temperature", "0", "--tokens", str(n), "--json", "--quiet"], env)
    cf_text = [json.loads(line)["text"].encode("utf-8", "surrogateescape")
               for line in out.decode("utf-8", "surrogateescape").splitlines() if line.strip()]
    same = 0
    for i, p in enumerate(prompts):
        ids = torch.tensor([encode(p)], device=a.device)
        with torch.no_grad():
            g = model.generate(ids, max_new_tokens=n, min_new_tokens=n, **gen_kw)
        hf_text = decode(g[0, ids.shape[1]:].tolist())
        if hf_text == cf_text[i]:
            same += 1
        else:
            print(f"DIFFERENT greedy output for prompt {i}: clformer {cf_text[i]!r} / HF {hf_text!r}")
    print(f"greedy outputs identical for {same} of {len(prompts)} prompts ({n} tokens each)")

    # 2. speed
    rows = []
    for B in [int(x) for x in a.batch.split(",")]:
        P, N = a.prompt_len, a.new
        g = torch.Generator().manual_seed(1234)
        ids = torch.randint(0, model.config.vocab_size, (B, P), generator=g).to(a.device)
        sync = (lambda: torch.cuda.synchronize()) if a.device.startswith("cuda") else (lambda: None)
        with torch.no_grad():
            model.generate(ids[:, :8], max_new_tokens=2, min_new_tokens=2, **gen_kw)  # warm-up
            sync()
            t0 = time.perf_counter()
            model(ids, use_cache=True)
            sync()
            t_pre = time.perf_counter() - t0
            t0 = time.perf_counter()
            model.generate(ids, max_new_tokens=N, min_new_tokens=N, **gen_kw)
            sync()
            t_gen = time.perf_counter() - t0
        hf_pre, hf_dec = B * P / t_pre, B * N / max(t_gen - t_pre, 1e-9)
        cf = json.loads(run([a.clformer, "bench", "--generate", a.ckpt, "--device", cl_dev, "--batch", str(B),
                             "--prompt-len", str(P), "--new", str(N), "--precision", "fp32", "--json",
                             "--quiet"], env).decode().strip().splitlines()[-1])
        row = dict(batch=B, prompt=P, new=N, threads=a.threads, device=a.device,
                   clformer_device=cf["device"], clformer_prefill_tok_s=cf["prefill_tok_s"],
                   hf_prefill_tok_s=round(hf_pre, 1), clformer_decode_tok_s=cf["decode_tok_s"],
                   hf_decode_tok_s=round(hf_dec, 1),
                   prefill_ratio=round(cf["prefill_tok_s"] / hf_pre, 2),
                   decode_ratio=round(cf["decode_tok_s"] / hf_dec, 2),
                   torch=torch.__version__, transformers=transformers.__version__)
        rows.append(row)
        if a.json:
            print(json.dumps(row))
        else:
            print(f"batch {B:3d}: prefill clformer {cf['prefill_tok_s']:9.1f} HF {hf_pre:9.1f} tok/s "
                  f"({row['prefill_ratio']:.2f}x) | decode clformer {cf['decode_tok_s']:8.1f} "
                  f"HF {hf_dec:8.1f} tok/s ({row['decode_ratio']:.2f}x)")
    return 0 if same == len(prompts) else 1


if __name__ == "__main__":
    sys.exit(main())
