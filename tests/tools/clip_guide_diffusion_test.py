#!/usr/bin/env python3
"""End-to-end tests of clip-guide --generator diffusion on the diffusion fixture's small random-weight
guided-diffusion model (a.pt + a.json: 32x32, 100 diffusion steps) and a tiny random-weight CLIP (fixture
clip_parity): every sampler writes an image of the asked size; the same command twice, and --from-png, give
byte-identical PNGs; CLIP guidance changes the image and lowers the CLIP loss against the unguided sample;
--mask keeps --init_image where it is black; --save_every writes the x0 prediction; --prompts_file renders
one image per line; bad flags and files get one-line errors naming them.

Run by ctest with env CLIPGUIDE_BINARY_DIR, CLIPGUIDE_FIXTURES, CLIPGUIDE_TEST_DATA. Prints a closing
'N passed, N failed' line; exit status 1 on any failure.
"""
import os
import re
import sys
import tempfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import script_tests  # noqa: E402  (tests/script_tests.py)

BIN = os.path.join(os.environ["CLIPGUIDE_BINARY_DIR"], "tools", "clip-guide")
FIX = os.environ["CLIPGUIDE_FIXTURES"]
VOCAB = os.path.join(os.environ["CLIPGUIDE_TEST_DATA"], "openai-clip", "bpe_simple_vocab_16e6.txt.gz")
CLIP = os.path.join(FIX, "clip_parity", "hf_clip")
UNET = os.path.join(FIX, "diffusion", "a.pt")
CONFIG = os.path.join(FIX, "diffusion", "a.json")
BASE = ["-m", CLIP, "--vocab", VOCAB, "--diffusion_model", UNET, "--diffusion_config", CONFIG, "--seed", "3",
        "--steps", "10", "-s", "32", "32", "--cut_overview", "2", "--cut_innercut", "2", "--cutn_batches", "1"]
TMP = tempfile.mkdtemp(prefix="clip-guide-diffusion-test-")


run = script_tests.tool_runner(BIN)
pixels = script_tests.pixels
losses = script_tests.losses


def out(name):
    return os.path.join(TMP, name)


def test_every_sampler_writes_an_image_of_the_asked_size():
    for sampler in ["ddim", "plms", "ddpm"]:
        proc = run(*BASE, "-p", "a red circle", "--sampler", sampler, "--save_every", "5", "-o", out(f"{sampler}.png"))
        assert Image.open(out(f"{sampler}.png")).size == (32, 32), sampler
        assert "10/10" in proc.stderr, proc.stderr
        settings = Image.open(out(f"{sampler}.png")).info["clipguide:settings"]
        assert f'sampler = "{sampler}"' in settings or f"sampler=\"{sampler}\"" in settings.replace(" ", ""), settings
        print(f"  {sampler}: losses {losses(proc.stderr)}")


def test_same_command_and_from_png_give_identical_images():
    args = [*BASE, "-p", "blue sky", "--eta", "0.5"]
    run(*args, "-o", out("r1.png"), "-q")
    run(*args, "-o", out("r2.png"), "-q")
    assert (pixels(out("r1.png")) == pixels(out("r2.png"))).all(), "two runs differ"  # (the metadata names each output)
    run("--from-png", out("r1.png"), "-o", out("r3.png"), "-q")
    assert (pixels(out("r1.png")) == pixels(out("r3.png"))).all(), "--from-png differs"
    run(*args, "--seed", "4", "-o", out("r4.png"), "-q")
    assert (pixels(out("r1.png")) != pixels(out("r4.png"))).any(), "another seed gave the same image"


def test_guidance_changes_the_image_and_raises_the_clip_similarity():
    # Deterministic DDIM from one x_T, guided and all but unguided (a negligible scale still reports the
    # similarity). The cutouts of a step are the same in both runs (seeded by the step).
    common = [*BASE, "-p", "a green square", "--eta", "0", "--range_scale", "0", "--clamp_max", "0"]
    guided = run(*common, "--clip_guidance_scale", "20000", "-o", out("g.png"))
    plain = run(*common, "--clip_guidance_scale", "1e-9", "-o", out("u.png"))
    assert (pixels(out("g.png")) != pixels(out("u.png"))).any(), "guidance changed nothing"
    sim_g = [float(s) for s in re.findall(r"sim (\S+)\]", guided.stderr)]
    sim_u = [float(s) for s in re.findall(r"sim (\S+)\]", plain.stderr)]
    print(f"  similarity of the last x0: guided {sim_g[-1]:.4f}, unguided {sim_u[-1]:.4f}")
    assert sim_g[-1] > sim_u[-1], (sim_g, sim_u)


def test_mask_keeps_the_init_image_where_black():
    init = (np.random.default_rng(1).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(init).save(out("init.png"))
    mask = np.zeros((32, 32), np.uint8)
    mask[:, :16] = 255  # the left half is generated
    Image.fromarray(mask).save(out("mask.png"))
    run(*BASE, "-p", "a cat", "--init_image", out("init.png"), "--mask", out("mask.png"), "--skip_steps", "3",
        "-o", out("m.png"), "-q")
    got = pixels(out("m.png"))
    right = np.abs(got[:, 20:] - init[:, 20:].astype(np.int64)).max()  # away from the resize's blur at the edge
    left = np.abs(got[:, :12] - init[:, :12].astype(np.int64)).mean()
    print(f"  kept half max |diff| {right}, generated half mean |diff| {left:.1f}")
    assert right <= 1, right
    assert left > 10, left


def test_prompts_file_renders_one_image_per_line():
    with open(out("prompts.txt"), "w") as f:
        f.write("a red circle\n# a comment\na blue square\n")
    run(*BASE, "--prompts_file", out("prompts.txt"), "-o", out("q.png"), "-q")
    assert os.path.exists(out("q-0.png")) and os.path.exists(out("q-1.png"))
    assert (pixels(out("q-0.png")) != pixels(out("q-1.png"))).any()


def test_bad_flags_and_files_get_one_line_errors():
    cases = [
        (["--diffusion_model", out("missing.pt")], "missing.pt"),
        (["--sampler", "euler"], "--sampler"),
        (["--cut_overview", "[12]*400+[4]"], "--cut_overview"),
        (["--skip_steps", "10"], "--skip_steps"),
        (["--mask", out("mask.png")], "--mask: needs --init_image"),
        (["--max_memory", "4G"], "--max_memory"),
        (["--steps", "500"], "--steps 500"),
        (["--size", "2", "2"], "multiples of 4"),
    ]
    with open(out("bad.json"), "w") as f:
        f.write('{"num_chanels": 64}')
    cases.append((["--diffusion_config", out("bad.json")], "unknown key 'num_chanels'"))
    for extra, expected in cases:
        proc = run(*BASE, "-p", "x", *extra, "-o", out("bad.png"), ok=False)
        assert proc.returncode != 0, extra
        message = proc.stderr.strip().splitlines()[-1]
        assert expected in message, f"{extra}: {message}"
        assert "Traceback" not in proc.stderr and "terminate called" not in proc.stderr, proc.stderr


def main():
    return script_tests.run_tests(globals(), VOCAB)


if __name__ == "__main__":
    sys.exit(main())
