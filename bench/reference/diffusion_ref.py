#!/usr/bin/env python3
"""Python side of bench/diffusion_bench: CLIP-guided DDIM as Disco Diffusion v5 runs it, written with the PyPI
reference packages (guided-diffusion-sdk + openai-clip): guided_diffusion's ddim_sample_loop_progressive with
Disco's cond_fn (its own p_mean_variance with grad, x_in = x0 * fac + x * (1 - fac), MakeCutoutsDango's
overview and inner crops with Disco's augmentations, spherical distance, tv/range/sat losses, NaN check and
clamp_grad). Differences from the notebook, the same on both sides of the benchmark: cutouts are resized with
torch's bilinear antialiased interpolate (Disco uses the resize_right package), one cut batch.

  diffusion_ref.py --write DIR    random weights: the 256x256 uncond architecture at --channels (Disco's is
                                  256; the CPU run uses fewer, both sides the same) as unet.pt + unet.json,
                                  and a ViT-B/32 CLIP (clip.pt)
  diffusion_ref.py --run DIR ...  times --steps DDIM steps after --warmup; prints one JSON line
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F
import torchvision.transforms as T
import torchvision.transforms.functional as TF

try:  # openai-clip 1.0.1 imports `packaging` through pkg_resources, which new setuptools no longer has
    import pkg_resources  # noqa: F401
except ImportError:
    import packaging.version
    import types as _types
    sys.modules["pkg_resources"] = _types.SimpleNamespace(packaging=packaging)
import clip  # noqa: E402
from clip import model as clip_model  # noqa: E402
from guided_diffusion.script_util import create_model_and_diffusion, model_and_diffusion_defaults  # noqa: E402


def disco_config(channels, steps):
    cfg = model_and_diffusion_defaults()
    cfg.update({"attention_resolutions": "32, 16, 8", "class_cond": False, "diffusion_steps": 1000,
                "rescale_timesteps": True, "timestep_respacing": f"ddim{steps}", "image_size": 256,
                "learn_sigma": True, "noise_schedule": "linear", "num_channels": channels, "num_head_channels": 64,
                "num_res_blocks": 2, "resblock_updown": True, "use_checkpoint": False, "use_fp16": False,
                "use_scale_shift_norm": True})
    return cfg


def write(out, channels):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    cfg = disco_config(channels, 250)
    model, _ = create_model_and_diffusion(**cfg)
    with torch.no_grad():  # guided_diffusion zero-initialises output convs; random values everywhere instead
        for p in model.parameters():
            if p.dim() > 1 and p.abs().sum() == 0:
                p.normal_(0, 0.02)
    torch.save(model.state_dict(), os.path.join(out, "unet.pt"))
    with open(os.path.join(out, "unet.json"), "w") as f:
        json.dump({k: cfg[k] for k in ["attention_resolutions", "image_size", "learn_sigma", "num_channels",
                                       "num_head_channels", "num_res_blocks", "resblock_updown",
                                       "use_scale_shift_norm", "rescale_timesteps", "diffusion_steps"]}, f)
    clip_net = clip_model.CLIP(512, 224, 12, 768, 32, 77, 49408, 512, 8, 12)  # ViT-B/32
    torch.save(clip_net.state_dict(), os.path.join(out, "clip.pt"))


class MakeCutoutsDango(torch.nn.Module):
    """Disco v5's cutouts: Overview whole-image views (padded square; grey and flipped variants up to 4),
    InnerCrop random crops of size exponent IC_Size_Pow (the first IC_Grey_P of them grey), then its augs."""

    def __init__(self, cut_size, overview, innercut, ic_size_pow=1.0, ic_grey_p=0.2):
        super().__init__()
        self.cut_size, self.overview, self.innercut = cut_size, overview, innercut
        self.ic_size_pow, self.ic_grey_p = ic_size_pow, ic_grey_p
        self.augs = T.Compose([
            T.RandomHorizontalFlip(p=0.5),
            T.Lambda(lambda x: x + torch.randn_like(x) * 0.01),
            T.RandomAffine(degrees=10, translate=(0.05, 0.05), interpolation=T.InterpolationMode.BILINEAR),
            T.Lambda(lambda x: x + torch.randn_like(x) * 0.01),
            T.RandomGrayscale(p=0.1),
            T.Lambda(lambda x: x + torch.randn_like(x) * 0.01),
            T.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.1),
        ])

    def resize(self, x):
        return F.interpolate(x, (self.cut_size, self.cut_size), mode="bilinear", align_corners=False, antialias=True)

    def forward(self, x):
        cutouts = []
        gray = T.Grayscale(3)
        side_y, side_x = x.shape[2:4]
        max_size, min_size = min(side_x, side_y), min(side_x, side_y, self.cut_size)
        pad = F.pad(x, ((side_y - max_size) // 2, (side_y - max_size) // 2, (side_x - max_size) // 2,
                        (side_x - max_size) // 2))
        cutout = self.resize(pad)
        if self.overview > 0:
            if self.overview <= 4:
                views = [cutout, gray(cutout), TF.hflip(cutout), gray(TF.hflip(cutout))]
                cutouts += views[:self.overview]
            else:
                cutouts += [cutout] * self.overview
        for i in range(self.innercut):
            size = int(torch.rand([]) ** self.ic_size_pow * (max_size - min_size) + min_size)
            ox = torch.randint(0, side_x - size + 1, ())
            oy = torch.randint(0, side_y - size + 1, ())
            c = x[:, :, oy:oy + size, ox:ox + size]
            if i <= int(self.ic_grey_p * self.innercut):
                c = gray(c)
            cutouts.append(self.resize(c))
        return self.augs(torch.cat(cutouts))


def spherical_dist_loss(x, y):
    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    return (x - y).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


def tv_loss(x):
    x = F.pad(x, (0, 1, 0, 1), "replicate")
    x_diff = x[..., :-1, 1:] - x[..., :-1, :-1]
    y_diff = x[..., 1:, :-1] - x[..., :-1, :-1]
    return (x_diff ** 2 + y_diff ** 2).mean([1, 2, 3])


def range_loss(x):
    return (x - x.clamp(-1, 1)).pow(2).mean([1, 2, 3])


def run(args):
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    with open(os.path.join(args.dir, "unet.json")) as f:
        saved = json.load(f)
    cfg = disco_config(saved["num_channels"], args.total_steps)
    model, diffusion = create_model_and_diffusion(**cfg)
    model.load_state_dict(torch.load(os.path.join(args.dir, "unet.pt")))
    model.eval().requires_grad_(False).to(device)
    if args.bf16:
        model.convert_to_fp16()  # guided_diffusion's fp16 torso (Disco's use_fp16)
    perceptor = clip_model.build_model(torch.load(os.path.join(args.dir, "clip.pt"))).float().eval().requires_grad_(False)
    perceptor.to(device)
    normalize = T.Normalize(mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711])
    target = perceptor.encode_text(clip.tokenize([args.prompt]).to(device)).float()
    cut_size = perceptor.visual.input_resolution
    state = {"cur_t": None}

    def cond_fn(x, t, y=None):
        with torch.enable_grad():
            x = x.detach().requires_grad_()
            n = x.shape[0]
            my_t = torch.ones([n], device=device, dtype=torch.long) * state["cur_t"]
            out = diffusion.p_mean_variance(model, x, my_t, clip_denoised=False, model_kwargs={"y": y})
            fac = diffusion.sqrt_one_minus_alphas_cumprod[state["cur_t"]]
            x_in = out["pred_xstart"] * fac + x * (1 - fac)
            x_in_grad = torch.zeros_like(x_in)
            cuts = MakeCutoutsDango(cut_size, args.overview, args.innercut)
            clip_in = normalize(cuts(x_in.add(1).div(2)))
            image_embeds = perceptor.encode_image(clip_in).float()
            dists = spherical_dist_loss(image_embeds.unsqueeze(1), target.unsqueeze(0))
            dists = dists.view([args.overview + args.innercut, n, -1])
            losses = dists.sum(2).mean(0)
            x_in_grad += torch.autograd.grad(losses.sum() * args.clip_guidance_scale, x_in)[0]
            loss = tv_loss(x_in).sum() * 0 + range_loss(out["pred_xstart"]).sum() * 150
            loss = loss + torch.abs(x_in - x_in.clamp(min=-1, max=1)).mean() * 0
            x_in_grad += torch.autograd.grad(loss, x_in)[0]
            if not torch.isnan(x_in_grad).any():
                grad = -torch.autograd.grad(x_in, x, x_in_grad)[0]
            else:
                grad = torch.zeros_like(x)
        magnitude = grad.square().mean().sqrt()
        return grad * magnitude.clamp(max=0.05) / magnitude

    shape = (1, 3, args.size, args.size)
    state["cur_t"] = diffusion.num_timesteps - 1
    times = []
    last = time.perf_counter()
    for i, _ in enumerate(diffusion.ddim_sample_loop_progressive(model, shape, clip_denoised=False, cond_fn=cond_fn,
                                                                  model_kwargs={}, device=device, eta=0.8)):
        if device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        times.append(now - last)
        last = now
        state["cur_t"] -= 1
        if i + 1 >= args.warmup + args.steps:
            break
    timed = times[args.warmup:]
    result = {"s_per_step": sorted(timed)[len(timed) // 2], "steps": len(timed), "threads": torch.get_num_threads(),
              "torch": torch.__version__,
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        result["peak_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print(json.dumps(result))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", metavar="DIR")
    p.add_argument("--run", metavar="DIR", dest="dir")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--overview", type=int, default=8)
    p.add_argument("--innercut", type=int, default=8)
    p.add_argument("--clip_guidance_scale", type=float, default=5000)
    p.add_argument("--total_steps", type=int, default=50, help="the DDIM respacing (ddimN)")
    p.add_argument("--steps", type=int, default=3, help="timed steps")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--prompt", default="a lighthouse at dusk")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="guided_diffusion's fp16 torso (CUDA)")
    args = p.parse_args()
    if args.write:
        write(args.write, args.channels)
    elif args.dir:
        run(args)
    else:
        p.error("give --write DIR or --run DIR")


if __name__ == "__main__":
    main()
