#!/usr/bin/env python3
"""Reference fixture for clipnet/train/dataset: small training sets in the layouts open_clip reads, written
with Python's own tools (PIL, csv, tarfile), and what PIL decodes from each image.

Writes to --out:
  images/*.png|jpg            source images (RGB, grey, JPEG)
  manifest.tsv, manifest.csv  open_clip manifests (filepath, title), captions with quotes/commas/newlines
  shards/shard-000.tar, -001  WebDataset shards: <key>.jpg|png|webp + <key>.txt (+ <key>.json); one sample
                              lacks its caption and must be skipped
  folder/                     image folder with sidecar captions (recursive); folder/uncaptioned.png has none
  expected.safetensors        <name> -> (3, H, W) uint8, PIL Image.open(f).convert("RGB")
  expected.json               per source: ordered [key, caption, image name] the reader must return
and DONE last.
"""
import csv
import io
import json
import os
import tarfile

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
import fixture_cli  # tests/reference/fixture_cli.py, beside this script


def picture(h, w, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([0.5 + 0.4 * np.sin(rng.uniform(1, 5) * x / w * np.pi + c) * np.cos(rng.uniform(1, 5) * y / h * np.pi)
                    for c in range(3)], -1)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def encode(array, fmt, mode=None):
    buf = io.BytesIO()
    options = {"JPEG": {"quality": 90}, "WEBP": {"lossless": True}}.get(fmt, {})
    Image.fromarray(array, mode).save(buf, format=fmt, **options)
    return buf.getvalue()


def rgb_of(data):
    return torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB"))).permute(2, 0, 1).contiguous()


def main():
    out = fixture_cli.start().out
    for d in ("images", "shards", "folder/sub"):
        os.makedirs(f"{out}/{d}", exist_ok=True)

    expected_pixels, expected = {}, {}

    # Images shared by the manifests.
    files = {
        "red.png": encode(picture(30, 40, 1), "PNG"),
        "photo.jpg": encode(picture(48, 64, 2), "JPEG"),
        "grey.png": encode(picture(33, 21, 3)[..., 0], "PNG", "L"),
    }
    for name, data in files.items():
        with open(f"{out}/images/{name}", "wb") as f:
            f.write(data)
        expected_pixels[name] = rgb_of(data)
    rows = [("images/red.png", 'a "quoted" caption, with a comma'),
            ("images/photo.jpg", "a photo\twith a tab and\na newline"),
            ("images/grey.png", "plain grey")]
    for fname, sep in (("manifest.tsv", "\t"), ("manifest.csv", ",")):
        with open(f"{out}/{fname}", "w", newline="") as f:
            w = csv.writer(f, delimiter=sep, lineterminator="\r\n" if sep == "," else "\n")
            w.writerow(["id", "filepath", "title"])
            for i, (path, caption) in enumerate(rows):
                w.writerow([i, path, caption])
    expected["manifest"] = [[path, caption, os.path.basename(path)] for path, caption in rows]

    # WebDataset shards, members in sample order as webdataset's TarWriter writes them.
    shard_samples = [
        [("000000", "jpg", picture(24, 32, 10), "first sample"),
         ("000001", "png", picture(20, 20, 11), "second sample"),
         ("000002", "png", picture(18, 26, 12), "third sample")],
        [("000003", "png", picture(22, 30, 13), "fourth sample"),
         ("000004", "png", picture(16, 16, 14), None),          # no caption: skipped
         ("sub/000005", "jpg", picture(40, 30, 15), "sixth sample in a folder"),
         ("000006", "webp", picture(20, 24, 16), "seventh sample, lossless WebP")],
    ]
    expected["tar"] = []
    for s, samples in enumerate(shard_samples):
        with tarfile.open(f"{out}/shards/shard-{s:03d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            def add(name, data):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
            for key, ext, array, caption in samples:
                data = encode(array, {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[ext])
                if caption is not None:
                    add(f"{key}.txt", (caption + "\n").encode())
                add(f"{key}.{ext}", data)
                add(f"{key}.json", json.dumps({"key": key}).encode())
                if caption is not None:
                    tar_name = f"tar/{key}"
                    expected_pixels[tar_name] = rgb_of(data)
                    expected["tar"].append([key, caption, tar_name])

    # Image folder with sidecar captions.
    folder = [("a.png", picture(12, 14, 20), "folder image a"),
              ("sub/b.jpg", picture(20, 16, 21), "folder image b"),
              ("c.png", picture(10, 10, 22), "folder image c")]
    expected["folder"] = []
    for rel, array, caption in sorted(folder):
        data = encode(array, "JPEG" if rel.endswith(".jpg") else "PNG")
        with open(f"{out}/folder/{rel}", "wb") as f:
            f.write(data)
        with open(f"{out}/folder/{os.path.splitext(rel)[0]}.txt", "w") as f:
            f.write(f"  {caption}\n")
        expected_pixels[f"folder/{rel}"] = rgb_of(data)
        expected["folder"].append([os.path.splitext(rel)[0], caption, f"folder/{rel}"])
    with open(f"{out}/folder/uncaptioned.png", "wb") as f:
        f.write(encode(picture(8, 8, 23), "PNG"))

    save_file(expected_pixels, f"{out}/expected.safetensors")
    with open(f"{out}/expected.json", "w") as f:
        json.dump(expected, f, indent=1)
    fixture_cli.finish(out)


if __name__ == "__main__":
    main()
