#!/bin/bash
# clformer: run the rows of BENCHMARKS.md: each config on each clformer device, and the PyTorch
# baseline (bench/pytorch_gpt.py) on the same model in the same invocation, so the comparison is a
# ratio measured under the same conditions. Every row records its exact command.
#
#   bench/run_all.sh [--clformer PATH] [--devices "LABEL=SPEC ..."] [--configs "NAME ..."]
#                    [--steps N] [--warmup N] [--torch-device cpu|cuda] [--torch-threads N]
#                    [--out DIR] [--profile]
#
# Defaults (this repository's 2-core CI box): devices "cpu=cpu pocl=pocl", configs tiny,
# wiki_cache_optimized, wiki_performance_tuned, wiki_gpu_optimized, PyTorch on the CPU with as
# many threads as processors. On an NVIDIA machine:
#   bench/run_all.sh --devices "nvidia=nvidia" --torch-device cuda
# Writes DIR/results.jsonl (one object per row: row, command, load average, result) and
# DIR/table.md (the Markdown table for BENCHMARKS.md), and prints the table. With --profile the
# clformer rows also write their per-op profile tables to DIR/profile_<config>_<device>.txt.
# Rows whose tool is missing (no torch, no OpenCL device) are reported as skipped, with why.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CLF="$ROOT/build/clformer"
DEVICES="cpu=cpu pocl=pocl"
CONFIGS="tiny wiki_cache_optimized wiki_performance_tuned wiki_gpu_optimized"
STEPS=""
WARMUP=""
TORCH_DEVICE=cpu
TORCH_THREADS=$(nproc 2>/dev/null || echo 1)
OUT="$ROOT/bench/results"
PROFILE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --clformer) CLF=$2; shift 2 ;;
    --devices) DEVICES=$2; shift 2 ;;
    --configs) CONFIGS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --torch-device) TORCH_DEVICE=$2; shift 2 ;;
    --torch-threads) TORCH_THREADS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --profile) PROFILE=1; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1'; see bench/run_all.sh --help" >&2; exit 2 ;;
  esac
done
if [ ! -x "$CLF" ]; then
  echo "run_all.sh: $CLF is not an executable; build first (cmake -S . -B build && cmake --build build) or pass --clformer PATH" >&2
  exit 2
fi
command -v python3 >/dev/null || { echo "run_all.sh: python3 is needed to collect the JSON rows" >&2; exit 2; }
mkdir -p "$OUT" || exit 2
RES="$OUT/results.jsonl"
: >"$RES"
cd "$ROOT" || exit 2

# Steps per config: enough for a stable median on 2 cores without taking all day; --steps and
# --warmup override.
steps_for() {
  if [ -n "$STEPS" ]; then echo "$STEPS"; return; fi
  case "$1" in
    tiny) echo 10 ;;
    wiki_gpu_optimized) echo 3 ;;
    *) echo 5 ;;
  esac
}
warmup_for() {
  if [ -n "$WARMUP" ]; then echo "$WARMUP"; return; fi
  case "$1" in
    tiny) echo 2 ;;
    *) echo 1 ;;
  esac
}

# record ROW CMD STATUS OUTFILE: one JSON line (the result object, or why it was skipped)
record() {
  python3 - "$RES" "$1" "$2" "$3" "$4" "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" <<'PY'
import json, sys
res, row, cmd, status, outf, load = sys.argv[1:7]
text = open(outf).read() if outf else ""
entry = {"row": row, "command": cmd, "load_average_before": load}
result = None
for line in text.splitlines():
    line = line.strip()
    if line.startswith("{"):
        try:
            result = json.loads(line)
        except ValueError:
            pass
if status == "0" and result is not None:
    entry["result"] = result
else:
    why = [l for l in text.splitlines() if l.strip()]
    entry["skipped"] = why[-1] if why else "exit status %s" % status
with open(res, "a") as f:
    f.write(json.dumps(entry) + "\n")
print("  -> %s" % ("tokens/s %.1f" % result["tokens_per_s"] if "result" in entry
                     else "skipped: " + entry["skipped"]))
PY
}

echo "machine: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc) processors; $(date -u +%Y-%m-%dT%H:%MZ)"
echo "clformer: $CLF ($("$CLF" --version 2>/dev/null))"
for cfg in $CONFIGS; do
  conf="configs/$cfg.json"
  if [ ! -f "$conf" ]; then
    echo "run_all.sh: $conf not found; skipping" >&2
    continue
  fi
  st=$(steps_for "$cfg")
  wu=$(warmup_for "$cfg")
  for dev in $DEVICES; do
    label=${dev%%=*}
    spec=${dev#*=}
    cmd="$CLF bench $conf --device $spec --steps $st --warmup $wu --json"
    [ $PROFILE -eq 1 ] && cmd="$cmd --profile"
    echo "[$cfg / $label] $cmd"
    tmp=$(mktemp)
    if [ $PROFILE -eq 1 ]; then
      $cmd >"$tmp" 2>"$OUT/profile_${cfg}_${label}.txt"
    else
      $cmd >"$tmp" 2>"$tmp.err"
    fi
    rc=$?
    [ $rc -ne 0 ] && cat "$tmp.err" "$OUT/profile_${cfg}_${label}.txt" 2>/dev/null | tail -1 >>"$tmp"
    record "$cfg / $label" "$cmd" "$rc" "$tmp"
    rm -f "$tmp" "$tmp.err"
  done
  if [ -f bench/pytorch_gpt.py ]; then
    cmd="python3 bench/pytorch_gpt.py --config $conf --device $TORCH_DEVICE --threads $TORCH_THREADS --steps $st --warmup $wu --json"
    echo "[$cfg / pytorch-$TORCH_DEVICE] $cmd"
    tmp=$(mktemp)
    $cmd >"$tmp" 2>&1
    record "$cfg / pytorch-$TORCH_DEVICE" "$cmd" "$?" "$tmp"
    rm -f "$tmp"
  else
    echo "[$cfg / pytorch] skipped: bench/pytorch_gpt.py is absent"
  fi
done

# The table: tokens/s, MFU, memory, and the ratio to PyTorch of the same config.
python3 - "$RES" "$OUT/table.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
torch = {}
for r in rows:
    cfg, who = r["row"].split(" / ")
    if who.startswith("pytorch") and "result" in r:
        torch[cfg] = r["result"]["tokens_per_s"]
def mib(b):
    return "%.0f" % (b / 1048576.0)
out = ["| config | device | tokens/s | ms/step (p10-p90) | MFU | peak GFLOP/s | host MiB | device MiB (analytic) | h2d B/step | allocs/step | vs PyTorch | command |",
       "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
for r in rows:
    cfg, who = r["row"].split(" / ")
    cmd = "`%s`" % r["command"].replace("|", "\\|")
    if "result" not in r:
        out.append("| %s | %s | skipped: %s | | | | | | | | | %s |" % (cfg, who, r["skipped"].replace("|", "/"), cmd))
        continue
    x = r["result"]
    if who.startswith("pytorch"):
        out.append("| %s | %s (%s threads, torch %s) | %.0f | %.1f | | | | | | | 1.00 | %s |" % (
            cfg, who, x.get("threads", "?"), x.get("torch_version", "?"), x["tokens_per_s"],
            x["ms_per_step"], cmd))
        continue
    ratio = "%.2f" % (x["tokens_per_s"] / torch[cfg]) if cfg in torch else "n/a"
    out.append("| %s | %s | %.0f | %.1f (%.1f-%.1f) | %.1f%% | %.0f | %s | %s (%s) | %.0f | %g | %s | %s |" % (
        cfg, who, x["tokens_per_s"], x["ms_per_step"], x["ms_per_step_p10"], x["ms_per_step_p90"],
        100 * x["mfu"], x["peak_gflops"], mib(x["peak_host_bytes"]), mib(x["peak_device_bytes"]),
        mib(x["analytic_bytes"]), x["h2d_bytes_per_step"], x["allocs_per_step"], ratio, cmd))
text = "\n".join(out) + "\n"
open(sys.argv[2], "w").write(text)
print()
print(text)
PY
echo "results: $RES, table: $OUT/table.md"
