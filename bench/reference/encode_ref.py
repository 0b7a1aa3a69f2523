#!/usr/bin/env python3
"""Python side of bench/encode_bench: open_clip's image encoder, random weights, same shape and batch.
Prints one JSON line: {"images_per_s": ..., "threads": ..., "torch": ...}."""
import argparse
import json
import time

import open_clip
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="ViT-B-32-quickgelu")
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--iters", type=int, default=5)
ap.add_argument("--warmup", type=int, default=1)
ap.add_argument("--size", type=int, default=224)
args = ap.parse_args()

torch.manual_seed(0)
model = open_clip.create_model(args.model).eval()
x = torch.randn(args.batch, 3, args.size, args.size)
with torch.no_grad():
    for _ in range(args.warmup):
        model.encode_image(x)
    start = time.perf_counter()
    for _ in range(args.iters):
        model.encode_image(x)
    elapsed = time.perf_counter() - start
print(json.dumps({"images_per_s": args.batch * args.iters / elapsed, "threads": torch.get_num_threads(),
                  "torch": torch.__version__}))
