"""Reference fixture for tests/clipnet/train/losses_test.cpp: open_clip's ClipLoss and SigLipLoss (single
process) on fixed random unit features, with the gradients w.r.t. the features, logit_scale and logit_bias.

Writes into DIR:
  losses.safetensors  image (B, E), text (B, E) unit rows; logit_scale_param () (log scale; the loss gets
                      its exp); logit_bias (); clip_loss, siglip_loss (); clip_grad_image, clip_grad_text,
                      clip_grad_logit_scale_param, siglip_grad_image, siglip_grad_text,
                      siglip_grad_logit_scale_param, siglip_grad_logit_bias
  DONE                written last

Usage: python train_losses.py --out DIR [--test-data DIR]
"""
import os

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss, SigLipLoss
from safetensors.torch import save_file
import fixture_cli  # tests/reference/fixture_cli.py, beside this script

B, E = 8, 16


def main():
    args = fixture_cli.start()

    g = torch.Generator().manual_seed(1234)
    image = F.normalize(torch.randn(B, E, generator=g, dtype=torch.float64), dim=-1)
    text = F.normalize(torch.randn(B, E, generator=g, dtype=torch.float64) + 0.5 * image, dim=-1)
    scale_param = torch.tensor(2.3, dtype=torch.float64)
    bias = torch.tensor(-3.0, dtype=torch.float64)
    out = {"image": image, "text": text, "logit_scale_param": scale_param, "logit_bias": bias}

    i, t, s = image.clone().requires_grad_(), text.clone().requires_grad_(), scale_param.clone().requires_grad_()
    loss = ClipLoss()(i, t, s.exp())
    loss.backward()
    out.update(clip_loss=loss.detach(), clip_grad_image=i.grad, clip_grad_text=t.grad,
               clip_grad_logit_scale_param=s.grad)

    i, t, s = image.clone().requires_grad_(), text.clone().requires_grad_(), scale_param.clone().requires_grad_()
    b = bias.clone().requires_grad_()
    loss = SigLipLoss()(i, t, s.exp(), b)
    loss.backward()
    out.update(siglip_loss=loss.detach(), siglip_grad_image=i.grad, siglip_grad_text=t.grad,
               siglip_grad_logit_scale_param=s.grad, siglip_grad_logit_bias=b.grad)

    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(args.out, "losses.safetensors"))
    fixture_cli.finish(args.out)


if __name__ == "__main__":
    main()
