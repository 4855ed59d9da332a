#!/usr/bin/env bash
# clformer test helper (not a test itself): run one OpenCL test program under oclgrind, the OpenCL
# device simulator, with out-of-bounds access, data-race, uninitialised-value and API checking on,
# after checking that oclgrind reports a planted bug: a barrier removed from a copy of one kernel
# file (the line after the one matching MARKER), run with the test's PLANTED arguments. Fails if
# the planted race goes unreported, if the test fails (its own results against the CPU backend) or
# if oclgrind reports anything in the shipped kernels. Skips (exit 77, which ctest reports as
# skipped) when oclgrind or the test program is missing, unless CF_REQUIRE_OPENCL=1. Called by
# tests/cli_oclgrind*.sh as
#     bash tests/oclgrind_kernels.sh NAME TEST_PROGRAM KERNEL_FILE MARKER PLANTED_ARGS WHAT \
#         <path-to-clformer> <source-dir> [REQUIRED_LINE [CLEAN_ARGS [KERNEL_FILE2 MARKER2 \
#         PLANTED_ARGS2 [KERNEL_FILE3 MARKER3 PLANTED_ARGS3 ...]]]]
# PLANTED_ARGS are split at spaces; REQUIRED_LINE, when given (may be empty), is a regular
# expression some line of the shipped run's output must match; CLEAN_ARGS (split at spaces,
# default --small) are the shipped run's arguments; each further KERNEL_FILE MARKER PLANTED_ARGS
# triple plants another bug (the line after MARKER deleted: a barrier, or a bounds clamp) that
# must be reported too.
set -u
name=$1 prog=$2 kfile=$3 marker=$4 planted_args=$5 what=$6 clformer=$7 src=$8 required_line=${9:-} clean_args=${10:---small}
bin="$(dirname "$clformer")/$prog"
required=${CF_REQUIRE_OPENCL:-0}

skip() {
    if [ "$required" = "1" ]; then
        echo "FAIL $name: $1, and CF_REQUIRE_OPENCL=1"
        exit 1
    fi
    echo "SKIP $name: $1"
    exit 77
}
command -v oclgrind >/dev/null 2>&1 || skip "oclgrind is not installed (apt-get install oclgrind)"
[ -x "$bin" ] || skip "$bin not built (this build has no OpenCL backend)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# oclgrind's simulated device has 128 MiB by default; clformer asks for 256 MiB to call it usable
# (CF_OCLGRIND_LOCAL_MEM: a larger local memory, for kernels that use NVIDIA's 48 KiB)
og=(oclgrind --data-races --uninitialized --check-api --global-mem-size 1073741824)
[ -n "${CF_OCLGRIND_LOCAL_MEM:-}" ] && og+=(--local-mem-size "$CF_OCLGRIND_LOCAL_MEM")
# what oclgrind prints for a problem (every report names the kernel, or is a fatal/API error)
pattern='^[[:space:]]*Kernel: |OCLGRIND FATAL|Oclgrind - |data race|Invalid (read|write)|Uninitiali[sz]ed'
export CF_CACHE_DIR=off CF_TEST_OPENCL_DEVICE=oclgrind

# 1. the planted bug: the line after MARKER removed (KFILE MARKER ARGS), a barrier unless told
plant() {
    rm -rf "$work/kernels"
    mkdir "$work/kernels"
    cp "$src"/cl_kernels/*.cl "$work/kernels/"
    sed "/$2/{n;d}" "$src/cl_kernels/$1" > "$work/kernels/$1"
    if cmp -s "$src/cl_kernels/$1" "$work/kernels/$1"; then
        echo "FAIL $name: could not plant the bug (the line after '$2') in $1"
        exit 1
    fi
    CF_KERNEL_DIR="$work/kernels" "${og[@]}" --max-errors 20 "$bin" $3 \
        >"$work/planted.out" 2>"$work/planted.err"
    if ! grep -Eq "$pattern" "$work/planted.err"; then
        echo "FAIL $name: oclgrind did not report the planted bug (the line after '$2') in $1"
        head -40 "$work/planted.err"
        exit 1
    fi
    echo "ok   oclgrind reports the planted bug (the line after '$2') in $1 ($(grep -Ec "$pattern" "$work/planted.err") lines)"
}
plant "$kfile" "$marker" "$planted_args"
shift 10 2>/dev/null || shift $#
while [ $# -ge 3 ]; do
    plant "$1" "$2" "$3"
    shift 3
done

# 2. the kernels as shipped (embedded sources)
start=$(date +%s)
"${og[@]}" "$bin" $clean_args >"$work/out" 2>"$work/err"
rc=$?
cat "$work/out"
if [ $rc -ne 0 ]; then
    echo "FAIL $name: $prog $clean_args failed under oclgrind (exit $rc)"
    head -60 "$work/err"
    exit 1
fi
if grep -Eq "$pattern" "$work/err"; then
    echo "FAIL $name: oclgrind reported $(grep -Ec "$pattern" "$work/err") problems:"
    head -60 "$work/err"
    exit 1
fi
if ! grep -q "Oclgrind" "$work/out"; then
    echo "FAIL $name: the test did not run on the oclgrind device"
    exit 1
fi
if [ -n "$required_line" ] && ! grep -Eq "$required_line" "$work/out"; then
    echo "FAIL $name: no line of the output matches '$required_line'"
    exit 1
fi
echo "PASS $name: $what ran under oclgrind with no reports ($(( $(date +%s) - start )) s)"
