#!/bin/bash
# clformer: build a plain-text corpus (about 21 MB of English prose and technical writing) from
# Debian 12 packages, for the tokenizer benchmark and the wiki training data.
#
#   tools/tokenizer_corpus.sh OUTDIR [--no-install]
#
# Sources, installed with apt-get by name unless --no-install (root, or sudo):
#   python3.11-doc  /usr/share/doc/python3.11/html/_sources/**/*.txt  (reStructuredText sources)
#   perl-doc        /usr/share/perl/5.*/pod/*.pod                    (Perl's manual, POD)
#   debian-policy   /usr/share/doc/debian-policy/*.txt.gz            (decompressed)
#   base-files      /usr/share/common-licenses/*                     (licence texts)
# Each source file becomes OUTDIR/NNNNNN_<name> (one document per file, in sorted path order), with
# bytes that are not UTF-8 dropped so that tools reading str (Hugging Face tokenizers) take it too.
# OUTDIR is emptied first. Prints "<files> <bytes>" on the last line.
set -u
OUT=${1:-}
INSTALL=1
[ "${2:-}" = "--no-install" ] && INSTALL=0
if [ -z "$OUT" ] || [ "$OUT" = "-h" ] || [ "$OUT" = "--help" ]; then
  sed -n '2,15p' "$0"
  exit 2
fi
PKGS="python3.11-doc perl-doc debian-policy"
if [ $INSTALL = 1 ]; then
  missing=""
  for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "installing:$missing" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >/dev/null ||
      { echo "error: apt-get install$missing failed; install them by hand or pass --no-install" >&2; exit 1; }
  fi
fi
rm -rf "$OUT"
mkdir -p "$OUT" || exit 1
n=0
while IFS= read -r f; do
  out=$(printf '%s/%06d_%s' "$OUT" "$n" "$(basename "${f%.gz}")")
  if [ "${f%.gz}" != "$f" ]; then zcat "$f"; else cat "$f"; fi | iconv -f utf-8 -t utf-8 -c >"$out"
  n=$((n + 1))
done < <(
  { find /usr/share/doc/python3.11/html/_sources -name '*.txt' 2>/dev/null
    find /usr/share/perl/ -path '*/pod/*.pod' 2>/dev/null
    find /usr/share/doc/debian-policy -name '*.txt.gz' 2>/dev/null
    find /usr/share/common-licenses -type f 2>/dev/null; } | LC_ALL=C sort)
bytes=$(cat "$OUT"/* 2>/dev/null | wc -c)
if [ "$n" -eq 0 ]; then
  echo "error: no source files found; install $PKGS (or run without --no-install)" >&2
  exit 1
fi
echo "$n $bytes"
