#!/usr/bin/env python3
"""VQGAN+CLIP users' command lines run unchanged: every flag of the reference CLI's argparse
(nerdyrodent/VQGAN-CLIP generate.py), short and long, each with a value it accepts, runs clip-guide to the
end on small fixtures (a tiny random CLIP, a tiny taming VQGAN), and the setting it names arrives (read back
from the settings clip-guide stores in the PNG). Also the argparse conventions: --flag=value, unambiguous
prefixes (an ambiguous one is an error naming the candidates), several values after one flag, repeated
flags (the last wins; augmentation lists accumulate), and every value name the reference accepts
(optimisers as it spells them, its augmentation codes and cut methods).

Run by ctest with env CLIPGUIDE_BINARY_DIR, CLIPGUIDE_FIXTURES, CLIPGUIDE_TEST_DATA.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import traceback

import numpy as np
from PIL import Image

BIN = os.path.join(os.environ["CLIPGUIDE_BINARY_DIR"], "tools", "clip-guide")
FIX = os.environ["CLIPGUIDE_FIXTURES"]
VOCAB = os.path.join(os.environ["CLIPGUIDE_TEST_DATA"], "openai-clip", "bpe_simple_vocab_16e6.txt.gz")
MODEL = os.path.join(FIX, "clip_parity", "hf_clip")
CKPT = os.path.join(FIX, "vqgan", "vq.ckpt")
YAML = os.path.join(FIX, "vqgan", "vq.yaml")
TMP = tempfile.mkdtemp(prefix="reference-cli-test-")
HAVE_FFMPEG = shutil.which("ffmpeg") is not None


def path(name):
    return os.path.join(TMP, name)


def picture(name, colour):
    p = path(name)
    a = np.zeros((40, 48, 3), np.uint8)
    a[...] = colour
    a[10:30, 12:36] = 255 - np.array(colour, np.uint8)
    Image.fromarray(a).save(p)
    return p


IMG = picture("prompt.png", (200, 30, 30))
FRAMES = os.path.join(TMP, "frames")
os.makedirs(FRAMES)
for i, c in enumerate([(10, 200, 10), (10, 10, 200)]):
    shutil.copy(picture(f"f{i}.png", c), os.path.join(FRAMES, f"frame{i:03d}.png"))

# The reference CLI's flags (generate.py's add_argument lines): short, long, a value list, the TOML key that
# receives it and the value expected there (None: only that the run succeeds), extra flags it needs.
REFERENCE_FLAGS = [
    ("-p", "--prompts", ["a green field"], "prompts", "a green field", []),
    ("-ip", "--image_prompts", [IMG], "image_prompts", IMG, []),
    ("-i", "--iterations", ["3"], "iterations", 3, []),
    ("-se", "--save_every", ["1"], "save_every", 1, []),
    ("-s", "--size", ["48", "32"], "size", [48, 32], []),
    ("-ii", "--init_image", [IMG], "init_image", IMG, []),
    ("-in", "--init_noise", ["gradient"], "init_noise", "gradient", []),
    ("-iw", "--init_weight", ["0.5"], "init_weight", 0.5, []),
    ("-m", "--clip_model", [MODEL], "clip_model", MODEL, []),
    ("-conf", "--vqgan_config", [YAML], "vqgan_config", YAML, []),
    ("-ckpt", "--vqgan_checkpoint", [CKPT], "vqgan_checkpoint", CKPT, []),
    ("-nps", "--noise_prompt_seeds", ["4", "5"], "noise_prompt_seeds", [4, 5], ["--noise_prompt_weights", "0.5", "0.25"]),
    ("-npw", "--noise_prompt_weights", ["0.5", "0.25"], "noise_prompt_weights", [0.5, 0.25], ["--noise_prompt_seeds", "4", "5"]),
    ("-lr", "--learning_rate", ["0.2"], "learning_rate", 0.2, []),
    ("-cutm", "--cut_method", ["original"], "cut_method", "random", []),
    ("-cuts", "--num_cuts", ["3"], "num_cuts", 3, []),
    ("-cutp", "--cut_power", ["0.8"], "cut_power", 0.8, []),
    ("-sd", "--seed", ["42"], "seed", 42, []),
    ("-opt", "--optimiser", ["AdamW"], "optimiser", "adamw", []),
    ("-o", "--output", None, "output", None, []),  # the value is the output path itself
    ("-vid", "--video", [], "video", True, []),
    ("-zvid", "--zoom_video", [], "zoom_video", True, []),
    ("-zs", "--zoom_start", ["1"], "zoom_start", 1, ["--zoom_video"]),
    ("-zse", "--zoom_save_every", ["1"], "zoom_frequency", 1, ["--zoom_video"]),
    ("-zsc", "--zoom_scale", ["1.05"], "zoom_scale", 1.05, ["--zoom_video"]),
    ("-zsx", "--zoom_shift_x", ["-2"], "zoom_shift_x", -2, ["--zoom_video"]),
    ("-zsy", "--zoom_shift_y", ["2"], "zoom_shift_y", 2, ["--zoom_video"]),
    ("-cpe", "--change_prompt_every", ["1"], "change_prompt_every", 1, ["--prompts", "a cat^a dog"]),
    ("-vl", "--video_length", ["2"], "video_length", 2.0, ["--video"]),
    ("-ofps", "--output_video_fps", ["30"], "output_video_fps", 30.0, ["--video"]),
    ("-ifps", "--input_video_fps", ["10"], "input_video_fps", 10.0, ["--video", "--output_video_fps", "20"]),
    ("-d", "--deterministic", [], "deterministic", True, []),
    ("-aug", "--augments", ["Ji", "Sh", "Gn"], "augments", "Ji,Sh,Gn", []),
    ("-vsd", "--video_style_dir", [FRAMES], "video_style_dir", FRAMES, []),
    ("-cd", "--cuda_device", ["cuda:0"], "cuda_device", "cuda:0", []),
]
NEEDS_FFMPEG = {"--video", "--zoom_video", "--video_length", "--output_video_fps", "--input_video_fps",
                "--zoom_start", "--zoom_save_every", "--zoom_scale", "--zoom_shift_x", "--zoom_shift_y"}


def base(output):
    return ["--clip_model", MODEL, "--vocab", VOCAB, "--vqgan_checkpoint", CKPT, "--vqgan_config", YAML,
            "--size", "32", "32", "--iterations", "2", "--num_cuts", "2", "--seed", "3", "--save_every", "0",
            "--prompts", "a red square", "--quiet", "--output", output]


def run(args, ok=True):
    proc = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)
    if ok and proc.returncode != 0:
        raise AssertionError(f"clip-guide {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def settings(png):
    with Image.open(png) as im:
        return tomllib.loads(im.text["clipguide:settings"])


def check_value(key, got, want):
    if isinstance(want, float):
        assert abs(got - want) < 1e-9, f"{key}: {got} != {want}"
    else:
        assert got == want, f"{key}: {got!r} != {want!r}"


def flag_case(flag, short, long, values, key, want, extra):
    name = (flag + "_" + long).strip("-").replace("-", "_")
    out = path(name + ".png")
    if values is None:  # -o / --output: the flag's value is the output
        run(base(path("unused.png")) + [flag, out])
        assert os.path.exists(out), f"{flag} did not write {out}"
        check_value(key, settings(out)["output"], out)
        return
    args = base(out)
    if key == "clip_model":  # generate.py takes one model: the flag replaces the base's (repeats make an ensemble)
        i = args.index("--clip_model")
        del args[i:i + 2]
    run(args + extra + [flag, *values])
    if key == "video_style_dir":  # styled frames land in <output stem>/<frame name>.png
        styled = sorted(os.listdir(path(name)))
        assert styled == ["frame000.png", "frame001.png"], styled
        s = settings(os.path.join(path(name), "frame000.png"))
    else:
        assert os.path.exists(out), f"{flag}: no {out}"
        s = settings(out)
    check_value(key, s[key], want)


def test_every_reference_flag_short_and_long():
    failures = []
    count = 0
    for short, long, values, key, want, extra in REFERENCE_FLAGS:
        if long in NEEDS_FFMPEG and not HAVE_FFMPEG:
            failures.append(f"{long}: ffmpeg is not installed (scripts/setup.sh installs it)")
            continue
        for flag in (short, long):
            count += 1
            try:
                flag_case(flag, short, long, values, key, want, extra)
            except AssertionError as e:
                failures.append(f"{flag}: {e}")
    assert not failures, f"{len(failures)} of {count} reference flags failed:\n  " + "\n  ".join(failures)
    print(f"  all {count} reference flags (short and long) ran")


def test_reference_value_names():
    names = {
        "--optimiser": [("Adam", "adam"), ("AdamW", "adamw"), ("Adagrad", "adagrad"), ("Adamax", "adamax"),
                        ("DiffGrad", "diffgrad"), ("AdamP", "adamp"), ("RAdam", "radam"), ("RMSprop", "rmsprop")],
        "--cut_method": [("original", "random"), ("updated", "random"), ("nrupdated", "random"),
                         ("updatedpooling", "latest"), ("latest", "latest")],
        "--augments": [(c, c) for c in ["Ji", "Sh", "Gn", "Pe", "Ro", "Af", "Et", "Ts", "Cr", "Er", "Re"]],
    }
    failures = []
    for flag, pairs in names.items():
        for given, stored in pairs:
            out = path(f"value_{flag.strip('-')}_{given}.png")
            try:
                run(base(out) + [flag, given])
                check_value(flag, settings(out)[flag.strip("-")], stored)
            except AssertionError as e:
                failures.append(str(e))
    assert not failures, "\n  ".join(failures)


def test_argparse_conventions():
    out = path("conv.png")
    # --flag=value, a unique prefix, several values after one flag, an augmentation list over repeats.
    run(base(out) + ["--seed=7", "--iter", "1", "--num_c=3", "-aug", "Ji", "Sh", "--augments", "Gn", "--lear", "0.3"])
    s = settings(out)
    assert (s["seed"], s["iterations"], s["num_cuts"], s["augments"]) == (7, 1, 3, "Ji,Sh,Gn"), s
    check_value("learning_rate", s["learning_rate"], 0.3)
    # A repeated scalar: the last one wins (argparse), in any spelling.
    run(base(out) + ["-sd", "1", "--seed", "2", "-p", "first", "--prompts", "second"])
    s = settings(out)
    assert (s["seed"], s["prompts"]) == (2, "second"), s
    # A prefix of several flags is an error naming them; exit status 2 like any bad flag.
    proc = run(base(out) + ["--cut", "0.5"], ok=False)
    assert proc.returncode == 2, proc.returncode
    assert "ambiguous" in proc.stderr and "--cut_power" in proc.stderr and "--cut_method" in proc.stderr, proc.stderr
    # Bad values name the flag and what it takes.
    proc = run(base(out) + ["-opt", "Adamm"], ok=False)
    assert proc.returncode != 0 and "--optimiser" in proc.stderr and "adamax" in proc.stderr.lower(), proc.stderr
    proc = run(base(out) + ["-cutm", "sideways"], ok=False)
    assert proc.returncode != 0 and "--cut_method" in proc.stderr and "updatedpooling" in proc.stderr, proc.stderr
    proc = run(base(out) + ["-aug", "Xx"], ok=False)
    assert proc.returncode != 0 and "Xx" in proc.stderr and "Ro" in proc.stderr, proc.stderr
    proc = run(base(out) + ["-nps", "1", "2", "-npw", "0.5"], ok=False)
    assert proc.returncode != 0 and "--noise_prompt_weights" in proc.stderr, proc.stderr


def test_noise_prompts_change_the_result():
    # Free pixels, so that every gradient shows (a VQGAN's codes change only after larger steps).
    a, b, c = path("np_a.png"), path("np_b.png"), path("np_c.png")
    pixel = ["--iterations", "4", "--generator", "pixel"]
    run(base(a) + pixel)
    run(base(b) + pixel + ["-nps", "11", "-npw", "2.0"])
    run(base(c) + pixel + ["-nps", "11", "-npw", "2.0"])
    pa, pb, pc = (np.asarray(Image.open(p)) for p in (a, b, c))
    assert (pa != pb).any(), "a noise prompt did not change the render"
    assert (pb == pc).all(), "the same noise prompt seed gave a different render"


def test_init_weight_without_init_image_anchors_the_start():
    # generate.py anchors its first latent when --init_weight is given without an image: a large weight keeps
    # the result near the start.
    free, anchored, start = path("iw_free.png"), path("iw_anchor.png"), path("iw_start.png")
    run(base(start) + ["--iterations", "0"])
    run(base(free) + ["--iterations", "6", "--learning_rate", "0.5"])
    run(base(anchored) + ["--iterations", "6", "--learning_rate", "0.5", "-iw", "1000"])
    s, f, a = (np.asarray(Image.open(p)).astype(np.float64) for p in (start, free, anchored))
    assert np.abs(a - s).mean() < np.abs(f - s).mean(), (np.abs(a - s).mean(), np.abs(f - s).mean())


def main():
    tests = [v for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]
    failed = 0
    for t in tests:
        try:
            t()
            print(f"PASS {t.__name__}")
        except Exception:  # noqa: BLE001 - report every failure, then fail
            failed += 1
            print(f"FAIL {t.__name__}")
            traceback.print_exc()
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
