#!/bin/bash
# clformer: peak memory and throughput of the memory settings of issue 13, for BENCHMARKS.md:
# `recompute` none / attention / block, each with the LM head in chunks of 1024 rows
# (head_chunk=1024) and unchunked (head_chunk = B*T: one (B*T, V) logits buffer). The default
# (head_chunk 0, cf_model_head_rows) takes the rows whose logits fit 256 MiB, which for
# wiki_cache_optimized is one chunk, so the rows name the chunk explicitly. Every row is its own `clformer bench` process, so its
# max RSS is that setting's alone.
#
#   bench/memory_settings.sh [CONFIG] [--clformer PATH] [--device D] [--steps N] [--warmup N]
#                            [--out DIR] [key=value ...]
#   bench/memory_settings.sh --table DIR/rows.jsonl      (the table again from saved rows)
#
# CONFIG defaults to configs/wiki_cache_optimized.json; key=value pairs go to every run (e.g.
# batch_size=4 max_length=4096). Columns: planned activation bytes (the activation table as
# bench's analytic estimate counts it: what the backward keeps, one chunk of logits), the whole
# analytic estimate, the bytes allocated through the backend (peak device), the process's max
# resident set, the median step time, tokens/s, and tokens per CPU-second of the process (tokens/s
# over the cores it kept busy: on a machine shared with other work the fairer comparison). Writes
# DIR/rows.jsonl (the bench JSON of each run) and prints a Markdown table.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CLF="$ROOT/build/clformer"
CONFIG="$ROOT/configs/wiki_cache_optimized.json"
DEVICE=cpu
STEPS=5
WARMUP=1
OUT="$ROOT/runs/memory_settings"
KEYS=""
TABLE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --clformer) CLF=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --table) TABLE=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *=*) KEYS="$KEYS $1"; shift ;;
    -*) echo "memory_settings.sh: unknown option '$1'; see --help" >&2; exit 2 ;;
    *) CONFIG=$1; shift ;;
  esac
done
status=0
if [ -n "$TABLE" ]; then
  ROWS=$TABLE
else
ROWS="$OUT/rows.jsonl"
mkdir -p "$OUT"
: > "$ROWS"
for head in chunked unchunked; do
  for rc in none attention block; do
    hk="head_chunk=1024"
    # 2^30 rows: at least B*T, so the head runs as one chunk of all the rows
    [ "$head" = unchunked ] && hk="head_chunk=1073741824"
    if ! js=$("$CLF" bench "$CONFIG" --device "$DEVICE" --steps "$STEPS" --warmup "$WARMUP" --json \
              $KEYS recompute=$rc $hk 2>"$OUT/$rc.$head.log" | tail -1) || [ -z "$js" ]; then
      echo "memory_settings.sh: recompute=$rc $hk failed:" >&2
      tail -3 "$OUT/$rc.$head.log" >&2
      status=1
      continue
    fi
    echo "$js" >> "$ROWS"
  done
done
fi
python3 - "$ROWS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
mib = lambda b: f"{b / 2**20:.1f}"
if rows:
    r = rows[0]
    print(f"{r['config']} on {r['device']}: batch {r['batch_size']} x {r['max_length']}, "
          f"{r['num_params'] / 1e6:.2f}M parameters, {r['steps']} timed steps after {r['warmup']}")
print("| recompute | LM head rows/chunk | planned activations MiB | planned total MiB | "
      "peak device MiB | max RSS MiB | ms/step | tokens/s | cores busy | tokens/CPU-s |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    cores = r.get("host_cpu_cores") or 0
    per_cpu = f"{r['tokens_per_s'] / cores:.0f}" if cores > 0 else ""
    print(f"| {r['recompute']} | {r['head_chunk_rows']} | {mib(r['analytic']['activations'])} | "
          f"{mib(r['analytic_bytes'])} | {mib(r['peak_device_bytes'])} | "
          f"{mib(r['peak_host_bytes'])} | {r['ms_per_step']:.0f} | {r['tokens_per_s']:.0f} | "
          f"{cores:.2f} | {per_cpu} |")
PY
exit $status
