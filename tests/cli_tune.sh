#!/bin/bash
# clformer test: clformer-tune end to end on the OpenCL device (PoCL in CI) with a small config:
# bad arguments give one error line and a non-zero exit; a run stopped by --budget writes what it
# measured plus <out>.partial, and a rerun resumes from it, finishes and removes it; a candidate
# planted wrong (CF_TUNE_PLANT_WRONG) is rejected, reported and does not win; the tuning file is
# valid and complete; clformer announces it with --verbose and trains with it to the same losses
# as the CPU backend; a corrupt file gives one warning and training still runs. With CF_GEMM_FAST=1
# (the register-blocked kernel on a CPU device) the tuner searches that kernel's choices (a
# restricted set), rejects a choice planted wrong, records the best as "fast_choice"; training
# with entries sent to that kernel runs each shape with its file's choice and matches the CPU
# backend; an invalid fast_choice gives one warning naming the entry and the field. Entries record
# their precision: a file of tf32 entries is not applied to an fp32 run (one warning), and
# --precision tf32 without TF32 tensor cores says so once and writes fp32 entries beside them.
# Skips (77) without the tuner or an OpenCL device, unless CF_REQUIRE_OPENCL=1.
#     bash tests/cli_tune.sh <path-to-clformer> <source-dir>
set -u
CLF=$1
SRC=$2
BIN=$(cd "$(dirname "$CLF")" && pwd)
TUNE="$BIN/clformer-tune"
DEV=${CF_TEST_OPENCL_DEVICE:-opencl}
required=${CF_REQUIRE_OPENCL:-0}
skip() {
  if [ "$required" = "1" ]; then echo "FAIL cli_tune: $1, and CF_REQUIRE_OPENCL=1"; exit 1; fi
  echo "SKIP cli_tune: $1"
  exit 77
}
[ -x "$TUNE" ] || skip "$TUNE not built (no OpenCL backend in this build)"
"$CLF" devices 2>/dev/null | grep -q '^opencl:' || skip "no OpenCL device (clformer devices lists none)"

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
# the three losses of two --log files agree within 2e-3 (relative above 1)
same_losses() {
  python3 - "$1" "$2" <<'PY'
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1])]
b = [json.loads(l)["loss"] for l in open(sys.argv[2])]
assert len(a) == len(b) == 3, (a, b)
for x, y in zip(a, b):
    assert abs(x - y) <= 2e-3 * max(1.0, abs(x)), (a, b)
print("  losses %s, %s" % (["%.5f" % x for x in a], ["%.5f" % y for y in b]))
PY
}
# every GEMM shape of the tuning file $1 that the --verbose log $2 shows ran the file's fast
# choice (its blocks, bk and the split the kernel makes of it), at least 10 shapes
ran_fast_choices() {
  python3 - "$1" "$2" <<'PY'
import json, re, sys
t = json.load(open(sys.argv[1]))
log = open(sys.argv[2]).read()
entries = {(g["M"], g["N"], g["K"], "NT"[g["ta"]] + "NT"[g["tb"]]): g for g in t["gemm"]}
seen = 0
for m in re.finditer(r"gemm M=(\d+) N=(\d+) K=(\d+) ([NT]{2}): (.*)", log):
    K = int(m.group(3))
    g = entries.get((int(m.group(1)), int(m.group(2)), K, m.group(4)))
    if not g:
        continue
    seen += 1
    f = g["fast_choice"]
    kps = -(-(-(-K // f["split"])) // f["bk"]) * f["bk"]  # K per slice, a multiple of bk
    split = -(-K // kps)                                  # the split actually run
    want = r"fast %dx%d \(bk %d, split %d, (float4|scalar), from the tuning file\)$" % (
        f["wg"] * f["rm"], f["wg"] * f["rn"], f["bk"], split)
    assert re.match(want, m.group(5)), (m.group(0), want)
assert seen >= 10, seen
print("  %d GEMM shapes of the step ran their file's fast choice" % seen)
PY
}
cd "$SRC" || exit 1
export CF_CACHE_DIR=${CF_CACHE_DIR:-$BIN/cl_cache}  # the tests' shared program cache
unset CF_TUNING

# 1. bad arguments: one error line, non-zero exit
expect_fail() {
  local what=$1; shift
  if "$@" >"$W/o" 2>"$W/e"; then bad "$what: exit 0"; return; fi
  local n
  n=$(grep -c '^error: ' "$W/e")
  [ "$n" = 1 ] && ok "$what: $(head -1 "$W/e")" || bad "$what: expected one error line, got: $(cat "$W/e")"
}
expect_fail "--budget -1" "$TUNE" --budget -1
expect_fail "unknown option" "$TUNE" --frobnicate
expect_fail "--device cpu" "$TUNE" --device cpu
expect_fail "missing config" "$TUNE" --device "$DEV" --config "$W/none.json"
expect_fail "bad --squares" "$TUNE" --squares 12,x
expect_fail "bad --fast-variants" "$TUNE" --fast-variants 8x8x4x16
"$TUNE" --help | grep -q -- "--budget S" && ok "--help" || bad "--help does not document --budget"

# an error reported during the run (planted in the first GEMM run: the backend logs it, the
# candidate is skipped) makes the tuner exit non-zero, with one closing line saying so
CF_TUNE_PLANT_ERROR=1 "$TUNE" --device "$DEV" --quick --squares 64 --repeats 1 --tiles 8 --wpt 4 \
  --tk 16 --vw 1 --pad 1 --no-workgroups --out "$W/pe.json" >"$W/pe.out" 2>"$W/pe.err"
rc=$?
if [ $rc != 0 ] && grep -q '^error: gemm: planted error' "$W/pe.err" &&
   grep -q '^error: clformer-tune: 1 error was reported above' "$W/pe.err"; then
  ok "an error reported during the run: exit $rc, $(grep -c '^error: ' "$W/pe.err") error lines"
else
  bad "an error reported during the run exits $rc: $(grep '^error: ' "$W/pe.err")"
fi

# a small model: every GEMM shape of its training step is tuned
cat > "$W/small.json" <<'EOF'
{"name": "small", "d_model": 32, "num_heads": 2, "num_layers": 1, "d_ff": 64, "max_length": 16,
 "vocab_size": 256, "batch_size": 4, "data": "data/tiny_corpus.txt", "tokenizer": "byte"}
EOF
# few candidate values (few kernel builds: the test stays fast with a cold program cache)
ARGS=(--device "$DEV" --config "$W/small.json" --quick --squares 64 --repeats 2 --tiles 8
      --wpt 4,8 --tk 16 --vw 1,4 --pad 1 --ls 64,256 --out "$W/t.json")

# 2. a budget that runs out (after the one measurement every run makes): partial output, resumable
"$TUNE" "${ARGS[@]}" --budget 0.001 >"$W/b.out" 2>"$W/b.err"
rc=$?
if [ $rc = 0 ] && grep -q "budget reached" "$W/b.out" && [ -f "$W/t.json.partial" ] && [ -f "$W/t.json" ]; then
  ok "--budget 0.001 stops after one measurement, writes t.json and t.json.partial"
else
  bad "--budget run (rc $rc): $(tail -3 "$W/b.out") $(tail -3 "$W/b.err")"
fi

# 3. the rerun resumes and finishes; the 2nd native candidate is planted wrong
CF_TUNE_PLANT_WRONG=2 "$TUNE" "${ARGS[@]}" >"$W/r.out" 2>"$W/r.err"
rc=$?
[ $rc = 0 ] || bad "resumed run failed (rc $rc): $(tail -5 "$W/r.err")"
grep -Eq "^resuming: [1-9][0-9]* measurements?" "$W/r.err" && ok "rerun resumes: $(grep '^resuming' "$W/r.err")" || bad "rerun did not resume: $(head -3 "$W/r.err")"
[ ! -f "$W/t.json.partial" ] && ok "a finished run removes the partial file" || bad "t.json.partial left after a finished run"
grep -Eq "^shape +op +M +N +K +rule GF/s +tuned GF/s +speed-up +CLBlast GF/s" "$W/r.out" && ok "final table printed" || bad "no final table: $(cat "$W/r.out")"
python3 - "$W/t.json" "$W/r.out" <<'PY' && ok "tuning file complete; the planted wrong candidate is reported and not chosen" || bad "tuning file content"
import json, re, sys
t = json.load(open(sys.argv[1]))
out = open(sys.argv[2]).read()
assert t["format"] == "clformer-tuning" and t["version"] == 1, t["format"]
for k in ("platform", "device", "driver", "created", "gemm", "workgroups"):
    assert k in t, k
labels = {g["label"] for g in t["gemm"]}
want = {f"{l}.{p}" for l in ("qkv", "attn_proj", "fc", "fc_proj", "head") for p in ("fwd", "dinp", "dw")}
assert want <= labels, want - labels
assert "square 64" in labels, labels
for g in t["gemm"]:
    assert g["path"] in ("native", "clblast", "fast"), g
    assert g["gflops"]["tuned"] > 0 and g["gflops"]["rule"] > 0, g
    n = g["native"]
    assert n["tk"] % n["vw"] == 0 and (n["tile"] * n["wpt"]) % n["vw"] == 0, g
assert set(t["workgroups"]) == {"attention", "layernorm", "crossentropy", "adamw"}, t["workgroups"]
# the reject line: "<label> <op> <M>x<N>x<K>  t<tile>w<wpt>k<tk>v<vw>p<pad> max error ..."
m = re.search(r"^  (\S+(?: \d+)?) +[NT]{2} .*?\bt(\d+)w(\d+)k(\d+)v(\d+)p(\d+) +max error", out, re.M)
assert m, "no rejected candidate in the report"
g = [g for g in t["gemm"] if g["label"] == m.group(1)][0]
n = g["native"]
assert g["rejected"] >= 1, g
assert (n["tile"], n["wpt"], n["tk"], n["vw"], n["pad"]) != tuple(int(x) for x in m.groups()[1:]), g
print("  %d shapes; rejected: %s" % (len(t["gemm"]), m.group(0).strip()))
PY

# 3b. the backend's other kernel (cl_gemm_fast.c, GPUs; CF_GEMM_FAST=1 forces it here) is measured
# as "fast" with the rule's choice and over other choices (restricted here to one more variant and
# splits 1 and 2: each variant is a kernel build), the best recorded as "fast_choice"; the first
# choice other than the rule's is planted wrong; the tiled candidates still run the tiled kernel
FAST_ARGS=(--no-workgroups --fast-variants 8x4x8x8 --fast-splits 1,2)
CF_GEMM_FAST=1 CF_TUNE_PLANT_WRONG_FAST=1 "$TUNE" "${ARGS[@]}" "${FAST_ARGS[@]}" --out "$W/f.json" >"$W/f.out" 2>"$W/f.err" || bad "tuner with CF_GEMM_FAST=1 failed: $(tail -3 "$W/f.err")"
python3 - "$W/f.json" "$W/f.out" <<'PY' && ok "CF_GEMM_FAST=1: the fast kernel measured per shape with the rule's choice and searched; the planted wrong choice is reported and not chosen" || bad "CF_GEMM_FAST=1 run"
import json, re, sys
t = json.load(open(sys.argv[1]))
out = open(sys.argv[2]).read()
assert "fast GF/s" in out and "fastT GF/s" in out
splits2 = 0
for g in t["gemm"]:
    gf = g["gflops"]
    assert gf["fast"] > 0 and gf["fast_rule"] > 0 and gf["rule"] > 0, g
    assert g["path"] in ("native", "clblast", "fast"), g
    f = g["fast_choice"]
    assert f["rm"] in (4, 8) and f["rn"] in (4, 8) and f["bk"] in (8, 16) and f["wg"] in (8, 16), g
    assert f["rm"] * f["bk"] >= 4 * f["wg"] and f["rn"] * f["bk"] >= 4 * f["wg"], g
    assert f["split"] == 1 or g["K"] // f["split"] >= 128, g
    splits2 += g["K"] >= 256
assert splits2 >= 1, "no shape with K >= 256: split 2 never a candidate"
# "<label> <op> <M>x<N>x<K>  f<rm>x<rn>b<bk>w<wg>s<split> max error ..."
m = re.search(r"^  (\S+(?: \d+)?) +[NT]{2} .*?\bf(\d+)x(\d+)b(\d+)w(\d+)s(\d+) +max error", out, re.M)
assert m, "no rejected fast-kernel choice in the report"
g = [g for g in t["gemm"] if g["label"] == m.group(1)][0]
f = g["fast_choice"]
assert (f["rm"], f["rn"], f["bk"], f["wg"], f["split"]) != tuple(int(x) for x in m.groups()[1:]), g
print("  %d shapes with a fast choice; rejected: %s" % (len(t["gemm"]), m.group(0).strip()))
PY
# every entry sent to the fast kernel: training under CF_GEMM_FAST=1 runs each shape with its
# file's choice (debug log) and matches the CPU backend's losses (below, after the CPU run)
python3 - "$W/f.json" "$W/fall.json" <<'PY' || bad "could not write fall.json"
import json, sys
t = json.load(open(sys.argv[1]))
for g in t["gemm"]:
    g["path"] = "fast"
json.dump(t, open(sys.argv[2], "w"), indent=1)
PY

# 4. clformer uses it: announced with --verbose, same losses as the CPU backend
SMALL="d_model=32 num_heads=2 num_layers=1 d_ff=64 max_length=16 batch_size=4 eval_interval=0 log_interval=1 warmup_steps=1"
$CLF train configs/tiny.json $SMALL --device cpu --steps 3 --out "$W/cpu" --log "$W/cpu.jsonl" --quiet || bad "train on the CPU backend"
CF_TUNING="$W/t.json" $CLF train configs/tiny.json $SMALL --device "$DEV" --steps 3 --out "$W/cl" --log "$W/cl.jsonl" --verbose >"$W/cl.out" 2>"$W/cl.err" || bad "tuned training failed: $(tail -3 "$W/cl.err")"
grep -q "tuning: using $W/t.json" "$W/cl.err" && ok "--verbose announces the tuning file" || bad "no 'tuning: using' line in: $(grep -i tuning "$W/cl.err")"
python3 - "$W/t.json" "$W/cl.err" <<'PY' && ok "each tuned GEMM shape ran on its file's path with its parameters (debug log)" || bad "GEMM paths or parameters differ from the tuning file"
import json, re, sys
t = json.load(open(sys.argv[1]))
log = open(sys.argv[2]).read()
entries = {(g["M"], g["N"], g["K"], "NT"[g["ta"]] + "NT"[g["tb"]]): g for g in t["gemm"]}
seen = 0
for m in re.finditer(r"gemm M=(\d+) N=(\d+) K=(\d+) ([NT]{2}): (.*)", log):
    g = entries.get((int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)))
    if not g:
        continue
    seen += 1
    n = g["native"]
    want = ("clblast" if g["path"] == "clblast" else
            "native %dx%d (wpt %d, tk %d, vw %d, pad %d, tuning)" % (n["tile"], n["tile"], n["wpt"], n["tk"], n["vw"], n["pad"]))
    assert m.group(5) == want, (m.group(0), want)
assert seen >= 10, seen
print("  %d GEMM shapes of the step checked against the file" % seen)
PY
same_losses "$W/cpu.jsonl" "$W/cl.jsonl" && ok "tuned OpenCL training matches the CPU backend's losses" || bad "tuned training losses differ from the CPU backend"

# 4b. the file's fast choices in use: every entry of the CF_GEMM_FAST=1 tuning sent to the fast
# kernel; each GEMM shape of the step runs with its entry's choice, losses as on the CPU backend
CF_GEMM_FAST=1 CF_TUNING="$W/fall.json" $CLF train configs/tiny.json $SMALL --device "$DEV" --steps 3 --out "$W/fa" --log "$W/fa.jsonl" --verbose >"$W/fa.out" 2>"$W/fa.err" || bad "training with fast choices failed: $(tail -3 "$W/fa.err")"
ran_fast_choices "$W/fall.json" "$W/fa.err" && ok "CF_GEMM_FAST=1 and path fast: each GEMM shape of the step ran with its file's fast choice (debug log)" || bad "fast choices of the tuning file not used"
same_losses "$W/cpu.jsonl" "$W/fa.jsonl" && ok "training with the file's fast choices matches the CPU backend's losses" || bad "losses with fast choices differ from the CPU backend"

# 5. a corrupt file named with --tuning: one warning, the run goes on
echo '{"format": "clformer-tuning", "version": 1, "gemm": [' > "$W/bad.json"
if $CLF train configs/tiny.json $SMALL --device "$DEV" --tuning "$W/bad.json" --steps 1 --out "$W/bad" >"$W/bad.out" 2>"$W/bad.err"; then
  n=$(grep -c "^warning: tuning file" "$W/bad.err")
  [ "$n" = 1 ] && ok "corrupt tuning file: $(grep '^warning: tuning file' "$W/bad.err" | cut -c1-120)..." || bad "corrupt tuning file: $n warnings: $(cat "$W/bad.err")"
else
  bad "training with a corrupt tuning file failed: $(tail -3 "$W/bad.err")"
fi

# 5b. an invalid fast_choice: one warning naming the entry, the field and the fix; the run goes on
python3 - "$W/f.json" "$W/badfast.json" <<'PY' || bad "could not write badfast.json"
import json, sys
t = json.load(open(sys.argv[1]))
t["gemm"][1]["fast_choice"]["bk"] = 12
json.dump(t, open(sys.argv[2], "w"), indent=1)
PY
if $CLF train configs/tiny.json $SMALL --device "$DEV" --tuning "$W/badfast.json" --steps 1 --out "$W/bf" >"$W/bf.out" 2>"$W/bf.err"; then
  line=$(grep "^warning: tuning file" "$W/bf.err")
  n=$(grep -c "^warning: tuning file" "$W/bf.err")
  if [ "$n" = 1 ] && echo "$line" | grep -q "gemm\[1\] (qkv.dinp).fast_choice: rm [48], rn [48], bk 12, wg [0-9]* is no variant of the fast kernel" && echo "$line" | grep -q "rerun clformer-tune"; then
    ok "invalid fast_choice: $(echo "$line" | cut -c1-60)...$(echo "$line" | grep -o 'gemm\[1\].*kernel')"
  else
    bad "invalid fast_choice: $n warnings: $(cat "$W/bf.err")"
  fi
else
  bad "training with an invalid fast_choice failed: $(tail -3 "$W/bf.err")"
fi

# 6. precisions: each entry records the precision it was measured under. A file of tf32 entries is
# not applied to an fp32 run (one warning for the whole run); --precision tf32 on a device without
# TF32 tensor cores (PoCL) says so once and measures fp32, keeping the file's tf32 entries beside
# its new fp32 ones
expect_fail "bad --precision" "$TUNE" --precision bf17
python3 - "$W/t.json" "$W/tf32.json" <<'PY' || bad "could not write tf32.json"
import json, sys
t = json.load(open(sys.argv[1]))
for g in t["gemm"]:
    assert g["precision"] == "fp32", g
    g["precision"] = "tf32"
json.dump(t, open(sys.argv[2], "w"), indent=1)
PY
if $CLF train configs/tiny.json $SMALL --device "$DEV" --tuning "$W/tf32.json" --steps 2 --out "$W/pt" >"$W/pt.out" 2>"$W/pt.err"; then
  n=$(grep -c "^warning: tuning file" "$W/pt.err")
  if [ "$n" = 1 ] && grep -q "measured for another precision than this run's fp32 and not applied" "$W/pt.err"; then
    ok "a file of tf32 entries in an fp32 run: one warning, not applied"
  else bad "tf32 file in an fp32 run: $n warnings: $(cat "$W/pt.err")"; fi
else
  bad "training with a tf32 tuning file failed: $(tail -3 "$W/pt.err")"
fi
cp "$W/tf32.json" "$W/mixed.json"
"$TUNE" --device "$DEV" --precision tf32 --quick --squares 64 --repeats 1 --tiles 8 --wpt 4 --tk 16 \
  --vw 1 --pad 1 --no-workgroups --out "$W/mixed.json" >"$W/pm.out" 2>"$W/pm.err" || bad "tuner --precision tf32 failed: $(tail -3 "$W/pm.err")"
n=$(grep -c "clformer-tune --precision tf32: .* has no TF32 matrix engine" "$W/pm.err")
[ "$n" = 1 ] && ok "--precision tf32 without tensor cores: said once, measured fp32" || bad "--precision tf32 note printed $n times: $(cat "$W/pm.err")"
python3 - "$W/mixed.json" "$W/tf32.json" <<'PY' && ok "the fp32 entry is written beside the earlier file's tf32 entries of the same shapes" || bad "mixed-precision file"
import json, sys
t = json.load(open(sys.argv[1]))
old = json.load(open(sys.argv[2]))
by = {}
for g in t["gemm"]:
    by.setdefault(g["precision"], []).append(g["label"])
assert by.get("fp32") == ["square 64"], by
assert sorted(by.get("tf32", [])) == sorted(g["label"] for g in old["gemm"]), by
print("  %d tf32 entries kept, fp32: %s" % (len(by["tf32"]), by["fp32"]))
PY

# 7. --precision bf16: the register-blocked kernel is the only one that rounds GEMM inputs, so it
# alone is measured (its rule's choice and the other choices, the first other one planted wrong);
# every entry is tagged bf16 with path fast, the tiled kernel and CLBlast unmeasured; a bf16 run
# takes each shape's choice from the file and trains to the untuned bf16 run's losses; an fp32 run
# does not apply the file
CF_TUNE_PLANT_WRONG_FAST=1 "$TUNE" "${ARGS[@]}" "${FAST_ARGS[@]}" --precision bf16 --out "$W/b.json" >"$W/b.out" 2>"$W/b.err" || bad "tuner --precision bf16 failed: $(tail -3 "$W/b.err")"
python3 - "$W/b.json" "$W/b.out" <<'PY' && ok "--precision bf16: the fast kernel alone measured and searched per shape, entries tagged bf16, the planted wrong choice rejected" || bad "--precision bf16 run"
import json, re, sys
t = json.load(open(sys.argv[1]))
out = open(sys.argv[2]).read()
assert len(t["gemm"]) >= 10, len(t["gemm"])
for g in t["gemm"]:
    gf = g["gflops"]
    assert g["precision"] == "bf16" and g["path"] == "fast", g
    assert gf["fast"] > 0 and gf["fast_rule"] > 0 and gf["rule"] == 0 and gf["tuned"] == 0, g
    assert gf["clblast"] == 0, g
    assert g["fast_choice"]["rm"] in (4, 8, 16), g
assert re.search(r"\bf\d+x\d+b\d+w\d+s\d+ +max error", out), "no rejected choice in the report"
print("  %d bf16 entries" % len(t["gemm"]))
PY
$CLF train configs/tiny.json $SMALL --device "$DEV" --precision bf16 --tuning off --steps 3 --out "$W/b0" --log "$W/b0.jsonl" --quiet >"$W/b0.out" 2>"$W/b0.err" || bad "untuned bf16 training failed: $(tail -3 "$W/b0.err")"
$CLF train configs/tiny.json $SMALL --device "$DEV" --precision bf16 --tuning "$W/b.json" --steps 3 --out "$W/b1" --log "$W/b1.jsonl" --verbose >"$W/b1.out" 2>"$W/b1.err" || bad "tuned bf16 training failed: $(tail -3 "$W/b1.err")"
ran_fast_choices "$W/b.json" "$W/b1.err" && ok "a bf16 run takes every shape's choice from the bf16 entries" || bad "bf16 entries not used"
same_losses "$W/b0.jsonl" "$W/b1.jsonl" && ok "the tuned bf16 run matches the untuned bf16 run's losses" || bad "tuned bf16 losses differ from the untuned run's"
if $CLF train configs/tiny.json $SMALL --device "$DEV" --tuning "$W/b.json" --steps 1 --out "$W/b2" >"$W/b2.out" 2>"$W/b2.err"; then
  grep -q "measured for another precision than this run's fp32 and not applied" "$W/b2.err" && ok "a file of bf16 entries in an fp32 run: not applied (one warning)" || bad "bf16 file in an fp32 run: $(cat "$W/b2.err")"
else
  bad "fp32 training with a bf16 tuning file failed: $(tail -3 "$W/b2.err")"
fi

[ $fail = 0 ] && echo "PASS cli_tune" || echo "FAIL cli_tune"
exit $fail
