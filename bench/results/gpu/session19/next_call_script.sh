#!/bin/bash
# Written in session 19 for the next device calls (none was lent that session); this is the first,
# next_call_script_b.sh the second. flash_mma.cl now stages K, V (Q, dO in the backward) in local
# memory already rounded to the format, with transposed tiles for the operands contracted along
# keys or queries, so a B fragment register is one 32-bit read; exponentials are exp2; blocks that
# a lane's rows see whole skip the mask. This call:
#   (1) checks the new kernels on hardware (bf16, fp16, TF32);
#   (2) times attention alone and the 124M step, new against the previous kernels (flash_mma.cl
#       and cl_flash.c as they were before, through flash_before.patch on a copy), bf16 and tf32,
#       and profiles the new bf16 step;
#   (3) checks and times two variants through copies of the kernels: FM_SHFL 1 (the forward's row
#       maxima by shfl.sync) and FM_WARPS 8 (groups of 8 warps over 128 rows: half the staging and
#       barriers a row).
# Run from the repository root, carrying .device:
#   bash .device/setup.sh && bash bench/results/gpu/session19/next_call_script.sh
set -u
O=/tmp/o19; rm -rf $O; mkdir -p $O; save() { tar czf $OUT/results.tgz -C $O . 2>/dev/null; }; trap save EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
rm -rf /tmp/old && mkdir /tmp/old && tar cf - --exclude=./build-gpu --exclude=./.device . | tar xf - -C /tmp/old
(cd /tmp/old && patch -p1 < bench/results/gpu/session19/flash_before.patch) > $O/patch.txt 2>&1 || { echo "PATCH FAILED"; cat $O/patch.txt; exit 1; }
(cmake -S /tmp/old -B /tmp/old/b -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build /tmp/old/b -j8 --target clformer >/dev/null 2>>$O/err_old.txt) &
old_pid=$!
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j8 --target clformer test_cl_flash_attention >/dev/null 2>>$O/err.txt
wait $old_pid
[ -x build-gpu/clformer ] && [ -x /tmp/old/b/clformer ] || { echo "BUILD FAILED"; tail -30 $O/err*.txt; exit 1; }
el built
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1 CF_CACHE_DIR=off
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f, peak %.0f MiB' % (d['tokens_per_s'], d['final_loss'], d['peak_device_bytes']/1048576))" $1 2>/dev/null || tail -3 $1; }
# (1) the new kernels on hardware
CF_MATRIX_ENGINE=nvidia-mma-sync timeout 150 ./build-gpu/test_cl_flash_attention --kernel mma > $O/test_mma.txt 2>&1; echo "== flash mma test rc=$?: $(tail -1 $O/test_mma.txt)"; grep -E "^FAIL" $O/test_mma.txt | head
el tested; save
# (2) attention alone and the step, new against old
for p in bf16 tf32; do for v in new old; do C=./build-gpu/clformer; [ $v = old ] && C=/tmp/old/b/clformer
  timeout 60 $C bench --attention-sweep configs/gpt2_124m.json --device nvidia --precision $p --sizes 1024,4096 --batch 8 > $O/sweep_${p}_$v.txt 2>&1; echo "== sweep $p $v"; grep -E "^ *[0-9]+ " $O/sweep_${p}_$v.txt | head -4
done; done
el sweeps; save
for rp in bf16:1 tf32:1 bf16:2; do p=${rp%:*}; r=${rp#*:}; for v in new old; do C=./build-gpu/clformer; [ $v = old ] && C=/tmp/old/b/clformer
  timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision $p --steps 5 --warmup 2 --json > $O/b124_${p}_${v}_$r.txt 2>&1; echo "124m $p $v #$r: $(j $O/b124_${p}_${v}_$r.txt)"
done; done
el steps; save
timeout 60 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 2 --warmup 1 --profile > $O/prof_bf16_new.txt 2>&1; sed -n 2,14p $O/prof_bf16_new.txt; grep -E "^L0 " $O/prof_bf16_new.txt
save
# (3) the variants
rm -rf /tmp/kshfl && cp -r cl_kernels /tmp/kshfl && sed -i 's|^#define FM_SHFL 0 /\*|#define FM_SHFL 1 /*|' /tmp/kshfl/flash_mma.cl
CF_KERNEL_DIR=/tmp/kshfl CF_MATRIX_ENGINE=nvidia-mma-sync timeout 150 ./build-gpu/test_cl_flash_attention --kernel mma > $O/test_mma_shfl.txt 2>&1; echo "== flash mma FM_SHFL 1 test rc=$?: $(tail -1 $O/test_mma_shfl.txt)"
rm -rf /tmp/kw8 && cp -r cl_kernels /tmp/kw8 && sed -i 's|^#define FM_WARPS 4 /\*|#define FM_WARPS 8 /*|' /tmp/kw8/flash_mma.cl
CF_KERNEL_DIR=/tmp/kw8 CF_MATRIX_ENGINE=nvidia-mma-sync timeout 150 ./build-gpu/test_cl_flash_attention --kernel mma > $O/test_mma_w8.txt 2>&1; echo "== flash mma FM_WARPS 8 test rc=$?: $(tail -1 $O/test_mma_w8.txt)"
CF_KERNEL_DIR=/tmp/kshfl timeout 60 ./build-gpu/clformer bench --attention-sweep configs/gpt2_124m.json --device nvidia --precision bf16 --sizes 1024,4096 --batch 8 > $O/sweep_bf16_shfl.txt 2>&1; echo "== sweep bf16 FM_SHFL 1"; grep -E "^ *[0-9]+ " $O/sweep_bf16_shfl.txt | head -4
CF_KERNEL_DIR=/tmp/kw8 timeout 60 ./build-gpu/clformer bench --attention-sweep configs/gpt2_124m.json --device nvidia --precision bf16 --sizes 1024,4096 --batch 8 > $O/sweep_bf16_w8.txt 2>&1; echo "== sweep bf16 FM_WARPS 8"; grep -E "^ *[0-9]+ " $O/sweep_bf16_w8.txt | head -4
el variants
