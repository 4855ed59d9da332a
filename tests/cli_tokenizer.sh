#!/bin/bash
# clformer test: `clformer tokenizer` and `clformer prepare` end to end: deterministic training,
# encode/decode round trips through files and stdin, prepare into token shards, training on them with
# an exact resume, and one-line errors with a non-zero exit for bad options, bad ids, corrupt shards
# and a tokenizer other than the one the shards were made with. Needs no Python.
set -u
CLF=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1
FIX=tests/fixtures/tokenizer_corpus.txt

# expect_fail LABEL WORD CMD...: non-zero exit and a one-line error on stderr containing WORD
expect_fail() {
  local label=$1 word=$2
  shift 2
  "$@" >"$W/out" 2>"$W/err"
  local rc=$?
  if [ $rc -ne 0 ] && grep -q -- "$word" "$W/err" && [ "$(grep -c '^error' "$W/err")" -ge 1 ]; then
    ok "$label (exit $rc: $(grep '^error' "$W/err" | tail -1 | cut -c1-110))"
  else
    bad "$label: exit $rc, stderr: $(cat "$W/err")"
  fi
}

# 1. help and usage errors
$CLF tokenizer --help | grep -q "tokenizer train" && ok "tokenizer --help" || bad "tokenizer --help"
$CLF prepare --help | grep -q -- "--val-fraction" && ok "prepare --help" || bad "prepare --help"
$CLF tokenizer >/dev/null 2>&1
[ $? -eq 2 ] && ok "tokenizer without a subcommand exits 2" || bad "tokenizer without a subcommand"
expect_fail "vocab size below 257" "--vocab-size" $CLF tokenizer train --vocab-size 100 --input $FIX --out "$W/x.json"
expect_fail "unknown option" "--frob" $CLF prepare --frob
expect_fail "missing input" "$W/nothere" $CLF tokenizer train --vocab-size 300 --input "$W/nothere" --out "$W/x.json"

# 2. training is deterministic
$CLF tokenizer train --vocab-size 400 --input $FIX --out "$W/t1.json" --quiet || bad "train t1"
$CLF tokenizer train --vocab-size 400 --input $FIX --threads 1 --out "$W/t2.json" --quiet || bad "train t2"
cmp -s "$W/t1.json" "$W/t2.json" && ok "training twice (2 threads, 1 thread) writes identical files" ||
  bad "two trainings differ"
$CLF tokenizer info --tokenizer "$W/t1.json" | grep -q "vocab_size: 400" && ok "info shows vocab_size 400" ||
  bad "info"

# 3. round trips
$CLF tokenizer encode --tokenizer "$W/t1.json" --input $FIX >"$W/ids" || bad "encode fixture"
$CLF tokenizer decode --tokenizer "$W/t1.json" --input "$W/ids" >"$W/back" || bad "decode fixture"
cmp -s "$W/back" $FIX && ok "encode/decode of the fixture gives it back ($(wc -w <"$W/ids") ids)" ||
  bad "fixture round trip"
printf 'caf\xc3\xa9 \xff\xfe\xc0\xaf <|endoftext|>  tabs\t\r\n\n end\x00' >"$W/odd.bin"
$CLF tokenizer encode --tokenizer "$W/t1.json" <"$W/odd.bin" | $CLF tokenizer decode --tokenizer "$W/t1.json" >"$W/odd.back"
cmp -s "$W/odd.bin" "$W/odd.back" && ok "stdin round trip of invalid UTF-8, NUL and <|endoftext|>" ||
  bad "odd bytes round trip"
printf '' | $CLF tokenizer encode --tokenizer "$W/t1.json" >"$W/empty.ids" && [ "$(cat "$W/empty.ids")" = "" ] &&
  ok "empty input encodes to no ids" || bad "empty input"
printf '' | $CLF tokenizer decode --tokenizer "$W/t1.json" >"$W/empty.txt" && [ "$(wc -c <"$W/empty.txt")" -eq 0 ] &&
  ok "no ids decode to nothing" || bad "empty decode"
[ "$(printf 'AB' | $CLF tokenizer encode --tokenizer byte)" = "65 66" ] && ok "byte tokenizer: id = byte" ||
  bad "byte tokenizer"
eot=$(printf '<|endoftext|>' | $CLF tokenizer encode --tokenizer "$W/t1.json")
[ "$eot" = "399" ] && ok "<|endoftext|> is the last id (399)" || bad "<|endoftext|> encodes to '$eot'"
expect_fail "id out of range" "99999" sh -c "echo '1 2 99999' | $CLF tokenizer decode --tokenizer $W/t1.json"
expect_fail "not an id" "'x'" sh -c "echo '1 x 2' | $CLF tokenizer decode --tokenizer $W/t1.json"
expect_fail "missing tokenizer" "$W/none.json" $CLF tokenizer encode --tokenizer "$W/none.json" --input $FIX
printf '{"model": {"type": "BPE"' >"$W/broken.json"
expect_fail "malformed tokenizer JSON" "not valid JSON" $CLF tokenizer encode --tokenizer "$W/broken.json" --input $FIX

# 4. prepare
mkdir -p "$W/corpus/sub"
cp $FIX "$W/corpus/a.txt"
cp $FIX "$W/corpus/sub/b.txt"
$CLF prepare --tokenizer "$W/t1.json" --input "$W/corpus" --out "$W/data" --val-fraction 0.2 --blank-line-docs \
  --quiet || bad "prepare"
if [ -f "$W/data/train.bin" ] && [ -f "$W/data/val.bin" ] && [ -f "$W/data/meta.json" ] &&
  [ "$(head -c 8 "$W/data/train.bin")" = "CFTOKENS" ]; then
  ok "prepare wrote train.bin, val.bin and meta.json"
else
  bad "prepare output: $(ls "$W/data")"
fi

# 5. training on the shards resumes exactly (the data cursor is in the checkpoint)
SMALL="d_model=32 num_heads=2 num_layers=2 d_ff=80 max_length=32 batch_size=4 eval_interval=0 log_interval=1"
SMALL="$SMALL warmup_steps=2 vocab_size=400 tokenizer=$W/t1.json data=$W/data"
$CLF train configs/tiny.json $SMALL --device cpu --steps 4 --out "$W/r1" --quiet || bad "train on shards"
$CLF train configs/tiny.json $SMALL --device cpu --steps 4 --stop-after 2 --out "$W/r2" --quiet || bad "train r2a"
$CLF train configs/tiny.json $SMALL --device cpu --steps 4 --resume "$W/r2" --out "$W/r2" --quiet || bad "train r2b"
if [ -f "$W/r1/step_000004.safetensors" ] && cmp -s "$W/r1/step_000004.safetensors" "$W/r2/step_000004.safetensors"; then
  ok "training on shards: resume after 2 steps is identical to 4 uninterrupted steps"
else
  bad "training on shards: resumed run differs"
fi

# 6. bad shards and a different tokenizer are refused
cp -r "$W/data" "$W/trunc"
truncate -s -3 "$W/trunc/train.bin"
expect_fail "truncated shard" "truncated" $CLF train configs/tiny.json $SMALL data="$W/trunc" --device cpu --steps 1 \
  --out "$W/r3" --quiet
cp -r "$W/data" "$W/magic"
printf 'XXXXXXXX' | dd of="$W/magic/val.bin" conv=notrunc status=none
expect_fail "wrong magic" "magic" $CLF train configs/tiny.json $SMALL data="$W/magic" --device cpu --steps 1 \
  --out "$W/r4" --quiet
$CLF tokenizer train --vocab-size 390 --input "$W/corpus/a.txt" --out "$W/other.json" --quiet ||
  bad "train other"
expect_fail "shards of another tokenizer" "prepare --tokenizer" $CLF train configs/tiny.json $SMALL \
  tokenizer="$W/other.json" --device cpu --steps 1 --out "$W/r5" --quiet

exit $fail
