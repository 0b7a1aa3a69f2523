#!/usr/bin/env python3
"""Renders with what a fresh machine has: clip-guide without --clip_model, so the shipped shapes-clip model
and its clip-guide.toml (the primitives generator), and checks the pictures, not just the loss. A render is
right when:

- the prompt's background colour covers most of the image (nearest colour of the shapes-world palette);
- the prompt's shape colour covers a fair part, mostly in one connected piece (one shape, not scattered blobs).

The model is small and confuses some colours (yellow is often rendered orange), so at least 4 of the 6
prompts must come out right (with --seed 1 on the project's machine: 4). And averaged over the prompts that
came out right, circles must fill less of their bounding box than squares (pi/4 against 1 for perfect ones).

Run by ctest with env CLIPGUIDE_BINARY_DIR. Extra arguments go to every clip-guide call (for tuning:
`default_model_render_test.py --keep /tmp/renders -i 200`). Prints a closing 'N passed, N failed' line; exit
status 1 on any failure.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

BIN = os.path.join(os.environ["CLIPGUIDE_BINARY_DIR"], "tools", "clip-guide")

# The shapes world's colours (clipnet/train/shapes_world.cpp, shapes_world_rgb).
PALETTE = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 60, 220), "yellow": (240, 220, 30),
    "purple": (140, 40, 180), "orange": (245, 140, 20), "pink": (250, 130, 190), "cyan": (30, 210, 220),
    "white": (245, 245, 245), "black": (20, 20, 20), "grey": (128, 128, 128), "brown": (130, 80, 40),
}
NAMES = list(PALETTE)

# (prompt, shape colour, background colour, shape kind)
CASES = [
    ("a red circle on a blue background", "red", "blue", "circle"),
    ("a red square on a blue background", "red", "blue", "square"),
    ("a yellow circle on a black background", "yellow", "black", "circle"),
    ("a yellow square on a black background", "yellow", "black", "square"),
    ("a green circle on a white background", "green", "white", "circle"),
    ("a white square on a red background", "white", "red", "square"),
]


def nearest_colour(image):
    """(H, W) index into NAMES of each pixel's nearest palette colour."""
    palette = np.array([PALETTE[n] for n in NAMES], dtype=np.int64)  # (12, 3)
    d = ((image[:, :, None, :] - palette[None, None]) ** 2).sum(-1)  # (H, W, 12)
    return d.argmin(-1)


def largest_component(mask):
    """Boolean mask of the largest 4-connected component of `mask`."""
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int64)
    best, best_size, label = None, 0, 0
    for y0, x0 in zip(*np.nonzero(mask)):
        if labels[y0, x0]:
            continue
        label += 1
        labels[y0, x0] = label
        stack, size = [(y0, x0)], 0
        while stack:
            y, x = stack.pop()
            size += 1
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = label
                    stack.append((ny, nx))
        if size > best_size:
            best, best_size = label, size
    return labels == best if best else np.zeros_like(mask)


def analyse(path, shape_colour, background):
    image = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
    colour = nearest_colour(image)
    fractions = {n: float((colour == i).mean()) for i, n in enumerate(NAMES)}
    shape = colour == NAMES.index(shape_colour)
    piece = largest_component(shape)
    ys, xs = np.nonzero(piece)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1) if len(ys) else 1
    return {
        "background": fractions[background],
        "shape": fractions[shape_colour],
        "one_piece": piece.sum() / max(shape.sum(), 1),
        "fill": piece.sum() / box,
        "top": sorted(fractions.items(), key=lambda kv: -kv[1])[:3],
    }


def main():
    args = sys.argv[1:]
    keep = None
    if args[:1] == ["--keep"]:
        keep, args = args[1], args[2:]
    out_dir = keep or tempfile.mkdtemp(prefix="default-model-render-")
    os.makedirs(out_dir, exist_ok=True)
    passed = failed = right = 0
    fills = {}  # kind -> fills of the right renders
    for i, (prompt, shape_colour, background, kind) in enumerate(CASES):
        path = os.path.join(out_dir, f"render-{i}.png")
        proc = subprocess.run([BIN, "--prompt", prompt, "-o", path, "-q", "--seed", "1", *args], capture_output=True,
                              text=True, timeout=600)
        if proc.returncode != 0:
            print(f"FAIL {prompt!r}: clip-guide exited {proc.returncode}: {proc.stderr.strip()}")
            failed += 1
            continue
        a = analyse(path, shape_colour, background)
        print(f"{prompt!r}: background {a['background']:.2f}, shape colour {a['shape']:.2f}, "
              f"one piece {a['one_piece']:.2f}, fill {a['fill']:.2f}; top {a['top']}")
        problems = []
        if a["background"] < 0.4:
            problems.append(f"{background} covers {a['background']:.2f} < 0.4")
        if a["shape"] < 0.015:
            problems.append(f"{shape_colour} covers {a['shape']:.3f} < 0.015")
        if a["one_piece"] < 0.7:
            problems.append(f"the largest {shape_colour} piece holds {a['one_piece']:.2f} < 0.7 of it")
        if problems:
            print(f"  wrong: " + "; ".join(problems))
        else:
            right += 1
            fills.setdefault(kind, []).append(a["fill"])
    if right >= 4:
        passed += 1
    else:
        print(f"FAIL only {right} of {len(CASES)} renders came out right (need 4)")
        failed += 1
    mean = {kind: sum(f) / len(f) for kind, f in fills.items()}
    print(f"mean fill of the right renders: {mean}")
    if "circle" in mean and "square" in mean and mean["circle"] < mean["square"]:
        passed += 1
    else:
        print("FAIL circles do not fill less of their box than squares")
        failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
