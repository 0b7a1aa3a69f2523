#!/usr/bin/env python3
"""Reference fixture for generators/fourier.cpp: Lucid's fft_image + to_valid_rgb(decorrelate=True, sigmoid=True),
transcribed to numpy (float64) because Lucid itself needs TensorFlow 1.x. TF's irfft2d divides by h * w, as numpy's
irfft2 does by default; Lucid's odd-width handling is not reproduced (even widths only here).
ref: tensorflow/lucid@a40d0e411eee8c18a2e2ca1958383049354478c3 lucid/optvis/param/spatial.py (_rfft2d_freqs, fft_image)
ref: tensorflow/lucid@a40d0e411eee8c18a2e2ca1958383049354478c3 lucid/optvis/param/color.py (to_valid_rgb)

Writes expected.safetensors to --out with
  color_correlation   (3, 3)  color_correlation_svd_sqrt / max_norm_svd_sqrt
and for each case C (a: 24 x 32, decay_power 1; b: 32 x 20, decay_power 1.5), B = 2:
  C.size              (3) int64  height, width, batch
  C.decay_power       (1) float64
  C.freqs             (H, F)  _rfft2d_freqs(h, w), F = W / 2 + 1
  C.scale             (H, F)  1 / max(freqs, 1 / max(h, w))^decay_power (without Lucid's sqrt(w * h))
  C.spectrum          (B, 3, H, F, 2)  real and imaginary parts (Lucid keeps them as (2, ch, fh, fw) per image)
  C.render            (B, 3, H, W)  in (0, 1)
then DONE last.
"""
import os

import numpy as np
import torch
from safetensors.torch import save_file
import fixture_cli  # tests/reference/fixture_cli.py, beside this script

color_correlation_svd_sqrt = np.asarray([[0.26, 0.09, 0.02],
                                         [0.27, 0.00, -0.05],
                                         [0.27, -0.09, 0.03]]).astype("float32")
max_norm_svd_sqrt = np.max(np.linalg.norm(color_correlation_svd_sqrt, axis=0))
color_correlation_normalized = color_correlation_svd_sqrt / max_norm_svd_sqrt


def rfft2d_freqs(h, w):
    fy = np.fft.fftfreq(h)[:, None]
    assert w % 2 == 0
    fx = np.fft.fftfreq(w)[: w // 2 + 1]
    return np.sqrt(fx * fx + fy * fy)


def lucid_render(spectrum, h, w, decay_power):
    """spectrum (B, 3, H, F, 2) float32 -> (B, 3, H, W), Lucid's pipeline image by image."""
    freqs = rfft2d_freqs(h, w)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power
    scale *= np.sqrt(w * h)
    images = []
    for s in spectrum.astype(np.float64):
        complex_spectrum = s[..., 0] + 1j * s[..., 1]            # (3, H, F)
        img = np.fft.irfft2(complex_spectrum * scale)              # (3, H, W), TF irfft2d's 1 / (h w)
        img = img[:3, :h, :w].transpose(1, 2, 0)                   # (H, W, 3)
        images.append(img)
    t = np.stack(images) / 4.0                                     # (B, H, W, 3)
    t = (t.reshape(-1, 3) @ color_correlation_normalized.T.astype(np.float64)).reshape(t.shape)
    t = 1.0 / (1.0 + np.exp(-t))
    return t.transpose(0, 3, 1, 2)                                 # (B, 3, H, W)


def main():
    args = fixture_cli.start()
    rng = np.random.default_rng(0)
    expected = {"color_correlation": torch.from_numpy(color_correlation_normalized.astype(np.float32))}
    for case, h, w, decay_power in (("a", 24, 32, 1.0), ("b", 32, 20, 1.5)):
        batch = 2
        freqs = rfft2d_freqs(h, w)
        # Far larger than Lucid's sd 0.01 so the image is far from grey and the test sees every stage.
        spectrum = (0.5 * rng.standard_normal((batch, 3, h, w // 2 + 1, 2))).astype(np.float32)
        expected.update({
            f"{case}.size": torch.tensor([h, w, batch], dtype=torch.int64),
            f"{case}.decay_power": torch.tensor([decay_power], dtype=torch.float64),
            f"{case}.freqs": torch.from_numpy(freqs.astype(np.float32)),
            f"{case}.scale": torch.from_numpy((1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power).astype(np.float32)),
            f"{case}.spectrum": torch.from_numpy(spectrum),
            f"{case}.render": torch.from_numpy(lucid_render(spectrum, h, w, decay_power).astype(np.float32)),
        })
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(args.out, "expected.safetensors"))
    fixture_cli.finish(args.out)


if __name__ == "__main__":
    main()
