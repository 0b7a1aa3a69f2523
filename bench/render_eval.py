#!/usr/bin/env python3
"""Render evaluation of the default model: renders a fixed public prompt set with `clip-guide` and its default
settings (no --clip_model: the shipped models/shapes-clip and its clip-guide.toml) over several seeds, judges
every picture objectively and prints a table: colours right, shape right, both right.

    bench/render_eval.py --build build                 # 42 prompts x seeds 1,2,3 (about N min on 2 cores)
    bench/render_eval.py --build build --seeds 1 --prompts 0:12 --keep /tmp/renders --jobs 2
    bench/render_eval.py --self-test                   # the judge on drawn shapes of known kind

The prompt set (PROMPTS below, also printed by --list): "a <colour> <kind> on a <colour> background", each
of the shapes world's 7 kinds 6 times, each of its 12 colours at least 3 times as the shape's colour and at
least 3 times as the background's.

How a picture is judged (judge()):
- background: the median colour of the image's border pixels, named by the nearest colour of the shapes
  world's palette (clipnet/train/shapes_world.cpp);
- the object: pixels nearer (in RGB) to the object's colour than to the background's, where the object's
  colour is the median of the pixels far (> 60 in RGB distance) from the background colour; of these the
  largest 4-connected component. Its colour is the median over its pixels, named by the nearest palette
  colour. No object (fewer than 0.5% of the pixels) is wrong in colour and shape;
- the shape kind, from the component's geometry:
  * solidity = area / area of its convex hull;
  * the radial profile r(a): for 360 directions a from the centroid of the coverage (each pixel's place
    between the background's and the object's colour), the distance to the coverage's 0.5 level at the
    ray's first exit (sub-pixel, bilinear), smoothed over 5 degrees and divided by its maximum; its peaks (local maxima standing at
    least 0.06 above the lower of the neighbouring minima) are the corners, and its minimum over maximum the
    depth of the notches;
  * circle: min/max >= 0.88 (a regular hexagon's is 0.87, a square's 0.71);
  * star: solidity < 0.75 and 5 peaks (or 4-6 with notches deeper than 0.6); cross: solidity < 0.8 and
    4 peaks near the axes (a cross's arms are its peaks; its solidity is about 0.64);
  * otherwise by the number of peaks: 3 triangle, 6 hexagon (5 or 6 with min/max >= 0.78), 4 square or
    diamond by where the corners point (diagonals: square, axes: diamond, as the shapes world draws them).
  --self-test draws every kind at several sizes, positions and small rotations with soft edges and checks
  the judge names them all.
"""
import argparse
import concurrent.futures
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

# The shapes world's colours (clipnet/train/shapes_world.cpp, shapes_world_rgb) and kinds.
PALETTE = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 60, 220), "yellow": (240, 220, 30),
    "purple": (140, 40, 180), "orange": (245, 140, 20), "pink": (250, 130, 190), "cyan": (30, 210, 220),
    "white": (245, 245, 245), "black": (20, 20, 20), "grey": (128, 128, 128), "brown": (130, 80, 40),
}
COLOURS = list(PALETTE)
KINDS = ["circle", "square", "triangle", "star", "diamond", "hexagon", "cross"]


def prompt_set():
    """[(prompt, shape colour, background colour, kind)]: 42 prompts, fixed."""
    out = []
    for i in range(42):
        kind = KINDS[i % 7]
        shape = COLOURS[i % 12]
        background = COLOURS[(5 * i + 7) % 12]
        if background == shape:
            background = COLOURS[(5 * i + 8) % 12]
        out.append((f"a {shape} {kind} on a {background} background", shape, background, kind))
    return out


PROMPTS = prompt_set()


def nearest_name(rgb):
    palette = np.array([PALETTE[n] for n in COLOURS], dtype=np.float64)
    return COLOURS[int(((palette - np.asarray(rgb, dtype=np.float64)) ** 2).sum(1).argmin())]


def largest_component(mask):
    """Boolean mask of the largest 4-connected component of `mask`."""
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int64)
    best, best_size, label = 0, 0, 0
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


def convex_hull_area(points):
    """Area of the convex hull of (N, 2) points (monotone chain)."""
    pts = sorted(set(map(tuple, points.tolist())))
    if len(pts) < 3:
        return 0.0

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = lower[:-1] + upper[:-1]
    return 0.5 * abs(sum(hull[i][0] * hull[i - 1][1] - hull[i - 1][0] * hull[i][1] for i in range(len(hull))))


def radial_profile(alpha):
    """(r, centre): the distance from the centroid of coverage map `alpha` (H, W) in [0, 1] to its 0.5 level
    along 360 rays (0 degrees = +x, 90 = down), at the ray's first exit, smoothed over 5 degrees and divided
    by its maximum. Bilinear interpolation between pixel centres makes it sub-pixel."""
    h, w = alpha.shape
    ys, xs = np.mgrid[0:h, 0:w]
    total = alpha.sum()
    cy, cx = (alpha * ys).sum() / total, (alpha * xs).sum() / total
    angles = np.radians(np.arange(360))
    t = np.arange(0, max(h, w), 0.2)                                        # (T,)
    py = cy + np.sin(angles)[:, None] * t[None]                              # (360, T)
    px = cx + np.cos(angles)[:, None] * t[None]
    y0, x0 = np.floor(py).astype(int), np.floor(px).astype(int)
    fy, fx = py - y0, px - x0

    def at(y, x):
        ok = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        return np.where(ok, alpha[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)], 0.0)

    a = (at(y0, x0) * (1 - fy) * (1 - fx) + at(y0, x0 + 1) * (1 - fy) * fx + at(y0 + 1, x0) * fy * (1 - fx)
         + at(y0 + 1, x0 + 1) * fy * fx)                                     # (360, T)
    r = np.zeros(360)
    for k in range(360):
        out = np.nonzero(a[k] < 0.5)[0]
        j = out[0] if len(out) else len(t) - 1
        if j == 0:
            continue
        # Linear interpolation of the crossing between samples j - 1 and j.
        a0, a1 = a[k, j - 1], a[k, j]
        r[k] = t[j - 1] + (t[j] - t[j - 1]) * (a0 - 0.5) / max(a0 - a1, 1e-9)
    r = np.array([r[[(k + d) % 360 for d in range(-2, 3)]].mean() for k in range(360)])
    return r / max(r.max(), 1e-9), (cy, cx)


def peaks(r, prominence=0.06):
    """Angles (degrees) of the circular profile's peaks standing `prominence` above their neighbouring minima."""
    n = len(r)
    candidates = [k for k in range(n) if r[k] >= r[(k - 1) % n] and r[k] > r[(k + 1) % n]]
    out = []
    for k in candidates:
        def lowest(step):
            low, j = r[k], k
            for _ in range(n // 2):
                j = (j + step) % n
                if r[j] > r[k]:
                    break
                low = min(low, r[j])
            return low
        if r[k] - max(lowest(1), lowest(-1)) >= prominence:
            out.append(k)
    return out


def classify(mask, alpha=None):
    """The shape kind of a boolean mask (see the module's docstring), and the features it used. `alpha`: the
    coverage (H, W) in [0, 1] for a sub-pixel profile (default: the mask)."""
    area = float(mask.sum())
    ys, xs = np.nonzero(mask)
    hull = convex_hull_area(np.concatenate([np.stack([ys + oy, xs + ox], 1) for oy in (0, 1) for ox in (0, 1)]))
    solidity = area / hull if hull else 0.0
    r, _ = radial_profile(mask.astype(np.float64) if alpha is None else alpha)
    p = peaks(r)
    depth = float(r.min())
    # Distance of the corners from the nearest axis direction (0, 90, 180, 270 degrees), in degrees.
    off_axis = float(np.mean([min(a % 90, 90 - a % 90) for a in p])) if p else 45.0
    features = {"solidity": round(solidity, 3), "min_over_max": round(depth, 3), "peaks": len(p),
                "off_axis": round(off_axis, 1)}
    if depth >= 0.88:
        kind = "circle"
    elif solidity < 0.8 and len(p) == 4 and off_axis < 22.5 and depth < 0.6:
        kind = "cross"
    elif (solidity < 0.75 and len(p) == 5) or (solidity < 0.75 and 4 <= len(p) <= 6 and depth < 0.6):
        kind = "star"
    elif len(p) == 3:
        kind = "triangle"
    elif len(p) == 6 or (len(p) == 5 and depth >= 0.78):
        kind = "hexagon"
    elif len(p) == 4:
        kind = "square" if off_axis >= 22.5 else "diamond"
    else:
        kind = "unknown"
    return kind, features


def judge(path):
    """{'background', 'colour', 'kind', 'features'} of a rendered picture."""
    image = np.asarray(Image.open(path).convert("RGB")).astype(np.float64)  # (H, W, 3)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    bg_rgb = np.median(border, 0)
    far = np.sqrt(((image - bg_rgb) ** 2).sum(-1)) > 60
    result = {"background": nearest_name(bg_rgb), "colour": None, "kind": None, "features": {}}
    if far.mean() < 0.005:
        return result
    obj_rgb = np.median(image[far], 0)
    nearer = ((image - obj_rgb) ** 2).sum(-1) < ((image - bg_rgb) ** 2).sum(-1)
    mask = largest_component(nearer)
    if mask.mean() < 0.005:
        return result
    result["colour"] = nearest_name(np.median(image[mask], 0))
    # Coverage: each pixel's position between the background's and the object's colour, within one pixel of
    # the component (other objects do not count).
    direction = obj_rgb - bg_rgb
    alpha = np.clip(((image - bg_rgb) @ direction) / max(direction @ direction, 1e-9), 0, 1)
    near = mask.copy()
    near[1:] |= mask[:-1]; near[:-1] |= mask[1:]; near[:, 1:] |= mask[:, :-1]; near[:, :-1] |= mask[:, 1:]
    result["kind"], result["features"] = classify(mask, alpha * near)
    return result


# --- the shapes world's geometry, drawn here to test the judge ----------------------------------------------
def inside(kind, u, v):
    """Is (u, v) (units of the circumradius, y down) inside `kind`? As clipnet/train/shapes_world.cpp."""
    def polygon(n, inner):
        steps = 2 * n if inner < 1 else n
        pts = []
        for k in range(steps):
            a = -math.pi / 2 + 2 * math.pi * k / steps
            rr = inner if (inner < 1 and k % 2 == 1) else 1.0
            pts.append((rr * math.cos(a), rr * math.sin(a)))
        return pts

    def in_polygon(pts, x, y):
        result = np.zeros_like(x, dtype=bool)
        j = len(pts) - 1
        for i in range(len(pts)):
            (xi, yi), (xj, yj) = pts[i], pts[j]
            crosses = ((yi > y) != (yj > y)) & (x < (xj - xi) * (y - yi) / (yj - yi + 1e-300) + xi)
            result ^= crosses
            j = i
        return result

    if kind == "circle":
        return u * u + v * v <= 1
    if kind == "square":
        return np.maximum(abs(u), abs(v)) <= 0.7
    if kind == "triangle":
        return in_polygon(polygon(3, 1), u, v)
    if kind == "star":
        return in_polygon(polygon(5, 0.45), u, v)
    if kind == "diamond":
        return abs(u) + abs(v) <= 1
    if kind == "hexagon":
        return in_polygon(polygon(6, 1), u, v)
    return ((abs(u) <= 0.3) & (abs(v) <= 0.95)) | ((abs(v) <= 0.3) & (abs(u) <= 0.95))


def draw(kind, size=128, radius=0.25, centre=(0.5, 0.5), angle=0.0, shape="red", background="blue", ss=4):
    """(size, size, 3) uint8 picture of one antialiased shape (radius and centre as fractions of the side)."""
    step = 1.0 / ss
    offsets = (np.arange(ss) + 0.5) * step
    cover = np.zeros((size, size))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c, s = math.cos(angle), math.sin(angle)
    for oy in offsets:
        for ox in offsets:
            x = (xx + ox - centre[0] * size) / (radius * size)
            y = (yy + oy - centre[1] * size) / (radius * size)
            u, v = c * x + s * y, -s * x + c * y
            cover += inside(kind, u, v)
    cover /= ss * ss
    a, b = np.array(PALETTE[shape], float), np.array(PALETTE[background], float)
    return np.round(b * (1 - cover[..., None]) + a * cover[..., None]).astype(np.uint8)


def self_test():
    failures, total = [], 0
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            for radius in (0.16, 0.24, 0.34):
                for _ in range(4):
                    centre = tuple(rng.uniform(0.3, 0.7, 2))
                    angle = math.radians(rng.uniform(-6, 6))
                    shape, background = rng.choice(COLOURS, 2, replace=False)
                    path = os.path.join(tmp, "x.png")
                    Image.fromarray(draw(kind, 128, radius, centre, angle, shape, background)).save(path)
                    got = judge(path)
                    total += 1
                    if (got["kind"], got["colour"], got["background"]) != (kind, shape, background):
                        failures.append(f"{kind} r={radius} {shape} on {background}: judged {got}")
    for f in failures:
        print("FAIL", f)
    print(f"self-test: {total - len(failures)} of {total} drawn shapes judged right")
    return 0 if not failures else 1


# --- rendering -----------------------------------------------------------------------------------------------
def render_one(clip_guide, prompt, seed, out, extra):
    cmd = [clip_guide, "--prompts", prompt, "--seed", str(seed), "-o", out] + extra
    run = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")))
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {run.stderr.strip()[-500:]}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="build folder holding tools/clip-guide")
    ap.add_argument("--seeds", default="1,2,3", help="comma list of seeds")
    ap.add_argument("--prompts", default="0:42", help="slice of the prompt set, START:END")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="renders at once (one thread each)")
    ap.add_argument("--keep", help="folder to keep the renders in")
    ap.add_argument("--list", action="store_true", help="print the prompt set and exit")
    ap.add_argument("--self-test", action="store_true", help="check the judge on drawn shapes and exit")
    ap.add_argument("--verbose", action="store_true", help="one line per render")
    args, extra = ap.parse_known_args()
    if args.self_test:
        return self_test()
    if args.list:
        for p in PROMPTS:
            print(p[0])
        return 0
    start, end = (int(x) for x in args.prompts.split(":"))
    prompts = PROMPTS[start:end]
    seeds = [int(s) for s in args.seeds.split(",")]
    clip_guide = os.path.join(args.build, "tools", "clip-guide")
    folder = args.keep or tempfile.mkdtemp(prefix="render-eval-")
    os.makedirs(folder, exist_ok=True)
    jobs = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for i, (prompt, shape, background, kind) in enumerate(prompts, start):
            for seed in seeds:
                out = os.path.join(folder, f"p{i:02d}_s{seed}.png")
                jobs.append((prompt, shape, background, kind, seed, pool.submit(render_one, clip_guide, prompt, seed, out, extra)))
        rows = []
        for prompt, shape, background, kind, seed, future in jobs:
            got = judge(future.result())
            colours = got["colour"] == shape and got["background"] == background
            rows.append((kind, colours, got["kind"] == kind))
            if args.verbose:
                print(f"{'ok ' if colours and got['kind'] == kind else 'BAD'} seed {seed} '{prompt}': {got['colour']} "
                      f"{got['kind']} on {got['background']} {got['features']}", flush=True)
    n = len(rows)
    print(f"\nrender evaluation: {len(prompts)} prompts x seeds {args.seeds} = {n} renders ({folder})")
    print("| kind | renders | colours right | shape right | both right |")
    print("|---|---|---|---|---|")
    for kind in KINDS + ["all"]:
        sel = [r for r in rows if kind in ("all", r[0])]
        if not sel:
            continue
        c = sum(r[1] for r in sel) / len(sel)
        s = sum(r[2] for r in sel) / len(sel)
        b = sum(r[1] and r[2] for r in sel) / len(sel)
        print(f"| {kind} | {len(sel)} | {c:.2f} | {s:.2f} | {b:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
