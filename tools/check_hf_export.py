#!/usr/bin/env python3
"""clformer: check a Hugging Face export of a clformer model against logits written by clformer.

Usage:
  tools/check_hf_export.py OUTDIR --tokens "1 2 3" --logits FILE [--rtol 1e-4]
      OUTDIR  a directory written by `clformer export` (config.json + model.safetensors)
      tokens  the token ids fed to clformer (whitespace- or comma-separated, 1..n_positions of them)
      FILE    clformer's logits for those tokens as one sequence: raw float32 little-endian,
              shape (T, V) row-major, T = number of tokens, V = vocab_size
    Loads OUTDIR with GPT2LMHeadModel.from_pretrained (computed in float64), runs the tokens as a
    batch of one, and compares:  max|clformer - hf| <= rtol * max|hf|   (default rtol 1e-4).
    Also fails if the load reported missing/unexpected/mismatched weights, if lm_head is not tied
    to wte, or if config.json does not describe the clformer architecture (docs/hf_mapping.md).

  tools/check_hf_export.py --self-test [--fixture tests/fixtures/gpt_ref_tiny.safetensors]
    Exports the fixture's parameters with the Python reference exporter below into a temporary
    directory and checks its logits against the fixture's stored logits (each sequence of the
    batch).  Proves the mapping in docs/hf_mapping.md.

Exit status: 0 match, 1 mismatch, 2 bad input (missing file, wrong size, bad config),
77 skipped (torch, transformers or safetensors not installed; ctest SKIP_RETURN_CODE convention).
"""

import argparse
import json
import os
import sys
import tempfile

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT, EXIT_SKIP = 0, 1, 2, 77


class BadInput(Exception):
    """An input file or argument is unusable; the message names it and the fix."""


def _import_deps():
    try:
        import numpy  # noqa: F401
        import safetensors  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        print(f"skipped: {e.name} not installed (pip install torch transformers safetensors numpy)")
        sys.exit(EXIT_SKIP)


# ---------------------------------------------------------------------------------------------
# The mapping (kept in sync with docs/hf_mapping.md).
# HF's GPT-2 uses Conv1D, whose weight is stored (in, out): the transpose of clformer's (out, in).
# ---------------------------------------------------------------------------------------------

# (clformer stacked name, HF per-layer suffix, transpose?)
LAYER_MAP = [
    ("ln1_w", "ln_1.weight", False),
    ("ln1_b", "ln_1.bias", False),
    ("qkv_w", "attn.c_attn.weight", True),
    ("qkv_b", "attn.c_attn.bias", False),
    ("attn_proj_w", "attn.c_proj.weight", True),
    ("attn_proj_b", "attn.c_proj.bias", False),
    ("ln2_w", "ln_2.weight", False),
    ("ln2_b", "ln_2.bias", False),
    ("fc_w", "mlp.c_fc.weight", True),
    ("fc_b", "mlp.c_fc.bias", False),
    ("fc_proj_w", "mlp.c_proj.weight", True),
    ("fc_proj_b", "mlp.c_proj.bias", False),
]
GLOBAL_MAP = [
    ("wte", "transformer.wte.weight"),
    ("wpe", "transformer.wpe.weight"),
    ("lnf_w", "transformer.ln_f.weight"),
    ("lnf_b", "transformer.ln_f.bias"),
]


def hf_config_dict(cfg):
    """config.json contents for a clformer model config (dict with d_model, num_heads, ...)."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": int(cfg["vocab_size"]),
        "n_positions": int(cfg["max_length"]),
        "n_embd": int(cfg["d_model"]),
        "n_layer": int(cfg["num_layers"]),
        "n_head": int(cfg["num_heads"]),
        "n_inner": int(cfg["d_ff"]),
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": None,
        "eos_token_id": None,
        "dtype": "float32",
    }


def stacked_to_hf(params, num_layers):
    """{clformer name: array (stacked)} -> {HF state-dict name: float32 contiguous numpy array}.
    lm_head.weight is not written: it is tied to transformer.wte.weight."""
    import numpy as np

    out = {}
    for src, dst in GLOBAL_MAP:
        out[dst] = np.ascontiguousarray(np.asarray(params[src], dtype=np.float32))
    for l in range(num_layers):
        for src, suffix, transpose in LAYER_MAP:
            a = np.asarray(params[src][l], dtype=np.float32)
            if transpose:
                a = a.T
            out[f"transformer.h.{l}.{suffix}"] = np.ascontiguousarray(a)
    return out


def export_hf(params, cfg, outdir):
    """Reference exporter: write config.json and model.safetensors into outdir."""
    from safetensors.numpy import save_file

    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(hf_config_dict(cfg), f, indent=2)
        f.write("\n")
    save_file(stacked_to_hf(params, int(cfg["num_layers"])), os.path.join(outdir, "model.safetensors"),
              metadata={"format": "pt"})


# ---------------------------------------------------------------------------------------------
# Checking.
# ---------------------------------------------------------------------------------------------

def check_config_json(outdir):
    """Validate config.json fields that must hold for a clformer export; returns the dict."""
    path = os.path.join(outdir, "config.json")
    if not os.path.isfile(path):
        raise BadInput(f"{path}: not found; run `clformer export` into {outdir} first")
    try:
        with open(path) as f:
            c = json.load(f)
    except json.JSONDecodeError as e:
        raise BadInput(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}")
    if not any(os.path.isfile(os.path.join(outdir, n)) for n in ("model.safetensors", "pytorch_model.bin")):
        raise BadInput(f"{outdir}: no model.safetensors; the export must write the weights there")
    expect = {
        "model_type": "gpt2",
        "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": True,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
    }
    for key, want in expect.items():
        have = c.get(key, want if key in ("tie_word_embeddings", "scale_attn_weights",
                                           "scale_attn_by_inverse_layer_idx") else None)
        ok = abs(have - want) <= 1e-12 if isinstance(want, float) and isinstance(have, (int, float)) else have == want
        if not ok:
            raise BadInput(f"{path}: {key} is {have!r}, clformer exports need {want!r}")
    act = c.get("activation_function")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise BadInput(f"{path}: activation_function is {act!r}, clformer uses the tanh GELU: set \"gelu_new\"")
    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner"):
        if not isinstance(c.get(key), int) or c[key] <= 0:
            raise BadInput(f"{path}: {key} must be a positive integer (is {c.get(key)!r}); "
                           f"n_inner must be d_ff (HF's default 4*n_embd is not assumed)")
    if c["n_embd"] % c["n_head"] != 0:
        raise BadInput(f"{path}: n_embd ({c['n_embd']}) must be divisible by n_head ({c['n_head']})")
    return c


def load_hf_model(outdir):
    """GPT2LMHeadModel from outdir in float64, eval mode; fails on any incomplete load."""
    import torch
    import transformers
    from transformers import GPT2LMHeadModel

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        model, info = GPT2LMHeadModel.from_pretrained(outdir, dtype=torch.float32, output_loading_info=True)
    except TypeError:  # transformers < 4.56 spells it torch_dtype
        model, info = GPT2LMHeadModel.from_pretrained(outdir, torch_dtype=torch.float32, output_loading_info=True)
    problems = []
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        vals = [v for v in (info.get(key) or []) if not str(v).startswith("lm_head.")]
        # a causal-mask buffer some versions keep is not a weight
        vals = [v for v in vals if not str(v).endswith(".attn.bias") and not str(v).endswith(".attn.masked_bias")]
        if vals:
            problems.append(f"{key}: {sorted(str(v) for v in vals)[:8]}")
    if problems:
        raise BadInput(f"{outdir}/model.safetensors: weights do not match GPT2LMHeadModel "
                       f"({'; '.join(problems)}); see docs/hf_mapping.md for the names and shapes")
    model = model.to(torch.float64).eval()
    if not torch.equal(model.lm_head.weight, model.transformer.wte.weight):
        raise BadInput(f"{outdir}: lm_head.weight is not tied to transformer.wte.weight; "
                       f"set tie_word_embeddings true and do not store lm_head.weight")
    return model


def hf_logits(model, tokens):
    """tokens list[int] -> float64 numpy (T, V)."""
    import torch

    with torch.no_grad():
        ids = torch.tensor([tokens], dtype=torch.long)
        out = model(input_ids=ids, use_cache=False)
    return out.logits[0].double().cpu().numpy()


def compare(name, got, want, rtol):
    """Print the comparison and return True when max|got-want| <= rtol * max|want|."""
    import numpy as np

    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    scale = float(np.max(np.abs(want)))
    err = float(diff.max()) / max(scale, 1e-30)
    same_argmax = int(np.sum(np.argmax(got, axis=-1) == np.argmax(want, axis=-1)))
    ok = bool(np.isfinite(got).all()) and err <= rtol
    i = np.unravel_index(int(np.argmax(diff)), diff.shape)
    print(f"{name}: max|diff| {diff.max():.3e} at {tuple(int(k) for k in i)} (got {got[i]:.6g}, "
          f"hf {want[i]:.6g}), max|hf| {scale:.4g}, relative {err:.3e} (tol {rtol:g}), "
          f"argmax agrees {same_argmax}/{got.shape[0]} -> {'ok' if ok else 'MISMATCH'}")
    return ok


def parse_tokens(text, vocab_size, n_positions):
    toks = [t for t in text.replace(",", " ").split()]
    if not toks:
        raise BadInput("--tokens: empty; give token ids such as --tokens \"1 2 3\"")
    try:
        ids = [int(t) for t in toks]
    except ValueError:
        raise BadInput(f"--tokens: '{text}' is not a list of integers")
    for t in ids:
        if not 0 <= t < vocab_size:
            raise BadInput(f"--tokens: id {t} outside [0, vocab_size={vocab_size})")
    if len(ids) > n_positions:
        raise BadInput(f"--tokens: {len(ids)} tokens exceed n_positions ({n_positions})")
    return ids


def read_logits(path, T, V):
    import numpy as np

    if not os.path.isfile(path):
        raise BadInput(f"--logits {path}: not found")
    size = os.path.getsize(path)
    if size != T * V * 4:
        raise BadInput(f"--logits {path}: {size} bytes, expected T*V*4 = {T}*{V}*4 = {T * V * 4} "
                       f"(raw float32 little-endian, shape (T, V), one row per token)")
    return np.fromfile(path, dtype="<f4").reshape(T, V)


def check_export(outdir, tokens_text, logits_path, rtol):
    c = check_config_json(outdir)
    tokens = parse_tokens(tokens_text, c["vocab_size"], c["n_positions"])
    got = read_logits(logits_path, len(tokens), c["vocab_size"])
    model = load_hf_model(outdir)
    want = hf_logits(model, tokens)
    return compare(f"{os.path.basename(os.path.normpath(outdir))} logits (T={len(tokens)}, V={c['vocab_size']})",
                   got, want, rtol)


def self_test(fixture, rtol):
    from safetensors.numpy import load_file
    from safetensors import safe_open

    if not os.path.isfile(fixture):
        raise BadInput(f"--fixture {fixture}: not found; run tools/gen_reference.py")
    t = load_file(fixture)
    with safe_open(fixture, framework="numpy") as f:
        meta = f.metadata()
    cfg = {k: int(meta[k]) for k in ("d_model", "num_heads", "num_layers", "d_ff", "max_length", "vocab_size")}
    ok = True
    with tempfile.TemporaryDirectory(prefix="cf_hf_") as tmp:
        export_hf(t, cfg, tmp)
        check_config_json(tmp)
        model = load_hf_model(tmp)
        inputs, logits = t["inputs"], t["logits"]
        if inputs.ndim == 3:  # accumulation fixture: (A, B, T) micro-batches, logits of micro-batch 0
            inputs = inputs[0]
        for b in range(inputs.shape[0]):
            tokens = [int(x) for x in inputs[b]]
            ok &= compare(f"self-test {os.path.basename(fixture)} sequence {b}", logits[b], hf_logits(model, tokens), rtol)
            # the interface the CLI uses: raw float32 file of (T, V)
            path = os.path.join(tmp, f"logits{b}.f32")
            logits[b].astype("<f4").tofile(path)
            ok &= check_export(tmp, " ".join(map(str, tokens)), path, rtol)
        # the check must be able to fail: perturbed logits, and an export that forgets to
        # transpose the square attention projection (loads fine, wrong numbers)
        tokens = [int(x) for x in inputs[0]]
        bad = logits[0].astype("<f4").copy()
        bad[-1, 0] += 10 * rtol * float(abs(logits[0]).max())
        bad.tofile(os.path.join(tmp, "bad.f32"))
        print("negative test (perturbed logits), expect MISMATCH:")
        caught = not check_export(tmp, " ".join(map(str, tokens)), os.path.join(tmp, "bad.f32"), rtol)
        wrong = os.path.join(tmp, "wrong")
        export_hf(t, cfg, wrong)
        from safetensors.numpy import load_file as _load, save_file as _save
        sd = _load(os.path.join(wrong, "model.safetensors"))
        for l in range(cfg["num_layers"]):
            k = f"transformer.h.{l}.attn.c_proj.weight"
            sd[k] = sd[k].T.copy()
        _save(sd, os.path.join(wrong, "model.safetensors"), metadata={"format": "pt"})
        print("negative test (attn c_proj not transposed), expect MISMATCH:")
        caught &= not check_export(wrong, " ".join(map(str, tokens)), os.path.join(tmp, "logits0.f32"), rtol)
        print(f"negative tests {'caught' if caught else 'NOT caught'}")
        ok &= caught
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description="Compare a clformer Hugging Face export with clformer's logits.")
    ap.add_argument("outdir", nargs="?", help="export directory (config.json + model.safetensors)")
    ap.add_argument("--tokens", help='token ids, e.g. "1 2 3"')
    ap.add_argument("--logits", help="raw float32 little-endian (T, V) logits written by clformer")
    ap.add_argument("--rtol", type=float, default=1e-4, help="tolerance on max|diff| / max|hf| (default 1e-4)")
    ap.add_argument("--self-test", action="store_true", help="check the reference exporter on a fixture")
    ap.add_argument("--fixture", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                       "tests", "fixtures", "gpt_ref_tiny.safetensors"))
    args = ap.parse_args(argv)
    _import_deps()
    try:
        if args.self_test:
            ok = self_test(args.fixture, args.rtol)
        else:
            if not (args.outdir and args.tokens and args.logits):
                raise BadInput("need OUTDIR --tokens \"...\" --logits FILE (or --self-test)")
            ok = check_export(args.outdir, args.tokens, args.logits, args.rtol)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print("hf export check: " + ("ok" if ok else "FAILED"))
    return EXIT_OK if ok else EXIT_MISMATCH


if __name__ == "__main__":
    sys.exit(main())
