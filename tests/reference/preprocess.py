#!/usr/bin/env python3
"""Reference fixture for clipnet/preprocess + image_io: test images in several formats and what PIL and
openai-clip's preprocess make of them.

Writes to --out: images (png rgb/rgba/grey/16-bit, jpeg), expected.safetensors with, per image,
  <name>.rgb      (3, H, W) uint8   PIL Image.open(f).convert("RGB")
  <name>.clip<S>  (3, S, S) float32 clip.clip._transform(S)(image) for S in (224, 64)
and DONE last.
"""

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

import clip.clip as openai_clip
import fixture_cli  # tests/reference/fixture_cli.py, beside this script


def smooth_image(h, w, seed):
    """A natural-looking image: smooth colour fields plus edges and a little noise (not pure noise,
    which would make resampling differences look larger than they are on photos)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        fx, fy, ph = rng.uniform(0.5, 6, 3)
        img[..., c] = 0.5 + 0.4 * np.sin(fx * x / w * np.pi + ph) * np.cos(fy * y / h * np.pi)
    cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, min(h, w) * 0.25
    disc = (y - cy) ** 2 + (x - cx) ** 2 < r * r
    img[disc] = rng.uniform(0, 1, 3)
    img += rng.normal(0, 0.02, img.shape)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def main():
    args = fixture_cli.start()

    images = {}
    rgb = smooth_image(200, 300, 1)
    Image.fromarray(rgb).save(f"{args.out}/landscape.png"); images["landscape"] = "landscape.png"
    tall = smooth_image(331, 97, 2)
    Image.fromarray(tall).save(f"{args.out}/tall.png"); images["tall"] = "tall.png"
    rgba = np.concatenate([smooth_image(150, 160, 3), np.random.default_rng(4).integers(0, 256, (150, 160, 1), dtype=np.uint8)], 2)
    Image.fromarray(rgba, "RGBA").save(f"{args.out}/alpha.png"); images["alpha"] = "alpha.png"
    grey = smooth_image(120, 90, 5)[..., 0]
    Image.fromarray(grey, "L").save(f"{args.out}/grey.png"); images["grey"] = "grey.png"
    Image.fromarray(smooth_image(240, 320, 6)).save(f"{args.out}/photo.jpg", quality=90); images["photo"] = "photo.jpg"
    small = smooth_image(40, 50, 7)  # upsampled to the model size
    Image.fromarray(small).save(f"{args.out}/small.png"); images["small"] = "small.png"
    exact = smooth_image(224, 224, 8)  # already the model size: resize is the identity
    Image.fromarray(exact).save(f"{args.out}/exact.png"); images["exact"] = "exact.png"

    tensors = {}
    for name, file in images.items():
        pil = Image.open(f"{args.out}/{file}")
        tensors[f"{name}.rgb"] = torch.from_numpy(np.asarray(pil.convert("RGB")).copy()).permute(2, 0, 1).contiguous()
        for size in (224, 64):
            tensors[f"{name}.clip{size}"] = openai_clip._transform(size)(pil).contiguous()
    save_file(tensors, f"{args.out}/expected.safetensors")
    fixture_cli.finish(args.out)


if __name__ == "__main__":
    main()
