#!/bin/bash
# clformer test: `clformer bench` and `train --profile/--trace` from the command line on the CPU
# backend: the --json object parses and has every documented key, the profile tables print, the
# trace files are valid JSON with well-formed complete events, the sweeps run and report, and bad
# input gets a one-line error and a non-zero exit.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1
SMALL="d_model=32 num_heads=2 num_layers=2 d_ff=64 max_length=16 batch_size=4 eval_interval=0 log_interval=1 warmup_steps=1"

# 1. bench --json
if $CLF bench configs/tiny.json $SMALL --device cpu --steps 3 --warmup 1 --json >"$W/b.json" 2>"$W/b.err"; then
  ok "bench --json runs"
else
  bad "bench --json failed: $(cat "$W/b.err")"
fi
python3 - "$W/b.json" <<'PY' && ok "bench --json: one object with every key, allocations per step 0" || bad "bench --json content"
import json, math, sys
txt = open(sys.argv[1]).read()
o = json.loads(txt)  # exactly one JSON document on stdout
keys = ["tokens_per_s", "ms_per_step", "mfu", "peak_host_bytes", "peak_device_bytes",
        "h2d_bytes_per_step", "d2h_bytes_per_step", "device", "config", "flops_per_token",
        "peak_gflops", "allocs_per_step", "analytic_bytes", "ms_per_step_p10", "ms_per_step_p90"]
missing = [k for k in keys if k not in o]
assert not missing, missing
assert o["config"] == "tiny" and o["device"] == "cpu", o
assert o["tokens_per_s"] > 0 and 0 < o["mfu"] < 1, o
assert o["allocs_per_step"] == 0, o["allocs_per_step"]
assert o["h2d_bytes_per_step"] == 2 * 4 * 16 * 4, o["h2d_bytes_per_step"]  # ids of one micro-batch
assert o["peak_device_bytes"] >= o["analytic_bytes"] > 0, o
print("  tokens/s %.0f, MFU %.4f, device %d bytes (analytic %d)" % (
    o["tokens_per_s"], o["mfu"], o["peak_device_bytes"], o["analytic_bytes"]))
PY

# 2. bench --profile --trace
$CLF bench configs/tiny.json $SMALL --device cpu --steps 2 --warmup 1 --profile --trace "$W/bt.json" >"$W/p.out" 2>"$W/p.err" || bad "bench --profile failed: $(tail -3 "$W/p.err")"
grep -q "where the time goes" "$W/p.err" && grep -q "per layer and op" "$W/p.err" && ok "bench --profile prints the tables" || bad "bench --profile tables missing"
for cat in gemm attention norm activation loss optimizer transfer; do
  grep -Eq "^$cat " "$W/p.err" || bad "bench --profile: no '$cat' row"
done
grep -Eq "^L1 +bwd +gemm" "$W/p.err" && ok "profile has per-layer backward rows" || bad "no 'L1 bwd gemm' row in the profile"
check_trace() {
  python3 - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ev = d["traceEvents"]
x = [e for e in ev if e["ph"] == "X"]
assert x, "no complete events"
assert all(e["ph"] in ("X", "M") for e in ev), "unexpected phases"
for e in x:
    assert e["dur"] >= 0 and e["ts"] >= 0 and "tid" in e and "pid" in e, e
tracks = {}
for e in x:
    tracks.setdefault(e["tid"], []).append(e)
for tid, es in tracks.items():
    end = -1e300
    for e in es:
        assert e["ts"] >= end - 1e-3, ("overlap", e)
        end = e["ts"] + e["dur"]
names = {e["name"] for e in x}
assert "L0.fwd.gemm" in names and "L1.bwd.attention_backward" in names, sorted(names)[:20]
steps = [e for e in x if e["name"].startswith("step ")]
assert len(steps) == int(sys.argv[2]), len(steps)
meta = [e for e in ev if e["ph"] == "M" and e["name"] == "thread_name"]
assert len(meta) >= 2, meta
print("  %d events on %d tracks" % (len(x), len(tracks)))
PY
}
check_trace "$W/bt.json" 2 && ok "bench --trace writes a valid Chrome trace" || bad "bench trace invalid"

# 3. train --profile --trace --verbose
$CLF train configs/tiny.json $SMALL --device cpu --steps 4 --out "$W/run" --profile --profile-steps 2 --trace "$W/tt.json" --verbose >"$W/t.out" 2>"$W/t.err" || bad "train --profile failed: $(tail -3 "$W/t.err")"
grep -q "where the time goes" "$W/t.err" && ok "train --profile prints the table" || bad "train --profile printed no table"
check_trace "$W/tt.json" 2 && ok "train --trace writes a valid Chrome trace" || bad "train trace invalid"
n_alloc0=$(grep -c "allocs 0 " "$W/t.err")
[ "$n_alloc0" -ge 3 ] && ok "train --verbose shows 0 allocations per step ($n_alloc0 lines)" || bad "train --verbose: expected 'allocs 0' on steps after the first; got: $(grep -o 'allocs [0-9]*' "$W/t.err" | tr '\n' ' ')"

# 4. GEMM sweep (config shapes + squares) and attention sweep
$CLF bench --gemm-sweep configs/tiny.json $SMALL --device cpu --sizes 16,64 --min-time 0.01 --json >"$W/g.json" 2>"$W/g.err" || bad "gemm sweep failed: $(tail -3 "$W/g.err")"
python3 - "$W/g.json" <<'PY' && ok "gemm sweep: every training GEMM shape and the squares, GFLOP/s > 0" || bad "gemm sweep output"
import json, sys
d = json.load(open(sys.argv[1]))
names = [s["name"] for s in d["shapes"]]
for lin in ("qkv", "attn_proj", "fc", "fc_proj", "head"):
    for k in ("fwd", "dinp", "dw"):
        assert "%s.%s" % (lin, k) in names, (lin, k, names)
assert "square 16" in names and "square 64" in names, names
for s in d["shapes"]:
    assert s["gflops"]["cpu native"] > 0, s
# the head's forward: M = B*T = 64 rows, N = vocab 256, K = d_model 32
h = [s for s in d["shapes"] if s["name"] == "head.fwd"][0]
assert (h["M"], h["N"], h["K"], h["ta"], h["tb"]) == (64, 256, 32, 0, 1), h
PY
$CLF bench --gemm-sweep --device cpu --square-only --sizes 32 --min-time 0.01 >"$W/g.txt" 2>&1 && grep -q "square 32" "$W/g.txt" && ok "gemm sweep table" || bad "gemm sweep table: $(cat "$W/g.txt")"
$CLF bench --attention-sweep configs/tiny.json $SMALL --device cpu --sizes 16,32,64 --batch 2 --min-time 0.01 --json >"$W/a.json" 2>"$W/a.err" || bad "attention sweep failed: $(tail -3 "$W/a.err")"
python3 - "$W/a.json" <<'PY' && ok "attention sweep: probabilities memory grows 4x per doubling of T" || bad "attention sweep output"
import json, sys
d = json.load(open(sys.argv[1]))
r = d["rows"]
assert [x["T"] for x in r] == [16, 32, 64], r
for a, b in zip(r, r[1:]):
    assert b["att_bytes"] == 4 * a["att_bytes"], (a, b)
# three (B, NH, T, T) float buffers at B=2, NH=2
assert r[0]["att_bytes"] == 3 * 2 * 2 * 16 * 16 * 4, r[0]
assert all(x["forward_ms"] > 0 and x["backward_ms"] > 0 for x in r), r
PY
$CLF bench --peak --device cpu >"$W/pk.txt" 2>&1 && grep -Eq "peak [0-9.]+ GFLOP/s" "$W/pk.txt" && ok "bench --peak: $(cat "$W/pk.txt")" || bad "bench --peak: $(cat "$W/pk.txt")"

# 5. bad input: one line, non-zero exit
expect_fail() {
  local what=$1; shift
  out=$("$@" 2>&1 >/dev/null); rc=$?
  lines=$(printf '%s\n' "$out" | grep -c .)
  if [ $rc -ne 0 ] && [ "$lines" -eq 1 ]; then ok "$what: $out"; else bad "$what: rc=$rc, $lines lines: $out"; fi
}
expect_fail "--steps 0" $CLF bench configs/tiny.json --device cpu --steps 0
expect_fail "unknown option" $CLF bench configs/tiny.json --device cpu --frobnicate
expect_fail "bad --sizes" $CLF bench --gemm-sweep --device cpu --sizes 12,abc
expect_fail "missing config file" $CLF bench configs/does_not_exist.json --device cpu
expect_fail "bad override" $CLF bench configs/tiny.json --device cpu d_model=33

exit $fail
