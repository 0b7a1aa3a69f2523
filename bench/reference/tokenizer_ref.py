#!/usr/bin/env python3
"""Python side of bench/tokenizer_bench: openai-clip's SimpleTokenizer.encode over the same corpus.
Reads a JSON array of strings, warms the tokenizer's word cache with one pass, then times whole passes for at
least --seconds. Prints one JSON line: {"strings_per_s": ..., "passes": ..., "strings": ..., "cold_strings_per_s": ...}.

Usage: python tokenizer_ref.py --corpus corpus.json --vocab bpe_simple_vocab_16e6.txt.gz [--seconds 3]"""
import argparse
import json
import time

from clip.simple_tokenizer import SimpleTokenizer

ap = argparse.ArgumentParser()
ap.add_argument("--corpus", required=True)
ap.add_argument("--vocab", required=True)
ap.add_argument("--seconds", type=float, default=3.0)
args = ap.parse_args()

with open(args.corpus, encoding="utf-8") as f:
    texts = json.load(f)
tok = SimpleTokenizer(args.vocab)

start = time.perf_counter()
total = 0
for t in texts:  # first pass: the word cache fills
    total += len(tok.encode(t))
cold = len(texts) / (time.perf_counter() - start)

passes = 0
start = time.perf_counter()
while True:
    for t in texts:
        total += len(tok.encode(t))
    passes += 1
    elapsed = time.perf_counter() - start
    if elapsed >= args.seconds:
        break
print(json.dumps({"strings_per_s": passes * len(texts) / elapsed, "passes": passes, "strings": len(texts),
                  "cold_strings_per_s": cold, "ids": total}))
