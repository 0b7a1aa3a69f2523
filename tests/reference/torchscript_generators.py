#!/usr/bin/env python3
"""Reference fixture for generators/torchscript.cpp: small TorchScript modules mapping a latent to an image, as a
user would export them from Python (torch.jit.script or torch.jit.trace), and what they output for fixed latents.

Writes to --out:
  decoder_scripted.pt  torch.jit.script of a tiny conv decoder: latent (B, 16) -> (B, 3, 32, 32), tanh output
  decoder_traced.pt    torch.jit.trace of the same architecture (other weights), traced at batch 1
  attr_shape.pt        scripted; carries the attribute latent_shape = [1, 2, 8]; (B, 2, 8) -> (B, 3, 16, 16),
                       sigmoid output in [0, 1]
  wrong_channels.pt    scripted; (B, 16) -> (B, 1, 32, 32)
  tuple_output.pt      scripted; returns (image, latent) instead of a tensor
  bad_attr.pt          scripted; latent_shape attribute is a string
  diverging.pt         scripted; (B, 16) -> (B, 3, 32, 32) in [0, 1], NaN once the latent's RMS passes 10 (a
                       divergent run: clip-guide's tests give it --learning_rate 1e6)
  corrupt.pt           bytes that are not a TorchScript archive
  truncated.pt         the first half of decoder_scripted.pt
and expected.safetensors with, for M in (scripted, traced) (output_range "-1,1": render = (out + 1) / 2):
  M.latent   (2, 16)          a fixed latent
  M.render   (2, 3, 32, 32)   (module(latent) + 1) / 2
  M.weight   (2, 3, 32, 32)   fixed weights w
  M.grad     (2, 16)          d sum(w * render) / d latent
and attr.latent (2, 2, 8), attr.render (2, 3, 16, 16) = module(latent); then DONE last.
"""
import os
from typing import List

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
import fixture_cli  # tests/reference/fixture_cli.py, beside this script


class Decoder(nn.Module):
    """latent (B, 16) -> (B, out_channels, 32, 32) in [-1, 1]."""

    def __init__(self, out_channels: int = 3):
        super().__init__()
        self.fc = nn.Linear(16, 8 * 8 * 8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, out_channels, 3, padding=1)

    def forward(self, z):
        x = self.fc(z).view(-1, 8, 8, 8)                      # (B, 8, 8, 8)
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, 8, 16, 16)
        x = F.leaky_relu(self.conv1(x), 0.2)
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, 8, 32, 32)
        return torch.tanh(self.conv2(x))                       # (B, C, 32, 32)


class AttrDecoder(nn.Module):
    """latent (B, 2, 8) -> (B, 3, 16, 16) in [0, 1]; declares its latent shape as an attribute."""

    latent_shape: List[int]

    def __init__(self):
        super().__init__()
        self.latent_shape = [1, 2, 8]
        self.fc = nn.Linear(16, 3 * 16 * 16)

    def forward(self, z):
        return torch.sigmoid(self.fc(z.flatten(1)).view(-1, 3, 16, 16))


class Diverging(nn.Module):
    """A decoder that breaks when its latent grows: finite for RMS(z) < 10, NaN beyond."""

    def __init__(self):
        super().__init__()
        self.decoder = Decoder()

    def forward(self, z):
        return (self.decoder(z) + 1) / 2 + 0 * torch.sqrt(100 - z.pow(2).mean())


class TupleOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.decoder = Decoder()

    def forward(self, z):
        return self.decoder(z), z


class BadAttr(nn.Module):
    latent_shape: str

    def __init__(self):
        super().__init__()
        self.latent_shape = "1,16"
        self.decoder = Decoder()

    def forward(self, z):
        return self.decoder(z)


def with_grad(module, latent, weight, to_unit):
    latent = latent.clone().requires_grad_(True)
    render = to_unit(module(latent))
    (weight * render).sum().backward()
    return render.detach(), latent.grad.detach()


def main():
    args = fixture_cli.start()
    torch.set_num_threads(1)
    out = lambda name: os.path.join(args.out, name)  # noqa: E731
    expected = {}
    from_tanh = lambda x: (x + 1) / 2  # noqa: E731

    torch.manual_seed(0)
    scripted = torch.jit.script(Decoder().eval())
    scripted.save(out("decoder_scripted.pt"))
    torch.manual_seed(1)
    traced = torch.jit.trace(Decoder().eval(), torch.randn(1, 16))
    traced.save(out("decoder_traced.pt"))
    for name, module in (("scripted", scripted), ("traced", traced)):
        latent = torch.randn(2, 16)
        weight = torch.randn(2, 3, 32, 32)
        render, grad = with_grad(module, latent, weight, from_tanh)
        expected.update({f"{name}.latent": latent, f"{name}.render": render, f"{name}.weight": weight,
                         f"{name}.grad": grad})

    torch.manual_seed(2)
    attr = torch.jit.script(AttrDecoder().eval())
    assert list(attr.latent_shape) == [1, 2, 8]
    attr.save(out("attr_shape.pt"))
    latent = torch.randn(2, 2, 8)
    with torch.no_grad():
        expected.update({"attr.latent": latent, "attr.render": attr(latent)})

    torch.jit.script(Decoder(out_channels=1).eval()).save(out("wrong_channels.pt"))
    torch.jit.script(TupleOutput().eval()).save(out("tuple_output.pt"))
    torch.jit.script(BadAttr().eval()).save(out("bad_attr.pt"))
    torch.jit.script(Diverging().eval()).save(out("diverging.pt"))
    with open(out("corrupt.pt"), "wb") as f:
        f.write(b"this is not a TorchScript archive\n" * 8)
    with open(out("decoder_scripted.pt"), "rb") as f:
        data = f.read()
    with open(out("truncated.pt"), "wb") as f:
        f.write(data[: len(data) // 2])

    save_file({k: v.detach().contiguous() for k, v in expected.items()}, out("expected.safetensors"))
    fixture_cli.finish(args.out)


if __name__ == "__main__":
    main()
