# Session 19, second call (same warm H100 as callA, right after it): 124M bf16 with the FM_SHFL 1 and
# FM_WARPS 8 variants against the default (before and after), and gh_gemm's GH_DIAG builds
# (0 = the default) on the 124M shapes. As run (one command line, split here):
bash .device/setup.sh >/dev/null 2>&1; export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1 CF_CACHE_DIR=off
cmake --build build-gpu -j16 --target clformer test_cl_gemm_fast >/dev/null 2>&1
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f' % (d['tokens_per_s'], d['final_loss']))" $1 2>/dev/null || tail -3 $1; }
mkdir -p $OUT/r; rm -rf /tmp/kshfl /tmp/kw8; cp -r cl_kernels /tmp/kshfl; sed -i 's|^#define FM_SHFL 0 /\*|#define FM_SHFL 1 /*|' /tmp/kshfl/flash_mma.cl
cp -r cl_kernels /tmp/kw8; sed -i 's|^#define FM_WARPS 4 /\*|#define FM_WARPS 8 /*|' /tmp/kw8/flash_mma.cl
for v in base shfl w8 base; do kd=; [ $v = shfl ] && kd=/tmp/kshfl; [ $v = w8 ] && kd=/tmp/kw8; CF_KERNEL_DIR=$kd timeout 60 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json > $OUT/r/b_$v.txt 2>&1; echo "124m bf16 $v: $(j $OUT/r/b_$v.txt)"; done
for d in 0 1 2 3; do rm -rf /tmp/kd$d; cp -r cl_kernels /tmp/kd$d; sed -i "s|^#define GH_DIAG 0 /\*|#define GH_DIAG $d /*|" /tmp/kd$d/gemm_half.cl; CF_KERNEL_DIR=/tmp/kd$d timeout 60 ./build-gpu/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant 12 --min-time 0.01 > $OUT/r/gb_diag$d.txt 2>&1; echo "diag $d: $(grep -E 'GEMMs of one' $OUT/r/gb_diag$d.txt | cut -c1-110)"; done
# output:
# 124m bf16 base: 113621 tok/s, loss 10.83569
# 124m bf16 shfl: 113513 tok/s, loss 10.83569
# 124m bf16 w8: 114712 tok/s, loss 10.83569
# 124m bf16 base: 113540 tok/s, loss 10.83569
# diag 0: GEMMs of one training step (12 layers + head x 7), ms: ... default 42.89
# diag 1: ... default 29.99
# diag 2: ... default 27.51
# diag 3: ... default 29.64
