"""What the Python references need to run taming-transformers and VQGAN+CLIP's synth step, in one place
(imported by tests/reference/vqgan.py and bench/reference/guide_ref.py; bench adds tests/reference to
sys.path):

  - importing this module installs the pytorch_lightning shim taming 0.0.6 needs (it imports
    pytorch_lightning.utilities.distributed, which Lightning 2 removed); import it before taming;
  - ReplaceGrad / ClampWithGrad (replace_grad, clamp_with_grad) and vector_quantize, VQGAN+CLIP's
    straight-through quantiser and clamp, the reference for clipnet/grad_ops and generators/vqgan.
"""
import sys
import types

import torch
import torch.nn.functional as F

import pytorch_lightning
import pytorch_lightning.utilities

if "pytorch_lightning.utilities.distributed" not in sys.modules:
    _shim = types.ModuleType("pytorch_lightning.utilities.distributed")
    _shim.rank_zero_only = pytorch_lightning.utilities.rank_zero_only
    sys.modules["pytorch_lightning.utilities.distributed"] = _shim


# ref: nerdyrodent/VQGAN-CLIP generate.py (ReplaceGrad, ClampWithGrad, vector_quantize)
class ReplaceGrad(torch.autograd.Function):
    """Forward: x_forward; backward: the gradient goes to x_backward (summed to its shape)."""

    @staticmethod
    def forward(ctx, x_forward, x_backward):
        ctx.shape = x_backward.shape
        return x_forward

    @staticmethod
    def backward(ctx, grad_in):
        return None, grad_in.sum_to_size(ctx.shape)


replace_grad = ReplaceGrad.apply


class ClampWithGrad(torch.autograd.Function):
    """clamp(input, min, max) whose gradient still flows where it would move the input back into range."""

    @staticmethod
    def forward(ctx, input, min, max):
        ctx.min = min
        ctx.max = max
        ctx.save_for_backward(input)
        return input.clamp(min, max)

    @staticmethod
    def backward(ctx, grad_in):
        input, = ctx.saved_tensors
        return grad_in * (grad_in * (input - input.clamp(ctx.min, ctx.max)) >= 0), None, None


clamp_with_grad = ClampWithGrad.apply


def vector_quantize(x, codebook):
    """x (..., E) → its nearest codebook rows (K, E), with the gradient passed straight through to x."""
    d = x.pow(2).sum(dim=-1, keepdim=True) + codebook.pow(2).sum(dim=1) - 2 * x @ codebook.T
    indices = d.argmin(-1)
    x_q = F.one_hot(indices, codebook.shape[0]).to(d.dtype) @ codebook
    return replace_grad(x_q, x)
