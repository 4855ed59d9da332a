#!/bin/bash
# clformer test: the default run (configs/tiny.json on the shipped corpus, CPU backend) brings the
# validation loss well below the unigram entropy of the data (at least 25% below), and generation
# from the result works.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$SRC" || exit 1
$CLF train configs/tiny.json --device cpu --out "$W/run" 2> "$W/log" || { cat "$W/log"; exit 1; }
cat "$W/log"
unigram=$(grep -oE 'unigram entropy of the training data: [0-9.]+' "$W/log" | grep -oE '[0-9.]+$')
val=$(grep -oE 'val loss [0-9.]+' "$W/log" | tail -1 | grep -oE '[0-9.]+$')
echo "unigram entropy $unigram nats/token, final val loss $val"
[ -n "$unigram" ] && [ -n "$val" ] || { echo "FAIL: could not read the losses"; exit 1; }
awk -v u="$unigram" -v v="$val" 'BEGIN { exit !(v < 0.75 * u) }' || { echo "FAIL: val loss $val is not 25% below the unigram level $unigram"; exit 1; }
out=$($CLF generate "$W/run" --prompt "The " --tokens 100 --seed 3 2>/dev/null)
echo "sample: $out"
[ ${#out} -ge 50 ] || { echo "FAIL: generate printed too little"; exit 1; }
echo "ok"
