#!/usr/bin/env python3
"""clformer: check that Hugging Face `tokenizers` and `transformers` load a clformer tokenizer.json and
encode text to the same ids as `clformer tokenizer encode` (and decode them back to the same text).

Usage:
  python3 tools/check_tokenizer_hf.py --clformer build/clformer --tokenizer tok.json [FILE ...]

Besides the given files (each compared as one text), it compares a built-in set of hard cases:
contractions, whitespace runs of every kind, digits, punctuation, the <|endoftext|> token written in
the text, and random strings drawn from every Unicode plane (letters, numbers, marks, spaces).
Exit status 0 when every text matches, 1 otherwise. Needs `pip install tokenizers transformers`.
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile


def hard_cases():
    cases = [
        "",
        "Hello world",
        "Hello  world   and\tthe\nnext\n\n\nline   ",
        "I'm can't won't they're we've he'll she'd it's I'M 'S 's 'sam O'Neil ''s '",
        "numbers 1234567890 3.14159 1e-9 0x1F 100,000 ٣٤٥ ⅧⅫ ² ½",
        "punct!!! ??? ... --- *** (a) [b] {c} <d> @e #f $g %h ^i &j _k |l ~m `n",
        "  leading spaces and trailing spaces   ",
        "\u00a0nbsp\u00a0run\u2003em\u3000ideographic\u2028line\u2029para\u0085nel",
        "tabs\t\t\tand\r\nCRLF\r\n\r\nlines",
        "<|endoftext|>",
        "before<|endoftext|>after <|endoftext|> spaced<|endoftext|><|endoftext|>",
        "<|endoftext|",
        "émigré naïve coöperate façade Ångström Straße",
        "Ελληνικά Русский текст العربية עברית हिन्दी ไทย 中文字符 日本語のテキスト 한국어",
        "emoji 😀😃😄 👩‍👩‍👧 🇩🇪 ✨ and symbols ∑∫√∞ ≠ ≤ ≥ → ⇒",
        "combining e\u0301 a\u0308 n\u0303 zero\u200bwidth joiner\u200d",
        "mixed123abc abc123 123abc 12 34 56",
        "A" * 300 + " " + "=" * 500 + " " + " " * 200 + "x",
        "a" * 2000,
        "\n" * 50 + "end",
        " " * 7 + "\t" + " " * 3 + "word",
    ]
    rng = random.Random(1234)
    # random strings over all assigned-ish code points (no surrogates), biased towards ASCII
    pools = [
        (0x20, 0x7E), (0x09, 0x0D), (0xA0, 0x2FF), (0x370, 0x52F), (0x590, 0x6FF), (0x900, 0xDFF),
        (0x1E00, 0x1FFF), (0x2000, 0x206F), (0x2070, 0x2BFF), (0x3000, 0x30FF), (0x4E00, 0x4FFF),
        (0xAC00, 0xAD00), (0xE000, 0xE0FF), (0xFB00, 0xFFFD), (0x10000, 0x1047F), (0x1D400, 0x1D7FF),
        (0x1F300, 0x1FAFF), (0x20000, 0x2004F), (0xE0000, 0xE007F), (0x100000, 0x10004F),
    ]
    for _ in range(300):
        n = rng.randint(1, 80)
        s = []
        for _ in range(n):
            if rng.random() < 0.5:
                s.append(rng.choice("abc XYZ 019 '.,!?\n\t  'sllve"))
            else:
                a, b = rng.choice(pools)
                s.append(chr(rng.randint(a, b)))
        cases.append("".join(s))
    # every code point, in runs, so each class boundary is exercised once
    allcp = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for i in range(0, len(allcp), 4096):
        cases.append("x " + "".join(allcp[i:i + 4096]) + " y")
    return cases


def clformer_encode(binary, tokenizer, data):
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(data)
        path = f.name
    try:
        out = subprocess.run([binary, "tokenizer", "encode", "--tokenizer", tokenizer, "--input", path],
                             check=True, capture_output=True).stdout
    finally:
        os.unlink(path)
    return [int(x) for x in out.split()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clformer", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()

    import tokenizers
    import transformers
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    hf = Tokenizer.from_file(args.tokenizer)
    tf = PreTrainedTokenizerFast(tokenizer_file=args.tokenizer)
    print("tokenizers %s, transformers %s; vocab %d" %
          (tokenizers.__version__, transformers.__version__, hf.get_vocab_size()))

    texts = [("case %d" % i, t) for i, t in enumerate(hard_cases())]
    for p in args.files:
        with open(p, "rb") as f:
            raw = f.read()
        try:
            texts.append((p, raw.decode("utf-8")))
        except UnicodeDecodeError:
            print("skip %s: not valid UTF-8 (Hugging Face encodes str only)" % p)

    # the hard cases go through clformer in one file each; to keep this quick they are packed into
    # a single call separated by <|endoftext|>, which both sides split out on its own
    eot = "<|endoftext|>"
    packable = [t for name, t in texts if name.startswith("case") and eot not in t]
    packed = eot.join(packable)
    ids_packed = clformer_encode(args.clformer, args.tokenizer, packed.encode("utf-8"))
    eot_id = hf.token_to_id(eot)
    pieces, cur = [], []
    for i in ids_packed:
        if i == eot_id:
            pieces.append(cur)
            cur = []
        else:
            cur.append(i)
    pieces.append(cur)
    if len(pieces) != len(packable):
        print("FAIL: packed encode gave %d pieces for %d texts" % (len(pieces), len(packable)))
        return 1
    mine = dict(zip(packable, pieces))

    failures = 0
    total_ids = 0
    for name, text in texts:
        if text in mine:
            ours = mine[text]
        else:
            ours = clformer_encode(args.clformer, args.tokenizer, text.encode("utf-8"))
        ref = hf.encode(text).ids
        ref_tf = tf.encode(text, add_special_tokens=False)
        total_ids += len(ref)
        ok = ours == ref == ref_tf
        dec = hf.decode(ours, skip_special_tokens=False)
        if dec != text:
            ok = False
            print("FAIL %s: Hugging Face decodes clformer's ids to different text" % name)
        if not ok:
            failures += 1
            k = next((j for j in range(min(len(ours), len(ref))) if ours[j] != ref[j]), min(len(ours), len(ref)))
            print("FAIL %s: clformer %d ids, tokenizers %d, transformers %d; first difference at %d: %s vs %s"
                  % (name, len(ours), len(ref), len(ref_tf), k, ours[k:k + 5], ref[k:k + 5]))
    print("%d texts, %d ids compared: %s" % (len(texts), total_ids, "all equal" if not failures else
                                             "%d differ" % failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
