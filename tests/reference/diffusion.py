#!/usr/bin/env python3
"""Reference fixture for generators/diffusion: small random-weight guided-diffusion UNets written as OpenAI's
released files are (plain torch.save state dicts), and what guided_diffusion (PyPI guided-diffusion-sdk 1.0.0,
the fork Disco Diffusion uses) computes with them.

Writes to --out:
  a.pt, a.json    UNetModel with channel_mult (0.5, 1, 2), attention at ds 2 and 4, 32 head channels,
                  resblock_updown, scale-shift norm, learn_sigma; stored in fp16, as Disco's fp16 models are.
                  a.json: its model_config (model_and_diffusion_defaults() keys).
  b.pt            class-conditional (10 classes), no learn_sigma, no scale-shift, parameterless resampling
                  (conv_resample False), 2 heads, QKVAttention's new order; fp32. Architecture inferred.
  c.pt, c.json    create_model(image_size 64, channel_mult "" -> (1, 2, 3, 4), conv resampling), learn_sigma.
  N.shapes.safetensors, N.json for the released architectures N in (256x256_diffusion_uncond,
                  512x512_diffusion_uncond_finetune_008100) as Disco configures them (key -> shape, no weights)
and expected.safetensors:
  M.x, M.t, M.out         UNet input (B, 3, H, W), model timesteps (B), output, for M in a, b, c; b.y labels
  betas.linear, betas.cosine                      1000 steps each
  respace.<name>          space_timesteps(1000, name) sorted, for the names in RESPACINGS
  cumprod.<name>          the respaced process's alphas_cumprod
  the diffusion tests, model a, 100 steps respaced "ddim10", rescale_timesteps, guidance GUIDE below:
  ddim.x                  x_T (1, 3, 32, 32)
  ddim.step.sample/.pred  one DDIM step at index 9, eta 0.5, torch.manual_seed(123) before it
  plms.step.sample/.pred  one PLMS step at index 9 (the improved-Euler first step, two model evaluations)
  ddim.loop               the whole 10-step DDIM sample, eta 0
  plms.loop               the whole 10-step PLMS sample
  ddpm.loop               the 10-step p_sample loop, torch.manual_seed(5) before it
  skip.init, skip.loop    a 10-step DDIM sample with skip_timesteps 3 from init image skip.init
  guide.target            the guidance's target
then DONE last.
GUIDE: cond_fn(x, t, p) = -d/dx 0.5 * sum((p["pred_xstart"] - target)^2) * GUIDE_SCALE, through the UNet.
"""

import json

import torch
from safetensors.torch import save_file

from guided_diffusion.script_util import create_gaussian_diffusion, create_model
from guided_diffusion.respace import space_timesteps
from guided_diffusion.gaussian_diffusion import get_named_beta_schedule
from guided_diffusion.unet import UNetModel
import fixture_cli  # tests/reference/fixture_cli.py, beside this script

GUIDE_SCALE = 0.5
RESPACINGS = ["ddim50", "ddim25", "250", "25,25,50", "10,0007,3", "1000", "ddim1000"]


def randomise(model, seed):
    """Random weights everywhere (guided_diffusion zero-initialises output convs, which would hide errors)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) / (p[0].numel() ** 0.5))
            elif "norm" in name or name.startswith("out.0"):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def disco_config(image_size):
    """Disco Diffusion's model_config for the released uncond models."""
    return {"attention_resolutions": "32, 16, 8", "class_cond": False, "diffusion_steps": 1000,
            "rescale_timesteps": True, "timestep_respacing": "250", "image_size": image_size, "learn_sigma": True,
            "noise_schedule": "linear", "num_channels": 256, "num_head_channels": 64, "num_res_blocks": 2,
            "resblock_updown": True, "use_checkpoint": False, "use_fp16": True, "use_scale_shift_norm": True}


def model_kwargs(cfg):
    keys = ["image_size", "num_channels", "num_res_blocks", "channel_mult", "learn_sigma", "class_cond",
            "attention_resolutions", "num_heads", "num_head_channels", "num_heads_upsample",
            "use_scale_shift_norm", "resblock_updown", "use_new_attention_order"]
    return {k: cfg[k] for k in keys if k in cfg}


def main():
    args = fixture_cli.start()
    out = args.out
    expected = {}
    torch.manual_seed(0)

    # --- the UNets ---------------------------------------------------------------------------------------
    a = randomise(UNetModel(image_size=32, in_channels=3, model_channels=64, out_channels=6, num_res_blocks=1,
                            attention_resolutions=(2, 4), channel_mult=(0.5, 1, 2), num_head_channels=32,
                            use_scale_shift_norm=True, resblock_updown=True), 1)
    a_json = {"image_size": 32, "num_channels": 64, "num_res_blocks": 1, "attention_resolutions": "16,8",
              "channel_mult": [0.5, 1, 2], "num_head_channels": 32, "use_scale_shift_norm": True,
              "resblock_updown": True, "learn_sigma": True, "class_cond": False, "diffusion_steps": 100,
              "noise_schedule": "linear", "rescale_timesteps": True, "timestep_respacing": "ddim10",
              "use_fp16": True}
    # Stored in fp16; the reference runs the same rounded values in fp32.
    a_half = {k: v.half() for k, v in a.state_dict().items()}
    torch.save(a_half, f"{out}/a.pt")
    a.load_state_dict({k: v.float() for k, v in a_half.items()})
    with open(f"{out}/a.json", "w") as f:
        json.dump(a_json, f)

    b = randomise(UNetModel(image_size=32, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=2,
                            attention_resolutions=(4,), channel_mult=(1, 2, 2), conv_resample=False, num_classes=10,
                            num_heads=2, use_scale_shift_norm=False, use_new_attention_order=True), 2)
    torch.save(b.state_dict(), f"{out}/b.pt")

    c_json = {"image_size": 64, "num_channels": 32, "num_res_blocks": 1, "channel_mult": "",
              "attention_resolutions": "16,8", "num_heads": 4, "num_head_channels": -1, "learn_sigma": True,
              "resblock_updown": False, "use_scale_shift_norm": True}
    c = randomise(create_model(**model_kwargs(c_json)), 3)
    torch.save(c.state_dict(), f"{out}/c.pt")
    with open(f"{out}/c.json", "w") as f:
        json.dump(c_json, f)

    with torch.no_grad():
        for name, model, shape, t in [("a", a, (2, 3, 32, 32), [3.0, 777.5]), ("b", b, (2, 3, 16, 32), [10.0, 500.0]),
                                      ("c", c, (1, 3, 64, 64), [250.0])]:
            x = torch.randn(shape)
            tt = torch.tensor(t)
            kwargs = {}
            if name == "b":
                kwargs["y"] = torch.tensor([3, 7])
                expected["b.y"] = kwargs["y"]
            expected[f"{name}.x"], expected[f"{name}.t"] = x, tt
            expected[f"{name}.out"] = model(x, tt, **kwargs)

    for name, size in [("256x256_diffusion_uncond", 256), ("512x512_diffusion_uncond_finetune_008100", 512)]:
        cfg = disco_config(size)
        with torch.device("meta"):
            m = create_model(**model_kwargs(cfg))
        save_file({k: torch.tensor(list(v.shape), dtype=torch.int64) for k, v in m.state_dict().items()},
                  f"{out}/{name}.shapes.safetensors")
        with open(f"{out}/{name}.json", "w") as f:
            json.dump(cfg, f)

    # --- schedules ------------------------------------------------------------------------------------
    expected["betas.linear"] = torch.from_numpy(get_named_beta_schedule("linear", 1000))
    expected["betas.cosine"] = torch.from_numpy(get_named_beta_schedule("cosine", 1000))
    for r in RESPACINGS:
        steps = sorted(space_timesteps(1000, r))
        expected[f"respace.{r}"] = torch.tensor(steps, dtype=torch.int64)
        d = create_gaussian_diffusion(steps=1000, learn_sigma=True, timestep_respacing=r)
        expected[f"cumprod.{r}"] = torch.from_numpy(d.alphas_cumprod)

    # --- samplers with guidance, model a --------------------------------------------------------------
    diffusion = create_gaussian_diffusion(steps=100, learn_sigma=True, noise_schedule="linear",
                                          rescale_timesteps=True, timestep_respacing="ddim10")
    target = 0.5 * torch.randn(1, 3, 32, 32)
    expected["guide.target"] = target

    def cond_fn(x, t, p_mean_var, **kwargs):
        loss = 0.5 * ((p_mean_var["pred_xstart"] - target) ** 2).sum()
        return -torch.autograd.grad(loss, x)[0] * GUIDE_SCALE

    x_t = torch.randn(1, 3, 32, 32)
    expected["ddim.x"] = x_t
    t9 = torch.tensor([9])
    with torch.no_grad():
        torch.manual_seed(123)
        s = diffusion.ddim_sample_with_grad(a, x_t, t9, clip_denoised=False, cond_fn=cond_fn, eta=0.5,
                                           model_kwargs={})
        expected["ddim.step.sample"], expected["ddim.step.pred"] = s["sample"], s["pred_xstart"]
        s = diffusion.plms_sample(a, x_t, t9, clip_denoised=False, cond_fn=cond_fn, cond_fn_with_grad=True,
                                  model_kwargs={})
        expected["plms.step.sample"], expected["plms.step.pred"] = s["sample"], s["pred_xstart"]
    common = dict(noise=x_t, model_kwargs={}, clip_denoised=False, cond_fn=cond_fn, cond_fn_with_grad=True, device="cpu")
    expected["ddim.loop"] = diffusion.ddim_sample_loop(a, (1, 3, 32, 32), eta=0.0, **common)
    expected["plms.loop"] = diffusion.plms_sample_loop(a, (1, 3, 32, 32), **common)
    torch.manual_seed(5)
    final = None
    for final in diffusion.p_sample_loop_progressive(a, (1, 3, 32, 32), **common):
        pass
    expected["ddpm.loop"] = final["sample"]
    init = torch.rand(1, 3, 32, 32) * 2 - 1
    expected["skip.init"] = init
    expected["skip.loop"] = diffusion.ddim_sample_loop(a, (1, 3, 32, 32), eta=0.0, skip_timesteps=3, init_image=init,
                                                       **common)

    save_file({k: v.detach().contiguous() for k, v in expected.items()}, f"{out}/expected.safetensors")
    fixture_cli.finish(out)


if __name__ == "__main__":
    main()
