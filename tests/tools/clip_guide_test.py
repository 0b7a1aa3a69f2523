#!/usr/bin/env python3
"""End-to-end tests of the clip-guide tool on tiny random-weight CLIP models (fixture clip_parity) and
every generator (pixel, fourier, vqgan from the vqgan fixture, torchscript from torchscript_generators):
the loss goes down, settings round-trip through the PNG metadata (--from-png) and TOML (--config), the
prompts file, story mode, size rounding, Ctrl-C, --help and one-line errors; --video and --zoom_video
(ffprobe counts the frames; ffmpeg decodes them), and a clear error when ffmpeg is not on PATH. Faults:
SIGKILL at random moments leaves the output absent or a complete PNG; a missing or read-only output folder
is refused before the run, a full filesystem (a small tmpfs in a private mount namespace, `unshare`) at the
write, with the earlier output intact; a divergent run stops at the first non-finite loss, keeping the last
finite image.

Run by ctest with env CLIPGUIDE_BINARY_DIR, CLIPGUIDE_FIXTURES, CLIPGUIDE_TEST_DATA. Prints a closing
'N passed, N failed' line; exit status 1 on any failure.
"""
import os
import json
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import script_tests  # noqa: E402  (tests/script_tests.py)

BIN = os.path.join(os.environ["CLIPGUIDE_BINARY_DIR"], "tools", "clip-guide")
FIX = os.environ["CLIPGUIDE_FIXTURES"]
VOCAB = os.path.join(os.environ["CLIPGUIDE_TEST_DATA"], "openai-clip", "bpe_simple_vocab_16e6.txt.gz")
MODEL = os.path.join(FIX, "clip_parity", "hf_clip")
BASE = ["-m", MODEL, "--vocab", VOCAB, "--num_cuts", "4", "--seed", "3"]
TMP = tempfile.mkdtemp(prefix="clip-guide-test-")


run = script_tests.tool_runner(BIN)
pixels = script_tests.pixels
losses = script_tests.losses


def out(name):
    return os.path.join(TMP, name)


def ffprobe(path):
    """(frames, width, height, frame rate) of the video's first stream, frames counted by decoding."""
    proc = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                           "stream=nb_read_frames,width,height,r_frame_rate", "-of", "json", path],
                          capture_output=True, text=True, check=True)
    s = json.loads(proc.stdout)["streams"][0]
    return int(s["nb_read_frames"]), s["width"], s["height"], s["r_frame_rate"]


def decoded_frames(path, w, h):
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3).astype(np.int64)


def no_partial_files():
    left = [f for f in os.listdir(TMP) if ".partial" in f]
    assert not left, f"temporary video files left: {left}"


def test_pixel_render_lowers_the_loss_and_stores_settings():
    proc = run(*BASE, "-p", "a red circle", "-s", "48", "40", "-i", "30", "--save_every", "10", "-o", out("a.png"))
    ls = losses(proc.stderr)
    print(f"  losses every 10 steps: {ls}")
    assert len(ls) == 3 and ls[-1] < ls[0], ls
    im = Image.open(out("a.png"))
    assert im.size == (48, 40), im.size
    settings = im.info["clipguide:settings"]
    assert 'prompts="a red circle"' in settings and "iterations=30" in settings, settings


def test_trials_continue_the_best_start():
    proc = run(*BASE, "-p", "a red circle", "-s", "32", "32", "--generator", "primitives", "--trials", "3",
               "--trial_steps", "2", "-i", "6", "--save_every", "2", "-o", out("trials.png"))
    m = re.search(r"3 trials of 2 steps, losses (\S+) (\S+) (\S+); continuing trial (\d+) \(seed (\d+)\)", proc.stderr)
    assert m, proc.stderr
    scores = [float(m.group(i)) for i in (1, 2, 3)]
    print(f"  trial losses {scores}, continuing trial {m.group(4)} (seed {m.group(5)})")
    assert int(m.group(4)) == scores.index(min(scores)), proc.stderr
    assert (int(m.group(4)) == 0) == (int(m.group(5)) == 3), proc.stderr  # BASE has --seed 3: trial 0's seed
    assert len(losses(proc.stderr)) == 2, proc.stderr  # the run goes on from step 2: reports at steps 4 and 6
    assert Image.open(out("trials.png")).size == (32, 32)


def test_from_png_and_toml_config_reproduce_the_image():
    run(*BASE, "-p", "blue sky:1|noise:-0.5", "-s", "32", "32", "-i", "8", "-o", out("b.png"), "-q")
    scratch = tempfile.mkdtemp(prefix="clip-guide-tmpdir-")  # --from-png's temporary TOML goes here
    run("--from-png", out("b.png"), "-o", out("b2.png"), "-q", env={**os.environ, "TMPDIR": scratch})
    assert os.listdir(scratch) == [], f"--from-png left files behind: {os.listdir(scratch)}"
    assert (pixels(out("b.png")) == pixels(out("b2.png"))).all(), "from-png differs"
    toml = Image.open(out("b.png")).info["clipguide:settings"].replace(out("b.png"), out("b3.png"))
    with open(out("b.toml"), "w") as f:
        f.write(toml)
    run("--config", out("b.toml"), "-q")
    assert (pixels(out("b.png")) == pixels(out("b3.png"))).all(), "TOML config differs"
    # A flag on the command line wins over the stored settings.
    run("--from-png", out("b.png"), "-o", out("b4.png"), "-i", "2", "-q")
    assert "iterations=2" in Image.open(out("b4.png")).info["clipguide:settings"]


def test_two_processes_share_the_style_frames():
    """--video_style_dir with 2 processes: frame i is styled whole by rank i % 2, written once as
    <output stem>/<frame>.png, and is the image one process makes from it."""
    frames = out("style-frames")
    os.makedirs(frames, exist_ok=True)
    rng = np.random.default_rng(5)
    for i in range(3):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(os.path.join(frames, f"f{i}.png"))
    common = [*BASE, "-p", "a red circle", "--video_style_dir", frames, "-s", "32", "32", "-i", "3", "-d"]
    run(*common, "-o", out("style-one.png"))
    two = torchrun_two(*common, "-o", out("style-two.png"))
    text = two.stderr + two.stdout
    assert "clip-guide: 3 of 3 renders written (2 processes)" in text, text[-2000:]
    for i in range(3):
        two_path = os.path.join(out("style-two"), f"f{i}.png")
        assert len(re.findall(re.escape(f"wrote {two_path}"), text)) == 1, text[-2000:]
        diff = np.abs(pixels(os.path.join(out("style-one"), f"f{i}.png")) - pixels(two_path)).max()
        assert diff <= 1, (i, diff)


def generator_cases():
    """The flags that select each generator, with its weights from the fixtures."""
    vqgan = os.path.join(FIX, "vqgan")
    ts = os.path.join(FIX, "torchscript_generators", "decoder_scripted.pt")
    return {
        "pixel": [],
        "fourier": ["--generator", "fourier"],
        "vqgan": ["--vqgan_checkpoint", os.path.join(vqgan, "vq.ckpt"), "--vqgan_config", os.path.join(vqgan, "vq.yaml")],
        "torchscript": ["--generator", "torchscript", "--generator_weights", ts, "--generator_option", "latent_shape=1,16",
                        "--generator_option", "output_range=-1,1"],
    }


def test_every_generator_renders():
    cases = generator_cases()
    for name, extra in cases.items():
        size = ["-s", "32", "32"]
        proc = run(*BASE, "-p", "a cat", *size, "-i", "6", "--save_every", "3", "-o", out(f"g-{name}.png"), *extra)
        im = pixels(out(f"g-{name}.png"))
        assert im.shape == (32, 32, 3), (name, im.shape)
        print(f"  {name}: losses {losses(proc.stderr)}")


def test_deterministic_runs_give_byte_identical_pngs_with_every_generator():
    """-d: the same command twice writes the same file, byte for byte, with every registered generator; the
    PNG records what made it (settings with the seed, clipguide's and LibTorch's versions, the device)."""
    cases = generator_cases()
    cases["primitives"] = ["--generator", "primitives", "--generator_option", "count=2"]
    known = re.search(r"known: ([^)]*)\)", run("--generator", "nope", *BASE, "-o", out("x.png"), ok=False).stderr)
    for name in known.group(1).split(", "):  # the registry's names, as its error lists them
        assert name in cases, f"registered generator {name} has no case here"
    for name, extra in cases.items():
        files = []
        for attempt in ("a", "b"):
            run(*BASE, "-p", "a cat|a dog:-0.3", "-s", "32", "32", "-i", "4", "-q", "-d",
                "--augments", "Af,Pe,Ji,Er", "-o", out(f"det-{name}.png"), *extra)
            os.replace(out(f"det-{name}.png"), out(f"det-{name}-{attempt}.png"))
            files.append(open(out(f"det-{name}-{attempt}.png"), "rb").read())
        assert files[0] == files[1], f"{name}: two runs of the same command wrote different files"
        info = Image.open(out(f"det-{name}-a.png")).info
        assert info["clipguide:device"] == "cpu" and re.fullmatch(r"\d+\.\d+\.\d+", info["clipguide:torch"]), info
        assert "clipguide:version" in info and "deterministic=true" in info["clipguide:settings"], info
        print(f"  {name}: {len(files[0])} bytes, identical")
    # A random seed is recorded as the seed drawn: --from-png makes the same image again.
    proc = run("-m", MODEL, "--vocab", VOCAB, "--num_cuts", "4", "-p", "a cat", "-s", "32", "32", "-i", "3",
               "-o", out("drawn.png"))
    seed = int(re.search(r"seed (\d+)", proc.stderr).group(1))
    assert f"seed={seed}" in Image.open(out("drawn.png")).info["clipguide:settings"]
    run("--from-png", out("drawn.png"), "-o", out("drawn-again.png"), "-q")
    assert np.array_equal(pixels(out("drawn.png")), pixels(out("drawn-again.png"))), "--from-png of a random seed"


def test_two_processes_render_what_one_process_renders():
    """torchrun --no-python, 2 processes over c10d Gloo: each renders the image and scores its half of every
    step's cutouts (the cutouts one process draws), the gradients are summed before the optimiser steps.
    The loss curve is one process's (printed to 4 decimals: within 2e-4) and so is the image (one level)."""
    torchrun = os.path.join(os.path.dirname(os.environ.get("CLIPGUIDE_PYTHON", sys.executable)), "torchrun")
    assert os.path.exists(torchrun), f"no torchrun at {torchrun} (the venv's torch wheel ships it)"
    # A continuous generator: the VQGAN's nearest-code choice turns a last-bit difference in the summed
    # gradient (another summation order) into another code, and the runs part after a few steps.
    common = [*BASE, "-p", "a red circle|a blue square:-0.3", "-s", "32", "32", "-i", "6", "--save_every", "1",
              "--num_cuts", "5", "--augments", "Af,Pe,Ji", "--tv_weight", "0.1", "--generator", "fourier"]
    one = run(*common, "-o", out("one.png"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    two = subprocess.run([torchrun, "--no-python", "--standalone", "--nproc-per-node", "2", BIN, *common,
                          "-o", out("two.png")], capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, f"torchrun exited {two.returncode}: {two.stderr[-3000:]}"
    a, b = losses(one.stderr), losses(two.stderr + two.stdout)
    assert len(a) == 6 and len(b) == 6, (a, b, two.stderr[-2000:])  # rank 0 alone reports
    worst = max(abs(x - y) for x, y in zip(a, b))
    diff = np.abs(pixels(out("one.png")).astype(int) - pixels(out("two.png")).astype(int)).max()
    print(f"  1 process losses {a}\n  2 processes      {b}: max diff {worst:.1e}; pixels max diff {diff}")
    assert worst <= 2e-4 and diff <= 1, (a, b, diff)


def torchrun_two(*args):
    """clip-guide under torchrun --no-python with 2 processes over c10d Gloo (one thread each)."""
    torchrun = os.path.join(os.path.dirname(os.environ.get("CLIPGUIDE_PYTHON", sys.executable)), "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([torchrun, "--no-python", "--standalone", "--nproc-per-node", "2", BIN, *args],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, f"torchrun exited {proc.returncode}: {proc.stderr[-3000:]}"
    return proc


def test_two_processes_choose_the_trial_one_process_chooses():
    """--trials with 2 processes: each trial's steps share the cutouts and its score is summed over the
    processes, so both choose the start one process chooses, and the image is one process's; with -d the
    same 2-process command twice writes byte-identical PNGs."""
    common = [*BASE, "-p", "a red circle", "-s", "32", "32", "-i", "5", "--trials", "3", "--trial_steps", "2",
              "--num_cuts", "5", "--generator", "fourier"]
    one = run(*common, "-o", out("trials-one.png"))
    two = torchrun_two(*common, "-o", out("trials-two.png"))
    pick = r"trials of 2 steps, losses ([\d. ]+); continuing trial (\d+)"
    a, b = re.findall(pick, one.stderr), re.findall(pick, two.stderr + two.stdout)
    print(f"  1 process: {a}\n  2 processes: {b}")
    assert len(a) == 1 and len(b) == 1, two.stderr[-2000:]
    assert a[0][1] == b[0][1], "another trial was chosen"
    scores = zip(map(float, a[0][0].split()), map(float, b[0][0].split()))
    assert max(abs(x - y) for x, y in scores) <= 2e-4
    diff = np.abs(pixels(out("trials-one.png")) - pixels(out("trials-two.png"))).max()
    assert diff <= 1, diff
    # -d with cutouts shared over processes: the same command twice gives byte-identical PNGs.
    runs = []
    for _ in range(2):  # the same output path (it is part of the stored settings)
        torchrun_two(*common, "-d", "-o", out("shared.png"))
        with open(out("shared.png"), "rb") as f:
            runs.append(f.read())
    assert runs[0] == runs[1], "two identical 2-process runs wrote different PNGs"


def test_two_processes_share_a_prompts_file():
    """--prompts_file with 2 processes: the renders are dealt out (rank i % 2 makes render i whole and writes
    it), each is the image one process makes, every output is written once, rank 0 tallies them, and with -d
    the same command twice writes byte-identical files."""
    with open(out("queue.txt"), "w") as f:
        f.write("a red circle\n# a comment\nblue\ngreen:2\n")
    common = [*BASE, "--prompts_file", out("queue.txt"), "-s", "32", "32", "-i", "3", "--generator", "fourier", "-d"]
    run(*common, "-o", out("queue-one.png"))
    two = torchrun_two(*common, "-o", out("queue-two.png"))
    text = two.stderr + two.stdout
    print("  " + "\n  ".join(re.findall(r"clip-guide: \d+ of 3 renders written.*", text)))
    assert "clip-guide: 3 of 3 renders written (2 processes)" in text, text[-2000:]
    # -d with several processes: the same command twice gives byte-identical files.
    first = []
    for i in range(3):
        with open(out(f"queue-two-{i}.png"), "rb") as f:
            first.append(f.read())
    again = torchrun_two(*common, "-o", out("queue-two.png"))
    assert "3 of 3 renders written" in again.stderr + again.stdout
    for i in range(3):
        assert len(re.findall(re.escape(f"wrote {out(f'queue-two-{i}.png')}"), text)) == 1, text[-2000:]
        diff = np.abs(pixels(out(f"queue-one-{i}.png")) - pixels(out(f"queue-two-{i}.png"))).max()
        assert diff <= 1, (i, diff)
        with open(out(f"queue-two-{i}.png"), "rb") as f:
            assert f.read() == first[i], f"render {i} differs between two identical runs"
    assert not os.path.exists(out("queue-two-3.png"))


def test_memory_options_give_the_same_image():
    """--cutn_batches and --checkpoint change what is kept in memory, not the result (a VQGAN, 4 cutouts in 3 groups)."""
    vqgan = os.path.join(FIX, "vqgan")
    common = [*BASE, "-p", "a red circle", "-s", "32", "32", "-i", "4", "-q", "--augments", "Af,Ji",
              "--vqgan_checkpoint", os.path.join(vqgan, "vq.ckpt"), "--vqgan_config", os.path.join(vqgan, "vq.yaml")]
    run(*common, "-o", out("m1.png"))
    run(*common, "--cutn_batches", "3", "--checkpoint", "-o", out("m2.png"))
    a, b = pixels(out("m1.png")), pixels(out("m2.png"))
    print(f"  max pixel difference {np.abs(a - b).max()}")
    assert np.abs(a - b).max() <= 1, "micro-batches and checkpointing changed the image"
    assert "cutn_batches=3" in Image.open(out("m2.png")).info["clipguide:settings"]
    proc = run(*common, "--cutn_batches", "0", "-o", out("m3.png"), ok=False)
    assert proc.returncode != 0 and "--cutn_batches" in proc.stderr, proc.stderr


def test_max_memory_prints_its_plan_or_names_a_size_that_fits():
    """--max_memory: the plan is printed and stored as plain settings (so --from-png needs no planning); the
    probes read no weight file again; a budget nothing fits and a malformed one are one clear line each."""
    vqgan = os.path.join(FIX, "vqgan")
    common = [*BASE, "-p", "a red circle", "-s", "64", "48", "-i", "2", "--vqgan_checkpoint",
              os.path.join(vqgan, "vq.ckpt"), "--vqgan_config", os.path.join(vqgan, "vq.yaml")]
    proc = run(*common, "--max_memory", "64G", "-o", out("planned.png"), env=dict(os.environ, CLIPGUIDE_LOG_LOADS="1"))
    plan = re.findall(r"memory plan: (.*)", proc.stderr)
    peak = re.findall(r"peak memory ([\d.]+ [MG]iB)", proc.stderr)
    print(f"  plan: {plan}; peak {peak}")
    assert plan and plan[0].startswith("cutn_batches 1, no checkpointing: about"), proc.stderr
    assert "of the 64.0 GiB budget" in plan[0] and peak, proc.stderr
    assert len(re.findall(r"clipguide: read weights '([^']+)'", proc.stderr)) == 2, proc.stderr
    settings = Image.open(out("planned.png")).info["clipguide:settings"]
    assert re.search(r"cutn_batches\s*=\s*1\b", settings) or "cutn_batches" not in settings, settings
    assert not re.search(r'max_memory\s*=\s*"[^"]', settings), settings
    for budget, expected in (("1M", "--max_memory 1 MiB: the leanest plan"), ("lots", "--max_memory: expected a size")):
        proc = run(*common, "--max_memory", budget, "-o", out("unplanned.png"), ok=False)
        lines = proc.stderr.strip().splitlines()
        print(f"  --max_memory {budget}: exit {proc.returncode}: {lines[-1] if lines else ''}")
        assert proc.returncode != 0 and expected in lines[-1], proc.stderr
        assert "no size fits" in lines[-1] or budget == "lots", proc.stderr
        assert not os.path.exists(out("unplanned.png"))


def test_size_is_rounded_to_the_generator_factor():
    vqgan = os.path.join(FIX, "vqgan")
    proc = run(*BASE, "-p", "x", "-s", "45", "37", "-i", "1", "-o", out("r.png"), "-q",
               "--vqgan_checkpoint", os.path.join(vqgan, "vq.ckpt"))
    assert "rounded to 44x36" in proc.stderr, proc.stderr
    assert Image.open(out("r.png")).size == (44, 36)


def test_each_weight_file_is_read_once():
    # A prompts file of three renders with a VQGAN at a size that is rounded: CLIP and the VQGAN checkpoint
    # are read once for the whole run (they were read once per render, and the VQGAN twice when rounded).
    vqgan = os.path.join(FIX, "vqgan")
    with open(out("three.txt"), "w") as f:
        f.write("a red circle\nblue\ngreen:2\n")
    env = dict(os.environ, CLIPGUIDE_LOG_LOADS="1")
    proc = run(*BASE, "--prompts_file", out("three.txt"), "-s", "45", "37", "-i", "2", "-o", out("once.png"), "-q",
               "--vqgan_checkpoint", os.path.join(vqgan, "vq.ckpt"), "--vqgan_config", os.path.join(vqgan, "vq.yaml"),
               env=env)
    reads = re.findall(r"clipguide: read weights '([^']+)'", proc.stderr)
    print(f"  weight files read: {reads}")
    assert sorted(reads) == sorted([os.path.join(MODEL, "model.safetensors"), os.path.join(vqgan, "vq.ckpt")]), proc.stderr
    for i in range(3):
        assert Image.open(out(f"once-{i}.png")).size == (44, 36)
    # The three renders start from the same seed: the same prompt twice gives the same image.
    with open(out("same.txt"), "w") as f:
        f.write("blue\nblue\n")
    run(*BASE, "--prompts_file", out("same.txt"), "-s", "44", "36", "-i", "2", "-o", out("same.png"), "-q",
        "--vqgan_checkpoint", os.path.join(vqgan, "vq.ckpt"), "--vqgan_config", os.path.join(vqgan, "vq.yaml"))
    assert np.array_equal(pixels(out("same-0.png")), pixels(out("same-1.png"))), "a render did not start afresh"


def test_prompts_file_and_story_mode():
    with open(out("prompts.txt"), "w") as f:
        f.write("# two renders\na red circle\n\nblue:2\n")
    run(*BASE, "--prompts_file", out("prompts.txt"), "-s", "24", "24", "-i", "3", "-o", out("many.png"), "-q")
    assert os.path.exists(out("many-0.png")) and os.path.exists(out("many-1.png"))
    assert not os.path.exists(out("many-2.png"))
    proc = run(*BASE, "-p", "a red circle ^ a blue square", "--change_prompt_every", "4", "-s", "24", "24",
               "-i", "8", "--save_every", "4", "-o", out("story.png"))
    assert "a red circle" in proc.stderr and "a blue square" in proc.stderr, proc.stderr


def test_ctrl_c_saves_and_exits():
    p = subprocess.Popen([BIN, *BASE, "-p", "x", "-s", "32", "32", "-i", "100000", "--save_every", "1", "-o", out("int.png")],
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not os.path.exists(out("int.png")) and time.time() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, (p.returncode, err)
    assert "interrupted" in err and Image.open(out("int.png")).size == (32, 32)


def test_video_has_one_frame_per_step():
    proc = run(*BASE, "-p", "a red circle", "-s", "32", "24", "-i", "7", "--video", "-o", out("v.png"), "-q")
    assert "wrote " + out("v.mp4") in proc.stderr, proc.stderr
    frames, w, h, _ = ffprobe(out("v.mp4"))
    print(f"  v.mp4: {frames} frames {w}x{h}")
    assert (frames, w, h) == (7, 32, 24), (frames, w, h)
    # Dashed names, another container, a fixed frame rate; the settings travel in the PNG.
    run(*BASE, "-p", "a red circle", "-s", "32", "24", "-i", "5", "--video", "--video-output", out("v2.mkv"),
        "--output-video-fps", "12", "-o", out("v2.png"), "-q")
    frames, w, h, rate = ffprobe(out("v2.mkv"))
    assert (frames, w, h, rate) == (5, 32, 24, "12/1"), (frames, w, h, rate)
    settings = Image.open(out("v2.png")).info["clipguide:settings"]
    assert "video=true" in settings and "output_video_fps=12" in settings, settings
    run("--from-png", out("v2.png"), "-o", out("v3.png"), "--video_output", out("v3.mp4"), "-q")
    assert ffprobe(out("v3.mp4"))[:3] == (5, 32, 24)
    # The last frame is the saved image (up to H.264's loss, large on a 32x24 noise image): closer to it
    # than the first frame is.
    video = decoded_frames(out("v3.mp4"), 32, 24)
    image = pixels(out("v3.png"))
    last, first = np.abs(video[-1] - image).mean(), np.abs(video[0] - image).mean()
    print(f"  mean abs diff to the image: last frame {last:.2f}, first frame {first:.2f} / 255")
    assert last < first, (last, first)
    no_partial_files()


def test_zoom_video_frames_differ_and_the_run_finishes():
    cases = generator_cases()
    zoom = ["--zoom_video", "--zoom_frequency", "3", "--zoom_scale", "1.25", "--zoom_shift_x", "3", "--zoom_shift_y", "-2"]
    for name, extra in cases.items():
        png = out(f"z-{name}.png")
        run(*BASE, "-p", "a red circle", "-s", "32", "32", "-i", "9", *zoom, *extra, "-o", png, "-q")
        frames, w, h, _ = ffprobe(out(f"z-{name}.mp4"))
        assert (frames, w, h) == (4, 32, 32), (name, frames, w, h)  # steps 0, 3, 6 (before each zoom) and 9
        video = decoded_frames(out(f"z-{name}.mp4"), 32, 32)
        diffs = [float(np.abs(video[i + 1] - video[i]).mean()) for i in range(len(video) - 1)]
        print(f"  {name}: {frames} frames, mean abs diff between frames {[round(d, 1) for d in diffs]}")
        assert all(d > 1.0 for d in diffs), (name, diffs)
    settings = Image.open(out("z-pixel.png")).info["clipguide:settings"]
    for key in ("zoom_video=true", "zoom_frequency=3", "zoom_scale=1.25", "zoom_shift_x=3", "zoom_shift_y=-2"):
        assert key in settings, (key, settings)
    # The zoom run is reproduced from its PNG and from TOML; --zoom_save_every is generate.py's name.
    run("--from-png", out("z-vqgan.png"), "-o", out("z2.png"), "-q")
    assert (pixels(out("z-vqgan.png")) == pixels(out("z2.png"))).all(), "zoom run from PNG differs"
    assert ffprobe(out("z2.mp4"))[0] == 4
    with open(out("z.toml"), "w") as f:
        f.write(settings.replace(out("z-pixel.png"), out("z3.png")).replace("zoom_frequency=3", "zoom_frequency=4"))
    run("--config", out("z.toml"), "-q")
    assert ffprobe(out("z3.mp4"))[0] == 4, "steps 0, 4, 8, 9"
    run(*BASE, "-p", "x", "-s", "32", "32", "-i", "4", "--zoom_video", "--zoom_save_every", "2", "-o", out("z4.png"), "-q")
    assert ffprobe(out("z4.mp4"))[0] == 3, "steps 0, 2, 4"
    no_partial_files()


def test_missing_ffmpeg_is_a_clear_error_before_the_run():
    empty = os.path.join(TMP, "empty-bin")
    os.makedirs(empty, exist_ok=True)
    env = dict(os.environ, PATH=empty)
    for flag in ("--video", "--zoom_video"):
        png = out(f"noff{flag}.png")
        proc = subprocess.run([BIN, *BASE, "-p", "x", "-s", "32", "32", "-i", "3", flag, "-o", png],
                              capture_output=True, text=True, env=env, timeout=300)
        lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
        print(f"  {flag}: exit {proc.returncode}: {lines}")
        assert proc.returncode == 1 and len(lines) == 1, (proc.returncode, proc.stderr)
        assert "ffmpeg" in lines[0] and flag in lines[0], lines[0]
        assert not os.path.exists(png), "the run must not start"


def test_ctrl_c_finalises_the_video():
    p = subprocess.Popen([BIN, *BASE, "-p", "x", "-s", "32", "32", "-i", "100000", "--save_every", "1", "--video",
                          "-o", out("vint.png")], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not os.path.exists(out("vint.png")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, (p.returncode, err)
    frames, w, h, _ = ffprobe(out("vint.mp4"))
    print(f"  interrupted run: {frames} frames")
    assert frames >= 1 and (w, h) == (32, 32), (frames, w, h)
    assert Image.open(out("vint.png")).size == (32, 32)
    no_partial_files()


def test_help_lists_flags_with_defaults():
    text = run("--help").stdout
    for flag in ("--prompts", "--image_prompts", "--iterations", "--size", "--seed", "--output", "--learning_rate",
                 "--num_cuts", "--cut_power", "--cut_method", "--augments", "--optimiser", "--init_image",
                 "--init_noise", "--save_every", "--clip_model", "--vqgan_config", "--vqgan_checkpoint", "--vocab",
                 "--from-png", "--config", "--device", "--deterministic", "--video", "--video_output",
                 "--video_length", "--output_video_fps", "--zoom_video", "--zoom_start", "--zoom_frequency",
                 "--zoom_scale", "--zoom_shift_x", "--zoom_shift_y"):
        assert flag in text, flag
    assert "=500" in text and "=latest" in text and "=0.99" in text, "defaults are shown"


def test_errors_are_one_clear_line():
    cases = [
        (["--seed", "1"], 1, "--prompts"),  # no -m: the shipped default model, then no prompt
        ([*BASE, "-p", "x", "--augments", "warp"], 1, "warp"),
        ([*BASE, "-p", "x", "--cut_method", "square"], 1, "square"),
        ([*BASE, "-p", "a||b"], 1, "empty prompt"),
        ([*BASE, "-p", "x", "--generator", "dalle"], 1, "dalle"),
        ([*BASE, "-p", "x", "--optimiser", "lbfgs2"], 1, "lbfgs2"),
        ([*BASE, "-p", "x", "-s", "0", "10"], 1, "--size"),
        ([*BASE, "-p", "x", "--init_image", out("missing.png")], 1, "missing.png"),
        (["-m", out("nothing.pt"), "--vocab", VOCAB, "-p", "x", "--seed", "1"], 1, "nothing.pt"),
        ([*BASE, "-p", "x", "--no-such-flag"], 2, "--no-such-flag"),
        (["--from-png", out("missing.png")], 1, "missing.png"),
        ([*BASE, "-p", "x", "--video", "--video_output", out("v.avi")], 1, "--video_output"),
        ([*BASE, "-p", "x", "--zoom_video", "--zoom_frequency", "0"], 1, "--zoom_frequency"),
        ([*BASE, "-p", "x", "--video", "--video_length", "0"], 1, "--video_length"),
        ([*BASE, "-p", "x", "--trials", "0"], 1, "--trials"),
        ([*BASE, "-p", "x", "--trials", "2", "--trial_steps", "-1"], 1, "--trial_steps"),
        ([*BASE, "-p", "x", "--trials", "2", "--trial_steps", "1", "--init_noise", "pixels"], 1, "--init_noise"),
    ]
    for args, code, needle in cases:
        proc = run(*args, "-i", "1", ok=False)
        lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
        assert proc.returncode == code, f"{args}: exit {proc.returncode}, stderr {proc.stderr!r}"
        assert len(lines) == 1 and needle in lines[0], f"{args}: stderr {proc.stderr!r}"
        print(f"  {needle}: {lines[0]}")


def test_a_divergent_run_stops_and_keeps_the_last_finite_image():
    """A generator that breaks when its latent grows (fixture diverging.pt: NaN once the latent's RMS passes
    10), driven with --learning_rate 1e6: one line naming the step whose loss stopped being finite, exit 1,
    and the output is the last finite step's image (no NaN ever reaches a PNG)."""
    ts = os.path.join(FIX, "torchscript_generators", "diverging.pt")
    path = out("diverging.png")
    proc = run(*BASE, "-p", "a cat", "-s", "32", "32", "-i", "20", "--save_every", "1", "-o", path, "--generator",
               "torchscript", "--generator_weights", ts, "--generator_option", "latent_shape=1,16",
               "--learning_rate", "1e6", ok=False)
    errors = [l for l in proc.stderr.splitlines() if "error" in l]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr
    m = re.search(r"the loss is NaN at step (\d+).*wrote the image of step (\d+)", errors[0])
    assert m and int(m.group(2)) == int(m.group(1)) - 1 >= 1, errors[0]
    print(f"  {errors[0]}")
    assert pixels(path).shape == (32, 32, 3)


def test_kill_9_leaves_the_output_absent_or_a_valid_png():
    """SIGKILL at random moments of runs that write the output every step: the output is always either
    absent or a complete PNG of the right size (a tally is printed, with the temporary files a kill in the
    middle of a write leaves beside it: hidden '.<stem>.tmp-*' names, never the output's)."""
    import random
    rng = random.Random(11)
    folder = tempfile.mkdtemp(prefix="kill-", dir=TMP)
    tally = {"absent": 0, "valid": 0}
    for k in range(12):
        path = os.path.join(folder, f"k{k}.png")
        p = subprocess.Popen([BIN, *BASE, "-p", "x", "-s", "48", "48", "-i", "100000", "--save_every", "1", "-q",
                              "-o", path], stderr=subprocess.DEVNULL)
        if k % 2 == 0:
            # After the first save (whenever that is: a sanitizer build starts slower), at a random moment of
            # the writes that follow: the earlier output must survive a kill during the next write.
            started = time.monotonic()
            while not os.path.exists(path) and p.poll() is None and time.monotonic() - started < 120:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.5))
        else:
            time.sleep(rng.uniform(0.05, 3.0))  # any moment, start-up included
        p.kill()
        p.wait()
        if not os.path.exists(path):
            tally["absent"] += 1
            continue
        with Image.open(path) as im:
            im.load()  # decodes every row: a cut file raises here
            assert im.size == (48, 48) and im.format == "PNG", (path, im.size, im.format)
        tally["valid"] += 1
    temporaries = [f for f in os.listdir(folder) if ".tmp-" in f]
    assert all(f.startswith(".") for f in temporaries), temporaries
    print(f"  12 kills: {tally['valid']} valid PNG, {tally['absent']} absent (killed before the first save), "
          f"{len(temporaries)} temporary files left by kills during a write")
    assert tally["valid"] >= 6, tally


def in_mount(script):
    """Runs a shell script in a private mount namespace (root, or a user namespace mapped to root), so it
    can mount a small tmpfs at $D; its stdout and stderr come back."""
    return subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", script], capture_output=True,
                          text=True, timeout=300)


def test_outputs_to_missing_read_only_and_full_folders():
    """A missing folder and a read-only one are refused before anything is loaded (one line naming
    --output); a full filesystem fails at the write with one line, leaves no partial file, and the earlier
    output of the same name is still the complete image it was."""
    args = " ".join(f"'{a}'" for a in [BIN, *BASE, "-p", "x", "-s", "64", "64", "-i", "2"])
    proc = run(*BASE, "-p", "x", "-i", "2", "-o", out("no/such/folder/x.png"), ok=False)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "--output" in lines[0] and "does not exist" in lines[0], proc.stderr
    print(f"  {lines[0]}")
    d = tempfile.mkdtemp(prefix="mnt-", dir=TMP)
    ro = in_mount(f"mount -t tmpfs -o size=1m tmpfs {d} && mount -o remount,ro {d} && {args} -o {d}/x.png; echo rc=$?")
    lines = [l for l in ro.stderr.splitlines() if l.strip()]
    assert "rc=1" in ro.stdout and len(lines) == 1 and "--output" in lines[0] and "Read-only" in lines[0], (ro.stdout, ro.stderr)
    print(f"  {lines[0]}")
    # Full: a first run writes x.png; the disk is then filled (dd stops at ENOSPC) and a second run fails.
    full = in_mount(f"""set -u
mount -t tmpfs -o size=256k tmpfs {d} || exit 9
{args} -q -o {d}/x.png 2>/dev/null || exit 8
before=$(md5sum < {d}/x.png)
dd if=/dev/zero of={d}/fill bs=4k 2>/dev/null
{args} --seed 4 -o {d}/x.png; echo rc=$?
echo "same=$([ "$(md5sum < {d}/x.png)" = "$before" ] && echo yes || echo no)"
echo "files=$(ls -A {d} | tr '\n' ' ')"
""")
    lines = [l for l in full.stderr.splitlines() if l.strip() and not l.startswith("[")]
    assert "rc=1" in full.stdout, (full.stdout, full.stderr)
    assert len(lines) == 1 and "x.png" in lines[0] and "no space left" in lines[0], full.stderr
    assert "same=yes" in full.stdout and "files=fill x.png " in full.stdout, full.stdout
    print(f"  {lines[0]}")


def main():
    return script_tests.run_tests(globals(), VOCAB)


if __name__ == "__main__":
    sys.exit(main())
