#!/usr/bin/env bash
# clformer test: every OpenCL kernel under oclgrind (the OpenCL device simulator) at small sizes,
# with out-of-bounds access, data-race, uninitialised-value and API checking on:
#     oclgrind --data-races --uninitialized --check-api test_cl_ops --small
# It fails if test_cl_ops fails (results against the CPU backend) or if oclgrind reports anything,
# and if attention's default path there was not the fused kernels (oclgrind's device is a GPU).
# First it plants a bug (a missing barrier in a copy of cl_kernels/reduce.cl) and requires oclgrind
# to report it, so a silent checker cannot pass for a clean run.
# Skips (exit 0) when oclgrind or the OpenCL tests are missing, unless CF_REQUIRE_OPENCL=1.
#     bash tests/cli_oclgrind.sh <path-to-clformer> <source-dir>
set -u
clformer=$1
src=$2
bin="$(dirname "$clformer")/test_cl_ops"
required=${CF_REQUIRE_OPENCL:-0}

skip() {
    if [ "$required" = "1" ]; then
        echo "FAIL cli_oclgrind: $1, and CF_REQUIRE_OPENCL=1"
        exit 1
    fi
    echo "SKIP cli_oclgrind: $1"
    exit 0
}
command -v oclgrind >/dev/null 2>&1 || skip "oclgrind is not installed (apt-get install oclgrind)"
[ -x "$bin" ] || skip "$bin not built (this build has no OpenCL backend)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# oclgrind's simulated device has 128 MiB by default; clformer asks for 256 MiB to call it usable
og=(oclgrind --data-races --uninitialized --check-api --global-mem-size 1073741824)
# what oclgrind prints for a problem (every report names the kernel, or is a fatal/API error)
pattern='^[[:space:]]*Kernel: |OCLGRIND FATAL|Oclgrind - |data race|Invalid (read|write)|Uninitiali[sz]ed'
export CF_CACHE_DIR=off CF_TEST_OPENCL_DEVICE=oclgrind

# 1. the planted bug: reduce.cl without the barrier after the first local store
mkdir "$work/kernels"
cp "$src"/cl_kernels/*.cl "$work/kernels/"
awk 'BEGIN{done=0} /red\[lid\] = v;/ && !done {print; getline; done=1; next} {print}' \
    "$src/cl_kernels/reduce.cl" > "$work/kernels/reduce.cl"
if cmp -s "$src/cl_kernels/reduce.cl" "$work/kernels/reduce.cl"; then
    echo "FAIL cli_oclgrind: could not plant the missing-barrier bug in reduce.cl"
    exit 1
fi
CF_KERNEL_DIR="$work/kernels" "${og[@]}" "$bin" --small --only reduce >"$work/planted.out" \
    2>"$work/planted.err"
if ! grep -Eq "$pattern" "$work/planted.err"; then
    echo "FAIL cli_oclgrind: oclgrind did not report the planted data race in reduce.cl"
    head -40 "$work/planted.err"
    exit 1
fi
echo "ok   oclgrind reports the planted data race ($(grep -Ec "$pattern" "$work/planted.err") lines)"

# 2. every kernel, as shipped (embedded sources)
start=$(date +%s)
"${og[@]}" "$bin" --small >"$work/out" 2>"$work/err"
rc=$?
cat "$work/out"
if [ $rc -ne 0 ]; then
    echo "FAIL cli_oclgrind: test_cl_ops --small failed under oclgrind (exit $rc)"
    head -60 "$work/err"
    exit 1
fi
if grep -Eq "$pattern" "$work/err"; then
    echo "FAIL cli_oclgrind: oclgrind reported $(grep -Ec "$pattern" "$work/err") problems:"
    head -60 "$work/err"
    exit 1
fi
if ! grep -q "Oclgrind" "$work/out"; then
    echo "FAIL cli_oclgrind: the test did not run on the oclgrind device"
    exit 1
fi
if ! grep -q "^ok .*mode auto: forward and backward ran on the fused path" "$work/out"; then
    echo "FAIL cli_oclgrind: attention's default path under oclgrind was not the fused kernels"
    grep "attention B=" "$work/out" | head -5
    exit 1
fi
echo "PASS cli_oclgrind: every kernel ran under oclgrind with no reports ($(( $(date +%s) - start )) s)"
