#!/usr/bin/env python3
"""End-to-end tests of the clip-embed tool: its JSON against the Python reference packages run on the same
files (openai-clip's clip.load + preprocess + tokenize; transformers' CLIPModel), every supported weight
format, --npy, zero-shot ensembles, and error handling (one clear line on stderr, non-zero exit).

Run by ctest with env CLIPGUIDE_BINARY_DIR, CLIPGUIDE_FIXTURES, CLIPGUIDE_TEST_DATA. Prints a closing
'N passed, N failed' line; exit status 1 on any failure.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import script_tests  # noqa: E402  (tests/script_tests.py)

BIN = os.path.join(os.environ["CLIPGUIDE_BINARY_DIR"], "tools", "clip-embed")
FIX = os.environ["CLIPGUIDE_FIXTURES"]
VOCAB = os.path.join(os.environ["CLIPGUIDE_TEST_DATA"], "openai-clip", "bpe_simple_vocab_16e6.txt.gz")
PARITY = os.path.join(FIX, "clip_parity")
IMAGES = [os.path.join(FIX, "preprocess", f) for f in ("landscape.png", "tall.png", "photo.jpg")]
TEXTS = ["a red circle on a blue background", "a photo of a dog", "Ünïcödé &amp; emoji 🎨 text"]


def run(*args, ok=True):
    proc = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)
    if ok and proc.returncode != 0:
        raise AssertionError(f"clip-embed {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def embed(*args):
    return json.loads(run(*args).stdout)


def max_diff(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def check_close(name, got, want, atol):
    d = max_diff(got, want)
    print(f"  {name}: max abs diff {d:.3g} (atol {atol})")
    assert np.asarray(got).shape == np.asarray(want).shape, f"{name}: shape {np.asarray(got).shape} vs {np.asarray(want).shape}"
    assert d <= atol, f"{name}: max abs diff {d} > {atol}"


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


# Preprocessing agrees with PIL to one grey level on some pixels (Pillow's pass order, see
# clipnet/preprocess.h); on these small random models, whose 32-pixel inputs are heavily downsampled and
# whose embeddings have norms of ~5, that moves image embeddings by up to ~4e-3. Texts go through
# identical token ids and match to float rounding. (clipnet_clip_model_test checks the model itself at 1e-4.)
IMAGE_ATOL, TEXT_ATOL = 1e-2, 1e-4


def test_openai_jit_file_against_openai_clip():
    import clip
    from PIL import Image
    path = os.path.join(PARITY, "openai_vit_jit", "model.pt")
    model, preprocess = clip.load(path, device="cpu", jit=False)
    model = model.float().eval()
    out = embed("--model", path, "--vocab", VOCAB, *sum([["--text", t] for t in TEXTS], []),
                *sum([["--image", i] for i in IMAGES], []))
    tokens = clip.tokenize(TEXTS)
    want_tokens = [row[: int((row == 49407).nonzero()[0]) + 1].tolist() for row in tokens]
    assert out["tokens"] == want_tokens, f"tokens differ: {out['tokens']} vs {want_tokens}"
    with torch.no_grad():
        images = torch.stack([preprocess(Image.open(i)) for i in IMAGES])
        img = model.encode_image(images)
        txt = model.encode_text(tokens)
        logits, _ = model(images, tokens)
    check_close("text_embeddings", out["text_embeddings"], txt, TEXT_ATOL)
    check_close("image_embeddings", out["image_embeddings"], img, IMAGE_ATOL)
    check_close("logits_per_image", out["logits_per_image"], logits, 100 * IMAGE_ATOL)


def test_hf_folder_against_transformers_and_zero_shot():
    import clip
    import transformers
    from PIL import Image
    folder = os.path.join(PARITY, "hf_clip")
    model = transformers.CLIPModel.from_pretrained(folder).eval()
    size = model.config.vision_config.image_size
    # openai-clip's pipeline with the folder's own normalisation (preprocessor_config.json).
    from torchvision.transforms import Normalize
    processor = json.load(open(os.path.join(folder, "preprocessor_config.json")))
    preprocess = clip.clip._transform(size)
    preprocess.transforms[-1] = Normalize(processor["image_mean"], processor["image_std"])
    labels = ["cat", "dog", "red circle"]
    templates = ["a photo of a {}.", "a drawing of the {}"]
    out = embed("--model", folder, "--vocab", VOCAB, "--image", IMAGES[0], "--image", IMAGES[2],
                "--labels", ",".join(labels), *sum([["--template", t] for t in templates], []))
    features = lambda o: o if isinstance(o, torch.Tensor) else o.pooler_output
    with torch.no_grad():
        images = torch.stack([preprocess(Image.open(i)) for i in (IMAGES[0], IMAGES[2])])
        img = features(model.get_image_features(pixel_values=images))
        classifier = []
        for label in labels:
            emb = unit(features(model.get_text_features(input_ids=clip.tokenize([t.format(label) for t in templates]))))
            classifier.append(unit(emb.mean(0)))
        classifier = torch.stack(classifier)
        probs = (model.logit_scale.exp() * unit(img) @ classifier.T).softmax(-1)
    check_close("image_embeddings", out["image_embeddings"], img, IMAGE_ATOL)
    check_close("label_probs", out["label_probs"], probs, IMAGE_ATOL)
    assert out["labels"] == labels
    assert "text_embeddings" not in out and "logits_per_image" not in out


def test_every_fixture_format_runs():
    cases = json.load(open(os.path.join(PARITY, "cases.json")))["cases"]
    for case in cases:
        args = ["--model", os.path.join(PARITY, case["weights"]), "--vocab", VOCAB, "--text", "a cat", "--image", IMAGES[1]]
        if case["config"]:
            args += ["--config", os.path.join(PARITY, case["config"])]
        out = embed(*args)
        emb = np.asarray(out["image_embeddings"])
        assert emb.shape[0] == 1 and np.isfinite(emb).all(), case["name"]
        assert np.asarray(out["logits_per_image"]).shape == (1, 1), case["name"]
        print(f"  {case['name']}: ok, embed dim {emb.shape[1]}")


def test_npy_output_matches_json():
    path = os.path.join(PARITY, "openai_rn_state", "model.pt")
    args = ["--model", path, "--vocab", VOCAB, "--text", "a", "--text", "b c", "--image", IMAGES[0]]
    as_json = embed(*args)
    with tempfile.TemporaryDirectory() as d:
        out = embed(*args, "--npy", d)
        for key in ("text_embeddings", "image_embeddings", "logits_per_image"):
            assert out[key] == os.path.join(d, key + ".npy"), out[key]
            check_close(key + ".npy", np.load(out[key]), as_json[key], 1e-6)
        assert out["tokens"] == as_json["tokens"]


def test_tokens_only_needs_only_a_vocabulary():
    import clip
    out = embed("--tokens-only", "--vocab", VOCAB, "--text", "Hello, World!", "--text", "")
    assert out == {"tokens": [clip.tokenize(["Hello, World!"])[0][:6].tolist(), [49406, 49407]]}, out
    long_text = "word " * 100
    proc = run("--tokens-only", "--vocab", VOCAB, "--text", long_text, ok=False)
    assert proc.returncode == 1 and "context" in proc.stderr, proc.stderr
    out = embed("--tokens-only", "--vocab", VOCAB, "--text", long_text, "--truncate")
    assert out["tokens"][0] == clip.tokenize([long_text], truncate=True)[0].tolist()


def test_templates_file_and_builtin_templates():
    path = os.path.join(PARITY, "hf_clip")
    with tempfile.TemporaryDirectory() as d:
        file = os.path.join(d, "templates.txt")
        with open(file, "w") as f:
            f.write("# comment\n\na photo of a {}.\na drawing of the {}\n")
        a = embed("--model", path, "--vocab", VOCAB, "--image", IMAGES[0], "--labels", "cat,dog", "--templates", file)
        b = embed("--model", path, "--vocab", VOCAB, "--image", IMAGES[0], "--labels", "cat,dog",
                  "--template", "a photo of a {}.", "--template", "a drawing of the {}")
        check_close("templates file vs flags", a["label_probs"], b["label_probs"], 1e-6)
        c = embed("--model", path, "--vocab", VOCAB, "--image", IMAGES[0], "--labels", "cat, dog")
        assert c["templates"] > 1 and abs(sum(c["label_probs"][0]) - 1) < 1e-5, c
        with open(file, "w") as f:
            f.write("no placeholder here\n")
        proc = run("--model", path, "--vocab", VOCAB, "--image", IMAGES[0], "--labels", "a,b", "--templates", file, ok=False)
        assert proc.returncode == 1 and "templates.txt" in proc.stderr and "line 1" in proc.stderr, proc.stderr


def test_help_lists_every_flag_with_defaults():
    proc = run("--help")
    for flag in ("--model", "--config", "--vocab", "--text", "--image", "--tokens-only", "--truncate", "--npy",
                 "--labels", "--template", "--templates", "--device"):
        assert flag in proc.stdout, flag
    assert "--device TEXT=cpu" in proc.stdout, "defaults are shown"


def test_errors_are_one_clear_line():
    model = os.path.join(PARITY, "hf_clip")
    with tempfile.TemporaryDirectory() as d:
        corrupt = os.path.join(d, "corrupt.safetensors")
        with open(corrupt, "wb") as f:
            f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
        cases = [
            (["--no-such-flag"], 2, "--no-such-flag"),
            (["--model", os.path.join(d, "missing.pt"), "--text", "x", "--vocab", VOCAB], 1, "missing.pt"),
            (["--model", corrupt, "--vocab", VOCAB, "--text", "x"], 1, "corrupt.safetensors"),
            (["--model", model, "--vocab", VOCAB, "--image", os.path.join(d, "nope.png")], 1, "nope.png"),
            (["--model", model, "--vocab", os.path.join(d, "vocab.txt.gz")], 1, "vocab.txt.gz"),
            (["--model", model, "--vocab", VOCAB, "--device", "tpu", "--text", "x"], 1, "--device"),
            (["--model", model, "--vocab", VOCAB, "--labels", "a,,b", "--image", IMAGES[0]], 1, "--labels"),
            (["--model", model, "--vocab", VOCAB, "--labels", "a,b"], 1, "--image"),
            (["--text", "x", "--vocab", VOCAB], 1, "has 49408 tokens, but the model"),  # OpenAI's vocabulary, shipped model
        ]
        for args, code, needle in cases:
            proc = run(*args, ok=False)
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == code, f"{args}: exit {proc.returncode}, stderr {proc.stderr!r}"
            assert len(lines) == 1 and needle in lines[0], f"{args}: stderr {proc.stderr!r}"
            assert proc.stdout == "", f"{args}: stdout {proc.stdout!r}"
            print(f"  {needle}: {lines[0]}")


def main():
    return script_tests.run_tests(globals(), VOCAB)


if __name__ == "__main__":
    sys.exit(main())
