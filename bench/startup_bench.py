#!/usr/bin/env python3
"""Start-up time: from launching the program to the end of its first guidance step, with real-size files in
the page cache: a random-weight ViT-B/32 CLIP state dict and a VQGAN f16 Lightning checkpoint with its
optimizer states (~1.3 GB together), written by bench/reference/guide_ref.py. clip-guide runs one step
(-i 1); its per-file read times come from CLIPGUIDE_LOG_LOADS. The Python VQGAN+CLIP reference loop
(guide_ref.py --run, one step, no warm-up) is timed the same way, side by side. The time to clip-guide's first
step is its own "first step starts" line (CLIPGUIDE_LOG_LOADS), measured from the kernel's start of the process.

  python bench/startup_bench.py --build build [--dir /tmp/clipguide-startup] [--runs 3] [--size 256]
Prints one line per program (median wall seconds of the runs) and the ratio.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def warm(paths):
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


def timed(cmd, env=None):
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"startup_bench: {' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return seconds, proc.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--dir", default="/tmp/clipguide-startup")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--cutn", type=int, default=16)
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()
    files = [os.path.join(args.dir, n) for n in ("clip.pt", "vqgan.ckpt", "vqgan.yaml")]
    if not all(os.path.exists(f) for f in files):
        subprocess.run([sys.executable, os.path.join(HERE, "reference", "guide_ref.py"), "--write", args.dir,
                        "--lightning"], check=True)
    sizes = {os.path.basename(f): os.path.getsize(f) / 2**20 for f in files}
    print("files: " + ", ".join(f"{n} {mb:.0f} MiB" for n, mb in sizes.items()))
    vocab = os.path.join(ROOT, "tests", "data", "openai-clip", "bpe_simple_vocab_16e6.txt.gz")
    guide = [os.path.join(args.build, "tools", "clip-guide"), "-m", files[0], "--vocab", vocab,
             "--vqgan_checkpoint", files[1], "--vqgan_config", files[2], "-s", str(args.size), str(args.size),
             "--num_cuts", str(args.cutn), "-p", "a painting of a lighthouse at dusk", "-i", "1", "-q",
             "-o", os.path.join(args.dir, "out.png"), "--seed", "0"]
    env = dict(os.environ, CLIPGUIDE_LOG_LOADS="1")

    def median_run(what, cmd, env=None):
        """Runs cmd args.runs times from a warm page cache; prints and returns the median and the last stderr."""
        seconds, stderr = [], ""
        for _ in range(args.runs):
            warm(files)
            t, stderr = timed(cmd, env)
            seconds.append(t)
        median = statistics.median(seconds)
        print(f"{what}: {median:.2f} s (median of {args.runs}: " + ", ".join(f"{t:.2f}" for t in seconds) + ")")
        return median, stderr

    ours, stderr = median_run("clip-guide  to the end of step 1", guide, env)
    # To the first step: clip-guide's own clock (CLIPGUIDE_LOG_LOADS), from the kernel's start of the process.
    firsts = []
    for _ in range(args.runs):
        warm(files)
        firsts.append(float(re.search(r"first step starts ([\d.]+) s after", timed(guide, env)[1]).group(1)))
    print(f"clip-guide  to the first step: {statistics.median(firsts):.2f} s (median of {args.runs}: "
          + ", ".join(f"{t:.2f}" for t in firsts) + ")")
    for path, what, secs in re.findall(r"read weights '([^']+)' \(([^)]*)\) in ([\d.]+) s", stderr):
        print(f"  read {os.path.basename(path)} ({what}) in {float(secs):.2f} s")
    if args.no_reference:
        return
    ref = [sys.executable, os.path.join(HERE, "reference", "guide_ref.py"), "--run", args.dir, "--iters", "1",
           "--warmup", "0", "--size", str(args.size), "--cutn", str(args.cutn)]
    theirs, _ = median_run("Python reference to the end of step 1", ref)
    print(f"ratio clip-guide / reference: {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
