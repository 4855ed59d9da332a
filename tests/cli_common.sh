# clformer test helpers shared by the tests/cli_*.sh scripts, which source it before their first
# check:   . "$(dirname "$0")/cli_common.sh"
# (not a test itself: CMakeLists.txt leaves it out of the cli_*.sh tests). A script counts its
# failures in `fail` and ends with `exit $fail`.

fail=0
# ok MESSAGE: a passed check; bad MESSAGE: a failed one (the script will exit 1)
ok() { echo "ok   - $*"; }
bad() { echo "FAIL - $*"; fail=1; }

# expect_bad NAME PATTERN OUT ARGS...: `$CLF ARGS` must fail (non-zero exit) with exactly one
# 'error:' line, that line containing PATTERN (fixed string), and without creating OUT.
expect_bad() {
  local name=$1 pat=$2 out=$3; shift 3
  local msg rc nerr
  msg=$("$CLF" "$@" 2>&1 >/dev/null); rc=$?
  nerr=$(printf '%s\n' "$msg" | grep -c '^error:')
  if [ $rc -eq 0 ]; then bad "$name: exit status 0: $msg"
  elif [ "$nerr" -ne 1 ]; then bad "$name: $nerr error lines: $msg"
  elif ! printf '%s\n' "$msg" | grep '^error:' | grep -qF -- "$pat"; then bad "$name: error lacks [$pat]: $msg"
  elif [ -e "$out" ]; then bad "$name: $out was created"
  else ok "$name: $(printf '%s\n' "$msg" | grep '^error:')"; fi
}
