#!/bin/bash
# clformer test: `clformer devices --verify` and --device auto at the command line.
#   - devices --verify --device cpu passes every op and the training step (exit 0) and caches the
#     result as JSON in $CF_CACHE_DIR/verify (no temporary file left); `clformer devices` shows it
#     and the C backend's GEMM kernel;
#   - train --device auto times the devices once per config shape (one line with the figures),
#     caches the decision (shown by `clformer devices`) and reuses it; auto:first and
#     CF_AUTO_MEASURE=0 never time.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1
export CF_CACHE_DIR="$W/cache"
mkdir -p "$CF_CACHE_DIR"
# the OpenCL program binaries other tests built: saves PoCL's kernel builds (the cache key is the
# source, options and device, so a stale one is never used)
cp "$(dirname "$CLF")"/cl_cache/*.bin "$CF_CACHE_DIR"/ 2>/dev/null || true
SMALL="d_model=32 num_heads=2 num_layers=2 d_ff=80 max_length=32 batch_size=4 eval_interval=0 log_interval=1 warmup_steps=2"

$CLF devices --verify --device cpu >"$W/v.out" 2>&1 && ok "devices --verify --device cpu passes" \
  || bad "devices --verify --device cpu failed: $(grep FAIL "$W/v.out" | head -3)"
grep -q "PASS gemm " "$W/v.out" && grep -q "PASS attention_backward" "$W/v.out" \
  && grep -q "PASS training step" "$W/v.out" && ok "one line per op and the training step" \
  || bad "per-op lines missing: $(head -5 "$W/v.out")"
n=$(ls "$CF_CACHE_DIR"/verify/*.json 2>/dev/null | wc -l)
left=$(ls -A "$CF_CACHE_DIR"/verify | grep -vc '\.json$')
[ "$n" = 1 ] && [ "$left" = 0 ] && ok "one JSON result cached, no temporary file" \
  || bad "verify cache: $n JSON files, $left others: $(ls -A "$CF_CACHE_DIR"/verify)"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['pass'] is True and d['kind']=='cpu' and len(d['ops'])>20, d" "$CF_CACHE_DIR"/verify/*.json \
  && ok "the cached JSON says pass" || bad "cached JSON unexpected"
$CLF devices >"$W/d.out" 2>&1 || bad "devices failed"
grep -q "^  PASS .*(cpu, driver native:" "$W/d.out" && ok "devices shows the verification" \
  || bad "devices does not show the verification: $(cat "$W/d.out")"
grep -Eq "^cpu .*GEMM native:(avx2-6x16|avx512-12x32|generic-4x16)" "$W/d.out" \
  && ok "devices names the CPU GEMM kernel: $(grep -o 'GEMM native:[^;]*' "$W/d.out")" \
  || bad "devices does not name the CPU GEMM kernel"
$CLF devices --device cpu >/dev/null 2>&1 && bad "devices --device without --verify accepted" \
  || ok "devices --device without --verify is refused"

ndev=$(python3 - "$CLF" <<'PY'
import subprocess, sys
out = subprocess.run([sys.argv[1], "devices"], capture_output=True, text=True).stdout
print(1 + sum(1 for l in out.splitlines() if l.strip().startswith("usable") and l.split()[-1] == "yes"))
PY
)
timed_expect=$([ "$ndev" -gt 1 ] && echo 1 || echo 0)
$CLF train configs/tiny.json $SMALL --steps 1 --out "$W/r1" >"$W/t1.out" 2>&1 || bad "train --device auto failed: $(tail -3 "$W/t1.out")"
t=$(grep -c "device auto: timed" "$W/t1.out")
[ "$t" = "$timed_expect" ] && ok "$ndev devices: auto timed them $t time(s): $(grep -o 'device auto: timed.*' "$W/t1.out" | cut -c1-200)" \
  || bad "auto measurement lines: $t (expected $timed_expect): $(cat "$W/t1.out" | head -5)"
$CLF train configs/tiny.json $SMALL --steps 1 --out "$W/r2" >"$W/t2.out" 2>&1 || bad "second train failed"
grep -q "device auto: timed" "$W/t2.out" && bad "the second run timed again" || ok "the second run reuses the decision"
if [ "$timed_expect" = 1 ]; then
  $CLF devices >"$W/d2.out" 2>&1
  grep -A1 "batch_size=4" "$W/d2.out" | grep -q "ms/step" && ok "devices shows the measurement" \
    || bad "devices does not show the measurement: $(tail -5 "$W/d2.out")"
fi
nsel=$(ls "$CF_CACHE_DIR"/select 2>/dev/null | wc -l)
CF_AUTO_MEASURE=0 $CLF train configs/tiny.json $SMALL batch_size=3 --steps 1 --out "$W/r3" >"$W/t3.out" 2>&1 || bad "CF_AUTO_MEASURE=0 train failed"
$CLF train configs/tiny.json $SMALL batch_size=5 --device auto:first --steps 1 --out "$W/r4" >"$W/t4.out" 2>&1 || bad "auto:first train failed: $(tail -3 "$W/t4.out")"
grep -q "device auto: timed" "$W/t3.out" "$W/t4.out" && bad "CF_AUTO_MEASURE=0 / auto:first timed the devices" \
  || ok "CF_AUTO_MEASURE=0 and auto:first do not time"
[ "$(ls "$CF_CACHE_DIR"/select 2>/dev/null | wc -l)" = "$nsel" ] && ok "and cache nothing" || bad "they cached a decision"
exit $fail
