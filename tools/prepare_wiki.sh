#!/bin/bash
# clformer: make the data the wiki configs (configs/wiki_*.json) train on: a text corpus from Debian
# packages (tools/tokenizer_corpus.sh), a 16000-id byte-level BPE at tokenizers/wiki16k.json, and
# token shards in data/wiki (train.bin, val.bin with 2% of the documents, meta.json).
#
#   tools/prepare_wiki.sh [--clformer PATH] [--work DIR] [--no-install] [--retrain-tokenizer]
#
# --work DIR            where the corpus is assembled (default /tmp/clformer-wiki-corpus)
# --retrain-tokenizer   train tokenizers/wiki16k.json again (by default the committed file is kept:
#                       shards and checkpoints record its hash; it was trained by this script on
#                       the corpus of Debian 12's packages, and retraining on the same packages
#                       gives the same file)
# Then: clformer train configs/wiki_cache_optimized.json
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CLF="$ROOT/build/clformer"
WORK=/tmp/clformer-wiki-corpus
NOINSTALL=""
RETRAIN=0
while [ $# -gt 0 ]; do
  case "$1" in
  --clformer) CLF=$2; shift 2 ;;
  --work) WORK=$2; shift 2 ;;
  --no-install) NOINSTALL=--no-install; shift ;;
  --retrain-tokenizer) RETRAIN=1; shift ;;
  -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
  *) echo "error: unknown option '$1'; see $0 --help" >&2; exit 2 ;;
  esac
done
[ -x "$CLF" ] || { echo "error: clformer binary '$CLF' not found; build it or pass --clformer PATH" >&2; exit 2; }
cd "$ROOT"
echo "corpus -> $WORK"
read -r n bytes <<<"$(tools/tokenizer_corpus.sh "$WORK" $NOINSTALL | tail -1)"
echo "  $n files, $bytes bytes"
mkdir -p tokenizers data/wiki
if [ $RETRAIN = 0 ] && [ -f tokenizers/wiki16k.json ]; then
  echo "tokenizer: keeping tokenizers/wiki16k.json"
else
  echo "tokenizer -> tokenizers/wiki16k.json"
  "$CLF" tokenizer train --vocab-size 16000 --input "$WORK" --out tokenizers/wiki16k.json
fi
echo "shards -> data/wiki"
"$CLF" prepare --tokenizer tokenizers/wiki16k.json --input "$WORK" --out data/wiki --val-fraction 0.02
# the shards are generated data: keep them out of git
printf '*\n!.gitignore\n' >data/wiki/.gitignore
cat data/wiki/meta.json
