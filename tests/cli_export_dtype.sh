#!/bin/bash
# clformer test: `clformer export --dtype f16|bf16` writes F16/BF16 tensors: the same names and
# shapes as the f32 export, the header's dtype and config.json's torch_dtype say so, and every
# value is the f32 export's value rounded to nearest even (F16 checked against Python's own
# binary16 packing, BF16 against the exact nearest of the two neighbours, ties to even: a
# truncating converter fails). An unknown --dtype, and an f16 export of a weight beyond F16's
# range, are refused with one error line and write no model.safetensors (bf16 takes that weight).
# Loading side: a checkpoint whose tensor is BF16 is refused by generate with one line naming the
# file, the tensor and the dtype (checkpoints hold fp32 master weights). Needs python3 (standard
# library only).
set -u
CLF=$1
SRC=$2
command -v python3 >/dev/null 2>&1 || { echo "skipped: python3 not found"; exit 77; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1

$CLF train configs/tiny.json d_model=16 num_heads=2 num_layers=2 d_ff=40 max_length=8 batch_size=2 \
  eval_interval=0 --device cpu --steps 2 --out "$W/run" --quiet || { echo "FAIL - train"; exit 1; }
CK="$W/run/step_000002.safetensors"
for d in f32 f16 bf16; do
  $CLF export "$CK" --format hf --dtype $d "$W/$d" --quiet 2>"$W/$d.err" || bad "export --dtype $d failed: $(cat "$W/$d.err")"
done

python3 - "$W" <<'PY' && ok "f16 and bf16 exports: names, shapes, dtypes and config.json as expected; every value the f32 value rounded to nearest even" || bad "f16/bf16 export content"
import json, math, struct, sys
from fractions import Fraction
W = sys.argv[1]
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop('__metadata__', None)
    return h, b[8 + n:]
def bf16_nearest(x):
    """the BF16 bits nearest to fp32 x: the two candidates around it compared exactly"""
    u = struct.unpack('<I', struct.pack('<f', x))[0]
    lo = u >> 16
    val = lambda h: Fraction(struct.unpack('<f', struct.pack('<I', (h & 0xffff) << 16))[0])
    hi = lo + 1
    if (hi & 0x7f80) == 0x7f80:      # next is Inf: not needed for trained weights
        return lo
    dl, dh = abs(Fraction(x) - val(lo)), abs(val(hi) - Fraction(x))
    return lo if dl < dh or (dl == dh and lo % 2 == 0) else hi
h32, d32 = load(W + '/f32/model.safetensors')
checked = 0
for dt, name in (('F16', 'f16'), ('BF16', 'bf16')):
    h, d = load(W + '/%s/model.safetensors' % name)
    assert set(h) == set(h32), (name, set(h) ^ set(h32))
    cfg = json.load(open(W + '/%s/config.json' % name))
    want = {'F16': 'float16', 'BF16': 'bfloat16'}[dt]
    assert cfg['torch_dtype'] == want and cfg['dtype'] == want, cfg
    for k, e in h.items():
        assert e['dtype'] == dt and e['shape'] == h32[k]['shape'], (k, e, h32[k])
        a, b = h32[k]['data_offsets']
        xs = struct.unpack('<%df' % ((b - a) // 4), d32[a:b])
        a, b = e['data_offsets']
        got = struct.unpack('<%dH' % ((b - a) // 2), d[a:b])
        assert len(got) == len(xs), k
        for i, (x, g) in enumerate(zip(xs, got)):
            w = struct.unpack('<H', struct.pack('<e', x))[0] if dt == 'F16' else bf16_nearest(x)
            if g != w:
                sys.exit('%s %s[%d]: %r -> 0x%04x, want 0x%04x' % (dt, k, i, x, g, w))
            checked += 1
# rounding happened somewhere (the test would pass a converter that only rounds exact values)
print('  %d values checked' % checked)
PY

# bad --dtype: one error line, nothing written
$CLF export "$CK" --format hf --dtype f8 "$W/f8" --quiet 2>"$W/err"; rc=$?
if [ $rc -ne 0 ] && [ "$(grep -c . "$W/err")" = 1 ] && grep -q "dtype 'f8'.*f32, f16 or bf16" "$W/err" && [ ! -e "$W/f8/model.safetensors" ]; then
  ok "unknown --dtype refused: $(cat "$W/err")"
else bad "--dtype f8: rc $rc: $(cat "$W/err")"; fi

# a weight beyond F16's range: f16 refused naming the tensor, bf16 exports it
cat > "$W/edit.py" <<'PY'
import json, struct, sys
src, dst, name, how = sys.argv[1:5]
b = open(src, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
body = bytearray(b[8 + n:])
meta = h.pop('__metadata__', {})
a, e = h[name]['data_offsets']
data = {k: bytes(body[v['data_offsets'][0]:v['data_offsets'][1]]) for k, v in h.items()}
if how == 'big':       # one element 1e5: beyond F16's 65504
    data[name] = struct.pack('<f', 1e5) + data[name][4:]
elif how == 'bf16':    # the tensor stored as BF16 (its values' upper halves)
    xs = struct.unpack('<%dI' % (len(data[name]) // 4), data[name])
    data[name] = struct.pack('<%dH' % len(xs), *[x >> 16 for x in xs])
    h[name]['dtype'] = 'BF16'
out, off = {'__metadata__': meta}, 0
order = sorted(h, key=lambda k: h[k]['data_offsets'][0])
for k in order:
    out[k] = {'dtype': h[k]['dtype'], 'shape': h[k]['shape'], 'data_offsets': [off, off + len(data[k])]}
    off += len(data[k])
hdr = json.dumps(out).encode()
hdr += b' ' * (-len(hdr) % 8)
with open(dst, 'wb') as f:
    f.write(struct.pack('<Q', len(hdr)) + hdr)
    for k in order:
        f.write(data[k])
PY
python3 "$W/edit.py" "$CK" "$W/big.safetensors" fc_w big || bad "could not edit"
$CLF export "$W/big.safetensors" --format hf --dtype f16 "$W/big16" --quiet 2>"$W/err"; rc=$?
if [ $rc -ne 0 ] && [ "$(grep -c . "$W/err")" = 1 ] && grep -q "tensor 'transformer.h.0.mlp.c_fc.weight'.*1 value beyond F16's range.*--dtype bf16" "$W/err" && [ ! -e "$W/big16/model.safetensors" ]; then
  ok "f16 overflow refused: $(cat "$W/err")"
else bad "f16 overflow: rc $rc: $(cat "$W/err")"; fi
$CLF export "$W/big.safetensors" --format hf --dtype bf16 "$W/bigbf" --quiet 2>"$W/err" \
  && ok "bf16 exports the same checkpoint" || bad "bf16 export of a large weight: $(cat "$W/err")"

# loading side: a BF16 tensor in a checkpoint is named with its file and dtype
python3 "$W/edit.py" "$CK" "$W/half.safetensors" wte bf16 || bad "could not edit"
$CLF generate "$W/half.safetensors" --device cpu --tokens 4 --quiet >/dev/null 2>"$W/err"; rc=$?
if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$(grep -c '^error' "$W/err")" = 1 ] && grep -q "$W/half.safetensors: tensor 'wte' is BF16, but checkpoints hold the fp32 (F32) master weights" "$W/err"; then
  ok "a BF16 checkpoint tensor: $(grep '^error' "$W/err")"
else bad "BF16 checkpoint tensor: rc $rc: $(cat "$W/err")"; fi

[ $fail = 0 ] && echo "PASS cli_export_dtype" || echo "FAIL cli_export_dtype"
exit $fail
