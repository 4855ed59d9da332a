#!/bin/bash
# clformer test: `clformer export` goes through the checkpoint loader's validation. A checkpoint
# whose stored config was edited (num_layers 64 or 4096), whose tensors are F16, I32, transposed
# or missing or hold a NaN or an Inf, or whose tokenizer hash does not match the tokenizer is refused with one error line
# and a non-zero exit, and nothing is written. A good checkpoint exports every tensor of the model
# description under its Hugging Face name and shape. Needs python3 (standard library only) to
# edit the safetensors files.
set -u
CLF=$1
SRC=$2
command -v python3 >/dev/null 2>&1 || { echo "skipped: python3 not found"; exit 77; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1

# safetensors editor: edit.py IN OUT ACTION [ARG]
cat > "$W/edit.py" <<'EOF'
import json, struct, sys
src, dst, action = sys.argv[1], sys.argv[2], sys.argv[3]
arg = sys.argv[4] if len(sys.argv) > 4 else None
b = open(src, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
body = b[8 + n:]
meta = h.pop('__metadata__', {})
data = {k: body[v['data_offsets'][0]:v['data_offsets'][1]] for k, v in h.items()}
if action == 'layers':            # the stored config's num_layers
    cfg = json.loads(meta['config'])
    cfg['num_layers'] = int(arg)
    meta['config'] = json.dumps(cfg)
elif action == 'f16':             # a tensor stored as F16 (half the bytes)
    h[arg]['dtype'] = 'F16'
    data[arg] = data[arg][:len(data[arg]) // 2]
elif action == 'i32':             # a tensor stored as I32 (same bytes)
    h[arg]['dtype'] = 'I32'
elif action == 'transpose':       # the last two dims swapped (same bytes)
    s = h[arg]['shape']
    s[-1], s[-2] = s[-2], s[-1]
elif action == 'drop':            # a tensor removed
    del h[arg]
    del data[arg]
elif action == 'nan':             # a NaN in a tensor (a diverged run)
    data[arg] = struct.pack('<f', float('nan')) + data[arg][4:]
elif action == 'inf':             # an Inf in a tensor
    data[arg] = data[arg][:-4] + struct.pack('<f', float('inf'))
elif action == 'hash':            # another tokenizer hash
    meta['tokenizer_hash'] = '0123456789abcdef'
else:
    sys.exit('unknown action ' + action)
out, off = {'__metadata__': meta}, 0
for k in sorted(h, key=lambda k: h[k]['data_offsets'][0]):
    out[k] = {'dtype': h[k]['dtype'], 'shape': h[k]['shape'],
              'data_offsets': [off, off + len(data[k])]}
    off += len(data[k])
hdr = json.dumps(out).encode()
hdr += b' ' * (-len(hdr) % 8)
with open(dst, 'wb') as f:
    f.write(struct.pack('<Q', len(hdr)) + hdr)
    for k in sorted(h, key=lambda k: h[k]['data_offsets'][0]):
        f.write(data[k])
EOF

L=2
C=16
F=40
$CLF train configs/tiny.json d_model=$C num_heads=2 num_layers=$L d_ff=$F max_length=8 batch_size=2 \
  eval_interval=0 --device cpu --steps 1 --out "$W/run" --quiet || { echo "FAIL - train"; exit 1; }
CK="$W/run/step_000001.safetensors"

# 1. the good checkpoint exports, with the names and shapes Hugging Face's GPT2LMHeadModel has
if $CLF export "$CK" --format hf "$W/good" --quiet 2>"$W/err"; then
  if python3 - "$W/good/model.safetensors" $L $C $F <<'EOF'
import json, struct, sys
p, L, C, F = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
b = open(p, 'rb').read()
h = json.loads(b[8:8 + struct.unpack('<Q', b[:8])[0]])
h.pop('__metadata__', None)
want = {'transformer.wte.weight': [256, C], 'transformer.wpe.weight': [8, C],
        'transformer.ln_f.weight': [C], 'transformer.ln_f.bias': [C]}
for l in range(L):
    for k, s in {'ln_1.weight': [C], 'ln_1.bias': [C], 'attn.c_attn.weight': [C, 3 * C],
                 'attn.c_attn.bias': [3 * C], 'attn.c_proj.weight': [C, C],
                 'attn.c_proj.bias': [C], 'ln_2.weight': [C], 'ln_2.bias': [C],
                 'mlp.c_fc.weight': [C, F], 'mlp.c_fc.bias': [F],
                 'mlp.c_proj.weight': [F, C], 'mlp.c_proj.bias': [C]}.items():
        want['transformer.h.%d.%s' % (l, k)] = s
got = {k: v['shape'] for k, v in h.items()}
bad = [k for k in set(want) | set(got) if want.get(k) != got.get(k) or h[k]['dtype'] != 'F32']
if bad:
    print('mismatched tensors:', sorted(bad)[:8])
    sys.exit(1)
EOF
  then ok "good checkpoint: every tensor under its Hugging Face name and shape"
  else bad "good checkpoint: exported names or shapes differ from GPT2LMHeadModel"
  fi
else
  bad "good checkpoint: export failed: $(cat "$W/err")"
fi

# 2. damaged or edited checkpoints are refused: one error line naming the cause, nothing written
refused() { # NAME EXPECTED-WORD ACTION [ARG]
  local name=$1 word=$2
  shift 2
  python3 "$W/edit.py" "$CK" "$W/$name.safetensors" "$@" || { bad "$name: could not edit"; return; }
  $CLF export "$W/$name.safetensors" --format hf "$W/out_$name" --quiet 2>"$W/err"
  local rc=$? lines
  lines=$(grep -c . "$W/err")
  if [ $rc -eq 0 ]; then
    bad "$name: export succeeded ($(ls "$W/out_$name" 2>/dev/null | tr '\n' ' '))"
  elif [ $rc -ge 128 ]; then
    bad "$name: export crashed (exit $rc)"
  elif [ "$lines" != 1 ] || ! grep -q -- "$word" "$W/err"; then
    bad "$name: expected one error line mentioning '$word', got: $(head -c 400 "$W/err")"
  elif [ -e "$W/out_$name/model.safetensors" ]; then
    bad "$name: refused but wrote $W/out_$name/model.safetensors"
  else
    ok "$name refused: $(cat "$W/err")"
  fi
}
refused num_layers_64 "qkv_w" layers 64
refused num_layers_4096 "qkv_w" layers 4096
refused wte_f16 "F16" f16 wte
refused fc_w_f16 "F16" f16 fc_w
refused wpe_i32 "I32" i32 wpe
refused qkv_w_transposed "qkv_w" transpose qkv_w
refused fc_proj_w_transposed "fc_proj_w" transpose fc_proj_w
refused lnf_b_missing "lnf_b" drop lnf_b
refused tokenizer_hash "tokenizer" hash
refused fc_w_nan "NaN" nan fc_w
refused lnf_w_inf "Inf" inf lnf_w

exit $fail
