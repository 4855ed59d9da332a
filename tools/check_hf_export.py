#!/usr/bin/env python3
"""clformer: check a Hugging Face export of a clformer model against logits written by clformer.

Usage:
  tools/check_hf_export.py OUTDIR --tokens "1 2 3" --logits FILE [--rtol 1e-4]
      OUTDIR  a directory written by `clformer export --format hf` (config.json + model.safetensors)
      tokens  the token ids fed to clformer (whitespace- or comma-separated, 1..n_positions of them;
              max_position_embeddings for Llama)
      FILE    clformer's logits for those tokens as one sequence: raw float32 little-endian,
              shape (T, V) row-major, T = number of tokens, V = vocab_size
    config.json's model_type picks the class: "gpt2" -> GPT2LMHeadModel (docs/hf_mapping.md),
    "llama" -> LlamaForCausalLM (docs/model_family.md).  Loads OUTDIR with from_pretrained
    (computed in float64), runs the tokens as a batch of one, and compares:
        max|clformer - hf| <= rtol * max|hf|   (default rtol 1e-4).
    Also fails if the load reported missing/unexpected/mismatched weights, if the LM head is not
    what tie_word_embeddings says (GPT-2: tied to wte; Llama: tied, or its own lm_head.weight), or
    if config.json does not describe a clformer architecture.

  tools/check_hf_export.py --self-test [--fixture tests/fixtures/gpt_ref_tiny.safetensors]
    Exports the fixture's parameters with the Python reference exporter below into a temporary
    directory and checks its logits against the fixture's stored logits (each sequence of the
    batch), then checks that planted export mistakes are reported.  The fixture's metadata gives
    the config; tests/fixtures/llama_ref_tiny.safetensors exercises the Llama mapping.

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


HF_CLASS = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}
# Options no Hugging Face class expresses: export --format hf refuses them (the safetensors
# checkpoint stays the native format).
NO_HF_OPTIONS = (
    ("mlp", lambda c: c["mlp"] == "relu2", "gelu (GPT-2) or swiglu (Llama)"),
    ("logit_softcap", lambda c: c["logit_softcap"] > 0, "0"),
    ("qk_norm", lambda c: c["qk_norm"], "false"),
    ("share_layers", lambda c: c["share_layers"] > 0, "0"),
)


def _ref():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import cf_reference_model
    return cf_reference_model


def hf_family(cfg):
    """'gpt2' or 'llama': the Hugging Face class that expresses a clformer config exactly.
    Raises BadInput naming the option when none does."""
    ref = _ref()
    try:
        c = ref.normalize_config(cfg)
    except ValueError as e:
        raise BadInput(str(e))
    for key, bad, fix in NO_HF_OPTIONS:
        if bad(c):
            raise BadInput(f"{key} = {c[key]!r} has no Hugging Face class; the safetensors checkpoint "
                           f"is the native format (export --format hf needs {key} {fix})")
    gpt2 = {"norm": "layernorm", "position": "learned", "mlp": "gelu", "bias": True,
            "num_kv_heads": c["num_heads"]}
    llama = {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False}
    for family, want in (("gpt2", gpt2), ("llama", llama)):
        if all(c[k] == v for k, v in want.items()):
            return family
    near, want = min((("gpt2", gpt2), ("llama", llama)),
                     key=lambda fw: sum(c[k] != v for k, v in fw[1].items()))
    diff = ", ".join(f"{k} {c[k]!r} (needs {v!r})" for k, v in want.items() if c[k] != v)
    raise BadInput(f"no Hugging Face class for this mix; nearest is {HF_CLASS[near]}: {diff}")


def hf_config_dict(cfg):
    """config.json contents for a clformer config (dict with d_model, num_heads, ...)."""
    if hf_family(cfg) == "llama":
        return llama_config_dict(cfg)
    c = _ref().normalize_config(cfg)
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
        "layer_norm_epsilon": c["norm_eps"],
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": c["tie_embeddings"],
        "use_cache": True,
        "bos_token_id": None,
        "eos_token_id": None,
        "dtype": "float32",
    }


def llama_config_dict(cfg):
    """config.json of a Llama-style clformer config (rmsnorm, rope, swiglu, no bias)."""
    c = _ref().normalize_config(cfg)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c["vocab_size"],
        "hidden_size": c["d_model"],
        "intermediate_size": c["d_ff"],
        "num_hidden_layers": c["num_layers"],
        "num_attention_heads": c["num_heads"],
        "num_key_value_heads": c["num_kv_heads"],
        "head_dim": c["d_model"] // c["num_heads"],
        "hidden_act": "silu",
        "max_position_embeddings": c["max_length"],
        "rms_norm_eps": c["norm_eps"],
        "rope_theta": c["rope_theta"],
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": c["tie_embeddings"],
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": None,
        "eos_token_id": None,
        "dtype": "float32",
    }


def stacked_to_llama(params, cfg):
    """{clformer name: stacked array} -> {LlamaForCausalLM state-dict name: float32 array}.
    nn.Linear on both sides: no transposes; q/k/v and gate/up are row slices.  lm_head.weight is
    written only when the head is untied."""
    import numpy as np

    c = _ref().normalize_config(cfg)
    NH, KVH, Fh = c["num_heads"], c["num_kv_heads"], c["d_ff"]
    hs = c["d_model"] // NH
    nq, nk = NH * hs, KVH * hs

    def f32(a):
        return np.ascontiguousarray(np.asarray(a, dtype=np.float32))

    out = {"model.embed_tokens.weight": f32(params["wte"]), "model.norm.weight": f32(params["lnf_w"])}
    if not c["tie_embeddings"]:
        out["lm_head.weight"] = f32(params["lm_head"])
    for l in range(c["num_layers"]):
        p = f"model.layers.{l}."
        qkv, fc = np.asarray(params["qkv_w"][l]), np.asarray(params["fc_w"][l])
        out[p + "input_layernorm.weight"] = f32(params["ln1_w"][l])
        out[p + "self_attn.q_proj.weight"] = f32(qkv[0:nq])
        out[p + "self_attn.k_proj.weight"] = f32(qkv[nq:nq + nk])
        out[p + "self_attn.v_proj.weight"] = f32(qkv[nq + nk:nq + 2 * nk])
        out[p + "self_attn.o_proj.weight"] = f32(params["attn_proj_w"][l])
        out[p + "post_attention_layernorm.weight"] = f32(params["ln2_w"][l])
        out[p + "mlp.gate_proj.weight"] = f32(fc[0:Fh])
        out[p + "mlp.up_proj.weight"] = f32(fc[Fh:2 * Fh])
        out[p + "mlp.down_proj.weight"] = f32(params["fc_proj_w"][l])
    return out


def stacked_to_hf(params, num_layers, tie=True):
    """{clformer name: array (stacked)} -> {GPT-2 HF state-dict name: float32 contiguous numpy
    array}.  lm_head.weight is written only when untied (tie False); tied, it is
    transformer.wte.weight."""
    import numpy as np

    out = {}
    for src, dst in GLOBAL_MAP:
        out[dst] = np.ascontiguousarray(np.asarray(params[src], dtype=np.float32))
    if not tie:
        out["lm_head.weight"] = np.ascontiguousarray(np.asarray(params["lm_head"], dtype=np.float32))
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
    if hf_family(cfg) == "llama":
        tensors = stacked_to_llama(params, cfg)
    else:
        tensors = stacked_to_hf(params, int(cfg["num_layers"]), _ref().normalize_config(cfg)["tie_embeddings"])
    save_file(tensors, os.path.join(outdir, "model.safetensors"), metadata={"format": "pt"})


# ---------------------------------------------------------------------------------------------
# Checking.
# ---------------------------------------------------------------------------------------------

def check_config_json(outdir):
    """Validate config.json fields that must hold for a clformer export; returns the dict, with
    "n_positions" set for either family (the longest token sequence it accepts)."""
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
    mt = c.get("model_type")
    if mt == "llama":
        return _check_llama_config(path, c)
    if mt != "gpt2":
        raise BadInput(f"{path}: model_type is {mt!r}; clformer exports are \"gpt2\" or \"llama\"")
    expect = {
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
    }
    for key, want in expect.items():
        have = c.get(key, want)
        if have != want:
            raise BadInput(f"{path}: {key} is {have!r}, clformer exports need {want!r}")
    eps = c.get("layer_norm_epsilon")
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps <= 0:
        raise BadInput(f"{path}: layer_norm_epsilon is {eps!r}; write the model's norm_eps (default 1e-05)")
    if not isinstance(c.get("tie_word_embeddings", True), bool):
        raise BadInput(f"{path}: tie_word_embeddings must be true or false")
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


def _check_llama_config(path, c):
    """The LlamaForCausalLM fields a clformer export must write (docs/model_family.md)."""
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "max_position_embeddings"):
        if not isinstance(c.get(key), int) or isinstance(c.get(key), bool) or c[key] <= 0:
            raise BadInput(f"{path}: {key} must be a positive integer (is {c.get(key)!r}); write it explicitly "
                           f"(HF's defaults are not clformer's)")
    C, NH, KVH = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    if C % NH != 0:
        raise BadInput(f"{path}: hidden_size ({C}) must be divisible by num_attention_heads ({NH})")
    if NH % KVH != 0:
        raise BadInput(f"{path}: num_key_value_heads ({KVH}) must divide num_attention_heads ({NH})")
    if c.get("head_dim") not in (None, C // NH):
        raise BadInput(f"{path}: head_dim is {c['head_dim']!r}; clformer's head size is hidden_size / "
                       f"num_attention_heads = {C // NH}")
    if c.get("hidden_act") != "silu":
        raise BadInput(f"{path}: hidden_act is {c.get('hidden_act')!r}; clformer's SwiGLU uses \"silu\"")
    for key in ("attention_bias", "mlp_bias"):
        if c.get(key, False) is not False:
            raise BadInput(f"{path}: {key} is {c[key]!r}; Llama-style clformer models have no bias: write false")
    if c.get("pretraining_tp", 1) != 1:
        raise BadInput(f"{path}: pretraining_tp is {c['pretraining_tp']!r}; write 1")
    eps = c.get("rms_norm_eps")
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps <= 0:
        raise BadInput(f"{path}: rms_norm_eps is {eps!r}; write the model's norm_eps (HF's default 1e-6 "
                       f"is not clformer's 1e-5)")
    if not isinstance(c.get("tie_word_embeddings"), bool):
        raise BadInput(f"{path}: tie_word_embeddings is {c.get('tie_word_embeddings')!r}; write true or false "
                       f"(HF's Llama default is false, clformer's tie_embeddings default is true)")
    if c.get("rope_scaling") is not None:
        raise BadInput(f"{path}: rope_scaling is {c['rope_scaling']!r}; clformer's RoPE is unscaled: write null")
    rp = c.get("rope_parameters")
    theta = c.get("rope_theta")
    if isinstance(rp, dict):
        if rp.get("rope_type", "default") != "default":
            raise BadInput(f"{path}: rope_parameters.rope_type is {rp.get('rope_type')!r}; write \"default\"")
        if theta is not None and rp.get("rope_theta") not in (None, theta):
            raise BadInput(f"{path}: rope_theta ({theta!r}) and rope_parameters.rope_theta "
                           f"({rp.get('rope_theta')!r}) differ")
        theta = rp.get("rope_theta", theta)
    if not isinstance(theta, (int, float)) or isinstance(theta, bool) or theta <= 0:
        raise BadInput(f"{path}: rope_theta is {theta!r}; write the model's rope_theta (default 10000)")
    c = dict(c)
    c["n_positions"] = c["max_position_embeddings"]
    return c


def load_hf_model(outdir):
    """The model class of config.json's model_type, from outdir, in float64, eval mode; fails on
    any incomplete load."""
    import torch
    import transformers
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    c = check_config_json(outdir)
    llama = c["model_type"] == "llama"
    cls = LlamaForCausalLM if llama else GPT2LMHeadModel
    kw = {"output_loading_info": True}
    if llama:
        kw["attn_implementation"] = "eager"
    try:
        model, info = cls.from_pretrained(outdir, dtype=torch.float32, **kw)
    except TypeError:  # transformers < 4.56 spells it torch_dtype
        model, info = cls.from_pretrained(outdir, torch_dtype=torch.float32, **kw)
    tied = c.get("tie_word_embeddings", not llama)
    problems = []
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        vals = [v for v in (info.get(key) or []) if not (tied and str(v).startswith("lm_head."))]
        # a causal-mask buffer some versions keep is not a weight
        vals = [v for v in vals if not str(v).endswith(".attn.bias") and not str(v).endswith(".attn.masked_bias")]
        if vals:
            problems.append(f"{key}: {sorted(str(v) for v in vals)[:8]}")
    if problems:
        raise BadInput(f"{outdir}/model.safetensors: weights do not match {cls.__name__} "
                       f"({'; '.join(problems)}); see docs/hf_mapping.md / docs/model_family.md for the names "
                       f"and shapes")
    model = model.to(torch.float64).eval()
    emb = model.model.embed_tokens.weight if llama else model.transformer.wte.weight
    emb_name = "model.embed_tokens.weight" if llama else "transformer.wte.weight"
    if tied and not torch.equal(model.lm_head.weight, emb):
        raise BadInput(f"{outdir}: lm_head.weight is not tied to {emb_name} although tie_word_embeddings "
                       f"is true; do not store a different lm_head.weight")
    if tied:
        from safetensors import safe_open
        path = os.path.join(outdir, "model.safetensors")
        if os.path.isfile(path):
            with safe_open(path, framework="pt") as f:
                if "lm_head.weight" in f.keys() and not torch.equal(f.get_tensor("lm_head.weight").double(), emb):
                    raise BadInput(f"{path}: lm_head.weight differs from {emb_name} but tie_word_embeddings "
                                   f"is true (transformers would silently use {emb_name})")
    if not tied and torch.equal(model.lm_head.weight, emb):
        raise BadInput(f"{outdir}: tie_word_embeddings is false but lm_head.weight equals {emb_name}; "
                       f"an untied model exports its own lm_head")
    return model


def use_float64_numerics(model):
    """Make a loaded LlamaForCausalLM compute in float64 where transformers casts to float32
    whatever the model's dtype: the RoPE angles position * theta^(-2i/hs) and their cos/sin, the
    RMSNorm statistics, and the softmax of the eager attention (switched to SDPA, which keeps the
    dtype).  Same formulas and layouts; only the precision changes, so a float64 comparison can
    check the mapping to ~1e-15 instead of ~1e-7."""
    import torch

    cfg = model.config
    hs = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    rp = getattr(cfg, "rope_parameters", None) or {}
    theta = rp.get("rope_theta", getattr(cfg, "rope_theta", None))
    inv = torch.tensor([theta ** (-2.0 * i / hs) for i in range(hs // 2)], dtype=torch.float64)

    def rope_forward(x, position_ids):
        freqs = position_ids[..., None].to(torch.float64) * inv.to(x.device)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype=x.dtype), emb.sin().to(dtype=x.dtype)

    model.model.rotary_emb.forward = rope_forward
    for mod in model.modules():
        if type(mod).__name__ == "LlamaRMSNorm":
            def norm_forward(h, mod=mod):
                h64 = h.to(torch.float64)
                y = h64 * torch.rsqrt(h64.pow(2).mean(-1, keepdim=True) + mod.variance_epsilon)
                return (mod.weight.to(torch.float64) * y).to(h.dtype)
            mod.forward = norm_forward
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("sdpa")
    else:
        model.config._attn_implementation = "sdpa"
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


def _planted(outdir, name, edit):
    """Rewrite outdir/model.safetensors with edit(state_dict) applied (a planted export mistake)."""
    from safetensors.numpy import load_file, save_file

    path = os.path.join(outdir, "model.safetensors")
    sd = load_file(path)
    edit(sd)
    save_file(sd, path, metadata={"format": "pt"})
    print(f"negative test ({name}), expect MISMATCH:")


def self_test(fixture, rtol):
    from safetensors.numpy import load_file
    from safetensors import safe_open

    if not os.path.isfile(fixture):
        raise BadInput(f"--fixture {fixture}: not found; run tools/gen_reference.py")
    t = load_file(fixture)
    with safe_open(fixture, framework="numpy") as f:
        meta = f.metadata()
    ref = _ref()
    cfg = {k: int(meta[k]) for k in ref.MODEL_KEYS}
    cfg.update({k: meta[k] for k in ref.FAMILY_KEYS if k in meta})  # strings; normalize_config parses them
    family = hf_family(cfg)
    c = ref.normalize_config(cfg)
    L = c["num_layers"]
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
            ok &= compare(f"self-test {os.path.basename(fixture)} ({HF_CLASS[family]}) sequence {b}", logits[b],
                          hf_logits(model, tokens), rtol)
            # the interface the CLI uses: raw float32 file of (T, V)
            path = os.path.join(tmp, f"logits{b}.f32")
            logits[b].astype("<f4").tofile(path)
            ok &= check_export(tmp, " ".join(map(str, tokens)), path, rtol)
        # the check must be able to fail: perturbed logits, and exports with a mapping mistake that
        # loads fine and only gives wrong numbers
        tokens = " ".join(str(int(x)) for x in inputs[0])
        good_logits = os.path.join(tmp, "logits0.f32")
        bad = logits[0].astype("<f4").copy()
        bad[-1, 0] += 10 * rtol * float(abs(logits[0]).max())
        bad.tofile(os.path.join(tmp, "bad.f32"))
        print("negative test (perturbed logits), expect MISMATCH:")
        caught = not check_export(tmp, tokens, os.path.join(tmp, "bad.f32"), rtol)
        if family == "gpt2":
            def no_transpose(sd):
                for l in range(L):
                    k = f"transformer.h.{l}.attn.c_proj.weight"
                    sd[k] = sd[k].T.copy()
            mistakes = [("attn c_proj not transposed", no_transpose)]
        else:
            hs = c["d_model"] // c["num_heads"]

            def interleaved(sd):  # Meta's checkpoint layout: RoPE pairs (2i, 2i+1) instead of (i, i+hs/2)
                for l in range(L):
                    for proj in ("q_proj", "k_proj"):
                        k = f"model.layers.{l}.self_attn.{proj}.weight"
                        w = sd[k]
                        heads = w.shape[0] // hs
                        sd[k] = w.reshape(heads, hs // 2, 2, -1).transpose(0, 2, 1, 3).reshape(w.shape).copy()

            def gate_up_swapped(sd):
                for l in range(L):
                    g, u = f"model.layers.{l}.mlp.gate_proj.weight", f"model.layers.{l}.mlp.up_proj.weight"
                    sd[g], sd[u] = sd[u].copy(), sd[g].copy()
            mistakes = [("q/k rows permuted to the interleaved RoPE layout", interleaved),
                        ("gate_proj and up_proj swapped", gate_up_swapped)]
        for i, (name, edit) in enumerate(mistakes):
            wrong = os.path.join(tmp, f"wrong{i}")
            export_hf(t, cfg, wrong)
            _planted(wrong, name, edit)
            caught &= not check_export(wrong, tokens, good_logits, rtol)
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
