#!/bin/bash
set -u
O=/tmp/o2; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader
cmake --build build-gpu -j16 >/dev/null 2>&1
C=./build-gpu/clformer
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f' % (d['tokens_per_s'], d['final_loss']))" $1 2>/dev/null || tail -3 $1; }
for r in 1 2; do for k in auto mma; do
  CF_FLASH_KERNEL=$k timeout 50 $C bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json > $O/b124_${k}_$r.txt 2>&1; echo "124m bf16 flash=$k r$r: $(j $O/b124_${k}_$r.txt)"
done; done
