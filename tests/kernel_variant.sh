#!/bin/bash
# clformer test helper: a build variant of a kernel file, run through a copy of the kernels
# (CF_KERNEL_DIR), as the device calls run such variants. It copies <source-dir>/cl_kernels,
# applies the sed expression to <file>, requires a line matching <check> in the result (so a
# moved define fails instead of testing the default), and runs <binary> (next to clformer) with
# the remaining arguments. Passes when the binary passes; skips (77) when the binary is not built
# or skips itself.
#     bash tests/kernel_variant.sh <name> <path-to-clformer> <source-dir> <file> <sed> <check> \
#         <binary> [args...]
set -u
NAME=$1 CLF=$2 SRC=$3 FILE=$4 SED=$5 CHECK=$6 BIN=$7
shift 7
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
bin="$(dirname "$CLF")/$BIN"
if [ ! -x "$bin" ]; then
  echo "SKIP $NAME: $bin not built (this build has no OpenCL backend)"
  exit 77
fi
cp -r "$SRC/cl_kernels" "$W/k"
sed -i "$SED" "$W/k/$FILE"
if grep -q "$CHECK" "$W/k/$FILE"; then
  ok "the copy of $FILE is the variant ($CHECK)"
else
  bad "could not make the variant of $FILE (no line '$CHECK' after '$SED': the define moved?)"
  exit 1
fi
out=$(CF_KERNEL_DIR="$W/k" "$bin" "$@" 2>&1); rc=$?
if [ $rc -eq 77 ]; then
  echo "SKIP $NAME: $(printf '%s\n' "$out" | tail -1)"
  exit 77
fi
[ $rc -eq 0 ] && ok "$BIN $* passes on the variant: $(printf '%s\n' "$out" | tail -1)" \
  || bad "$BIN $* on the variant (rc $rc): $(printf '%s\n' "$out" | grep -E '^FAIL|error' | head -5)"
[ $fail -eq 0 ] && echo "PASS $NAME" || echo "FAIL $NAME"
exit $fail
