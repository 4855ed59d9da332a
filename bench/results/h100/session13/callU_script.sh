#!/bin/bash
# session 13: the convert kernels four values a work-item (half_activations none vs all, 124M and
# wiki, bf16), and wiki_cache_optimized in bf16 and tf32 against PyTorch in the same call
set -u
O=/tmp/o; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 >/dev/null 2>$O/err.txt
[ -x build-gpu/clformer ] || { echo BUILD FAILED; exit 1; }
el built
C=./build-gpu/clformer
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1
timeout 60 ./build-gpu/test_cl_ops --small > $O/cl_ops.txt 2>&1; echo "test_cl_ops --small rc=$?: $(grep -E 'copy to' $O/cl_ops.txt | tr -s ' ' | tr '\n' '|') $(tail -1 $O/cl_ops.txt)"
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, peak %.0f MiB, mfu %.3f' % (d['tokens_per_s'], d['peak_device_bytes']/2**20, d.get('mfu',0)))" $1 2>/dev/null || tail -2 $1; }
for r in 1 2; do for h in none all; do
  f=$O/b124_bf16_${h}_$r.txt; timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json half_activations=$h > $f 2>&1; echo "124m bf16 half=$h r$r: $(j $f)"
done; done
el b124
for r in 1 2; do for h in none all; do
  f=$O/wiki_bf16_${h}_$r.txt; timeout 40 $C bench configs/wiki_cache_optimized.json --device nvidia --precision bf16 --steps 20 --warmup 5 --json half_activations=$h > $f 2>&1; echo "wiki bf16 half=$h r$r: $(j $f)"
done; done
for p in tf32 fp32; do f=$O/wiki_$p.txt; timeout 40 $C bench configs/wiki_cache_optimized.json --device nvidia --precision $p --steps 20 --warmup 5 --json > $f 2>&1; echo "wiki $p: $(j $f)"; done
el wiki
for a in "--amp bf16" "--tf32" ""; do n=fp32; [ "$a" = "--tf32" ] && n=tf32; [ "$a" = "--amp bf16" ] && n=bf16
  f=$O/twiki_$n.txt; timeout 90 python3 bench/pytorch_gpt.py --config configs/wiki_cache_optimized.json --device cuda --steps 20 --warmup 5 $a --json > $f 2>&1; python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('torch wiki', sys.argv[2], '%.0f tok/s, peak %.0f MiB' % (d['tokens_per_s'], d['peak_device_bytes']/2**20))" $f $n || tail -3 $f
done
el done
