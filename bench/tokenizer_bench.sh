#!/bin/bash
# clformer: tokenizer speed for BENCHMARKS.md: training a 16000-id byte-level BPE and encoding, with
# clformer and, in the same run on the same files, the Hugging Face `tokenizers` library (when the
# Python package is installed). Also checks that Hugging Face, loading clformer's tokenizer.json,
# encodes every file to the same ids as `clformer prepare` wrote.
#
#   bench/tokenizer_bench.sh [--clformer PATH] [--work DIR] [--vocab-size N] [--repeat N] [--no-install]
#
# Corpus: tools/tokenizer_corpus.sh (about 21 MB of plain text from Debian 12 packages: python3.11-doc
# reST sources, perl-doc PODs, debian-policy text, common-licenses; installed with apt-get by name
# unless --no-install, like `time` for /usr/bin/time), one document per file, valid UTF-8.
# Times are wall-clock seconds (best of --repeat runs, default 3) with the CPU seconds of that run;
# every row prints the load average before it, since the CI box is shared.
# Writes DIR/results.md (the table) and DIR/results.jsonl.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CLF="$ROOT/build/clformer"
W=/tmp/clformer-tokbench
V=16000
REPEAT=3
INSTALL=1
while [ $# -gt 0 ]; do
  case "$1" in
  --clformer) CLF=$2; shift 2 ;;
  --work) W=$2; shift 2 ;;
  --vocab-size) V=$2; shift 2 ;;
  --repeat) REPEAT=$2; shift 2 ;;
  --no-install) INSTALL=0; shift ;;
  -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
  *) echo "error: unknown option '$1'; see $0 --help" >&2; exit 2 ;;
  esac
done
[ -x "$CLF" ] || { echo "error: clformer binary '$CLF' not found; build it or pass --clformer PATH" >&2; exit 2; }
CLF=$(cd "$(dirname "$CLF")" && pwd)/$(basename "$CLF")
mkdir -p "$W"
W=$(cd "$W" && pwd)

if [ $INSTALL = 1 ] && ! command -v /usr/bin/time >/dev/null; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends time >/dev/null
fi
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time missing: apt-get install time" >&2; exit 1; }

# ---- corpus ----------------------------------------------------------------------------------
C="$W/corpus"
if [ $INSTALL = 1 ]; then
  last=$("$ROOT/tools/tokenizer_corpus.sh" "$C" | tail -1)
else
  last=$("$ROOT/tools/tokenizer_corpus.sh" "$C" --no-install | tail -1)
fi
read -r n BYTES <<<"$last"
[ -n "${BYTES:-}" ] || exit 1
PKGS="python3.11-doc perl-doc debian-policy base-files"
MB=$(awk -v b="$BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')
echo "corpus: $n files, $MB MB in $C"
if [ "$BYTES" -lt 20000000 ]; then
  echo "error: the corpus has $MB MB, under 20 MB; are $PKGS installed?" >&2
  exit 1
fi

NPROC=$(nproc)
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
load() { cut -d' ' -f1-3 /proc/loadavg; }
RES="$W/results.jsonl"
: >"$RES"
TABLE="$W/results.md"
{
  echo "Tokenizer: $MB MB corpus ($n files: $PKGS), vocab $V, $NPROC cores ($CPU)."
  echo
  echo "| tool | step | wall s (best of $REPEAT) | CPU s | MB/s | load avg before |"
  echo "|---|---|---|---|---|---|"
} >"$TABLE"

# run_best LABEL CMD...: best wall time of REPEAT runs; sets BEST_WALL BEST_CPU BEST_RSS
run_best() {
  local label=$1
  shift
  BEST_WALL=""
  for i in $(seq "$REPEAT"); do
    local l
    l=$(load)
    /usr/bin/time -f "%e %U %S %M" -o "$W/time.txt" "$@" >"$W/run.out" 2>"$W/run.err" ||
      { echo "error: $label failed: $(tail -3 "$W/run.err")" >&2; exit 1; }
    read -r wall usr sys rss <"$W/time.txt"
    local cpu
    cpu=$(awk -v u="$usr" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    echo "  $label run $i: ${wall}s wall, ${cpu}s CPU, $((rss / 1024)) MB peak RSS (load $l)"
    if [ -z "$BEST_WALL" ] || awk -v a="$wall" -v b="$BEST_WALL" 'BEGIN { exit !(a < b) }'; then
      BEST_WALL=$wall BEST_CPU=$cpu BEST_RSS=$rss BEST_LOAD=$l
    fi
  done
}

row() { # row TOOL STEP: from BEST_*
  local mbs
  mbs=$(awk -v b="$BYTES" -v t="$BEST_WALL" 'BEGIN { printf "%.1f", b / 1e6 / t }')
  echo "| $1 | $2 | $BEST_WALL | $BEST_CPU | $mbs | $BEST_LOAD |" >>"$TABLE"
  printf '{"tool": "%s", "step": "%s", "wall_s": %s, "cpu_s": %s, "mb_per_s": %s, "peak_rss_kb": %s, "corpus_bytes": %s, "vocab_size": %s, "load": "%s"}\n' \
    "$1" "$2" "$BEST_WALL" "$BEST_CPU" "$mbs" "$BEST_RSS" "$BYTES" "$V" "$BEST_LOAD" >>"$RES"
}

echo "clformer: tokenizer train --vocab-size $V"
run_best "clformer train" "$CLF" tokenizer train --vocab-size "$V" --input "$C" --out "$W/clformer.json" --quiet
row clformer "train $V"
echo "clformer: prepare (encode all files on all cores, write uint16 shards)"
run_best "clformer prepare" "$CLF" prepare --tokenizer "$W/clformer.json" --input "$C" --out "$W/shards" \
  --val-fraction 0 --quiet
row clformer "encode (prepare)"
echo "clformer: tokenizer encode of the concatenated corpus (ids printed as text)"
cat "$C"/* >"$W/all.txt"
run_best "clformer encode" "$CLF" tokenizer encode --tokenizer "$W/clformer.json" --input "$W/all.txt"
row clformer "encode (CLI, one text)"
TOKENS=$(wc -w <"$W/run.out")
echo "  $TOKENS tokens, $(awk -v b="$BYTES" -v t="$TOKENS" 'BEGIN { printf "%.2f", b / t }') bytes/token"

if python3 -c 'import tokenizers' 2>/dev/null; then
  HFV=$(python3 -c 'import tokenizers; print(tokenizers.__version__)')
  cat >"$W/hf_train.py" <<'PY'
import os, sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
corpus, vocab, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
files = sorted(os.path.join(corpus, f) for f in os.listdir(corpus))
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"], show_progress=False,
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train(files, trainer)
tok.save(out)
PY
  cat >"$W/hf_encode.py" <<'PY'
import os, sys
from tokenizers import Tokenizer
corpus, tokfile, check = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None
files = sorted(os.path.join(corpus, f) for f in os.listdir(corpus))
texts = [open(f, encoding="utf-8").read() for f in files]
tok = Tokenizer.from_file(tokfile)
enc = tok.encode_batch(texts)  # one document per file, all cores
if check:  # compare with clformer's train.bin: each file's ids then <|endoftext|>
    import struct
    data = open(check, "rb").read()
    n = struct.unpack("<Q", data[16:24])[0]
    ids = struct.unpack("<%dH" % n, data[64:64 + 2 * n])
    eot = tok.token_to_id("<|endoftext|>")
    ref = []
    for e in enc:  # prepare writes nothing for an empty file and never two <|endoftext|> in a row
        ref.extend(e.ids)
        if e.ids and e.ids[-1] != eot:
            ref.append(eot)
    same = list(ids) == ref
    print("hf ids == clformer ids: %s (%d tokens)" % (same, len(ref)), file=sys.stderr)
    sys.exit(0 if same else 3)
PY
  echo "Hugging Face tokenizers $HFV: BpeTrainer (ByteLevel, vocab $V)"
  run_best "hf train" python3 "$W/hf_train.py" "$C" "$V" "$W/hf.json"
  row "HF tokenizers $HFV" "train $V"
  echo "Hugging Face tokenizers $HFV: encode_batch of the files with clformer's tokenizer.json"
  run_best "hf encode" python3 "$W/hf_encode.py" "$C" "$W/clformer.json" "$W/shards/train.bin"
  row "HF tokenizers $HFV" "encode (encode_batch, files)"
  grep "hf ids" "$W/run.err"
  echo "(HF rows include starting Python and reading the files, about $(
    /usr/bin/time -f %e python3 -c 'import tokenizers' 2>&1 >/dev/null | tail -1)s for the import)"
else
  echo "Hugging Face tokenizers not installed (pip install tokenizers): its rows are skipped" | tee -a "$TABLE"
fi
echo
cat "$TABLE"
