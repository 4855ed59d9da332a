#!/usr/bin/env python3
"""Rebuild data/tiny_corpus.txt from the HTML books that rustup installs with the Rust docs.

Usage: python3 data/make_tiny_corpus.py RUST_DOC_HTML_DIR > data/tiny_corpus.txt
  e.g. RUST_DOC_HTML_DIR = ~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html

Keeps the prose of "The Rust Programming Language" (book/print.html) and "The Rustonomicon"
(nomicon/print.html): paragraphs, list items and headings inside <main>; drops code blocks,
tables, navigation and the "Filename: ..." captions; wraps at 78 columns.
"""
import html.parser
import re
import sys
import textwrap

SKIP = {"pre", "script", "style", "nav", "svg", "table"}
BLOCK = {"p", "li", "h1", "h2", "h3", "h4", "blockquote", "dt", "dd"}


class Prose(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.skip = 0
        self.in_main = False
        self.cur = []
        self.paras = []

    def handle_starttag(self, tag, attrs):
        if tag == "main":
            self.in_main = True
        if tag in SKIP:
            self.skip += 1
        if tag in BLOCK:
            self.flush()

    def handle_endtag(self, tag):
        if tag == "main":
            self.in_main = False
        if tag in SKIP:
            self.skip = max(0, self.skip - 1)
        if tag in BLOCK:
            self.flush()

    def handle_data(self, data):
        if self.in_main and not self.skip:
            self.cur.append(data)

    def flush(self):
        text = re.sub(r"\s+", " ", "".join(self.cur)).strip()
        self.cur = []
        if text and not text.startswith("Filename: "):
            self.paras.append(text)


def main():
    root = sys.argv[1]
    out = []
    for book in ("book/print.html", "nomicon/print.html"):
        p = Prose()
        with open(f"{root}/{book}", encoding="utf-8") as f:
            p.feed(f.read())
        p.flush()
        out.extend(textwrap.fill(x, width=78) for x in p.paras)
    sys.stdout.write("\n\n".join(out) + "\n")


if __name__ == "__main__":
    main()
