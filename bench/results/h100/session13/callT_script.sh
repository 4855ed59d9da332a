#!/bin/bash
# session 13: activations stored half (bf16 half_activations none vs all) on 124M and wiki, speed
# and peak memory; shifted packed tiles (tests, 124M bf16); test_half_acts on the GPU; 500-step
# precision curves with half storage; fp32 and bf16 against PyTorch in the same call
set -u
O=/tmp/o; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
git log --oneline -1 2>/dev/null
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 >/dev/null 2>$O/err.txt
[ -x build-gpu/clformer ] || { echo BUILD FAILED; exit 1; }
el built
C=./build-gpu/clformer; T=./build-gpu/test_cl_gemm_fast
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1
e=nvidia-mma-sync-packed-tiles
CF_MATRIX_ENGINE=$e timeout 170 $T --prec bf16 > $O/g_bf16.txt 2>&1 & p1=$!
CF_MATRIX_ENGINE=$e timeout 170 $T --tf32 > $O/g_tf32.txt 2>&1 & p2=$!
timeout 170 ./build-gpu/test_half_acts > $O/half_acts.txt 2>&1 & p3=$!
if [ -f data/wiki/train.bin ]; then
  CLF=$C timeout 200 bash bench/precision_curves.sh nvidia $O/curves 500 50 > $O/curves.txt 2>&1 & p4=$!
else echo "no data/wiki shards"; p4=""; fi
wait $p1; echo "packed bf16 tests rc=$?: $(tail -1 $O/g_bf16.txt)"
wait $p2; echo "packed tf32 tests rc=$?: $(tail -1 $O/g_tf32.txt)"
wait $p3; echo "test_half_acts rc=$?: $(tail -1 $O/half_acts.txt)"
[ -n "$p4" ] && { wait $p4; echo "curves rc=$?"; cat $O/curves.txt; }
el tests
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, peak %.0f MiB, acts %.0f MiB, mfu %.3f, loss %.4f' % (d['tokens_per_s'], d['peak_device_bytes']/2**20, d['analytic']['activations']/2**20, d.get('mfu',0), d['final_loss']))" $1 2>/dev/null || tail -2 $1; }
for r in 1 2; do for h in none all; do
  f=$O/b124_bf16_${h}_$r.txt; timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json half_activations=$h > $f 2>&1; echo "124m bf16 half=$h r$r: $(j $f)"
done; done
f=$O/b124_bf16_all_packed.txt; CF_MATRIX_ENGINE=$e timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json > $f 2>&1; echo "124m bf16 all packed: $(j $f)"
f=$O/b124_fp32.txt; timeout 60 $C bench configs/gpt2_124m.json --device nvidia --steps 5 --warmup 2 --json > $f 2>&1; echo "124m fp32: $(j $f)"
el b124
for h in none all; do f=$O/wiki_bf16_$h.txt; timeout 40 $C bench configs/wiki_cache_optimized.json --device nvidia --precision bf16 --steps 20 --warmup 5 --json half_activations=$h > $f 2>&1; echo "wiki bf16 half=$h: $(j $f)"; done
el wiki
for a in "" "--amp bf16"; do n=fp32; [ -n "$a" ] && n=bf16
  f=$O/t124_$n.txt; timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 $a --json > $f 2>&1; python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('torch', sys.argv[2], '%.0f tok/s, peak %.0f MiB' % (d['tokens_per_s'], d['peak_device_bytes']/2**20))" $f $n || tail -3 $f
done
el done
