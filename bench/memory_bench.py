#!/usr/bin/env python3
"""Peak memory of a guidance run, side by side with the Python VQGAN+CLIP loop (bench/reference/guide_ref.py):
random-weight ViT-B/32 + VQGAN f16 (written by guide_ref.py --write), cutn 32, on the CPU. Each program runs
in its own process; its peak is the kernel's peak resident set size of that process (wait4's ru_maxrss), so
weights, activations and the runtime itself all count on both sides. clip-guide runs plain and with the
memory options (--cutn_batches, --checkpoint) and with --max_memory set to a fraction of the reference's peak
(the plan it chose is shown); seconds per step are the wall time of a 3-step run minus a
1-step run, over 2 (start-up excluded), the reference's its own timing of its steps.

  python bench/memory_bench.py --build build [--dir /tmp/clipguide-startup] [--sizes 256 512] [--cutn 32]
                               [--budget 0.40] [--only NAME...] [--no-reference]
Prints one table row per run: size, program and options, peak MiB, s/step, peak relative to the reference.

  python bench/memory_bench.py --build build --ladder 8G [--ladder-range 128 1536]
The largest square size (a multiple of 32) that each side completes within the budget: two steps (the
reference: one after its warm-up) whose peak resident size stays under it; a run that goes over is stopped
there. Sides: the Python reference; clip-guide --max_memory BUDGET (the plan it picks, or its refusal);
clip-guide --cutn_batches 4 --checkpoint. Bisection, so about log2(range / 32) runs per side.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class Refused(Exception):
    """clip-guide --max_memory refused the budget: its one-line error."""


def measure(cmd, cap_mib=float("inf")):
    """(outcome, wall seconds, peak RSS MiB, stdout, stderr) of cmd, the peak as wait4 reports it; the run is
    stopped when its resident size passes cap_mib. outcome: "ok", "over" (stopped, or finished above the
    cap), "refused" (a --max_memory refusal) or "failed"."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        stopped = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if not stopped and resident_mib(proc.pid) > cap_mib:
                proc.kill()
                stopped = True
            time.sleep(0.05)
        seconds = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    peak = usage.ru_maxrss / 1024
    if stopped or (proc.returncode == 0 and peak > cap_mib):
        outcome = "over"
    elif proc.returncode != 0:
        outcome = "refused" if "error: --max_memory" in stderr else "failed"
    else:
        outcome = "ok"
    return outcome, seconds, peak, stdout, stderr


def resident_mib(pid):
    """The process's resident size now (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    except (OSError, StopIteration):
        return 0


def peak_of(cmd):
    """(wall seconds, peak RSS MiB, stdout, stderr) of cmd; exits with its stderr when it fails (raises Refused
    when a memory budget was refused)."""
    outcome, seconds, peak, out, err = measure(cmd)
    if outcome == "refused":
        raise Refused(err.split("error: ", 1)[1].strip().splitlines()[0])
    if outcome != "ok":
        sys.exit(f"memory_bench: {' '.join(cmd)} failed:\n{err[-2000:]}")
    return seconds, peak, out, err


def parse_mib(text):
    """MiB of a size such as 8G, 8GiB, 7600M (binary units, as clip-guide's --max_memory reads them)."""
    units = {"": 2 ** -20, "b": 2 ** -20, "k": 2 ** -10, "kb": 2 ** -10, "kib": 2 ** -10, "m": 1, "mb": 1, "mib": 1,
             "g": 1024, "gb": 1024, "gib": 1024}
    number = text.rstrip("bBkKmMgGiI")
    unit = text[len(number):].lower()
    try:
        return float(number) * units[unit]
    except (ValueError, KeyError):
        sys.exit(f"memory_bench: --ladder: expected a size such as 8G or 7600M, got '{text}'")


def ladder(args, guide_base, ref_base):
    """The largest size each side completes within args.ladder, by bisection over multiples of 32."""
    budget = parse_mib(args.ladder)
    sides = [("Python reference", lambda n: [*ref_base, "--iters", "1", "--warmup", "1", "--size", str(n)]),
             (f"clip-guide --max_memory {args.ladder}", lambda n: [*guide_base(n), "-i", "2", "--max_memory", args.ladder]),
             ("clip-guide --cutn_batches 4 --checkpoint",
              lambda n: [*guide_base(n), "-i", "2", "--cutn_batches", "4", "--checkpoint"])]
    if args.only:
        sides = [(n, c) for n, c in sides if any(o in n for o in args.only)]
    print("| budget | program | largest size | its peak MiB | runs (size: outcome, peak MiB) |")
    print("| --- | --- | --- | --- | --- |")
    lo_k, hi_k = args.ladder_range[0] // 32, args.ladder_range[1] // 32
    for name, command in sides:
        runs = {}  # k (size / 32) -> (outcome, peak MiB), in the order tried

        def fits(k):
            outcome, _, peak, _, stderr = measure(command(32 * k), budget)
            if outcome == "failed":
                sys.exit(f"memory_bench: {name} at {32 * k} failed:\n{stderr[-2000:]}")
            runs[k] = (outcome, peak)
            return outcome == "ok"

        lo, hi = lo_k, hi_k  # once checked: lo fits, hi does not
        if fits(lo) and not fits(hi):
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if fits(mid):
                    lo = mid
                else:
                    hi = mid
        fitting = [k for k, (outcome, _) in runs.items() if outcome == "ok"]
        best = max(fitting, default=None)
        if best is None:
            size, peak = f"below {32 * lo_k}", "-"
        else:
            size, peak = f"{'at least ' if best == hi_k else ''}{32 * best}x{32 * best}", f"{runs[best][1]:.0f}"
        tried = "; ".join(f"{32 * k}: {outcome} {p:.0f}" for k, (outcome, p) in runs.items())
        print(f"| {args.ladder} | {name} | {size} | {peak} | {tried} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--dir", default="/tmp/clipguide-startup")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--cutn", type=int, default=32)
    ap.add_argument("--budget", type=float, default=0.40, help="--max_memory variant: this fraction of the reference's peak")
    ap.add_argument("--only", nargs="*", default=[], help="run only the variants whose name contains one of these")
    ap.add_argument("--no-reference", action="store_true",
                    help="clip-guide only (sizes the reference cannot hold); the --max_memory variant is skipped")
    ap.add_argument("--ladder", metavar="BUDGET", help="the largest size each side completes within BUDGET (8G)")
    ap.add_argument("--ladder-range", type=int, nargs=2, default=[128, 1536], metavar=("LO", "HI"),
                    help="--ladder: the sizes searched")
    args = ap.parse_args()
    files = [os.path.join(args.dir, n) for n in ("clip.pt", "vqgan.ckpt", "vqgan.yaml")]
    if not all(os.path.exists(f) for f in files):
        subprocess.run([sys.executable, os.path.join(HERE, "reference", "guide_ref.py"), "--write", args.dir,
                        "--lightning"], check=True)
    vocab = os.path.join(ROOT, "tests", "data", "openai-clip", "bpe_simple_vocab_16e6.txt.gz")
    guide = os.path.join(args.build, "tools", "clip-guide")
    variants = [("clip-guide", []), ("clip-guide --cutn_batches 4", ["--cutn_batches", "4"]),
                ("clip-guide --checkpoint", ["--checkpoint"]),
                ("clip-guide --cutn_batches 4 --checkpoint", ["--cutn_batches", "4", "--checkpoint"])]
    # The planner under a budget of --budget times the reference's peak (the goal: 0.40).
    planned = f"clip-guide --max_memory ({args.budget:.2f} x reference)"
    variants.append((planned, None))
    if args.no_reference:
        variants = [(n, e) for n, e in variants if e is not None]
    if args.only:
        variants = [(n, e) for n, e in variants if any(o in n for o in args.only)]
    def guide_base(size):
        return [guide, "-m", files[0], "--vocab", vocab, "--vqgan_checkpoint", files[1], "--vqgan_config", files[2],
                "-s", str(size), str(size), "--num_cuts", str(args.cutn), "-p", "a painting of a lighthouse at dusk",
                "-q", "--seed", "0", "--save_every", "0", "-o", os.path.join(args.dir, "memory.png")]

    if args.ladder:
        ref_base = [sys.executable, os.path.join(HERE, "reference", "guide_ref.py"), "--run", args.dir,
                    "--cutn", str(args.cutn)]
        return ladder(args, guide_base, ref_base)
    print("| size | program | peak MiB | s/step | peak vs reference |")
    print("| --- | --- | --- | --- | --- |")
    for size in args.sizes:
        ref = [sys.executable, os.path.join(HERE, "reference", "guide_ref.py"), "--run", args.dir, "--iters", "2",
               "--warmup", "1", "--size", str(size), "--cutn", str(args.cutn)]
        ref_peak = None
        if not args.no_reference:
            _, ref_peak, out, _ = peak_of(ref)
            ref_step = 1.0 / json.loads(out.strip().splitlines()[-1])["its_per_s"]
            print(f"| {size} | Python reference | {ref_peak:.0f} | {ref_step:.2f} | 1.00 |", flush=True)
        for name, extra in variants:
            if extra is None:
                extra = ["--max_memory", f"{int(args.budget * ref_peak)}M"]
            base = [*guide_base(size), *extra]
            try:
                one, _, _, _ = peak_of([*base, "-i", "1"])
            except Refused as refused:
                print(f"| {size} | {name}: refused ({refused}) | - | - | - |", flush=True)
                continue
            three, peak, _, _ = peak_of([*base, "-i", "3"])
            step = (three - one) / 2
            plan = ""
            if "--max_memory" in extra:  # the plan it chose, from a 0-step run's stderr
                _, _, _, err = peak_of([*base, "-i", "0"])
                plan = " → " + err.split("memory plan: ", 1)[1].split(":", 1)[0] if "memory plan: " in err else ""
            ratio = f"{peak / ref_peak:.2f}" if ref_peak else "-"
            print(f"| {size} | {name}{plan} | {peak:.0f} | {step:.2f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
