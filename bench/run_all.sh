#!/bin/bash
# clformer: run the rows of BENCHMARKS.md: each config on each clformer device, and the PyTorch
# baseline (bench/pytorch_gpt.py) on the same model in the same invocation, so the comparison is a
# ratio measured under the same conditions. Every row records its exact command.
#
#   bench/run_all.sh [--clformer PATH] [--devices "LABEL=SPEC ..."] [--configs "NAME ..."]
#                    [--steps N] [--warmup N] [--torch-device cpu|cuda] [--torch-threads N]
#                    [--out DIR] [--profile] [--rounds N] [--append] [--table-only] [--no-torch]
#                    [--set "KEY=VALUE ..."]
#
# Defaults (this repository's 2-core CI box): devices "cpu=cpu pocl=pocl", configs tiny,
# wiki_cache_optimized, wiki_performance_tuned, wiki_gpu_optimized, PyTorch on the CPU with as
# many threads as processors. On an NVIDIA machine:
#   bench/run_all.sh --devices "nvidia=nvidia" --torch-device cuda
# DIR defaults to runs/bench. Writes DIR/results.jsonl (one object per row: row, command, load average, result) and
# DIR/table.md (the Markdown table for BENCHMARKS.md), and prints the table. With --profile the
# clformer rows also write their per-op profile tables to DIR/profile_<config>_<device>.txt.
# Rows whose tool is missing (no torch, no OpenCL device) are reported as skipped, with why.
# --rounds N runs every row of a config N times, alternating clformer and PyTorch, and the table
# keeps each row's fastest round (the least disturbed on a machine shared with other work); all
# rounds stay in results.jsonl. --append adds to an existing DIR/results.jsonl (rows run with
# different --steps, say) and --table-only rebuilds DIR/table.md from it without running anything;
# --no-torch leaves out the PyTorch rows (when an earlier --append run of the same DIR has them).
# --set overrides config keys in every row (clformer: KEY=VALUE, PyTorch: --set KEY=VALUE); the
# rows are then named "config[KEY=VALUE ...]".
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
OUT="$ROOT/runs/bench"
PROFILE=0
ROUNDS=1
APPEND=0
TABLE_ONLY=0
TORCH=1
SETS=""
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
    --rounds) ROUNDS=$2; shift 2 ;;
    --append) APPEND=1; shift ;;
    --no-torch) TORCH=0; shift ;;
    --set) SETS=$2; shift 2 ;;
    --table-only) TABLE_ONLY=1; APPEND=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1'; see bench/run_all.sh --help" >&2; exit 2 ;;
  esac
done
if [ $TABLE_ONLY -eq 0 ] && [ ! -x "$CLF" ]; then
  echo "run_all.sh: $CLF is not an executable; build first (cmake -S . -B build && cmake --build build) or pass --clformer PATH" >&2
  exit 2
fi
command -v python3 >/dev/null || { echo "run_all.sh: python3 is needed to collect the JSON rows" >&2; exit 2; }
mkdir -p "$OUT" || exit 2
RES="$OUT/results.jsonl"
[ $APPEND -eq 1 ] || : >"$RES"
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

# run_row ROW ERRFILE CMD...: runs the command, keeps its JSON object (or why it was skipped) as one
# line of results.jsonl with the command, the load average before it, and the CPU time the whole
# run used per second of wall time (how much of a shared machine it got).
run_row() {
  local row=$1 errf=$2 round=$3
  shift 3
  python3 - "$RES" "$row" "$errf" "$round" "$@" <<'PY'
import json, os, resource, shlex, subprocess, sys, time
res, row, errf, rnd, cmd = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.time()
p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
wall = time.time() - t0
r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
if errf:
    open(errf, "a" if rnd > 1 else "w").write(p.stderr)
# the environment that changes these numbers (thread counts, OpenMP waiting, GEMM path)
env = {k: v for k, v in os.environ.items()
       if k.startswith(("OMP_", "GOMP_", "OPENBLAS_", "MKL_", "CF_", "CLFORMER_", "POCL_"))}
entry = {"row": row, "round": rnd, "command": " ".join(shlex.quote(c) for c in cmd), "env": env,
         "load_average_before": " ".join(load), "wall_s": round(wall, 2),
         "cpu_cores_busy": round(cpu / wall, 2) if wall > 0 else None}
result = None
for line in p.stdout.splitlines():
    line = line.strip()
    if line.startswith("{"):
        try:
            result = json.loads(line)
        except ValueError:
            pass
if p.returncode == 0 and result is not None:
    entry["result"] = result
else:
    why = [l for l in (p.stdout + "\n" + p.stderr).splitlines() if l.strip()]
    # the first error names the cause; later lines are its consequences
    errs = [l for l in why if l.startswith("error")]
    entry["skipped"] = errs[0] if errs else why[-1] if why else "exit status %d" % p.returncode
with open(res, "a") as f:
    f.write(json.dumps(entry) + "\n")
print("  -> %s (%.0f s, %.2f cores busy)" % (
    "tokens/s %.1f" % result["tokens_per_s"] if "result" in entry else "skipped: " + entry["skipped"],
    wall, entry["cpu_cores_busy"] or 0))
PY
}

[ $TABLE_ONLY -eq 1 ] && CONFIGS=""
if [ $TABLE_ONLY -eq 0 ]; then
  echo "machine: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc) processors; $(date -u +%Y-%m-%dT%H:%MZ)"
  { date -u +%Y-%m-%dT%H:%MZ; lscpu 2>/dev/null | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|L2|L3)'
    free -h 2>/dev/null | sed -n 2p; uname -sr; "$CLF" devices 2>&1
    python3 -c 'import torch; print("torch", torch.__version__, "threads", torch.get_num_threads())' 2>&1 | tail -1
  } >>"$OUT/machine.txt"
fi
[ $TABLE_ONLY -eq 0 ] && echo "clformer: $CLF ($("$CLF" --version 2>/dev/null))"
for cfg in $CONFIGS; do
  conf="configs/$cfg.json"
  if [ ! -f "$conf" ]; then
    echo "run_all.sh: $conf not found; skipping" >&2
    continue
  fi
  name=$cfg
  torch_sets=()
  if [ -n "$SETS" ]; then
    name="$cfg[$SETS]"
    for kv in $SETS; do torch_sets+=(--set "$kv"); done
  fi
  st=$(steps_for "$cfg")
  wu=$(warmup_for "$cfg")
  for round in $(seq 1 "$ROUNDS"); do
    for dev in $DEVICES; do
      label=${dev%%=*}
      spec=${dev#*=}
      cmd=("$CLF" bench "$conf" --device "$spec" --steps "$st" --warmup "$wu" --json $SETS)
      errf=""
      if [ $PROFILE -eq 1 ]; then
        cmd+=(--profile)
        errf="$OUT/profile_${cfg}_${label}.txt"
      fi
      echo "[$name / $label, round $round] ${cmd[*]}"
      run_row "$name / $label" "$errf" "$round" "${cmd[@]}"
    done
    if [ $TORCH -eq 0 ]; then
      :
    elif [ -f bench/pytorch_gpt.py ]; then
      cmd=(python3 bench/pytorch_gpt.py --config "$conf" --device "$TORCH_DEVICE" --threads "$TORCH_THREADS" --steps "$st" --warmup "$wu" --json "${torch_sets[@]}")
      echo "[$name / pytorch-$TORCH_DEVICE, round $round] ${cmd[*]}"
      run_row "$name / pytorch-$TORCH_DEVICE" "" "$round" "${cmd[@]}"
    else
      echo "[$cfg / pytorch] skipped: bench/pytorch_gpt.py is absent"
    fi
  done
done

# The table: tokens/s, MFU, memory, and the ratio to PyTorch of the same config.
python3 - "$RES" "$OUT/table.md" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
# one line per row: its fastest round (or, when every round was skipped, the last)
best, order = {}, []
for r in runs:
    k = r["row"]
    if k not in best:
        order.append(k)
        best[k] = r
    elif "result" in r and ("result" not in best[k] or
                            r["result"]["tokens_per_s"] > best[k]["result"]["tokens_per_s"]):
        best[k] = r
rounds = max(r.get("round", 1) for r in runs) if runs else 1
rows = [best[k] for k in order]
nrounds = {k: sum(1 for r in runs if r["row"] == k) for k in order}
torch = {}
for r in rows:
    cfg, who = r["row"].split(" / ")
    if who.startswith("pytorch") and "result" in r:
        torch[cfg] = r["result"]["tokens_per_s"]
def mib(b):
    return "%.0f" % (b / 1048576.0)
out = ["| config | device | tokens/s | ms/step (p10-p90) | MFU | peak GFLOP/s | host MiB | device MiB (analytic) | h2d B/step | allocs/step | cores busy | vs PyTorch | command |",
       "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
for r in rows:
    cfg, who = r["row"].split(" / ")
    if nrounds[r["row"]] > 1:
        who += " (best of %d)" % nrounds[r["row"]]
    envs = " ".join("%s=%s" % kv for kv in sorted(r.get("env", {}).items()))
    cmd = "`%s`" % ((envs + " " if envs else "") + r["command"]).replace("|", "\\|")
    if "result" not in r:
        out.append("| %s | %s | skipped: %s | | | | | | | | | | %s |" % (cfg, who, r["skipped"].replace("|", "/"), cmd))
        continue
    x = r["result"]
    if who.startswith("pytorch"):
        out.append("| %s | %s (%s threads, torch %s) | %.0f | %.1f | | | | | | | %s | 1.00 | %s |" % (
            cfg, who, x.get("threads", "?"), x.get("torch_version", "?"), x["tokens_per_s"],
            x["ms_per_step"], r.get("cpu_cores_busy"), cmd))
        continue
    ratio = "%.2f" % (x["tokens_per_s"] / torch[cfg]) if cfg in torch else "n/a"
    out.append("| %s | %s | %.0f | %.1f (%.1f-%.1f) | %.1f%% | %.0f | %s | %s (%s) | %.0f | %g | %s | %s | %s |" % (
        cfg, who, x["tokens_per_s"], x["ms_per_step"], x["ms_per_step_p10"], x["ms_per_step_p90"],
        100 * x["mfu"], x["peak_gflops"], mib(x["peak_host_bytes"]), mib(x["peak_device_bytes"]),
        mib(x["analytic_bytes"]), x["h2d_bytes_per_step"], x["allocs_per_step"],
        r.get("cpu_cores_busy"), ratio, cmd))
if rounds > 1:
    out.append("")
    out.append("\"best of N\": the fastest of N rounds run alternately with the other rows of the "
               "config (every round: results.jsonl).")
text = "\n".join(out) + "\n"
open(sys.argv[2], "w").write(text)
print()
print(text)
PY
echo "results: $RES, table: $OUT/table.md"
