#!/bin/bash
# clformer test: fault injection exists only in the test build. clformer (the product) has no
# cf_fault_* hooks and ignores CF_FAULT_*; clformer-fi (built next to it from the same sources with
# CF_FAULT_INJECTION) honours them: CF_FAULT_SAVE_CRASH=1 makes its checkpoint write stop half way
# and the run fail with "simulated crash", and CF_FAULT_ALLOC=1 fails the first allocation.
set -u
CLF=$1
SRC=$2
FI="$(dirname "$CLF")/clformer-fi"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1
[ -x "$FI" ] || { echo "FAIL - $FI was not built"; exit 1; }
SMALL="d_model=32 num_heads=2 num_layers=2 d_ff=80 max_length=32 batch_size=4 eval_interval=0 log_interval=1 warmup_steps=2"

if command -v nm >/dev/null; then
  if nm "$CLF" | grep -q "cf_fault_"; then bad "the product binary has fault hooks: $(nm "$CLF" | grep cf_fault_ | head -3 | tr '\n' ' ')"
  else ok "the product binary has no cf_fault_* symbols"; fi
  nm "$FI" | grep -q "cf_fault_save_crash" && ok "clformer-fi has the hooks" || bad "clformer-fi lacks the hooks"
fi

CF_FAULT_SAVE_CRASH=1 CF_FAULT_ALLOC=1 $CLF train configs/tiny.json $SMALL --device cpu --steps 2 --out "$W/p" --quiet >"$W/p.out" 2>&1 \
  && [ -f "$W/p/step_000002.safetensors" ] && ok "clformer ignores CF_FAULT_SAVE_CRASH and CF_FAULT_ALLOC" \
  || bad "clformer with CF_FAULT_* set failed: $(tail -2 "$W/p.out")"

if CF_FAULT_SAVE_CRASH=1 $FI train configs/tiny.json $SMALL --device cpu --steps 2 --out "$W/f" --quiet >"$W/f.out" 2>&1; then
  bad "clformer-fi with CF_FAULT_SAVE_CRASH=1 succeeded"
else
  grep -q "simulated crash" "$W/f.out" && ok "clformer-fi: CF_FAULT_SAVE_CRASH=1 makes the save fail (simulated crash)" \
    || bad "clformer-fi failed without the simulated crash message: $(tail -2 "$W/f.out")"
fi
if CF_FAULT_ALLOC=1 $FI train configs/tiny.json $SMALL --device cpu --steps 2 --out "$W/a" --quiet >"$W/a.out" 2>&1; then
  bad "clformer-fi with CF_FAULT_ALLOC=1 succeeded"
else
  grep -q "injected fault" "$W/a.out" && ok "clformer-fi: CF_FAULT_ALLOC=1 fails the first allocation (injected fault)" \
    || bad "clformer-fi failed without the injected-fault message: $(tail -2 "$W/a.out")"
fi
exit $fail
