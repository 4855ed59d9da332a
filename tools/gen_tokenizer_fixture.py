#!/usr/bin/env python3
"""clformer: write tests/fixtures/tokenizer_corpus.txt, the small fixed corpus of the tokenizer tests.

Synthetic text from a fixed seed: sentences over a small word list (so merges have frequent pairs to
learn), contractions, numbers, punctuation runs, indentation, blank-line separated paragraphs, and
some non-ASCII words. Rerunning the script reproduces the file byte for byte.
"""
import random
import sys

WORDS = ("the a of and to in is was for on that with as by it at from this be are an or which "
         "model token tokens training data text corpus merge merges byte bytes pair pairs count "
         "vocabulary layer layers attention weight weights gradient step steps learning rate value "
         "values shard shards file files word words number numbers sequence window windows batch "
         "encode decode split train validation epoch seed checkpoint device kernel memory").split()
UNICODE = ["café", "naïve", "Straße", "Ångström", "東京", "данные", "λόγος", "مرحبا", "😀", "→", "½"]
CONTRACTIONS = ["it's", "don't", "we're", "they've", "I'm", "you'll", "he'd", "can't", "O'Neil"]


def sentence(rng):
    n = rng.randint(4, 16)
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.06:
            w = rng.choice(CONTRACTIONS)
        elif r < 0.10:
            w = str(rng.randint(0, 100000))
        elif r < 0.13:
            w = rng.choice(UNICODE)
        else:
            w = rng.choice(WORDS)
        if i == 0:
            w = w[:1].upper() + w[1:]
        out.append(w)
        if rng.random() < 0.08:
            out[-1] += rng.choice([",", ";", ":", " -", " ("])
    return " ".join(out) + rng.choice([".", ".", ".", "!", "?", "...", "?!"])


def main():
    rng = random.Random(20240601)
    paras = []
    while sum(len(p) for p in paras) < 40000:
        k = rng.randint(1, 6)
        lines = []
        for _ in range(k):
            indent = "    " * rng.choice([0, 0, 0, 1, 2])
            lines.append(indent + " ".join(sentence(rng) for _ in range(rng.randint(1, 3))))
        if rng.random() < 0.1:
            lines.append("\t" + "=" * rng.randint(3, 70) + "  \t  ")
        paras.append("\n".join(lines))
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tokenizer_corpus.txt"
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\n".join(paras) + "\n")


if __name__ == "__main__":
    main()
