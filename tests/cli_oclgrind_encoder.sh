#!/usr/bin/env bash
# clformer test: the kernels of cl_kernels/encoder.cl (the forward, the rank of every position by
# (token, position) with its counts split over the items of a work-group and added in local
# memory, the in-order sums of the runs of equal tokens, including a run longer than one batch of
# rows, C not a multiple of 4, and tokens outside the table) under oclgrind, the OpenCL device
# simulator, with out-of-bounds access, data-race, uninitialised-value and API checking on:
#     oclgrind --data-races --uninitialized --check-api test_cl_encoder --small
# It fails if the test fails (results against the CPU backend, bit for bit) or if oclgrind reports
# anything. First it plants a bug (the barrier between staging a tile of tokens in local memory
# and comparing with it, removed from a copy of encoder.cl) and requires oclgrind to report it,
# so a silent checker cannot pass for a clean run.
# Skips (exit 0) when oclgrind or the OpenCL tests are missing, unless CF_REQUIRE_OPENCL=1.
#     bash tests/cli_oclgrind_encoder.sh <path-to-clformer> <source-dir>
set -u
clformer=$1
src=$2
bin="$(dirname "$clformer")/test_cl_encoder"
required=${CF_REQUIRE_OPENCL:-0}

skip() {
    if [ "$required" = "1" ]; then
        echo "FAIL cli_oclgrind_encoder: $1, and CF_REQUIRE_OPENCL=1"
        exit 1
    fi
    echo "SKIP cli_oclgrind_encoder: $1"
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

# 1. the planted bug: no barrier between staging a tile of tokens and reading it
mkdir "$work/kernels"
cp "$src"/cl_kernels/*.cl "$work/kernels/"
sed '/share of the tile stored before any item reads it/{n;d}' "$src/cl_kernels/encoder.cl" \
    > "$work/kernels/encoder.cl"
if cmp -s "$src/cl_kernels/encoder.cl" "$work/kernels/encoder.cl"; then
    echo "FAIL cli_oclgrind_encoder: could not plant the missing-barrier bug in encoder.cl"
    exit 1
fi
CF_KERNEL_DIR="$work/kernels" "${og[@]}" --max-errors 20 "$bin" --small >"$work/planted.out" \
    2>"$work/planted.err"
if ! grep -q "data race" "$work/planted.err"; then
    echo "FAIL cli_oclgrind_encoder: no report of the planted race in encoder.cl from oclgrind"
    head -40 "$work/planted.err"
    exit 1
fi
echo "ok   oclgrind reports the planted data race ($(grep -Ec "$pattern" "$work/planted.err") lines)"

# 2. the kernels as shipped (embedded sources)
start=$(date +%s)
"${og[@]}" "$bin" --small >"$work/out" 2>"$work/err"
rc=$?
cat "$work/out"
if [ $rc -ne 0 ]; then
    echo "FAIL cli_oclgrind_encoder: test_cl_encoder --small failed under oclgrind (exit $rc)"
    head -60 "$work/err"
    exit 1
fi
if grep -Eq "$pattern" "$work/err"; then
    echo "FAIL cli_oclgrind_encoder: oclgrind reported $(grep -Ec "$pattern" "$work/err") problems:"
    head -60 "$work/err"
    exit 1
fi
if ! grep -q "Oclgrind" "$work/out"; then
    echo "FAIL cli_oclgrind_encoder: the test did not run on the oclgrind device"
    exit 1
fi
echo "PASS cli_oclgrind_encoder: the encoder kernels ran under oclgrind with no reports" \
    "($(( $(date +%s) - start )) s)"
